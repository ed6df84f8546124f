/* SPDX-License-Identifier: ISC */
/*
 * The memory (L1) result cache (see store.h for the contract).
 *
 *   store
 *    +- stripe[hash & (n-1)]  (mutex)
 *    |    buckets[(hash >> 6) & mask] -> entry -> entry ...   (chained)
 *    |    lru: most recent ... least recent (evicted from the tail)
 *    |    flights: in-flight fill/refresh records of this stripe's keys
 *    |    bytes: sum of entry sizes, kept <= budget / n_stripes
 *    +- counters (atomics)
 *
 * Ownership: the store holds one reference on each indexed entry; lookups
 * hand out further references. An entry's bucket link, LRU node and
 * in_store flag are written only under its stripe's lock; everything else
 * in an entry is written once by lv_cache_entry_new() before the entry is
 * published (inserting it takes the stripe lock, whose release orders those
 * writes before any reader that takes the lock later), and never again.
 *
 * Races, reasoned:
 *  - lookup vs eviction: both hold the stripe lock; a lookup either finds
 *    the entry and takes a reference before eviction unlinks it, or does not
 *    find it. Eviction drops only the store's reference, so the reader's
 *    bytes stay valid until it unrefs.
 *  - last unref: atomic fetch_sub with acq_rel; only the thread that moves
 *    the count from 1 to 0 frees, after every other holder's accesses
 *    (ordered by their release decrement).
 *  - generations change during or after a lookup: the check happens under
 *    the lock against atomic acquire loads; a write committed after the
 *    check is, to the client, concurrent with its read, which PostgreSQL
 *    itself would also allow to miss.
 *  - budget change: read atomically; each stripe evicts down to its share
 *    under its own lock.
 * The store never calls out to user code except for_each's callback, which
 * runs under a stripe lock and must not re-enter.
 *
 * Owns: entries' store references, flight records (with a copy of their key)
 * and the bucket arrays; process lifetime.
 */
#include "core/lv.h"
#include "cache/store.h"

#include <pthread.h>
#include <stdatomic.h>

#include "core/list.h"
#include "core/mem.h"

struct lv_cache_entry {
	_Atomic uint32_t refs;

	/* Store links: protected by the lock of the stripe holding the entry. */
	lv_cache_entry_t *hnext;
	lv_list_t lru;
	bool in_store;

	/* Immutable after lv_cache_entry_new(). */
	uint64_t hash;
	size_t size; /* whole allocation, bytes */
	size_t key_len;
	size_t rd_len;
	size_t body_len;
	bool has_rowdesc;
	int rule;
	lv_cache_times_t times;
	uint64_t epoch;
	size_t n_gens;
	const uint8_t *key;  /* into this allocation, after gens[] */
	const uint8_t *rd;   /* after key; NULL when !has_rowdesc */
	const uint8_t *body; /* after rd */
	lv_cache_gen_pair_t gens[];
};

typedef struct flight {
	struct flight *next;
	uint64_t hash;
	uint64_t waiters;      /* bit i: worker i waits */
	lv_usec_t deadline_us; /* taken over by the next caller after this */
	size_t key_len;
	uint8_t key[];
} flight_t;

typedef struct stripe {
	pthread_mutex_t lock;
	lv_cache_entry_t **buckets; /* n_buckets chains */
	size_t n_buckets;           /* power of two */
	size_t n_entries;
	size_t bytes;
	lv_list_t lru; /* head->next is the most recently used */
	flight_t *flights;
	uint8_t pad[64]; /* keeps neighbouring stripes' locks off one cache line */
} stripe_t;

struct lv_cache_store {
	lv_cache_gens_t *gens; /* borrowed */
	size_t n_stripes;
	stripe_t *stripes;
	_Atomic size_t budget;
	_Atomic lv_usec_t flight_timeout_us;

	_Atomic uint64_t entries, bytes, hits, stale_hits, misses, inserts, replaced, evictions,
		invalidated, expired, rejected, rejected_stale, flights, followers, flight_timeouts;
	_Atomic size_t flights_active;
};

#define INITIAL_BUCKETS 16

#define STAT_ADD(s, field, v) atomic_fetch_add_explicit(&(s)->field, (v), memory_order_relaxed)
#define STAT_SUB(s, field, v) atomic_fetch_sub_explicit(&(s)->field, (v), memory_order_relaxed)
#define STAT_GET(s, field) atomic_load_explicit(&(s)->field, memory_order_relaxed)

/* ------------------------------------------------------------------------
 * Entries
 * ------------------------------------------------------------------------ */

lv_cache_entry_t *lv_cache_entry_new(const lv_cache_key_t *k, const void *rowdesc, size_t rd_len,
				     bool has_rowdesc, const void *body, size_t body_len,
				     const lv_cache_gen_snapshot_t *gens,
				     const lv_cache_times_t *times, int rule)
{
	size_t n_gens = gens ? gens->n : 0;
	if (n_gens > LV_CACHE_MAX_GENS)
		return NULL;
	if (!has_rowdesc)
		rd_len = 0;
	size_t key_len = lv_buf_unread(&k->buf);
	size_t head = sizeof(lv_cache_entry_t) + n_gens * sizeof(lv_cache_gen_pair_t);
	if (key_len > SIZE_MAX / 4 || rd_len > SIZE_MAX / 4 || body_len > SIZE_MAX / 4)
		return NULL;
	size_t size = head + key_len + rd_len + body_len;
	lv_cache_entry_t *e = lv_malloc(size);
	if (!e)
		return NULL;
	atomic_init(&e->refs, 1);
	e->hnext = NULL;
	lv_list_init(&e->lru);
	e->in_store = false;
	e->hash = k->hash;
	e->size = size;
	e->key_len = key_len;
	e->rd_len = rd_len;
	e->body_len = body_len;
	e->has_rowdesc = has_rowdesc;
	e->rule = rule;
	e->times = *times;
	e->epoch = gens ? gens->epoch : 0;
	e->n_gens = n_gens;
	for (size_t i = 0; i < n_gens; i++)
		e->gens[i] = gens->pairs[i];
	uint8_t *p = (uint8_t *)e + head;
	if (key_len)
		memcpy(p, lv_buf_head(&k->buf), key_len);
	e->key = p;
	p += key_len;
	if (rd_len)
		memcpy(p, rowdesc, rd_len);
	e->rd = has_rowdesc ? p : NULL;
	p += rd_len;
	if (body_len)
		memcpy(p, body, body_len);
	e->body = p;
	return e;
}

lv_cache_entry_t *lv_cache_entry_ref(lv_cache_entry_t *e)
{
	atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	return e;
}

void lv_cache_entry_unref(lv_cache_entry_t *e)
{
	if (!e)
		return;
	if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
		lv_free(e);
}

const uint8_t *lv_cache_entry_key(const lv_cache_entry_t *e, size_t *len)
{
	*len = e->key_len;
	return e->key;
}

uint64_t lv_cache_entry_hash(const lv_cache_entry_t *e)
{
	return e->hash;
}

static bool key_eq(const uint8_t *a, size_t na, const lv_cache_key_t *k)
{
	size_t n = lv_buf_unread(&k->buf);
	return na == n && (n == 0 || memcmp(a, lv_buf_head(&k->buf), n) == 0);
}

bool lv_cache_entry_matches(const lv_cache_entry_t *e, const lv_cache_key_t *k)
{
	return key_eq(e->key, e->key_len, k);
}

bool lv_cache_entry_has_rowdesc(const lv_cache_entry_t *e)
{
	return e->has_rowdesc;
}

const uint8_t *lv_cache_entry_rowdesc(const lv_cache_entry_t *e, size_t *len)
{
	*len = e->rd_len;
	return e->rd;
}

const uint8_t *lv_cache_entry_body(const lv_cache_entry_t *e, size_t *len)
{
	*len = e->body_len;
	return e->body;
}

const lv_cache_times_t *lv_cache_entry_times(const lv_cache_entry_t *e)
{
	return &e->times;
}

int lv_cache_entry_rule(const lv_cache_entry_t *e)
{
	return e->rule;
}

size_t lv_cache_entry_size(const lv_cache_entry_t *e)
{
	return e->size;
}

uint64_t lv_cache_entry_epoch(const lv_cache_entry_t *e)
{
	return e->epoch;
}

size_t lv_cache_entry_n_gens(const lv_cache_entry_t *e)
{
	return e->n_gens;
}

const lv_cache_gen_pair_t *lv_cache_entry_gens(const lv_cache_entry_t *e)
{
	return e->gens;
}

bool lv_cache_entry_is_current(const lv_cache_entry_t *e, const lv_cache_gens_t *g)
{
	if (lv_cache_gens_epoch(g) != e->epoch)
		return false;
	for (size_t i = 0; i < e->n_gens; i++) {
		if (lv_cache_gen_get(e->gens[i].slot) != e->gens[i].gen)
			return false;
	}
	return true;
}

/* ------------------------------------------------------------------------
 * Stripes (every function here runs with the stripe lock held)
 * ------------------------------------------------------------------------ */

static stripe_t *stripe_of(lv_cache_store_t *s, uint64_t hash)
{
	return &s->stripes[hash & (s->n_stripes - 1)];
}

/* The low 6 bits chose the stripe (at most 64): the bucket comes from the bits above them. */
static size_t bucket_in(uint64_t hash, size_t n_buckets)
{
	return (size_t)(hash >> 6) & (n_buckets - 1);
}

static size_t bucket_of(const stripe_t *st, uint64_t hash)
{
	return bucket_in(hash, st->n_buckets);
}

static size_t stripe_budget(lv_cache_store_t *s)
{
	return atomic_load_explicit(&s->budget, memory_order_relaxed) / s->n_stripes;
}

static lv_cache_entry_t **find_link(stripe_t *st, const lv_cache_key_t *k)
{
	lv_cache_entry_t **link = &st->buckets[bucket_of(st, k->hash)];
	for (; *link; link = &(*link)->hnext) {
		lv_cache_entry_t *e = *link;
		if (e->hash == k->hash && key_eq(e->key, e->key_len, k))
			return link;
	}
	return link;
}

/* Unlinks the entry at *link and drops the store's reference. */
static void remove_at(lv_cache_store_t *s, stripe_t *st, lv_cache_entry_t **link)
{
	lv_cache_entry_t *e = *link;
	*link = e->hnext;
	e->hnext = NULL;
	lv_list_unlink(&e->lru);
	e->in_store = false;
	st->n_entries--;
	st->bytes -= e->size;
	STAT_SUB(s, entries, 1);
	STAT_SUB(s, bytes, e->size);
	lv_cache_entry_unref(e);
}

/* Removes e (known to be in this stripe). */
static void remove_entry(lv_cache_store_t *s, stripe_t *st, lv_cache_entry_t *e)
{
	lv_cache_entry_t **link = &st->buckets[bucket_of(st, e->hash)];
	while (*link != e)
		link = &(*link)->hnext;
	remove_at(s, st, link);
}

/* Doubles the bucket array when the stripe is crowded; on OOM keeps the old one. */
static void maybe_grow(stripe_t *st)
{
	if (st->n_entries < st->n_buckets || st->n_buckets >= ((size_t)1 << 40))
		return;
	size_t nb = st->n_buckets * 2;
	lv_cache_entry_t **b = lv_calloc(nb, sizeof(*b));
	if (!b)
		return;
	for (size_t i = 0; i < st->n_buckets; i++) {
		lv_cache_entry_t *e = st->buckets[i];
		while (e) {
			lv_cache_entry_t *next = e->hnext;
			size_t j = bucket_in(e->hash, nb);
			e->hnext = b[j];
			b[j] = e;
			e = next;
		}
	}
	lv_free(st->buckets);
	st->buckets = b;
	st->n_buckets = nb;
}

/* Evicts from the LRU tail until the stripe fits limit, never evicting keep. */
static void evict_to(lv_cache_store_t *s, stripe_t *st, size_t limit, const lv_cache_entry_t *keep)
{
	while (st->bytes > limit && !lv_list_empty(&st->lru)) {
		lv_cache_entry_t *victim = lv_container_of(st->lru.prev, lv_cache_entry_t, lru);
		if (victim == keep)
			break;
		remove_entry(s, st, victim);
		STAT_ADD(s, evictions, 1);
	}
}

static bool insert_locked(lv_cache_store_t *s, stripe_t *st, lv_cache_entry_t *e,
			  const lv_cache_key_t *k)
{
	size_t limit = stripe_budget(s);
	if (e->size > limit) {
		STAT_ADD(s, rejected, 1);
		return false;
	}
	if (!lv_cache_entry_is_current(e, s->gens)) {
		STAT_ADD(s, rejected_stale, 1);
		return false;
	}
	lv_cache_entry_t **link = find_link(st, k);
	if (*link) {
		remove_at(s, st, link);
		STAT_ADD(s, replaced, 1);
	}
	maybe_grow(st);
	size_t b = bucket_of(st, e->hash);
	lv_cache_entry_ref(e);
	e->hnext = st->buckets[b];
	st->buckets[b] = e;
	lv_list_insert_head(&st->lru, &e->lru);
	e->in_store = true;
	st->n_entries++;
	st->bytes += e->size;
	STAT_ADD(s, entries, 1);
	STAT_ADD(s, bytes, e->size);
	STAT_ADD(s, inserts, 1);
	evict_to(s, st, limit, e);
	return true;
}

static flight_t **flight_link(stripe_t *st, const lv_cache_key_t *k)
{
	flight_t **link = &st->flights;
	for (; *link; link = &(*link)->next) {
		flight_t *f = *link;
		if (f->hash == k->hash && key_eq(f->key, f->key_len, k))
			return link;
	}
	return link;
}

static flight_t *flight_add(lv_cache_store_t *s, stripe_t *st, const lv_cache_key_t *k,
			    lv_usec_t deadline)
{
	size_t n = lv_buf_unread(&k->buf);
	flight_t *f = lv_malloc(sizeof(*f) + n);
	if (!f)
		return NULL;
	f->hash = k->hash;
	f->waiters = 0;
	f->deadline_us = deadline;
	f->key_len = n;
	if (n)
		memcpy(f->key, lv_buf_head(&k->buf), n);
	f->next = st->flights;
	st->flights = f;
	STAT_ADD(s, flights_active, 1);
	return f;
}

static void flight_remove(lv_cache_store_t *s, flight_t **link)
{
	flight_t *f = *link;
	*link = f->next;
	lv_free(f);
	STAT_SUB(s, flights_active, 1);
}

/*
 * The claim shared by refreshes and fills. Returns LEADER when the caller
 * now leads k's flight, FOLLOWER when a live flight exists (recording
 * waiter_id if in 0..63), NONE on OOM.
 */
static lv_cache_flight_t claim_locked(lv_cache_store_t *s, stripe_t *st, const lv_cache_key_t *k,
				      int waiter_id, lv_usec_t now, lv_usec_t timeout_us)
{
	flight_t **link = flight_link(st, k);
	flight_t *f = *link;
	if (f && now < f->deadline_us) {
		if (waiter_id >= 0 && waiter_id < 64)
			f->waiters |= (uint64_t)1 << waiter_id;
		return LV_CACHE_FLIGHT_FOLLOWER;
	}
	if (f) {
		/* The leader is lost or slow: take over, keeping its waiters. */
		f->deadline_us = now + timeout_us;
		STAT_ADD(s, flight_timeouts, 1);
	} else if (!flight_add(s, st, k, now + timeout_us)) {
		return LV_CACHE_FLIGHT_NONE;
	}
	STAT_ADD(s, flights, 1);
	return LV_CACHE_FLIGHT_LEADER;
}

/* ------------------------------------------------------------------------
 * The store
 * ------------------------------------------------------------------------ */

lv_cache_store_t *lv_cache_store_new_striped(size_t budget_bytes, lv_cache_gens_t *gens,
					     size_t n_stripes)
{
	if (n_stripes == 0 || n_stripes > 64 || (n_stripes & (n_stripes - 1)) != 0)
		return NULL;
	lv_cache_store_t *s = lv_calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->gens = gens;
	s->n_stripes = n_stripes;
	atomic_init(&s->budget, budget_bytes);
	atomic_init(&s->flight_timeout_us, LV_CACHE_FLIGHT_TIMEOUT_US);
	s->stripes = lv_calloc(n_stripes, sizeof(stripe_t));
	if (!s->stripes) {
		lv_free(s);
		return NULL;
	}
	size_t i;
	for (i = 0; i < n_stripes; i++) {
		stripe_t *st = &s->stripes[i];
		lv_list_init(&st->lru);
		st->buckets = lv_calloc(INITIAL_BUCKETS, sizeof(*st->buckets));
		if (!st->buckets)
			break;
		if (pthread_mutex_init(&st->lock, NULL) != 0) {
			lv_free(st->buckets);
			break;
		}
		st->n_buckets = INITIAL_BUCKETS;
	}
	if (i < n_stripes) {
		while (i-- > 0) {
			pthread_mutex_destroy(&s->stripes[i].lock);
			lv_free(s->stripes[i].buckets);
		}
		lv_free(s->stripes);
		lv_free(s);
		return NULL;
	}
	return s;
}

lv_cache_store_t *lv_cache_store_new(size_t budget_bytes, lv_cache_gens_t *gens)
{
	return lv_cache_store_new_striped(budget_bytes, gens, LV_CACHE_STORE_STRIPES);
}

void lv_cache_store_free(lv_cache_store_t *s)
{
	if (!s)
		return;
	lv_cache_store_clear(s);
	for (size_t i = 0; i < s->n_stripes; i++) {
		stripe_t *st = &s->stripes[i];
		while (st->flights)
			flight_remove(s, &st->flights);
		lv_free(st->buckets);
		pthread_mutex_destroy(&st->lock);
	}
	lv_free(s->stripes);
	lv_free(s);
}

void lv_cache_store_set_budget(lv_cache_store_t *s, size_t budget_bytes)
{
	atomic_store_explicit(&s->budget, budget_bytes, memory_order_relaxed);
	size_t limit = budget_bytes / s->n_stripes;
	for (size_t i = 0; i < s->n_stripes; i++) {
		stripe_t *st = &s->stripes[i];
		pthread_mutex_lock(&st->lock);
		evict_to(s, st, limit, NULL);
		pthread_mutex_unlock(&st->lock);
	}
}

void lv_cache_store_set_flight_timeout(lv_cache_store_t *s, lv_usec_t timeout_us)
{
	atomic_store_explicit(&s->flight_timeout_us, timeout_us, memory_order_relaxed);
}

lv_cache_lookup_t lv_cache_store_lookup(lv_cache_store_t *s, const lv_cache_key_t *k, lv_usec_t now,
					lv_cache_entry_t **out)
{
	stripe_t *st = stripe_of(s, k->hash);
	lv_cache_lookup_t res = LV_CACHE_LOOKUP_MISS;
	*out = NULL;

	pthread_mutex_lock(&st->lock);
	lv_cache_entry_t **link = find_link(st, k);
	lv_cache_entry_t *e = *link;
	if (!e) {
		/* Nothing stored. */
	} else if (!lv_cache_entry_is_current(e, s->gens)) {
		remove_at(s, st, link);
		STAT_ADD(s, invalidated, 1);
	} else {
		switch (lv_cache_freshness(&e->times, now)) {
		case LV_CACHE_FRESH:
			res = LV_CACHE_LOOKUP_HIT;
			break;
		case LV_CACHE_STALE: {
			lv_usec_t to =
				atomic_load_explicit(&s->flight_timeout_us, memory_order_relaxed);
			res = claim_locked(s, st, k, -1, now, to) == LV_CACHE_FLIGHT_LEADER
				      ? LV_CACHE_LOOKUP_STALE_REFRESH
				      : LV_CACHE_LOOKUP_STALE;
			break;
		}
		case LV_CACHE_EXPIRED:
			remove_at(s, st, link);
			STAT_ADD(s, expired, 1);
			break;
		}
		if (res != LV_CACHE_LOOKUP_MISS) {
			lv_list_unlink(&e->lru);
			lv_list_insert_head(&st->lru, &e->lru);
			*out = lv_cache_entry_ref(e);
		}
	}
	pthread_mutex_unlock(&st->lock);

	if (res == LV_CACHE_LOOKUP_HIT)
		STAT_ADD(s, hits, 1);
	else if (res == LV_CACHE_LOOKUP_MISS)
		STAT_ADD(s, misses, 1);
	else
		STAT_ADD(s, stale_hits, 1);
	return res;
}

bool lv_cache_store_claim_refresh(lv_cache_store_t *s, const lv_cache_key_t *k, lv_usec_t now)
{
	stripe_t *st = stripe_of(s, k->hash);
	lv_usec_t to = atomic_load_explicit(&s->flight_timeout_us, memory_order_relaxed);
	pthread_mutex_lock(&st->lock);
	lv_cache_flight_t r = claim_locked(s, st, k, -1, now, to);
	pthread_mutex_unlock(&st->lock);
	return r == LV_CACHE_FLIGHT_LEADER;
}

lv_cache_flight_t lv_cache_store_begin_fill(lv_cache_store_t *s, const lv_cache_key_t *k,
					    int waiter_id, lv_usec_t now,
					    lv_usec_t flight_timeout_us)
{
	stripe_t *st = stripe_of(s, k->hash);
	pthread_mutex_lock(&st->lock);
	lv_cache_flight_t r = claim_locked(s, st, k, waiter_id, now, flight_timeout_us);
	pthread_mutex_unlock(&st->lock);
	if (r == LV_CACHE_FLIGHT_FOLLOWER)
		STAT_ADD(s, followers, 1);
	return r;
}

uint64_t lv_cache_store_end_fill(lv_cache_store_t *s, const lv_cache_key_t *k, lv_cache_entry_t *e)
{
	stripe_t *st = stripe_of(s, k->hash);
	uint64_t mask = 0;
	LV_ASSERT(!e || (e->hash == k->hash && key_eq(e->key, e->key_len, k)));
	pthread_mutex_lock(&st->lock);
	flight_t **link = flight_link(st, k);
	if (*link) {
		mask = (*link)->waiters;
		flight_remove(s, link);
	}
	if (e && !e->in_store)
		insert_locked(s, st, e, k);
	pthread_mutex_unlock(&st->lock);
	return mask;
}

/* A key view over an entry's bytes, for the insert path (no copy). */
static void key_view(lv_cache_key_t *k, const lv_cache_entry_t *e)
{
	lv_buf_init(&k->buf);
	k->buf.data = (uint8_t *)e->key;
	k->buf.len = k->buf.cap = e->key_len;
	k->hash = e->hash;
	k->failed = false;
}

bool lv_cache_store_insert(lv_cache_store_t *s, lv_cache_entry_t *e)
{
	lv_cache_key_t k;
	key_view(&k, e);
	stripe_t *st = stripe_of(s, e->hash);
	pthread_mutex_lock(&st->lock);
	bool ok = !e->in_store && insert_locked(s, st, e, &k);
	pthread_mutex_unlock(&st->lock);
	return ok;
}

bool lv_cache_store_remove(lv_cache_store_t *s, const lv_cache_key_t *k)
{
	stripe_t *st = stripe_of(s, k->hash);
	pthread_mutex_lock(&st->lock);
	lv_cache_entry_t **link = find_link(st, k);
	bool found = *link != NULL;
	if (found)
		remove_at(s, st, link);
	pthread_mutex_unlock(&st->lock);
	return found;
}

size_t lv_cache_store_clear(lv_cache_store_t *s)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n_stripes; i++) {
		stripe_t *st = &s->stripes[i];
		pthread_mutex_lock(&st->lock);
		while (!lv_list_empty(&st->lru)) {
			remove_entry(s, st, lv_container_of(st->lru.next, lv_cache_entry_t, lru));
			n++;
		}
		pthread_mutex_unlock(&st->lock);
	}
	return n;
}

uint64_t lv_cache_store_sweep(lv_cache_store_t *s, lv_usec_t now, size_t *n_removed)
{
	uint64_t mask = 0;
	size_t n = 0;
	for (size_t i = 0; i < s->n_stripes; i++) {
		stripe_t *st = &s->stripes[i];
		pthread_mutex_lock(&st->lock);
		lv_list_t *pos, *tmp;
		lv_list_for_each_safe(pos, tmp, &st->lru) {
			lv_cache_entry_t *e = lv_container_of(pos, lv_cache_entry_t, lru);
			if (!lv_cache_entry_is_current(e, s->gens)) {
				remove_entry(s, st, e);
				STAT_ADD(s, invalidated, 1);
				n++;
			} else if (lv_cache_freshness(&e->times, now) == LV_CACHE_EXPIRED) {
				remove_entry(s, st, e);
				STAT_ADD(s, expired, 1);
				n++;
			}
		}
		flight_t **link = &st->flights;
		while (*link) {
			if (now >= (*link)->deadline_us) {
				mask |= (*link)->waiters;
				STAT_ADD(s, flight_timeouts, 1);
				flight_remove(s, link);
			} else {
				link = &(*link)->next;
			}
		}
		pthread_mutex_unlock(&st->lock);
	}
	if (n_removed)
		*n_removed = n;
	return mask;
}

void lv_cache_store_for_each(lv_cache_store_t *s, void (*fn)(const lv_cache_entry_t *e, void *arg),
			     void *arg)
{
	for (size_t i = 0; i < s->n_stripes; i++) {
		stripe_t *st = &s->stripes[i];
		pthread_mutex_lock(&st->lock);
		lv_list_t *pos;
		lv_list_for_each(pos, &st->lru) {
			fn(lv_container_of(pos, lv_cache_entry_t, lru), arg);
		}
		pthread_mutex_unlock(&st->lock);
	}
}

lv_cache_store_stats_t lv_cache_store_stats(lv_cache_store_t *s)
{
	lv_cache_store_stats_t st = {
		.entries = STAT_GET(s, entries),
		.bytes = STAT_GET(s, bytes),
		.budget = atomic_load_explicit(&s->budget, memory_order_relaxed),
		.hits = STAT_GET(s, hits),
		.stale_hits = STAT_GET(s, stale_hits),
		.misses = STAT_GET(s, misses),
		.inserts = STAT_GET(s, inserts),
		.replaced = STAT_GET(s, replaced),
		.evictions = STAT_GET(s, evictions),
		.invalidated = STAT_GET(s, invalidated),
		.expired = STAT_GET(s, expired),
		.rejected = STAT_GET(s, rejected),
		.rejected_stale = STAT_GET(s, rejected_stale),
		.flights = STAT_GET(s, flights),
		.followers = STAT_GET(s, followers),
		.flight_timeouts = STAT_GET(s, flight_timeouts),
		.flights_active = STAT_GET(s, flights_active),
	};
	return st;
}
