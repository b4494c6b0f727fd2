// SPDX-License-Identifier: MIT
/*
 * engine_check: in-VM checks of the engine's npu back end at the API npud
 * uses (runtime_open, forward, runtime_set_target), on a quantized model.
 * Usage: engine_check MODEL.gguf TAG
 * Prints "PASS <name>" or "FAIL <name>: <why>" per check.
 *
 * - batch: a scheduler-like script of mixed batches (chunked prefill of
 *   three sequences interleaved with decode steps, logits for every token)
 *   gives bit-identical logits on the npu and on the cpu;
 * - attach: the same script on one runtime that detaches from and attaches
 *   to the device between steps, with a sequence forked from another's
 *   prefix and the KV pool spread over 16 BOs, equals the cpu run bit for
 *   bit;
 * - perplexity: windows of 64 tokens with every logit, npu == cpu.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define NSEQ 3
#define STEPS 12

static int failed;

#define CHECK(cond, name, ...)                               \
        do {                                                 \
                if (!(cond)) {                               \
                        printf("FAIL %s: ", name);           \
                        printf(__VA_ARGS__);                 \
                        printf("\n");                        \
                        failed = 1;                          \
                        return -1;                           \
                }                                            \
        } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static int32_t rnd(int32_t n)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return (int32_t)(rng % (uint64_t)n);
}

/* what to do at step s when attach is on: 1 = go to the npu, 2 = go to the cpu */
static int switch_at(int s)
{
        return s == 3 ? 2 : s == 5 ? 1 : s == 8 ? 2 : s == 9 ? 1 : 0;
}

/*
 * Runs the script on rt; logits of every token of every step go to out
 * (n_vocab floats each, in order). attach: move between npu and cpu.
 */
static int script(struct runtime *rt, bool attach, float *out, size_t *n_out, const char *name)
{
        const int32_t V = rt->model->hp.n_vocab;
        struct kv_seq seqs[NSEQ + 1] = {};
        int32_t next[NSEQ + 1], len[NSEQ + 1] = {};
        int32_t tok[64], pos[64];
        struct kv_seq *bs[64];
        uint8_t want[64];
        struct npu_err err = {};
        int r;

        rng = 0x9e3779b97f4a7c15ull;
        *n_out = 0;
        for (int i = 0; i <= NSEQ; i++)
                next[i] = 1 + rnd(V - 1);
        for (int s = 0; s < STEPS; s++) {
                if (attach && switch_at(s)) {
                        r = runtime_set_target(rt, switch_at(s) == 1 ? BACKEND_TARGET_NPU : BACKEND_TARGET_CPU,
                                               &err);
                        CHECK(r == 0, name, "step %d: switching target: %s", s, err.msg);
                }
                if (s == 6) {
                        /* sequence 3 starts as a copy of sequence 0's first positions */
                        r = kv_seq_fork(rt->kv, &seqs[NSEQ], &seqs[0], len[0] - 1);
                        CHECK(r == 0, name, "fork: %d", r);
                        len[NSEQ] = len[0] - 1;
                }
                int32_t n = 0;
                for (int i = 0; i <= NSEQ; i++) {
                        if (i == NSEQ && s < 6)
                                continue;
                        /* prefill chunks of varying size, then single decode tokens */
                        int32_t m = s < 4 ? 1 + rnd(9) : rnd(3) == 0 ? 2 : 1;
                        r = kv_seq_reserve(rt->kv, &seqs[i], len[i] + m);
                        CHECK(r == 0, name, "reserve: %d", r);
                        for (int32_t j = 0; j < m; j++) {
                                tok[n] = next[i];
                                next[i] = 1 + rnd(V - 1);
                                pos[n] = len[i] + j;
                                bs[n] = &seqs[i];
                                want[n] = 1;
                                n++;
                        }
                        len[i] += m;
                }
                struct npu_batch b = { .n = n, .tokens = tok, .pos = pos, .seqs = bs, .want_logits = want };
                r = forward(rt->ctx, &b, out + *n_out * V, &err);
                CHECK(r == 0, name, "step %d: forward: %s", s, err.msg);
                *n_out += n;
        }
        for (int i = 0; i <= NSEQ; i++)
                kv_seq_release(rt->kv, &seqs[i]);
        CHECK(kv_pool_used_blocks(rt->kv) == 0, name, "KV blocks left");
        return 0;
}

static int open_rt(const char *model, enum backend_target t, struct runtime **rt, const char *name)
{
        struct runtime_opts o;
        struct npu_err err = {};

        runtime_opts_default(&o);
        o.model_path = model;
        o.n_seq = NSEQ + 1;
        o.n_ctx = 256;
        o.max_batch = 64;
        o.threads = 1; /* under TCG two spinning workers mostly wait for each other */
        o.target = t;
        int r = runtime_open(&o, rt, &err);
        CHECK(r == 0, name, "runtime_open: %s", err.msg);
        return 0;
}

static int check_script(const char *model, bool attach, const char *name)
{
        struct runtime *cpu = NULL, *npu = NULL;
        size_t n1, n2;
        float *a = malloc(sizeof(float) * 512 * 4096), *b = malloc(sizeof(float) * 512 * 4096);
        int r;

        if (!a || !b)
                return -1;
        r = open_rt(model, BACKEND_TARGET_CPU, &cpu, name);
        /* with attach: the KV pool in BOs of 4 blocks each, mapped back to back */
        if (attach)
                setenv("NPU_KV_BO_BYTES", "65536", 1);
        if (r == 0)
                r = open_rt(model, BACKEND_TARGET_NPU, &npu, name);
        if (r == 0 && attach) {
                FILE *f = fopen("/sys/kernel/debug/accel/npu.0/bo_count", "r");
                int bos = 0;
                if (f && fscanf(f, "%d", &bos) != 1)
                        bos = 0;
                if (f)
                        fclose(f);
                if (bos < 16) {
                        printf("FAIL %s: %d BOs, the KV pool should take 16\n", name, bos);
                        failed = 1;
                        r = -1;
                }
        }
        if (r == 0)
                r = script(cpu, false, a, &n1, name);
        if (r == 0)
                r = script(npu, attach, b, &n2, name);
        if (r == 0) {
                const struct backend_stats *st = &npu->ctx->stats;
                size_t V = (size_t)npu->model->hp.n_vocab, diff = n1;
                for (size_t i = 0; i < n1 && diff == n1; i++)
                        if (memcmp(a + i * V, b + i * V, V * sizeof(float)))
                                diff = i;
                if (n1 != n2 || diff != n1) {
                        printf("FAIL %s: logits of token %zu of %zu differ\n", name, diff, n1);
                        failed = 1;
                } else if (st->passes < (attach ? 6u : STEPS) || st->faults) {
                        printf("FAIL %s: %llu passes on the device, %llu faults\n", name,
                               (unsigned long long)st->passes, (unsigned long long)st->faults);
                        failed = 1;
                } else {
                        printf("PASS %s (%zu tokens in %d mixed batches, %llu on the device, bit-identical "
                               "logits)\n", name, n1, STEPS, (unsigned long long)st->passes);
                }
        }
        runtime_free(cpu);
        runtime_free(npu);
        unsetenv("NPU_KV_BO_BYTES");
        free(a);
        free(b);
        return r;
}

static int check_perplexity(const char *model, const char *name)
{
        struct runtime *cpu = NULL, *npu = NULL;
        struct npu_err err = {};
        int32_t ids[190];
        double nll[2];
        int64_t cnt[2];
        int r;

        rng = 42;
        for (int i = 0; i < 190; i++)
                ids[i] = 3 + rnd(400);
        r = open_rt(model, BACKEND_TARGET_CPU, &cpu, name);
        if (r == 0)
                r = open_rt(model, BACKEND_TARGET_NPU, &npu, name);
        if (r == 0) {
                cpu->n_ctx = npu->n_ctx = 128;
                if (perplexity(cpu, ids, 190, &nll[0], &cnt[0], &err) < 0 ||
                    perplexity(npu, ids, 190, &nll[1], &cnt[1], &err) < 0) {
                        printf("FAIL %s: %s\n", name, err.msg);
                        failed = 1;
                } else if (memcmp(&nll[0], &nll[1], sizeof(double)) || cnt[0] != cnt[1]) {
                        printf("FAIL %s: nll %.17g vs %.17g\n", name, nll[0], nll[1]);
                        failed = 1;
                } else {
                        printf("PASS %s (%lld tokens, nll identical)\n", name, (long long)cnt[0]);
                }
        }
        runtime_free(cpu);
        runtime_free(npu);
        return r;
}

int main(int argc, char **argv)
{
        char name[64];

        setvbuf(stdout, NULL, _IOLBF, 0);
        if (argc != 3) {
                fprintf(stderr, "usage: engine_check MODEL.gguf TAG\n");
                return 2;
        }
        snprintf(name, sizeof(name), "engine-batches-%s", argv[2]);
        check_script(argv[1], false, name);
        snprintf(name, sizeof(name), "engine-attach-detach-%s", argv[2]);
        check_script(argv[1], true, name);
        snprintf(name, sizeof(name), "engine-perplexity-%s", argv[2]);
        check_perplexity(argv[1], name);
        return failed;
}
