/* SPDX-License-Identifier: ISC */
/*
 * Shared by the files of src/wq/ and not part of wq.h: the Redis key names
 * of a database's queue, which the consumers (wq.c) and the admin helpers
 * (admin.c) must spell alike. Defined in wq.c.
 */
#ifndef LEVEE_WQ_WQ_INT_H
#define LEVEE_WQ_WQ_INT_H

#include "core/lv.h"
#include "config/config.h"

#define LV__WQ_KEY_LEN (LV_NAME_LEN + 128) /* room for any key below */

/* Writes "<stream_prefix>:<db>:<p>", stream partition p, into out[LV__WQ_KEY_LEN]. */
void lv__wq_stream_key(char *out, const lv_config_t *cfg, const char *db, unsigned p);
/* Writes "<stream_prefix>:<db>:<what>" ("dead", "stats") into out[LV__WQ_KEY_LEN]. */
void lv__wq_named_key(char *out, const lv_config_t *cfg, const char *db, const char *what);

#endif
