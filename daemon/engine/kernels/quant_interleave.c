/* SPDX-License-Identifier: MIT */
/*
 * Q5_0 and Q5_1 matrices in groups of sixteen rows interleaved block by
 * block (quant_interleave.h has the layout): into it and back out.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "quant_interleave.h"
#include "quant_types.h"
#include "util.h"

/* Where a type's fields are, in its block and in a group's block. */
struct qi_fields {
        size_t bb;        /* block bytes of one row */
        size_t qh, qs, m; /* in the row's block (m: 0 when none) */
        size_t gd, gm;    /* in the group's block: d[16], m[16] */
};

#define QI_QS 0   /* qs[4][64] */
#define QI_QH 256 /* qh[4][2], u64 */

static bool qi_fields_of(enum ggml_type t, struct qi_fields *f)
{
        switch (t) {
        case GGML_TYPE_Q5_0:
                *f = (struct qi_fields) { .bb = sizeof(struct block_q5_0), .qh = offsetof(struct block_q5_0, qh),
                                          .qs = offsetof(struct block_q5_0, qs), .gd = 320 };
                return true;
        case GGML_TYPE_Q5_1:
                *f = (struct qi_fields) { .bb = sizeof(struct block_q5_1), .qh = offsetof(struct block_q5_1, qh),
                                          .qs = offsetof(struct block_q5_1, qs),
                                          .m = offsetof(struct block_q5_1, m), .gd = 320, .gm = 352 };
                return true;
        default:
                return false;
        }
}

bool quant_interleave_type(enum ggml_type t)
{
        struct qi_fields f;
        return qi_fields_of(t, &f);
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
                const uint32_t qh = qi_u32(x[r] + f->qh);
                for (int m = 0; m < 4; m++) {
                        memcpy(g + QI_QS + 64 * m + 4 * r, x[r] + f->qs + 4 * m, 4);
                        /* the four bits of elements 4 m .. 4 m + 3, and of 16 + 4 m .., at bits 4 r .. 4 r + 3 */
                        mask[m][0] |= (uint64_t)(qh >> 4 * m & 15) << 4 * r;
                        mask[m][1] |= (uint64_t)(qh >> (16 + 4 * m) & 15) << 4 * r;
                }
                memcpy(g + f->gd + 2 * r, x[r], 2); /* d leads both blocks */
                if (f->m)
                        memcpy(g + f->gm + 2 * r, x[r] + f->m, 2);
        }
        memcpy(g + QI_QH, mask, sizeof(mask));
}

void quant_interleave_group(enum ggml_type t, int64_t K, const uint8_t *src, uint8_t *dst)
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

void quant_deinterleave_row(enum ggml_type t, int64_t K, const uint8_t *src, int r, uint8_t *dst)
{
        struct qi_fields f;

        if (!qi_fields_of(t, &f))
                return;
        for (int64_t b = 0; b < K / 32; b++) {
                const uint8_t *g = src + b * QI_ROWS * f.bb;
                uint8_t *x = dst + b * f.bb;
                uint64_t mask[4][2];
                uint32_t qh = 0;
                memcpy(mask, g + QI_QH, sizeof(mask));
                for (int m = 0; m < 4; m++) {
                        memcpy(x + f.qs + 4 * m, g + QI_QS + 64 * m + 4 * r, 4);
                        qh |= (uint32_t)(mask[m][0] >> 4 * r & 15) << 4 * m;
                        qh |= (uint32_t)(mask[m][1] >> 4 * r & 15) << (16 + 4 * m);
                }
                memcpy(x + f.qh, &qh, 4);
                memcpy(x, g + f.gd + 2 * r, 2);
                if (f.m)
                        memcpy(x + f.m, g + f.gm + 2 * r, 2);
        }
}

void quant_interleaved_rows(const struct npu_weight *w, int64_t r0, int64_t r1, uint8_t *dst)
{
        for (int64_t r = r0; r < r1; r++) {
                const uint8_t *g = (const uint8_t *)w->data + (r / QI_ROWS) * QI_ROWS * w->row_bytes;
                quant_deinterleave_row(w->type, w->cols, g, (int)(r % QI_ROWS), dst + (r - r0) * w->row_bytes);
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
