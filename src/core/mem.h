/* SPDX-License-Identifier: ISC */
/*
 * Heap allocation and the OOM policy, written down once:
 *
 *  - lv_xmalloc() and friends abort the process on failure. They are for
 *    startup and config loading only, where there is nothing sensible to do.
 *  - lv_malloc() and friends may return NULL. Every data-path caller handles
 *    NULL by failing that one connection (SQLSTATE 53200), never the process.
 *
 * Unit tests inject failures through lv_mem_set_fail_hook(): when the hook
 * returns true the next lv_malloc() fails (SQLite's benign-malloc idea).
 * Allocations are thread-safe (they are libc's); the hook is for tests only.
 */
#ifndef LEVEE_CORE_MEM_H
#define LEVEE_CORE_MEM_H

#include "core/lv.h"

void *lv_malloc(size_t n) LV_MUSTCHECK;
void *lv_calloc(size_t n, size_t size) LV_MUSTCHECK;
/* Returns the new block, or NULL with p untouched and still owned by the caller. */
void *lv_realloc(void *p, size_t n) LV_MUSTCHECK;
char *lv_strdup(const char *s) LV_MUSTCHECK;
char *lv_strndup(const char *s, size_t n) LV_MUSTCHECK;
/* Frees p; NULL is a no-op. */
void lv_free(void *p);

void *lv_xmalloc(size_t n);
void *lv_xcalloc(size_t n, size_t size);
void *lv_xrealloc(void *p, size_t n);
char *lv_xstrdup(const char *s);

/* Test seam: when hook() returns true, the lv_malloc family returns NULL. */
typedef bool (*lv_mem_fail_hook_t)(size_t n);
void lv_mem_set_fail_hook(lv_mem_fail_hook_t hook);

#endif
