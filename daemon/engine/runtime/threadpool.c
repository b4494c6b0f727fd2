/* SPDX-License-Identifier: MIT */
/*
 * A job is n shares (fn(arg, i, n) for i < n), claimed from a counter by
 * whichever thread gets there first: the caller takes one, and any share a
 * worker has not claimed by the time the caller's own is done (and as long
 * again has passed) the caller runs itself. So a worker that is asleep or
 * descheduled (a busy machine) does not hold the pass up by more than one
 * share it is in the middle of. Each share runs once, on one thread, with
 * its own index, so per-share scratch (indexed by i) is never shared.
 */
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <x86intrin.h>

#include "threadpool.h"

/* Workers spin this many rounds for the next job before they sleep. */
#define SPIN_ROUNDS 20000
/* The caller spins this many rounds for the last shares to finish before it yields its cpu between checks. */
#define WAIT_SPIN_ROUNDS 4000

struct worker {
        struct threadpool *tp;
        int index;
        pthread_t thread;
};

struct threadpool {
        int n;
        struct worker *workers;
        /* the current job; written only while no share of the previous one is running */
        threadpool_fn fn;
        void *arg;
        /* generation of the job << 32 | next share to claim */
        _Atomic uint64_t state;
        /* shares of the current job that have finished */
        atomic_int done;
        atomic_int sleeping;
        atomic_bool stop;
        pthread_mutex_t lock; /* protects the sleep/wake hand-over */
        pthread_cond_t wake;
};

static inline uint32_t state_gen(uint64_t s)
{
        return (uint32_t)(s >> 32);
}

static inline uint32_t state_next(uint64_t s)
{
        return (uint32_t)s;
}

static void *worker_main(void *p)
{
        struct worker *w = p;
        struct threadpool *tp = w->tp;
        uint32_t seen = 0; /* the generation whose shares are all claimed; 0: the pool as made */

        for (;;) {
                int spins = 0;
                uint64_t s;
                while (state_gen(s = atomic_load(&tp->state)) == seen && !atomic_load(&tp->stop)) {
                        if (++spins < SPIN_ROUNDS) {
                                _mm_pause();
                                continue;
                        }
                        pthread_mutex_lock(&tp->lock);
                        atomic_fetch_add(&tp->sleeping, 1);
                        while (state_gen(atomic_load(&tp->state)) == seen && !atomic_load(&tp->stop))
                                pthread_cond_wait(&tp->wake, &tp->lock);
                        atomic_fetch_sub(&tp->sleeping, 1);
                        pthread_mutex_unlock(&tp->lock);
                        spins = 0;
                }
                if (atomic_load(&tp->stop))
                        return NULL;
                if (state_next(s) >= (uint32_t)tp->n) {
                        seen = state_gen(s);
                        continue;
                }
                /*
                 * Claiming a share of this generation pins the job: the caller
                 * cannot move on (and rewrite fn and arg) before it is done.
                 */
                if (!atomic_compare_exchange_weak(&tp->state, &s, s + 1))
                        continue;
                tp->fn(tp->arg, (int)state_next(s), tp->n);
                atomic_fetch_add(&tp->done, 1);
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

/* Claims and runs the next share; false when every share is claimed. */
static bool run_next_share(struct threadpool *tp, threadpool_fn fn, void *arg)
{
        uint32_t i = state_next(atomic_fetch_add(&tp->state, 1));
        if (i >= (uint32_t)tp->n)
                return false;
        fn(arg, (int)i, tp->n);
        atomic_fetch_add(&tp->done, 1);
        return true;
}

void threadpool_run(struct threadpool *tp, threadpool_fn fn, void *arg)
{
        const uint32_t n = (uint32_t)tp->n;

        if (n == 1) {
                fn(arg, 0, 1);
                return;
        }
        tp->fn = fn;
        tp->arg = arg;
        atomic_store(&tp->done, 0);
        uint32_t gen = state_gen(atomic_load(&tp->state)) + 1;
        if (gen == 0)
                gen = 1; /* 0 is what the workers start out having seen */
        atomic_store(&tp->state, (uint64_t)gen << 32);
        if (atomic_load(&tp->sleeping) > 0) {
                pthread_mutex_lock(&tp->lock);
                pthread_cond_broadcast(&tp->wake);
                pthread_mutex_unlock(&tp->lock);
        }

        /* our own share, timed: a worker that has not started one by as long again is not coming soon */
        uint64_t t0 = __rdtsc();
        run_next_share(tp, fn, arg);
        uint64_t own = __rdtsc() - t0, t1 = __rdtsc();
        while (state_next(atomic_load(&tp->state)) < n) {
                if (__rdtsc() - t1 > own) {
                        if (!run_next_share(tp, fn, arg))
                                break;
                        t1 = __rdtsc();
                } else {
                        _mm_pause();
                }
        }
        for (int spins = 0; atomic_load(&tp->done) < (int)n; spins++) {
                if (spins < WAIT_SPIN_ROUNDS)
                        _mm_pause();
                else
                        sched_yield();
        }
}

void threadpool_split(int64_t n, int ith, int nth, int64_t align, int64_t *begin, int64_t *end)
{
        int64_t units = DIV_ROUND_UP(n, align);
        int64_t b = units * ith / nth, e = units * (ith + 1) / nth;
        *begin = MIN(b * align, n);
        *end = MIN(e * align, n);
}
