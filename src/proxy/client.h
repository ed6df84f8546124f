/* SPDX-License-Identifier: ISC */
/*
 * Client connections: the PostgreSQL protocol as a server speaks it to an
 * application. A client logs in to Levee (startup, TLS, authentication against
 * auth_file), waits for a server from its pool, then has its messages
 * forwarded by length until it leaves.
 *
 * States (each value is one list; lv_client_set_state() is the only writer):
 */
#ifndef LEVEE_PROXY_CLIENT_H
#define LEVEE_PROXY_CLIENT_H

#include "config/config.h"
#include "core/buf.h"
#include "proxy/conn.h"
#include "proxy/prepared.h"

#define LV_CLIENT_STATE_MAP(XX)                                                       \
	XX(LOGIN, "login")     /* startup packet, TLS, auth; on worker->login */     \
	XX(WAITING, "waiting") /* needs a server; on pool->waiting, FIFO */            \
	XX(ACTIVE, "active")   /* linked to a server; on pool->active */               \
	XX(IDLE, "idle")       /* logged in, no server (transaction mode); pool->idle_clients */ \
	XX(ADMIN, "admin")     /* admin console session; on worker->admin */           \
	XX(CLOSING, "closing") /* closed; freed after this loop iteration */

typedef enum lv_client_state {
#define XX(name, text) LV_CLIENT_##name,
	LV_CLIENT_STATE_MAP(XX)
#undef XX
	LV_CLIENT__NSTATES
} lv_client_state_t;

const char *lv_client_state_name(lv_client_state_t s);

typedef enum lv_auth_phase {
	LV_AUTHP_NONE,        /* nothing asked yet */
	LV_AUTHP_PASSWORD,    /* AuthenticationMD5Password sent */
	LV_AUTHP_SCRAM_FIRST, /* AuthenticationSASL sent; expecting SASLInitialResponse */
	LV_AUTHP_SCRAM_FINAL, /* SASLContinue sent; expecting SASLResponse */
	LV_AUTHP_DONE,        /* authenticated */
} lv_auth_phase_t;

struct lv_scram_server;
struct lv_scram_secret;

#define LV_CLIENT_WRITTEN_MAX 12

struct lv_client {
	lv_conn_t conn;
	lv_client_state_t state;
	int route_reason;      /* lv_route_reason_t of the current transaction; -1 if not routed */
	lv_pool_t *pool;       /* set once authenticated (not for admin sessions); the pool of its
				  current or last server: the primary's, or a replica's for reads */
	lv_pool_t *home;       /* its pool on the primary */
	lv_usec_t ryw_since;   /* when its last write ended; 0: none pending (read-your-writes) */
	lv_server_t *server;   /* valid in ACTIVE */

	const char *user;      /* "" until the startup packet; then points into names */
	const char *database;  /* likewise; the name the client asked for (default: user) */
	char *names;           /* owned: "user\0database\0", exactly sized (idle clients stay small) */
	/* Startup parameters to pass on (all but user and database), as
	 * "name\0value\0" pairs sorted by name, so two clients with the same
	 * parameters have identical bytes. */
	lv_buf_t params;
	uint64_t params_hash;
	/* Transaction mode: the settings this client expects on any server it
	 * gets ("name\0value\0"): its startup parameters and options, then what
	 * its SETs of tracked parameters changed. */
	lv_buf_t desired;
	uint64_t desired_hash; /* lv_params_hash(&desired) once computed; 0: not yet */
	/* Transaction mode: its startup parameters and options alone, what RESET, RESET ALL
	 * and DISCARD ALL go back to. desired is that until it first changes; a copy is
	 * kept then (owned, startup_len bytes, NULL if none), so idle clients pay nothing. */
	char *startup;
	lv_pstmt_map_t pstmts;  /* its named prepared statements (session mode: for the cache) */
	uint32_t pin_mask;     /* LV_SQL_SESSION_BIT()s of session state that keeps its server */
	uint32_t startup_len;  /* bytes at startup */
	lv_usec_t last_active_us; /* last message from the client or request completed */

	lv_auth_phase_t auth_phase;
	bool user_known;       /* auth_file has the user (else the exchange is a mock) */
	uint8_t md5_salt[4];
	bool startup_kept;     /* startup holds the startup settings (else desired does) */
	struct lv_scram_server *scram; /* owned by auth.c; during SCRAM only */
	struct lv_scram_secret *scram_secret; /* owned by auth.c; during SCRAM only */
	char *md5_secret;      /* owned by auth.c; during md5 only */

	bool is_tls;
	bool logged_in;        /* AuthenticationOk..ReadyForQuery sent */
	bool is_admin;
	bool is_stats_only;    /* admin console with stats_users rights only */
	uint32_t cancel_pid;   /* what BackendKeyData told the client */
	uint32_t cancel_key;   /* Levee's own; names this worker in its top byte */
	bool skip_to_sync;     /* transaction mode: Levee raised an error; drop messages until Sync */
	bool server_paused;    /* its server's reads are paused until our output drains */
	bool write_unnoted;    /* its transaction may write, not classified (cached.c) */
	bool unnamed_unnoted;  /* its unnamed statement may write and was not kept (cached.c) */

	uint64_t fwd_left;     /* bytes of the current client message still to forward */
	lv_pool_shared_t *user_slot; /* counted against max_user_connections there */
	lv_usec_t wait_start_us;  /* when it started waiting for a server; 0 if not */
	lv_usec_t state_since_us; /* when it entered its state */
	uint32_t n_admin_pending; /* admin: outstanding cross-worker requests */
	int n_written;             /* entries of written in use */

	/* Result cache (proxy/cached.c). */
	struct lv_cfill *fill;     /* owned: the cache fill or L2 lookup of its current request */
	struct lv_async_op *async_op; /* its deferred write waiting for Redis (proxy/async.c) */
	bool async_hold;           /* an async-marked statement waits for its server to be idle */
	bool route_hold;           /* a pipelined request a replica may not run waits to be routed */
	bool parked;               /* on worker->cache_parked, waiting for a fill */
	bool cache_skip;           /* its next request bypasses the cache (its fill failed) */
	bool cache_coalesced;      /* counted as a coalesced waiter; its retry is not counted again */
	bool cache_untrusted;      /* session mode: it changed settings the cache key cannot see */
	bool written_all;          /* its transaction wrote something not attributable to tables */
	bool named_unsure;         /* session mode: it may have statement names Levee does not know */
	lv_list_t park_node;
	lv_usec_t parked_since_us;
	/* Owned, LV_CLIENT_WRITTEN_MAX entries, allocated at its first write (idle clients stay
	 * small): generations its transaction wrote (tables, row buckets), bumped when it ends. */
	struct lv_cache_gen **written;
	lv_pstmt_t *unnamed_ps;    /* its unnamed statement when it may write (a registry reference) */
};

/* Accepts fd on worker w (takes ownership of fd). */
void lv_client_accept(lv_worker_t *w, int fd, const void *peer_sa);
void lv_client_set_state(lv_client_t *c, lv_client_state_t s);
/* Called by auth.c once c proved who it is: admin session, or WAITING for a server. */
void lv_client_authenticated(lv_client_t *c);
/* Links c to server sv (a WAITING client and an IDLE server) and makes both ACTIVE. */
void lv_client_attach(lv_client_t *c, lv_server_t *sv);

/* Sends an ErrorResponse (severity ERROR) and keeps the session. */
void lv_client_error(lv_client_t *c, const char *sqlstate, const char *fmt, ...) LV_PRINTF(3, 4);
/* Sends a FATAL ErrorResponse and closes. */
void lv_client_close(lv_client_t *c, const char *sqlstate, const char *fmt, ...) LV_PRINTF(3, 4);
/* Closes without a message. */
void lv_client_drop(lv_client_t *c, const char *reason);
/* Sends raw bytes; closes the client on OOM and returns false. */
bool lv_client_send(lv_client_t *c, const void *data, size_t n);
/* Sends ReadyForQuery with status. */
void lv_client_ready(lv_client_t *c, char status);

/* Server side events that concern the client (called by server.c). */
void lv_client_server_ready(lv_client_t *c);         /* its server finished a request cycle */
void lv_client_server_lost(lv_client_t *c, const char *sqlstate, const char *msg);
/*
 * Transaction mode: c's request that changed carried settings (noted on its server) ended;
 * done: without an error. Makes c's settings follow: SET values are kept, and what was
 * reset gets c's startup value again on its server (one query, answered like the attach
 * prelude and swallowed). Returns 1 when such a query was sent, 0 when none was needed,
 * -1 when c was closed (out of memory).
 */
int lv_client_settings_changed(lv_client_t *c, bool done);
/* Sets a setting c expects on its servers, first keeping its startup settings; false on OOM. */
bool lv_client_desire(lv_client_t *c, const char *name, const char *value) LV_MUSTCHECK;
/* Admin: handles queries that arrived while a SHOW was being gathered. */
void lv_client_resume_admin(lv_client_t *c);
/* Resumes reading from the client once its server drained. */
void lv_client_resume(lv_client_t *c);

/* Cache events (proxy/cached.c): c may look at its input again (it was parked, or was answered
 * asynchronously); c's request is a fill that needs a server. */
void lv_client_cache_retry(lv_client_t *c);
void lv_client_cache_fill(lv_client_t *c);

/* Frees closed clients that have lingered (flushing output) since before `before`. */
void lv_client_reap_lingering(lv_worker_t *w, lv_usec_t before);
/* Cancel: handles a CancelRequest addressed to this worker. */
void lv_client_cancel(lv_worker_t *w, uint32_t pid, uint32_t key);

/*
 * Admin hook: the admin console registers handle(c, sql) to run a simple
 * query in an admin session (proxy/ does not include admin/).
 */
typedef void (*lv_admin_query_fn)(lv_client_t *c, const char *sql, size_t len);
void lv_client_set_admin_handler(lv_admin_query_fn fn);

#endif
