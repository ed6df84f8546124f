/* SPDX-License-Identifier: ISC */
/*
 * Time. lv_time_now_us() is the monotonic clock cached once per loop
 * iteration (per thread), so timeouts computed in one callback agree and the
 * hot path makes no clock syscall. Unit tests link tests/unit/fakes/time.c
 * instead of this file to get a settable clock.
 */
#ifndef LEVEE_CORE_TIME_H
#define LEVEE_CORE_TIME_H

#include "core/lv.h"

typedef int64_t lv_usec_t;

#define LV_USEC_PER_MS 1000LL
#define LV_USEC_PER_SEC 1000000LL

/* Cached monotonic time in microseconds; refreshed by lv_time_update(). */
lv_usec_t lv_time_now_us(void);
/* Reads the clock now and refreshes the cache of the calling thread. */
lv_usec_t lv_time_update(void);
/* The loop is about to wait: the next lv_time_refresh() of this thread reads the clock. */
void lv_time_mark_stale(void);
/*
 * Reads the clock if the thread's loop has waited since it was last read (so the
 * first I/O callback after a wait sees the time its bytes arrived, and the others of
 * the same loop turn, microseconds later, reuse it); returns the cached time.
 */
lv_usec_t lv_time_refresh(void);
/* Wall-clock time in microseconds since the epoch (not cached). */
lv_usec_t lv_time_wall_us(void);

#endif
