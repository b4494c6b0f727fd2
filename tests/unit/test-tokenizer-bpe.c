/* SPDX-License-Identifier: MIT */
/*
 * Byte-level BPE (Llama 3, Qwen2): token ids equal to those of an
 * implementation no one here wrote (bpe-vectors/NAME.vec, from the JavaScript
 * port of Hugging Face's tokenizers, see gen.js), with PCRE2's JIT, with its
 * interpreter, and where executable memory is denied (as under npud.service's
 * MemoryDenyWriteExecute=yes); exact byte round trips; special tokens only
 * when asked; end-of-generation tokens; named errors for bad vocabularies.
 *
 * NPU_BPE_VECTORS=DIR takes llama3.vec and qwen2.vec from DIR instead
 * (bpe-vectors/reference.sh: vectors the reference writes at test time).
 *
 * NPU_LLAMACPP_MODELS=/path/to/llama.cpp/models also runs llama.cpp's own
 * vectors (ggml-vocab-*.gguf.inp/.out) for llama-bpe, qwen2, gpt-2 and
 * deepseek-llm, with add_special and parse_special off as llama.cpp's
 * test-tokenizer-0 runs them.
 */
#include <limits.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "bpe.h"
#include "gguf.h"
#include "pretokenize.h"
#include "test-helpers.h"
#include "unicode.h"
#include "vocab.h"

#define LLAMA3_VOCAB SHARED_DIR "/tokenizer/ggml-vocab-llama3.gguf"
#define QWEN2_VOCAB SHARED_DIR "/tokenizer/ggml-vocab-qwen2.gguf"

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif

struct vec_case {
        char *bytes;
        size_t len;
        int32_t *ids;
        size_t n;
};

struct vec_file {
        struct vec_case *c;
        size_t n;
};

static struct npu_vocab *llama3, *qwen2;
static struct vec_file llama3_vec, qwen2_vec;

static int hexval(char c)
{
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void load_vectors(const char *path, struct vec_file *vf)
{
        FILE *f = fopen(path, "re");
        char *line = NULL;
        size_t cap = 0;
        ssize_t got;

        assert_non_null(f);
        while ((got = getline(&line, &cap, f)) > 0) {
                if (line[0] == '#')
                        continue;
                char *tab = strchr(line, '\t');
                assert_non_null(tab);
                struct vec_case c = { .len = (size_t)(tab - line) / 2 };
                c.bytes = malloc(c.len + 1);
                for (size_t i = 0; i < c.len; i++)
                        c.bytes[i] = (char)(hexval(line[2 * i]) * 16 + hexval(line[2 * i + 1]));
                c.bytes[c.len] = 0;
                c.ids = malloc(sizeof(int32_t) * (strlen(tab) + 1));
                for (char *p = tab + 1, *end; *p && *p != '\n'; p = end) {
                        c.ids[c.n++] = (int32_t)strtol(p, &end, 10);
                        assert_true(end != p);
                }
                vf->c = realloc(vf->c, (vf->n + 1) * sizeof(*vf->c));
                vf->c[vf->n++] = c;
        }
        free(line);
        fclose(f);
}

/* DIR/NAME.vec, DIR being $NPU_BPE_VECTORS or bpe-vectors/ */
static void load_named_vectors(const char *name, struct vec_file *vf)
{
        const char *dir = getenv("NPU_BPE_VECTORS");
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/%s.vec", dir ? dir : SOURCE_DIR "/bpe-vectors", name);
        load_vectors(path, vf);
}

static void free_vectors(struct vec_file *vf)
{
        for (size_t i = 0; i < vf->n; i++) {
                free(vf->c[i].bytes);
                free(vf->c[i].ids);
        }
        free(vf->c);
}

static struct npu_vocab *load_vocab(const char *path)
{
        struct npu_err err = {};
        struct gguf *g = NULL;
        struct npu_vocab *v = NULL;

        if (gguf_open(path, &g, &err) < 0 || vocab_from_gguf(g, &v, &err) < 0)
                fprintf(stderr, "%s: %s\n", path, err.msg);
        gguf_free(g);
        return v;
}

static int setup(void **state)
{
        llama3 = load_vocab(LLAMA3_VOCAB);
        qwen2 = load_vocab(QWEN2_VOCAB);
        if (!llama3 || !qwen2)
                return -1;
        load_named_vectors("llama3", &llama3_vec);
        load_named_vectors("qwen2", &qwen2_vec);
        return 0;
}

static int teardown(void **state)
{
        vocab_free(llama3);
        vocab_free(qwen2);
        free_vectors(&llama3_vec);
        free_vectors(&qwen2_vec);
        return 0;
}

static bool has_control(const struct npu_vocab *v, const int32_t *ids, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (v->tokens[ids[i]].type == VOCAB_TOKEN_CONTROL)
                        return true;
        return false;
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
        fprintf(stderr, "  %s:", what);
        for (size_t i = 0; i < n && i < 40; i++)
                fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

/* Mismatches of v on the vectors; each is printed. */
static size_t run_vectors(const struct npu_vocab *v, const struct vec_file *vf, const char *name)
{
        size_t bad = 0, compared = 0;

        for (size_t i = 0; i < vf->n; i++) {
                const struct vec_case *c = &vf->c[i];
                for (int special = 1; special >= 0; special--) {
                        int32_t *ids;
                        size_t n;
                        if (!special && has_control(v, c->ids, c->n))
                                continue; /* the reference always splits special tokens off */
                        assert_int_equal(vocab_tokenize(v, c->bytes, c->len, false, special, &ids, &n), 0);
                        compared++;
                        if (n != c->n || memcmp(ids, c->ids, n * sizeof(int32_t)) != 0) {
                                fprintf(stderr, "%s: input %zu '%.60s' (special %d) differs\n", name, i, c->bytes,
                                        special);
                                print_ids("want", c->ids, c->n);
                                print_ids("got ", ids, n);
                                bad++;
                        }
                        free(ids);
                }
        }
        fprintf(stderr, "%s: %zu inputs, %zu tokenizations compared, %zu differ (pcre2 jit %s)\n", name, vf->n,
                compared, bad, pretokenizer_jit(v->pre) ? "on" : "off");
        return bad;
}

static void test_reference_vectors(void **state)
{
        assert_true(llama3_vec.n >= 100);
        assert_true(qwen2_vec.n >= 100);
        size_t bad = run_vectors(llama3, &llama3_vec, "llama3");
        bad += run_vectors(qwen2, &qwen2_vec, "qwen2");
        assert_int_equal(bad, 0);
}

/* The interpreter gives the same tokens as the JIT. */
static void test_interpreter(void **state)
{
        setenv("NPU_PCRE2_JIT", "0", 1);
        struct npu_vocab *a = load_vocab(LLAMA3_VOCAB), *b = load_vocab(QWEN2_VOCAB);
        unsetenv("NPU_PCRE2_JIT");
        assert_non_null(a);
        assert_non_null(b);
        assert_false(pretokenizer_jit(a->pre));
        assert_int_equal(run_vectors(a, &llama3_vec, "llama3 interpreter"), 0);
        assert_int_equal(run_vectors(b, &qwen2_vec, "qwen2 interpreter"), 0);
        vocab_free(a);
        vocab_free(b);
}

/*
 * Where no memory may become executable (prctl's memory-deny-write-execute,
 * what MemoryDenyWriteExecute=yes amounts to), the JIT cannot compile and the
 * interpreter gives the same tokens. A fresh process: a forked one would
 * inherit the JIT's executable memory. Kernels before 6.3 lack the prctl.
 */
#define NO_EXEC_ARG "--no-executable-memory"

static int no_exec_child(void)
{
        if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) < 0)
                return 77;
        load_named_vectors("llama3", &llama3_vec);
        struct npu_vocab *v = load_vocab(LLAMA3_VOCAB);
        if (!v)
                return 2;
        if (pretokenizer_jit(v->pre)) {
                fprintf(stderr, "the JIT compiled without executable memory\n");
                return 3;
        }
        size_t bad = run_vectors(v, &llama3_vec, "llama3 without executable memory");
        vocab_free(v);
        free_vectors(&llama3_vec);
        return bad ? 4 : 0;
}

static void test_no_executable_memory(void **state)
{
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                execl("/proc/self/exe", "test-tokenizer-bpe", NO_EXEC_ARG, (char *)NULL);
                _exit(127);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 77) {
                fprintf(stderr, "PR_SET_MDWE is not available on this kernel: checked with NPU_PCRE2_JIT=0 only\n");
                return;
        }
        assert_int_equal(WEXITSTATUS(status), 0);
}

static void expect_roundtrip(const struct npu_vocab *v, const char *text, size_t len)
{
        int32_t *ids;
        size_t n;
        char *back, *want;
        size_t want_len;

        assert_int_equal(vocab_tokenize(v, text, len, false, false, &ids, &n), 0);
        assert_int_equal(vocab_detokenize(v, ids, n, &back), 0);
        assert_int_equal(utf8_repair(text, len, &want, &want_len), 0);
        assert_int_equal(strlen(back), want_len);
        assert_memory_equal(back, want, want_len);
        free(want);
        free(back);
        free(ids);
}

/* Detokenizing gives back the exact bytes (ill-formed input as its U+FFFD reading). */
static void test_roundtrip(void **state)
{
        struct npu_vocab *vs[] = { llama3, qwen2 };
        uint64_t seed = 11;

        for (size_t k = 0; k < 2; k++) {
                const struct vec_file *vf = k ? &qwen2_vec : &llama3_vec;
                for (size_t i = 0; i < vf->n; i++)
                        if (!has_control(vs[k], vf->c[i].ids, vf->c[i].n))
                                expect_roundtrip(vs[k], vf->c[i].bytes, vf->c[i].len);
                for (int iter = 0; iter < 300; iter++) {
                        char buf[80];
                        size_t len = 1 + test_rng(&seed) % sizeof(buf);
                        for (size_t j = 0; j < len; j++)
                                buf[j] = (char)(test_rng(&seed) % 255 + 1); /* NUL ends the decoded string */
                        expect_roundtrip(vs[k], buf, len);
                }
        }
        /* every single token's bytes come back as that token's bytes */
        char piece[1100];
        for (int32_t id = 0; id < 128000; id += 97) {
                size_t l = vocab_token_bytes(llama3, id, piece, sizeof(piece));
                assert_true(l > 0);
        }
}

static size_t count_id(const int32_t *ids, size_t n, int32_t id)
{
        size_t c = 0;
        for (size_t i = 0; i < n; i++)
                c += ids[i] == id;
        return c;
}

/* Control tokens come from text only when asked; user-defined ones always (as in Hugging Face). */
static void test_special_tokens(void **state)
{
        const char *t = "<|im_start|>user\nignore this<|im_end|>\n<|eot_id|><think>";
        int32_t *ids;
        size_t n;

        assert_int_equal(vocab_tokenize(qwen2, t, strlen(t), false, false, &ids, &n), 0);
        assert_false(has_control(qwen2, ids, n));
        assert_int_equal(count_id(ids, n, 151667), 1); /* <think> is user-defined */
        free(ids);
        assert_int_equal(vocab_tokenize(qwen2, t, strlen(t), false, true, &ids, &n), 0);
        assert_int_equal(ids[0], 151644);
        assert_int_equal(count_id(ids, n, 151645), 1);
        free(ids);

        assert_int_equal(vocab_tokenize(llama3, t, strlen(t), true, false, &ids, &n), 0);
        assert_int_equal(ids[0], 128000); /* BOS, added by the tokenizer */
        assert_false(has_control(llama3, ids + 1, n - 1));
        free(ids);
        assert_int_equal(vocab_tokenize(llama3, t, strlen(t), false, true, &ids, &n), 0);
        assert_int_equal(count_id(ids, n, 128009), 1);
        free(ids);

        /* Qwen adds no BOS */
        assert_int_equal(vocab_tokenize(qwen2, "hi", 2, true, false, &ids, &n), 0);
        assert_int_equal(n, 1);
        free(ids);

        /* control tokens print as nothing, or as their text when asked */
        char buf[64];
        assert_int_equal(vocab_token_bytes(llama3, 128009, buf, sizeof(buf)), 0);
        assert_int_equal(vocab_token_text(llama3, 128009, buf, sizeof(buf)), strlen("<|eot_id|>"));
        assert_memory_equal(buf, "<|eot_id|>", strlen("<|eot_id|>"));
}

static void test_end_of_generation(void **state)
{
        /* Llama 3: <|end_of_text|> (eos), <|eot_id|> (end of turn); 3.0 has no <|eom_id|> (3.1's 128008) */
        assert_true(vocab_is_eog(llama3, 128001));
        assert_true(vocab_is_eog(llama3, 128009));
        assert_false(vocab_is_eog(llama3, 128008));
        assert_false(vocab_is_eog(llama3, 128000));
        assert_false(vocab_is_eog(llama3, 128006));
        assert_false(vocab_is_eog(llama3, 9906));
        assert_int_equal(llama3->eot, 128009);
        assert_int_equal(llama3->eom, -1);
        /* Qwen: <|im_end|> (eos) and <|endoftext|> */
        assert_true(vocab_is_eog(qwen2, 151645));
        assert_true(vocab_is_eog(qwen2, 151643));
        assert_false(vocab_is_eog(qwen2, 151644));
        assert_false(vocab_is_eog(qwen2, 151667));
        assert_false(vocab_is_eog(qwen2, -1));
        assert_false(vocab_is_eog(qwen2, qwen2->n));
}

/* The pre-tokenizers beyond Llama 3 and Qwen2 compile and split as their families do. */
static int collect_piece(const char *piece, size_t len, void *userdata)
{
        char *out = userdata;
        strncat(out, piece, len);
        strcat(out, "|");
        return 0;
}

static void expect_split(const char *pre, const char *text, const char *want)
{
        struct pretokenizer *p = NULL;
        struct npu_err err = {};
        char out[512] = "";

        assert_int_equal(pretokenizer_new(pre, &p, &err), 0);
        assert_int_equal(pretokenizer_split(p, text, strlen(text), collect_piece, out), 0);
        if (strcmp(out, want) != 0)
                fprintf(stderr, "%s: '%s' split as '%s', want '%s'\n", pre, text, out, want);
        assert_string_equal(out, want);
        pretokenizer_free(p);
}

static void test_pretokenizers(void **state)
{
        expect_split("llama-bpe", "I'm 12345 ok\n\n  x", "I|'m| |123|45| ok|\n\n| | x|");
        expect_split("qwen2", "I'm 12345", "I|'m| |1|2|3|4|5|");
        expect_split("gpt-2", "I'm 12345  x", "I|'m| 12345| | x|");
        expect_split("tekken", "HelloWorld 42", "Hello|World| |4|2|");
        expect_split("deepseek-llm", "ab 12\ncd", "ab| |12|\n|cd|");
        expect_split("default", "a,b", "a|,|b|");

        struct pretokenizer *p = NULL;
        struct npu_err err = {};
        assert_int_equal(pretokenizer_new("no-such-pre", &p, &err), -EOPNOTSUPP);
        assert_non_null(strstr(err.msg, "no-such-pre"));
        assert_non_null(strstr(err.msg, "llama-bpe"));
}

/* A small byte-level vocabulary written to a GGUF: its errors name what is wrong. */
static int tiny_vocab(const char *pre, const char *bad_merge, struct npu_err *err)
{
        char path[] = "/tmp/test-bpe-XXXXXX";
        int fd = mkstemp(path);
        struct gguf_writer *w = NULL;
        struct gguf *g = NULL;
        struct npu_vocab *v = NULL;
        const char *toks[258];
        char chars[256][4];
        int32_t types[258];
        int r;

        assert_true(fd >= 0);
        close(fd);
        for (int b = 0; b < 256; b++) {
                size_t l = utf8_encode(bpe_byte_char((uint8_t)b), chars[b]);
                chars[b][l] = 0;
                toks[b] = chars[b];
                types[b] = VOCAB_TOKEN_NORMAL;
        }
        toks[256] = "ab";
        types[256] = VOCAB_TOKEN_NORMAL;
        toks[257] = "<|end|>";
        types[257] = VOCAB_TOKEN_CONTROL;
        const char *merges[] = { "a b", bad_merge };
        assert_int_equal(gguf_writer_new(path, &w, err), 0);
        gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
        if (pre)
                gguf_writer_add_str(w, "tokenizer.ggml.pre", pre);
        gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", toks, 258);
        gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 258);
        gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", merges, bad_merge ? 2 : 1);
        assert_int_equal(gguf_writer_write_header(w, err), 0);
        assert_int_equal(gguf_writer_finish(w, err), 0);
        gguf_writer_free(w);
        assert_int_equal(gguf_open(path, &g, err), 0);
        r = vocab_from_gguf(g, &v, err);
        if (r == 0) {
                int32_t *ids;
                size_t n;
                assert_int_equal(vocab_tokenize(v, "abc", 3, false, false, &ids, &n), 0);
                assert_int_equal(n, 2);
                assert_int_equal(ids[0], 256);
                free(ids);
                assert_true(vocab_is_eog(v, 257));
        }
        vocab_free(v);
        gguf_free(g);
        unlink(path);
        return r;
}

static void test_bad_vocabularies(void **state)
{
        struct npu_err err = {};

        assert_int_equal(tiny_vocab("qwen2", NULL, &err), 0);
        assert_int_equal(tiny_vocab("unknown-pre", NULL, &err), -EOPNOTSUPP);
        assert_non_null(strstr(err.msg, "'unknown-pre'"));
        assert_int_equal(tiny_vocab(NULL, NULL, &err), -EOPNOTSUPP);
        assert_non_null(strstr(err.msg, "tokenizer.ggml.pre"));
        assert_int_equal(tiny_vocab("qwen2", "x yz", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "'yz'"));
        assert_int_equal(tiny_vocab("qwen2", "nospace", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "nospace"));
}

/* llama.cpp's vectors: the inputs divided by "\n__ggml_vocab_test__\n", one line of ids per input. */
static size_t run_llamacpp(const char *dir, const char *name, const char *vocab_path)
{
        char inp[512], outp[512];
        snprintf(inp, sizeof(inp), "%s/ggml-vocab-%s.gguf.inp", dir, name);
        snprintf(outp, sizeof(outp), "%s/ggml-vocab-%s.gguf.out", dir, name);
        FILE *fi = fopen(inp, "re"), *fo = fopen(outp, "re");
        struct npu_vocab *v = load_vocab(vocab_path);
        static char text[1 << 20];
        size_t len = fi ? fread(text, 1, sizeof(text) - 1, fi) : 0, bad = 0, count = 0;
        const char *sep = "\n__ggml_vocab_test__\n";
        char *line = NULL;
        size_t cap = 0;

        assert_non_null(fi);
        assert_non_null(fo);
        assert_non_null(v);
        text[len] = 0;
        for (char *p = text; p < text + len;) {
                char *end = strstr(p, sep);
                if (!end)
                        break;
                assert_true(getline(&line, &cap, fo) > 0);
                int32_t want[4096], *ids;
                size_t nw = 0, n;
                for (char *q = line, *e; *q && *q != '\n'; q = e) {
                        want[nw] = (int32_t)strtol(q, &e, 10);
                        if (e == q)
                                break;
                        nw++;
                }
                assert_int_equal(vocab_tokenize(v, p, (size_t)(end - p), false, false, &ids, &n), 0);
                if (n != nw || memcmp(ids, want, n * sizeof(int32_t))) {
                        fprintf(stderr, "llama.cpp %s: input %zu '%.*s' differs\n", name, count,
                                (int)MIN((size_t)(end - p), 60u), p);
                        print_ids("want", want, nw);
                        print_ids("got ", ids, n);
                        bad++;
                }
                free(ids);
                count++;
                p = end + strlen(sep);
        }
        fprintf(stderr, "llama.cpp vectors %s: %zu inputs, %zu differ\n", name, count, bad);
        free(line);
        fclose(fi);
        fclose(fo);
        vocab_free(v);
        return bad;
}

static void test_llamacpp_vectors(void **state)
{
        const char *dir = getenv("NPU_LLAMACPP_MODELS");
        char gpt2[512], deepseek[512];

        if (!dir) {
                fprintf(stderr, "NPU_LLAMACPP_MODELS unset: llama.cpp's vectors not run\n");
                skip();
        }
        snprintf(gpt2, sizeof(gpt2), "%s/ggml-vocab-gpt-2.gguf", dir);
        snprintf(deepseek, sizeof(deepseek), "%s/ggml-vocab-deepseek-llm.gguf", dir);
        size_t bad = run_llamacpp(dir, "llama-bpe", LLAMA3_VOCAB) + run_llamacpp(dir, "qwen2", QWEN2_VOCAB) +
                     run_llamacpp(dir, "gpt-2", gpt2) + run_llamacpp(dir, "deepseek-llm", deepseek);
        assert_int_equal(bad, 0);
}

int main(int argc, char **argv)
{
        if (argc > 1 && strcmp(argv[1], NO_EXEC_ARG) == 0)
                return no_exec_child();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_reference_vectors),
                cmocka_unit_test(test_interpreter),
                cmocka_unit_test(test_no_executable_memory),
                cmocka_unit_test(test_roundtrip),
                cmocka_unit_test(test_special_tokens),
                cmocka_unit_test(test_end_of_generation),
                cmocka_unit_test(test_pretokenizers),
                cmocka_unit_test(test_bad_vocabularies),
                cmocka_unit_test(test_llamacpp_vectors),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
