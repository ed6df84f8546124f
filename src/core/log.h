/* SPDX-License-Identifier: ISC */
/*
 * Logging. One line per call, written with a single write(2) so lines from
 * different worker threads never interleave. The level test is inside the
 * macros (Redis serverLog), so a disabled debug line costs one comparison.
 *
 * Lines look like:
 *   2026-11-28 11:42:16.123 UTC [pid] LOG C-12 app/alice@127.0.0.1:51234: message (while routing)
 * The per-connection prefix and action come from a hook that proxy/ installs,
 * so core/ does not know what a connection is.
 */
#ifndef LEVEE_CORE_LOG_H
#define LEVEE_CORE_LOG_H

#include "core/lv.h"

typedef enum lv_log_level {
	LV_LOG_FATAL = 0, /* startup failures and broken invariants */
	LV_LOG_ERROR = 1, /* something failed that an operator should look at */
	LV_LOG_WARN = 2,  /* degraded but working */
	LV_LOG_INFO = 3,  /* lifecycle: start, reload, connections when log_connections */
	LV_LOG_DEBUG = 4, /* state changes */
	LV_LOG_TRACE = 5, /* every message */
} lv_log_level_t;

extern int lv_log_level;

/* Parses "error", "warning", "info", "debug", "trace"; returns -1 when unknown. */
int lv_log_level_parse(const char *s);
/* Directs output to path (appending), or stderr when path is NULL or empty. */
bool lv_log_open(const char *path) LV_MUSTCHECK;
void lv_log_close(void);

/*
 * Fills buf with the identity of obj ("C-12 app/alice@1.2.3.4:5") and returns
 * its length; sets *action to what the object is doing, or NULL.
 */
typedef size_t (*lv_log_prefix_fn)(const void *obj, char *buf, size_t len, const char **action);
void lv_log_set_prefix_fn(lv_log_prefix_fn fn);

void lv_log_write(int level, const void *obj, const char *fmt, ...) LV_PRINTF(3, 4);
void lv_log_vwrite(int level, const void *obj, const char *fmt, va_list ap);

#define LV__LOG(lvl, obj, ...)                          \
	do {                                            \
		if ((lvl) <= lv_log_level)              \
			lv_log_write((lvl), (obj), __VA_ARGS__); \
	} while (0)

#define lv_log_error(...) LV__LOG(LV_LOG_ERROR, NULL, __VA_ARGS__)
#define lv_log_warn(...) LV__LOG(LV_LOG_WARN, NULL, __VA_ARGS__)
#define lv_log_info(...) LV__LOG(LV_LOG_INFO, NULL, __VA_ARGS__)
#define lv_log_debug(...) LV__LOG(LV_LOG_DEBUG, NULL, __VA_ARGS__)
#define lv_log_trace(...) LV__LOG(LV_LOG_TRACE, NULL, __VA_ARGS__)

#define lv_clog_error(conn, ...) LV__LOG(LV_LOG_ERROR, (conn), __VA_ARGS__)
#define lv_clog_warn(conn, ...) LV__LOG(LV_LOG_WARN, (conn), __VA_ARGS__)
#define lv_clog_info(conn, ...) LV__LOG(LV_LOG_INFO, (conn), __VA_ARGS__)
#define lv_clog_debug(conn, ...) LV__LOG(LV_LOG_DEBUG, (conn), __VA_ARGS__)
#define lv_clog_trace(conn, ...) LV__LOG(LV_LOG_TRACE, (conn), __VA_ARGS__)

/* Logs at FATAL and exits(1). For startup, config and broken invariants only. */
void lv_fatal(const char *fmt, ...) LV_PRINTF(1, 2) LV_NORETURN;

#endif
