/* SPDX-License-Identifier: ISC */
/* Parameter sets; see params.h. Pure: no I/O; memory in the caller's buffers. */
#include "proxy/params.h"

#include <ctype.h>
#include <strings.h>

bool lv_params_next(const lv_buf_t *ps, size_t *pos, const char **name, const char **value)
{
	if (*pos >= ps->len)
		return false;
	*name = (const char *)ps->data + *pos;
	*value = *name + strlen(*name) + 1;
	*pos = (size_t)(*value + strlen(*value) + 1 - (const char *)ps->data);
	return true;
}

const char *lv_params_get(const lv_buf_t *ps, const char *name)
{
	size_t pos = 0;
	const char *k, *v;
	while (lv_params_next(ps, &pos, &k, &v))
		if (strcasecmp(k, name) == 0)
			return v;
	return NULL;
}

uint64_t lv_params_hash(const lv_buf_t *ps)
{
	if (ps->len == 0)
		return 0;
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < ps->len; i++)
		h = (h ^ (uint8_t)(ps->data[i] | 0x20)) * 1099511628211ULL;
	return h ? h : 1;
}

void lv_params_del(lv_buf_t *ps, const char *name)
{
	size_t pos = 0;
	const char *k, *v;
	while (true) {
		size_t start = pos;
		if (!lv_params_next(ps, &pos, &k, &v))
			return;
		if (strcasecmp(k, name) == 0) {
			memmove(ps->data + start, ps->data + pos, ps->len - pos);
			ps->len -= pos - start;
			return;
		}
	}
}

bool lv_params_set(lv_buf_t *ps, const char *name, const char *value)
{
	const char *cur = lv_params_get(ps, name);
	if (cur && strcmp(cur, value) == 0)
		return true;
	size_t need = strlen(name) + strlen(value) + 2;
	if (!lv_buf_reserve(ps, need))
		return false;
	lv_params_del(ps, name);
	return lv_buf_append_cstr(ps, name) && lv_buf_append_cstr(ps, value);
}

/* Reads one word of an options string, undoing backslash escapes. */
static const char *next_word(const char *p, char *out, size_t cap, bool *too_long)
{
	size_t n = 0;
	*too_long = false;
	while (*p && isspace((unsigned char)*p))
		p++;
	while (*p && !isspace((unsigned char)*p)) {
		if (*p == '\\' && p[1])
			p++;
		if (n + 1 < cap)
			out[n++] = *p;
		else
			*too_long = true;
		p++;
	}
	out[n] = '\0';
	return p;
}

static bool add_assignment(lv_buf_t *ps, char *word)
{
	char *eq = strchr(word, '=');
	if (!eq || eq == word)
		return false;
	*eq = '\0';
	for (char *q = word; *q; q++)
		if (*q == '-')
			*q = '_';
	return lv_params_set(ps, word, eq + 1);
}

bool lv_params_add_options(lv_buf_t *ps, const char *options, char *err_word, size_t cap)
{
	char word[1024];
	const char *p = options;
	bool too_long;
	err_word[0] = '\0';
	while (true) {
		p = next_word(p, word, sizeof(word), &too_long);
		if (!word[0])
			return true;
		if (too_long)
			goto bad;
		if (strcmp(word, "-c") == 0) {
			p = next_word(p, word, sizeof(word), &too_long);
			if (too_long || !add_assignment(ps, word))
				goto bad;
		} else if (strncmp(word, "-c", 2) == 0) {
			if (!add_assignment(ps, word + 2))
				goto bad;
		} else if (strncmp(word, "--", 2) == 0) {
			if (!add_assignment(ps, word + 2))
				goto bad;
		} else {
			goto bad;
		}
	}
bad:
	snprintf(err_word, cap, "%s", word);
	return false;
}

bool lv_params_quote_literal(lv_buf_t *out, const char *s)
{
	if (!lv_buf_put_u8(out, '\''))
		return false;
	for (; *s; s++) {
		if (*s == '\'' && !lv_buf_put_u8(out, '\''))
			return false;
		if (!lv_buf_put_u8(out, (uint8_t)*s))
			return false;
	}
	return lv_buf_put_u8(out, '\'');
}

bool lv_params_quote_ident(lv_buf_t *out, const char *s)
{
	if (!lv_buf_put_u8(out, '"'))
		return false;
	for (; *s; s++) {
		if (*s == '"' && !lv_buf_put_u8(out, '"'))
			return false;
		if (!lv_buf_put_u8(out, (uint8_t)*s))
			return false;
	}
	return lv_buf_put_u8(out, '"');
}
