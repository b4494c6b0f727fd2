/* SPDX-License-Identifier: MIT */
#include <immintrin.h>
#include <sys/mman.h>

#include "membw.h"

struct bw_job {
        const uint8_t *buf;
        size_t bytes;
        uint64_t sink[64];
};

__attribute__((target("avx2"))) static void bw_worker(void *arg, int ith, int nth)
{
        struct bw_job *j = arg;
        int64_t b, e;
        threadpool_split((int64_t)(j->bytes / 256), ith, nth, 1, &b, &e);
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = b; i < e; i++) {
                const __m256i *p = (const __m256i *)(j->buf + i * 256);
                a0 = _mm256_add_epi64(a0, _mm256_load_si256(p));
                a1 = _mm256_add_epi64(a1, _mm256_load_si256(p + 1));
                a2 = _mm256_add_epi64(a2, _mm256_load_si256(p + 2));
                a3 = _mm256_add_epi64(a3, _mm256_load_si256(p + 3));
                a0 = _mm256_add_epi64(a0, _mm256_load_si256(p + 4));
                a1 = _mm256_add_epi64(a1, _mm256_load_si256(p + 5));
                a2 = _mm256_add_epi64(a2, _mm256_load_si256(p + 6));
                a3 = _mm256_add_epi64(a3, _mm256_load_si256(p + 7));
        }
        __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
        j->sink[ith % 64] = (uint64_t)_mm256_extract_epi64(s, 0);
}

double measure_read_bandwidth(struct threadpool *tp, size_t bytes)
{
        struct bw_job j = { .bytes = bytes };
        uint8_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        double best = 0;

        if (buf == MAP_FAILED || !__builtin_cpu_supports("avx2"))
                return 0;
        memset(buf, 1, bytes);
        j.buf = buf;
        for (int rep = 0; rep < 5; rep++) {
                double t0 = now_ms();
                threadpool_run(tp, bw_worker, &j);
                double s = (now_ms() - t0) / 1000.0;
                if (s > 0 && bytes / s > best)
                        best = bytes / s;
        }
        munmap(buf, bytes);
        return best;
}
