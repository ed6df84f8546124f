/* SPDX-License-Identifier: ISC */
/*
 * Statement classification on top of libpg_query.
 *
 * What it does: lv_sql_classify() parses a simple-query string with
 * pg_query_parse(), walks the parse tree and fills an lv_sql_info_t (kind,
 * replica safety, tables read and written, session-state effects, SET details,
 * transaction options), plus the `levee:` hints from comments and, unless
 * skipped, pg_query_fingerprint(). lv_sql_hints() scans comments only,
 * lv_sql_normalize() wraps pg_query_normalize(), and lv_sql_cache_t is a
 * per-thread LRU of results keyed by statement text. For a single statement
 * on one table, point_extract() then reads the `column = value` keys that
 * row-level cache invalidation needs (lv_sql_point_t), from the same tree.
 *
 * How the tree is read. libpg_query offers the tree as JSON text or as
 * protobuf. The protobuf-c structs need <protobuf-c/protobuf-c.h>, which
 * Debian's libpg-query-dev does not ship, and cJSON belongs to http/ and wq/
 * only. So this file parses the JSON itself into a small DOM: an array of
 * nodes indexed by number (one allocation that grows), strings unescaped in
 * place inside libpg_query's own buffer. Both the JSON parser and the tree
 * walk are iterative with explicit stacks, because `1+1+...+1` nests as
 * deep as the statement is long. The tree is read by shape, which keeps the
 * walk short and makes new node types harmless:
 *
 *  - an object with a single key starting with an upper-case letter is a
 *    typed node ({"SelectStmt": {...}}); lower-case keys are fields;
 *  - an object with "relname" and "relpersistence" is a RangeVar, whether
 *    wrapped or stored inline in a field such as InsertStmt.relation;
 *  - a FuncCall names its function in "funcname" (a list of strings).
 *
 * The walk carries a mode per subtree: WRITE (a RangeVar here is written:
 * DML targets, SELECT INTO, COPY FROM, TRUNCATE and everything named by DDL
 * outside its queries) and NOEXEC (plain EXPLAIN, PREPARE: nothing runs, so
 * writes are reported as reads and do not spoil replica safety). A SelectStmt
 * resets the mode to read. CTE names are scoped as PostgreSQL does
 * (non-recursive CTEs see only earlier siblings), so a CTE is not reported as
 * a table while a real table of the same name elsewhere still is.
 *
 * What it cannot know: a user function that writes looks like any other call
 * unless `write_functions` names it; a view or function body is not opened,
 * so its tables are not listed; EXECUTE of a prepared statement says nothing
 * about the statement. All of these err to "not read only" or leave the
 * decision to the caller (EXECUTE is never read only). Text libpg_query
 * rejects, including nesting beyond bison's stack, is UNPARSABLE and never
 * read only.
 *
 * Ownership and lifetimes: every libpg_query result is freed before the call
 * returns; the DOM and the walk stacks are heap scratch freed on return;
 * nothing is kept between calls except inside an lv_sql_cache_t, which owns
 * its entries. libpg_query keeps a per-thread top memory context
 * (lv_sql_thread_cleanup() releases it). No I/O, no globals: any thread may
 * classify, one cache per thread.
 */
#include "core/lv.h"

#include "sql/classify.h"

#include <ctype.h>
#include <limits.h>
#include <strings.h>

#include <pg_query.h>

/* Whether this thread has called into libpg_query (which then holds a memory context). */
static _Thread_local bool thread_used_parser;

#include "core/list.h"
#include "core/mem.h"
#include "core/status.h"

/* ---------------------------------------------------------------- names */

static const char *const kind_names[] = {
#define XX(name) #name,
	LV_SQL_KIND_MAP(XX)
#undef XX
};

static const char *const session_names[] = {
#define XX(name) #name,
	LV_SQL_SESSION_MAP(XX)
#undef XX
};

LV_STATIC_ASSERT(LV_ARRAY_LEN(kind_names) == LV_SQL_KIND_COUNT, "kind names");
LV_STATIC_ASSERT(LV_SQL_SESSION_COUNT <= 32, "session reasons fit a mask");
LV_STATIC_ASSERT(LV_SQL_NAMES_LEN <= UINT16_MAX, "name offsets fit uint16_t");
LV_STATIC_ASSERT(LV_SQL_POINT_VALUES_LEN <= UINT16_MAX, "value offsets fit uint16_t");
LV_STATIC_ASSERT(LV_SQL_MAX_POINT_ROWS <= UINT8_MAX && LV_SQL_MAX_POINT_COLS <= UINT8_MAX,
		 "point counts fit uint8_t");

const char *lv_sql_kind_name(lv_sql_kind_t k)
{
	if ((unsigned)k >= LV_SQL_KIND_COUNT)
		return "UNKNOWN";
	return kind_names[k];
}

int lv_sql_kind_from_name(const char *name)
{
	for (unsigned i = 0; i < LV_SQL_KIND_COUNT; i++)
		if (strcasecmp(kind_names[i], name) == 0)
			return (int)i;
	return -1;
}

const char *lv_sql_session_name(lv_sql_session_t r)
{
	if ((unsigned)r >= LV_SQL_SESSION_COUNT)
		return "UNKNOWN";
	return session_names[r];
}

/* ---------------------------------------------------------------- lexer */

/*
 * Just enough of PostgreSQL's lexer to tell comments from everything else:
 * standard and E'' strings, quoted identifiers, dollar quoting, nested block
 * comments and line comments. standard_conforming_strings is assumed on (the
 * default since 9.1), so a backslash escapes only inside E''.
 */
typedef enum {
	LX_END,
	LX_SPACE,
	LX_COMMENT,
	LX_TOKEN
} lx_kind_t;

typedef struct lx_tok {
	lx_kind_t kind;
	size_t start, end;     /* [start, end) of the token */
	size_t body, body_len; /* LX_COMMENT: the text between the delimiters */
	bool is_unterminated;  /* a comment, string or dollar body ran to the end */
} lx_tok_t;

static bool is_ident_char(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

static bool is_ident_start(unsigned char c)
{
	return isalpha(c) || c == '_' || c >= 0x80;
}

static bool is_special(unsigned char c)
{
	return c == '\'' || c == '"' || c == '$' || c == '-' || c == '/' || isspace(c);
}

/* Scans the token at *pos of s[0..end) and advances *pos past it. */
static void lx_next(const char *s, size_t end, size_t *pos, lx_tok_t *t)
{
	size_t i = *pos;
	memset(t, 0, sizeof(*t));
	t->start = i;
	if (i >= end) {
		t->kind = LX_END;
		t->end = i;
		return;
	}
	unsigned char c = (unsigned char)s[i];
	if (isspace(c)) {
		while (i < end && isspace((unsigned char)s[i]))
			i++;
		t->kind = LX_SPACE;
	} else if (c == '-' && i + 1 < end && s[i + 1] == '-') {
		t->kind = LX_COMMENT;
		t->body = i + 2;
		i += 2;
		while (i < end && s[i] != '\n' && s[i] != '\r')
			i++;
		t->body_len = i - t->body;
	} else if (c == '/' && i + 1 < end && s[i + 1] == '*') {
		int depth = 1;
		t->kind = LX_COMMENT;
		t->body = i + 2;
		i += 2;
		while (i < end) {
			if (s[i] == '/' && i + 1 < end && s[i + 1] == '*') {
				depth++;
				i += 2;
			} else if (s[i] == '*' && i + 1 < end && s[i + 1] == '/') {
				i += 2;
				if (--depth == 0)
					break;
			} else {
				i++;
			}
		}
		if (depth > 0) {
			t->is_unterminated = true;
			t->body_len = i - t->body;
		} else {
			t->body_len = i - 2 - t->body;
		}
	} else if (c == '\'' || c == '"') {
		bool esc = c == '\'' && i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e') &&
			   (i < 2 || !is_ident_char((unsigned char)s[i - 2]));
		t->kind = LX_TOKEN;
		t->is_unterminated = true;
		i++;
		while (i < end) {
			if (esc && s[i] == '\\') {
				i += 2;
			} else if ((unsigned char)s[i] == c) {
				if (i + 1 < end && (unsigned char)s[i + 1] == c) {
					i += 2;
				} else {
					i++;
					t->is_unterminated = false;
					break;
				}
			} else {
				i++;
			}
		}
		if (i > end)
			i = end;
	} else if (c == '$' && !(i > 0 && is_ident_char((unsigned char)s[i - 1]))) {
		size_t j = i + 1;
		if (j < end && is_ident_start((unsigned char)s[j])) {
			while (j < end && is_ident_char((unsigned char)s[j]) && s[j] != '$')
				j++;
		}
		t->kind = LX_TOKEN;
		if (j < end && s[j] == '$') {
			/* A dollar quote $tag$ ... $tag$. */
			size_t tag_len = j + 1 - i;
			const char *close = NULL;
			if (j + 1 <= end)
				close = memmem(s + j + 1, end - (j + 1), s + i, tag_len);
			if (close) {
				i = (size_t)(close - s) + tag_len;
			} else {
				t->is_unterminated = true;
				i = end;
			}
		} else {
			i++; /* $1 or a lone $ */
		}
	} else {
		i++;
		while (i < end && !is_special((unsigned char)s[i]))
			i++;
		t->kind = LX_TOKEN;
	}
	t->end = i;
	*pos = i;
}

/* End of the last token of s[start..end) that is not space or a comment. */
static size_t lx_significant_end(const char *s, size_t start, size_t end)
{
	size_t pos = start, last = start;
	lx_tok_t t;
	for (;;) {
		lx_next(s, end, &pos, &t);
		if (t.kind == LX_END)
			break;
		if (t.kind == LX_TOKEN)
			last = t.end;
	}
	return last;
}

/* Start of the first token at or after pos in s[0..end) that is not space or a comment. */
static size_t lx_skip_blank(const char *s, size_t end, size_t pos)
{
	lx_tok_t t;
	for (;;) {
		size_t at = pos;
		lx_next(s, end, &pos, &t);
		if (t.kind != LX_SPACE && t.kind != LX_COMMENT)
			return at;
	}
}

/* ---------------------------------------------------------------- hints */

typedef enum {
	H_NONE,
	H_PRIMARY,
	H_REPLICA,
	H_CACHE,
	H_NOCACHE,
	H_ASYNC
} hint_t;

static bool span_eq(const char *p, size_t n, const char *lit)
{
	size_t l = strlen(lit);
	return n == l && strncasecmp(p, lit, l) == 0;
}

static void hint_invalid(lv_sql_hints_t *h, const char *p, size_t n)
{
	if (h->n_invalid < UINT16_MAX)
		h->n_invalid++;
	if (h->invalid[0] == '\0') {
		size_t k = LV_MIN(n, sizeof(h->invalid) - 1);
		memcpy(h->invalid, p, k);
		h->invalid[k] = '\0';
	}
}

/* "30s", "250ms", "5min", "2h", "30" (seconds) into milliseconds. */
static bool parse_duration_ms(const char *p, size_t n, uint32_t *out)
{
	uint64_t v = 0;
	size_t i = 0;
	while (i < n && isdigit((unsigned char)p[i])) {
		v = v * 10 + (uint64_t)(p[i] - '0');
		if (v > UINT32_MAX)
			return false;
		i++;
	}
	if (i == 0)
		return false;
	uint64_t mult;
	if (i == n || span_eq(p + i, n - i, "s"))
		mult = 1000;
	else if (span_eq(p + i, n - i, "ms"))
		mult = 1;
	else if (span_eq(p + i, n - i, "min"))
		mult = 60000;
	else if (span_eq(p + i, n - i, "h"))
		mult = 3600000;
	else
		return false;
	if (v * mult > UINT32_MAX)
		return false;
	*out = (uint32_t)(v * mult);
	return true;
}

static bool is_hex(char c)
{
	return isxdigit((unsigned char)c) != 0;
}

/* W3C trace context, version 00: 00-<32 hex>-<16 hex>-<2 hex>. */
static bool valid_traceparent(const char *p, size_t n)
{
	static const unsigned char dash_at[] = {2, 35, 52};
	if (n != LV_SQL_TRACEPARENT_LEN)
		return false;
	for (size_t i = 0, d = 0; i < n; i++) {
		if (d < sizeof(dash_at) && i == dash_at[d]) {
			if (p[i] != '-')
				return false;
			d++;
		} else if (!is_hex(p[i])) {
			return false;
		}
	}
	return true;
}

static void hint_apply_kv(lv_sql_hints_t *h, hint_t cur, const char *item, size_t item_len,
			  const char *k, size_t kn, const char *v, size_t vn)
{
	if (span_eq(k, kn, "traceparent")) {
		if (valid_traceparent(v, vn)) {
			memcpy(h->traceparent, v, vn);
			h->traceparent[vn] = '\0';
			h->has_any = true;
		} else {
			hint_invalid(h, item, item_len);
		}
		return;
	}
	if (cur == H_NONE)
		return; /* sqlcommenter's other keys, or prose with '=' in it */
	if (cur == H_CACHE && span_eq(k, kn, "ttl")) {
		if (!parse_duration_ms(v, vn, &h->cache_ttl_ms))
			hint_invalid(h, item, item_len);
	} else if (cur == H_CACHE && span_eq(k, kn, "swr")) {
		if (!parse_duration_ms(v, vn, &h->cache_swr_ms))
			hint_invalid(h, item, item_len);
	} else if (cur == H_ASYNC && span_eq(k, kn, "key")) {
		if (vn == 0 || vn >= sizeof(h->async_key)) {
			hint_invalid(h, item, item_len);
		} else {
			memcpy(h->async_key, v, vn);
			h->async_key[vn] = '\0';
		}
	} else {
		hint_invalid(h, item, item_len);
	}
}

static hint_t hint_apply_word(lv_sql_hints_t *h, const char *w, size_t n)
{
	hint_t id = H_NONE;
	if (span_eq(w, n, "primary")) {
		h->want_primary = true;
		id = H_PRIMARY;
	} else if (span_eq(w, n, "replica")) {
		h->want_replica = true;
		id = H_REPLICA;
	} else if (span_eq(w, n, "cache")) {
		h->want_cache = true;
		id = H_CACHE;
	} else if (span_eq(w, n, "nocache")) {
		h->want_no_cache = true;
		id = H_NOCACHE;
	} else if (span_eq(w, n, "async")) {
		h->want_async = true;
		id = H_ASYNC;
	}
	if (id != H_NONE)
		h->has_any = true;
	return id;
}

static bool is_hint_sep(char c)
{
	return c == ',' || isspace((unsigned char)c);
}

/* Parses one comment body; see the grammar in classify.h. */
static void hints_parse_body(const char *b, size_t n, lv_sql_hints_t *h)
{
	hint_t cur = H_NONE;
	size_t i = 0;
	while (i < n) {
		while (i < n && is_hint_sep(b[i]))
			i++;
		if (i >= n)
			break;
		size_t start = i;
		while (i < n && !is_hint_sep(b[i]) && b[i] != '=')
			i++;
		if (i < n && b[i] == '=') {
			size_t kn = i - start;
			const char *v;
			size_t vn;
			i++;
			if (i < n && (b[i] == '\'' || b[i] == '"')) {
				char q = b[i++];
				v = b + i;
				while (i < n && b[i] != q)
					i += (b[i] == '\\' && i + 1 < n) ? 2 : 1;
				vn = (size_t)(b + i - v);
				if (i < n)
					i++;
			} else {
				v = b + i;
				while (i < n && !is_hint_sep(b[i]))
					i++;
				vn = (size_t)(b + i - v);
			}
			hint_apply_kv(h, cur, b + start, i - start, b + start, kn, v, vn);
			continue;
		}
		size_t wn = i - start;
		if (wn > 6 && strncasecmp(b + start, "levee:", 6) == 0) {
			cur = hint_apply_word(h, b + start + 6, wn - 6);
			if (cur == H_NONE)
				hint_invalid(h, b + start, wn);
		} else {
			cur = H_NONE; /* prose ends the key=value binding */
		}
	}
}

static void hints_scan(const char *s, size_t len, lv_sql_hints_t *h)
{
	size_t pos = 0;
	lx_tok_t t;
	memset(h, 0, sizeof(*h));
	for (;;) {
		lx_next(s, len, &pos, &t);
		if (t.kind == LX_END)
			break;
		if (t.kind == LX_COMMENT && !t.is_unterminated)
			hints_parse_body(s + t.body, t.body_len, h);
	}
}

int lv_sql_hints(const char *sql, size_t len, lv_sql_hints_t *out)
{
	if (!sql || !out)
		return LV_EINVAL;
	const char *nul = memchr(sql, '\0', len);
	if (nul)
		len = (size_t)(nul - sql);
	hints_scan(sql, len, out);
	return LV_OK;
}

/* ---------------------------------------------------------------- JSON DOM */

/*
 * Nodes live in one array and refer to each other by index; index 0 is "none".
 * Strings point into the JSON text (offsets), unescaped in place. Containers
 * know their first child and the index just past their last descendant, so a
 * subtree is the contiguous range [node, span).
 */
typedef enum {
	J_NULL,
	J_FALSE,
	J_TRUE,
	J_NUM,
	J_STR,
	J_ARR,
	J_OBJ
} jtype_t;

typedef struct jnode {
	uint32_t key; /* offset of the member key in the text */
	uint32_t val; /* J_STR/J_NUM: offset of the text */
	uint32_t val_len;
	uint32_t child;   /* first child, 0 if none */
	uint32_t next;    /* next sibling, 0 if none */
	uint32_t span;    /* containers: one past the last descendant */
	uint16_t key_len; /* 0 outside objects */
	uint8_t type;
} jnode_t;

typedef struct jdoc {
	char *text; /* libpg_query's buffer; modified in place */
	size_t len;
	jnode_t *nodes; /* owned */
	uint32_t n, cap;
} jdoc_t;

static uint32_t jalloc(jdoc_t *d)
{
	if (d->n == d->cap) {
		uint32_t cap = d->cap ? d->cap * 2 : 1024;
		if (cap <= d->cap)
			return 0;
		jnode_t *p = lv_realloc(d->nodes, (size_t)cap * sizeof(*p));
		if (!p)
			return 0;
		d->nodes = p;
		d->cap = cap;
	}
	if (d->n == 0)
		d->n = 1; /* reserve index 0 */
	memset(&d->nodes[d->n], 0, sizeof(jnode_t));
	return d->n++;
}

static size_t put_utf8(char *w, unsigned cp)
{
	if (cp < 0x80) {
		w[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		w[0] = (char)(0xC0 | (cp >> 6));
		w[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		w[0] = (char)(0xE0 | (cp >> 12));
		w[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		w[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	w[0] = (char)(0xF0 | (cp >> 18));
	w[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	w[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	w[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

static bool read_hex4(const char *p, const char *end, unsigned *out)
{
	unsigned v = 0;
	if (end - p < 4)
		return false;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return false;
	}
	*out = v;
	return true;
}

/* Unescapes the string starting after the quote at *pos; returns false if malformed.
 * The result is [*off, *off + *len) and *pos ends after the closing quote. */
static bool jstring(jdoc_t *d, size_t *pos, uint32_t *off, uint32_t *len)
{
	char *t = d->text, *end = d->text + d->len;
	char *r = t + *pos + 1, *w = r;
	*off = (uint32_t)(r - t);
	while (r < end && *r != '"') {
		if (*r != '\\') {
			*w++ = *r++;
			continue;
		}
		if (++r >= end)
			return false;
		char c = *r++;
		switch (c) {
		case 'b':
			*w++ = '\b';
			break;
		case 'f':
			*w++ = '\f';
			break;
		case 'n':
			*w++ = '\n';
			break;
		case 'r':
			*w++ = '\r';
			break;
		case 't':
			*w++ = '\t';
			break;
		case 'u': {
			unsigned cp, lo;
			if (!read_hex4(r, end, &cp))
				return false;
			r += 4;
			if (cp >= 0xD800 && cp < 0xDC00 && end - r >= 6 && r[0] == '\\' &&
			    r[1] == 'u' && read_hex4(r + 2, end, &lo) && lo >= 0xDC00 &&
			    lo < 0xE000) {
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				r += 6;
			}
			/* Never longer than the escape it replaces, so w stays behind r. */
			w += put_utf8(w, cp);
			break;
		}
		default:
			*w++ = c;
			break; /* \" \\ \/ */
		}
	}
	if (r >= end)
		return false;
	*len = (uint32_t)(w - (t + *off));
	*pos = (size_t)(r + 1 - t);
	return true;
}

static void jskip_ws(const jdoc_t *d, size_t *pos)
{
	while (*pos < d->len && isspace((unsigned char)d->text[*pos]))
		(*pos)++;
}

typedef struct jframe {
	uint32_t node;
	uint32_t last; /* last child so far */
} jframe_t;

static bool jpush(jframe_t **st, size_t *n, size_t *cap, uint32_t node)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		jframe_t *p = lv_realloc(*st, c * sizeof(*p));
		if (!p)
			return false;
		*st = p;
		*cap = c;
	}
	(*st)[*n].node = node;
	(*st)[*n].last = 0;
	(*n)++;
	return true;
}

/* Parses a scalar at *pos into nd; returns false if malformed. */
static bool jscalar(jdoc_t *d, size_t *pos, jnode_t *nd)
{
	const char *t = d->text;
	size_t left = d->len - *pos;
	char c = t[*pos];
	if (c == '"') {
		nd->type = J_STR;
		return jstring(d, pos, &nd->val, &nd->val_len);
	}
	if (c == 't' && left >= 4 && memcmp(t + *pos, "true", 4) == 0) {
		nd->type = J_TRUE;
		*pos += 4;
	} else if (c == 'f' && left >= 5 && memcmp(t + *pos, "false", 5) == 0) {
		nd->type = J_FALSE;
		*pos += 5;
	} else if (c == 'n' && left >= 4 && memcmp(t + *pos, "null", 4) == 0) {
		nd->type = J_NULL;
		*pos += 4;
	} else if (c == '-' || isdigit((unsigned char)c)) {
		size_t start = *pos;
		while (*pos < d->len && t[*pos] != '\0' && strchr("+-.eE0123456789", t[*pos]))
			(*pos)++;
		nd->type = J_NUM;
		nd->val = (uint32_t)start;
		nd->val_len = (uint32_t)(*pos - start);
	} else {
		return false;
	}
	return true;
}

/*
 * Parses d->text into d->nodes; the root is node 1. Iterative: st holds the
 * open containers. Returns 0, LV_ENOMEM, LV_ETOOBIG or LV_EPROTO (malformed).
 */
static int jparse(jdoc_t *d)
{
	jframe_t *st = NULL;
	size_t n_st = 0, cap_st = 0, pos = 0;
	int rc = LV_EPROTO;

	if (d->len >= UINT32_MAX)
		return LV_ETOOBIG;
	for (;;) {
		uint32_t key = 0, key_len = 0;
		bool closed_empty = false;

		jskip_ws(d, &pos);
		if (pos >= d->len)
			goto out;
		if (n_st > 0) {
			const jnode_t *top = &d->nodes[st[n_st - 1].node];
			char close = top->type == J_OBJ ? '}' : ']';
			if (d->text[pos] == close && st[n_st - 1].last == 0) {
				pos++;
				d->nodes[st[n_st - 1].node].span = d->n;
				n_st--;
				closed_empty = true;
			} else if (top->type == J_OBJ) {
				if (d->text[pos] != '"' || !jstring(d, &pos, &key, &key_len) ||
				    key_len > UINT16_MAX)
					goto out;
				jskip_ws(d, &pos);
				if (pos >= d->len || d->text[pos] != ':')
					goto out;
				pos++;
				jskip_ws(d, &pos);
				if (pos >= d->len)
					goto out;
			}
		}
		if (!closed_empty) {
			uint32_t idx = jalloc(d);
			if (!idx) {
				rc = LV_ENOMEM;
				goto out;
			}
			jnode_t *nd = &d->nodes[idx];
			nd->key = key;
			nd->key_len = (uint16_t)key_len;
			if (n_st > 0) {
				jframe_t *f = &st[n_st - 1];
				if (f->last)
					d->nodes[f->last].next = idx;
				else
					d->nodes[f->node].child = idx;
				f->last = idx;
			}
			char c = d->text[pos];
			if (c == '{' || c == '[') {
				nd->type = c == '{' ? J_OBJ : J_ARR;
				pos++;
				if (!jpush(&st, &n_st, &cap_st, idx)) {
					rc = LV_ENOMEM;
					goto out;
				}
				continue;
			}
			if (!jscalar(d, &pos, nd))
				goto out;
		}
		/* After a value: a separator, or closing brackets. */
		for (;;) {
			if (n_st == 0) {
				jskip_ws(d, &pos);
				rc = pos == d->len ? LV_OK : LV_EPROTO;
				goto out;
			}
			jskip_ws(d, &pos);
			if (pos >= d->len)
				goto out;
			const jnode_t *top = &d->nodes[st[n_st - 1].node];
			if (d->text[pos] == ',') {
				pos++;
				break;
			}
			if (d->text[pos] != (top->type == J_OBJ ? '}' : ']'))
				goto out;
			pos++;
			d->nodes[st[n_st - 1].node].span = d->n;
			n_st--;
		}
	}
out:
	lv_free(st);
	if (rc == LV_OK && (d->n < 2 || d->nodes[1].type != J_OBJ))
		rc = LV_EPROTO;
	return rc;
}

static jnode_t *jnode(const jdoc_t *d, uint32_t i)
{
	return &d->nodes[i];
}

static bool jkey_is(const jdoc_t *d, uint32_t i, const char *key)
{
	const jnode_t *n = jnode(d, i);
	size_t l = strlen(key);
	return n->key_len == l && memcmp(d->text + n->key, key, l) == 0;
}

/* Member `key` of object obj, or 0. */
static uint32_t jget(const jdoc_t *d, uint32_t obj, const char *key)
{
	if (!obj || jnode(d, obj)->type != J_OBJ)
		return 0;
	for (uint32_t c = jnode(d, obj)->child; c; c = jnode(d, c)->next)
		if (jkey_is(d, c, key))
			return c;
	return 0;
}

static bool jstr_is(const jdoc_t *d, uint32_t i, const char *s)
{
	if (!i || jnode(d, i)->type != J_STR)
		return false;
	size_t l = strlen(s);
	return jnode(d, i)->val_len == l && memcmp(d->text + jnode(d, i)->val, s, l) == 0;
}

/* The string value of member key as a (pointer, length) into the text, or false. */
static bool jget_str(const jdoc_t *d, uint32_t obj, const char *key, const char **p, size_t *n)
{
	uint32_t v = jget(d, obj, key);
	if (!v || jnode(d, v)->type != J_STR)
		return false;
	*p = d->text + jnode(d, v)->val;
	*n = jnode(d, v)->val_len;
	return true;
}

static bool jget_bool(const jdoc_t *d, uint32_t obj, const char *key)
{
	uint32_t v = jget(d, obj, key);
	return v && jnode(d, v)->type == J_TRUE;
}

static long jnum(const jdoc_t *d, uint32_t i, long dflt)
{
	if (!i || jnode(d, i)->type != J_NUM)
		return dflt;
	char tmp[32];
	size_t l = LV_MIN(jnode(d, i)->val_len, sizeof(tmp) - 1);
	memcpy(tmp, d->text + jnode(d, i)->val, l);
	tmp[l] = '\0';
	return strtol(tmp, NULL, 10);
}

static long jget_num(const jdoc_t *d, uint32_t obj, const char *key, long dflt)
{
	return jnum(d, jget(d, obj, key), dflt);
}

/* If i is a typed node {"TypeName": {...}}, returns the inner object and its name. */
static uint32_t jtyped(const jdoc_t *d, uint32_t i, const char **name, size_t *name_len)
{
	if (!i || jnode(d, i)->type != J_OBJ)
		return 0;
	uint32_t c = jnode(d, i)->child;
	if (!c || jnode(d, c)->next || jnode(d, c)->type != J_OBJ || jnode(d, c)->key_len == 0)
		return 0;
	const char *k = d->text + jnode(d, c)->key;
	if (!isupper((unsigned char)k[0]))
		return 0;
	*name = k;
	*name_len = jnode(d, c)->key_len;
	return c;
}

static bool name_is(const char *name, size_t n, const char *lit)
{
	size_t l = strlen(lit);
	return n == l && memcmp(name, lit, l) == 0;
}

static bool starts_with(const char *s, size_t n, const char *prefix)
{
	size_t l = strlen(prefix);
	return n >= l && memcmp(s, prefix, l) == 0;
}

/* Smallest non-negative "location" inside the subtree of i, or -1. */
static long jmin_location(const jdoc_t *d, uint32_t i)
{
	long best = -1;
	uint32_t end = jnode(d, i)->type >= J_ARR ? jnode(d, i)->span : i + 1;
	for (uint32_t k = i; k < end; k++) {
		if (jnode(d, k)->type == J_NUM && jkey_is(d, k, "location")) {
			long v = jnum(d, k, -1);
			if (v >= 0 && (best < 0 || v < best))
				best = v;
		}
	}
	return best;
}

/* ---------------------------------------------------------------- classifier state */

enum {
	WF_WRITE = 1,
	WF_NOEXEC = 2
};

typedef struct wframe {
	uint32_t node;
	uint32_t scope; /* innermost visible CTE name, index into scopes; 0 none */
	uint8_t flags;
} wframe_t;

typedef struct scope {
	uint32_t name; /* J_STR node holding the CTE name */
	uint32_t next;
} scope_t;

typedef struct cls {
	const char *sql; /* NUL-terminated copy of the input */
	size_t sql_len;
	const lv_sql_opts_t *opts;
	lv_sql_info_t *info;
	jdoc_t doc;
	wframe_t *stack;
	size_t n_stack, cap_stack;
	scope_t *scopes;
	uint32_t n_scopes, cap_scopes;
	long read_loc[LV_SQL_MAX_TABLES];
	long written_loc[LV_SQL_MAX_TABLES];
	bool is_oom;
	/* The statement being classified. */
	long stmt_loc;
	size_t stmt_end;
	bool blocks_ro;      /* something executed writes or locks */
	uint32_t n_sublinks; /* SubLinks walked so far (any one rules out a point) */
} cls_t;

/* ---------------------------------------------------------------- tables */

static bool list_add(cls_t *c, bool written, const char *name, size_t n, long loc)
{
	lv_sql_info_t *in = c->info;
	uint16_t *off = written ? in->written_off : in->read_off;
	long *locs = written ? c->written_loc : c->read_loc;
	uint8_t *cnt = written ? &in->n_written : &in->n_read;
	bool *ovf = written ? &in->written_overflow : &in->read_overflow;
	unsigned i;

	for (i = 0; i < *cnt; i++) {
		const char *have = in->names + off[i];
		if (strlen(have) == n && memcmp(have, name, n) == 0) {
			if (loc < locs[i]) {
				/* Move it to keep the list in order of first appearance. */
				uint16_t o = off[i];
				while (i > 0 && locs[i - 1] > loc) {
					off[i] = off[i - 1];
					locs[i] = locs[i - 1];
					i--;
				}
				off[i] = o;
				locs[i] = loc;
			}
			return true;
		}
	}
	if (*cnt >= LV_SQL_MAX_TABLES) {
		/* Keep the first tables in text order: drop the last one if this comes earlier. */
		*ovf = true;
		if (loc >= locs[*cnt - 1])
			return false;
		(*cnt)--;
	}
	if ((size_t)in->names_len + n + 1 > LV_SQL_NAMES_LEN) {
		*ovf = true;
		return false;
	}
	uint16_t o = in->names_len;
	memcpy(in->names + o, name, n);
	in->names[o + n] = '\0';
	in->names_len = (uint16_t)(in->names_len + n + 1);
	i = *cnt;
	while (i > 0 && locs[i - 1] > loc) {
		off[i] = off[i - 1];
		locs[i] = locs[i - 1];
		i--;
	}
	off[i] = o;
	locs[i] = loc;
	(*cnt)++;
	return true;
}

/* Records schema.name (schema may be empty) as read or written, per flags. */
static void add_table(cls_t *c, const char *schema, size_t sn, const char *rel, size_t rn, long loc,
		      uint8_t flags)
{
	char buf[2 * 256 + 2];
	size_t n = 0;
	if (rn == 0 || sn > 256 || rn > 256)
		return;
	if (sn) {
		memcpy(buf, schema, sn);
		buf[sn] = '.';
		n = sn + 1;
	}
	memcpy(buf + n, rel, rn);
	n += rn;
	bool written = (flags & WF_WRITE) && !(flags & WF_NOEXEC);
	if (written)
		c->blocks_ro = true;
	if (loc < 0)
		loc = c->stmt_loc;
	list_add(c, written, buf, n, loc);
}

static bool in_cte_scope(const cls_t *c, uint32_t scope, const char *rel, size_t rn)
{
	for (uint32_t s = scope; s; s = c->scopes[s].next) {
		const jnode_t *nm = jnode(&c->doc, c->scopes[s].name);
		if (nm->val_len == rn && memcmp(c->doc.text + nm->val, rel, rn) == 0)
			return true;
	}
	return false;
}

static void visit_rangevar(cls_t *c, uint32_t o, const wframe_t *f)
{
	const char *rel, *schema = "";
	size_t rn, sn = 0;
	if (!jget_str(&c->doc, o, "relname", &rel, &rn))
		return;
	if (!jget_str(&c->doc, o, "schemaname", &schema, &sn)) {
		schema = "";
		sn = 0;
		if (in_cte_scope(c, f->scope, rel, rn))
			return;
	}
	add_table(c, schema, sn, rel, rn, jget_num(&c->doc, o, "location", -1), f->flags);
}

/* ---------------------------------------------------------------- session effects */

static void add_session(cls_t *c, lv_sql_session_t r)
{
	lv_sql_info_t *in = c->info;
	if (!in->creates_session_state) {
		in->creates_session_state = true;
		in->session_reason = r;
	}
	in->creates_mask |= LV_SQL_SESSION_BIT(r);
}

static void add_clear(cls_t *c, uint32_t mask)
{
	c->info->clears_session_state = true;
	c->info->clears_mask |= mask;
}

/* ---------------------------------------------------------------- functions */

enum {
	FN_WRITE = 1,        /* changes the database or needs the primary's session */
	FN_VOLATILE = 2,     /* result differs between calls */
	FN_SESSION_LOCK = 4, /* takes a session-level advisory lock */
	FN_UNLOCK_ALL = 8,   /* releases all session advisory locks */
	FN_SET_CONFIG = 16,  /* set_config(name, value, is_local) */
};

/* First match wins; a trailing '*' matches a prefix. */
static const struct fn_rule {
	const char *pattern;
	unsigned flags;
} fn_rules[] = {
	{"nextval", FN_WRITE},
	{"setval", FN_WRITE},
	{"currval", FN_WRITE}, /* reads session state that only nextval's session has */
	{"lastval", FN_WRITE},
	{"pg_advisory_xact_lock*", FN_WRITE},
	{"pg_advisory_lock*", FN_WRITE | FN_SESSION_LOCK},
	{"pg_try_advisory_xact_lock*", FN_WRITE},
	{"pg_try_advisory_lock*", FN_WRITE | FN_SESSION_LOCK},
	{"pg_advisory_unlock_all", FN_WRITE | FN_UNLOCK_ALL},
	{"pg_advisory_unlock*", FN_WRITE},
	{"set_config", FN_WRITE | FN_SET_CONFIG},
	{"pg_notify", FN_WRITE},
	{"txid_current", FN_WRITE},
	{"pg_current_xact_id", FN_WRITE},
	{"pg_switch_wal", FN_WRITE},
	{"pg_create_*", FN_WRITE},
	{"pg_drop_replication_slot", FN_WRITE},
	{"pg_logical_emit_message", FN_WRITE},
	{"pg_promote", FN_WRITE},
	{"pg_backup_start", FN_WRITE},
	{"pg_backup_stop", FN_WRITE},
	{"lo_creat", FN_WRITE},
	{"lo_create", FN_WRITE},
	{"lo_import", FN_WRITE},
	{"lo_export", FN_WRITE},
	{"lo_unlink", FN_WRITE},
	{"lo_put", FN_WRITE},
	{"lo_from_bytea", FN_WRITE},
	{"lo_open", FN_WRITE},
	{"lo_truncate*", FN_WRITE},
	{"lowrite", FN_WRITE},
	{"dblink_exec", FN_WRITE},
	{"now", FN_VOLATILE},
	{"random", FN_VOLATILE},
	{"random_normal", FN_VOLATILE},
	{"setseed", FN_VOLATILE},
	{"clock_timestamp", FN_VOLATILE},
	{"statement_timestamp", FN_VOLATILE},
	{"transaction_timestamp", FN_VOLATILE},
	{"timeofday", FN_VOLATILE},
	{"gen_random_uuid", FN_VOLATILE},
	{"uuid_generate_*", FN_VOLATILE},
	{"txid_current_if_assigned", FN_VOLATILE},
	{"txid_current_snapshot", FN_VOLATILE},
	{"pg_current_xact_id_if_assigned", FN_VOLATILE},
	{"pg_current_snapshot", FN_VOLATILE},
	{"pg_backend_pid", FN_VOLATILE},
};

static bool pattern_match(const char *pat, size_t pn, const char *s, size_t sn)
{
	if (pn > 0 && pat[pn - 1] == '*')
		return sn >= pn - 1 && strncasecmp(pat, s, pn - 1) == 0;
	return pn == sn && strncasecmp(pat, s, sn) == 0;
}

/* One write_functions entry ("name", "schema.name", "pre*") against a call. */
static bool user_fn_match(const char *e, size_t en, const char *schema, size_t sn, const char *name,
			  size_t nn)
{
	while (en > 0 && isspace((unsigned char)*e)) {
		e++;
		en--;
	}
	while (en > 0 && isspace((unsigned char)e[en - 1]))
		en--;
	if (en == 0)
		return false;
	const char *dot = memchr(e, '.', en);
	if (dot) {
		size_t esn = (size_t)(dot - e);
		/* An unqualified call may resolve to the entry's schema: match it. */
		if (sn && !(esn == sn && strncasecmp(e, schema, sn) == 0))
			return false;
		return pattern_match(dot + 1, en - esn - 1, name, nn);
	}
	return pattern_match(e, en, name, nn);
}

static bool user_write_fn(const lv_sql_opts_t *o, const char *schema, size_t sn, const char *name,
			  size_t nn)
{
	if (!o)
		return false;
	if (o->write_functions)
		for (const char *const *p = o->write_functions; *p; p++)
			if (user_fn_match(*p, strlen(*p), schema, sn, name, nn))
				return true;
	if (o->write_functions_list) {
		const char *p = o->write_functions_list;
		for (;;) {
			const char *comma = strchr(p, ',');
			size_t n = comma ? (size_t)(comma - p) : strlen(p);
			if (user_fn_match(p, n, schema, sn, name, nn))
				return true;
			if (!comma)
				break;
			p = comma + 1;
		}
	}
	return false;
}

/* Is argument i (0-based) of a FuncCall a literal true? */
static bool arg_is_true(const jdoc_t *d, uint32_t fc, int i)
{
	uint32_t args = jget(d, fc, "args");
	uint32_t a = args ? jnode(d, args)->child : 0;
	while (a && i-- > 0)
		a = jnode(d, a)->next;
	const char *tn;
	size_t tl;
	uint32_t k = jtyped(d, a, &tn, &tl);
	if (!k || !name_is(tn, tl, "A_Const"))
		return false;
	uint32_t b = jget(d, k, "boolval");
	if (b)
		return jget_bool(d, b, "boolval");
	uint32_t s = jget(d, k, "sval");
	const char *sv;
	size_t sl;
	if (s && jget_str(d, s, "sval", &sv, &sl))
		return span_eq(sv, sl, "true") || span_eq(sv, sl, "t") || span_eq(sv, sl, "on") ||
		       span_eq(sv, sl, "yes") || span_eq(sv, sl, "1");
	return false;
}

/* Applies what calling the function named by the String list `names` means. */
static void check_function(cls_t *c, uint32_t fc, uint32_t names, const wframe_t *f)
{
	const jdoc_t *d = &c->doc;
	const char *schema = "", *name = NULL, *tn, *sv;
	size_t sn = 0, nn = 0, tl, sl;
	for (uint32_t it = jnode(d, names)->child; it; it = jnode(d, it)->next) {
		uint32_t s = jtyped(d, it, &tn, &tl);
		if (!s || !jget_str(d, s, "sval", &sv, &sl))
			continue;
		if (name) {
			schema = name;
			sn = nn;
		}
		name = sv;
		nn = sl;
	}
	if (!name)
		return;

	unsigned flags = 0;
	for (size_t i = 0; i < LV_ARRAY_LEN(fn_rules); i++) {
		if (pattern_match(fn_rules[i].pattern, strlen(fn_rules[i].pattern), name, nn)) {
			flags = fn_rules[i].flags;
			break;
		}
	}
	if (user_write_fn(c->opts, schema, sn, name, nn))
		flags |= FN_WRITE;
	if (!flags)
		return;

	bool runs = !(f->flags & WF_NOEXEC);
	c->info->calls_volatile = true;
	if (flags & FN_WRITE) {
		c->info->calls_write_function = true;
		if (runs)
			c->blocks_ro = true;
	}
	if (!runs)
		return;
	if (flags & FN_SESSION_LOCK)
		add_session(c, LV_SQL_SESSION_ADVISORY_LOCK);
	if (flags & FN_UNLOCK_ALL)
		add_clear(c, LV_SQL_SESSION_BIT(LV_SQL_SESSION_ADVISORY_LOCK));
	if ((flags & FN_SET_CONFIG) && !arg_is_true(d, fc, 2))
		add_session(c, LV_SQL_SESSION_SET);
}

/* ---------------------------------------------------------------- walk */

static bool push(cls_t *c, uint32_t node, uint8_t flags, uint32_t scope)
{
	if (!node || jnode(&c->doc, node)->type < J_ARR)
		return true; /* scalars hold nothing of interest */
	if (c->n_stack == c->cap_stack) {
		size_t cap = c->cap_stack ? c->cap_stack * 2 : 256;
		wframe_t *p = lv_realloc(c->stack, cap * sizeof(*p));
		if (!p) {
			c->is_oom = true;
			return false;
		}
		c->stack = p;
		c->cap_stack = cap;
	}
	c->stack[c->n_stack].node = node;
	c->stack[c->n_stack].flags = flags;
	c->stack[c->n_stack].scope = scope;
	c->n_stack++;
	return true;
}

/* Reverses the frames pushed since `from`, so they pop in document order. */
static void reverse_from(cls_t *c, size_t from)
{
	size_t i = from, j = c->n_stack;
	while (j > i + 1) {
		wframe_t t = c->stack[i];
		c->stack[i++] = c->stack[--j];
		c->stack[j] = t;
	}
}

/* Pushes every member of obj except the keys in skip (NULL-terminated). */
static void push_members(cls_t *c, uint32_t obj, uint8_t flags, uint32_t scope,
			 const char *const *skip)
{
	size_t from = c->n_stack;
	for (uint32_t m = jnode(&c->doc, obj)->child; m; m = jnode(&c->doc, m)->next) {
		bool skipped = false;
		for (const char *const *s = skip; s && *s; s++)
			if (jkey_is(&c->doc, m, *s))
				skipped = true;
		if (!skipped)
			push(c, m, flags, scope);
	}
	reverse_from(c, from);
}

static uint32_t new_scope(cls_t *c, uint32_t name, uint32_t next)
{
	if (c->n_scopes == c->cap_scopes) {
		uint32_t cap = c->cap_scopes ? c->cap_scopes * 2 : 16;
		scope_t *p = lv_realloc(c->scopes, cap * sizeof(*p));
		if (!p) {
			c->is_oom = true;
			return next;
		}
		c->scopes = p;
		c->cap_scopes = cap;
	}
	if (c->n_scopes == 0)
		c->n_scopes = 1; /* index 0 is "no scope" */
	c->scopes[c->n_scopes].name = name;
	c->scopes[c->n_scopes].next = next;
	return c->n_scopes++;
}

static bool is_dml_name(const char *n, size_t l)
{
	return name_is(n, l, "InsertStmt") || name_is(n, l, "UpdateStmt") ||
	       name_is(n, l, "DeleteStmt") || name_is(n, l, "MergeStmt");
}

/*
 * Handles stmt.withClause: pushes each CTE body with the names it may see
 * and returns the scope for the rest of the statement.
 */
static uint32_t push_with(cls_t *c, uint32_t stmt, uint8_t flags, uint32_t scope)
{
	const jdoc_t *d = &c->doc;
	uint32_t with = jget(d, stmt, "withClause");
	uint32_t ctes = jget(d, with, "ctes");
	if (!ctes)
		return scope;
	bool recursive = jget_bool(d, with, "recursive");
	uint32_t first = 0, last = scope;
	const char *tn;
	size_t tl;

	for (uint32_t it = jnode(d, ctes)->child; it; it = jnode(d, it)->next) {
		uint32_t cte = jtyped(d, it, &tn, &tl);
		uint32_t nm = jget(d, cte, "ctename");
		if (!nm || jnode(d, nm)->type != J_STR)
			continue;
		last = new_scope(c, nm, last);
		if (!first)
			first = last;
	}
	uint32_t i = 0;
	for (uint32_t it = jnode(d, ctes)->child; it; it = jnode(d, it)->next) {
		uint32_t cte = jtyped(d, it, &tn, &tl);
		uint32_t nm = jget(d, cte, "ctename");
		if (!nm || jnode(d, nm)->type != J_STR)
			continue;
		uint32_t body_scope = recursive ? last : (i == 0 ? scope : first + i - 1);
		uint32_t q = jget(d, cte, "ctequery");
		const char *qn;
		size_t ql;
		if (jtyped(d, q, &qn, &ql) && is_dml_name(qn, ql)) {
			c->info->has_writing_cte = true;
			if (!(flags & WF_NOEXEC))
				c->blocks_ro = true;
		}
		push(c, q, flags & WF_NOEXEC, c->is_oom ? scope : body_scope);
		i++;
	}
	return c->is_oom ? scope : last;
}

static const char *const select_skip[] = {"withClause", "intoClause", "lockingClause", NULL};
static const char *const dml_skip[] = {"withClause", "relation", NULL};

static void visit_typed(cls_t *c, const char *name, size_t nl, uint32_t o, const wframe_t *f)
{
	const jdoc_t *d = &c->doc;
	uint8_t read_flags = f->flags & WF_NOEXEC;

	if (name_is(name, nl, "RangeVar")) {
		visit_rangevar(c, o, f);
	} else if (name_is(name, nl, "FuncCall")) {
		uint32_t names = jget(d, o, "funcname");
		if (names)
			check_function(c, o, names, f);
		push_members(c, o, f->flags, f->scope, NULL);
	} else if (name_is(name, nl, "SQLValueFunction")) {
		uint32_t op = jget(d, o, "op");
		if (op && jnode(d, op)->type == J_STR) {
			const char *s = d->text + jnode(d, op)->val;
			size_t l = jnode(d, op)->val_len;
			/* Time-valued ones; CURRENT_USER and friends are session facts. */
			if (starts_with(s, l, "SVFOP_CURRENT_TIME") ||
			    starts_with(s, l, "SVFOP_CURRENT_DATE") ||
			    starts_with(s, l, "SVFOP_LOCALTIME"))
				c->info->calls_volatile = true;
		}
	} else if (name_is(name, nl, "SelectStmt")) {
		uint32_t scope = push_with(c, o, f->flags, f->scope);
		uint32_t into = jget(d, o, "intoClause");
		if (into) {
			/* A new table: never a CTE reference, so no CTE scope. */
			c->info->has_select_into = true;
			if (!(f->flags & WF_NOEXEC))
				c->blocks_ro = true;
			push(c, into, read_flags | WF_WRITE, 0);
		}
		if (jget(d, o, "lockingClause")) {
			/* Its lockedRels name FROM items, not tables: not walked. */
			c->info->has_locking_clause = true;
			if (!(f->flags & WF_NOEXEC))
				c->blocks_ro = true;
		}
		push_members(c, o, read_flags, scope, select_skip);
	} else if (is_dml_name(name, nl)) {
		uint32_t scope = push_with(c, o, f->flags, f->scope);
		/* PostgreSQL never resolves a DML target to a CTE: no CTE scope. */
		push(c, jget(d, o, "relation"), read_flags | WF_WRITE, 0);
		push_members(c, o, read_flags, scope, dml_skip);
	} else {
		if (name_is(name, nl, "SubLink"))
			c->n_sublinks++;
		push_members(c, o, f->flags, f->scope, NULL);
	}
}

static void visit(cls_t *c, const wframe_t *f)
{
	const jdoc_t *d = &c->doc;
	const jnode_t *n = jnode(d, f->node);
	if (n->type == J_ARR) {
		size_t from = c->n_stack;
		for (uint32_t it = n->child; it; it = jnode(d, it)->next)
			push(c, it, f->flags, f->scope);
		reverse_from(c, from);
		return;
	}
	const char *name;
	size_t nl;
	uint32_t inner = jtyped(d, f->node, &name, &nl);
	if (inner) {
		visit_typed(c, name, nl, inner, f);
	} else if (jget(d, f->node, "relname") && jget(d, f->node, "relpersistence")) {
		visit_rangevar(c, f->node, f); /* an inline RangeVar field */
	} else {
		push_members(c, f->node, f->flags, f->scope, NULL);
	}
}

/* Walks the subtree at node with the given mode. */
static void walk(cls_t *c, uint32_t node, uint8_t flags)
{
	c->n_stack = 0;
	if (!push(c, node, flags, 0))
		return;
	while (c->n_stack > 0 && !c->is_oom) {
		wframe_t f = c->stack[--c->n_stack];
		visit(c, &f);
	}
}

/* ---------------------------------------------------------------- statements */

static void copy_lower(char *dst, size_t cap, const char *s, size_t n)
{
	size_t k = LV_MIN(n, cap - 1);
	for (size_t i = 0; i < k; i++)
		dst[i] = (char)tolower((unsigned char)s[i]);
	dst[k] = '\0';
}

/* The DefElem list of BEGIN/START/SET TRANSACTION into the txn_* fields. */
static void txn_options(cls_t *c, uint32_t list)
{
	const jdoc_t *d = &c->doc;
	lv_sql_info_t *in = c->info;
	const char *tn, *dn, *sv;
	size_t tl, dl, sl;
	if (!list)
		return;
	for (uint32_t it = jnode(d, list)->child; it; it = jnode(d, it)->next) {
		uint32_t de = jtyped(d, it, &tn, &tl);
		if (!de || !jget_str(d, de, "defname", &dn, &dl))
			continue;
		uint32_t ac = jtyped(d, jget(d, de, "arg"), &tn, &tl);
		uint32_t iv = jget(d, ac, "ival");
		bool on = jget_num(d, iv, "ival", 0) != 0;
		if (span_eq(dn, dl, "transaction_read_only")) {
			in->txn_read_only = on;
			in->txn_read_write = !on;
		} else if (span_eq(dn, dl, "transaction_deferrable")) {
			in->txn_deferrable = on;
		} else if (span_eq(dn, dl, "transaction_isolation") &&
			   jget_str(d, jget(d, ac, "sval"), "sval", &sv, &sl)) {
			if (span_eq(sv, sl, "read uncommitted"))
				in->txn_isolation = LV_SQL_ISO_READ_UNCOMMITTED;
			else if (span_eq(sv, sl, "read committed"))
				in->txn_isolation = LV_SQL_ISO_READ_COMMITTED;
			else if (span_eq(sv, sl, "repeatable read"))
				in->txn_isolation = LV_SQL_ISO_REPEATABLE_READ;
			else if (span_eq(sv, sl, "serializable"))
				in->txn_isolation = LV_SQL_ISO_SERIALIZABLE;
		}
	}
}

static lv_sql_kind_t transaction_kind(cls_t *c, uint32_t o)
{
	static const struct {
		const char *name;
		lv_sql_kind_t kind;
	} map[] = {
		{"TRANS_STMT_BEGIN", LV_SQL_BEGIN},
		{"TRANS_STMT_START", LV_SQL_START},
		{"TRANS_STMT_COMMIT", LV_SQL_COMMIT},
		{"TRANS_STMT_ROLLBACK", LV_SQL_ROLLBACK},
		{"TRANS_STMT_SAVEPOINT", LV_SQL_SAVEPOINT},
		{"TRANS_STMT_RELEASE", LV_SQL_RELEASE},
		{"TRANS_STMT_ROLLBACK_TO", LV_SQL_ROLLBACK_TO},
		{"TRANS_STMT_PREPARE", LV_SQL_PREPARE_TXN},
		{"TRANS_STMT_COMMIT_PREPARED", LV_SQL_COMMIT_PREPARED},
		{"TRANS_STMT_ROLLBACK_PREPARED", LV_SQL_ROLLBACK_PREPARED},
	};
	uint32_t k = jget(&c->doc, o, "kind");
	for (size_t i = 0; i < LV_ARRAY_LEN(map); i++)
		if (jstr_is(&c->doc, k, map[i].name))
			return map[i].kind;
	return LV_SQL_OTHER;
}

/* The source text of a SET value: from its first argument to the statement's end. */
static void set_value(cls_t *c, uint32_t args)
{
	lv_sql_set_t *set = &c->info->set;
	uint32_t first = jnode(&c->doc, args)->child;
	if (!first)
		return;
	long loc = jmin_location(&c->doc, first);
	if (loc < 0 || (size_t)loc >= c->stmt_end)
		return;
	size_t end = lx_significant_end(c->sql, (size_t)loc, c->stmt_end);
	size_t n = end > (size_t)loc ? end - (size_t)loc : 0;
	if (n >= sizeof(set->value)) {
		set->is_value_too_long = true;
		return;
	}
	memcpy(set->value, c->sql + loc, n);
	set->value[n] = '\0';
}

static lv_sql_kind_t variable_set(cls_t *c, uint32_t o, bool nested)
{
	const jdoc_t *d = &c->doc;
	lv_sql_info_t *in = c->info;
	uint32_t k = jget(d, o, "kind");
	const char *name = "";
	size_t nl = 0;
	bool is_local = jget_bool(d, o, "is_local");
	lv_sql_kind_t kind;

	jget_str(d, o, "name", &name, &nl);
	if (jstr_is(d, k, "VAR_RESET_ALL")) {
		kind = LV_SQL_RESET_ALL;
	} else if (jstr_is(d, k, "VAR_RESET")) {
		kind = LV_SQL_RESET;
	} else if (jstr_is(d, k, "VAR_SET_MULTI") && nl >= 11 &&
		   strncmp(name, "TRANSACTION", 11) == 0) {
		kind = LV_SQL_SET_TRANSACTION;
	} else {
		kind = is_local ? LV_SQL_SET_LOCAL : LV_SQL_SET;
	}
	if (nested)
		return kind;

	if (kind == LV_SQL_SET_TRANSACTION) {
		txn_options(c, jget(d, o, "args"));
		return kind;
	}
	if (kind == LV_SQL_SET)
		add_session(c, LV_SQL_SESSION_SET);
	if (kind == LV_SQL_RESET_ALL)
		add_clear(c, LV_SQL_SESSION_BIT(LV_SQL_SESSION_SET));
	if (!in->set.is_present) {
		lv_sql_set_t *set = &in->set;
		set->is_present = true;
		set->is_local = is_local;
		set->is_reset = kind == LV_SQL_RESET || kind == LV_SQL_RESET_ALL;
		set->is_default = jstr_is(d, k, "VAR_SET_DEFAULT");
		copy_lower(set->name, sizeof(set->name), name, nl);
		uint32_t args = jget(d, o, "args");
		if (args && !set->is_reset)
			set_value(c, args);
	}
	return kind;
}

/* Relation kinds whose DROP names tables. */
static bool drops_relation(const jdoc_t *d, uint32_t rt)
{
	return jstr_is(d, rt, "OBJECT_TABLE") || jstr_is(d, rt, "OBJECT_VIEW") ||
	       jstr_is(d, rt, "OBJECT_MATVIEW") || jstr_is(d, rt, "OBJECT_SEQUENCE") ||
	       jstr_is(d, rt, "OBJECT_FOREIGN_TABLE");
}

static void drop_tables(cls_t *c, uint32_t o)
{
	const jdoc_t *d = &c->doc;
	const char *tn, *sv;
	size_t tl, sl;
	uint32_t objs = jget(d, o, "objects");
	if (!objs || !drops_relation(d, jget(d, o, "removeType")))
		return;
	for (uint32_t it = jnode(d, objs)->child; it; it = jnode(d, it)->next) {
		uint32_t list = jtyped(d, it, &tn, &tl);
		uint32_t items = jget(d, list, "items");
		const char *part[3] = {0};
		size_t plen[3] = {0};
		int np = 0;
		if (!items)
			continue;
		for (uint32_t s = jnode(d, items)->child; s; s = jnode(d, s)->next) {
			uint32_t str = jtyped(d, s, &tn, &tl);
			if (!str || !jget_str(d, str, "sval", &sv, &sl))
				continue;
			if (np == 3) {
				part[0] = part[1];
				plen[0] = plen[1];
				part[1] = part[2];
				plen[1] = plen[2];
				np = 2;
			}
			part[np] = sv;
			plen[np] = sl;
			np++;
		}
		if (np == 1)
			add_table(c, "", 0, part[0], plen[0], -1, WF_WRITE);
		else if (np >= 2)
			add_table(c, part[np - 2], plen[np - 2], part[np - 1], plen[np - 1], -1,
				  WF_WRITE);
	}
}

/*
 * CREATE TEMP ... and CREATE ... pg_temp.x leave session state, unless
 * ON COMMIT DROP (oncommit: the statement's OnCommitAction string node).
 */
static void check_temp(cls_t *c, uint32_t rel, uint32_t oncommit)
{
	const jdoc_t *d = &c->doc;
	const char *sv;
	size_t sl;
	if (!rel)
		return;
	bool temp = jstr_is(d, jget(d, rel, "relpersistence"), "t");
	if (jget_str(d, rel, "schemaname", &sv, &sl) && starts_with(sv, sl, "pg_temp"))
		temp = true;
	if (temp && !jstr_is(d, oncommit, "ONCOMMIT_DROP"))
		add_session(c, LV_SQL_SESSION_CREATE_TEMP);
}

/* ANALYZE given and not false? Unknown spellings count as true (the safe side). */
static bool explain_analyze(const jdoc_t *d, uint32_t o)
{
	const char *tn, *dn, *sv;
	size_t tl, dl, sl;
	uint32_t opts = jget(d, o, "options");
	if (!opts)
		return false;
	for (uint32_t it = jnode(d, opts)->child; it; it = jnode(d, it)->next) {
		uint32_t de = jtyped(d, it, &tn, &tl);
		if (!de || !jget_str(d, de, "defname", &dn, &dl) || !span_eq(dn, dl, "analyze"))
			continue;
		uint32_t arg = jget(d, de, "arg");
		uint32_t a = jtyped(d, arg, &tn, &tl);
		if (!a)
			return true;
		if (name_is(tn, tl, "Integer"))
			return jget_num(d, a, "ival", 0) != 0;
		if (name_is(tn, tl, "Boolean"))
			return jget_bool(d, a, "boolval");
		if (jget_str(d, a, "sval", &sv, &sl))
			return !(span_eq(sv, sl, "false") || span_eq(sv, sl, "off") ||
				 span_eq(sv, sl, "0") || span_eq(sv, sl, "f") ||
				 span_eq(sv, sl, "no") || span_eq(sv, sl, "n"));
		return true;
	}
	return false;
}

static bool is_ddl_name(const char *n, size_t l)
{
	static const char *const prefixes[] = {
		"Create",    "Alter", "Drop", "Rename", "Comment",  "Grant",  "Define",
		"Composite", "Index", "View", "Rule",   "SecLabel", "Import", "Reassign",
	};
	for (size_t i = 0; i < LV_ARRAY_LEN(prefixes); i++)
		if (starts_with(n, l, prefixes[i]))
			return true;
	return false;
}

/*
 * Classifies one statement (the typed node stmt) and walks it. nested is set
 * for EXPLAIN's inner statement: it reports tables and flags but leaves the
 * session, SET and transaction fields alone. *ro gets the statement's own
 * read-only verdict before the walk's findings (c->blocks_ro) are applied.
 */
static lv_sql_kind_t classify_stmt(cls_t *c, uint32_t stmt, bool nested, uint8_t mode, bool *ro)
{
	const jdoc_t *d = &c->doc;
	lv_sql_info_t *in = c->info;
	const char *n;
	size_t l;
	uint32_t o = jtyped(d, stmt, &n, &l);

	*ro = false;
	if (!o)
		return LV_SQL_OTHER;

	if (name_is(n, l, "SelectStmt")) {
		bool values = jget(d, o, "valuesLists") && !jget(d, o, "targetList");
		uint32_t into = jget(d, o, "intoClause");
		if (into && !nested)
			check_temp(c, jget(d, into, "rel"), jget(d, into, "onCommit"));
		*ro = true;
		walk(c, stmt, mode);
		return values ? LV_SQL_VALUES : LV_SQL_SELECT;
	}
	if (is_dml_name(n, l)) {
		if (!nested && jget(d, o, "returningList"))
			in->has_returning = true;
		walk(c, stmt, mode);
		if (name_is(n, l, "InsertStmt"))
			return LV_SQL_INSERT;
		if (name_is(n, l, "UpdateStmt"))
			return LV_SQL_UPDATE;
		if (name_is(n, l, "DeleteStmt"))
			return LV_SQL_DELETE;
		return LV_SQL_MERGE;
	}
	if (name_is(n, l, "CopyStmt")) {
		bool from = jget_bool(d, o, "is_from");
		*ro = !from;
		walk(c, o, mode | (from ? WF_WRITE : 0));
		return from ? LV_SQL_COPY_FROM : LV_SQL_COPY_TO;
	}
	if (name_is(n, l, "ExplainStmt")) {
		bool analyze = explain_analyze(d, o);
		bool inner_ro;
		classify_stmt(c, jget(d, o, "query"), true, mode | (analyze ? 0 : WF_NOEXEC),
			      &inner_ro);
		*ro = analyze ? inner_ro : true;
		return LV_SQL_EXPLAIN;
	}
	if (name_is(n, l, "TransactionStmt")) {
		lv_sql_kind_t k = transaction_kind(c, o);
		if (!nested) {
			in->is_transaction_control = true;
			txn_options(c, jget(d, o, "options"));
			if (jget_bool(d, o, "chain"))
				in->txn_chain = true;
		}
		return k;
	}
	if (name_is(n, l, "VariableSetStmt"))
		return variable_set(c, o, nested);
	if (name_is(n, l, "VariableShowStmt")) {
		*ro = true;
		return LV_SQL_SHOW;
	}
	if (name_is(n, l, "DiscardStmt")) {
		uint32_t t = jget(d, o, "target");
		if (jstr_is(d, t, "DISCARD_ALL")) {
			if (!nested)
				add_clear(c, LV_SQL_SESSION_ALL_BITS);
			return LV_SQL_DISCARD_ALL;
		}
		if (!nested && jstr_is(d, t, "DISCARD_TEMP"))
			add_clear(c, LV_SQL_SESSION_BIT(LV_SQL_SESSION_CREATE_TEMP));
		return LV_SQL_DISCARD_OTHER;
	}
	if (name_is(n, l, "PrepareStmt")) {
		if (!nested)
			add_session(c, LV_SQL_SESSION_PREPARE);
		walk(c, jget(d, o, "query"), mode | WF_NOEXEC);
		return LV_SQL_PREPARE;
	}
	if (name_is(n, l, "ExecuteStmt")) {
		walk(c, o, mode);
		return LV_SQL_EXECUTE;
	}
	if (name_is(n, l, "DeallocateStmt")) {
		if (jget(d, o, "name"))
			return LV_SQL_DEALLOCATE;
		if (!nested)
			add_clear(c, LV_SQL_SESSION_BIT(LV_SQL_SESSION_PREPARE));
		return LV_SQL_DEALLOCATE_ALL;
	}
	if (name_is(n, l, "ListenStmt")) {
		if (!nested)
			add_session(c, LV_SQL_SESSION_LISTEN);
		return LV_SQL_LISTEN;
	}
	if (name_is(n, l, "UnlistenStmt")) {
		if (jget(d, o, "conditionname"))
			return LV_SQL_UNLISTEN;
		if (!nested)
			add_clear(c, LV_SQL_SESSION_BIT(LV_SQL_SESSION_LISTEN));
		return LV_SQL_UNLISTEN_ALL;
	}
	if (name_is(n, l, "NotifyStmt"))
		return LV_SQL_NOTIFY;
	if (name_is(n, l, "DeclareCursorStmt")) {
		/* CURSOR_OPT_HOLD is 0x20 in PostgreSQL's parsenodes.h. */
		if (!nested && (jget_num(d, o, "options", 0) & 0x20))
			add_session(c, LV_SQL_SESSION_DECLARE_WITH_HOLD);
		*ro = true;
		walk(c, jget(d, o, "query"), mode);
		return LV_SQL_DECLARE_CURSOR;
	}
	if (name_is(n, l, "FetchStmt")) {
		*ro = true;
		return LV_SQL_FETCH;
	}
	if (name_is(n, l, "ClosePortalStmt")) {
		*ro = true;
		return LV_SQL_CLOSE_CURSOR;
	}
	if (name_is(n, l, "CallStmt")) {
		walk(c, o, mode);
		uint32_t fc = jget(d, o, "funccall");
		uint32_t names = jget(d, fc, "funcname");
		if (names) {
			wframe_t f = {.node = fc, .flags = mode, .scope = 0};
			check_function(c, fc, names, &f);
		}
		return LV_SQL_CALL;
	}
	if (name_is(n, l, "DoStmt"))
		return LV_SQL_DO;
	if (name_is(n, l, "LockStmt")) {
		walk(c, o, mode);
		return LV_SQL_LOCK;
	}
	if (name_is(n, l, "VacuumStmt")) {
		walk(c, o, mode);
		return jget_bool(d, o, "is_vacuumcmd") ? LV_SQL_VACUUM : LV_SQL_ANALYZE;
	}
	if (name_is(n, l, "TruncateStmt")) {
		walk(c, o, mode | WF_WRITE);
		return LV_SQL_TRUNCATE;
	}
	if (name_is(n, l, "LoadStmt")) {
		if (!nested)
			add_session(c, LV_SQL_SESSION_LOAD);
		return LV_SQL_OTHER;
	}
	if (!nested) {
		uint32_t into = jget(d, o, "into");
		if (name_is(n, l, "CreateStmt"))
			check_temp(c, jget(d, o, "relation"), jget(d, o, "oncommit"));
		else if (name_is(n, l, "ViewStmt"))
			check_temp(c, jget(d, o, "view"), 0);
		else if (name_is(n, l, "CreateSeqStmt"))
			check_temp(c, jget(d, o, "sequence"), 0);
		else if (name_is(n, l, "CreateTableAsStmt"))
			check_temp(c, jget(d, into, "rel"), jget(d, into, "onCommit"));
	}
	if (name_is(n, l, "DropStmt"))
		drop_tables(c, o);
	/* DDL and the rest (REFRESH, CLUSTER, REINDEX, ...): what they name is written. */
	walk(c, o, mode | WF_WRITE);
	return is_ddl_name(n, l) ? LV_SQL_DDL : LV_SQL_OTHER;
}

/* ---------------------------------------------------------------- point keys */

/*
 * Row-level keys of a single SELECT/UPDATE/DELETE/INSERT (see lv_sql_point_t).
 * Runs after the walk, on the one statement of the string, and reads only the
 * fields it needs: the statement's own keys are checked against a list of the
 * ones allowed (so a new or rare clause rules a point out rather than being
 * missed), and the walk has already counted the SubLinks. No allocation.
 */

/* The typed node's inner object if node is {"<name>": {...}}, else 0. */
static uint32_t jtyped_as(const jdoc_t *d, uint32_t node, const char *name)
{
	const char *tn;
	size_t tl;
	uint32_t o = jtyped(d, node, &tn, &tl);
	return o && name_is(tn, tl, name) ? o : 0;
}

/* Children of an array node (0 for anything else). */
static unsigned jcount(const jdoc_t *d, uint32_t arr)
{
	unsigned n = 0;
	if (!arr || jnode(d, arr)->type != J_ARR)
		return 0;
	for (uint32_t it = jnode(d, arr)->child; it; it = jnode(d, it)->next)
		n++;
	return n;
}

/* Does obj have only members named in allowed (NULL-terminated)? */
static bool only_keys(const jdoc_t *d, uint32_t obj, const char *const *allowed)
{
	for (uint32_t m = jnode(d, obj)->child; m; m = jnode(d, m)->next) {
		bool ok = false;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = jkey_is(d, m, *a);
		if (!ok)
			return false;
	}
	return true;
}

/* The sval of a {"String": {"sval": ...}} node ("" when omitted as empty). */
static bool jstring_node(const jdoc_t *d, uint32_t node, const char **s, size_t *n)
{
	uint32_t o = jtyped_as(d, node, "String");
	if (!o)
		return false;
	if (!jget_str(d, o, "sval", s, n)) {
		*s = "";
		*n = 0;
	}
	return true;
}

/* The target table: its name and the name its columns are qualified with. */
typedef struct point_rel {
	const char *schema, *rel, *alias; /* schema and alias may be NULL */
	size_t schema_len, rel_len, alias_len;
} point_rel_t;

/* Reads an inline RangeVar object; false if it has column aliases or is not one. */
static bool point_rel(const jdoc_t *d, uint32_t rv, point_rel_t *r)
{
	memset(r, 0, sizeof(*r));
	if (!rv || !jget_str(d, rv, "relname", &r->rel, &r->rel_len) || r->rel_len == 0)
		return false;
	if (!jget_str(d, rv, "schemaname", &r->schema, &r->schema_len))
		r->schema = NULL;
	uint32_t alias = jget(d, rv, "alias");
	if (alias) {
		if (jget(d, alias, "colnames"))
			return false; /* FROM t AS x(a, b) renames columns */
		if (!jget_str(d, alias, "aliasname", &r->alias, &r->alias_len))
			return false;
	}
	return true;
}

static bool span_is(const char *a, size_t an, const char *b, size_t bn)
{
	return a && an == bn && memcmp(a, b, an) == 0;
}

/* If node is a ColumnRef naming a column of r, copies the column name to out. */
static bool point_column(const jdoc_t *d, uint32_t node, const point_rel_t *r,
			 char out[LV_SQL_NAME_LEN])
{
	uint32_t cr = jtyped_as(d, node, "ColumnRef");
	uint32_t fields = jget(d, cr, "fields");
	const char *part[3];
	size_t plen[3];
	unsigned n = 0;
	if (!fields || jnode(d, fields)->type != J_ARR)
		return false;
	for (uint32_t it = jnode(d, fields)->child; it; it = jnode(d, it)->next) {
		if (n == 3 || !jstring_node(d, it, &part[n], &plen[n]))
			return false; /* too many parts, or A_Star */
		n++;
	}
	if (n == 0)
		return false;
	const char *col = part[n - 1];
	size_t cl = plen[n - 1];
	if (cl == 0 || cl >= LV_SQL_NAME_LEN)
		return false;
	if (n == 1) {
		/* A bare table name or alias that is not a column is a whole-row reference. */
		if (span_is(r->alias, r->alias_len, col, cl) ||
		    (!r->alias && span_is(r->rel, r->rel_len, col, cl)))
			return false;
	} else if (r->alias) {
		/* An alias hides the table's own name. */
		if (n != 2 || !span_is(r->alias, r->alias_len, part[0], plen[0]))
			return false;
	} else {
		if (!span_is(r->rel, r->rel_len, part[n - 2], plen[n - 2]))
			return false;
		if (n == 3 && !span_is(r->schema, r->schema_len, part[0], plen[0]))
			return false;
	}
	memcpy(out, col, cl);
	out[cl] = '\0';
	return true;
}

/* Appends text to point_values; false (and values_overflow) if it does not fit. */
static bool point_text(cls_t *c, const char *s, size_t n, lv_sql_value_t *v)
{
	lv_sql_info_t *in = c->info;
	size_t at = in->point_values_len ? in->point_values_len : 1; /* [0] is "" */
	if (at + n + 1 > LV_SQL_POINT_VALUES_LEN) {
		in->point.values_overflow = true;
		return false;
	}
	in->point_values[0] = '\0';
	memcpy(in->point_values + at, s, n);
	in->point_values[at + n] = '\0';
	v->off = (uint16_t)at;
	v->len = (uint16_t)n;
	in->point_values_len = (uint16_t)(at + n + 1);
	return true;
}

/* Canonical integer text of digits s[0..n) with a sign: no leading zeros, "0" unsigned. */
static size_t int_text(bool neg, const char *s, size_t n, char *buf, size_t cap)
{
	while (n > 1 && s[0] == '0') {
		s++;
		n--;
	}
	if (n == 1 && s[0] == '0')
		neg = false;
	if (n + 2 > cap)
		return 0;
	size_t k = 0;
	if (neg)
		buf[k++] = '-';
	memcpy(buf + k, s, n);
	return k + n;
}

static bool all_digits(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return true;
}

/*
 * libpg_query 15's JSON writes an Integer only when it is positive, so -5 and
 * 0 both come out as {"ival": {}}. For those, read the literal from the text
 * at its location: signs, parentheses, spaces and comments, then digits. The
 * parser folds the signs into the constant, so the result must be 0 or
 * negative; anything else is a shape this does not understand.
 */
static size_t int_from_source(const cls_t *c, long loc, char *buf, size_t cap)
{
	const char *s = c->sql;
	size_t i, n = c->sql_len;
	bool neg = false;
	if (loc < 0 || (size_t)loc >= n)
		return 0;
	for (i = lx_skip_blank(s, n, (size_t)loc); i < n && (s[i] == '-' || s[i] == '(');
	     i = lx_skip_blank(s, n, i + 1)) {
		if (s[i] == '-')
			neg = !neg;
	}
	size_t start = i;
	while (i < n && isdigit((unsigned char)s[i]))
		i++;
	if (i == start || (i < n && (s[i] == '.' || is_ident_char((unsigned char)s[i]))))
		return 0;
	size_t k = int_text(neg, s + start, i - start, buf, cap);
	if (k == 0)
		return 0;
	buf[k] = '\0';
	/* Positive values are in the JSON: seeing one here means a misreading. */
	if (buf[0] != '-' && !(k == 1 && buf[0] == '0'))
		return 0;
	/* An int4 constant: anything longer was an fval. */
	if (k > 11 || (k == 11 && strcmp(buf, "-2147483647") > 0))
		return 0;
	return k;
}

/* Fills v from an A_Const's inner object. */
static void point_const(cls_t *c, uint32_t ac, bool negate, lv_sql_value_t *v)
{
	const jdoc_t *d = &c->doc;
	const char *s;
	size_t n;
	char buf[48];
	uint32_t x;

	v->kind = LV_SQL_VALUE_NONE;
	if ((x = jget(d, ac, "ival"))) {
		uint32_t num = jget(d, x, "ival");
		size_t k;
		if (num && jnode(d, num)->type == J_NUM) {
			s = d->text + jnode(d, num)->val;
			n = jnode(d, num)->val_len;
			bool neg = n > 0 && s[0] == '-';
			if (neg) {
				s++;
				n--;
			}
			if (!all_digits(s, n))
				return;
			k = int_text(neg, s, n, buf, sizeof(buf));
		} else {
			k = int_from_source(c, jget_num(d, ac, "location", -1), buf, sizeof(buf));
		}
		if (k == 0)
			return;
		if (negate) {
			if (buf[0] == '-') {
				memmove(buf, buf + 1, k - 1);
				k--;
			} else if (!(k == 1 && buf[0] == '0')) {
				memmove(buf + 1, buf, k);
				buf[0] = '-';
				k++;
			}
		}
		if (point_text(c, buf, k, v))
			v->kind = LV_SQL_VALUE_INT;
	} else if ((x = jget(d, ac, "fval"))) {
		if (!jget_str(d, x, "fval", &s, &n) || n == 0 || n + 2 > sizeof(buf))
			return;
		bool neg = s[0] == '-';
		if (neg) {
			s++;
			n--;
		}
		if (negate)
			neg = !neg;
		size_t k;
		lv_sql_value_kind_t kind;
		if (all_digits(s, n)) {
			k = int_text(neg, s, n, buf, sizeof(buf));
			kind = LV_SQL_VALUE_INT;
		} else {
			k = 0;
			if (neg)
				buf[k++] = '-';
			memcpy(buf + k, s, n);
			k += n;
			kind = LV_SQL_VALUE_FLOAT;
		}
		if (k > 0 && point_text(c, buf, k, v))
			v->kind = (uint8_t)kind;
	} else if (negate) {
		return; /* -'5', -true: an expression */
	} else if ((x = jget(d, ac, "sval"))) {
		if (!jget_str(d, x, "sval", &s, &n)) {
			s = "";
			n = 0;
		}
		if (point_text(c, s, n, v))
			v->kind = LV_SQL_VALUE_STRING;
	} else if ((x = jget(d, ac, "boolval"))) {
		bool b = jget_bool(d, x, "boolval");
		if (point_text(c, b ? "true" : "false", b ? 4 : 5, v))
			v->kind = LV_SQL_VALUE_BOOL;
	} else if (jget_bool(d, ac, "isnull")) {
		v->kind = LV_SQL_VALUE_NULL;
	}
	/* bsval (B'..', X'..') and anything new: NONE. */
}

/* A plain type name: name or pg_catalog.name, no typmod, array bounds, SETOF or %TYPE. */
static bool plain_type(const jdoc_t *d, uint32_t tn, char cast[LV_SQL_POINT_CAST_LEN])
{
	static const char *const allowed[] = {"names", "typemod", "location", NULL};
	uint32_t names = jget(d, tn, "names");
	unsigned k = jcount(d, names);
	const char *s[2];
	size_t n[2];
	if (!tn || !only_keys(d, tn, allowed) || k == 0 || k > 2 ||
	    jget_num(d, tn, "typemod", -1) != -1)
		return false;
	uint32_t it = jnode(d, names)->child;
	for (unsigned i = 0; i < k; i++, it = jnode(d, it)->next)
		if (!jstring_node(d, it, &s[i], &n[i]))
			return false;
	if (k == 2 && !span_eq(s[0], n[0], "pg_catalog"))
		return false;
	if (n[k - 1] == 0 || n[k - 1] >= LV_SQL_POINT_CAST_LEN)
		return false;
	memcpy(cast, s[k - 1], n[k - 1]);
	cast[n[k - 1]] = '\0';
	return true;
}

/* Classifies an expression as a point value (kind NONE if it is not one). */
static void point_value(cls_t *c, uint32_t node, lv_sql_value_t *v)
{
	const jdoc_t *d = &c->doc;
	uint32_t o;
	memset(v, 0, sizeof(*v));
	if ((o = jtyped_as(d, node, "TypeCast"))) {
		if (!plain_type(d, jget(d, o, "typeName"), v->cast)) {
			v->cast[0] = '\0';
			return;
		}
		node = jget(d, o, "arg");
	}
	if ((o = jtyped_as(d, node, "ParamRef"))) {
		long p = jget_num(d, o, "number", 0);
		if (p >= 1 && p <= UINT16_MAX) {
			v->kind = LV_SQL_VALUE_PARAM;
			v->param = (uint16_t)p;
		}
	} else if ((o = jtyped_as(d, node, "A_Const"))) {
		point_const(c, o, false, v);
	} else if ((o = jtyped_as(d, node, "A_Expr"))) {
		/* Unary minus on a number (the parser usually folds it already). */
		const char *op;
		size_t ol;
		uint32_t name = jget(d, o, "name");
		uint32_t ac = jtyped_as(d, jget(d, o, "rexpr"), "A_Const");
		if (ac && !jget(d, o, "lexpr") && jstr_is(d, jget(d, o, "kind"), "AEXPR_OP") &&
		    jcount(d, name) == 1 && jstring_node(d, jnode(d, name)->child, &op, &ol) &&
		    span_eq(op, ol, "-"))
			point_const(c, ac, true, v);
	}
	if (v->kind == LV_SQL_VALUE_NONE)
		v->cast[0] = '\0';
}

/* Is node `a = b` with the bare operator "="? Sets the operands. */
static bool is_equality(const jdoc_t *d, uint32_t node, uint32_t *l, uint32_t *r)
{
	uint32_t o = jtyped_as(d, node, "A_Expr");
	uint32_t name = jget(d, o, "name");
	const char *op;
	size_t ol;
	if (!o || !jstr_is(d, jget(d, o, "kind"), "AEXPR_OP") || jcount(d, name) != 1 ||
	    !jstring_node(d, jnode(d, name)->child, &op, &ol) || !span_eq(op, ol, "="))
		return false;
	*l = jget(d, o, "lexpr");
	*r = jget(d, o, "rexpr");
	return *l && *r;
}

/* Records every `col = v` conjunct of the WHERE expression node (ANDs flattened). */
static void point_where(cls_t *c, uint32_t node, const point_rel_t *r, int depth)
{
	const jdoc_t *d = &c->doc;
	lv_sql_point_t *pt = &c->info->point;
	uint32_t o, l, rr;
	if ((o = jtyped_as(d, node, "BoolExpr"))) {
		uint32_t args = jget(d, o, "args");
		if (depth > 16 || !jstr_is(d, jget(d, o, "boolop"), "AND_EXPR") || !args ||
		    jnode(d, args)->type != J_ARR)
			return; /* OR and NOT say nothing; a very deep AND is just ignored */
		for (uint32_t it = jnode(d, args)->child; it; it = jnode(d, it)->next)
			point_where(c, it, r, depth + 1);
		return;
	}
	if (!is_equality(d, node, &l, &rr))
		return;
	char col[LV_SQL_NAME_LEN];
	lv_sql_value_t v;
	if (point_column(d, l, r, col))
		point_value(c, rr, &v);
	else if (point_column(d, rr, r, col))
		point_value(c, l, &v);
	else
		return;
	if (v.kind == LV_SQL_VALUE_NONE)
		return;
	if (pt->n_cols == LV_SQL_MAX_POINT_COLS) {
		pt->cols_overflow = true;
		return;
	}
	memcpy(pt->cols[pt->n_cols], col, strlen(col) + 1);
	pt->values[0][pt->n_cols] = v;
	pt->n_cols++;
	pt->n_rows = 1;
}

/* Adds the column names of a ResTarget list (UPDATE SET, ON CONFLICT DO UPDATE SET). */
static void point_set_cols(cls_t *c, uint32_t list)
{
	const jdoc_t *d = &c->doc;
	lv_sql_point_t *pt = &c->info->point;
	const char *nm;
	size_t nl;
	if (!list || jnode(d, list)->type != J_ARR)
		return;
	for (uint32_t it = jnode(d, list)->child; it; it = jnode(d, it)->next) {
		uint32_t rt = jtyped_as(d, it, "ResTarget");
		if (!rt || !jget_str(d, rt, "name", &nm, &nl) || nl == 0 || nl >= LV_SQL_NAME_LEN) {
			pt->set_overflow = true;
			continue;
		}
		bool dup = false;
		for (unsigned i = 0; i < pt->n_set && !dup; i++)
			dup = strlen(pt->set_cols[i]) == nl && memcmp(pt->set_cols[i], nm, nl) == 0;
		if (dup)
			continue;
		if (pt->n_set == LV_SQL_MAX_POINT_COLS) {
			pt->set_overflow = true;
			continue;
		}
		memcpy(pt->set_cols[pt->n_set], nm, nl);
		pt->set_cols[pt->n_set][nl] = '\0';
		pt->n_set++;
	}
}

/* INSERT ... (cols) VALUES (...), ...: one value per column per row. */
static bool point_insert(cls_t *c, uint32_t o)
{
	static const char *const values_keys[] = {"valuesLists", "limitOption", "op", NULL};
	const jdoc_t *d = &c->doc;
	lv_sql_point_t *pt = &c->info->point;
	uint32_t cols = jget(d, o, "cols");
	unsigned n_cols = jcount(d, cols), n_rows = 0;
	const char *nm;
	size_t nl;

	if (n_cols == 0)
		return false; /* no column list: Levee does not know the column order */
	if (n_cols > LV_SQL_MAX_POINT_COLS) {
		pt->cols_overflow = true;
		return false;
	}
	unsigned i = 0;
	for (uint32_t it = jnode(d, cols)->child; it; it = jnode(d, it)->next, i++) {
		uint32_t rt = jtyped_as(d, it, "ResTarget");
		if (!rt || jget(d, rt, "indirection") || !jget_str(d, rt, "name", &nm, &nl) ||
		    nl == 0 || nl >= LV_SQL_NAME_LEN)
			return false; /* INSERT INTO t (a[1], b.c): only part of a column */
		memcpy(pt->cols[i], nm, nl);
		pt->cols[i][nl] = '\0';
	}

	uint32_t sel = jtyped_as(d, jget(d, o, "selectStmt"), "SelectStmt");
	uint32_t lists = jget(d, sel, "valuesLists");
	if (!sel || !lists || !only_keys(d, sel, values_keys) ||
	    !(jget(d, sel, "op") == 0 || jstr_is(d, jget(d, sel, "op"), "SETOP_NONE")) ||
	    !(jget(d, sel, "limitOption") == 0 ||
	      jstr_is(d, jget(d, sel, "limitOption"), "LIMIT_OPTION_DEFAULT")))
		return false; /* DEFAULT VALUES, INSERT ... SELECT */
	if (jcount(d, lists) == 0 || jcount(d, lists) > LV_SQL_MAX_POINT_ROWS)
		return false;
	for (uint32_t it = jnode(d, lists)->child; it; it = jnode(d, it)->next, n_rows++) {
		uint32_t row = jget(d, jtyped_as(d, it, "List"), "items");
		if (jcount(d, row) != n_cols)
			return false;
		unsigned k = 0;
		for (uint32_t v = jnode(d, row)->child; v; v = jnode(d, v)->next, k++)
			point_value(c, v, &pt->values[n_rows][k]);
	}
	pt->n_cols = (uint8_t)n_cols;
	pt->n_rows = (uint8_t)n_rows;
	return true;
}

/* Decides c->info->point for the single statement stmt. */
static void point_extract(cls_t *c, uint32_t stmt)
{
	static const char *const select_keys[] = {
		"targetList",   "fromClause",    "whereClause",    "groupClause", "groupDistinct",
		"havingClause", "windowClause",  "sortClause",     "limitOffset", "limitCount",
		"limitOption",  "lockingClause", "distinctClause", "op",          NULL};
	static const char *const update_keys[] = {"relation", "targetList", "whereClause",
						  "returningList", NULL};
	static const char *const delete_keys[] = {"relation", "whereClause", "returningList", NULL};
	static const char *const insert_keys[] = {
		"relation",      "cols",     "selectStmt", "onConflictClause",
		"returningList", "override", NULL};
	const jdoc_t *d = &c->doc;
	lv_sql_info_t *in = c->info;
	lv_sql_point_t *pt = &in->point;
	point_rel_t r;
	uint32_t o, where = 0;
	bool ok = false;

	if ((o = jtyped_as(d, stmt, "SelectStmt"))) {
		uint32_t from = jget(d, o, "fromClause");
		uint32_t op = jget(d, o, "op");
		ok = only_keys(d, o, select_keys) && (!op || jstr_is(d, op, "SETOP_NONE")) &&
		     jcount(d, from) == 1 &&
		     point_rel(d, jtyped_as(d, jnode(d, from)->child, "RangeVar"), &r) &&
		     in->n_read == 1 && in->n_written == 0;
		where = jget(d, o, "whereClause");
	} else if ((o = jtyped_as(d, stmt, "UpdateStmt"))) {
		point_set_cols(c, jget(d, o, "targetList"));
		ok = only_keys(d, o, update_keys) && point_rel(d, jget(d, o, "relation"), &r) &&
		     in->n_written == 1 && in->n_read == 0;
		where = jget(d, o, "whereClause");
	} else if ((o = jtyped_as(d, stmt, "DeleteStmt"))) {
		ok = only_keys(d, o, delete_keys) && point_rel(d, jget(d, o, "relation"), &r) &&
		     in->n_written == 1 && in->n_read == 0;
		where = jget(d, o, "whereClause");
	} else if ((o = jtyped_as(d, stmt, "InsertStmt"))) {
		uint32_t occ = jget(d, o, "onConflictClause");
		if (occ) {
			pt->on_conflict = true;
			if (jstr_is(d, jget(d, occ, "action"), "ONCONFLICT_UPDATE")) {
				pt->on_conflict_update = true;
				point_set_cols(c, jget(d, occ, "targetList"));
			}
		}
		ok = only_keys(d, o, insert_keys) && point_rel(d, jget(d, o, "relation"), &r) &&
		     in->n_written == 1 && in->n_read == 0 && point_insert(c, o);
	} else {
		return;
	}
	if (ok && where)
		point_where(c, where, &r, 0);
	pt->is_point = ok && c->n_sublinks == 0 && pt->n_cols > 0 && pt->n_rows > 0;
	if (!pt->is_point) {
		pt->n_cols = 0;
		pt->n_rows = 0;
		in->point_values_len = 0;
	}
}

/* ---------------------------------------------------------------- entry points */

/* Bytes of lv_sql_info_t before the point values: zeroed on every classification. */
#define INFO_HEAD_LEN offsetof(lv_sql_info_t, point.values)

/* Clears out to "nothing found" without touching the unused tails of the arrays. */
static void info_reset(lv_sql_info_t *out)
{
	memset(out, 0, INFO_HEAD_LEN);
	out->point_values[0] = '\0';
	out->names[0] = '\0';
}

static void set_unparsable(lv_sql_info_t *out, const char *msg, int pos)
{
	out->kind = LV_SQL_UNPARSABLE;
	out->is_read_only = false;
	out->n_statements = 0;
	out->error_pos = pos;
	snprintf(out->error, sizeof(out->error), "%s", msg ? msg : "unparsable");
}

static void cls_cleanup(cls_t *c)
{
	lv_free(c->doc.nodes);
	lv_free(c->stack);
	lv_free(c->scopes);
}

/* Walks every statement of the parse tree in c->doc. Returns 0 or LV_ENOMEM/LV_EPROTO. */
static int classify_tree(cls_t *c)
{
	const jdoc_t *d = &c->doc;
	lv_sql_info_t *in = c->info;
	uint32_t stmts = jget(d, 1, "stmts");
	bool all_ro = true;
	uint32_t first = 0;

	if (!stmts || jnode(d, stmts)->type != J_ARR)
		return LV_EPROTO;
	for (uint32_t it = jnode(d, stmts)->child; it; it = jnode(d, it)->next) {
		if (!first)
			first = jget(d, it, "stmt");
		long loc = jget_num(d, it, "stmt_location", 0);
		long len = jget_num(d, it, "stmt_len", 0);
		bool ro;
		if (loc < 0 || (size_t)loc > c->sql_len)
			loc = 0;
		c->stmt_loc = loc;
		c->stmt_end = len > 0 && (size_t)(loc + len) <= c->sql_len ? (size_t)(loc + len)
									   : c->sql_len;
		c->blocks_ro = false;
		lv_sql_kind_t k = classify_stmt(c, jget(d, it, "stmt"), false, 0, &ro);
		if (c->is_oom)
			return LV_ENOMEM;
		if (!ro || c->blocks_ro)
			all_ro = false;
		if (in->n_statements == 0)
			in->kind = k;
		if (in->n_statements < UINT16_MAX)
			in->n_statements++;
	}
	if (in->n_statements == 0)
		in->kind = LV_SQL_EMPTY;
	in->is_multi = in->n_statements > 1;
	in->is_read_only = all_ro;
	if (in->n_statements == 1)
		point_extract(c, first);
	return LV_OK;
}

int lv_sql_classify(const char *sql, size_t len, const lv_sql_opts_t *opts, lv_sql_info_t *out)
{
	if (!sql || !out)
		return LV_EINVAL;
	info_reset(out);

	const char *nul = memchr(sql, '\0', len);
	if (nul)
		len = (size_t)(nul - sql);
	hints_scan(sql, len, &out->hints);

	char *copy = lv_strndup(sql, len);
	if (!copy) {
		set_unparsable(out, "out of memory", 0);
		return LV_ENOMEM;
	}

	int rc = LV_OK;
	thread_used_parser = true;
	PgQueryParseResult pr = pg_query_parse(copy);
	if (pr.error) {
		set_unparsable(out, pr.error->message, pr.error->cursorpos);
		goto done;
	}

	cls_t c = {
		.sql = copy,
		.sql_len = len,
		.opts = opts,
		.info = out,
		.doc = {.text = pr.parse_tree, .len = strlen(pr.parse_tree)},
	};
	rc = jparse(&c.doc);
	if (rc == LV_OK)
		rc = classify_tree(&c);
	cls_cleanup(&c);
	if (rc != LV_OK) {
		lv_sql_hints_t hints = out->hints;
		info_reset(out);
		out->hints = hints;
		set_unparsable(out, rc == LV_ENOMEM ? "out of memory" : "unreadable parse tree", 0);
		if (rc != LV_ENOMEM)
			rc = LV_OK; /* reported as UNPARSABLE: never routed to a replica */
		goto done;
	}

	if (!(opts && opts->skip_fingerprint)) {
		PgQueryFingerprintResult fr = pg_query_fingerprint(copy);
		if (!fr.error)
			out->fingerprint = fr.fingerprint;
		pg_query_free_fingerprint_result(fr);
	}
done:
	pg_query_free_parse_result(pr);
	lv_free(copy);
	return rc;
}

int lv_sql_normalize(const char *sql, size_t len, char *out, size_t cap)
{
	if (!sql || !out || cap == 0)
		return LV_EINVAL;
	out[0] = '\0';
	const char *nul = memchr(sql, '\0', len);
	if (nul)
		len = (size_t)(nul - sql);
	char *copy = lv_strndup(sql, len);
	if (!copy)
		return LV_ENOMEM;
	int rc;
	thread_used_parser = true;
	PgQueryNormalizeResult nr = pg_query_normalize(copy);
	if (nr.error || !nr.normalized_query) {
		rc = LV_ESYNTAX;
	} else {
		size_t n = strlen(nr.normalized_query);
		if (n >= cap || n > INT_MAX) {
			rc = LV_ETOOBIG;
		} else {
			memcpy(out, nr.normalized_query, n + 1);
			rc = (int)n;
		}
	}
	pg_query_free_normalize_result(nr);
	lv_free(copy);
	return rc;
}

void lv_sql_thread_cleanup(void)
{
	/* pg_query_exit() on a thread that never parsed dereferences NULL. */
	if (thread_used_parser)
		pg_query_exit();
	thread_used_parser = false;
}

/* ---------------------------------------------------------------- cache */

/*
 * A hash table of singly linked chains (buckets >= capacity, a power of two)
 * plus an LRU list, most recent first. An entry is one allocation: header,
 * the packed info (info_pack()), then the text. Entries also record a hash
 * of the options they were classified with; a different option set misses.
 */
typedef struct cache_entry {
	lv_list_t lru;
	struct cache_entry *chain;
	uint64_t hash;
	uint64_t opts_hash;
	bool is_shape; /* the key is a shape (shape_of()), not a text */
	size_t text_len;
	size_t info_len;
	size_t map_len; /* shape entries of point statements: bytes of point map after the key */
	bool map_ok;    /* the map is filled in (else it waits for a text that allows it) */
	size_t bytes;
	uint64_t data[]; /* info bytes, then text bytes */
} cache_entry_t;

struct lv_sql_cache {
	cache_entry_t **buckets;
	size_t mask;
	lv_list_t lru;
	uint64_t seed;
	lv_sql_cache_stats_t stats;
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static uint64_t hash_bytes(const void *p, size_t n, uint64_t h)
{
	const unsigned char *s = p;
	h ^= (uint64_t)n * 0x9e3779b97f4a7c15ULL;
	while (n >= 8) {
		uint64_t k;
		memcpy(&k, s, 8);
		h = (h ^ mix64(k)) * 0x100000001b3ULL;
		h = (h << 29) | (h >> 35);
		s += 8;
		n -= 8;
	}
	uint64_t k = 0;
	for (size_t i = 0; i < n; i++)
		k |= (uint64_t)s[i] << (8 * i);
	return mix64(h ^ mix64(k ^ n));
}

static uint64_t opts_hash(const lv_sql_opts_t *o)
{
	uint64_t h = 0x5eed;
	if (!o)
		return h;
	h = hash_bytes(&o->skip_fingerprint, 1, h);
	if (o->write_functions)
		for (const char *const *p = o->write_functions; *p; p++)
			h = hash_bytes(*p, strlen(*p) + 1, h);
	if (o->write_functions_list)
		h = hash_bytes(o->write_functions_list, strlen(o->write_functions_list), h ^ 1);
	return h;
}

/*
 * An lv_sql_info_t is mostly empty arrays (point values, value texts, names),
 * so entries hold only the used parts: the head up to point.values, the
 * point.n_rows value rows in use, then the used bytes of point_values and
 * names. info_pack(NULL) gives the size.
 */
static size_t info_pack(const lv_sql_info_t *in, void *dst)
{
	size_t rows = (size_t)in->point.n_rows * sizeof(in->point.values[0]);
	size_t parts[4][2] = {
		{0, INFO_HEAD_LEN},
		{offsetof(lv_sql_info_t, point.values), rows},
		{offsetof(lv_sql_info_t, point_values), in->point_values_len},
		{offsetof(lv_sql_info_t, names), in->names_len},
	};
	size_t n = 0;
	for (size_t i = 0; i < 4; i++) {
		if (dst)
			memcpy((char *)dst + n, (const char *)in + parts[i][0], parts[i][1]);
		n += parts[i][1];
	}
	return n;
}

/* The reverse of info_pack(); returns the bytes read. */
static size_t info_unpack(const void *src, lv_sql_info_t *out)
{
	const char *s = src;
	memcpy(out, s, INFO_HEAD_LEN);
	size_t n = INFO_HEAD_LEN;
	size_t rows = (size_t)out->point.n_rows * sizeof(out->point.values[0]);
	memcpy(out->point.values, s + n, rows);
	n += rows;
	out->point_values[0] = '\0';
	memcpy(out->point_values, s + n, out->point_values_len);
	n += out->point_values_len;
	out->names[0] = '\0';
	memcpy(out->names, s + n, out->names_len);
	return n + out->names_len;
}

lv_sql_cache_t *lv_sql_cache_new(size_t capacity)
{
	lv_sql_cache_t *c = lv_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	size_t nb = 16;
	while (nb < capacity && nb < ((size_t)1 << 30))
		nb <<= 1;
	c->buckets = lv_calloc(nb, sizeof(*c->buckets));
	if (!c->buckets) {
		lv_free(c);
		return NULL;
	}
	c->mask = nb - 1;
	lv_list_init(&c->lru);
	/* Varies with address-space layout, so chains are hard to aim at. */
	c->seed = mix64((uint64_t)(uintptr_t)c ^ (uint64_t)(uintptr_t)&lv_sql_cache_new);
	c->stats.capacity = capacity;
	return c;
}

static void entry_unlink(lv_sql_cache_t *c, cache_entry_t *e)
{
	cache_entry_t **pp = &c->buckets[e->hash & c->mask];
	while (*pp && *pp != e)
		pp = &(*pp)->chain;
	if (*pp)
		*pp = e->chain;
	lv_list_unlink(&e->lru);
	c->stats.n_entries--;
	c->stats.bytes -= e->bytes;
}

void lv_sql_cache_free(lv_sql_cache_t *c)
{
	if (!c)
		return;
	lv_list_t *pos, *tmp;
	lv_list_for_each_safe(pos, tmp, &c->lru) {
		cache_entry_t *e = lv_container_of(pos, cache_entry_t, lru);
		lv_free(e);
	}
	lv_free(c->buckets);
	lv_free(c);
}

lv_sql_cache_stats_t lv_sql_cache_stats(const lv_sql_cache_t *c)
{
	return c->stats;
}

/* The entry for key[0..len) (a text, or a shape when is_shape) and options oh; NULL if none. */
static cache_entry_t *cache_find(lv_sql_cache_t *c, uint64_t h, uint64_t oh, bool is_shape, const char *key,
				 size_t len)
{
	for (cache_entry_t *e = c->buckets[h & c->mask]; e; e = e->chain) {
		if (e->hash != h || e->opts_hash != oh || e->is_shape != is_shape || e->text_len != len)
			continue;
		if (memcmp((const char *)e->data + e->info_len, key, len) != 0)
			continue;
		lv_list_unlink(&e->lru);
		lv_list_insert_head(&c->lru, &e->lru);
		c->stats.hits++;
		return e;
	}
	return NULL;
}

/* Remembers info under key; an entry that cannot be allocated is simply not kept. */
static void cache_insert(lv_sql_cache_t *c, uint64_t h, uint64_t oh, bool is_shape, const char *key, size_t len,
			 const lv_sql_info_t *info, const uint8_t *map, size_t map_len, bool map_ok)
{
	size_t info_len = info_pack(info, NULL);
	size_t bytes = sizeof(cache_entry_t) + info_len + len + map_len;
	cache_entry_t *e = lv_malloc(bytes);
	if (!e)
		return;
	if (c->stats.n_entries >= c->stats.capacity) {
		cache_entry_t *old = lv_container_of(c->lru.prev, cache_entry_t, lru);
		entry_unlink(c, old);
		lv_free(old);
		c->stats.evictions++;
	}
	e->hash = h;
	e->opts_hash = oh;
	e->is_shape = is_shape;
	e->text_len = len;
	e->info_len = info_len;
	e->map_len = map_len;
	e->map_ok = map_ok;
	e->bytes = bytes;
	info_pack(info, e->data);
	memcpy((char *)e->data + info_len, key, len);
	if (map_len && map_ok)
		memcpy((char *)e->data + info_len + len, map, map_len);
	e->chain = c->buckets[h & c->mask];
	c->buckets[h & c->mask] = e;
	lv_list_insert_head(&c->lru, &e->lru);
	c->stats.n_entries++;
	c->stats.bytes += bytes;
}

/* Cuts len at a NUL byte; false (after counting a miss) when the text is not cached. */
static bool cache_usable(lv_sql_cache_t *c, const char *sql, size_t *len)
{
	const char *nul = memchr(sql, '\0', *len);
	if (nul)
		*len = (size_t)(nul - sql);
	if (*len <= LV_SQL_CACHE_MAX_TEXT && c->stats.capacity > 0)
		return true;
	c->stats.misses++;
	if (*len > LV_SQL_CACHE_MAX_TEXT)
		c->stats.bypassed++;
	return false;
}

int lv_sql_cache_classify(lv_sql_cache_t *c, const char *sql, size_t len, const lv_sql_opts_t *opts,
			  lv_sql_info_t *out)
{
	if (!c || !sql || !out)
		return LV_EINVAL;
	if (!cache_usable(c, sql, &len))
		return lv_sql_classify(sql, len, opts, out);
	uint64_t h = hash_bytes(sql, len, c->seed);
	uint64_t oh = opts_hash(opts);
	cache_entry_t *e = cache_find(c, h, oh, false, sql, len);
	if (e) {
		info_unpack(e->data, out);
		return LV_OK;
	}
	c->stats.misses++;
	int rc = lv_sql_classify(sql, len, opts, out);
	if (rc == LV_OK)
		cache_insert(c, h, oh, false, sql, len, out, NULL, 0, false);
	return rc;
}

/*
 * Shapes. The shape of a text is the text with every numeric constant
 * replaced by SHAPE_NUM and every string constant by SHAPE_STR, so that
 * `... WHERE aid = 17` and `... WHERE aid = 42` share one. Two texts of one
 * shape must lex into the same tokens but for the constants' values, so
 * shape_of() gives up (returns 0) on anything whose lexing could depend on a
 * setting or on more context than it tracks: a backslash
 * (standard_conforming_strings), a dollar quote, a prefixed string (E'', B'',
 * X'', N'', U&''), a control byte (which also keeps the two placeholders out
 * of real text), a number touching a dot, a letter or a digit, and an
 * unterminated quote or comment. Comments become one space, as for the
 * lexer; *commented tells that there were some, since hints live there.
 */
#define SHAPE_NUM '\x01'
#define SHAPE_STR '\x02'
#define SHAPE_MAX 4096
#define SHAPE_MAX_LITS 64

/* The constants of a shaped text, in order: where each is, and which kind. */
typedef struct shape_lits {
	unsigned n; /* found; only the first SHAPE_MAX_LITS are listed */
	uint32_t off[SHAPE_MAX_LITS], len[SHAPE_MAX_LITS]; /* strings with their quotes */
	char kind[SHAPE_MAX_LITS];                         /* SHAPE_NUM or SHAPE_STR */
} shape_lits_t;

static void shape_lit(shape_lits_t *l, size_t off, size_t len, char kind)
{
	if (l->n < SHAPE_MAX_LITS) {
		l->off[l->n] = (uint32_t)off;
		l->len[l->n] = (uint32_t)len;
		l->kind[l->n] = kind;
	}
	l->n++;
}

static size_t shape_of(const char *s, size_t n, char *out, size_t cap, bool *commented, shape_lits_t *lits)
{
	size_t o = 0, i = 0;
	bool in_word = false; /* s[i - 1] continues an identifier or keyword */
	*commented = false;
	lits->n = 0;
	while (i < n) {
		unsigned char ch = (unsigned char)s[i];
		if (o >= cap || (ch < 0x20 && !isspace(ch)) || ch == '\\')
			return 0;
		bool comment = (ch == '-' || ch == '/') && i + 1 < n && s[i + 1] == (ch == '-' ? '-' : '*');
		if (comment || ch == '"' || ch == '\'') {
			/* Prefixed strings (U&'', E'', B'', X'', N'') lex differently: not shaped. */
			if (ch == '\'' && i > 0 &&
			    (s[i - 1] == '&' || (in_word && strchr("EeBbXxNn", s[i - 1]) &&
						 (i < 2 || !is_ident_char((unsigned char)s[i - 2])))))
				return 0;
			size_t at = i;
			lx_tok_t t;
			lx_next(s, n, &i, &t);
			if (t.is_unterminated)
				return 0;
			if (comment) { /* one space, as for PostgreSQL's lexer */
				out[o++] = ' ';
				*commented = true;
			} else if (ch == '"') { /* a quoted identifier, kept as written */
				if (o + (i - at) > cap)
					return 0;
				memcpy(out + o, s + at, i - at);
				o += i - at;
			} else {
				if (memchr(s + at, '\\', i - at))
					return 0;
				out[o++] = SHAPE_STR;
				shape_lit(lits, at, i - at, SHAPE_STR);
			}
			in_word = false;
			continue;
		}
		if (ch == '$' && !in_word) { /* $n is kept; $tag$ quotes are not handled */
			size_t j = i + 1;
			while (j < n && isdigit((unsigned char)s[j]))
				j++;
			if (j == i + 1 || (j < n && is_ident_char((unsigned char)s[j])) || o + (j - i) > cap)
				return 0;
			memcpy(out + o, s + i, j - i);
			o += j - i;
			i = j;
			continue;
		}
		if (ch == '.' && i + 1 < n && isdigit((unsigned char)s[i + 1]))
			return 0;
		if (isdigit(ch) && !in_word) {
			size_t j = i;
			while (j < n && isdigit((unsigned char)s[j]))
				j++;
			if (j < n && s[j] == '.') {
				j++;
				while (j < n && isdigit((unsigned char)s[j]))
					j++;
			}
			if (j < n && (s[j] == 'e' || s[j] == 'E')) {
				size_t k = j + 1;
				if (k < n && (s[k] == '+' || s[k] == '-'))
					k++;
				if (k >= n || !isdigit((unsigned char)s[k]))
					return 0;
				while (k < n && isdigit((unsigned char)s[k]))
					k++;
				j = k;
			}
			if (j < n && (is_ident_char((unsigned char)s[j]) || s[j] == '.'))
				return 0;
			out[o++] = SHAPE_NUM;
			shape_lit(lits, i, j - i, SHAPE_NUM);
			i = j;
			continue;
		}
		out[o++] = (char)ch;
		in_word = is_ident_char(ch);
		i++;
	}
	return o;
}

/*
 * Whether a classification may stand for every text of its shape: one
 * statement of a kind whose fields below cannot depend on a constant. Calls
 * to writing functions (nextval('seq'), set_config(.., .., 'off')), SET and
 * anything touching session state are left out, as are kinds that take
 * options as constants (EXPLAIN (ANALYZE 1), VACUUM, COPY).
 */
static bool shape_may_share(const lv_sql_info_t *in)
{
	switch (in->kind) {
	case LV_SQL_SELECT:
	case LV_SQL_VALUES:
	case LV_SQL_INSERT:
	case LV_SQL_UPDATE:
	case LV_SQL_DELETE:
	case LV_SQL_MERGE:
	case LV_SQL_BEGIN:
	case LV_SQL_START:
	case LV_SQL_COMMIT:
	case LV_SQL_ROLLBACK:
		break;
	default:
		return false;
	}
	return !in->is_multi && !in->calls_write_function && !in->set.is_present && !in->creates_session_state &&
	       !in->clears_session_state;
}

/* What a shape entry cannot vouch for: the constants' values. */
static void shape_forget_values(lv_sql_info_t *in)
{
	memset(&in->point, 0, offsetof(lv_sql_point_t, values));
	in->point_values_len = 0;
	in->point_values[0] = '\0';
}

/*
 * Point maps. A shape entry can give the point values of any text of its
 * shape when each value that is a constant came from one constant of the
 * text that made the entry, found unambiguously: the map says which
 * (MAP_NEG: under a unary minus, which PostgreSQL folds into the constant).
 * MAP_NONE values (parameters, NULL, booleans, expressions) are the same
 * for every text of the shape and are kept as stored.
 */
#define MAP_NONE 0xff
#define MAP_NEG 0x80

/*
 * Writes constant i of sql as the classifier writes such a value: integers
 * without leading zeros, other numbers as written, strings unquoted with ''
 * undone; neg puts a minus in front. Returns the length, or -1 when it does
 * not fit or cannot be told apart (a negated zero).
 */
static int lit_render(const char *sql, const shape_lits_t *l, unsigned i, bool neg, char *out, size_t cap)
{
	const char *t = sql + l->off[i];
	size_t n = l->len[i], o = 0;
	if (l->kind[i] == SHAPE_STR) {
		if (neg)
			return -1;
		for (size_t k = 1; k + 1 < n; k++) {
			if (o + 1 >= cap)
				return -1;
			out[o++] = t[k];
			if (t[k] == '\'')
				k++; /* '' is one quote */
		}
		out[o] = '\0';
		return (int)o;
	}
	bool integer = !memchr(t, '.', n) && !memchr(t, 'e', n) && !memchr(t, 'E', n);
	if (integer)
		while (n > 1 && t[0] == '0') {
			t++;
			n--;
		}
	if (neg && integer && n == 1 && t[0] == '0')
		return -1;
	if (n + 2 > cap)
		return -1;
	if (neg)
		out[o++] = '-';
	memcpy(out + o, t, n);
	o += n;
	out[o] = '\0';
	return (int)o;
}

/* Fills map[row * LV_SQL_MAX_POINT_COLS + col] for in's point values; false when one cannot be mapped. */
static bool point_map_build(const char *sql, const shape_lits_t *l, const lv_sql_info_t *in, uint8_t *map)
{
	const lv_sql_point_t *p = &in->point;
	if (!p->is_point || p->values_overflow || l->n > SHAPE_MAX_LITS)
		return false;
	char buf[LV_SQL_POINT_VALUES_LEN];
	for (unsigned r = 0; r < p->n_rows; r++)
		for (unsigned col = 0; col < p->n_cols; col++) {
			const lv_sql_value_t *v = &p->values[r][col];
			uint8_t *m = &map[r * LV_SQL_MAX_POINT_COLS + col];
			*m = MAP_NONE;
			if (v->kind != LV_SQL_VALUE_INT && v->kind != LV_SQL_VALUE_FLOAT &&
			    v->kind != LV_SQL_VALUE_STRING)
				continue;
			char want = v->kind == LV_SQL_VALUE_STRING ? SHAPE_STR : SHAPE_NUM;
			const char *text = in->point_values + v->off;
			int found = 0;
			for (unsigned i = 0; i < l->n; i++)
				for (int neg = 0; neg <= 1 && l->kind[i] == want; neg++) {
					int k = lit_render(sql, l, i, neg, buf, sizeof(buf));
					if (k == (int)v->len && memcmp(buf, text, v->len) == 0) {
						*m = (uint8_t)(i | (neg ? MAP_NEG : 0));
						found++;
					}
				}
			if (found != 1)
				return false;
		}
	return true;
}

/* Rewrites out's point values for sql from the map; false when a value does not fit. */
static bool point_map_apply(const char *sql, const shape_lits_t *l, const uint8_t *map, lv_sql_info_t *out)
{
	lv_sql_point_t *p = &out->point;
	char vals[LV_SQL_POINT_VALUES_LEN];
	size_t used = 0;
	for (unsigned r = 0; r < p->n_rows; r++)
		for (unsigned col = 0; col < p->n_cols; col++) {
			lv_sql_value_t *v = &p->values[r][col];
			uint8_t m = map[r * LV_SQL_MAX_POINT_COLS + col];
			int k;
			if (m == MAP_NONE) {
				if ((size_t)v->off + v->len >= LV_SQL_POINT_VALUES_LEN ||
				    used + v->len + 1 > sizeof(vals))
					return false;
				memcpy(vals + used, out->point_values + v->off, v->len);
				vals[used + v->len] = '\0';
				k = (int)v->len;
			} else {
				unsigned i = m & ~MAP_NEG;
				if (i >= l->n || i >= SHAPE_MAX_LITS)
					return false;
				k = lit_render(sql, l, i, (m & MAP_NEG) != 0, vals + used, sizeof(vals) - used);
				if (k < 0)
					return false;
			}
			v->off = (uint16_t)used;
			v->len = (uint16_t)k;
			used += (size_t)k + 1;
		}
	memcpy(out->point_values, vals, used);
	out->point_values_len = (uint16_t)used;
	return true;
}

int lv_sql_cache_classify_shape(lv_sql_cache_t *c, const char *sql, size_t len, const lv_sql_opts_t *opts,
				bool want_points, lv_sql_info_t *out)
{
	if (!c || !sql || !out)
		return LV_EINVAL;
	char shape[SHAPE_MAX];
	static _Thread_local shape_lits_t lits; /* 800 bytes: kept off the worker's stack */
	size_t slen = 0;
	bool commented = false;
	if (c->stats.capacity > 0) {
		const char *nul = memchr(sql, '\0', len);
		if (nul)
			len = (size_t)(nul - sql);
		slen = shape_of(sql, len, shape, sizeof(shape), &commented, &lits);
	}
	if (slen == 0) {
		int rc = lv_sql_cache_classify(c, sql, len, opts, out);
		if (rc == LV_OK && !want_points)
			shape_forget_values(out);
		return rc;
	}
	uint64_t h = hash_bytes(shape, slen, c->seed ^ 0x5a);
	uint64_t oh = opts_hash(opts);
	cache_entry_t *e = cache_find(c, h, oh, true, shape, slen);
	if (e) {
		info_unpack(e->data, out);
		/* The entry's hints are those of the text that made it: take this one's. */
		memset(&out->hints, 0, sizeof(out->hints));
		if (commented)
			hints_scan(sql, len, &out->hints);
		if (!want_points) {
			shape_forget_values(out);
			return LV_OK;
		}
		uint8_t *map = (uint8_t *)e->data + e->info_len + e->text_len;
		if (e->map_ok && point_map_apply(sql, &lits, map, out))
			return LV_OK;
		if (!out->point.is_point)
			return LV_OK; /* no values to find: the shape said all */
		/* Answered by the parser after all (not cached by text: an insert could evict e). */
		c->stats.hits--;
		c->stats.misses++;
		int rc = lv_sql_classify(sql, len, opts, out);
		/* The text that made the entry had constants the map could not tell apart
		 * (a = 1 AND b = 1): this one may allow it. The entry stays where it is. */
		if (rc == LV_OK && !e->map_ok && e->map_len == (size_t)out->point.n_rows * LV_SQL_MAX_POINT_COLS &&
		    point_map_build(sql, &lits, out, map))
			e->map_ok = true;
		return rc;
	}
	c->stats.misses++;
	int rc = lv_sql_classify(sql, len, opts, out);
	if (rc != LV_OK)
		return rc;
	if (shape_may_share(out)) {
		/* Values the map cannot find again stay in the entry unused: such texts ask the parser. */
		static _Thread_local uint8_t map[LV_SQL_MAX_POINT_ROWS * LV_SQL_MAX_POINT_COLS];
		bool mapped = out->point.is_point && point_map_build(sql, &lits, out, map);
		cache_insert(c, h, oh, true, shape, slen, out, map,
			     out->point.is_point ? (size_t)out->point.n_rows * LV_SQL_MAX_POINT_COLS : 0, mapped);
	}
	if (!want_points)
		shape_forget_values(out);
	return LV_OK;
}

const char *lv_sql_first_word(const char *sql, size_t n, size_t *len)
{
	/* Block comments nest, as in PostgreSQL: the lexer skips them whole. */
	size_t i = lx_skip_blank(sql, n, 0);
	size_t w = i;
	while (i < n && isalpha((unsigned char)sql[i]))
		i++;
	*len = i - w;
	return sql + w;
}

bool lv_sql_mentions_levee(const char *sql, size_t len)
{
	/* Hints are "levee:word": look at the colons, which are rare outside casts. */
	const char *p = sql, *end = sql + len;
	while (p < end) {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		if (!colon)
			return false;
		if (colon - sql >= 5 && strncasecmp(colon - 5, "levee", 5) == 0)
			return true;
		p = colon + 1;
	}
	return false;
}
