/* SPDX-License-Identifier: ISC */
/*
 * Wiring of the write-queue consumers (wq/wq.h) into the process: the
 * PostgreSQL connections they use (proxy/pgconn.c, with credentials from the
 * configuration) and the instance id. Main thread only.
 */
#ifndef LEVEE_PROXY_WQ_GLUE_H
#define LEVEE_PROXY_WQ_GLUE_H

#include "config/config.h"
#include "event/loop.h"
#include "net/tls.h"
#include "wq/wq.h"

typedef struct lv_wq_glue lv_wq_glue_t;

/*
 * Creates the consumers on loop and applies cfg (takes a reference); their
 * connections use tls (borrowed, may be NULL) as server_tls asks.
 * on_applied (may be NULL) is called on loop's thread after each committed
 * batch with the tables it wrote. Reads LEVEE_TEST_CRASH_AFTER_COMMIT=1 from
 * the environment (tests only: abort right after a batch's COMMIT). NULL on OOM.
 */
lv_wq_glue_t *lv_wq_glue_start(lv_loop_t *loop, lv_config_t *cfg, lv_tls_ctx_t *tls,
			       lv_wq_applied_fn on_applied, void *arg) LV_MUSTCHECK;
/* Applies a new configuration generation (takes a reference). */
void lv_wq_glue_set_config(lv_wq_glue_t *g, lv_config_t *cfg);
/* Stops the consumers and frees g; NULL: no-op. */
void lv_wq_glue_free(lv_wq_glue_t *g);

#endif
