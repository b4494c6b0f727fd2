/* SPDX-License-Identifier: MIT */
/* A model with its thread pool, KV pool and compute context: what the tools and npud start from. */
#pragma once

#include "forward.h"
#include "generate.h"

struct runtime_opts {
        const char *model_path;
        int threads;          /* 0: all cores */
        int32_t n_ctx;        /* positions per sequence; 0: the model's, capped at 4096 */
        int32_t n_seq;        /* sequences the KV pool is sized for */
        int32_t max_batch;    /* tokens per forward pass */
        enum kv_type kv_type;
        enum attention_kind attention;
        size_t kv_budget;     /* bytes; 0: n_seq full contexts, at most a quarter of the memory */
        /*
         * Where the passes run: BACKEND_TARGET_CPU (the default), or NPU
         * through npu.ko (w8a8/w8a16 models; a float model stays on the cpu
         * and target_note says so). No npu device is an error.
         */
        enum backend_target target;
        const char *device;   /* npu: accel node; NULL: the first one of npu.ko */
        int npu_retries;      /* npu: fresh device contexts a faulted pass tries before the cpu runs it */
        /* told the bytes of the model file read and its size, on the thread that opens it; may be NULL */
        void (*progress)(uint64_t done, uint64_t total, void *userdata);
        void *progress_userdata;
};

struct runtime {
        struct npu_model *model;
        struct threadpool *tp;
        struct kv_pool *kv;
        struct npu_ctx *ctx;
        int32_t n_ctx;
        char *device;
        /* why the passes run elsewhere than asked (a float model asked for the npu), or NULL */
        const char *target_note;
};

void runtime_opts_default(struct runtime_opts *o);
int runtime_open(const struct runtime_opts *o, struct runtime **ret, struct npu_err *err);
void runtime_free(struct runtime *rt);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct runtime *, runtime_free);
int runtime_default_threads(void);
/*
 * Between passes: move the runtime to the cpu (detach the device; the KV
 * cache and every sequence in it stay) or to the npu (attach).
 */
int runtime_set_target(struct runtime *rt, enum backend_target t, struct npu_err *err);
/* Between passes: move the runtime to the npu device open at fd (duplicated; name is for messages). */
int runtime_attach_device(struct runtime *rt, const char *name, int fd, struct npu_err *err);

/* Negative log-likelihood of ids over windows of the context, each opened by BOS (perplexity.c). */
int perplexity(struct runtime *rt, const int32_t *ids, int32_t n, double *ret_nll, int64_t *ret_count,
               struct npu_err *err);
