/* levee-test-deps: src/cache/key.c */
/* SPDX-License-Identifier: ISC */
/*
 * Row invalidation's canonical values and buckets (cache/point.c): values an
 * integer, text or uuid column would find equal share a bucket; what cannot
 * be canonicalised safely is refused.
 */
#include "core/lv.h"
#include "cache/key.h"
#include "cache/point.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static const char *canon(const char *v)
{
	static char out[LV_CACHE_POINT_MAX + 1];
	size_t n;
	if (!lv_cache_point_canon_text(v, strlen(v), out, &n))
		return NULL;
	out[n] = 0;
	return out;
}

static void assert_same(const char *a, const char *b)
{
	char ca[LV_CACHE_POINT_MAX + 1];
	const char *x = canon(a);
	assert_non_null(x);
	strcpy(ca, x);
	const char *y = canon(b);
	assert_non_null(y);
	if (strcmp(ca, y) != 0)
		fail_msg("\"%s\" -> %s but \"%s\" -> %s", a, ca, b, y);
}

static void test_integers_in_any_spelling_agree(void **state)
{
	(void)state;
	assert_string_equal(canon("42"), "i42");
	assert_same("42", "042");
	assert_same("42", "+42");
	assert_same("42", " 42 ");
	assert_same("42", "42.0");
	assert_same("42", "4.2e1");
	assert_same("0", "-0");
	assert_same("-7", "-0007");
	assert_string_equal(canon("-7"), "i-7");
	/* Not integral, or too large to compare exactly: refused, never guessed. */
	assert_null(canon("42.5"));
	assert_null(canon("1e300"));
	/* Not a number at all: a text value like any other. */
	assert_string_equal(canon("nan"), "snan");
}

static void test_text_and_uuids_agree_across_case_and_dashes(void **state)
{
	(void)state;
	assert_same("abc", "ABC");
	assert_same("abc  ", "abc");
	assert_same("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}");
	assert_string_equal(canon("Hello"), "shello");
	/* An integer and a text that is not one stay apart. */
	char i42[8];
	strcpy(i42, canon("42"));
	assert_string_not_equal(i42, canon("x42"));
}

static void test_binary_parameters(void **state)
{
	(void)state;
	char out[LV_CACHE_POINT_MAX];
	size_t n;
	const uint8_t i4[] = {0, 0, 0, 42}, i8[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf9}, i2[] = {0, 42};
	assert_true(lv_cache_point_canon_binary(23, i4, 4, out, &n));
	assert_int_equal(n, 3);
	assert_memory_equal(out, "i42", 3);
	assert_true(lv_cache_point_canon_binary(21, i2, 2, out, &n));
	assert_memory_equal(out, "i42", 3);
	assert_true(lv_cache_point_canon_binary(20, i8, 8, out, &n));
	assert_int_equal(n, 3);
	assert_memory_equal(out, "i-7", 3);
	const uint8_t u[16] = {0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8,
			       0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11};
	assert_true(lv_cache_point_canon_binary(2950, u, 16, out, &n));
	const char *t = canon("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11");
	assert_int_equal(n, strlen(t));
	assert_memory_equal(out, t, n);
	assert_true(lv_cache_point_canon_binary(25, (const uint8_t *)"007", 3, out, &n));
	assert_memory_equal(out, "i7", 2);
	/* Wrong sizes and other types are refused. */
	assert_false(lv_cache_point_canon_binary(23, i2, 2, out, &n));
	assert_false(lv_cache_point_canon_binary(701, i8, 8, out, &n)); /* float8 */
	assert_false(lv_cache_point_canon_binary(0, i4, 4, out, &n));
	assert_false(lv_cache_point_canon_binary(16, i2, 1, out, &n)); /* bool */
}

static void test_casts(void **state)
{
	(void)state;
	assert_true(lv_cache_point_cast_ok(""));
	assert_true(lv_cache_point_cast_ok("int4"));
	assert_true(lv_cache_point_cast_ok("UUID"));
	assert_false(lv_cache_point_cast_ok("date"));
	assert_false(lv_cache_point_cast_ok("numeric"));
}

static void test_buckets(void **state)
{
	(void)state;
	uint32_t a = lv_cache_point_bucket("app", "items", "id", "i42", 3);
	assert_true(a < LV_CACHE_ROW_BUCKETS);
	assert_int_equal(a, lv_cache_point_bucket("app", "items", "id", "i42", 3));
	/* Instances share buckets through Redis: the bucket must not depend on the process's seed. */
	const uint8_t seed[16] = {1, 2, 3};
	lv_cache_key_set_seed(seed);
	assert_int_equal(a, lv_cache_point_bucket("app", "items", "id", "i42", 3));
	/* Fields are length-prefixed: moving a byte between them changes the bucket (almost surely). */
	int differ = 0;
	differ += a != lv_cache_point_bucket("app", "items", "id", "i43", 3);
	differ += a != lv_cache_point_bucket("ap", "pitems", "id", "i42", 3);
	differ += a != lv_cache_point_bucket("app", "item", "sid", "i42", 3);
	assert_int_equal(differ, 3);
	/* 100,000 keys spread over the buckets: no bucket holds more than a few. */
	static uint8_t hits[LV_CACHE_ROW_BUCKETS];
	int worst = 0;
	for (int i = 0; i < 100000; i++) {
		char v[16];
		int n = snprintf(v, sizeof(v), "i%d", i);
		uint32_t b = lv_cache_point_bucket("app", "items", "id", v, (size_t)n);
		if (++hits[b] > worst)
			worst = hits[b];
	}
	assert_true(worst <= 12);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_integers_in_any_spelling_agree),
		cmocka_unit_test(test_text_and_uuids_agree_across_case_and_dashes),
		cmocka_unit_test(test_binary_parameters),
		cmocka_unit_test(test_casts),
		cmocka_unit_test(test_buckets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
