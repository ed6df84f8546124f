/* SPDX-License-Identifier: ISC */
/*
 * Table generations (see gens.h for the contract).
 *
 * Layout: a fixed array of LV_CACHE_GENS_BUCKETS chain heads. A slot is
 * allocated once, fully initialised, and then published at the head of its
 * chain with a release store; its next pointer never changes afterwards and
 * slots are never unlinked. A reader therefore walks a chain with acquire
 * loads and no lock: whatever it sees is a complete slot. Creation takes
 * the mutex, walks the chain again (another thread may have created the
 * slot meanwhile) and publishes. The table is capped at
 * LV_CACHE_GENS_MAX_SLOTS slots so that statements naming endless
 * nonexistent tables cannot grow it without bound; past the cap
 * lv_cache_gens_slot() returns NULL and the caller does not cache, which is
 * safe because no entry can then depend on a slot that does not exist.
 *
 * Owns: the slots (process lifetime, freed by lv_cache_gens_free()).
 */
#include "core/lv.h"
#include "cache/gens.h"

#include <pthread.h>
#include <stdatomic.h>

#include "core/mem.h"

#define LV_CACHE_GENS_BUCKETS 4096 /* power of two */
#define LV_CACHE_GENS_MAX_SLOTS (1u << 20)

struct lv_cache_gen {
	_Atomic uint64_t gen;
	struct lv_cache_gen *next; /* chain; written before publication, then constant */
	uint32_t hash;
	char db[LV_CACHE_GEN_NAME_MAX + 1];
	char table[LV_CACHE_GEN_NAME_MAX + 1];
};

struct lv_cache_gens {
	_Atomic(lv_cache_gen_t *) buckets[LV_CACHE_GENS_BUCKETS];
	_Atomic uint64_t epoch;
	_Atomic size_t n_slots;
	pthread_mutex_t lock; /* serialises slot creation only */
};

/* Normalises table into out (lower case, schema dropped); false if empty or too long. */
static bool norm_table(const char *table, char out[LV_CACHE_GEN_NAME_MAX + 1])
{
	const char *dot = strrchr(table, '.');
	if (dot)
		table = dot + 1;
	size_t n = strlen(table);
	if (n == 0 || n > LV_CACHE_GEN_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = table[i];
		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[n] = '\0';
	return true;
}

/* FNV-1a over db, a separator and table. */
static uint32_t name_hash(const char *db, const char *table)
{
	uint32_t h = 2166136261u;
	for (const char *p = db; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ 0xffu) * 16777619u;
	for (const char *p = table; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h;
}

static lv_cache_gen_t *chain_find(lv_cache_gen_t *s, uint32_t h, const char *db, const char *t)
{
	for (; s; s = s->next) {
		if (s->hash == h && strcmp(s->table, t) == 0 && strcmp(s->db, db) == 0)
			return s;
	}
	return NULL;
}

lv_cache_gens_t *lv_cache_gens_new(void)
{
	lv_cache_gens_t *g = lv_calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	for (size_t i = 0; i < LV_CACHE_GENS_BUCKETS; i++)
		atomic_init(&g->buckets[i], NULL);
	atomic_init(&g->epoch, 0);
	atomic_init(&g->n_slots, 0);
	if (pthread_mutex_init(&g->lock, NULL) != 0) {
		lv_free(g);
		return NULL;
	}
	return g;
}

void lv_cache_gens_free(lv_cache_gens_t *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < LV_CACHE_GENS_BUCKETS; i++) {
		lv_cache_gen_t *s = atomic_load_explicit(&g->buckets[i], memory_order_relaxed);
		while (s) {
			lv_cache_gen_t *next = s->next;
			lv_free(s);
			s = next;
		}
	}
	pthread_mutex_destroy(&g->lock);
	lv_free(g);
}

lv_cache_gen_t *lv_cache_gens_find(const lv_cache_gens_t *g, const char *db, const char *table)
{
	char t[LV_CACHE_GEN_NAME_MAX + 1];
	if (!db || !table || !norm_table(table, t) || strlen(db) > LV_CACHE_GEN_NAME_MAX)
		return NULL;
	uint32_t h = name_hash(db, t);
	lv_cache_gen_t *head = atomic_load_explicit(
		&((lv_cache_gens_t *)g)->buckets[h & (LV_CACHE_GENS_BUCKETS - 1)],
		memory_order_acquire);
	return chain_find(head, h, db, t);
}

lv_cache_gen_t *lv_cache_gens_slot(lv_cache_gens_t *g, const char *db, const char *table)
{
	char t[LV_CACHE_GEN_NAME_MAX + 1];
	if (!db || !table || !norm_table(table, t))
		return NULL;
	size_t db_len = strlen(db);
	if (db_len == 0 || db_len > LV_CACHE_GEN_NAME_MAX)
		return NULL;
	uint32_t h = name_hash(db, t);
	_Atomic(lv_cache_gen_t *) *bucket = &g->buckets[h & (LV_CACHE_GENS_BUCKETS - 1)];
	lv_cache_gen_t *s =
		chain_find(atomic_load_explicit(bucket, memory_order_acquire), h, db, t);
	if (s)
		return s;

	pthread_mutex_lock(&g->lock);
	lv_cache_gen_t *head = atomic_load_explicit(bucket, memory_order_relaxed);
	s = chain_find(head, h, db, t);
	if (!s &&
	    atomic_load_explicit(&g->n_slots, memory_order_relaxed) < LV_CACHE_GENS_MAX_SLOTS) {
		s = lv_malloc(sizeof(*s));
		if (s) {
			atomic_init(&s->gen, 0);
			s->next = head;
			s->hash = h;
			memcpy(s->db, db, db_len + 1);
			memcpy(s->table, t, strlen(t) + 1);
			atomic_store_explicit(bucket, s, memory_order_release);
			atomic_fetch_add_explicit(&g->n_slots, 1, memory_order_relaxed);
		}
	}
	pthread_mutex_unlock(&g->lock);
	return s;
}

size_t lv_cache_gens_count(const lv_cache_gens_t *g)
{
	return atomic_load_explicit(&((lv_cache_gens_t *)g)->n_slots, memory_order_relaxed);
}

uint64_t lv_cache_gen_get(const lv_cache_gen_t *s)
{
	return atomic_load_explicit(&((lv_cache_gen_t *)s)->gen, memory_order_acquire);
}

uint64_t lv_cache_gen_bump(lv_cache_gen_t *s)
{
	return atomic_fetch_add_explicit(&s->gen, 1, memory_order_acq_rel) + 1;
}

void lv_cache_gen_raise(lv_cache_gen_t *s, uint64_t v)
{
	uint64_t cur = atomic_load_explicit(&s->gen, memory_order_acquire);
	while (cur < v && !atomic_compare_exchange_weak_explicit(
				  &s->gen, &cur, v, memory_order_acq_rel, memory_order_acquire)) {
		/* cur was reloaded by the failed exchange; try again while still lower. */
	}
}

const char *lv_cache_gen_table(const lv_cache_gen_t *s)
{
	return s->table;
}

const char *lv_cache_gen_db(const lv_cache_gen_t *s)
{
	return s->db;
}

void lv_cache_gens_for_each(lv_cache_gens_t *g, void (*fn)(lv_cache_gen_t *s, void *arg), void *arg)
{
	for (size_t i = 0; i < LV_CACHE_GENS_BUCKETS; i++) {
		lv_cache_gen_t *s = atomic_load_explicit(&g->buckets[i], memory_order_acquire);
		for (; s; s = s->next)
			fn(s, arg);
	}
}

uint64_t lv_cache_gens_epoch(const lv_cache_gens_t *g)
{
	return atomic_load_explicit(&((lv_cache_gens_t *)g)->epoch, memory_order_acquire);
}

uint64_t lv_cache_gens_bump_epoch(lv_cache_gens_t *g)
{
	return atomic_fetch_add_explicit(&g->epoch, 1, memory_order_acq_rel) + 1;
}

/* ------------------------------------------------------------------------
 * Snapshots
 * ------------------------------------------------------------------------ */

void lv_cache_gen_snapshot_init(lv_cache_gen_snapshot_t *snap, const lv_cache_gens_t *g)
{
	snap->epoch = lv_cache_gens_epoch(g);
	snap->n = 0;
}

bool lv_cache_gen_snapshot_add(lv_cache_gen_snapshot_t *snap, lv_cache_gens_t *g, const char *db,
			       const char *table)
{
	lv_cache_gen_t *s = lv_cache_gens_slot(g, db, table);
	if (!s)
		return false;
	for (size_t i = 0; i < snap->n; i++) {
		if (snap->pairs[i].slot == s)
			return true;
	}
	if (snap->n >= LV_CACHE_MAX_GENS)
		return false;
	snap->pairs[snap->n].slot = s;
	snap->pairs[snap->n].gen = lv_cache_gen_get(s);
	snap->n++;
	return true;
}

bool lv_cache_gen_snapshot_is_current(const lv_cache_gen_snapshot_t *snap, const lv_cache_gens_t *g)
{
	if (lv_cache_gens_epoch(g) != snap->epoch)
		return false;
	for (size_t i = 0; i < snap->n; i++) {
		if (lv_cache_gen_get(snap->pairs[i].slot) != snap->pairs[i].gen)
			return false;
	}
	return true;
}
