/* SPDX-License-Identifier: ISC */
/*
 * Stream buffers; see sbuf.h. Two I/O paths behind one interface:
 *
 *  - plain sockets use raw libevent events and our own buffers. Reads land
 *    in a per-thread 64 KiB scratch buffer; only bytes the owner leaves
 *    unconsumed (a partial message) are copied into the connection's own
 *    buffer, so an idle connection holds no buffer memory at all. Writes go
 *    straight to the socket with send(); only what the kernel does not take
 *    is queued, and only then is a write event registered. On the hot path a
 *    message costs one recv() and one send() and no epoll_ctl().
 *  - TLS sockets use libevent's OpenSSL bufferevent, which does the record
 *    layer; they are rarer and dominated by crypto anyway.
 *
 * Events are delivered to the owner's callback from the loop only, never from
 * inside an lv_sbuf_* call: an error found while writing is parked and
 * reported by the write event.
 */
#include "net/sbuf.h"
#include "core/time.h"
#include "core/mem.h"
#include "net/listener.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>

#define SBUF_SCRATCH_LEN (64 * 1024)
#define SBUF_MAX_READS 4 /* reads per wakeup: fairness between sockets */

static _Thread_local uint8_t *scratch;

static void raw_write_cb(evutil_socket_t fd, short what, void *arg);

/* ------------------------------------------------------------ raw sockets */

static void raw_update_write(lv_sbuf_t *sb)
{
	bool need = sb->connecting || lv_buf_unread(&sb->out) > 0 || sb->pending_error || sb->drain_due;
	if (need && !sb->wev) {
		sb->wev = event_new(event_get_base(&sb->rev), sb->fd, EV_WRITE | EV_PERSIST, raw_write_cb, sb);
		if (!sb->wev)
			return; /* out of memory: the output waits for the next write */
	}
	if (need && !sb->wev_on) {
		if (event_add(sb->wev, NULL) == 0)
			sb->wev_on = true;
	} else if (!need && sb->wev_on) {
		event_del(sb->wev);
		sb->wev_on = false;
	}
}

/* Keeps the owner's unread bytes when they sit in the shared scratch buffer. */
static bool adopt_scratch(lv_sbuf_t *sb)
{
	if (!sb->in_scratch)
		return true;
	sb->in_scratch = false;
	size_t left = lv_buf_unread(&sb->in);
	const uint8_t *from = sb->in.data + sb->in.pos;
	lv_buf_init(&sb->in);
	if (left == 0)
		return true;
	return lv_buf_append(&sb->in, from, left);
}

static void raw_read_cb(evutil_socket_t fd, short what, void *arg)
{
	lv_sbuf_t *sb = arg;
	bool eof = false, got = false;
	int err = 0;
	/* The loop's cached clock was read before it waited for this event: refresh it
	 * (once per loop turn), so timeouts and cache freshness are judged at the time the
	 * bytes arrived. */
	lv_time_refresh();
	if (!scratch) {
		scratch = lv_malloc(SBUF_SCRATCH_LEN);
		if (!scratch) {
			sb->last_errno = ENOMEM;
			sb->cb(sb, LV_SBUF_EV_ERROR, sb->arg);
			return;
		}
	}
	/* A kick delivers the bytes already held; it does not read. New bytes wake
	 * the event again (level-triggered), so they wait one loop turn at most, and
	 * the kicked connection (typically a client whose request waited for a
	 * server) costs no recv() that finds nothing, and no 16 KiB buffer to
	 * grow its few held bytes into and free again. */
	for (int i = sb->kicked ? SBUF_MAX_READS : 0; i < SBUF_MAX_READS; i++) {
		ssize_t n;
		size_t room;
		if (lv_buf_unread(&sb->in) == 0 && !sb->in_scratch) {
			/* Nothing pending: read into the shared scratch buffer. */
			lv_buf_cleanup(&sb->in);
			sb->in.data = scratch;
			sb->in.cap = SBUF_SCRATCH_LEN;
			sb->in.len = sb->in.pos = 0;
			sb->in_scratch = true;
		} else if (!sb->in_scratch && !lv_buf_reserve(&sb->in, 16 * 1024)) {
			err = ENOMEM;
			break;
		}
		room = sb->in.cap - sb->in.len;
		if (room == 0)
			break;
		n = recv((int)fd, sb->in.data + sb->in.len, room, 0);
		if (n > 0) {
			sb->in.len += (size_t)n;
			got = true;
			if ((size_t)n < room)
				break;
			if (sb->in_scratch && !adopt_scratch(sb)) {
				err = ENOMEM;
				break;
			}
			continue;
		}
		if (n == 0) {
			eof = true;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			err = errno;
		break;
	}
	if (got || sb->kicked) {
		sb->kicked = false;
		sb->cb(sb, LV_SBUF_EV_READ, sb->arg);
	}
	/* The owner may have stopped listening (closed) in its callback. */
	if (sb->fd < 0)
		return;
	if (!adopt_scratch(sb) && !err)
		err = ENOMEM;
	if (sb->paused)
		return;
	if (err) {
		sb->last_errno = err;
		sb->cb(sb, LV_SBUF_EV_ERROR, sb->arg);
	} else if (eof) {
		sb->cb(sb, LV_SBUF_EV_EOF, sb->arg);
	}
}

/* Sends queued output; returns false on a socket error (saved in last_errno). */
static bool raw_flush(lv_sbuf_t *sb)
{
	while (lv_buf_unread(&sb->out) > 0) {
		ssize_t n = send(sb->fd, lv_buf_head(&sb->out), lv_buf_unread(&sb->out), MSG_NOSIGNAL);
		if (n > 0) {
			lv_buf_consume(&sb->out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		sb->last_errno = n < 0 ? errno : EPIPE;
		return false;
	}
	lv_buf_cleanup(&sb->out);
	return true;
}

static void raw_write_cb(evutil_socket_t fd, short what, void *arg)
{
	lv_sbuf_t *sb = arg;
	if (sb->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt((int)fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err == EINPROGRESS)
			return;
		sb->connecting = false;
		if (err) {
			sb->last_errno = err;
			raw_update_write(sb);
			sb->cb(sb, LV_SBUF_EV_ERROR, sb->arg);
			return;
		}
		if (event_add(&sb->rev, NULL) < 0) {
			sb->last_errno = ENOMEM;
			sb->cb(sb, LV_SBUF_EV_ERROR, sb->arg);
			return;
		}
		sb->cb(sb, LV_SBUF_EV_CONNECTED, sb->arg);
		if (sb->fd < 0)
			return;
	}
	if (sb->pending_error) {
		sb->pending_error = false;
		raw_update_write(sb);
		sb->cb(sb, LV_SBUF_EV_ERROR, sb->arg);
		return;
	}
	if (!raw_flush(sb)) {
		raw_update_write(sb);
		sb->cb(sb, LV_SBUF_EV_ERROR, sb->arg);
		return;
	}
	bool drained = sb->want_drain && lv_buf_unread(&sb->out) <= sb->drain_low;
	if (drained)
		sb->want_drain = false;
	sb->drain_due = false;
	raw_update_write(sb);
	if (drained)
		sb->cb(sb, LV_SBUF_EV_DRAINED, sb->arg);
}

static bool raw_attach(lv_sbuf_t *sb, struct event_base *base)
{
	if (event_assign(&sb->rev, base, sb->fd, EV_READ | EV_PERSIST, raw_read_cb, sb) < 0)
		return false;
	sb->events_assigned = true;
	return true;
}

/* ------------------------------------------------------------ TLS sockets */

static void tls_read_cb(struct bufferevent *bev, void *arg)
{
	lv_time_refresh(); /* as in raw_read_cb */
	lv_sbuf_t *sb = arg;
	sb->cb(sb, LV_SBUF_EV_READ, sb->arg);
}

static void tls_write_cb(struct bufferevent *bev, void *arg)
{
	lv_sbuf_t *sb = arg;
	if (sb->want_drain) {
		sb->want_drain = false;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		sb->cb(sb, LV_SBUF_EV_DRAINED, sb->arg);
	}
}

static void tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
	lv_sbuf_t *sb = arg;
	if (what & BEV_EVENT_CONNECTED) {
		sb->cb(sb, LV_SBUF_EV_CONNECTED, sb->arg);
	} else if (what & BEV_EVENT_EOF) {
		sb->cb(sb, LV_SBUF_EV_EOF, sb->arg);
	} else if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		sb->last_errno = EVUTIL_SOCKET_ERROR();
		sb->cb(sb, LV_SBUF_EV_ERROR, sb->arg);
	}
}

bool lv_sbuf_start_tls(lv_sbuf_t *sb, struct event_base *base, struct ssl_st *ssl, bool accepting)
{
	struct bufferevent *tls = bufferevent_openssl_socket_new(
		base, sb->fd, ssl, accepting ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
		BEV_OPT_CLOSE_ON_FREE);
	if (!tls)
		return false;
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	/* The raw path stops here: nothing is buffered at this point by protocol. */
	if (sb->events_assigned) {
		event_del(&sb->rev);
		sb->events_assigned = false;
	}
	if (sb->wev) {
		event_free(sb->wev);
		sb->wev = NULL;
		sb->wev_on = false;
	}
	adopt_scratch(sb);
	lv_buf_cleanup(&sb->in);
	lv_buf_cleanup(&sb->out);
	sb->bev = tls;
	sb->is_tls = true;
	bufferevent_setcb(tls, tls_read_cb, tls_write_cb, tls_event_cb, sb);
	bufferevent_set_max_single_read(tls, SBUF_SCRATCH_LEN);
	if (!sb->paused)
		bufferevent_enable(tls, EV_READ | EV_WRITE);
	else
		bufferevent_enable(tls, EV_WRITE);
	return true;
}

/* --------------------------------------------------------------- lifetime */

bool lv_sbuf_init(lv_sbuf_t *sb, struct event_base *base, int fd, lv_sbuf_cb cb, void *arg)
{
	memset(sb, 0, sizeof(*sb));
	sb->fd = fd;
	sb->cb = cb;
	sb->arg = arg;
	if (!raw_attach(sb, base) || event_add(&sb->rev, NULL) < 0) {
		lv_sbuf_cleanup(sb);
		return false;
	}
	return true;
}

bool lv_sbuf_connect(lv_sbuf_t *sb, struct event_base *base, const lv_addr_t *addr, lv_sbuf_cb cb,
		     void *arg, lv_err_t *err)
{
	memset(sb, 0, sizeof(*sb));
	sb->fd = -1;
	sb->cb = cb;
	sb->arg = arg;
	int fd = lv_connect_start(addr, err);
	if (fd < 0)
		return false;
	sb->fd = fd;
	sb->connecting = true;
	if (!raw_attach(sb, base)) {
		lv_sbuf_cleanup(sb);
		lv_err_set(err, LV_ENOMEM, "out of memory");
		return false;
	}
	raw_update_write(sb);
	return true;
}

void lv_sbuf_cleanup(lv_sbuf_t *sb)
{
	if (sb->bev) {
		/* A TLS bufferevent owns its SSL object and closes the socket itself. */
		bufferevent_free(sb->bev);
		sb->bev = NULL;
		sb->fd = -1;
	}
	if (sb->events_assigned) {
		event_del(&sb->rev);
		sb->events_assigned = false;
	}
	if (sb->wev) {
		event_free(sb->wev);
		sb->wev = NULL;
		sb->wev_on = false;
	}
	if (sb->fd >= 0) {
		close(sb->fd);
		sb->fd = -1;
	}
	if (sb->in_scratch)
		lv_buf_init(&sb->in);
	sb->in_scratch = false;
	lv_buf_cleanup(&sb->in);
	lv_buf_cleanup(&sb->out);
}

/* ------------------------------------------------------------------ input */

size_t lv_sbuf_avail(const lv_sbuf_t *sb)
{
	if (sb->bev)
		return evbuffer_get_length(bufferevent_get_input(sb->bev));
	return lv_buf_unread(&sb->in);
}

bool lv_sbuf_peek(const lv_sbuf_t *sb, size_t off, void *out, size_t n)
{
	if (sb->bev) {
		struct evbuffer *in = bufferevent_get_input(sb->bev);
		if (evbuffer_get_length(in) < off + n)
			return false;
		if (off == 0)
			return evbuffer_copyout(in, out, n) == (ev_ssize_t)n;
		struct evbuffer_ptr pos;
		if (evbuffer_ptr_set(in, &pos, off, EVBUFFER_PTR_SET) < 0)
			return false;
		return evbuffer_copyout_from(in, &pos, out, n) == (ev_ssize_t)n;
	}
	if (lv_buf_unread(&sb->in) < off + n)
		return false;
	memcpy(out, lv_buf_head(&sb->in) + off, n);
	return true;
}

bool lv_sbuf_read(lv_sbuf_t *sb, void *out, size_t n)
{
	if (sb->bev)
		return evbuffer_remove(bufferevent_get_input(sb->bev), out, n) == (int)n;
	if (lv_buf_unread(&sb->in) < n)
		return false;
	memcpy(out, lv_buf_head(&sb->in), n);
	lv_buf_consume(&sb->in, n);
	return true;
}

void lv_sbuf_skip(lv_sbuf_t *sb, size_t n)
{
	if (sb->bev) {
		evbuffer_drain(bufferevent_get_input(sb->bev), n);
		return;
	}
	lv_buf_consume(&sb->in, LV_MIN(n, lv_buf_unread(&sb->in)));
	if (lv_buf_unread(&sb->in) == 0 && !sb->in_scratch && sb->in.cap > SBUF_SCRATCH_LEN)
		lv_buf_cleanup(&sb->in);
}

const uint8_t *lv_sbuf_pullup(lv_sbuf_t *sb, size_t n)
{
	if (sb->bev) {
		struct evbuffer *in = bufferevent_get_input(sb->bev);
		if (evbuffer_get_length(in) < n)
			return NULL;
		return evbuffer_pullup(in, (ev_ssize_t)n);
	}
	if (lv_buf_unread(&sb->in) < n)
		return NULL;
	return lv_buf_head(&sb->in);
}

const uint8_t *lv_sbuf_ptr(const lv_sbuf_t *sb, size_t off, size_t n)
{
	if (sb->bev || lv_buf_unread(&sb->in) < off + n)
		return NULL;
	return lv_buf_head(&sb->in) + off;
}

/* ----------------------------------------------------------------- output */

bool lv_sbuf_write(lv_sbuf_t *sb, const void *data, size_t n)
{
	if (n == 0)
		return true;
	if (sb->bev) {
		if (bufferevent_write(sb->bev, data, n) < 0)
			return false;
		return true;
	}
	if (sb->fd < 0)
		return true;
	const uint8_t *p = data;
	if (lv_buf_unread(&sb->out) == 0 && !sb->connecting && !sb->pending_error) {
		/* Nothing queued: straight to the socket. */
		for (;;) {
			ssize_t w = send(sb->fd, p, n, MSG_NOSIGNAL);
			if (w > 0) {
				p += w;
				n -= (size_t)w;
				if (n == 0)
					return true;
				continue;
			}
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			/* Reported from the loop, not from inside the caller. */
			sb->last_errno = w < 0 ? errno : EPIPE;
			sb->pending_error = true;
			raw_update_write(sb);
			return true;
		}
	}
	if (!lv_buf_append(&sb->out, p, n))
		return false;
	raw_update_write(sb);
	return true;
}

bool lv_sbuf_forward(lv_sbuf_t *src, lv_sbuf_t *dst, size_t n)
{
	if (src->bev && dst->bev) {
		int moved = evbuffer_remove_buffer(bufferevent_get_input(src->bev), bufferevent_get_output(dst->bev), n);
		if (moved != (int)n)
			return false;
		return true;
	}
	const uint8_t *p = lv_sbuf_pullup(src, n);
	if (!p || !lv_sbuf_write(dst, p, n))
		return false;
	lv_sbuf_skip(src, n);
	return true;
}

size_t lv_sbuf_pending_out(const lv_sbuf_t *sb)
{
	if (sb->bev)
		return evbuffer_get_length(bufferevent_get_output(sb->bev));
	return lv_buf_unread(&sb->out);
}

void lv_sbuf_flush_now(lv_sbuf_t *sb)
{
	if (sb->bev || sb->fd < 0)
		return;
	if (!raw_flush(sb))
		lv_buf_cleanup(&sb->out);
	raw_update_write(sb);
}

/* ----------------------------------------------------------------- control */

void lv_sbuf_pause(lv_sbuf_t *sb)
{
	sb->paused = true;
	if (sb->bev)
		bufferevent_disable(sb->bev, EV_READ);
	else if (sb->events_assigned)
		event_del(&sb->rev);
}

void lv_sbuf_resume(lv_sbuf_t *sb)
{
	if (!sb->paused)
		return;
	sb->paused = false;
	if (sb->bev)
		bufferevent_enable(sb->bev, EV_READ);
	else if (sb->events_assigned && !sb->connecting && event_add(&sb->rev, NULL) < 0) {
		sb->last_errno = ENOMEM;
		sb->pending_error = true;
		raw_update_write(sb);
	}
}

void lv_sbuf_kick(lv_sbuf_t *sb)
{
	if (sb->bev) {
		bufferevent_trigger(sb->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
		return;
	}
	if (!sb->events_assigned)
		return;
	sb->kicked = true;
	event_active(&sb->rev, EV_READ, 0);
}

void lv_sbuf_watch_drain(lv_sbuf_t *sb, size_t low)
{
	sb->want_drain = true;
	sb->drain_low = low;
	if (sb->bev) {
		bufferevent_setwatermark(sb->bev, EV_WRITE, low, 0);
		return;
	}
	/* Already below the mark: say so from the loop. */
	if (lv_buf_unread(&sb->out) <= low)
		sb->drain_due = true;
	raw_update_write(sb);
}

void lv_sbuf_thread_cleanup(void)
{
	lv_free(scratch);
	scratch = NULL;
}

const char *lv_sbuf_error(const lv_sbuf_t *sb, char *buf, size_t cap)
{
	if (sb->bev) {
		unsigned long e = bufferevent_get_openssl_error(sb->bev);
		if (e) {
			snprintf(buf, cap, "TLS error %lu", e);
			return buf;
		}
	}
	snprintf(buf, cap, "%s", sb->last_errno ? strerror(sb->last_errno) : "connection closed");
	return buf;
}
