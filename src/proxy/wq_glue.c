/* SPDX-License-Identifier: ISC */
/*
 * The write-queue consumers' PostgreSQL access and start-up. wq/ may not
 * include net/ (tools/check-layers.sh), so it reaches PostgreSQL through the
 * lv_wq_pg_ops_t table implemented here on top of proxy/pgconn.c.
 *
 * Credentials for a queued message of database D and client user U, as the
 * health checks find theirs: when [database D] names a server user, that user
 * with the entry's password (else its auth_file secret); otherwise U with
 * its auth_file secret. A SCRAM secret in auth_file cannot log in on the
 * client side (it holds no password), so such users need trust or md5 on the
 * server, or a [database] user and password.
 *
 * Owns: the glue object, a configuration reference, the lv_wq_t, and one
 * handle struct per open connection (freed at close).
 */
#include "proxy/wq_glue.h"
#include "core/log.h"
#include "core/mem.h"
#include "proxy/pgconn.h"

#include <openssl/rand.h>
#include <unistd.h>

struct lv_wq_glue {
	lv_loop_t *loop;
	lv_tls_ctx_t *tls; /* borrowed: the proxy's context towards servers */
	lv_config_t *cfg;
	lv_wq_t *wq;
	lv_wq_pg_ops_t ops;
};

/* What wq/ sees as lv_wq_pg_t. */
struct lv_wq_pg {
	lv_pgconn_t *conn;
	lv_wq_pg_cb cb;
	void *arg;
};

static void conn_cb(void *arg, lv_pgconn_event_t ev, uint8_t type, const uint8_t *body, size_t len,
		    const char *error)
{
	struct lv_wq_pg *h = arg;
	lv_wq_pg_event_t wev = ev == LV_PGCONN_READY ? LV_WQ_PG_READY
			       : ev == LV_PGCONN_MSG ? LV_WQ_PG_MSG
						     : LV_WQ_PG_FAILED;
	h->cb(h->arg, wev, type, body, len, error);
}

static lv_wq_pg_t *pg_open(void *ctx, const char *dbname, const char *user, lv_wq_pg_cb cb,
			   void *arg)
{
	lv_wq_glue_t *g = ctx;
	const lv_config_t *cfg = g->cfg;
	const lv_cfg_db_t *db = cfg ? lv_config_find_db(cfg, dbname) : NULL;
	if (!db)
		return NULL;
	const char *login = db->user[0] ? db->user : user;
	const char *pw = NULL;
	bool is_md5 = false;
	if (db->user[0] && db->password) {
		pw = db->password;
	} else {
		const lv_auth_entry_t *e = lv_config_find_auth(cfg, login);
		if (e && e->kind != LV_SECRET_SCRAM) {
			pw = e->secret;
			is_md5 = e->kind == LV_SECRET_MD5;
		}
	}
	struct lv_wq_pg *h = lv_calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->cb = cb;
	h->arg = arg;
	lv_pgconn_params_t p = {
		.host = db->primary.host,
		.port = db->primary.port,
		.dbname = db->dbname,
		.user = login,
		.password = pw,
		.password_is_md5 = is_md5,
		.application_name = "levee queue",
		.login_timeout_ms = cfg->pool.server_connect_timeout_ms,
		.tls = cfg->tls.server_tls != LV_SERVER_TLS_DISABLE ? g->tls : NULL,
		.tls_required = cfg->tls.server_tls == LV_SERVER_TLS_REQUIRE,
	};
	lv_err_t err = {0};
	h->conn = lv_pgconn_open(g->loop, &p, conn_cb, h, &err);
	if (!h->conn) {
		lv_log_warn("queue %s: cannot connect to %s:%d: %s", dbname, db->primary.host,
			    db->primary.port, err.msg);
		lv_free(h);
		return NULL;
	}
	return h;
}

static bool pg_send(lv_wq_pg_t *h, const void *data, size_t len)
{
	return h && lv_pgconn_send(h->conn, data, len);
}

static void pg_close(lv_wq_pg_t *h)
{
	if (!h)
		return;
	lv_pgconn_close(h->conn);
	lv_free(h);
}

lv_wq_glue_t *lv_wq_glue_start(lv_loop_t *loop, lv_config_t *cfg, lv_tls_ctx_t *tls,
			       lv_wq_applied_fn on_applied, void *arg)
{
	lv_wq_glue_t *g = lv_calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->loop = loop;
	g->tls = tls;
	g->cfg = lv_config_ref(cfg);
	g->ops = (lv_wq_pg_ops_t){.ctx = g, .open = pg_open, .send = pg_send, .close = pg_close};
	char host[64] = "levee";
	(void)gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	unsigned char rnd[4] = {0};
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		memset(rnd, 0, sizeof(rnd));
	char id[128];
	snprintf(id, sizeof(id), "%s:%d:%02x%02x%02x%02x", host, (int)getpid(), rnd[0], rnd[1], rnd[2],
		 rnd[3]);
	const char *crash = getenv("LEVEE_TEST_CRASH_AFTER_COMMIT");
	lv_wq_opts_t o = {
		.instance_id = id,
		.pg = &g->ops,
		.on_applied = on_applied,
		.applied_arg = arg,
		.crash_after_commit = crash && strcmp(crash, "1") == 0,
	};
	if (o.crash_after_commit)
		lv_log_warn("LEVEE_TEST_CRASH_AFTER_COMMIT=1: the queue consumer aborts after its first COMMIT");
	g->wq = lv_wq_new(loop, &o);
	if (!g->wq) {
		lv_config_unref(g->cfg);
		lv_free(g);
		return NULL;
	}
	lv_wq_set_config(g->wq, cfg);
	return g;
}

void lv_wq_glue_set_config(lv_wq_glue_t *g, lv_config_t *cfg)
{
	lv_config_t *old = g->cfg;
	g->cfg = lv_config_ref(cfg);
	lv_wq_set_config(g->wq, cfg);
	lv_config_unref(old);
}

void lv_wq_glue_free(lv_wq_glue_t *g)
{
	if (!g)
		return;
	lv_wq_free(g->wq);
	lv_config_unref(g->cfg);
	lv_free(g);
}
