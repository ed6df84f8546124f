/* SPDX-License-Identifier: ISC */
/* Signal events on the main loop; see signal.h. Process lifetime. */
#include "event/signal.h"
#include "core/mem.h"

#include <event2/event.h>
#include <signal.h>

struct lv_signals {
	struct event *ev[3];
	lv_signal_fn fn;
	void *arg;
};

static void signal_cb(evutil_socket_t signo, short what, void *arg)
{
	lv_signals_t *s = arg;
	s->fn((int)signo, s->arg);
}

lv_signals_t *lv_signals_new(lv_loop_t *loop, lv_signal_fn fn, void *arg)
{
	static const int signos[3] = {SIGHUP, SIGINT, SIGTERM};
	lv_signals_t *s = lv_calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->fn = fn;
	s->arg = arg;
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < 3; i++) {
		s->ev[i] = evsignal_new(lv_loop_base(loop), signos[i], signal_cb, s);
		if (!s->ev[i] || event_add(s->ev[i], NULL) < 0) {
			lv_signals_free(s);
			return NULL;
		}
	}
	return s;
}

void lv_signals_free(lv_signals_t *s)
{
	if (!s)
		return;
	for (int i = 0; i < 3; i++)
		if (s->ev[i])
			event_free(s->ev[i]);
	lv_free(s);
}
