/* SPDX-License-Identifier: ISC */
/*
 * The memory (L1) result cache, shared by every worker thread.
 *
 * What is keyed by what: entries are keyed by the full bytes of an
 * lv_cache_key_t (cache/key.h); its 64-bit hash picks a stripe and a bucket,
 * and an entry is served only when its key bytes equal the request's. An
 * entry holds the stored RowDescription message (optional), the body
 * (DataRow... CommandComplete messages exactly as the server sent them),
 * its times (cache/policy.h), the index of the rule that admitted it, and
 * the generations it was filled under (cache/gens.h).
 *
 * When entries become invalid: when the gens epoch or any recorded table
 * generation has moved (never served again: removed at the next lookup),
 * when now passes stale_until_us (removed at the next lookup or sweep), on
 * lv_cache_store_clear(), or when LRU eviction makes room in its stripe.
 * Between expires_us and stale_until_us an entry is served stale while one
 * caller holds the refresh claim.
 *
 * What the client is guaranteed: a hit replays bytes some server sent for
 * exactly this key, filled under table generations that are still current
 * at lookup time and within ttl (+ swr when stale-while-revalidate is on).
 * A write that committed before the fill's query was sent, or during the
 * fill, is never hidden by that entry.
 *
 * Threads: the table is split into stripes (64 by default), each with its
 * own mutex, hash buckets, LRU list, in-flight fill records and an equal
 * share of the memory budget. Entries are immutable once built and
 * reference-counted with atomics: a lookup takes a reference under the
 * stripe lock and the caller replays the bytes without any lock, then drops
 * its reference. Eviction only unlinks an entry and drops the store's
 * reference, so a reader's bytes stay valid until that reader lets go.
 *
 * Single-flight: the first caller to miss on a key becomes the LEADER of a
 * flight and fills; later callers are FOLLOWERs, recorded by worker index in
 * a 64-bit mask that lv_cache_store_end_fill() returns to the leader so it
 * can wake them. The same flight record is the stale-while-revalidate
 * refresh claim, so at most one fill or refresh per key runs in the process.
 * A flight older than its timeout is taken over by the next caller, so a
 * lost leader cannot block a key forever.
 */
#ifndef LEVEE_CACHE_STORE_H
#define LEVEE_CACHE_STORE_H

#include "core/lv.h"
#include "cache/gens.h"
#include "cache/key.h"
#include "cache/policy.h"
#include "core/time.h"

typedef struct lv_cache_store lv_cache_store_t;
typedef struct lv_cache_entry lv_cache_entry_t;

#define LV_CACHE_STORE_STRIPES 64
/* Default lifetime of a refresh claim taken by lv_cache_store_lookup(). */
#define LV_CACHE_FLIGHT_TIMEOUT_US (30 * LV_USEC_PER_SEC)

/* ------------------------------------------------------------------------
 * Entries
 * ------------------------------------------------------------------------ */

/*
 * A new entry with one reference (the caller's), copying everything into one
 * allocation: the bytes of k (which must be finished), the RowDescription
 * message rowdesc (rd_len bytes; ignored unless has_rowdesc), the body
 * (body_len bytes), the generations of gens, the times and rule (an index
 * into the config's cache rules, or -1). NULL on OOM or when gens holds more
 * than LV_CACHE_MAX_GENS pairs.
 */
lv_cache_entry_t *lv_cache_entry_new(const lv_cache_key_t *k, const void *rowdesc, size_t rd_len,
				     bool has_rowdesc, const void *body, size_t body_len,
				     const lv_cache_gen_snapshot_t *gens,
				     const lv_cache_times_t *times, int rule) LV_MUSTCHECK;
/* Takes a reference (atomic); returns e. */
lv_cache_entry_t *lv_cache_entry_ref(lv_cache_entry_t *e);
/* Drops a reference and frees the entry on the last one; NULL is a no-op. Thread-safe. */
void lv_cache_entry_unref(lv_cache_entry_t *e);

/* Accessors: the returned pointers are valid while the caller holds a reference. */
const uint8_t *lv_cache_entry_key(const lv_cache_entry_t *e, size_t *len);
uint64_t lv_cache_entry_hash(const lv_cache_entry_t *e);
/* True when the entry's key bytes equal k's. */
bool lv_cache_entry_matches(const lv_cache_entry_t *e, const lv_cache_key_t *k);
bool lv_cache_entry_has_rowdesc(const lv_cache_entry_t *e);
/* The whole RowDescription message (header included); NULL (and *len 0) when absent. */
const uint8_t *lv_cache_entry_rowdesc(const lv_cache_entry_t *e, size_t *len);
/* The DataRow... CommandComplete messages, header included. */
const uint8_t *lv_cache_entry_body(const lv_cache_entry_t *e, size_t *len);
const lv_cache_times_t *lv_cache_entry_times(const lv_cache_entry_t *e);
int lv_cache_entry_rule(const lv_cache_entry_t *e);
/* Bytes the entry costs against the budget (its whole allocation). */
size_t lv_cache_entry_size(const lv_cache_entry_t *e);
/* The gens epoch and the (slot, generation) pairs the entry was filled under. */
uint64_t lv_cache_entry_epoch(const lv_cache_entry_t *e);
size_t lv_cache_entry_n_gens(const lv_cache_entry_t *e);
const lv_cache_gen_pair_t *lv_cache_entry_gens(const lv_cache_entry_t *e);
/* True when g's epoch and every generation the entry recorded are unchanged. */
bool lv_cache_entry_is_current(const lv_cache_entry_t *e, const lv_cache_gens_t *g);

/* ------------------------------------------------------------------------
 * The store
 * ------------------------------------------------------------------------ */

typedef enum lv_cache_lookup {
	LV_CACHE_LOOKUP_MISS = 0,          /* nothing servable; *out is NULL */
	LV_CACHE_LOOKUP_HIT = 1,           /* fresh; *out holds a reference */
	LV_CACHE_LOOKUP_STALE = 2,         /* serve stale; a refresh already runs elsewhere */
	LV_CACHE_LOOKUP_STALE_REFRESH = 3, /* serve stale, and this caller must refresh */
} lv_cache_lookup_t;

typedef enum lv_cache_flight {
	LV_CACHE_FLIGHT_LEADER = 0,   /* the caller fills, then calls end_fill */
	LV_CACHE_FLIGHT_FOLLOWER = 1, /* a fill runs; the caller waits to be woken, then looks up */
	LV_CACHE_FLIGHT_NONE = 2,     /* OOM: fill without coordination (end_fill still allowed) */
} lv_cache_flight_t;

typedef struct lv_cache_store_stats {
	uint64_t entries;         /* entries held now */
	uint64_t bytes;           /* their lv_cache_entry_size() sum */
	uint64_t budget;          /* the configured budget */
	uint64_t hits;            /* lookups answered HIT */
	uint64_t stale_hits;      /* lookups answered STALE or STALE_REFRESH */
	uint64_t misses;          /* lookups answered MISS */
	uint64_t inserts;         /* entries inserted (replacements included) */
	uint64_t replaced;        /* inserts that replaced an entry with the same key */
	uint64_t evictions;       /* entries evicted by LRU to fit the budget */
	uint64_t invalidated;     /* entries removed because a generation changed */
	uint64_t expired;         /* entries removed because they passed stale_until */
	uint64_t rejected;        /* inserts refused: larger than the stripe's share */
	uint64_t rejected_stale;  /* inserts refused: generations already changed */
	uint64_t flights;         /* fills and refreshes led */
	uint64_t followers;       /* callers told to wait for a running fill */
	uint64_t flight_timeouts; /* flights taken over after their timeout */
	size_t flights_active;    /* flight records now */
} lv_cache_store_stats_t;

/* A store of LV_CACHE_STORE_STRIPES stripes sharing budget_bytes; NULL on OOM. gens is borrowed. */
lv_cache_store_t *lv_cache_store_new(size_t budget_bytes, lv_cache_gens_t *gens) LV_MUSTCHECK;
/* Same with n_stripes stripes (a power of two from 1 to 64); for tests and tiny budgets. */
lv_cache_store_t *lv_cache_store_new_striped(size_t budget_bytes, lv_cache_gens_t *gens,
					     size_t n_stripes) LV_MUSTCHECK;
/*
 * Frees the store, dropping its reference on every entry (entries still
 * referenced by callers live on until unreferenced) and every flight.
 * No other thread may use the store meanwhile. NULL is a no-op.
 */
void lv_cache_store_free(lv_cache_store_t *s);
/* Changes the budget (reload) and evicts at once until every stripe fits. Thread-safe. */
void lv_cache_store_set_budget(lv_cache_store_t *s, size_t budget_bytes);
/* Lifetime of refresh claims taken by lookup (default LV_CACHE_FLIGHT_TIMEOUT_US). */
void lv_cache_store_set_flight_timeout(lv_cache_store_t *s, lv_usec_t timeout_us);

/*
 * Looks k (finished) up at time now. HIT and STALE* put a new reference in
 * *out (the caller unrefs it after replaying); MISS sets *out to NULL. An
 * entry whose generations changed, or that is past stale_until, is removed
 * and reported as MISS. STALE_REFRESH means this caller took the key's one
 * refresh claim: it must refresh and then call lv_cache_store_end_fill()
 * (with NULL if the refresh fails). Thread-safe.
 */
lv_cache_lookup_t lv_cache_store_lookup(lv_cache_store_t *s, const lv_cache_key_t *k, lv_usec_t now,
					lv_cache_entry_t **out);
/*
 * Takes the refresh claim for k (XFetch early refresh of a fresh entry):
 * true when no fill or refresh of k is running (or the running one timed
 * out); the caller must then refresh and call lv_cache_store_end_fill().
 */
bool lv_cache_store_claim_refresh(lv_cache_store_t *s, const lv_cache_key_t *k, lv_usec_t now);

/*
 * Single-flight after a MISS. LEADER: no flight ran for k (or it was older
 * than flight_timeout_us; its waiters are inherited); the caller fills and
 * must call lv_cache_store_end_fill() in every case, with NULL when the
 * fill fails or is uncacheable. FOLLOWER: a fill runs; waiter_id (0..63, a
 * worker index; other values are not recorded) is added to the flight's
 * mask. NONE: out of memory; the caller may fill uncoordinated. A caller
 * that missed just before another leader inserted becomes a new leader and
 * fills once more: wasted work, never a wrong answer.
 */
lv_cache_flight_t lv_cache_store_begin_fill(lv_cache_store_t *s, const lv_cache_key_t *k,
					    int waiter_id, lv_usec_t now,
					    lv_usec_t flight_timeout_us);
/*
 * Ends k's flight (if any) and inserts e when non-NULL (as
 * lv_cache_store_insert(); the caller keeps its own reference). Returns the
 * mask of waiter ids recorded on the flight (0 if none or no flight).
 * A leader whose flight was taken over after a timeout ends the new
 * leader's flight; that costs at most a duplicate fill, never a wrong answer.
 */
uint64_t lv_cache_store_end_fill(lv_cache_store_t *s, const lv_cache_key_t *k, lv_cache_entry_t *e);
/*
 * Inserts e (the store takes its own reference; the caller keeps its own),
 * replacing an entry with the same key, then evicts least recently used
 * entries of the stripe until it fits its share of the budget. False (not
 * inserted) when e is larger than that share or its generations already
 * changed. Thread-safe.
 */
bool lv_cache_store_insert(lv_cache_store_t *s, lv_cache_entry_t *e);
/* Removes k's entry; true if there was one. */
bool lv_cache_store_remove(lv_cache_store_t *s, const lv_cache_key_t *k);
/* Removes every entry (flights stay); returns how many. */
size_t lv_cache_store_clear(lv_cache_store_t *s);
/*
 * Maintenance (janitor): removes entries past stale_until or no longer
 * current, and flights older than their deadline. Returns the mask of
 * waiters of the flights it dropped (wake them: they will retry); *n_removed
 * (if not NULL) gets the number of entries removed.
 */
uint64_t lv_cache_store_sweep(lv_cache_store_t *s, lv_usec_t now, size_t *n_removed);
/*
 * Calls fn for every entry, stripe by stripe, under that stripe's lock: fn
 * must not call back into the store and must take a reference to keep e.
 */
void lv_cache_store_for_each(lv_cache_store_t *s, void (*fn)(const lv_cache_entry_t *e, void *arg),
			     void *arg);
/* Counters and sizes (each read atomically; together only approximately consistent). */
lv_cache_store_stats_t lv_cache_store_stats(lv_cache_store_t *s);

#endif
