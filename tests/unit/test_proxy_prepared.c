/* SPDX-License-Identifier: ISC */
/* Unit tests for proxy/prepared.c: statement registry, name maps, server sets, response queues. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "proxy/prepared.h"

static void test_registry_shares_and_frees(void **state)
{
	lv_pstmt_reg_t reg;
	lv_pstmt_reg_init(&reg, 3);
	const uint8_t types[4] = {0, 0, 0, 23};
	lv_pstmt_t *a = lv_pstmt_get(&reg, "select $1", 9, types, 1);
	lv_pstmt_t *b = lv_pstmt_get(&reg, "select $1", 9, types, 1);
	lv_pstmt_t *c = lv_pstmt_get(&reg, "select $1", 9, NULL, 0);
	assert_non_null(a);
	assert_ptr_equal(a, b);
	assert_ptr_not_equal(a, c); /* other parameter types: another statement */
	assert_string_equal(a->name, "lv3_1");
	assert_string_equal(c->name, "lv3_2");
	assert_int_equal(a->refs, 2);
	assert_int_equal(a->oids[0], 23);
	assert_int_equal(reg.n, 2);
	lv_pstmt_put(&reg, a);
	lv_pstmt_put(&reg, b);
	assert_int_equal(reg.n, 1);
	lv_pstmt_put(&reg, c);
	assert_int_equal(reg.n, 0);
	/* Many statements grow the table. */
	lv_pstmt_t *many[600];
	char q[32];
	for (int i = 0; i < 600; i++) {
		snprintf(q, sizeof(q), "select %d", i);
		many[i] = lv_pstmt_get(&reg, q, strlen(q), NULL, 0);
		assert_non_null(many[i]);
	}
	snprintf(q, sizeof(q), "select %d", 599);
	lv_pstmt_t *again = lv_pstmt_get(&reg, q, strlen(q), NULL, 0);
	assert_ptr_equal(again, many[599]);
	lv_pstmt_put(&reg, again);
	for (int i = 0; i < 600; i++)
		lv_pstmt_put(&reg, many[i]);
	assert_int_equal(reg.n, 0);
	lv_pstmt_reg_cleanup(&reg);
}

/* The longest name fits: the last worker and the largest id. */
static void test_server_name_bounds(void **state)
{
	lv_pstmt_reg_t reg;
	lv_pstmt_reg_init(&reg, 63);
	reg.next_id = UINT64_MAX - 1;
	lv_pstmt_t *a = lv_pstmt_get(&reg, "select 1", 8, NULL, 0);
	assert_non_null(a);
	assert_string_equal(a->name, "lv63_18446744073709551615");
	reg.next_id = 9;
	lv_pstmt_t *b = lv_pstmt_get(&reg, "select 2", 8, NULL, 0);
	assert_non_null(b);
	assert_string_equal(b->name, "lv63_10");
	lv_pstmt_put(&reg, a);
	lv_pstmt_put(&reg, b);
	lv_pstmt_reg_cleanup(&reg);
}

static void test_map_and_set(void **state)
{
	lv_pstmt_reg_t reg;
	lv_pstmt_reg_init(&reg, 0);
	lv_pstmt_map_t m = {0};
	lv_pstmt_set_t s = {0};
	lv_pstmt_t *x = lv_pstmt_get(&reg, "x", 1, NULL, 0);
	lv_pstmt_t *y = lv_pstmt_get(&reg, "y", 1, NULL, 0);
	assert_true(lv_pstmt_map_set(&reg, &m, "s1", x));
	assert_true(lv_pstmt_map_set(&reg, &m, "s2", y));
	assert_ptr_equal(lv_pstmt_map_get(&m, "s1"), x);
	assert_null(lv_pstmt_map_get(&m, "s3"));
	assert_true(lv_pstmt_set_add(&s, x));
	assert_true(lv_pstmt_set_add(&s, y));
	assert_true(lv_pstmt_set_has(&s, x)); /* x is now the most recently used */
	assert_ptr_equal(lv_pstmt_set_lru(&s, NULL), y);
	assert_ptr_equal(lv_pstmt_set_lru(&s, y), x);
	lv_pstmt_set_del(&reg, &s, y);
	assert_false(lv_pstmt_set_has(&s, y));
	/* Replacing a name drops the old statement's reference. */
	lv_pstmt_t *z = lv_pstmt_get(&reg, "z", 1, NULL, 0);
	assert_true(lv_pstmt_map_set(&reg, &m, "s2", z));
	assert_int_equal(reg.n, 2); /* y is gone: no map, set or queue holds it */
	lv_pstmt_map_del(&reg, &m, "s1");
	assert_int_equal(x->refs, 1); /* still on the server */
	lv_pstmt_set_clear(&reg, &s);
	lv_pstmt_map_clear(&reg, &m);
	assert_int_equal(reg.n, 0);
	lv_pstmt_reg_cleanup(&reg);
}

static void test_response_queue(void **state)
{
	lv_pstmt_reg_t reg;
	lv_pstmt_reg_init(&reg, 0);
	lv_respq_t q = {0};
	lv_pstmt_t *p = lv_pstmt_get(&reg, "q", 1, NULL, 0);
	/* Wraps around and grows while keeping order. */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 40; i++)
			assert_true(lv_respq_push(&q, i % 2 ? 'B' : 'P', LV_RESP_PASS, i % 2 ? NULL : p));
		for (int i = 0; i < 40; i++) {
			assert_int_equal(lv_respq_head(&q)->kind, i % 2 ? 'B' : 'P');
			lv_respq_pop(&reg, &q);
		}
	}
	assert_null(lv_respq_head(&q));
	assert_int_equal(p->refs, 1);
	assert_true(lv_respq_push(&q, 'S', LV_RESP_PASS, p));
	lv_pstmt_put(&reg, p);
	lv_respq_cleanup(&reg, &q); /* drops the last reference */
	assert_int_equal(reg.n, 0);
	lv_pstmt_reg_cleanup(&reg);
}

static void test_last_response(void **state)
{
	assert_true(lv_resp_is_last('P', '1'));
	assert_true(lv_resp_is_last('B', '2'));
	assert_true(lv_resp_is_last('C', '3'));
	assert_false(lv_resp_is_last('D', 't')); /* ParameterDescription comes first */
	assert_true(lv_resp_is_last('D', 'T'));
	assert_true(lv_resp_is_last('D', 'n'));
	assert_false(lv_resp_is_last('E', 'D'));
	assert_false(lv_resp_is_last('E', 'G')); /* COPY: CommandComplete ends it */
	assert_true(lv_resp_is_last('E', 'C'));
	assert_true(lv_resp_is_last('E', 's'));
	assert_true(lv_resp_is_last('E', 'I'));
	assert_true(lv_resp_is_last('S', 'Z'));
	assert_false(lv_resp_is_last('Q', 'C'));
	assert_true(lv_resp_is_last('Q', 'Z'));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry_shares_and_frees),
		cmocka_unit_test(test_server_name_bounds),
		cmocka_unit_test(test_map_and_set),
		cmocka_unit_test(test_response_queue),
		cmocka_unit_test(test_last_response),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
