/* SPDX-License-Identifier: ISC */
/*
 * Workers and the proxy object; see worker.h. The proxy owns the workers
 * array, the TLS contexts and the current config generation (process
 * lifetime). Each worker owns its loop, listening sockets, clients, pools,
 * servers and metrics shard, all touched only on its own thread.
 *
 * Messages between threads (all through lv_loop_post):
 *   cancel      CancelRequest for a key that names another worker
 *   trim        "close one idle server of this pool if you can spare it"
 *   slot        "a server slot of this pool was freed": retry waiting clients
 *   config      a new config generation (reference passed along)
 *   shutdown    graceful or immediate
 *   gather      run a function on every worker, then a completion on one
 */
#include "proxy/worker.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/str.h"
#include "net/listener.h"
#include "cache/cache.h"
#include "proxy/cached.h"
#include "proxy/client.h"
#include "proxy/pool.h"
#include "proxy/server.h"
#include "wire/sqlstate.h"

#include <event2/event.h>
#include <unistd.h>

#define JANITOR_PERIOD_MS 100

/* ------------------------------------------------------------- cancel keys */

static size_t key_slot(uint32_t key, size_t cap)
{
	return (size_t)((key * 2654435761u) & (cap - 1));
}

lv_client_t *lv_worker_key_find(lv_worker_t *w, uint32_t key)
{
	if (!w->keys)
		return NULL;
	for (size_t i = key_slot(key, w->keys_cap), n = 0; n < w->keys_cap; i = (i + 1) & (w->keys_cap - 1), n++) {
		lv_client_t *c = w->keys[i];
		if (!c)
			return NULL;
		if (c != (lv_client_t *)w && c->cancel_key == key)
			return c;
	}
	return NULL;
}

/* Tombstones are marked with the worker pointer itself. */
#define TOMBSTONE(w) ((lv_client_t *)(w))

static bool keys_grow(lv_worker_t *w)
{
	size_t cap = w->keys_cap ? w->keys_cap * 2 : 1024;
	lv_client_t **nk = lv_calloc(cap, sizeof(*nk));
	if (!nk)
		return false;
	for (size_t i = 0; i < w->keys_cap; i++) {
		lv_client_t *c = w->keys[i];
		if (!c || c == TOMBSTONE(w))
			continue;
		size_t j = key_slot(c->cancel_key, cap);
		while (nk[j])
			j = (j + 1) & (cap - 1);
		nk[j] = c;
	}
	lv_free(w->keys);
	w->keys = nk;
	w->keys_cap = cap;
	return true;
}

bool lv_worker_key_add(lv_worker_t *w, lv_client_t *c)
{
	if ((w->keys_used + 1) * 2 > w->keys_cap && !keys_grow(w))
		return false;
	size_t i = key_slot(c->cancel_key, w->keys_cap);
	while (w->keys[i] && w->keys[i] != TOMBSTONE(w))
		i = (i + 1) & (w->keys_cap - 1);
	if (!w->keys[i])
		w->keys_used++;
	w->keys[i] = c;
	return true;
}

void lv_worker_key_del(lv_worker_t *w, lv_client_t *c)
{
	if (!w->keys)
		return;
	for (size_t i = key_slot(c->cancel_key, w->keys_cap), n = 0; n < w->keys_cap; i = (i + 1) & (w->keys_cap - 1), n++) {
		if (!w->keys[i])
			return;
		if (w->keys[i] == c) {
			w->keys[i] = TOMBSTONE(w);
			return;
		}
	}
}

uint64_t lv_worker_next_id(lv_worker_t *w)
{
	/* Ids are unique per process: the worker index in the low bits. */
	return ++w->next_id * LV_MAX_WORKERS + (uint64_t)w->index;
}

/* ---------------------------------------------------------------- messages */

typedef struct cancel_msg {
	lv_worker_t *w;
	uint32_t pid, key;
} cancel_msg_t;

static void cancel_msg_run(void *arg)
{
	cancel_msg_t *m = arg;
	lv_client_cancel(m->w, m->pid, m->key);
	lv_free(m);
}

void lv_worker_post_cancel(lv_worker_t *owner, uint32_t pid, uint32_t key)
{
	cancel_msg_t *m = lv_malloc(sizeof(*m));
	if (!m)
		return;
	m->w = owner;
	m->pid = pid;
	m->key = key;
	if (!lv_loop_post(owner->loop, cancel_msg_run, m))
		lv_free(m);
}

typedef struct pool_msg {
	lv_worker_t *w;
	lv_pool_shared_t *shared;
} pool_msg_t;

static lv_pool_t *find_pool(lv_worker_t *w, lv_pool_shared_t *shared)
{
	lv_list_t *pos;
	lv_list_for_each(pos, &w->pools)
	{
		lv_pool_t *p = lv_container_of(pos, lv_pool_t, node);
		if (p->shared == shared || p->db_shared == shared)
			return p;
	}
	return NULL;
}

static void trim_run(void *arg)
{
	pool_msg_t *m = arg;
	lv_list_t *pos;
	lv_list_for_each(pos, &m->w->pools)
	{
		lv_pool_t *p = lv_container_of(pos, lv_pool_t, node);
		if (p->shared == m->shared) {
			lv_pool_trim_one(p);
			break;
		}
	}
	lv_free(m);
}

static void slot_run(void *arg)
{
	pool_msg_t *m = arg;
	lv_list_t *pos;
	lv_list_for_each(pos, &m->w->pools)
	{
		lv_pool_t *p = lv_container_of(pos, lv_pool_t, node);
		if (p->waiting.n > 0)
			lv_pool_assign(p);
	}
	lv_free(m);
}

static void post_pool_msg(lv_worker_t *to, lv_pool_shared_t *shared, lv_loop_msg_fn fn)
{
	pool_msg_t *m = lv_malloc(sizeof(*m));
	if (!m)
		return;
	m->w = to;
	m->shared = shared;
	if (!lv_loop_post(to->loop, fn, m))
		lv_free(m);
}

void lv_worker_ask_trim(lv_worker_t *w, lv_pool_shared_t *shared)
{
	if (__atomic_load_n(&w->proxy->tearing_down, __ATOMIC_ACQUIRE))
		return;
	for (int i = 0; i < w->proxy->n_workers; i++)
		if (i != w->index)
			post_pool_msg(&w->proxy->workers[i], shared, trim_run);
}

void lv_worker_notify_slot(lv_worker_t *w, lv_pool_shared_t *shared)
{
	if (__atomic_load_n(&w->proxy->tearing_down, __ATOMIC_ACQUIRE))
		return;
	uint32_t mask = __atomic_load_n(&shared->want_mask, __ATOMIC_ACQUIRE);
	lv_pool_t *p = find_pool(w, shared);
	if (p && p->db_shared)
		mask |= __atomic_load_n(&p->db_shared->want_mask, __ATOMIC_ACQUIRE);
	for (int i = 0; i < w->proxy->n_workers; i++) {
		if (!(mask & (1u << (i & 31))))
			continue;
		if (i == w->index) {
			/* Our own waiters retry at the end of this callback chain. */
			post_pool_msg(w, shared, slot_run);
		} else {
			post_pool_msg(&w->proxy->workers[i], shared, slot_run);
		}
	}
}

/* A new config generation reaches a worker. */
typedef struct config_msg {
	lv_worker_t *w;
	lv_config_t *cfg;
} config_msg_t;

static void config_run(void *arg)
{
	config_msg_t *m = arg;
	lv_worker_t *w = m->w;
	lv_config_t *old = w->cfg;
	w->cfg = m->cfg;
	/* Cached results were filled under the old rules: none is served under the new ones
	 * (each worker bumps as it switches, so the last bump covers every worker's fills). */
	if (w->proxy->cache)
		lv_cache_gens_bump_epoch(w->proxy->cache->gens);
	lv_list_t *pos;
	lv_list_for_each(pos, &w->pools)
	{
		lv_pool_t *p = lv_container_of(pos, lv_pool_t, node);
		p->db = lv_config_find_db(w->cfg, p->db_name);
		if (p->db)
			p->pool_mode = lv_config_pool_mode(w->cfg, p->db, p->user);
		const lv_cfg_host_t *host = lv_pool_host(p);
		p->backend = host && w->proxy->health ? lv_health_find(w->proxy->health, host->host, host->port) : NULL;
	}
	lv_config_unref(old);
	lv_free(m);
	/* A larger pool_size may let waiting clients in now. */
	lv_list_for_each(pos, &w->pools)
	{
		lv_pool_t *p = lv_container_of(pos, lv_pool_t, node);
		lv_pool_assign(p);
	}
}

/* ------------------------------------------------------------------- accept */

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	lv_worker_t *w = arg;
	/* Bounded per wakeup so a connection storm cannot starve other work. */
	for (int i = 0; i < 64; i++) {
		lv_addr_t peer;
		int fd = lv_accept((int)lfd, &peer);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				lv_log_warn("accept failed: %s", strerror(errno));
			return;
		}
		lv_client_accept(w, fd, &peer.ss);
	}
}

static void stop_listening(lv_worker_t *w)
{
	for (int i = 0; i < w->n_listen; i++) {
		if (w->listen_evs[i]) {
			event_free(w->listen_evs[i]);
			w->listen_evs[i] = NULL;
		}
		if (w->listen_fds[i] >= 0) {
			close(w->listen_fds[i]);
			w->listen_fds[i] = -1;
		}
	}
}

/* ---------------------------------------------------------------- janitor */

static void close_everything(lv_worker_t *w)
{
	lv_list_t *pos, *tmp;
	lv_list_for_each_safe(pos, tmp, &w->login.head)
	{
		lv_client_t *c = lv_container_of(pos, lv_client_t, conn.node);
		lv_client_close(c, LV_SQLSTATE_ADMIN_SHUTDOWN, "levee: shutting down");
	}
	lv_list_for_each_safe(pos, tmp, &w->admin.head)
	{
		lv_client_t *c = lv_container_of(pos, lv_client_t, conn.node);
		lv_client_close(c, LV_SQLSTATE_ADMIN_SHUTDOWN, "levee: shutting down");
	}
	lv_list_t *pp;
	lv_list_for_each(pp, &w->pools)
	{
		lv_pool_t *p = lv_container_of(pp, lv_pool_t, node);
		lv_clist_t *cl[] = {&p->waiting, &p->active, &p->idle_clients};
		for (size_t i = 0; i < LV_ARRAY_LEN(cl); i++)
			lv_list_for_each_safe(pos, tmp, &cl[i]->head)
			{
				lv_client_t *c = lv_container_of(pos, lv_client_t, conn.node);
				lv_client_close(c, LV_SQLSTATE_ADMIN_SHUTDOWN, "levee: shutting down");
			}
		lv_clist_t *sl[] = {&p->sv_login, &p->sv_idle, &p->sv_active, &p->sv_testing};
		for (size_t i = 0; i < LV_ARRAY_LEN(sl); i++)
			lv_list_for_each_safe(pos, tmp, &sl[i]->head)
			{
				lv_server_t *sv = lv_container_of(pos, lv_server_t, conn.node);
				lv_server_close(sv, "shutting down");
			}
	}
}

static void janitor_cb(evutil_socket_t fd, short what, void *arg)
{
	lv_worker_t *w = arg;
	lv_usec_t now = lv_time_update();
	lv_config_t *cfg = w->cfg;

	/* Clients that take too long to log in (slow or stuck peers). */
	int64_t login_ms = cfg->levee.client_login_timeout_ms;
	lv_list_t *pos, *tmp;
	lv_list_for_each_safe(pos, tmp, &w->login.head)
	{
		lv_client_t *c = lv_container_of(pos, lv_client_t, conn.node);
		if (login_ms > 0 && now - c->conn.connect_time > login_ms * LV_USEC_PER_MS) {
			lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CLIENT_LOGIN_TIMEOUT);
			lv_metric_inc_l(LV_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, LV_ML_REFUSE_REASON_LOGIN_TIMEOUT);
			lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION, "levee: client_login_timeout (%lld ms) reached",
					(long long)login_ms);
		}
	}
	lv_list_for_each(pos, &w->pools)
	{
		lv_pool_t *p = lv_container_of(pos, lv_pool_t, node);
		lv_pool_janitor(p, now);
	}
	lv_client_reap_lingering(w, now - 5 * LV_USEC_PER_SEC);
	lv_cached_janitor(w, now);
	lv_server_reap_cancels(w, now - 5 * LV_USEC_PER_SEC);
	lv_server_reap_closing(w, now - LV_USEC_PER_SEC);

	if (w->shutdown_mode == 1) {
		if (now >= w->shutdown_deadline_us) {
			lv_log_info("worker %d: shutdown_timeout reached, closing %zu clients", w->index, w->n_clients);
			w->shutdown_mode = 2;
			close_everything(w);
		} else {
			/* Idle servers are no longer needed by anyone. */
			lv_list_for_each(pos, &w->pools)
			{
				lv_pool_t *p = lv_container_of(pos, lv_pool_t, node);
				lv_list_t *sp, *st;
				lv_list_for_each_safe(sp, st, &p->sv_idle.head)
				{
					lv_server_t *sv = lv_container_of(sp, lv_server_t, conn.node);
					if (p->waiting.n == 0)
						lv_server_close(sv, "shutting down");
				}
			}
		}
	}
	if (w->shutdown_mode && w->n_clients == 0) {
		close_everything(w);
		lv_loop_stop(w->loop);
	}
}

/* ---------------------------------------------------------------- shutdown */

typedef struct shutdown_msg {
	lv_worker_t *w;
	int mode;
} shutdown_msg_t;

static void shutdown_run(void *arg)
{
	shutdown_msg_t *m = arg;
	lv_worker_t *w = m->w;
	int mode = m->mode;
	lv_free(m);
	stop_listening(w);
	if (mode > w->shutdown_mode) {
		w->shutdown_mode = mode;
		w->shutdown_deadline_us = lv_time_update() + w->cfg->levee.shutdown_timeout_ms * LV_USEC_PER_MS;
	}
	if (mode == 2)
		close_everything(w);
	janitor_cb(-1, 0, w);
}

void lv_proxy_shutdown(lv_proxy_t *p, int mode)
{
	for (int i = 0; i < p->n_workers; i++) {
		shutdown_msg_t *m = lv_malloc(sizeof(*m));
		if (!m)
			continue;
		m->w = &p->workers[i];
		m->mode = mode;
		if (!lv_loop_post(p->workers[i].loop, shutdown_run, m))
			lv_free(m);
	}
}

int lv_proxy_running(lv_proxy_t *p)
{
	return __atomic_load_n(&p->n_running, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------------ gather */

struct lv_gather {
	lv_proxy_t *proxy;
	lv_worker_t *home;
	lv_gather_fn fn;
	lv_gather_done_fn done;
	void *arg;
	int remaining; /* atomic */
};

typedef struct gather_step {
	lv_gather_t *g;
	lv_worker_t *w;
} gather_step_t;

static void gather_done_run(void *arg)
{
	lv_gather_t *g = arg;
	g->done(g->arg);
	lv_free(g);
}

static void gather_step_run(void *arg)
{
	gather_step_t *s = arg;
	lv_gather_t *g = s->g;
	g->fn(s->w, g->arg);
	lv_free(s);
	if (__atomic_sub_fetch(&g->remaining, 1, __ATOMIC_ACQ_REL) == 0) {
		if (!lv_loop_post(g->home->loop, gather_done_run, g))
			lv_log_error("gather: out of memory posting completion");
	}
}

bool lv_proxy_gather(lv_proxy_t *p, lv_worker_t *home, lv_gather_fn fn, lv_gather_done_fn done, void *arg)
{
	lv_gather_t *g = lv_calloc(1, sizeof(*g));
	gather_step_t *steps[LV_MAX_WORKERS];
	if (!g)
		return false;
	for (int i = 0; i < p->n_workers; i++) {
		steps[i] = lv_malloc(sizeof(gather_step_t));
		if (!steps[i]) {
			while (i-- > 0)
				lv_free(steps[i]);
			lv_free(g);
			return false;
		}
	}
	g->proxy = p;
	g->home = home;
	g->fn = fn;
	g->done = done;
	g->arg = arg;
	g->remaining = p->n_workers;
	for (int i = 0; i < p->n_workers; i++) {
		steps[i]->g = g;
		steps[i]->w = &p->workers[i];
		if (!lv_loop_post(p->workers[i].loop, gather_step_run, steps[i])) {
			/* Run it on no one; count it as done so the completion still comes. */
			lv_free(steps[i]);
			if (__atomic_sub_fetch(&g->remaining, 1, __ATOMIC_ACQ_REL) == 0 &&
			    !lv_loop_post(home->loop, gather_done_run, g))
				lv_log_error("gather: out of memory posting completion");
		}
	}
	return true;
}

/* ------------------------------------------------------------------ config */

lv_config_t *lv_proxy_config(lv_proxy_t *p)
{
	pthread_mutex_lock(&p->cfg_lock);
	lv_config_t *cfg = lv_config_ref(p->cfg);
	pthread_mutex_unlock(&p->cfg_lock);
	return cfg;
}

void lv_proxy_set_config(lv_proxy_t *p, lv_config_t *cfg)
{
	pthread_mutex_lock(&p->cfg_lock);
	lv_config_t *old = p->cfg;
	p->cfg = lv_config_ref(cfg);
	pthread_mutex_unlock(&p->cfg_lock);
	lv_config_unref(old);
	for (int i = 0; i < p->n_workers; i++) {
		config_msg_t *m = lv_malloc(sizeof(*m));
		if (!m) {
			lv_log_error("worker %d: out of memory; it keeps the previous configuration", i);
			continue;
		}
		m->w = &p->workers[i];
		m->cfg = lv_config_ref(cfg);
		if (!lv_loop_post(p->workers[i].loop, config_run, m)) {
			lv_config_unref(m->cfg);
			lv_free(m);
		}
	}
}

/* ------------------------------------------------------------------ set-up */

static bool open_listeners(lv_worker_t *w, lv_err_t *err)
{
	char spec[1024];
	if (!lv_strlcpy(spec, w->cfg->levee.listen, sizeof(spec))) {
		lv_err_set(err, LV_EINVAL, "listen: too long");
		return false;
	}
	char *save = NULL;
	for (char *tok = strtok_r(spec, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		tok = lv_strtrim(tok);
		if (!*tok)
			continue;
		if (w->n_listen >= (int)LV_ARRAY_LEN(w->listen_fds)) {
			lv_err_set(err, LV_EINVAL, "listen: too many addresses");
			return false;
		}
		lv_addr_t a;
		if (tok[0] == '/') {
			/* A unix socket: the directory and port of the first TCP address. */
			lv_err_set(err, LV_EINVAL, "listen: unix sockets are given as unix_socket_dir (not supported yet)");
			return false;
		}
		if (lv_addr_parse(tok, &a, err) != 0)
			return false;
		int fd = lv_listen_socket(&a, true, 4096, err);
		if (fd < 0) {
			char msg[LV_ERR_MSG_LEN];
			snprintf(msg, sizeof(msg), "%s", err->msg);
			lv_err_set(err, LV_EIO, "could not listen on %s: %s", tok, msg);
			return false;
		}
		w->listen_fds[w->n_listen] = fd;
		w->listen_evs[w->n_listen] =
			event_new(lv_loop_base(w->loop), fd, EV_READ | EV_PERSIST, accept_cb, w);
		if (!w->listen_evs[w->n_listen] || event_add(w->listen_evs[w->n_listen], NULL) < 0) {
			lv_err_set(err, LV_ENOMEM, "out of memory");
			return false;
		}
		w->n_listen++;
	}
	return true;
}

bool lv_proxy_init(lv_proxy_t *p, lv_config_t *cfg, lv_err_t *err)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->cfg_lock, NULL);
	p->cfg = lv_config_ref(cfg);
	int n = cfg->levee.workers;
	if (n <= 0)
		n = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (n <= 0)
		n = 1;
	if (n > LV_MAX_WORKERS)
		n = LV_MAX_WORKERS;
	if (cfg->tls.client_tls_mode != LV_CLIENT_TLS_DISABLE) {
		p->tls_server = lv_tls_server_new(cfg->tls.cert_file, cfg->tls.key_file, cfg->tls.ca_file, err);
		if (!p->tls_server)
			return false;
	}
	if (cfg->tls.server_tls != LV_SERVER_TLS_DISABLE) {
		p->tls_client = lv_tls_client_new(cfg->tls.server_ca_file, err);
		if (!p->tls_client)
			return false;
	}
	p->cache = lv_cache_new(cfg->cache.memory, cfg->cache.max_entry_size);
	p->workers = lv_calloc((size_t)n, sizeof(lv_worker_t));
	if (!p->workers || !p->cache) {
		lv_err_set(err, LV_ENOMEM, "out of memory");
		return false;
	}
	p->n_workers = n;
	for (int i = 0; i < n; i++) {
		lv_worker_t *w = &p->workers[i];
		w->index = i;
		w->proxy = p;
		w->cfg = lv_config_ref(cfg);
		for (size_t k = 0; k < LV_ARRAY_LEN(w->listen_fds); k++)
			w->listen_fds[k] = -1;
		lv_clist_init(&w->login);
		lv_clist_init(&w->admin);
		lv_clist_init(&w->lingering);
		lv_list_init(&w->cancels);
		lv_clist_init(&w->closing_servers);
		lv_list_init(&w->pools);
		lv_pstmt_reg_init(&w->pstmts, i);
		lv_list_init(&w->cache_parked);
		w->sql_cache = lv_sql_cache_new(1024);
		w->sql_info = lv_malloc(sizeof(*w->sql_info));
		w->loop = lv_loop_new();
		w->metrics = lv_metrics_shard_new();
		if (!w->loop || !w->metrics || !w->sql_cache || !w->sql_info) {
			lv_err_set(err, LV_ENOMEM, "out of memory");
			return false;
		}
		if (!open_listeners(w, err))
			return false;
		w->janitor = event_new(lv_loop_base(w->loop), -1, EV_PERSIST, janitor_cb, w);
		struct timeval tv = {0, JANITOR_PERIOD_MS * 1000};
		if (!w->janitor || event_add(w->janitor, &tv) < 0) {
			lv_err_set(err, LV_ENOMEM, "out of memory");
			return false;
		}
	}
	return true;
}

static void *worker_main(void *arg)
{
	lv_worker_t *w = arg;
	lv_metrics_bind_thread(w->metrics);
	if (!lv_cached_worker_init(w))
		lv_log_warn("worker %d runs without Redis", w->index);
	lv_loop_run(w->loop);
	lv_cached_worker_cleanup(w);
	lv_sbuf_thread_cleanup();
	/* libpg_query frees this thread's parser memory itself (a thread-specific
	 * destructor); calling lv_sql_thread_cleanup() too would free it twice. */
	lv_metrics_bind_thread(NULL);
	lv_proxy_t *p = w->proxy;
	__atomic_sub_fetch(&p->n_running, 1, __ATOMIC_ACQ_REL);
	if (p->on_worker_exit)
		p->on_worker_exit(p);
	return NULL;
}

bool lv_proxy_start(lv_proxy_t *p, lv_err_t *err)
{
	for (int i = 0; i < p->n_workers; i++) {
		__atomic_add_fetch(&p->n_running, 1, __ATOMIC_ACQ_REL);
		if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
			__atomic_sub_fetch(&p->n_running, 1, __ATOMIC_ACQ_REL);
			lv_err_set(err, LV_EIO, "could not start worker thread: %s", strerror(errno));
			return false;
		}
		p->workers[i].started = true;
	}
	return true;
}

static void free_worker(lv_worker_t *w)
{
	stop_listening(w);
	if (w->janitor)
		event_free(w->janitor);
	/* Whatever is left is closed and freed with the loop. */
	if (w->loop) {
		close_everything(w);
		lv_client_reap_lingering(w, INT64_MAX);
		lv_server_reap_cancels(w, INT64_MAX);
		lv_server_reap_closing(w, INT64_MAX);
		lv_loop_free(w->loop);
	}
	lv_list_t *pos;
	while ((pos = lv_list_first(&w->pools)) != NULL)
		lv_pool_free(lv_container_of(pos, lv_pool_t, node));
	lv_free(w->keys);
	lv_sql_cache_free(w->sql_cache);
	lv_free(w->sql_info);
	lv_pstmt_reg_cleanup(&w->pstmts);
	lv_metrics_shard_free(w->metrics);
	lv_config_unref(w->cfg);
}

void lv_proxy_cleanup(lv_proxy_t *p)
{
	for (int i = 0; i < p->n_workers; i++)
		if (p->workers[i].started)
			pthread_join(p->workers[i].thread, NULL);
	__atomic_store_n(&p->tearing_down, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < p->n_workers; i++)
		free_worker(&p->workers[i]);
	lv_free(p->workers);
	lv_cache_free(p->cache);
	p->cache = NULL;
	lv_tls_free(p->tls_server);
	lv_tls_free(p->tls_client);
	lv_config_unref(p->cfg);
	lv_pool_shared_free_all();
	pthread_mutex_destroy(&p->cfg_lock);
}
