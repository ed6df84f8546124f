/* SPDX-License-Identifier: ISC */
/*
 * Queue payloads <-> JSON, and the pure helpers of the write queue (partition
 * choice, backoff schedule, command tags, status names); see codec.h for the
 * payload layout. cJSON trees never leave this file: encoding builds a tree
 * and prints it into the caller's buffer, decoding copies every field into
 * an lv_wq_decoded_t the caller owns. No I/O, no globals.
 */
#include "wq/codec.h"
#include "core/mem.h"
#include "wire/base64.h"

#include <cjson/cJSON.h>

#define PAYLOAD_VERSION 1

/* ---------------------------------------------------------------- helpers */

const char *lv_wq_command_tag(lv_sql_kind_t kind)
{
	switch (kind) {
	case LV_SQL_INSERT:
		return "INSERT 0 0";
	case LV_SQL_UPDATE:
		return "UPDATE 0";
	case LV_SQL_DELETE:
		return "DELETE 0";
	case LV_SQL_MERGE:
		return "MERGE 0";
	default:
		return NULL;
	}
}

const char *lv_wq_status_sqlstate(lv_wq_status_t status)
{
	switch (status) {
	case LV_WQ_OK:
		return "00000";
	case LV_WQ_FULL:
		return "53400";
	case LV_WQ_REDIS_DOWN:
		return "08006";
	case LV_WQ_NO_QUEUE:
		return "0A000";
	case LV_WQ_OOM:
		return "53200";
	case LV_WQ_BAD_MESSAGE:
		return "54000";
	case LV_WQ_REDIS_ERROR:
	case LV_WQ_NO_REPLICAS:
	default:
		return "58000";
	}
}

const char *lv_wq_status_msg(lv_wq_status_t status)
{
	switch (status) {
	case LV_WQ_OK:
		return "queued";
	case LV_WQ_FULL:
		return "the write queue is full (queue max_length reached)";
	case LV_WQ_REDIS_DOWN:
		return "the write queue is unavailable (Redis is down or did not answer)";
	case LV_WQ_REDIS_ERROR:
		return "the write queue refused the write (Redis error)";
	case LV_WQ_NO_REPLICAS:
		return "the write was queued but too few Redis replicas confirmed it; it may still be applied";
	case LV_WQ_NO_QUEUE:
		return "async writes need a Redis server ([levee] redis)";
	case LV_WQ_OOM:
		return "out of memory";
	case LV_WQ_BAD_MESSAGE:
		return "the statement cannot be queued (too large or malformed)";
	}
	return "unknown";
}

unsigned lv_wq_partition(const char *key)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)(key ? key : ""); *p; p++) {
		h ^= *p;
		h *= 16777619u;
	}
	return h % LV_WQ_PARTITIONS;
}

int64_t lv_wq_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms)
{
	if (attempt < 1 || base_ms <= 0)
		return 0;
	int64_t d = base_ms;
	for (int i = 1; i < attempt; i++) {
		if (d > INT64_MAX / 2 || (max_ms > 0 && d >= max_ms)) {
			d = max_ms > 0 ? max_ms : INT64_MAX / 2;
			break;
		}
		d *= 2;
	}
	if (max_ms > 0 && d > max_ms)
		d = max_ms;
	return d;
}

bool lv_wq_parse_id(const char *id, uint64_t *ms, uint64_t *seq)
{
	if (!id || !*id)
		return false;
	char *end;
	errno = 0;
	unsigned long long a = strtoull(id, &end, 10);
	if (end == id || *end != '-' || errno || id[0] == '-' || id[0] == '+')
		return false;
	const char *s = end + 1;
	if (!*s || *s == '-' || *s == '+')
		return false;
	unsigned long long b = strtoull(s, &end, 10);
	if (*end || errno)
		return false;
	*ms = a;
	*seq = b;
	return true;
}

/* ----------------------------------------------------------------- base64 */

/* Base64 of n bytes into a new NUL-terminated string (wire/base64.c); NULL on OOM. */
static char *b64_encode(const uint8_t *p, size_t n)
{
	size_t cap = lv_base64_encoded_len(n) + 1, len;
	char *out = lv_malloc(cap);
	if (out && lv_base64_encode(p, n, out, cap, &len) != 0) {
		lv_free(out);
		out = NULL;
	}
	return out;
}

/* Decodes strict padded base64 into a new buffer (plus a NUL); 0, LV_EPROTO or LV_ENOMEM. */
static int b64_decode(const char *s, char **out, int32_t *out_len)
{
	size_t n = strlen(s), len;
	if (n % 4 != 0 || lv_base64_decoded_max(n) > INT32_MAX)
		return LV_EPROTO;
	char *buf = lv_malloc(lv_base64_decoded_max(n) + 1);
	if (!buf)
		return LV_ENOMEM;
	if (lv_base64_decode(s, n, (uint8_t *)buf, lv_base64_decoded_max(n), &len) != 0) {
		lv_free(buf);
		return LV_EPROTO;
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = (int32_t)len;
	return 0;
}

/* True when p[0..n) is valid UTF-8 without NUL bytes (so it can travel as a JSON string). */
static bool is_json_text(const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = p[i];
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t k;
		uint32_t cp;
		if ((c & 0xe0) == 0xc0) {
			k = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		for (size_t j = 1; j <= k; j++) {
			if (i + j >= n || (p[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + j] & 0x3f);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

/* ----------------------------------------------------------------- encode */

static bool add_str(cJSON *o, const char *name, const char *v)
{
	return cJSON_AddStringToObject(o, name, v ? v : "") != NULL;
}

/* Adds parameter i of m to arr; 0, LV_EINVAL or LV_ENOMEM. */
static int add_param(cJSON *arr, const lv_wq_msg_t *m, unsigned i, lv_err_t *err)
{
	cJSON *p = cJSON_CreateObject();
	if (!p)
		return LV_ENOMEM;
	cJSON_AddItemToArray(arr, p);
	int16_t f = m->formats ? m->formats[i] : 0;
	if (f != 0 && f != 1)
		return lv_err_set(err, LV_EINVAL, "parameter %u has format code %d", i + 1, f);
	if (!cJSON_AddNumberToObject(p, "t", m->types ? (double)m->types[i] : 0) ||
	    !cJSON_AddNumberToObject(p, "f", f))
		return LV_ENOMEM;
	const char *v = m->values ? m->values[i] : NULL;
	int32_t len = v ? (m->lens ? m->lens[i] : (int32_t)strlen(v)) : -1;
	if (!v || len < 0)
		return cJSON_AddTrueToObject(p, "n") ? 0 : LV_ENOMEM;
	if (f == 0 && is_json_text((const uint8_t *)v, (size_t)len)) {
		char *copy = lv_strndup(v, (size_t)len);
		if (!copy)
			return LV_ENOMEM;
		bool ok = cJSON_AddStringToObject(p, "v", copy) != NULL;
		lv_free(copy);
		return ok ? 0 : LV_ENOMEM;
	}
	char *b = b64_encode((const uint8_t *)v, (size_t)len);
	if (!b)
		return LV_ENOMEM;
	bool ok = cJSON_AddStringToObject(p, "b", b) != NULL;
	lv_free(b);
	return ok ? 0 : LV_ENOMEM;
}

int lv_wq_encode(const lv_wq_msg_t *m, lv_buf_t *out, lv_err_t *err)
{
	if (!m->db || !*m->db || !m->user || !*m->user || !m->sql || !*m->sql)
		return lv_err_set(err, LV_EINVAL, "a queued message needs a database, a user and a statement");
	/* A counted statement (not NUL-terminated, e.g. a stored Parse text) is copied first. */
	char *sql_copy = m->sql_len ? lv_strndup(m->sql, m->sql_len) : NULL;
	if (m->sql_len && !sql_copy)
		return LV_ENOMEM;
	const char *sql = sql_copy ? sql_copy : m->sql;
	const char *table = m->table ? m->table : "";
	const char *key = m->key && *m->key ? m->key : table;
	cJSON *o = cJSON_CreateObject();
	int rc = LV_ENOMEM;
	cJSON *params;
	if (!o)
		goto done;
	if (!cJSON_AddNumberToObject(o, "v", PAYLOAD_VERSION) || !add_str(o, "db", m->db) ||
	    !add_str(o, "user", m->user) || !add_str(o, "key", key) || !add_str(o, "table", table) ||
	    !add_str(o, "sql", sql) || !(params = cJSON_AddArrayToObject(o, "params")))
		goto done;
	for (unsigned i = 0; i < m->n_params; i++)
		if ((rc = add_param(params, m, i, err)) != 0)
			goto done;
	char *text = cJSON_PrintUnformatted(o);
	rc = LV_ENOMEM;
	if (!text)
		goto done;
	size_t n = strlen(text);
	if (n > LV_WQ_MAX_PAYLOAD)
		rc = lv_err_set(err, LV_EINVAL, "the queued message would be %zu bytes (at most %d)", n,
				LV_WQ_MAX_PAYLOAD);
	else if (lv_buf_append(out, text, n))
		rc = 0;
	cJSON_free(text);
done:
	if (rc == LV_ENOMEM)
		lv_err_set(err, LV_ENOMEM, "out of memory");
	cJSON_Delete(o);
	lv_free(sql_copy);
	return rc;
}

/* ----------------------------------------------------------------- decode */

void lv_wq_decoded_cleanup(lv_wq_decoded_t *d)
{
	lv_free(d->db);
	lv_free(d->user);
	lv_free(d->key);
	lv_free(d->table);
	lv_free(d->sql);
	if (d->values)
		for (unsigned i = 0; i < d->n_params; i++)
			lv_free(d->values[i]);
	lv_free(d->values);
	lv_free(d->lens);
	lv_free(d->formats);
	lv_free(d->types);
	memset(d, 0, sizeof(*d));
}

/* A copy of the string member name of o; NULL with *rc set when missing, mistyped or OOM. */
static char *get_str(const cJSON *o, const char *name, int *rc, lv_err_t *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!cJSON_IsString(v) || !v->valuestring) {
		*rc = lv_err_set(err, LV_EPROTO, "field \"%s\" is missing or not a string", name);
		return NULL;
	}
	char *s = lv_strdup(v->valuestring);
	if (!s)
		*rc = lv_err_set(err, LV_ENOMEM, "out of memory");
	return s;
}

static bool is_uint(const cJSON *v, double max)
{
	return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= max &&
	       v->valuedouble == (double)(uint64_t)v->valuedouble;
}

static int get_param(const cJSON *p, lv_wq_decoded_t *d, unsigned i, lv_err_t *err)
{
	if (!cJSON_IsObject(p))
		return lv_err_set(err, LV_EPROTO, "parameter %u is not an object", i + 1);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "t");
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(p, "f");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "v");
	const cJSON *b = cJSON_GetObjectItemCaseSensitive(p, "b");
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(p, "n");
	if (!is_uint(t, 4294967295.0) || !is_uint(f, 1))
		return lv_err_set(err, LV_EPROTO, "parameter %u has a bad type or format", i + 1);
	d->types[i] = (uint32_t)t->valuedouble;
	d->formats[i] = (int16_t)f->valuedouble;
	int forms = (v != NULL) + (b != NULL) + (n != NULL);
	if (forms != 1)
		return lv_err_set(err, LV_EPROTO, "parameter %u needs exactly one of v, b, n", i + 1);
	if (n) {
		if (!cJSON_IsTrue(n))
			return lv_err_set(err, LV_EPROTO, "parameter %u: n must be true", i + 1);
		d->lens[i] = -1;
		return 0;
	}
	if (v) {
		if (!cJSON_IsString(v) || !v->valuestring)
			return lv_err_set(err, LV_EPROTO, "parameter %u: v must be a string", i + 1);
		size_t len = strlen(v->valuestring);
		if (len > LV_WQ_MAX_PAYLOAD)
			return lv_err_set(err, LV_EPROTO, "parameter %u is too long", i + 1);
		d->values[i] = lv_strdup(v->valuestring);
		if (!d->values[i])
			return lv_err_set(err, LV_ENOMEM, "out of memory");
		d->lens[i] = (int32_t)len;
		return 0;
	}
	if (!cJSON_IsString(b) || !b->valuestring)
		return lv_err_set(err, LV_EPROTO, "parameter %u: b must be a string", i + 1);
	int rc = b64_decode(b->valuestring, &d->values[i], &d->lens[i]);
	if (rc == LV_ENOMEM)
		return lv_err_set(err, LV_ENOMEM, "out of memory");
	if (rc != 0)
		return lv_err_set(err, LV_EPROTO, "parameter %u: b is not valid base64", i + 1);
	return 0;
}

int lv_wq_decode(const char *json, size_t len, lv_wq_decoded_t *d, lv_err_t *err)
{
	memset(d, 0, sizeof(*d));
	if (!json || len == 0 || len > LV_WQ_MAX_PAYLOAD)
		return lv_err_set(err, LV_EPROTO, "empty or oversized payload");
	cJSON *o = cJSON_ParseWithLength(json, len);
	if (!o)
		return lv_err_set(err, LV_EPROTO, "payload is not JSON");
	int rc = LV_EPROTO;
	if (!cJSON_IsObject(o)) {
		lv_err_set(err, LV_EPROTO, "payload is not a JSON object");
		goto fail;
	}
	const cJSON *ver = cJSON_GetObjectItemCaseSensitive(o, "v");
	if (!cJSON_IsNumber(ver) || ver->valuedouble != PAYLOAD_VERSION) {
		lv_err_set(err, LV_EPROTO, "unknown payload version");
		goto fail;
	}
	if (!(d->db = get_str(o, "db", &rc, err)) || !(d->user = get_str(o, "user", &rc, err)) ||
	    !(d->key = get_str(o, "key", &rc, err)) || !(d->table = get_str(o, "table", &rc, err)) ||
	    !(d->sql = get_str(o, "sql", &rc, err)))
		goto fail;
	if (!*d->db || !*d->user || !*d->sql) {
		rc = lv_err_set(err, LV_EPROTO, "db, user and sql must not be empty");
		goto fail;
	}
	if (!*d->key) {
		lv_free(d->key);
		if (!(d->key = lv_strdup(d->table))) {
			rc = lv_err_set(err, LV_ENOMEM, "out of memory");
			goto fail;
		}
	}
	const cJSON *params = cJSON_GetObjectItemCaseSensitive(o, "params");
	if (!cJSON_IsArray(params)) {
		rc = lv_err_set(err, LV_EPROTO, "field \"params\" is missing or not an array");
		goto fail;
	}
	int n = cJSON_GetArraySize(params);
	if (n > 65535) {
		rc = lv_err_set(err, LV_EPROTO, "too many parameters");
		goto fail;
	}
	d->n_params = (uint16_t)n;
	if (n > 0) {
		d->values = lv_calloc((size_t)n, sizeof(*d->values));
		d->lens = lv_calloc((size_t)n, sizeof(*d->lens));
		d->formats = lv_calloc((size_t)n, sizeof(*d->formats));
		d->types = lv_calloc((size_t)n, sizeof(*d->types));
		if (!d->values || !d->lens || !d->formats || !d->types) {
			rc = lv_err_set(err, LV_ENOMEM, "out of memory");
			goto fail;
		}
	}
	unsigned i = 0;
	const cJSON *p;
	cJSON_ArrayForEach(p, params)
	{
		if ((rc = get_param(p, d, i, err)) != 0)
			goto fail;
		i++;
	}
	cJSON_Delete(o);
	return 0;
fail:
	cJSON_Delete(o);
	lv_wq_decoded_cleanup(d);
	return rc;
}
