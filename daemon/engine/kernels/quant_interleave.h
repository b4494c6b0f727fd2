/* SPDX-License-Identifier: MIT */
/*
 * Block-quantized matrices of the nibble types (Q4_0, Q4_1, Q5_0, Q5_1,
 * Q4_K, Q5_K, Q6_K), of Q2_K and Q3_K and of Q8_0 in groups of QI_ROWS rows
 * interleaved block by block, the layout the AVX-512 VNNI one-token
 * kernel (quant_interleave_vnni.c) and the GEMMs (gemm_block_vnni.c,
 * gemm_kquant_vnni.c) read: each row in its own 32-bit
 * lane, so four columns of sixteen rows are one vpdpbusd against four
 * activation bytes broadcast, with no horizontal sums and no shuffles. The
 * group's bytes are the sixteen rows' bytes, rearranged (the matrix keeps
 * its size and place). A group's block b (16 x the type's block bytes, at
 * b times that from the group's start), at the offsets struct qi_layout
 * gives, with V = 4 (32-element nibble types), 8 (Q8_0), 32 (Q4_K, Q5_K, Q6_K's ql)
 * or 16 (Q2_K, Q3_K) vectors of qs:
 *
 *   qs[V][64]  vector v, bytes 4 r .. 4 r + 3: row r's qs[4 v .. 4 v + 3]
 *              (32-element nibble types: low nibbles elements 4 v + i,
 *              high 16 + 4 v + i; Q8_0: elements 4 v + i, signed, read
 *              plus 128 (off 128); Q4_K, Q5_K, v = 8 c + n: low
 *              64 c + 4 n + i, high 64 c + 32 + 4 n + i; Q6_K, v = 16 h + n:
 *              low 128 h + 4 n + i, high 128 h + 64 + 4 n + i; Q2_K, Q3_K,
 *              v = 8 h + n: bits 2 s, 2 s + 1 element
 *              128 h + 32 s + 4 n + i)
 *   qh[V][H]   Q5_0, Q5_1, Q5_K (H 2): u64 masks, bit 4 r + i of [v][0]:
 *              the fifth bit of row r's low nibble i of vector v; of
 *              [v][1]: of its high nibble i; Q3_K (H 4): bit 4 r + i of
 *              [v][s]: the high bit (hmask) of row r's q i of vector v
 *              at bits 2 s, 2 s + 1
 *   sc[S][64]  Q4_K, Q5_K, Q3_K (S 3), Q2_K (S 4): vector s, bytes
 *              4 r .. 4 r + 3: row r's packed scales[4 s .. 4 s + 3]
 *   d[16]      f16, row r's d
 *   m[16]      Q4_1, Q5_1: f16, row r's m; Q2_K, Q4_K, Q5_K: row r's dmin
 *
 * Q6_K's parts lie in the order its walk reads them (q6k_block_tokens):
 * sc[4][64] as above (its scales: signed bytes) at the block's start, then
 * for each j = 8 h + m (16) one run of three vectors: qs vectors 16 h + m
 * and 16 h + m + 8 (qi_qs_at), and qh vector j (qi_qh_at), bytes
 * 4 r .. 4 r + 3 row r's qh[32 h + 4 m .. 32 h + 4 m + 3], whose bits
 * 2 s, 2 s + 1 top (as 16 and 32) the low nibbles of the first (s 0) and
 * of the second (s 1), the high nibbles of the same (s 2, s 3); then d.
 * Read in that order the group streams through memory as the hardware
 * fetches it; with the parts apart (qs, qh, sc, d as for the others) the
 * walk read 79-81 % of the read bandwidth against 86-92 % (Zen 5, 2
 * threads, npu-kbench --type q6_k --rows 11008 --cols 4096 paired with the
 * probe, three rounds alternated, 3 blocks ahead).
 *
 * A weight's interleave field says which layout its data is in (model.h).
 * Every kernel path reads both: those above the groups, the others a
 * group's rows put back in their own layout (quant_interleaved_rows), and
 * all compute the same numbers.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "model.h"

#define QI_ROWS 16

struct act_blocks;

/* Where the parts of a type's group block are (bytes from its start; qh, sc, m: 0 when none). */
struct qi_layout {
        size_t bytes, qh, sc, d, m;
        int nsc;  /* vectors of packed scales at sc */
        int be;   /* the type's block: 32 or 256 elements */
        int bits; /* of q in qs: 4 (nibbles), 2 (Q2_K, Q3_K) or 8 (Q8_0) */
        int nh;   /* qh masks per vector of qs: its nibbles' (2) or Q3_K's shifts' (4) */
        int off;  /* the offset of q: w = q - off (Q4_0 8, Q5_0 16, Q3_K 4, Q6_K 32; Q8_0 128, q its byte xor 0x80) */
        bool qh_words; /* Q6_K: qh 2 bits an element, as each row's 4-byte words (16 vectors), in runs */
};

static inline bool qi_layout_of(enum ggml_type t, struct qi_layout *l)
{
        *l = (struct qi_layout){ .be = 32, .bits = 4, .nh = 2 };
        switch (t) {
        case GGML_TYPE_Q4_0:
                l->off = 8;
                break;
        case GGML_TYPE_Q5_0:
                l->off = 16;
                l->qh = 1;
                break;
        case GGML_TYPE_Q4_1:
                l->m = 1;
                break;
        case GGML_TYPE_Q5_1:
                l->qh = 1, l->m = 1;
                break;
        case GGML_TYPE_Q8_0:
                l->bits = 8, l->off = 128;
                break;
        case GGML_TYPE_Q2_K:
                l->be = 256, l->bits = 2, l->nsc = 4, l->m = 1;
                break;
        case GGML_TYPE_Q3_K:
                l->be = 256, l->bits = 2, l->nsc = 3, l->qh = 1, l->nh = 4, l->off = 4;
                break;
        case GGML_TYPE_Q4_K:
                l->be = 256, l->nsc = 3, l->m = 1;
                break;
        case GGML_TYPE_Q5_K:
                l->be = 256, l->nsc = 3, l->qh = 1, l->m = 1;
                break;
        case GGML_TYPE_Q6_K:
                /* sc, then 16 runs of qs, qs, qh (64 bytes each), then d */
                l->be = 256, l->nsc = 4, l->qh_words = true, l->off = 32;
                l->sc = 0, l->qh = 64 * 4 + 128, l->d = 64 * 4 + 16 * 192, l->bytes = l->d + 32;
                return true;
        default:
                return false;
        }
        /* in order: qs, qh (a bit an element), sc, d, m */
        const size_t qs = (size_t)l->be * QI_ROWS * l->bits / 8, qh = l->qh ? (size_t)l->be * QI_ROWS / 8 : 0;
        l->qh = l->qh ? qs : 0;
        l->sc = l->nsc ? qs + qh : 0;
        l->d = qs + qh + 64 * (size_t)l->nsc;
        l->m = l->m ? l->d + 32 : 0;
        l->bytes = l->d + (l->m ? 64 : 32);
        return true;
}

/* Where vector v of qs is in a group block. */
static inline size_t qi_qs_at(const struct qi_layout *l, int v)
{
        if (!l->qh_words)
                return 64 * (size_t)v;
        /* Q6_K: the runs of vectors 16 h + m, 16 h + m + 8, qh 8 h + m, 192 bytes each, after sc */
        return 64 * (size_t)l->nsc + 192 * (size_t)(8 * (v / 16) + v % 8) + 64 * (size_t)(v % 16 / 8);
}

/* Q6_K: where vector j (8 h + m) of qh words is in a group block. */
static inline size_t qi_qh_at(const struct qi_layout *l, int j)
{
        return l->qh + 192 * (size_t)j;
}

/* Whether t has the interleaved layout. */
bool quant_interleave_type(enum ggml_type t);

/*
 * Whether w is worth interleaving on this machine: a type with the layout,
 * whole groups of rows, and the AVX-512 VNNI kernels in use (the others
 * read interleaved rows only by putting them back). NPU_INTERLEAVE=0 turns
 * it off (to compare the two).
 */
bool quant_interleave_wanted(const struct npu_weight *w);

/* Row r of the interleaved w as floats (out: w->cols), a block at a time. */
void quant_interleaved_row_f32(const struct npu_weight *w, int64_t r, float *out);

/* Rows [r0, r1) of the interleaved w, in their own layout, one after the other into dst. */
void quant_interleaved_rows(const struct npu_weight *w, int64_t r0, int64_t r1, uint8_t *dst);

/*
 * Interleaves w's data in place (w->data must be writable); sets
 * w->interleave. Returns -ENOMEM (w unchanged) or -EINVAL when w has no
 * such layout.
 */
int quant_interleave_weight(struct npu_weight *w);

/*
 * The AVX-512 VNNI one-token kernel on an interleaved weight: y[t * ys + r]
 * for r in [r0, r1) (any rows: a group's other rows are computed and not
 * stored), as matmul_quant_rows, before a per-token scale.
 */
void matmul_interleaved_vnni(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y,
                             size_t ys, int64_t r0, int64_t r1);
