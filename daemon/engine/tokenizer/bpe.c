/* SPDX-License-Identifier: MIT */
#include "bpe.h"
#include "merge_queue.h"
#include "unicode.h"
#include "vocab.h"

/* --- bytes_to_unicode --- */

static bool byte_is_printable(uint8_t b)
{
        return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

uint32_t bpe_byte_char(uint8_t b)
{
        uint32_t k = 0;

        if (byte_is_printable(b))
                return b;
        /* the others, in byte order, from U+0100 */
        for (int i = 0; i < b; i++)
                if (!byte_is_printable((uint8_t)i))
                        k++;
        return 256 + k;
}

int bpe_char_byte(uint32_t cp)
{
        static int16_t table[256 + 68];
        static bool ready;

        if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
                int16_t t[256 + 68];
                for (size_t i = 0; i < ARRAY_SIZE(t); i++)
                        t[i] = -1;
                for (int b = 0; b < 256; b++)
                        t[bpe_byte_char((uint8_t)b)] = (int16_t)b;
                memcpy(table, t, sizeof(t));
                __atomic_store_n(&ready, true, __ATOMIC_RELEASE);
        }
        return cp < ARRAY_SIZE(table) ? table[cp] : -1;
}

size_t bpe_piece_bytes(const char *piece, size_t len, char *buf, size_t size)
{
        size_t o = 0;
        uint32_t cp;

        for (size_t i = 0; i < len && o < size;) {
                int l = utf8_decode(piece + i, len - i, &cp);
                int b = l > 0 ? bpe_char_byte(cp) : -1;
                if (b >= 0) {
                        buf[o++] = (char)b;
                        i += (size_t)l;
                        continue;
                }
                size_t n = l > 0 ? (size_t)l : (size_t)-l;
                n = MIN(n, size - o);
                memcpy(buf + o, piece + i, n);
                o += n;
                i += l > 0 ? (size_t)l : (size_t)-l;
        }
        return o;
}

/* --- the merge table: (left id, right id) -> (rank, merged id) --- */

struct merge_slot {
        uint64_t key; /* left << 32 | right; EMPTY when unused */
        int32_t rank;
        int32_t merged;
};

#define EMPTY UINT64_MAX

struct bpe_merges {
        struct merge_slot *slots;
        size_t cap; /* a power of two */
        size_t n;
};

void bpe_merges_free(struct bpe_merges *m)
{
        if (!m)
                return;
        free(m->slots);
        free(m);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct bpe_merges *, bpe_merges_free);

size_t bpe_merges_count(const struct bpe_merges *m)
{
        return m->n;
}

static size_t slot_of(const struct bpe_merges *m, uint64_t key)
{
        return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (m->cap - 1);
}

static const struct merge_slot *merge_find(const struct bpe_merges *m, int32_t left, int32_t right)
{
        uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
        for (size_t k = slot_of(m, key);; k = (k + 1) & (m->cap - 1)) {
                if (m->slots[k].key == key)
                        return &m->slots[k];
                if (m->slots[k].key == EMPTY)
                        return NULL;
        }
}

int bpe_merges_new(const struct npu_vocab *v, const struct gguf_str *merges, size_t n, struct bpe_merges **ret,
                   struct npu_err *err)
{
        _cleanup_(bpe_merges_freep) struct bpe_merges *m = calloc(1, sizeof(*m));
        _cleanup_free_ char *joined = NULL;
        size_t joined_cap = 0;

        if (!m)
                return -ENOMEM;
        if (n > INT32_MAX / 4)
                return npu_err_set(err, -EINVAL, "tokenizer.ggml.merges has %zu entries", n);
        m->cap = 64;
        while (m->cap < n + n / 2 + 1)
                m->cap <<= 1;
        m->slots = malloc(m->cap * sizeof(*m->slots));
        if (!m->slots)
                return -ENOMEM;
        for (size_t k = 0; k < m->cap; k++)
                m->slots[k].key = EMPTY;

        for (size_t i = 0; i < n; i++) {
                const char *s = merges[i].s;
                size_t len = merges[i].len;
                /* "LEFT RIGHT": the first space after the first byte divides them */
                const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
                if (!sp)
                        return npu_err_set(err, -EINVAL, "merge %zu '%.*s' is not two pieces divided by a space", i,
                                           (int)MIN(len, 40u), s);
                size_t ll = (size_t)(sp - s), rl = len - ll - 1;
                int32_t left = vocab_find(v, s, ll), right = vocab_find(v, sp + 1, rl);
                if (joined_cap < ll + rl) {
                        free(joined);
                        joined_cap = ll + rl + 64;
                        joined = malloc(joined_cap);
                        if (!joined)
                                return -ENOMEM;
                }
                memcpy(joined, s, ll);
                memcpy(joined + ll, sp + 1, rl);
                int32_t merged = vocab_find(v, joined, ll + rl);
                if (left < 0 || right < 0 || merged < 0)
                        return npu_err_set(err, -EINVAL, "merge %zu '%.*s': '%.*s' is not in the vocabulary", i,
                                           (int)MIN(len, 40u), s, (int)MIN(left < 0 ? ll : right < 0 ? rl : ll + rl, 40u),
                                           left < 0 ? s : right < 0 ? sp + 1 : joined);
                uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
                size_t k = slot_of(m, key);
                while (m->slots[k].key != EMPTY && m->slots[k].key != key)
                        k = (k + 1) & (m->cap - 1);
                if (m->slots[k].key == key)
                        continue; /* a duplicate pair keeps its first rank */
                m->slots[k] = (struct merge_slot) { key, (int32_t)i, merged };
                m->n++;
        }
        *ret = TAKE_PTR(m);
        return 0;
}

/* --- BPE over one word --- */

struct candidate {
        int32_t rank;
        int32_t left, right;      /* symbol positions */
        int32_t left_id, right_id; /* what they held when queued */
        int32_t merged;
};

/* Lower rank first; equal ranks: leftmost first. */
static bool cand_before(const void *a, const void *b)
{
        const struct candidate *x = a, *y = b;

        return x->rank < y->rank || (x->rank == y->rank && x->left < y->left);
}

struct word {
        int32_t *id, *prev, *next;
        struct merge_queue heap;
};

static int queue_pair(const struct bpe_merges *m, struct word *w, int32_t left, int32_t right)
{
        if (left < 0 || right < 0)
                return 0;
        const struct merge_slot *s = merge_find(m, w->id[left], w->id[right]);
        if (!s)
                return 0;
        return merge_queue_push(&w->heap, &(struct candidate) { s->rank, left, right, w->id[left], w->id[right], s->merged });
}

/* The word as the vocabulary writes it (its bytes' GPT-2 characters), for ignore_merges. */
static int32_t find_whole_word(const struct npu_vocab *v, const char *word, size_t len)
{
        char buf[2048];
        size_t o = 0;

        if (len > sizeof(buf) / 2)
                return -1; /* longer than any piece */
        for (size_t i = 0; i < len; i++)
                o += utf8_encode(bpe_byte_char((uint8_t)word[i]), buf + o);
        int32_t id = vocab_find(v, buf, o);
        return id >= 0 && v->tokens[id].type == VOCAB_TOKEN_NORMAL ? id : -1;
}

int bpe_word(const struct npu_vocab *v, const char *word, size_t len, struct token_list *out)
{
        struct word w = { .heap = MERGE_QUEUE_INIT(struct candidate, cand_before) };
        int32_t n = (int32_t)len;
        int r = 0;

        if (len > INT32_MAX / 2)
                return -E2BIG;
        if (v->ignore_merges) {
                int32_t id = find_whole_word(v, word, len);
                if (id >= 0)
                        return token_list_push(out, id);
        }
        if (n == 1)
                return token_list_push(out, v->byte_ids[(uint8_t)word[0]]);
        w.id = malloc(sizeof(int32_t) * n);
        w.prev = malloc(sizeof(int32_t) * n);
        w.next = malloc(sizeof(int32_t) * n);
        if (!w.id || !w.prev || !w.next) {
                r = -ENOMEM;
                goto out;
        }
        for (int32_t i = 0; i < n; i++) {
                w.id[i] = v->byte_ids[(uint8_t)word[i]];
                w.prev[i] = i - 1;
                w.next[i] = i + 1 < n ? i + 1 : -1;
        }
        for (int32_t i = 0; i + 1 < n && r >= 0; i++)
                r = queue_pair(v->merges, &w, i, i + 1);
        while (r >= 0 && w.heap.n > 0) {
                struct candidate c;

                merge_queue_pop(&w.heap, &c);
                /* stale: merged away, or one side changed since it was queued */
                if (w.id[c.left] != c.left_id || w.next[c.left] != c.right || w.id[c.right] != c.right_id)
                        continue;
                w.id[c.left] = c.merged;
                w.id[c.right] = -1;
                w.next[c.left] = w.next[c.right];
                if (w.next[c.right] >= 0)
                        w.prev[w.next[c.right]] = c.left;
                w.next[c.right] = -2;
                r = queue_pair(v->merges, &w, w.prev[c.left], c.left);
                if (r >= 0)
                        r = queue_pair(v->merges, &w, c.left, w.next[c.left]);
        }
        for (int32_t i = 0; r >= 0 && i >= 0; i = w.next[i])
                r = token_list_push(out, w.id[i]);
out:
        free(w.id);
        free(w.prev);
        free(w.next);
        merge_queue_done(&w.heap);
        return r;
}
