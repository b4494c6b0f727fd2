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
        return find_end_of_generation(v);
}

bool vocab_is_eog(const struct npu_vocab *v, int32_t id)
{
        return id >= 0 && id < v->n && (v->eog[id / 8] & (1u << (id % 8)));
}

int vocab_tokenize(const struct npu_vocab *v, const char *text, size_t len, bool add_bos,
                   bool parse_special, int32_t **ret_ids, size_t *ret_n)
{
        struct token_list out = {};
        int r = 0;

        if (add_bos && v->add_bos && v->bos >= 0)
                r = token_list_push(&out, v->bos);
        if (r >= 0)
                r = v->kind == VOCAB_BPE ? bpe_tokenize(v, text, len, parse_special, &out)
                                         : spm_tokenize(v, text, len, parse_special, &out);
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
