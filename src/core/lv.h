/* SPDX-License-Identifier: ISC */
/*
 * Base include for every Levee source file: the standard headers everyone
 * needs and a handful of compiler helpers. Nothing here allocates or does I/O.
 */
#ifndef LEVEE_CORE_LV_H
#define LEVEE_CORE_LV_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LV_VERSION "0.1.0"

#define LV_MUSTCHECK __attribute__((warn_unused_result))
#define LV_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define LV_NORETURN __attribute__((noreturn))
#define LV_UNUSED __attribute__((unused))

#define lv_likely(x) __builtin_expect(!!(x), 1)
#define lv_unlikely(x) __builtin_expect(!!(x), 0)

#define lv_container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#define LV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LV_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define LV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LV_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Broken invariants: checked in DEBUG builds and in CI (LV_DEBUG). */
void lv_assert_fail(const char *expr, const char *file, int line) LV_NORETURN;
#ifdef LV_DEBUG
#define LV_ASSERT(x) ((x) ? (void)0 : lv_assert_fail(#x, __FILE__, __LINE__))
#else
#define LV_ASSERT(x) ((void)0)
#endif

#endif
