/* SPDX-License-Identifier: ISC */
/*
 * The rule sections: [cache.rule NAME] (which statements the result cache
 * may answer, and for how long) and [queue.rule NAME] (which writes are
 * deferred to the write queue without a hint). Each has a small key table in
 * the same row format as config_keys.c, so the generic setter fills
 * lv_cfg_cache_rule_t and lv_cfg_queue_rule_t, unknown keys get "did you
 * mean" hints, and tools/check-config-docs.sh covers these keys too.
 *
 * Rules keep the file's order: the cache and the queue try them first to
 * last and the first match wins. A rule name may appear once per kind.
 *
 * Ownership: cfg->cache_rules and cfg->queue_rules are arrays owned by the
 * generation, grown while the file is read (lv_xrealloc: config loading
 * aborts on OOM). Each rule owns its tables array and strings, and a cache
 * rule with `match` owns the regex_t compiled at load time (regcomp with
 * REG_EXTENDED | REG_ICASE | REG_NOSUB), which users may run with regexec()
 * from any thread while they hold a reference to the generation. All of it
 * is freed by lv__rules_free() with the generation.
 */
#include "core/lv.h"

#include <ctype.h>
#include <regex.h>

#include "config/config_int.h"
#include "core/mem.h"

#define MS 1LL
#define SEC (1000 * MS)
#define DAY (24 * 3600 * SEC)

/* ---- Values ---- */

static int parse_fingerprint(const lv__key_t *k, const char *value, void *base, lv_err_t *err)
{
	char **dst = (char **)(void *)((char *)base + k->offset);
	size_t n = strlen(value);
	bool ok = n == 16;
	for (size_t i = 0; ok && i < n; i++)
		ok = isxdigit((unsigned char)value[i]);
	if (n && !ok)
		return lv_err_set(err, LV_EINVAL,
				  "expected 16 hex digits, a fingerprint as libpg_query writes it");
	lv_free(*dst);
	*dst = NULL;
	if (n) {
		*dst = lv_xstrdup(value);
		for (char *p = *dst; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	return 0;
}

static void free_match(lv_cfg_cache_rule_t *r)
{
	if (r->match_re) {
		regfree(r->match_re);
		lv_free(r->match_re);
		r->match_re = NULL;
	}
	lv_free(r->match);
	r->match = NULL;
}

/* match: compiled now, so a bad pattern is a load error and matching never compiles. */
static int parse_match(const lv__key_t *k, const char *value, void *base, lv_err_t *err)
{
	lv_cfg_cache_rule_t *r = base;
	regex_t *re = NULL;
	if (*value) {
		re = lv_xmalloc(sizeof(*re));
		int rc = regcomp(re, value, REG_EXTENDED | REG_ICASE | REG_NOSUB);
		if (rc != 0) {
			char msg[160];
			regerror(rc, re, msg, sizeof(msg));
			lv_free(re);
			return lv_err_set(err, LV_EINVAL, "invalid regex: %s", msg);
		}
	}
	free_match(r);
	r->match = *value ? lv_xstrdup(value) : NULL;
	r->match_re = re;
	return 0;
}

/* ---- The [cache.rule NAME] and [queue.rule NAME] tables ---- */

static const lv__enum_t cache_scopes[] = {
	{"user", LV_CACHE_SCOPE_USER},
	{"shared", LV_CACHE_SCOPE_SHARED},
	{NULL, 0},
};

/*
 * LV_CRULEKEY(key, ...) fills lv_cfg_cache_rule_t.key and LV_QRULEKEY(key, ...)
 * fills lv_cfg_queue_rule_t.key, with the arguments of LV_DBKEY in
 * config_dbs.c. LV_CRULEKEY_MS fills key_ms (a duration) and LV_CRULEKEY_PCT
 * key_pct (a percentage); their arguments are those of LV_KEY_MS without the
 * section. An empty default means "not set": such fields stay -1 (use the
 * [cache] value).
 */
#define LV_CRULEKEY(key, ty, def, lo, hi, flags, doc, ...)                                     \
	LV__KEY_ROW(lv_cfg_cache_rule_t, "cache.rule", #key, ty, key, def, lo, hi, flags, doc, \
		    __VA_ARGS__)
#define LV_CRULEKEY_MS(key, def, lo, hi, flags, doc, ...)                                     \
	LV__KEY_ROW(lv_cfg_cache_rule_t, "cache.rule", #key, DURATION, key##_ms, def, lo, hi, \
		    flags, doc, __VA_ARGS__)
#define LV_CRULEKEY_PCT(key, def, lo, hi, flags, doc, ...)                                    \
	LV__KEY_ROW(lv_cfg_cache_rule_t, "cache.rule", #key, PERCENT, key##_pct, def, lo, hi, \
		    flags, doc, __VA_ARGS__)
#define LV_QRULEKEY(key, ty, def, lo, hi, flags, doc, ...)                                     \
	LV__KEY_ROW(lv_cfg_queue_rule_t, "queue.rule", #key, ty, key, def, lo, hi, flags, doc, \
		    __VA_ARGS__)

#define RELOAD LV_CF_RELOAD

const lv__key_t lv__cache_rule_keys[] = {
	LV_CRULEKEY(tables, TABLES, "", 0, 0, RELOAD,
		    "Tables a statement may read for this rule to match.",
		    .aux = offsetof(lv_cfg_cache_rule_t, n_tables)),
	LV_CRULEKEY(fingerprint, STRING, "", 0, 0, RELOAD,
		    "Query fingerprint a statement must have for this rule to match.",
		    .parse = parse_fingerprint),
	LV_CRULEKEY(match, STRING, "", 0, 0, RELOAD | LV_CF_RAWMSG,
		    "Regular expression a statement's text must match for this rule to match.",
		    .parse = parse_match),
	LV_CRULEKEY(database, NAME, "", 0, 0, RELOAD,
		    "Database a statement must be sent to for this rule to match."),
	LV_CRULEKEY_MS(ttl, "", 1 * MS, 30 * DAY, RELOAD,
		       "How long results cached by this rule stay fresh; required."),
	LV_CRULEKEY_MS(swr, "", 0, 30 * DAY, RELOAD,
		       "Stale-while-revalidate window of this rule's results."),
	LV_CRULEKEY(max_entry_size, SIZE64, "", 1024, 1024LL * 1024 * 1024, RELOAD,
		    "Largest result this rule caches."),
	LV_CRULEKEY_PCT(jitter, "", 0, 50, RELOAD, "TTL jitter of this rule's results."),
	LV_CRULEKEY(scope, ENUM, "user", 0, 0, RELOAD,
		    "Whether this rule's results are cached per user or shared by all users.",
		    .names = cache_scopes),
	LV_CRULEKEY(allow_volatile, BOOL, "false", 0, 0, RELOAD,
		    "Cache statements that call volatile functions such as now() or random()."),
	LV_CRULEKEY(key, NAME, "", 0, 0, RELOAD,
		    "Key column (id) of point reads and writes: invalidate by row, not table."),
};

const size_t lv__n_cache_rule_keys = LV_ARRAY_LEN(lv__cache_rule_keys);

const lv__key_t lv__queue_rule_keys[] = {
	LV_QRULEKEY(tables, TABLES, "", 0, 0, RELOAD,
		    "Tables whose writes this rule sends to the write queue; required.",
		    .aux = offsetof(lv_cfg_queue_rule_t, n_tables)),
	LV_QRULEKEY(database, NAME, "", 0, 0, RELOAD,
		    "Database a write must be sent to for this rule to match."),
	LV_QRULEKEY(key, NAME, "", 0, 0, RELOAD,
		    "Ordering key of this rule's writes; writes with one key apply in order."),
};

const size_t lv__n_queue_rule_keys = LV_ARRAY_LEN(lv__queue_rule_keys);

/* ---- Sections ---- */

void lv__rules_section(lv__load_t *ld, const char *kind, const char *name)
{
	lv_config_t *cfg = ld->cfg;
	bool is_cache = strcmp(kind, "cache.rule") == 0;

	ld->sect = LV__SECT_SKIP;
	if (!lv__section_name_ok(ld, kind, "rule", name))
		return;

	size_t i;
	if (is_cache) {
		cfg->cache_rules =
			lv__section_append(cfg->cache_rules, &cfg->n_cache_rules,
					   &ld->cap_cache_rules, sizeof(*cfg->cache_rules),
					   &ld->cache_rule_lines, lv__n_cache_rule_keys, &i);
		lv_cfg_cache_rule_t *r = &cfg->cache_rules[i];
		memcpy(r->name, name, strlen(name) + 1);
		r->swr_ms = -1;
		r->max_entry_size = -1;
		r->jitter_pct = -1;
		r->line = ld->line;
		lv__values_default(lv__cache_rule_keys, lv__n_cache_rule_keys, r, ld->dir);
		lv__section_enter(ld, LV__SECT_CACHE_RULE, i, kind, name);
	} else {
		cfg->queue_rules =
			lv__section_append(cfg->queue_rules, &cfg->n_queue_rules,
					   &ld->cap_queue_rules, sizeof(*cfg->queue_rules),
					   &ld->queue_rule_lines, lv__n_queue_rule_keys, &i);
		lv_cfg_queue_rule_t *r = &cfg->queue_rules[i];
		memcpy(r->name, name, strlen(name) + 1);
		r->line = ld->line;
		lv__values_default(lv__queue_rule_keys, lv__n_queue_rule_keys, r, ld->dir);
		lv__section_enter(ld, LV__SECT_QUEUE_RULE, i, kind, name);
	}
}

/* A rule's database must have a [database NAME] section, or the rule could never match. */
static void check_database(lv__load_t *ld, const char *kind, const char *rule, const char *db,
			   int line)
{
	if (db[0] && line > 0 && !lv_config_find_db(ld->cfg, db))
		lv__load_error(ld, ld->path, line,
			       "[%s %s] names database \"%s\", which has no [database %s] section",
			       kind, rule, db, db);
}

static void check_cache_rule(lv__load_t *ld, size_t i)
{
	const lv_cfg_cache_rule_t *r = &ld->cfg->cache_rules[i];
	const int *lines = ld->cache_rule_lines;
	const lv__key_t *t = lv__cache_rule_keys;
	size_t n = lv__n_cache_rule_keys;

	if (lv__key_line(lines, t, n, i, "ttl") == 0)
		lv__load_error(ld, ld->path, r->line, "missing ttl in [cache.rule %s]", r->name);
	/* A refused condition was reported; do not also say that none is set. */
	bool refused = lv__key_line(lines, t, n, i, "tables") < 0 ||
		       lv__key_line(lines, t, n, i, "fingerprint") < 0 ||
		       lv__key_line(lines, t, n, i, "match") < 0;
	if (!r->n_tables && !r->fingerprint && !r->match && !refused)
		lv__load_error(ld, ld->path, r->line,
			       "[cache.rule %s] needs at least one of tables, fingerprint and "
			       "match",
			       r->name);
	check_database(ld, "cache.rule", r->name, r->database,
		       lv__key_line(lines, t, n, i, "database"));
	for (size_t j = 0; j < i; j++) {
		if (strcmp(ld->cfg->cache_rules[j].name, r->name) == 0) {
			lv__load_error(ld, ld->path, r->line,
				       "duplicate cache rule \"%s\" (first defined at line %d)",
				       r->name, ld->cfg->cache_rules[j].line);
			break;
		}
	}
}

static void check_queue_rule(lv__load_t *ld, size_t i)
{
	const lv_cfg_queue_rule_t *r = &ld->cfg->queue_rules[i];
	const int *lines = ld->queue_rule_lines;
	const lv__key_t *t = lv__queue_rule_keys;
	size_t n = lv__n_queue_rule_keys;

	if (lv__key_line(lines, t, n, i, "tables") == 0)
		lv__load_error(ld, ld->path, r->line, "missing tables in [queue.rule %s]", r->name);
	check_database(ld, "queue.rule", r->name, r->database,
		       lv__key_line(lines, t, n, i, "database"));
	for (size_t j = 0; j < i; j++) {
		if (strcmp(ld->cfg->queue_rules[j].name, r->name) == 0) {
			lv__load_error(ld, ld->path, r->line,
				       "duplicate queue rule \"%s\" (first defined at line %d)",
				       r->name, ld->cfg->queue_rules[j].line);
			break;
		}
	}
}

void lv__rules_finish(lv__load_t *ld)
{
	for (size_t i = 0; i < ld->cfg->n_cache_rules; i++)
		check_cache_rule(ld, i);
	for (size_t i = 0; i < ld->cfg->n_queue_rules; i++)
		check_queue_rule(ld, i);
}

void lv__rules_free(lv_config_t *cfg)
{
	for (size_t i = 0; i < cfg->n_cache_rules; i++) {
		free_match(&cfg->cache_rules[i]);
		lv__values_free(lv__cache_rule_keys, lv__n_cache_rule_keys, &cfg->cache_rules[i]);
	}
	for (size_t i = 0; i < cfg->n_queue_rules; i++)
		lv__values_free(lv__queue_rule_keys, lv__n_queue_rule_keys, &cfg->queue_rules[i]);
	lv_free(cfg->cache_rules);
	lv_free(cfg->queue_rules);
	cfg->cache_rules = NULL;
	cfg->queue_rules = NULL;
	cfg->n_cache_rules = cfg->n_queue_rules = 0;
}

/* ---- SHOW CONFIG ---- */

/* Is row k's field at its "take the [cache] value" mark (-1)? */
static bool is_unset(const lv__key_t *k, const void *base)
{
	const void *f = (const char *)base + k->offset;
	switch (k->type) {
	case LV__T_INT:
	case LV__T_PERCENT:
		return *(const int *)f == -1;
	case LV__T_DURATION:
	case LV__T_SIZE64:
		return *(const int64_t *)f == -1;
	default:
		return false;
	}
}

static void visit_rule(const lv__key_t *keys, size_t n, const char *kind, const char *name,
		       const void *base, lv_buf_t *b, lv_config_visit_fn fn, void *arg)
{
	char section[LV_NAME_LEN + 16];
	snprintf(section, sizeof(section), "%s %s", kind, name);
	for (size_t i = 0; i < n; i++) {
		const lv__key_t *k = &keys[i];
		lv_buf_reset(b);
		bool ok = is_unset(k, base) || lv__value_render(k, base, true, b);
		if (!ok || !lv_buf_put_u8(b, 0))
			lv_buf_reset(b);
		const char *value = b->len ? (const char *)b->data : "";
		fn(arg, section, k->key, value, (k->flags & LV_CF_RELOAD) != 0);
	}
}

void lv__rules_for_each(const lv_config_t *cfg, lv_config_visit_fn fn, void *arg)
{
	lv_buf_t b;
	lv_buf_init(&b);
	for (size_t i = 0; i < cfg->n_cache_rules; i++)
		visit_rule(lv__cache_rule_keys, lv__n_cache_rule_keys, "cache.rule",
			   cfg->cache_rules[i].name, &cfg->cache_rules[i], &b, fn, arg);
	for (size_t i = 0; i < cfg->n_queue_rules; i++)
		visit_rule(lv__queue_rule_keys, lv__n_queue_rule_keys, "queue.rule",
			   cfg->queue_rules[i].name, &cfg->queue_rules[i], &b, fn, arg);
	lv_buf_cleanup(&b);
}
