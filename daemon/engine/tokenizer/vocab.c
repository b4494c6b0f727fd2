/* SPDX-License-Identifier: MIT */
#include "pretokenize.h"
#include "vocab_impl.h"

int vocab_alloc(int32_t n, struct npu_vocab **ret)
{
        struct npu_vocab *v = calloc(1, sizeof(*v));

        if (!v)
                return -ENOMEM;
        v->tokens = calloc(n > 0 ? n : 1, sizeof(*v->tokens));
        if (!v->tokens) {
                free(v);
                return -ENOMEM;
        }
        v->n = n;
        v->bos = v->eos = v->unk = v->pad = v->eot = v->eom = -1;
        v->add_bos = true;
        v->add_space_prefix = true;
        v->byte_fallback = true;
        *ret = v;
        return 0;
}

void vocab_free(struct npu_vocab *v)
{
        if (!v)
                return;
        for (int32_t i = 0; i < v->n; i++)
                free(v->tokens[i].piece);
        free(v->tokens);
        free(v->index);
        free(v->user_defined);
        free(v->eog);
        free(v->special_ids);
        free(v->chat_template);
        bpe_vocab_done(v);
        free(v);
}

const char *vocab_kind_name(const struct npu_vocab *v)
{
        return v->kind == VOCAB_BPE ? "byte-level BPE" : "SentencePiece BPE";
}

const char *vocab_pre_name(const struct npu_vocab *v)
{
        return v->pre ? pretokenizer_name(v->pre) : NULL;
}

bool vocab_regex_jit(const struct npu_vocab *v)
{
        return v->pre && pretokenizer_jit(v->pre);
}

void vocab_describe(const struct npu_vocab *v, char *buf, size_t size)
{
        if (v->pre)
                snprintf(buf, size, "%s (%s, PCRE2 %s), %d tokens", vocab_kind_name(v), vocab_pre_name(v),
                         vocab_regex_jit(v) ? "JIT" : "interpreter", v->n);
        else
                snprintf(buf, size, "%s, %d tokens", vocab_kind_name(v), v->n);
}

int32_t vocab_find(const struct npu_vocab *v, const char *piece, size_t len)
{
        size_t mask = v->index_cap - 1;
        for (size_t k = fnv1a64(piece, len) & mask;; k = (k + 1) & mask) {
                int32_t id = v->index[k] - 1;
                if (id < 0)
                        return -1;
                if (v->tokens[id].len == len && memcmp(v->tokens[id].piece, piece, len) == 0)
                        return id;
        }
}

static int build_index(struct npu_vocab *v, struct npu_err *err)
{
        v->index_cap = 1;
        while (v->index_cap < (size_t)v->n * 2)
                v->index_cap <<= 1;
        v->index = calloc(v->index_cap, sizeof(*v->index));
        if (!v->index)
                return -ENOMEM;
        for (int32_t id = 0; id < v->n; id++) {
                const struct vocab_entry *t = &v->tokens[id];
                if (!t->piece)
                        return npu_err_set(err, -EINVAL, "token %d has no text", id);
                size_t mask = v->index_cap - 1, k = fnv1a64(t->piece, t->len) & mask;
                bool dup = false;
                while (v->index[k]) {
                        const struct vocab_entry *o = &v->tokens[v->index[k] - 1];
                        if (o->len == t->len && memcmp(o->piece, t->piece, t->len) == 0) {
                                dup = true;
                                break;
                        }
                        k = (k + 1) & mask;
                }
                if (!dup) /* the first of duplicate pieces wins, as in SentencePiece */
                        v->index[k] = id + 1;
        }
        return 0;
}

/*
 * The texts of the tokens that end a turn or a text in the families we serve
 * (Llama 3's <|eot_id|> and <|eom_id|>, ChatML's <|im_end|>, Phi-3's <|end|>,
 * Gemma's <end_of_turn>, GPT-2's and Qwen's <|endoftext|>, DeepSeek's end of
 * sentence). They are control tokens whatever the file says, so no text
 * from a client can produce them.
 */
static const char *const end_of_turn_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
        "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
};

static void eog_add(struct npu_vocab *v, int32_t id)
{
        if (id < 0 || id >= v->n)
                return;
        if (!(v->eog[id / 8] & (1u << (id % 8))))
                v->n_eog++;
        v->eog[id / 8] |= (uint8_t)(1u << (id % 8));
}

static int find_end_of_generation(struct npu_vocab *v)
{
        v->eog = calloc((size_t)v->n / 8 + 1, 1);
        if (!v->eog)
                return -ENOMEM;
        for (size_t i = 0; i < ARRAY_SIZE(end_of_turn_texts); i++) {
                int32_t id = vocab_find(v, end_of_turn_texts[i], strlen(end_of_turn_texts[i]));
                if (id < 0)
                        continue;
                v->tokens[id].type = VOCAB_TOKEN_CONTROL;
                if (v->eot < 0)
                        v->eot = id;
                eog_add(v, id);
        }
        if (v->eom < 0) {
                int32_t id = vocab_find(v, "<|eom_id|>", strlen("<|eom_id|>"));
                if (id >= 0) {
                        v->tokens[id].type = VOCAB_TOKEN_CONTROL;
                        v->eom = id;
                }
        }
        eog_add(v, v->eos);
        eog_add(v, v->eot);
        eog_add(v, v->eom);
        return 0;
}

static bool is_special(const struct npu_vocab *v, const struct vocab_entry *t)
{
        return t->len > 0 && (t->type == VOCAB_TOKEN_CONTROL ||
                              (v->kind == VOCAB_BPE && t->type == VOCAB_TOKEN_USER_DEFINED));
}

struct special_key {
        uint8_t first;
        uint32_t len;
        int32_t id;
};

/* By first byte, then longest first, then lowest id. */
static int cmp_special(const void *a, const void *b)
{
        const struct special_key *x = a, *y = b;
        if (x->first != y->first)
                return x->first - y->first;
        if (x->len != y->len)
                return x->len > y->len ? -1 : 1;
        return x->id < y->id ? -1 : x->id > y->id;
}

/* The special tokens grouped by first byte, longest first in each group. */
static int index_specials(struct npu_vocab *v)
{
        _cleanup_free_ struct special_key *keys = NULL;
        size_t n = 0;

        for (int32_t id = 0; id < v->n; id++)
                n += is_special(v, &v->tokens[id]);
        keys = malloc(MAX(n, (size_t)1) * sizeof(*keys));
        free(v->special_ids);
        v->special_ids = malloc(MAX(n, (size_t)1) * sizeof(int32_t));
        if (!keys || !v->special_ids)
                return -ENOMEM;
        n = 0;
        for (int32_t id = 0; id < v->n; id++)
                if (is_special(v, &v->tokens[id]))
                        keys[n++] = (struct special_key) { (uint8_t)v->tokens[id].piece[0], v->tokens[id].len, id };
        qsort(keys, n, sizeof(*keys), cmp_special);
        memset(v->special_start, 0, sizeof(v->special_start));
        for (size_t i = 0; i < n; i++) {
                v->special_ids[i] = keys[i].id;
                v->special_start[keys[i].first + 1]++;
        }
        for (int b = 0; b < 256; b++)
                v->special_start[b + 1] += v->special_start[b];
        return 0;
}

/* No plain range meets [off, off + len). */
static bool guard_allows(const struct special_guard *g, size_t off, size_t len)
{
        size_t lo = 0, hi = g->n_plain;

        if (!g->parse)
                return false;
        /* the first range that ends after off */
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (g->plain[mid].off + g->plain[mid].len <= off)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        while (lo < g->n_plain && g->plain[lo].len == 0)
                lo++;
        return lo == g->n_plain || g->plain[lo].off >= off + len;
}

int32_t vocab_special_at(const struct npu_vocab *v, const char *text, size_t len, size_t off,
                         const struct special_guard *g)
{
        uint8_t b = (uint8_t)text[off];
        for (uint32_t i = v->special_start[b]; i < v->special_start[b + 1]; i++) {
                const struct vocab_entry *t = &v->tokens[v->special_ids[i]];
                if (t->len > len - off || memcmp(t->piece, text + off, t->len) != 0)
                        continue;
                if (t->type == VOCAB_TOKEN_CONTROL && !guard_allows(g, off, t->len))
                        continue;
                return v->special_ids[i];
        }
        return -1;
}

int vocab_finish(struct npu_vocab *v, struct npu_err *err)
{
        int r;

        if (v->n <= 0)
                return npu_err_set(err, -EINVAL, "vocabulary is empty");
        r = build_index(v, err);
        if (r < 0)
                return r;
        for (int32_t *idp = &v->bos; idp <= &v->eom; idp++)
                if (*idp >= v->n)
                        return npu_err_set(err, -EINVAL, "special token id %d is outside the vocabulary of %d",
                                           *idp, v->n);
        if (v->kind == VOCAB_SPM) {
                r = spm_setup(v, err);
                if (r < 0)
                        return r;
        }
        r = find_end_of_generation(v);
        if (r < 0)
                return r;
        return index_specials(v);
}

bool vocab_is_eog(const struct npu_vocab *v, int32_t id)
{
        return id >= 0 && id < v->n && (v->eog[id / 8] & (1u << (id % 8)));
}

static int tokenize(const struct npu_vocab *v, const char *text, size_t len, bool add_bos,
                    const struct special_guard *g, int32_t **ret_ids, size_t *ret_n)
{
        struct token_list out = {};
        int r = 0;

        if (add_bos && v->add_bos && v->bos >= 0)
                r = token_list_push(&out, v->bos);
        if (r >= 0)
                r = v->kind == VOCAB_BPE ? bpe_tokenize(v, text, len, g, &out) : spm_tokenize(v, text, len, g, &out);
        if (r >= 0 && add_bos && v->add_eos && v->eos >= 0)
                r = token_list_push(&out, v->eos);
        if (r < 0) {
                free(out.a);
                return r;
        }
        *ret_ids = out.a ? out.a : calloc(1, sizeof(int32_t));
        *ret_n = out.n;
        return *ret_ids ? 0 : -ENOMEM;
}

int vocab_tokenize(const struct npu_vocab *v, const char *text, size_t len, bool add_bos,
                   bool parse_special, int32_t **ret_ids, size_t *ret_n)
{
        const struct special_guard g = { .parse = parse_special };
        return tokenize(v, text, len, add_bos, &g, ret_ids, ret_n);
}

int vocab_tokenize_guarded(const struct npu_vocab *v, const char *text, size_t len, bool add_bos,
                           const struct text_range *plain, size_t n_plain, int32_t **ret_ids, size_t *ret_n)
{
        const struct special_guard g = { .parse = true, .plain = plain, .n_plain = n_plain };

        for (size_t i = 0; i < n_plain; i++)
                if (plain[i].off > len || plain[i].len > len - plain[i].off ||
                    (i && plain[i].off < plain[i - 1].off + plain[i - 1].len))
                        return -EINVAL;
        return tokenize(v, text, len, add_bos, &g, ret_ids, ret_n);
}

size_t vocab_token_bytes(const struct npu_vocab *v, int32_t id, char *buf, size_t size)
{
        if (id < 0 || id >= v->n || size == 0)
                return 0;
        return v->kind == VOCAB_BPE ? bpe_token_bytes(v, id, buf, size) : spm_token_bytes(v, id, buf, size);
}

size_t vocab_token_text(const struct npu_vocab *v, int32_t id, char *buf, size_t size)
{
        if (id < 0 || id >= v->n || size == 0)
                return 0;
        if (v->tokens[id].type == VOCAB_TOKEN_CONTROL) {
                size_t n = MIN((size_t)v->tokens[id].len, size);
                memcpy(buf, v->tokens[id].piece, n);
                return n;
        }
        return vocab_token_bytes(v, id, buf, size);
}

int vocab_detokenize(const struct npu_vocab *v, const int32_t *ids, size_t n, char **ret)
{
        size_t cap = 64, o = 0;
        char *s = malloc(cap);
        bool first = true;

        if (!s)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char piece[1100];
                size_t l = vocab_token_bytes(v, ids[i], piece, sizeof(piece));
                size_t skip = 0;
                if (first && l > 0) {
                        if (v->kind == VOCAB_SPM && v->add_space_prefix && piece[0] == ' ' &&
                            v->tokens[ids[i]].type == VOCAB_TOKEN_NORMAL)
                                skip = 1;
                        first = false;
                }
                if (o + l + 1 > cap) {
                        cap = (o + l + 1) * 2;
                        char *t = realloc(s, cap);
                        if (!t) {
                                free(s);
                                return -ENOMEM;
                        }
                        s = t;
                }
                memcpy(s + o, piece + skip, l - skip);
                o += l - skip;
        }
        s[o] = 0;
        *ret = s;
        return 0;
}
