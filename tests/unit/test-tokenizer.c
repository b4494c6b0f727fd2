/* SPDX-License-Identifier: MIT */
/* Llama 2 tokenizer from both sources: known ids, agreement, exact UTF-8 round trips, corrupt input. */
#include "gguf.h"
#include "test-helpers.h"
#include "vocab.h"

static struct npu_vocab *spm, *ggv;

static int setup(void **state)
{
        struct npu_err err = {};
        struct gguf *g = NULL;
        if (vocab_from_spm_file(LLAMA_SPM, &spm, &err) < 0 || gguf_open(LLAMA_GGUF_VOCAB, &g, &err) < 0 ||
            vocab_from_gguf(g, &ggv, &err) < 0) {
                fprintf(stderr, "setup: %s\n", err.msg);
                return -1;
        }
        gguf_free(g);
        return 0;
}

static int teardown(void **state)
{
        vocab_free(spm);
        vocab_free(ggv);
        return 0;
}

static void expect_ids(struct npu_vocab *v, const char *text, const int32_t *want, size_t n_want)
{
        int32_t *ids;
        size_t n;
        assert_int_equal(vocab_tokenize(v, text, strlen(text), true, false, &ids, &n), 0);
        assert_int_equal(n, n_want);
        assert_memory_equal(ids, want, n * sizeof(int32_t));
        free(ids);
}

static void test_known_ids(void **state)
{
        /* ids as SentencePiece gives them for Llama 2 */
        static const int32_t hello[] = { 1, 15043, 3186 };
        static const int32_t lines[] = { 1, 1196, 697, 13, 1220, 1023 };
        static const int32_t emoji[] = { 1, 953, 29877, 2397, 29871, 243, 162, 145, 140, 243, 162, 157, 131, 1095 };
        static const int32_t space[] = { 1, 259 };
        static const int32_t empty[] = { 1 };
        struct npu_vocab *vs[] = { spm, ggv };
        for (size_t i = 0; i < 2; i++) {
                expect_ids(vs[i], "Hello world", hello, 3);
                expect_ids(vs[i], "line one\nline two", lines, 6);
                expect_ids(vs[i], "emoji 🎉🚀 end", emoji, 14);
                expect_ids(vs[i], " ", space, 2);
                expect_ids(vs[i], "", empty, 1);
        }
        assert_int_equal(spm->bos, 1);
        assert_int_equal(spm->eos, 2);
        assert_int_equal(ggv->n, spm->n);
}

static void roundtrip(struct npu_vocab *v, const char *text, size_t len)
{
        int32_t *ids;
        size_t n;
        char *back;
        assert_int_equal(vocab_tokenize(v, text, len, false, false, &ids, &n), 0);
        assert_int_equal(vocab_detokenize(v, ids, n, &back), 0);
        assert_int_equal(strlen(back), len);
        assert_memory_equal(back, text, len);
        free(back);
        free(ids);
}

static void test_roundtrip(void **state)
{
        static const char *texts[] = {
                "Hello world", "  leading spaces", "trailing  ", "tabs\tand\nnewlines\r\n",
                "héllo wörld", "Привет мир", "日本語のテキスト", "emoji 🎉🚀👩‍👩‍👧", "\x7f control \x01\x02",
                "code: if (a && b) { return x[i] << 2; }", "🎉🎉🎉🎉🎉🎉",
        };
        for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
                roundtrip(spm, texts[i], strlen(texts[i]));
                roundtrip(ggv, texts[i], strlen(texts[i]));
        }
        /* arbitrary bytes, valid UTF-8 or not, come back exactly through byte fallback */
        uint64_t seed = 7;
        for (int iter = 0; iter < 200; iter++) {
                char buf[64];
                size_t len = 1 + test_rng(&seed) % sizeof(buf);
                for (size_t i = 0; i < len; i++) {
                        buf[i] = (char)(test_rng(&seed) % 255 + 1);
                        if (i == 0 && buf[0] == ' ')
                                buf[0] = 'x'; /* the dummy-prefix space is dropped by design */
                }
                roundtrip(spm, buf, len);
        }
}

static void test_special_parsing(void **state)
{
        int32_t *ids;
        size_t n;
        const char *t = "<s>Hi</s>";
        assert_int_equal(vocab_tokenize(spm, t, strlen(t), false, true, &ids, &n), 0);
        assert_true(n >= 3);
        assert_int_equal(ids[0], 1);
        assert_int_equal(ids[n - 1], 2);
        free(ids);
        /* without special parsing the text stays text */
        assert_int_equal(vocab_tokenize(spm, t, strlen(t), false, false, &ids, &n), 0);
        for (size_t i = 0; i < n; i++)
                assert_true(ids[i] != 1 && ids[i] != 2);
        free(ids);
}

static void test_corrupt_model(void **state)
{
        FILE *f = fopen(LLAMA_SPM, "re");
        assert_non_null(f);
        static uint8_t buf[600000];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        struct npu_err err = {};
        struct npu_vocab *v = NULL;
        /* truncations: rejected with a message or parsed into a smaller valid vocabulary; never a crash */
        for (size_t len = 0; len < n; len += 4099) {
                if (vocab_from_spm_buffer(buf, len, &v, &err) == 0)
                        vocab_free(v);
        }
        assert_true(vocab_from_spm_buffer(buf, 10, &v, &err) < 0);
        assert_true(strlen(err.msg) > 0);
        uint64_t seed = 3;
        for (int iter = 0; iter < 50; iter++) {
                uint8_t *c = malloc(n);
                memcpy(c, buf, n);
                for (int k = 0; k < 8; k++)
                        c[test_rng(&seed) % n] ^= (uint8_t)test_rng(&seed);
                if (vocab_from_spm_buffer(c, n, &v, &err) == 0)
                        vocab_free(v);
                free(c);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_known_ids),
                cmocka_unit_test(test_roundtrip),
                cmocka_unit_test(test_special_parsing),
                cmocka_unit_test(test_corrupt_model),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
