/* SPDX-License-Identifier: ISC */
/*
 * levee: arguments, config loading, workers, signals. No logic of its own
 * beyond wiring: the main thread runs the HTTP listener, backend health
 * probes and signal handling; workers run the proxy.
 */
#include "admin/console.h"
#include "admin/http.h"
#include "config/config.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "event/loop.h"
#include "event/signal.h"
#include "net/sbuf.h"
#include "proxy/backend.h"
#include "proxy/cached.h"
#include "proxy/conn.h"
#include "proxy/worker.h"
#include "proxy/wq_glue.h"
#include "redis/redis.h"

#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

typedef struct app {
	const char *config_path;
	lv_proxy_t proxy;
	lv_loop_t *loop;
	lv_health_t *health;
	lv_http_t *http;
	lv_wq_glue_t *wq;
	lv_cached_main_t *cache_sync;
	pthread_mutex_t reload_lock;
	int signals_seen;
} app_t;

static void usage(FILE *out)
{
	fprintf(out, "usage: levee -c FILE          run with the configuration in FILE\n"
		     "       levee --check-config -c FILE   validate FILE; exit 0 or 1\n"
		     "       levee --version\n");
}

static void print_errors(const lv_buf_t *errors)
{
	if (errors->len)
		fwrite(errors->data, 1, errors->len, stderr);
}

static void apply_logging(const lv_config_t *cfg)
{
	lv_log_level = cfg->levee.log_level;
}

/* Runs on the main loop: the health probes follow the new backends. */
static void health_config_msg(void *arg)
{
	app_t *app = (app_t *)((void **)arg)[0];
	lv_config_t *cfg = ((void **)arg)[1];
	if (app->health)
		lv_health_set_config(app->health, cfg);
	if (app->wq)
		lv_wq_glue_set_config(app->wq, cfg);
	lv_config_unref(cfg);
	lv_free(arg);
}

/* Reloads the config file; called on the main thread (SIGHUP) or a worker (RELOAD). */
static bool reload(void *arg, lv_buf_t *errors)
{
	app_t *app = arg;
	pthread_mutex_lock(&app->reload_lock);
	lv_config_t *cfg = lv_config_load(app->config_path, errors);
	if (!cfg) {
		lv_metric_inc_l(LV_M_CONFIG_RELOADS_TOTAL, LV_ML_RELOAD_RESULT_ERROR);
		lv_log_error("reload of %s failed; keeping the current configuration:\n%.*s", app->config_path,
			     (int)errors->len, errors->data ? (const char *)errors->data : "");
		pthread_mutex_unlock(&app->reload_lock);
		return false;
	}
	lv_config_t *old = lv_proxy_config(&app->proxy);
	cfg->generation = old->generation + 1;
	lv_buf_t warnings;
	lv_buf_init(&warnings);
	if (lv_config_diff(old, cfg, &warnings) > 0)
		lv_log_warn("reload: %.*s", (int)warnings.len, (const char *)warnings.data);
	lv_buf_cleanup(&warnings);
	lv_config_unref(old);
	apply_logging(cfg);
	lv_proxy_set_config(&app->proxy, cfg);
	void **m = lv_malloc(2 * sizeof(void *));
	if (m) {
		m[0] = app;
		m[1] = lv_config_ref(cfg);
		if (!lv_loop_post(app->loop, health_config_msg, m)) {
			lv_config_unref(cfg);
			lv_free(m);
		}
	}
	lv_log_info("configuration reloaded (generation %llu)", (unsigned long long)cfg->generation);
	lv_metric_inc_l(LV_M_CONFIG_RELOADS_TOTAL, LV_ML_RELOAD_RESULT_OK);
	lv_config_unref(cfg);
	pthread_mutex_unlock(&app->reload_lock);
	return true;
}

static void shutdown_now(void *arg)
{
	app_t *app = arg;
	lv_proxy_shutdown(&app->proxy, 2);
}

static void signal_fn(int signo, void *arg)
{
	app_t *app = arg;
	switch (signo) {
	case SIGHUP: {
		lv_log_info("SIGHUP: reloading %s", app->config_path);
		lv_buf_t errors;
		lv_buf_init(&errors);
		(void)reload(app, &errors);
		lv_buf_cleanup(&errors);
		break;
	}
	case SIGINT:
		if (app->signals_seen++ == 0) {
			lv_log_info("SIGINT: no new connections; waiting up to shutdown_timeout for sessions to end");
			lv_proxy_shutdown(&app->proxy, 1);
		} else {
			lv_log_info("second SIGINT: closing everything now");
			lv_proxy_shutdown(&app->proxy, 2);
		}
		break;
	case SIGTERM:
		lv_log_info("SIGTERM: closing every connection and exiting");
		lv_proxy_shutdown(&app->proxy, 2);
		break;
	default:
		break;
	}
}

static void workers_gone_msg(void *arg)
{
	app_t *app = arg;
	if (lv_proxy_running(&app->proxy) == 0)
		lv_loop_stop(app->loop);
}

static app_t *the_app;

static void on_worker_exit(lv_proxy_t *p)
{
	if (!lv_loop_post(the_app->loop, workers_gone_msg, the_app))
		lv_loop_stop(the_app->loop);
}

static bool write_pidfile(const char *path)
{
	if (!path || !*path)
		return true;
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	fprintf(f, "%d\n", (int)getpid());
	return fclose(f) == 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'C'},
		{"version", no_argument, NULL, 'V'},      {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	bool check_only = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			check_only = true;
			break;
		case 'V':
			printf("Levee %s\n", LV_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (!path && optind < argc)
		path = argv[optind++];
	if (!path || optind < argc) {
		usage(stderr);
		return 1;
	}

	lv_buf_t errors;
	lv_buf_init(&errors);
	lv_config_t *cfg = lv_config_load(path, &errors);
	if (!cfg) {
		print_errors(&errors);
		lv_buf_cleanup(&errors);
		return 1;
	}
	lv_buf_cleanup(&errors);
	if (check_only) {
		printf("%s: configuration ok\n", path);
		lv_config_unref(cfg);
		return 0;
	}

	apply_logging(cfg);
	if (!lv_log_open(cfg->levee.logfile))
		lv_fatal("could not open logfile %s: %s", cfg->levee.logfile, strerror(errno));
	if (!lv_loop_global_init())
		lv_fatal("could not make libevent thread-aware");
	lv_conn_log_init();

	static app_t app;
	the_app = &app;
	app.config_path = path;
	pthread_mutex_init(&app.reload_lock, NULL);
	app.loop = lv_loop_new();
	if (!app.loop)
		lv_fatal("could not create the main loop");

	lv_err_t err = {0};
	if (!lv_proxy_init(&app.proxy, cfg, &err))
		lv_fatal("%s", err.msg);
	app.proxy.on_worker_exit = on_worker_exit;
	lv_admin_hooks_t hooks = {reload, shutdown_now, &app};
	lv_admin_init(&app.proxy, &hooks);

	app.health = lv_health_new(app.loop, app.proxy.tls_client);
	if (!app.health)
		lv_fatal("out of memory");
	lv_health_set_config(app.health, cfg);
	app.proxy.health = app.health;
	if (cfg->levee.http_listen && *cfg->levee.http_listen) {
		app.http = lv_http_new(app.loop, cfg->levee.http_listen, &app.proxy, app.health, &err);
		if (!app.http)
			lv_fatal("%s", err.msg);
	}
	/* Cache invalidations shared with other instances, and the queue's consumers (whose
	 * applied batches invalidate like any write). */
	app.cache_sync = lv_cached_main_start(&app.proxy, app.loop, cfg);
	app.wq = lv_wq_glue_start(app.loop, cfg, app.proxy.tls_client, lv_cached_main_applied, app.cache_sync);
	if (!app.wq)
		lv_fatal("out of memory");
	lv_signals_t *sig = lv_signals_new(app.loop, signal_fn, &app);
	if (!sig)
		lv_fatal("could not set up signal handling");
	if (!write_pidfile(cfg->levee.pidfile))
		lv_fatal("could not write pidfile %s: %s", cfg->levee.pidfile, strerror(errno));

	if (!lv_proxy_start(&app.proxy, &err))
		lv_fatal("%s", err.msg);
	lv_log_info("Levee %s listening on %s with %d workers%s%s", LV_VERSION, cfg->levee.listen,
		    app.proxy.n_workers, app.http ? "; http on " : "", app.http ? cfg->levee.http_listen : "");
	lv_config_unref(cfg);

	lv_loop_run(app.loop);

	lv_log_info("all workers stopped; exiting");
	lv_config_t *last = lv_proxy_config(&app.proxy);
	if (last->levee.pidfile && *last->levee.pidfile)
		unlink(last->levee.pidfile);
	lv_config_unref(last);
	lv_wq_glue_free(app.wq);
	lv_cached_main_free(app.cache_sync);
	lv_proxy_cleanup(&app.proxy);
	lv_signals_free(sig);
	lv_http_free(app.http);
	lv_health_free(app.health);
	lv_loop_free(app.loop);
	lv_sbuf_thread_cleanup();
	pthread_mutex_destroy(&app.reload_lock);
	lv_log_close();
	return 0;
}
