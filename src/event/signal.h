/* SPDX-License-Identifier: ISC */
/*
 * Signals, handled on the main loop (never in a signal handler): SIGHUP
 * reloads, SIGINT shuts down gracefully, SIGTERM at once. SIGPIPE is ignored
 * (writes report EPIPE instead).
 */
#ifndef LEVEE_EVENT_SIGNAL_H
#define LEVEE_EVENT_SIGNAL_H

#include "event/loop.h"

typedef struct lv_signals lv_signals_t;
typedef void (*lv_signal_fn)(int signo, void *arg);

/* Routes SIGHUP, SIGINT and SIGTERM to fn on loop's thread; NULL on failure. */
lv_signals_t *lv_signals_new(lv_loop_t *loop, lv_signal_fn fn, void *arg);
void lv_signals_free(lv_signals_t *s);

#endif
