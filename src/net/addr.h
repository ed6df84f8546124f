/* SPDX-License-Identifier: ISC */
/* Socket address parsing and formatting: "host:port", "[v6]:port", "/unix/dir:port". */
#ifndef LEVEE_NET_ADDR_H
#define LEVEE_NET_ADDR_H

#include "core/status.h"

#include <sys/socket.h>

typedef struct lv_addr {
	struct sockaddr_storage ss;
	socklen_t len;
} lv_addr_t;

/*
 * Resolves host and port into out (numeric addresses, names via getaddrinfo,
 * or a unix socket directory when host starts with '/': the PostgreSQL
 * convention "<dir>/.s.PGSQL.<port>"). Returns 0 or LV_EINVAL with err set.
 */
int lv_addr_resolve(const char *host, int port, lv_addr_t *out, lv_err_t *err);
/* Parses "host:port" / "[v6]:port" / "/path" then resolves it. */
int lv_addr_parse(const char *spec, lv_addr_t *out, lv_err_t *err);
/* Writes "1.2.3.4", "::1" or "unix" into buf and returns the port (0 for unix). */
int lv_addr_format(const struct sockaddr *sa, char *buf, size_t cap);

#endif
