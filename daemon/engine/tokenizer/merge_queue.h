/* SPDX-License-Identifier: MIT */
/*
 * The merge queue of the BPE and SentencePiece tokenizers: a binary heap of
 * fixed-size items, the first by the tokenizer's order on top (lowest rank,
 * or highest score, then leftmost).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define MERGE_QUEUE_ITEM_MAX 64

struct merge_queue {
        unsigned char *items;
        size_t n, cap;
        size_t size; /* of an item, at most MERGE_QUEUE_ITEM_MAX */
        bool (*before)(const void *x, const void *y);
};

#define MERGE_QUEUE_INIT(type, before_fn) \
        ((struct merge_queue) { .size = sizeof(type), .before = (before_fn) })

int merge_queue_push(struct merge_queue *q, const void *item);

/* Moves the first item to *ret; the queue must not be empty. */
void merge_queue_pop(struct merge_queue *q, void *ret);

void merge_queue_done(struct merge_queue *q);
