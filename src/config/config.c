/* SPDX-License-Identifier: ISC */
/*
 * Loading a configuration generation: read the file with inih, look every
 * key up in the tables (config_keys.c, config_dbs.c, config_rules.c), check values and the
 * rules that span keys, read the auth_file, and either return a complete
 * lv_config_t or NULL with every problem listed as "file:line: message".
 * Also the generation's reference count, lookups of effective values,
 * SHOW CONFIG iteration and the reload diff.
 *
 * Reading. inih calls our reader for each line, and our handler for each
 * key = value it finds; Debian's libinih is built without
 * INI_HANDLER_LINENO, so the reader counts lines, and since inih calls the
 * handler before it reads the next line, the count is the handler's line.
 * The reader also takes over what inih does not do well for us:
 *  - it strips leading whitespace, so an indented key is a key and never
 *    the continuation of the previous value (inih's multi-line values);
 *  - it handles [section] headers itself, because inih truncates section
 *    names to 49 bytes and does not report empty sections;
 *  - it reports every line that is neither a comment, a header nor
 *    key = value, where inih would only return the first one;
 *  - a key line longer than inih's 200-byte line buffer is handed to inih
 *    as the key alone, and the handler takes the value from the reader, cut
 *    by the same inline-comment rule (" ;" starts a comment).
 *
 * Lifetime. The result is immutable and reference-counted (atomic, so any
 * thread may drop its reference); lv_config_unref() frees it on the last
 * reference. Everything a generation holds is owned by it.
 */
#include "core/lv.h"

#include <ctype.h>
#include <fcntl.h>
#include <ini.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_int.h"
#include "core/mem.h"
#include "core/str.h"

/* Longest value quoted back in an error message. */
#define QUOTE_MAX 80

/* ---- Errors ---- */

void lv__load_error(lv__load_t *ld, const char *file, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ld->n_errors++;
	if (!ld->errors)
		return;
	bool ok = line > 0 ? lv_buf_printf(ld->errors, "%s:%d: %s\n", file, line, msg)
			   : lv_buf_printf(ld->errors, "%s: %s\n", file, msg);
	(void)!ok; /* out of memory: the load still fails, with fewer words */
}

/* ---- Sections and keys ---- */

/* The fixed sections come first: N_FIXED_SECTIONS of them; then the named ones. */
static const char *const section_kinds[] = {
	"levee", "pool",     "routing", "tls",        "cache",
	"queue", "database", "user",    "cache.rule", "queue.rule",
};
#define N_FIXED_SECTIONS 6

/* Does a section of this kind take a NAME ([database NAME], [cache.rule NAME])? */
static bool is_named_kind(const char *kind)
{
	for (size_t i = N_FIXED_SECTIONS; i < LV_ARRAY_LEN(section_kinds); i++)
		if (strcmp(kind, section_kinds[i]) == 0)
			return true;
	return false;
}

/* The label of where key belongs ("[pool]", "[database NAME]"), or NULL. */
static const char *home_label(const lv__key_t *k, char *buf, size_t cap)
{
	if (is_named_kind(k->section))
		snprintf(buf, cap, "[%s NAME]", k->section);
	else
		snprintf(buf, cap, "[%s]", k->section);
	return buf;
}

/* The five tables: the fixed sections, then those of the named ones. */
static const struct {
	const lv__key_t *keys;
	const size_t *n;
} tables[] = {
	{lv__keys, &lv__n_keys},
	{lv__db_keys, &lv__n_db_keys},
	{lv__user_keys, &lv__n_user_keys},
	{lv__cache_rule_keys, &lv__n_cache_rule_keys},
	{lv__queue_rule_keys, &lv__n_queue_rule_keys},
};

/* Is row k part of the section the loader is in? */
static bool in_current(const lv__load_t *ld, const lv__key_t *k)
{
	switch (ld->sect) {
	case LV__SECT_FIXED:
		return strcmp(k->section, ld->sect_label) == 0;
	case LV__SECT_DB:
		return strcmp(k->section, "database") == 0;
	case LV__SECT_USER:
		return strcmp(k->section, "user") == 0;
	case LV__SECT_CACHE_RULE:
		return strcmp(k->section, "cache.rule") == 0;
	case LV__SECT_QUEUE_RULE:
		return strcmp(k->section, "queue.rule") == 0;
	default:
		return false;
	}
}

/* Reports an unknown key with the best hint: where it belongs, or a near spelling. */
static void unknown_key(lv__load_t *ld, const char *key)
{
	char where[LV_NAME_LEN + 32];
	char homes[128] = "";
	const lv__key_t *near_here = NULL, *near_else = NULL;
	unsigned d_here = 3, d_else = 3;

	if (ld->sect == LV__SECT_NONE)
		snprintf(where, sizeof(where), "outside any section");
	else
		snprintf(where, sizeof(where), "in [%s]", ld->sect_label);

	for (size_t t = 0; t < LV_ARRAY_LEN(tables); t++) {
		for (size_t i = 0; i < *tables[t].n; i++) {
			const lv__key_t *k = &tables[t].keys[i];
			bool here = in_current(ld, k);
			if (strcmp(k->key, key) == 0 && !here) {
				char label[32];
				home_label(k, label, sizeof(label));
				if (!strstr(homes, label) &&
				    strlen(homes) + strlen(label) + 5 < sizeof(homes))
					snprintf(homes + strlen(homes),
						 sizeof(homes) - strlen(homes), "%s%s",
						 homes[0] ? " or " : "", label);
				continue;
			}
			unsigned d = lv_str_distance(key, k->key);
			/* Close enough to be a typo, and not most of a short word. */
			if (d > 2 || d * 3 > strlen(key))
				continue;
			if (here && d < d_here) {
				d_here = d;
				near_here = k;
			} else if (!here && d < d_else) {
				d_else = d;
				near_else = k;
			}
		}
	}

	char head[LV_NAME_LEN + 256];
	if (ld->sect == LV__SECT_NONE)
		snprintf(head, sizeof(head), "setting \"%s\" is %s", key, where);
	else
		snprintf(head, sizeof(head), "unknown setting \"%s\" %s", key, where);
	if (homes[0]) {
		lv__load_error(ld, ld->path, ld->line, "%s; it belongs in %s", head, homes);
	} else if (near_here) {
		lv__load_error(ld, ld->path, ld->line, "%s; did you mean \"%s\"?", head,
			       near_here->key);
	} else if (near_else) {
		char label[32];
		lv__load_error(ld, ld->path, ld->line, "%s; did you mean \"%s\" in %s?", head,
			       near_else->key, home_label(near_else, label, sizeof(label)));
	} else {
		lv__load_error(ld, ld->path, ld->line, "%s", head);
	}
}

/* Handles "key = value" in the current section. */
static void set_key(lv__load_t *ld, const char *key, const char *value)
{
	lv_config_t *cfg = ld->cfg;
	const lv__key_t *table, *k;
	size_t n;
	void *base;
	int *lines;

	switch (ld->sect) {
	case LV__SECT_SKIP:
		return; /* the bad header was reported; its keys are not */
	case LV__SECT_NONE:
		unknown_key(ld, key);
		return;
	case LV__SECT_FIXED:
		table = lv__keys;
		n = lv__n_keys;
		base = cfg;
		lines = ld->key_lines;
		break;
	case LV__SECT_DB:
		table = lv__db_keys;
		n = lv__n_db_keys;
		base = &cfg->dbs[ld->sect_index];
		lines = ld->db_lines;
		break;
	case LV__SECT_CACHE_RULE:
		table = lv__cache_rule_keys;
		n = lv__n_cache_rule_keys;
		base = &cfg->cache_rules[ld->sect_index];
		lines = ld->cache_rule_lines;
		break;
	case LV__SECT_QUEUE_RULE:
		table = lv__queue_rule_keys;
		n = lv__n_queue_rule_keys;
		base = &cfg->queue_rules[ld->sect_index];
		lines = ld->queue_rule_lines;
		break;
	case LV__SECT_USER:
	default:
		table = lv__user_keys;
		n = lv__n_user_keys;
		base = &cfg->users[ld->sect_index];
		lines = ld->user_lines;
		break;
	}
	/* The fixed sections share one table and one set of lines; a named entry has its own. */
	bool fixed = ld->sect == LV__SECT_FIXED;
	if (!fixed)
		lines += ld->sect_index * n;
	k = lv__key_find(table, n, fixed ? ld->sect_label : NULL, key);
	if (!k) {
		unknown_key(ld, key);
		return;
	}

	/* lines[] holds where each key was set; negative when its value was refused, so
	 * the rules across keys can skip it instead of piling a second error on it. */
	size_t idx = (size_t)(k - table);
	if (lines[idx]) {
		lv__load_error(ld, ld->path, ld->line,
			       "duplicate setting \"%s\" in [%s] (first set at line %d)", key,
			       ld->sect_label, abs(lines[idx]));
		return;
	}
	lines[idx] = ld->line;

	lv_err_t err = {0};
	if (lv__value_set(k, value, ld->dir, base, &err) < 0) {
		size_t vl = strlen(value);
		lines[idx] = -ld->line;
		if (k->flags & LV_CF_RAWMSG)
			lv__load_error(ld, ld->path, ld->line, "%s", err.msg);
		else
			lv__load_error(ld, ld->path, ld->line,
				       "invalid value \"%.*s%s\" for %s: %s",
				       (int)LV_MIN(vl, (size_t)QUOTE_MAX), value,
				       vl > QUOTE_MAX ? "..." : "", key, err.msg);
	}
}

bool lv__section_name_ok(lv__load_t *ld, const char *kind, const char *noun, const char *name)
{
	if (!*name) {
		lv__load_error(ld, ld->path, ld->line, "missing name in [%s]; expected [%s NAME]",
			       kind, kind);
		return false;
	}
	if (strlen(name) >= LV_NAME_LEN) {
		lv__load_error(ld, ld->path, ld->line, "%s name \"%s\" is longer than %d bytes",
			       noun, name, LV_NAME_LEN - 1);
		return false;
	}
	if (!lv__name_valid(name)) {
		lv__load_error(ld, ld->path, ld->line,
			       "invalid %s name \"%s\": use letters, digits and _ . - $ @", noun,
			       name);
		return false;
	}
	return true;
}

void *lv__section_append(void *arr, size_t *n, size_t *cap, size_t elem, int **lines, size_t n_keys,
			 size_t *index)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		arr = lv_xrealloc(arr, *cap * elem);
		*lines = lv_xrealloc(*lines, *cap * n_keys * sizeof(int));
	}
	size_t i = (*n)++;
	memset((char *)arr + i * elem, 0, elem);
	memset(*lines + i * n_keys, 0, n_keys * sizeof(int));
	*index = i;
	return arr;
}

void lv__section_enter(lv__load_t *ld, lv__sect_t sect, size_t index, const char *kind,
		       const char *name)
{
	ld->sect = sect;
	ld->sect_index = index;
	snprintf(ld->sect_label, sizeof(ld->sect_label), "%s %s", kind, name);
}

/* Handles the inside of a "[...]" header. */
static void begin_section(lv__load_t *ld, char *inner)
{
	char *name = inner;
	while (*name && !isspace((unsigned char)*name))
		name++;
	size_t kind_len = (size_t)(name - inner);
	if (*name)
		*name++ = '\0';
	name = lv_strtrim(name);

	ld->sect = LV__SECT_SKIP;
	ld->n_skipped++; /* undone below when the header is good */
	for (size_t i = 0; i < N_FIXED_SECTIONS; i++) {
		if (strcmp(inner, section_kinds[i]) != 0)
			continue;
		if (*name) {
			/* [cache rule x] for [cache.rule x]. */
			char dotted[32];
			snprintf(dotted, sizeof(dotted), "%s.rule", inner);
			if (strncmp(name, "rule", 4) == 0 && isspace((unsigned char)name[4]) &&
			    is_named_kind(dotted))
				lv__load_error(ld, ld->path, ld->line,
					       "section [%s] takes no name; did you mean [%s %s]?",
					       inner, dotted, lv_strtrim(name + 5));
			else
				lv__load_error(ld, ld->path, ld->line, "section [%s] takes no name",
					       inner);
			return;
		}
		ld->sect = LV__SECT_FIXED;
		ld->n_skipped--;
		snprintf(ld->sect_label, sizeof(ld->sect_label), "%s", inner);
		if (i == 0 && !ld->levee_line)
			ld->levee_line = ld->line;
		if (strcmp(inner, "routing") == 0 && !ld->routing_line)
			ld->routing_line = ld->line;
		return;
	}
	if (strcmp(inner, "database") == 0 || strcmp(inner, "user") == 0) {
		lv__dbs_section(ld, inner, name);
		if (ld->sect != LV__SECT_SKIP)
			ld->n_skipped--;
		return;
	}
	if (strcmp(inner, "cache.rule") == 0 || strcmp(inner, "queue.rule") == 0) {
		lv__rules_section(ld, inner, name);
		if (ld->sect != LV__SECT_SKIP)
			ld->n_skipped--;
		return;
	}

	const char *best = NULL;
	unsigned best_d = 3;
	for (size_t i = 0; i < LV_ARRAY_LEN(section_kinds); i++) {
		unsigned d = lv_str_distance(inner, section_kinds[i]);
		if (d < best_d && d * 3 <= kind_len) {
			best_d = d;
			best = section_kinds[i];
		}
	}
	const char *sep = *name ? " " : "";
	if (best && is_named_kind(best) && !*name)
		lv__load_error(ld, ld->path, ld->line,
			       "unknown section [%s]; did you mean [%s NAME]?", inner, best);
	else if (best)
		lv__load_error(ld, ld->path, ld->line,
			       "unknown section [%s%s%s]; did you mean [%s%s%s]?", inner, sep, name,
			       best, sep, name);
	else
		lv__load_error(ld, ld->path, ld->line, "unknown section [%s%s%s]", inner, sep,
			       name);
}

/* ---- Reading lines for inih ---- */

typedef struct reader {
	FILE *f;
	lv__load_t *ld;
	char *raw; /* getline's buffer (libc malloc) */
	size_t raw_cap;
	const char *stash; /* value of an over-long key line, for the handler; NULL otherwise */
} reader_t;

/* The value of "key = value" as inih cuts it: trimmed, " ;comment" removed. */
static char *value_of(char *v)
{
	bool was_space = false;
	char *p = v;
	while (*p && !(was_space && *p == ';')) {
		was_space = isspace((unsigned char)*p);
		p++;
	}
	*p = '\0';
	return lv_strtrim(v);
}

static char *empty_line(char *str)
{
	str[0] = '\n';
	str[1] = '\0';
	return str;
}

/* An ini_reader: one physical line per call, normalized as described at the top. */
static char *read_line_cb(char *str, int num, void *stream)
{
	reader_t *rd = stream;
	lv__load_t *ld = rd->ld;

	rd->stash = NULL;
	ssize_t len = getline(&rd->raw, &rd->raw_cap, rd->f);
	if (len < 0)
		return NULL;
	ld->line++;
	char *s = rd->raw;
	if (ld->line == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	s = lv_strtrim(s);

	if (*s == '\0' || *s == ';' || *s == '#')
		return empty_line(str);

	if (*s == '[') {
		char *close = strchr(s, ']');
		if (!close) {
			lv__load_error(ld, ld->path, ld->line,
				       "expected ']' at the end of the section header");
			ld->sect = LV__SECT_SKIP;
			ld->n_skipped++;
			return empty_line(str);
		}
		char *rest = close + 1;
		while (isspace((unsigned char)*rest))
			rest++;
		if (*rest && *rest != ';' && *rest != '#') {
			lv__load_error(ld, ld->path, ld->line, "unexpected text after ']'");
			ld->sect = LV__SECT_SKIP;
			ld->n_skipped++;
			return empty_line(str);
		}
		*close = '\0';
		begin_section(ld, lv_strtrim(s + 1));
		return empty_line(str);
	}

	char *eq = strchr(s, '=');
	if (!eq || memchr(s, ':', (size_t)(eq - s)) || memchr(s, ';', (size_t)(eq - s))) {
		lv__load_error(ld, ld->path, ld->line,
			       "expected \"key = value\" or a [section] header");
		return empty_line(str);
	}
	if (eq == s) {
		lv__load_error(ld, ld->path, ld->line, "missing setting name before '='");
		return empty_line(str);
	}

	size_t n = strlen(s);
	if (n + 2 <= (size_t)num) {
		memcpy(str, s, n);
		str[n] = '\n';
		str[n + 1] = '\0';
		return str;
	}
	/* Too long for inih's buffer: give it the key and keep the value here. */
	*eq = '\0';
	char *key = lv_strtrim(s);
	if (strlen(key) + 4 > (size_t)num) {
		lv__load_error(ld, ld->path, ld->line, "setting name is too long");
		return empty_line(str);
	}
	rd->stash = value_of(eq + 1);
	snprintf(str, (size_t)num, "%s=.\n", key);
	return str;
}

/* The inih handler: one call per key = value line, right after read_line_cb read it. */
static int handler_cb(void *user, const char *section, const char *name, const char *value)
{
	reader_t *rd = user;
	(void)section; /* sections are tracked by read_line_cb */
	set_key(rd->ld, name, rd->stash ? rd->stash : value);
	return 1;
}

/* ---- Rules across keys ---- */

/* Where a fixed key was set: 0 when not, negative when its value was refused. */
static int line_of(const lv__load_t *ld, const char *section, const char *key)
{
	const lv__key_t *k = lv__key_find(lv__keys, lv__n_keys, section, key);
	return k ? ld->key_lines[k - lv__keys] : 0;
}

/* Reports a set file that cannot be opened for reading (or is not a regular file). */
static void check_readable(lv__load_t *ld, const char *key, const char *path)
{
	if (!path)
		return;
	int line = line_of(ld, "tls", key);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		lv__load_error(ld, ld->path, line, "cannot read %s \"%s\": %s", key, path,
			       strerror(errno));
		return;
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode))
		lv__load_error(ld, ld->path, line, "cannot read %s \"%s\": not a regular file", key,
			       path);
	close(fd);
}

static void check_tls(lv__load_t *ld)
{
	const lv_config_t *cfg = ld->cfg;
	if (cfg->tls.client_tls_mode != LV_CLIENT_TLS_DISABLE) {
		int line = line_of(ld, "tls", "client_tls_mode");
		const char *mode =
			cfg->tls.client_tls_mode == LV_CLIENT_TLS_ALLOW ? "allow" : "require";
		if (!cfg->tls.cert_file || !cfg->tls.key_file)
			lv__load_error(ld, ld->path, line, "client_tls_mode = %s needs %s", mode,
				       cfg->tls.cert_file  ? "key_file"
				       : cfg->tls.key_file ? "cert_file"
							   : "cert_file and key_file");
		check_readable(ld, "cert_file", cfg->tls.cert_file);
		check_readable(ld, "key_file", cfg->tls.key_file);
		check_readable(ld, "ca_file", cfg->tls.ca_file);
	}
	if (cfg->tls.server_tls != LV_SERVER_TLS_DISABLE)
		check_readable(ld, "server_ca_file", cfg->tls.server_ca_file);
}

/*
 * The line for a rule between two [routing] keys: the later of the two that
 * were set, else the [routing] header. -1 when either value was refused
 * (reported already).
 */
static int routing_rule_line(const lv__load_t *ld, const char *key_a, const char *key_b)
{
	int a = line_of(ld, "routing", key_a);
	int b = line_of(ld, "routing", key_b);
	if (a < 0 || b < 0)
		return -1;
	int line = LV_MAX(a, b);
	return line ? line : ld->routing_line;
}

static void check_routing(lv__load_t *ld)
{
	const lv_config_t *cfg = ld->cfg;
	char a[32], b[32];

	if (cfg->routing.health_check_timeout_ms > cfg->routing.health_check_period_ms) {
		int line = routing_rule_line(ld, "health_check_timeout", "health_check_period");
		if (line >= 0)
			lv__load_error(
				ld, ld->path, line,
				"health_check_timeout (%s) is longer than health_check_period (%s)",
				lv__render_duration(cfg->routing.health_check_timeout_ms, a,
						    sizeof(a)),
				lv__render_duration(cfg->routing.health_check_period_ms, b,
						    sizeof(b)));
	}
	/* In time mode the timeout is the only limit; 0 would keep reads on the primary forever. */
	if (cfg->routing.read_your_writes == LV_RYW_TIME &&
	    cfg->routing.read_your_writes_timeout_ms == 0) {
		int line = routing_rule_line(ld, "read_your_writes", "read_your_writes_timeout");
		if (line >= 0)
			lv__load_error(ld, ld->path, line,
				       "read_your_writes = time needs a read_your_writes_timeout "
				       "above 0");
	}
}

static void finish(lv__load_t *ld)
{
	lv_config_t *cfg = ld->cfg;

	int min_line = line_of(ld, "pool", "min_pool_size");
	int size_line = line_of(ld, "pool", "pool_size");
	if (cfg->pool.min_pool_size > cfg->pool.pool_size && min_line >= 0 && size_line >= 0) {
		lv__load_error(ld, ld->path, min_line ? min_line : size_line,
			       "min_pool_size (%d) is larger than pool_size (%d)",
			       cfg->pool.min_pool_size, cfg->pool.pool_size);
	}
	check_routing(ld);
	check_tls(ld);
	lv__dbs_finish(ld);
	lv__rules_finish(ld);

	if (cfg->levee.auth_file) {
		lv__auth_load(ld, cfg->levee.auth_file, line_of(ld, "levee", "auth_file"));
	} else if (cfg->levee.auth_type != LV_AUTH_TRUST &&
		   line_of(ld, "levee", "auth_type") >= 0 && !ld->n_skipped) {
		/* Nobody could log in. (Not said after a refused header: its keys were lost.) */
		int line = line_of(ld, "levee", "auth_type");
		lv__load_error(
			ld, ld->path, line ? line : ld->levee_line,
			"auth_type %s%s needs auth_file; set auth_file, or auth_type = trust",
			cfg->levee.auth_type == LV_AUTH_MD5 ? "md5" : "scram-sha-256",
			line ? "" : " (the default)");
	}
}

/* ---- Load and free ---- */

static void config_free(lv_config_t *cfg)
{
	if (!cfg)
		return;
	lv__values_free(lv__keys, lv__n_keys, cfg);
	lv__dbs_free(cfg);
	lv__rules_free(cfg);
	lv__auth_free(cfg);
	lv_free(cfg->path);
	lv_free(cfg);
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return lv_xstrdup("");
	size_t n = slash == path ? 1 : (size_t)(slash - path);
	char *d = lv_xmalloc(n + 1);
	memcpy(d, path, n);
	d[n] = '\0';
	return d;
}

lv_config_t *lv_config_load(const char *path, lv_buf_t *errors)
{
	lv__load_t ld;
	memset(&ld, 0, sizeof(ld));
	ld.errors = errors;
	ld.path = path;
	ld.dir = dir_of(path);
	ld.key_lines = lv_xcalloc(lv__n_keys, sizeof(int));

	lv_config_t *cfg = lv_xcalloc(1, sizeof(*cfg));
	cfg->refcount = 1;
	cfg->generation = 1;
	cfg->path = lv_xstrdup(path);
	ld.cfg = cfg;
	lv__values_default(lv__keys, lv__n_keys, cfg, ld.dir);

	FILE *f = fopen(path, "r");
	if (!f) {
		lv__load_error(&ld, path, 0, "cannot open: %s", strerror(errno));
	} else {
		reader_t rd = {f, &ld, NULL, 0, NULL};
		int rc = ini_parse_stream(read_line_cb, &rd, handler_cb, &rd);
		if (ferror(f))
			lv__load_error(&ld, path, 0, "cannot read: %s", strerror(errno));
		else if (rc > 0 && ld.n_errors == 0)
			lv__load_error(&ld, path, rc, "syntax error");
		else if (rc < 0 && ld.n_errors == 0)
			lv__load_error(&ld, path, 0, "cannot parse (inih error %d)", rc);
		free(rd.raw); /* getline's buffer comes from libc malloc */
		fclose(f);
		finish(&ld); /* also after errors: every problem is reported in one pass */
	}

	lv_free(ld.dir);
	lv_free(ld.key_lines);
	lv_free(ld.db_lines);
	lv_free(ld.user_lines);
	lv_free(ld.cache_rule_lines);
	lv_free(ld.queue_rule_lines);
	if (ld.n_errors) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

lv_config_t *lv_config_ref(lv_config_t *cfg)
{
	__atomic_add_fetch(&cfg->refcount, 1, __ATOMIC_RELAXED);
	return cfg;
}

void lv_config_unref(lv_config_t *cfg)
{
	if (cfg && __atomic_sub_fetch(&cfg->refcount, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(cfg);
}

/* ---- Effective values ---- */

bool lv_config_list_has(const char *list, const char *name)
{
	if (!list || !name)
		return false;
	size_t nl = strlen(name), n;
	const char *p = list, *e;
	while ((e = lv__list_next(&p, &n)))
		if (n == nl && memcmp(e, name, n) == 0)
			return true;
	return false;
}

int lv_config_pool_mode(const lv_config_t *cfg, const lv_cfg_db_t *db, const char *user)
{
	const lv_cfg_user_t *u = user ? lv_config_find_user(cfg, user) : NULL;
	if (u && u->pool_mode >= 0)
		return u->pool_mode;
	if (db && db->pool_mode >= 0)
		return db->pool_mode;
	return cfg->pool.pool_mode;
}

int lv_config_pool_size(const lv_config_t *cfg, const lv_cfg_db_t *db)
{
	return db && db->pool_size >= 0 ? db->pool_size : cfg->pool.pool_size;
}

int lv_config_min_pool_size(const lv_config_t *cfg, const lv_cfg_db_t *db)
{
	return db && db->min_pool_size >= 0 ? db->min_pool_size : cfg->pool.min_pool_size;
}

int lv_config_reserve_pool_size(const lv_config_t *cfg, const lv_cfg_db_t *db)
{
	return db && db->reserve_pool_size >= 0 ? db->reserve_pool_size
						: cfg->pool.reserve_pool_size;
}

int lv_config_max_db_connections(const lv_config_t *cfg, const lv_cfg_db_t *db)
{
	return db && db->max_db_connections >= 0 ? db->max_db_connections
						 : cfg->pool.max_db_connections;
}

int lv_config_max_user_connections(const lv_config_t *cfg, const char *user)
{
	const lv_cfg_user_t *u = user ? lv_config_find_user(cfg, user) : NULL;
	return u && u->max_user_connections >= 0 ? u->max_user_connections
						 : cfg->pool.max_user_connections;
}

/* ---- Introspection ---- */

/* Renders row k of cfg into b as a NUL-terminated string; "" on OOM. */
static const char *render(const lv__key_t *k, const lv_config_t *cfg, bool mask, lv_buf_t *b)
{
	lv_buf_reset(b);
	if (!lv__value_render(k, cfg, mask, b) || !lv_buf_put_u8(b, 0))
		return "";
	return (const char *)b->data;
}

void lv_config_for_each(const lv_config_t *cfg, lv_config_visit_fn fn, void *arg)
{
	lv_buf_t b;
	lv_buf_init(&b);
	for (size_t i = 0; i < lv__n_keys; i++) {
		const lv__key_t *k = &lv__keys[i];
		fn(arg, k->section, k->key, render(k, cfg, true, &b), k->flags & LV_CF_RELOAD);
	}
	lv_buf_cleanup(&b);
	lv__rules_for_each(cfg, fn, arg);
}

int lv_config_diff(const lv_config_t *old_cfg, const lv_config_t *new_cfg, lv_buf_t *warnings)
{
	lv_buf_t a, b;
	int n = 0;
	lv_buf_init(&a);
	lv_buf_init(&b);
	for (size_t i = 0; i < lv__n_keys; i++) {
		const lv__key_t *k = &lv__keys[i];
		if (k->flags & LV_CF_RELOAD)
			continue;
		if (strcmp(render(k, old_cfg, false, &a), render(k, new_cfg, false, &b)) == 0)
			continue;
		n++;
		if (warnings && !lv_buf_printf(warnings, "%s changed; restart to apply\n", k->key))
			break;
	}
	lv_buf_cleanup(&a);
	lv_buf_cleanup(&b);
	return n;
}

void lv_config_for_each_key(lv_config_key_fn fn, void *arg)
{
	for (size_t t = 0; t < LV_ARRAY_LEN(tables); t++) {
		for (size_t i = 0; i < *tables[t].n; i++) {
			const lv__key_t *k = &tables[t].keys[i];
			char section[32];
			if (t == 0)
				snprintf(section, sizeof(section), "%s", k->section);
			else
				snprintf(section, sizeof(section), "%s NAME", k->section);
			lv_config_key_info_t info = {
				.section = section,
				.key = k->key,
				.type = lv__type_name(k->type),
				.default_value = k->def,
				.doc = k->doc,
				.is_reloadable = (k->flags & LV_CF_RELOAD) != 0,
				.is_secret = (k->flags & LV_CF_SECRET) != 0,
			};
			fn(arg, &info);
		}
	}
}
