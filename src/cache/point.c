/* SPDX-License-Identifier: ISC */
/*
 * Canonical key values and row buckets for row invalidation; see point.h.
 * Owns nothing.
 */
#include "cache/point.h"
#include "cache/key.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <strings.h>

static bool all_digits(const char *p, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)p[i]))
			return false;
	return true;
}

/* "i" + the integer without '+' or leading zeros ("-0" is "0"). */
static bool canon_int(bool neg, const char *digits, size_t n, char *out, size_t *out_len)
{
	while (n > 1 && digits[0] == '0') {
		digits++;
		n--;
	}
	if (n == 1 && digits[0] == '0')
		neg = false;
	if (n + 2 >= LV_CACHE_POINT_MAX)
		return false;
	size_t k = 0;
	out[k++] = 'i';
	if (neg)
		out[k++] = '-';
	memcpy(out + k, digits, n);
	k += n;
	*out_len = k;
	return true;
}

bool lv_cache_point_canon_text(const char *v, size_t n, char out[LV_CACHE_POINT_MAX], size_t *out_len)
{
	while (n > 0 && isspace((unsigned char)v[0])) {
		v++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)v[n - 1]))
		n--;
	/* An integer, however written, is the same integer. */
	bool neg = n > 0 && v[0] == '-';
	size_t s = n > 0 && (v[0] == '-' || v[0] == '+') ? 1 : 0;
	if (all_digits(v + s, n - s))
		return canon_int(neg, v + s, n - s, out, out_len);
	/* A number with a point or an exponent that an integer column would equal. */
	bool numeric = n > s;
	bool has_digit = false;
	for (size_t i = s; i < n && numeric; i++) {
		unsigned char ch = (unsigned char)v[i];
		has_digit = has_digit || isdigit(ch);
		numeric = isdigit(ch) || ch == '.' || ch == 'e' || ch == 'E' || ch == '+' || ch == '-';
	}
	if (numeric && has_digit) {
		char buf[64];
		if (n >= sizeof(buf))
			return false;
		memcpy(buf, v, n);
		buf[n] = 0;
		char *end;
		double d = strtod(buf, &end);
		if (*end || !isfinite(d) || d != floor(d) || fabs(d) >= 9.0e15)
			return false;
		char digits[32];
		int k = snprintf(digits, sizeof(digits), "%.0f", fabs(d));
		return k > 0 && canon_int(d < 0, digits, (size_t)k, out, out_len);
	}
	/* Text and uuids: case, braces and dashes do not tell values apart here. */
	size_t k = 0;
	out[k++] = 's';
	for (size_t i = 0; i < n; i++) {
		char ch = v[i];
		if (ch == '-' || ch == '{' || ch == '}')
			continue;
		if (k + 1 >= LV_CACHE_POINT_MAX)
			return false;
		out[k++] = (char)tolower((unsigned char)ch);
	}
	*out_len = k;
	return true;
}

bool lv_cache_point_canon_binary(uint32_t oid, const uint8_t *v, size_t n, char out[LV_CACHE_POINT_MAX],
				 size_t *out_len)
{
	char digits[32];
	int64_t x;
	switch (oid) {
	case 21: /* int2 */
		if (n != 2)
			return false;
		x = (int16_t)(((uint16_t)v[0] << 8) | v[1]);
		break;
	case 23: /* int4 */
		if (n != 4)
			return false;
		x = (int32_t)(((uint32_t)v[0] << 24) | ((uint32_t)v[1] << 16) | ((uint32_t)v[2] << 8) | v[3]);
		break;
	case 20: /* int8 */
		if (n != 8)
			return false;
		x = 0;
		for (int i = 0; i < 8; i++)
			x = (int64_t)(((uint64_t)x << 8) | v[i]);
		break;
	case 2950: { /* uuid: 16 bytes, as lower-case hex without dashes */
		if (n != 16)
			return false;
		static const char hex[] = "0123456789abcdef";
		out[0] = 's';
		for (size_t i = 0; i < 16; i++) {
			out[1 + 2 * i] = hex[v[i] >> 4];
			out[2 + 2 * i] = hex[v[i] & 15];
		}
		*out_len = 33;
		return true;
	}
	case 25:   /* text */
	case 1043: /* varchar */
	case 1042: /* bpchar */
	case 19:   /* name */
		return lv_cache_point_canon_text((const char *)v, n, out, out_len);
	default:
		return false;
	}
	uint64_t mag = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
	int k = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)mag);
	return k > 0 && canon_int(x < 0, digits, (size_t)k, out, out_len);
}

bool lv_cache_point_cast_ok(const char *type)
{
	static const char *const ok[] = {"int2", "int4", "int8", "int", "integer", "smallint", "bigint",
					 "text", "varchar", "uuid", "bpchar", "character varying"};
	if (!type || !*type)
		return true;
	for (size_t i = 0; i < LV_ARRAY_LEN(ok); i++)
		if (strcasecmp(type, ok[i]) == 0)
			return true;
	return false;
}

uint32_t lv_cache_point_bucket(const char *db, const char *table, const char *col, const char *canon, size_t n)
{
	/* Length-prefixed so that ("ab", "c") and ("a", "bc") differ. */
	uint8_t buf[3 * 64 + LV_CACHE_POINT_MAX + 16];
	size_t k = 0;
	const char *parts[] = {db, table, col};
	for (size_t i = 0; i < 3; i++) {
		size_t l = strnlen(parts[i], 63);
		buf[k++] = (uint8_t)l;
		memcpy(buf + k, parts[i], l);
		k += l;
	}
	size_t l = n < LV_CACHE_POINT_MAX ? n : LV_CACHE_POINT_MAX;
	memcpy(buf + k, canon, l);
	k += l;
	/* A fixed key, not the process's seed: every Levee instance must agree on the bucket,
	 * since buckets are shared through Redis. */
	static const uint8_t key[16] = {'l', 'e', 'v', 'e', 'e', ' ', 'r', 'o', 'w', ' ', 'b', 'u', 'c', 'k', 'e', 't'};
	return (uint32_t)(lv_cache_siphash(key, buf, k) & (LV_CACHE_ROW_BUCKETS - 1));
}
