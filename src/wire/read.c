/* SPDX-License-Identifier: ISC */
/*
 * wire/read.c: parsing PostgreSQL v3 protocol bytes received from clients
 * and servers.
 *
 * Pure: no I/O, no allocation, no global state; safe from any thread. Every
 * result points into the caller's buffer, so it lives exactly as long as the
 * bytes it was parsed from. Input is hostile: every read goes through the
 * bounded reader, which never touches a byte at or past its end, and every
 * message parser finishes with lv_wire_reader_done() so trailing bytes are
 * a protocol violation, as PostgreSQL's pq_getmsgend() makes them.
 *
 * INTERFACE ROUTINES
 *
 * Bounded reader:
 *	lv_wire_reader_init	- start reading a body
 *	lv_wire_reader_left	- bytes still unread
 *	lv_wire_get_u8		- get a byte
 *	lv_wire_get_i16		- get a big-endian int16
 *	lv_wire_get_u16		- get a big-endian uint16 (counts)
 *	lv_wire_get_i32		- get a big-endian int32
 *	lv_wire_get_u32		- get a big-endian uint32 (OIDs, keys)
 *	lv_wire_get_cstr	- get a NUL-terminated string
 *	lv_wire_get_bytes	- get a span of raw bytes
 *	lv_wire_reader_done	- no failure and everything consumed
 *
 * Framing:
 *	lv_wire_read_header	- type byte and length of a regular message
 *	lv_wire_startup_len	- length word of a startup-phase packet
 *	lv_wire_parse_startup	- StartupMessage, SSLRequest, GSSENCRequest,
 *				  CancelRequest
 *
 * Backend messages:
 *	lv_wire_parse_error	- ErrorResponse / NoticeResponse fields
 *	lv_wire_parse_param_status - ParameterStatus
 *	lv_wire_parse_backend_key - BackendKeyData
 *	lv_wire_parse_ready	- ReadyForQuery
 *	lv_wire_parse_auth	- AuthenticationRequest (and SASL mechanisms)
 *	lv_wire_auth_has_mech	- is a SASL mechanism offered
 *	lv_wire_parse_command_complete - CommandComplete
 *	lv_wire_tag_rows	- row count of a command tag
 *	lv_wire_parse_notify	- NotificationResponse
 *	lv_wire_parse_negotiate	- NegotiateProtocolVersion
 *
 * Frontend messages:
 *	lv_wire_parse_query	- Query
 *	lv_wire_parse_parse	- Parse
 *	lv_wire_parse_param_type - i-th parameter type of a Parse
 *	lv_wire_parse_bind	- Bind
 *	lv_wire_bind_param_format - format code of a Bind parameter
 *	lv_wire_bind_next_param	- iterate over Bind parameter values
 *	lv_wire_parse_target	- Describe / Close
 *	lv_wire_parse_execute	- Execute
 *	lv_wire_parse_sasl_initial - SASLInitialResponse
 *	lv_wire_parse_sasl_response - SASLResponse
 *	lv_wire_parse_password	- PasswordMessage
 */
#include "core/lv.h"
#include "wire/read.h"

#include "core/buf.h"

/* ========================================================================
 * Bounded reader
 * ======================================================================== */

static const uint8_t empty_body[1];

void lv_wire_reader_init(lv_wire_reader_t *r, const void *body, size_t len)
{
	/* A NULL body only ever comes with len 0; avoid NULL + 0 arithmetic. */
	r->p = body ? body : empty_body;
	r->end = r->p + (body ? len : 0);
	r->failed = false;
}

size_t lv_wire_reader_left(const lv_wire_reader_t *r)
{
	return r->failed ? 0 : (size_t)(r->end - r->p);
}

/* Returns the next n bytes and advances, or NULL and marks the reader failed. */
static const uint8_t *take(lv_wire_reader_t *r, size_t n)
{
	if (r->failed || (size_t)(r->end - r->p) < n) {
		r->failed = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	return p;
}

uint8_t lv_wire_get_u8(lv_wire_reader_t *r)
{
	const uint8_t *p = take(r, 1);
	return p ? p[0] : 0;
}

uint16_t lv_wire_get_u16(lv_wire_reader_t *r)
{
	const uint8_t *p = take(r, 2);
	return p ? lv_get_u16(p) : 0;
}

int16_t lv_wire_get_i16(lv_wire_reader_t *r)
{
	return (int16_t)lv_wire_get_u16(r);
}

uint32_t lv_wire_get_u32(lv_wire_reader_t *r)
{
	const uint8_t *p = take(r, 4);
	return p ? lv_get_u32(p) : 0;
}

int32_t lv_wire_get_i32(lv_wire_reader_t *r)
{
	return (int32_t)lv_wire_get_u32(r);
}

const char *lv_wire_get_cstr(lv_wire_reader_t *r, size_t *len)
{
	if (r->failed)
		return NULL;
	const uint8_t *nul = memchr(r->p, '\0', (size_t)(r->end - r->p));
	if (!nul) {
		r->failed = true;
		return NULL;
	}
	const char *s = (const char *)r->p;
	if (len)
		*len = (size_t)(nul - r->p);
	r->p = nul + 1;
	return s;
}

const uint8_t *lv_wire_get_bytes(lv_wire_reader_t *r, size_t n)
{
	return take(r, n);
}

bool lv_wire_reader_done(const lv_wire_reader_t *r)
{
	return !r->failed && r->p == r->end;
}

/* Every message parser ends with this. */
static int finish(const lv_wire_reader_t *r)
{
	return lv_wire_reader_done(r) ? 0 : LV_EPROTO;
}

/* ========================================================================
 * Framing
 * ======================================================================== */

int lv_wire_read_header(const uint8_t *p, size_t n, size_t max_len, uint8_t *type, uint32_t *len)
{
	if (n < LV_WIRE_HEADER_LEN)
		return LV_EAGAIN;
	uint32_t l = lv_get_u32(p + 1);
	/* Negative as an int32, or too short to hold its own length word. */
	if (l > INT32_MAX || l < 4)
		return LV_EPROTO;
	if (l > max_len)
		return LV_ETOOBIG;
	*type = p[0];
	*len = l;
	return 0;
}

int lv_wire_startup_len(const uint8_t *p, size_t n, uint32_t *len)
{
	if (n < 4)
		return LV_EAGAIN;
	*len = lv_get_u32(p);
	return 0;
}

/* Points the convenience field for a well-known parameter name at its value. */
static void note_param(lv_startup_t *out, const lv_startup_param_t *prm)
{
	static const struct {
		const char *name;
		size_t off;
	} known[] = {
		{"user", offsetof(lv_startup_t, user)},
		{"database", offsetof(lv_startup_t, database)},
		{"options", offsetof(lv_startup_t, options)},
		{"application_name", offsetof(lv_startup_t, application_name)},
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(known); i++) {
		if (strcmp(prm->name, known[i].name) == 0) {
			*(const char **)((char *)out + known[i].off) = prm->value;
			return;
		}
	}
}

static int parse_startup_params(const uint8_t *body, size_t len, lv_startup_t *out, lv_err_t *err)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	for (;;) {
		lv_startup_param_t prm;
		prm.name = lv_wire_get_cstr(&r, &prm.name_len);
		if (!prm.name)
			return lv_err_set(err, LV_EPROTO,
					  "invalid startup packet layout: expected terminator as "
					  "last byte");
		if (prm.name_len == 0)
			break;
		prm.value = lv_wire_get_cstr(&r, &prm.value_len);
		if (!prm.value)
			return lv_err_set(err, LV_EPROTO,
					  "invalid startup packet layout: parameter without a "
					  "value");
		if (out->n_params == LV_STARTUP_MAX_PARAMS)
			return lv_err_set(err, LV_ETOOBIG, "too many startup parameters (limit %d)",
					  LV_STARTUP_MAX_PARAMS);
		out->params[out->n_params++] = prm;
		note_param(out, &prm);
	}
	if (!lv_wire_reader_done(&r))
		return lv_err_set(err, LV_EPROTO,
				  "invalid startup packet layout: expected terminator as last "
				  "byte");
	if (!out->user || out->user[0] == '\0')
		return lv_err_set(err, LV_EINVAL, "no user name specified in startup packet");
	return 0;
}

int lv_wire_parse_startup(const uint8_t *p, size_t n, lv_startup_t *out, lv_err_t *err)
{
	if (n < 4)
		return lv_err_set(err, LV_EAGAIN, "incomplete startup packet");
	uint32_t len = lv_get_u32(p);
	if (len < 8)
		return lv_err_set(err, LV_EPROTO, "invalid length of startup packet: %u", len);
	if (len > LV_WIRE_MAX_STARTUP_LEN)
		return lv_err_set(err, LV_ETOOBIG, "startup packet too long: %u bytes (limit %d)",
				  len, LV_WIRE_MAX_STARTUP_LEN);
	if (n < len)
		return lv_err_set(err, LV_EAGAIN, "incomplete startup packet");

	memset(out, 0, sizeof(*out));
	out->len = len;
	out->version = lv_get_u32(p + 4);
	out->major = (uint16_t)LV_PG_PROTOCOL_MAJOR(out->version);
	out->minor = (uint16_t)LV_PG_PROTOCOL_MINOR(out->version);

	switch (out->version) {
	case LV_CANCEL_REQUEST_CODE:
		if (len != LV_WIRE_CANCEL_LEN)
			return lv_err_set(err, LV_EPROTO, "invalid length of cancel request: %u",
					  len);
		out->kind = LV_STARTUP_CANCEL;
		out->cancel_pid = (int32_t)lv_get_u32(p + 8);
		out->cancel_key = lv_get_u32(p + 12);
		return 0;
	case LV_NEGOTIATE_SSL_CODE:
	case LV_NEGOTIATE_GSS_CODE:
		if (len != LV_WIRE_SSL_REQUEST_LEN)
			return lv_err_set(err, LV_EPROTO, "invalid length of %s request: %u",
					  out->version == LV_NEGOTIATE_SSL_CODE ? "SSL" : "GSSENC",
					  len);
		out->kind = out->version == LV_NEGOTIATE_SSL_CODE ? LV_STARTUP_SSL : LV_STARTUP_GSS;
		return 0;
	default:
		break;
	}
	if (out->major == 1234)
		return lv_err_set(err, LV_EUNSUPP, "unsupported special request code %u.%u",
				  out->major, out->minor);
	if (out->major != 3)
		return lv_err_set(err, LV_EUNSUPP,
				  "unsupported frontend protocol %u.%u: server supports 3.0",
				  out->major, out->minor);
	out->kind = LV_STARTUP_NORMAL;
	return parse_startup_params(p + 8, len - 8, out, err);
}

/* ========================================================================
 * Backend messages
 * ======================================================================== */

int lv_wire_parse_error(const uint8_t *body, size_t len, lv_wire_error_t *out)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	memset(out, 0, sizeof(*out));
	for (;;) {
		uint8_t code = lv_wire_get_u8(&r);
		if (r.failed)
			return LV_EPROTO;
		if (code == 0)
			break;
		size_t vlen;
		const char *v = lv_wire_get_cstr(&r, &vlen);
		if (!v)
			return LV_EPROTO;
		switch (code) {
		case 'S':
			out->severity_loc = v;
			break;
		case 'V':
			out->severity = v;
			break;
		case 'C':
			if (vlen != 5)
				return LV_EPROTO;
			out->sqlstate = v;
			break;
		case 'M':
			out->message = v;
			break;
		case 'D':
			out->detail = v;
			break;
		case 'H':
			out->hint = v;
			break;
		default:
			/* Position, context, schema, file, line...: not needed. */
			break;
		}
	}
	if (!out->severity)
		out->severity = out->severity_loc;
	return finish(&r);
}

int lv_wire_parse_param_status(const uint8_t *body, size_t len, const char **name,
			       const char **value)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	*name = lv_wire_get_cstr(&r, NULL);
	*value = lv_wire_get_cstr(&r, NULL);
	return finish(&r);
}

int lv_wire_parse_backend_key(const uint8_t *body, size_t len, int32_t *pid, uint32_t *key)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	*pid = lv_wire_get_i32(&r);
	*key = lv_wire_get_u32(&r);
	return finish(&r);
}

int lv_wire_parse_ready(const uint8_t *body, size_t len, uint8_t *status)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	uint8_t s = lv_wire_get_u8(&r);
	if (finish(&r) != 0)
		return LV_EPROTO;
	if (s != LV_WIRE_TXN_IDLE && s != LV_WIRE_TXN_INTRANS && s != LV_WIRE_TXN_FAILED)
		return LV_EPROTO;
	*status = s;
	return 0;
}

int lv_wire_parse_auth(const uint8_t *body, size_t len, lv_wire_auth_t *out)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	memset(out, 0, sizeof(*out));
	out->code = lv_wire_get_i32(&r);
	if (r.failed)
		return LV_EPROTO;
	out->data = r.p;
	out->data_len = lv_wire_reader_left(&r);

	switch (out->code) {
	case LV_AUTH_REQ_OK:
	case LV_AUTH_REQ_PASSWORD:
		break;
	case LV_AUTH_REQ_MD5:
		lv_wire_get_bytes(&r, 4);
		break;
	case LV_AUTH_REQ_SASL:
		for (;;) {
			size_t mlen;
			const char *m = lv_wire_get_cstr(&r, &mlen);
			if (!m)
				return LV_EPROTO;
			if (mlen == 0)
				break;
			if (out->n_mechs == LV_WIRE_MAX_SASL_MECHS)
				return LV_EPROTO;
			out->mechs[out->n_mechs++] = m;
		}
		if (out->n_mechs == 0)
			return LV_EPROTO;
		break;
	default:
		/* SASL_CONT, SASL_FIN, GSS...: opaque data, the rest of the body. */
		lv_wire_get_bytes(&r, out->data_len);
		break;
	}
	return finish(&r);
}

bool lv_wire_auth_has_mech(const lv_wire_auth_t *auth, const char *mech)
{
	for (size_t i = 0; i < auth->n_mechs; i++)
		if (strcmp(auth->mechs[i], mech) == 0)
			return true;
	return false;
}

int lv_wire_parse_command_complete(const uint8_t *body, size_t len, const char **tag)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	*tag = lv_wire_get_cstr(&r, NULL);
	return finish(&r);
}

int lv_wire_tag_rows(const char *tag, uint64_t *rows)
{
	const char *sp = strrchr(tag, ' ');
	if (!sp || sp[1] == '\0')
		return LV_ENOENT;
	uint64_t v = 0;
	for (const char *c = sp + 1; *c; c++) {
		if (*c < '0' || *c > '9')
			return LV_ENOENT;
		unsigned d = (unsigned)(*c - '0');
		if (v > (UINT64_MAX - d) / 10)
			return LV_ENOENT;
		v = v * 10 + d;
	}
	*rows = v;
	return 0;
}

int lv_wire_parse_notify(const uint8_t *body, size_t len, lv_wire_notify_t *out)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	out->pid = lv_wire_get_i32(&r);
	out->channel = lv_wire_get_cstr(&r, NULL);
	out->payload = lv_wire_get_cstr(&r, NULL);
	return finish(&r);
}

int lv_wire_parse_negotiate(const uint8_t *body, size_t len, lv_wire_negotiate_t *out)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	out->newest_minor = lv_wire_get_i32(&r);
	out->n_unrecognized = lv_wire_get_i32(&r);
	if (r.failed || out->newest_minor < 0 || out->n_unrecognized < 0)
		return LV_EPROTO;
	out->options = r.p;
	for (int32_t i = 0; i < out->n_unrecognized; i++)
		if (!lv_wire_get_cstr(&r, NULL))
			return LV_EPROTO;
	out->options_len = (size_t)(r.p - out->options);
	return finish(&r);
}

/* ========================================================================
 * Frontend messages
 * ======================================================================== */

int lv_wire_parse_query(const uint8_t *body, size_t len, const char **sql, size_t *sql_len)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	*sql = lv_wire_get_cstr(&r, sql_len);
	return finish(&r);
}

int lv_wire_parse_parse(const uint8_t *body, size_t len, lv_wire_parse_t *out)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	out->name = lv_wire_get_cstr(&r, &out->name_len);
	out->query = lv_wire_get_cstr(&r, &out->query_len);
	out->n_param_types = lv_wire_get_u16(&r);
	out->param_types = lv_wire_get_bytes(&r, (size_t)out->n_param_types * 4);
	return finish(&r);
}

uint32_t lv_wire_parse_param_type(const lv_wire_parse_t *parse, size_t i)
{
	LV_ASSERT(i < parse->n_param_types);
	return lv_get_u32(parse->param_types + i * 4);
}

bool lv_wire_bind_next_param(lv_wire_reader_t *r, const uint8_t **value, int32_t *value_len)
{
	if (lv_wire_reader_left(r) == 0)
		return false;
	int32_t l = lv_wire_get_i32(r);
	if (r->failed || l < -1) {
		r->failed = true;
		return false;
	}
	*value_len = l;
	*value = NULL;
	if (l >= 0) {
		*value = lv_wire_get_bytes(r, (size_t)l);
		if (!*value)
			return false;
	}
	return true;
}

int lv_wire_parse_bind(const uint8_t *body, size_t len, lv_wire_bind_t *out)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	out->portal = lv_wire_get_cstr(&r, &out->portal_len);
	out->stmt_off = out->portal_len + 1;
	out->stmt = lv_wire_get_cstr(&r, &out->stmt_len);
	if (r.failed)
		return LV_EPROTO;
	out->tail = r.p;
	out->tail_len = lv_wire_reader_left(&r);

	out->n_param_formats = lv_wire_get_u16(&r);
	out->param_formats = lv_wire_get_bytes(&r, (size_t)out->n_param_formats * 2);

	out->n_params = lv_wire_get_u16(&r);
	if (r.failed)
		return LV_EPROTO;
	out->params = r.p;
	for (uint16_t i = 0; i < out->n_params; i++) {
		const uint8_t *v;
		int32_t vlen;
		if (!lv_wire_bind_next_param(&r, &v, &vlen))
			return LV_EPROTO;
	}
	out->params_len = (size_t)(r.p - out->params);

	out->n_result_formats = lv_wire_get_u16(&r);
	out->result_formats = lv_wire_get_bytes(&r, (size_t)out->n_result_formats * 2);
	return finish(&r);
}

int16_t lv_wire_bind_param_format(const lv_wire_bind_t *bind, size_t i)
{
	if (bind->n_param_formats == 0)
		return 0;
	if (bind->n_param_formats == 1)
		return (int16_t)lv_get_u16(bind->param_formats);
	if (i < bind->n_param_formats)
		return (int16_t)lv_get_u16(bind->param_formats + i * 2);
	return 0;
}

int lv_wire_parse_target(const uint8_t *body, size_t len, uint8_t *kind, const char **name)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	*kind = lv_wire_get_u8(&r);
	*name = lv_wire_get_cstr(&r, NULL);
	if (finish(&r) != 0)
		return LV_EPROTO;
	if (*kind != LV_WIRE_TARGET_STATEMENT && *kind != LV_WIRE_TARGET_PORTAL)
		return LV_EPROTO;
	return 0;
}

int lv_wire_parse_execute(const uint8_t *body, size_t len, const char **portal, int32_t *max_rows)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	*portal = lv_wire_get_cstr(&r, NULL);
	*max_rows = lv_wire_get_i32(&r);
	return finish(&r);
}

int lv_wire_parse_sasl_initial(const uint8_t *body, size_t len, lv_wire_sasl_initial_t *out)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	out->mech = lv_wire_get_cstr(&r, NULL);
	out->data_len = lv_wire_get_i32(&r);
	out->data = NULL;
	if (r.failed || out->data_len < -1)
		return LV_EPROTO;
	if (out->data_len >= 0)
		out->data = lv_wire_get_bytes(&r, (size_t)out->data_len);
	return finish(&r);
}

int lv_wire_parse_sasl_response(const uint8_t *body, size_t len, const uint8_t **data,
				size_t *data_len)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	*data_len = lv_wire_reader_left(&r);
	*data = lv_wire_get_bytes(&r, *data_len);
	return finish(&r);
}

int lv_wire_parse_password(const uint8_t *body, size_t len, const char **password)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	*password = lv_wire_get_cstr(&r, NULL);
	return finish(&r);
}
