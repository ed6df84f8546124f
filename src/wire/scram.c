/* SPDX-License-Identifier: ISC */
/*
 * wire/scram.c: SCRAM-SHA-256 (RFC 5802 / RFC 7677) for both ends of a
 * PostgreSQL SASL exchange, MD5 password hashing, and the SCRAM-bounded
 * wrappers of wire/base64.c.
 *
 * The SCRAM key schedule, for reference:
 *
 *	SaltedPassword  = PBKDF2-HMAC-SHA-256(password, salt, iterations)
 *	ClientKey       = HMAC(SaltedPassword, "Client Key")
 *	StoredKey       = SHA-256(ClientKey)
 *	ServerKey       = HMAC(SaltedPassword, "Server Key")
 *	AuthMessage     = client-first-bare "," server-first "," client-final-without-proof
 *	ClientSignature = HMAC(StoredKey, AuthMessage)
 *	ClientProof     = ClientKey XOR ClientSignature
 *	ServerSignature = HMAC(ServerKey, AuthMessage)
 *
 * A server holding only StoredKey and ServerKey (a PostgreSQL secret) checks
 * a proof by recovering ClientKey = ClientProof XOR ClientSignature and
 * comparing SHA-256(ClientKey) with StoredKey. That recovered ClientKey is
 * what lets Levee then act as a SCRAM client to PostgreSQL (keys mode)
 * without ever learning the password.
 *
 * Ownership: no heap memory. The exchange state lives in the caller's
 * lv_scram_server_t / lv_scram_client_t (fixed-size buffers, so a hostile
 * peer cannot make Levee allocate); outputs are appended to caller buffers.
 * Secrets and keys are wiped with OPENSSL_cleanse() where they are
 * temporaries, and by the cleanup functions in the state structs.
 *
 * Every incoming message is (pointer, length) from the network: it is
 * bounded (LV_SCRAM_MAX_MSG_LEN), must not contain NUL, and is walked with a
 * cursor that never reads past its end. Comparisons of secrets use
 * CRYPTO_memcmp().
 */
#include "core/lv.h"
#include "wire/scram.h"

#include "core/str.h"
#include "wire/base64.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define B64_MAX_IN 1024   /* longest base64 text decoded: far above any SCRAM field */
#define MD5_SECRET_LEN 35 /* "md5" + 32 hex digits */

/* Ends an exchange with an error: sets the state and fills err; evaluates to code. */
#define FAIL(st, err, code, ...) \
	((st)->state = LV_SCRAM_FAILED, lv_err_set((err), (code), __VA_ARGS__))

/* ========================================================================
 * Primitives
 * ======================================================================== */

int lv_scram_random(void *out, size_t len)
{
	if (len > INT_MAX)
		return LV_EINVAL;
	return RAND_bytes(out, (int)len) == 1 ? 0 : LV_EIO;
}

static bool hmac256(const uint8_t *key, size_t key_len, const void *data, size_t len,
		    uint8_t out[LV_SCRAM_KEY_LEN])
{
	unsigned int n = 0;
	return HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n) != NULL &&
	       n == LV_SCRAM_KEY_LEN;
}

static bool sha256(const uint8_t *data, size_t len, uint8_t out[LV_SCRAM_KEY_LEN])
{
	return SHA256(data, len, out) != NULL;
}

/* ClientKey and ServerKey from a password, salt and iteration count. */
static int derive_keys(const char *password, const uint8_t *salt, size_t salt_len, int iterations,
		       uint8_t client_key[LV_SCRAM_KEY_LEN], uint8_t server_key[LV_SCRAM_KEY_LEN])
{
	size_t pw_len = strlen(password);
	if (pw_len > INT_MAX || salt_len == 0 || salt_len > LV_SCRAM_MAX_SALT_LEN || iterations < 1)
		return LV_EINVAL;
	uint8_t salted[LV_SCRAM_KEY_LEN];
	int rc = 0;
	if (PKCS5_PBKDF2_HMAC(password, (int)pw_len, salt, (int)salt_len, iterations, EVP_sha256(),
			      LV_SCRAM_KEY_LEN, salted) != 1 ||
	    !hmac256(salted, sizeof(salted), "Client Key", 10, client_key) ||
	    !hmac256(salted, sizeof(salted), "Server Key", 10, server_key))
		rc = LV_EIO;
	OPENSSL_cleanse(salted, sizeof(salted));
	return rc;
}

/* ========================================================================
 * Base64
 * ======================================================================== */

/* The SCRAM contract of the shared codec (wire/base64.c): an int length, inputs bounded. */
int lv_scram_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
	size_t n;
	if (len > INT_MAX / 2 || lv_base64_encode(in, len, out, cap, &n) != 0)
		return LV_ETOOBIG;
	return (int)n;
}

int lv_scram_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	if (len > B64_MAX_IN)
		return LV_ETOOBIG;
	return lv_base64_decode(in, len, out, cap, out_len);
}

/* ========================================================================
 * Secrets
 * ======================================================================== */

static bool is_md5_secret(const char *s)
{
	if (strncmp(s, "md5", 3) != 0 || strlen(s) != MD5_SECRET_LEN)
		return false;
	return strspn(s + 3, "0123456789abcdef") == MD5_SECRET_LEN - 3;
}

lv_secret_kind_t lv_secret_kind(const char *secret)
{
	if (is_md5_secret(secret))
		return LV_SECRET_MD5;
	lv_scram_secret_t tmp;
	int rc = lv_scram_parse_secret(secret, &tmp);
	OPENSSL_cleanse(&tmp, sizeof(tmp));
	return rc == 0 ? LV_SECRET_SCRAM : LV_SECRET_PLAIN;
}

/* Decodes base64 text [p, end) into exactly want bytes (or 1..cap when want is 0). */
static bool decode_field(const char *p, const char *end, uint8_t *out, size_t cap, size_t want,
			 size_t *got)
{
	size_t n;
	if (lv_scram_base64_decode(p, (size_t)(end - p), out, cap, &n) != 0)
		return false;
	if (want ? n != want : n == 0)
		return false;
	if (got)
		*got = n;
	return true;
}

int lv_scram_parse_secret(const char *secret, lv_scram_secret_t *out)
{
	static const char prefix[] = "SCRAM-SHA-256$";
	memset(out, 0, sizeof(*out));
	if (strncmp(secret, prefix, sizeof(prefix) - 1) != 0)
		return LV_EINVAL;
	const char *p = secret + sizeof(prefix) - 1;

	long long iter = 0;
	const char *digits = p;
	while (*p >= '0' && *p <= '9') {
		iter = iter * 10 + (*p - '0');
		if (iter > INT_MAX)
			return LV_EINVAL;
		p++;
	}
	if (p == digits || *p != ':' || iter < 1)
		return LV_EINVAL;
	out->iterations = (int)iter;

	const char *salt = p + 1;
	const char *dollar = strchr(salt, '$');
	if (!dollar || !decode_field(salt, dollar, out->salt, sizeof(out->salt), 0, &out->salt_len))
		goto bad;
	const char *stored = dollar + 1;
	const char *colon = strchr(stored, ':');
	if (!colon ||
	    !decode_field(stored, colon, out->stored_key, LV_SCRAM_KEY_LEN, LV_SCRAM_KEY_LEN, NULL))
		goto bad;
	const char *server = colon + 1;
	if (!decode_field(server, server + strlen(server), out->server_key, LV_SCRAM_KEY_LEN,
			  LV_SCRAM_KEY_LEN, NULL))
		goto bad;
	return 0;
bad:
	OPENSSL_cleanse(out, sizeof(*out));
	return LV_EINVAL;
}

int lv_scram_secret_derive(const char *password, const uint8_t *salt, size_t salt_len,
			   int iterations, lv_scram_secret_t *out)
{
	memset(out, 0, sizeof(*out));
	uint8_t client_key[LV_SCRAM_KEY_LEN];
	int rc = derive_keys(password, salt, salt_len, iterations, client_key, out->server_key);
	if (rc == 0 && !sha256(client_key, sizeof(client_key), out->stored_key))
		rc = LV_EIO;
	OPENSSL_cleanse(client_key, sizeof(client_key));
	if (rc != 0) {
		OPENSSL_cleanse(out, sizeof(*out));
		return rc;
	}
	out->iterations = iterations;
	out->salt_len = salt_len;
	memcpy(out->salt, salt, salt_len);
	return 0;
}

int lv_scram_secret_from_password(const char *password, lv_scram_secret_t *out)
{
	uint8_t salt[LV_SCRAM_SALT_LEN];
	int rc = lv_scram_random(salt, sizeof(salt));
	if (rc != 0)
		return rc;
	return lv_scram_secret_derive(password, salt, sizeof(salt), LV_SCRAM_ITERATIONS, out);
}

int lv_scram_format_secret(const lv_scram_secret_t *secret, char *out, size_t cap)
{
	char salt[LV_SCRAM_MAX_SALT_LEN / 3 * 4 + 8];
	char stored[LV_SCRAM_KEY_LEN / 3 * 4 + 8];
	char server[LV_SCRAM_KEY_LEN / 3 * 4 + 8];
	if (lv_scram_base64_encode(secret->salt, secret->salt_len, salt, sizeof(salt)) < 0 ||
	    lv_scram_base64_encode(secret->stored_key, LV_SCRAM_KEY_LEN, stored, sizeof(stored)) <
		    0 ||
	    lv_scram_base64_encode(secret->server_key, LV_SCRAM_KEY_LEN, server, sizeof(server)) <
		    0)
		return LV_EINVAL;
	int n = snprintf(out, cap, "SCRAM-SHA-256$%d:%s$%s:%s", secret->iterations, salt, stored,
			 server);
	if (n < 0 || (size_t)n >= cap)
		return LV_ETOOBIG;
	return 0;
}

int lv_scram_build_secret(const char *password, const uint8_t *salt, size_t salt_len,
			  int iterations, char *out, size_t cap)
{
	lv_scram_secret_t secret;
	int rc = lv_scram_secret_derive(password, salt, salt_len, iterations, &secret);
	if (rc == 0)
		rc = lv_scram_format_secret(&secret, out, cap);
	OPENSSL_cleanse(&secret, sizeof(secret));
	return rc;
}

bool lv_scram_secret_check_password(const lv_scram_secret_t *secret, const char *password)
{
	lv_scram_secret_t mine;
	bool ok = lv_scram_secret_derive(password, secret->salt, secret->salt_len,
					 secret->iterations, &mine) == 0 &&
		  CRYPTO_memcmp(mine.stored_key, secret->stored_key, LV_SCRAM_KEY_LEN) == 0;
	OPENSSL_cleanse(&mine, sizeof(mine));
	return ok;
}

/* ========================================================================
 * Message cursor: "a=value,b=value,..." over untrusted (pointer, length)
 * ======================================================================== */

typedef struct cursor {
	const char *p;
	const char *end;
} cursor_t;

static bool at_end(const cursor_t *c)
{
	return c->p == c->end;
}

/* Consumes a ',' separator. */
static bool skip_comma(cursor_t *c)
{
	if (at_end(c) || *c->p != ',')
		return false;
	c->p++;
	return true;
}

/* True if the cursor is at "<name>=". */
static bool peek_attr(const cursor_t *c, char name)
{
	return c->end - c->p >= 2 && c->p[0] == name && c->p[1] == '=';
}

/*
 * Reads "<name>=<value>" up to (not including) the next ',' or the end. A
 * name of 0 accepts any ASCII letter (an extension). The value may be empty.
 */
static bool read_attr(cursor_t *c, char name, const char **val, size_t *vlen)
{
	if (c->end - c->p < 2 || c->p[1] != '=')
		return false;
	char n = c->p[0];
	if (name ? n != name : !((n >= 'a' && n <= 'z') || (n >= 'A' && n <= 'Z')))
		return false;
	const char *v = c->p + 2;
	const char *comma = memchr(v, ',', (size_t)(c->end - v));
	const char *stop = comma ? comma : c->end;
	*val = v;
	*vlen = (size_t)(stop - v);
	c->p = stop;
	return true;
}

/* Skips any optional extensions (",x=...") up to the end. */
static bool skip_extensions(cursor_t *c)
{
	while (!at_end(c)) {
		const char *v;
		size_t vlen;
		if (!skip_comma(c) || !read_attr(c, 0, &v, &vlen))
			return false;
	}
	return true;
}

/* RFC 5802 "printable": %x21-2B / %x2D-7E (no ','), non-empty. */
static bool is_printable(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	return true;
}

/* Common checks on an incoming message; the cursor starts over it. */
static int open_msg(cursor_t *c, const uint8_t *msg, size_t len)
{
	if (len > LV_SCRAM_MAX_MSG_LEN)
		return LV_ETOOBIG;
	if (len > 0 && memchr(msg, '\0', len))
		return LV_EPROTO;
	c->p = (const char *)msg;
	c->end = c->p + len;
	return 0;
}

/* A fresh random nonce (18 bytes, base64: 24 printable characters). */
static int random_nonce(char *out, size_t cap)
{
	uint8_t raw[LV_SCRAM_NONCE_RAW_LEN];
	if (lv_scram_random(raw, sizeof(raw)) != 0)
		return LV_EIO;
	return lv_scram_base64_encode(raw, sizeof(raw), out, cap) < 0 ? LV_EIO : 0;
}

static int set_nonce(char *dst, size_t cap, const char *nonce)
{
	size_t n = strlen(nonce);
	if (!is_printable(nonce, n) || n >= cap)
		return LV_EINVAL;
	memcpy(dst, nonce, n + 1);
	return 0;
}

/* ========================================================================
 * Server side
 * ======================================================================== */

void lv_scram_server_init(lv_scram_server_t *s)
{
	memset(s, 0, sizeof(*s));
}

void lv_scram_server_cleanup(lv_scram_server_t *s)
{
	OPENSSL_cleanse(s, sizeof(*s));
}

int lv_scram_server_set_nonce(lv_scram_server_t *s, const char *nonce)
{
	return set_nonce(s->nonce_override, sizeof(s->nonce_override), nonce);
}

/* Parses client-first and writes server-first; s->secret is already set. */
static int handle_client_first(lv_scram_server_t *s, const uint8_t *msg, size_t len, lv_buf_t *out,
			       lv_err_t *err)
{
	if (s->state != LV_SCRAM_INIT)
		return FAIL(s, err, LV_EINVAL, "SCRAM exchange out of order");
	cursor_t c;
	int rc = open_msg(&c, msg, len);
	if (rc != 0)
		return FAIL(s, err, rc, "malformed SCRAM message (%s)",
			    rc == LV_ETOOBIG ? "client-first-message too long" : "NUL byte");

	/* gs2-header: cbind-flag "," [authzid] "," */
	if (at_end(&c))
		return FAIL(s, err, LV_EPROTO, "malformed SCRAM message (empty message)");
	char flag = *c.p;
	if (flag == 'p')
		return FAIL(s, err, LV_EUNSUPP,
			    "channel binding is not supported: the client selected "
			    "SCRAM-SHA-256-PLUS, which was not offered");
	if (flag != 'n' && flag != 'y')
		return FAIL(s, err, LV_EPROTO,
			    "malformed SCRAM message (unexpected channel-binding flag)");
	c.p++;
	if (!skip_comma(&c))
		return FAIL(s, err, LV_EPROTO, "malformed SCRAM message (comma expected)");
	if (peek_attr(&c, 'a'))
		return FAIL(s, err, LV_EUNSUPP,
			    "client uses an authorization identity, which is not supported");
	if (!skip_comma(&c))
		return FAIL(s, err, LV_EPROTO, "malformed SCRAM message (comma expected)");

	/* client-first-message-bare: [m=...,] n=user,r=nonce[,extensions] */
	const char *bare = c.p;
	if (peek_attr(&c, 'm'))
		return FAIL(s, err, LV_EUNSUPP, "client requires an unsupported SCRAM extension");
	const char *user, *cnonce;
	size_t user_len, cnonce_len;
	if (!read_attr(&c, 'n', &user, &user_len) || !skip_comma(&c))
		return FAIL(s, err, LV_EPROTO, "malformed SCRAM message (username expected)");
	if (!read_attr(&c, 'r', &cnonce, &cnonce_len) || !is_printable(cnonce, cnonce_len) ||
	    cnonce_len > LV_SCRAM_MAX_NONCE_LEN)
		return FAIL(s, err, LV_EPROTO, "malformed SCRAM message (invalid nonce)");
	if (!skip_extensions(&c))
		return FAIL(s, err, LV_EPROTO,
			    "malformed SCRAM message (garbage at end of client-first-message)");
	size_t bare_len = (size_t)(c.end - bare);

	char snonce[LV_SCRAM_MAX_NONCE_LEN + 1];
	if (s->nonce_override[0])
		memcpy(snonce, s->nonce_override, sizeof(snonce));
	else if (random_nonce(snonce, sizeof(snonce)) != 0)
		return FAIL(s, err, LV_EIO, "could not generate a SCRAM nonce");
	char salt[LV_SCRAM_MAX_SALT_LEN / 3 * 4 + 8];
	if (lv_scram_base64_encode(s->secret.salt, s->secret.salt_len, salt, sizeof(salt)) < 0)
		return FAIL(s, err, LV_EINVAL, "invalid SCRAM secret");

	/* auth = client-first-bare "," server-first */
	memcpy(s->auth, bare, bare_len);
	s->auth[bare_len] = ',';
	char *sf = s->auth + bare_len + 1;
	size_t room = sizeof(s->auth) - bare_len - 1;
	int n = snprintf(sf, room, "r=%.*s%s,s=%s,i=%d", (int)cnonce_len, cnonce, snonce, salt,
			 s->secret.iterations);
	if (n < 0 || (size_t)n >= room)
		return FAIL(s, err, LV_ETOOBIG, "SCRAM server-first-message too long");
	s->auth_len = bare_len + 1 + (size_t)n;
	s->nonce_off = bare_len + 1 + 2;
	s->nonce_len = cnonce_len + strlen(snonce);
	s->cbind_flag = flag;
	if (!lv_buf_append(out, sf, (size_t)n))
		return FAIL(s, err, LV_ENOMEM, "out of memory");
	s->state = LV_SCRAM_FIRST_SENT;
	return 0;
}

int lv_scram_server_first(lv_scram_server_t *s, const lv_scram_secret_t *secret,
			  const uint8_t *client_first, size_t len, lv_buf_t *server_first,
			  lv_err_t *err)
{
	if (s->state == LV_SCRAM_INIT) {
		s->secret = *secret;
		s->is_mock = false;
	}
	return handle_client_first(s, client_first, len, server_first, err);
}

int lv_scram_server_first_mock(lv_scram_server_t *s, const char *user,
			       const uint8_t mock_key[LV_SCRAM_KEY_LEN],
			       const uint8_t *client_first, size_t len, lv_buf_t *server_first,
			       lv_err_t *err)
{
	if (s->state == LV_SCRAM_INIT) {
		uint8_t mac[LV_SCRAM_KEY_LEN];
		memset(&s->secret, 0, sizeof(s->secret));
		if (!hmac256(mock_key, LV_SCRAM_KEY_LEN, user, strlen(user), mac) ||
		    lv_scram_random(s->secret.stored_key, LV_SCRAM_KEY_LEN) != 0 ||
		    lv_scram_random(s->secret.server_key, LV_SCRAM_KEY_LEN) != 0)
			return FAIL(s, err, LV_EIO, "could not build a mock SCRAM secret");
		memcpy(s->secret.salt, mac, LV_SCRAM_SALT_LEN);
		s->secret.salt_len = LV_SCRAM_SALT_LEN;
		s->secret.iterations = LV_SCRAM_ITERATIONS;
		s->is_mock = true;
	}
	return handle_client_first(s, client_first, len, server_first, err);
}

int lv_scram_server_final(lv_scram_server_t *s, const uint8_t *client_final, size_t len,
			  lv_buf_t *server_final, lv_err_t *err)
{
	if (s->state != LV_SCRAM_FIRST_SENT)
		return FAIL(s, err, LV_EINVAL, "SCRAM exchange out of order");
	cursor_t c;
	int rc = open_msg(&c, client_final, len);
	if (rc != 0)
		return FAIL(s, err, LV_EPROTO, "malformed SCRAM message (%s)",
			    rc == LV_ETOOBIG ? "client-final-message too long" : "NUL byte");

	/* c=<base64 of the gs2 header>: "n,," is "biws", "y,," is "eSws". */
	const char *v;
	size_t vlen;
	const char *want_cb = s->cbind_flag == 'y' ? "eSws" : "biws";
	if (!read_attr(&c, 'c', &v, &vlen))
		return FAIL(s, err, LV_EPROTO,
			    "malformed SCRAM message (channel binding expected)");
	if (vlen != 4 || memcmp(v, want_cb, 4) != 0)
		return FAIL(s, err, LV_EPROTO,
			    "SCRAM channel binding check failed (unexpected c= attribute)");
	if (!skip_comma(&c) || !read_attr(&c, 'r', &v, &vlen))
		return FAIL(s, err, LV_EPROTO, "malformed SCRAM message (nonce expected)");
	if (vlen != s->nonce_len || memcmp(v, s->auth + s->nonce_off, vlen) != 0)
		return FAIL(s, err, LV_EPROTO, "SCRAM nonce mismatch");

	/* [,extensions] ,p=proof — the proof is last. */
	const char *proof_comma = NULL;
	while (!at_end(&c)) {
		const char *here = c.p;
		if (!skip_comma(&c))
			return FAIL(s, err, LV_EPROTO, "malformed SCRAM message (comma expected)");
		if (peek_attr(&c, 'p')) {
			proof_comma = here;
			break;
		}
		if (!read_attr(&c, 0, &v, &vlen))
			return FAIL(s, err, LV_EPROTO, "malformed SCRAM message (bad attribute)");
	}
	uint8_t proof[LV_SCRAM_KEY_LEN];
	if (!proof_comma || !read_attr(&c, 'p', &v, &vlen) || !at_end(&c) ||
	    !decode_field(v, v + vlen, proof, sizeof(proof), LV_SCRAM_KEY_LEN, NULL))
		return FAIL(s, err, LV_EPROTO, "malformed SCRAM message (invalid proof)");

	/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
	char am[sizeof(s->auth) + 1 + LV_SCRAM_MAX_MSG_LEN];
	size_t cfwp_len = (size_t)(proof_comma - (const char *)client_final);
	memcpy(am, s->auth, s->auth_len);
	am[s->auth_len] = ',';
	memcpy(am + s->auth_len + 1, client_final, cfwp_len);
	size_t am_len = s->auth_len + 1 + cfwp_len;

	uint8_t sig[LV_SCRAM_KEY_LEN], key[LV_SCRAM_KEY_LEN], stored[LV_SCRAM_KEY_LEN];
	if (!hmac256(s->secret.stored_key, LV_SCRAM_KEY_LEN, am, am_len, sig))
		return FAIL(s, err, LV_EIO, "SCRAM computation failed");
	for (size_t i = 0; i < LV_SCRAM_KEY_LEN; i++)
		key[i] = proof[i] ^ sig[i];
	bool match = sha256(key, sizeof(key), stored) &&
		     CRYPTO_memcmp(stored, s->secret.stored_key, LV_SCRAM_KEY_LEN) == 0;
	/* A mock exchange fails here, after the same work as a real one. */
	if (!match || s->is_mock) {
		OPENSSL_cleanse(key, sizeof(key));
		return FAIL(s, err, LV_EAUTH, "SCRAM proof does not match");
	}

	char sig64[LV_SCRAM_KEY_LEN / 3 * 4 + 8];
	if (!hmac256(s->secret.server_key, LV_SCRAM_KEY_LEN, am, am_len, sig) ||
	    lv_scram_base64_encode(sig, sizeof(sig), sig64, sizeof(sig64)) < 0) {
		OPENSSL_cleanse(key, sizeof(key));
		return FAIL(s, err, LV_EIO, "SCRAM computation failed");
	}
	size_t mark = server_final->len;
	if (!lv_buf_append(server_final, "v=", 2) || !lv_buf_append_str(server_final, sig64)) {
		server_final->len = mark;
		OPENSSL_cleanse(key, sizeof(key));
		return FAIL(s, err, LV_ENOMEM, "out of memory");
	}
	memcpy(s->client_key, key, sizeof(key));
	OPENSSL_cleanse(key, sizeof(key));
	s->state = LV_SCRAM_DONE;
	return 0;
}

/* ========================================================================
 * Client side
 * ======================================================================== */

int lv_scram_client_init(lv_scram_client_t *c, const char *password)
{
	memset(c, 0, sizeof(*c));
	if (!password)
		return LV_EINVAL;
	if (strlen(password) > LV_SCRAM_MAX_PASSWORD_LEN)
		return LV_ETOOBIG;
	strcpy(c->password, password);
	return 0;
}

void lv_scram_client_init_keys(lv_scram_client_t *c, const uint8_t client_key[LV_SCRAM_KEY_LEN],
			       const uint8_t server_key[LV_SCRAM_KEY_LEN])
{
	memset(c, 0, sizeof(*c));
	c->has_keys = true;
	memcpy(c->client_key, client_key, LV_SCRAM_KEY_LEN);
	memcpy(c->server_key, server_key, LV_SCRAM_KEY_LEN);
}

void lv_scram_client_cleanup(lv_scram_client_t *c)
{
	OPENSSL_cleanse(c, sizeof(*c));
}

int lv_scram_client_set_nonce(lv_scram_client_t *c, const char *nonce)
{
	if (c->state != LV_SCRAM_INIT)
		return LV_EINVAL;
	return set_nonce(c->nonce, sizeof(c->nonce), nonce);
}

int lv_scram_client_set_user(lv_scram_client_t *c, const char *user)
{
	if (c->state != LV_SCRAM_INIT)
		return LV_EINVAL;
	return lv_strlcpy(c->user, user, sizeof(c->user)) ? 0 : LV_ETOOBIG;
}

/* Appends user escaped as an RFC 5802 saslname: ',' is "=2C" and '=' is "=3D". */
static int escape_user(const char *user, char *out, size_t cap)
{
	size_t n = 0;
	for (const char *u = user; *u; u++) {
		const char *rep = *u == ',' ? "=2C" : *u == '=' ? "=3D" : NULL;
		size_t k = rep ? 3 : 1;
		if (n + k >= cap)
			return LV_ETOOBIG;
		memcpy(out + n, rep ? rep : u, k);
		n += k;
	}
	out[n] = '\0';
	return 0;
}

int lv_scram_client_first(lv_scram_client_t *c, lv_buf_t *out)
{
	if (c->state != LV_SCRAM_INIT) {
		c->state = LV_SCRAM_FAILED;
		return LV_EINVAL;
	}
	if (!c->nonce[0] && random_nonce(c->nonce, sizeof(c->nonce)) != 0) {
		c->state = LV_SCRAM_FAILED;
		return LV_EIO;
	}
	char user[LV_SCRAM_MAX_USER_LEN * 3 + 1];
	if (escape_user(c->user, user, sizeof(user)) != 0) {
		c->state = LV_SCRAM_FAILED;
		return LV_ETOOBIG;
	}
	/* The bare part goes into auth; the gs2 header "n,," only on the wire. */
	int n = snprintf(c->auth, LV_SCRAM_MAX_MSG_LEN, "n=%s,r=%s", user, c->nonce);
	if (n < 0 || n >= LV_SCRAM_MAX_MSG_LEN) {
		c->state = LV_SCRAM_FAILED;
		return LV_ETOOBIG;
	}
	size_t mark = out->len;
	if (!lv_buf_append(out, "n,,", 3) || !lv_buf_append(out, c->auth, (size_t)n)) {
		out->len = mark;
		c->state = LV_SCRAM_FAILED;
		return LV_ENOMEM;
	}
	c->auth_len = (size_t)n;
	c->state = LV_SCRAM_FIRST_SENT;
	return 0;
}

int lv_scram_client_continue(lv_scram_client_t *c, const uint8_t *server_first, size_t len,
			     lv_buf_t *client_final, lv_err_t *err)
{
	if (c->state != LV_SCRAM_FIRST_SENT)
		return FAIL(c, err, LV_EINVAL, "SCRAM exchange out of order");
	cursor_t cur;
	int rc = open_msg(&cur, server_first, len);
	if (rc != 0)
		return FAIL(c, err, LV_EPROTO, "malformed SCRAM message (%s)",
			    rc == LV_ETOOBIG ? "server-first-message too long" : "NUL byte");

	/* [m=...,] r=nonce,s=salt,i=iterations[,extensions] */
	if (peek_attr(&cur, 'm'))
		return FAIL(c, err, LV_EUNSUPP, "server requires an unsupported SCRAM extension");
	const char *nonce, *salt64, *iter;
	size_t nonce_len, salt64_len, iter_len;
	size_t our_len = strlen(c->nonce);
	if (!read_attr(&cur, 'r', &nonce, &nonce_len) || !is_printable(nonce, nonce_len))
		return FAIL(c, err, LV_EPROTO, "malformed SCRAM message (invalid nonce)");
	if (nonce_len <= our_len || memcmp(nonce, c->nonce, our_len) != 0)
		return FAIL(c, err, LV_EPROTO,
			    "invalid SCRAM response (nonce does not extend the client nonce)");
	uint8_t salt[LV_SCRAM_MAX_SALT_LEN];
	size_t salt_len;
	if (!skip_comma(&cur) || !read_attr(&cur, 's', &salt64, &salt64_len) ||
	    !decode_field(salt64, salt64 + salt64_len, salt, sizeof(salt), 0, &salt_len))
		return FAIL(c, err, LV_EPROTO, "malformed SCRAM message (invalid salt)");
	if (!skip_comma(&cur) || !read_attr(&cur, 'i', &iter, &iter_len) || iter_len == 0 ||
	    iter_len > 9)
		return FAIL(c, err, LV_EPROTO, "malformed SCRAM message (invalid iteration count)");
	long iterations = 0;
	for (size_t i = 0; i < iter_len; i++) {
		if (iter[i] < '0' || iter[i] > '9')
			return FAIL(c, err, LV_EPROTO,
				    "malformed SCRAM message (invalid iteration count)");
		iterations = iterations * 10 + (iter[i] - '0');
	}
	if (iterations < 1 || iterations > LV_SCRAM_MAX_ITERATIONS)
		return FAIL(c, err, LV_EPROTO, "SCRAM iteration count %ld out of range 1..%d",
			    iterations, LV_SCRAM_MAX_ITERATIONS);
	if (!skip_extensions(&cur))
		return FAIL(c, err, LV_EPROTO,
			    "malformed SCRAM message (garbage at end of server-first-message)");

	if (!c->has_keys) {
		rc = derive_keys(c->password, salt, salt_len, (int)iterations, c->client_key,
				 c->server_key);
		if (rc != 0)
			return FAIL(c, err, rc, "SCRAM key derivation failed");
	}

	/* auth = client-first-bare "," server-first "," client-final-without-proof */
	size_t room = sizeof(c->auth) - c->auth_len;
	int n = snprintf(c->auth + c->auth_len, room, ",%.*s,c=biws,r=%.*s", (int)len,
			 (const char *)server_first, (int)nonce_len, nonce);
	if (n < 0 || (size_t)n >= room)
		return FAIL(c, err, LV_EPROTO, "SCRAM server-first-message too long");
	const char *cfwp = c->auth + c->auth_len + 1 + len + 1;
	size_t cfwp_len = (size_t)n - len - 2;
	size_t am_len = c->auth_len + (size_t)n;

	uint8_t stored[LV_SCRAM_KEY_LEN], sig[LV_SCRAM_KEY_LEN], proof[LV_SCRAM_KEY_LEN];
	char proof64[LV_SCRAM_KEY_LEN / 3 * 4 + 8];
	if (!sha256(c->client_key, LV_SCRAM_KEY_LEN, stored) ||
	    !hmac256(stored, LV_SCRAM_KEY_LEN, c->auth, am_len, sig) ||
	    !hmac256(c->server_key, LV_SCRAM_KEY_LEN, c->auth, am_len, c->server_signature))
		return FAIL(c, err, LV_EIO, "SCRAM computation failed");
	for (size_t i = 0; i < LV_SCRAM_KEY_LEN; i++)
		proof[i] = c->client_key[i] ^ sig[i];
	if (lv_scram_base64_encode(proof, sizeof(proof), proof64, sizeof(proof64)) < 0)
		return FAIL(c, err, LV_EIO, "SCRAM computation failed");

	size_t mark = client_final->len;
	if (!lv_buf_append(client_final, cfwp, cfwp_len) ||
	    !lv_buf_append(client_final, ",p=", 3) || !lv_buf_append_str(client_final, proof64)) {
		client_final->len = mark;
		return FAIL(c, err, LV_ENOMEM, "out of memory");
	}
	c->auth_len = am_len;
	c->state = LV_SCRAM_FINAL_SENT;
	return 0;
}

int lv_scram_client_verify(lv_scram_client_t *c, const uint8_t *server_final, size_t len,
			   lv_err_t *err)
{
	if (c->state != LV_SCRAM_FINAL_SENT)
		return FAIL(c, err, LV_EINVAL, "SCRAM exchange out of order");
	cursor_t cur;
	int rc = open_msg(&cur, server_final, len);
	if (rc != 0)
		return FAIL(c, err, LV_EPROTO, "malformed SCRAM message (%s)",
			    rc == LV_ETOOBIG ? "server-final-message too long" : "NUL byte");
	const char *v;
	size_t vlen;
	if (read_attr(&cur, 'e', &v, &vlen))
		return FAIL(c, err, LV_EAUTH, "server rejected SCRAM authentication: %.*s",
			    (int)LV_MIN(vlen, 100), v);
	uint8_t sig[LV_SCRAM_KEY_LEN];
	if (!read_attr(&cur, 'v', &v, &vlen) ||
	    !decode_field(v, v + vlen, sig, sizeof(sig), LV_SCRAM_KEY_LEN, NULL) ||
	    !skip_extensions(&cur))
		return FAIL(c, err, LV_EPROTO,
			    "malformed SCRAM message (invalid server signature)");
	if (CRYPTO_memcmp(sig, c->server_signature, LV_SCRAM_KEY_LEN) != 0)
		return FAIL(c, err, LV_EAUTH, "incorrect server signature");
	c->state = LV_SCRAM_DONE;
	return 0;
}

/* ========================================================================
 * MD5
 * ======================================================================== */

/* Hex MD5 of a || b (either may be empty). */
static int md5_hex2(const void *a, size_t a_len, const void *b, size_t b_len, char out[33])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
		  EVP_DigestUpdate(ctx, a, a_len) == 1 && EVP_DigestUpdate(ctx, b, b_len) == 1 &&
		  EVP_DigestFinal_ex(ctx, md, &n) == 1 && n == 16;
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		out[0] = '\0';
		return LV_EIO;
	}
	for (unsigned i = 0; i < 16; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 0x0f];
	}
	out[32] = '\0';
	return 0;
}

int lv_md5_hex(const void *data, size_t len, char out[33])
{
	return md5_hex2(data, len, "", 0, out);
}

int lv_md5_secret(const char *user, const char *password, char out[36])
{
	memcpy(out, "md5", 3);
	int rc = md5_hex2(password, strlen(password), user, strlen(user), out + 3);
	if (rc != 0)
		out[0] = '\0';
	return rc;
}

int lv_md5_password(const char *user, const char *password_or_hash, const uint8_t salt[4],
		    char out[36])
{
	char inner[33];
	int rc = 0;
	if (is_md5_secret(password_or_hash))
		memcpy(inner, password_or_hash + 3, 33);
	else
		rc = md5_hex2(password_or_hash, strlen(password_or_hash), user, strlen(user),
			      inner);
	memcpy(out, "md5", 3);
	if (rc == 0)
		rc = md5_hex2(inner, 32, salt, 4, out + 3);
	OPENSSL_cleanse(inner, sizeof(inner));
	if (rc != 0)
		out[0] = '\0';
	return rc;
}

bool lv_md5_verify(const char *user, const char *secret, const uint8_t salt[4],
		   const char *response)
{
	if (lv_secret_kind(secret) == LV_SECRET_SCRAM)
		return false;
	char want[36];
	bool ok = lv_md5_password(user, secret, salt, want) == 0 &&
		  strlen(response) == MD5_SECRET_LEN &&
		  CRYPTO_memcmp(want, response, MD5_SECRET_LEN) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}
