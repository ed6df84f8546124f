/* SPDX-License-Identifier: ISC */
/*
 * Read/write routing as a pure function of its inputs: what the statement
 * is (sql/classify.c), where the client is (inside a transaction or not,
 * whether it has a write the replicas may not have replayed yet), and which
 * replicas are healthy. No sockets, no clock, no globals, so the policy is
 * unit-tested with decision tables (tests/unit/test_proxy_router.c).
 *
 * The policy:
 *  - the hint levee:primary forces the primary, levee:replica a replica (if one is healthy);
 *  - a transaction never spans two backends: the route is decided at its
 *    first statement and kept until it ends; a READ ONLY transaction may go
 *    to a replica, any other transaction goes to the primary;
 *  - outside a transaction, a statement that only reads goes to a replica,
 *    unless the client's own recent write has not been replayed there
 *    (read-your-writes), in which case it goes to the primary;
 *  - a statement that does not parse, writes, locks, or calls a writing
 *    function goes to the primary;
 *  - with no healthy replica, reads go to the primary (replica_fallback =
 *    primary) or fail (replica_fallback = error).
 */
#ifndef LEVEE_PROXY_ROUTER_H
#define LEVEE_PROXY_ROUTER_H

#include "core/lv.h"
#include "sql/classify.h"

#define LV_ROUTE_REASON_MAP(XX)                                                   \
	XX(WRITE, "write")               /* writes, locks, writing functions */      \
	XX(READ, "read")                 /* a read outside a transaction */          \
	XX(TXN, "transaction")           /* a read-write transaction */              \
	XX(TXN_READ_ONLY, "read_only_transaction")                                   \
	XX(HINT_PRIMARY, "hint_primary") /* levee:primary */                         \
	XX(HINT_REPLICA, "hint_replica") /* levee:replica */                         \
	XX(READ_YOUR_WRITES, "read_your_writes") /* the client's write is not on the replicas yet */ \
	XX(NO_REPLICA, "no_replica")     /* none configured or none healthy: fallback */ \
	XX(UNPARSABLE, "unparsable")     /* the statement did not parse */           \
	XX(UNKNOWN, "unknown")           /* nothing to classify (e.g. a Bind of an unknown statement) */

typedef enum lv_route_reason {
#define XX(name, text) LV_ROUTE_##name,
	LV_ROUTE_REASON_MAP(XX)
#undef XX
	LV_ROUTE__NREASONS
} lv_route_reason_t;

typedef enum lv_route_target {
	LV_TARGET_PRIMARY = 0,
	LV_TARGET_REPLICA = 1,
	LV_TARGET_ERROR = 2, /* a read with no healthy replica and replica_fallback = error */
} lv_route_target_t;

typedef struct lv_route_input {
	const lv_sql_info_t *info; /* the first statement; NULL when there is none to look at */
	bool ryw_pending;          /* the client wrote and the replicas may not have it yet */
	int n_healthy_replicas;
	bool fallback_error;       /* replica_fallback = error */
} lv_route_input_t;

typedef struct lv_route {
	lv_route_target_t target;
	lv_route_reason_t reason;
} lv_route_t;

/* Decides where a transaction (or a statement outside one) goes. */
lv_route_t lv_route_decide(const lv_route_input_t *in);
const char *lv_route_reason_name(lv_route_reason_t r);

/* What the router knows of one replica when it picks among them. */
typedef struct lv_replica_load {
	bool healthy;
	int weight;      /* 1..1000 */
	int outstanding; /* queries or transactions in flight on it */
} lv_replica_load_t;

/*
 * Picks the healthy replica with the least outstanding work per unit of
 * weight; ties go to the lower index after `start` (rotate start to spread
 * equal load). Returns the index, or -1 when none is healthy.
 */
int lv_route_pick_replica(const lv_replica_load_t *r, int n, int start);

#endif
