/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for core/arena.c: alignment, chaining, large blocks, reset
 * keeping the first block, counters, and failure under OOM. Valgrind
 * (make valgrind-unit) checks that reset and cleanup free what they should.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/arena.h"
#include "core/mem.h"

static int n_mallocs;
static bool count_mallocs(size_t n)
{
	(void)n;
	n_mallocs++;
	return false;
}

static bool fail_always(size_t n)
{
	(void)n;
	return true;
}

static void test_init_allocates_nothing(void **state)
{
	lv_arena_t a;
	lv_arena_init(&a, 100);
	assert_int_equal(a.block_size, LV_ARENA_MIN_BLOCK);
	assert_int_equal(a.n_bytes, 0);
	assert_int_equal(a.n_held, 0);
	lv_arena_reset(&a);
	lv_arena_cleanup(&a);
	lv_arena_cleanup(&a);
	assert_int_equal(a.n_held, 0);

	lv_arena_init(&a, 1001);
	assert_int_equal(a.block_size, 1008);
	lv_arena_cleanup(&a);
}

static void test_alignment_and_bump(void **state)
{
	lv_arena_t a;
	lv_arena_init(&a, 4096);
	char *prev = NULL;
	for (size_t n = 0; n < 40; n++) {
		char *p = lv_arena_alloc(&a, n);
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % LV_ARENA_ALIGN, 0);
		memset(p, 0xab, n);
		if (prev)
			assert_true(p > prev); /* same block: bumped forward */
		prev = p;
	}
	/* Sizes are rounded to 8, and a 0-byte request still takes 8. */
	size_t want = 0;
	for (size_t n = 0; n < 40; n++)
		want += n == 0 ? 8 : (n + 7) / 8 * 8;
	assert_int_equal(a.n_bytes, want);
	assert_int_equal(a.high_water, want);
	lv_arena_cleanup(&a);
}

static void test_chaining_and_reset(void **state)
{
	lv_arena_t a;
	lv_arena_init(&a, 1024);
	n_mallocs = 0;
	lv_mem_set_fail_hook(count_mallocs);

	/* 100 * 200 bytes over 1024-byte blocks: 5 per block, 20 blocks. */
	char *ptrs[100];
	for (int i = 0; i < 100; i++) {
		ptrs[i] = lv_arena_alloc(&a, 200);
		assert_non_null(ptrs[i]);
		memset(ptrs[i], i, 200);
	}
	assert_int_equal(n_mallocs, 20);
	for (int i = 0; i < 100; i++)
		for (int k = 0; k < 200; k++)
			assert_int_equal((uint8_t)ptrs[i][k], i);
	assert_int_equal(a.n_bytes, 20000);
	size_t held = a.n_held;
	assert_true(held >= 20 * 1024);

	lv_arena_reset(&a);
	assert_int_equal(a.n_bytes, 0);
	assert_int_equal(a.high_water, 20000);
	assert_true(a.n_held < held);
	assert_true(a.n_held >= 1024 && a.n_held < 2048);

	/* The kept block serves the next cycle without a malloc. */
	n_mallocs = 0;
	for (int i = 0; i < 5; i++)
		assert_non_null(lv_arena_alloc(&a, 200));
	assert_int_equal(n_mallocs, 0);
	assert_non_null(lv_arena_alloc(&a, 200));
	assert_int_equal(n_mallocs, 1);
	lv_arena_reset(&a);
	assert_int_equal(a.high_water, 20000);

	lv_mem_set_fail_hook(NULL);
	lv_arena_cleanup(&a);
	assert_int_equal(a.n_held, 0);
	assert_int_equal(a.high_water, 20000);
}

static void test_large_allocations(void **state)
{
	lv_arena_t a;
	lv_arena_init(&a, 1024);
	char *small = lv_arena_alloc(&a, 16);
	assert_non_null(small);
	size_t held = a.n_held;

	/* A request that fits in the current block is served from it. */
	char *mid = lv_arena_alloc(&a, 300);
	assert_ptr_equal(mid, small + 16);
	assert_int_equal(a.n_held, held);

	/* One that does not, and is over a quarter block, gets a block of its own... */
	char *big = lv_arena_alloc(&a, 800);
	assert_non_null(big);
	memset(big, 1, 800);
	assert_true(a.n_held >= held + 800);
	/* ...and the current block keeps filling. */
	char *small2 = lv_arena_alloc(&a, 16);
	assert_ptr_equal(small2, small + 16 + 304);

	/* Much bigger than a block works too. */
	char *huge = lv_arena_alloc(&a, 100000);
	assert_non_null(huge);
	memset(huge, 2, 100000);
	assert_int_equal((uintptr_t)huge % LV_ARENA_ALIGN, 0);

	lv_arena_reset(&a);
	assert_int_equal(a.n_held, held); /* large blocks are gone, the first block stays */
	assert_int_equal(a.high_water, 16 + 304 + 800 + 16 + 100000);

	/* A large first allocation does not become the kept block. */
	lv_arena_cleanup(&a);
	assert_non_null(lv_arena_alloc(&a, 5000));
	lv_arena_reset(&a);
	assert_int_equal(a.n_held, 0);

	/* Absurd sizes fail instead of overflowing. */
	assert_null(lv_arena_alloc(&a, SIZE_MAX));
	assert_null(lv_arena_alloc(&a, SIZE_MAX - 8));
	assert_null(lv_arena_strndup(&a, "x", SIZE_MAX));
	lv_arena_cleanup(&a);
}

static void test_string_helpers(void **state)
{
	lv_arena_t a;
	lv_arena_init(&a, 512);
	char *s = lv_arena_strdup(&a, "hello");
	assert_string_equal(s, "hello");
	char *t = lv_arena_strndup(&a, "abcdef", 3);
	assert_string_equal(t, "abc");
	char *e = lv_arena_strdup(&a, "");
	assert_string_equal(e, "");
	int v[4] = {1, 2, 3, 4};
	int *d = lv_arena_memdup(&a, v, sizeof(v));
	assert_memory_equal(d, v, sizeof(v));
	uint8_t *z = lv_arena_zalloc(&a, 64);
	for (int i = 0; i < 64; i++)
		assert_int_equal(z[i], 0);
	assert_string_equal(s, "hello"); /* earlier strings are untouched */
	lv_arena_cleanup(&a);
}

static void test_oom(void **state)
{
	lv_arena_t a;
	lv_arena_init(&a, 512);
	lv_mem_set_fail_hook(fail_always);
	assert_null(lv_arena_alloc(&a, 8));
	assert_null(lv_arena_alloc(&a, 5000));
	assert_null(lv_arena_strdup(&a, "x"));
	assert_null(lv_arena_zalloc(&a, 10));
	assert_null(lv_arena_memdup(&a, "abc", 3));
	assert_int_equal(a.n_bytes, 0);
	assert_int_equal(a.n_held, 0);
	lv_mem_set_fail_hook(NULL);

	/* With a block in place, OOM only hits requests that need a new one. */
	assert_non_null(lv_arena_alloc(&a, 8));
	lv_mem_set_fail_hook(fail_always);
	assert_non_null(lv_arena_alloc(&a, 8));
	assert_null(lv_arena_alloc(&a, 500));
	assert_int_equal(a.n_bytes, 16);
	lv_mem_set_fail_hook(NULL);
	lv_arena_cleanup(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_allocates_nothing),
		cmocka_unit_test(test_alignment_and_bump),
		cmocka_unit_test(test_chaining_and_reset),
		cmocka_unit_test(test_large_allocations),
		cmocka_unit_test(test_string_helpers),
		cmocka_unit_test(test_oom),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
