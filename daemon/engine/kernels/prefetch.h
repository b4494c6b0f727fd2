/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Into L1: the first `bytes` of n rows, stride apart (a block's slice the walk takes next). */
static inline __attribute__((always_inline)) void prefetch_rows_l1(const void *x, size_t stride, int32_t n,
                                                                   int32_t bytes)
{
        for (int32_t r = 0; r < n; r++)
                for (int32_t b = 0; b < bytes; b += 64)
                        __builtin_prefetch((const char *)x + (size_t)r * stride + b, 0, 3);
}
