/* SPDX-License-Identifier: ISC */
/*
 * Parsers for the PostgreSQL v3 messages Levee inspects, plus a bounded
 * reader that they are built on.
 *
 * Nothing here copies or allocates: every string and byte span in a result
 * points into the caller's buffer and is valid only as long as that buffer is
 * unchanged (for sbuf, until the message is consumed). Strings are the
 * protocol's NUL-terminated String type, so they can be used as C strings.
 *
 * Message parsers take the message BODY (the bytes after the 5-byte header)
 * and its length, return 0 or LV_EPROTO, and check that the body is consumed
 * exactly (PostgreSQL's pq_getmsgend()). On LV_EPROTO the output is undefined.
 */
#ifndef LEVEE_WIRE_READ_H
#define LEVEE_WIRE_READ_H

#include "core/lv.h"
#include "core/status.h"
#include "wire/wire.h"

/* ------------------------------------------------------------------------
 * Bounded reader
 * ------------------------------------------------------------------------ */

/*
 * A cursor over [p, end). A read past end sets failed and returns 0 or NULL;
 * once failed, every later read fails too, so a parser can read all fields
 * and check failed (or lv_wire_reader_done()) once at the end.
 */
typedef struct lv_wire_reader {
	const uint8_t *p;   /* next unread byte */
	const uint8_t *end; /* one past the last byte */
	bool failed;        /* a read ran past end or found no NUL */
} lv_wire_reader_t;

/* Starts reading len bytes at body (body may be NULL when len is 0). */
void lv_wire_reader_init(lv_wire_reader_t *r, const void *body, size_t len);
/* Bytes left to read (0 once failed). */
size_t lv_wire_reader_left(const lv_wire_reader_t *r);
/* Reads one byte; 0 and failed when none is left. */
uint8_t lv_wire_get_u8(lv_wire_reader_t *r);
/* Reads a big-endian int16; 0 and failed when fewer than 2 bytes are left. */
int16_t lv_wire_get_i16(lv_wire_reader_t *r);
/* Reads a big-endian uint16 (the protocol's counts); 0 and failed as above. */
uint16_t lv_wire_get_u16(lv_wire_reader_t *r);
/* Reads a big-endian int32; 0 and failed when fewer than 4 bytes are left. */
int32_t lv_wire_get_i32(lv_wire_reader_t *r);
/* Reads a big-endian uint32 (OIDs, cancel keys); 0 and failed as above. */
uint32_t lv_wire_get_u32(lv_wire_reader_t *r);
/*
 * Reads a NUL-terminated string and returns it (pointing into the buffer);
 * stores its length without the NUL in *len when len is not NULL. NULL and
 * failed when there is no NUL before end.
 */
const char *lv_wire_get_cstr(lv_wire_reader_t *r, size_t *len);
/* Returns a pointer to the next n bytes and skips them; NULL and failed if fewer are left. */
const uint8_t *lv_wire_get_bytes(lv_wire_reader_t *r, size_t n);
/* True iff no read failed and every byte was consumed (pq_getmsgend). */
bool lv_wire_reader_done(const lv_wire_reader_t *r);

/* ------------------------------------------------------------------------
 * Framing
 * ------------------------------------------------------------------------ */

/*
 * Reads a regular message header from the n bytes at p. On 0, *type is the
 * type byte and *len the int32 length (which counts itself, so the whole
 * message is 1 + *len bytes and the body *len - 4). LV_EAGAIN when n < 5;
 * LV_EPROTO when the length is below 4 or negative; LV_ETOOBIG when it is
 * above max_len. The body is not looked at.
 */
int lv_wire_read_header(const uint8_t *p, size_t n, size_t max_len, uint8_t *type, uint32_t *len);

/*
 * Reads the length word of a startup-phase packet. 0 and *len on success;
 * LV_EAGAIN when n < 4. The value is not validated (lv_wire_parse_startup does).
 */
int lv_wire_startup_len(const uint8_t *p, size_t n, uint32_t *len);

/* ------------------------------------------------------------------------
 * Startup packets
 * ------------------------------------------------------------------------ */

#define LV_STARTUP_MAX_PARAMS 64

typedef enum lv_startup_kind {
	LV_STARTUP_NORMAL, /* StartupMessage, protocol 3.x, with parameters */
	LV_STARTUP_SSL,    /* SSLRequest */
	LV_STARTUP_GSS,    /* GSSENCRequest */
	LV_STARTUP_CANCEL, /* CancelRequest: cancel_pid and cancel_key are set */
} lv_startup_kind_t;

/* One name/value pair of a StartupMessage; both point into the packet. */
typedef struct lv_startup_param {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
} lv_startup_param_t;

typedef struct lv_startup {
	lv_startup_kind_t kind;
	uint32_t len;     /* packet length, including the length word */
	uint32_t version; /* the code word: protocol version or special code */
	uint16_t major;   /* LV_PG_PROTOCOL_MAJOR(version) */
	uint16_t minor;   /* LV_PG_PROTOCOL_MINOR(version) */
	/* LV_STARTUP_CANCEL only. */
	int32_t cancel_pid;
	uint32_t cancel_key;
	/* LV_STARTUP_NORMAL only; pointers into the packet, in packet order. */
	size_t n_params;
	lv_startup_param_t params[LV_STARTUP_MAX_PARAMS];
	/* Convenience: the values of these parameters, NULL when absent. A
	 * repeated name keeps its last value, as PostgreSQL does. "database"
	 * is not defaulted to the user name here; callers do that. */
	const char *user; /* never NULL nor empty after a successful parse */
	const char *database;
	const char *options;
	const char *application_name;
} lv_startup_t;

/*
 * Parses a startup-phase packet; p points at the length word and n bytes are
 * available (bytes after the packet are ignored). Returns 0 and fills *out,
 * or an error with a message in *err (err may be NULL):
 *   LV_EAGAIN   fewer than 4 bytes, or fewer than the packet length;
 *   LV_EPROTO   length below 8, a special request with the wrong length, a
 *               parameter list without its final NUL terminator, or a name
 *               without a value;
 *   LV_ETOOBIG  length above LV_WIRE_MAX_STARTUP_LEN, or more than
 *               LV_STARTUP_MAX_PARAMS parameters;
 *   LV_EUNSUPP  a protocol major version other than 3, or an unknown
 *               1234.x special code;
 *   LV_EINVAL   a StartupMessage without a non-empty "user".
 */
int lv_wire_parse_startup(const uint8_t *p, size_t n, lv_startup_t *out, lv_err_t *err);

/* ------------------------------------------------------------------------
 * Backend messages
 * ------------------------------------------------------------------------ */

/* Fields of an ErrorResponse or NoticeResponse; NULL when absent. */
typedef struct lv_wire_error {
	const char *severity;     /* 'V' (never localized), else 'S' */
	const char *severity_loc; /* 'S', possibly localized */
	const char *sqlstate;     /* 'C', five characters when present */
	const char *message;      /* 'M' */
	const char *detail;       /* 'D' */
	const char *hint;         /* 'H' */
} lv_wire_error_t;

/* ErrorResponse / NoticeResponse body. Unknown field codes are skipped. */
int lv_wire_parse_error(const uint8_t *body, size_t len, lv_wire_error_t *out);
/* ParameterStatus body: two strings. */
int lv_wire_parse_param_status(const uint8_t *body, size_t len, const char **name,
			       const char **value);
/* BackendKeyData body (protocol 3.0): int32 pid, int32 key; exactly 8 bytes. */
int lv_wire_parse_backend_key(const uint8_t *body, size_t len, int32_t *pid, uint32_t *key);
/* ReadyForQuery body: one status byte, which must be 'I', 'T' or 'E'. */
int lv_wire_parse_ready(const uint8_t *body, size_t len, uint8_t *status);

#define LV_WIRE_MAX_SASL_MECHS 8

/* An AuthenticationRequest. */
typedef struct lv_wire_auth {
	int32_t code;        /* LV_AUTH_REQ_* */
	const uint8_t *data; /* the bytes after the code (MD5 salt, SASL data) */
	size_t data_len;
	/* LV_AUTH_REQ_SASL only: the mechanism names, in server order. */
	size_t n_mechs;
	const char *mechs[LV_WIRE_MAX_SASL_MECHS];
} lv_wire_auth_t;

/*
 * AuthenticationRequest body. Checks the shape for known codes: OK and
 * cleartext carry no data, MD5 exactly 4 salt bytes, SASL a non-empty list of
 * mechanisms ending with an empty string (more than LV_WIRE_MAX_SASL_MECHS is
 * EPROTO). SASL_CONT/SASL_FIN and other codes keep their data uninspected.
 */
int lv_wire_parse_auth(const uint8_t *body, size_t len, lv_wire_auth_t *out);
/* True if the SASL request lists the mechanism name. */
bool lv_wire_auth_has_mech(const lv_wire_auth_t *auth, const char *mech);

/* CommandComplete body: the tag string. */
int lv_wire_parse_command_complete(const uint8_t *body, size_t len, const char **tag);
/*
 * Row count of a command tag ("SELECT 5", "INSERT 0 5", "UPDATE 5"): 0 and
 * *rows, or LV_ENOENT when the tag carries no count ("BEGIN", "SET").
 */
int lv_wire_tag_rows(const char *tag, uint64_t *rows);

/* A NotificationResponse. */
typedef struct lv_wire_notify {
	int32_t pid;
	const char *channel;
	const char *payload;
} lv_wire_notify_t;

/* NotificationResponse body: int32 pid, channel, payload. */
int lv_wire_parse_notify(const uint8_t *body, size_t len, lv_wire_notify_t *out);

/* A NegotiateProtocolVersion. */
typedef struct lv_wire_negotiate {
	int32_t newest_minor;   /* newest minor version the server supports */
	int32_t n_unrecognized; /* number of unrecognized _pq_ options */
	const uint8_t *options; /* n_unrecognized consecutive strings */
	size_t options_len;
} lv_wire_negotiate_t;

/* NegotiateProtocolVersion body. */
int lv_wire_parse_negotiate(const uint8_t *body, size_t len, lv_wire_negotiate_t *out);

/* ------------------------------------------------------------------------
 * Frontend messages
 * ------------------------------------------------------------------------ */

/* Query body: the SQL string, *sql_len without the NUL (sql_len may be NULL). */
int lv_wire_parse_query(const uint8_t *body, size_t len, const char **sql, size_t *sql_len);

/* A Parse message. */
typedef struct lv_wire_parse {
	const char *name; /* prepared statement name, "" for the unnamed one */
	size_t name_len;
	const char *query;
	size_t query_len;
	uint16_t n_param_types;     /* 0..65535, read unsigned as PostgreSQL does */
	const uint8_t *param_types; /* n_param_types big-endian int32 OIDs */
} lv_wire_parse_t;

/* Parse body: name, query, uint16 count, that many int32 OIDs. */
int lv_wire_parse_parse(const uint8_t *body, size_t len, lv_wire_parse_t *out);
/* The i-th parameter type OID of a parsed Parse (i < n_param_types). */
uint32_t lv_wire_parse_param_type(const lv_wire_parse_t *parse, size_t i);

/*
 * A Bind message. To rewrite the statement name, send the portal, the new
 * name, then the tail bytes unchanged (lv_wire_write_bind_renamed()). The
 * spans below are structurally validated: walk params with an
 * lv_wire_reader_t as n_params times (int32 length, -1 for NULL, then that
 * many bytes), or use lv_wire_bind_next_param().
 */
typedef struct lv_wire_bind {
	const char *portal;
	size_t portal_len;
	const char *stmt;
	size_t stmt_len;
	size_t stmt_off;     /* offset of stmt in the body */
	const uint8_t *tail; /* the bytes after stmt's NUL, to the end */
	size_t tail_len;
	uint16_t n_param_formats;     /* as sent; meaning: see lv_wire_bind_param_format() */
	const uint8_t *param_formats; /* n_param_formats big-endian int16 */
	uint16_t n_params;
	const uint8_t *params; /* n_params length-prefixed values */
	size_t params_len;
	uint16_t n_result_formats;
	const uint8_t *result_formats; /* n_result_formats big-endian int16 */
} lv_wire_bind_t;

/*
 * Bind body (counts are uint16, as PostgreSQL reads them). EPROTO on a
 * parameter length below -1 or past the end, or trailing bytes. Semantic
 * checks (format codes other than 0 and 1, a format count that is not 0, 1
 * or n_params) are left to the server, which answers them with an ERROR
 * without ending the session.
 */
int lv_wire_parse_bind(const uint8_t *body, size_t len, lv_wire_bind_t *out);
/* Format code of parameter i per the protocol's 0 / 1 / n rule (0 when unspecified). */
int16_t lv_wire_bind_param_format(const lv_wire_bind_t *bind, size_t i);
/*
 * Reads the next parameter from a reader started on (params, params_len):
 * *value points at its bytes (NULL for SQL NULL) and *value_len is its
 * length or -1. Returns false when the reader is exhausted or failed.
 */
bool lv_wire_bind_next_param(lv_wire_reader_t *r, const uint8_t **value, int32_t *value_len);

/* Describe or Close body: kind 'S' or 'P' (else EPROTO), then the name. */
int lv_wire_parse_target(const uint8_t *body, size_t len, uint8_t *kind, const char **name);
/* Execute body: portal name and int32 max rows (0 or negative: no limit). */
int lv_wire_parse_execute(const uint8_t *body, size_t len, const char **portal, int32_t *max_rows);

/* A SASLInitialResponse. */
typedef struct lv_wire_sasl_initial {
	const char *mech;
	const uint8_t *data; /* NULL when data_len is -1 */
	int32_t data_len;    /* -1 means "no initial response" */
} lv_wire_sasl_initial_t;

/* SASLInitialResponse body: mechanism, int32 length (-1 or more), that many bytes. */
int lv_wire_parse_sasl_initial(const uint8_t *body, size_t len, lv_wire_sasl_initial_t *out);
/* SASLResponse body: all of it is mechanism data (any bytes, may be empty). */
int lv_wire_parse_sasl_response(const uint8_t *body, size_t len, const uint8_t **data,
				size_t *data_len);
/* PasswordMessage body: exactly one string (cleartext or "md5..." response). */
int lv_wire_parse_password(const uint8_t *body, size_t len, const char **password);

#endif
