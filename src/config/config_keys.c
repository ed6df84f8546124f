/* SPDX-License-Identifier: ISC */
/*
 * THE settings table of the fixed sections [levee], [pool], [routing], [tls], [cache] and
 * [queue]: one
 * row per key, naming its section, type, field of lv_config_t, default,
 * bounds, flags and a one-sentence description. Everything else is driven
 * by the rows: defaults, parsing, range checks, SHOW CONFIG (masking
 * secrets), reload warnings and the docs check (tools/check-config-docs.sh
 * reads this file and requires each doc sentence in docs/config.md).
 *
 * Below the table are the typed parsers and renderers shared with the
 * [database NAME] and [user NAME] tables of config_dbs.c and the rule tables
 * of config_rules.c.
 *
 * Value syntax, decided once here and documented in docs/config.md:
 *   bool      true/false, yes/no, on/off, 1/0, any case
 *   integer   decimal, optional sign; "auto" too where the row says LV_CF_AUTO
 *   duration  integer with unit ms, s, min, h or d; a plain integer is milliseconds
 *   size      integer with unit B, kB, MB, GB or TB (powers of 1024); a plain integer is bytes
 *   percent   integer with an optional '%'
 *   number    decimal with an optional fraction, no sign or exponent (locale-free)
 *   tables    comma-separated unqualified table names, stored lower-cased
 *   enum      one of the row's names, any case
 * Strings are stored as owned copies (lv_xstrdup; config loading aborts on
 * OOM) and freed with their generation by lv__values_free().
 */
#include "core/lv.h"

#include <ctype.h>
#include <limits.h>
#include <strings.h>

#include "config/config_int.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/str.h"

#define MS 1LL
#define SEC (1000 * MS)
#define MINUTE (60 * SEC)
#define HOUR (60 * MINUTE)
#define DAY (24 * HOUR)

/* ---- Enum names ---- */

static const lv__enum_t auth_types[] = {
	{"trust", LV_AUTH_TRUST},
	{"md5", LV_AUTH_MD5},
	{"scram-sha-256", LV_AUTH_SCRAM},
	{NULL, 0},
};

static const lv__enum_t log_levels[] = {
	{"fatal", LV_LOG_FATAL},
	{"error", LV_LOG_ERROR},
	{"warning", LV_LOG_WARN},
	{"info", LV_LOG_INFO},
	{"debug", LV_LOG_DEBUG},
	{"trace", LV_LOG_TRACE},
	{NULL, 0},
};

/* Shared with the [database] and [user] tables of config_dbs.c. */
const lv__enum_t lv__pool_modes[] = {
	{"session", LV_POOL_SESSION},
	{"transaction", LV_POOL_TRANSACTION},
	{NULL, 0},
};

static const lv__enum_t session_states[] = {
	{"pin", LV_SESSION_STATE_PIN},
	{"reject", LV_SESSION_STATE_REJECT},
	{NULL, 0},
};

static const lv__enum_t replica_fallbacks[] = {
	{"primary", LV_FALLBACK_PRIMARY},
	{"error", LV_FALLBACK_ERROR},
	{NULL, 0},
};

static const lv__enum_t ryw_modes[] = {
	{"lsn", LV_RYW_LSN},
	{"time", LV_RYW_TIME},
	{"off", LV_RYW_OFF},
	{NULL, 0},
};

static const lv__enum_t failover_modes[] = {
	{"off", LV_FAILOVER_OFF},
	{"follow", LV_FAILOVER_FOLLOW},
	{NULL, 0},
};

static const lv__enum_t client_tls_modes[] = {
	{"disable", LV_CLIENT_TLS_DISABLE},
	{"allow", LV_CLIENT_TLS_ALLOW},
	{"require", LV_CLIENT_TLS_REQUIRE},
	{NULL, 0},
};

static const lv__enum_t server_tls_modes[] = {
	{"disable", LV_SERVER_TLS_DISABLE},
	{"prefer", LV_SERVER_TLS_PREFER},
	{"require", LV_SERVER_TLS_REQUIRE},
	{NULL, 0},
};

/* ---- Lists ---- */

const char *lv__list_next(const char **p, size_t *n)
{
	const char *s = *p;
	if (!s)
		return NULL;
	while (*s == ' ' || *s == '\t')
		s++;
	const char *end = strchr(s, ',');
	size_t len = end ? (size_t)(end - s) : strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	*n = len;
	*p = end ? end + 1 : NULL;
	return s;
}

/* ---- Checks run after a value is stored ---- */

static const char *str_field(const lv__key_t *k, const void *base)
{
	return *(char *const *)(const void *)((const char *)base + k->offset);
}

static int check_listen(const lv__key_t *k, const void *base, lv_err_t *err)
{
	const char *v = str_field(k, base);
	if (!v)
		return lv_err_set(err, LV_EINVAL, "expected host:port or a unix socket path");
	return lv__host_list_check(v, LV__HOST_WILDCARD | LV__HOST_PATH, err);
}

static int check_http_listen(const lv__key_t *k, const void *base, lv_err_t *err)
{
	const char *v = str_field(k, base);
	lv_cfg_host_t h;
	return v ? lv__host_parse(v, LV__HOST_WILDCARD, &h, err) : 0;
}

/* redis://[[user]:password@]host[:port][/db] or unix:///path/to/redis.sock */
static int check_redis(const lv__key_t *k, const void *base, lv_err_t *err)
{
	static const char usage[] = "expected redis://[[user]:password@]host[:port][/db] or "
				    "unix:///path/to/redis.sock";
	const char *v = str_field(k, base);
	if (!v)
		return 0;
	if (strncmp(v, "unix://", 7) == 0)
		return v[7] == '/' ? 0 : lv_err_set(err, LV_EINVAL, "%s", usage);
	if (strncmp(v, "redis://", 8) != 0)
		return lv_err_set(err, LV_EINVAL, "%s", usage);
	const char *p = v + 8;
	const char *at = strrchr(p, '@');
	if (at) {
		/* Credentials are [user]:password, as the Redis client reads them. */
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (!colon)
			return lv_err_set(err, LV_EINVAL, "expected [user]:password before '@'");
		p = at + 1;
	}
	const char *slash = strchr(p, '/');
	size_t hp_len = slash ? (size_t)(slash - p) : strlen(p);
	if (hp_len == 0 || hp_len >= LV_HOST_LEN + 8)
		return lv_err_set(err, LV_EINVAL, "%s", usage);
	char hp[LV_HOST_LEN + 16];
	memcpy(hp, p, hp_len);
	hp[hp_len] = '\0';
	/* The port is optional in a URL; check the host with the default one. */
	const char *close = hp[0] == '[' ? strchr(hp, ']') : NULL;
	bool has_port = hp[0] == '[' ? close && close[1] == ':' : strchr(hp, ':') != NULL;
	if (!has_port)
		strcat(hp, ":6379");
	lv_cfg_host_t h;
	lv_err_t sub;
	if (lv__host_parse(hp, 0, &h, &sub) < 0 || h.host[0] == '/')
		return lv_err_set(err, LV_EINVAL, "%s", usage);
	if (slash) {
		int64_t db;
		if (lv__parse_int(slash + 1, &db) < 0 || db < 0 ||
		    !isdigit((unsigned char)slash[1]))
			return lv_err_set(err, LV_EINVAL,
					  "the database after '/' must be a number");
	}
	return 0;
}

static int check_user_list(const lv__key_t *k, const void *base, lv_err_t *err)
{
	const char *v = str_field(k, base);
	if (!v)
		return 0;
	const char *p = v, *e;
	size_t n;
	while ((e = lv__list_next(&p, &n))) {
		if (n == 0)
			return lv_err_set(err, LV_EINVAL,
					  "expected a comma-separated list of user names");
		if (n >= LV_NAME_LEN)
			return lv_err_set(err, LV_EINVAL,
					  "user name \"%.*s\" is longer than %d bytes", (int)n, e,
					  LV_NAME_LEN - 1);
	}
	return 0;
}

static int check_user_name(const lv__key_t *k, const void *base, lv_err_t *err)
{
	const char *v = str_field(k, base);
	if (!v)
		return 0;
	size_t n = strlen(v);
	bool ok = n < LV_NAME_LEN;
	for (size_t i = 0; ok && i < n; i++)
		ok = !iscntrl((unsigned char)v[i]) && v[i] != ',';
	return ok ? 0
		  : lv_err_set(err, LV_EINVAL, "expected one user name of 1 to %d bytes",
			       LV_NAME_LEN - 1);
}

/* Is s[0..n) one part of a function name: 1..LV_NAME_LEN-1 identifier bytes? */
static bool function_part_valid(const char *s, size_t n)
{
	if (n == 0 || n >= LV_NAME_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '_' && c != '$' && c < 0x80)
			return false;
	}
	return true;
}

/*
 * write_functions: a comma-separated list whose entries are "name",
 * "schema.name" or either ending in '*' (a prefix), as sql/classify.c
 * matches them. Identifiers are written without quotes.
 */
static int check_function_list(const lv__key_t *k, const void *base, lv_err_t *err)
{
	const char *v = str_field(k, base);
	if (!v)
		return 0;
	const char *p = v, *e;
	size_t n;
	while ((e = lv__list_next(&p, &n))) {
		if (n == 0)
			return lv_err_set(err, LV_EINVAL, "the list has an empty entry");
		size_t name_len = e[n - 1] == '*' ? n - 1 : n;
		const char *dot = memchr(e, '.', name_len);
		/* A lone "*" or "schema.*" leaves an empty part, which is refused. */
		bool ok = dot ? function_part_valid(e, (size_t)(dot - e)) &&
					  function_part_valid(dot + 1,
							      name_len - (size_t)(dot - e) - 1)
			      : function_part_valid(e, name_len);
		if (!ok)
			return lv_err_set(
				err, LV_EINVAL,
				"entry \"%.*s%s\": expected a function name, schema.name, "
				"or either ending in *",
				(int)LV_MIN(n, (size_t)64), e, n > 64 ? "..." : "");
	}
	return 0;
}

/* [queue] stream_prefix: a Redis key prefix, printable and without spaces. */
static int check_stream_prefix(const lv__key_t *k, const void *base, lv_err_t *err)
{
	const char *v = str_field(k, base);
	size_t n = v ? strlen(v) : 0;
	bool ok = n > 0 && n < LV_NAME_LEN;
	for (size_t i = 0; ok && i < n; i++)
		ok = isgraph((unsigned char)v[i]) || (unsigned char)v[i] >= 0x80;
	return ok ? 0
		  : lv_err_set(err, LV_EINVAL,
			       "expected a Redis key prefix of 1 to %d bytes without spaces",
			       LV_NAME_LEN - 1);
}

/* ---- The table ---- */

/*
 * One row per setting. LV_KEY's field is <section>.<key> in lv_config_t;
 * LV_KEY_MS's is <section>.<key>_ms (durations are stored in milliseconds).
 * After the doc sentence come optional designated initializers: .names for
 * enums, .check for an extra check.
 */
#define LV_KEY(sect, key, ty, def, lo, hi, flags, doc, ...) \
	LV__KEY_ROW(lv_config_t, #sect, #key, ty, sect.key, def, lo, hi, flags, doc, __VA_ARGS__)
#define LV_KEY_MS(sect, key, def, lo, hi, flags, doc, ...)                                      \
	LV__KEY_ROW(lv_config_t, #sect, #key, DURATION, sect.key##_ms, def, lo, hi, flags, doc, \
		    __VA_ARGS__)
#define LV_KEY_PCT(sect, key, def, lo, hi, flags, doc, ...)                                     \
	LV__KEY_ROW(lv_config_t, #sect, #key, PERCENT, sect.key##_pct, def, lo, hi, flags, doc, \
		    __VA_ARGS__)

#define RELOAD LV_CF_RELOAD

const lv__key_t lv__keys[] = {
	/* [levee] */
	LV_KEY(levee, listen, STRING, "127.0.0.1:6432", 0, 0, 0,
	       "Addresses where Levee accepts PostgreSQL clients.", .check = check_listen),
	LV_KEY(levee, http_listen, STRING, "", 0, 0, 0,
	       "Address of the HTTP server for metrics and health checks.",
	       .check = check_http_listen),
	LV_KEY(levee, workers, INT, "0", 0, 1024, LV_CF_AUTO,
	       "Number of worker threads that serve clients."),
	LV_KEY(levee, auth_file, PATH, "", 0, 0, RELOAD,
	       "File listing the users who may log in, with their passwords or secrets."),
	LV_KEY(levee, auth_type, ENUM, "md5", 0, 0, RELOAD, "How clients prove who they are.",
	       .names = auth_types),
	LV_KEY(levee, admin_users, STRING, "", 0, 0, RELOAD,
	       "Users allowed to run every command of the admin console.",
	       .check = check_user_list),
	LV_KEY(levee, stats_users, STRING, "", 0, 0, RELOAD,
	       "Users allowed read-only SHOW commands in the admin console.",
	       .check = check_user_list),
	LV_KEY(levee, redis, STRING, "", 0, 0, LV_CF_SECRET,
	       "Redis server for the shared result cache and the write queue.",
	       .check = check_redis),
	LV_KEY(levee, logfile, PATH, "", 0, 0, 0, "File the log is appended to."),
	LV_KEY(levee, log_level, ENUM, "info", 0, 0, RELOAD,
	       "Most detailed kind of message written to the log.", .names = log_levels),
	LV_KEY(levee, log_connections, BOOL, "true", 0, 0, RELOAD,
	       "Log every client that logs in."),
	LV_KEY(levee, log_disconnections, BOOL, "true", 0, 0, RELOAD,
	       "Log every client that disconnects, with the reason."),
	LV_KEY(levee, pidfile, PATH, "", 0, 0, 0, "File Levee writes its process id into."),
	LV_KEY(levee, max_client_conn, INT, "10000", 1, 1000000, RELOAD,
	       "Most client connections Levee holds at once."),
	LV_KEY_MS(levee, client_login_timeout, "60s", 0, DAY, RELOAD,
		  "Time a client has to finish logging in."),
	LV_KEY_MS(levee, shutdown_timeout, "30s", 0, DAY, RELOAD,
		  "Time a graceful shutdown waits for clients to finish."),
	LV_KEY_MS(levee, cancel_wait_timeout, "10s", 0, HOUR, RELOAD,
		  "Time a cancel request may wait to be delivered to its server."),
	LV_KEY(levee, max_packet_size, SIZE, "1073741823", 1024, 1073741823, 0,
	       "Largest protocol message accepted from a client."),

	/* [pool]: the defaults of every pool; [database] and [user] sections override some. */
	LV_KEY(pool, pool_mode, ENUM, "session", 0, 0, RELOAD,
	       "When a client gives its server connection back to the pool.",
	       .names = lv__pool_modes),
	LV_KEY(pool, pool_size, INT, "20", 1, 10000, RELOAD,
	       "Most server connections in one pool."),
	LV_KEY(pool, min_pool_size, INT, "0", 0, 10000, RELOAD,
	       "Server connections each pool keeps open even when no client needs them."),
	LV_KEY(pool, reserve_pool_size, INT, "0", 0, 10000, RELOAD,
	       "Extra server connections a pool may open when clients have waited too long."),
	LV_KEY_MS(pool, reserve_pool_timeout, "5s", 0, HOUR, RELOAD,
		  "How long a client waits before its pool may use the reserve."),
	LV_KEY(pool, max_db_connections, INT, "0", 0, 100000, RELOAD,
	       "Most server connections to one database, over all its pools."),
	LV_KEY(pool, max_user_connections, INT, "0", 0, 100000, RELOAD,
	       "Most server connections for one user, over all its pools."),
	LV_KEY(pool, server_connect_concurrency, INT, "4", 1, 1000, RELOAD,
	       "Most server connection attempts one pool makes at the same time."),
	LV_KEY_MS(pool, query_wait_timeout, "120s", 0, DAY, RELOAD,
		  "How long a client may wait for a server connection."),
	LV_KEY_MS(pool, client_idle_timeout, "0", 0, 7 * DAY, RELOAD,
		  "Closes client connections that have been idle this long."),
	LV_KEY_MS(pool, idle_transaction_timeout, "0", 0, 7 * DAY, RELOAD,
		  "Closes clients that sit idle inside a transaction this long."),
	LV_KEY_MS(pool, server_idle_timeout, "600s", 0, 7 * DAY, RELOAD,
		  "Closes server connections that have been idle in the pool this long."),
	LV_KEY_MS(pool, server_lifetime, "3600s", 0, 7 * DAY, RELOAD,
		  "Closes server connections older than this when they are next idle."),
	LV_KEY_MS(pool, server_connect_timeout, "15s", 100 * MS, HOUR, RELOAD,
		  "Time allowed to connect and log in to a server."),
	LV_KEY_MS(pool, server_login_retry, "1s", 10 * MS, HOUR, RELOAD,
		  "Wait after a failed server connection attempt before the next one."),
	LV_KEY(pool, server_reset_query, STRING, "DISCARD ALL", 0, 0, RELOAD,
	       "Query that cleans a server connection when a session-mode client leaves."),
	LV_KEY(pool, max_prepared_statements, INT, "200", 0, 100000, RELOAD,
	       "Named prepared statements Levee tracks per client in transaction mode."),
	LV_KEY(pool, session_state, ENUM, "pin", 0, 0, RELOAD,
	       "What transaction mode does with statements that create session state.",
	       .names = session_states),

	/* [routing]: read/write splitting for databases with replicas. */
	LV_KEY_MS(routing, health_check_period, "1s", 100 * MS, HOUR, RELOAD,
		  "How often Levee checks the health and lag of each backend."),
	LV_KEY(routing, health_check_failures, INT, "3", 1, 100, RELOAD,
	       "Failed health checks in a row after which a backend gets no new reads."),
	LV_KEY_MS(routing, health_check_timeout, "1s", 100 * MS, MINUTE, RELOAD,
		  "Time one health check may take before it counts as failed."),
	LV_KEY(routing, health_check_user, STRING, "", 0, 0, RELOAD,
	       "User that health checks log in as.", .check = check_user_name),
	LV_KEY(routing, health_check_password, STRING, "", 0, 0, RELOAD | LV_CF_SECRET,
	       "Password of the health-check user."),
	LV_KEY_MS(routing, max_replica_lag, "1s", 0, DAY, RELOAD,
		  "Replay delay beyond which a replica gets no new reads."),
	LV_KEY(routing, max_replica_lag_bytes, SIZE64, "16MB", 0, 1024LL * 1024 * 1024 * 1024,
	       RELOAD, "WAL a replica may be behind the primary before it gets no new reads."),
	LV_KEY(routing, replica_fallback, ENUM, "primary", 0, 0, RELOAD,
	       "What a read does when no replica qualifies.", .names = replica_fallbacks),
	LV_KEY(routing, read_your_writes, ENUM, "lsn", 0, 0, RELOAD,
	       "How a client's reads after its own write avoid replicas that lack the write.",
	       .names = ryw_modes),
	LV_KEY_MS(routing, read_your_writes_timeout, "2s", 0, HOUR, RELOAD,
		  "Longest time a client's reads stay on the primary after it writes."),
	LV_KEY(routing, failover, ENUM, "off", 0, 0, RELOAD,
	       "Whether Levee follows a replica that was promoted to primary.",
	       .names = failover_modes),
	LV_KEY(routing, write_functions, STRING, "", 0, 0, RELOAD,
	       "Functions that make a statement a write, besides the built-in ones.",
	       .check = check_function_list),

	/* [tls] */
	LV_KEY(tls, client_tls_mode, ENUM, "disable", 0, 0, 0,
	       "Whether clients may or must use TLS.", .names = client_tls_modes),
	LV_KEY(tls, cert_file, PATH, "", 0, 0, 0,
	       "Certificate chain Levee presents to clients, in PEM."),
	LV_KEY(tls, key_file, PATH, "", 0, 0, 0, "Private key of cert_file, in PEM."),
	LV_KEY(tls, ca_file, PATH, "", 0, 0, 0,
	       "CA certificates that client certificates must chain to, in PEM."),
	LV_KEY(tls, server_tls, ENUM, "disable", 0, 0, 0,
	       "Whether Levee asks PostgreSQL servers for TLS.", .names = server_tls_modes),
	LV_KEY(tls, server_ca_file, PATH, "", 0, 0, 0,
	       "CA certificates that server certificates must chain to, in PEM."),

	/* [cache]: defaults of the result cache; the rules are [cache.rule NAME] sections. */
	LV_KEY(cache, memory, SIZE64, "256MB", 0, 1024LL * 1024 * 1024 * 1024, 0,
	       "Memory this process may use for cached results."),
	LV_KEY(cache, max_entry_size, SIZE64, "1MB", 1024, 1024LL * 1024 * 1024, RELOAD,
	       "Largest result that is cached; larger results are passed through uncached."),
	LV_KEY_MS(cache, default_ttl, "30s", 1 * MS, 30 * DAY, RELOAD,
		  "How long a result cached by a hint without ttl= stays fresh."),
	LV_KEY_MS(cache, swr, "0", 0, 30 * DAY, RELOAD,
		  "How long past its TTL a stale result may be served while it is refreshed."),
	LV_KEY_PCT(cache, jitter, "10%", 0, 50, RELOAD,
		   "Random spread of every TTL, so entries cached together expire apart."),
	LV_KEY(cache, xfetch_beta, FLOAT, "0", 0, 100, RELOAD,
	       "Strength of probabilistic early refresh of entries close to expiry."),
	LV_KEY(cache, bypass_users, STRING, "", 0, 0, RELOAD,
	       "Users whose queries are never answered from the cache and never fill it.",
	       .check = check_user_list),
	LV_KEY(cache, redis_l2, BOOL, "true", 0, 0, RELOAD,
	       "Share cached results between Levee instances through Redis."),
	LV_KEY_MS(cache, lock_timeout, "2s", 10 * MS, HOUR, RELOAD,
		  "Lifetime of the lock an instance takes while it fills a shared entry."),
	LV_KEY_MS(cache, lock_wait, "200ms", 0, MINUTE, RELOAD,
		  "How long another instance waits for that fill before querying the server."),

	/* [queue]: deferred writes on Redis Streams; the rules are [queue.rule NAME] sections. */
	LV_KEY(queue, consumers, BOOL, "true", 0, 0, RELOAD,
	       "Whether this instance applies queued writes to the databases."),
	LV_KEY(queue, batch_size, INT, "100", 1, 10000, RELOAD,
	       "Most queued writes applied in one transaction."),
	LV_KEY(queue, connections, INT, "4", 1, 8, RELOAD,
	       "PostgreSQL connections per database that apply queued writes at once."),
	LV_KEY_MS(queue, max_wait, "50ms", 0, MINUTE, RELOAD,
		  "How long a consumer waits for a batch to fill before applying what it has."),
	LV_KEY(queue, max_attempts, INT, "5", 1, 1000, RELOAD,
	       "Attempts at applying a write before it goes to the dead-letter stream."),
	LV_KEY_MS(queue, retry_backoff, "100ms", 1 * MS, HOUR, RELOAD,
		  "Wait before the first retry of a failed write; it doubles with each attempt."),
	LV_KEY_MS(queue, retry_backoff_max, "30s", 1 * MS, DAY, RELOAD,
		  "Longest wait between two attempts at a failed write."),
	LV_KEY_MS(queue, claim_idle, "30s", 1 * SEC, DAY, RELOAD,
		  "How long a write may go unacknowledged before another consumer takes it."),
	LV_KEY(queue, max_inflight, INT, "1000", 1, 1000000, RELOAD,
	       "Most writes per database that are queued but not yet applied."),
	LV_KEY(queue, max_length, INT64, "1000000", 1, 1000000000, RELOAD,
	       "Most entries a database's queue streams may hold before writes are refused."),
	LV_KEY(queue, wait_replicas, INT, "0", 0, 16, RELOAD,
	       "Redis replicas that must hold a queued write before the client is told done."),
	LV_KEY_MS(queue, wait_timeout, "100ms", 1 * MS, MINUTE, RELOAD,
		  "How long Levee waits for those Redis replicas."),
	LV_KEY(queue, stream_prefix, STRING, "levee:q", 0, 0, 0,
	       "Prefix of the Redis keys that hold the queues.", .check = check_stream_prefix),
};

const size_t lv__n_keys = LV_ARRAY_LEN(lv__keys);

/* ---- Parsers ---- */

int lv__parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < LV_ARRAY_LEN(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return LV_EINVAL;
}

/* Reads an unsigned decimal prefix; returns the end or NULL when there is no digit. */
static const char *scan_uint(const char *s, int64_t *out, bool *overflow)
{
	int64_t v = 0;
	const char *p = s;
	*overflow = false;
	while (isdigit((unsigned char)*p)) {
		int d = *p - '0';
		if (v > (INT64_MAX - d) / 10)
			*overflow = true;
		else
			v = v * 10 + d;
		p++;
	}
	*out = v;
	return p == s ? NULL : p;
}

int lv__parse_int(const char *s, int64_t *out)
{
	bool neg = false, overflow;
	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	int64_t v;
	const char *end = scan_uint(s, &v, &overflow);
	if (!end || *end)
		return LV_EINVAL;
	if (overflow)
		return LV_ERANGE;
	*out = neg ? -v : v;
	return 0;
}

int lv__parse_float(const char *s, double *out)
{
	double v = 0, scale = 1;
	bool any = false;
	const char *p = s;
	for (; isdigit((unsigned char)*p); p++, any = true)
		v = v * 10 + (*p - '0');
	if (*p == '.') {
		for (p++; isdigit((unsigned char)*p); p++, any = true) {
			scale /= 10;
			v += (*p - '0') * scale;
		}
	}
	if (!any || *p)
		return LV_EINVAL;
	*out = v;
	return 0;
}

typedef struct unit {
	const char *name;
	int64_t mult;
} unit_t;

/* Parses "<digits>[ ]<unit>" with unit from units ("" allowed, meaning multiplier 1). */
static int parse_with_unit(const char *s, const unit_t *units, size_t n_units, int64_t *out)
{
	bool overflow;
	int64_t v;
	const char *p = scan_uint(s, &v, &overflow);
	if (!p)
		return LV_EINVAL;
	while (*p == ' ' || *p == '\t')
		p++;
	for (size_t i = 0; i < n_units; i++) {
		if (strcasecmp(p, units[i].name) != 0)
			continue;
		if (overflow || v > INT64_MAX / units[i].mult)
			return LV_ERANGE;
		*out = v * units[i].mult;
		return 0;
	}
	return LV_EINVAL;
}

static const unit_t duration_units[] = {
	{"", MS}, {"ms", MS}, {"s", SEC}, {"min", MINUTE}, {"h", HOUR}, {"d", DAY},
};

static const unit_t size_units[] = {
	{"", 1},
	{"B", 1},
	{"kB", 1024LL},
	{"MB", 1024LL * 1024},
	{"GB", 1024LL * 1024 * 1024},
	{"TB", 1024LL * 1024 * 1024 * 1024},
};

int lv__parse_duration(const char *s, int64_t *ms)
{
	return parse_with_unit(s, duration_units, LV_ARRAY_LEN(duration_units), ms);
}

int lv__parse_size(const char *s, int64_t *bytes)
{
	return parse_with_unit(s, size_units, LV_ARRAY_LEN(size_units), bytes);
}

/*
 * Renders v with the largest unit that divides it exactly (units[2] and up),
 * else with units[plain]; zero is written "0".
 */
static const char *render_with_unit(int64_t v, const unit_t *units, size_t n_units, size_t plain,
				    char *buf, size_t cap)
{
	size_t i = n_units - 1;
	while (i > 1 && (v == 0 || v % units[i].mult != 0))
		i--;
	if (i == 1 || v == 0)
		i = v == 0 ? 0 : plain;
	snprintf(buf, cap, "%lld%s", (long long)(v / units[i].mult), units[i].name);
	return buf;
}

const char *lv__render_duration(int64_t ms, char *buf, size_t cap)
{
	return render_with_unit(ms, duration_units, LV_ARRAY_LEN(duration_units), 1, buf, cap);
}

const char *lv__render_size(int64_t bytes, char *buf, size_t cap)
{
	return render_with_unit(bytes, size_units, LV_ARRAY_LEN(size_units), 0, buf, cap);
}

/* ---- Storing values ---- */

static void *field(const lv__key_t *k, void *base)
{
	return (char *)base + k->offset;
}

static const void *cfield(const lv__key_t *k, const void *base)
{
	return (const char *)base + k->offset;
}

static void set_string(char **dst, const char *value)
{
	lv_free(*dst);
	*dst = *value ? lv_xstrdup(value) : NULL;
}

static char *join_path(const char *dir, const char *value)
{
	if (value[0] == '/' || dir[0] == '\0')
		return lv_xstrdup(value);
	size_t dl = strlen(dir), vl = strlen(value);
	bool slash = dir[dl - 1] != '/';
	char *p = lv_xmalloc(dl + slash + vl + 1);
	memcpy(p, dir, dl);
	if (slash)
		p[dl] = '/';
	memcpy(p + dl + slash, value, vl + 1);
	return p;
}

static int enum_error(const lv__key_t *k, lv_err_t *err)
{
	char list[256];
	size_t n = 0;
	list[0] = '\0';
	for (const lv__enum_t *e = k->names; e->name; e++)
		n += (size_t)snprintf(list + n, sizeof(list) - LV_MIN(n, sizeof(list)), "%s%s",
				      e == k->names ? "" : ", ", e->name);
	return lv_err_set(err, LV_EINVAL, "expected one of %s", list);
}

/* Frees a TABLES field and zeroes its count. */
static void free_tables(const lv__key_t *k, void *base)
{
	char ***v = field(k, base);
	int *n = (int *)(void *)((char *)base + k->aux);
	for (int i = 0; *v && i < *n; i++)
		lv_free((*v)[i]);
	lv_free(*v);
	*v = NULL;
	*n = 0;
}

/* Checks one table name (s[0..n)) and returns a lower-cased copy, or NULL with err set. */
static char *table_name(const char *s, size_t n, lv_err_t *err)
{
	const char *dot = memchr(s, '.', n);
	if (dot) {
		const char *bare = s + n;
		while (bare > s && bare[-1] != '.')
			bare--;
		lv_err_set(err, LV_EINVAL,
			   "table \"%.*s\" is schema-qualified; write the bare name \"%.*s\"",
			   (int)LV_MIN(n, (size_t)64), s,
			   (int)LV_MIN((size_t)(s + n - bare), (size_t)64), bare);
		return NULL;
	}
	bool ok = n > 0 && n < LV_NAME_LEN;
	for (size_t i = 0; ok && i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		ok = isalnum(c) || c == '_' || c == '$' || c >= 0x80;
	}
	if (!ok) {
		lv_err_set(err, LV_EINVAL,
			   "invalid table name \"%.*s\": expected 1 to %d bytes of letters, "
			   "digits, _ and $, without quotes",
			   (int)LV_MIN(n, (size_t)64), s, LV_NAME_LEN - 1);
		return NULL;
	}
	char *t = lv_xmalloc(n + 1);
	for (size_t i = 0; i < n; i++)
		t[i] = (char)tolower((unsigned char)s[i]);
	t[n] = '\0';
	return t;
}

/* TABLES: "a, b,c" into an owned array of lower-cased names; the old list is replaced. */
static int set_tables(const lv__key_t *k, const char *value, void *base, lv_err_t *err)
{
	char **v = NULL;
	int n = 0, cap = 0;
	const char *p = value, *e;
	size_t len;
	while ((e = lv__list_next(&p, &len))) {
		char *t = NULL;
		if (len == 0)
			lv_err_set(err, LV_EINVAL,
				   *value ? "the list has an empty entry"
					  : "expected a comma-separated list of table names");
		else
			t = table_name(e, len, err);
		if (!t) {
			for (int i = 0; i < n; i++)
				lv_free(v[i]);
			lv_free(v);
			return LV_EINVAL;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			v = lv_xrealloc(v, (size_t)cap * sizeof(*v));
		}
		v[n++] = t;
	}
	free_tables(k, base);
	*(char ***)field(k, base) = v;
	*(int *)(void *)((char *)base + k->aux) = n;
	return 0;
}

static int set_typed(const lv__key_t *k, const char *value, const char *dir, void *base,
		     lv_err_t *err)
{
	void *dst = field(k, base);
	int64_t v;
	char lo[32], hi[32];

	switch (k->type) {
	case LV__T_BOOL:
		if (lv__parse_bool(value, (bool *)dst) < 0)
			return lv_err_set(err, LV_EINVAL, "expected true or false");
		return 0;
	case LV__T_INT:
	case LV__T_INT64:
		if ((k->flags & LV_CF_AUTO) && strcasecmp(value, "auto") == 0)
			v = 0;
		else if (lv__parse_int(value, &v) < 0 || v < k->lo || v > k->hi)
			return lv_err_set(err, LV_EINVAL, "expected %san integer from %lld to %lld",
					  (k->flags & LV_CF_AUTO) ? "\"auto\" or " : "",
					  (long long)k->lo, (long long)k->hi);
		if (k->type == LV__T_INT64)
			*(int64_t *)dst = v;
		else
			*(int *)dst = (int)v;
		return 0;
	case LV__T_SIZE:
	case LV__T_SIZE64:
		if (lv__parse_size(value, &v) < 0 || v < k->lo || v > k->hi)
			return lv_err_set(err, LV_EINVAL,
					  "expected a size in bytes from %lld to %lld "
					  "(units kB, MB and GB are accepted)",
					  (long long)k->lo, (long long)k->hi);
		if (k->type == LV__T_SIZE64)
			*(int64_t *)dst = v;
		else
			*(int *)dst = (int)v;
		return 0;
	case LV__T_DURATION:
		if (lv__parse_duration(value, &v) < 0 || v < k->lo || v > k->hi)
			return lv_err_set(err, LV_EINVAL,
					  "expected a duration from %s to %s, such as 500ms, 30s, "
					  "5min or 1h",
					  lv__render_duration(k->lo, lo, sizeof(lo)),
					  lv__render_duration(k->hi, hi, sizeof(hi)));
		*(int64_t *)dst = v;
		return 0;
	case LV__T_ENUM:
		for (const lv__enum_t *e = k->names; e->name; e++) {
			if (strcasecmp(value, e->name) == 0) {
				*(int *)dst = e->value;
				return 0;
			}
		}
		return enum_error(k, err);
	case LV__T_STRING:
		set_string(dst, value);
		return 0;
	case LV__T_PATH: {
		char **p = dst;
		lv_free(*p);
		*p = *value ? join_path(dir, value) : NULL;
		return 0;
	}
	case LV__T_NAME: {
		size_t n = strlen(value);
		bool ok = n > 0 && n < LV_NAME_LEN;
		for (size_t i = 0; ok && i < n; i++)
			ok = !iscntrl((unsigned char)value[i]);
		if (!ok)
			return lv_err_set(err, LV_EINVAL, "expected a name of 1 to %d bytes",
					  LV_NAME_LEN - 1);
		memcpy(dst, value, n + 1);
		return 0;
	}
	case LV__T_HOST: {
		lv_cfg_host_t h;
		int rc = lv__host_parse(value, 0, &h, err);
		if (rc < 0)
			return rc;
		*(lv_cfg_host_t *)dst = h;
		return 0;
	}
	case LV__T_PERCENT: {
		char num[24];
		size_t n = strlen(value);
		if (n > 0 && value[n - 1] == '%')
			n--;
		while (n > 0 && isspace((unsigned char)value[n - 1]))
			n--;
		bool ok = n > 0 && n < sizeof(num);
		if (ok) {
			memcpy(num, value, n);
			num[n] = '\0';
			ok = isdigit((unsigned char)num[0]) && lv__parse_int(num, &v) == 0 &&
			     v >= k->lo && v <= k->hi;
		}
		if (!ok)
			return lv_err_set(err, LV_EINVAL,
					  "expected a percentage from %lld to %lld, such as 10%%",
					  (long long)k->lo, (long long)k->hi);
		*(int *)dst = (int)v;
		return 0;
	}
	case LV__T_FLOAT: {
		double d;
		if (lv__parse_float(value, &d) < 0 || d < (double)k->lo || d > (double)k->hi)
			return lv_err_set(err, LV_EINVAL,
					  "expected a number from %lld to %lld, such as 0.5",
					  (long long)k->lo, (long long)k->hi);
		*(double *)dst = d;
		return 0;
	}
	case LV__T_TABLES:
		return set_tables(k, value, base, err);
	case LV__T_HOSTS:
		break;
	}
	return lv_err_set(err, LV_EINVAL, "no parser for this setting");
}

int lv__value_set(const lv__key_t *k, const char *value, const char *dir, void *base, lv_err_t *err)
{
	int rc = k->parse ? k->parse(k, value, base, err) : set_typed(k, value, dir, base, err);
	if (rc == 0 && k->check)
		rc = k->check(k, base, err);
	return rc;
}

void lv__values_default(const lv__key_t *keys, size_t n, void *base, const char *dir)
{
	for (size_t i = 0; i < n; i++) {
		lv_err_t err;
		if (!keys[i].def[0])
			continue;
		if (lv__value_set(&keys[i], keys[i].def, dir, base, &err) < 0)
			lv_fatal("config: default \"%s\" of %s does not parse: %s", keys[i].def,
				 keys[i].key, err.msg);
	}
}

void lv__values_free(const lv__key_t *keys, size_t n, void *base)
{
	for (size_t i = 0; i < n; i++) {
		if (keys[i].type == LV__T_STRING || keys[i].type == LV__T_PATH) {
			char **p = field(&keys[i], base);
			lv_free(*p);
			*p = NULL;
		} else if (keys[i].type == LV__T_TABLES) {
			free_tables(&keys[i], base);
		}
	}
}

/* ---- Rendering ---- */

/* Masks the user and password of a URL (":pw@h" becomes "********@h"), or all of v. */
static bool render_masked(const char *v, lv_buf_t *out)
{
	const char *scheme = strstr(v, "://");
	const char *at = scheme ? strrchr(scheme + 3, '@') : NULL;
	if (!scheme)
		return lv_buf_append_str(out, "********");
	if (!at)
		return lv_buf_append_str(out, v);
	return lv_buf_append(out, v, (size_t)(scheme + 3 - v)) &&
	       lv_buf_append_str(out, "********") && lv_buf_append_str(out, at);
}

bool lv__value_render(const lv__key_t *k, const void *base, bool mask, lv_buf_t *out)
{
	const void *src = cfield(k, base);
	char tmp[64];

	switch (k->type) {
	case LV__T_BOOL:
		return lv_buf_append_str(out, *(const bool *)src ? "true" : "false");
	case LV__T_INT:
		return lv_buf_printf(out, "%d", *(const int *)src);
	case LV__T_SIZE:
		return lv_buf_append_str(out, lv__render_size(*(const int *)src, tmp, sizeof(tmp)));
	case LV__T_SIZE64:
		return lv_buf_append_str(out,
					 lv__render_size(*(const int64_t *)src, tmp, sizeof(tmp)));
	case LV__T_DURATION:
		return lv_buf_append_str(
			out, lv__render_duration(*(const int64_t *)src, tmp, sizeof(tmp)));
	case LV__T_ENUM:
		for (const lv__enum_t *e = k->names; e->name; e++)
			if (e->value == *(const int *)src)
				return lv_buf_append_str(out, e->name);
		return true;
	case LV__T_STRING:
	case LV__T_PATH: {
		const char *v = *(char *const *)src;
		if (!v)
			return true;
		if (mask && (k->flags & LV_CF_SECRET))
			return render_masked(v, out);
		return lv_buf_append_str(out, v);
	}
	case LV__T_NAME:
		return lv_buf_append_str(out, (const char *)src);
	case LV__T_HOST: {
		const lv_cfg_host_t *h = src;
		if (!h->host[0])
			return true;
		if (strchr(h->host, ':') && h->host[0] != '/')
			return lv_buf_printf(out, "[%s]:%d", h->host, h->port);
		return lv_buf_printf(out, "%s:%d", h->host, h->port);
	}
	case LV__T_INT64:
		return lv_buf_printf(out, "%lld", (long long)*(const int64_t *)src);
	case LV__T_PERCENT:
		return lv_buf_printf(out, "%d%%", *(const int *)src);
	case LV__T_FLOAT:
		return lv_buf_printf(out, "%g", *(const double *)src);
	case LV__T_TABLES: {
		char *const *v = *(char **const *)src;
		int n = *(const int *)(const void *)((const char *)base + k->aux);
		for (int i = 0; v && i < n; i++)
			if (!lv_buf_printf(out, "%s%s", i ? ", " : "", v[i]))
				return false;
		return true;
	}
	case LV__T_HOSTS:
		return true;
	}
	return true;
}

/* ---- Lookup and introspection ---- */

const lv__key_t *lv__key_find(const lv__key_t *keys, size_t n, const char *section, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(keys[i].key, key) == 0 &&
		    (!section || strcmp(keys[i].section, section) == 0))
			return &keys[i];
	return NULL;
}

int lv__key_line(const int *lines, const lv__key_t *table, size_t n, size_t i, const char *key)
{
	const lv__key_t *k = lv__key_find(table, n, NULL, key);
	return k ? lines[i * n + (size_t)(k - table)] : 0;
}

const char *lv__type_name(lv__type_t t)
{
	static const char *const names[] = {
		[LV__T_BOOL] = "bool",         [LV__T_INT] = "integer",
		[LV__T_SIZE] = "size",         [LV__T_SIZE64] = "size",
		[LV__T_DURATION] = "duration", [LV__T_ENUM] = "enum",
		[LV__T_STRING] = "string",     [LV__T_PATH] = "path",
		[LV__T_NAME] = "name",         [LV__T_HOST] = "host:port",
		[LV__T_HOSTS] = "host list",   [LV__T_INT64] = "integer",
		[LV__T_PERCENT] = "percent",   [LV__T_FLOAT] = "number",
		[LV__T_TABLES] = "table list",
	};
	return (size_t)t < LV_ARRAY_LEN(names) && names[t] ? names[t] : "?";
}

size_t lv__keys_check(const lv__key_t *keys, size_t n)
{
	size_t bad = 0;
	for (size_t i = 0; i < n; i++) {
		size_t want = 0;
		switch (keys[i].type) {
		case LV__T_BOOL:
			want = sizeof(bool);
			break;
		case LV__T_INT:
		case LV__T_SIZE:
		case LV__T_ENUM:
		case LV__T_PERCENT:
			want = sizeof(int);
			break;
		case LV__T_INT64:
		case LV__T_SIZE64:
		case LV__T_DURATION:
			want = sizeof(int64_t);
			break;
		case LV__T_STRING:
		case LV__T_PATH:
			want = sizeof(char *);
			break;
		case LV__T_NAME:
			want = LV_NAME_LEN;
			break;
		case LV__T_HOST:
			want = sizeof(lv_cfg_host_t);
			break;
		case LV__T_HOSTS:
			want = sizeof(lv_cfg_host_t *);
			break;
		case LV__T_FLOAT:
			want = sizeof(double);
			break;
		case LV__T_TABLES:
			want = sizeof(char **);
			break;
		}
		bool ok = keys[i].size == want && keys[i].doc && keys[i].doc[0] &&
			  (keys[i].type != LV__T_ENUM || keys[i].names) &&
			  (keys[i].type != LV__T_HOSTS || keys[i].parse) &&
			  (keys[i].type != LV__T_TABLES || keys[i].aux);
		if (!ok)
			bad++;
	}
	return bad;
}
