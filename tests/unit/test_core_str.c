/* SPDX-License-Identifier: ISC */
/* Unit tests for core/str.c: bounded copy, case-insensitive compare, trim, edit distance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/str.h"

static void test_strlcpy(void **state)
{
	char dst[6] = "zzzzz";
	assert_true(lv_strlcpy(dst, "abc", sizeof(dst)));
	assert_string_equal(dst, "abc");
	assert_true(lv_strlcpy(dst, "abcde", sizeof(dst))); /* exactly fits with the NUL */
	assert_string_equal(dst, "abcde");
	assert_false(lv_strlcpy(dst, "abcdef", sizeof(dst))); /* one too long: refused */
	assert_string_equal(dst, "abcde");                    /* and dst untouched */
	assert_true(lv_strlcpy(dst, "", sizeof(dst)));
	assert_string_equal(dst, "");
	char one[1];
	assert_true(lv_strlcpy(one, "", 1));
	assert_false(lv_strlcpy(one, "a", 1));
}

static void test_strcasecmp(void **state)
{
	assert_int_equal(lv_strcasecmp("Levee", "lEVEE"), 0);
	assert_true(lv_strcasecmp("abc", "ABD") < 0);
	assert_true(lv_strcasecmp("b", "A") > 0);
	assert_true(lv_strcasecmp("ab", "abc") < 0);
	assert_int_equal(lv_strcasecmp("", ""), 0);
}

static void test_strtrim(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{"  x  ", "x"}, {"\t a b \r\n", "a b"}, {"", ""}, {"   ", ""}, {"x", "x"},
		{"x ", "x"},
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		char buf[32];
		strcpy(buf, cases[i].in);
		char *t = lv_strtrim(buf);
		assert_string_equal(t, cases[i].out);
		assert_true(t >= buf && t < buf + sizeof(buf));
	}
}

static void test_distance(void **state)
{
	static const struct {
		const char *a;
		const char *b;
		unsigned d;
	} cases[] = {
		{"", "", 0},
		{"pool_size", "pool_size", 0},
		{"pool_size", "POOL_SIZE", 0}, /* case-insensitive */
		{"pool_sise", "pool_size", 1},
		{"pol_size", "pool_size", 1},
		{"pool_sizes", "pool_size", 1},
		{"kitten", "sitting", 3},
		{"", "abc", 3},
		{"abc", "", 3},
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		assert_int_equal(lv_str_distance(cases[i].a, cases[i].b), cases[i].d);
		assert_int_equal(lv_str_distance(cases[i].b, cases[i].a), cases[i].d);
	}
	/* Strings too long to compare are "far away". */
	char longs[100];
	memset(longs, 'a', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = '\0';
	assert_int_equal(lv_str_distance(longs, "a"), 255);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strlcpy),
		cmocka_unit_test(test_strcasecmp),
		cmocka_unit_test(test_strtrim),
		cmocka_unit_test(test_distance),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
