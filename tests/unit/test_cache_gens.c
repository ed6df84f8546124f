/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for cache/gens.c: slot creation and normalisation, stable
 * pointers, bump/raise/epoch, for_each, snapshots (dedupe, limit, staleness
 * after a bump), OOM, and four threads creating and bumping the same slots.
 */
#include "core/lv.h"
#include "cache/gens.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "core/mem.h"

static void test_slot_create_find(void **state)
{
	(void)state;
	lv_cache_gens_t *g = lv_cache_gens_new();
	assert_non_null(g);
	assert_null(lv_cache_gens_find(g, "app", "posts"));
	lv_cache_gen_t *a = lv_cache_gens_slot(g, "app", "posts");
	assert_non_null(a);
	assert_string_equal(lv_cache_gen_table(a), "posts");
	assert_string_equal(lv_cache_gen_db(a), "app");
	assert_int_equal(lv_cache_gen_get(a), 0);
	/* Same slot for the same table however spelled; other db or table is another slot. */
	assert_ptr_equal(lv_cache_gens_slot(g, "app", "POSTS"), a);
	assert_ptr_equal(lv_cache_gens_slot(g, "app", "public.Posts"), a);
	assert_ptr_equal(lv_cache_gens_find(g, "app", "Posts"), a);
	lv_cache_gen_t *b = lv_cache_gens_slot(g, "other", "posts");
	lv_cache_gen_t *c = lv_cache_gens_slot(g, "app", "users");
	assert_non_null(b);
	assert_non_null(c);
	assert_ptr_not_equal(a, b);
	assert_ptr_not_equal(a, c);
	assert_int_equal(lv_cache_gens_count(g), 3);
	/* Bad names. */
	assert_null(lv_cache_gens_slot(g, "app", ""));
	assert_null(lv_cache_gens_slot(g, "", "t"));
	assert_null(lv_cache_gens_slot(g, "app", "public."));
	char longname[80];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_null(lv_cache_gens_slot(g, "app", longname));
	longname[63] = '\0';
	assert_non_null(lv_cache_gens_slot(g, "app", longname));
	lv_cache_gens_free(g);
	lv_cache_gens_free(NULL);
}

static void test_many_slots_stable(void **state)
{
	(void)state;
	lv_cache_gens_t *g = lv_cache_gens_new();
	lv_cache_gen_t *slots[5000];
	char name[32];
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		slots[i] = lv_cache_gens_slot(g, "db", name);
		assert_non_null(slots[i]);
		lv_cache_gen_raise(slots[i], (uint64_t)i);
	}
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "T%d", i);
		assert_ptr_equal(lv_cache_gens_find(g, "db", name), slots[i]);
		assert_int_equal(lv_cache_gen_get(slots[i]), i);
	}
	assert_int_equal(lv_cache_gens_count(g), 5000);
	lv_cache_gens_free(g);
}

static void test_bump_raise_epoch(void **state)
{
	(void)state;
	lv_cache_gens_t *g = lv_cache_gens_new();
	lv_cache_gen_t *s = lv_cache_gens_slot(g, "app", "posts");
	assert_int_equal(lv_cache_gen_bump(s), 1);
	assert_int_equal(lv_cache_gen_bump(s), 2);
	assert_int_equal(lv_cache_gen_get(s), 2);
	lv_cache_gen_raise(s, 1); /* lower: no change */
	assert_int_equal(lv_cache_gen_get(s), 2);
	lv_cache_gen_raise(s, 10);
	assert_int_equal(lv_cache_gen_get(s), 10);
	assert_int_equal(lv_cache_gen_bump(s), 11);
	assert_int_equal(lv_cache_gens_epoch(g), 0);
	assert_int_equal(lv_cache_gens_bump_epoch(g), 1);
	assert_int_equal(lv_cache_gens_epoch(g), 1);
	lv_cache_gens_free(g);
}

static void count_cb(lv_cache_gen_t *s, void *arg)
{
	uint64_t *sum = arg;
	*sum += lv_cache_gen_get(s);
	lv_cache_gen_bump(s);
}

static void test_for_each(void **state)
{
	(void)state;
	lv_cache_gens_t *g = lv_cache_gens_new();
	lv_cache_gen_raise(lv_cache_gens_slot(g, "a", "x"), 1);
	lv_cache_gen_raise(lv_cache_gens_slot(g, "a", "y"), 2);
	lv_cache_gen_raise(lv_cache_gens_slot(g, "b", "x"), 4);
	uint64_t sum = 0;
	lv_cache_gens_for_each(g, count_cb, &sum);
	assert_int_equal(sum, 7);
	sum = 0;
	lv_cache_gens_for_each(g, count_cb, &sum);
	assert_int_equal(sum, 10); /* each was bumped once by the first walk */
	lv_cache_gens_free(g);
}

static void test_snapshot(void **state)
{
	(void)state;
	lv_cache_gens_t *g = lv_cache_gens_new();
	lv_cache_gen_snapshot_t snap;
	lv_cache_gen_raise(lv_cache_gens_slot(g, "app", "posts"), 5);
	lv_cache_gen_snapshot_init(&snap, g);
	assert_true(lv_cache_gen_snapshot_add(&snap, g, "app", "posts"));
	assert_true(lv_cache_gen_snapshot_add(&snap, g, "app", "Posts")); /* dedupe */
	assert_true(lv_cache_gen_snapshot_add(&snap, g, "app", "users"));
	assert_int_equal(snap.n, 2);
	assert_int_equal(snap.pairs[0].gen, 5);
	assert_int_equal(snap.pairs[1].gen, 0);
	assert_true(lv_cache_gen_snapshot_is_current(&snap, g));
	/* A write to another table or db leaves it current. */
	lv_cache_gen_bump(lv_cache_gens_slot(g, "app", "comments"));
	lv_cache_gen_bump(lv_cache_gens_slot(g, "other", "posts"));
	assert_true(lv_cache_gen_snapshot_is_current(&snap, g));
	/* A write to one of its tables makes it stale. */
	lv_cache_gen_bump(lv_cache_gens_find(g, "app", "users"));
	assert_false(lv_cache_gen_snapshot_is_current(&snap, g));
	/* So does the epoch. */
	lv_cache_gen_snapshot_init(&snap, g);
	assert_true(lv_cache_gen_snapshot_add(&snap, g, "app", "users"));
	assert_true(lv_cache_gen_snapshot_is_current(&snap, g));
	lv_cache_gens_bump_epoch(g);
	assert_false(lv_cache_gen_snapshot_is_current(&snap, g));
	/* The limit. */
	lv_cache_gen_snapshot_init(&snap, g);
	char name[16];
	for (int i = 0; i < LV_CACHE_MAX_GENS; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		assert_true(lv_cache_gen_snapshot_add(&snap, g, "app", name));
	}
	assert_false(lv_cache_gen_snapshot_add(&snap, g, "app", "one_more"));
	assert_true(lv_cache_gen_snapshot_add(&snap, g, "app", "t3")); /* already in */
	lv_cache_gens_free(g);
}

static bool fail_all(size_t n)
{
	(void)n;
	return true;
}

static void test_oom(void **state)
{
	(void)state;
	lv_mem_set_fail_hook(fail_all);
	assert_null(lv_cache_gens_new());
	lv_mem_set_fail_hook(NULL);
	lv_cache_gens_t *g = lv_cache_gens_new();
	lv_cache_gen_t *a = lv_cache_gens_slot(g, "app", "a");
	lv_mem_set_fail_hook(fail_all);
	assert_null(lv_cache_gens_slot(g, "app", "b"));
	assert_ptr_equal(lv_cache_gens_slot(g, "app", "a"), a); /* existing: no allocation */
	lv_cache_gen_snapshot_t snap;
	lv_cache_gen_snapshot_init(&snap, g);
	assert_false(lv_cache_gen_snapshot_add(&snap, g, "app", "b"));
	lv_mem_set_fail_hook(NULL);
	assert_int_equal(lv_cache_gens_count(g), 1);
	lv_cache_gens_free(g);
}

#define N_THREADS 4
#define N_TABLES 64
#define N_ROUNDS 2048

static lv_cache_gens_t *shared;

static void *hammer(void *arg)
{
	(void)arg;
	char name[16];
	for (int r = 0; r < N_ROUNDS; r++) {
		snprintf(name, sizeof(name), "t%d", r % N_TABLES);
		lv_cache_gen_t *s = lv_cache_gens_slot(shared, "db", name);
		if (!s)
			return (void *)1;
		lv_cache_gen_bump(s);
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	shared = lv_cache_gens_new();
	pthread_t th[N_THREADS];
	for (int i = 0; i < N_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, hammer, NULL), 0);
	for (int i = 0; i < N_THREADS; i++) {
		void *rv;
		assert_int_equal(pthread_join(th[i], &rv), 0);
		assert_null(rv);
	}
	assert_int_equal(lv_cache_gens_count(shared), N_TABLES);
	char name[16];
	for (int t = 0; t < N_TABLES; t++) {
		snprintf(name, sizeof(name), "t%d", t);
		lv_cache_gen_t *s = lv_cache_gens_find(shared, "db", name);
		assert_non_null(s);
		assert_int_equal(lv_cache_gen_get(s), N_THREADS * N_ROUNDS / N_TABLES);
	}
	lv_cache_gens_free(shared);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slot_create_find), cmocka_unit_test(test_many_slots_stable),
		cmocka_unit_test(test_bump_raise_epoch), cmocka_unit_test(test_for_each),
		cmocka_unit_test(test_snapshot),         cmocka_unit_test(test_oom),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
