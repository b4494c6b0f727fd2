/* SPDX-License-Identifier: MIT */
/* UTF-8 for the tokenizers: decoding, encoding, and repairing ill-formed text. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UNICODE_REPLACEMENT 0xFFFDu

/*
 * Decodes the character at s[0..n). Returns its length (1..4) and sets *cp,
 * or, for an ill-formed sequence, returns minus the length of its maximal
 * subpart (the bytes one U+FFFD replaces, Unicode 15 section 3.9, as
 * browsers, Python and Node decode): -1..-3.
 */
int utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Writes cp (at most U+10FFFF, no surrogates) to out; returns 1..4. */
size_t utf8_encode(uint32_t cp, char out[4]);

bool utf8_valid(const char *s, size_t n);

/*
 * A copy of text in which every ill-formed subsequence is replaced by
 * U+FFFD, one per maximal subpart. NUL-terminated; *ret_len excludes the NUL.
 */
int utf8_repair(const char *text, size_t len, char **ret, size_t *ret_len);
