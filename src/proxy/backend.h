/* SPDX-License-Identifier: ISC */
/*
 * Backends and their health. Every distinct host:port of the configuration
 * (primaries and replicas) has one lv_backend_t in a fixed table that lives
 * as long as the process. The main thread checks each backend every
 * health_check_period over a kept-open PostgreSQL connection:
 *
 *   SELECT pg_is_in_recovery(), <current or replayed WAL LSN>,
 *          <seconds behind when the replica has unreplayed WAL, else 0>
 *
 * and publishes what it learns in the entry's atomic fields. Workers read
 * those fields (no lock) to route reads, so a worker never waits for a health
 * check. Without credentials for a backend (no health_check_user password in
 * the config or auth_file), the check falls back to a TCP/SSLRequest probe:
 * up or down, no lag.
 *
 * The lag of a replica in bytes is the primary's last current LSN minus the
 * replica's replay LSN; in time, how long ago the last replayed transaction
 * committed, but 0 when the replica has replayed all it received.
 */
#ifndef LEVEE_PROXY_BACKEND_H
#define LEVEE_PROXY_BACKEND_H

#include "config/config.h"
#include "core/time.h"
#include "event/loop.h"
#include "net/tls.h"

#define LV_MAX_BACKENDS 64

typedef struct lv_backend {
	char host[LV_HOST_LEN]; /* identity; written once before the entry is published */
	int port;
	/* Written by the main thread, read by workers: atomics. */
	int up;                 /* answered its last check */
	int usable;             /* up, and (replicas) within max_replica_lag: may take reads */
	int is_replica;         /* pg_is_in_recovery(); -1 until known */
	int64_t lag_us;         /* replicas: replay lag in time; -1 unknown */
	int64_t lag_bytes;      /* replicas: primary LSN - replay LSN; -1 unknown */
	uint64_t lsn;           /* primary: current WAL LSN; replica: replay LSN */
	int64_t checked_us;     /* monotonic time the last good check started */
	int banned;             /* failed health_check_failures checks in a row, or lagging */
	int demoted;            /* failover = follow: a replica replaced this primary; no writes
				   go here again until a reload */
	/* Written by workers: transactions in flight, for least-outstanding balancing. */
	int outstanding;
	uint64_t n_queries;     /* request cycles (queries and Syncs) it answered; atomic */
	/* Main thread only. */
	int fails;
	uint64_t n_bans, n_recoveries;
} lv_backend_t;

typedef struct lv_health lv_health_t;

/* Starts checking on loop; tls (borrowed, may be NULL) as server_tls asks. NULL on OOM. */
lv_health_t *lv_health_new(lv_loop_t *loop, lv_tls_ctx_t *tls);
void lv_health_free(lv_health_t *h);
/* Checks the backends of cfg from now on (takes a reference). Main thread. */
void lv_health_set_config(lv_health_t *h, lv_config_t *cfg);
/* Backends that answered their last check, and how many there are. */
int lv_health_up(const lv_health_t *h, int *n_total);
/* The entry for host:port, or NULL if the configuration never named it. Any thread. */
lv_backend_t *lv_health_find(lv_health_t *h, const char *host, int port);
/* Entry i (< lv_health_count()), for SHOW BACKENDS and metrics. Any thread. */
lv_backend_t *lv_health_at(lv_health_t *h, int i);
int lv_health_count(const lv_health_t *h);

/*
 * Read-your-writes in lsn mode: the first primary LSN observed by a check that
 * started after `since`, or 0 while no such check has finished.
 */
uint64_t lv_backend_lsn_after(const lv_backend_t *primary, lv_usec_t since);

#endif
