/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "fp16.h"
#include "safetensors.h"

/* JSON nesting deeper than this is not a safetensors header. */
#define ST_JSON_DEPTH 16

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_tokener *, json_tokener_free);

size_t st_type_size(enum ggml_type t)
{
        switch (t) {
        case GGML_TYPE_F32:
                return 4;
        case GGML_TYPE_F16:
        case GGML_TYPE_BF16:
                return 2;
        default:
                return 0;
        }
}

void safetensors_free(struct safetensors *st)
{
        if (!st)
                return;
        for (size_t i = 0; i < st->n_tensors; i++)
                free(st->tensors[i].name);
        free(st->tensors);
        if (st->owns_map && st->map)
                munmap(st->map, st->map_size);
        free(st->name);
        free(st);
}

static const char *json_type_label(json_object *o)
{
        return o ? json_type_to_name(json_object_get_type(o)) : "null";
}

static int parse_dtype(const struct safetensors *st, const char *name, json_object *o, enum ggml_type *ret,
                       struct npu_err *err)
{
        static const struct {
                const char *s;
                enum ggml_type t;
        } ok[] = {
                { "F32", GGML_TYPE_F32 },
                { "F16", GGML_TYPE_F16 },
                { "BF16", GGML_TYPE_BF16 },
        };

        if (!o)
                return npu_err_set(err, -EBADMSG, "%s: tensor '%.64s': no dtype", st->name, name);
        if (!json_object_is_type(o, json_type_string))
                return npu_err_set(err, -EBADMSG, "%s: tensor '%.64s': dtype is a %s, not a string", st->name, name,
                                   json_type_label(o));
        const char *s = json_object_get_string(o);
        for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
                if (strcmp(s, ok[i].s) == 0) {
                        *ret = ok[i].t;
                        return 0;
                }
        return npu_err_set(err, -EOPNOTSUPP, "%s: tensor '%.64s': dtype '%.16s' is not supported (F32, F16 or BF16)",
                           st->name, name, s);
}

/* A non-negative JSON integer; what names the field in messages. */
static int parse_uint(const struct safetensors *st, const char *name, const char *what, json_object *o,
                      uint64_t *ret, struct npu_err *err)
{
        if (!json_object_is_type(o, json_type_int))
                return npu_err_set(err, -EBADMSG, "%s: tensor '%.64s': %s is a %s, not an integer", st->name, name,
                                   what, json_type_label(o));
        int64_t v = json_object_get_int64(o);
        if (v < 0)
                return npu_err_set(err, -EBADMSG, "%s: tensor '%.64s': %s is negative (%lld)", st->name, name, what,
                                   (long long)v);
        *ret = json_object_get_uint64(o);
        return 0;
}

static int parse_shape(const struct safetensors *st, const char *name, json_object *o, struct st_tensor *t,
                       struct npu_err *err)
{
        char what[32];
        int r;

        if (!o)
                return npu_err_set(err, -EBADMSG, "%s: tensor '%.64s': no shape", st->name, name);
        if (!json_object_is_type(o, json_type_array))
                return npu_err_set(err, -EBADMSG, "%s: tensor '%.64s': shape is a %s, not an array", st->name, name,
                                   json_type_label(o));
        size_t n = json_object_array_length(o);
        if (n > SAFETENSORS_MAX_DIMS)
                return npu_err_set(err, -EOPNOTSUPP, "%s: tensor '%.64s': shape has %zu dimensions, at most %d supported",
                                   st->name, name, n, SAFETENSORS_MAX_DIMS);
        t->n_dims = (uint32_t)n;
        t->n_elements = 1;
        for (size_t i = 0; i < n; i++) {
                uint64_t d;
                snprintf(what, sizeof(what), "shape[%zu]", i);
                r = parse_uint(st, name, what, json_object_array_get_idx(o, i), &d, err);
                if (r < 0)
                        return r;
                if (d > INT64_MAX || __builtin_mul_overflow(t->n_elements, d, &t->n_elements))
                        return npu_err_set(err, -EBADMSG, "%s: tensor '%.64s': element count of the shape overflows",
                                           st->name, name);
                t->shape[i] = (int64_t)d;
        }
        return 0;
}

static int parse_offsets(const struct safetensors *st, const char *name, json_object *o, struct st_tensor *t,
                         struct npu_err *err)
{
        int r;

        if (!o)
                return npu_err_set(err, -EBADMSG, "%s: tensor '%.64s': no data_offsets", st->name, name);
        if (!json_object_is_type(o, json_type_array) || json_object_array_length(o) != 2)
                return npu_err_set(err, -EBADMSG, "%s: tensor '%.64s': data_offsets is not an array of two integers",
                                   st->name, name);
        r = parse_uint(st, name, "data_offsets[0]", json_object_array_get_idx(o, 0), &t->begin, err);
        if (r < 0)
                return r;
        r = parse_uint(st, name, "data_offsets[1]", json_object_array_get_idx(o, 1), &t->end, err);
        if (r < 0)
                return r;
        if (t->begin > t->end)
                return npu_err_set(err, -EBADMSG, "%s: tensor '%.64s': data_offsets [%llu, %llu] end before they begin",
                                   st->name, name, (unsigned long long)t->begin, (unsigned long long)t->end);
        if (t->end > st->data_size)
                return npu_err_set(err, -EBADMSG,
                                   "%s: tensor '%.64s': data_offsets [%llu, %llu] run past the %llu-byte data section",
                                   st->name, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                                   (unsigned long long)st->data_size);
        return 0;
}

static int parse_entry(const struct safetensors *st, const char *name, json_object *o, struct st_tensor *t,
                       struct npu_err *err)
{
        json_object *dtype = NULL, *shape = NULL, *offsets = NULL;
        uint64_t need;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return npu_err_set(err, -EBADMSG, "%s: tensor '%.64s': entry is a %s, not an object", st->name, name,
                                   json_type_label(o));
        json_object_object_get_ex(o, "dtype", &dtype);
        json_object_object_get_ex(o, "shape", &shape);
        json_object_object_get_ex(o, "data_offsets", &offsets);
        r = parse_dtype(st, name, dtype, &t->type, err);
        if (r < 0)
                return r;
        r = parse_shape(st, name, shape, t, err);
        if (r < 0)
                return r;
        r = parse_offsets(st, name, offsets, t, err);
        if (r < 0)
                return r;
        if (__builtin_mul_overflow(t->n_elements, (uint64_t)st_type_size(t->type), &need))
                return npu_err_set(err, -EBADMSG, "%s: tensor '%.64s': byte size of the shape overflows", st->name,
                                   name);
        if (t->end - t->begin != need)
                return npu_err_set(err, -EBADMSG,
                                   "%s: tensor '%.64s': data_offsets [%llu, %llu] hold %llu bytes, but %llu elements of %s need %llu",
                                   st->name, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                                   (unsigned long long)(t->end - t->begin), (unsigned long long)t->n_elements,
                                   ggml_type_name(t->type), (unsigned long long)need);
        t->name = strdup(name);
        if (!t->name)
                return -ENOMEM;
        t->data = st->data + t->begin;
        return 0;
}

static int cmp_tensor_offset(const void *a, const void *b)
{
        const struct st_tensor *x = a, *y = b;

        if (x->begin != y->begin)
                return x->begin < y->begin ? -1 : 1;
        return x->end < y->end ? -1 : x->end > y->end;
}

static int check_overlaps(const struct safetensors *st, struct npu_err *err)
{
        qsort(st->tensors, st->n_tensors, sizeof(*st->tensors), cmp_tensor_offset);
        for (size_t i = 1; i < st->n_tensors; i++) {
                const struct st_tensor *a = &st->tensors[i - 1], *b = &st->tensors[i];
                if (b->begin < a->end)
                        return npu_err_set(err, -EBADMSG, "%s: tensors '%.48s' [%llu, %llu] and '%.48s' [%llu, %llu] overlap",
                                           st->name, a->name, (unsigned long long)a->begin,
                                           (unsigned long long)a->end, b->name, (unsigned long long)b->begin,
                                           (unsigned long long)b->end);
        }
        return 0;
}

/* Parse the header text (NUL-terminated copy of hlen bytes) into a JSON object. */
static int parse_json(const struct safetensors *st, const char *text, size_t hlen, json_object **ret,
                      struct npu_err *err)
{
        _cleanup_(json_tokener_freep) struct json_tokener *tok = json_tokener_new_ex(ST_JSON_DEPTH);
        _cleanup_(json_object_putp) json_object *root = NULL;

        if (!tok)
                return -ENOMEM;
        /* hand over the terminating NUL too, so that a bare top-level number completes */
        root = json_tokener_parse_ex(tok, text, (int)hlen + 1);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        if (!root || jerr != json_tokener_success)
                return npu_err_set(err, -EBADMSG, "%s: header is not valid JSON (%s at byte %zu)", st->name,
                                   json_tokener_error_desc(jerr), json_tokener_get_parse_end(tok));
        for (size_t i = json_tokener_get_parse_end(tok); i < hlen; i++)
                if (!strchr(" \t\r\n", text[i]))
                        return npu_err_set(err, -EBADMSG, "%s: header has trailing bytes after the JSON at byte %zu",
                                           st->name, i);
        if (!json_object_is_type(root, json_type_object))
                return npu_err_set(err, -EBADMSG, "%s: header is a JSON %s, not an object", st->name,
                                   json_type_label(root));
        *ret = TAKE_PTR(root);
        return 0;
}

static int read_header_length(const struct safetensors *st, const uint8_t *buf, size_t size, uint64_t *ret,
                              struct npu_err *err)
{
        uint64_t hlen = 0;

        if (size < 8)
                return npu_err_set(err, -EBADMSG, "%s: file is %zu bytes, too short for the 8-byte header length",
                                   st->name, size);
        for (int i = 7; i >= 0; i--)
                hlen = hlen << 8 | buf[i];
        if (hlen > SAFETENSORS_MAX_HEADER)
                return npu_err_set(err, -EBADMSG, "%s: header length %llu exceeds the %u-byte limit", st->name,
                                   (unsigned long long)hlen, SAFETENSORS_MAX_HEADER);
        if (hlen > size - 8)
                return npu_err_set(err, -EBADMSG, "%s: header length %llu runs past the end of the %zu-byte file",
                                   st->name, (unsigned long long)hlen, size);
        if (hlen < 2)
                return npu_err_set(err, -EBADMSG, "%s: header length %llu is too short for a JSON object", st->name,
                                   (unsigned long long)hlen);
        *ret = hlen;
        return 0;
}

static int parse_tensors(struct safetensors *st, json_object *root, struct npu_err *err)
{
        size_t n = 0;
        int r;

        st->tensors = calloc(MAX(1, json_object_object_length(root)), sizeof(*st->tensors));
        if (!st->tensors)
                return -ENOMEM;
        json_object_object_foreach(root, key, val) {
                if (strcmp(key, "__metadata__") == 0)
                        continue;
                r = parse_entry(st, key, val, &st->tensors[n], err);
                if (r < 0) {
                        free(st->tensors[n].name);
                        st->tensors[n].name = NULL;
                        return r;
                }
                st->n_tensors = ++n;
        }
        return check_overlaps(st, err);
}

int safetensors_parse(const void *buf, size_t size, const char *name, struct safetensors **ret,
                      struct npu_err *err)
{
        _cleanup_(safetensors_freep) struct safetensors *st = NULL;
        _cleanup_(json_object_putp) json_object *root = NULL;
        _cleanup_free_ char *text = NULL;
        uint64_t hlen = 0;
        int r;

        *ret = NULL;
        st = calloc(1, sizeof(*st));
        if (!st)
                return -ENOMEM;
        const char *slash = strrchr(name, '/');
        st->name = strdup(slash ? slash + 1 : name);
        if (!st->name)
                return -ENOMEM;
        r = read_header_length(st, buf, size, &hlen, err);
        if (r < 0)
                return r;
        st->data = (const uint8_t *)buf + 8 + hlen;
        st->data_size = size - 8 - hlen;
        text = malloc(hlen + 1);
        if (!text)
                return -ENOMEM;
        memcpy(text, (const uint8_t *)buf + 8, hlen);
        text[hlen] = 0;
        r = parse_json(st, text, hlen, &root, err);
        if (r < 0)
                return r;
        r = parse_tensors(st, root, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(st);
        return 0;
}

int safetensors_open(const char *path, struct safetensors **ret, struct npu_err *err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct safetensors *st = NULL;
        struct stat sb;
        int r;

        *ret = NULL;
        if (fd < 0)
                return npu_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
        if (fstat(fd, &sb) < 0)
                return npu_err_set(err, -errno, "cannot stat %s: %s", path, strerror(errno));
        if (!S_ISREG(sb.st_mode))
                return npu_err_set(err, -EINVAL, "%s is not a regular file", path);
        if (sb.st_size < 8)
                return npu_err_set(err, -EBADMSG, "%s: file is %lld bytes, too short for the 8-byte header length",
                                   path, (long long)sb.st_size);
        void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED)
                return npu_err_set(err, -errno, "cannot map %s: %s", path, strerror(errno));
        r = safetensors_parse(map, (size_t)sb.st_size, path, &st, err);
        if (r < 0) {
                munmap(map, (size_t)sb.st_size);
                return r;
        }
        st->map = map;
        st->map_size = (size_t)sb.st_size;
        st->owns_map = true;
        *ret = st;
        return 0;
}

const struct st_tensor *safetensors_find(const struct safetensors *st, const char *name)
{
        for (size_t i = 0; i < st->n_tensors; i++)
                if (strcmp(st->tensors[i].name, name) == 0)
                        return &st->tensors[i];
        return NULL;
}

int st_tensor_read_f32(const struct st_tensor *t, uint64_t first, uint64_t n, float *out)
{
        const uint8_t *p = t->data;
        uint64_t last;

        if (__builtin_add_overflow(first, n, &last) || last > t->n_elements)
                return -ERANGE;
        switch (t->type) {
        case GGML_TYPE_F32:
                memcpy(out, p + first * 4, n * 4);
                return 0;
        case GGML_TYPE_F16:
                for (uint64_t i = 0; i < n; i++) {
                        npu_f16 h;
                        memcpy(&h, p + (first + i) * 2, 2);
                        out[i] = f16_to_f32(h);
                }
                return 0;
        case GGML_TYPE_BF16:
                for (uint64_t i = 0; i < n; i++) {
                        npu_bf16 h;
                        memcpy(&h, p + (first + i) * 2, 2);
                        out[i] = bf16_to_f32(h);
                }
                return 0;
        default:
                return -EOPNOTSUPP;
        }
}
