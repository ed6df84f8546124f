/* SPDX-License-Identifier: ISC */
/*
 * Pools: one per (database, user) per worker, plus one process-wide
 * lv_pool_shared_t per (database, user) that holds the only cross-thread
 * numbers: how many server connections exist for the pair in all workers
 * (atomic), so pool_size and max_db_connections are limits for the whole
 * process while each worker owns its own servers and needs no lock to use
 * them.
 *
 * When one worker's clients wait while another worker holds idle servers of
 * the same pool, the waiting worker asks the others to give back an idle
 * server (they close it, freeing a slot) and is told when a slot frees.
 *
 * A pool is created on the first client for its pair and lives as long as
 * its worker; its database settings follow config reloads.
 */
#ifndef LEVEE_PROXY_POOL_H
#define LEVEE_PROXY_POOL_H

#include "config/config.h"
#include "core/buf.h"
#include "core/list.h"
#include "core/time.h"
#include "core/types.h"
#include "proxy/backend.h"

struct lv_pool_shared {
	char db[LV_NAME_LEN];
	char user[LV_NAME_LEN];
	int backend;          /* 0 primary, i > 0 the i-th replica; -1 for database and user totals */
	int n_servers;        /* atomic: server connections of this pair, all workers, all states */
	int n_connecting;     /* atomic: logins in flight (database entries: user "") */
	int n_clients;        /* atomic: logged-in clients (user entries: db "") */
	uint32_t want_mask;   /* atomic: bit per worker that has clients waiting for a slot */
	lv_pool_shared_t *next; /* process table, protected by its mutex */
};

struct lv_pool {
	lv_list_t node;            /* on worker->pools */
	lv_worker_t *worker;
	lv_pool_shared_t *shared;      /* (db, user) */
	lv_pool_shared_t *db_shared;   /* (db, ""): max_db_connections, connects in flight */
	lv_pool_shared_t *user_shared; /* ("", user): max_user_connections */
	lv_buf_t defaults;             /* ParameterStatus of a fresh server: what RESET gives */
	lv_buf_t last_params;          /* startup parameters of the last client; for min_pool_size */
	uint64_t last_params_hash;
	const lv_cfg_db_t *db;     /* borrowed from worker->cfg; NULL once removed by a reload */
	char db_name[LV_NAME_LEN];
	char user[LV_NAME_LEN];
	int backend_index;         /* 0: the primary; i > 0: replica i (db->replicas[i - 1]) */
	lv_backend_t *backend;     /* its health entry (process lifetime); NULL if not checked */
	int pool_mode;             /* lv_pool_mode_t, effective */

	/* Clients by state (see client.h). */
	lv_clist_t waiting;        /* LV_CLIENT_WAITING, FIFO */
	lv_clist_t active;         /* LV_CLIENT_ACTIVE */
	lv_clist_t idle_clients;   /* LV_CLIENT_IDLE (transaction mode) */
	/* Servers by state (see server.h). */
	lv_clist_t sv_login;       /* LV_SERVER_CONNECTING and LV_SERVER_LOGIN */
	lv_clist_t sv_idle;        /* LV_SERVER_IDLE, most recently used first */
	lv_clist_t sv_active;      /* LV_SERVER_ACTIVE */
	lv_clist_t sv_testing;     /* LV_SERVER_TESTING */

	/* Server login credentials learnt from a client's SCRAM exchange. */
	bool has_scram_keys;
	uint8_t scram_client_key[32];
	uint8_t scram_server_key[32];

	/* Backoff after failed connects. */
	int connect_failures;
	lv_usec_t next_connect_us;
	char last_error[256];      /* why the last connect or login failed */
	char last_sqlstate[6];
	lv_usec_t trim_asked_us;   /* last time other workers were asked for an idle server */

	/* Stats for SHOW STATS (this worker's share). */
	uint64_t n_xact, n_query, bytes_in, bytes_out;
	uint64_t xact_time_us, query_time_us, wait_time_us;
};

/* Finds or creates the pool for (db, user, backend index) on w; NULL on OOM. */
lv_pool_t *lv_pool_get(lv_worker_t *w, const lv_cfg_db_t *db, const char *user, int backend_index);
/* The host of a pool's backend in the current configuration (NULL once the database is gone). */
const lv_cfg_host_t *lv_pool_host(const lv_pool_t *pool);
void lv_pool_free(lv_pool_t *pool);

/*
 * Gives the pool's first waiting clients servers: an idle one with the same
 * startup parameters, a new connection when a slot is free, or a swap of an
 * idle server of other parameters. Call after anything that may help.
 */
void lv_pool_assign(lv_pool_t *pool);
/* Reserves a server slot (pool_size, reserve pool, max_db_connections); false if none. */
bool lv_pool_take_slot(lv_pool_t *pool, bool use_reserve);
/* Returns a slot and tells workers that wait for one. */
void lv_pool_put_slot(lv_pool_t *pool);
/* Number of servers this pool may have in total (pool_size of its database). */
int lv_pool_size(const lv_pool_t *pool);
/* Fails every waiting client with sqlstate and message (backend unreachable). */
void lv_pool_fail_waiting(lv_pool_t *pool, const char *sqlstate, const char *msg);
/* A connect or login failed (pool->last_error says why): back off; fail waiters if no server is left. */
void lv_pool_connect_failed(lv_pool_t *pool);
/* Counts c against max_user_connections; false when the limit is reached. */
bool lv_pool_user_admit(lv_pool_t *pool, lv_client_t *c);
/* Periodic work: wait timeouts, idle/lifetime closes, min_pool_size, trims. */
void lv_pool_janitor(lv_pool_t *pool, lv_usec_t now);
/* Called on this worker when another worker asks for an idle server back. */
void lv_pool_trim_one(lv_pool_t *pool);

/* The process table of shared pool counters. */
lv_pool_shared_t *lv_pool_shared_get(const char *db, const char *user, int backend);
void lv_pool_shared_free_all(void);

#endif
