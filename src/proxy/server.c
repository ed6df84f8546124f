/* SPDX-License-Identifier: ISC */
/*
 * Server connections: Levee as a PostgreSQL client. Owns lv_server_t objects
 * (from connect until the loop iteration after lv_server_close) and the small
 * one-shot connections that carry cancel requests.
 *
 *   CONNECTING -- TCP connect, optional SSLRequest and TLS handshake
 *   LOGIN      -- StartupMessage with the client's parameters; cleartext, md5
 *                 or SCRAM-SHA-256 with the server password (or with the SCRAM
 *                 keys a client proved); ParameterStatus and BackendKeyData are
 *                 recorded until the first ReadyForQuery
 *   IDLE       -- in its pool, ready for a client with the same parameters
 *   ACTIVE     -- messages to the client are framed and forwarded in batches;
 *                 ReadyForQuery, ParameterStatus and COPY are noted on the way
 *   TESTING    -- after a client left: ROLLBACK if needed, then the reset query
 *
 * A server whose state cannot be known to be clean (a client left in the
 * middle of a result, a COPY or an unsynced extended query) is closed rather
 * than reused.
 */
#include "proxy/server.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "proxy/cached.h"
#include "proxy/client.h"
#include "proxy/params.h"
#include "proxy/pool.h"
#include "proxy/worker.h"
#include "wire/read.h"
#include "wire/scram.h"
#include "wire/sqlstate.h"
#include "wire/wire.h"
#include "wire/write.h"

#include <sys/socket.h>

/* Largest message Levee reads whole from a server outside of forwarding. */
#define LV_SERVER_MAX_CONTROL_MSG (64 * 1024)

static const char *const state_names[] = {
#define XX(name, text) text,
	LV_SERVER_STATE_MAP(XX)
#undef XX
};

static const bool allowed[LV_SERVER__NSTATES][LV_SERVER__NSTATES] = {
	[LV_SERVER_CONNECTING] = {[LV_SERVER_LOGIN] = true, [LV_SERVER_CLOSING] = true},
	[LV_SERVER_LOGIN] = {[LV_SERVER_IDLE] = true, [LV_SERVER_CLOSING] = true},
	[LV_SERVER_IDLE] = {[LV_SERVER_ACTIVE] = true, [LV_SERVER_CLOSING] = true},
	[LV_SERVER_ACTIVE] = {[LV_SERVER_TESTING] = true, [LV_SERVER_IDLE] = true, [LV_SERVER_CLOSING] = true},
	[LV_SERVER_TESTING] = {[LV_SERVER_IDLE] = true, [LV_SERVER_CLOSING] = true},
	[LV_SERVER_CLOSING] = {false},
};

const char *lv_server_state_name(lv_server_state_t s)
{
	return (unsigned)s < LV_SERVER__NSTATES ? state_names[s] : "unknown";
}

static lv_clist_t *state_list(lv_server_t *sv, lv_server_state_t s)
{
	lv_pool_t *p = sv->pool;
	switch (s) {
	case LV_SERVER_CONNECTING:
	case LV_SERVER_LOGIN:
		return &p->sv_login;
	case LV_SERVER_IDLE:
		return &p->sv_idle;
	case LV_SERVER_ACTIVE:
		return &p->sv_active;
	case LV_SERVER_TESTING:
		return &p->sv_testing;
	case LV_SERVER_CLOSING:
	case LV_SERVER__NSTATES:
		break;
	}
	return NULL;
}

void lv_server_set_state(lv_server_t *sv, lv_server_state_t s)
{
	lv_server_state_t old = sv->state;
	if (old == s)
		return;
	if (!allowed[old][s]) {
		lv_clog_error(sv, "bug: server state %s -> %s not allowed", state_names[old], state_names[s]);
		LV_ASSERT(!"server state transition");
		s = LV_SERVER_CLOSING;
	}
	bool was_login = old == LV_SERVER_CONNECTING || old == LV_SERVER_LOGIN;
	if (was_login && s != LV_SERVER_LOGIN && sv->counts_connecting) {
		sv->counts_connecting = false;
		__atomic_sub_fetch(&sv->pool->db_shared->n_connecting, 1, __ATOMIC_ACQ_REL);
	}
	lv_clist_t *from = state_list(sv, old);
	if (from)
		lv_clist_remove(from, &sv->conn.node);
	if (old != LV_SERVER_CLOSING)
		lv_metric_add(LV_M_SERVER_CONNECTIONS, (unsigned)old, -1);
	if (old != LV_SERVER_CLOSING && s == LV_SERVER_CLOSING)
		lv_metric_add(LV_M_SERVER_CONNECTIONS_OPEN, 0, -1);
	/* Load on the backend, for least-outstanding replica choice. */
	if (sv->pool->backend && (old == LV_SERVER_ACTIVE) != (s == LV_SERVER_ACTIVE))
		__atomic_add_fetch(&sv->pool->backend->outstanding, s == LV_SERVER_ACTIVE ? 1 : -1, __ATOMIC_RELAXED);
	sv->state = s;
	lv_clist_t *to = state_list(sv, s);
	if (to) {
		/* Idle servers: most recently used first, so the cold ones age out. */
		if (s == LV_SERVER_IDLE)
			lv_clist_prepend(to, &sv->conn.node);
		else
			lv_clist_append(to, &sv->conn.node);
	}
	if (s != LV_SERVER_CLOSING)
		lv_metric_add(LV_M_SERVER_CONNECTIONS, (unsigned)s, 1);
	lv_clog_trace(sv, "state %s -> %s", state_names[old], state_names[s]);
}

/* ---------------------------------------------------------------- lifetime */

static void server_sbuf_cb(lv_sbuf_t *sb, lv_sbuf_event_t ev, void *arg);

static void server_free(lv_deferred_t *d)
{
	lv_server_t *sv = lv_container_of(d, lv_server_t, conn.reap);
	lv_sbuf_cleanup(&sv->conn.sb);
	lv_buf_cleanup(&sv->params);
	lv_buf_cleanup(&sv->status);
	lv_buf_cleanup(&sv->applied);
	lv_buf_cleanup(&sv->chg_sets);
	lv_buf_cleanup(&sv->chg_resets);
	lv_respq_cleanup(&sv->conn.worker->pstmts, &sv->respq);
	lv_pstmt_set_clear(&sv->conn.worker->pstmts, &sv->pstmts);
	if (sv->scram) {
		lv_scram_client_cleanup(sv->scram);
		lv_free(sv->scram);
	}
	lv_free(sv);
}

lv_server_t *lv_server_connect(lv_pool_t *pool, const lv_buf_t *params, uint64_t params_hash)
{
	lv_worker_t *w = pool->worker;
	const lv_cfg_db_t *db = pool->db;
	lv_server_t *sv = lv_calloc(1, sizeof(*sv));
	if (!sv)
		return NULL;
	sv->conn.kind = LV_CONN_SERVER;
	sv->conn.worker = w;
	sv->conn.id = lv_worker_next_id(w);
	sv->conn.connect_time = sv->created_us = sv->last_used_us = lv_time_now_us();
	sv->conn.wall_connect_time = lv_time_wall_us();
	sv->conn.action = "connecting";
	sv->pool = pool;
	sv->txn_status = 'I';
	lv_list_init(&sv->conn.node);
	lv_buf_init(&sv->params);
	lv_buf_init(&sv->status);
	lv_buf_init(&sv->applied);
	lv_buf_init(&sv->chg_sets);
	lv_buf_init(&sv->chg_resets);
	if (params->len && !lv_buf_append(&sv->params, params->data, params->len)) {
		lv_free(sv);
		return NULL;
	}
	sv->params_hash = params_hash;
	const lv_cfg_host_t *host = lv_pool_host(pool);
	if (!host) {
		lv_buf_cleanup(&sv->params);
		lv_free(sv);
		return NULL;
	}
	(void)db;
	snprintf(sv->conn.addr, sizeof(sv->conn.addr), "%.*s", (int)sizeof(sv->conn.addr) - 1, host->host);
	sv->conn.port = host->port;

	lv_err_t err = {0};
	if (lv_addr_resolve(host->host, host->port, &sv->addr, &err) != 0 ||
	    !lv_sbuf_connect(&sv->conn.sb, lv_loop_base(w->loop), &sv->addr, server_sbuf_cb, sv, &err)) {
		snprintf(pool->last_error, sizeof(pool->last_error), "levee: could not connect to server %.64s:%d: %.120s",
			 host->host, host->port, err.msg);
		lv_buf_cleanup(&sv->params);
		lv_buf_cleanup(&sv->status);
		lv_free(sv);
		return NULL;
	}
	sv->state = LV_SERVER_CONNECTING;
	lv_clist_append(&pool->sv_login, &sv->conn.node);
	lv_metric_add(LV_M_SERVER_CONNECTIONS, LV_SERVER_CONNECTING, 1);
	lv_metric_add(LV_M_SERVER_CONNECTIONS_OPEN, 0, 1);
	lv_clog_debug(sv, "connecting");
	return sv;
}

/*
 * Why a connect or login failed, for the pool: it backs off and fails the
 * clients that were waiting for this server when there is no other one.
 */
static void login_failed(lv_server_t *sv, const char *sqlstate, const char *fmt, ...) LV_PRINTF(3, 4);

/* The end: the slot goes back to the pool and the object is freed after this iteration. */
static void server_gone(lv_server_t *sv)
{
	if (sv->lingering) {
		lv_clist_remove(&sv->conn.worker->closing_servers, &sv->conn.node);
		sv->lingering = false;
	}
	lv_sbuf_pause(&sv->conn.sb);
	sv->conn.reap.fn = server_free;
	lv_loop_defer(sv->conn.worker->loop, &sv->conn.reap);
	lv_pool_put_slot(sv->pool);
}

static void closing_cb(lv_sbuf_t *sb, lv_sbuf_event_t ev, void *arg)
{
	lv_server_t *sv = arg;
	if (ev == LV_SBUF_EV_READ) {
		lv_sbuf_skip(sb, lv_sbuf_avail(sb));
		return;
	}
	if (ev == LV_SBUF_EV_EOF || ev == LV_SBUF_EV_ERROR)
		server_gone(sv);
}

/*
 * A logged-in server keeps its slot until PostgreSQL has closed the
 * connection (its backend is gone), at most a second: otherwise a new
 * connection of the same pool could briefly make PostgreSQL count
 * pool_size + 1 backends.
 */
static void finish_close(lv_server_t *sv)
{
	lv_cached_server_gone(sv); /* a cache refresh it ran ends unstored */
	lv_server_state_t was = sv->state;
	lv_server_set_state(sv, LV_SERVER_CLOSING);
	lv_sbuf_t *sb = &sv->conn.sb;
	/* Only a server told to Terminate hangs up promptly; one busy with a
	 * request is cut off at once, which stops its backend. */
	bool polite = was == LV_SERVER_IDLE || was == LV_SERVER_TESTING || was == LV_SERVER_LOGIN;
	if (!polite || sb->is_tls || sb->fd < 0 || shutdown(sb->fd, SHUT_WR) != 0) {
		server_gone(sv);
		return;
	}
	sb->cb = closing_cb;
	sv->lingering = true;
	sv->closing_since_us = lv_time_now_us();
	lv_clist_append(&sv->conn.worker->closing_servers, &sv->conn.node);
}

void lv_server_reap_closing(lv_worker_t *w, lv_usec_t before)
{
	lv_list_t *pos, *tmp;
	lv_list_for_each_safe(pos, tmp, &w->closing_servers.head)
	{
		lv_server_t *sv = lv_container_of(pos, lv_server_t, conn.node);
		if (sv->closing_since_us <= before)
			server_gone(sv);
	}
}

void lv_server_close(lv_server_t *sv, const char *reason)
{
	if (sv->state == LV_SERVER_CLOSING)
		return;
	lv_clog_debug(sv, "closing because: %s", reason);
	if (sv->client) {
		lv_client_t *c = sv->client;
		sv->client = NULL;
		c->server = NULL;
		lv_client_server_lost(c, LV_SQLSTATE_CONNECTION_FAILURE, reason);
	}
	if (sv->state == LV_SERVER_IDLE || sv->state == LV_SERVER_TESTING) {
		/* A polite goodbye lets PostgreSQL log a normal disconnection. */
		static const uint8_t x[5] = {PqMsg_Terminate, 0, 0, 0, 4};
		if (!sv->conn.sb.is_tls && lv_sbuf_pending_out(&sv->conn.sb) == 0 &&
		    send(sv->conn.sb.fd, x, sizeof(x), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			lv_clog_debug(sv, "could not send Terminate: %s", strerror(errno));
	}
	finish_close(sv);
}

static void login_failed(lv_server_t *sv, const char *sqlstate, const char *fmt, ...)
{
	lv_pool_t *pool = sv->pool;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pool->last_error, sizeof(pool->last_error), fmt, ap);
	va_end(ap);
	snprintf(pool->last_sqlstate, sizeof(pool->last_sqlstate), "%s", sqlstate);
	lv_clog_warn(sv, "%s", pool->last_error);
	finish_close(sv);
	lv_pool_connect_failed(pool);
}

void lv_server_timeout(lv_server_t *sv)
{
	login_failed(sv, LV_SQLSTATE_CONNECTION_FAILURE, "levee: could not connect to server %s:%d: timed out after %lld ms",
		     sv->conn.addr, sv->conn.port, (long long)sv->conn.worker->cfg->pool.server_connect_timeout_ms);
}

/* -------------------------------------------------------------------- login */

static const char *cfg_password(lv_server_t *sv, bool *is_md5)
{
	lv_pool_t *pool = sv->pool;
	const lv_cfg_db_t *db = pool->db;
	*is_md5 = false;
	if (db->user[0] && db->password)
		return db->password;
	const char *user = db->user[0] ? db->user : pool->user;
	const lv_auth_entry_t *e = lv_config_find_auth(sv->conn.worker->cfg, user);
	if (!e)
		return NULL;
	if (e->kind == LV_SECRET_PLAIN)
		return e->secret;
	if (e->kind == LV_SECRET_MD5) {
		*is_md5 = true;
		return e->secret;
	}
	return NULL;
}

static const char *server_user(const lv_server_t *sv)
{
	return sv->pool->db->user[0] ? sv->pool->db->user : sv->pool->user;
}

static bool send_startup(lv_server_t *sv)
{
	const char *pairs[2 * 64 + 5];
	size_t n = 0;
	pairs[n++] = "user";
	pairs[n++] = server_user(sv);
	pairs[n++] = "database";
	pairs[n++] = sv->pool->db->dbname;
	const char *p = (const char *)sv->params.data;
	const char *end = p + sv->params.len;
	while (p < end && n < LV_ARRAY_LEN(pairs) - 3) {
		pairs[n++] = p;
		p += strlen(p) + 1;
		pairs[n++] = p;
		p += strlen(p) + 1;
	}
	pairs[n] = NULL;
	lv_buf_t b;
	lv_buf_init(&b);
	bool ok = lv_wire_write_startup(&b, pairs) && lv_sbuf_write(&sv->conn.sb, b.data, b.len);
	lv_buf_cleanup(&b);
	if (ok) {
		lv_server_set_state(sv, LV_SERVER_LOGIN);
		sv->conn.action = "logging in";
	}
	return ok;
}

static bool send_buf(lv_server_t *sv, lv_buf_t *b, bool ok)
{
	ok = ok && lv_sbuf_write(&sv->conn.sb, b->data, b->len);
	lv_buf_cleanup(b);
	return ok;
}

static void handle_auth(lv_server_t *sv, const uint8_t *body, size_t len)
{
	lv_wire_auth_t a;
	if (lv_wire_parse_auth(body, len, &a) != 0) {
		login_failed(sv, LV_SQLSTATE_PROTOCOL_VIOLATION, "levee: server sent a malformed authentication request");
		return;
	}
	lv_pool_t *pool = sv->pool;
	bool is_md5;
	const char *pw = cfg_password(sv, &is_md5);
	lv_buf_t b;
	lv_buf_init(&b);
	lv_err_t err = {0};
	switch (a.code) {
	case LV_AUTH_REQ_OK:
		return;
	case LV_AUTH_REQ_PASSWORD:
		if (!pw || is_md5)
			break;
		if (!send_buf(sv, &b, lv_wire_write_password(&b, pw)))
			login_failed(sv, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	case LV_AUTH_REQ_MD5: {
		if (!pw || a.data_len != 4)
			break;
		char resp[36];
		if (lv_md5_password(server_user(sv), pw, a.data, resp) != 0 ||
		    !send_buf(sv, &b, lv_wire_write_password(&b, resp)))
			login_failed(sv, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	case LV_AUTH_REQ_SASL: {
		if (!lv_wire_auth_has_mech(&a, "SCRAM-SHA-256")) {
			login_failed(sv, LV_SQLSTATE_FEATURE_NOT_SUPPORTED,
				     "levee: server offers no SASL mechanism Levee supports");
			return;
		}
		if ((!pw || is_md5) && !pool->has_scram_keys)
			break;
		sv->scram = lv_calloc(1, sizeof(*sv->scram));
		if (!sv->scram) {
			login_failed(sv, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
			return;
		}
		if (pw && !is_md5) {
			if (lv_scram_client_init(sv->scram, pw) != 0) {
				login_failed(sv, LV_SQLSTATE_INVALID_PASSWORD, "levee: server password too long");
				return;
			}
		} else {
			lv_scram_client_init_keys(sv->scram, pool->scram_client_key, pool->scram_server_key);
		}
		lv_buf_t first;
		lv_buf_init(&first);
		bool ok = lv_scram_client_first(sv->scram, &first) == 0 &&
			  lv_wire_write_sasl_initial(&b, "SCRAM-SHA-256", first.data, first.len);
		lv_buf_cleanup(&first);
		if (!send_buf(sv, &b, ok))
			login_failed(sv, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	case LV_AUTH_REQ_SASL_CONT: {
		lv_buf_t fin;
		lv_buf_init(&fin);
		if (!sv->scram || lv_scram_client_continue(sv->scram, a.data, a.data_len, &fin, &err) != 0) {
			lv_buf_cleanup(&fin);
			login_failed(sv, LV_SQLSTATE_INVALID_PASSWORD, "levee: SCRAM exchange with server failed: %s",
				     err.msg);
			return;
		}
		bool ok = lv_wire_write_sasl_response(&b, fin.data, fin.len);
		lv_buf_cleanup(&fin);
		if (!send_buf(sv, &b, ok))
			login_failed(sv, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	case LV_AUTH_REQ_SASL_FIN:
		if (!sv->scram || lv_scram_client_verify(sv->scram, a.data, a.data_len, &err) != 0) {
			login_failed(sv, LV_SQLSTATE_INVALID_PASSWORD,
				     "levee: server's SCRAM signature did not verify: %s", err.msg);
			return;
		}
		return;
	default:
		login_failed(sv, LV_SQLSTATE_FEATURE_NOT_SUPPORTED,
			     "levee: server asks for an authentication method Levee does not support (%d)", a.code);
		return;
	}
	login_failed(sv, LV_SQLSTATE_INVALID_PASSWORD,
		     "levee: no usable password for user \"%s\" to log in to the server (see auth_file)",
		     server_user(sv));
}

/* Replaces or adds name=value in the server's reported parameters. */
static bool record_status(lv_server_t *sv, const char *name, const char *value)
{
	lv_buf_t nb;
	lv_buf_init(&nb);
	const char *p = (const char *)sv->status.data;
	const char *end = p + sv->status.len;
	bool ok = true;
	while (p && p < end) {
		const char *k = p;
		const char *v = k + strlen(k) + 1;
		p = v + strlen(v) + 1;
		if (strcmp(k, name) == 0)
			continue;
		ok = ok && lv_buf_append_cstr(&nb, k) && lv_buf_append_cstr(&nb, v);
	}
	ok = ok && lv_buf_append_cstr(&nb, name) && lv_buf_append_cstr(&nb, value);
	if (!ok) {
		lv_buf_cleanup(&nb);
		return false;
	}
	lv_buf_cleanup(&sv->status);
	sv->status = nb;
	return true;
}

bool lv_server_write_status(const lv_server_t *sv, lv_buf_t *out)
{
	const char *p = (const char *)sv->status.data;
	const char *end = p + sv->status.len;
	while (p && p < end) {
		const char *k = p;
		const char *v = k + strlen(k) + 1;
		p = v + strlen(v) + 1;
		if (!lv_wire_write_param_status(out, k, v))
			return false;
	}
	return true;
}

static void login_done(lv_server_t *sv)
{
	lv_pool_t *pool = sv->pool;
	if (sv->scram) {
		lv_scram_client_cleanup(sv->scram);
		lv_free(sv->scram);
		sv->scram = NULL;
	}
	pool->connect_failures = 0;
	pool->last_error[0] = '\0';
	pool->last_sqlstate[0] = '\0';
	if (pool->defaults.len == 0 && sv->params.len == 0 && sv->status.len > 0 &&
	    !lv_buf_append(&pool->defaults, sv->status.data, sv->status.len))
		lv_buf_reset(&pool->defaults);
	lv_metric_inc(LV_M_SERVER_CONNECTIONS_TOTAL);
	sv->conn.action = NULL;
	sv->last_used_us = lv_time_now_us();
	lv_clog_debug(sv, "login done, pid=%u", sv->pid);
	lv_server_set_state(sv, LV_SERVER_IDLE);
	lv_pool_assign(pool);
}

/* LOGIN (and TESTING): whole messages, read and handled here, none forwarded. */
static void handle_control_input(lv_server_t *sv)
{
	lv_sbuf_t *sb = &sv->conn.sb;
	while (sv->state == LV_SERVER_LOGIN || sv->state == LV_SERVER_TESTING) {
		uint8_t hdr[5];
		if (!lv_sbuf_peek(sb, 0, hdr, 5))
			return;
		uint8_t type;
		uint32_t len;
		int rc = lv_wire_read_header(hdr, 5, sv->state == LV_SERVER_TESTING ? (size_t)1 << 30 : LV_SERVER_MAX_CONTROL_MSG,
					     &type, &len);
		if (rc != 0) {
			lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_SERVER_PROTOCOL);
			if (sv->state == LV_SERVER_LOGIN)
				login_failed(sv, LV_SQLSTATE_PROTOCOL_VIOLATION, "levee: invalid message from server");
			else
				lv_server_close(sv, "invalid message from server");
			return;
		}
		size_t whole = (size_t)len + 1;
		if (sv->state == LV_SERVER_TESTING && type == PqMsg_DataRow && whole <= 64) {
			/* The temp-schema check: one column, "0" when the session made none. */
			uint8_t row[64];
			if (lv_sbuf_avail(sb) < whole)
				return;
			(void)lv_sbuf_read(sb, row, whole);
			if (!(len == 4 + 2 + 4 + 1 && row[5] == 0 && row[6] == 1 && lv_get_u32(row + 7) == 1 && row[11] == '0'))
				sv->close_needed = true;
			continue;
		}
		if (sv->state == LV_SERVER_TESTING && type != PqMsg_ReadyForQuery && type != PqMsg_ParameterStatus &&
		    type != PqMsg_ErrorResponse) {
			/* Results of the reset queries and asynchronous messages: skip. */
			if (lv_sbuf_avail(sb) < whole) {
				return;
			}
			lv_sbuf_skip(sb, whole);
			continue;
		}
		const uint8_t *msg = lv_sbuf_pullup(sb, whole);
		if (!msg)
			return;
		const uint8_t *body = msg + 5;
		size_t blen = len - 4;
		switch (type) {
		case PqMsg_AuthenticationRequest:
			if (sv->state != LV_SERVER_LOGIN)
				goto bad;
			handle_auth(sv, body, blen);
			break;
		case PqMsg_ParameterStatus: {
			const char *k, *v;
			if (lv_wire_parse_param_status(body, blen, &k, &v) != 0 || !record_status(sv, k, v))
				goto bad;
			break;
		}
		case PqMsg_BackendKeyData: {
			int32_t pid;
			if (lv_wire_parse_backend_key(body, blen, &pid, &sv->key) != 0)
				goto bad;
			sv->pid = (uint32_t)pid;
			break;
		}
		case PqMsg_ErrorResponse: {
			lv_wire_error_t e;
			if (lv_wire_parse_error(body, blen, &e) != 0)
				goto bad;
			if (sv->state == LV_SERVER_LOGIN) {
				char msgtext[256];
				snprintf(msgtext, sizeof(msgtext), "%s", e.message ? e.message : "error");
				lv_sbuf_skip(sb, whole);
				lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_SERVER_LOGIN);
				login_failed(sv, e.sqlstate ? e.sqlstate : LV_SQLSTATE_CONNECTION_FAILURE, "%s", msgtext);
				return;
			}
			lv_clog_warn(sv, "reset query failed: %s", e.message ? e.message : "?");
			sv->close_needed = true;
			break;
		}
		case PqMsg_ReadyForQuery: {
			uint8_t st;
			if (lv_wire_parse_ready(body, blen, &st) != 0)
				goto bad;
			sv->txn_status = (char)st;
			lv_sbuf_skip(sb, whole);
			if (sv->state == LV_SERVER_LOGIN) {
				login_done(sv);
				return;
			}
			if (--sv->n_pending > 0)
				continue;
			if (sv->close_needed || st != 'I') {
				lv_server_close(sv, "reset did not leave the server clean");
				return;
			}
			sv->last_used_us = lv_time_now_us();
			sv->conn.action = NULL;
			lv_server_set_state(sv, LV_SERVER_IDLE);
			lv_pool_assign(sv->pool);
			return;
		}
		case PqMsg_NoticeResponse:
		case PqMsg_NegotiateProtocolVersion:
			break;
		default:
			goto bad;
		}
		if (sv->state == LV_SERVER_CLOSING)
			return;
		lv_sbuf_skip(sb, whole);
	}
	return;
bad:
	lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_SERVER_PROTOCOL);
	if (sv->state == LV_SERVER_LOGIN)
		login_failed(sv, LV_SQLSTATE_PROTOCOL_VIOLATION, "levee: unexpected message from server during login");
	else
		lv_server_close(sv, "unexpected message from server");
}

/* ------------------------------------------------------------------ active */

/* A request cycle ended: account for it. */
static void request_done(lv_server_t *sv)
{
	lv_pool_t *pool = sv->pool;
	lv_usec_t now = lv_time_now_us();
	lv_usec_t took = now - sv->request_start_us;
	lv_metric_inc(LV_M_QUERIES_TOTAL);
	lv_metric_observe_us(LV_M_QUERY_DURATION_SECONDS, 0, took);
	pool->n_query++;
	if (pool->backend)
		__atomic_add_fetch(&pool->backend->n_queries, 1, __ATOMIC_RELAXED);
	pool->query_time_us += (uint64_t)took;
	if (sv->txn_status == 'I') {
		lv_metric_inc(LV_M_TRANSACTIONS_TOTAL);
		pool->n_xact++;
		lv_usec_t start = sv->xact_start_us ? sv->xact_start_us : sv->request_start_us;
		pool->xact_time_us += (uint64_t)(now - start);
		sv->xact_start_us = 0;
	} else if (!sv->xact_start_us) {
		sv->xact_start_us = sv->request_start_us;
	}
	sv->last_used_us = now;
}

/*
 * ACTIVE: frames what the server sent and forwards it to the client in
 * batches. ParameterStatus is read whole (to keep the server's reported
 * values), ReadyForQuery ends a request cycle.
 */
/*
 * Responses to Levee's own prelude (transaction mode SETs): consumed here,
 * never forwarded; what they report is recorded. After a client's RESET
 * (chg_held) what they report is the client's news too, and goes to it.
 * Returns false if the server was closed or lost its client.
 */
static bool swallow(lv_server_t *sv)
{
	lv_sbuf_t *sb = &sv->conn.sb;
	while (sv->n_swallow > 0) {
		uint8_t hdr[5];
		if (!lv_sbuf_peek(sb, 0, hdr, 5))
			return true;
		uint8_t type;
		uint32_t len;
		if (lv_wire_read_header(hdr, 5, LV_SERVER_MAX_CONTROL_MSG, &type, &len) != 0) {
			lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_SERVER_PROTOCOL);
			lv_server_close(sv, "levee: invalid message from server");
			return false;
		}
		size_t whole = (size_t)len + 1;
		const uint8_t *msg = lv_sbuf_pullup(sb, whole);
		if (!msg)
			return true;
		if (type == PqMsg_ParameterStatus) {
			const char *k, *v;
			if (lv_wire_parse_param_status(msg + 5, len - 4, &k, &v) == 0 && record_status(sv, k, v) &&
			    sv->client && !lv_client_desire(sv->client, k, v))
				lv_clog_warn(sv, "out of memory tracking %s", k);
			if (sv->chg_held && sv->client && !lv_client_send(sv->client, msg, whole))
				return false;
		} else if (type == PqMsg_ErrorResponse) {
			lv_wire_error_t e;
			if (lv_wire_parse_error(msg + 5, len - 4, &e) == 0)
				lv_clog_warn(sv, "applying client settings failed: %s", e.message ? e.message : "?");
		} else if (type == PqMsg_ReadyForQuery) {
			sv->txn_status = (char)msg[5];
			sv->n_swallow--;
		}
		lv_sbuf_skip(sb, whole);
	}
	return true;
}

static void drop_until_sync(lv_server_t *sv);

bool lv_server_emit_synth(lv_server_t *sv)
{
	lv_pstmt_reg_t *reg = &sv->conn.worker->pstmts;
	lv_resp_t *h;
	while ((h = lv_respq_head(&sv->respq)) != NULL && (h->action == LV_RESP_SYNTH || h->action == LV_RESP_ERROR)) {
		if (h->action == LV_RESP_ERROR) {
			/* As the server would: the error, then nothing until the Sync. */
			sv->chg_failed = true;
			lv_buf_t b;
			lv_buf_init(&b);
			bool ok = lv_wire_write_error(&b, "ERROR", h->sqlstate, h->text, NULL, NULL);
			lv_respq_pop(reg, &sv->respq);
			drop_until_sync(sv);
			ok = ok && sv->client && lv_client_send(sv->client, b.data, b.len);
			lv_buf_cleanup(&b);
			if (!ok)
				return false;
			continue;
		}
		uint8_t m[5] = {h->kind == PqMsg_Parse ? PqMsg_ParseComplete : PqMsg_CloseComplete, 0, 0, 0, 4};
		lv_respq_pop(reg, &sv->respq);
		if (!sv->client || !lv_client_send(sv->client, m, sizeof(m)))
			return false;
	}
	return true;
}

/*
 * A Parse that failed (or was skipped after an error): the server does not
 * have the statement, and the client's name for it does not exist either.
 */
static void parse_failed(lv_server_t *sv, const lv_resp_t *h)
{
	lv_pstmt_reg_t *reg = &sv->conn.worker->pstmts;
	if (!h->ps)
		return;
	lv_pstmt_set_del(reg, &sv->pstmts, h->ps);
	if (h->text && sv->client && lv_pstmt_map_get(&sv->client->pstmts, h->text) == h->ps)
		lv_pstmt_map_del(reg, &sv->client->pstmts, h->text);
}

/* An error makes the server skip to the next Sync: so do the queued entries. */
static void drop_until_sync(lv_server_t *sv)
{
	lv_pstmt_reg_t *reg = &sv->conn.worker->pstmts;
	lv_resp_t *h;
	while ((h = lv_respq_head(&sv->respq)) != NULL && h->kind != PqMsg_Sync) {
		if (h->kind == PqMsg_Parse)
			parse_failed(sv, h);
		lv_respq_pop(reg, &sv->respq);
	}
}

/*
 * Transaction mode: what a response of the given type means for the queue.
 * Returns 1 to forward it, 0 to swallow it, -1 when Levee's own answers at
 * the head must go out first.
 */
static int track_response(lv_server_t *sv, uint8_t type)
{
	lv_pstmt_reg_t *reg = &sv->conn.worker->pstmts;
	if (type == PqMsg_NoticeResponse || type == PqMsg_NotificationResponse || type == PqMsg_ParameterStatus)
		return 1;
	lv_resp_t *h = lv_respq_head(&sv->respq);
	if (!h)
		return 1;
	if (h->action == LV_RESP_SYNTH || h->action == LV_RESP_ERROR)
		return -1;
	if (h->action == LV_RESP_SWALLOW) {
		if (type == PqMsg_ErrorResponse) {
			/* The injected Parse failed: the client must see why. */
			lv_respq_pop(reg, &sv->respq);
			drop_until_sync(sv);
			return 1;
		}
		if (lv_resp_is_last(h->kind, type))
			lv_respq_pop(reg, &sv->respq);
		return 0;
	}
	if (type == PqMsg_ErrorResponse && h->kind != PqMsg_Query && h->kind != PqMsg_FunctionCall) {
		if (h->kind == PqMsg_Parse)
			parse_failed(sv, h);
		lv_respq_pop(reg, &sv->respq);
		drop_until_sync(sv);
		return 1;
	}
	if (lv_resp_is_last(h->kind, type))
		lv_respq_pop(reg, &sv->respq);
	return 1;
}

/*
 * The header of the server message at offset off of sv's input: 1 when read,
 * 0 when not all of it is there yet, -1 when it is invalid (sv is then closed).
 */
static int peek_header(lv_server_t *sv, size_t off, uint8_t *type, uint32_t *len)
{
	uint8_t hdr[5];
	if (!lv_sbuf_peek(&sv->conn.sb, off, hdr, 5))
		return 0;
	if (lv_wire_read_header(hdr, 5, (size_t)1 << 30, type, len) != 0) {
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_SERVER_PROTOCOL);
		lv_server_close(sv, "levee: invalid message from server");
		return -1;
	}
	return 1;
}

/* A request that changed settings is over: the client's next messages may go. */
static void chg_finished(lv_server_t *sv)
{
	lv_client_t *c = sv->client;
	sv->chg_gate = false;
	sv->chg_failed = false;
	if (lv_sbuf_avail(&c->conn.sb) > 0)
		lv_sbuf_kick(&c->conn.sb);
}

void lv_server_flush_to_client(lv_server_t *sv)
{
	lv_client_t *c = sv->client;
	lv_sbuf_t *sb = &sv->conn.sb;
	if (sv->n_swallow > 0) {
		if (!swallow(sv))
			return;
		if (sv->n_swallow > 0)
			return;
		if (!c->logged_in) {
			lv_client_server_ready(c);
			return;
		}
		if (sv->chg_held) {
			/* The startup values are back: the client's request ends now. */
			sv->chg_held = false;
			lv_client_ready(c, sv->txn_status);
			if (sv->client != c)
				return;
			chg_finished(sv);
		}
	}
	bool txn = c->pool->pool_mode == LV_POOL_TRANSACTION;
	for (;;) {
		size_t avail = lv_sbuf_avail(sb);
		size_t batch = 0;
		if (sv->fwd_left) {
			batch = sv->fwd_left < avail ? (size_t)sv->fwd_left : avail;
			sv->fwd_left -= batch;
		}
		bool again = false;
		while (sv->fwd_left == 0 && batch + 5 <= avail) {
			uint8_t hdr[6];
			uint8_t type;
			uint32_t len;
			int hr = peek_header(sv, batch, &type, &len);
			if (hr < 0)
				return;
			if (hr == 0)
				break;
			size_t whole = (size_t)len + 1;
			bool chg_end =
				type == PqMsg_ReadyForQuery && sv->chg_gate && sv->n_pending == 1;
			if (chg_end && batch > 0) {
				/* The end of a request that changed settings: at the head. */
				again = true;
				break;
			}
			if (txn && sv->respq.n > 0) {
				lv_resp_t *h = lv_respq_head(&sv->respq);
				bool special = h->action != LV_RESP_PASS;
				if (special && batch > 0) {
					again = true;
					break;
				}
				if (special && h->action == LV_RESP_SWALLOW && avail < whole)
					break;
				int r = track_response(sv, type);
				if (r < 0) {
					if (!lv_server_emit_synth(sv))
						return;
					again = true;
					break;
				}
				if (r == 0) {
					lv_sbuf_skip(sb, whole);
					again = true;
					break;
				}
			}
			sv->last_type = type;
			if (type == PqMsg_ParameterStatus) {
				if (batch > 0) {
					/* Send what precedes it so it starts the buffer. */
					again = true;
					break;
				}
				const uint8_t *msg = whole <= LV_SERVER_MAX_CONTROL_MSG ? lv_sbuf_pullup(sb, whole) : NULL;
				if (!msg && avail < whole)
					break;
				const char *k, *v;
				if (!msg || lv_wire_parse_param_status(msg + 5, len - 4, &k, &v) != 0 ||
				    !record_status(sv, k, v) || !lv_client_desire(c, k, v)) {
					lv_server_close(sv, "levee: bad ParameterStatus from server");
					return;
				}
				batch += whole;
				again = true;
				break;
			}
			if (type == PqMsg_ReadyForQuery) {
				if (batch + 6 > avail || !lv_sbuf_peek(sb, batch, hdr, 6))
					break;
				sv->txn_status = (char)hdr[5];
				sv->in_copy = false;
				if (sv->txn_status == 'I' &&
				    (c->n_written || c->written_all || c->write_unnoted))
					lv_cached_txn_end(c);
				if (sv->n_pending > 0 && --sv->n_pending == 0)
					request_done(sv);
				if (chg_end) {
					bool done = !sv->chg_failed && sv->txn_status != 'E';
					int r = lv_client_settings_changed(c, done);
					if (r < 0)
						return;
					if (r > 0) {
						/* The answer to the re-application ends it. */
						lv_sbuf_skip(sb, whole);
						sv->chg_held = true;
						return;
					}
					chg_finished(sv);
				}
				sv->chg_failed = false;
			} else if (type == PqMsg_ErrorResponse) {
				sv->chg_failed = true;
			} else if (type == PqMsg_CopyInResponse || type == PqMsg_CopyOutResponse ||
				   type == PqMsg_CopyBothResponse) {
				sv->in_copy = true;
			}
			if (batch + whole <= avail) {
				batch += whole;
			} else {
				sv->fwd_left = whole - (avail - batch);
				batch = avail;
			}
		}
		if (batch > 0 && c->fill && !lv_cached_capture(c, sb, batch)) {
			/* The cache's background refresh: captured, not forwarded. */
			lv_sbuf_skip(sb, batch);
			lv_metric_add(LV_M_SERVER_BYTES_RECEIVED_TOTAL, 0, (int64_t)batch);
			batch = 0;
			again = lv_sbuf_avail(sb) > 0;
		}
		if (batch > 0) {
			if (!lv_sbuf_forward(sb, &c->conn.sb, batch)) {
				lv_server_close(sv, "levee: out of memory");
				return;
			}
			lv_metric_add(LV_M_SERVER_BYTES_RECEIVED_TOTAL, 0, (int64_t)batch);
			lv_metric_add(LV_M_CLIENT_BYTES_SENT_TOTAL, 0, (int64_t)batch);
			sv->pool->bytes_out += batch;
		}
		if (lv_sbuf_pending_out(&c->conn.sb) > LV_BACKPRESSURE_HIGH) {
			lv_sbuf_pause(sb);
			lv_sbuf_watch_drain(&c->conn.sb, LV_BACKPRESSURE_LOW);
			/* The client's drain event resumes us (client.c). */
			c->server_paused = true;
			return;
		}
		if (!again && (batch == 0 || lv_sbuf_avail(sb) == 0))
			break;
	}
	if (txn && !lv_server_emit_synth(sv))
		return;
	if (sv->n_pending == 0 && sv->fwd_left == 0)
		lv_client_server_ready(c);
}

/*
 * A server running a cache refresh on its own (no client): its answer is
 * captured for the cache and dropped; at the ReadyForQuery the fill is
 * finished and the server goes back to its pool.
 */
static void refresh_input(lv_server_t *sv)
{
	lv_sbuf_t *sb = &sv->conn.sb;
	if (sv->n_swallow > 0 && (!swallow(sv) || sv->n_swallow > 0))
		return;
	for (;;) {
		size_t avail = lv_sbuf_avail(sb);
		if (sv->fwd_left) {
			size_t n = sv->fwd_left < avail ? (size_t)sv->fwd_left : avail;
			if (n == 0)
				return;
			lv_cached_server_capture(sv, sb, n);
			lv_sbuf_skip(sb, n);
			sv->fwd_left -= n;
			continue;
		}
		uint8_t hdr[6];
		uint8_t type;
		uint32_t len;
		if (peek_header(sv, 0, &type, &len) <= 0)
			return;
		size_t whole = (size_t)len + 1;
		bool ready = type == PqMsg_ReadyForQuery;
		if (ready) {
			if (avail < 6 || !lv_sbuf_peek(sb, 0, hdr, 6))
				return;
			sv->txn_status = (char)hdr[5];
		}
		size_t n = LV_MIN(whole, avail);
		lv_cached_server_capture(sv, sb, n);
		lv_sbuf_skip(sb, n);
		sv->fwd_left = whole - n;
		if (ready && sv->n_pending > 0 && --sv->n_pending == 0) {
			request_done(sv);
			lv_cached_server_done(sv);
			if (sv->txn_status != 'I' || lv_sbuf_avail(sb) > 0) {
				lv_server_close(sv, "unexpected state after a cache refresh");
			} else {
				sv->last_used_us = lv_time_now_us();
				lv_server_set_state(sv, LV_SERVER_IDLE);
			}
			lv_pool_assign(sv->pool);
			return;
		}
	}
}

/* ---------------------------------------------------------------- release */

void lv_server_release(lv_server_t *sv)
{
	lv_pool_t *pool = sv->pool;
	lv_worker_t *w = sv->conn.worker;
	lv_config_t *cfg = w->cfg;
	sv->client = NULL;
	sv->settings_known = false;
	sv->chg_reset_all = sv->chg_failed = sv->chg_gate = sv->chg_held = false;
	lv_buf_cleanup(&sv->chg_sets);
	lv_buf_cleanup(&sv->chg_resets);
	lv_sbuf_resume(&sv->conn.sb);
	const char *why = NULL;
	if (sv->fwd_left || sv->n_pending > 0 || sv->n_swallow > 0 || sv->unsynced || sv->in_copy ||
	    sv->respq.n > 0)
		why = "client left in the middle of a request";
	else if (sv->close_needed)
		why = "marked for closing";
	else if (!pool->db)
		why = "database removed from the configuration";
	else if (w->shutdown_mode)
		why = "shutting down";
	else if (cfg->pool.server_lifetime_ms > 0 &&
		 lv_time_now_us() - sv->created_us > cfg->pool.server_lifetime_ms * LV_USEC_PER_MS)
		why = "server_lifetime reached";
	if (why) {
		lv_server_close(sv, why);
		lv_pool_assign(pool);
		return;
	}
	const char *reset = cfg->pool.server_reset_query;
	bool rollback = sv->txn_status != 'I';
	bool has_reset = reset && *reset;
	if (!rollback && !has_reset) {
		sv->last_used_us = lv_time_now_us();
		lv_server_set_state(sv, LV_SERVER_IDLE);
		lv_pool_assign(pool);
		return;
	}
	lv_buf_t b;
	lv_buf_init(&b);
	bool ok = true;
	sv->n_pending = 0;
	if (rollback) {
		ok = ok && lv_wire_write_query(&b, "ROLLBACK");
		sv->n_pending++;
	}
	if (has_reset) {
		/* A session that used temporary objects leaves its pg_temp schema
		 * behind even after DISCARD ALL: such a server is not reused (the
		 * check's DataRow is read in handle_control_input). */
		ok = ok && lv_wire_write_query(&b, reset) &&
		     lv_wire_write_query(&b, "SELECT pg_catalog.pg_my_temp_schema()::pg_catalog.int8");
		sv->n_pending += 2;
		if (strcasestr(reset, "discard all") || strcasestr(reset, "deallocate"))
			lv_pstmt_set_clear(&w->pstmts, &sv->pstmts);
	}
	ok = ok && lv_sbuf_write(&sv->conn.sb, b.data, b.len);
	lv_buf_cleanup(&b);
	lv_server_set_state(sv, LV_SERVER_TESTING);
	sv->conn.action = "resetting";
	if (!ok) {
		lv_server_close(sv, "out of memory");
		lv_pool_assign(pool);
		return;
	}
	/* The server may have sent more (a notification) before the client left. */
	if (lv_sbuf_avail(&sv->conn.sb) > 0)
		lv_sbuf_kick(&sv->conn.sb);
}

/* ----------------------------------------------------------------- events */

static void tls_answer(lv_server_t *sv)
{
	lv_sbuf_t *sb = &sv->conn.sb;
	lv_worker_t *w = sv->conn.worker;
	uint8_t answer;
	if (!lv_sbuf_read(sb, &answer, 1))
		return;
	sv->tls_asked = false;
	if (answer == 'S') {
		if (lv_sbuf_avail(sb) > 0) {
			/* Bytes the server sent before the handshake are not trustworthy (CVE-2021-23222). */
			login_failed(sv, LV_SQLSTATE_PROTOCOL_VIOLATION, "levee: server sent data after accepting TLS");
			return;
		}
		struct ssl_st *ssl = lv_tls_new_ssl(w->proxy->tls_client);
		if (!ssl || !lv_sbuf_start_tls(sb, lv_loop_base(w->loop), ssl, false)) {
			lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_TLS);
			login_failed(sv, LV_SQLSTATE_CONNECTION_FAILURE, "levee: could not start TLS to server");
		}
		/* CONNECTED follows the handshake; the startup packet goes then. */
		return;
	}
	if (answer == 'N' && w->cfg->tls.server_tls != LV_SERVER_TLS_REQUIRE) {
		if (!send_startup(sv))
			login_failed(sv, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	login_failed(sv, LV_SQLSTATE_CONNECTION_FAILURE,
		     answer == 'N' ? "levee: server does not support TLS (server_tls = require)"
				   : "levee: server answered the TLS request with an error");
}

static void server_sbuf_cb(lv_sbuf_t *sb, lv_sbuf_event_t ev, void *arg)
{
	lv_server_t *sv = arg;
	lv_worker_t *w = sv->conn.worker;
	switch (ev) {
	case LV_SBUF_EV_CONNECTED:
		if (sv->state != LV_SERVER_CONNECTING)
			return;
		if (sb->is_tls || !w->proxy->tls_client || w->cfg->tls.server_tls == LV_SERVER_TLS_DISABLE) {
			if (!send_startup(sv))
				login_failed(sv, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
			return;
		}
		{
			lv_buf_t b;
			lv_buf_init(&b);
			if (!send_buf(sv, &b, lv_wire_write_ssl_request(&b)))
				login_failed(sv, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
			sv->tls_asked = true;
		}
		return;
	case LV_SBUF_EV_READ:
		switch (sv->state) {
		case LV_SERVER_CONNECTING:
			if (sv->tls_asked)
				tls_answer(sv);
			return;
		case LV_SERVER_LOGIN:
		case LV_SERVER_TESTING:
			handle_control_input(sv);
			return;
		case LV_SERVER_ACTIVE:
			if (!sv->client && sv->fill)
				refresh_input(sv);
			else
				lv_server_flush_to_client(sv);
			return;
		case LV_SERVER_IDLE:
			/* Asynchronous messages (NOTIFY for no one, a notice) or a FATAL
			 * before the server goes away: nobody to give them to. */
			if (lv_sbuf_avail(sb) > LV_SERVER_MAX_CONTROL_MSG)
				lv_server_close(sv, "unexpected data from idle server");
			return;
		case LV_SERVER_CLOSING:
		case LV_SERVER__NSTATES:
			lv_sbuf_skip(sb, lv_sbuf_avail(sb));
			return;
		}
		return;
	case LV_SBUF_EV_DRAINED:
		/* Our output to the server drained: let its client send again. */
		if (sv->client)
			lv_client_resume(sv->client);
		return;
	case LV_SBUF_EV_EOF:
	case LV_SBUF_EV_ERROR:
		break;
	}
	if (sv->state == LV_SERVER_CLOSING)
		return;
	char buf[128];
	const char *why = ev == LV_SBUF_EV_EOF ? "server closed the connection" : lv_sbuf_error(sb, buf, sizeof(buf));
	if (sv->state == LV_SERVER_CONNECTING || sv->state == LV_SERVER_LOGIN) {
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, sv->state == LV_SERVER_CONNECTING ? LV_ML_ERROR_KIND_SERVER_CONNECT
									     : LV_ML_ERROR_KIND_SERVER_LOGIN);
		login_failed(sv, LV_SQLSTATE_CONNECTION_FAILURE, "levee: could not connect to server %s:%d: %s",
			     sv->conn.addr, sv->conn.port, why);
		return;
	}
	if (sv->state == LV_SERVER_ACTIVE && sv->client) {
		lv_client_t *c = sv->client;
		/* Whatever the server said last (often its FATAL error) goes first. */
		if (lv_sbuf_avail(sb) > 0)
			lv_server_flush_to_client(sv);
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_SERVER_LOST);
		sv->client = NULL;
		c->server = NULL;
		if (sv->last_type == PqMsg_ErrorResponse)
			lv_client_server_lost(c, NULL, why);
		else
			lv_client_server_lost(c, LV_SQLSTATE_CONNECTION_FAILURE,
					      "levee: server connection lost");
	}
	lv_clog_info(sv, "closing because: %s", why);
	finish_close(sv);
	lv_pool_assign(sv->pool);
}

/* ------------------------------------------------------------------ cancel */

typedef struct lv_cancel_conn {
	lv_sbuf_t sb;
	lv_deferred_t reap;
	lv_list_t node; /* on worker->cancels until reaped */
	lv_usec_t started_us;
	lv_worker_t *worker;
	uint8_t packet[16];
	bool done;
} lv_cancel_conn_t;

static void cancel_free(lv_deferred_t *d)
{
	lv_cancel_conn_t *cc = lv_container_of(d, lv_cancel_conn_t, reap);
	lv_list_unlink(&cc->node);
	lv_sbuf_cleanup(&cc->sb);
	lv_free(cc);
}

static void cancel_cb(lv_sbuf_t *sb, lv_sbuf_event_t ev, void *arg)
{
	lv_cancel_conn_t *cc = arg;
	if (cc->done)
		return;
	if (ev == LV_SBUF_EV_CONNECTED) {
		if (lv_sbuf_write(sb, cc->packet, sizeof(cc->packet)))
			return;
	} else if (ev == LV_SBUF_EV_READ) {
		lv_sbuf_skip(sb, lv_sbuf_avail(sb));
		return;
	} else if (ev == LV_SBUF_EV_DRAINED) {
		return;
	} else if (ev == LV_SBUF_EV_EOF) {
		/* PostgreSQL closes the connection once it has read the request. */
		lv_metric_inc_l(LV_M_CANCEL_REQUESTS_TOTAL, LV_ML_CANCEL_RESULT_FORWARDED);
		cc->done = true;
		lv_sbuf_pause(sb);
		lv_loop_defer(cc->worker->loop, &cc->reap);
		return;
	}
	lv_metric_inc_l(LV_M_CANCEL_REQUESTS_TOTAL, LV_ML_CANCEL_RESULT_FAILED);
	lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CANCEL);
	cc->done = true;
	lv_sbuf_pause(sb);
	lv_loop_defer(cc->worker->loop, &cc->reap);
}

void lv_server_cancel(lv_server_t *sv)
{
	lv_worker_t *w = sv->conn.worker;
	lv_cancel_conn_t *cc = lv_calloc(1, sizeof(*cc));
	if (!cc) {
		lv_metric_inc_l(LV_M_CANCEL_REQUESTS_TOTAL, LV_ML_CANCEL_RESULT_FAILED);
		return;
	}
	cc->worker = w;
	cc->started_us = lv_time_now_us();
	lv_list_init(&cc->node);
	cc->reap.fn = cancel_free;
	lv_list_init(&cc->reap.node);
	lv_set_u32(cc->packet, 16);
	lv_set_u32(cc->packet + 4, LV_CANCEL_REQUEST_CODE);
	lv_set_u32(cc->packet + 8, sv->pid);
	lv_set_u32(cc->packet + 12, sv->key);
	lv_err_t err = {0};
	if (!lv_sbuf_connect(&cc->sb, lv_loop_base(w->loop), &sv->addr, cancel_cb, cc, &err)) {
		lv_clog_warn(sv, "could not send cancel request: %s", err.msg);
		lv_metric_inc_l(LV_M_CANCEL_REQUESTS_TOTAL, LV_ML_CANCEL_RESULT_FAILED);
		lv_free(cc);
		return;
	}
	lv_list_insert_tail(&w->cancels, &cc->node);
}

void lv_server_reap_cancels(lv_worker_t *w, lv_usec_t before)
{
	lv_list_t *pos, *tmp;
	lv_list_for_each_safe(pos, tmp, &w->cancels)
	{
		lv_cancel_conn_t *cc = lv_container_of(pos, lv_cancel_conn_t, node);
		if (cc->done || cc->started_us > before)
			continue;
		lv_metric_inc_l(LV_M_CANCEL_REQUESTS_TOTAL, LV_ML_CANCEL_RESULT_FAILED);
		cc->done = true;
		lv_sbuf_pause(&cc->sb);
		lv_loop_defer(w->loop, &cc->reap);
	}
}
