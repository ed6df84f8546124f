/* levee-test-deps: tests/unit/fakes/time.c */
/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for cache/policy.c: jitter bounds and spread, the freshness
 * timeline driven by the fake clock, XFetch's probability growing towards
 * expiry and with beta, and the random helpers.
 */
#include "core/lv.h"
#include "cache/policy.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "fakes/fake_time.h"

static void test_jitter_bounds(void **state)
{
	(void)state;
	/* No jitter: exact. */
	assert_int_equal(lv_cache_jittered_ttl_ms(30000, 0, 12345), 30000);
	/* Extremes of rnd land on the window's ends. */
	assert_int_equal(lv_cache_jittered_ttl_ms(1000, 10, 0), 900);
	assert_int_equal(lv_cache_jittered_ttl_ms(1000, 10, 200), 1100);
	assert_int_equal(lv_cache_jittered_ttl_ms(1000, 10, 201), 900);
	/* Never below 1 ms. */
	assert_int_equal(lv_cache_jittered_ttl_ms(0, 10, 5), 1);
	assert_int_equal(lv_cache_jittered_ttl_ms(-5, 10, 5), 1);
	assert_int_equal(lv_cache_jittered_ttl_ms(1, 100, 0), 1);
	assert_int_equal(lv_cache_jittered_ttl_ms(10, 100, 0), 1);
	/* Percent is clamped. */
	assert_int_equal(lv_cache_jittered_ttl_ms(1000, -3, 77), 1000);
	int64_t v = lv_cache_jittered_ttl_ms(1000, 500, 1999);
	assert_true(v >= 1 && v <= 2000);
	/* Huge TTLs do not overflow. */
	v = lv_cache_jittered_ttl_ms(INT64_MAX, 10, UINT64_MAX);
	assert_true(v > 0);
}

static void test_jitter_spread(void **state)
{
	(void)state;
	uint64_t rs = 42;
	int buckets[10] = {0};
	int64_t lo = INT64_MAX, hi = 0;
	for (int i = 0; i < 1000; i++) {
		int64_t v = lv_cache_jittered_ttl_ms(30000, 10, lv_cache_rand(&rs));
		assert_true(v >= 27000 && v <= 33000);
		lo = LV_MIN(lo, v);
		hi = LV_MAX(hi, v);
		buckets[LV_MIN((v - 27000) / 600, 9)]++;
	}
	/* The samples cover the window: near both ends, and every tenth of it. */
	assert_true(lo < 27300);
	assert_true(hi > 32700);
	for (int b = 0; b < 10; b++)
		assert_true(buckets[b] > 50 && buckets[b] < 150);
}

static void test_freshness_timeline(void **state)
{
	(void)state;
	lv_fake_time_set(LV_FAKE_TIME_START_US);
	lv_cache_times_t t;
	lv_cache_times_make(&t, lv_time_now_us(), 30000, 60000, 5000);
	assert_int_equal(t.filled_us, LV_FAKE_TIME_START_US);
	assert_int_equal(t.expires_us, LV_FAKE_TIME_START_US + 30 * LV_USEC_PER_SEC);
	assert_int_equal(t.stale_until_us, t.expires_us + 60 * LV_USEC_PER_SEC);
	assert_int_equal(t.fill_cost_us, 5000);

	assert_int_equal(lv_cache_freshness(&t, lv_time_now_us()), LV_CACHE_FRESH);
	lv_fake_time_advance(30 * LV_USEC_PER_SEC - 1);
	assert_int_equal(lv_cache_freshness(&t, lv_time_now_us()), LV_CACHE_FRESH);
	lv_fake_time_advance(1);
	assert_int_equal(lv_cache_freshness(&t, lv_time_now_us()), LV_CACHE_STALE);
	lv_fake_time_advance(60 * LV_USEC_PER_SEC - 1);
	assert_int_equal(lv_cache_freshness(&t, lv_time_now_us()), LV_CACHE_STALE);
	lv_fake_time_advance(1);
	assert_int_equal(lv_cache_freshness(&t, lv_time_now_us()), LV_CACHE_EXPIRED);

	/* swr 0: straight from fresh to expired. */
	lv_cache_times_make(&t, lv_time_now_us(), 1000, 0, 0);
	lv_fake_time_advance(999 * LV_USEC_PER_MS);
	assert_int_equal(lv_cache_freshness(&t, lv_time_now_us()), LV_CACHE_FRESH);
	lv_fake_time_advance(LV_USEC_PER_MS);
	assert_int_equal(lv_cache_freshness(&t, lv_time_now_us()), LV_CACHE_EXPIRED);
	/* Negative inputs are clamped. */
	lv_cache_times_make(&t, 100, -5, -5, -5);
	assert_int_equal(t.expires_us, 100);
	assert_int_equal(t.stale_until_us, 100);
	assert_int_equal(t.fill_cost_us, 0);
}

/* Share of 2,000 draws for which XFetch says "refresh now". */
static double xfetch_rate(lv_usec_t now, lv_usec_t expires, lv_usec_t delta, double beta)
{
	uint64_t rs = 7;
	int yes = 0;
	for (int i = 0; i < 2000; i++)
		yes += lv_cache_xfetch(now, expires, delta, beta, lv_cache_u01(lv_cache_rand(&rs)));
	return yes / 2000.0;
}

static void test_xfetch(void **state)
{
	(void)state;
	const lv_usec_t ex = 100 * LV_USEC_PER_SEC, delta = 1 * LV_USEC_PER_SEC;
	/* beta 0: never. */
	assert_false(lv_cache_xfetch(ex - 1, ex, delta, 0.0, 1e-300));
	assert_false(lv_cache_xfetch(ex + 1, ex, delta, 0.0, 0.5));
	assert_false(lv_cache_xfetch(ex, ex, delta, NAN, 0.5));
	/* Past expiry with beta > 0: always. */
	assert_true(lv_cache_xfetch(ex, ex, delta, 1.0, 1.0));
	/* u = 1: -ln u = 0, so only at expiry. */
	assert_false(lv_cache_xfetch(ex - 1, ex, delta, 1.0, 1.0));
	/* Exact rule: refresh when delta*beta*(-ln u) >= expires - now. */
	double u = exp(-2.0); /* -ln u = 2 */
	assert_true(lv_cache_xfetch(ex - 2 * delta, ex, delta, 1.0, u));
	assert_false(lv_cache_xfetch(ex - 2 * delta - 1000, ex, delta, 1.0, u));
	assert_true(lv_cache_xfetch(ex - 4 * delta + 1000, ex, delta, 2.0, u));
	/* u <= 0 is treated as the smallest value: refresh very early, no crash. */
	assert_true(lv_cache_xfetch(0, ex, delta, 1.0, 0.0));

	/* Probability: P = exp(-(expires - now) / (delta * beta)). */
	double far = xfetch_rate(ex - 5 * delta, ex, delta, 1.0);   /* ~0.0067 */
	double mid = xfetch_rate(ex - 1 * delta, ex, delta, 1.0);   /* ~0.37 */
	double near = xfetch_rate(ex - delta / 10, ex, delta, 1.0); /* ~0.90 */
	assert_true(far < 0.03);
	assert_true(mid > 0.30 && mid < 0.44);
	assert_true(near > 0.85 && near < 0.95);
	/* A larger beta refreshes earlier. */
	double mid_b2 = xfetch_rate(ex - 1 * delta, ex, delta, 2.0); /* ~0.61 */
	assert_true(mid_b2 > 0.54 && mid_b2 < 0.68);
	/* A cheaper fill refreshes later. */
	assert_true(xfetch_rate(ex - 1 * delta, ex, delta / 10, 1.0) < 0.01);
}

static void test_random_helpers(void **state)
{
	(void)state;
	assert_true(lv_cache_u01(0) > 0.0);
	assert_true(lv_cache_u01(UINT64_MAX) <= 1.0);
	assert_true(lv_cache_u01(UINT64_MAX) == 1.0);
	uint64_t s1 = 1, s2 = 1;
	uint64_t a = lv_cache_rand(&s1);
	assert_int_equal(a, lv_cache_rand(&s2)); /* deterministic */
	assert_true(lv_cache_rand(&s1) != a);    /* advances */
	double sum = 0;
	uint64_t rs = 99;
	for (int i = 0; i < 10000; i++)
		sum += lv_cache_u01(lv_cache_rand(&rs));
	assert_true(fabs(sum / 10000 - 0.5) < 0.02);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jitter_bounds),      cmocka_unit_test(test_jitter_spread),
		cmocka_unit_test(test_freshness_timeline), cmocka_unit_test(test_xfetch),
		cmocka_unit_test(test_random_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
