/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "merge_queue.h"
#include "util.h"

static void *at(const struct merge_queue *q, size_t i)
{
        return q->items + i * q->size;
}

int merge_queue_push(struct merge_queue *q, const void *item)
{
        size_t i;

        assert(q->size > 0 && q->size <= MERGE_QUEUE_ITEM_MAX);
        if (q->n == q->cap) {
                size_t cap = MAX((size_t)64, q->cap * 2);
                unsigned char *a = reallocarray(q->items, cap, q->size);
                if (!a)
                        return -ENOMEM;
                q->items = a;
                q->cap = cap;
        }
        for (i = q->n++; i > 0;) {
                size_t p = (i - 1) / 2;
                if (!q->before(item, at(q, p)))
                        break;
                memcpy(at(q, i), at(q, p), q->size);
                i = p;
        }
        memcpy(at(q, i), item, q->size);
        return 0;
}

void merge_queue_pop(struct merge_queue *q, void *ret)
{
        unsigned char last[MERGE_QUEUE_ITEM_MAX];
        size_t i = 0;

        assert(q->n > 0);
        memcpy(ret, at(q, 0), q->size);
        memcpy(last, at(q, --q->n), q->size);
        for (;;) {
                size_t c = 2 * i + 1;
                if (c >= q->n)
                        break;
                if (c + 1 < q->n && q->before(at(q, c + 1), at(q, c)))
                        c++;
                if (!q->before(at(q, c), last))
                        break;
                memcpy(at(q, i), at(q, c), q->size);
                i = c;
        }
        if (q->n)
                memcpy(at(q, i), last, q->size);
}

void merge_queue_done(struct merge_queue *q)
{
        free(q->items);
        q->items = NULL;
        q->n = q->cap = 0;
}
