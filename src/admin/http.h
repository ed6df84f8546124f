/* SPDX-License-Identifier: ISC */
/*
 * The HTTP listener (evhttp on the main loop): /metrics in the Prometheus
 * text format, /healthz (the process runs), /readyz (at least one backend
 * answers its health probe). Nothing here is on the query path.
 */
#ifndef LEVEE_ADMIN_HTTP_H
#define LEVEE_ADMIN_HTTP_H

#include "core/status.h"
#include "core/types.h"
#include "event/loop.h"
#include "proxy/backend.h"

typedef struct lv_http lv_http_t;

/* Listens on addr ("host:port"); NULL with err set. */
lv_http_t *lv_http_new(lv_loop_t *loop, const char *addr, lv_proxy_t *p, lv_health_t *health, lv_err_t *err);
void lv_http_free(lv_http_t *h);

#endif
