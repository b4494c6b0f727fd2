/* SPDX-License-Identifier: MIT */
#include <immintrin.h>
#include <sys/mman.h>

#include "kernels.h"
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

struct peak_job {
        int64_t iters;
        uint64_t sink[64];
};

/* keeps the compiler from treating v as loop-invariant, without an instruction */
#define OPAQUE(v) __asm__ volatile("" : "+x"(v))

/*
 * Six independent chains with six distinct operands, so nothing can be
 * shared or hoisted; each step is the int8 kernels' own multiply-add of 32
 * byte products (AVX2: vpsignb, vpmaddubsw, vpmaddwd, vpaddd; AVX-512 VNNI:
 * vpsignb, vpdpbusd).
 */
#define DEFINE_PEAK_WORKER(name, isa_target, STEP)                                                            \
        __attribute__((target(isa_target))) static void name(void *arg, int ith, int nth)                      \
        {                                                                                                 \
                struct peak_job *j = arg;                                                                 \
                __m256i a = _mm256_set1_epi8(3);                                                          \
                __m256i b0 = _mm256_set1_epi8(-5), b1 = _mm256_set1_epi8(7), b2 = _mm256_set1_epi8(9),    \
                        b3 = _mm256_set1_epi8(-11), b4 = _mm256_set1_epi8(13), b5 = _mm256_set1_epi8(-15); \
                __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0;         \
                for (int64_t i = 0; i < j->iters; i++) {                                                  \
                        OPAQUE(a);                                                                        \
                        OPAQUE(b0);                                                                       \
                        OPAQUE(b1);                                                                       \
                        OPAQUE(b2);                                                                       \
                        OPAQUE(b3);                                                                       \
                        OPAQUE(b4);                                                                       \
                        OPAQUE(b5);                                                                       \
                        s0 = STEP(s0, a, b0);                                                             \
                        s1 = STEP(s1, a, b1);                                                             \
                        s2 = STEP(s2, a, b2);                                                             \
                        s3 = STEP(s3, a, b3);                                                             \
                        s4 = STEP(s4, a, b4);                                                             \
                        s5 = STEP(s5, a, b5);                                                             \
                }                                                                                         \
                __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(s0, s1), _mm256_add_epi32(s2, s3)), \
                                             _mm256_add_epi32(s4, s5));                                   \
                j->sink[ith % 64] = (uint64_t)_mm256_extract_epi64(s, 0);                                 \
        }

#define STEP_AVX2(s, a, b) \
        _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(b, a)), _mm256_set1_epi16(1)))
#define STEP_VNNI(s, a, b) _mm256_dpbusd_epi32(s, a, _mm256_sign_epi8(b, a))

DEFINE_PEAK_WORKER(peak_worker_avx2, "avx2", STEP_AVX2)
DEFINE_PEAK_WORKER(peak_worker_vnni, "avx2,avx512f,avx512vl,avx512vnni", STEP_VNNI)

double measure_int8_peak(struct threadpool *tp)
{
        struct peak_job j = { .iters = 20000000 };
        double best = 0;

        if (kernels_isa() < KERNEL_ISA_AVX2)
                return 0;
        for (int rep = 0; rep < 3; rep++) {
                double t0 = now_ms();
                threadpool_run(tp, kernels_isa() == KERNEL_ISA_AVX512_VNNI ? peak_worker_vnni : peak_worker_avx2, &j);
                double s = (now_ms() - t0) / 1000.0;
                /* 6 steps x 32 products per iteration per thread */
                double macs = (double)j.iters * 6 * 32 * threadpool_size(tp);
                if (s > 0 && macs / s > best)
                        best = macs / s;
        }
        return best;
}
