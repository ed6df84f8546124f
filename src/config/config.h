/* SPDX-License-Identifier: ISC */
/*
 * Levee's configuration: one struct per loaded file (a "generation"), built
 * from one table of settings (config_keys.c) plus the named sections
 * [database NAME] and [user NAME] (config_dbs.c), [cache.rule NAME] and
 * [queue.rule NAME] (config_rules.c) and the auth_file (auth_file.c).
 *
 * Lifetime: an lv_config_t is immutable once lv_config_load() returns it and
 * is reference-counted. On reload (SIGHUP, admin RELOAD) a new generation is
 * loaded and validated completely; only then is it published, and the old
 * one is freed when its last user calls lv_config_unref(). A file that fails
 * to load never replaces a working generation.
 *
 * Errors are reported as "file:line: message" lines, every problem found in
 * one pass, so an operator fixes a file in one go.
 */
#ifndef LEVEE_CONFIG_CONFIG_H
#define LEVEE_CONFIG_CONFIG_H

#include "core/buf.h"
#include "core/lv.h"
#include "core/secret.h"

/* PostgreSQL's NAMEDATALEN is 64; identifiers longer than 63 bytes are refused. */
#define LV_NAME_LEN 64
#define LV_HOST_LEN 256

typedef enum lv_pool_mode {
	LV_POOL_SESSION = 0,     /* a client keeps its server for the whole session */
	LV_POOL_TRANSACTION = 1, /* a client holds a server only inside a transaction */
} lv_pool_mode_t;

typedef enum lv_auth_type {
	LV_AUTH_TRUST = 0, /* no password asked; the user must still exist unless auth_file is unset */
	LV_AUTH_MD5 = 1,   /* md5, or SCRAM when the stored secret is a SCRAM secret */
	LV_AUTH_SCRAM = 2, /* SCRAM-SHA-256 only */
} lv_auth_type_t;

typedef enum lv_client_tls {
	LV_CLIENT_TLS_DISABLE = 0, /* SSLRequest answered 'N' */
	LV_CLIENT_TLS_ALLOW = 1,   /* TLS offered, plain accepted */
	LV_CLIENT_TLS_REQUIRE = 2, /* plain connections refused with 28000 */
} lv_client_tls_t;

typedef enum lv_server_tls {
	LV_SERVER_TLS_DISABLE = 0, /* never ask the server for TLS */
	LV_SERVER_TLS_PREFER = 1,  /* ask; fall back to plain when the server says 'N' */
	LV_SERVER_TLS_REQUIRE = 2, /* ask; fail the connection when the server says 'N' */
} lv_server_tls_t;

typedef enum lv_session_state_policy {
	LV_SESSION_STATE_PIN = 0,    /* keep the client on its server while it holds session state */
	LV_SESSION_STATE_REJECT = 1, /* refuse statements that would create session state */
} lv_session_state_policy_t;

typedef enum lv_replica_fallback {
	LV_FALLBACK_PRIMARY = 0, /* reads with no qualifying replica go to the primary */
	LV_FALLBACK_ERROR = 1,   /* such reads fail with SQLSTATE 08006 */
} lv_replica_fallback_t;

typedef enum lv_ryw_mode {
	LV_RYW_LSN = 0,  /* after a write, reads use the primary until replicas replay its LSN */
	LV_RYW_TIME = 1, /* after a write, reads use the primary for read_your_writes_timeout */
	LV_RYW_OFF = 2,  /* reads go to replicas right after a write */
} lv_ryw_mode_t;

typedef enum lv_failover_mode {
	LV_FAILOVER_OFF = 0,    /* the configured primary is the only one ever written to */
	LV_FAILOVER_FOLLOW = 1, /* a replica that reports it was promoted becomes the primary */
} lv_failover_mode_t;

typedef enum lv_route_mode {
	LV_ROUTE_MODE_AUTO = 0,     /* transaction mode: reads to replicas; session mode: primary */
	LV_ROUTE_MODE_PRIMARY = 1,  /* never use the replicas */
	LV_ROUTE_MODE_REPLICAS = 2, /* whole sessions (or transactions) go to replicas */
} lv_route_mode_t;

/* host:port[@weight]. */
typedef struct lv_cfg_host {
	char host[LV_HOST_LEN]; /* name, IPv4/IPv6 address, or unix socket directory (starts with '/') */
	int port;
	int weight; /* 1..1000, replicas only; default 100 */
} lv_cfg_host_t;

/* One [database NAME] section. Integer fields of -1 mean "use the [pool] default". */
typedef struct lv_cfg_db {
	char name[LV_NAME_LEN];   /* what clients put in their startup packet */
	char dbname[LV_NAME_LEN]; /* the database on the server; defaults to name */
	char user[LV_NAME_LEN];   /* server user; "" means the client's own user */
	char *password;           /* server password for user; NULL: from auth_file */
	lv_cfg_host_t primary;
	lv_cfg_host_t *replicas; /* n_replicas entries, owned */
	int n_replicas;
	int pool_mode; /* lv_pool_mode_t or -1 */
	int pool_size;
	int min_pool_size;
	int reserve_pool_size;
	int max_db_connections; /* 0 = unlimited */
	int line;               /* line of the section header, for messages */
	int route; /* lv_route_mode_t; [database] route = auto|primary|replicas, default auto */
} lv_cfg_db_t;

/* One [user NAME] section: per-user overrides. */
typedef struct lv_cfg_user {
	char name[LV_NAME_LEN];
	int pool_mode;            /* lv_pool_mode_t or -1 */
	int max_user_connections; /* -1 = [pool] default; 0 = unlimited */
	int line;
} lv_cfg_user_t;


typedef enum lv_cache_scope {
	LV_CACHE_SCOPE_USER = 0,   /* entries are per user: the key includes the user */
	LV_CACHE_SCOPE_SHARED = 1, /* the operator declares every user sees the same rows */
} lv_cache_scope_t;

/*
 * One [cache.rule NAME] section. A statement matches when every condition the
 * rule sets holds: the tables it reads are all in `tables`, its libpg_query
 * fingerprint equals `fingerprint`, its normalized text matches `match` (POSIX
 * extended regex, case-insensitive), its database is `database`. A rule sets at
 * least one of tables, fingerprint, match. Rules are tried in file order; the
 * first match wins. Fields of -1 take the [cache] default.
 */
typedef struct lv_cfg_cache_rule {
	char name[LV_NAME_LEN];
	char **tables;        /* n_tables lower-case relation names, unqualified; owned */
	int n_tables;
	char *fingerprint;    /* 16 lower-case hex digits; NULL = any; owned */
	char *match;          /* regex source; NULL = any; owned */
	void *match_re;       /* compiled regex_t *, owned; NULL when match is NULL */
	char database[LV_NAME_LEN]; /* "" = every database */
	int64_t ttl_ms;       /* > 0 */
	int64_t swr_ms;       /* -1 = [cache] swr */
	int64_t max_entry_size; /* bytes; -1 = [cache] max_entry_size */
	int jitter_pct;       /* -1 = [cache] jitter */
	int scope;            /* lv_cache_scope_t */
	bool allow_volatile;  /* cache statements calling volatile functions (now(), random()) */
	char key[LV_NAME_LEN]; /* lower-case column for row invalidation (WHERE key = value); "" = by table */
	int line;
} lv_cfg_cache_rule_t;

/* One [queue.rule NAME] section: writes to these tables are deferred without a hint. */
typedef struct lv_cfg_queue_rule {
	char name[LV_NAME_LEN];
	char **tables;        /* n_tables lower-case relation names; owned */
	int n_tables;
	char database[LV_NAME_LEN]; /* "" = every database */
	char key[LV_NAME_LEN];      /* ordering key; "" = the table */
	int line;
} lv_cfg_queue_rule_t;

/* One line of auth_file: "user" "secret". */
typedef struct lv_auth_entry {
	char user[LV_NAME_LEN];
	char *secret; /* owned; as written in the file */
	lv_secret_kind_t kind;
} lv_auth_entry_t;

typedef struct lv_config {
	/* Bookkeeping, not settings. */
	int refcount;        /* atomic; see lv_config_ref() */
	uint64_t generation; /* 1 for the first load, +1 per successful reload */
	char *path;          /* the file this was loaded from */

	struct {
		char *listen;      /* comma-separated host:port list, or a unix socket path */
		char *http_listen; /* host:port for /metrics /healthz /readyz; NULL = off */
		int workers;       /* worker threads; 0 = number of CPUs */
		char *auth_file;
		int auth_type; /* lv_auth_type_t */
		char *admin_users; /* comma-separated names allowed into the "levee" admin database */
		char *stats_users; /* comma-separated names allowed read-only SHOW access */
		char *redis;       /* redis://host:port/db; NULL = no Redis */
		char *logfile;     /* NULL = stderr */
		int log_level;     /* lv_log_level_t */
		bool log_connections;
		bool log_disconnections;
		char *pidfile;
		int max_client_conn;
		int64_t client_login_timeout_ms;
		int64_t shutdown_timeout_ms;
		int64_t cancel_wait_timeout_ms;
		int max_packet_size; /* largest message accepted from a client, bytes */
	} levee;

	struct {
		int pool_mode; /* lv_pool_mode_t */
		int pool_size;
		int min_pool_size;
		int reserve_pool_size;
		int64_t reserve_pool_timeout_ms;
		int max_db_connections;   /* 0 = unlimited */
		int max_user_connections; /* 0 = unlimited */
		int server_connect_concurrency;
		int64_t query_wait_timeout_ms;
		int64_t client_idle_timeout_ms;     /* 0 = off */
		int64_t idle_transaction_timeout_ms; /* 0 = off */
		int64_t server_idle_timeout_ms;
		int64_t server_lifetime_ms;
		int64_t server_connect_timeout_ms;
		int64_t server_login_retry_ms;
		char *server_reset_query; /* default "DISCARD ALL" */
		int max_prepared_statements;
		int session_state; /* lv_session_state_policy_t */
	} pool;

	struct {
		int client_tls_mode; /* lv_client_tls_t */
		char *cert_file;
		char *key_file;
		char *ca_file;
		int server_tls; /* lv_server_tls_t */
		char *server_ca_file;
	} tls;

	/* [routing]: read/write splitting for databases with replicas; every key reloadable. */
	struct {
		int64_t health_check_period_ms;  /* 100ms..1h, default 1s */
		int health_check_failures;       /* failures in a row before a backend is banned */
		int64_t health_check_timeout_ms; /* 100ms..1min, default 1s; <= the period */
		char *health_check_user;         /* NULL: the [database] entry's user */
		char *health_check_password;     /* secret; NULL: from auth_file */
		int64_t max_replica_lag_ms;      /* 0 = no limit */
		int64_t max_replica_lag_bytes;   /* 0 = no limit */
		int replica_fallback;            /* lv_replica_fallback_t */
		int read_your_writes;            /* lv_ryw_mode_t */
		int64_t read_your_writes_timeout_ms; /* 0 = no time limit (lsn mode only) */
		int failover;                        /* lv_failover_mode_t */
		char *write_functions; /* comma-separated [schema.]name[*] list; NULL = none */
	} routing;

	/* [cache]: the result cache; every key reloadable except memory. */
	struct {
		int64_t memory;          /* L1 budget in bytes; 0 = no L1 (Redis only, if set) */
		int64_t max_entry_size;  /* default per-entry cap, bytes */
		int64_t default_ttl_ms;  /* for a hint without ttl= */
		int64_t swr_ms;          /* default stale-while-revalidate window; 0 = off */
		int jitter_pct;          /* TTL jitter, +-percent; default 10 */
		double xfetch_beta;      /* probabilistic early refresh; 0 = off */
		char *bypass_users;      /* comma-separated users never served from or filling the cache */
		bool redis_l2;           /* use Redis as L2 when [levee] redis is set */
		int64_t lock_timeout_ms; /* cross-instance fill lock lifetime */
		int64_t lock_wait_ms;    /* how long another instance waits for that fill */
	} cache;

	/* [queue]: deferred writes on Redis Streams. */
	struct {
		bool consumers;            /* run consumers in this instance */
		int batch_size;            /* messages per applied transaction, at most */
		int connections;           /* per database: batches applied at once (<= partitions) */
		int64_t max_wait_ms;       /* block this long for a batch to fill */
		int max_attempts;          /* then the message goes to the dead-letter stream */
		int64_t retry_backoff_ms;  /* first retry delay; doubles per attempt */
		int64_t retry_backoff_max_ms;
		int64_t claim_idle_ms;     /* pending this long: claimed from a dead consumer */
		int max_inflight;          /* per database: statements enqueued but not applied */
		int64_t max_length;        /* stream entries; beyond it async writes get 53400 */
		int wait_replicas;         /* Redis WAIT for this many replicas before success */
		int64_t wait_timeout_ms;
		char *stream_prefix;       /* Redis key prefix, default "levee:q" */
	} queue;

	lv_cfg_cache_rule_t *cache_rules; /* n_cache_rules, file order, owned */
	size_t n_cache_rules;
	lv_cfg_queue_rule_t *queue_rules; /* n_queue_rules, file order, owned */
	size_t n_queue_rules;

	lv_cfg_db_t *dbs; /* n_dbs entries, owned */
	size_t n_dbs;
	lv_cfg_user_t *users; /* n_users entries, owned */
	size_t n_users;
	lv_auth_entry_t *auth; /* n_auth entries from auth_file, owned; sorted by user */
	size_t n_auth;
} lv_config_t;

/*
 * Loads and validates path. Returns a config with refcount 1, or NULL with
 * one "file:line: message\n" line per problem appended to errors (the
 * auth_file's problems name the auth_file and its line).
 */
lv_config_t *lv_config_load(const char *path, lv_buf_t *errors) LV_MUSTCHECK;

/* Takes a reference; thread-safe. Returns cfg. */
lv_config_t *lv_config_ref(lv_config_t *cfg);
/* Drops a reference and frees on the last one; NULL is a no-op; thread-safe. */
void lv_config_unref(lv_config_t *cfg);

/* Lookups return borrowed pointers valid while the caller holds a reference. */
const lv_cfg_db_t *lv_config_find_db(const lv_config_t *cfg, const char *name);
const lv_cfg_user_t *lv_config_find_user(const lv_config_t *cfg, const char *name);
const lv_auth_entry_t *lv_config_find_auth(const lv_config_t *cfg, const char *user);
/* True when name is listed in the comma-separated list (admin_users, stats_users). */
bool lv_config_list_has(const char *list, const char *name);

/* Effective per-pool values: the [database]/[user] override or the [pool] default. */
int lv_config_pool_mode(const lv_config_t *cfg, const lv_cfg_db_t *db, const char *user);
int lv_config_pool_size(const lv_config_t *cfg, const lv_cfg_db_t *db);
/* The same rule for the other overridable settings; db or user may be NULL (the default). */
int lv_config_min_pool_size(const lv_config_t *cfg, const lv_cfg_db_t *db);
int lv_config_reserve_pool_size(const lv_config_t *cfg, const lv_cfg_db_t *db);
int lv_config_max_db_connections(const lv_config_t *cfg, const lv_cfg_db_t *db); /* 0 = unlimited */
int lv_config_max_user_connections(const lv_config_t *cfg, const char *user);    /* 0 = unlimited */

/*
 * Calls fn once per table setting, in table order, with the value rendered as
 * text ("" for unset). Secret values are passed as "********". Then, for each
 * [cache.rule NAME] and [queue.rule NAME] section in file order, once per key
 * of its table, with section "cache.rule NAME" ("" for a key that takes the
 * [cache] value). Drives SHOW CONFIG.
 */
typedef void (*lv_config_visit_fn)(void *arg, const char *section, const char *key,
				   const char *value, bool is_reloadable);
void lv_config_for_each(const lv_config_t *cfg, lv_config_visit_fn fn, void *arg);

/* What the settings tables say about one key, for docs and "levee --print-config-keys". */
typedef struct lv_config_key_info {
	const char *section; /* "levee", ..., "queue", "database NAME", ..., "queue.rule NAME" */
	const char *key;
	const char *type;          /* "bool", "integer", "size", "duration", "enum", ... */
	const char *default_value; /* as written in a file; "" when unset */
	const char *doc;           /* one sentence */
	bool is_reloadable;
	bool is_secret;
} lv_config_key_info_t;

typedef void (*lv_config_key_fn)(void *arg, const lv_config_key_info_t *info);
/* Calls fn once per key of every table ([levee], [pool], [routing], [tls], [cache], [queue],
 * then [database NAME], [user NAME], [cache.rule NAME], [queue.rule NAME]). */
void lv_config_for_each_key(lv_config_key_fn fn, void *arg);

/*
 * Appends one warning line per non-reloadable setting whose value differs
 * between old and new ("listen changed; restart to apply"). Returns the count.
 */
int lv_config_diff(const lv_config_t *old_cfg, const lv_config_t *new_cfg, lv_buf_t *warnings);

#endif
