/* SPDX-License-Identifier: ISC */
/*
 * Row invalidation ("point" mode). A [cache.rule] that names a key column
 * lets a read of one table through `key = value` depend on that value's row
 * bucket instead of on the whole table, and a write through `key = value`
 * (UPDATE or DELETE that does not assign the key, INSERT ... VALUES) bump
 * only the buckets of the values it names. Any other write to the table
 * bumps the table's "wide" generation, which every point entry of the table
 * also depends on, so nothing a point entry could show is missed.
 *
 * The rule this file keeps: two values that PostgreSQL could consider equal
 * in an integer, text or uuid column must map to the same bucket. Values are
 * canonicalised generously (integers without sign or leading zeros, text
 * trimmed and lower-cased with '-', '{', '}' dropped, so uuids in any input
 * form agree); two different values may share a bucket, which only costs an
 * extra miss. Anything this file cannot canonicalise safely (a float that is
 * not integral, a boolean, a binary value of another type) makes the
 * statement a table-wide one. Buckets are a fixed array: a collision is an
 * over-invalidation, never a missed one.
 *
 * Pure: no I/O, no globals.
 */
#ifndef LEVEE_CACHE_POINT_H
#define LEVEE_CACHE_POINT_H

#include "core/lv.h"

#define LV_CACHE_ROW_BUCKETS 65536 /* power of two */
#define LV_CACHE_POINT_MAX 256     /* longest canonical value */

/* Canonical form of a value given as text (a literal, or a parameter in text format). */
bool lv_cache_point_canon_text(const char *v, size_t n, char out[LV_CACHE_POINT_MAX], size_t *out_len);
/* Canonical form of a parameter in binary format of type oid (0: unknown, refused). */
bool lv_cache_point_canon_binary(uint32_t oid, const uint8_t *v, size_t n, char out[LV_CACHE_POINT_MAX],
				 size_t *out_len);
/* True when an explicit cast to type name keeps the value comparable (int*, text, varchar, uuid). */
bool lv_cache_point_cast_ok(const char *type);
/* The bucket of (database, table, column, canonical value): 0 .. LV_CACHE_ROW_BUCKETS-1. */
uint32_t lv_cache_point_bucket(const char *db, const char *table, const char *col, const char *canon, size_t n);

#endif
