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
/* Wall-clock time in microseconds since the epoch (not cached). */
lv_usec_t lv_time_wall_us(void);

#endif
