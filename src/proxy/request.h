/* SPDX-License-Identifier: ISC */
/*
 * A client's request at the head of its input, read without consuming it:
 * one simple Query, or extended-protocol messages on the unnamed portal,
 * Parse? Describe(statement)? Bind Describe(portal)? Execute Sync. This is the shape the result
 * cache answers and the write queue defers; anything else (Flush, Close,
 * several Executes, a row limit, a named portal) is not such a request and
 * goes to a server as it is.
 *
 * The views point into the client's input buffer, made contiguous by the
 * parse: valid until the input is consumed or more is read.
 */
#ifndef LEVEE_PROXY_REQUEST_H
#define LEVEE_PROXY_REQUEST_H

#include "core/types.h"
#include "wire/read.h"

/* The shape code of a Describe of a statement ('D' stands for the portal's). */
#define LV_REQ_DESCRIBE_STMT 'd'

typedef struct lv_request {
	size_t total;        /* bytes of the whole request */
	bool extended;
	const char *sql;     /* statement text (NUL-terminated in the buffer) */
	size_t sql_len;
	uint16_t n_types;
	const uint8_t *types_be; /* Parse's parameter types (big-endian), or NULL with types */
	const uint32_t *types;   /* a named statement's parameter types (transaction mode) */
	bool has_parse, has_describe;
	bool has_describe_stmt;  /* a Describe of the statement: its answer is replayed verbatim */
	bool hinted;             /* the text mentions "levee:" (a hint may be there) */
	const char *parse_name;  /* "" for the unnamed statement */
	lv_wire_bind_t bind;
	uint8_t shape[6];        /* the message types, in order (LV_REQ_DESCRIBE_STMT for Describe 'S') */
	int n_shape;
} lv_request_t;

/*
 * Parses the request at the head of c's input. false when it is not one of
 * the shapes above or is not complete yet (rq is then undefined).
 */
bool lv_request_parse(lv_client_t *c, lv_request_t *rq);
/* Parameter type i (0 = unspecified). */
uint32_t lv_request_type(const lv_request_t *rq, uint16_t i);

#endif
