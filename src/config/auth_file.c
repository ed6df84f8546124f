/* SPDX-License-Identifier: ISC */
/*
 * The auth_file: who may log in, and the secret each password is checked
 * against. The format is PgBouncer's userlist.txt:
 *
 *     ; comment            (also '#'; blank lines are ignored)
 *     "alice" "md5 0f3c..."            one user per line, both fields quoted,
 *     "bob"   "SCRAM-SHA-256$4096:..."  "" inside quotes is one quote character
 *
 * A secret is classified as it is read: "SCRAM-SHA-256$..." must have the
 * shape <iterations>:<salt>$<StoredKey>:<ServerKey> with base64 fields and
 * 32-byte keys (checked here without decoding further: config/ may not
 * include wire/, which owns SCRAM), "md5" followed by 32 hex digits is an MD5
 * secret, anything else is a clear-text password.
 *
 * The file is read once per config generation, by lv_config_load() and on
 * every reload; entries are owned by the generation, sorted by user for
 * lv_config_find_auth(), and freed by lv__auth_free(). Problems are reported
 * as "authfile:line: message" into the load's error list.
 */
#include "core/lv.h"

#include <ctype.h>

#include "config/config_int.h"
#include "core/mem.h"

/* ---- Secret shapes ---- */

static bool b64_char(int c)
{
	return isalnum(c) || c == '+' || c == '/';
}

/* Decoded length of strict base64 s[0..n) (padded, no whitespace), or -1. */
static int b64_len(const char *s, size_t n)
{
	if (n == 0 || n % 4 != 0)
		return -1;
	size_t pad = 0;
	if (s[n - 1] == '=')
		pad = s[n - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < n - pad; i++)
		if (!b64_char((unsigned char)s[i]))
			return -1;
	return (int)(n / 4 * 3 - pad);
}

#define SCRAM_PREFIX "SCRAM-SHA-256$"

/* Checks "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>". 0 or < 0 with err. */
static int scram_check(const char *s, lv_err_t *err)
{
	static const char shape[] =
		"expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>";
	const char *p = s + strlen(SCRAM_PREFIX);
	const char *colon1 = strchr(p, ':');
	const char *dollar = colon1 ? strchr(colon1 + 1, '$') : NULL;
	const char *colon2 = dollar ? strchr(dollar + 1, ':') : NULL;
	if (!colon2 || strchr(colon2 + 1, ':') || strchr(colon2 + 1, '$'))
		return lv_err_set(err, LV_EINVAL, "%s", shape);

	int64_t iter = 0;
	if (colon1 == p || colon1 - p > 10)
		return lv_err_set(err, LV_EINVAL, "the iteration count must be a positive integer");
	for (const char *q = p; q < colon1; q++) {
		if (!isdigit((unsigned char)*q))
			return lv_err_set(err, LV_EINVAL,
					  "the iteration count must be a positive integer");
		iter = iter * 10 + (*q - '0');
	}
	if (iter < 1 || iter > INT32_MAX)
		return lv_err_set(err, LV_EINVAL, "the iteration count must be a positive integer");
	if (b64_len(colon1 + 1, (size_t)(dollar - colon1 - 1)) <= 0)
		return lv_err_set(err, LV_EINVAL, "the salt is not valid base64");
	if (b64_len(dollar + 1, (size_t)(colon2 - dollar - 1)) != 32)
		return lv_err_set(err, LV_EINVAL, "StoredKey is not 32 bytes of base64");
	if (b64_len(colon2 + 1, strlen(colon2 + 1)) != 32)
		return lv_err_set(err, LV_EINVAL, "ServerKey is not 32 bytes of base64");
	return 0;
}

static lv_secret_kind_t secret_kind(const char *s)
{
	if (strncmp(s, SCRAM_PREFIX, strlen(SCRAM_PREFIX)) == 0)
		return LV_SECRET_SCRAM;
	if (strlen(s) == 35 && strncmp(s, "md5", 3) == 0) {
		for (size_t i = 3; i < 35; i++)
			if (!isxdigit((unsigned char)s[i]))
				return LV_SECRET_PLAIN;
		return LV_SECRET_MD5;
	}
	return LV_SECRET_PLAIN;
}

/* ---- Lines ---- */

/*
 * Reads the quoted string at *pp (which points at '"') into out (cap bytes,
 * NUL-terminated), advancing *pp past the closing quote. Returns the length,
 * -1 when the quote is not closed on this line, -2 when out is too small.
 */
static long read_quoted(const char **pp, char *out, size_t cap)
{
	const char *p = *pp + 1;
	size_t n = 0;
	for (;;) {
		if (*p == '\0' || *p == '\n' || *p == '\r')
			return -1;
		if (*p == '"') {
			if (p[1] != '"')
				break;
			p++;
		}
		if (n + 1 >= cap)
			return -2;
		out[n++] = *p++;
	}
	out[n] = '\0';
	*pp = p + 1;
	return (long)n;
}

/* An entry and the line it came from, while the file is read. */
typedef struct rec {
	lv_auth_entry_t e;
	int line;
} rec_t;

typedef struct rec_vec {
	rec_t *v;
	size_t n, cap;
} rec_vec_t;

/* Parses one line; returns 0 (entry appended or nothing on the line) or < 0 with err. */
static int parse_line(lv__load_t *ld, const char *line, int lineno, char *secret, size_t secret_cap,
		      rec_vec_t *rv, lv_err_t *err)
{
	static const char usage[] = "expected \"user\" \"secret\"";
	const char *p = line;
	char user[LV_NAME_LEN];

	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0' || *p == ';' || *p == '#')
		return 0;
	if (*p != '"')
		return lv_err_set(err, LV_EINVAL, "%s", usage);
	long n = read_quoted(&p, user, sizeof(user));
	if (n == -1)
		return lv_err_set(err, LV_EINVAL, "unterminated quoted string");
	if (n == -2)
		return lv_err_set(err, LV_EINVAL, "user name is longer than %d bytes",
				  LV_NAME_LEN - 1);
	if (n == 0)
		return lv_err_set(err, LV_EINVAL, "empty user name");
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '"')
		return lv_err_set(err, LV_EINVAL, "%s", usage);
	n = read_quoted(&p, secret, secret_cap);
	if (n == -1)
		return lv_err_set(err, LV_EINVAL, "unterminated quoted string");
	if (n == -2)
		return lv_err_set(err, LV_EINVAL, "the secret for user \"%s\" is too long", user);
	while (isspace((unsigned char)*p))
		p++;
	if (*p)
		return lv_err_set(err, LV_EINVAL, "unexpected text after the secret");
	if (n == 0 && ld->cfg->levee.auth_type != LV_AUTH_TRUST)
		return lv_err_set(err, LV_EINVAL, "empty secret for user \"%s\"", user);

	lv_secret_kind_t kind = secret_kind(secret);
	lv_err_t sub;
	if (kind == LV_SECRET_SCRAM && scram_check(secret, &sub) < 0)
		return lv_err_set(err, LV_EINVAL, "invalid SCRAM secret for user \"%s\": %s", user,
				  sub.msg);

	if (rv->n == rv->cap) {
		rv->cap = rv->cap ? rv->cap * 2 : 16;
		rv->v = lv_xrealloc(rv->v, rv->cap * sizeof(*rv->v));
	}
	rec_t *r = &rv->v[rv->n++];
	memcpy(r->e.user, user, strlen(user) + 1);
	r->e.secret = lv_xstrdup(secret);
	r->e.kind = kind;
	r->line = lineno;
	return 0;
}

static int cmp_rec(const void *a, const void *b)
{
	const rec_t *x = a, *y = b;
	int c = strcmp(x->e.user, y->e.user);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

void lv__auth_load(lv__load_t *ld, const char *path, int line)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		lv__load_error(ld, ld->path, line, "cannot open auth_file \"%s\": %s", path,
			       strerror(errno));
		return;
	}

	rec_vec_t rv = {NULL, 0, 0};
	char *buf = NULL, *secret = NULL;
	size_t buf_cap = 0, secret_cap = 0;
	int lineno = 0;
	ssize_t len;
	while ((len = getline(&buf, &buf_cap, f)) >= 0) {
		lineno++;
		if (secret_cap < (size_t)len + 1) {
			secret_cap = (size_t)len + 1;
			lv_free(secret);
			secret = lv_xmalloc(secret_cap);
		}
		lv_err_t err;
		if (parse_line(ld, buf, lineno, secret, secret_cap, &rv, &err) < 0)
			lv__load_error(ld, path, lineno, "%s", err.msg);
	}
	if (ferror(f))
		lv__load_error(ld, ld->path, line, "cannot read auth_file \"%s\": %s", path,
			       strerror(errno));
	fclose(f);
	if (buf)
		explicit_bzero(buf, buf_cap);
	free(buf); /* getline's buffer comes from libc malloc */
	if (secret) {
		explicit_bzero(secret, secret_cap);
		lv_free(secret);
	}

	/* Sorted by user (then line) for bsearch; duplicates end up adjacent. */
	if (rv.n > 1)
		qsort(rv.v, rv.n, sizeof(*rv.v), cmp_rec);
	lv_auth_entry_t *auth = rv.n ? lv_xcalloc(rv.n, sizeof(*auth)) : NULL;
	for (size_t i = 0; i < rv.n; i++) {
		auth[i] = rv.v[i].e;
		if (i > 0 && strcmp(rv.v[i - 1].e.user, rv.v[i].e.user) == 0)
			lv__load_error(ld, path, rv.v[i].line,
				       "duplicate user \"%s\" (first at line %d)", rv.v[i].e.user,
				       rv.v[i - 1].line);
	}
	lv_free(rv.v);
	ld->cfg->auth = auth;
	ld->cfg->n_auth = rv.n;
}

void lv__auth_free(lv_config_t *cfg)
{
	for (size_t i = 0; i < cfg->n_auth; i++) {
		explicit_bzero(cfg->auth[i].secret, strlen(cfg->auth[i].secret));
		lv_free(cfg->auth[i].secret);
	}
	lv_free(cfg->auth);
	cfg->auth = NULL;
	cfg->n_auth = 0;
}

static int cmp_user(const void *key, const void *elem)
{
	return strcmp(key, ((const lv_auth_entry_t *)elem)->user);
}

const lv_auth_entry_t *lv_config_find_auth(const lv_config_t *cfg, const char *user)
{
	if (!cfg->n_auth)
		return NULL;
	return bsearch(user, cfg->auth, cfg->n_auth, sizeof(*cfg->auth), cmp_user);
}
