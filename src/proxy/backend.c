/* SPDX-License-Identifier: ISC */
/* Backend probes; see backend.h. Owns its probe connections (one per backend per period). */
#include "proxy/backend.h"
#include "core/log.h"
#include "core/mem.h"
#include "net/sbuf.h"

#include <event2/event.h>

#define LV_HEALTH_MAX 64

typedef struct probe {
	lv_health_t *h;
	int index;
	lv_sbuf_t sb;
	bool busy;  /* a probe connection exists until reaped */
	bool ended; /* its result is in */
	lv_deferred_t reap;
} probe_t;

struct lv_health {
	lv_loop_t *loop;
	struct event *timer;
	lv_config_t *cfg;
	int n;
	lv_cfg_host_t hosts[LV_HEALTH_MAX];
	bool up[LV_HEALTH_MAX];
	probe_t probes[LV_HEALTH_MAX];
};

static void probe_reap(lv_deferred_t *d)
{
	probe_t *p = lv_container_of(d, probe_t, reap);
	lv_sbuf_cleanup(&p->sb);
	p->busy = false;
}

static void probe_end(probe_t *p, bool up)
{
	lv_health_t *h = p->h;
	if (p->ended)
		return;
	p->ended = true;
	if (h->up[p->index] != up)
		lv_log_info("backend %s:%d is %s", h->hosts[p->index].host, h->hosts[p->index].port,
			    up ? "up" : "down");
	h->up[p->index] = up;
	lv_sbuf_pause(&p->sb);
	lv_loop_defer(h->loop, &p->reap);
}

static void probe_cb(lv_sbuf_t *sb, lv_sbuf_event_t ev, void *arg)
{
	probe_t *p = arg;
	static const uint8_t ssl_request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
	switch (ev) {
	case LV_SBUF_EV_CONNECTED:
		if (!lv_sbuf_write(sb, ssl_request, sizeof(ssl_request)))
			probe_end(p, false);
		return;
	case LV_SBUF_EV_READ: {
		uint8_t a = 0;
		(void)lv_sbuf_read(sb, &a, 1);
		probe_end(p, a == 'S' || a == 'N');
		return;
	}
	case LV_SBUF_EV_DRAINED:
		return;
	case LV_SBUF_EV_EOF:
	case LV_SBUF_EV_ERROR:
		probe_end(p, false);
		return;
	}
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	lv_health_t *h = arg;
	for (int i = 0; i < h->n; i++) {
		probe_t *p = &h->probes[i];
		if (p->busy) {
			/* No answer within a period: down. */
			probe_end(p, false);
			continue;
		}
		p->ended = false;
		lv_addr_t a;
		lv_err_t err = {0};
		p->h = h;
		p->index = i;
		p->reap.fn = probe_reap;
		if (lv_addr_resolve(h->hosts[i].host, h->hosts[i].port, &a, &err) != 0 ||
		    !lv_sbuf_connect(&p->sb, lv_loop_base(h->loop), &a, probe_cb, p, &err)) {
			h->up[i] = false;
			continue;
		}
		p->busy = true;
	}
}

lv_health_t *lv_health_new(lv_loop_t *loop, int64_t period_ms)
{
	lv_health_t *h = lv_calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->loop = loop;
	h->timer = event_new(lv_loop_base(loop), -1, EV_PERSIST, tick_cb, h);
	struct timeval tv = {(time_t)(period_ms / 1000), (suseconds_t)(period_ms % 1000) * 1000};
	if (!h->timer || event_add(h->timer, &tv) < 0) {
		lv_health_free(h);
		return NULL;
	}
	return h;
}

void lv_health_free(lv_health_t *h)
{
	if (!h)
		return;
	for (int i = 0; i < h->n; i++)
		if (h->probes[i].busy)
			lv_sbuf_cleanup(&h->probes[i].sb);
	if (h->timer)
		event_free(h->timer);
	lv_config_unref(h->cfg);
	lv_free(h);
}

static void add_host(lv_health_t *h, const lv_cfg_host_t *host)
{
	for (int i = 0; i < h->n; i++)
		if (strcmp(h->hosts[i].host, host->host) == 0 && h->hosts[i].port == host->port)
			return;
	if (h->n < LV_HEALTH_MAX)
		h->hosts[h->n++] = *host;
}

void lv_health_set_config(lv_health_t *h, lv_config_t *cfg)
{
	/* Probes in flight finish against the old list; their results are kept by index. */
	for (int i = 0; i < h->n; i++)
		if (h->probes[i].busy) {
			lv_sbuf_cleanup(&h->probes[i].sb);
			h->probes[i].busy = false;
		}
	lv_config_unref(h->cfg);
	h->cfg = lv_config_ref(cfg);
	h->n = 0;
	memset(h->up, 0, sizeof(h->up));
	for (size_t i = 0; i < cfg->n_dbs; i++) {
		add_host(h, &cfg->dbs[i].primary);
		for (int r = 0; r < cfg->dbs[i].n_replicas; r++)
			add_host(h, &cfg->dbs[i].replicas[r]);
	}
	tick_cb(-1, 0, h);
}

int lv_health_up(const lv_health_t *h, int *n_total)
{
	int up = 0;
	for (int i = 0; i < h->n; i++)
		up += h->up[i];
	if (n_total)
		*n_total = h->n;
	return up;
}
