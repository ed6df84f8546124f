/* levee-test-deps: src/cache/store.c src/cache/gens.c src/cache/key.c src/cache/policy.c src/wire/read.c src/wire/write.c tests/unit/fakes/time.c */
/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for cache/capture.c: accepted and rejected reply shapes,
 * byte-exact replay for simple and extended requests (the replay of a
 * captured reply equals the server's bytes), and L2 encode/decode round
 * trips, refusals, truncation at every byte and bit flips at every byte.
 */
#include "core/lv.h"
#include "cache/capture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "core/mem.h"
#include "core/status.h"
#include "fakes/fake_time.h"
#include "wire/write.h"

#define SEC LV_USEC_PER_SEC

/* ------------------------------------------------------------------------
 * Reply builders
 * ------------------------------------------------------------------------ */

static void put_T(lv_buf_t *b)
{
	static const char *const names[] = {"id", "title"};
	static const uint32_t oids[] = {23, 25};
	assert_true(lv_wire_write_row_description(b, 2, names, oids));
}

static void put_D(lv_buf_t *b, const char *id, const char *title)
{
	const char *v[] = {id, title};
	assert_true(lv_wire_write_data_row(b, 2, v));
}

static void put_C(lv_buf_t *b, const char *tag)
{
	assert_true(lv_wire_write_command_complete(b, tag));
}

static void put_Z(lv_buf_t *b, uint8_t st)
{
	assert_true(lv_wire_write_ready(b, st));
}

static void put_raw(lv_buf_t *b, uint8_t type, const char *body)
{
	assert_true(lv_wire_write_msg(b, type, body, body ? strlen(body) + 1 : 0));
}

/* Builds a reply from a compact script: each char is one message. */
static void script(lv_buf_t *b, const char *s)
{
	lv_buf_init(b);
	for (; *s; s++) {
		switch (*s) {
		case 'T':
			put_T(b);
			break;
		case 'D':
			put_D(b, "1", "hello");
			break;
		case 'd':
			put_D(b, "2", NULL);
			break;
		case 'C':
			put_C(b, "SELECT 1");
			break;
		case 'Z':
			put_Z(b, 'I');
			break;
		case 'z':
			put_Z(b, 'T');
			break;
		case '1':
			assert_true(lv_wire_write_parse_complete(b));
			break;
		case '2':
			assert_true(lv_wire_write_bind_complete(b));
			break;
		case '3':
			assert_true(lv_wire_write_close_complete(b));
			break;
		case 'n':
			assert_true(lv_wire_write_no_data(b));
			break;
		case 't': {
			static const uint8_t pd[] = {0, 1, 0, 0, 0, 23};
			assert_true(
				lv_wire_write_msg(b, PqMsg_ParameterDescription, pd, sizeof(pd)));
			break;
		}
		case 'E':
			assert_true(lv_wire_write_error(b, "ERROR", "42P01", "nope", NULL, NULL));
			break;
		case 'N':
			assert_true(lv_wire_write_notice(b, "NOTICE", "00000", "hm", NULL, NULL));
			break;
		case 'S':
			assert_true(lv_wire_write_param_status(b, "TimeZone", "UTC"));
			break;
		case 'I':
			assert_true(lv_wire_write_empty_query(b));
			break;
		case 's':
			put_raw(b, PqMsg_PortalSuspended, NULL);
			break;
		case 'A': {
			static const uint8_t nb[] = {0, 0, 0, 1, 'c', 0, 'p', 0};
			assert_true(
				lv_wire_write_msg(b, PqMsg_NotificationResponse, nb, sizeof(nb)));
			break;
		}
		case 'G': {
			static const uint8_t cb[] = {0, 0, 0};
			assert_true(lv_wire_write_msg(b, PqMsg_CopyInResponse, cb, sizeof(cb)));
			break;
		}
		case 'H': {
			static const uint8_t cb[] = {0, 0, 0};
			assert_true(lv_wire_write_msg(b, PqMsg_CopyOutResponse, cb, sizeof(cb)));
			break;
		}
		case 'x':
			put_raw(b, 'x', "??");
			break;
		default:
			fail_msg("bad script char %c", *s);
		}
	}
}

static uint8_t last_rd_type;

static lv_cache_reject_t run(const char *s, lv_cache_shape_t shape, lv_cache_capture_out_t *out)
{
	lv_buf_t b;
	script(&b, s);
	lv_cache_capture_t c;
	lv_cache_capture_init(&c, 1 << 20);
	assert_true(lv_cache_capture_add(&c, lv_buf_head(&b), lv_buf_unread(&b)));
	lv_cache_capture_out_t tmp;
	int rc = lv_cache_capture_finish(&c, shape, &tmp);
	assert_int_equal(rc == 0, tmp.reject == LV_CACHE_REJECT_NONE);
	if (rc != 0)
		assert_int_equal(rc, LV_EUNSUPP);
	/* The slices die with the capture: keep the description's type byte, drop pointers. */
	last_rd_type = tmp.has_rowdesc ? tmp.rowdesc[0] : 0;
	tmp.rowdesc = tmp.body = NULL;
	if (out)
		*out = tmp;
	lv_cache_capture_cleanup(&c);
	lv_buf_cleanup(&b);
	return tmp.reject;
}

#define SIMPLE LV_CACHE_SHAPE_SIMPLE
#define EXT LV_CACHE_SHAPE_EXTENDED
#define R(x) LV_CACHE_REJECT_##x

/* ------------------------------------------------------------------------
 * Capture
 * ------------------------------------------------------------------------ */

static void test_capture_accepts(void **state)
{
	(void)state;
	lv_buf_t b;
	lv_cache_capture_t c;
	lv_cache_capture_out_t out;

	/* Simple: slices point at T and at D D C exactly. */
	script(&b, "TDdCZ");
	lv_cache_capture_init(&c, 1 << 20);
	assert_true(lv_cache_capture_add(&c, lv_buf_head(&b), 10));
	assert_true(lv_cache_capture_add(&c, lv_buf_head(&b) + 10, lv_buf_unread(&b) - 10));
	assert_int_equal(lv_cache_capture_finish(&c, SIMPLE, &out), 0);
	assert_true(out.has_rowdesc);
	assert_int_equal(out.n_rows, 2);
	lv_buf_t t;
	script(&t, "T");
	assert_int_equal(out.rowdesc_len, lv_buf_unread(&t));
	assert_memory_equal(out.rowdesc, lv_buf_head(&t), lv_buf_unread(&t));
	assert_ptr_equal(out.body, lv_buf_head(&c.buf) + lv_buf_unread(&t));
	assert_int_equal(out.body_len, lv_buf_unread(&b) - lv_buf_unread(&t) - 6);
	assert_int_equal(out.body[0], 'D');
	assert_int_equal(out.body[out.body_len - 14], 'C'); /* 'C', length, "SELECT 1\0" */
	lv_buf_cleanup(&t);
	lv_buf_cleanup(&b);
	lv_cache_capture_cleanup(&c);

	/* Other good shapes. */
	assert_int_equal(run("TCZ", SIMPLE, &out), R(NONE));
	assert_int_equal(out.n_rows, 0);
	assert_int_equal(run("12TDCZ", EXT, &out), R(NONE));
	assert_true(out.has_rowdesc);
	assert_int_equal(last_rd_type, 'T');
	assert_int_equal(run("2nCZ", EXT, &out), R(NONE));
	assert_true(out.has_rowdesc);
	assert_int_equal(last_rd_type, 'n');
	assert_int_equal(out.rowdesc_len, 5);
	assert_int_equal(run("2DdCZ", EXT, &out), R(NONE));
	assert_false(out.has_rowdesc);
	assert_int_equal(out.n_rows, 2);
	assert_int_equal(run("DCZ", EXT, &out), R(NONE));
	/* Statement Describe: its T is not kept; a portal Describe after Bind is. */
	assert_int_equal(run("1tT2DCZ", EXT, &out), R(NONE));
	assert_false(out.has_rowdesc);
	assert_int_equal(run("1tn2TDCZ", EXT, &out), R(NONE));
	assert_true(out.has_rowdesc);
	assert_int_equal(last_rd_type, 'T');
}

static void test_capture_rejects(void **state)
{
	(void)state;
	assert_int_equal(run("TDECZ", SIMPLE, NULL), R(ERROR));
	assert_int_equal(run("EZ", SIMPLE, NULL), R(ERROR));
	assert_int_equal(run("NTDCZ", SIMPLE, NULL), R(NOTICE));
	assert_int_equal(run("TDCAZ", SIMPLE, NULL), R(NOTIFY));
	assert_int_equal(run("TDCSZ", SIMPLE, NULL), R(PARAM_STATUS));
	assert_int_equal(run("IZ", SIMPLE, NULL), R(EMPTY_QUERY));
	assert_int_equal(run("12TDsZ", EXT, NULL), R(SUSPENDED));
	assert_int_equal(run("GZ", SIMPLE, NULL), R(COPY));
	assert_int_equal(run("HZ", SIMPLE, NULL), R(COPY));
	assert_int_equal(run("TDCTDCZ", SIMPLE, NULL), R(MULTI));
	assert_int_equal(run("TDCCZ", SIMPLE, NULL), R(MULTI));
	assert_int_equal(run("TDCDZ", SIMPLE, NULL), R(MULTI));
	assert_int_equal(run("2DCCZ", EXT, NULL), R(MULTI));
	assert_int_equal(run("TDCz", SIMPLE, NULL), R(TXN_STATUS));
	assert_int_equal(run("CZ", SIMPLE, NULL), R(NO_ROWDESC));
	assert_int_equal(run("TDC", SIMPLE, NULL), R(INCOMPLETE));
	assert_int_equal(run("TDZ", SIMPLE, NULL), R(INCOMPLETE));
	assert_int_equal(run("", SIMPLE, NULL), R(INCOMPLETE));
	assert_int_equal(run("1tTZ", EXT, NULL), R(INCOMPLETE));
	assert_int_equal(run("TDCZZ", SIMPLE, NULL), R(UNEXPECTED));
	assert_int_equal(run("DTCZ", SIMPLE, NULL), R(UNEXPECTED));
	assert_int_equal(run("1TDCZ", SIMPLE, NULL), R(UNEXPECTED));
	assert_int_equal(run("nCZ", SIMPLE, NULL), R(UNEXPECTED));
	assert_int_equal(run("21DCZ", EXT, NULL), R(UNEXPECTED));
	assert_int_equal(run("2TTDCZ", EXT, NULL), R(UNEXPECTED));
	assert_int_equal(run("23DCZ", EXT, NULL), R(UNEXPECTED));
	assert_int_equal(run("TxDCZ", SIMPLE, NULL), R(UNEXPECTED));

	/* Malformed framing and contents. */
	lv_buf_t b;
	script(&b, "TDCZ");
	lv_cache_capture_t c;
	lv_cache_capture_out_t out;
	for (size_t cut = 1; cut < lv_buf_unread(&b); cut++) {
		lv_cache_capture_init(&c, 1 << 20);
		assert_true(lv_cache_capture_add(&c, lv_buf_head(&b), cut));
		assert_int_equal(lv_cache_capture_finish(&c, SIMPLE, &out), LV_EUNSUPP);
		assert_true(out.reject == R(MALFORMED) || out.reject == R(INCOMPLETE));
		lv_cache_capture_cleanup(&c);
	}
	/* A DataRow whose value length runs past its message. */
	lv_buf_t bad;
	lv_buf_init(&bad);
	put_T(&bad);
	static const uint8_t row[] = {0, 1, 0, 0, 0, 9, 'x'};
	assert_true(lv_wire_write_msg(&bad, PqMsg_DataRow, row, sizeof(row)));
	put_C(&bad, "SELECT 1");
	put_Z(&bad, 'I');
	lv_cache_capture_init(&c, 1 << 20);
	assert_true(lv_cache_capture_add(&c, lv_buf_head(&bad), lv_buf_unread(&bad)));
	assert_int_equal(lv_cache_capture_finish(&c, SIMPLE, &out), LV_EUNSUPP);
	assert_int_equal(out.reject, R(MALFORMED));
	lv_cache_capture_cleanup(&c);
	/* A length word below 4. */
	static const uint8_t tiny[] = {'Z', 0, 0, 0, 3, 'I'};
	lv_cache_capture_init(&c, 1 << 20);
	assert_true(lv_cache_capture_add(&c, tiny, sizeof(tiny)));
	assert_int_equal(lv_cache_capture_finish(&c, SIMPLE, &out), LV_EUNSUPP);
	assert_int_equal(out.reject, R(MALFORMED));
	lv_cache_capture_cleanup(&c);
	lv_buf_cleanup(&bad);

	/* The cap: over it, the capture drops its bytes and stays over until reset. */
	lv_cache_capture_init(&c, lv_buf_unread(&b) - 1);
	assert_true(lv_cache_capture_add(&c, lv_buf_head(&b), 10));
	assert_false(lv_cache_capture_add(&c, lv_buf_head(&b) + 10, lv_buf_unread(&b) - 10));
	assert_true(c.is_over);
	assert_false(lv_cache_capture_add(&c, "", 0));
	assert_int_equal(lv_cache_capture_finish(&c, SIMPLE, &out), LV_EUNSUPP);
	assert_int_equal(out.reject, R(TOO_BIG));
	lv_cache_capture_reset(&c);
	assert_true(lv_cache_capture_add(&c, lv_buf_head(&b), lv_buf_unread(&b) - 6));
	lv_cache_capture_cleanup(&c);
	lv_buf_cleanup(&b);

	assert_string_equal(lv_cache_reject_name(R(MULTI)), "multi");
	assert_string_equal(lv_cache_reject_name(R(NONE)), "none");
	assert_string_equal(lv_cache_reject_name(LV_CACHE_REJECT_COUNT), "unknown");
}

/* ------------------------------------------------------------------------
 * Replay
 * ------------------------------------------------------------------------ */

typedef struct rfix {
	lv_cache_gens_t *g;
	lv_cache_key_t k;
} rfix_t;

static int rsetup(void **state)
{
	rfix_t *f = calloc(1, sizeof(*f));
	f->g = lv_cache_gens_new();
	lv_cache_key_init(&f->k);
	if (!lv_cache_key_add_str(&f->k, LV_CACHE_KEY_DB, "app") ||
	    !lv_cache_key_add_str(&f->k, LV_CACHE_KEY_TEXT, "select id, title from posts") ||
	    !lv_cache_key_finish(&f->k))
		return -1;
	lv_fake_time_set(LV_FAKE_TIME_START_US);
	*state = f;
	return 0;
}

static int rteardown(void **state)
{
	rfix_t *f = *state;
	lv_cache_key_cleanup(&f->k);
	lv_cache_gens_free(f->g);
	free(f);
	return 0;
}

/* Captures a server reply given as a script and builds an entry from it. */
static lv_cache_entry_t *entry_from(rfix_t *f, const char *s, lv_cache_shape_t shape,
				    lv_buf_t *server)
{
	script(server, s);
	lv_cache_capture_t c;
	lv_cache_capture_init(&c, 1 << 20);
	assert_true(lv_cache_capture_add(&c, lv_buf_head(server), lv_buf_unread(server)));
	lv_cache_capture_out_t out;
	assert_int_equal(lv_cache_capture_finish(&c, shape, &out), 0);
	lv_cache_gen_snapshot_t snap;
	lv_cache_gen_snapshot_init(&snap, f->g);
	assert_true(lv_cache_gen_snapshot_add(&snap, f->g, "app", "posts"));
	lv_cache_times_t t;
	lv_cache_times_make(&t, lv_time_now_us(), 30000, 60000, 2500);
	lv_cache_entry_t *e =
		lv_cache_entry_new(&f->k, out.rowdesc, out.rowdesc_len, out.has_rowdesc, out.body,
				   out.body_len, &snap, &t, 1);
	assert_non_null(e);
	lv_cache_capture_cleanup(&c);
	return e;
}

static void req_ext(lv_cache_request_t *req, const char *msgs)
{
	lv_cache_request_init(req, false);
	for (; *msgs; msgs++) {
		lv_cache_req_msg_t m = LV_CACHE_REQ_FLUSH;
		switch (*msgs) {
		case 'P':
			m = LV_CACHE_REQ_PARSE;
			break;
		case 'B':
			m = LV_CACHE_REQ_BIND;
			break;
		case 'D':
			m = LV_CACHE_REQ_DESCRIBE_PORTAL;
			break;
		case 'd':
			m = LV_CACHE_REQ_DESCRIBE_STATEMENT;
			break;
		case 'E':
			m = LV_CACHE_REQ_EXECUTE;
			break;
		case 'S':
			m = LV_CACHE_REQ_SYNC;
			break;
		case 'H':
			m = LV_CACHE_REQ_FLUSH;
			break;
		case 'C':
			m = LV_CACHE_REQ_CLOSE;
			break;
		default:
			fail_msg("bad request char %c", *msgs);
		}
		assert_true(lv_cache_request_add(req, m));
	}
}

static void test_replay_simple(void **state)
{
	rfix_t *f = *state;
	lv_buf_t server, out;
	lv_cache_entry_t *e = entry_from(f, "TDdCZ", SIMPLE, &server);
	lv_cache_request_t req;
	lv_cache_request_init(&req, true);
	lv_buf_init(&out);
	assert_true(lv_cache_replay_possible(&req, e));
	assert_true(lv_cache_replay(&out, &req, e));
	/* Byte for byte what the server sent. */
	assert_int_equal(lv_buf_unread(&out), lv_buf_unread(&server));
	assert_memory_equal(lv_buf_head(&out), lv_buf_head(&server), lv_buf_unread(&server));
	/* The last five bytes spelled out: ReadyForQuery, length 5, idle. */
	static const uint8_t z[] = {'Z', 0, 0, 0, 5, 'I'};
	assert_memory_equal(lv_buf_head(&out) + lv_buf_unread(&out) - 6, z, 6);
	/* Inside a read-only transaction the caller asks for status T. */
	lv_buf_reset(&out);
	req.txn_status = 'T';
	assert_true(lv_cache_replay(&out, &req, e));
	assert_int_equal(lv_buf_head(&out)[lv_buf_unread(&out) - 1], 'T');
	lv_cache_entry_unref(e);
	lv_buf_cleanup(&server);

	/* An entry without RowDescription (extended, no Describe) or with NoData cannot
	 * answer a simple Query: false, buffer unchanged. */
	e = entry_from(f, "2DCZ", EXT, &server);
	lv_buf_reset(&out);
	assert_true(lv_buf_append(&out, "keep", 4));
	req.txn_status = 0;
	assert_false(lv_cache_replay_possible(&req, e));
	assert_false(lv_cache_replay(&out, &req, e));
	assert_int_equal(lv_buf_unread(&out), 4);
	lv_cache_entry_unref(e);
	lv_buf_cleanup(&server);
	e = entry_from(f, "2nCZ", EXT, &server);
	assert_false(lv_cache_replay(&out, &req, e));
	assert_int_equal(lv_buf_unread(&out), 4);
	lv_cache_entry_unref(e);
	lv_buf_cleanup(&server);
	lv_buf_cleanup(&out);
}

static void test_replay_extended(void **state)
{
	rfix_t *f = *state;
	lv_buf_t server, out;
	lv_cache_request_t req;
	lv_buf_init(&out);

	/* Parse, Bind, Describe portal, Execute, Sync: exactly the server's reply. */
	lv_cache_entry_t *e = entry_from(f, "12TDdCZ", EXT, &server);
	req_ext(&req, "PBDES");
	assert_true(lv_cache_replay(&out, &req, e));
	assert_int_equal(lv_buf_unread(&out), lv_buf_unread(&server));
	assert_memory_equal(lv_buf_head(&out), lv_buf_head(&server), lv_buf_unread(&server));
	static const uint8_t head[] = {'1', 0, 0, 0, 4, '2', 0, 0, 0, 4, 'T'};
	assert_memory_equal(lv_buf_head(&out), head, sizeof(head));
	lv_buf_cleanup(&server);

	/* Bind, Execute, Sync (a prepared statement, no Describe). */
	lv_buf_reset(&out);
	req_ext(&req, "BES");
	assert_true(lv_cache_replay(&out, &req, e));
	lv_buf_t want;
	script(&want, "2DdCZ");
	assert_int_equal(lv_buf_unread(&out), lv_buf_unread(&want));
	assert_memory_equal(lv_buf_head(&out), lv_buf_head(&want), lv_buf_unread(&want));
	lv_buf_cleanup(&want);

	/* Flush adds nothing; Close answers CloseComplete. */
	lv_buf_reset(&out);
	req_ext(&req, "BEHCS");
	assert_true(lv_cache_replay(&out, &req, e));
	script(&want, "2DdC3Z");
	assert_int_equal(lv_buf_unread(&out), lv_buf_unread(&want));
	assert_memory_equal(lv_buf_head(&out), lv_buf_head(&want), lv_buf_unread(&want));
	lv_buf_cleanup(&want);

	/* Describe statement is never replayable. */
	lv_buf_reset(&out);
	req_ext(&req, "PdBES");
	assert_false(lv_cache_replay_possible(&req, e));
	assert_false(lv_cache_replay(&out, &req, e));
	assert_int_equal(lv_buf_unread(&out), 0);
	lv_cache_entry_unref(e);

	/* An entry without a description: Describe portal is a miss, the rest works. */
	e = entry_from(f, "2DCZ", EXT, &server);
	req_ext(&req, "BDES");
	assert_false(lv_cache_replay(&out, &req, e));
	assert_int_equal(lv_buf_unread(&out), 0);
	req_ext(&req, "BES");
	assert_true(lv_cache_replay(&out, &req, e));
	assert_int_equal(lv_buf_unread(&out), lv_buf_unread(&server));
	assert_memory_equal(lv_buf_head(&out), lv_buf_head(&server), lv_buf_unread(&server));
	lv_cache_entry_unref(e);
	lv_buf_cleanup(&server);

	/* No columns: Describe portal replays NoData. */
	lv_buf_reset(&out);
	e = entry_from(f, "12nCZ", EXT, &server);
	req_ext(&req, "PBDES");
	assert_true(lv_cache_replay(&out, &req, e));
	assert_int_equal(lv_buf_unread(&out), lv_buf_unread(&server));
	assert_memory_equal(lv_buf_head(&out), lv_buf_head(&server), lv_buf_unread(&server));
	lv_cache_entry_unref(e);
	lv_buf_cleanup(&server);

	/* The request list is bounded. */
	lv_cache_request_init(&req, false);
	for (int i = 0; i < LV_CACHE_REQ_MAX; i++)
		assert_true(lv_cache_request_add(&req, LV_CACHE_REQ_FLUSH));
	assert_false(lv_cache_request_add(&req, LV_CACHE_REQ_SYNC));
	lv_buf_cleanup(&out);
}

static bool fail_all(size_t n)
{
	(void)n;
	return true;
}

static void test_replay_oom(void **state)
{
	rfix_t *f = *state;
	lv_buf_t server, out;
	lv_cache_entry_t *e = entry_from(f, "12TDdCZ", EXT, &server);
	lv_cache_request_t req;
	req_ext(&req, "PBDES");
	/* 250 bytes in a 256-byte allocation: the replay must grow it, and cannot. */
	uint8_t pad[250];
	memset(pad, 'x', sizeof(pad));
	lv_buf_init(&out);
	assert_true(lv_buf_append(&out, pad, sizeof(pad)));
	assert_int_equal(out.cap, 256);
	lv_mem_set_fail_hook(fail_all);
	bool ok = lv_cache_replay(&out, &req, e);
	lv_mem_set_fail_hook(NULL);
	assert_false(ok);
	assert_int_equal(lv_buf_unread(&out), sizeof(pad));
	assert_memory_equal(lv_buf_head(&out), pad, sizeof(pad));
	/* And the same call succeeds once memory is back. */
	assert_true(lv_cache_replay(&out, &req, e));
	assert_int_equal(lv_buf_unread(&out), sizeof(pad) + lv_buf_unread(&server));
	lv_cache_entry_unref(e);
	lv_buf_cleanup(&server);
	lv_buf_cleanup(&out);
}

/* ------------------------------------------------------------------------
 * L2
 * ------------------------------------------------------------------------ */

static const uint8_t l2_sum_key[16] = {'l', 'e', 'v', 'e', 'e', '-', 'l', '2',
				       '-', 'c', 'h', 'e', 'c', 'k', 'v', '1'};

/* Rewrites the trailing checksum after a deliberate change. */
static void reseal(uint8_t *p, size_t n)
{
	uint64_t sum = lv_cache_siphash(l2_sum_key, p, n - 8);
	for (int i = 0; i < 8; i++)
		p[n - 8 + i] = (uint8_t)(sum >> (56 - 8 * i));
}

static void test_l2_round_trip(void **state)
{
	rfix_t *f = *state;
	lv_buf_t server, enc;
	lv_cache_gen_raise(lv_cache_gens_slot(f->g, "app", "posts"), 41);
	lv_cache_entry_t *e = entry_from(f, "12TDdCZ", EXT, &server);
	const lv_usec_t wall = 1700000000 * SEC;
	lv_buf_init(&enc);
	assert_true(lv_cache_entry_encode(e, lv_time_now_us(), wall, &enc));

	/* Another instance: its own gens and clocks, 5 s later. */
	lv_cache_gens_t *g2 = lv_cache_gens_new();
	const lv_usec_t mono2 = 777 * SEC, wall2 = wall + 5 * SEC;
	lv_cache_entry_t *d = NULL;
	assert_int_equal(lv_cache_entry_decode(lv_buf_head(&enc), lv_buf_unread(&enc), &f->k, g2,
					       mono2, wall2, &d),
			 0);
	assert_non_null(d);
	assert_true(lv_cache_entry_matches(d, &f->k));
	assert_int_equal(lv_cache_entry_hash(d), f->k.hash);
	size_t n1, n2;
	const uint8_t *p1 = lv_cache_entry_rowdesc(e, &n1), *p2 = lv_cache_entry_rowdesc(d, &n2);
	assert_int_equal(n1, n2);
	assert_memory_equal(p1, p2, n1);
	p1 = lv_cache_entry_body(e, &n1);
	p2 = lv_cache_entry_body(d, &n2);
	assert_int_equal(n1, n2);
	assert_memory_equal(p1, p2, n1);
	assert_int_equal(lv_cache_entry_rule(d), -1);
	/* Times: 30 s ttl filled 5 s ago on the other clock. */
	const lv_cache_times_t *t = lv_cache_entry_times(d);
	assert_int_equal(t->filled_us, mono2 - 5 * SEC);
	assert_int_equal(t->expires_us, mono2 + 25 * SEC);
	assert_int_equal(t->stale_until_us, mono2 + 85 * SEC);
	assert_int_equal(t->fill_cost_us, 2500);
	/* Generations by name on the local table: 41 recorded; local is 0, so not current... */
	assert_int_equal(lv_cache_entry_n_gens(d), 1);
	assert_ptr_equal(lv_cache_entry_gens(d)[0].slot, lv_cache_gens_find(g2, "app", "posts"));
	assert_int_equal(lv_cache_entry_gens(d)[0].gen, 41);
	assert_false(lv_cache_entry_is_current(d, g2));
	/* ...until the local view catches up. */
	lv_cache_gen_raise(lv_cache_gens_find(g2, "app", "posts"), 41);
	assert_true(lv_cache_entry_is_current(d, g2));
	lv_cache_entry_unref(d);

	/* Past stale_until on arrival: refused. */
	assert_int_equal(lv_cache_entry_decode(lv_buf_head(&enc), lv_buf_unread(&enc), &f->k, g2,
					       mono2, wall + 90 * SEC, &d),
			 LV_ENOENT);
	assert_null(d);
	/* Another key (a digest collision, say): refused. */
	lv_cache_key_t other;
	lv_cache_key_init(&other);
	assert_true(lv_cache_key_add_str(&other, LV_CACHE_KEY_TEXT, "select 2"));
	assert_true(lv_cache_key_finish(&other));
	assert_int_equal(lv_cache_entry_decode(lv_buf_head(&enc), lv_buf_unread(&enc), &other, g2,
					       mono2, wall2, &d),
			 LV_EINVAL);
	lv_cache_key_cleanup(&other);

	/* Encoding appends: a prefix in the buffer is kept. */
	lv_buf_t enc2;
	lv_buf_init(&enc2);
	assert_true(lv_buf_append(&enc2, "pre", 3));
	assert_true(lv_cache_entry_encode(e, lv_time_now_us(), wall, &enc2));
	assert_int_equal(lv_buf_unread(&enc2), 3 + lv_buf_unread(&enc));
	assert_memory_equal(lv_buf_head(&enc2) + 3, lv_buf_head(&enc), lv_buf_unread(&enc));
	lv_buf_cleanup(&enc2);

	lv_cache_gens_free(g2);
	lv_cache_entry_unref(e);
	lv_buf_cleanup(&server);
	lv_buf_cleanup(&enc);
}

static void test_l2_corruption(void **state)
{
	rfix_t *f = *state;
	lv_buf_t server, enc;
	lv_cache_entry_t *e = entry_from(f, "12TDdCZ", EXT, &server);
	const lv_usec_t wall = 1700000000 * SEC;
	lv_buf_init(&enc);
	assert_true(lv_cache_entry_encode(e, lv_time_now_us(), wall, &enc));
	size_t n = lv_buf_unread(&enc);
	uint8_t *copy = malloc(n);
	lv_cache_entry_t *d;

	/* Truncation at every byte. */
	for (size_t cut = 0; cut < n; cut++) {
		memcpy(copy, lv_buf_head(&enc), cut);
		d = (void *)1;
		assert_int_equal(
			lv_cache_entry_decode(copy, cut, &f->k, f->g, lv_time_now_us(), wall, &d),
			LV_EPROTO);
		assert_null(d);
	}
	/* Trailing garbage. */
	uint8_t *longer = malloc(n + 1);
	memcpy(longer, lv_buf_head(&enc), n);
	longer[n] = 0;
	assert_int_equal(
		lv_cache_entry_decode(longer, n + 1, &f->k, f->g, lv_time_now_us(), wall, &d),
		LV_EPROTO);
	free(longer);
	/* Every single-bit flip at every byte. */
	for (size_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(copy, lv_buf_head(&enc), n);
			copy[i] ^= (uint8_t)(1u << bit);
			d = (void *)1;
			assert_int_equal(lv_cache_entry_decode(copy, n, &f->k, f->g,
							       lv_time_now_us(), wall, &d),
					 LV_EPROTO);
			assert_null(d);
		}
	}
	/* With a valid checksum, the structure is still checked: flip bytes, reseal. */
	size_t accepted = 0;
	for (size_t i = 0; i + 8 < n; i++) {
		memcpy(copy, lv_buf_head(&enc), n);
		copy[i] ^= 0x5a;
		reseal(copy, n);
		d = NULL;
		int rc = lv_cache_entry_decode(copy, n, &f->k, f->g, lv_time_now_us(), wall, &d);
		if (rc == 0) {
			/* Only a change inside a value's bytes or a time survives, and then
			 * replay still emits well-formed messages. */
			accepted++;
			lv_cache_request_t req;
			req_ext(&req, "BES");
			lv_buf_t out;
			lv_buf_init(&out);
			assert_true(lv_cache_replay(&out, &req, d));
			lv_buf_cleanup(&out);
			lv_cache_entry_unref(d);
		} else {
			assert_true(rc == LV_EPROTO || rc == LV_EINVAL || rc == LV_ENOENT);
			assert_null(d);
		}
	}
	assert_true(accepted < n / 2);
	/* Specific structural refusals with a valid checksum: version, and a body cut short. */
	memcpy(copy, lv_buf_head(&enc), n);
	copy[3] = 2;
	reseal(copy, n);
	assert_int_equal(lv_cache_entry_decode(copy, n, &f->k, f->g, lv_time_now_us(), wall, &d),
			 LV_EPROTO);
	free(copy);
	lv_cache_entry_unref(e);
	lv_buf_cleanup(&server);
	lv_buf_cleanup(&enc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capture_accepts),
		cmocka_unit_test(test_capture_rejects),
		cmocka_unit_test_setup_teardown(test_replay_simple, rsetup, rteardown),
		cmocka_unit_test_setup_teardown(test_replay_extended, rsetup, rteardown),
		cmocka_unit_test_setup_teardown(test_replay_oom, rsetup, rteardown),
		cmocka_unit_test_setup_teardown(test_l2_round_trip, rsetup, rteardown),
		cmocka_unit_test_setup_teardown(test_l2_corruption, rsetup, rteardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
