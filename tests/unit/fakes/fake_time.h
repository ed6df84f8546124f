/* SPDX-License-Identifier: ISC */
/*
 * Settable clock for unit tests. A test that links tests/unit/fakes/time.c
 * (first line: levee-test-deps: tests/unit/fakes/time.c) gets core/time.h
 * served from these values instead of the system clocks. The monotonic clock
 * starts at LV_FAKE_TIME_START_US and moves only when a test moves it;
 * lv_time_wall_us() is LV_FAKE_TIME_WALL_BASE_US plus the monotonic value.
 * Single-threaded, like the tests that use it.
 */
#ifndef LEVEE_TESTS_FAKE_TIME_H
#define LEVEE_TESTS_FAKE_TIME_H

#include "core/time.h"

/* One second: not zero, so code that treats 0 as "unset" behaves as in production. */
#define LV_FAKE_TIME_START_US 1000000LL
/* 2023-11-14 22:13:20 UTC, an arbitrary fixed wall-clock origin. */
#define LV_FAKE_TIME_WALL_BASE_US 1700000000000000LL

/* Sets the monotonic clock to us. */
void lv_fake_time_set(lv_usec_t us);
/* Moves the monotonic clock forward by us (negative values move it back). */
void lv_fake_time_advance(lv_usec_t us);

#endif
