/* SPDX-License-Identifier: ISC */
/*
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) and MD5 password authentication, both
 * sides, as PostgreSQL speaks them:
 *
 *  - server side, Levee authenticating a client against an auth_file secret:
 *    lv_scram_server_first() then lv_scram_server_final(). A successful
 *    exchange recovers the client's ClientKey, which together with the
 *    secret's ServerKey lets Levee log in to PostgreSQL as that user without
 *    knowing the password (the same secret must be stored in PostgreSQL);
 *  - client side, Levee authenticating to PostgreSQL: lv_scram_client_init()
 *    with a password, or lv_scram_client_init_keys() with the keys above,
 *    then client_first, client_continue and client_verify;
 *  - MD5: the "md5" + md5hex(md5hex(password || user) || salt) response, with
 *    stored secrets that are either plain or already "md5" + hex.
 *
 * All SCRAM messages here are the bare mechanism text, without wire framing
 * and without a NUL: the caller puts them in SASLInitialResponse,
 * AuthenticationSASLContinue and so on (wire/write.h). Incoming messages are
 * (pointer, length) and may contain anything; they are validated strictly.
 *
 * Passwords are used as given, without SASLprep. For ASCII passwords that is
 * exactly what PostgreSQL does; a non-ASCII password that SASLprep would
 * normalize will not match a secret PostgreSQL built from it.
 *
 * The state structs are plain values with no heap memory: embed them, zero
 * them (or call the init functions) before use, and call the cleanup
 * functions to wipe key material. Pure apart from drawing random bytes from
 * OpenSSL (RAND_bytes), which is thread-safe.
 */
#ifndef LEVEE_WIRE_SCRAM_H
#define LEVEE_WIRE_SCRAM_H

#include "core/lv.h"
#include "core/buf.h"
#include "core/secret.h"
#include "core/status.h"

#define LV_SCRAM_MECH "SCRAM-SHA-256"
#define LV_SCRAM_KEY_LEN 32              /* SHA-256 output */
#define LV_SCRAM_SALT_LEN 16             /* salts Levee generates (PostgreSQL's default) */
#define LV_SCRAM_MAX_SALT_LEN 64         /* longest salt accepted in a secret or message */
#define LV_SCRAM_ITERATIONS 4096         /* iterations Levee uses (PostgreSQL's default) */
#define LV_SCRAM_MAX_ITERATIONS 10000000 /* a server asking more is refused (CPU bound) */
#define LV_SCRAM_NONCE_RAW_LEN 18        /* random bytes per nonce (24 base64 chars) */
#define LV_SCRAM_MAX_NONCE_LEN 256       /* longest nonce accepted from the peer */
#define LV_SCRAM_MAX_MSG_LEN 512         /* longest first message accepted */
#define LV_SCRAM_MAX_PASSWORD_LEN 1023   /* longest password the client side keeps */
#define LV_SCRAM_MAX_USER_LEN 63         /* PostgreSQL's NAMEDATALEN - 1 */
#define LV_SCRAM_SECRET_MAX_LEN 256      /* buffer size that fits any formatted secret */

/* ------------------------------------------------------------------------
 * Secrets
 * ------------------------------------------------------------------------ */

/*
 * Classifies a stored password string (lv_secret_kind_t, shared with
 * config/, lives in core/secret.h) the way PostgreSQL's get_password_type()
 * does.
 */
lv_secret_kind_t lv_secret_kind(const char *secret);

/* A parsed SCRAM-SHA-256 secret. */
typedef struct lv_scram_secret {
	int iterations;
	size_t salt_len;
	uint8_t salt[LV_SCRAM_MAX_SALT_LEN];
	uint8_t stored_key[LV_SCRAM_KEY_LEN]; /* H(ClientKey) */
	uint8_t server_key[LV_SCRAM_KEY_LEN];
} lv_scram_secret_t;

/*
 * Parses "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64
 * ServerKey>". 0 on success; LV_EINVAL when anything is malformed.
 */
int lv_scram_parse_secret(const char *secret, lv_scram_secret_t *out);
/* Derives a secret from password, salt (1..LV_SCRAM_MAX_SALT_LEN bytes) and iterations (>= 1). */
int lv_scram_secret_derive(const char *password, const uint8_t *salt, size_t salt_len,
			   int iterations, lv_scram_secret_t *out);
/*
 * Derives a secret with a random LV_SCRAM_SALT_LEN-byte salt and
 * LV_SCRAM_ITERATIONS, for users whose auth_file entry is plain text.
 */
int lv_scram_secret_from_password(const char *password, lv_scram_secret_t *out);
/* Formats a secret as text into out[cap]; 0, or LV_ETOOBIG if cap is too small. */
int lv_scram_format_secret(const lv_scram_secret_t *secret, char *out, size_t cap);
/* lv_scram_secret_derive() then lv_scram_format_secret(): 0, LV_EINVAL, LV_ETOOBIG or LV_EIO. */
int lv_scram_build_secret(const char *password, const uint8_t *salt, size_t salt_len,
			  int iterations, char *out, size_t cap);
/* True if password matches the secret (constant-time compare of StoredKey). */
bool lv_scram_secret_check_password(const lv_scram_secret_t *secret, const char *password);

/* ------------------------------------------------------------------------
 * Exchange state
 * ------------------------------------------------------------------------ */

typedef enum lv_scram_state {
	LV_SCRAM_INIT = 0,   /* nothing exchanged yet; a zeroed struct is in this state */
	LV_SCRAM_FIRST_SENT, /* server: server-first produced; client: client-first */
	LV_SCRAM_FINAL_SENT, /* client only: client-final produced */
	LV_SCRAM_DONE,       /* the exchange succeeded */
	LV_SCRAM_FAILED,     /* an error ended the exchange; no call will succeed */
} lv_scram_state_t;

/* Server side: Levee checking a client's proof. */
typedef struct lv_scram_server {
	lv_scram_state_t state;
	bool is_mock;                                    /* unknown user: the exchange must fail */
	char cbind_flag;                                 /* gs2 flag the client sent: 'n' or 'y' */
	lv_scram_secret_t secret;                        /* copy of the user's secret */
	char nonce_override[LV_SCRAM_MAX_NONCE_LEN + 1]; /* test seam; "" for random */
	size_t auth_len;                                 /* bytes used in auth */
	size_t nonce_off;                                /* combined nonce: offset in auth */
	size_t nonce_len;                                /* combined nonce: length */
	char auth[2 * LV_SCRAM_MAX_MSG_LEN + 2];         /* client-first-bare "," server-first */
	uint8_t client_key[LV_SCRAM_KEY_LEN];            /* valid in LV_SCRAM_DONE */
} lv_scram_server_t;

/* Client side: Levee proving itself to PostgreSQL. */
typedef struct lv_scram_client {
	lv_scram_state_t state;
	bool has_keys;                                /* keys mode (no password) */
	char password[LV_SCRAM_MAX_PASSWORD_LEN + 1]; /* password mode only */
	uint8_t client_key[LV_SCRAM_KEY_LEN];         /* given (keys mode) or derived */
	uint8_t server_key[LV_SCRAM_KEY_LEN];         /* given (keys mode) or derived */
	uint8_t server_signature[LV_SCRAM_KEY_LEN];   /* expected, valid in FINAL_SENT */
	char user[LV_SCRAM_MAX_USER_LEN + 1];         /* sent as n=; "" like libpq */
	char nonce[LV_SCRAM_MAX_NONCE_LEN + 1];       /* client nonce */
	size_t auth_len;
	char auth[3 * LV_SCRAM_MAX_MSG_LEN + 3]; /* the AuthMessage built so far */
} lv_scram_client_t;

/* ------------------------------------------------------------------------
 * Server side
 * ------------------------------------------------------------------------ */

/* Resets s to LV_SCRAM_INIT (same as zeroing it). */
void lv_scram_server_init(lv_scram_server_t *s);
/* Wipes key material; s may be reused after lv_scram_server_init(). */
void lv_scram_server_cleanup(lv_scram_server_t *s);
/* Test seam: use this server nonce part (printable, no ',') instead of a random one. */
int lv_scram_server_set_nonce(lv_scram_server_t *s, const char *nonce);

/*
 * Handles the client-first-message (the SASLInitialResponse data) and
 * appends the server-first-message to server_first. Accepts gs2 flags "n"
 * and "y"; "p=" (channel binding, SCRAM-SHA-256-PLUS, which Levee does not
 * offer) is LV_EUNSUPP, as are an authzid and mandatory extensions. The
 * username attribute is ignored, as PostgreSQL ignores it. Errors:
 * LV_EPROTO (malformed), LV_EUNSUPP, LV_ETOOBIG (message too long),
 * LV_ENOMEM (server_first could not grow), LV_EIO (no randomness), each
 * with a message in err (may be NULL); the state becomes LV_SCRAM_FAILED.
 */
int lv_scram_server_first(lv_scram_server_t *s, const lv_scram_secret_t *secret,
			  const uint8_t *client_first, size_t len, lv_buf_t *server_first,
			  lv_err_t *err);
/*
 * Like lv_scram_server_first() for a user that does not exist: answers with
 * a salt derived from HMAC(mock_key, user), so repeated attempts see the
 * same salt, and LV_SCRAM_ITERATIONS; lv_scram_server_final() then fails
 * with LV_EAUTH exactly as for a wrong password. mock_key is a process-wide
 * random secret the caller keeps (see lv_scram_random()).
 */
int lv_scram_server_first_mock(lv_scram_server_t *s, const char *user,
			       const uint8_t mock_key[LV_SCRAM_KEY_LEN],
			       const uint8_t *client_first, size_t len, lv_buf_t *server_first,
			       lv_err_t *err);
/*
 * Handles the client-final-message (the SASLResponse data): checks the
 * channel-binding attribute ("biws" for "n,,", "eSws" for "y,,"), the nonce
 * and the proof. On 0 appends the server-final-message ("v=...") to
 * server_final, sets s->client_key and the state LV_SCRAM_DONE. LV_EAUTH
 * for a wrong proof (and always for a mock exchange); LV_EPROTO for a
 * malformed message or wrong nonce/channel binding; LV_EINVAL if called out
 * of order; LV_ENOMEM. Failures set LV_SCRAM_FAILED.
 */
int lv_scram_server_final(lv_scram_server_t *s, const uint8_t *client_final, size_t len,
			  lv_buf_t *server_final, lv_err_t *err);

/* ------------------------------------------------------------------------
 * Client side
 * ------------------------------------------------------------------------ */

/* Starts a password-mode exchange; LV_ETOOBIG if the password is longer than the limit. */
int lv_scram_client_init(lv_scram_client_t *c, const char *password);
/* Starts a keys-mode exchange with a ClientKey and ServerKey recovered or stored earlier. */
void lv_scram_client_init_keys(lv_scram_client_t *c, const uint8_t client_key[LV_SCRAM_KEY_LEN],
			       const uint8_t server_key[LV_SCRAM_KEY_LEN]);
/* Wipes the password and keys. */
void lv_scram_client_cleanup(lv_scram_client_t *c);
/* Test seam: use this client nonce (printable, no ',') instead of a random one. */
int lv_scram_client_set_nonce(lv_scram_client_t *c, const char *nonce);
/* Sends this user name in n= (escaped per RFC 5802) instead of the empty one libpq sends. */
int lv_scram_client_set_user(lv_scram_client_t *c, const char *user);

/*
 * Appends the client-first-message ("n,,n=,r=<nonce>"): 0, or LV_ENOMEM,
 * LV_EIO, LV_ETOOBIG, LV_EINVAL (out of order).
 */
int lv_scram_client_first(lv_scram_client_t *c, lv_buf_t *out);
/*
 * Handles the server-first-message and appends the client-final-message.
 * Checks that the server nonce extends ours, the salt decodes, and the
 * iteration count is 1..LV_SCRAM_MAX_ITERATIONS; computes the proof from
 * the password (PBKDF2) or, in keys mode, from the given ClientKey.
 * LV_EPROTO for a malformed or hostile message, LV_EUNSUPP for a mandatory
 * extension, LV_ENOMEM, LV_EIO, LV_EINVAL (out of order); message in err.
 */
int lv_scram_client_continue(lv_scram_client_t *c, const uint8_t *server_first, size_t len,
			     lv_buf_t *client_final, lv_err_t *err);
/*
 * Checks the server-final-message's ServerSignature: 0 and LV_SCRAM_DONE
 * when the server proved it knows the secret; LV_EAUTH when the signature
 * is wrong or the server sent "e=<error>"; LV_EPROTO when malformed.
 */
int lv_scram_client_verify(lv_scram_client_t *c, const uint8_t *server_final, size_t len,
			   lv_err_t *err);

/* ------------------------------------------------------------------------
 * MD5
 * ------------------------------------------------------------------------ */

/* Lower-case hex MD5 of data into out (32 digits and a NUL). 0, or LV_EIO if OpenSSL fails. */
int lv_md5_hex(const void *data, size_t len, char out[33]);
/* The stored form "md5" + md5hex(password || user) into out[36]. 0 or LV_EIO. */
int lv_md5_secret(const char *user, const char *password, char out[36]);
/*
 * The response to AuthenticationMD5Password into out[36]: "md5" +
 * md5hex(md5hex(password || user) || salt). When password_or_hash is
 * already an MD5 secret ("md5" + 32 hex digits) its hex part is used
 * instead of hashing it. 0 or LV_EIO.
 */
int lv_md5_password(const char *user, const char *password_or_hash, const uint8_t salt[4],
		    char out[36]);
/*
 * True if response is the right MD5 answer for user, a stored secret (plain
 * or MD5; a SCRAM secret never matches) and salt. Constant-time compare.
 */
bool lv_md5_verify(const char *user, const char *secret, const uint8_t salt[4],
		   const char *response);

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* Fills out with len cryptographically random bytes: 0, or LV_EIO. */
int lv_scram_random(void *out, size_t len);
/*
 * Standard base64 with padding into out[cap] (NUL-terminated), by
 * wire/base64.c. Returns the encoded length, or LV_ETOOBIG when
 * cap < 4 * ceil(len / 3) + 1.
 */
int lv_scram_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap);
/*
 * lv_base64_decode() bounded for SCRAM fields.
 * Strict base64 decode of len characters (no whitespace, length a multiple
 * of 4, '=' only as final padding, unused bits zero) into out[cap]; *out_len
 * gets the decoded size. LV_EINVAL when malformed, LV_ETOOBIG when the input
 * is over 1024 characters or the output does not fit cap.
 */
int lv_scram_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

#endif
