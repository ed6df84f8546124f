/* SPDX-License-Identifier: ISC */
/* Status names and messages, generated from LV_STATUS_MAP. */
#include "core/status.h"

const char *lv_status_name(int status)
{
	switch (status) {
#define XX(name, code, msg) \
	case code:          \
		return #name;
		LV_STATUS_MAP(XX)
#undef XX
	}
	return "UNKNOWN";
}

const char *lv_status_msg(int status)
{
	switch (status) {
#define XX(name, code, msg) \
	case code:          \
		return msg;
		LV_STATUS_MAP(XX)
#undef XX
	}
	return "unknown status";
}

int lv_err_set(lv_err_t *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}
