/* SPDX-License-Identifier: ISC */
#ifndef LEVEE_SQL_CLASSIFY_H
#define LEVEE_SQL_CLASSIFY_H

#include "core/lv.h"

/*
 * SQL statement classification: what kind of statement a simple-query string
 * holds, whether a replica may run it, which tables it reads and writes, which
 * session state it creates or clears, and the `levee:` hints in its comments.
 *
 * Everything here is pure (no I/O, no globals) and per-thread: results are
 * plain caller-owned structs that hold no pointers, so they can be copied,
 * cached and kept in a request arena. libpg_query never shows through this
 * header; sql/classify.c is its only user.
 *
 * Names: table names are the identifiers PostgreSQL resolves, i.e. unquoted
 * names folded to lower case and quoted names kept as written, joined as
 * "schema.name" when the statement qualifies them and "name" otherwise,
 * without quotes. A catalog (database) prefix is dropped.
 */

/* Statement kinds. X-macro: XX(name). The kind name is the string form. */
#define LV_SQL_KIND_MAP(XX)                                                     \
	XX(SELECT) /* SELECT, TABLE, set operations */                          \
	XX(VALUES) /* a bare VALUES list */                                     \
	XX(INSERT)                                                              \
	XX(UPDATE)                                                              \
	XX(DELETE)                                                              \
	XX(MERGE)                                                               \
	XX(COPY_FROM) /* COPY ... FROM: writes a table */                       \
	XX(COPY_TO)   /* COPY ... TO: reads a table or a query */               \
	XX(TRUNCATE)                                                            \
	XX(DDL) /* CREATE/ALTER/DROP/COMMENT/GRANT/REVOKE/... */                \
	XX(BEGIN)                                                               \
	XX(START)    /* START TRANSACTION */                                    \
	XX(COMMIT)   /* COMMIT, END */                                          \
	XX(ROLLBACK) /* ROLLBACK, ABORT */                                      \
	XX(SAVEPOINT)                                                           \
	XX(RELEASE)     /* RELEASE SAVEPOINT */                                 \
	XX(ROLLBACK_TO) /* ROLLBACK TO SAVEPOINT */                             \
	XX(PREPARE_TXN) /* PREPARE TRANSACTION */                               \
	XX(COMMIT_PREPARED)                                                     \
	XX(ROLLBACK_PREPARED)                                                   \
	XX(SET)             /* session-level SET, SET ROLE, SET SESSION ... */  \
	XX(SET_LOCAL)       /* SET LOCAL */                                     \
	XX(SET_TRANSACTION) /* SET TRANSACTION ..., SET TRANSACTION SNAPSHOT */ \
	XX(RESET)           /* RESET name */                                    \
	XX(RESET_ALL)                                                           \
	XX(SHOW)                                                                \
	XX(DISCARD_ALL)                                                         \
	XX(DISCARD_OTHER) /* DISCARD PLANS/SEQUENCES/TEMP */                    \
	XX(PREPARE)       /* SQL-level PREPARE name AS ... */                   \
	XX(EXECUTE)                                                             \
	XX(DEALLOCATE)                                                          \
	XX(DEALLOCATE_ALL)                                                      \
	XX(LISTEN)                                                              \
	XX(UNLISTEN)                                                            \
	XX(UNLISTEN_ALL)                                                        \
	XX(NOTIFY)                                                              \
	XX(DECLARE_CURSOR)                                                      \
	XX(FETCH)        /* FETCH and MOVE */                                   \
	XX(CLOSE_CURSOR) /* CLOSE name, CLOSE ALL */                            \
	XX(EXPLAIN)                                                             \
	XX(CALL)                                                                \
	XX(DO)                                                                  \
	XX(LOCK)                                                                \
	XX(VACUUM)                                                              \
	XX(ANALYZE)                                                             \
	XX(OTHER)      /* parsed, none of the above (CHECKPOINT, LOAD, ...) */  \
	XX(EMPTY)      /* nothing but whitespace, comments or semicolons */     \
	XX(UNPARSABLE) /* libpg_query rejected it; see lv_sql_info_t.error */

typedef enum lv_sql_kind {
#define XX(name) LV_SQL_##name,
	LV_SQL_KIND_MAP(XX)
#undef XX
	LV_SQL_KIND_COUNT
} lv_sql_kind_t;

/*
 * Why a statement leaves state in the server session that outlives its
 * transaction (so a transaction pooler must pin the session or refuse). Used
 * as a value and as a bit (1u << reason) in the masks below.
 */
#define LV_SQL_SESSION_MAP(XX)                                                      \
	XX(NONE)    /* no session state */                                          \
	XX(PREPARE) /* SQL-level PREPARE */                                         \
	XX(LISTEN)                                                                  \
	XX(DECLARE_WITH_HOLD) /* a cursor that survives COMMIT */                   \
	XX(CREATE_TEMP)       /* CREATE TEMP TABLE/VIEW/SEQUENCE, pg_temp.x */      \
	XX(ADVISORY_LOCK)     /* session-level pg_advisory_lock* (not xact ones) */ \
	XX(SET)               /* non-LOCAL SET, set_config(.., false) */            \
	XX(LOAD)              /* LOAD 'library' */

typedef enum lv_sql_session {
#define XX(name) LV_SQL_SESSION_##name,
	LV_SQL_SESSION_MAP(XX)
#undef XX
	LV_SQL_SESSION_COUNT
} lv_sql_session_t;

#define LV_SQL_SESSION_BIT(r) (1u << (r))
#define LV_SQL_SESSION_ALL_BITS (((1u << LV_SQL_SESSION_COUNT) - 1) & ~1u)

/* Isolation level requested by BEGIN/START/SET TRANSACTION. */
typedef enum lv_sql_isolation {
	LV_SQL_ISO_DEFAULT = 0, /* not given */
	LV_SQL_ISO_READ_UNCOMMITTED,
	LV_SQL_ISO_READ_COMMITTED,
	LV_SQL_ISO_REPEATABLE_READ,
	LV_SQL_ISO_SERIALIZABLE,
} lv_sql_isolation_t;

#define LV_SQL_MAX_TABLES 32      /* per list (read, written) */
#define LV_SQL_NAMES_LEN 4096     /* bytes for all table names of one statement */
#define LV_SQL_NAME_LEN 64        /* NAMEDATALEN: a parameter name plus NUL */
#define LV_SQL_SET_VALUE_LEN 256  /* SET value text plus NUL */
#define LV_SQL_ASYNC_KEY_LEN 128  /* levee:async key=... plus NUL */
#define LV_SQL_TRACEPARENT_LEN 55 /* W3C traceparent, version 00 */
#define LV_SQL_HINT_ERR_LEN 64
#define LV_SQL_ERROR_LEN 160

/*
 * Hints from comments. Grammar, inside any block or line comment that is not
 * within a string literal, quoted identifier or dollar-quoted body:
 *
 *   body  := item ( (space | ',') item )*
 *   item  := 'levee:' word | key '=' value | other-text
 *   value := bare-text | '\'' text '\'' | '"' text '"'
 *
 * key=value items bind to the closest levee: item before them; any other word
 * ends that binding, so prose may surround hints. Words and keys are
 * case-insensitive. Known hints: levee:primary, levee:replica,
 * levee:cache [ttl=D] [swr=D], levee:nocache, levee:async [key=K]. Durations D
 * are N (seconds), Ns, Nms, Nmin or Nh. traceparent='...' (sqlcommenter) is
 * recognised in any comment. Unknown hints, unknown keys, bad durations and
 * oversized values are counted in n_invalid and otherwise ignored.
 */
typedef struct lv_sql_hints {
	bool has_any;          /* at least one valid levee: hint or a traceparent */
	bool want_primary;     /* levee:primary; the router lets it win over replica */
	bool want_replica;     /* levee:replica */
	bool want_cache;       /* levee:cache */
	bool want_no_cache;    /* levee:nocache; the cache lets it win over cache */
	bool want_async;       /* levee:async */
	uint32_t cache_ttl_ms; /* levee:cache ttl=; 0 when not given */
	uint32_t cache_swr_ms; /* levee:cache swr=; 0 when not given */
	char async_key[LV_SQL_ASYNC_KEY_LEN];         /* levee:async key=; "" when not given */
	char traceparent[LV_SQL_TRACEPARENT_LEN + 1]; /* "" or 55 chars 00-<32>-<16>-<2> */
	uint16_t n_invalid;                           /* malformed or unknown items seen */
	char invalid[LV_SQL_HINT_ERR_LEN]; /* the first of them, for the log; "" if none */
} lv_sql_hints_t;

/* SET/RESET details (the first SET, SET LOCAL or RESET of the string). */
typedef struct lv_sql_set {
	bool is_present;                  /* false: no SET/RESET statement */
	bool is_local;                    /* SET LOCAL */
	bool is_reset;                    /* RESET name (RESET ALL has an empty name) */
	bool is_default;                  /* SET name TO DEFAULT, SET TIME ZONE LOCAL */
	bool is_value_too_long;           /* value did not fit: value is "" */
	char name[LV_SQL_NAME_LEN];       /* lower case: "search_path", "role",
					       "session_authorization", "timezone" */
	char value[LV_SQL_SET_VALUE_LEN]; /* source text after TO/=, trimmed, comments
					       dropped at the end: "a, \"B\"", "'UTC'" */
} lv_sql_set_t;

/*
 * Row-level ("point") keys: for a single SELECT, UPDATE, DELETE or INSERT on
 * one table, the columns pinned by equality to constants or parameters, so a
 * cache can key entries and invalidations by (table, column, value) instead
 * of by table. Conservative: is_point is set only when every row the
 * statement reads or writes satisfies every reported `column = value`.
 *
 * is_point holds for exactly these shapes (any SubLink anywhere, a WITH, or a
 * second statement rules it out):
 *  - SELECT: no set operation, INTO or VALUES; FROM is one plain table (a
 *    RangeVar, optionally with an alias but without column aliases); WHERE is
 *    a conjunction (ANDs at the top, nested ANDs flattened) with at least one
 *    `col = v` or `v = col`. GROUP BY, HAVING, DISTINCT [ON], ORDER BY,
 *    LIMIT, window clauses and FOR UPDATE are fine.
 *  - UPDATE without FROM, DELETE without USING: WHERE as for SELECT (WHERE
 *    CURRENT OF never qualifies).
 *  - INSERT with an explicit column list (at most LV_SQL_MAX_POINT_COLS plain
 *    columns) and a plain VALUES list of at most LV_SQL_MAX_POINT_ROWS rows;
 *    each value is classified (DEFAULT or an expression is kind NONE). ON
 *    CONFLICT is allowed and flagged.
 * col is a ColumnRef naming a column, unqualified or qualified by the alias
 * (or, without an alias, by the table name, optionally schema-qualified); a
 * bare name equal to the table name or alias (a whole-row reference) does not
 * count. v is a constant or $n, optionally inside one cast to a plain type
 * name (name or pg_catalog.name, no typmod, no array bounds). The operator is
 * exactly "=" (OPERATOR(pg_catalog.=) does not count). Other conjuncts are
 * ignored: they only narrow the rows further.
 *
 * What the values mean: the text is the literal, not the column's value. The
 * comparison is the column type's "=" (citext, numeric scales, casts that
 * round, collations), so two different texts may match the same row; a
 * consumer must not treat differing texts as different rows unless it knows
 * the type. Triggers, rules, cascading foreign keys, views and inheritance are
 * invisible here, as they are for the table lists.
 */
#define LV_SQL_MAX_POINT_COLS 8      /* equality columns of one statement */
#define LV_SQL_MAX_POINT_ROWS 64     /* INSERT ... VALUES rows */
#define LV_SQL_POINT_VALUES_LEN 2048 /* bytes for the text of all values */
#define LV_SQL_POINT_CAST_LEN 24

typedef enum lv_sql_value_kind {
	LV_SQL_VALUE_NONE = 0, /* not a constant or parameter (an expression, DEFAULT,
				  a bit string, a cast to a non-plain type, or a text that
				  did not fit point_values) */
	LV_SQL_VALUE_PARAM,    /* $n: param is n (1-based); no text */
	LV_SQL_VALUE_INT,      /* integer constant: decimal digits with '-' if negative,
				  no leading zeros ("-5", "0", "99999999999") */
	LV_SQL_VALUE_FLOAT,    /* numeric constant with '.' or exponent: text as written,
				  with '-' if negated ("1.5", "-1.5e3", ".5") */
	LV_SQL_VALUE_STRING,   /* string constant, unescaped ('', E'', U&'', $$$$) */
	LV_SQL_VALUE_BOOL,     /* TRUE or FALSE: text "true" or "false" */
	LV_SQL_VALUE_NULL,     /* NULL: empty text */
} lv_sql_value_kind_t;

typedef struct lv_sql_value {
	uint8_t kind;                     /* lv_sql_value_kind_t */
	uint16_t param;                   /* LV_SQL_VALUE_PARAM */
	uint16_t off, len;                /* the text in info->point_values; 0, 0 for none */
	char cast[LV_SQL_POINT_CAST_LEN]; /* an explicit cast's type ("int4", "text",
					      "uuid", "MyType"), "" if none */
} lv_sql_value_t;

typedef struct lv_sql_point {
	bool is_point;           /* the statement qualifies (see above) */
	bool on_conflict;        /* INSERT ... ON CONFLICT */
	bool on_conflict_update; /* ... DO UPDATE: existing rows that conflict are updated
				    too (set_cols are its SET columns) */
	bool cols_overflow;      /* SELECT/UPDATE/DELETE: more than LV_SQL_MAX_POINT_COLS
				    equality conjuncts (the first ones are kept); INSERT:
				    more columns than that (then not a point) */
	bool values_overflow;    /* point_values filled up: some values became NONE */
	bool set_overflow;       /* more SET columns than listed: assume all changed */
	uint8_t n_cols;          /* 0 unless is_point */
	uint8_t n_rows;          /* 1 for SELECT/UPDATE/DELETE, the VALUES rows for
				    INSERT; 0 unless is_point */
	uint8_t n_set;           /* columns assigned by UPDATE or ON CONFLICT DO UPDATE
				    (filled for any single such statement, point or not) */
	/* Column names as PostgreSQL resolves them (unquoted names folded to
	 * lower case, quoted ones as written). May repeat (a = 1 AND a = 2). */
	char cols[LV_SQL_MAX_POINT_COLS][LV_SQL_NAME_LEN];
	char set_cols[LV_SQL_MAX_POINT_COLS][LV_SQL_NAME_LEN];
	/* values[row][col] for row < n_rows, col < n_cols; other rows are
	 * unspecified (a cache hit does not write them). Keep this member last. */
	lv_sql_value_t values[LV_SQL_MAX_POINT_ROWS][LV_SQL_MAX_POINT_COLS];
} lv_sql_point_t;

/* Options for one classification. A zeroed struct (or NULL) is the default. */
typedef struct lv_sql_opts {
	/* Extra functions that write (config `write_functions`): NULL-terminated
	 * array and/or comma-separated list, either may be NULL. An entry is
	 * "name" (matches any schema), "schema.name" (exact), or ends in '*' (prefix).
	 * Matching is ASCII case-insensitive. A match makes the statement not
	 * read-only and volatile. */
	const char *const *write_functions;
	const char *write_functions_list;
	bool skip_fingerprint; /* do not compute .fingerprint (saves a second parse) */
} lv_sql_opts_t;

/*
 * The classification of one simple-query string. Plain data, no pointers;
 * copy freely. Multi-statement strings are summarised as a union: kind is the
 * first statement's, is_read_only holds only if every statement is read only,
 * the flags, masks and table lists are unions.
 */
typedef struct lv_sql_info {
	lv_sql_kind_t kind;
	uint16_t n_statements; /* 0 for EMPTY and UNPARSABLE */
	bool is_multi;         /* n_statements > 1 */

	/* Replica safety: true only when every statement can run on a hot standby
	 * without changing anything: SELECT/VALUES/TABLE, SHOW, COPY ... TO,
	 * EXPLAIN (always without ANALYZE; with ANALYZE only of a read-only
	 * statement), DECLARE of a read-only query, FETCH/MOVE, CLOSE, and EMPTY;
	 * and none of: a locking clause, a data-modifying CTE, SELECT INTO, a call
	 * to a writing function (the built-in list plus opts->write_functions;
	 * other user functions are assumed not to write). Cursor statements must
	 * still follow the backend that ran DECLARE; that is transaction
	 * affinity, the router's job. */
	bool is_read_only;
	bool has_locking_clause;   /* FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE */
	bool has_writing_cte;      /* WITH x AS (INSERT/UPDATE/DELETE/MERGE ...) */
	bool has_select_into;      /* SELECT ... INTO new_table */
	bool has_returning;        /* a top-level INSERT/UPDATE/DELETE ... RETURNING */
	bool calls_write_function; /* nextval, setval, pg_advisory_lock, ... */
	bool calls_volatile;       /* now(), random(), CURRENT_TIMESTAMP, writers, ... */

	/* Transactions. */
	bool is_transaction_control; /* some statement is BEGIN/COMMIT/SAVEPOINT/... */
	bool txn_read_only;          /* BEGIN/START/SET TRANSACTION ... READ ONLY */
	bool txn_read_write;         /* ... READ WRITE */
	bool txn_deferrable;         /* ... DEFERRABLE */
	bool txn_chain;              /* COMMIT/ROLLBACK AND CHAIN */
	lv_sql_isolation_t txn_isolation;

	/* Session state, for transaction pooling. */
	bool creates_session_state;
	lv_sql_session_t session_reason; /* the first reason found; NONE if none */
	uint32_t creates_mask;           /* LV_SQL_SESSION_BIT() of every reason */
	bool clears_session_state;       /* DISCARD ALL, UNLISTEN *, DEALLOCATE ALL,
					    RESET ALL, pg_advisory_unlock_all() */
	uint32_t clears_mask;            /* what it clears, same bits (DISCARD ALL: all;
					    DISCARD TEMP: CREATE_TEMP) */

	lv_sql_set_t set;
	lv_sql_hints_t hints;

	uint64_t fingerprint; /* pg_query_fingerprint; 0 if skipped or unparsable */

	int error_pos;                /* UNPARSABLE: 1-based cursor position, 0 unknown */
	char error[LV_SQL_ERROR_LEN]; /* UNPARSABLE: libpg_query's message; else "" */

	/* Tables, in order of first appearance in the text. Use the accessors. */
	bool read_overflow;    /* more tables were read than listed */
	bool written_overflow; /* more tables were written than listed */
	uint8_t n_read;
	uint8_t n_written;
	uint16_t read_off[LV_SQL_MAX_TABLES]; /* offsets into names */
	uint16_t written_off[LV_SQL_MAX_TABLES];
	uint16_t names_len;        /* bytes of names in use; must stay before point */
	uint16_t point_values_len; /* bytes of point_values in use; must stay before point */

	/* Row-level keys (see lv_sql_point_t). The lv_sql_point_* accessors read them.
	 * point, point_values and names must stay last, in this order: the
	 * classification cache stores only their used parts. */
	lv_sql_point_t point;
	char point_values[LV_SQL_POINT_VALUES_LEN]; /* NUL-terminated value texts */
	char names[LV_SQL_NAMES_LEN];               /* NUL-terminated names; keep this field last */
} lv_sql_info_t;

/* The i-th table read (i < n_read); borrowed from info. */
static inline const char *lv_sql_table_read(const lv_sql_info_t *info, unsigned i)
{
	return info->names + info->read_off[i];
}

/* The i-th table written (i < n_written); borrowed from info. */
static inline const char *lv_sql_table_written(const lv_sql_info_t *info, unsigned i)
{
	return info->names + info->written_off[i];
}

/* The table of a point statement (point.is_point): the one read or written; borrowed. */
static inline const char *lv_sql_point_table(const lv_sql_info_t *info)
{
	return info->n_written ? lv_sql_table_written(info, 0) : lv_sql_table_read(info, 0);
}

/* Value (row, col) of a point statement; row < point.n_rows, col < point.n_cols. */
static inline const lv_sql_value_t *lv_sql_point_value(const lv_sql_info_t *info, unsigned row,
						       unsigned col)
{
	return &info->point.values[row][col];
}

/* The NUL-terminated text of a value (v->len bytes; "" for PARAM, NULL, NONE); borrowed. */
static inline const char *lv_sql_point_text(const lv_sql_info_t *info, const lv_sql_value_t *v)
{
	return info->point_values + v->off;
}

/* Upper-case name of a kind ("SELECT", "COPY_FROM"); "UNKNOWN" out of range. */
const char *lv_sql_kind_name(lv_sql_kind_t k);
/* Kind by name, case-insensitive; returns -1 if unknown. */
int lv_sql_kind_from_name(const char *name);
/* Upper-case name of a session reason ("LISTEN"); "UNKNOWN" out of range. */
const char *lv_sql_session_name(lv_sql_session_t r);

/*
 * Classifies sql[0..len) (it stops early at a NUL byte). opts may be NULL.
 * Returns 0 and fills *out, also for text that does not parse (kind UNPARSABLE,
 * not read only, out->error set); LV_EINVAL for NULL sql/out; LV_ENOMEM when
 * memory runs out (out is then zeroed with kind UNPARSABLE). Never calls back.
 */
int lv_sql_classify(const char *sql, size_t len, const lv_sql_opts_t *opts,
		    lv_sql_info_t *out) LV_MUSTCHECK;

/*
 * The first word of sql[0..n) after whitespace and comments (ASCII letters
 * only, so "SELECT" of "SELECT(1)"); *len is 0 when there is none. No parse:
 * for cheap checks before classifying.
 */
const char *lv_sql_first_word(const char *sql, size_t n, size_t *len);

/* True when the text contains "levee:" in any case (a hint may be there): a scan, no parse. */
bool lv_sql_mentions_levee(const char *sql, size_t len);

/* Extracts only the hints: no parse, no allocation. Returns 0, or LV_EINVAL. */
int lv_sql_hints(const char *sql, size_t len, lv_sql_hints_t *out);

/*
 * Writes pg_query_normalize's text (constants replaced by $n) with a NUL into
 * out[cap]. Returns its length; LV_ESYNTAX if it does not parse, LV_ETOOBIG if
 * cap is too small (out then holds ""), LV_ENOMEM, LV_EINVAL.
 */
int lv_sql_normalize(const char *sql, size_t len, char *out, size_t cap) LV_MUSTCHECK;

/* Releases this thread's libpg_query memory context; optional, before a thread exits. */
void lv_sql_thread_cleanup(void);

/*
 * Classification cache: an LRU of at most `capacity` results keyed by the
 * statement text (64-bit hash, then a full compare) and the options in use.
 * One per thread; not thread-safe. Statements longer than
 * LV_SQL_CACHE_MAX_TEXT bytes bypass it. The cache owns its entries; results
 * are copied out.
 */
#define LV_SQL_CACHE_MAX_TEXT 16384

typedef struct lv_sql_cache lv_sql_cache_t;

typedef struct lv_sql_cache_stats {
	uint64_t hits;      /* answered from the cache */
	uint64_t misses;    /* classified and (if possible) inserted */
	uint64_t evictions; /* entries dropped to stay within capacity */
	uint64_t bypassed;  /* too long to cache (also counted in misses) */
	size_t n_entries;   /* entries now */
	size_t capacity;
	size_t bytes; /* heap bytes held by entries */
} lv_sql_cache_stats_t;

/* A cache of at most capacity entries (0: caches nothing); NULL on OOM. */
lv_sql_cache_t *lv_sql_cache_new(size_t capacity) LV_MUSTCHECK;
/* Frees the cache and its entries; NULL is a no-op. */
void lv_sql_cache_free(lv_sql_cache_t *cache);
/* lv_sql_classify through the cache; same returns. An entry that cannot be
 * allocated is simply not cached. */
int lv_sql_cache_classify(lv_sql_cache_t *cache, const char *sql, size_t len,
			  const lv_sql_opts_t *opts, lv_sql_info_t *out) LV_MUSTCHECK;
/*
 * lv_sql_cache_classify for callers that read only what a statement's
 * constants cannot change: kind, n_statements, is_multi, is_read_only, the
 * has_ and calls_ flags, the transaction and session-state fields, hints and
 * the table lists (the router). Single statements of the common kinds
 * (SELECT, VALUES, INSERT, UPDATE, DELETE, MERGE, BEGIN, START, COMMIT,
 * ROLLBACK) that differ only in numeric and string constants share one
 * entry, so `... WHERE id = 1` and `... WHERE id = 2` are parsed once;
 * comments count as a space, and hints are always those of sql itself. set
 * is filled only when the text was parsed. Without want_points the answer
 * has no point keys (point is zeroed, point_values is ""); with it, point
 * and point_values are sql's own, exactly as lv_sql_classify gives them:
 * taken from sql's constants when the entry knows which constant each
 * value is, else by parsing sql. Same returns as lv_sql_cache_classify;
 * hits and misses count in the same stats.
 */
int lv_sql_cache_classify_shape(lv_sql_cache_t *cache, const char *sql, size_t len,
				const lv_sql_opts_t *opts, bool want_points,
				lv_sql_info_t *out) LV_MUSTCHECK;
/* Counters and sizes of the cache. */
lv_sql_cache_stats_t lv_sql_cache_stats(const lv_sql_cache_t *cache);

#endif
