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
        v->merges = NULL;
        v->pre = NULL;
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
        return bpe_merges_new(v, merges, n_merges, &v->merges, err);
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

/*
 * A repaired copy is read in place of text: the guard's ranges, which count
 * bytes of text, are moved by what the repair added before them (a range
 * boundary inside an ill-formed sequence moves past its U+FFFD).
 */
static int repair_text(const char *text, size_t len, const struct special_guard *g, char **ret, size_t *ret_len,
                       struct text_range **ret_plain)
{
        _cleanup_free_ struct text_range *plain = NULL;
        size_t k = 0, n_bounds = 2 * g->n_plain, o = 0;
        uint32_t cp;
        int r;

        if (g->n_plain && !(plain = calloc(g->n_plain, sizeof(*plain))))
                return -ENOMEM;
        /* boundaries in order: start of range 0, its end, start of range 1, ... */
        for (size_t i = 0; i <= len; ) {
                while (k < n_bounds) {
                        const struct text_range *pr = &g->plain[k / 2];
                        size_t bound = k % 2 ? pr->off + pr->len : pr->off;
                        if (bound > i)
                                break;
                        if (k % 2)
                                plain[k / 2].len = o - plain[k / 2].off;
                        else
                                plain[k / 2].off = o;
                        k++;
                }
                if (i == len)
                        break;
                int l = utf8_decode(text + i, len - i, &cp);
                o += l > 0 ? (size_t)l : 3;
                i += l > 0 ? (size_t)l : (size_t)-l;
        }
        r = utf8_repair(text, len, ret, ret_len);
        if (r < 0)
                return r;
        *ret_plain = TAKE_PTR(plain);
        return 0;
}

int bpe_tokenize(const struct npu_vocab *v, const char *text, size_t len, const struct special_guard *g,
                 struct token_list *out)
{
        _cleanup_free_ char *repaired = NULL;
        _cleanup_free_ struct text_range *plain = NULL;
        struct special_guard rg = *g;
        size_t start = 0;
        int r;

        if (!utf8_valid(text, len)) {
                r = repair_text(text, len, g, &repaired, &len, &plain);
                if (r < 0)
                        return r;
                text = repaired;
                rg.plain = plain;
        }
        for (size_t i = 0; i < len;) {
                int32_t id = vocab_special_at(v, text, len, i, &rg);
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
