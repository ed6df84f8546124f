/* SPDX-License-Identifier: ISC */
/*
 * One asynchronous PostgreSQL client connection on a Levee loop, for
 * Levee's own work (the write-queue consumers and the backend health
 * checks): connect, startup, log in (trust, cleartext, md5 or SCRAM-SHA-256
 * with a known password), then pass every backend message to the owner. The
 * owner builds and sends frontend messages itself (wire/write.h), or simple
 * queries with lv_pgconn_send_query(). TCP or unix socket, with TLS when
 * params.tls is set (an SSLRequest first, as for the pools' servers).
 *
 * A probe (params.probe_only) does not log in: it sends an SSLRequest and
 * reports READY when the server answers it with 'S' or 'N', which proves a
 * PostgreSQL server listens there. Nothing follows; the owner closes.
 *
 * Lifetime: lv_pgconn_open() returns a handle that lives until
 * lv_pgconn_close(), which may be called anywhere, including inside the
 * handle's own callback; the memory is released after the loop iteration.
 * After a FAILED event no other event follows, and the owner must still
 * close the handle.
 */
#ifndef LEVEE_PROXY_PGCONN_H
#define LEVEE_PROXY_PGCONN_H

#include "core/lv.h"
#include "core/status.h"
#include "event/loop.h"
#include "net/tls.h"

typedef struct lv_pgconn lv_pgconn_t;

typedef enum lv_pgconn_event {
	LV_PGCONN_READY = 0, /* logged in: the first ReadyForQuery arrived (probe: answered) */
	LV_PGCONN_MSG,       /* a backend message after READY */
	LV_PGCONN_FAILED,    /* connect, login, timeout or I/O failure; error says which */
} lv_pgconn_event_t;

typedef void (*lv_pgconn_cb)(void *arg, lv_pgconn_event_t ev, uint8_t type, const uint8_t *body,
			     size_t len, const char *error);

typedef struct lv_pgconn_params {
	const char *host;             /* name, address, or unix socket directory ("/...") */
	int port;
	const char *dbname;
	const char *user;
	const char *password;         /* NULL: only trust works */
	bool password_is_md5;         /* password is an "md5..." secret: md5 auth only */
	const char *application_name; /* NULL: "levee" */
	int64_t login_timeout_ms;     /* connect + login; 0: 10 s; < 0: none (owner times out) */
	size_t max_msg_len;           /* longest backend message accepted; 0: 64 MiB */
	bool probe_only;              /* no login: SSLRequest, READY on its answer; see above */
	lv_tls_ctx_t *tls;            /* NULL: plain; else asks for TLS before the login */
	bool tls_required;            /* with tls: fail when the server does not offer TLS */
} lv_pgconn_params_t;

/*
 * Starts connecting on loop. NULL with err set when the address does not
 * resolve or out of memory; otherwise events follow from the loop (never
 * during this call). Strings of params are copied.
 */
lv_pgconn_t *lv_pgconn_open(lv_loop_t *loop, const lv_pgconn_params_t *params, lv_pgconn_cb cb,
			    void *arg, lv_err_t *err) LV_MUSTCHECK;
/* Queues data (whole frontend messages) for sending; false unless READY (not a probe), or OOM. */
bool lv_pgconn_send(lv_pgconn_t *c, const void *data, size_t len) LV_MUSTCHECK;
/* Queues a simple Query message for sql; false as lv_pgconn_send(). */
bool lv_pgconn_send_query(lv_pgconn_t *c, const char *sql) LV_MUSTCHECK;
/* Closes the connection (Terminate is not sent); no event follows. NULL: no-op. */
void lv_pgconn_close(lv_pgconn_t *c);

#endif
