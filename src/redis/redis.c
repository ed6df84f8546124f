/* SPDX-License-Identifier: ISC */
/*
 * The Redis client: hiredis 0.14's asynchronous API, attached to the
 * event_base of one lv_loop_t through hiredis's libevent adapter. One
 * lv_redis_t is one connection, used by the one thread that owns its loop.
 *
 * What it owns: the lv_redis_t (created by lv_redis_new(), freed by
 * lv_redis_free()), the current redisAsyncContext (NULL while down), two
 * embedded timers, one request record per command in flight, and the list
 * of subscriptions. Replies belong to hiredis and live only during the
 * callback that receives them.
 *
 * Connection life (r->state, written only by set_state()):
 *
 *   DOWN --backoff timer--> CONNECTING --connected--> HANDSHAKE
 *     ^                        |                        | AUTH?, SELECT?, PING answered
 *     |                        |                        v
 *     +----- any failure ------+---------------- SUBSCRIBING (only with subscriptions)
 *     |                                                 | every SUBSCRIBE confirmed
 *     +---------------------- UP <----------------------+
 *
 * The PING ends every handshake, so "up" means the server answered a command
 * (a server that wants a password we do not have fails here, not later). The
 * connect timer (conn_ev) is the backoff wait while DOWN and the connect
 * timeout (timeout_ms, covering connect and handshake) otherwise. Backoff
 * starts at 100 ms, doubles to 5 s, and is reset when the client is up.
 *
 * Command timeouts. hiredis 0.14 has none, and Redis answers in order, so
 * the records of commands in flight are kept in a FIFO with their send
 * time; one timer (cmd_ev) is armed for the oldest deadline. When the oldest
 * is overdue the connection is dropped: hiredis then calls every pending
 * callback with reply NULL, and the client reconnects. Subscribers have no
 * commands to time, so they re-send SUBSCRIBE for their first channel as a
 * keepalive when idle and drop the connection if it is not confirmed in time.
 * (A PING in subscribed mode confuses hiredis 0.14's reply routing.)
 *
 * Callback safety. Every record handed to hiredis carries a pointer back to
 * its lv_redis_t, or NULL once it has been "orphaned": its user callback has
 * already run (lv_redis_free() runs them itself) and hiredis only still holds
 * the record, which the trampoline then frees. Internal callbacks (handshake,
 * subscriptions) find the client through ac->data, cleared when the context
 * is detached from the client. A user callback may call lv_redis_free();
 * code that calls user code and continues afterwards holds a guard_t that
 * lv_redis_free() marks, and stops if it was marked. The context is never
 * freed from inside onConnect or onDisconnect (hiredis uses it afterwards);
 * from inside a reply callback hiredis defers the free until the callback
 * returns.
 */
#include "redis/redis.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "core/time.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <strings.h>
#include <sys/un.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define DEFAULT_TIMEOUT_MS 1000
/* A subscriber idle this long sends a keepalive (see the module comment). */
#define KEEPALIVE_MS 5000
#define DEFAULT_PORT 6379

typedef enum redis_state {
	ST_DOWN = 0,    /* no connection; conn_ev is the backoff before the next attempt */
	ST_CONNECTING,  /* connect(2) in progress; conn_ev is the connect timeout */
	ST_HANDSHAKE,   /* AUTH / SELECT / PING sent; conn_ev is still the connect timeout */
	ST_SUBSCRIBING, /* SUBSCRIBE sent for every channel, confirmations outstanding */
	ST_UP,          /* ready; cmd_ev times the oldest command (or the keepalive) */
	ST_CLOSED,      /* lv_redis_free() is running */
} redis_state_t;

static const char *const state_names[] = {
	[ST_DOWN] = "down",
	[ST_CONNECTING] = "connecting",
	[ST_HANDSHAKE] = "handshake",
	[ST_SUBSCRIBING] = "subscribing",
	[ST_UP] = "up",
	[ST_CLOSED] = "closed",
};

/* Handshake steps, passed to handshake_cb as its privdata. */
enum { STEP_AUTH = 1, STEP_SELECT, STEP_PING };

/* One command in flight. Owned by r->pending until answered, then by hiredis if orphaned. */
typedef struct req {
	lv_list_t node;      /* on r->pending, in send order */
	lv_redis_t *r;       /* NULL: orphaned (callback already ran); the trampoline frees it */
	lv_redis_cb cb;      /* may be NULL */
	void *arg;
	lv_usec_t sent_us;
	unsigned fail_label; /* LV_ML_REDIS_RESULT_* counted if the answer is NULL */
} req_t;

typedef struct sub {
	char *channel; /* owned */
	lv_redis_message_cb cb;
	void *arg;
} sub_t;

/* Lets code that calls user callbacks learn whether lv_redis_free() ran meanwhile. */
typedef struct guard {
	bool is_freed;
	struct guard *prev;
} guard_t;

struct lv_redis {
	lv_loop_t *loop;
	redisAsyncContext *ac; /* current connection; NULL while DOWN */
	redis_state_t state;
	lv_redis_url_t url;
	char *name; /* owned */
	int64_t timeout_ms;
	lv_redis_state_cb on_state;
	void *state_arg;

	struct event conn_ev; /* backoff or connect timeout, by state */
	struct event cmd_ev;  /* oldest command's deadline, or the subscriber keepalive */

	lv_list_t pending; /* req_t, oldest first */
	size_t n_pending;

	sub_t *subs; /* n_subs entries, owned; once non-empty, r takes no commands */
	size_t n_subs;
	size_t n_sub_wait;    /* SUBSCRIBING: confirmations still expected */
	lv_usec_t ka_sent_us; /* keepalive SUBSCRIBE sent at; 0 = none outstanding */
	lv_usec_t ka_last_us; /* last sign of life on a subscriber */

	int64_t backoff_ms;       /* the next retry's delay */
	lv_usec_t down_since_us;  /* start of the current outage */
	bool is_outage_logged;    /* the warning for this outage was written */
	guard_t *guards;
};

/* ------------------------------------------------------------ URL parsing */

static const char url_usage[] =
	"expected redis://[[user]:password@]host[:port][/db] or unix:///path/to.sock[?db=N]";

/* Parses s[0..n) as decimal digits only, into *out <= max. */
static bool parse_digits(const char *s, size_t n, long max, long *out)
{
	if (n == 0 || n > 10)
		return false;
	long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes s[0..n) into dst[cap]; false if an escape is bad or it does not fit. */
static bool pct_decode(const char *s, size_t n, char *dst, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			if (i + 2 >= n)
				return false;
			int hi = hexval(s[i + 1]);
			int lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (c == '\0' || o + 1 >= cap)
			return false;
		dst[o++] = c;
	}
	dst[o] = '\0';
	return true;
}

/* "[user]:password" (s[0..n), before an '@') into out->user and out->password. */
static int parse_userinfo(const char *s, size_t n, lv_redis_url_t *out, lv_err_t *err)
{
	const char *colon = memchr(s, ':', n);
	if (!colon)
		return lv_err_set(err, LV_EINVAL,
				  "expected [user]:password before '@' in the redis URL");
	size_t ulen = (size_t)(colon - s);
	size_t plen = n - ulen - 1;
	if (plen == 0)
		return lv_err_set(err, LV_EINVAL, "empty password before '@' in the redis URL");
	if (!pct_decode(s, ulen, out->user, sizeof(out->user)))
		return lv_err_set(err, LV_EINVAL,
				  "bad user name in the redis URL (too long or a bad %%-escape)");
	if (!pct_decode(colon + 1, plen, out->password, sizeof(out->password)))
		return lv_err_set(err, LV_EINVAL,
				  "bad password in the redis URL (too long or a bad %%-escape)");
	return 0;
}

static int parse_tcp(const char *p, lv_redis_url_t *out, lv_err_t *err)
{
	/* The last '@' ends the user info: passwords may contain '@' and '/'. */
	const char *at = strrchr(p, '@');
	if (at) {
		if (parse_userinfo(p, (size_t)(at - p), out, err) < 0)
			return -1;
		p = at + 1;
	}

	const char *host = p;
	size_t host_len;
	if (*p == '[') {
		const char *close = strchr(p, ']');
		if (!close)
			return lv_err_set(err, LV_EINVAL,
					  "missing ']' after the IPv6 address in the redis URL");
		host = p + 1;
		host_len = (size_t)(close - host);
		p = close + 1;
		if (*p != '\0' && *p != ':' && *p != '/')
			return lv_err_set(err, LV_EINVAL,
					  "unexpected characters after ']' in the redis URL");
	} else {
		host_len = strcspn(p, ":/?");
		p += host_len;
	}
	if (host_len == 0)
		return lv_err_set(err, LV_EINVAL, "missing host in the redis URL; %s", url_usage);
	if (host_len >= sizeof(out->host))
		return lv_err_set(err, LV_EINVAL, "host name too long in the redis URL");
	memcpy(out->host, host, host_len);
	out->host[host_len] = '\0';

	if (*p == ':') {
		p++;
		size_t n = strcspn(p, "/?");
		long port;
		if (!parse_digits(p, n, 65535, &port) || port == 0)
			return lv_err_set(err, LV_EINVAL,
					  "invalid port '%.*s' in the redis URL (expected 1-65535)",
					  (int)LV_MIN(n, 32), p);
		out->port = (int)port;
		p += n;
	}
	if (*p == '/') {
		p++;
		size_t n = strcspn(p, "?");
		long db = 0;
		if (n > 0 && !parse_digits(p, n, INT_MAX, &db))
			return lv_err_set(err, LV_EINVAL,
					  "invalid database number '%.*s' in the redis URL",
					  (int)LV_MIN(n, 32), p);
		out->db = (int)db;
		p += n;
	}
	if (*p != '\0')
		return lv_err_set(err, LV_EINVAL, "unexpected '%.32s' at the end of the redis URL",
				  p);
	return 0;
}

static int parse_unix(const char *p, lv_redis_url_t *out, lv_err_t *err)
{
	out->is_unix = true;
	out->port = 0;
	if (*p == '\0' || *p == '?')
		return lv_err_set(err, LV_EINVAL, "missing socket path in the redis URL");
	if (*p != '/') {
		/* unix://[user]:password@/path */
		const char *at = strstr(p, "@/");
		if (!at)
			return lv_err_set(err, LV_EINVAL, "the socket path must be absolute "
							  "(unix:///path/to.sock)");
		if (parse_userinfo(p, (size_t)(at - p), out, err) < 0)
			return -1;
		p = at + 1;
	}
	size_t n = strcspn(p, "?");
	if (n >= sizeof(((struct sockaddr_un *)NULL)->sun_path) || n >= sizeof(out->host))
		return lv_err_set(err, LV_EINVAL,
				  "socket path too long in the redis URL (max %zu bytes)",
				  sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
	if (n == 1)
		return lv_err_set(err, LV_EINVAL, "missing socket path in the redis URL");
	memcpy(out->host, p, n);
	out->host[n] = '\0';
	p += n;
	if (*p == '?') {
		p++;
		long db;
		if (strncmp(p, "db=", 3) != 0)
			return lv_err_set(err, LV_EINVAL,
					  "unsupported parameter '%.32s' in the redis URL "
					  "(only db=N)", p);
		if (!parse_digits(p + 3, strlen(p + 3), INT_MAX, &db))
			return lv_err_set(err, LV_EINVAL,
					  "invalid database number '%.32s' in the redis URL",
					  p + 3);
		out->db = (int)db;
	}
	return 0;
}

int lv_redis_url_parse(const char *url, lv_redis_url_t *out, lv_err_t *err)
{
	memset(out, 0, sizeof(*out));
	out->port = DEFAULT_PORT;
	int rc;
	if (!url || !*url)
		rc = lv_err_set(err, LV_EINVAL, "empty redis URL; %s", url_usage);
	else if (strncasecmp(url, "redis://", 8) == 0)
		rc = parse_tcp(url + 8, out, err);
	else if (strncasecmp(url, "unix://", 7) == 0)
		rc = parse_unix(url + 7, out, err);
	else if (strncasecmp(url, "rediss://", 9) == 0)
		rc = lv_err_set(err, LV_EUNSUPP, "TLS to Redis (rediss://) is not supported");
	else
		rc = lv_err_set(err, LV_EINVAL, "%s", url_usage);
	if (rc < 0) {
		/* Leave no half-parsed secret behind. */
		memset(out, 0, sizeof(*out));
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- helpers */

static void set_state(lv_redis_t *r, redis_state_t st)
{
	lv_log_debug("redis %s: %s -> %s", r->name, state_names[r->state], state_names[st]);
	r->state = st;
}

static void guard_push(lv_redis_t *r, guard_t *g)
{
	g->is_freed = false;
	g->prev = r->guards;
	r->guards = g;
}

/* Returns true if r was freed while g was pushed (then r must not be touched). */
static bool guard_pop(lv_redis_t *r, guard_t *g)
{
	if (g->is_freed)
		return true;
	r->guards = g->prev;
	return false;
}

/* Arms ev to fire in us microseconds (at least one millisecond). */
static void timer_arm_us(struct event *ev, lv_usec_t us)
{
	if (us < 1000)
		us = 1000;
	struct timeval tv = { .tv_sec = us / LV_USEC_PER_SEC, .tv_usec = us % LV_USEC_PER_SEC };
	event_add(ev, &tv);
}

static void timer_arm(struct event *ev, int64_t ms)
{
	timer_arm_us(ev, ms * LV_USEC_PER_MS);
}

/* Cuts the link between r and its context; the caller frees the context or hiredis does. */
static redisAsyncContext *detach(lv_redis_t *r)
{
	redisAsyncContext *ac = r->ac;
	r->ac = NULL;
	if (ac) {
		ac->data = NULL;
		ac->onConnect = NULL;
		ac->onDisconnect = NULL;
	}
	return ac;
}

static const char *where(const lv_redis_t *r, char *buf, size_t len)
{
	if (r->url.is_unix)
		snprintf(buf, len, "%s db=%d", r->url.host, r->url.db);
	else
		snprintf(buf, len, "%s:%d db=%d", r->url.host, r->url.port, r->url.db);
	return buf;
}

/*
 * The connection is gone (r->ac already NULL): state DOWN, backoff timer,
 * metrics, one warning per outage, then on_state(false) if it was up. Calls
 * user code last; r may be freed when it returns.
 */
static void went_down(lv_redis_t *r, const char *why)
{
	/* Server and hiredis messages may end with a period; ours continue after it. */
	char reason[200];
	snprintf(reason, sizeof(reason), "%s", why);
	size_t n = strlen(reason);
	while (n > 0 && (reason[n - 1] == '.' || reason[n - 1] == ' ' || reason[n - 1] == '\n'))
		reason[--n] = '\0';
	bool was_up = r->state == ST_UP;
	event_del(&r->conn_ev);
	event_del(&r->cmd_ev);
	set_state(r, ST_DOWN);
	r->n_sub_wait = 0;
	r->ka_sent_us = 0;
	if (was_up) {
		lv_metric_add(LV_M_REDIS_UP, 0, -1);
		r->down_since_us = lv_time_update();
	}
	int64_t delay = r->backoff_ms;
	r->backoff_ms = LV_MIN(delay * 2, BACKOFF_MAX_MS);
	timer_arm(&r->conn_ev, delay);
	if (!r->is_outage_logged) {
		lv_log_warn("redis %s unreachable: %s; retrying in %lld ms", r->name, reason,
			    (long long)delay);
		r->is_outage_logged = true;
	} else {
		lv_log_debug("redis %s still unreachable: %s; retrying in %lld ms", r->name, reason,
			     (long long)delay);
	}
	if (was_up && r->on_state)
		r->on_state(r, false, r->state_arg);
}

/*
 * Drops the connection on our initiative (timeout, failed handshake). Pending
 * commands are answered with NULL by hiredis as it frees the context, at
 * once, or right after the current hiredis callback returns.
 */
static void drop(lv_redis_t *r, const char *reason)
{
	redisAsyncContext *ac = detach(r);
	guard_t g;
	guard_push(r, &g);
	went_down(r, reason);
	guard_pop(r, &g);
	if (ac)
		redisAsyncFree(ac);
}

static void arm_cmd_timer(lv_redis_t *r, lv_usec_t now)
{
	lv_usec_t tmo = r->timeout_ms * LV_USEC_PER_MS;
	lv_usec_t next = INT64_MAX;
	lv_list_t *first = lv_list_first(&r->pending);
	if (first)
		next = lv_container_of(first, req_t, node)->sent_us + tmo;
	if (r->n_subs > 0) {
		if (r->ka_sent_us)
			next = LV_MIN(next, r->ka_sent_us + tmo);
		else
			next = LV_MIN(next, r->ka_last_us + KEEPALIVE_MS * LV_USEC_PER_MS);
	}
	if (next != INT64_MAX)
		timer_arm_us(&r->cmd_ev, next - now);
}

static void go_up(lv_redis_t *r)
{
	char buf[300];
	event_del(&r->conn_ev);
	set_state(r, ST_UP);
	r->backoff_ms = BACKOFF_MIN_MS;
	lv_metric_add(LV_M_REDIS_UP, 0, 1);
	lv_usec_t now = lv_time_update();
	if (r->is_outage_logged)
		lv_log_info("redis %s up at %s after %lld ms unreachable", r->name,
			    where(r, buf, sizeof(buf)),
			    (long long)((now - r->down_since_us) / LV_USEC_PER_MS));
	else
		lv_log_info("redis %s connected to %s", r->name, where(r, buf, sizeof(buf)));
	r->is_outage_logged = false;
	r->ka_sent_us = 0;
	r->ka_last_us = now;
	if (r->n_subs > 0 || !lv_list_empty(&r->pending))
		arm_cmd_timer(r, now);
	if (r->on_state)
		r->on_state(r, true, r->state_arg);
}

/* ------------------------------------------------------------- callbacks */

/* hiredis calls this for every user command: with its reply or with NULL. */
static void reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	req_t *req = privdata;
	lv_redis_t *r = req->r;
	if (!r) {
		lv_free(req);
		return;
	}
	if (!reply && r->ac == ac) {
		/*
		 * hiredis is closing the connection after an error and is about to
		 * answer every pending command with NULL: go down first, so that
		 * these callbacks already see the client down.
		 */
		char reason[128];
		snprintf(reason, sizeof(reason), "%s", ac->err ? ac->errstr : "connection closed");
		detach(r);
		guard_t g;
		guard_push(r, &g);
		went_down(r, reason);
		if (guard_pop(r, &g)) {
			/* lv_redis_free() ran this request's callback and orphaned it. */
			lv_free(req);
			return;
		}
	}
	lv_list_unlink(&req->node);
	r->n_pending--;
	unsigned label;
	if (!reply)
		label = req->fail_label;
	else if (((redisReply *)reply)->type == REDIS_REPLY_ERROR)
		label = LV_ML_REDIS_RESULT_ERROR;
	else
		label = LV_ML_REDIS_RESULT_OK;
	lv_metric_add(LV_M_REDIS_COMMANDS_TOTAL, label, 1);
	lv_redis_cb cb = req->cb;
	void *arg = req->arg;
	lv_free(req);
	if (cb)
		cb(r, (const lv_redis_reply_t *)reply, arg);
}

static bool send_subscribe(lv_redis_t *r, const char *channel);

static void handshake_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	lv_redis_t *r = ac->data;
	redisReply *rp = reply;
	if (!r || !rp || r->state != ST_HANDSHAKE)
		return; /* a closing connection: disconnect_cb or our own drop() handles it */
	int step = (int)(uintptr_t)privdata;
	if (rp->type == REDIS_REPLY_ERROR) {
		char reason[200];
		snprintf(reason, sizeof(reason), "%s failed: %s",
			 step == STEP_AUTH ? "AUTH" : step == STEP_SELECT ? "SELECT" : "PING",
			 rp->str ? rp->str : "error");
		drop(r, reason);
		return;
	}
	if (step != STEP_PING)
		return;
	if (r->n_subs == 0) {
		go_up(r);
		return;
	}
	set_state(r, ST_SUBSCRIBING);
	r->n_sub_wait = 0;
	for (size_t i = 0; i < r->n_subs; i++) {
		if (!send_subscribe(r, r->subs[i].channel)) {
			drop(r, "cannot send SUBSCRIBE (out of memory)");
			return;
		}
		r->n_sub_wait++;
	}
}

static const sub_t *find_sub(const lv_redis_t *r, const char *channel)
{
	for (size_t i = 0; i < r->n_subs; i++)
		if (strcmp(r->subs[i].channel, channel) == 0)
			return &r->subs[i];
	return NULL;
}

/* Every reply on a subscribed connection: confirmations and messages. */
static void message_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	lv_redis_t *r = ac->data;
	redisReply *rp = reply;
	if (!r || !rp || rp->type != REDIS_REPLY_ARRAY || rp->elements < 3)
		return;
	redisReply *kind = rp->element[0], *ch = rp->element[1], *data = rp->element[2];
	if (kind->type != REDIS_REPLY_STRING || ch->type != REDIS_REPLY_STRING)
		return;
	r->ka_last_us = lv_time_now_us();
	if (strcasecmp(kind->str, "subscribe") == 0) {
		if (r->state == ST_SUBSCRIBING) {
			if (r->n_sub_wait > 0 && --r->n_sub_wait == 0)
				go_up(r);
		} else {
			r->ka_sent_us = 0; /* the keepalive (or a new subscription) was confirmed */
		}
		return;
	}
	if (strcasecmp(kind->str, "message") != 0 || data->type != REDIS_REPLY_STRING)
		return;
	const sub_t *s = find_sub(r, ch->str);
	if (s && s->cb)
		s->cb(r, ch->str, data->str, data->len, s->arg);
}

static bool send_subscribe(lv_redis_t *r, const char *channel)
{
	return redisAsyncCommand(r->ac, message_cb, NULL, "SUBSCRIBE %s", channel) == REDIS_OK;
}

/* Called by hiredis once the socket is connected, or failed to connect. Must not free ac. */
static void connect_cb(const redisAsyncContext *cac, int status)
{
	lv_redis_t *r = cac->data;
	if (!r)
		return;
	if (status != REDIS_OK) {
		char reason[160];
		/* hiredis copies the error into cac->err only after this callback. */
		snprintf(reason, sizeof(reason), "%s",
			 cac->c.err ? cac->c.errstr : cac->err ? cac->errstr : "connect failed");
		r->ac = NULL; /* hiredis frees it when we return */
		went_down(r, reason);
		return;
	}
	redisAsyncContext *ac = r->ac;
	set_state(r, ST_HANDSHAKE);
	/* Failures to queue these (out of memory) end in the connect timeout. */
	if (r->url.user[0])
		(void)redisAsyncCommand(ac, handshake_cb, (void *)(uintptr_t)STEP_AUTH,
					"AUTH %s %s", r->url.user, r->url.password);
	else if (r->url.password[0])
		(void)redisAsyncCommand(ac, handshake_cb, (void *)(uintptr_t)STEP_AUTH, "AUTH %s",
					r->url.password);
	if (r->url.db != 0)
		(void)redisAsyncCommand(ac, handshake_cb, (void *)(uintptr_t)STEP_SELECT,
					"SELECT %d", r->url.db);
	(void)redisAsyncCommand(ac, handshake_cb, (void *)(uintptr_t)STEP_PING, "PING");
}

/* Called by hiredis when a connected context goes away on its own (error, EOF). */
static void disconnect_cb(const redisAsyncContext *cac, int status)
{
	lv_redis_t *r = cac->data;
	if (!r)
		return;
	char reason[160];
	snprintf(reason, sizeof(reason), "%s",
		 status != REDIS_OK && cac->err ? cac->errstr : "connection closed");
	r->ac = NULL; /* hiredis frees it when we return */
	went_down(r, reason);
}

static void connect_start(lv_redis_t *r)
{
	char reason[160];
	lv_metric_inc(LV_M_REDIS_CONNECTS_TOTAL);
	redisAsyncContext *ac = r->url.is_unix ? redisAsyncConnectUnix(r->url.host)
					       : redisAsyncConnect(r->url.host, r->url.port);
	if (!ac) {
		went_down(r, "out of memory");
		return;
	}
	if (ac->err) {
		snprintf(reason, sizeof(reason), "%s", ac->errstr);
		redisAsyncFree(ac);
		went_down(r, reason);
		return;
	}
	if (redisLibeventAttach(ac, lv_loop_base(r->loop)) != REDIS_OK) {
		redisAsyncFree(ac);
		went_down(r, "cannot attach to the event loop");
		return;
	}
	ac->data = r;
	redisAsyncSetConnectCallback(ac, connect_cb);
	redisAsyncSetDisconnectCallback(ac, disconnect_cb);
	r->ac = ac;
	set_state(r, ST_CONNECTING);
	timer_arm(&r->conn_ev, r->timeout_ms);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	lv_redis_t *r = arg;
	char reason[96];
	switch (r->state) {
	case ST_DOWN:
		connect_start(r);
		break;
	case ST_CONNECTING:
	case ST_HANDSHAKE:
	case ST_SUBSCRIBING:
		snprintf(reason, sizeof(reason), "connect timed out after %lld ms",
			 (long long)r->timeout_ms);
		drop(r, reason);
		break;
	case ST_UP:
	case ST_CLOSED:
		break;
	}
}

static void cmd_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	lv_redis_t *r = arg;
	char reason[96];
	if (r->state != ST_UP)
		return;
	lv_usec_t now = lv_time_update();
	lv_usec_t tmo = r->timeout_ms * LV_USEC_PER_MS;
	lv_list_t *first = lv_list_first(&r->pending);
	if (first && now - lv_container_of(first, req_t, node)->sent_us >= tmo) {
		lv_list_t *pos;
		lv_list_for_each(pos, &r->pending) {
			req_t *req = lv_container_of(pos, req_t, node);
			if (now - req->sent_us >= tmo)
				req->fail_label = LV_ML_REDIS_RESULT_TIMEOUT;
		}
		snprintf(reason, sizeof(reason), "no reply within %lld ms",
			 (long long)r->timeout_ms);
		drop(r, reason);
		return;
	}
	if (r->n_subs > 0) {
		if (r->ka_sent_us && now - r->ka_sent_us >= tmo) {
			snprintf(reason, sizeof(reason), "no keepalive reply within %lld ms",
				 (long long)r->timeout_ms);
			drop(r, reason);
			return;
		}
		if (!r->ka_sent_us && now - r->ka_last_us >= KEEPALIVE_MS * LV_USEC_PER_MS &&
		    send_subscribe(r, r->subs[0].channel))
			r->ka_sent_us = now;
	}
	arm_cmd_timer(r, now);
}

/* ------------------------------------------------------------- lifecycle */

lv_redis_t *lv_redis_new(lv_loop_t *loop, const lv_redis_opts_t *opts, lv_err_t *err)
{
	if (!loop || !opts) {
		lv_err_set(err, LV_EINVAL, "redis: no loop or options");
		return NULL;
	}
	lv_redis_url_t url;
	if (lv_redis_url_parse(opts->url, &url, err) < 0)
		return NULL;
	lv_redis_t *r = lv_calloc(1, sizeof(*r));
	if (!r) {
		lv_err_set(err, LV_ENOMEM, "redis: out of memory");
		return NULL;
	}
	r->name = lv_strdup(opts->name && opts->name[0] ? opts->name : "redis");
	if (!r->name) {
		lv_free(r);
		lv_err_set(err, LV_ENOMEM, "redis: out of memory");
		return NULL;
	}
	r->loop = loop;
	r->url = url;
	r->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
	r->on_state = opts->on_state;
	r->state_arg = opts->state_arg;
	r->state = ST_DOWN;
	r->backoff_ms = BACKOFF_MIN_MS;
	r->down_since_us = lv_time_update();
	lv_list_init(&r->pending);
	struct event_base *base = lv_loop_base(loop);
	event_assign(&r->conn_ev, base, -1, 0, conn_timer_cb, r);
	event_assign(&r->cmd_ev, base, -1, 0, cmd_timer_cb, r);
	connect_start(r);
	return r;
}

void lv_redis_free(lv_redis_t *r)
{
	if (!r || r->state == ST_CLOSED)
		return;
	bool was_up = r->state == ST_UP;
	set_state(r, ST_CLOSED);
	event_del(&r->conn_ev);
	event_del(&r->cmd_ev);
	if (was_up)
		lv_metric_add(LV_M_REDIS_UP, 0, -1);
	redisAsyncContext *ac = detach(r);
	/* Answer what is pending now; hiredis keeps the orphaned records until it frees them. */
	lv_list_t *pos;
	while ((pos = lv_list_first(&r->pending)) != NULL) {
		req_t *req = lv_container_of(pos, req_t, node);
		lv_list_unlink(pos);
		r->n_pending--;
		req->r = NULL;
		lv_metric_add(LV_M_REDIS_COMMANDS_TOTAL, req->fail_label, 1);
		if (req->cb)
			req->cb(r, NULL, req->arg);
	}
	if (ac)
		redisAsyncFree(ac);
	for (guard_t *g = r->guards; g; g = g->prev)
		g->is_freed = true;
	for (size_t i = 0; i < r->n_subs; i++)
		lv_free(r->subs[i].channel);
	lv_free(r->subs);
	lv_free(r->name);
	lv_free(r);
}

bool lv_redis_is_up(const lv_redis_t *r)
{
	return r && r->state == ST_UP;
}

size_t lv_redis_pending(const lv_redis_t *r)
{
	return r ? r->n_pending : 0;
}

/* -------------------------------------------------------------- commands */

/* A record for a command about to be sent, or NULL (down, subscriber, out of memory). */
static req_t *req_new(lv_redis_t *r, lv_redis_cb cb, void *arg)
{
	if (r->state != ST_UP) {
		lv_metric_add(LV_M_REDIS_COMMANDS_TOTAL, LV_ML_REDIS_RESULT_DISCONNECTED, 1);
		return NULL;
	}
	if (r->n_subs > 0)
		return NULL;
	req_t *req = lv_malloc(sizeof(*req));
	if (!req)
		return NULL;
	req->r = r;
	req->cb = cb;
	req->arg = arg;
	req->fail_label = LV_ML_REDIS_RESULT_DISCONNECTED;
	/* The cached clock dates from before this iteration's wait: read it afresh. */
	req->sent_us = lv_time_update();
	return req;
}

static bool req_sent(lv_redis_t *r, req_t *req, int rc)
{
	if (rc != REDIS_OK) {
		lv_free(req);
		lv_metric_add(LV_M_REDIS_COMMANDS_TOTAL, LV_ML_REDIS_RESULT_ERROR, 1);
		return false;
	}
	lv_list_insert_tail(&r->pending, &req->node);
	r->n_pending++;
	if (!evtimer_pending(&r->cmd_ev, NULL))
		timer_arm(&r->cmd_ev, r->timeout_ms);
	return true;
}

bool lv_redis_cmd(lv_redis_t *r, lv_redis_cb cb, void *arg, int argc, const char *const *argv,
		  const size_t *lens)
{
	if (argc <= 0 || !argv)
		return false;
	req_t *req = req_new(r, cb, arg);
	if (!req)
		return false;
	int rc = redisAsyncCommandArgv(r->ac, reply_cb, req, argc, (const char **)argv, lens);
	return req_sent(r, req, rc);
}

bool lv_redis_cmdf(lv_redis_t *r, lv_redis_cb cb, void *arg, const char *fmt, ...)
{
	req_t *req = req_new(r, cb, arg);
	if (!req)
		return false;
	va_list ap;
	va_start(ap, fmt);
	int rc = redisvAsyncCommand(r->ac, reply_cb, req, fmt, ap);
	va_end(ap);
	return req_sent(r, req, rc);
}

bool lv_redis_subscribe(lv_redis_t *r, const char *channel, lv_redis_message_cb cb, void *arg)
{
	for (size_t i = 0; i < r->n_subs; i++) {
		if (strcmp(r->subs[i].channel, channel) == 0) {
			r->subs[i].cb = cb;
			r->subs[i].arg = arg;
			return true;
		}
	}
	char *copy = lv_strdup(channel);
	if (!copy)
		return false;
	sub_t *subs = lv_realloc(r->subs, (r->n_subs + 1) * sizeof(*subs));
	if (!subs) {
		lv_free(copy);
		return false;
	}
	r->subs = subs;
	r->subs[r->n_subs++] = (sub_t){ .channel = copy, .cb = cb, .arg = arg };
	/* While connecting, the handshake subscribes to every channel once it ends. */
	if (r->state == ST_UP || r->state == ST_SUBSCRIBING) {
		if (!send_subscribe(r, copy)) {
			lv_log_warn("redis %s: cannot send SUBSCRIBE %s now; sent on reconnect",
				    r->name, copy);
			return true;
		}
		if (r->state == ST_SUBSCRIBING) {
			r->n_sub_wait++;
		} else {
			r->ka_last_us = lv_time_update();
			arm_cmd_timer(r, r->ka_last_us);
		}
	}
	return true;
}

/* ------------------------------------------------------------------ replies */

static const redisReply *rr(const lv_redis_reply_t *rp)
{
	return (const redisReply *)rp;
}

lv_redis_type_t lv_redis_reply_type(const lv_redis_reply_t *rp)
{
	if (!rp)
		return LV_REDIS_NIL;
	switch (rr(rp)->type) {
	case REDIS_REPLY_STRING:
		return LV_REDIS_STRING;
	case REDIS_REPLY_ARRAY:
		return LV_REDIS_ARRAY;
	case REDIS_REPLY_INTEGER:
		return LV_REDIS_INTEGER;
	case REDIS_REPLY_STATUS:
		return LV_REDIS_STATUS;
	case REDIS_REPLY_ERROR:
		return LV_REDIS_ERROR;
	default:
		return LV_REDIS_NIL;
	}
}

long long lv_redis_reply_int(const lv_redis_reply_t *rp)
{
	return rp && rr(rp)->type == REDIS_REPLY_INTEGER ? rr(rp)->integer : 0;
}

const char *lv_redis_reply_str(const lv_redis_reply_t *rp, size_t *len)
{
	lv_redis_type_t t = lv_redis_reply_type(rp);
	if (t == LV_REDIS_STRING || t == LV_REDIS_STATUS || t == LV_REDIS_ERROR) {
		if (len)
			*len = rr(rp)->len;
		return rr(rp)->str;
	}
	if (len)
		*len = 0;
	return NULL;
}

size_t lv_redis_reply_len(const lv_redis_reply_t *rp)
{
	return rp && rr(rp)->type == REDIS_REPLY_ARRAY ? rr(rp)->elements : 0;
}

const lv_redis_reply_t *lv_redis_reply_at(const lv_redis_reply_t *rp, size_t i)
{
	if (!rp || rr(rp)->type != REDIS_REPLY_ARRAY || i >= rr(rp)->elements)
		return NULL;
	return (const lv_redis_reply_t *)rr(rp)->element[i];
}
