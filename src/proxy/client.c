/* SPDX-License-Identifier: ISC */
/*
 * Client connections: the protocol state machine Levee runs towards an
 * application. Owns lv_client_t objects (connection lifetime: from accept to
 * the loop iteration after lv_client_close/drop) and their buffers.
 *
 * The life of a client:
 *
 *   accept -> LOGIN: startup packet (SSLRequest / GSSENCRequest / CancelRequest
 *             handled here), TLS handshake, authentication (auth.c)
 *          -> WAITING: authenticated; needs a server from its pool. In session
 *             mode the client's login is finished only once it has a server,
 *             so that the BackendKeyData pid and ParameterStatus it sees are
 *             its server's own.
 *          -> ACTIVE: messages are framed by their length header and forwarded
 *             without re-encoding, in batches, with backpressure when the other
 *             side's output grows.
 *          -> CLOSING: freed after the current loop iteration, once its last
 *             bytes (a FATAL error, say) are written or a grace period ends.
 *
 * Everything runs on the owning worker's thread; nothing here takes a lock.
 */
#include "proxy/client.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "core/str.h"
#include "net/listener.h"
#include "proxy/async.h"
#include "proxy/auth.h"
#include "proxy/cached.h"
#include "proxy/params.h"
#include "sql/classify.h"
#include "proxy/pool.h"
#include "proxy/request.h"
#include "proxy/router.h"
#include "proxy/server.h"
#include "proxy/worker.h"
#include "wire/read.h"
#include "wire/sqlstate.h"
#include "wire/wire.h"
#include "wire/write.h"

#include <ctype.h>
#include <openssl/rand.h>
#include <strings.h>
#include <unistd.h>

/* Bytes of output a peer may have queued before Levee stops reading from the other side. */

/* Largest statement text inspected for routing or session state (bigger ones go as they are). */
#define LV_INSPECT_MAX (1024 * 1024)

static lv_admin_query_fn admin_handler;
static lv_pool_t *pick_replica_pool(lv_client_t *c, uint64_t min_lsn);
static bool refuse_request(lv_client_t *c, const char *sqlstate, const char *msg);

static const char *const state_names[] = {
#define XX(name, text) text,
	LV_CLIENT_STATE_MAP(XX)
#undef XX
};

/* The metrics label of each state; -1 for states not exported as a gauge. */
static const int state_label[] = {
	[LV_CLIENT_LOGIN] = LV_ML_CLIENT_STATE_LOGIN,     [LV_CLIENT_WAITING] = LV_ML_CLIENT_STATE_WAITING,
	[LV_CLIENT_ACTIVE] = LV_ML_CLIENT_STATE_ACTIVE,   [LV_CLIENT_IDLE] = LV_ML_CLIENT_STATE_IDLE,
	[LV_CLIENT_ADMIN] = LV_ML_CLIENT_STATE_ACTIVE,    [LV_CLIENT_CLOSING] = -1,
};

/*
 * Allowed transitions. Anything else is a bug: debug builds assert, release
 * builds log it and close the client rather than corrupt the lists.
 */
static const bool allowed[LV_CLIENT__NSTATES][LV_CLIENT__NSTATES] = {
	[LV_CLIENT_LOGIN] = {[LV_CLIENT_WAITING] = true, [LV_CLIENT_ADMIN] = true, [LV_CLIENT_IDLE] = true,
			     [LV_CLIENT_CLOSING] = true},
	[LV_CLIENT_WAITING] = {[LV_CLIENT_ACTIVE] = true, [LV_CLIENT_CLOSING] = true},
	[LV_CLIENT_ACTIVE] = {[LV_CLIENT_IDLE] = true, [LV_CLIENT_WAITING] = true, [LV_CLIENT_CLOSING] = true},
	[LV_CLIENT_IDLE] = {[LV_CLIENT_WAITING] = true, [LV_CLIENT_CLOSING] = true},
	[LV_CLIENT_ADMIN] = {[LV_CLIENT_CLOSING] = true},
	[LV_CLIENT_CLOSING] = {false},
};

const char *lv_client_state_name(lv_client_state_t s)
{
	return (unsigned)s < LV_CLIENT__NSTATES ? state_names[s] : "unknown";
}

void lv_client_set_admin_handler(lv_admin_query_fn fn)
{
	admin_handler = fn;
}

static lv_clist_t *state_list(lv_client_t *c, lv_client_state_t s)
{
	switch (s) {
	case LV_CLIENT_LOGIN:
		return &c->conn.worker->login;
	case LV_CLIENT_ADMIN:
		return &c->conn.worker->admin;
	case LV_CLIENT_WAITING:
		return &c->pool->waiting;
	case LV_CLIENT_ACTIVE:
		return &c->pool->active;
	case LV_CLIENT_IDLE:
		return &c->pool->idle_clients;
	case LV_CLIENT_CLOSING:
	case LV_CLIENT__NSTATES:
		break;
	}
	return NULL;
}

void lv_client_set_state(lv_client_t *c, lv_client_state_t s)
{
	lv_client_state_t old = c->state;
	if (!allowed[old][s]) {
		lv_clog_error(c, "bug: client state %s -> %s not allowed", state_names[old], state_names[s]);
		LV_ASSERT(!"client state transition");
		if (s != LV_CLIENT_CLOSING)
			s = LV_CLIENT_CLOSING;
	}
	lv_clist_t *from = state_list(c, old);
	if (from)
		lv_clist_remove(from, &c->conn.node);
	if (state_label[old] >= 0)
		lv_metric_add(LV_M_CLIENT_CONNECTIONS, (unsigned)state_label[old], -1);
	c->state = s;
	c->state_since_us = lv_time_now_us();
	lv_clist_t *to = state_list(c, s);
	if (to)
		lv_clist_append(to, &c->conn.node);
	if (state_label[s] >= 0)
		lv_metric_add(LV_M_CLIENT_CONNECTIONS, (unsigned)state_label[s], 1);
	lv_clog_trace(c, "state %s -> %s", state_names[old], state_names[s]);
}

/* ------------------------------------------------------------------ lifetime */

static void client_sbuf_cb(lv_sbuf_t *sb, lv_sbuf_event_t ev, void *arg);

static void client_free(lv_deferred_t *d)
{
	lv_client_t *c = lv_container_of(d, lv_client_t, conn.reap);
	lv_sbuf_cleanup(&c->conn.sb);
	lv_buf_cleanup(&c->params);
	lv_buf_cleanup(&c->desired);
	lv_free(c->startup);
	lv_free(c->written);
	lv_free(c->names);
	lv_pstmt_map_clear(&c->conn.worker->pstmts, &c->pstmts);
	lv_pstmt_put(&c->conn.worker->pstmts, c->unnamed_ps);
	lv_auth_cleanup(c);
	lv_free(c);
}

void lv_client_accept(lv_worker_t *w, int fd, const void *peer_sa)
{
	lv_proxy_t *p = w->proxy;
	lv_client_t *c = lv_calloc(1, sizeof(*c));
	if (!c) {
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_OOM);
		close(fd);
		return;
	}
	c->conn.kind = LV_CONN_CLIENT;
	c->conn.worker = w;
	c->conn.id = lv_worker_next_id(w);
	c->conn.connect_time = lv_time_now_us();
	c->conn.wall_connect_time = lv_time_wall_us();
	c->conn.action = "logging in";
	c->conn.port = lv_addr_format(peer_sa, c->conn.addr, sizeof(c->conn.addr));
	lv_list_init(&c->conn.node);
	lv_buf_init(&c->params);
	lv_buf_init(&c->desired);
	c->user = c->database = "";
	if (!lv_sbuf_init(&c->conn.sb, lv_loop_base(w->loop), fd, client_sbuf_cb, c)) {
		lv_free(c);
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_OOM);
		return;
	}
	c->state = LV_CLIENT_LOGIN;
	c->state_since_us = lv_time_now_us();
	lv_clist_append(&w->login, &c->conn.node);
	lv_metric_add(LV_M_CLIENT_CONNECTIONS, LV_ML_CLIENT_STATE_LOGIN, 1);
	lv_metric_inc(LV_M_CLIENT_CONNECTIONS_TOTAL);
	w->n_clients++;
	int total = __atomic_add_fetch(&p->n_clients, 1, __ATOMIC_RELAXED);
	if (total > w->cfg->levee.max_client_conn) {
		lv_metric_inc_l(LV_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, LV_ML_REFUSE_REASON_MAX_CLIENT_CONN);
		lv_client_close(c, LV_SQLSTATE_TOO_MANY_CONNECTIONS,
				"levee: no more connections allowed (max_client_conn=%d)",
				w->cfg->levee.max_client_conn);
		return;
	}
	if (w->shutdown_mode) {
		lv_metric_inc_l(LV_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, LV_ML_REFUSE_REASON_SHUTDOWN);
		lv_client_close(c, LV_SQLSTATE_CANNOT_CONNECT_NOW, "levee: shutting down");
	}
}

/* Unlinks c from everything it holds: its server, its cancel key, its counts. */
static void client_detach_all(lv_client_t *c)
{
	lv_worker_t *w = c->conn.worker;
	lv_cached_client_gone(c);
	lv_async_client_gone(c);
	if (c->server) {
		lv_server_t *sv = c->server;
		c->server = NULL;
		sv->client = NULL;
		lv_server_release(sv);
	}
	if (c->cancel_key)
		lv_worker_key_del(w, c);
	if (c->user_slot) {
		__atomic_sub_fetch(&c->user_slot->n_clients, 1, __ATOMIC_ACQ_REL);
		c->user_slot = NULL;
	}
	w->n_clients--;
	__atomic_sub_fetch(&w->proxy->n_clients, 1, __ATOMIC_RELAXED);
}

static void unlinger(lv_client_t *c)
{
	lv_clist_remove(&c->conn.worker->lingering, &c->conn.node);
	lv_sbuf_pause(&c->conn.sb);
	lv_loop_defer(c->conn.worker->loop, &c->conn.reap);
}

static void linger_cb(lv_sbuf_t *sb, lv_sbuf_event_t ev, void *arg)
{
	lv_client_t *c = arg;
	if (ev == LV_SBUF_EV_READ) {
		lv_sbuf_skip(sb, lv_sbuf_avail(sb));
		return;
	}
	/* Drained, EOF or error: nothing more to say to this client. */
	unlinger(c);
}

void lv_client_reap_lingering(lv_worker_t *w, lv_usec_t before)
{
	lv_list_t *pos, *tmp;
	lv_list_for_each_safe(pos, tmp, &w->lingering.head)
	{
		lv_client_t *c = lv_container_of(pos, lv_client_t, conn.node);
		if (c->state_since_us <= before)
			unlinger(c);
	}
}

static void client_finish(lv_client_t *c, const char *reason)
{
	lv_worker_t *w = c->conn.worker;
	if (c->state == LV_CLIENT_CLOSING)
		return;
	bool log_it = c->state != LV_CLIENT_LOGIN ? w->cfg->levee.log_disconnections : false;
	if (log_it)
		lv_clog_info(c, "closing because: %s (age=%llds)", reason,
			     (long long)((lv_time_now_us() - c->conn.connect_time) / LV_USEC_PER_SEC));
	else
		lv_clog_debug(c, "closing because: %s", reason);
	if (c->state == LV_CLIENT_WAITING && c->wait_start_us) {
		lv_usec_t waited = lv_time_now_us() - c->wait_start_us;
		lv_metric_observe_us(LV_M_CLIENT_WAIT_SECONDS, 0, waited);
		if (c->pool)
			c->pool->wait_time_us += (uint64_t)waited;
	}
	client_detach_all(c);
	lv_client_set_state(c, LV_CLIENT_CLOSING);
	c->conn.reap.fn = client_free;
	lv_list_init(&c->conn.reap.node);
	lv_sbuf_flush_now(&c->conn.sb);
	if (lv_sbuf_pending_out(&c->conn.sb) > 0 && w->shutdown_mode < 2) {
		/* Let the last message (usually a FATAL error) reach the client. */
		c->conn.sb.cb = linger_cb;
		lv_sbuf_watch_drain(&c->conn.sb, 0);
		c->conn.action = "closing";
		lv_clist_append(&w->lingering, &c->conn.node);
		return;
	}
	lv_sbuf_pause(&c->conn.sb);
	lv_loop_defer(w->loop, &c->conn.reap);
}

bool lv_client_send(lv_client_t *c, const void *data, size_t n)
{
	if (c->state == LV_CLIENT_CLOSING)
		return false;
	if (!lv_sbuf_write(&c->conn.sb, data, n)) {
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_OOM);
		client_finish(c, "out of memory");
		return false;
	}
	lv_metric_add(LV_M_CLIENT_BYTES_SENT_TOTAL, 0, (int64_t)n);
	return true;
}

static void send_error(lv_client_t *c, const char *severity, const char *sqlstate, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	lv_buf_t b;
	lv_buf_init(&b);
	if (lv_wire_write_error(&b, severity, sqlstate, msg, NULL, NULL))
		(void)lv_client_send(c, b.data, b.len);
	lv_buf_cleanup(&b);
	if (strcmp(severity, "FATAL") == 0)
		lv_clog_info(c, "closing with error %s: %s", sqlstate, msg);
	else
		lv_clog_debug(c, "error %s: %s", sqlstate, msg);
}

void lv_client_error(lv_client_t *c, const char *sqlstate, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	send_error(c, "ERROR", sqlstate, fmt, ap);
	va_end(ap);
}

void lv_client_close(lv_client_t *c, const char *sqlstate, const char *fmt, ...)
{
	if (c->state == LV_CLIENT_CLOSING)
		return;
	va_list ap;
	va_start(ap, fmt);
	send_error(c, "FATAL", sqlstate, fmt, ap);
	va_end(ap);
	client_finish(c, sqlstate);
}

void lv_client_drop(lv_client_t *c, const char *reason)
{
	client_finish(c, reason);
}

void lv_client_ready(lv_client_t *c, char status)
{
	uint8_t z[6] = {PqMsg_ReadyForQuery, 0, 0, 0, 5, (uint8_t)status};
	(void)lv_client_send(c, z, sizeof(z));
}

/* ------------------------------------------------------------------- login */

/* Sorts and stores the startup parameters that are passed on to servers. */
static bool store_params(lv_client_t *c, const lv_startup_t *st)
{
	const lv_startup_param_t *order[LV_STARTUP_MAX_PARAMS];
	size_t n = 0;
	for (size_t i = 0; i < st->n_params; i++) {
		const lv_startup_param_t *sp = &st->params[i];
		if (strcmp(sp->name, "user") == 0 || strcmp(sp->name, "database") == 0)
			continue;
		/* A repeated name keeps its last value, as PostgreSQL does. */
		size_t j;
		for (j = 0; j < n; j++)
			if (strcmp(order[j]->name, sp->name) == 0)
				break;
		order[j] = sp;
		if (j == n)
			n++;
	}
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(order[j - 1]->name, order[j]->name) > 0; j--) {
			const lv_startup_param_t *t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		if (!lv_buf_append_cstr(&c->params, order[i]->name) ||
		    !lv_buf_append_cstr(&c->params, order[i]->value))
			return false;
	}
	for (size_t i = 0; i < c->params.len; i++)
		h = (h ^ c->params.data[i]) * 1099511628211ULL;
	c->params_hash = h;
	return true;
}

/* What the client's settings must be on any server it gets (transaction mode). */
static bool build_desired(lv_client_t *c, const lv_startup_t *st)
{
	for (size_t i = 0; i < st->n_params; i++) {
		const lv_startup_param_t *sp = &st->params[i];
		if (strcmp(sp->name, "user") == 0 || strcmp(sp->name, "database") == 0 ||
		    strcmp(sp->name, "replication") == 0 || strcmp(sp->name, "options") == 0)
			continue;
		if (!lv_params_set(&c->desired, sp->name, sp->value))
			return false;
	}
	if (st->options && *st->options) {
		char bad[128];
		if (!lv_params_add_options(&c->desired, st->options, bad, sizeof(bad))) {
			lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION,
					"levee: invalid command-line argument in options: \"%s\"", bad);
			return false;
		}
	}
	return true;
}

static void handle_ssl_request(lv_client_t *c)
{
	lv_worker_t *w = c->conn.worker;
	lv_sbuf_skip(&c->conn.sb, 8);
	if (lv_sbuf_avail(&c->conn.sb) > 0) {
		/* Bytes behind an SSLRequest would be read as plain text that the
		 * client meant to encrypt: refuse them (CVE-2021-23214). */
		lv_metric_inc_l(LV_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, LV_ML_REFUSE_REASON_PROTOCOL);
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CLIENT_PROTOCOL);
		lv_client_drop(c, "data received after SSLRequest before the TLS handshake");
		return;
	}
	if (c->is_tls || !w->proxy->tls_server) {
		(void)lv_client_send(c, "N", 1);
		return;
	}
	struct ssl_st *ssl = lv_tls_new_ssl(w->proxy->tls_server);
	/* The 'S' must go out in the clear before the handshake starts. */
	if (!ssl || write(c->conn.sb.fd, "S", 1) != 1 ||
	    !lv_sbuf_start_tls(&c->conn.sb, lv_loop_base(w->loop), ssl, true)) {
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_TLS);
		lv_client_drop(c, "could not start TLS");
		return;
	}
	c->is_tls = true;
}

static void handle_cancel(lv_client_t *c, const lv_startup_t *st)
{
	lv_worker_t *w = c->conn.worker;
	uint32_t key = st->cancel_key;
	uint32_t pid = (uint32_t)st->cancel_pid;
	unsigned target = key >> 24;
	lv_client_drop(c, "cancel request");
	if ((int)target >= w->proxy->n_workers) {
		lv_metric_inc_l(LV_M_CANCEL_REQUESTS_TOTAL, LV_ML_CANCEL_RESULT_UNKNOWN);
		return;
	}
	lv_worker_t *owner = &w->proxy->workers[target];
	if (owner == w) {
		lv_client_cancel(w, pid, key);
		return;
	}
	lv_worker_post_cancel(owner, pid, key);
}

void lv_client_cancel(lv_worker_t *w, uint32_t pid, uint32_t key)
{
	lv_client_t *c = lv_worker_key_find(w, key);
	if (!c || c->cancel_pid != pid || c->state == LV_CLIENT_CLOSING) {
		lv_metric_inc_l(LV_M_CANCEL_REQUESTS_TOTAL, LV_ML_CANCEL_RESULT_UNKNOWN);
		lv_log_debug("cancel request with unknown key ignored");
		return;
	}
	if (!c->server) {
		/* Nothing runs for this client; PostgreSQL ignores such cancels too. */
		lv_metric_inc_l(LV_M_CANCEL_REQUESTS_TOTAL, LV_ML_CANCEL_RESULT_FORWARDED);
		return;
	}
	lv_clog_debug(c, "forwarding cancel request to S-%llu", (unsigned long long)c->server->conn.id);
	lv_server_cancel(c->server);
}

/* Gives the client a cancel key whose top byte names this worker. */
static bool assign_cancel_key(lv_client_t *c)
{
	lv_worker_t *w = c->conn.worker;
	for (int tries = 0; tries < 32; tries++) {
		uint32_t r;
		if (RAND_bytes((uint8_t *)&r, sizeof(r)) != 1)
			return false;
		r = ((uint32_t)w->index << 24) | (r & 0xffffff);
		if ((r & 0xffffff) == 0 || lv_worker_key_find(w, r))
			continue;
		c->cancel_key = r;
		return lv_worker_key_add(w, c);
	}
	return false;
}

static void handle_startup(lv_client_t *c, const uint8_t *pkt, uint32_t len)
{
	lv_worker_t *w = c->conn.worker;
	lv_config_t *cfg = w->cfg;
	lv_startup_t st;
	lv_err_t err = {0};
	int rc = lv_wire_parse_startup(pkt, len, &st, &err);
	if (rc != 0) {
		lv_metric_inc_l(LV_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, LV_ML_REFUSE_REASON_PROTOCOL);
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CLIENT_PROTOCOL);
		lv_client_close(c, rc == LV_EUNSUPP ? LV_SQLSTATE_FEATURE_NOT_SUPPORTED : LV_SQLSTATE_PROTOCOL_VIOLATION,
				"levee: invalid startup packet: %s", err.msg[0] ? err.msg : lv_status_msg(rc));
		return;
	}
	switch (st.kind) {
	case LV_STARTUP_SSL:
		handle_ssl_request(c);
		return;
	case LV_STARTUP_GSS:
		lv_sbuf_skip(&c->conn.sb, len);
		(void)lv_client_send(c, "N", 1);
		return;
	case LV_STARTUP_CANCEL:
		lv_sbuf_skip(&c->conn.sb, len);
		handle_cancel(c, &st);
		return;
	case LV_STARTUP_NORMAL:
		break;
	}
	if (!c->is_tls && cfg->tls.client_tls_mode == LV_CLIENT_TLS_REQUIRE) {
		lv_metric_inc_l(LV_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, LV_ML_REFUSE_REASON_TLS);
		lv_client_close(c, LV_SQLSTATE_INVALID_AUTHORIZATION,
				"levee: TLS required (client_tls_mode = require)");
		return;
	}
	const char *db = st.database && *st.database ? st.database : st.user;
	size_t ulen = strlen(st.user), dlen = strlen(db);
	if (ulen >= LV_NAME_LEN || dlen >= LV_NAME_LEN) {
		lv_metric_inc_l(LV_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, LV_ML_REFUSE_REASON_PROTOCOL);
		lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION,
				"levee: user or database name longer than %d bytes", LV_NAME_LEN - 1);
		return;
	}
	c->names = lv_malloc(ulen + dlen + 2);
	if (!c->names) {
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	memcpy(c->names, st.user, ulen + 1);
	memcpy(c->names + ulen + 1, db, dlen + 1);
	c->user = c->names;
	c->database = c->names + ulen + 1;
	for (size_t i = 0; i < st.n_params; i++) {
		if (strcmp(st.params[i].name, "replication") == 0 &&
		    strcmp(st.params[i].value, "false") != 0 && strcmp(st.params[i].value, "0") != 0 &&
		    strcmp(st.params[i].value, "off") != 0 && strcmp(st.params[i].value, "no") != 0) {
			lv_client_close(c, LV_SQLSTATE_FEATURE_NOT_SUPPORTED,
					"levee: replication connections are not supported");
			return;
		}
	}
	if (!store_params(c, &st) || !build_desired(c, &st) || !lv_buf_fit(&c->params) || !lv_buf_fit(&c->desired)) {
		if (c->state == LV_CLIENT_CLOSING)
			return;
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_OOM);
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	lv_sbuf_skip(&c->conn.sb, len);

	c->is_admin = strcmp(c->database, "levee") == 0;
	if (!c->is_admin && !lv_config_find_db(cfg, c->database)) {
		/* Authenticate first so the answer does not reveal which databases exist
		 * to someone without a password: the check repeats after auth. */
	}
	if (!assign_cancel_key(c)) {
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	c->conn.action = "authenticating";
	lv_auth_start(c);
}

/* Called by auth.c once the client proved who it is. */
void lv_client_authenticated(lv_client_t *c)
{
	lv_worker_t *w = c->conn.worker;
	lv_config_t *cfg = w->cfg;
	c->auth_phase = LV_AUTHP_DONE;
	if (c->is_admin) {
		lv_auth_cleanup(c);
		bool admin = lv_config_list_has(cfg->levee.admin_users, c->user);
		bool stats = lv_config_list_has(cfg->levee.stats_users, c->user);
		if (!admin && !stats) {
			lv_metric_inc_l(LV_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, LV_ML_REFUSE_REASON_AUTH);
			lv_client_close(c, LV_SQLSTATE_INVALID_AUTHORIZATION,
					"levee: user \"%s\" is not allowed into the admin console", c->user);
			return;
		}
		c->is_stats_only = !admin;
		lv_buf_t b;
		lv_buf_init(&b);
		bool ok = lv_wire_write_auth_ok(&b) && lv_wire_write_param_status(&b, "server_version", "15.0 (Levee " LV_VERSION ")") &&
			  lv_wire_write_param_status(&b, "server_encoding", "UTF8") &&
			  lv_wire_write_param_status(&b, "client_encoding", "UTF8") &&
			  lv_wire_write_param_status(&b, "DateStyle", "ISO, MDY") &&
			  lv_wire_write_param_status(&b, "integer_datetimes", "on") &&
			  lv_wire_write_param_status(&b, "standard_conforming_strings", "on") &&
			  lv_wire_write_backend_key(&b, (int32_t)c->cancel_key, c->cancel_key) &&
			  lv_wire_write_ready(&b, 'I');
		c->cancel_pid = c->cancel_key;
		if (ok)
			ok = lv_client_send(c, b.data, b.len);
		lv_buf_cleanup(&b);
		if (!ok)
			return;
		c->logged_in = true;
		c->conn.action = NULL;
		lv_client_set_state(c, LV_CLIENT_ADMIN);
		if (cfg->levee.log_connections)
			lv_clog_info(c, "login attempt: db=levee user=%s tls=%s", c->user, c->is_tls ? "yes" : "no");
		return;
	}
	const lv_cfg_db_t *db = lv_config_find_db(cfg, c->database);
	if (!db) {
		lv_metric_inc_l(LV_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, LV_ML_REFUSE_REASON_DATABASE);
		lv_client_close(c, LV_SQLSTATE_INVALID_CATALOG_NAME, "levee: database \"%s\" does not exist", c->database);
		return;
	}
	lv_pool_t *pool = lv_pool_get(w, db, c->user, 0);
	if (pool)
		lv_auth_export_keys(c, pool);
	lv_auth_cleanup(c);
	if (!pool) {
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_OOM);
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	if (!lv_pool_user_admit(pool, c)) {
		lv_metric_inc_l(LV_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, LV_ML_REFUSE_REASON_MAX_USER_CONNECTIONS);
		lv_client_close(c, LV_SQLSTATE_TOO_MANY_CONNECTIONS,
				"levee: too many connections for user \"%s\" (max_user_connections)", c->user);
		return;
	}
	c->pool = c->home = pool;
	c->route_reason = -1; /* no routed transaction yet */
	if (db->route == LV_ROUTE_MODE_REPLICAS && db->n_replicas > 0 && pool->pool_mode == LV_POOL_SESSION) {
		/* A read-only application: whole sessions go to a replica. */
		lv_pool_t *rp = pick_replica_pool(c, 0);
		if (rp) {
			c->pool = rp;
			c->route_reason = LV_ROUTE_READ;
		}
	}
	if (pool->pool_mode == LV_POOL_TRANSACTION && db->n_replicas > 0 && db->route != LV_ROUTE_MODE_PRIMARY &&
	    pool->backend && !__atomic_load_n(&pool->backend->usable, __ATOMIC_ACQUIRE)) {
		/* The primary is down: log in through a replica so reads keep working. */
		lv_pool_t *rp = pick_replica_pool(c, 0);
		if (rp)
			c->pool = rp;
	}
	if (cfg->levee.log_connections)
		lv_clog_info(c, "login attempt: db=%s user=%s tls=%s", c->database, c->user, c->is_tls ? "yes" : "no");
	c->conn.action = "waiting for a server";
	c->wait_start_us = lv_time_now_us();
	lv_client_set_state(c, LV_CLIENT_WAITING);
	lv_pool_assign(pool);
}

/* Finishes the login of a client that just got its first server. */
static bool finish_login(lv_client_t *c, lv_server_t *sv)
{
	lv_buf_t b;
	lv_buf_init(&b);
	/* Session mode: the server's real pid, so pg_backend_pid() and NOTIFY
	 * agree. Transaction mode: servers change, so a pid of Levee's own. */
	if (c->pool->pool_mode == LV_POOL_TRANSACTION)
		c->cancel_pid = (c->cancel_key & 0x3fffffff) | 0x40000000;
	else
		c->cancel_pid = sv->pid;
	bool ok = lv_wire_write_auth_ok(&b) && lv_server_write_status(sv, &b) &&
		  lv_wire_write_backend_key(&b, (int32_t)c->cancel_pid, c->cancel_key) && lv_wire_write_ready(&b, 'I');
	if (ok)
		ok = lv_client_send(c, b.data, b.len);
	lv_buf_cleanup(&b);
	if (ok) {
		c->logged_in = true;
		c->last_active_us = lv_time_now_us();
		/* Transaction mode matches servers by settings, not startup bytes. */
		if (c->pool->pool_mode == LV_POOL_TRANSACTION)
			lv_buf_cleanup(&c->params);
	}
	return ok;
}

/*
 * Transaction mode: keeps a copy of c's startup settings before its desired
 * settings first change (until then they are the same bytes).
 */
static bool keep_startup(lv_client_t *c)
{
	if (c->startup_kept || !c->pool || c->pool->pool_mode != LV_POOL_TRANSACTION)
		return true;
	if (c->desired.len) {
		c->startup = lv_malloc(c->desired.len);
		if (!c->startup)
			return false;
		memcpy(c->startup, c->desired.data, c->desired.len);
	}
	c->startup_len = (uint32_t)c->desired.len;
	c->startup_kept = true;
	return true;
}

/* c's startup settings as a parameter set: a view, valid until c->desired or c->startup changes. */
static lv_buf_t startup_view(const lv_client_t *c)
{
	if (!c->startup_kept)
		return c->desired;
	lv_buf_t b = {.data = (uint8_t *)c->startup, .len = c->startup_len, .cap = c->startup_len};
	return b;
}

bool lv_client_desire(lv_client_t *c, const char *name, const char *value)
{
	const char *cur = lv_params_get(&c->desired, name);
	if (cur && strcmp(cur, value) == 0)
		return true;
	c->desired_hash = 0;
	return keep_startup(c) && lv_params_set(&c->desired, name, value);
}

/* lv_params_hash(&c->desired), computed once per change of c->desired (which clears it). */
static uint64_t desired_hash(lv_client_t *c)
{
	if (!c->desired_hash)
		c->desired_hash = lv_params_hash(&c->desired);
	return c->desired_hash;
}

/*
 * Transaction mode: makes the server's settings the client's. Differences
 * become one Query of SET/RESET statements sent ahead of the client's own
 * messages; its responses are swallowed (server.c, n_swallow), except that
 * what it reports is recorded.
 */
static bool send_prelude(lv_client_t *c, lv_server_t *sv)
{
	lv_pool_t *pool = c->pool;
	/* The common case: the server last served a client with the same settings. */
	uint64_t h = desired_hash(c);
	if (sv->settings_known && h == sv->settings_hash)
		return true;
	sv->settings_known = false;
	lv_buf_t sql;
	lv_buf_init(&sql);
	bool ok = true;
	size_t pos = 0;
	const char *k, *v;
	/* set_config() takes the setting's text form, as startup packets and
	 * options do: 'a, b' for search_path is a list, not one quoted name. */
	bool first = true;
	while (ok && lv_params_next(&c->desired, &pos, &k, &v)) {
		const char *cur = lv_params_get(&sv->status, k);
		if (!cur)
			cur = lv_params_get(&sv->applied, k);
		if (cur && strcmp(cur, v) == 0)
			continue;
		ok = lv_buf_append_str(&sql, first ? "SELECT set_config(" : ", set_config(") &&
		     lv_params_quote_literal(&sql, k) && lv_buf_append_str(&sql, ", ") &&
		     lv_params_quote_literal(&sql, v) && lv_buf_append_str(&sql, ", false)");
		first = false;
		if (ok && !lv_params_get(&sv->status, k))
			ok = lv_params_set(&sv->applied, k, v);
	}
	if (!first)
		ok = ok && lv_buf_append_str(&sql, ";");
	/* Settings of earlier clients that this one did not ask for go back to the defaults. */
	pos = 0;
	while (ok && lv_params_next(&sv->applied, &pos, &k, &v)) {
		if (lv_params_get(&c->desired, k))
			continue;
		ok = lv_buf_append_str(&sql, "RESET ") && lv_params_quote_ident(&sql, k) && lv_buf_append_str(&sql, ";");
		lv_params_del(&sv->applied, k);
		pos = 0;
	}
	pos = 0;
	while (ok && lv_params_next(&sv->status, &pos, &k, &v)) {
		if (lv_params_get(&c->desired, k))
			continue;
		const char *def = lv_params_get(&pool->defaults, k);
		if (!def || strcmp(def, v) == 0)
			continue;
		ok = lv_buf_append_str(&sql, "RESET ") && lv_params_quote_ident(&sql, k) && lv_buf_append_str(&sql, ";");
	}
	if (ok && sql.len > 0) {
		lv_buf_t msg;
		lv_buf_init(&msg);
		ok = lv_buf_put_u8(&sql, 0) && lv_wire_write_query(&msg, (const char *)sql.data) &&
		     lv_sbuf_write(&sv->conn.sb, msg.data, msg.len);
		lv_buf_cleanup(&msg);
		if (ok) {
			sv->n_swallow++;
			lv_clog_debug(c, "applying settings on S-%llu: %s", (unsigned long long)sv->conn.id,
				      (const char *)sql.data);
		}
	}
	lv_buf_cleanup(&sql);
	return ok;
}

int lv_client_settings_changed(lv_client_t *c, bool done)
{
	lv_server_t *sv = c->server;
	bool all = sv->chg_reset_all, reset = all || sv->chg_resets.len > 0;
	sv->chg_reset_all = false;
	bool ok = !done || keep_startup(c);
	lv_buf_t startup = startup_view(c); /* kept: desired may change below */
	c->desired_hash = 0;
	size_t pos = 0;
	const char *k, *v;
	if (!done || !ok) {
		/* An error rolled the change back (or it never ran): nothing changed. */
	} else if (all) {
		/* The server is back at its defaults, Levee's own settings on it included. */
		lv_buf_reset(&sv->applied);
		lv_buf_reset(&c->desired);
		ok = startup.len == 0 || lv_buf_append(&c->desired, startup.data, startup.len);
	} else {
		while (ok && lv_params_next(&sv->chg_resets, &pos, &k, &v)) {
			const char *start = lv_params_get(&startup, k);
			lv_params_del(&sv->applied, k);
			if (start)
				ok = lv_params_set(&c->desired, k, start);
			else
				lv_params_del(&c->desired, k);
		}
	}
	/* New values of startup settings: the server has them already. */
	pos = 0;
	while (done && ok && lv_params_next(&sv->chg_sets, &pos, &k, &v))
		ok = lv_client_desire(c, k, v) && lv_params_set(&sv->applied, k, v);
	lv_buf_cleanup(&sv->chg_resets);
	lv_buf_cleanup(&sv->chg_sets);
	if (!done)
		return 0;
	int before = sv->n_swallow;
	sv->settings_known = false;
	if (!ok || (reset && !send_prelude(c, sv))) {
		sv->close_needed = true;
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return -1;
	}
	return sv->n_swallow > before ? 1 : 0;
}

/* Set while a server is being attached on this thread: no nested assignment then. */
static void attach(lv_client_t *c, lv_server_t *sv);
static _Thread_local bool in_assign;

void lv_client_attach(lv_client_t *c, lv_server_t *sv)
{
	lv_usec_t now = lv_time_now_us();
	if (c->wait_start_us) {
		lv_usec_t waited = now - c->wait_start_us;
		lv_metric_observe_us(LV_M_CLIENT_WAIT_SECONDS, 0, waited);
		c->pool->wait_time_us += (uint64_t)waited;
		c->wait_start_us = 0;
	}
	bool was_assigning = in_assign;
	in_assign = true;
	attach(c, sv);
	in_assign = was_assigning;
}

static void want_server(lv_client_t *c);
static bool send_refresh(lv_client_t *c, lv_server_t *sv, const lv_buf_t *refresh);

static void attach(lv_client_t *c, lv_server_t *sv)
{
	c->server = sv;
	sv->client = c;
	lv_server_set_state(sv, LV_SERVER_ACTIVE);
	lv_client_set_state(c, LV_CLIENT_ACTIVE);
	c->conn.action = NULL;
	if (c->pool->pool_mode == LV_POOL_TRANSACTION && !send_prelude(c, sv)) {
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	if (!c->logged_in) {
		/* The welcome waits for the settings to be applied, so that the
		 * ParameterStatus values the client sees are the ones in force. */
		if (sv->n_swallow == 0) {
			if (!finish_login(c, sv))
				return;
			lv_client_server_ready(c);
		}
		return;
	}
	const lv_buf_t *refresh = c->fill ? lv_cached_refresh_request(c) : NULL;
	if (refresh) {
		/* The cache's background refresh goes first; the client's input waits for it. */
		if (!send_refresh(c, sv, refresh))
			return;
		if (c->pool->pool_mode == LV_POOL_TRANSACTION) {
			/* The server carries the refresh on alone; the client is free for its next request. */
			lv_cached_handoff(c, sv);
			sv->settings_hash = desired_hash(c);
			sv->settings_known = true;
			c->server = NULL;
			sv->client = NULL;
			lv_client_set_state(c, LV_CLIENT_IDLE);
			lv_sbuf_resume(&c->conn.sb);
			if (lv_sbuf_avail(&c->conn.sb) > 0)
				want_server(c);
		}
		return;
	}
	/* Anything the client sent while it waited can go now. */
	lv_sbuf_resume(&c->conn.sb);
	if (lv_sbuf_avail(&c->conn.sb) > 0)
		lv_sbuf_kick(&c->conn.sb);
}

/*
 * Classifies through the worker's cache, counting hits and misses and timing
 * the parses (the metrics behind the cache hit ratio and parse time). by_shape:
 * the caller reads nothing a constant can change (lv_sql_cache_classify_shape).
 */
static int classify(lv_worker_t *w, const char *sql, size_t len, const lv_sql_opts_t *opts, bool by_shape,
		    lv_sql_info_t *info)
{
	uint64_t misses = lv_sql_cache_stats(w->sql_cache).misses;
	lv_usec_t t0 = lv_time_update();
	int rc = by_shape ? lv_sql_cache_classify_shape(w->sql_cache, sql, len, opts, false, info)
			  : lv_sql_cache_classify(w->sql_cache, sql, len, opts, info);
	bool miss = lv_sql_cache_stats(w->sql_cache).misses != misses;
	lv_metric_inc_l(LV_M_SQL_CLASSIFICATIONS_TOTAL,
			miss ? LV_ML_CLASSIFY_RESULT_MISS : LV_ML_CLASSIFY_RESULT_HIT);
	if (miss)
		lv_metric_observe_us(LV_M_SQL_PARSE_SECONDS, 0, lv_time_update() - t0);
	return rc;
}

/* Moves c (IDLE or WAITING) to another pool of its database. */
static void switch_pool(lv_client_t *c, lv_pool_t *p)
{
	if (c->pool == p)
		return;
	lv_clist_t *from = state_list(c, c->state);
	if (from)
		lv_clist_remove(from, &c->conn.node);
	c->pool = p;
	lv_clist_t *to = state_list(c, c->state);
	if (to)
		lv_clist_append(to, &c->conn.node);
}

/*
 * A replica pool for c: the healthy replica with the least outstanding work
 * per weight, among those that have replayed min_lsn (0: any). NULL if none.
 */
static lv_pool_t *pick_replica_pool(lv_client_t *c, uint64_t min_lsn)
{
	lv_worker_t *w = c->conn.worker;
	const lv_cfg_db_t *db = c->home->db;
	if (!db || db->n_replicas <= 0)
		return NULL;
	lv_replica_load_t load[LV_MAX_BACKENDS];
	int n = LV_MIN(db->n_replicas, LV_MAX_BACKENDS);
	for (int i = 0; i < n; i++) {
		lv_backend_t *b = w->proxy->health ? lv_health_find(w->proxy->health, db->replicas[i].host,
								      db->replicas[i].port)
						   : NULL;
		load[i].weight = db->replicas[i].weight > 0 ? db->replicas[i].weight : 100;
		load[i].healthy = b && __atomic_load_n(&b->usable, __ATOMIC_ACQUIRE) &&
				  __atomic_load_n(&b->is_replica, __ATOMIC_RELAXED) == 1 &&
				  (!min_lsn || __atomic_load_n(&b->lsn, __ATOMIC_RELAXED) >= min_lsn);
		load[i].outstanding = b ? __atomic_load_n(&b->outstanding, __ATOMIC_RELAXED) : 0;
	}
	/* Ties rotate, so equal replicas share the reads of even a single client. */
	static _Thread_local unsigned rotate;
	int pick = lv_route_pick_replica(load, n, (int)(rotate++ % (unsigned)n));
	return pick < 0 ? NULL : lv_pool_get(w, db, c->user, pick + 1);
}

/* The text of the statement a request starts with, if Levee can see it without waiting. */
static const char *first_statement(lv_client_t *c, size_t *len, bool *wait)
{
	lv_sbuf_t *sb = &c->conn.sb;
	uint8_t hdr[5];
	*wait = false;
	if (!lv_sbuf_peek(sb, 0, hdr, 5))
		return NULL;
	uint32_t mlen = lv_get_u32(hdr + 1);
	if (hdr[0] == PqMsg_Query || hdr[0] == PqMsg_Parse) {
		if (mlen > LV_INSPECT_MAX) 
			return NULL;
		const uint8_t *msg = lv_sbuf_pullup(sb, (size_t)mlen + 1);
		if (!msg) {
			*wait = true;
			return NULL;
		}
		if (hdr[0] == PqMsg_Query) {
			const char *sql;
			if (lv_wire_parse_query(msg + 5, mlen - 4, &sql, len) != 0)
				return NULL;
			return sql;
		}
		lv_wire_parse_t p;
		if (lv_wire_parse_parse(msg + 5, mlen - 4, &p) != 0)
			return NULL;
		*len = p.query_len;
		return p.query;
	}
	if (hdr[0] == PqMsg_Bind || hdr[0] == PqMsg_Describe) {
		/* A prepared statement this client named: its text is known. */
		uint8_t head[5 + 2 * LV_NAME_LEN];
		size_t n = LV_MIN((size_t)mlen + 1, sizeof(head));
		if (!lv_sbuf_peek(sb, 0, head, n)) {
			*wait = true;
			return NULL;
		}
		const uint8_t *name = head + 5;
		if (hdr[0] == PqMsg_Bind) {
			const uint8_t *e = memchr(name, 0, n - 5);
			name = e ? e + 1 : NULL;
		} else {
			name = head[5] == 'S' ? head + 6 : NULL;
		}
		if (!name || name >= head + n || !memchr(name, 0, (size_t)(head + n - name)))
			return NULL;
		lv_pstmt_t *ps = lv_pstmt_map_get(&c->pstmts, (const char *)name);
		if (!ps)
			return NULL;
		*len = ps->query_len;
		return ps->query;
	}
	return NULL;
}

/* Whether the router would let a replica run sql, a replica being at hand. */
static bool replica_may_run(lv_worker_t *w, const char *sql, size_t len)
{
	lv_sql_opts_t opts = {.skip_fingerprint = true, .write_functions_list = w->cfg->routing.write_functions};
	if (classify(w, sql, len, &opts, true, w->sql_info) != 0)
		return false;
	lv_route_input_t in = {.info = w->sql_info, .n_healthy_replicas = 1};
	return lv_route_decide(&in).target == LV_TARGET_REPLICA;
}

/* Bytes of one request looked at, at most; a longer one without its Sync goes to the primary. */
#define GROUP_SCAN_MAX (64 * 1024)

typedef enum group_verdict { GROUP_PRIMARY, GROUP_REPLICA, GROUP_WAIT } group_verdict_t;

/*
 * Extended protocol: the messages after the first one of the request at the
 * head of c's input, up to its Sync, run in one implicit transaction with it,
 * on one server, so they are routed together; first is the classification of
 * that first statement, which decides alone when it opens a transaction
 * (BEGIN READ ONLY: what follows fails on a replica as it would on any
 * read-only transaction). GROUP_REPLICA when a replica
 * may run every statement among them (Parse texts, Binds of statements the
 * client named); GROUP_PRIMARY for a write or a statement Levee cannot see;
 * GROUP_WAIT while neither the group's Sync nor a Flush has arrived: a client
 * expects nothing back before it sends one, so waiting for it is safe. More
 * than GROUP_SCAN_MAX bytes without one go to the primary, which runs anything.
 */
static group_verdict_t group_route(lv_client_t *c, const lv_sql_info_t *first)
{
	lv_sbuf_t *sb = &c->conn.sb;
	lv_worker_t *w = c->conn.worker;
	size_t avail = lv_sbuf_avail(sb);
	uint8_t hdr[5];
	if (first->kind == LV_SQL_BEGIN || first->kind == LV_SQL_START)
		return GROUP_REPLICA;
	if (!lv_sbuf_peek(sb, 0, hdr, 5) || hdr[0] == PqMsg_Query)
		return GROUP_REPLICA; /* a Query is a request of its own */
	for (size_t off = (size_t)lv_get_u32(hdr + 1) + 1;;) {
		if (off >= GROUP_SCAN_MAX)
			return GROUP_PRIMARY;
		if (!lv_sbuf_peek(sb, off, hdr, 5))
			return GROUP_WAIT;
		size_t whole = (size_t)lv_get_u32(hdr + 1) + 1;
		if (hdr[0] == PqMsg_Sync || hdr[0] == PqMsg_Flush || hdr[0] == PqMsg_Query || whole < 5)
			return GROUP_REPLICA;
		if (hdr[0] == PqMsg_Parse || hdr[0] == PqMsg_Bind) {
			if (off + whole > GROUP_SCAN_MAX)
				return GROUP_PRIMARY;
			if (off + whole > avail)
				return GROUP_WAIT;
			const uint8_t *m = lv_sbuf_pullup(sb, off + whole);
			if (!m)
				return GROUP_PRIMARY;
			m += off;
			const char *sql = NULL;
			size_t len = 0;
			lv_wire_parse_t ps;
			lv_wire_bind_t b;
			if (hdr[0] == PqMsg_Parse && lv_wire_parse_parse(m + 5, whole - 5, &ps) == 0) {
				sql = ps.query;
				len = ps.query_len;
			} else if (hdr[0] == PqMsg_Bind && lv_wire_parse_bind(m + 5, whole - 5, &b) == 0) {
				if (b.stmt_len == 0) {
					off += whole;
					continue; /* the unnamed statement: its Parse was looked at */
				}
				lv_pstmt_t *pst = lv_pstmt_map_get(&c->pstmts, b.stmt);
				if (pst) {
					sql = pst->query;
					len = pst->query_len;
				}
			}
			if (!sql || !replica_may_run(w, sql, len))
				return GROUP_PRIMARY;
		}
		off += whole;
	}
}

/*
 * The pool writes go to: the primary's, or after a followed failover the
 * promoted replica's.
 */
static lv_pool_t *primary_pool(lv_client_t *c)
{
	lv_pool_t *home = c->home;
	if (!home->backend || !__atomic_load_n(&home->backend->demoted, __ATOMIC_ACQUIRE) || !home->db)
		return home;
	lv_worker_t *w = c->conn.worker;
	for (int i = 0; i < home->db->n_replicas && w->proxy->health; i++) {
		lv_backend_t *b = lv_health_find(w->proxy->health, home->db->replicas[i].host, home->db->replicas[i].port);
		if (b && __atomic_load_n(&b->is_replica, __ATOMIC_RELAXED) == 0 && __atomic_load_n(&b->usable, __ATOMIC_ACQUIRE))
			return lv_pool_get(w, home->db, c->user, i + 1);
	}
	return home;
}

/* Read-your-writes: true while c's last write may be missing on replicas; sets *min_lsn. */
static bool ryw_pending(lv_client_t *c, uint64_t *min_lsn)
{
	lv_config_t *cfg = c->conn.worker->cfg;
	*min_lsn = 0;
	if (!c->ryw_since || cfg->routing.read_your_writes == LV_RYW_OFF)
		return false;
	lv_usec_t now = lv_time_now_us();
	int64_t timeout_ms = cfg->routing.read_your_writes_timeout_ms;
	if (timeout_ms > 0 && now - c->ryw_since > timeout_ms * LV_USEC_PER_MS) {
		c->ryw_since = 0;
		return false;
	}
	if (cfg->routing.read_your_writes == LV_RYW_TIME || !c->home->backend)
		return true;
	/* lsn: the primary's position seen by a check that began after the write. */
	uint64_t lsn = lv_backend_lsn_after(c->home->backend, c->ryw_since);
	if (!lsn)
		return true;
	*min_lsn = lsn;
	return false;
}

/*
 * Transaction mode on a database with replicas: picks the pool for the
 * transaction that c's buffered input starts. Returns NULL when more input
 * is needed to decide, or when c was answered with an error.
 */
static lv_pool_t *route(lv_client_t *c)
{
	lv_worker_t *w = c->conn.worker;
	lv_config_t *cfg = w->cfg;
	size_t len = 0;
	bool wait;
	const char *sql = first_statement(c, &len, &wait);
	if (wait)
		return NULL;
	lv_sql_info_t *info = NULL;
	if (sql) {
		lv_sql_opts_t opts = {.skip_fingerprint = true,
				      .write_functions_list = cfg->routing.write_functions};
		if (classify(w, sql, len, &opts, true, w->sql_info) == 0)
			info = w->sql_info;
	}
	uint64_t min_lsn = 0;
	lv_route_input_t in = {.info = info, .ryw_pending = ryw_pending(c, &min_lsn),
			       .fallback_error = cfg->routing.replica_fallback == LV_FALLBACK_ERROR};
	lv_pool_t *rp = pick_replica_pool(c, min_lsn);
	in.n_healthy_replicas = rp ? 1 : 0;
	if (!rp && min_lsn && pick_replica_pool(c, 0)) {
		/* Healthy replicas exist but none has the client's write yet. */
		in.ryw_pending = true;
		in.n_healthy_replicas = 1;
	}
	lv_route_t d = lv_route_decide(&in);
	if (d.target == LV_TARGET_REPLICA) {
		group_verdict_t g = group_route(c, info);
		if (g == GROUP_WAIT)
			return NULL; /* the rest of the request decides too */
		if (g == GROUP_PRIMARY)
			d = (lv_route_t){LV_TARGET_PRIMARY, LV_ROUTE_WRITE}; /* a later statement writes */
	}
	c->route_reason = (int)d.reason;
	lv_metric_inc_l(LV_M_ROUTES_TOTAL, (unsigned)d.reason);
	if (d.target == LV_TARGET_REPLICA && rp)
		return rp;
	if (d.target == LV_TARGET_ERROR) {
		uint8_t hdr[5];
		if (lv_sbuf_peek(&c->conn.sb, 0, hdr, 5) && hdr[0] == PqMsg_Query) {
			lv_sbuf_skip(&c->conn.sb, (size_t)lv_get_u32(hdr + 1) + 1);
			lv_client_error(c, LV_SQLSTATE_CONNECTION_FAILURE,
					"levee: no healthy replica for database \"%s\" (replica_fallback = error)",
					c->database);
			lv_client_ready(c, 'I');
			return NULL;
		}
		/* Extended protocol: answering mid-pipeline is not possible; use the primary. */
	}
	lv_pool_t *pp = primary_pool(c);
	if (pp->backend && !__atomic_load_n(&pp->backend->usable, __ATOMIC_ACQUIRE)) {
		/* Known down: fail fast and keep the session for reads. */
		char msg[160];
		snprintf(msg, sizeof(msg), "levee: the primary of database \"%s\" is unavailable", c->database);
		if (refuse_request(c, LV_SQLSTATE_CANNOT_CONNECT_NOW, msg) && lv_sbuf_avail(&c->conn.sb) > 0)
			lv_sbuf_kick(&c->conn.sb);
		return NULL;
	}
	return pp;
}

/*
 * Answers the request at the head of c's input with an error instead of
 * running it: a simple Query, or extended-protocol messages up to and
 * including their Sync (as a server that failed would). Returns false when
 * the Sync has not arrived yet.
 */
/* Whether c's unnamed statement may write (the cache must see its Binds): kept, or noted. */
static bool unnamed_may_write(const lv_client_t *c)
{
	return c->unnamed_ps || c->unnamed_unnoted;
}

/* The length of the request at the head of sb (through its Query or Sync); false if incomplete. */
static bool request_len(lv_sbuf_t *sb, size_t *len)
{
	size_t off = 0, avail = lv_sbuf_avail(sb);
	uint8_t hdr[5];
	for (;;) {
		if (!lv_sbuf_peek(sb, off, hdr, 5))
			return false;
		size_t whole = (size_t)lv_get_u32(hdr + 1) + 1;
		if (off + whole > avail)
			return false;
		off += whole;
		if (hdr[0] == PqMsg_Query || hdr[0] == PqMsg_Sync)
			break;
	}
	*len = off;
	return true;
}

static bool refuse_request(lv_client_t *c, const char *sqlstate, const char *msg)
{
	lv_sbuf_t *sb = &c->conn.sb;
	size_t off;
	if (!request_len(sb, &off))
		return false;
	lv_sbuf_skip(sb, off);
	lv_client_error(c, sqlstate, "%s", msg);
	lv_client_ready(c, 'I');
	return true;
}

static void want_server_routed(lv_client_t *c);
static void handle_idle_input(lv_client_t *c);
static bool idle_head(lv_client_t *c);

/*
 * Transaction mode: a client with input and no server. The cache may answer
 * (then the next request is looked at), park it, or let it go on to a server.
 */
/*
 * A request with no open transaction may be answered without a server: the
 * write queue takes a deferred write, the cache answers a cached read. The
 * request at the head of the input is parsed once for both.
 */
static lv_cached_result_t answer_locally(lv_client_t *c)
{
	if (c->async_op || c->parked)
		return LV_CACHED_WAIT; /* its deferred write or its cache fill is answered first */
	lv_request_t rq;
	if (!lv_request_parse(c, &rq))
		return LV_CACHED_PASS;
	lv_async_result_t ar = lv_async_try(c, &rq);
	if (ar != LV_ASYNC_PASS)
		return ar == LV_ASYNC_WAIT ? LV_CACHED_WAIT : LV_CACHED_ANSWERED;
	if (c->cache_untrusted)
		return LV_CACHED_PASS;
	return lv_cached_try(c, &rq);
}

/* Writes the cache's background refresh to sv, ahead of anything the client sends. */
static bool send_refresh(lv_client_t *c, lv_server_t *sv, const lv_buf_t *refresh)
{
	if (!lv_sbuf_write(&sv->conn.sb, refresh->data, refresh->len)) {
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return false;
	}
	if (sv->n_pending++ == 0)
		sv->request_start_us = lv_time_now_us();
	return true;
}

static void want_server(lv_client_t *c)
{
	for (;;) {
		lv_cached_result_t r = answer_locally(c);
		if (r == LV_CACHED_WAIT || c->state != LV_CLIENT_IDLE)
			return;
		if (r != LV_CACHED_ANSWERED)
			break;
		c->last_active_us = lv_time_now_us();
		/* Answered: on to the next request, if one is there. */
		if (!idle_head(c))
			return;
	}
	want_server_routed(c);
}

static void forward_to_server(lv_client_t *c);

void lv_client_cache_retry(lv_client_t *c)
{
	if (lv_sbuf_avail(&c->conn.sb) == 0)
		return;
	if (c->state == LV_CLIENT_IDLE)
		handle_idle_input(c);
	else if (c->state == LV_CLIENT_ACTIVE)
		forward_to_server(c);
}

void lv_client_cache_fill(lv_client_t *c)
{
	if (c->state == LV_CLIENT_IDLE)
		want_server_routed(c);
	else if (c->state == LV_CLIENT_ACTIVE)
		forward_to_server(c);
}

/*
 * Session mode: a request that starts while the client's server is idle may
 * be answered from the cache too. Returns false when the client must not
 * forward now (answered with nothing more to do, parked, closed, or its
 * server runs the cache's refresh).
 */
static bool session_cache(lv_client_t *c)
{
	lv_server_t *sv = c->server;
	while (sv->n_pending == 0 && !sv->unsynced && !sv->in_copy && !c->fwd_left && !sv->fwd_left &&
	       sv->txn_status == 'I' && lv_sbuf_avail(&c->conn.sb) > 0) {
		lv_cached_result_t r = answer_locally(c);
		if (r == LV_CACHED_WAIT || c->state != LV_CLIENT_ACTIVE)
			return false;
		if (r == LV_CACHED_PASS)
			return true;
		const lv_buf_t *refresh = c->fill ? lv_cached_refresh_request(c) : NULL;
		if (refresh) {
			(void)send_refresh(c, sv, refresh);
			return false;
		}
		if (r == LV_CACHED_FILL)
			return true;
		c->last_active_us = lv_time_now_us();
	}
	return true;
}

static void want_server_routed(lv_client_t *c)
{
	const lv_cfg_db_t *db = c->home ? c->home->db : NULL;
	if (c->fill && lv_cached_refresh_request(c)) {
		/* A background refresh: a read, whatever the client sends next. */
		lv_pool_t *rp = db && db->n_replicas > 0 && db->route != LV_ROUTE_MODE_PRIMARY
					? pick_replica_pool(c, 0)
					: NULL;
		switch_pool(c, rp ? rp : primary_pool(c));
	} else if (db && db->n_replicas > 0 && db->route != LV_ROUTE_MODE_PRIMARY) {
		lv_pool_t *p = route(c);
		if (!p)
			return;
		switch_pool(c, p);
	}
	c->wait_start_us = lv_time_now_us();
	c->conn.action = "waiting for a server";
	lv_client_set_state(c, LV_CLIENT_WAITING);
	if (!in_assign)
		lv_pool_assign(c->pool);
}

/* ---------------------------------------------------------------- messages */

static bool is_frontend_type(uint8_t t)
{
	switch (t) {
	case PqMsg_Query:
	case PqMsg_Parse:
	case PqMsg_Bind:
	case PqMsg_Execute:
	case PqMsg_Describe:
	case PqMsg_Close:
	case PqMsg_Sync:
	case PqMsg_Flush:
	case PqMsg_Terminate:
	case PqMsg_CopyData:
	case PqMsg_CopyDone:
	case PqMsg_CopyFail:
	case PqMsg_FunctionCall:
		return true;
	default:
		return false;
	}
}

/* ------------------------------------------------ transaction mode checks */

/* How a message at the head of the client's input was dealt with. */
typedef enum txn_result {
	TXN_FORWARD,  /* forward it unchanged (its response entry is queued) */
	TXN_CONSUMED, /* handled here; skip it */
	TXN_WAIT,     /* not all of it is here yet */
	TXN_CLOSED,   /* the client was closed */
	TXN_AT_HEAD,  /* needs handling at the head of the input: forward what precedes it first */
} txn_result_t;


static bool word_is(const char *w, size_t n, const char *kw)
{
	return strlen(kw) == n && strncasecmp(w, kw, n) == 0;
}

/* Does s[0..k) equal needle (lower case letters and underscores, length k), ignoring case? */
static bool equals_lower(const char *s, const char *needle, size_t k)
{
	for (size_t j = 0; j < k; j++) {
		char ch = s[j];
		if (ch >= 'A' && ch <= 'Z')
			ch |= 0x20;
		if (ch != needle[j])
			return false;
	}
	return true;
}

/* needle is lower case ASCII letters and underscores. */
static bool contains_ci(const char *s, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	char first = needle[0];
	for (size_t i = 0; i + k <= n; i++)
		if ((s[i] | 0x20) == first && equals_lower(s + i, needle, k))
			return true;
	return false;
}

/* Does s name a session-level advisory lock or set_config()? One pass, for every statement. */
static bool names_session_function(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = s[i] | 0x20;
		if (ch == 'a' && i + 8 <= n && equals_lower(s + i, "advisory", 8))
			return true;
		if (ch == 's' && i + 10 <= n && equals_lower(s + i, "set_config", 10))
			return true;
	}
	return false;
}

/*
 * Cheap test before the parser: could this text create or clear session
 * state? Most statements start with a word that rules it out.
 */
static bool may_touch_session(const char *sql, size_t n)
{
	size_t wl;
	const char *word = lv_sql_first_word(sql, n, &wl);
	if (word_is(word, wl, "set") || word_is(word, wl, "reset") || word_is(word, wl, "prepare") ||
	    word_is(word, wl, "listen") || word_is(word, wl, "unlisten") || word_is(word, wl, "declare") ||
	    word_is(word, wl, "discard") || word_is(word, wl, "deallocate") || word_is(word, wl, "load"))
		return true;
	if (word_is(word, wl, "create") && contains_ci(sql, n, "temp"))
		return true;
	if (names_session_function(sql, n))
		return true;
	/* Several statements in one string: look at all of them. */
	const char *semi = memchr(sql, ';', n);
	while (semi) {
		const char *p = semi + 1;
		while (p < sql + n && (isspace((unsigned char)*p) || *p == ';'))
			p++;
		if (p < sql + n && *p)
			return true;
		semi = NULL;
	}
	return false;
}

/*
 * Notes on c's server that the statement described by info resets settings
 * (RESET name, SET name TO DEFAULT, RESET ALL, DISCARD ALL): when its request
 * ends, lv_client_settings_changed() brings the client's startup values back.
 */
static void note_reset(lv_client_t *c, const lv_sql_info_t *info)
{
	lv_server_t *sv = c->server;
	const lv_sql_set_t *set = &info->set;
	uint32_t set_bit = LV_SQL_SESSION_BIT(LV_SQL_SESSION_SET);
	if (info->clears_session_state && (info->clears_mask & set_bit)) {
		/* What the request changed before is reset too. */
		lv_buf_cleanup(&sv->chg_sets);
		lv_buf_cleanup(&sv->chg_resets);
		sv->chg_reset_all = true;
		return;
	}
	if (!set->is_present || set->is_local || !set->name[0] ||
	    (!set->is_reset && !set->is_default))
		return;
	lv_params_del(&sv->chg_sets, set->name);
	if (!lv_params_set(&sv->chg_resets, set->name, ""))
		lv_clog_warn(c, "out of memory noting RESET %s", set->name);
}

/*
 * The text set_config() takes for the value of a SET as written: a quoted
 * literal unquoted, a plain word or number lower-cased as PostgreSQL folds it.
 * False for anything else (lists, E'' strings, expressions).
 */
static bool set_config_text(const char *src, char *out, size_t cap)
{
	size_t n = 0;
	char q = src[0];
	if (q == '\'' || q == '"') {
		const char *p = src + 1;
		for (;;) {
			if (!*p)
				return false;
			if (*p == q && *++p != q)
				break;
			if (n + 1 >= cap)
				return false;
			out[n++] = *p++;
		}
		out[n] = '\0';
		return *p == '\0';
	}
	for (const char *p = src; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		bool word = isalnum(ch) || ch == '_' || ch == '.' || ch == '-' || ch == '+';
		if (!word || n + 1 >= cap)
			return false;
		out[n++] = (char)tolower(ch);
	}
	out[n] = '\0';
	return n > 0;
}

/* Whether a SET's value is plain enough for set_config_text(). */
static bool set_value_plain(const lv_sql_set_t *set)
{
	char text[LV_SQL_SET_VALUE_LEN];
	return !set->is_value_too_long && set_config_text(set->value, text, sizeof(text));
}

/*
 * A SET of a setting c gave at startup that its servers do not report: Levee
 * applies that setting on every server, so the new value is carried the same
 * way once the request ends without an error (lv_client_settings_changed).
 * False when the value is not plain enough to carry.
 */
static bool note_set(lv_client_t *c, const lv_sql_info_t *info)
{
	lv_server_t *sv = c->server;
	const lv_sql_set_t *set = &info->set;
	char text[LV_SQL_SET_VALUE_LEN];
	if (set->is_value_too_long || !set_config_text(set->value, text, sizeof(text)))
		return false;
	lv_params_del(&sv->chg_resets, set->name);
	return lv_params_set(&sv->chg_sets, set->name, text);
}

/*
 * A plain SET (not RESET or TO DEFAULT) of a setting c gave at startup that
 * its server does not report: carried from server to server by note_set().
 */
static bool sets_startup_setting(const lv_client_t *c, const lv_server_t *sv, const lv_sql_info_t *info)
{
	const lv_sql_set_t *set = &info->set;
	lv_buf_t startup = startup_view(c);
	return set->is_present && !set->is_local && set->name[0] && !info->is_multi && !set->is_reset &&
	       !set->is_default && strcmp(set->name, "search_path") != 0 &&
	       !lv_params_get(&sv->status, set->name) && lv_params_get(&startup, set->name);
}

/* Whether a SET of name stays with the client across servers rather than pinning it. */
static bool is_tracked_setting(const lv_client_t *c, const lv_server_t *sv, const char *name)
{
	lv_buf_t startup = startup_view(c);
	return strcmp(name, "search_path") == 0 || lv_params_get(&sv->status, name) != NULL ||
	       lv_params_get(&startup, name) != NULL;
}

/*
 * Transaction mode: looks at a statement before it goes to the server.
 * Settings the client SETs are tracked (reported ones through ParameterStatus,
 * search_path here); anything else that creates session state pins the
 * client to its server (session_state = pin) or is refused (reject; only
 * when the caller can answer for it). When it runs in this request (runs: not
 * the Parse of a named statement, whose Binds are looked at instead), a RESET,
 * SET ... TO DEFAULT, RESET ALL or DISCARD ALL is noted on the server: when
 * its request ends, the client's startup values are applied again
 * (lv_client_settings_changed), since the server alone would go back to its
 * own. Returns true if the statement was refused and answered here.
 */
static bool inspect_statement(lv_client_t *c, const char *sql, size_t n, bool can_reject, bool runs)
{
	lv_worker_t *w = c->conn.worker;
	lv_server_t *sv = c->server;
	if (n > LV_INSPECT_MAX || !may_touch_session(sql, n))
		return false;
	lv_sql_info_t *info = w->sql_info; /* the worker's scratch: used only within this call */
	lv_sql_opts_t opts = {.skip_fingerprint = true};
	if (classify(w, sql, n, &opts, false, info) != 0)
		return false;
	uint32_t creates = info->creates_session_state ? info->creates_mask : 0;
	const lv_sql_set_t *set = &info->set;
	if (set->is_present && !set->is_local && set->name[0] && !info->is_multi &&
	    is_tracked_setting(c, sv, set->name)) {
		/* A tracked setting: not session state Levee cannot carry. Reported ones
		 * follow ParameterStatus (server.c); resets are noted below. */
		creates &= ~LV_SQL_SESSION_BIT(LV_SQL_SESSION_SET);
		bool carried = true;
		if (!set->is_reset && !set->is_default && strcmp(set->name, "search_path") == 0)
			carried = lv_client_desire(c, "search_path", set->value) &&
				  lv_params_set(&sv->applied, "search_path", set->value);
		else if (sets_startup_setting(c, sv, info))
			/* A named statement's is noted when a Bind runs it. */
			carried = runs ? note_set(c, info) : set_value_plain(set);
		if (!carried)
			creates |= LV_SQL_SESSION_BIT(LV_SQL_SESSION_SET);
	}
	if (info->clears_session_state) {
		c->pin_mask &= ~info->clears_mask;
		if (info->clears_mask & LV_SQL_SESSION_BIT(LV_SQL_SESSION_PREPARE))
			lv_pstmt_set_clear(&w->pstmts, &sv->pstmts);
	}
	bool rejected = false;
	if (creates) {
		lv_sql_session_t reason = info->session_reason;
		for (int r = 1; r < LV_SQL_SESSION_COUNT; r++)
			if (creates & LV_SQL_SESSION_BIT(r)) {
				reason = (lv_sql_session_t)r;
				break;
			}
		if (w->cfg->pool.session_state == LV_SESSION_STATE_REJECT && can_reject) {
			rejected = true;
			const char *what = reason == LV_SQL_SESSION_SET ? info->set.name : lv_sql_kind_name(info->kind);
			lv_client_error(c, LV_SQLSTATE_FEATURE_NOT_SUPPORTED,
					"levee: %s creates session state (%s) that transaction pooling cannot "
					"carry between servers; refused because session_state = reject",
					what, lv_sql_session_name(reason));
		} else {
			if ((c->pin_mask & creates) != creates)
				lv_metric_inc_l(LV_M_POOL_PINS_TOTAL, (unsigned)reason - 1);
			if (!c->pin_mask)
				lv_clog_debug(c, "pinned to S-%llu: %s", (unsigned long long)sv->conn.id,
					      lv_sql_session_name(reason));
			c->pin_mask |= creates;
		}
	}
	if (!rejected && runs)
		note_reset(c, info);
	return rejected;
}

/*
 * Transaction mode: a named prepared statement is bound. Its Parse may have
 * been long ago, so a change of carried settings in it is noted again here.
 */
static void inspect_bound(lv_client_t *c, const lv_pstmt_t *ps)
{
	lv_worker_t *w = c->conn.worker;
	size_t wl;
	const char *word = lv_sql_first_word(ps->query, ps->query_len, &wl);
	if (!word_is(word, wl, "reset") && !word_is(word, wl, "discard") &&
	    !word_is(word, wl, "set"))
		return;
	lv_sql_opts_t opts = {.skip_fingerprint = true};
	if (classify(w, ps->query, ps->query_len, &opts, false, w->sql_info) != 0)
		return;
	const lv_sql_info_t *info = w->sql_info;
	if (sets_startup_setting(c, c->server, info))
		(void)note_set(c, info); /* one it cannot carry pinned the client at its Parse */
	note_reset(c, info);
}

static bool write_server(lv_client_t *c, lv_buf_t *b, bool ok)
{
	ok = ok && lv_sbuf_write(&c->server->conn.sb, b->data, b->len);
	if (ok) {
		lv_metric_add(LV_M_SERVER_BYTES_SENT_TOTAL, 0, (int64_t)b->len);
		c->pool->bytes_in += b->len;
	}
	lv_buf_cleanup(b);
	if (!ok)
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
	return ok;
}

/* Makes sure the client's server has ps prepared, injecting a Parse (and an eviction) if not. */
static bool ensure_prepared(lv_client_t *c, lv_pstmt_t *ps, bool *was_there)
{
	lv_server_t *sv = c->server;
	lv_worker_t *w = c->conn.worker;
	*was_there = lv_pstmt_set_has(&sv->pstmts, ps);
	if (*was_there) {
		lv_metric_inc_l(LV_M_PREPARED_STATEMENTS_TOTAL, LV_ML_PREPARED_RESULT_HIT);
		return true;
	}
	lv_metric_inc_l(LV_M_PREPARED_STATEMENTS_TOTAL, LV_ML_PREPARED_RESULT_MISS);
	lv_buf_t b;
	lv_buf_init(&b);
	bool ok = true;
	int max = w->cfg->pool.max_prepared_statements;
	while (ok && max > 0 && sv->pstmts.n >= (size_t)max) {
		lv_pstmt_t *victim = lv_pstmt_set_lru(&sv->pstmts, ps);
		if (!victim)
			break;
		ok = lv_wire_write_close(&b, 'S', victim->name) &&
		     lv_respq_push(&sv->respq, PqMsg_Close, LV_RESP_SWALLOW, NULL);
		lv_metric_inc_l(LV_M_PREPARED_STATEMENTS_TOTAL, LV_ML_PREPARED_RESULT_EVICTION);
		lv_pstmt_set_del(&w->pstmts, &sv->pstmts, victim);
	}
	ok = ok && lv_wire_write_parse(&b, ps->name, ps->query, ps->n_oids, ps->oids) &&
	     lv_pstmt_set_add(&sv->pstmts, ps);
	return write_server(c, &b, ok);
}

/*
 * A statement marked levee:async on its way to a server (the deferral at the
 * start of a request did not take it): inside a transaction it is refused
 * the way PostgreSQL would refuse it, by the server failing the transaction
 * with 0A000; behind other requests still running it waits until the server
 * is idle, where the deferral decides. Returns TXN_FORWARD when it is not
 * marked (or should run), TXN_CONSUMED when refused, TXN_WAIT when it waits,
 * TXN_AT_HEAD when it must first reach the head of the input, TXN_CLOSED.
 */
static txn_result_t async_check(lv_client_t *c, uint8_t type, size_t off, size_t whole, bool txn)
{
	lv_sbuf_t *sb = &c->conn.sb;
	lv_server_t *sv = c->server;
	if (whole > LV_INSPECT_MAX || lv_sbuf_avail(sb) < off + whole)
		return TXN_FORWARD;
	const uint8_t *m = lv_sbuf_ptr(sb, off, whole);
	if (!m) {
		if (off > 0)
			return TXN_AT_HEAD;
		m = lv_sbuf_pullup(sb, whole);
		if (!m)
			return TXN_FORWARD;
	}
	const char *sql = NULL;
	size_t n = 0;
	lv_wire_parse_t p;
	if (type == PqMsg_Query && lv_wire_parse_query(m + 5, whole - 5, &sql, &n) != 0)
		sql = NULL;
	else if (type == PqMsg_Parse && lv_wire_parse_parse(m + 5, whole - 5, &p) == 0) {
		sql = p.query;
		n = p.query_len;
	}
	if (!sql || !lv_async_marked(sql, n))
		return TXN_FORWARD;
	if (off > 0)
		return TXN_AT_HEAD;
	if (sv->n_pending > 0) {
		c->async_hold = true; /* lv_client_server_ready() looks again */
		return TXN_WAIT;
	}
	if (sv->txn_status == 'I' || sv->unsynced)
		return TXN_FORWARD; /* the deferral had its say (a syntax error, say): the server answers */
	/* Consume the request (to its Query or Sync) and let the server refuse it. */
	size_t end;
	if (!request_len(sb, &end))
		return TXN_WAIT;
	lv_sbuf_skip(sb, end);
	lv_buf_t b;
	lv_buf_init(&b);
	if (!write_server(c, &b, lv_wire_write_query(&b, lv_async_refusal_query)))
		return TXN_CLOSED;
	if (txn && !lv_respq_push(&sv->respq, PqMsg_Query, LV_RESP_PASS, NULL))
		return TXN_CLOSED;
	if (sv->n_pending++ == 0)
		sv->request_start_us = lv_time_now_us();
	return TXN_CONSUMED;
}

/*
 * The cache's invalidation looks at every statement that may write: the whole
 * message msg[0..whole) of a Query or Parse, or only its first bytes when it
 * is too large to hold (then anything that may write counts as writing
 * everything).
 */
static void note_message(lv_client_t *c, uint8_t type, const uint8_t *msg, size_t have, size_t whole)
{
	if (!c->conn.worker->proxy->cache || have < 6)
		return;
	if (have < whole) {
		lv_cached_note_large(c, (const char *)msg + 5, have - 5);
		return;
	}
	const char *sql = NULL;
	size_t n = 0;
	lv_wire_parse_t p;
	if (type == PqMsg_Bind) {
		lv_wire_bind_t b;
		if (lv_wire_parse_bind(msg + 5, whole - 5, &b) == 0)
			lv_cached_note_bind(c, &b, NULL);
		return;
	}
	if (type == PqMsg_Close) {
		uint8_t kind;
		const char *name;
		if (lv_wire_parse_target(msg + 5, whole - 5, &kind, &name) == 0 && kind == 'S')
			lv_cached_note_close(c, name);
		return;
	}
	if (type == PqMsg_Query && lv_wire_parse_query(msg + 5, whole - 5, &sql, &n) == 0) {
		lv_cached_note_statement(c, sql, n);
	} else if (type == PqMsg_Parse && lv_wire_parse_parse(msg + 5, whole - 5, &p) == 0) {
		sql = p.query;
		n = p.query_len;
		lv_cached_note_parse(c, p.name, sql, n, p.n_param_types, p.param_types);
	}
	if (!sql)
		return;
	/* Session mode: settings Levee does not track would change results behind the cache's back,
	 * and SQL-level statement names share the namespace of the protocol's. */
	if (c->pool && c->pool->pool_mode != LV_POOL_TRANSACTION && may_touch_session(sql, n)) {
		c->cache_untrusted = true;
		size_t wl;
		const char *word = lv_sql_first_word(sql, n, &wl);
		if (word_is(word, wl, "prepare") || word_is(word, wl, "deallocate") || word_is(word, wl, "discard"))
			lv_cached_note_forget(c);
	}
}

/* note_message() for a message in the client's input at offset off, without moving it. */
static void note_input(lv_client_t *c, uint8_t type, size_t off, size_t whole)
{
	lv_sbuf_t *sb = &c->conn.sb;
	size_t avail = lv_sbuf_avail(sb) - off;
	const uint8_t *m = avail >= whole ? lv_sbuf_ptr(sb, off, whole) : NULL;
	if (m) {
		note_message(c, type, m, whole, whole);
		return;
	}
	uint8_t head[1024];
	size_t k = LV_MIN(avail, sizeof(head));
	if (lv_sbuf_peek(sb, off, head, k))
		note_message(c, type, head, k, whole);
}

/*
 * Transaction mode: a message at the head of the client's input that may
 * need rewriting (named prepared statements) or inspecting (session state).
 * Every message sent on gets its entry in the server's response queue.
 */
static txn_result_t txn_message(lv_client_t *c, uint8_t type, uint32_t len, size_t off)
{
	lv_server_t *sv = c->server;
	lv_worker_t *w = c->conn.worker;
	lv_sbuf_t *sb = &c->conn.sb;
	size_t whole = (size_t)len + 1;
	size_t avail = lv_sbuf_avail(sb);

	if (type == PqMsg_Bind || type == PqMsg_Describe || type == PqMsg_Close) {
		/* Names first: a Bind can be huge, and most name no prepared statement. */
		uint8_t head[5 + 2 * LV_NAME_LEN];
		size_t n = LV_MIN(whole, sizeof(head));
		if (avail < off + n)
			return TXN_WAIT;
		(void)lv_sbuf_peek(sb, off, head, n);
		if (type != PqMsg_Bind) {
			bool plain = n < 7 || head[5] != 'S' || head[6] == 0 ||
				     (type == PqMsg_Describe && (!memchr(head + 6, 0, n - 6) ||
								 !lv_pstmt_map_get(&c->pstmts, (const char *)head + 6)));
			if (plain)
				return lv_respq_push(&sv->respq, type, LV_RESP_PASS, NULL) ? TXN_FORWARD : TXN_CLOSED;
			if (off > 0)
				return TXN_AT_HEAD;
		} else {
			const uint8_t *portal_end = memchr(head + 5, 0, n - 5);
			const uint8_t *stmt = portal_end ? portal_end + 1 : NULL;
			bool unnamed_writes = stmt && stmt < head + n && *stmt == 0 &&
					      unnamed_may_write(c);
			if (!unnamed_writes &&
			    (!stmt || stmt >= head + n || *stmt == 0 || !memchr(stmt, 0, (size_t)(head + n - stmt)) ||
			     !lv_pstmt_map_get(&c->pstmts, (const char *)stmt))) {
				/* Unnamed, or a name this client never prepared: the server answers. */
				return lv_respq_push(&sv->respq, type, LV_RESP_PASS, NULL) ? TXN_FORWARD : TXN_CLOSED;
			}
			if (off > 0)
				return TXN_AT_HEAD;
		}
	}
	if ((type == PqMsg_Query || type == PqMsg_Parse) && len > LV_INSPECT_MAX) {
		/* Too big to look at: on as it is (it may stream through). */
		if (off == 0 || type == PqMsg_Query)
			note_input(c, type, off, whole);
		if (type == PqMsg_Parse && off > 0)
			return TXN_AT_HEAD;
		if (type == PqMsg_Query)
			return lv_respq_push(&sv->respq, type, LV_RESP_PASS, NULL) ? TXN_FORWARD : TXN_CLOSED;
	}
	if (avail < off + whole)
		return TXN_WAIT;
	const uint8_t *msg = lv_sbuf_ptr(sb, off, whole);
	if (!msg) {
		if (off > 0)
			return TXN_AT_HEAD;
		msg = lv_sbuf_pullup(sb, whole);
	}
	const uint8_t *body = msg + 5;
	size_t blen = len - 4;

	switch (type) {
	case PqMsg_Query: {
		const char *sql;
		size_t sql_len;
		if (lv_wire_parse_query(body, blen, &sql, &sql_len) != 0)
			break;
		if (off > 0 && may_touch_session(sql, sql_len))
			return TXN_AT_HEAD;
		lv_cached_note_statement(c, sql, sql_len);
		bool quiet = sv->n_pending == 0 && sv->respq.n == 0;
		if (inspect_statement(c, sql, sql_len, quiet, true)) {
			lv_sbuf_skip(sb, whole);
			lv_client_ready(c, sv->txn_status);
			return TXN_CONSUMED;
		}
		break;
	}
	case PqMsg_Parse: {
		lv_wire_parse_t p;
		if (lv_wire_parse_parse(body, blen, &p) != 0)
			break;
		if (p.name_len > 0 && off > 0)
			return TXN_AT_HEAD;
		(void)inspect_statement(c, p.query, p.query_len, false, p.name_len == 0);
		lv_cached_note_parse(c, p.name, p.query, p.query_len, p.n_param_types, p.param_types);
		if (p.name_len == 0)
			break;
		if (lv_pstmt_map_get(&c->pstmts, p.name)) {
			/* As PostgreSQL: an error, and nothing more until Sync. */
			char text[LV_NAME_LEN + 64];
			snprintf(text, sizeof(text), "prepared statement \"%.63s\" already exists", p.name);
			if (!lv_respq_push_text(&sv->respq, type, LV_RESP_ERROR, NULL, "42P05", text))
				return TXN_CLOSED;
			c->skip_to_sync = true;
			lv_sbuf_skip(sb, whole);
			return TXN_CONSUMED;
		}
		lv_pstmt_t *ps = lv_pstmt_get(&w->pstmts, p.query, p.query_len, p.param_types, p.n_param_types);
		if (!ps || !lv_pstmt_map_set(&w->pstmts, &c->pstmts, p.name, ps)) {
			lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
			return TXN_CLOSED;
		}
		bool there;
		if (!ensure_prepared(c, ps, &there))
			return TXN_CLOSED;
		/* Levee answers ParseComplete itself if the server had it, else the
		 * server's answer to the injected Parse is the client's. */
		if (!lv_respq_push_text(&sv->respq, type, there ? LV_RESP_SYNTH : LV_RESP_PASS, there ? NULL : ps, NULL,
					p.name)) {
			lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
			return TXN_CLOSED;
		}
		sv->unsynced = true;
		lv_sbuf_skip(sb, whole);
		return TXN_CONSUMED;
	}
	case PqMsg_Bind: {
		lv_wire_bind_t b;
		if (lv_wire_parse_bind(body, blen, &b) != 0)
			break;
		lv_pstmt_t *ps = lv_pstmt_map_get(&c->pstmts, b.stmt);
		if (!ps) {
			if (!b.stmt[0])
				lv_cached_note_bind(c, &b, NULL); /* the unnamed statement, if it writes */
			break;
		}
		lv_cached_note_bind(c, &b, ps);
		inspect_bound(c, ps);
		bool there;
		if (!ensure_prepared(c, ps, &there))
			return TXN_CLOSED;
		lv_buf_t out;
		lv_buf_init(&out);
		if (!write_server(c, &out, lv_wire_write_bind_renamed(&out, &b, ps->name)) ||
		    !lv_respq_push(&sv->respq, type, LV_RESP_PASS, NULL))
			return TXN_CLOSED;
		sv->unsynced = true;
		lv_sbuf_skip(sb, whole);
		return TXN_CONSUMED;
	}
	case PqMsg_Describe:
	case PqMsg_Close: {
		uint8_t kind;
		const char *name;
		if (lv_wire_parse_target(body, blen, &kind, &name) != 0 || kind != 'S' || !name[0])
			break;
		if (type == PqMsg_Close) {
			/* The server keeps it for other clients; the client's name goes. */
			lv_pstmt_map_del(&w->pstmts, &c->pstmts, name);
			if (!lv_respq_push(&sv->respq, type, LV_RESP_SYNTH, NULL)) {
				lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
				return TXN_CLOSED;
			}
			sv->unsynced = true;
			lv_sbuf_skip(sb, whole);
			return TXN_CONSUMED;
		}
		lv_pstmt_t *ps = lv_pstmt_map_get(&c->pstmts, name);
		if (!ps)
			break;
		bool there;
		if (!ensure_prepared(c, ps, &there))
			return TXN_CLOSED;
		lv_buf_t out;
		lv_buf_init(&out);
		if (!write_server(c, &out, lv_wire_write_describe(&out, 'S', ps->name)) ||
		    !lv_respq_push(&sv->respq, type, LV_RESP_PASS, NULL))
			return TXN_CLOSED;
		sv->unsynced = true;
		lv_sbuf_skip(sb, whole);
		return TXN_CONSUMED;
	}
	default:
		break;
	}
	return lv_respq_push(&sv->respq, type, LV_RESP_PASS, NULL) ? TXN_FORWARD : TXN_CLOSED;
}

/*
 * ACTIVE: frames what the client sent and forwards it to the server in
 * batches, noting what the server will answer (a ReadyForQuery per Query,
 * Sync or FunctionCall) so that a released server is known to be clean. In
 * transaction mode, messages that may need rewriting or inspection are
 * handled one at a time at the head of the input.
 */
static void forward_to_server(lv_client_t *c)
{
	lv_server_t *sv = c->server;
	lv_sbuf_t *sb = &c->conn.sb;
	size_t max_len = (size_t)c->conn.worker->cfg->levee.max_packet_size;
	bool txn = c->pool->pool_mode == LV_POOL_TRANSACTION;

	if (c->fill && lv_cached_refresh_request(c))
		return; /* the cache's refresh runs on this server first */
	if (c->async_op)
		return; /* its deferred write is answered first */
	if (!txn && c->logged_in && !c->fill && c->conn.worker->proxy->cache && !session_cache(c))
		return;
	c->last_active_us = lv_time_now_us();
	for (;;) {
		size_t avail = lv_sbuf_avail(sb);
		size_t batch = 0;
		if (c->fwd_left) {
			batch = c->fwd_left < avail ? (size_t)c->fwd_left : avail;
			c->fwd_left -= batch;
		}
		bool terminate = false, again = false, wait = false;
		while (c->fwd_left == 0 && batch + 5 <= avail) {
			uint8_t hdr[5];
			if (!lv_sbuf_peek(sb, batch, hdr, 5))
				break;
			uint8_t type;
			uint32_t len;
			int rc = lv_wire_read_header(hdr, 5, max_len, &type, &len);
			if (rc != 0 || !is_frontend_type(type)) {
				if (batch > 0 && lv_sbuf_forward(sb, &sv->conn.sb, batch))
					lv_metric_add(LV_M_CLIENT_BYTES_RECEIVED_TOTAL, 0, (int64_t)batch);
				lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CLIENT_PROTOCOL);
				if (rc == LV_ETOOBIG)
					lv_client_close(c, LV_SQLSTATE_PROGRAM_LIMIT,
							"levee: message of %u bytes exceeds max_packet_size", len);
				else if (rc != 0)
					lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION,
							"levee: invalid message length %u", len);
				else
					lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION,
							"levee: invalid frontend message type %d", type);
				return;
			}
			if (txn && sv->chg_gate && type != PqMsg_CopyData &&
			    type != PqMsg_CopyDone && type != PqMsg_CopyFail) {
				/* Behind a request that changed settings (its COPY data
				 * aside): they are settled first. */
				wait = true;
				break;
			}
			if (type == PqMsg_Terminate) {
				terminate = true;
				break;
			}
			if (txn && c->skip_to_sync && type != PqMsg_Sync) {
				/* After an error Levee raised itself: skipped, as the server would. */
				if (batch > 0) {
					again = true;
					break;
				}
				if (avail < (size_t)len + 1) {
					wait = true;
					break;
				}
				lv_sbuf_skip(sb, (size_t)len + 1);
				again = true;
				avail = lv_sbuf_avail(sb);
				break;
			}
			if (type == PqMsg_Sync)
				c->skip_to_sync = false;
			if (type == PqMsg_Query || type == PqMsg_Parse) {
				txn_result_t ar = async_check(c, type, batch, (size_t)len + 1, txn);
				if (ar == TXN_CLOSED) {
					if (c->state != LV_CLIENT_CLOSING)
						lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
					return;
				}
				if (ar == TXN_AT_HEAD || ar == TXN_CONSUMED) {
					again = true;
					avail = lv_sbuf_avail(sb);
					break;
				}
				if (ar == TXN_WAIT) {
					wait = true;
					break;
				}
			}
			if (txn && !sv->unsynced && sv->n_pending > 0 &&
			    (type == PqMsg_Query || type == PqMsg_Parse || type == PqMsg_Bind) &&
			    c->pool != primary_pool(c)) {
				/* A new request queued behind others on a replica: it stays only if a
				 * replica may run it; else it waits for them and is routed afresh. */
				if (batch > 0) {
					again = true;
					break;
				}
				size_t hl;
				bool hw;
				const char *hs = first_statement(c, &hl, &hw);
				if (hw) {
					wait = true;
					break;
				}
				bool known = hs || type != PqMsg_Bind; /* an unnamed statement's Bind stays */
				lv_worker_t *w = c->conn.worker;
				group_verdict_t g = known && hs && replica_may_run(w, hs, hl)
							    ? group_route(c, w->sql_info)
							    : GROUP_PRIMARY;
				if (known && g != GROUP_REPLICA) {
					/* Either way the server's earlier requests finish first. */
					c->route_hold = g == GROUP_PRIMARY; /* lv_client_server_ready() takes it on */
					wait = true;
					break;
				}
			}
			if (txn) {
				bool inspect = type == PqMsg_Query || type == PqMsg_Parse || type == PqMsg_Bind ||
					       type == PqMsg_Describe || type == PqMsg_Close;
				txn_result_t r = TXN_FORWARD;
				if (inspect)
					r = txn_message(c, type, len, batch);
				if (r == TXN_AT_HEAD) {
					again = true;
					break;
				}
				else if ((type == PqMsg_Execute || type == PqMsg_Sync || type == PqMsg_FunctionCall) &&
					 !lv_respq_push(&sv->respq, type, LV_RESP_PASS, NULL))
					r = TXN_CLOSED;
				if (r == TXN_CLOSED) {
					if (c->state != LV_CLIENT_CLOSING)
						lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
					return;
				}
				if (r == TXN_WAIT) {
					wait = true;
					break;
				}
				if (r == TXN_CONSUMED) {
					again = true;
					avail = lv_sbuf_avail(sb);
					break;
				}
			}
			if (!txn && (type == PqMsg_Query || type == PqMsg_Parse ||
				     ((type == PqMsg_Bind || type == PqMsg_Close) &&
				      (unnamed_may_write(c) || c->pstmts.n || c->named_unsure))))
				note_input(c, type, batch, (size_t)len + 1);
			switch (type) {
			case PqMsg_Query:
			case PqMsg_FunctionCall:
			case PqMsg_Sync:
				if (sv->n_pending++ == 0)
					sv->request_start_us = lv_time_now_us();
				if (type == PqMsg_Sync)
					sv->unsynced = false;
				break;
			case PqMsg_Parse:
			case PqMsg_Bind:
			case PqMsg_Execute:
			case PqMsg_Describe:
			case PqMsg_Close:
			case PqMsg_Flush:
				sv->unsynced = true;
				break;
			default:
				break;
			}
			size_t whole = (size_t)len + 1;
			if (batch + whole <= avail) {
				batch += whole;
			} else {
				c->fwd_left = whole - (avail - batch);
				batch = avail;
			}
			/* The end of a request that changes settings: what follows waits. */
			if (txn && lv_server_changes_settings(sv) && (type == PqMsg_Query || type == PqMsg_Sync))
				sv->chg_gate = true;
		}
		if (batch > 0) {
			if (!lv_sbuf_forward(sb, &sv->conn.sb, batch)) {
				lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
				return;
			}
			lv_metric_add(LV_M_CLIENT_BYTES_RECEIVED_TOTAL, 0, (int64_t)batch);
			lv_metric_add(LV_M_SERVER_BYTES_SENT_TOTAL, 0, (int64_t)batch);
			c->pool->bytes_in += batch;
		}
		if (c->state != LV_CLIENT_ACTIVE || !c->server)
			return;
		if (txn && !lv_server_emit_synth(sv))
			return;
		if (terminate) {
			lv_sbuf_skip(sb, 5);
			lv_client_drop(c, "client sent Terminate");
			return;
		}
		if (lv_sbuf_pending_out(&sv->conn.sb) > LV_BACKPRESSURE_HIGH) {
			/* The server reads slower than the client writes: wait for it. */
			lv_sbuf_pause(sb);
			lv_sbuf_watch_drain(&sv->conn.sb, LV_BACKPRESSURE_LOW);
			return;
		}
		if (wait || (!again && (batch == 0 || lv_sbuf_avail(sb) == 0)))
			return;
	}
}

void lv_client_resume_admin(lv_client_t *c)
{
	if (c->state == LV_CLIENT_ADMIN && lv_sbuf_avail(&c->conn.sb) > 0)
		lv_sbuf_kick(&c->conn.sb);
}

void lv_client_resume(lv_client_t *c)
{
	if (c->state != LV_CLIENT_ACTIVE)
		return;
	lv_sbuf_resume(&c->conn.sb);
	if (lv_sbuf_avail(&c->conn.sb) > 0)
		forward_to_server(c);
}

/*
 * IDLE: true when a request starts at the head of c's input; a Terminate or
 * a message a client may not send ends the session here instead.
 */
static bool idle_head(lv_client_t *c)
{
	uint8_t hdr[5];
	if (!lv_sbuf_peek(&c->conn.sb, 0, hdr, 5))
		return false;
	if (hdr[0] == PqMsg_Terminate) {
		lv_client_drop(c, "client sent Terminate");
		return false;
	}
	if (!is_frontend_type(hdr[0])) {
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CLIENT_PROTOCOL);
		lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION, "levee: invalid frontend message type %d", hdr[0]);
		return false;
	}
	return true;
}

/* IDLE (transaction mode): the first message of a new request needs a server. */
static void handle_idle_input(lv_client_t *c)
{
	if (idle_head(c))
		want_server(c);
}

/* LOGIN: the startup packet, then the auth exchange. */
static void handle_login_input(lv_client_t *c)
{
	lv_sbuf_t *sb = &c->conn.sb;
	while (c->state == LV_CLIENT_LOGIN && lv_sbuf_avail(sb) > 0) {
		if (c->auth_phase == LV_AUTHP_NONE) {
			uint8_t hdr[4];
			if (!lv_sbuf_peek(sb, 0, hdr, 4))
				return;
			uint32_t len;
			int rc = lv_wire_startup_len(hdr, 4, &len);
			if (rc != 0 || len < 8 || len > LV_WIRE_MAX_STARTUP_LEN) {
				lv_metric_inc_l(LV_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, LV_ML_REFUSE_REASON_PROTOCOL);
				lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CLIENT_PROTOCOL);
				lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION,
						"levee: invalid startup packet length %u", lv_get_u32(hdr));
				return;
			}
			const uint8_t *pkt = lv_sbuf_pullup(sb, len);
			if (!pkt)
				return;
			handle_startup(c, pkt, len);
			continue;
		}
		/* Auth messages: 'p' with a bounded length. */
		uint8_t hdr[5];
		if (!lv_sbuf_peek(sb, 0, hdr, 5))
			return;
		uint8_t type;
		uint32_t len;
		int rc = lv_wire_read_header(hdr, 5, 65536, &type, &len);
		if (rc != 0 || type != PqMsg_PasswordMessage) {
			lv_metric_inc_l(LV_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, LV_ML_REFUSE_REASON_PROTOCOL);
			lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CLIENT_PROTOCOL);
			if (type == PqMsg_Terminate && rc == 0) {
				lv_client_drop(c, "client sent Terminate during login");
				return;
			}
			lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION,
					"levee: expected a password message, got message type %d", type);
			return;
		}
		if (lv_sbuf_avail(sb) < (size_t)len + 1)
			return;
		/* Copy the message out first: authentication may attach a server and
		 * start forwarding what follows it in the input buffer. */
		size_t n = len - 4;
		uint8_t *body = lv_malloc(n);
		if (!body || !lv_sbuf_read(sb, hdr, 5) || !lv_sbuf_read(sb, body, n)) {
			lv_free(body);
			lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
			return;
		}
		lv_auth_input(c, body, n);
		lv_free(body);
	}
}

/* ADMIN: simple queries for the console, Terminate, nothing else. */
static void handle_admin_input(lv_client_t *c)
{
	lv_sbuf_t *sb = &c->conn.sb;
	while (c->state == LV_CLIENT_ADMIN && c->n_admin_pending == 0) {
		uint8_t hdr[5];
		if (!lv_sbuf_peek(sb, 0, hdr, 5))
			return;
		uint8_t type;
		uint32_t len;
		int rc = lv_wire_read_header(hdr, 5, 1024 * 1024, &type, &len);
		if (rc != 0) {
			lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION, "levee: invalid message length %u", len);
			return;
		}
		const uint8_t *msg = lv_sbuf_pullup(sb, (size_t)len + 1);
		if (!msg)
			return;
		if (type == PqMsg_Terminate) {
			lv_client_drop(c, "client sent Terminate");
			return;
		}
		if (type != PqMsg_Query) {
			lv_sbuf_skip(sb, (size_t)len + 1);
			if (type == PqMsg_Sync) {
				lv_client_ready(c, 'I');
				continue;
			}
			if (!is_frontend_type(type)) {
				lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION,
						"levee: invalid frontend message type %d", type);
				return;
			}
			lv_client_error(c, LV_SQLSTATE_FEATURE_NOT_SUPPORTED,
					"levee: the admin console supports the simple query protocol only");
			continue;
		}
		/* The text without its NUL; copy it so the buffer can move on. */
		size_t n = len - 4;
		char *sql = lv_strndup((const char *)msg + 5, n ? n - 1 : 0);
		lv_sbuf_skip(sb, (size_t)len + 1);
		if (!sql) {
			lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
			return;
		}
		lv_metric_inc(LV_M_QUERIES_TOTAL);
		if (admin_handler)
			admin_handler(c, sql, strlen(sql));
		else
			lv_client_error(c, LV_SQLSTATE_FEATURE_NOT_SUPPORTED, "levee: no admin console");
		lv_free(sql);
	}
}

static void client_sbuf_cb(lv_sbuf_t *sb, lv_sbuf_event_t ev, void *arg)
{
	lv_client_t *c = arg;
	if (ev == LV_SBUF_EV_READ) {
		switch (c->state) {
		case LV_CLIENT_LOGIN:
			handle_login_input(c);
			break;
		case LV_CLIENT_ACTIVE:
			forward_to_server(c);
			break;
		case LV_CLIENT_ADMIN:
			handle_admin_input(c);
			break;
		case LV_CLIENT_IDLE:
			handle_idle_input(c);
			break;
		case LV_CLIENT_WAITING:
			/* Kept until a server is attached; the read watermark bounds it. */
			if (lv_sbuf_avail(sb) > LV_BACKPRESSURE_HIGH)
				lv_sbuf_pause(sb);
			break;
		case LV_CLIENT_CLOSING:
		case LV_CLIENT__NSTATES:
			lv_sbuf_skip(sb, lv_sbuf_avail(sb));
			break;
		}
		return;
	}
	if (ev == LV_SBUF_EV_CONNECTED) {
		/* TLS handshake finished: the startup packet follows. */
		return;
	}
	if (ev == LV_SBUF_EV_DRAINED) {
		/* Our output to the client drained: read from its server again. */
		if (c->server_paused && c->server) {
			c->server_paused = false;
			lv_sbuf_resume(&c->server->conn.sb);
			if (lv_sbuf_avail(&c->server->conn.sb) > 0)
				lv_server_flush_to_client(c->server);
		}
		return;
	}
	/* EOF or error. */
	if (c->state == LV_CLIENT_LOGIN && ev == LV_SBUF_EV_ERROR && c->is_tls)
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_TLS);
	char buf[128];
	lv_client_drop(c, ev == LV_SBUF_EV_EOF ? "client closed the connection" : lv_sbuf_error(sb, buf, sizeof(buf)));
}

/* --------------------------------------------------- events from the server */

void lv_client_server_ready(lv_client_t *c)
{
	lv_server_t *sv = c->server;
	if (!sv || c->state != LV_CLIENT_ACTIVE || sv->n_swallow > 0)
		return;
	c->last_active_us = lv_time_now_us();
	if (!c->logged_in && !finish_login(c, sv))
		return;
	if (c->async_hold && sv->n_pending == 0) {
		/* A statement marked async waited for the server to be idle: look at it again. */
		c->async_hold = false;
		if (lv_sbuf_avail(&c->conn.sb) > 0)
			lv_sbuf_kick(&c->conn.sb);
	}
	if (c->fill && sv->n_pending == 0) {
		bool refresh = lv_cached_refresh_request(c) != NULL;
		lv_cached_fill_done(c);
		if (refresh && c->pool->pool_mode != LV_POOL_TRANSACTION && lv_sbuf_avail(&c->conn.sb) > 0)
			lv_sbuf_kick(&c->conn.sb); /* what the client sent during the refresh */
	}
	if (c->pool->pool_mode != LV_POOL_TRANSACTION)
		return;
	/* A transaction ended: the server goes back unless something holds it. */
	if (sv->n_pending || sv->unsynced || sv->in_copy || sv->fwd_left || c->fwd_left || sv->txn_status != 'I' ||
	    c->pin_mask || sv->respq.n > 0) {
		if (c->route_hold && sv->n_pending == 0) {
			/* The held request is part of what keeps this server (an open
			 * transaction): it runs here, as it would on a direct connection. */
			c->route_hold = false;
			if (lv_sbuf_avail(&c->conn.sb) > 0)
				lv_sbuf_kick(&c->conn.sb);
		}
		return;
	}
	c->route_hold = false; /* routed afresh below, by want_server() */
	lv_pool_t *pool = c->pool;
	/* Read-your-writes: a transaction that may have written ends now. */
	if (c->route_reason >= 0 && c->route_reason != LV_ROUTE_READ && c->route_reason != LV_ROUTE_TXN_READ_ONLY &&
	    c->route_reason != LV_ROUTE_NO_REPLICA && c->route_reason != LV_ROUTE_READ_YOUR_WRITES &&
	    c->route_reason != LV_ROUTE_HINT_REPLICA)
		c->ryw_since = lv_time_now_us();
	c->route_reason = -1;
	c->server = NULL;
	sv->client = NULL;
	sv->settings_hash = desired_hash(c);
	sv->settings_known = true;
	sv->last_used_us = lv_time_now_us();
	lv_server_set_state(sv, LV_SERVER_IDLE);
	lv_client_set_state(c, LV_CLIENT_IDLE);
	if (lv_sbuf_avail(&c->conn.sb) > 0)
		want_server(c);
	if (!in_assign)
		lv_pool_assign(pool);
}

void lv_client_server_lost(lv_client_t *c, const char *sqlstate, const char *msg)
{
	if (c->state == LV_CLIENT_CLOSING)
		return;
	if (sqlstate)
		lv_client_close(c, sqlstate, "%s", msg);
	else
		lv_client_drop(c, msg);
}
