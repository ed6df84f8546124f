/* SPDX-License-Identifier: ISC */
/*
 * The named sections: [database NAME] (what clients may connect to, and
 * where it lives) and [user NAME] (per-user overrides). Each has a small key
 * table in the same row format as config_keys.c, so the generic setter fills
 * lv_cfg_db_t and lv_cfg_user_t and the docs check covers these keys too.
 *
 * Also here: the host:port parser used by primary, replicas, listen,
 * http_listen and redis, and the name rule for sections.
 *
 * Ownership: cfg->dbs and cfg->users are arrays owned by the generation,
 * grown while the file is read (lv_xrealloc: config loading aborts on OOM),
 * sorted by name in lv__dbs_finish() so lookups can bsearch. Each database
 * owns its replicas array and password. Freed by lv__dbs_free().
 */
#include "core/lv.h"

#include <ctype.h>

#include "config/config_int.h"
#include "core/mem.h"
#include "core/str.h"

/* ---- Host parsing ---- */

static bool hostname_char(int c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_';
}

static bool ipv6_char(int c)
{
	return isxdigit(c) || c == ':' || c == '.' || c == '%' || isalnum(c);
}

/* Parses the decimal number in s[0..n) into *out; false when it is not one or exceeds max. */
static bool parse_num(const char *s, size_t n, int max, int *out)
{
	int v = 0;
	if (n == 0 || n > 7)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

int lv__host_parse(const char *s, unsigned flags, lv_cfg_host_t *h, lv_err_t *err)
{
	static const char usage[] = "expected host:port, [ipv6]:port or /socket/dir:port";
	const char *host, *host_end, *port;

	memset(h, 0, sizeof(*h));
	if (s[0] == '/' && (flags & LV__HOST_PATH)) {
		/* A unix socket file: the whole value is the path. */
		if (strlen(s) >= LV_HOST_LEN)
			return lv_err_set(err, LV_EINVAL, "the path is longer than %d bytes",
					  LV_HOST_LEN - 1);
		memcpy(h->host, s, strlen(s) + 1);
		return 0;
	}

	const char *at = NULL;
	if (s[0] == '[') {
		host = s + 1;
		host_end = strchr(host, ']');
		if (!host_end || host_end[1] != ':')
			return lv_err_set(err, LV_EINVAL, "%s", usage);
		port = host_end + 2;
		for (const char *p = host; p < host_end; p++)
			if (!ipv6_char((unsigned char)*p))
				return lv_err_set(err, LV_EINVAL, "invalid IPv6 address");
		if (!memchr(host, ':', (size_t)(host_end - host)))
			return lv_err_set(err, LV_EINVAL, "invalid IPv6 address");
	} else {
		/* The port follows the last ':' (a socket directory may itself hold one). */
		at = strrchr(s, '@');
		const char *colon = NULL;
		for (const char *p = s; *p && (!at || p < at); p++)
			if (*p == ':')
				colon = p;
		if (!colon)
			return lv_err_set(err, LV_EINVAL, "%s", usage);
		host = s;
		host_end = colon;
		port = colon + 1;
		if (s[0] != '/') {
			if (memchr(host, ':', (size_t)(host_end - host)))
				return lv_err_set(
					err, LV_EINVAL,
					"an IPv6 address needs brackets, e.g. [::1]:5432");
			bool wildcard = host_end - host == 1 && host[0] == '*';
			if (wildcard && !(flags & LV__HOST_WILDCARD))
				return lv_err_set(err, LV_EINVAL,
						  "\"*\" is only allowed in listen");
			for (const char *p = host; p < host_end && !wildcard; p++)
				if (!hostname_char((unsigned char)*p))
					return lv_err_set(err, LV_EINVAL, "invalid host name");
		}
	}
	if (host_end == host)
		return lv_err_set(err, LV_EINVAL, "%s", usage);
	if ((size_t)(host_end - host) >= LV_HOST_LEN)
		return lv_err_set(err, LV_EINVAL, "the host is longer than %d bytes",
				  LV_HOST_LEN - 1);

	if (!at)
		at = strchr(port, '@');
	size_t port_len = at ? (size_t)(at - port) : strlen(port);
	if (port_len == 0)
		return lv_err_set(err, LV_EINVAL, "%s", usage);
	for (size_t i = 0; i < port_len; i++)
		if (!isdigit((unsigned char)port[i]))
			return lv_err_set(err, LV_EINVAL, "%s", usage);
	if (!parse_num(port, port_len, 65535, &h->port) || h->port == 0)
		return lv_err_set(err, LV_EINVAL, "the port must be from 1 to 65535");

	if (at) {
		if (!(flags & LV__HOST_WEIGHT))
			return lv_err_set(err, LV_EINVAL,
					  "a weight (@N) is only allowed for replicas");
		if (!parse_num(at + 1, strlen(at + 1), 1000, &h->weight) || h->weight == 0)
			return lv_err_set(err, LV_EINVAL, "the weight must be from 1 to 1000");
	} else if (flags & LV__HOST_WEIGHT) {
		h->weight = 100;
	}
	memcpy(h->host, host, (size_t)(host_end - host));
	h->host[host_end - host] = '\0';
	return 0;
}

/*
 * Calls fn for each trimmed entry of a comma-separated list (in a scratch
 * copy). Returns 0, fn's first error, or LV_EINVAL with err set for an empty entry.
 */
static int for_each_entry(const char *list, int (*fn)(void *arg, const char *entry, lv_err_t *err),
			  void *arg, lv_err_t *err)
{
	char *copy = lv_xstrdup(list);
	int rc = 0;
	char *p = copy;
	for (;;) {
		char *end = strchr(p, ',');
		if (end)
			*end = '\0';
		char *entry = lv_strtrim(p);
		if (!*entry) {
			rc = lv_err_set(err, LV_EINVAL, "the list has an empty entry");
			break;
		}
		if ((rc = fn(arg, entry, err)) < 0)
			break;
		if (!end)
			break;
		p = end + 1;
	}
	lv_free(copy);
	return rc;
}

/* Fills err for a bad list entry, quoting at most 64 bytes of it (err holds 256). */
static int entry_error(lv_err_t *err, const char *entry, const lv_err_t *sub)
{
	size_t n = strlen(entry);
	return lv_err_set(err, LV_EINVAL, "entry \"%.*s%s\": %s", (int)LV_MIN(n, (size_t)64), entry,
			  n > 64 ? "..." : "", sub->msg);
}

static int check_entry(void *arg, const char *entry, lv_err_t *err)
{
	lv_cfg_host_t h;
	lv_err_t sub;
	if (lv__host_parse(entry, *(unsigned *)arg, &h, &sub) < 0)
		return entry_error(err, entry, &sub);
	return 0;
}

int lv__host_list_check(const char *s, unsigned flags, lv_err_t *err)
{
	return for_each_entry(s, check_entry, &flags, err);
}

bool lv__name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= LV_NAME_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_.-$@", s[i]))
			return false;
	return true;
}

/* ---- Replicas ---- */

typedef struct host_vec {
	lv_cfg_host_t *v;
	int n, cap;
} host_vec_t;

static int add_replica(void *arg, const char *entry, lv_err_t *err)
{
	host_vec_t *hv = arg;
	lv_cfg_host_t h;
	lv_err_t sub;
	if (lv__host_parse(entry, LV__HOST_WEIGHT, &h, &sub) < 0)
		return entry_error(err, entry, &sub);
	if (hv->n == hv->cap) {
		hv->cap = hv->cap ? hv->cap * 2 : 4;
		hv->v = lv_xrealloc(hv->v, (size_t)hv->cap * sizeof(*hv->v));
	}
	hv->v[hv->n++] = h;
	return 0;
}

static int parse_replicas(const lv__key_t *k, const char *value, void *base, lv_err_t *err)
{
	lv_cfg_db_t *db = base;
	host_vec_t hv = {NULL, 0, 0};
	if (*value) {
		int rc = for_each_entry(value, add_replica, &hv, err);
		if (rc < 0) {
			lv_free(hv.v);
			return rc;
		}
	}
	lv_free(db->replicas);
	db->replicas = hv.v;
	db->n_replicas = hv.n;
	return 0;
}

/* ---- The [database NAME] and [user NAME] tables ---- */

static const lv__enum_t route_modes[] = {
	{"auto", LV_ROUTE_MODE_AUTO},
	{"primary", LV_ROUTE_MODE_PRIMARY},
	{"replicas", LV_ROUTE_MODE_REPLICAS},
	{NULL, 0},
};

/*
 * LV_DBKEY(key, ...) fills lv_cfg_db_t.key and LV_USERKEY(key, ...) fills
 * lv_cfg_user_t.key; the arguments are those of LV_KEY in config_keys.c. An
 * empty default means "not set": integers stay -1 (use the [pool] value).
 */
#define LV_DBKEY(key, ty, def, lo, hi, flags, doc, ...) \
	LV__KEY_ROW(lv_cfg_db_t, "database", #key, ty, key, def, lo, hi, flags, doc, __VA_ARGS__)
#define LV_USERKEY(key, ty, def, lo, hi, flags, doc, ...) \
	LV__KEY_ROW(lv_cfg_user_t, "user", #key, ty, key, def, lo, hi, flags, doc, __VA_ARGS__)

#define RELOAD LV_CF_RELOAD

const lv__key_t lv__db_keys[] = {
	LV_DBKEY(primary, HOST, "", 0, 0, RELOAD, "Address of the primary server; required."),
	LV_DBKEY(replicas, HOSTS, "", 0, 0, RELOAD,
		 "Read replicas that read-only statements may be routed to.",
		 .parse = parse_replicas),
	LV_DBKEY(dbname, NAME, "", 0, 0, RELOAD, "Name of the database on the server."),
	LV_DBKEY(user, NAME, "", 0, 0, RELOAD, "User that Levee logs in to the server as."),
	LV_DBKEY(password, STRING, "", 0, 0, RELOAD | LV_CF_SECRET,
		 "Password of user on the server."),
	LV_DBKEY(pool_mode, ENUM, "", 0, 0, RELOAD, "Pool mode for this database.",
		 .names = lv__pool_modes),
	LV_DBKEY(pool_size, INT, "", 1, 10000, RELOAD,
		 "Most server connections in each pool of this database."),
	LV_DBKEY(min_pool_size, INT, "", 0, 10000, RELOAD,
		 "Server connections each pool of this database keeps open."),
	LV_DBKEY(reserve_pool_size, INT, "", 0, 10000, RELOAD,
		 "Reserve connections for each pool of this database."),
	LV_DBKEY(max_db_connections, INT, "", 0, 100000, RELOAD,
		 "Most server connections to this database, over all its pools."),
	LV_DBKEY(route, ENUM, "auto", 0, 0, RELOAD,
		 "Which of the primary and the replicas serve this database's clients.",
		 .names = route_modes),
};

const size_t lv__n_db_keys = LV_ARRAY_LEN(lv__db_keys);

const lv__key_t lv__user_keys[] = {
	LV_USERKEY(pool_mode, ENUM, "", 0, 0, RELOAD, "Pool mode for this user's pools.",
		   .names = lv__pool_modes),
	LV_USERKEY(max_user_connections, INT, "", 0, 100000, RELOAD,
		   "Most server connections for this user, over all its pools."),
};

const size_t lv__n_user_keys = LV_ARRAY_LEN(lv__user_keys);

/* ---- Sections ---- */

void lv__dbs_section(lv__load_t *ld, const char *kind, const char *name)
{
	lv_config_t *cfg = ld->cfg;
	bool is_db = strcmp(kind, "database") == 0;

	ld->sect = LV__SECT_SKIP;
	if (!lv__section_name_ok(ld, kind, kind, name))
		return;
	if (is_db && strcmp(name, "levee") == 0) {
		lv__load_error(ld, ld->path, ld->line,
			       "database name \"levee\" is reserved for the admin console");
		return;
	}

	size_t i;
	if (is_db) {
		cfg->dbs = lv__section_append(cfg->dbs, &cfg->n_dbs, &ld->cap_dbs,
					      sizeof(*cfg->dbs), &ld->db_lines, lv__n_db_keys, &i);
		lv_cfg_db_t *db = &cfg->dbs[i];
		memcpy(db->name, name, strlen(name) + 1);
		db->pool_mode = -1;
		db->pool_size = -1;
		db->min_pool_size = -1;
		db->reserve_pool_size = -1;
		db->max_db_connections = -1;
		db->route = LV_ROUTE_MODE_AUTO;
		db->line = ld->line;
		lv__section_enter(ld, LV__SECT_DB, i, kind, name);
	} else {
		cfg->users = lv__section_append(cfg->users, &cfg->n_users, &ld->cap_users,
						sizeof(*cfg->users), &ld->user_lines,
						lv__n_user_keys, &i);
		lv_cfg_user_t *u = &cfg->users[i];
		memcpy(u->name, name, strlen(name) + 1);
		u->pool_mode = -1;
		u->max_user_connections = -1;
		u->line = ld->line;
		lv__section_enter(ld, LV__SECT_USER, i, kind, name);
	}
}

static void check_db(lv__load_t *ld, size_t i)
{
	lv_config_t *cfg = ld->cfg;
	lv_cfg_db_t *db = &cfg->dbs[i];

	const int *lines = ld->db_lines;
	if (!db->primary.host[0] &&
	    lv__key_line(lines, lv__db_keys, lv__n_db_keys, i, "primary") == 0)
		lv__load_error(ld, ld->path, db->line, "missing primary in [database %s]",
			       db->name);
	if (!db->dbname[0])
		memcpy(db->dbname, db->name, sizeof(db->dbname));

	int route_line = lv__key_line(lines, lv__db_keys, lv__n_db_keys, i, "route");
	int replicas_line = lv__key_line(lines, lv__db_keys, lv__n_db_keys, i, "replicas");
	if (db->route == LV_ROUTE_MODE_REPLICAS && db->n_replicas == 0 && replicas_line >= 0)
		lv__load_error(ld, ld->path, route_line,
			       "database %s has route = replicas but no replicas", db->name);

	/* A refused value (negative line) was reported already. */
	int min_line = lv__key_line(lines, lv__db_keys, lv__n_db_keys, i, "min_pool_size");
	int size_line = lv__key_line(lines, lv__db_keys, lv__n_db_keys, i, "pool_size");
	int min = db->min_pool_size >= 0 ? db->min_pool_size : cfg->pool.min_pool_size;
	int size = db->pool_size >= 0 ? db->pool_size : cfg->pool.pool_size;
	if ((min_line > 0 || size_line > 0) && min_line >= 0 && size_line >= 0 && min > size) {
		int line = min_line ? min_line : size_line;
		lv__load_error(ld, ld->path, line,
			       "min_pool_size (%d) is larger than pool_size (%d) in [database %s]",
			       min, size, db->name);
	}
}

static int cmp_db(const void *a, const void *b)
{
	const lv_cfg_db_t *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int cmp_user(const void *a, const void *b)
{
	const lv_cfg_user_t *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

void lv__dbs_finish(lv__load_t *ld)
{
	lv_config_t *cfg = ld->cfg;

	for (size_t i = 0; i < cfg->n_dbs; i++)
		check_db(ld, i);

	/* Sorted by name (then line) for bsearch; duplicates end up adjacent. */
	if (cfg->n_dbs > 1)
		qsort(cfg->dbs, cfg->n_dbs, sizeof(*cfg->dbs), cmp_db);
	for (size_t i = 1; i < cfg->n_dbs; i++)
		if (strcmp(cfg->dbs[i - 1].name, cfg->dbs[i].name) == 0)
			lv__load_error(ld, ld->path, cfg->dbs[i].line,
				       "duplicate database \"%s\" (first defined at line %d)",
				       cfg->dbs[i].name, cfg->dbs[i - 1].line);

	if (cfg->n_users > 1)
		qsort(cfg->users, cfg->n_users, sizeof(*cfg->users), cmp_user);
	for (size_t i = 1; i < cfg->n_users; i++)
		if (strcmp(cfg->users[i - 1].name, cfg->users[i].name) == 0)
			lv__load_error(ld, ld->path, cfg->users[i].line,
				       "duplicate user \"%s\" (first defined at line %d)",
				       cfg->users[i].name, cfg->users[i - 1].line);
}

void lv__dbs_free(lv_config_t *cfg)
{
	for (size_t i = 0; i < cfg->n_dbs; i++) {
		lv_free(cfg->dbs[i].password);
		lv_free(cfg->dbs[i].replicas);
	}
	lv_free(cfg->dbs);
	lv_free(cfg->users);
	cfg->dbs = NULL;
	cfg->users = NULL;
	cfg->n_dbs = cfg->n_users = 0;
}

/* ---- Lookups ---- */

static int cmp_name_db(const void *key, const void *elem)
{
	return strcmp(key, ((const lv_cfg_db_t *)elem)->name);
}

static int cmp_name_user(const void *key, const void *elem)
{
	return strcmp(key, ((const lv_cfg_user_t *)elem)->name);
}

const lv_cfg_db_t *lv_config_find_db(const lv_config_t *cfg, const char *name)
{
	if (!cfg->n_dbs)
		return NULL;
	return bsearch(name, cfg->dbs, cfg->n_dbs, sizeof(*cfg->dbs), cmp_name_db);
}

const lv_cfg_user_t *lv_config_find_user(const lv_config_t *cfg, const char *name)
{
	if (!cfg->n_users)
		return NULL;
	return bsearch(name, cfg->users, cfg->n_users, sizeof(*cfg->users), cmp_name_user);
}
