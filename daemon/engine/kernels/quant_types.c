/* SPDX-License-Identifier: MIT */
/* What each block-quantized type means: dequantization and scale checks, from the layouts in quant_types.h. */
#include <math.h>

#include "quant_types.h"

bool quant_type_supported(enum ggml_type t)
{
        return quant_type_act_scheme(t) != ACT_SCHEME_NONE;
}

enum act_scheme quant_type_act_scheme(enum ggml_type t)
{
        switch (t) {
        case GGML_TYPE_Q4_0:
        case GGML_TYPE_Q5_0:
        case GGML_TYPE_Q8_0:
                return ACT_SCHEME_Q8_0;
        case GGML_TYPE_Q4_1:
        case GGML_TYPE_Q5_1:
                return ACT_SCHEME_Q8_1;
        case GGML_TYPE_Q2_K:
        case GGML_TYPE_Q3_K:
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K:
        case GGML_TYPE_Q6_K:
                return ACT_SCHEME_Q8_K;
        default:
                return ACT_SCHEME_NONE;
        }
}

const char *act_scheme_name(enum act_scheme s)
{
        switch (s) {
        case ACT_SCHEME_Q8_0: return "Q8_0";
        case ACT_SCHEME_Q8_1: return "Q8_1";
        case ACT_SCHEME_Q8_K: return "Q8_K";
        case ACT_SCHEME_TOKEN_I8: return "int8 per token";
        default: return "float";
        }
}

static uint32_t le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void dequant_q4_0(const struct block_q4_0 *b, float *y)
{
        const float d = f16_to_f32(b->d);
        for (int k = 0; k < 16; k++) {
                y[k] = d * (float)((b->qs[k] & 15) - 8);
                y[k + 16] = d * (float)((b->qs[k] >> 4) - 8);
        }
}

static void dequant_q4_1(const struct block_q4_1 *b, float *y)
{
        const float d = f16_to_f32(b->d), m = f16_to_f32(b->m);
        for (int k = 0; k < 16; k++) {
                y[k] = d * (float)(b->qs[k] & 15) + m;
                y[k + 16] = d * (float)(b->qs[k] >> 4) + m;
        }
}

static void dequant_q5_0(const struct block_q5_0 *b, float *y)
{
        const float d = f16_to_f32(b->d);
        const uint32_t qh = le32(b->qh);
        for (int k = 0; k < 16; k++) {
                int lo = (b->qs[k] & 15) | ((qh >> k) & 1) << 4;
                int hi = (b->qs[k] >> 4) | ((qh >> (k + 16)) & 1) << 4;
                y[k] = d * (float)(lo - 16);
                y[k + 16] = d * (float)(hi - 16);
        }
}

static void dequant_q5_1(const struct block_q5_1 *b, float *y)
{
        const float d = f16_to_f32(b->d), m = f16_to_f32(b->m);
        const uint32_t qh = le32(b->qh);
        for (int k = 0; k < 16; k++) {
                int lo = (b->qs[k] & 15) | ((qh >> k) & 1) << 4;
                int hi = (b->qs[k] >> 4) | ((qh >> (k + 16)) & 1) << 4;
                y[k] = d * (float)lo + m;
                y[k + 16] = d * (float)hi + m;
        }
}

static void dequant_q8_0(const struct block_q8_0 *b, float *y)
{
        const float d = f16_to_f32(b->d);
        for (int k = 0; k < 32; k++)
                y[k] = d * (float)b->qs[k];
}

static void dequant_q2_k(const struct block_q2_K *b, float *y)
{
        const float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
        for (int k = 0; k < QK_K; k++) {
                int h = k / 128, s = (k / 32) % 4, l = k % 32, j = k / 16;
                int q = (b->qs[32 * h + l] >> (2 * s)) & 3;
                y[k] = d * (float)(b->scales[j] & 15) * (float)q - dmin * (float)(b->scales[j] >> 4);
        }
}

static void dequant_q3_k(const struct block_q3_K *b, float *y)
{
        const float d = f16_to_f32(b->d);
        for (int k = 0; k < QK_K; k++) {
                int h = k / 128, s = (k / 32) % 4, l = k % 32;
                int q = (b->qs[32 * h + l] >> (2 * s)) & 3;
                if (!((b->hmask[l] >> (4 * h + s)) & 1))
                        q -= 4;
                y[k] = d * (float)q3_k_scale(b->scales, k / 16) * (float)q;
        }
}

static void dequant_q4_k(const struct block_q4_K *b, float *y)
{
        const float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
        for (int k = 0; k < QK_K; k++) {
                int c = k / 64, u = (k / 32) % 2, l = k % 32;
                uint8_t sc, m;
                k_scale_min(b->scales, k / 32, &sc, &m);
                int q = u ? b->qs[32 * c + l] >> 4 : b->qs[32 * c + l] & 15;
                y[k] = d * (float)sc * (float)q - dmin * (float)m;
        }
}

static void dequant_q5_k(const struct block_q5_K *b, float *y)
{
        const float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
        for (int k = 0; k < QK_K; k++) {
                int c = k / 64, u = (k / 32) % 2, l = k % 32, j = k / 32;
                uint8_t sc, m;
                k_scale_min(b->scales, j, &sc, &m);
                int q = u ? b->qs[32 * c + l] >> 4 : b->qs[32 * c + l] & 15;
                q |= ((b->qh[l] >> j) & 1) << 4;
                y[k] = d * (float)sc * (float)q - dmin * (float)m;
        }
}

static void dequant_q6_k(const struct block_q6_K *b, float *y)
{
        const float d = f16_to_f32(b->d);
        for (int k = 0; k < QK_K; k++) {
                int h = k / 128, s = (k / 32) % 4, l = k % 32;
                uint8_t lo = b->ql[64 * h + 32 * (s & 1) + l];
                int q = (s < 2 ? lo & 15 : lo >> 4) | ((b->qh[32 * h + l] >> (2 * s)) & 3) << 4;
                y[k] = d * (float)b->scales[k / 16] * (float)(q - 32);
        }
}

void dequantize_row(enum ggml_type t, const void *blocks, float *out, int64_t n)
{
        const size_t be = ggml_type_block_elems(t), bb = ggml_type_block_bytes(t);
        const uint8_t *p = blocks;

        for (int64_t i = 0; i < n / (int64_t)be; i++, p += bb, out += be) {
                switch (t) {
                case GGML_TYPE_Q4_0: dequant_q4_0((const void *)p, out); break;
                case GGML_TYPE_Q4_1: dequant_q4_1((const void *)p, out); break;
                case GGML_TYPE_Q5_0: dequant_q5_0((const void *)p, out); break;
                case GGML_TYPE_Q5_1: dequant_q5_1((const void *)p, out); break;
                case GGML_TYPE_Q8_0: dequant_q8_0((const void *)p, out); break;
                case GGML_TYPE_Q2_K: dequant_q2_k((const void *)p, out); break;
                case GGML_TYPE_Q3_K: dequant_q3_k((const void *)p, out); break;
                case GGML_TYPE_Q4_K: dequant_q4_k((const void *)p, out); break;
                case GGML_TYPE_Q5_K: dequant_q5_k((const void *)p, out); break;
                case GGML_TYPE_Q6_K: dequant_q6_k((const void *)p, out); break;
                default: memset(out, 0, be * sizeof(float)); break;
                }
        }
}

static bool f16_finite(const uint8_t *p)
{
        uint16_t h;
        memcpy(&h, p, 2);
        return (h & 0x7c00) != 0x7c00;
}

int quant_row_check(enum ggml_type t, const void *blocks, int64_t n, int64_t *ret_bad_block)
{
        const size_t be = ggml_type_block_elems(t), bb = ggml_type_block_bytes(t);
        /* byte offsets of the f16 fields inside a block; -1 ends the list */
        int off[3] = { -1, -1, -1 };
        const uint8_t *p = blocks;

        switch (t) {
        case GGML_TYPE_Q4_0:
        case GGML_TYPE_Q5_0:
        case GGML_TYPE_Q8_0:
                off[0] = 0;
                break;
        case GGML_TYPE_Q4_1:
        case GGML_TYPE_Q5_1:
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K:
                off[0] = 0, off[1] = 2;
                break;
        case GGML_TYPE_Q2_K:
                off[0] = offsetof(struct block_q2_K, d), off[1] = offsetof(struct block_q2_K, dmin);
                break;
        case GGML_TYPE_Q3_K:
                off[0] = offsetof(struct block_q3_K, d);
                break;
        case GGML_TYPE_Q6_K:
                off[0] = offsetof(struct block_q6_K, d);
                break;
        default:
                return 0;
        }
        for (int64_t i = 0; i < n / (int64_t)be; i++, p += bb)
                for (int f = 0; f < 3 && off[f] >= 0; f++)
                        if (!f16_finite(p + off[f])) {
                                if (ret_bad_block)
                                        *ret_bad_block = i;
                                return -EBADMSG;
                        }
        return 0;
}
