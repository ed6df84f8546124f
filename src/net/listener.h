/* SPDX-License-Identifier: ISC */
/*
 * Listening sockets. Each worker opens its own socket on every listen address
 * with SO_REUSEPORT, so the kernel spreads accepted connections over workers
 * and no accept lock exists. A unix socket path cannot be shared that way:
 * only worker 0 listens there.
 */
#ifndef LEVEE_NET_LISTENER_H
#define LEVEE_NET_LISTENER_H

#include "core/status.h"
#include "net/addr.h"

/* Opens a non-blocking listening socket; returns the fd or -1 with err set. */
int lv_listen_socket(const lv_addr_t *addr, bool reuseport, int backlog, lv_err_t *err);
/* Accepts one connection; returns the fd (non-blocking, TCP_NODELAY) or -1 (errno set). */
int lv_accept(int lfd, lv_addr_t *peer);
/* Starts a non-blocking connect; returns the fd or -1 with err set. */
int lv_connect_start(const lv_addr_t *addr, lv_err_t *err);

#endif
