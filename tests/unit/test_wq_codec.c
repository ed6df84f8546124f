/* SPDX-License-Identifier: ISC */
/* levee-test-deps: src/wire/base64.c */
/*
 * Queue payload codec and the queue's pure helpers: round trips of every
 * parameter form, malformed payloads refused, partition choice, backoff
 * schedule, stream ids and command tags.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/mem.h"
#include "wq/codec.h"

static char *encode(const lv_wq_msg_t *m)
{
	lv_buf_t b;
	lv_err_t err = {0};
	lv_buf_init(&b);
	assert_int_equal(lv_wq_encode(m, &b, &err), 0);
	char *s = lv_strndup((const char *)b.data, b.len);
	lv_buf_cleanup(&b);
	return s;
}

static void test_round_trip(void **state)
{
	static const char bin[] = {0, 1, (char)0xff};
	static const char bad_utf8[] = {'a', (char)0xc3, 0};
	const char *values[] = {"42", NULL, bin, bad_utf8, "caf\xc3\xa9 \"q\"\n"};
	int32_t lens[] = {2, -1, 3, 2, 11};
	int16_t formats[] = {0, 0, 1, 0, 0};
	uint32_t types[] = {23, 25, 17, 25, 0};
	lv_wq_msg_t m = {.db = "app", .user = "app", .key = "user:42", .table = "t",
			 .sql = "INSERT INTO t VALUES ($1, $2, $3, $4, $5)", .n_params = 5,
			 .values = values, .lens = lens, .formats = formats, .types = types};
	char *json = encode(&m);
	lv_wq_decoded_t d;
	lv_err_t err = {0};
	assert_int_equal(lv_wq_decode(json, strlen(json), &d, &err), 0);
	assert_string_equal(d.db, "app");
	assert_string_equal(d.user, "app");
	assert_string_equal(d.key, "user:42");
	assert_string_equal(d.table, "t");
	assert_string_equal(d.sql, m.sql);
	assert_int_equal(d.n_params, 5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(d.lens[i], lens[i]);
		assert_int_equal(d.formats[i], formats[i]);
		assert_int_equal(d.types[i], types[i]);
		if (lens[i] < 0)
			assert_null(d.values[i]);
		else
			assert_memory_equal(d.values[i], values[i], (size_t)lens[i]);
	}
	lv_wq_decoded_cleanup(&d);
	lv_wq_decoded_cleanup(&d); /* zeroed: a no-op */
	lv_free(json);
}

static void test_key_defaults_to_table(void **state)
{
	lv_wq_msg_t m = {.db = "app", .user = "u", .table = "orders", .sql = "DELETE FROM orders"};
	char *json = encode(&m);
	lv_wq_decoded_t d;
	assert_int_equal(lv_wq_decode(json, strlen(json), &d, NULL), 0);
	assert_string_equal(d.key, "orders");
	assert_int_equal(d.n_params, 0);
	lv_wq_decoded_cleanup(&d);
	lv_free(json);
}

static void test_counted_sql(void **state)
{
	/* A statement text stored without a NUL (as a remembered Parse keeps it). */
	char *raw = lv_xmalloc(32);
	memcpy(raw, "DELETE FROM t;XXXX", 18);
	lv_wq_msg_t m = {.db = "app", .user = "u", .table = "t", .sql = raw, .sql_len = 13};
	char *json = encode(&m);
	lv_wq_decoded_t d;
	assert_int_equal(lv_wq_decode(json, strlen(json), &d, NULL), 0);
	assert_string_equal(d.sql, "DELETE FROM t");
	lv_wq_decoded_cleanup(&d);
	lv_free(json);
	lv_free(raw);
}

static void test_encode_refuses(void **state)
{
	lv_buf_t b;
	lv_err_t err = {0};
	lv_buf_init(&b);
	lv_wq_msg_t no_sql = {.db = "app", .user = "u"};
	assert_int_equal(lv_wq_encode(&no_sql, &b, &err), LV_EINVAL);
	const char *v[] = {"x"};
	int16_t f[] = {2};
	lv_wq_msg_t bad_fmt = {.db = "app", .user = "u", .sql = "x", .n_params = 1, .values = v,
			       .formats = f};
	assert_int_equal(lv_wq_encode(&bad_fmt, &b, &err), LV_EINVAL);
	assert_int_equal(b.len, 0);
	lv_buf_cleanup(&b);
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"{not json",
		"[]",
		"{\"v\":2,\"db\":\"a\",\"user\":\"u\",\"key\":\"\",\"table\":\"\",\"sql\":\"x\",\"params\":[]}",
		"{\"v\":1,\"user\":\"u\",\"key\":\"\",\"table\":\"\",\"sql\":\"x\",\"params\":[]}",
		"{\"v\":1,\"db\":\"\",\"user\":\"u\",\"key\":\"\",\"table\":\"\",\"sql\":\"x\",\"params\":[]}",
		"{\"v\":1,\"db\":\"a\",\"user\":\"u\",\"key\":\"\",\"table\":\"\",\"sql\":\"x\"}",
		"{\"v\":1,\"db\":\"a\",\"user\":\"u\",\"key\":\"\",\"table\":\"\",\"sql\":\"x\",\"params\":[1]}",
		"{\"v\":1,\"db\":\"a\",\"user\":\"u\",\"key\":\"\",\"table\":\"\",\"sql\":\"x\",\"params\":[{\"t\":0,\"f\":2,\"v\":\"1\"}]}",
		"{\"v\":1,\"db\":\"a\",\"user\":\"u\",\"key\":\"\",\"table\":\"\",\"sql\":\"x\",\"params\":[{\"t\":-1,\"f\":0,\"v\":\"1\"}]}",
		"{\"v\":1,\"db\":\"a\",\"user\":\"u\",\"key\":\"\",\"table\":\"\",\"sql\":\"x\",\"params\":[{\"t\":0,\"f\":0}]}",
		"{\"v\":1,\"db\":\"a\",\"user\":\"u\",\"key\":\"\",\"table\":\"\",\"sql\":\"x\",\"params\":[{\"t\":0,\"f\":0,\"v\":\"1\",\"n\":true}]}",
		"{\"v\":1,\"db\":\"a\",\"user\":\"u\",\"key\":\"\",\"table\":\"\",\"sql\":\"x\",\"params\":[{\"t\":0,\"f\":1,\"b\":\"AAE\"}]}",
		"{\"v\":1,\"db\":\"a\",\"user\":\"u\",\"key\":\"\",\"table\":\"\",\"sql\":\"x\",\"params\":[{\"t\":0,\"f\":1,\"b\":\"A*E=\"}]}",
		"{\"v\":1,\"db\":\"a\",\"user\":\"u\",\"key\":\"\",\"table\":\"\",\"sql\":\"x\",\"params\":[{\"t\":0,\"f\":0,\"n\":false}]}",
		"{\"v\":1,\"db\":\"a\",\"user\":7,\"key\":\"\",\"table\":\"\",\"sql\":\"x\",\"params\":[]}",
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
		lv_wq_decoded_t d;
		lv_err_t err = {0};
		int rc = lv_wq_decode(bad[i], strlen(bad[i]), &d, &err);
		if (rc != LV_EPROTO)
			fail_msg("case %zu decoded (rc %d)", i, rc);
		assert_true(err.msg[0] != '\0');
		assert_null(d.db);
	}
}

static void test_partition(void **state)
{
	/* FNV-1a 32: "" = 2166136261, "a" = 0xe40c292c. */
	assert_int_equal(lv_wq_partition(""), 2166136261u % LV_WQ_PARTITIONS);
	assert_int_equal(lv_wq_partition("a"), 0xe40c292cu % LV_WQ_PARTITIONS);
	assert_int_equal(lv_wq_partition("user:42"), lv_wq_partition("user:42"));
	unsigned seen = 0;
	char key[16];
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		unsigned p = lv_wq_partition(key);
		assert_true(p < LV_WQ_PARTITIONS);
		seen |= 1u << p;
	}
	assert_int_equal(seen, (1u << LV_WQ_PARTITIONS) - 1);
}

static void test_backoff(void **state)
{
	assert_int_equal(lv_wq_backoff_ms(0, 100, 1000), 0);
	assert_int_equal(lv_wq_backoff_ms(1, 100, 1000), 100);
	assert_int_equal(lv_wq_backoff_ms(2, 100, 1000), 200);
	assert_int_equal(lv_wq_backoff_ms(4, 100, 1000), 800);
	assert_int_equal(lv_wq_backoff_ms(5, 100, 1000), 1000);
	assert_int_equal(lv_wq_backoff_ms(1000, 100, 1000), 1000);
	assert_true(lv_wq_backoff_ms(200, 100, 0) > 0); /* no cap: no overflow either */
}

static void test_ids_and_tags(void **state)
{
	uint64_t ms, seq;
	assert_true(lv_wq_parse_id("1700000000000-5", &ms, &seq));
	assert_true(ms == 1700000000000ULL && seq == 5);
	assert_false(lv_wq_parse_id("1700000000000", &ms, &seq));
	assert_false(lv_wq_parse_id("-1-2", &ms, &seq));
	assert_false(lv_wq_parse_id("1-", &ms, &seq));
	assert_false(lv_wq_parse_id("1-2x", &ms, &seq));
	assert_string_equal(lv_wq_command_tag(LV_SQL_INSERT), "INSERT 0 0");
	assert_string_equal(lv_wq_command_tag(LV_SQL_UPDATE), "UPDATE 0");
	assert_string_equal(lv_wq_command_tag(LV_SQL_DELETE), "DELETE 0");
	assert_string_equal(lv_wq_command_tag(LV_SQL_MERGE), "MERGE 0");
	assert_null(lv_wq_command_tag(LV_SQL_SELECT));
	assert_string_equal(lv_wq_status_sqlstate(LV_WQ_FULL), "53400");
	assert_string_equal(lv_wq_status_sqlstate(LV_WQ_OK), "00000");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),    cmocka_unit_test(test_key_defaults_to_table),
		cmocka_unit_test(test_encode_refuses), cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_partition),     cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_ids_and_tags),  cmocka_unit_test(test_counted_sql),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
