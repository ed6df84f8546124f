/* SPDX-License-Identifier: ISC */
/*
 * The write queue: statements marked with the hint levee:async in a comment
 * (or matching a [queue.rule]) are stored durably in Redis Streams and applied to the
 * primary later, in batches, by consumers that run in every Levee instance.
 *
 * ========================================================================
 * THE CONTRACT
 * ========================================================================
 *
 * What can be deferred. One INSERT, UPDATE, DELETE or MERGE without
 * RETURNING, outside an explicit transaction. Anything else marked async (a
 * SELECT, a statement with RETURNING, a statement inside BEGIN ... COMMIT, a
 * string of several statements) is refused with SQLSTATE 0A000 and nothing
 * is stored. The client never learns the row count: it cannot, because the
 * statement has not run yet.
 *
 * When the client is told "success". Only after Redis has accepted the
 * message: the enqueue script ran XADD on the queue stream and answered with
 * the new message id. With [queue] wait_replicas = N > 0, only after a Redis
 * WAIT also reported that at least N Redis replicas have the write. Then the
 * client receives a NOTICE "levee: queued as <database>/<message id>" and a
 * CommandComplete with the statement's tag and 0 rows ("INSERT 0 0",
 * "UPDATE 0", "DELETE 0", "MERGE 0"). Before that point nothing was
 * acknowledged. If Redis refuses, is down, or does not answer within its
 * timeout, the client gets an error and must treat the write as not done;
 * with wait_replicas, an error after a successful XADD (too few replicas)
 * means "maybe": the message may still be applied, exactly as a COMMIT whose
 * answer was lost.
 *
 * Delivery: at least once. A message stays in its stream and in the
 * consumer group's pending list until a consumer has committed its effect on
 * PostgreSQL and then acknowledged it (XACK after COMMIT, never before). A
 * consumer that dies between the two leaves the message pending, and the
 * next owner of the partition delivers it again.
 *
 * Effect: exactly once. The consumer applies a batch in ONE PostgreSQL
 * transaction that also inserts (stream, message id) into the table
 * levee_applied for every message it applies. A redelivered message whose id
 * is already in levee_applied is skipped and only acknowledged. Because the
 * marker and the effect commit or roll back together, no message has its
 * effect twice, whatever crashes where. (Side effects outside that
 * transaction, such as triggers that call out over the network, are not
 * covered.) Rows of levee_applied are deleted once their ids fall below the
 * stream's trim point, since such ids can never be delivered again.
 *
 * Ordering: FIFO per (database, queue key). The key is the `key=` of the
 * hint (levee:async key=user:42), else the [queue.rule]'s key, else
 * the table written. A key always maps to the same stream partition
 * (<stream_prefix>:<database>:<p>, p = FNV-1a(key) mod LV_WQ_PARTITIONS), a
 * partition is read by one consumer at a time (it holds a lease in Redis),
 * and the consumer applies a partition's messages in stream order. Retries
 * keep the order: when a message fails, the later messages with the same key
 * are held back (not applied, not acknowledged) until it succeeds or is
 * dead-lettered; messages with other keys go on. So for one key the effects
 * happen in the order the clients were told "success", with a dead-lettered
 * message simply missing from that order. Across keys there is no order.
 * Two clients writing the same key concurrently are ordered by the moment
 * Redis accepted their XADDs.
 *
 * Retries and dead letters. A statement that fails (the error is
 * PostgreSQL's: constraint violation, missing table, ...) is rolled back to
 * its own SAVEPOINT, the rest of the batch commits, and the message is
 * retried after retry_backoff * 2^(attempt-1), capped at retry_backoff_max.
 * After max_attempts failures it is appended to the dead-letter stream
 * <stream_prefix>:<database>:dead with its original id, stream, payload,
 * last error and attempt count, and only then acknowledged, so it is never
 * in neither place. Attempts are counted in Redis, shared by every
 * instance: neither a consumer restart nor a partition moving to another
 * instance gives a failing message a fresh set of attempts (a message
 * taken over with attempts left waits its backoff first). If Redis refuses
 * to store a count, the consumer's own count decides, so one consumer never
 * tries a message more than max_attempts times; if it refuses to read the
 * count of a message taken over, that message waits (its key held) and the
 * read is retried after a backoff. A count is deleted once its message is
 * acknowledged. Admin: SHOW QUEUE, RETRY DEAD LETTERS (back to their
 * streams, attempts reset), DROP DEAD LETTER 'id'.
 *
 * PostgreSQL down or restarted. A batch that cannot reach the primary, or
 * loses the connection before COMMIT's answer, acknowledges nothing; it is
 * retried whole after the backoff, and connection errors never count as a
 * message's attempt (they are not poison). If the COMMIT did happen and only
 * its answer was lost, the retry finds the ids in levee_applied and skips
 * them. Messages wait in Redis meanwhile; clients can keep enqueueing up to
 * max_length. A user whose login fails (a changed password) is such a
 * connection error: its messages wait, retried for ever and never
 * dead-lettered, while other users' messages in the same partition go on.
 * When one message's statement breaks a deferred constraint, the per-message
 * fallback (SET CONSTRAINTS ALL IMMEDIATE) pins it on that message, which
 * fails as an attempt of its own.
 *
 * Rights. The consumer connects as the message's user (or as the
 * database's configured server user) and needs SELECT, INSERT and DELETE on
 * levee_applied, which it creates on first use when it may; a user that may
 * not create tables in the schema needs the table created for it first.
 *
 * Redis errors on the consumer side (a deleted stream or consumer group, a
 * key of the wrong type, a refused XACK or dead-letter XADD) are logged,
 * counted in levee_queue_consumer_redis_errors_total{op} and retried after a
 * backoff; a lost group is created again; the messages involved stay pending
 * meanwhile, and other partitions go on.
 *
 * Redis down or restarted. Producers answer async writes with an error at
 * once (nothing acknowledged, nothing lost). Consumers stop reading and
 * resume when Redis is back; a message they applied but could not
 * acknowledge is redelivered and skipped through levee_applied.
 *
 * What "nothing acknowledged is lost" relies on. Redis must not lose a write
 * it answered: run it with appendonly yes, and appendfsync always if a Redis
 * crash (not only a restart) must lose nothing; with appendfsync everysec up
 * to about one second of acknowledged messages can be lost in a host crash.
 * To survive losing the Redis host, set [queue] wait_replicas so success
 * waits for replicas (Redis replication is asynchronous otherwise, and a
 * failover can drop the last writes). Dead letters and levee_applied live in
 * the same Redis and PostgreSQL and inherit their durability.
 *
 * Flow control. Producers: when a database's streams hold max_length
 * entries in total, async writes are refused with SQLSTATE 53400
 * (configuration_limit_exceeded); the check and the XADD are one Redis
 * script, so racing producers never overshoot the limit. The total is a
 * count kept next to the streams, recomputed exactly at every trim and
 * before every refusal, so a refusal is always right; entries XADDed behind
 * Levee's back are counted only from the next trim on. Consumers: at most
 * max_inflight messages per database are read and not yet acknowledged.
 *
 * Cache. After a batch commits, the tables it wrote are passed to the
 * on_applied hook so the result cache bumps their generations.
 *
 * ========================================================================
 *
 * Threads. Producers (lv_wq_enqueue) run on worker threads with that
 * worker's own lv_redis_t. Consumers (lv_wq_t) run on the main thread.
 * Admin helpers (lv_wq_admin_*) run on the caller's loop with a short-lived
 * Redis connection of their own. No state is shared between threads.
 */
#ifndef LEVEE_WQ_WQ_H
#define LEVEE_WQ_WQ_H

#include "core/lv.h"
#include "config/config.h"
#include "event/loop.h"
#include "redis/redis.h"
#include "sql/classify.h"

/* Stream partitions per database; changing it re-maps keys, so it is a build constant. */
#define LV_WQ_PARTITIONS 8
/* The consumer group every stream has. */
#define LV_WQ_GROUP "levee"

/* ------------------------------------------------------------------ producer */

/* Outcome of an enqueue, for the client's answer (lv_wq_status_sqlstate()). */
typedef enum lv_wq_status {
	LV_WQ_OK = 0,         /* stored (and replicated, with wait_replicas); client told success */
	LV_WQ_FULL,           /* the database's streams hold max_length entries: 53400 */
	LV_WQ_REDIS_DOWN,     /* no Redis connection, or it failed before answering: 08006 */
	LV_WQ_REDIS_ERROR,    /* Redis answered with an error: 58000 */
	LV_WQ_NO_REPLICAS,    /* stored, but fewer than wait_replicas replicas confirmed: 58000 */
	LV_WQ_NO_QUEUE,       /* no [levee] redis configured: 0A000 */
	LV_WQ_OOM,            /* out of memory: 53200 */
	LV_WQ_BAD_MESSAGE,    /* the message cannot be encoded (too large, bad field): 54000 */
} lv_wq_status_t;

/* One statement to defer. Everything is borrowed for the duration of the call only. */
typedef struct lv_wq_msg {
	const char *db;     /* client-facing database name ([database NAME]) */
	const char *user;   /* the client's user; the statement runs as it unless the
			       [database] entry names a server user */
	const char *key;    /* ordering key; NULL or "" = table */
	const char *table;  /* the table written, for the key default and cache invalidation */
	const char *sql;    /* one statement: sql_len bytes, or NUL-terminated when sql_len is 0 */
	size_t sql_len;
	uint16_t n_params;
	const char *const *values;  /* n_params values; values[i] NULL = SQL NULL */
	const int32_t *lens;        /* n_params byte lengths; NULL: values are NUL-terminated text */
	const int16_t *formats;     /* n_params format codes (0 text, 1 binary); NULL: all text */
	const uint32_t *types;      /* n_params type OIDs from Parse (0 = unspecified); NULL: none */
} lv_wq_msg_t;

/*
 * Called exactly once per accepted enqueue, on the loop of the lv_redis_t used.
 * message_id is the stream id ("1700000000000-0") when status is LV_WQ_OK or
 * LV_WQ_NO_REPLICAS, else NULL; detail is a short reason for logs and the
 * client's message (may be NULL). Both are valid only during the call.
 */
typedef void (*lv_wq_enqueued_cb)(void *arg, lv_wq_status_t status, const char *message_id,
				  const char *detail);

/*
 * Encodes m and sends ONE Redis script that refuses with LEVEE_FULL when the
 * database's streams hold cfg->queue.max_length entries (by the kept count,
 * recounted before refusing; see Flow control) and otherwise XADDs
 * the message (then a WAIT when cfg->queue.wait_replicas > 0). Returns
 * LV_WQ_OK when the command was sent: cb follows exactly once, never before
 * this returns. Any other value is an immediate failure: nothing was sent and
 * cb is never called. cfg is not kept.
 */
lv_wq_status_t lv_wq_enqueue(lv_redis_t *r, const lv_config_t *cfg, const lv_wq_msg_t *m,
			     lv_wq_enqueued_cb cb, void *arg) LV_MUSTCHECK;

/* The SQLSTATE a client gets for status (LV_WQ_OK: "00000"). */
const char *lv_wq_status_sqlstate(lv_wq_status_t status);
/* A lower-case description of status ("queue is full"). */
const char *lv_wq_status_msg(lv_wq_status_t status);
/*
 * The CommandComplete tag of a deferred statement of kind (0 rows):
 * "INSERT 0 0", "UPDATE 0", "DELETE 0", "MERGE 0"; NULL for any other kind
 * (which cannot be deferred: answer 0A000).
 */
const char *lv_wq_command_tag(lv_sql_kind_t kind);

/* ---------------------------------------------------- PostgreSQL connection */

/*
 * wq/ may not include the network layer, so the consumers reach PostgreSQL
 * through this table of functions, implemented by proxy/pgconn.c. A handle
 * is one logged-in connection to a database's primary.
 */
typedef struct lv_wq_pg lv_wq_pg_t; /* opaque; owned by the ops provider */

typedef enum lv_wq_pg_event {
	LV_WQ_PG_READY = 0, /* logged in; the first ReadyForQuery arrived */
	LV_WQ_PG_MSG,       /* one backend message after READY: type, body, len */
	LV_WQ_PG_FAILED,    /* connect, login or connection failure; error says why; the
			       handle is dead and must be closed (no further events) */
} lv_wq_pg_event_t;

typedef void (*lv_wq_pg_cb)(void *arg, lv_wq_pg_event_t ev, uint8_t type, const uint8_t *body,
			    size_t len, const char *error);

typedef struct lv_wq_pg_ops {
	void *ctx;
	/*
	 * Opens a connection to the primary of database db (client-facing name)
	 * as user (ignored when the [database] entry names a server user). NULL
	 * when db is unknown, no credentials are found or out of memory. cb
	 * gets events from the loop, never during open.
	 */
	lv_wq_pg_t *(*open)(void *ctx, const char *db, const char *user, lv_wq_pg_cb cb, void *arg);
	/* Queues frontend messages; false when the connection is dead or out of memory. */
	bool (*send)(lv_wq_pg_t *c, const void *data, size_t len);
	/* Closes c; no event follows. Safe inside c's own callback. NULL: no-op. */
	void (*close)(lv_wq_pg_t *c);
} lv_wq_pg_ops_t;

/* ---------------------------------------------------------------- consumers */

typedef struct lv_wq lv_wq_t;

/* After a batch committed on db: the distinct tables it wrote. Main thread. */
typedef void (*lv_wq_applied_fn)(void *arg, const char *db, const char *const *tables, int n);

typedef struct lv_wq_opts {
	const char *instance_id;     /* unique per Levee process: the consumer name and lease owner */
	const lv_wq_pg_ops_t *pg;    /* copied */
	lv_wq_applied_fn on_applied; /* may be NULL */
	void *applied_arg;
	bool crash_after_commit;     /* TESTS ONLY: abort() right after a batch's COMMIT, before XACK */
} lv_wq_opts_t;

/* Creates the consumer set on loop (main thread); idle until lv_wq_set_config(). NULL on OOM. */
lv_wq_t *lv_wq_new(lv_loop_t *loop, const lv_wq_opts_t *opts) LV_MUSTCHECK;
/*
 * Applies a configuration generation (takes a reference). Consumers run for
 * every [database] when cfg->levee.redis is set and cfg->queue.consumers is
 * true; otherwise they stop (pending messages stay in Redis for others).
 */
void lv_wq_set_config(lv_wq_t *wq, lv_config_t *cfg);
/* Stops everything and frees wq; nothing is acknowledged that was not applied. NULL: no-op. */
void lv_wq_free(lv_wq_t *wq);

/* -------------------------------------------------------------------- admin */

/* One database's queue, as SHOW QUEUE prints it. Counts are cluster-wide (kept in Redis). */
typedef struct lv_wq_db_stats {
	char db[LV_NAME_LEN];
	long long length;        /* entries in the streams (unacknowledged plus not yet trimmed) */
	long long pending;       /* delivered to a consumer, not yet acknowledged */
	long long oldest_age_ms; /* age of the oldest unacknowledged message; 0 when none */
	long long dead;          /* entries in the dead-letter stream */
	long long enqueued, applied, retried, dead_lettered; /* totals since the streams exist */
} lv_wq_db_stats_t;

typedef enum lv_wq_admin_op {
	LV_WQ_ADMIN_STATS = 0,  /* rows: one lv_wq_db_stats_t per [database] */
	LV_WQ_ADMIN_RETRY_DEAD, /* count: dead letters moved back to their streams */
	LV_WQ_ADMIN_DROP_DEAD,  /* count: dead letters deleted (0 or 1) */
} lv_wq_admin_op_t;

/*
 * rows/n for STATS, count for the others; error is NULL on success, else a
 * message (rows NULL). Everything is valid only during the call.
 */
typedef void (*lv_wq_admin_cb)(void *arg, const lv_wq_db_stats_t *rows, size_t n, long long count,
			       const char *error);

/*
 * Runs op on loop's thread over a Redis connection of its own (opened and
 * closed here, so any thread with a loop can call it); id is the dead
 * letter's id for DROP_DEAD. false (cb never called) when cfg has no Redis
 * or out of memory; otherwise cb follows exactly once, never before return,
 * with an error if Redis cannot be reached within a few seconds.
 */
bool lv_wq_admin(lv_loop_t *loop, const lv_config_t *cfg, lv_wq_admin_op_t op, const char *id,
		 lv_wq_admin_cb cb, void *arg) LV_MUSTCHECK;

#endif
