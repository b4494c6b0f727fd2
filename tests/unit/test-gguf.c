/* SPDX-License-Identifier: MIT */
/* GGUF reader: a valid file parses; truncated, bit-flipped and hostile files are rejected, never crash. */
#include <fcntl.h>
#include <sys/stat.h>

#include "gguf.h"
#include "model.h"
#include "quantize_blocks.h"
#include "test-helpers.h"

#define WIDE_MODEL SHARED_DIR "/models/aidreams-wide-f32.gguf"

static uint8_t *read_all(const char *path, size_t *ret_n)
{
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *b = malloc(n);
        assert_non_null(b);
        assert_int_equal(fread(b, 1, n, f), (size_t)n);
        fclose(f);
        *ret_n = (size_t)n;
        return b;
}

static void test_valid_model(void **state)
{
        struct npu_err err = {};
        struct gguf *g = NULL;

        assert_int_equal(gguf_open(TINY_MODEL, &g, &err), 0);
        assert_true(g->version == 2 || g->version == 3);
        assert_non_null(gguf_find_tensor(g, "token_embd.weight"));
        assert_non_null(gguf_find_kv(g, "llama.block_count"));
        uint32_t layers;
        assert_int_equal(gguf_get_u32(g, "llama.block_count", &layers, &err), 0);
        assert_int_equal(layers, 4);
        gguf_free(g);
}

/* Every truncation of the header and of the data is rejected with a message. */
static void test_truncated(void **state)
{
        size_t n;
        _cleanup_free_ uint8_t *buf = read_all(TINY_MODEL, &n);
        int rejected = 0;

        for (size_t len = 0; len < n; len += (len < 4096 ? 1 : 997)) {
                _cleanup_free_ uint8_t *copy = malloc(len ? len : 1);
                memcpy(copy, buf, len);
                struct npu_err err = {};
                struct gguf *g = NULL;
                int r = gguf_parse(copy, len, &g, &err);
                assert_true(r < 0);
                assert_null(g);
                assert_true(strlen(err.msg) > 0);
                rejected++;
        }
        assert_true(rejected > 4000);
}

/* Random bit flips: parse and bind must either succeed or fail cleanly (ASan watches). */
static void test_bit_flips(void **state)
{
        size_t n;
        _cleanup_free_ uint8_t *buf = read_all(TINY_MODEL, &n);
        uint64_t seed = 42;
        struct gguf *g0 = NULL;
        struct npu_err err = {};
        assert_int_equal(gguf_parse(buf, n, &g0, &err), 0);
        size_t header = g0->data_offset;
        gguf_free(g0);

        int failures = 0;
        for (int iter = 0; iter < 3000; iter++) {
                _cleanup_free_ uint8_t *copy = malloc(n);
                memcpy(copy, buf, n);
                int flips = 1 + (int)(test_rng(&seed) % 4);
                for (int f = 0; f < flips; f++) {
                        size_t pos = test_rng(&seed) % header;
                        copy[pos] ^= (uint8_t)(1u << (test_rng(&seed) % 8));
                }
                struct gguf *g = NULL;
                memset(&err, 0, sizeof(err));
                int r = gguf_parse(copy, n, &g, &err);
                if (r < 0) {
                        assert_true(strlen(err.msg) > 0);
                        failures++;
                        continue;
                }
                struct npu_model *m = NULL;
                r = model_from_gguf(g, "flipped", &m, &err);
                if (r < 0) {
                        assert_true(strlen(err.msg) > 0);
                        gguf_free(g);
                } else
                        model_free(m);
        }
        assert_true(failures > 0);
}

static void put_u64(uint8_t *p, uint64_t v)
{
        memcpy(p, &v, 8);
}

/* Hand-made hostile headers get specific messages. */
static void test_hostile(void **state)
{
        uint8_t b[256] = {};
        struct npu_err err = {};
        struct gguf *g = NULL;

        memcpy(b, "GGUF", 4);
        b[4] = 3;
        put_u64(b + 8, UINT64_MAX); /* tensor count */
        put_u64(b + 16, 0);
        assert_int_equal(gguf_parse(b, sizeof(b), &g, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "tensor count"));

        put_u64(b + 8, 0);
        put_u64(b + 16, 1);              /* one key */
        put_u64(b + 24, 1ull << 40);     /* whose name is 1 TiB long */
        assert_int_equal(gguf_parse(b, sizeof(b), &g, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "string"));

        b[4] = 7; /* unknown version */
        assert_int_equal(gguf_parse(b, sizeof(b), &g, &err), -EOPNOTSUPP);
        memcpy(b, "GGUX", 4);
        assert_int_equal(gguf_parse(b, sizeof(b), &g, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "magic"));
}

static bool skip_none(const char *key)
{
        return false;
}

/* The writer's output reads back with the same keys and tensors; tensor data past the end is caught. */
static void test_writer_roundtrip(void **state)
{
        char path[] = "/tmp/npud-test-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        struct npu_err err = {};
        struct gguf_writer *w = NULL;
        assert_int_equal(gguf_writer_new(path, &w, &err), 0);
        assert_int_equal(gguf_writer_add_str(w, "general.architecture", "llama"), 0);
        assert_int_equal(gguf_writer_add_u32(w, "x.count", 7), 0);
        assert_int_equal(gguf_writer_add_f32(w, "x.f", 1.5f), 0);
        const char *strs[] = { "a", "bc", "" };
        assert_int_equal(gguf_writer_add_str_arr(w, "x.strs", strs, 3), 0);
        int64_t ne[2] = { 3, 2 };
        assert_int_equal(gguf_writer_add_tensor(w, "t0", GGML_TYPE_F32, 2, ne), 0);
        assert_int_equal(gguf_writer_add_tensor(w, "t1", GGML_TYPE_I8, 1, ne), 0);
        assert_int_equal(gguf_writer_write_header(w, &err), 0);
        float t0[6] = { 1, 2, 3, 4, 5, 6 };
        int8_t t1[3] = { -1, 0, 1 };
        assert_true(gguf_writer_write_tensor(w, t0, 8, &err) < 0); /* wrong size */
        assert_int_equal(gguf_writer_write_tensor(w, t0, sizeof(t0), &err), 0);
        assert_int_equal(gguf_writer_write_tensor(w, t1, sizeof(t1), &err), 0);
        assert_int_equal(gguf_writer_finish(w, &err), 0);
        gguf_writer_free(w);

        struct gguf *g = NULL;
        assert_int_equal(gguf_open(path, &g, &err), 0);
        uint32_t c;
        float f;
        assert_int_equal(gguf_get_u32(g, "x.count", &c, &err), 0);
        assert_int_equal(c, 7);
        assert_int_equal(gguf_get_f32(g, "x.f", &f, &err), 0);
        assert_true(f == 1.5f);
        const struct gguf_kv *kv;
        assert_int_equal(gguf_get_arr(g, "x.strs", GGUF_TYPE_STRING, &kv, &err), 0);
        assert_int_equal(kv->arr_n, 3);
        assert_true(gguf_str_eq(kv->arr_strs[1], "bc"));
        const struct gguf_tensor *t = gguf_find_tensor(g, "t0");
        assert_non_null(t);
        assert_int_equal(t->ne[1], 2);
        assert_memory_equal(t->data, t0, sizeof(t0));
        assert_memory_equal(gguf_find_tensor(g, "t1")->data, t1, 3);
        assert_int_equal(gguf_get_u32(g, "x.f", &c, &err), -EINVAL); /* type mismatch */

        /* copying keys reproduces them */
        char path2[] = "/tmp/npud-test-XXXXXX";
        fd = mkstemp(path2);
        close(fd);
        assert_int_equal(gguf_writer_new(path2, &w, &err), 0);
        assert_int_equal(gguf_writer_copy_kv(w, g, skip_none), 0);
        assert_int_equal(gguf_writer_write_header(w, &err), 0);
        assert_int_equal(gguf_writer_finish(w, &err), 0);
        gguf_writer_free(w);
        struct gguf *g2 = NULL;
        assert_int_equal(gguf_open(path2, &g2, &err), 0);
        assert_int_equal(g2->n_kv, g->n_kv);
        assert_int_equal(gguf_get_arr(g2, "x.strs", GGUF_TYPE_STRING, &kv, &err), 0);
        assert_true(gguf_str_eq(kv->arr_strs[0], "a"));
        gguf_free(g2);
        gguf_free(g);

        /* a truncated data section: the last tensor runs past the end */
        assert_int_equal(truncate(path, 200), 0);
        assert_true(gguf_open(path, &g, &err) < 0);
        assert_non_null(strstr(err.msg, path));
        unlink(path);
        unlink(path2);
}

static const enum ggml_type quant_cycle[] = {
        GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
        GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
};

/*
 * The widened small model with its matrices in every block type in turn
 * (a mixed file, as llama.cpp's Q4_K_M files are): written to path.
 */
static void write_mixed_model(const char *path)
{
        struct npu_err err = {};
        struct gguf *src = NULL;
        struct gguf_writer *w = NULL;
        assert_int_equal(gguf_open(WIDE_MODEL, &src, &err), 0);
        assert_int_equal(gguf_writer_new(path, &w, &err), 0);
        assert_int_equal(gguf_writer_copy_kv(w, src, skip_none), 0);
        enum ggml_type *types = calloc(src->n_tensors, sizeof(*types));
        for (uint64_t i = 0, q = 0; i < src->n_tensors; i++) {
                const struct gguf_tensor *t = &src->tensors[i];
                char name[128];
                snprintf(name, sizeof(name), "%.*s", (int)t->name.len, t->name.s);
                assert_int_equal(t->type, GGML_TYPE_F32);
                types[i] = t->n_dims == 2 ? quant_cycle[q++ % ARRAY_SIZE(quant_cycle)] : GGML_TYPE_F32;
                assert_int_equal(gguf_writer_add_tensor(w, name, types[i], t->n_dims, t->ne), 0);
        }
        assert_int_equal(gguf_writer_write_header(w, &err), 0);
        for (uint64_t i = 0; i < src->n_tensors; i++) {
                const struct gguf_tensor *t = &src->tensors[i];
                if (types[i] == GGML_TYPE_F32) {
                        assert_int_equal(gguf_writer_write_tensor(w, t->data, t->nbytes, &err), 0);
                        continue;
                }
                const size_t rb = quant_row_bytes(types[i], t->ne[0]);
                uint8_t *row = malloc(rb);
                for (int64_t r = 0; r < t->ne[1]; r++) {
                        quantize_row_blocks(types[i], (const float *)t->data + r * t->ne[0], t->ne[0], row);
                        assert_int_equal(gguf_writer_write_tensor_part(w, row, rb, &err), 0);
                }
                assert_int_equal(gguf_writer_end_tensor(w, &err), 0);
                free(row);
        }
        assert_int_equal(gguf_writer_finish(w, &err), 0);
        gguf_writer_free(w);
        gguf_free(src);
        free(types);
}

static int mixed_setup(void **state)
{
        static char path[64];
        strcpy(path, "/tmp/npud-test-mixed-XXXXXX");
        int fd = mkstemp(path);
        if (fd < 0)
                return -1;
        close(fd);
        write_mixed_model(path);
        *state = path;
        return 0;
}

static int mixed_teardown(void **state)
{
        unlink(*state);
        return 0;
}

/* A file mixing every block type loads; every matrix keeps its type. */
static void test_mixed_types_load(void **state)
{
        struct npu_err err = {};
        struct npu_model *m = NULL;
        assert_int_equal(model_load(*state, &m, &err), 0);
        bool seen[_GGML_TYPE_MAX] = {};
        for (int l = 0; l < m->hp.n_layers; l++) {
                const struct npu_weight *ws = &m->layers[l].wq;
                for (int j = 0; j < 7; j++)
                        seen[ws[j].type] = true;
        }
        seen[m->tok_embd.type] = seen[m->output.type] = true;
        for (size_t i = 0; i < ARRAY_SIZE(quant_cycle); i++)
                assert_true(seen[quant_cycle[i]]);
        model_free(m);
}

/* The offset in the file of tensor i's type field (after its name, dimension count and dimensions). */
static size_t tensor_type_offset(const uint8_t *buf, const struct gguf *g, uint64_t i)
{
        const struct gguf_tensor *t = &g->tensors[i];
        return (size_t)((const uint8_t *)t->name.s - buf) + t->name.len + 4 + 8 * t->n_dims;
}

/* A type npud cannot read (IQ*, TQ*, ...) is refused at load, by its name and the tensor's. */
static void test_unknown_types(void **state)
{
        static const struct {
                uint32_t type;
                const char *name;
        } unknown[] = { { 16, "IQ2_XXS" }, { 20, "IQ4_NL" }, { 23, "IQ4_XS" }, { 29, "IQ1_M" },
                        { 34, "TQ1_0" },   { 35, "TQ2_0" },  { 39, "MXFP4" },  { 15, "Q8_K" },
                        { 31, "unknown" }, { 1000, "unknown" } };
        size_t n;
        _cleanup_free_ uint8_t *buf = read_all(*state, &n);
        struct npu_err err = {};
        struct gguf *g = NULL;
        assert_int_equal(gguf_parse(buf, n, &g, &err), 0);
        const uint64_t victim = g->n_tensors / 2;
        char tname[128];
        snprintf(tname, sizeof(tname), "%.*s", (int)g->tensors[victim].name.len, g->tensors[victim].name.s);
        const size_t off = tensor_type_offset(buf, g, victim);
        uint32_t was;
        memcpy(&was, buf + off, 4);
        assert_int_equal(was, g->tensors[victim].type);
        gguf_free(g);
        for (size_t i = 0; i < ARRAY_SIZE(unknown); i++) {
                memcpy(buf + off, &unknown[i].type, 4);
                g = NULL;
                assert_int_equal(gguf_parse(buf, n, &g, &err), -EOPNOTSUPP);
                assert_null(g);
                assert_non_null(strstr(err.msg, unknown[i].name));
                assert_non_null(strstr(err.msg, tname));
        }
}

/* Two tensors whose bytes overlap are refused, by both names. */
static void test_overlapping_tensors(void **state)
{
        size_t n;
        _cleanup_free_ uint8_t *buf = read_all(*state, &n);
        struct npu_err err = {};
        struct gguf *g = NULL;
        assert_int_equal(gguf_parse(buf, n, &g, &err), 0);
        assert_true(g->n_tensors >= 3);
        /* the last tensor's offset moved onto the one before it in the file */
        uint64_t last = 0, prev = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++)
                if (g->tensors[i].offset > g->tensors[last].offset)
                        last = i;
        for (uint64_t i = 0; i < g->n_tensors; i++)
                if (i != last && g->tensors[i].offset > g->tensors[prev].offset)
                        prev = i;
        char a[128], b[128];
        snprintf(a, sizeof(a), "'%.*s'", (int)g->tensors[prev].name.len, g->tensors[prev].name.s);
        snprintf(b, sizeof(b), "'%.*s'", (int)g->tensors[last].name.len, g->tensors[last].name.s);
        const size_t at = tensor_type_offset(buf, g, last) + 4;
        const uint64_t was = g->tensors[last].offset, onto = g->tensors[prev].offset;
        assert_int_equal(memcmp(buf + at, &was, 8), 0);
        gguf_free(g);
        memcpy(buf + at, &onto, 8);
        g = NULL;
        assert_int_equal(gguf_parse(buf, n, &g, &err), -EBADMSG);
        assert_null(g);
        assert_non_null(strstr(err.msg, "overlap"));
        assert_non_null(strstr(err.msg, a));
        assert_non_null(strstr(err.msg, b));
        /* back in its place, the file loads again */
        memcpy(buf + at, &was, 8);
        assert_int_equal(gguf_parse(buf, n, &g, &err), 0);
        gguf_free(g);
}

/* Where a block of type t keeps its f16 scale d. */
static size_t scale_offset(enum ggml_type t)
{
        switch (t) {
        case GGML_TYPE_Q2_K: return offsetof(struct block_q2_K, d);
        case GGML_TYPE_Q3_K: return offsetof(struct block_q3_K, d);
        case GGML_TYPE_Q6_K: return offsetof(struct block_q6_K, d);
        default: return 0; /* Q4_0 .. Q8_0, Q4_K, Q5_K: d first */
        }
}

/* The first matrix of type t with more than two rows. */
static const struct gguf_tensor *first_of_type(const struct gguf *g, enum ggml_type t)
{
        for (uint64_t i = 0; i < g->n_tensors; i++)
                if (g->tensors[i].type == t && g->tensors[i].n_dims == 2 && g->tensors[i].ne[1] > 2)
                        return &g->tensors[i];
        return NULL;
}

/* In every block type, a block scale that is NaN or infinite is refused by tensor, type, row and block. */
static void test_corrupt_quant_tensor(void **state)
{
        size_t n;
        _cleanup_free_ uint8_t *buf = read_all(*state, &n);
        for (size_t q = 0; q < ARRAY_SIZE(quant_cycle); q++) {
                for (int inf = 0; inf < 2; inf++) {
                        struct npu_err err = {};
                        struct gguf *g = NULL;
                        assert_int_equal(gguf_parse(buf, n, &g, &err), 0);
                        const struct gguf_tensor *t = first_of_type(g, quant_cycle[q]);
                        assert_non_null(t);
                        char tname[128];
                        snprintf(tname, sizeof(tname), "'%.*s' (%s)", (int)t->name.len, t->name.s,
                                 ggml_type_name(t->type));
                        /* the scale of the third block of row 2 (of its last block when it has fewer) */
                        const int64_t blocks = t->ne[0] / (int64_t)ggml_type_block_elems(t->type);
                        const int64_t b = MIN(2, blocks - 1);
                        char where[64];
                        snprintf(where, sizeof(where), "block %lld of row 2", (long long)b);
                        const size_t at = (size_t)((const uint8_t *)t->data - buf) + 2 * (t->nbytes / t->ne[1]) +
                                          (size_t)b * ggml_type_block_bytes(t->type) + scale_offset(t->type);
                        gguf_free(g);
                        const uint8_t was[2] = { buf[at], buf[at + 1] };
                        buf[at] = inf ? 0x00 : 0xff;
                        buf[at + 1] = inf ? 0xfc : 0x7f; /* -inf, NaN */
                        assert_int_equal(gguf_parse(buf, n, &g, &err), 0);
                        struct npu_model *m = NULL;
                        assert_int_equal(model_from_gguf(g, "corrupt", &m, &err), -EBADMSG);
                        assert_null(m);
                        if (!strstr(err.msg, tname) || !strstr(err.msg, where))
                                fail_msg("%s: '%s' does not name the tensor, row and block", tname, err.msg);
                        gguf_free(g);
                        buf[at] = was[0];
                        buf[at + 1] = was[1];
                }
        }
}

/* In every block type, a file that ends inside a tensor's data is refused by that tensor's name. */
static void test_truncated_quant_tensor(void **state)
{
        size_t n;
        _cleanup_free_ uint8_t *buf = read_all(*state, &n);
        struct npu_err err = {};
        struct gguf *g0 = NULL;
        assert_int_equal(gguf_parse(buf, n, &g0, &err), 0);
        for (size_t q = 0; q < ARRAY_SIZE(quant_cycle); q++) {
                const struct gguf_tensor *t = first_of_type(g0, quant_cycle[q]);
                assert_non_null(t);
                char tname[128];
                snprintf(tname, sizeof(tname), "tensor '%.*s'", (int)t->name.len, t->name.s);
                const size_t len = (size_t)((const uint8_t *)t->data - buf) + t->nbytes - 1;
                struct gguf *g = NULL;
                assert_int_equal(gguf_parse(buf, len, &g, &err), -EBADMSG);
                assert_null(g);
                if (!strstr(err.msg, tname) || !strstr(err.msg, "runs past the end"))
                        fail_msg("%s cut one byte short: '%s'", tname, err.msg);
        }
        gguf_free(g0);
}

/* Fuzz the mixed file: truncations are refused with a message, bit flips load or fail cleanly (ASan watches). */
static void test_fuzz_quantized(void **state)
{
        size_t n;
        _cleanup_free_ uint8_t *buf = read_all(*state, &n);
        struct npu_err err = {};
        struct gguf *g0 = NULL;
        assert_int_equal(gguf_parse(buf, n, &g0, &err), 0);
        const size_t header = g0->data_offset;
        gguf_free(g0);

        for (size_t len = 0; len < n; len += (len < header ? 7 : 4099)) {
                struct gguf *g = NULL;
                assert_true(gguf_parse(buf, len, &g, &err) < 0);
                assert_null(g);
                assert_true(strlen(err.msg) > 0);
        }
        uint64_t seed = 99;
        int refused = 0, loaded = 0;
        for (int iter = 0; iter < 400; iter++) {
                _cleanup_free_ uint8_t *copy = malloc(n);
                memcpy(copy, buf, n);
                for (int f = 0; f < 1 + (int)(test_rng(&seed) % 64); f++) {
                        /* flips in the header, or in the tensor data (scales included) */
                        size_t pos = iter % 2 ? test_rng(&seed) % header : header + test_rng(&seed) % (n - header);
                        copy[pos] ^= (uint8_t)(1u << (test_rng(&seed) % 8));
                }
                struct gguf *g = NULL;
                memset(&err, 0, sizeof(err));
                if (gguf_parse(copy, n, &g, &err) < 0) {
                        assert_true(strlen(err.msg) > 0);
                        refused++;
                        continue;
                }
                struct npu_model *m = NULL;
                if (model_from_gguf(g, "flipped", &m, &err) < 0) {
                        assert_true(strlen(err.msg) > 0);
                        gguf_free(g);
                        refused++;
                } else {
                        /* whatever was flipped, the model reads every matrix without fault */
                        float *row = malloc(sizeof(float) * m->hp.ffn_dim * 2);
                        for (int l = 0; l < m->hp.n_layers; l++) {
                                const struct npu_weight *ws = &m->layers[l].wq;
                                for (int j = 0; j < 7; j++)
                                        weight_row_f32(&ws[j], ws[j].rows - 1, row);
                        }
                        free(row);
                        model_free(m);
                        loaded++;
                }
        }
        print_message("quantized fuzz: %d refused, %d loaded\n", refused, loaded);
        assert_true(refused > 0 && loaded > 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid_model),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_bit_flips),
                cmocka_unit_test(test_hostile),
                cmocka_unit_test(test_writer_roundtrip),
                cmocka_unit_test_setup_teardown(test_mixed_types_load, mixed_setup, mixed_teardown),
                cmocka_unit_test_setup_teardown(test_unknown_types, mixed_setup, mixed_teardown),
                cmocka_unit_test_setup_teardown(test_overlapping_tensors, mixed_setup, mixed_teardown),
                cmocka_unit_test_setup_teardown(test_corrupt_quant_tensor, mixed_setup, mixed_teardown),
                cmocka_unit_test_setup_teardown(test_truncated_quant_tensor, mixed_setup, mixed_teardown),
                cmocka_unit_test_setup_teardown(test_fuzz_quantized, mixed_setup, mixed_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
