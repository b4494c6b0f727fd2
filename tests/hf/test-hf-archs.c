/* SPDX-License-Identifier: MIT */
/*
 * Hugging Face directories of today's models -> GGUF: tiny llama3, qwen2 and
 * qwen3 models (npu-mkmodel, with the real vocabularies) are taken apart into
 * the directories Hugging Face ships (config.json as LlamaForCausalLM with
 * Llama 3.2's rope_scaling llama3, Qwen2ForCausalLM, Qwen3ForCausalLM with
 * its own head_dim; model.safetensors; a byte-level BPE tokenizer.json with
 * the family's Split pattern; tokenizer_config.json), converted back, and
 * must give the same tensors, vocabulary and greedy text. rope_freqs.weight
 * matches values computed apart from this code for Llama 3.1 8B's config.
 * Configurations the engine cannot run are refused by name.
 */
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <json-c/json.h>

#include "gguf.h"
#include "hf_convert.h"
#include "runtime.h"
#include "test-helpers.h"
#include "vocab.h"

#define LLAMA3_VOCAB SHARED_DIR "/tokenizer/ggml-vocab-llama3.gguf"
#define QWEN2_VOCAB SHARED_DIR "/tokenizer/ggml-vocab-qwen2.gguf"

/* The Split patterns of the real tokenizer.json files (Llama 3's, Qwen2's) */
#define LLAMA3_SPLIT                                                                                  \
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_SPLIT                                                                                \
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

struct arch_case {
        const char *arch;        /* npu-mkmodel --arch */
        const char *gguf_arch;   /* general.architecture */
        const char *class_name;
        const char *model_type;
        const char *vocab;
        const char *split;
        bool merges_as_pairs;
};

static const struct arch_case cases[] = {
        { "llama3", "llama", "LlamaForCausalLM", "llama", LLAMA3_VOCAB, LLAMA3_SPLIT, false },
        { "qwen2", "qwen2", "Qwen2ForCausalLM", "qwen2", QWEN2_VOCAB, QWEN2_SPLIT, true },
        { "qwen3", "qwen3", "Qwen3ForCausalLM", "qwen3", QWEN2_VOCAB, QWEN2_SPLIT, false },
};

static char work[] = "/tmp/test-hf-archs-XXXXXX";

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

static void src_path(const struct arch_case *c, char *buf, size_t size)
{
        snprintf(buf, size, "%s/%s.gguf", work, c->arch);
}

static int setup(void **state)
{
        const char *mk = getenv("NPU_MKMODEL");
        if (!mk || !mkdtemp(work))
                return -1;
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                char out[256];
                src_path(&cases[i], out, sizeof(out));
                char *argv[] = { (char *)mk, "--arch", (char *)cases[i].arch, "--vocab", (char *)cases[i].vocab, "-o",
                                 out, NULL };
                if (run(argv) != 0)
                        return -1;
        }
        return 0;
}

static int teardown(void **state)
{
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", work);
        return system(cmd);
}

/* ---- the directory ---- */

struct hfdir {
        char path[256];
        const struct arch_case *c;
        struct gguf *g;
        uint32_t dim, layers, heads, kv_heads, ffn, ctx, vocab, head_dim;
        float eps, theta;
};

static void write_file(const char *dir, const char *name, const void *d, size_t n)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(d, 1, n, f), n);
        fclose(f);
}

static void write_json(const char *dir, const char *name, json_object *o)
{
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        write_file(dir, name, s, strlen(s));
}

static uint32_t key_u32(const struct hfdir *d, const char *suffix)
{
        char k[96];
        uint32_t v = 0;
        struct npu_err err = {};
        snprintf(k, sizeof(k), "%s.%s", d->c->gguf_arch, suffix);
        assert_int_equal(gguf_get_u32(d->g, k, &v, &err), 0);
        return v;
}

static float key_f32(const struct hfdir *d, const char *suffix)
{
        char k[96];
        float v = 0;
        struct npu_err err = {};
        snprintf(k, sizeof(k), "%s.%s", d->c->gguf_arch, suffix);
        assert_int_equal(gguf_get_f32(d->g, k, &v, &err), 0);
        return v;
}

static json_object *config_json(const struct hfdir *d)
{
        json_object *c = json_object_new_object(), *a = json_object_new_array();
        json_object_array_add(a, json_object_new_string(d->c->class_name));
        json_object_object_add(c, "architectures", a);
        json_object_object_add(c, "model_type", json_object_new_string(d->c->model_type));
        json_object_object_add(c, "hidden_act", json_object_new_string("silu"));
        json_object_object_add(c, "hidden_size", json_object_new_int(d->dim));
        json_object_object_add(c, "num_hidden_layers", json_object_new_int(d->layers));
        json_object_object_add(c, "num_attention_heads", json_object_new_int(d->heads));
        json_object_object_add(c, "num_key_value_heads", json_object_new_int(d->kv_heads));
        json_object_object_add(c, "intermediate_size", json_object_new_int(d->ffn));
        json_object_object_add(c, "max_position_embeddings", json_object_new_int(d->ctx));
        json_object_object_add(c, "vocab_size", json_object_new_int(d->vocab));
        json_object_object_add(c, "rms_norm_eps", json_object_new_double(d->eps));
        json_object_object_add(c, "rope_theta", json_object_new_double(d->theta));
        json_object_object_add(c, "tie_word_embeddings", json_object_new_boolean(true));
        json_object_object_add(c, "attention_bias", json_object_new_boolean(false));
        json_object_object_add(c, "head_dim", json_object_new_int(d->head_dim));
        if (strcmp(d->c->arch, "llama3") == 0) {
                /* Llama 3.2's */
                json_object *s = json_object_new_object();
                json_object_object_add(s, "rope_type", json_object_new_string("llama3"));
                json_object_object_add(s, "factor", json_object_new_double(32.0));
                json_object_object_add(s, "low_freq_factor", json_object_new_double(1.0));
                json_object_object_add(s, "high_freq_factor", json_object_new_double(4.0));
                json_object_object_add(s, "original_max_position_embeddings", json_object_new_int(8192));
                json_object_object_add(c, "rope_scaling", s);
        } else {
                json_object_object_add(c, "rope_scaling", NULL);
                json_object_object_add(c, "use_sliding_window", json_object_new_boolean(false));
                json_object_object_add(c, "sliding_window", json_object_new_int(32768));
        }
        return c;
}

/* tokenizer.json and tokenizer_config.json from the GGUF's vocabulary */
static void write_tokenizer(const struct hfdir *d)
{
        struct npu_err err = {};
        struct npu_vocab *v = NULL;
        const struct gguf_kv *merges = NULL;
        _cleanup_free_ char *tmpl = NULL;

        assert_int_equal(vocab_from_gguf(d->g, &v, &err), 0);
        assert_int_equal(gguf_get_arr(d->g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges, &err), 0);
        json_object *root = json_object_new_object(), *model = json_object_new_object(), *vocab = json_object_new_object();
        json_object *m = json_object_new_array(), *added = json_object_new_array();
        for (int32_t i = 0; i < v->n; i++) {
                const struct vocab_entry *t = &v->tokens[i];
                if (t->type == VOCAB_TOKEN_NORMAL) {
                        json_object_object_add(vocab, t->piece, json_object_new_int(i));
                        continue;
                }
                json_object *a = json_object_new_object();
                json_object_object_add(a, "id", json_object_new_int(i));
                json_object_object_add(a, "content", json_object_new_string(t->piece));
                json_object_object_add(a, "special", json_object_new_boolean(t->type == VOCAB_TOKEN_CONTROL));
                json_object_array_add(added, a);
        }
        for (uint64_t i = 0; i < merges->arr_n; i++) {
                char s[2100];
                snprintf(s, sizeof(s), "%.*s", (int)merges->arr_strs[i].len, merges->arr_strs[i].s);
                if (d->c->merges_as_pairs) {
                        char *sp = strchr(s + 1, ' ');
                        *sp = 0;
                        json_object *pair = json_object_new_array();
                        json_object_array_add(pair, json_object_new_string(s));
                        json_object_array_add(pair, json_object_new_string(sp + 1));
                        json_object_array_add(m, pair);
                } else {
                        json_object_array_add(m, json_object_new_string(s));
                }
        }
        json_object_object_add(model, "type", json_object_new_string("BPE"));
        json_object_object_add(model, "vocab", vocab);
        json_object_object_add(model, "merges", m);
        json_object_object_add(model, "ignore_merges", json_object_new_boolean(strcmp(d->c->arch, "llama3") == 0));
        json_object_object_add(root, "model", model);
        json_object_object_add(root, "added_tokens", added);
        json_object *pre = json_object_new_object(), *list = json_object_new_array(), *split = json_object_new_object(),
                    *pat = json_object_new_object(), *bl = json_object_new_object();
        json_object_object_add(pat, "Regex", json_object_new_string(d->c->split));
        json_object_object_add(split, "type", json_object_new_string("Split"));
        json_object_object_add(split, "pattern", pat);
        json_object_object_add(split, "behavior", json_object_new_string("Isolated"));
        json_object_object_add(bl, "type", json_object_new_string("ByteLevel"));
        json_object_object_add(bl, "use_regex", json_object_new_boolean(false));
        json_object_array_add(list, split);
        json_object_array_add(list, bl);
        json_object_object_add(pre, "type", json_object_new_string("Sequence"));
        json_object_object_add(pre, "pretokenizers", list);
        json_object_object_add(root, "pre_tokenizer", pre);
        write_json(d->path, "tokenizer.json", root);
        json_object_put(root);

        json_object *cfg = json_object_new_object();
        if (v->bos >= 0)
                json_object_object_add(cfg, "bos_token", json_object_new_string(v->tokens[v->bos].piece));
        json_object *eos = json_object_new_object();
        json_object_object_add(eos, "content", json_object_new_string(v->tokens[v->eos].piece));
        json_object_object_add(cfg, "eos_token", eos);
        if (strcmp(d->c->arch, "llama3") != 0)
                json_object_object_add(cfg, "add_bos_token", json_object_new_boolean(false));
        if (gguf_get_str(d->g, "tokenizer.chat_template", &tmpl, &err) == 0)
                json_object_object_add(cfg, "chat_template", json_object_new_string(tmpl));
        write_json(d->path, "tokenizer_config.json", cfg);
        json_object_put(cfg);
        vocab_free(v);
}

static const struct {
        const char *gguf, *hf;
} tensor_names[] = {
        { "attn_norm.weight", "input_layernorm.weight" },  { "attn_q.weight", "self_attn.q_proj.weight" },
        { "attn_k.weight", "self_attn.k_proj.weight" },    { "attn_v.weight", "self_attn.v_proj.weight" },
        { "attn_q.bias", "self_attn.q_proj.bias" },        { "attn_k.bias", "self_attn.k_proj.bias" },
        { "attn_v.bias", "self_attn.v_proj.bias" },        { "attn_q_norm.weight", "self_attn.q_norm.weight" },
        { "attn_k_norm.weight", "self_attn.k_norm.weight" }, { "attn_output.weight", "self_attn.o_proj.weight" },
        { "ffn_norm.weight", "post_attention_layernorm.weight" }, { "ffn_gate.weight", "mlp.gate_proj.weight" },
        { "ffn_up.weight", "mlp.up_proj.weight" },         { "ffn_down.weight", "mlp.down_proj.weight" },
};

/* model.safetensors: the GGUF's tensors under HF names, Llama's q/k rows back in rotate-half order */
static void write_safetensors(const struct hfdir *d, const char *skip)
{
        json_object *hdr = json_object_new_object();
        struct {
                const struct gguf_tensor *t;
                bool unpermute;
        } items[256];
        size_t n = 0, off = 0;
        char g[96], h[128];

        for (uint64_t i = 0; i < d->g->n_tensors; i++) {
                const struct gguf_tensor *t = &d->g->tensors[i];
                snprintf(g, sizeof(g), "%.*s", (int)t->name.len, t->name.s);
                if (strcmp(g, "rope_freqs.weight") == 0)
                        continue; /* config.json's rope_scaling says it */
                if (strcmp(g, "token_embd.weight") == 0)
                        snprintf(h, sizeof(h), "model.embed_tokens.weight");
                else if (strcmp(g, "output_norm.weight") == 0)
                        snprintf(h, sizeof(h), "model.norm.weight");
                else {
                        int l = -1, used = 0;
                        assert_int_equal(sscanf(g, "blk.%d.%n", &l, &used), 1);
                        const char *rest = g + used;
                        h[0] = 0;
                        for (size_t k = 0; k < ARRAY_SIZE(tensor_names); k++)
                                if (strcmp(rest, tensor_names[k].gguf) == 0)
                                        snprintf(h, sizeof(h), "model.layers.%d.%s", l, tensor_names[k].hf);
                        assert_true(h[0]);
                }
                if (skip && strcmp(h, skip) == 0)
                        continue;
                assert_int_equal(t->type, GGML_TYPE_F32);
                json_object *e = json_object_new_object(), *shape = json_object_new_array(), *offs = json_object_new_array();
                json_object_object_add(e, "dtype", json_object_new_string("F32"));
                if (t->n_dims == 2)
                        json_object_array_add(shape, json_object_new_int64(t->ne[1]));
                json_object_array_add(shape, json_object_new_int64(t->ne[0]));
                json_object_object_add(e, "shape", shape);
                json_object_array_add(offs, json_object_new_int64((int64_t)off));
                json_object_array_add(offs, json_object_new_int64((int64_t)(off + t->nbytes)));
                json_object_object_add(e, "data_offsets", offs);
                json_object_object_add(hdr, h, e);
                off += t->nbytes;
                items[n].t = t;
                items[n++].unpermute = strcmp(d->c->gguf_arch, "llama") == 0 &&
                                       (strstr(g, "attn_q.weight") || strstr(g, "attn_k.weight"));
        }
        const char *hs = json_object_to_json_string_ext(hdr, JSON_C_TO_STRING_PLAIN);
        size_t hlen = strlen(hs), pad = (8 - hlen % 8) % 8;
        char path[512];
        snprintf(path, sizeof(path), "%s/model.safetensors", d->path);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        uint64_t total = hlen + pad;
        fwrite(&total, 8, 1, f);
        fwrite(hs, 1, hlen, f);
        for (size_t i = 0; i < pad; i++)
                fputc(' ', f);
        for (size_t i = 0; i < n; i++) {
                const struct gguf_tensor *t = items[i].t;
                const int64_t cols = t->ne[0], rows = t->n_dims == 2 ? t->ne[1] : 1, hd = d->head_dim;
                for (int64_t r = 0; r < rows; r++) {
                        int64_t sr = r;
                        if (items[i].unpermute) { /* HF row j < hd/2 is GGUF row 2j, the rest 2(j - hd/2) + 1 */
                                int64_t j = r % hd, base = r - j;
                                sr = base + (j < hd / 2 ? 2 * j : 2 * (j - hd / 2) + 1);
                        }
                        fwrite((const float *)t->data + sr * cols, sizeof(float), cols, f);
                }
        }
        fclose(f);
        json_object_put(hdr);
}

static void build(struct hfdir *d, const struct arch_case *c)
{
        struct npu_err err = {};
        char src[256];

        memset(d, 0, sizeof(*d));
        d->c = c;
        snprintf(d->path, sizeof(d->path), "%s/hf-%s", work, c->arch);
        mkdir(d->path, 0755);
        src_path(c, src, sizeof(src));
        assert_int_equal(gguf_open(src, &d->g, &err), 0);
        d->dim = key_u32(d, "embedding_length");
        d->layers = key_u32(d, "block_count");
        d->heads = key_u32(d, "attention.head_count");
        d->kv_heads = key_u32(d, "attention.head_count_kv");
        d->ffn = key_u32(d, "feed_forward_length");
        d->ctx = key_u32(d, "context_length");
        d->head_dim = key_u32(d, "rope.dimension_count");
        d->eps = key_f32(d, "attention.layer_norm_rms_epsilon");
        d->theta = key_f32(d, "rope.freq_base");
        d->vocab = (uint32_t)gguf_find_tensor(d->g, "token_embd.weight")->ne[1];
        json_object *cfg = config_json(d);
        write_json(d->path, "config.json", cfg);
        json_object_put(cfg);
        write_safetensors(d, NULL);
        write_tokenizer(d);
}

static void done(struct hfdir *d)
{
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", d->path);
        assert_int_equal(system(cmd), 0);
        gguf_free(d->g);
}

/* ---- runs ---- */

struct text {
        char s[4096];
        size_t len;
        const struct npu_vocab *v;
};

static bool on_token(int32_t token, void *userdata)
{
        struct text *t = userdata;
        t->len += vocab_token_text(t->v, token, t->s + t->len, sizeof(t->s) - 1 - t->len);
        t->s[t->len] = 0;
        return true;
}

static void greedy(const char *model, struct text *out)
{
        struct runtime_opts o;
        struct runtime *rt = NULL;
        struct npu_err err = {};
        struct sampler_params sp;
        struct sampler *smp = NULL;
        struct kv_seq seq = {};
        struct gen_stats st;
        int32_t *ids;
        size_t n;
        const char *prompt = "The quick brown fox";

        runtime_opts_default(&o);
        o.model_path = model;
        o.threads = 2;
        o.n_ctx = 128;
        if (runtime_open(&o, &rt, &err) < 0)
                fail_msg("%s: %s", model, err.msg);
        sampler_params_default(&sp);
        sp.temperature = 0;
        assert_int_equal(sampler_new(&sp, rt->model->hp.n_vocab, &smp), 0);
        assert_int_equal(vocab_tokenize(rt->model->vocab, prompt, strlen(prompt), true, false, &ids, &n), 0);
        *out = (struct text) { .v = rt->model->vocab };
        assert_int_equal(generate(rt->ctx, &seq, smp, ids, (int32_t)n, 30, false, on_token, out, &st, &err), 0);
        kv_seq_release(rt->kv, &seq);
        free(ids);
        sampler_free(smp);
        runtime_free(rt);
}

static void assert_same_strings(const struct gguf *a, const struct gguf *b, const char *key)
{
        const struct gguf_kv *x = NULL, *y = NULL;
        struct npu_err err = {};
        assert_int_equal(gguf_get_arr(a, key, GGUF_TYPE_STRING, &x, &err), 0);
        assert_int_equal(gguf_get_arr(b, key, GGUF_TYPE_STRING, &y, &err), 0);
        assert_int_equal(x->arr_n, y->arr_n);
        for (uint64_t i = 0; i < x->arr_n; i++)
                if (x->arr_strs[i].len != y->arr_strs[i].len ||
                    memcmp(x->arr_strs[i].s, y->arr_strs[i].s, x->arr_strs[i].len) != 0)
                        fail_msg("%s[%llu] differs", key, (unsigned long long)i);
}

static void convert_case(const struct arch_case *c)
{
        struct hfdir d;
        struct npu_err err = {};
        struct gguf *g = NULL;
        char out[300], src[256];

        build(&d, c);
        snprintf(out, sizeof(out), "%s/out.gguf", d.path);
        int r = hf_convert_to_gguf(d.path, out, GGML_TYPE_F32, &err);
        if (r < 0)
                fail_msg("%s: %s", c->arch, err.msg);
        assert_int_equal(gguf_open(out, &g, &err), 0);

        /* every tensor as it was, bit for bit (rope_freqs recomputed from rope_scaling) */
        assert_int_equal(g->n_tensors, d.g->n_tensors);
        for (uint64_t i = 0; i < d.g->n_tensors; i++) {
                const struct gguf_tensor *a = &d.g->tensors[i];
                char name[96];
                snprintf(name, sizeof(name), "%.*s", (int)a->name.len, a->name.s);
                const struct gguf_tensor *b = gguf_find_tensor(g, name);
                if (!b)
                        fail_msg("%s: %s missing after conversion", c->arch, name);
                assert_int_equal(a->type, b->type);
                assert_memory_equal(a->ne, b->ne, sizeof(a->ne));
                if (memcmp(a->data, b->data, a->nbytes) != 0)
                        fail_msg("%s: tensor %s differs", c->arch, name);
        }
        _cleanup_free_ char *arch = NULL, *pre = NULL, *pre0 = NULL, *t0 = NULL, *t1 = NULL;
        assert_int_equal(gguf_get_str(g, "general.architecture", &arch, &err), 0);
        assert_string_equal(arch, c->gguf_arch);
        assert_int_equal(gguf_get_str(g, "tokenizer.ggml.pre", &pre, &err), 0);
        assert_int_equal(gguf_get_str(d.g, "tokenizer.ggml.pre", &pre0, &err), 0);
        assert_string_equal(pre, pre0);
        assert_same_strings(g, d.g, "tokenizer.ggml.tokens");
        assert_same_strings(g, d.g, "tokenizer.ggml.merges");
        assert_int_equal(gguf_get_str(g, "tokenizer.chat_template", &t1, &err), 0);
        assert_int_equal(gguf_get_str(d.g, "tokenizer.chat_template", &t0, &err), 0);
        assert_string_equal(t0, t1);
        gguf_free(g);

        /* the same model: the same vocabulary flags and greedy text */
        struct text a, b;
        src_path(c, src, sizeof(src));
        greedy(src, &a);
        greedy(out, &b);
        assert_string_equal(a.s, b.s);
        struct npu_vocab *va = NULL, *vb = NULL;
        struct gguf *ga = NULL, *gb = NULL;
        assert_int_equal(gguf_open(src, &ga, &err), 0);
        assert_int_equal(gguf_open(out, &gb, &err), 0);
        assert_int_equal(vocab_from_gguf(ga, &va, &err), 0);
        assert_int_equal(vocab_from_gguf(gb, &vb, &err), 0);
        assert_int_equal(va->bos, vb->bos);
        assert_int_equal(va->eos, vb->eos);
        assert_int_equal(va->add_bos, vb->add_bos);
        for (int32_t i = 0; i < va->n; i++)
                assert_int_equal(va->tokens[i].type, vb->tokens[i].type);
        vocab_free(va);
        vocab_free(vb);
        gguf_free(ga);
        gguf_free(gb);
        done(&d);
}

static void test_convert_llama3(void **state)
{
        convert_case(&cases[0]);
}

static void test_convert_qwen2(void **state)
{
        convert_case(&cases[1]);
}

static void test_convert_qwen3(void **state)
{
        convert_case(&cases[2]);
}

/* Llama 3.1 8B's rope_scaling, against figures computed apart from this code (Python, the HF formula). */
static void test_llama31_rope_freqs(void **state)
{
        static const struct {
                int i;
                float want;
        } ref[] = { { 0, 1.0f },          { 28, 1.0f },        { 29, 1.2074839f }, { 30, 1.5534146f },
                    { 31, 2.0263132f },   { 32, 2.6945297f },  { 33, 3.6842525f }, { 34, 5.2573266f },
                    { 35, 8.0f },         { 63, 8.0f } };
        const struct rope_llama3 s = { 8.0f, 1.0f, 4.0f, 8192.0f };
        float f[64];
        struct npu_err err = {};

        assert_int_equal(rope_llama3_factors(128, 500000.0f, &s, f, &err), 0);
        for (size_t k = 0; k < ARRAY_SIZE(ref); k++)
                if (fabsf(f[ref[k].i] - ref[k].want) > 1e-6f * ref[k].want)
                        fail_msg("rope_freqs[%d] = %.9g, want %.9g", ref[k].i, f[ref[k].i], ref[k].want);
        const struct rope_llama3 bad = { 8.0f, 4.0f, 1.0f, 8192.0f };
        assert_int_equal(rope_llama3_factors(128, 500000.0f, &bad, f, &err), -EINVAL);
}

static void expect_fail(const struct hfdir *d, const char *want)
{
        struct npu_err err = {};
        char out[300];
        snprintf(out, sizeof(out), "%s/out.gguf", d->path);
        int r = hf_convert_to_gguf(d->path, out, GGML_TYPE_F32, &err);
        if (r >= 0 || !strstr(err.msg, want))
                fail_msg("got %d '%s', want an error with '%s'", r, err.msg, want);
        assert_int_equal(access(out, F_OK), -1);
}

static void with_config(const struct hfdir *d, const char *key, json_object *v)
{
        json_object *c = config_json(d);
        json_object_object_add(c, key, v);
        write_json(d->path, "config.json", c);
        json_object_put(c);
}

static json_object *scaling(const char *type, double factor)
{
        json_object *s = json_object_new_object();
        json_object_object_add(s, "rope_type", json_object_new_string(type));
        json_object_object_add(s, "factor", json_object_new_double(factor));
        json_object_object_add(s, "original_max_position_embeddings", json_object_new_int(4096));
        return s;
}

static void test_refused(void **state)
{
        struct hfdir d;

        build(&d, &cases[2]); /* qwen3 */
        with_config(&d, "rope_scaling", scaling("yarn", 4));
        expect_fail(&d, "rope_scaling type 'yarn' is not supported");
        with_config(&d, "rope_scaling", scaling("longrope", 4));
        expect_fail(&d, "rope_scaling type 'longrope' is not supported");
        with_config(&d, "rope_scaling", scaling("dynamic", 2));
        expect_fail(&d, "rope_scaling type 'dynamic' is not supported");
        with_config(&d, "rope_scaling", scaling("llama3", 8));
        expect_fail(&d, "rope_scaling llama3 is not supported outside LlamaForCausalLM");
        with_config(&d, "use_sliding_window", json_object_new_boolean(true));
        expect_fail(&d, "'use_sliding_window' true is not supported");
        with_config(&d, "attention_bias", json_object_new_boolean(true));
        expect_fail(&d, "'attention_bias' true is not supported");
        json_object *a = json_object_new_array();
        json_object_array_add(a, json_object_new_string("MistralForCausalLM"));
        with_config(&d, "architectures", a);
        expect_fail(&d, "'architectures' is 'MistralForCausalLM'");
        with_config(&d, "model_type", json_object_new_string("qwen2"));
        expect_fail(&d, "only 'qwen3' goes with Qwen3ForCausalLM");

        /* linear scaling is converted to the GGUF keys, and the file runs */
        with_config(&d, "rope_scaling", scaling("linear", 2));
        struct npu_err err = {};
        char out[300];
        snprintf(out, sizeof(out), "%s/out.gguf", d.path);
        assert_int_equal(hf_convert_to_gguf(d.path, out, GGML_TYPE_F32, &err), 0);
        struct npu_model *m = NULL;
        assert_int_equal(model_load(out, &m, &err), 0);
        assert_true(m->hp.rope_freq_scale == 0.5f);
        assert_int_equal(m->hp.head_dim, 32);
        model_free(m);
        unlink(out);

        /* a q/k norm missing; a weight of another family */
        json_object *cfg = config_json(&d);
        write_json(d.path, "config.json", cfg);
        json_object_put(cfg);
        write_safetensors(&d, "model.layers.1.self_attn.k_norm.weight");
        expect_fail(&d, "tensor 'model.layers.1.self_attn.k_norm.weight' is missing");
        done(&d);

        build(&d, &cases[0]); /* llama3 with q/k norms: not Llama weights */
        json_object *c2 = config_json(&d);
        json_object_object_del(c2, "architectures");
        json_object_object_add(c2, "model_type", json_object_new_string("qwen3"));
        json_object_object_del(c2, "rope_scaling");
        write_json(d.path, "config.json", c2);
        json_object_put(c2);
        expect_fail(&d, "tensor 'model.layers.0.self_attn.q_norm.weight' is missing");
        done(&d);

        /* the tokenizer: an unknown pre-tokenizer pattern, a merge of an unknown piece */
        build(&d, &cases[1]);
        char path[400];
        snprintf(path, sizeof(path), "%s/tokenizer.json", d.path);
        json_object *tj = json_object_from_file(path);
        json_object *pre = NULL, *list = NULL, *pat = NULL;
        json_object_object_get_ex(tj, "pre_tokenizer", &pre);
        json_object_object_get_ex(pre, "pretokenizers", &list);
        json_object_object_get_ex(json_object_array_get_idx(list, 0), "pattern", &pat);
        json_object_object_add(pat, "Regex", json_object_new_string("\\p{L}+|\\p{N}+"));
        write_json(d.path, "tokenizer.json", tj);
        expect_fail(&d, "the pre-tokenizer's pattern '\\p{L}+|\\p{N}+' is not one npud knows");
        json_object_object_add(pat, "Regex", json_object_new_string(QWEN2_SPLIT));
        json_object *model = NULL, *merges = NULL;
        json_object_object_get_ex(tj, "model", &model);
        json_object_object_get_ex(model, "merges", &merges);
        json_object *bad = json_object_new_array();
        json_object_array_add(bad, json_object_new_string("nosuch"));
        json_object_array_add(bad, json_object_new_string("piece"));
        json_object_array_put_idx(merges, 0, bad);
        write_json(d.path, "tokenizer.json", tj);
        expect_fail(&d, "tokenizer.json: merge 0 'nosuch piece': 'nosuch' is not in the vocabulary");
        json_object_put(tj);
        done(&d);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_convert_llama3),
                cmocka_unit_test(test_convert_qwen2),
                cmocka_unit_test(test_convert_qwen3),
                cmocka_unit_test(test_llama31_rope_freqs),
                cmocka_unit_test(test_refused),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
