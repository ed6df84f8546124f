/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for core/buf.c: appends and growth, big-endian writers and
 * readers, printf, patching, consuming and compacting, shrink.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/buf.h"

static void test_init_cleanup(void **state)
{
	lv_buf_t b;
	lv_buf_init(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	assert_int_equal(lv_buf_unread(&b), 0);
	/* An empty append allocates nothing. */
	assert_true(lv_buf_append(&b, "", 0));
	assert_null(b.data);
	lv_buf_cleanup(&b);
	lv_buf_cleanup(&b);
	assert_null(b.data);
}

static void test_append_and_grow(void **state)
{
	lv_buf_t b;
	lv_buf_init(&b);
	assert_true(lv_buf_append_str(&b, "abc"));
	assert_int_equal(b.len, 3);
	assert_int_equal(b.cap, 256);
	assert_memory_equal(b.data, "abc", 3);

	/* Many appends: capacity doubles and content survives each move. */
	for (int i = 0; i < 1000; i++)
		assert_true(lv_buf_put_u8(&b, (uint8_t)i));
	assert_int_equal(b.len, 1003);
	assert_int_equal(b.cap, 1024);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(b.data[3 + i], (uint8_t)i);

	/* A big reserve jumps straight to a large enough power of two. */
	assert_true(lv_buf_reserve(&b, 5000));
	assert_int_equal(b.cap, 8192);
	assert_int_equal(b.len, 1003);

	/* Absurd reservations fail without touching the buffer. */
	assert_false(lv_buf_reserve(&b, SIZE_MAX - 10));
	assert_int_equal(b.cap, 8192);
	assert_int_equal(b.len, 1003);

	lv_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 8192);
	lv_buf_cleanup(&b);
}

static void test_cstr_and_ints(void **state)
{
	lv_buf_t b;
	lv_buf_init(&b);
	assert_true(lv_buf_append_cstr(&b, "user"));
	assert_true(lv_buf_put_u16(&b, 0x0102));
	assert_true(lv_buf_put_u32(&b, 0x03040506));
	assert_true(lv_buf_put_u32(&b, 0xfffffffe));
	static const uint8_t want[] = {'u', 's', 'e', 'r',  0,    1,    2,   3,
				       4,   5,   6,   0xff, 0xff, 0xff, 0xfe};
	assert_int_equal(b.len, sizeof(want));
	assert_memory_equal(b.data, want, sizeof(want));
	assert_int_equal(lv_get_u16(b.data + 5), 0x0102);
	assert_int_equal(lv_get_u32(b.data + 7), 0x03040506);
	assert_int_equal(lv_get_u32(b.data + 11), 0xfffffffe);

	lv_buf_patch_u32(&b, 7, 0xa0b0c0d0);
	assert_int_equal(lv_get_u32(b.data + 7), 0xa0b0c0d0);
	assert_int_equal(b.data[6], 2);
	assert_int_equal(b.data[11], 0xff);

	uint8_t raw[4];
	lv_set_u32(raw, 0x11223344);
	assert_int_equal(raw[0], 0x11);
	assert_int_equal(raw[3], 0x44);
	lv_buf_cleanup(&b);
}

static void test_printf(void **state)
{
	lv_buf_t b;
	lv_buf_init(&b);
	assert_true(lv_buf_printf(&b, "%s=%d", "n", 42));
	assert_true(lv_buf_printf(&b, "%s", ""));
	assert_int_equal(b.len, 4);
	assert_memory_equal(b.data, "n=42", 4);

	/* Longer than the first allocation: grows and keeps earlier content. */
	char big[600];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_true(lv_buf_printf(&b, ";%s;", big));
	assert_int_equal(b.len, 4 + 1 + 599 + 1);
	assert_memory_equal(b.data, "n=42;xxx", 8);
	assert_int_equal(b.data[b.len - 1], ';');
	lv_buf_cleanup(&b);
}

static void test_consume_compact(void **state)
{
	lv_buf_t b;
	lv_buf_init(&b);
	assert_true(lv_buf_append_str(&b, "0123456789"));
	lv_buf_consume(&b, 4);
	assert_int_equal(lv_buf_unread(&b), 6);
	assert_memory_equal(lv_buf_head(&b), "456789", 6);

	lv_buf_compact(&b);
	assert_int_equal(b.pos, 0);
	assert_int_equal(b.len, 6);
	assert_memory_equal(b.data, "456789", 6);
	lv_buf_compact(&b); /* no-op at pos 0 */
	assert_int_equal(b.len, 6);

	/* Consuming everything rewinds to an empty buffer. */
	lv_buf_consume(&b, 6);
	assert_int_equal(b.pos, 0);
	assert_int_equal(b.len, 0);
	lv_buf_cleanup(&b);
}

static void test_reserve_compacts(void **state)
{
	lv_buf_t b;
	lv_buf_init(&b);
	uint8_t block[200];
	memset(block, 'a', sizeof(block));
	assert_true(lv_buf_append(&b, block, 200));
	assert_int_equal(b.cap, 256);
	lv_buf_consume(&b, 150);
	/* 50 unread; 100 more fit if the unread bytes move to the front. */
	assert_true(lv_buf_reserve(&b, 100));
	assert_int_equal(b.cap, 256);
	assert_int_equal(b.pos, 0);
	assert_int_equal(b.len, 50);
	assert_true(lv_buf_append(&b, "tail", 4));
	assert_memory_equal(b.data + 50, "tail", 4);
	lv_buf_cleanup(&b);
}

static void test_shrink(void **state)
{
	lv_buf_t b;
	lv_buf_init(&b);
	uint8_t block[3000] = {0};
	assert_true(lv_buf_append(&b, block, sizeof(block)));
	lv_buf_shrink(&b, 1024); /* not empty: kept */
	assert_non_null(b.data);
	lv_buf_consume(&b, sizeof(block));
	lv_buf_shrink(&b, 8192); /* small enough: kept */
	assert_non_null(b.data);
	lv_buf_shrink(&b, 1024); /* empty and large: freed */
	assert_null(b.data);
	assert_int_equal(b.cap, 0);
	lv_buf_cleanup(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_cleanup),    cmocka_unit_test(test_append_and_grow),
		cmocka_unit_test(test_cstr_and_ints),   cmocka_unit_test(test_printf),
		cmocka_unit_test(test_consume_compact), cmocka_unit_test(test_reserve_compacts),
		cmocka_unit_test(test_shrink),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
