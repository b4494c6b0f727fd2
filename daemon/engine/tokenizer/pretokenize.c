/* SPDX-License-Identifier: MIT */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "pretokenize.h"

/*
 * \s as Hugging Face's tokenizers (Rust's regex) read it: the Unicode
 * White_Space property. PCRE2's own \s in UCP mode also takes U+180E.
 */
#define WS "\\t\\n\\x0b\\f\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
#define S "[" WS "]"
#define NS "[^" WS "]"

/* The contractions of the Llama 3 and Qwen patterns, in ASCII only ((?i:...) in tokenizer.json) */
#define CONTRACTIONS_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define TAIL "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" S "*[\\r\\n]+|" S "+(?!" NS ")|" S "+"

#define MAX_PATTERNS 6

struct pre_def {
        const char *name;
        const char *aliases[4];
        const char *patterns[MAX_PATTERNS];
        /* the Split pattern of the family's tokenizer.json, for the Hugging Face converter */
        const char *hf_pattern;
        bool ignore_merges;
        bool add_bos;
};

/* The patterns of each family's tokenizer.json (pre_tokenizer), in the order they apply. */
static const struct pre_def pre_defs[] = {
        {
                .name = "llama-bpe",
                .aliases = { "llama3", "llama-v3", "falcon3" },
                .patterns = { CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}" TAIL },
                .hf_pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
                              "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                .ignore_merges = true,
                .add_bos = true,
        },
        {
                .name = "qwen2",
                .aliases = { "deepseek-r1-qwen" },
                .patterns = { CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" TAIL },
                .hf_pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
                              "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        },
        {
                .name = "gpt-2",
                .aliases = { "gpt2" },
                .patterns = { "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|" S "+(?!" NS
                              ")|" S "+" },
        },
        {
                /* what llama.cpp does with files its converter could not identify */
                .name = "default",
                .patterns = { "[\\p{P}\\$\\+<=>\\^~\\|]+",
                              "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|" S "+(?!" NS
                              ")" },
        },
        {
                /* Mistral's Tekken (Mistral Nemo and later) */
                .name = "tekken",
                .patterns = { "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
                              "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
                              "|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n/]*|" S "*[\\r\\n]+|" S "+(?!" NS ")|" S "+" },
                .hf_pattern = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}"
                              "\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}"
                              "\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                .ignore_merges = true,
                .add_bos = true,
        },
        {
                .name = "deepseek-llm",
                .patterns = {
                        "[\\r\\n]",
                        S "?[A-Za-z\\x{b5}\\x{c0}-\\x{d6}\\x{d8}-\\x{f6}\\x{f8}-\\x{1ba}\\x{1bc}-\\x{1bf}\\x{1c4}-\\x{293}"
                        "\\x{295}-\\x{2af}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37b}-\\x{37d}\\x{37f}\\x{386}\\x{388}-\\x{38a}"
                        "\\x{38c}\\x{38e}-\\x{3a1}\\x{3a3}-\\x{3f5}\\x{3f7}-\\x{481}\\x{48a}-\\x{52f}\\x{531}-\\x{556}"
                        "\\x{10a0}-\\x{10c5}\\x{13a0}-\\x{13f5}\\x{13f8}-\\x{13fd}\\x{1c90}-\\x{1cba}\\x{1cbd}-\\x{1cbf}"
                        "\\x{1d00}-\\x{1d2b}\\x{1d6b}-\\x{1d77}\\x{1d79}-\\x{1d9a}\\x{1e00}-\\x{1f15}\\x{1f18}-\\x{1f1d}"
                        "\\x{1f20}-\\x{1f45}\\x{1f48}-\\x{1f4d}\\x{1f50}-\\x{1f57}\\x{1f59}\\x{1f5b}\\x{1f5d}\\x{1f5f}-\\x{1f7d}"
                        "\\x{1f80}-\\x{1fb4}\\x{1fb6}-\\x{1fbc}\\x{1fbe}\\x{1fc2}-\\x{1fc4}\\x{1fc6}-\\x{1fcc}\\x{1fd0}-\\x{1fd3}"
                        "\\x{1fd6}-\\x{1fdb}\\x{1fe0}-\\x{1fec}\\x{1ff2}-\\x{1ff4}\\x{1ff6}-\\x{1ffc}\\x{2102}\\x{2107}"
                        "\\x{210a}-\\x{2113}\\x{2115}\\x{2119}-\\x{211d}\\x{2124}\\x{2126}\\x{2128}\\x{212a}-\\x{212d}"
                        "\\x{212f}-\\x{2134}\\x{2139}\\x{213c}-\\x{213f}\\x{2145}-\\x{2149}\\x{214e}\\x{2183}\\x{2184}"
                        "\\x{2c00}-\\x{2c7b}\\x{2c7e}-\\x{2ce4}\\x{2ceb}-\\x{2cee}\\x{2cf2}\\x{2cf3}\\x{a640}-\\x{a66d}"
                        "\\x{a680}-\\x{a69b}\\x{a722}-\\x{a76f}\\x{a771}-\\x{a787}\\x{a78b}-\\x{a78e}\\x{ab70}-\\x{abbf}"
                        "\\x{fb00}-\\x{fb06}\\x{fb13}-\\x{fb17}\\x{ff21}-\\x{ff3a}\\x{ff41}-\\x{ff5a}\\x{10400}-\\x{1044f}"
                        "\\x{104b0}-\\x{104d3}\\x{104d8}-\\x{104fb}\\x{10c80}-\\x{10cb2}\\x{10cc0}-\\x{10cf2}"
                        "\\x{118a0}-\\x{118df}\\x{1e900}-\\x{1e943}]+",
                        S "?[!-/:-~\\x{ff01}-\\x{ff0f}\\x{ff1a}-\\x{ff5e}\\x{2018}-\\x{201f}\\x{3000}-\\x{3002}]+",
                        S "+$",
                        "[\\x{4e00}-\\x{9fa5}\\x{800}-\\x{4e00}\\x{ac00}-\\x{d7ff}]+",
                        "\\p{N}+",
                },
        },
};

struct pretokenizer {
        const struct pre_def *def;
        pcre2_code *code[MAX_PATTERNS];
        int n;
        bool jit;
};

void pretokenizer_free(struct pretokenizer *p)
{
        if (!p)
                return;
        for (int i = 0; i < p->n; i++)
                pcre2_code_free(p->code[i]);
        free(p);
}

static const struct pre_def *find_def(const char *name)
{
        for (size_t i = 0; i < ARRAY_SIZE(pre_defs); i++) {
                if (strcmp(name, pre_defs[i].name) == 0)
                        return &pre_defs[i];
                for (size_t a = 0; a < ARRAY_SIZE(pre_defs[i].aliases) && pre_defs[i].aliases[a]; a++)
                        if (strcmp(name, pre_defs[i].aliases[a]) == 0)
                                return &pre_defs[i];
        }
        return NULL;
}

/* NPU_PCRE2_JIT=0 keeps the interpreter (tests compare both). */
static bool jit_wanted(void)
{
        const char *e = getenv("NPU_PCRE2_JIT");
        return !e || strcmp(e, "0") != 0;
}

int pretokenizer_new(const char *name, struct pretokenizer **ret, struct npu_err *err)
{
        _cleanup_(pretokenizer_freep) struct pretokenizer *p = NULL;
        const struct pre_def *def = find_def(name);

        if (!def) {
                char known[128] = "";
                for (size_t i = 0; i < ARRAY_SIZE(pre_defs); i++)
                        snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s", i ? ", " : "",
                                 pre_defs[i].name);
                return npu_err_set(err, -EOPNOTSUPP, "pre-tokenizer '%.64s' (tokenizer.ggml.pre) is not supported; "
                                                     "known: %s", name, known);
        }
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->def = def;
        p->jit = jit_wanted();
        for (int i = 0; i < MAX_PATTERNS && def->patterns[i]; i++) {
                int code;
                PCRE2_SIZE off;
                p->code[i] = pcre2_compile((PCRE2_SPTR)def->patterns[i], PCRE2_ZERO_TERMINATED,
                                           PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_NO_UTF_CHECK, &code,
                                           &off, NULL);
                if (!p->code[i]) {
                        PCRE2_UCHAR msg[120];
                        pcre2_get_error_message(code, msg, sizeof(msg));
                        return npu_err_set(err, -EINVAL, "pre-tokenizer %s: pattern %d does not compile at %zu: %s",
                                           def->name, i, (size_t)off, (const char *)msg);
                }
                p->n = i + 1;
                /* fails with PCRE2_ERROR_NOMEMORY where executable memory is denied: the interpreter runs it */
                if (p->jit && pcre2_jit_compile(p->code[i], PCRE2_JIT_COMPLETE) != 0)
                        p->jit = false;
        }
        *ret = TAKE_PTR(p);
        return 0;
}

const char *pretokenizer_for_hf_pattern(const char *pattern)
{
        for (size_t i = 0; i < ARRAY_SIZE(pre_defs); i++)
                if (pre_defs[i].hf_pattern && strcmp(pattern, pre_defs[i].hf_pattern) == 0)
                        return pre_defs[i].name;
        return NULL;
}

const char *pretokenizer_name(const struct pretokenizer *p)
{
        return p->def->name;
}

bool pretokenizer_ignore_merges(const struct pretokenizer *p)
{
        return p->def->ignore_merges;
}

bool pretokenizer_default_add_bos(const struct pretokenizer *p)
{
        return p->def->add_bos;
}

bool pretokenizer_jit(const struct pretokenizer *p)
{
        return p->jit;
}

struct split {
        const struct pretokenizer *p;
        pcre2_match_data *md;
        pretokenizer_piece_fn fn;
        void *userdata;
};

static int split_level(struct split *s, int level, const char *text, size_t len);

/* Where the next match of pattern level starts and ends at or after off; 0, PCRE2_ERROR_NOMATCH or an error. */
static int next_match(struct split *s, int level, const char *text, size_t len, size_t off, size_t *m0, size_t *m1)
{
        uint32_t opts = PCRE2_NO_UTF_CHECK;
        int rc;

        if (!s->p->jit)
                opts |= PCRE2_NO_JIT;
        rc = pcre2_match(s->p->code[level], (PCRE2_SPTR)text, len, off, opts, s->md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* the same match on the interpreter's heap */
                rc = pcre2_match(s->p->code[level], (PCRE2_SPTR)text, len, off, opts | PCRE2_NO_JIT, s->md, NULL);
        if (rc < 0)
                return rc;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        *m0 = ov[0];
        *m1 = ov[1];
        return 0;
}

static int split_level(struct split *s, int level, const char *text, size_t len)
{
        size_t off = 0, done = 0, m0, m1;
        int r;

        if (len == 0)
                return 0;
        if (level == s->p->n)
                return s->fn(text, len, s->userdata);
        while (off < len) {
                r = next_match(s, level, text, len, off, &m0, &m1);
                if (r == PCRE2_ERROR_NOMATCH)
                        break;
                if (r == PCRE2_ERROR_NOMEMORY)
                        return -ENOMEM;
                if (r < 0)
                        return -E2BIG;
                if (m1 == m0) {
                        /* an empty match splits nothing: look again one character on */
                        off = m0 + 1;
                        while (off < len && ((uint8_t)text[off] & 0xC0) == 0x80)
                                off++;
                        continue;
                }
                if (m0 > done && (r = split_level(s, level + 1, text + done, m0 - done)) < 0)
                        return r;
                if ((r = split_level(s, level + 1, text + m0, m1 - m0)) < 0)
                        return r;
                done = off = m1;
        }
        return split_level(s, level + 1, text + done, len - done);
}

int pretokenizer_split(const struct pretokenizer *p, const char *text, size_t len, pretokenizer_piece_fn fn,
                       void *userdata)
{
        struct split s = { .p = p, .fn = fn, .userdata = userdata };
        int r;

        /* one match data for every pattern: the largest capture count of them */
        s.md = pcre2_match_data_create(16, NULL);
        if (!s.md)
                return -ENOMEM;
        r = split_level(&s, 0, text, len);
        pcre2_match_data_free(s.md);
        return r;
}
