/* SPDX-License-Identifier: ISC */
/*
 * Growable byte buffer. Growth doubles capacity (at least 256 bytes), so a
 * stream of appends costs amortised O(1). Buffers are owned by whoever embeds
 * them (a connection, a cache entry, a test) and are not thread-safe.
 */
#include "core/buf.h"
#include "core/mem.h"

void lv_buf_init(lv_buf_t *b)
{
	b->data = NULL;
	b->len = b->cap = b->pos = 0;
}

void lv_buf_cleanup(lv_buf_t *b)
{
	lv_free(b->data);
	lv_buf_init(b);
}

void lv_buf_reset(lv_buf_t *b)
{
	b->len = b->pos = 0;
}

void lv_buf_shrink(lv_buf_t *b, size_t keep)
{
	if (b->pos == b->len && b->cap > keep)
		lv_buf_cleanup(b);
}

bool lv_buf_fit(lv_buf_t *b)
{
	lv_buf_compact(b);
	if (b->len == 0) {
		lv_buf_cleanup(b);
		return true;
	}
	if (b->cap == b->len)
		return true;
	uint8_t *d = lv_realloc(b->data, b->len);
	if (!d)
		return false;
	b->data = d;
	b->cap = b->len;
	return true;
}

bool lv_buf_reserve(lv_buf_t *b, size_t n)
{
	if (b->cap - b->len >= n)
		return true;
	if (b->pos > 0 && b->cap - (b->len - b->pos) >= n && b->pos >= b->cap / 2) {
		lv_buf_compact(b);
		return true;
	}
	if (n > SIZE_MAX / 2 - b->len)
		return false;
	size_t need = b->len + n;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	uint8_t *d = lv_realloc(b->data, cap);
	if (!d)
		return false;
	b->data = d;
	b->cap = cap;
	return true;
}

bool lv_buf_append(lv_buf_t *b, const void *p, size_t n)
{
	if (n == 0)
		return true;
	if (!lv_buf_reserve(b, n))
		return false;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return true;
}

bool lv_buf_append_str(lv_buf_t *b, const char *s)
{
	return lv_buf_append(b, s, strlen(s));
}

bool lv_buf_append_cstr(lv_buf_t *b, const char *s)
{
	return lv_buf_append(b, s, strlen(s) + 1);
}

bool lv_buf_put_u8(lv_buf_t *b, uint8_t v)
{
	return lv_buf_append(b, &v, 1);
}

bool lv_buf_put_u16(lv_buf_t *b, uint16_t v)
{
	uint8_t p[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	return lv_buf_append(b, p, 2);
}

bool lv_buf_put_u32(lv_buf_t *b, uint32_t v)
{
	uint8_t p[4];
	lv_set_u32(p, v);
	return lv_buf_append(b, p, 4);
}

bool lv_buf_printf(lv_buf_t *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !lv_buf_reserve(b, (size_t)n + 1))
		return false;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return true;
}

void lv_buf_patch_u32(lv_buf_t *b, size_t off, uint32_t v)
{
	LV_ASSERT(off + 4 <= b->len);
	lv_set_u32(b->data + off, v);
}

void lv_buf_consume(lv_buf_t *b, size_t n)
{
	LV_ASSERT(n <= b->len - b->pos);
	b->pos += n;
	if (b->pos == b->len)
		b->pos = b->len = 0;
}

void lv_buf_compact(lv_buf_t *b)
{
	if (b->pos == 0)
		return;
	size_t n = b->len - b->pos;
	memmove(b->data, b->data + b->pos, n);
	b->pos = 0;
	b->len = n;
}
