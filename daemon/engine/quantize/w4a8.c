/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "w4a8.h"

void w4a8_quantize_row(const float *w, int64_t cols, int group, struct block_q4_0 *out)
{
        for (int64_t g = 0; g < cols / group; g++) {
                const float *wg = w + g * group;
                float amax = 0;
                for (int k = 0; k < group; k++)
                        amax = fmaxf(amax, fabsf(wg[k]));
                const npu_f16 dh = f32_to_f16(amax / 7.0f);
                const float d = f16_to_f32(dh);
                for (int b = 0; b < group / QK4_0; b++) {
                        struct block_q4_0 *blk = &out[g * (group / QK4_0) + b];
                        const float *x = wg + b * QK4_0;
                        blk->d = dh;
                        for (int k = 0; k < 16; k++) {
                                int lo = d > 0 ? (int)lrintf(fminf(fmaxf(x[k] / d, -7.0f), 7.0f)) : 0;
                                int hi = d > 0 ? (int)lrintf(fminf(fmaxf(x[k + 16] / d, -7.0f), 7.0f)) : 0;
                                blk->qs[k] = (uint8_t)((lo + 8) | (hi + 8) << 4);
                        }
                }
        }
}
