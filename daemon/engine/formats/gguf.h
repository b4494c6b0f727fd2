/* SPDX-License-Identifier: MIT */
/*
 * GGUF v2/v3 reader over mmap, and a streaming writer.
 *
 * The reader checks every count, length and offset against the file before it
 * is used: a truncated or hostile file is rejected with a message naming the
 * key, tensor or offset at fault.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

enum gguf_value_type {
        GGUF_TYPE_UINT8 = 0,
        GGUF_TYPE_INT8 = 1,
        GGUF_TYPE_UINT16 = 2,
        GGUF_TYPE_INT16 = 3,
        GGUF_TYPE_UINT32 = 4,
        GGUF_TYPE_INT32 = 5,
        GGUF_TYPE_FLOAT32 = 6,
        GGUF_TYPE_BOOL = 7,
        GGUF_TYPE_STRING = 8,
        GGUF_TYPE_ARRAY = 9,
        GGUF_TYPE_UINT64 = 10,
        GGUF_TYPE_INT64 = 11,
        GGUF_TYPE_FLOAT64 = 12,
        _GGUF_TYPE_MAX,
};

/*
 * Tensor element types, numbered as ggml numbers them. The reader knows the
 * name of every one (for messages) and the layout of those it can read
 * (F32, F16, BF16, I8/I16/I32 and the block types of quant_types.h).
 */
enum ggml_type {
        GGML_TYPE_F32 = 0,
        GGML_TYPE_F16 = 1,
        GGML_TYPE_Q4_0 = 2,
        GGML_TYPE_Q4_1 = 3,
        GGML_TYPE_Q5_0 = 6,
        GGML_TYPE_Q5_1 = 7,
        GGML_TYPE_Q8_0 = 8,
        GGML_TYPE_Q8_1 = 9,
        GGML_TYPE_Q2_K = 10,
        GGML_TYPE_Q3_K = 11,
        GGML_TYPE_Q4_K = 12,
        GGML_TYPE_Q5_K = 13,
        GGML_TYPE_Q6_K = 14,
        GGML_TYPE_Q8_K = 15,
        GGML_TYPE_IQ2_XXS = 16,
        GGML_TYPE_IQ2_XS = 17,
        GGML_TYPE_IQ3_XXS = 18,
        GGML_TYPE_IQ1_S = 19,
        GGML_TYPE_IQ4_NL = 20,
        GGML_TYPE_IQ3_S = 21,
        GGML_TYPE_IQ2_S = 22,
        GGML_TYPE_IQ4_XS = 23,
        GGML_TYPE_I8 = 24,
        GGML_TYPE_I16 = 25,
        GGML_TYPE_I32 = 26,
        GGML_TYPE_I64 = 27,
        GGML_TYPE_F64 = 28,
        GGML_TYPE_IQ1_M = 29,
        GGML_TYPE_BF16 = 30,
        GGML_TYPE_TQ1_0 = 34,
        GGML_TYPE_TQ2_0 = 35,
        GGML_TYPE_MXFP4 = 39,
        _GGML_TYPE_MAX,
};

/* A string inside the mapped file: not NUL terminated. */
struct gguf_str {
        const char *s;
        uint64_t len;
};

struct gguf_kv {
        struct gguf_str key;
        enum gguf_value_type type;
        /* scalars and strings */
        const void *data;
        /* arrays */
        enum gguf_value_type arr_type;
        uint64_t arr_n;
        struct gguf_str *arr_strs; /* for arrays of strings: the parsed entries */
};

struct gguf_tensor {
        struct gguf_str name;
        uint32_t n_dims;
        int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the innermost (row) length */
        enum ggml_type type;
        uint64_t offset; /* relative to the data section */
        uint64_t nbytes;
        const void *data;
};

struct gguf {
        void *map;
        size_t map_size;
        uint32_t version;
        uint32_t alignment;
        uint64_t n_kv;
        struct gguf_kv *kv;
        uint64_t n_tensors;
        struct gguf_tensor *tensors;
        uint64_t data_offset;
};

int gguf_open(const char *path, struct gguf **ret, struct npu_err *err);
/* GGUF_OPEN_HUGEPAGES: read the file into huge-page-backed memory instead of mapping it. */
#define GGUF_OPEN_HUGEPAGES 1u
int gguf_open_flags(const char *path, unsigned flags, struct gguf **ret, struct npu_err *err);
/* Told how far reading the file is: bytes read and the file's size (on the thread that opens it). */
struct gguf_progress {
        void (*fn)(uint64_t done, uint64_t total, void *userdata);
        void *userdata;
};
/* gguf_open_flags, telling progress (may be NULL) as the file is read. */
int gguf_open_progress(const char *path, unsigned flags, const struct gguf_progress *progress, struct gguf **ret,
                       struct npu_err *err);
/* Parse an in-memory image (not copied; must outlive the result). */
int gguf_parse(const void *buf, size_t size, struct gguf **ret, struct npu_err *err);
void gguf_free(struct gguf *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct gguf *, gguf_free);
/*
 * Lets the tensors of an opened file (its private copy: the file never
 * changes) be rewritten, or makes them read-only again; -EROFS for a
 * parsed in-memory image.
 */
int gguf_set_writable(struct gguf *g, bool writable);

/* Bytes of one scalar of a metadata type; 0 for strings and arrays. */
size_t gguf_value_size(enum gguf_value_type t);
/* "Q4_K", "IQ2_XXS", ...; "unknown" for numbers ggml does not use. */
const char *ggml_type_name(enum ggml_type t);
/* Elements per block and bytes per block; 0 for types this reader cannot read. */
size_t ggml_type_block_elems(enum ggml_type t);
size_t ggml_type_block_bytes(enum ggml_type t);

const struct gguf_kv *gguf_find_kv(const struct gguf *g, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name);

/* Typed getters: -ENOENT when absent, -EINVAL (with message) on a type mismatch. */
int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *ret, struct npu_err *err);
int gguf_get_f32(const struct gguf *g, const char *key, float *ret, struct npu_err *err);
int gguf_get_bool(const struct gguf *g, const char *key, bool *ret, struct npu_err *err);
/* Returns a malloc'd NUL-terminated copy. */
int gguf_get_str(const struct gguf *g, const char *key, char **ret, struct npu_err *err);
int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_value_type type,
                 const struct gguf_kv **ret, struct npu_err *err);
bool gguf_str_eq(struct gguf_str a, const char *b);

/* Writer: add metadata and tensor infos, then write the header, then each tensor's data in order. */
struct gguf_writer;
int gguf_writer_new(const char *path, struct gguf_writer **ret, struct npu_err *err);
void gguf_writer_free(struct gguf_writer *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct gguf_writer *, gguf_writer_free);
int gguf_writer_add_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_add_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_add_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_add_bool(struct gguf_writer *w, const char *key, bool v);
int gguf_writer_add_str(struct gguf_writer *w, const char *key, const char *v);
int gguf_writer_add_arr(struct gguf_writer *w, const char *key, enum gguf_value_type type,
                        const void *data, uint64_t n);
int gguf_writer_add_str_arr(struct gguf_writer *w, const char *key, const char *const *v, uint64_t n);
/* Copy every key of src except those for which skip(key) returns true. */
int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf *src, bool (*skip)(const char *key));
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type,
                           uint32_t n_dims, const int64_t *ne);
int gguf_writer_write_header(struct gguf_writer *w, struct npu_err *err);
/* Tensors must be written in the order they were added; size must match. */
int gguf_writer_write_tensor(struct gguf_writer *w, const void *data, size_t size, struct npu_err *err);
/* The same in parts: any number of write_tensor_part calls, then end_tensor. */
int gguf_writer_write_tensor_part(struct gguf_writer *w, const void *data, size_t size, struct npu_err *err);
int gguf_writer_end_tensor(struct gguf_writer *w, struct npu_err *err);
int gguf_writer_finish(struct gguf_writer *w, struct npu_err *err);
