/* SPDX-License-Identifier: ISC */
/*
 * Client authentication against auth_file: trust, md5 and SCRAM-SHA-256,
 * chosen by auth_type and by the kind of secret stored for the user (as
 * PostgreSQL chooses: md5 with a SCRAM secret means SCRAM). An unknown user
 * goes through the same exchange with a mock secret and fails with the same
 * message as a wrong password, so the answer does not reveal who exists.
 *
 * Nothing a client sends reaches PostgreSQL before this succeeds.
 */
#ifndef LEVEE_PROXY_AUTH_H
#define LEVEE_PROXY_AUTH_H

#include "core/types.h"
#include "core/lv.h"

/* Starts authentication of c (its user is known); calls lv_client_authenticated() or closes. */
void lv_auth_start(lv_client_t *c);
/* Handles one PasswordMessage/SASL message body from c. */
void lv_auth_input(lv_client_t *c, const uint8_t *body, size_t len);
/* Hands SCRAM keys learnt from c's exchange to its pool, for server logins. */
void lv_auth_export_keys(lv_client_t *c, lv_pool_t *pool);
/* Frees auth state of c; safe to call twice. */
void lv_auth_cleanup(lv_client_t *c);

#endif
