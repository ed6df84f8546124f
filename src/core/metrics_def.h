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
 *   TYPE          COUNTER, GAUGE or HISTOGRAM.
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
	S(PREPARED_RESULT)

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

/* ----------------------------------------------------------------- families */

/* clang-format off */
#define LV_METRICS_DEF(XX)                                                                         \
	XX(CLIENT_CONNECTIONS, GAUGE, "levee_client_connections",                                  \
	   "Client connections by state.", "state", CLIENT_STATE)                                  \
	XX(SERVER_CONNECTIONS, GAUGE, "levee_server_connections",                                  \
	   "Server connections by state.", "state", SERVER_STATE)                                  \
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
	   "Time to parse and classify a statement the cache did not have.", NULL, NONE)
/* clang-format on */

#endif
