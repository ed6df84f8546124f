/* SPDX-License-Identifier: ISC */
/*
 * The result cache in the client's path; see cached.h and cache/cache.h.
 *
 * A request that may be cached (a simple Query, or Parse/Bind/Describe/
 * Execute/Sync on one unnamed portal) goes through:
 *
 *   classify + policy -> key -> L1 lookup
 *     hit              replay the stored bytes, done
 *     stale            replay, and if this client won the refresh claim, run
 *                      the request again on a server in the background
 *                      (answer swallowed, captured) before its next request
 *     miss, follower   park until the leader's fill ends (any worker), retry
 *     miss, leader     with Redis: GET the L2 entry, MGET the generations of
 *                      its tables, SET NX the fill lock, in one round trip;
 *                      an L2 hit fills L1 and is replayed; else fill: the
 *                      request goes to a server and its answer is captured
 *
 * Parked clients wait on their worker's list; a leader that ends a fill
 * posts a wake-up to every worker with waiters, which retries all of its
 * parked clients (cheap: a lookup each). A failed fill (error, too large)
 * is remembered briefly so its followers go to the server instead of
 * filling one after another.
 *
 * Invalidation: statements that may write are classified as they pass; the
 * tables they write are bumped when the transaction ends (ReadyForQuery
 * 'I'), locally at once and, with Redis, by INCR + PUBLISH so that every
 * instance raises its generation (main thread subscriber, see
 * lv_cached_main_*).
 *
 * Everything here runs on the client's worker thread except the
 * subscriber, which runs on the main thread.
 */
#include "proxy/cached.h"
#include "cache/cache.h"
#include "cache/capture.h"
#include "cache/key.h"
#include "cache/point.h"
#include "cache/policy.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "core/str.h"
#include "net/sbuf.h"
#include "proxy/client.h"
#include "proxy/params.h"
#include "proxy/pool.h"
#include "proxy/request.h"
#include "proxy/server.h"
#include "proxy/worker.h"
#include "redis/redis.h"
#include "wire/read.h"
#include "wire/wire.h"
#include "wire/write.h"

#include <ctype.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <event2/event.h>
#include <strings.h>


#define FAILED_WINDOW_US (1000 * 1000)
#define INV_CHANNEL "levee:inv"
/* The generation every entry also depends on: bumped to invalidate everything, everywhere. */
#define ALL_DB "*"
#define ALL_TABLE "*"

struct lv_cfill {
	/* Scalars first: fill_put() clears everything before snap and keeps the buffers. */
	lv_client_t *c;          /* NULL once the client left */
	lv_cache_policy_t pol;
	int n_deps;
	bool leader;             /* holds the L1 flight */
	bool background;         /* stale refresh: the client was answered already */
	bool l2_pending;         /* Redis owes the L2 answer */
	bool locked;             /* holds the L2 fill lock */
	bool lock_asked;         /* the pending L2 lookup asked for the lock */
	bool capturing;          /* the request went to a server */
	bool capture_failed;     /* too big or out of memory: not cached */
	bool extended;           /* the request's protocol */
	bool answered;           /* the server has begun its answer */
	bool verbatim;           /* the request describes its statement: the answer is kept whole */
	lv_usec_t start_us;
	struct event *timer;     /* waiting for another instance's fill */
	lv_usec_t wait_until_us;
	char hex[65];            /* the key's SHA-256, naming it in Redis; "" until needed */
	/* Buffers, kept across reuse. */
	lv_cache_key_t key;
	lv_cache_key_t plain_key; /* verbatim fills: the key of the same request without the Describe */
	lv_cache_capture_t cap;
	lv_buf_t replay_req;     /* background refresh: the request rebuilt for the server */
	/* Written whole before each use. */
	lv_cache_gen_snapshot_t snap;
	/* The generations the entry depends on besides "everything": (database, name) pairs,
	 * the tables it reads, or for a point read its table's wide generation and its row bucket. */
	struct {
		char db[LV_NAME_LEN];
		char name[LV_NAME_LEN];
	} deps[LV_SQL_MAX_TABLES];
};

static lv_cache_t *cache_of(lv_worker_t *w)
{
	return w->proxy->cache;
}

/* ------------------------------------------------------------ requests */

/* The settings that change results, as the client expects them on any server. */
static bool key_settings(lv_client_t *c, lv_cache_key_t *k)
{
	bool ok = true;
	for (int i = 0; i < LV_CACHE_KEY_N_SETTINGS; i++) {
		const char *name = lv_cache_key_setting_names[i];
		const char *v = lv_params_get(&c->desired, name);
		ok = ok && lv_cache_key_add_setting(k, name, v);
	}
	return ok;
}

static bool build_key(lv_client_t *c, const lv_request_t *rq, const lv_cache_policy_t *pol, lv_cache_key_t *k,
		      bool plain)
{
	bool ok = lv_cache_key_add_str(k, LV_CACHE_KEY_DB, c->database);
	if (pol->scope != LV_CACHE_SCOPE_SHARED)
		ok = ok && lv_cache_key_add_str(k, LV_CACHE_KEY_USER, c->user);
	ok = ok && key_settings(c, k) && lv_cache_key_add(k, LV_CACHE_KEY_TEXT, rq->sql, rq->sql_len);
	if (rq->extended) {
		/* Parameter types change how values are read: part of the text's identity. */
		uint8_t tb[4 * 64];
		size_t n = 0;
		for (uint16_t i = 0; i < rq->n_types && ok; i++) {
			uint32_t oid = lv_request_type(rq, i);
			lv_set_u32(tb + n, oid);
			n += 4;
			if (n == sizeof(tb)) {
				ok = lv_cache_key_add(k, LV_CACHE_KEY_TEXT, tb, n);
				n = 0;
			}
		}
		if (n)
			ok = ok && lv_cache_key_add(k, LV_CACHE_KEY_TEXT, tb, n);
		const lv_wire_bind_t *b = &rq->bind;
		ok = ok && lv_cache_key_add_formats(k, LV_CACHE_KEY_PARAM_FORMATS, b->param_formats, b->n_param_formats);
		lv_wire_reader_t r;
		lv_wire_reader_init(&r, b->params, b->params_len);
		for (uint16_t i = 0; i < b->n_params && ok; i++) {
			const uint8_t *v;
			int32_t vlen;
			if (!lv_wire_bind_next_param(&r, &v, &vlen))
				return false;
			ok = lv_cache_key_add_param(k, v, vlen < 0 ? 0 : (size_t)vlen, vlen < 0);
		}
		ok = ok && lv_cache_key_add_formats(k, LV_CACHE_KEY_RESULT_FORMATS, b->result_formats,
						     b->n_result_formats);
		if (rq->has_describe_stmt && !plain)
			ok = ok && lv_cache_key_add(k, LV_CACHE_KEY_OTHER, rq->shape, (size_t)rq->n_shape);
	} else {
		ok = ok && lv_cache_key_add_formats(k, LV_CACHE_KEY_PARAM_FORMATS, NULL, 0) &&
		     lv_cache_key_add_formats(k, LV_CACHE_KEY_RESULT_FORMATS, NULL, 0);
	}
	return ok && lv_cache_key_finish(k);
}

/* ------------------------------------------------------------- answers */

static lv_cache_request_t replay_shape(const lv_request_t *rq)
{
	lv_cache_request_t r;
	lv_cache_request_init(&r, !rq->extended);
	for (int i = 0; i < rq->n_shape && rq->extended; i++) {
		lv_cache_req_msg_t m = LV_CACHE_REQ_SYNC;
		switch (rq->shape[i]) {
		case PqMsg_Parse:
			m = LV_CACHE_REQ_PARSE;
			break;
		case PqMsg_Bind:
			m = LV_CACHE_REQ_BIND;
			break;
		case PqMsg_Describe:
			m = LV_CACHE_REQ_DESCRIBE_PORTAL;
			break;
		case PqMsg_Execute:
			m = LV_CACHE_REQ_EXECUTE;
			break;
		default:
			break;
		}
		if (!lv_cache_request_add(&r, m))
			break;
	}
	return r;
}

/* Answers c's request from e; false if e cannot answer this shape (then nothing was consumed). */
static bool replay(lv_client_t *c, const lv_request_t *rq, const lv_cache_entry_t *e)
{
	lv_worker_t *w = c->conn.worker;
	lv_buf_t out;
	lv_buf_init(&out);
	bool ok;
	if (rq->has_describe_stmt) {
		/* Kept verbatim: the whole answer but its ReadyForQuery. */
		size_t n;
		const uint8_t *body = lv_cache_entry_body(e, &n);
		ok = lv_buf_append(&out, body, n) && lv_wire_write_ready(&out, 'I');
	} else {
		lv_cache_request_t shape = replay_shape(rq);
		ok = lv_cache_replay(&out, &shape, e);
	}
	if (!ok) {
		lv_buf_cleanup(&out);
		return false;
	}
	/* A named Parse answered here still names the statement for later Binds. */
	if (rq->has_parse && rq->parse_name && rq->parse_name[0]) {
		if (lv_pstmt_map_get(&c->pstmts, rq->parse_name)) {
			lv_buf_cleanup(&out);
			return false; /* the server's "already exists" error is the answer */
		}
		lv_pstmt_t *ps = lv_pstmt_get(&w->pstmts, rq->sql, rq->sql_len, rq->types_be, rq->n_types);
		if (!ps || !lv_pstmt_map_set(&w->pstmts, &c->pstmts, rq->parse_name, ps)) {
			lv_buf_cleanup(&out);
			return false;
		}
	}
	lv_sbuf_skip(&c->conn.sb, rq->total);
	size_t sent = out.len;
	ok = lv_client_send(c, out.data, out.len);
	lv_buf_cleanup(&out);
	if (ok) {
		lv_metric_add(LV_M_CLIENT_BYTES_SENT_TOTAL, 0, (int64_t)sent);
		lv_metric_inc(LV_M_QUERIES_TOTAL);
		lv_metric_inc(LV_M_TRANSACTIONS_TOTAL);
	}
	return true;
}

/* ------------------------------------------------------------- parking */

static void park(lv_client_t *c)
{
	lv_worker_t *w = c->conn.worker;
	if (c->parked)
		return;
	c->parked = true;
	c->parked_since_us = lv_time_now_us();
	lv_list_insert_tail(&w->cache_parked, &c->park_node);
	c->conn.action = "waiting for a cache fill";
}

static void unpark(lv_client_t *c)
{
	if (!c->parked)
		return;
	c->parked = false;
	lv_list_unlink(&c->park_node);
	c->conn.action = NULL;
}

/* Retries every parked client of w (a fill ended somewhere). */
static void wake_all(lv_worker_t *w)
{
	lv_list_t moved;
	lv_list_init(&moved);
	/* Move first: a retry may park the client again. */
	while (!lv_list_empty(&w->cache_parked)) {
		lv_list_t *n = lv_list_first(&w->cache_parked);
		lv_list_unlink(n);
		lv_list_insert_tail(&moved, n);
	}
	while (!lv_list_empty(&moved)) {
		lv_list_t *n = lv_list_first(&moved);
		lv_client_t *c = lv_container_of(n, lv_client_t, park_node);
		lv_list_unlink(n);
		c->parked = false;
		c->conn.action = NULL;
		if (c->state == LV_CLIENT_IDLE && !c->fill)
			lv_client_cache_retry(c);
	}
}

static void wake_msg(void *arg)
{
	wake_all(arg);
}

/* Wakes the workers in mask (bit i: worker i has waiters). */
static void wake_workers(lv_worker_t *self, uint64_t mask)
{
	lv_proxy_t *p = self->proxy;
	for (int i = 0; i < p->n_workers && mask; i++) {
		if (!(mask & (1ull << i)))
			continue;
		mask &= ~(1ull << i);
		lv_worker_t *w = &p->workers[i];
		if (w == self)
			wake_all(w);
		else if (!__atomic_load_n(&p->tearing_down, __ATOMIC_ACQUIRE) && !lv_loop_post(w->loop, wake_msg, w))
			lv_log_warn("could not wake worker %d after a cache fill", i);
	}
}

/* ---------------------------------------------------------------- fills */

static void fill_free(struct lv_cfill *f)
{
	if (f->timer)
		event_free(f->timer);
	lv_cache_key_cleanup(&f->key);
	lv_cache_key_cleanup(&f->plain_key);
	lv_cache_capture_cleanup(&f->cap);
	lv_buf_cleanup(&f->replay_req);
	lv_free(f);
}

/* A fill object for a lookup: the worker's spare one when it has it (most lookups are hits). */
static struct lv_cfill *fill_get(lv_worker_t *w)
{
	struct lv_cfill *f = w->cache_spare;
	if (f) {
		w->cache_spare = NULL;
		return f;
	}
	f = lv_calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	lv_cache_key_init(&f->key);
	lv_cache_key_init(&f->plain_key);
	lv_buf_init(&f->replay_req);
	lv_cache_capture_init(&f->cap, 0);
	return f;
}

/* Gives back a fill that never left this call (no flight, no timer, no Redis call). */
static void fill_put(lv_worker_t *w, struct lv_cfill *f)
{
	/* Keep the buffers of a small one; a big capture is not worth holding on to. */
	if (w->cache_spare || f->timer || f->cap.buf.cap > 64 * 1024) {
		fill_free(f);
		return;
	}
	lv_cache_key_t key = f->key, plain = f->plain_key;
	lv_buf_t replay_req = f->replay_req;
	lv_cache_capture_t cap = f->cap;
	lv_cache_key_reset(&key);
	lv_cache_key_reset(&plain);
	lv_buf_reset(&replay_req);
	lv_cache_capture_reset(&cap);
	memset(f, 0, offsetof(struct lv_cfill, snap));
	f->key = key;
	f->plain_key = plain;
	f->replay_req = replay_req;
	f->cap = cap;
	w->cache_spare = f;
}

/* Ends f's flight (entry NULL: the fill failed) and wakes the waiters. */
static void end_flight(lv_worker_t *w, struct lv_cfill *f, lv_cache_entry_t *e)
{
	if (!f->leader)
		return;
	f->leader = false;
	lv_cache_t *cache = cache_of(w);
	if (!e)
		lv_cache_note_failed(cache, f->key.hash, lv_time_now_us());
	uint64_t mask = lv_cache_store_end_fill(cache->store, &f->key, e);
	wake_workers(w, mask);
}

/* The name of f's key in Redis (a SHA-256 of it), computed once per fill. */
static const char *redis_name(struct lv_cfill *f)
{
	if (!f->hex[0])
		lv_cache_key_digest_hex(&f->key, f->hex);
	return f->hex;
}

static void release_l2_lock(lv_worker_t *w, struct lv_cfill *f)
{
	if (!f->locked || !w->redis)
		return;
	f->locked = false;
	if (!lv_redis_cmdf(w->redis, NULL, NULL, "DEL levee:cl:%s", redis_name(f)))
		lv_log_debug("cache: could not release the fill lock (redis down)");
}

/* Takes the generation snapshot a fill is judged by: before the request goes out. */
static bool snapshot(lv_worker_t *w, struct lv_cfill *f)
{
	lv_cache_t *cache = cache_of(w);
	lv_cache_gen_snapshot_init(&f->snap, cache->gens);
	if (!lv_cache_gen_snapshot_add(&f->snap, cache->gens, ALL_DB, ALL_TABLE))
		return false;
	for (int i = 0; i < f->n_deps; i++)
		if (!lv_cache_gen_snapshot_add(&f->snap, cache->gens, f->deps[i].db, f->deps[i].name))
			return false;
	return true;
}

static void start_capture(lv_client_t *c, struct lv_cfill *f)
{
	f->capturing = true;
	f->start_us = lv_time_now_us();
	c->fill = f;
}

/* The rebuilt request of a background refresh: unnamed statement, same parameters. */
static bool build_refresh(const lv_request_t *rq, lv_buf_t *out)
{
	if (!rq->extended)
		return lv_wire_write_query(out, rq->sql);
	uint32_t *oids = NULL;
	uint32_t stack_oids[64];
	if (rq->n_types) {
		oids = rq->n_types <= 64 ? stack_oids : lv_malloc(sizeof(uint32_t) * rq->n_types);
		if (!oids)
			return false;
		for (uint16_t i = 0; i < rq->n_types; i++)
			oids[i] = lv_request_type(rq, i);
	}
	/* Parse needs a NUL-terminated text: the statement text in the request is one. */
	bool ok = lv_wire_write_parse(out, "", rq->sql, rq->n_types, oids);
	if (oids && oids != stack_oids)
		lv_free(oids);
	lv_wire_bind_t b = rq->bind;
	b.stmt = "";
	b.stmt_len = 0;
	ok = ok && lv_wire_write_bind_renamed(out, &b, "") && lv_wire_write_describe(out, 'P', "") &&
	     lv_wire_write_execute(out, "", 0) && lv_wire_write_sync(out);
	return ok;
}

/* ------------------------------------------------------------------- L2 */

/*
 * Redis scripts, sent by SHA (EVALSHA) once loaded: each is one command where
 * a MULTI/EXEC would be five. L2_LOOKUP: KEYS entry, lock, generations...;
 * ARGV take-lock (1/0), lock lifetime in ms; returns {entry or nil,
 * {generations}, 1 if the lock was taken}. BUMP: INCR a generation and
 * PUBLISH its new value in one step, so the published value is the new one.
 */
static const char l2_lookup_script[] =
	"local e = redis.call('GET', KEYS[1]) "
	"local g = redis.call('MGET', unpack(KEYS, 3)) "
	"local l = 0 "
	"if ARGV[1] == '1' and redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then l = 1 end "
	"return {e, g, l}";
static const char bump_script[] = "local g = redis.call('INCR', KEYS[1]) "
				  "redis.call('PUBLISH', ARGV[1], ARGV[2] .. '\t' .. ARGV[3] .. '\t' .. g) "
				  "return g";
static char l2_lookup_sha[41], bump_sha[41];
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void sha1_hex(const char *s, char out[41]);

static void hash_scripts(void)
{
	sha1_hex(l2_lookup_script, l2_lookup_sha);
	sha1_hex(bump_script, bump_sha);
}

static void sha1_hex(const char *s, char out[41])
{
	unsigned char md[SHA_DIGEST_LENGTH];
	SHA1((const unsigned char *)s, strlen(s), md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Loads the scripts on a connection that just came up (Redis may have restarted empty). */
static void load_scripts(lv_redis_t *r)
{
	if (!lv_redis_cmdf(r, NULL, NULL, "SCRIPT LOAD %s", l2_lookup_script) ||
	    !lv_redis_cmdf(r, NULL, NULL, "SCRIPT LOAD %s", bump_script))
		lv_log_debug("cache: could not load the Redis scripts (redis down)");
}

/* True for Redis's "the script is not loaded" error. */
static bool is_noscript(const lv_redis_reply_t *reply)
{
	size_t n;
	const char *s = lv_redis_reply_str(reply, &n);
	return lv_redis_reply_type(reply) == LV_REDIS_ERROR && s && n >= 8 && memcmp(s, "NOSCRIPT", 8) == 0;
}

static void l2_reply(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg);

/* Asks Redis for the L2 entry, the generations of its tables and the fill lock, in one round trip. */
static bool l2_lookup(lv_worker_t *w, struct lv_cfill *f, bool take_lock)
{
	lv_config_t *cfg = w->cfg;
	char ekey[80], lkey[80];
	snprintf(ekey, sizeof(ekey), "levee:ce:%s", redis_name(f));
	snprintf(lkey, sizeof(lkey), "levee:cl:%s", redis_name(f));
	const char *argv[9 + LV_SQL_MAX_TABLES];
	char gkeys[LV_SQL_MAX_TABLES][2 * LV_NAME_LEN + 16];
	char nkeys[16], px[24], allkey[32];
	int argc = 0;
	argv[argc++] = "EVALSHA";
	argv[argc++] = l2_lookup_sha;
	argv[argc++] = nkeys;
	argv[argc++] = ekey;
	argv[argc++] = lkey;
	snprintf(allkey, sizeof(allkey), "levee:gen:%s:%s", ALL_DB, ALL_TABLE);
	argv[argc++] = allkey;
	for (int i = 0; i < f->n_deps; i++) {
		snprintf(gkeys[i], sizeof(gkeys[i]), "levee:gen:%s:%s", f->deps[i].db, f->deps[i].name);
		argv[argc++] = gkeys[i];
	}
	snprintf(nkeys, sizeof(nkeys), "%d", argc - 3);
	snprintf(px, sizeof(px), "%lld", (long long)cfg->cache.lock_timeout_ms);
	argv[argc++] = take_lock ? "1" : "0";
	argv[argc++] = px;
	if (!lv_redis_cmd(w->redis, l2_reply, f, argc, argv, NULL))
		return false;
	f->l2_pending = true;
	f->lock_asked = take_lock;
	return true;
}

static void fill_go_to_server(lv_client_t *c, struct lv_cfill *f)
{
	if (!snapshot(c->conn.worker, f)) {
		end_flight(c->conn.worker, f, NULL);
		c->fill = NULL;
		fill_free(f);
		c->cache_skip = true;
		lv_client_cache_retry(c);
		return;
	}
	start_capture(c, f);
	lv_client_cache_fill(c);
}

/*
 * Redis or the lock-wait timer is back for f: its client, unparked, or NULL
 * when the client left meanwhile (f is then freed).
 */
static lv_client_t *fill_resume(struct lv_cfill *f)
{
	lv_client_t *c = f->c;
	if (!c) {
		fill_free(f);
		return NULL;
	}
	unpark(c);
	return c;
}

static void wait_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct lv_cfill *f = arg;
	lv_client_t *c = fill_resume(f);
	if (!c)
		return;
	lv_worker_t *w = c->conn.worker;
	bool last = lv_time_update() >= f->wait_until_us;
	if (!w->redis || !lv_redis_is_up(w->redis) || !l2_lookup(w, f, last))
		fill_go_to_server(c, f);
	else
		park(c);
}

/* Did the SET NX of the fill lock (if this lookup asked for it) succeed? */
static bool got_lock(const struct lv_cfill *f, const lv_redis_reply_t *lock)
{
	return f->lock_asked && lv_redis_reply_type(lock) == LV_REDIS_INTEGER && lv_redis_reply_int(lock) == 1;
}

static void l2_reply(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	(void)r;
	struct lv_cfill *f = arg;
	f->l2_pending = false;
	lv_client_t *c = fill_resume(f);
	if (!c)
		return;
	lv_worker_t *w = c->conn.worker;
	lv_cache_t *cache = cache_of(w);
	lv_usec_t now = lv_time_update();
	if (lv_redis_reply_type(reply) != LV_REDIS_ARRAY || lv_redis_reply_len(reply) != 3) {
		if (is_noscript(reply))
			load_scripts(w->redis);
		lv_metric_inc_l(LV_M_CACHE_L2_TOTAL, LV_ML_CACHE_L2_ERROR);
		fill_go_to_server(c, f);
		return;
	}
	const lv_redis_reply_t *got = lv_redis_reply_at(reply, 0);
	const lv_redis_reply_t *gens = lv_redis_reply_at(reply, 1);
	const lv_redis_reply_t *lock = lv_redis_reply_at(reply, 2);
	/* Redis's generations are the shared truth: raise ours to them first. */
	for (int i = 0; i <= f->n_deps && i < (int)lv_redis_reply_len(gens); i++) {
		size_t n;
		const char *s = lv_redis_reply_str(lv_redis_reply_at(gens, (size_t)i), &n);
		if (!s)
			continue;
		lv_cache_gen_t *slot = i == 0 ? lv_cache_gens_slot(cache->gens, ALL_DB, ALL_TABLE)
					      : lv_cache_gens_slot(cache->gens, f->deps[i - 1].db, f->deps[i - 1].name);
		if (slot)
			lv_cache_gen_raise(slot, strtoull(s, NULL, 10));
	}
	size_t n = 0;
	const char *val = lv_redis_reply_str(got, &n);
	if (val) {
		lv_cache_entry_t *e = NULL;
		if (lv_cache_entry_decode(val, n, &f->key, cache->gens, now, lv_time_wall_us(), &e) == 0 && e &&
		    lv_cache_entry_is_current(e, cache->gens)) {
			lv_metric_inc_l(LV_M_CACHE_L2_TOTAL, LV_ML_CACHE_L2_HIT);
			f->locked = got_lock(f, lock);
			release_l2_lock(w, f);
			end_flight(w, f, e); /* L1 takes a reference of its own */
			lv_request_t rq;
			bool served = lv_request_parse(c, &rq) && replay(c, &rq, e);
			lv_cache_entry_unref(e);
			c->fill = NULL;
			fill_free(f);
			if (served) {
				lv_metric_inc_l(LV_M_CACHE_REQUESTS_TOTAL, LV_ML_CACHE_RESULT_HIT);
				lv_client_cache_retry(c);
			} else {
				c->cache_skip = true;
				lv_client_cache_retry(c);
			}
			return;
		}
		if (e)
			lv_cache_entry_unref(e);
		lv_metric_inc_l(LV_M_CACHE_L2_TOTAL, LV_ML_CACHE_L2_STALE);
	} else {
		lv_metric_inc_l(LV_M_CACHE_L2_TOTAL, LV_ML_CACHE_L2_MISS);
	}
	bool have_lock = got_lock(f, lock);
	if (have_lock || now >= f->wait_until_us) {
		f->locked = have_lock;
		fill_go_to_server(c, f);
		return;
	}
	/* Another instance fills it: look again shortly, fill ourselves after lock_wait. */
	if (!f->timer)
		f->timer = evtimer_new(lv_loop_base(w->loop), wait_timer_cb, f);
	struct timeval tv = {0, 20 * 1000};
	if (!f->timer || evtimer_add(f->timer, &tv) != 0)
		fill_go_to_server(c, f);
	else
		park(c);
}

/* ---------------------------------------------------------------- try */

static void count(lv_cache_t *cache, lv_config_t *cfg, int rule, unsigned label)
{
	lv_metric_inc_l(LV_M_CACHE_REQUESTS_TOTAL, label);
	lv_cache_rule_stats_t *s = lv_cache_rule_stats(cache, cfg, rule);
	switch (label) {
	case LV_ML_CACHE_RESULT_HIT:
		lv_cache_count(s->hits);
		break;
	case LV_ML_CACHE_RESULT_MISS:
		lv_cache_count(s->misses);
		break;
	case LV_ML_CACHE_RESULT_STALE:
		lv_cache_count(s->stale);
		break;
	case LV_ML_CACHE_RESULT_COALESCED:
		lv_cache_count(s->coalesced);
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------ row invalidation */

/* The key column a [cache.rule] names for table t of database db, or NULL. */
/* Whether some rule of db keys its entries by row (a `key`): then writes need their values. */
static bool keys_rows(const lv_config_t *cfg, const char *db)
{
	for (size_t i = 0; i < cfg->n_cache_rules; i++) {
		const lv_cfg_cache_rule_t *r = &cfg->cache_rules[i];
		if (r->key[0] && (!r->database[0] || strcmp(r->database, db) == 0))
			return true;
	}
	return false;
}

static const char *point_key(const lv_config_t *cfg, const char *db, const char *t)
{
	const char *dot = strrchr(t, '.');
	t = dot ? dot + 1 : t;
	for (size_t i = 0; i < cfg->n_cache_rules; i++) {
		const lv_cfg_cache_rule_t *r = &cfg->cache_rules[i];
		if (!r->key[0] || (r->database[0] && strcmp(r->database, db) != 0))
			continue;
		for (int k = 0; k < r->n_tables; k++)
			if (strcasecmp(r->tables[k], t) == 0)
				return r->key;
	}
	return NULL;
}

/* Parameter i (0-based) of a Bind: its bytes (NULL for SQL NULL), length and format. */
static bool bind_param(const lv_wire_bind_t *b, uint16_t i, const uint8_t **v, int32_t *len)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, b->params, b->params_len);
	for (uint16_t k = 0; k <= i; k++)
		if (!lv_wire_bind_next_param(&r, v, len))
			return false;
	return true;
}

/* Types of the statement a Bind executes, to read binary parameters. */
typedef struct point_params {
	const lv_wire_bind_t *bind; /* NULL: a simple Query, no parameters */
	uint16_t n_types;
	const uint8_t *types_be;    /* or */
	const uint32_t *types;
} point_params_t;

/* The canonical form of a value the statement pins its key column to. */
static bool value_canon(const lv_sql_info_t *info, const lv_sql_value_t *v, const point_params_t *pp, char *out,
			size_t *n)
{
	if (!lv_cache_point_cast_ok(v->cast))
		return false;
	switch (v->kind) {
	case LV_SQL_VALUE_INT:
	case LV_SQL_VALUE_FLOAT:
	case LV_SQL_VALUE_STRING:
		if ((size_t)v->off + v->len > info->point_values_len)
			return false;
		return lv_cache_point_canon_text(info->point_values + v->off, v->len, out, n);
	case LV_SQL_VALUE_PARAM: {
		if (!pp || !pp->bind || v->param < 1 || v->param > pp->bind->n_params)
			return false;
		uint16_t i = (uint16_t)(v->param - 1);
		const uint8_t *val;
		int32_t len;
		if (!bind_param(pp->bind, i, &val, &len) || len < 0)
			return false;
		if (lv_wire_bind_param_format(pp->bind, i) == 0)
			return lv_cache_point_canon_text((const char *)val, (size_t)len, out, n);
		uint32_t oid = i < pp->n_types ? (pp->types_be ? lv_get_u32(pp->types_be + 4 * (size_t)i) : pp->types[i])
					       : 0;
		return lv_cache_point_canon_binary(oid, val, (size_t)len, out, n);
	}
	default:
		return false;
	}
}

/* The row bucket slot of (db, table, col = value). */
static lv_cache_gen_t *row_slot(lv_cache_t *cache, const char *db, const char *t, const char *col,
				const char *canon, size_t n)
{
	char name[24];
	snprintf(name, sizeof(name), "#r%u", (unsigned)lv_cache_point_bucket(db, t, col, canon, n));
	return lv_cache_gens_slot(cache->gens, ALL_DB, name);
}

static int point_col(const lv_sql_point_t *p, const char *key)
{
	for (int i = 0; i < p->n_cols; i++)
		if (strcmp(p->cols[i], key) == 0)
			return i;
	return -1;
}

/*
 * What the entry of this lookup depends on. A table has two generations: its
 * own, bumped by every write that is not a point write, and "table#p", bumped
 * by point writes (with their row buckets). An entry depends on both for each
 * table it reads; a point read depends on its table's own generation and its
 * row bucket only. Every instance keys entries this way whatever its rules, so
 * an instance without the key rule (a write there is never a point write)
 * still invalidates the point entries of the others, and the others' point
 * writes still invalidate its entries.
 */
static void set_deps(lv_client_t *c, struct lv_cfill *f, const lv_config_t *cfg, const lv_request_t *rq,
		     const lv_sql_info_t *info)
{
	f->n_deps = 0;
	const char *db = c->database;
	if (info->n_read == 1 && info->point.is_point && !info->read_overflow) {
		const char *t = lv_sql_table_read(info, 0);
		const char *dot = strrchr(t, '.');
		t = dot ? dot + 1 : t;
		const char *key = point_key(cfg, db, t);
		int ci = key ? point_col(&info->point, key) : -1;
		char canon[LV_CACHE_POINT_MAX];
		size_t n;
		point_params_t pp = {.bind = rq->extended ? &rq->bind : NULL, .n_types = rq->n_types,
				     .types_be = rq->types_be, .types = rq->types};
		char bucket[24];
		if (ci >= 0 && strlen(t) + 2 < LV_NAME_LEN && value_canon(info, &info->point.values[0][ci], &pp, canon, &n)) {
			snprintf(bucket, sizeof(bucket), "#r%u", (unsigned)lv_cache_point_bucket(db, t, key, canon, n));
			snprintf(f->deps[0].db, LV_NAME_LEN, "%s", db);
			snprintf(f->deps[0].name, LV_NAME_LEN, "%s", t);
			snprintf(f->deps[1].db, LV_NAME_LEN, "%s", ALL_DB);
			snprintf(f->deps[1].name, LV_NAME_LEN, "%s", bucket);
			f->n_deps = 2;
			return;
		}
	}
	for (unsigned i = 0; i < info->n_read; i++) {
		const char *t = lv_sql_table_read(info, i);
		const char *dot = strrchr(t, '.');
		t = dot ? dot + 1 : t;
		if (f->n_deps + 2 > (int)LV_ARRAY_LEN(f->deps) || strlen(t) + 2 >= LV_NAME_LEN) {
			f->n_deps = -1; /* too many tables, or a name too long for its point generation */
			return;
		}
		snprintf(f->deps[f->n_deps].db, LV_NAME_LEN, "%s", db);
		snprintf(f->deps[f->n_deps++].name, LV_NAME_LEN, "%s", t);
		snprintf(f->deps[f->n_deps].db, LV_NAME_LEN, "%s", db);
		snprintf(f->deps[f->n_deps++].name, LV_NAME_LEN, "%s#p", t);
	}
}

/*
 * A simple Query that is a fresh hit needs no classification: an entry under
 * its key exists only if the statement was cacheable when it was filled, under
 * these rules (a reload bumps the epoch, dropping every entry). Statements
 * with literal values rarely repeat their text often enough to stay in the
 * classification cache, so this saves a parse per hit. Anything but a fresh
 * hit (a hint in the text, a bypass user, stale, miss) takes the full path.
 */
static lv_cached_result_t fast_hit(lv_client_t *c, const lv_request_t *rq)
{
	lv_worker_t *w = c->conn.worker;
	lv_cache_t *cache = cache_of(w);
	lv_config_t *cfg = w->cfg;
	if (rq->hinted ||
	    (cfg->cache.bypass_users && lv_config_list_has(cfg->cache.bypass_users, c->user)))
		return LV_CACHED_PASS;
	bool any_shared = false;
	for (size_t i = 0; i < cfg->n_cache_rules; i++)
		any_shared = any_shared || cfg->cache_rules[i].scope == LV_CACHE_SCOPE_SHARED;
	struct lv_cfill *f = fill_get(w);
	if (!f)
		return LV_CACHED_PASS;
	lv_usec_t now = lv_time_update(); /* a hit is timed from here */
	for (int scope = LV_CACHE_SCOPE_USER; scope <= (any_shared ? LV_CACHE_SCOPE_SHARED : LV_CACHE_SCOPE_USER);
	     scope++) {
		lv_cache_policy_t pol = {.scope = scope};
		lv_cache_key_reset(&f->key);
		if (!build_key(c, rq, &pol, &f->key, false))
			break;
		lv_cache_entry_t *e = NULL;
		lv_cache_lookup_t lr = lv_cache_store_lookup(cache->store, &f->key, now, &e);
		if (lr == LV_CACHE_LOOKUP_STALE_REFRESH) {
			/* The full path takes the refresh on; give the claim back. */
			wake_workers(w, lv_cache_store_end_fill(cache->store, &f->key, NULL));
		}
		if (lr != LV_CACHE_LOOKUP_HIT) {
			if (e)
				lv_cache_entry_unref(e);
			if (lr != LV_CACHE_LOOKUP_MISS)
				break;
			continue;
		}
		bool served = replay(c, rq, e);
		int rule = lv_cache_entry_rule(e);
		lv_cache_entry_unref(e);
		if (!served)
			break;
		if (!c->cache_coalesced)
			count(cache, cfg, rule, LV_ML_CACHE_RESULT_HIT);
		c->cache_coalesced = false;
		lv_metric_observe_us(LV_M_CACHE_HIT_SECONDS, 0, lv_time_update() - now);
		fill_put(w, f);
		return LV_CACHED_ANSWERED;
	}
	fill_put(w, f);
	return LV_CACHED_PASS;
}

lv_cached_result_t lv_cached_try(lv_client_t *c, const lv_request_t *rq)
{
	lv_worker_t *w = c->conn.worker;
	lv_cache_t *cache = cache_of(w);
	lv_config_t *cfg = w->cfg;
	if (c->parked)
		return LV_CACHED_WAIT; /* still waiting for a fill or for Redis */
	if (!cache || c->fill)
		return LV_CACHED_PASS;
	if (c->cache_skip) {
		c->cache_skip = false;
		return LV_CACHED_PASS;
	}
	if (cfg->n_cache_rules == 0 && !rq->hinted)
		return LV_CACHED_PASS;
	/* Before anything is looked up or filled: writes are classified from now on. */
	if (!__atomic_load_n(&w->proxy->cache_used, __ATOMIC_RELAXED))
		__atomic_store_n(&w->proxy->cache_used, 1, __ATOMIC_SEQ_CST);
	if (!rq->extended) {
		lv_cached_result_t fast = fast_hit(c, rq);
		if (fast != LV_CACHED_PASS)
			return fast;
	}
	lv_sql_opts_t opts = {.skip_fingerprint = !lv_cache_needs_fingerprint(cfg),
			      .write_functions_list = cfg->routing.write_functions};
	lv_sql_info_t *info = w->sql_info;
	if (lv_sql_cache_classify_shape(w->sql_cache, rq->sql, rq->sql_len, &opts, true, info) != 0)
		return LV_CACHED_PASS;
	lv_cache_policy_t pol;
	lv_cache_skip_t why = lv_cache_decide(cfg, info, rq->sql, rq->sql_len, c->database, c->user, &pol);
	if (why != LV_CACHE_OK) {
		if (why == LV_CACHE_SKIP_BYPASS_USER)
			lv_metric_inc_l(LV_M_CACHE_REQUESTS_TOTAL, LV_ML_CACHE_RESULT_BYPASS);
		return LV_CACHED_PASS;
	}
	struct lv_cfill *f = fill_get(w);
	if (!f)
		return LV_CACHED_PASS;
	f->c = c;
	f->pol = pol;
	f->extended = rq->extended;
	f->verbatim = rq->has_describe_stmt;
	f->cap.cap = (size_t)pol.max_entry_size;
	set_deps(c, f, cfg, rq, info);
	if (f->n_deps < 0) {
		fill_put(w, f);
		return LV_CACHED_PASS;
	}
	if (!build_key(c, rq, &pol, &f->key, false) ||
	    (f->verbatim && !build_key(c, rq, &pol, &f->plain_key, true))) {
		fill_put(w, f);
		return LV_CACHED_PASS;
	}
	lv_usec_t now = lv_time_update(); /* a hit is timed from here */
	if (lv_cache_recently_failed(cache, f->key.hash, now, FAILED_WINDOW_US)) {
		fill_put(w, f);
		return LV_CACHED_PASS;
	}

	lv_cache_entry_t *e = NULL;
	lv_cache_lookup_t lr = lv_cache_store_lookup(cache->store, &f->key, now, &e);
	if (lr == LV_CACHE_LOOKUP_HIT || lr == LV_CACHE_LOOKUP_STALE || lr == LV_CACHE_LOOKUP_STALE_REFRESH) {
		bool refresh = lr == LV_CACHE_LOOKUP_STALE_REFRESH;
		if (lr == LV_CACHE_LOOKUP_HIT && cfg->cache.xfetch_beta > 0) {
			/* XFetch: refresh a fresh entry early, with a probability that grows near expiry. */
			const lv_cache_times_t *t = lv_cache_entry_times(e);
			double u = lv_cache_u01(lv_cache_rand(&w->cache_rng));
			refresh = lv_cache_xfetch(now, t->expires_us, t->fill_cost_us, cfg->cache.xfetch_beta, u) &&
				  lv_cache_store_claim_refresh(cache->store, &f->key, now);
		}
		if (refresh && !build_refresh(rq, &f->replay_req)) {
			lv_cache_store_end_fill(cache->store, &f->key, NULL);
			refresh = false;
		}
		bool served = replay(c, rq, e);
		lv_cache_entry_unref(e);
		if (!served) {
			if (refresh)
				wake_workers(w, lv_cache_store_end_fill(cache->store, &f->key, NULL));
			fill_put(w, f);
			return LV_CACHED_PASS;
		}
		/* A follower woken by the fill was counted as coalesced already. */
		if (!c->cache_coalesced)
			count(cache, cfg, pol.rule,
			      lr == LV_CACHE_LOOKUP_HIT ? LV_ML_CACHE_RESULT_HIT : LV_ML_CACHE_RESULT_STALE);
		c->cache_coalesced = false;
		lv_metric_observe_us(LV_M_CACHE_HIT_SECONDS, 0, lv_time_update() - now);
		if (!refresh) {
			fill_put(w, f);
			return LV_CACHED_ANSWERED;
		}
		/* This client runs the one refresh, after its answer went out. */
		f->leader = true;
		f->background = true;
		if (!snapshot(w, f)) {
			end_flight(w, f, NULL);
			fill_put(w, f);
			return LV_CACHED_ANSWERED;
		}
		start_capture(c, f);
		return LV_CACHED_FILL;
	}

	/* A miss: one fill per key per process. */
	int64_t flight_ms = cfg->cache.lock_timeout_ms > 0 ? cfg->cache.lock_timeout_ms : 2000;
	lv_cache_flight_t fl =
		lv_cache_store_begin_fill(cache->store, &f->key, w->index, now, flight_ms * LV_USEC_PER_MS);
	if (fl == LV_CACHE_FLIGHT_FOLLOWER) {
		if (!c->cache_coalesced)
			count(cache, cfg, pol.rule, LV_ML_CACHE_RESULT_COALESCED);
		c->cache_coalesced = true;
		fill_put(w, f);
		park(c);
		return LV_CACHED_WAIT;
	}
	c->cache_coalesced = false;
	count(cache, cfg, pol.rule, LV_ML_CACHE_RESULT_MISS);
	f->leader = true;
	f->wait_until_us = now + cfg->cache.lock_wait_ms * LV_USEC_PER_MS;
	if (w->redis && cfg->cache.redis_l2 && lv_redis_is_up(w->redis) && l2_lookup(w, f, true)) {
		c->fill = f;
		park(c);
		return LV_CACHED_WAIT;
	}
	if (!snapshot(w, f)) {
		end_flight(w, f, NULL);
		fill_put(w, f);
		return LV_CACHED_PASS;
	}
	start_capture(c, f);
	return LV_CACHED_FILL;
}

/* --------------------------------------------------------- fill results */

/* Adds the n bytes at the head of from to f's capture (nothing is consumed). */
static void capture_from(struct lv_cfill *f, lv_sbuf_t *from, size_t n)
{
	f->answered = f->answered || n > 0;
	if (!f->capture_failed) {
		const uint8_t *p = lv_sbuf_ptr(from, 0, n);
		if (p) {
			if (!lv_cache_capture_add(&f->cap, p, n))
				f->capture_failed = true;
		} else {
			uint8_t tmp[4096];
			for (size_t off = 0; off < n && !f->capture_failed;) {
				size_t k = LV_MIN(n - off, sizeof(tmp));
				if (!lv_sbuf_peek(from, off, tmp, k) || !lv_cache_capture_add(&f->cap, tmp, k))
					f->capture_failed = true;
				off += k;
			}
		}
	}
}

bool lv_cached_capture(lv_client_t *c, lv_sbuf_t *from, size_t n)
{
	struct lv_cfill *f = c->fill;
	if (!f || !f->capturing)
		return true;
	capture_from(f, from, n);
	return !f->background;
}

const lv_buf_t *lv_cached_refresh_request(lv_client_t *c)
{
	struct lv_cfill *f = c->fill;
	return f && f->background ? &f->replay_req : NULL;
}

static void finish_fill(lv_worker_t *w, struct lv_cfill *f);

/*
 * A request that describes its statement is answered with ParameterDescription
 * and two row descriptions, which the entry keeps verbatim: everything up to
 * the ReadyForQuery, if it holds only what a successful single read sends.
 */
static int verbatim_finish(const lv_cache_capture_t *cap, lv_cache_capture_out_t *out)
{
	memset(out, 0, sizeof(*out));
	const uint8_t *p = cap->buf.data;
	size_t n = cap->buf.len, off = 0;
	int completes = 0;
	out->reject = LV_CACHE_REJECT_INCOMPLETE;
	if (cap->is_over) {
		out->reject = LV_CACHE_REJECT_TOO_BIG;
		return LV_EUNSUPP;
	}
	while (off + 5 <= n) {
		uint8_t t = p[off];
		size_t whole = (size_t)lv_get_u32(p + off + 1) + 1;
		if (whole < 5 || off + whole > n) {
			out->reject = LV_CACHE_REJECT_MALFORMED;
			return LV_EUNSUPP;
		}
		switch (t) {
		case PqMsg_ParseComplete:
		case PqMsg_BindComplete:
		case PqMsg_ParameterDescription:
		case PqMsg_RowDescription:
		case PqMsg_NoData:
		case PqMsg_DataRow:
			break;
		case PqMsg_CommandComplete:
			completes++;
			break;
		case PqMsg_ReadyForQuery:
			if (whole != 6 || p[off + 5] != 'I' || off + whole != n || completes != 1) {
				out->reject = LV_CACHE_REJECT_TXN_STATUS;
				return LV_EUNSUPP;
			}
			out->body = p;
			out->body_len = off;
			out->reject = LV_CACHE_REJECT_NONE;
			return 0;
		case PqMsg_ErrorResponse:
			out->reject = LV_CACHE_REJECT_ERROR;
			return LV_EUNSUPP;
		default:
			out->reject = LV_CACHE_REJECT_UNEXPECTED;
			return LV_EUNSUPP;
		}
		off += whole;
	}
	return LV_EUNSUPP;
}

void lv_cached_fill_done(lv_client_t *c)
{
	struct lv_cfill *f = c->fill;
	if (!f || !f->capturing || !f->answered)
		return; /* the request has not even gone out yet */
	c->fill = NULL;
	finish_fill(c->conn.worker, f);
}

void lv_cached_handoff(lv_client_t *c, lv_server_t *sv)
{
	struct lv_cfill *f = c->fill;
	c->fill = NULL;
	f->c = NULL;
	sv->fill = f;
}

void lv_cached_server_capture(lv_server_t *sv, lv_sbuf_t *from, size_t n)
{
	if (sv->fill)
		capture_from(sv->fill, from, n);
}

void lv_cached_server_done(lv_server_t *sv)
{
	struct lv_cfill *f = sv->fill;
	sv->fill = NULL;
	if (f)
		finish_fill(sv->conn.worker, f);
}

void lv_cached_server_gone(lv_server_t *sv)
{
	struct lv_cfill *f = sv->fill;
	if (!f)
		return;
	sv->fill = NULL;
	end_flight(sv->conn.worker, f, NULL);
	fill_free(f);
}

/*
 * A verbatim answer also answers the same request without its Describe of
 * the statement (what the driver sends from then on): store that form too,
 * from the portal's description and the rows.
 */
static void store_plain(lv_cache_t *cache, struct lv_cfill *f, const lv_cache_entry_t *e)
{
	size_t n, off = 0;
	const uint8_t *p = lv_cache_entry_body(e, &n);
	const uint8_t *rd = NULL, *body = NULL;
	size_t rd_len = 0;
	bool after_bind = false;
	while (off + 5 <= n) {
		size_t whole = (size_t)lv_get_u32(p + off + 1) + 1;
		uint8_t t = p[off];
		if (t == PqMsg_BindComplete)
			after_bind = true;
		else if (after_bind && !body && (t == PqMsg_RowDescription || t == PqMsg_NoData)) {
			rd = p + off;
			rd_len = whole;
		} else if (after_bind && !body && (t == PqMsg_DataRow || t == PqMsg_CommandComplete)) {
			body = p + off;
		}
		off += whole;
	}
	if (!body)
		return;
	lv_cache_entry_t *pe = lv_cache_entry_new(&f->plain_key, rd, rd_len, rd != NULL, body, (size_t)(p + n - body),
						  &f->snap, lv_cache_entry_times(e), f->pol.rule);
	if (pe) {
		(void)lv_cache_store_insert(cache->store, pe);
		lv_cache_entry_unref(pe);
	}
}

/* Stores what f captured (or counts why not), ends its flight and frees f. */
static void finish_fill(lv_worker_t *w, struct lv_cfill *f)
{
	lv_cache_t *cache = cache_of(w);
	lv_config_t *cfg = w->cfg;
	lv_usec_t now = lv_time_update();
	lv_cache_rule_stats_t *rs = lv_cache_rule_stats(cache, cfg, f->pol.rule);
	lv_cache_entry_t *e = NULL;
	unsigned outcome = LV_ML_CACHE_FILL_STORED;
	if (f->capture_failed) {
		outcome = LV_ML_CACHE_FILL_TOO_LARGE;
		lv_cache_count(rs->too_large);
	} else {
		lv_cache_capture_out_t sl;
		int rc = f->verbatim ? verbatim_finish(&f->cap, &sl)
				     : lv_cache_capture_finish(&f->cap,
							       f->extended ? LV_CACHE_SHAPE_EXTENDED : LV_CACHE_SHAPE_SIMPLE,
							       &sl);
		if (rc != 0 || sl.reject != LV_CACHE_REJECT_NONE) {
			outcome = sl.reject == LV_CACHE_REJECT_ERROR	 ? LV_ML_CACHE_FILL_ERROR
				  : sl.reject == LV_CACHE_REJECT_TOO_BIG ? LV_ML_CACHE_FILL_TOO_LARGE
									 : LV_ML_CACHE_FILL_UNCACHEABLE;
			if (sl.reject != LV_CACHE_REJECT_ERROR)
				lv_log_debug("cache: not stored: %s", lv_cache_reject_name(sl.reject));
		} else {
			uint64_t rnd = lv_cache_rand(&w->cache_rng);
			lv_cache_times_t t;
			lv_cache_times_make(&t, now, lv_cache_jittered_ttl_ms(f->pol.ttl_ms, f->pol.jitter_pct, rnd),
					    f->pol.swr_ms, now - f->start_us);
			e = lv_cache_entry_new(&f->key, sl.rowdesc, sl.rowdesc_len, sl.has_rowdesc, sl.body, sl.body_len,
					       &f->snap, &t, f->pol.rule);
			if (!e) {
				outcome = LV_ML_CACHE_FILL_ERROR;
			} else if (lv_cache_entry_size(e) > cache->entry_cap) {
				/* Larger than L1 can hold: say so rather than count it stored. */
				outcome = LV_ML_CACHE_FILL_TOO_LARGE;
				lv_cache_count(rs->too_large);
				lv_cache_entry_unref(e);
				e = NULL;
			}
		}
	}
	lv_metric_inc_l(LV_M_CACHE_FILLS_TOTAL, outcome);
	if (e) {
		lv_cache_count(rs->fills);
		/* L2 first (it needs the entry), then L1 takes our reference. */
		if (w->redis && cfg->cache.redis_l2 && lv_redis_is_up(w->redis)) {
			lv_buf_t enc;
			lv_buf_init(&enc);
			char ekey[80];
			snprintf(ekey, sizeof(ekey), "levee:ce:%s", redis_name(f));
			long long px = (long long)(f->pol.ttl_ms + f->pol.swr_ms);
			if (lv_cache_entry_encode(e, now, lv_time_wall_us(), &enc) &&
			    !lv_redis_cmdf(w->redis, NULL, NULL, "SET %s %b PX %lld", ekey, enc.data, enc.len,
					   px > 0 ? px : 1))
				lv_log_debug("cache: L2 store skipped (redis down)");
			lv_buf_cleanup(&enc);
		}
	}
	if (e && f->verbatim)
		store_plain(cache, f, e);
	release_l2_lock(w, f);
	end_flight(w, f, e);
	if (e)
		lv_cache_entry_unref(e);
	fill_free(f);
}

void lv_cached_client_gone(lv_client_t *c)
{
	unpark(c);
	struct lv_cfill *f = c->fill;
	if (!f)
		return;
	c->fill = NULL;
	lv_worker_t *w = c->conn.worker;
	release_l2_lock(w, f);
	end_flight(w, f, NULL);
	if (f->l2_pending || (f->timer && evtimer_pending(f->timer, NULL))) {
		/* Redis or the timer still holds f: they free it. */
		f->c = NULL;
		if (!f->l2_pending) {
			evtimer_del(f->timer);
			fill_free(f);
		}
		return;
	}
	fill_free(f);
}

void lv_cached_janitor(lv_worker_t *w, lv_usec_t now)
{
	lv_cache_t *cache = cache_of(w);
	static _Thread_local lv_usec_t last_sweep;
	if (cache && w->index == 0 && now - last_sweep >= LV_USEC_PER_SEC) {
		/* Once a second: reclaims expired entries and abandoned flights (whose waiters are woken). */
		last_sweep = now;
		size_t removed = 0;
		uint64_t mask = lv_cache_store_sweep(cache->store, now, &removed);
		if (mask)
			wake_workers(w, mask);
	}
	lv_config_t *cfg = w->cfg;
	lv_usec_t limit = (cfg->cache.lock_timeout_ms > 0 ? cfg->cache.lock_timeout_ms : 2000) * LV_USEC_PER_MS;
	lv_list_t *pos, *tmp;
	lv_list_for_each_safe(pos, tmp, &w->cache_parked)
	{
		lv_client_t *c = lv_container_of(pos, lv_client_t, park_node);
		if (now - c->parked_since_us < limit || c->fill)
			continue;
		unpark(c);
		c->cache_skip = true;
		lv_client_cache_retry(c);
	}
}

/* -------------------------------------------------------- invalidation */

/* Could this text write? Statements that start with a plain read word cannot (functions aside). */
static bool may_write(const char *sql, size_t n)
{
	size_t wl;
	const char *word = lv_sql_first_word(sql, n, &wl);
	size_t i = (size_t)(word - sql) + wl;
	static const char *const reads[] = {"select", "show", "begin", "commit", "rollback", "end", "start",
					    "savepoint", "release", "set", "reset", "values", "fetch", "close",
					    "discard", "deallocate", "listen", "unlisten", "prepare",
					    "declare", "move", "abort", "table"};
	for (size_t k = 0; k < LV_ARRAY_LEN(reads); k++)
		if (wl == strlen(reads[k]) && strncasecmp(word, reads[k], wl) == 0) {
			/* A multi-statement string may hide a write after the first. */
			const char *semi = memchr(sql + i, ';', n - i);
			while (semi && semi + 1 < sql + n && isspace((unsigned char)semi[1]))
				semi++;
			return semi && semi + 1 < sql + n && semi[1];
		}
	return true;
}

/* Remembers a generation the client's transaction must bump when it ends. */
static void note_slot(lv_client_t *c, lv_cache_gen_t *slot)
{
	if (!slot) {
		c->written_all = true;
		return;
	}
	for (int i = 0; i < c->n_written; i++)
		if (c->written[i] == slot)
			return;
	if (!c->written)
		c->written = lv_calloc(LV_CLIENT_WRITTEN_MAX, sizeof(*c->written));
	if (c->written && c->n_written < LV_CLIENT_WRITTEN_MAX)
		c->written[c->n_written++] = slot;
	else
		c->written_all = true; /* out of room (or memory): everything goes, which is safe */
}

/*
 * A point write touches only the rows whose key it names: UPDATE or DELETE
 * through `key = value` (an UPDATE that does not assign the key), INSERT ...
 * VALUES with the key's values and no ON CONFLICT (whose DO UPDATE may hit
 * another key). Notes their buckets and returns true; false when the write
 * is not one, so the whole table must go.
 */
static bool note_point_write(lv_client_t *c, lv_cache_t *cache, const lv_sql_info_t *info, const char *t,
			     const char *key, const point_params_t *pp)
{
	const lv_sql_point_t *p = &info->point;
	if (!p->is_point || info->n_written != 1 || info->written_overflow || info->has_writing_cte)
		return false;
	if (info->kind != LV_SQL_UPDATE && info->kind != LV_SQL_DELETE && info->kind != LV_SQL_INSERT)
		return false;
	if (info->kind == LV_SQL_INSERT && p->on_conflict)
		return false; /* DO UPDATE changes the row that conflicts, whatever its key */
	if (info->kind == LV_SQL_UPDATE) {
		if (p->set_overflow)
			return false;
		for (int i = 0; i < p->n_set; i++)
			if (strcmp(p->set_cols[i], key) == 0)
				return false;
	}
	int ci = point_col(p, key);
	int rows = info->kind == LV_SQL_INSERT ? p->n_rows : 1;
	if (ci < 0 || rows < 1)
		return false;
	lv_cache_gen_t *slots[LV_SQL_MAX_POINT_ROWS];
	for (int r = 0; r < rows; r++) {
		char canon[LV_CACHE_POINT_MAX];
		size_t n;
		if (!value_canon(info, &p->values[r][ci], pp, canon, &n))
			return false;
		slots[r] = row_slot(cache, c->database, t, key, canon, n);
		if (!slots[r])
			return false;
	}
	if (c->n_written + rows + 1 > LV_CLIENT_WRITTEN_MAX)
		return false;
	for (int r = 0; r < rows; r++)
		note_slot(c, slots[r]);
	return true;
}

/* The writes of one executed statement: its tables, rows or everything. */
static void note_write(lv_client_t *c, const char *sql, size_t len, const point_params_t *pp)
{
	lv_worker_t *w = c->conn.worker;
	lv_cache_t *cache = cache_of(w);
	lv_config_t *cfg = w->cfg;
	lv_sql_opts_t opts = {.skip_fingerprint = true, .write_functions_list = cfg->routing.write_functions};
	lv_sql_info_t *info = w->sql_info;
	/* By shape: parsed once for all the statement's constants; the values only matter when
	 * a rule keys rows, and are then read off this text. */
	if (lv_sql_cache_classify_shape(w->sql_cache, sql, len, &opts, keys_rows(cfg, c->database), info) != 0 ||
	    info->kind == LV_SQL_UNPARSABLE)
		return;
	for (unsigned i = 0; i < info->n_written; i++) {
		const char *t = lv_sql_table_written(info, i);
		const char *dot = strrchr(t, '.');
		t = dot ? dot + 1 : t;
		/* A point write bumps its rows and the table's point generation (set_deps()); any
		 * other write the table's own generation, which every entry of the table follows. */
		const char *key = point_key(cfg, c->database, t);
		if (key && strlen(t) + 2 < LV_NAME_LEN && note_point_write(c, cache, info, t, key, pp)) {
			char pgen[LV_NAME_LEN + 2];
			snprintf(pgen, sizeof(pgen), "%s#p", t);
			note_slot(c, lv_cache_gens_slot(cache->gens, c->database, pgen));
			continue;
		}
		note_slot(c, lv_cache_gens_slot(cache->gens, c->database, t));
	}
	if (info->written_overflow)
		c->written_all = true;
	/* DDL, TRUNCATE and COPY FROM name their table as written too; a DDL
	 * classify cannot attribute (DROP SCHEMA ...) clears everything. */
	if (info->kind == LV_SQL_DDL && info->n_written == 0)
		c->written_all = true;
	/* What these run is not in their text: a prepared statement, a procedure, a block. */
	if (info->kind == LV_SQL_EXECUTE || info->kind == LV_SQL_CALL || info->kind == LV_SQL_DO)
		c->written_all = true;
	if (info->kind == LV_SQL_EXPLAIN && !info->is_read_only && info->n_written == 0)
		c->written_all = true; /* EXPLAIN ANALYZE of a write runs it */
}

/*
 * Whether writes must be attributed to tables now. Not before this process has
 * looked anything up in the cache (no entry can exist), unless Redis shares
 * generations with other instances, which may cache. Set once, never cleared.
 */
static bool tracks_writes(lv_worker_t *w)
{
	return w->cfg->levee.redis || __atomic_load_n(&w->proxy->cache_used, __ATOMIC_SEQ_CST);
}

/*
 * Notes what a statement that may write writes, or, while nothing is cached,
 * only that it may: classifying every write of a proxy that caches nothing is
 * its largest cost in a write-heavy workload. Should the cache be used before
 * the transaction ends, the end invalidates everything (lv_cached_txn_end),
 * as a fill may have read what the transaction had not committed yet.
 */
static void note_or_defer(lv_client_t *c, const char *sql, size_t len, const point_params_t *pp)
{
	if (tracks_writes(c->conn.worker))
		note_write(c, sql, len, pp);
	else
		c->write_unnoted = true;
}

void lv_cached_note_statement(lv_client_t *c, const char *sql, size_t len)
{
	if (c->conn.worker->proxy->cache && may_write(sql, len))
		note_or_defer(c, sql, len, NULL);
}

/*
 * Parse: nothing runs yet; each Bind notes what its execution writes, with its
 * parameter values, so the statement's text must be at hand then. It comes
 * from the worker's prepared-statement registry (proxy/prepared.c): the
 * unnamed statement is kept on the client when it may write; named ones are
 * in the client's map, which transaction mode keeps for its own reasons and
 * session mode fills here (the server already has them; nothing is renamed).
 */
void lv_cached_note_parse(lv_client_t *c, const char *name, const char *sql, size_t len, uint16_t n_types,
			  const uint8_t *types_be)
{
	lv_worker_t *w = c->conn.worker;
	if (!w->proxy->cache)
		return;
	if (name[0] && c->pool && c->pool->pool_mode == LV_POOL_TRANSACTION)
		return;
	lv_pstmt_t *ps = NULL;
	bool writes = may_write(sql, len);
	if (!name[0])
		c->unnamed_unnoted = false; /* a new unnamed statement replaces the last */
	if (!name[0] && writes && !tracks_writes(w)) {
		/* Nothing cached yet: its Binds only mark their transactions (note_or_defer()),
		 * which needs no copy of the text. */
		lv_pstmt_put(&w->pstmts, c->unnamed_ps);
		c->unnamed_ps = NULL;
		c->unnamed_unnoted = true;
		return;
	}
	if (name[0] || writes) {
		ps = lv_pstmt_get(&w->pstmts, sql, len, types_be, n_types);
		if (!ps) {
			c->written_all = true; /* cannot remember it: the transaction's end clears all */
			if (name[0])
				c->named_unsure = true;
		}
	}
	if (!name[0]) {
		lv_pstmt_put(&w->pstmts, c->unnamed_ps);
		c->unnamed_ps = ps;
		return;
	}
	/* Session mode: a Parse of a name the server had would fail; one it accepts replaces. */
	lv_pstmt_map_del(&w->pstmts, &c->pstmts, name);
	if (ps && !lv_pstmt_map_set(&w->pstmts, &c->pstmts, name, ps))
		c->named_unsure = true;
}

void lv_cached_note_close(lv_client_t *c, const char *name)
{
	if (c->conn.worker->proxy->cache && name[0])
		lv_pstmt_map_del(&c->conn.worker->pstmts, &c->pstmts, name);
}

void lv_cached_note_forget(lv_client_t *c)
{
	lv_pstmt_map_clear(&c->conn.worker->pstmts, &c->pstmts);
	c->named_unsure = true;
}

void lv_cached_note_bind(lv_client_t *c, const lv_wire_bind_t *b, const lv_pstmt_t *ps)
{
	if (!c->conn.worker->proxy->cache)
		return;
	if (!ps)
		ps = b->stmt[0] ? lv_pstmt_map_get(&c->pstmts, b->stmt) : c->unnamed_ps;
	if (!ps) {
		/* A name Levee does not know (SQL PREPARE, a map it had to drop) may write. */
		if (b->stmt[0] && c->named_unsure)
			c->written_all = true;
		/* An unnamed write parsed while nothing was cached: what it writes is unknown,
		 * which the transaction's end turns into "everything" if the cache is in use. */
		if (!b->stmt[0] && c->unnamed_unnoted)
			c->write_unnoted = true;
		return;
	}
	point_params_t pp = {.bind = b, .n_types = ps->n_oids, .types = ps->oids};
	if (may_write(ps->query, ps->query_len))
		note_or_defer(c, ps->query, ps->query_len, &pp);
}

void lv_cached_note_large(lv_client_t *c, const char *head, size_t n)
{
	if (c->conn.worker->proxy->cache && may_write(head, n))
		c->written_all = true;
}

static void bump_redis(lv_worker_t *w, lv_cache_gen_t *slot);

void lv_cached_txn_end(lv_client_t *c)
{
	lv_worker_t *w = c->conn.worker;
	if (c->write_unnoted) {
		c->write_unnoted = false;
		if (tracks_writes(w))
			c->written_all = true; /* the cache came into use during the transaction */
	}
	if (!c->n_written && !c->written_all)
		return;
	lv_cache_t *cache = cache_of(w);
	for (int i = 0; i < c->n_written; i++) {
		lv_cache_gen_bump(c->written[i]);
		lv_metric_inc_l(LV_M_CACHE_INVALIDATIONS_TOTAL, LV_ML_CACHE_INVAL_WRITE);
		bump_redis(w, c->written[i]);
	}
	if (c->written_all) {
		lv_cache_gen_t *all = lv_cache_gens_slot(cache->gens, ALL_DB, ALL_TABLE);
		if (all) {
			lv_cache_gen_bump(all);
			bump_redis(w, all);
		} else {
			lv_cache_gens_bump_epoch(cache->gens);
		}
		lv_metric_inc_l(LV_M_CACHE_INVALIDATIONS_TOTAL, LV_ML_CACHE_INVAL_WRITE);
	}
	c->n_written = 0;
	c->written_all = false;
}

static void incr_reply(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	lv_cache_gen_t *slot = arg;
	if (lv_redis_reply_type(reply) == LV_REDIS_INTEGER) {
		lv_cache_gen_raise(slot, (uint64_t)lv_redis_reply_int(reply));
		return;
	}
	if (is_noscript(reply)) {
		/* Redis lost its scripts (restart, SCRIPT FLUSH): send this one whole, load again. */
		char key[2 * LV_NAME_LEN + 16];
		snprintf(key, sizeof(key), "levee:gen:%s:%s", lv_cache_gen_db(slot), lv_cache_gen_table(slot));
		if (!lv_redis_cmdf(r, incr_reply, slot, "EVAL %s 1 %s %s %s %s", bump_script, key, INV_CHANNEL,
				   lv_cache_gen_db(slot), lv_cache_gen_table(slot)))
			lv_log_debug("cache: could not share an invalidation (redis down)");
		load_scripts(r);
	}
}

/* Shares a bump: INCR the shared generation, then tell every instance its new value. */
static void bump_redis_on(lv_redis_t *r, lv_cache_gen_t *slot)
{
	if (!r || !lv_redis_is_up(r))
		return;
	char key[2 * LV_NAME_LEN + 16];
	snprintf(key, sizeof(key), "levee:gen:%s:%s", lv_cache_gen_db(slot), lv_cache_gen_table(slot));
	if (!lv_redis_cmdf(r, incr_reply, slot, "EVALSHA %s 1 %s %s %s %s", bump_sha, key, INV_CHANNEL,
			   lv_cache_gen_db(slot), lv_cache_gen_table(slot)))
		lv_log_debug("cache: could not share an invalidation (redis down)");
}

static void bump_redis(lv_worker_t *w, lv_cache_gen_t *slot)
{
	bump_redis_on(w->redis, slot);
}

void lv_cached_invalidate(lv_worker_t *w, const char *table)
{
	lv_cache_t *cache = cache_of(w);
	if (!cache)
		return;
	lv_metric_inc_l(LV_M_CACHE_INVALIDATIONS_TOTAL, LV_ML_CACHE_INVAL_ADMIN);
	if (!table || !*table) {
		/* Local entries at once; every instance's and the Redis copies through the shared generation. */
		lv_cache_gens_bump_epoch(cache->gens);
		lv_cache_store_clear(cache->store);
		lv_cache_gen_t *all = lv_cache_gens_slot(cache->gens, ALL_DB, ALL_TABLE);
		if (all) {
			lv_cache_gen_bump(all);
			bump_redis(w, all);
		}
		return;
	}
	/* Every database that has the table. */
	lv_config_t *cfg = w->cfg;
	for (size_t i = 0; i < cfg->n_dbs; i++) {
		lv_cache_gen_t *slot = lv_cache_gens_slot(cache->gens, cfg->dbs[i].name, table);
		if (!slot)
			continue;
		lv_cache_gen_bump(slot);
		bump_redis(w, slot);
	}
}

/* ------------------------------------------------------------- workers */

static void worker_redis_state(lv_redis_t *r, bool up, void *arg)
{
	(void)arg;
	if (up)
		load_scripts(r);
}

bool lv_cached_worker_init(lv_worker_t *w)
{
	(void)pthread_once(&scripts_once, hash_scripts);
	w->cache_rng = (uint64_t)lv_time_wall_us() ^ ((uint64_t)w->index << 48) ^ 0x9e3779b97f4a7c15ull;
	lv_config_t *cfg = w->cfg;
	if (!cfg->levee.redis || !*cfg->levee.redis)
		return true;
	char name[32];
	snprintf(name, sizeof(name), "worker %d", w->index);
	lv_redis_opts_t o = {.url = cfg->levee.redis, .name = name, .on_state = worker_redis_state, .state_arg = w};
	lv_err_t err = {0};
	w->redis = lv_redis_new(w->loop, &o, &err);
	if (!w->redis) {
		lv_log_error("redis: %s", err.msg);
		return false;
	}
	return true;
}

void lv_cached_worker_cleanup(lv_worker_t *w)
{
	if (w->cache_spare)
		fill_free(w->cache_spare);
	w->cache_spare = NULL;
	lv_redis_free(w->redis);
	w->redis = NULL;
}

/* ----------------------------------------------------- main-thread side */

static void inv_message(lv_redis_t *r, const char *channel, const char *payload, size_t len, void *arg)
{
	(void)r;
	(void)channel;
	lv_cache_t *cache = arg;
	char buf[3 * LV_NAME_LEN + 32];
	if (len >= sizeof(buf))
		return;
	memcpy(buf, payload, len);
	buf[len] = 0;
	char *t1 = strchr(buf, '\t');
	char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
	if (!t2)
		return;
	*t1 = *t2 = 0;
	lv_cache_gen_t *slot = lv_cache_gens_slot(cache->gens, buf, t1 + 1);
	if (!slot)
		return;
	uint64_t v = strtoull(t2 + 1, NULL, 10);
	if (v > lv_cache_gen_get(slot)) {
		lv_cache_gen_raise(slot, v);
		lv_metric_inc_l(LV_M_CACHE_INVALIDATIONS_TOTAL, LV_ML_CACHE_INVAL_REDIS);
	}
}

struct lv_cached_main {
	lv_cache_t *cache;
	lv_redis_t *sub; /* subscriber to other instances' bumps */
	lv_redis_t *cmd; /* shares this thread's own bumps (queue batches) */
	bool was_up;
};

static void sub_state(lv_redis_t *r, bool up, void *arg)
{
	(void)r;
	lv_cached_main_t *m = arg;
	if (up && !m->was_up) {
		/* Messages may have been missed while we were away: nothing in L1 can be trusted. */
		lv_cache_gens_bump_epoch(m->cache->gens);
		lv_metric_inc_l(LV_M_CACHE_INVALIDATIONS_TOTAL, LV_ML_CACHE_INVAL_RECONNECT);
	}
	m->was_up = up;
}

lv_cached_main_t *lv_cached_main_start(lv_proxy_t *p, lv_loop_t *loop, lv_config_t *cfg)
{
	if (!p->cache)
		return NULL;
	(void)pthread_once(&scripts_once, hash_scripts);
	lv_cached_main_t *m = lv_calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->cache = p->cache;
	if (!cfg->levee.redis || !*cfg->levee.redis)
		return m;
	lv_redis_opts_t o = {.url = cfg->levee.redis, .name = "subscriber", .on_state = sub_state, .state_arg = m};
	lv_err_t err = {0};
	m->sub = lv_redis_new(loop, &o, &err);
	lv_redis_opts_t oc = {.url = cfg->levee.redis, .name = "main", .on_state = worker_redis_state};
	m->cmd = m->sub ? lv_redis_new(loop, &oc, &err) : NULL;
	if (!m->sub || !m->cmd || !lv_redis_subscribe(m->sub, INV_CHANNEL, inv_message, p->cache)) {
		lv_log_error("redis: %s", err.msg[0] ? err.msg : "out of memory");
		lv_cached_main_free(m);
		return NULL;
	}
	return m;
}

void lv_cached_main_free(lv_cached_main_t *m)
{
	if (!m)
		return;
	lv_redis_free(m->sub);
	lv_redis_free(m->cmd);
	lv_free(m);
}

void lv_cached_main_applied(void *arg, const char *db, const char *const *tables, int n)
{
	lv_cached_main_t *m = arg;
	if (!m)
		return;
	for (int i = 0; i < n; i++) {
		lv_cache_gen_t *slot = lv_cache_gens_slot(m->cache->gens, db, tables[i]);
		if (!slot) {
			lv_cache_gens_bump_epoch(m->cache->gens);
			continue;
		}
		lv_cache_gen_bump(slot);
		lv_metric_inc_l(LV_M_CACHE_INVALIDATIONS_TOTAL, LV_ML_CACHE_INVAL_WRITE);
		bump_redis_on(m->cmd, slot);
	}
}
