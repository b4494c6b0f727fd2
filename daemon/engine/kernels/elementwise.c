/* SPDX-License-Identifier: MIT */
/* Element-wise operations of the Llama layer, in plain C the compiler vectorizes. */
#include <math.h>

#include "kernels.h"

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
