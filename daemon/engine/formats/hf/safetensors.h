/* SPDX-License-Identifier: MIT */
/*
 * Reader for Hugging Face .safetensors files over mmap:
 *   8 bytes   little-endian length N of the header
 *   N bytes   JSON object: "name": { "dtype": "F32", "shape": [r, c], "data_offsets": [b, e] },
 *             plus an optional "__metadata__" entry (skipped)
 *   the rest  the data section; offsets are relative to its start
 *
 * Every field is checked before use: the header length against the file and a
 * cap, the JSON types of every entry, shapes against overflow, each tensor's
 * byte size against its dtype and shape, its offsets against the data section,
 * and no two tensors may overlap. Only F32, F16 and BF16 are accepted.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "util.h"

#define SAFETENSORS_MAX_HEADER (100u << 20)
#define SAFETENSORS_MAX_DIMS 4

struct st_tensor {
        char *name;
        enum ggml_type type;    /* GGML_TYPE_F32, GGML_TYPE_F16 or GGML_TYPE_BF16 */
        uint32_t n_dims;
        int64_t shape[SAFETENSORS_MAX_DIMS]; /* row-major, shape[0] outermost, as in the file */
        uint64_t n_elements;
        uint64_t begin, end;    /* byte offsets into the data section, [begin, end) */
        const void *data;       /* data section + begin */
};

struct safetensors {
        char *name;             /* the file's base name, for messages */
        void *map;
        size_t map_size;
        bool owns_map;
        const uint8_t *data;    /* start of the data section */
        uint64_t data_size;
        size_t n_tensors;
        struct st_tensor *tensors; /* in the order of their offsets */
};

/* Map and parse a file. */
int safetensors_open(const char *path, struct safetensors **ret, struct npu_err *err);
/* Parse an in-memory image (not copied; must outlive the result). name is used in messages. */
int safetensors_parse(const void *buf, size_t size, const char *name, struct safetensors **ret,
                      struct npu_err *err);
void safetensors_free(struct safetensors *st);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct safetensors *, safetensors_free);

const struct st_tensor *safetensors_find(const struct safetensors *st, const char *name);

/* Bytes per element of a dtype this reader accepts; 0 for others. */
size_t st_type_size(enum ggml_type t);

/* Convert n elements starting at element first to f32; the range must lie inside the tensor. */
int st_tensor_read_f32(const struct st_tensor *t, uint64_t first, uint64_t n, float *out);
