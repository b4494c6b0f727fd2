/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "gguf.h"
#include "quant_types.h"

#define GGUF_MAX_KV (1u << 20)
#define GGUF_MAX_TENSORS (1u << 20)
#define GGUF_MAX_STR (1u << 30)

/* A bounds-checked cursor over the file image. */
struct cursor {
        const uint8_t *base;
        size_t size;
        size_t off;
        struct npu_err *err;
};

static int cur_need(struct cursor *c, size_t n, const char *what)
{
        if (n > c->size - c->off)
                return npu_err_set(c->err, -EBADMSG,
                                   "truncated file: %s needs %zu bytes at offset %zu, file has %zu",
                                   what, n, c->off, c->size);
        return 0;
}

static int cur_read(struct cursor *c, void *dst, size_t n, const char *what)
{
        int r = cur_need(c, n, what);
        if (r < 0)
                return r;
        memcpy(dst, c->base + c->off, n);
        c->off += n;
        return 0;
}

static int cur_str(struct cursor *c, struct gguf_str *ret, const char *what)
{
        uint64_t len;
        int r = cur_read(c, &len, sizeof(len), what);
        if (r < 0)
                return r;
        if (len > GGUF_MAX_STR)
                return npu_err_set(c->err, -EBADMSG, "%s: string length %llu at offset %zu is absurd",
                                   what, (unsigned long long)len, c->off - 8);
        r = cur_need(c, len, what);
        if (r < 0)
                return r;
        ret->s = (const char *)c->base + c->off;
        ret->len = len;
        c->off += len;
        return 0;
}

size_t gguf_value_size(enum gguf_value_type t)
{
        switch (t) {
        case GGUF_TYPE_UINT8:
        case GGUF_TYPE_INT8:
        case GGUF_TYPE_BOOL:
                return 1;
        case GGUF_TYPE_UINT16:
        case GGUF_TYPE_INT16:
                return 2;
        case GGUF_TYPE_UINT32:
        case GGUF_TYPE_INT32:
        case GGUF_TYPE_FLOAT32:
                return 4;
        case GGUF_TYPE_UINT64:
        case GGUF_TYPE_INT64:
        case GGUF_TYPE_FLOAT64:
                return 8;
        default:
                return 0;
        }
}

bool gguf_str_eq(struct gguf_str a, const char *b)
{
        size_t n = strlen(b);
        return a.len == n && memcmp(a.s, b, n) == 0;
}

/* Names of every ggml type, block geometry of those this reader can read. */
static const struct ggml_type_info {
        const char *name;
        uint16_t block_elems;
        uint16_t block_bytes;
} ggml_types[_GGML_TYPE_MAX] = {
        [GGML_TYPE_F32] = { "F32", 1, 4 },
        [GGML_TYPE_F16] = { "F16", 1, 2 },
        [GGML_TYPE_Q4_0] = { "Q4_0", QK4_0, sizeof(struct block_q4_0) },
        [GGML_TYPE_Q4_1] = { "Q4_1", QK4_1, sizeof(struct block_q4_1) },
        [GGML_TYPE_Q5_0] = { "Q5_0", QK5_0, sizeof(struct block_q5_0) },
        [GGML_TYPE_Q5_1] = { "Q5_1", QK5_1, sizeof(struct block_q5_1) },
        [GGML_TYPE_Q8_0] = { "Q8_0", QK8_0, sizeof(struct block_q8_0) },
        [GGML_TYPE_Q8_1] = { "Q8_1" },
        [GGML_TYPE_Q2_K] = { "Q2_K", QK_K, sizeof(struct block_q2_K) },
        [GGML_TYPE_Q3_K] = { "Q3_K", QK_K, sizeof(struct block_q3_K) },
        [GGML_TYPE_Q4_K] = { "Q4_K", QK_K, sizeof(struct block_q4_K) },
        [GGML_TYPE_Q5_K] = { "Q5_K", QK_K, sizeof(struct block_q5_K) },
        [GGML_TYPE_Q6_K] = { "Q6_K", QK_K, sizeof(struct block_q6_K) },
        [GGML_TYPE_Q8_K] = { "Q8_K" },
        [GGML_TYPE_IQ2_XXS] = { "IQ2_XXS" },
        [GGML_TYPE_IQ2_XS] = { "IQ2_XS" },
        [GGML_TYPE_IQ3_XXS] = { "IQ3_XXS" },
        [GGML_TYPE_IQ1_S] = { "IQ1_S" },
        [GGML_TYPE_IQ4_NL] = { "IQ4_NL" },
        [GGML_TYPE_IQ3_S] = { "IQ3_S" },
        [GGML_TYPE_IQ2_S] = { "IQ2_S" },
        [GGML_TYPE_IQ4_XS] = { "IQ4_XS" },
        [GGML_TYPE_I8] = { "I8", 1, 1 },
        [GGML_TYPE_I16] = { "I16", 1, 2 },
        [GGML_TYPE_I32] = { "I32", 1, 4 },
        [GGML_TYPE_I64] = { "I64" },
        [GGML_TYPE_F64] = { "F64" },
        [GGML_TYPE_IQ1_M] = { "IQ1_M" },
        [GGML_TYPE_BF16] = { "BF16", 1, 2 },
        [GGML_TYPE_TQ1_0] = { "TQ1_0" },
        [GGML_TYPE_TQ2_0] = { "TQ2_0" },
        [GGML_TYPE_MXFP4] = { "MXFP4" },
};

const char *ggml_type_name(enum ggml_type t)
{
        if ((unsigned)t >= _GGML_TYPE_MAX || !ggml_types[t].name)
                return "unknown";
        return ggml_types[t].name;
}

size_t ggml_type_block_elems(enum ggml_type t)
{
        return (unsigned)t < _GGML_TYPE_MAX ? ggml_types[t].block_elems : 0;
}

size_t ggml_type_block_bytes(enum ggml_type t)
{
        return (unsigned)t < _GGML_TYPE_MAX ? ggml_types[t].block_bytes : 0;
}

static int parse_kv(struct cursor *c, struct gguf_kv *kv, uint64_t idx)
{
        uint32_t type;
        int r;

        r = cur_str(c, &kv->key, "metadata key");
        if (r < 0)
                return r;
        r = cur_read(c, &type, sizeof(type), "metadata value type");
        if (r < 0)
                return r;
        if (type >= _GGUF_TYPE_MAX)
                return npu_err_set(c->err, -EBADMSG, "metadata key '%.*s': unknown value type %u",
                                   (int)MIN(kv->key.len, 64), kv->key.s, type);
        kv->type = type;
        kv->data = c->base + c->off;

        if (type == GGUF_TYPE_STRING) {
                struct gguf_str s;
                return cur_str(c, &s, "metadata string value");
        }
        if (type != GGUF_TYPE_ARRAY)
                return cur_need(c, gguf_value_size(type), "metadata value") ?: (c->off += gguf_value_size(type), 0);

        uint32_t at;
        uint64_t n;
        r = cur_read(c, &at, sizeof(at), "array element type");
        if (r < 0)
                return r;
        r = cur_read(c, &n, sizeof(n), "array length");
        if (r < 0)
                return r;
        if (at >= _GGUF_TYPE_MAX || at == GGUF_TYPE_ARRAY)
                return npu_err_set(c->err, -EBADMSG, "metadata key '%.*s': bad array element type %u",
                                   (int)MIN(kv->key.len, 64), kv->key.s, at);
        kv->arr_type = at;
        kv->arr_n = n;
        kv->data = c->base + c->off;
        if (at == GGUF_TYPE_STRING) {
                /* each string takes at least its 8-byte length */
                if (n > (c->size - c->off) / 8)
                        return npu_err_set(c->err, -EBADMSG,
                                           "metadata key '%.*s': %llu strings cannot fit in the file",
                                           (int)MIN(kv->key.len, 64), kv->key.s, (unsigned long long)n);
                kv->arr_strs = calloc(n ? n : 1, sizeof(*kv->arr_strs));
                if (!kv->arr_strs)
                        return -ENOMEM;
                for (uint64_t i = 0; i < n; i++) {
                        r = cur_str(c, &kv->arr_strs[i], "array string");
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        size_t bytes;
        if (!size_mul(n, gguf_value_size(at), &bytes) || bytes > c->size - c->off)
                return npu_err_set(c->err, -EBADMSG,
                                   "metadata key '%.*s' (#%llu): array of %llu elements runs past the end of the file",
                                   (int)MIN(kv->key.len, 64), kv->key.s, (unsigned long long)idx,
                                   (unsigned long long)n);
        c->off += bytes;
        return 0;
}

static int parse_tensor_info(struct cursor *c, struct gguf_tensor *t)
{
        uint32_t type;
        int r;

        r = cur_str(c, &t->name, "tensor name");
        if (r < 0)
                return r;
        r = cur_read(c, &t->n_dims, sizeof(t->n_dims), "tensor dimension count");
        if (r < 0)
                return r;
        if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
                return npu_err_set(c->err, -EBADMSG, "tensor '%.*s': %u dimensions (1 to %d allowed)",
                                   (int)MIN(t->name.len, 64), t->name.s, t->n_dims, GGUF_MAX_DIMS);
        for (int i = 0; i < GGUF_MAX_DIMS; i++)
                t->ne[i] = 1;
        for (uint32_t i = 0; i < t->n_dims; i++) {
                uint64_t d;
                r = cur_read(c, &d, sizeof(d), "tensor dimension");
                if (r < 0)
                        return r;
                if (d == 0 || d > INT64_MAX / 2)
                        return npu_err_set(c->err, -EBADMSG, "tensor '%.*s': dimension %u is %llu",
                                           (int)MIN(t->name.len, 64), t->name.s, i, (unsigned long long)d);
                t->ne[i] = (int64_t)d;
        }
        r = cur_read(c, &type, sizeof(type), "tensor type");
        if (r < 0)
                return r;
        r = cur_read(c, &t->offset, sizeof(t->offset), "tensor offset");
        if (r < 0)
                return r;
        t->type = type;
        size_t be = ggml_type_block_elems(t->type), bb = ggml_type_block_bytes(t->type);
        if (be == 0)
                return npu_err_set(c->err, -EOPNOTSUPP, "tensor '%.*s' has type %s (%u), which npud cannot read",
                                   (int)MIN(t->name.len, 64), t->name.s, ggml_type_name(t->type), type);
        if (t->ne[0] % (int64_t)be != 0)
                return npu_err_set(c->err, -EBADMSG, "tensor '%.*s': row of %lld elements is not a multiple of %s's block of %zu",
                                   (int)MIN(t->name.len, 64), t->name.s, (long long)t->ne[0], ggml_type_name(t->type), be);
        size_t nel = 1, bytes;
        for (int i = 0; i < GGUF_MAX_DIMS; i++)
                if (!size_mul(nel, (size_t)t->ne[i], &nel))
                        return npu_err_set(c->err, -EBADMSG, "tensor '%.*s': element count overflows",
                                           (int)MIN(t->name.len, 64), t->name.s);
        if (!size_mul(nel / be, bb, &bytes))
                return npu_err_set(c->err, -EBADMSG, "tensor '%.*s': size overflows",
                                   (int)MIN(t->name.len, 64), t->name.s);
        t->nbytes = bytes;
        return 0;
}

static void gguf_release(struct gguf *g)
{
        if (g->kv)
                for (uint64_t i = 0; i < g->n_kv; i++)
                        free(g->kv[i].arr_strs);
        free(g->kv);
        free(g->tensors);
}

void gguf_free(struct gguf *g)
{
        if (!g)
                return;
        gguf_release(g);
        if (g->map)
                munmap(g->map, g->map_size);
        free(g);
}

static int check_duplicates(struct gguf *g, struct npu_err *err)
{
        /* sort-free O(n log n) would need a copy; n is small enough for a hash set */
        size_t cap = 1;
        while (cap < 2 * (g->n_tensors + g->n_kv) + 2)
                cap <<= 1;
        _cleanup_free_ const struct gguf_str **set = calloc(cap, sizeof(*set));
        if (!set)
                return -ENOMEM;
        for (int pass = 0; pass < 2; pass++) {
                memset(set, 0, cap * sizeof(*set));
                uint64_t n = pass ? g->n_tensors : g->n_kv;
                for (uint64_t i = 0; i < n; i++) {
                        const struct gguf_str *s = pass ? &g->tensors[i].name : &g->kv[i].key;
                        size_t k = fnv1a64(s->s, s->len) & (cap - 1);
                        while (set[k]) {
                                if (set[k]->len == s->len && memcmp(set[k]->s, s->s, s->len) == 0)
                                        return npu_err_set(err, -EBADMSG, "duplicate %s '%.*s'",
                                                           pass ? "tensor" : "metadata key",
                                                           (int)MIN(s->len, 64), s->s);
                                k = (k + 1) & (cap - 1);
                        }
                        set[k] = s;
                }
        }
        return 0;
}

static int by_offset(const void *a, const void *b)
{
        const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a, *y = *(const struct gguf_tensor *const *)b;
        return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/*
 * Two tensors whose bytes overlap are refused: the model repacks some
 * tensors in place (int8 panels, interleaved groups), and one written
 * through another's name would be neither.
 */
static int check_overlaps(struct gguf *g, struct npu_err *err)
{
        _cleanup_free_ const struct gguf_tensor **t = malloc(sizeof(*t) * MAX(g->n_tensors, 1));

        if (!t)
                return -ENOMEM;
        for (uint64_t i = 0; i < g->n_tensors; i++)
                t[i] = &g->tensors[i];
        qsort(t, g->n_tensors, sizeof(*t), by_offset);
        for (uint64_t i = 1; i < g->n_tensors; i++)
                if (t[i - 1]->nbytes && t[i]->nbytes && t[i - 1]->offset + t[i - 1]->nbytes > t[i]->offset)
                        return npu_err_set(err, -EBADMSG, "tensors '%.*s' and '%.*s' overlap in the data section",
                                           (int)MIN(t[i - 1]->name.len, 64), t[i - 1]->name.s,
                                           (int)MIN(t[i]->name.len, 64), t[i]->name.s);
        return 0;
}

static int parse_header(struct gguf *g, const uint8_t *base, size_t size, struct npu_err *err)
{
        struct cursor c = { .base = base, .size = size, .err = err };
        uint32_t magic;
        int r;

        r = cur_read(&c, &magic, sizeof(magic), "magic");
        if (r < 0)
                return r;
        if (magic != GGUF_MAGIC)
                return npu_err_set(err, -EBADMSG, "not a GGUF file (magic 0x%08x)", magic);
        r = cur_read(&c, &g->version, sizeof(g->version), "version");
        if (r < 0)
                return r;
        if (g->version != 2 && g->version != 3)
                return npu_err_set(err, -EOPNOTSUPP, "GGUF version %u not supported (2 and 3 are)", g->version);
        r = cur_read(&c, &g->n_tensors, sizeof(g->n_tensors), "tensor count");
        if (r < 0)
                return r;
        r = cur_read(&c, &g->n_kv, sizeof(g->n_kv), "metadata count");
        if (r < 0)
                return r;
        /* a key takes at least 12 bytes, a tensor info at least 28 */
        if (g->n_kv > GGUF_MAX_KV || g->n_kv > (size - c.off) / 12)
                return npu_err_set(err, -EBADMSG, "metadata count %llu cannot fit in a %zu-byte file",
                                   (unsigned long long)g->n_kv, size);
        if (g->n_tensors > GGUF_MAX_TENSORS || g->n_tensors > (size - c.off) / 28)
                return npu_err_set(err, -EBADMSG, "tensor count %llu cannot fit in a %zu-byte file",
                                   (unsigned long long)g->n_tensors, size);

        g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof(*g->kv));
        g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*g->tensors));
        if (!g->kv || !g->tensors)
                return -ENOMEM;
        for (uint64_t i = 0; i < g->n_kv; i++) {
                r = parse_kv(&c, &g->kv[i], i);
                if (r < 0)
                        return r;
        }

        g->alignment = GGUF_DEFAULT_ALIGNMENT;
        const struct gguf_kv *akv = gguf_find_kv(g, "general.alignment");
        if (akv) {
                if (akv->type != GGUF_TYPE_UINT32)
                        return npu_err_set(err, -EBADMSG, "general.alignment is not a uint32");
                memcpy(&g->alignment, akv->data, 4);
                if (g->alignment == 0 || (g->alignment & (g->alignment - 1)) || g->alignment > 65536)
                        return npu_err_set(err, -EBADMSG, "general.alignment %u is not a power of two up to 65536",
                                           g->alignment);
        }

        for (uint64_t i = 0; i < g->n_tensors; i++) {
                r = parse_tensor_info(&c, &g->tensors[i]);
                if (r < 0)
                        return r;
        }
        r = check_duplicates(g, err);
        if (r < 0)
                return r;

        g->data_offset = ALIGN_TO((uint64_t)c.off, g->alignment);
        if (g->n_tensors > 0 && g->data_offset > size)
                return npu_err_set(err, -EBADMSG, "data section at %llu starts past the end of the file (%zu bytes)",
                                   (unsigned long long)g->data_offset, size);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
                struct gguf_tensor *t = &g->tensors[i];
                uint64_t avail = size - g->data_offset;
                if (t->offset % g->alignment)
                        return npu_err_set(err, -EBADMSG, "tensor '%.*s': offset %llu is not aligned to %u",
                                           (int)MIN(t->name.len, 64), t->name.s,
                                           (unsigned long long)t->offset, g->alignment);
                if (t->offset > avail || t->nbytes > avail - t->offset)
                        return npu_err_set(err, -EBADMSG,
                                           "tensor '%.*s': data at offset %llu + %llu bytes runs past the end of the file",
                                           (int)MIN(t->name.len, 64), t->name.s,
                                           (unsigned long long)(g->data_offset + t->offset),
                                           (unsigned long long)t->nbytes);
                t->data = base + g->data_offset + t->offset;
        }
        return check_overlaps(g, err);
}

int gguf_parse(const void *buf, size_t size, struct gguf **ret, struct npu_err *err)
{
        struct gguf *g = calloc(1, sizeof(*g));
        int r;

        if (!g)
                return -ENOMEM;
        r = parse_header(g, buf, size, err);
        if (r < 0) {
                gguf_free(g);
                return r;
        }
        *ret = g;
        return 0;
}

/*
 * Model weights are read into anonymous memory backed by transparent huge
 * pages: decoding streams every weight once per token, and 4 KiB page-cache
 * pages cost TLB misses that show in tokens/s (about 15 % on a 2 GB model).
 */
static void *load_huge(int fd, size_t size, size_t shift, const struct gguf_progress *progress)
{
        void *a = mmap(NULL, size + shift, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                       0);
        if (a == MAP_FAILED)
                return NULL;
        (void)madvise(a, size + shift, MADV_HUGEPAGE);
        for (size_t off = 0; off < size;) {
                /* 64 MiB at a time: a 7B file is told in a hundred steps */
                ssize_t n = pread(fd, (uint8_t *)a + shift + off, MIN(size - off, (size_t)1 << 26), (off_t)off);
                if (n <= 0) {
                        munmap(a, size + shift);
                        return NULL;
                }
                off += (size_t)n;
                if (progress && progress->fn)
                        progress->fn(off, size, progress->userdata);
        }
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        (void)mprotect(a, size + shift, PROT_READ);
        return a;
}

/*
 * Bytes to read the file at past a line boundary so that its tensor data
 * starts on one: GGUF aligns tensors to 32 bytes (general.alignment), and
 * a data section 32 bytes off a line puts every 64-byte vector or tile row
 * of most matrices across two lines (the AMX GEMM, tinyllama's up
 * projection, one thread: 1.9 T int8 ops/s with the weights 32 bytes off,
 * 2.4 on lines). The header is parsed from the file's pages to learn where
 * the data starts; on any error 0, and the real parse reports it.
 */
static size_t data_shift(int fd, size_t size)
{
        struct gguf *g;
        size_t shift = 0;
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);

        if (m == MAP_FAILED)
                return 0;
        if (gguf_parse(m, size, &g, NULL) == 0) {
                shift = (64 - g->data_offset % 64) % 64;
                gguf_free(g);
        }
        munmap(m, size);
        return shift;
}

int gguf_open_flags(const char *path, unsigned flags, struct gguf **ret, struct npu_err *err)
{
        return gguf_open_progress(path, flags, NULL, ret, err);
}

int gguf_open_progress(const char *path, unsigned flags, const struct gguf_progress *progress, struct gguf **ret,
                       struct npu_err *err)
{
        _cleanup_close_ int fd = -1;
        struct stat st;
        void *map = NULL;
        size_t shift = 0; /* the file's first byte at map + shift */
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return npu_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
        if (fstat(fd, &st) < 0)
                return npu_err_set(err, -errno, "cannot stat %s: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return npu_err_set(err, -EINVAL, "%s is not a regular file", path);
        if (st.st_size < 24)
                return npu_err_set(err, -EBADMSG, "%s: truncated file (%lld bytes)", path, (long long)st.st_size);
        if (progress && progress->fn)
                progress->fn(0, st.st_size, progress->userdata);
        if ((flags & GGUF_OPEN_HUGEPAGES) && st.st_size >= (16 << 20)) {
                shift = data_shift(fd, st.st_size);
                map = load_huge(fd, st.st_size, shift, progress);
                if (!map)
                        shift = 0;
        }
        if (!map) {
                /* private: gguf_set_writable may let the model repack tensors in place (copy-on-write) */
                map = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
                if (map == MAP_FAILED)
                        return npu_err_set(err, -errno, "cannot map %s: %s", path, strerror(errno));
                /* mapped: its pages are read as the model touches them */
                if (progress && progress->fn)
                        progress->fn(st.st_size, st.st_size, progress->userdata);
        }

        struct gguf *g;
        r = gguf_parse((uint8_t *)map + shift, st.st_size, &g, err);
        if (r < 0) {
                munmap(map, st.st_size + shift);
                npu_err_prefix(err, path);
                return r;
        }
        g->map = map;
        g->map_size = st.st_size + shift;
        *ret = g;
        return 0;
}

int gguf_set_writable(struct gguf *g, bool writable)
{
        if (!g->map)
                return -EROFS;
        if (mprotect(g->map, g->map_size, writable ? PROT_READ | PROT_WRITE : PROT_READ) < 0)
                return -errno;
        return 0;
}

int gguf_open(const char *path, struct gguf **ret, struct npu_err *err)
{
        return gguf_open_flags(path, 0, ret, err);
}

const struct gguf_kv *gguf_find_kv(const struct gguf *g, const char *key)
{
        for (uint64_t i = 0; i < g->n_kv; i++)
                if (gguf_str_eq(g->kv[i].key, key))
                        return &g->kv[i];
        return NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name)
{
        for (uint64_t i = 0; i < g->n_tensors; i++)
                if (gguf_str_eq(g->tensors[i].name, name))
                        return &g->tensors[i];
        return NULL;
}

static int kv_integer(const struct gguf_kv *kv, int64_t *ret)
{
        switch (kv->type) {
        case GGUF_TYPE_UINT8: *ret = *(const uint8_t *)kv->data; return 0;
        case GGUF_TYPE_INT8: *ret = *(const int8_t *)kv->data; return 0;
        case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, kv->data, 2); *ret = v; return 0; }
        case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, kv->data, 2); *ret = v; return 0; }
        case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, kv->data, 4); *ret = v; return 0; }
        case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, kv->data, 4); *ret = v; return 0; }
        case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, kv->data, 8); if (v > INT64_MAX) return -ERANGE; *ret = (int64_t)v; return 0; }
        case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, kv->data, 8); *ret = v; return 0; }
        default: return -EINVAL;
        }
}

int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *ret, struct npu_err *err)
{
        const struct gguf_kv *kv = gguf_find_kv(g, key);
        int64_t v;

        if (!kv)
                return -ENOENT;
        if (kv_integer(kv, &v) < 0 || v < 0 || v > UINT32_MAX)
                return npu_err_set(err, -EINVAL, "metadata key '%s' is not an integer in 0..2^32-1", key);
        *ret = (uint32_t)v;
        return 0;
}

int gguf_get_f32(const struct gguf *g, const char *key, float *ret, struct npu_err *err)
{
        const struct gguf_kv *kv = gguf_find_kv(g, key);

        if (!kv)
                return -ENOENT;
        if (kv->type == GGUF_TYPE_FLOAT32) {
                memcpy(ret, kv->data, 4);
                return 0;
        }
        if (kv->type == GGUF_TYPE_FLOAT64) {
                double d;
                memcpy(&d, kv->data, 8);
                *ret = (float)d;
                return 0;
        }
        return npu_err_set(err, -EINVAL, "metadata key '%s' is not a float", key);
}

int gguf_get_bool(const struct gguf *g, const char *key, bool *ret, struct npu_err *err)
{
        const struct gguf_kv *kv = gguf_find_kv(g, key);

        if (!kv)
                return -ENOENT;
        if (kv->type != GGUF_TYPE_BOOL)
                return npu_err_set(err, -EINVAL, "metadata key '%s' is not a bool", key);
        *ret = *(const uint8_t *)kv->data != 0;
        return 0;
}

int gguf_get_str(const struct gguf *g, const char *key, char **ret, struct npu_err *err)
{
        const struct gguf_kv *kv = gguf_find_kv(g, key);
        uint64_t len;

        if (!kv)
                return -ENOENT;
        if (kv->type != GGUF_TYPE_STRING)
                return npu_err_set(err, -EINVAL, "metadata key '%s' is not a string", key);
        memcpy(&len, kv->data, 8);
        char *s = strndup((const char *)kv->data + 8, len);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_value_type type,
                 const struct gguf_kv **ret, struct npu_err *err)
{
        const struct gguf_kv *kv = gguf_find_kv(g, key);

        if (!kv)
                return -ENOENT;
        if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != type)
                return npu_err_set(err, -EINVAL, "metadata key '%s' is not an array of type %d", key, type);
        *ret = kv;
        return 0;
}
