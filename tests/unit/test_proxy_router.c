/* levee-test-deps: src/sql/classify.c */
/* SPDX-License-Identifier: ISC */
/*
 * The routing policy as a decision table: each row is a statement, the
 * client's situation and the healthy replica count, and the decision
 * expected. Statements are classified by the real sql/classify.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "core/mem.h"
#include "proxy/router.h"

typedef struct row {
	const char *sql;
	bool ryw;
	int healthy;
	bool fallback_error;
	lv_route_target_t target;
	lv_route_reason_t reason;
} row_t;

#define P LV_TARGET_PRIMARY
#define R LV_TARGET_REPLICA
#define X LV_TARGET_ERROR

static const row_t table[] = {
	{"SELECT * FROM t WHERE id = 1", false, 2, false, R, LV_ROUTE_READ},
	{"select 1", false, 1, false, R, LV_ROUTE_READ},
	{"VALUES (1), (2)", false, 1, false, R, LV_ROUTE_READ},
	{"SHOW work_mem", false, 1, false, R, LV_ROUTE_READ},
	{"EXPLAIN SELECT * FROM t", false, 1, false, R, LV_ROUTE_READ},
	{"SELECT * FROM t FOR UPDATE", false, 2, false, P, LV_ROUTE_WRITE},
	{"SELECT * FROM t FOR SHARE", false, 2, false, P, LV_ROUTE_WRITE},
	{"SELECT nextval('s')", false, 2, false, P, LV_ROUTE_WRITE},
	{"SELECT pg_advisory_lock(1)", false, 2, false, P, LV_ROUTE_WRITE},
	{"WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", false, 2, false, P, LV_ROUTE_WRITE},
	{"INSERT INTO t VALUES (1)", false, 2, false, P, LV_ROUTE_WRITE},
	{"UPDATE t SET a = 1", false, 2, false, P, LV_ROUTE_WRITE},
	{"DELETE FROM t", false, 2, false, P, LV_ROUTE_WRITE},
	{"CREATE TABLE u (a int)", false, 2, false, P, LV_ROUTE_WRITE},
	{"SET search_path = a", false, 2, false, P, LV_ROUTE_WRITE},
	{"BEGIN", false, 2, false, P, LV_ROUTE_TXN},
	{"START TRANSACTION ISOLATION LEVEL SERIALIZABLE", false, 2, false, P, LV_ROUTE_TXN},
	{"BEGIN READ ONLY", false, 2, false, R, LV_ROUTE_TXN_READ_ONLY},
	{"START TRANSACTION READ ONLY", false, 1, false, R, LV_ROUTE_TXN_READ_ONLY},
	{"BEGIN READ ONLY", true, 2, false, P, LV_ROUTE_READ_YOUR_WRITES},
	{"BEGIN READ ONLY", false, 0, false, P, LV_ROUTE_NO_REPLICA},
	{"COMMIT", false, 2, false, P, LV_ROUTE_TXN},
	{"SELECT * FROM t", true, 2, false, P, LV_ROUTE_READ_YOUR_WRITES},
	{"SELECT * FROM t", false, 0, false, P, LV_ROUTE_NO_REPLICA},
	{"SELECT * FROM t", false, 0, true, X, LV_ROUTE_NO_REPLICA},
	{"INSERT INTO t VALUES (1)", false, 0, true, P, LV_ROUTE_WRITE},
	{"/* levee:primary */ SELECT * FROM t", false, 2, false, P, LV_ROUTE_HINT_PRIMARY},
	{"SELECT * FROM t /* levee:replica */", false, 2, false, R, LV_ROUTE_HINT_REPLICA},
	{"SELECT * FROM t /* levee:replica */", false, 0, false, P, LV_ROUTE_NO_REPLICA},
	{"INSERT INTO t VALUES (1) /* levee:replica */", false, 1, false, R, LV_ROUTE_HINT_REPLICA},
	{"SELEC * FROM t", false, 2, false, P, LV_ROUTE_UNPARSABLE},
	{"SELECT '/* levee:primary */' FROM t", false, 2, false, R, LV_ROUTE_READ},
	{"SELECT 1; UPDATE t SET a = 2", false, 2, false, P, LV_ROUTE_WRITE},
	{"SELECT 1; SELECT 2", false, 2, false, R, LV_ROUTE_READ},
};

static void test_decision_table(void **state)
{
	lv_sql_info_t *info = lv_malloc(sizeof(*info));
	assert_non_null(info);
	for (size_t i = 0; i < LV_ARRAY_LEN(table); i++) {
		const row_t *r = &table[i];
		assert_int_equal(lv_sql_classify(r->sql, strlen(r->sql), NULL, info), 0);
		lv_route_input_t in = {.info = info, .ryw_pending = r->ryw, .n_healthy_replicas = r->healthy,
				       .fallback_error = r->fallback_error};
		lv_route_t d = lv_route_decide(&in);
		if (d.target != r->target || d.reason != r->reason)
			fail_msg("row %zu \"%s\": got %d/%s, want %d/%s", i, r->sql, d.target,
				 lv_route_reason_name(d.reason), r->target, lv_route_reason_name(r->reason));
	}
	lv_route_input_t none = {.info = NULL, .n_healthy_replicas = 2};
	assert_int_equal(lv_route_decide(&none).target, LV_TARGET_PRIMARY);
	assert_int_equal(lv_route_decide(&none).reason, LV_ROUTE_UNKNOWN);
	lv_free(info);
	lv_sql_thread_cleanup();
}

static void test_pick_replica(void **state)
{
	lv_replica_load_t r[3] = {{true, 100, 4}, {true, 100, 2}, {false, 100, 0}};
	assert_int_equal(lv_route_pick_replica(r, 3, 0), 1); /* least loaded healthy one */
	r[1].outstanding = 4;
	assert_int_equal(lv_route_pick_replica(r, 3, 0), 0); /* a tie: the first after start */
	assert_int_equal(lv_route_pick_replica(r, 3, 1), 1);
	/* Weights: 4 outstanding on weight 200 beats 3 on weight 100. */
	r[0].weight = 200;
	r[1].outstanding = 3;
	assert_int_equal(lv_route_pick_replica(r, 3, 1), 0);
	r[0].healthy = r[1].healthy = false;
	assert_int_equal(lv_route_pick_replica(r, 3, 0), -1);
	assert_int_equal(lv_route_pick_replica(r, 0, 0), -1);
	assert_string_equal(lv_route_reason_name(LV_ROUTE_READ_YOUR_WRITES), "read_your_writes");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decision_table),
		cmocka_unit_test(test_pick_replica),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
