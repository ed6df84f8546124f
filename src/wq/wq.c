/* SPDX-License-Identifier: ISC */
/*
 * The write queue: producer (worker threads) and consumers (main thread); the
 * admin helpers are in wq/admin.c. wq.h states the contract; this comment
 * says how it is kept.
 *
 * Keys in Redis, per database D (prefix = [queue] stream_prefix):
 *
 *   <prefix>:D:<p>        stream partition p (0..LV_WQ_PARTITIONS-1); field m = payload
 *   <prefix>:D:<p>:lease  the instance id that consumes partition p (PX claim_idle)
 *   <prefix>:D:<p>:attempts  hash: message id of partition p -> its failed applications
 *   <prefix>:D:dead       dead letters: id, stream, db, payload, error, attempts
 *   <prefix>:D:stats      hash: enqueued, applied, retried, dead (cluster-wide totals);
 *                         len, the entries in D's partitions (for max_length)
 *
 * Producer. One script, sent as EVALSHA of its SHA1 (computed once per
 * process); a NOSCRIPT answer (nothing ran) is followed by the same request
 * as EVAL, which loads the script for the next ones. The script HINCRBYs
 * len; past max_length it recounts (XLEN over D's partitions) and refuses
 * with LEVEE_FULL if the real total is at max_length, else XADDs to the
 * key's partition and HINCRBYs enqueued. Then WAIT when wait_replicas > 0.
 * So len is one read-and-add per message, and only a trim removes entries:
 * the trim script sets len to the exact total after each XTRIM (as does
 * RETRY DEAD LETTERS), which heals any drift (a stream deleted by hand, a
 * producer of an older version that does not count). A count too high is
 * also healed by the recount before a refusal; one too low lets the queue
 * overshoot max_length by the difference until the next trim.
 *
 * Consumers. Per database a dbq_t with LV_WQ_PARTITIONS part_t. A part is
 * worked on only while this instance holds its lease (SET NX PX claim_idle,
 * renewed every claim_idle/3 by a compare-and-pexpire script). On getting a
 * lease the part first claims every pending entry of the group (XAUTOCLAIM
 * with min-idle 0: holding the lease means nobody else may work on it), so
 * older messages of a dead owner come before new ones; only then does it
 * read new entries. One blocking reader connection per database runs
 * XREADGROUP ... BLOCK over all its ready parts (a blocked connection
 * serves nothing else, so the lease, ack and trim commands use a separate
 * command connection shared by all databases).
 *
 * Entries read are kept in their part's list in stream order until
 * acknowledged. A batch takes, from one part, the eligible entries in order:
 * an entry is not eligible while it waits for its retry time, and once an
 * entry is not eligible every later entry with the same key is not either
 * (FIFO per key), nor an entry of another user than the batch's (one batch is
 * one connection, and without a [database] user a connection is per user).
 * A batch short of batch_size waits (lingers) until its oldest entry was read
 * max_wait ago, unless that entry is a retry: while writes arrive steadily,
 * the primary then commits a few full batches instead of many small ones.
 *
 * Parallelism. A database has up to [queue] connections PostgreSQL
 * connections (pgc_t; at most MAX_CONNS, one per partition),
 * each running at most one batch. Batches of different parts run at once on
 * different connections; a part has at most one batch running (part->busy),
 * and its next batch is collected only after that one ended, so a part
 * never overtakes itself and a key (always in one part) is applied in order
 * by one connection at a time. Batches of different parts touch different
 * keys, whose relative order the contract leaves free.
 *
 * A batch on PostgreSQL, one transaction. First, optimistically, the whole
 * batch in one pipeline, one round trip (extended protocol, one Sync):
 *
 *   P/B/E BEGIN
 *   P/B/E INSERT INTO levee_applied (stream, id) VALUES (S, ID1), (S, ID2), ...
 *   [P/B/E DELETE FROM levee_applied WHERE stream=S AND id below the trim point]
 *   per entry: P/B/E the statement with its parameters
 *   P/B/E COMMIT, S(ync)
 *
 * After an error the server skips everything up to the Sync, so nothing of
 * the batch commits: a failing statement, or an id already in levee_applied
 * (23505: a redelivery after COMMIT without XACK) rolls it back whole. Then
 * (after a ROLLBACK if the server is still in the failed transaction) the
 * same batch is applied again in the fallback mode, message by message,
 * which is exactly the pre-pipeline path and so gives the same end state:
 *
 *   Q  BEGIN; SET CONSTRAINTS ALL IMMEDIATE;
 *      SELECT id FROM levee_applied WHERE stream=S AND id IN (...)
 *      [; DELETE FROM levee_applied WHERE stream=S AND id below the trim point]
 *   per entry not found:  Q  [RELEASE|ROLLBACK TO of the previous;] SAVEPOINT levee_m;
 *                             INSERT INTO levee_applied (stream, id) VALUES (S, ID)
 *                          P/B/E the statement with its parameters, S(ync)
 *   Q  [RELEASE|ROLLBACK TO;] COMMIT
 *
 * A batch holding an entry that failed before goes to the fallback at once.
 * Neither the pipeline's failure nor its rollback counts as an attempt; only
 * the fallback's outcome does. In the fallback each entry is one round trip.
 * An error in the marker INSERT with 23505 means another consumer applied it
 * concurrently (lease overlap): skipped. An error in the statement: the entry
 * failed (rolled back to its savepoint). Anything else, or a lost
 * connection, fails the batch whole (in either mode): nothing is
 * acknowledged and it is retried after a backoff, not counted as an attempt;
 * its entries wait a little longer than the database's backoff, so a batch
 * that keeps failing for a reason of its own (its user cannot log in) does
 * not keep the partition's other users' messages from going first. In the
 * fallback deferred constraints are made immediate, so a message that
 * breaks one fails in its own savepoint rather than at the batch's COMMIT.
 * After COMMIT: XACK the applied and skipped ids; failed ones have their
 * attempt counted (below), then wait for their backoff or, at max_attempts,
 * are XADDed to the dead stream and then acknowledged; a refused XACK or
 * dead-letter XADD is sent again after a backoff (the message stays pending
 * meanwhile). A NOGROUP answer (the group
 * or the stream deleted) makes pump() create the group again. After acks the
 * part trims its stream to its oldest pending
 * (or first undelivered) id, and the next batch deletes levee_applied rows
 * below that point.
 *
 * Attempt counts live in Redis, in the hash <stream>:attempts of the
 * partition (field: message id), so a restart or a lease that moves to
 * another instance does not give a failing message a fresh set of attempts.
 * A failure is stored with one script per batch (COUNT_LUA: HINCRBY, but
 * never below the entry's own count), and the entry (state E_COUNTING,
 * which holds back its key) is retried or dead-lettered only on the answer,
 * with max(own count, stored count); when the script is refused or Redis is
 * away, the own count decides and the next failure writes it back. A
 * claimed entry (XAUTOCLAIM) is in state E_LOADING, holding back its key,
 * until one HMGET of the claimed ids has given its count (a refused HMGET
 * is sent again after a backoff); with a count above 0 it waits a whole
 * backoff from then (when it last failed is not kept), at max_attempts it
 * is dead-lettered without another try. Entries read by XREADGROUP are new
 * and have no count. After an XACK, the fields of the acknowledged entries
 * that had one are deleted (HDEL, not waited for); fields left behind (a
 * refused HDEL, a crash, an old owner's late count) are pruned by a scan
 * (PRUNE_LUA) that deletes those below the part's trim point, started at
 * most every PRUNE_EVERY_US when the trim point moved. RETRY DEAD LETTERS
 * adds messages back under new ids: they start with no count.
 *
 * Ownership: lv_wq_t owns its dbq_t (kept until lv_wq_free, idle when the
 * database leaves the config), their entries, the Redis connections and the
 * PostgreSQL handles (with the batch each runs). Redis callbacks carry a
 * pointer to a part or dbq, PostgreSQL callbacks one to a pgc_t; they
 * stay valid because those are freed only after the connections, whose
 * freeing runs every pending callback (with reply NULL) first; callbacks see
 * wq->closing and do nothing.
 */
#include "wq/wq.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "core/time.h"
#include "wire/read.h"
#include "wire/wire.h"
#include "wire/write.h"
#include "wq/codec.h"
#include "wq/wq_int.h"

#include <event2/event.h>
#include <openssl/evp.h>
#include <pthread.h>

/* PostgreSQL connection slots per database; [queue] connections of them are used. */
#define MAX_CONNS LV_WQ_PARTITIONS
#define TICK_MS 100
#define TRIM_EVERY_US (1 * LV_USEC_PER_SEC)

/* ------------------------------------------------------------------ names */

/* stream_prefix is never empty: the key table's check refuses that. */
void lv__wq_stream_key(char *out, const lv_config_t *cfg, const char *db, unsigned p)
{
	snprintf(out, LV__WQ_KEY_LEN, "%s:%s:%u", cfg->queue.stream_prefix, db, p);
}

void lv__wq_named_key(char *out, const lv_config_t *cfg, const char *db, const char *what)
{
	snprintf(out, LV__WQ_KEY_LEN, "%s:%s:%s", cfg->queue.stream_prefix, db, what);
}

/* =================================================================== producer */

/*
 * KEYS: the partitions, then the stats hash; ARGV: target partition (1-based),
 * max_length, payload. len counts the partitions' entries: one HINCRBY here,
 * recomputed exactly at every trim. Past max_length the count is first
 * recomputed (so a count that drifted high never refuses wrongly); the
 * refusal is exact. An XADD error undoes the increment.
 */
static const char ENQUEUE_LUA[] =
	"local st = KEYS[#KEYS]\n"
	"local max = tonumber(ARGV[2])\n"
	"local n = redis.call('HINCRBY', st, 'len', 1)\n"
	"if max > 0 and n > max then\n"
	"  n = 0\n"
	"  for i = 1, #KEYS - 1 do\n"
	"    local l = redis.pcall('XLEN', KEYS[i])\n"
	"    if type(l) == 'number' then n = n + l end\n"
	"  end\n"
	"  if n >= max then\n"
	"    redis.call('HSET', st, 'len', n)\n"
	"    return redis.error_reply('LEVEE_FULL the queue holds ' .. n .. ' messages')\n"
	"  end\n"
	"  redis.call('HSET', st, 'len', n + 1)\n"
	"end\n"
	"local id = redis.pcall('XADD', KEYS[tonumber(ARGV[1])], '*', 'm', ARGV[3])\n"
	"if type(id) == 'table' and id.err then\n"
	"  redis.call('HINCRBY', st, 'len', -1)\n"
	"  return id\n"
	"end\n"
	"redis.call('HINCRBY', st, 'enqueued', 1)\n"
	"return id\n";

/*
 * The script is sent by its SHA1 (EVALSHA), not its text. Redis answers
 * NOSCRIPT when its script cache does not have it (first use, or a restart
 * or SCRIPT FLUSH since): the script did not run, so the request is sent
 * again with EVAL, which also loads it into the cache for the next ones.
 */
static pthread_once_t enqueue_sha_once = PTHREAD_ONCE_INIT;
static char enqueue_sha[41]; /* hex; "" if hashing failed: EVAL every time */

static void enqueue_sha_init(void)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_Digest(ENQUEUE_LUA, sizeof(ENQUEUE_LUA) - 1, md, &n, EVP_sha1(), NULL) != 1 ||
	    n != 20)
		return;
	for (unsigned i = 0; i < n; i++)
		snprintf(enqueue_sha + 2 * i, 3, "%02x", md[i]);
}

/* The arguments that follow the script (or its SHA1), kept for a resend after NOSCRIPT. */
#define ENQ_ARGS (1 + LV_WQ_PARTITIONS + 1 + 3)

typedef struct enq_req {
	lv_wq_enqueued_cb cb;
	void *arg;
	int wait_replicas;
	int64_t wait_timeout_ms;
	bool by_sha;            /* the last send was an EVALSHA */
	int n_args;
	size_t offs[ENQ_ARGS];  /* into args */
	size_t lens[ENQ_ARGS];
	lv_buf_t args;          /* numkeys, keys, target, max_length, payload; back to back */
	char id[48];
} enq_req_t;

static void enq_reply_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg);

/* Sends q's script by SHA1 (when known and by_sha) or by text; false if not sent. */
static bool enq_send(lv_redis_t *r, enq_req_t *q, bool by_sha)
{
	const char *argv[2 + ENQ_ARGS];
	size_t lens[2 + ENQ_ARGS];
	q->by_sha = by_sha && enqueue_sha[0];
	argv[0] = q->by_sha ? "EVALSHA" : "EVAL";
	argv[1] = q->by_sha ? enqueue_sha : ENQUEUE_LUA;
	lens[0] = strlen(argv[0]);
	lens[1] = q->by_sha ? strlen(enqueue_sha) : sizeof(ENQUEUE_LUA) - 1;
	for (int i = 0; i < q->n_args; i++) {
		argv[2 + i] = (const char *)q->args.data + q->offs[i];
		lens[2 + i] = q->lens[i];
	}
	return lv_redis_cmd(r, enq_reply_cb, q, 2 + q->n_args, argv, lens);
}

static unsigned refuse_label(lv_wq_status_t st)
{
	switch (st) {
	case LV_WQ_FULL:
		return LV_ML_QUEUE_REFUSE_FULL;
	case LV_WQ_REDIS_DOWN:
		return LV_ML_QUEUE_REFUSE_REDIS_DOWN;
	case LV_WQ_NO_REPLICAS:
		return LV_ML_QUEUE_REFUSE_NO_REPLICAS;
	case LV_WQ_NO_QUEUE:
		return LV_ML_QUEUE_REFUSE_NO_QUEUE;
	case LV_WQ_OOM:
		return LV_ML_QUEUE_REFUSE_OOM;
	case LV_WQ_BAD_MESSAGE:
		return LV_ML_QUEUE_REFUSE_BAD_MESSAGE;
	default:
		return LV_ML_QUEUE_REFUSE_REDIS_ERROR;
	}
}

static void enq_finish(enq_req_t *q, lv_wq_status_t st, const char *id, const char *detail)
{
	if (st == LV_WQ_OK)
		lv_metric_inc(LV_M_QUEUE_ENQUEUED_TOTAL);
	else
		lv_metric_inc_l(LV_M_QUEUE_REFUSED_TOTAL, refuse_label(st));
	q->cb(q->arg, st, id, detail);
	lv_buf_cleanup(&q->args);
	lv_free(q);
}

static void enq_wait_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	enq_req_t *q = arg;
	if (lv_redis_reply_type(reply) == LV_REDIS_INTEGER &&
	    lv_redis_reply_int(reply) >= q->wait_replicas) {
		enq_finish(q, LV_WQ_OK, q->id, NULL);
		return;
	}
	enq_finish(q, LV_WQ_NO_REPLICAS, q->id, "fewer Redis replicas than wait_replicas confirmed");
}

static void enq_reply_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	enq_req_t *q = arg;
	size_t len = 0;
	const char *s = lv_redis_reply_str(reply, &len);
	if (!reply) {
		enq_finish(q, LV_WQ_REDIS_DOWN, NULL, "Redis connection lost or timed out");
		return;
	}
	if (lv_redis_reply_type(reply) == LV_REDIS_ERROR) {
		if (q->by_sha && s && len >= 8 && memcmp(s, "NOSCRIPT", 8) == 0) {
			/* Not in the script cache, so nothing ran: send the text (it caches it). */
			if (!enq_send(r, q, false))
				enq_finish(q, LV_WQ_REDIS_DOWN, NULL,
					   "could not send the enqueue script");
			return;
		}
		bool full = s && strstr(s, "LEVEE_FULL") != NULL;
		char detail[200];
		snprintf(detail, sizeof(detail), "%.*s", (int)LV_MIN(len, 190), s ? s : "");
		enq_finish(q, full ? LV_WQ_FULL : LV_WQ_REDIS_ERROR, NULL, detail);
		return;
	}
	if (lv_redis_reply_type(reply) != LV_REDIS_STRING || !s || len == 0 || len >= sizeof(q->id)) {
		enq_finish(q, LV_WQ_REDIS_ERROR, NULL, "unexpected reply to the enqueue script");
		return;
	}
	memcpy(q->id, s, len);
	q->id[len] = '\0';
	if (q->wait_replicas <= 0) {
		enq_finish(q, LV_WQ_OK, q->id, NULL);
		return;
	}
	if (!lv_redis_cmdf(r, enq_wait_cb, q, "WAIT %d %lld", q->wait_replicas,
			   (long long)q->wait_timeout_ms))
		enq_finish(q, LV_WQ_NO_REPLICAS, q->id, "could not send WAIT");
}

/* Appends one argument to q->args. */
static bool enq_arg(enq_req_t *q, const void *data, size_t len)
{
	q->offs[q->n_args] = q->args.len;
	q->lens[q->n_args] = len;
	q->n_args++;
	return lv_buf_append(&q->args, data, len);
}

lv_wq_status_t lv_wq_enqueue(lv_redis_t *r, const lv_config_t *cfg, const lv_wq_msg_t *m,
			     lv_wq_enqueued_cb cb, void *arg)
{
	lv_wq_status_t st = LV_WQ_OK;
	if (!cfg->levee.redis || !*cfg->levee.redis || !r)
		st = LV_WQ_NO_QUEUE;
	else if (!lv_redis_is_up(r))
		st = LV_WQ_REDIS_DOWN;
	if (st != LV_WQ_OK) {
		lv_metric_inc_l(LV_M_QUEUE_REFUSED_TOTAL, refuse_label(st));
		return st;
	}
	pthread_once(&enqueue_sha_once, enqueue_sha_init);
	lv_buf_t payload;
	lv_buf_init(&payload);
	lv_err_t err = {0};
	int rc = lv_wq_encode(m, &payload, &err);
	if (rc != 0) {
		lv_buf_cleanup(&payload);
		st = rc == LV_ENOMEM ? LV_WQ_OOM : LV_WQ_BAD_MESSAGE;
		lv_log_debug("queue: cannot encode a message for %s: %s", m->db, err.msg);
		lv_metric_inc_l(LV_M_QUEUE_REFUSED_TOTAL, refuse_label(st));
		return st;
	}
	const char *key = m->key && *m->key ? m->key : (m->table ? m->table : "");
	enq_req_t *q = lv_calloc(1, sizeof(*q));
	if (!q) {
		lv_buf_cleanup(&payload);
		lv_metric_inc_l(LV_M_QUEUE_REFUSED_TOTAL, LV_ML_QUEUE_REFUSE_OOM);
		return LV_WQ_OOM;
	}
	lv_buf_init(&q->args);
	char num[32], k[LV__WQ_KEY_LEN];
	snprintf(num, sizeof(num), "%d", LV_WQ_PARTITIONS + 1);
	bool ok = enq_arg(q, num, strlen(num));
	for (unsigned p = 0; ok && p < LV_WQ_PARTITIONS; p++) {
		lv__wq_stream_key(k, cfg, m->db, p);
		ok = enq_arg(q, k, strlen(k));
	}
	lv__wq_named_key(k, cfg, m->db, "stats");
	ok = ok && enq_arg(q, k, strlen(k));
	snprintf(num, sizeof(num), "%u", lv_wq_partition(key) + 1);
	ok = ok && enq_arg(q, num, strlen(num));
	snprintf(num, sizeof(num), "%lld", (long long)cfg->queue.max_length);
	ok = ok && enq_arg(q, num, strlen(num)) && enq_arg(q, payload.data, payload.len);
	lv_buf_cleanup(&payload);
	if (!ok) {
		lv_buf_cleanup(&q->args);
		lv_free(q);
		lv_metric_inc_l(LV_M_QUEUE_REFUSED_TOTAL, LV_ML_QUEUE_REFUSE_OOM);
		return LV_WQ_OOM;
	}
	q->cb = cb;
	q->arg = arg;
	q->wait_replicas = cfg->queue.wait_replicas;
	q->wait_timeout_ms = cfg->queue.wait_timeout_ms;
	if (!enq_send(r, q, true)) {
		lv_buf_cleanup(&q->args);
		lv_free(q);
		lv_metric_inc_l(LV_M_QUEUE_REFUSED_TOTAL, LV_ML_QUEUE_REFUSE_REDIS_DOWN);
		return LV_WQ_REDIS_DOWN;
	}
	return LV_WQ_OK;
}

/* ================================================================== consumers */

typedef enum entry_state {
	E_WAITING = 0, /* to be applied (when eligible) */
	E_IN_BATCH,    /* in the running batch */
	E_ACK,         /* applied or skipped: XACK to send */
	E_ACKING,      /* XACK sent */
	E_DEAD,        /* out of attempts or malformed: XADD to the dead stream to send */
	E_DEADING,     /* dead-letter XADD (then XACK) sent */
	E_LOADING,     /* claimed: its attempt count is to be read from Redis (HMGET) */
	E_COUNTING,    /* failed: its attempt count is being stored in Redis */
} entry_state_t;

typedef enum batch_result {
	R_NONE = 0,
	R_APPLIED,
	R_SKIPPED,
	R_FAILED,
	R_DEFERRED, /* not run: an earlier entry of its key failed in this batch (FIFO per key) */
} batch_result_t;

#define ID_LEN 48 /* a stream id and its NUL */

typedef struct entry {
	lv_list_t node;           /* in part->entries, stream order */
	char id[ID_LEN];
	uint64_t id_ms;           /* when Redis accepted it */
	lv_wq_decoded_t msg;      /* decoded; zeroed when malformed */
	entry_state_t state;
	batch_result_t result;    /* in the running batch */
	int attempts;             /* failed applications so far, by any consumer (see below) */
	int holds;                /* whole-batch failures so far (not attempts), for its backoff */
	lv_usec_t retry_at_us;    /* not before this time */
	lv_usec_t seen_us;        /* when this consumer read it (a batch lingers from then) */
	char *last_error;         /* owned; NULL if never failed */
	size_t payload_len;
	char payload[];           /* raw JSON and a NUL, for dead letters ("" without field m) */
} entry_t;

struct dbq;

typedef struct part {
	struct dbq *q;
	unsigned idx;
	char stream[LV__WQ_KEY_LEN];
	char lease_key[LV__WQ_KEY_LEN];
	char attempts_key[LV__WQ_KEY_LEN];
	lv_list_t entries;
	int n_entries;
	bool has_group;         /* XGROUP CREATE answered (created or BUSYGROUP) */
	bool group_pending;
	int group_failures;     /* XGROUP CREATEs refused in a row; again at group_retry_at_us */
	lv_usec_t group_retry_at_us;
	bool has_lease;
	bool lease_pending;
	lv_usec_t lease_renew_at_us;
	lv_usec_t lease_try_at_us;
	bool is_claimed;        /* pending entries claimed since the lease was taken */
	bool claim_pending;
	char claim_cursor[48];
	bool ack_pending;       /* an XACK / dead-letter command is in flight */
	int ack_failures;       /* XACKs refused in a row; sent again at ack_retry_at_us */
	lv_usec_t ack_retry_at_us;
	int dead_failures;      /* dead-letter XADDs refused in a row; again at dead_retry_at_us */
	lv_usec_t dead_retry_at_us;
	bool want_load;         /* it may hold claimed entries whose attempt counts are unread */
	bool load_pending;      /* an HMGET of claimed entries' attempt counts is in flight */
	int load_failures;      /* HMGETs refused in a row; again at load_retry_at_us */
	lv_usec_t load_retry_at_us;
	bool prune_pending;     /* a prune of the attempts hash is in flight */
	lv_usec_t prune_at_us;
	uint64_t prune_ms;      /* the trim point of the running prune scan */
	uint64_t attempts_pruned_ms; /* fields of ids below <attempts_pruned_ms>-0 were deleted */
	char prune_cursor[32];  /* HSCAN cursor of the running prune scan; "" between scans */
	int attempts_errors;    /* commands on attempts_key refused in a row (for the log) */
	bool trim_pending;
	bool want_trim;
	lv_usec_t trim_at_us;
	uint64_t trim_ms;       /* ids below <trim_ms>-0 are trimmed: prune levee_applied */
	uint64_t pruned_ms;
	struct pgc *busy;       /* the connection applying a batch of p; NULL when none */
} part_t;

typedef enum batch_step {
	B_IDLE = 0,
	B_CONNECT,  /* waiting for the connection's READY */
	B_SETUP,    /* CREATE TABLE IF NOT EXISTS levee_applied */
	B_PIPE,     /* the whole batch in one pipeline: BEGIN, markers, statements, COMMIT, Sync */
	B_ROLLBACK, /* the pipeline failed inside its transaction: ROLLBACK before the fallback */
	B_BEGIN,    /* fallback: BEGIN; SELECT already applied ids */
	B_ENTRY,    /* fallback: one entry's savepoint, marker and statement */
	B_COMMIT,   /* fallback: COMMIT */
} batch_step_t;

/*
 * One PostgreSQL connection of a database and the batch it runs (at most
 * one at a time). The batch fields are meaningful while step != B_IDLE.
 */
typedef struct pgc {
	struct dbq *q;    /* owner; set once */
	char user[LV_NAME_LEN];
	lv_wq_pg_t *h;
	bool is_ready;
	bool has_table;   /* levee_applied known to exist */
	lv_usec_t used_us;
	/* The running batch. */
	batch_step_t step;
	part_t *part;
	entry_t **ent;          /* the batch's entries, in stream order */
	int n_ent, cap_ent;
	int bi;                 /* fallback: entry being applied */
	int rfq_left;           /* ReadyForQuery messages still expected for this step */
	bool step_error;        /* an ErrorResponse arrived in this step */
	bool query_error;       /* it came before the statement's part (marker or savepoint) */
	char err_state[6];
	char *err_msg;          /* owned */
	bool prev_failed;       /* fallback: the previous entry needs ROLLBACK TO */
	bool prev_open;         /* fallback: a savepoint is open */
	bool commit_ok;         /* CommandComplete "COMMIT" seen */
	uint64_t prune_ms;      /* this batch deletes levee_applied ids below <prune_ms>-0 */
} pgc_t;

typedef struct dbq {
	struct lv_wq *wq;
	char name[LV_NAME_LEN];
	bool is_active;         /* in the current config with consumers on */
	bool has_server_user;   /* [database] user set: one connection for every message */
	part_t parts[LV_WQ_PARTITIONS];
	char dead_key[LV__WQ_KEY_LEN];
	char stats_key[LV__WQ_KEY_LEN];
	lv_redis_t *reader;
	bool read_pending;
	int read_failures;      /* XREADGROUPs refused in a row; again at read_retry_at_us */
	lv_usec_t read_retry_at_us;
	int inflight;           /* entries held, all parts */
	unsigned next_part;     /* round robin for batches */
	pgc_t conns[MAX_CONNS]; /* each runs at most one batch: up to MAX_CONNS parts at once */
	entry_t **scratch;      /* collect() fills it; swapped into the connection that runs it */
	int n_scratch, cap_scratch;
	int batch_failures;     /* in a row, for the whole-batch backoff */
	lv_usec_t batch_retry_at_us;
} dbq_t;

struct lv_wq {
	lv_loop_t *loop;
	char instance_id[128];
	lv_wq_pg_ops_t pg;
	lv_wq_applied_fn on_applied;
	void *applied_arg;
	bool crash_after_commit;
	lv_config_t *cfg;
	char *redis_url;        /* the URL the connections use */
	lv_redis_t *cmd;        /* leases, acks, trims, dead letters */
	dbq_t **dbs;
	size_t n_dbs;
	struct event *timer;
	struct event *linger;   /* one-shot: the earliest end of a lingering batch */
	lv_usec_t linger_at_us; /* when linger fires; 0 if not armed */
	bool closing;
};

static void pump(dbq_t *q);
static void batch_fail(pgc_t *c, const char *why);

/*
 * The [queue] settings are read from wq->cfg as they are: the key table
 * (config/config_keys.c) gives each its default and keeps it in range.
 */

/* Delay before retry number attempt of a message or, counted apart, of a failed batch. */
static int64_t retry_delay_ms(const lv_wq_t *wq, int attempt)
{
	return lv_wq_backoff_ms(attempt, wq->cfg->queue.retry_backoff_ms,
				wq->cfg->queue.retry_backoff_max_ms);
}

/* ------------------------------------------------------------------ entries */

static void entry_free(entry_t *e)
{
	lv_wq_decoded_cleanup(&e->msg);
	lv_free(e->last_error);
	lv_free(e);
}

static void entry_remove(part_t *p, entry_t *e)
{
	lv_list_unlink(&e->node);
	p->n_entries--;
	p->q->inflight--;
	entry_free(e);
}

/*
 * Forgets p's entries (they stay pending in Redis for the next owner), but
 * not those with a dead-letter command in flight unless all: its callback
 * holds the entry.
 */
static void drop_entries(part_t *p, bool all)
{
	lv_list_t *pos, *tmp;
	lv_list_for_each_safe(pos, tmp, &p->entries)
	{
		entry_t *e = lv_container_of(pos, entry_t, node);
		if (all || e->state != E_DEADING)
			entry_remove(p, e);
	}
}

/*
 * Adds one stream entry [id, [field, value, ...]] to p in state st (E_WAITING
 * for a new message, E_LOADING for a claimed one); false if it is not one.
 */
static bool add_entry(part_t *p, const lv_redis_reply_t *item, entry_state_t st)
{
	size_t id_len = 0;
	const char *id = lv_redis_reply_str(lv_redis_reply_at(item, 0), &id_len);
	const lv_redis_reply_t *fields = lv_redis_reply_at(item, 1);
	if (!id || id_len == 0 || id_len >= sizeof(((entry_t *)0)->id))
		return false;
	const char *payload = NULL;
	size_t plen = 0;
	for (size_t i = 0; i + 1 < lv_redis_reply_len(fields); i += 2) {
		size_t flen;
		const char *f = lv_redis_reply_str(lv_redis_reply_at(fields, i), &flen);
		if (f && flen == 1 && f[0] == 'm')
			payload = lv_redis_reply_str(lv_redis_reply_at(fields, i + 1), &plen);
	}
	if (!payload)
		plen = 0;
	/* One allocation per entry: the payload follows the struct. */
	entry_t *e = lv_calloc(1, sizeof(*e) + plen + 1);
	if (!e)
		return false;
	memcpy(e->id, id, id_len);
	uint64_t seq;
	if (!lv_wq_parse_id(e->id, &e->id_ms, &seq))
		e->id_ms = 0;
	if (payload)
		memcpy(e->payload, payload, plen);
	e->payload_len = plen;
	e->state = st;
	e->seen_us = lv_time_now_us();
	lv_err_t err = {0};
	if (!payload || lv_wq_decode(payload, plen, &e->msg, &err) != 0) {
		char why[LV_ERR_MSG_LEN + 40];
		snprintf(why, sizeof(why), "malformed queue message: %s",
			 payload ? err.msg : "no field m");
		e->state = E_DEAD;
		e->last_error = lv_strdup(why);
		lv_log_warn("queue %s: entry %s is malformed (%s); dead-lettering it", p->stream, e->id,
			    why);
	}
	lv_list_insert_tail(&p->entries, &e->node);
	p->n_entries++;
	p->q->inflight++;
	return true;
}

/* =============================================================== Redis side */

static bool cmd_argv(lv_wq_t *wq, lv_redis_cb cb, void *arg, int argc, const char *const *argv)
{
	if (!wq->cmd || !lv_redis_is_up(wq->cmd))
		return false;
	return lv_redis_cmd(wq->cmd, cb, arg, argc, argv, NULL);
}

static bool is_error(const lv_redis_reply_t *reply, const char *prefix)
{
	size_t len;
	const char *s = lv_redis_reply_str(reply, &len);
	return lv_redis_reply_type(reply) == LV_REDIS_ERROR && s &&
	       strncmp(s, prefix, strlen(prefix)) == 0;
}

static void lose_lease(part_t *p, const char *why)
{
	if (p->has_lease)
		lv_log_info("queue %s: lease lost (%s)", p->stream, why);
	p->has_lease = false;
	p->is_claimed = false;
	int64_t ttl_us = p->q->wq->cfg->queue.claim_idle_ms * LV_USEC_PER_MS;
	p->lease_try_at_us = lv_time_now_us() + ttl_us / 3;
	/* Entries of a running batch go when it ends. */
	if (!p->busy)
		drop_entries(p, false);
}

/* The text of an error reply for a log line: at most 200 bytes, NUL-terminated in buf. */
static const char *reply_text(const lv_redis_reply_t *reply, char buf[static 208])
{
	size_t len = 0;
	const char *s = lv_redis_reply_str(reply, &len);
	if (!reply)
		return "Redis connection lost";
	snprintf(buf, 208, "%.*s", (int)LV_MIN(len, 200), s ? s : "");
	return buf;
}

/*
 * The consumer group went away under a running consumer (XGROUP DESTROY, the
 * stream deleted, Redis restarted empty): say so; pump() creates it again.
 */
static void log_group_gone(const char *where, const lv_redis_reply_t *reply)
{
	char why[208];
	lv_log_warn("queue %s: consumer group " LV_WQ_GROUP " is gone (%s); creating it again", where,
		    reply_text(reply, why));
}

static void group_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	part_t *p = arg;
	if (p->q->wq->closing)
		return;
	p->group_pending = false;
	bool ok = lv_redis_reply_type(reply) == LV_REDIS_STATUS || is_error(reply, "BUSYGROUP");
	if (reply && ok) {
		p->has_group = true;
		p->group_failures = 0;
	} else if (reply) {
		/* WRONGTYPE, say: the key holds no stream. This partition waits; others go on. */
		lv_metric_inc_l(LV_M_QUEUE_CONSUMER_REDIS_ERRORS_TOTAL, LV_ML_QUEUE_REDIS_OP_GROUP);
		int64_t d = retry_delay_ms(p->q->wq, ++p->group_failures);
		p->group_retry_at_us = lv_time_now_us() + d * LV_USEC_PER_MS;
		if (p->group_failures == 1 || p->group_failures % 10 == 0) {
			char why[208];
			lv_log_warn("queue %s: XGROUP CREATE failed (%s); its messages wait, retrying in "
				    "%lld ms", p->stream, reply_text(reply, why), (long long)d);
		}
	}
	pump(p->q);
}

static void lease_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	part_t *p = arg;
	if (p->q->wq->closing)
		return;
	p->lease_pending = false;
	lv_usec_t now = lv_time_now_us();
	int64_t ttl_us = p->q->wq->cfg->queue.claim_idle_ms * LV_USEC_PER_MS;
	bool won = (lv_redis_reply_type(reply) == LV_REDIS_STATUS) ||
		   (lv_redis_reply_type(reply) == LV_REDIS_INTEGER && lv_redis_reply_int(reply) == 1);
	if (won) {
		if (!p->has_lease) {
			lv_log_info("queue %s: lease taken by %s", p->stream, p->q->wq->instance_id);
			p->claim_cursor[0] = '\0'; /* a new lease claims every pending entry */
		}
		p->has_lease = true;
		p->lease_renew_at_us = now + ttl_us / 3;
	} else if (p->has_lease && reply) {
		lose_lease(p, "renewal refused");
	} else if (!p->has_lease) {
		p->lease_try_at_us = now + LV_MIN(ttl_us / 3, 1000 * LV_USEC_PER_MS);
	}
	/* reply NULL while holding it: retried by the next pump; it expires if Redis stays away. */
	pump(p->q);
}

static const char RENEW_LUA[] =
	"if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
	"  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
	"end\n"
	"return 0\n";

static void send_lease(part_t *p)
{
	lv_wq_t *wq = p->q->wq;
	char ttl[32];
	snprintf(ttl, sizeof(ttl), "%lld", (long long)wq->cfg->queue.claim_idle_ms);
	bool ok;
	if (p->has_lease) {
		const char *argv[] = {"EVAL", RENEW_LUA, "1", p->lease_key, wq->instance_id, ttl};
		ok = cmd_argv(wq, lease_cb, p, 6, argv);
	} else {
		const char *argv[] = {"SET", p->lease_key, wq->instance_id, "NX", "PX", ttl};
		ok = cmd_argv(wq, lease_cb, p, 6, argv);
	}
	p->lease_pending = ok;
}

/* Whether p holds an entry with this id. */
static bool holds_id(part_t *p, const char *id)
{
	lv_list_t *pos;
	if (!id)
		return false;
	lv_list_for_each(pos, &p->entries)
	{
		if (strcmp(lv_container_of(pos, entry_t, node)->id, id) == 0)
			return true;
	}
	return false;
}

static void claim_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	part_t *p = arg;
	if (p->q->wq->closing)
		return;
	p->claim_pending = false;
	if (!reply || lv_redis_reply_type(reply) != LV_REDIS_ARRAY) {
		lv_metric_inc_l(LV_M_QUEUE_CONSUMER_REDIS_ERRORS_TOTAL, LV_ML_QUEUE_REDIS_OP_CLAIM);
		if (is_error(reply, "NOGROUP")) {
			if (p->has_group)
				log_group_gone(p->stream, reply);
			p->has_group = false;
		}
		pump(p->q);
		return;
	}
	size_t clen;
	const char *cursor = lv_redis_reply_str(lv_redis_reply_at(reply, 0), &clen);
	const lv_redis_reply_t *items = lv_redis_reply_at(reply, 1);
	/*
	 * Also while a batch of p runs (it may have started since the claim was
	 * sent): the claimed entries are later in the stream than those held.
	 * An id already held (a claim that restarted) is not added twice.
	 */
	if (p->has_lease) {
		for (size_t i = 0; i < lv_redis_reply_len(items); i++) {
			const lv_redis_reply_t *item = lv_redis_reply_at(items, i);
			if (!holds_id(p, lv_redis_reply_str(lv_redis_reply_at(item, 0), NULL)) &&
			    add_entry(p, item, E_LOADING))
				p->want_load = true;
		}
	}
	/* Entries deleted from the stream while pending: acknowledge them. */
	const lv_redis_reply_t *deleted = lv_redis_reply_at(reply, 2);
	for (size_t i = 0; i < lv_redis_reply_len(deleted); i++) {
		const char *id = lv_redis_reply_str(lv_redis_reply_at(deleted, i), NULL);
		if (id) {
			const char *argv[] = {"XACK", p->stream, LV_WQ_GROUP, id};
			(void)cmd_argv(p->q->wq, NULL, NULL, 4, argv);
		}
	}
	if (!cursor || clen >= sizeof(p->claim_cursor) || (clen == 3 && memcmp(cursor, "0-0", 3) == 0)) {
		p->is_claimed = true;
		if (p->n_entries)
			lv_log_info("queue %s: took over %d pending messages", p->stream, p->n_entries);
	} else {
		memcpy(p->claim_cursor, cursor, clen);
		p->claim_cursor[clen] = '\0';
	}
	pump(p->q);
}

static void send_claim(part_t *p)
{
	lv_wq_t *wq = p->q->wq;
	if (!p->claim_cursor[0])
		snprintf(p->claim_cursor, sizeof(p->claim_cursor), "0-0");
	char count[16];
	snprintf(count, sizeof(count), "%d", LV_MAX(wq->cfg->queue.batch_size, 100));
	const char *argv[] = {"XAUTOCLAIM", p->stream, LV_WQ_GROUP, wq->instance_id, "0",
			      p->claim_cursor, "COUNT", count};
	p->claim_pending = cmd_argv(wq, claim_cb, p, 8, argv);
}

static void read_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	dbq_t *q = arg;
	if (q->wq->closing)
		return;
	q->read_pending = false;
	if (lv_redis_reply_type(reply) == LV_REDIS_ERROR) {
		lv_metric_inc_l(LV_M_QUEUE_CONSUMER_REDIS_ERRORS_TOTAL, LV_ML_QUEUE_REDIS_OP_READ);
		/*
		 * Which stream the error is about is only in its text: check the
		 * group of every one again (XGROUP CREATE ... MKSTREAM answers
		 * BUSYGROUP where it is fine), so that a stream that lost its group
		 * gets it back and one that cannot have one (a key of another type)
		 * is left out of the next reads while the others go on.
		 */
		bool had = false;
		for (unsigned i = 0; i < LV_WQ_PARTITIONS; i++) {
			had = had || q->parts[i].has_group;
			q->parts[i].has_group = false;
		}
		if (is_error(reply, "NOGROUP") || is_error(reply, "UNBLOCKED")) {
			/* UNBLOCKED: the stream was deleted while the read waited on it. */
			if (had)
				log_group_gone(q->name, reply);
		} else {
			int64_t d = retry_delay_ms(q->wq, ++q->read_failures);
			q->read_retry_at_us = lv_time_now_us() + d * LV_USEC_PER_MS;
			if (q->read_failures == 1 || q->read_failures % 10 == 0) {
				char why[208];
				lv_log_warn("queue %s: XREADGROUP failed (%s); retrying in %lld ms",
					    q->name, reply_text(reply, why), (long long)d);
			}
		}
	} else if (reply) {
		q->read_failures = 0;
	}
	for (size_t s = 0; s < lv_redis_reply_len(reply); s++) {
		const lv_redis_reply_t *sr = lv_redis_reply_at(reply, s);
		const char *name = lv_redis_reply_str(lv_redis_reply_at(sr, 0), NULL);
		const lv_redis_reply_t *items = lv_redis_reply_at(sr, 1);
		for (unsigned i = 0; name && i < LV_WQ_PARTITIONS; i++) {
			part_t *p = &q->parts[i];
			if (strcmp(p->stream, name) != 0)
				continue;
			/* A lease lost meanwhile: the entries stay pending for the next owner. */
			if (!p->has_lease || !p->is_claimed)
				break;
			for (size_t k = 0; k < lv_redis_reply_len(items); k++)
				(void)add_entry(p, lv_redis_reply_at(items, k), E_WAITING);
		}
	}
	pump(q);
}

static void send_read(dbq_t *q)
{
	lv_wq_t *wq = q->wq;
	if (q->read_pending || !q->reader || !lv_redis_is_up(q->reader) ||
	    lv_time_now_us() < q->read_retry_at_us)
		return;
	int room = wq->cfg->queue.max_inflight - q->inflight;
	if (room <= 0)
		return;
	const char *argv[9 + 2 * LV_WQ_PARTITIONS];
	int n_streams = 0;
	part_t *ready[LV_WQ_PARTITIONS];
	for (unsigned i = 0; i < LV_WQ_PARTITIONS; i++) {
		part_t *p = &q->parts[i];
		if (p->has_lease && p->is_claimed && p->has_group)
			ready[n_streams++] = p;
	}
	if (n_streams == 0)
		return;
	int count = LV_MIN(wq->cfg->queue.batch_size, LV_MAX(1, room / n_streams));
	int64_t wait_ms = LV_MIN(LV_MAX(wq->cfg->queue.max_wait_ms, 10), 5000);
	char count_s[16], block_s[32];
	snprintf(count_s, sizeof(count_s), "%d", count);
	snprintf(block_s, sizeof(block_s), "%lld", (long long)wait_ms);
	int n = 0;
	argv[n++] = "XREADGROUP";
	argv[n++] = "GROUP";
	argv[n++] = LV_WQ_GROUP;
	argv[n++] = wq->instance_id;
	argv[n++] = "COUNT";
	argv[n++] = count_s;
	argv[n++] = "BLOCK";
	argv[n++] = block_s;
	argv[n++] = "STREAMS";
	for (int i = 0; i < n_streams; i++)
		argv[n++] = ready[i]->stream;
	for (int i = 0; i < n_streams; i++)
		argv[n++] = ">";
	q->read_pending = lv_redis_cmd(q->reader, read_cb, q, n, argv, NULL);
}

/* ------------------------------------------------------------ acks and trims */

/*
 * KEYS: the database's partitions, then its stats hash; ARGV: the group, the
 * partition to trim (1-based). Trims it to its oldest pending (or first
 * undelivered) id, then sets the stats hash's len to the partitions' exact
 * total, which heals a count that drifted (a stream deleted by hand, a
 * producer that does not count). Returns the trim point, or "" if none.
 */
static const char TRIM_LUA[] =
	"local s = KEYS[tonumber(ARGV[2])]\n"
	"local minid = ''\n"
	"local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', s)\n"
	"local last = nil\n"
	"if ok then\n"
	"  for _, g in ipairs(groups) do\n"
	"    local name, ld\n"
	"    for i = 1, #g, 2 do\n"
	"      if g[i] == 'name' then name = g[i + 1]\n"
	"      elseif g[i] == 'last-delivered-id' then ld = g[i + 1] end\n"
	"    end\n"
	"    if name == ARGV[1] then last = ld end\n"
	"  end\n"
	"end\n"
	"if last then\n"
	"  local p = redis.call('XPENDING', s, ARGV[1])\n"
	"  if p[1] > 0 then minid = p[2] else\n"
	"    local ms, seq = string.match(last, '^(%d+)-(%d+)$')\n"
	"    if ms then minid = ms .. '-' .. string.format('%d', tonumber(seq) + 1) end\n"
	"  end\n"
	"  if minid ~= '' then redis.call('XTRIM', s, 'MINID', minid) end\n"
	"end\n"
	"local n = 0\n"
	"for i = 1, #KEYS - 1 do\n"
	"  local l = redis.pcall('XLEN', KEYS[i])\n"
	"  if type(l) == 'number' then n = n + l end\n"
	"end\n"
	"redis.call('HSET', KEYS[#KEYS], 'len', n)\n"
	"return minid\n";

static void trim_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	part_t *p = arg;
	if (p->q->wq->closing)
		return;
	p->trim_pending = false;
	const char *s = lv_redis_reply_str(reply, NULL);
	uint64_t ms, seq;
	if (s && lv_wq_parse_id(s, &ms, &seq))
		p->trim_ms = ms;
}

static void send_trim(part_t *p)
{
	char nkeys[16], idx[16];
	const char *argv[3 + LV_WQ_PARTITIONS + 1 + 2];
	int n = 0;
	snprintf(nkeys, sizeof(nkeys), "%d", LV_WQ_PARTITIONS + 1);
	snprintf(idx, sizeof(idx), "%u", p->idx + 1);
	argv[n++] = "EVAL";
	argv[n++] = TRIM_LUA;
	argv[n++] = nkeys;
	for (unsigned i = 0; i < LV_WQ_PARTITIONS; i++)
		argv[n++] = p->q->parts[i].stream;
	argv[n++] = p->q->stats_key;
	argv[n++] = LV_WQ_GROUP;
	argv[n++] = idx;
	p->trim_pending = cmd_argv(p->q->wq, trim_cb, p, n, argv);
	if (p->trim_pending) {
		p->want_trim = false;
		p->trim_at_us = lv_time_now_us() + TRIM_EVERY_US;
	}
}

/* Adds n to field of the database's cluster-wide counters (SHOW QUEUE); not waited for. */
static void stats_add(dbq_t *q, const char *field, int n)
{
	char num[16];
	snprintf(num, sizeof(num), "%d", n);
	const char *argv[] = {"HINCRBY", q->stats_key, field, num};
	(void)cmd_argv(q->wq, NULL, NULL, 4, argv);
}

/* ---------------------------------------------------------- attempt counts */

/*
 * A message's failed applications are counted in the hash <stream>:attempts
 * (field: the message id), shared by every instance, so neither a restart nor
 * a partition moving to another instance gives a failing message a fresh set
 * of attempts. The entry's own count is the floor: what Redis answers can
 * only raise it, and a failure the hash missed (a refused command) is written
 * back with the next one.
 */

/* Adds one failure of each id, but stores at least the given count: returns the new counts. */
static const char COUNT_LUA[] =
	"local r = {}\n"
	"for i = 1, #ARGV, 2 do\n"
	"  local n = redis.call('HINCRBY', KEYS[1], ARGV[i], 1)\n"
	"  local floor = tonumber(ARGV[i + 1])\n"
	"  if floor and n < floor then\n"
	"    redis.call('HSET', KEYS[1], ARGV[i], floor)\n"
	"    n = floor\n"
	"  end\n"
	"  r[#r + 1] = n\n"
	"end\n"
	"return r\n";

/*
 * One step of a scan of the hash (HSCAN from cursor ARGV[1]): deletes the
 * fields of ids below <ARGV[2]>-0, which are acknowledged and trimmed and so
 * never delivered again; returns the next cursor ("0" at the end).
 */
static const char PRUNE_LUA[] =
	"local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', 100)\n"
	"local below = tonumber(ARGV[2])\n"
	"for i = 1, #r[2], 2 do\n"
	"  local ms = tonumber(string.match(r[2][i], '^(%d+)-%d+$') or '')\n"
	"  if ms and ms < below then redis.call('HDEL', KEYS[1], r[2][i]) end\n"
	"end\n"
	"return r[1]\n";

/* Ids sent at most in one HMGET; the claimed entries left wait for the next one. */
#define LOAD_MAX 1000
#define PRUNE_EVERY_US (10 * LV_USEC_PER_SEC)

/*
 * The ids of a command on p's attempts hash and, for COUNT_LUA, the counts
 * sent. The reply finds its entries again by id (and state): an entry may
 * have been dropped meanwhile (lease lost), and then the answer is ignored.
 */
typedef struct attempts_req {
	part_t *p;
	int n;
	struct {
		char id[ID_LEN];
		char count[16];
	} item[];
} attempts_req_t;

static attempts_req_t *attempts_req_new(part_t *p, int n)
{
	attempts_req_t *a = lv_calloc(1, sizeof(*a) + (size_t)n * sizeof(a->item[0]));
	if (a)
		a->p = p;
	return a;
}

/* p's entry with this id in state st; NULL when there is none. */
static entry_t *find_entry(part_t *p, const char *id, entry_state_t st)
{
	lv_list_t *pos;
	lv_list_for_each(pos, &p->entries)
	{
		entry_t *e = lv_container_of(pos, entry_t, node);
		if (e->state == st && strcmp(e->id, id) == 0)
			return e;
	}
	return NULL;
}

/* Counts and logs a failed command on p's attempts hash (the first and every 10th logged). */
static void attempts_error(part_t *p, const char *what, const lv_redis_reply_t *reply,
			   const char *then)
{
	lv_metric_inc_l(LV_M_QUEUE_CONSUMER_REDIS_ERRORS_TOTAL, LV_ML_QUEUE_REDIS_OP_ATTEMPTS);
	p->attempts_errors++;
	if (p->attempts_errors == 1 || p->attempts_errors % 10 == 0) {
		char why[208];
		lv_log_warn("queue %s: %s of attempt counts in %s failed (%s); %s", p->stream, what,
			    p->attempts_key, reply_text(reply, why), then);
	}
}

/* An attempt count from Redis (a string, an integer or nil: 0); negative or garbage: 0. */
static int reply_count(const lv_redis_reply_t *rp)
{
	if (lv_redis_reply_type(rp) == LV_REDIS_INTEGER)
		return (int)LV_MIN(LV_MAX(lv_redis_reply_int(rp), 0), INT_MAX);
	const char *s = lv_redis_reply_str(rp, NULL);
	if (lv_redis_reply_type(rp) != LV_REDIS_STRING || !s)
		return 0;
	char *end = NULL;
	long long v = strtoll(s, &end, 10);
	return end != s && v > 0 ? (int)LV_MIN(v, INT_MAX) : 0;
}

/*
 * e's failure is counted (e->attempts final): at max_attempts it goes to the
 * dead stream, else it waits for its backoff. Returns whether it is retried.
 */
static bool attempt_counted(part_t *p, entry_t *e, lv_usec_t now)
{
	lv_wq_t *wq = p->q->wq;
	int max_attempts = wq->cfg->queue.max_attempts;
	if (e->attempts >= max_attempts) {
		e->state = E_DEAD;
		return false;
	}
	e->state = E_WAITING;
	int64_t d = retry_delay_ms(wq, e->attempts);
	e->retry_at_us = now + d * LV_USEC_PER_MS;
	lv_log_info("queue %s: message %s failed (attempt %d of %d, retry in %lld ms): %s",
		    p->stream, e->id, e->attempts, max_attempts, (long long)d,
		    e->last_error ? e->last_error : "");
	return true;
}

/* n_retried messages of p wait for a retry: count them, here and cluster-wide. */
static void add_retried(part_t *p, int n_retried)
{
	lv_metric_add(LV_M_QUEUE_RETRIED_TOTAL, 0, n_retried);
	if (n_retried)
		stats_add(p->q, "retried", n_retried);
}

/*
 * The counts of a's entries are known (reply: COUNT_LUA's answer, or NULL or
 * an error: their own counts stand): each is retried or dead-lettered.
 */
static void counts_done(attempts_req_t *a, const lv_redis_reply_t *reply)
{
	part_t *p = a->p;
	bool ok = lv_redis_reply_type(reply) == LV_REDIS_ARRAY;
	lv_usec_t now = lv_time_now_us();
	int n_retried = 0;
	for (int i = 0; i < a->n; i++) {
		entry_t *e = find_entry(p, a->item[i].id, E_COUNTING);
		if (!e)
			continue;
		if (ok)
			e->attempts = LV_MAX(e->attempts,
					     reply_count(lv_redis_reply_at(reply, (size_t)i)));
		n_retried += attempt_counted(p, e, now);
	}
	add_retried(p, n_retried);
}

static void count_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	attempts_req_t *a = arg;
	part_t *p = a->p;
	if (p->q->wq->closing) {
		lv_free(a);
		return;
	}
	if (!reply || lv_redis_reply_type(reply) != LV_REDIS_ARRAY)
		attempts_error(p, "storing", reply,
			       "the consumer's own counts decide (stored with the next failure)");
	else
		p->attempts_errors = 0;
	counts_done(a, reply);
	lv_free(a);
	pump(p->q);
}

/*
 * Stores one more failure of each E_COUNTING entry among the n of ent (all
 * of p) in one command; their fate is decided when it answers, or at once
 * with their own counts when it cannot be sent.
 */
static void send_counts(part_t *p, entry_t *const *ent, int n)
{
	int k = 0;
	for (int i = 0; i < n; i++)
		k += ent[i]->state == E_COUNTING;
	if (k == 0)
		return;
	attempts_req_t *a = attempts_req_new(p, k);
	const char **argv = lv_malloc(sizeof(char *) * (size_t)(4 + 2 * k));
	if (!a || !argv) {
		/* Out of memory: decide with the entries' own counts. */
		lv_free(a);
		lv_free(argv);
		lv_usec_t now = lv_time_now_us();
		int n_retried = 0;
		for (int i = 0; i < n; i++)
			if (ent[i]->state == E_COUNTING)
				n_retried += attempt_counted(p, ent[i], now);
		add_retried(p, n_retried);
		return;
	}
	int argc = 0;
	argv[argc++] = "EVAL";
	argv[argc++] = COUNT_LUA;
	argv[argc++] = "1";
	argv[argc++] = p->attempts_key;
	for (int i = 0; i < n; i++) {
		entry_t *e = ent[i];
		if (e->state != E_COUNTING)
			continue;
		memcpy(a->item[a->n].id, e->id, sizeof(e->id));
		snprintf(a->item[a->n].count, sizeof(a->item[a->n].count), "%d", e->attempts);
		argv[argc++] = a->item[a->n].id;
		argv[argc++] = a->item[a->n].count;
		a->n++;
	}
	bool sent = cmd_argv(p->q->wq, count_cb, a, argc, argv);
	lv_free(argv);
	if (!sent) {
		attempts_error(p, "storing", NULL, "the consumer's own counts decide");
		counts_done(a, NULL);
		lv_free(a);
	}
}

static void load_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	attempts_req_t *a = arg;
	part_t *p = a->p;
	if (p->q->wq->closing) {
		lv_free(a);
		return;
	}
	p->load_pending = false;
	lv_usec_t now = lv_time_now_us();
	if (!reply || lv_redis_reply_type(reply) != LV_REDIS_ARRAY ||
	    lv_redis_reply_len(reply) != (size_t)a->n) {
		/* The claimed entries keep waiting, their keys held: read again after a backoff. */
		int64_t d = retry_delay_ms(p->q->wq, ++p->load_failures);
		p->load_retry_at_us = now + d * LV_USEC_PER_MS;
		attempts_error(p, "reading", reply, "the claimed messages wait for it");
		lv_free(a);
		pump(p->q);
		return;
	}
	p->load_failures = 0;
	p->attempts_errors = 0;
	int max_attempts = p->q->wq->cfg->queue.max_attempts;
	for (int i = 0; i < a->n; i++) {
		entry_t *e = find_entry(p, a->item[i].id, E_LOADING);
		if (!e)
			continue;
		e->attempts = LV_MAX(e->attempts, reply_count(lv_redis_reply_at(reply, (size_t)i)));
		if (e->attempts >= max_attempts) {
			/* Out of attempts already: its last owner failed it that often. */
			e->state = E_DEAD;
			if (!e->last_error)
				e->last_error = lv_strdup("out of attempts when claimed (the last "
							  "error was seen by another consumer)");
			continue;
		}
		e->state = E_WAITING;
		if (e->attempts > 0) {
			/* When it last failed is not kept: a whole backoff from now. */
			int64_t d = retry_delay_ms(p->q->wq, e->attempts);
			e->retry_at_us = now + d * LV_USEC_PER_MS;
			lv_log_info("queue %s: claimed message %s has failed %d of %d attempts; "
				    "next in %lld ms", p->stream, e->id, e->attempts, max_attempts,
				    (long long)d);
		}
	}
	lv_free(a);
	pump(p->q);
}

/* Reads the attempt counts of p's claimed entries (state E_LOADING), one HMGET. */
static void send_load(part_t *p)
{
	int k = 0;
	lv_list_t *pos;
	lv_list_for_each(pos, &p->entries)
	{
		k += lv_container_of(pos, entry_t, node)->state == E_LOADING;
	}
	k = LV_MIN(k, LOAD_MAX);
	if (k == 0) {
		p->want_load = false; /* none left: no more walks until a claim adds some */
		return;
	}
	attempts_req_t *a = attempts_req_new(p, k);
	const char **argv = lv_malloc(sizeof(char *) * (size_t)(2 + k));
	if (!a || !argv) {
		lv_free(a);
		lv_free(argv);
		return; /* again at the next pump */
	}
	int argc = 0;
	argv[argc++] = "HMGET";
	argv[argc++] = p->attempts_key;
	lv_list_for_each(pos, &p->entries)
	{
		entry_t *e = lv_container_of(pos, entry_t, node);
		if (e->state != E_LOADING || a->n >= k)
			continue;
		memcpy(a->item[a->n].id, e->id, sizeof(e->id));
		argv[argc++] = a->item[a->n].id;
		a->n++;
	}
	p->load_pending = cmd_argv(p->q->wq, load_cb, a, argc, argv);
	lv_free(argv);
	if (!p->load_pending)
		lv_free(a);
}

static void attempts_del_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	part_t *p = arg;
	if (p->q->wq->closing)
		return;
	if (!reply || lv_redis_reply_type(reply) == LV_REDIS_ERROR)
		attempts_error(p, "deleting", reply, "the fields go with the next prune");
}

/*
 * Deletes the attempt counts of p's acknowledged entries (state E_ACKING)
 * that have one; not waited for: a field left behind is harmless (its id is
 * never delivered again) and pruned once the stream is trimmed past it.
 */
static void send_attempts_del(part_t *p)
{
	int k = 0;
	lv_list_t *pos;
	lv_list_for_each(pos, &p->entries)
	{
		entry_t *e = lv_container_of(pos, entry_t, node);
		k += e->state == E_ACKING && e->attempts > 0;
	}
	if (k == 0)
		return;
	const char **argv = lv_malloc(sizeof(char *) * (size_t)(2 + k));
	if (!argv)
		return;
	int argc = 0;
	argv[argc++] = "HDEL";
	argv[argc++] = p->attempts_key;
	lv_list_for_each(pos, &p->entries)
	{
		entry_t *e = lv_container_of(pos, entry_t, node);
		if (e->state == E_ACKING && e->attempts > 0)
			argv[argc++] = e->id;
	}
	if (!cmd_argv(p->q->wq, attempts_del_cb, p, argc, argv))
		attempts_error(p, "deleting", NULL, "the fields go with the next prune");
	lv_free(argv);
}

static void prune_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	part_t *p = arg;
	if (p->q->wq->closing)
		return;
	p->prune_pending = false;
	size_t len = 0;
	const char *cursor = lv_redis_reply_str(reply, &len);
	if (!cursor || lv_redis_reply_type(reply) != LV_REDIS_STRING ||
	    len >= sizeof(p->prune_cursor)) {
		attempts_error(p, "pruning", reply, "pruning again later");
		p->prune_cursor[0] = '\0';
		p->prune_at_us = lv_time_now_us() + PRUNE_EVERY_US;
		return;
	}
	if (len == 1 && cursor[0] == '0') {
		p->attempts_pruned_ms = p->prune_ms;
		p->prune_cursor[0] = '\0';
		p->prune_at_us = lv_time_now_us() + PRUNE_EVERY_US;
		return;
	}
	memcpy(p->prune_cursor, cursor, len);
	p->prune_cursor[len] = '\0'; /* the scan goes on at the next pump */
}

/*
 * One step of the scan that deletes the attempt counts of ids below p's trim
 * point (left behind by a refused HDEL, a crash, or an old owner's late
 * count); a scan starts at most every PRUNE_EVERY_US, and only when the trim
 * point moved.
 */
static void send_prune(part_t *p)
{
	if (!p->prune_cursor[0]) {
		snprintf(p->prune_cursor, sizeof(p->prune_cursor), "0");
		p->prune_ms = p->trim_ms;
	}
	char below[32];
	snprintf(below, sizeof(below), "%llu", (unsigned long long)p->prune_ms);
	const char *argv[] = {"EVAL", PRUNE_LUA, "1", p->attempts_key, p->prune_cursor, below};
	p->prune_pending = cmd_argv(p->q->wq, prune_cb, p, 6, argv);
}

static void ack_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	part_t *p = arg;
	if (p->q->wq->closing)
		return;
	p->ack_pending = false;
	bool ok = reply && lv_redis_reply_type(reply) != LV_REDIS_ERROR;
	if (ok) {
		p->ack_failures = 0;
	} else {
		lv_metric_inc_l(LV_M_QUEUE_CONSUMER_REDIS_ERRORS_TOTAL, LV_ML_QUEUE_REDIS_OP_ACK);
		/* Sent again after a backoff: at once, the same error would come back at once. */
		int64_t d = retry_delay_ms(p->q->wq, ++p->ack_failures);
		p->ack_retry_at_us = lv_time_now_us() + d * LV_USEC_PER_MS;
		if (is_error(reply, "NOGROUP")) {
			if (p->has_group)
				log_group_gone(p->stream, reply);
			p->has_group = false;
		} else if (p->ack_failures == 1 || p->ack_failures % 10 == 0) {
			char why[208];
			lv_log_warn("queue %s: XACK failed (%s); the messages stay pending, retrying in "
				    "%lld ms", p->stream, reply_text(reply, why), (long long)d);
		}
	}
	if (ok)
		send_attempts_del(p);
	lv_list_t *pos, *tmp;
	int n_acked = 0;
	lv_list_for_each_safe(pos, tmp, &p->entries)
	{
		entry_t *e = lv_container_of(pos, entry_t, node);
		if (e->state != E_ACKING)
			continue;
		if (ok) {
			entry_remove(p, e);
			n_acked++;
		} else {
			e->state = E_ACK;
		}
	}
	if (n_acked)
		p->want_trim = true;
	pump(p->q);
}

/* XACK every entry of p in state E_ACK, in one command. */
static void send_acks(part_t *p)
{
	const char **argv = lv_malloc(sizeof(char *) * (size_t)(p->n_entries + 3));
	if (!argv)
		return;
	int k = 0;
	argv[k++] = "XACK";
	argv[k++] = p->stream;
	argv[k++] = LV_WQ_GROUP;
	lv_list_t *pos;
	lv_list_for_each(pos, &p->entries)
	{
		entry_t *e = lv_container_of(pos, entry_t, node);
		if (e->state == E_ACK)
			argv[k++] = e->id;
	}
	if (k > 3 && cmd_argv(p->q->wq, ack_cb, p, k, argv)) {
		p->ack_pending = true;
		lv_list_for_each(pos, &p->entries)
		{
			entry_t *e = lv_container_of(pos, entry_t, node);
			if (e->state == E_ACK)
				e->state = E_ACKING;
		}
	}
	lv_free(argv);
}

/* A dead-letter XADD in flight: its entry stays in p (state E_DEADING) until the reply. */
typedef struct dead_req {
	part_t *p;
	entry_t *e;
} dead_req_t;

static void dead_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	dead_req_t *a = arg;
	part_t *p = a->p;
	entry_t *e = a->e;
	lv_free(a);
	if (p->q->wq->closing)
		return;
	p->ack_pending = false;
	if (!reply || lv_redis_reply_type(reply) == LV_REDIS_ERROR) {
		/* Not acknowledged, so still pending: try again after a backoff, not at once. */
		lv_metric_inc_l(LV_M_QUEUE_CONSUMER_REDIS_ERRORS_TOTAL, LV_ML_QUEUE_REDIS_OP_DEAD_LETTER);
		e->state = E_DEAD;
		int64_t d = retry_delay_ms(p->q->wq, ++p->dead_failures);
		p->dead_retry_at_us = lv_time_now_us() + d * LV_USEC_PER_MS;
		if (p->dead_failures == 1 || p->dead_failures % 10 == 0) {
			char why[208];
			lv_log_warn("queue %s: cannot dead-letter message %s to %s (%s); it stays "
				    "pending, retrying in %lld ms", p->stream, e->id, p->q->dead_key,
				    reply_text(reply, why), (long long)d);
		}
		pump(p->q);
		return;
	}
	p->dead_failures = 0;
	lv_log_warn("queue %s: message %s dead-lettered after %d attempts: %s", p->stream, e->id,
		    e->attempts, e->last_error ? e->last_error : "");
	lv_metric_inc(LV_M_QUEUE_DEAD_LETTERED_TOTAL);
	stats_add(p->q, "dead", 1);
	/* Now in the dead stream: acknowledge the original. */
	e->state = E_ACK;
	send_acks(p);
	pump(p->q);
}

/* Appends one E_DEAD entry of p to the dead stream; its XACK follows the reply. */
static void send_dead(part_t *p, entry_t *e)
{
	char attempts[16];
	snprintf(attempts, sizeof(attempts), "%d", e->attempts);
	const char *argv[] = {"XADD", p->q->dead_key, "*", "id", e->id, "stream", p->stream,
			      "db", p->q->name, "payload", e->payload,
			      "error", e->last_error ? e->last_error : "", "attempts", attempts};
	size_t lens[LV_ARRAY_LEN(argv)];
	for (size_t i = 0; i < LV_ARRAY_LEN(argv); i++)
		lens[i] = strlen(argv[i]);
	lens[10] = e->payload_len;
	dead_req_t *a = lv_calloc(1, sizeof(*a));
	if (!a)
		return;
	a->p = p;
	a->e = e;
	lv_wq_t *wq = p->q->wq;
	if (wq->cmd && lv_redis_is_up(wq->cmd) &&
	    lv_redis_cmd(wq->cmd, dead_cb, a, (int)LV_ARRAY_LEN(argv), argv, lens)) {
		p->ack_pending = true;
		e->state = E_DEADING;
	} else {
		lv_free(a);
	}
}

/* ========================================================== PostgreSQL side */

static void pg_cb(void *arg, lv_wq_pg_event_t ev, uint8_t type, const uint8_t *body, size_t len,
		  const char *error);

/* Closes c's connection; its batch fields (and entry array) are left alone. */
static void conn_close(pgc_t *c)
{
	if (c->h)
		c->q->wq->pg.close(c->h);
	c->h = NULL;
	c->user[0] = '\0';
	c->is_ready = false;
	c->has_table = false;
	c->used_us = 0;
}

/* The connection slots this database may use: [queue] connections. */
static int conns_in_use(const dbq_t *q)
{
	return LV_MIN(LV_MAX(q->wq->cfg->queue.connections, 1), MAX_CONNS);
}

/*
 * An idle connection (no batch) for slot name key (the user, or "" with a
 * server user), opened as user when there is none: a free slot, else the
 * least recently used idle connection of another user, closed first. The
 * caller has made sure a slot is idle (has_idle_conn()); NULL when open failed.
 */
static pgc_t *conn_for(dbq_t *q, const char *key, const char *user)
{
	pgc_t *free_slot = NULL, *lru = NULL;
	for (int i = 0; i < conns_in_use(q); i++) {
		pgc_t *c = &q->conns[i];
		if (c->step != B_IDLE)
			continue;
		if (c->h && strcmp(c->user, key) == 0)
			return c;
		if (!c->h && !free_slot)
			free_slot = c;
		if (c->h && (!lru || c->used_us < lru->used_us))
			lru = c;
	}
	pgc_t *c = free_slot ? free_slot : lru;
	if (!c)
		return NULL;
	conn_close(c);
	snprintf(c->user, sizeof(c->user), "%s", key);
	c->h = q->wq->pg.open(q->wq->pg.ctx, q->name, user, pg_cb, c);
	if (!c->h) {
		conn_close(c);
		return NULL;
	}
	return c;
}

static bool pg_send(pgc_t *c, lv_buf_t *b, bool ok)
{
	ok = ok && c->h && c->q->wq->pg.send(c->h, b->data, b->len);
	lv_buf_cleanup(b);
	return ok;
}

/* Appends s as an SQL string literal ('...' with quotes doubled), a run at a time. */
static bool put_literal(lv_buf_t *b, const char *s)
{
	if (!lv_buf_append(b, "'", 1))
		return false;
	for (const char *q; (q = strchr(s, '\'')) != NULL; s = q + 1)
		if (!lv_buf_append(b, s, (size_t)(q - s) + 1) || !lv_buf_append(b, "'", 1))
			return false;
	return lv_buf_append_str(b, s) && lv_buf_append(b, "'", 1);
}

static bool write_query_buf(lv_buf_t *out, lv_buf_t *sql)
{
	bool ok = lv_buf_append(sql, "", 1); /* NUL */
	ok = ok && lv_wire_write_msg(out, PqMsg_Query, sql->data, sql->len);
	lv_buf_cleanup(sql);
	return ok;
}

static const char *savepoint_close(const pgc_t *c)
{
	if (!c->prev_open)
		return "";
	return c->prev_failed ? "ROLLBACK TO SAVEPOINT levee_m; RELEASE SAVEPOINT levee_m; "
			      : "RELEASE SAVEPOINT levee_m; ";
}

static void step_reset(pgc_t *c, batch_step_t step, int rfq)
{
	c->step = step;
	c->rfq_left = rfq;
	c->step_error = false;
	c->query_error = false;
	c->err_state[0] = '\0';
	lv_free(c->err_msg);
	c->err_msg = NULL;
}

/* Starts step, one simple Query of sql (one ReadyForQuery); the batch fails if not sent. */
static void send_step_query(pgc_t *c, batch_step_t step, const char *sql)
{
	lv_buf_t b;
	lv_buf_init(&b);
	step_reset(c, step, 1);
	if (!pg_send(c, &b, lv_wire_write_query(&b, sql)))
		batch_fail(c, "could not send to PostgreSQL");
}

/*
 * Creates levee_applied only when it is missing: CREATE TABLE IF NOT EXISTS
 * alone needs CREATE on the schema even when the table exists, and a queue
 * user that may only use its tables (and levee_applied) has not got it.
 */
static void send_setup(pgc_t *c)
{
	send_step_query(c, B_SETUP,
			"DO $levee$ BEGIN IF to_regclass('levee_applied') IS NULL THEN "
			"CREATE TABLE IF NOT EXISTS levee_applied (stream text NOT NULL, "
			"id text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), "
			"PRIMARY KEY (stream, id)); END IF; END $levee$");
}

/* Appends the DELETE of p's levee_applied rows below its trim point, if any is due. */
static bool put_prune(pgc_t *c, lv_buf_t *sql, const char *sep)
{
	part_t *p = c->part;
	c->prune_ms = 0;
	if (p->trim_ms <= p->pruned_ms)
		return true;
	c->prune_ms = p->trim_ms;
	return lv_buf_append_str(sql, sep) &&
	       lv_buf_append_str(sql, "DELETE FROM levee_applied WHERE stream = ") &&
	       put_literal(sql, p->stream) &&
	       lv_buf_printf(sql, " AND split_part(id, '-', 1)::bigint < %llu",
			     (unsigned long long)p->trim_ms);
}

/* Bind with per-parameter formats and binary-safe values. */
static bool write_bind(lv_buf_t *b, const lv_wq_decoded_t *m)
{
	lv_wire_msg_t msg;
	if (!lv_wire_msg_begin(b, PqMsg_Bind, &msg))
		return false;
	bool ok = lv_buf_append(b, "", 1) && lv_buf_append(b, "", 1) &&
		  lv_buf_put_u16(b, m->n_params);
	for (unsigned i = 0; ok && i < m->n_params; i++)
		ok = lv_buf_put_u16(b, (uint16_t)m->formats[i]);
	ok = ok && lv_buf_put_u16(b, m->n_params);
	for (unsigned i = 0; ok && i < m->n_params; i++) {
		ok = lv_buf_put_u32(b, (uint32_t)m->lens[i]);
		if (ok && m->lens[i] > 0)
			ok = lv_buf_append(b, m->values[i], (size_t)m->lens[i]);
	}
	ok = ok && lv_buf_put_u16(b, 0);
	if (!ok) {
		lv_wire_msg_abort(b, &msg);
		return false;
	}
	return lv_wire_msg_end(b, &msg);
}

/* Parse, Bind and Execute of sql (NUL-terminated, no parameters) on the unnamed statement. */
static bool put_pbe(lv_buf_t *b, const char *sql)
{
	return lv_wire_write_parse(b, "", sql, 0, NULL) && lv_wire_write_bind(b, "", "", 0, NULL) &&
	       lv_wire_write_execute(b, "", 0);
}

/*
 * The optimistic path: the whole batch in one pipeline and one round trip.
 * BEGIN; INSERT INTO levee_applied every id (a redelivered id fails it with
 * 23505); [DELETE below the trim point;] every statement; COMMIT; then the
 * one Sync. Any error makes the server skip the rest up to the Sync, so the
 * transaction commits whole or not at all; step_rfq() then falls back to
 * per-message savepoints (send_begin), which skips applied ids and
 * isolates a failing statement.
 */
static void send_pipeline(pgc_t *c)
{
	part_t *p = c->part;
	lv_buf_t sql, b;
	lv_buf_init(&sql);
	lv_buf_init(&b);
	bool ok = put_pbe(&b, "BEGIN") &&
		  lv_buf_append_str(&sql, "INSERT INTO levee_applied (stream, id) VALUES ");
	for (int i = 0; ok && i < c->n_ent; i++)
		ok = lv_buf_append_str(&sql, i == 0 ? "(" : ", (") &&
		     put_literal(&sql, p->stream) && lv_buf_append_str(&sql, ", ") &&
		     put_literal(&sql, c->ent[i]->id) && lv_buf_append_str(&sql, ")");
	ok = ok && lv_buf_append(&sql, "", 1) && put_pbe(&b, (const char *)sql.data);
	lv_buf_reset(&sql);
	ok = ok && put_prune(c, &sql, "");
	if (ok && sql.len > 0)
		ok = lv_buf_append(&sql, "", 1) && put_pbe(&b, (const char *)sql.data);
	lv_buf_cleanup(&sql);
	for (int i = 0; ok && i < c->n_ent; i++) {
		const lv_wq_decoded_t *m = &c->ent[i]->msg;
		ok = lv_wire_write_parse(&b, "", m->sql, m->n_params, m->types) &&
		     write_bind(&b, m) && lv_wire_write_execute(&b, "", 0);
	}
	ok = ok && put_pbe(&b, "COMMIT") && lv_wire_write_sync(&b);
	step_reset(c, B_PIPE, 1);
	c->commit_ok = false;
	if (!pg_send(c, &b, ok))
		batch_fail(c, ok ? "could not send to PostgreSQL" : "out of memory");
}

/*
 * The fallback's first step: BEGIN; SET CONSTRAINTS ALL IMMEDIATE; SELECT the
 * ids already applied [; prune]. With deferred constraints checked at the
 * end of each statement, a message that breaks one fails in its own
 * savepoint (an attempt of that message) instead of failing the COMMIT of
 * the whole batch, which would be retried whole for ever. It is also what
 * the statement alone, outside a transaction, would do.
 */
static void send_begin(pgc_t *c)
{
	part_t *p = c->part;
	lv_buf_t sql, b;
	lv_buf_init(&sql);
	lv_buf_init(&b);
	bool ok = lv_buf_append_str(&sql, "BEGIN; SET CONSTRAINTS ALL IMMEDIATE; "
					  "SELECT id FROM levee_applied WHERE stream = ") &&
		  put_literal(&sql, p->stream) && lv_buf_append_str(&sql, " AND id IN (");
	for (int i = 0; ok && i < c->n_ent; i++)
		ok = (i == 0 || lv_buf_append_str(&sql, ", ")) && put_literal(&sql, c->ent[i]->id);
	ok = ok && lv_buf_append_str(&sql, ")") && put_prune(c, &sql, "; ");
	step_reset(c, B_BEGIN, 1);
	c->prev_open = false;
	c->prev_failed = false;
	for (int i = 0; i < c->n_ent; i++)
		c->ent[i]->result = R_NONE;
	if (!ok) {
		lv_buf_cleanup(&sql);
		batch_fail(c, "out of memory");
		return;
	}
	if (!pg_send(c, &b, write_query_buf(&b, &sql)))
		batch_fail(c, "could not send to PostgreSQL");
}

/* The batch's first step once the connection is ready and levee_applied exists. */
static void send_first(pgc_t *c)
{
	/*
	 * An entry that failed before will likely fail again: go message by
	 * message at once rather than pay for a pipeline that rolls back.
	 */
	for (int i = 0; i < c->n_ent; i++) {
		if (c->ent[i]->attempts > 0) {
			send_begin(c);
			return;
		}
	}
	send_pipeline(c);
}

/* Whether an earlier entry of the batch with e's key failed or was deferred. */
static bool key_held(const pgc_t *c, int upto, const entry_t *e)
{
	for (int i = 0; i < upto; i++) {
		const entry_t *o = c->ent[i];
		if ((o->result == R_FAILED || o->result == R_DEFERRED) && strcmp(o->msg.key, e->msg.key) == 0)
			return true;
	}
	return false;
}

/* Fallback: sends the next entry not skipped, or the COMMIT when none is left. */
static void send_next(pgc_t *c)
{
	for (; c->bi < c->n_ent; c->bi++) {
		entry_t *e = c->ent[c->bi];
		if (e->result != R_NONE)
			continue;
		if (!key_held(c, c->bi, e))
			break;
		e->result = R_DEFERRED;
	}
	lv_buf_t sql, b;
	lv_buf_init(&sql);
	lv_buf_init(&b);
	bool ok;
	if (c->bi >= c->n_ent) {
		ok = lv_buf_append_str(&sql, savepoint_close(c)) &&
		     lv_buf_append_str(&sql, "COMMIT");
		step_reset(c, B_COMMIT, 1);
		c->commit_ok = false;
		if (!pg_send(c, &b, ok && write_query_buf(&b, &sql)))
			batch_fail(c, "could not send to PostgreSQL");
		return;
	}
	entry_t *e = c->ent[c->bi];
	ok = lv_buf_append_str(&sql, savepoint_close(c)) &&
	     lv_buf_append_str(&sql, "SAVEPOINT levee_m; INSERT INTO levee_applied (stream, id) VALUES (") &&
	     put_literal(&sql, c->part->stream) && lv_buf_append_str(&sql, ", ") &&
	     put_literal(&sql, e->id) && lv_buf_append_str(&sql, ")");
	ok = ok && write_query_buf(&b, &sql);
	ok = ok && lv_wire_write_parse(&b, "", e->msg.sql, e->msg.n_params, e->msg.types) &&
	     write_bind(&b, &e->msg) && lv_wire_write_execute(&b, "", 0) && lv_wire_write_sync(&b);
	if (!ok)
		lv_buf_cleanup(&sql);
	step_reset(c, B_ENTRY, 2);
	c->prev_open = true;
	if (!pg_send(c, &b, ok))
		batch_fail(c, "could not send to PostgreSQL");
}

/* Ends c's batch (its entries already have their new states) and frees its partition. */
static void batch_clear(pgc_t *c)
{
	if (c->part && c->part->busy == c)
		c->part->busy = NULL;
	c->step = B_IDLE;
	c->part = NULL;
	c->n_ent = 0;
	c->bi = 0;
	c->prune_ms = 0;
	lv_free(c->err_msg);
	c->err_msg = NULL;
}

/*
 * Puts e back to wait after its batch failed whole (not an attempt). It waits
 * for its own backoff, and one tick longer than the database's (db_delay_ms):
 * when the batch failed for a reason of its own (its user cannot log in),
 * the partition's other messages (other users) are collected first when the
 * database's backoff ends, instead of this one again.
 */
static void hold_entry(entry_t *e, const lv_wq_t *wq, lv_usec_t now, int64_t db_delay_ms)
{
	e->state = E_WAITING;
	e->result = R_NONE;
	e->holds++;
	int64_t d = LV_MAX(retry_delay_ms(wq, e->holds), db_delay_ms) + TICK_MS;
	lv_usec_t at = now + d * LV_USEC_PER_MS;
	if (at > e->retry_at_us)
		e->retry_at_us = at;
}

/* The whole batch failed: nothing acknowledged, entries wait for the backoff. */
static void batch_fail(pgc_t *c, const char *why)
{
	dbq_t *q = c->q;
	lv_wq_t *wq = q->wq;
	part_t *p = c->part;
	lv_metric_inc(LV_M_QUEUE_BATCH_FAILURES_TOTAL);
	q->batch_failures++;
	int64_t delay = retry_delay_ms(wq, q->batch_failures);
	lv_usec_t now = lv_time_now_us();
	q->batch_retry_at_us = now + delay * LV_USEC_PER_MS;
	if (q->batch_failures == 1 || q->batch_failures % 10 == 0)
		lv_log_warn("queue %s: batch of %d failed (%s); retrying in %lld ms", q->name,
			    c->n_ent, why, (long long)delay);
	for (int i = 0; i < c->n_ent; i++)
		hold_entry(c->ent[i], wq, now, delay);
	conn_close(c);
	batch_clear(c);
	if (p && !p->has_lease)
		drop_entries(p, false);
}

/* COMMIT succeeded: acknowledge, schedule retries, dead-letter, tell the cache. */
static void batch_done(pgc_t *c)
{
	dbq_t *q = c->q;
	lv_wq_t *wq = q->wq;
	part_t *p = c->part;
	if (wq->crash_after_commit) {
		lv_log_error("LEVEE_TEST_CRASH_AFTER_COMMIT: aborting after COMMIT, before XACK");
		abort();
	}
	q->batch_failures = 0;
	if (c->prune_ms > p->pruned_ms)
		p->pruned_ms = c->prune_ms;
	int n_applied = 0, n_skipped = 0;
	const char *tables[64];
	int n_tables = 0;
	for (int i = 0; i < c->n_ent; i++) {
		entry_t *e = c->ent[i];
		switch (e->result) {
		case R_APPLIED:
			n_applied++;
			e->state = E_ACK;
			if (e->msg.table && *e->msg.table) {
				bool seen = false;
				for (int k = 0; k < n_tables && !seen; k++)
					seen = strcmp(tables[k], e->msg.table) == 0;
				if (!seen && n_tables < (int)LV_ARRAY_LEN(tables))
					tables[n_tables++] = e->msg.table;
			}
			break;
		case R_SKIPPED:
			n_skipped++;
			e->state = E_ACK;
			break;
		case R_DEFERRED:
			e->state = E_WAITING; /* not an attempt: it never ran */
			break;
		case R_FAILED:
		case R_NONE:
		default:
			/* An attempt: retried or dead-lettered once Redis has the count. */
			e->attempts++;
			e->state = E_COUNTING;
			break;
		}
		e->result = R_NONE;
	}
	send_counts(p, c->ent, c->n_ent);
	lv_metric_inc(LV_M_QUEUE_BATCHES_TOTAL);
	lv_metric_add(LV_M_QUEUE_APPLIED_TOTAL, 0, n_applied);
	lv_metric_add(LV_M_QUEUE_SKIPPED_TOTAL, 0, n_skipped);
	lv_metric_observe_value(LV_M_QUEUE_BATCH_SIZE, 0, c->n_ent);
	if (n_applied)
		stats_add(q, "applied", n_applied);
	lv_log_debug("queue %s: batch committed: %d applied, %d skipped, %d failed", p->stream,
		     n_applied, n_skipped, c->n_ent - n_applied - n_skipped);
	if (n_tables && wq->on_applied)
		wq->on_applied(wq->applied_arg, q->name, tables, n_tables);
	batch_clear(c);
	if (!p->has_lease) {
		/* The partition is someone else's now: acknowledge what was applied, forget the rest. */
		send_acks(p);
		lv_list_t *pos, *tmp;
		lv_list_for_each_safe(pos, tmp, &p->entries)
		{
			entry_t *e = lv_container_of(pos, entry_t, node);
			if (e->state == E_WAITING || e->state == E_DEAD || e->state == E_COUNTING)
				entry_remove(p, e);
		}
	}
}

static void set_error(pgc_t *c, const uint8_t *body, size_t len)
{
	lv_wire_error_t e;
	if (c->step_error)
		return; /* keep the first */
	c->step_error = true;
	if (lv_wire_parse_error(body, len, &e) != 0) {
		snprintf(c->err_state, sizeof(c->err_state), "XX000");
		c->err_msg = lv_strdup("malformed ErrorResponse");
		return;
	}
	snprintf(c->err_state, sizeof(c->err_state), "%s", e.sqlstate ? e.sqlstate : "XX000");
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s: %s", c->err_state, e.message ? e.message : "error");
	c->err_msg = lv_strdup(buf);
}

/* One ReadyForQuery ended a part of the current step. */
static void step_rfq(pgc_t *c, uint8_t status)
{
	dbq_t *q = c->q;
	switch (c->step) {
	case B_SETUP:
		/*
		 * Another connection created it at the same moment: 23505 or 42710
		 * (its row type, in pg_type) or 42P07 (the table).
		 */
		if (c->step_error && strcmp(c->err_state, "23505") != 0 &&
		    strcmp(c->err_state, "42710") != 0 && strcmp(c->err_state, "42P07") != 0) {
			char why[1100];
			snprintf(why, sizeof(why), "cannot create levee_applied: %s", c->err_msg);
			batch_fail(c, why);
			return;
		}
		c->has_table = true;
		send_first(c);
		return;
	case B_PIPE:
		if (!c->step_error && c->commit_ok && status == 'I') {
			for (int i = 0; i < c->n_ent; i++)
				c->ent[i]->result = R_APPLIED;
			batch_done(c);
			pump(q);
			return;
		}
		/* Nothing of it committed: apply it again message by message. */
		lv_log_info("queue %s: pipelined batch of %d rolled back (%s); "
			    "applying it message by message",
			    c->part->stream, c->n_ent, c->err_msg ? c->err_msg : "no COMMIT");
		if (status == 'I')
			send_begin(c);
		else
			send_step_query(c, B_ROLLBACK, "ROLLBACK");
		return;
	case B_ROLLBACK:
		if (c->step_error || status != 'I') {
			batch_fail(c, c->err_msg ? c->err_msg : "ROLLBACK failed");
			return;
		}
		send_begin(c);
		return;
	case B_BEGIN:
		if (c->step_error || status != 'T') {
			batch_fail(c, c->err_msg ? c->err_msg : "BEGIN failed");
			return;
		}
		c->bi = 0;
		send_next(c);
		return;
	case B_ENTRY:
		if (--c->rfq_left > 0) {
			/* The Query part (savepoint + marker) is done; the statement's part follows. */
			if (c->step_error)
				c->query_error = true;
			return;
		}
		{
			entry_t *e = c->ent[c->bi];
			if (c->query_error) {
				if (strcmp(c->err_state, "23505") == 0) {
					e->result = R_SKIPPED; /* applied concurrently by another consumer */
					c->prev_failed = true;
				} else {
					batch_fail(c, c->err_msg ? c->err_msg : "savepoint failed");
					return;
				}
			} else if (c->step_error) {
				e->result = R_FAILED;
				lv_free(e->last_error);
				e->last_error = c->err_msg;
				c->err_msg = NULL;
				c->prev_failed = true;
			} else {
				e->result = R_APPLIED;
				c->prev_failed = false;
			}
			c->bi++;
			send_next(c);
		}
		return;
	case B_COMMIT:
		if (c->step_error || !c->commit_ok || status != 'I') {
			batch_fail(c, c->err_msg ? c->err_msg : "COMMIT did not commit");
			return;
		}
		batch_done(c);
		pump(q);
		return;
	default:
		return;
	}
}

static void pg_cb(void *arg, lv_wq_pg_event_t ev, uint8_t type, const uint8_t *body, size_t len,
		  const char *error)
{
	pgc_t *c = arg;
	dbq_t *q = c->q;
	if (q->wq->closing)
		return;
	bool is_batch = c->step != B_IDLE;
	if (ev == LV_WQ_PG_FAILED) {
		if (is_batch) {
			char why[300];
			snprintf(why, sizeof(why), "PostgreSQL: %s", error ? error : "connection failed");
			batch_fail(c, why); /* closes c */
		} else {
			conn_close(c);
		}
		return;
	}
	if (ev == LV_WQ_PG_READY) {
		c->is_ready = true;
		if (c->step == B_CONNECT) {
			if (c->has_table)
				send_first(c);
			else
				send_setup(c);
		}
		return;
	}
	if (!is_batch || c->step == B_CONNECT)
		return; /* notices and the like between batches */
	switch (type) {
	case PqMsg_ErrorResponse:
		set_error(c, body, len);
		break;
	case PqMsg_CommandComplete: {
		const char *tag = NULL;
		if ((c->step == B_COMMIT || c->step == B_PIPE) &&
		    lv_wire_parse_command_complete(body, len, &tag) == 0 && tag &&
		    strcmp(tag, "COMMIT") == 0)
			c->commit_ok = true;
		break;
	}
	case PqMsg_DataRow:
		if (c->step == B_BEGIN) {
			/* One id already applied: skip it. */
			lv_wire_reader_t r;
			lv_wire_reader_init(&r, body, len);
			if (lv_wire_get_u16(&r) != 1)
				break;
			int32_t n = lv_wire_get_i32(&r);
			const uint8_t *v = n > 0 ? lv_wire_get_bytes(&r, (size_t)n) : NULL;
			for (int i = 0; v && i < c->n_ent; i++)
				if (strlen(c->ent[i]->id) == (size_t)n &&
				    memcmp(c->ent[i]->id, v, (size_t)n) == 0)
					c->ent[i]->result = R_SKIPPED;
		}
		break;
	case PqMsg_ReadyForQuery: {
		uint8_t st = 0;
		if (lv_wire_parse_ready(body, len, &st) != 0) {
			batch_fail(c, "malformed ReadyForQuery");
			return;
		}
		step_rfq(c, st);
		break;
	}
	default:
		break;
	}
}

/* ------------------------------------------------------------------ batches */

static bool key_blocked(const char *const *keys, int n, const char *key)
{
	for (int i = 0; i < n; i++)
		if (strcmp(keys[i], key) == 0)
			return true;
	return false;
}

/* Collects p's eligible entries into q->scratch; returns how many. */
static int collect(dbq_t *q, part_t *p, lv_usec_t now)
{
	int want = q->wq->cfg->queue.batch_size;
	q->n_scratch = 0;
	if (q->cap_scratch < want) {
		entry_t **nb = lv_realloc(q->scratch, sizeof(*nb) * (size_t)want);
		if (!nb)
			return 0;
		q->scratch = nb;
		q->cap_scratch = want;
	}
	const char *blocked[64];
	int n_blocked = 0;
	bool blocked_overflow = false;
	const char *user = NULL;
	lv_list_t *pos;
	lv_list_for_each(pos, &p->entries)
	{
		entry_t *e = lv_container_of(pos, entry_t, node);
		bool held = e->state == E_LOADING || e->state == E_COUNTING;
		if (e->state != E_WAITING && !held)
			continue;
		const char *key = e->msg.key;
		/* An entry whose attempt count is not known yet holds back its key. */
		bool ok = !held && !blocked_overflow && !key_blocked(blocked, n_blocked, key) &&
			  e->retry_at_us <= now;
		const char *eu = q->has_server_user ? "" : e->msg.user;
		if (ok && user && strcmp(user, eu) != 0)
			ok = false;
		if (!ok) {
			if (n_blocked < (int)LV_ARRAY_LEN(blocked))
				blocked[n_blocked++] = key;
			else
				blocked_overflow = true; /* too many held keys: stop here, keep FIFO */
			continue;
		}
		user = eu;
		q->scratch[q->n_scratch++] = e;
		if (q->n_scratch >= want)
			break;
	}
	return q->n_scratch;
}

/* Whether some connection slot in use has no batch. */
static bool has_idle_conn(const dbq_t *q)
{
	for (int i = 0; i < conns_in_use(q); i++)
		if (q->conns[i].step == B_IDLE)
			return true;
	return false;
}

/* After a reload lowered [queue] connections: slots beyond it close once idle. */
static void close_surplus_conns(dbq_t *q)
{
	for (int i = conns_in_use(q); i < MAX_CONNS; i++)
		if (q->conns[i].h && q->conns[i].step == B_IDLE)
			conn_close(&q->conns[i]);
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
	lv_wq_t *wq = arg;
	wq->linger_at_us = 0;
	lv_time_update();
	for (size_t d = 0; d < wq->n_dbs; d++)
		pump(wq->dbs[d]);
}

/*
 * Whether the batch just collected (q->scratch) should wait to fill: it is
 * not full and its oldest entry was read less than max_wait ago. A retry does
 * not wait (its backoff was its wait). Fewer, fuller transactions cost the
 * primary less than many small ones while writes arrive steadily; max_wait
 * bounds what that adds to a write's delay. Arms the linger timer for its end.
 */
static bool lingers(dbq_t *q, lv_usec_t now)
{
	lv_wq_t *wq = q->wq;
	const entry_t *first = q->scratch[0];
	lv_usec_t until = first->seen_us + (lv_usec_t)wq->cfg->queue.max_wait_ms * LV_USEC_PER_MS;
	if (q->n_scratch >= wq->cfg->queue.batch_size || until <= now || first->attempts > 0 ||
	    first->holds > 0 || !wq->linger)
		return false;
	if (!wq->linger_at_us || until < wq->linger_at_us) {
		lv_usec_t d = until - now;
		struct timeval tv = {(time_t)(d / LV_USEC_PER_SEC),
				     (suseconds_t)(d % LV_USEC_PER_SEC)};
		if (event_add(wq->linger, &tv) < 0)
			return false;
		wq->linger_at_us = until;
	}
	return true;
}

/*
 * Starts a batch on every partition that has eligible entries and no batch
 * running, while a connection is free: different partitions run at once on
 * different connections, one partition never on two.
 */
static void start_batches(dbq_t *q, lv_usec_t now)
{
	unsigned first = q->next_part;
	close_surplus_conns(q);
	for (unsigned k = 0; k < LV_WQ_PARTITIONS && has_idle_conn(q); k++) {
		part_t *p = &q->parts[(first + k) % LV_WQ_PARTITIONS];
		if (!p->has_lease || p->busy || p->n_entries == 0 || collect(q, p, now) == 0)
			continue;
		if (lingers(q, now)) {
			q->n_scratch = 0;
			continue;
		}
		const char *user = q->scratch[0]->msg.user;
		pgc_t *c = conn_for(q, q->has_server_user ? "" : user, user);
		if (!c) {
			for (int i = 0; i < q->n_scratch; i++)
				hold_entry(q->scratch[i], q->wq, now, 1000);
			q->n_scratch = 0;
			q->batch_failures++;
			q->batch_retry_at_us = now + 1000 * LV_USEC_PER_MS;
			lv_log_warn("queue %s: cannot open a PostgreSQL connection as %s", q->name, user);
			return;
		}
		q->next_part = (p->idx + 1) % LV_WQ_PARTITIONS;
		/* The collected entries become c's batch. */
		entry_t **ent = c->ent;
		int cap = c->cap_ent;
		c->ent = q->scratch;
		c->cap_ent = q->cap_scratch;
		c->n_ent = q->n_scratch;
		q->scratch = ent;
		q->cap_scratch = cap;
		q->n_scratch = 0;
		for (int i = 0; i < c->n_ent; i++) {
			c->ent[i]->state = E_IN_BATCH;
			c->ent[i]->result = R_NONE;
		}
		c->used_us = now;
		c->part = p;
		p->busy = c;
		if (!c->is_ready) {
			step_reset(c, B_CONNECT, 0);
			continue;
		}
		if (c->has_table)
			send_first(c);
		else
			send_setup(c);
		if (q->wq->closing || now < q->batch_retry_at_us)
			return; /* it failed at once */
	}
}

/* ------------------------------------------------------------------- pump */

/* Moves everything of q forward that can move now. */
static void pump(dbq_t *q)
{
	lv_wq_t *wq = q->wq;
	if (wq->closing || !wq->cfg)
		return;
	lv_usec_t now = lv_time_now_us();
	bool cmd_up = wq->cmd && lv_redis_is_up(wq->cmd);
	for (unsigned i = 0; i < LV_WQ_PARTITIONS; i++) {
		part_t *p = &q->parts[i];
		if (!q->is_active) {
			if (p->has_lease && !p->busy)
				lose_lease(p, "consumers stopped");
			continue;
		}
		if (!cmd_up)
			continue;
		if (!p->has_group && !p->group_pending && now >= p->group_retry_at_us) {
			const char *argv[] = {"XGROUP", "CREATE", p->stream, LV_WQ_GROUP, "0", "MKSTREAM"};
			p->group_pending = cmd_argv(wq, group_cb, p, 6, argv);
		}
		if (!p->lease_pending &&
		    ((p->has_lease && now >= p->lease_renew_at_us) || (!p->has_lease && now >= p->lease_try_at_us)))
			send_lease(p);
		if (p->has_lease && p->has_group && !p->is_claimed && !p->claim_pending && !p->busy)
			send_claim(p);
		if (p->want_load && !p->load_pending && now >= p->load_retry_at_us)
			send_load(p);
		if (!p->ack_pending) {
			lv_list_t *pos;
			entry_t *dead = NULL;
			bool any_ack = false;
			lv_list_for_each(pos, &p->entries)
			{
				entry_t *e = lv_container_of(pos, entry_t, node);
				if (e->state == E_DEAD && !dead)
					dead = e;
				any_ack = any_ack || e->state == E_ACK;
			}
			if (any_ack && now >= p->ack_retry_at_us)
				send_acks(p);
			else if (dead && now >= p->dead_retry_at_us)
				send_dead(p, dead);
		}
		if (p->want_trim && !p->trim_pending && now >= p->trim_at_us)
			send_trim(p);
		if (p->trim_ms > p->attempts_pruned_ms && !p->prune_pending &&
		    now >= p->prune_at_us)
			send_prune(p);
	}
	if (!q->is_active)
		return;
	if (now >= q->batch_retry_at_us)
		start_batches(q, now);
	send_read(q);
}

static void update_lag(lv_wq_t *wq)
{
	uint64_t oldest = 0;
	for (size_t d = 0; d < wq->n_dbs; d++)
		for (unsigned i = 0; i < LV_WQ_PARTITIONS; i++) {
			part_t *p = &wq->dbs[d]->parts[i];
			lv_list_t *pos;
			lv_list_for_each(pos, &p->entries)
			{
				entry_t *e = lv_container_of(pos, entry_t, node);
				if (e->state == E_ACK || e->state == E_ACKING)
					continue;
				if (e->id_ms && (!oldest || e->id_ms < oldest))
					oldest = e->id_ms;
				break; /* stream order: the first unapplied one is the oldest */
			}
		}
	int64_t lag_s = 0;
	if (oldest) {
		int64_t now_ms = lv_time_wall_us() / LV_USEC_PER_MS;
		lag_s = now_ms > (int64_t)oldest ? (now_ms - (int64_t)oldest) / 1000 : 0;
	}
	lv_metric_set(LV_M_QUEUE_LAG_SECONDS, 0, lag_s);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	lv_wq_t *wq = arg;
	lv_time_update();
	for (size_t d = 0; d < wq->n_dbs; d++)
		pump(wq->dbs[d]);
	update_lag(wq);
}

/* ------------------------------------------------------------------ set up */

static void reader_state_cb(lv_redis_t *r, bool up, void *arg)
{
	dbq_t *q = arg;
	if (q->wq->closing)
		return;
	if (up)
		pump(q);
}

static void cmd_state_cb(lv_redis_t *r, bool up, void *arg)
{
	lv_wq_t *wq = arg;
	if (wq->closing)
		return;
	if (!up) {
		/* Leases may lapse while Redis is away; renew (or lose) them once it is back. */
		return;
	}
	for (size_t d = 0; d < wq->n_dbs; d++) {
		for (unsigned i = 0; i < LV_WQ_PARTITIONS; i++) {
			wq->dbs[d]->parts[i].has_group = false; /* Redis may have restarted empty */
			wq->dbs[d]->parts[i].group_pending = false;
		}
		pump(wq->dbs[d]);
	}
}

static dbq_t *find_db(lv_wq_t *wq, const char *name)
{
	for (size_t i = 0; i < wq->n_dbs; i++)
		if (strcmp(wq->dbs[i]->name, name) == 0)
			return wq->dbs[i];
	return NULL;
}

static dbq_t *add_db(lv_wq_t *wq, const char *name)
{
	dbq_t **nd = lv_realloc(wq->dbs, sizeof(*nd) * (wq->n_dbs + 1));
	if (!nd)
		return NULL;
	wq->dbs = nd;
	dbq_t *q = lv_calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->wq = wq;
	snprintf(q->name, sizeof(q->name), "%s", name);
	for (unsigned i = 0; i < LV_WQ_PARTITIONS; i++) {
		part_t *p = &q->parts[i];
		p->q = q;
		p->idx = i;
		lv_list_init(&p->entries);
	}
	for (int i = 0; i < MAX_CONNS; i++)
		q->conns[i].q = q;
	char rname[LV_NAME_LEN + 32];
	snprintf(rname, sizeof(rname), "queue reader %s", name);
	lv_redis_opts_t o = {.url = wq->redis_url, .name = rname, .timeout_ms = 15000,
			     .on_state = reader_state_cb, .state_arg = q};
	lv_err_t err = {0};
	q->reader = lv_redis_new(wq->loop, &o, &err);
	if (!q->reader) {
		lv_log_error("queue %s: %s", name, err.msg);
		lv_free(q);
		return NULL;
	}
	wq->dbs[wq->n_dbs++] = q;
	return q;
}

lv_wq_t *lv_wq_new(lv_loop_t *loop, const lv_wq_opts_t *opts)
{
	lv_wq_t *wq = lv_calloc(1, sizeof(*wq));
	if (!wq)
		return NULL;
	wq->loop = loop;
	snprintf(wq->instance_id, sizeof(wq->instance_id), "%s", opts->instance_id);
	wq->pg = *opts->pg;
	wq->on_applied = opts->on_applied;
	wq->applied_arg = opts->applied_arg;
	wq->crash_after_commit = opts->crash_after_commit;
	wq->timer = event_new(lv_loop_base(loop), -1, EV_PERSIST, tick_cb, wq);
	if (!wq->timer) {
		lv_free(wq);
		return NULL;
	}
	/* Without it batches do not linger: nothing is lost but their size. */
	wq->linger = event_new(lv_loop_base(loop), -1, 0, linger_cb, wq);
	struct timeval tv = {0, TICK_MS * 1000};
	if (event_add(wq->timer, &tv) < 0)
		lv_log_error("queue: could not start the consumer timer");
	return wq;
}

void lv_wq_set_config(lv_wq_t *wq, lv_config_t *cfg)
{
	lv_config_t *old = wq->cfg;
	wq->cfg = lv_config_ref(cfg);
	bool want = cfg->levee.redis && *cfg->levee.redis && cfg->queue.consumers;
	if (want && wq->redis_url && strcmp(wq->redis_url, cfg->levee.redis) != 0)
		lv_log_warn("queue: [levee] redis changed; the consumers keep using %s until a restart",
			    wq->redis_url);
	if (want && !wq->redis_url) {
		wq->redis_url = lv_strdup(cfg->levee.redis);
		lv_redis_opts_t o = {.url = wq->redis_url, .name = "queue", .timeout_ms = 5000,
				     .on_state = cmd_state_cb, .state_arg = wq};
		lv_err_t err = {0};
		if (wq->redis_url)
			wq->cmd = lv_redis_new(wq->loop, &o, &err);
		if (!wq->cmd) {
			lv_log_error("queue: consumers not started: %s", err.msg[0] ? err.msg : "out of memory");
			lv_free(wq->redis_url);
			wq->redis_url = NULL;
			want = false;
		}
	}
	for (size_t i = 0; i < wq->n_dbs; i++)
		wq->dbs[i]->is_active = false;
	for (size_t d = 0; want && d < cfg->n_dbs; d++) {
		const lv_cfg_db_t *db = &cfg->dbs[d];
		dbq_t *q = find_db(wq, db->name);
		if (!q)
			q = add_db(wq, db->name);
		if (!q)
			continue;
		q->is_active = true;
		q->has_server_user = db->user[0] != '\0';
		lv__wq_named_key(q->dead_key, cfg, db->name, "dead");
		lv__wq_named_key(q->stats_key, cfg, db->name, "stats");
		for (unsigned i = 0; i < LV_WQ_PARTITIONS; i++) {
			part_t *p = &q->parts[i];
			char s[LV__WQ_KEY_LEN];
			lv__wq_stream_key(s, cfg, db->name, i);
			if (strcmp(s, p->stream) != 0) {
				/* New database or new prefix: start over on these names. */
				if (p->has_lease)
					lose_lease(p, "stream names changed");
				snprintf(p->stream, sizeof(p->stream), "%s", s);
				if (snprintf(p->lease_key, sizeof(p->lease_key), "%.*s:lease",
					     (int)(sizeof(p->lease_key) - 7), s) < 0)
					p->lease_key[0] = '\0';
				if (snprintf(p->attempts_key, sizeof(p->attempts_key),
					     "%.*s:attempts", (int)(sizeof(p->attempts_key) - 10),
					     s) < 0)
					p->attempts_key[0] = '\0';
				p->has_group = false;
			}
		}
	}
	if (want)
		lv_log_info("queue: consumers on for %zu database(s) as %s", cfg->n_dbs, wq->instance_id);
	for (size_t i = 0; i < wq->n_dbs; i++)
		pump(wq->dbs[i]);
	lv_config_unref(old);
}

void lv_wq_free(lv_wq_t *wq)
{
	if (!wq)
		return;
	wq->closing = true;
	if (wq->timer)
		event_free(wq->timer);
	if (wq->linger)
		event_free(wq->linger);
	/* Connections first: their pending callbacks run now and see closing. */
	for (size_t d = 0; d < wq->n_dbs; d++) {
		dbq_t *q = wq->dbs[d];
		lv_redis_free(q->reader);
		for (int i = 0; i < MAX_CONNS; i++)
			conn_close(&q->conns[i]);
	}
	lv_redis_free(wq->cmd);
	for (size_t d = 0; d < wq->n_dbs; d++) {
		dbq_t *q = wq->dbs[d];
		for (unsigned i = 0; i < LV_WQ_PARTITIONS; i++)
			drop_entries(&q->parts[i], true);
		for (int i = 0; i < MAX_CONNS; i++) {
			lv_free(q->conns[i].ent);
			lv_free(q->conns[i].err_msg);
		}
		lv_free(q->scratch);
		lv_free(q);
	}
	lv_free(wq->dbs);
	lv_free(wq->redis_url);
	lv_config_unref(wq->cfg);
	lv_free(wq);
}
