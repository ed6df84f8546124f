/* SPDX-License-Identifier: ISC */
/*
 * Bump allocator; see arena.h for the contract.
 *
 *   a->cur --> [block 3 | used ....... free] --> [block 2] --> [block 1] --> NULL
 *   a->large --> [one big allocation] --> [another] --> NULL
 *
 * Regular blocks are chained newest first, so the oldest (the "first" one,
 * kept by lv_arena_reset()) is the tail of a->cur. When the current block
 * cannot fit a small request, a new block is pushed; the space left in the
 * old one is abandoned (at most a quarter of a block, since larger requests
 * go to a->large instead). Blocks come from lv_malloc(), so they fail softly
 * and the fail hook of core/mem.c reaches them in tests.
 *
 * Owns: its blocks, from the first allocation until lv_arena_cleanup().
 * Counters: n_bytes (handed out since reset), high_water (largest n_bytes),
 * n_held (heap held), all read by SHOW MEM.
 */
#include "core/arena.h"
#include "core/mem.h"

/* A block header; the payload follows at HDR_SIZE, aligned to 16 bytes. */
struct lv_arena_block {
	lv_arena_block_t *next;
	size_t cap;  /* payload bytes */
	size_t used; /* payload bytes handed out */
};

/* Header rounded up so the payload is aligned for anything up to 16 bytes. */
#define HDR_SIZE ((sizeof(lv_arena_block_t) + 15) & ~(size_t)15)

static inline uint8_t *payload(lv_arena_block_t *b)
{
	return (uint8_t *)b + HDR_SIZE;
}

static lv_arena_block_t *block_new(lv_arena_t *a, size_t cap)
{
	if (cap > SIZE_MAX - HDR_SIZE)
		return NULL;
	lv_arena_block_t *b = lv_malloc(HDR_SIZE + cap);
	if (!b)
		return NULL;
	b->next = NULL;
	b->cap = cap;
	b->used = 0;
	a->n_held += HDR_SIZE + cap;
	return b;
}

static void block_free_chain(lv_arena_t *a, lv_arena_block_t *b)
{
	while (b) {
		lv_arena_block_t *next = b->next;
		a->n_held -= HDR_SIZE + b->cap;
		lv_free(b);
		b = next;
	}
}

void lv_arena_init(lv_arena_t *a, size_t block_size)
{
	a->cur = NULL;
	a->large = NULL;
	if (block_size < LV_ARENA_MIN_BLOCK)
		block_size = LV_ARENA_MIN_BLOCK;
	a->block_size = (block_size + LV_ARENA_ALIGN - 1) & ~(size_t)(LV_ARENA_ALIGN - 1);
	a->n_bytes = 0;
	a->high_water = 0;
	a->n_held = 0;
}

void lv_arena_cleanup(lv_arena_t *a)
{
	block_free_chain(a, a->cur);
	block_free_chain(a, a->large);
	a->cur = NULL;
	a->large = NULL;
	a->n_bytes = 0;
}

void lv_arena_reset(lv_arena_t *a)
{
	if (a->n_bytes > a->high_water)
		a->high_water = a->n_bytes;
	a->n_bytes = 0;
	block_free_chain(a, a->large);
	a->large = NULL;
	if (!a->cur)
		return;
	/* Free all regular blocks but the oldest. */
	lv_arena_block_t *first = a->cur;
	while (first->next) {
		lv_arena_block_t *next = first->next;
		a->n_held -= HDR_SIZE + first->cap;
		lv_free(first);
		first = next;
	}
	first->used = 0;
	a->cur = first;
}

void *lv_arena_alloc(lv_arena_t *a, size_t n)
{
	if (n > SIZE_MAX - 2 * LV_ARENA_ALIGN - HDR_SIZE)
		return NULL;
	size_t need = (n + LV_ARENA_ALIGN - 1) & ~(size_t)(LV_ARENA_ALIGN - 1);
	if (need == 0)
		need = LV_ARENA_ALIGN;
	lv_arena_block_t *b = a->cur;

	if (!b || b->cap - b->used < need) {
		if (need > a->block_size / 4) {
			/* A block of its own, kept off the regular chain. */
			b = block_new(a, need);
			if (!b)
				return NULL;
			b->next = a->large;
			a->large = b;
		} else {
			b = block_new(a, a->block_size);
			if (!b)
				return NULL;
			b->next = a->cur;
			a->cur = b;
		}
	}
	void *p = payload(b) + b->used;
	b->used += need;
	a->n_bytes += need;
	if (a->n_bytes > a->high_water)
		a->high_water = a->n_bytes;
	return p;
}

void *lv_arena_zalloc(lv_arena_t *a, size_t n)
{
	void *p = lv_arena_alloc(a, n);
	if (p)
		memset(p, 0, n);
	return p;
}

void *lv_arena_memdup(lv_arena_t *a, const void *p, size_t n)
{
	void *d = lv_arena_alloc(a, n);
	if (d && n)
		memcpy(d, p, n);
	return d;
}

char *lv_arena_strndup(lv_arena_t *a, const char *s, size_t n)
{
	if (n == SIZE_MAX)
		return NULL;
	char *d = lv_arena_alloc(a, n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

char *lv_arena_strdup(lv_arena_t *a, const char *s)
{
	return lv_arena_strndup(a, s, strlen(s));
}
