/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for sql/classify.c: a corpus of statements with their expected
 * kind, replica safety, tables, route and flags
 * (tests/unit/fixtures/sql/corpus.tsv), then focused tests for hints, SET
 * details, session state, transaction options, fingerprints, normalisation,
 * the classification cache, table-list overflow, deep nesting and
 * allocation failures; then row-level ("point") keys
 * (tests/unit/fixtures/sql/point.tsv) and their limits.
 */
#include "core/lv.h"

#include <ctype.h>
#include <setjmp.h> /* before cmocka.h, which needs jmp_buf */

#include <cmocka.h>

#include "core/mem.h"
#include "core/status.h"
#include "sql/classify.h"

#define CORPUS "tests/unit/fixtures/sql/corpus.tsv"

static const char *const extra_writers[] = {"my_write_fn", "audit.log_it", NULL};

static const lv_sql_opts_t corpus_opts = {
	.write_functions = extra_writers,
	.write_functions_list = " bump_counter_* , other_fn",
};

static void classify(const char *sql, lv_sql_info_t *in)
{
	assert_int_equal(lv_sql_classify(sql, strlen(sql), NULL, in), LV_OK);
}

/* ---------------------------------------------------------------- corpus */

typedef struct corpus_line {
	int lineno;
	char sql[1024];
	char *col[7]; /* sql (raw), kind, ro, read, written, route, flags */
} corpus_line_t;

static void unescape(const char *src, char *dst, size_t cap)
{
	size_t n = 0;
	if (strcmp(src, "<empty>") == 0) {
		dst[0] = '\0';
		return;
	}
	for (const char *p = src; *p && n + 1 < cap; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			dst[n++] = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
		} else {
			dst[n++] = *p;
		}
	}
	dst[n] = '\0';
}

/* "a,b,c" or "-" compared with a table list. */
static bool tables_match(const char *want, const lv_sql_info_t *in, bool written, char *got,
			 size_t cap)
{
	unsigned n = written ? in->n_written : in->n_read;
	size_t len = 0;
	got[0] = '\0';
	for (unsigned i = 0; i < n; i++) {
		const char *t = written ? lv_sql_table_written(in, i) : lv_sql_table_read(in, i);
		len += (size_t)snprintf(got + len, cap - len, "%s%s", i ? "," : "", t);
		if (len >= cap)
			return false;
	}
	if (n == 0)
		snprintf(got, cap, "-");
	return strcmp(want, got) == 0;
}

static void add_flag(char *buf, size_t cap, const char *f)
{
	size_t len = strlen(buf);
	snprintf(buf + len, cap - len, "%s%s", len ? " " : "", f);
}

/* The flags that are set, in the corpus' canonical order. */
static void flags_of(const lv_sql_info_t *in, char *buf, size_t cap)
{
	char tmp[64];
	buf[0] = '\0';
	if (in->has_locking_clause)
		add_flag(buf, cap, "lock");
	if (in->has_writing_cte)
		add_flag(buf, cap, "wcte");
	if (in->has_select_into)
		add_flag(buf, cap, "into");
	if (in->has_returning)
		add_flag(buf, cap, "ret");
	if (in->calls_write_function)
		add_flag(buf, cap, "wfn");
	if (in->calls_volatile)
		add_flag(buf, cap, "vol");
	if (in->is_transaction_control)
		add_flag(buf, cap, "txctl");
	if (in->txn_read_only)
		add_flag(buf, cap, "txro");
	if (in->txn_read_write)
		add_flag(buf, cap, "txrw");
	if (in->is_multi)
		add_flag(buf, cap, "multi");
	for (unsigned r = 1; r < LV_SQL_SESSION_COUNT; r++) {
		if (in->creates_mask & LV_SQL_SESSION_BIT(r)) {
			snprintf(tmp, sizeof(tmp), "sess=%s", lv_sql_session_name(r));
			add_flag(buf, cap, tmp);
		}
	}
	if (in->clears_mask == LV_SQL_SESSION_ALL_BITS) {
		add_flag(buf, cap, "clear=ALL");
	} else {
		for (unsigned r = 1; r < LV_SQL_SESSION_COUNT; r++) {
			if (in->clears_mask & LV_SQL_SESSION_BIT(r)) {
				snprintf(tmp, sizeof(tmp), "clear=%s", lv_sql_session_name(r));
				add_flag(buf, cap, tmp);
			}
		}
	}
	if (buf[0] == '\0')
		snprintf(buf, cap, "-");
}

static const char *route_of(const lv_sql_info_t *in)
{
	return in->hints.want_primary || !in->is_read_only ? "primary" : "replica";
}

/* Checks one line; prints every mismatch and returns how many there were. */
static int check_line(const corpus_line_t *cl, const lv_sql_info_t *in)
{
	char got[1024];
	int bad = 0;
	const char *ro = in->is_read_only ? "ro" : "rw";

#define MISMATCH(what, want, have)                                                            \
	do {                                                                                  \
		fprintf(stderr, "%s:%d: %s: want '%s' got '%s'   [%s]\n", CORPUS, cl->lineno, \
			what, want, have, cl->sql);                                           \
		bad++;                                                                        \
	} while (0)

	if (strcmp(cl->col[1], lv_sql_kind_name(in->kind)) != 0)
		MISMATCH("kind", cl->col[1], lv_sql_kind_name(in->kind));
	if (strcmp(cl->col[2], ro) != 0)
		MISMATCH("read-only", cl->col[2], ro);
	if (!tables_match(cl->col[3], in, false, got, sizeof(got)))
		MISMATCH("read", cl->col[3], got);
	if (!tables_match(cl->col[4], in, true, got, sizeof(got)))
		MISMATCH("written", cl->col[4], got);
	if (strcmp(cl->col[5], route_of(in)) != 0)
		MISMATCH("route", cl->col[5], route_of(in));
	flags_of(in, got, sizeof(got));
	if (strcmp(cl->col[6], got) != 0)
		MISMATCH("flags", cl->col[6], got);
	if (in->kind == LV_SQL_UNPARSABLE && in->error[0] == '\0')
		MISMATCH("error", "a message", "");
	if (in->kind != LV_SQL_UNPARSABLE && in->error[0] != '\0')
		MISMATCH("error", "", in->error);
#undef MISMATCH
	return bad;
}

static FILE *open_corpus(void)
{
	const char *dir = getenv("LV_TEST_SRCDIR");
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir ? dir : ".", CORPUS);
	FILE *f = fopen(path, "r");
	if (!f)
		fprintf(stderr, "cannot open %s (run from the repository root)\n", path);
	return f;
}

/* Runs every corpus line through classify (or the cache, by text or by shape); returns lines checked. */
static int run_corpus(lv_sql_cache_t *cache, bool by_shape, int *n_bad)
{
	FILE *f = open_corpus();
	char line[2048];
	int n = 0, lineno = 0;
	static corpus_line_t cl;
	static lv_sql_info_t in;

	assert_non_null(f);
	*n_bad = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		memset(&cl, 0, sizeof(cl));
		cl.lineno = lineno;
		int k = 0;
		char *p = line;
		while (k < 7) {
			cl.col[k++] = p;
			p = strchr(p, '\t');
			if (!p)
				break;
			*p++ = '\0';
		}
		if (k != 7 || p) {
			fprintf(stderr, "%s:%d: want 7 tab-separated columns\n", CORPUS, lineno);
			(*n_bad)++;
			continue;
		}
		unescape(cl.col[0], cl.sql, sizeof(cl.sql));
		size_t len = strlen(cl.sql);
		int rc = !cache	   ? lv_sql_classify(cl.sql, len, &corpus_opts, &in)
			 : by_shape ? lv_sql_cache_classify_shape(cache, cl.sql, len, &corpus_opts, false, &in)
				    : lv_sql_cache_classify(cache, cl.sql, len, &corpus_opts, &in);
		assert_int_equal(rc, LV_OK);
		*n_bad += check_line(&cl, &in);
		n++;
	}
	fclose(f);
	return n;
}

static void test_corpus(void **state)
{
	int bad;
	int n = run_corpus(NULL, false, &bad);
	fprintf(stderr, "corpus: %d statements, %d mismatches\n", n, bad);
	assert_true(n >= 150);
	assert_int_equal(bad, 0);
}

/*
 * Runs the corpus twice through a new cache, by text or by shape; both passes
 * must give the corpus's answers. Returns the statements of one pass and the
 * cache's stats after each.
 */
static int corpus_twice(bool by_shape, lv_sql_cache_stats_t *s1, lv_sql_cache_stats_t *s2)
{
	lv_sql_cache_t *cache = lv_sql_cache_new(1024);
	int bad;
	assert_non_null(cache);
	int n = run_corpus(cache, by_shape, &bad);
	assert_int_equal(bad, 0);
	*s1 = lv_sql_cache_stats(cache);
	assert_int_equal(run_corpus(cache, by_shape, &bad), n);
	assert_int_equal(bad, 0);
	*s2 = lv_sql_cache_stats(cache);
	lv_sql_cache_free(cache);
	return n;
}

/* The corpus through a cache: the first pass misses, the second hits, both agree. */
static void test_corpus_cached(void **state)
{
	lv_sql_cache_stats_t s1, s2;
	int n = corpus_twice(false, &s1, &s2);
	/* Second pass: every statement is a hit (the corpus has a few duplicates). */
	assert_int_equal(s2.hits - s1.hits, (uint64_t)n);
	assert_int_equal(s2.misses, s1.misses);
	assert_true(s1.misses <= (uint64_t)n);
	assert_int_equal(s1.misses + s1.hits, (uint64_t)n);
}

/* The corpus by shape: both passes give the corpus's answers. */
static void test_corpus_by_shape(void **state)
{
	lv_sql_cache_stats_t s1, s2;
	int n = corpus_twice(true, &s1, &s2);
	/* The corpus is full of texts that must not share a shape; some do. */
	assert_true(s2.hits - s1.hits > (uint64_t)n / 4);
}

/* Everything lv_sql_cache_classify_shape promises, equal in a and b. */
static bool same_but_constants(const lv_sql_info_t *a, const lv_sql_info_t *b, char *why, size_t cap)
{
	char fa[512], fb[512];
#define DIFF(field)                                                                              \
	do {                                                                                     \
		if (a->field != b->field) {                                                      \
			snprintf(why, cap, #field ": %lld vs %lld", (long long)a->field,         \
				 (long long)b->field);                                           \
			return false;                                                            \
		}                                                                                \
	} while (0)
	DIFF(kind);
	DIFF(n_statements);
	DIFF(is_read_only);
	DIFF(txn_isolation);
	DIFF(txn_deferrable);
	DIFF(txn_chain);
	DIFF(session_reason);
	DIFF(hints.want_primary);
	DIFF(hints.want_replica);
	DIFF(n_read);
	DIFF(n_written);
	DIFF(read_overflow);
	DIFF(written_overflow);
#undef DIFF
	flags_of(a, fa, sizeof(fa));
	flags_of(b, fb, sizeof(fb));
	if (strcmp(fa, fb) != 0) {
		snprintf(why, cap, "flags: %.200s vs %.200s", fa, fb);
		return false;
	}
	for (unsigned i = 0; i < a->n_read; i++)
		if (strcmp(lv_sql_table_read(a, i), lv_sql_table_read(b, i)) != 0) {
			snprintf(why, cap, "read table %u", i);
			return false;
		}
	for (unsigned i = 0; i < a->n_written; i++)
		if (strcmp(lv_sql_table_written(a, i), lv_sql_table_written(b, i)) != 0) {
			snprintf(why, cap, "written table %u", i);
			return false;
		}
	return true;
}

/*
 * Shapes stand for every text that differs only in constants: each corpus
 * statement, then a variant with every digit changed, by shape; the variant's
 * answer (often from the original's entry) must be what parsing it gives.
 * Digits in identifiers change too, which changes the shape: also checked.
 */
static void test_shape_variants(void **state)
{
	FILE *f = open_corpus();
	char line[2048];
	static corpus_line_t cl;
	static lv_sql_info_t a, b;
	char why[512];
	int n = 0, shared = 0, bad = 0;
	lv_sql_cache_t *cache = lv_sql_cache_new(4096);
	assert_non_null(f);
	assert_non_null(cache);
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		*strchr(line, '\t') = '\0';
		unescape(line, cl.sql, sizeof(cl.sql));
		size_t len = strlen(cl.sql);
		assert_int_equal(lv_sql_cache_classify_shape(cache, cl.sql, len, &corpus_opts, false, &a), LV_OK);
		for (size_t i = 0; i < len; i++)
			if (isdigit((unsigned char)cl.sql[i]))
				cl.sql[i] = (char)('0' + (cl.sql[i] - '0' + 7) % 10);
		uint64_t hits = lv_sql_cache_stats(cache).hits;
		assert_int_equal(lv_sql_cache_classify_shape(cache, cl.sql, len, &corpus_opts, false, &a), LV_OK);
		shared += lv_sql_cache_stats(cache).hits != hits;
		assert_int_equal(lv_sql_classify(cl.sql, len, &corpus_opts, &b), LV_OK);
		if (!same_but_constants(&a, &b, why, sizeof(why))) {
			fprintf(stderr, "%s: %s\n", cl.sql, why);
			bad++;
		}
		assert_false(a.point.is_point);
		n++;
	}
	fclose(f);
	fprintf(stderr, "shape variants: %d statements, %d shared an entry\n", n, shared);
	assert_int_equal(bad, 0);
	assert_true(shared > 0);
	lv_sql_cache_free(cache);
}

/* Whether b was answered from a's entry, by shape. */
static bool shares_shape(const char *a, const char *b)
{
	static lv_sql_info_t in;
	lv_sql_cache_t *cache = lv_sql_cache_new(16);
	assert_non_null(cache);
	assert_int_equal(lv_sql_cache_classify_shape(cache, a, strlen(a), NULL, false, &in), LV_OK);
	uint64_t hits = lv_sql_cache_stats(cache).hits;
	assert_int_equal(lv_sql_cache_classify_shape(cache, b, strlen(b), NULL, false, &in), LV_OK);
	bool shared = lv_sql_cache_stats(cache).hits != hits;
	lv_sql_cache_free(cache);
	return shared;
}

static void test_shape_boundaries(void **state)
{
	/* Constants of one kind, anywhere, in any number. */
	assert_true(shares_shape("SELECT abalance FROM pgbench_accounts WHERE aid = 17;",
				 "SELECT abalance FROM pgbench_accounts WHERE aid = 90210;"));
	assert_true(shares_shape("UPDATE t SET v = v + -5 WHERE id = 3", "UPDATE t SET v = v + -12 WHERE id = 9"));
	assert_true(shares_shape("SELECT * FROM t WHERE a = 'x' AND b = 1.5e3", "SELECT * FROM t WHERE a = 'it''s' AND b = 2.0e-1"));
	assert_true(shares_shape("SELECT * FROM \"T 1\" WHERE a = $1", "SELECT * FROM \"T 1\" WHERE a = $1"));
	assert_true(shares_shape("INSERT INTO t1 VALUES (1, 'a')", "INSERT INTO t1 VALUES (2, 'bb')"));
	/* Different tokens: a string is not a number, identifiers are not constants. */
	assert_false(shares_shape("SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE a = '1'"));
	assert_false(shares_shape("SELECT * FROM t1", "SELECT * FROM t2"));
	assert_false(shares_shape("SELECT * FROM \"t'1\" WHERE a = 1", "SELECT * FROM \"t'2\" WHERE a = 1"));
	assert_false(shares_shape("SELECT $1", "SELECT $2"));
	/* Texts whose lexing a shape cannot vouch for are parsed every time. */
	assert_false(shares_shape("SELECT E'a'", "SELECT E'b'"));
	assert_false(shares_shape("SELECT 'a\\'", "SELECT 'b\\'"));
	assert_false(shares_shape("SELECT $$a$$", "SELECT $$b$$"));
	assert_false(shares_shape("SELECT 1 /* c", "SELECT 2 /* c"));
	/* Comments are one space, nested or not; hints are the text's own. */
	assert_true(shares_shape("SELECT 1 -- c", "SELECT 2 -- d"));
	assert_true(shares_shape("SELECT 1 -- c\n, 2", "SELECT 3  \n, 4"));
	assert_true(shares_shape("SELECT /* a /* b */ c */ 1", "SELECT /* x */ 2"));
	assert_true(shares_shape("SELECT 1 -- it's", "SELECT 2 -- it's"));
	assert_false(shares_shape("SELECT 1 -- c\n, 2", "SELECT 1 -- c, 2"));
	assert_false(shares_shape("SELECT .5", "SELECT .6"));
	assert_false(shares_shape("SELECT 1.2.3", "SELECT 4.5.6"));
	assert_false(shares_shape("SELECT 1e", "SELECT 2e"));
	assert_false(shares_shape("SELECT 1x", "SELECT 2x"));
	assert_false(shares_shape("SELECT U&'a'", "SELECT U&'b'"));
	assert_false(shares_shape("SELECT 'a", "SELECT 'b"));
	assert_false(shares_shape("SELECT \"a", "SELECT \"b"));
	/* Statements whose meaning follows a constant are never shared. */
	assert_false(shares_shape("SELECT nextval('a')", "SELECT nextval('b')"));
	assert_false(shares_shape("SELECT set_config('a', 'b', true)", "SELECT set_config('a', 'b', true)"));
	assert_false(shares_shape("EXPLAIN (ANALYZE 0) DELETE FROM t", "EXPLAIN (ANALYZE 1) DELETE FROM t"));
	assert_false(shares_shape("SET work_mem = 1", "SET work_mem = 2"));
	assert_false(shares_shape("SELECT 1; SELECT 2", "SELECT 3; SELECT 4"));

	/* A hit carries the hints of the text asked about, not of the one parsed. */
	{
		static lv_sql_info_t h;
		lv_sql_cache_t *hc = lv_sql_cache_new(16);
		const char *a = "/* levee:primary */ SELECT * FROM t WHERE id = 1";
		const char *b = "/* levee:replica */ SELECT * FROM t WHERE id = 2";
		const char *c = "/* no hint */ SELECT * FROM t WHERE id = 3";
		const char *d = "/* levee:async key=k9 */ INSERT INTO t (id) VALUES (1)";
		const char *e = "/* levee:async */ INSERT INTO t (id) VALUES (2)";
		assert_non_null(hc);
		assert_int_equal(lv_sql_cache_classify_shape(hc, a, strlen(a), NULL, false, &h), LV_OK);
		assert_true(h.hints.want_primary);
		assert_int_equal(lv_sql_cache_classify_shape(hc, b, strlen(b), NULL, false, &h), LV_OK);
		assert_int_equal(lv_sql_cache_stats(hc).hits, 1);
		assert_false(h.hints.want_primary);
		assert_true(h.hints.want_replica);
		assert_int_equal(lv_sql_cache_classify_shape(hc, c, strlen(c), NULL, false, &h), LV_OK);
		assert_false(h.hints.has_any);
		assert_int_equal(lv_sql_cache_classify_shape(hc, d, strlen(d), NULL, false, &h), LV_OK);
		assert_string_equal(h.hints.async_key, "k9");
		assert_int_equal(lv_sql_cache_classify_shape(hc, e, strlen(e), NULL, false, &h), LV_OK);
		assert_int_equal(lv_sql_cache_stats(hc).hits, 3);
		assert_true(h.hints.want_async);
		assert_string_equal(h.hints.async_key, "");
		assert_int_equal(h.kind, LV_SQL_INSERT);
		lv_sql_cache_free(hc);
	}

	/* No point keys from a shape, even for the text that was parsed. */
	static lv_sql_info_t in;
	lv_sql_cache_t *cache = lv_sql_cache_new(16);
	assert_non_null(cache);
	const char *q = "SELECT v FROM t WHERE id = 5";
	assert_int_equal(lv_sql_cache_classify_shape(cache, q, strlen(q), NULL, false, &in), LV_OK);
	assert_false(in.point.is_point);
	assert_int_equal(in.point_values_len, 0);
	assert_int_equal(lv_sql_cache_classify_shape(cache, q, strlen(q), NULL, false, &in), LV_OK);
	assert_false(in.point.is_point);
	assert_int_equal(lv_sql_table_read(&in, 0)[0], 't');
	/* The same cache still answers by text, with point keys. */
	assert_int_equal(lv_sql_cache_classify(cache, q, strlen(q), NULL, &in), LV_OK);
	assert_true(in.point.is_point);
	/* A NUL ends the text, as for lv_sql_classify. */
	assert_int_equal(lv_sql_cache_classify_shape(cache, "SELECT 1\0; DELETE FROM t", 24, NULL, false, &in), LV_OK);
	assert_true(in.is_read_only);
	assert_int_equal(lv_sql_cache_classify_shape(NULL, q, strlen(q), NULL, false, &in), LV_EINVAL);
	lv_sql_cache_free(cache);
}

/* ---------------------------------------------------------------- hints */

static void hints(const char *sql, lv_sql_hints_t *h)
{
	assert_int_equal(lv_sql_hints(sql, strlen(sql), h), LV_OK);
}

static void test_hints_basic(void **state)
{
	lv_sql_hints_t h;

	hints("select 1", &h);
	assert_false(h.has_any);
	assert_int_equal(h.n_invalid, 0);

	hints("/* levee:primary */ select 1", &h);
	assert_true(h.has_any);
	assert_true(h.want_primary);
	assert_false(h.want_replica);

	hints("select 1 -- LEVEE:Replica", &h);
	assert_true(h.want_replica);

	hints("/*levee:nocache*/select 1", &h);
	assert_true(h.want_no_cache);

	hints("select 1 /* levee:cache ttl=30s swr=60s */", &h);
	assert_true(h.want_cache);
	assert_int_equal(h.cache_ttl_ms, 30000);
	assert_int_equal(h.cache_swr_ms, 60000);

	hints("/* levee:cache */ select 1", &h);
	assert_true(h.want_cache);
	assert_int_equal(h.cache_ttl_ms, 0);

	hints("/* levee:async */ insert into t values (1)", &h);
	assert_true(h.want_async);
	assert_string_equal(h.async_key, "");

	hints("insert into t values (1) /* levee:async key=user:42 */", &h);
	assert_true(h.want_async);
	assert_string_equal(h.async_key, "user:42");

	hints("/* levee:async key='user 42, x' */ insert into t values (1)", &h);
	assert_string_equal(h.async_key, "user 42, x");

	/* Several hints, comma- or space-separated, across comments. */
	hints("/* levee:cache ttl=5s, levee:replica */ select 1 -- levee:async key=k", &h);
	assert_true(h.want_cache);
	assert_int_equal(h.cache_ttl_ms, 5000);
	assert_true(h.want_replica);
	assert_true(h.want_async);
	assert_string_equal(h.async_key, "k");
	assert_int_equal(h.n_invalid, 0);

	/* Prose around hints; '=' in prose after a plain word is ignored. */
	hints("/* route this: levee:primary because a=b */ select 1", &h);
	assert_true(h.want_primary);
	assert_int_equal(h.n_invalid, 0);

	/* Nested block comments. */
	hints("select 1 /* a /* b */ levee:primary */", &h);
	assert_true(h.want_primary);
}

static void test_hints_durations(void **state)
{
	static const struct {
		const char *sql;
		uint32_t ttl_ms;
		bool ok;
	} cases[] = {
		{"/* levee:cache ttl=30s */", 30000, true},
		{"/* levee:cache ttl=250ms */", 250, true},
		{"/* levee:cache ttl=5min */", 300000, true},
		{"/* levee:cache ttl=2h */", 7200000, true},
		{"/* levee:cache ttl=7 */", 7000, true},
		{"/* levee:cache ttl=0s */", 0, true},
		{"/* levee:cache ttl=5m */", 0, false},
		{"/* levee:cache ttl=abc */", 0, false},
		{"/* levee:cache ttl= */", 0, false},
		{"/* levee:cache ttl=-1s */", 0, false},
		{"/* levee:cache ttl=99999999h */", 0, false},
		{"/* levee:cache ttl=4294967296ms */", 0, false},
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		lv_sql_hints_t h;
		hints(cases[i].sql, &h);
		assert_true(h.want_cache);
		assert_int_equal(h.cache_ttl_ms, cases[i].ttl_ms);
		assert_int_equal(h.n_invalid, cases[i].ok ? 0 : 1);
	}
}

static void test_hints_invalid(void **state)
{
	lv_sql_hints_t h;
	char big[512];

	hints("/* levee:bogus */ select 1", &h);
	assert_false(h.has_any);
	assert_int_equal(h.n_invalid, 1);
	assert_string_equal(h.invalid, "levee:bogus");

	hints("/* levee:primary ttl=5s */ select 1", &h);
	assert_true(h.want_primary);
	assert_int_equal(h.n_invalid, 1);
	assert_string_equal(h.invalid, "ttl=5s");

	hints("/* levee:cache color=red, levee:what */", &h);
	assert_true(h.want_cache);
	assert_int_equal(h.n_invalid, 2);
	assert_string_equal(h.invalid, "color=red");

	/* An oversized async key is refused, not truncated. */
	memset(big, 'k', sizeof(big));
	memcpy(big, "/* levee:async key=", 19);
	memcpy(big + sizeof(big) - 4, " */", 4);
	hints(big, &h);
	assert_true(h.want_async);
	assert_string_equal(h.async_key, "");
	assert_int_equal(h.n_invalid, 1);

	/* Bare "levee:" and key=value with no hint before it. */
	hints("/* levee: ttl=5s */", &h);
	assert_false(h.has_any);
	assert_int_equal(h.n_invalid, 0);
}

static void test_hints_not_in_literals(void **state)
{
	static const char *const not_hints[] = {
		"select '/* levee:primary */'",
		"select 'it''s /* levee:primary */'",
		"select E'\\' /* levee:primary */'",
		"select \"/* levee:primary */\" from t",
		"select $$ /* levee:primary */ $$",
		"select $tag$ -- levee:primary\n $tag$",
		"select $a$ $b$ /* levee:primary */ $b$ $a$",
		"select 1 /* levee:primary", /* unterminated */
		"select 'unterminated /* levee:primary */",
		"select $x$ unterminated /* levee:primary */",
		"select levee:primary",
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(not_hints); i++) {
		lv_sql_hints_t h;
		hints(not_hints[i], &h);
		if (h.want_primary)
			fail_msg("hint found in: %s", not_hints[i]);
		assert_false(h.has_any);
	}

	/* Identifiers with $ inside are not dollar quotes, so the comment counts. */
	lv_sql_hints_t h;
	hints("select a$b$ /* levee:primary */ from t", &h);
	assert_true(h.want_primary);
	hints("select $1 /* levee:primary */", &h);
	assert_true(h.want_primary);
	hints("select 'a' /* levee:primary */", &h);
	assert_true(h.want_primary);
	/* A NUL byte ends the statement. */
	assert_int_equal(lv_sql_hints("select 1\0/* levee:primary */", 29, &h), LV_OK);
	assert_false(h.want_primary);
}

static void test_hints_traceparent(void **state)
{
	lv_sql_hints_t h;
	static const char tp[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

	hints("select 1 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/",
	      &h);
	assert_true(h.has_any);
	assert_string_equal(h.traceparent, tp);

	/* sqlcommenter with other keys; levee hints in the same comment. */
	hints("select 1 /*action='%2Fusers',controller='index',traceparent='00-4bf92f3577b34da6a3"
	      "ce929d0e0e4736-00f067aa0ba902b7-01',tracestate='congo%3Dt61rcWkgMzE'*/",
	      &h);
	assert_string_equal(h.traceparent, tp);
	assert_int_equal(h.n_invalid, 0);
	hints("/* levee:replica traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"
	      "01' */ select 1",
	      &h);
	assert_true(h.want_replica);
	assert_string_equal(h.traceparent, tp);
	assert_int_equal(h.n_invalid, 0);

	/* Malformed ones are not copied. */
	hints("/*traceparent='00-xyz'*/ select 1", &h);
	assert_string_equal(h.traceparent, "");
	assert_int_equal(h.n_invalid, 1);
	hints("/*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x'*/", &h);
	assert_string_equal(h.traceparent, "");
	hints("/*traceparent='00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/", &h);
	assert_string_equal(h.traceparent, "");
}

/* classify() reports the same hints as lv_sql_hints(), also when unparsable. */
static void test_hints_in_classify(void **state)
{
	static const char *const sqls[] = {
		"/* levee:cache ttl=30s swr=60s */ select * from t",
		"garbage /* levee:primary */",
		"/* levee:async key=a */",
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(sqls); i++) {
		lv_sql_info_t in;
		lv_sql_hints_t h;
		classify(sqls[i], &in);
		hints(sqls[i], &h);
		assert_memory_equal(&in.hints, &h, sizeof(h));
		assert_true(h.has_any);
	}
}

/* ---------------------------------------------------------------- SET */

static void test_set_details(void **state)
{
	/* flags: L is_local, R is_reset, D is_default. */
	static const struct {
		const char *sql;
		lv_sql_kind_t kind;
		const char *name;
		const char *value;
		const char *flags;
	} cases[] = {
		{"SET search_path TO app, \"B\"", LV_SQL_SET, "search_path", "app, \"B\"", ""},
		{"set Search_Path = 'a' ;", LV_SQL_SET, "search_path", "'a'", ""},
		{"set statement_timeout = 5000 /* levee:primary */ ;", LV_SQL_SET,
		 "statement_timeout", "5000", ""},
		{"set local work_mem to '64MB'", LV_SQL_SET_LOCAL, "work_mem", "'64MB'", "L"},
		{"set x.y to 1.5", LV_SQL_SET, "x.y", "1.5", ""},
		{"set x to default", LV_SQL_SET, "x", "", "D"},
		{"set time zone 'UTC'", LV_SQL_SET, "timezone", "'UTC'", ""},
		{"set time zone local", LV_SQL_SET, "timezone", "", "D"},
		{"SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE", LV_SQL_SET, "timezone",
		 "INTERVAL '+00:00' HOUR TO MINUTE", ""},
		{"set names 'utf8'", LV_SQL_SET, "client_encoding", "'utf8'", ""},
		{"set role admin", LV_SQL_SET, "role", "admin", ""},
		{"set session authorization bob", LV_SQL_SET, "session_authorization", "bob", ""},
		{"set session authorization default", LV_SQL_SET, "session_authorization", "", "D"},
		{"set session characteristics as transaction read only", LV_SQL_SET,
		 "session characteristics", "read only", ""},
		{"reset search_path", LV_SQL_RESET, "search_path", "", "R"},
		{"reset role", LV_SQL_RESET, "role", "", "R"},
		{"reset all", LV_SQL_RESET_ALL, "", "", "R"},
		{"set a = 1; set b = 2", LV_SQL_SET, "a", "1", ""},
		{"select 1; set local b = 2 -- trailing", LV_SQL_SELECT, "b", "2", "L"},
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		lv_sql_info_t in;
		const char *f = cases[i].flags;
		classify(cases[i].sql, &in);
		if (in.kind != cases[i].kind || !in.set.is_present ||
		    strcmp(in.set.name, cases[i].name) != 0 ||
		    strcmp(in.set.value, cases[i].value) != 0 ||
		    in.set.is_local != (strchr(f, 'L') != NULL) ||
		    in.set.is_reset != (strchr(f, 'R') != NULL) ||
		    in.set.is_default != (strchr(f, 'D') != NULL))
			fail_msg("%s: kind=%s name='%s' value='%s' local=%d reset=%d default=%d",
				 cases[i].sql, lv_sql_kind_name(in.kind), in.set.name, in.set.value,
				 in.set.is_local, in.set.is_reset, in.set.is_default);
	}

	lv_sql_info_t in;
	classify("select 1", &in);
	assert_false(in.set.is_present);
	classify("set transaction read only", &in);
	assert_false(in.set.is_present);

	/* A value longer than the buffer is flagged, not truncated. */
	char sql[600];
	memcpy(sql, "set search_path = ", 18);
	memset(sql + 18, 'a', 400);
	sql[418] = '\0';
	classify(sql, &in);
	assert_true(in.set.is_present);
	assert_true(in.set.is_value_too_long);
	assert_string_equal(in.set.value, "");
	assert_string_equal(in.set.name, "search_path");
}

/* ---------------------------------------------------------------- session state */

static void test_session_state(void **state)
{
#define S(r) LV_SQL_SESSION_##r
#define B(r) LV_SQL_SESSION_BIT(LV_SQL_SESSION_##r)
	static const struct {
		const char *sql;
		lv_sql_session_t reason;
		uint32_t creates, clears;
	} cases[] = {
		{"select 1", S(NONE), 0, 0},
		{"prepare p as select 1", S(PREPARE), B(PREPARE), 0},
		{"listen ch", S(LISTEN), B(LISTEN), 0},
		{"declare c cursor with hold for select 1", S(DECLARE_WITH_HOLD),
		 B(DECLARE_WITH_HOLD), 0},
		{"declare c scroll cursor for select 1", S(NONE), 0, 0},
		{"create temp table t (a int)", S(CREATE_TEMP), B(CREATE_TEMP), 0},
		{"create table pg_temp.t (a int)", S(CREATE_TEMP), B(CREATE_TEMP), 0},
		{"create temp table t (a int) on commit drop", S(NONE), 0, 0},
		{"create temp table t as select 1", S(CREATE_TEMP), B(CREATE_TEMP), 0},
		{"create temp view v as select 1", S(CREATE_TEMP), B(CREATE_TEMP), 0},
		{"select 1 into temp t", S(CREATE_TEMP), B(CREATE_TEMP), 0},
		{"select pg_advisory_lock(1)", S(ADVISORY_LOCK), B(ADVISORY_LOCK), 0},
		{"select pg_try_advisory_lock_shared(1)", S(ADVISORY_LOCK), B(ADVISORY_LOCK), 0},
		{"select pg_advisory_xact_lock(1)", S(NONE), 0, 0},
		{"explain select pg_advisory_lock(1)", S(NONE), 0, 0},
		{"explain analyze select pg_advisory_lock(1)", S(ADVISORY_LOCK), B(ADVISORY_LOCK),
		 0},
		{"set x = 1", S(SET), B(SET), 0},
		{"set local x = 1", S(NONE), 0, 0},
		{"select set_config('x', '1', false)", S(SET), B(SET), 0},
		{"select set_config('x', '1', true)", S(NONE), 0, 0},
		{"load 'auto_explain'", S(LOAD), B(LOAD), 0},
		{"discard all", S(NONE), 0, LV_SQL_SESSION_ALL_BITS},
		{"discard temp", S(NONE), 0, B(CREATE_TEMP)},
		{"discard plans", S(NONE), 0, 0},
		{"unlisten *", S(NONE), 0, B(LISTEN)},
		{"unlisten ch", S(NONE), 0, 0},
		{"deallocate all", S(NONE), 0, B(PREPARE)},
		{"reset all", S(NONE), 0, B(SET)},
		{"select pg_advisory_unlock_all()", S(NONE), 0, B(ADVISORY_LOCK)},
		{"listen a; set x = 1; prepare p as select 1", S(LISTEN),
		 B(LISTEN) | B(SET) | B(PREPARE), 0},
	};
#undef S
#undef B
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		lv_sql_info_t in;
		classify(cases[i].sql, &in);
		if (in.session_reason != cases[i].reason || in.creates_mask != cases[i].creates ||
		    in.clears_mask != cases[i].clears ||
		    in.creates_session_state != (cases[i].creates != 0) ||
		    in.clears_session_state != (cases[i].clears != 0))
			fail_msg("%s: reason=%s creates=%x clears=%x", cases[i].sql,
				 lv_sql_session_name(in.session_reason), in.creates_mask,
				 in.clears_mask);
	}
}

static void test_transaction_options(void **state)
{
	lv_sql_info_t in;

	classify("begin isolation level serializable, read only, deferrable", &in);
	assert_int_equal(in.kind, LV_SQL_BEGIN);
	assert_true(in.is_transaction_control);
	assert_int_equal(in.txn_isolation, LV_SQL_ISO_SERIALIZABLE);
	assert_true(in.txn_read_only);
	assert_false(in.txn_read_write);
	assert_true(in.txn_deferrable);

	classify("start transaction isolation level repeatable read, read write", &in);
	assert_int_equal(in.kind, LV_SQL_START);
	assert_int_equal(in.txn_isolation, LV_SQL_ISO_REPEATABLE_READ);
	assert_false(in.txn_read_only);
	assert_true(in.txn_read_write);

	classify("begin transaction isolation level read uncommitted", &in);
	assert_int_equal(in.txn_isolation, LV_SQL_ISO_READ_UNCOMMITTED);
	classify("begin", &in);
	assert_int_equal(in.txn_isolation, LV_SQL_ISO_DEFAULT);
	assert_false(in.txn_read_only || in.txn_read_write || in.txn_deferrable);

	classify("set transaction isolation level read committed, read only", &in);
	assert_int_equal(in.kind, LV_SQL_SET_TRANSACTION);
	assert_false(in.is_transaction_control);
	assert_int_equal(in.txn_isolation, LV_SQL_ISO_READ_COMMITTED);
	assert_true(in.txn_read_only);
	assert_int_equal(in.creates_mask, 0);

	classify("commit and chain", &in);
	assert_true(in.txn_chain);
	classify("rollback and no chain", &in);
	assert_int_equal(in.kind, LV_SQL_ROLLBACK);
	assert_false(in.txn_chain);
}

static void test_returning_and_misc(void **state)
{
	lv_sql_info_t in;

	classify("insert into t values (1) returning id", &in);
	assert_true(in.has_returning);
	classify("insert into t values (1)", &in);
	assert_false(in.has_returning);
	/* RETURNING inside a CTE is not the statement's. */
	classify("with x as (insert into t values (1) returning id) select 1", &in);
	assert_false(in.has_returning);

	classify("garbage", &in);
	assert_int_equal(in.kind, LV_SQL_UNPARSABLE);
	assert_false(in.is_read_only);
	assert_int_equal(in.n_statements, 0);
	assert_true(strstr(in.error, "syntax error") != NULL);
	assert_int_equal(in.error_pos, 1);
	assert_int_equal(in.fingerprint, 0);

	classify("select 1; select 2; select 3", &in);
	assert_int_equal(in.n_statements, 3);
	assert_true(in.is_multi);

	/* NUL inside the length ends the statement. */
	assert_int_equal(lv_sql_classify("select 1\0garbage", 16, NULL, &in), LV_OK);
	assert_int_equal(in.kind, LV_SQL_SELECT);

	/* Only part of the buffer is the statement. */
	assert_int_equal(lv_sql_classify("delete from t; garbage", 13, NULL, &in), LV_OK);
	assert_int_equal(in.kind, LV_SQL_DELETE);

	assert_int_equal(lv_sql_classify(NULL, 0, NULL, &in), LV_EINVAL);
	assert_int_equal(lv_sql_classify("x", 1, NULL, NULL), LV_EINVAL);
	assert_int_equal(lv_sql_hints(NULL, 0, &in.hints), LV_EINVAL);
}

static void test_kind_names(void **state)
{
	assert_string_equal(lv_sql_kind_name(LV_SQL_SELECT), "SELECT");
	assert_string_equal(lv_sql_kind_name(LV_SQL_COPY_FROM), "COPY_FROM");
	assert_string_equal(lv_sql_kind_name(LV_SQL_UNPARSABLE), "UNPARSABLE");
	assert_string_equal(lv_sql_kind_name(LV_SQL_KIND_COUNT), "UNKNOWN");
	for (int k = 0; k < LV_SQL_KIND_COUNT; k++)
		assert_int_equal(lv_sql_kind_from_name(lv_sql_kind_name((lv_sql_kind_t)k)), k);
	assert_int_equal(lv_sql_kind_from_name("select"), LV_SQL_SELECT);
	assert_int_equal(lv_sql_kind_from_name("nope"), -1);
	assert_string_equal(lv_sql_session_name(LV_SQL_SESSION_DECLARE_WITH_HOLD),
			    "DECLARE_WITH_HOLD");
	assert_string_equal(lv_sql_session_name(LV_SQL_SESSION_COUNT), "UNKNOWN");
}

/* ---------------------------------------------------------------- fingerprint, normalize */

static void test_fingerprint(void **state)
{
	lv_sql_info_t a, b, c;
	classify("select * from t where id = 1", &a);
	classify("SELECT * FROM t WHERE id = 42 /* levee:primary */", &b);
	classify("select * from u where id = 1", &c);
	assert_true(a.fingerprint != 0);
	assert_true(a.fingerprint == b.fingerprint);
	assert_true(a.fingerprint != c.fingerprint);

	lv_sql_opts_t opts = {.skip_fingerprint = true};
	assert_int_equal(lv_sql_classify("select 1", 8, &opts, &a), LV_OK);
	assert_int_equal(a.fingerprint, 0);
	assert_int_equal(a.kind, LV_SQL_SELECT);
}

static void test_normalize(void **state)
{
	char out[128];
	const char *sql = "select * from t where id = 42 and name = 'x'";
	int n = lv_sql_normalize(sql, strlen(sql), out, sizeof(out));
	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(out));
	assert_string_equal(out, "select * from t where id = $1 and name = $2");

	assert_int_equal(lv_sql_normalize(sql, strlen(sql), out, 10), LV_ETOOBIG);
	assert_string_equal(out, "");
	assert_int_equal(lv_sql_normalize("selec 1", 7, out, sizeof(out)), LV_ESYNTAX);
	assert_int_equal(lv_sql_normalize(sql, strlen(sql), out, 0), LV_EINVAL);
}

/* ---------------------------------------------------------------- limits */

static void test_table_overflow(void **state)
{
	static char sql[8192];
	static lv_sql_info_t in;
	size_t len = (size_t)snprintf(sql, sizeof(sql), "select * from t0");
	for (int i = 1; i < 40; i++)
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, ", t%d", i);
	classify(sql, &in);
	assert_int_equal(in.n_read, LV_SQL_MAX_TABLES);
	assert_true(in.read_overflow);
	assert_false(in.written_overflow);
	assert_string_equal(lv_sql_table_read(&in, 0), "t0");
	assert_string_equal(lv_sql_table_read(&in, 31), "t31");
	assert_true(in.is_read_only);

	/* Long names fill the shared name pool before the count limits. */
	static const char x56[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
	len = (size_t)snprintf(sql, sizeof(sql), "truncate ");
	for (int i = 0; i < 20; i++)
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%ss%02d_%s.w%02d_%s",
					i ? ", " : "", i, x56, i, x56);
	len += (size_t)snprintf(sql + len, sizeof(sql) - len, "; select * from ");
	for (int i = 0; i < 20; i++)
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%ss%02d_%s.r%02d_%s",
					i ? ", " : "", i, x56, i, x56);
	assert_true(len < sizeof(sql) - 1);
	classify(sql, &in);
	assert_int_equal(in.kind, LV_SQL_TRUNCATE);
	assert_int_equal(in.n_written, 20);
	assert_false(in.written_overflow);
	assert_true(in.read_overflow);
	assert_true(in.n_read > 0 && in.n_read < 20);
	assert_true(in.names_len <= LV_SQL_NAMES_LEN);
	assert_true(strncmp(lv_sql_table_read(&in, 0), "s00_", 4) == 0);
}

static char *repeat(const char *head, const char *unit, int n, const char *tail)
{
	size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
	char *s = malloc(hl + ul * (size_t)n + tl + 1);
	assert_non_null(s);
	memcpy(s, head, hl);
	for (int i = 0; i < n; i++)
		memcpy(s + hl + ul * (size_t)i, unit, ul);
	memcpy(s + hl + ul * (size_t)n, tail, tl + 1);
	return s;
}

/* Deep trees must not exhaust the C stack: both the JSON parse and the walk are iterative. */
static void test_deep_and_large(void **state)
{
	static lv_sql_info_t in;

	char *sql = repeat("select 1", "+1", 20000, " from t");
	classify(sql, &in);
	assert_int_equal(in.kind, LV_SQL_SELECT);
	assert_true(in.is_read_only);
	assert_int_equal(in.n_read, 1);
	free(sql);

	char *open = repeat("select ", "array[", 1000, "nextval('s')");
	char *full = repeat(open, "]", 1000, "");
	classify(full, &in);
	assert_false(in.is_read_only);
	assert_true(in.calls_write_function);
	free(open);
	free(full);

	/* Past bison's stack the parser gives up: unparsable, so never a replica. */
	open = repeat("select ", "array[", 20000, "1");
	full = repeat(open, "]", 20000, "");
	classify(full, &in);
	assert_int_equal(in.kind, LV_SQL_UNPARSABLE);
	assert_false(in.is_read_only);
	free(open);
	free(full);

	sql = repeat("insert into t values (1, 'x', now())", ", (1, 'x', now())", 20000,
		     " returning *");
	classify(sql, &in);
	assert_int_equal(in.kind, LV_SQL_INSERT);
	assert_true(in.calls_volatile);
	assert_true(in.has_returning);
	assert_string_equal(lv_sql_table_written(&in, 0), "t");
	free(sql);

	/* Deeply nested subqueries, each reading a table. */
	open = repeat("select * from ", "(select * from t, ", 300, "u");
	full = repeat(open, ") s", 300, "");
	classify(full, &in);
	assert_int_equal(in.kind, LV_SQL_SELECT);
	assert_int_equal(in.n_read, 2);
	assert_string_equal(lv_sql_table_read(&in, 0), "t");
	assert_string_equal(lv_sql_table_read(&in, 1), "u");
	free(open);
	free(full);
}

/* ---------------------------------------------------------------- allocation failures */

static int fail_countdown;

static bool fail_nth(size_t n)
{
	return fail_countdown-- == 0;
}

static void test_oom(void **state)
{
	static lv_sql_info_t in, want;
	const char *sql = "with x as (select * from a) select * from x join b on true, c "
			  "where exists (select 1 from d) /* levee:replica */";
	classify(sql, &want);
	bool succeeded = false;
	for (int n = 0; n < 64 && !succeeded; n++) {
		fail_countdown = n;
		lv_mem_set_fail_hook(fail_nth);
		int rc = lv_sql_classify(sql, strlen(sql), NULL, &in);
		lv_mem_set_fail_hook(NULL);
		if (rc == LV_ENOMEM) {
			assert_int_equal(in.kind, LV_SQL_UNPARSABLE);
			assert_false(in.is_read_only);
			assert_true(in.hints.want_replica || n == 0);
		} else {
			assert_int_equal(rc, LV_OK);
			assert_memory_equal(&in, &want, offsetof(lv_sql_info_t, names));
			succeeded = true;
		}
	}
	assert_true(succeeded);

	/* The cache keeps answering when it cannot store an entry. */
	lv_sql_cache_t *cache = lv_sql_cache_new(4);
	assert_non_null(cache);
	fail_countdown = 0;
	int allocs_until_entry = 0;
	for (int n = 0; n < 64; n++) {
		fail_countdown = n;
		lv_mem_set_fail_hook(fail_nth);
		int rc = lv_sql_cache_classify(cache, sql, strlen(sql), NULL, &in);
		lv_mem_set_fail_hook(NULL);
		if (rc == LV_OK && lv_sql_cache_stats(cache).n_entries == 1) {
			allocs_until_entry = n;
			break;
		}
	}
	assert_true(allocs_until_entry > 0);
	assert_int_equal(lv_sql_cache_classify(cache, sql, strlen(sql), NULL, &in), LV_OK);
	assert_int_equal(lv_sql_cache_stats(cache).hits, 1);
	lv_sql_cache_free(cache);
}

/* ---------------------------------------------------------------- cache */

static int cache_get(lv_sql_cache_t *c, const char *sql, const lv_sql_opts_t *o, lv_sql_info_t *in)
{
	return lv_sql_cache_classify(c, sql, strlen(sql), o, in);
}

static void test_cache(void **state)
{
	static lv_sql_info_t in, direct;
	lv_sql_cache_t *c = lv_sql_cache_new(3);
	assert_non_null(c);

	assert_int_equal(cache_get(c, "select * from a", NULL, &in), LV_OK);
	assert_int_equal(cache_get(c, "select * from b", NULL, &in), LV_OK);
	assert_int_equal(cache_get(c, "update c set x = 1", NULL, &in), LV_OK);
	lv_sql_cache_stats_t s = lv_sql_cache_stats(c);
	assert_int_equal(s.misses, 3);
	assert_int_equal(s.hits, 0);
	assert_int_equal(s.n_entries, 3);
	assert_int_equal(s.capacity, 3);
	assert_true(s.bytes > 0);

	/* A hit returns the same classification as a direct call. */
	assert_int_equal(cache_get(c, "select * from a", NULL, &in), LV_OK);
	classify("select * from a", &direct);
	assert_memory_equal(&in, &direct, offsetof(lv_sql_info_t, point.values));
	assert_memory_equal(in.names, direct.names, direct.names_len);
	assert_string_equal(lv_sql_table_read(&in, 0), "a");
	s = lv_sql_cache_stats(c);
	assert_int_equal(s.hits, 1);

	/* Text must match exactly: a prefix or a different case is a miss. */
	assert_int_equal(cache_get(c, "select * from a ", NULL, &in), LV_OK);
	s = lv_sql_cache_stats(c);
	assert_int_equal(s.misses, 4);
	assert_int_equal(s.evictions, 1); /* b was least recently used */
	assert_int_equal(s.n_entries, 3);

	assert_int_equal(cache_get(c, "select * from b", NULL, &in), LV_OK);
	s = lv_sql_cache_stats(c);
	assert_int_equal(s.misses, 5);    /* b was evicted */
	assert_int_equal(s.evictions, 2); /* now c went */
	assert_int_equal(cache_get(c, "select * from a", NULL, &in), LV_OK);
	assert_int_equal(lv_sql_cache_stats(c).hits, 2);
	assert_int_equal(cache_get(c, "update c set x = 1", NULL, &in), LV_OK);
	assert_int_equal(lv_sql_cache_stats(c).misses, 6);
	assert_int_equal(in.kind, LV_SQL_UPDATE);
	assert_string_equal(lv_sql_table_written(&in, 0), "c");

	/* Different options are a different key. */
	lv_sql_opts_t o = {.write_functions_list = "f"};
	assert_int_equal(cache_get(c, "select f()", NULL, &in), LV_OK);
	assert_true(in.is_read_only);
	assert_int_equal(cache_get(c, "select f()", &o, &in), LV_OK);
	assert_false(in.is_read_only);
	assert_int_equal(cache_get(c, "select f()", NULL, &in), LV_OK);
	assert_true(in.is_read_only);
	s = lv_sql_cache_stats(c);
	assert_int_equal(s.hits, 3);
	assert_int_equal(s.misses, 8);

	/* Unparsable results are cached too, with their message. */
	assert_int_equal(cache_get(c, "garbage", NULL, &in), LV_OK);
	assert_int_equal(cache_get(c, "garbage", NULL, &in), LV_OK);
	assert_int_equal(in.kind, LV_SQL_UNPARSABLE);
	assert_true(in.error[0] != '\0');
	assert_int_equal(lv_sql_cache_stats(c).hits, 4);

	/* Long statements bypass the cache. */
	char *big = repeat("select 1", " + 1", LV_SQL_CACHE_MAX_TEXT / 4, "");
	assert_int_equal(cache_get(c, big, NULL, &in), LV_OK);
	assert_int_equal(cache_get(c, big, NULL, &in), LV_OK);
	s = lv_sql_cache_stats(c);
	assert_int_equal(s.bypassed, 2);
	assert_int_equal(s.hits, 4);
	assert_int_equal(s.n_entries, 3);
	free(big);

	assert_int_equal(lv_sql_cache_classify(NULL, "x", 1, NULL, &in), LV_EINVAL);
	lv_sql_cache_free(c);
	lv_sql_cache_free(NULL);

	/* Capacity 0 caches nothing but still answers. */
	c = lv_sql_cache_new(0);
	assert_non_null(c);
	assert_int_equal(cache_get(c, "select 1", NULL, &in), LV_OK);
	assert_int_equal(cache_get(c, "select 1", NULL, &in), LV_OK);
	assert_int_equal(in.kind, LV_SQL_SELECT);
	s = lv_sql_cache_stats(c);
	assert_int_equal(s.hits, 0);
	assert_int_equal(s.misses, 2);
	assert_int_equal(s.n_entries, 0);
	lv_sql_cache_free(c);
}

/* Many distinct statements through a small cache: stays bounded, stays right. */
static void test_cache_churn(void **state)
{
	static lv_sql_info_t in;
	char sql[64];
	lv_sql_cache_t *c = lv_sql_cache_new(16);
	assert_non_null(c);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 100; i++) {
			snprintf(sql, sizeof(sql), "select * from t%d", i);
			assert_int_equal(cache_get(c, sql, NULL, &in), LV_OK);
			assert_string_equal(lv_sql_table_read(&in, 0), sql + 14);
		}
	}
	lv_sql_cache_stats_t s = lv_sql_cache_stats(c);
	assert_int_equal(s.n_entries, 16);
	assert_int_equal(s.misses, 300);
	assert_int_equal(s.evictions, 300 - 16);
	/* The last 16 are hot. */
	for (int i = 84; i < 100; i++) {
		snprintf(sql, sizeof(sql), "select * from t%d", i);
		assert_int_equal(cache_get(c, sql, NULL, &in), LV_OK);
	}
	assert_int_equal(lv_sql_cache_stats(c).hits, 16);
	lv_sql_cache_free(c);
}

/* ---------------------------------------------------------------- point keys */

#define POINT_FIXTURE "tests/unit/fixtures/sql/point.tsv"

static void point_value_str(const lv_sql_info_t *in, const lv_sql_value_t *v, char *buf, size_t cap)
{
	const char *text = lv_sql_point_text(in, v);
	assert_int_equal(strlen(text), v->len);
	assert_true((size_t)v->off + v->len < LV_SQL_POINT_VALUES_LEN);
	switch (v->kind) {
	case LV_SQL_VALUE_NONE:
		snprintf(buf, cap, "?");
		assert_string_equal(v->cast, "");
		break;
	case LV_SQL_VALUE_PARAM:
		snprintf(buf, cap, "$%u", (unsigned)v->param);
		assert_int_equal(v->len, 0);
		break;
	case LV_SQL_VALUE_INT:
	case LV_SQL_VALUE_BOOL:
		snprintf(buf, cap, "%s", text);
		break;
	case LV_SQL_VALUE_FLOAT:
		snprintf(buf, cap, "f:%s", text);
		break;
	case LV_SQL_VALUE_STRING:
		snprintf(buf, cap, "'%s'", text);
		break;
	case LV_SQL_VALUE_NULL:
		snprintf(buf, cap, "null");
		assert_int_equal(v->len, 0);
		break;
	default:
		snprintf(buf, cap, "BADKIND%u", (unsigned)v->kind);
		break;
	}
	if (v->cast[0]) {
		size_t n = strlen(buf);
		snprintf(buf + n, cap - n, "::%s", v->cast);
	}
}

static void cat(char *buf, size_t cap, const char *s)
{
	size_t n = strlen(buf);
	snprintf(buf + n, cap - n, "%s", s);
}

/* The point fields in the fixture's notation. */
static void point_str(const lv_sql_info_t *in, char *buf, size_t cap)
{
	const lv_sql_point_t *p = &in->point;
	char v[256];
	buf[0] = '\0';
	if (!p->is_point) {
		cat(buf, cap, "-");
		assert_int_equal(p->n_cols, 0);
		assert_int_equal(p->n_rows, 0);
	} else {
		assert_true(p->n_cols > 0 && p->n_cols <= LV_SQL_MAX_POINT_COLS);
		assert_true(p->n_rows > 0 && p->n_rows <= LV_SQL_MAX_POINT_ROWS);
		assert_false(in->is_multi);
		cat(buf, cap, lv_sql_point_table(in));
		cat(buf, cap, ":");
		if (in->kind == LV_SQL_INSERT) {
			cat(buf, cap, " (");
			for (unsigned c = 0; c < p->n_cols; c++) {
				cat(buf, cap, c ? "," : "");
				cat(buf, cap, p->cols[c]);
			}
			cat(buf, cap, ")");
			for (unsigned r = 0; r < p->n_rows; r++) {
				cat(buf, cap, r ? "; " : " ");
				for (unsigned c = 0; c < p->n_cols; c++) {
					point_value_str(in, lv_sql_point_value(in, r, c), v,
							sizeof(v));
					cat(buf, cap, c ? "," : "");
					cat(buf, cap, v);
				}
			}
		} else {
			assert_int_equal(p->n_rows, 1);
			for (unsigned c = 0; c < p->n_cols; c++) {
				point_value_str(in, lv_sql_point_value(in, 0, c), v, sizeof(v));
				cat(buf, cap, " ");
				cat(buf, cap, p->cols[c]);
				cat(buf, cap, "=");
				cat(buf, cap, v);
			}
		}
	}
	if (p->n_set) {
		cat(buf, cap, " set=");
		for (unsigned i = 0; i < p->n_set; i++) {
			cat(buf, cap, i ? "," : "");
			cat(buf, cap, p->set_cols[i]);
		}
	}
	if (p->set_overflow)
		cat(buf, cap, " setovf");
	if (p->on_conflict)
		cat(buf, cap, " oc");
	if (p->on_conflict_update)
		cat(buf, cap, " ocu");
	if (p->cols_overflow)
		cat(buf, cap, " colovf");
	if (p->values_overflow)
		cat(buf, cap, " valovf");
}

/* Every fixture line directly, through a cache miss and through a cache hit. */
static void test_point_fixture(void **state)
{
	const char *dir = getenv("LV_TEST_SRCDIR");
	char path[512], line[2048], sql[2048], got[1024];
	static lv_sql_info_t in;
	int n = 0, bad = 0, lineno = 0;
	lv_sql_cache_t *cache = lv_sql_cache_new(4096);
	assert_non_null(cache);
	snprintf(path, sizeof(path), "%s/%s", dir ? dir : ".", POINT_FIXTURE);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		char *tab = strchr(line, '\t');
		if (!tab || strchr(tab + 1, '\t')) {
			fprintf(stderr, "%s:%d: want 2 tab-separated columns\n", POINT_FIXTURE,
				lineno);
			bad++;
			continue;
		}
		*tab = '\0';
		unescape(line, sql, sizeof(sql));
		for (int pass = 0; pass < 3; pass++) {
			int rc = pass == 0 ? lv_sql_classify(sql, strlen(sql), NULL, &in)
					   : lv_sql_cache_classify(cache, sql, strlen(sql), NULL,
								   &in);
			assert_int_equal(rc, LV_OK);
			point_str(&in, got, sizeof(got));
			if (strcmp(got, tab + 1) != 0) {
				fprintf(stderr, "%s:%d: pass %d: want '%s' got '%s'   [%s]\n",
					POINT_FIXTURE, lineno, pass, tab + 1, got, sql);
				bad++;
			}
			/* Scribble over the unused tails: a hit must not depend on them. */
			memset(in.point.values, 0xA5, sizeof(in.point.values));
			memset(in.point_values, 0x5A, sizeof(in.point_values));
		}
		n++;
	}
	fclose(f);
	lv_sql_cache_stats_t s = lv_sql_cache_stats(cache);
	assert_int_equal(s.hits, (uint64_t)n);
	lv_sql_cache_free(cache);
	fprintf(stderr, "point: %d statements, %d mismatches\n", n, bad);
	assert_true(n >= 100);
	assert_int_equal(bad, 0);
}

/* Changes every digit, and every letter inside a string constant, of sql in place. */
static void vary_constants(char *sql, int step)
{
	bool in_str = false;
	for (char *p = sql; *p; p++) {
		if (*p == '\'')
			in_str = !in_str; /* '' toggles twice: still right */
		else if (isdigit((unsigned char)*p))
			*p = (char)('0' + (*p - '0' + step) % 10);
		else if (in_str && islower((unsigned char)*p))
			*p = (char)('a' + (*p - 'a' + step) % 26);
	}
}

/*
 * Point values by shape: every statement of the point fixture, then variants
 * of it with other constants, through lv_sql_cache_classify_shape with
 * want_points: each answer's point keys are what parsing that very text gives,
 * whether they came from the shape's map or from the parser.
 */
static void test_point_by_shape(void **state)
{
	const char *dir = getenv("LV_TEST_SRCDIR");
	char path[512], line[2048], sql[2048], got[1024], want[1024];
	static lv_sql_info_t in, ref;
	int n = 0, bad = 0, mapped = 0;
	lv_sql_cache_t *cache = lv_sql_cache_new(4096);
	assert_non_null(cache);
	snprintf(path, sizeof(path), "%s/%s", dir ? dir : ".", POINT_FIXTURE);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		*strchr(line, '\t') = '\0';
		unescape(line, sql, sizeof(sql));
		for (int step = 0; step < 4; step++) {
			vary_constants(sql, step == 0 ? 0 : 3);
			size_t len = strlen(sql);
			uint64_t misses = lv_sql_cache_stats(cache).misses;
			assert_int_equal(lv_sql_cache_classify_shape(cache, sql, len, NULL, true, &in), LV_OK);
			mapped += step > 0 && in.point.is_point && lv_sql_cache_stats(cache).misses == misses;
			assert_int_equal(lv_sql_classify(sql, len, NULL, &ref), LV_OK);
			point_str(&in, got, sizeof(got));
			point_str(&ref, want, sizeof(want));
			if (strcmp(got, want) != 0) {
				fprintf(stderr, "by shape: want '%s' got '%s'   [%s]\n", want, got, sql);
				bad++;
			}
			memset(in.point.values, 0xA5, sizeof(in.point.values));
			memset(in.point_values, 0x5A, sizeof(in.point_values));
		}
		n++;
	}
	fclose(f);
	lv_sql_cache_free(cache);
	fprintf(stderr, "point by shape: %d statements x 4, %d variants read off a map, %d mismatches\n", n,
		mapped, bad);
	assert_int_equal(bad, 0);
	assert_true(mapped >= n / 2); /* the rest: no constants, or ambiguous ones (a = 1 AND b = 1) */
}

/* A shape whose first text had constants the map could not tell apart gets its map from a later one. */
static void test_point_map_heals(void **state)
{
	static lv_sql_info_t in;
	char got[256];
	lv_sql_cache_t *cache = lv_sql_cache_new(1); /* one entry: nothing else may evict it */
	const char *texts[] = {"SELECT v FROM t WHERE a = 1 AND b = 1", "SELECT v FROM t WHERE a = 2 AND b = 3",
			       "SELECT v FROM t WHERE a = 4 AND b = 5"};
	const uint64_t misses_after[] = {1, 2, 2};
	assert_non_null(cache);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(lv_sql_cache_classify_shape(cache, texts[i], strlen(texts[i]), NULL, true, &in),
				 LV_OK);
		assert_int_equal(lv_sql_cache_stats(cache).misses, misses_after[i]);
		point_str(&in, got, sizeof(got));
		static lv_sql_info_t ref;
		char want[256];
		assert_int_equal(lv_sql_classify(texts[i], strlen(texts[i]), NULL, &ref), LV_OK);
		point_str(&ref, want, sizeof(want));
		assert_string_equal(got, want);
	}
	assert_int_equal(lv_sql_cache_stats(cache).n_entries, 1);
	lv_sql_cache_free(cache);
}

/* Limits: VALUES rows, the value text pool, and the cache's packed size. */
static void test_point_limits(void **state)
{
	static lv_sql_info_t in, hit;
	static char sql[8192];
	size_t len;

	/* 64 rows are a point; 65 are not. */
	for (int rows = LV_SQL_MAX_POINT_ROWS; rows <= LV_SQL_MAX_POINT_ROWS + 1; rows++) {
		len = (size_t)snprintf(sql, sizeof(sql), "insert into t (id, v) values");
		for (int r = 0; r < rows; r++)
			len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s(%d, $%d)",
						r ? ", " : " ", -r, r + 1);
		classify(sql, &in);
		if (rows > LV_SQL_MAX_POINT_ROWS) {
			assert_false(in.point.is_point);
			continue;
		}
		assert_true(in.point.is_point);
		assert_int_equal(in.point.n_rows, rows);
		assert_int_equal(in.point.n_cols, 2);
		const lv_sql_value_t *v = lv_sql_point_value(&in, 63, 0);
		assert_int_equal(v->kind, LV_SQL_VALUE_INT);
		assert_string_equal(lv_sql_point_text(&in, v), "-63");
		assert_int_equal(lv_sql_point_value(&in, 63, 1)->param, 64);
		assert_int_equal(lv_sql_point_value(&in, 0, 0)->kind, LV_SQL_VALUE_INT);
		assert_string_equal(lv_sql_point_text(&in, lv_sql_point_value(&in, 0, 0)), "0");
	}

	/* A long string that does not fit the pool is NONE; the others stay. */
	char *big = repeat("", "x", LV_SQL_POINT_VALUES_LEN, "");
	len = (size_t)snprintf(sql, sizeof(sql),
			       "insert into t (a, b, c) values ('short', '%s', 7)", big);
	assert_true(len < sizeof(sql));
	classify(sql, &in);
	assert_true(in.point.is_point);
	assert_true(in.point.values_overflow);
	assert_int_equal(lv_sql_point_value(&in, 0, 0)->kind, LV_SQL_VALUE_STRING);
	assert_int_equal(lv_sql_point_value(&in, 0, 1)->kind, LV_SQL_VALUE_NONE);
	assert_int_equal(lv_sql_point_value(&in, 0, 2)->kind, LV_SQL_VALUE_INT);
	assert_string_equal(lv_sql_point_text(&in, lv_sql_point_value(&in, 0, 2)), "7");

	/* In a WHERE, such a value drops its conjunct only. */
	snprintf(sql, sizeof(sql), "select * from t where name = '%s' and id = 3", big);
	classify(sql, &in);
	assert_true(in.point.is_point);
	assert_int_equal(in.point.n_cols, 1);
	assert_string_equal(in.point.cols[0], "id");
	snprintf(sql, sizeof(sql), "select * from t where name = '%s'", big);
	classify(sql, &in);
	assert_false(in.point.is_point);
	free(big);

	/* The cache stores only the used parts, and a hit gives them all back. */
	lv_sql_cache_t *c = lv_sql_cache_new(8);
	assert_non_null(c);
	const char *q = "select * from users where id = $1 and org = 'acme'";
	assert_int_equal(lv_sql_cache_classify(c, q, strlen(q), NULL, &in), LV_OK);
	assert_true(lv_sql_cache_stats(c).bytes < sizeof(lv_sql_info_t) / 4);
	memset(&hit, 0xEE, sizeof(hit));
	assert_int_equal(lv_sql_cache_classify(c, q, strlen(q), NULL, &hit), LV_OK);
	assert_int_equal(lv_sql_cache_stats(c).hits, 1);
	assert_memory_equal(&hit, &in, offsetof(lv_sql_info_t, point.values));
	assert_memory_equal(hit.point.values[0], in.point.values[0], sizeof(in.point.values[0]));
	assert_memory_equal(hit.point_values, in.point_values, in.point_values_len);
	assert_memory_equal(hit.names, in.names, in.names_len);
	assert_string_equal(lv_sql_point_table(&hit), "users");
	assert_string_equal(lv_sql_point_text(&hit, lv_sql_point_value(&hit, 0, 1)), "acme");
	/* "" for values without text, also after a hit that wrote no text. */
	q = "select * from users where id = $1";
	assert_int_equal(lv_sql_cache_classify(c, q, strlen(q), NULL, &in), LV_OK);
	memset(&hit, 0xEE, sizeof(hit));
	assert_int_equal(lv_sql_cache_classify(c, q, strlen(q), NULL, &hit), LV_OK);
	assert_string_equal(lv_sql_point_text(&hit, lv_sql_point_value(&hit, 0, 0)), "");
	lv_sql_cache_free(c);
}

/* ---------------------------------------------------------------- scans without a parse */

static void test_first_word(void **state)
{
	static const struct {
		const char *sql;
		const char *word;
	} cases[] = {
		{"select 1", "select"},
		{"  \n\tUPDATE t set a = 1", "UPDATE"},
		{"SELECT(1)", "SELECT"},
		{"-- note\nDELETE FROM t", "DELETE"},
		{"-- note\rinsert into t values (1)", "insert"},
		{"/* c */ /* d */ with x as (select 1) select * from x", "with"},
		/* Block comments nest: all of this is one comment, then DELETE. */
		{"/* a /* b */ select */ delete from t", "delete"},
		{"/**/set x = 1", "set"},
		{"/* never closed select 1", ""},
		{"-- only a comment", ""},
		{"", ""},
		{"   ", ""},
		{"(select 1)", ""},
		{"$1", ""},
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
		const char *sql = cases[i].sql;
		size_t len = 99;
		const char *w = lv_sql_first_word(sql, strlen(sql), &len);
		if (len != strlen(cases[i].word) || strncmp(w, cases[i].word, len) != 0)
			print_error("[%s]: got '%.*s'\n", sql, (int)len, w);
		assert_int_equal(len, strlen(cases[i].word));
		assert_memory_equal(w, cases[i].word, len);
		assert_true(w >= sql && w + len <= sql + strlen(sql));
	}
	/* The length bounds the scan: the word stops at n even mid-text. */
	size_t len;
	const char *w = lv_sql_first_word("select", 3, &len);
	assert_int_equal(len, 3);
	assert_memory_equal(w, "sel", 3);
}

static void test_mentions_levee(void **state)
{
	assert_true(lv_sql_mentions_levee("/* levee:cache */ select 1", 26));
	assert_true(lv_sql_mentions_levee("select 1 -- LeVeE:primary", 25));
	assert_true(lv_sql_mentions_levee("levee:", 6));
	assert_false(lv_sql_mentions_levee("select 1", 8));
	assert_false(lv_sql_mentions_levee("select '1'::int, levee from t", 29));
	assert_false(lv_sql_mentions_levee("evee:", 5)); /* a colon too near the start */
	assert_false(lv_sql_mentions_levee(":", 1));
	assert_false(lv_sql_mentions_levee("", 0));
	/* Only len bytes are read: the hint past it does not count. */
	assert_false(lv_sql_mentions_levee("select 1 /* levee:cache */", 17));
}

static int teardown_all(void **state)
{
	lv_sql_thread_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corpus),
		cmocka_unit_test(test_corpus_cached),
		cmocka_unit_test(test_hints_basic),
		cmocka_unit_test(test_hints_durations),
		cmocka_unit_test(test_hints_invalid),
		cmocka_unit_test(test_hints_not_in_literals),
		cmocka_unit_test(test_hints_traceparent),
		cmocka_unit_test(test_hints_in_classify),
		cmocka_unit_test(test_set_details),
		cmocka_unit_test(test_session_state),
		cmocka_unit_test(test_transaction_options),
		cmocka_unit_test(test_returning_and_misc),
		cmocka_unit_test(test_kind_names),
		cmocka_unit_test(test_fingerprint),
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_table_overflow),
		cmocka_unit_test(test_deep_and_large),
		cmocka_unit_test(test_oom),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_cache_churn),
		cmocka_unit_test(test_point_fixture),
		cmocka_unit_test(test_point_limits),
		cmocka_unit_test(test_point_by_shape),
		cmocka_unit_test(test_point_map_heals),
		cmocka_unit_test(test_first_word),
		cmocka_unit_test(test_corpus_by_shape),
		cmocka_unit_test(test_shape_variants),
		cmocka_unit_test(test_shape_boundaries),
		cmocka_unit_test(test_mentions_levee),
	};
	return cmocka_run_group_tests(tests, NULL, teardown_all);
}
