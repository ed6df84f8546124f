/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer target for wire/: feeds arbitrary bytes to every parser in
 * wire/read.c and to the SCRAM message handlers in wire/scram.c, and checks
 * that what parses survives a rebuild through wire/write.c unchanged.
 *
 * The first input byte picks the mode; the rest is the input:
 *   0  a regular message: header, then every body parser on the body
 *   1  a startup-phase packet
 *   2  SCRAM server side: client-first, '\n', client-final
 *   3  SCRAM client side: server-first, '\n', server-final
 *   4  base64 and SCRAM secret parsing
 *
 * Not built by make. Build and run with:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -D_GNU_SOURCE \
 *       tests/fuzz/fuzz_wire_read.c src/wire/read.c src/wire/write.c \
 *       src/wire/scram.c src/wire/base64.c src/core/buf.c src/core/mem.c src/core/status.c \
 *       src/core/str.c -lcrypto -o build/fuzz_wire_read
 *   mkdir -p build/fuzz-corpus && build/fuzz_wire_read -max_len=4096 build/fuzz-corpus
 */
#include "core/lv.h"
#include "wire/read.h"
#include "wire/scram.h"
#include "wire/write.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                        \
	do {                                                            \
		if (!(x)) {                                             \
			fprintf(stderr, "fuzz check failed: %s\n", #x); \
			abort();                                        \
		}                                                       \
	} while (0)

/* A Bind that parsed must rebuild (renamed) into one that parses the same. */
static void check_bind(const uint8_t *body, size_t len)
{
	lv_wire_bind_t a, b;
	if (lv_wire_parse_bind(body, len, &a) != 0)
		return;
	lv_buf_t buf;
	lv_buf_init(&buf);
	CHECK(lv_wire_write_bind_renamed(&buf, &a, "levee_fuzz"));
	uint8_t type;
	uint32_t l;
	CHECK(lv_wire_read_header(buf.data, buf.len, SIZE_MAX, &type, &l) == 0);
	CHECK(lv_wire_parse_bind(buf.data + 5, l - 4, &b) == 0);
	CHECK(strcmp(a.portal, b.portal) == 0 && strcmp(b.stmt, "levee_fuzz") == 0);
	CHECK(a.n_params == b.n_params && a.params_len == b.params_len &&
	      memcmp(a.params, b.params, a.params_len) == 0);
	lv_buf_cleanup(&buf);
}

static void check_parse(const uint8_t *body, size_t len)
{
	lv_wire_parse_t a, b;
	if (lv_wire_parse_parse(body, len, &a) != 0)
		return;
	lv_buf_t buf;
	lv_buf_init(&buf);
	CHECK(lv_wire_write_parse_renamed(&buf, &a, ""));
	CHECK(lv_wire_parse_parse(buf.data + 5, buf.len - 5, &b) == 0);
	CHECK(a.query_len == b.query_len && memcmp(a.query, b.query, a.query_len) == 0);
	CHECK(a.n_param_types == b.n_param_types);
	lv_buf_cleanup(&buf);
}

static void all_body_parsers(const uint8_t *body, size_t len)
{
	lv_wire_error_t e;
	lv_wire_auth_t au;
	lv_wire_notify_t nt;
	lv_wire_negotiate_t ng;
	lv_wire_sasl_initial_t si;
	const char *s1, *s2;
	int32_t i32;
	uint32_t u32;
	uint8_t u8;
	size_t sz;
	const uint8_t *bp;
	uint64_t rows;

	(void)lv_wire_parse_error(body, len, &e);
	(void)lv_wire_parse_param_status(body, len, &s1, &s2);
	(void)lv_wire_parse_backend_key(body, len, &i32, &u32);
	(void)lv_wire_parse_ready(body, len, &u8);
	if (lv_wire_parse_auth(body, len, &au) == 0)
		(void)lv_wire_auth_has_mech(&au, LV_SCRAM_MECH);
	if (lv_wire_parse_command_complete(body, len, &s1) == 0)
		(void)lv_wire_tag_rows(s1, &rows);
	(void)lv_wire_parse_notify(body, len, &nt);
	(void)lv_wire_parse_negotiate(body, len, &ng);
	(void)lv_wire_parse_query(body, len, &s1, &sz);
	(void)lv_wire_parse_target(body, len, &u8, &s1);
	(void)lv_wire_parse_execute(body, len, &s1, &i32);
	(void)lv_wire_parse_sasl_initial(body, len, &si);
	(void)lv_wire_parse_sasl_response(body, len, &bp, &sz);
	(void)lv_wire_parse_password(body, len, &s1);
	check_bind(body, len);
	check_parse(body, len);
}

/* Splits at the first '\n': [data, *a_len) and the rest. */
static const uint8_t *split(const uint8_t *data, size_t size, size_t *a_len, size_t *b_len)
{
	const uint8_t *nl = memchr(data, '\n', size);
	*a_len = nl ? (size_t)(nl - data) : size;
	*b_len = nl ? size - *a_len - 1 : 0;
	return nl ? nl + 1 : data + size;
}

static void fuzz_scram_server(const uint8_t *data, size_t size)
{
	static const uint8_t mock_key[LV_SCRAM_KEY_LEN] = {7};
	lv_scram_secret_t secret;
	CHECK(lv_scram_parse_secret("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkd"
				    "i4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQ"
				    "xSrmfPwDl2dU=",
				    &secret) == 0);
	size_t a, b;
	const uint8_t *rest = split(data, size, &a, &b);
	lv_buf_t out;
	lv_err_t err;
	lv_scram_server_t s;
	lv_buf_init(&out);
	for (int mock = 0; mock < 2; mock++) {
		lv_scram_server_init(&s);
		int rc = mock ? lv_scram_server_first_mock(&s, "u", mock_key, data, a, &out, &err)
			      : lv_scram_server_first(&s, &secret, data, a, &out, &err);
		if (rc == 0) {
			rc = lv_scram_server_final(&s, rest, b, &out, &err);
			CHECK(rc != 0 || !mock);
		}
		lv_buf_reset(&out);
	}
	lv_buf_cleanup(&out);
}

static void fuzz_scram_client(const uint8_t *data, size_t size)
{
	size_t a, b;
	const uint8_t *rest = split(data, size, &a, &b);
	lv_buf_t out;
	lv_err_t err;
	lv_scram_client_t c;
	lv_buf_init(&out);
	/* A fixed client nonce the input can extend; one iteration keeps it fast. */
	CHECK(lv_scram_client_init(&c, "pencil") == 0);
	CHECK(lv_scram_client_set_nonce(&c, "abc") == 0);
	CHECK(lv_scram_client_first(&c, &out) == 0);
	lv_buf_reset(&out);
	/* Skip big iteration counts so the fuzzer does not spend its time in PBKDF2. */
	const uint8_t *it = a > 0 ? memmem(data, a, ",i=", 3) : NULL;
	if (it) {
		unsigned long v = 0;
		for (const uint8_t *d = it + 3; d < data + a && *d >= '0' && *d <= '9'; d++)
			if ((v = v * 10 + (unsigned long)(*d - '0')) > 16)
				goto out;
	}
	if (lv_scram_client_continue(&c, data, a, &out, &err) == 0)
		(void)lv_scram_client_verify(&c, rest, b, &err);
out:
	lv_scram_client_cleanup(&c);
	lv_buf_cleanup(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;
	switch (mode % 5) {
	case 0: {
		uint8_t type;
		uint32_t len;
		if (lv_wire_read_header(data, size, LV_WIRE_MAX_MSG_LEN, &type, &len) == 0 &&
		    size - 1 >= len)
			all_body_parsers(data + LV_WIRE_HEADER_LEN, len - 4);
		/* And the raw input as a body, so short bodies are reached directly. */
		all_body_parsers(data, size);
		break;
	}
	case 1: {
		lv_startup_t st;
		lv_err_t err;
		uint32_t len;
		int rc = lv_wire_parse_startup(data, size, &st, &err);
		if (rc == 0) {
			CHECK(lv_wire_startup_len(data, size, &len) == 0 && len == st.len);
			CHECK(st.kind != LV_STARTUP_NORMAL || (st.user && st.user[0]));
		}
		break;
	}
	case 2:
		fuzz_scram_server(data, size);
		break;
	case 3:
		fuzz_scram_client(data, size);
		break;
	case 4: {
		uint8_t out[1024];
		size_t n;
		(void)lv_scram_base64_decode((const char *)data, size, out, sizeof(out), &n);
		char *s = malloc(size + 1);
		if (!s)
			return 0;
		memcpy(s, data, size);
		s[size] = '\0';
		lv_scram_secret_t secret;
		(void)lv_scram_parse_secret(s, &secret);
		(void)lv_secret_kind(s);
		free(s);
		break;
	}
	}
	return 0;
}
