/* SPDX-License-Identifier: MIT */
#include <sched.h>
#include <unistd.h>

#include "runtime.h"

void runtime_opts_default(struct runtime_opts *o)
{
        *o = (struct runtime_opts) { .n_seq = 1, .max_batch = 256, .kv_type = KV_TYPE_F16,
                                     .attention = ATTENTION_DEFAULT, .target = BACKEND_TARGET_CPU,
                                     .npu_retries = 1 };
}

int runtime_default_threads(void)
{
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof(set), &set) == 0)
                return MAX(CPU_COUNT(&set), 1);
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (int)n : 1;
}

void runtime_free(struct runtime *rt)
{
        if (!rt)
                return;
        ctx_free(rt->ctx);
        kv_pool_free(rt->kv);
        threadpool_free(rt->tp);
        model_free(rt->model);
        free(rt->device);
        free(rt);
}

/*
 * Enough for n_seq full contexts, but at most a quarter of the memory (at
 * least one full context): the pool's pages are touched only when used on
 * the cpu, but a device pins what it maps.
 */
static size_t runtime_auto_kv_budget(const struct npu_hparams *hp, enum kv_type type, int32_t block,
                                     int32_t n_ctx, int32_t n_seq)
{
        size_t one = kv_block_bytes(hp, type, block) * DIV_ROUND_UP((size_t)n_ctx, (size_t)block);
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        size_t cap = pages > 0 && page > 0 ? (size_t)pages * (size_t)page / 4 : SIZE_MAX;

        return MAX(MIN(one * (size_t)n_seq, cap), one);
}

int runtime_open(const struct runtime_opts *o, struct runtime **ret, struct npu_err *err)
{
        _cleanup_(runtime_freep) struct runtime *rt = calloc(1, sizeof(*rt));
        int r;

        if (!rt)
                return -ENOMEM;
        if (o->threads < 0 || o->threads > 1024)
                return npu_err_set(err, -EINVAL, "thread count %d out of range", o->threads);
        if (o->n_ctx < 0 || o->n_seq < 1 || o->max_batch < 1 || o->max_batch > 65536)
                return npu_err_set(err, -EINVAL, "context, sequence or batch size out of range");
        struct gguf_progress progress = { .fn = o->progress, .userdata = o->progress_userdata };
        r = model_load_progress(o->model_path, &progress, &rt->model, err);
        if (r < 0)
                return r;
        rt->n_ctx = o->n_ctx ? o->n_ctx : MIN(rt->model->hp.n_ctx_train, 4096);
        r = threadpool_new(o->threads ? o->threads : runtime_default_threads(), &rt->tp);
        if (r < 0)
                return npu_err_set(err, r, "cannot start threads");

        const int32_t block = 16;
        size_t budget = o->kv_budget;
        if (budget == 0)
                budget = runtime_auto_kv_budget(&rt->model->hp, o->kv_type, block, rt->n_ctx, o->n_seq);
        r = kv_pool_new(&rt->model->hp, o->kv_type, block, budget, &rt->kv, err);
        if (r < 0)
                return r;
        r = ctx_new(rt->model, rt->kv, rt->tp, o->max_batch, &rt->ctx, err);
        if (r < 0)
                return r;
        rt->ctx->attention = o->attention;
        rt->ctx->npu_retries = MAX(o->npu_retries, 0);
        if (o->device && !(rt->device = strdup(o->device)))
                return -ENOMEM;
        if (o->target == BACKEND_TARGET_NPU) {
                if (!precision_runs_on_npu(rt->model->precision)) {
                        rt->target_note = "the model is not w8a8 or w8a16: it runs on the cpu (float, GGUF block "
                                          "types and w4a8 do; quantize it with npu-quantize --precision w8a8)";
                } else {
                        r = ctx_set_target(rt->ctx, BACKEND_TARGET_NPU, rt->device, -1, err);
                        if (r < 0)
                                return r;
                }
        } else if (o->target != BACKEND_TARGET_CPU) {
                return npu_err_set(err, -EINVAL, "unknown back end %d", o->target);
        }
        *ret = TAKE_PTR(rt);
        return 0;
}

int runtime_set_target(struct runtime *rt, enum backend_target t, struct npu_err *err)
{
        return ctx_set_target(rt->ctx, t, rt->device, -1, err);
}

int runtime_attach_device(struct runtime *rt, const char *name, int fd, struct npu_err *err)
{
        if (ctx_target(rt->ctx) == BACKEND_TARGET_NPU)
                return npu_err_set(err, -EBUSY, "the model runs on %s already", rt->device ? rt->device : "a device");
        return ctx_set_target(rt->ctx, BACKEND_TARGET_NPU, name, fd, err);
}
