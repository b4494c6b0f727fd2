/* SPDX-License-Identifier: MIT */
#include <fcntl.h>

#include "gguf.h"

struct buf {
        uint8_t *p;
        size_t len, cap;
};

struct writer_tensor {
        char *name;
        enum ggml_type type;
        uint32_t n_dims;
        int64_t ne[GGUF_MAX_DIMS];
        uint64_t nbytes, offset;
};

struct gguf_writer {
        FILE *f;
        char *path;
        struct buf kv;
        uint64_t n_kv;
        struct writer_tensor *tensors;
        size_t n_tensors, cap_tensors;
        size_t next_tensor;
        uint64_t part_bytes; /* of the tensor being written */
        uint64_t pos;
        uint32_t alignment;
        int error;
};

static int buf_put(struct buf *b, const void *data, size_t n)
{
        if (b->len + n > b->cap) {
                size_t cap = MAX(b->cap * 2, b->len + n + 256);
                uint8_t *p = realloc(b->p, cap);
                if (!p)
                        return -ENOMEM;
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->len, data, n);
        b->len += n;
        return 0;
}

static int buf_put_str(struct buf *b, const char *s)
{
        uint64_t n = strlen(s);
        int r = buf_put(b, &n, sizeof(n));
        return r < 0 ? r : buf_put(b, s, n);
}

static int put_key(struct gguf_writer *w, const char *key, uint32_t type)
{
        int r = buf_put_str(&w->kv, key);
        if (r < 0)
                return r;
        w->n_kv++;
        return buf_put(&w->kv, &type, sizeof(type));
}

int gguf_writer_new(const char *path, struct gguf_writer **ret, struct npu_err *err)
{
        struct gguf_writer *w = calloc(1, sizeof(*w));

        if (!w)
                return -ENOMEM;
        w->alignment = GGUF_DEFAULT_ALIGNMENT;
        w->path = strdup(path);
        w->f = fopen(path, "we");
        if (!w->f || !w->path) {
                int r = -errno;
                gguf_writer_free(w);
                return npu_err_set(err, r, "cannot create %s: %s", path, strerror(-r));
        }
        *ret = w;
        return 0;
}

void gguf_writer_free(struct gguf_writer *w)
{
        if (!w)
                return;
        if (w->f)
                fclose(w->f);
        for (size_t i = 0; i < w->n_tensors; i++)
                free(w->tensors[i].name);
        free(w->tensors);
        free(w->kv.p);
        free(w->path);
        free(w);
}

#define DEFINE_ADD_SCALAR(name, ctype, gtype)                                     \
        int gguf_writer_add_##name(struct gguf_writer *w, const char *key, ctype v) \
        {                                                                          \
                int r = put_key(w, key, gtype);                                    \
                return r < 0 ? r : buf_put(&w->kv, &v, sizeof(v));                 \
        }

DEFINE_ADD_SCALAR(u32, uint32_t, GGUF_TYPE_UINT32)
DEFINE_ADD_SCALAR(i32, int32_t, GGUF_TYPE_INT32)
DEFINE_ADD_SCALAR(f32, float, GGUF_TYPE_FLOAT32)

int gguf_writer_add_bool(struct gguf_writer *w, const char *key, bool v)
{
        uint8_t b = v;
        int r = put_key(w, key, GGUF_TYPE_BOOL);
        return r < 0 ? r : buf_put(&w->kv, &b, 1);
}

int gguf_writer_add_str(struct gguf_writer *w, const char *key, const char *v)
{
        int r = put_key(w, key, GGUF_TYPE_STRING);
        return r < 0 ? r : buf_put_str(&w->kv, v);
}

static int put_arr_head(struct gguf_writer *w, const char *key, uint32_t type, uint64_t n)
{
        int r = put_key(w, key, GGUF_TYPE_ARRAY);
        if (r >= 0)
                r = buf_put(&w->kv, &type, sizeof(type));
        if (r >= 0)
                r = buf_put(&w->kv, &n, sizeof(n));
        return r;
}

int gguf_writer_add_arr(struct gguf_writer *w, const char *key, enum gguf_value_type type,
                        const void *data, uint64_t n)
{
        size_t esz = gguf_value_size(type);
        if (esz == 0)
                return -EINVAL;
        int r = put_arr_head(w, key, type, n);
        return r < 0 ? r : buf_put(&w->kv, data, esz * n);
}

int gguf_writer_add_str_arr(struct gguf_writer *w, const char *key, const char *const *v, uint64_t n)
{
        int r = put_arr_head(w, key, GGUF_TYPE_STRING, n);
        for (uint64_t i = 0; r >= 0 && i < n; i++)
                r = buf_put_str(&w->kv, v[i]);
        return r;
}

static int copy_one_kv(struct gguf_writer *w, const struct gguf_kv *kv)
{
        _cleanup_free_ char *key = strndup(kv->key.s, kv->key.len);
        int r;

        if (!key)
                return -ENOMEM;
        r = put_key(w, key, kv->type);
        if (r < 0)
                return r;
        if (kv->type == GGUF_TYPE_STRING) {
                uint64_t len;
                memcpy(&len, kv->data, 8);
                return buf_put(&w->kv, kv->data, 8 + len);
        }
        if (kv->type != GGUF_TYPE_ARRAY) {
                return buf_put(&w->kv, kv->data, gguf_value_size(kv->type));
        }
        uint32_t at = kv->arr_type;
        r = buf_put(&w->kv, &at, sizeof(at));
        if (r >= 0)
                r = buf_put(&w->kv, &kv->arr_n, sizeof(kv->arr_n));
        if (r < 0)
                return r;
        if (at == GGUF_TYPE_STRING) {
                for (uint64_t i = 0; r >= 0 && i < kv->arr_n; i++) {
                        r = buf_put(&w->kv, &kv->arr_strs[i].len, 8);
                        if (r >= 0)
                                r = buf_put(&w->kv, kv->arr_strs[i].s, kv->arr_strs[i].len);
                }
                return r;
        }
        return buf_put(&w->kv, kv->data, gguf_value_size(at) * kv->arr_n);
}

int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf *src, bool (*skip)(const char *key))
{
        for (uint64_t i = 0; i < src->n_kv; i++) {
                _cleanup_free_ char *key = strndup(src->kv[i].key.s, src->kv[i].key.len);
                if (!key)
                        return -ENOMEM;
                if (skip && skip(key))
                        continue;
                int r = copy_one_kv(w, &src->kv[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type,
                           uint32_t n_dims, const int64_t *ne)
{
        if (n_dims == 0 || n_dims > GGUF_MAX_DIMS || ggml_type_block_elems(type) == 0)
                return -EINVAL;
        if (w->n_tensors == w->cap_tensors) {
                size_t cap = MAX(16u, w->cap_tensors * 2);
                struct writer_tensor *t = realloc(w->tensors, cap * sizeof(*t));
                if (!t)
                        return -ENOMEM;
                w->tensors = t;
                w->cap_tensors = cap;
        }
        struct writer_tensor *t = &w->tensors[w->n_tensors];
        *t = (struct writer_tensor) { .type = type, .n_dims = n_dims };
        t->name = strdup(name);
        if (!t->name)
                return -ENOMEM;
        uint64_t nel = 1;
        for (uint32_t i = 0; i < GGUF_MAX_DIMS; i++) {
                t->ne[i] = i < n_dims ? ne[i] : 1;
                nel *= (uint64_t)t->ne[i];
        }
        if (t->ne[0] % (int64_t)ggml_type_block_elems(type))
                return -EINVAL;
        t->nbytes = nel / ggml_type_block_elems(type) * ggml_type_block_bytes(type);
        w->n_tensors++;
        return 0;
}

static int write_all(struct gguf_writer *w, const void *p, size_t n, struct npu_err *err)
{
        if (n && fwrite(p, 1, n, w->f) != n)
                return npu_err_set(err, -EIO, "writing %s: %s", w->path, strerror(errno));
        w->pos += n;
        return 0;
}

static int write_pad(struct gguf_writer *w, struct npu_err *err)
{
        static const uint8_t zeros[64];
        size_t pad = ALIGN_TO(w->pos, w->alignment) - w->pos;
        return write_all(w, zeros, pad, err);
}

int gguf_writer_write_header(struct gguf_writer *w, struct npu_err *err)
{
        uint32_t magic = GGUF_MAGIC, version = 3;
        uint64_t n_tensors = w->n_tensors;
        struct buf info = {};
        uint64_t off = 0;
        int r = 0;

        for (size_t i = 0; i < w->n_tensors && r >= 0; i++) {
                struct writer_tensor *t = &w->tensors[i];
                uint32_t type = t->type;
                t->offset = off;
                off = ALIGN_TO(off + t->nbytes, w->alignment);
                r = buf_put_str(&info, t->name);
                if (r >= 0)
                        r = buf_put(&info, &t->n_dims, 4);
                for (uint32_t d = 0; d < t->n_dims && r >= 0; d++)
                        r = buf_put(&info, &t->ne[d], 8);
                if (r >= 0)
                        r = buf_put(&info, &type, 4);
                if (r >= 0)
                        r = buf_put(&info, &t->offset, 8);
        }
        if (r >= 0)
                r = write_all(w, &magic, 4, err);
        if (r >= 0)
                r = write_all(w, &version, 4, err);
        if (r >= 0)
                r = write_all(w, &n_tensors, 8, err);
        if (r >= 0)
                r = write_all(w, &w->n_kv, 8, err);
        if (r >= 0)
                r = write_all(w, w->kv.p, w->kv.len, err);
        if (r >= 0)
                r = write_all(w, info.p, info.len, err);
        if (r >= 0)
                r = write_pad(w, err);
        free(info.p);
        return r;
}

int gguf_writer_write_tensor_part(struct gguf_writer *w, const void *data, size_t size, struct npu_err *err)
{
        if (w->next_tensor >= w->n_tensors)
                return npu_err_set(err, -EINVAL, "more tensor data than tensors");
        struct writer_tensor *t = &w->tensors[w->next_tensor];
        if (size > t->nbytes - w->part_bytes)
                return npu_err_set(err, -EINVAL, "tensor '%s': more than its %llu bytes given", t->name,
                                   (unsigned long long)t->nbytes);
        int r = write_all(w, data, size, err);
        if (r >= 0)
                w->part_bytes += size;
        return r;
}

int gguf_writer_end_tensor(struct gguf_writer *w, struct npu_err *err)
{
        if (w->next_tensor >= w->n_tensors)
                return npu_err_set(err, -EINVAL, "more tensor data than tensors");
        struct writer_tensor *t = &w->tensors[w->next_tensor];
        if (w->part_bytes != t->nbytes)
                return npu_err_set(err, -EINVAL, "tensor '%s': %llu bytes given, %llu expected", t->name,
                                   (unsigned long long)w->part_bytes, (unsigned long long)t->nbytes);
        int r = write_pad(w, err);
        if (r >= 0) {
                w->next_tensor++;
                w->part_bytes = 0;
        }
        return r;
}

int gguf_writer_write_tensor(struct gguf_writer *w, const void *data, size_t size, struct npu_err *err)
{
        if (w->next_tensor < w->n_tensors && size != w->tensors[w->next_tensor].nbytes)
                return npu_err_set(err, -EINVAL, "tensor '%s': %zu bytes given, %llu expected",
                                   w->tensors[w->next_tensor].name, size,
                                   (unsigned long long)w->tensors[w->next_tensor].nbytes);
        int r = gguf_writer_write_tensor_part(w, data, size, err);
        return r < 0 ? r : gguf_writer_end_tensor(w, err);
}

int gguf_writer_finish(struct gguf_writer *w, struct npu_err *err)
{
        if (w->next_tensor != w->n_tensors)
                return npu_err_set(err, -EINVAL, "%zu of %zu tensors written", w->next_tensor, w->n_tensors);
        if (fflush(w->f) != 0)
                return npu_err_set(err, -errno, "writing %s: %s", w->path, strerror(errno));
        int r = fclose(w->f);
        w->f = NULL;
        if (r != 0)
                return npu_err_set(err, -errno, "closing %s: %s", w->path, strerror(errno));
        return 0;
}
