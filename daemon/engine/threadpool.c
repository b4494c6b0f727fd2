/* SPDX-License-Identifier: MIT */
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "threadpool.h"

/* Workers spin this many rounds for the next job before they sleep. */
#define SPIN_ROUNDS 20000

struct worker {
        struct threadpool *tp;
        int index;
        pthread_t thread;
};

struct threadpool {
        int n;
        struct worker *workers;
        threadpool_fn fn;
        void *arg;
        atomic_uint generation;
        atomic_int pending;
        atomic_int sleeping;
        atomic_bool stop;
        pthread_mutex_t lock; /* protects the sleep/wake hand-over */
        pthread_cond_t wake;
};

static void *worker_main(void *p)
{
        struct worker *w = p;
        struct threadpool *tp = w->tp;
        unsigned seen = 0; /* the generation when the pool was made */

        for (;;) {
                int spins = 0;
                while (atomic_load(&tp->generation) == seen && !atomic_load(&tp->stop)) {
                        if (++spins < SPIN_ROUNDS) {
                                _mm_pause();
                                continue;
                        }
                        pthread_mutex_lock(&tp->lock);
                        atomic_fetch_add(&tp->sleeping, 1);
                        while (atomic_load(&tp->generation) == seen && !atomic_load(&tp->stop))
                                pthread_cond_wait(&tp->wake, &tp->lock);
                        atomic_fetch_sub(&tp->sleeping, 1);
                        pthread_mutex_unlock(&tp->lock);
                }
                if (atomic_load(&tp->stop))
                        return NULL;
                seen = atomic_load(&tp->generation);
                tp->fn(tp->arg, w->index, tp->n);
                atomic_fetch_sub(&tp->pending, 1);
        }
}

int threadpool_new(int n_threads, struct threadpool **ret)
{
        struct threadpool *tp = calloc(1, sizeof(*tp));
        int r;

        if (!tp)
                return -ENOMEM;
        if (n_threads < 1)
                n_threads = 1;
        tp->n = n_threads;
        pthread_mutex_init(&tp->lock, NULL);
        pthread_cond_init(&tp->wake, NULL);
        tp->workers = calloc(n_threads, sizeof(*tp->workers));
        if (!tp->workers) {
                free(tp);
                return -ENOMEM;
        }
        for (int i = 1; i < n_threads; i++) {
                tp->workers[i] = (struct worker) { .tp = tp, .index = i };
                r = pthread_create(&tp->workers[i].thread, NULL, worker_main, &tp->workers[i]);
                if (r != 0) {
                        tp->n = i;
                        threadpool_free(tp);
                        return -r;
                }
        }
        *ret = tp;
        return 0;
}

void threadpool_free(struct threadpool *tp)
{
        if (!tp)
                return;
        pthread_mutex_lock(&tp->lock);
        atomic_store(&tp->stop, true);
        pthread_cond_broadcast(&tp->wake);
        pthread_mutex_unlock(&tp->lock);
        for (int i = 1; i < tp->n; i++)
                pthread_join(tp->workers[i].thread, NULL);
        pthread_mutex_destroy(&tp->lock);
        pthread_cond_destroy(&tp->wake);
        free(tp->workers);
        free(tp);
}

int threadpool_size(const struct threadpool *tp)
{
        return tp->n;
}

void threadpool_run(struct threadpool *tp, threadpool_fn fn, void *arg)
{
        if (tp->n == 1) {
                fn(arg, 0, 1);
                return;
        }
        tp->fn = fn;
        tp->arg = arg;
        atomic_store(&tp->pending, tp->n - 1);
        atomic_fetch_add(&tp->generation, 1);
        if (atomic_load(&tp->sleeping) > 0) {
                pthread_mutex_lock(&tp->lock);
                pthread_cond_broadcast(&tp->wake);
                pthread_mutex_unlock(&tp->lock);
        }
        fn(arg, 0, tp->n);
        while (atomic_load(&tp->pending) > 0)
                _mm_pause();
}

void threadpool_split(int64_t n, int ith, int nth, int64_t align, int64_t *begin, int64_t *end)
{
        int64_t units = DIV_ROUND_UP(n, align);
        int64_t b = units * ith / nth, e = units * (ith + 1) / nth;
        *begin = MIN(b * align, n);
        *end = MIN(e * align, n);
}
