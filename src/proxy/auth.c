/* SPDX-License-Identifier: ISC */
/*
 * Client authentication; see auth.h. Owns the per-client exchange state
 * (c->scram, c->md5_secret) from lv_auth_start() until lv_auth_cleanup().
 * Secrets are copied out of the config generation, so a reload during an
 * exchange cannot leave a dangling pointer.
 */
#include "proxy/auth.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "proxy/client.h"
#include "proxy/pool.h"
#include "proxy/worker.h"
#include "wire/read.h"
#include "wire/scram.h"
#include "wire/sqlstate.h"
#include "wire/write.h"

#include <pthread.h>

static uint8_t mock_key[LV_SCRAM_KEY_LEN];
static pthread_once_t mock_once = PTHREAD_ONCE_INIT;

static void mock_init(void)
{
	if (lv_scram_random(mock_key, sizeof(mock_key)) != 0)
		lv_fatal("could not get random bytes for the SCRAM mock key");
}

static void auth_failed(lv_client_t *c, const char *why)
{
	lv_metric_inc_l(LV_M_CLIENT_CONNECTIONS_REFUSED_TOTAL, LV_ML_REFUSE_REASON_AUTH);
	lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CLIENT_AUTH);
	lv_clog_info(c, "authentication failed: %s", why);
	/* One message for every cause, as PostgreSQL does. */
	lv_client_close(c, LV_SQLSTATE_INVALID_PASSWORD, "levee: password authentication failed for user \"%s\"", c->user);
}

static void send_buf(lv_client_t *c, lv_buf_t *b, bool ok)
{
	if (!ok) {
		lv_buf_cleanup(b);
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	(void)lv_client_send(c, b->data, b->len);
	lv_buf_cleanup(b);
}

static void start_scram(lv_client_t *c, const char *secret_text, const char *plain)
{
	c->scram = lv_calloc(1, sizeof(lv_scram_server_t));
	c->scram_secret = lv_calloc(1, sizeof(lv_scram_secret_t));
	if (!c->scram || !c->scram_secret) {
		lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
		return;
	}
	lv_scram_server_init(c->scram);
	c->user_known = false;
	if (secret_text && lv_scram_parse_secret(secret_text, c->scram_secret) == 0)
		c->user_known = true;
	else if (plain && lv_scram_secret_from_password(plain, c->scram_secret) == 0)
		c->user_known = true;
	static const char *const mechs[] = {"SCRAM-SHA-256", NULL};
	lv_buf_t b;
	lv_buf_init(&b);
	c->auth_phase = LV_AUTHP_SCRAM_FIRST;
	send_buf(c, &b, lv_wire_write_auth_sasl(&b, mechs));
}

static void start_md5(lv_client_t *c, const char *secret)
{
	if (secret) {
		c->md5_secret = lv_strdup(secret);
		if (!c->md5_secret) {
			lv_client_close(c, LV_SQLSTATE_OUT_OF_MEMORY, "levee: out of memory");
			return;
		}
		c->user_known = true;
	}
	if (lv_scram_random(c->md5_salt, sizeof(c->md5_salt)) != 0) {
		lv_client_close(c, LV_SQLSTATE_INTERNAL_ERROR, "levee: no random bytes");
		return;
	}
	lv_buf_t b;
	lv_buf_init(&b);
	c->auth_phase = LV_AUTHP_PASSWORD;
	send_buf(c, &b, lv_wire_write_auth_md5(&b, c->md5_salt));
}

void lv_auth_start(lv_client_t *c)
{
	lv_config_t *cfg = c->conn.worker->cfg;
	pthread_once(&mock_once, mock_init);
	int type = cfg->levee.auth_type;
	if (type == LV_AUTH_TRUST) {
		lv_client_authenticated(c);
		return;
	}
	const lv_auth_entry_t *e = lv_config_find_auth(cfg, c->user);
	if (type == LV_AUTH_SCRAM) {
		if (!e)
			start_scram(c, NULL, NULL);
		else if (e->kind == LV_SECRET_SCRAM)
			start_scram(c, e->secret, NULL);
		else if (e->kind == LV_SECRET_PLAIN)
			start_scram(c, NULL, e->secret);
		else {
			lv_clog_warn(c, "user \"%s\" has an md5 secret; auth_type = scram-sha-256 needs a SCRAM or plain one",
				     c->user);
			start_scram(c, NULL, NULL);
		}
		return;
	}
	/* md5: SCRAM when the stored secret is a SCRAM secret, as PostgreSQL does. */
	if (e && e->kind == LV_SECRET_SCRAM)
		start_scram(c, e->secret, NULL);
	else
		start_md5(c, e ? e->secret : NULL);
}

static void scram_first(lv_client_t *c, const uint8_t *body, size_t len)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	const char *mech = lv_wire_get_cstr(&r, NULL);
	int32_t n = lv_wire_get_i32(&r);
	const uint8_t *data = n >= 0 ? lv_wire_get_bytes(&r, (size_t)n) : NULL;
	if (!lv_wire_reader_done(&r) || !data) {
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CLIENT_PROTOCOL);
		lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION, "levee: malformed SASLInitialResponse");
		return;
	}
	if (strcmp(mech, "SCRAM-SHA-256") != 0) {
		lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION,
				"levee: client selected an invalid SASL authentication mechanism");
		return;
	}
	lv_buf_t out;
	lv_buf_init(&out);
	lv_err_t err = {0};
	int rc = c->user_known
			 ? lv_scram_server_first(c->scram, c->scram_secret, data, (size_t)n, &out, &err)
			 : lv_scram_server_first_mock(c->scram, c->user, mock_key, data, (size_t)n, &out, &err);
	if (rc != 0) {
		lv_buf_cleanup(&out);
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CLIENT_PROTOCOL);
		lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION, "levee: %s", err.msg);
		return;
	}
	lv_buf_t b;
	lv_buf_init(&b);
	c->auth_phase = LV_AUTHP_SCRAM_FINAL;
	bool ok = lv_wire_write_auth_sasl_continue(&b, out.data, out.len);
	lv_buf_cleanup(&out);
	send_buf(c, &b, ok);
}

static void scram_final(lv_client_t *c, const uint8_t *body, size_t len)
{
	lv_buf_t out;
	lv_buf_init(&out);
	lv_err_t err = {0};
	int rc = lv_scram_server_final(c->scram, body, len, &out, &err);
	if (rc != 0 || !c->user_known) {
		lv_buf_cleanup(&out);
		auth_failed(c, c->user_known ? err.msg : "unknown user");
		return;
	}
	lv_buf_t b;
	lv_buf_init(&b);
	bool ok = lv_wire_write_auth_sasl_final(&b, out.data, out.len);
	lv_buf_cleanup(&out);
	send_buf(c, &b, ok);
	if (c->state != LV_CLIENT_CLOSING)
		lv_client_authenticated(c);
}

static void md5_response(lv_client_t *c, const uint8_t *body, size_t len)
{
	lv_wire_reader_t r;
	lv_wire_reader_init(&r, body, len);
	const char *resp = lv_wire_get_cstr(&r, NULL);
	if (!lv_wire_reader_done(&r)) {
		lv_metric_inc_l(LV_M_ERRORS_TOTAL, LV_ML_ERROR_KIND_CLIENT_PROTOCOL);
		lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION, "levee: malformed password message");
		return;
	}
	if (!c->user_known) {
		auth_failed(c, "unknown user");
		return;
	}
	if (!lv_md5_verify(c->user, c->md5_secret, c->md5_salt, resp)) {
		auth_failed(c, "wrong password");
		return;
	}
	lv_client_authenticated(c);
}

void lv_auth_input(lv_client_t *c, const uint8_t *body, size_t len)
{
	switch (c->auth_phase) {
	case LV_AUTHP_PASSWORD:
		md5_response(c, body, len);
		return;
	case LV_AUTHP_SCRAM_FIRST:
		scram_first(c, body, len);
		return;
	case LV_AUTHP_SCRAM_FINAL:
		scram_final(c, body, len);
		return;
	case LV_AUTHP_NONE:
	case LV_AUTHP_DONE:
		break;
	}
	lv_client_close(c, LV_SQLSTATE_PROTOCOL_VIOLATION, "levee: unexpected password message");
}

void lv_auth_export_keys(lv_client_t *c, lv_pool_t *pool)
{
	if (!c->scram || !c->user_known || c->scram->state != LV_SCRAM_DONE)
		return;
	memcpy(pool->scram_client_key, c->scram->client_key, LV_SCRAM_KEY_LEN);
	memcpy(pool->scram_server_key, c->scram_secret->server_key, LV_SCRAM_KEY_LEN);
	pool->has_scram_keys = true;
}

void lv_auth_cleanup(lv_client_t *c)
{
	if (c->scram) {
		lv_scram_server_cleanup(c->scram);
		lv_free(c->scram);
		c->scram = NULL;
	}
	if (c->scram_secret) {
		memset(c->scram_secret, 0, sizeof(*c->scram_secret));
		lv_free(c->scram_secret);
		c->scram_secret = NULL;
	}
	if (c->md5_secret) {
		memset(c->md5_secret, 0, strlen(c->md5_secret));
		lv_free(c->md5_secret);
		c->md5_secret = NULL;
	}
}
