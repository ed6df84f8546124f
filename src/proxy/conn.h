/* SPDX-License-Identifier: ISC */
/*
 * The part every connection shares, embedded as the first member of
 * lv_client_t and lv_server_t (libuv-style inheritance; lv_container_of gets
 * back to the outer object). Fields are read-only outside proxy/.
 */
#ifndef LEVEE_PROXY_CONN_H
#define LEVEE_PROXY_CONN_H

#include "core/list.h"
#include "core/lv.h"
#include "core/time.h"
#include "core/types.h"
#include "event/loop.h"
#include "net/sbuf.h"

/*
 * Backpressure: once a peer has this much output queued, Levee stops reading
 * from the other side until it drains to LV_BACKPRESSURE_LOW.
 */
#define LV_BACKPRESSURE_HIGH (1024 * 1024)
#define LV_BACKPRESSURE_LOW (256 * 1024)

typedef enum lv_conn_kind {
	LV_CONN_CLIENT, /* an application connected to Levee */
	LV_CONN_SERVER, /* Levee connected to PostgreSQL */
} lv_conn_kind_t;

struct lv_conn {
	lv_sbuf_t sb;          /* the socket; cleaned up when the object is freed */
	uint64_t id;           /* unique per process; shown as C-<id> / S-<id> */
	lv_conn_kind_t kind;
	lv_worker_t *worker;   /* owner; never changes */
	lv_list_t node;        /* on the list of its current state */
	lv_deferred_t reap;    /* on the loop's closing list once closed */
	char addr[48];         /* peer address text */
	int port;              /* peer port, 0 for unix sockets */
	lv_usec_t connect_time; /* monotonic */
	lv_usec_t wall_connect_time; /* wall clock, for SHOW */
	const char *action;    /* what it is doing, for log lines ("while logging in") */
};

/* Installs the log prefix hook that formats C-<id>/S-<id> with db/user/peer. */
void lv_conn_log_init(void);

#endif
