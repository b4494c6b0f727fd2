/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "quantize_blocks.h"

bool quantize_blocks_supported(enum ggml_type t)
{
        return quant_type_supported(t);
}

size_t quant_row_bytes(enum ggml_type t, int64_t n)
{
        return (size_t)(n / (int64_t)ggml_type_block_elems(t)) * ggml_type_block_bytes(t);
}

static int clampi(int v, int lo, int hi)
{
        return v < lo ? lo : v > hi ? hi : v;
}

/* The weight of each value in the fit: large values matter more. */
static void fit_weights(const float *x, int n, float *w)
{
        float s2 = 0;
        for (int i = 0; i < n; i++)
                s2 += x[i] * x[i];
        const float rms = sqrtf(s2 / n);
        for (int i = 0; i < n; i++)
                w[i] = rms + fabsf(x[i]);
}

/*
 * Symmetric: q in [-nmax, nmax - 1], x ~ scale * q. The value of largest
 * magnitude sets the first guess (it maps to -nmax); nearby guesses are
 * tried and each refitted by least squares. Returns the scale; q in L.
 */
static float fit_symmetric(const float *x, int n, int nmax, const float *w, int8_t *L)
{
        float amax = 0, max = 0;
        for (int i = 0; i < n; i++)
                if (fabsf(x[i]) > amax) {
                        amax = fabsf(x[i]);
                        max = x[i];
                }
        if (amax == 0) {
                memset(L, 0, n);
                return 0;
        }
        float best_scale = 0, best_err = INFINITY;
        for (int step = -9; step <= 9; step++) {
                const float iscale = -((float)nmax + 0.1f * step) / max;
                float sxq = 0, sqq = 0;
                for (int i = 0; i < n; i++) {
                        int q = clampi((int)lrintf(iscale * x[i]), -nmax, nmax - 1);
                        sxq += w[i] * x[i] * q;
                        sqq += w[i] * q * q;
                }
                if (sqq <= 0)
                        continue;
                /* the least-squares scale for these levels, and its error: sum w x^2 - (sum w x q)^2 / sum w q^2 */
                const float scale = sxq / sqq, err = -sxq * sxq / sqq;
                if (err < best_err) {
                        best_err = err;
                        best_scale = scale;
                }
        }
        for (int i = 0; i < n; i++)
                L[i] = (int8_t)(best_scale != 0 ? clampi((int)lrintf(x[i] / best_scale), -nmax, nmax - 1) : 0);
        return best_scale;
}

/*
 * With a minimum: q in [0, nmax], x ~ scale * q - mn with mn >= 0 (the
 * K-quants subtract their minimum). Returns scale, and mn through *ret_min.
 */
static float fit_affine(const float *x, int n, int nmax, const float *w, float *ret_min)
{
        float lo = x[0], hi = x[0];
        for (int i = 1; i < n; i++) {
                lo = fminf(lo, x[i]);
                hi = fmaxf(hi, x[i]);
        }
        lo = fminf(lo, 0.0f);
        if (hi <= lo) {
                *ret_min = -lo;
                return 0;
        }
        float best_scale = (hi - lo) / nmax, best_min = -lo, best_err = INFINITY;
        for (int step = -10; step <= 10; step++) {
                const float iscale = ((float)nmax + 0.1f * step) / (hi - lo);
                /* assign levels, then the least-squares scale and offset for them */
                float sw = 0, sq = 0, sqq = 0, sx = 0, sxq = 0;
                for (int i = 0; i < n; i++) {
                        int q = clampi((int)lrintf(iscale * (x[i] - lo)), 0, nmax);
                        sw += w[i];
                        sq += w[i] * q;
                        sqq += w[i] * q * q;
                        sx += w[i] * x[i];
                        sxq += w[i] * x[i] * q;
                }
                const float det = sw * sqq - sq * sq;
                if (det <= 0)
                        continue;
                float scale = (sw * sxq - sq * sx) / det, off = (sqq * sx - sq * sxq) / det;
                if (off > 0) { /* the offset must be <= 0: refit the scale alone */
                        off = 0;
                        scale = sqq > 0 ? sxq / sqq : 0;
                }
                if (scale <= 0)
                        continue;
                /* the weighted error of these levels, less sum w x^2 (the same for every candidate) */
                const float err = scale * scale * sqq + 2 * scale * off * sq + off * off * sw - 2 * scale * sxq -
                                  2 * off * sx;
                if (err < best_err) {
                        best_err = err;
                        best_scale = scale;
                        best_min = -off;
                }
        }
        *ret_min = best_min;
        return best_scale;
}

/* --- the 32-element types --- */

static void quant_q4_0(const float *x, struct block_q4_0 *b)
{
        float w[32];
        int8_t L[32];
        fit_weights(x, 32, w);
        const float d = f16_to_f32(f32_to_f16(fit_symmetric(x, 32, 8, w, L)));
        b->d = f32_to_f16(d);
        for (int k = 0; k < 16; k++) {
                int lo = d != 0 ? clampi((int)lrintf(x[k] / d), -8, 7) : 0;
                int hi = d != 0 ? clampi((int)lrintf(x[k + 16] / d), -8, 7) : 0;
                b->qs[k] = (uint8_t)((lo + 8) | (hi + 8) << 4);
        }
}

static void quant_q5_0(const float *x, struct block_q5_0 *b)
{
        float w[32];
        int8_t L[32];
        uint32_t qh = 0;
        fit_weights(x, 32, w);
        const float d = f16_to_f32(f32_to_f16(fit_symmetric(x, 32, 16, w, L)));
        b->d = f32_to_f16(d);
        for (int k = 0; k < 16; k++) {
                int lo = (d != 0 ? clampi((int)lrintf(x[k] / d), -16, 15) : 0) + 16;
                int hi = (d != 0 ? clampi((int)lrintf(x[k + 16] / d), -16, 15) : 0) + 16;
                b->qs[k] = (uint8_t)((lo & 15) | (hi & 15) << 4);
                qh |= (uint32_t)(lo >> 4) << k | (uint32_t)(hi >> 4) << (k + 16);
        }
        memcpy(b->qh, &qh, 4);
}

/* Q4_1 / Q5_1: x ~ d * q + m with m the block's minimum. */
static void fit_min_max(const float *x, int nmax, npu_f16 *dh, npu_f16 *mh, int *q)
{
        float lo = x[0], hi = x[0];
        for (int k = 1; k < 32; k++) {
                lo = fminf(lo, x[k]);
                hi = fmaxf(hi, x[k]);
        }
        *dh = f32_to_f16((hi - lo) / nmax);
        *mh = f32_to_f16(lo);
        const float d = f16_to_f32(*dh), m = f16_to_f32(*mh);
        for (int k = 0; k < 32; k++)
                q[k] = d != 0 ? clampi((int)lrintf((x[k] - m) / d), 0, nmax) : 0;
}

static void quant_q4_1(const float *x, struct block_q4_1 *b)
{
        int q[32];
        fit_min_max(x, 15, &b->d, &b->m, q);
        for (int k = 0; k < 16; k++)
                b->qs[k] = (uint8_t)(q[k] | q[k + 16] << 4);
}

static void quant_q5_1(const float *x, struct block_q5_1 *b)
{
        int q[32];
        uint32_t qh = 0;
        fit_min_max(x, 31, &b->d, &b->m, q);
        for (int k = 0; k < 16; k++) {
                b->qs[k] = (uint8_t)((q[k] & 15) | (q[k + 16] & 15) << 4);
                qh |= (uint32_t)(q[k] >> 4) << k | (uint32_t)(q[k + 16] >> 4) << (k + 16);
        }
        memcpy(b->qh, &qh, 4);
}

static void quant_q8_0(const float *x, struct block_q8_0 *b)
{
        float amax = 0;
        for (int k = 0; k < 32; k++)
                amax = fmaxf(amax, fabsf(x[k]));
        b->d = f32_to_f16(amax / 127.0f);
        const float d = f16_to_f32(b->d);
        for (int k = 0; k < 32; k++)
                b->qs[k] = (int8_t)(d != 0 ? clampi((int)lrintf(x[k] / d), -127, 127) : 0);
}

/* --- the K-quants --- */

/* Scale (and min) of every sub-block of n elements in 256, quantized against one super-block scale. */
struct k_fit {
        float scale[16], min[16];
        int sc[16], m[16];
        float d, dmin;
};

/*
 * Fit each sub-block with fit_affine, then store the scales and mins as
 * integers in [0, smax] of d and dmin (f16).
 */
static void fit_k_affine(const float *x, int sub, int nmax, int smax, struct k_fit *f, npu_f16 *dh, npu_f16 *dminh)
{
        const int ns = QK_K / sub;
        float w[32], max_scale = 0, max_min = 0;
        for (int j = 0; j < ns; j++) {
                fit_weights(x + j * sub, sub, w);
                f->scale[j] = fit_affine(x + j * sub, sub, nmax, w, &f->min[j]);
                max_scale = fmaxf(max_scale, f->scale[j]);
                max_min = fmaxf(max_min, f->min[j]);
        }
        *dh = f32_to_f16(max_scale / smax);
        *dminh = f32_to_f16(max_min / smax);
        f->d = f16_to_f32(*dh);
        f->dmin = f16_to_f32(*dminh);
        for (int j = 0; j < ns; j++) {
                f->sc[j] = f->d > 0 ? clampi((int)lrintf(f->scale[j] / f->d), 0, smax) : 0;
                f->m[j] = f->dmin > 0 ? clampi((int)lrintf(f->min[j] / f->dmin), 0, smax) : 0;
        }
}

/* x[k] with the stored scales: q in [0, nmax]. */
static int requant_affine(float x, float d, int sc, float dmin, int m, int nmax)
{
        const float s = d * sc;
        return s > 0 ? clampi((int)lrintf((x + dmin * m) / s), 0, nmax) : 0;
}

static void quant_q2_k(const float *x, struct block_q2_K *b)
{
        struct k_fit f;
        memset(b, 0, sizeof(*b));
        fit_k_affine(x, 16, 3, 15, &f, &b->d, &b->dmin);
        for (int j = 0; j < 16; j++)
                b->scales[j] = (uint8_t)(f.sc[j] | f.m[j] << 4);
        for (int k = 0; k < QK_K; k++) {
                int j = k / 16, h = k / 128, s = (k / 32) % 4, l = k % 32;
                int q = requant_affine(x[k], f.d, f.sc[j], f.dmin, f.m[j], 3);
                b->qs[32 * h + l] |= (uint8_t)(q << (2 * s));
        }
}

static void pack_k_scales(const int *sc, const int *m, uint8_t *scales)
{
        memset(scales, 0, K_SCALE_SIZE);
        for (int j = 0; j < 8; j++) {
                if (j < 4) {
                        scales[j] = (uint8_t)sc[j];
                        scales[j + 4] = (uint8_t)m[j];
                } else {
                        scales[j + 4] = (uint8_t)((sc[j] & 15) | (m[j] & 15) << 4);
                        scales[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
                        scales[j] |= (uint8_t)((m[j] >> 4) << 6);
                }
        }
}

static void quant_q4_k(const float *x, struct block_q4_K *b)
{
        struct k_fit f;
        memset(b, 0, sizeof(*b));
        fit_k_affine(x, 32, 15, 63, &f, &b->d, &b->dmin);
        pack_k_scales(f.sc, f.m, b->scales);
        for (int k = 0; k < QK_K; k++) {
                int j = k / 32, c = k / 64, hi = j % 2, l = k % 32;
                int q = requant_affine(x[k], f.d, f.sc[j], f.dmin, f.m[j], 15);
                b->qs[32 * c + l] |= (uint8_t)(q << (4 * hi));
        }
}

static void quant_q5_k(const float *x, struct block_q5_K *b)
{
        struct k_fit f;
        memset(b, 0, sizeof(*b));
        fit_k_affine(x, 32, 31, 63, &f, &b->d, &b->dmin);
        pack_k_scales(f.sc, f.m, b->scales);
        for (int k = 0; k < QK_K; k++) {
                int j = k / 32, c = k / 64, hi = j % 2, l = k % 32;
                int q = requant_affine(x[k], f.d, f.sc[j], f.dmin, f.m[j], 31);
                b->qs[32 * c + l] |= (uint8_t)((q & 15) << (4 * hi));
                b->qh[l] |= (uint8_t)((q >> 4) << j);
        }
}

/*
 * Symmetric K-quants: each sub-block of 16 fitted with fit_symmetric, the
 * scales stored as integers in [-smax, smax - 1] of one f16 d.
 */
static float fit_k_symmetric(const float *x, int nmax, int smax, int *sc)
{
        float scale[16], w[16], max = 0, amax = 0;
        int8_t L[16];
        for (int j = 0; j < 16; j++) {
                fit_weights(x + 16 * j, 16, w);
                scale[j] = fit_symmetric(x + 16 * j, 16, nmax, w, L);
                if (fabsf(scale[j]) > amax) {
                        amax = fabsf(scale[j]);
                        max = scale[j];
                }
        }
        if (amax == 0) {
                memset(sc, 0, 16 * sizeof(int));
                return 0;
        }
        const float d = f16_to_f32(f32_to_f16(max / -smax));
        for (int j = 0; j < 16; j++)
                sc[j] = d != 0 ? clampi((int)lrintf(scale[j] / d), -smax, smax - 1) : 0;
        return d;
}

static int requant_symmetric(float x, float s, int nmax)
{
        return s != 0 ? clampi((int)lrintf(x / s), -nmax, nmax - 1) : 0;
}

static void quant_q3_k(const float *x, struct block_q3_K *b)
{
        int sc[16];
        memset(b, 0, sizeof(*b));
        const float d = fit_k_symmetric(x, 4, 32, sc);
        b->d = f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
                int v = sc[j] + 32; /* 6 bits */
                if (j < 8)
                        b->scales[j] |= (uint8_t)(v & 15);
                else
                        b->scales[j - 8] |= (uint8_t)((v & 15) << 4);
                b->scales[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
        }
        for (int k = 0; k < QK_K; k++) {
                int h = k / 128, s = (k / 32) % 4, l = k % 32;
                int q = requant_symmetric(x[k], d * sc[k / 16], 4) + 4; /* 0..7 */
                b->qs[32 * h + l] |= (uint8_t)((q & 3) << (2 * s));
                if (q & 4)
                        b->hmask[l] |= (uint8_t)(1 << (4 * h + s));
        }
}

static void quant_q6_k(const float *x, struct block_q6_K *b)
{
        int sc[16];
        memset(b, 0, sizeof(*b));
        const float d = fit_k_symmetric(x, 32, 128, sc);
        b->d = f32_to_f16(d);
        for (int j = 0; j < 16; j++)
                b->scales[j] = (int8_t)sc[j];
        for (int k = 0; k < QK_K; k++) {
                int h = k / 128, s = (k / 32) % 4, l = k % 32;
                int q = requant_symmetric(x[k], d * sc[k / 16], 32) + 32; /* 0..63 */
                b->ql[64 * h + 32 * (s & 1) + l] |= (uint8_t)((q & 15) << (s < 2 ? 0 : 4));
                b->qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * s));
        }
}

void quantize_row_blocks(enum ggml_type t, const float *x, int64_t n, void *out)
{
        const int64_t be = (int64_t)ggml_type_block_elems(t), bb = (int64_t)ggml_type_block_bytes(t);
        uint8_t *p = out;

        for (int64_t i = 0; i < n / be; i++, x += be, p += bb) {
                switch (t) {
                case GGML_TYPE_Q4_0: quant_q4_0(x, (void *)p); break;
                case GGML_TYPE_Q4_1: quant_q4_1(x, (void *)p); break;
                case GGML_TYPE_Q5_0: quant_q5_0(x, (void *)p); break;
                case GGML_TYPE_Q5_1: quant_q5_1(x, (void *)p); break;
                case GGML_TYPE_Q8_0: quant_q8_0(x, (void *)p); break;
                case GGML_TYPE_Q2_K: quant_q2_k(x, (void *)p); break;
                case GGML_TYPE_Q3_K: quant_q3_k(x, (void *)p); break;
                case GGML_TYPE_Q4_K: quant_q4_k(x, (void *)p); break;
                case GGML_TYPE_Q5_K: quant_q5_k(x, (void *)p); break;
                case GGML_TYPE_Q6_K: quant_q6_k(x, (void *)p); break;
                default: memset(p, 0, bb); break;
                }
        }
}
