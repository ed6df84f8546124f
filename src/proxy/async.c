/* SPDX-License-Identifier: ISC */
/*
 * The write queue's producer in the client's path; see async.h and the
 * contract in wq/wq.h. Runs on the client's worker thread with that worker's
 * Redis connection.
 *
 * A deferred write is answered only once Redis accepted it: the request is
 * consumed from the client's input at once (so its bytes are not run by
 * anyone else), the client stops reading further requests until the answer,
 * then gets a NOTICE with the message id and the messages PostgreSQL would
 * have sent for the statement with 0 rows.
 */
#include "proxy/async.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "core/str.h"
#include "net/sbuf.h"
#include "proxy/client.h"
#include "proxy/pool.h"
#include "proxy/request.h"
#include "proxy/worker.h"
#include "redis/redis.h"
#include "sql/classify.h"
#include "wire/sqlstate.h"
#include "wire/wire.h"
#include "wire/write.h"
#include "wq/wq.h"

#include <strings.h>

const char lv_async_refusal_query[] =
	"DO $levee$BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = "
	"'levee: levee:async cannot defer a statement inside an explicit transaction; "
	"run it outside the transaction or drop the hint'; END$levee$";

struct lv_async_op {
	lv_client_t *c; /* NULL once the client left */
	bool extended, has_parse, has_describe;
	char tag[32];
	char db[LV_NAME_LEN];
};

bool lv_async_marked(const char *sql, size_t len)
{
	if (!lv_sql_mentions_levee(sql, len))
		return false;
	lv_sql_hints_t h;
	return lv_sql_hints(sql, len, &h) == 0 && h.want_async;
}

/* The [queue.rule] that defers a write of this statement, or NULL. */
static const lv_cfg_queue_rule_t *match_rule(const lv_config_t *cfg, const lv_sql_info_t *info, const char *db)
{
	if (info->n_written != 1)
		return NULL;
	const char *t = lv_sql_table_written(info, 0);
	const char *dot = strrchr(t, '.');
	t = dot ? dot + 1 : t;
	for (size_t i = 0; i < cfg->n_queue_rules; i++) {
		const lv_cfg_queue_rule_t *r = &cfg->queue_rules[i];
		if (r->database[0] && strcmp(r->database, db) != 0)
			continue;
		for (int k = 0; k < r->n_tables; k++)
			if (strcasecmp(r->tables[k], t) == 0)
				return r;
	}
	return NULL;
}

/* Answers the consumed request with an error and ReadyForQuery 'I'. */
static void answer_error(lv_client_t *c, const char *sqlstate, const char *msg)
{
	lv_client_error(c, sqlstate, "%s", msg);
	lv_client_ready(c, 'I');
}

static void op_free(struct lv_async_op *op)
{
	lv_free(op);
}

static void enqueued(void *arg, lv_wq_status_t status, const char *message_id, const char *detail)
{
	struct lv_async_op *op = arg;
	lv_client_t *c = op->c;
	if (!c) {
		op_free(op);
		return;
	}
	c->async_op = NULL;
	if (status != LV_WQ_OK) {
		char msg[256];
		snprintf(msg, sizeof(msg), "levee: the async write was not queued: %s%s%s", lv_wq_status_msg(status),
			 detail ? ": " : "", detail ? detail : "");
		answer_error(c, lv_wq_status_sqlstate(status), msg);
	} else {
		lv_buf_t b;
		lv_buf_init(&b);
		char note[LV_NAME_LEN + 96];
		snprintf(note, sizeof(note), "levee: queued as %s/%s", op->db, message_id ? message_id : "?");
		bool ok = lv_wire_write_notice(&b, "NOTICE", "00000", note, NULL, NULL);
		if (op->extended) {
			ok = ok && (!op->has_parse || lv_wire_write_parse_complete(&b)) && lv_wire_write_bind_complete(&b) &&
			     (!op->has_describe || lv_wire_write_no_data(&b));
		}
		ok = ok && lv_wire_write_command_complete(&b, op->tag) && lv_wire_write_ready(&b, 'I');
		if (!ok)
			lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		else if (lv_client_send(c, b.data, b.len)) {
			lv_metric_inc(LV_M_QUERIES_TOTAL);
			lv_metric_inc(LV_M_TRANSACTIONS_TOTAL);
		}
		lv_buf_cleanup(&b);
	}
	op_free(op);
	if (c->state != LV_CLIENT_CLOSING) {
		c->last_active_us = lv_time_now_us();
		lv_client_cache_retry(c); /* requests that arrived meanwhile */
	}
}

void lv_async_client_gone(lv_client_t *c)
{
	if (c->async_op) {
		c->async_op->c = NULL;
		c->async_op = NULL;
	}
}

/* Builds the message from the request and sends it; false with *st set when it failed at once. */
static bool enqueue(lv_client_t *c, const lv_request_t *rq, const lv_sql_info_t *info, const char *key,
		    struct lv_async_op *op, lv_wq_status_t *st)
{
	lv_worker_t *w = c->conn.worker;
	const lv_wire_bind_t *b = &rq->bind;
	uint16_t n = rq->extended ? b->n_params : 0;
	/* The parameters as the queue's message wants them: on the stack when few, else the four
	 * arrays in one allocation. */
	const char *values[16], **vp = values;
	int32_t lens[16], *lp = lens;
	int16_t formats[16], *fp = formats;
	uint32_t types[16], *tp = types;
	void *heap = NULL;
	if (n > 16) {
		heap = lv_calloc(n, sizeof(*vp) + sizeof(*lp) + sizeof(*fp) + sizeof(*tp));
		vp = heap;
		tp = (uint32_t *)(vp + n);
		lp = (int32_t *)(tp + n);
		fp = (int16_t *)(lp + n);
	}
	bool ok = n <= 16 || heap;
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, b->params, b->params_len);
	for (uint16_t i = 0; ok && i < n; i++) {
		const uint8_t *v;
		int32_t vlen;
		ok = lv_wire_bind_next_param(&r, &v, &vlen);
		vp[i] = ok && vlen >= 0 ? (const char *)v : NULL;
		lp[i] = ok && vlen >= 0 ? vlen : 0;
		fp[i] = lv_wire_bind_param_format(b, i);
		tp[i] = lv_request_type(rq, i);
	}
	const char *table = lv_sql_table_written(info, 0);
	const char *dot = strrchr(table, '.');
	lv_wq_msg_t m = {.db = c->database, .user = c->user, .key = key, .table = dot ? dot + 1 : table,
			 .sql = rq->sql, .sql_len = rq->sql_len, .n_params = n, .values = vp, .lens = lp,
			 .formats = fp, .types = tp};
	*st = ok ? lv_wq_enqueue(w->redis, w->cfg, &m, enqueued, op) : LV_WQ_OOM;
	lv_free(heap);
	return *st == LV_WQ_OK;
}

lv_async_result_t lv_async_try(lv_client_t *c, const lv_request_t *rq)
{
	lv_worker_t *w = c->conn.worker;
	lv_config_t *cfg = w->cfg;
	if (!rq->hinted && cfg->n_queue_rules == 0)
		return LV_ASYNC_PASS;
	lv_sql_opts_t opts = {.skip_fingerprint = true, .write_functions_list = cfg->routing.write_functions};
	lv_sql_info_t *info = w->sql_info;
	/* Kind, tables and hints: none depends on a constant, so one parse serves every
	 * INSERT of the same shape. */
	if (lv_sql_cache_classify_shape(w->sql_cache, rq->sql, rq->sql_len, &opts, false, info) != 0)
		return LV_ASYNC_PASS;
	const lv_cfg_queue_rule_t *rule = NULL;
	bool writes = (info->kind == LV_SQL_INSERT || info->kind == LV_SQL_UPDATE || info->kind == LV_SQL_DELETE ||
		       info->kind == LV_SQL_MERGE) &&
		      !info->is_multi && info->n_written >= 1;
	if (!info->hints.want_async) {
		/* A rule defers what it can and lets the rest run as usual. */
		rule = writes && !info->has_returning ? match_rule(cfg, info, c->database) : NULL;
		if (!rule)
			return LV_ASYNC_PASS;
	}
	const char *why = NULL;
	if (info->kind == LV_SQL_UNPARSABLE)
		return LV_ASYNC_PASS; /* the server explains the syntax error */
	if (info->is_multi)
		why = "levee: levee:async defers exactly one statement; this string holds several";
	else if (!writes)
		why = "levee: levee:async defers only INSERT, UPDATE, DELETE or MERGE";
	else if (info->has_returning)
		why = "levee: levee:async cannot defer a statement with RETURNING: its rows do not exist yet";
	else if (!cfg->levee.redis || !*cfg->levee.redis || !w->redis)
		why = "levee: levee:async needs a queue: set [levee] redis";
	const char *tag = lv_wq_command_tag(info->kind);
	if (!why && !tag)
		why = "levee: levee:async defers only INSERT, UPDATE, DELETE or MERGE";
	if (why) {
		char msg[200];
		if (!writes && !info->is_multi)
			snprintf(msg, sizeof(msg), "%s; this statement is %s", why, lv_sql_kind_name(info->kind));
		else
			snprintf(msg, sizeof(msg), "%s", why);
		lv_sbuf_skip(&c->conn.sb, rq->total);
		answer_error(c, LV_SQLSTATE_FEATURE_NOT_SUPPORTED, msg);
		return LV_ASYNC_ANSWERED;
	}

	struct lv_async_op *op = lv_calloc(1, sizeof(*op));
	if (!op)
		return LV_ASYNC_PASS;
	op->c = c;
	op->extended = rq->extended;
	op->has_parse = rq->has_parse;
	op->has_describe = rq->has_describe;
	snprintf(op->tag, sizeof(op->tag), "%s", tag);
	snprintf(op->db, sizeof(op->db), "%s", c->database);
	const char *key = info->hints.async_key[0] ? info->hints.async_key : rule && rule->key[0] ? rule->key : NULL;
	/* A named Parse answered here still names its statement for later Binds (transaction mode). */
	if (rq->has_parse && rq->parse_name && rq->parse_name[0]) {
		if (lv_pstmt_map_get(&c->pstmts, rq->parse_name)) {
			op_free(op);
			return LV_ASYNC_PASS; /* the server's "already exists" error is the answer */
		}
		lv_pstmt_t *ps = lv_pstmt_get(&w->pstmts, rq->sql, rq->sql_len, rq->types_be, rq->n_types);
		if (!ps || !lv_pstmt_map_set(&w->pstmts, &c->pstmts, rq->parse_name, ps)) {
			op_free(op);
			return LV_ASYNC_PASS;
		}
	}
	lv_wq_status_t st;
	if (!enqueue(c, rq, info, key, op, &st)) {
		op_free(op);
		char msg[200];
		snprintf(msg, sizeof(msg), "levee: the async write was not queued: %s", lv_wq_status_msg(st));
		lv_sbuf_skip(&c->conn.sb, rq->total);
		answer_error(c, lv_wq_status_sqlstate(st), msg);
		return LV_ASYNC_ANSWERED;
	}
	lv_sbuf_skip(&c->conn.sb, rq->total);
	c->async_op = op;
	c->conn.action = "waiting for the queue";
	return LV_ASYNC_WAIT;
}
