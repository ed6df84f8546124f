/* SPDX-License-Identifier: ISC */
/*
 * Stream buffers over libevent bufferevents; see sbuf.h. Each lv_sbuf_t is
 * embedded in a connection and owns one socket and one bufferevent (a plain
 * socket one, replaced by an OpenSSL one on STARTTLS-style upgrades). Bytes
 * move from one socket to another with evbuffer_remove_buffer(), which hands
 * over whole chains where it can instead of copying.
 */
#include "net/sbuf.h"
#include "net/listener.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <unistd.h>

#define SBUF_MAX_SINGLE_READ (64 * 1024)

static void read_cb(struct bufferevent *bev, void *arg)
{
	lv_sbuf_t *sb = arg;
	sb->cb(sb, LV_SBUF_EV_READ, sb->arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	lv_sbuf_t *sb = arg;
	if (sb->want_drain) {
		sb->want_drain = false;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		sb->cb(sb, LV_SBUF_EV_DRAINED, sb->arg);
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	lv_sbuf_t *sb = arg;
	if (what & BEV_EVENT_CONNECTED)
		sb->cb(sb, LV_SBUF_EV_CONNECTED, sb->arg);
	else if (what & BEV_EVENT_EOF)
		sb->cb(sb, LV_SBUF_EV_EOF, sb->arg);
	else if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		sb->cb(sb, LV_SBUF_EV_ERROR, sb->arg);
}

static bool attach(lv_sbuf_t *sb, struct bufferevent *bev)
{
	if (!bev)
		return false;
	sb->bev = bev;
	bufferevent_setcb(bev, read_cb, write_cb, event_cb, sb);
	bufferevent_set_max_single_read(bev, SBUF_MAX_SINGLE_READ);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	return true;
}

bool lv_sbuf_init(lv_sbuf_t *sb, struct event_base *base, int fd, lv_sbuf_cb cb, void *arg)
{
	memset(sb, 0, sizeof(*sb));
	sb->fd = fd;
	sb->cb = cb;
	sb->arg = arg;
	if (!attach(sb, bufferevent_socket_new(base, fd, 0))) {
		close(fd);
		sb->fd = -1;
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
	if (!attach(sb, bufferevent_socket_new(base, fd, 0))) {
		close(fd);
		sb->fd = -1;
		lv_err_set(err, LV_ENOMEM, "out of memory");
		return false;
	}
	/* A connect on a non-blocking socket completes when it becomes writable. */
	struct bufferevent *bev = sb->bev;
	bufferevent_disable(bev, EV_READ);
	bufferevent_setcb(bev, read_cb, NULL, event_cb, sb);
	if (bufferevent_socket_connect(bev, NULL, 0) < 0) {
		lv_err_set(err, LV_EIO, "connect failed");
		lv_sbuf_cleanup(sb);
		return false;
	}
	bufferevent_setcb(bev, read_cb, write_cb, event_cb, sb);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	return true;
}

void lv_sbuf_cleanup(lv_sbuf_t *sb)
{
	if (sb->bev) {
		bufferevent_free(sb->bev);
		sb->bev = NULL;
		/* A TLS bufferevent owns its SSL object and closes the socket itself. */
		if (sb->is_tls)
			sb->fd = -1;
	}
	if (sb->fd >= 0) {
		close(sb->fd);
		sb->fd = -1;
	}
}

bool lv_sbuf_start_tls(lv_sbuf_t *sb, struct event_base *base, struct ssl_st *ssl, bool accepting)
{
	struct bufferevent *plain = sb->bev;
	struct bufferevent *tls = bufferevent_openssl_socket_new(
		base, sb->fd, ssl, accepting ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
		BEV_OPT_CLOSE_ON_FREE);
	if (!tls)
		return false;
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	bufferevent_free(plain);
	sb->is_tls = true;
	return attach(sb, tls);
}

size_t lv_sbuf_avail(const lv_sbuf_t *sb)
{
	return evbuffer_get_length(bufferevent_get_input(sb->bev));
}

bool lv_sbuf_peek(const lv_sbuf_t *sb, size_t off, void *out, size_t n)
{
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

bool lv_sbuf_read(lv_sbuf_t *sb, void *out, size_t n)
{
	return evbuffer_remove(bufferevent_get_input(sb->bev), out, n) == (int)n;
}

void lv_sbuf_skip(lv_sbuf_t *sb, size_t n)
{
	evbuffer_drain(bufferevent_get_input(sb->bev), n);
}

const uint8_t *lv_sbuf_pullup(lv_sbuf_t *sb, size_t n)
{
	struct evbuffer *in = bufferevent_get_input(sb->bev);
	if (evbuffer_get_length(in) < n)
		return NULL;
	return evbuffer_pullup(in, (ev_ssize_t)n);
}

bool lv_sbuf_write(lv_sbuf_t *sb, const void *data, size_t n)
{
	if (bufferevent_write(sb->bev, data, n) < 0)
		return false;
	sb->bytes_out += n;
	return true;
}

bool lv_sbuf_forward(lv_sbuf_t *src, lv_sbuf_t *dst, size_t n)
{
	int moved = evbuffer_remove_buffer(bufferevent_get_input(src->bev),
					   bufferevent_get_output(dst->bev), n);
	if (moved != (int)n)
		return false;
	dst->bytes_out += n;
	return true;
}

size_t lv_sbuf_pending_out(const lv_sbuf_t *sb)
{
	return evbuffer_get_length(bufferevent_get_output(sb->bev));
}

void lv_sbuf_pause(lv_sbuf_t *sb)
{
	bufferevent_disable(sb->bev, EV_READ);
}

void lv_sbuf_resume(lv_sbuf_t *sb)
{
	bufferevent_enable(sb->bev, EV_READ);
}

void lv_sbuf_flush_now(lv_sbuf_t *sb)
{
	if (!sb->bev || sb->is_tls || sb->fd < 0)
		return;
	struct evbuffer *out = bufferevent_get_output(sb->bev);
	if (evbuffer_get_length(out) > 0 && evbuffer_write(out, sb->fd) < 0 && errno != EAGAIN)
		evbuffer_drain(out, evbuffer_get_length(out));
}

void lv_sbuf_kick(lv_sbuf_t *sb)
{
	bufferevent_trigger(sb->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void lv_sbuf_watch_drain(lv_sbuf_t *sb, size_t low)
{
	sb->want_drain = true;
	bufferevent_setwatermark(sb->bev, EV_WRITE, low, 0);
}

const char *lv_sbuf_error(const lv_sbuf_t *sb, char *buf, size_t cap)
{
	int err = EVUTIL_SOCKET_ERROR();
	if (sb->is_tls && sb->bev) {
		unsigned long e = bufferevent_get_openssl_error(sb->bev);
		if (e) {
			snprintf(buf, cap, "TLS error %lu", e);
			return buf;
		}
	}
	snprintf(buf, cap, "%s", err ? evutil_socket_error_to_string(err) : "connection closed");
	return buf;
}
