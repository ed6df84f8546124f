/* SPDX-License-Identifier: ISC */
/*
 * From server bytes to a cache entry and back to client bytes.
 *
 * Capture: while a cacheable request runs, the server's reply bytes are
 * appended to an lv_cache_capture_t (bounded by the per-entry cap). When the
 * ReadyForQuery arrives, lv_cache_capture_finish() checks the one request
 * cycle and cuts out the description and the body:
 *
 *   simple Query:  T D* C Z
 *   extended:      1? (t (T|n))? 2? (T|n)? D* C Z
 *
 * (1 ParseComplete, t ParameterDescription, 2 BindComplete, T RowDescription,
 * n NoData, D DataRow, C CommandComplete, Z ReadyForQuery). The description
 * kept is the portal's (after BindComplete, or the only one in simple
 * protocol); a statement Describe's answer is not kept because its format
 * codes are not yet known. Anything else (errors, notices, notifications,
 * ParameterStatus, empty query, portal suspended, COPY, more than one
 * statement, a transaction status other than idle, malformed framing)
 * makes the reply uncacheable, with a reason for the metrics.
 *
 * Replay: lv_cache_replay() answers a request from an entry with the byte
 * layout PostgreSQL uses, message by message of what the client sent.
 *
 * L2: lv_cache_entry_encode()/decode() turn an entry into a versioned,
 * checksummed payload for Redis and back. The payload carries the full key
 * (decode refuses another key, so a digest collision cannot serve another
 * statement), the description and body, wall-clock deadlines, and the table
 * generations by name (decode maps them to local slots; the caller compares
 * them with its own view through lv_cache_entry_is_current()).
 */
#ifndef LEVEE_CACHE_CAPTURE_H
#define LEVEE_CACHE_CAPTURE_H

#include "core/lv.h"
#include "cache/gens.h"
#include "cache/key.h"
#include "cache/store.h"
#include "core/buf.h"
#include "core/time.h"

/* ------------------------------------------------------------------------
 * Capture
 * ------------------------------------------------------------------------ */

typedef struct lv_cache_capture {
	lv_buf_t buf; /* the reply bytes so far; owned */
	size_t cap;   /* most bytes accepted */
	bool is_over; /* cap exceeded or OOM: the reply will not be cached */
} lv_cache_capture_t;

typedef enum lv_cache_shape {
	LV_CACHE_SHAPE_SIMPLE = 0,   /* one simple Query */
	LV_CACHE_SHAPE_EXTENDED = 1, /* Parse/Bind/Describe/Execute ... Sync */
} lv_cache_shape_t;

/* Why a reply cannot be cached; the names are metric labels. */
#define LV_CACHE_REJECT_MAP(XX)                                                     \
	XX(NONE, "none")                 /* cacheable */                            \
	XX(TOO_BIG, "too_big")           /* over the cap, or OOM while capturing */ \
	XX(ERROR, "error")               /* ErrorResponse */                        \
	XX(NOTICE, "notice")             /* NoticeResponse */                       \
	XX(NOTIFY, "notify")             /* NotificationResponse */                 \
	XX(PARAM_STATUS, "param_status") /* ParameterStatus: the session changed */ \
	XX(EMPTY_QUERY, "empty_query")   /* EmptyQueryResponse */                   \
	XX(SUSPENDED, "suspended")       /* PortalSuspended (Execute row limit) */  \
	XX(COPY, "copy")                 /* CopyIn/CopyOut/CopyBoth */              \
	XX(MULTI, "multi")               /* more than one statement's results */    \
	XX(TXN_STATUS, "txn_status")     /* ReadyForQuery status not 'I' */         \
	XX(NO_ROWDESC, "no_rowdesc")     /* simple Query without RowDescription */  \
	XX(INCOMPLETE, "incomplete")     /* no CommandComplete or ReadyForQuery */  \
	XX(UNEXPECTED, "unexpected")     /* a message out of place or unknown */    \
	XX(MALFORMED, "malformed")       /* bad framing or message contents */

typedef enum lv_cache_reject {
#define XX(name, str) LV_CACHE_REJECT_##name,
	LV_CACHE_REJECT_MAP(XX)
#undef XX
	LV_CACHE_REJECT_COUNT
} lv_cache_reject_t;

/* The label of a reject reason ("error"); "unknown" out of range. */
const char *lv_cache_reject_name(lv_cache_reject_t r);

/* Slices of a finished capture; they point into the capture's buffer. */
typedef struct lv_cache_capture_out {
	bool has_rowdesc;       /* the portal's description was seen */
	const uint8_t *rowdesc; /* the whole RowDescription or NoData message */
	size_t rowdesc_len;
	const uint8_t *body; /* DataRow... CommandComplete messages */
	size_t body_len;
	uint64_t n_rows;          /* DataRow messages in body */
	lv_cache_reject_t reject; /* NONE on success */
} lv_cache_capture_out_t;

/* An empty capture accepting at most cap bytes. */
void lv_cache_capture_init(lv_cache_capture_t *c, size_t cap);
/* Frees the bytes. */
void lv_cache_capture_cleanup(lv_cache_capture_t *c);
/* Empties the capture for the next request, keeping cap. */
void lv_cache_capture_reset(lv_cache_capture_t *c);
/*
 * Appends n reply bytes. False once the total would exceed the cap (or on
 * OOM): the capture is then over, drops its bytes, and every later add
 * returns false too; the caller gives up caching this reply.
 */
bool lv_cache_capture_add(lv_cache_capture_t *c, const void *p, size_t n);
/*
 * Checks the captured reply against shape and fills out. Returns 0 when it
 * is cacheable, else LV_EUNSUPP with out->reject saying why (TOO_BIG for a
 * capture that went over). The slices are valid until the capture changes.
 */
int lv_cache_capture_finish(const lv_cache_capture_t *c, lv_cache_shape_t shape,
			    lv_cache_capture_out_t *out);

/* ------------------------------------------------------------------------
 * Replay
 * ------------------------------------------------------------------------ */

/* What the client sent, message by message, in a request the cache answers. */
typedef enum lv_cache_req_msg {
	LV_CACHE_REQ_PARSE = 0,           /* -> ParseComplete */
	LV_CACHE_REQ_BIND = 1,            /* -> BindComplete */
	LV_CACHE_REQ_DESCRIBE_PORTAL = 2, /* -> the stored RowDescription or NoData */
	LV_CACHE_REQ_DESCRIBE_STATEMENT =
		3,                /* not replayable: the entry has no ParameterDescription */
	LV_CACHE_REQ_EXECUTE = 4, /* -> DataRow... CommandComplete (max_rows must be 0) */
	LV_CACHE_REQ_SYNC = 5,    /* -> ReadyForQuery */
	LV_CACHE_REQ_FLUSH = 6,   /* -> nothing */
	LV_CACHE_REQ_CLOSE = 7,   /* -> CloseComplete */
} lv_cache_req_msg_t;

#define LV_CACHE_REQ_MAX 16

typedef struct lv_cache_request {
	bool is_simple;                 /* a simple Query: msgs is ignored */
	uint8_t txn_status;             /* ReadyForQuery status to send; 0 means 'I' */
	size_t n;                       /* messages in msgs */
	uint8_t msgs[LV_CACHE_REQ_MAX]; /* lv_cache_req_msg_t values, in order */
} lv_cache_request_t;

/* An empty request (simple or extended) answering with ReadyForQuery status 'I'. */
void lv_cache_request_init(lv_cache_request_t *req, bool is_simple);
/* Appends one extended-protocol message; false when LV_CACHE_REQ_MAX are already listed. */
bool lv_cache_request_add(lv_cache_request_t *req, lv_cache_req_msg_t m) LV_MUSTCHECK;
/*
 * True when e can answer req: a simple Query needs a stored RowDescription;
 * an extended Describe of the portal needs a stored description (T or n);
 * a Describe of a statement is never replayable.
 */
bool lv_cache_replay_possible(const lv_cache_request_t *req, const lv_cache_entry_t *e);
/*
 * Appends the reply to req built from e to out. False, with out unchanged,
 * when !lv_cache_replay_possible() or on OOM; the caller then treats the
 * request as a miss.
 */
bool lv_cache_replay(lv_buf_t *out, const lv_cache_request_t *req,
		     const lv_cache_entry_t *e) LV_MUSTCHECK;

/* ------------------------------------------------------------------------
 * L2 payloads
 * ------------------------------------------------------------------------ */

/* Payload format version written by encode; decode accepts only this one. */
#define LV_CACHE_L2_VERSION 1

/*
 * Appends e's payload to out, its times turned into wall-clock deadlines
 * relative to wall_now (the monotonic clock of the entry's times is taken
 * to read mono_now at wall_now). False on OOM, out unchanged.
 */
bool lv_cache_entry_encode(const lv_cache_entry_t *e, lv_usec_t mono_now, lv_usec_t wall_now,
			   lv_buf_t *out) LV_MUSTCHECK;
/*
 * Parses a payload of n bytes. On 0, *out is a new entry (one reference, the
 * caller's; rule -1) whose key equals expect's, whose times are moved to the
 * monotonic clock (now_mono at wall_now), whose epoch is g's current one and
 * whose generations are the payload's values on the local slots of g
 * (created if needed). Errors, *out NULL: LV_EPROTO (malformed, wrong
 * version or checksum), LV_EINVAL (another key), LV_ENOENT (past
 * stale_until already), LV_ENOMEM.
 */
int lv_cache_entry_decode(const void *p, size_t n, const lv_cache_key_t *expect, lv_cache_gens_t *g,
			  lv_usec_t now_mono, lv_usec_t wall_now, lv_cache_entry_t **out);

#endif
