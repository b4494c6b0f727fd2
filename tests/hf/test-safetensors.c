/* SPDX-License-Identifier: MIT */
/* safetensors reader: valid files parse; headers that lie are rejected with a message naming the problem; fuzz. */
#include <fcntl.h>
#include <sys/stat.h>

#include "fp16.h"
#include "safetensors.h"
#include "test-helpers.h"

/* 8-byte length, the JSON, then data_len bytes of data (a byte pattern). */
static uint8_t *build(const char *json, size_t data_len, size_t *ret_n)
{
        size_t hlen = strlen(json), n = 8 + hlen + data_len;
        uint8_t *b = malloc(n);
        assert_non_null(b);
        for (int i = 0; i < 8; i++)
                b[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
        memcpy(b + 8, json, hlen);
        for (size_t i = 0; i < data_len; i++)
                b[8 + hlen + i] = (uint8_t)(i * 7 + 1);
        *ret_n = n;
        return b;
}

static void set_hlen(uint8_t *b, uint64_t hlen)
{
        for (int i = 0; i < 8; i++)
                b[i] = (uint8_t)(hlen >> (8 * i));
}

/* Parse json + data_len bytes; expect r and (when r < 0) a message containing each of the given strings. */
static void expect(const char *json, size_t data_len, int want, const char *s1, const char *s2)
{
        size_t n;
        _cleanup_free_ uint8_t *b = build(json, data_len, &n);
        struct npu_err err = {};
        struct safetensors *st = NULL;
        int r = safetensors_parse(b, n, "model.safetensors", &st, &err);

        if (r != want || (s1 && !strstr(err.msg, s1)) || (s2 && !strstr(err.msg, s2)))
                print_message("json %s -> %d '%s'\n", json, r, err.msg);
        assert_int_equal(r, want);
        if (want < 0) {
                assert_null(st);
                assert_true(strlen(err.msg) > 0);
                assert_non_null(strstr(err.msg, "model.safetensors"));
                if (s1)
                        assert_non_null(strstr(err.msg, s1));
                if (s2)
                        assert_non_null(strstr(err.msg, s2));
        }
        safetensors_free(st);
}

#define VALID_JSON                                                                     \
        "{\"__metadata__\":{\"format\":\"pt\"},"                                       \
        "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"            \
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"           \
        "\"c\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[32,40]},"         \
        "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[40,44]}}    "

static void test_valid(void **state)
{
        size_t n;
        _cleanup_free_ uint8_t *b = build(VALID_JSON, 44, &n);
        struct npu_err err = {};
        struct safetensors *st = NULL;
        float out[6];

        /* known values: a = 0..5, b = f16 1.5, c = bf16 -2, s = 7 */
        uint8_t *data = b + n - 44;
        for (int i = 0; i < 6; i++) {
                float f = (float)i;
                memcpy(data + 4 * i, &f, 4);
        }
        for (int i = 0; i < 4; i++) {
                npu_f16 h = f32_to_f16(1.5f);
                memcpy(data + 24 + 2 * i, &h, 2);
                npu_bf16 g = f32_to_bf16(-2.0f);
                memcpy(data + 32 + 2 * i, &g, 2);
        }
        float seven = 7;
        memcpy(data + 40, &seven, 4);

        assert_int_equal(safetensors_parse(b, n, "dir/model.safetensors", &st, &err), 0);
        assert_string_equal(st->name, "model.safetensors");
        assert_int_equal(st->n_tensors, 4);
        assert_int_equal(st->data_size, 44);
        const struct st_tensor *a = safetensors_find(st, "a"), *t;
        assert_non_null(a);
        assert_int_equal(a->type, GGML_TYPE_F32);
        assert_int_equal(a->n_dims, 2);
        assert_int_equal(a->shape[0], 2);
        assert_int_equal(a->shape[1], 3);
        assert_int_equal(a->n_elements, 6);
        assert_int_equal(st_tensor_read_f32(a, 1, 5, out), 0);
        for (int i = 0; i < 5; i++)
                assert_true(out[i] == (float)(i + 1));
        assert_int_equal(st_tensor_read_f32(a, 2, 5, out), -ERANGE);
        assert_int_equal(st_tensor_read_f32(a, UINT64_MAX, 2, out), -ERANGE);
        t = safetensors_find(st, "b");
        assert_int_equal(t->type, GGML_TYPE_F16);
        assert_int_equal(st_tensor_read_f32(t, 0, 4, out), 0);
        assert_true(out[3] == 1.5f);
        t = safetensors_find(st, "c");
        assert_int_equal(t->type, GGML_TYPE_BF16);
        assert_int_equal(st_tensor_read_f32(t, 0, 4, out), 0);
        assert_true(out[0] == -2.0f);
        t = safetensors_find(st, "s");
        assert_int_equal(t->n_dims, 0);
        assert_int_equal(t->n_elements, 1);
        assert_int_equal(st_tensor_read_f32(t, 0, 1, out), 0);
        assert_true(out[0] == 7.0f);
        assert_null(safetensors_find(st, "__metadata__"));
        assert_null(safetensors_find(st, "missing"));
        /* sorted by offset */
        for (size_t i = 1; i < st->n_tensors; i++)
                assert_true(st->tensors[i].begin >= st->tensors[i - 1].end);
        safetensors_free(st);
}

#define E(name, body) "{\"" name "\":" body "}"

static void test_lying_offsets(void **state)
{
        expect(E("x", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[10,99]}"), 64, -EBADMSG,
               "tensor 'x': data_offsets [10, 99] run past the 64-byte data section", NULL);
        /* truncated data: the header is right, the file is short */
        expect(E("x", "{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,64]}"), 63, -EBADMSG,
               "run past the 63-byte data section", NULL);
        expect(E("x", "{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}"), 64, -EBADMSG,
               "tensor 'x': data_offsets [8, 0] end before they begin", NULL);
        expect(E("x", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}"), 64, -EBADMSG,
               "run past", NULL);
        expect(E("x", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}"), 64, -EBADMSG,
               "data_offsets[0] is negative", NULL);
        expect(E("x", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0.0,8]}"), 64, -EBADMSG,
               "data_offsets[0] is a double, not an integer", NULL);
        expect(E("x", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}"), 64, -EBADMSG,
               "data_offsets is not an array of two integers", NULL);
        expect(E("x", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":\"0,8\"}"), 64, -EBADMSG,
               "data_offsets is not an array", NULL);
        expect(E("x", "{\"dtype\":\"F32\",\"shape\":[2]}"), 64, -EBADMSG, "tensor 'x': no data_offsets", NULL);
}

static void test_lying_shapes(void **state)
{
        expect(E("w", "{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}"), 64, -EBADMSG,
               "tensor 'w'", "hold 20 bytes, but 6 elements of F32 need 24");
        expect(E("w", "{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,24]}"), 64, -EBADMSG,
               "hold 24 bytes, but 6 elements of F16 need 12", NULL);
        expect(E("w", "{\"dtype\":\"F32\",\"shape\":[-2,3],\"data_offsets\":[0,24]}"), 64, -EBADMSG,
               "tensor 'w': shape[0] is negative", NULL);
        expect(E("w", "{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}"), 64,
               -EBADMSG, "element count of the shape overflows", NULL);
        expect(E("w", "{\"dtype\":\"F32\",\"shape\":[4611686018427387904,2],\"data_offsets\":[0,0]}"), 64,
               -EBADMSG, "overflows", NULL);
        /* elements fit in 64 bits, bytes do not */
        expect(E("w", "{\"dtype\":\"F32\",\"shape\":[4611686018427387905],\"data_offsets\":[0,4]}"), 64, -EBADMSG,
               "byte size of the shape overflows", NULL);
        expect(E("w", "{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}"), 64, -EOPNOTSUPP,
               "shape has 5 dimensions", NULL);
        expect(E("w", "{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}"), 64, -EBADMSG,
               "shape[0] is a string, not an integer", NULL);
        expect(E("w", "{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,8]}"), 64, -EBADMSG,
               "shape is a object, not an array", NULL);
        expect(E("w", "{\"dtype\":\"F32\",\"data_offsets\":[0,8]}"), 64, -EBADMSG, "tensor 'w': no shape", NULL);
}

static void test_lying_dtypes(void **state)
{
        expect(E("d", "{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}"), 64, -EOPNOTSUPP,
               "tensor 'd': dtype 'I64' is not supported", NULL);
        expect(E("d", "{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}"), 64, -EOPNOTSUPP, "'F64'", NULL);
        expect(E("d", "{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}"), 64, -EOPNOTSUPP, "'f32'", NULL);
        expect(E("d", "{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}"), 64, -EBADMSG,
               "dtype is a int, not a string", NULL);
        expect(E("d", "{\"shape\":[2],\"data_offsets\":[0,8]}"), 64, -EBADMSG, "tensor 'd': no dtype", NULL);
        expect(E("d", "[1,2]"), 64, -EBADMSG, "tensor 'd': entry is a array, not an object", NULL);
}

static void test_overlap(void **state)
{
        expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[12,28]}}",
               64, -EBADMSG, "tensors 'a' [0, 16] and 'b' [12, 28] overlap", NULL);
        /* the same range twice */
        expect("{\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"a\":{\"dtype\":\"F16\",\"shape\":[8],\"data_offsets\":[0,16]}}",
               64, -EBADMSG, "overlap", NULL);
        /* adjacent is fine, and so are gaps */
        expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]},"
               "\"c\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[32,32]},"
               "\"d\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[40,48]}}",
               64, 0, NULL, NULL);
}

static void test_bad_json(void **state)
{
        expect("[1,2]", 8, -EBADMSG, "header is a JSON array, not an object", NULL);
        expect("123", 8, -EBADMSG, "header is a JSON int, not an object", NULL);
        expect("\"str\"", 8, -EBADMSG, "not an object", NULL);
        expect("{\"a\":", 8, -EBADMSG, "header is not valid JSON", NULL);
        expect("{\"a\":{}} xx", 8, -EBADMSG, "trailing bytes", NULL);
        expect("{} {}", 8, -EBADMSG, "trailing bytes", NULL);
        expect("{\"a\":{\"dtype\":\"F32\"\0}}", 8, -EBADMSG, "not valid JSON", NULL);
        expect("  ", 8, -EBADMSG, "not valid JSON", NULL);
        /* deep nesting is refused by the tokenizer, not by the stack */
        char deep[4096];
        size_t k = 0;
        deep[k++] = '{';
        deep[k++] = '"';
        deep[k++] = 'm';
        deep[k++] = '"';
        deep[k++] = ':';
        for (int i = 0; i < 1000; i++)
                deep[k++] = '[';
        for (int i = 0; i < 1000; i++)
                deep[k++] = ']';
        deep[k++] = '}';
        deep[k] = 0;
        expect(deep, 8, -EBADMSG, "not valid JSON", NULL);
        /* an empty object is a file with no tensors */
        expect("{}", 0, 0, NULL, NULL);
        expect("{\"__metadata__\":{\"a\":\"b\"}}", 0, 0, NULL, NULL);
}

static void test_header_length(void **state)
{
        size_t n;
        struct npu_err err = {};
        struct safetensors *st = NULL;
        _cleanup_free_ uint8_t *b = build(VALID_JSON, 44, &n);

        set_hlen(b, 1000);
        assert_int_equal(safetensors_parse(b, n, "model.safetensors", &st, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "header length 1000 runs past the end"));
        set_hlen(b, UINT64_MAX);
        assert_int_equal(safetensors_parse(b, n, "model.safetensors", &st, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "exceeds the"));
        set_hlen(b, (uint64_t)SAFETENSORS_MAX_HEADER + 1);
        assert_int_equal(safetensors_parse(b, n, "model.safetensors", &st, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "exceeds the"));
        set_hlen(b, 0);
        assert_int_equal(safetensors_parse(b, n, "model.safetensors", &st, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "too short for a JSON object"));
        /* a header length that cuts the JSON short */
        set_hlen(b, 20);
        assert_int_equal(safetensors_parse(b, n, "model.safetensors", &st, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "not valid JSON"));
        /* shorter than the length field itself */
        for (size_t len = 0; len < 8; len++) {
                assert_int_equal(safetensors_parse(b, len, "model.safetensors", &st, &err), -EBADMSG);
                assert_non_null(strstr(err.msg, "too short for the 8-byte header length"));
        }
        assert_null(st);
}

/* Every truncation of a valid file fails cleanly, except cuts that keep all tensor data. */
static void test_truncations(void **state)
{
        size_t n;
        _cleanup_free_ uint8_t *b = build(VALID_JSON, 44, &n);
        struct npu_err err = {};

        for (size_t len = 0; len < n; len++) {
                _cleanup_free_ uint8_t *copy = malloc(len ? len : 1);
                memcpy(copy, b, len);
                struct safetensors *st = NULL;
                int r = safetensors_parse(copy, len, "model.safetensors", &st, &err);
                assert_true(r < 0);
                assert_null(st);
                assert_true(strlen(err.msg) > 0);
        }
}

/* Read every tensor of a parsed file in full: ASan catches any read outside the buffer. */
static void touch_all(const struct safetensors *st)
{
        for (size_t i = 0; i < st->n_tensors; i++) {
                const struct st_tensor *t = &st->tensors[i];
                assert_true(t->end <= st->data_size);
                assert_true(t->end - t->begin == t->n_elements * st_type_size(t->type));
                float buf[64];
                for (uint64_t e = 0; e < t->n_elements; e += 64) {
                        uint64_t k = MIN(64u, t->n_elements - e);
                        assert_int_equal(st_tensor_read_f32(t, e, k, buf), 0);
                }
        }
}

/* Deterministic fuzz: bit flips and digit changes in the header, random truncations. */
static void test_fuzz(void **state)
{
        size_t n;
        _cleanup_free_ uint8_t *b = build(VALID_JSON, 44, &n);
        uint64_t seed = 0x5afe7e550000001ull;
        size_t hend = n - 44;
        int ok = 0, rejected = 0;

        for (int iter = 0; iter < 5000; iter++) {
                _cleanup_free_ uint8_t *copy = malloc(n);
                memcpy(copy, b, n);
                size_t len = n;
                int kind = (int)(test_rng(&seed) % 4);
                if (kind == 0) {
                        int flips = 1 + (int)(test_rng(&seed) % 4);
                        for (int f = 0; f < flips; f++)
                                copy[test_rng(&seed) % hend] ^= (uint8_t)(1u << (test_rng(&seed) % 8));
                } else if (kind == 1) {
                        /* change one digit: keeps the JSON valid, makes the header lie */
                        for (int tries = 0; tries < 64; tries++) {
                                size_t pos = 8 + test_rng(&seed) % (hend - 8);
                                if (copy[pos] >= '0' && copy[pos] <= '9') {
                                        copy[pos] = (uint8_t)('0' + test_rng(&seed) % 10);
                                        break;
                                }
                        }
                } else if (kind == 2) {
                        len = test_rng(&seed) % (n + 1);
                } else {
                        /* flip in the length field */
                        copy[test_rng(&seed) % 8] ^= (uint8_t)(1u << (test_rng(&seed) % 8));
                }
                /* a right-sized private buffer so ASan sees any overrun */
                _cleanup_free_ uint8_t *exact = malloc(len ? len : 1);
                memcpy(exact, copy, len);
                struct npu_err err = {};
                struct safetensors *st = NULL;
                int r = safetensors_parse(exact, len, "fuzz.safetensors", &st, &err);
                if (r < 0) {
                        assert_null(st);
                        assert_true(strlen(err.msg) > 0);
                        rejected++;
                        continue;
                }
                touch_all(st);
                safetensors_free(st);
                ok++;
        }
        assert_true(rejected > 1000);
        assert_true(ok > 10);
}

static void test_open_file(void **state)
{
        char path[] = "/tmp/npud-st-XXXXXX";
        int fd = mkstemp(path);
        size_t n;
        _cleanup_free_ uint8_t *b = build(VALID_JSON, 44, &n);
        struct npu_err err = {};
        struct safetensors *st = NULL;

        assert_true(fd >= 0);
        assert_int_equal(write(fd, b, n), (ssize_t)n);
        assert_int_equal(safetensors_open(path, &st, &err), 0);
        assert_int_equal(st->n_tensors, 4);
        touch_all(st);
        safetensors_free(st);

        assert_int_equal(ftruncate(fd, 5), 0);
        assert_int_equal(safetensors_open(path, &st, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "too short"));
        close(fd);
        unlink(path);

        assert_int_equal(safetensors_open(path, &st, &err), -ENOENT);
        assert_non_null(strstr(err.msg, path));
        assert_int_equal(safetensors_open("/tmp", &st, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "not a regular file"));
        assert_null(st);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid),
                cmocka_unit_test(test_lying_offsets),
                cmocka_unit_test(test_lying_shapes),
                cmocka_unit_test(test_lying_dtypes),
                cmocka_unit_test(test_overlap),
                cmocka_unit_test(test_bad_json),
                cmocka_unit_test(test_header_length),
                cmocka_unit_test(test_truncations),
                cmocka_unit_test(test_fuzz),
                cmocka_unit_test(test_open_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
