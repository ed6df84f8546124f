/* SPDX-License-Identifier: ISC */
/*
 * Log sink. Owns the log file descriptor (process lifetime). Formatting
 * happens into a stack buffer; the line goes out in one write(2), which keeps
 * lines whole across threads without a lock.
 */
#include "core/log.h"

#include <fcntl.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int lv_log_level = LV_LOG_INFO;

static int log_fd = STDERR_FILENO;
static lv_log_prefix_fn prefix_fn;

static const char *const level_names[] = {"FATAL", "ERROR", "WARNING", "LOG", "DEBUG", "TRACE"};

int lv_log_level_parse(const char *s)
{
	static const struct {
		const char *name;
		int level;
	} names[] = {
		{"fatal", LV_LOG_FATAL}, {"error", LV_LOG_ERROR}, {"warning", LV_LOG_WARN},
		{"warn", LV_LOG_WARN},   {"info", LV_LOG_INFO},   {"debug", LV_LOG_DEBUG},
		{"trace", LV_LOG_TRACE},
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(names); i++)
		if (strcasecmp(s, names[i].name) == 0)
			return names[i].level;
	return -1;
}

bool lv_log_open(const char *path)
{
	if (!path || !*path) {
		lv_log_close();
		return true;
	}
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return false;
	lv_log_close();
	log_fd = fd;
	return true;
}

void lv_log_close(void)
{
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = STDERR_FILENO;
}

void lv_log_set_prefix_fn(lv_log_prefix_fn fn)
{
	prefix_fn = fn;
}

void lv_log_vwrite(int level, const void *obj, const char *fmt, va_list ap)
{
	char line[2048];
	size_t n = 0;
	struct timeval tv;
	struct tm tm;
	const char *action = NULL;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n += strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03d UTC [%d] %s ", (int)(tv.tv_usec / 1000),
			      (int)getpid(), level_names[level < 0 ? 0 : level > 5 ? 5 : level]);
	if (obj && prefix_fn) {
		n += prefix_fn(obj, line + n, sizeof(line) - n, &action);
		if (n < sizeof(line) - 2) {
			line[n++] = ':';
			line[n++] = ' ';
		}
	}
	if (n < sizeof(line)) {
		int k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (k > 0)
			n += (size_t)k;
	}
	if (action && n < sizeof(line)) {
		int k = snprintf(line + n, sizeof(line) - n, " (%s)", action);
		if (k > 0)
			n += (size_t)k;
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(log_fd, line, n) < 0) {
		/* Nowhere left to complain. */
	}
}

void lv_log_write(int level, const void *obj, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	lv_log_vwrite(level, obj, fmt, ap);
	va_end(ap);
}

void lv_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	lv_log_vwrite(LV_LOG_FATAL, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}

void lv_assert_fail(const char *expr, const char *file, int line)
{
	lv_log_write(LV_LOG_FATAL, NULL, "assertion failed: %s at %s:%d", expr, file, line);
	abort();
}
