/* SPDX-License-Identifier: ISC */
/*
 * Table generations: the invalidation clock of the result cache.
 *
 * What is keyed by what: one slot per (database, table), where the table is
 * the lower-cased unqualified relation name. A slot holds a 64-bit
 * generation that only grows. Every write that passes through Levee bumps
 * the slot of each table it touches (at commit); a generation learnt from
 * another instance through Redis is merged with lv_cache_gen_raise().
 *
 * When entries become invalid: a cache entry remembers the generation of
 * each table it read, captured (lv_cache_gen_snapshot_t) before its query was
 * sent, plus the global epoch. It is stale as soon as any of those slots or
 * the epoch moved, so a write that commits while the fill is running makes
 * the new entry stale at once. The epoch invalidates everything (admin
 * INVALIDATE CACHE without a table, Redis reconnect, when writes may have
 * been missed).
 *
 * Threads: one lv_cache_gens_t is shared by every worker. Slots are never
 * freed while the table lives, so slot pointers are stable and may be kept
 * in cache entries. Finding an existing slot is lock-free (acquire loads
 * along an append-only chain); creating one takes a mutex. Generation reads
 * are atomic acquire loads, bumps and raises are atomic read-modify-writes.
 */
#ifndef LEVEE_CACHE_GENS_H
#define LEVEE_CACHE_GENS_H

#include "core/lv.h"

typedef struct lv_cache_gens lv_cache_gens_t;
typedef struct lv_cache_gen lv_cache_gen_t;

/* Longest database or table name a slot accepts (PostgreSQL's NAMEDATALEN - 1). */
#define LV_CACHE_GEN_NAME_MAX 63
/* Tables one entry may depend on (sql/classify.h's LV_SQL_MAX_TABLES). */
#define LV_CACHE_MAX_GENS 32

/* A table of generations with epoch 0 and no slots; NULL on OOM. */
lv_cache_gens_t *lv_cache_gens_new(void) LV_MUSTCHECK;
/* Frees the table and every slot (no slot pointer may be used afterwards); NULL is a no-op. */
void lv_cache_gens_free(lv_cache_gens_t *g);

/*
 * The slot of (db, table), created with generation 0 if absent. table is
 * lower-cased and a schema prefix ("public.posts") is dropped. The pointer
 * stays valid until lv_cache_gens_free(). NULL on OOM or when a name is
 * empty or longer than LV_CACHE_GEN_NAME_MAX. Thread-safe.
 */
lv_cache_gen_t *lv_cache_gens_slot(lv_cache_gens_t *g, const char *db, const char *table);
/* The existing slot of (db, table), or NULL; never allocates. Thread-safe, lock-free. */
lv_cache_gen_t *lv_cache_gens_find(const lv_cache_gens_t *g, const char *db, const char *table);
/* Number of slots created so far. */
size_t lv_cache_gens_count(const lv_cache_gens_t *g);

/* Current generation (atomic acquire). */
uint64_t lv_cache_gen_get(const lv_cache_gen_t *s);
/* Adds one and returns the new generation (atomic). */
uint64_t lv_cache_gen_bump(lv_cache_gen_t *s);
/* Sets the generation to max(current, v) atomically (merging another instance's view). */
void lv_cache_gen_raise(lv_cache_gen_t *s, uint64_t v);
/* The slot's lower-cased unqualified table name; valid while g lives. */
const char *lv_cache_gen_table(const lv_cache_gen_t *s);
/* The slot's database name; valid while g lives. */
const char *lv_cache_gen_db(const lv_cache_gen_t *s);

/*
 * Calls fn for every slot (in no particular order). Slots created during the
 * walk may or may not be visited. fn may bump or raise slots and may call
 * lv_cache_gens_slot(). Thread-safe.
 */
void lv_cache_gens_for_each(lv_cache_gens_t *g, void (*fn)(lv_cache_gen_t *s, void *arg),
			    void *arg);

/* The global epoch (atomic acquire). */
uint64_t lv_cache_gens_epoch(const lv_cache_gens_t *g);
/* Adds one to the epoch, making every existing entry stale; returns the new epoch. */
uint64_t lv_cache_gens_bump_epoch(lv_cache_gens_t *g);

/* ------------------------------------------------------------------------
 * Snapshots: the generations an entry is filled under
 * ------------------------------------------------------------------------ */

typedef struct lv_cache_gen_pair {
	lv_cache_gen_t *slot; /* borrowed from the gens table */
	uint64_t gen;         /* the slot's generation when captured */
} lv_cache_gen_pair_t;

/*
 * Taken before the query is sent to the server. A plain value: copy it,
 * keep it in the request arena; it owns nothing.
 */
typedef struct lv_cache_gen_snapshot {
	uint64_t epoch; /* lv_cache_gens_epoch() when captured */
	size_t n;       /* pairs used */
	lv_cache_gen_pair_t pairs[LV_CACHE_MAX_GENS];
} lv_cache_gen_snapshot_t;

/* Starts a snapshot: records the epoch, no tables. */
void lv_cache_gen_snapshot_init(lv_cache_gen_snapshot_t *snap, const lv_cache_gens_t *g);
/*
 * Adds table of db (creating its slot) with its current generation; a table
 * already in the snapshot is not added twice. False on OOM, bad name, or
 * when LV_CACHE_MAX_GENS tables are already recorded: the caller must then
 * not cache (an entry that forgets a table could never be invalidated by it).
 */
bool lv_cache_gen_snapshot_add(lv_cache_gen_snapshot_t *snap, lv_cache_gens_t *g, const char *db,
			       const char *table) LV_MUSTCHECK;
/* True when the epoch and every recorded generation are unchanged. */
bool lv_cache_gen_snapshot_is_current(const lv_cache_gen_snapshot_t *snap,
				      const lv_cache_gens_t *g);

#endif
