/* SPDX-License-Identifier: MIT */
/*
 * Llama 3.1's RoPE scaling (Hugging Face config.json rope_scaling type
 * "llama3"): frequencies whose wavelength is longer than the original
 * context / low_freq_factor are divided by factor, those shorter than
 * original context / high_freq_factor are kept, and the ones between blend
 * the two. GGUF has no such scaling type: converters write the divisors as
 * the tensor rope_freqs.weight, which the forward pass applies.
 */
#include <math.h>

#include "model.h"

int rope_llama3_factors(int32_t head_dim, float base, const struct rope_llama3 *s, float *out, struct npu_err *err)
{
        if (head_dim <= 0 || head_dim % 2 || !(base > 1) || !(s->factor >= 1) || !(s->low_freq_factor > 0) ||
            !(s->high_freq_factor > s->low_freq_factor) || !(s->original_context > 0))
                return npu_err_set(err, -EINVAL, "rope_scaling llama3: factor %g, low_freq_factor %g, "
                                                 "high_freq_factor %g, original_max_position_embeddings %g out of range",
                                   s->factor, s->low_freq_factor, s->high_freq_factor, s->original_context);
        const double low_wavelen = s->original_context / s->low_freq_factor;
        const double high_wavelen = s->original_context / s->high_freq_factor;
        for (int32_t i = 0; i < head_dim / 2; i++) {
                double freq = 1.0 / pow(base, 2.0 * i / head_dim), wavelen = 2 * M_PI / freq;
                if (wavelen < high_wavelen) {
                        out[i] = 1.0f;
                } else if (wavelen > low_wavelen) {
                        out[i] = s->factor;
                } else {
                        double smooth = (s->original_context / wavelen - s->low_freq_factor) /
                                        (s->high_freq_factor - s->low_freq_factor);
                        out[i] = (float)(1.0 / ((1.0 - smooth) / s->factor + smooth));
                }
        }
        return 0;
}
