/* SPDX-License-Identifier: ISC */
/*
 * The kinds of stored password Levee knows. Shared by config/ (auth_file
 * entries) and wire/ (SCRAM and md5), which may not include each other.
 */
#ifndef LEVEE_CORE_SECRET_H
#define LEVEE_CORE_SECRET_H

typedef enum lv_secret_kind {
	LV_SECRET_PLAIN = 0, /* a cleartext password */
	LV_SECRET_MD5 = 1,   /* "md5" followed by 32 hex digits: md5(password || user) */
	LV_SECRET_SCRAM = 2, /* "SCRAM-SHA-256$iter:salt$StoredKey:ServerKey" */
} lv_secret_kind_t;

#endif
