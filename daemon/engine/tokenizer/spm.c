/* SPDX-License-Identifier: MIT */
/*
 * SentencePiece BPE: the text is normalized (optional whitespace cleanup,
 * a dummy-prefix space, ' ' -> U+2581), then adjacent pieces merge by score,
 * highest first; what no piece covers falls back to <0xNN> byte pieces.
 */
#include "merge_queue.h"
#include "vocab_impl.h"

static bool type_mergeable(uint8_t t)
{
        /* SentencePiece lets BPE produce normal, user-defined and unused pieces only */
        return t == VOCAB_TOKEN_NORMAL || t == VOCAB_TOKEN_USER_DEFINED || t == VOCAB_TOKEN_UNUSED ||
               t == VOCAB_TOKEN_UNDEFINED;
}

static int32_t find_mergeable(const struct npu_vocab *v, const char *piece, size_t len)
{
        int32_t id = vocab_find(v, piece, len);
        return id >= 0 && type_mergeable(v->tokens[id].type) ? id : -1;
}

static int parse_byte_piece(const struct vocab_entry *t)
{
        static const char hex[] = "0123456789ABCDEF";
        if (t->len != 6 || memcmp(t->piece, "<0x", 3) || t->piece[5] != '>')
                return -1;
        const char *h = strchr(hex, t->piece[3]), *l = strchr(hex, t->piece[4]);
        if (!h || !l || !*h || !*l)
                return -1;
        return (int)((h - hex) * 16 + (l - hex));
}

int spm_setup(struct npu_vocab *v, struct npu_err *err)
{
        for (int i = 0; i < 256; i++)
                v->byte_ids[i] = -1;
        for (int32_t id = 0; id < v->n; id++) {
                const struct vocab_entry *t = &v->tokens[id];
                if (t->type == VOCAB_TOKEN_BYTE) {
                        int b = parse_byte_piece(t);
                        if (b < 0)
                                return npu_err_set(err, -EINVAL, "byte token %d has text '%.*s', not <0xNN>",
                                                   id, (int)MIN(t->len, 32u), t->piece);
                        v->byte_ids[b] = id;
                }
                if (t->type == VOCAB_TOKEN_USER_DEFINED) {
                        int32_t *u = realloc(v->user_defined, (v->n_user_defined + 1) * sizeof(*u));
                        if (!u)
                                return -ENOMEM;
                        u[v->n_user_defined++] = id;
                        v->user_defined = u;
                }
        }
        return 0;
}

struct symbol {
        int32_t prev, next;
        const char *text;
        size_t len;
};

struct bigram {
        int32_t left, right;
        float score;
        size_t len;
};

/* Higher score first; equal scores: leftmost first. */
static bool bigram_before(const void *a, const void *b)
{
        const struct bigram *x = a, *y = b;

        return x->score > y->score || (x->score == y->score && x->left < y->left);
}

static int try_bigram(const struct npu_vocab *v, struct symbol *syms, int32_t left, int32_t right, struct merge_queue *h)
{
        if (left < 0 || right < 0)
                return 0;
        /* merged symbols are contiguous in the text buffer */
        size_t len = syms[left].len + syms[right].len;
        int32_t id = find_mergeable(v, syms[left].text, len);
        if (id < 0)
                return 0;
        return merge_queue_push(h, &(struct bigram) { left, right, v->tokens[id].score, len });
}

/* Length of the UTF-8 character at s; a malformed sequence counts as one byte, kept as is. */
static size_t utf8_char_len(const char *s, size_t avail)
{
        static const uint8_t lens[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
        size_t n = lens[(uint8_t)s[0] >> 4];
        if (n > avail)
                return 1;
        for (size_t i = 1; i < n; i++)
                if (((uint8_t)s[i] & 0xc0) != 0x80)
                        return 1;
        return n;
}

static size_t match_user_defined(const struct npu_vocab *v, const char *s, size_t n)
{
        size_t best = 0;
        for (size_t i = 0; i < v->n_user_defined; i++) {
                const struct vocab_entry *t = &v->tokens[v->user_defined[i]];
                if (t->len > best && t->len <= n && memcmp(t->piece, s, t->len) == 0)
                        best = t->len;
        }
        return best;
}

static int emit_symbol(const struct npu_vocab *v, const char *s, size_t len, struct token_list *out)
{
        int32_t id = find_mergeable(v, s, len);
        int r;

        if (id >= 0)
                return token_list_push(out, id);
        for (size_t i = 0; i < len; i++) {
                if (v->byte_fallback)
                        r = token_list_push(out, v->byte_ids[(uint8_t)s[i]]);
                else {
                        /* one unknown token for the whole symbol */
                        r = token_list_push(out, v->unk >= 0 ? v->unk : 0);
                        i = len;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* BPE over one normalized fragment (spaces already turned into U+2581). */
static int bpe_fragment(const struct npu_vocab *v, const char *text, size_t len, struct token_list *out)
{
        _cleanup_free_ struct symbol *syms = NULL;
        _cleanup_(merge_queue_done) struct merge_queue h = MERGE_QUEUE_INIT(struct bigram, bigram_before);
        int32_t n = 0;
        int r = 0;

        if (len == 0)
                return 0;
        syms = malloc(len * sizeof(*syms));
        if (!syms)
                return -ENOMEM;
        for (size_t off = 0; off < len;) {
                size_t l = match_user_defined(v, text + off, len - off);
                if (l == 0)
                        l = utf8_char_len(text + off, len - off);
                syms[n] = (struct symbol) { .prev = n - 1, .next = off + l < len ? n + 1 : -1,
                                            .text = text + off, .len = l };
                n++;
                off += l;
        }
        for (int32_t i = 0; i + 1 < n && r >= 0; i++)
                r = try_bigram(v, syms, i, i + 1, &h);
        while (r >= 0 && h.n > 0) {
                struct bigram b;

                merge_queue_pop(&h, &b);
                struct symbol *l = &syms[b.left], *rs = &syms[b.right];
                /* stale: one side was merged away or grew since this pair was queued */
                if (l->len == 0 || rs->len == 0 || l->len + rs->len != b.len || l->next != b.right)
                        continue;
                l->len += rs->len;
                rs->len = 0;
                l->next = rs->next;
                if (rs->next >= 0)
                        syms[rs->next].prev = b.left;
                r = try_bigram(v, syms, l->prev, b.left, &h);
                if (r >= 0)
                        r = try_bigram(v, syms, b.left, l->next, &h);
        }
        for (int32_t i = 0; r >= 0 && i >= 0 && n > 0; i = syms[i].next)
                r = emit_symbol(v, syms[i].text, syms[i].len, out);
        return r;
}

/* Normalize: optional whitespace cleanup, dummy prefix, ' ' -> U+2581. */
static int normalize(const struct npu_vocab *v, const char *text, size_t len, bool prefix, char **ret, size_t *ret_len)
{
        size_t cap, o = 0;
        char *s;
        bool prev_space = true;

        if (!size_mul(len + 1, 3, &cap) || !size_add(cap, 1, &cap))
                return -E2BIG;
        s = malloc(cap);
        if (!s)
                return -ENOMEM;
        if (v->remove_extra_whitespaces) {
                while (len > 0 && text[len - 1] == ' ')
                        len--;
        }
        if (prefix && len > 0) {
                memcpy(s + o, "\xe2\x96\x81", 3);
                o += 3;
        }
        for (size_t i = 0; i < len; i++) {
                if (text[i] == ' ') {
                        if (v->remove_extra_whitespaces && prev_space)
                                continue;
                        memcpy(s + o, "\xe2\x96\x81", 3);
                        o += 3;
                        prev_space = true;
                } else {
                        s[o++] = text[i];
                        prev_space = false;
                }
        }
        s[o] = 0;
        *ret = s;
        *ret_len = o;
        return 0;
}

static int tokenize_text(const struct npu_vocab *v, const char *text, size_t len, bool prefix, struct token_list *out)
{
        _cleanup_free_ char *norm = NULL;
        size_t nlen;
        int r = normalize(v, text, len, prefix, &norm, &nlen);
        return r < 0 ? r : bpe_fragment(v, norm, nlen, out);
}

int spm_tokenize(const struct npu_vocab *v, const char *text, size_t len, const struct special_guard *g,
                 struct token_list *out)
{
        bool prev_special = true;
        size_t start = 0;
        int r = 0;

        for (size_t i = 0; r >= 0 && i < len;) {
                int32_t id = vocab_special_at(v, text, len, i, g);
                if (id < 0) {
                        i++;
                        continue;
                }
                if (i > start)
                        r = tokenize_text(v, text + start, i - start, v->add_space_prefix && prev_special, out);
                if (r >= 0)
                        r = token_list_push(out, id);
                prev_special = true;
                i += v->tokens[id].len;
                start = i;
        }
        if (r >= 0 && start < len)
                r = tokenize_text(v, text + start, len - start, v->add_space_prefix && prev_special, out);
        return r;
}

size_t spm_token_bytes(const struct npu_vocab *v, int32_t id, char *buf, size_t size)
{
        const struct vocab_entry *t = &v->tokens[id];
        size_t o = 0;

        switch (t->type) {
        case VOCAB_TOKEN_CONTROL:
                return 0;
        case VOCAB_TOKEN_BYTE:
                buf[0] = (char)parse_byte_piece(t);
                return 1;
        case VOCAB_TOKEN_USER_DEFINED:
                o = MIN(t->len, size);
                memcpy(buf, t->piece, o);
                return o;
        case VOCAB_TOKEN_UNKNOWN:
                /* SentencePiece renders unknown as " \u2047 " */
                o = MIN(size, 5u);
                memcpy(buf, " \xe2\x81\x87 ", o);
                return o;
        default:
                break;
        }
        for (size_t i = 0; i < t->len && o < size;) {
                if (i + 3 <= t->len && memcmp(t->piece + i, "\xe2\x96\x81", 3) == 0) {
                        buf[o++] = ' ';
                        i += 3;
                } else
                        buf[o++] = t->piece[i++];
        }
        return o;
}
