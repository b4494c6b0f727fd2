/* SPDX-License-Identifier: MIT */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fp16.h"
#include "kernels.h"

#define ARCH_REQ_XCOMP_PERM 0x1023 /* arch/x86/include/uapi/asm/prctl.h */
#define XFEATURE_XTILEDATA 18

static enum kernel_isa isa = KERNEL_ISA_SCALAR;
static bool isa_ready;

const char *kernels_isa_name(enum kernel_isa i)
{
        switch (i) {
        case KERNEL_ISA_AMX: return "amx";
        case KERNEL_ISA_AVX512_VNNI: return "avx512vnni";
        case KERNEL_ISA_AVX2: return "avx2";
        default: return "scalar";
        }
}

/*
 * Linux hands out the AMX tiles' 8 KiB of register state only to processes
 * that ask (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA, kernel 5.16 on);
 * asked once, for the whole process.
 */
static bool amx_permitted(void)
{
        static int permitted = -1;

        if (permitted < 0)
                permitted = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
        return permitted;
}

static bool cpu_has(enum kernel_isa i)
{
        if (i == KERNEL_ISA_SCALAR)
                return true;
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c"))
                return false;
        if (i == KERNEL_ISA_AVX2)
                return true;
        if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vl") ||
            !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vnni"))
                return false;
        if (i == KERNEL_ISA_AVX512_VNNI)
                return true;
        return i == KERNEL_ISA_AMX && __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-int8") &&
               amx_permitted();
}

void kernels_init(void)
{
        const char *e;

        /* every kernel asks (kernels_isa) on every call: no getenv once the answer is known */
        if (isa_ready)
                return;
        e = getenv("NPU_KERNELS");
        isa = KERNEL_ISA_SCALAR;
        for (enum kernel_isa i = KERNEL_ISA_AMX; i > KERNEL_ISA_SCALAR; i--)
                if (cpu_has(i)) {
                        isa = i;
                        break;
                }
        /* a lower set than the best one on request, for comparisons */
        for (enum kernel_isa i = KERNEL_ISA_SCALAR; e && i < isa; i++)
                if (strcmp(e, kernels_isa_name(i)) == 0)
                        isa = i;
        isa_ready = true;
}

enum kernel_isa kernels_isa(void)
{
        kernels_init();
        return isa;
}

void kernels_reset_isa(void)
{
        isa_ready = false;
        kernels_init();
}

int kernels_force_isa(enum kernel_isa i)
{
        if (!cpu_has(i))
                return -EOPNOTSUPP;
        isa = i;
        isa_ready = true;
        return 0;
}

/* --- portable C --- */

static float weight_at(const struct npu_weight *w, const uint8_t *row, int64_t k)
{
        switch (w->type) {
        case GGML_TYPE_F32: {
                float f;
                memcpy(&f, row + 4 * k, 4);
                return f;
        }
        case GGML_TYPE_F16: {
                uint16_t h;
                memcpy(&h, row + 2 * k, 2);
                return f16_to_f32(h);
        }
        case GGML_TYPE_BF16: {
                uint16_t h;
                memcpy(&h, row + 2 * k, 2);
                return bf16_to_f32(h);
        }
        default:
                return 0;
        }
}

static void matmul_scalar(const struct npu_weight *w, const float *x, int64_t n_tok, size_t xs,
                          float *y, size_t ys, int64_t r0, int64_t r1)
{
        for (int64_t r = r0; r < r1; r++) {
                const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
                for (int64_t t = 0; t < n_tok; t++) {
                        const float *xt = x + t * xs;
                        float s = 0;
                        for (int64_t k = 0; k < w->cols; k++)
                                s += weight_at(w, row, k) * xt[k];
                        y[t * ys + r] = s;
                }
        }
}

/* --- AVX2 --- */

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

AVX2_INLINE __m256 load8_f32(const uint8_t *row, int64_t k)
{
        return _mm256_loadu_ps((const float *)row + k);
}

AVX2_INLINE __m256 load8_f16(const uint8_t *row, int64_t k)
{
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * k)));
}

AVX2_INLINE __m256 load8_bf16(const uint8_t *row, int64_t k)
{
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * k)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

AVX2_INLINE float hsum8(__m256 v)
{
        __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
        lo = _mm_add_ps(lo, hi);
        lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
        lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
        return _mm_cvtss_f32(lo);
}

#define ESIZE_f32 4
#define ESIZE_f16 2
#define ESIZE_bf16 2
/*
 * A tile takes 4 rows a quarter of its block apart (r, r + S, r + 2S,
 * r + 3S), and the next tile the rows after those: each row of a tile is a
 * stream through its quarter of the block in address order, prefetched into
 * L1 PREFETCH_AHEAD bytes ahead of its loads, once per 64-byte line, on
 * into the next row past a row's end. For one token at 32000 x 4096 f16 on
 * 2 threads (the output head), against tiles of 4 neighbouring rows with
 * the next tile's rows prefetched into L2: 2048 bytes ahead won over 1024,
 * 3072 and 4096, over L2 and non-temporal hints, and over 8 rows a tile;
 * the quarters over neighbouring rows (whose streams are one row long).
 */
#define PREFETCH_AHEAD 2048
#define LINE_ELEMS(type) (64 / ESIZE_##type)
#define PREFETCH_AHEAD_ROWS(type, rows, RB, rstep, k)                                                  \
        for (int i = 0; i < RB; i++)                                                                 \
                _mm_prefetch((const char *)(rows) + i * (rstep) + (k) * ESIZE_##type + PREFETCH_AHEAD, _MM_HINT_T0)

/*
 * A tile's walk over k up to K8: step (a tile's step function) at every 8
 * columns, in order, with the rows' streams prefetched once per line.
 */
#define WALK_K(type, step, rows, rstep, RB, x, xs, T, acc, K8)                                         \
        do {                                                                                         \
                int64_t k_ = 0;                                                                      \
                for (; k_ + LINE_ELEMS(type) <= (K8); k_ += LINE_ELEMS(type)) {                      \
                        PREFETCH_AHEAD_ROWS(type, rows, RB, rstep, k_);                              \
                        for (int s_ = 0; s_ < LINE_ELEMS(type); s_ += 8)                             \
                                step(rows, rstep, RB, x, xs, T, acc, k_ + s_);                       \
                }                                                                                    \
                for (; k_ < (K8); k_ += 8)                                                           \
                        step(rows, rstep, RB, x, xs, T, acc, k_);                                    \
        } while (0)

/*
 * The tiles of rows [rb, re) of a matmul's block for tokens xt (outputs yt),
 * as above, then the last (re - rb) % 4 rows alone.
 */
#define BLOCK_TILES(tile, TB)                                                                          \
        do {                                                                                         \
                const int64_t q_ = (re - rb) / 4;                                                    \
                for (int64_t r = rb; r < rb + q_; r++)                                               \
                        tile(w, base + r * w->row_bytes, 4, q_, xt, xs, TB, yt + r, ys);             \
                for (int64_t r = rb + 4 * q_; r < re; r++)                                           \
                        tile(w, base + r * w->row_bytes, 1, 1, xt, xs, TB, yt + r, ys);              \
        } while (0)

/*
 * One tile of RB rows, rs rows apart, x TB tokens. Each output owns one
 * accumulator that walks k in steps of 8, so its value does not depend on
 * RB, rs or TB, nor on the instruction set the tile is compiled for (the
 * same 8-lane operations).
 */
#define DEFINE_TILE(type, pfx, TARGET)                                                                 \
        /* the tile's step at k: 8 columns of RB rows by TB tokens, into acc */                      \
        static inline __attribute__((always_inline, target(TARGET))) void pfx##step_##type(          \
                const uint8_t *rows, size_t rstep, const int RB, const float *x, size_t xs, const int TB, \
                __m256 acc[4][4], int64_t k)                                                         \
        {                                                                                            \
                __m256 xv[4];                                                                        \
                for (int j = 0; j < TB; j++)                                                         \
                        xv[j] = _mm256_loadu_ps(x + j * xs + k);                                     \
                for (int i = 0; i < RB; i++) {                                                       \
                        __m256 wv = load8_##type(rows + i * rstep, k);                               \
                        for (int j = 0; j < TB; j++)                                                 \
                                acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);                  \
                }                                                                                    \
        }                                                                                            \
        static inline __attribute__((always_inline, target(TARGET))) void pfx##tile_##type(          \
                const struct npu_weight *w, const uint8_t *rows, const int RB, int64_t rs, const float *x, \
                size_t xs, const int TB, float *y, size_t ys)                                        \
        {                                                                                            \
                const int64_t K = w->cols, K8 = K & ~7;                                              \
                const size_t rstep = rs * w->row_bytes;                                              \
                __m256 acc[4][4];                                                                    \
                for (int i = 0; i < RB; i++)                                                         \
                        for (int j = 0; j < TB; j++)                                                 \
                                acc[i][j] = _mm256_setzero_ps();                                     \
                WALK_K(type, pfx##step_##type, rows, rstep, RB, x, xs, TB, acc, K8);                 \
                for (int i = 0; i < RB; i++)                                                         \
                        for (int j = 0; j < TB; j++) {                                               \
                                float s = hsum8(acc[i][j]);                                          \
                                for (int64_t c = K8; c < K; c++)                                     \
                                        s += weight_at(w, rows + i * rstep, c) * x[j * xs + c];      \
                                y[j * ys + i * rs] = s;                                              \
                        }                                                                            \
        }

/*
 * Blocks of 16 rows, read from memory once and then from cache by every
 * group of TBMAX tokens (a smaller group for the last tokens); with one
 * group, the whole range is one block.
 */
#define DEFINE_MATMUL(type, pfx, TARGET, TBMAX)                                                         \
        DEFINE_TILE(type, pfx, TARGET)                                                               \
        static __attribute__((target(TARGET))) void pfx##matmul_##type(                              \
                const struct npu_weight *w, const float *x, int64_t n_tok, size_t xs, float *y, size_t ys, \
                int64_t r0, int64_t r1)                                                              \
        {                                                                                            \
                const int64_t RBLK = n_tok <= TBMAX ? r1 - r0 : 16;                                  \
                const uint8_t *base = (const uint8_t *)w->data;                                      \
                for (int64_t rb = r0; rb < r1; rb += RBLK) {                                         \
                        const int64_t re = MIN(rb + RBLK, r1);                                       \
                        for (int64_t t = 0; t < n_tok;) {                                            \
                                const int tb = n_tok - t >= TBMAX ? TBMAX : n_tok - t >= 2 ? 2 : 1;  \
                                const float *xt = x + t * xs;                                        \
                                float *yt = y + t * ys;                                              \
                                if (tb == TBMAX)                                                     \
                                        BLOCK_TILES(pfx##tile_##type, TBMAX);                        \
                                else if (tb == 2)                                                    \
                                        BLOCK_TILES(pfx##tile_##type, 2);                            \
                                else                                                                 \
                                        BLOCK_TILES(pfx##tile_##type, 1);                            \
                                t += tb;                                                             \
                        }                                                                            \
                }                                                                                    \
        }

/* AVX2: 16 vector registers, tiles of 4 rows x 2 tokens */
DEFINE_MATMUL(f32, avx2_, "avx2,fma,f16c", 2)
DEFINE_MATMUL(f16, avx2_, "avx2,fma,f16c", 2)
DEFINE_MATMUL(bf16, avx2_, "avx2,fma,f16c", 2)

/*
 * AVX-512 cpus: the same 8-lane sums, two tokens to a 512-bit register.
 * Lanes 0-7 hold one token's accumulator of a row, lanes 8-15 the next
 * token's, against the row's 8 weights in both halves; each half walks k
 * as AVX2's accumulator does and is summed by hsum8, so results are those
 * of AVX2 bit for bit, at half the multiply-adds and with each weight
 * vector converted once for up to 8 tokens (the output head of a batch of
 * decode steps). An odd last token takes the 8-lane tile.
 */
#define AVX512_TARGET "avx2,fma,f16c,avx512f,avx512vl"
#define AVX512_INLINE static inline __attribute__((always_inline, target(AVX512_TARGET)))
DEFINE_TILE(f32, avx512_, AVX512_TARGET)
DEFINE_TILE(f16, avx512_, AVX512_TARGET)
DEFINE_TILE(bf16, avx512_, AVX512_TARGET)

/* a row's 8 weights at k in both halves */
AVX512_INLINE __m512 load8x2_f32(const uint8_t *row, int64_t k)
{
        __m512 v = _mm512_castps256_ps512(load8_f32(row, k));
        return _mm512_shuffle_f32x4(v, v, 0x44);
}

AVX512_INLINE __m512 load8x2_f16(const uint8_t *row, int64_t k)
{
        return _mm512_cvtph_ps(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(row + 2 * k))));
}

AVX512_INLINE __m512 load8x2_bf16(const uint8_t *row, int64_t k)
{
        __m512 v = _mm512_castps256_ps512(load8_bf16(row, k));
        return _mm512_shuffle_f32x4(v, v, 0x44);
}

/* tokens j and j + 1 at k, side by side */
AVX512_INLINE __m512 load_pair(const float *x, size_t xs, int64_t k)
{
        return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(x + k))),
                                                   _mm256_castps_pd(_mm256_loadu_ps(x + xs + k)), 1));
}

/* RB rows, rs apart, x TP pairs of tokens; y as DEFINE_TILE's */
#define DEFINE_TILE_PAIRS(type)                                                                        \
        /* DEFINE_TILE's step, by pairs of tokens */                                                 \
        AVX512_INLINE void avx512_step_pairs_##type(const uint8_t *rows, size_t rstep, const int RB, const float *x, \
                                                    size_t xs, const int TP, __m512 acc[4][4], int64_t k) \
        {                                                                                            \
                __m512 xv[4];                                                                        \
                for (int j = 0; j < TP; j++)                                                         \
                        xv[j] = load_pair(x + 2 * j * xs, xs, k);                                    \
                for (int i = 0; i < RB; i++) {                                                       \
                        __m512 wv = load8x2_##type(rows + i * rstep, k);                             \
                        for (int j = 0; j < TP; j++)                                                 \
                                acc[i][j] = _mm512_fmadd_ps(wv, xv[j], acc[i][j]);                  \
                }                                                                                    \
        }                                                                                            \
        AVX512_INLINE void avx512_tile_pairs_##type(const struct npu_weight *w, const uint8_t *rows, const int RB, \
                                                    int64_t rs, const float *x, size_t xs, const int TP, float *y, \
                                                    size_t ys)                                       \
        {                                                                                            \
                const int64_t K = w->cols, K8 = K & ~7;                                              \
                const size_t rstep = rs * w->row_bytes;                                              \
                __m512 acc[4][4];                                                                    \
                for (int i = 0; i < RB; i++)                                                         \
                        for (int j = 0; j < TP; j++)                                                 \
                                acc[i][j] = _mm512_setzero_ps();                                     \
                WALK_K(type, avx512_step_pairs_##type, rows, rstep, RB, x, xs, TP, acc, K8);         \
                for (int i = 0; i < RB; i++)                                                         \
                        for (int j = 0; j < 2 * TP; j++) {                                           \
                                __m512 a = acc[i][j / 2];                                            \
                                float s = hsum8(j % 2 ? _mm512_castps512_ps256(_mm512_shuffle_f32x4(a, a, 0xee)) \
                                                      : _mm512_castps512_ps256(a));                  \
                                for (int64_t c = K8; c < K; c++)                                     \
                                        s += weight_at(w, rows + i * rstep, c) * x[j * xs + c];      \
                                y[j * ys + i * rs] = s;                                              \
                        }                                                                            \
        }                                                                                            \
        static __attribute__((target(AVX512_TARGET))) void avx512_matmul_##type(                     \
                const struct npu_weight *w, const float *x, int64_t n_tok, size_t xs, float *y, size_t ys, \
                int64_t r0, int64_t r1)                                                              \
        {                                                                                            \
                /* one group of tokens (one, or up to 4 pairs): the whole range is one block */      \
                const bool one_group = n_tok == 1 || (n_tok % 2 == 0 && n_tok <= 8);                 \
                const int64_t RBLK = one_group ? r1 - r0 : 16;                                       \
                const uint8_t *base = (const uint8_t *)w->data;                                      \
                for (int64_t rb = r0; rb < r1; rb += RBLK) {                                         \
                        const int64_t re = MIN(rb + RBLK, r1);                                       \
                        for (int64_t t = 0; t < n_tok;) {                                            \
                                const int64_t tp = MIN(4, (n_tok - t) / 2);                          \
                                const float *xt = x + t * xs;                                        \
                                float *yt = y + t * ys;                                              \
                                switch (tp) {                                                        \
                                case 4: BLOCK_TILES(avx512_tile_pairs_##type, 4); break;             \
                                case 3: BLOCK_TILES(avx512_tile_pairs_##type, 3); break;             \
                                case 2: BLOCK_TILES(avx512_tile_pairs_##type, 2); break;             \
                                case 1: BLOCK_TILES(avx512_tile_pairs_##type, 1); break;             \
                                default: BLOCK_TILES(avx512_tile_##type, 1); break;                  \
                                }                                                                    \
                                t += tp ? 2 * tp : 1;                                                \
                        }                                                                            \
                }                                                                                    \
        }

DEFINE_TILE_PAIRS(f32)
DEFINE_TILE_PAIRS(f16)
DEFINE_TILE_PAIRS(bf16)

void matmul_float_rows(const struct npu_weight *w, const float *x, int64_t n_tok, size_t xs,
                       float *y, size_t ys, int64_t r0, int64_t r1)
{
        if (kernels_isa() >= KERNEL_ISA_AVX512_VNNI) {
                switch (w->type) {
                case GGML_TYPE_F32: avx512_matmul_f32(w, x, n_tok, xs, y, ys, r0, r1); return;
                case GGML_TYPE_F16: avx512_matmul_f16(w, x, n_tok, xs, y, ys, r0, r1); return;
                case GGML_TYPE_BF16: avx512_matmul_bf16(w, x, n_tok, xs, y, ys, r0, r1); return;
                default: break;
                }
        }
        if (kernels_isa() >= KERNEL_ISA_AVX2) {
                switch (w->type) {
                case GGML_TYPE_F32: avx2_matmul_f32(w, x, n_tok, xs, y, ys, r0, r1); return;
                case GGML_TYPE_F16: avx2_matmul_f16(w, x, n_tok, xs, y, ys, r0, r1); return;
                case GGML_TYPE_BF16: avx2_matmul_bf16(w, x, n_tok, xs, y, ys, r0, r1); return;
                default: break;
                }
        }
        matmul_scalar(w, x, n_tok, xs, y, ys, r0, r1);
}

/* --- attention helpers --- */

AVX2 static float dot_f32_f16_avx2(const float *a, const uint16_t *b, int64_t n)
{
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i),
                                       _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), acc0);
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8),
                                       _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i + 8))), acc1);
        }
        float s = hsum8(_mm256_add_ps(acc0, acc1));
        for (; i < n; i++)
                s += a[i] * f16_to_f32(b[i]);
        return s;
}

AVX2 static void mad_f16_avx2(float *y, const uint16_t *x, float a, int64_t n)
{
        __m256 av = _mm256_set1_ps(a);
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))),
                                                        _mm256_loadu_ps(y + i)));
        for (; i < n; i++)
                y[i] += a * f16_to_f32(x[i]);
}

float vec_dot_f32_f16(const float *a, const uint16_t *b, int64_t n)
{
        if (kernels_isa() >= KERNEL_ISA_AVX2)
                return dot_f32_f16_avx2(a, b, n);
        float s = 0;
        for (int64_t i = 0; i < n; i++)
                s += a[i] * f16_to_f32(b[i]);
        return s;
}

void vec_mad_f16(float *y, const uint16_t *x, float a, int64_t n)
{
        if (kernels_isa() >= KERNEL_ISA_AVX2) {
                mad_f16_avx2(y, x, a, n);
                return;
        }
        for (int64_t i = 0; i < n; i++)
                y[i] += a * f16_to_f32(x[i]);
}

AVX2 static void round_f16_avx2(float *y, const float *x, int64_t n)
{
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
                __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
                _mm256_storeu_ps(y + i, _mm256_cvtph_ps(h));
        }
        for (; i < n; i++)
                y[i] = f16_to_f32(f32_to_f16(x[i]));
}

void vec_round_f16(float *y, const float *x, int64_t n)
{
        if (kernels_isa() >= KERNEL_ISA_AVX2) {
                round_f16_avx2(y, x, n);
                return;
        }
        for (int64_t i = 0; i < n; i++)
                y[i] = f16_to_f32(f32_to_f16(x[i]));
}

void vec_mad_f32(float *y, const float *x, float a, int64_t n)
{
        for (int64_t i = 0; i < n; i++)
                y[i] += a * x[i];
}

void vec_scale(float *y, float a, int64_t n)
{
        for (int64_t i = 0; i < n; i++)
                y[i] *= a;
}

/* --- attention over runs of cache rows --- */

AVX2 static void attn_scores_f16_avx2(const float *q, const uint16_t *k, size_t stride, int32_t n, int32_t hd,
                                      float scale, float *scores)
{
        for (int32_t p = 0; p < n; p++)
                scores[p] = dot_f32_f16_avx2(q, k + p * stride, hd) * scale;
}

AVX2 static void attn_accum_f16_avx2(float *out, const uint16_t *v, size_t stride, const float *w, int32_t n,
                                     int32_t hd)
{
        int32_t d = 0;
        /* 32 output lanes kept in registers across all n rows */
        for (; d + 32 <= hd; d += 32) {
                __m256 o0 = _mm256_loadu_ps(out + d), o1 = _mm256_loadu_ps(out + d + 8);
                __m256 o2 = _mm256_loadu_ps(out + d + 16), o3 = _mm256_loadu_ps(out + d + 24);
                for (int32_t p = 0; p < n; p++) {
                        const uint16_t *r = v + p * stride + d;
                        __m256 wp = _mm256_set1_ps(w[p]);
                        o0 = _mm256_fmadd_ps(wp, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)r)), o0);
                        o1 = _mm256_fmadd_ps(wp, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 8))), o1);
                        o2 = _mm256_fmadd_ps(wp, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 16))), o2);
                        o3 = _mm256_fmadd_ps(wp, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 24))), o3);
                }
                _mm256_storeu_ps(out + d, o0);
                _mm256_storeu_ps(out + d + 8, o1);
                _mm256_storeu_ps(out + d + 16, o2);
                _mm256_storeu_ps(out + d + 24, o3);
        }
        for (int32_t p = 0; p < n && d < hd; p++)
                for (int32_t e = d; e < hd; e++)
                        out[e] += w[p] * f16_to_f32(v[p * stride + e]);
}

void attn_scores_f16(const float *q, const uint16_t *k, size_t stride, int32_t n, int32_t hd, float scale,
                     float *scores)
{
        if (kernels_isa() >= KERNEL_ISA_AVX2) {
                attn_scores_f16_avx2(q, k, stride, n, hd, scale, scores);
                return;
        }
        for (int32_t p = 0; p < n; p++) {
                float s = 0;
                for (int32_t e = 0; e < hd; e++)
                        s += q[e] * f16_to_f32(k[p * stride + e]);
                scores[p] = s * scale;
        }
}

void attn_scores_f32(const float *q, const float *k, size_t stride, int32_t n, int32_t hd, float scale,
                     float *scores)
{
        for (int32_t p = 0; p < n; p++)
                scores[p] = vec_dot_f32(q, k + p * stride, hd) * scale;
}

void attn_accum_f16(float *out, const uint16_t *v, size_t stride, const float *w, int32_t n, int32_t hd)
{
        if (kernels_isa() >= KERNEL_ISA_AVX2) {
                attn_accum_f16_avx2(out, v, stride, w, n, hd);
                return;
        }
        for (int32_t p = 0; p < n; p++)
                for (int32_t e = 0; e < hd; e++)
                        out[e] += w[p] * f16_to_f32(v[p * stride + e]);
}

void attn_accum_f32(float *out, const float *v, size_t stride, const float *w, int32_t n, int32_t hd)
{
        for (int32_t p = 0; p < n; p++)
                vec_mad_f32(out, v + p * stride, w[p], hd);
}

/* --- attention over all heads of runs of cache rows --- */

/* head sizes up to which grouped (GQA) heads convert their shared K/V slice once */
#define ATTN_GQA_MAX_HD 256

AVX2_INLINE void f16_row_to_f32(const uint16_t *x, float *y, int32_t n)
{
        int32_t i = 0;
        for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
        for (; i < n; i++)
                y[i] = f16_to_f32(x[i]);
}

/* scores of query head qh over four rows in f32 (kf), with dot_f32_f16_avx2's two chains per row and its order of sums */
AVX2_INLINE void scores4_f32(const float *qh, const float (*kf)[ATTN_GQA_MAX_HD], int32_t hd, float scale, float *sh)
{
        const int32_t hd16 = hd & ~15;
        __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
        for (int32_t i = 0; i < hd16; i += 16) {
                __m256 qa = _mm256_loadu_ps(qh + i), qb = _mm256_loadu_ps(qh + i + 8);
                a0 = _mm256_fmadd_ps(qa, _mm256_loadu_ps(kf[0] + i), a0);
                b0 = _mm256_fmadd_ps(qb, _mm256_loadu_ps(kf[0] + i + 8), b0);
                a1 = _mm256_fmadd_ps(qa, _mm256_loadu_ps(kf[1] + i), a1);
                b1 = _mm256_fmadd_ps(qb, _mm256_loadu_ps(kf[1] + i + 8), b1);
                a2 = _mm256_fmadd_ps(qa, _mm256_loadu_ps(kf[2] + i), a2);
                b2 = _mm256_fmadd_ps(qb, _mm256_loadu_ps(kf[2] + i + 8), b2);
                a3 = _mm256_fmadd_ps(qa, _mm256_loadu_ps(kf[3] + i), a3);
                b3 = _mm256_fmadd_ps(qb, _mm256_loadu_ps(kf[3] + i + 8), b3);
        }
        float s0 = hsum8(_mm256_add_ps(a0, b0)), s1 = hsum8(_mm256_add_ps(a1, b1));
        float s2 = hsum8(_mm256_add_ps(a2, b2)), s3 = hsum8(_mm256_add_ps(a3, b3));
        for (int32_t i = hd16; i < hd; i++) {
                s0 += qh[i] * kf[0][i];
                s1 += qh[i] * kf[1][i];
                s2 += qh[i] * kf[2][i];
                s3 += qh[i] * kf[3][i];
        }
        sh[0] = s0 * scale, sh[1] = s1 * scale, sh[2] = s2 * scale, sh[3] = s3 * scale;
}

/*
 * Four rows at a time: each row keeps dot_f32_f16_avx2's two accumulators
 * and its order of sums (so the same bits), but the four rows' eight chains
 * run side by side instead of waiting on one another's latency.
 */
AVX2 static void attn_scores_rows_f16_avx2(const float *q, const uint16_t *k, size_t stride, int32_t n,
                                           int32_t n_heads, int32_t group, int32_t hd, float scale, float *scores,
                                           size_t ld)
{
        const size_t row_bytes = (size_t)(n_heads / group) * hd * sizeof(uint16_t);
        const int32_t hd16 = hd & ~15;
        int32_t p = 0;
#define LD16(r, i) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((r) + (i))))
        for (; p + 4 <= n; p += 4) {
                const uint16_t *r0 = k + p * stride, *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
                /* the next four rows, into L2: at Llama-7B's 8 KiB rows each is a new page, where prefetchers stop */
                for (int32_t f = p + 4; f < MIN(p + 8, n); f++)
                        for (size_t b = 0; b < row_bytes; b += 64)
                                _mm_prefetch((const char *)(k + f * stride) + b, _MM_HINT_T1);
                if (group > 1 && hd <= ATTN_GQA_MAX_HD) {
                        /* grouped heads share a K slice: convert it once (exactly), then the same sums from f32 */
                        for (int32_t g = 0; g < n_heads / group; g++) {
                                float kf[4][ATTN_GQA_MAX_HD];
                                const uint16_t *rr[4] = { r0, r1, r2, r3 };
                                for (int r = 0; r < 4; r++)
                                        f16_row_to_f32(rr[r] + (size_t)g * hd, kf[r], hd);
                                for (int32_t h = g * group; h < (g + 1) * group; h++)
                                        scores4_f32(q + (size_t)h * hd, kf, hd, scale, scores + h * ld + p);
                        }
                        continue;
                }
                for (int32_t h = 0; h < n_heads; h++) {
                        const float *qh = q + (size_t)h * hd;
                        const size_t off = (size_t)(h / group) * hd;
                        __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
                        for (int32_t i = 0; i < hd16; i += 16) {
                                __m256 qa = _mm256_loadu_ps(qh + i), qb = _mm256_loadu_ps(qh + i + 8);
                                a0 = _mm256_fmadd_ps(qa, LD16(r0 + off, i), a0);
                                b0 = _mm256_fmadd_ps(qb, LD16(r0 + off, i + 8), b0);
                                a1 = _mm256_fmadd_ps(qa, LD16(r1 + off, i), a1);
                                b1 = _mm256_fmadd_ps(qb, LD16(r1 + off, i + 8), b1);
                                a2 = _mm256_fmadd_ps(qa, LD16(r2 + off, i), a2);
                                b2 = _mm256_fmadd_ps(qb, LD16(r2 + off, i + 8), b2);
                                a3 = _mm256_fmadd_ps(qa, LD16(r3 + off, i), a3);
                                b3 = _mm256_fmadd_ps(qb, LD16(r3 + off, i + 8), b3);
                        }
                        float s0 = hsum8(_mm256_add_ps(a0, b0)), s1 = hsum8(_mm256_add_ps(a1, b1));
                        float s2 = hsum8(_mm256_add_ps(a2, b2)), s3 = hsum8(_mm256_add_ps(a3, b3));
                        for (int32_t i = hd16; i < hd; i++) {
                                s0 += qh[i] * f16_to_f32(r0[off + i]);
                                s1 += qh[i] * f16_to_f32(r1[off + i]);
                                s2 += qh[i] * f16_to_f32(r2[off + i]);
                                s3 += qh[i] * f16_to_f32(r3[off + i]);
                        }
                        float *sh = scores + h * ld + p;
                        sh[0] = s0 * scale, sh[1] = s1 * scale, sh[2] = s2 * scale, sh[3] = s3 * scale;
                }
        }
#undef LD16
        for (; p < n; p++) {
                const uint16_t *row = k + p * stride;
                for (int32_t h = 0; h < n_heads; h++)
                        scores[h * ld + p] = dot_f32_f16_avx2(q + (size_t)h * hd, row + (size_t)(h / group) * hd, hd) *
                                             scale;
        }
}

/* y = fma(w, x, y) lane by lane, p ascending: the same sums as attn_accum_f16_avx2 */
AVX2 static void attn_accum_rows_f16_avx2(float *out, const uint16_t *v, size_t stride, const float *w, size_t ld,
                                          int32_t n, int32_t n_heads, int32_t group, int32_t hd)
{
        const size_t row_bytes = (size_t)(n_heads / group) * hd * sizeof(uint16_t);
        int32_t p = 0;
        for (; p + 4 <= n; p += 4) {
                const uint16_t *r0 = v + p * stride, *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
                /* the next four rows, into L2 (8 KiB apart at Llama-7B's shape: the prefetchers stop at pages) */
                for (int32_t f = p + 4; f < MIN(p + 8, n); f++)
                        for (size_t b = 0; b < row_bytes; b += 64)
                                _mm_prefetch((const char *)(v + f * stride) + b, _MM_HINT_T1);
                if (group > 1 && hd <= ATTN_GQA_MAX_HD) {
                        /* grouped heads share a V slice: convert it once (exactly), then the same sums from f32 */
                        for (int32_t g = 0; g < n_heads / group; g++) {
                                float vf[4][ATTN_GQA_MAX_HD];
                                const uint16_t *rr[4] = { r0, r1, r2, r3 };
                                for (int r = 0; r < 4; r++)
                                        f16_row_to_f32(rr[r] + (size_t)g * hd, vf[r], hd);
                                for (int32_t h = g * group; h < (g + 1) * group; h++) {
                                        float *o = out + (size_t)h * hd;
                                        const float *wh = w + h * ld + p;
                                        __m256 w0 = _mm256_set1_ps(wh[0]), w1 = _mm256_set1_ps(wh[1]);
                                        __m256 w2 = _mm256_set1_ps(wh[2]), w3 = _mm256_set1_ps(wh[3]);
                                        int32_t d = 0;
                                        for (; d + 8 <= hd; d += 8) {
                                                __m256 acc = _mm256_loadu_ps(o + d);
                                                acc = _mm256_fmadd_ps(w0, _mm256_loadu_ps(vf[0] + d), acc);
                                                acc = _mm256_fmadd_ps(w1, _mm256_loadu_ps(vf[1] + d), acc);
                                                acc = _mm256_fmadd_ps(w2, _mm256_loadu_ps(vf[2] + d), acc);
                                                acc = _mm256_fmadd_ps(w3, _mm256_loadu_ps(vf[3] + d), acc);
                                                _mm256_storeu_ps(o + d, acc);
                                        }
                                        for (; d < hd; d++) {
                                                float a = o[d];
                                                a = fmaf(wh[0], vf[0][d], a);
                                                a = fmaf(wh[1], vf[1][d], a);
                                                a = fmaf(wh[2], vf[2][d], a);
                                                o[d] = fmaf(wh[3], vf[3][d], a);
                                        }
                                }
                        }
                        continue;
                }
                for (int32_t h = 0; h < n_heads; h++) {
                        const size_t off = (size_t)(h / group) * hd;
                        float *o = out + (size_t)h * hd;
                        const float *wh = w + h * ld + p;
                        __m256 w0 = _mm256_set1_ps(wh[0]), w1 = _mm256_set1_ps(wh[1]);
                        __m256 w2 = _mm256_set1_ps(wh[2]), w3 = _mm256_set1_ps(wh[3]);
                        int32_t d = 0;
                        for (; d + 8 <= hd; d += 8) {
                                __m256 acc = _mm256_loadu_ps(o + d);
                                acc = _mm256_fmadd_ps(w0, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r0 + off + d))), acc);
                                acc = _mm256_fmadd_ps(w1, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r1 + off + d))), acc);
                                acc = _mm256_fmadd_ps(w2, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r2 + off + d))), acc);
                                acc = _mm256_fmadd_ps(w3, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r3 + off + d))), acc);
                                _mm256_storeu_ps(o + d, acc);
                        }
                        for (; d < hd; d++) {
                                float a = o[d];
                                a = fmaf(wh[0], f16_to_f32(r0[off + d]), a);
                                a = fmaf(wh[1], f16_to_f32(r1[off + d]), a);
                                a = fmaf(wh[2], f16_to_f32(r2[off + d]), a);
                                o[d] = fmaf(wh[3], f16_to_f32(r3[off + d]), a);
                        }
                }
        }
        for (; p < n; p++) {
                const uint16_t *r = v + p * stride;
                for (int32_t h = 0; h < n_heads; h++) {
                        const size_t off = (size_t)(h / group) * hd;
                        float *o = out + (size_t)h * hd;
                        __m256 wp = _mm256_set1_ps(w[h * ld + p]);
                        int32_t d = 0;
                        for (; d + 8 <= hd; d += 8)
                                _mm256_storeu_ps(o + d, _mm256_fmadd_ps(wp, _mm256_cvtph_ps(_mm_loadu_si128(
                                                                                  (const __m128i *)(r + off + d))),
                                                                        _mm256_loadu_ps(o + d)));
                        for (; d < hd; d++)
                                o[d] = fmaf(w[h * ld + p], f16_to_f32(r[off + d]), o[d]);
                }
        }
}

/*
 * AVX-512: the same sums as the AVX2 row kernels, 16 lanes to a register
 * (head sizes a multiple of 16; for the scores a GQA group's heads each
 * read their K/V head's rows, converted again from f16 for each: exact, so
 * the same values as AVX2's one conversion per group; the sums of V
 * convert a row once for up to four heads of a group). A score's 16-lane
 * chain holds dot_f32_f16_avx2's two accumulators side by side (lanes 0-7
 * its acc0, 8-15 its acc1), folded as it folds them, 16 rows' chains in
 * one transposed fold; an output lane adds the rows in ascending order,
 * as every path does. So the bits of AVX2, at half the conversions and
 * multiply-adds. Zen 5, 2 threads, attn-bench -n 4000 -k f16, taking turns
 * step by step with the kernels before (a fold per score, every head of a
 * group converting V's rows for itself): the 16-row scores, TinyLlama's
 * shape (22 layers, 32 heads, 4 KV heads, hd 64) 10.2-10.3 -> 9.2 ms,
 * Llama 3 8B's (32/8, hd 128) 2 % less, Llama-7B's 4 % less; then four
 * heads a conversion of V, TinyLlama's 8.9-9.8 -> 7.6-8.5 ms, Llama 3
 * 8B's 27.8-28.1 -> 25.9-26.1 ms.
 */
#define AVX512_ATTN static __attribute__((target(AVX512_TARGET)))

/* R rows' scores of query head qh (R a constant after inlining: the chains stay in registers) */
AVX512_INLINE void scores_rows_zmm(const float *qh, const uint16_t *r0, size_t stride, const int R, int32_t hd,
                                   float scale, float *sh)
{
        __m512 acc[8];
        for (int r = 0; r < R; r++)
                acc[r] = _mm512_setzero_ps();
        for (int32_t i = 0; i < hd; i += 16) {
                const __m512 qv = _mm512_loadu_ps(qh + i);
                for (int r = 0; r < R; r++)
                        acc[r] = _mm512_fmadd_ps(
                                qv, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r0 + r * stride + i))), acc[r]);
        }
        for (int r = 0; r < R; r++) {
                const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[r]), 1));
                sh[r] = hsum8(_mm256_add_ps(_mm512_castps512_ps256(acc[r]), hi)) * scale;
        }
}

/*
 * hsum8(lo + hi) of 16 vectors at once, the same pairs added in the same
 * tree (lanes j and j + 8, then j and j + 4, j and j + 2, j and j + 1):
 * lane 4 (r % 4) + r / 4 holds v[r]'s
 */
AVX512_INLINE __m512 hsum16x16_ps(const __m512 *v)
{
        __m512 w[8], z[4], s[2];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
                w[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44),
                                     _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xee));
#pragma GCC unroll 4
        for (int m = 0; m < 4; m++)
                z[m] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * m], w[2 * m + 1], 0x88),
                                     _mm512_shuffle_f32x4(w[2 * m], w[2 * m + 1], 0xdd));
#pragma GCC unroll 2
        for (int n = 0; n < 2; n++)
                s[n] = _mm512_add_ps(_mm512_shuffle_ps(z[2 * n], z[2 * n + 1], 0x44),
                                     _mm512_shuffle_ps(z[2 * n], z[2 * n + 1], 0xee));
        return _mm512_add_ps(_mm512_shuffle_ps(s[0], s[1], 0x88), _mm512_shuffle_ps(s[0], s[1], 0xdd));
}

/* scores_rows_zmm for 16 rows, their sums folded together (hsum16x16_ps) and stored as one vector */
AVX512_INLINE void scores_rows16_zmm(const float *qh, const uint16_t *r0, size_t stride, int32_t hd, float scale,
                                     float *sh)
{
        const __m512i row_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        __m512 acc[16];
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++)
                acc[r] = _mm512_setzero_ps();
        for (int32_t i = 0; i < hd; i += 16) {
                const __m512 qv = _mm512_loadu_ps(qh + i);
#pragma GCC unroll 16
                for (int r = 0; r < 16; r++)
                        acc[r] = _mm512_fmadd_ps(
                                qv, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r0 + r * stride + i))),
                                acc[r]);
        }
        _mm512_storeu_ps(sh, _mm512_mul_ps(_mm512_permutexvar_ps(row_order, hsum16x16_ps(acc)), _mm512_set1_ps(scale)));
}

AVX512_ATTN void attn_scores_rows_f16_avx512(const float *q, const uint16_t *k, size_t stride, int32_t n,
                                             int32_t n_heads, int32_t group, int32_t hd, float scale, float *scores,
                                             size_t ld)
{
        const size_t row_bytes = (size_t)(n_heads / group) * hd * sizeof(uint16_t);
        int32_t p = 0;
        for (; p + 16 <= n; p += 16) {
                for (int32_t f = p + 16; f < MIN(p + 32, n); f++)
                        for (size_t b = 0; b < row_bytes; b += 64)
                                _mm_prefetch((const char *)(k + f * stride) + b, _MM_HINT_T1);
                for (int32_t h = 0; h < n_heads; h++)
                        scores_rows16_zmm(q + (size_t)h * hd, k + p * stride + (size_t)(h / group) * hd, stride, hd,
                                          scale, scores + h * ld + p);
        }
        for (; p + 8 <= n; p += 8) {
                /* the next eight rows, into L2 (as the AVX2 kernel asks for its next four) */
                for (int32_t f = p + 8; f < MIN(p + 16, n); f++)
                        for (size_t b = 0; b < row_bytes; b += 64)
                                _mm_prefetch((const char *)(k + f * stride) + b, _MM_HINT_T1);
                for (int32_t h = 0; h < n_heads; h++)
                        scores_rows_zmm(q + (size_t)h * hd, k + p * stride + (size_t)(h / group) * hd, stride, 8,
                                        hd, scale, scores + h * ld + p);
        }
        for (; p + 4 <= n; p += 4)
                for (int32_t h = 0; h < n_heads; h++)
                        scores_rows_zmm(q + (size_t)h * hd, k + p * stride + (size_t)(h / group) * hd, stride, 4,
                                        hd, scale, scores + h * ld + p);
        for (; p < n; p++)
                for (int32_t h = 0; h < n_heads; h++)
                        scores_rows_zmm(q + (size_t)h * hd, k + p * stride + (size_t)(h / group) * hd, stride, 1,
                                        hd, scale, scores + h * ld + p);
}

/* lanes [0, 16 Z) of one head's output over n rows, kept in registers across them */
AVX512_INLINE void accum_rows_zmm(float *o, const uint16_t *v, size_t stride, const float *w, int32_t n, const int Z)
{
        __m512 acc[8];
        for (int z = 0; z < Z; z++)
                acc[z] = _mm512_loadu_ps(o + 16 * z);
        for (int32_t p = 0; p < n; p++) {
                const __m512 wp = _mm512_set1_ps(w[p]);
                for (int z = 0; z < Z; z++)
                        acc[z] = _mm512_fmadd_ps(
                                wp, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(v + p * stride + 16 * z))), acc[z]);
        }
        for (int z = 0; z < Z; z++)
                _mm512_storeu_ps(o + 16 * z, acc[z]);
}

/*
 * lanes [0, 16 Z) of NH heads' outputs (ostride apart, weights ld apart)
 * over n rows, kept in registers across them, each row's values converted
 * once for the NH heads
 */
AVX512_INLINE void accum_heads_zmm(float *o, size_t ostride, const uint16_t *v, size_t stride, const float *w,
                                   size_t ld, int32_t n, const int NH, const int Z)
{
        __m512 acc[4][4];
        for (int i = 0; i < NH; i++)
                for (int z = 0; z < Z; z++)
                        acc[i][z] = _mm512_loadu_ps(o + i * ostride + 16 * z);
        for (int32_t p = 0; p < n; p++) {
                __m512 x[4];
                for (int z = 0; z < Z; z++)
                        x[z] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(v + p * stride + 16 * z)));
                for (int i = 0; i < NH; i++) {
                        const __m512 wp = _mm512_set1_ps(w[i * ld + p]);
                        for (int z = 0; z < Z; z++)
                                acc[i][z] = _mm512_fmadd_ps(wp, x[z], acc[i][z]);
                }
        }
        for (int i = 0; i < NH; i++)
                for (int z = 0; z < Z; z++)
                        _mm512_storeu_ps(o + i * ostride + 16 * z, acc[i][z]);
}

/* accum_heads_zmm with NH (1 to 4) and Z (1 to 4) constants */
AVX512_ATTN void accum_heads_zmm_any(float *o, size_t ostride, const uint16_t *v, size_t stride, const float *w,
                                     size_t ld, int32_t n, int nh, int z)
{
#define ACCUM_HEADS_CASE(NH, Z)                                                    \
        case 4 * (NH - 1) + Z - 1:                                                 \
                accum_heads_zmm(o, ostride, v, stride, w, ld, n, NH, Z);           \
                return;
#define ACCUM_HEADS_CASES(NH)                                                      \
        ACCUM_HEADS_CASE(NH, 1) ACCUM_HEADS_CASE(NH, 2) ACCUM_HEADS_CASE(NH, 3) ACCUM_HEADS_CASE(NH, 4)
        switch (4 * (nh - 1) + z - 1) {
                ACCUM_HEADS_CASES(1)
                ACCUM_HEADS_CASES(2)
                ACCUM_HEADS_CASES(3)
                ACCUM_HEADS_CASES(4)
        }
#undef ACCUM_HEADS_CASES
#undef ACCUM_HEADS_CASE
}

/*
 * Positions in blocks of ATTN_ZMM_BLOCK, so a GQA group's heads find their
 * K/V head's rows of the block in L1 (each lane still adds the rows in
 * ascending order: the same bits as one walk).
 */
#define ATTN_ZMM_BLOCK 64

AVX512_ATTN void attn_accum_rows_f16_avx512(float *out, const uint16_t *v, size_t stride, const float *w, size_t ld,
                                            int32_t n, int32_t n_heads, int32_t group, int32_t hd)
{
        const size_t row_bytes = (size_t)(n_heads / group) * hd * sizeof(uint16_t);
        /* the rows after the first four, into L2 (as the AVX2 kernel asks for each next four) */
        for (int32_t f = 4; f < n; f++)
                for (size_t b = 0; b < row_bytes; b += 64)
                        _mm_prefetch((const char *)(v + f * stride) + b, _MM_HINT_T1);
        for (int32_t p0 = 0; p0 < n; p0 += ATTN_ZMM_BLOCK) {
                const int32_t np = MIN(ATTN_ZMM_BLOCK, n - p0);
                if (group > 1) {
                        for (int32_t h = 0; h < n_heads;) {
                                const int32_t nh = MIN(4, (h / group + 1) * group - h);
                                const uint16_t *vh = v + p0 * stride + (size_t)(h / group) * hd;
                                for (int32_t d = 0; d < hd; d += 64)
                                        accum_heads_zmm_any(out + (size_t)h * hd + d, hd, vh + d, stride,
                                                            w + h * ld + p0, ld, np, nh, MIN(4, (hd - d) / 16));
                                h += nh;
                        }
                        continue;
                }
                for (int32_t h = 0; h < n_heads; h++) {
                        float *o = out + (size_t)h * hd;
                        const uint16_t *vh = v + p0 * stride + (size_t)(h / group) * hd;
                        const float *wh = w + h * ld + p0;
                        int32_t d = 0;
                        for (; d + 128 <= hd; d += 128)
                                accum_rows_zmm(o + d, vh + d, stride, wh, np, 8);
                        for (; d + 64 <= hd; d += 64)
                                accum_rows_zmm(o + d, vh + d, stride, wh, np, 4);
                        for (; d < hd; d += 16)
                                accum_rows_zmm(o + d, vh + d, stride, wh, np, 1);
                }
        }
}

/* the AVX-512 row kernels' shapes (the others take AVX2's) */
static bool attn_rows_zmm(int32_t hd)
{
        return kernels_isa() >= KERNEL_ISA_AVX512_VNNI && hd % 16 == 0;
}

void attn_scores_rows_f16(const float *q, const uint16_t *k, size_t stride, int32_t n, int32_t n_heads, int32_t group,
                          int32_t hd, float scale, float *scores, size_t ld)
{
        if (attn_rows_zmm(hd)) {
                attn_scores_rows_f16_avx512(q, k, stride, n, n_heads, group, hd, scale, scores, ld);
                return;
        }
        if (kernels_isa() >= KERNEL_ISA_AVX2) {
                attn_scores_rows_f16_avx2(q, k, stride, n, n_heads, group, hd, scale, scores, ld);
                return;
        }
        for (int32_t h = 0; h < n_heads; h++)
                attn_scores_f16(q + (size_t)h * hd, k + (size_t)(h / group) * hd, stride, n, hd, scale, scores + h * ld);
}

void attn_scores_rows_f32(const float *q, const float *k, size_t stride, int32_t n, int32_t n_heads, int32_t group,
                          int32_t hd, float scale, float *scores, size_t ld)
{
        for (int32_t p = 0; p < n; p++)
                for (int32_t h = 0; h < n_heads; h++)
                        scores[h * ld + p] = vec_dot_f32(q + (size_t)h * hd, k + p * stride + (size_t)(h / group) * hd, hd) *
                                             scale;
}

void attn_accum_rows_f16(float *out, const uint16_t *v, size_t stride, const float *w, size_t ld, int32_t n,
                         int32_t n_heads, int32_t group, int32_t hd)
{
        if (attn_rows_zmm(hd)) {
                attn_accum_rows_f16_avx512(out, v, stride, w, ld, n, n_heads, group, hd);
                return;
        }
        if (kernels_isa() >= KERNEL_ISA_AVX2) {
                attn_accum_rows_f16_avx2(out, v, stride, w, ld, n, n_heads, group, hd);
                return;
        }
        for (int32_t h = 0; h < n_heads; h++)
                attn_accum_f16(out + (size_t)h * hd, v + (size_t)(h / group) * hd, stride, w + h * ld, n, hd);
}

void attn_accum_rows_f32(float *out, const float *v, size_t stride, const float *w, size_t ld, int32_t n,
                         int32_t n_heads, int32_t group, int32_t hd)
{
        for (int32_t p = 0; p < n; p++)
                for (int32_t h = 0; h < n_heads; h++)
                        vec_mad_f32(out + (size_t)h * hd, v + p * stride + (size_t)(h / group) * hd, w[h * ld + p], hd);
}

/*
 * --- several queries over the same rows (a prompt's tokens, attn_*_rows_f16_multi) ---
 *
 * Each K/V slice of a few rows is converted to f32 once (exactly: every f16
 * is an f32) and then feeds every query's own chains, in each chain's own
 * order: query i's scores and sums are attn_*_rows_f16's for its rows alone.
 */

/* dot_f32_f16_avx2's two chains and order of sums, over a row already in f32 */
AVX2_INLINE float dot_f32_f32_chains(const float *a, const float *b, int32_t n)
{
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        int32_t i = 0;
        for (; i + 16 <= n; i += 16) {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        }
        float s = hsum8(_mm256_add_ps(acc0, acc1));
        for (; i < n; i++)
                s += a[i] * b[i];
        return s;
}

AVX2 static void attn_scores_rows_f16_multi_avx2(const float *q, size_t q_stride, int32_t nq, const int32_t *rows,
                                                 const uint16_t *k, size_t stride, int32_t n_heads, int32_t group,
                                                 int32_t hd, float scale, float *scores, size_t s_stride,
                                                 const size_t *ld)
{
        int32_t n = 0;
        for (int32_t i = 0; i < nq; i++)
                n = MAX(n, rows[i]);
        for (int32_t p = 0; p < n; p += 4) {
                const int32_t nr = MIN(4, n - p);
                for (int32_t g = 0; g < n_heads / group; g++) {
                        float kf[4][ATTN_GQA_MAX_HD];
                        for (int32_t r = 0; r < nr; r++)
                                f16_row_to_f32(k + (p + r) * stride + (size_t)g * hd, kf[r], hd);
                        for (int32_t i = 0; i < nq; i++) {
                                const int32_t m = MIN(4, rows[i] - p);
                                for (int32_t h = g * group; h < (g + 1) * group && m > 0; h++) {
                                        const float *qh = q + i * q_stride + (size_t)h * hd;
                                        float *sh = scores + i * s_stride + h * ld[i] + p;
                                        if (m == 4) {
                                                scores4_f32(qh, kf, hd, scale, sh);
                                                continue;
                                        }
                                        for (int32_t r = 0; r < m; r++)
                                                sh[r] = dot_f32_f32_chains(qh, kf[r], hd) * scale;
                                }
                        }
                }
        }
}

/* the rows to walk together per step of the sums: their slice stays in L1 while each lane takes them all */
#define ATTN_MULTI_ROWS 8

/*
 * out[i] += sum_p w[i][p] * v[p] for nq (a constant at each call) queries'
 * outputs of one head over n rows: each lane one fused multiply-add per
 * row, p ascending, as attn_accum_rows_f16_avx2; a V vector is converted
 * once for all nq.
 */
AVX2_INLINE void accum_multi_f16(float *const *o, const float *const *w, const uint16_t *v, size_t stride, int32_t n,
                                 int32_t hd, const int nq)
{
        for (int32_t p0 = 0; p0 < n; p0 += ATTN_MULTI_ROWS) {
                const int32_t p1 = MIN(n, p0 + ATTN_MULTI_ROWS);
                int32_t d = 0;
                for (; d + 8 <= hd; d += 8) {
                        __m256 acc[8];
#pragma GCC unroll 8
                        for (int i = 0; i < nq; i++)
                                acc[i] = _mm256_loadu_ps(o[i] + d);
                        for (int32_t p = p0; p < p1; p++) {
                                const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + p * stride + d)));
#pragma GCC unroll 8
                                for (int i = 0; i < nq; i++)
                                        acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(w[i][p]), x, acc[i]);
                        }
#pragma GCC unroll 8
                        for (int i = 0; i < nq; i++)
                                _mm256_storeu_ps(o[i] + d, acc[i]);
                }
                for (; d < hd; d++)
                        for (int i = 0; i < nq; i++) {
                                float a = o[i][d];
                                for (int32_t p = p0; p < p1; p++)
                                        a = fmaf(w[i][p], f16_to_f32(v[p * stride + d]), a);
                                o[i][d] = a;
                        }
        }
}

AVX2 static void accum_multi_f16_n(float *const *o, const float *const *w, const uint16_t *v, size_t stride, int32_t n,
                                   int32_t hd, int nq)
{
        switch (nq) {
        case 1: accum_multi_f16(o, w, v, stride, n, hd, 1); break;
        case 2: accum_multi_f16(o, w, v, stride, n, hd, 2); break;
        case 3: accum_multi_f16(o, w, v, stride, n, hd, 3); break;
        case 4: accum_multi_f16(o, w, v, stride, n, hd, 4); break;
        case 5: accum_multi_f16(o, w, v, stride, n, hd, 5); break;
        case 6: accum_multi_f16(o, w, v, stride, n, hd, 6); break;
        case 7: accum_multi_f16(o, w, v, stride, n, hd, 7); break;
        default: accum_multi_f16(o, w, v, stride, n, hd, 8); break;
        }
}

AVX2 static void attn_accum_rows_f16_multi_avx2(float *out, size_t o_stride, int32_t nq, const int32_t *rows,
                                                const uint16_t *v, size_t stride, const float *w, size_t w_stride,
                                                const size_t *ld, int32_t n_heads, int32_t group, int32_t hd)
{
        for (int32_t i0 = 0; i0 < nq; i0 += 8) {
                const int32_t i1 = MIN(nq, i0 + 8);
                for (int32_t h = 0; h < n_heads; h++) {
                        const uint16_t *vh = v + (size_t)(h / group) * hd;
                        float *o[8];
                        const float *wi[8];
                        int32_t k = 0, m_min = INT32_MAX;
                        for (int32_t i = i0; i < i1; i++) {
                                if (rows[i] <= 0)
                                        continue;
                                o[k] = out + i * o_stride + (size_t)h * hd;
                                wi[k++] = w + i * w_stride + h * ld[i];
                                m_min = MIN(m_min, rows[i]);
                        }
                        if (!k)
                                continue;
                        /* the rows every query takes, together; then each query's own further rows */
                        accum_multi_f16_n(o, wi, vh, stride, m_min, hd, k);
                        for (int32_t i = i0, kk = 0; i < i1; i++) {
                                if (rows[i] <= 0)
                                        continue;
                                if (rows[i] > m_min) {
                                        const float *wr = wi[kk] + m_min;
                                        accum_multi_f16_n(&o[kk], &wr, vh + m_min * stride, stride, rows[i] - m_min,
                                                          hd, 1);
                                }
                                kk++;
                        }
                }
        }
}

void attn_scores_rows_f16_multi(const float *q, size_t q_stride, int32_t nq, const int32_t *rows, const uint16_t *k,
                                size_t stride, int32_t n_heads, int32_t group, int32_t hd, float scale, float *scores,
                                size_t s_stride, const size_t *ld)
{
        if (kernels_isa() >= KERNEL_ISA_AVX2 && hd <= ATTN_GQA_MAX_HD) {
                attn_scores_rows_f16_multi_avx2(q, q_stride, nq, rows, k, stride, n_heads, group, hd, scale, scores,
                                                s_stride, ld);
                return;
        }
        for (int32_t i = 0; i < nq; i++)
                if (rows[i] > 0)
                        attn_scores_rows_f16(q + i * q_stride, k, stride, rows[i], n_heads, group, hd, scale,
                                             scores + i * s_stride, ld[i]);
}

void attn_accum_rows_f16_multi(float *out, size_t o_stride, int32_t nq, const int32_t *rows, const uint16_t *v,
                               size_t stride, const float *w, size_t w_stride, const size_t *ld, int32_t n_heads,
                               int32_t group, int32_t hd)
{
        if (kernels_isa() >= KERNEL_ISA_AVX2) {
                attn_accum_rows_f16_multi_avx2(out, o_stride, nq, rows, v, stride, w, w_stride, ld, n_heads, group,
                                               hd);
                return;
        }
        for (int32_t i = 0; i < nq; i++)
                if (rows[i] > 0)
                        attn_accum_rows_f16(out + i * o_stride, v, stride, w + i * w_stride, ld[i], rows[i], n_heads,
                                            group, hd);
}

/* exp for x <= 88 (Cephes' polynomial; inputs below -87 give exp(-87)): within 2 ulp of expf */
AVX2_INLINE __m256 exp256(__m256 x)
{
        x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
        __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
        x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
        __m256 y = _mm256_set1_ps(1.9875691500e-4f);
        y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
        y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
        y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
        y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
        y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
        y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
        __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
        return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* exp256 on one value, operation for operation (fmaf is the fused multiply-add), so the same bits */
static float exp1(float x)
{
        x = x > -87.0f ? x : -87.0f;
        x = x < 88.0f ? x : 88.0f;
        const float fx = rintf(x * 1.44269504088896341f);
        x = fmaf(-fx, 0.693359375f, x);
        x = fmaf(-fx, -2.12194440e-4f, x);
        float y = 1.9875691500e-4f;
        y = fmaf(y, x, 1.3981999507e-3f);
        y = fmaf(y, x, 8.3334519073e-3f);
        y = fmaf(y, x, 4.1665795894e-2f);
        y = fmaf(y, x, 1.6666665459e-1f);
        y = fmaf(y, x, 5.0000001201e-1f);
        y = fmaf(y, x * x, x + 1.0f);
        const uint32_t bits = (uint32_t)((int32_t)fx + 127) << 23;
        float e;
        memcpy(&e, &bits, 4);
        return y * e;
}

/*
 * The default attention path's softmax, the same bits on every instruction
 * set: exp256/exp1 of x - max, summed in double in 8 lanes (element i into
 * lane i % 8) folded as ((0+4) + (2+6)) + ((1+5) + (3+7)), then every
 * value times the float reciprocal of the sum.
 */
static double fold8(const double l[8])
{
        return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

static void softmax_scalar(float *x, int64_t n)
{
        float max = -INFINITY;
        double lanes[8] = {};

        for (int64_t i = 0; i < n; i++)
                max = x[i] > max ? x[i] : max;
        for (int64_t i = 0; i < n; i++) {
                x[i] = exp1(x[i] - max);
                lanes[i % 8] += x[i];
        }
        const float inv = (float)(1.0 / fold8(lanes));
        for (int64_t i = 0; i < n; i++)
                x[i] *= inv;
}

AVX2 static void softmax_avx2(float *x, int64_t n)
{
        const int64_t n8 = n & ~(int64_t)7;
        float max = -INFINITY;
        int64_t i = 0;

        if (n8) {
                __m256 m8 = _mm256_loadu_ps(x);
                for (i = 8; i < n8; i += 8)
                        m8 = _mm256_max_ps(m8, _mm256_loadu_ps(x + i));
                float l[8];
                _mm256_storeu_ps(l, m8);
                for (int j = 0; j < 8; j++)
                        max = l[j] > max ? l[j] : max;
        }
        for (; i < n; i++)
                max = x[i] > max ? x[i] : max;
        const __m256 mv = _mm256_set1_ps(max);
        __m256d lo = _mm256_setzero_pd(), hi = lo;
        for (i = 0; i < n8; i += 8) {
                const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
                _mm256_storeu_ps(x + i, e);
                lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
                hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        }
        double lanes[8];
        _mm256_storeu_pd(lanes, lo);
        _mm256_storeu_pd(lanes + 4, hi);
        for (; i < n; i++) {
                x[i] = exp1(x[i] - max);
                lanes[i % 8] += x[i];
        }
        const __m256 inv = _mm256_set1_ps((float)(1.0 / fold8(lanes)));
        for (i = 0; i < n8; i += 8)
                _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
        for (; i < n; i++)
                x[i] *= _mm256_cvtss_f32(inv);
}

void softmax_inplace(float *x, int64_t n)
{
        if (kernels_isa() >= KERNEL_ISA_AVX2)
                softmax_avx2(x, n);
        else
                softmax_scalar(x, n);
}

AVX2 static float attn_exp_sum_avx2(float *x, int32_t n, float *max)
{
        float mx = -INFINITY;
        int32_t i = 0;
        if (n >= 8) {
                __m256 m8 = _mm256_loadu_ps(x);
                for (i = 8; i + 8 <= n; i += 8)
                        m8 = _mm256_max_ps(m8, _mm256_loadu_ps(x + i));
                __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
                m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
                m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
                mx = _mm_cvtss_f32(m4);
        }
        for (; i < n; i++)
                mx = x[i] > mx ? x[i] : mx;
        __m256 mv = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
        for (i = 0; i + 8 <= n; i += 8) {
                __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
                _mm256_storeu_ps(x + i, e);
                acc = _mm256_add_ps(acc, e);
        }
        float sum = hsum8(acc);
        for (; i < n; i++) {
                x[i] = expf(x[i] - mx);
                sum += x[i];
        }
        *max = mx;
        return sum;
}

/* exp256 on 16 lanes, operation for operation, so each lane has exp256's bits */
AVX512_INLINE __m512 exp512(__m512 x)
{
        x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
        __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
        x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
        __m512 y = _mm512_set1_ps(1.9875691500e-4f);
        y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
        y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
        y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
        y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
        y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
        y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
        __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
        return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

/*
 * attn_exp_sum_avx2's bits 16 values at a time: the exps on 16 lanes, then
 * the two halves added to the 8-lane sum in turn, as AVX2's two steps add
 * them. Zen 5, one thread, the 16384 calls of 256 values of a Llama-7B
 * step at 4000 positions (32 layers x 16 chunks x 32 heads): 1.48 -> 0.94
 * ms.
 */
AVX512_ATTN float attn_exp_sum_avx512(float *x, int32_t n, float *max)
{
        float mx = -INFINITY;
        int32_t i = 0;
        if (n >= 16) {
                __m512 m16 = _mm512_loadu_ps(x);
                for (i = 16; i + 16 <= n; i += 16)
                        m16 = _mm512_max_ps(m16, _mm512_loadu_ps(x + i));
                mx = _mm512_reduce_max_ps(m16);
        }
        for (; i < n; i++)
                mx = x[i] > mx ? x[i] : mx;
        const __m512 mv = _mm512_set1_ps(mx);
        __m256 acc = _mm256_setzero_ps();
        for (i = 0; i + 16 <= n; i += 16) {
                const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv));
                _mm512_storeu_ps(x + i, e);
                acc = _mm256_add_ps(acc, _mm512_castps512_ps256(e));
                /* GCC 12 at -O3 otherwise adds the halves first (seen in the object code; test_exp_sum fails) */
                __asm__("" : "+x"(acc));
                acc = _mm256_add_ps(acc, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
        }
        if (i + 8 <= n) {
                const __m256 e = _mm512_castps512_ps256(exp512(_mm512_castps256_ps512(
                        _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm512_castps512_ps256(mv)))));
                _mm256_storeu_ps(x + i, e);
                acc = _mm256_add_ps(acc, e);
                i += 8;
        }
        float sum = hsum8(acc);
        for (; i < n; i++) {
                x[i] = expf(x[i] - mx);
                sum += x[i];
        }
        *max = mx;
        return sum;
}

float attn_exp_sum(float *x, int32_t n, float *max)
{
        if (kernels_isa() >= KERNEL_ISA_AVX512_VNNI)
                return attn_exp_sum_avx512(x, n, max);
        if (kernels_isa() >= KERNEL_ISA_AVX2)
                return attn_exp_sum_avx2(x, n, max);
        float mx = -INFINITY, sum = 0;
        for (int32_t i = 0; i < n; i++)
                mx = x[i] > mx ? x[i] : mx;
        for (int32_t i = 0; i < n; i++) {
                x[i] = expf(x[i] - mx);
                sum += x[i];
        }
        *max = mx;
        return sum;
}
