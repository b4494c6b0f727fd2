/* SPDX-License-Identifier: MIT */
/* Intrusive doubly linked lists: head and tail pointers, and the item's prev/next fields named. */
#pragma once

#include <stddef.h>

#define LIST_APPEND(head, tail, x, prev_f, next_f)             \
        do {                                                   \
                (x)->prev_f = (tail);                          \
                (x)->next_f = NULL;                            \
                if (tail)                                      \
                        (tail)->next_f = (x);                  \
                else                                           \
                        (head) = (x);                          \
                (tail) = (x);                                  \
        } while (0)

#define LIST_REMOVE(head, tail, x, prev_f, next_f)             \
        do {                                                   \
                if ((x)->prev_f)                               \
                        (x)->prev_f->next_f = (x)->next_f;     \
                else                                           \
                        (head) = (x)->next_f;                  \
                if ((x)->next_f)                               \
                        (x)->next_f->prev_f = (x)->prev_f;     \
                else                                           \
                        (tail) = (x)->prev_f;                  \
                (x)->prev_f = (x)->next_f = NULL;              \
        } while (0)
