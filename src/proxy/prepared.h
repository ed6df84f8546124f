/* SPDX-License-Identifier: ISC */
/*
 * Protocol-level prepared statements in transaction mode, and the queue of
 * responses a server still owes its client.
 *
 * A client's named Parse is remembered for that client (its name maps to a
 * statement of this worker's registry, keyed by query text and parameter
 * types). The statement is prepared on a server under a Levee name
 * ("lv<worker>_<id>"), once per server, and shared by every client that
 * prepared the same text; Bind, Describe and Close of the client's name are
 * rewritten to it, and a server that lacks it gets a Parse first. Each server
 * keeps at most max_prepared_statements, evicting the least recently used
 * with a real Close.
 *
 * Because Levee answers some messages itself (ParseComplete for a statement
 * the server already has, CloseComplete for a client's Close) and swallows
 * the answers to messages it injected, every message sent to or answered for
 * a server in transaction mode has an entry in the server's response queue,
 * in order. Server responses pop entries as each message's last response
 * arrives; an ErrorResponse drops the entries up to the next Sync, as the
 * server skips those messages.
 *
 * Everything here belongs to one worker thread.
 */
#ifndef LEVEE_PROXY_PREPARED_H
#define LEVEE_PROXY_PREPARED_H

#include "core/lv.h"

typedef struct lv_pstmt {
	uint64_t hash;          /* of query and parameter types */
	uint64_t id;
	char name[32];          /* the name on servers */
	char *query;            /* owned, NUL-terminated */
	size_t query_len;
	uint32_t *oids;         /* owned; n_oids parameter types */
	uint16_t n_oids;
	int refs;               /* client maps, server sets and queue entries holding it */
	struct lv_pstmt *next;  /* registry hash chain */
} lv_pstmt_t;

typedef struct lv_pstmt_reg {
	lv_pstmt_t **buckets;
	size_t cap, n;
	uint64_t next_id;
	int worker;
} lv_pstmt_reg_t;

void lv_pstmt_reg_init(lv_pstmt_reg_t *reg, int worker);
void lv_pstmt_reg_cleanup(lv_pstmt_reg_t *reg);
/* Finds or creates the statement; returns it with one more reference, or NULL on OOM. */
lv_pstmt_t *lv_pstmt_get(lv_pstmt_reg_t *reg, const char *query, size_t query_len, const uint8_t *types_be,
			 uint16_t n_types);
/* Drops a reference; the last one frees the statement. NULL is a no-op. */
void lv_pstmt_put(lv_pstmt_reg_t *reg, lv_pstmt_t *ps);

/* A client's names. */
typedef struct lv_pstmt_map {
	struct lv_pstmt_name {
		char *name;
		lv_pstmt_t *ps;
	} *v;
	size_t n, cap;
} lv_pstmt_map_t;

/* Maps name to ps (taking over the caller's reference). False on OOM (reference dropped). */
bool lv_pstmt_map_set(lv_pstmt_reg_t *reg, lv_pstmt_map_t *m, const char *name, lv_pstmt_t *ps) LV_MUSTCHECK;
lv_pstmt_t *lv_pstmt_map_get(const lv_pstmt_map_t *m, const char *name);
void lv_pstmt_map_del(lv_pstmt_reg_t *reg, lv_pstmt_map_t *m, const char *name);
void lv_pstmt_map_clear(lv_pstmt_reg_t *reg, lv_pstmt_map_t *m);

/* The statements a server has, with use times for LRU eviction. */
typedef struct lv_pstmt_set {
	struct lv_pstmt_use {
		lv_pstmt_t *ps;
		uint64_t used;
	} *v;
	size_t n, cap;
	uint64_t clock;
} lv_pstmt_set_t;

/* True if the server has ps (and marks it used). */
bool lv_pstmt_set_has(lv_pstmt_set_t *s, const lv_pstmt_t *ps);
/* Adds ps (taking a reference). False on OOM. */
bool lv_pstmt_set_add(lv_pstmt_set_t *s, lv_pstmt_t *ps) LV_MUSTCHECK;
void lv_pstmt_set_del(lv_pstmt_reg_t *reg, lv_pstmt_set_t *s, const lv_pstmt_t *ps);
/* The least recently used statement other than keep, or NULL. */
lv_pstmt_t *lv_pstmt_set_lru(const lv_pstmt_set_t *s, const lv_pstmt_t *keep);
void lv_pstmt_set_clear(lv_pstmt_reg_t *reg, lv_pstmt_set_t *s);

/* What to do when an entry reaches the head of the response queue. */
typedef enum lv_resp_action {
	LV_RESP_PASS,    /* the server answers; forward its responses */
	LV_RESP_SYNTH,   /* Levee answers (ParseComplete or CloseComplete) */
	LV_RESP_SWALLOW, /* the server answers a message Levee injected; drop it */
	LV_RESP_ERROR,   /* Levee refuses the message: ErrorResponse (sqlstate, text) */
} lv_resp_action_t;

typedef struct lv_resp {
	uint8_t kind;   /* the frontend message type: 'P','B','D','E','C','S','Q','F' */
	uint8_t action; /* lv_resp_action_t */
	char sqlstate[6]; /* LV_RESP_ERROR */
	lv_pstmt_t *ps; /* Parse entries: the statement (a reference), else NULL */
	char *text;     /* owned: the client's statement name (Parse), or the error message */
} lv_resp_t;

typedef struct lv_respq {
	lv_resp_t *v;
	size_t head, n, cap;
} lv_respq_t;

bool lv_respq_push(lv_respq_t *q, uint8_t kind, lv_resp_action_t action, lv_pstmt_t *ps) LV_MUSTCHECK;
/* Like lv_respq_push() with a copy of text (and a sqlstate for LV_RESP_ERROR). */
bool lv_respq_push_text(lv_respq_t *q, uint8_t kind, lv_resp_action_t action, lv_pstmt_t *ps,
			const char *sqlstate, const char *text) LV_MUSTCHECK;
static inline lv_resp_t *lv_respq_head(lv_respq_t *q)
{
	return q->n ? &q->v[q->head] : NULL;
}
/* Removes the head entry, dropping its statement reference. */
void lv_respq_pop(lv_pstmt_reg_t *reg, lv_respq_t *q);
void lv_respq_cleanup(lv_pstmt_reg_t *reg, lv_respq_t *q);
/* True if type is the last response to a message of kind (an error aside). */
bool lv_resp_is_last(uint8_t kind, uint8_t type);

#endif
