/* SPDX-License-Identifier: ISC */
/*
 * Builders for PostgreSQL v3 messages: each appends one complete message
 * (header included) to an lv_buf_t.
 *
 * Every builder returns false only when the buffer cannot grow (or, where
 * noted, when an argument cannot be encoded), and then leaves the buffer
 * exactly as it was, so a caller can fail the one connection (SQLSTATE
 * 53200) without worrying about half a message. Strings are copied; nothing
 * is retained after the call.
 */
#ifndef LEVEE_WIRE_WRITE_H
#define LEVEE_WIRE_WRITE_H

#include "core/lv.h"
#include "core/buf.h"
#include "wire/read.h"
#include "wire/wire.h"

/* ------------------------------------------------------------------------
 * Generic framing
 * ------------------------------------------------------------------------ */

/*
 * A message under construction. The offset is relative to the buffer's read
 * position, so it survives lv_buf_reserve() compacting the buffer; nothing
 * may be consumed from the buffer between begin and end.
 */
typedef struct lv_wire_msg {
	size_t off;     /* first byte of the message, relative to buf->pos */
	size_t hdr_len; /* 5 (type + length) or 4 (untyped startup packet) */
} lv_wire_msg_t;

/*
 * Starts a message: appends the type byte (none when type is 0, for
 * startup-phase packets) and a placeholder length. False on OOM, buffer
 * unchanged.
 */
bool lv_wire_msg_begin(lv_buf_t *buf, uint8_t type, lv_wire_msg_t *msg) LV_MUSTCHECK;
/*
 * Ends the message begun as msg: patches its length. False (and the message
 * removed) if the body exceeds LV_WIRE_MAX_MSG_LEN.
 */
bool lv_wire_msg_end(lv_buf_t *buf, const lv_wire_msg_t *msg) LV_MUSTCHECK;
/* Removes a partly built message, restoring the buffer to its state before begin. */
void lv_wire_msg_abort(lv_buf_t *buf, const lv_wire_msg_t *msg);

/* Appends a message of the given type with an opaque body (len bytes, body may be NULL if 0). */
bool lv_wire_write_msg(lv_buf_t *buf, uint8_t type, const void *body, size_t len) LV_MUSTCHECK;

/* ------------------------------------------------------------------------
 * Backend messages (Levee acting as the server)
 * ------------------------------------------------------------------------ */

/*
 * ErrorResponse with fields S and V (severity, e.g. "ERROR" or "FATAL"),
 * C (sqlstate, five characters), M (message), and D (detail) and H (hint)
 * when not NULL. Messages Levee creates already start with "levee: ".
 */
bool lv_wire_write_error(lv_buf_t *buf, const char *severity, const char *sqlstate,
			 const char *message, const char *detail, const char *hint) LV_MUSTCHECK;
/* NoticeResponse with the same fields (severity "NOTICE", "WARNING", ...). */
bool lv_wire_write_notice(lv_buf_t *buf, const char *severity, const char *sqlstate,
			  const char *message, const char *detail, const char *hint) LV_MUSTCHECK;

/* AuthenticationOk. */
bool lv_wire_write_auth_ok(lv_buf_t *buf) LV_MUSTCHECK;
/* AuthenticationCleartextPassword. */
bool lv_wire_write_auth_cleartext(lv_buf_t *buf) LV_MUSTCHECK;
/* AuthenticationMD5Password with a 4-byte salt. */
bool lv_wire_write_auth_md5(lv_buf_t *buf, const uint8_t salt[4]) LV_MUSTCHECK;
/* AuthenticationSASL listing mechs, a NULL-terminated array of names (at least one). */
bool lv_wire_write_auth_sasl(lv_buf_t *buf, const char *const *mechs) LV_MUSTCHECK;
/* AuthenticationSASLContinue carrying len bytes of mechanism data. */
bool lv_wire_write_auth_sasl_continue(lv_buf_t *buf, const void *data, size_t len) LV_MUSTCHECK;
/* AuthenticationSASLFinal carrying len bytes of mechanism data. */
bool lv_wire_write_auth_sasl_final(lv_buf_t *buf, const void *data, size_t len) LV_MUSTCHECK;

/* ParameterStatus. */
bool lv_wire_write_param_status(lv_buf_t *buf, const char *name, const char *value) LV_MUSTCHECK;
/* BackendKeyData (protocol 3.0: 4-byte key). */
bool lv_wire_write_backend_key(lv_buf_t *buf, int32_t pid, uint32_t key) LV_MUSTCHECK;
/* ReadyForQuery with status 'I', 'T' or 'E' (LV_WIRE_TXN_*). */
bool lv_wire_write_ready(lv_buf_t *buf, uint8_t status) LV_MUSTCHECK;
/* NegotiateProtocolVersion: newest minor supported and the unrecognized options (n names). */
bool lv_wire_write_negotiate(lv_buf_t *buf, int32_t newest_minor, size_t n,
			     const char *const *options) LV_MUSTCHECK;

/*
 * RowDescription for n text-format columns named names[i], of type oids[i]
 * (all 25, text, when oids is NULL). Table OID and attribute number are 0,
 * type length comes from a table of common types (-1 otherwise), typmod -1.
 * False also when n > 65535.
 */
bool lv_wire_write_row_description(lv_buf_t *buf, size_t n, const char *const *names,
				   const uint32_t *oids) LV_MUSTCHECK;
/* DataRow of n C-string values; a NULL value is SQL NULL. False also when n > 65535. */
bool lv_wire_write_data_row(lv_buf_t *buf, size_t n, const char *const *values) LV_MUSTCHECK;
/* DataRow of n values of lens[i] bytes each; a NULL value is SQL NULL (its len ignored). */
bool lv_wire_write_data_row_len(lv_buf_t *buf, size_t n, const char *const *values,
				const size_t *lens) LV_MUSTCHECK;
/* CommandComplete with a tag such as "SELECT 3" or "SHOW". */
bool lv_wire_write_command_complete(lv_buf_t *buf, const char *tag) LV_MUSTCHECK;
/* EmptyQueryResponse. */
bool lv_wire_write_empty_query(lv_buf_t *buf) LV_MUSTCHECK;
/* ParseComplete. */
bool lv_wire_write_parse_complete(lv_buf_t *buf) LV_MUSTCHECK;
/* BindComplete. */
bool lv_wire_write_bind_complete(lv_buf_t *buf) LV_MUSTCHECK;
/* CloseComplete. */
bool lv_wire_write_close_complete(lv_buf_t *buf) LV_MUSTCHECK;
/* NoData. */
bool lv_wire_write_no_data(lv_buf_t *buf) LV_MUSTCHECK;

/* ------------------------------------------------------------------------
 * Frontend messages (Levee acting as the client)
 * ------------------------------------------------------------------------ */

/*
 * StartupMessage for protocol 3.0 with params, a NULL-terminated array of
 * alternating names and values ({"user", "app", "database", "db", NULL}).
 */
bool lv_wire_write_startup(lv_buf_t *buf, const char *const *params) LV_MUSTCHECK;
/* SSLRequest. */
bool lv_wire_write_ssl_request(lv_buf_t *buf) LV_MUSTCHECK;
/* GSSENCRequest. */
bool lv_wire_write_gss_request(lv_buf_t *buf) LV_MUSTCHECK;
/* CancelRequest for a backend's pid and key. */
bool lv_wire_write_cancel(lv_buf_t *buf, int32_t pid, uint32_t key) LV_MUSTCHECK;
/* PasswordMessage: cleartext password or "md5..." response. */
bool lv_wire_write_password(lv_buf_t *buf, const char *password) LV_MUSTCHECK;
/* SASLInitialResponse; data NULL sends length -1 ("no initial response"). */
bool lv_wire_write_sasl_initial(lv_buf_t *buf, const char *mech, const void *data,
				size_t len) LV_MUSTCHECK;
/* SASLResponse carrying len bytes. */
bool lv_wire_write_sasl_response(lv_buf_t *buf, const void *data, size_t len) LV_MUSTCHECK;
/* Query. */
bool lv_wire_write_query(lv_buf_t *buf, const char *sql) LV_MUSTCHECK;
/* Terminate. */
bool lv_wire_write_terminate(lv_buf_t *buf) LV_MUSTCHECK;
/* Sync. */
bool lv_wire_write_sync(lv_buf_t *buf) LV_MUSTCHECK;
/* Flush. */
bool lv_wire_write_flush(lv_buf_t *buf) LV_MUSTCHECK;
/* Parse of query as statement name with n_types parameter type OIDs (oids may be NULL if 0). */
bool lv_wire_write_parse(lv_buf_t *buf, const char *name, const char *query, size_t n_types,
			 const uint32_t *oids) LV_MUSTCHECK;
/*
 * Bind of statement stmt to portal with n_params text parameters (NULL is
 * SQL NULL) and every result column in text format. False also when
 * n_params > 65535.
 */
bool lv_wire_write_bind(lv_buf_t *buf, const char *portal, const char *stmt, size_t n_params,
			const char *const *values) LV_MUSTCHECK;
/* Describe of a statement ('S') or portal ('P'). */
bool lv_wire_write_describe(lv_buf_t *buf, uint8_t kind, const char *name) LV_MUSTCHECK;
/* Close of a statement ('S') or portal ('P'). */
bool lv_wire_write_close(lv_buf_t *buf, uint8_t kind, const char *name) LV_MUSTCHECK;
/* Execute of portal, returning at most max_rows rows (0: all). */
bool lv_wire_write_execute(lv_buf_t *buf, const char *portal, int32_t max_rows) LV_MUSTCHECK;

/* ------------------------------------------------------------------------
 * Rewriting (statement names for transaction pooling)
 * ------------------------------------------------------------------------ */

/*
 * The rewriters copy from the parsed message's buffer, which must not be buf
 * itself (growing buf could move the source bytes).
 */

/* A copy of a parsed Parse message with the statement named new_name instead. */
bool lv_wire_write_parse_renamed(lv_buf_t *buf, const lv_wire_parse_t *parse,
				 const char *new_name) LV_MUSTCHECK;
/* A copy of a parsed Bind message that binds statement new_stmt instead. */
bool lv_wire_write_bind_renamed(lv_buf_t *buf, const lv_wire_bind_t *bind,
				const char *new_stmt) LV_MUSTCHECK;

#endif
