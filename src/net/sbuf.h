/* SPDX-License-Identifier: ISC */
/*
 * Stream buffer: one socket, plain or TLS, with its input and output
 * buffers (a libevent bufferevent underneath). It deals in bytes: framing,
 * backpressure and moving bytes between two sockets without copying. The
 * protocol layer above (proxy/client.c, proxy/server.c) gets one callback per
 * event and pulls whole messages with the peek and forward helpers.
 *
 * Callback contract: cb(sb, event, arg) is called from the loop. READ means
 * new bytes are in the input buffer; the callback consumes what it can and
 * leaves partial messages there. The callback may close the owner (which
 * calls lv_sbuf_cleanup() via a deferred free) but must not touch sb after
 * doing so. TLS lives behind tls.c; this file never includes OpenSSL.
 */
#ifndef LEVEE_NET_SBUF_H
#define LEVEE_NET_SBUF_H

#include "core/buf.h"
#include "core/lv.h"
#include "core/status.h"
#include "net/addr.h"

#include <event2/event_struct.h>

struct event_base;
struct bufferevent;
struct ssl_st;

typedef enum lv_sbuf_event {
	LV_SBUF_EV_READ,      /* bytes arrived */
	LV_SBUF_EV_CONNECTED, /* outgoing connect (or TLS handshake) completed */
	LV_SBUF_EV_DRAINED,   /* output fell below the low-water mark after lv_sbuf_watch_drain() */
	LV_SBUF_EV_EOF,       /* peer closed */
	LV_SBUF_EV_ERROR,     /* socket or TLS error; lv_sbuf_error() says which */
} lv_sbuf_event_t;

typedef struct lv_sbuf lv_sbuf_t;
typedef void (*lv_sbuf_cb)(lv_sbuf_t *sb, lv_sbuf_event_t ev, void *arg);

struct lv_sbuf {
	int fd;                  /* owned; closed by lv_sbuf_cleanup() */
	lv_sbuf_cb cb;
	void *arg;
	/* Plain sockets (bev == NULL). */
	struct event rev;        /* readable; added unless paused */
	struct event *wev;       /* writable; created when first needed (an idle connection has none),
				    added only while output is queued or connecting */
	lv_buf_t in;             /* unread input; may point into the thread's scratch buffer */
	lv_buf_t out;            /* output the kernel did not take yet */
	/* TLS sockets. */
	struct bufferevent *bev; /* owned; NULL for plain sockets */
	bool is_tls;
	bool paused;             /* no READ/EOF/ERROR-on-read events until resumed */
	bool connecting;         /* outgoing connect in progress */
	bool want_drain;         /* a DRAINED event is wanted at drain_low */
	bool drain_due;          /* output is already below drain_low: report it */
	bool pending_error;      /* a write failed: report ERROR from the loop */
	bool in_scratch;         /* in.data is the thread's scratch buffer */
	bool wev_on;             /* wev is added */
	bool events_assigned;    /* rev and wev are initialised */
	bool kicked;             /* a READ event is due even without new bytes */
	size_t drain_low;
	int last_errno;
};

/* Takes ownership of fd and starts reading. Returns false on OOM (fd is then closed). */
bool lv_sbuf_init(lv_sbuf_t *sb, struct event_base *base, int fd, lv_sbuf_cb cb, void *arg) LV_MUSTCHECK;
/* Starts a non-blocking connect to addr; CONNECTED or ERROR follows. */
bool lv_sbuf_connect(lv_sbuf_t *sb, struct event_base *base, const lv_addr_t *addr, lv_sbuf_cb cb,
		     void *arg, lv_err_t *err) LV_MUSTCHECK;
/* Frees the bufferevent and closes the socket. Safe to call twice. */
void lv_sbuf_cleanup(lv_sbuf_t *sb);

/*
 * Switches the socket to TLS; takes ownership of ssl. The input buffer must
 * be empty (the caller checks: bytes sent before the handshake are never
 * protocol). accepting: server side. CONNECTED follows a finished handshake.
 */
bool lv_sbuf_start_tls(lv_sbuf_t *sb, struct event_base *base, struct ssl_st *ssl, bool accepting) LV_MUSTCHECK;

size_t lv_sbuf_avail(const lv_sbuf_t *sb);
/* Copies n bytes at offset off of the input without consuming; false if fewer are there. */
bool lv_sbuf_peek(const lv_sbuf_t *sb, size_t off, void *out, size_t n);
/* Removes n bytes of input into out. */
bool lv_sbuf_read(lv_sbuf_t *sb, void *out, size_t n);
/* Discards n bytes of input. */
void lv_sbuf_skip(lv_sbuf_t *sb, size_t n);
/*
 * Returns a pointer to the first n input bytes made contiguous, or NULL if
 * fewer than n are buffered. Valid until the input changes.
 */
const uint8_t *lv_sbuf_pullup(lv_sbuf_t *sb, size_t n);

/*
 * Returns a pointer to n input bytes at offset off without copying, or NULL
 * when fewer are buffered or they are not contiguous (TLS sockets).
 */
const uint8_t *lv_sbuf_ptr(const lv_sbuf_t *sb, size_t off, size_t n);

/* Queues data for sending. False on OOM. */
bool lv_sbuf_write(lv_sbuf_t *sb, const void *data, size_t n) LV_MUSTCHECK;
/* Moves n input bytes of src to the output of dst without copying. */
bool lv_sbuf_forward(lv_sbuf_t *src, lv_sbuf_t *dst, size_t n) LV_MUSTCHECK;
size_t lv_sbuf_pending_out(const lv_sbuf_t *sb);

void lv_sbuf_pause(lv_sbuf_t *sb);
void lv_sbuf_resume(lv_sbuf_t *sb);
/* Writes pending plain-text output now, as far as the socket takes it (no-op for TLS). */
void lv_sbuf_flush_now(lv_sbuf_t *sb);
/* Schedules a READ callback for the bytes already buffered (after this callback returns). */
void lv_sbuf_kick(lv_sbuf_t *sb);
/* Asks for one DRAINED event once pending output falls to low bytes. */
void lv_sbuf_watch_drain(lv_sbuf_t *sb, size_t low);

/* Frees the calling thread's read scratch buffer; call when its loop is done. */
void lv_sbuf_thread_cleanup(void);
/* Text of the last socket or TLS error, for logs and client messages. */
const char *lv_sbuf_error(const lv_sbuf_t *sb, char *buf, size_t cap);

#endif
