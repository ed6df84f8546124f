/* SPDX-License-Identifier: ISC */
/*
 * Shared between the files of src/config/ and not part of config.h: the row
 * type of the settings tables, the typed value parsers and renderers, the
 * host:port parser, and the loader state that config.c drives while
 * config_dbs.c, config_rules.c and auth_file.c fill in their parts.
 *
 * Five tables describe every setting Levee reads:
 *   lv__keys[]             the fixed sections [levee], [pool], [routing], [tls], [cache],
 *                          [queue]; fields of lv_config_t
 *   lv__db_keys[]          the keys of a [database NAME] section; fields of lv_cfg_db_t
 *   lv__user_keys[]        the keys of a [user NAME] section; fields of lv_cfg_user_t
 *   lv__cache_rule_keys[]  the keys of a [cache.rule NAME] section; lv_cfg_cache_rule_t
 *   lv__queue_rule_keys[]  the keys of a [queue.rule NAME] section; lv_cfg_queue_rule_t
 * A row names its field by offset and size, so one generic setter fills any
 * of the five structs. tools/check-config-docs.sh reads the rows as text:
 * keep each row's macro, section and key on the row's first line.
 */
#ifndef LEVEE_CONFIG_CONFIG_INT_H
#define LEVEE_CONFIG_CONFIG_INT_H

#include "core/lv.h"

#include "config/config.h"
#include "core/buf.h"
#include "core/status.h"

/* How a value is written and where it is stored. */
typedef enum lv__type {
	LV__T_BOOL = 0, /* true/false, yes/no, on/off, 1/0; stored as bool */
	LV__T_INT,      /* decimal integer; stored as int */
	LV__T_SIZE,     /* bytes with an optional unit B, kB, MB, GB; stored as int */
	LV__T_SIZE64,   /* the same syntax; stored as int64_t, for sizes that may pass 2 GB */
	LV__T_DURATION, /* milliseconds with an optional unit ms, s, min, h, d; stored as int64_t */
	LV__T_ENUM,     /* one name of the row's names table; stored as int */
	LV__T_STRING,   /* free text; stored as an owned char *, NULL when empty */
	LV__T_PATH,     /* a file name, made relative to the config file's directory; char * */
	LV__T_NAME,     /* an identifier of at most LV_NAME_LEN - 1 bytes; char[LV_NAME_LEN] */
	LV__T_HOST,     /* host:port; stored as lv_cfg_host_t */
	LV__T_HOSTS,    /* host:port[@weight], ...; parsed by the row's parse callback */
	LV__T_INT64,    /* decimal integer; stored as int64_t */
	LV__T_PERCENT,  /* an integer with an optional '%' ("10%", "10"); stored as int */
	LV__T_FLOAT,    /* decimal number with an optional fraction ("0.5"); stored as double */
	LV__T_TABLES,   /* comma-separated unqualified table names, lower-cased; stored as an
			 * owned char ** with its int count at the row's aux offset */
} lv__type_t;

/* Row flags. */
#define LV_CF_RELOAD 0x01u /* applied on SIGHUP or admin RELOAD; otherwise needs a restart */
#define LV_CF_SECRET 0x02u /* masked in SHOW CONFIG (for a URL, only its password) */
#define LV_CF_AUTO 0x04u   /* INT: the word "auto" is accepted and stored as 0 */
#define LV_CF_RAWMSG 0x08u /* a refused value is reported as err->msg alone, not quoted */

/* One name of an enum setting; a table ends with a NULL name. */
typedef struct lv__enum {
	const char *name;
	int value;
} lv__enum_t;

typedef struct lv__key lv__key_t;

/* Replaces the type's parser: stores value into base or fills err and returns < 0. */
typedef int (*lv__parse_fn)(const lv__key_t *k, const char *value, void *base, lv_err_t *err);
/* Extra check run after the value was stored: returns 0, or < 0 with err filled. */
typedef int (*lv__check_fn)(const lv__key_t *k, const void *base, lv_err_t *err);

/* One setting. Rows are built with the LV_KEY-style macros of each table file. */
struct lv__key {
	const char *section; /* a fixed section's name, "database", "user", "cache.rule", ... */
	const char *key;     /* the name in the file, identical to the field name */
	lv__type_t type;
	size_t offset;           /* of the field inside the table's struct */
	size_t size;             /* sizeof the field; lv__keys_check() compares it with type */
	const char *def;         /* the default, written as in a file; "" for unset */
	int64_t lo, hi;          /* inclusive bounds of numeric types (bytes, ms) */
	unsigned flags;          /* LV_CF_* */
	const char *doc;         /* one sentence; docs/config.md must contain it verbatim */
	const lv__enum_t *names; /* ENUM only */
	lv__parse_fn parse;      /* optional; replaces the type's parser */
	lv__check_fn check;      /* optional; runs after a successful parse */
	size_t aux;              /* TABLES only: offset of the int count of the char ** */
};

/*
 * The body of one row for field fld of struct stype, named key in section
 * sect; each table file wraps it in its LV_KEY-style macros. After the doc
 * sentence come optional designated initializers (.names, .parse, .check,
 * .aux).
 */
#define LV__KEY_ROW(stype, sect, key_, ty, fld, def_, lo_, hi_, flags_, doc_, ...)                \
	{                                                                                         \
		.section = (sect), .key = (key_), .type = LV__T_##ty,                             \
		.offset = offsetof(stype, fld), .size = sizeof(((stype *)0)->fld), .def = (def_), \
		.lo = (lo_), .hi = (hi_), .flags = (flags_), .doc = (doc_), __VA_ARGS__           \
	}

/* session, transaction: shared by the [pool], [database] and [user] tables. */
extern const lv__enum_t lv__pool_modes[];

extern const lv__key_t lv__keys[];
extern const size_t lv__n_keys;
extern const lv__key_t lv__db_keys[];
extern const size_t lv__n_db_keys;
extern const lv__key_t lv__user_keys[];
extern const size_t lv__n_user_keys;
extern const lv__key_t lv__cache_rule_keys[];
extern const size_t lv__n_cache_rule_keys;
extern const lv__key_t lv__queue_rule_keys[];
extern const size_t lv__n_queue_rule_keys;

/* ---- Values (config_keys.c) ---- */

/* Parses "true"/"false", "yes"/"no", "on"/"off", "1"/"0" (any case). Returns 0 or LV_EINVAL. */
int lv__parse_bool(const char *s, bool *out);
/* Parses an optionally signed decimal integer with nothing after it. 0, LV_EINVAL or LV_ERANGE. */
int lv__parse_int(const char *s, int64_t *out);
/* Parses "0", "1.5", ".25" (no sign, no exponent, locale-free). Returns 0 or LV_EINVAL. */
int lv__parse_float(const char *s, double *out);
/*
 * Steps through a comma-separated list: returns the next entry of *p with
 * blanks (space, tab) trimmed, its length in *n (0 for an empty entry), and
 * moves *p past it; NULL when the list is done. "" is one empty entry.
 */
const char *lv__list_next(const char **p, size_t *n);
/* Parses "500ms", "30s", "5min", "2h", "1d"; a plain number is milliseconds. 0 or < 0. */
int lv__parse_duration(const char *s, int64_t *ms);
/* Parses "512", "64kB", "256MB", "1GB"; a plain number is bytes. 0 or < 0. */
int lv__parse_size(const char *s, int64_t *bytes);
/* Writes ms as the largest exact unit ("10min", "1500ms", "0"). Returns buf. */
const char *lv__render_duration(int64_t ms, char *buf, size_t cap);
/* Writes bytes as the largest exact unit ("256MB"), or a plain byte count. Returns buf. */
const char *lv__render_size(int64_t bytes, char *buf, size_t cap);

/*
 * Parses value for row k and stores it into the struct at base (relative
 * PATH values are joined to dir, "" meaning the current directory). On error
 * returns < 0 with err->msg saying what was expected ("expected an integer
 * from 1 to 10000") and leaves the field unchanged. Allocates with
 * lv_xmalloc (config loading aborts on OOM).
 */
int lv__value_set(const lv__key_t *k, const char *value, const char *dir, void *base,
		  lv_err_t *err);
/* Appends the field's value as text; with mask, secrets become "********". */
bool lv__value_render(const lv__key_t *k, const void *base, bool mask, lv_buf_t *out) LV_MUSTCHECK;
/* Stores every row's default into base; aborts on a default that does not parse (a bug). */
void lv__values_default(const lv__key_t *keys, size_t n, void *base, const char *dir);
/* Frees the owned strings of every row of keys in base. */
void lv__values_free(const lv__key_t *keys, size_t n, void *base);
/* Finds the row for (section, key); section NULL matches any. NULL when absent. */
const lv__key_t *lv__key_find(const lv__key_t *keys, size_t n, const char *section,
			      const char *key);
/*
 * For entry i of a named-section array whose key lines are lines[i * n ..]
 * (n = rows of table): the line where key was set, 0 if it was not, negative
 * if its value was refused.
 */
int lv__key_line(const int *lines, const lv__key_t *table, size_t n, size_t i, const char *key);
/* Name of a type as written in docs ("integer", "duration"). */
const char *lv__type_name(lv__type_t t);
/* Counts rows whose field size does not match their type (a bug); for tests. */
size_t lv__keys_check(const lv__key_t *keys, size_t n);

/* ---- Hosts and names (config_dbs.c) ---- */

#define LV__HOST_WEIGHT 0x01u   /* "@weight" accepted (replicas) */
#define LV__HOST_WILDCARD 0x02u /* host "*" accepted (listen addresses) */
#define LV__HOST_PATH 0x04u     /* an absolute path without ":port" accepted (a unix socket) */

/*
 * Parses "host:port", "[ipv6]:port" or "/socket/dir:port", plus "@weight"
 * when flags allow. The host is stored without brackets. Returns 0, or < 0
 * with err->msg filled.
 */
int lv__host_parse(const char *s, unsigned flags, lv_cfg_host_t *h, lv_err_t *err);
/* Checks a comma-separated list of host:port entries (each trimmed). Returns 0 or < 0. */
int lv__host_list_check(const char *s, unsigned flags, lv_err_t *err);
/* True when s is 1..LV_NAME_LEN-1 bytes of letters, digits and "_.-$@". */
bool lv__name_valid(const char *s);

/* ---- Loader state (config.c) ---- */

typedef enum lv__sect {
	LV__SECT_NONE = 0,   /* before the first section header */
	LV__SECT_FIXED,      /* [levee], [pool], [routing], ...: sect_label names it */
	LV__SECT_DB,         /* [database NAME]: cfg->dbs[sect_index] */
	LV__SECT_USER,       /* [user NAME]: cfg->users[sect_index] */
	LV__SECT_CACHE_RULE, /* [cache.rule NAME]: cfg->cache_rules[sect_index] */
	LV__SECT_QUEUE_RULE, /* [queue.rule NAME]: cfg->queue_rules[sect_index] */
	LV__SECT_SKIP,       /* a bad header, already reported; its keys are ignored */
} lv__sect_t;

/* Everything one lv_config_load() call needs; lives on its stack. */
typedef struct lv__load {
	lv_config_t *cfg;
	lv_buf_t *errors; /* caller's; may be NULL */
	const char *path; /* the config file as given, for messages */
	char *dir;        /* owned: the directory part of path, "" when none */
	int line;         /* line being processed */
	int n_errors;
	lv__sect_t sect;
	char sect_label[LV_NAME_LEN + 16]; /* "pool", "database app": for messages */
	size_t sect_index;
	int *key_lines;  /* owned; lv__n_keys entries: where each fixed key was set, 0 = default */
	int *db_lines;   /* owned; lv__n_db_keys per cfg->dbs entry */
	int *user_lines; /* owned; lv__n_user_keys per cfg->users entry */
	size_t cap_dbs, cap_users;
	int *cache_rule_lines; /* owned; lv__n_cache_rule_keys per cfg->cache_rules entry */
	int *queue_rule_lines; /* owned; lv__n_queue_rule_keys per cfg->queue_rules entry */
	size_t cap_cache_rules, cap_queue_rules;
	int levee_line;   /* line of the first [levee] header, 0 when none */
	int routing_line; /* line of the first [routing] header, 0 when none */
	int n_skipped;    /* section headers refused (their keys were not read) */
} lv__load_t;

/* Appends "file:line: message\n" to the load's errors (line 0 omits ":line"). */
void lv__load_error(lv__load_t *ld, const char *file, int line, const char *fmt, ...)
	LV_PRINTF(4, 5);

/*
 * Checks the NAME of a [kind NAME] header: present, shorter than
 * LV_NAME_LEN, valid characters. noun names it in messages ("database",
 * "rule"). False, with the error reported, when the section is to be skipped.
 */
bool lv__section_name_ok(lv__load_t *ld, const char *kind, const char *noun, const char *name);
/*
 * Appends a zeroed entry of elem bytes to arr (*n entries, room for *cap)
 * and n_keys zeroed key lines for it to *lines, growing both; returns the
 * array, perhaps moved, and sets *index. Aborts on OOM, as loading does.
 */
void *lv__section_append(void *arr, size_t *n, size_t *cap, size_t elem, int **lines, size_t n_keys,
			 size_t *index) LV_MUSTCHECK;
/* Makes entry index of a [kind name] section the one the following keys go to. */
void lv__section_enter(lv__load_t *ld, lv__sect_t sect, size_t index, const char *kind,
		       const char *name);

/* Starts a [database NAME] or [user NAME] section (kind "database" or "user"). */
void lv__dbs_section(lv__load_t *ld, const char *kind, const char *name);
/* Validates every database and user, sorts both by name and reports duplicates. */
void lv__dbs_finish(lv__load_t *ld);
/* Frees cfg's databases and users. */
void lv__dbs_free(lv_config_t *cfg);

/* ---- Rule sections (config_rules.c) ---- */

/* Starts a [cache.rule NAME] or [queue.rule NAME] section (kind "cache.rule" or "queue.rule"). */
void lv__rules_section(lv__load_t *ld, const char *kind, const char *name);
/* Checks every rule (required keys, known databases, unique names); after lv__dbs_finish(). */
void lv__rules_finish(lv__load_t *ld);
/* Frees cfg's rules, their strings and compiled regexes. */
void lv__rules_free(lv_config_t *cfg);
/* Calls fn for each key of each rule, in file order, with section "cache.rule NAME". */
void lv__rules_for_each(const lv_config_t *cfg, lv_config_visit_fn fn, void *arg);

/* Reads the auth_file at path (already joined to the config's directory); line is the
 * config line that named it, for an open failure. Problems go to ld's errors. */
void lv__auth_load(lv__load_t *ld, const char *path, int line);
/* Frees cfg's auth entries. */
void lv__auth_free(lv_config_t *cfg);

#endif
