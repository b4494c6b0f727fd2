/* SPDX-License-Identifier: MIT */
/*
 * Q4_0, Q4_1, Q5_0 and Q5_1 matrices in groups of sixteen rows
 * interleaved block by block (quant_interleave.h has the layout): into it
 * and back out.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "quant_interleave.h"
#include "quant_types.h"
#include "util.h"

/* Where a type's fields are in a row's block (qh, m: 0 when none; d leads every block), and in a group's. */
struct qi_fields {
        size_t bb, qh, qs, m;
        struct qi_layout g;
};

static bool qi_fields_of(enum ggml_type t, struct qi_fields *f)
{
        if (!qi_layout_of(t, &f->g))
                return false;
        f->bb = ggml_type_block_bytes(t);
        switch (t) {
        case GGML_TYPE_Q4_0:
                f->qh = 0, f->m = 0, f->qs = offsetof(struct block_q4_0, qs);
                break;
        case GGML_TYPE_Q4_1:
                f->qh = 0, f->m = offsetof(struct block_q4_1, m), f->qs = offsetof(struct block_q4_1, qs);
                break;
        case GGML_TYPE_Q5_0:
                f->qh = offsetof(struct block_q5_0, qh), f->m = 0, f->qs = offsetof(struct block_q5_0, qs);
                break;
        default:
                f->qh = offsetof(struct block_q5_1, qh), f->m = offsetof(struct block_q5_1, m);
                f->qs = offsetof(struct block_q5_1, qs);
        }
        return true;
}

bool quant_interleave_type(enum ggml_type t)
{
        struct qi_layout l;
        return qi_layout_of(t, &l);
}

bool quant_interleave_wanted(const struct npu_weight *w)
{
        const char *e = getenv("NPU_INTERLEAVE");

        if (e && strcmp(e, "0") == 0)
                return false;
        return !w->interleave && quant_interleave_type(w->type) && w->rows % QI_ROWS == 0 && w->cols % 32 == 0 &&
               kernels_isa() == KERNEL_ISA_AVX512_VNNI;
}

static uint32_t qi_u32(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
}

/* One block of the sixteen rows (x[r]: row r's block) into the group's block g. */
static void qi_block(const struct qi_fields *f, const uint8_t *const *x, uint8_t *g)
{
        uint64_t mask[4][2] = { { 0 } };

        for (int r = 0; r < QI_ROWS; r++) {
                const uint32_t qh = f->qh ? qi_u32(x[r] + f->qh) : 0;
                for (int m = 0; m < 4; m++) {
                        memcpy(g + 64 * m + 4 * r, x[r] + f->qs + 4 * m, 4);
                        /* the four bits of elements 4 m .. 4 m + 3, and of 16 + 4 m .., at bits 4 r .. 4 r + 3 */
                        mask[m][0] |= (uint64_t)(qh >> 4 * m & 15) << 4 * r;
                        mask[m][1] |= (uint64_t)(qh >> (16 + 4 * m) & 15) << 4 * r;
                }
                memcpy(g + f->g.d + 2 * r, x[r], 2);
                if (f->m)
                        memcpy(g + f->g.m + 2 * r, x[r] + f->m, 2);
        }
        if (f->qh)
                memcpy(g + f->g.qh, mask, sizeof(mask));
}

/* QI_ROWS rows of K elements of type t, one after the other at src, into one group at dst (not src). */
static void quant_interleave_group(enum ggml_type t, int64_t K, const uint8_t *src, uint8_t *dst)
{
        struct qi_fields f;

        if (!qi_fields_of(t, &f))
                return;
        const int64_t nb = K / 32;
        const size_t row_bytes = (size_t)nb * f.bb;
        for (int64_t b = 0; b < nb; b++) {
                const uint8_t *x[QI_ROWS];
                for (int r = 0; r < QI_ROWS; r++)
                        x[r] = src + r * row_bytes + b * f.bb;
                qi_block(&f, x, dst + b * QI_ROWS * f.bb);
        }
}

/* Row r's block out of the group's block g into x (the type's block bytes). */
static void qi_unblock(const struct qi_fields *f, const uint8_t *g, int r, uint8_t *x)
{
        uint64_t mask[4][2] = { { 0 } };
        uint32_t qh = 0;

        if (f->qh)
                memcpy(mask, g + f->g.qh, sizeof(mask));
        for (int m = 0; m < 4; m++) {
                memcpy(x + f->qs + 4 * m, g + 64 * m + 4 * r, 4);
                qh |= (uint32_t)(mask[m][0] >> 4 * r & 15) << 4 * m;
                qh |= (uint32_t)(mask[m][1] >> 4 * r & 15) << (16 + 4 * m);
        }
        if (f->qh)
                memcpy(x + f->qh, &qh, 4);
        memcpy(x, g + f->g.d + 2 * r, 2);
        if (f->m)
                memcpy(x + f->m, g + f->g.m + 2 * r, 2);
}

/* Row r of the group at src, in its own layout, into dst (row bytes). */
static void quant_deinterleave_row(enum ggml_type t, int64_t K, const uint8_t *src, int r, uint8_t *dst)
{
        struct qi_fields f;

        if (!qi_fields_of(t, &f))
                return;
        for (int64_t b = 0; b < K / 32; b++)
                qi_unblock(&f, src + b * QI_ROWS * f.bb, r, dst + b * f.bb);
}

void quant_interleaved_rows(const struct npu_weight *w, int64_t r0, int64_t r1, uint8_t *dst)
{
        for (int64_t r = r0; r < r1; r++) {
                const uint8_t *g = (const uint8_t *)w->data + (r / QI_ROWS) * QI_ROWS * w->row_bytes;
                quant_deinterleave_row(w->type, w->cols, g, (int)(r % QI_ROWS), dst + (r - r0) * w->row_bytes);
        }
}

void quant_interleaved_row_f32(const struct npu_weight *w, int64_t r, float *out)
{
        const uint8_t *g = (const uint8_t *)w->data + (r / QI_ROWS) * QI_ROWS * w->row_bytes;
        struct qi_fields f;
        uint8_t x[32]; /* a block of any of the types (Q5_1's 24 bytes at most) */

        if (!qi_fields_of(w->type, &f) || f.bb > sizeof(x))
                return;
        for (int64_t b = 0; b < w->cols / 32; b++) {
                qi_unblock(&f, g + b * QI_ROWS * f.bb, (int)(r % QI_ROWS), x);
                dequantize_row(w->type, x, out + 32 * b, 32);
        }
}

int quant_interleave_weight(struct npu_weight *w)
{
        const size_t group_bytes = QI_ROWS * w->row_bytes;

        if (w->interleave || !quant_interleave_type(w->type) || w->rows % QI_ROWS || w->cols % 32)
                return -EINVAL;
        _cleanup_free_ uint8_t *rows = malloc(group_bytes);
        if (!rows)
                return -ENOMEM;
        for (int64_t g = 0; g < w->rows / QI_ROWS; g++) {
                uint8_t *at = (uint8_t *)w->data + g * group_bytes;
                memcpy(rows, at, group_bytes);
                quant_interleave_group(w->type, w->cols, rows, at);
        }
        w->interleave = QI_ROWS;
        return 0;
}
