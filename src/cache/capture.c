/* SPDX-License-Identifier: ISC */
/*
 * Capture, replay and L2 payloads (see capture.h for the contract).
 *
 * Pure: no I/O, no clock, no shared state. A capture owns its buffer
 * (request lifetime); replay writes into the caller's buffer; decode returns
 * a new entry owned by the caller.
 *
 * L2 payload, version 1 (integers big-endian):
 *
 *   "LVC" u8 version | u8 flags (bit 0: has description) | u8 0 | u16 n_gens
 *   i64 filled_wall_us | i64 expires_wall_us | i64 stale_until_wall_us
 *   i64 fill_cost_us
 *   u32 key_len | u32 rowdesc_len | u32 body_len | key | rowdesc | body
 *   n_gens x (u8 db_len | db | u8 table_len | table | u64 gen)
 *   u64 checksum: SipHash-2-4, fixed key, of every byte before it
 *
 * The checksum catches storage corruption of row bytes that no structural
 * check could see; it is not a defence against an attacker who can write
 * Redis (such an attacker could also write a valid checksum). Decode also
 * re-checks every message's framing and contents, so even a payload with a
 * valid checksum cannot make replay emit malformed protocol.
 */
#include "core/lv.h"
#include "cache/capture.h"

#include "core/status.h"
#include "wire/read.h"
#include "wire/wire.h"
#include "wire/write.h"

static const char *const reject_names[] = {
#define XX(name, str) str,
	LV_CACHE_REJECT_MAP(XX)
#undef XX
};

const char *lv_cache_reject_name(lv_cache_reject_t r)
{
	if ((unsigned)r >= LV_CACHE_REJECT_COUNT)
		return "unknown";
	return reject_names[r];
}

/* ------------------------------------------------------------------------
 * Message checks shared by capture and decode
 * ------------------------------------------------------------------------ */

/* RowDescription body: int16 n, then n x (name, oid, attnum, typoid, typlen, typmod, format). */
static bool rowdesc_ok(const uint8_t *body, size_t len)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	int16_t n = lv_wire_get_i16(&r);
	if (n < 0)
		return false;
	for (int i = 0; i < n && !r.failed; i++) {
		(void)lv_wire_get_cstr(&r, NULL);
		(void)lv_wire_get_bytes(&r, 4 + 2 + 4 + 2 + 4);
		int16_t fmt = lv_wire_get_i16(&r);
		if (fmt != 0 && fmt != 1)
			return false;
	}
	return lv_wire_reader_done(&r);
}

/* DataRow body: int16 n, then n x (int32 len (-1: NULL), len bytes). */
static bool datarow_ok(const uint8_t *body, size_t len)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	int16_t n = lv_wire_get_i16(&r);
	if (n < 0)
		return false;
	for (int i = 0; i < n && !r.failed; i++) {
		int32_t l = lv_wire_get_i32(&r);
		if (l < -1)
			return false;
		if (l > 0)
			(void)lv_wire_get_bytes(&r, (size_t)l);
	}
	return lv_wire_reader_done(&r);
}

/* CommandComplete body: one tag string. */
static bool complete_ok(const uint8_t *body, size_t len)
{
	const char *tag;
	return lv_wire_parse_command_complete(body, len, &tag) == 0;
}

/* Reads the message at p[0..n); 0 with its type, body and total size, or LV_EPROTO. */
static int next_msg(const uint8_t *p, size_t n, uint8_t *type, const uint8_t **body,
		    size_t *body_len, size_t *total)
{
	uint32_t len;
	int rc = lv_wire_read_header(p, n, LV_WIRE_MAX_MSG_LEN, type, &len);
	if (rc != 0 || (size_t)len + 1 > n)
		return LV_EPROTO;
	*body = p + LV_WIRE_HEADER_LEN;
	*body_len = len - 4;
	*total = (size_t)len + 1;
	return 0;
}

/* A description slice: exactly one well-formed RowDescription or NoData message. */
static bool description_ok(const uint8_t *p, size_t n)
{
	uint8_t type;
	const uint8_t *body;
	size_t blen, total;
	if (next_msg(p, n, &type, &body, &blen, &total) != 0 || total != n)
		return false;
	if (type == PqMsg_NoData)
		return blen == 0;
	return type == PqMsg_RowDescription && rowdesc_ok(body, blen);
}

/* A body slice: well-formed DataRow messages then exactly one CommandComplete, nothing after. */
static bool body_ok(const uint8_t *p, size_t n, uint64_t *n_rows)
{
	uint64_t rows = 0;
	size_t off = 0;
	while (off < n) {
		uint8_t type;
		const uint8_t *body;
		size_t blen, total;
		if (next_msg(p + off, n - off, &type, &body, &blen, &total) != 0)
			return false;
		off += total;
		if (type == PqMsg_DataRow) {
			if (!datarow_ok(body, blen))
				return false;
			rows++;
		} else if (type == PqMsg_CommandComplete) {
			if (!complete_ok(body, blen) || off != n)
				return false;
			if (n_rows)
				*n_rows = rows;
			return true;
		} else {
			return false;
		}
	}
	return false;
}

/* ------------------------------------------------------------------------
 * Capture
 * ------------------------------------------------------------------------ */

void lv_cache_capture_init(lv_cache_capture_t *c, size_t cap)
{
	lv_buf_init(&c->buf);
	c->cap = cap;
	c->is_over = false;
}

void lv_cache_capture_cleanup(lv_cache_capture_t *c)
{
	lv_buf_cleanup(&c->buf);
	c->is_over = false;
}

void lv_cache_capture_reset(lv_cache_capture_t *c)
{
	lv_buf_reset(&c->buf);
	c->is_over = false;
}

bool lv_cache_capture_add(lv_cache_capture_t *c, const void *p, size_t n)
{
	if (c->is_over)
		return false;
	if (n > c->cap - lv_buf_unread(&c->buf) || !lv_buf_append(&c->buf, p, n)) {
		c->is_over = true;
		lv_buf_cleanup(&c->buf);
		return false;
	}
	return true;
}

static int reject(lv_cache_capture_out_t *out, lv_cache_reject_t r)
{
	out->reject = r;
	return LV_EUNSUPP;
}

/* Messages that end caching at once, whatever the position. */
static lv_cache_reject_t reject_of(uint8_t type)
{
	switch (type) {
	case PqMsg_ErrorResponse:
		return LV_CACHE_REJECT_ERROR;
	case PqMsg_NoticeResponse:
		return LV_CACHE_REJECT_NOTICE;
	case PqMsg_NotificationResponse:
		return LV_CACHE_REJECT_NOTIFY;
	case PqMsg_ParameterStatus:
		return LV_CACHE_REJECT_PARAM_STATUS;
	case PqMsg_EmptyQueryResponse:
		return LV_CACHE_REJECT_EMPTY_QUERY;
	case PqMsg_PortalSuspended:
		return LV_CACHE_REJECT_SUSPENDED;
	case PqMsg_CopyInResponse:
	case PqMsg_CopyOutResponse:
	case PqMsg_CopyBothResponse:
	case PqMsg_CopyData:
	case PqMsg_CopyDone:
		return LV_CACHE_REJECT_COPY;
	default:
		return LV_CACHE_REJECT_NONE;
	}
}

/*
 * Phases of a reply, in the order messages may come. Each accepted message
 * moves the phase forward; a message whose phase is behind the current one
 * is out of place.
 */
enum phase {
	PH_START = 0,
	PH_PARSED,    /* ParseComplete */
	PH_STMT_DESC, /* ParameterDescription */
	PH_STMT_ROWS, /* the statement's RowDescription/NoData */
	PH_BOUND,     /* BindComplete */
	PH_DESC,      /* the portal's RowDescription/NoData */
	PH_ROWS,      /* DataRows */
	PH_DONE,      /* CommandComplete */
	PH_READY,     /* ReadyForQuery */
};

int lv_cache_capture_finish(const lv_cache_capture_t *c, lv_cache_shape_t shape,
			    lv_cache_capture_out_t *out)
{
	memset(out, 0, sizeof(*out));
	if (c->is_over)
		return reject(out, LV_CACHE_REJECT_TOO_BIG);
	const uint8_t *p = lv_buf_head(&c->buf);
	size_t n = lv_buf_unread(&c->buf);
	bool simple = shape == LV_CACHE_SHAPE_SIMPLE;
	enum phase ph = PH_START;
	const uint8_t *body_start = NULL;
	uint64_t rows = 0;

	size_t off = 0;
	while (off < n) {
		uint8_t type;
		const uint8_t *body;
		size_t blen, total;
		if (ph == PH_READY)
			return reject(out, LV_CACHE_REJECT_UNEXPECTED);
		if (next_msg(p + off, n - off, &type, &body, &blen, &total) != 0)
			return reject(out, LV_CACHE_REJECT_MALFORMED);
		const uint8_t *msg = p + off;
		off += total;

		lv_cache_reject_t r = reject_of(type);
		if (r != LV_CACHE_REJECT_NONE)
			return reject(out, r);

		switch (type) {
		case PqMsg_ParseComplete:
			if (simple || ph != PH_START || blen != 0)
				return reject(out, LV_CACHE_REJECT_UNEXPECTED);
			ph = PH_PARSED;
			break;
		case PqMsg_ParameterDescription:
			if (simple || ph > PH_PARSED)
				return reject(out, LV_CACHE_REJECT_UNEXPECTED);
			ph = PH_STMT_DESC;
			break;
		case PqMsg_BindComplete:
			if (simple || ph >= PH_BOUND || ph == PH_STMT_DESC || blen != 0)
				return reject(out, LV_CACHE_REJECT_UNEXPECTED);
			ph = PH_BOUND;
			break;
		case PqMsg_RowDescription:
		case PqMsg_NoData:
			if (type == PqMsg_RowDescription ? !rowdesc_ok(body, blen) : blen != 0)
				return reject(out, LV_CACHE_REJECT_MALFORMED);
			if (ph == PH_STMT_DESC) {
				/* A statement Describe's answer: format codes unknown, not kept. */
				ph = PH_STMT_ROWS;
				break;
			}
			if (ph >= PH_DONE && simple)
				return reject(out, LV_CACHE_REJECT_MULTI);
			if (ph >= PH_DESC || (simple && type == PqMsg_NoData))
				return reject(out, LV_CACHE_REJECT_UNEXPECTED);
			out->has_rowdesc = true;
			out->rowdesc = msg;
			out->rowdesc_len = total;
			ph = PH_DESC;
			break;
		case PqMsg_DataRow:
			if (ph >= PH_DONE)
				return reject(out, simple ? LV_CACHE_REJECT_MULTI
							  : LV_CACHE_REJECT_UNEXPECTED);
			if (ph == PH_STMT_DESC || (simple && ph != PH_DESC && ph != PH_ROWS))
				return reject(out, LV_CACHE_REJECT_UNEXPECTED);
			if (!datarow_ok(body, blen))
				return reject(out, LV_CACHE_REJECT_MALFORMED);
			if (!body_start)
				body_start = msg;
			rows++;
			ph = PH_ROWS;
			break;
		case PqMsg_CommandComplete:
			if (ph == PH_DONE)
				return reject(out, LV_CACHE_REJECT_MULTI);
			if (ph == PH_STMT_DESC)
				return reject(out, LV_CACHE_REJECT_UNEXPECTED);
			if (simple && ph != PH_DESC && ph != PH_ROWS)
				return reject(out, LV_CACHE_REJECT_NO_ROWDESC);
			if (!complete_ok(body, blen))
				return reject(out, LV_CACHE_REJECT_MALFORMED);
			if (!body_start)
				body_start = msg;
			out->body = body_start;
			out->body_len = (size_t)(msg + total - body_start);
			ph = PH_DONE;
			break;
		case PqMsg_ReadyForQuery: {
			uint8_t status;
			if (lv_wire_parse_ready(body, blen, &status) != 0)
				return reject(out, LV_CACHE_REJECT_MALFORMED);
			if (ph != PH_DONE)
				return reject(out, LV_CACHE_REJECT_INCOMPLETE);
			if (status != LV_WIRE_TXN_IDLE)
				return reject(out, LV_CACHE_REJECT_TXN_STATUS);
			ph = PH_READY;
			break;
		}
		default:
			return reject(out, LV_CACHE_REJECT_UNEXPECTED);
		}
	}
	if (ph != PH_READY)
		return reject(out, LV_CACHE_REJECT_INCOMPLETE);
	out->n_rows = rows;
	out->reject = LV_CACHE_REJECT_NONE;
	return 0;
}

/* ------------------------------------------------------------------------
 * Replay
 * ------------------------------------------------------------------------ */

void lv_cache_request_init(lv_cache_request_t *req, bool is_simple)
{
	req->is_simple = is_simple;
	req->txn_status = 0;
	req->n = 0;
}

bool lv_cache_request_add(lv_cache_request_t *req, lv_cache_req_msg_t m)
{
	if (req->n >= LV_CACHE_REQ_MAX)
		return false;
	req->msgs[req->n++] = (uint8_t)m;
	return true;
}

bool lv_cache_replay_possible(const lv_cache_request_t *req, const lv_cache_entry_t *e)
{
	size_t rd_len;
	const uint8_t *rd = lv_cache_entry_rowdesc(e, &rd_len);
	if (req->is_simple)
		return rd && rd_len > 0 && rd[0] == PqMsg_RowDescription;
	for (size_t i = 0; i < req->n; i++) {
		switch (req->msgs[i]) {
		case LV_CACHE_REQ_DESCRIBE_PORTAL:
			if (!rd)
				return false;
			break;
		case LV_CACHE_REQ_PARSE:
		case LV_CACHE_REQ_BIND:
		case LV_CACHE_REQ_EXECUTE:
		case LV_CACHE_REQ_SYNC:
		case LV_CACHE_REQ_FLUSH:
		case LV_CACHE_REQ_CLOSE:
			break;
		default:
			return false;
		}
	}
	return true;
}

static bool replay_msgs(lv_buf_t *out, const lv_cache_request_t *req, const lv_cache_entry_t *e)
{
	uint8_t status = req->txn_status ? req->txn_status : LV_WIRE_TXN_IDLE;
	size_t rd_len, body_len;
	const uint8_t *rd = lv_cache_entry_rowdesc(e, &rd_len);
	const uint8_t *body = lv_cache_entry_body(e, &body_len);
	if (req->is_simple) {
		return lv_buf_append(out, rd, rd_len) && lv_buf_append(out, body, body_len) &&
		       lv_wire_write_ready(out, status);
	}
	for (size_t i = 0; i < req->n; i++) {
		bool ok = true;
		switch (req->msgs[i]) {
		case LV_CACHE_REQ_PARSE:
			ok = lv_wire_write_parse_complete(out);
			break;
		case LV_CACHE_REQ_BIND:
			ok = lv_wire_write_bind_complete(out);
			break;
		case LV_CACHE_REQ_DESCRIBE_PORTAL:
			ok = lv_buf_append(out, rd, rd_len);
			break;
		case LV_CACHE_REQ_EXECUTE:
			ok = lv_buf_append(out, body, body_len);
			break;
		case LV_CACHE_REQ_SYNC:
			ok = lv_wire_write_ready(out, status);
			break;
		case LV_CACHE_REQ_CLOSE:
			ok = lv_wire_write_close_complete(out);
			break;
		case LV_CACHE_REQ_FLUSH:
			break;
		default:
			return false;
		}
		if (!ok)
			return false;
	}
	return true;
}

bool lv_cache_replay(lv_buf_t *out, const lv_cache_request_t *req, const lv_cache_entry_t *e)
{
	if (!lv_cache_replay_possible(req, e))
		return false;
	/* Offsets relative to pos survive a compaction by lv_buf_reserve(). */
	size_t mark = lv_buf_unread(out);
	if (!replay_msgs(out, req, e)) {
		out->len = out->pos + mark;
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------------
 * L2 payloads
 * ------------------------------------------------------------------------ */

#define L2_MAGIC "LVC"
#define L2_FIXED (4 + 4 + 4 * 8 + 3 * 4) /* through body_len */
#define L2_SUM_LEN 8
#define L2_TIME_MAX ((lv_usec_t)1 << 62) /* microseconds: about 146,000 years */

static const uint8_t l2_sum_key[16] = {'l', 'e', 'v', 'e', 'e', '-', 'l', '2',
				       '-', 'c', 'h', 'e', 'c', 'k', 'v', '1'};

static bool put_u64(lv_buf_t *b, uint64_t v)
{
	return lv_buf_put_u32(b, (uint32_t)(v >> 32)) && lv_buf_put_u32(b, (uint32_t)v);
}

static uint64_t get_u64(lv_wire_reader_t *r)
{
	uint64_t hi = lv_wire_get_u32(r);
	return (hi << 32) | lv_wire_get_u32(r);
}

static bool encode_body(const lv_cache_entry_t *e, lv_usec_t mono_now, lv_usec_t wall_now,
			lv_buf_t *out)
{
	size_t key_len, rd_len, body_len;
	const uint8_t *key = lv_cache_entry_key(e, &key_len);
	const uint8_t *rd = lv_cache_entry_rowdesc(e, &rd_len);
	const uint8_t *body = lv_cache_entry_body(e, &body_len);
	const lv_cache_times_t *t = lv_cache_entry_times(e);
	size_t n_gens = lv_cache_entry_n_gens(e);
	const lv_cache_gen_pair_t *gens = lv_cache_entry_gens(e);
	lv_usec_t shift = wall_now - mono_now;

	if (key_len > UINT32_MAX || rd_len > UINT32_MAX || body_len > UINT32_MAX ||
	    n_gens > UINT16_MAX)
		return false;
	bool ok = lv_buf_append(out, L2_MAGIC, 3) && lv_buf_put_u8(out, LV_CACHE_L2_VERSION) &&
		  lv_buf_put_u8(out, lv_cache_entry_has_rowdesc(e) ? 1 : 0) &&
		  lv_buf_put_u8(out, 0) && lv_buf_put_u16(out, (uint16_t)n_gens) &&
		  put_u64(out, (uint64_t)(t->filled_us + shift)) &&
		  put_u64(out, (uint64_t)(t->expires_us + shift)) &&
		  put_u64(out, (uint64_t)(t->stale_until_us + shift)) &&
		  put_u64(out, (uint64_t)t->fill_cost_us) &&
		  lv_buf_put_u32(out, (uint32_t)key_len) && lv_buf_put_u32(out, (uint32_t)rd_len) &&
		  lv_buf_put_u32(out, (uint32_t)body_len) && lv_buf_append(out, key, key_len) &&
		  lv_buf_append(out, rd, rd_len) && lv_buf_append(out, body, body_len);
	for (size_t i = 0; ok && i < n_gens; i++) {
		const char *db = lv_cache_gen_db(gens[i].slot);
		const char *table = lv_cache_gen_table(gens[i].slot);
		size_t dl = strlen(db), tl = strlen(table);
		ok = dl <= UINT8_MAX && tl <= UINT8_MAX && lv_buf_put_u8(out, (uint8_t)dl) &&
		     lv_buf_append(out, db, dl) && lv_buf_put_u8(out, (uint8_t)tl) &&
		     lv_buf_append(out, table, tl) && put_u64(out, gens[i].gen);
	}
	return ok;
}

bool lv_cache_entry_encode(const lv_cache_entry_t *e, lv_usec_t mono_now, lv_usec_t wall_now,
			   lv_buf_t *out)
{
	size_t mark = lv_buf_unread(out);
	if (!encode_body(e, mono_now, wall_now, out))
		goto fail;
	uint64_t sum =
		lv_cache_siphash(l2_sum_key, lv_buf_head(out) + mark, lv_buf_unread(out) - mark);
	if (!put_u64(out, sum))
		goto fail;
	return true;
fail:
	out->len = out->pos + mark;
	return false;
}

/* Reads a u8-prefixed name into a NUL-terminated buffer; false when malformed. */
static bool get_name(lv_wire_reader_t *r, char out[LV_CACHE_GEN_NAME_MAX + 1])
{
	uint8_t l = lv_wire_get_u8(r);
	const uint8_t *p = lv_wire_get_bytes(r, l);
	if (!p || l == 0 || l > LV_CACHE_GEN_NAME_MAX || memchr(p, '\0', l))
		return false;
	memcpy(out, p, l);
	out[l] = '\0';
	return true;
}

int lv_cache_entry_decode(const void *data, size_t n, const lv_cache_key_t *expect,
			  lv_cache_gens_t *g, lv_usec_t now_mono, lv_usec_t wall_now,
			  lv_cache_entry_t **out)
{
	const uint8_t *p = data;
	*out = NULL;
	if (n < L2_FIXED + L2_SUM_LEN)
		return LV_EPROTO;
	size_t payload = n - L2_SUM_LEN;
	lv_wire_reader_t sr;
	lv_wire_reader_init(&sr, p + payload, L2_SUM_LEN);
	if (get_u64(&sr) != lv_cache_siphash(l2_sum_key, p, payload))
		return LV_EPROTO;

	lv_wire_reader_t r;
	lv_wire_reader_init(&r, p, payload);
	const uint8_t *magic = lv_wire_get_bytes(&r, 3);
	uint8_t version = lv_wire_get_u8(&r);
	uint8_t flags = lv_wire_get_u8(&r);
	uint8_t zero = lv_wire_get_u8(&r);
	uint16_t n_gens = lv_wire_get_u16(&r);
	lv_usec_t filled = (lv_usec_t)get_u64(&r);
	lv_usec_t expires = (lv_usec_t)get_u64(&r);
	lv_usec_t stale_until = (lv_usec_t)get_u64(&r);
	lv_usec_t cost = (lv_usec_t)get_u64(&r);
	uint32_t key_len = lv_wire_get_u32(&r);
	uint32_t rd_len = lv_wire_get_u32(&r);
	uint32_t body_len = lv_wire_get_u32(&r);
	if (r.failed || memcmp(magic, L2_MAGIC, 3) != 0 || version != LV_CACHE_L2_VERSION ||
	    (flags & ~1u) != 0 || zero != 0 || n_gens > LV_CACHE_MAX_GENS)
		return LV_EPROTO;
	bool has_rd = flags & 1;
	const uint8_t *key = lv_wire_get_bytes(&r, key_len);
	const uint8_t *rd = lv_wire_get_bytes(&r, rd_len);
	const uint8_t *body = lv_wire_get_bytes(&r, body_len);
	if (r.failed || (!has_rd && rd_len != 0) || (has_rd && !description_ok(rd, rd_len)) ||
	    !body_ok(body, body_len, NULL))
		return LV_EPROTO;
	/* Times: ordered, and small enough that moving them between clocks cannot overflow. */
	if (filled < 0 || expires < filled || stale_until < expires || stale_until >= L2_TIME_MAX ||
	    cost < 0 || cost >= L2_TIME_MAX || wall_now < 0 || wall_now >= L2_TIME_MAX ||
	    now_mono < 0 || now_mono >= L2_TIME_MAX)
		return LV_EPROTO;

	/* Names first, so a malformed tail creates no slots. */
	struct {
		char db[LV_CACHE_GEN_NAME_MAX + 1];
		char table[LV_CACHE_GEN_NAME_MAX + 1];
		uint64_t gen;
	} names[LV_CACHE_MAX_GENS];
	for (size_t i = 0; i < n_gens; i++) {
		if (!get_name(&r, names[i].db) || !get_name(&r, names[i].table))
			return LV_EPROTO;
		names[i].gen = get_u64(&r);
	}
	if (!lv_wire_reader_done(&r))
		return LV_EPROTO;

	size_t expect_len = lv_buf_unread(&expect->buf);
	if (key_len != expect_len ||
	    (key_len && memcmp(key, lv_buf_head(&expect->buf), key_len) != 0))
		return LV_EINVAL;

	lv_usec_t shift = now_mono - wall_now;
	lv_cache_times_t t = {
		.filled_us = filled + shift,
		.expires_us = expires + shift,
		.stale_until_us = stale_until + shift,
		.fill_cost_us = cost,
	};
	if (t.stale_until_us <= now_mono)
		return LV_ENOENT;

	lv_cache_gen_snapshot_t snap;
	lv_cache_gen_snapshot_init(&snap, g);
	for (size_t i = 0; i < n_gens; i++) {
		lv_cache_gen_t *slot = lv_cache_gens_slot(g, names[i].db, names[i].table);
		if (!slot)
			return LV_ENOMEM;
		snap.pairs[i].slot = slot;
		snap.pairs[i].gen = names[i].gen;
	}
	snap.n = n_gens;

	lv_cache_entry_t *e =
		lv_cache_entry_new(expect, rd, rd_len, has_rd, body, body_len, &snap, &t, -1);
	if (!e)
		return LV_ENOMEM;
	*out = e;
	return 0;
}
