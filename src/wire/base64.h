/* SPDX-License-Identifier: ISC */
/*
 * Standard base64 (RFC 4648 section 4: the "+/" alphabet, '=' padding, no
 * line breaks) for every Levee module that carries bytes as text: SCRAM
 * fields and secrets (wire/scram.c) and write-queue parameter values
 * (wq/codec.c). Pure: no allocation, no I/O; the caller owns both buffers.
 */
#ifndef LEVEE_WIRE_BASE64_H
#define LEVEE_WIRE_BASE64_H

#include "core/lv.h"

/* Length of the base64 text of len bytes, without a terminating NUL. */
size_t lv_base64_encoded_len(size_t len);
/* Most bytes that len characters of base64 can decode to. */
size_t lv_base64_decoded_max(size_t len);
/*
 * Writes the padded base64 of in[0..len) into out[cap] with a NUL after it;
 * *out_len gets the text length. 0, or LV_ETOOBIG when cap is below
 * lv_base64_encoded_len(len) + 1 (out is then untouched).
 */
int lv_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap, size_t *out_len);
/*
 * Strict decode of in[0..len) into out[cap]: no whitespace, len a multiple
 * of 4, '=' only as one or two final padding characters, and the bits the
 * padding leaves unused zero (the one canonical text per byte string).
 * *out_len gets the decoded size. 0; LV_EINVAL when malformed; LV_ETOOBIG
 * when the result does not fit cap.
 */
int lv_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

#endif
