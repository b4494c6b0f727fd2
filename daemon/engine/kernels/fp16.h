/* SPDX-License-Identifier: MIT */
/* IEEE half and bfloat16 conversions, scalar; the SIMD kernels use F16C. */
#pragma once

#include <stdint.h>
#include <string.h>

typedef uint16_t npu_f16;
typedef uint16_t npu_bf16;

static inline float f32_from_bits(uint32_t u)
{
        float f;
        memcpy(&f, &u, sizeof(f));
        return f;
}

static inline uint32_t f32_to_bits(float f)
{
        uint32_t u;
        memcpy(&u, &f, sizeof(u));
        return u;
}

static inline float f16_to_f32(npu_f16 h)
{
        uint32_t sign = (uint32_t)(h & 0x8000) << 16;
        uint32_t exp = (h >> 10) & 0x1f;
        uint32_t mant = h & 0x3ff;

        if (exp == 0x1f)
                return f32_from_bits(sign | 0x7f800000 | (mant << 13));
        if (exp == 0) {
                if (mant == 0)
                        return f32_from_bits(sign);
                /* subnormal: value = mant * 2^-24 */
                float v = (float)mant * (1.0f / 16777216.0f);
                return sign ? -v : v;
        }
        return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Round to nearest even, as vcvtps2ph with rounding mode 0 does. */
static inline npu_f16 f32_to_f16(float f)
{
        uint32_t x = f32_to_bits(f);
        uint32_t sign = (x >> 16) & 0x8000;
        uint32_t absx = x & 0x7fffffff;

        if (absx >= 0x7f800000) /* inf or nan */
                return (npu_f16)(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0));
        if (absx >= 0x477ff000) /* rounds to >= 65520: overflow to inf */
                return (npu_f16)(sign | 0x7c00);
        if (absx < 0x38800000) { /* below the smallest normal half: subnormal or zero */
                float a = f32_from_bits(absx);
                /* adding 0.5 moves the value into float's bottom bits with RNE */
                float r = a + 0.5f;
                return (npu_f16)(sign | (f32_to_bits(r) - 0x3f000000));
        }
        uint32_t mant_odd = (absx >> 13) & 1;
        absx += 0xc8000fff + mant_odd; /* rebias exponent and round */
        return (npu_f16)(sign | (absx >> 13));
}

static inline float bf16_to_f32(npu_bf16 h)
{
        return f32_from_bits((uint32_t)h << 16);
}

static inline npu_bf16 f32_to_bf16(float f)
{
        uint32_t x = f32_to_bits(f);
        if ((x & 0x7fffffff) > 0x7f800000)
                return (npu_bf16)((x >> 16) | 0x40);
        x += 0x7fff + ((x >> 16) & 1);
        return (npu_bf16)(x >> 16);
}
