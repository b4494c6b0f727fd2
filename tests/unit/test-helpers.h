/* SPDX-License-Identifier: MIT */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util.h"

#ifndef SHARED_DIR
#error "SHARED_DIR must point at the shared test data"
#endif

#define TINY_MODEL SHARED_DIR "/models/aidreams260K-f32.gguf"
#define LLAMA_SPM SHARED_DIR "/tokenizer/llama2-tokenizer.model"
#define LLAMA_GGUF_VOCAB SHARED_DIR "/tokenizer/ggml-vocab-llama-spm.gguf"
#define CALIB_TEXT SHARED_DIR "/data/aidreams-calib.txt"

static inline uint64_t test_rng(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}
