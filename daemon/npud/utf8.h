/* SPDX-License-Identifier: MIT */
/* UTF-8 checks for D-Bus strings: prompts given as bytes, pieces sent as text. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence at s[0..n): 1..4, 0 when s is a valid but incomplete prefix, -1 if invalid. */
int utf8_sequence_length(const uint8_t *s, size_t n);

bool utf8_is_valid(const uint8_t *s, size_t n);
