/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <math.h>
#include <sys/stat.h>

#include "fp16.h"
#include "hf_convert.h"
#include "hf_json.h"
#include "hf_tokenizer.h"
#include "safetensors.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

/* ---- the model directory: shards and tokenizer ---- */

struct hf_dir {
        const char *path;
        struct hf_config cfg;
        struct safetensors **shards;
        size_t n_shards;
        struct hf_tokenizer tok;
};

static void hf_dir_done(struct hf_dir *d)
{
        for (size_t i = 0; i < d->n_shards; i++)
                safetensors_free(d->shards[i]);
        free(d->shards);
        hf_tokenizer_done(&d->tok);
}

/* Shard names come from a file we do not trust: plain file names inside the directory only. */
static bool shard_name_ok(const char *s)
{
        size_t n = strlen(s), sfx = strlen(".safetensors");
        return n > sfx && n < 256 && s[0] != '.' && !strchr(s, '/') && strcmp(s + n - sfx, ".safetensors") == 0;
}

static int open_shard(struct hf_dir *d, const char *file, struct npu_err *err)
{
        _cleanup_free_ char *path = NULL;
        struct safetensors **s;
        int r;

        for (size_t i = 0; i < d->n_shards; i++)
                if (strcmp(d->shards[i]->name, file) == 0)
                        return 0;
        r = hf_join_path(d->path, file, &path);
        if (r < 0)
                return r;
        s = realloc(d->shards, (d->n_shards + 1) * sizeof(*s));
        if (!s)
                return -ENOMEM;
        d->shards = s;
        r = safetensors_open(path, &d->shards[d->n_shards], err);
        if (r < 0)
                return r;
        d->n_shards++;
        return 0;
}

static const struct st_tensor *hf_find(const struct hf_dir *d, const char *name, const char **ret_shard)
{
        for (size_t i = 0; i < d->n_shards; i++) {
                const struct st_tensor *t = safetensors_find(d->shards[i], name);
                if (t) {
                        if (ret_shard)
                                *ret_shard = d->shards[i]->name;
                        return t;
                }
        }
        return NULL;
}

/* Open the shards named by model.safetensors.index.json; each listed tensor must be in its shard. */
static int open_indexed_shards(struct hf_dir *d, const char *index_path, struct npu_err *err)
{
        _cleanup_(json_object_putp) json_object *root = NULL;
        json_object *map = NULL;
        int r;

        r = hf_json_load_object(index_path, &root, err);
        if (r < 0)
                return r;
        if (!json_object_object_get_ex(root, "weight_map", &map) || !json_object_is_type(map, json_type_object))
                return npu_err_set(err, -EBADMSG, "model.safetensors.index.json: 'weight_map' is missing or not an object");
        json_object_object_foreach(map, tname, file) {
                if (!json_object_is_type(file, json_type_string) || !shard_name_ok(json_object_get_string(file)))
                        return npu_err_set(err, -EBADMSG,
                                           "model.safetensors.index.json: tensor '%.64s' maps to a bad shard name",
                                           tname);
                r = open_shard(d, json_object_get_string(file), err);
                if (r < 0)
                        return r;
        }
        json_object_object_foreach(map, tname2, file2) {
                const char *shard = NULL;
                if (!hf_find(d, tname2, &shard) || strcmp(shard, json_object_get_string(file2)) != 0)
                        return npu_err_set(err, -EBADMSG,
                                           "model.safetensors.index.json: tensor '%.64s' is not in %.64s", tname2,
                                           json_object_get_string(file2));
        }
        if (d->n_shards == 0)
                return npu_err_set(err, -EBADMSG, "model.safetensors.index.json: 'weight_map' is empty");
        return 0;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_strv(char **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

/* Without an index: every model*.safetensors in the directory, in name order. */
static int open_globbed_shards(struct hf_dir *d, struct npu_err *err)
{
        _cleanup_(closedirp) DIR *dir = opendir(d->path);
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        int r = 0;

        if (!dir)
                return npu_err_set(err, -errno, "cannot open directory %s: %s", d->path, strerror(errno));
        while ((de = readdir(dir))) {
                if (strncmp(de->d_name, "model", 5) != 0 || !shard_name_ok(de->d_name))
                        continue;
                char **v = realloc(names, (n + 1) * sizeof(*v));
                if (!v) {
                        free_strv(names, n);
                        return -ENOMEM;
                }
                names = v;
                names[n] = strdup(de->d_name);
                if (!names[n]) {
                        free_strv(names, n);
                        return -ENOMEM;
                }
                n++;
        }
        qsort(names, n, sizeof(*names), cmp_str);
        for (size_t i = 0; i < n && r >= 0; i++)
                r = open_shard(d, names[i], err);
        free_strv(names, n);
        if (r < 0)
                return r;
        if (d->n_shards == 0)
                return npu_err_set(err, -ENOENT, "%s: no model*.safetensors files", d->path);
        return 0;
}

/* The same tensor name in two shards would make the result depend on the order. */
static int check_duplicates(const struct hf_dir *d, struct npu_err *err)
{
        for (size_t i = 0; i < d->n_shards; i++)
                for (size_t j = i + 1; j < d->n_shards; j++)
                        for (size_t k = 0; k < d->shards[i]->n_tensors; k++) {
                                const char *name = d->shards[i]->tensors[k].name;
                                if (safetensors_find(d->shards[j], name))
                                        return npu_err_set(err, -EBADMSG, "tensor '%.64s' is in both %.64s and %.64s",
                                                           name, d->shards[i]->name, d->shards[j]->name);
                        }
        return 0;
}

static int open_shards(struct hf_dir *d, struct npu_err *err)
{
        _cleanup_free_ char *index = NULL;
        int r = hf_join_path(d->path, "model.safetensors.index.json", &index);

        if (r < 0)
                return r;
        if (access(index, F_OK) == 0)
                r = open_indexed_shards(d, index, err);
        else
                r = open_globbed_shards(d, err);
        return r < 0 ? r : check_duplicates(d, err);
}

/* ---- what to write ---- */

enum hf_kind {
        HF_VECTOR,       /* F32 always */
        HF_MATRIX,
        HF_MATRIX_ROPE,  /* rows permuted from rotate-half to interleaved pairs (llama) */
        HF_COMPUTED,     /* an F32 vector the converter computes (rope_freqs) */
};

struct hf_item {
        char gguf_name[64];
        const struct st_tensor *t;
        const float *computed;
        enum hf_kind kind;
        int64_t rows, cols;
        uint32_t head_dim;
};

struct hf_plan {
        struct hf_item *items;
        size_t n, cap;
        float *rope_freqs;
};

static void shape_str(const struct st_tensor *t, char *buf, size_t size)
{
        size_t off = (size_t)snprintf(buf, size, "[");
        for (uint32_t i = 0; i < t->n_dims && off < size; i++)
                off += (size_t)snprintf(buf + off, size - off, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (off < size)
                snprintf(buf + off, size - off, "]");
}

static struct hf_item *plan_item(struct hf_plan *p)
{
        if (p->n == p->cap) {
                size_t cap = MAX(32u, p->cap * 2);
                struct hf_item *v = realloc(p->items, cap * sizeof(*v));
                if (!v)
                        return NULL;
                p->items = v;
                p->cap = cap;
        }
        return &p->items[p->n++];
}

static int plan_add(struct hf_plan *p, const struct hf_dir *d, const char *hf_name, const char *gguf_name,
                    enum hf_kind kind, int64_t rows, int64_t cols, uint32_t head_dim, struct npu_err *err)
{
        const char *shard = NULL;
        const struct st_tensor *t = hf_find(d, hf_name, &shard);
        char got[96];

        if (!t)
                return npu_err_set(err, -EINVAL, "tensor '%s' is missing", hf_name);
        bool ok = kind == HF_VECTOR ? t->n_dims == 1 && t->shape[0] == cols
                                    : t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols;
        if (!ok) {
                shape_str(t, got, sizeof(got));
                if (kind == HF_VECTOR)
                        return npu_err_set(err, -EINVAL, "tensor '%s' in %.64s has shape %s, expected [%lld] from config.json",
                                           hf_name, shard, got, (long long)cols);
                return npu_err_set(err, -EINVAL, "tensor '%s' in %.64s has shape %s, expected [%lld, %lld] from config.json",
                                   hf_name, shard, got, (long long)rows, (long long)cols);
        }
        struct hf_item *it = plan_item(p);
        if (!it)
                return -ENOMEM;
        *it = (struct hf_item) { .t = t, .kind = kind, .rows = rows, .cols = cols, .head_dim = head_dim };
        snprintf(it->gguf_name, sizeof(it->gguf_name), "%s", gguf_name);
        return 0;
}

/* What each architecture adds to a Llama layer. */
static bool has_biases(const struct hf_config *c)
{
        return c->arch == NPU_ARCH_QWEN2;
}

static bool has_qk_norm(const struct hf_config *c)
{
        return c->arch == NPU_ARCH_QWEN3;
}

static int plan_layer(struct hf_plan *p, const struct hf_dir *d, uint32_t l, struct npu_err *err)
{
        const struct hf_config *c = &d->cfg;
        const int64_t dim = c->hidden_size, hd = c->head_dim, kv = hd * c->n_kv_heads, qd = hd * c->n_heads;
        /* Llama GGUFs rotate adjacent pairs: q/k rows permuted; Qwen rotates the halves as HF does */
        const enum hf_kind rope = c->arch == NPU_ARCH_LLAMA ? HF_MATRIX_ROPE : HF_MATRIX;
        const struct {
                const char *hf, *gguf;
                enum hf_kind kind;
                int64_t rows, cols;
                bool (*only)(const struct hf_config *c);
                const char *suffix;
        } map[] = {
                { "input_layernorm", "attn_norm", HF_VECTOR, 1, dim, NULL, "weight" },
                { "self_attn.q_proj", "attn_q", rope, qd, dim, NULL, "weight" },
                { "self_attn.k_proj", "attn_k", rope, kv, dim, NULL, "weight" },
                { "self_attn.v_proj", "attn_v", HF_MATRIX, kv, dim, NULL, "weight" },
                { "self_attn.q_proj", "attn_q", HF_VECTOR, 1, qd, has_biases, "bias" },
                { "self_attn.k_proj", "attn_k", HF_VECTOR, 1, kv, has_biases, "bias" },
                { "self_attn.v_proj", "attn_v", HF_VECTOR, 1, kv, has_biases, "bias" },
                { "self_attn.q_norm", "attn_q_norm", HF_VECTOR, 1, hd, has_qk_norm, "weight" },
                { "self_attn.k_norm", "attn_k_norm", HF_VECTOR, 1, hd, has_qk_norm, "weight" },
                { "self_attn.o_proj", "attn_output", HF_MATRIX, dim, qd, NULL, "weight" },
                { "post_attention_layernorm", "ffn_norm", HF_VECTOR, 1, dim, NULL, "weight" },
                { "mlp.gate_proj", "ffn_gate", HF_MATRIX, c->ffn_size, dim, NULL, "weight" },
                { "mlp.up_proj", "ffn_up", HF_MATRIX, c->ffn_size, dim, NULL, "weight" },
                { "mlp.down_proj", "ffn_down", HF_MATRIX, dim, c->ffn_size, NULL, "weight" },
        };
        char hf_name[128], gguf_name[64];

        for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
                if (map[i].only && !map[i].only(c))
                        continue;
                snprintf(hf_name, sizeof(hf_name), "model.layers.%u.%s.%s", l, map[i].hf, map[i].suffix);
                snprintf(gguf_name, sizeof(gguf_name), "blk.%u.%s.%s", l, map[i].gguf, map[i].suffix);
                int r = plan_add(p, d, hf_name, gguf_name, map[i].kind, map[i].rows, map[i].cols, (uint32_t)hd, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static const char *family(const struct hf_config *c)
{
        return c->arch == NPU_ARCH_QWEN2 ? "Qwen2" : c->arch == NPU_ARCH_QWEN3 ? "Qwen3" : "Llama";
}

/* Names this converter understands; anything else (other architectures' weights) is an error. */
static bool known_tensor(const struct hf_config *c, const char *name)
{
        static const char *const top[] = { "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight" };
        static const char *const layer[] = {
                "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
                "self_attn.rotary_emb.inv_freq",
        };
        static const char *const biases[] = { "self_attn.q_proj.bias", "self_attn.k_proj.bias",
                                              "self_attn.v_proj.bias" };
        static const char *const qk_norms[] = { "self_attn.q_norm.weight", "self_attn.k_norm.weight" };
        const char *p, *prefix = "model.layers.";
        char *end;

        for (size_t i = 0; i < ARRAY_SIZE(top); i++)
                if (strcmp(name, top[i]) == 0)
                        return true;
        if (strncmp(name, prefix, strlen(prefix)) != 0)
                return false;
        p = name + strlen(prefix);
        if (*p < '0' || *p > '9')
                return false;
        unsigned long l = strtoul(p, &end, 10);
        if (l >= c->n_layers || *end != '.')
                return false;
        for (size_t i = 0; i < ARRAY_SIZE(layer); i++)
                if (strcmp(end + 1, layer[i]) == 0)
                        return true;
        for (size_t i = 0; has_biases(c) && i < ARRAY_SIZE(biases); i++)
                if (strcmp(end + 1, biases[i]) == 0)
                        return true;
        for (size_t i = 0; has_qk_norm(c) && i < ARRAY_SIZE(qk_norms); i++)
                if (strcmp(end + 1, qk_norms[i]) == 0)
                        return true;
        return false;
}

static int check_known(const struct hf_dir *d, struct npu_err *err)
{
        for (size_t i = 0; i < d->n_shards; i++)
                for (size_t k = 0; k < d->shards[i]->n_tensors; k++)
                        if (!known_tensor(&d->cfg, d->shards[i]->tensors[k].name))
                                return npu_err_set(err, -EINVAL,
                                                   "tensor '%.64s' in %.64s is not a %s weight (or its layer is past num_hidden_layers %u)",
                                                   d->shards[i]->tensors[k].name, d->shards[i]->name,
                                                   family(&d->cfg), d->cfg.n_layers);
        return 0;
}

/* Llama 3.1's rope_scaling llama3: the divisors GGUF keeps as rope_freqs.weight. */
static int plan_rope_freqs(struct hf_plan *p, const struct hf_config *c, struct npu_err *err)
{
        if (c->scaling != HF_ROPE_LLAMA3)
                return 0;
        p->rope_freqs = malloc(sizeof(float) * (c->head_dim / 2));
        if (!p->rope_freqs)
                return -ENOMEM;
        int r = rope_llama3_factors((int32_t)c->head_dim, c->rope_theta, &c->llama3, p->rope_freqs, err);
        if (r < 0)
                return r;
        struct hf_item *it = plan_item(p);
        if (!it)
                return -ENOMEM;
        *it = (struct hf_item) { .computed = p->rope_freqs, .kind = HF_COMPUTED, .rows = 1, .cols = c->head_dim / 2 };
        snprintf(it->gguf_name, sizeof(it->gguf_name), "rope_freqs.weight");
        return 0;
}

static int build_plan(const struct hf_dir *d, struct hf_plan *p, struct npu_err *err)
{
        const struct hf_config *c = &d->cfg;
        int r;

        r = check_known(d, err);
        if (r < 0)
                return r;
        r = plan_add(p, d, "model.embed_tokens.weight", "token_embd.weight", HF_MATRIX, c->vocab_size,
                     c->hidden_size, 0, err);
        for (uint32_t l = 0; l < c->n_layers && r >= 0; l++)
                r = plan_layer(p, d, l, err);
        if (r >= 0)
                r = plan_add(p, d, "model.norm.weight", "output_norm.weight", HF_VECTOR, 1, c->hidden_size, 0, err);
        if (r >= 0)
                r = plan_rope_freqs(p, c, err);
        if (r >= 0 && !c->tie_embeddings) {
                if (!hf_find(d, "lm_head.weight", NULL))
                        return npu_err_set(err, -EINVAL,
                                           "tensor 'lm_head.weight' is missing and config.json does not set tie_word_embeddings");
                r = plan_add(p, d, "lm_head.weight", "output.weight", HF_MATRIX, c->vocab_size, c->hidden_size, 0,
                             err);
        }
        return r;
}

/* ---- writing ---- */

static int add_hparams(struct gguf_writer *w, const struct hf_dir *d, const char *name, enum ggml_type out_type)
{
        const struct hf_config *c = &d->cfg;
        const char *arch = arch_name(c->arch);
        char k[96];
        int r = 0;

#define KEY(s) (snprintf(k, sizeof(k), "%s.%s", arch, s), k)
        r |= gguf_writer_add_str(w, "general.architecture", arch);
        r |= gguf_writer_add_str(w, "general.name", name);
        r |= gguf_writer_add_u32(w, "general.file_type", out_type == GGML_TYPE_F16 ? 1 : 0);
        r |= gguf_writer_add_u32(w, KEY("context_length"), c->n_ctx);
        r |= gguf_writer_add_u32(w, KEY("embedding_length"), c->hidden_size);
        r |= gguf_writer_add_u32(w, KEY("block_count"), c->n_layers);
        r |= gguf_writer_add_u32(w, KEY("feed_forward_length"), c->ffn_size);
        r |= gguf_writer_add_u32(w, KEY("rope.dimension_count"), c->head_dim);
        r |= gguf_writer_add_u32(w, KEY("attention.head_count"), c->n_heads);
        r |= gguf_writer_add_u32(w, KEY("attention.head_count_kv"), c->n_kv_heads);
        if (c->head_dim != c->hidden_size / c->n_heads || c->hidden_size % c->n_heads || has_qk_norm(c)) {
                r |= gguf_writer_add_u32(w, KEY("attention.key_length"), c->head_dim);
                r |= gguf_writer_add_u32(w, KEY("attention.value_length"), c->head_dim);
        }
        r |= gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->rms_eps);
        r |= gguf_writer_add_f32(w, KEY("rope.freq_base"), c->rope_theta);
        if (c->scaling == HF_ROPE_LINEAR) {
                r |= gguf_writer_add_str(w, KEY("rope.scaling.type"), "linear");
                r |= gguf_writer_add_f32(w, KEY("rope.scaling.factor"), c->linear_factor);
        }
#undef KEY
        return r < 0 ? -ENOMEM : 0;
}

static enum ggml_type item_type(const struct hf_item *it, enum ggml_type out_type)
{
        return it->kind == HF_VECTOR || it->kind == HF_COMPUTED ? GGML_TYPE_F32 : out_type;
}

static bool item_is_vector(const struct hf_item *it)
{
        return it->kind == HF_VECTOR || it->kind == HF_COMPUTED;
}

/* HF row of GGUF row r: within each head, rows i and hd/2 + i become the pair 2i, 2i + 1. */
static int64_t source_row(const struct hf_item *it, int64_t r)
{
        if (it->kind != HF_MATRIX_ROPE)
                return r;
        int64_t hd = it->head_dim, j = r % hd, base = r - j;
        return base + (j % 2 == 0 ? j / 2 : hd / 2 + j / 2);
}

static int write_item(struct gguf_writer *w, const struct hf_item *it, enum ggml_type out_type, float *row,
                      npu_f16 *row16, struct npu_err *err)
{
        enum ggml_type type = item_type(it, out_type);
        int r;

        if (it->kind == HF_COMPUTED) {
                r = gguf_writer_write_tensor_part(w, it->computed, sizeof(float) * it->cols, err);
                return r < 0 ? r : gguf_writer_end_tensor(w, err);
        }
        for (int64_t i = 0; i < it->rows; i++) {
                r = st_tensor_read_f32(it->t, (uint64_t)(source_row(it, i) * it->cols), (uint64_t)it->cols, row);
                if (r < 0)
                        return npu_err_set(err, r, "tensor '%s': reading row %lld failed", it->t->name, (long long)i);
                if (type == GGML_TYPE_F16) {
                        for (int64_t k = 0; k < it->cols; k++)
                                row16[k] = f32_to_f16(row[k]);
                        r = gguf_writer_write_tensor_part(w, row16, (size_t)it->cols * 2, err);
                } else
                        r = gguf_writer_write_tensor_part(w, row, (size_t)it->cols * 4, err);
                if (r < 0)
                        return r;
        }
        return gguf_writer_end_tensor(w, err);
}

static int write_gguf(const struct hf_dir *d, const struct hf_plan *p, const char *path, const char *name,
                      enum ggml_type out_type, struct npu_err *err)
{
        _cleanup_(gguf_writer_freep) struct gguf_writer *w = NULL;
        _cleanup_free_ float *row = NULL;
        _cleanup_free_ npu_f16 *row16 = NULL;
        int64_t max_cols = 1;
        int r;

        r = gguf_writer_new(path, &w, err);
        if (r < 0)
                return r;
        r = add_hparams(w, d, name, out_type);
        if (r >= 0)
                r = hf_tokenizer_write(w, &d->tok, d->cfg.vocab_size);
        for (size_t i = 0; i < p->n && r >= 0; i++) {
                const struct hf_item *it = &p->items[i];
                int64_t ne[2] = { it->cols, it->rows };
                r = gguf_writer_add_tensor(w, it->gguf_name, item_type(it, out_type), item_is_vector(it) ? 1 : 2, ne);
                max_cols = MAX(max_cols, it->cols);
        }
        if (r < 0)
                return npu_err_set(err, r, "%s: building the header failed", path);
        row = malloc((size_t)max_cols * sizeof(float));
        row16 = malloc((size_t)max_cols * sizeof(npu_f16));
        if (!row || !row16)
                return -ENOMEM;
        r = gguf_writer_write_header(w, err);
        for (size_t i = 0; i < p->n && r >= 0; i++)
                r = write_item(w, &p->items[i], out_type, row, row16, err);
        if (r >= 0)
                r = gguf_writer_finish(w, err);
        return r;
}

static int dir_base_name(const char *dir, char **ret)
{
        _cleanup_free_ char *s = strdup(dir);

        if (!s)
                return -ENOMEM;
        size_t n = strlen(s);
        while (n > 1 && s[n - 1] == '/')
                s[--n] = 0;
        const char *slash = strrchr(s, '/');
        *ret = strdup(slash && slash[1] ? slash + 1 : s);
        return *ret ? 0 : -ENOMEM;
}

int hf_convert_to_gguf(const char *dir, const char *out_gguf, enum ggml_type out_type, struct npu_err *err)
{
        _cleanup_free_ char *cfg_path = NULL, *tmp = NULL, *name = NULL;
        struct hf_dir d = { .path = dir };
        struct hf_plan p = {};
        int r;

        if (out_type != GGML_TYPE_F32 && out_type != GGML_TYPE_F16)
                return npu_err_set(err, -EINVAL, "output type %s is not F32 or F16", ggml_type_name(out_type));
        if ((r = hf_join_path(dir, "config.json", &cfg_path)) < 0 || (r = dir_base_name(dir, &name)) < 0)
                return r;
        if (asprintf(&tmp, "%s.tmp", out_gguf) < 0) {
                tmp = NULL;
                return -ENOMEM;
        }
        r = hf_config_load(cfg_path, &d.cfg, err);
        if (r >= 0)
                r = open_shards(&d, err);
        if (r >= 0)
                r = hf_tokenizer_load(dir, &d.cfg, &d.tok, err);
        if (r >= 0)
                r = build_plan(&d, &p, err);
        if (r >= 0) {
                r = write_gguf(&d, &p, tmp, name, out_type, err);
                if (r >= 0 && rename(tmp, out_gguf) < 0)
                        r = npu_err_set(err, -errno, "cannot rename %s to %s: %s", tmp, out_gguf, strerror(errno));
                if (r < 0)
                        unlink(tmp);
        }
        free(p.items);
        free(p.rope_freqs);
        hf_dir_done(&d);
        return r;
}
