/* SPDX-License-Identifier: MIT */
/*
 * Hyperparameters from GGUF metadata: general.architecture and its <arch>.*
 * keys, as llama.cpp's converter writes them. Every <arch>.* key is either
 * read here or refused by name: a key this engine does not implement changes
 * the model's math, so ignoring it would give wrong text without an error.
 */
#include <math.h>

#include "model.h"

struct arch_def {
        const char *name;
        enum npu_arch arch;
        enum rope_kind rope;
};

static const struct arch_def arch_defs[] = {
        { "llama", NPU_ARCH_LLAMA, ROPE_ADJACENT },
        { "qwen2", NPU_ARCH_QWEN2, ROPE_HALVES },
        { "qwen3", NPU_ARCH_QWEN3, ROPE_HALVES },
};

const char *arch_name(enum npu_arch a)
{
        for (size_t i = 0; i < ARRAY_SIZE(arch_defs); i++)
                if (arch_defs[i].arch == a)
                        return arch_defs[i].name;
        return "unknown";
}

/* The <arch>.* keys this engine reads (the rest of a key after "<arch>."). */
static const char *const known_keys[] = {
        "context_length",
        "embedding_length",
        "block_count",
        "feed_forward_length",
        "vocab_size",
        "attention.head_count",
        "attention.head_count_kv",
        "attention.layer_norm_rms_epsilon",
        "attention.key_length",
        "attention.value_length",
        "rope.freq_base",
        "rope.dimension_count",
        "rope.scaling.type",
        "rope.scaling.factor",
        "rope.scale_linear",
        "rope.scaling.attn_factor",
        /* only yarn reads these two, and yarn is refused: harmless otherwise */
        "rope.scaling.original_context_length",
        "rope.scaling.finetuned",
        /* mixture of experts: accepted only as 0 */
        "expert_count",
        "expert_used_count",
};

static int check_known_keys(const struct gguf *g, const char *arch, struct npu_err *err)
{
        size_t plen = strlen(arch);

        for (uint64_t i = 0; i < g->n_kv; i++) {
                const struct gguf_str *k = &g->kv[i].key;
                if (k->len <= plen + 1 || memcmp(k->s, arch, plen) != 0 || k->s[plen] != '.')
                        continue;
                bool known = false;
                for (size_t j = 0; j < ARRAY_SIZE(known_keys) && !known; j++)
                        known = gguf_str_eq((struct gguf_str) { k->s + plen + 1, k->len - plen - 1 }, known_keys[j]);
                if (!known)
                        return npu_err_set(err, -EOPNOTSUPP, "metadata key '%.*s' is not implemented by this engine",
                                           (int)MIN(k->len, 96u), k->s);
        }
        return 0;
}

static const char *key(char *buf, size_t size, const char *arch, const char *suffix)
{
        snprintf(buf, size, "%s.%s", arch, suffix);
        return buf;
}

/* A required positive integer up to 2^24. */
static int get_dim(const struct gguf *g, const char *arch, const char *suffix, int32_t *ret, struct npu_err *err)
{
        char k[96];
        uint32_t v;
        int r = gguf_get_u32(g, key(k, sizeof(k), arch, suffix), &v, err);

        if (r == -ENOENT)
                return npu_err_set(err, -EINVAL, "required metadata key '%s' is missing", k);
        if (r < 0)
                return r;
        if (v == 0 || v > (1u << 24))
                return npu_err_set(err, -EINVAL, "metadata key '%s' = %u is out of range", k, v);
        *ret = (int32_t)v;
        return 0;
}

/* An optional one: absent keeps *ret. */
static int get_dim_opt(const struct gguf *g, const char *arch, const char *suffix, int32_t *ret, struct npu_err *err)
{
        char k[96];
        return gguf_find_kv(g, key(k, sizeof(k), arch, suffix)) ? get_dim(g, arch, suffix, ret, err) : 0;
}

static int get_float_opt(const struct gguf *g, const char *arch, const char *suffix, float *ret, bool *found,
                         struct npu_err *err)
{
        char k[96];
        int r = gguf_get_f32(g, key(k, sizeof(k), arch, suffix), ret, err);

        if (found)
                *found = r == 0;
        return r == -ENOENT ? 0 : r;
}

static int read_shape(const struct gguf *g, const char *arch, struct npu_hparams *hp, struct npu_err *err)
{
        int32_t key_len = 0, value_len = 0, rope_dims = 0;
        char k[96];
        int r;

        if ((r = get_dim(g, arch, "embedding_length", &hp->dim, err)) < 0 ||
            (r = get_dim(g, arch, "block_count", &hp->n_layers, err)) < 0 ||
            (r = get_dim(g, arch, "attention.head_count", &hp->n_heads, err)) < 0 ||
            (r = get_dim(g, arch, "feed_forward_length", &hp->ffn_dim, err)) < 0 ||
            (r = get_dim(g, arch, "context_length", &hp->n_ctx_train, err)) < 0)
                return r;
        hp->n_kv_heads = hp->n_heads;
        if ((r = get_dim_opt(g, arch, "attention.head_count_kv", &hp->n_kv_heads, err)) < 0 ||
            (r = get_dim_opt(g, arch, "attention.key_length", &key_len, err)) < 0 ||
            (r = get_dim_opt(g, arch, "attention.value_length", &value_len, err)) < 0 ||
            (r = get_dim_opt(g, arch, "rope.dimension_count", &rope_dims, err)) < 0)
                return r;
        if (hp->n_kv_heads > hp->n_heads || hp->n_heads % hp->n_kv_heads)
                return npu_err_set(err, -EINVAL, "%d kv heads do not divide %d heads", hp->n_kv_heads, hp->n_heads);
        if (key_len && value_len && key_len != value_len)
                return npu_err_set(err, -EOPNOTSUPP, "%s.attention.key_length %d differs from value_length %d: not "
                                                     "implemented", arch, key_len, value_len);
        hp->head_dim = key_len ? key_len : value_len;
        if (!hp->head_dim) {
                if (hp->dim % hp->n_heads)
                        return npu_err_set(err, -EINVAL, "embedding length %d is not a multiple of %d heads",
                                           hp->dim, hp->n_heads);
                hp->head_dim = hp->dim / hp->n_heads;
        }
        if (hp->head_dim % 2)
                return npu_err_set(err, -EINVAL, "head dimension %d is odd", hp->head_dim);
        if ((int64_t)hp->n_heads * hp->head_dim > (1 << 24))
                return npu_err_set(err, -EINVAL, "%d heads of %d are too wide", hp->n_heads, hp->head_dim);
        if (rope_dims && rope_dims != hp->head_dim)
                return npu_err_set(err, -EOPNOTSUPP, "partial rope (%s = %d of %d dims) not implemented",
                                   key(k, sizeof(k), arch, "rope.dimension_count"), rope_dims, hp->head_dim);
        uint32_t experts = 0;
        r = gguf_get_u32(g, key(k, sizeof(k), arch, "expert_count"), &experts, err);
        if (r < 0 && r != -ENOENT)
                return r;
        if (experts)
                return npu_err_set(err, -EOPNOTSUPP, "%s = %u: mixtures of experts are not implemented", k, experts);
        return 0;
}

/*
 * RoPE: base, and scaling. GGUF names the scaling type in rope.scaling.type
 * (none, linear, yarn, longrope): linear divides positions by the factor;
 * every other type is refused. Llama 3.1's "llama3" scaling has no type in
 * GGUF: converters write its frequency divisors as rope_freqs.weight.
 */
static int read_rope(const struct gguf *g, const char *arch, struct npu_hparams *hp, struct npu_err *err)
{
        _cleanup_free_ char *type = NULL;
        float factor = 1.0f, attn_factor = 1.0f;
        bool has_factor = false, has_old = false;
        char k[96];
        int r;

        hp->rope_base = 10000.0f;
        hp->rope_freq_scale = 1.0f;
        if ((r = get_float_opt(g, arch, "rope.freq_base", &hp->rope_base, NULL, err)) < 0 ||
            (r = get_float_opt(g, arch, "rope.scaling.factor", &factor, &has_factor, err)) < 0)
                return r;
        if (!has_factor && (r = get_float_opt(g, arch, "rope.scale_linear", &factor, &has_old, err)) < 0)
                return r;
        if ((r = get_float_opt(g, arch, "rope.scaling.attn_factor", &attn_factor, NULL, err)) < 0)
                return r;
        r = gguf_get_str(g, key(k, sizeof(k), arch, "rope.scaling.type"), &type, err);
        if (r < 0 && r != -ENOENT)
                return r;
        if (!(hp->rope_base > 0) || !isfinite(hp->rope_base))
                return npu_err_set(err, -EINVAL, "rope base %g out of range", hp->rope_base);
        if (type && strcmp(type, "none") != 0 && strcmp(type, "linear") != 0)
                return npu_err_set(err, -EOPNOTSUPP, "rope scaling type '%.32s' (%s) is not implemented; "
                                                     "none and linear are", type, k);
        if (attn_factor != 1.0f)
                return npu_err_set(err, -EOPNOTSUPP, "%s.rope.scaling.attn_factor %g is not implemented (only 1)",
                                   arch, attn_factor);
        if (!(factor > 0) || !isfinite(factor) || factor > 1e6f)
                return npu_err_set(err, -EINVAL, "rope scaling factor %g out of range", factor);
        if (type && strcmp(type, "none") == 0) {
                if (factor != 1.0f)
                        return npu_err_set(err, -EINVAL, "rope scaling factor %g with scaling type none", factor);
                return 0;
        }
        /* linear, or a factor without a type (llama.cpp reads that as linear too) */
        hp->rope_freq_scale = 1.0f / factor;
        return 0;
}

int hparams_read(const struct gguf *g, struct npu_hparams *hp, struct npu_err *err)
{
        _cleanup_free_ char *arch = NULL;
        const struct arch_def *def = NULL;
        char k[96];
        int r;

        r = gguf_get_str(g, "general.architecture", &arch, err);
        if (r == -ENOENT)
                return npu_err_set(err, -EINVAL, "general.architecture is missing");
        if (r < 0)
                return r;
        for (size_t i = 0; i < ARRAY_SIZE(arch_defs); i++)
                if (strcmp(arch, arch_defs[i].name) == 0)
                        def = &arch_defs[i];
        if (!def)
                return npu_err_set(err, -EOPNOTSUPP, "architecture '%.32s' is not supported (llama, qwen2 and qwen3 are)",
                                   arch);
        *hp = (struct npu_hparams) { .arch = def->arch, .rope_kind = def->rope };
        if ((r = check_known_keys(g, arch, err)) < 0 || (r = read_shape(g, arch, hp, err)) < 0 ||
            (r = read_rope(g, arch, hp, err)) < 0)
                return r;
        hp->rms_eps = 1e-5f;
        r = gguf_get_f32(g, key(k, sizeof(k), arch, "attention.layer_norm_rms_epsilon"), &hp->rms_eps, err);
        if (r < 0 && r != -ENOENT)
                return r;
        if (!(hp->rms_eps > 0) || hp->rms_eps > 1)
                return npu_err_set(err, -EINVAL, "rms epsilon %g out of range", hp->rms_eps);
        return 0;
}
