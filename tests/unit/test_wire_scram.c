/* SPDX-License-Identifier: ISC */
/* levee-test-deps: src/wire/base64.c */
/*
 * Unit tests for wire/scram.c: the RFC 7677 test vector on both sides,
 * server against client round trips (password and keys modes), wrong
 * passwords, the mock exchange for unknown users, a table of malformed
 * messages, secrets, MD5 and strict base64.
 *
 * Expected MD5 and SCRAM secret values were computed independently with
 * python3 (hashlib.md5, hashlib.pbkdf2_hmac, hmac).
 */
#include "core/lv.h"
#include "wire/scram.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

/* RFC 7677, section 3. */
#define RFC_PASSWORD "pencil"
#define RFC_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT64 "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CNONCE
#define RFC_SERVER_FIRST "r=" RFC_CNONCE RFC_SNONCE ",s=" RFC_SALT64 ",i=4096"
#define RFC_CLIENT_FINAL \
	"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/* The PostgreSQL secret for "pencil" with the RFC salt (python3). */
#define RFC_SECRET                                                                     \
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcX" \
	"kuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
static const uint8_t rfc_client_key[32] = {
	0xa6, 0x0f, 0xc9, 0x23, 0xd6, 0x7e, 0x86, 0x44, 0xa9, 0x2d, 0x16,
	0xb9, 0x6e, 0xda, 0x5e, 0xf4, 0x65, 0x6b, 0x0c, 0x72, 0x5c, 0x48,
	0x43, 0x74, 0xbe, 0x25, 0x53, 0x55, 0x76, 0x99, 0x6e, 0x8b,
};

/* Compares a buffer's contents with a string and empties it. */
static void assert_buf_str(lv_buf_t *b, const char *want)
{
	if (b->len != strlen(want) || memcmp(b->data, want, b->len) != 0)
		fail_msg("got \"%.*s\", want \"%s\"", (int)b->len, (const char *)b->data, want);
	lv_buf_reset(b);
}

static const uint8_t *U(const char *s)
{
	return (const uint8_t *)s;
}

static void rfc_salt(uint8_t salt[16])
{
	size_t n;
	assert_int_equal(lv_scram_base64_decode(RFC_SALT64, strlen(RFC_SALT64), salt, 16, &n), 0);
	assert_int_equal(n, 16);
}

/* ------------------------------------------------------------------------
 * RFC 7677 vector
 * ------------------------------------------------------------------------ */

static void test_rfc7677_client(void **state)
{
	(void)state;
	lv_scram_client_t c;
	lv_buf_t b;
	lv_err_t err;
	lv_buf_init(&b);
	assert_int_equal(lv_scram_client_init(&c, RFC_PASSWORD), 0);
	assert_int_equal(lv_scram_client_set_user(&c, "user"), 0);
	assert_int_equal(lv_scram_client_set_nonce(&c, RFC_CNONCE), 0);
	assert_int_equal(lv_scram_client_first(&c, &b), 0);
	assert_buf_str(&b, RFC_CLIENT_FIRST);
	assert_int_equal(lv_scram_client_continue(&c, U(RFC_SERVER_FIRST), strlen(RFC_SERVER_FIRST),
						  &b, &err),
			 0);
	assert_buf_str(&b, RFC_CLIENT_FINAL);
	assert_memory_equal(c.client_key, rfc_client_key, 32);
	assert_int_equal(
		lv_scram_client_verify(&c, U(RFC_SERVER_FINAL), strlen(RFC_SERVER_FINAL), &err), 0);
	assert_int_equal(c.state, LV_SCRAM_DONE);
	lv_scram_client_cleanup(&c);
	lv_buf_cleanup(&b);
}

static void test_rfc7677_server(void **state)
{
	(void)state;
	lv_scram_secret_t secret;
	assert_int_equal(lv_scram_parse_secret(RFC_SECRET, &secret), 0);
	lv_scram_server_t s;
	lv_scram_server_init(&s);
	assert_int_equal(lv_scram_server_set_nonce(&s, RFC_SNONCE), 0);
	lv_buf_t b;
	lv_err_t err;
	lv_buf_init(&b);
	assert_int_equal(lv_scram_server_first(&s, &secret, U(RFC_CLIENT_FIRST),
					       strlen(RFC_CLIENT_FIRST), &b, &err),
			 0);
	assert_buf_str(&b, RFC_SERVER_FIRST);
	assert_int_equal(
		lv_scram_server_final(&s, U(RFC_CLIENT_FINAL), strlen(RFC_CLIENT_FINAL), &b, &err),
		0);
	assert_buf_str(&b, RFC_SERVER_FINAL);
	assert_int_equal(s.state, LV_SCRAM_DONE);
	assert_memory_equal(s.client_key, rfc_client_key, 32);
	lv_scram_server_cleanup(&s);
	lv_buf_cleanup(&b);
}

/* Keys mode reproduces the password-mode exchange exactly. */
static void test_rfc7677_client_keys(void **state)
{
	(void)state;
	lv_scram_secret_t secret;
	assert_int_equal(lv_scram_parse_secret(RFC_SECRET, &secret), 0);
	lv_scram_client_t c;
	lv_buf_t b;
	lv_err_t err;
	lv_buf_init(&b);
	lv_scram_client_init_keys(&c, rfc_client_key, secret.server_key);
	assert_int_equal(lv_scram_client_set_user(&c, "user"), 0);
	assert_int_equal(lv_scram_client_set_nonce(&c, RFC_CNONCE), 0);
	assert_int_equal(lv_scram_client_first(&c, &b), 0);
	assert_buf_str(&b, RFC_CLIENT_FIRST);
	assert_int_equal(lv_scram_client_continue(&c, U(RFC_SERVER_FIRST), strlen(RFC_SERVER_FIRST),
						  &b, &err),
			 0);
	assert_buf_str(&b, RFC_CLIENT_FINAL);
	assert_int_equal(
		lv_scram_client_verify(&c, U(RFC_SERVER_FINAL), strlen(RFC_SERVER_FINAL), &err), 0);
	lv_buf_cleanup(&b);
}

/* ------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------ */

/* Runs a full exchange; returns the first non-zero status (or 0). */
static int exchange(lv_scram_client_t *c, lv_scram_server_t *s, const lv_scram_secret_t *secret,
		    const char *mock_user)
{
	static const uint8_t mock_key[LV_SCRAM_KEY_LEN] = {42};
	lv_buf_t m1, m2, m3, m4;
	lv_err_t err;
	int rc;
	lv_buf_init(&m1);
	lv_buf_init(&m2);
	lv_buf_init(&m3);
	lv_buf_init(&m4);
	if ((rc = lv_scram_client_first(c, &m1)) != 0)
		goto out;
	if (mock_user)
		rc = lv_scram_server_first_mock(s, mock_user, mock_key, m1.data, m1.len, &m2, &err);
	else
		rc = lv_scram_server_first(s, secret, m1.data, m1.len, &m2, &err);
	if (rc != 0)
		goto out;
	if ((rc = lv_scram_client_continue(c, m2.data, m2.len, &m3, &err)) != 0)
		goto out;
	if ((rc = lv_scram_server_final(s, m3.data, m3.len, &m4, &err)) != 0) {
		assert_int_equal(m4.len, 0);
		goto out;
	}
	rc = lv_scram_client_verify(c, m4.data, m4.len, &err);
out:
	lv_buf_cleanup(&m1);
	lv_buf_cleanup(&m2);
	lv_buf_cleanup(&m3);
	lv_buf_cleanup(&m4);
	return rc;
}

static void test_round_trip(void **state)
{
	(void)state;
	lv_scram_secret_t secret;
	assert_int_equal(lv_scram_secret_from_password("s3cret", &secret), 0);
	assert_int_equal(secret.iterations, LV_SCRAM_ITERATIONS);
	assert_int_equal(secret.salt_len, LV_SCRAM_SALT_LEN);

	/* Password mode, random nonces. */
	lv_scram_client_t c;
	lv_scram_server_t s;
	lv_scram_server_init(&s);
	assert_int_equal(lv_scram_client_init(&c, "s3cret"), 0);
	assert_int_equal(exchange(&c, &s, &secret, NULL), 0);
	assert_int_equal(s.state, LV_SCRAM_DONE);
	assert_int_equal(c.state, LV_SCRAM_DONE);
	assert_memory_equal(s.client_key, c.client_key, 32);

	/* Keys mode with what the server recovered: Levee logging in onward. */
	uint8_t ck[32];
	memcpy(ck, s.client_key, 32);
	lv_scram_client_init_keys(&c, ck, secret.server_key);
	lv_scram_server_init(&s);
	assert_int_equal(exchange(&c, &s, &secret, NULL), 0);
	assert_int_equal(c.state, LV_SCRAM_DONE);

	/* A wrong password fails on the server with LV_EAUTH. */
	assert_int_equal(lv_scram_client_init(&c, "s3cret!"), 0);
	lv_scram_server_init(&s);
	assert_int_equal(exchange(&c, &s, &secret, NULL), LV_EAUTH);
	assert_int_equal(s.state, LV_SCRAM_FAILED);

	/* Keys that do not match the secret fail the same way. */
	ck[0] ^= 1;
	lv_scram_client_init_keys(&c, ck, secret.server_key);
	lv_scram_server_init(&s);
	assert_int_equal(exchange(&c, &s, &secret, NULL), LV_EAUTH);

	/* A client with the right ClientKey but a wrong ServerKey rejects the server. */
	ck[0] ^= 1;
	uint8_t sk[32];
	memcpy(sk, secret.server_key, 32);
	sk[31] ^= 0x80;
	lv_scram_client_init_keys(&c, ck, sk);
	lv_scram_server_init(&s);
	assert_int_equal(exchange(&c, &s, &secret, NULL), LV_EAUTH);
	assert_int_equal(s.state, LV_SCRAM_DONE);
	assert_int_equal(c.state, LV_SCRAM_FAILED);
	lv_scram_client_cleanup(&c);
	lv_scram_server_cleanup(&s);
}

/* Extracts the s= attribute of a server-first-message. */
static void salt_of(const lv_buf_t *b, char out[64])
{
	const char *p = memmem(b->data, b->len, ",s=", 3);
	assert_non_null(p);
	p += 3;
	const char *e = memchr(p, ',', (size_t)((const char *)b->data + b->len - p));
	assert_non_null(e);
	snprintf(out, 64, "%.*s", (int)(e - p), p);
}

static void test_mock(void **state)
{
	(void)state;
	static const uint8_t key[LV_SCRAM_KEY_LEN] = {1, 2, 3};
	static const char cf[] = "n,,n=,r=abcdefghijkl";
	char salt1[64], salt2[64], salt3[64];
	lv_scram_server_t s;
	lv_buf_t b;
	lv_err_t err;
	lv_buf_init(&b);

	lv_scram_server_init(&s);
	assert_int_equal(lv_scram_server_first_mock(&s, "ghost", key, U(cf), strlen(cf), &b, &err),
			 0);
	assert_non_null(memmem(b.data, b.len, ",i=4096", 7));
	salt_of(&b, salt1);
	lv_buf_reset(&b);
	lv_scram_server_init(&s);
	assert_int_equal(lv_scram_server_first_mock(&s, "ghost", key, U(cf), strlen(cf), &b, &err),
			 0);
	salt_of(&b, salt2);
	lv_buf_reset(&b);
	lv_scram_server_init(&s);
	assert_int_equal(
		lv_scram_server_first_mock(&s, "phantom", key, U(cf), strlen(cf), &b, &err), 0);
	salt_of(&b, salt3);
	assert_string_equal(salt1, salt2); /* stable per user */
	assert_string_not_equal(salt1, salt3);
	assert_int_equal(strlen(salt1), 24); /* 16 bytes, like a real secret */
	lv_buf_cleanup(&b);

	/* A full exchange against the mock fails exactly like a wrong password. */
	lv_scram_client_t c;
	assert_int_equal(lv_scram_client_init(&c, "anything"), 0);
	lv_scram_server_init(&s);
	assert_int_equal(exchange(&c, &s, NULL, "ghost"), LV_EAUTH);
	assert_int_equal(s.state, LV_SCRAM_FAILED);
}

/* ------------------------------------------------------------------------
 * Malformed messages
 * ------------------------------------------------------------------------ */

static void test_bad_client_first(void **state)
{
	(void)state;
	static const struct {
		const char *msg;
		int rc;
	} cases[] = {
		{"n,,n=,r=abc", 0},
		{"y,,n=,r=abc", 0},
		{"n,,n=user,r=abc,x=ext", 0}, /* extensions are ignored */
		{"", LV_EPROTO},
		{"n", LV_EPROTO},
		{"n,", LV_EPROTO},
		{"x,,n=,r=abc", LV_EPROTO},
		{"p=tls-server-end-point,,n=,r=abc", LV_EUNSUPP},
		{"n,a=bob,n=,r=abc", LV_EUNSUPP},
		{"n,,m=must,n=,r=abc", LV_EUNSUPP},
		{"n,,r=abc", LV_EPROTO}, /* username missing */
		{"n,,n=", LV_EPROTO},    /* nonce missing */
		{"n,,n=,", LV_EPROTO},
		{"n,,n=,r=", LV_EPROTO},    /* empty nonce */
		{"n,,n=,r=a b", LV_EPROTO}, /* space is not printable */
		{"n,,n=,r=a\x7f", LV_EPROTO},
		{"n,,n=,r=abc,", LV_EPROTO}, /* trailing comma */
		{"n,,n=,r=abc,garbage", LV_EPROTO},
		{"n,,n=,x=abc", LV_EPROTO},
	};
	static const lv_scram_secret_t secret = {.iterations = 4096, .salt_len = 4};
	lv_buf_t b;
	lv_buf_init(&b);
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		lv_scram_server_t s;
		lv_err_t err = {0};
		lv_scram_server_init(&s);
		lv_buf_reset(&b);
		int rc = lv_scram_server_first(&s, &secret, U(cases[i].msg), strlen(cases[i].msg),
					       &b, &err);
		if (rc != cases[i].rc)
			fail_msg("\"%s\": got %s, want %s", cases[i].msg, lv_status_name(rc),
				 lv_status_name(cases[i].rc));
		if (rc != 0) {
			assert_int_equal(s.state, LV_SCRAM_FAILED);
			assert_int_equal(err.code, rc);
			assert_int_equal(b.len, 0);
		}
	}

	/* The channel-binding refusal says why. */
	lv_scram_server_t s;
	lv_err_t err;
	lv_scram_server_init(&s);
	const char *pm = "p=tls-server-end-point,,n=,r=abc";
	assert_int_equal(lv_scram_server_first(&s, &secret, U(pm), strlen(pm), &b, &err),
			 LV_EUNSUPP);
	assert_non_null(strstr(err.msg, "channel binding"));

	/* A NUL byte inside, and an oversized message. */
	lv_scram_server_init(&s);
	assert_int_equal(lv_scram_server_first(&s, &secret, U("n,,n=\0,r=abc"), 12, &b, &err),
			 LV_EPROTO);
	char big[LV_SCRAM_MAX_MSG_LEN + 10];
	memset(big, 'a', sizeof(big));
	memcpy(big, "n,,n=,r=", 8);
	lv_scram_server_init(&s);
	assert_int_equal(lv_scram_server_first(&s, &secret, U(big), sizeof(big), &b, &err),
			 LV_ETOOBIG);

	/* Called twice. */
	lv_scram_server_init(&s);
	assert_int_equal(lv_scram_server_first(&s, &secret, U("n,,n=,r=abc"), 11, &b, &err), 0);
	assert_int_equal(lv_scram_server_first(&s, &secret, U("n,,n=,r=abc"), 11, &b, &err),
			 LV_EINVAL);
	lv_buf_cleanup(&b);
}

static void test_bad_client_final(void **state)
{
	(void)state;
	lv_scram_secret_t secret;
	assert_int_equal(lv_scram_parse_secret(RFC_SECRET, &secret), 0);
#define N RFC_CNONCE RFC_SNONCE
#define P ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	static const struct {
		const char *first; /* client-first; NULL for RFC_CLIENT_FIRST */
		const char *final;
		int rc;
	} cases[] = {
		{NULL, RFC_CLIENT_FINAL, 0},
		{NULL, "c=eSws,r=" N P, LV_EPROTO}, /* 'y' binding after 'n' */
		{NULL, "c=biwsx,r=" N P, LV_EPROTO},
		{NULL, "r=" N P, LV_EPROTO},                 /* channel binding missing */
		{NULL, "c=biws,r=" RFC_CNONCE P, LV_EPROTO}, /* only the client's nonce */
		{NULL, "c=biws,r=" N "x" P, LV_EPROTO},
		{NULL, "c=biws,r=" N, LV_EPROTO}, /* no proof */
		{NULL, "c=biws,r=" N ",p=", LV_EPROTO},
		{NULL, "c=biws,r=" N ",p=!!!!", LV_EPROTO},
		{NULL, "c=biws,r=" N ",p=AAAA", LV_EPROTO}, /* 3 bytes, not 32 */
		{NULL, "c=biws,r=" N P ",x=1", LV_EPROTO},  /* proof must be last */
		{NULL, "c=biws,r=" N ",x=ext" P, LV_EAUTH}, /* extension alters AuthMessage */
		{NULL, "c=biws,r=" N ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVM=", LV_EAUTH},
		{"y,,n=user,r=" RFC_CNONCE, "c=biws,r=" N P, LV_EPROTO},
		{"y,,n=user,r=" RFC_CNONCE, "c=eSws,r=" N P, LV_EAUTH}, /* binding ok, proof not */
	};
#undef N
#undef P
	lv_buf_t b;
	lv_buf_init(&b);
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		lv_scram_server_t s;
		lv_err_t err = {0};
		const char *first = cases[i].first ? cases[i].first : RFC_CLIENT_FIRST;
		lv_scram_server_init(&s);
		assert_int_equal(lv_scram_server_set_nonce(&s, RFC_SNONCE), 0);
		assert_int_equal(
			lv_scram_server_first(&s, &secret, U(first), strlen(first), &b, &err), 0);
		lv_buf_reset(&b);
		int rc = lv_scram_server_final(&s, U(cases[i].final), strlen(cases[i].final), &b,
					       &err);
		if (rc != cases[i].rc)
			fail_msg("case %zu \"%s\": got %s (%s), want %s", i, cases[i].final,
				 lv_status_name(rc), err.msg, lv_status_name(cases[i].rc));
		if (rc != 0) {
			assert_int_equal(b.len, 0);
			assert_int_equal(s.state, LV_SCRAM_FAILED);
		}
		lv_buf_reset(&b);
	}

	/* Final before first. */
	lv_scram_server_t s;
	lv_err_t err;
	lv_scram_server_init(&s);
	assert_int_equal(
		lv_scram_server_final(&s, U(RFC_CLIENT_FINAL), strlen(RFC_CLIENT_FINAL), &b, &err),
		LV_EINVAL);
	lv_buf_cleanup(&b);
}

static void test_bad_server_first(void **state)
{
	(void)state;
#define R "r=" RFC_CNONCE "srv"
	static const struct {
		const char *msg;
		int rc;
	} cases[] = {
		{R ",s=" RFC_SALT64 ",i=4096", 0},
		{R ",s=" RFC_SALT64 ",i=1,e=ext", 0},
		{"s=" RFC_SALT64 ",i=4096", LV_EPROTO},                  /* missing r= */
		{"r=" RFC_CNONCE ",s=" RFC_SALT64 ",i=4096", LV_EPROTO}, /* nothing added */
		{"r=XOprNGfwEbeRWgbNEkqOsrv,s=" RFC_SALT64 ",i=4096", LV_EPROTO}, /* mismatch */
		{"r=rOpr,s=" RFC_SALT64 ",i=4096", LV_EPROTO},                    /* shorter */
		{R ",s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096", LV_EPROTO},               /* bad base64 */
		{R ",s=W22ZaJ0SNY7soEsUEjb6g Q==,i=4096", LV_EPROTO},
		{R ",s=,i=4096", LV_EPROTO}, /* empty salt */
		{R ",i=4096", LV_EPROTO},
		{R ",s=" RFC_SALT64 ",i=0", LV_EPROTO},
		{R ",s=" RFC_SALT64 ",i=-1", LV_EPROTO},
		{R ",s=" RFC_SALT64 ",i=", LV_EPROTO},
		{R ",s=" RFC_SALT64 ",i=4k", LV_EPROTO},
		{R ",s=" RFC_SALT64 ",i=99999999999", LV_EPROTO},
		{R ",s=" RFC_SALT64 ",i=10000001", LV_EPROTO}, /* above the cap */
		{R ",s=" RFC_SALT64, LV_EPROTO},
		{R ",s=" RFC_SALT64 ",i=4096,", LV_EPROTO},
		{"m=x," R ",s=" RFC_SALT64 ",i=4096", LV_EUNSUPP},
	};
#undef R
	lv_buf_t b;
	lv_buf_init(&b);
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		lv_scram_client_t c;
		lv_err_t err = {0};
		assert_int_equal(lv_scram_client_init(&c, "pw"), 0);
		assert_int_equal(lv_scram_client_set_nonce(&c, RFC_CNONCE), 0);
		assert_int_equal(lv_scram_client_first(&c, &b), 0);
		lv_buf_reset(&b);
		int rc = lv_scram_client_continue(&c, U(cases[i].msg), strlen(cases[i].msg), &b,
						  &err);
		if (rc != cases[i].rc)
			fail_msg("\"%s\": got %s (%s), want %s", cases[i].msg, lv_status_name(rc),
				 err.msg, lv_status_name(cases[i].rc));
		if (rc != 0) {
			assert_int_equal(b.len, 0);
			assert_int_equal(c.state, LV_SCRAM_FAILED);
			assert_true(err.msg[0] != '\0');
		}
		lv_buf_reset(&b);
	}

	/* Out of order: continue before first; first twice. */
	lv_scram_client_t c;
	lv_err_t err;
	assert_int_equal(lv_scram_client_init(&c, "pw"), 0);
	assert_int_equal(lv_scram_client_continue(&c, U(RFC_SERVER_FIRST), strlen(RFC_SERVER_FIRST),
						  &b, &err),
			 LV_EINVAL);
	assert_int_equal(lv_scram_client_init(&c, "pw"), 0);
	assert_int_equal(lv_scram_client_first(&c, &b), 0);
	assert_int_equal(lv_scram_client_first(&c, &b), LV_EINVAL);
	lv_buf_cleanup(&b);
}

static void test_bad_server_final(void **state)
{
	(void)state;
	static const struct {
		const char *msg;
		int rc;
	} cases[] = {
		{RFC_SERVER_FINAL, 0},
		{RFC_SERVER_FINAL ",x=ext", 0},
		/* Non-canonical base64 (the unused low bits of '5' are set). */
		{"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=", LV_EPROTO},
		/* Canonical, but one bit of the signature differs. */
		{"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G8=", LV_EAUTH},
		{"e=invalid-proof", LV_EAUTH},
		{"v=", LV_EPROTO},
		{"v=AAAA", LV_EPROTO},
		{"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4", LV_EPROTO},
		{"", LV_EPROTO},
		{"x=1", LV_EPROTO},
	};
	lv_buf_t b;
	lv_buf_init(&b);
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		lv_scram_client_t c;
		lv_err_t err = {0};
		assert_int_equal(lv_scram_client_init(&c, RFC_PASSWORD), 0);
		assert_int_equal(lv_scram_client_set_user(&c, "user"), 0);
		assert_int_equal(lv_scram_client_set_nonce(&c, RFC_CNONCE), 0);
		assert_int_equal(lv_scram_client_first(&c, &b), 0);
		assert_int_equal(lv_scram_client_continue(&c, U(RFC_SERVER_FIRST),
							  strlen(RFC_SERVER_FIRST), &b, &err),
				 0);
		int want = cases[i].rc;
		int rc = lv_scram_client_verify(&c, U(cases[i].msg), strlen(cases[i].msg), &err);
		if (rc != want)
			fail_msg("\"%s\": got %s (%s), want %s", cases[i].msg, lv_status_name(rc),
				 err.msg, lv_status_name(want));
		if (strcmp(cases[i].msg, "e=invalid-proof") == 0)
			assert_non_null(strstr(err.msg, "invalid-proof"));
		lv_buf_reset(&b);
	}
	lv_buf_cleanup(&b);
}

/* ------------------------------------------------------------------------
 * Secrets, MD5, base64
 * ------------------------------------------------------------------------ */

static void test_secrets(void **state)
{
	(void)state;
	uint8_t salt[16];
	rfc_salt(salt);
	char out[LV_SCRAM_SECRET_MAX_LEN];
	assert_int_equal(lv_scram_build_secret("pencil", salt, 16, 4096, out, sizeof(out)), 0);
	assert_string_equal(out, RFC_SECRET);
	assert_int_equal(lv_scram_build_secret("pencil", salt, 16, 4096, out, 50), LV_ETOOBIG);
	assert_int_equal(lv_scram_build_secret("pencil", salt, 0, 4096, out, sizeof(out)),
			 LV_EINVAL);
	assert_int_equal(lv_scram_build_secret("pencil", salt, 16, 0, out, sizeof(out)), LV_EINVAL);

	lv_scram_secret_t s;
	assert_int_equal(lv_scram_parse_secret(RFC_SECRET, &s), 0);
	assert_int_equal(s.iterations, 4096);
	assert_int_equal(s.salt_len, 16);
	assert_memory_equal(s.salt, salt, 16);
	assert_true(lv_scram_secret_check_password(&s, "pencil"));
	assert_false(lv_scram_secret_check_password(&s, "pencil "));
	assert_int_equal(lv_scram_format_secret(&s, out, sizeof(out)), 0);
	assert_string_equal(out, RFC_SECRET);

#define ST "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
#define SV "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
	static const char *const bad[] = {
		"",
		"SCRAM-SHA-256$",
		"SCRAM-SHA-1$4096:" RFC_SALT64 "$" ST ":" SV, /* wrong mechanism */
		"SCRAM-SHA-256$0:" RFC_SALT64 "$" ST ":" SV,  /* no iterations */
		"SCRAM-SHA-256$x:" RFC_SALT64 "$" ST ":" SV,
		"SCRAM-SHA-256$99999999999:" RFC_SALT64 "$" ST ":" SV,
		"SCRAM-SHA-256$4096:$" ST ":" SV,                   /* empty salt */
		"SCRAM-SHA-256$4096:" RFC_SALT64 "$" ST "x:" SV,    /* bad base64 */
		"SCRAM-SHA-256$4096:" RFC_SALT64 "$AAAA:" SV,       /* StoredKey too short */
		"SCRAM-SHA-256$4096:" RFC_SALT64 "$" ST ":AAAA",    /* ServerKey too short */
		"SCRAM-SHA-256$4096:" RFC_SALT64 "$" ST,            /* no ServerKey */
		"SCRAM-SHA-256$4096:" RFC_SALT64 "$" ST ":" SV " ", /* trailing space */
		"SCRAM-SHA-256$4096:" RFC_SALT64 ":" ST ":" SV,     /* ':' for '$' */
	};
#undef ST
#undef SV
	for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
		if (lv_scram_parse_secret(bad[i], &s) != LV_EINVAL)
			fail_msg("accepted bad secret \"%s\"", bad[i]);
		assert_int_equal(lv_secret_kind(bad[i]), LV_SECRET_PLAIN);
	}

	assert_int_equal(lv_secret_kind(RFC_SECRET), LV_SECRET_SCRAM);
	assert_int_equal(lv_secret_kind("md553f48b7c4b76a86ce72276c5755f217d"), LV_SECRET_MD5);
	assert_int_equal(lv_secret_kind("md553F48B7C4B76A86CE72276C5755F217D"), LV_SECRET_PLAIN);
	assert_int_equal(lv_secret_kind("md553f48b7c4b76a86ce72276c5755f217"), LV_SECRET_PLAIN);
	assert_int_equal(lv_secret_kind("hunter2"), LV_SECRET_PLAIN);

	/* Random salts differ; both secrets accept the password. */
	lv_scram_secret_t a, b2;
	assert_int_equal(lv_scram_secret_from_password("pw", &a), 0);
	assert_int_equal(lv_scram_secret_from_password("pw", &b2), 0);
	assert_memory_not_equal(a.salt, b2.salt, LV_SCRAM_SALT_LEN);
	assert_true(lv_scram_secret_check_password(&a, "pw"));
	assert_true(lv_scram_secret_check_password(&b2, "pw"));

	/* Client-side limits. */
	lv_scram_client_t c;
	char longpw[LV_SCRAM_MAX_PASSWORD_LEN + 2];
	memset(longpw, 'p', sizeof(longpw) - 1);
	longpw[sizeof(longpw) - 1] = '\0';
	assert_int_equal(lv_scram_client_init(&c, longpw), LV_ETOOBIG);
	assert_int_equal(lv_scram_client_init(&c, "pw"), 0);
	assert_int_equal(lv_scram_client_set_nonce(&c, "has,comma"), LV_EINVAL);
	assert_int_equal(lv_scram_client_set_nonce(&c, ""), LV_EINVAL);
	assert_int_equal(lv_scram_client_set_user(&c, "a=b,c"), 0);
	assert_int_equal(lv_scram_client_set_nonce(&c, "nonce"), 0);
	lv_buf_t buf;
	lv_buf_init(&buf);
	assert_int_equal(lv_scram_client_first(&c, &buf), 0);
	assert_buf_str(&buf, "n,,n=a=3Db=2Cc,r=nonce");
	lv_buf_cleanup(&buf);
}

static void test_md5(void **state)
{
	(void)state;
	char hex[33], out[36];
	assert_int_equal(lv_md5_hex("", 0, hex), 0);
	assert_string_equal(hex, "d41d8cd98f00b204e9800998ecf8427e");
	assert_int_equal(lv_md5_hex("abc", 3, hex), 0);
	assert_string_equal(hex, "900150983cd24fb0d6963f7d28e17f72");

	/* md5 || md5hex("secret" || "postgres"), as PostgreSQL stores it. */
	assert_int_equal(lv_md5_secret("postgres", "secret", out), 0);
	assert_string_equal(out, "md553f48b7c4b76a86ce72276c5755f217d");

	static const uint8_t salt[4] = {1, 2, 3, 4};
	static const uint8_t salt2[4] = {0xde, 0xad, 0xbe, 0xef};
	assert_int_equal(lv_md5_password("postgres", "secret", salt, out), 0);
	assert_string_equal(out, "md5bb41a296aab6baccb36ff243a562abff");
	/* A stored MD5 secret gives the same answer without the password. */
	assert_int_equal(
		lv_md5_password("postgres", "md553f48b7c4b76a86ce72276c5755f217d", salt, out), 0);
	assert_string_equal(out, "md5bb41a296aab6baccb36ff243a562abff");
	assert_int_equal(lv_md5_password("postgres", "secret", salt2, out), 0);
	assert_string_equal(out, "md5c546d0bbed2af888b328536b45c76348");

	const char *good = "md5bb41a296aab6baccb36ff243a562abff";
	assert_true(lv_md5_verify("postgres", "secret", salt, good));
	assert_true(lv_md5_verify("postgres", "md553f48b7c4b76a86ce72276c5755f217d", salt, good));
	assert_false(lv_md5_verify("postgres", "secret", salt2, good));
	assert_false(lv_md5_verify("postgre", "secret", salt, good));
	assert_false(lv_md5_verify("postgres", "secret!", salt, good));
	assert_false(
		lv_md5_verify("postgres", "secret", salt, "md5bb41a296aab6baccb36ff243a562abf"));
	assert_false(
		lv_md5_verify("postgres", "secret", salt, "md5bb41a296aab6baccb36ff243a562abff0"));
	assert_false(
		lv_md5_verify("postgres", "secret", salt, "md5BB41A296AAB6BACCB36FF243A562ABFF"));
	assert_false(lv_md5_verify("postgres", "secret", salt, ""));
	/* A SCRAM secret can never answer an MD5 challenge. */
	assert_false(lv_md5_verify("user", RFC_SECRET, salt, good));
}

static void test_base64(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int rc;
		const char *out;
	} cases[] = {
		{"", 0, ""},
		{"QQ==", 0, "A"},
		{"QUI=", 0, "AB"},
		{"QUJD", 0, "ABC"},
		{"cGVuY2ls", 0, "pencil"},
		{"QR==", LV_EINVAL, NULL}, /* unused bits set */
		{"QUJ=", LV_EINVAL, NULL},
		{"QQ=", LV_EINVAL, NULL},
		{"Q===", LV_EINVAL, NULL},
		{"====", LV_EINVAL, NULL},
		{"QQ=A", LV_EINVAL, NULL},
		{"=QQA", LV_EINVAL, NULL},
		{" QQ=", LV_EINVAL, NULL},
		{"QQ==\n", LV_EINVAL, NULL},
		{"Q-_A", LV_EINVAL, NULL}, /* base64url is not base64 */
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		uint8_t out[16];
		size_t n = 99;
		int rc = lv_scram_base64_decode(cases[i].in, strlen(cases[i].in), out, sizeof(out),
						&n);
		if (rc != cases[i].rc)
			fail_msg("\"%s\": got %s", cases[i].in, lv_status_name(rc));
		if (rc == 0) {
			assert_int_equal(n, strlen(cases[i].out));
			assert_memory_equal(out, cases[i].out, n);
			char enc[32];
			assert_int_equal(lv_scram_base64_encode(out, n, enc, sizeof(enc)),
					 (int)strlen(cases[i].in));
			assert_string_equal(enc, cases[i].in);
		}
	}
	uint8_t small[2];
	size_t n;
	assert_int_equal(lv_scram_base64_decode("QUJD", 4, small, 2, &n), LV_ETOOBIG);
	assert_int_equal(lv_scram_base64_decode("QUI=", 4, small, 2, &n), 0);
	char big[1100];
	memset(big, 'A', sizeof(big));
	uint8_t sink[1024];
	assert_int_equal(lv_scram_base64_decode(big, 1028, sink, sizeof(sink), &n), LV_ETOOBIG);
	assert_int_equal(lv_scram_base64_decode(big, 1024, sink, sizeof(sink), &n), 0);
	assert_int_equal(n, 768);
	char enc[8];
	assert_int_equal(lv_scram_base64_encode((const uint8_t *)"ABCD", 4, enc, 8), LV_ETOOBIG);
	assert_int_equal(lv_scram_base64_encode((const uint8_t *)"ABCD", 4, enc, 9), 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7677_client),
		cmocka_unit_test(test_rfc7677_server),
		cmocka_unit_test(test_rfc7677_client_keys),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_mock),
		cmocka_unit_test(test_bad_client_first),
		cmocka_unit_test(test_bad_client_final),
		cmocka_unit_test(test_bad_server_first),
		cmocka_unit_test(test_bad_server_final),
		cmocka_unit_test(test_secrets),
		cmocka_unit_test(test_md5),
		cmocka_unit_test(test_base64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
