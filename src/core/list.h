/* SPDX-License-Identifier: ISC */
/*
 * Intrusive doubly linked list (the Linux/PgBouncer kind) and a counted list
 * on top of it. Nodes are embedded in their owners; the list never allocates.
 * A node that is not on any list points at itself, so lv_list_unlink() of an
 * unlinked node is harmless.
 */
#ifndef LEVEE_CORE_LIST_H
#define LEVEE_CORE_LIST_H

#include "core/lv.h"

typedef struct lv_list {
	struct lv_list *next;
	struct lv_list *prev;
} lv_list_t;

static inline void lv_list_init(lv_list_t *l)
{
	l->next = l->prev = l;
}

static inline bool lv_list_empty(const lv_list_t *l)
{
	return l->next == l;
}

static inline void lv_list_insert_tail(lv_list_t *head, lv_list_t *node)
{
	node->prev = head->prev;
	node->next = head;
	head->prev->next = node;
	head->prev = node;
}

static inline void lv_list_insert_head(lv_list_t *head, lv_list_t *node)
{
	node->next = head->next;
	node->prev = head;
	head->next->prev = node;
	head->next = node;
}

static inline void lv_list_unlink(lv_list_t *node)
{
	node->prev->next = node->next;
	node->next->prev = node->prev;
	lv_list_init(node);
}

static inline lv_list_t *lv_list_first(const lv_list_t *head)
{
	return lv_list_empty(head) ? NULL : head->next;
}

/* Iterate safely against unlinking the current node. */
#define lv_list_for_each_safe(pos, tmp, head) \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); (pos) = (tmp), (tmp) = (pos)->next)

#define lv_list_for_each(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

/* A list that knows its length: what SHOW and the gauges read. */
typedef struct lv_clist {
	lv_list_t head;
	size_t n;
} lv_clist_t;

static inline void lv_clist_init(lv_clist_t *l)
{
	lv_list_init(&l->head);
	l->n = 0;
}

static inline void lv_clist_append(lv_clist_t *l, lv_list_t *node)
{
	lv_list_insert_tail(&l->head, node);
	l->n++;
}

static inline void lv_clist_prepend(lv_clist_t *l, lv_list_t *node)
{
	lv_list_insert_head(&l->head, node);
	l->n++;
}

static inline void lv_clist_remove(lv_clist_t *l, lv_list_t *node)
{
	lv_list_unlink(node);
	l->n--;
}

static inline lv_list_t *lv_clist_pop(lv_clist_t *l)
{
	lv_list_t *n = lv_list_first(&l->head);
	if (n)
		lv_clist_remove(l, n);
	return n;
}

#endif
