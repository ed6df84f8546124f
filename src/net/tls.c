/* SPDX-License-Identifier: ISC */
/* OpenSSL contexts; see tls.h. Process lifetime; created before workers start. */
#include "net/tls.h"
#include "core/mem.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

struct lv_tls_ctx {
	SSL_CTX *ctx;
};

static int ssl_err(lv_err_t *err, const char *what)
{
	char buf[160];
	ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
	return lv_err_set(err, LV_EIO, "%s: %s", what, buf);
}

/* Takes ownership of ctx: wrapped, or freed on OOM. */
static lv_tls_ctx_t *wrap(SSL_CTX *ctx, lv_err_t *err)
{
	lv_tls_ctx_t *t = lv_malloc(sizeof(*t));
	if (!t) {
		SSL_CTX_free(ctx);
		lv_err_set(err, LV_ENOMEM, "out of memory");
		return NULL;
	}
	t->ctx = ctx;
	return t;
}

lv_tls_ctx_t *lv_tls_server_new(const char *cert_file, const char *key_file, const char *ca_file, lv_err_t *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		ssl_err(err, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		ssl_err(err, cert_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ssl_err(err, key_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (ca_file && *ca_file && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		ssl_err(err, ca_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return wrap(ctx, err);
}

lv_tls_ctx_t *lv_tls_client_new(const char *ca_file, lv_err_t *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		ssl_err(err, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (ca_file && *ca_file) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			ssl_err(err, ca_file);
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return wrap(ctx, err);
}

void lv_tls_free(lv_tls_ctx_t *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ctx);
	lv_free(ctx);
}

struct ssl_st *lv_tls_new_ssl(lv_tls_ctx_t *ctx)
{
	return SSL_new(ctx->ctx);
}
