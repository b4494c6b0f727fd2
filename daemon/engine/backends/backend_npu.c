/* SPDX-License-Identifier: MIT */
/*
 * The npu back end: the forward pass's ops recorded as drm_npu_op entries
 * into command buffers, submitted to npu.ko through libnpu and chained with
 * syncobjs; sync() waits on the last out-fence and checks that every
 * submission completed.
 *
 * Memory: the int8 weights with their scales and the norm vectors are
 * uploaded once into BOs at attach; the activations of a pass live in one
 * BO mapped into the process (the cpu writes the embeddings and the
 * attention output into it and reads the device's results from it); the KV
 * pool's memory is replaced by BOs mapped at one contiguous range, so the
 * device stores K/V rows (ROPE, then CVT_F32_F16 or COPY) where the cpu's
 * attention reads them, and a detach copies the live blocks back into
 * anonymous memory.
 *
 * Ops are looked up by host address: every buffer an op names (a weight's
 * data in the mapped GGUF, a norm vector, an activation, a KV row) belongs
 * to one region that says which BO and offset hold it on the device side.
 */
#include <sys/mman.h>
#include <unistd.h>

#include "backend.h"
#include "forward.h"
#include "gemm_int8.h"
#include <linux/npu_genl.h>

#include "npu.h"

#define NPU_OPS_USED                                                                                           \
        ((1ull << NPU_OP_GEMM_W8A8) | (1ull << NPU_OP_GEMM_W8A16) | (1ull << NPU_OP_RMSNORM) |                \
         (1ull << NPU_OP_ROPE) | (1ull << NPU_OP_SILU_MUL) | (1ull << NPU_OP_ADD) | (1ull << NPU_OP_QUANT_I8) | \
         (1ull << NPU_OP_QUANT_I16) | (1ull << NPU_OP_COPY) | (1ull << NPU_OP_CVT_F32_F16))

/* The largest element count of one element-wise op (dims are at most 2^24). */
#define ELEMS_MAX (1u << 24)

struct region {
        const uint8_t *host;
        size_t size;
        struct npu_bo *bo;
        uint64_t off;
};

/* A byte range of a BO that one side wrote and the other must see. */
struct dirty {
        struct npu_bo *bo;
        uint64_t lo, hi;
};

struct npu_backend {
        struct backend base;
        struct forward_scratch scratch;
        struct npu_dev *dev;
        char path[64];
        struct drm_npu_get_info info;
        uint32_t ctx_id;
        bool need_reset;
        int64_t job_timeout_ms;

        struct npu_bo **bos; /* every BO but the KV ones, freed at the end */
        size_t n_bos;
        struct region *regions; /* sorted by host address */
        size_t n_regions, cap_regions;

        struct npu_bo *act;
        struct scratch_layout lay;

        /* the KV pool's memory: BOs mapped back to back at kv_base */
        struct npu_bo **kv_bos;
        size_t n_kv_bos;
        uint8_t *kv_base;
        size_t kv_span;

        /* command buffers: slots of one BO, reused after every drain */
        struct npu_bo *cmd_bo;
        uint32_t slot_bytes, n_slots, max_ops;
        uint32_t slot;      /* slots used since the last drain */
        bool cur_open;
        struct npu_cmd cur;
        uint32_t syncobj[2];
        int last_sync; /* syncobj index holding the last submission's fence, -1: none since the drain */

        int error; /* first failure while recording, reported by the next sync */
        char errmsg[160];

        /* one entry per BO an op can write: the activations and the KV BOs */
        struct dirty *cpu_dirty, *dev_dirty;
        int n_cpu_dirty, n_dev_dirty, max_dirty;

        struct npu_nl *nl;
        /* the DRM client id of nb->dev: how the driver's events name this process's contexts */
        uint64_t client_id;
        bool have_client_id;
};

static struct npu_backend *to_nb(struct backend *be)
{
        return (struct npu_backend *)be;
}

_printf_(3, 4) static void fail(struct npu_backend *nb, int r, const char *fmt, ...)
{
        va_list ap;

        if (nb->error)
                return;
        nb->error = r < 0 ? r : -EIO;
        va_start(ap, fmt);
        vsnprintf(nb->errmsg, sizeof(nb->errmsg), fmt, ap);
        va_end(ap);
}

/* --- host address -> (BO, offset) --- */

static int region_cmp(const void *a, const void *b)
{
        const struct region *x = a, *y = b;
        return x->host < y->host ? -1 : x->host > y->host;
}

static int region_add(struct npu_backend *nb, const void *host, size_t size, struct npu_bo *bo, uint64_t off)
{
        if (nb->n_regions == nb->cap_regions) {
                size_t cap = MAX(nb->cap_regions * 2, 64);
                struct region *r = realloc(nb->regions, cap * sizeof(*r));
                if (!r)
                        return -ENOMEM;
                nb->regions = r;
                nb->cap_regions = cap;
        }
        nb->regions[nb->n_regions++] = (struct region) { host, size, bo, off };
        return 0;
}

static const struct region *region_find(const struct npu_backend *nb, const void *p, size_t bytes)
{
        size_t lo = 0, hi = nb->n_regions;
        const uint8_t *q = p;

        /* the last region starting at or below p */
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (nb->regions[mid].host <= q)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo == 0)
                return NULL;
        const struct region *r = &nb->regions[lo - 1];
        if (q + bytes > r->host + r->size || q + bytes < q)
                return NULL;
        return r;
}

static void dirty_add(struct npu_backend *nb, struct dirty *d, int *n, struct npu_bo *bo, uint64_t lo, uint64_t hi)
{
        for (int i = 0; i < *n; i++)
                if (d[i].bo == bo) {
                        d[i].lo = MIN(d[i].lo, lo);
                        d[i].hi = MAX(d[i].hi, hi);
                        return;
                }
        if (*n == nb->max_dirty) {
                fail(nb, -EFAULT, "internal: more written BOs than expected");
                return;
        }
        d[(*n)++] = (struct dirty) { bo, lo, hi };
}

static int dirty_flush(struct npu_backend *nb, struct dirty *d, int *n, uint32_t flags)
{
        int r = 0;
        for (int i = 0; i < *n; i++) {
                int e = npu_bo_sync(nb->dev, d[i].bo, flags, d[i].lo, d[i].hi - d[i].lo);
                if (e < 0 && r == 0)
                        r = e;
        }
        *n = 0;
        return r;
}

/* Name the buffer [p, p + bytes) as operand slot of op; written: the device writes it. */
static void op_buf(struct npu_backend *nb, struct drm_npu_op *op, unsigned int slot, const void *p, size_t bytes,
                   bool written)
{
        const struct region *r;

        if (!op)
                return;
        r = region_find(nb, p, bytes);
        if (!r) {
                fail(nb, -EFAULT, "internal: operand %u of op %s (%zu bytes) is in no BO", slot,
                     npu_op_name(op->opcode), bytes);
                return;
        }
        uint64_t off = r->off + (uint64_t)((const uint8_t *)p - r->host);
        npu_op_set_buf(op, slot, r->bo, off);
        if (written)
                dirty_add(nb, nb->dev_dirty, &nb->n_dev_dirty, r->bo, off, off + bytes);
}

/* --- command buffers --- */

static void submit_cur(struct npu_backend *nb)
{
        struct backend_stats *st = &nb->base.c->stats;
        uint32_t in, out;
        uint64_t seqno;
        int r;

        if (!nb->cur_open)
                return;
        nb->cur_open = false;
        if (nb->error || nb->cur.nops == 0)
                return;
        r = dirty_flush(nb, nb->cpu_dirty, &nb->n_cpu_dirty, NPU_BO_SYNC_TO_DEVICE);
        if (r < 0) {
                fail(nb, r, "BO sync to the device failed: %s", strerror(-r));
                return;
        }
        out = nb->syncobj[nb->last_sync == 0 ? 1 : 0];
        in = nb->last_sync >= 0 ? nb->syncobj[nb->last_sync] : 0;
        r = npu_submit(nb->dev, nb->ctx_id, &nb->cur, in ? &in : NULL, in ? 1 : 0, out, &seqno);
        if (r < 0) {
                fail(nb, r, "submit on %s context %u failed: %s", nb->path, nb->ctx_id, strerror(-r));
                nb->need_reset = true;
                return;
        }
        nb->last_sync = out == nb->syncobj[0] ? 0 : 1;
        nb->slot++;
        st->submissions++;
        st->ops += nb->cur.nops;
}

static int drain(struct npu_backend *nb);

static struct drm_npu_op *op_new(struct npu_backend *nb, uint32_t opcode)
{
        if (nb->error)
                return NULL;
        if (nb->cur_open && nb->cur.nops >= nb->max_ops)
                submit_cur(nb); /* full: start it now, the next buffer waits for it */
        if (!nb->cur_open) {
                if (nb->slot == nb->n_slots && drain(nb) < 0)
                        return NULL;
                int r = npu_cmd_init(&nb->cur, nb->cmd_bo, (uint64_t)nb->slot * nb->slot_bytes);
                if (r < 0) {
                        fail(nb, r, "internal: command slot %u", nb->slot);
                        return NULL;
                }
                nb->cur.max_ops = MIN(nb->cur.max_ops, nb->max_ops);
                nb->cur_open = true;
        }
        struct drm_npu_op *op = npu_cmd_add(&nb->cur, opcode);
        if (!op)
                fail(nb, -E2BIG, "internal: command buffer full");
        return op;
}

static const char *ert_state_name(uint32_t s)
{
        switch (s) {
        case NPU_ERT_STATE_NEW: return "new";
        case NPU_ERT_STATE_QUEUED: return "queued";
        case NPU_ERT_STATE_RUNNING: return "running";
        case NPU_ERT_STATE_COMPLETED: return "completed";
        case NPU_ERT_STATE_ERROR: return "error";
        case NPU_ERT_STATE_ABORT: return "aborted";
        case NPU_ERT_STATE_SUBMITTED: return "submitted";
        case NPU_ERT_STATE_TIMEOUT: return "timed out";
        }
        return "unknown";
}

/* An event about this back end's context: by client id (a pid only from kernels before uAPI 1.1). */
static bool event_is_ours(const struct npu_backend *nb, const struct npu_nl_event *ev)
{
        if (nb->have_client_id && ev->client_id)
                return ev->client_id == nb->client_id;
        return ev->pid == (uint32_t)getpid();
}

/* After a fault: count the netlink events the driver sent about this process's contexts. */
static void collect_events(struct npu_backend *nb, int first_timeout_ms)
{
        struct backend_stats *st = &nb->base.c->stats;
        struct npu_nl_event ev;
        int timeout = first_timeout_ms;

        if (!nb->nl)
                return;
        for (int i = 0; i < 64; i++) {
                if (npu_nl_recv_event(nb->nl, timeout, &ev) < 0)
                        break;
                if (event_is_ours(nb, &ev) &&
                    (ev.event == NPU_GENL_EVENT_JOB_TIMEOUT || ev.event == NPU_GENL_EVENT_CTX_FAULT)) {
                        st->events++;
                        timeout = 0; /* got ours; take what else is queued */
                }
        }
}

/* Submit what is recorded, wait for the last out-fence, check every submission since the last drain. */
static int drain(struct npu_backend *nb)
{
        struct backend_stats *st = &nb->base.c->stats;
        uint32_t n = 0;
        int r;

        submit_cur(nb);
        if (nb->last_sync >= 0) {
                uint64_t t0 = now_ns();
                int64_t timeout_ms = ((int64_t)nb->slot + 1) * nb->job_timeout_ms + 10000;
                r = npu_syncobj_wait(nb->dev, nb->syncobj[nb->last_sync], timeout_ms * 1000000);
                st->wait_ns += now_ns() - t0;
                if (r < 0) {
                        fail(nb, r, "waiting for %u submissions on %s failed: %s", nb->slot, nb->path,
                             strerror(-r));
                        nb->need_reset = true;
                } else {
                        for (uint32_t i = 0; i < nb->slot; i++) {
                                const uint32_t *hdr = (const uint32_t *)((uint8_t *)nb->cmd_bo->map +
                                                                         (size_t)i * nb->slot_bytes);
                                uint32_t s = npu_ert_state(__atomic_load_n(hdr, __ATOMIC_ACQUIRE));
                                if (s != NPU_ERT_STATE_COMPLETED) {
                                        fail(nb, -EIO, "submission %u of %u on %s context %u %s", i + 1, nb->slot,
                                             nb->path, nb->ctx_id, ert_state_name(s));
                                        if (s == NPU_ERT_STATE_TIMEOUT || s == NPU_ERT_STATE_ABORT)
                                                n++;
                                        nb->need_reset = true;
                                        break;
                                }
                        }
                }
        }
        nb->slot = 0;
        nb->last_sync = -1;
        if (nb->error)
                collect_events(nb, n ? 1000 : 0);
        return nb->error;
}

/* --- ops --- */

static void npu_begin(struct backend *be, const struct npu_batch *b)
{
        struct npu_backend *nb = to_nb(be);

        nb->error = 0;
        nb->errmsg[0] = 0;
        nb->slot = 0;
        nb->cur_open = false;
        nb->last_sync = -1;
        nb->n_cpu_dirty = nb->n_dev_dirty = 0;
        if (nb->need_reset) {
                struct npu_err e = {};
                if (be->ops->reset(be, &e) < 0) {
                        fail(nb, -ENODEV, "%s", e.msg);
                        return;
                }
        }
        int32_t *pos = (int32_t *)((uint8_t *)nb->act->map + nb->lay.off_pos);
        memcpy(pos, b->pos, sizeof(int32_t) * b->n);
        be->ops->cpu_wrote(be, pos, sizeof(int32_t) * b->n);
}

static void npu_cpu_wrote(struct backend *be, const void *p, size_t bytes)
{
        struct npu_backend *nb = to_nb(be);
        const struct region *r = region_find(nb, p, bytes);

        if (!r) {
                fail(nb, -EFAULT, "internal: cpu-written buffer is in no BO");
                return;
        }
        uint64_t off = r->off + (uint64_t)((const uint8_t *)p - r->host);
        dirty_add(nb, nb->cpu_dirty, &nb->n_cpu_dirty, r->bo, off, off + bytes);
}

static const int32_t *pos_buf(struct npu_backend *nb)
{
        return (const int32_t *)((const uint8_t *)nb->act->map + nb->lay.off_pos);
}

static void npu_rmsnorm(struct backend *be, float *out, const float *x, const float *w, int64_t n_tok)
{
        struct npu_backend *nb = to_nb(be);
        const struct npu_hparams *hp = &be->c->model->hp;
        const size_t bytes = sizeof(float) * n_tok * hp->dim;
        struct drm_npu_op *op = op_new(nb, NPU_OP_RMSNORM);

        if (!op)
                return;
        op->dim[0] = (uint32_t)n_tok;
        op->dim[1] = (uint32_t)hp->dim;
        npu_op_set_fparam(op, 0, hp->rms_eps);
        op_buf(nb, op, 0, x, bytes, false);
        op_buf(nb, op, 1, w, sizeof(float) * hp->dim, false);
        op_buf(nb, op, 2, out, bytes, true);
}

static void npu_matmul(struct backend *be, const float *x, int64_t n_tok, int n_w, const struct npu_weight *const *w,
                       float *const *y)
{
        struct npu_backend *nb = to_nb(be);
        const bool w8a16 = be->c->model->precision == NPU_PRECISION_W8A16;
        const int64_t K = w[0]->cols;
        const struct act_q *aq = &nb->scratch.aq;
        const void *q = w8a16 ? (const void *)aq->q16 : (const void *)aq->q8;
        const size_t qbytes = (size_t)n_tok * K * (w8a16 ? 2 : 1);
        struct drm_npu_op *op;

        if (w[0]->type != GGML_TYPE_I8) {
                fail(nb, -EOPNOTSUPP, "internal: a %s matrix on the npu", ggml_type_name(w[0]->type));
                return;
        }
        op = op_new(nb, w8a16 ? NPU_OP_QUANT_I16 : NPU_OP_QUANT_I8);
        if (!op)
                return;
        op->dim[0] = (uint32_t)n_tok;
        op->dim[1] = (uint32_t)K;
        op_buf(nb, op, 0, x, sizeof(float) * n_tok * K, false);
        op_buf(nb, op, 1, q, qbytes, true);
        op_buf(nb, op, 2, aq->scale, sizeof(float) * n_tok, true);
        for (int i = 0; i < n_w; i++) {
                op = op_new(nb, w8a16 ? NPU_OP_GEMM_W8A16 : NPU_OP_GEMM_W8A8);
                if (!op)
                        return;
                op->dim[0] = (uint32_t)n_tok;
                op->dim[1] = (uint32_t)w[i]->rows;
                op->dim[2] = (uint32_t)K;
                op_buf(nb, op, 0, q, qbytes, false);
                op_buf(nb, op, 1, w[i]->data, (size_t)w[i]->rows * K, false);
                op_buf(nb, op, 2, aq->scale, sizeof(float) * n_tok, false);
                op_buf(nb, op, 3, w[i]->scale, sizeof(float) * w[i]->rows, false);
                op_buf(nb, op, 4, y[i], sizeof(float) * n_tok * w[i]->rows, true);
        }
}

static void rope_op(struct npu_backend *nb, float *v, int64_t n_tok, int32_t n_heads)
{
        const struct npu_hparams *hp = &nb->base.c->model->hp;
        const size_t bytes = sizeof(float) * n_tok * n_heads * hp->head_dim;
        struct drm_npu_op *op = op_new(nb, NPU_OP_ROPE);

        if (!op)
                return;
        op->dim[0] = (uint32_t)n_tok;
        op->dim[1] = (uint32_t)n_heads;
        op->dim[2] = (uint32_t)hp->head_dim;
        npu_op_set_fparam(op, 0, hp->rope_base);
        op_buf(nb, op, 0, v, bytes, false);
        op_buf(nb, op, 1, pos_buf(nb), sizeof(int32_t) * n_tok, false);
        op_buf(nb, op, 2, v, bytes, true);
}

/* n f32 values at src into the cache at dst: CVT_F32_F16 or COPY, in pieces the dims allow. */
static void store_op(struct npu_backend *nb, const float *src, void *dst, int64_t n, bool f16)
{
        const int64_t per_op = f16 ? ELEMS_MAX : ELEMS_MAX / 4;
        for (int64_t i = 0; i < n; i += per_op) {
                int64_t m = MIN(per_op, n - i);
                struct drm_npu_op *op = op_new(nb, f16 ? NPU_OP_CVT_F32_F16 : NPU_OP_COPY);
                if (!op)
                        return;
                op->dim[0] = (uint32_t)(f16 ? m : m * 4);
                op_buf(nb, op, 0, src + i, sizeof(float) * m, false);
                op_buf(nb, op, 1, (uint8_t *)dst + i * (f16 ? 2 : 4), m * (f16 ? 2 : 4), true);
        }
}

/*
 * The q8 KV cache: each head's head_dim values quantized with their own
 * scale by the device's QUANT_I8 (rows of head_dim), so a run of positions
 * in a block is one op for K and one for V: its rows and its scales are
 * contiguous (kv_cache.h).
 */
static void quant_store_op(struct npu_backend *nb, const float *src, int8_t *dst, float *scale, int64_t rows,
                           int32_t hd)
{
        struct drm_npu_op *op = op_new(nb, NPU_OP_QUANT_I8);

        if (!op)
                return;
        op->dim[0] = (uint32_t)rows;
        op->dim[1] = (uint32_t)hd;
        op_buf(nb, op, 0, src, sizeof(float) * rows * hd, false);
        op_buf(nb, op, 1, dst, (size_t)(rows * hd), true);
        op_buf(nb, op, 2, scale, sizeof(float) * rows, true);
}

static void npu_rope_store_q8(struct npu_backend *nb, const struct npu_batch *b, int32_t layer, float *q, float *k,
                              const float *v)
{
        const struct npu_hparams *hp = &nb->base.c->model->hp;
        const struct kv_pool *kv = nb->base.c->kv;
        const int32_t kv_dim = hp->n_kv_heads * hp->head_dim, bs = kv->block_size;

        rope_op(nb, q, b->n, hp->n_heads);
        rope_op(nb, k, b->n, hp->n_kv_heads);
        for (int32_t t = 0; t < b->n;) {
                const struct kv_seq *seq = b->seqs[t];
                const int32_t p = b->pos[t];
                int32_t run = 1;
                while (t + run < b->n && b->seqs[t + run] == seq && b->pos[t + run] == p + run &&
                       (p + run) / bs == p / bs)
                        run++;
                const int64_t rows = (int64_t)run * hp->n_kv_heads;
                quant_store_op(nb, k + (int64_t)t * kv_dim, kv_at(kv, seq, layer, 0, p), kv_scale_at(kv, seq, layer, 0, p),
                               rows, hp->head_dim);
                quant_store_op(nb, v + (int64_t)t * kv_dim, kv_at(kv, seq, layer, 1, p), kv_scale_at(kv, seq, layer, 1, p),
                               rows, hp->head_dim);
                t += run;
        }
}

static void npu_rope_store(struct backend *be, const struct npu_batch *b, int32_t layer, float *q, float *k,
                           float *v)
{
        struct npu_backend *nb = to_nb(be);
        const struct npu_hparams *hp = &be->c->model->hp;
        const struct kv_pool *kv = be->c->kv;
        const int32_t kv_dim = hp->n_kv_heads * hp->head_dim, bs = kv->block_size;
        const bool f16 = kv->type == KV_TYPE_F16;

        if (!be->c->model->qkv_plain) {
                fail(nb, -EOPNOTSUPP, "internal: the device's ROPE for a model that needs more");
                return;
        }
        if (kv->type == KV_TYPE_Q8) {
                npu_rope_store_q8(nb, b, layer, q, k, v);
                return;
        }
        rope_op(nb, q, b->n, hp->n_heads);
        rope_op(nb, k, b->n, hp->n_kv_heads);
        /* runs of tokens whose rows follow each other in one KV block: one op for K, one for V */
        for (int32_t t = 0; t < b->n;) {
                const struct kv_seq *seq = b->seqs[t];
                const int32_t p = b->pos[t];
                int32_t run = 1;
                while (t + run < b->n && b->seqs[t + run] == seq && b->pos[t + run] == p + run &&
                       (p + run) / bs == p / bs)
                        run++;
                store_op(nb, k + (int64_t)t * kv_dim, kv_at(kv, seq, layer, 0, p), (int64_t)run * kv_dim, f16);
                store_op(nb, v + (int64_t)t * kv_dim, kv_at(kv, seq, layer, 1, p), (int64_t)run * kv_dim, f16);
                t += run;
        }
}

static void elementwise(struct npu_backend *nb, uint32_t opcode, float *out, const float *a, const float *b,
                        int64_t n)
{
        for (int64_t i = 0; i < n; i += ELEMS_MAX) {
                int64_t m = MIN((int64_t)ELEMS_MAX, n - i);
                struct drm_npu_op *op = op_new(nb, opcode);
                if (!op)
                        return;
                op->dim[0] = (uint32_t)m;
                op_buf(nb, op, 0, a + i, sizeof(float) * m, false);
                op_buf(nb, op, 1, b + i, sizeof(float) * m, false);
                op_buf(nb, op, 2, out + i, sizeof(float) * m, true);
        }
}

static void npu_silu_mul(struct backend *be, float *gate, const float *up, int64_t n_tok)
{
        elementwise(to_nb(be), NPU_OP_SILU_MUL, gate, gate, up, n_tok * be->c->model->hp.ffn_dim);
}

static void npu_add(struct backend *be, float *y, const float *x, int64_t n)
{
        elementwise(to_nb(be), NPU_OP_ADD, y, y, x, n);
}

static int npu_sync(struct backend *be, struct npu_err *err)
{
        struct npu_backend *nb = to_nb(be);
        int r = drain(nb);

        if (r == 0) {
                r = dirty_flush(nb, nb->dev_dirty, &nb->n_dev_dirty, NPU_BO_SYNC_FROM_DEVICE);
                if (r < 0)
                        fail(nb, r, "BO sync from the device failed: %s", strerror(-r));
        }
        if (nb->error)
                return npu_err_set(err, nb->error, "%s", nb->errmsg);
        return 0;
}

/* --- device context --- */

static int ctx_open(struct npu_backend *nb, struct npu_err *err)
{
        int r = npu_ctx_create(nb->dev, NPU_CTX_PRIORITY_NORMAL, &nb->ctx_id);
        if (r < 0)
                return npu_err_set(err, r, "cannot create a context on %s: %s", nb->path, strerror(-r));
        r = npu_ctx_enable_ops(nb->dev, nb->ctx_id, NPU_OPS_USED);
        if (r < 0) {
                npu_ctx_destroy(nb->dev, nb->ctx_id);
                nb->ctx_id = 0;
                return npu_err_set(err, r, "cannot configure a context on %s: %s", nb->path, strerror(-r));
        }
        return 0;
}

static int npu_reset(struct backend *be, struct npu_err *err)
{
        struct npu_backend *nb = to_nb(be);

        /* destroying the context waits for (or cancels) whatever of it is still queued */
        if (nb->ctx_id)
                npu_ctx_destroy(nb->dev, nb->ctx_id);
        nb->ctx_id = 0;
        nb->slot = 0;
        nb->cur_open = false;
        nb->last_sync = -1;
        nb->error = 0;
        int r = ctx_open(nb, err);
        nb->need_reset = r < 0;
        return r;
}

/* --- KV pool memory --- */

static size_t page_round(size_t n)
{
        return ALIGN_TO(n, 4096);
}

static void kv_copy_live(const struct kv_pool *p, uint8_t *dst, const uint8_t *src)
{
        for (int32_t b = 0; b < p->n_blocks; b++)
                if (p->refcount[b] > 0)
                        kv_block_copy(p, dst, b, src, b);
}

static size_t gcd_size(size_t a, size_t b)
{
        while (b) {
                size_t t = a % b;
                a = b;
                b = t;
        }
        return a;
}

static size_t lcm_size(size_t a, size_t b)
{
        return b ? a / gcd_size(a, b) * b : a;
}

static int kv_attach(struct npu_backend *nb, struct npu_err *err)
{
        struct kv_pool *p = nb->base.c->kv;
        const size_t total = p->mem_bytes;
        /* NPU_KV_BO_BYTES: smaller KV BOs, so that tests see a pool spanning several */
        const char *e = getenv("NPU_KV_BO_BYTES");
        uint64_t max_bo = nb->info.max_bo_size;
        if (e && strtoull(e, NULL, 10) > 0)
                max_bo = MIN(max_bo, strtoull(e, NULL, 10));
        /*
         * BOs of whole pages, so they map back to back, and of whole
         * segments (kv_cache.h), so a store of a block's rows or scales
         * stays in one BO
         */
        const size_t unit = lcm_size(lcm_size(4096, p->seg_bytes), p->scale_seg_bytes);
        const size_t stride = max_bo / unit * unit;
        int r;

        if (stride == 0)
                return npu_err_set(err, -E2BIG, "a KV segment of %zu bytes does not fit a BO of %llu bytes",
                                   unit, (unsigned long long)max_bo);
        nb->n_kv_bos = DIV_ROUND_UP(total, stride);
        nb->kv_span = (nb->n_kv_bos - 1) * stride + page_round(total - (nb->n_kv_bos - 1) * stride);
        nb->kv_bos = calloc(nb->n_kv_bos, sizeof(*nb->kv_bos));
        if (!nb->kv_bos)
                return -ENOMEM;
        nb->kv_base = mmap(NULL, nb->kv_span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (nb->kv_base == MAP_FAILED) {
                nb->kv_base = NULL;
                return npu_err_set(err, -ENOMEM, "cannot reserve %zu bytes of address space for the KV cache",
                                   nb->kv_span);
        }
        for (size_t i = 0; i < nb->n_kv_bos; i++) {
                size_t bytes = MIN(stride, total - i * stride);
                r = npu_bo_alloc(nb->dev, bytes, &nb->kv_bos[i]);
                if (r < 0)
                        return npu_err_set(err, r, "cannot allocate a KV cache BO of %zu bytes on %s: %s", bytes,
                                           nb->path, strerror(-r));
                r = npu_bo_map_at(nb->dev, nb->kv_bos[i], nb->kv_base + i * stride);
                if (r < 0)
                        return npu_err_set(err, r, "cannot map a KV cache BO: %s", strerror(-r));
                r = region_add(nb, nb->kv_base + i * stride, bytes, nb->kv_bos[i], 0);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Move the pool into the BOs (keeping its live blocks); after this nothing may fail. */
static void kv_switch_in(struct npu_backend *nb)
{
        struct kv_pool *p = nb->base.c->kv;
        kv_copy_live(p, nb->kv_base, p->mem);
        munmap(p->mem, p->mem_bytes);
        p->mem = nb->kv_base;
}

/* Move the pool back into anonymous memory, live blocks kept; false when that memory cannot be had. */
static bool kv_switch_out(struct npu_backend *nb)
{
        struct kv_pool *p = nb->base.c->kv;
        const size_t total = p->mem_bytes;

        if (p->mem != nb->kv_base)
                return true;
        uint8_t *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED)
                return false;
        kv_copy_live(p, mem, nb->kv_base);
        p->mem = mem;
        return true;
}

/* --- set-up and tear-down --- */

static void npu_free(struct backend *be)
{
        struct npu_backend *nb = to_nb(be);

        if (!nb)
                return;
        if (nb->dev && nb->ctx_id)
                npu_ctx_destroy(nb->dev, nb->ctx_id);
        /*
         * The KV BOs are unmapped as one range; when no memory is left to move
         * the pool to, the mapping stays (it keeps its BOs alive) and the pool
         * goes on using it.
         */
        if (nb->kv_base && kv_switch_out(nb))
                munmap(nb->kv_base, nb->kv_span);
        for (size_t i = 0; i < nb->n_kv_bos; i++) {
                if (nb->kv_bos[i])
                        nb->kv_bos[i]->map = NULL;
                npu_bo_free(nb->dev, nb->kv_bos[i]);
        }
        free(nb->kv_bos);
        for (size_t i = 0; i < nb->n_bos; i++)
                npu_bo_free(nb->dev, nb->bos[i]);
        free(nb->bos);
        if (nb->dev) {
                npu_syncobj_destroy(nb->dev, nb->syncobj[0]);
                npu_syncobj_destroy(nb->dev, nb->syncobj[1]);
        }
        free(nb->regions);
        free(nb->cpu_dirty);
        free(nb->dev_dirty);
        npu_nl_close(nb->nl);
        npu_close(nb->dev);
        free(nb);
}

static int bo_new(struct npu_backend *nb, size_t bytes, struct npu_bo **ret, struct npu_err *err)
{
        struct npu_bo **bos = realloc(nb->bos, (nb->n_bos + 1) * sizeof(*bos));
        struct npu_bo *bo;
        int r;

        if (!bos)
                return -ENOMEM;
        nb->bos = bos;
        r = npu_bo_alloc(nb->dev, bytes, &bo);
        if (r < 0)
                return npu_err_set(err, r, "cannot allocate a BO of %zu bytes on %s: %s", bytes, nb->path,
                                   strerror(-r));
        nb->bos[nb->n_bos++] = bo;
        r = npu_bo_map(nb->dev, bo);
        if (r < 0)
                return npu_err_set(err, r, "cannot map a BO of %zu bytes: %s", bytes, strerror(-r));
        *ret = bo;
        return 0;
}

/* Drop the process's view of an uploaded BO: the device has it, the cpu reads the model's own copy. */
static void bo_unmap(struct npu_backend *nb, struct npu_bo *bo)
{
        npu_bo_sync(nb->dev, bo, NPU_BO_SYNC_TO_DEVICE, 0, bo->size);
        munmap(bo->map, bo->size);
        bo->map = NULL;
}

static int upload_weight(struct npu_backend *nb, const struct npu_weight *w, struct npu_err *err)
{
        const size_t data = (size_t)w->rows * w->cols, off_scale = ALIGN_TO(data, 64);
        struct npu_bo *bo;
        int r;

        if (w->type != GGML_TYPE_I8 || w->row_bytes != (size_t)w->cols || !w->scale)
                return npu_err_set(err, -EOPNOTSUPP, "the npu needs int8 matrices with scales (got %s)",
                                   ggml_type_name(w->type));
        r = bo_new(nb, off_scale + sizeof(float) * w->rows, &bo, err);
        if (r < 0)
                return r;
        /* the device reads rows one after the other; the cpu's copy is in the GEMM's panels */
        for (int64_t row = 0; row < w->rows; row++)
                gemm_i8_unpack_row(w->data, w->rows, w->cols, row, (int8_t *)bo->map + row * w->cols);
        memcpy((uint8_t *)bo->map + off_scale, w->scale, sizeof(float) * w->rows);
        bo_unmap(nb, bo);
        r = region_add(nb, w->data, data, bo, 0);
        if (r >= 0)
                r = region_add(nb, w->scale, sizeof(float) * w->rows, bo, off_scale);
        return r;
}

static int upload_model(struct npu_backend *nb, struct npu_err *err)
{
        const struct npu_model *m = nb->base.c->model;
        const struct npu_hparams *hp = &m->hp;
        const size_t vec = sizeof(float) * hp->dim, vstride = ALIGN_TO(vec, 64);
        struct npu_bo *norms;
        int r;

        for (int32_t l = 0; l < hp->n_layers; l++) {
                const struct npu_weight *ws = &m->layers[l].wq;
                for (int j = 0; j < 7; j++) {
                        r = upload_weight(nb, &ws[j], err);
                        if (r < 0)
                                return r;
                }
        }
        r = bo_new(nb, vstride * 2 * hp->n_layers, &norms, err);
        if (r < 0)
                return r;
        for (int32_t l = 0; l < hp->n_layers; l++) {
                const float *v[2] = { m->layers[l].attn_norm, m->layers[l].ffn_norm };
                for (int j = 0; j < 2; j++) {
                        size_t off = vstride * (2 * l + j);
                        memcpy((uint8_t *)norms->map + off, v[j], vec);
                        r = region_add(nb, v[j], vec, norms, off);
                        if (r < 0)
                                return r;
                }
        }
        bo_unmap(nb, norms);
        return 0;
}

static int check_shapes(const struct npu_backend *nb, struct npu_err *err)
{
        const struct npu_ctx *c = nb->base.c;
        const struct npu_hparams *hp = &c->model->hp;

        if ((nb->info.ops_mask & NPU_OPS_USED) != NPU_OPS_USED)
                return npu_err_set(err, -EOPNOTSUPP, "%s lacks ops the forward pass needs (has %#llx)", nb->path,
                                   (unsigned long long)nb->info.ops_mask);
        if (hp->dim > 65536 || hp->ffn_dim > 65536 || hparams_q_dim(hp) > 65536 || hp->head_dim > 512 ||
            hp->n_heads > 1024 ||
            c->max_batch > (1 << 24) / 2)
                return npu_err_set(err, -EOPNOTSUPP, "model or batch shape beyond the device's op limits");
        return 0;
}

static int job_timeout_ms(void)
{
        _cleanup_fclose_ FILE *f = fopen("/sys/module/npu/parameters/job_timeout_ms", "re");
        int v = 0;
        if (!f || fscanf(f, "%d", &v) != 1 || v <= 0)
                return 2000;
        return v;
}

static const struct backend_ops npu_ops = {
        .name = "npu",
        .begin = npu_begin,
        .cpu_wrote = npu_cpu_wrote,
        .rmsnorm = npu_rmsnorm,
        .matmul = npu_matmul,
        .rope_store = npu_rope_store,
        .silu_mul = npu_silu_mul,
        .add = npu_add,
        .sync = npu_sync,
        .reset = npu_reset,
        .free = npu_free,
};

const char *backend_npu_device(const struct backend *be)
{
        return be && be->ops == &npu_ops ? ((const struct npu_backend *)be)->path : NULL;
}

int backend_npu_new(struct npu_ctx *c, const char *device, int fd, struct backend **ret, struct npu_err *err)
{
        const struct npu_model *m = c->model;
        struct npu_backend *nb = calloc(1, sizeof(*nb));
        int r;

        if (!nb)
                return -ENOMEM;
        nb->base = (struct backend) { .ops = &npu_ops, .c = c, .s = &nb->scratch };
        nb->last_sync = -1;
        nb->job_timeout_ms = job_timeout_ms();
        if (m->precision != NPU_PRECISION_W8A8 && m->precision != NPU_PRECISION_W8A16) {
                r = npu_err_set(err, -EOPNOTSUPP, "the npu runs w8a8 and w8a16 models, not %s",
                                precision_name(m->precision));
                goto fail;
        }
        if (fd >= 0) {
                snprintf(nb->path, sizeof(nb->path), "%s", device ? device : "the device");
                r = npu_open_fd(fd, &nb->dev);
                if (r == -ENODEV)
                        r = npu_err_set(err, r, "%s is not an accel device of the npu driver", nb->path);
                else if (r < 0)
                        r = npu_err_set(err, r, "cannot use %s: %s", nb->path, strerror(-r));
        } else if (device) {
                snprintf(nb->path, sizeof(nb->path), "%s", device);
                r = npu_open_path(device, &nb->dev);
                if (r == -ENODEV)
                        r = npu_err_set(err, r, "%s is not an accel device of the npu driver", device);
                else if (r < 0)
                        r = npu_err_set(err, r, "cannot open %s: %s", device, strerror(-r));
        } else {
                r = npu_open_first(&nb->dev, nb->path, sizeof(nb->path));
                if (r == -ENODEV)
                        r = npu_err_set(err, r, "no npu device: no /dev/accel/accel* node belongs to the npu "
                                                "driver (is npu.ko loaded?)");
                else if (r < 0)
                        r = npu_err_set(err, r, "cannot open the npu device: %s", strerror(-r));
        }
        if (r < 0)
                goto fail;
        r = npu_get_info(nb->dev, &nb->info);
        if (r < 0) {
                r = npu_err_set(err, r, "%s: GET_INFO failed: %s", nb->path, strerror(-r));
                goto fail;
        }
        r = check_shapes(nb, err);
        if (r < 0)
                goto fail;
        nb->max_ops = MIN(nb->info.max_ops_per_cmd, (uint32_t)(NPU_ERT_MAX_COUNT / NPU_OP_WORDS));
        r = ctx_open(nb, err);
        if (r < 0)
                goto fail;
        if ((r = npu_syncobj_create(nb->dev, &nb->syncobj[0])) < 0 ||
            (r = npu_syncobj_create(nb->dev, &nb->syncobj[1])) < 0) {
                r = npu_err_set(err, r, "cannot create syncobjs: %s", strerror(-r));
                goto fail;
        }

        /* activations of a batch, in one BO */
        forward_scratch_layout(&m->hp, c->max_batch, &nb->lay);
        if (nb->lay.bytes > nb->info.max_bo_size) {
                r = npu_err_set(err, -E2BIG, "activations of a batch of %d tokens need %zu bytes, more than a BO "
                                             "holds; use a smaller batch", c->max_batch, nb->lay.bytes);
                goto fail;
        }
        r = bo_new(nb, nb->lay.bytes, &nb->act, err);
        if (r < 0)
                goto fail;
        r = region_add(nb, nb->act->map, nb->lay.bytes, nb->act, 0);
        if (r < 0)
                goto fail;
        uint8_t *a = nb->act->map;
        struct forward_scratch *s = &nb->scratch;
        s->cap = c->max_batch;
        s->x = (float *)(a + nb->lay.off_x);
        s->xb = (float *)(a + nb->lay.off_xb);
        s->q = (float *)(a + nb->lay.off_q);
        s->k = (float *)(a + nb->lay.off_k);
        s->v = (float *)(a + nb->lay.off_v);
        s->att = (float *)(a + nb->lay.off_att);
        s->hb = (float *)(a + nb->lay.off_hb);
        s->hb2 = (float *)(a + nb->lay.off_hb2);
        s->out_rows = (float *)(a + nb->lay.off_out);
        s->aq = (struct act_q) { .cap_rows = c->max_batch,
                                 .cap_cols = MAX(MAX(m->hp.dim, m->hp.ffn_dim), hparams_q_dim(&m->hp)),
                                 .prec = m->precision, .q8 = (int8_t *)(a + nb->lay.off_q8),
                                 .q16 = (int16_t *)(a + nb->lay.off_q16),
                                 .scale = (float *)(a + nb->lay.off_scale) };

        /* command buffers: enough slots for the ops between two syncs of a full batch */
        nb->slot_bytes = (uint32_t)ALIGN_TO(4 + (size_t)nb->max_ops * sizeof(struct drm_npu_op), 256);
        nb->n_slots = (uint32_t)DIV_ROUND_UP(24 + 2 * (size_t)c->max_batch, nb->max_ops) + 2;
        r = bo_new(nb, (size_t)nb->slot_bytes * nb->n_slots, &nb->cmd_bo, err);
        if (r < 0)
                goto fail;

        r = upload_model(nb, err);
        if (r < 0)
                goto fail;
        r = kv_attach(nb, err);
        if (r < 0)
                goto fail;
        nb->max_dirty = (int)nb->n_kv_bos + 2;
        nb->cpu_dirty = calloc(nb->max_dirty, sizeof(*nb->cpu_dirty));
        nb->dev_dirty = calloc(nb->max_dirty, sizeof(*nb->dev_dirty));
        if (!nb->cpu_dirty || !nb->dev_dirty) {
                r = -ENOMEM;
                goto fail;
        }
        qsort(nb->regions, nb->n_regions, sizeof(*nb->regions), region_cmp);
        for (size_t i = 1; i < nb->n_regions; i++)
                if (nb->regions[i - 1].host + nb->regions[i - 1].size > nb->regions[i].host) {
                        r = npu_err_set(err, -EINVAL, "internal: overlapping buffers");
                        goto fail;
                }

        /* the driver's events (job timeout, context fault), counted after faults; optional */
        if (npu_nl_open(&nb->nl) < 0 || npu_nl_subscribe_events(nb->nl) < 0) {
                npu_nl_close(nb->nl);
                nb->nl = NULL;
        }
        nb->have_client_id = npu_client_id(nb->dev, &nb->client_id) == 0;
        kv_switch_in(nb);
        *ret = &nb->base;
        return 0;
fail:
        npu_free(&nb->base);
        return r < 0 ? r : -EIO;
}
