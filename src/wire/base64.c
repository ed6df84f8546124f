/* SPDX-License-Identifier: ISC */
/*
 * Base64 encoding and strict decoding; see base64.h. Encoding works on
 * whole 3-byte groups with the last group padded; decoding first checks the
 * whole text (alphabet, padding, unused bits) and the room in out, so a
 * refused input leaves out untouched. No heap memory, no globals beyond the
 * alphabet.
 */
#include "core/lv.h"
#include "wire/base64.h"

#include "core/status.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t lv_base64_encoded_len(size_t len)
{
	return (len + 2) / 3 * 4;
}

size_t lv_base64_decoded_max(size_t len)
{
	return len / 4 * 3;
}

int lv_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap, size_t *out_len)
{
	size_t need = lv_base64_encoded_len(len);
	if (len / 3 >= SIZE_MAX / 4 - 1 || cap < need + 1) /* need + 1 must not wrap */
		return LV_ETOOBIG;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = alphabet[(v >> 18) & 63];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	*out_len = o;
	return 0;
}

/* Value of a base64 alphabet character, or -1 (also for '='). */
static int value_of(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int lv_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	if (len % 4 != 0)
		return LV_EINVAL;
	if (len == 0) {
		*out_len = 0;
		return 0;
	}
	size_t pad = 0;
	if (in[len - 1] == '=')
		pad = in[len - 2] == '=' ? 2 : 1;
	/* Everything before the padding must be in the alphabet ('=' is not). */
	for (size_t i = 0; i < len - pad; i++)
		if (value_of(in[i]) < 0)
			return LV_EINVAL;
	/* Canonical form: the bits the padding leaves unused must be zero. */
	if ((pad == 2 && (value_of(in[len - 3]) & 0x0f) != 0) ||
	    (pad == 1 && (value_of(in[len - 2]) & 0x03) != 0))
		return LV_EINVAL;
	size_t n = lv_base64_decoded_max(len) - pad;
	if (n > cap)
		return LV_ETOOBIG;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		uint32_t w = 0;
		for (size_t k = 0; k < 4; k++) {
			int v = value_of(in[i + k]);
			w = w << 6 | (uint32_t)(v < 0 ? 0 : v); /* padding counts as zero bits */
		}
		uint8_t group[3] = {(uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w};
		size_t take = LV_MIN((size_t)3, n - o);
		memcpy(out + o, group, take);
		o += take;
	}
	*out_len = n;
	return 0;
}
