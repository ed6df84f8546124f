/* SPDX-License-Identifier: ISC */
/*
 * Deferred writes in the client's path (the producer side of wq/wq.h): a
 * request marked `levee:async` (or matched by a [queue.rule]) that arrives
 * while the client holds no open transaction is stored in Redis and answered
 * by Levee; one that cannot be deferred is refused with 0A000. The contract
 * is at the top of wq/wq.h.
 *
 * Lifetimes: an enqueue in flight (lv_async_op_t) is owned by Redis's
 * callback; the client points at it and is detached from it when it goes
 * away, so a late answer is dropped.
 */
#ifndef LEVEE_PROXY_ASYNC_H
#define LEVEE_PROXY_ASYNC_H

#include "core/lv.h"
#include "core/types.h"

typedef enum lv_async_result {
	LV_ASYNC_PASS,     /* not a deferred write: on as usual */
	LV_ASYNC_ANSWERED, /* refused (0A000, or a queue error) and answered; the request was consumed */
	LV_ASYNC_WAIT,     /* consumed and sent to Redis; the client waits for its answer */
} lv_async_result_t;

/* c holds no open transaction and rq (lv_request_parse()) is the request at the head of its input. */
struct lv_request;
lv_async_result_t lv_async_try(lv_client_t *c, const struct lv_request *rq);
/*
 * Safety net for a statement on its way to a server (inside a transaction,
 * or pipelined behind other requests): true when its text carries a
 * levee:async hint, so it must be refused rather than run synchronously.
 */
bool lv_async_marked(const char *sql, size_t len);
/* The query a server runs instead of a refused async statement: it fails with 0A000. */
extern const char lv_async_refusal_query[];
/* c goes away: a pending answer is dropped. */
void lv_async_client_gone(lv_client_t *c);

#endif
