/* SPDX-License-Identifier: ISC */
/*
 * One event loop per thread: the libevent event_base, the list of objects
 * closed during this iteration (freed after it), and a mailbox through which
 * other threads post work to this loop. No other module calls event_base_*
 * except to create events on lv_loop_base().
 *
 * Threads never share mutable state: a worker that needs another worker to do
 * something posts a message (lv_loop_post) and the owner does it on its own
 * thread. The mailbox is the only lock, and it is off the hot path.
 */
#ifndef LEVEE_EVENT_LOOP_H
#define LEVEE_EVENT_LOOP_H

#include "core/list.h"
#include "core/lv.h"

struct event_base;
typedef struct lv_loop lv_loop_t;

/* A deferred free: put on the closing list by lv_loop_defer(), run after the iteration. */
typedef struct lv_deferred {
	lv_list_t node;
	void (*fn)(struct lv_deferred *d);
} lv_deferred_t;

/* Makes libevent thread-aware; call once in main() before creating any loop. */
bool lv_loop_global_init(void) LV_MUSTCHECK;

/* Returns a new loop, or NULL on failure. */
lv_loop_t *lv_loop_new(void);
/* Frees the loop; runs pending deferred frees first. NULL is a no-op. */
void lv_loop_free(lv_loop_t *loop);
struct event_base *lv_loop_base(lv_loop_t *loop);

/*
 * Runs until lv_loop_stop(). Each iteration: wait for events once, refresh
 * the cached clock, run deferred frees.
 */
void lv_loop_run(lv_loop_t *loop);
/* Makes lv_loop_run() return after the current iteration; thread-safe. */
void lv_loop_stop(lv_loop_t *loop);

/* Schedules d->fn(d) after the current iteration. d must not be deferred twice. */
void lv_loop_defer(lv_loop_t *loop, lv_deferred_t *d);

/*
 * Posts fn(arg) to run on loop's thread. Thread-safe; returns false on
 * out-of-memory (the message is not posted and arg stays the caller's).
 */
typedef void (*lv_loop_msg_fn)(void *arg);
bool lv_loop_post(lv_loop_t *loop, lv_loop_msg_fn fn, void *arg) LV_MUSTCHECK;

#endif
