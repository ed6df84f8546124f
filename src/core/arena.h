/* SPDX-License-Identifier: ISC */
/*
 * Arena: a bump allocator over a chain of heap blocks, for the "scratch"
 * (one loop iteration, reset by event/loop.c) and "request" (one client
 * request, reset at ReadyForQuery) lifetimes of STYLE.md 1.5.
 *
 * Allocation moves a pointer inside the current block; when the block is
 * full a new one of block_size bytes is chained in. A request larger than a
 * quarter of block_size gets a block of its own, so a big value does not
 * waste the rest of a block. Nothing is freed individually: lv_arena_reset()
 * releases everything at once, keeping the first block for the next cycle,
 * and lv_arena_cleanup() releases all memory.
 *
 * Pointers from an arena are 8-byte aligned and valid until the next reset
 * or cleanup. An arena belongs to one thread; it has no lock.
 */
#ifndef LEVEE_CORE_ARENA_H
#define LEVEE_CORE_ARENA_H

#include "core/lv.h"

#define LV_ARENA_ALIGN 8
#define LV_ARENA_MIN_BLOCK 256

typedef struct lv_arena_block lv_arena_block_t;

typedef struct lv_arena {
	lv_arena_block_t *cur;   /* block being filled; older blocks follow via next */
	lv_arena_block_t *large; /* blocks holding one large allocation each */
	size_t block_size;       /* bytes of payload per regular block */
	size_t n_bytes;          /* bytes handed out since the last reset (aligned sizes) */
	size_t high_water;       /* largest n_bytes ever reached (survives reset), for SHOW MEM */
	size_t n_held;           /* bytes of heap currently held, block headers included */
} lv_arena_t;

/* Sets up an empty arena; allocates nothing until the first lv_arena_alloc(). */
void lv_arena_init(lv_arena_t *a, size_t block_size);
/* Frees every block; the arena is empty and reusable afterwards. Keeps high_water. */
void lv_arena_cleanup(lv_arena_t *a);
/*
 * Invalidates every pointer handed out, frees all blocks but the first
 * regular one and rewinds it; n_bytes goes back to 0, high_water stays.
 */
void lv_arena_reset(lv_arena_t *a);

/* n bytes, 8-byte aligned, uninitialised; NULL on OOM (the arena is unchanged). n may be 0. */
void *lv_arena_alloc(lv_arena_t *a, size_t n) LV_MUSTCHECK;
/* Same as lv_arena_alloc() with the bytes zeroed. */
void *lv_arena_zalloc(lv_arena_t *a, size_t n) LV_MUSTCHECK;
/* Copy of s (NUL-terminated) in the arena; NULL on OOM. */
char *lv_arena_strdup(lv_arena_t *a, const char *s) LV_MUSTCHECK;
/* Copy of the first n bytes of s plus a NUL (s need not be terminated); NULL on OOM. */
char *lv_arena_strndup(lv_arena_t *a, const char *s, size_t n) LV_MUSTCHECK;
/* Copy of n bytes of p; NULL on OOM. */
void *lv_arena_memdup(lv_arena_t *a, const void *p, size_t n) LV_MUSTCHECK;

#endif
