/* SPDX-License-Identifier: ISC */
/* Unit tests for core/list.h: the intrusive list and the counted list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/list.h"

typedef struct item {
	int v;
	lv_list_t node;
} item_t;

/* Values of the list from head to tail into out; returns how many. */
static int values(const lv_list_t *head, int *out, int max)
{
	int n = 0;
	lv_list_t *pos;
	lv_list_for_each(pos, head) {
		assert_true(n < max);
		out[n++] = lv_container_of(pos, item_t, node)->v;
	}
	return n;
}

static void test_insert_and_iterate(void **state)
{
	lv_list_t head;
	item_t it[4];
	int got[8];
	lv_list_init(&head);
	assert_true(lv_list_empty(&head));
	assert_null(lv_list_first(&head));
	assert_int_equal(values(&head, got, 8), 0);

	for (int i = 0; i < 4; i++) {
		it[i].v = i;
		lv_list_init(&it[i].node);
	}
	lv_list_insert_tail(&head, &it[1].node);
	lv_list_insert_tail(&head, &it[2].node);
	lv_list_insert_head(&head, &it[0].node);
	lv_list_insert_tail(&head, &it[3].node);
	assert_false(lv_list_empty(&head));
	assert_ptr_equal(lv_list_first(&head), &it[0].node);
	assert_int_equal(values(&head, got, 8), 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(got[i], i);
	/* Backward links agree. */
	assert_ptr_equal(head.prev, &it[3].node);
	assert_ptr_equal(it[3].node.prev, &it[2].node);

	lv_list_unlink(&it[2].node);
	assert_ptr_equal(it[2].node.next, &it[2].node); /* points at itself */
	lv_list_unlink(&it[2].node);                    /* harmless twice */
	assert_int_equal(values(&head, got, 8), 3);
	assert_int_equal(got[0], 0);
	assert_int_equal(got[1], 1);
	assert_int_equal(got[2], 3);
}

static void test_for_each_safe_unlink(void **state)
{
	lv_list_t head;
	item_t it[6];
	int got[8];
	lv_list_init(&head);
	for (int i = 0; i < 6; i++) {
		it[i].v = i;
		lv_list_insert_tail(&head, &it[i].node);
	}
	lv_list_t *pos, *tmp;
	lv_list_for_each_safe(pos, tmp, &head) {
		if (lv_container_of(pos, item_t, node)->v % 2 == 0)
			lv_list_unlink(pos);
	}
	assert_int_equal(values(&head, got, 8), 3);
	assert_int_equal(got[0], 1);
	assert_int_equal(got[1], 3);
	assert_int_equal(got[2], 5);
	lv_list_for_each_safe(pos, tmp, &head)
		lv_list_unlink(pos);
	assert_true(lv_list_empty(&head));
}

static void test_counted_list(void **state)
{
	lv_clist_t l;
	item_t it[3];
	int got[4];
	lv_clist_init(&l);
	assert_int_equal(l.n, 0);
	assert_null(lv_clist_pop(&l));

	for (int i = 0; i < 3; i++)
		it[i].v = i;
	lv_clist_append(&l, &it[1].node);
	lv_clist_append(&l, &it[2].node);
	lv_clist_prepend(&l, &it[0].node);
	assert_int_equal(l.n, 3);
	assert_int_equal(values(&l.head, got, 4), 3);
	assert_int_equal(got[0], 0);
	assert_int_equal(got[2], 2);

	lv_clist_remove(&l, &it[1].node);
	assert_int_equal(l.n, 2);
	assert_ptr_equal(lv_clist_pop(&l), &it[0].node);
	assert_ptr_equal(lv_clist_pop(&l), &it[2].node);
	assert_int_equal(l.n, 0);
	assert_null(lv_clist_pop(&l));
	assert_true(lv_list_empty(&l.head));
}

/* Moving a node between counted lists keeps both counts right. */
static void test_move_between_lists(void **state)
{
	lv_clist_t idle, active;
	item_t it[2];
	lv_clist_init(&idle);
	lv_clist_init(&active);
	lv_clist_append(&idle, &it[0].node);
	lv_clist_append(&idle, &it[1].node);
	lv_clist_remove(&idle, &it[0].node);
	lv_clist_append(&active, &it[0].node);
	assert_int_equal(idle.n, 1);
	assert_int_equal(active.n, 1);
	assert_ptr_equal(lv_list_first(&active.head), &it[0].node);
	assert_ptr_equal(lv_list_first(&idle.head), &it[1].node);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_insert_and_iterate),
		cmocka_unit_test(test_for_each_safe_unlink),
		cmocka_unit_test(test_counted_list),
		cmocka_unit_test(test_move_between_lists),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
