/* SPDX-License-Identifier: ISC */
/*
 * Pools; see pool.h. Owns lv_pool_t (worker lifetime) and the process table
 * of lv_pool_shared_t (process lifetime, freed at exit).
 *
 * Matching servers to clients. In session mode a server is started with the
 * startup parameters of the client that needs it (so RESET and DISCARD ALL
 * restore that client's values, as on a direct connection), and a server is
 * reused only by a client whose parameters are byte-for-byte the same (they
 * are kept sorted, so this is a hash compare and a memcmp). When the pool is
 * full and the only idle servers have other parameters, the oldest such
 * server is closed to make room: fairness to the first waiting client wins
 * over keeping a connection that nobody waiting can use.
 *
 * Limits. pool_size bounds the pair's servers across all workers, through an
 * atomic counter taken before a connect and given back when a server closes;
 * max_db_connections bounds a database's servers across users the same way;
 * server_connect_concurrency bounds logins in flight per database.
 */
#include "proxy/pool.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "core/str.h"
#include "proxy/client.h"
#include "proxy/server.h"
#include "proxy/worker.h"
#include "wire/sqlstate.h"

#include <pthread.h>

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static lv_pool_shared_t *shared_list;

lv_pool_shared_t *lv_pool_shared_get(const char *db, const char *user, int backend)
{
	pthread_mutex_lock(&shared_lock);
	lv_pool_shared_t *s;
	for (s = shared_list; s; s = s->next)
		if (strcmp(s->db, db) == 0 && strcmp(s->user, user) == 0 && s->backend == backend)
			break;
	if (!s) {
		s = lv_calloc(1, sizeof(*s));
		if (s) {
			snprintf(s->db, sizeof(s->db), "%s", db);
			snprintf(s->user, sizeof(s->user), "%s", user);
			s->backend = backend;
			s->next = shared_list;
			shared_list = s;
		}
	}
	pthread_mutex_unlock(&shared_lock);
	return s;
}

void lv_pool_shared_free_all(void)
{
	pthread_mutex_lock(&shared_lock);
	while (shared_list) {
		lv_pool_shared_t *s = shared_list;
		shared_list = s->next;
		lv_free(s);
	}
	pthread_mutex_unlock(&shared_lock);
}

static lv_pool_shared_t *db_shared(lv_pool_t *pool)
{
	return pool->db_shared;
}

const lv_cfg_host_t *lv_pool_host(const lv_pool_t *pool)
{
	if (!pool->db)
		return NULL;
	if (pool->backend_index == 0)
		return &pool->db->primary;
	if (pool->backend_index > pool->db->n_replicas)
		return NULL;
	return &pool->db->replicas[pool->backend_index - 1];
}

lv_pool_t *lv_pool_get(lv_worker_t *w, const lv_cfg_db_t *db, const char *user, int backend_index)
{
	lv_list_t *pos;
	lv_list_for_each(pos, &w->pools)
	{
		lv_pool_t *p = lv_container_of(pos, lv_pool_t, node);
		if (p->backend_index == backend_index && strcmp(p->db_name, db->name) == 0 &&
		    strcmp(p->user, user) == 0)
			return p;
	}
	lv_pool_t *p = lv_calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->backend_index = backend_index;
	p->shared = lv_pool_shared_get(db->name, user, backend_index);
	/* max_db_connections and connect concurrency are per database and backend. */
	p->db_shared = lv_pool_shared_get(db->name, "", backend_index);
	p->user_shared = lv_pool_shared_get("", user, -1);
	if (!p->shared || !p->db_shared || !p->user_shared) {
		lv_free(p);
		return NULL;
	}
	p->worker = w;
	p->db = db;
	snprintf(p->db_name, sizeof(p->db_name), "%s", db->name);
	snprintf(p->user, sizeof(p->user), "%s", user);
	p->pool_mode = lv_config_pool_mode(w->cfg, db, user);
	const lv_cfg_host_t *host = lv_pool_host(p);
	p->backend = host && w->proxy->health ? lv_health_find(w->proxy->health, host->host, host->port) : NULL;
	lv_clist_init(&p->waiting);
	lv_clist_init(&p->active);
	lv_clist_init(&p->idle_clients);
	lv_clist_init(&p->sv_login);
	lv_clist_init(&p->sv_idle);
	lv_clist_init(&p->sv_active);
	lv_clist_init(&p->sv_testing);
	lv_buf_init(&p->last_params);
	lv_buf_init(&p->defaults);
	lv_list_insert_tail(&w->pools, &p->node);
	return p;
}

void lv_pool_free(lv_pool_t *pool)
{
	if (!pool)
		return;
	lv_list_unlink(&pool->node);
	lv_buf_cleanup(&pool->last_params);
	lv_buf_cleanup(&pool->defaults);
	memset(pool->scram_client_key, 0, sizeof(pool->scram_client_key));
	lv_free(pool);
}

int lv_pool_size(const lv_pool_t *pool)
{
	if (!pool->db)
		return 0;
	return lv_config_pool_size(pool->worker->cfg, pool->db);
}

static bool cas_take(int *counter, int limit)
{
	int cur = __atomic_load_n(counter, __ATOMIC_RELAXED);
	while (cur < limit)
		if (__atomic_compare_exchange_n(counter, &cur, cur + 1, true, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			return true;
	return false;
}

bool lv_pool_take_slot(lv_pool_t *pool, bool use_reserve)
{
	lv_config_t *cfg = pool->worker->cfg;
	int limit = lv_pool_size(pool);
	if (use_reserve)
		limit += pool->db->reserve_pool_size >= 0 ? pool->db->reserve_pool_size : cfg->pool.reserve_pool_size;
	if (!cas_take(&pool->shared->n_servers, limit))
		return false;
	int max_db = pool->db->max_db_connections > 0 ? pool->db->max_db_connections : cfg->pool.max_db_connections;
	if (!cas_take(&db_shared(pool)->n_servers, max_db > 0 ? max_db : INT32_MAX)) {
		__atomic_sub_fetch(&pool->shared->n_servers, 1, __ATOMIC_ACQ_REL);
		return false;
	}
	return true;
}

void lv_pool_put_slot(lv_pool_t *pool)
{
	__atomic_sub_fetch(&pool->shared->n_servers, 1, __ATOMIC_ACQ_REL);
	__atomic_sub_fetch(&db_shared(pool)->n_servers, 1, __ATOMIC_ACQ_REL);
	if (__atomic_load_n(&pool->shared->want_mask, __ATOMIC_ACQUIRE) ||
	    __atomic_load_n(&db_shared(pool)->want_mask, __ATOMIC_ACQUIRE))
		lv_worker_notify_slot(pool->worker, pool->shared);
}

bool lv_pool_user_admit(lv_pool_t *pool, lv_client_t *c)
{
	lv_config_t *cfg = pool->worker->cfg;
	const lv_cfg_user_t *u = lv_config_find_user(cfg, pool->user);
	int limit = u && u->max_user_connections >= 0 ? u->max_user_connections : cfg->pool.max_user_connections;
	if (!cas_take(&pool->user_shared->n_clients, limit > 0 ? limit : INT32_MAX))
		return false;
	c->user_slot = pool->user_shared;
	return true;
}

static bool params_match(const lv_client_t *c, const lv_server_t *sv)
{
	return c->params_hash == sv->params_hash && c->params.len == sv->params.len &&
	       (c->params.len == 0 || memcmp(c->params.data, sv->params.data, c->params.len) == 0);
}

static lv_server_t *find_idle(lv_pool_t *pool, const lv_client_t *c)
{
	/* Transaction mode: any server; the client's settings are applied on attach. */
	if (pool->pool_mode == LV_POOL_TRANSACTION)
		return lv_container_of(pool->sv_idle.head.next, lv_server_t, conn.node);
	lv_list_t *pos;
	lv_list_for_each(pos, &pool->sv_idle.head)
	{
		lv_server_t *sv = lv_container_of(pos, lv_server_t, conn.node);
		if (params_match(c, sv))
			return sv;
	}
	return NULL;
}

static size_t pool_servers(const lv_pool_t *pool)
{
	return pool->sv_login.n + pool->sv_idle.n + pool->sv_active.n + pool->sv_testing.n;
}

void lv_pool_fail_waiting(lv_pool_t *pool, const char *sqlstate, const char *msg)
{
	lv_list_t *pos;
	while ((pos = lv_list_first(&pool->waiting.head)) != NULL) {
		lv_client_t *c = lv_container_of(pos, lv_client_t, conn.node);
		lv_client_close(c, sqlstate, "%s", msg);
	}
}

static void fail_unreachable(lv_pool_t *pool)
{
	const char *st = pool->last_sqlstate[0] ? pool->last_sqlstate : LV_SQLSTATE_CONNECTION_FAILURE;
	const char *msg = pool->last_error[0] ? pool->last_error : "levee: server unavailable";
	lv_pool_fail_waiting(pool, st, msg);
}

/* Opens a server for c; false when no slot could be had. */
static bool open_for(lv_pool_t *pool, lv_client_t *c)
{
	lv_config_t *cfg = pool->worker->cfg;
	if (!cas_take(&db_shared(pool)->n_connecting, cfg->pool.server_connect_concurrency))
		return false;
	if (!lv_pool_take_slot(pool, false)) {
		__atomic_sub_fetch(&db_shared(pool)->n_connecting, 1, __ATOMIC_ACQ_REL);
		return false;
	}
	static const lv_buf_t no_params;
	bool txn = pool->pool_mode == LV_POOL_TRANSACTION;
	lv_server_t *sv = lv_server_connect(pool, txn ? &no_params : &c->params, txn ? 0 : c->params_hash);
	if (!sv) {
		lv_pool_put_slot(pool);
		__atomic_sub_fetch(&db_shared(pool)->n_connecting, 1, __ATOMIC_ACQ_REL);
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_SERVER_CONNECT);
		snprintf(pool->last_sqlstate, sizeof(pool->last_sqlstate), "%s", LV_SQLSTATE_CONNECTION_FAILURE);
		lv_pool_connect_failed(pool);
		return true;
	}
	sv->counts_connecting = true;
	lv_buf_reset(&pool->last_params);
	if (c->params.len && !lv_buf_append(&pool->last_params, c->params.data, c->params.len))
		lv_buf_reset(&pool->last_params);
	pool->last_params_hash = c->params_hash;
	return true;
}

void lv_pool_assign(lv_pool_t *pool)
{
	lv_worker_t *w = pool->worker;
	if (__atomic_load_n(&w->proxy->paused, __ATOMIC_RELAXED))
		return;
	lv_usec_t now = lv_time_now_us();
	bool progress = true;
	while (progress && pool->waiting.n > 0) {
		progress = false;
		if (!pool->db) {
			lv_pool_fail_waiting(pool, LV_SQLSTATE_INVALID_CATALOG_NAME,
					     "levee: database was removed from the configuration");
			return;
		}
		/* Servers still logging in will each serve one waiting client. */
		size_t coming = pool->sv_login.n;
		lv_list_t *pos;
		lv_list_for_each(pos, &pool->waiting.head)
		{
			lv_client_t *c = lv_container_of(pos, lv_client_t, conn.node);
			lv_server_t *sv = pool->sv_idle.n ? find_idle(pool, c) : NULL;
			if (sv) {
				lv_client_attach(c, sv);
				progress = true;
				break;
			}
			if (coming > 0) {
				coming--;
				continue;
			}
			if (now < pool->next_connect_us) {
				/* Backing off after failures: with nothing else that could
				 * free up, say so now instead of letting clients hang. */
				if (pool_servers(pool) == 0)
					fail_unreachable(pool);
				return;
			}
			if (open_for(pool, c)) {
				progress = pool->waiting.n > 0 && pool->sv_login.n > 0;
				break;
			}
			/* Full. An idle server of other parameters makes room. */
			lv_list_t *last = pool->sv_idle.head.prev;
			if (pool->sv_idle.n > 0) {
				lv_server_t *victim = lv_container_of(last, lv_server_t, conn.node);
				lv_server_close(victim, "making room for a client with other startup parameters");
				progress = true;
				break;
			}
			/* Other workers may hold idle servers of this pool. */
			__atomic_or_fetch(&pool->shared->want_mask, 1u << (w->index & 31), __ATOMIC_ACQ_REL);
			if (now - pool->trim_asked_us > 100 * LV_USEC_PER_MS) {
				pool->trim_asked_us = now;
				lv_worker_ask_trim(w, pool->shared);
			}
			return;
		}
	}
	if (pool->waiting.n == 0)
		__atomic_and_fetch(&pool->shared->want_mask, ~(1u << (w->index & 31)), __ATOMIC_ACQ_REL);
}

void lv_pool_connect_failed(lv_pool_t *pool)
{
	lv_config_t *cfg = pool->worker->cfg;
	pool->connect_failures++;
	int shift = pool->connect_failures > 3 ? 3 : pool->connect_failures - 1;
	lv_usec_t backoff = cfg->pool.server_login_retry_ms * LV_USEC_PER_MS << shift;
	pool->next_connect_us = lv_time_now_us() + backoff;
	if (pool_servers(pool) == 0)
		fail_unreachable(pool);
	else
		lv_pool_assign(pool);
}

void lv_pool_trim_one(lv_pool_t *pool)
{
	if (pool->waiting.n > 0 || pool->sv_idle.n == 0)
		return;
	lv_server_t *sv = lv_container_of(pool->sv_idle.head.prev, lv_server_t, conn.node);
	lv_server_close(sv, "giving the slot to another worker");
}

void lv_pool_janitor(lv_pool_t *pool, lv_usec_t now)
{
	lv_worker_t *w = pool->worker;
	lv_config_t *cfg = w->cfg;
	lv_list_t *pos, *tmp;

	/* Clients that waited too long. */
	int64_t wait_ms = cfg->pool.query_wait_timeout_ms;
	lv_list_for_each_safe(pos, tmp, &pool->waiting.head)
	{
		lv_client_t *c = lv_container_of(pos, lv_client_t, conn.node);
		lv_usec_t waited = now - c->wait_start_us;
		if (wait_ms > 0 && waited > wait_ms * LV_USEC_PER_MS) {
			lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_QUERY_WAIT_TIMEOUT);
			lv_client_close(c, LV_SQLSTATE_TOO_MANY_CONNECTIONS,
					"levee: query_wait_timeout: no server connection free in pool %s/%s "
					"(pool_size=%d) after %lld ms",
					pool->db_name, pool->user, lv_pool_size(pool), (long long)(waited / 1000));
			continue;
		}
		int reserve = pool->db && pool->db->reserve_pool_size >= 0 ? pool->db->reserve_pool_size
									   : cfg->pool.reserve_pool_size;
		if (reserve > 0 && pool->db && waited > cfg->pool.reserve_pool_timeout_ms * LV_USEC_PER_MS &&
		    pool->sv_login.n == 0 && now >= pool->next_connect_us && lv_pool_take_slot(pool, true)) {
			lv_server_t *sv = lv_server_connect(pool, &c->params, c->params_hash);
			if (sv)
				lv_log_info("pool %s/%s: opening a reserve connection", pool->db_name, pool->user);
			else
				lv_pool_put_slot(pool);
		}
	}

	/* Clients idle too long, in or out of a transaction. */
	int64_t txn_idle_ms = cfg->pool.idle_transaction_timeout_ms;
	int64_t idle_ms_c = cfg->pool.client_idle_timeout_ms;
	lv_list_for_each_safe(pos, tmp, &pool->active.head)
	{
		lv_client_t *c = lv_container_of(pos, lv_client_t, conn.node);
		lv_server_t *sv = c->server;
		if (!sv || sv->n_pending > 0 || sv->n_swallow > 0 || c->fwd_left || sv->fwd_left)
			continue;
		lv_usec_t idle = now - c->last_active_us;
		if (sv->txn_status != 'I' && txn_idle_ms > 0 && idle > txn_idle_ms * LV_USEC_PER_MS) {
			lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_IDLE_TRANSACTION_TIMEOUT);
			lv_client_close(c, LV_SQLSTATE_IDLE_IN_TXN_TIMEOUT,
					"levee: terminating connection due to idle_transaction_timeout (%lld ms)",
					(long long)txn_idle_ms);
		} else if (sv->txn_status == 'I' && idle_ms_c > 0 && idle > idle_ms_c * LV_USEC_PER_MS) {
			lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CLIENT_IDLE_TIMEOUT);
			lv_client_close(c, LV_SQLSTATE_IDLE_SESSION_TIMEOUT,
					"levee: terminating connection due to client_idle_timeout (%lld ms)",
					(long long)idle_ms_c);
		}
	}
	if (idle_ms_c > 0) {
		lv_list_for_each_safe(pos, tmp, &pool->idle_clients.head)
		{
			lv_client_t *c = lv_container_of(pos, lv_client_t, conn.node);
			if (now - c->last_active_us > idle_ms_c * LV_USEC_PER_MS) {
				lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CLIENT_IDLE_TIMEOUT);
				lv_client_close(c, LV_SQLSTATE_IDLE_SESSION_TIMEOUT,
						"levee: terminating connection due to client_idle_timeout (%lld ms)",
						(long long)idle_ms_c);
			}
		}
	}

	/* Servers: login timeouts, idle timeouts, lifetime. */
	int64_t connect_ms = cfg->pool.server_connect_timeout_ms;
	lv_list_for_each_safe(pos, tmp, &pool->sv_login.head)
	{
		lv_server_t *sv = lv_container_of(pos, lv_server_t, conn.node);
		if (connect_ms > 0 && now - sv->created_us > connect_ms * LV_USEC_PER_MS) {
			lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_SERVER_CONNECT);
			lv_server_timeout(sv);
		}
	}
	int64_t idle_ms = cfg->pool.server_idle_timeout_ms;
	int64_t life_ms = cfg->pool.server_lifetime_ms;
	int min = pool->db ? (pool->db->min_pool_size >= 0 ? pool->db->min_pool_size : cfg->pool.min_pool_size) : 0;
	lv_list_for_each_safe(pos, tmp, &pool->sv_idle.head)
	{
		lv_server_t *sv = lv_container_of(pos, lv_server_t, conn.node);
		bool too_old = life_ms > 0 && now - sv->created_us > life_ms * LV_USEC_PER_MS;
		bool too_idle = idle_ms > 0 && now - sv->last_used_us > idle_ms * LV_USEC_PER_MS &&
				__atomic_load_n(&pool->shared->n_servers, __ATOMIC_RELAXED) > min;
		if (!pool->db)
			lv_server_close(sv, "database removed from the configuration");
		else if (too_old)
			lv_server_close(sv, "server_lifetime reached");
		else if (too_idle)
			lv_server_close(sv, "server_idle_timeout reached");
	}

	/* min_pool_size is kept by worker 0 alone, so workers do not race for it. */
	if (w->index == 0 && pool->db && min > 0 && now >= pool->next_connect_us && pool->sv_login.n == 0 &&
	    __atomic_load_n(&pool->shared->n_servers, __ATOMIC_RELAXED) < min && lv_pool_take_slot(pool, false)) {
		if (!lv_server_connect(pool, &pool->last_params, pool->last_params_hash))
			lv_pool_put_slot(pool);
	}

	/* Still waiting for a slot: ask again (the answers may have gone to others). */
	if (pool->waiting.n > 0)
		lv_pool_assign(pool);
}
