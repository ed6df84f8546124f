/* SPDX-License-Identifier: ISC */
/*
 * Workers and the process-wide proxy object. Each worker is one thread with
 * one loop, its own SO_REUSEPORT listening sockets, its clients, and its
 * share of every pool's servers. Workers exchange messages through their
 * loops' mailboxes, never mutable state: cancel requests that land on the
 * wrong worker, config generations, shutdown, admin snapshots.
 *
 * lv_proxy_t owns the workers, the shared TLS contexts and the current config
 * generation (an atomically swapped, reference-counted pointer).
 */
#ifndef LEVEE_PROXY_WORKER_H
#define LEVEE_PROXY_WORKER_H

#include "config/config.h"
#include "core/buf.h"
#include "core/list.h"
#include "core/metrics.h"
#include "core/time.h"
#include "core/types.h"
#include "event/loop.h"
#include "net/tls.h"
#include "proxy/backend.h"
#include "proxy/prepared.h"
#include "sql/classify.h"

#include <pthread.h>

#define LV_MAX_WORKERS 64

struct event;

struct lv_worker {
	int index;
	lv_proxy_t *proxy;
	lv_loop_t *loop;
	pthread_t thread;
	lv_config_t *cfg;          /* this worker's current generation (a reference) */
	lv_metrics_shard_t *metrics;

	int listen_fds[8];
	struct event *listen_evs[8];
	int n_listen;

	lv_clist_t login;          /* clients in LOGIN */
	lv_clist_t admin;          /* clients in ADMIN */
	lv_list_t pools;           /* lv_pool_t */
	size_t n_clients;          /* all clients of this worker but closing ones */

	/* Cancel keys: open addressing, key -> client; size is a power of two. */
	lv_client_t **keys;
	size_t keys_cap, keys_used;

	lv_clist_t closing_servers; /* closed servers waiting for PostgreSQL to hang up */
	lv_list_t cancels;         /* cancel requests on their way to servers */
	lv_clist_t lingering;      /* closed clients flushing their last bytes (CLOSING) */
	bool started;              /* its thread was created */
	lv_pstmt_reg_t pstmts;     /* prepared statements of this worker's clients */
	lv_sql_cache_t *sql_cache; /* classifications by statement text */
	lv_sql_info_t *sql_info;   /* scratch for one classification at a time (callback-local) */
	struct event *janitor;
	uint64_t next_id;
	int shutdown_mode;         /* 0 running, 1 graceful (SIGINT), 2 immediate */
	struct lv_redis *redis;    /* this worker's Redis connection (cache L2, invalidation, queue); or NULL */
	lv_list_t cache_parked;    /* clients waiting for a cache fill (lv_client_t.park_node) */
	uint64_t cache_rng;        /* TTL jitter and XFetch draws */
	struct lv_cfill *cache_spare; /* one reusable cache lookup (proxy/cached.c), or NULL */
	lv_usec_t shutdown_deadline_us;
};

struct lv_proxy {
	lv_worker_t *workers;
	int n_workers;
	lv_config_t *cfg;          /* current generation; read with lv_proxy_config() */
	pthread_mutex_t cfg_lock;
	lv_tls_ctx_t *tls_server;  /* NULL when client TLS is disabled */
	lv_tls_ctx_t *tls_client;  /* NULL when server_tls = disable */
	lv_health_t *health;       /* backend health, written by the main thread */
	struct lv_cache *cache;    /* the result cache, shared by the workers */
	int cache_used;            /* atomic, set once: a statement was looked up in the cache */
	int n_clients;             /* atomic: all clients, for max_client_conn */
	int paused;                /* atomic: PAUSE in effect */
	int n_running;             /* atomic: workers whose loop still runs */
	int tearing_down;          /* atomic: loops are being freed; post nothing */
	void (*on_worker_exit)(lv_proxy_t *p);
};

/* Creates workers and their listening sockets; false with err set. */
bool lv_proxy_init(lv_proxy_t *p, lv_config_t *cfg, lv_err_t *err) LV_MUSTCHECK;
/* Starts the worker threads. */
bool lv_proxy_start(lv_proxy_t *p, lv_err_t *err) LV_MUSTCHECK;
/* Joins the worker threads and frees everything. */
void lv_proxy_cleanup(lv_proxy_t *p);
/* Publishes a new config generation to every worker (takes a reference). */
void lv_proxy_set_config(lv_proxy_t *p, lv_config_t *cfg);
/* Returns a new reference to the current generation. */
lv_config_t *lv_proxy_config(lv_proxy_t *p);
/* mode 1: stop accepting, let sessions finish; mode 2: close everything now. */
void lv_proxy_shutdown(lv_proxy_t *p, int mode);
/* Number of worker loops still running. */
int lv_proxy_running(lv_proxy_t *p);

/* Runs fn(worker, arg) on every worker's thread, then done(arg) on `home`'s thread. */
typedef struct lv_gather lv_gather_t;
typedef void (*lv_gather_fn)(lv_worker_t *w, void *arg);
typedef void (*lv_gather_done_fn)(void *arg);
bool lv_proxy_gather(lv_proxy_t *p, lv_worker_t *home, lv_gather_fn fn, lv_gather_done_fn done, void *arg) LV_MUSTCHECK;

/* Worker helpers used by client.c/server.c. */
uint64_t lv_worker_next_id(lv_worker_t *w);
bool lv_worker_key_add(lv_worker_t *w, lv_client_t *c) LV_MUSTCHECK;
void lv_worker_key_del(lv_worker_t *w, lv_client_t *c);
lv_client_t *lv_worker_key_find(lv_worker_t *w, uint32_t key);
/* Passes a CancelRequest to the worker that owns the key. */
void lv_worker_post_cancel(lv_worker_t *owner, uint32_t pid, uint32_t key);
/* Asks the other workers to close one idle server of shared's pool. */
void lv_worker_ask_trim(lv_worker_t *w, lv_pool_shared_t *shared);
/* Tells workers flagged in shared->want_mask that a slot is free. */
void lv_worker_notify_slot(lv_worker_t *w, lv_pool_shared_t *shared);

#endif
