/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for wire/read.c: the bounded reader, framing, startup packets
 * and every message parser, driven mostly by the byte-stream corpus in
 * tests/unit/fixtures/wire/ (hex files, '#' comments). Each fixture is loaded
 * into a heap block of exactly its size, so a read past the end is caught by
 * valgrind and ASan, not just by the expected status.
 */
#include "core/lv.h"
#include "wire/read.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "core/buf.h"

/* ------------------------------------------------------------------------
 * Fixture loading
 * ------------------------------------------------------------------------ */

static const char *fixture_dir(void)
{
	static char dir[512];
	if (!dir[0]) {
		const char *env = getenv("LV_FIXTURES");
		if (env) {
			snprintf(dir, sizeof(dir), "%s/wire", env);
		} else {
			/* __FILE__ is tests/unit/test_wire_read.c, relative to the repo root. */
			const char *slash = strrchr(__FILE__, '/');
			int n = slash ? (int)(slash - __FILE__) : 1;
			snprintf(dir, sizeof(dir), "%.*s/fixtures/wire", n, slash ? __FILE__ : ".");
		}
	}
	return dir;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Loads a hex fixture into a malloc'ed block of exactly its size (NULL if empty). */
static uint8_t *load_hex(const char *name, size_t *len)
{
	char path[768];
	snprintf(path, sizeof(path), "%s/%s", fixture_dir(), name);
	FILE *f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open fixture %s", path);
	size_t cap = 64, n = 0;
	uint8_t *tmp = malloc(cap);
	assert_non_null(tmp);
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
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		int v = hexval(c);
		if (v < 0)
			fail_msg("fixture %s: bad character '%c'", name, c);
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n == cap) {
			cap *= 2;
			tmp = realloc(tmp, cap);
			assert_non_null(tmp);
		}
		tmp[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	fclose(f);
	if (hi >= 0)
		fail_msg("fixture %s: odd number of hex digits", name);
	uint8_t *out = NULL;
	if (n > 0) {
		out = malloc(n);
		assert_non_null(out);
		memcpy(out, tmp, n);
	}
	free(tmp);
	*len = n;
	return out;
}

/* ------------------------------------------------------------------------
 * Summaries: one line per parse result, compared against the table
 * ------------------------------------------------------------------------ */

typedef enum parser {
	P_HEADER, /* lv_wire_read_header only */
	P_FRAME,  /* header plus "is the whole message here" */
	P_STARTUP,
	P_ERROR,
	P_PARAM_STATUS,
	P_BACKEND_KEY,
	P_READY,
	P_AUTH,
	P_COMMAND_COMPLETE,
	P_NOTIFY,
	P_NEGOTIATE,
	P_QUERY,
	P_PARSE,
	P_BIND,
	P_TARGET,
	P_EXECUTE,
	P_PASSWORD,
	P_SASL_INITIAL,
	P_SASL_RESPONSE,
} parser_t;

#define MAX_HEADER 1048576

static const char *nz(const char *s)
{
	return s ? s : "-";
}

/* Frames a whole-message buffer: 0 with body/len, or an error status. */
static int frame(const uint8_t *p, size_t n, uint8_t *type, const uint8_t **body, size_t *len)
{
	uint32_t l;
	int rc = lv_wire_read_header(p, n, MAX_HEADER, type, &l);
	if (rc != 0)
		return rc;
	if (n - 1 < l)
		return LV_EAGAIN;
	*body = p + LV_WIRE_HEADER_LEN;
	*len = l - 4;
	return 0;
}

static int run_body_parser(parser_t ps, const uint8_t *body, size_t len, char *sum, size_t cap)
{
	int rc;
	switch (ps) {
	case P_ERROR: {
		lv_wire_error_t e;
		rc = lv_wire_parse_error(body, len, &e);
		if (rc == 0)
			snprintf(sum, cap, "sev=%s loc=%s code=%s msg=%s detail=%s hint=%s",
				 nz(e.severity), nz(e.severity_loc), nz(e.sqlstate), nz(e.message),
				 nz(e.detail), nz(e.hint));
		return rc;
	}
	case P_PARAM_STATUS: {
		const char *name, *value;
		rc = lv_wire_parse_param_status(body, len, &name, &value);
		if (rc == 0)
			snprintf(sum, cap, "%s=%s", name, value);
		return rc;
	}
	case P_BACKEND_KEY: {
		int32_t pid;
		uint32_t key;
		rc = lv_wire_parse_backend_key(body, len, &pid, &key);
		if (rc == 0)
			snprintf(sum, cap, "pid=%d key=%u", pid, key);
		return rc;
	}
	case P_READY: {
		uint8_t st;
		rc = lv_wire_parse_ready(body, len, &st);
		if (rc == 0)
			snprintf(sum, cap, "%c", st);
		return rc;
	}
	case P_AUTH: {
		lv_wire_auth_t a;
		rc = lv_wire_parse_auth(body, len, &a);
		if (rc == 0) {
			int n = snprintf(sum, cap, "code=%d len=%zu", a.code, a.data_len);
			for (size_t i = 0; i < a.n_mechs; i++)
				n += snprintf(sum + n, cap - (size_t)n, " %s", a.mechs[i]);
			if (a.code == LV_AUTH_REQ_MD5)
				snprintf(sum + n, cap - (size_t)n, " salt=%02x%02x%02x%02x",
					 a.data[0], a.data[1], a.data[2], a.data[3]);
		}
		return rc;
	}
	case P_COMMAND_COMPLETE: {
		const char *tag;
		uint64_t rows = 0;
		rc = lv_wire_parse_command_complete(body, len, &tag);
		if (rc == 0) {
			int rrc = lv_wire_tag_rows(tag, &rows);
			snprintf(sum, cap, "%s rows=%s%llu", tag, rrc == 0 ? "" : "none",
				 rrc == 0 ? (unsigned long long)rows : 0ULL);
		}
		return rc;
	}
	case P_NOTIFY: {
		lv_wire_notify_t nt;
		rc = lv_wire_parse_notify(body, len, &nt);
		if (rc == 0)
			snprintf(sum, cap, "pid=%d channel=%s payload=%s", nt.pid, nt.channel,
				 nt.payload);
		return rc;
	}
	case P_NEGOTIATE: {
		lv_wire_negotiate_t ng;
		rc = lv_wire_parse_negotiate(body, len, &ng);
		if (rc == 0)
			snprintf(sum, cap, "minor=%d n=%d first=%s", ng.newest_minor,
				 ng.n_unrecognized,
				 ng.n_unrecognized ? (const char *)ng.options : "-");
		return rc;
	}
	case P_QUERY: {
		const char *sql;
		size_t sql_len;
		rc = lv_wire_parse_query(body, len, &sql, &sql_len);
		if (rc == 0)
			snprintf(sum, cap, "%s (%zu)", sql, sql_len);
		return rc;
	}
	case P_PARSE: {
		lv_wire_parse_t pm;
		rc = lv_wire_parse_parse(body, len, &pm);
		if (rc == 0) {
			int n = snprintf(sum, cap, "name=%s query=%s types=", pm.name, pm.query);
			for (size_t i = 0; i < pm.n_param_types; i++)
				n += snprintf(sum + n, cap - (size_t)n, "%s%u", i ? "," : "",
					      lv_wire_parse_param_type(&pm, i));
		}
		return rc;
	}
	case P_BIND: {
		lv_wire_bind_t b;
		rc = lv_wire_parse_bind(body, len, &b);
		if (rc == 0) {
			int n = snprintf(sum, cap,
					 "portal=%s stmt=%s off=%zu tail=%zu params=", b.portal,
					 b.stmt, b.stmt_off, b.tail_len);
			lv_wire_reader_t r;
			const uint8_t *v;
			int32_t vl;
			size_t i = 0;
			lv_wire_reader_init(&r, b.params, b.params_len);
			while (lv_wire_bind_next_param(&r, &v, &vl)) {
				if (v)
					n += snprintf(sum + n, cap - (size_t)n, "%s%.*s/%d",
						      i ? "," : "", (int)vl, (const char *)v,
						      lv_wire_bind_param_format(&b, i));
				else
					n += snprintf(sum + n, cap - (size_t)n, "%sNULL",
						      i ? "," : "");
				i++;
			}
			assert_true(lv_wire_reader_done(&r));
			assert_int_equal(i, b.n_params);
			snprintf(sum + n, cap - (size_t)n, " results=%u", b.n_result_formats);
		}
		return rc;
	}
	case P_TARGET: {
		uint8_t kind;
		const char *name;
		rc = lv_wire_parse_target(body, len, &kind, &name);
		if (rc == 0)
			snprintf(sum, cap, "%c '%s'", kind, name);
		return rc;
	}
	case P_EXECUTE: {
		const char *portal;
		int32_t max;
		rc = lv_wire_parse_execute(body, len, &portal, &max);
		if (rc == 0)
			snprintf(sum, cap, "portal='%s' max=%d", portal, max);
		return rc;
	}
	case P_PASSWORD: {
		const char *pw;
		rc = lv_wire_parse_password(body, len, &pw);
		if (rc == 0)
			snprintf(sum, cap, "%s", pw);
		return rc;
	}
	case P_SASL_INITIAL: {
		lv_wire_sasl_initial_t si;
		rc = lv_wire_parse_sasl_initial(body, len, &si);
		if (rc == 0)
			snprintf(sum, cap, "mech=%s len=%d data=%.*s", si.mech, si.data_len,
				 si.data ? (int)si.data_len : 1,
				 si.data ? (const char *)si.data : "-");
		return rc;
	}
	case P_SASL_RESPONSE: {
		const uint8_t *d;
		size_t dl;
		rc = lv_wire_parse_sasl_response(body, len, &d, &dl);
		if (rc == 0)
			snprintf(sum, cap, "%.*s", (int)dl, (const char *)d);
		return rc;
	}
	default:
		fail_msg("not a body parser: %d", ps);
	}
	return LV_EINVAL;
}

static int run_parser(parser_t ps, const uint8_t *p, size_t n, char *sum, size_t cap)
{
	sum[0] = '\0';
	switch (ps) {
	case P_HEADER: {
		uint8_t type;
		uint32_t len;
		int rc = lv_wire_read_header(p, n, MAX_HEADER, &type, &len);
		if (rc == 0)
			snprintf(sum, cap, "type=%c len=%u", type, len);
		return rc;
	}
	case P_FRAME: {
		uint8_t type;
		const uint8_t *body;
		size_t len;
		int rc = frame(p, n, &type, &body, &len);
		if (rc == 0)
			snprintf(sum, cap, "type=%c body=%zu", type, len);
		return rc;
	}
	case P_STARTUP: {
		lv_startup_t st;
		lv_err_t err = {0};
		int rc = lv_wire_parse_startup(p, n, &st, &err);
		if (rc != 0) {
			/* Every failure explains itself. */
			assert_int_equal(err.code, rc);
			assert_true(err.msg[0] != '\0');
			return rc;
		}
		switch (st.kind) {
		case LV_STARTUP_NORMAL:
			snprintf(sum, cap,
				 "normal %u.%u user=%s database=%s options=%s app=%s n=%zu",
				 st.major, st.minor, nz(st.user), nz(st.database), nz(st.options),
				 nz(st.application_name), st.n_params);
			break;
		case LV_STARTUP_SSL:
			snprintf(sum, cap, "ssl");
			break;
		case LV_STARTUP_GSS:
			snprintf(sum, cap, "gss");
			break;
		case LV_STARTUP_CANCEL:
			snprintf(sum, cap, "cancel pid=%d key=%#x", st.cancel_pid, st.cancel_key);
			break;
		}
		return rc;
	}
	default: {
		uint8_t type = 0;
		const uint8_t *body = NULL;
		size_t len = 0;
		/* Message fixtures must hold exactly one complete message. */
		assert_int_equal(frame(p, n, &type, &body, &len), 0);
		assert_int_equal(LV_WIRE_HEADER_LEN + len, n);
		return run_body_parser(ps, body, len, sum, cap);
	}
	}
}

/* ------------------------------------------------------------------------
 * The corpus table
 * ------------------------------------------------------------------------ */

typedef struct corpus_case {
	const char *file;
	parser_t parser;
	int rc;
	const char *summary; /* expected summary when rc is 0 */
} corpus_case_t;

static const corpus_case_t corpus[] = {
	/* Framing. */
	{"hdr_empty.hex", P_HEADER, LV_EAGAIN, NULL},
	{"hdr_truncated.hex", P_HEADER, LV_EAGAIN, NULL},
	{"hdr_len0.hex", P_HEADER, LV_EPROTO, NULL},
	{"hdr_len3.hex", P_HEADER, LV_EPROTO, NULL},
	{"hdr_len4.hex", P_HEADER, 0, "type=S len=4"},
	{"hdr_len4.hex", P_FRAME, 0, "type=S body=0"},
	{"hdr_len_negative.hex", P_HEADER, LV_EPROTO, NULL},
	{"hdr_len_int_max.hex", P_HEADER, LV_ETOOBIG, NULL},
	{"hdr_len_past_buffer.hex", P_HEADER, 0, "type=Q len=100"},
	{"hdr_len_past_buffer.hex", P_FRAME, LV_EAGAIN, NULL},

	/* Startup-phase packets. */
	{"startup_ok.hex", P_STARTUP, 0,
	 "normal 3.0 user=alice database=app options=- app=psql n=3"},
	{"startup_minor2.hex", P_STARTUP, 0, "normal 3.2 user=bob database=- options=- app=- n=1"},
	{"startup_dup_user.hex", P_STARTUP, 0,
	 "normal 3.0 user=second database=- options=- app=- n=2"},
	{"startup_len0.hex", P_STARTUP, LV_EPROTO, NULL},
	{"startup_len7.hex", P_STARTUP, LV_EPROTO, NULL},
	{"startup_len_int_max.hex", P_STARTUP, LV_ETOOBIG, NULL},
	{"startup_len_10mb.hex", P_STARTUP, LV_ETOOBIG, NULL},
	{"startup_truncated.hex", P_STARTUP, LV_EAGAIN, NULL},
	{"startup_no_terminator.hex", P_STARTUP, LV_EPROTO, NULL},
	{"startup_no_params.hex", P_STARTUP, LV_EPROTO, NULL},
	{"startup_name_no_value.hex", P_STARTUP, LV_EPROTO, NULL},
	{"startup_unterminated_value.hex", P_STARTUP, LV_EPROTO, NULL},
	{"startup_trailing.hex", P_STARTUP, LV_EPROTO, NULL},
	{"startup_proto2.hex", P_STARTUP, LV_EUNSUPP, NULL},
	{"startup_proto4.hex", P_STARTUP, LV_EUNSUPP, NULL},
	{"startup_no_user.hex", P_STARTUP, LV_EINVAL, NULL},
	{"startup_empty_user.hex", P_STARTUP, LV_EINVAL, NULL},
	{"startup_too_many_params.hex", P_STARTUP, LV_ETOOBIG, NULL},
	{"startup_ssl.hex", P_STARTUP, 0, "ssl"},
	{"startup_gss.hex", P_STARTUP, 0, "gss"},
	{"startup_ssl_long.hex", P_STARTUP, LV_EPROTO, NULL},
	{"startup_cancel.hex", P_STARTUP, 0, "cancel pid=4321 key=0xdeadbeef"},
	{"startup_cancel_short.hex", P_STARTUP, LV_EPROTO, NULL},
	{"startup_cancel_long.hex", P_STARTUP, LV_EPROTO, NULL},
	{"startup_unknown_special.hex", P_STARTUP, LV_EUNSUPP, NULL},

	/* Backend messages. */
	{"be_error_ok.hex", P_ERROR, 0,
	 "sev=ERROR loc=ERROR code=42601 msg=syntax error at or near \"x\" detail=some detail "
	 "hint=a hint"},
	{"be_error_no_end.hex", P_ERROR, LV_EPROTO, NULL},
	{"be_error_bad_sqlstate.hex", P_ERROR, LV_EPROTO, NULL},
	{"be_error_unterminated.hex", P_ERROR, LV_EPROTO, NULL},
	{"be_error_trailing.hex", P_ERROR, LV_EPROTO, NULL},
	{"be_notice_ok.hex", P_ERROR, 0,
	 "sev=WARNUNG loc=WARNUNG code=01000 msg=careful detail=- hint=-"},
	{"be_rfq_idle.hex", P_READY, 0, "I"},
	{"be_rfq_failed.hex", P_READY, 0, "E"},
	{"be_rfq_bad_status.hex", P_READY, LV_EPROTO, NULL},
	{"be_rfq_empty.hex", P_READY, LV_EPROTO, NULL},
	{"be_rfq_trailing.hex", P_READY, LV_EPROTO, NULL},
	{"be_param_status_ok.hex", P_PARAM_STATUS, 0, "server_version=15.4"},
	{"be_param_status_no_value.hex", P_PARAM_STATUS, LV_EPROTO, NULL},
	{"be_backend_key_ok.hex", P_BACKEND_KEY, 0, "pid=77 key=16909060"},
	{"be_backend_key_short.hex", P_BACKEND_KEY, LV_EPROTO, NULL},
	{"be_backend_key_long.hex", P_BACKEND_KEY, LV_EPROTO, NULL},
	{"be_auth_ok.hex", P_AUTH, 0, "code=0 len=0"},
	{"be_auth_ok_trailing.hex", P_AUTH, LV_EPROTO, NULL},
	{"be_auth_short.hex", P_AUTH, LV_EPROTO, NULL},
	{"be_auth_cleartext.hex", P_AUTH, 0, "code=3 len=0"},
	{"be_auth_md5.hex", P_AUTH, 0, "code=5 len=4 salt=01020304"},
	{"be_auth_md5_short.hex", P_AUTH, LV_EPROTO, NULL},
	{"be_auth_sasl.hex", P_AUTH, 0, "code=10 len=34 SCRAM-SHA-256-PLUS SCRAM-SHA-256"},
	{"be_auth_sasl_empty.hex", P_AUTH, LV_EPROTO, NULL},
	{"be_auth_sasl_no_end.hex", P_AUTH, LV_EPROTO, NULL},
	{"be_auth_sasl_cont.hex", P_AUTH, 0, "code=11 len=34"},
	{"be_command_complete_ok.hex", P_COMMAND_COMPLETE, 0, "INSERT 0 5 rows=5"},
	{"be_command_complete_no_nul.hex", P_COMMAND_COMPLETE, LV_EPROTO, NULL},
	{"be_notify_ok.hex", P_NOTIFY, 0, "pid=9 channel=jobs payload=42"},
	{"be_notify_truncated.hex", P_NOTIFY, LV_EPROTO, NULL},
	{"be_negotiate_ok.hex", P_NEGOTIATE, 0, "minor=0 n=1 first=_pq_.compression"},
	{"be_negotiate_count_past_end.hex", P_NEGOTIATE, LV_EPROTO, NULL},

	/* Frontend messages. */
	{"fe_query_ok.hex", P_QUERY, 0, "SELECT 1 (8)"},
	{"fe_query_no_nul.hex", P_QUERY, LV_EPROTO, NULL},
	{"fe_query_trailing.hex", P_QUERY, LV_EPROTO, NULL},
	{"fe_query_empty_body.hex", P_QUERY, LV_EPROTO, NULL},
	{"fe_parse_ok.hex", P_PARSE, 0, "name=s1 query=SELECT $1::int, $2 types=23,25"},
	{"fe_parse_types_short.hex", P_PARSE, LV_EPROTO, NULL},
	{"fe_parse_no_count.hex", P_PARSE, LV_EPROTO, NULL},
	{"fe_bind_ok.hex", P_BIND, 0, "portal= stmt=s1 off=1 tail=20 params=42/0,NULL results=1"},
	{"fe_bind_len_past_end.hex", P_BIND, LV_EPROTO, NULL},
	{"fe_bind_len_minus2.hex", P_BIND, LV_EPROTO, NULL},
	{"fe_bind_trailing.hex", P_BIND, LV_EPROTO, NULL},
	{"fe_bind_no_result_count.hex", P_BIND, LV_EPROTO, NULL},
	{"fe_bind_stmt_no_nul.hex", P_BIND, LV_EPROTO, NULL},
	{"fe_describe_ok.hex", P_TARGET, 0, "S 's1'"},
	{"fe_describe_bad_kind.hex", P_TARGET, LV_EPROTO, NULL},
	{"fe_close_ok.hex", P_TARGET, 0, "P ''"},
	{"fe_close_no_name.hex", P_TARGET, LV_EPROTO, NULL},
	{"fe_execute_ok.hex", P_EXECUTE, 0, "portal='' max=10"},
	{"fe_execute_short.hex", P_EXECUTE, LV_EPROTO, NULL},
	{"fe_password_ok.hex", P_PASSWORD, 0, "secret"},
	{"fe_password_trailing.hex", P_PASSWORD, LV_EPROTO, NULL},
	{"fe_sasl_initial_ok.hex", P_SASL_INITIAL, 0,
	 "mech=SCRAM-SHA-256 len=32 data=n,,n=,r=rOprNGfwEbeRWgbNEkqO1234"},
	{"fe_sasl_initial_none.hex", P_SASL_INITIAL, 0, "mech=SCRAM-SHA-256 len=-1 data=-"},
	{"fe_sasl_initial_past_end.hex", P_SASL_INITIAL, LV_EPROTO, NULL},
	{"fe_sasl_initial_minus2.hex", P_SASL_INITIAL, LV_EPROTO, NULL},
	{"fe_sasl_initial_short_data.hex", P_SASL_INITIAL, LV_EPROTO, NULL},
	{"fe_sasl_response_ok.hex", P_SASL_RESPONSE, 0, "c=biws,r=abc,p=AAAA"},
};

static void test_corpus(void **state)
{
	(void)state;
	for (size_t i = 0; i < LV_ARRAY_LEN(corpus); i++) {
		const corpus_case_t *c = &corpus[i];
		size_t n;
		uint8_t *p = load_hex(c->file, &n);
		char sum[512];
		int rc = run_parser(c->parser, p, n, sum, sizeof(sum));
		if (rc != c->rc)
			fail_msg("%s: got %s, want %s", c->file, lv_status_name(rc),
				 lv_status_name(c->rc));
		if (c->rc == 0 && strcmp(sum, c->summary) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", c->file, sum, c->summary);
		free(p);
	}
}

/*
 * Every strict prefix of a valid message body must be rejected (or, for the
 * parsers whose bodies are open-ended, at least not read out of bounds).
 * Each prefix is copied into an exact-size block for the memory checkers.
 */
static void test_corpus_truncations(void **state)
{
	(void)state;
	for (size_t i = 0; i < LV_ARRAY_LEN(corpus); i++) {
		const corpus_case_t *c = &corpus[i];
		if (c->rc != 0 || c->parser == P_HEADER || c->parser == P_FRAME)
			continue;
		size_t n;
		uint8_t *p = load_hex(c->file, &n);
		char sum[512];
		if (c->parser == P_STARTUP) {
			for (size_t k = 0; k < n; k++) {
				uint8_t *q = malloc(k ? k : 1);
				memcpy(q, p, k);
				assert_int_equal(run_parser(P_STARTUP, q, k, sum, sizeof(sum)),
						 LV_EAGAIN);
				free(q);
			}
			free(p);
			continue;
		}
		const uint8_t *body = p + LV_WIRE_HEADER_LEN;
		size_t len = n - LV_WIRE_HEADER_LEN;
		for (size_t k = 0; k < len; k++) {
			uint8_t *q = malloc(k ? k : 1);
			memcpy(q, body, k);
			int rc = run_body_parser(c->parser, q, k, sum, sizeof(sum));
			bool open_ended = c->parser == P_SASL_RESPONSE ||
					  (c->parser == P_AUTH && strstr(c->file, "cont"));
			if (!open_ended && rc != LV_EPROTO)
				fail_msg("%s truncated to %zu: got %s", c->file, k,
					 lv_status_name(rc));
			free(q);
		}
		free(p);
	}
}

/* ------------------------------------------------------------------------
 * Direct tests
 * ------------------------------------------------------------------------ */

static void test_reader(void **state)
{
	(void)state;
	static const uint8_t b[] = {0x01, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x01, 'a', 'b', 0, 'c'};
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, b, sizeof(b));
	assert_int_equal(lv_wire_reader_left(&r), 11);
	assert_int_equal(lv_wire_get_u8(&r), 1);
	assert_int_equal(lv_wire_get_i16(&r), -2);
	assert_int_equal(lv_wire_get_i32(&r), INT32_MIN + 1);
	size_t len = 99;
	const char *s = lv_wire_get_cstr(&r, &len);
	assert_string_equal(s, "ab");
	assert_int_equal(len, 2);
	assert_false(lv_wire_reader_done(&r));
	/* "c" has no NUL: failure is sticky and nothing is returned after it. */
	assert_null(lv_wire_get_cstr(&r, NULL));
	assert_true(r.failed);
	assert_int_equal(lv_wire_reader_left(&r), 0);
	assert_int_equal(lv_wire_get_u8(&r), 0);
	assert_null(lv_wire_get_bytes(&r, 0));
	assert_false(lv_wire_reader_done(&r));

	lv_wire_reader_init(&r, b, 3);
	assert_int_equal(lv_wire_get_u16(&r), 0x01ff);
	assert_int_equal(lv_wire_get_u32(&r), 0); /* only one byte left */
	assert_true(r.failed);

	lv_wire_reader_init(&r, b, 2);
	assert_non_null(lv_wire_get_bytes(&r, 2));
	assert_non_null(lv_wire_get_bytes(&r, 0));
	assert_true(lv_wire_reader_done(&r));
	assert_null(lv_wire_get_bytes(&r, 1));
	assert_false(lv_wire_reader_done(&r));

	/* An empty body (NULL pointer) is done immediately and fails any read. */
	lv_wire_reader_init(&r, NULL, 0);
	assert_true(lv_wire_reader_done(&r));
	assert_int_equal(lv_wire_get_i16(&r), 0);
	assert_false(lv_wire_reader_done(&r));
}

static void test_header_limits(void **state)
{
	(void)state;
	uint8_t h[5] = {'D', 0, 0, 0x10, 0x00}; /* length 4096 */
	uint8_t type;
	uint32_t len;
	for (size_t n = 0; n < 5; n++)
		assert_int_equal(lv_wire_read_header(h, n, 8192, &type, &len), LV_EAGAIN);
	assert_int_equal(lv_wire_read_header(h, 5, 4096, &type, &len), 0);
	assert_int_equal(type, 'D');
	assert_int_equal(len, 4096);
	assert_int_equal(lv_wire_read_header(h, 5, 4095, &type, &len), LV_ETOOBIG);
	h[1] = 0x80; /* 2^31 + 4096: negative as int32, even with no limit */
	assert_int_equal(lv_wire_read_header(h, 5, SIZE_MAX, &type, &len), LV_EPROTO);

	uint32_t sl;
	assert_int_equal(lv_wire_startup_len(h, 3, &sl), LV_EAGAIN);
	assert_int_equal(lv_wire_startup_len(h + 1, 4, &sl), 0);
	assert_int_equal(sl, 0x80001000u);
}

static void test_startup_details(void **state)
{
	(void)state;
	size_t n;
	uint8_t *p = load_hex("startup_ok.hex", &n);
	lv_startup_t st;
	lv_err_t err;

	/* Bytes after the packet are not part of it. */
	uint8_t *q = malloc(n + 3);
	memcpy(q, p, n);
	memcpy(q + n, "xyz", 3);
	assert_int_equal(lv_wire_parse_startup(q, n + 3, &st, NULL), 0);
	assert_int_equal(st.len, n);
	assert_int_equal(st.version, LV_PG_PROTOCOL_3_0);
	assert_int_equal(st.n_params, 3);
	assert_string_equal(st.params[1].name, "database");
	assert_int_equal(st.params[1].name_len, 8);
	assert_string_equal(st.params[1].value, "app");
	assert_int_equal(st.params[1].value_len, 3);
	assert_string_equal(st.params[2].name, "application_name");
	/* The pointers point into the packet itself. */
	assert_true((const uint8_t *)st.user > q && (const uint8_t *)st.user < q + n);
	free(q);
	free(p);

	p = load_hex("startup_proto2.hex", &n);
	assert_int_equal(lv_wire_parse_startup(p, n, &st, &err), LV_EUNSUPP);
	assert_int_equal(err.code, LV_EUNSUPP);
	assert_non_null(strstr(err.msg, "2.0"));
	free(p);

	p = load_hex("startup_len_10mb.hex", &n);
	assert_int_equal(lv_wire_parse_startup(p, n, &st, &err), LV_ETOOBIG);
	assert_non_null(strstr(err.msg, "10485760"));
	free(p);

	/* Exactly LV_STARTUP_MAX_PARAMS parameters is fine. */
	lv_buf_t b;
	lv_buf_init(&b);
	assert_true(lv_buf_put_u32(&b, 0));
	assert_true(lv_buf_put_u32(&b, LV_PG_PROTOCOL_3_0));
	assert_true(lv_buf_append_cstr(&b, "user") && lv_buf_append_cstr(&b, "u"));
	for (int i = 1; i < LV_STARTUP_MAX_PARAMS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "p%d", i);
		assert_true(lv_buf_append_cstr(&b, name) && lv_buf_append_cstr(&b, "v"));
	}
	assert_true(lv_buf_put_u8(&b, 0));
	lv_buf_patch_u32(&b, 0, (uint32_t)b.len);
	assert_int_equal(lv_wire_parse_startup(b.data, b.len, &st, NULL), 0);
	assert_int_equal(st.n_params, LV_STARTUP_MAX_PARAMS);
	lv_buf_cleanup(&b);
}

static void test_tag_rows(void **state)
{
	(void)state;
	static const struct {
		const char *tag;
		int rc;
		uint64_t rows;
	} cases[] = {
		{"SELECT 5", 0, 5},
		{"INSERT 0 1", 0, 1},
		{"UPDATE 0", 0, 0},
		{"DELETE 18446744073709551615", 0, UINT64_MAX},
		{"DELETE 18446744073709551616", LV_ENOENT, 0},
		{"COPY 12", 0, 12},
		{"BEGIN", LV_ENOENT, 0},
		{"CREATE TABLE", LV_ENOENT, 0},
		{"SELECT ", LV_ENOENT, 0},
		{"SELECT 1x", LV_ENOENT, 0},
		{"", LV_ENOENT, 0},
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		uint64_t rows = 777;
		int rc = lv_wire_tag_rows(cases[i].tag, &rows);
		if (rc != cases[i].rc)
			fail_msg("tag \"%s\": got %d", cases[i].tag, rc);
		if (rc == 0)
			assert_true(rows == cases[i].rows);
	}
}

static void test_bind_formats(void **state)
{
	(void)state;
	/* Bind "" "" with 3 formats for 3 params: 1, 0, 1, and 2 result formats. */
	static const uint8_t body[] = {
		0,    0,                              /* portal, stmt */
		0,    3,    0,    1,    0,   0, 0, 1, /* 3 formats */
		0,    3,                              /* 3 params */
		0,    0,    0,    1,    'x',          /* "x" */
		0,    0,    0,    0,                  /* "" (empty, not NULL) */
		0xff, 0xff, 0xff, 0xff,               /* NULL */
		0,    2,    0,    0,    0,   1,       /* 2 result formats */
	};
	lv_wire_bind_t b;
	assert_int_equal(lv_wire_parse_bind(body, sizeof(body), &b), 0);
	assert_int_equal(b.n_params, 3);
	assert_int_equal(b.n_param_formats, 3);
	assert_int_equal(lv_wire_bind_param_format(&b, 0), 1);
	assert_int_equal(lv_wire_bind_param_format(&b, 1), 0);
	assert_int_equal(lv_wire_bind_param_format(&b, 2), 1);
	assert_int_equal(b.n_result_formats, 2);
	assert_int_equal(b.stmt_off, 1);
	assert_ptr_equal(b.tail, body + 2);
	assert_int_equal(b.tail_len, sizeof(body) - 2);
	lv_wire_reader_t r;
	const uint8_t *v;
	int32_t vl;
	lv_wire_reader_init(&r, b.params, b.params_len);
	assert_true(lv_wire_bind_next_param(&r, &v, &vl) && vl == 1 && v[0] == 'x');
	assert_true(lv_wire_bind_next_param(&r, &v, &vl) && vl == 0 && v != NULL);
	assert_true(lv_wire_bind_next_param(&r, &v, &vl) && vl == -1 && v == NULL);
	assert_false(lv_wire_bind_next_param(&r, &v, &vl));
	assert_true(lv_wire_reader_done(&r));

	/* A single format applies to every parameter; none means text. */
	b.n_param_formats = 1;
	assert_int_equal(lv_wire_bind_param_format(&b, 2), 1);
	b.n_param_formats = 0;
	assert_int_equal(lv_wire_bind_param_format(&b, 2), 0);
}

static void test_auth_mechs(void **state)
{
	(void)state;
	size_t n;
	uint8_t *p = load_hex("be_auth_sasl.hex", &n);
	lv_wire_auth_t a;
	assert_int_equal(lv_wire_parse_auth(p + 5, n - 5, &a), 0);
	assert_true(lv_wire_auth_has_mech(&a, "SCRAM-SHA-256"));
	assert_true(lv_wire_auth_has_mech(&a, "SCRAM-SHA-256-PLUS"));
	assert_false(lv_wire_auth_has_mech(&a, "SCRAM-SHA-1"));
	free(p);

	/* More mechanisms than LV_WIRE_MAX_SASL_MECHS is refused. */
	lv_buf_t b;
	lv_buf_init(&b);
	assert_true(lv_buf_put_u32(&b, LV_AUTH_REQ_SASL));
	for (int i = 0; i <= LV_WIRE_MAX_SASL_MECHS; i++)
		assert_true(lv_buf_append_cstr(&b, "M"));
	assert_true(lv_buf_put_u8(&b, 0));
	assert_int_equal(lv_wire_parse_auth(b.data, b.len, &a), LV_EPROTO);
	lv_buf_cleanup(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corpus),          cmocka_unit_test(test_corpus_truncations),
		cmocka_unit_test(test_reader),          cmocka_unit_test(test_header_limits),
		cmocka_unit_test(test_startup_details), cmocka_unit_test(test_tag_rows),
		cmocka_unit_test(test_bind_formats),    cmocka_unit_test(test_auth_mechs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
