/* SPDX-License-Identifier: ISC */
/*
 * Backend health, as seen from the main loop: every period each distinct
 * backend host of the configuration is probed with an SSLRequest (any
 * answer, 'S' or 'N', proves a PostgreSQL postmaster is there and accepting;
 * no credentials needed). /readyz is ready while at least one backend
 * answered its last probe. Read and written on the main thread only.
 */
#ifndef LEVEE_PROXY_BACKEND_H
#define LEVEE_PROXY_BACKEND_H

#include "config/config.h"
#include "event/loop.h"

typedef struct lv_health lv_health_t;

/* Starts probing on loop every period_ms; NULL on OOM. */
lv_health_t *lv_health_new(lv_loop_t *loop, int64_t period_ms);
void lv_health_free(lv_health_t *h);
/* Probes the backends of cfg from now on (takes a reference). */
void lv_health_set_config(lv_health_t *h, lv_config_t *cfg);
/* Backends that answered their last probe, and how many there are. */
int lv_health_up(const lv_health_t *h, int *n_total);

#endif
