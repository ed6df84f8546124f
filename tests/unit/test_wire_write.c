/* levee-test-deps: src/wire/read.c */
/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for wire/write.c: builders compared byte for byte against the
 * hand-checked fixtures in tests/unit/fixtures/wire/ (the same corpus that
 * test_wire_read uses), round trips through wire/read.c, statement renaming,
 * and the "buffer unchanged on failure" promise under injected OOM.
 */
#include "core/lv.h"
#include "wire/write.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "core/mem.h"
#include "wire/read.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static const char *fixture_dir(void)
{
	static char dir[512];
	if (!dir[0]) {
		const char *env = getenv("LV_FIXTURES");
		if (env) {
			snprintf(dir, sizeof(dir), "%s/wire", env);
		} else {
			const char *slash = strrchr(__FILE__, '/');
			int n = slash ? (int)(slash - __FILE__) : 1;
			snprintf(dir, sizeof(dir), "%.*s/fixtures/wire", n, slash ? __FILE__ : ".");
		}
	}
	return dir;
}

/* Loads a hex fixture ('#' comments, whitespace ignored) into a malloc'ed block. */
static uint8_t *load_hex(const char *name, size_t *len)
{
	char path[768];
	snprintf(path, sizeof(path), "%s/%s", fixture_dir(), name);
	FILE *f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open fixture %s", path);
	uint8_t *out = malloc(1 << 16);
	assert_non_null(out);
	size_t n = 0;
	int c, hi = -1;
	bool comment = false;
	while ((c = fgetc(f)) != EOF) {
		if (comment) {
			comment = c != '\n';
			continue;
		}
		if (c == '#') {
			comment = true;
			continue;
		}
		if (strchr(" \t\r\n", c))
			continue;
		int v = (c >= '0' && c <= '9')   ? c - '0'
			: (c >= 'a' && c <= 'f') ? c - 'a' + 10
						 : -1;
		assert_true(v >= 0);
		if (hi < 0) {
			hi = v;
		} else {
			assert_true(n < (1 << 16));
			out[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	fclose(f);
	*len = n;
	return out;
}

static void assert_buf_is_fixture(const lv_buf_t *b, const char *name)
{
	size_t n;
	uint8_t *want = load_hex(name, &n);
	if (lv_buf_unread(b) != n || memcmp(lv_buf_head(b), want, n) != 0) {
		char hex[2048] = "";
		for (size_t i = 0; i < lv_buf_unread(b) && i < 1000; i++)
			snprintf(hex + 2 * i, 3, "%02x", lv_buf_head(b)[i]);
		fail_msg("%s: built %zu bytes %s, fixture has %zu", name, lv_buf_unread(b), hex, n);
	}
	free(want);
}

/* Frames the one message in b: checks it is complete and alone; returns its body. */
static const uint8_t *only_msg(const lv_buf_t *b, uint8_t want_type, size_t *len)
{
	uint8_t type;
	uint32_t l;
	assert_int_equal(lv_wire_read_header(lv_buf_head(b), lv_buf_unread(b), 1 << 20, &type, &l),
			 0);
	assert_int_equal(type, want_type);
	assert_int_equal(1 + (size_t)l, lv_buf_unread(b));
	*len = l - 4;
	return lv_buf_head(b) + LV_WIRE_HEADER_LEN;
}

/* ------------------------------------------------------------------------
 * Byte-exact encodings
 * ------------------------------------------------------------------------ */

static void test_known_encodings(void **state)
{
	(void)state;
	lv_buf_t b;
	lv_buf_init(&b);

#define CHECK(call, fixture)                        \
	do {                                        \
		lv_buf_reset(&b);                   \
		assert_true(call);                  \
		assert_buf_is_fixture(&b, fixture); \
	} while (0)

	static const char *const startup[] = {
		"user", "alice", "database", "app", "application_name", "psql", NULL};
	static const char *const mechs[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", NULL};
	static const uint8_t salt[4] = {1, 2, 3, 4};
	static const uint32_t oids[] = {23, 25};
	static const char cf[] = "n,,n=,r=rOprNGfwEbeRWgbNEkqO1234";

	CHECK(lv_wire_write_startup(&b, startup), "startup_ok.hex");
	CHECK(lv_wire_write_ssl_request(&b), "startup_ssl.hex");
	CHECK(lv_wire_write_gss_request(&b), "startup_gss.hex");
	CHECK(lv_wire_write_cancel(&b, 4321, 0xdeadbeef), "startup_cancel.hex");
	CHECK(lv_wire_write_sync(&b), "hdr_len4.hex");
	CHECK(lv_wire_write_ready(&b, LV_WIRE_TXN_IDLE), "be_rfq_idle.hex");
	CHECK(lv_wire_write_ready(&b, LV_WIRE_TXN_FAILED), "be_rfq_failed.hex");
	CHECK(lv_wire_write_param_status(&b, "server_version", "15.4"), "be_param_status_ok.hex");
	CHECK(lv_wire_write_backend_key(&b, 77, 0x01020304), "be_backend_key_ok.hex");
	CHECK(lv_wire_write_auth_ok(&b), "be_auth_ok.hex");
	CHECK(lv_wire_write_auth_cleartext(&b), "be_auth_cleartext.hex");
	CHECK(lv_wire_write_auth_md5(&b, salt), "be_auth_md5.hex");
	CHECK(lv_wire_write_auth_sasl(&b, mechs), "be_auth_sasl.hex");
	CHECK(lv_wire_write_auth_sasl_continue(&b, "r=abcdef,s=QSXCR+Q6sek8bf92,i=4096", 34),
	      "be_auth_sasl_cont.hex");
	CHECK(lv_wire_write_command_complete(&b, "INSERT 0 5"), "be_command_complete_ok.hex");
	static const char *const opts[] = {"_pq_.compression"};
	CHECK(lv_wire_write_negotiate(&b, 0, 1, opts), "be_negotiate_ok.hex");
	CHECK(lv_wire_write_query(&b, "SELECT 1"), "fe_query_ok.hex");
	CHECK(lv_wire_write_parse(&b, "s1", "SELECT $1::int, $2", 2, oids), "fe_parse_ok.hex");
	CHECK(lv_wire_write_describe(&b, 'S', "s1"), "fe_describe_ok.hex");
	CHECK(lv_wire_write_close(&b, 'P', ""), "fe_close_ok.hex");
	CHECK(lv_wire_write_execute(&b, "", 10), "fe_execute_ok.hex");
	CHECK(lv_wire_write_password(&b, "secret"), "fe_password_ok.hex");
	CHECK(lv_wire_write_sasl_initial(&b, "SCRAM-SHA-256", cf, strlen(cf)),
	      "fe_sasl_initial_ok.hex");
	CHECK(lv_wire_write_sasl_initial(&b, "SCRAM-SHA-256", NULL, 0), "fe_sasl_initial_none.hex");
	CHECK(lv_wire_write_sasl_response(&b, "c=biws,r=abc,p=AAAA", 19),
	      "fe_sasl_response_ok.hex");
#undef CHECK

	/* A few more, spelled out. */
	static const uint8_t term[] = {'X', 0, 0, 0, 4};
	static const uint8_t flush[] = {'H', 0, 0, 0, 4};
	static const uint8_t empty[] = {'I', 0, 0,   0, 4, '1', 0, 0,   0, 4, '2', 0, 0,
					0,   4, '3', 0, 0, 0,   4, 'n', 0, 0, 0,   4};
	static const uint8_t fin[] = {'R', 0, 0, 0, 10, 0, 0, 0, 12, 'v', '='};
	lv_buf_reset(&b);
	assert_true(lv_wire_write_terminate(&b));
	assert_memory_equal(b.data, term, sizeof(term));
	lv_buf_reset(&b);
	assert_true(lv_wire_write_flush(&b));
	assert_memory_equal(b.data, flush, sizeof(flush));
	lv_buf_reset(&b);
	assert_true(lv_wire_write_empty_query(&b) && lv_wire_write_parse_complete(&b) &&
		    lv_wire_write_bind_complete(&b) && lv_wire_write_close_complete(&b) &&
		    lv_wire_write_no_data(&b));
	assert_int_equal(b.len, sizeof(empty));
	assert_memory_equal(b.data, empty, sizeof(empty));
	lv_buf_reset(&b);
	assert_true(lv_wire_write_auth_sasl_final(&b, "v=", 2));
	assert_int_equal(b.len, sizeof(fin));
	assert_memory_equal(b.data, fin, sizeof(fin));

	/* ErrorResponse: S, V, C, M, then D and H only when given. */
	static const uint8_t err[] = "E\0\0\0\x30"
				     "SFATAL\0VFATAL\0C57P01\0Mlevee: shutting down\0";
	lv_buf_reset(&b);
	assert_true(lv_wire_write_error(&b, "FATAL", "57P01", "levee: shutting down", NULL, NULL));
	assert_int_equal(b.len, sizeof(err)); /* the literal's own NUL is the final field NUL */
	assert_memory_equal(b.data, err, sizeof(err));
	lv_buf_cleanup(&b);
}

/* ------------------------------------------------------------------------
 * Round trips through wire/read.c
 * ------------------------------------------------------------------------ */

static void test_error_notice_round_trip(void **state)
{
	(void)state;
	lv_buf_t b;
	lv_buf_init(&b);
	assert_true(lv_wire_write_error(&b, "ERROR", "08P01", "levee: bad message", "the detail",
					"the hint"));
	size_t len;
	const uint8_t *body = only_msg(&b, PqMsg_ErrorResponse, &len);
	lv_wire_error_t e;
	assert_int_equal(lv_wire_parse_error(body, len, &e), 0);
	assert_string_equal(e.severity, "ERROR");
	assert_string_equal(e.severity_loc, "ERROR");
	assert_string_equal(e.sqlstate, "08P01");
	assert_string_equal(e.message, "levee: bad message");
	assert_string_equal(e.detail, "the detail");
	assert_string_equal(e.hint, "the hint");

	lv_buf_reset(&b);
	assert_true(lv_wire_write_notice(&b, "WARNING", "01000", "levee: careful", NULL, "h"));
	body = only_msg(&b, PqMsg_NoticeResponse, &len);
	assert_int_equal(lv_wire_parse_error(body, len, &e), 0);
	assert_string_equal(e.severity, "WARNING");
	assert_null(e.detail);
	assert_string_equal(e.hint, "h");
	lv_buf_cleanup(&b);
}

static void test_startup_round_trip(void **state)
{
	(void)state;
	lv_buf_t b;
	lv_buf_init(&b);
	static const char *const params[] = {
		"user", "u1", "database", "d1", "options", "-c work_mem=64MB", NULL};
	assert_true(lv_wire_write_startup(&b, params));
	lv_startup_t st;
	assert_int_equal(lv_wire_parse_startup(b.data, b.len, &st, NULL), 0);
	assert_int_equal(st.kind, LV_STARTUP_NORMAL);
	assert_int_equal(st.len, b.len);
	assert_string_equal(st.user, "u1");
	assert_string_equal(st.database, "d1");
	assert_string_equal(st.options, "-c work_mem=64MB");
	assert_null(st.application_name);

	lv_buf_reset(&b);
	assert_true(lv_wire_write_cancel(&b, -5, 0xffffffffu));
	assert_int_equal(lv_wire_parse_startup(b.data, b.len, &st, NULL), 0);
	assert_int_equal(st.kind, LV_STARTUP_CANCEL);
	assert_int_equal(st.cancel_pid, -5);
	assert_int_equal(st.cancel_key, 0xffffffffu);
	lv_buf_cleanup(&b);
}

static void test_rows_round_trip(void **state)
{
	(void)state;
	lv_buf_t b;
	lv_buf_init(&b);
	static const char *const names[] = {"id", "name", "flag"};
	static const uint32_t oids[] = {20, 25, 16};
	assert_true(lv_wire_write_row_description(&b, 3, names, oids));
	size_t len;
	const uint8_t *body = only_msg(&b, PqMsg_RowDescription, &len);
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	assert_int_equal(lv_wire_get_i16(&r), 3);
	static const int16_t typlen[] = {8, -1, 1};
	for (int i = 0; i < 3; i++) {
		assert_string_equal(lv_wire_get_cstr(&r, NULL), names[i]);
		assert_int_equal(lv_wire_get_u32(&r), 0); /* table */
		assert_int_equal(lv_wire_get_i16(&r), 0); /* attnum */
		assert_int_equal(lv_wire_get_u32(&r), oids[i]);
		assert_int_equal(lv_wire_get_i16(&r), typlen[i]);
		assert_int_equal(lv_wire_get_i32(&r), -1); /* typmod */
		assert_int_equal(lv_wire_get_i16(&r), 0);  /* text */
	}
	assert_true(lv_wire_reader_done(&r));

	/* oids NULL: every column is text. */
	lv_buf_reset(&b);
	assert_true(lv_wire_write_row_description(&b, 1, names, NULL));
	body = only_msg(&b, PqMsg_RowDescription, &len);
	lv_wire_reader_init(&r, body, len);
	lv_wire_get_bytes(&r, 2 + 3 + 6);
	assert_int_equal(lv_wire_get_u32(&r), 25);

	/* DataRow with a NULL and an empty string. */
	lv_buf_reset(&b);
	static const char *const vals[] = {"42", NULL, ""};
	assert_true(lv_wire_write_data_row(&b, 3, vals));
	static const uint8_t row[] = {'D', 0,   0,    0,    20,   0,    3, 0, 0, 0, 2,
				      '4', '2', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
	assert_int_equal(b.len, sizeof(row));
	assert_memory_equal(b.data, row, sizeof(row));

	/* Counted values may hold NUL bytes; a NULL value's length is ignored. */
	lv_buf_reset(&b);
	static const char *const bin[] = {"a\0b", NULL};
	static const size_t lens[] = {3, 999};
	assert_true(lv_wire_write_data_row_len(&b, 2, bin, lens));
	body = only_msg(&b, PqMsg_DataRow, &len);
	lv_wire_reader_init(&r, body, len);
	assert_int_equal(lv_wire_get_i16(&r), 2);
	assert_int_equal(lv_wire_get_i32(&r), 3);
	assert_memory_equal(lv_wire_get_bytes(&r, 3), "a\0b", 3);
	assert_int_equal(lv_wire_get_i32(&r), -1);
	assert_true(lv_wire_reader_done(&r));

	/* Column counts that do not fit an int16 are refused, buffer untouched. */
	lv_buf_reset(&b);
	assert_false(lv_wire_write_data_row(&b, 70000, vals));
	assert_false(lv_wire_write_row_description(&b, 70000, names, NULL));
	assert_int_equal(b.len, 0);
	lv_buf_cleanup(&b);
}

static void test_extended_round_trip(void **state)
{
	(void)state;
	lv_buf_t b;
	lv_buf_init(&b);
	static const char *const params[] = {"1", NULL, "x y"};
	assert_true(lv_wire_write_bind(&b, "p1", "s1", 3, params));
	size_t len;
	const uint8_t *body = only_msg(&b, PqMsg_Bind, &len);
	lv_wire_bind_t bind;
	assert_int_equal(lv_wire_parse_bind(body, len, &bind), 0);
	assert_string_equal(bind.portal, "p1");
	assert_string_equal(bind.stmt, "s1");
	assert_int_equal(bind.n_param_formats, 0);
	assert_int_equal(bind.n_params, 3);
	assert_int_equal(bind.n_result_formats, 0);
	lv_wire_reader_t r;
	const uint8_t *v;
	int32_t vl;
	lv_wire_reader_init(&r, bind.params, bind.params_len);
	assert_true(lv_wire_bind_next_param(&r, &v, &vl) && vl == 1 && v[0] == '1');
	assert_true(lv_wire_bind_next_param(&r, &v, &vl) && vl == -1);
	assert_true(lv_wire_bind_next_param(&r, &v, &vl) && vl == 3 && !memcmp(v, "x y", 3));
	assert_false(lv_wire_bind_next_param(&r, &v, &vl));

	lv_buf_reset(&b);
	assert_true(lv_wire_write_parse(&b, "", "SELECT 1", 0, NULL));
	body = only_msg(&b, PqMsg_Parse, &len);
	lv_wire_parse_t pm;
	assert_int_equal(lv_wire_parse_parse(body, len, &pm), 0);
	assert_string_equal(pm.name, "");
	assert_string_equal(pm.query, "SELECT 1");
	assert_int_equal(pm.n_param_types, 0);

	lv_buf_reset(&b);
	assert_true(lv_wire_write_execute(&b, "p1", 0));
	body = only_msg(&b, PqMsg_Execute, &len);
	const char *portal;
	int32_t max;
	assert_int_equal(lv_wire_parse_execute(body, len, &portal, &max), 0);
	assert_string_equal(portal, "p1");
	assert_int_equal(max, 0);
	lv_buf_cleanup(&b);
}

static void test_renamed(void **state)
{
	(void)state;
	size_t n;
	uint8_t *src = load_hex("fe_bind_ok.hex", &n);
	lv_wire_bind_t orig, re;
	assert_int_equal(lv_wire_parse_bind(src + 5, n - 5, &orig), 0);
	lv_buf_t b;
	lv_buf_init(&b);
	assert_true(lv_wire_write_bind_renamed(&b, &orig, "levee_s_17"));
	size_t len;
	const uint8_t *body = only_msg(&b, PqMsg_Bind, &len);
	assert_int_equal(len, n - 5 + strlen("levee_s_17") - strlen("s1"));
	assert_int_equal(lv_wire_parse_bind(body, len, &re), 0);
	assert_string_equal(re.portal, "");
	assert_string_equal(re.stmt, "levee_s_17");
	assert_int_equal(re.tail_len, orig.tail_len);
	assert_memory_equal(re.tail, orig.tail, orig.tail_len);
	assert_int_equal(re.n_params, 2);
	assert_int_equal(re.n_result_formats, 1);
	free(src);

	src = load_hex("fe_parse_ok.hex", &n);
	lv_wire_parse_t po, pr;
	assert_int_equal(lv_wire_parse_parse(src + 5, n - 5, &po), 0);
	lv_buf_reset(&b);
	assert_true(lv_wire_write_parse_renamed(&b, &po, ""));
	body = only_msg(&b, PqMsg_Parse, &len);
	assert_int_equal(lv_wire_parse_parse(body, len, &pr), 0);
	assert_string_equal(pr.name, "");
	assert_string_equal(pr.query, po.query);
	assert_int_equal(pr.n_param_types, 2);
	assert_int_equal(lv_wire_parse_param_type(&pr, 0), 23);
	assert_int_equal(lv_wire_parse_param_type(&pr, 1), 25);
	free(src);
	lv_buf_cleanup(&b);
}

/* Several messages in one buffer, built after part of it was consumed. */
static void test_framing_with_compaction(void **state)
{
	(void)state;
	lv_buf_t b;
	lv_buf_init(&b);
	uint8_t filler[200];
	memset(filler, 'z', sizeof(filler));
	assert_true(lv_buf_append(&b, filler, sizeof(filler)));
	size_t cap = b.cap;
	lv_buf_consume(&b, 150); /* pos 150 of 200: the next growth compacts */
	char big[100];
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_true(lv_wire_write_query(&b, big));
	assert_int_equal(b.cap, cap); /* compacted, not grown */
	assert_int_equal(b.pos, 0);
	assert_int_equal(b.len, 50 + 5 + 100);
	uint8_t type;
	uint32_t l;
	assert_int_equal(lv_wire_read_header(b.data + 50, b.len - 50, 1 << 20, &type, &l), 0);
	assert_int_equal(type, 'Q');
	assert_int_equal(l, 104);
	assert_string_equal((const char *)b.data + 55, big);

	/* The generic pair by hand, untyped. */
	lv_buf_reset(&b);
	lv_wire_msg_t m;
	assert_true(lv_wire_msg_begin(&b, 0, &m));
	assert_true(lv_buf_put_u32(&b, LV_NEGOTIATE_SSL_CODE));
	assert_true(lv_wire_msg_end(&b, &m));
	assert_int_equal(b.len, 8);
	assert_int_equal(lv_get_u32(b.data), 8);

	/* Abort restores the buffer exactly. */
	assert_true(lv_wire_msg_begin(&b, 'Q', &m));
	assert_true(lv_buf_append_cstr(&b, "half"));
	lv_wire_msg_abort(&b, &m);
	assert_int_equal(b.len, 8);
	lv_buf_cleanup(&b);
}

/* ------------------------------------------------------------------------
 * Out of memory: every builder leaves the buffer as it was
 * ------------------------------------------------------------------------ */

static size_t fail_above;

static bool fail_large(size_t n)
{
	return n > fail_above;
}

static bool fail_all(size_t n)
{
	(void)n;
	return true;
}

static void test_oom_leaves_buffer_unchanged(void **state)
{
	(void)state;
	lv_buf_t b;
	lv_buf_init(&b);
	assert_true(lv_wire_write_sync(&b)); /* allocates 256 bytes */
	size_t len = b.len, cap = b.cap;

	/* Growth in the middle of a message fails: it is removed again. */
	fail_above = 256;
	lv_mem_set_fail_hook(fail_large);
	char v[300];
	memset(v, 'v', sizeof(v) - 1);
	v[sizeof(v) - 1] = '\0';
	const char *vals[] = {"a", v};
	assert_false(lv_wire_write_data_row(&b, 2, vals));
	assert_int_equal(b.len, len);
	assert_int_equal(b.cap, cap);
	assert_false(lv_wire_write_query(&b, v));
	assert_false(lv_wire_write_error(&b, "ERROR", "XX000", v, NULL, NULL));
	assert_int_equal(b.len, len);
	/* Small messages still fit the existing allocation. */
	assert_true(lv_wire_write_ready(&b, 'T'));
	len = b.len;

	/* Failure at the very first byte of a fresh buffer. */
	lv_buf_t fresh;
	lv_buf_init(&fresh);
	lv_mem_set_fail_hook(fail_all);
	assert_false(lv_wire_write_sync(&fresh));
	assert_false(lv_wire_write_startup(&fresh, (const char *const[]){"user", "u", NULL}));
	assert_int_equal(fresh.len, 0);
	assert_null(fresh.data);
	lv_mem_set_fail_hook(NULL);

	assert_memory_equal(b.data, "S\0\0\0\4Z\0\0\0\5T", 11);
	assert_int_equal(b.len, 11);
	lv_buf_cleanup(&b);
	lv_buf_cleanup(&fresh);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_encodings),
		cmocka_unit_test(test_error_notice_round_trip),
		cmocka_unit_test(test_startup_round_trip),
		cmocka_unit_test(test_rows_round_trip),
		cmocka_unit_test(test_extended_round_trip),
		cmocka_unit_test(test_renamed),
		cmocka_unit_test(test_framing_with_compaction),
		cmocka_unit_test(test_oom_leaves_buffer_unchanged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
