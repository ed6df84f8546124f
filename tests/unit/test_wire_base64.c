/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for wire/base64.c: the RFC 4648 test vectors both ways, the
 * strict decoder's refusals (alphabet, padding, unused bits), the room
 * checks on both sides, and a round trip of every byte value over lengths
 * well past the 1024-character bound that only SCRAM applies.
 */
#include "core/lv.h"
#include "wire/base64.h"

#include "core/status.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

/* RFC 4648, section 10. */
static const struct {
	const char *raw;
	const char *text;
} vectors[] = {
	{"", ""},
	{"f", "Zg=="},
	{"fo", "Zm8="},
	{"foo", "Zm9v"},
	{"foob", "Zm9vYg=="},
	{"fooba", "Zm9vYmE="},
	{"foobar", "Zm9vYmFy"},
};

static void test_rfc4648_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < LV_ARRAY_LEN(vectors); i++) {
		const char *raw = vectors[i].raw, *text = vectors[i].text;
		char enc[16];
		size_t n = 99;
		assert_int_equal(lv_base64_encoded_len(strlen(raw)), strlen(text));
		assert_int_equal(
			lv_base64_encode((const uint8_t *)raw, strlen(raw), enc, sizeof(enc), &n),
			0);
		assert_int_equal(n, strlen(text));
		assert_string_equal(enc, text);
		uint8_t dec[16];
		n = 99;
		assert_int_equal(lv_base64_decode(text, strlen(text), dec, sizeof(dec), &n), 0);
		assert_int_equal(n, strlen(raw));
		assert_memory_equal(dec, raw, n);
	}
}

static void test_decode_refusals(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"QR==",   /* unused bits set (one byte) */
		"QUJ=",   /* unused bits set (two bytes) */
		"QQ=",    /* not a multiple of 4 */
		"Q===",   /* three padding characters */
		"====",   /* padding only */
		"QQ=A",   /* padding before the end */
		"=QQA",   /* padding first */
		" QQ=",   /* whitespace */
		"QQ==\n", /* trailing newline */
		"Q-_A",   /* base64url is not base64 */
		"Zm9v\0\0\0\0",
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
		uint8_t out[16];
		memset(out, 0xee, sizeof(out));
		size_t len = i + 1 == LV_ARRAY_LEN(bad) ? 8 : strlen(bad[i]);
		size_t n = 99;
		int rc = lv_base64_decode(bad[i], len, out, sizeof(out), &n);
		if (rc != LV_EINVAL)
			fail_msg("case %zu: got %s", i, lv_status_name(rc));
		assert_int_equal(n, 99);
		assert_int_equal(out[0], 0xee); /* a refused input writes nothing */
	}
}

static void test_room(void **state)
{
	(void)state;
	uint8_t small[2] = {0xee, 0xee};
	size_t n = 99;
	assert_int_equal(lv_base64_decode("Zm9v", 4, small, 2, &n), LV_ETOOBIG);
	assert_int_equal(small[0], 0xee);
	assert_int_equal(lv_base64_decode("Zm8=", 4, small, 2, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(lv_base64_decoded_max(4), 3);
	assert_int_equal(lv_base64_decoded_max(0), 0);

	char enc[9];
	memset(enc, 'x', sizeof(enc));
	assert_int_equal(lv_base64_encode((const uint8_t *)"foob", 4, enc, 8, &n), LV_ETOOBIG);
	assert_int_equal(enc[0], 'x');
	assert_int_equal(lv_base64_encode((const uint8_t *)"foob", 4, enc, 9, &n), 0);
	assert_string_equal(enc, "Zm9vYg==");
	assert_int_equal(lv_base64_encode(NULL, 0, enc, 1, &n), 0);
	assert_int_equal(n, 0);
	assert_string_equal(enc, "");
	assert_int_equal(lv_base64_encode(NULL, 0, enc, 0, &n), LV_ETOOBIG);
}

/* Every length 0..3000 (past SCRAM's 1024-character bound), every byte value. */
static void test_round_trip(void **state)
{
	(void)state;
	enum {
		MAX = 3000
	};
	uint8_t *raw = malloc(MAX), *dec = malloc(MAX);
	char *text = malloc(lv_base64_encoded_len(MAX) + 1);
	assert_non_null(raw);
	assert_non_null(dec);
	assert_non_null(text);
	for (size_t i = 0; i < MAX; i++)
		raw[i] = (uint8_t)(i * 7 + 3);
	for (size_t len = 0; len <= MAX; len += len < 64 ? 1 : 37) {
		size_t tlen, dlen;
		assert_int_equal(
			lv_base64_encode(raw, len, text, lv_base64_encoded_len(len) + 1, &tlen), 0);
		assert_int_equal(tlen, lv_base64_encoded_len(len));
		assert_int_equal(strlen(text), tlen);
		assert_int_equal(lv_base64_decode(text, tlen, dec, len, &dlen), 0);
		assert_int_equal(dlen, len);
		if (len)
			assert_memory_equal(dec, raw, len);
	}
	free(raw);
	free(dec);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_decode_refusals),
		cmocka_unit_test(test_room),
		cmocka_unit_test(test_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
