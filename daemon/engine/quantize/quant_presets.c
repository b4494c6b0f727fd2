/* SPDX-License-Identifier: MIT */
#include "quant_presets.h"
#include "util.h"

static const struct quant_preset presets[] = {
        { "q4_0", GGML_TYPE_Q4_0, false, 2 },  { "q4_1", GGML_TYPE_Q4_1, false, 3 },
        { "q5_0", GGML_TYPE_Q5_0, false, 8 },  { "q5_1", GGML_TYPE_Q5_1, false, 9 },
        { "q8_0", GGML_TYPE_Q8_0, false, 7 },  { "q2_k", GGML_TYPE_Q2_K, false, 10 },
        { "q3_k", GGML_TYPE_Q3_K, false, 11 }, { "q4_k", GGML_TYPE_Q4_K, false, 14 },
        { "q5_k", GGML_TYPE_Q5_K, false, 16 }, { "q6_k", GGML_TYPE_Q6_K, false, 18 },
        { "q4_k_m", GGML_TYPE_Q4_K, true, 15 }, { "q5_k_m", GGML_TYPE_Q5_K, true, 17 },
};

const struct quant_preset *quant_preset_find(const char *name)
{
        for (size_t i = 0; i < ARRAY_SIZE(presets); i++)
                if (strcmp(presets[i].name, name) == 0)
                        return &presets[i];
        return NULL;
}

const char *quant_preset_names(void)
{
        return "q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k q4_k_m q5_k_m";
}

/* llama.cpp's layers that get more bits in its _M mixes. */
static bool more_bits(int layer, int n_layers)
{
        return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

static enum ggml_type fit_row(enum ggml_type t, int64_t cols)
{
        if (cols % (int64_t)ggml_type_block_elems(t) == 0)
                return t;
        switch (t) {
        case GGML_TYPE_Q2_K:
        case GGML_TYPE_Q3_K: t = GGML_TYPE_Q4_0; break;
        case GGML_TYPE_Q4_K: t = GGML_TYPE_Q5_0; break;
        case GGML_TYPE_Q5_K: t = GGML_TYPE_Q5_1; break;
        case GGML_TYPE_Q6_K: t = GGML_TYPE_Q8_0; break;
        default: break;
        }
        /* rows that no block divides stay in F16 */
        return cols % (int64_t)ggml_type_block_elems(t) == 0 ? t : GGML_TYPE_F16;
}

enum ggml_type quant_preset_type(const struct quant_preset *p, enum quant_tensor t, int layer, int n_layers,
                                 int64_t cols)
{
        enum ggml_type type = p->base;

        if (t == QUANT_TENSOR_OUTPUT && p->base != GGML_TYPE_Q8_0)
                type = GGML_TYPE_Q6_K;
        else if (p->mix_m && (t == QUANT_TENSOR_ATTN_V || t == QUANT_TENSOR_FFN_DOWN) && more_bits(layer, n_layers))
                type = GGML_TYPE_Q6_K;
        return fit_row(type, cols);
}
