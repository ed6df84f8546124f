/* SPDX-License-Identifier: ISC */
/*
 * Parameter sets: "name\0value\0" pairs in an lv_buf_t, names compared
 * without regard to case (PostgreSQL reports "DateStyle", clients may send
 * "datestyle"). Used for what a client asked for, what a server reported and
 * what Levee SET on a server. Small (a dozen pairs), so linear scans.
 */
#ifndef LEVEE_PROXY_PARAMS_H
#define LEVEE_PROXY_PARAMS_H

#include "core/buf.h"

/* The value of name, or NULL; borrowed until the set changes. */
const char *lv_params_get(const lv_buf_t *ps, const char *name);
/* Sets name to value, replacing an earlier value. False on OOM (set unchanged). */
bool lv_params_set(lv_buf_t *ps, const char *name, const char *value) LV_MUSTCHECK;
/* A hash of the whole set (0 only for an empty one), to tell equal sets apart cheaply. */
uint64_t lv_params_hash(const lv_buf_t *ps);
/* Removes name if present. */
void lv_params_del(lv_buf_t *ps, const char *name);
/* Iterates: *pos starts at 0; returns false at the end. */
bool lv_params_next(const lv_buf_t *ps, size_t *pos, const char **name, const char **value);
/*
 * Adds the settings of a startup "options" value: "-c name=value" and
 * "--name=value" words, with backslash-escaped spaces as libpq writes them.
 * Returns false on OOM or on a word it does not understand (err_word set).
 */
bool lv_params_add_options(lv_buf_t *ps, const char *options, char *err_word, size_t cap) LV_MUSTCHECK;
/* Appends a quoted SQL literal ('it''s') of s to out. */
bool lv_params_quote_literal(lv_buf_t *out, const char *s) LV_MUSTCHECK;
/* Appends a quoted SQL identifier ("DateStyle") of s to out. */
bool lv_params_quote_ident(lv_buf_t *out, const char *s) LV_MUSTCHECK;

#endif
