/* SPDX-License-Identifier: MIT */
/*
 * HF Llama directory -> GGUF: the small test model is taken apart into an HF
 * directory (two safetensors shards with an index, config.json, and a
 * tokenizer.model protobuf built from its vocabulary), converted back, and
 * must give the same tensors, tokens and greedy text. config.json mistakes
 * get clear errors.
 */
#include <dirent.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "gguf.h"
#include "hf_convert.h"
#include "runtime.h"
#include "test-helpers.h"
#include "vocab.h"

#define PROMPT "Once upon a time"
#define F16_START "Once upon a time, pixels unfolding like petals."

struct hf_tensor {
        char name[96];
        int64_t rows, cols; /* rows = 0: a vector of cols */
        float *data;
        int shard;
};

struct fixture {
        char dir[64];
        struct gguf *g;
        uint32_t dim, layers, heads, kv_heads, ffn, ctx, vocab;
        float eps;
        bool tied;
        struct hf_tensor t[128];
        size_t n;
};

/* ---- byte buffer ---- */

struct bbuf {
        uint8_t *p;
        size_t len;
};

static void bb_put(struct bbuf *b, const void *d, size_t n)
{
        b->p = realloc(b->p, b->len + n + 1);
        assert_non_null(b->p);
        memcpy(b->p + b->len, d, n);
        b->len += n;
}

static void pb_varint(struct bbuf *b, uint64_t v)
{
        do {
                uint8_t c = (uint8_t)(v & 0x7f);
                v >>= 7;
                if (v)
                        c |= 0x80;
                bb_put(b, &c, 1);
        } while (v);
}

static void pb_key(struct bbuf *b, uint32_t field, uint32_t wire)
{
        pb_varint(b, (uint64_t)field << 3 | wire);
}

static void pb_bytes(struct bbuf *b, uint32_t field, const void *d, size_t n)
{
        pb_key(b, field, 2);
        pb_varint(b, n);
        bb_put(b, d, n);
}

static void pb_uint(struct bbuf *b, uint32_t field, uint64_t v)
{
        pb_key(b, field, 0);
        pb_varint(b, v);
}

static void write_file(const char *dir, const char *name, const void *d, size_t n)
{
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(d, 1, n, f), n);
        fclose(f);
}

/* A SentencePiece ModelProto with the GGUF's vocabulary. */
static void write_tokenizer_model(struct fixture *fx)
{
        struct npu_err err = {};
        struct npu_vocab *v = NULL;
        struct bbuf out = {}, piece = {}, spec = {};
        bool has_bytes = false;

        assert_int_equal(vocab_from_gguf(fx->g, &v, &err), 0);
        for (int32_t i = 0; i < v->n; i++) {
                const struct vocab_entry *e = &v->tokens[i];
                uint32_t score_bits;
                piece.len = 0;
                pb_bytes(&piece, 1, e->piece, e->len);
                memcpy(&score_bits, &e->score, 4);
                pb_key(&piece, 2, 5);
                bb_put(&piece, &score_bits, 4);
                pb_uint(&piece, 3, e->type ? e->type : VOCAB_TOKEN_NORMAL);
                pb_bytes(&out, 1, piece.p, piece.len);
                has_bytes |= e->type == VOCAB_TOKEN_BYTE;
        }
        pb_uint(&spec, 3, 2); /* BPE */
        if (has_bytes)
                pb_uint(&spec, 35, 1);
        pb_uint(&spec, 40, (uint64_t)v->unk);
        pb_uint(&spec, 41, (uint64_t)v->bos);
        pb_uint(&spec, 42, (uint64_t)v->eos);
        if (v->pad >= 0)
                pb_uint(&spec, 43, (uint64_t)v->pad);
        pb_bytes(&out, 2, spec.p, spec.len);
        spec.len = 0;
        pb_uint(&spec, 3, v->add_space_prefix);
        pb_uint(&spec, 4, 0);
        pb_bytes(&out, 3, spec.p, spec.len);
        write_file(fx->dir, "tokenizer.model", out.p, out.len);
        free(out.p);
        free(piece.p);
        free(spec.p);
        vocab_free(v);
}

/* ---- tensors ---- */

static void add_tensor(struct fixture *fx, const char *gguf_name, const char *hf_name, bool rope, uint32_t n_heads)
{
        const struct gguf_tensor *gt = gguf_find_tensor(fx->g, gguf_name);
        assert_non_null(gt);
        assert_int_equal(gt->type, GGML_TYPE_F32);
        struct hf_tensor *t = &fx->t[fx->n++];
        snprintf(t->name, sizeof(t->name), "%s", hf_name);
        t->cols = gt->ne[0];
        t->rows = gt->n_dims == 1 ? 0 : gt->ne[1];
        int64_t rows = MAX(t->rows, 1);
        t->data = malloc(sizeof(float) * rows * t->cols);
        assert_non_null(t->data);
        const float *src = gt->data;
        /* undo the converter's permutation: HF row i <- GGUF row 2i, HF row hd/2 + i <- GGUF row 2i + 1 */
        int64_t hd = rope ? rows / n_heads : 0;
        for (int64_t r = 0; r < rows; r++) {
                int64_t sr = r;
                if (rope) {
                        int64_t j = r % hd, base = r - j;
                        sr = base + (j < hd / 2 ? 2 * j : 2 * (j - hd / 2) + 1);
                }
                memcpy(t->data + r * t->cols, src + sr * t->cols, sizeof(float) * t->cols);
        }
        t->shard = strstr(hf_name, "layers.2.") || strstr(hf_name, "layers.3.") || strstr(hf_name, "model.norm") ||
                   strstr(hf_name, "lm_head") ? 2 : 1;
}

enum tie_mode { TIE_AS_IS, TIE_UNTIE, TIE_FORCE };

static void collect_tensors(struct fixture *fx, enum tie_mode mode)
{
        static const struct {
                const char *gguf, *hf;
                bool rope;
        } layer[] = {
                { "attn_norm", "input_layernorm", false },     { "attn_q", "self_attn.q_proj", true },
                { "attn_k", "self_attn.k_proj", true },        { "attn_v", "self_attn.v_proj", false },
                { "attn_output", "self_attn.o_proj", false },  { "ffn_norm", "post_attention_layernorm", false },
                { "ffn_gate", "mlp.gate_proj", false },        { "ffn_up", "mlp.up_proj", false },
                { "ffn_down", "mlp.down_proj", false },
        };
        char g[96], h[96];

        add_tensor(fx, "token_embd.weight", "model.embed_tokens.weight", false, 0);
        for (uint32_t l = 0; l < fx->layers; l++)
                for (size_t i = 0; i < ARRAY_SIZE(layer); i++) {
                        snprintf(g, sizeof(g), "blk.%u.%s.weight", l, layer[i].gguf);
                        snprintf(h, sizeof(h), "model.layers.%u.%s.weight", l, layer[i].hf);
                        uint32_t heads = strcmp(layer[i].gguf, "attn_k") == 0 ? fx->kv_heads : fx->heads;
                        add_tensor(fx, g, h, layer[i].rope, heads);
                }
        add_tensor(fx, "output_norm.weight", "model.norm.weight", false, 0);
        fx->tied = !gguf_find_tensor(fx->g, "output.weight") || mode == TIE_FORCE;
        if (!fx->tied)
                add_tensor(fx, "output.weight", "lm_head.weight", false, 0);
        else if (mode == TIE_UNTIE) {
                add_tensor(fx, "token_embd.weight", "lm_head.weight", false, 0);
                fx->tied = false;
        }
}

static void write_shard(struct fixture *fx, int shard, const char *file, json_object *weight_map)
{
        char hdr[16384];
        size_t off = 0, k = 0;
        struct bbuf out = {};

        k += (size_t)snprintf(hdr + k, sizeof(hdr) - k, "{\"__metadata__\":{\"format\":\"pt\"}");
        for (size_t i = 0; i < fx->n; i++) {
                const struct hf_tensor *t = &fx->t[i];
                if (t->shard != shard)
                        continue;
                size_t bytes = sizeof(float) * MAX(t->rows, 1) * t->cols;
                if (t->rows)
                        k += (size_t)snprintf(hdr + k, sizeof(hdr) - k,
                                              ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}",
                                              t->name, (long long)t->rows, (long long)t->cols, off, off + bytes);
                else
                        k += (size_t)snprintf(hdr + k, sizeof(hdr) - k,
                                              ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}",
                                              t->name, (long long)t->cols, off, off + bytes);
                off += bytes;
                json_object_object_add(weight_map, t->name, json_object_new_string(file));
        }
        k += (size_t)snprintf(hdr + k, sizeof(hdr) - k, "}");
        assert_true(k < sizeof(hdr));
        while (k % 8) /* padded with spaces as the reference writer does */
                hdr[k++] = ' ';
        uint64_t hlen = k;
        bb_put(&out, &hlen, 8);
        bb_put(&out, hdr, k);
        for (size_t i = 0; i < fx->n; i++)
                if (fx->t[i].shard == shard)
                        bb_put(&out, fx->t[i].data, sizeof(float) * MAX(fx->t[i].rows, 1) * fx->t[i].cols);
        write_file(fx->dir, file, out.p, out.len);
        free(out.p);
}

static json_object *base_config(const struct fixture *fx)
{
        json_object *c = json_object_new_object();
        json_object_object_add(c, "architectures", json_object_new_string("LlamaForCausalLM"));
        json_object_object_add(c, "model_type", json_object_new_string("llama"));
        json_object_object_add(c, "hidden_act", json_object_new_string("silu"));
        json_object_object_add(c, "hidden_size", json_object_new_int(fx->dim));
        json_object_object_add(c, "num_hidden_layers", json_object_new_int(fx->layers));
        json_object_object_add(c, "num_attention_heads", json_object_new_int(fx->heads));
        json_object_object_add(c, "num_key_value_heads", json_object_new_int(fx->kv_heads));
        json_object_object_add(c, "intermediate_size", json_object_new_int(fx->ffn));
        json_object_object_add(c, "max_position_embeddings", json_object_new_int(fx->ctx));
        json_object_object_add(c, "vocab_size", json_object_new_int(fx->vocab));
        json_object_object_add(c, "rms_norm_eps", json_object_new_double(fx->eps));
        json_object_object_add(c, "rope_theta", json_object_new_double(10000.0));
        json_object_object_add(c, "rope_scaling", NULL);
        json_object_object_add(c, "tie_word_embeddings", json_object_new_boolean(fx->tied));
        json_object_object_add(c, "torch_dtype", json_object_new_string("float32"));
        return c;
}

static void write_config(const struct fixture *fx, json_object *c)
{
        const char *s = json_object_to_json_string_ext(c, JSON_C_TO_STRING_PRETTY);
        write_file(fx->dir, "config.json", s, strlen(s));
}

static void build_dir(struct fixture *fx, enum tie_mode mode)
{
        struct npu_err err = {};

        memset(fx, 0, sizeof(*fx));
        snprintf(fx->dir, sizeof(fx->dir), "/tmp/npud-hf-XXXXXX");
        assert_non_null(mkdtemp(fx->dir));
        assert_int_equal(gguf_open(TINY_MODEL, &fx->g, &err), 0);
        assert_int_equal(gguf_get_u32(fx->g, "llama.embedding_length", &fx->dim, &err), 0);
        assert_int_equal(gguf_get_u32(fx->g, "llama.block_count", &fx->layers, &err), 0);
        assert_int_equal(gguf_get_u32(fx->g, "llama.attention.head_count", &fx->heads, &err), 0);
        assert_int_equal(gguf_get_u32(fx->g, "llama.attention.head_count_kv", &fx->kv_heads, &err), 0);
        assert_int_equal(gguf_get_u32(fx->g, "llama.feed_forward_length", &fx->ffn, &err), 0);
        assert_int_equal(gguf_get_u32(fx->g, "llama.context_length", &fx->ctx, &err), 0);
        assert_int_equal(gguf_get_f32(fx->g, "llama.attention.layer_norm_rms_epsilon", &fx->eps, &err), 0);
        fx->vocab = (uint32_t)gguf_find_tensor(fx->g, "token_embd.weight")->ne[1];
        assert_int_equal(fx->layers, 4);

        collect_tensors(fx, mode);
        json_object *index = json_object_new_object(), *map = json_object_new_object();
        json_object_object_add(index, "metadata", json_object_new_object());
        json_object_object_add(index, "weight_map", map);
        write_shard(fx, 1, "model-00001-of-00002.safetensors", map);
        write_shard(fx, 2, "model-00002-of-00002.safetensors", map);
        const char *s = json_object_to_json_string_ext(index, JSON_C_TO_STRING_PRETTY);
        write_file(fx->dir, "model.safetensors.index.json", s, strlen(s));
        json_object_put(index);

        json_object *c = base_config(fx);
        write_config(fx, c);
        json_object_put(c);
        write_tokenizer_model(fx);
}

static void remove_dir(struct fixture *fx)
{
        DIR *d = opendir(fx->dir);
        struct dirent *de;
        char path[512];

        assert_non_null(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.') {
                        snprintf(path, sizeof(path), "%s/%s", fx->dir, de->d_name);
                        unlink(path);
                }
        closedir(d);
        rmdir(fx->dir);
        for (size_t i = 0; i < fx->n; i++)
                free(fx->t[i].data);
        gguf_free(fx->g);
}

/* ---- running a model ---- */

struct run {
        int32_t ids[64];
        int32_t n;
        char text[4096];
        size_t len;
        const struct npu_vocab *v;
};

static bool on_token(int32_t token, void *userdata)
{
        struct run *r = userdata;
        if (r->n < 64)
                r->ids[r->n++] = token;
        r->len += vocab_token_bytes(r->v, token, r->text + r->len, sizeof(r->text) - 1 - r->len);
        r->text[r->len] = 0;
        return true;
}

static void greedy(const char *model, struct run *out)
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

        runtime_opts_default(&o);
        o.model_path = model;
        o.threads = 2;
        int r = runtime_open(&o, &rt, &err);
        if (r < 0)
                print_message("%s: %s\n", model, err.msg);
        assert_int_equal(r, 0);
        sampler_params_default(&sp);
        sp.temperature = 0;
        assert_int_equal(sampler_new(&sp, rt->model->hp.n_vocab, &smp), 0);
        assert_int_equal(vocab_tokenize(rt->model->vocab, PROMPT, strlen(PROMPT), true, true, &ids, &n), 0);
        *out = (struct run) { .v = rt->model->vocab };
        out->len = strlen(PROMPT);
        memcpy(out->text, PROMPT, out->len);
        assert_int_equal(generate(rt->ctx, &seq, smp, ids, (int32_t)n, 60, true, on_token, out, &st, &err), 0);
        assert_int_equal(st.n_generated, 60);
        kv_seq_release(rt->kv, &seq);
        free(ids);
        sampler_free(smp);
        runtime_free(rt);
}

static void out_path(const struct fixture *fx, char *buf, size_t size)
{
        snprintf(buf, size, "%s/out.gguf", fx->dir);
}

/* F32: every tensor is bit-identical to the original, the vocabulary tokenizes the same, greedy text matches. */
static void test_roundtrip_f32(void **state)
{
        struct fixture fx;
        struct npu_err err = {};
        char out[128];
        struct gguf *g = NULL;

        build_dir(&fx, TIE_AS_IS);
        out_path(&fx, out, sizeof(out));
        int r = hf_convert_to_gguf(fx.dir, out, GGML_TYPE_F32, &err);
        if (r < 0)
                print_message("convert: %s\n", err.msg);
        assert_int_equal(r, 0);
        assert_int_equal(gguf_open(out, &g, &err), 0);

        for (uint64_t i = 0; i < fx.g->n_tensors; i++) {
                const struct gguf_tensor *a = &fx.g->tensors[i];
                char name[96];
                snprintf(name, sizeof(name), "%.*s", (int)a->name.len, a->name.s);
                const struct gguf_tensor *b = gguf_find_tensor(g, name);
                assert_non_null(b);
                assert_int_equal(a->type, b->type);
                assert_int_equal(a->n_dims, b->n_dims);
                assert_memory_equal(a->ne, b->ne, sizeof(a->ne));
                assert_int_equal(a->nbytes, b->nbytes);
                if (memcmp(a->data, b->data, a->nbytes) != 0)
                        fail_msg("tensor %s differs after the round trip", name);
        }
        assert_int_equal(g->n_tensors, fx.g->n_tensors);
        _cleanup_free_ char *arch = NULL;
        assert_int_equal(gguf_get_str(g, "general.architecture", &arch, &err), 0);
        assert_string_equal(arch, "llama");
        uint32_t u;
        assert_int_equal(gguf_get_u32(g, "llama.rope.dimension_count", &u, &err), 0);
        assert_int_equal(u, fx.dim / fx.heads);
        float f;
        assert_int_equal(gguf_get_f32(g, "llama.rope.freq_base", &f, &err), 0);
        assert_true(f == 10000.0f);

        /* the vocabulary */
        struct npu_vocab *va = NULL, *vb = NULL;
        assert_int_equal(vocab_from_gguf(fx.g, &va, &err), 0);
        assert_int_equal(vocab_from_gguf(g, &vb, &err), 0);
        assert_int_equal(va->n, vb->n);
        assert_int_equal(va->bos, vb->bos);
        assert_int_equal(va->eos, vb->eos);
        assert_int_equal(va->unk, vb->unk);
        for (int32_t i = 0; i < va->n; i++) {
                assert_string_equal(va->tokens[i].piece, vb->tokens[i].piece);
                assert_true(va->tokens[i].score == vb->tokens[i].score);
        }
        static const char *const texts[] = {
                PROMPT, "The quick brown fox jumps over the lazy dog.", "  spaces  and\ttabs\n\nnewlines",
                "<s>special</s> text", "unicode: héllo wörld — ✓ 日本", "",
        };
        for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
                _cleanup_free_ int32_t *ia = NULL, *ib = NULL;
                size_t na, nb;
                assert_int_equal(vocab_tokenize(va, texts[i], strlen(texts[i]), true, true, &ia, &na), 0);
                assert_int_equal(vocab_tokenize(vb, texts[i], strlen(texts[i]), true, true, &ib, &nb), 0);
                assert_int_equal(na, nb);
                assert_memory_equal(ia, ib, na * sizeof(int32_t));
        }
        vocab_free(va);
        vocab_free(vb);
        gguf_free(g);

        struct run ra, rb;
        greedy(TINY_MODEL, &ra);
        greedy(out, &rb);
        assert_int_equal(ra.n, 60);
        assert_int_equal(rb.n, 60);
        assert_memory_equal(ra.ids, rb.ids, sizeof(int32_t) * 60);
        assert_string_equal(ra.text, rb.text);
        remove_dir(&fx);
}

/* F16 with an explicit lm_head: loads, generates the known start, F32 norms and F16 matrices. */
static void test_roundtrip_f16(void **state)
{
        struct fixture fx;
        struct npu_err err = {};
        char out[128];
        struct gguf *g = NULL;

        build_dir(&fx, TIE_UNTIE);
        out_path(&fx, out, sizeof(out));
        int r = hf_convert_to_gguf(fx.dir, out, GGML_TYPE_F16, &err);
        if (r < 0)
                print_message("convert: %s\n", err.msg);
        assert_int_equal(r, 0);
        assert_int_equal(gguf_open(out, &g, &err), 0);
        assert_int_equal(gguf_find_tensor(g, "output.weight")->type, GGML_TYPE_F16);
        assert_int_equal(gguf_find_tensor(g, "token_embd.weight")->type, GGML_TYPE_F16);
        assert_int_equal(gguf_find_tensor(g, "blk.0.attn_q.weight")->type, GGML_TYPE_F16);
        assert_int_equal(gguf_find_tensor(g, "blk.3.ffn_norm.weight")->type, GGML_TYPE_F32);
        assert_int_equal(gguf_find_tensor(g, "output_norm.weight")->type, GGML_TYPE_F32);
        gguf_free(g);

        struct run rb;
        greedy(out, &rb);
        if (strncmp(rb.text, F16_START, strlen(F16_START)) != 0)
                fail_msg("F16 text: %s", rb.text);
        remove_dir(&fx);
}

/* tie_word_embeddings: no output.weight is written and the engine reuses the embeddings. */
static void test_tied(void **state)
{
        struct fixture fx;
        struct npu_err err = {};
        char out[128];
        struct gguf *g = NULL;
        struct runtime_opts o;
        struct runtime *rt = NULL;

        build_dir(&fx, TIE_FORCE);
        out_path(&fx, out, sizeof(out));
        assert_int_equal(hf_convert_to_gguf(fx.dir, out, GGML_TYPE_F32, &err), 0);
        assert_int_equal(gguf_open(out, &g, &err), 0);
        assert_null(gguf_find_tensor(g, "output.weight"));
        assert_int_equal(g->n_tensors, fx.g->n_tensors - 1);
        gguf_free(g);
        runtime_opts_default(&o);
        o.model_path = out;
        o.threads = 1;
        assert_int_equal(runtime_open(&o, &rt, &err), 0);
        assert_true(rt->model->output.data == rt->model->tok_embd.data);
        runtime_free(rt);
        remove_dir(&fx);
}

/* ---- config.json and directory errors ---- */

static void expect_fail(struct fixture *fx, json_object *c, const char *s1, const char *s2)
{
        struct npu_err err = {};
        char out[128];

        if (c)
                write_config(fx, c);
        out_path(fx, out, sizeof(out));
        int r = hf_convert_to_gguf(fx->dir, out, GGML_TYPE_F32, &err);
        if (r >= 0 || (s1 && !strstr(err.msg, s1)) || (s2 && !strstr(err.msg, s2)))
                print_message("got %d '%s', wanted '%s' '%s'\n", r, err.msg, s1, s2 ? s2 : "");
        assert_true(r < 0);
        if (s1)
                assert_non_null(strstr(err.msg, s1));
        if (s2)
                assert_non_null(strstr(err.msg, s2));
        assert_int_equal(access(out, F_OK), -1);
        char tmp[160];
        snprintf(tmp, sizeof(tmp), "%s.tmp", out);
        assert_int_equal(access(tmp, F_OK), -1);
        if (c)
                json_object_put(c);
}

static json_object *with(const struct fixture *fx, const char *key, json_object *v)
{
        json_object *c = base_config(fx);
        if (v)
                json_object_object_add(c, key, v);
        else
                json_object_object_del(c, key);
        return c;
}

static void test_config_errors(void **state)
{
        struct fixture fx;
        char buf[160];

        build_dir(&fx, TIE_FORCE);
        expect_fail(&fx, with(&fx, "hidden_size", NULL), "config.json: 'hidden_size' is missing", NULL);
        expect_fail(&fx, with(&fx, "vocab_size", NULL), "'vocab_size' is missing", NULL);
        expect_fail(&fx, with(&fx, "rms_norm_eps", NULL), "'rms_norm_eps' is missing", NULL);
        expect_fail(&fx, with(&fx, "hidden_size", json_object_new_string("64")),
                    "'hidden_size' must be an integer, not a string", NULL);
        expect_fail(&fx, with(&fx, "num_hidden_layers", json_object_new_double(4.0)),
                    "'num_hidden_layers' must be an integer, not a double", NULL);
        expect_fail(&fx, with(&fx, "num_attention_heads", json_object_new_int(0)),
                    "'num_attention_heads' = 0 is out of range", NULL);
        expect_fail(&fx, with(&fx, "intermediate_size", json_object_new_int(-1)), "'intermediate_size' = -1", NULL);
        expect_fail(&fx, with(&fx, "rms_norm_eps", json_object_new_string("1e-5")),
                    "'rms_norm_eps' must be a number, not a string", NULL);
        expect_fail(&fx, with(&fx, "rope_theta", json_object_new_double(-1)), "'rope_theta' = -1 is out of range",
                    NULL);
        expect_fail(&fx, with(&fx, "tie_word_embeddings", json_object_new_int(1)),
                    "'tie_word_embeddings' must be true or false, not a int", NULL);
        expect_fail(&fx, with(&fx, "num_key_value_heads", json_object_new_int(3)),
                    "num_key_value_heads 3 does not divide num_attention_heads", NULL);
        expect_fail(&fx, with(&fx, "hidden_size", json_object_new_int(66)),
                    "hidden_size 66 is not a multiple of num_attention_heads", NULL);
        expect_fail(&fx, with(&fx, "rope_scaling", json_object_new_object()), "rope_scaling has no rope_type", NULL);
        expect_fail(&fx, with(&fx, "model_type", json_object_new_string("mistral")),
                    "'model_type' is 'mistral'; only 'llama' goes with LlamaForCausalLM", NULL);
        expect_fail(&fx, with(&fx, "hidden_act", json_object_new_string("gelu")), "'hidden_act' is 'gelu'", NULL);

        /* shapes against the config */
        expect_fail(&fx, with(&fx, "intermediate_size", json_object_new_int(100)),
                    "tensor 'model.layers.0.mlp.gate_proj.weight' in model-00001-of-00002.safetensors has shape [",
                    "expected [100, 64] from config.json");
        json_object *c = with(&fx, "num_key_value_heads", json_object_new_int((int32_t)fx.heads / 2));
        snprintf(buf, sizeof(buf), "expected [%u, %u]", fx.dim / 2, fx.dim);
        expect_fail(&fx, c, "tensor 'model.layers.0.self_attn.k_proj.weight'", buf);
        expect_fail(&fx, with(&fx, "hidden_size", json_object_new_int(128)),
                    "tensor 'model.embed_tokens.weight' in model-00001-of-00002.safetensors has shape [", NULL);
        expect_fail(&fx, with(&fx, "vocab_size", json_object_new_int(600)), "tensor 'model.embed_tokens.weight'",
                    "expected [600, 64]");
        expect_fail(&fx, with(&fx, "vocab_size", json_object_new_int(100)),
                    "tokenizer.model has 512 pieces, more than config.json's vocab_size 100", NULL);
        expect_fail(&fx, with(&fx, "num_hidden_layers", json_object_new_int(5)),
                    "tensor 'model.layers.4.input_layernorm.weight' is missing", NULL);
        expect_fail(&fx, with(&fx, "num_hidden_layers", json_object_new_int(3)), "tensor 'model.layers.3.",
                    "is not a Llama weight");
        assert_true(fx.tied);
        expect_fail(&fx, with(&fx, "tie_word_embeddings", json_object_new_boolean(false)),
                    "'lm_head.weight' is missing", NULL);

        /* not JSON, not an object, absent */
        write_file(fx.dir, "config.json", "[1, 2]", 6);
        expect_fail(&fx, NULL, "config.json: a JSON array, not an object", NULL);
        write_file(fx.dir, "config.json", "{\"hidden_size\": 64,", 19);
        expect_fail(&fx, NULL, "config.json: not valid JSON", NULL);
        snprintf(buf, sizeof(buf), "%s/config.json", fx.dir);
        unlink(buf);
        expect_fail(&fx, NULL, "cannot open", "config.json");

        /* the index points outside the directory; then at a shard that lacks the tensor */
        json_object *cfg = base_config(&fx);
        write_config(&fx, cfg);
        json_object_put(cfg);
        static const char evil[] = "{\"weight_map\":{\"model.norm.weight\":\"../../etc/passwd.safetensors\"}}";
        write_file(fx.dir, "model.safetensors.index.json", evil, strlen(evil));
        expect_fail(&fx, NULL, "tensor 'model.norm.weight' maps to a bad shard name", NULL);
        static const char wrong[] = "{\"weight_map\":{\"model.norm.weight\":\"model-00001-of-00002.safetensors\"}}";
        write_file(fx.dir, "model.safetensors.index.json", wrong, strlen(wrong));
        expect_fail(&fx, NULL, "tensor 'model.norm.weight' is not in model-00001-of-00002.safetensors", NULL);

        /* without the index the shards are found by name; no tokenizer.model is an error */
        snprintf(buf, sizeof(buf), "%s/model.safetensors.index.json", fx.dir);
        unlink(buf);
        snprintf(buf, sizeof(buf), "%s/tokenizer.model", fx.dir);
        unlink(buf);
        expect_fail(&fx, NULL, "no tokenizer.model", NULL);
        write_tokenizer_model(&fx);
        {
                struct npu_err err = {};
                char out[128];
                out_path(&fx, out, sizeof(out));
                assert_int_equal(hf_convert_to_gguf(fx.dir, out, GGML_TYPE_F32, &err), 0);
                unlink(out);
                assert_int_equal(hf_convert_to_gguf(fx.dir, out, GGML_TYPE_Q8_0, &err), -EINVAL);
        }
        /* a corrupt shard is named */
        snprintf(buf, sizeof(buf), "%s/model-00002-of-00002.safetensors", fx.dir);
        assert_int_equal(truncate(buf, 100), 0);
        expect_fail(&fx, NULL, "model-00002-of-00002.safetensors:", NULL);
        remove_dir(&fx);
}

/* Every tensor and the precision key of two quantized GGUFs are the same. */
static void assert_same_gguf(const char *a_path, const char *b_path)
{
        struct npu_err err = {};
        struct gguf *a = NULL, *b = NULL;
        _cleanup_free_ char *pa = NULL, *pb = NULL;

        assert_int_equal(gguf_open(a_path, &a, &err), 0);
        assert_int_equal(gguf_open(b_path, &b, &err), 0);
        assert_int_equal(a->n_tensors, b->n_tensors);
        for (uint64_t i = 0; i < a->n_tensors; i++) {
                const struct gguf_tensor *ta = &a->tensors[i];
                char name[96];
                snprintf(name, sizeof(name), "%.*s", (int)ta->name.len, ta->name.s);
                const struct gguf_tensor *tb = gguf_find_tensor(b, name);
                assert_non_null(tb);
                assert_int_equal(ta->type, tb->type);
                assert_int_equal(ta->nbytes, tb->nbytes);
                if (memcmp(ta->data, tb->data, ta->nbytes) != 0)
                        fail_msg("tensor %s differs", name);
        }
        assert_int_equal(gguf_get_str(a, "npud.quantization.precision", &pa, &err), 0);
        assert_int_equal(gguf_get_str(b, "npud.quantization.precision", &pb, &err), 0);
        assert_string_equal(pa, pb);
        gguf_free(a);
        gguf_free(b);
}

/*
 * npu-quantize -i HF_DIR: the same file as converting the directory to an
 * F16 GGUF and quantizing that, its temporary conversion removed, a model
 * that generates; a broken directory is refused with the reason.
 */
static void test_quantize_from_dir(void **state)
{
        const char *quantize = getenv("NPU_QUANTIZE");
        struct fixture fx;
        struct npu_err err = {};
        char from_dir[160], f16[160], from_gguf[160], leftover[200], cmd[1024], buf[512];
        struct run ra, rb;

        assert_non_null(quantize);
        build_dir(&fx, TIE_AS_IS);
        snprintf(from_dir, sizeof(from_dir), "%s/q-dir.gguf", fx.dir);
        snprintf(f16, sizeof(f16), "%s/f16.gguf", fx.dir);
        snprintf(from_gguf, sizeof(from_gguf), "%s/q-gguf.gguf", fx.dir);
        snprintf(leftover, sizeof(leftover), "%s.from-hf.gguf", from_dir);

        snprintf(cmd, sizeof(cmd), "%s -i %s -o %s --precision w8a8 >/dev/null 2>&1", quantize, fx.dir, from_dir);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(access(leftover, F_OK), -1);
        assert_int_equal(hf_convert_to_gguf(fx.dir, f16, GGML_TYPE_F16, &err), 0);
        snprintf(cmd, sizeof(cmd), "%s -i %s -o %s --precision w8a8 >/dev/null 2>&1", quantize, f16, from_gguf);
        assert_int_equal(system(cmd), 0);
        assert_same_gguf(from_dir, from_gguf);
        greedy(from_dir, &ra);
        greedy(from_gguf, &rb);
        assert_memory_equal(ra.ids, rb.ids, sizeof(int32_t) * 60);

        /* a broken shard: refused, naming the file, and no output left behind */
        unlink(from_dir);
        snprintf(buf, sizeof(buf), "%s/model-00001-of-00002.safetensors", fx.dir);
        assert_int_equal(truncate(buf, 64), 0);
        snprintf(cmd, sizeof(cmd), "%s -i %s -o %s --precision w8a8 2>&1 | grep -q 'model-00001-of-00002.safetensors'",
                 quantize, fx.dir, from_dir);
        assert_int_equal(system(cmd), 0);
        snprintf(cmd, sizeof(cmd), "%s -i %s -o %s --precision w8a8 >/dev/null 2>&1", quantize, fx.dir, from_dir);
        assert_int_not_equal(system(cmd), 0);
        assert_int_equal(access(from_dir, F_OK), -1);
        assert_int_equal(access(leftover, F_OK), -1);
        remove_dir(&fx);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip_f32),
                cmocka_unit_test(test_roundtrip_f16),
                cmocka_unit_test(test_tied),
                cmocka_unit_test(test_config_errors),
                cmocka_unit_test(test_quantize_from_dir),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
