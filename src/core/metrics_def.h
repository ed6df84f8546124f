/* SPDX-License-Identifier: ISC */
/*
 * Every metric family Levee exports, declared once. metrics.h turns this list
 * into the lv_metric_id_t enum and the label-index enums; metrics.c turns it
 * into the registry table and the shard layout. Nothing else needs editing to
 * add a metric.
 *
 * A family is one entry (wrapped after the name to stay in 100 columns):
 *
 *   XX(ID, TYPE, "name",
 *      "help", "label_name", LABEL_SET)
 *
 *   ID            the enum suffix: LV_M_<ID>. By convention it is the name
 *                 without "levee_", upper-cased (the unit test checks this), so
 *                 a grep for either spelling finds the other.
 *   TYPE          COUNTER, GAUGE, HISTOGRAM (seconds) or SIZE_HISTOGRAM
 *                 (plain numbers, buckets LV_METRIC_SIZE_BUCKETS).
 *   "name"        the Prometheus name: levee_<subsystem>_<name>, counters end
 *                 in _total, durations in _seconds (STYLE.md 1.3).
 *   "help"        one sentence for # HELP.
 *   "label_name"  the one label of the family, or NULL when it has none.
 *   LABEL_SET     the name of a label set below, or NONE.
 *
 * A label set lists the values of one label, in index order:
 *
 *   #define LV_ML_<SET>(L, S) L(S, VALUE, "value") ...
 *
 * which gives the constants LV_ML_<SET>_<VALUE> (0, 1, ...) and
 * LV_ML_<SET>__COUNT, to be passed as the label argument of lv_metric_add()
 * and friends. A new set must also be named in LV_METRIC_LABEL_SETS. Counters
 * and gauges are int64 per series; histograms share the bucket list in
 * LV_METRIC_BUCKETS.
 */
#ifndef LEVEE_CORE_METRICS_DEF_H
#define LEVEE_CORE_METRICS_DEF_H

/* ---------------------------------------------------------------- label sets */

/* No label: the family has exactly one series (label index 0). */
#define LV_ML_NONE(L, S)

/* Client states, in the order of the proxy's client state enum. */
#define LV_ML_CLIENT_STATE(L, S)           \
	L(S, LOGIN, "login")               \
	L(S, IDLE, "idle")                 \
	L(S, WAITING, "waiting")           \
	L(S, ACTIVE, "active")             \
	L(S, QUEUED_WRITE, "queued_write") \
	L(S, REPLAY, "replay")

/* Server connection states, in the order of the proxy's server state enum. */
#define LV_ML_SERVER_STATE(L, S)       \
	L(S, CONNECTING, "connecting") \
	L(S, LOGIN, "login")           \
	L(S, IDLE, "idle")             \
	L(S, ACTIVE, "active")         \
	L(S, TESTING, "testing")

/* Why a client connection was refused before or during login. */
#define LV_ML_REFUSE_REASON(L, S)                          \
	L(S, MAX_CLIENT_CONN, "max_client_conn")           \
	L(S, MAX_USER_CONNECTIONS, "max_user_connections") \
	L(S, AUTH, "auth")                                 \
	L(S, TLS, "tls")                                   \
	L(S, PROTOCOL, "protocol")                         \
	L(S, SHUTDOWN, "shutdown")                         \
	L(S, LOGIN_TIMEOUT, "login_timeout")               \
	L(S, DATABASE, "database")

/* What went wrong: every error path increments one of these (STYLE.md 1.7). */
#define LV_ML_ERROR_KIND(L, S)                                     \
	L(S, CLIENT_PROTOCOL, "client_protocol")                   \
	L(S, CLIENT_AUTH, "client_auth")                           \
	L(S, CLIENT_LOGIN_TIMEOUT, "client_login_timeout")         \
	L(S, CLIENT_IDLE_TIMEOUT, "client_idle_timeout")           \
	L(S, IDLE_TRANSACTION_TIMEOUT, "idle_transaction_timeout") \
	L(S, QUERY_WAIT_TIMEOUT, "query_wait_timeout")             \
	L(S, SERVER_CONNECT, "server_connect")                     \
	L(S, SERVER_LOGIN, "server_login")                         \
	L(S, SERVER_LOST, "server_lost")                           \
	L(S, SERVER_PROTOCOL, "server_protocol")                   \
	L(S, TLS, "tls")                                           \
	L(S, OOM, "oom")                                           \
	L(S, CANCEL, "cancel")

/* Outcome of a CancelRequest. */
#define LV_ML_CANCEL_RESULT(L, S)    \
	L(S, FORWARDED, "forwarded") \
	L(S, UNKNOWN, "unknown")     \
	L(S, FAILED, "failed")

/* Outcome of a configuration reload. */
#define LV_ML_RELOAD_RESULT(L, S) \
	L(S, OK, "ok")            \
	L(S, ERROR, "error")

/* Why a transaction-mode client was pinned to its server. */
#define LV_ML_PIN_REASON(L, S)                       \
	L(S, PREPARE, "prepare")                     \
	L(S, LISTEN, "listen")                       \
	L(S, DECLARE_WITH_HOLD, "declare_with_hold") \
	L(S, CREATE_TEMP, "create_temp")             \
	L(S, ADVISORY_LOCK, "advisory_lock")         \
	L(S, SET, "set")                             \
	L(S, LOAD, "load")

/* Prepared-statement cache outcomes. */
#define LV_ML_PREPARED_RESULT(L, S) \
	L(S, HIT, "hit")            \
	L(S, MISS, "miss")          \
	L(S, EVICTION, "eviction")

/* Routing decisions, in the order of the router's reason enum (proxy/router.h). */
#define LV_ML_ROUTE_REASON(L, S)                     \
	L(S, WRITE, "write")                         \
	L(S, READ, "read")                           \
	L(S, TXN, "transaction")                     \
	L(S, TXN_READ_ONLY, "read_only_transaction") \
	L(S, HINT_PRIMARY, "hint_primary")           \
	L(S, HINT_REPLICA, "hint_replica")           \
	L(S, READ_YOUR_WRITES, "read_your_writes")   \
	L(S, NO_REPLICA, "no_replica")               \
	L(S, UNPARSABLE, "unparsable")               \
	L(S, UNKNOWN, "unknown")

/* Statement classifications: answered from the per-worker cache, or parsed. */
#define LV_ML_CLASSIFY_RESULT(L, S) \
	L(S, HIT, "hit")            \
	L(S, MISS, "miss")

/* Result-cache lookups. */
#define LV_ML_CACHE_RESULT(L, S)       \
	L(S, HIT, "hit")               \
	L(S, MISS, "miss")             \
	L(S, STALE, "stale")           \
	L(S, COALESCED, "coalesced")   \
	L(S, BYPASS, "bypass")

/* Outcome of a result-cache fill. */
#define LV_ML_CACHE_FILL(L, S)         \
	L(S, STORED, "stored")         \
	L(S, ERROR, "error")           \
	L(S, TOO_LARGE, "too_large")   \
	L(S, UNCACHEABLE, "uncacheable")

/* Where an invalidation came from. */
#define LV_ML_CACHE_INVAL(L, S)        \
	L(S, WRITE, "write")           \
	L(S, REDIS, "redis")           \
	L(S, ADMIN, "admin")           \
	L(S, RECONNECT, "reconnect")

/* Second-level (Redis) cache lookups. */
#define LV_ML_CACHE_L2(L, S)           \
	L(S, HIT, "hit")               \
	L(S, MISS, "miss")             \
	L(S, STALE, "stale")           \
	L(S, ERROR, "error")

/* Redis command outcomes. */
#define LV_ML_REDIS_RESULT(L, S)       \
	L(S, OK, "ok")                 \
	L(S, ERROR, "error")           \
	L(S, DISCONNECTED, "disconnected") \
	L(S, TIMEOUT, "timeout")

/* Why an async (queued) write was refused. */
#define LV_ML_QUEUE_REFUSE(L, S)             \
	L(S, FULL, "full")                   \
	L(S, REDIS_DOWN, "redis_down")       \
	L(S, REDIS_ERROR, "redis_error")     \
	L(S, NO_REPLICAS, "no_replicas")     \
	L(S, NO_QUEUE, "no_queue")           \
	L(S, OOM, "oom")                     \
	L(S, BAD_MESSAGE, "bad_message")

/* Consumer-side Redis commands of the write queue that failed. */
#define LV_ML_QUEUE_REDIS_OP(L, S)           \
	L(S, READ, "read")                   \
	L(S, GROUP, "group")                 \
	L(S, CLAIM, "claim")                 \
	L(S, ACK, "ack")                     \
	L(S, DEAD_LETTER, "dead_letter")     \
	L(S, ATTEMPTS, "attempts")

/* Every label set above, so metrics.h can generate one enum per set. */
#define LV_METRIC_LABEL_SETS(S) \
	S(NONE)                 \
	S(CLIENT_STATE)         \
	S(SERVER_STATE)         \
	S(REFUSE_REASON)        \
	S(ERROR_KIND)           \
	S(CANCEL_RESULT)        \
	S(RELOAD_RESULT)        \
	S(ROUTE_REASON)         \
	S(CLASSIFY_RESULT)      \
	S(PIN_REASON)           \
	S(PREPARED_RESULT)      \
	S(CACHE_RESULT)         \
	S(CACHE_FILL)           \
	S(CACHE_INVAL)          \
	S(CACHE_L2)             \
	S(REDIS_RESULT)         \
	S(QUEUE_REFUSE)         \
	S(QUEUE_REDIS_OP)

/* ------------------------------------------------------------------ buckets */

/* Histogram upper bounds in seconds, as a number and as rendered; +Inf is implied. */
#define LV_METRIC_BUCKETS(B)  \
	B(0.0001, "0.0001")   \
	B(0.00025, "0.00025") \
	B(0.0005, "0.0005")   \
	B(0.001, "0.001")     \
	B(0.0025, "0.0025")   \
	B(0.005, "0.005")     \
	B(0.01, "0.01")       \
	B(0.025, "0.025")     \
	B(0.05, "0.05")       \
	B(0.1, "0.1")         \
	B(0.25, "0.25")       \
	B(0.5, "0.5")         \
	B(1, "1")             \
	B(2.5, "2.5")         \
	B(5, "5")             \
	B(10, "10")

/*
 * Upper bounds of SIZE_HISTOGRAM families (plain numbers such as batch
 * sizes, not seconds); +Inf is implied.
 */
#define LV_METRIC_SIZE_BUCKETS(B) \
	B(1, "1")                 \
	B(2, "2")                 \
	B(5, "5")                 \
	B(10, "10")               \
	B(20, "20")               \
	B(50, "50")               \
	B(100, "100")             \
	B(200, "200")             \
	B(500, "500")             \
	B(1000, "1000")           \
	B(5000, "5000")

/* ----------------------------------------------------------------- families */

/* clang-format off */
#define LV_METRICS_DEF(XX)                                                                         \
	XX(CLIENT_CONNECTIONS, GAUGE, "levee_client_connections",                                  \
	   "Client connections by state.", "state", CLIENT_STATE)                                  \
	XX(SERVER_CONNECTIONS, GAUGE, "levee_server_connections",                                  \
	   "Server connections by state.", "state", SERVER_STATE)                                  \
	XX(SERVER_CONNECTIONS_OPEN, GAUGE, "levee_server_connections_open",                        \
	   "Server connections open or opening (one series: a scrape cannot count one twice).",    \
	   NULL, NONE)                                                                             \
	XX(CLIENT_CONNECTIONS_TOTAL, COUNTER, "levee_client_connections_total",                    \
	   "Client connections accepted.", NULL, NONE)                                             \
	XX(CLIENT_CONNECTIONS_REFUSED_TOTAL, COUNTER, "levee_client_connections_refused_total",    \
	   "Client connections refused, by reason.", "reason", REFUSE_REASON)                      \
	XX(SERVER_CONNECTIONS_TOTAL, COUNTER, "levee_server_connections_total",                    \
	   "Server connections opened (login completed).", NULL, NONE)                             \
	XX(QUERIES_TOTAL, COUNTER, "levee_queries_total",                                          \
	   "Queries received from clients.", NULL, NONE)                                           \
	XX(TRANSACTIONS_TOTAL, COUNTER, "levee_transactions_total",                                \
	   "Transactions completed.", NULL, NONE)                                                  \
	XX(CLIENT_BYTES_RECEIVED_TOTAL, COUNTER, "levee_client_bytes_received_total",              \
	   "Bytes received from clients.", NULL, NONE)                                             \
	XX(CLIENT_BYTES_SENT_TOTAL, COUNTER, "levee_client_bytes_sent_total",                      \
	   "Bytes sent to clients.", NULL, NONE)                                                   \
	XX(SERVER_BYTES_RECEIVED_TOTAL, COUNTER, "levee_server_bytes_received_total",              \
	   "Bytes received from servers.", NULL, NONE)                                             \
	XX(SERVER_BYTES_SENT_TOTAL, COUNTER, "levee_server_bytes_sent_total",                      \
	   "Bytes sent to servers.", NULL, NONE)                                                   \
	XX(ERRORS_TOTAL, COUNTER, "levee_errors_total",                                            \
	   "Errors, by kind.", "kind", ERROR_KIND)                                                 \
	XX(CANCEL_REQUESTS_TOTAL, COUNTER, "levee_cancel_requests_total",                          \
	   "Cancel requests, by result.", "result", CANCEL_RESULT)                                 \
	XX(CLIENT_WAIT_SECONDS, HISTOGRAM, "levee_client_wait_seconds",                            \
	   "Time a client waited for a server.", NULL, NONE)                                       \
	XX(QUERY_DURATION_SECONDS, HISTOGRAM, "levee_query_duration_seconds",                      \
	   "Query time from client request to ReadyForQuery.", NULL, NONE)                         \
	XX(CONFIG_RELOADS_TOTAL, COUNTER, "levee_config_reloads_total",                            \
	   "Configuration reloads, by result.", "result", RELOAD_RESULT)                           \
	XX(POOL_PINS_TOTAL, COUNTER, "levee_pool_pins_total",                                      \
	   "Clients pinned to their server in transaction mode, by reason.", "reason", PIN_REASON) \
	XX(PREPARED_STATEMENTS_TOTAL, COUNTER, "levee_prepared_statements_total",                  \
	   "Prepared-statement cache lookups and evictions, by result.", "result", PREPARED_RESULT) \
	XX(ROUTES_TOTAL, COUNTER, "levee_routes_total",                                            \
	   "Where transactions were routed, by the reason for the decision.", "reason", ROUTE_REASON) \
	XX(SQL_CLASSIFICATIONS_TOTAL, COUNTER, "levee_sql_classifications_total",                  \
	   "Statements classified, by whether the cache answered.", "result", CLASSIFY_RESULT)      \
	XX(SQL_PARSE_SECONDS, HISTOGRAM, "levee_sql_parse_seconds",                                \
	   "Time to parse and classify a statement the cache did not have.", NULL, NONE)          \
	XX(CACHE_REQUESTS_TOTAL, COUNTER, "levee_cache_requests_total",                            \
	   "Cacheable statements, by how the cache answered.", "result", CACHE_RESULT)             \
	XX(CACHE_FILLS_TOTAL, COUNTER, "levee_cache_fills_total",                                  \
	   "Result-cache fills, by outcome.", "result", CACHE_FILL)                                \
	XX(CACHE_EVICTIONS_TOTAL, COUNTER, "levee_cache_evictions_total",                          \
	   "Entries evicted from the memory cache to stay within its budget.", NULL, NONE)         \
	XX(CACHE_INVALIDATIONS_TOTAL, COUNTER, "levee_cache_invalidations_total",                  \
	   "Table generation bumps, by source.", "source", CACHE_INVAL)                            \
	XX(CACHE_L2_TOTAL, COUNTER, "levee_cache_l2_total",                                        \
	   "Redis (L2) cache lookups, by result.", "result", CACHE_L2)                             \
	XX(CACHE_ENTRIES, GAUGE, "levee_cache_entries",                                            \
	   "Entries in the memory cache.", NULL, NONE)                                             \
	XX(CACHE_BYTES, GAUGE, "levee_cache_bytes",                                                \
	   "Bytes held by the memory cache.", NULL, NONE)                                          \
	XX(CACHE_HIT_SECONDS, HISTOGRAM, "levee_cache_hit_seconds",                                \
	   "Time to answer a request from the cache.", NULL, NONE)                                 \
	XX(REDIS_UP, GAUGE, "levee_redis_up",                                                      \
	   "Redis connections currently up.", NULL, NONE)                                          \
	XX(REDIS_CONNECTS_TOTAL, COUNTER, "levee_redis_connects_total",                            \
	   "Redis connection attempts.", NULL, NONE)                                               \
	XX(REDIS_COMMANDS_TOTAL, COUNTER, "levee_redis_commands_total",                            \
	   "Redis commands, by outcome.", "result", REDIS_RESULT)                                  \
	XX(QUEUE_ENQUEUED_TOTAL, COUNTER, "levee_queue_enqueued_total",                            \
	   "Async writes stored in the queue (client told success).", NULL, NONE)                  \
	XX(QUEUE_REFUSED_TOTAL, COUNTER, "levee_queue_refused_total",                              \
	   "Async writes refused, by reason.", "reason", QUEUE_REFUSE)                             \
	XX(QUEUE_APPLIED_TOTAL, COUNTER, "levee_queue_applied_total",                              \
	   "Queued statements applied and committed by this instance's consumers.", NULL, NONE)    \
	XX(QUEUE_SKIPPED_TOTAL, COUNTER, "levee_queue_skipped_total",                              \
	   "Redelivered queue messages skipped because levee_applied had them.", NULL, NONE)       \
	XX(QUEUE_RETRIED_TOTAL, COUNTER, "levee_queue_retried_total",                              \
	   "Queued statements that failed and were scheduled for another attempt.", NULL, NONE)    \
	XX(QUEUE_DEAD_LETTERED_TOTAL, COUNTER, "levee_queue_dead_lettered_total",                  \
	   "Queue messages moved to the dead-letter stream.", NULL, NONE)                          \
	XX(QUEUE_BATCHES_TOTAL, COUNTER, "levee_queue_batches_total",                              \
	   "Queue batches committed.", NULL, NONE)                                                 \
	XX(QUEUE_BATCH_FAILURES_TOTAL, COUNTER, "levee_queue_batch_failures_total",                \
	   "Queue batches that failed whole (PostgreSQL unreachable or lost), retried later.",      \
	   NULL, NONE)                                                                              \
	XX(QUEUE_CONSUMER_REDIS_ERRORS_TOTAL, COUNTER, "levee_queue_consumer_redis_errors_total",  \
	   "Consumer-side Redis commands that failed (retried after a backoff), by command.",      \
	   "op", QUEUE_REDIS_OP)                                                                    \
	XX(QUEUE_LAG_SECONDS, GAUGE, "levee_queue_lag_seconds",                                    \
	   "Age in whole seconds of the oldest unapplied message this instance holds.", NULL, NONE) \
	XX(QUEUE_BATCH_SIZE, SIZE_HISTOGRAM, "levee_queue_batch_size",                             \
	   "Messages per committed queue batch.", NULL, NONE)
/* clang-format on */

#endif
