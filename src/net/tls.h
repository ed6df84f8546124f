/* SPDX-License-Identifier: ISC */
/*
 * TLS contexts (OpenSSL 3). The server context terminates TLS from clients
 * (tls.cert_file / tls.key_file); the client context is used towards
 * PostgreSQL (server_tls, with optional verification against server_ca_file).
 * Contexts are created at startup and shared read-only by all workers, which
 * OpenSSL allows. Only this file includes OpenSSL's SSL headers.
 */
#ifndef LEVEE_NET_TLS_H
#define LEVEE_NET_TLS_H

#include "core/status.h"

struct ssl_st;
typedef struct lv_tls_ctx lv_tls_ctx_t;

/* Server-side context from PEM files; NULL with err set on failure. */
lv_tls_ctx_t *lv_tls_server_new(const char *cert_file, const char *key_file, const char *ca_file, lv_err_t *err);
/* Client-side context; verifies the server against ca_file when it is non-empty. */
lv_tls_ctx_t *lv_tls_client_new(const char *ca_file, lv_err_t *err);
void lv_tls_free(lv_tls_ctx_t *ctx);
/* A new SSL object for one connection, or NULL on OOM. Ownership passes to lv_sbuf_start_tls(). */
struct ssl_st *lv_tls_new_ssl(lv_tls_ctx_t *ctx);

#endif
