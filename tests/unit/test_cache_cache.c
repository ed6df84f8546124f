/* levee-test-deps: src/cache/store.c src/cache/gens.c src/cache/key.c src/cache/policy.c src/sql/classify.c src/config/config.c src/config/config_keys.c src/config/config_dbs.c src/config/config_rules.c src/config/auth_file.c tests/unit/helpers/config_files.c tests/unit/fakes/time.c */
/* SPDX-License-Identifier: ISC */
/*
 * Tests of the caching policy in src/cache/cache.c: which [cache.rule]
 * matches a statement (database, tables, `match` on the normalized text,
 * `fingerprint`), first match wins, hints over rules, the reasons a
 * statement is not cached, long texts whose normalized form does not fit
 * the stack buffer, and running out of memory there. Rules are loaded from
 * a config file written to a temporary directory.
 *
 * Run from the repository root, as `make check-unit` does.
 */
#include "core/lv.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "cache/cache.h"
#include "core/mem.h"
#include "core/status.h"
#include "helpers/config_files.h"

#define RULES                                                    \
	"[levee]\nauth_type = trust\n"                           \
	"[database app]\nprimary = 127.0.0.1:5432\n"             \
	"[cache]\nbypass_users = batch\n"                        \
	"[cache.rule only_app]\n"                                \
	"database = app\nmatch = ^select v from a\nttl = 1s\n"   \
	"[cache.rule a_any]\n"                                   \
	"match = ^select v from a where x = \\$1$\nttl = 7s\n"   \
	"[cache.rule b]\n"                                       \
	"match = ^select \\* from b where id = \\$1\nttl = 2s\n" \
	"[cache.rule c]\n"                                       \
	"tables = c\nttl = 3s\n"

static lv_config_t *cfg;
static lv_sql_info_t info;

static int setup_all(void **state)
{
	cfg = lv_test_load_ok(lv_test_write_temp("rules.ini", RULES));
	return 0;
}

static int teardown_all(void **state)
{
	lv_config_unref(cfg);
	lv_sql_thread_cleanup();
	return lv_test_remove_temp(state);
}

/* Classifies sql and asks the policy; *rule is the matched rule's name or "-". */
static lv_cache_skip_t decide(const char *sql, const char *db, const char *user,
			      lv_cache_policy_t *pol)
{
	assert_int_equal(lv_sql_classify(sql, strlen(sql), NULL, &info), LV_OK);
	memset(pol, 0, sizeof(*pol));
	pol->rule = -2;
	return lv_cache_decide(cfg, &info, sql, strlen(sql), db, user, pol);
}

static const char *rule_name(const lv_cache_policy_t *pol)
{
	return pol->rule >= 0 ? cfg->cache_rules[pol->rule].name : "-";
}

static void test_rule_matching(void **state)
{
	static const struct {
		const char *sql;
		const char *db;
		lv_cache_skip_t want;
		const char *rule;
		int64_t ttl_ms;
	} cases[] = {
		/* The first rule that matches wins; its database limits it. */
		{"select v from a where x = 5", "app", LV_CACHE_OK, "only_app", 1000},
		{"select v from a where x = 5", "other", LV_CACHE_OK, "a_any", 7000},
		/* Constants are $n in the text the regex sees, whatever their value. */
		{"select v from a where x = 'zz'", "other", LV_CACHE_OK, "a_any", 7000},
		{"select * from b where id = 42", "other", LV_CACHE_OK, "b", 2000},
		{"SELECT * FROM b WHERE id = 42", "other", LV_CACHE_OK, "b", 2000}, /* REG_ICASE */
		{"select * from b where id = 42 + 1", "other", LV_CACHE_OK, "b", 2000},
		{"select * from b where id = v", "other", LV_CACHE_SKIP_NOT_MARKED, "-", 0},
		/* Tables: every table read must be listed. */
		{"select * from c where id = 1", "other", LV_CACHE_OK, "c", 3000},
		{"select * from c join d on true", "other", LV_CACHE_SKIP_NOT_MARKED, "-", 0},
		{"select * from d", "other", LV_CACHE_SKIP_NOT_MARKED, "-", 0},
		/* A rule marks; the statement must still be a plain, stable read. */
		{"select now() from c", "other", LV_CACHE_SKIP_VOLATILE, "-", 0},
		{"select * from c for update", "other", LV_CACHE_SKIP_NOT_READ, "-", 0},
		/* Text that does not parse does not normalize: no match rule applies. */
		{"select v from a where (", "other", LV_CACHE_SKIP_NOT_MARKED, "-", 0},
		/* Hints. */
		{"/* levee:nocache */ select v from a", "app", LV_CACHE_SKIP_NOCACHE, "-", 0},
		{"/* levee:cache ttl=9s */ select * from d", "other", LV_CACHE_OK, "-", 9000},
		{"/* levee:cache */ update d set v = 1", "other", LV_CACHE_SKIP_NOT_READ, "-", 0},
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		lv_cache_policy_t pol;
		lv_cache_skip_t got = decide(cases[i].sql, cases[i].db, "u", &pol);
		const char *name = got == LV_CACHE_OK ? rule_name(&pol) : "-";
		if (got != cases[i].want || strcmp(name, cases[i].rule) != 0)
			print_error("[%s] on %s: got %d rule %s\n", cases[i].sql, cases[i].db,
				    (int)got, name);
		assert_int_equal(got, cases[i].want);
		assert_string_equal(name, cases[i].rule);
		if (got == LV_CACHE_OK && cases[i].ttl_ms)
			assert_int_equal(pol.ttl_ms, cases[i].ttl_ms);
		if (got != LV_CACHE_OK)
			assert_int_equal(pol.rule, -2); /* untouched */
	}

	lv_cache_policy_t pol;
	assert_int_equal(decide("select * from c", "app", "batch", &pol),
			 LV_CACHE_SKIP_BYPASS_USER);
}

/* A statement for rule b whose normalized text is longer than the 4 kB stack buffer; lv_free it. */
static char *long_sql(void)
{
	const char *head = "select * from b where id = 7 and name <> '";
	size_t n = strlen(head), pad = 6000;
	char *sql = lv_xmalloc(n + pad + 2);
	memcpy(sql, head, n);
	memset(sql + n, 'x', pad);
	memcpy(sql + n + pad, "'", 2);
	return sql;
}

/* A text longer than the stack buffer: normalized on the heap, once, and freed. */
static void test_long_text(void **state)
{
	char *sql = long_sql();

	lv_cache_policy_t pol;
	assert_int_equal(decide(sql, "other", "u", &pol), LV_CACHE_OK);
	assert_string_equal(rule_name(&pol), "b");
	lv_free(sql);
}

static bool fail_all(size_t n)
{
	return true;
}

/* Out of memory for the normalized text: no match rule applies, nothing leaks. */
static void test_long_text_oom(void **state)
{
	char *sql = long_sql();

	assert_int_equal(lv_sql_classify(sql, strlen(sql), NULL, &info), LV_OK);
	lv_cache_policy_t pol = {.rule = -2};
	lv_mem_set_fail_hook(fail_all);
	lv_cache_skip_t got = lv_cache_decide(cfg, &info, sql, strlen(sql), "other", "u", &pol);
	lv_mem_set_fail_hook(NULL);
	assert_int_equal(got, LV_CACHE_SKIP_NOT_MARKED);
	assert_int_equal(pol.rule, -2);
	lv_free(sql);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule_matching),
		cmocka_unit_test(test_long_text),
		cmocka_unit_test(test_long_text_oom),
	};
	return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
