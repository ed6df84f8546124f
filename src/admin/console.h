/* SPDX-License-Identifier: ISC */
/*
 * The admin console (database "levee"): SHOW POOLS, CLIENTS, SERVERS, STATS,
 * CONFIG, VERSION; RELOAD; PAUSE; RESUME; SHUTDOWN. Only admin_users may
 * connect; stats_users may use SHOW only.
 */
#ifndef LEVEE_ADMIN_CONSOLE_H
#define LEVEE_ADMIN_CONSOLE_H

#include "core/buf.h"
#include "core/types.h"

/* What the console asks of main.c. Both may be called from any worker thread. */
typedef struct lv_admin_hooks {
	/* Reloads the config file; false with "file:line: message" lines in errors. */
	bool (*reload)(void *arg, lv_buf_t *errors);
	/* Shuts down at once (SIGTERM semantics). */
	void (*shutdown)(void *arg);
	void *arg;
} lv_admin_hooks_t;

/* Registers the console with the proxy. Call before lv_proxy_start(). */
void lv_admin_init(lv_proxy_t *p, const lv_admin_hooks_t *hooks);

#endif
