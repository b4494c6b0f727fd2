/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <math.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "fp16.h"
#include "hf_convert.h"
#include "safetensors.h"
#include "vocab.h"

#define HF_MAX_JSON (64u << 20)
#define HF_MAX_DIM (1u << 30)

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_tokener *, json_tokener_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

/* ---- small file and JSON helpers ---- */

static int read_small_file(const char *path, size_t cap, char **ret, size_t *ret_len, struct npu_err *err)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ char *buf = NULL;
        struct stat st;

        if (!f)
                return npu_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
        if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode))
                return npu_err_set(err, -EINVAL, "%s is not a regular file", path);
        if ((uint64_t)st.st_size > cap)
                return npu_err_set(err, -EFBIG, "%s is %lld bytes, more than the %zu allowed", path,
                                   (long long)st.st_size, cap);
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
                return npu_err_set(err, -EIO, "reading %s failed", path);
        buf[st.st_size] = 0;
        *ret_len = (size_t)st.st_size;
        *ret = TAKE_PTR(buf);
        return 0;
}

static const char *jtype(json_object *o)
{
        return o ? json_type_to_name(json_object_get_type(o)) : "null";
}

/* Parse a whole JSON document that must be an object. text must be NUL-terminated at len. */
static int parse_json_object(const char *text, size_t len, const char *name, json_object **ret,
                             struct npu_err *err)
{
        _cleanup_(json_tokener_freep) struct json_tokener *tok = json_tokener_new_ex(32);
        _cleanup_(json_object_putp) json_object *root = NULL;

        if (!tok)
                return -ENOMEM;
        if (len > INT32_MAX - 1)
                return npu_err_set(err, -EFBIG, "%s: too large", name);
        root = json_tokener_parse_ex(tok, text, (int)len + 1);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        if (!root || jerr != json_tokener_success)
                return npu_err_set(err, -EBADMSG, "%s: not valid JSON (%s at byte %zu)", name,
                                   json_tokener_error_desc(jerr), json_tokener_get_parse_end(tok));
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
                if (!strchr(" \t\r\n", text[i]))
                        return npu_err_set(err, -EBADMSG, "%s: trailing bytes after the JSON at byte %zu", name, i);
        if (!json_object_is_type(root, json_type_object))
                return npu_err_set(err, -EBADMSG, "%s: a JSON %s, not an object", name, jtype(root));
        *ret = TAKE_PTR(root);
        return 0;
}

static int load_json_object(const char *path, json_object **ret, struct npu_err *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_small_file(path, HF_MAX_JSON, &text, &len, err);

        if (r < 0)
                return r;
        const char *slash = strrchr(path, '/');
        return parse_json_object(text, len, slash ? slash + 1 : path, ret, err);
}

/* ---- config.json ---- */

static json_object *cfg_key(json_object *root, const char *key)
{
        json_object *v = NULL;

        if (!json_object_object_get_ex(root, key, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        return v;
}

/* A positive integer; absent keys keep *ret unless required. */
static int cfg_uint(json_object *root, const char *name, const char *key, bool required, uint32_t *ret,
                    struct npu_err *err)
{
        json_object *v = cfg_key(root, key);

        if (!v) {
                if (required)
                        return npu_err_set(err, -EINVAL, "%s: '%s' is missing", name, key);
                return 0;
        }
        if (!json_object_is_type(v, json_type_int))
                return npu_err_set(err, -EINVAL, "%s: '%s' must be an integer, not a %s", name, key, jtype(v));
        int64_t x = json_object_get_int64(v);
        if (x <= 0 || x > HF_MAX_DIM)
                return npu_err_set(err, -EINVAL, "%s: '%s' = %lld is out of range (1..%u)", name, key, (long long)x,
                                   HF_MAX_DIM);
        *ret = (uint32_t)x;
        return 0;
}

/* A positive finite number, integer or not. */
static int cfg_float(json_object *root, const char *name, const char *key, bool required, float *ret,
                     struct npu_err *err)
{
        json_object *v = cfg_key(root, key);

        if (!v) {
                if (required)
                        return npu_err_set(err, -EINVAL, "%s: '%s' is missing", name, key);
                return 0;
        }
        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
                return npu_err_set(err, -EINVAL, "%s: '%s' must be a number, not a %s", name, key, jtype(v));
        double x = json_object_get_double(v);
        if (!isfinite(x) || !(x > 0) || x > 1e30)
                return npu_err_set(err, -EINVAL, "%s: '%s' = %g is out of range", name, key, x);
        *ret = (float)x;
        return 0;
}

static int cfg_bool(json_object *root, const char *name, const char *key, bool *ret, struct npu_err *err)
{
        json_object *v = cfg_key(root, key);

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_boolean))
                return npu_err_set(err, -EINVAL, "%s: '%s' must be true or false, not a %s", name, key, jtype(v));
        *ret = json_object_get_boolean(v);
        return 0;
}

/* Optional string key that, when present, must equal want. */
static int cfg_expect_str(json_object *root, const char *name, const char *key, const char *want,
                          struct npu_err *err)
{
        json_object *v = cfg_key(root, key);

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return npu_err_set(err, -EINVAL, "%s: '%s' must be a string, not a %s", name, key, jtype(v));
        if (strcmp(json_object_get_string(v), want) != 0)
                return npu_err_set(err, -EOPNOTSUPP, "%s: '%s' is '%.32s'; only '%s' is supported", name, key,
                                   json_object_get_string(v), want);
        return 0;
}

static int cfg_check(json_object *root, const char *name, const struct hf_config *c, struct npu_err *err)
{
        uint32_t head_dim;
        int r;

        if (c->hidden_size % c->n_heads)
                return npu_err_set(err, -EINVAL, "%s: hidden_size %u is not a multiple of num_attention_heads %u",
                                   name, c->hidden_size, c->n_heads);
        head_dim = c->hidden_size / c->n_heads;
        if (head_dim % 2)
                return npu_err_set(err, -EINVAL, "%s: head dimension %u (hidden_size / num_attention_heads) is odd",
                                   name, head_dim);
        if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
                return npu_err_set(err, -EINVAL, "%s: num_key_value_heads %u does not divide num_attention_heads %u",
                                   name, c->n_kv_heads, c->n_heads);
        uint32_t hd = head_dim;
        r = cfg_uint(root, name, "head_dim", false, &hd, err);
        if (r < 0)
                return r;
        if (hd != head_dim)
                return npu_err_set(err, -EOPNOTSUPP, "%s: head_dim %u differs from hidden_size / num_attention_heads = %u",
                                   name, hd, head_dim);
        if (cfg_key(root, "rope_scaling"))
                return npu_err_set(err, -EOPNOTSUPP, "%s: rope_scaling is not supported", name);
        r = cfg_expect_str(root, name, "model_type", "llama", err);
        if (r < 0)
                return r;
        return cfg_expect_str(root, name, "hidden_act", "silu", err);
}

int hf_config_parse(const char *text, size_t len, const char *name, struct hf_config *ret, struct npu_err *err)
{
        _cleanup_(json_object_putp) json_object *root = NULL;
        struct hf_config c = { .rope_theta = 10000.0f };
        int r;

        r = parse_json_object(text, len, name, &root, err);
        if (r < 0)
                return r;
        if ((r = cfg_uint(root, name, "hidden_size", true, &c.hidden_size, err)) < 0 ||
            (r = cfg_uint(root, name, "num_hidden_layers", true, &c.n_layers, err)) < 0 ||
            (r = cfg_uint(root, name, "num_attention_heads", true, &c.n_heads, err)) < 0 ||
            (r = cfg_uint(root, name, "intermediate_size", true, &c.ffn_size, err)) < 0 ||
            (r = cfg_uint(root, name, "max_position_embeddings", true, &c.n_ctx, err)) < 0 ||
            (r = cfg_uint(root, name, "vocab_size", true, &c.vocab_size, err)) < 0 ||
            (r = cfg_float(root, name, "rms_norm_eps", true, &c.rms_eps, err)) < 0 ||
            (r = cfg_float(root, name, "rope_theta", false, &c.rope_theta, err)) < 0 ||
            (r = cfg_bool(root, name, "tie_word_embeddings", &c.tie_embeddings, err)) < 0)
                return r;
        c.n_kv_heads = c.n_heads;
        r = cfg_uint(root, name, "num_key_value_heads", false, &c.n_kv_heads, err);
        if (r < 0)
                return r;
        if (c.rms_eps > 1)
                return npu_err_set(err, -EINVAL, "%s: 'rms_norm_eps' = %g is out of range", name, c.rms_eps);
        r = cfg_check(root, name, &c, err);
        if (r < 0)
                return r;
        *ret = c;
        return 0;
}

int hf_config_load(const char *path, struct hf_config *ret, struct npu_err *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_small_file(path, HF_MAX_JSON, &text, &len, err);

        if (r < 0)
                return r;
        const char *slash = strrchr(path, '/');
        return hf_config_parse(text, len, slash ? slash + 1 : path, ret, err);
}

/* ---- the model directory: shards and tokenizer ---- */

struct hf_dir {
        const char *path;
        struct hf_config cfg;
        struct safetensors **shards;
        size_t n_shards;
        struct npu_vocab *vocab;
};

static void hf_dir_done(struct hf_dir *d)
{
        for (size_t i = 0; i < d->n_shards; i++)
                safetensors_free(d->shards[i]);
        free(d->shards);
        vocab_free(d->vocab);
}

static int join_path(const char *dir, const char *name, char **ret)
{
        return asprintf(ret, "%s/%s", dir, name) < 0 ? -ENOMEM : 0;
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
        r = join_path(d->path, file, &path);
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

        r = load_json_object(index_path, &root, err);
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
        int r = join_path(d->path, "model.safetensors.index.json", &index);

        if (r < 0)
                return r;
        if (access(index, F_OK) == 0)
                r = open_indexed_shards(d, index, err);
        else
                r = open_globbed_shards(d, err);
        return r < 0 ? r : check_duplicates(d, err);
}

/* tokenizer.model, padded with unused [PADn] pieces up to vocab_size as llama.cpp does. */
static int load_vocab(struct hf_dir *d, struct npu_err *err)
{
        _cleanup_free_ char *path = NULL;
        int r = join_path(d->path, "tokenizer.model", &path);

        if (r < 0)
                return r;
        if (access(path, F_OK) < 0)
                return npu_err_set(err, -ENOENT, "%s: no tokenizer.model (tokenizer.json alone is not supported)",
                                   d->path);
        r = vocab_from_spm_file(path, &d->vocab, err);
        if (r < 0)
                return r;
        if ((uint32_t)d->vocab->n > d->cfg.vocab_size)
                return npu_err_set(err, -EINVAL, "tokenizer.model has %d pieces, more than config.json's vocab_size %u",
                                   d->vocab->n, d->cfg.vocab_size);
        return 0;
}

/* ---- what to write ---- */

enum hf_kind {
        HF_VECTOR,       /* F32 always */
        HF_MATRIX,
        HF_MATRIX_ROPE,  /* rows permuted from rotate-half to interleaved pairs */
};

struct hf_item {
        char gguf_name[64];
        const struct st_tensor *t;
        enum hf_kind kind;
        int64_t rows, cols;
        uint32_t head_dim;
};

struct hf_plan {
        struct hf_item *items;
        size_t n, cap;
};

static void shape_str(const struct st_tensor *t, char *buf, size_t size)
{
        size_t off = (size_t)snprintf(buf, size, "[");
        for (uint32_t i = 0; i < t->n_dims && off < size; i++)
                off += (size_t)snprintf(buf + off, size - off, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (off < size)
                snprintf(buf + off, size - off, "]");
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
        if (p->n == p->cap) {
                size_t cap = MAX(32u, p->cap * 2);
                struct hf_item *v = realloc(p->items, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                p->items = v;
                p->cap = cap;
        }
        struct hf_item *it = &p->items[p->n++];
        *it = (struct hf_item) { .t = t, .kind = kind, .rows = rows, .cols = cols, .head_dim = head_dim };
        snprintf(it->gguf_name, sizeof(it->gguf_name), "%s", gguf_name);
        return 0;
}

static int plan_layer(struct hf_plan *p, const struct hf_dir *d, uint32_t l, struct npu_err *err)
{
        const struct hf_config *c = &d->cfg;
        int64_t dim = c->hidden_size, hd = c->hidden_size / c->n_heads, kv = hd * c->n_kv_heads;
        const struct {
                const char *hf, *gguf;
                enum hf_kind kind;
                int64_t rows, cols;
        } map[] = {
                { "input_layernorm", "attn_norm", HF_VECTOR, 1, dim },
                { "self_attn.q_proj", "attn_q", HF_MATRIX_ROPE, dim, dim },
                { "self_attn.k_proj", "attn_k", HF_MATRIX_ROPE, kv, dim },
                { "self_attn.v_proj", "attn_v", HF_MATRIX, kv, dim },
                { "self_attn.o_proj", "attn_output", HF_MATRIX, dim, dim },
                { "post_attention_layernorm", "ffn_norm", HF_VECTOR, 1, dim },
                { "mlp.gate_proj", "ffn_gate", HF_MATRIX, c->ffn_size, dim },
                { "mlp.up_proj", "ffn_up", HF_MATRIX, c->ffn_size, dim },
                { "mlp.down_proj", "ffn_down", HF_MATRIX, dim, c->ffn_size },
        };
        char hf_name[128], gguf_name[64];

        for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
                snprintf(hf_name, sizeof(hf_name), "model.layers.%u.%s.weight", l, map[i].hf);
                snprintf(gguf_name, sizeof(gguf_name), "blk.%u.%s.weight", l, map[i].gguf);
                int r = plan_add(p, d, hf_name, gguf_name, map[i].kind, map[i].rows, map[i].cols, (uint32_t)hd, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Names this converter understands; anything else (biases, other architectures) is an error. */
static bool known_tensor(const struct hf_config *c, const char *name)
{
        static const char *const top[] = { "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight" };
        static const char *const layer[] = {
                "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
                "self_attn.rotary_emb.inv_freq",
        };
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
        return false;
}

static int check_known(const struct hf_dir *d, struct npu_err *err)
{
        for (size_t i = 0; i < d->n_shards; i++)
                for (size_t k = 0; k < d->shards[i]->n_tensors; k++)
                        if (!known_tensor(&d->cfg, d->shards[i]->tensors[k].name))
                                return npu_err_set(err, -EINVAL,
                                                   "tensor '%.64s' in %.64s is not a Llama weight (or its layer is past num_hidden_layers %u)",
                                                   d->shards[i]->tensors[k].name, d->shards[i]->name,
                                                   d->cfg.n_layers);
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
        int r = 0;

        r |= gguf_writer_add_str(w, "general.architecture", "llama");
        r |= gguf_writer_add_str(w, "general.name", name);
        r |= gguf_writer_add_u32(w, "general.file_type", out_type == GGML_TYPE_F16 ? 1 : 0);
        r |= gguf_writer_add_u32(w, "llama.context_length", c->n_ctx);
        r |= gguf_writer_add_u32(w, "llama.embedding_length", c->hidden_size);
        r |= gguf_writer_add_u32(w, "llama.block_count", c->n_layers);
        r |= gguf_writer_add_u32(w, "llama.feed_forward_length", c->ffn_size);
        r |= gguf_writer_add_u32(w, "llama.rope.dimension_count", c->hidden_size / c->n_heads);
        r |= gguf_writer_add_u32(w, "llama.attention.head_count", c->n_heads);
        r |= gguf_writer_add_u32(w, "llama.attention.head_count_kv", c->n_kv_heads);
        r |= gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", c->rms_eps);
        r |= gguf_writer_add_f32(w, "llama.rope.freq_base", c->rope_theta);
        return r < 0 ? -ENOMEM : 0;
}

static int add_vocab(struct gguf_writer *w, const struct npu_vocab *v, uint32_t n_total)
{
        _cleanup_free_ const char **pieces = calloc(n_total, sizeof(*pieces));
        _cleanup_free_ float *scores = calloc(n_total, sizeof(*scores));
        _cleanup_free_ int32_t *types = calloc(n_total, sizeof(*types));
        char **pads = NULL;
        uint32_t n_pad = n_total - (uint32_t)v->n;
        int r = 0;

        if (!pieces || !scores || !types)
                return -ENOMEM;
        if (n_pad > 0 && !(pads = calloc(n_pad, sizeof(*pads))))
                return -ENOMEM;
        for (uint32_t i = 0; i < n_total; i++) {
                if (i < (uint32_t)v->n) {
                        pieces[i] = v->tokens[i].piece;
                        scores[i] = v->tokens[i].score;
                        types[i] = v->tokens[i].type;
                        continue;
                }
                if (asprintf(&pads[i - v->n], "[PAD%u]", i) < 0) {
                        pads[i - v->n] = NULL;
                        r = -ENOMEM;
                        break;
                }
                pieces[i] = pads[i - v->n];
                scores[i] = -1000.0f;
                types[i] = VOCAB_TOKEN_UNUSED;
        }
        r |= gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
        if (r >= 0)
                r |= gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", pieces, n_total);
        free_strv(pads, n_pad);
        r |= gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, n_total);
        r |= gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n_total);
        if (v->bos >= 0)
                r |= gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
        if (v->eos >= 0)
                r |= gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
        if (v->unk >= 0)
                r |= gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk);
        if (v->pad >= 0)
                r |= gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->pad);
        r |= gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos);
        r |= gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", v->add_eos);
        r |= gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", v->add_space_prefix);
        return r < 0 ? -ENOMEM : 0;
}

static enum ggml_type item_type(const struct hf_item *it, enum ggml_type out_type)
{
        return it->kind == HF_VECTOR ? GGML_TYPE_F32 : out_type;
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
                r = add_vocab(w, d->vocab, d->cfg.vocab_size);
        for (size_t i = 0; i < p->n && r >= 0; i++) {
                const struct hf_item *it = &p->items[i];
                int64_t ne[2] = { it->cols, it->rows };
                r = gguf_writer_add_tensor(w, it->gguf_name, item_type(it, out_type), it->kind == HF_VECTOR ? 1 : 2,
                                           ne);
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
        if ((r = join_path(dir, "config.json", &cfg_path)) < 0 || (r = dir_base_name(dir, &name)) < 0)
                return r;
        if (asprintf(&tmp, "%s.tmp", out_gguf) < 0) {
                tmp = NULL;
                return -ENOMEM;
        }
        r = hf_config_load(cfg_path, &d.cfg, err);
        if (r >= 0)
                r = open_shards(&d, err);
        if (r >= 0)
                r = load_vocab(&d, err);
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
        hf_dir_done(&d);
        return r;
}
