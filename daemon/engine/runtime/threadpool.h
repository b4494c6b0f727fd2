/* SPDX-License-Identifier: MIT */
/* A fixed pool of worker threads that run one function on all of them at once. */
#pragma once

#include "util.h"

struct threadpool;

typedef void (*threadpool_fn)(void *arg, int ith, int nth);

int threadpool_new(int n_threads, struct threadpool **ret);
void threadpool_free(struct threadpool *tp);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct threadpool *, threadpool_free);
int threadpool_size(const struct threadpool *tp);
/* Runs fn(arg, i, n) for i in 0..n-1, the caller's thread taking i = 0; returns when all are done. */
void threadpool_run(struct threadpool *tp, threadpool_fn fn, void *arg);
/* The [begin, end) share of n items for thread ith of nth, in multiples of align. */
void threadpool_split(int64_t n, int ith, int nth, int64_t align, int64_t *begin, int64_t *end);
