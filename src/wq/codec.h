/* SPDX-License-Identifier: ISC */
/*
 * Queue message payloads and the queue's other pure helpers: the JSON
 * encoding of a deferred statement (the only JSON on the data path), the
 * partition of a key, the retry backoff schedule and the command tags. No
 * I/O; unit-tested in tests/unit/test_wq_codec.c.
 *
 * Payload (one JSON object, the stream entry's field "m"):
 *
 *   {"v":1,"db":"app","user":"app","key":"user:42","table":"t",
 *    "sql":"INSERT INTO t VALUES ($1, $2)",
 *    "params":[{"t":23,"f":0,"v":"1"},{"t":17,"f":1,"b":"AAE="},{"t":0,"f":0,"n":true}]}
 *
 * A parameter is text ("v"), bytes in base64 ("b": binary values, and text
 * values that are not valid UTF-8 or hold a NUL), or NULL ("n": true); "t" is
 * the type OID from Parse (0 = unspecified) and "f" the format code.
 */
#ifndef LEVEE_WQ_CODEC_H
#define LEVEE_WQ_CODEC_H

#include "core/lv.h"
#include "core/buf.h"
#include "core/status.h"
#include "wq/wq.h"

/* Largest payload accepted either way, bytes. */
#define LV_WQ_MAX_PAYLOAD (16 * 1024 * 1024)

/* A decoded payload; every pointer is owned by it (lv_wq_decoded_cleanup()). */
typedef struct lv_wq_decoded {
	char *db, *user, *key, *table, *sql; /* NUL-terminated; key is never "" (table if unset) */
	uint16_t n_params;
	char **values;     /* n_params; NULL = SQL NULL; values[i] has lens[i] bytes plus a NUL */
	int32_t *lens;     /* -1 for NULL */
	int16_t *formats;
	uint32_t *types;
} lv_wq_decoded_t;

/*
 * Appends m's payload to out. 0; LV_EINVAL (err set) when a field is missing
 * (db, user, sql), a format code is not 0 or 1, or the payload would exceed
 * LV_WQ_MAX_PAYLOAD; LV_ENOMEM. out is unchanged on failure.
 */
int lv_wq_encode(const lv_wq_msg_t *m, lv_buf_t *out, lv_err_t *err);
/*
 * Parses a payload into *out (zeroed first). 0; LV_EPROTO with err set for
 * anything malformed (bad JSON, unknown version, missing or mistyped field,
 * bad base64); LV_ENOMEM. On failure *out holds nothing to free.
 */
int lv_wq_decode(const char *json, size_t len, lv_wq_decoded_t *out, lv_err_t *err);
/* Frees what d owns and zeroes it; a zeroed d is a no-op. */
void lv_wq_decoded_cleanup(lv_wq_decoded_t *d);

/* The partition of key: FNV-1a 32-bit of its bytes, modulo LV_WQ_PARTITIONS. */
unsigned lv_wq_partition(const char *key);
/*
 * Delay before retry number `attempt` (1 = after the first failure):
 * base_ms * 2^(attempt-1), at most max_ms (max_ms <= 0: no cap); 0 for attempt < 1.
 */
int64_t lv_wq_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms);
/*
 * Whether a stream id ("ms-seq") is well formed; fills *ms and *seq. Used to
 * age messages (the id's time is when Redis accepted it) and to step past an id.
 */
bool lv_wq_parse_id(const char *id, uint64_t *ms, uint64_t *seq);

#endif
