/* SPDX-License-Identifier: ISC */
/* Small string helpers: bounded copies that refuse to truncate, and parsing. */
#ifndef LEVEE_CORE_STR_H
#define LEVEE_CORE_STR_H

#include "core/lv.h"

/* Copies src into dst[cap]; returns false (dst untouched) if it does not fit. */
bool lv_strlcpy(char *dst, const char *src, size_t cap) LV_MUSTCHECK;
/* Case-insensitive ASCII comparison. */
int lv_strcasecmp(const char *a, const char *b);
/* Strips leading and trailing ASCII whitespace in place; returns s advanced. */
char *lv_strtrim(char *s);
/* Levenshtein distance, capped at 255: for "did you mean" suggestions. */
unsigned lv_str_distance(const char *a, const char *b);

#endif
