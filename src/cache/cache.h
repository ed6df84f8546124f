/* SPDX-License-Identifier: ISC */
/*
 * The result cache, as the proxy sees it: one lv_cache_t per process, shared
 * by every worker thread, holding the memory store (store.h), the table
 * generations (gens.h) and the per-rule counters; plus the policy that says
 * whether a statement may be cached and for how long.
 *
 * What the cache guarantees to a client:
 *  - Opt-in. Only statements matched by a [cache.rule] or carrying a
 *    `levee:cache` hint are cached; `levee:nocache` wins over both.
 *  - Only reads: a single SELECT or VALUES with no locking clause, no writing
 *    CTE, no SELECT INTO, sent outside a transaction (transaction mode: the
 *    client holds no server). Statements that call volatile functions
 *    (now(), random(), nextval(), ...) only with an explicit hint, or a rule
 *    that sets allow_volatile. Never for users in [cache] bypass_users.
 *  - Keys (key.h) cover the database, the user unless the rule's scope is
 *    shared, the session settings that change results, the statement text,
 *    its parameter types, values and formats, and the result formats. So a
 *    role never receives rows filled by another role unless the operator
 *    declared the rule shared, and row-level security holds.
 *  - A hit replays the bytes the server sent for the same request; a client
 *    cannot tell a hit from a miss except by speed.
 *  - Freshness: an entry is served for its TTL (jittered, so entries filled
 *    together do not expire together), then for `swr` more while exactly one
 *    refresh per process runs. Every write that passes through Levee bumps
 *    the generation of each table it touches when its transaction ends; an
 *    entry filled under an older generation is never served again. With
 *    Redis, generations are shared (INCR + PUBLISH), so every instance stops
 *    serving such entries as soon as the message arrives (milliseconds).
 *  - The remaining window: a write that does not pass through any Levee
 *    (psql straight to PostgreSQL, a trigger's side effect on another table,
 *    a function that writes) is seen only when the entry's TTL ends.
 */
#ifndef LEVEE_CACHE_CACHE_H
#define LEVEE_CACHE_CACHE_H

#include "cache/gens.h"
#include "cache/store.h"
#include "config/config.h"
#include "sql/classify.h"

#include <pthread.h>

#define LV_CACHE_MAX_RULES 64

/* What the policy decided for one statement. */
typedef struct lv_cache_policy {
	int rule;               /* index into cfg->cache_rules; -1 for a hint */
	int64_t ttl_ms;
	int64_t swr_ms;
	int64_t max_entry_size;
	int jitter_pct;
	int scope;              /* lv_cache_scope_t */
} lv_cache_policy_t;

/* Why a statement is not cached (for logs and SHOW CACHE). */
typedef enum lv_cache_skip {
	LV_CACHE_OK = 0,
	LV_CACHE_SKIP_NOT_MARKED,  /* no rule, no hint */
	LV_CACHE_SKIP_NOCACHE,     /* levee:nocache */
	LV_CACHE_SKIP_NOT_READ,    /* not a single plain read */
	LV_CACHE_SKIP_VOLATILE,    /* volatile functions without a hint */
	LV_CACHE_SKIP_BYPASS_USER, /* user in bypass_users */
} lv_cache_skip_t;

/* Counters of one rule (by name; the hint pseudo-rule is "(hint)"). */
typedef struct lv_cache_rule_stats {
	char name[LV_NAME_LEN];
	uint64_t hits, misses, stale, fills, coalesced, too_large; /* atomic */
} lv_cache_rule_stats_t;

typedef struct lv_cache {
	lv_cache_store_t *store;
	lv_cache_gens_t *gens;
	pthread_mutex_t rules_lock; /* guards the creation of rule slots */
	lv_cache_rule_stats_t rules[LV_CACHE_MAX_RULES + 1];
	int n_rules; /* atomic */
	size_t entry_cap; /* the largest entry L1 can hold (one stripe's share of the budget) */
	/* Keys whose last fill failed (error, too large): followers skip the
	 * cache for a moment instead of filling one after another. */
	uint64_t failed[64]; /* atomic; hash | 1 */
	uint64_t failed_at[64];
} lv_cache_t;

/* The process's cache with an L1 budget of memory bytes, striped so that an entry of
 * max_entry_size fits a stripe when it can; NULL on OOM. */
lv_cache_t *lv_cache_new(int64_t memory, int64_t max_entry_size);
void lv_cache_free(lv_cache_t *cache);

/*
 * Decides whether the statement classified in info (text sql[0..len)) may be
 * cached for user on database db, and how. Pure: reads cfg only.
 */
lv_cache_skip_t lv_cache_decide(const lv_config_t *cfg, const lv_sql_info_t *info, const char *sql, size_t len,
				const char *db, const char *user, lv_cache_policy_t *out);
/* True when some rule needs the fingerprint (so classification must compute it). */
bool lv_cache_needs_fingerprint(const lv_config_t *cfg);

/* Counters of rule (an index into cfg->cache_rules, or -1 for hints); never NULL. */
lv_cache_rule_stats_t *lv_cache_rule_stats(lv_cache_t *cache, const lv_config_t *cfg, int rule);
#define lv_cache_count(field) __atomic_add_fetch(&(field), 1, __ATOMIC_RELAXED)

/* Remembers that the fill of key hash failed just now / asks whether it did within window_us. */
void lv_cache_note_failed(lv_cache_t *cache, uint64_t hash, lv_usec_t now);
bool lv_cache_recently_failed(lv_cache_t *cache, uint64_t hash, lv_usec_t now, lv_usec_t window_us);

#endif
