/* SPDX-License-Identifier: ISC */
/*
 * Result-cache keys (see key.h for the encoding and why hash collisions are
 * harmless).
 *
 * The hash is SipHash-2-4, written here from the algorithm's description
 * (Aumasson and Bernstein, 2012): a keyed PRF, so a client that can choose
 * statement text and parameters cannot aim many keys at one bucket without
 * knowing the seed. The seed is process-wide, set once at startup by the
 * caller from a CSPRNG; the built-in default keeps unit tests deterministic.
 *
 * Owns: only the bytes in each key's buffer (request lifetime).
 */
#include "core/lv.h"
#include "cache/key.h"

#include <openssl/evp.h>

const char *const lv_cache_key_setting_names[LV_CACHE_KEY_N_SETTINGS] = {
	"search_path",        "role",          "TimeZone",
	"DateStyle",          "IntervalStyle", "client_encoding",
	"extra_float_digits", "bytea_output",
};

static uint8_t key_seed[16] = {0x6c, 0x65, 0x76, 0x65, 0x65, 0x2d, 0x63, 0x61,
			       0x63, 0x68, 0x65, 0x2d, 0x6b, 0x65, 0x79, 0x31};

/* ------------------------------------------------------------------------
 * SipHash-2-4
 * ------------------------------------------------------------------------ */

static inline uint64_t rotl64(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

#define SIP_ROUND(v0, v1, v2, v3)    \
	do {                         \
		v0 += v1;            \
		v1 = rotl64(v1, 13); \
		v1 ^= v0;            \
		v0 = rotl64(v0, 32); \
		v2 += v3;            \
		v3 = rotl64(v3, 16); \
		v3 ^= v2;            \
		v0 += v3;            \
		v3 = rotl64(v3, 21); \
		v3 ^= v0;            \
		v2 += v1;            \
		v1 = rotl64(v1, 17); \
		v1 ^= v2;            \
		v2 = rotl64(v2, 32); \
	} while (0)

uint64_t lv_cache_siphash(const uint8_t key[16], const void *data, size_t n)
{
	const uint8_t *p = data;
	uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
	uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
	uint64_t v3 = k1 ^ 0x7465646279746573ULL;

	size_t full = n & ~(size_t)7;
	for (size_t i = 0; i < full; i += 8) {
		uint64_t m = load_le64(p + i);
		v3 ^= m;
		SIP_ROUND(v0, v1, v2, v3);
		SIP_ROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	/* Last block: the remaining bytes little-endian, the length's low byte on top. */
	uint64_t b = (uint64_t)n << 56;
	for (size_t i = 0; i < (n & 7); i++)
		b |= (uint64_t)p[full + i] << (8 * i);
	v3 ^= b;
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	v0 ^= b;

	v2 ^= 0xff;
	for (int r = 0; r < 4; r++)
		SIP_ROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

void lv_cache_key_set_seed(const uint8_t seed[16])
{
	memcpy(key_seed, seed, sizeof(key_seed));
}

uint64_t lv_cache_key_hash_bytes(const void *p, size_t n)
{
	return lv_cache_siphash(key_seed, p, n);
}

/* ------------------------------------------------------------------------
 * Builder
 * ------------------------------------------------------------------------ */

void lv_cache_key_init(lv_cache_key_t *k)
{
	lv_buf_init(&k->buf);
	k->hash = 0;
	k->failed = false;
}

void lv_cache_key_cleanup(lv_cache_key_t *k)
{
	lv_buf_cleanup(&k->buf);
	k->hash = 0;
	k->failed = false;
}

void lv_cache_key_reset(lv_cache_key_t *k)
{
	lv_buf_reset(&k->buf);
	k->hash = 0;
	k->failed = false;
}

/* Appends a field made of two parts (the second may be empty), as one length. */
static bool add2(lv_cache_key_t *k, lv_cache_key_tag_t tag, const void *a, size_t na, const void *b,
		 size_t nb)
{
	if (na > UINT32_MAX || nb > UINT32_MAX - na || !lv_buf_reserve(&k->buf, 5 + na + nb)) {
		k->failed = true;
		return false;
	}
	uint8_t hdr[5];
	hdr[0] = (uint8_t)tag;
	lv_set_u32(hdr + 1, (uint32_t)(na + nb));
	/* Cannot fail: the room was reserved above. */
	bool ok = lv_buf_append(&k->buf, hdr, sizeof(hdr)) && lv_buf_append(&k->buf, a, na) &&
		  lv_buf_append(&k->buf, b, nb);
	LV_ASSERT(ok);
	(void)ok;
	return true;
}

bool lv_cache_key_add(lv_cache_key_t *k, lv_cache_key_tag_t tag, const void *p, size_t n)
{
	return add2(k, tag, p, n, NULL, 0);
}

bool lv_cache_key_add_str(lv_cache_key_t *k, lv_cache_key_tag_t tag, const char *s)
{
	return add2(k, tag, s, s ? strlen(s) : 0, NULL, 0);
}

bool lv_cache_key_add_setting(lv_cache_key_t *k, const char *name, const char *value)
{
	if (!value)
		value = "";
	/* The name carries its NUL: names never contain one, so the split is unambiguous. */
	return add2(k, LV_CACHE_KEY_SETTING, name, strlen(name) + 1, value, strlen(value));
}

bool lv_cache_key_add_param(lv_cache_key_t *k, const void *p, size_t n, bool is_null)
{
	if (is_null)
		return add2(k, LV_CACHE_KEY_PARAM_NULL, NULL, 0, NULL, 0);
	return add2(k, LV_CACHE_KEY_PARAM, p, n, NULL, 0);
}

bool lv_cache_key_add_formats(lv_cache_key_t *k, lv_cache_key_tag_t tag, const uint8_t *codes,
			      size_t n_codes)
{
	bool all_same = true;
	for (size_t i = 1; i < n_codes && all_same; i++)
		all_same = codes[2 * i] == codes[0] && codes[2 * i + 1] == codes[1];
	if (all_same) {
		/* 'A' then the one code (0, text, when none is given). */
		uint8_t v[3] = {'A', n_codes ? codes[0] : 0, n_codes ? codes[1] : 0};
		return add2(k, tag, v, sizeof(v), NULL, 0);
	}
	return add2(k, tag, "L", 1, codes, 2 * n_codes);
}

bool lv_cache_key_finish(lv_cache_key_t *k)
{
	if (k->failed)
		return false;
	k->hash = lv_cache_key_hash_bytes(lv_buf_head(&k->buf), lv_buf_unread(&k->buf));
	return true;
}

bool lv_cache_key_equal(const lv_cache_key_t *a, const lv_cache_key_t *b)
{
	size_t n = lv_buf_unread(&a->buf);
	return n == lv_buf_unread(&b->buf) &&
	       (n == 0 || memcmp(lv_buf_head(&a->buf), lv_buf_head(&b->buf), n) == 0);
}

void lv_cache_key_digest_hex(const lv_cache_key_t *k, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t md[32];
	unsigned int md_len = 0;
	const void *p = lv_buf_unread(&k->buf) ? (const void *)lv_buf_head(&k->buf) : "";
	if (EVP_Digest(p, lv_buf_unread(&k->buf), md, &md_len, EVP_sha256(), NULL) != 1 ||
	    md_len != 32) {
		/* Only on a broken libcrypto; an all-zero name never matches a real payload key. */
		memset(md, 0, sizeof(md));
	}
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}
