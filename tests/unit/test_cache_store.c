/* levee-test-deps: src/cache/gens.c src/cache/key.c src/cache/policy.c tests/unit/fakes/time.c */
/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for cache/store.c: hits and references, the freshness timeline
 * with the stale-while-revalidate single refresh claim, per-entry
 * generation staleness, LRU eviction within the budget, single-flight
 * (leader, followers' mask, timeout takeover, sweep), OOM, and four threads
 * hammering one store (run under valgrind by make valgrind-unit).
 */
#include "core/lv.h"
#include "cache/store.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "core/mem.h"
#include "fakes/fake_time.h"

#define SEC LV_USEC_PER_SEC

static void make_key(lv_cache_key_t *k, const char *text)
{
	lv_cache_key_init(k);
	assert_true(lv_cache_key_add_str(k, LV_CACHE_KEY_DB, "app"));
	assert_true(lv_cache_key_add_str(k, LV_CACHE_KEY_TEXT, text));
	assert_true(lv_cache_key_finish(k));
}

/* An entry for k holding body (as bytes), ttl/swr in seconds from now, under snap. */
static lv_cache_entry_t *make_entry(const lv_cache_key_t *k, const char *body, int ttl_s, int swr_s,
				    const lv_cache_gen_snapshot_t *snap)
{
	lv_cache_times_t t;
	lv_cache_times_make(&t, lv_time_now_us(), ttl_s * 1000LL, swr_s * 1000LL, 1000);
	lv_cache_entry_t *e =
		lv_cache_entry_new(k, "T-bytes", 7, true, body, strlen(body), snap, &t, 2);
	assert_non_null(e);
	return e;
}

static void check_body(const lv_cache_entry_t *e, const char *want)
{
	size_t n;
	const uint8_t *p = lv_cache_entry_body(e, &n);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(p, want, n);
}

typedef struct fixture {
	lv_cache_gens_t *g;
	lv_cache_store_t *s;
	lv_cache_gen_snapshot_t empty;
} fixture_t;

static int setup(void **state)
{
	fixture_t *f = calloc(1, sizeof(*f));
	f->g = lv_cache_gens_new();
	f->s = lv_cache_store_new(1 << 20, f->g);
	lv_cache_gen_snapshot_init(&f->empty, f->g);
	lv_fake_time_set(LV_FAKE_TIME_START_US);
	*state = f;
	return f->g && f->s ? 0 : -1;
}

static int teardown(void **state)
{
	fixture_t *f = *state;
	lv_cache_store_free(f->s);
	lv_cache_gens_free(f->g);
	free(f);
	return 0;
}

static void test_entry_accessors(void **state)
{
	fixture_t *f = *state;
	lv_cache_key_t k, other;
	make_key(&k, "select 1");
	make_key(&other, "select 2");
	lv_cache_gen_snapshot_t snap;
	lv_cache_gen_snapshot_init(&snap, f->g);
	assert_true(lv_cache_gen_snapshot_add(&snap, f->g, "app", "posts"));
	lv_cache_entry_t *e = make_entry(&k, "BODY", 30, 60, &snap);
	size_t n;
	const uint8_t *p = lv_cache_entry_key(e, &n);
	assert_int_equal(n, lv_buf_unread(&k.buf));
	assert_memory_equal(p, lv_buf_head(&k.buf), n);
	assert_int_equal(lv_cache_entry_hash(e), k.hash);
	assert_true(lv_cache_entry_matches(e, &k));
	assert_false(lv_cache_entry_matches(e, &other));
	assert_true(lv_cache_entry_has_rowdesc(e));
	p = lv_cache_entry_rowdesc(e, &n);
	assert_int_equal(n, 7);
	assert_memory_equal(p, "T-bytes", 7);
	check_body(e, "BODY");
	assert_int_equal(lv_cache_entry_rule(e), 2);
	assert_int_equal(lv_cache_entry_times(e)->expires_us, lv_time_now_us() + 30 * SEC);
	assert_int_equal(lv_cache_entry_n_gens(e), 1);
	assert_ptr_equal(lv_cache_entry_gens(e)[0].slot, lv_cache_gens_find(f->g, "app", "posts"));
	assert_true(lv_cache_entry_size(e) > 4 + 7 + n);
	assert_true(lv_cache_entry_is_current(e, f->g));
	lv_cache_gen_bump(lv_cache_gens_find(f->g, "app", "posts"));
	assert_false(lv_cache_entry_is_current(e, f->g));
	lv_cache_entry_unref(e);

	/* Without a description. */
	lv_cache_times_t t;
	lv_cache_times_make(&t, 0, 1, 0, 0);
	e = lv_cache_entry_new(&k, "ignored", 7, false, "", 0, NULL, &t, -1);
	assert_non_null(e);
	assert_false(lv_cache_entry_has_rowdesc(e));
	assert_null(lv_cache_entry_rowdesc(e, &n));
	assert_int_equal(n, 0);
	assert_int_equal(lv_cache_entry_n_gens(e), 0);
	lv_cache_entry_unref(e);
	lv_cache_entry_unref(NULL);
	lv_cache_key_cleanup(&k);
	lv_cache_key_cleanup(&other);
}

static void test_hit_and_refs(void **state)
{
	fixture_t *f = *state;
	lv_cache_key_t k, k2;
	make_key(&k, "select 1");
	make_key(&k2, "select 2");
	lv_cache_entry_t *got = (void *)1;
	assert_int_equal(lv_cache_store_lookup(f->s, &k, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_MISS);
	assert_null(got);

	lv_cache_entry_t *e = make_entry(&k, "one", 30, 0, &f->empty);
	assert_true(lv_cache_store_insert(f->s, e));
	assert_false(lv_cache_store_insert(f->s, e)); /* already in */
	lv_cache_entry_unref(e);                      /* the store keeps its own */

	assert_int_equal(lv_cache_store_lookup(f->s, &k, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_HIT);
	assert_ptr_equal(got, e);
	check_body(got, "one");
	assert_int_equal(lv_cache_store_lookup(f->s, &k2, lv_time_now_us(), &e),
			 LV_CACHE_LOOKUP_MISS);

	/* Removed while a reader holds it: the bytes stay valid. */
	assert_true(lv_cache_store_remove(f->s, &k));
	assert_false(lv_cache_store_remove(f->s, &k));
	check_body(got, "one");
	lv_cache_entry_unref(got);

	/* Replacing an entry with the same key. */
	e = make_entry(&k, "old", 30, 0, &f->empty);
	assert_true(lv_cache_store_insert(f->s, e));
	lv_cache_entry_unref(e);
	e = make_entry(&k, "new", 30, 0, &f->empty);
	assert_true(lv_cache_store_insert(f->s, e));
	lv_cache_entry_unref(e);
	assert_int_equal(lv_cache_store_lookup(f->s, &k, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_HIT);
	check_body(got, "new");
	lv_cache_entry_unref(got);

	lv_cache_store_stats_t st = lv_cache_store_stats(f->s);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.inserts, 3);
	assert_int_equal(st.replaced, 1);
	assert_int_equal(st.hits, 2);
	assert_int_equal(st.misses, 2);
	assert_int_equal(st.budget, 1 << 20);
	assert_int_equal(lv_cache_store_clear(f->s), 1);
	st = lv_cache_store_stats(f->s);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.bytes, 0);
	lv_cache_key_cleanup(&k);
	lv_cache_key_cleanup(&k2);
}

static void test_timeline_and_swr(void **state)
{
	fixture_t *f = *state;
	lv_cache_key_t k;
	make_key(&k, "select now");
	lv_cache_entry_t *e = make_entry(&k, "v1", 30, 60, &f->empty), *got;
	assert_true(lv_cache_store_insert(f->s, e));
	lv_cache_entry_unref(e);

	lv_fake_time_advance(30 * SEC - 1);
	assert_int_equal(lv_cache_store_lookup(f->s, &k, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_HIT);
	lv_cache_entry_unref(got);

	/* Expired, within swr: the first caller wins the refresh, the others just serve. */
	lv_fake_time_advance(1);
	assert_int_equal(lv_cache_store_lookup(f->s, &k, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_STALE_REFRESH);
	check_body(got, "v1");
	lv_cache_entry_unref(got);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(lv_cache_store_lookup(f->s, &k, lv_time_now_us(), &got),
				 LV_CACHE_LOOKUP_STALE);
		check_body(got, "v1");
		lv_cache_entry_unref(got);
	}
	/* A fill or XFetch claim is refused while the refresh runs; a miss would follow it. */
	assert_false(lv_cache_store_claim_refresh(f->s, &k, lv_time_now_us()));
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k, 5, lv_time_now_us(), 10 * SEC),
			 LV_CACHE_FLIGHT_FOLLOWER);

	/* The refresh ends with a new entry: fresh again, and the follower is returned. */
	lv_fake_time_advance(2 * SEC);
	e = make_entry(&k, "v2", 30, 60, &f->empty);
	assert_int_equal(lv_cache_store_end_fill(f->s, &k, e), (uint64_t)1 << 5);
	lv_cache_entry_unref(e);
	assert_int_equal(lv_cache_store_lookup(f->s, &k, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_HIT);
	check_body(got, "v2");
	lv_cache_entry_unref(got);

	/* Past stale_until: removed, miss. */
	lv_fake_time_advance(90 * SEC);
	assert_int_equal(lv_cache_store_lookup(f->s, &k, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_MISS);
	assert_null(got);
	lv_cache_store_stats_t st = lv_cache_store_stats(f->s);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.expired, 1);
	assert_int_equal(st.stale_hits, 6);
	lv_cache_key_cleanup(&k);
}

static void test_refresh_claim_timeout(void **state)
{
	fixture_t *f = *state;
	lv_cache_key_t k;
	make_key(&k, "q");
	lv_cache_store_set_flight_timeout(f->s, 5 * SEC);
	lv_cache_entry_t *e = make_entry(&k, "v1", 1, 600, &f->empty), *got;
	assert_true(lv_cache_store_insert(f->s, e));
	lv_cache_entry_unref(e);
	lv_fake_time_advance(2 * SEC);
	assert_int_equal(lv_cache_store_lookup(f->s, &k, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_STALE_REFRESH);
	lv_cache_entry_unref(got);
	/* The refresher is lost: after the timeout someone else refreshes. */
	lv_fake_time_advance(5 * SEC - 1);
	assert_int_equal(lv_cache_store_lookup(f->s, &k, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_STALE);
	lv_cache_entry_unref(got);
	lv_fake_time_advance(1);
	assert_int_equal(lv_cache_store_lookup(f->s, &k, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_STALE_REFRESH);
	lv_cache_entry_unref(got);
	assert_int_equal(lv_cache_store_stats(f->s).flight_timeouts, 1);
	/* A failed refresh ends with NULL: the stale entry stays, the claim is free again. */
	assert_int_equal(lv_cache_store_end_fill(f->s, &k, NULL), 0);
	assert_int_equal(lv_cache_store_stats(f->s).flights_active, 0);
	assert_true(lv_cache_store_claim_refresh(f->s, &k, lv_time_now_us()));
	assert_int_equal(lv_cache_store_end_fill(f->s, &k, NULL), 0);
	lv_cache_key_cleanup(&k);
}

static void test_generations(void **state)
{
	fixture_t *f = *state;
	lv_cache_key_t ka, kb, kc;
	make_key(&ka, "select * from posts");
	make_key(&kb, "select * from users");
	make_key(&kc, "select * from posts join users");
	lv_cache_gen_snapshot_t sa, sb, sc;
	lv_cache_gen_snapshot_init(&sa, f->g);
	assert_true(lv_cache_gen_snapshot_add(&sa, f->g, "app", "posts"));
	lv_cache_gen_snapshot_init(&sb, f->g);
	assert_true(lv_cache_gen_snapshot_add(&sb, f->g, "app", "users"));
	lv_cache_gen_snapshot_init(&sc, f->g);
	assert_true(lv_cache_gen_snapshot_add(&sc, f->g, "app", "posts"));
	assert_true(lv_cache_gen_snapshot_add(&sc, f->g, "app", "users"));
	lv_cache_entry_t *e, *got;
	e = make_entry(&ka, "a", 30, 0, &sa);
	assert_true(lv_cache_store_insert(f->s, e));
	lv_cache_entry_unref(e);
	e = make_entry(&kb, "b", 30, 0, &sb);
	assert_true(lv_cache_store_insert(f->s, e));
	lv_cache_entry_unref(e);
	e = make_entry(&kc, "c", 30, 0, &sc);
	assert_true(lv_cache_store_insert(f->s, e));
	lv_cache_entry_unref(e);

	/* A write to users: b and c are stale (never served), a is not. */
	lv_cache_gen_bump(lv_cache_gens_slot(f->g, "app", "users"));
	assert_int_equal(lv_cache_store_lookup(f->s, &ka, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_HIT);
	lv_cache_entry_unref(got);
	assert_int_equal(lv_cache_store_lookup(f->s, &kb, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_MISS);
	size_t removed = 99;
	assert_int_equal(lv_cache_store_sweep(f->s, lv_time_now_us(), &removed), 0);
	assert_int_equal(removed, 1); /* c, found by the sweep */
	assert_int_equal(lv_cache_store_lookup(f->s, &kc, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_MISS);
	assert_int_equal(lv_cache_store_stats(f->s).invalidated, 2);

	/* A write that commits during the fill: the snapshot was taken before, insert refuses. */
	lv_cache_gen_snapshot_init(&sb, f->g);
	assert_true(lv_cache_gen_snapshot_add(&sb, f->g, "app", "users"));
	lv_cache_gen_bump(lv_cache_gens_slot(f->g, "app", "users")); /* the concurrent write */
	e = make_entry(&kb, "b2", 30, 0, &sb);
	assert_int_equal(lv_cache_store_begin_fill(f->s, &kb, 0, lv_time_now_us(), SEC),
			 LV_CACHE_FLIGHT_LEADER);
	lv_cache_store_end_fill(f->s, &kb, e);
	lv_cache_entry_unref(e);
	assert_int_equal(lv_cache_store_lookup(f->s, &kb, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_MISS);
	assert_int_equal(lv_cache_store_stats(f->s).rejected_stale, 1);

	/* The epoch invalidates everything, tables or not. */
	e = make_entry(&kb, "no tables", 30, 0, &f->empty);
	lv_cache_gen_snapshot_init(&f->empty, f->g);
	lv_cache_entry_unref(e);
	e = make_entry(&kb, "no tables", 30, 0, &f->empty);
	assert_true(lv_cache_store_insert(f->s, e));
	lv_cache_entry_unref(e);
	lv_cache_gens_bump_epoch(f->g);
	assert_int_equal(lv_cache_store_lookup(f->s, &ka, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_MISS);
	assert_int_equal(lv_cache_store_lookup(f->s, &kb, lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_MISS);
	assert_int_equal(lv_cache_store_stats(f->s).entries, 0);
	lv_cache_key_cleanup(&ka);
	lv_cache_key_cleanup(&kb);
	lv_cache_key_cleanup(&kc);
}

static void test_lru_budget(void **state)
{
	(void)state;
	lv_cache_gens_t *g = lv_cache_gens_new();
	lv_cache_gen_snapshot_t snap;
	lv_cache_gen_snapshot_init(&snap, g);
	lv_cache_key_t k[5];
	char text[16];
	for (int i = 0; i < 5; i++) {
		snprintf(text, sizeof(text), "q%d", i);
		make_key(&k[i], text);
	}
	/* All entries have the same size; the budget holds exactly three. */
	lv_cache_entry_t *probe = make_entry(&k[0], "0123456789", 30, 0, &snap);
	size_t sz = lv_cache_entry_size(probe);
	lv_cache_entry_unref(probe);
	lv_cache_store_t *s = lv_cache_store_new_striped(3 * sz + sz / 2, g, 1);
	assert_non_null(s);
	lv_cache_entry_t *e, *got;
	for (int i = 0; i < 3; i++) {
		e = make_entry(&k[i], "0123456789", 30, 0, &snap);
		assert_true(lv_cache_store_insert(s, e));
		lv_cache_entry_unref(e);
	}
	/* Touch q0 so q1 becomes the least recently used. */
	assert_int_equal(lv_cache_store_lookup(s, &k[0], lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_HIT);
	lv_cache_entry_unref(got);
	e = make_entry(&k[3], "0123456789", 30, 0, &snap);
	assert_true(lv_cache_store_insert(s, e));
	lv_cache_entry_unref(e);
	lv_cache_store_stats_t st = lv_cache_store_stats(s);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.evictions, 1);
	assert_int_equal(st.bytes, 3 * sz);
	assert_int_equal(lv_cache_store_lookup(s, &k[1], lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_MISS);
	for (int i = 0; i < 4; i += (i == 0 ? 2 : 1)) {
		assert_int_equal(lv_cache_store_lookup(s, &k[i], lv_time_now_us(), &got),
				 LV_CACHE_LOOKUP_HIT);
		lv_cache_entry_unref(got);
	}
	/* Lookup order was q0, q2, q3: shrinking to one entry keeps q3. */
	lv_cache_store_set_budget(s, sz);
	st = lv_cache_store_stats(s);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.evictions, 3);
	assert_int_equal(lv_cache_store_lookup(s, &k[3], lv_time_now_us(), &got),
			 LV_CACHE_LOOKUP_HIT);
	lv_cache_entry_unref(got);
	/* An entry bigger than the stripe's share is refused. */
	e = make_entry(&k[4], "0123456789-and-more", 30, 0, &snap);
	assert_false(lv_cache_store_insert(s, e));
	lv_cache_entry_unref(e);
	assert_int_equal(lv_cache_store_stats(s).rejected, 1);
	/* Budget 0: nothing is kept. */
	lv_cache_store_set_budget(s, 0);
	assert_int_equal(lv_cache_store_stats(s).entries, 0);
	assert_null(lv_cache_store_new_striped(1, g, 3));   /* not a power of two */
	assert_null(lv_cache_store_new_striped(1, g, 128)); /* more than 64 */
	lv_cache_store_free(s);
	lv_cache_gens_free(g);
	for (int i = 0; i < 5; i++)
		lv_cache_key_cleanup(&k[i]);
}

static void test_single_flight(void **state)
{
	fixture_t *f = *state;
	lv_cache_key_t k, k2;
	make_key(&k, "select slow()");
	make_key(&k2, "select other()");
	lv_usec_t now = lv_time_now_us();
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k, 0, now, 10 * SEC),
			 LV_CACHE_FLIGHT_LEADER);
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k, 3, now, 10 * SEC),
			 LV_CACHE_FLIGHT_FOLLOWER);
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k, 63, now, 10 * SEC),
			 LV_CACHE_FLIGHT_FOLLOWER);
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k, 64, now, 10 * SEC),
			 LV_CACHE_FLIGHT_FOLLOWER); /* not recorded */
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k, -1, now, 10 * SEC),
			 LV_CACHE_FLIGHT_FOLLOWER); /* not recorded */
	/* Another key is independent. */
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k2, 1, now, 10 * SEC),
			 LV_CACHE_FLIGHT_LEADER);
	assert_int_equal(lv_cache_store_stats(f->s).flights_active, 2);

	lv_cache_entry_t *e = make_entry(&k, "rows", 30, 0, &f->empty), *got;
	assert_int_equal(lv_cache_store_end_fill(f->s, &k, e),
			 ((uint64_t)1 << 3) | ((uint64_t)1 << 63));
	lv_cache_entry_unref(e);
	assert_int_equal(lv_cache_store_lookup(f->s, &k, now, &got), LV_CACHE_LOOKUP_HIT);
	lv_cache_entry_unref(got);
	/* Ending again: no flight, no waiters. */
	assert_int_equal(lv_cache_store_end_fill(f->s, &k, NULL), 0);

	/* A lost leader: its flight is taken over after the timeout, waiters inherited. */
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k2, 2, now + 9 * SEC, 10 * SEC),
			 LV_CACHE_FLIGHT_FOLLOWER);
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k2, 4, now + 10 * SEC, 10 * SEC),
			 LV_CACHE_FLIGHT_LEADER);
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k2, 5, now + 11 * SEC, 10 * SEC),
			 LV_CACHE_FLIGHT_FOLLOWER);
	assert_int_equal(lv_cache_store_end_fill(f->s, &k2, NULL),
			 ((uint64_t)1 << 2) | ((uint64_t)1 << 5));
	assert_int_equal(lv_cache_store_lookup(f->s, &k2, now, &got), LV_CACHE_LOOKUP_MISS);

	/* The sweep drops timed-out flights and returns their waiters. */
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k2, 0, now, SEC), LV_CACHE_FLIGHT_LEADER);
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k2, 6, now, SEC),
			 LV_CACHE_FLIGHT_FOLLOWER);
	assert_int_equal(lv_cache_store_sweep(f->s, now + SEC - 1, NULL), 0);
	assert_int_equal(lv_cache_store_sweep(f->s, now + SEC, NULL), (uint64_t)1 << 6);
	assert_int_equal(lv_cache_store_stats(f->s).flights_active, 0);
	lv_cache_store_stats_t st = lv_cache_store_stats(f->s);
	assert_int_equal(st.flights, 4);
	assert_int_equal(st.followers, 7);
	assert_int_equal(st.flight_timeouts, 2);
	/* A flight left running is freed with the store (valgrind checks). */
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k2, 0, now, SEC), LV_CACHE_FLIGHT_LEADER);
	lv_cache_key_cleanup(&k);
	lv_cache_key_cleanup(&k2);
}

static void count_entry(const lv_cache_entry_t *e, void *arg)
{
	size_t *n = arg;
	n[0]++;
	n[1] += lv_cache_entry_size(e);
}

static bool fail_all(size_t n)
{
	(void)n;
	return true;
}

static void test_oom_and_for_each(void **state)
{
	fixture_t *f = *state;
	lv_cache_key_t k;
	make_key(&k, "q");
	lv_cache_times_t t;
	lv_cache_times_make(&t, 0, 1000, 0, 0);
	lv_mem_set_fail_hook(fail_all);
	assert_null(lv_cache_entry_new(&k, NULL, 0, false, "x", 1, NULL, &t, 0));
	assert_int_equal(lv_cache_store_begin_fill(f->s, &k, 0, 0, SEC), LV_CACHE_FLIGHT_NONE);
	assert_null(lv_cache_store_new(100, f->g));
	lv_mem_set_fail_hook(NULL);
	/* end_fill without a flight still inserts. */
	lv_cache_entry_t *e = make_entry(&k, "x", 30, 0, &f->empty);
	assert_int_equal(lv_cache_store_end_fill(f->s, &k, e), 0);
	lv_cache_entry_unref(e);
	size_t n[2] = {0, 0};
	lv_cache_store_for_each(f->s, count_entry, n);
	assert_int_equal(n[0], 1);
	assert_int_equal(n[1], lv_cache_store_stats(f->s).bytes);
	lv_cache_key_cleanup(&k);
}

/* ------------------------------------------------------------------------
 * Four threads
 * ------------------------------------------------------------------------ */

#define HAMMER_THREADS 4
#define HAMMER_ROUNDS 20000
#define HAMMER_KEYS 512

typedef struct hammer {
	lv_cache_store_t *s;
	lv_cache_gens_t *g;
	int id;
	int bad;
	uint64_t rs;
} hammer_t;

static void *hammer_run(void *arg)
{
	hammer_t *h = arg;
	char text[32], body[64];
	lv_cache_key_t k;
	lv_cache_key_init(&k);
	for (int r = 0; r < HAMMER_ROUNDS; r++) {
		uint64_t rnd = lv_cache_rand(&h->rs);
		int id = (int)(rnd % HAMMER_KEYS);
		int table = id % 8;
		snprintf(text, sizeof(text), "select %d", id);
		snprintf(body, sizeof(body), "rows of %d", id);
		lv_cache_key_reset(&k);
		if (!lv_cache_key_add_str(&k, LV_CACHE_KEY_TEXT, text) ||
		    !lv_cache_key_finish(&k)) {
			h->bad++;
			continue;
		}
		lv_usec_t now = (lv_usec_t)r * 1000; /* per-thread clock: 1 ms per round */
		lv_cache_entry_t *e = NULL;
		lv_cache_lookup_t res = lv_cache_store_lookup(h->s, &k, now, &e);
		if (res != LV_CACHE_LOOKUP_MISS) {
			size_t n;
			const uint8_t *p = lv_cache_entry_body(e, &n);
			if (!lv_cache_entry_matches(e, &k) || n != strlen(body) ||
			    memcmp(p, body, n) != 0)
				h->bad++;
			lv_cache_entry_unref(e);
			if (res == LV_CACHE_LOOKUP_STALE_REFRESH)
				lv_cache_store_end_fill(h->s, &k, NULL);
			continue;
		}
		lv_cache_flight_t fl = lv_cache_store_begin_fill(h->s, &k, h->id, now, SEC);
		if (fl == LV_CACHE_FLIGHT_FOLLOWER)
			continue;
		char tname[8];
		snprintf(tname, sizeof(tname), "t%d", table);
		lv_cache_gen_snapshot_t snap;
		lv_cache_gen_snapshot_init(&snap, h->g);
		if (!lv_cache_gen_snapshot_add(&snap, h->g, "db", tname)) {
			h->bad++;
			continue;
		}
		lv_cache_times_t t;
		lv_cache_times_make(&t, now, 1 + (int64_t)(rnd >> 32) % 50, 20, 100);
		e = lv_cache_entry_new(&k, "T", 1, true, body, strlen(body), &snap, &t, 0);
		if (!e) {
			h->bad++;
			continue;
		}
		lv_cache_store_end_fill(h->s, &k, e);
		lv_cache_entry_unref(e);
		/* Writers, invalidation, maintenance and reload, now and then. */
		if (rnd % 97 == 0)
			lv_cache_gen_bump(lv_cache_gens_slot(h->g, "db", tname));
		if (rnd % 1009 == 0)
			lv_cache_store_sweep(h->s, now, NULL);
		if (rnd % 4001 == 0)
			lv_cache_store_clear(h->s);
		if (rnd % 3001 == 0)
			lv_cache_store_set_budget(h->s, (rnd >> 40) % 2 ? 64 * 1024 : 16 * 1024);
	}
	lv_cache_key_cleanup(&k);
	return NULL;
}

static void sum_entries(const lv_cache_entry_t *e, void *arg)
{
	uint64_t *n = arg;
	n[0]++;
	n[1] += lv_cache_entry_size(e);
}

static void test_threads(void **state)
{
	(void)state;
	lv_cache_gens_t *g = lv_cache_gens_new();
	lv_cache_store_t *s = lv_cache_store_new(32 * 1024, g); /* small: constant eviction */
	hammer_t h[HAMMER_THREADS];
	pthread_t th[HAMMER_THREADS];
	for (int i = 0; i < HAMMER_THREADS; i++) {
		h[i] = (hammer_t){.s = s, .g = g, .id = i, .rs = (uint64_t)i * 7919 + 1};
		assert_int_equal(pthread_create(&th[i], NULL, hammer_run, &h[i]), 0);
	}
	for (int i = 0; i < HAMMER_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(h[i].bad, 0);
	}
	lv_cache_store_stats_t st = lv_cache_store_stats(s);
	uint64_t n[2] = {0, 0};
	lv_cache_store_for_each(s, sum_entries, n);
	/* The counters agree with a walk, and every stripe is within its share. */
	assert_int_equal(st.entries, n[0]);
	assert_int_equal(st.bytes, n[1]);
	assert_true(st.bytes <= st.budget);
	assert_true(st.evictions > 0);
	assert_true(st.hits > 0);
	assert_int_equal(st.hits + st.stale_hits + st.misses,
			 (uint64_t)HAMMER_THREADS * HAMMER_ROUNDS);
	assert_int_equal(st.flights_active, 0);
	lv_cache_store_free(s);
	lv_cache_gens_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_entry_accessors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hit_and_refs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeline_and_swr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refresh_claim_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_generations, setup, teardown),
		cmocka_unit_test(test_lru_budget),
		cmocka_unit_test_setup_teardown(test_single_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oom_and_for_each, setup, teardown),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
