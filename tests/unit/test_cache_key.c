/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for cache/key.c: SipHash-2-4 against the published vectors,
 * field separation (lengths, tags, user, settings, NULL vs empty
 * parameters, format normalisation), digest, seeding and OOM.
 */
#include "core/lv.h"
#include "cache/key.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "core/mem.h"

static void test_siphash_vectors(void **state)
{
	(void)state;
	uint8_t key[16], msg[64];
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 64; i++)
		msg[i] = (uint8_t)i;
	/* From the SipHash paper's appendix (also what OpenSSL's SIPHASH MAC prints). */
	assert_int_equal(lv_cache_siphash(key, msg, 0), 0x726fdb47dd0e0e31ULL);
	assert_int_equal(lv_cache_siphash(key, msg, 15), 0xa129ca6149be45e5ULL);
	/* Every length hashes differently (tail handling). */
	for (size_t n = 1; n < 64; n++)
		assert_true(lv_cache_siphash(key, msg, n) != lv_cache_siphash(key, msg, n - 1));
}

/* Builds a key from a list of (tag, string) pairs; s NULL means a NULL param. */
typedef struct field {
	lv_cache_key_tag_t tag;
	const char *s;
} field_t;

static void build(lv_cache_key_t *k, const field_t *f, size_t n)
{
	lv_cache_key_init(k);
	for (size_t i = 0; i < n; i++) {
		if (f[i].tag == LV_CACHE_KEY_PARAM)
			assert_true(lv_cache_key_add_param(k, f[i].s, f[i].s ? strlen(f[i].s) : 0,
							   f[i].s == NULL));
		else
			assert_true(lv_cache_key_add_str(k, f[i].tag, f[i].s));
	}
	assert_true(lv_cache_key_finish(k));
}

static void assert_differ(const field_t *a, size_t na, const field_t *b, size_t nb)
{
	lv_cache_key_t ka, kb;
	build(&ka, a, na);
	build(&kb, b, nb);
	assert_false(lv_cache_key_equal(&ka, &kb));
	assert_true(ka.hash != kb.hash);
	char da[65], db[65];
	lv_cache_key_digest_hex(&ka, da);
	lv_cache_key_digest_hex(&kb, db);
	assert_string_not_equal(da, db);
	lv_cache_key_cleanup(&ka);
	lv_cache_key_cleanup(&kb);
}

static void assert_same(const field_t *a, size_t na, const field_t *b, size_t nb)
{
	lv_cache_key_t ka, kb;
	build(&ka, a, na);
	build(&kb, b, nb);
	assert_true(lv_cache_key_equal(&ka, &kb));
	assert_int_equal(ka.hash, kb.hash);
	lv_cache_key_cleanup(&ka);
	lv_cache_key_cleanup(&kb);
}

#define F(...) ((const field_t[]){__VA_ARGS__})
#define N(...) (sizeof((const field_t[]){__VA_ARGS__}) / sizeof(field_t))
#define DIFFER(a, b) assert_differ(F a, N a, F b, N b)
#define SAME(a, b) assert_same(F a, N a, F b, N b)

static void test_separation(void **state)
{
	(void)state;
	/* Field boundaries are part of the key. */
	DIFFER(({LV_CACHE_KEY_TEXT, "ab"}, {LV_CACHE_KEY_TEXT, "c"}),
	       ({LV_CACHE_KEY_TEXT, "a"}, {LV_CACHE_KEY_TEXT, "bc"}));
	/* Tags are part of the key. */
	DIFFER(({LV_CACHE_KEY_DB, "x"}), ({LV_CACHE_KEY_USER, "x"}));
	/* User. */
	DIFFER(({LV_CACHE_KEY_DB, "app"}, {LV_CACHE_KEY_USER, "alice"}, {LV_CACHE_KEY_TEXT, "q"}),
	       ({LV_CACHE_KEY_DB, "app"}, {LV_CACHE_KEY_USER, "bob"}, {LV_CACHE_KEY_TEXT, "q"}));
	/* Shared scope (no user) differs from any user. */
	DIFFER(({LV_CACHE_KEY_DB, "app"}, {LV_CACHE_KEY_TEXT, "q"}),
	       ({LV_CACHE_KEY_DB, "app"}, {LV_CACHE_KEY_USER, ""}, {LV_CACHE_KEY_TEXT, "q"}));
	/* NULL parameter vs empty string vs missing. */
	DIFFER(({LV_CACHE_KEY_TEXT, "q"}, {LV_CACHE_KEY_PARAM, NULL}),
	       ({LV_CACHE_KEY_TEXT, "q"}, {LV_CACHE_KEY_PARAM, ""}));
	DIFFER(({LV_CACHE_KEY_TEXT, "q"}, {LV_CACHE_KEY_PARAM, ""}), ({LV_CACHE_KEY_TEXT, "q"}));
	/* Parameter order and boundaries. */
	DIFFER(({LV_CACHE_KEY_PARAM, "1"}, {LV_CACHE_KEY_PARAM, "2"}),
	       ({LV_CACHE_KEY_PARAM, "2"}, {LV_CACHE_KEY_PARAM, "1"}));
	DIFFER(({LV_CACHE_KEY_PARAM, "12"}, {LV_CACHE_KEY_PARAM, "3"}),
	       ({LV_CACHE_KEY_PARAM, "1"}, {LV_CACHE_KEY_PARAM, "23"}));
	/* Same input, same key. */
	SAME(({LV_CACHE_KEY_DB, "app"}, {LV_CACHE_KEY_TEXT, "select 1"},
	      {LV_CACHE_KEY_PARAM, NULL}),
	     ({LV_CACHE_KEY_DB, "app"}, {LV_CACHE_KEY_TEXT, "select 1"},
	      {LV_CACHE_KEY_PARAM, NULL}));
}

static void test_settings(void **state)
{
	(void)state;
	lv_cache_key_t a, b, c, d;
	lv_cache_key_init(&a);
	lv_cache_key_init(&b);
	lv_cache_key_init(&c);
	lv_cache_key_init(&d);
	assert_true(lv_cache_key_add_setting(&a, "TimeZone", "UTC"));
	assert_true(lv_cache_key_add_setting(&b, "TimeZone", "Europe/Paris"));
	/* name/value boundary: ("ab","c") vs ("a","bc"). */
	assert_true(lv_cache_key_add_setting(&c, "ab", "c"));
	assert_true(lv_cache_key_add_setting(&d, "a", "bc"));
	assert_true(lv_cache_key_finish(&a) && lv_cache_key_finish(&b));
	assert_true(lv_cache_key_finish(&c) && lv_cache_key_finish(&d));
	assert_false(lv_cache_key_equal(&a, &b));
	assert_false(lv_cache_key_equal(&c, &d));
	/* A NULL value keys like "". */
	lv_cache_key_reset(&a);
	lv_cache_key_reset(&b);
	assert_true(lv_cache_key_add_setting(&a, "role", NULL));
	assert_true(lv_cache_key_add_setting(&b, "role", ""));
	assert_true(lv_cache_key_finish(&a) && lv_cache_key_finish(&b));
	assert_true(lv_cache_key_equal(&a, &b));
	/* The list names the eight settings of the issue. */
	assert_string_equal(lv_cache_key_setting_names[0], "search_path");
	assert_string_equal(lv_cache_key_setting_names[LV_CACHE_KEY_N_SETTINGS - 1],
			    "bytea_output");
	lv_cache_key_cleanup(&a);
	lv_cache_key_cleanup(&b);
	lv_cache_key_cleanup(&c);
	lv_cache_key_cleanup(&d);
}

static void fmt_key(lv_cache_key_t *k, lv_cache_key_tag_t tag, const uint8_t *codes, size_t n)
{
	lv_cache_key_init(k);
	assert_true(lv_cache_key_add_str(k, LV_CACHE_KEY_TEXT, "q"));
	assert_true(lv_cache_key_add_formats(k, tag, codes, n));
	assert_true(lv_cache_key_finish(k));
}

static void test_formats(void **state)
{
	(void)state;
	static const uint8_t text1[] = {0, 0};
	static const uint8_t text3[] = {0, 0, 0, 0, 0, 0};
	static const uint8_t bin1[] = {0, 1};
	static const uint8_t bin2[] = {0, 1, 0, 1};
	static const uint8_t mixed[] = {0, 0, 0, 1};
	static const uint8_t mixed2[] = {0, 1, 0, 0};
	lv_cache_key_t none, t1, t3, b1, b2, m, m2, rb1;
	fmt_key(&none, LV_CACHE_KEY_RESULT_FORMATS, NULL, 0);
	fmt_key(&t1, LV_CACHE_KEY_RESULT_FORMATS, text1, 1);
	fmt_key(&t3, LV_CACHE_KEY_RESULT_FORMATS, text3, 3);
	fmt_key(&b1, LV_CACHE_KEY_RESULT_FORMATS, bin1, 1);
	fmt_key(&b2, LV_CACHE_KEY_RESULT_FORMATS, bin2, 2);
	fmt_key(&m, LV_CACHE_KEY_RESULT_FORMATS, mixed, 2);
	fmt_key(&m2, LV_CACHE_KEY_RESULT_FORMATS, mixed2, 2);
	fmt_key(&rb1, LV_CACHE_KEY_PARAM_FORMATS, bin1, 1);
	/* Equivalent forms key alike. */
	assert_true(lv_cache_key_equal(&none, &t1));
	assert_true(lv_cache_key_equal(&t1, &t3));
	assert_true(lv_cache_key_equal(&b1, &b2));
	/* Different meanings key apart. */
	assert_false(lv_cache_key_equal(&t1, &b1));
	assert_false(lv_cache_key_equal(&m, &m2));
	assert_false(lv_cache_key_equal(&m, &t1));
	assert_false(lv_cache_key_equal(&m, &b1));
	/* Parameter formats are not result formats. */
	assert_false(lv_cache_key_equal(&b1, &rb1));
	lv_cache_key_t *all[] = {&none, &t1, &t3, &b1, &b2, &m, &m2, &rb1};
	for (size_t i = 0; i < LV_ARRAY_LEN(all); i++)
		lv_cache_key_cleanup(all[i]);
}

static void test_digest_and_seed(void **state)
{
	(void)state;
	lv_cache_key_t k;
	lv_cache_key_init(&k);
	char hex[65];
	lv_cache_key_digest_hex(&k, hex); /* empty key: SHA-256 of "" */
	assert_string_equal(hex,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_true(lv_cache_key_add_str(&k, LV_CACHE_KEY_TEXT, "abc"));
	assert_true(lv_cache_key_finish(&k));
	/* Bytes: tag 4, length 3, "abc". */
	assert_int_equal(lv_buf_unread(&k.buf), 8);
	static const uint8_t want[] = {4, 0, 0, 0, 3, 'a', 'b', 'c'};
	assert_memory_equal(lv_buf_head(&k.buf), want, sizeof(want));
	lv_cache_key_digest_hex(&k, hex);
	assert_int_equal(strlen(hex), 64);
	/* The hash follows the seed; the digest does not. */
	uint64_t h1 = k.hash;
	char hex1[65];
	memcpy(hex1, hex, sizeof(hex));
	uint8_t seed[16] = {1, 2, 3};
	lv_cache_key_set_seed(seed);
	assert_true(lv_cache_key_finish(&k));
	assert_true(k.hash != h1);
	lv_cache_key_digest_hex(&k, hex);
	assert_string_equal(hex, hex1);
	assert_int_equal(k.hash, lv_cache_key_hash_bytes(want, sizeof(want)));
	assert_int_equal(k.hash, lv_cache_siphash(seed, want, sizeof(want)));
	lv_cache_key_cleanup(&k);
}

static bool fail_all(size_t n)
{
	(void)n;
	return true;
}

static void test_oom_sticky(void **state)
{
	(void)state;
	lv_cache_key_t k;
	lv_cache_key_init(&k);
	lv_mem_set_fail_hook(fail_all);
	assert_false(lv_cache_key_add_str(&k, LV_CACHE_KEY_DB, "app"));
	lv_mem_set_fail_hook(NULL);
	assert_true(lv_cache_key_add_str(&k, LV_CACHE_KEY_TEXT, "q"));
	assert_false(lv_cache_key_finish(&k)); /* the earlier failure is remembered */
	lv_cache_key_reset(&k);
	assert_true(lv_cache_key_add_str(&k, LV_CACHE_KEY_TEXT, "q"));
	assert_true(lv_cache_key_finish(&k));
	lv_cache_key_cleanup(&k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_siphash_vectors), cmocka_unit_test(test_separation),
		cmocka_unit_test(test_settings),        cmocka_unit_test(test_formats),
		cmocka_unit_test(test_digest_and_seed), cmocka_unit_test(test_oom_sticky),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
