/* SPDX-License-Identifier: ISC */
/*
 * wire/write.c: building PostgreSQL v3 protocol messages into lv_buf_t.
 *
 * Pure: no I/O and no state; the only memory touched is the caller's buffer,
 * which grows through lv_buf_reserve() (so it may fail under memory
 * pressure). Each builder frames its message with lv_wire_msg_begin() and
 * lv_wire_msg_end(): begin appends the type byte and a placeholder length,
 * end patches the length once the body is known. On any failure the partial
 * message is cut off again (lv_wire_msg_abort()), so a buffer never holds
 * half a message.
 *
 * INTERFACE ROUTINES
 *
 * Framing:
 *	lv_wire_msg_begin	- start a message (type 0: startup packet)
 *	lv_wire_msg_end		- patch the length of a message
 *	lv_wire_msg_abort	- drop a partly built message
 *	lv_wire_write_msg	- a message with an opaque body
 *
 * Backend messages:
 *	lv_wire_write_error	- ErrorResponse
 *	lv_wire_write_notice	- NoticeResponse
 *	lv_wire_write_auth_ok	- AuthenticationOk
 *	lv_wire_write_auth_cleartext - AuthenticationCleartextPassword
 *	lv_wire_write_auth_md5	- AuthenticationMD5Password
 *	lv_wire_write_auth_sasl	- AuthenticationSASL
 *	lv_wire_write_auth_sasl_continue - AuthenticationSASLContinue
 *	lv_wire_write_auth_sasl_final - AuthenticationSASLFinal
 *	lv_wire_write_param_status - ParameterStatus
 *	lv_wire_write_backend_key - BackendKeyData
 *	lv_wire_write_ready	- ReadyForQuery
 *	lv_wire_write_negotiate	- NegotiateProtocolVersion
 *	lv_wire_write_row_description - RowDescription (text columns)
 *	lv_wire_write_data_row	- DataRow of C strings
 *	lv_wire_write_data_row_len - DataRow of counted values
 *	lv_wire_write_command_complete - CommandComplete
 *	lv_wire_write_empty_query - EmptyQueryResponse
 *	lv_wire_write_parse_complete - ParseComplete
 *	lv_wire_write_bind_complete - BindComplete
 *	lv_wire_write_close_complete - CloseComplete
 *	lv_wire_write_no_data	- NoData
 *
 * Frontend messages:
 *	lv_wire_write_startup	- StartupMessage (protocol 3.0)
 *	lv_wire_write_ssl_request - SSLRequest
 *	lv_wire_write_gss_request - GSSENCRequest
 *	lv_wire_write_cancel	- CancelRequest
 *	lv_wire_write_password	- PasswordMessage
 *	lv_wire_write_sasl_initial - SASLInitialResponse
 *	lv_wire_write_sasl_response - SASLResponse
 *	lv_wire_write_query	- Query
 *	lv_wire_write_terminate	- Terminate
 *	lv_wire_write_sync	- Sync
 *	lv_wire_write_flush	- Flush
 *	lv_wire_write_parse	- Parse
 *	lv_wire_write_bind	- Bind (text parameters, text results)
 *	lv_wire_write_describe	- Describe
 *	lv_wire_write_close	- Close
 *	lv_wire_write_execute	- Execute
 *
 * Rewriting:
 *	lv_wire_write_parse_renamed - Parse with another statement name
 *	lv_wire_write_bind_renamed - Bind of another statement name
 */
#include "core/lv.h"
#include "wire/write.h"

/* ========================================================================
 * Framing
 * ======================================================================== */

bool lv_wire_msg_begin(lv_buf_t *buf, uint8_t type, lv_wire_msg_t *msg)
{
	msg->hdr_len = type ? LV_WIRE_HEADER_LEN : 4;
	if (!lv_buf_reserve(buf, msg->hdr_len))
		return false;
	/* After the reserve: it may have compacted the buffer and moved pos. */
	msg->off = buf->len - buf->pos;
	if (type)
		buf->data[buf->len++] = type;
	lv_set_u32(buf->data + buf->len, 0);
	buf->len += 4;
	return true;
}

void lv_wire_msg_abort(lv_buf_t *buf, const lv_wire_msg_t *msg)
{
	LV_ASSERT(buf->pos + msg->off <= buf->len);
	buf->len = buf->pos + msg->off;
}

bool lv_wire_msg_end(lv_buf_t *buf, const lv_wire_msg_t *msg)
{
	size_t start = buf->pos + msg->off;
	size_t len_off = start + msg->hdr_len - 4;
	LV_ASSERT(len_off + 4 <= buf->len);
	size_t len = buf->len - len_off; /* counts the length word itself */
	if (len > LV_WIRE_MAX_MSG_LEN) {
		lv_wire_msg_abort(buf, msg);
		return false;
	}
	lv_buf_patch_u32(buf, len_off, (uint32_t)len);
	return true;
}

/* Ends msg if every append succeeded (ok), else drops it; the builders' tail call. */
static bool finish(lv_buf_t *buf, const lv_wire_msg_t *msg, bool ok)
{
	if (!ok) {
		lv_wire_msg_abort(buf, msg);
		return false;
	}
	return lv_wire_msg_end(buf, msg);
}

bool lv_wire_write_msg(lv_buf_t *buf, uint8_t type, const void *body, size_t len)
{
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, type, &m))
		return false;
	return finish(buf, &m, lv_buf_append(buf, body, len));
}

/* A message with no body. */
static bool write_empty(lv_buf_t *buf, uint8_t type)
{
	return lv_wire_write_msg(buf, type, NULL, 0);
}

/* Appends an int32 length (or -1 for NULL) and the bytes; false if len is not an int32. */
static bool put_counted(lv_buf_t *buf, const void *data, size_t len)
{
	if (!data)
		return lv_buf_put_u32(buf, (uint32_t)-1);
	if (len > INT32_MAX)
		return false;
	return lv_buf_put_u32(buf, (uint32_t)len) && lv_buf_append(buf, data, len);
}

/* ========================================================================
 * Backend messages
 * ======================================================================== */

static bool write_error_fields(lv_buf_t *buf, uint8_t type, const char *severity,
			       const char *sqlstate, const char *message, const char *detail,
			       const char *hint)
{
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, type, &m))
		return false;
	bool ok = lv_buf_put_u8(buf, 'S') && lv_buf_append_cstr(buf, severity) &&
		  lv_buf_put_u8(buf, 'V') && lv_buf_append_cstr(buf, severity) &&
		  lv_buf_put_u8(buf, 'C') && lv_buf_append_cstr(buf, sqlstate) &&
		  lv_buf_put_u8(buf, 'M') && lv_buf_append_cstr(buf, message);
	if (ok && detail)
		ok = lv_buf_put_u8(buf, 'D') && lv_buf_append_cstr(buf, detail);
	if (ok && hint)
		ok = lv_buf_put_u8(buf, 'H') && lv_buf_append_cstr(buf, hint);
	ok = ok && lv_buf_put_u8(buf, 0);
	return finish(buf, &m, ok);
}

bool lv_wire_write_error(lv_buf_t *buf, const char *severity, const char *sqlstate,
			 const char *message, const char *detail, const char *hint)
{
	return write_error_fields(buf, PqMsg_ErrorResponse, severity, sqlstate, message, detail,
				  hint);
}

bool lv_wire_write_notice(lv_buf_t *buf, const char *severity, const char *sqlstate,
			  const char *message, const char *detail, const char *hint)
{
	return write_error_fields(buf, PqMsg_NoticeResponse, severity, sqlstate, message, detail,
				  hint);
}

/* An AuthenticationRequest: code and len bytes of data. */
static bool write_auth(lv_buf_t *buf, int32_t code, const void *data, size_t len)
{
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, PqMsg_AuthenticationRequest, &m))
		return false;
	bool ok = lv_buf_put_u32(buf, (uint32_t)code) && lv_buf_append(buf, data, len);
	return finish(buf, &m, ok);
}

bool lv_wire_write_auth_ok(lv_buf_t *buf)
{
	return write_auth(buf, LV_AUTH_REQ_OK, NULL, 0);
}

bool lv_wire_write_auth_cleartext(lv_buf_t *buf)
{
	return write_auth(buf, LV_AUTH_REQ_PASSWORD, NULL, 0);
}

bool lv_wire_write_auth_md5(lv_buf_t *buf, const uint8_t salt[4])
{
	return write_auth(buf, LV_AUTH_REQ_MD5, salt, 4);
}

bool lv_wire_write_auth_sasl(lv_buf_t *buf, const char *const *mechs)
{
	LV_ASSERT(mechs && mechs[0]);
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, PqMsg_AuthenticationRequest, &m))
		return false;
	bool ok = lv_buf_put_u32(buf, LV_AUTH_REQ_SASL);
	for (size_t i = 0; ok && mechs[i]; i++)
		ok = lv_buf_append_cstr(buf, mechs[i]);
	ok = ok && lv_buf_put_u8(buf, 0);
	return finish(buf, &m, ok);
}

bool lv_wire_write_auth_sasl_continue(lv_buf_t *buf, const void *data, size_t len)
{
	return write_auth(buf, LV_AUTH_REQ_SASL_CONT, data, len);
}

bool lv_wire_write_auth_sasl_final(lv_buf_t *buf, const void *data, size_t len)
{
	return write_auth(buf, LV_AUTH_REQ_SASL_FIN, data, len);
}

bool lv_wire_write_param_status(lv_buf_t *buf, const char *name, const char *value)
{
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, PqMsg_ParameterStatus, &m))
		return false;
	bool ok = lv_buf_append_cstr(buf, name) && lv_buf_append_cstr(buf, value);
	return finish(buf, &m, ok);
}

bool lv_wire_write_backend_key(lv_buf_t *buf, int32_t pid, uint32_t key)
{
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, PqMsg_BackendKeyData, &m))
		return false;
	bool ok = lv_buf_put_u32(buf, (uint32_t)pid) && lv_buf_put_u32(buf, key);
	return finish(buf, &m, ok);
}

bool lv_wire_write_ready(lv_buf_t *buf, uint8_t status)
{
	LV_ASSERT(status == LV_WIRE_TXN_IDLE || status == LV_WIRE_TXN_INTRANS ||
		  status == LV_WIRE_TXN_FAILED);
	return lv_wire_write_msg(buf, PqMsg_ReadyForQuery, &status, 1);
}

bool lv_wire_write_negotiate(lv_buf_t *buf, int32_t newest_minor, size_t n,
			     const char *const *options)
{
	if (n > INT32_MAX)
		return false;
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, PqMsg_NegotiateProtocolVersion, &m))
		return false;
	bool ok = lv_buf_put_u32(buf, (uint32_t)newest_minor) && lv_buf_put_u32(buf, (uint32_t)n);
	for (size_t i = 0; ok && i < n; i++)
		ok = lv_buf_append_cstr(buf, options[i]);
	return finish(buf, &m, ok);
}

/* pg_type.typlen of common built-in types; -1 (variable) for everything else. */
static int16_t type_len(uint32_t oid)
{
	switch (oid) {
	case 16: /* bool */
	case 18: /* char */
		return 1;
	case 21: /* int2 */
		return 2;
	case 23:   /* int4 */
	case 26:   /* oid */
	case 700:  /* float4 */
	case 1082: /* date */
		return 4;
	case 20:   /* int8 */
	case 701:  /* float8 */
	case 1083: /* time */
	case 1114: /* timestamp */
	case 1184: /* timestamptz */
		return 8;
	case 1186: /* interval */
	case 2950: /* uuid */
		return 16;
	case 19: /* name */
		return 64;
	default:
		return -1;
	}
}

bool lv_wire_write_row_description(lv_buf_t *buf, size_t n, const char *const *names,
				   const uint32_t *oids)
{
	if (n > UINT16_MAX)
		return false;
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, PqMsg_RowDescription, &m))
		return false;
	bool ok = lv_buf_put_u16(buf, (uint16_t)n);
	for (size_t i = 0; ok && i < n; i++) {
		uint32_t oid = oids ? oids[i] : 25;
		ok = lv_buf_append_cstr(buf, names[i]) && lv_buf_put_u32(buf, 0) && /* table */
		     lv_buf_put_u16(buf, 0) &&                                      /* attnum */
		     lv_buf_put_u32(buf, oid) && lv_buf_put_u16(buf, (uint16_t)type_len(oid)) &&
		     lv_buf_put_u32(buf, (uint32_t)-1) && /* typmod */
		     lv_buf_put_u16(buf, 0);              /* text format */
	}
	return finish(buf, &m, ok);
}

bool lv_wire_write_data_row_len(lv_buf_t *buf, size_t n, const char *const *values,
				const size_t *lens)
{
	if (n > UINT16_MAX)
		return false;
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, PqMsg_DataRow, &m))
		return false;
	bool ok = lv_buf_put_u16(buf, (uint16_t)n);
	for (size_t i = 0; ok && i < n; i++)
		ok = put_counted(buf, values[i], values[i] ? lens[i] : 0);
	return finish(buf, &m, ok);
}

bool lv_wire_write_data_row(lv_buf_t *buf, size_t n, const char *const *values)
{
	if (n > UINT16_MAX)
		return false;
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, PqMsg_DataRow, &m))
		return false;
	bool ok = lv_buf_put_u16(buf, (uint16_t)n);
	for (size_t i = 0; ok && i < n; i++)
		ok = put_counted(buf, values[i], values[i] ? strlen(values[i]) : 0);
	return finish(buf, &m, ok);
}

bool lv_wire_write_command_complete(lv_buf_t *buf, const char *tag)
{
	return lv_wire_write_msg(buf, PqMsg_CommandComplete, tag, strlen(tag) + 1);
}

bool lv_wire_write_empty_query(lv_buf_t *buf)
{
	return write_empty(buf, PqMsg_EmptyQueryResponse);
}

bool lv_wire_write_parse_complete(lv_buf_t *buf)
{
	return write_empty(buf, PqMsg_ParseComplete);
}

bool lv_wire_write_bind_complete(lv_buf_t *buf)
{
	return write_empty(buf, PqMsg_BindComplete);
}

bool lv_wire_write_close_complete(lv_buf_t *buf)
{
	return write_empty(buf, PqMsg_CloseComplete);
}

bool lv_wire_write_no_data(lv_buf_t *buf)
{
	return write_empty(buf, PqMsg_NoData);
}

/* ========================================================================
 * Frontend messages
 * ======================================================================== */

bool lv_wire_write_startup(lv_buf_t *buf, const char *const *params)
{
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, 0, &m))
		return false;
	bool ok = lv_buf_put_u32(buf, LV_PG_PROTOCOL_3_0);
	for (size_t i = 0; ok && params[i]; i += 2) {
		LV_ASSERT(params[i + 1] != NULL);
		ok = params[i + 1] && lv_buf_append_cstr(buf, params[i]) &&
		     lv_buf_append_cstr(buf, params[i + 1]);
	}
	ok = ok && lv_buf_put_u8(buf, 0);
	return finish(buf, &m, ok);
}

/* An untyped startup-phase packet: length, code, and optional pid/key. */
static bool write_special(lv_buf_t *buf, uint32_t code, bool cancel, int32_t pid, uint32_t key)
{
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, 0, &m))
		return false;
	bool ok = lv_buf_put_u32(buf, code);
	if (cancel)
		ok = ok && lv_buf_put_u32(buf, (uint32_t)pid) && lv_buf_put_u32(buf, key);
	return finish(buf, &m, ok);
}

bool lv_wire_write_ssl_request(lv_buf_t *buf)
{
	return write_special(buf, LV_NEGOTIATE_SSL_CODE, false, 0, 0);
}

bool lv_wire_write_gss_request(lv_buf_t *buf)
{
	return write_special(buf, LV_NEGOTIATE_GSS_CODE, false, 0, 0);
}

bool lv_wire_write_cancel(lv_buf_t *buf, int32_t pid, uint32_t key)
{
	return write_special(buf, LV_CANCEL_REQUEST_CODE, true, pid, key);
}

bool lv_wire_write_password(lv_buf_t *buf, const char *password)
{
	return lv_wire_write_msg(buf, PqMsg_PasswordMessage, password, strlen(password) + 1);
}

bool lv_wire_write_sasl_initial(lv_buf_t *buf, const char *mech, const void *data, size_t len)
{
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, PqMsg_SASLInitialResponse, &m))
		return false;
	bool ok = lv_buf_append_cstr(buf, mech) && put_counted(buf, data, len);
	return finish(buf, &m, ok);
}

bool lv_wire_write_sasl_response(lv_buf_t *buf, const void *data, size_t len)
{
	return lv_wire_write_msg(buf, PqMsg_SASLResponse, data, len);
}

bool lv_wire_write_query(lv_buf_t *buf, const char *sql)
{
	return lv_wire_write_msg(buf, PqMsg_Query, sql, strlen(sql) + 1);
}

bool lv_wire_write_terminate(lv_buf_t *buf)
{
	return write_empty(buf, PqMsg_Terminate);
}

bool lv_wire_write_sync(lv_buf_t *buf)
{
	return write_empty(buf, PqMsg_Sync);
}

bool lv_wire_write_flush(lv_buf_t *buf)
{
	return write_empty(buf, PqMsg_Flush);
}

/* Parse from a name and already-encoded parts; the common body of the Parse builders. */
static bool write_parse_raw(lv_buf_t *buf, const char *name, const char *query, size_t query_len,
			    size_t n_types, const uint32_t *oids, const uint8_t *raw_oids)
{
	if (n_types > UINT16_MAX)
		return false;
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, PqMsg_Parse, &m))
		return false;
	bool ok = lv_buf_append_cstr(buf, name) && lv_buf_append(buf, query, query_len) &&
		  lv_buf_put_u8(buf, 0) && lv_buf_put_u16(buf, (uint16_t)n_types);
	if (raw_oids)
		ok = ok && lv_buf_append(buf, raw_oids, n_types * 4);
	else
		for (size_t i = 0; ok && i < n_types; i++)
			ok = lv_buf_put_u32(buf, oids[i]);
	return finish(buf, &m, ok);
}

bool lv_wire_write_parse(lv_buf_t *buf, const char *name, const char *query, size_t n_types,
			 const uint32_t *oids)
{
	return write_parse_raw(buf, name, query, strlen(query), n_types, oids, NULL);
}

bool lv_wire_write_bind(lv_buf_t *buf, const char *portal, const char *stmt, size_t n_params,
			const char *const *values)
{
	if (n_params > UINT16_MAX)
		return false;
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, PqMsg_Bind, &m))
		return false;
	bool ok = lv_buf_append_cstr(buf, portal) && lv_buf_append_cstr(buf, stmt) &&
		  lv_buf_put_u16(buf, 0) && /* no parameter formats: all text */
		  lv_buf_put_u16(buf, (uint16_t)n_params);
	for (size_t i = 0; ok && i < n_params; i++)
		ok = put_counted(buf, values[i], values[i] ? strlen(values[i]) : 0);
	ok = ok && lv_buf_put_u16(buf, 0); /* no result formats: all text */
	return finish(buf, &m, ok);
}

/* Describe or Close. */
static bool write_target(lv_buf_t *buf, uint8_t type, uint8_t kind, const char *name)
{
	LV_ASSERT(kind == LV_WIRE_TARGET_STATEMENT || kind == LV_WIRE_TARGET_PORTAL);
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, type, &m))
		return false;
	bool ok = lv_buf_put_u8(buf, kind) && lv_buf_append_cstr(buf, name);
	return finish(buf, &m, ok);
}

bool lv_wire_write_describe(lv_buf_t *buf, uint8_t kind, const char *name)
{
	return write_target(buf, PqMsg_Describe, kind, name);
}

bool lv_wire_write_close(lv_buf_t *buf, uint8_t kind, const char *name)
{
	return write_target(buf, PqMsg_Close, kind, name);
}

bool lv_wire_write_execute(lv_buf_t *buf, const char *portal, int32_t max_rows)
{
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, PqMsg_Execute, &m))
		return false;
	bool ok = lv_buf_append_cstr(buf, portal) && lv_buf_put_u32(buf, (uint32_t)max_rows);
	return finish(buf, &m, ok);
}

/* ========================================================================
 * Rewriting
 * ======================================================================== */

bool lv_wire_write_parse_renamed(lv_buf_t *buf, const lv_wire_parse_t *parse, const char *new_name)
{
	return write_parse_raw(buf, new_name, parse->query, parse->query_len, parse->n_param_types,
			       NULL, parse->param_types);
}

bool lv_wire_write_bind_renamed(lv_buf_t *buf, const lv_wire_bind_t *bind, const char *new_stmt)
{
	lv_wire_msg_t m;
	if (!lv_wire_msg_begin(buf, PqMsg_Bind, &m))
		return false;
	bool ok = lv_buf_append(buf, bind->portal, bind->portal_len + 1) &&
		  lv_buf_append_cstr(buf, new_stmt) &&
		  lv_buf_append(buf, bind->tail, bind->tail_len);
	return finish(buf, &m, ok);
}
