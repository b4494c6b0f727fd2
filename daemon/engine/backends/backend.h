/* SPDX-License-Identifier: MIT */
/*
 * Back ends of the forward pass. forward() walks the layers once and calls
 * the ops below; a back end either runs each op at once (cpu) or records it
 * into command buffers and runs them at the next sync() (npu, through
 * libnpu). Between syncs the cpu may touch only what the last sync made
 * visible: attention runs on the cpu (see attention.c) over the paged KV
 * cache, which every back end keeps in memory the cpu can read.
 *
 * Every op has one definition, the device's (daemon/libnpu/npu_ref.h): the
 * int8 GEMMs and activation quantizer are exact; RMSNorm, RoPE and SiLU are
 * computed by the cpu with the reference's formulas and math helpers, so
 * the cpu and the device produce the same bits and a pass can move between
 * them (retry after a device fault, fallback, detach) without changing a
 * token.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kernels_quant.h"
#include "model.h"
#include "quant.h"

struct npu_ctx;
struct npu_batch;

enum backend_target {
        BACKEND_TARGET_CPU = 0,
        BACKEND_TARGET_NPU = 1,
};

const char *backend_target_name(enum backend_target t);
int backend_target_from_string(const char *s, enum backend_target *ret);

/* Activation buffers of one forward pass, sized for cap tokens. */
struct forward_scratch {
        int32_t cap;
        float *x, *xb, *q, *k, *v, *att, *hb, *hb2;
        float *out_rows;
        /* quantized activations for int8 weights */
        struct act_q aq;
        /* for block-quantized weights, per activation scheme (those the model uses) */
        struct act_blocks ab[_ACT_SCHEME_MAX];
        /*
         * The cpu back end's: aq already holds aq_rows rows quantized from
         * aq_src, by the op that wrote them (RMSNorm, SiLU); the next matmul
         * reading aq_src uses them and clears this.
         */
        const float *aq_src;
        int64_t aq_rows;
};

/*
 * What happened on the device back end, cumulative over the context's life.
 * A fault is a forward pass whose submissions did not all complete (job
 * timeout, error, abort, a failed submit or wait); the pass then runs again
 * on a fresh device context (retries) or on the cpu (cpu_fallbacks), from
 * its first layer, so its tokens are the same either way.
 */
struct backend_stats {
        uint64_t passes;        /* passes completed on the device */
        uint64_t submissions;   /* command buffers submitted */
        uint64_t ops;           /* ops in them */
        uint64_t faults;        /* failed device passes */
        uint64_t retries;       /* passes rerun on a fresh device context */
        uint64_t cpu_fallbacks; /* passes finished on the cpu after faults */
        uint64_t events;        /* netlink events about this process's contexts */
        uint64_t wait_ns;       /* time spent waiting for the device */
        bool device_lost;       /* the device refuses new contexts: every pass runs on the cpu */
        char last_fault[NPU_ERR_MAX]; /* what the last fault was, for logs */
};

struct backend;

struct backend_ops {
        const char *name;
        /* A new pass over batch b begins (the npu back end copies positions and starts recording). */
        void (*begin)(struct backend *be, const struct npu_batch *b);
        /* The cpu wrote [p, p + bytes) of an activation buffer (the device must see it). */
        void (*cpu_wrote)(struct backend *be, const void *p, size_t bytes);
        /* out[t] = rmsnorm(x[t]) * w for n_tok rows of the model's dim */
        void (*rmsnorm)(struct backend *be, float *out, const float *x, const float *w, int64_t n_tok);
        /* y[i][t] = W_i x[t] for n_w (1..3) weights with the same input width */
        void (*matmul)(struct backend *be, const float *x, int64_t n_tok, int n_w, const struct npu_weight *const *w,
                       float *const *y);
        /*
         * RoPE on q and k at the batch's positions, then K and V into the
         * layer's KV cache rows; on the cpu also the biases and q/k norms (see
         * qkv_finish_rows). The npu back end gets only models whose qkv_plain is set.
         */
        void (*rope_store)(struct backend *be, const struct npu_batch *b, int32_t layer, float *q, float *k,
                           float *v);
        /* gate[t] = silu(gate[t]) * up[t] over n_tok rows of ffn_dim */
        void (*silu_mul)(struct backend *be, float *gate, const float *up, int64_t n_tok);
        /* y += x over n floats */
        void (*add)(struct backend *be, float *y, const float *x, int64_t n);
        /* Everything recorded has run and is visible to the cpu; < 0 when the device failed. */
        int (*sync)(struct backend *be, struct npu_err *err);
        /* After a failed sync: drop the device context and open a fresh one. */
        int (*reset)(struct backend *be, struct npu_err *err);
        void (*free)(struct backend *be);
};

struct backend {
        const struct backend_ops *ops;
        struct npu_ctx *c;
        /* activations: the cpu's own, or the npu back end's BOs mapped into the process */
        struct forward_scratch *s;
};

int forward_scratch_new(const struct npu_hparams *hp, int32_t cap, struct forward_scratch **ret);
void forward_scratch_free(struct forward_scratch *s);
/* The block-quantized activation buffers that model m's weights need. */
int forward_scratch_alloc_quant(struct forward_scratch *s, const struct npu_model *m);
/* Bytes of every activation buffer for cap tokens (what forward_scratch_new allocates), and its layout. */
struct scratch_layout {
        size_t off_x, off_xb, off_q, off_k, off_v, off_att, off_hb, off_hb2, off_out;
        size_t off_q8, off_q16, off_scale, off_pos;
        size_t bytes;
};
void forward_scratch_layout(const struct npu_hparams *hp, int32_t cap, struct scratch_layout *l);

/* The cpu back end: runs every op at once on the context's thread pool. */
int backend_cpu_new(struct npu_ctx *c, struct forward_scratch *s, struct backend **ret);

/*
 * The npu back end: opens device (NULL: the first accel node of npu.ko;
 * fd >= 0: a duplicate of fd, an accel node opened elsewhere, with device
 * its name for messages),
 * uploads the model's int8 weights, scales and norm vectors into BOs, makes
 * activation BOs and moves the KV pool's memory into BOs mapped into the
 * process at the same kind of address (its contents are kept). Needs a
 * w8a8 or w8a16 model. On failure nothing changed and err says why.
 */
int backend_npu_new(struct npu_ctx *c, const char *device, int fd, struct backend **ret, struct npu_err *err);
/* Device path and uAPI version of an npu back end, for messages. */
const char *backend_npu_device(const struct backend *be);

/*
 * The device's definitions of the float ops, run on the cpu (bit-identical
 * to npu_ref_*; the SiLU has an AVX2 path that is, too).
 */
void rmsnorm_rows(float *out, const float *x, const float *weight, int64_t dim, float eps, int64_t t0, int64_t t1);
void rope_rows(float *q, float *k, const int32_t *pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim,
               float base, int64_t t0, int64_t t1);

/*
 * RoPE as the model asks for it: the pairs it rotates, and each pair's
 * frequency base^(-2i/head_dim) divided by factors[i] (when given) and
 * multiplied by freq_scale. With adjacent pairs, no factors and a scale of
 * 1 it is rope_rows, bit for bit; the rest runs on the cpu only.
 */
struct rope_spec {
        float base;
        float freq_scale;
        const float *factors; /* head_dim / 2, or NULL */
        enum rope_kind kind;
};
void rope_rows_spec(float *q, float *k, const int32_t *pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim,
                    const struct rope_spec *rs, int64_t t0, int64_t t1);
/*
 * Everything between the q/k/v projections and the KV cache, on the cpu,
 * for rows [t0, t1) of a batch: biases, per-head q/k norms, RoPE, then K and
 * V into the layer's cache rows.
 */
void qkv_finish_rows(struct npu_ctx *c, const struct npu_batch *b, int32_t layer, float *q, float *k, float *v,
                     int64_t t0, int64_t t1);
void silu_mul_range(float *gate, const float *up, int64_t i0, int64_t i1);
/* KV cache element conversion, as the device's CVT_F32_F16. */
void cvt_f32_f16_range(const float *src, uint16_t *dst, int64_t n);
