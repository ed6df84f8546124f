/* levee-test-deps: tests/unit/fakes/time.c */
/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for core/metrics.c: the registry generated from metrics_def.h,
 * shard writes and sums, and the Prometheus text rendering, checked line by
 * line. Every test binds its own shards, so the process-wide fallback shard
 * stays at zero except in the tests that write to it on purpose (those
 * compare deltas).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <pthread.h>

#include "core/buf.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "core/time.h"
#include "fakes/fake_time.h"

/* ----------------------------------------------------------------- helpers */

/* NUL-terminated copy of the buffer contents; the test frees it. */
static char *buf_text(const lv_buf_t *b)
{
	char *s = malloc(b->len + 1);
	assert_non_null(s);
	if (b->len)
		memcpy(s, b->data, b->len);
	s[b->len] = '\0';
	return s;
}

/*
 * The lines a family occupies in a render, from its "# HELP name " line up to
 * the next "# HELP" (or the end). NULL when the family is missing.
 */
static char *family_block(const char *text, const char *name)
{
	char head[160];
	snprintf(head, sizeof(head), "# HELP %s ", name);
	const char *p = text;
	while (p && *p) {
		if (strncmp(p, head, strlen(head)) == 0)
			break;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	if (!p || !*p)
		return NULL;
	const char *end = strstr(p + 1, "\n# HELP ");
	size_t n = end ? (size_t)(end - p) + 1 : strlen(p);
	char *s = malloc(n + 1);
	assert_non_null(s);
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static char *render(lv_metrics_shard_t *const *shards, size_t n)
{
	lv_buf_t b;
	lv_buf_init(&b);
	assert_true(lv_metrics_render(shards, n, &b));
	char *s = buf_text(&b);
	lv_buf_cleanup(&b);
	return s;
}

static void assert_family(const char *text, const char *name, const char *expected)
{
	char *block = family_block(text, name);
	assert_non_null(block);
	assert_string_equal(block, expected);
	free(block);
}

static int fail_after;
static bool fail_counting(size_t n)
{
	(void)n;
	return fail_after-- <= 0;
}

static bool fail_always(size_t n)
{
	(void)n;
	return true;
}

/* ------------------------------------------------------------------- tests */

/* The registry matches metrics_def.h and the naming rules of STYLE.md 1.3. */
static void test_registry_naming(void **state)
{
	static const struct {
		const char *id;
		const char *name;
		const char *label_name;
		unsigned n_labels;
		lv_metric_type_t type;
	} defs[] = {
#define XX(id, type, name, help, label_name, set) \
	{#id, name, label_name, LV_ML_##set##__COUNT, LV_METRIC_##type},
		LV_METRICS_DEF(XX)
#undef XX
	};
	assert_int_equal(LV_ARRAY_LEN(defs), LV_M__COUNT);
	for (unsigned i = 0; i < LV_M__COUNT; i++) {
		char want[128] = "levee_";
		size_t k = strlen(want);
		for (const char *c = defs[i].id; *c; c++)
			want[k++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
		want[k] = '\0';
		assert_string_equal(defs[i].name, want);
		assert_string_equal(lv_metric_name(i), defs[i].name);
		assert_int_equal(lv_metric_type(i), defs[i].type);

		size_t len = strlen(defs[i].name);
		bool total = len > 6 && strcmp(defs[i].name + len - 6, "_total") == 0;
		bool seconds = len > 8 && strcmp(defs[i].name + len - 8, "_seconds") == 0;
		if (defs[i].type == LV_METRIC_COUNTER)
			assert_true(total);
		else
			assert_false(total);
		if (defs[i].type == LV_METRIC_HISTOGRAM)
			assert_true(seconds);

		/* A label name exactly when there is a label set. */
		assert_int_equal(defs[i].label_name != NULL, defs[i].n_labels > 0);
		assert_int_equal(lv_metric_n_series(i), defs[i].n_labels ? defs[i].n_labels : 1);
		for (unsigned l = 0; l < defs[i].n_labels; l++)
			assert_non_null(lv_metric_label_value(i, l));
		assert_null(lv_metric_label_value(i, defs[i].n_labels));
	}
	assert_null(lv_metric_name(LV_M__COUNT));
	assert_int_equal(lv_metric_n_series(LV_M__COUNT), 0);
}

/* A few label constants and values that other modules code against. */
static void test_label_constants(void **state)
{
	assert_int_equal(LV_ML_NONE__COUNT, 0);
	assert_int_equal(LV_ML_CLIENT_STATE__COUNT, 6);
	assert_int_equal(LV_ML_SERVER_STATE__COUNT, 5);
	assert_int_equal(LV_ML_REFUSE_REASON__COUNT, 8);
	assert_int_equal(LV_ML_ERROR_KIND__COUNT, 13);
	assert_int_equal(LV_METRIC_N_BUCKETS, 16);
	assert_string_equal(
		lv_metric_label_value(LV_M_CLIENT_CONNECTIONS, LV_ML_CLIENT_STATE_LOGIN), "login");
	assert_string_equal(
		lv_metric_label_value(LV_M_CLIENT_CONNECTIONS, LV_ML_CLIENT_STATE_QUEUED_WRITE),
		"queued_write");
	assert_string_equal(lv_metric_label_value(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_OOM), "oom");
	assert_string_equal(lv_metric_label_value(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CANCEL),
			    "cancel");
	assert_string_equal(
		lv_metric_label_value(LV_M_POOL_PINS_TOTAL, LV_ML_PIN_REASON_DECLARE_WITH_HOLD),
		"declare_with_hold");
	assert_null(lv_metric_label_value(LV_M_QUERIES_TOTAL, 0));
}

static void test_shard_sum(void **state)
{
	lv_metrics_shard_t *a = lv_metrics_shard_new();
	lv_metrics_shard_t *b = lv_metrics_shard_new();
	assert_non_null(a);
	assert_non_null(b);
	lv_metrics_shard_t *both[] = {a, b};

	lv_metrics_bind_thread(a);
	assert_ptr_equal(lv_metrics_thread_shard(), a);
	lv_metric_inc(LV_M_QUERIES_TOTAL);
	lv_metric_inc(LV_M_QUERIES_TOTAL);
	lv_metric_add(LV_M_CLIENT_BYTES_RECEIVED_TOTAL, 0, 1000);
	lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_SERVER_LOST);
	lv_metric_add(LV_M_CLIENT_CONNECTIONS, LV_ML_CLIENT_STATE_IDLE, 3);
	lv_metric_add(LV_M_CLIENT_CONNECTIONS, LV_ML_CLIENT_STATE_IDLE, -1);

	lv_metrics_bind_thread(b);
	lv_metric_inc(LV_M_QUERIES_TOTAL);
	lv_metric_add(LV_M_CLIENT_BYTES_RECEIVED_TOTAL, 0, 24);
	lv_metric_set(LV_M_CLIENT_CONNECTIONS, LV_ML_CLIENT_STATE_IDLE, 5);
	lv_metric_set(LV_M_SERVER_CONNECTIONS, LV_ML_SERVER_STATE_TESTING, 7);
	lv_metrics_bind_thread(NULL);

	assert_int_equal(lv_metrics_sum(both, 2, LV_M_QUERIES_TOTAL, 0), 3);
	assert_int_equal(lv_metrics_sum(both, 1, LV_M_QUERIES_TOTAL, 0), 2);
	assert_int_equal(lv_metrics_sum(&b, 1, LV_M_QUERIES_TOTAL, 0), 1);
	assert_int_equal(lv_metrics_sum(both, 2, LV_M_CLIENT_BYTES_RECEIVED_TOTAL, 0), 1024);
	assert_int_equal(lv_metrics_sum(both, 2, LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_SERVER_LOST),
			 1);
	assert_int_equal(lv_metrics_sum(both, 2, LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_SERVER_LOGIN),
			 0);
	/* Gauges are summed across shards: 2 from a, 5 from b. */
	assert_int_equal(lv_metrics_sum(both, 2, LV_M_CLIENT_CONNECTIONS, LV_ML_CLIENT_STATE_IDLE),
			 7);
	assert_int_equal(
		lv_metrics_sum(both, 2, LV_M_SERVER_CONNECTIONS, LV_ML_SERVER_STATE_TESTING), 7);
	/* NULL entries in the shard list are skipped. */
	lv_metrics_shard_t *holes[] = {NULL, a, NULL};
	assert_int_equal(lv_metrics_sum(holes, 3, LV_M_QUERIES_TOTAL, 0), 2);
	/* Nothing went to the fallback shard. */
	assert_int_equal(lv_metrics_sum(NULL, 0, LV_M_QUERIES_TOTAL, 0), 0);
	/* Invalid arguments read as zero. */
	assert_int_equal(lv_metrics_sum(both, 2, LV_M__COUNT, 0), 0);
	assert_int_equal(lv_metrics_sum(both, 2, LV_M_QUERIES_TOTAL, 1), 0);

	lv_metrics_shard_free(a);
	lv_metrics_shard_free(b);
	lv_metrics_shard_free(NULL);
}

/* Counters, labelled and not: HELP, TYPE and series lines, exactly. */
static void test_render_counters(void **state)
{
	lv_metrics_shard_t *a = lv_metrics_shard_new();
	lv_metrics_shard_t *b = lv_metrics_shard_new();
	assert_non_null(a);
	assert_non_null(b);
	lv_metrics_shard_t *both[] = {a, b};

	lv_metrics_bind_thread(a);
	lv_metric_add(LV_M_QUERIES_TOTAL, 0, 40);
	lv_metric_inc_l(LV_M_CANCEL_REQUESTS_TOTAL, LV_ML_CANCEL_RESULT_UNKNOWN);
	lv_metric_inc_l(LV_M_CONFIG_RELOADS_TOTAL, LV_ML_RELOAD_RESULT_OK);
	lv_metric_add(LV_M_CLIENT_CONNECTIONS, LV_ML_CLIENT_STATE_ACTIVE, 4);
	lv_metrics_bind_thread(b);
	lv_metric_add(LV_M_QUERIES_TOTAL, 0, 2);
	lv_metric_add(LV_M_CANCEL_REQUESTS_TOTAL, LV_ML_CANCEL_RESULT_FORWARDED, 9);
	lv_metric_add(LV_M_CLIENT_CONNECTIONS, LV_ML_CLIENT_STATE_ACTIVE, 1);
	lv_metric_add(LV_M_CLIENT_CONNECTIONS, LV_ML_CLIENT_STATE_REPLAY, 2);
	lv_metrics_bind_thread(NULL);

	char *text = render(both, 2);
	assert_family(text, "levee_queries_total",
		      "# HELP levee_queries_total Queries received from clients.\n"
		      "# TYPE levee_queries_total counter\n"
		      "levee_queries_total 42\n");
	assert_family(text, "levee_cancel_requests_total",
		      "# HELP levee_cancel_requests_total Cancel requests, by result.\n"
		      "# TYPE levee_cancel_requests_total counter\n"
		      "levee_cancel_requests_total{result=\"forwarded\"} 9\n"
		      "levee_cancel_requests_total{result=\"unknown\"} 1\n"
		      "levee_cancel_requests_total{result=\"failed\"} 0\n");
	assert_family(text, "levee_config_reloads_total",
		      "# HELP levee_config_reloads_total Configuration reloads, by result.\n"
		      "# TYPE levee_config_reloads_total counter\n"
		      "levee_config_reloads_total{result=\"ok\"} 1\n"
		      "levee_config_reloads_total{result=\"error\"} 0\n");
	assert_family(text, "levee_client_connections",
		      "# HELP levee_client_connections Client connections by state.\n"
		      "# TYPE levee_client_connections gauge\n"
		      "levee_client_connections{state=\"login\"} 0\n"
		      "levee_client_connections{state=\"idle\"} 0\n"
		      "levee_client_connections{state=\"waiting\"} 0\n"
		      "levee_client_connections{state=\"active\"} 5\n"
		      "levee_client_connections{state=\"queued_write\"} 0\n"
		      "levee_client_connections{state=\"replay\"} 2\n");
	/* The first family comes first and every family is present once. */
	assert_memory_equal(text, "# HELP levee_client_connections ", 32);
	for (unsigned id = 0; id < LV_M__COUNT; id++) {
		char head[128];
		snprintf(head, sizeof(head), "# TYPE %s ", lv_metric_name(id));
		const char *p = strstr(text, head);
		assert_non_null(p);
		assert_null(strstr(p + 1, head));
	}
	free(text);
	lv_metrics_shard_free(a);
	lv_metrics_shard_free(b);
}

/* Every line of a full render has one of the three shapes of the format. */
static void test_render_shape(void **state)
{
	char *text = render(NULL, 0);
	size_t n_help = 0, n_type = 0, n_series = 0;
	assert_true(strlen(text) > 0);
	assert_int_equal(text[strlen(text) - 1], '\n');
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "# HELP levee_", 13) == 0) {
			n_help++;
		} else if (strncmp(line, "# TYPE levee_", 13) == 0) {
			n_type++;
			const char *t = strrchr(line, ' ') + 1;
			assert_true(strcmp(t, "counter") == 0 || strcmp(t, "gauge") == 0 ||
				    strcmp(t, "histogram") == 0);
		} else {
			n_series++;
			assert_memory_equal(line, "levee_", 6);
			const char *sp = strrchr(line, ' ');
			assert_non_null(sp);
			char *end;
			strtod(sp + 1, &end);
			assert_int_equal(*end, '\0');
			const char *brace = strchr(line, '{');
			if (brace)
				assert_int_equal(sp[-1], '}');
		}
	}
	size_t want_series = 0;
	for (unsigned id = 0; id < LV_M__COUNT; id++)
		want_series +=
			lv_metric_n_series(id) *
			(lv_metric_type(id) == LV_METRIC_HISTOGRAM        ? LV_METRIC_N_BUCKETS + 3
			 : lv_metric_type(id) == LV_METRIC_SIZE_HISTOGRAM ? LV_METRIC_N_SIZE_BUCKETS + 3
									  : 1);
	assert_int_equal(n_help, LV_M__COUNT);
	assert_int_equal(n_type, LV_M__COUNT);
	assert_int_equal(n_series, want_series);
	free(text);
}

/* Buckets are cumulative, le is inclusive, +Inf equals _count, two shards add up. */
static void test_render_histogram(void **state)
{
	lv_metrics_shard_t *a = lv_metrics_shard_new();
	lv_metrics_shard_t *b = lv_metrics_shard_new();
	assert_non_null(a);
	assert_non_null(b);
	lv_metrics_shard_t *both[] = {a, b};

	lv_metrics_bind_thread(a);
	lv_metric_observe(LV_M_QUERY_DURATION_SECONDS, 0, 0.00005); /* le 0.0001 */
	lv_metric_observe(LV_M_QUERY_DURATION_SECONDS, 0, 0.0001);  /* le 0.0001: inclusive */
	lv_metric_observe(LV_M_QUERY_DURATION_SECONDS, 0, 0.003);   /* le 0.005 */
	lv_metric_observe(LV_M_QUERY_DURATION_SECONDS, 0, -1);      /* counts as 0 */
	lv_metrics_bind_thread(b);
	lv_metric_observe(LV_M_QUERY_DURATION_SECONDS, 0, 0.3);        /* le 0.5 */
	lv_metric_observe(LV_M_QUERY_DURATION_SECONDS, 0, 20);         /* +Inf only */
	lv_metric_observe(LV_M_QUERY_DURATION_SECONDS, 0, NAN);        /* NaN: ignored */
	lv_metric_observe_us(LV_M_QUERY_DURATION_SECONDS, 0, 2500000); /* le 2.5 */
	/* Durations as callers measure them, on the (fake) cached clock. */
	lv_usec_t t0 = lv_time_now_us();
	assert_int_equal(t0, LV_FAKE_TIME_START_US);
	lv_fake_time_advance(2500001);
	lv_metric_observe_us(LV_M_QUERY_DURATION_SECONDS, 0, lv_time_now_us() - t0); /* le 5 */
	lv_metrics_bind_thread(NULL);

	assert_int_equal(lv_metrics_sum(both, 2, LV_M_QUERY_DURATION_SECONDS, 0), 8);
	double sum = lv_metrics_sum_seconds(both, 2, LV_M_QUERY_DURATION_SECONDS, 0);
	assert_true(sum > 25.303151 - 1e-9 && sum < 25.303151 + 1e-9);
	assert_int_equal(lv_metrics_sum(both, 2, LV_M_CLIENT_WAIT_SECONDS, 0), 0);

	char *text = render(both, 2);
	assert_family(text, "levee_query_duration_seconds",
		      "# HELP levee_query_duration_seconds Query time from client request to "
		      "ReadyForQuery.\n"
		      "# TYPE levee_query_duration_seconds histogram\n"
		      "levee_query_duration_seconds_bucket{le=\"0.0001\"} 3\n"
		      "levee_query_duration_seconds_bucket{le=\"0.00025\"} 3\n"
		      "levee_query_duration_seconds_bucket{le=\"0.0005\"} 3\n"
		      "levee_query_duration_seconds_bucket{le=\"0.001\"} 3\n"
		      "levee_query_duration_seconds_bucket{le=\"0.0025\"} 3\n"
		      "levee_query_duration_seconds_bucket{le=\"0.005\"} 4\n"
		      "levee_query_duration_seconds_bucket{le=\"0.01\"} 4\n"
		      "levee_query_duration_seconds_bucket{le=\"0.025\"} 4\n"
		      "levee_query_duration_seconds_bucket{le=\"0.05\"} 4\n"
		      "levee_query_duration_seconds_bucket{le=\"0.1\"} 4\n"
		      "levee_query_duration_seconds_bucket{le=\"0.25\"} 4\n"
		      "levee_query_duration_seconds_bucket{le=\"0.5\"} 5\n"
		      "levee_query_duration_seconds_bucket{le=\"1\"} 5\n"
		      "levee_query_duration_seconds_bucket{le=\"2.5\"} 6\n"
		      "levee_query_duration_seconds_bucket{le=\"5\"} 7\n"
		      "levee_query_duration_seconds_bucket{le=\"10\"} 7\n"
		      "levee_query_duration_seconds_bucket{le=\"+Inf\"} 8\n"
		      "levee_query_duration_seconds_sum 25.303151\n"
		      "levee_query_duration_seconds_count 8\n");
	/* An untouched histogram renders zeros. */
	char *block = family_block(text, "levee_client_wait_seconds");
	assert_non_null(block);
	assert_non_null(strstr(block, "levee_client_wait_seconds_bucket{le=\"+Inf\"} 0\n"
				      "levee_client_wait_seconds_sum 0\n"
				      "levee_client_wait_seconds_count 0\n"));
	free(block);
	free(text);
	lv_metrics_shard_free(a);
	lv_metrics_shard_free(b);
}

/* Exposition escaping for label values (\\, \", \n) and HELP text (\\, \n). */
static void test_render_escaping(void **state)
{
	lv_buf_t b;
	lv_buf_init(&b);
	const char *kv[] = {"pool", "a\\b\"c\nd", "user", "alice", NULL};
	assert_true(
		lv_metrics_render_family(&b, "levee_pool_x", "Back\\slash \"q\"\nnext", "gauge"));
	assert_true(lv_metrics_render_sample(&b, "levee_pool_x", kv, 3));
	assert_true(lv_metrics_render_sample(&b, "levee_pool_x", NULL, 0.25));
	const char *empty[] = {NULL};
	assert_true(lv_metrics_render_sample(&b, "levee_pool_x", empty, -2));
	char *text = buf_text(&b);
	assert_string_equal(text, "# HELP levee_pool_x Back\\\\slash \"q\"\\nnext\n"
				  "# TYPE levee_pool_x gauge\n"
				  "levee_pool_x{pool=\"a\\\\b\\\"c\\nd\",user=\"alice\"} 3\n"
				  "levee_pool_x 0.25\n"
				  "levee_pool_x -2\n");
	free(text);
	lv_buf_cleanup(&b);
}

static void test_render_sample_values(void **state)
{
	static const struct {
		double v;
		const char *text;
	} cases[] = {
		{0, "0"},
		{-0.0, "0"},
		{1, "1"},
		{1234567890123.0, "1234567890123"},
		{0.1, "0.1"},
		{1e-7, "1e-07"},
		{1.0 / 3.0, "0.33333333333333331"},
		{1e300, "1e+300"},
		{INFINITY, "+Inf"},
		{-INFINITY, "-Inf"},
		{NAN, "NaN"},
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		lv_buf_t b;
		char want[96];
		lv_buf_init(&b);
		assert_true(lv_metrics_render_sample(&b, "m", NULL, cases[i].v));
		snprintf(want, sizeof(want), "m %s\n", cases[i].text);
		char *text = buf_text(&b);
		assert_string_equal(text, want);
		if (cases[i].v == cases[i].v && cases[i].v < 1e308 && cases[i].v > -1e308)
			assert_true(strtod(text + 2, NULL) == cases[i].v);
		free(text);
		lv_buf_cleanup(&b);
	}
}

/* Invalid names and types are refused and leave the buffer as it was. */
static void test_render_invalid(void **state)
{
	lv_buf_t b;
	lv_buf_init(&b);
	assert_true(lv_buf_append_str(&b, "keep\n"));
	const char *bad_label[] = {"1abc", "v", NULL};
	const char *bad_label2[] = {"a-b", "v", NULL};
	const char *no_value[] = {"ok", "v", "k", NULL};
	const char *colon_label[] = {"a:b", "v", NULL};

	assert_false(lv_metrics_render_family(&b, "9lives", "h", "gauge"));
	assert_false(lv_metrics_render_family(&b, "", "h", "gauge"));
	assert_false(lv_metrics_render_family(&b, "bad name", "h", "gauge"));
	assert_false(lv_metrics_render_family(&b, "ok_name", "h", "meter"));
	assert_false(lv_metrics_render_family(&b, "ok_name", "h", NULL));
	assert_false(lv_metrics_render_sample(&b, "bad-name", NULL, 1));
	assert_false(lv_metrics_render_sample(&b, NULL, NULL, 1));
	assert_false(lv_metrics_render_sample(&b, "ok", bad_label, 1));
	assert_false(lv_metrics_render_sample(&b, "ok", bad_label2, 1));
	assert_false(lv_metrics_render_sample(&b, "ok", no_value, 1));
	assert_false(lv_metrics_render_sample(&b, "ok", colon_label, 1));
	assert_int_equal(b.len, 5);
	assert_memory_equal(b.data, "keep\n", 5);
	/* Colons are allowed in metric names, and HELP may be left out. */
	assert_true(lv_metrics_render_family(&b, "ns:ok_name", NULL, "untyped"));
	char *text = buf_text(&b);
	assert_string_equal(text, "keep\n# TYPE ns:ok_name untyped\n");
	free(text);
	lv_buf_cleanup(&b);
}

/* Misuse asserts in debug builds; in production it is ignored. */
static void test_misuse_ignored(void **state)
{
#ifdef LV_DEBUG
	skip();
#else
	lv_metrics_shard_t *a = lv_metrics_shard_new();
	assert_non_null(a);
	lv_metrics_bind_thread(a);
	lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND__COUNT); /* label out of range */
	lv_metric_inc_l(LV_M_QUERIES_TOTAL, 1);                      /* unlabelled family */
	lv_metric_add(LV_M__COUNT, 0, 1);                            /* bad id */
	lv_metric_set(LV_M_QUERIES_TOTAL, 0, 5);                     /* set on a counter */
	lv_metric_add(LV_M_QUERY_DURATION_SECONDS, 0, 1);            /* add on a histogram */
	lv_metric_observe(LV_M_QUERIES_TOTAL, 0, 1.0);               /* observe on a counter */
	lv_metric_observe_us(LV_M_CLIENT_WAIT_SECONDS, 1, 5);        /* label out of range */
	lv_metric_add(LV_M_CLIENT_CONNECTIONS, LV_ML_CLIENT_STATE__COUNT, 1);
	lv_metrics_bind_thread(NULL);

	lv_metrics_shard_t *list[] = {a};
	for (unsigned id = 0; id < LV_M__COUNT; id++)
		for (unsigned l = 0; l < lv_metric_n_series(id); l++)
			assert_int_equal(lv_metrics_sum(list, 1, id, l), 0);
	lv_metrics_shard_free(a);
#endif
}

/* Render fails cleanly on OOM at any point, leaving the buffer unchanged. */
static void test_render_oom(void **state)
{
	bool succeeded = false;
	for (int k = 0; k < 20 && !succeeded; k++) {
		lv_buf_t b;
		lv_buf_init(&b);
		assert_true(lv_buf_append_str(&b, "x"));
		uint8_t *before = b.data;
		fail_after = k;
		lv_mem_set_fail_hook(fail_counting);
		succeeded = lv_metrics_render(NULL, 0, &b);
		lv_mem_set_fail_hook(NULL);
		if (!succeeded) {
			assert_int_equal(b.len, 1);
			assert_int_equal(b.data[0], 'x');
		} else {
			assert_true(b.len > 1000);
			assert_true(k > 0);
		}
		(void)before;
		lv_buf_cleanup(&b);
	}
	assert_true(succeeded);

	lv_mem_set_fail_hook(fail_always);
	assert_null(lv_metrics_shard_new());
	lv_mem_set_fail_hook(NULL);
}

/* Threads without a shard share the fallback shard, which scrapes always include. */
static void *unbound_worker(void *arg)
{
	for (int i = 0; i < 50000; i++)
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CANCEL);
	return arg;
}

/* Bound threads write to their own shard; a scraper sums while they run. */
static void *bound_worker(void *arg)
{
	lv_metrics_shard_t *s = arg;
	lv_metrics_bind_thread(s);
	for (int i = 0; i < 50000; i++) {
		lv_metric_inc(LV_M_TRANSACTIONS_TOTAL);
		lv_metric_observe_us(LV_M_CLIENT_WAIT_SECONDS, 0, 300);
	}
	lv_metrics_bind_thread(NULL);
	return NULL;
}

static void test_threads(void **state)
{
	lv_metrics_shard_t *shards[2];
	pthread_t th[4];
	int64_t before = lv_metrics_sum(NULL, 0, LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CANCEL);

	for (int i = 0; i < 2; i++) {
		shards[i] = lv_metrics_shard_new();
		assert_non_null(shards[i]);
		assert_int_equal(pthread_create(&th[i], NULL, bound_worker, shards[i]), 0);
	}
	for (int i = 2; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, unbound_worker, NULL), 0);
	/* Scrape concurrently: values only grow. */
	int64_t last = 0;
	for (int i = 0; i < 200; i++) {
		int64_t v = lv_metrics_sum(shards, 2, LV_M_TRANSACTIONS_TOTAL, 0);
		assert_true(v >= last);
		last = v;
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);

	assert_int_equal(lv_metrics_sum(shards, 2, LV_M_TRANSACTIONS_TOTAL, 0), 100000);
	assert_int_equal(lv_metrics_sum(shards, 2, LV_M_CLIENT_WAIT_SECONDS, 0), 100000);
	assert_int_equal(lv_metrics_sum(NULL, 0, LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CANCEL) -
				 before,
			 100000);
	/* The fallback is part of every sum, with or without worker shards. */
	assert_int_equal(lv_metrics_sum(shards, 2, LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CANCEL) -
				 before,
			 100000);
	for (int i = 0; i < 2; i++)
		lv_metrics_shard_free(shards[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry_naming), cmocka_unit_test(test_label_constants),
		cmocka_unit_test(test_shard_sum),       cmocka_unit_test(test_render_counters),
		cmocka_unit_test(test_render_shape),    cmocka_unit_test(test_render_histogram),
		cmocka_unit_test(test_render_escaping), cmocka_unit_test(test_render_sample_values),
		cmocka_unit_test(test_render_invalid),  cmocka_unit_test(test_misuse_ignored),
		cmocka_unit_test(test_render_oom),      cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
