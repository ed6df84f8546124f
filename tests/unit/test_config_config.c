/* levee-test-deps: src/config/config_keys.c src/config/config_dbs.c src/config/config_rules.c src/config/auth_file.c tests/unit/helpers/config_files.c */
/* SPDX-License-Identifier: ISC */
/*
 * Tests of src/config/: the corpus under tests/unit/fixtures/config/ (every
 * .ini file in valid/ must load; every .ini file in invalid/ must fail with
 * exactly the lines of its .expect file), the shipped samples in etc/, the value syntax, the
 * table's integrity, lookups and effective values, SHOW CONFIG masking, the
 * reload diff and the reference count (run under valgrind by
 * `make valgrind-unit`, which fails on leaks).
 *
 * Run from the repository root, as `make check-unit` does.
 */
#include "core/lv.h"

#include <dirent.h>
#include <setjmp.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/config_int.h"
#include "core/log.h"
#include "core/mem.h"
#include "helpers/config_files.h"

#define FIXTURES "tests/unit/fixtures/config"

/* ---- Helpers ---- */

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	lv_buf_t b;
	lv_buf_init(&b);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		assert_true(lv_buf_append(&b, chunk, n));
	fclose(f);
	assert_true(lv_buf_put_u8(&b, 0));
	return (char *)b.data;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the files in dir that end in suffix; n set to their count. */
static char **list_dir(const char *dir, const char *suffix, size_t *n)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	char **names = NULL;
	size_t cap = 0;
	*n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name), sl = strlen(suffix);
		if (l <= sl || strcmp(e->d_name + l - sl, suffix) != 0)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			names = lv_xrealloc(names, cap * sizeof(*names));
		}
		names[(*n)++] = lv_xstrdup(e->d_name);
	}
	closedir(d);
	qsort(names, *n, sizeof(*names), cmp_str);
	return names;
}

static void free_list(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		lv_free(names[i]);
	lv_free(names);
}

/* ---- The corpus ---- */

static void test_valid_corpus(void **state)
{
	size_t n;
	char **names = list_dir(FIXTURES "/valid", ".ini", &n);
	assert_true(n >= 7);
	for (size_t i = 0; i < n; i++) {
		char path[512];
		snprintf(path, sizeof(path), FIXTURES "/valid/%s", names[i]);
		lv_config_unref(lv_test_load_ok(path));
	}
	free_list(names, n);
}

/*
 * Each invalid/X.ini is loaded from inside its directory as "X.ini", so the
 * messages carry the path as given; the whole error text must equal X.expect.
 */
static void test_invalid_corpus(void **state)
{
	char cwd[4096];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	size_t n;
	char **names = list_dir(FIXTURES "/invalid", ".ini", &n);
	assert_true(n >= 20);
	assert_int_equal(chdir(FIXTURES "/invalid"), 0);

	int failures = 0;
	for (size_t i = 0; i < n; i++) {
		char expect_path[512];
		snprintf(expect_path, sizeof(expect_path), "%.*s.expect",
			 (int)(strlen(names[i]) - 4), names[i]);
		char *expect = read_file(expect_path);
		if (!expect) {
			print_error("%s: missing %s\n", names[i], expect_path);
			failures++;
			continue;
		}
		lv_buf_t errors;
		lv_buf_init(&errors);
		lv_config_t *cfg = lv_config_load(names[i], &errors);
		const char *got = lv_test_buf_str(&errors);
		if (cfg || strcmp(got, expect) != 0) {
			print_error("%s: %s\n--- expected:\n%s--- got:\n%s", names[i],
				    cfg ? "loaded but must fail" : "wrong messages", expect, got);
			failures++;
		}
		lv_config_unref(cfg);
		lv_buf_cleanup(&errors);
		lv_free(expect);
	}
	assert_int_equal(chdir(cwd), 0);
	free_list(names, n);
	assert_int_equal(failures, 0);
}

static void test_samples_load(void **state)
{
	lv_config_t *cfg = lv_test_load_ok("etc/levee.ini");
	assert_non_null(lv_config_find_db(cfg, "app"));
	assert_true(cfg->n_auth > 0);
	lv_config_unref(cfg);
	cfg = lv_test_load_ok("etc/levee-minimal.ini");
	assert_true(cfg->n_dbs >= 1);
	lv_config_unref(cfg);
}

static void test_missing_file(void **state)
{
	lv_buf_t errors;
	lv_buf_init(&errors);
	assert_null(lv_config_load(FIXTURES "/no-such-file.ini", &errors));
	assert_string_equal(lv_test_buf_str(&errors),
			    FIXTURES "/no-such-file.ini: cannot open: No such file or directory\n");
	lv_buf_cleanup(&errors);
	/* A NULL error buffer is allowed. */
	assert_null(lv_config_load(FIXTURES "/no-such-file.ini", NULL));
}

/* ---- Values ---- */

static void test_defaults(void **state)
{
	lv_config_t *cfg = lv_test_load_ok(FIXTURES "/valid/minimal.ini");
	assert_string_equal(cfg->levee.listen, "127.0.0.1:6432");
	assert_null(cfg->levee.http_listen);
	assert_int_equal(cfg->levee.workers, 0);
	assert_null(cfg->levee.auth_file);
	assert_int_equal(cfg->levee.auth_type, LV_AUTH_TRUST);
	assert_null(cfg->levee.redis);
	assert_int_equal(cfg->levee.log_level, LV_LOG_INFO);
	assert_true(cfg->levee.log_connections);
	assert_true(cfg->levee.log_disconnections);
	assert_int_equal(cfg->levee.max_client_conn, 10000);
	assert_int_equal(cfg->levee.client_login_timeout_ms, 60000);
	assert_int_equal(cfg->levee.shutdown_timeout_ms, 30000);
	assert_int_equal(cfg->levee.cancel_wait_timeout_ms, 10000);
	assert_int_equal(cfg->levee.max_packet_size, 1073741823);
	assert_int_equal(cfg->pool.pool_mode, LV_POOL_SESSION);
	assert_int_equal(cfg->pool.pool_size, 20);
	assert_int_equal(cfg->pool.min_pool_size, 0);
	assert_int_equal(cfg->pool.reserve_pool_timeout_ms, 5000);
	assert_int_equal(cfg->pool.server_connect_concurrency, 4);
	assert_int_equal(cfg->pool.query_wait_timeout_ms, 120000);
	assert_int_equal(cfg->pool.client_idle_timeout_ms, 0);
	assert_int_equal(cfg->pool.server_idle_timeout_ms, 600000);
	assert_int_equal(cfg->pool.server_lifetime_ms, 3600000);
	assert_int_equal(cfg->pool.server_connect_timeout_ms, 15000);
	assert_int_equal(cfg->pool.server_login_retry_ms, 1000);
	assert_string_equal(cfg->pool.server_reset_query, "DISCARD ALL");
	assert_int_equal(cfg->pool.max_prepared_statements, 200);
	assert_int_equal(cfg->pool.session_state, LV_SESSION_STATE_PIN);
	assert_int_equal(cfg->tls.client_tls_mode, LV_CLIENT_TLS_DISABLE);
	assert_int_equal(cfg->tls.server_tls, LV_SERVER_TLS_DISABLE);
	assert_int_equal(cfg->routing.health_check_period_ms, 1000);
	assert_int_equal(cfg->routing.health_check_failures, 3);
	assert_int_equal(cfg->routing.health_check_timeout_ms, 1000);
	assert_null(cfg->routing.health_check_user);
	assert_null(cfg->routing.health_check_password);
	assert_int_equal(cfg->routing.max_replica_lag_ms, 1000);
	assert_int_equal(cfg->routing.max_replica_lag_bytes, 16 * 1024 * 1024);
	assert_int_equal(cfg->routing.replica_fallback, LV_FALLBACK_PRIMARY);
	assert_int_equal(cfg->routing.read_your_writes, LV_RYW_LSN);
	assert_int_equal(cfg->routing.read_your_writes_timeout_ms, 2000);
	assert_int_equal(cfg->routing.failover, LV_FAILOVER_OFF);
	assert_null(cfg->routing.write_functions);
	assert_int_equal(cfg->generation, 1);
	assert_int_equal(cfg->refcount, 1);
	assert_string_equal(cfg->path, FIXTURES "/valid/minimal.ini");

	assert_int_equal(cfg->n_dbs, 1);
	const lv_cfg_db_t *db = lv_config_find_db(cfg, "app");
	assert_non_null(db);
	assert_string_equal(db->dbname, "app");
	assert_string_equal(db->user, "");
	assert_null(db->password);
	assert_string_equal(db->primary.host, "127.0.0.1");
	assert_int_equal(db->primary.port, 5432);
	assert_int_equal(db->n_replicas, 0);
	assert_int_equal(db->pool_mode, -1);
	assert_int_equal(db->pool_size, -1);
	assert_int_equal(db->route, LV_ROUTE_MODE_AUTO);
	assert_int_equal(db->line, 5);
	lv_config_unref(cfg);
}

/* Collects SHOW CONFIG lines as "section.key=value\n". */
static void show_all_cb(void *arg, const char *section, const char *key, const char *value,
			bool is_reloadable)
{
	assert_true(lv_buf_printf(arg, "%s.%s=%s\n", section, key, value));
}

static void test_routing_values(void **state)
{
	lv_config_t *cfg = lv_test_load_ok(FIXTURES "/valid/routing.ini");
	assert_int_equal(cfg->routing.health_check_period_ms, 5000);
	assert_int_equal(cfg->routing.health_check_failures, 5);
	assert_int_equal(cfg->routing.health_check_timeout_ms, 1500);
	assert_string_equal(cfg->routing.health_check_user, "levee_monitor");
	assert_string_equal(cfg->routing.health_check_password, "m0nitor-pw");
	assert_int_equal(cfg->routing.max_replica_lag_ms, 0);
	/* Past INT_MAX: the field is 64-bit. */
	assert_true(cfg->routing.max_replica_lag_bytes == 3LL * 1024 * 1024 * 1024);
	assert_int_equal(cfg->routing.replica_fallback, LV_FALLBACK_ERROR);
	assert_int_equal(cfg->routing.read_your_writes, LV_RYW_TIME);
	assert_int_equal(cfg->routing.read_your_writes_timeout_ms, 500);
	assert_int_equal(cfg->routing.failover, LV_FAILOVER_FOLLOW);
	assert_string_equal(cfg->routing.write_functions, "audit_log, app.touch, app.log_*");

	assert_int_equal(lv_config_find_db(cfg, "app")->route, LV_ROUTE_MODE_AUTO);
	assert_int_equal(lv_config_find_db(cfg, "reports")->route, LV_ROUTE_MODE_REPLICAS);
	assert_int_equal(lv_config_find_db(cfg, "billing")->route, LV_ROUTE_MODE_PRIMARY);
	assert_int_equal(lv_config_find_db(cfg, "plain")->route, LV_ROUTE_MODE_AUTO);

	/* SHOW CONFIG renders them in the file's syntax and masks the password. */
	lv_buf_t all;
	lv_buf_init(&all);
	lv_config_for_each(cfg, show_all_cb, &all);
	const char *text = lv_test_buf_str(&all);
	assert_null(strstr(text, "m0nitor-pw"));
	static const char *const want[] = {
		"routing.health_check_period=5s\n",
		"routing.health_check_failures=5\n",
		"routing.health_check_timeout=1500ms\n",
		"routing.health_check_user=levee_monitor\n",
		"routing.health_check_password=********\n",
		"routing.max_replica_lag=0\n",
		"routing.max_replica_lag_bytes=3GB\n",
		"routing.replica_fallback=error\n",
		"routing.read_your_writes=time\n",
		"routing.read_your_writes_timeout=500ms\n",
		"routing.failover=follow\n",
		"routing.write_functions=audit_log, app.touch, app.log_*\n",
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(want); i++) {
		if (!strstr(text, want[i]))
			print_error("missing %s", want[i]);
		assert_non_null(strstr(text, want[i]));
	}
	lv_buf_cleanup(&all);
	lv_config_unref(cfg);

	/* The defaults render as the table writes them. */
	cfg = lv_test_load_ok(FIXTURES "/valid/minimal.ini");
	lv_buf_init(&all);
	lv_config_for_each(cfg, show_all_cb, &all);
	text = lv_test_buf_str(&all);
	assert_non_null(strstr(text, "routing.max_replica_lag_bytes=16MB\n"));
	assert_non_null(strstr(text, "routing.health_check_password=\n"));
	assert_non_null(strstr(text, "routing.read_your_writes=lsn\n"));
	lv_buf_cleanup(&all);
	lv_config_unref(cfg);
}

static void test_routing_rules(void **state)
{
	char *e;

	/* Equal timeout and period are allowed; lsn mode accepts a timeout of 0 (no limit). */
	e = lv_test_load_errors("r1.ini", "[levee]\nauth_type = trust\n[routing]\n"
					  "health_check_period = 2s\nhealth_check_timeout = 2s\n"
					  "read_your_writes_timeout = 0\n");
	assert_string_equal(e, "");
	lv_free(e);

	/* The later of the two lines is named, also across two [routing] sections. */
	e = lv_test_load_errors("r2.ini", "[levee]\nauth_type = trust\n[routing]\n"
					  "health_check_period = 200ms\n[pool]\npool_size = 5\n"
					  "[routing]\nhealth_check_timeout = 300ms\n");
	assert_string_equal(e, "r2.ini:8: health_check_timeout (300ms) is longer than "
			       "health_check_period (200ms)\n");
	lv_free(e);

	/* A refused value is reported once; the rule across keys does not pile on. */
	e = lv_test_load_errors("r3.ini",
				"[levee]\nauth_type = trust\n[routing]\n"
				"health_check_period = 200ms\nhealth_check_timeout = 5min\n");
	assert_string_equal(e, "r3.ini:5: invalid value \"5min\" for health_check_timeout: "
			       "expected a duration from 100ms to 1min, such as 500ms, 30s, 5min "
			       "or 1h\n");
	lv_free(e);
	e = lv_test_load_errors("r4.ini",
				"[levee]\nauth_type = trust\n[database app]\n"
				"primary = 127.0.0.1:5432\nreplicas = bad\nroute = replicas\n");
	assert_non_null(strstr(e, "r4.ini:5: invalid value \"bad\" for replicas"));
	assert_null(strstr(e, "route = replicas"));
	lv_free(e);

	/* time mode with the default timeout, and route = replicas with replicas, load. */
	e = lv_test_load_errors("r5.ini",
				"[levee]\nauth_type = trust\n[routing]\n"
				"read_your_writes = TIME\nfailover = Follow\n[database app]\n"
				"primary = 127.0.0.1:5432\nreplicas = 127.0.0.1:5433\n"
				"route = replicas\n");
	assert_string_equal(e, "");
	lv_free(e);
}

/* Runs the write_functions row on value; returns its result, with err filled on failure. */
static int set_write_functions(const char *value, lv_err_t *err)
{
	const lv__key_t *k = lv__key_find(lv__keys, lv__n_keys, "routing", "write_functions");
	assert_non_null(k);
	lv_config_t cfg;
	memset(&cfg, 0, sizeof(cfg));
	int rc = lv__value_set(k, value, "", &cfg, err);
	lv__values_free(k, 1, &cfg);
	return rc;
}

static void test_write_functions(void **state)
{
	static const char *const good[] = {
		"audit_log",    "app.touch",    " audit_log ,\tapp.touch ", "app.log_*",
		"pg_advisory*", "Mixed_Case$1", "schéma.fonction",
	};
	static const char *const bad[] = {
		"a,,b",        "audit_log,", "*",         "app.*", "a.b.c",
		"app.touch()", "\"Quoted\"", "two words", ".x",    "x.",
	};
	lv_err_t err;
	for (size_t i = 0; i < LV_ARRAY_LEN(good); i++) {
		if (set_write_functions(good[i], &err) != 0)
			print_error("refused \"%s\": %s\n", good[i], err.msg);
		assert_int_equal(set_write_functions(good[i], &err), 0);
	}
	for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
		if (set_write_functions(bad[i], &err) == 0)
			print_error("accepted \"%s\"\n", bad[i]);
		assert_true(set_write_functions(bad[i], &err) < 0);
	}
	assert_true(set_write_functions("a,,b", &err) < 0);
	assert_string_equal(err.msg, "the list has an empty entry");
	char long_name[LV_NAME_LEN + 1];
	memset(long_name, 'f', LV_NAME_LEN);
	long_name[LV_NAME_LEN] = '\0';
	assert_true(set_write_functions(long_name, &err) < 0);
	long_name[LV_NAME_LEN - 1] = '\0';
	assert_int_equal(set_write_functions(long_name, &err), 0);
}

static void test_full_values(void **state)
{
	lv_config_t *cfg = lv_test_load_ok(FIXTURES "/valid/full.ini");
	assert_string_equal(cfg->levee.listen, "0.0.0.0:7432, [::1]:7432, /tmp/.s.PGSQL.7432");
	assert_string_equal(cfg->levee.http_listen, "127.0.0.1:9930");
	assert_int_equal(cfg->levee.workers, 4);
	assert_string_equal(cfg->levee.auth_file, FIXTURES "/valid/users.txt");
	assert_int_equal(cfg->levee.auth_type, LV_AUTH_SCRAM);
	assert_string_equal(cfg->levee.logfile, FIXTURES "/valid/levee.log");
	assert_string_equal(cfg->levee.pidfile, "/run/levee/levee.pid");
	assert_int_equal(cfg->levee.log_level, LV_LOG_DEBUG);
	assert_false(cfg->levee.log_connections);
	assert_false(cfg->levee.log_disconnections);
	assert_int_equal(cfg->levee.max_client_conn, 5000);
	assert_int_equal(cfg->levee.client_login_timeout_ms, 15000);
	assert_int_equal(cfg->levee.shutdown_timeout_ms, 120000);
	assert_int_equal(cfg->levee.cancel_wait_timeout_ms, 500);
	assert_int_equal(cfg->levee.max_packet_size, 64 * 1024 * 1024);
	assert_int_equal(cfg->pool.pool_mode, LV_POOL_TRANSACTION);
	assert_int_equal(cfg->pool.pool_size, 50);
	assert_int_equal(cfg->pool.min_pool_size, 5);
	assert_int_equal(cfg->pool.reserve_pool_size, 3);
	assert_int_equal(cfg->pool.reserve_pool_timeout_ms, 2000);
	assert_int_equal(cfg->pool.max_db_connections, 200);
	assert_int_equal(cfg->pool.max_user_connections, 100);
	assert_int_equal(cfg->pool.server_connect_concurrency, 8);
	assert_int_equal(cfg->pool.query_wait_timeout_ms, 60000);
	assert_int_equal(cfg->pool.client_idle_timeout_ms, 3600000);
	assert_int_equal(cfg->pool.idle_transaction_timeout_ms, 30000);
	assert_int_equal(cfg->pool.server_idle_timeout_ms, 300000);
	assert_int_equal(cfg->pool.server_lifetime_ms, 7200000);
	assert_int_equal(cfg->pool.server_connect_timeout_ms, 3000);
	assert_int_equal(cfg->pool.server_login_retry_ms, 250);
	assert_string_equal(cfg->pool.server_reset_query, "DISCARD ALL; RESET ROLE");
	assert_int_equal(cfg->pool.max_prepared_statements, 0);
	assert_int_equal(cfg->pool.session_state, LV_SESSION_STATE_REJECT);
	assert_int_equal(cfg->tls.client_tls_mode, LV_CLIENT_TLS_REQUIRE);
	assert_string_equal(cfg->tls.cert_file, FIXTURES "/valid/certs/server.crt");
	assert_string_equal(cfg->tls.key_file, FIXTURES "/valid/certs/server.key");
	assert_int_equal(cfg->tls.server_tls, LV_SERVER_TLS_PREFER);

	assert_int_equal(cfg->n_dbs, 2);
	const lv_cfg_db_t *app = lv_config_find_db(cfg, "app");
	assert_non_null(app);
	assert_string_equal(app->primary.host, "db1.internal");
	assert_int_equal(app->n_replicas, 2);
	assert_string_equal(app->replicas[0].host, "db2.internal");
	assert_int_equal(app->replicas[0].weight, 200);
	assert_string_equal(app->replicas[1].host, "10.0.0.3");
	assert_int_equal(app->replicas[1].port, 5433);
	assert_int_equal(app->replicas[1].weight, 100);
	assert_string_equal(app->dbname, "app_production");
	assert_string_equal(app->user, "app_rw");
	assert_string_equal(app->password, "s3cret");
	assert_int_equal(app->pool_mode, LV_POOL_SESSION);
	assert_int_equal(app->pool_size, 10);
	assert_int_equal(app->min_pool_size, 2);
	assert_int_equal(app->reserve_pool_size, 1);
	assert_int_equal(app->max_db_connections, 40);
	assert_int_equal(cfg->n_users, 2);
	assert_int_equal(lv_config_find_user(cfg, "reporter")->max_user_connections, 5);
	assert_int_equal(lv_config_find_user(cfg, "alice")->max_user_connections, 0);
	lv_config_unref(cfg);
}

static void test_hosts(void **state)
{
	lv_config_t *cfg = lv_test_load_ok(FIXTURES "/valid/hosts.ini");
	const lv_cfg_db_t *db = lv_config_find_db(cfg, "v6");
	assert_string_equal(db->primary.host, "::1");
	assert_int_equal(db->primary.port, 5432);
	assert_int_equal(db->n_replicas, 2);
	assert_string_equal(db->replicas[0].host, "fe80::1%eth0");
	assert_int_equal(db->replicas[0].weight, 1);
	assert_int_equal(db->replicas[1].port, 6000);
	assert_int_equal(db->replicas[1].weight, 1000);
	db = lv_config_find_db(cfg, "sock");
	assert_string_equal(db->primary.host, "/var/run/postgresql");
	assert_int_equal(db->primary.port, 5432);
	db = lv_config_find_db(cfg, "names");
	assert_string_equal(db->replicas[1].host, "db_3");
	lv_config_unref(cfg);

	lv_cfg_host_t h;
	lv_err_t err;
	assert_int_equal(lv__host_parse("*:6432", LV__HOST_WILDCARD, &h, &err), 0);
	assert_string_equal(h.host, "*");
	assert_true(lv__host_parse("*:6432", 0, &h, &err) < 0);
	assert_true(lv__host_parse("h:0", 0, &h, &err) < 0);
	assert_string_equal(err.msg, "the port must be from 1 to 65535");
	assert_true(lv__host_parse("h:", 0, &h, &err) < 0);
	assert_true(lv__host_parse("[::1]5432", 0, &h, &err) < 0);
	assert_true(lv__host_parse("bad host:1", 0, &h, &err) < 0);
	assert_int_equal(lv__host_parse("/tmp/.s.PGSQL.6432", LV__HOST_PATH, &h, &err), 0);
	assert_true(lv__host_parse("/tmp/.s.PGSQL.6432", 0, &h, &err) < 0);
}

static void test_layout(void **state)
{
	lv_config_t *cfg = lv_test_load_ok(FIXTURES "/valid/layout.ini");
	assert_int_equal(cfg->levee.auth_type, LV_AUTH_TRUST);
	assert_int_equal(cfg->levee.log_level, LV_LOG_WARN);
	assert_int_equal(cfg->pool.pool_size, 7);
	assert_string_equal(cfg->pool.server_reset_query, "SELECT 1;SELECT 2");
	assert_string_equal(lv_config_find_db(cfg, "app")->primary.host, "localhost");
	lv_config_unref(cfg);

	cfg = lv_test_load_ok(FIXTURES "/valid/long_line.ini");
	const lv_cfg_db_t *db = lv_config_find_db(cfg, "app");
	assert_int_equal(db->n_replicas, 12);
	assert_string_equal(db->replicas[11].host, "replica-12.db.example.internal");
	assert_int_equal(db->replicas[11].weight, 120);
	lv_config_unref(cfg);

	cfg = lv_test_load_ok(FIXTURES "/valid/units.ini");
	assert_int_equal(cfg->levee.workers, 0);
	assert_int_equal(cfg->levee.client_login_timeout_ms, 2500);
	assert_int_equal(cfg->levee.shutdown_timeout_ms, 86400000);
	assert_int_equal(cfg->levee.max_packet_size, 1024 * 1024);
	assert_int_equal(cfg->pool.query_wait_timeout_ms, 90000);
	assert_int_equal(cfg->pool.server_lifetime_ms, 7LL * 86400000);
	lv_config_unref(cfg);

	cfg = lv_test_load_ok(FIXTURES "/valid/no_databases.ini");
	assert_int_equal(cfg->n_dbs, 0);
	assert_null(lv_config_find_db(cfg, "app"));
	lv_config_unref(cfg);
}

static void test_long_value_error(void **state)
{
	/* A refused over-long value is quoted back cut to 80 bytes, a list entry to 64. */
	char text[600];
	char bad[400];
	memset(bad, 'x', sizeof(bad) - 1);
	bad[sizeof(bad) - 1] = '\0';
	snprintf(text, sizeof(text), "[levee]\nauth_type = trust\nlisten = %s:1 ; c\n", bad);
	const char *path = lv_test_write_temp("long.ini", text);
	lv_buf_t errors;
	lv_buf_init(&errors);
	assert_null(lv_config_load(path, &errors));
	char want[1024];
	snprintf(want, sizeof(want),
		 "%s:3: invalid value \"%.80s...\" for listen: entry \"%.64s...\": the host is "
		 "longer than 255 bytes\n",
		 path, bad, bad);
	assert_string_equal(lv_test_buf_str(&errors), want);
	lv_buf_cleanup(&errors);
}

/* The comma-list walker behind every list setting: trimmed entries, empty ones kept. */
static void check_list_next(void)
{
	const char *p = " a ,\tbb,, c d ", *e;
	size_t n;
	static const char *const want[] = {"a", "bb", "", "c d"};
	for (size_t i = 0; i < LV_ARRAY_LEN(want); i++) {
		e = lv__list_next(&p, &n);
		assert_non_null(e);
		assert_int_equal(n, strlen(want[i]));
		assert_memory_equal(e, want[i], n);
	}
	assert_null(lv__list_next(&p, &n));
	assert_null(lv__list_next(&p, &n));
	/* An empty list is one empty entry, so "expected a list" can be reported. */
	p = "";
	assert_non_null(lv__list_next(&p, &n));
	assert_int_equal(n, 0);
	assert_null(lv__list_next(&p, &n));
	/* A trailing comma leaves an empty last entry. */
	p = "x,";
	assert_non_null(lv__list_next(&p, &n));
	assert_int_equal(n, 1);
	assert_non_null(lv__list_next(&p, &n));
	assert_int_equal(n, 0);
	assert_null(lv__list_next(&p, &n));
}

static void test_parsers(void **state)
{
	int64_t v;
	bool b;
	assert_int_equal(lv__parse_duration("5s", &v), 0);
	assert_int_equal(v, 5000);
	assert_int_equal(lv__parse_duration("500ms", &v), 0);
	assert_int_equal(v, 500);
	assert_int_equal(lv__parse_duration("2min", &v), 0);
	assert_int_equal(v, 120000);
	assert_int_equal(lv__parse_duration("1h", &v), 0);
	assert_int_equal(v, 3600000);
	assert_int_equal(lv__parse_duration("1d", &v), 0);
	assert_int_equal(v, 86400000);
	assert_int_equal(lv__parse_duration("250", &v), 0);
	assert_int_equal(v, 250);
	assert_int_equal(lv__parse_duration("3 S", &v), 0);
	assert_int_equal(v, 3000);
	assert_true(lv__parse_duration("", &v) < 0);
	assert_true(lv__parse_duration("5m", &v) < 0);
	assert_true(lv__parse_duration("-5s", &v) < 0);
	assert_true(lv__parse_duration("1.5s", &v) < 0);
	assert_int_equal(lv__parse_duration("99999999999999999999d", &v), LV_ERANGE);
	assert_int_equal(lv__parse_duration("9999999999999999d", &v), LV_ERANGE);

	assert_int_equal(lv__parse_size("256MB", &v), 0);
	assert_int_equal(v, 256LL << 20);
	assert_int_equal(lv__parse_size("1kb", &v), 0);
	assert_int_equal(v, 1024);
	assert_int_equal(lv__parse_size("1GB", &v), 0);
	assert_int_equal(v, 1LL << 30);
	assert_int_equal(lv__parse_size("77", &v), 0);
	assert_int_equal(v, 77);
	assert_true(lv__parse_size("1XB", &v) < 0);

	assert_int_equal(lv__parse_int("-12", &v), 0);
	assert_int_equal(v, -12);
	assert_true(lv__parse_int("12a", &v) < 0);
	assert_true(lv__parse_int("", &v) < 0);
	assert_int_equal(lv__parse_int("99999999999999999999", &v), LV_ERANGE);

	assert_int_equal(lv__parse_bool("Yes", &b), 0);
	assert_true(b);
	assert_int_equal(lv__parse_bool("OFF", &b), 0);
	assert_false(b);
	assert_true(lv__parse_bool("2", &b) < 0);

	char buf[32];
	assert_string_equal(lv__render_duration(0, buf, sizeof(buf)), "0");
	assert_string_equal(lv__render_duration(600000, buf, sizeof(buf)), "10min");
	assert_string_equal(lv__render_duration(1500, buf, sizeof(buf)), "1500ms");
	assert_string_equal(lv__render_duration(7200000, buf, sizeof(buf)), "2h");
	assert_string_equal(lv__render_size(1073741823, buf, sizeof(buf)), "1073741823");
	assert_string_equal(lv__render_size(64 << 20, buf, sizeof(buf)), "64MB");
	assert_string_equal(lv__render_size(0, buf, sizeof(buf)), "0");

	assert_true(lv__name_valid("app_1.v2-x$y@z"));
	assert_false(lv__name_valid(""));
	assert_false(lv__name_valid("my app"));

	check_list_next();
}

/* ---- The tables ---- */

typedef struct key_seen {
	size_t n;
	size_t n_reload;
	bool dup;
	bool empty_doc;
	char seen[128][48];
} key_seen_t;

static void collect_key(void *arg, const lv_config_key_info_t *info)
{
	key_seen_t *ks = arg;
	char id[48];
	snprintf(id, sizeof(id), "%s/%s", info->section, info->key);
	for (size_t i = 0; i < ks->n && i < 128; i++)
		if (strcmp(ks->seen[i], id) == 0)
			ks->dup = true;
	if (ks->n < 128)
		snprintf(ks->seen[ks->n], sizeof(ks->seen[0]), "%s", id);
	ks->n++;
	ks->n_reload += info->is_reloadable;
	if (!info->doc[0] || !info->type[0])
		ks->empty_doc = true;
}

static void test_tables(void **state)
{
	assert_int_equal(lv__keys_check(lv__keys, lv__n_keys), 0);
	assert_int_equal(lv__keys_check(lv__db_keys, lv__n_db_keys), 0);
	assert_int_equal(lv__keys_check(lv__user_keys, lv__n_user_keys), 0);
	assert_int_equal(lv__keys_check(lv__cache_rule_keys, lv__n_cache_rule_keys), 0);
	assert_int_equal(lv__keys_check(lv__queue_rule_keys, lv__n_queue_rule_keys), 0);

	key_seen_t ks;
	memset(&ks, 0, sizeof(ks));
	lv_config_for_each_key(collect_key, &ks);
	assert_int_equal(ks.n, lv__n_keys + lv__n_db_keys + lv__n_user_keys +
				       lv__n_cache_rule_keys + lv__n_queue_rule_keys);
	assert_false(ks.dup);
	assert_false(ks.empty_doc);

	/* Fixed keys are unique across sections too, as lv_config_diff() names them by key. */
	for (size_t i = 0; i < lv__n_keys; i++)
		for (size_t j = i + 1; j < lv__n_keys; j++)
			assert_string_not_equal(lv__keys[i].key, lv__keys[j].key);

	/* The reloadable set the proxy relies on. */
	static const char *const reload[] = {
		"auth_file",          "auth_type",           "admin_users",
		"stats_users",        "log_level",           "log_connections",
		"log_disconnections", "max_client_conn",     "client_login_timeout",
		"shutdown_timeout",   "cancel_wait_timeout",
	};
	static const char *const restart[] = {
		"listen",  "http_listen",     "workers",         "redis",     "logfile",
		"pidfile", "max_packet_size", "client_tls_mode", "cert_file", "key_file",
		"ca_file", "server_tls",      "server_ca_file",
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(reload); i++)
		assert_true(lv__key_find(lv__keys, lv__n_keys, NULL, reload[i])->flags &
			    LV_CF_RELOAD);
	for (size_t i = 0; i < LV_ARRAY_LEN(restart); i++)
		assert_false(lv__key_find(lv__keys, lv__n_keys, NULL, restart[i])->flags &
			     LV_CF_RELOAD);
	for (size_t i = 0; i < lv__n_keys; i++)
		if (strcmp(lv__keys[i].section, "pool") == 0 ||
		    strcmp(lv__keys[i].section, "routing") == 0)
			assert_true(lv__keys[i].flags & LV_CF_RELOAD);
	assert_int_equal(
		lv__key_find(lv__keys, lv__n_keys, "routing", "max_replica_lag_bytes")->type,
		LV__T_SIZE64);
	assert_true(lv__key_find(lv__keys, lv__n_keys, "routing", "health_check_password")->flags &
		    LV_CF_SECRET);
	assert_true(lv__key_find(lv__db_keys, lv__n_db_keys, NULL, "route")->flags & LV_CF_RELOAD);
}

/* ---- Lookups and effective values ---- */

static void test_auth_file(void **state)
{
	lv_config_t *cfg = lv_test_load_ok(FIXTURES "/valid/auth.ini");
	assert_int_equal(cfg->n_auth, 6);
	for (size_t i = 1; i < cfg->n_auth; i++)
		assert_true(strcmp(cfg->auth[i - 1].user, cfg->auth[i].user) < 0);

	const lv_auth_entry_t *e = lv_config_find_auth(cfg, "alice");
	assert_non_null(e);
	assert_int_equal(e->kind, LV_SECRET_MD5);
	assert_string_equal(e->secret, "md54a0a68b43b6cd5cf266fa02f196e2371");
	e = lv_config_find_auth(cfg, "bob");
	assert_int_equal(e->kind, LV_SECRET_SCRAM);
	e = lv_config_find_auth(cfg, "carol");
	assert_int_equal(e->kind, LV_SECRET_PLAIN);
	assert_string_equal(e->secret, "pa\"ss word");
	e = lv_config_find_auth(cfg, "dan\"o");
	assert_non_null(e);
	assert_int_equal(e->kind, LV_SECRET_PLAIN);
	assert_string_equal(lv_config_find_auth(cfg, "admin")->secret, "admin-pw");
	assert_null(lv_config_find_auth(cfg, "mallory"));
	assert_null(lv_config_find_auth(cfg, ""));
	lv_config_unref(cfg);
}

static void test_lookups(void **state)
{
	lv_config_t *cfg = lv_test_load_ok(FIXTURES "/valid/full.ini");
	const lv_cfg_db_t *app = lv_config_find_db(cfg, "app");
	const lv_cfg_db_t *reports = lv_config_find_db(cfg, "reports");
	assert_non_null(reports);
	assert_null(lv_config_find_db(cfg, "App"));
	assert_null(lv_config_find_db(cfg, "levee"));
	assert_null(lv_config_find_user(cfg, "nobody"));

	/* pool_mode: [user] beats [database] beats [pool]. */
	assert_int_equal(lv_config_pool_mode(cfg, reports, "nobody"), LV_POOL_TRANSACTION);
	assert_int_equal(lv_config_pool_mode(cfg, app, "nobody"), LV_POOL_SESSION);
	assert_int_equal(lv_config_pool_mode(cfg, reports, "reporter"), LV_POOL_SESSION);
	assert_int_equal(lv_config_pool_mode(cfg, reports, "alice"), LV_POOL_TRANSACTION);
	assert_int_equal(lv_config_pool_mode(cfg, NULL, NULL), LV_POOL_TRANSACTION);
	assert_int_equal(lv_config_pool_size(cfg, app), 10);
	assert_int_equal(lv_config_pool_size(cfg, reports), 50);
	assert_int_equal(lv_config_min_pool_size(cfg, app), 2);
	assert_int_equal(lv_config_min_pool_size(cfg, reports), 5);
	assert_int_equal(lv_config_reserve_pool_size(cfg, app), 1);
	assert_int_equal(lv_config_reserve_pool_size(cfg, reports), 3);
	assert_int_equal(lv_config_max_db_connections(cfg, app), 40);
	assert_int_equal(lv_config_max_db_connections(cfg, NULL), 200);
	assert_int_equal(lv_config_max_user_connections(cfg, "reporter"), 5);
	assert_int_equal(lv_config_max_user_connections(cfg, "alice"), 0);
	assert_int_equal(lv_config_max_user_connections(cfg, "nobody"), 100);

	assert_true(lv_config_list_has(cfg->levee.admin_users, "admin"));
	assert_true(lv_config_list_has(cfg->levee.admin_users, "ops"));
	assert_false(lv_config_list_has(cfg->levee.admin_users, "op"));
	assert_false(lv_config_list_has(cfg->levee.admin_users, "admin, ops"));
	assert_true(lv_config_list_has(cfg->levee.stats_users, "reporter"));
	assert_false(lv_config_list_has(NULL, "admin"));
	assert_true(lv_config_list_has(" a ,\tb ", "b"));
	lv_config_unref(cfg);
}

/* ---- SHOW CONFIG, diff and reference counting ---- */

typedef struct shown {
	lv_buf_t all;
	size_t n;
	char redis[128];
	char pool_size[16];
	bool listen_reloadable;
	bool pool_size_reloadable;
} shown_t;

static void show_cb(void *arg, const char *section, const char *key, const char *value,
		    bool is_reloadable)
{
	shown_t *s = arg;
	s->n++;
	assert_true(lv_buf_printf(&s->all, "%s.%s=%s\n", section, key, value));
	if (strcmp(key, "redis") == 0)
		snprintf(s->redis, sizeof(s->redis), "%s", value);
	if (strcmp(key, "pool_size") == 0) {
		snprintf(s->pool_size, sizeof(s->pool_size), "%s", value);
		s->pool_size_reloadable = is_reloadable;
	}
	if (strcmp(key, "listen") == 0)
		s->listen_reloadable = is_reloadable;
}

static void test_for_each_masks_secrets(void **state)
{
	lv_config_t *cfg = lv_test_load_ok(FIXTURES "/valid/full.ini");
	shown_t s;
	memset(&s, 0, sizeof(s));
	lv_buf_init(&s.all);
	lv_config_for_each(cfg, show_cb, &s);
	assert_int_equal(s.n, lv__n_keys);
	assert_string_equal(s.redis, "redis://********@127.0.0.1:6380/2");
	assert_null(strstr(lv_test_buf_str(&s.all), "hunter2"));
	assert_string_equal(s.pool_size, "50");
	assert_true(s.pool_size_reloadable);
	assert_false(s.listen_reloadable);
	/* Values are rendered back in the file's syntax. */
	assert_non_null(strstr(lv_test_buf_str(&s.all), "pool.server_idle_timeout=5min\n"));
	assert_non_null(strstr(lv_test_buf_str(&s.all), "levee.max_packet_size=64MB\n"));
	assert_non_null(strstr(lv_test_buf_str(&s.all), "levee.log_connections=false\n"));
	assert_non_null(strstr(lv_test_buf_str(&s.all), "levee.auth_type=scram-sha-256\n"));
	assert_non_null(strstr(lv_test_buf_str(&s.all), "levee.http_listen=127.0.0.1:9930\n"));
	lv_buf_cleanup(&s.all);
	lv_config_unref(cfg);

	/* A URL without a password is shown as is; the masked form hides a user too. */
	cfg = lv_test_load_ok(lv_test_write_temp("redis.ini",
						 "[levee]\nauth_type = trust\n"
						 "redis = redis://cache.internal:6379/0\n"));
	memset(&s, 0, sizeof(s));
	lv_buf_init(&s.all);
	lv_config_for_each(cfg, show_cb, &s);
	assert_string_equal(s.redis, "redis://cache.internal:6379/0");
	lv_buf_cleanup(&s.all);
	lv_config_unref(cfg);
}

static void test_diff(void **state)
{
	lv_config_t *a =
		lv_test_load_ok(lv_test_write_temp("a.ini", "[levee]\nauth_type = trust\n"
							    "listen = 127.0.0.1:6432\nworkers = 2\n"
							    "[pool]\npool_size = 10\n"));
	lv_config_t *b =
		lv_test_load_ok(lv_test_write_temp("b.ini", "[levee]\nauth_type = trust\n"
							    "listen = 127.0.0.1:6433\nworkers = 2\n"
							    "[pool]\npool_size = 30\n"
							    "[tls]\nserver_tls = prefer\n"));
	lv_buf_t w;
	lv_buf_init(&w);
	assert_int_equal(lv_config_diff(a, a, &w), 0);
	assert_int_equal(w.len, 0);
	assert_int_equal(lv_config_diff(a, b, &w), 2);
	assert_string_equal(lv_test_buf_str(&w), "listen changed; restart to apply\n"
						 "server_tls changed; restart to apply\n");
	assert_int_equal(lv_config_diff(b, a, NULL), 2);
	lv_buf_cleanup(&w);
	lv_config_unref(a);
	lv_config_unref(b);

	/* [routing] is reloadable: changing every key needs no restart. */
	a = lv_test_load_ok(FIXTURES "/valid/minimal.ini");
	b = lv_test_load_ok(FIXTURES "/valid/routing.ini");
	assert_int_equal(lv_config_diff(a, b, NULL), 0);
	lv_config_unref(a);
	lv_config_unref(b);
}

static void test_refcount(void **state)
{
	lv_config_t *cfg = lv_test_load_ok(FIXTURES "/valid/full.ini");
	for (int i = 0; i < 10; i++)
		assert_ptr_equal(lv_config_ref(cfg), cfg);
	assert_int_equal(cfg->refcount, 11);
	for (int i = 0; i < 10; i++)
		lv_config_unref(cfg);
	assert_int_equal(cfg->refcount, 1);
	assert_string_equal(cfg->pool.server_reset_query, "DISCARD ALL; RESET ROLE");
	lv_config_unref(cfg); /* the last one frees; valgrind checks nothing is left */
	lv_config_unref(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_corpus),
		cmocka_unit_test(test_invalid_corpus),
		cmocka_unit_test(test_samples_load),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_routing_values),
		cmocka_unit_test(test_routing_rules),
		cmocka_unit_test(test_write_functions),
		cmocka_unit_test(test_full_values),
		cmocka_unit_test(test_hosts),
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_long_value_error),
		cmocka_unit_test(test_parsers),
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_auth_file),
		cmocka_unit_test(test_lookups),
		cmocka_unit_test(test_for_each_masks_secrets),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_refcount),
	};
	return cmocka_run_group_tests(tests, NULL, lv_test_remove_temp);
}
