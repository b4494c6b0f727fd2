/* SPDX-License-Identifier: MIT */
/* UTF-8 for the tokenizers: repairing ill-formed text (utf8.h decodes and encodes). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "utf8.h"

#define UNICODE_REPLACEMENT 0xFFFDu

/*
 * A copy of text in which every ill-formed subsequence is replaced by
 * U+FFFD, one per maximal subpart. NUL-terminated; *ret_len excludes the NUL.
 */
int utf8_repair(const char *text, size_t len, char **ret, size_t *ret_len);
