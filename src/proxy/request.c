/* SPDX-License-Identifier: ISC */
/*
 * Parsing of the request at the head of a client's input; see request.h.
 * Owns nothing: the views point into the client's input.
 */
#include "proxy/request.h"
#include "net/sbuf.h"
#include "proxy/client.h"
#include "proxy/pool.h"
#include "sql/classify.h"
#include "wire/wire.h"

/* Larger requests are neither cached nor deferred (they pass through as they are). */
#define REQ_MAX (1024 * 1024)

uint32_t lv_request_type(const lv_request_t *rq, uint16_t i)
{
	if (i >= rq->n_types)
		return 0;
	return rq->types_be ? lv_get_u32(rq->types_be + 4 * (size_t)i) : rq->types[i];
}

/* Walks the extended-protocol messages up to the Sync; false on any other shape. */
static bool walk_extended(lv_sbuf_t *sb, lv_request_t *rq)
{
	static const uint8_t order[] = {PqMsg_Parse,   LV_REQ_DESCRIBE_STMT, PqMsg_Bind,
					PqMsg_Describe, PqMsg_Execute,        PqMsg_Sync};
	static const int n_order = (int)sizeof(order);
	size_t avail = lv_sbuf_avail(sb);
	size_t off = 0;
	int next = 0;
	uint8_t hdr[6];
	for (;;) {
		if (!lv_sbuf_peek(sb, off, hdr, 5))
			return false;
		size_t whole = (size_t)lv_get_u32(hdr + 1) + 1;
		if (whole < 5 || off + whole > REQ_MAX || off + whole > avail)
			return false;
		if (hdr[0] == PqMsg_Describe && (whole < 6 || !lv_sbuf_peek(sb, off, hdr, 6)))
			return false;
		uint8_t t = hdr[0] == PqMsg_Describe && hdr[5] == 'S' ? LV_REQ_DESCRIBE_STMT : hdr[0];
		while (next < n_order && order[next] != t) {
			if (order[next] == PqMsg_Bind || order[next] == PqMsg_Execute)
				return false; /* required */
			next++;
		}
		if (next == n_order)
			return false;
		rq->shape[rq->n_shape++] = t;
		next++;
		off += whole;
		if (hdr[0] == PqMsg_Sync)
			break;
	}
	rq->total = off;
	return true;
}

bool lv_request_parse(lv_client_t *c, lv_request_t *rq)
{
	lv_sbuf_t *sb = &c->conn.sb;
	bool txn = c->pool && c->pool->pool_mode == LV_POOL_TRANSACTION;
	uint8_t hdr[5];
	memset(rq, 0, sizeof(*rq));
	if (!lv_sbuf_peek(sb, 0, hdr, 5))
		return false;
	if (hdr[0] == PqMsg_Query) {
		size_t whole = (size_t)lv_get_u32(hdr + 1) + 1;
		if (whole < 6 || whole > REQ_MAX || whole > lv_sbuf_avail(sb))
			return false;
		const uint8_t *m = lv_sbuf_pullup(sb, whole);
		if (!m || lv_wire_parse_query(m + 5, whole - 5, &rq->sql, &rq->sql_len) != 0)
			return false;
		rq->total = whole;
		rq->shape[rq->n_shape++] = PqMsg_Query;
		rq->hinted = lv_sql_mentions_levee(rq->sql, rq->sql_len);
		return true;
	}
	if ((hdr[0] != PqMsg_Parse && hdr[0] != PqMsg_Bind) || !walk_extended(sb, rq))
		return false;
	rq->extended = true;
	const uint8_t *p = lv_sbuf_pullup(sb, rq->total);
	if (!p)
		return false;
	const char *parse_name = NULL;
	for (int i = 0; i < rq->n_shape; i++) {
		uint32_t len = lv_get_u32(p + 1);
		const uint8_t *body = p + 5;
		size_t blen = len - 4;
		switch (p[0]) {
		case PqMsg_Parse: {
			lv_wire_parse_t ps;
			if (lv_wire_parse_parse(body, blen, &ps) != 0)
				return false;
			/* Session mode: a named statement must really exist on the client's server. */
			if (ps.name[0] && !txn)
				return false;
			rq->has_parse = true;
			rq->sql = ps.query;
			rq->sql_len = ps.query_len;
			rq->n_types = ps.n_param_types;
			rq->types_be = ps.param_types;
			parse_name = ps.name;
			rq->parse_name = ps.name;
			break;
		}
		case PqMsg_Bind:
			if (lv_wire_parse_bind(body, blen, &rq->bind) != 0 || rq->bind.portal_len != 0)
				return false;
			if (parse_name) {
				if (strcmp(rq->bind.stmt, parse_name) != 0)
					return false;
			} else {
				lv_pstmt_t *ps = rq->bind.stmt_len ? lv_pstmt_map_get(&c->pstmts, rq->bind.stmt) : NULL;
				if (!ps)
					return false;
				rq->sql = ps->query;
				rq->sql_len = ps->query_len;
				rq->n_types = ps->n_oids;
				rq->types = ps->oids;
			}
			break;
		case PqMsg_Describe: {
			uint8_t kind;
			const char *name;
			if (lv_wire_parse_target(body, blen, &kind, &name) != 0)
				return false;
			if (kind == 'S') {
				/* Describes the statement just parsed (or the one bound). */
				if (parse_name ? strcmp(name, parse_name) != 0 : name[0] != 0)
					return false;
				rq->has_describe_stmt = true;
				break;
			}
			if (kind != 'P' || name[0])
				return false;
			rq->has_describe = true;
			break;
		}
		case PqMsg_Execute: {
			const char *portal;
			int32_t max_rows;
			if (lv_wire_parse_execute(body, blen, &portal, &max_rows) != 0 || portal[0] || max_rows > 0)
				return false;
			break;
		}
		default:
			break;
		}
		p += (size_t)len + 1;
	}
	if (!rq->sql)
		return false;
	rq->hinted = lv_sql_mentions_levee(rq->sql, rq->sql_len);
	return true;
}
