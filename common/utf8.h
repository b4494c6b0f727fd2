/* SPDX-License-Identifier: MIT */
/*
 * UTF-8 as RFC 3629 and Unicode's table 3-7 define it (no overlong forms, no
 * surrogates, nothing past U+10FFFF): the one checker and decoder of npud, its
 * engine, npuctl and npud-http.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Decodes the character at s[0..n), n > 0. Returns its length (1..4) and sets
 * *cp, or, for an ill-formed or cut-short sequence, returns minus the length
 * of its maximal subpart (the bytes one U+FFFD replaces, Unicode 15 section
 * 3.9, as browsers, Python and Node decode): -1..-3.
 */
int utf8_decode(const char *s, size_t n, uint32_t *cp);

/*
 * Length of the character at s[0..n): 1..4; 0 when s[0..n) is a well-formed
 * but incomplete start of one (n == 0 included), -1 when it is ill-formed.
 * For text that arrives in pieces: a 0 means "wait for more bytes".
 */
int utf8_sequence_length(const char *s, size_t n);

/* Writes cp (at most U+10FFFF, no surrogates) to out; returns 1..4. */
size_t utf8_encode(uint32_t cp, char out[4]);

/* s[0..n) is well-formed UTF-8 (U+0000 allowed). */
bool utf8_valid(const char *s, size_t n);

/* s[0..n) is well-formed UTF-8 without NUL: what a D-Bus or C string can carry. */
bool utf8_valid_string(const char *s, size_t n);

/* The number of characters of the well-formed, NUL-terminated s. */
size_t utf8_chars(const char *s);
