/* SPDX-License-Identifier: ISC */
/*
 * The admin console: the database "levee" on Levee's own port, spoken to with
 * psql. Verbs are a table (PgBouncer's cmd_list): SHOW <what>, RELOAD, PAUSE,
 * RESUME, SHUTDOWN. SHOW commands that need every worker's objects gather a
 * snapshot from each worker by message (lv_proxy_gather) and answer once all
 * have replied; the admin client waits meanwhile (n_admin_pending).
 *
 * Owns the gather state of one SHOW until it is answered. A client that
 * leaves meanwhile is found missing by its cancel key and the answer dropped.
 */
#include "admin/console.h"
#include "core/log.h"
#include "core/mem.h"
#include "cache/cache.h"
#include "core/str.h"
#include "proxy/cached.h"
#include "redis/redis.h"
#include "proxy/client.h"
#include "proxy/pool.h"
#include "proxy/server.h"
#include "proxy/worker.h"
#include "wire/sqlstate.h"
#include "wire/write.h"
#include "wq/wq.h"

#include <ctype.h>
#include <pthread.h>
#include <strings.h>
#include <time.h>

#define OID_INT8 20
#define OID_TEXT 25

static lv_proxy_t *proxy;
static lv_admin_hooks_t hooks;

/* ---------------------------------------------------------------- results */

/* A result being built: column names and types, then rows, then a tag. */
typedef struct result {
	lv_buf_t out;
	size_t n_cols;
	size_t n_rows;
	bool ok;
} result_t;

static void result_begin(result_t *r, size_t n, const char *const *names, const uint32_t *oids)
{
	lv_buf_init(&r->out);
	r->n_cols = n;
	r->n_rows = 0;
	r->ok = lv_wire_write_row_description(&r->out, n, names, oids);
}

static void result_row(result_t *r, const char *const *values)
{
	r->ok = r->ok && lv_wire_write_data_row(&r->out, r->n_cols, values);
	r->n_rows++;
}

static void result_send(lv_client_t *c, result_t *r, const char *verb)
{
	char tag[64];
	snprintf(tag, sizeof(tag), "%s %zu", verb, r->n_rows);
	r->ok = r->ok && lv_wire_write_command_complete(&r->out, tag) && lv_wire_write_ready(&r->out, 'I');
	if (r->ok)
		(void)lv_client_send(c, r->out.data, r->out.len);
	else
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
	lv_buf_cleanup(&r->out);
}

static void send_command_ok(lv_client_t *c, const char *tag)
{
	lv_buf_t b;
	lv_buf_init(&b);
	if (lv_wire_write_command_complete(&b, tag) && lv_wire_write_ready(&b, 'I'))
		(void)lv_client_send(c, b.data, b.len);
	lv_buf_cleanup(&b);
}

static void send_error(lv_client_t *c, const char *sqlstate, const char *msg)
{
	lv_client_error(c, sqlstate, "%s", msg);
	lv_client_ready(c, 'I');
}

static const char *fmt_u64(char *buf, uint64_t v)
{
	snprintf(buf, 24, "%llu", (unsigned long long)v);
	return buf;
}

static const char *fmt_time(char *buf, size_t cap, lv_usec_t wall_us)
{
	time_t t = (time_t)(wall_us / LV_USEC_PER_SEC);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm);
	return buf;
}

/* ------------------------------------------------------ gathered snapshots */

typedef enum show_kind { SHOW_POOLS, SHOW_CLIENTS, SHOW_SERVERS, SHOW_STATS } show_kind_t;

/* One pool's numbers from one worker. */
typedef struct pool_snap {
	char db[LV_NAME_LEN], user[LV_NAME_LEN], backend[LV_HOST_LEN + 8];
	int pool_mode, pool_size;
	uint64_t cl_idle, cl_active, cl_waiting, sv_active, sv_idle, sv_login;
	lv_usec_t maxwait_us;
	uint64_t n_xact, n_query, bytes_in, bytes_out, xact_us, query_us, wait_us;
} pool_snap_t;

typedef struct show_job {
	show_kind_t kind;
	lv_worker_t *home;
	uint32_t client_key;
	uint64_t client_id;
	pthread_mutex_t lock;
	lv_buf_t rows; /* DataRows, for CLIENTS and SERVERS */
	size_t n_rows;
	pool_snap_t *pools; /* for POOLS and STATS */
	size_t n_pools, cap_pools;
	bool oom;
} show_job_t;

static void add_pool_snap(show_job_t *j, const pool_snap_t *s)
{
	for (size_t i = 0; i < j->n_pools; i++) {
		pool_snap_t *t = &j->pools[i];
		if (strcmp(t->db, s->db) == 0 && strcmp(t->user, s->user) == 0 && strcmp(t->backend, s->backend) == 0) {
			t->cl_idle += s->cl_idle;
			t->cl_active += s->cl_active;
			t->cl_waiting += s->cl_waiting;
			t->sv_active += s->sv_active;
			t->sv_idle += s->sv_idle;
			t->sv_login += s->sv_login;
			t->maxwait_us = LV_MAX(t->maxwait_us, s->maxwait_us);
			t->n_xact += s->n_xact;
			t->n_query += s->n_query;
			t->bytes_in += s->bytes_in;
			t->bytes_out += s->bytes_out;
			t->xact_us += s->xact_us;
			t->query_us += s->query_us;
			t->wait_us += s->wait_us;
			return;
		}
	}
	if (j->n_pools == j->cap_pools) {
		size_t cap = j->cap_pools ? j->cap_pools * 2 : 16;
		pool_snap_t *np = lv_realloc(j->pools, cap * sizeof(*np));
		if (!np) {
			j->oom = true;
			return;
		}
		j->pools = np;
		j->cap_pools = cap;
	}
	j->pools[j->n_pools++] = *s;
}

static void client_row(show_job_t *j, const lv_client_t *c)
{
	char id[24], port[24], worker[24], since[64];
	snprintf(id, sizeof(id), "C-%llu", (unsigned long long)c->conn.id);
	const char *v[] = {id, c->database, c->user, c->conn.addr, fmt_u64(port, (uint64_t)c->conn.port),
			   lv_client_state_name(c->state), fmt_u64(worker, (uint64_t)c->conn.worker->index),
			   fmt_time(since, sizeof(since), c->conn.wall_connect_time), c->is_tls ? "yes" : "no"};
	if (!lv_wire_write_data_row(&j->rows, LV_ARRAY_LEN(v), v))
		j->oom = true;
	j->n_rows++;
}

static void server_row(show_job_t *j, const lv_server_t *sv)
{
	char id[24], port[24], pid[24], worker[24], since[64], cid[24];
	snprintf(id, sizeof(id), "S-%llu", (unsigned long long)sv->conn.id);
	if (sv->client)
		snprintf(cid, sizeof(cid), "C-%llu", (unsigned long long)sv->client->conn.id);
	const char *v[] = {id, sv->pool->db_name, sv->pool->user, sv->pool->backend_index ? "replica" : "primary", sv->conn.addr,
			   fmt_u64(port, (uint64_t)sv->conn.port), lv_server_state_name(sv->state),
			   fmt_u64(pid, sv->pid), fmt_u64(worker, (uint64_t)sv->conn.worker->index),
			   fmt_time(since, sizeof(since), sv->conn.wall_connect_time), sv->client ? cid : NULL};
	if (!lv_wire_write_data_row(&j->rows, LV_ARRAY_LEN(v), v))
		j->oom = true;
	j->n_rows++;
}

static void gather_worker(lv_worker_t *w, void *arg)
{
	show_job_t *j = arg;
	lv_usec_t now = lv_time_update();
	pthread_mutex_lock(&j->lock);
	lv_list_t *pos, *cp;
	if (j->kind == SHOW_CLIENTS) {
		lv_list_for_each(cp, &w->login.head) client_row(j, lv_container_of(cp, lv_client_t, conn.node));
		lv_list_for_each(cp, &w->admin.head) client_row(j, lv_container_of(cp, lv_client_t, conn.node));
	}
	lv_list_for_each(pos, &w->pools)
	{
		lv_pool_t *p = lv_container_of(pos, lv_pool_t, node);
		if (j->kind == SHOW_CLIENTS) {
			lv_clist_t *lists[] = {&p->active, &p->waiting, &p->idle_clients};
			for (size_t i = 0; i < LV_ARRAY_LEN(lists); i++)
				lv_list_for_each(cp, &lists[i]->head)
					client_row(j, lv_container_of(cp, lv_client_t, conn.node));
			continue;
		}
		if (j->kind == SHOW_SERVERS) {
			lv_clist_t *lists[] = {&p->sv_active, &p->sv_idle, &p->sv_login, &p->sv_testing};
			for (size_t i = 0; i < LV_ARRAY_LEN(lists); i++)
				lv_list_for_each(cp, &lists[i]->head)
					server_row(j, lv_container_of(cp, lv_server_t, conn.node));
			continue;
		}
		pool_snap_t s;
		memset(&s, 0, sizeof(s));
		snprintf(s.db, sizeof(s.db), "%s", p->db_name);
		snprintf(s.user, sizeof(s.user), "%s", p->user);
		const lv_cfg_host_t *host = lv_pool_host(p);
		if (host)
			snprintf(s.backend, sizeof(s.backend), "%s:%d", host->host, host->port);
		s.pool_mode = p->pool_mode;
		s.pool_size = lv_pool_size(p);
		s.cl_idle = p->idle_clients.n;
		s.cl_active = p->active.n;
		s.cl_waiting = p->waiting.n;
		s.sv_active = p->sv_active.n;
		s.sv_idle = p->sv_idle.n + p->sv_testing.n;
		s.sv_login = p->sv_login.n;
		lv_list_t *first = lv_list_first(&p->waiting.head);
		if (first)
			s.maxwait_us = now - lv_container_of(first, lv_client_t, conn.node)->wait_start_us;
		s.n_xact = p->n_xact;
		s.n_query = p->n_query;
		s.bytes_in = p->bytes_in;
		s.bytes_out = p->bytes_out;
		s.xact_us = p->xact_time_us;
		s.query_us = p->query_time_us;
		s.wait_us = p->wait_time_us;
		add_pool_snap(j, &s);
	}
	pthread_mutex_unlock(&j->lock);
}

static void job_free(show_job_t *j)
{
	lv_buf_cleanup(&j->rows);
	lv_free(j->pools);
	pthread_mutex_destroy(&j->lock);
	lv_free(j);
}

static void gather_done(void *arg)
{
	show_job_t *j = arg;
	lv_client_t *c = lv_worker_key_find(j->home, j->client_key);
	if (!c || c->conn.id != j->client_id || c->state != LV_CLIENT_ADMIN) {
		job_free(j);
		return;
	}
	c->n_admin_pending = 0;
	if (j->oom) {
		job_free(j);
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	result_t r;
	switch (j->kind) {
	case SHOW_CLIENTS: {
		static const char *const names[] = {"id", "database", "user", "addr", "port", "state", "worker",
						    "connect_time", "tls"};
		static const uint32_t oids[] = {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT8,
						OID_TEXT, OID_INT8, OID_TEXT, OID_TEXT};
		result_begin(&r, LV_ARRAY_LEN(names), names, oids);
		r.ok = r.ok && lv_buf_append(&r.out, j->rows.data, j->rows.len);
		r.n_rows = j->n_rows;
		result_send(c, &r, "SHOW");
		break;
	}
	case SHOW_SERVERS: {
		static const char *const names[] = {"id", "database", "user", "backend", "addr", "port",
						    "state", "pid", "worker", "connect_time", "client_id"};
		static const uint32_t oids[] = {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT8,
						OID_TEXT, OID_INT8, OID_INT8, OID_TEXT, OID_TEXT};
		result_begin(&r, LV_ARRAY_LEN(names), names, oids);
		r.ok = r.ok && lv_buf_append(&r.out, j->rows.data, j->rows.len);
		r.n_rows = j->n_rows;
		result_send(c, &r, "SHOW");
		break;
	}
	case SHOW_POOLS: {
		static const char *const names[] = {"database", "user",      "backend",    "pool_mode",
						    "cl_idle",  "cl_active", "cl_waiting", "sv_active",
						    "sv_idle",  "sv_login",  "maxwait_ms", "pool_size"};
		static const uint32_t oids[] = {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT8, OID_INT8,
						OID_INT8, OID_INT8, OID_INT8, OID_INT8, OID_INT8, OID_INT8};
		result_begin(&r, LV_ARRAY_LEN(names), names, oids);
		for (size_t i = 0; i < j->n_pools; i++) {
			pool_snap_t *s = &j->pools[i];
			char b[8][24];
			const char *v[] = {s->db, s->user, s->backend, s->pool_mode == LV_POOL_TRANSACTION ? "transaction" : "session",
					   fmt_u64(b[0], s->cl_idle), fmt_u64(b[1], s->cl_active), fmt_u64(b[2], s->cl_waiting),
					   fmt_u64(b[3], s->sv_active), fmt_u64(b[4], s->sv_idle), fmt_u64(b[5], s->sv_login),
					   fmt_u64(b[6], (uint64_t)(s->maxwait_us / 1000)), fmt_u64(b[7], (uint64_t)s->pool_size)};
			result_row(&r, v);
		}
		result_send(c, &r, "SHOW");
		break;
	}
	case SHOW_STATS: {
		static const char *const names[] = {"database", "total_xact_count", "total_query_count",
						    "total_received", "total_sent", "total_xact_time_us",
						    "total_query_time_us", "total_wait_time_us"};
		static const uint32_t oids[] = {OID_TEXT, OID_INT8, OID_INT8, OID_INT8,
						OID_INT8, OID_INT8, OID_INT8, OID_INT8};
		result_begin(&r, LV_ARRAY_LEN(names), names, oids);
		/* Per database: sum the users. */
		for (size_t i = 0; i < j->n_pools; i++) {
			pool_snap_t *s = &j->pools[i];
			if (!s->db[0])
				continue;
			for (size_t k = i + 1; k < j->n_pools; k++) {
				pool_snap_t *t = &j->pools[k];
				if (strcmp(t->db, s->db) != 0)
					continue;
				s->n_xact += t->n_xact;
				s->n_query += t->n_query;
				s->bytes_in += t->bytes_in;
				s->bytes_out += t->bytes_out;
				s->xact_us += t->xact_us;
				s->query_us += t->query_us;
				s->wait_us += t->wait_us;
				t->db[0] = '\0';
			}
			char b[7][24];
			const char *v[] = {s->db, fmt_u64(b[0], s->n_xact), fmt_u64(b[1], s->n_query),
					   fmt_u64(b[2], s->bytes_in), fmt_u64(b[3], s->bytes_out),
					   fmt_u64(b[4], s->xact_us), fmt_u64(b[5], s->query_us), fmt_u64(b[6], s->wait_us)};
			result_row(&r, v);
		}
		result_send(c, &r, "SHOW");
		break;
	}
	}
	job_free(j);
	/* The client may have sent more while it waited. */
	lv_client_resume_admin(c);
}

static void start_show(lv_client_t *c, show_kind_t kind)
{
	show_job_t *j = lv_calloc(1, sizeof(*j));
	if (!j) {
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	j->kind = kind;
	j->home = c->conn.worker;
	j->client_key = c->cancel_key;
	j->client_id = c->conn.id;
	pthread_mutex_init(&j->lock, NULL);
	lv_buf_init(&j->rows);
	c->n_admin_pending = 1;
	if (!lv_proxy_gather(proxy, c->conn.worker, gather_worker, gather_done, j)) {
		c->n_admin_pending = 0;
		job_free(j);
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
	}
}

/* ----------------------------------------------------------- simple SHOWs */

static void show_version(lv_client_t *c)
{
	static const char *const names[] = {"version"};
	static const uint32_t oids[] = {OID_TEXT};
	result_t r;
	result_begin(&r, 1, names, oids);
	const char *v[] = {"Levee " LV_VERSION};
	result_row(&r, v);
	result_send(c, &r, "SHOW");
}

typedef struct config_rows {
	result_t *r;
} config_rows_t;

static void config_visit(void *arg, const char *section, const char *key, const char *value, bool reloadable)
{
	config_rows_t *cr = arg;
	const char *v[] = {section, key, value, reloadable ? "yes" : "no"};
	result_row(cr->r, v);
}

static void show_config(lv_client_t *c)
{
	static const char *const names[] = {"section", "key", "value", "reloadable"};
	static const uint32_t oids[] = {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT};
	result_t r;
	result_begin(&r, 4, names, oids);
	config_rows_t cr = {&r};
	lv_config_for_each(c->conn.worker->cfg, config_visit, &cr);
	result_send(c, &r, "SHOW");
}

/* One row per backend of the configuration: health, lag, load. */
static void show_backends(lv_client_t *c)
{
	static const char *const names[] = {"backend", "role", "up", "usable", "lag_ms", "lag_bytes", "lsn",
					    "outstanding", "bans", "recoveries", "queries"};
	static const uint32_t oids[] = {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT8, OID_INT8,
					OID_INT8, OID_INT8, OID_INT8, OID_INT8, OID_INT8};
	result_t r;
	result_begin(&r, LV_ARRAY_LEN(names), names, oids);
	lv_health_t *h = proxy->health;
	for (int i = 0; h && i < lv_health_count(h); i++) {
		lv_backend_t *b = lv_health_at(h, i);
		char addr[LV_HOST_LEN + 8], n[8][24];
		snprintf(addr, sizeof(addr), "%s:%d", b->host, b->port);
		int rep = __atomic_load_n(&b->is_replica, __ATOMIC_RELAXED);
		int64_t lag_us = __atomic_load_n(&b->lag_us, __ATOMIC_RELAXED);
		int64_t lag_b = __atomic_load_n(&b->lag_bytes, __ATOMIC_RELAXED);
		snprintf(n[0], 24, "%lld", (long long)(lag_us < 0 ? -1 : lag_us / 1000));
		snprintf(n[1], 24, "%lld", (long long)lag_b);
		const char *v[] = {addr, rep == 1 ? "replica" : rep == 0 ? "primary" : "unknown",
				   __atomic_load_n(&b->up, __ATOMIC_RELAXED) ? "yes" : "no",
				   __atomic_load_n(&b->usable, __ATOMIC_RELAXED) ? "yes" : "no",
				   lag_us < 0 ? NULL : n[0], lag_b < 0 ? NULL : n[1],
				   fmt_u64(n[2], __atomic_load_n(&b->lsn, __ATOMIC_RELAXED)),
				   fmt_u64(n[3], (uint64_t)LV_MAX(0, __atomic_load_n(&b->outstanding, __ATOMIC_RELAXED))),
				   fmt_u64(n[4], __atomic_load_n(&b->n_bans, __ATOMIC_RELAXED)),
				   fmt_u64(n[5], __atomic_load_n(&b->n_recoveries, __ATOMIC_RELAXED)),
				   fmt_u64(n[6], __atomic_load_n(&b->n_queries, __ATOMIC_RELAXED))};
		result_row(&r, v);
	}
	result_send(c, &r, "SHOW");
}

/* ------------------------------------------------------------------ cache */

static const char *fmt_ratio(char *buf, uint64_t part, uint64_t whole)
{
	if (!whole)
		return NULL;
	snprintf(buf, 24, "%.4f", (double)part / (double)whole);
	return buf;
}

/* One row: the memory store's size and counters, and where L2 stands. */
static void show_cache(lv_client_t *c)
{
	static const char *const names[] = {"entries",   "bytes",     "budget",   "hits",      "stale_hits",
					    "misses",    "hit_ratio", "inserts",  "evictions", "invalidated",
					    "expired",   "rejected",  "flights",  "followers", "tables",
					    "epoch",     "redis"};
	static const uint32_t oids[] = {OID_INT8, OID_INT8, OID_INT8, OID_INT8, OID_INT8, OID_INT8,
					OID_TEXT, OID_INT8, OID_INT8, OID_INT8, OID_INT8, OID_INT8,
					OID_INT8, OID_INT8, OID_INT8, OID_INT8, OID_TEXT};
	result_t r;
	result_begin(&r, LV_ARRAY_LEN(names), names, oids);
	lv_cache_t *cache = proxy->cache;
	if (cache) {
		lv_cache_store_stats_t st = lv_cache_store_stats(cache->store);
		char n[16][24];
		lv_worker_t *w = c->conn.worker;
		const char *redis = !w->redis ? "off" : lv_redis_is_up(w->redis) ? "up" : "down";
		uint64_t served = st.hits + st.stale_hits;
		const char *v[] = {fmt_u64(n[0], st.entries),
				   fmt_u64(n[1], st.bytes),
				   fmt_u64(n[2], st.budget),
				   fmt_u64(n[3], st.hits),
				   fmt_u64(n[4], st.stale_hits),
				   fmt_u64(n[5], st.misses),
				   fmt_ratio(n[6], served, served + st.misses),
				   fmt_u64(n[7], st.inserts),
				   fmt_u64(n[8], st.evictions),
				   fmt_u64(n[9], st.invalidated),
				   fmt_u64(n[10], st.expired),
				   fmt_u64(n[11], st.rejected + st.rejected_stale),
				   fmt_u64(n[12], st.flights),
				   fmt_u64(n[13], st.followers),
				   fmt_u64(n[14], lv_cache_gens_count(cache->gens)),
				   fmt_u64(n[15], lv_cache_gens_epoch(cache->gens)),
				   redis};
		result_row(&r, v);
	}
	result_send(c, &r, "SHOW");
}

/* One row per [cache.rule] of the running configuration, then the hints' row. */
static void show_cache_rules(lv_client_t *c)
{
	static const char *const names[] = {"rule",  "tables", "fingerprint", "match",     "ttl_ms",
					    "swr_ms", "scope", "hits",        "stale",     "misses",
					    "coalesced", "fills", "too_large", "hit_ratio"};
	static const uint32_t oids[] = {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT8, OID_INT8, OID_TEXT,
					OID_INT8, OID_INT8, OID_INT8, OID_INT8, OID_INT8, OID_INT8, OID_TEXT};
	result_t r;
	result_begin(&r, LV_ARRAY_LEN(names), names, oids);
	lv_cache_t *cache = proxy->cache;
	lv_config_t *cfg = c->conn.worker->cfg;
	for (size_t i = 0; cache && i <= cfg->n_cache_rules; i++) {
		bool hint = i == cfg->n_cache_rules;
		const lv_cfg_cache_rule_t *rule = hint ? NULL : &cfg->cache_rules[i];
		lv_cache_rule_stats_t *s = lv_cache_rule_stats(cache, cfg, hint ? -1 : (int)i);
		lv_buf_t tables;
		lv_buf_init(&tables);
		for (int t = 0; rule && t < rule->n_tables; t++)
			if (!lv_buf_printf(&tables, "%s%s", t ? "," : "", rule->tables[t]))
				r.ok = false;
		char n[10][24];
		uint64_t hits = __atomic_load_n(&s->hits, __ATOMIC_RELAXED);
		uint64_t stale = __atomic_load_n(&s->stale, __ATOMIC_RELAXED);
		uint64_t misses = __atomic_load_n(&s->misses, __ATOMIC_RELAXED);
		uint64_t coalesced = __atomic_load_n(&s->coalesced, __ATOMIC_RELAXED);
		snprintf(n[0], 24, "%lld", (long long)(rule ? rule->ttl_ms : cfg->cache.default_ttl_ms));
		snprintf(n[1], 24, "%lld",
			 (long long)(rule && rule->swr_ms >= 0 ? rule->swr_ms : cfg->cache.swr_ms));
		const char *v[] = {s->name,
				   rule && tables.len ? (const char *)tables.data : NULL,
				   rule ? rule->fingerprint : NULL,
				   rule ? rule->match : NULL,
				   n[0],
				   n[1],
				   rule && rule->scope == LV_CACHE_SCOPE_SHARED ? "shared" : "user",
				   fmt_u64(n[2], hits),
				   fmt_u64(n[3], stale),
				   fmt_u64(n[4], misses),
				   fmt_u64(n[5], coalesced),
				   fmt_u64(n[6], __atomic_load_n(&s->fills, __ATOMIC_RELAXED)),
				   fmt_u64(n[7], __atomic_load_n(&s->too_large, __ATOMIC_RELAXED)),
				   fmt_ratio(n[8], hits + stale + coalesced, hits + stale + misses + coalesced)};
		result_row(&r, v);
		lv_buf_cleanup(&tables);
	}
	result_send(c, &r, "SHOW");
}

/*
 * Cache commands: SHOW CACHE, SHOW CACHE RULES, INVALIDATE CACHE [table].
 * Returns false when the words are not one of them.
 */
static bool handle_cache_command(lv_client_t *c, const char *verb, const char *what, const char *extra,
				 const char *rest)
{
	if (strcmp(what, "cache") != 0)
		return false;
	if (strcmp(verb, "show") == 0) {
		if (*rest || (extra[0] && strcmp(extra, "rules") != 0))
			send_error(c, LV_SQLSTATE_SYNTAX_ERROR, "levee: try SHOW CACHE or SHOW CACHE RULES");
		else if (extra[0])
			show_cache_rules(c);
		else
			show_cache(c);
		return true;
	}
	if (strcmp(verb, "invalidate") != 0)
		return false;
	if (c->is_stats_only) {
		send_error(c, LV_SQLSTATE_INSUFFICIENT_PRIVILEGE, "levee: stats_users may only use SHOW");
		return true;
	}
	if (*rest) {
		send_error(c, LV_SQLSTATE_SYNTAX_ERROR, "levee: try INVALIDATE CACHE or INVALIDATE CACHE table");
		return true;
	}
	lv_cached_invalidate(c->conn.worker, extra[0] ? extra : NULL);
	lv_log_info("cache invalidated by %s: %s", c->user, extra[0] ? extra : "everything");
	send_command_ok(c, "INVALIDATE");
	return true;
}

/* ------------------------------------------------------------------ queue */

/*
 * SHOW QUEUE, RETRY DEAD LETTERS and DROP DEAD LETTER 'id' ask Redis (the
 * queue's state lives there, shared by every instance) through
 * lv_wq_admin() on this worker's loop; the client waits meanwhile, as for a
 * gathered SHOW.
 */
typedef struct queue_job {
	lv_worker_t *home;
	uint32_t client_key;
	uint64_t client_id;
	lv_wq_admin_op_t op;
} queue_job_t;

static void queue_done(void *arg, const lv_wq_db_stats_t *rows, size_t n, long long count,
		       const char *error)
{
	queue_job_t *j = arg;
	lv_client_t *c = lv_worker_key_find(j->home, j->client_key);
	if (!c || c->conn.id != j->client_id || c->state != LV_CLIENT_ADMIN) {
		lv_free(j);
		return;
	}
	c->n_admin_pending = 0;
	if (error) {
		send_error(c, LV_SQLSTATE_CONNECTION_FAILURE, error);
	} else if (j->op == LV_WQ_ADMIN_STATS) {
		static const char *const names[] = {"database", "length",  "pending", "oldest_age_s",
						    "dead",     "enqueued", "applied", "retried",
						    "dead_lettered"};
		static const uint32_t oids[] = {OID_TEXT, OID_INT8, OID_INT8, OID_TEXT, OID_INT8,
						OID_INT8, OID_INT8, OID_INT8, OID_INT8};
		result_t r;
		result_begin(&r, LV_ARRAY_LEN(names), names, oids);
		for (size_t i = 0; i < n; i++) {
			char v[8][24];
			snprintf(v[0], 24, "%lld", rows[i].length);
			snprintf(v[1], 24, "%lld", rows[i].pending);
			snprintf(v[2], 24, "%.3f", (double)rows[i].oldest_age_ms / 1000.0);
			snprintf(v[3], 24, "%lld", rows[i].dead);
			snprintf(v[4], 24, "%lld", rows[i].enqueued);
			snprintf(v[5], 24, "%lld", rows[i].applied);
			snprintf(v[6], 24, "%lld", rows[i].retried);
			snprintf(v[7], 24, "%lld", rows[i].dead_lettered);
			const char *vals[] = {rows[i].db, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
			result_row(&r, vals);
		}
		result_send(c, &r, "SHOW");
	} else {
		char tag[48];
		snprintf(tag, sizeof(tag), "%s %lld", j->op == LV_WQ_ADMIN_RETRY_DEAD ? "RETRY" : "DROP",
			 count);
		send_command_ok(c, tag);
	}
	lv_free(j);
	lv_client_resume_admin(c);
}

static void start_queue_job(lv_client_t *c, lv_wq_admin_op_t op, const char *id)
{
	queue_job_t *j = lv_calloc(1, sizeof(*j));
	if (!j) {
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	j->home = c->conn.worker;
	j->client_key = c->cancel_key;
	j->client_id = c->conn.id;
	j->op = op;
	c->n_admin_pending = 1;
	if (!lv_wq_admin(c->conn.worker->loop, c->conn.worker->cfg, op, id, queue_done, j)) {
		c->n_admin_pending = 0;
		lv_free(j);
		send_error(c, LV_SQLSTATE_FEATURE_NOT_SUPPORTED,
			   "levee: the write queue needs [levee] redis");
	}
}

/*
 * Queue commands: SHOW QUEUE, RETRY DEAD LETTERS, DROP DEAD LETTER 'id'.
 * Returns false when the words are not one of them.
 */
static bool handle_queue_command(lv_client_t *c, const char *verb, const char *what, const char *extra,
				 const char *rest)
{
	if (strcmp(verb, "show") == 0 && strcmp(what, "queue") == 0) {
		if (extra[0] || *rest)
			send_error(c, LV_SQLSTATE_SYNTAX_ERROR, "levee: SHOW QUEUE takes no arguments");
		else
			start_queue_job(c, LV_WQ_ADMIN_STATS, NULL);
		return true;
	}
	bool retry = strcmp(verb, "retry") == 0 && strcmp(what, "dead") == 0;
	bool drop = strcmp(verb, "drop") == 0 && strcmp(what, "dead") == 0;
	if (!retry && !drop)
		return false;
	if (c->is_stats_only) {
		send_error(c, LV_SQLSTATE_INSUFFICIENT_PRIVILEGE, "levee: stats_users may only use SHOW");
		return true;
	}
	if (retry) {
		if (strcmp(extra, "letters") != 0 || *rest)
			send_error(c, LV_SQLSTATE_SYNTAX_ERROR, "levee: try RETRY DEAD LETTERS");
		else
			start_queue_job(c, LV_WQ_ADMIN_RETRY_DEAD, NULL);
		return true;
	}
	/* DROP DEAD LETTER 'id': the id is a stream id, digits and one dash. */
	char id[48];
	size_t n = 0;
	const char *s = rest;
	bool quoted = *s == '\'';
	if (quoted)
		s++;
	while (*s && n + 1 < sizeof(id) && (isdigit((unsigned char)*s) || *s == '-'))
		id[n++] = *s++;
	id[n] = '\0';
	bool closed = !quoted;
	if (quoted && *s == '\'') {
		s++;
		closed = true;
	}
	while (isspace((unsigned char)*s) || *s == ';')
		s++;
	if (strcmp(extra, "letter") != 0 || n == 0 || *s || !closed)
		send_error(c, LV_SQLSTATE_SYNTAX_ERROR, "levee: try DROP DEAD LETTER '1700000000000-0'");
	else
		start_queue_job(c, LV_WQ_ADMIN_DROP_DEAD, id);
	return true;
}

/* ------------------------------------------------------------------ verbs */

static void do_reload(lv_client_t *c)
{
	lv_buf_t errors;
	lv_buf_init(&errors);
	if (!hooks.reload || !hooks.reload(hooks.arg, &errors)) {
		char msg[1024];
		snprintf(msg, sizeof(msg), "levee: reload failed, the previous configuration stays: %.*s",
			 (int)(errors.len > 900 ? 900 : errors.len), errors.data ? (const char *)errors.data : "");
		lv_buf_cleanup(&errors);
		send_error(c, LV_SQLSTATE_CONFIG_FILE_ERROR, msg);
		return;
	}
	lv_buf_cleanup(&errors);
	send_command_ok(c, "RELOAD");
}

static void resume_run(lv_worker_t *w, void *arg)
{
	lv_list_t *pos;
	lv_list_for_each(pos, &w->pools)
	{
		lv_pool_t *p = lv_container_of(pos, lv_pool_t, node);
		lv_pool_assign(p);
	}
}

static void resume_done(void *arg)
{
	(void)arg;
}

static const char *next_word(const char **p, char *out, size_t cap)
{
	const char *s = *p;
	while (isspace((unsigned char)*s))
		s++;
	size_t n = 0;
	while (*s && !isspace((unsigned char)*s) && *s != ';') {
		if (n + 1 < cap)
			out[n++] = (char)tolower((unsigned char)*s);
		s++;
	}
	out[n] = '\0';
	while (isspace((unsigned char)*s) || *s == ';')
		s++;
	*p = s;
	return out;
}

static void handle_query(lv_client_t *c, const char *sql, size_t len)
{
	char verb[32], what[32], extra[32];
	const char *p = sql;
	next_word(&p, verb, sizeof(verb));
	next_word(&p, what, sizeof(what));
	next_word(&p, extra, sizeof(extra));
	if (!verb[0]) {
		lv_buf_t b;
		lv_buf_init(&b);
		if (lv_wire_write_empty_query(&b) && lv_wire_write_ready(&b, 'I'))
			(void)lv_client_send(c, b.data, b.len);
		lv_buf_cleanup(&b);
		return;
	}
	if (handle_cache_command(c, verb, what, extra, p))
		return;
	if (handle_queue_command(c, verb, what, extra, p))
		return;
	if (strcmp(verb, "show") == 0) {
		if (extra[0] || *p) {
			send_error(c, LV_SQLSTATE_SYNTAX_ERROR, "levee: SHOW takes one word");
			return;
		}
		if (strcmp(what, "version") == 0)
			show_version(c);
		else if (strcmp(what, "config") == 0)
			show_config(c);
		else if (strcmp(what, "pools") == 0)
			start_show(c, SHOW_POOLS);
		else if (strcmp(what, "clients") == 0)
			start_show(c, SHOW_CLIENTS);
		else if (strcmp(what, "servers") == 0)
			start_show(c, SHOW_SERVERS);
		else if (strcmp(what, "stats") == 0)
			start_show(c, SHOW_STATS);
		else if (strcmp(what, "backends") == 0)
			show_backends(c);
		else
			send_error(c, LV_SQLSTATE_SYNTAX_ERROR,
				   "levee: unknown SHOW; try SHOW POOLS, CLIENTS, SERVERS, STATS, BACKENDS, CONFIG or VERSION");
		return;
	}
	if (c->is_stats_only) {
		send_error(c, LV_SQLSTATE_INSUFFICIENT_PRIVILEGE, "levee: stats_users may only use SHOW");
		return;
	}
	if (what[0] || *p) {
		send_error(c, LV_SQLSTATE_SYNTAX_ERROR, "levee: this command takes no arguments");
		return;
	}
	if (strcmp(verb, "reload") == 0) {
		do_reload(c);
	} else if (strcmp(verb, "pause") == 0) {
		__atomic_store_n(&proxy->paused, 1, __ATOMIC_RELEASE);
		lv_log_info("paused by %s: no new server assignments until RESUME", c->user);
		send_command_ok(c, "PAUSE");
	} else if (strcmp(verb, "resume") == 0) {
		__atomic_store_n(&proxy->paused, 0, __ATOMIC_RELEASE);
		lv_log_info("resumed by %s", c->user);
		if (!lv_proxy_gather(proxy, c->conn.worker, resume_run, resume_done, NULL))
			lv_log_error("resume: out of memory telling workers");
		send_command_ok(c, "RESUME");
	} else if (strcmp(verb, "shutdown") == 0) {
		lv_log_info("SHUTDOWN by %s", c->user);
		send_command_ok(c, "SHUTDOWN");
		if (hooks.shutdown)
			hooks.shutdown(hooks.arg);
	} else {
		send_error(c, LV_SQLSTATE_SYNTAX_ERROR,
			   "levee: unknown command; try SHOW, RELOAD, PAUSE, RESUME or SHUTDOWN");
	}
}

void lv_admin_init(lv_proxy_t *p, const lv_admin_hooks_t *h)
{
	proxy = p;
	hooks = *h;
	lv_client_set_admin_handler(handle_query);
}
