/* SPDX-License-Identifier: ISC */
/*
 * An asynchronous PostgreSQL client connection for Levee's own work; see
 * pgconn.h. Runs on one loop: the main thread, for the write-queue consumers
 * (proxy/wq_glue.c) and the backend health checks (proxy/backend.c). This is
 * Levee's one client-side login to PostgreSQL outside the pools.
 *
 *   CONNECTING --connected--> LOGIN (startup, auth, parameters)
 *   CONNECTING --connected, tls--> TLS (SSLRequest) --'S': handshake, connected--> LOGIN
 *                                                  --'N', TLS not required--> LOGIN
 *   LOGIN --ReadyForQuery--> READY: every message goes to the owner
 *   CONNECTING --connected, probe--> PROBE (SSLRequest) --'S' or 'N'--> PROBED
 *   any failure or the login timeout: FAILED once, then nothing
 *
 * Owns its socket (sbuf), a copy of the credentials, the SCRAM state during
 * login and a login timer. lv_pgconn_close() stops everything at once and
 * frees the memory from the loop's deferred list, so it is safe inside the
 * callback.
 */
#include "proxy/pgconn.h"
#include "core/log.h"
#include "core/mem.h"
#include "net/sbuf.h"
#include "wire/read.h"
#include "wire/scram.h"
#include "wire/wire.h"
#include "wire/write.h"

#include <event2/event.h>

#define DEFAULT_MAX_MSG_LEN (64 * 1024 * 1024)
#define DEFAULT_LOGIN_TIMEOUT_MS 10000

typedef enum pg_state {
	PG_CONNECTING = 0, /* TCP connect in progress */
	PG_PROBE,          /* probe: SSLRequest sent, waiting for its one-byte answer */
	PG_PROBED,         /* probe: answered and READY reported; nothing more happens */
	PG_TLS,            /* SSLRequest sent before the login; waiting for 'S' or 'N' */
	PG_LOGIN,          /* startup sent; authenticating, reading ParameterStatus */
	PG_READY,          /* logged in; messages go to the owner */
	PG_FAILED,         /* FAILED reported; waiting for close */
	PG_CLOSED,         /* closed by the owner; freed after the iteration */
} pg_state_t;

struct lv_pgconn {
	lv_loop_t *loop;
	pg_state_t state;
	lv_sbuf_t sb;
	bool has_sb;
	lv_pgconn_cb cb;
	void *arg;
	char *user, *dbname, *password, *appname;
	bool pw_is_md5;
	bool is_probe;
	lv_tls_ctx_t *tls;      /* borrowed; NULL: plain */
	bool tls_required;
	size_t max_msg_len;
	lv_scram_client_t *scram;
	struct event *timer;
	char connect_error[LV_ERR_MSG_LEN]; /* why a connect was refused at once, for FAILED */
	lv_deferred_t deferred;
};

static void free_deferred(lv_deferred_t *d)
{
	lv_pgconn_t *c = lv_container_of(d, lv_pgconn_t, deferred);
	if (c->has_sb)
		lv_sbuf_cleanup(&c->sb);
	if (c->timer)
		event_free(c->timer);
	if (c->scram) {
		lv_scram_client_cleanup(c->scram);
		lv_free(c->scram);
	}
	lv_free(c->user);
	lv_free(c->dbname);
	if (c->password) {
		explicit_bzero(c->password, strlen(c->password));
		lv_free(c->password);
	}
	lv_free(c->appname);
	lv_free(c);
}

void lv_pgconn_close(lv_pgconn_t *c)
{
	if (!c || c->state == PG_CLOSED)
		return;
	c->state = PG_CLOSED;
	if (c->timer)
		event_del(c->timer);
	if (c->has_sb)
		lv_sbuf_pause(&c->sb);
	lv_loop_defer(c->loop, &c->deferred);
}

/* Reports FAILED once; the owner closes. */
static void fail(lv_pgconn_t *c, const char *why)
{
	if (c->state == PG_FAILED || c->state == PG_CLOSED)
		return;
	c->state = PG_FAILED;
	if (c->timer)
		event_del(c->timer);
	if (c->has_sb)
		lv_sbuf_pause(&c->sb);
	c->cb(c->arg, LV_PGCONN_FAILED, 0, NULL, 0, why);
}

bool lv_pgconn_send(lv_pgconn_t *c, const void *data, size_t len)
{
	if (!c || c->state != PG_READY || !c->has_sb)
		return false;
	return lv_sbuf_write(&c->sb, data, len);
}

static bool send_buf(lv_pgconn_t *c, lv_buf_t *b, bool ok)
{
	ok = ok && lv_sbuf_write(&c->sb, b->data, b->len);
	lv_buf_cleanup(b);
	return ok;
}

bool lv_pgconn_send_query(lv_pgconn_t *c, const char *sql)
{
	lv_buf_t b;
	lv_buf_init(&b);
	if (!c || c->state != PG_READY || !c->has_sb)
		return false;
	return send_buf(c, &b, lv_wire_write_query(&b, sql));
}

/* ------------------------------------------------------------------ login */

static void handle_auth(lv_pgconn_t *c, const uint8_t *body, size_t len)
{
	lv_wire_auth_t a;
	lv_buf_t b;
	lv_err_t err = {0};
	lv_buf_init(&b);
	if (lv_wire_parse_auth(body, len, &a) != 0) {
		fail(c, "malformed authentication request");
		return;
	}
	switch (a.code) {
	case LV_AUTH_REQ_OK:
		return;
	case LV_AUTH_REQ_PASSWORD:
		if (!c->password || c->pw_is_md5 ||
		    !send_buf(c, &b, lv_wire_write_password(&b, c->password)))
			fail(c, "the server asks for a password Levee does not have in clear text");
		return;
	case LV_AUTH_REQ_MD5: {
		char resp[36];
		if (!c->password || a.data_len != 4 ||
		    lv_md5_password(c->user, c->password, a.data, resp) != 0 ||
		    !send_buf(c, &b, lv_wire_write_password(&b, resp)))
			fail(c, "md5 authentication failed (no password for the user?)");
		return;
	}
	case LV_AUTH_REQ_SASL: {
		if (!c->password || c->pw_is_md5 || !lv_wire_auth_has_mech(&a, "SCRAM-SHA-256")) {
			fail(c, "SCRAM needs the user's password in clear text ([database] password or auth_file)");
			return;
		}
		c->scram = lv_calloc(1, sizeof(*c->scram));
		lv_buf_t first;
		lv_buf_init(&first);
		bool ok = c->scram && lv_scram_client_init(c->scram, c->password) == 0 &&
			  lv_scram_client_first(c->scram, &first) == 0 &&
			  lv_wire_write_sasl_initial(&b, "SCRAM-SHA-256", first.data, first.len);
		lv_buf_cleanup(&first);
		if (!send_buf(c, &b, ok))
			fail(c, "SCRAM exchange failed");
		return;
	}
	case LV_AUTH_REQ_SASL_CONT: {
		lv_buf_t fin;
		lv_buf_init(&fin);
		bool ok = c->scram &&
			  lv_scram_client_continue(c->scram, a.data, a.data_len, &fin, &err) == 0 &&
			  lv_wire_write_sasl_response(&b, fin.data, fin.len);
		lv_buf_cleanup(&fin);
		if (!send_buf(c, &b, ok))
			fail(c, err.msg[0] ? err.msg : "SCRAM exchange failed");
		return;
	}
	case LV_AUTH_REQ_SASL_FIN:
		if (!c->scram || lv_scram_client_verify(c->scram, a.data, a.data_len, &err) != 0)
			fail(c, "the server's SCRAM signature did not verify");
		return;
	default:
		fail(c, "unsupported authentication method");
		return;
	}
}

static void handle_input(lv_pgconn_t *c)
{
	lv_sbuf_t *sb = &c->sb;
	while (c->state == PG_LOGIN || c->state == PG_READY) {
		uint8_t hdr[5];
		if (!lv_sbuf_peek(sb, 0, hdr, 5))
			return;
		uint8_t type;
		uint32_t len;
		if (lv_wire_read_header(hdr, 5, c->max_msg_len, &type, &len) != 0) {
			fail(c, "invalid message from the server");
			return;
		}
		const uint8_t *msg = lv_sbuf_pullup(sb, (size_t)len + 1);
		if (!msg)
			return;
		const uint8_t *body = msg + 5;
		size_t blen = len - 4;
		if (c->state == PG_READY) {
			c->cb(c->arg, LV_PGCONN_MSG, type, body, blen, NULL);
			if (c->state != PG_READY)
				return; /* closed or failed inside the callback: sb is not ours to touch */
			lv_sbuf_skip(sb, (size_t)len + 1);
			continue;
		}
		switch (type) {
		case PqMsg_AuthenticationRequest:
			handle_auth(c, body, blen);
			break;
		case PqMsg_ErrorResponse: {
			lv_wire_error_t e;
			char why[300];
			snprintf(why, sizeof(why), "%s",
				 lv_wire_parse_error(body, blen, &e) == 0 && e.message ? e.message
										 : "login refused");
			fail(c, why);
			return;
		}
		case PqMsg_ReadyForQuery:
			lv_sbuf_skip(sb, (size_t)len + 1);
			if (c->scram) {
				lv_scram_client_cleanup(c->scram);
				lv_free(c->scram);
				c->scram = NULL;
			}
			c->state = PG_READY;
			if (c->timer)
				event_del(c->timer);
			c->cb(c->arg, LV_PGCONN_READY, 0, NULL, 0, NULL);
			continue;
		default:
			break; /* ParameterStatus, BackendKeyData, notices */
		}
		if (c->state != PG_LOGIN)
			return;
		lv_sbuf_skip(sb, (size_t)len + 1);
	}
}

/* The probe's one-byte answer to SSLRequest: 'S' or 'N' means a PostgreSQL server. */
static void handle_probe_answer(lv_pgconn_t *c)
{
	uint8_t a = 0;
	if (!lv_sbuf_read(&c->sb, &a, 1))
		return;
	if (a != 'S' && a != 'N') {
		fail(c, "the server did not answer the SSLRequest as PostgreSQL does");
		return;
	}
	c->state = PG_PROBED;
	event_del(c->timer);
	lv_sbuf_pause(&c->sb);
	c->cb(c->arg, LV_PGCONN_READY, 0, NULL, 0, NULL);
}

static void send_startup(lv_pgconn_t *c)
{
	lv_buf_t b;
	lv_buf_init(&b);
	const char *params[] = {"user", c->user, "database", c->dbname, "application_name", c->appname, NULL};
	c->state = PG_LOGIN;
	if (!send_buf(c, &b, lv_wire_write_startup(&b, params)))
		fail(c, "out of memory");
}

/* The answer to the SSLRequest before the login: 'S' starts the handshake, 'N' goes plain if allowed. */
static void handle_tls_answer(lv_pgconn_t *c)
{
	uint8_t a = 0;
	if (!lv_sbuf_read(&c->sb, &a, 1))
		return;
	if (a == 'S') {
		if (lv_sbuf_avail(&c->sb) > 0) {
			/* Bytes sent before the handshake are not trustworthy (CVE-2021-23222). */
			fail(c, "the server sent data after accepting TLS");
			return;
		}
		struct ssl_st *ssl = lv_tls_new_ssl(c->tls);
		if (!ssl || !lv_sbuf_start_tls(&c->sb, lv_loop_base(c->loop), ssl, false))
			fail(c, "could not start TLS");
		/* CONNECTED follows the handshake; the startup packet goes then. */
		return;
	}
	if (a == 'N' && !c->tls_required) {
		send_startup(c);
		return;
	}
	fail(c, a == 'N' ? "the server does not support TLS (server_tls = require)"
			 : "the server answered the TLS request with an error");
}

static void sbuf_cb(lv_sbuf_t *sb, lv_sbuf_event_t ev, void *arg)
{
	lv_pgconn_t *c = arg;
	if (c->state == PG_CLOSED || c->state == PG_FAILED || c->state == PG_PROBED)
		return;
	switch (ev) {
	case LV_SBUF_EV_CONNECTED: {
		if (c->is_probe || (c->tls && !sb->is_tls)) {
			lv_buf_t b;
			lv_buf_init(&b);
			c->state = c->is_probe ? PG_PROBE : PG_TLS;
			if (!send_buf(c, &b, lv_wire_write_ssl_request(&b)))
				fail(c, "out of memory");
			return;
		}
		send_startup(c);
		return;
	}
	case LV_SBUF_EV_READ:
		if (c->state == PG_PROBE)
			handle_probe_answer(c);
		else if (c->state == PG_TLS)
			handle_tls_answer(c);
		else
			handle_input(c);
		return;
	case LV_SBUF_EV_DRAINED:
		return;
	case LV_SBUF_EV_EOF:
	case LV_SBUF_EV_ERROR: {
		char buf[128];
		fail(c, ev == LV_SBUF_EV_EOF ? "the server closed the connection"
					     : lv_sbuf_error(sb, buf, sizeof(buf)));
		return;
	}
	}
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	lv_pgconn_t *c = arg;
	if (c->state == PG_CONNECTING || c->state == PG_PROBE || c->state == PG_TLS || c->state == PG_LOGIN)
		fail(c, "connect or login timed out");
}

/* Reports a failure found during open from the loop, as the contract says. */
static void early_fail_cb(evutil_socket_t fd, short what, void *arg)
{
	lv_pgconn_t *c = arg;
	if (c->state == PG_CONNECTING)
		fail(c, c->connect_error[0] ? c->connect_error : "could not connect");
}

lv_pgconn_t *lv_pgconn_open(lv_loop_t *loop, const lv_pgconn_params_t *p, lv_pgconn_cb cb,
			    void *arg, lv_err_t *err)
{
	lv_addr_t a;
	if (lv_addr_resolve(p->host, p->port, &a, err) != 0)
		return NULL;
	lv_pgconn_t *c = lv_calloc(1, sizeof(*c));
	if (!c) {
		lv_err_set(err, LV_ENOMEM, "out of memory");
		return NULL;
	}
	c->loop = loop;
	c->cb = cb;
	c->arg = arg;
	c->deferred.fn = free_deferred;
	c->user = lv_strdup(p->user);
	c->dbname = lv_strdup(p->dbname);
	c->appname = lv_strdup(p->application_name ? p->application_name : "levee");
	c->password = p->password ? lv_strdup(p->password) : NULL;
	c->pw_is_md5 = p->password_is_md5;
	c->is_probe = p->probe_only;
	c->tls = p->tls;
	c->tls_required = p->tls_required;
	c->max_msg_len = p->max_msg_len ? p->max_msg_len : DEFAULT_MAX_MSG_LEN;
	c->timer = event_new(lv_loop_base(loop), -1, 0, timeout_cb, c);
	if (!c->user || !c->dbname || !c->appname || (p->password && !c->password) || !c->timer) {
		lv_err_set(err, LV_ENOMEM, "out of memory");
		c->state = PG_CLOSED;
		free_deferred(&c->deferred);
		return NULL;
	}
	int64_t ms = p->login_timeout_ms ? p->login_timeout_ms : DEFAULT_LOGIN_TIMEOUT_MS;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	c->state = PG_CONNECTING;
	lv_err_t cerr = {0};
	if (!lv_sbuf_connect(&c->sb, lv_loop_base(loop), &a, sbuf_cb, c, &cerr)) {
		/* Refused at once: say so from the loop, never from inside open. */
		snprintf(c->connect_error, sizeof(c->connect_error), "%s", cerr.msg);
		event_free(c->timer);
		c->timer = event_new(lv_loop_base(loop), -1, 0, early_fail_cb, c);
		struct timeval now = {0, 0};
		if (!c->timer || event_add(c->timer, &now) < 0) {
			lv_err_set(err, LV_EIO, "%s", cerr.msg);
			c->state = PG_CLOSED;
			free_deferred(&c->deferred);
			return NULL;
		}
		return c;
	}
	c->has_sb = true;
	if (ms > 0)
		(void)event_add(c->timer, &tv);
	return c;
}
