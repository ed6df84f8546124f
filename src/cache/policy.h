/* SPDX-License-Identifier: ISC */
/*
 * Result-cache time policy: pure functions of their arguments (no clock, no
 * global state), so every rule is unit-tested with explicit times.
 *
 *   filled_us          expires_us                 stale_until_us
 *   |------ FRESH -------|---------- STALE ------------|---- EXPIRED ...
 *                        (served while one background refresh runs)
 *
 * - TTL jitter spreads the expiry of entries filled together (default +-10%)
 *   so they do not all miss at the same moment.
 * - Stale-while-revalidate: within swr after expiry an entry is still served
 *   while exactly one refresh runs (the store hands out that one claim).
 * - XFetch (Vattani, Chierichetti, Lowenstein, "Optimal Probabilistic Cache
 *   Stampede Prevention", 2015): a fresh entry is refreshed early with a
 *   probability that grows as expiry nears and with the cost of the fill;
 *   beta scales it, 0 turns it off.
 *
 * Hint durations (levee:cache ttl= swr=) are parsed by sql/classify.h
 * (lv_sql_hints_t.cache_ttl_ms, cache_swr_ms); nothing here parses text.
 */
#ifndef LEVEE_CACHE_POLICY_H
#define LEVEE_CACHE_POLICY_H

#include "core/lv.h"
#include "core/time.h"

/* The times of one entry, all on the monotonic clock. */
typedef struct lv_cache_times {
	lv_usec_t filled_us;      /* when the fill's query was sent */
	lv_usec_t expires_us;     /* filled_us + jittered ttl: fresh before this */
	lv_usec_t stale_until_us; /* expires_us + swr: servable stale before this */
	lv_usec_t fill_cost_us;   /* how long the fill took (XFetch's delta) */
} lv_cache_times_t;

typedef enum lv_cache_fresh {
	LV_CACHE_FRESH = 0,   /* now < expires_us: serve */
	LV_CACHE_STALE = 1,   /* expires_us <= now < stale_until_us: serve, refresh once */
	LV_CACHE_EXPIRED = 2, /* now >= stale_until_us: do not serve */
} lv_cache_fresh_t;

/*
 * ttl_ms moved by a uniform offset within +-jitter_pct percent, chosen by
 * rnd (any 64 random bits): a value in [ttl*(1-p), ttl*(1+p)], never below
 * 1 ms. jitter_pct is clamped to [0, 100]; ttl_ms <= 0 gives 1.
 */
int64_t lv_cache_jittered_ttl_ms(int64_t ttl_ms, int jitter_pct, uint64_t rnd);

/* Fills t for an entry filled at filled_us with the given (already jittered) ttl and swr. */
void lv_cache_times_make(lv_cache_times_t *t, lv_usec_t filled_us, int64_t ttl_ms, int64_t swr_ms,
			 lv_usec_t fill_cost_us);

/* Where now falls in t's timeline. */
lv_cache_fresh_t lv_cache_freshness(const lv_cache_times_t *t, lv_usec_t now);

/*
 * XFetch: true when a fresh entry should be refreshed early, i.e. when
 * now - delta_us * beta * ln(u01) >= expires. u01 is uniform in (0, 1]
 * (values <= 0 are treated as the smallest double, values > 1 as 1).
 * beta <= 0 (or NaN) always returns false: early refresh off.
 */
bool lv_cache_xfetch(lv_usec_t now, lv_usec_t expires, lv_usec_t delta_us, double beta, double u01);

/* Maps 64 random bits to a double uniform in (0, 1]. */
double lv_cache_u01(uint64_t rnd);
/* Advances *state and returns 64 pseudo-random bits (splitmix64; not for secrets). */
uint64_t lv_cache_rand(uint64_t *state);

#endif
