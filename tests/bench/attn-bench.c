/* SPDX-License-Identifier: MIT */
/*
 * attn-bench: attention alone, one decoding token over a long context, at
 * a model's attention shape (default Llama-2-7B: 32 heads, 32 KV heads,
 * head size 128, 32 layers), every layer in turn as a decode step runs it.
 * The cache holds random values (KV contents do not change the work).
 *
 *   attn-bench [-t THREADS] [-n CONTEXT] [-k q8|f16|f32] [-a default|flash]
 *              [-r REPEATS] [-l LAYERS] [-H HEADS] [-K KV_HEADS] [-d HEAD_DIM]
 *
 * Prints the median, best and worst ms per step (all layers) and the bytes
 * of K and V a step reads, as GB/s.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "kernels.h"

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
        int threads = 2, repeats = 9, opt;
        int32_t n_ctx = 4000, layers = 32, H = 32, KVH = 32, hd = 128;
        enum kv_type type = KV_TYPE_Q8;
        enum attention_kind kind = ATTENTION_DEFAULT;

        while ((opt = getopt(argc, argv, "t:n:k:a:r:l:H:K:d:")) != -1) {
                switch (opt) {
                case 't': threads = atoi(optarg); break;
                case 'n': n_ctx = atoi(optarg); break;
                case 'k':
                        if (kv_type_from_string(optarg, &type) < 0)
                                return fprintf(stderr, "unknown KV type %s\n", optarg), 1;
                        break;
                case 'a': kind = strcmp(optarg, "flash") == 0 ? ATTENTION_FLASH : ATTENTION_DEFAULT; break;
                case 'r': repeats = atoi(optarg); break;
                case 'l': layers = atoi(optarg); break;
                case 'H': H = atoi(optarg); break;
                case 'K': KVH = atoi(optarg); break;
                case 'd': hd = atoi(optarg); break;
                default:
                        fprintf(stderr, "usage: %s [-t THREADS] [-n CONTEXT] [-k q8|f16|f32] [-a default|flash] "
                                        "[-r REPEATS] [-l LAYERS] [-H HEADS] [-K KV_HEADS] [-d HEAD_DIM]\n", argv[0]);
                        return 1;
                }
        }
        if (threads < 1 || n_ctx < 1 || layers < 1 || repeats < 1 || H < 1 || KVH < 1 || H % KVH || hd < 1)
                return fprintf(stderr, "bad arguments\n"), 1;

        struct npu_err err = {};
        struct npu_model m = { .hp = { .dim = H * hd, .n_layers = layers, .n_heads = H, .n_kv_heads = KVH,
                                       .head_dim = hd } };
        struct kv_pool *kv = NULL;
        struct threadpool *tp = NULL;
        const int32_t n = n_ctx + 1;
        const size_t per_block = kv_block_bytes(&m.hp, type, 16);
        if (kv_pool_new(&m.hp, type, 16, per_block * ((n + 15) / 16 + 1), &kv, &err) < 0 ||
            threadpool_new(threads, &tp) < 0)
                return fprintf(stderr, "setup: %s\n", err.msg), 1;
        kernels_init();
        struct npu_ctx c = { .model = &m, .kv = kv, .tp = tp, .max_batch = 1, .attention = kind };
        if (attention_scratch_new(&c) < 0)
                return fprintf(stderr, "out of memory\n"), 1;
        struct kv_seq seq = {};
        if (kv_seq_reserve(kv, &seq, n) < 0)
                return fprintf(stderr, "KV pool too small\n"), 1;
        seq.n_pos = n;
        uint64_t s = 0x9e3779b97f4a7c15ull;
        for (int32_t l = 0; l < layers; l++)
                for (int w = 0; w < 2; w++)
                        for (int32_t p = 0; p < n; p++) {
                                uint8_t *row = kv_at(kv, &seq, l, w, p);
                                for (size_t e = 0; e < (size_t)kv->kv_dim * kv->elem_bytes; e++) {
                                        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                                        row[e] = (uint8_t)(s >> 24);
                                }
                                if (type == KV_TYPE_F16 || type == KV_TYPE_F32)
                                        for (int32_t e = 0; e < kv->kv_dim; e++) /* small finite values */
                                                if (type == KV_TYPE_F16)
                                                        ((uint16_t *)row)[e] &= 0xbbff;
                                                else
                                                        ((float *)row)[e] = (float)(((uint16_t *)row)[e] % 255) / 127.0f - 1.0f;
                                else
                                        for (int32_t e = 0; e < kv->kv_dim; e++)
                                                if (((int8_t *)row)[e] == -128)
                                                        ((int8_t *)row)[e] = -127;
                                for (int32_t h = 0; type == KV_TYPE_Q8 && h < KVH; h++)
                                        kv_scale_at(kv, &seq, l, w, p)[h] = 2.0f / 127.0f;
                        }

        const size_t dim = (size_t)H * hd;
        float *q = malloc(sizeof(float) * dim), *out = malloc(sizeof(float) * dim);
        double *ms = malloc(sizeof(double) * repeats);
        if (!q || !out || !ms)
                return fprintf(stderr, "out of memory\n"), 1;
        for (size_t e = 0; e < dim; e++) {
                s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                q[e] = (float)(s % 2001) / 1000.0f - 1.0f;
        }
        int32_t pos = n_ctx;
        struct kv_seq *sp = &seq;
        struct npu_batch b = { .n = 1, .pos = &pos, .seqs = &sp };
        double check = 0;
        for (int r = -1; r < repeats; r++) {
                double t0 = now_ms();
                for (int32_t l = 0; l < layers; l++) {
                        attention_batch(&c, &b, l, q, out);
                        check += out[l % dim];
                }
                if (r >= 0)
                        ms[r] = now_ms() - t0;
        }
        qsort(ms, repeats, sizeof(double), cmp_double);
        const double bytes = (double)layers * 2 * n * ((double)kv->kv_dim * kv->elem_bytes +
                                                     (type == KV_TYPE_Q8 ? 4.0 * KVH : 0));
        printf("attention %s, KV %s, kernels %s, %d threads, %d layers x %d positions, H %d KVH %d hd %d: "
               "median %.2f ms (best %.2f, worst %.2f), %.1f GB/s of K and V (check %g)\n",
               kind == ATTENTION_FLASH ? "flash" : "default", kv_type_name(type), kernels_isa_name(kernels_isa()),
               threads, layers, n, H, KVH, hd, ms[(repeats - 1) / 2], ms[0], ms[repeats - 1],
               bytes / (ms[(repeats - 1) / 2] * 1e6), check);
        kv_seq_release(kv, &seq);
        attention_scratch_free(&c);
        threadpool_free(tp);
        kv_pool_free(kv);
        free(q);
        free(out);
        free(ms);
        return 0;
}
