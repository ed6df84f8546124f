/* SPDX-License-Identifier: ISC */
/* Unit tests for proxy/params.c: parameter sets, options parsing, quoting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "proxy/params.h"

static void test_set_get_del(void **state)
{
	lv_buf_t ps;
	lv_buf_init(&ps);
	assert_true(lv_params_set(&ps, "DateStyle", "ISO, MDY"));
	assert_true(lv_params_set(&ps, "application_name", "psql"));
	assert_string_equal(lv_params_get(&ps, "datestyle"), "ISO, MDY");
	assert_true(lv_params_set(&ps, "datestyle", "German"));
	assert_string_equal(lv_params_get(&ps, "DateStyle"), "German");
	/* Replacing keeps one entry per name. */
	size_t pos = 0, n = 0;
	const char *k, *v;
	while (lv_params_next(&ps, &pos, &k, &v))
		n++;
	assert_int_equal(n, 2);
	lv_params_del(&ps, "APPLICATION_NAME");
	assert_null(lv_params_get(&ps, "application_name"));
	assert_string_equal(lv_params_get(&ps, "datestyle"), "German");
	lv_params_del(&ps, "nosuch");
	lv_buf_cleanup(&ps);
}

static void test_options(void **state)
{
	lv_buf_t ps;
	char bad[64];
	lv_buf_init(&ps);
	assert_true(lv_params_add_options(&ps, "-c statement_timeout=5s --search-path=a,b -cwork_mem=64MB", bad,
					  sizeof(bad)));
	assert_string_equal(lv_params_get(&ps, "statement_timeout"), "5s");
	assert_string_equal(lv_params_get(&ps, "search_path"), "a,b");
	assert_string_equal(lv_params_get(&ps, "work_mem"), "64MB");
	/* libpq escapes spaces in values with a backslash. */
	assert_true(lv_params_add_options(&ps, "-c application_name=my\\ app", bad, sizeof(bad)));
	assert_string_equal(lv_params_get(&ps, "application_name"), "my app");
	/* Words that are not settings are refused and named. */
	assert_false(lv_params_add_options(&ps, "-c", bad, sizeof(bad)));
	assert_false(lv_params_add_options(&ps, "--single", bad, sizeof(bad)));
	assert_string_equal(bad, "--single");
	assert_false(lv_params_add_options(&ps, "-D /tmp", bad, sizeof(bad)));
	assert_string_equal(bad, "-D");
	lv_buf_cleanup(&ps);
}

static void test_quoting(void **state)
{
	lv_buf_t b;
	lv_buf_init(&b);
	assert_true(lv_params_quote_literal(&b, "it's"));
	assert_true(lv_buf_put_u8(&b, ' '));
	assert_true(lv_params_quote_ident(&b, "Date\"Style"));
	assert_true(lv_buf_put_u8(&b, 0));
	assert_string_equal((const char *)b.data, "'it''s' \"Date\"\"Style\"");
	lv_buf_cleanup(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_get_del),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_quoting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
