/* SPDX-License-Identifier: ISC */
/*
 * Result-cache time policy (see policy.h). Pure: no state, no allocation,
 * no clock; safe from any thread.
 */
#include "core/lv.h"
#include "cache/policy.h"

#include <float.h>
#include <math.h>

/* Bounds that keep ttl * 200 and microsecond sums far from overflow. */
#define TTL_MAX_MS (INT64_MAX / 1000 / 4)

int64_t lv_cache_jittered_ttl_ms(int64_t ttl_ms, int jitter_pct, uint64_t rnd)
{
	if (ttl_ms <= 0)
		return 1;
	if (ttl_ms > TTL_MAX_MS)
		ttl_ms = TTL_MAX_MS;
	if (jitter_pct < 0)
		jitter_pct = 0;
	if (jitter_pct > 100)
		jitter_pct = 100;
	/* Integer arithmetic; ttl_ms <= INT64_MAX / 4000 so the product fits. */
	int64_t spread = ttl_ms / 100 * jitter_pct + ttl_ms % 100 * jitter_pct / 100;
	int64_t lo = ttl_ms - spread;
	uint64_t width = (uint64_t)(2 * spread) + 1;
	int64_t v = lo + (int64_t)(rnd % width);
	return v < 1 ? 1 : v;
}

void lv_cache_times_make(lv_cache_times_t *t, lv_usec_t filled_us, int64_t ttl_ms, int64_t swr_ms,
			 lv_usec_t fill_cost_us)
{
	if (ttl_ms < 0)
		ttl_ms = 0;
	if (ttl_ms > TTL_MAX_MS)
		ttl_ms = TTL_MAX_MS;
	if (swr_ms < 0)
		swr_ms = 0;
	if (swr_ms > TTL_MAX_MS)
		swr_ms = TTL_MAX_MS;
	t->filled_us = filled_us;
	t->expires_us = filled_us + ttl_ms * LV_USEC_PER_MS;
	t->stale_until_us = t->expires_us + swr_ms * LV_USEC_PER_MS;
	t->fill_cost_us = fill_cost_us < 0 ? 0 : fill_cost_us;
}

lv_cache_fresh_t lv_cache_freshness(const lv_cache_times_t *t, lv_usec_t now)
{
	if (now < t->expires_us)
		return LV_CACHE_FRESH;
	if (now < t->stale_until_us)
		return LV_CACHE_STALE;
	return LV_CACHE_EXPIRED;
}

bool lv_cache_xfetch(lv_usec_t now, lv_usec_t expires, lv_usec_t delta_us, double beta, double u01)
{
	if (!(beta > 0.0))
		return false;
	if (delta_us < 0)
		delta_us = 0;
	if (!(u01 > 0.0))
		u01 = DBL_MIN;
	if (u01 > 1.0)
		u01 = 1.0;
	/* -ln(u) >= 0, so the entry is refreshed somewhat before it expires. */
	double early = -(double)delta_us * beta * log(u01);
	return (double)now + early >= (double)expires;
}

double lv_cache_u01(uint64_t rnd)
{
	/* 53 random bits, shifted to 1..2^53, scaled into (0, 1]. */
	return (double)((rnd >> 11) + 1) * (1.0 / 9007199254740992.0);
}

uint64_t lv_cache_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}
