/* SPDX-License-Identifier: MIT */
/*
 * Byte-level BPE vocabularies: set-up from pieces, merges and the
 * pre-tokenizer name, and the tokenizer's pipeline: ill-formed UTF-8 read as
 * U+FFFD, special tokens split off (control tokens only when asked), each
 * remaining stretch pre-tokenized into words, each word BPE'd.
 */
#include "bpe.h"
#include "pretokenize.h"
#include "unicode.h"
#include "vocab_impl.h"

void bpe_vocab_done(struct npu_vocab *v)
{
        bpe_merges_free(v->merges);
        pretokenizer_free(v->pre);
        free(v->special_ids);
        v->merges = NULL;
        v->pre = NULL;
        v->special_ids = NULL;
}

static int find_byte_pieces(struct npu_vocab *v, struct npu_err *err)
{
        for (int b = 0; b < 256; b++) {
                char s[4];
                size_t n = utf8_encode(bpe_byte_char((uint8_t)b), s);
                v->byte_ids[b] = vocab_find(v, s, n);
                if (v->byte_ids[b] < 0)
                        return npu_err_set(err, -EINVAL, "the byte-level vocabulary has no piece '%.*s' for byte 0x%02X",
                                           (int)n, s, b);
        }
        return 0;
}

static bool is_special(const struct vocab_entry *t)
{
        return t->len > 0 && (t->type == VOCAB_TOKEN_CONTROL || t->type == VOCAB_TOKEN_USER_DEFINED);
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
                n += is_special(&v->tokens[id]);
        keys = malloc(MAX(n, (size_t)1) * sizeof(*keys));
        v->special_ids = malloc(MAX(n, (size_t)1) * sizeof(int32_t));
        if (!keys || !v->special_ids)
                return -ENOMEM;
        n = 0;
        for (int32_t id = 0; id < v->n; id++)
                if (is_special(&v->tokens[id]))
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

int vocab_setup_bpe(struct npu_vocab *v, const char *pre, const struct gguf_str *merges, size_t n_merges,
                    struct npu_err *err)
{
        int r;

        v->kind = VOCAB_BPE;
        v->add_space_prefix = false;
        v->remove_extra_whitespaces = false;
        v->byte_fallback = false;
        r = pretokenizer_new(pre, &v->pre, err);
        if (r < 0)
                return r;
        v->ignore_merges = pretokenizer_ignore_merges(v->pre);
        r = vocab_finish(v, err);
        if (r < 0)
                return r;
        r = find_byte_pieces(v, err);
        if (r < 0)
                return r;
        r = bpe_merges_new(v, merges, n_merges, &v->merges, err);
        if (r < 0)
                return r;
        return index_specials(v);
}

/* --- tokenizing --- */

static int word_piece(const char *piece, size_t len, void *userdata)
{
        const struct npu_vocab *v = ((void **)userdata)[0];
        return bpe_word(v, piece, len, ((void **)userdata)[1]);
}

static int tokenize_stretch(const struct npu_vocab *v, const char *text, size_t len, struct token_list *out)
{
        void *ud[2] = { (void *)v, out };
        return len ? pretokenizer_split(v->pre, text, len, word_piece, ud) : 0;
}

/* The special token at text[0..len), longest first; -1 when none. */
static int32_t special_at(const struct npu_vocab *v, const char *text, size_t len, bool parse_special)
{
        uint8_t b = (uint8_t)text[0];
        for (uint32_t i = v->special_start[b]; i < v->special_start[b + 1]; i++) {
                const struct vocab_entry *t = &v->tokens[v->special_ids[i]];
                if (t->type == VOCAB_TOKEN_CONTROL && !parse_special)
                        continue;
                if (t->len <= len && memcmp(t->piece, text, t->len) == 0)
                        return v->special_ids[i];
        }
        return -1;
}

int bpe_tokenize(const struct npu_vocab *v, const char *text, size_t len, bool parse_special, struct token_list *out)
{
        _cleanup_free_ char *repaired = NULL;
        size_t start = 0;
        int r;

        if (!utf8_valid(text, len)) {
                r = utf8_repair(text, len, &repaired, &len);
                if (r < 0)
                        return r;
                text = repaired;
        }
        for (size_t i = 0; i < len;) {
                if (v->special_start[(uint8_t)text[i]] == v->special_start[(uint8_t)text[i] + 1]) {
                        i++;
                        continue;
                }
                int32_t id = special_at(v, text + i, len - i, parse_special);
                if (id < 0) {
                        i++;
                        continue;
                }
                r = tokenize_stretch(v, text + start, i - start, out);
                if (r >= 0)
                        r = token_list_push(out, id);
                if (r < 0)
                        return r;
                i += v->tokens[id].len;
                start = i;
        }
        return tokenize_stretch(v, text + start, len - start, out);
}

size_t bpe_token_bytes(const struct npu_vocab *v, int32_t id, char *buf, size_t size)
{
        const struct vocab_entry *t = &v->tokens[id];
        size_t n;

        switch (t->type) {
        case VOCAB_TOKEN_CONTROL:
                return 0;
        case VOCAB_TOKEN_USER_DEFINED:
        case VOCAB_TOKEN_UNKNOWN:
        case VOCAB_TOKEN_BYTE:
                n = MIN((size_t)t->len, size);
                memcpy(buf, t->piece, n);
                return n;
        default:
                return bpe_piece_bytes(t->piece, t->len, buf, size);
        }
}
