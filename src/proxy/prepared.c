/* SPDX-License-Identifier: ISC */
/*
 * Prepared statement registry, client name maps, server statement sets and
 * response queues; see prepared.h. Statements are reference-counted and freed
 * when no client, server or pending response refers to them. Worker-local.
 */
#include "proxy/prepared.h"
#include "core/buf.h"
#include "core/mem.h"

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

void lv_pstmt_reg_init(lv_pstmt_reg_t *reg, int worker)
{
	memset(reg, 0, sizeof(*reg));
	reg->worker = worker;
}

void lv_pstmt_reg_cleanup(lv_pstmt_reg_t *reg)
{
	for (size_t i = 0; i < reg->cap; i++) {
		lv_pstmt_t *ps = reg->buckets[i];
		while (ps) {
			lv_pstmt_t *next = ps->next;
			lv_free(ps->query);
			lv_free(ps->oids);
			lv_free(ps);
			ps = next;
		}
	}
	lv_free(reg->buckets);
	memset(reg, 0, sizeof(*reg));
}

static bool reg_grow(lv_pstmt_reg_t *reg)
{
	size_t cap = reg->cap ? reg->cap * 2 : 256;
	lv_pstmt_t **nb = lv_calloc(cap, sizeof(*nb));
	if (!nb)
		return false;
	for (size_t i = 0; i < reg->cap; i++) {
		lv_pstmt_t *ps = reg->buckets[i];
		while (ps) {
			lv_pstmt_t *next = ps->next;
			size_t j = (size_t)(ps->hash & (cap - 1));
			ps->next = nb[j];
			nb[j] = ps;
			ps = next;
		}
	}
	lv_free(reg->buckets);
	reg->buckets = nb;
	reg->cap = cap;
	return true;
}

/* Appends v in decimal at p; returns the end. */
static char *put_decimal(char *p, uint64_t v)
{
	char digits[20];
	int n = 0;
	do
		digits[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (n > 0)
		*p++ = digits[--n];
	return p;
}

/*
 * "lv<worker>_<id>": with a worker below LV_MAX_WORKERS (64) at most
 * 2 + 2 + 1 + 20 characters and a NUL, within lv_pstmt_t.name. Written by
 * hand: an unnamed statement's entry is made again whenever no client holds
 * its text, and snprintf showed in perf.
 */
static void server_name(char out[32], int worker, uint64_t id)
{
	char *p = out;
	*p++ = 'l';
	*p++ = 'v';
	p = put_decimal(p, (uint64_t)(uint32_t)worker);
	*p++ = '_';
	p = put_decimal(p, id);
	*p = '\0';
}

lv_pstmt_t *lv_pstmt_get(lv_pstmt_reg_t *reg, const char *query, size_t query_len, const uint8_t *types_be,
			 uint16_t n_types)
{
	uint64_t h = hash_bytes(1469598103934665603ULL, query, query_len);
	h = hash_bytes(h, types_be, (size_t)n_types * 4);
	h = hash_bytes(h, &n_types, sizeof(n_types));
	if (reg->cap) {
		for (lv_pstmt_t *ps = reg->buckets[h & (reg->cap - 1)]; ps; ps = ps->next) {
			if (ps->hash != h || ps->query_len != query_len || ps->n_oids != n_types ||
			    memcmp(ps->query, query, query_len) != 0)
				continue;
			bool same = true;
			for (uint16_t i = 0; i < n_types && same; i++)
				same = ps->oids[i] == lv_get_u32(types_be + 4 * i);
			if (same) {
				ps->refs++;
				return ps;
			}
		}
	}
	if ((reg->n + 1) * 2 > reg->cap && !reg_grow(reg))
		return NULL;
	lv_pstmt_t *ps = lv_calloc(1, sizeof(*ps));
	if (!ps)
		return NULL;
	ps->query = lv_malloc(query_len + 1);
	ps->oids = n_types ? lv_malloc((size_t)n_types * sizeof(uint32_t)) : NULL;
	if (!ps->query || (n_types && !ps->oids)) {
		lv_free(ps->query);
		lv_free(ps->oids);
		lv_free(ps);
		return NULL;
	}
	memcpy(ps->query, query, query_len);
	ps->query[query_len] = '\0';
	ps->query_len = query_len;
	for (uint16_t i = 0; i < n_types; i++)
		ps->oids[i] = lv_get_u32(types_be + 4 * i);
	ps->n_oids = n_types;
	ps->hash = h;
	ps->id = ++reg->next_id;
	server_name(ps->name, reg->worker, ps->id);
	ps->refs = 1;
	size_t j = (size_t)(h & (reg->cap - 1));
	ps->next = reg->buckets[j];
	reg->buckets[j] = ps;
	reg->n++;
	return ps;
}

void lv_pstmt_put(lv_pstmt_reg_t *reg, lv_pstmt_t *ps)
{
	if (!ps || --ps->refs > 0)
		return;
	lv_pstmt_t **pp = &reg->buckets[ps->hash & (reg->cap - 1)];
	while (*pp && *pp != ps)
		pp = &(*pp)->next;
	if (*pp)
		*pp = ps->next;
	reg->n--;
	lv_free(ps->query);
	lv_free(ps->oids);
	lv_free(ps);
}

/* --------------------------------------------------------------- client map */

lv_pstmt_t *lv_pstmt_map_get(const lv_pstmt_map_t *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->v[i].name, name) == 0)
			return m->v[i].ps;
	return NULL;
}

bool lv_pstmt_map_set(lv_pstmt_reg_t *reg, lv_pstmt_map_t *m, const char *name, lv_pstmt_t *ps)
{
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(m->v[i].name, name) == 0) {
			lv_pstmt_put(reg, m->v[i].ps);
			m->v[i].ps = ps;
			return true;
		}
	}
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 8;
		struct lv_pstmt_name *nv = lv_realloc(m->v, cap * sizeof(*nv));
		if (!nv) {
			lv_pstmt_put(reg, ps);
			return false;
		}
		m->v = nv;
		m->cap = cap;
	}
	char *copy = lv_strdup(name);
	if (!copy) {
		lv_pstmt_put(reg, ps);
		return false;
	}
	m->v[m->n].name = copy;
	m->v[m->n].ps = ps;
	m->n++;
	return true;
}

void lv_pstmt_map_del(lv_pstmt_reg_t *reg, lv_pstmt_map_t *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(m->v[i].name, name) == 0) {
			lv_free(m->v[i].name);
			lv_pstmt_put(reg, m->v[i].ps);
			m->v[i] = m->v[--m->n];
			return;
		}
	}
}

void lv_pstmt_map_clear(lv_pstmt_reg_t *reg, lv_pstmt_map_t *m)
{
	for (size_t i = 0; i < m->n; i++) {
		lv_free(m->v[i].name);
		lv_pstmt_put(reg, m->v[i].ps);
	}
	lv_free(m->v);
	memset(m, 0, sizeof(*m));
}

/* --------------------------------------------------------------- server set */

bool lv_pstmt_set_has(lv_pstmt_set_t *s, const lv_pstmt_t *ps)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].ps == ps) {
			s->v[i].used = ++s->clock;
			return true;
		}
	}
	return false;
}

bool lv_pstmt_set_add(lv_pstmt_set_t *s, lv_pstmt_t *ps)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		struct lv_pstmt_use *nv = lv_realloc(s->v, cap * sizeof(*nv));
		if (!nv)
			return false;
		s->v = nv;
		s->cap = cap;
	}
	ps->refs++;
	s->v[s->n].ps = ps;
	s->v[s->n].used = ++s->clock;
	s->n++;
	return true;
}

void lv_pstmt_set_del(lv_pstmt_reg_t *reg, lv_pstmt_set_t *s, const lv_pstmt_t *ps)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].ps == ps) {
			lv_pstmt_t *p = s->v[i].ps;
			s->v[i] = s->v[--s->n];
			lv_pstmt_put(reg, p);
			return;
		}
	}
}

lv_pstmt_t *lv_pstmt_set_lru(const lv_pstmt_set_t *s, const lv_pstmt_t *keep)
{
	const struct lv_pstmt_use *best = NULL;
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].ps != keep && (!best || s->v[i].used < best->used))
			best = &s->v[i];
	return best ? best->ps : NULL;
}

void lv_pstmt_set_clear(lv_pstmt_reg_t *reg, lv_pstmt_set_t *s)
{
	for (size_t i = 0; i < s->n; i++)
		lv_pstmt_put(reg, s->v[i].ps);
	lv_free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ----------------------------------------------------------- response queue */

bool lv_respq_push(lv_respq_t *q, uint8_t kind, lv_resp_action_t action, lv_pstmt_t *ps)
{
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 16;
		lv_resp_t *nv = lv_malloc(cap * sizeof(*nv));
		if (!nv)
			return false;
		for (size_t i = 0; i < q->n; i++)
			nv[i] = q->v[(q->head + i) % q->cap];
		lv_free(q->v);
		q->v = nv;
		q->cap = cap;
		q->head = 0;
	}
	lv_resp_t *e = &q->v[(q->head + q->n) % q->cap];
	e->kind = kind;
	e->action = (uint8_t)action;
	e->sqlstate[0] = '\0';
	e->text = NULL;
	e->ps = ps;
	if (ps)
		ps->refs++;
	q->n++;
	return true;
}

bool lv_respq_push_text(lv_respq_t *q, uint8_t kind, lv_resp_action_t action, lv_pstmt_t *ps,
			const char *sqlstate, const char *text)
{
	char *copy = lv_strdup(text);
	if (!copy || !lv_respq_push(q, kind, action, ps)) {
		lv_free(copy);
		return false;
	}
	lv_resp_t *e = &q->v[(q->head + q->n - 1) % q->cap];
	e->text = copy;
	if (sqlstate)
		snprintf(e->sqlstate, sizeof(e->sqlstate), "%s", sqlstate);
	return true;
}

void lv_respq_pop(lv_pstmt_reg_t *reg, lv_respq_t *q)
{
	if (!q->n)
		return;
	lv_free(q->v[q->head].text);
	lv_pstmt_put(reg, q->v[q->head].ps);
	q->head = (q->head + 1) % q->cap;
	q->n--;
}

void lv_respq_cleanup(lv_pstmt_reg_t *reg, lv_respq_t *q)
{
	while (q->n)
		lv_respq_pop(reg, q);
	lv_free(q->v);
	memset(q, 0, sizeof(*q));
}

bool lv_resp_is_last(uint8_t kind, uint8_t type)
{
	switch (kind) {
	case 'P':
		return type == '1';
	case 'B':
		return type == '2';
	case 'C':
		return type == '3';
	case 'D':
		return type == 'T' || type == 'n';
	case 'E':
		return type == 'C' || type == 'I' || type == 's';
	case 'S':
	case 'Q':
	case 'F':
		return type == 'Z';
	default:
		return false;
	}
}
