/* SPDX-License-Identifier: ISC */
/*
 * The result cache in the client's path (transaction mode): answering a
 * request from the cache, filling the cache from a server's answer, waiting
 * for another client's fill, the Redis second level, and the invalidation of
 * tables written through Levee. The policy, keys and store are in cache/.
 *
 * Lifetimes: a client's fill (lv_cfill_t) is owned by the client from the
 * lookup until its request ends; when the client goes away while Redis still
 * owes an answer, the fill is detached and the Redis callback frees it.
 */
#ifndef LEVEE_PROXY_CACHED_H
#define LEVEE_PROXY_CACHED_H

#include "core/lv.h"
#include "core/time.h"
#include "core/types.h"

struct lv_sbuf;
struct lv_config;
struct lv_loop;
struct lv_redis;
struct lv_buf;

typedef enum lv_cached_result {
	LV_CACHED_PASS,     /* not a cache matter: route it as usual */
	LV_CACHED_ANSWERED, /* answered from the cache; the request was consumed */
	LV_CACHED_WAIT,     /* parked: another fill or Redis answers first; the client is resumed later */
	LV_CACHED_FILL,     /* a miss this client fills: route it, its answer is captured */
} lv_cached_result_t;

/* A client with no open transaction: tries rq (lv_request_parse(), the request at the head of
 * its input) against the cache. */
struct lv_request;
lv_cached_result_t lv_cached_try(lv_client_t *c, const struct lv_request *rq);
/* server.c: n bytes at the head of from are about to be forwarded to c (c->fill set). Returns
 * false when they must be swallowed instead (a background refresh). */
bool lv_cached_capture(lv_client_t *c, struct lv_sbuf *from, size_t n);
/* The request cycle of c's fill ended (ReadyForQuery forwarded): store or drop the result. */
void lv_cached_fill_done(lv_client_t *c);
/* Transaction mode: c's background refresh was sent on sv; sv carries it on alone, c is free. */
void lv_cached_handoff(lv_client_t *c, lv_server_t *sv);
/* server.c, for a server carrying a refresh: its answer's bytes, its end, its loss. */
void lv_cached_server_capture(lv_server_t *sv, struct lv_sbuf *from, size_t n);
void lv_cached_server_done(lv_server_t *sv);
void lv_cached_server_gone(lv_server_t *sv);
/* c goes away: abandon its fill, leave the parking list. */
void lv_cached_client_gone(lv_client_t *c);
/* A simple Query c sends: remember what it writes, to bump its generations when the transaction ends. */
void lv_cached_note_statement(lv_client_t *c, const char *sql, size_t len);
/* A Parse: remember a statement that may write, for its Binds (name "" for the unnamed one). */
void lv_cached_note_parse(lv_client_t *c, const char *name, const char *sql, size_t len, uint16_t n_types,
			  const uint8_t *types_be);
/* A Bind: note what this execution writes (rows, with its parameters). ps: the statement in
 * transaction mode's map, else NULL (looked up among what lv_cached_note_parse() kept). */
struct lv_wire_bind;
struct lv_pstmt;
void lv_cached_note_bind(lv_client_t *c, const struct lv_wire_bind *b, const struct lv_pstmt *ps);
/* Session mode: a Close of statement name, and an SQL statement (PREPARE, DEALLOCATE,
 * DISCARD) after which the client's names are no longer known for sure. */
void lv_cached_note_close(lv_client_t *c, const char *name);
void lv_cached_note_forget(lv_client_t *c);
/* The first n bytes of a statement too large to hold: anything that may write invalidates all. */
void lv_cached_note_large(lv_client_t *c, const char *head, size_t n);
/* The request a background refresh sends to its server; NULL when c's fill is not one. */
const struct lv_buf *lv_cached_refresh_request(lv_client_t *c);
/*
 * The main thread's side: the subscriber to other instances' invalidations
 * and a connection to share its own (the queue's applied batches). Without
 * Redis it only bumps local generations. NULL on OOM or a bad URL.
 */
typedef struct lv_cached_main lv_cached_main_t;
lv_cached_main_t *lv_cached_main_start(lv_proxy_t *p, struct lv_loop *loop, struct lv_config *cfg);
void lv_cached_main_free(lv_cached_main_t *m);
/* The queue's on_applied hook (arg: the lv_cached_main_t): bumps the tables a batch wrote. */
void lv_cached_main_applied(void *arg, const char *db, const char *const *tables, int n);

/* c's transaction ended (ReadyForQuery 'I'): bump what it wrote. */
void lv_cached_txn_end(lv_client_t *c);
/* Worker janitor: parked clients that waited too long go to a server. */
void lv_cached_janitor(lv_worker_t *w, lv_usec_t now);
/* Per-worker setup and teardown (Redis connection). */
bool lv_cached_worker_init(lv_worker_t *w);
void lv_cached_worker_cleanup(lv_worker_t *w);
/* Admin: bumps the generation of table in every database (NULL: the whole cache). */
void lv_cached_invalidate(lv_worker_t *w, const char *table);

#endif
