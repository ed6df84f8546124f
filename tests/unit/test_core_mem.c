/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for core/mem.c: the allocation wrappers and the failure hook
 * that the rest of the unit tests use to inject OOM, including that an
 * lv_buf_t append fails cleanly and leaves the buffer as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/mem.h"

static size_t last_request;
static int n_calls;
static bool fail_all(size_t n)
{
	last_request = n;
	n_calls++;
	return true;
}

static void test_wrappers(void **state)
{
	char *p = lv_malloc(16);
	assert_non_null(p);
	memset(p, 1, 16);
	p = lv_realloc(p, 4096);
	assert_non_null(p);
	assert_int_equal(p[15], 1);
	lv_free(p);
	lv_free(NULL);

	int *z = lv_calloc(8, sizeof(int));
	assert_non_null(z);
	for (int i = 0; i < 8; i++)
		assert_int_equal(z[i], 0);
	lv_free(z);

	char *s = lv_strdup("levee");
	assert_string_equal(s, "levee");
	lv_free(s);
	s = lv_strndup("levee", 3);
	assert_string_equal(s, "lev");
	lv_free(s);

	/* Zero-byte requests return a freeable pointer, not NULL. */
	p = lv_malloc(0);
	assert_non_null(p);
	lv_free(p);

	s = lv_xstrdup("x");
	assert_string_equal(s, "x");
	p = lv_xmalloc(10);
	p = lv_xrealloc(p, 20);
	z = lv_xcalloc(2, sizeof(int));
	assert_int_equal(z[1], 0);
	lv_free(s);
	lv_free(p);
	lv_free(z);
}

static void test_fail_hook(void **state)
{
	n_calls = 0;
	lv_mem_set_fail_hook(fail_all);
	assert_null(lv_malloc(100));
	assert_int_equal(last_request, 100);
	assert_null(lv_calloc(4, 25));
	assert_int_equal(last_request, 100);
	assert_null(lv_strdup("abc"));
	assert_null(lv_strndup("abc", 2));

	/* A failed realloc leaves the old block alive and unchanged. */
	lv_mem_set_fail_hook(NULL);
	char *p = lv_malloc(8);
	assert_non_null(p);
	memcpy(p, "1234567", 8);
	lv_mem_set_fail_hook(fail_all);
	assert_null(lv_realloc(p, 1 << 20));
	assert_string_equal(p, "1234567");

	/* The x-variants ignore the hook: they are for startup, where OOM aborts. */
	char *x = lv_xmalloc(8);
	assert_non_null(x);
	lv_mem_set_fail_hook(NULL);
	assert_int_equal(n_calls, 5);
	lv_free(x);
	lv_free(p);
}

/* OOM during an append fails that append only, with the buffer unchanged. */
static void test_buf_append_oom(void **state)
{
	lv_buf_t b;
	lv_buf_init(&b);

	/* First allocation fails: buffer stays empty and unallocated. */
	lv_mem_set_fail_hook(fail_all);
	assert_false(lv_buf_append(&b, "abc", 3));
	assert_false(lv_buf_printf(&b, "%d", 5));
	assert_false(lv_buf_put_u32(&b, 1));
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	lv_mem_set_fail_hook(NULL);

	/* Growth fails: content, length, capacity and read position unchanged. */
	uint8_t fill[200];
	memset(fill, 'f', sizeof(fill));
	assert_true(lv_buf_append(&b, fill, sizeof(fill)));
	lv_buf_consume(&b, 10);
	uint8_t *data = b.data;
	size_t len = b.len, cap = b.cap, pos = b.pos;
	uint8_t big[1000];
	memset(big, 'g', sizeof(big));

	lv_mem_set_fail_hook(fail_all);
	assert_false(lv_buf_append(&b, big, sizeof(big)));
	assert_false(lv_buf_reserve(&b, 5000));
	/* 56 bytes are free; this string is longer. */
	assert_false(
		lv_buf_append_str(&b, "a string that is longer than the free space of the buffer"));
	/* What fits in the free space needs no allocation and still works. */
	assert_true(lv_buf_append(&b, "ok", 2));
	lv_mem_set_fail_hook(NULL);

	assert_ptr_equal(b.data, data);
	assert_int_equal(b.len, len + 2);
	assert_int_equal(b.cap, cap);
	assert_int_equal(b.pos, pos);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(b.data[i], 'f');
	assert_memory_equal(b.data + len, "ok", 2);

	/* And once memory is back, the same append succeeds. */
	assert_true(lv_buf_append(&b, big, sizeof(big)));
	assert_int_equal(b.len, len + 2 + sizeof(big));
	lv_buf_cleanup(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wrappers),
		cmocka_unit_test(test_fail_hook),
		cmocka_unit_test(test_buf_append_oom),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
