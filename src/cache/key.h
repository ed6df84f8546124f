/* SPDX-License-Identifier: ISC */
/*
 * Result-cache keys.
 *
 * What is keyed by what: a key is the exact byte string of tagged,
 * length-prefixed fields describing everything that can change a result:
 * database, user (left out when the rule's scope is shared), each session
 * setting that changes results (lv_cache_key_setting_names, in that order),
 * statement text, parameter formats, each parameter value (SQL NULL marked
 * distinctly from the empty string) and result formats. Each field is
 * encoded as tag (1 byte), length (4 bytes, big-endian), bytes, so no two
 * different field sequences give the same key bytes ("ab","c" is not
 * "a","bc").
 *
 * The 64-bit hash (SipHash-2-4 with a process-wide seed) only chooses a
 * stripe and a bucket; the memory store compares the full key bytes before
 * serving an entry, and the Redis (L2) payload carries the full key, which
 * decode compares too. A hash collision therefore costs a bucket walk, never
 * a wrong answer. The Redis key name is the SHA-256 hex of the key bytes
 * (lv_cache_key_digest_hex), so it is stable across instances and restarts.
 *
 * A key builder is a plain value owned by its user (request lifetime); the
 * functions here allocate only inside the embedded buffer.
 */
#ifndef LEVEE_CACHE_KEY_H
#define LEVEE_CACHE_KEY_H

#include "core/lv.h"
#include "core/buf.h"

/* Field tags; the values are part of the L2 format and must never change. */
typedef enum lv_cache_key_tag {
	LV_CACHE_KEY_DB = 1,             /* database name */
	LV_CACHE_KEY_USER = 2,           /* user name (absent for shared scope) */
	LV_CACHE_KEY_SETTING = 3,        /* "name\0value" of one session setting */
	LV_CACHE_KEY_TEXT = 4,           /* statement text as sent */
	LV_CACHE_KEY_PARAM_FORMATS = 5,  /* normalised parameter format codes */
	LV_CACHE_KEY_PARAM = 6,          /* one parameter value (possibly empty) */
	LV_CACHE_KEY_PARAM_NULL = 7,     /* one SQL NULL parameter (no bytes) */
	LV_CACHE_KEY_RESULT_FORMATS = 8, /* normalised result format codes */
	LV_CACHE_KEY_OTHER = 9,          /* anything else the caller wants keyed */
} lv_cache_key_tag_t;

typedef struct lv_cache_key {
	lv_buf_t buf;  /* the key bytes; owned */
	uint64_t hash; /* valid after lv_cache_key_finish() */
	bool failed;   /* an add ran out of memory; finish then fails */
} lv_cache_key_t;

/* The settings that change results, in the order a key must list them. */
extern const char *const lv_cache_key_setting_names[];
#define LV_CACHE_KEY_N_SETTINGS 8

/* An empty key. */
void lv_cache_key_init(lv_cache_key_t *k);
/* Frees the key bytes; the key may be initialised again. */
void lv_cache_key_cleanup(lv_cache_key_t *k);
/* Empties the key, keeping its allocation. */
void lv_cache_key_reset(lv_cache_key_t *k);

/*
 * Appends one field. False on OOM (or n > 4 GiB); the failure is also
 * remembered, so a caller may add everything and check only finish.
 */
bool lv_cache_key_add(lv_cache_key_t *k, lv_cache_key_tag_t tag, const void *p, size_t n);
/* lv_cache_key_add() of a C string without its NUL. */
bool lv_cache_key_add_str(lv_cache_key_t *k, lv_cache_key_tag_t tag, const char *s);
/* A SETTING field "name\0value"; a NULL value (setting unknown) keys as "". */
bool lv_cache_key_add_setting(lv_cache_key_t *k, const char *name, const char *value);
/* One parameter: PARAM_NULL when is_null (p, n ignored), else PARAM with n bytes. */
bool lv_cache_key_add_param(lv_cache_key_t *k, const void *p, size_t n, bool is_null);
/*
 * Format codes as Bind carries them: n_codes big-endian int16 values at
 * codes. Normalised so that equivalent forms key alike: no codes, one code,
 * or a list whose codes are all equal is keyed as "all c"; any other list
 * is keyed code by code. tag is PARAM_FORMATS or RESULT_FORMATS.
 */
bool lv_cache_key_add_formats(lv_cache_key_t *k, lv_cache_key_tag_t tag, const uint8_t *codes,
			      size_t n_codes);

/* Computes k->hash. False when an add had failed (the key must not be used). */
bool lv_cache_key_finish(lv_cache_key_t *k) LV_MUSTCHECK;
/* True when both keys hold the same bytes. */
bool lv_cache_key_equal(const lv_cache_key_t *a, const lv_cache_key_t *b);
/* Writes the lower-case SHA-256 hex of the key bytes and a NUL into out. */
void lv_cache_key_digest_hex(const lv_cache_key_t *k, char out[65]);

/*
 * Sets the process-wide 16-byte hash seed. Call once at startup, before any
 * worker starts (the default is a fixed seed); not thread-safe.
 */
void lv_cache_key_set_seed(const uint8_t seed[16]);
/* SipHash-2-4 of n bytes under a 16-byte key (also used for L2 checksums). */
uint64_t lv_cache_siphash(const uint8_t key[16], const void *p, size_t n);
/* lv_cache_siphash() of n bytes under the process-wide seed. */
uint64_t lv_cache_key_hash_bytes(const void *p, size_t n);

#endif
