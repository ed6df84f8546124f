/* SPDX-License-Identifier: ISC */
/*
 * Fake core/time.c for unit tests: the clock is a variable the test sets
 * (see fake_time.h). lv_time_update() does not move it, so a test controls
 * every timeout exactly. No state beyond one static; single-threaded.
 */
#include "core/time.h"
#include "fake_time.h"

static lv_usec_t fake_now = LV_FAKE_TIME_START_US;

void lv_fake_time_set(lv_usec_t us)
{
	fake_now = us;
}

void lv_fake_time_advance(lv_usec_t us)
{
	fake_now += us;
}

lv_usec_t lv_time_now_us(void)
{
	return fake_now;
}

lv_usec_t lv_time_update(void)
{
	return fake_now;
}

void lv_time_mark_stale(void)
{
}

lv_usec_t lv_time_refresh(void)
{
	return fake_now;
}

lv_usec_t lv_time_wall_us(void)
{
	return LV_FAKE_TIME_WALL_BASE_US + fake_now;
}
