/* SPDX-License-Identifier: ISC */
/*
 * The one Redis client: hiredis's asynchronous API on a Levee loop. Every
 * thread that talks to Redis owns its own lv_redis_t (each worker one for the
 * cache and the queue producer; the main thread one for commands and one for
 * subscriptions). Nothing here is shared between threads.
 *
 * Contract:
 *  - A connection is opened at lv_redis_new() and re-opened after any failure
 *    with exponential backoff (100 ms doubling to 5 s). While it is down,
 *    lv_redis_cmd() returns false at once and calls no callback: callers fall
 *    back (the cache to L1 only, the queue producer to an error) rather than
 *    wait.
 *  - A command that was sent gets exactly one callback: with its reply, or
 *    with reply NULL when the connection failed or the command timed out
 *    (no reply within `timeout_ms`; the connection is then dropped and
 *    re-opened, so a Redis that stopped answering does not hold requests).
 *  - Replies passed to callbacks are valid only during the callback.
 *  - Callbacks (command, state, message) may call lv_redis_free() on their
 *    own client, and may send new commands.
 *  - Subscriptions (lv_redis_subscribe) are kept across reconnects: the
 *    client subscribes again and calls the state callback, so the caller
 *    knows messages may have been missed while it was down.
 *  - hiredis types never leave this module: replies are read through the
 *    accessors below.
 */
#ifndef LEVEE_REDIS_REDIS_H
#define LEVEE_REDIS_REDIS_H

#include "core/lv.h"
#include "core/status.h"
#include "event/loop.h"

typedef struct lv_redis lv_redis_t;
typedef struct lv_redis_reply lv_redis_reply_t; /* a hiredis redisReply, opaque */

typedef enum lv_redis_type {
	LV_REDIS_NIL = 0,
	LV_REDIS_STRING,
	LV_REDIS_ARRAY,
	LV_REDIS_INTEGER,
	LV_REDIS_STATUS,
	LV_REDIS_ERROR,
} lv_redis_type_t;

/* reply is NULL when the command failed without a reply (disconnect, timeout, shutdown). */
typedef void (*lv_redis_cb)(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg);
/*
 * Called on every transition: up (connected, authenticated, database selected,
 * subscriptions confirmed) or down (an up connection failed). Not called for
 * failed attempts while already down, nor by lv_redis_free().
 */
typedef void (*lv_redis_state_cb)(lv_redis_t *r, bool up, void *arg);
/* A pub/sub message on a subscribed channel. */
typedef void (*lv_redis_message_cb)(lv_redis_t *r, const char *channel, const char *payload, size_t len,
				    void *arg);

typedef struct lv_redis_opts {
	const char *url;        /* redis://[[user]:password@]host[:port][/db] or unix:///path */
	const char *name;       /* for logs: "worker 1", "main", "subscriber" */
	int64_t timeout_ms;     /* per command and for connecting; 0 = 1000 */
	lv_redis_state_cb on_state;
	void *state_arg;
} lv_redis_opts_t;

/* Parsed form of a redis URL (unit-tested). */
typedef struct lv_redis_url {
	char host[256];  /* or the socket path when is_unix */
	int port;        /* default 6379 */
	int db;          /* default 0 */
	char user[64];   /* "" = none */
	char password[256]; /* "" = none */
	bool is_unix;
} lv_redis_url_t;

/*
 * Parses url into *out; 0, or -1 with err set ("expected redis://...") and
 * *out zeroed. User and password may use %XX escapes. Messages never quote
 * the password.
 */
int lv_redis_url_parse(const char *url, lv_redis_url_t *out, lv_err_t *err);

/*
 * Creates a client on loop and starts connecting. NULL with err set only for
 * a bad URL or out of memory; an unreachable Redis is not an error (the
 * client keeps trying and reports through on_state).
 */
lv_redis_t *lv_redis_new(lv_loop_t *loop, const lv_redis_opts_t *opts, lv_err_t *err) LV_MUSTCHECK;
/*
 * Closes the connection; pending callbacks run with reply NULL before it
 * returns (on_state is not called). NULL: no-op.
 */
void lv_redis_free(lv_redis_t *r);
/* True while connected and ready for commands. */
bool lv_redis_is_up(const lv_redis_t *r);
/* Commands sent and not answered yet. */
size_t lv_redis_pending(const lv_redis_t *r);

/*
 * Sends one command (argv[i] has lens[i] bytes; lens NULL: NUL-terminated).
 * false when the connection is down, r is a subscriber, or out of memory: cb
 * is then never called. cb may be NULL (fire and forget; errors are still
 * counted).
 */
bool lv_redis_cmd(lv_redis_t *r, lv_redis_cb cb, void *arg, int argc, const char *const *argv,
		  const size_t *lens) LV_MUSTCHECK;
/* The same with a hiredis format string ("SET %b %b PX %lld"). */
bool lv_redis_cmdf(lv_redis_t *r, lv_redis_cb cb, void *arg, const char *fmt, ...) LV_MUSTCHECK;

/*
 * Makes r a subscriber (r then takes no other commands) to channel; cb gets
 * every message. Survives reconnects. Subscribing again to the same channel
 * replaces cb and arg. false on out of memory.
 */
bool lv_redis_subscribe(lv_redis_t *r, const char *channel, lv_redis_message_cb cb, void *arg) LV_MUSTCHECK;

/* Reply accessors; all accept NULL (as NIL). */
lv_redis_type_t lv_redis_reply_type(const lv_redis_reply_t *rp);
long long lv_redis_reply_int(const lv_redis_reply_t *rp);
/* String, status or error text; NULL for other types. */
const char *lv_redis_reply_str(const lv_redis_reply_t *rp, size_t *len);
size_t lv_redis_reply_len(const lv_redis_reply_t *rp);           /* elements of an array */
const lv_redis_reply_t *lv_redis_reply_at(const lv_redis_reply_t *rp, size_t i); /* NULL if out of range */

#endif
