/* SPDX-License-Identifier: MIT */
#include <immintrin.h>
#include <sys/mman.h>
#include <unistd.h>

#include <stdatomic.h>

#include "amx_tiles.h"
#include "gemm_int8.h"
#include "kernels.h"
#include "membw.h"
#include "quant.h"

/*
 * The read bandwidth is measured the way decode reads a matrix
 * (gemm_int8_vnni.c's one-token tiles, the block types' kernels): chunks
 * of 64 rows handed out to the threads from a counter, each 4 panels of 16
 * rows read as 4 concurrent streams, a line of each in turn, each
 * prefetched 4 KiB ahead. At 4096 columns a chunk is 256 KiB. And as
 * plain reads: one stream a thread over its whole share, which on some
 * machines gets more out of memory than any interleaving.
 */
#define BW_CHUNK ((size_t)256 << 10)
#define BW_PREFETCH 4096
#define BW_RUN_BYTES ((size_t)1 << 30) /* read per run */
#define BW_RUNS 8                      /* of each pattern, alternating */

struct bw_job {
        const uint8_t *mem;
        size_t chunk;
        int64_t n_chunks;
        atomic_llong next;
        uint64_t sink[64];
};

/*
 * Chunks from the counter, each as STREAMS concurrent streams, a 64-byte
 * line of each in turn; several are prefetched as decode prefetches its
 * panels, a single one is left to the hardware prefetchers.
 */
#define DEFINE_BW_WORKER(STREAMS)                                                                          \
        __attribute__((target("avx2"))) static void bw_worker_##STREAMS(void *arg, int ith, int nth)         \
        {                                                                                                  \
                struct bw_job *j = arg;                                                                    \
                const size_t len = j->chunk / STREAMS;                                                     \
                (void)nth;                                                                                 \
                __m256i acc[STREAMS];                                                                      \
                for (int s = 0; s < STREAMS; s++)                                                          \
                        acc[s] = _mm256_setzero_si256();                                                   \
                for (int64_t c; (c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->n_chunks;) \
                        for (size_t i = 0; i < len; i += 64)                                               \
                                for (int s = 0; s < STREAMS; s++) {                                        \
                                        const uint8_t *p = j->mem + (size_t)c * j->chunk + s * len + i;    \
                                        if (STREAMS > 1)                                                   \
                                                _mm_prefetch((const char *)p + BW_PREFETCH, _MM_HINT_T0);   \
                                        acc[s] = _mm256_add_epi64(                                         \
                                                acc[s], _mm256_add_epi64(_mm256_load_si256((const __m256i *)p), \
                                                                         _mm256_load_si256((const __m256i *)p + 1))); \
                                }                                                                          \
                for (int s = 1; s < STREAMS; s++)                                                          \
                        acc[0] = _mm256_add_epi64(acc[0], acc[s]);                                         \
                j->sink[ith % 64] += (uint64_t)_mm256_extract_epi64(acc[0], 0);                            \
        }
DEFINE_BW_WORKER(1)
DEFINE_BW_WORKER(2)
DEFINE_BW_WORKER(4)

static const struct bw_pattern {
        void (*worker)(void *, int, int);
        bool share; /* a chunk is a thread's share of the run, not BW_CHUNK */
        const char *name;
} bw_patterns[] = {
        { bw_worker_4, false, "4 streams a thread, as decode" },
        { bw_worker_2, false, "2 streams a thread" },
        { bw_worker_1, true, "1 stream a thread" },
};

/*
 * A fresh buffer, on huge pages as the model's weights are (gguf.c), and
 * touched before it is timed.
 */
static uint8_t *bw_buffer(size_t bytes)
{
        uint8_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (buf == MAP_FAILED)
                return NULL;
        (void)madvise(buf, bytes, MADV_HUGEPAGE);
        memset(buf, 1, bytes);
        return buf;
}

/* Bytes/s reading the BW_RUN_BYTES at w in pattern p on all pool threads. */
static double bw_run(struct threadpool *tp, const struct bw_pattern *p, const uint8_t *w)
{
        /* a share: 4 KiB pages, what is left after the last share unread */
        const size_t chunk = p->share ? BW_RUN_BYTES / threadpool_size(tp) / 4096 * 4096 : BW_CHUNK;
        struct bw_job j = { .mem = w, .chunk = chunk, .n_chunks = (int64_t)(BW_RUN_BYTES / chunk) };

        atomic_init(&j.next, 0);
        double t0 = now_ms();
        threadpool_run(tp, p->worker, &j);
        double s = (now_ms() - t0) / 1000.0;
        return s > 0 ? (double)(j.n_chunks * chunk) / s : 0;
}

struct bw_probe {
        struct threadpool *tp;
        const uint8_t *start;
        uint8_t *own; /* a buffer of its own, or NULL */
        int windows, run;
};

void bw_probe_free(struct bw_probe *p)
{
        if (!p)
                return;
        if (p->own)
                munmap(p->own, BW_RUN_BYTES);
        free(p);
}

int bw_probe_new(struct threadpool *tp, const void *mem, size_t bytes, struct bw_probe **ret)
{
        const uint8_t *end = (const uint8_t *)mem + bytes;
        _cleanup_(bw_probe_freep) struct bw_probe *p = NULL;

        if (!__builtin_cpu_supports("avx2"))
                return -EOPNOTSUPP;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->tp = tp;
        /* whole runs from a 4 KiB boundary, or a buffer of its own */
        p->start = (const uint8_t *)(((uintptr_t)mem + 4095) & ~(uintptr_t)4095);
        if (!mem || end < p->start + BW_RUN_BYTES) {
                p->own = bw_buffer(BW_RUN_BYTES);
                if (!p->own)
                        return -ENOMEM;
                p->start = p->own;
                end = p->own + BW_RUN_BYTES;
        }
        /* the runs take the windows of BW_RUN_BYTES in turn: on a large model no run reads what the last one read */
        p->windows = (int)((size_t)(end - p->start) / BW_RUN_BYTES);
        /* not timed: every page present and mapped before the timed runs */
        for (int w = 0; w < p->windows; w++)
                (void)bw_run(tp, &bw_patterns[0], p->start + (size_t)w * BW_RUN_BYTES);
        *ret = TAKE_PTR(p);
        return 0;
}

double bw_probe_sample(struct bw_probe *p, const char **how)
{
        double best = 0;

        for (size_t i = 0; i < ARRAY_SIZE(bw_patterns); i++, p->run++) {
                const uint8_t *window = p->start + (size_t)(p->run % p->windows) * BW_RUN_BYTES;
                const double bw = bw_run(p->tp, &bw_patterns[i], window);
                if (bw > best) {
                        best = bw;
                        *how = bw_patterns[i].name;
                }
        }
        return best;
}

double measure_read_bandwidth(struct threadpool *tp, const void *mem, size_t bytes, const char **how)
{
        _cleanup_(bw_probe_freep) struct bw_probe *p = NULL;
        double best = 0;

        *how = "none (no AVX2)";
        if (bw_probe_new(tp, mem, bytes, &p) < 0)
                return 0;
        for (int run = 0; run < BW_RUNS; run++) {
                const char *h;
                const double bw = bw_probe_sample(p, &h);
                if (bw > best) {
                        best = bw;
                        *how = h;
                }
        }
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
 * AMX: tdpbssd into four independent accumulator tiles (C[16][16] int32 +=
 * A[16][64] s8 x B[64][16] s8, 16384 products each) from two operand
 * tiles loaded once: the tile unit's throughput. Tiles 0-3 accumulate, 4
 * and 5 hold the operands.
 */
#define AMX_PEAK_CHAINS 4
#define AMX_PEAK_PRODUCTS (16 * 16 * 64)

__attribute__((target("amx-tile,amx-int8"))) static void peak_worker_amx(void *arg, int ith, int nth)
{
        struct peak_job *j = arg;
        struct amx_tile_config c = { .palette = 1 };
        _Alignas(64) int8_t ops[16][64];
        _Alignas(64) int32_t sums[16][16];

        (void)nth;
        for (int i = 0; i < 6; i++) {
                c.rows[i] = 16;
                c.colsb[i] = 64;
        }
        memset(ops, 3, sizeof(ops));
        _tile_loadconfig(&c);
        _tile_loadd(4, ops, 64);
        _tile_loadd(5, ops, 64);
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t i = 0; i < j->iters; i++) {
                _tile_dpbssd(0, 4, 5);
                _tile_dpbssd(1, 4, 5);
                _tile_dpbssd(2, 4, 5);
                _tile_dpbssd(3, 4, 5);
        }
        _tile_stored(0, sums, 64);
        j->sink[ith % 64] = (uint64_t)sums[0][0];
        _tile_stored(3, sums, 64);
        j->sink[ith % 64] += (uint64_t)sums[15][15];
        _tile_release();
}

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

double measure_amx_peak(struct threadpool *tp)
{
        if (kernels_isa() != KERNEL_ISA_AMX)
                return 0;
        return peak_of(tp, peak_worker_amx, AMX_PEAK_PRODUCTS, AMX_PEAK_CHAINS);
}

struct gemm_job {
        const struct npu_weight *w;
        const struct act_q *a;
        int64_t n_tok;
        float *y;
        atomic_llong next;
};

/* chunks from a shared counter, as the cpu back end hands them out (64 rows, or the GEMM's choice) */
static void gemm_worker(void *arg, int ith, int nth)
{
        struct gemm_job *j = arg;
        const int64_t rows = gemm_i8_chunk_rows(j->w, j->a, j->n_tok, 64);
        for (;;) {
                int64_t r0 = rows * atomic_fetch_add(&j->next, 1);
                if (r0 >= j->w->rows)
                        return;
                matmul_int8_rows(j->w, j->a, j->n_tok, j->y, j->w->rows, r0, MIN(r0 + rows, j->w->rows));
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
