/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for core/log.c: level parsing, the line format, level filtering
 * inside the macros, the per-connection prefix hook and action, truncation of
 * long lines, sink switching, and lv_fatal() (in a child process).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <regex.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"

static char log_path[64];

static int setup(void **state)
{
	strcpy(log_path, "/tmp/levee-test-log-XXXXXX");
	int fd = mkstemp(log_path);
	if (fd < 0)
		return -1;
	close(fd);
	lv_log_level = LV_LOG_INFO;
	return lv_log_open(log_path) ? 0 : -1;
}

static int teardown(void **state)
{
	lv_log_close();
	lv_log_set_prefix_fn(NULL);
	unlink(log_path);
	return 0;
}

/* The whole log file as a string; the test frees it. */
static char *slurp(void)
{
	FILE *f = fopen(log_path, "r");
	assert_non_null(f);
	char *s = calloc(1, 65536);
	assert_non_null(s);
	size_t n = fread(s, 1, 65535, f);
	s[n] = '\0';
	fclose(f);
	return s;
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void test_level_parse(void **state)
{
	assert_int_equal(lv_log_level_parse("error"), LV_LOG_ERROR);
	assert_int_equal(lv_log_level_parse("WARNING"), LV_LOG_WARN);
	assert_int_equal(lv_log_level_parse("warn"), LV_LOG_WARN);
	assert_int_equal(lv_log_level_parse("info"), LV_LOG_INFO);
	assert_int_equal(lv_log_level_parse("Debug"), LV_LOG_DEBUG);
	assert_int_equal(lv_log_level_parse("trace"), LV_LOG_TRACE);
	assert_int_equal(lv_log_level_parse("fatal"), LV_LOG_FATAL);
	assert_int_equal(lv_log_level_parse("verbose"), -1);
	assert_int_equal(lv_log_level_parse(""), -1);
}

static void test_line_format(void **state)
{
	lv_log_info("started listeners n=%d", 2);
	char *s = slurp();
	regex_t re;
	char pattern[160];
	snprintf(pattern, sizeof(pattern),
		 "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3} "
		 "UTC \\[%d\\] LOG "
		 "started listeners n=2\n$",
		 (int)getpid());
	assert_int_equal(regcomp(&re, pattern, REG_EXTENDED), 0);
	assert_int_equal(regexec(&re, s, 0, NULL, 0), 0);
	regfree(&re);
	free(s);
}

static void test_level_filter(void **state)
{
	int evaluated = 0;
	lv_log_level = LV_LOG_WARN;
	lv_log_info("hidden %d", ++evaluated);
	lv_log_debug("hidden %d", ++evaluated);
	lv_log_warn("shown w");
	lv_log_error("shown e");
	/* A disabled level does not even evaluate its arguments. */
	assert_int_equal(evaluated, 0);
	lv_log_level = LV_LOG_TRACE;
	lv_log_trace("shown t");
	lv_log_debug("shown d");

	char *s = slurp();
	assert_int_equal(count_lines(s), 4);
	assert_non_null(strstr(s, " WARNING shown w\n"));
	assert_non_null(strstr(s, " ERROR shown e\n"));
	assert_non_null(strstr(s, " TRACE shown t\n"));
	assert_non_null(strstr(s, " DEBUG shown d\n"));
	assert_null(strstr(s, "hidden"));
	free(s);
}

typedef struct fake_conn {
	int id;
	const char *action;
} fake_conn_t;

static size_t prefix(const void *obj, char *buf, size_t len, const char **action)
{
	const fake_conn_t *c = obj;
	*action = c->action;
	int n = snprintf(buf, len, "C-%d app/alice@127.0.0.1:5000", c->id);
	return n < 0 ? 0 : (size_t)n;
}

static void test_connection_prefix(void **state)
{
	fake_conn_t c = {12, "while routing to replica"};
	fake_conn_t quiet = {13, NULL};

	/* Without a hook, the object is ignored. */
	lv_clog_info(&c, "no hook");
	lv_log_set_prefix_fn(prefix);
	lv_clog_warn(&c, "query_wait_timeout ms=%d", 500);
	lv_clog_info(&quiet, "closing");
	lv_log_info("not a connection");

	char *s = slurp();
	assert_int_equal(count_lines(s), 4);
	assert_non_null(strstr(s, " LOG no hook\n"));
	assert_non_null(strstr(s, " WARNING C-12 app/alice@127.0.0.1:5000: query_wait_timeout "
				  "ms=500 (while routing to replica)\n"));
	assert_non_null(strstr(s, " LOG C-13 app/alice@127.0.0.1:5000: closing\n"));
	assert_non_null(strstr(s, " LOG not a connection\n"));
	free(s);
}

static void test_long_line_truncated(void **state)
{
	char big[5000];
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	lv_log_info("%s", big);
	lv_log_info("after");
	char *s = slurp();
	assert_int_equal(count_lines(s), 2);
	char *nl = strchr(s, '\n');
	assert_true(nl - s < 2048);
	assert_true(nl - s > 2000);
	assert_int_equal(nl[-1], 'q');
	assert_non_null(strstr(nl + 1, " LOG after\n"));
	free(s);
}

static void test_sink_switch(void **state)
{
	/* A file that cannot be opened is refused and the current sink stays. */
	assert_false(lv_log_open("/nonexistent-dir/levee.log"));
	lv_log_info("still here");
	char *s = slurp();
	assert_non_null(strstr(s, "still here"));
	free(s);

	/* Back to stderr: the file gets nothing more. */
	assert_true(lv_log_open(NULL));
	int saved = dup(STDERR_FILENO);
	FILE *null = fopen("/dev/null", "w");
	assert_non_null(null);
	dup2(fileno(null), STDERR_FILENO);
	lv_log_info("to stderr");
	dup2(saved, STDERR_FILENO);
	close(saved);
	fclose(null);
	s = slurp();
	assert_null(strstr(s, "to stderr"));
	free(s);
}

static void test_fatal_exits(void **state)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		lv_fatal("cannot bind port=%d", 6432);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	char *s = slurp();
	assert_non_null(strstr(s, " FATAL cannot bind port=6432\n"));
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_level_parse),
		cmocka_unit_test_setup_teardown(test_line_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_line_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sink_switch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fatal_exits, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
