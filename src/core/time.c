/* SPDX-License-Identifier: ISC */
/* Monotonic clock cached per thread; see time.h. */
#include "core/time.h"

#include <time.h>

static _Thread_local lv_usec_t cached_now;
static _Thread_local bool stale;

lv_usec_t lv_time_update(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	cached_now = (lv_usec_t)ts.tv_sec * LV_USEC_PER_SEC + ts.tv_nsec / 1000;
	return cached_now;
}

void lv_time_mark_stale(void)
{
	stale = true;
}

lv_usec_t lv_time_refresh(void)
{
	if (!stale)
		return lv_time_now_us();
	stale = false;
	return lv_time_update();
}

lv_usec_t lv_time_now_us(void)
{
	if (lv_unlikely(cached_now == 0))
		return lv_time_update();
	return cached_now;
}

lv_usec_t lv_time_wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (lv_usec_t)ts.tv_sec * LV_USEC_PER_SEC + ts.tv_nsec / 1000;
}
