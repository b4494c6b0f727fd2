/* SPDX-License-Identifier: MIT */
/*
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K
 * matrices in groups of sixteen rows interleaved block by block
 * (quant_interleave.h has the layout): into it and back out.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "quant_interleave.h"
#include "quant_types.h"
#include "util.h"

/* Where a type's fields are in a row's block (those the group's layout has: g), and in a group's. */
struct qi_fields {
        size_t bb, d, qs, qh, sc, m;
        struct qi_layout g;
};

#define QI_FIELDS(f, blk, qh_, sc_, m_)                                                               \
        ((f)->d = offsetof(struct blk, d), (f)->qs = offsetof(struct blk, qs), (f)->qh = (qh_),        \
         (f)->sc = (sc_), (f)->m = (m_))

static bool qi_fields_of(enum ggml_type t, struct qi_fields *f)
{
        if (!qi_layout_of(t, &f->g))
                return false;
        f->bb = ggml_type_block_bytes(t);
        switch (t) {
        case GGML_TYPE_Q4_0:
                QI_FIELDS(f, block_q4_0, 0, 0, 0);
                break;
        case GGML_TYPE_Q4_1:
                QI_FIELDS(f, block_q4_1, 0, 0, offsetof(struct block_q4_1, m));
                break;
        case GGML_TYPE_Q5_0:
                QI_FIELDS(f, block_q5_0, offsetof(struct block_q5_0, qh), 0, 0);
                break;
        case GGML_TYPE_Q5_1:
                QI_FIELDS(f, block_q5_1, offsetof(struct block_q5_1, qh), 0, offsetof(struct block_q5_1, m));
                break;
        case GGML_TYPE_Q8_0:
                QI_FIELDS(f, block_q8_0, 0, 0, 0);
                break;
        case GGML_TYPE_Q2_K:
                QI_FIELDS(f, block_q2_K, 0, offsetof(struct block_q2_K, scales), offsetof(struct block_q2_K, dmin));
                break;
        case GGML_TYPE_Q3_K:
                QI_FIELDS(f, block_q3_K, offsetof(struct block_q3_K, hmask), offsetof(struct block_q3_K, scales), 0);
                break;
        case GGML_TYPE_Q4_K:
                QI_FIELDS(f, block_q4_K, 0, offsetof(struct block_q4_K, scales), offsetof(struct block_q4_K, dmin));
                break;
        case GGML_TYPE_Q6_K:
                f->d = offsetof(struct block_q6_K, d), f->qs = offsetof(struct block_q6_K, ql);
                f->qh = offsetof(struct block_q6_K, qh), f->sc = offsetof(struct block_q6_K, scales), f->m = 0;
                break;
        default:
                QI_FIELDS(f, block_q5_K, offsetof(struct block_q5_K, qh), offsetof(struct block_q5_K, scales),
                          offsetof(struct block_q5_K, dmin));
        }
        return true;
}

/* The vectors of qs of a group block (the 4-byte words of a row's qs). */
static int qi_vectors(const struct qi_fields *f)
{
        return f->g.be * f->g.bits / 32;
}

/* Q6_K: the vectors of qh words (each row's qh, 4 bytes at a time) */
static int qi_qh_words(const struct qi_fields *f)
{
        return f->g.qh_words ? f->g.be / 16 : 0;
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
        /* Q6_K's interleaved walks are measured on AMD's cores only (quant_interleave_vnni.c) */
        if (w->type == GGML_TYPE_Q6_K && __builtin_cpu_is("intel"))
                return false;
        return !w->interleave && quant_interleave_type(w->type) && w->rows % QI_ROWS == 0 &&
               w->cols % (int64_t)ggml_type_block_elems(w->type) == 0 && kernels_isa() >= KERNEL_ISA_AVX512_VNNI;
}

static uint32_t qi_u32(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
}

/*
 * The four high bits (Q5's fifth, Q3_K's hmask) of vector v's mask h in a
 * row's block x, as bits 0-3. 32-element types: bits 4 v .. (+ 16 for the
 * high nibbles) of qh; K-quants (v = 8 c + n): bit nh c + h of
 * qh[4 n + i].
 */
static uint32_t qi_high_bits(const struct qi_fields *f, const uint8_t *x, int v, int h)
{
        if (f->g.be == 32)
                return qi_u32(x + f->qh) >> (16 * h + 4 * v) & 15;
        /* the bit of each byte, then the four bytes' bits side by side (no carries: 0, 7, 14, 21 apart) */
        const uint32_t b = qi_u32(x + f->qh + 4 * (v % 8)) >> (f->g.nh * (v / 8) + h) & 0x01010101u;
        return (b * 0x00204081u) >> 21 & 15;
}

/* The reverse: the four bits n of vector v's mask h into the row's qh at x. */
static void qi_put_high_bits(const struct qi_fields *f, uint8_t *x, int v, int h, uint32_t n)
{
        const size_t at = f->g.be == 32 ? 0 : 4 * (size_t)(v % 8);
        uint32_t qh = qi_u32(x + f->qh + at);

        if (f->g.be == 32)
                qh |= n << (16 * h + 4 * v);
        else
                qh |= ((n * 0x00204081u) & 0x01010101u) << (f->g.nh * (v / 8) + h);
        memcpy(x + f->qh + at, &qh, 4);
}

/* One block of the sixteen rows (x[r]: row r's block) into the group's block g. */
static void qi_block(const struct qi_fields *f, const uint8_t *const *x, uint8_t *g)
{
        const int nv = qi_vectors(f), nh = f->g.nh;

        for (int r = 0; r < QI_ROWS; r++) {
                for (int v = 0; v < nv; v++) {
                        memcpy(g + qi_qs_at(&f->g, v) + 4 * r, x[r] + f->qs + 4 * v, 4);
                        for (int h = 0; f->g.qh && !f->g.qh_words && h < nh; h++) {
                                uint8_t *at = g + f->g.qh + 8 * (nh * v + h);
                                uint64_t mask;
                                memcpy(&mask, at, 8);
                                mask = (r ? mask : 0) | (uint64_t)qi_high_bits(f, x[r], v, h) << 4 * r;
                                memcpy(at, &mask, 8);
                        }
                }
                for (int v = 0; v < qi_qh_words(f); v++)
                        memcpy(g + qi_qh_at(&f->g, v) + 4 * r, x[r] + f->qh + 4 * v, 4);
                for (int s = 0; s < f->g.nsc; s++)
                        memcpy(g + f->g.sc + 64 * s + 4 * r, x[r] + f->sc + 4 * s, 4);
                memcpy(g + f->g.d + 2 * r, x[r] + f->d, 2);
                if (f->g.m)
                        memcpy(g + f->g.m + 2 * r, x[r] + f->m, 2);
        }
}

/* QI_ROWS rows of K elements of type t, one after the other at src, into one group at dst (not src). */
static void quant_interleave_group(enum ggml_type t, int64_t K, const uint8_t *src, uint8_t *dst)
{
        struct qi_fields f;

        if (!qi_fields_of(t, &f))
                return;
        const int64_t nb = K / f.g.be;
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
        const int nv = qi_vectors(f), nh = f->g.nh;

        if (f->g.qh && !f->g.qh_words)
                memset(x + f->qh, 0, (size_t)f->g.be / 8);
        for (int v = 0; v < qi_qh_words(f); v++)
                memcpy(x + f->qh + 4 * v, g + qi_qh_at(&f->g, v) + 4 * r, 4);
        for (int v = 0; v < nv; v++) {
                memcpy(x + f->qs + 4 * v, g + qi_qs_at(&f->g, v) + 4 * r, 4);
                for (int h = 0; f->g.qh && !f->g.qh_words && h < nh; h++) {
                        uint64_t mask;
                        memcpy(&mask, g + f->g.qh + 8 * (nh * v + h), 8);
                        qi_put_high_bits(f, x, v, h, (uint32_t)(mask >> 4 * r & 15));
                }
        }
        for (int s = 0; s < f->g.nsc; s++)
                memcpy(x + f->sc + 4 * s, g + f->g.sc + 64 * s + 4 * r, 4);
        memcpy(x + f->d, g + f->g.d + 2 * r, 2);
        if (f->g.m)
                memcpy(x + f->m, g + f->g.m + 2 * r, 2);
}

/* Row r of the group at src, in its own layout, into dst (row bytes). */
static void quant_deinterleave_row(enum ggml_type t, int64_t K, const uint8_t *src, int r, uint8_t *dst)
{
        struct qi_fields f;

        if (!qi_fields_of(t, &f))
                return;
        for (int64_t b = 0; b < K / f.g.be; b++)
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
        uint8_t x[sizeof(struct block_q6_K)]; /* a block of any of the types (Q6_K's the largest) */

        if (!qi_fields_of(w->type, &f) || f.bb > sizeof(x))
                return;
        for (int64_t b = 0; b < w->cols / f.g.be; b++) {
                qi_unblock(&f, g + b * QI_ROWS * f.bb, (int)(r % QI_ROWS), x);
                dequantize_row(w->type, x, out + f.g.be * b, f.g.be);
        }
}

int quant_interleave_weight(struct npu_weight *w)
{
        const size_t group_bytes = QI_ROWS * w->row_bytes;

        if (w->interleave || !quant_interleave_type(w->type) || w->rows % QI_ROWS ||
            w->cols % (int64_t)ggml_type_block_elems(w->type))
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
