/* SPDX-License-Identifier: ISC */
/*
 * Status codes returned by pure modules (wire/, sql/, config parsing): 0 or a
 * negative LV_E* value. The names and messages come from one X-macro, so the
 * enum and its strings cannot drift apart.
 *
 * Functions that produce human-readable errors fill a caller-provided
 * lv_err_t instead of logging; the caller decides what to do with it.
 */
#ifndef LEVEE_CORE_STATUS_H
#define LEVEE_CORE_STATUS_H

#include "core/lv.h"

#define LV_STATUS_MAP(XX)                                          \
	XX(OK, 0, "ok")                                            \
	XX(EINVAL, -1, "invalid argument")                         \
	XX(ENOMEM, -2, "out of memory")                            \
	XX(EAGAIN, -3, "need more data")                           \
	XX(EPROTO, -4, "protocol violation")                       \
	XX(ETOOBIG, -5, "value too large")                         \
	XX(ENOENT, -6, "not found")                                \
	XX(EAUTH, -7, "authentication failed")                     \
	XX(EUNSUPP, -8, "not supported")                           \
	XX(ERANGE, -9, "value out of range")                       \
	XX(EIO, -10, "input/output error")                         \
	XX(ESYNTAX, -11, "syntax error")

typedef enum lv_status {
#define XX(name, code, msg) LV_##name = (code),
	LV_STATUS_MAP(XX)
#undef XX
} lv_status_t;

/* Symbolic name ("EPROTO") of a status; "UNKNOWN" for values not in the map. */
const char *lv_status_name(int status);
/* Human message ("protocol violation") of a status. */
const char *lv_status_msg(int status);

#define LV_ERR_MSG_LEN 256

/* An error with a message, filled by the callee, owned by the caller. */
typedef struct lv_err {
	int code;
	char msg[LV_ERR_MSG_LEN];
} lv_err_t;

/* Sets err (if not NULL) and returns code, so callers can `return lv_err_set(...)`. */
int lv_err_set(lv_err_t *err, int code, const char *fmt, ...) LV_PRINTF(3, 4);

#endif
