/* SPDX-License-Identifier: MIT */
/* The int8 GEMM: packing, the portable C path, and the choice of kernels (gemm_int8.h). */
#include "gemm_int8.h"
#include "kernels.h"

int gemm_i8_pack(int8_t *dst, const int8_t *src, int64_t rows, int64_t K, int32_t *row_sums, uint64_t *clamped)
{
        const int64_t k4 = K & ~(int64_t)3, kt = K - k4;
        /* one panel's rows as they were, since dst may overwrite src */
        _cleanup_free_ int8_t *tmp = malloc((size_t)GEMM_PANEL * K);

        if (!tmp)
                return -ENOMEM;
        for (int64_t p0 = 0; p0 < rows; p0 += GEMM_PANEL) {
                const int64_t h = MIN(GEMM_PANEL, rows - p0);
                int8_t *out = dst + p0 * K;

                memcpy(tmp, src + p0 * K, (size_t)(h * K));
                for (int64_t i = 0; i < h; i++) {
                        int8_t *row = tmp + i * K;
                        int32_t sum = 0;
                        for (int64_t k = 0; k < K; k++) {
                                if (row[k] == INT8_MIN) {
                                        row[k] = -127;
                                        (*clamped)++;
                                }
                                sum += row[k];
                        }
                        row_sums[p0 + i] = sum;
                }
                for (int64_t g = 0; g < k4 / 4; g++)
                        for (int64_t i = 0; i < h; i++)
                                memcpy(out + g * 4 * h + 4 * i, tmp + i * K + 4 * g, 4);
                for (int64_t i = 0; i < h; i++)
                        memcpy(out + k4 * h + i * kt, tmp + i * K + k4, (size_t)kt);
        }
        return 0;
}

void gemm_i8_unpack_row(const int8_t *panels, int64_t rows, int64_t K, int64_t r, int8_t *out)
{
        const int64_t k4 = K & ~(int64_t)3;

        for (int64_t k = 0; k < k4; k += 4)
                memcpy(out + k, panels + gemm_i8_offset(rows, K, r, k), 4);
        if (k4 < K)
                memcpy(out + k4, panels + gemm_i8_offset(rows, K, r, k4), (size_t)(K - k4));
}

/* --- portable C: each row unpacked, then its exact sums with every token --- */

static void gemm_i8_scalar(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys,
                           int64_t r0, int64_t r1)
{
        const int64_t K = w->cols;
        const bool w8a16 = a->prec == NPU_PRECISION_W8A16;
        int8_t row[K];

        for (int64_t r = r0; r < r1; r++) {
                gemm_i8_unpack_row(w->data, w->rows, K, r, row);
                for (int64_t t = 0; t < n_tok; t++) {
                        int64_t sum = 0;
                        if (w8a16)
                                for (int64_t k = 0; k < K; k++)
                                        sum += (int32_t)row[k] * a->q16[t * K + k];
                        else
                                for (int64_t k = 0; k < K; k++)
                                        sum += (int32_t)row[k] * a->q8[t * K + k];
                        y[t * ys + r] = ((float)sum * a->scale[t]) * w->scale[r];
                }
        }
}

/* The kernels of this cpu for a's precision, if its activations have the forms they read. */
static gemm_i8_panels_fn *panels_kernel(const struct act_q *a)
{
        const bool w8a16 = a->prec == NPU_PRECISION_W8A16;

        switch (kernels_isa()) {
        case KERNEL_ISA_AMX:
                if (w8a16)
                        return a->forms & ACT_Q16P ? gemm_i8_w8a16_vnni : NULL;
                return a->forms & ACT_U8P ? gemm_i8_w8a8_amx : NULL;
        case KERNEL_ISA_AVX512_VNNI:
                if (w8a16)
                        return a->forms & ACT_Q16P ? gemm_i8_w8a16_vnni : NULL;
                return a->forms & ACT_U8P ? gemm_i8_w8a8_vnni : NULL;
        case KERNEL_ISA_AVX2:
                if (!(a->forms & ACT_Q16P))
                        return NULL;
                return w8a16 ? gemm_i8_w8a16_avx2 : gemm_i8_w8a8_avx2;
        default:
                return NULL;
        }
}

void gemm_i8(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys, int64_t r0,
             int64_t r1)
{
        gemm_i8_panels_fn *fn = panels_kernel(a);
        /* whole panels: from the first panel boundary at or after r0 to the last full panel's end */
        const int64_t full_end = w->rows - w->rows % GEMM_PANEL;
        int64_t p0 = MIN(ALIGN_TO(r0, GEMM_PANEL), r1), p1 = MAX(p0, MIN(r1 - r1 % GEMM_PANEL, full_end));

        if (!fn) {
                gemm_i8_scalar(w, a, n_tok, y, ys, r0, r1);
                return;
        }
        if (r0 < p0)
                gemm_i8_scalar(w, a, n_tok, y, ys, r0, p0);
        if (p0 < p1)
                fn(w, a, n_tok, y, ys, p0, p1);
        if (p1 < r1)
                gemm_i8_scalar(w, a, n_tok, y, ys, p1, r1);
}

int64_t gemm_i8_chunk_rows(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, int64_t rows)
{
        return panels_kernel(a) == gemm_i8_w8a8_amx ? gemm_i8_amx_chunk_rows(w, n_tok, rows) : rows;
}
