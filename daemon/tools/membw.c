/* SPDX-License-Identifier: MIT */
#include <immintrin.h>
#include <sys/mman.h>

#include <stdatomic.h>

#include "kernels.h"
#include "membw.h"
#include "quant.h"

struct bw_job {
        const uint8_t *buf;
        size_t bytes;
        uint64_t sink[64];
};

#define BW_STREAMS 4
#define BW_PREFETCH 4096

/* One sequential stream per thread, plain loads (what the hardware prefetchers see best on most cpus). */
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

/*
 * BW_STREAMS streams per thread, each prefetched BW_PREFETCH bytes ahead:
 * the way the int8 GEMM reads a decode step's weights (a panel per stream),
 * which on some machines gets more out of memory than one stream does.
 */
__attribute__((target("avx2"))) static void bw_worker_streams(void *arg, int ith, int nth)
{
        struct bw_job *j = arg;
        int64_t b, e;
        threadpool_split((int64_t)(j->bytes / 256), ith, nth, BW_STREAMS, &b, &e);
        const int64_t n = (e - b) / BW_STREAMS;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < n; i++)
                for (int s = 0; s < BW_STREAMS; s++) {
                        const __m256i *p = (const __m256i *)(j->buf + (b + s * n + i) * 256);
                        for (int c = 0; c < 4; c++)
                                _mm_prefetch((const char *)p + BW_PREFETCH + 64 * c, _MM_HINT_T0);
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

/* The best of both ways to read, five runs each, alternating. */
double measure_read_bandwidth(struct threadpool *tp, size_t bytes)
{
        struct bw_job j = { .bytes = bytes };
        uint8_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        double best = 0;

        if (buf == MAP_FAILED || !__builtin_cpu_supports("avx2"))
                return 0;
        (void)madvise(buf, bytes, MADV_HUGEPAGE);
        memset(buf, 1, bytes);
        j.buf = buf;
        for (int rep = 0; rep < 10; rep++) {
                double t0 = now_ms();
                threadpool_run(tp, rep % 2 ? bw_worker_streams : bw_worker, &j);
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
 * The machine's int8 peak: independent chains of one instruction sequence
 * that multiplies unsigned by signed bytes and adds them into int32 lanes,
 * run from registers on every pool thread. Twelve vpdpbusd chains cover
 * its latency (about 5 cycles) at two instructions per cycle. No
 * sign step and no loads: this is what the execution units can do, the
 * figure a GEMM is measured against, not any kernel's instruction mix.
 *   AVX-512 VNNI: vpdpbusd, on 256-bit and on 512-bit vectors (the larger
 *                 figure counts: some cpus run 512-bit vpdpbusd on one
 *                 port only, others on two);
 *   AVX2:         vpmaddubsw, vpmaddwd by ones, vpaddd.
 */
#define DEFINE_PEAK_WORKER(name, isa_target, vec, zero, set1, add32, STEP, BYTES)                          \
        __attribute__((target(isa_target))) static void name(void *arg, int ith, int nth)                  \
        {                                                                                                  \
                struct peak_job *j = arg;                                                                  \
                vec u = set1(3), b0 = set1(-5), b1 = set1(7), b2 = set1(-9), b3 = set1(11), b4 = set1(-13), \
                    b5 = set1(15);                                                                         \
                /* each chain from its own value: chains k and k + 6 share operands, and from equal */    \
                /* values the compiler would compute one and count it twice */                             \
                vec s0 = zero(), s1 = set1(1), s2 = set1(2), s3 = set1(3), s4 = set1(4), s5 = set1(5),     \
                    s6 = set1(6), s7 = set1(7), s8 = set1(8), s9 = set1(9), s10 = set1(10), s11 = set1(11);  \
                for (int64_t i = 0; i < j->iters; i++) {                                                   \
                        OPAQUE(u);                                                                         \
                        OPAQUE(b0);                                                                        \
                        OPAQUE(b1);                                                                        \
                        OPAQUE(b2);                                                                        \
                        OPAQUE(b3);                                                                        \
                        OPAQUE(b4);                                                                        \
                        OPAQUE(b5);                                                                        \
                        s0 = STEP(s0, u, b0);                                                              \
                        s1 = STEP(s1, u, b1);                                                              \
                        s2 = STEP(s2, u, b2);                                                              \
                        s3 = STEP(s3, u, b3);                                                              \
                        s4 = STEP(s4, u, b4);                                                              \
                        s5 = STEP(s5, u, b5);                                                              \
                        if (CHAINS > 6) {                                                                  \
                                s6 = STEP(s6, u, b0);                                                      \
                                s7 = STEP(s7, u, b1);                                                      \
                                s8 = STEP(s8, u, b2);                                                      \
                                s9 = STEP(s9, u, b3);                                                      \
                                s10 = STEP(s10, u, b4);                                                    \
                                s11 = STEP(s11, u, b5);                                                    \
                        }                                                                                  \
                }                                                                                          \
                vec s = add32(add32(add32(add32(s0, s1), add32(s2, s3)), add32(add32(s4, s5), add32(s6, s7))), \
                              add32(add32(s8, s9), add32(s10, s11)));                                      \
                int32_t lanes[BYTES / 4];                                                                  \
                memcpy(lanes, &s, sizeof(lanes));                                                          \
                j->sink[ith % 64] = (uint64_t)lanes[0];                                                    \
        }

/*
 * AVX2 has 16 vector registers: six chains, each with its own operand (the
 * products would otherwise be computed once and shared), are enough, since
 * only the vpaddd (one cycle) links the steps of a chain.
 */
#define CHAINS 6
#define STEP_AVX2(s, u, b) _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(u, b), _mm256_set1_epi16(1)))
#define STEP_VNNI256(s, u, b) _mm256_dpbusd_epi32(s, u, b)
#define STEP_VNNI512(s, u, b) _mm512_dpbusd_epi32(s, u, b)

DEFINE_PEAK_WORKER(peak_worker_avx2, "avx2", __m256i, _mm256_setzero_si256, _mm256_set1_epi8, _mm256_add_epi32,
                   STEP_AVX2, 32)
#undef CHAINS
#define CHAINS 12
DEFINE_PEAK_WORKER(peak_worker_vnni256, "avx2,avx512f,avx512vl,avx512vnni", __m256i, _mm256_setzero_si256,
                   _mm256_set1_epi8, _mm256_add_epi32, STEP_VNNI256, 32)
DEFINE_PEAK_WORKER(peak_worker_vnni512, "avx2,avx512f,avx512bw,avx512vnni", __m512i, _mm512_setzero_si512,
                   _mm512_set1_epi8, _mm512_add_epi32, STEP_VNNI512, 64)
#undef CHAINS

/*
 * The best of many short runs (about 4 ms each on one core): on a shared
 * machine a long run measures the neighbours as much as the cpu, while the
 * best short one is what the execution units can do. All pool threads
 * together, or the calling thread alone times the number of threads (on a
 * busy machine the threads seldom all run at once): the higher figure, the
 * stricter one to be compared with.
 */
static double peak_of(struct threadpool *tp, void (*worker)(void *, int, int), int bytes, int chains)
{
        struct peak_job j = { .iters = 16000000 / (chains * bytes) * 64 };
        double best = 0;

        for (int rep = 0; rep < 80; rep++) {
                /* odd runs: the calling thread alone, counted once per pool thread (cores run alike) */
                const bool alone = rep % 2;
                double t0 = now_ms();
                if (alone)
                        worker(&j, 0, 1);
                else
                        threadpool_run(tp, worker, &j);
                double s = (now_ms() - t0) / 1000.0;
                /* `chains` steps of `bytes` products per iteration per thread */
                double macs = (double)j.iters * chains * bytes * threadpool_size(tp);
                if (s > 0 && macs / s > best)
                        best = macs / s;
        }
        return best;
}

double measure_int8_peak(struct threadpool *tp, const char **how)
{
        static const char *none = "none (no AVX2)";

        *how = none;
        if (kernels_isa() < KERNEL_ISA_AVX2)
                return 0;
        if (kernels_isa() == KERNEL_ISA_AVX2) {
                *how = "vpmaddubsw+vpmaddwd+vpaddd, 256-bit";
                return peak_of(tp, peak_worker_avx2, 32, 6);
        }
        double y = peak_of(tp, peak_worker_vnni256, 32, 12), z = peak_of(tp, peak_worker_vnni512, 64, 12);
        *how = z > y ? "vpdpbusd, 512-bit" : "vpdpbusd, 256-bit";
        return MAX(y, z);
}

struct gemm_job {
        const struct npu_weight *w;
        const struct act_q *a;
        int64_t n_tok;
        float *y;
        atomic_llong next;
};

/* 64-row chunks from a shared counter, as the cpu back end hands them out */
static void gemm_worker(void *arg, int ith, int nth)
{
        struct gemm_job *j = arg;
        for (;;) {
                int64_t r0 = 64 * atomic_fetch_add(&j->next, 1);
                if (r0 >= j->w->rows)
                        return;
                matmul_int8_rows(j->w, j->a, j->n_tok, j->y, j->w->rows, r0, MIN(r0 + 64, j->w->rows));
        }
}

double measure_gemm(struct threadpool *tp, const struct npu_weight *w, enum npu_precision prec, int64_t n_tok)
{
        const int64_t K = w->cols;
        _cleanup_free_ float *x = malloc(sizeof(float) * n_tok * K), *y = malloc(sizeof(float) * n_tok * w->rows);
        struct act_q a;
        double best = 0;

        if (!x || !y || w->type != GGML_TYPE_I8 || act_q_alloc(&a, (int32_t)n_tok, K) < 0)
                return 0;
        uint64_t s = 0x2545f4914f6cdd1dull;
        for (int64_t i = 0; i < n_tok * K; i++) {
                s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                x[i] = (float)(int64_t)(s % 2001 - 1000) / 1000.0f;
        }
        act_quantize_rows(&a, prec, x, K, 0, n_tok);
        for (int rep = 0; rep < 10; rep++) {
                struct gemm_job j = { .w = w, .a = &a, .n_tok = n_tok, .y = y };
                atomic_init(&j.next, 0);
                double t0 = now_ms();
                threadpool_run(tp, gemm_worker, &j);
                double t = (now_ms() - t0) / 1000.0;
                if (t > 0 && 2.0 * w->rows * K * n_tok / t > best)
                        best = 2.0 * w->rows * K * n_tok / t;
        }
        act_q_free(&a);
        return best;
}
