/* SPDX-License-Identifier: MIT */
/* config.json of LlamaForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM: read and checked. */
#include <math.h>

#include "hf_convert.h"
#include "hf_json.h"

#define HF_MAX_DIM (1u << 30)

struct hf_arch {
        const char *class_name; /* architectures[0] */
        const char *model_type;
        enum npu_arch arch;
};

static const struct hf_arch hf_archs[] = {
        { "LlamaForCausalLM", "llama", NPU_ARCH_LLAMA },
        { "Qwen2ForCausalLM", "qwen2", NPU_ARCH_QWEN2 },
        { "Qwen3ForCausalLM", "qwen3", NPU_ARCH_QWEN3 },
};

/* A positive integer; absent keys keep *ret unless required. */
static int cfg_uint(json_object *root, const char *name, const char *key, bool required, uint32_t *ret,
                    struct npu_err *err)
{
        json_object *v = hf_json_get(root, key);

        if (!v) {
                if (required)
                        return npu_err_set(err, -EINVAL, "%s: '%s' is missing", name, key);
                return 0;
        }
        if (!json_object_is_type(v, json_type_int))
                return npu_err_set(err, -EINVAL, "%s: '%s' must be an integer, not a %s", name, key, hf_json_type(v));
        int64_t x = json_object_get_int64(v);
        if (x <= 0 || x > HF_MAX_DIM)
                return npu_err_set(err, -EINVAL, "%s: '%s' = %lld is out of range (1..%u)", name, key, (long long)x,
                                   HF_MAX_DIM);
        *ret = (uint32_t)x;
        return 0;
}

/* A positive finite number, integer or not. */
static int cfg_float_in(json_object *root, const char *name, const char *where, const char *key, bool required,
                        float *ret, struct npu_err *err)
{
        json_object *v = hf_json_get(root, key);

        if (!v) {
                if (required)
                        return npu_err_set(err, -EINVAL, "%s: '%s%s' is missing", name, where, key);
                return 0;
        }
        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
                return npu_err_set(err, -EINVAL, "%s: '%s%s' must be a number, not a %s", name, where, key,
                                   hf_json_type(v));
        double x = json_object_get_double(v);
        if (!isfinite(x) || !(x > 0) || x > 1e30)
                return npu_err_set(err, -EINVAL, "%s: '%s%s' = %g is out of range", name, where, key, x);
        *ret = (float)x;
        return 0;
}

static int cfg_float(json_object *root, const char *name, const char *key, bool required, float *ret,
                     struct npu_err *err)
{
        return cfg_float_in(root, name, "", key, required, ret, err);
}

static int cfg_bool(json_object *root, const char *name, const char *key, bool *ret, struct npu_err *err)
{
        json_object *v = hf_json_get(root, key);

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_boolean))
                return npu_err_set(err, -EINVAL, "%s: '%s' must be true or false, not a %s", name, key,
                                   hf_json_type(v));
        *ret = json_object_get_boolean(v);
        return 0;
}

static int cfg_str(json_object *root, const char *name, const char *key, const char **ret, struct npu_err *err)
{
        json_object *v = hf_json_get(root, key);

        *ret = NULL;
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return npu_err_set(err, -EINVAL, "%s: '%s' must be a string, not a %s", name, key, hf_json_type(v));
        *ret = json_object_get_string(v);
        return 0;
}

/* A token id, or the first of a list of them (generation's several ends); -1 when absent. */
static int cfg_token_id(json_object *root, const char *name, const char *key, int32_t *ret, struct npu_err *err)
{
        json_object *v = hf_json_get(root, key);

        *ret = -1;
        if (v && json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0)
                v = json_object_array_get_idx(v, 0);
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
            json_object_get_int64(v) >= HF_MAX_DIM)
                return npu_err_set(err, -EINVAL, "%s: '%s' is not a token id", name, key);
        *ret = (int32_t)json_object_get_int64(v);
        return 0;
}

/* architectures[0] (or model_type alone) names the family; both must agree when both are there. */
static int cfg_arch(json_object *root, const char *name, struct hf_config *c, struct npu_err *err)
{
        json_object *a = hf_json_get(root, "architectures");
        const char *class_name = NULL, *model_type;
        const struct hf_arch *found = NULL;
        int r;

        if (a && json_object_is_type(a, json_type_array) && json_object_array_length(a) > 0)
                a = json_object_array_get_idx(a, 0);
        if (a && !json_object_is_type(a, json_type_string))
                return npu_err_set(err, -EINVAL, "%s: 'architectures' must name a model class", name);
        class_name = a ? json_object_get_string(a) : NULL;
        r = cfg_str(root, name, "model_type", &model_type, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ARRAY_SIZE(hf_archs); i++)
                if ((class_name && strcmp(class_name, hf_archs[i].class_name) == 0) ||
                    (!class_name && model_type && strcmp(model_type, hf_archs[i].model_type) == 0))
                        found = &hf_archs[i];
        if (!found && class_name)
                return npu_err_set(err, -EOPNOTSUPP, "%s: 'architectures' is '%.40s'; LlamaForCausalLM, "
                                                     "Qwen2ForCausalLM and Qwen3ForCausalLM are supported",
                                   name, class_name);
        if (!found && model_type)
                return npu_err_set(err, -EOPNOTSUPP, "%s: 'model_type' is '%.32s'; only 'llama', 'qwen2' and "
                                                     "'qwen3' are supported", name, model_type);
        if (!found)
                found = &hf_archs[0]; /* an old Llama config names neither */
        if (model_type && strcmp(model_type, found->model_type) != 0)
                return npu_err_set(err, -EOPNOTSUPP, "%s: 'model_type' is '%.32s'; only '%s' goes with %s", name,
                                   model_type, found->model_type, found->class_name);
        c->arch = found->arch;
        return 0;
}

/* rope_scaling: null, default, linear, or Llama 3.1's llama3; anything else is refused by name. */
static int cfg_rope_scaling(json_object *root, const char *name, struct hf_config *c, struct npu_err *err)
{
        json_object *s = hf_json_get(root, "rope_scaling"), *t;
        const char *type;
        int r;

        if (!s)
                return 0;
        if (!json_object_is_type(s, json_type_object))
                return npu_err_set(err, -EINVAL, "%s: 'rope_scaling' must be an object, not a %s", name,
                                   hf_json_type(s));
        t = hf_json_get(s, "rope_type");
        if (!t)
                t = hf_json_get(s, "type");
        if (!t || !json_object_is_type(t, json_type_string))
                return npu_err_set(err, -EINVAL, "%s: rope_scaling has no rope_type", name);
        type = json_object_get_string(t);
        if (strcmp(type, "default") == 0)
                return 0;
        if (strcmp(type, "linear") == 0) {
                c->scaling = HF_ROPE_LINEAR;
                return cfg_float_in(s, name, "rope_scaling.", "factor", true, &c->linear_factor, err);
        }
        if (strcmp(type, "llama3") == 0) {
                if (c->arch != NPU_ARCH_LLAMA)
                        return npu_err_set(err, -EOPNOTSUPP, "%s: rope_scaling llama3 is not supported outside "
                                                             "LlamaForCausalLM", name);
                c->scaling = HF_ROPE_LLAMA3;
                if ((r = cfg_float_in(s, name, "rope_scaling.", "factor", true, &c->llama3.factor, err)) < 0 ||
                    (r = cfg_float_in(s, name, "rope_scaling.", "low_freq_factor", true, &c->llama3.low_freq_factor,
                                      err)) < 0 ||
                    (r = cfg_float_in(s, name, "rope_scaling.", "high_freq_factor", true,
                                      &c->llama3.high_freq_factor, err)) < 0 ||
                    (r = cfg_float_in(s, name, "rope_scaling.", "original_max_position_embeddings", true,
                                      &c->llama3.original_context, err)) < 0)
                        return r;
                return 0;
        }
        return npu_err_set(err, -EOPNOTSUPP, "%s: rope_scaling type '%.32s' is not supported (linear and llama3 are)",
                           name, type);
}

/* Switches that would add what the engine does not compute. */
static int cfg_refuse_true(json_object *root, const char *name, const char *key, const char *why,
                           struct npu_err *err)
{
        bool v = false;
        int r = cfg_bool(root, name, key, &v, err);
        if (r < 0)
                return r;
        if (v)
                return npu_err_set(err, -EOPNOTSUPP, "%s: '%s' true is not supported (%s)", name, key, why);
        return 0;
}

static int cfg_check(json_object *root, const char *name, struct hf_config *c, struct npu_err *err)
{
        const char *act;
        int r;

        if (c->hidden_size % c->n_heads && !hf_json_get(root, "head_dim"))
                return npu_err_set(err, -EINVAL, "%s: hidden_size %u is not a multiple of num_attention_heads %u",
                                   name, c->hidden_size, c->n_heads);
        c->head_dim = c->hidden_size / c->n_heads;
        r = cfg_uint(root, name, "head_dim", false, &c->head_dim, err);
        if (r < 0)
                return r;
        if (c->head_dim % 2)
                return npu_err_set(err, -EINVAL, "%s: head dimension %u is odd", name, c->head_dim);
        if ((uint64_t)c->head_dim * c->n_heads > (1u << 24))
                return npu_err_set(err, -EINVAL, "%s: %u heads of %u are too wide", name, c->n_heads, c->head_dim);
        if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
                return npu_err_set(err, -EINVAL, "%s: num_key_value_heads %u does not divide num_attention_heads %u",
                                   name, c->n_kv_heads, c->n_heads);
        r = cfg_rope_scaling(root, name, c, err);
        if (r < 0)
                return r;
        if ((r = cfg_refuse_true(root, name, "attention_bias",
                                 "biases on the attention projections",
                                 err)) < 0 ||
            (r = cfg_refuse_true(root, name, "mlp_bias", "biases on the MLP", err)) < 0 ||
            (r = cfg_refuse_true(root, name, "use_sliding_window", "sliding-window attention", err)) < 0)
                return r;
        r = cfg_str(root, name, "hidden_act", &act, err);
        if (r < 0)
                return r;
        if (act && strcmp(act, "silu") != 0)
                return npu_err_set(err, -EOPNOTSUPP, "%s: 'hidden_act' is '%.32s'; only 'silu' is supported", name,
                                   act);
        return 0;
}

int hf_config_parse(const char *text, size_t len, const char *name, struct hf_config *ret, struct npu_err *err)
{
        _cleanup_(json_object_putp) json_object *root = NULL;
        struct hf_config c = { .rope_theta = 10000.0f };
        int r;

        r = hf_json_parse_object(text, len, name, &root, err);
        if (r < 0)
                return r;
        if ((r = cfg_arch(root, name, &c, err)) < 0 ||
            (r = cfg_uint(root, name, "hidden_size", true, &c.hidden_size, err)) < 0 ||
            (r = cfg_uint(root, name, "num_hidden_layers", true, &c.n_layers, err)) < 0 ||
            (r = cfg_uint(root, name, "num_attention_heads", true, &c.n_heads, err)) < 0 ||
            (r = cfg_uint(root, name, "intermediate_size", true, &c.ffn_size, err)) < 0 ||
            (r = cfg_uint(root, name, "max_position_embeddings", true, &c.n_ctx, err)) < 0 ||
            (r = cfg_uint(root, name, "vocab_size", true, &c.vocab_size, err)) < 0 ||
            (r = cfg_float(root, name, "rms_norm_eps", true, &c.rms_eps, err)) < 0 ||
            (r = cfg_float(root, name, "rope_theta", false, &c.rope_theta, err)) < 0 ||
            (r = cfg_bool(root, name, "tie_word_embeddings", &c.tie_embeddings, err)) < 0 ||
            (r = cfg_token_id(root, name, "bos_token_id", &c.bos_id, err)) < 0 ||
            (r = cfg_token_id(root, name, "eos_token_id", &c.eos_id, err)) < 0)
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
        int r = hf_read_file(path, HF_MAX_JSON, &text, &len, err);

        if (r < 0)
                return r;
        const char *slash = strrchr(path, '/');
        return hf_config_parse(text, len, slash ? slash + 1 : path, ret, err);
}
