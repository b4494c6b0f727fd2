/* SPDX-License-Identifier: MIT */
/* Element-wise operations of the Llama layer, in plain C the compiler vectorizes. */
#include <math.h>

#include "kernels.h"

void rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps)
{
        double ss = 0;
        for (int64_t i = 0; i < n; i++)
                ss += (double)x[i] * x[i];
        float scale = 1.0f / sqrtf((float)(ss / n) + eps);
        for (int64_t i = 0; i < n; i++)
                out[i] = (x[i] * scale) * weight[i];
}

/* Rotates adjacent pairs (2i, 2i+1) by pos * base^(-2i/head_dim), as llama.cpp's normal rope. */
void rope_apply(float *v, int32_t n_heads, int32_t head_dim, int32_t pos, float base)
{
        const float theta_scale = powf(base, -2.0f / (float)head_dim);
        float theta = (float)pos;
        float cs[head_dim / 2], sn[head_dim / 2];

        for (int32_t i = 0; i < head_dim / 2; i++) {
                cs[i] = cosf(theta);
                sn[i] = sinf(theta);
                theta *= theta_scale;
        }
        for (int32_t h = 0; h < n_heads; h++) {
                float *p = v + (int64_t)h * head_dim;
                for (int32_t i = 0; i < head_dim / 2; i++) {
                        float a = p[2 * i], b = p[2 * i + 1];
                        p[2 * i] = a * cs[i] - b * sn[i];
                        p[2 * i + 1] = a * sn[i] + b * cs[i];
                }
        }
}

void softmax_inplace(float *x, int64_t n)
{
        float max = -INFINITY;
        double sum = 0;

        for (int64_t i = 0; i < n; i++)
                max = fmaxf(max, x[i]);
        for (int64_t i = 0; i < n; i++) {
                x[i] = expf(x[i] - max);
                sum += x[i];
        }
        float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < n; i++)
                x[i] *= inv;
}

void silu_mul(float *gate, const float *up, int64_t n)
{
        for (int64_t i = 0; i < n; i++) {
                float g = gate[i];
                gate[i] = g / (1.0f + expf(-g)) * up[i];
        }
}

void vec_add(float *y, const float *x, int64_t n)
{
        for (int64_t i = 0; i < n; i++)
                y[i] += x[i];
}

float vec_dot_f32(const float *a, const float *b, int64_t n)
{
        float s = 0;
        for (int64_t i = 0; i < n; i++)
                s += a[i] * b[i];
        return s;
}
