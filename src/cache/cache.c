/* SPDX-License-Identifier: ISC */
/*
 * The process-wide result cache object and the caching policy; see cache.h.
 * Owns the memory store and the table generations (both live as long as the
 * process) and the per-rule counters (slots are created on first use, by
 * name, so a reload that keeps a rule keeps its counters; slots are never
 * freed). Thread-safe: the policy is pure, the counters are atomics, slot
 * creation takes rules_lock.
 */
#include "core/lv.h"
#include "cache/cache.h"

#include "core/mem.h"
#include "core/str.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <regex.h>
#include <strings.h>

lv_cache_t *lv_cache_new(int64_t memory, int64_t max_entry_size)
{
	lv_cache_t *cache = lv_calloc(1, sizeof(*cache));
	if (!cache)
		return NULL;
	/* The L1 hash key is seeded per process (the Redis key is a SHA-256 and needs no seed). */
	uint8_t seed[16];
	if (RAND_bytes(seed, sizeof(seed)) == 1)
		lv_cache_key_set_seed(seed);
	/* Stripes each hold an equal share of the budget and an entry must fit one share:
	 * fewer stripes when the budget is small against max_entry_size. */
	size_t budget = (size_t)(memory > 0 ? memory : 0);
	size_t stripes = LV_CACHE_STORE_STRIPES;
	while (stripes > 1 && max_entry_size > 0 && budget / stripes < (size_t)max_entry_size)
		stripes /= 2;
	cache->entry_cap = budget / stripes;
	cache->gens = lv_cache_gens_new();
	cache->store = cache->gens ? lv_cache_store_new_striped(budget, cache->gens, stripes) : NULL;
	if (!cache->store) {
		lv_cache_gens_free(cache->gens);
		lv_free(cache);
		return NULL;
	}
	pthread_mutex_init(&cache->rules_lock, NULL);
	snprintf(cache->rules[0].name, sizeof(cache->rules[0].name), "(hint)");
	cache->n_rules = 1;
	return cache;
}

void lv_cache_free(lv_cache_t *cache)
{
	if (!cache)
		return;
	lv_cache_store_free(cache->store);
	lv_cache_gens_free(cache->gens);
	pthread_mutex_destroy(&cache->rules_lock);
	lv_free(cache);
}

bool lv_cache_needs_fingerprint(const lv_config_t *cfg)
{
	for (size_t i = 0; i < cfg->n_cache_rules; i++)
		if (cfg->cache_rules[i].fingerprint)
			return true;
	return false;
}

/* The table name without a schema, as rules list them. */
static const char *bare_name(const char *t)
{
	const char *dot = strrchr(t, '.');
	return dot ? dot + 1 : t;
}

static bool rule_has_table(const lv_cfg_cache_rule_t *r, const char *t)
{
	for (int i = 0; i < r->n_tables; i++)
		if (strcasecmp(r->tables[i], t) == 0)
			return true;
	return false;
}

/*
 * One statement as the rules see it. The normalized text (a parse) and the
 * fingerprint's hex are worked out on first need, once for all the rules.
 */
typedef struct rule_input {
	const lv_sql_info_t *info;
	const char *sql;
	size_t len;
	const char *db;
	char fp[17];       /* info->fingerprint in hex; "" until a rule needs it */
	bool is_norm_done; /* norm is set (or failed) */
	const char *norm;  /* constants as $n; NULL when the text does not normalize */
	char *norm_buf;    /* the caller's scratch for norm, norm_cap bytes */
	size_t norm_cap;
	char *norm_heap; /* owned: the text when it does not fit norm_buf */
} rule_input_t;

static const char *rule_input_norm(rule_input_t *in)
{
	if (in->is_norm_done)
		return in->norm;
	in->is_norm_done = true;
	char *out = in->norm_buf;
	size_t cap = in->norm_cap;
	if (in->len + 64 > cap) {
		cap = in->len * 2 + 64;
		out = in->norm_heap = lv_malloc(cap);
		if (!out)
			return NULL;
	}
	if (lv_sql_normalize(in->sql, in->len, out, cap) >= 0)
		in->norm = out;
	return in->norm;
}

static bool rule_matches(const lv_cfg_cache_rule_t *r, rule_input_t *in)
{
	const lv_sql_info_t *info = in->info;
	if (r->database[0] && strcmp(r->database, in->db) != 0)
		return false;
	if (r->n_tables > 0) {
		if (info->n_read == 0 || info->read_overflow)
			return false;
		for (unsigned i = 0; i < info->n_read; i++)
			if (!rule_has_table(r, bare_name(lv_sql_table_read(info, i))))
				return false;
	}
	if (r->fingerprint) {
		if (!info->fingerprint)
			return false;
		if (!in->fp[0])
			snprintf(in->fp, sizeof(in->fp), "%016llx",
				 (unsigned long long)info->fingerprint);
		if (strcmp(in->fp, r->fingerprint) != 0)
			return false;
	}
	if (r->match && r->match_re) {
		/* Normalized text: constants are $n, so one rule covers every value. */
		const char *norm = rule_input_norm(in);
		if (!norm || regexec((const regex_t *)r->match_re, norm, 0, NULL, 0) != 0)
			return false;
	}
	return true;
}

lv_cache_skip_t lv_cache_decide(const lv_config_t *cfg, const lv_sql_info_t *info, const char *sql, size_t len,
				const char *db, const char *user, lv_cache_policy_t *out)
{
	const lv_sql_hints_t *h = &info->hints;
	if (h->want_no_cache)
		return LV_CACHE_SKIP_NOCACHE;
	int rule = -1;
	if (!h->want_cache) {
		char norm_buf[4096]; /* not zeroed: written only when a match rule needs it */
		rule_input_t in = {.info = info,
				   .sql = sql,
				   .len = len,
				   .db = db,
				   .norm_buf = norm_buf,
				   .norm_cap = sizeof(norm_buf)};
		for (size_t i = 0; i < cfg->n_cache_rules && rule < 0; i++)
			if (rule_matches(&cfg->cache_rules[i], &in))
				rule = (int)i;
		lv_free(in.norm_heap);
		if (rule < 0)
			return LV_CACHE_SKIP_NOT_MARKED;
	}
	bool plain_read = (info->kind == LV_SQL_SELECT || info->kind == LV_SQL_VALUES) && !info->is_multi &&
			  info->n_statements == 1 && info->is_read_only && !info->has_locking_clause &&
			  !info->has_writing_cte && !info->has_select_into && !info->calls_write_function;
	if (!plain_read)
		return LV_CACHE_SKIP_NOT_READ;
	const lv_cfg_cache_rule_t *r = rule >= 0 ? &cfg->cache_rules[rule] : NULL;
	if (info->calls_volatile && !h->want_cache && !(r && r->allow_volatile))
		return LV_CACHE_SKIP_VOLATILE;
	if (cfg->cache.bypass_users && lv_config_list_has(cfg->cache.bypass_users, user))
		return LV_CACHE_SKIP_BYPASS_USER;

	out->rule = rule;
	out->ttl_ms = h->cache_ttl_ms ? h->cache_ttl_ms : r ? r->ttl_ms : cfg->cache.default_ttl_ms;
	out->swr_ms = h->cache_swr_ms ? h->cache_swr_ms : (r && r->swr_ms >= 0) ? r->swr_ms : cfg->cache.swr_ms;
	out->max_entry_size = (r && r->max_entry_size >= 0) ? r->max_entry_size : cfg->cache.max_entry_size;
	out->jitter_pct = (r && r->jitter_pct >= 0) ? r->jitter_pct : cfg->cache.jitter_pct;
	out->scope = r ? r->scope : LV_CACHE_SCOPE_USER;
	return LV_CACHE_OK;
}

lv_cache_rule_stats_t *lv_cache_rule_stats(lv_cache_t *cache, const lv_config_t *cfg, int rule)
{
	if (rule < 0 || (size_t)rule >= cfg->n_cache_rules)
		return &cache->rules[0];
	const char *name = cfg->cache_rules[rule].name;
	int n = __atomic_load_n(&cache->n_rules, __ATOMIC_ACQUIRE);
	for (int i = 1; i < n; i++)
		if (strcmp(cache->rules[i].name, name) == 0)
			return &cache->rules[i];
	pthread_mutex_lock(&cache->rules_lock);
	n = cache->n_rules;
	lv_cache_rule_stats_t *s = NULL;
	for (int i = 1; i < n && !s; i++)
		if (strcmp(cache->rules[i].name, name) == 0)
			s = &cache->rules[i];
	if (!s && n <= LV_CACHE_MAX_RULES) {
		s = &cache->rules[n];
		if (!lv_strlcpy(s->name, name, sizeof(s->name)))
			s->name[sizeof(s->name) - 1] = 0;
		__atomic_store_n(&cache->n_rules, n + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&cache->rules_lock);
	return s ? s : &cache->rules[0];
}

void lv_cache_note_failed(lv_cache_t *cache, uint64_t hash, lv_usec_t now)
{
	unsigned i = (unsigned)(hash % LV_ARRAY_LEN(cache->failed));
	__atomic_store_n(&cache->failed_at[i], (uint64_t)now, __ATOMIC_RELAXED);
	__atomic_store_n(&cache->failed[i], hash | 1, __ATOMIC_RELEASE);
}

bool lv_cache_recently_failed(lv_cache_t *cache, uint64_t hash, lv_usec_t now, lv_usec_t window_us)
{
	unsigned i = (unsigned)(hash % LV_ARRAY_LEN(cache->failed));
	if (__atomic_load_n(&cache->failed[i], __ATOMIC_ACQUIRE) != (hash | 1))
		return false;
	return now - (lv_usec_t)__atomic_load_n(&cache->failed_at[i], __ATOMIC_RELAXED) < window_us;
}
