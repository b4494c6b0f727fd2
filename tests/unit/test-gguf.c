/* SPDX-License-Identifier: MIT */
/* GGUF reader: a valid file parses; truncated, bit-flipped and hostile files are rejected, never crash. */
#include <fcntl.h>
#include <sys/stat.h>

#include "gguf.h"
#include "model.h"
#include "test-helpers.h"

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

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid_model),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_bit_flips),
                cmocka_unit_test(test_hostile),
                cmocka_unit_test(test_writer_roundtrip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
