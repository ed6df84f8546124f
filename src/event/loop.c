/* SPDX-License-Identifier: ISC */
/*
 * Per-thread event loop. Owns the event_base, the mailbox (a mutex-protected
 * FIFO of messages plus an eventfd that a poster writes when it finds the
 * FIFO empty), and the closing list of deferred frees. Objects closed inside
 * a callback are put on the closing list and freed after the iteration, so
 * no callback ever runs on freed memory (PgBouncer's "just freed" lists,
 * libuv's uv_close()).
 *
 * Only the loop's own thread touches its event_base: other threads reach it
 * through the mailbox, whose wakeup is our eventfd, not event_active(). So
 * the base is created without libevent's locks (EVENT_BASE_FLAG_NOLOCK),
 * which would otherwise be taken around every event_add(), event_del() and
 * callback on the hot path.
 */
#include "event/loop.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/time.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct lv_msg {
	lv_list_t node;
	lv_loop_msg_fn fn;
	void *arg;
} lv_msg_t;

struct lv_loop {
	struct event_base *base;
	struct event *mail_ev; /* reads mail_fd */
	int mail_fd;           /* eventfd: written by lv_loop_post() when mail was empty */
	pthread_mutex_t mail_lock;
	lv_list_t mail;    /* lv_msg_t, protected by mail_lock */
	lv_list_t closing; /* lv_deferred_t, loop thread only */
	volatile int stop;
};

bool lv_loop_global_init(void)
{
	return evthread_use_pthreads() == 0;
}

static void run_mail(lv_loop_t *loop)
{
	lv_list_t batch;
	lv_list_init(&batch);
	pthread_mutex_lock(&loop->mail_lock);
	if (!lv_list_empty(&loop->mail)) {
		batch.next = loop->mail.next;
		batch.prev = loop->mail.prev;
		batch.next->prev = &batch;
		batch.prev->next = &batch;
		lv_list_init(&loop->mail);
	}
	pthread_mutex_unlock(&loop->mail_lock);

	lv_list_t *pos;
	while ((pos = lv_list_first(&batch)) != NULL) {
		lv_msg_t *m = lv_container_of(pos, lv_msg_t, node);
		lv_list_unlink(pos);
		m->fn(m->arg);
		lv_free(m);
	}
}

static void mail_cb(evutil_socket_t fd, short what, void *arg)
{
	/* Read the counter before taking the batch: a message posted after this
	 * read writes the counter again, so none is left without a wakeup. */
	uint64_t n;
	while (read((int)fd, &n, sizeof(n)) < 0 && errno == EINTR)
		;
	run_mail(arg);
}

/* Makes the loop's mail event fire. Any thread; an eventfd write only fails when the
 * counter is at its maximum, and then the loop is already due to wake. */
static void wake(lv_loop_t *loop)
{
	uint64_t one = 1;
	while (write(loop->mail_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

lv_loop_t *lv_loop_new(void)
{
	lv_loop_t *loop = lv_calloc(1, sizeof(*loop));
	if (!loop)
		return NULL;
	struct event_config *ec = event_config_new();
	if (ec && event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK) == 0)
		loop->base = event_base_new_with_config(ec);
	event_config_free(ec);
	loop->mail_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->base && loop->mail_fd >= 0)
		loop->mail_ev = event_new(loop->base, loop->mail_fd, EV_READ | EV_PERSIST, mail_cb,
					  loop);
	if (!loop->mail_ev || event_add(loop->mail_ev, NULL) != 0) {
		if (loop->mail_ev)
			event_free(loop->mail_ev);
		if (loop->mail_fd >= 0)
			close(loop->mail_fd);
		if (loop->base)
			event_base_free(loop->base);
		lv_free(loop);
		return NULL;
	}
	pthread_mutex_init(&loop->mail_lock, NULL);
	lv_list_init(&loop->mail);
	lv_list_init(&loop->closing);
	return loop;
}

static void run_deferred(lv_loop_t *loop)
{
	lv_list_t *pos;
	while ((pos = lv_list_first(&loop->closing)) != NULL) {
		lv_deferred_t *d = lv_container_of(pos, lv_deferred_t, node);
		lv_list_unlink(pos);
		d->fn(d);
	}
}

void lv_loop_free(lv_loop_t *loop)
{
	if (!loop)
		return;
	/* Messages may post messages (a stop, say): run until the mailbox stays empty. */
	for (int i = 0; i < 8; i++) {
		run_mail(loop);
		run_deferred(loop);
		pthread_mutex_lock(&loop->mail_lock);
		bool empty = lv_list_empty(&loop->mail);
		pthread_mutex_unlock(&loop->mail_lock);
		if (empty)
			break;
	}
	event_free(loop->mail_ev);
	close(loop->mail_fd);
	event_base_free(loop->base);
	pthread_mutex_destroy(&loop->mail_lock);
	lv_free(loop);
}

struct event_base *lv_loop_base(lv_loop_t *loop)
{
	return loop->base;
}

void lv_loop_run(lv_loop_t *loop)
{
	while (!__atomic_load_n(&loop->stop, __ATOMIC_ACQUIRE)) {
		lv_time_update();
		lv_time_mark_stale(); /* the wait: its first I/O callback reads the clock again */
		event_base_loop(loop->base, EVLOOP_ONCE);
		lv_time_update();
		run_deferred(loop);
	}
	run_deferred(loop);
}

void lv_loop_stop(lv_loop_t *loop)
{
	__atomic_store_n(&loop->stop, 1, __ATOMIC_RELEASE);
	wake(loop); /* it notices after the iteration this ends */
}

void lv_loop_defer(lv_loop_t *loop, lv_deferred_t *d)
{
	lv_list_insert_tail(&loop->closing, &d->node);
}

bool lv_loop_post(lv_loop_t *loop, lv_loop_msg_fn fn, void *arg)
{
	lv_msg_t *m = lv_malloc(sizeof(*m));
	if (!m)
		return false;
	m->fn = fn;
	m->arg = arg;
	pthread_mutex_lock(&loop->mail_lock);
	bool first = lv_list_empty(&loop->mail);
	lv_list_insert_tail(&loop->mail, &m->node);
	pthread_mutex_unlock(&loop->mail_lock);
	/* A non-empty mailbox has had its wakeup written and not yet taken (mail_cb
	 * reads the counter before it empties the mailbox). */
	if (first)
		wake(loop);
	return true;
}
