/* levee-test-deps: src/event/loop.c tests/unit/fakes/time.c */
/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for redis/redis.c that need no Redis server: URL parsing (good
 * and bad URLs, error messages that never show the password), the reply
 * accessors on NULL and on hand-built hiredis replies, and a client whose
 * server does not exist (created, refuses commands, keeps subscriptions,
 * frees cleanly, survives out-of-memory). Talking to a real Redis is tested
 * end to end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>

#include "core/mem.h"
#include "core/metrics.h"
#include "event/loop.h"
#include "redis/redis.h"

/* ------------------------------------------------------------ URL parsing */

static void test_url_good(void **state)
{
	static const struct {
		const char *url;
		const char *host;
		int port;
		int db;
		const char *user;
		const char *password;
		bool is_unix;
	} cases[] = {
		{ "redis://localhost", "localhost", 6379, 0, "", "", false },
		{ "redis://127.0.0.1:6380/2", "127.0.0.1", 6380, 2, "", "", false },
		{ "redis://host/", "host", 6379, 0, "", "", false },
		{ "REDIS://Host:1", "Host", 1, 0, "", "", false },
		{ "redis://:secret@cache.local:7000/15", "cache.local", 7000, 15, "", "secret",
		  false },
		{ "redis://alice:s3cr%40t%2F@h", "h", 6379, 0, "alice", "s3cr@t/", false },
		{ "redis://bob:p@ss/w@h:1/3", "h", 1, 3, "bob", "p@ss/w", false },
		{ "redis://[::1]:7001/4", "::1", 7001, 4, "", "", false },
		{ "redis://[fe80::1]", "fe80::1", 6379, 0, "", "", false },
		{ "unix:///tmp/redis.sock", "/tmp/redis.sock", 0, 0, "", "", true },
		{ "unix:///run/r.sock?db=5", "/run/r.sock", 0, 5, "", "", true },
		{ "unix://:pw@/run/r.sock?db=1", "/run/r.sock", 0, 1, "", "pw", true },
		{ "unix://u:pw@/run/r.sock", "/run/r.sock", 0, 0, "u", "pw", true },
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		lv_redis_url_t u;
		lv_err_t err = { 0 };
		int rc = lv_redis_url_parse(cases[i].url, &u, &err);
		if (rc != 0)
			print_error("%s: %s\n", cases[i].url, err.msg);
		assert_int_equal(rc, 0);
		assert_string_equal(u.host, cases[i].host);
		assert_int_equal(u.port, cases[i].port);
		assert_int_equal(u.db, cases[i].db);
		assert_string_equal(u.user, cases[i].user);
		assert_string_equal(u.password, cases[i].password);
		assert_int_equal(u.is_unix, cases[i].is_unix);
	}
}

static void test_url_bad(void **state)
{
	char long_host[300], long_path[200];
	memcpy(long_host, "redis://", 8);
	memset(long_host + 8, 'h', sizeof(long_host) - 9);
	long_host[sizeof(long_host) - 1] = '\0';
	memcpy(long_path, "unix:///", 8);
	memset(long_path + 8, 'p', sizeof(long_path) - 9);
	long_path[sizeof(long_path) - 1] = '\0';

	static const struct {
		const char *url;
		const char *msg; /* a substring of the error message */
	} cases[] = {
		{ "", "empty redis URL" },
		{ "http://host", "expected redis://" },
		{ "host:6379", "expected redis://" },
		{ "rediss://host", "not supported" },
		{ "redis://", "missing host" },
		{ "redis://:6379", "missing host" },
		{ "redis://host:", "invalid port ''" },
		{ "redis://host:0", "invalid port '0'" },
		{ "redis://host:65536", "invalid port '65536'" },
		{ "redis://host:12a/1", "invalid port '12a'" },
		{ "redis://host:99999999999", "invalid port" },
		{ "redis://host/x", "invalid database number 'x'" },
		{ "redis://host/1/2", "invalid database number '1/2'" },
		{ "redis://host/-1", "invalid database number" },
		{ "redis://host/99999999999", "invalid database number" },
		{ "redis://host?db=1", "unexpected '?db=1'" },
		{ "redis://pw@host", "expected [user]:password before '@'" },
		{ "redis://user:@host", "empty password" },
		{ "redis://:bad%zz@host", "bad password" },
		{ "redis://:bad%4@host", "bad password" },
		{ "redis://:nul%00@host", "bad password" },
		{ "redis://[::1", "missing ']'" },
		{ "redis://[::1]x", "after ']'" },
		{ "unix://relative.sock", "must be absolute" },
		{ "unix://", "missing socket path" },
		{ "unix:///", "missing socket path" },
		{ "unix:///tmp/s?foo=1", "unsupported parameter 'foo=1'" },
		{ "unix:///tmp/s?db=x", "invalid database number 'x'" },
		{ "unix:///tmp/s?db=", "invalid database number ''" },
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		lv_redis_url_t u;
		lv_err_t err = { 0 };
		int rc = lv_redis_url_parse(cases[i].url, &u, &err);
		if (rc != -1 || !strstr(err.msg, cases[i].msg))
			print_error("%s: rc=%d msg=%s\n", cases[i].url, rc, err.msg);
		assert_int_equal(rc, -1);
		assert_non_null(strstr(err.msg, cases[i].msg));
		assert_int_equal(u.password[0], '\0'); /* nothing half-parsed left behind */
	}

	lv_redis_url_t u;
	lv_err_t err = { 0 };
	assert_int_equal(lv_redis_url_parse(NULL, &u, &err), -1);
	assert_int_equal(lv_redis_url_parse(long_host, &u, &err), -1);
	assert_non_null(strstr(err.msg, "host name too long"));
	assert_int_equal(lv_redis_url_parse(long_path, &u, &err), -1);
	assert_non_null(strstr(err.msg, "socket path too long"));
	/* A NULL err is allowed. */
	assert_int_equal(lv_redis_url_parse("nope", &u, NULL), -1);
}

/* Error messages may be logged: they never contain the password. */
static void test_url_error_hides_password(void **state)
{
	static const char *const urls[] = {
		"redis://user:topsecret@host:bad",
		"redis://:topsecret@host/x",
		"redis://:topsecret@host/1?x",
		"redis://:topsecret@",
		"unix://:topsecret@/tmp/s?db=q",
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(urls); i++) {
		lv_redis_url_t u;
		lv_err_t err = { 0 };
		assert_int_equal(lv_redis_url_parse(urls[i], &u, &err), -1);
		assert_true(err.msg[0] != '\0');
		assert_null(strstr(err.msg, "topsecret"));
	}
}

/* -------------------------------------------------------- reply accessors */

static void test_reply_null(void **state)
{
	size_t len = 99;
	assert_int_equal(lv_redis_reply_type(NULL), LV_REDIS_NIL);
	assert_int_equal(lv_redis_reply_int(NULL), 0);
	assert_null(lv_redis_reply_str(NULL, &len));
	assert_int_equal(len, 0);
	assert_null(lv_redis_reply_str(NULL, NULL));
	assert_int_equal(lv_redis_reply_len(NULL), 0);
	assert_null(lv_redis_reply_at(NULL, 0));
}

static void test_reply_values(void **state)
{
	redisReply s = { .type = REDIS_REPLY_STRING, .str = (char *)"v\0x", .len = 3 };
	redisReply st = { .type = REDIS_REPLY_STATUS, .str = (char *)"OK", .len = 2 };
	redisReply e = { .type = REDIS_REPLY_ERROR, .str = (char *)"ERR x", .len = 5 };
	redisReply n = { .type = REDIS_REPLY_INTEGER, .integer = -42 };
	redisReply nil = { .type = REDIS_REPLY_NIL };
	redisReply *elems[] = { &s, &n, &nil };
	redisReply a = { .type = REDIS_REPLY_ARRAY, .elements = 3, .element = elems };
#define R(x) ((const lv_redis_reply_t *)&(x))
	size_t len = 0;

	assert_int_equal(lv_redis_reply_type(R(s)), LV_REDIS_STRING);
	assert_memory_equal(lv_redis_reply_str(R(s), &len), "v\0x", 3);
	assert_int_equal(len, 3);
	assert_int_equal(lv_redis_reply_int(R(s)), 0);
	assert_int_equal(lv_redis_reply_len(R(s)), 0);

	assert_int_equal(lv_redis_reply_type(R(st)), LV_REDIS_STATUS);
	assert_string_equal(lv_redis_reply_str(R(st), &len), "OK");
	assert_int_equal(lv_redis_reply_type(R(e)), LV_REDIS_ERROR);
	assert_string_equal(lv_redis_reply_str(R(e), NULL), "ERR x");

	assert_int_equal(lv_redis_reply_type(R(n)), LV_REDIS_INTEGER);
	assert_int_equal(lv_redis_reply_int(R(n)), -42);
	assert_null(lv_redis_reply_str(R(n), &len));
	assert_int_equal(len, 0);

	assert_int_equal(lv_redis_reply_type(R(nil)), LV_REDIS_NIL);
	assert_null(lv_redis_reply_str(R(nil), NULL));

	assert_int_equal(lv_redis_reply_type(R(a)), LV_REDIS_ARRAY);
	assert_int_equal(lv_redis_reply_len(R(a)), 3);
	assert_ptr_equal(lv_redis_reply_at(R(a), 0), R(s));
	assert_int_equal(lv_redis_reply_int(lv_redis_reply_at(R(a), 1)), -42);
	assert_int_equal(lv_redis_reply_type(lv_redis_reply_at(R(a), 2)), LV_REDIS_NIL);
	assert_null(lv_redis_reply_at(R(a), 3));
	assert_null(lv_redis_reply_at(R(s), 0));
#undef R
}

/* --------------------------------------------- a client with no server */

static int n_cb;

static void count_cb(lv_redis_t *r, const lv_redis_reply_t *reply, void *arg)
{
	n_cb++;
}

static void msg_cb(lv_redis_t *r, const char *channel, const char *payload, size_t len, void *arg)
{
	n_cb++;
}

static void test_client_unreachable(void **state)
{
	lv_loop_t *loop = lv_loop_new();
	assert_non_null(loop);
	lv_err_t err = { 0 };
	int64_t connects = lv_metrics_sum(NULL, 0, LV_M_REDIS_CONNECTS_TOTAL, 0);
	int64_t refused = lv_metrics_sum(NULL, 0, LV_M_REDIS_COMMANDS_TOTAL,
					 LV_ML_REDIS_RESULT_DISCONNECTED);

	/* A socket that does not exist fails at once: still a client, just down. */
	lv_redis_opts_t opts = { .url = "unix:///nonexistent/levee-test.sock", .name = "test" };
	lv_redis_t *r = lv_redis_new(loop, &opts, &err);
	assert_non_null(r);
	assert_int_equal(lv_metrics_sum(NULL, 0, LV_M_REDIS_CONNECTS_TOTAL, 0), connects + 1);
	assert_false(lv_redis_is_up(r));
	assert_int_equal(lv_redis_pending(r), 0);

	n_cb = 0;
	const char *argv[] = { "GET", "k" };
	assert_false(lv_redis_cmd(r, count_cb, NULL, 2, argv, NULL));
	assert_false(lv_redis_cmdf(r, count_cb, NULL, "SET %s %s", "k", "v"));
	assert_int_equal(lv_metrics_sum(NULL, 0, LV_M_REDIS_COMMANDS_TOTAL,
					LV_ML_REDIS_RESULT_DISCONNECTED),
			 refused + 2);

	/* Subscriptions are kept for when it comes up; the same channel twice is one. */
	assert_true(lv_redis_subscribe(r, "inval", msg_cb, NULL));
	assert_true(lv_redis_subscribe(r, "inval", msg_cb, NULL));
	assert_true(lv_redis_subscribe(r, "other", msg_cb, NULL));

	lv_redis_free(r);
	assert_int_equal(n_cb, 0); /* nothing was sent, so nothing is called back */
	lv_redis_free(NULL);
	lv_loop_free(loop);
}

static void test_client_bad_args(void **state)
{
	lv_loop_t *loop = lv_loop_new();
	assert_non_null(loop);
	lv_err_t err = { 0 };
	lv_redis_opts_t opts = { .url = "redis://host:nope" };
	assert_null(lv_redis_new(loop, &opts, &err));
	assert_non_null(strstr(err.msg, "invalid port"));
	assert_null(lv_redis_new(loop, NULL, &err));
	assert_null(lv_redis_new(NULL, &opts, &err));
	assert_false(lv_redis_is_up(NULL));
	assert_int_equal(lv_redis_pending(NULL), 0);
	lv_loop_free(loop);
}

static int fail_after;

static bool fail_countdown(size_t n)
{
	return fail_after-- <= 0;
}

static void test_client_oom(void **state)
{
	lv_loop_t *loop = lv_loop_new();
	assert_non_null(loop);
	lv_redis_opts_t opts = { .url = "unix:///nonexistent/levee-test.sock" };
	/* Fail the first, then the second allocation of lv_redis_new(). */
	for (int k = 0; k < 2; k++) {
		lv_err_t err = { 0 };
		fail_after = k;
		lv_mem_set_fail_hook(fail_countdown);
		lv_redis_t *r = lv_redis_new(loop, &opts, &err);
		lv_mem_set_fail_hook(NULL);
		assert_null(r);
		assert_int_equal(err.code, LV_ENOMEM);
	}
	/* Out of memory in lv_redis_subscribe(): false, the client still works. */
	lv_err_t err = { 0 };
	lv_redis_t *r = lv_redis_new(loop, &opts, &err);
	assert_non_null(r);
	fail_after = 0;
	lv_mem_set_fail_hook(fail_countdown);
	assert_false(lv_redis_subscribe(r, "ch", msg_cb, NULL));
	fail_after = 1;
	assert_false(lv_redis_subscribe(r, "ch", msg_cb, NULL));
	lv_mem_set_fail_hook(NULL);
	assert_true(lv_redis_subscribe(r, "ch", msg_cb, NULL));
	lv_redis_free(r);
	lv_loop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_good),
		cmocka_unit_test(test_url_bad),
		cmocka_unit_test(test_url_error_hides_password),
		cmocka_unit_test(test_reply_null),
		cmocka_unit_test(test_reply_values),
		cmocka_unit_test(test_client_unreachable),
		cmocka_unit_test(test_client_bad_args),
		cmocka_unit_test(test_client_oom),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
