/* SPDX-License-Identifier: MIT */
/*
 * The architectures beyond Llama 2 (llama3, qwen2, qwen3 tiny models written
 * by npu-mkmodel with the real vocabularies): their hyperparameters, batch
 * invariance and shared-prefix KV on each, the RoPE variants against each
 * other bit for bit, linear rope scaling applied through a file, and files
 * whose rope scaling, keys or tensors the engine does not implement refused
 * by name.
 */
#include <sys/wait.h>

#include "backend.h"
#include "runtime.h"
#include "test-helpers.h"

#define LLAMA3_VOCAB SHARED_DIR "/tokenizer/ggml-vocab-llama3.gguf"
#define QWEN2_VOCAB SHARED_DIR "/tokenizer/ggml-vocab-qwen2.gguf"

static char dir[] = "/tmp/test-models-XXXXXX";
static const char *const archs[] = { "llama3", "qwen2", "qwen3" };

static void model_path(const char *name, char *buf, size_t size)
{
        snprintf(buf, size, "%s/%s.gguf", dir, name);
}

static int run(char *const argv[])
{
        pid_t pid = fork();
        int status;
        if (pid == 0) {
                execv(argv[0], argv);
                _exit(127);
        }
        if (pid < 0 || waitpid(pid, &status, 0) != pid)
                return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int setup(void **state)
{
        const char *mk = getenv("NPU_MKMODEL");
        if (!mk || !mkdtemp(dir))
                return -1;
        for (size_t i = 0; i < ARRAY_SIZE(archs); i++) {
                char out[256];
                model_path(archs[i], out, sizeof(out));
                char *argv[] = { (char *)mk, "--arch", (char *)archs[i], "--shape", "small", "--vocab",
                                 i == 0 ? LLAMA3_VOCAB : QWEN2_VOCAB, "-o", out, NULL };
                if (run(argv) != 0)
                        return -1;
        }
        return 0;
}

static int teardown(void **state)
{
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        return system(cmd);
}

static struct runtime *open_model(const char *path, int32_t n_seq)
{
        struct runtime_opts o;
        struct runtime *rt = NULL;
        struct npu_err err = {};

        runtime_opts_default(&o);
        o.model_path = path;
        o.n_seq = n_seq;
        o.n_ctx = 128;
        o.threads = 2;
        if (runtime_open(&o, &rt, &err) < 0)
                fail_msg("%s: %s", path, err.msg);
        return rt;
}

static void test_hparams(void **state)
{
        char p[256];

        model_path("qwen3", p, sizeof(p));
        struct runtime *rt = open_model(p, 1);
        const struct npu_model *m = rt->model;
        assert_int_equal(m->hp.arch, NPU_ARCH_QWEN3);
        assert_int_equal(m->hp.head_dim, 32); /* key_length, twice dim / heads */
        assert_int_equal(hparams_q_dim(&m->hp), 128);
        assert_int_equal(m->hp.dim, 64);
        assert_int_equal(m->hp.rope_kind, ROPE_HALVES);
        assert_non_null(m->layers[0].q_norm);
        assert_null(m->layers[0].bq);
        assert_false(m->qkv_plain);
        assert_ptr_equal(m->output.data, m->tok_embd.data); /* tied */
        assert_int_equal(m->vocab->kind, VOCAB_BPE);
        runtime_free(rt);

        model_path("qwen2", p, sizeof(p));
        rt = open_model(p, 1);
        m = rt->model;
        assert_int_equal(m->hp.arch, NPU_ARCH_QWEN2);
        assert_int_equal(m->hp.head_dim, 16);
        assert_int_equal(m->hp.n_kv_heads, 2);
        assert_non_null(m->layers[1].bv);
        assert_true(m->hp.rope_base == 1e6f);
        runtime_free(rt);

        model_path("llama3", p, sizeof(p));
        rt = open_model(p, 1);
        m = rt->model;
        assert_int_equal(m->hp.arch, NPU_ARCH_LLAMA);
        assert_int_equal(m->hp.rope_kind, ROPE_ADJACENT);
        assert_non_null(m->rope_freqs);
        assert_false(m->qkv_plain);
        assert_int_equal(m->vocab->bos, 128000);
        runtime_free(rt);

        rt = open_model(TINY_MODEL, 1);
        assert_true(rt->model->qkv_plain); /* Llama 2 style: the device's RoPE */
        runtime_free(rt);
}

/*
 * A sequence's logits are bit-identical alone, one token per pass, and in a
 * batch with another sequence; a sequence forked from its prefix (as the
 * prefix cache shares KV blocks) continues with the same logits.
 */
static void batch_invariance(const char *path)
{
        struct runtime *rt = open_model(path, 4);
        struct npu_err err = {};
        const int32_t V = rt->model->hp.n_vocab;
        const int32_t a[20] = { 791, 4062, 14198, 39935, 35308, 927, 279, 16053, 5679, 13,
                                40, 3021, 5016, 3258, 17, 18, 19, 20, 220, 1234 };
        const int32_t bt[5] = { 9906, 1917, 11, 1268, 527 };
        float *alone = malloc(sizeof(float) * V), *step = malloc(sizeof(float) * V),
              *mixed = malloc(sizeof(float) * V * 2);
        struct kv_seq s1 = {}, s2 = {}, s3 = {}, s4 = {}, s5 = {}, s6 = {};

        assert_int_equal(prefill(rt->ctx, &s1, a, 20, alone, &err), 0);
        for (int i = 0; i < 20; i++)
                assert_int_equal(prefill(rt->ctx, &s2, a + i, 1, step, &err), 0);
        assert_memory_equal(alone, step, sizeof(float) * V);

        assert_int_equal(prefill(rt->ctx, &s3, a, 19, step, &err), 0);
        assert_int_equal(kv_seq_reserve(rt->kv, &s3, 20), 0);
        assert_int_equal(kv_seq_reserve(rt->kv, &s4, 5), 0);
        int32_t toks[6] = { bt[0], bt[1], a[19], bt[2], bt[3], bt[4] };
        int32_t pos[6] = { 0, 1, 19, 2, 3, 4 };
        struct kv_seq *seqs[6] = { &s4, &s4, &s3, &s4, &s4, &s4 };
        uint8_t want[6] = { 0, 0, 1, 0, 0, 1 };
        struct npu_batch b = { .n = 6, .tokens = toks, .pos = pos, .seqs = seqs, .want_logits = want };
        assert_int_equal(forward(rt->ctx, &b, mixed, &err), 0);
        assert_memory_equal(alone, mixed, sizeof(float) * V);
        assert_int_equal(prefill(rt->ctx, &s5, bt, 5, step, &err), 0);
        assert_memory_equal(step, mixed + V, sizeof(float) * V);

        /* the first 17 positions shared (two whole 16-position blocks, or one and a copied part) */
        assert_int_equal(kv_seq_fork(rt->kv, &s6, &s1, 17), 0);
        assert_int_equal(prefill(rt->ctx, &s6, a + 17, 3, step, &err), 0);
        assert_memory_equal(alone, step, sizeof(float) * V);

        struct kv_seq *all[] = { &s1, &s2, &s3, &s4, &s5, &s6 };
        for (size_t i = 0; i < ARRAY_SIZE(all); i++)
                kv_seq_release(rt->kv, all[i]);
        assert_int_equal(kv_pool_used_blocks(rt->kv), 0);
        free(alone);
        free(step);
        free(mixed);
        runtime_free(rt);
}

static void test_batch_invariance(void **state)
{
        for (size_t i = 0; i < ARRAY_SIZE(archs); i++) {
                char p[256];
                model_path(archs[i], p, sizeof(p));
                batch_invariance(p);
        }
}

static bool same_bits(const float *a, const float *b, size_t n)
{
        return memcmp(a, b, n * sizeof(float)) == 0;
}

/* The RoPE variants against each other, bit for bit. */
static void test_rope_variants(void **state)
{
        enum { T = 9, NH = 3, NKV = 1, HD = 16 };
        float q0[T * NH * HD], k0[T * NKV * HD], q1[T * NH * HD], k1[T * NKV * HD], q2[T * NH * HD], k2[T * NKV * HD];
        int32_t pos[T], pos2[T];
        float factors[HD / 2];
        uint64_t seed = 3;

        for (int i = 0; i < T * NH * HD; i++)
                q0[i] = (float)((int64_t)(test_rng(&seed) % 2001) - 1000) / 250.0f;
        for (int i = 0; i < T * NKV * HD; i++)
                k0[i] = (float)((int64_t)(test_rng(&seed) % 2001) - 1000) / 250.0f;
        for (int t = 0; t < T; t++) {
                pos[t] = 3 + 7 * t;
                pos2[t] = 2 * pos[t];
        }

        /* linear scaling by 2 at position 2p is the unscaled rotation at p */
        struct rope_spec plain = { .base = 10000.0f, .freq_scale = 1.0f, .kind = ROPE_ADJACENT };
        struct rope_spec half = plain;
        half.freq_scale = 0.5f;
        memcpy(q1, q0, sizeof(q0)), memcpy(k1, k0, sizeof(k0)), memcpy(q2, q0, sizeof(q0)), memcpy(k2, k0, sizeof(k0));
        rope_rows_spec(q1, k1, pos, NH, NKV, HD, &plain, 0, T);
        rope_rows_spec(q2, k2, pos2, NH, NKV, HD, &half, 0, T);
        assert_true(same_bits(q1, q2, T * NH * HD) && same_bits(k1, k2, T * NKV * HD));
        /* the plain spec is rope_rows, the device's */
        memcpy(q2, q0, sizeof(q0)), memcpy(k2, k0, sizeof(k0));
        rope_rows(q2, k2, pos, NH, NKV, HD, 10000.0f, 0, T);
        assert_true(same_bits(q1, q2, T * NH * HD) && same_bits(k1, k2, T * NKV * HD));
        /* frequency divisors of 2 everywhere are a linear scaling of 2 */
        for (int i = 0; i < HD / 2; i++)
                factors[i] = 2.0f;
        struct rope_spec div = plain;
        div.factors = factors;
        memcpy(q2, q0, sizeof(q0)), memcpy(k2, k0, sizeof(k0));
        rope_rows_spec(q2, k2, pos2, NH, NKV, HD, &div, 0, T);
        assert_true(same_bits(q1, q2, T * NH * HD) && same_bits(k1, k2, T * NKV * HD));
        /* halves: the adjacent rotation of the vector regrouped (element i with i + HD/2) */
        float qh[T * NH * HD];
        for (int r = 0; r < T * NH; r++)
                for (int i = 0; i < HD / 2; i++) {
                        qh[r * HD + i] = q0[r * HD + 2 * i];
                        qh[r * HD + HD / 2 + i] = q0[r * HD + 2 * i + 1];
                }
        struct rope_spec halves = plain;
        halves.kind = ROPE_HALVES;
        rope_rows_spec(qh, NULL, pos, NH, NKV, HD, &halves, 0, T);
        for (int r = 0; r < T * NH; r++)
                for (int i = 0; i < HD / 2; i++) {
                        assert_true(same_bits(&qh[r * HD + i], &q1[r * HD + 2 * i], 1));
                        assert_true(same_bits(&qh[r * HD + HD / 2 + i], &q1[r * HD + 2 * i + 1], 1));
                }
}

static const char *replaced_key;

static bool skip_replaced(const char *key)
{
        return replaced_key && strcmp(key, replaced_key) == 0;
}

/* A copy of src with one more (or a replaced) metadata key, a u32 or a string, and optionally one more tensor. */
static void copy_with(const char *src, const char *dst, const char *key, uint32_t u32, const char *str,
                      const char *tensor)
{
        struct npu_err err = {};
        struct gguf *g = NULL;
        struct gguf_writer *w = NULL;

        assert_int_equal(gguf_open(src, &g, &err), 0);
        assert_int_equal(gguf_writer_new(dst, &w, &err), 0);
        replaced_key = key;
        assert_int_equal(gguf_writer_copy_kv(w, g, skip_replaced), 0);
        if (key && str)
                assert_int_equal(gguf_writer_add_str(w, key, str), 0);
        else if (key)
                assert_int_equal(gguf_writer_add_u32(w, key, u32), 0);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
                const struct gguf_tensor *t = &g->tensors[i];
                char name[128];
                snprintf(name, sizeof(name), "%.*s", (int)t->name.len, t->name.s);
                assert_int_equal(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne), 0);
        }
        int64_t ne = 16;
        if (tensor)
                assert_int_equal(gguf_writer_add_tensor(w, tensor, GGML_TYPE_F32, 1, &ne), 0);
        assert_int_equal(gguf_writer_write_header(w, &err), 0);
        for (uint64_t i = 0; i < g->n_tensors; i++)
                assert_int_equal(gguf_writer_write_tensor(w, g->tensors[i].data, g->tensors[i].nbytes, &err), 0);
        float zeros[16] = {};
        if (tensor)
                assert_int_equal(gguf_writer_write_tensor(w, zeros, sizeof(zeros), &err), 0);
        assert_int_equal(gguf_writer_finish(w, &err), 0);
        gguf_writer_free(w);
        gguf_free(g);
}

static void expect_refused(const char *path, const char *words)
{
        struct npu_model *m = NULL;
        struct npu_err err = {};
        int r = model_load(path, &m, &err);
        if (r == 0)
                model_free(m);
        if (r == 0 || !strstr(err.msg, words))
                fail_msg("%s: %d '%s', want an error with '%s'", path, r, err.msg, words);
}

static void test_refused_by_name(void **state)
{
        char src[256], dst[256];
        model_path("qwen3", src, sizeof(src));
        snprintf(dst, sizeof(dst), "%s/variant.gguf", dir);

        copy_with(src, dst, "qwen3.rope.scaling.type", 0, "yarn", NULL);
        expect_refused(dst, "rope scaling type 'yarn'");
        copy_with(src, dst, "qwen3.rope.scaling.type", 0, "longrope", NULL);
        expect_refused(dst, "rope scaling type 'longrope'");
        copy_with(src, dst, "qwen3.attention.sliding_window", 4096, NULL, NULL);
        expect_refused(dst, "'qwen3.attention.sliding_window' is not implemented");
        /* Mistral 7B v0.1's window, were a llama GGUF to carry it; yarn on llama too */
        copy_with(TINY_MODEL, dst, "llama.attention.sliding_window", 4096, NULL, NULL);
        expect_refused(dst, "'llama.attention.sliding_window' is not implemented");
        copy_with(TINY_MODEL, dst, "llama.rope.scaling.type", 0, "yarn", NULL);
        expect_refused(dst, "rope scaling type 'yarn' (llama.rope.scaling.type) is not implemented");
        copy_with(src, dst, "qwen3.expert_count", 8, NULL, NULL);
        expect_refused(dst, "mixtures of experts");
        copy_with(src, dst, NULL, 0, NULL, "blk.0.attn_output.bias");
        expect_refused(dst, "tensor 'blk.0.attn_output.bias' is not implemented for architecture qwen3");
        /* Llama 3.1's rope_freqs is the llama architecture's, not Qwen's */
        copy_with(src, dst, NULL, 0, NULL, "rope_freqs.weight");
        expect_refused(dst, "tensor 'rope_freqs.weight' is not implemented for architecture qwen3");
        model_path("qwen2", src, sizeof(src));
        copy_with(src, dst, "general.architecture", 0, "gemma3", NULL);
        expect_refused(dst, "architecture 'gemma3' is not supported");
        /* a key the engine reads but only as 0 / a type it has: still fine */
        copy_with(src, dst, "qwen2.expert_count", 0, NULL, NULL);
        struct npu_model *m = NULL;
        struct npu_err err = {};
        assert_int_equal(model_load(dst, &m, &err), 0);
        model_free(m);
        unlink(dst);
}

/*
 * Linear rope scaling reaches the math: the small trained llama model with
 * llama.rope.scaling.type linear and factor 2 gives, bit for bit, the
 * logits of the same model with a rope_freqs.weight of 2 in every pair (the
 * angles divided by 2 through the other path, as test_rope_variants shows
 * equal to the unscaled rotation at half the position), and not the
 * unscaled model's; factor 1 gives the unscaled logits.
 */
enum rescale { RESCALE_LINEAR, RESCALE_FREQS };

static void copy_rescaled(const char *src, const char *dst, enum rescale how, float factor)
{
        struct npu_err err = {};
        struct gguf *g = NULL;
        struct gguf_writer *w = NULL;
        struct npu_hparams hp;

        assert_int_equal(gguf_open(src, &g, &err), 0);
        assert_int_equal(hparams_read(g, &hp, &err), 0);
        assert_int_equal(gguf_writer_new(dst, &w, &err), 0);
        replaced_key = NULL;
        assert_int_equal(gguf_writer_copy_kv(w, g, skip_replaced), 0);
        if (how == RESCALE_LINEAR) {
                assert_int_equal(gguf_writer_add_str(w, "llama.rope.scaling.type", "linear"), 0);
                assert_int_equal(gguf_writer_add_f32(w, "llama.rope.scaling.factor", factor), 0);
        }
        for (uint64_t i = 0; i < g->n_tensors; i++) {
                const struct gguf_tensor *t = &g->tensors[i];
                char name[128];
                snprintf(name, sizeof(name), "%.*s", (int)t->name.len, t->name.s);
                assert_int_equal(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne), 0);
        }
        int64_t pairs = hp.head_dim / 2;
        float *freqs = malloc(sizeof(float) * (size_t)pairs);
        for (int64_t i = 0; i < pairs; i++)
                freqs[i] = factor;
        if (how == RESCALE_FREQS)
                assert_int_equal(gguf_writer_add_tensor(w, "rope_freqs.weight", GGML_TYPE_F32, 1, &pairs), 0);
        assert_int_equal(gguf_writer_write_header(w, &err), 0);
        for (uint64_t i = 0; i < g->n_tensors; i++)
                assert_int_equal(gguf_writer_write_tensor(w, g->tensors[i].data, g->tensors[i].nbytes, &err), 0);
        if (how == RESCALE_FREQS)
                assert_int_equal(gguf_writer_write_tensor(w, freqs, sizeof(float) * (size_t)pairs, &err), 0);
        assert_int_equal(gguf_writer_finish(w, &err), 0);
        free(freqs);
        gguf_writer_free(w);
        gguf_free(g);
}

/* the logits after a 40-token prompt */
static float *prompt_logits(const char *path, float *freq_scale)
{
        struct runtime *rt = open_model(path, 1);
        struct npu_err err = {};
        int32_t toks[40];
        struct kv_seq s = {};
        float *logits = malloc(sizeof(float) * rt->model->hp.n_vocab);

        for (int i = 0; i < 40; i++)
                toks[i] = 1 + (i * 37) % (rt->model->hp.n_vocab - 1);
        assert_int_equal(prefill(rt->ctx, &s, toks, 40, logits, &err), 0);
        *freq_scale = rt->model->hp.rope_freq_scale;
        kv_seq_release(rt->kv, &s);
        runtime_free(rt);
        return logits;
}

static void test_linear_scaling(void **state)
{
        char lin[256], freqs[256], one[256];
        float scale_plain, scale_lin, scale_freqs, scale_one;
        snprintf(lin, sizeof(lin), "%s/linear2.gguf", dir);
        snprintf(freqs, sizeof(freqs), "%s/freqs2.gguf", dir);
        snprintf(one, sizeof(one), "%s/linear1.gguf", dir);
        copy_rescaled(TINY_MODEL, lin, RESCALE_LINEAR, 2.0f);
        copy_rescaled(TINY_MODEL, freqs, RESCALE_FREQS, 2.0f);
        copy_rescaled(TINY_MODEL, one, RESCALE_LINEAR, 1.0f);

        float *plain = prompt_logits(TINY_MODEL, &scale_plain), *l2 = prompt_logits(lin, &scale_lin),
              *f2 = prompt_logits(freqs, &scale_freqs), *l1 = prompt_logits(one, &scale_one);
        const size_t bytes = sizeof(float) * 512; /* the small model's vocabulary */
        assert_true(scale_plain == 1.0f && scale_lin == 0.5f && scale_freqs == 1.0f && scale_one == 1.0f);
        assert_memory_equal(l2, f2, bytes);
        assert_memory_not_equal(l2, plain, bytes);
        assert_memory_equal(l1, plain, bytes);
        free(plain), free(l2), free(f2), free(l1);
        unlink(lin), unlink(freqs), unlink(one);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hparams),
                cmocka_unit_test(test_linear_scaling),
                cmocka_unit_test(test_batch_invariance),
                cmocka_unit_test(test_rope_variants),
                cmocka_unit_test(test_refused_by_name),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
