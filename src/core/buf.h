/* SPDX-License-Identifier: ISC */
/*
 * Growable byte buffer: data[pos..len) is unread, data[len..cap) is free.
 * Writers append at len; readers consume from pos. lv_buf_compact() moves the
 * unread bytes to the front. The buffer owns data; lv_buf_cleanup() frees it.
 *
 * Appending functions that may allocate are LV_MUSTCHECK and return false on
 * out-of-memory, leaving the buffer unchanged.
 */
#ifndef LEVEE_CORE_BUF_H
#define LEVEE_CORE_BUF_H

#include "core/lv.h"

typedef struct lv_buf {
	uint8_t *data; /* owned; NULL until the first reserve */
	size_t len;    /* bytes written */
	size_t cap;    /* bytes allocated */
	size_t pos;    /* bytes consumed, pos <= len */
} lv_buf_t;

void lv_buf_init(lv_buf_t *b);
void lv_buf_cleanup(lv_buf_t *b);
/* Drops all content, keeps the allocation. */
void lv_buf_reset(lv_buf_t *b);
/* Frees the allocation when it is larger than keep bytes and the buffer is empty. */
void lv_buf_shrink(lv_buf_t *b, size_t keep);

/* Shrinks the allocation to the bytes in use (compacting first); false on OOM, buffer unchanged. */
bool lv_buf_fit(lv_buf_t *b) LV_MUSTCHECK;
/* Ensures room for n more bytes after len. */
bool lv_buf_reserve(lv_buf_t *b, size_t n) LV_MUSTCHECK;
bool lv_buf_append(lv_buf_t *b, const void *p, size_t n) LV_MUSTCHECK;
bool lv_buf_append_str(lv_buf_t *b, const char *s) LV_MUSTCHECK;
/* Appends s and its terminating NUL (the protocol's String type). */
bool lv_buf_append_cstr(lv_buf_t *b, const char *s) LV_MUSTCHECK;
bool lv_buf_put_u8(lv_buf_t *b, uint8_t v) LV_MUSTCHECK;
bool lv_buf_put_u16(lv_buf_t *b, uint16_t v) LV_MUSTCHECK; /* big-endian */
bool lv_buf_put_u32(lv_buf_t *b, uint32_t v) LV_MUSTCHECK; /* big-endian */
bool lv_buf_printf(lv_buf_t *b, const char *fmt, ...) LV_PRINTF(2, 3) LV_MUSTCHECK;
/* Writes a big-endian u32 at absolute offset off (which must be < len - 3). */
void lv_buf_patch_u32(lv_buf_t *b, size_t off, uint32_t v);

static inline size_t lv_buf_unread(const lv_buf_t *b)
{
	return b->len - b->pos;
}

static inline const uint8_t *lv_buf_head(const lv_buf_t *b)
{
	return b->data + b->pos;
}

/* Marks n unread bytes consumed; resets to empty when everything is read. */
void lv_buf_consume(lv_buf_t *b, size_t n);
/* Moves unread bytes to the front of the allocation. */
void lv_buf_compact(lv_buf_t *b);

/* Big-endian readers over raw memory (callers check bounds first). */
static inline uint16_t lv_get_u16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t lv_get_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void lv_set_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

#endif
