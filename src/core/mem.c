/* SPDX-License-Identifier: ISC */
/*
 * Heap allocation wrappers. See mem.h for the OOM policy. The only state is
 * the failure-injection hook, set by unit tests before any thread starts.
 */
#include "core/mem.h"

#include <unistd.h>

static lv_mem_fail_hook_t fail_hook;

void lv_mem_set_fail_hook(lv_mem_fail_hook_t hook)
{
	fail_hook = hook;
}

static bool should_fail(size_t n)
{
	return fail_hook != NULL && fail_hook(n);
}

void *lv_malloc(size_t n)
{
	if (should_fail(n))
		return NULL;
	return malloc(n ? n : 1);
}

void *lv_calloc(size_t n, size_t size)
{
	if (should_fail(n * size))
		return NULL;
	return calloc(n ? n : 1, size ? size : 1);
}

void *lv_realloc(void *p, size_t n)
{
	if (should_fail(n))
		return NULL;
	return realloc(p, n ? n : 1);
}

char *lv_strdup(const char *s)
{
	return lv_strndup(s, strlen(s));
}

char *lv_strndup(const char *s, size_t n)
{
	char *d = lv_malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

void lv_free(void *p)
{
	free(p);
}

static void LV_NORETURN oom(size_t n)
{
	char msg[96];
	int len = snprintf(msg, sizeof(msg), "levee: fatal: out of memory allocating %zu bytes\n", n);
	if (len > 0 && write(STDERR_FILENO, msg, (size_t)len) < 0) {
		/* Nothing left to report to. */
	}
	abort();
}

void *lv_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *lv_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *lv_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *lv_xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		oom(strlen(s) + 1);
	return d;
}
