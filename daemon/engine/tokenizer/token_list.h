/* SPDX-License-Identifier: MIT */
/* A growing array of token ids, what the tokenizers append to. */
#pragma once

#include <stdint.h>

#include "util.h"

struct token_list {
        int32_t *a;
        size_t n, cap;
};

static inline int token_list_push(struct token_list *l, int32_t id)
{
        if (l->n == l->cap) {
                size_t cap = MAX((size_t)32, l->cap * 2);
                int32_t *a = realloc(l->a, cap * sizeof(*a));
                if (!a)
                        return -ENOMEM;
                l->a = a;
                l->cap = cap;
        }
        l->a[l->n++] = id;
        return 0;
}
