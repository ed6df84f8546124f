/* SPDX-License-Identifier: ISC */
/*
 * The write queue's admin helpers behind SHOW QUEUE, RETRY DEAD LETTERS and
 * DROP DEAD LETTER (lv_wq_admin(); contract in wq.h). Each call is one job
 * on the caller's loop with its own short-lived Redis connection: per
 * configured database, one EVAL of STATS_LUA (queue length, pending, age of
 * the oldest unapplied entry, dead letters, cluster-wide counters) or of
 * RETRY_DEAD_LUA (re-add every dead letter to its stream, then recount the
 * partitions' entries for max_length), or one XDEL of a dead letter. The
 * caller's callback runs once, with every row or the first error, or after
 * 5 s without an answer.
 *
 * Ownership: the job owns its Redis connection, key names, rows and timer;
 * it frees them from the loop's deferred list after answering, so nothing of
 * it outlives the iteration in which the callback ran. Key names come from
 * wq.c (wq_int.h), so both files address the same streams.
 */
#include "wq/wq.h"
#include "core/mem.h"
#include "wq/wq_int.h"

#include <event2/event.h>

static const char STATS_LUA[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"local len, pending, oldest = 0, 0, nil\n"
	"for i = 1, #KEYS - 2 do\n"
	"  local s = KEYS[i]\n"
	"  if redis.call('EXISTS', s) == 1 then\n"
	"    len = len + redis.call('XLEN', s)\n"
	"    local cand = nil\n"
	"    local ok, p = pcall(redis.call, 'XPENDING', s, ARGV[1])\n"
	"    if ok then\n"
	"      pending = pending + p[1]\n"
	"      if p[1] > 0 then cand = p[2] end\n"
	"    end\n"
	"    if not cand then\n"
	"      local last = '0-0'\n"
	"      local gok, groups = pcall(redis.call, 'XINFO', 'GROUPS', s)\n"
	"      if gok then\n"
	"        for _, g in ipairs(groups) do\n"
	"          local name, ld\n"
	"          for k = 1, #g, 2 do\n"
	"            if g[k] == 'name' then name = g[k + 1] elseif g[k] == 'last-delivered-id' then ld = g[k + 1] end\n"
	"          end\n"
	"          if name == ARGV[1] and ld then last = ld end\n"
	"        end\n"
	"      end\n"
	"      local r = redis.call('XRANGE', s, '(' .. last, '+', 'COUNT', 1)\n"
	"      if #r > 0 then cand = r[1][1] end\n"
	"    end\n"
	"    if cand then\n"
	"      local ms = tonumber(string.match(cand, '^(%d+)-'))\n"
	"      if ms and (not oldest or ms < oldest) then oldest = ms end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"local dead = redis.call('XLEN', KEYS[#KEYS - 1])\n"
	"local st = redis.call('HMGET', KEYS[#KEYS], 'enqueued', 'applied', 'retried', 'dead')\n"
	"local function num(v) if v then return tonumber(v) or 0 end return 0 end\n"
	"local age = 0\n"
	"if oldest and now > oldest then age = now - oldest end\n"
	"return {len, pending, age, dead, num(st[1]), num(st[2]), num(st[3]), num(st[4])}\n";

/*
 * KEYS: the partitions, the dead stream, the stats hash. Re-adds every dead
 * letter to its stream, then sets the stats hash's len (the count behind
 * max_length) to the partitions' exact total.
 */
static const char RETRY_DEAD_LUA[] =
	"local dead = KEYS[#KEYS - 1]\n"
	"local n = 0\n"
	"for _, e in ipairs(redis.call('XRANGE', dead, '-', '+')) do\n"
	"  local f = e[2]\n"
	"  local stream, payload\n"
	"  for i = 1, #f, 2 do\n"
	"    if f[i] == 'stream' then stream = f[i + 1] elseif f[i] == 'payload' then payload = f[i + 1] end\n"
	"  end\n"
	"  if stream and payload and payload ~= '' then\n"
	"    redis.call('XADD', stream, '*', 'm', payload)\n"
	"    redis.call('XDEL', dead, e[1])\n"
	"    n = n + 1\n"
	"  end\n"
	"end\n"
	"local len = 0\n"
	"for i = 1, #KEYS - 2 do\n"
	"  local l = redis.pcall('XLEN', KEYS[i])\n"
	"  if type(l) == 'number' then len = len + l end\n"
	"end\n"
	"redis.call('HSET', KEYS[#KEYS], 'len', len)\n"
	"return n\n";

typedef struct admin_job {
	lv_loop_t *loop;
	lv_redis_t *r;
	lv_wq_admin_op_t op;
	lv_wq_admin_cb cb;
	void *arg;
	char id[64];
	size_t n_dbs;
	char (*keys)[LV_WQ_PARTITIONS + 2][LV__WQ_KEY_LEN]; /* per database: partitions, dead, stats */
	lv_wq_db_stats_t *rows;
	size_t n_replies;
	long long count;
	char error[200];
	bool is_sent;
	bool is_done;
	struct event *timer;
	lv_deferred_t deferred;
} admin_job_t;

static void admin_free_deferred(lv_deferred_t *d)
{
	admin_job_t *j = lv_container_of(d, admin_job_t, deferred);
	lv_redis_free(j->r); /* no command is pending any more */
	if (j->timer)
		event_free(j->timer);
	lv_free(j->keys);
	lv_free(j->rows);
	lv_free(j);
}

/* Answers the caller once and frees the job after this loop iteration. */
static void admin_finish(admin_job_t *j)
{
	if (j->is_done)
		return;
	j->is_done = true;
	if (j->timer)
		event_del(j->timer);
	if (j->error[0])
		j->cb(j->arg, NULL, 0, 0, j->error);
	else
		j->cb(j->arg, j->rows, j->op == LV_WQ_ADMIN_STATS ? j->n_dbs : 0, j->count, NULL);
	lv_loop_defer(j->loop, &j->deferred);
}

static void admin_reply_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	admin_job_t *j = arg;
	size_t i = j->n_replies++;
	if (j->is_done)
		return;
	if (!reply || lv_redis_reply_type(reply) == LV_REDIS_ERROR) {
		const char *s = lv_redis_reply_str(reply, NULL);
		snprintf(j->error, sizeof(j->error), "levee: queue command failed: %s",
			 s ? s : "Redis did not answer");
	} else if (j->op == LV_WQ_ADMIN_STATS && i < j->n_dbs) {
		lv_wq_db_stats_t *row = &j->rows[i];
		long long v[8] = {0};
		for (size_t k = 0; k < 8; k++)
			v[k] = lv_redis_reply_int(lv_redis_reply_at(reply, k));
		row->length = v[0];
		row->pending = v[1];
		row->oldest_age_ms = v[2];
		row->dead = v[3];
		row->enqueued = v[4];
		row->applied = v[5];
		row->retried = v[6];
		row->dead_lettered = v[7];
	} else {
		j->count += lv_redis_reply_int(reply);
	}
	if (j->n_replies >= j->n_dbs)
		admin_finish(j);
}

static void admin_send(admin_job_t *j)
{
	j->is_sent = true;
	for (size_t d = 0; d < j->n_dbs; d++) {
		bool ok;
		char (*k)[LV__WQ_KEY_LEN] = j->keys[d];
		if (j->op == LV_WQ_ADMIN_STATS || j->op == LV_WQ_ADMIN_RETRY_DEAD) {
			/* Both take every key of the database: partitions, dead stream, stats. */
			bool stats = j->op == LV_WQ_ADMIN_STATS;
			const char *argv[3 + LV_WQ_PARTITIONS + 2 + 1];
			int n = 0;
			char nkeys[16];
			snprintf(nkeys, sizeof(nkeys), "%d", LV_WQ_PARTITIONS + 2);
			argv[n++] = "EVAL";
			argv[n++] = stats ? STATS_LUA : RETRY_DEAD_LUA;
			argv[n++] = nkeys;
			for (int i = 0; i < LV_WQ_PARTITIONS + 2; i++)
				argv[n++] = k[i];
			if (stats)
				argv[n++] = LV_WQ_GROUP;
			ok = lv_redis_cmd(j->r, admin_reply_cb, j, n, argv, NULL);
		} else {
			const char *argv[] = {"XDEL", k[LV_WQ_PARTITIONS], j->id};
			ok = lv_redis_cmd(j->r, admin_reply_cb, j, 3, argv, NULL);
		}
		if (!ok) {
			snprintf(j->error, sizeof(j->error), "levee: could not send to Redis");
			j->n_replies++;
			if (j->n_replies >= j->n_dbs)
				admin_finish(j);
		}
	}
}

static void admin_state_cb(lv_redis_t *r, bool up, void *arg)
{
	admin_job_t *j = arg;
	if (up && !j->is_sent && !j->is_done)
		admin_send(j);
}

static void admin_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	admin_job_t *j = arg;
	if (!j->error[0] && j->n_dbs > 0)
		snprintf(j->error, sizeof(j->error), "levee: Redis did not answer in time");
	admin_finish(j);
}

bool lv_wq_admin(lv_loop_t *loop, const lv_config_t *cfg, lv_wq_admin_op_t op, const char *id,
		 lv_wq_admin_cb cb, void *arg)
{
	if (!cfg->levee.redis || !*cfg->levee.redis)
		return false;
	admin_job_t *j = lv_calloc(1, sizeof(*j));
	if (!j)
		return false;
	j->loop = loop;
	j->op = op;
	j->cb = cb;
	j->arg = arg;
	snprintf(j->id, sizeof(j->id), "%s", id ? id : "");
	j->n_dbs = cfg->n_dbs;
	j->keys = lv_calloc(j->n_dbs ? j->n_dbs : 1, sizeof(*j->keys));
	j->rows = lv_calloc(j->n_dbs ? j->n_dbs : 1, sizeof(*j->rows));
	j->deferred.fn = admin_free_deferred;
	j->timer = event_new(lv_loop_base(loop), -1, 0, admin_timeout_cb, j);
	if (!j->keys || !j->rows || !j->timer)
		goto fail;
	for (size_t d = 0; d < j->n_dbs; d++) {
		const char *db = cfg->dbs[d].name;
		snprintf(j->rows[d].db, sizeof(j->rows[d].db), "%s", db);
		for (unsigned p = 0; p < LV_WQ_PARTITIONS; p++)
			lv__wq_stream_key(j->keys[d][p], cfg, db, p);
		lv__wq_named_key(j->keys[d][LV_WQ_PARTITIONS], cfg, db, "dead");
		lv__wq_named_key(j->keys[d][LV_WQ_PARTITIONS + 1], cfg, db, "stats");
	}
	lv_redis_opts_t o = {.url = cfg->levee.redis, .name = "queue admin", .timeout_ms = 5000,
			     .on_state = admin_state_cb, .state_arg = j};
	lv_err_t err = {0};
	j->r = lv_redis_new(loop, &o, &err);
	if (!j->r)
		goto fail;
	struct timeval tv = {5, 0};
	(void)event_add(j->timer, &tv);
	if (j->n_dbs == 0) {
		/* Nothing to ask: answer from the loop, not from inside this call. */
		struct timeval now = {0, 0};
		(void)event_add(j->timer, &now);
		j->is_sent = true;
	} else if (lv_redis_is_up(j->r)) {
		admin_send(j);
	}
	return true;
fail:
	if (j->timer)
		event_free(j->timer);
	lv_free(j->keys);
	lv_free(j->rows);
	lv_free(j);
	return false;
}
