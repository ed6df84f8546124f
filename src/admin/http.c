/* SPDX-License-Identifier: ISC */
/*
 * HTTP endpoints; see http.h. Owns the evhttp server (process lifetime).
 * /metrics sums the workers' shards and the main thread's fallback shard at
 * scrape time; rendering is core/metrics.c's, this file only serves it.
 */
#include "admin/http.h"
#include "core/log.h"
#include "core/mem.h"
#include "cache/cache.h"
#include "core/metrics.h"
#include "net/addr.h"
#include "proxy/worker.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

struct lv_http {
	struct evhttp *http;
	lv_proxy_t *proxy;
	lv_health_t *health;
};

static void reply(struct evhttp_request *req, int code, const char *reason, const char *ctype, const void *body,
		  size_t len)
{
	struct evbuffer *out = evbuffer_new();
	if (!out) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add(out, body, len);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	evhttp_send_reply(req, code, reason, out);
	evbuffer_free(out);
}

/* Per-backend series, from the health table. */
static bool render_backends(lv_http_t *h, lv_buf_t *b)
{
	static const struct {
		const char *name, *help, *type;
	} fam[] = {
		{"levee_backend_up", "Whether the backend answered its last health check.", "gauge"},
		{"levee_backend_usable", "Whether the backend may take new work (up, not banned, not lagging).", "gauge"},
		{"levee_backend_replica_lag_seconds", "Replay lag of a replica in time.", "gauge"},
		{"levee_backend_replica_lag_bytes", "Replay lag of a replica in WAL bytes behind the primary.", "gauge"},
		{"levee_backend_outstanding", "Transactions in flight on the backend.", "gauge"},
		{"levee_backend_bans_total", "Times the backend was banned from new work.", "counter"},
		{"levee_backend_recoveries_total", "Times the backend came back after a ban.", "counter"},
		{"levee_backend_queries_total", "Request cycles (queries, Syncs) the backend answered.", "counter"},
	};
	int n = lv_health_count(h->health);
	for (size_t f = 0; f < LV_ARRAY_LEN(fam); f++) {
		if (n == 0)
			break;
		if (!lv_metrics_render_family(b, fam[f].name, fam[f].help, fam[f].type))
			return false;
		for (int i = 0; i < n; i++) {
			lv_backend_t *be = lv_health_at(h->health, i);
			char addr[LV_HOST_LEN + 8];
			snprintf(addr, sizeof(addr), "%s:%d", be->host, be->port);
			int rep = __atomic_load_n(&be->is_replica, __ATOMIC_RELAXED);
			const char *kv[] = {"backend", addr, "role", rep == 1 ? "replica" : rep == 0 ? "primary" : "unknown",
					    NULL};
			double v = 0;
			switch (f) {
			case 0: v = __atomic_load_n(&be->up, __ATOMIC_RELAXED); break;
			case 1: v = __atomic_load_n(&be->usable, __ATOMIC_RELAXED); break;
			case 2: v = (double)__atomic_load_n(&be->lag_us, __ATOMIC_RELAXED) / 1e6; break;
			case 3: v = (double)__atomic_load_n(&be->lag_bytes, __ATOMIC_RELAXED); break;
			case 4: v = __atomic_load_n(&be->outstanding, __ATOMIC_RELAXED); break;
			case 5: v = (double)be->n_bans; break;
			case 6: v = (double)be->n_recoveries; break;
			default: v = (double)__atomic_load_n(&be->n_queries, __ATOMIC_RELAXED); break;
			}
			if ((f == 2 || f == 3) && rep != 1)
				continue;
			if (!lv_metrics_render_sample(b, fam[f].name, kv, v))
				return false;
		}
	}
	return true;
}

/*
 * The cache's own numbers: the store's gauges and evictions (kept by the
 * store, published here on the main thread's shard) and the per-rule series.
 */
static bool render_cache(lv_proxy_t *p, lv_buf_t *b)
{
	lv_cache_t *cache = p->cache;
	if (!cache)
		return true;
	static const struct {
		const char *name, *help, *type;
	} fam[] = {
		{"levee_cache_rule_requests_total", "Cacheable requests per rule, by how the cache answered.",
		 "counter"},
		{"levee_cache_rule_fills_total", "Results stored per rule.", "counter"},
		{"levee_cache_rule_hit_ratio", "Requests answered by the cache (fresh, stale, or by waiting for another fill) over cacheable requests, per rule.", "gauge"},
	};
	int n = __atomic_load_n(&cache->n_rules, __ATOMIC_ACQUIRE);
	for (size_t f = 0; f < LV_ARRAY_LEN(fam); f++) {
		if (!lv_metrics_render_family(b, fam[f].name, fam[f].help, fam[f].type))
			return false;
		for (int i = 0; i < n; i++) {
			lv_cache_rule_stats_t *r = &cache->rules[i];
			uint64_t hits = __atomic_load_n(&r->hits, __ATOMIC_RELAXED);
			uint64_t stale = __atomic_load_n(&r->stale, __ATOMIC_RELAXED);
			uint64_t misses = __atomic_load_n(&r->misses, __ATOMIC_RELAXED);
			uint64_t coalesced = __atomic_load_n(&r->coalesced, __ATOMIC_RELAXED);
			if (f == 0) {
				const char *results[] = {"hit", "stale", "miss", "coalesced"};
				uint64_t v[] = {hits, stale, misses, coalesced};
				for (size_t k = 0; k < LV_ARRAY_LEN(results); k++) {
					const char *kv[] = {"rule", r->name, "result", results[k], NULL};
					if (!lv_metrics_render_sample(b, fam[f].name, kv, (double)v[k]))
						return false;
				}
				continue;
			}
			const char *kv[] = {"rule", r->name, NULL};
			uint64_t total = hits + stale + misses + coalesced;
			double v = f == 1 ? (double)__atomic_load_n(&r->fills, __ATOMIC_RELAXED)
					  : total ? (double)(hits + stale + coalesced) / (double)total : 0;
			if (!lv_metrics_render_sample(b, fam[f].name, kv, v))
				return false;
		}
	}
	return true;
}

/* Publishes the store's numbers as this (main) thread's metrics before a scrape. */
static void publish_cache_stats(lv_proxy_t *p)
{
	static uint64_t evictions_seen;
	if (!p->cache)
		return;
	lv_cache_store_stats_t st = lv_cache_store_stats(p->cache->store);
	lv_metric_set(LV_M_CACHE_ENTRIES, 0, (int64_t)st.entries);
	lv_metric_set(LV_M_CACHE_BYTES, 0, (int64_t)st.bytes);
	if (st.evictions > evictions_seen) {
		lv_metric_add(LV_M_CACHE_EVICTIONS_TOTAL, 0, (int64_t)(st.evictions - evictions_seen));
		evictions_seen = st.evictions;
	}
}

static void metrics_cb(struct evhttp_request *req, void *arg)
{
	lv_http_t *h = arg;
	lv_proxy_t *p = h->proxy;
	lv_metrics_shard_t *shards[LV_MAX_WORKERS + 1];
	size_t n = 0;
	for (int i = 0; i < p->n_workers; i++)
		shards[n++] = p->workers[i].metrics;
	/* The main thread's own series live in the fallback shard, which rendering always adds. */
	lv_buf_t b;
	lv_buf_init(&b);
	int up_total = 0;
	int up = lv_health_up(h->health, &up_total);
	publish_cache_stats(p);
	bool ok = lv_metrics_render(shards, n, &b) &&
		  lv_buf_printf(&b,
				"# HELP levee_backends_up Backends that answered their last health probe.\n"
				"# TYPE levee_backends_up gauge\nlevee_backends_up %d\n"
				"# HELP levee_backends Backends in the configuration.\n"
				"# TYPE levee_backends gauge\nlevee_backends %d\n"
				"# HELP levee_build_info Levee version.\n"
				"# TYPE levee_build_info gauge\nlevee_build_info{version=\"%s\"} 1\n",
				up, up_total, LV_VERSION);
	ok = ok && render_backends(h, &b) && render_cache(p, &b);
	if (ok)
		reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
	else
		evhttp_send_error(req, 500, "out of memory");
	lv_buf_cleanup(&b);
}

static void healthz_cb(struct evhttp_request *req, void *arg)
{
	reply(req, 200, "OK", "text/plain", "ok\n", 3);
}

static void readyz_cb(struct evhttp_request *req, void *arg)
{
	lv_http_t *h = arg;
	int total = 0;
	int up = lv_health_up(h->health, &total);
	char body[96];
	int n = snprintf(body, sizeof(body), "%s: %d of %d backends answer\n", up > 0 ? "ready" : "not ready", up, total);
	reply(req, up > 0 ? 200 : 503, up > 0 ? "OK" : "Service Unavailable", "text/plain", body, (size_t)n);
}

static void other_cb(struct evhttp_request *req, void *arg)
{
	reply(req, 404, "Not Found", "text/plain", "not found: try /metrics, /healthz or /readyz\n", 45);
}

lv_http_t *lv_http_new(lv_loop_t *loop, const char *addr, lv_proxy_t *p, lv_health_t *health, lv_err_t *err)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	if (!colon || (size_t)(colon - addr) >= sizeof(host)) {
		lv_err_set(err, LV_EINVAL, "http_listen: expected host:port, got \"%s\"", addr);
		return NULL;
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	int port = atoi(colon + 1);
	lv_http_t *h = lv_calloc(1, sizeof(*h));
	if (!h) {
		lv_err_set(err, LV_ENOMEM, "out of memory");
		return NULL;
	}
	h->proxy = p;
	h->health = health;
	h->http = evhttp_new(lv_loop_base(loop));
	if (!h->http || evhttp_bind_socket(h->http, host, (uint16_t)port) != 0) {
		lv_err_set(err, LV_EIO, "could not listen on http_listen %s: %s", addr, strerror(errno));
		lv_http_free(h);
		return NULL;
	}
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_cb(h->http, "/metrics", metrics_cb, h);
	evhttp_set_cb(h->http, "/healthz", healthz_cb, h);
	evhttp_set_cb(h->http, "/readyz", readyz_cb, h);
	evhttp_set_gencb(h->http, other_cb, h);
	evhttp_set_timeout(h->http, 10);
	return h;
}

void lv_http_free(lv_http_t *h)
{
	if (!h)
		return;
	if (h->http)
		evhttp_free(h->http);
	lv_free(h);
}
