/* SPDX-License-Identifier: ISC */
/*
 * Backend health checks; see backend.h. Runs on the main thread only, except
 * for the atomic fields of lv_backend_t that workers read. Owns one check
 * connection per backend (a proxy/pgconn.c handle, which connects and logs
 * in), kept open between checks and re-opened after any failure; the backend
 * table itself lives as long as the process (entries are added, never
 * removed, so workers may keep pointers to them).
 *
 *   IDLE --period--> LOGIN (connect, startup, auth: pgconn) --> READY
 *   READY --period--> QUERY (the check) --> READY ...
 *   IDLE --period, no credentials--> PROBE (pgconn's SSLRequest probe) --> IDLE
 *   any failure: the connection is closed, the failure counted, IDLE.
 */
#include "proxy/backend.h"
#include "core/log.h"
#include "core/mem.h"
#include "proxy/pgconn.h"
#include "wire/read.h"
#include "wire/wire.h"

#include <event2/event.h>
#include <event2/event_struct.h>

#define CHECK_MAX_MSG_LEN (64 * 1024) /* the check's replies are a few short rows */

#define CHECK_SQL                                                                                        \
	"SELECT pg_is_in_recovery(), "                                                                   \
	"(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END"    \
	" - '0/0'::pg_lsn)::text, "                                                                      \
	"CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() IS NULL "                       \
	"OR pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0 "                              \
	"ELSE (extract(epoch FROM now() - coalesce(pg_last_xact_replay_timestamp(), "                    \
	"pg_postmaster_start_time())) * 1000000)::bigint END"

typedef enum check_state {
	CHECK_IDLE,  /* no connection */
	CHECK_PROBE, /* TCP + SSLRequest only (no credentials) */
	CHECK_LOGIN, /* TCP connect, startup and auth */
	CHECK_READY, /* logged in, waiting for the next period */
	CHECK_QUERY, /* the check query runs */
} check_state_t;

typedef struct check {
	lv_health_t *h;
	lv_backend_t *b;
	check_state_t state;
	lv_pgconn_t *conn; /* NULL in IDLE */
	lv_usec_t started_us;
	struct event deadline; /* health_check_timeout of the running step (embedded; set up on first use) */
	bool has_deadline;
	char user[LV_NAME_LEN];
	char dbname[LV_NAME_LEN];
	char *password;  /* owned copy; NULL: probe only */
	bool pw_is_md5;
	/* Results of the running query. */
	bool got_row;
	int row_recovery;
	uint64_t row_lsn;
	int64_t row_lag_us;
} check_t;

struct lv_health {
	lv_loop_t *loop;
	lv_tls_ctx_t *tls;                  /* borrowed: the proxy's context towards servers */
	struct event *timer;
	lv_config_t *cfg;
	int n;                              /* entries in use (atomic for readers) */
	lv_backend_t backends[LV_MAX_BACKENDS];
	check_t checks[LV_MAX_BACKENDS];
	bool configured[LV_MAX_BACKENDS];   /* named by the current config */
	int64_t period_ms;
};

/* ----------------------------------------------------------------- table */

lv_backend_t *lv_health_find(lv_health_t *h, const char *host, int port)
{
	int n = __atomic_load_n(&h->n, __ATOMIC_ACQUIRE);
	for (int i = 0; i < n; i++)
		if (h->backends[i].port == port && strcmp(h->backends[i].host, host) == 0)
			return &h->backends[i];
	return NULL;
}

lv_backend_t *lv_health_at(lv_health_t *h, int i)
{
	return i < __atomic_load_n(&h->n, __ATOMIC_ACQUIRE) ? &h->backends[i] : NULL;
}

int lv_health_count(const lv_health_t *h)
{
	return __atomic_load_n(&h->n, __ATOMIC_ACQUIRE);
}

uint64_t lv_backend_lsn_after(const lv_backend_t *primary, lv_usec_t since)
{
	int64_t checked = __atomic_load_n(&primary->checked_us, __ATOMIC_ACQUIRE);
	if (checked <= since)
		return 0;
	return __atomic_load_n(&primary->lsn, __ATOMIC_RELAXED);
}

static int add_backend(lv_health_t *h, const lv_cfg_host_t *host)
{
	int n = h->n;
	for (int i = 0; i < n; i++)
		if (h->backends[i].port == host->port && strcmp(h->backends[i].host, host->host) == 0)
			return i;
	if (n >= LV_MAX_BACKENDS)
		return -1;
	lv_backend_t *b = &h->backends[n];
	memset(b, 0, sizeof(*b));
	snprintf(b->host, sizeof(b->host), "%s", host->host);
	b->port = host->port;
	b->is_replica = -1;
	b->lag_us = -1;
	b->lag_bytes = -1;
	h->checks[n].h = h;
	h->checks[n].b = b;
	__atomic_store_n(&h->n, n + 1, __ATOMIC_RELEASE);
	return n;
}

/* ---------------------------------------------------------------- results */

static void publish(lv_health_t *h, lv_backend_t *b, bool up)
{
	lv_config_t *cfg = h->cfg;
	int threshold = cfg ? cfg->routing.health_check_failures : 3;
	if (up)
		b->fails = 0;
	else
		b->fails++;
	bool was_banned = __atomic_load_n(&b->banned, __ATOMIC_RELAXED);
	bool lagging = false;
	if (up && b->is_replica == 1 && cfg) {
		int64_t lag_us = __atomic_load_n(&b->lag_us, __ATOMIC_RELAXED);
		int64_t lag_bytes = __atomic_load_n(&b->lag_bytes, __ATOMIC_RELAXED);
		lagging = (cfg->routing.max_replica_lag_ms > 0 && lag_us > cfg->routing.max_replica_lag_ms * 1000) ||
			  (cfg->routing.max_replica_lag_bytes > 0 && lag_bytes > cfg->routing.max_replica_lag_bytes);
	}
	bool banned = lagging || b->fails >= threshold || (!up && was_banned);
	if (banned != was_banned) {
		if (banned) {
			__atomic_add_fetch(&b->n_bans, 1, __ATOMIC_RELAXED);
			lv_log_warn("backend %s:%d banned: %s", b->host, b->port,
				    lagging ? "replica lag above max_replica_lag" : "health checks failed");
		} else {
			__atomic_add_fetch(&b->n_recoveries, 1, __ATOMIC_RELAXED);
			lv_log_info("backend %s:%d recovered", b->host, b->port);
		}
	}
	__atomic_store_n(&b->banned, banned, __ATOMIC_RELEASE);
	__atomic_store_n(&b->up, up, __ATOMIC_RELEASE);
	__atomic_store_n(&b->usable, up && !banned, __ATOMIC_RELEASE);
}

/* Replica byte lag against the freshest primary LSN seen. */
static void update_byte_lags(lv_health_t *h)
{
	uint64_t primary_lsn = 0;
	for (int i = 0; i < h->n; i++)
		if (h->backends[i].is_replica == 0 && h->backends[i].up)
			primary_lsn = LV_MAX(primary_lsn, h->backends[i].lsn);
	for (int i = 0; i < h->n; i++) {
		lv_backend_t *b = &h->backends[i];
		if (b->is_replica != 1)
			continue;
		int64_t lag = primary_lsn ? (int64_t)(primary_lsn > b->lsn ? primary_lsn - b->lsn : 0) : -1;
		__atomic_store_n(&b->lag_bytes, lag, __ATOMIC_RELAXED);
	}
}

/* ------------------------------------------------------------ connections */

static void check_conn_cb(void *arg, lv_pgconn_event_t ev, uint8_t type, const uint8_t *body,
			  size_t len, const char *error);

static void drop_conn(check_t *c)
{
	lv_pgconn_close(c->conn);
	c->conn = NULL;
	c->state = CHECK_IDLE;
}

static void check_failed(check_t *c, const char *why)
{
	if (c->b->up || c->b->fails == 0)
		lv_log_warn("health check of %s:%d failed: %s", c->b->host, c->b->port, why);
	drop_conn(c);
	publish(c->h, c->b, false);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	check_t *c = arg;
	if (c->state == CHECK_IDLE || c->state == CHECK_READY)
		return; /* that step finished in time */
	lv_time_update();
	char why[64];
	snprintf(why, sizeof(why), "no answer within health_check_timeout (%lld ms)",
		 (long long)c->h->cfg->routing.health_check_timeout_ms);
	check_failed(c, why);
}

/* Starts the clock on the step just begun (connect and login, probe, or the query). */
static void arm_deadline(check_t *c)
{
	int64_t ms = c->h->cfg ? c->h->cfg->routing.health_check_timeout_ms : 0;
	if (ms <= 0)
		return;
	if (!c->has_deadline) {
		if (evtimer_assign(&c->deadline, lv_loop_base(c->h->loop), deadline_cb, c) != 0)
			return;
		c->has_deadline = true;
	}
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	if (evtimer_add(&c->deadline, &tv) != 0)
		lv_log_warn("could not arm the health check timeout of %s:%d", c->b->host, c->b->port);
}

static bool send_query(check_t *c)
{
	c->got_row = false;
	c->state = CHECK_QUERY;
	c->started_us = lv_time_now_us();
	arm_deadline(c);
	return lv_pgconn_send_query(c->conn, CHECK_SQL);
}

static void start_check(check_t *c)
{
	lv_err_t err = {0};
	if (c->state == CHECK_READY) {
		if (!send_query(c))
			check_failed(c, "out of memory");
		return;
	}
	if (c->state != CHECK_IDLE) {
		/* Still busy since the last period: too slow counts as a failure. */
		check_failed(c, "timed out");
		return;
	}
	lv_pgconn_params_t p = {
		.host = c->b->host,
		.port = c->b->port,
		.dbname = c->dbname,
		.user = c->user,
		.password = c->password,
		.password_is_md5 = c->pw_is_md5,
		.application_name = "levee health check",
		.login_timeout_ms = -1, /* health_check_timeout is armed here: arm_deadline() */
		.max_msg_len = CHECK_MAX_MSG_LEN,
		.probe_only = !c->password,
	};
	const lv_config_t *cfg = c->h->cfg;
	if (cfg && cfg->tls.server_tls != LV_SERVER_TLS_DISABLE) {
		p.tls = c->h->tls;
		p.tls_required = cfg->tls.server_tls == LV_SERVER_TLS_REQUIRE;
	}
	c->conn = lv_pgconn_open(c->h->loop, &p, check_conn_cb, c, &err);
	if (!c->conn) {
		check_failed(c, err.msg);
		return;
	}
	c->started_us = lv_time_now_us();
	c->state = c->password ? CHECK_LOGIN : CHECK_PROBE;
	arm_deadline(c);
}

/* The one DataRow of the check: three text columns. */
static bool parse_row(check_t *c, const uint8_t *body, size_t len)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	if (lv_wire_get_u16(&r) != 3)
		return false;
	char vals[3][32];
	for (int i = 0; i < 3; i++) {
		int32_t n = lv_wire_get_i32(&r);
		if (n == -1) {
			vals[i][0] = '\0'; /* NULL */
			continue;
		}
		if (n < 0 || n >= (int32_t)sizeof(vals[i]))
			return false;
		const uint8_t *p = lv_wire_get_bytes(&r, (size_t)n);
		if (!p)
			return false;
		memcpy(vals[i], p, (size_t)n);
		vals[i][n] = '\0';
	}
	if (!lv_wire_reader_done(&r))
		return false;
	c->row_recovery = vals[0][0] == 't';
	c->row_lsn = strtoull(vals[1], NULL, 10);
	c->row_lag_us = strtoll(vals[2], NULL, 10);
	c->got_row = true;
	return true;
}

/*
 * failover = follow: a replica of a database whose primary is down was
 * promoted. The old primary is marked demoted (workers send writes to the
 * promoted replica) and stays so until a reload, even if it comes back, so
 * two primaries never take writes at once.
 */
static void follow_failover(lv_health_t *h, lv_backend_t *promoted)
{
	lv_config_t *cfg = h->cfg;
	if (!cfg || cfg->routing.failover != LV_FAILOVER_FOLLOW)
		return;
	for (size_t d = 0; d < cfg->n_dbs; d++) {
		const lv_cfg_db_t *db = &cfg->dbs[d];
		bool is_ours = false;
		for (int r = 0; r < db->n_replicas; r++)
			if (db->replicas[r].port == promoted->port && strcmp(db->replicas[r].host, promoted->host) == 0)
				is_ours = true;
		lv_backend_t *old = lv_health_find(h, db->primary.host, db->primary.port);
		if (!is_ours || !old || __atomic_load_n(&old->up, __ATOMIC_ACQUIRE) || old->demoted)
			continue;
		__atomic_store_n(&old->demoted, 1, __ATOMIC_RELEASE);
		lv_log_warn("failover: %s:%d is the primary of database \"%s\" now; %s:%d takes no writes until RELOAD",
			    promoted->host, promoted->port, db->name, old->host, old->port);
	}
}

static void query_done(check_t *c)
{
	lv_backend_t *b = c->b;
	if (!c->got_row) {
		check_failed(c, "the check query returned no row");
		return;
	}
	int was = b->is_replica;
	__atomic_store_n(&b->is_replica, c->row_recovery, __ATOMIC_RELAXED);
	__atomic_store_n(&b->lag_us, c->row_recovery ? c->row_lag_us : 0, __ATOMIC_RELAXED);
	__atomic_store_n(&b->lsn, c->row_lsn, __ATOMIC_RELAXED);
	__atomic_store_n(&b->checked_us, c->started_us, __ATOMIC_RELEASE);
	if (was == 1 && !c->row_recovery) {
		lv_log_warn("backend %s:%d is no longer in recovery (promoted)", b->host, b->port);
		follow_failover(c->h, b);
	}
	c->state = CHECK_READY;
	update_byte_lags(c->h);
	publish(c->h, b, true);
}

/* A message of the check connection after login. */
static void handle_msg(check_t *c, uint8_t type, const uint8_t *body, size_t len)
{
	if (type == PqMsg_ErrorResponse) {
		lv_wire_error_t e;
		char why[200];
		snprintf(why, sizeof(why), "%s",
			 lv_wire_parse_error(body, len, &e) == 0 && e.message ? e.message : "error");
		check_failed(c, why);
		return;
	}
	if (c->state != CHECK_QUERY)
		return; /* notices and parameter changes between checks */
	switch (type) {
	case PqMsg_DataRow:
		if (!parse_row(c, body, len))
			check_failed(c, "unexpected check result");
		return;
	case PqMsg_ReadyForQuery:
		query_done(c);
		return;
	default:
		return; /* RowDescription, CommandComplete, notices */
	}
}

static void check_conn_cb(void *arg, lv_pgconn_event_t ev, uint8_t type, const uint8_t *body,
			  size_t len, const char *error)
{
	check_t *c = arg;
	switch (ev) {
	case LV_PGCONN_READY:
		if (c->state == CHECK_PROBE) {
			/* The server answered the SSLRequest: up, though nothing more is known. */
			drop_conn(c);
			__atomic_store_n(&c->b->checked_us, lv_time_now_us(), __ATOMIC_RELEASE);
			publish(c->h, c->b, true);
			return;
		}
		if (!send_query(c))
			check_failed(c, "out of memory");
		return;
	case LV_PGCONN_MSG:
		handle_msg(c, type, body, len);
		return;
	case LV_PGCONN_FAILED:
		check_failed(c, error);
		return;
	}
}

/* ------------------------------------------------------------------ timer */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	lv_health_t *h = arg;
	lv_time_update();
	for (int i = 0; i < h->n; i++)
		if (h->configured[i])
			start_check(&h->checks[i]);
}

static void arm_timer(lv_health_t *h, int64_t period_ms)
{
	if (period_ms == h->period_ms)
		return;
	h->period_ms = period_ms;
	struct timeval tv = {(time_t)(period_ms / 1000), (suseconds_t)(period_ms % 1000) * 1000};
	event_del(h->timer);
	if (event_add(h->timer, &tv) < 0)
		lv_log_error("could not schedule health checks");
}

lv_health_t *lv_health_new(lv_loop_t *loop, lv_tls_ctx_t *tls)
{
	lv_health_t *h = lv_calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->loop = loop;
	h->tls = tls;
	h->timer = event_new(lv_loop_base(loop), -1, EV_PERSIST, tick_cb, h);
	if (!h->timer) {
		lv_free(h);
		return NULL;
	}
	return h;
}

void lv_health_free(lv_health_t *h)
{
	if (!h)
		return;
	for (int i = 0; i < h->n; i++) {
		drop_conn(&h->checks[i]);
		if (h->checks[i].has_deadline)
			evtimer_del(&h->checks[i].deadline);
		lv_free(h->checks[i].password);
	}
	event_free(h->timer);
	lv_config_unref(h->cfg);
	lv_free(h);
}

/* Credentials for checking a backend of db: health_check_user, else the entry's user. */
static void set_credentials(check_t *c, const lv_config_t *cfg, const lv_cfg_db_t *db)
{
	const char *user = cfg->routing.health_check_user && *cfg->routing.health_check_user
				   ? cfg->routing.health_check_user
				   : db->user;
	lv_free(c->password);
	c->password = NULL;
	c->pw_is_md5 = false;
	if (!user || !*user)
		return;
	snprintf(c->user, sizeof(c->user), "%s", user);
	snprintf(c->dbname, sizeof(c->dbname), "%s", db->dbname);
	const char *pw = NULL;
	if (cfg->routing.health_check_password && *cfg->routing.health_check_password)
		pw = cfg->routing.health_check_password;
	else if (strcmp(user, db->user) == 0 && db->password)
		pw = db->password;
	else {
		const lv_auth_entry_t *e = lv_config_find_auth(cfg, user);
		if (e && e->kind != LV_SECRET_SCRAM) {
			pw = e->secret;
			c->pw_is_md5 = e->kind == LV_SECRET_MD5;
		}
	}
	if (pw)
		c->password = lv_strdup(pw);
}

void lv_health_set_config(lv_health_t *h, lv_config_t *cfg)
{
	lv_config_unref(h->cfg);
	h->cfg = lv_config_ref(cfg);
	memset(h->configured, 0, sizeof(h->configured));
	/* A reload is the operator's word on which server is the primary. */
	for (int i = 0; i < h->n; i++)
		__atomic_store_n(&h->backends[i].demoted, 0, __ATOMIC_RELEASE);
	for (size_t d = 0; d < cfg->n_dbs; d++) {
		const lv_cfg_db_t *db = &cfg->dbs[d];
		for (int r = -1; r < db->n_replicas; r++) {
			int i = add_backend(h, r < 0 ? &db->primary : &db->replicas[r]);
			if (i < 0) {
				lv_log_warn("more than %d backends: the rest are not health-checked", LV_MAX_BACKENDS);
				continue;
			}
			if (h->configured[i])
				continue;
			h->configured[i] = true;
			/* New credentials apply from the next connection. */
			drop_conn(&h->checks[i]);
			set_credentials(&h->checks[i], cfg, db);
		}
	}
	arm_timer(h, cfg->routing.health_check_period_ms);
	tick_cb(-1, 0, h);
}

int lv_health_up(const lv_health_t *h, int *n_total)
{
	int up = 0, total = 0;
	for (int i = 0; i < h->n; i++) {
		if (!h->configured[i])
			continue;
		total++;
		up += __atomic_load_n(&h->backends[i].up, __ATOMIC_ACQUIRE);
	}
	if (n_total)
		*n_total = total;
	return up;
}
