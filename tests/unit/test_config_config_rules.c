/* levee-test-deps: src/config/config.c src/config/config_keys.c src/config/config_dbs.c src/config/auth_file.c tests/unit/helpers/config_files.c */
/* SPDX-License-Identifier: ISC */
/*
 * Tests of the [cache] and [queue] settings and of the [cache.rule NAME] and
 * [queue.rule NAME] sections (src/config/config_rules.c, plus the new value
 * types of config_keys.c): defaults, every key's accepted and refused values
 * with their file:line messages, rules parsed into their structs in file
 * order, regex compilation, the rule-level checks, SHOW CONFIG rows and the
 * reload diff. `make valgrind-unit` runs it under valgrind, which fails on a
 * leak, so every load here (good or bad) must free all it made, regexes
 * included.
 *
 * Run from the repository root, as `make check-unit` does.
 */
#include "core/lv.h"

#include <regex.h>
#include <setjmp.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/config_int.h"
#include "core/mem.h"
#include "helpers/config_files.h"

#define FIXTURES "tests/unit/fixtures/config"

/* ---- Helpers ---- */

/* Asserts that text fails to load with exactly the error lines want. */
static void expect_errors(const char *text, const char *want)
{
	char *got = lv_test_load_errors("t.ini", text);
	if (strcmp(got, want) != 0)
		print_error("--- file:\n%s--- expected:\n%s--- got:\n%s", text, want, got);
	assert_string_equal(got, want);
	lv_free(got);
}

/* Collects SHOW CONFIG rows as "section.key=value\n". */
static void show_cb(void *arg, const char *section, const char *key, const char *value,
		    bool is_reloadable)
{
	assert_true(lv_buf_printf(arg, "%s.%s=%s%s\n", section, key, value,
				  is_reloadable ? "" : " (restart)"));
}

/* Asserts that SHOW CONFIG of cfg has each line of want (a NULL-terminated list). */
static void expect_shown(const lv_config_t *cfg, const char *const *want)
{
	lv_buf_t all;
	lv_buf_init(&all);
	lv_config_for_each(cfg, show_cb, &all);
	const char *text = lv_test_buf_str(&all);
	for (; *want; want++) {
		if (!strstr(text, *want))
			print_error("missing \"%s\" in:\n%s", *want, text);
		assert_non_null(strstr(text, *want));
	}
	lv_buf_cleanup(&all);
}

#define HEAD "[levee]\nauth_type = trust\n"

/* ---- [cache] and [queue] ---- */

static void test_defaults(void **state)
{
	lv_config_t *cfg = lv_test_load_ok(FIXTURES "/valid/minimal.ini");
	assert_true(cfg->cache.memory == 256LL << 20);
	assert_true(cfg->cache.max_entry_size == 1LL << 20);
	assert_int_equal(cfg->cache.default_ttl_ms, 30000);
	assert_int_equal(cfg->cache.swr_ms, 0);
	assert_int_equal(cfg->cache.jitter_pct, 10);
	assert_true(cfg->cache.xfetch_beta == 0.0);
	assert_null(cfg->cache.bypass_users);
	assert_true(cfg->cache.redis_l2);
	assert_int_equal(cfg->cache.lock_timeout_ms, 2000);
	assert_int_equal(cfg->cache.lock_wait_ms, 200);
	assert_true(cfg->queue.consumers);
	assert_int_equal(cfg->queue.batch_size, 100);
	assert_int_equal(cfg->queue.max_wait_ms, 50);
	assert_int_equal(cfg->queue.max_attempts, 5);
	assert_int_equal(cfg->queue.retry_backoff_ms, 100);
	assert_int_equal(cfg->queue.retry_backoff_max_ms, 30000);
	assert_int_equal(cfg->queue.claim_idle_ms, 30000);
	assert_int_equal(cfg->queue.max_inflight, 1000);
	assert_true(cfg->queue.max_length == 1000000);
	assert_int_equal(cfg->queue.wait_replicas, 0);
	assert_int_equal(cfg->queue.wait_timeout_ms, 100);
	assert_string_equal(cfg->queue.stream_prefix, "levee:q");
	assert_int_equal(cfg->n_cache_rules, 0);
	assert_null(cfg->cache_rules);
	assert_int_equal(cfg->n_queue_rules, 0);
	assert_null(cfg->queue_rules);

	static const char *const shown[] = {
		"cache.memory=256MB (restart)\n",
		"cache.max_entry_size=1MB\n",
		"cache.default_ttl=30s\n",
		"cache.swr=0\n",
		"cache.jitter=10%\n",
		"cache.xfetch_beta=0\n",
		"cache.bypass_users=\n",
		"cache.redis_l2=true\n",
		"cache.lock_timeout=2s\n",
		"cache.lock_wait=200ms\n",
		"queue.consumers=true\n",
		"queue.batch_size=100\n",
		"queue.max_wait=50ms\n",
		"queue.max_attempts=5\n",
		"queue.retry_backoff=100ms\n",
		"queue.retry_backoff_max=30s\n",
		"queue.claim_idle=30s\n",
		"queue.max_inflight=1000\n",
		"queue.max_length=1000000\n",
		"queue.wait_replicas=0\n",
		"queue.wait_timeout=100ms\n",
		"queue.stream_prefix=levee:q (restart)\n",
		NULL,
	};
	expect_shown(cfg, shown);
	lv_config_unref(cfg);
}

static void test_values(void **state)
{
	lv_config_t *cfg = lv_test_load_ok(lv_test_write_temp(
		"v.ini",
		HEAD "[cache]\nmemory = 0\nmax_entry_size = 4MB\ndefault_ttl = 5min\n"
		     "swr = 1h\njitter = 25%\nxfetch_beta = 1.25\n"
		     "bypass_users = migrations, audit\nredis_l2 = off\n"
		     "lock_timeout = 10s\nlock_wait = 0\n"
		     "[queue]\nconsumers = no\nbatch_size = 10000\nmax_wait = 0\n"
		     "max_attempts = 1\nretry_backoff = 1ms\nretry_backoff_max = 1d\n"
		     "claim_idle = 1s\nmax_inflight = 1000000\nmax_length = 2000000\n"
		     "wait_replicas = 16\nwait_timeout = 1min\nstream_prefix = app:{q}\n"));
	assert_true(cfg->cache.memory == 0);
	assert_true(cfg->cache.max_entry_size == 4LL << 20);
	assert_int_equal(cfg->cache.default_ttl_ms, 300000);
	assert_int_equal(cfg->cache.swr_ms, 3600000);
	assert_int_equal(cfg->cache.jitter_pct, 25);
	assert_true(cfg->cache.xfetch_beta == 1.25);
	assert_string_equal(cfg->cache.bypass_users, "migrations, audit");
	assert_true(lv_config_list_has(cfg->cache.bypass_users, "audit"));
	assert_false(cfg->cache.redis_l2);
	assert_int_equal(cfg->cache.lock_timeout_ms, 10000);
	assert_int_equal(cfg->cache.lock_wait_ms, 0);
	assert_false(cfg->queue.consumers);
	assert_int_equal(cfg->queue.batch_size, 10000);
	assert_int_equal(cfg->queue.max_wait_ms, 0);
	assert_int_equal(cfg->queue.max_attempts, 1);
	assert_int_equal(cfg->queue.retry_backoff_ms, 1);
	assert_int_equal(cfg->queue.retry_backoff_max_ms, 86400000);
	assert_int_equal(cfg->queue.claim_idle_ms, 1000);
	assert_int_equal(cfg->queue.max_inflight, 1000000);
	assert_true(cfg->queue.max_length == 2000000);
	assert_int_equal(cfg->queue.wait_replicas, 16);
	assert_int_equal(cfg->queue.wait_timeout_ms, 60000);
	assert_string_equal(cfg->queue.stream_prefix, "app:{q}");
	lv_config_unref(cfg);
	char *e = lv_test_load_errors("t.ini", HEAD "[queue]\nmax_length = 3000000000\n");
	assert_string_equal(e, "t.ini:4: invalid value \"3000000000\" for max_length: expected an "
			       "integer from 1 to 1000000000\n");
	lv_free(e);

	cfg = lv_test_load_ok(lv_test_write_temp("v2.ini",
						 HEAD "[cache]\njitter = 0\nxfetch_beta = .5\n"
						      "[queue]\nmax_length = 1000000000\n"
						      "stream_prefix = app:{q}\n"));
	assert_int_equal(cfg->cache.jitter_pct, 0);
	assert_true(cfg->cache.xfetch_beta == 0.5);
	assert_true(cfg->queue.max_length == 1000000000);
	assert_string_equal(cfg->queue.stream_prefix, "app:{q}");
	static const char *const shown[] = {
		"cache.jitter=0%\n",
		"cache.xfetch_beta=0.5\n",
		"queue.max_length=1000000000\n",
		"queue.stream_prefix=app:{q} (restart)\n",
		NULL,
	};
	expect_shown(cfg, shown);
	lv_config_unref(cfg);
	/* "50 %" and "50" are the same value. */
	cfg = lv_test_load_ok(lv_test_write_temp("v3.ini", HEAD "[cache]\njitter = 50 %\n"));
	assert_int_equal(cfg->cache.jitter_pct, 50);
	lv_config_unref(cfg);
}

/* One refused value per new key; the message is the line's whole error text. */
static void test_bad_values(void **state)
{
	static const struct {
		const char *section, *key, *value, *msg;
	} cases[] = {
		{"cache", "memory", "lots",
		 "expected a size in bytes from 0 to 1099511627776 "
		 "(units kB, MB and GB are accepted)"},
		{"cache", "max_entry_size", "512",
		 "expected a size in bytes from 1024 to 1073741824 "
		 "(units kB, MB and GB are accepted)"},
		{"cache", "default_ttl", "0",
		 "expected a duration from 1ms to 30d, such as 500ms, "
		 "30s, 5min or 1h"},
		{"cache", "swr", "31d",
		 "expected a duration from 0 to 30d, such as 500ms, 30s, 5min "
		 "or 1h"},
		{"cache", "jitter", "51%", "expected a percentage from 0 to 50, such as 10%"},
		{"cache", "jitter", "-1", "expected a percentage from 0 to 50, such as 10%"},
		{"cache", "jitter", "10%%", "expected a percentage from 0 to 50, such as 10%"},
		{"cache", "jitter", "%", "expected a percentage from 0 to 50, such as 10%"},
		{"cache", "xfetch_beta", "-1", "expected a number from 0 to 100, such as 0.5"},
		{"cache", "xfetch_beta", "1e3", "expected a number from 0 to 100, such as 0.5"},
		{"cache", "xfetch_beta", "nan", "expected a number from 0 to 100, such as 0.5"},
		{"cache", "xfetch_beta", "1.2.3", "expected a number from 0 to 100, such as 0.5"},
		{"cache", "xfetch_beta", "100.5", "expected a number from 0 to 100, such as 0.5"},
		{"cache", "bypass_users", "a,,b", "expected a comma-separated list of user names"},
		{"cache", "redis_l2", "maybe", "expected true or false"},
		{"cache", "lock_timeout", "5ms",
		 "expected a duration from 10ms to 1h, such as "
		 "500ms, 30s, 5min or 1h"},
		{"cache", "lock_wait", "2min",
		 "expected a duration from 0 to 1min, such as 500ms, "
		 "30s, 5min or 1h"},
		{"queue", "consumers", "2", "expected true or false"},
		{"queue", "batch_size", "0", "expected an integer from 1 to 10000"},
		{"queue", "max_wait", "1.5s",
		 "expected a duration from 0 to 1min, such as 500ms, "
		 "30s, 5min or 1h"},
		{"queue", "max_attempts", "1001", "expected an integer from 1 to 1000"},
		{"queue", "retry_backoff", "0",
		 "expected a duration from 1ms to 1h, such as 500ms, "
		 "30s, 5min or 1h"},
		{"queue", "retry_backoff_max", "2d",
		 "expected a duration from 1ms to 1d, such as "
		 "500ms, 30s, 5min or 1h"},
		{"queue", "claim_idle", "999ms",
		 "expected a duration from 1s to 1d, such as 500ms, "
		 "30s, 5min or 1h"},
		{"queue", "max_inflight", "1000001", "expected an integer from 1 to 1000000"},
		{"queue", "max_length", "0", "expected an integer from 1 to 1000000000"},
		{"queue", "max_length", "1e6", "expected an integer from 1 to 1000000000"},
		{"queue", "wait_replicas", "17", "expected an integer from 0 to 16"},
		{"queue", "wait_timeout", "0",
		 "expected a duration from 1ms to 1min, such as 500ms, "
		 "30s, 5min or 1h"},
		{"queue", "stream_prefix", "a b",
		 "expected a Redis key prefix of 1 to 63 bytes "
		 "without spaces"},
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		char text[256], want[512];
		snprintf(text, sizeof(text), HEAD "[%s]\n%s = %s\n", cases[i].section, cases[i].key,
			 cases[i].value);
		snprintf(want, sizeof(want), "t.ini:4: invalid value \"%s\" for %s: %s\n",
			 cases[i].value, cases[i].key, cases[i].msg);
		expect_errors(text, want);
	}
	/* An empty stream_prefix is refused too (a string setting left empty is unset). */
	expect_errors(HEAD "[queue]\nstream_prefix =\n",
		      "t.ini:4: invalid value \"\" for stream_prefix: expected a Redis key prefix "
		      "of 1 to 63 bytes without spaces\n");
	/* Keys in the wrong fixed section are pointed home. */
	expect_errors(
		HEAD "[cache]\nbatch_size = 5\n[queue]\nttl = 1s\n",
		"t.ini:4: unknown setting \"batch_size\" in [cache]; it belongs in [queue]\n"
		"t.ini:6: unknown setting \"ttl\" in [queue]; it belongs in [cache.rule NAME]\n");
	expect_errors(HEAD "[cache]\njiter = 5\n",
		      "t.ini:4: unknown setting \"jiter\" in [cache]; did you mean \"jitter\"?\n");
}

static void test_parsers(void **state)
{
	double d;
	assert_int_equal(lv__parse_float("0", &d), 0);
	assert_true(d == 0.0);
	assert_int_equal(lv__parse_float("12.5", &d), 0);
	assert_true(d == 12.5);
	assert_int_equal(lv__parse_float(".25", &d), 0);
	assert_true(d == 0.25);
	assert_true(lv__parse_float("", &d) < 0);
	assert_true(lv__parse_float(".", &d) < 0);
	assert_true(lv__parse_float("+1", &d) < 0);
	assert_true(lv__parse_float("1,5", &d) < 0);
	assert_true(lv__parse_float("inf", &d) < 0);
	assert_true(lv__parse_float("0x10", &d) < 0);
}

/* ---- Rules ---- */

static void test_rules_parse(void **state)
{
	lv_config_t *cfg = lv_test_load_ok(FIXTURES "/valid/cache_rules.ini");
	assert_true(cfg->cache.memory == 1LL << 30);
	assert_int_equal(cfg->cache.jitter_pct, 20);

	/* File order, not name order. */
	assert_int_equal(cfg->n_cache_rules, 3);
	const lv_cfg_cache_rule_t *r = &cfg->cache_rules[0];
	assert_string_equal(r->name, "hot_posts");
	assert_int_equal(r->line, 8);
	assert_int_equal(r->n_tables, 3);
	assert_string_equal(r->tables[0], "posts");
	assert_string_equal(r->tables[1], "authors");
	assert_string_equal(r->tables[2], "comments");
	assert_null(r->fingerprint);
	assert_null(r->match);
	assert_null(r->match_re);
	assert_string_equal(r->database, "app");
	assert_int_equal(r->ttl_ms, 30000);
	assert_int_equal(r->swr_ms, 60000);
	assert_true(r->max_entry_size == -1);
	assert_int_equal(r->jitter_pct, -1);
	assert_int_equal(r->scope, LV_CACHE_SCOPE_USER);
	assert_false(r->allow_volatile);

	r = &cfg->cache_rules[1];
	assert_string_equal(r->name, "by_fingerprint");
	assert_int_equal(r->line, 14);
	assert_int_equal(r->n_tables, 0);
	assert_null(r->tables);
	assert_string_equal(r->fingerprint, "0123456789abcdef");
	assert_string_equal(r->database, "");
	assert_int_equal(r->ttl_ms, 500);
	assert_int_equal(r->swr_ms, -1);
	assert_true(r->max_entry_size == 64 * 1024);
	assert_int_equal(r->jitter_pct, 0);
	assert_int_equal(r->scope, LV_CACHE_SCOPE_SHARED);
	assert_true(r->allow_volatile);

	r = &cfg->cache_rules[2];
	assert_string_equal(r->name, "countries");
	assert_string_equal(r->match, "^select .* from countries");
	assert_non_null(r->match_re);
	/* Compiled extended and case-insensitive. */
	assert_int_equal(
		regexec(r->match_re, "SELECT name FROM Countries WHERE id = $1", 0, NULL, 0), 0);
	assert_int_equal(regexec(r->match_re, "select 1 from countriez", 0, NULL, 0), REG_NOMATCH);
	assert_int_equal(r->ttl_ms, 3600000);
	assert_int_equal(r->jitter_pct, 5);

	assert_int_equal(cfg->n_queue_rules, 2);
	const lv_cfg_queue_rule_t *q = &cfg->queue_rules[0];
	assert_string_equal(q->name, "analytics");
	assert_int_equal(q->line, 31);
	assert_int_equal(q->n_tables, 2);
	assert_string_equal(q->tables[0], "page_views");
	assert_string_equal(q->tables[1], "clicks");
	assert_string_equal(q->database, "app");
	assert_string_equal(q->key, "views");
	q = &cfg->queue_rules[1];
	assert_string_equal(q->name, "audit");
	assert_int_equal(q->n_tables, 1);
	assert_string_equal(q->tables[0], "audit_log");
	assert_string_equal(q->database, "");
	assert_string_equal(q->key, "");

	/* SHOW CONFIG has a row per rule key; unset overrides are empty. */
	static const char *const shown[] = {
		"cache.rule hot_posts.tables=posts, authors, comments\n",
		"cache.rule hot_posts.fingerprint=\n",
		"cache.rule hot_posts.match=\n",
		"cache.rule hot_posts.database=app\n",
		"cache.rule hot_posts.ttl=30s\n",
		"cache.rule hot_posts.swr=1min\n",
		"cache.rule hot_posts.max_entry_size=\n",
		"cache.rule hot_posts.jitter=\n",
		"cache.rule hot_posts.scope=user\n",
		"cache.rule hot_posts.allow_volatile=false\n",
		"cache.rule by_fingerprint.fingerprint=0123456789abcdef\n",
		"cache.rule by_fingerprint.max_entry_size=64kB\n",
		"cache.rule by_fingerprint.jitter=0%\n",
		"cache.rule by_fingerprint.swr=\n",
		"cache.rule by_fingerprint.scope=shared\n",
		"cache.rule by_fingerprint.allow_volatile=true\n",
		"cache.rule countries.match=^select .* from countries\n",
		"queue.rule analytics.tables=page_views, clicks\n",
		"queue.rule analytics.key=views\n",
		"queue.rule audit.database=\n",
		NULL,
	};
	expect_shown(cfg, shown);
	lv_config_unref(cfg);
}

/* Counts the SHOW CONFIG rows of cfg. */
static void count_cb(void *arg, const char *section, const char *key, const char *value,
		     bool is_reloadable)
{
	(*(size_t *)arg)++;
	assert_true(is_reloadable || strcmp(section, "cache") == 0 || strchr(section, '.') == NULL);
}

static void test_rules_rows(void **state)
{
	lv_config_t *cfg = lv_test_load_ok(FIXTURES "/valid/cache_rules.ini");
	size_t n = 0;
	lv_config_for_each(cfg, count_cb, &n);
	assert_int_equal(n, lv__n_keys + 3 * lv__n_cache_rule_keys + 2 * lv__n_queue_rule_keys);
	lv_config_unref(cfg);
}

/* Records the section names for_each_key reports and the types of the rule keys. */
typedef struct sections {
	char seen[16][32];
	size_t n;
	bool ttl_required_doc;
	const char *tables_type;
} sections_t;

static void section_cb(void *arg, const lv_config_key_info_t *info)
{
	sections_t *s = arg;
	bool known = false;
	for (size_t i = 0; i < s->n; i++)
		known = known || strcmp(s->seen[i], info->section) == 0;
	if (!known && s->n < 16)
		snprintf(s->seen[s->n++], sizeof(s->seen[0]), "%s", info->section);
	if (strcmp(info->section, "cache.rule NAME") == 0 && strcmp(info->key, "ttl") == 0)
		s->ttl_required_doc = strstr(info->doc, "required") != NULL;
	if (strcmp(info->section, "queue.rule NAME") == 0 && strcmp(info->key, "tables") == 0)
		s->tables_type = info->type;
	assert_true(info->doc[0]);
}

static void test_for_each_key(void **state)
{
	sections_t s;
	memset(&s, 0, sizeof(s));
	lv_config_for_each_key(section_cb, &s);
	static const char *const want[] = {
		"levee",           "pool",
		"routing",         "tls",
		"cache",           "queue",
		"database NAME",   "user NAME",
		"cache.rule NAME", "queue.rule NAME",
	};
	assert_int_equal(s.n, LV_ARRAY_LEN(want));
	for (size_t i = 0; i < LV_ARRAY_LEN(want); i++)
		assert_string_equal(s.seen[i], want[i]);
	assert_true(s.ttl_required_doc);
	assert_string_equal(s.tables_type, "table list");
}

static void test_regex_errors(void **state)
{
	/* The message carries the C library's own words for the problem. */
	regex_t re;
	int rc = regcomp(&re, "select (", REG_EXTENDED | REG_ICASE | REG_NOSUB);
	assert_int_not_equal(rc, 0);
	char why[160], want[512];
	regerror(rc, &re, why, sizeof(why));
	regfree(&re);
	snprintf(want, sizeof(want), "t.ini:4: invalid regex: %s\n", why);
	expect_errors(HEAD "[cache.rule r]\nmatch = select (\nttl = 1s\n", want);

	/* Two bad rules: both reported, each at its own line; the good one between is kept. */
	rc = regcomp(&re, "a{2,1}", REG_EXTENDED | REG_ICASE | REG_NOSUB);
	assert_int_not_equal(rc, 0);
	char why2[160];
	regerror(rc, &re, why2, sizeof(why2));
	regfree(&re);
	snprintf(want, sizeof(want), "t.ini:4: invalid regex: %s\nt.ini:10: invalid regex: %s\n",
		 why, why2);
	expect_errors(HEAD "[cache.rule a]\nmatch = select (\nttl = 1s\n"
			   "[cache.rule b]\nmatch = ^select\nttl = 1s\n"
			   "[cache.rule c]\nmatch = a{2,1}\nttl = 1s\n",
		      want);
}

static void test_rule_errors(void **state)
{
	/* ttl is required; a rule needs a condition; both at the section's line. */
	expect_errors(HEAD "[cache.rule r]\ntables = posts\n",
		      "t.ini:3: missing ttl in [cache.rule r]\n");
	expect_errors(HEAD "[cache.rule r]\nttl = 5s\nscope = shared\n",
		      "t.ini:3: [cache.rule r] needs at least one of tables, fingerprint and "
		      "match\n");
	expect_errors(HEAD "[cache.rule r]\nttl = 0\ntables = posts\n",
		      "t.ini:4: invalid value \"0\" for ttl: expected a duration from 1ms to 30d, "
		      "such as 500ms, 30s, 5min or 1h\n");
	/* A refused condition is reported once, without "needs at least one". */
	expect_errors(HEAD "[cache.rule r]\nttl = 5s\ntables = public.posts\n",
		      "t.ini:5: invalid value \"public.posts\" for tables: table \"public.posts\" "
		      "is schema-qualified; write the bare name \"posts\"\n");
	expect_errors(HEAD "[cache.rule r]\nttl = 5s\ntables = posts, \"Users\"\n",
		      "t.ini:5: invalid value \"posts, \"Users\"\" for tables: invalid table name "
		      "\"\"Users\"\": expected 1 to 63 bytes of letters, digits, _ and $, without "
		      "quotes\n");
	expect_errors(HEAD "[cache.rule r]\nttl = 5s\ntables = a,,b\n",
		      "t.ini:5: invalid value \"a,,b\" for tables: the list has an empty entry\n");
	expect_errors(HEAD "[cache.rule r]\nttl = 5s\ntables =\n",
		      "t.ini:5: invalid value \"\" for tables: expected a comma-separated list of "
		      "table names\n");
	expect_errors(
		HEAD "[cache.rule r]\nttl = 5s\nfingerprint = 0123456789abcdeg\n",
		"t.ini:5: invalid value \"0123456789abcdeg\" for fingerprint: expected 16 hex "
		"digits, a fingerprint as libpg_query writes it\n");
	expect_errors(HEAD "[cache.rule r]\nttl = 5s\nfingerprint = 12345\n",
		      "t.ini:5: invalid value \"12345\" for fingerprint: expected 16 hex digits, a "
		      "fingerprint as libpg_query writes it\n");
	expect_errors(
		HEAD "[cache.rule r]\nttl = 5s\nmatch = x\nscope = everyone\n"
		     "jitter = 60%\nswr = -1s\nallow_volatile = sometimes\n",
		"t.ini:6: invalid value \"everyone\" for scope: expected one of user, shared\n"
		"t.ini:7: invalid value \"60%\" for jitter: expected a percentage from 0 to "
		"50, such as 10%\n"
		"t.ini:8: invalid value \"-1s\" for swr: expected a duration from 0 to 30d, "
		"such as 500ms, 30s, 5min or 1h\n"
		"t.ini:9: invalid value \"sometimes\" for allow_volatile: expected true or "
		"false\n");

	/* Unknown keys: a typo gets "did you mean", a key of another section its home. */
	expect_errors(HEAD "[cache.rule r]\nttl = 5s\ntabels = posts\nmemory = 1MB\n",
		      "t.ini:5: unknown setting \"tabels\" in [cache.rule r]; did you mean "
		      "\"tables\"?\n"
		      "t.ini:6: unknown setting \"memory\" in [cache.rule r]; it belongs in "
		      "[cache]\n"
		      "t.ini:3: [cache.rule r] needs at least one of tables, fingerprint and "
		      "match\n");
	expect_errors(
		HEAD "[queue.rule q]\ntables = t\nttl = 5s\nkeys = a\n",
		"t.ini:5: unknown setting \"ttl\" in [queue.rule q]; it belongs in "
		"[cache.rule NAME]\n"
		"t.ini:6: unknown setting \"keys\" in [queue.rule q]; did you mean \"key\"?\n");
	/* A key set twice in one rule. */
	expect_errors(
		HEAD "[cache.rule r]\nttl = 5s\ntables = a\nttl = 6s\n",
		"t.ini:6: duplicate setting \"ttl\" in [cache.rule r] (first set at line 4)\n");

	/* Duplicate names, per kind; a cache rule and a queue rule may share one. */
	expect_errors(HEAD "[cache.rule r]\nttl = 5s\ntables = a\n[queue.rule r]\ntables = a\n"
			   "[cache.rule s]\nttl = 5s\ntables = b\n[cache.rule r]\nttl = 1s\n"
			   "tables = c\n[queue.rule r]\ntables = b\n",
		      "t.ini:11: duplicate cache rule \"r\" (first defined at line 3)\n"
		      "t.ini:14: duplicate queue rule \"r\" (first defined at line 6)\n");

	/* Queue rules: tables required; key is a name. */
	expect_errors(HEAD "[queue.rule q]\ndatabase = app\n[database app]\n"
			   "primary = 127.0.0.1:5432\n",
		      "t.ini:3: missing tables in [queue.rule q]\n");
	char long_key[200];
	snprintf(long_key, sizeof(long_key), HEAD "[queue.rule q]\ntables = t\nkey = %0100d\n", 7);
	expect_errors(long_key, "t.ini:5: invalid value \"00000000000000000000000000000000000000"
				"000000000000000000000000000000000000000000...\" for key: expected "
				"a name of 1 to 63 bytes\n");

	/* A database without a [database] section. */
	expect_errors(HEAD "[database app]\nprimary = 127.0.0.1:5432\n[cache.rule r]\n"
			   "tables = a\nttl = 1s\ndatabase = ap\n[queue.rule q]\ntables = a\n"
			   "database = app\n",
		      "t.ini:8: [cache.rule r] names database \"ap\", which has no [database ap] "
		      "section\n");

	/* Headers. */
	expect_errors(HEAD "[cache.rule]\nttl = 1s\n",
		      "t.ini:3: missing name in [cache.rule]; expected [cache.rule NAME]\n");
	expect_errors(HEAD "[queue.rule two words]\ntables = a\n",
		      "t.ini:3: invalid rule name \"two words\": use letters, digits and _ . - $ "
		      "@\n");
	expect_errors(HEAD "[cache rule hot]\nttl = 1s\n",
		      "t.ini:3: section [cache] takes no name; did you mean [cache.rule hot]?\n");
	expect_errors(HEAD "[cache.rules hot]\nttl = 1s\n",
		      "t.ini:3: unknown section [cache.rules hot]; did you mean [cache.rule "
		      "hot]?\n");
	expect_errors(HEAD "[queue.rul]\n",
		      "t.ini:3: unknown section [queue.rul]; did you mean [queue.rule NAME]?\n");
	expect_errors(HEAD "[queue x]\n", "t.ini:3: section [queue] takes no name\n");
}

/* ---- Reload ---- */

static void test_diff(void **state)
{
	lv_config_t *a = lv_test_load_ok(FIXTURES "/valid/minimal.ini");
	lv_config_t *b = lv_test_load_ok(FIXTURES "/valid/cache_rules.ini");
	lv_buf_t w;
	lv_buf_init(&w);
	/* memory changed; the rules and jitter need no restart. */
	assert_int_equal(lv_config_diff(a, b, &w), 1);
	assert_string_equal(lv_test_buf_str(&w), "memory changed; restart to apply\n");
	lv_buf_cleanup(&w);
	lv_config_unref(b);

	b = lv_test_load_ok(lv_test_write_temp("d.ini", HEAD
					       "[queue]\nstream_prefix = other\nbatch_size = 7\n"
					       "[cache]\nswr = 5s\n"));
	lv_buf_init(&w);
	assert_int_equal(lv_config_diff(a, b, &w), 1);
	assert_string_equal(lv_test_buf_str(&w), "stream_prefix changed; restart to apply\n");
	lv_buf_cleanup(&w);
	lv_config_unref(a);
	lv_config_unref(b);
}

/*
 * Generations with rules come and go as on repeated reloads, some of them
 * failing after their regexes were compiled; valgrind checks that every
 * string, table list and regex is freed on both paths.
 */
static void test_reload_frees(void **state)
{
	lv_config_t *cur = lv_test_load_ok(FIXTURES "/valid/cache_rules.ini");
	for (int i = 0; i < 5; i++) {
		lv_config_t *next = lv_test_load_ok(FIXTURES "/valid/cache_rules.ini");
		assert_int_equal(next->n_cache_rules, 3);
		lv_config_unref(cur);
		cur = next;

		/* A broken file: everything it built so far is freed, the old generation kept. */
		lv_buf_t errors;
		lv_buf_init(&errors);
		const char *bad = lv_test_write_temp(
			"bad.ini", HEAD "[cache.rule a]\nmatch = ^select\ntables = a, b\n"
					"fingerprint = 00000000000000ff\nttl = 1s\n"
					"match = again\n[cache.rule b]\nmatch = (\n"
					"[queue.rule q]\ntables = x, y\nkey = k\n"
					"[cache.rule a]\nmatch = .*\nttl = 1s\n");
		assert_null(lv_config_load(bad, &errors));
		assert_non_null(strstr(lv_test_buf_str(&errors), "duplicate cache rule \"a\""));
		lv_buf_cleanup(&errors);
		assert_string_equal(cur->cache_rules[2].match, "^select .* from countries");
	}
	lv_config_unref(cur);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),     cmocka_unit_test(test_values),
		cmocka_unit_test(test_bad_values),   cmocka_unit_test(test_parsers),
		cmocka_unit_test(test_rules_parse),  cmocka_unit_test(test_rules_rows),
		cmocka_unit_test(test_for_each_key), cmocka_unit_test(test_regex_errors),
		cmocka_unit_test(test_rule_errors),  cmocka_unit_test(test_diff),
		cmocka_unit_test(test_reload_frees),
	};
	return cmocka_run_group_tests(tests, NULL, lv_test_remove_temp);
}
