/* SPDX-License-Identifier: ISC */
/*
 * Server connections: Levee as a PostgreSQL client. A server is opened for
 * one pool with one set of startup parameters (the client's, in session
 * mode), logs in (TLS, cleartext, md5 or SCRAM), then idles in its pool,
 * serves one client at a time, and is reset with server_reset_query before
 * reuse.
 */
#ifndef LEVEE_PROXY_SERVER_H
#define LEVEE_PROXY_SERVER_H

#include "core/buf.h"
#include "net/addr.h"
#include "proxy/conn.h"
#include "proxy/prepared.h"

#define LV_SERVER_STATE_MAP(XX)                                                  \
	XX(CONNECTING, "connecting") /* TCP connect / TLS handshake; pool->sv_login */ \
	XX(LOGIN, "login")           /* startup and auth exchange; pool->sv_login */     \
	XX(IDLE, "idle")             /* ready, unused; pool->sv_idle */                  \
	XX(ACTIVE, "active")         /* linked to a client; pool->sv_active */           \
	XX(TESTING, "testing")       /* running the reset query; pool->sv_testing */     \
	XX(CLOSING, "closing")       /* closed; freed after this loop iteration */

typedef enum lv_server_state {
#define XX(name, text) LV_SERVER_##name,
	LV_SERVER_STATE_MAP(XX)
#undef XX
	LV_SERVER__NSTATES
} lv_server_state_t;

const char *lv_server_state_name(lv_server_state_t s);

struct lv_scram_client;

struct lv_server {
	lv_conn_t conn;
	lv_server_state_t state;
	lv_pool_t *pool;
	lv_client_t *client;   /* valid in ACTIVE */
	lv_addr_t addr;        /* where it is connected; cancel requests go there */

	uint32_t pid;          /* BackendKeyData */
	uint32_t key;
	lv_buf_t params;       /* startup parameters it was started with (client format) */
	uint64_t params_hash;
	lv_buf_t status;       /* ParameterStatus it reported: "name\0value\0" pairs */
	lv_buf_t applied;      /* unreported settings Levee SET on it (search_path) */
	int n_swallow;
	uint64_t settings_hash; /* lv_params_hash() of the client settings it has; valid if settings_known */
	bool settings_known;
	lv_pstmt_set_t pstmts;  /* transaction mode: Levee statements prepared on it */
	lv_respq_t respq;       /* transaction mode: responses it owes, in order */
	/* Transaction mode: its client's request changes carried settings (RESET, SET ... TO
	 * DEFAULT, RESET ALL, DISCARD ALL, or SET of a setting given at startup). When it ends
	 * without an error the client's settings follow, and what was reset gets the client's
	 * startup value again (lv_client_settings_changed). */
	lv_buf_t chg_sets;      /* "name\0value\0": new values of startup settings */
	lv_buf_t chg_resets;    /* "name\0\0": names reset one by one */
	bool chg_reset_all;     /* it resets everything */
	bool chg_failed;        /* it saw an error: the change did not take */
	bool chg_gate;          /* its end went to the server: the client's next messages wait */
	bool chg_held;          /* its ReadyForQuery waits for the answer to the re-application */
	struct lv_cfill *fill;  /* owned: a cache refresh it runs with no client (proxy/cached.c) */         /* ReadyForQuery of Levee's own queries still to swallow */

	struct lv_scram_client *scram; /* owned; during SCRAM login only */
	bool tls_asked;
	bool counts_connecting;
	bool lingering;         /* CLOSING, on worker->closing_servers until PostgreSQL hangs up */
	lv_usec_t closing_since_us; /* holds a server_connect_concurrency slot while logging in */        /* SSLRequest sent, waiting for 'S'/'N' */

	char txn_status;       /* of the last ReadyForQuery: 'I', 'T', 'E' */
	int n_pending;         /* ReadyForQuery messages still expected */
	bool unsynced;         /* extended-protocol messages sent since the last Sync */
	bool in_copy;          /* CopyIn/CopyOut/CopyBoth in progress */
	bool close_needed;     /* do not reuse: close on release */
	uint64_t fwd_left;     /* bytes of the current server message still to forward */
	uint8_t last_type;     /* type of the last message forwarded to the client */
	lv_usec_t request_start_us; /* when n_pending went from 0 to 1 */
	lv_usec_t xact_start_us;    /* when the current transaction began */
	lv_usec_t last_used_us;
	lv_usec_t created_us;
};

/* Whether its client's request changes carried settings (noted in the chg_ fields). */
static inline bool lv_server_changes_settings(const lv_server_t *sv)
{
	return sv->chg_reset_all || sv->chg_sets.len > 0 || sv->chg_resets.len > 0;
}

/* Opens a new server for pool with the given startup parameters; NULL on failure (logged). */
lv_server_t *lv_server_connect(lv_pool_t *pool, const lv_buf_t *params, uint64_t params_hash);
void lv_server_set_state(lv_server_t *sv, lv_server_state_t s);
/* Client c is done with sv: reset it for reuse, or close it if it cannot be made clean. */
void lv_server_release(lv_server_t *sv);
/* Login took longer than server_connect_timeout. */
void lv_server_timeout(lv_server_t *sv);
/* Closes sv (sending Terminate when it is logged in); reason is logged. */
void lv_server_close(lv_server_t *sv, const char *reason);
/* Appends the ParameterStatus messages sv reported, for a client's login. */
bool lv_server_write_status(const lv_server_t *sv, lv_buf_t *out) LV_MUSTCHECK;
/* Forwards what the server sent to its client (ACTIVE). */
void lv_server_flush_to_client(lv_server_t *sv);
/* Transaction mode: writes Levee's own answers at the head of the response queue to the client. */
bool lv_server_emit_synth(lv_server_t *sv);
/* Frees closed servers whose PostgreSQL side has not hung up since before `before`. */
void lv_server_reap_closing(lv_worker_t *w, lv_usec_t before);
/* Gives up on cancel connections started before `before` (a server that never answers). */
void lv_server_reap_cancels(lv_worker_t *w, lv_usec_t before);
/* Sends a CancelRequest for sv's running query over a fresh connection. */
void lv_server_cancel(lv_server_t *sv);

#endif
