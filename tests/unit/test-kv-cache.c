/* SPDX-License-Identifier: MIT */
/*
 * The KV pool's layout (kv_cache.h): every (block, layer, K or V, position)
 * row and its q8 scales at their own bytes inside the pool, a layer's rows
 * running on from one block into the next one handed out, and the copies
 * of a block (kv_seq_fork, kv_block_copy) taking every layer's rows and
 * scales.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "kv_cache.h"

/* kv_dim 120 (not a multiple of 64), three layers */
static const struct npu_hparams shape = { .dim = 240, .n_layers = 3, .n_heads = 6, .n_kv_heads = 3, .head_dim = 40 };

static struct kv_pool *pool_new(enum kv_type type, int32_t blocks)
{
        struct kv_pool *p = NULL;
        struct npu_err err = {};
        assert_int_equal(kv_pool_new(&shape, type, 16, kv_block_bytes(&shape, type, 16) * blocks, &p, &err), 0);
        assert_int_equal(p->n_blocks, blocks);
        return p;
}

static size_t row_bytes(const struct kv_pool *p)
{
        return (size_t)p->kv_dim * p->elem_bytes;
}

/* the byte that (tag, layer, which, pos, i) writes */
static uint8_t mark(int tag, int32_t l, int w, int32_t pos, size_t i)
{
        return (uint8_t)(tag * 131 + l * 37 + w * 17 + pos * 7 + i * 3 + 1);
}

static float scale_mark(int tag, int32_t l, int w, int32_t pos, int32_t h)
{
        return (float)(tag * 1000 + l * 100 + w * 10 + h) + (float)pos * 0.5f;
}

static void fill(const struct kv_pool *p, const struct kv_seq *s, int tag)
{
        for (int32_t l = 0; l < p->n_layers; l++)
                for (int w = 0; w < 2; w++)
                        for (int32_t pos = 0; pos < s->n_pos; pos++) {
                                uint8_t *r = kv_at(p, s, l, w, pos);
                                for (size_t i = 0; i < row_bytes(p); i++)
                                        r[i] = mark(tag, l, w, pos, i);
                                for (int32_t h = 0; p->type == KV_TYPE_Q8 && h < p->n_kv_heads; h++)
                                        kv_scale_at(p, s, l, w, pos)[h] = scale_mark(tag, l, w, pos, h);
                        }
}

static bool holds(const struct kv_pool *p, const struct kv_seq *s, int tag)
{
        for (int32_t l = 0; l < p->n_layers; l++)
                for (int w = 0; w < 2; w++)
                        for (int32_t pos = 0; pos < s->n_pos; pos++) {
                                const uint8_t *r = kv_at(p, s, l, w, pos);
                                for (size_t i = 0; i < row_bytes(p); i++)
                                        if (r[i] != mark(tag, l, w, pos, i))
                                                return false;
                                for (int32_t h = 0; p->type == KV_TYPE_Q8 && h < p->n_kv_heads; h++)
                                        if (kv_scale_at(p, s, l, w, pos)[h] != scale_mark(tag, l, w, pos, h))
                                                return false;
                        }
        return true;
}

/* Every block of the pool in use, each sequence's rows and scales written: each reads back its own, inside the pool. */
static void test_rows_disjoint(void **state)
{
        (void)state;
        for (enum kv_type t = KV_TYPE_F32; t <= KV_TYPE_Q8; t++) {
                struct kv_pool *p = pool_new(t, 7);
                struct kv_seq s[3] = {};
                const int32_t len[3] = { 37, 16, 48 }; /* 3 + 1 + 3 blocks */
                for (int i = 0; i < 3; i++) {
                        assert_int_equal(kv_seq_reserve(p, &s[i], len[i]), 0);
                        s[i].n_pos = len[i];
                        fill(p, &s[i], i + 1);
                }
                assert_int_equal(p->n_free, 0);
                for (int i = 0; i < 3; i++) {
                        assert_true(holds(p, &s[i], i + 1));
                        const uint8_t *last = kv_at(p, &s[i], p->n_layers - 1, 1, s[i].n_pos - 1);
                        assert_true(last >= p->mem && last + row_bytes(p) <= p->mem + p->mem_bytes);
                        if (t == KV_TYPE_Q8) {
                                const float *sc = kv_scale_at(p, &s[i], p->n_layers - 1, 1, s[i].n_pos - 1);
                                assert_true((const uint8_t *)sc >= p->mem + p->scales_off &&
                                            (const uint8_t *)(sc + p->n_kv_heads) <= p->mem + p->mem_bytes);
                        }
                }
                for (int i = 0; i < 3; i++)
                        kv_seq_release(p, &s[i]);
                kv_pool_free(p);
        }
}

/* Blocks handed out in order: a layer's K (and V) rows and scales run on from one block into the next. */
static void test_layer_rows_contiguous(void **state)
{
        (void)state;
        struct kv_pool *p = pool_new(KV_TYPE_Q8, 6);
        struct kv_seq s = {};
        assert_int_equal(kv_seq_reserve(p, &s, 64), 0);
        for (int32_t l = 0; l < p->n_layers; l++)
                for (int w = 0; w < 2; w++)
                        for (int32_t pos = 1; pos < 64; pos++) {
                                assert_ptr_equal(kv_at(p, &s, l, w, pos),
                                                 (uint8_t *)kv_at(p, &s, l, w, pos - 1) + row_bytes(p));
                                assert_ptr_equal(kv_scale_at(p, &s, l, w, pos),
                                                 kv_scale_at(p, &s, l, w, pos - 1) + p->n_kv_heads);
                        }
        kv_seq_release(p, &s);
        kv_pool_free(p);
}

/* A fork inside a block shares the whole blocks and copies the partial one: every layer's rows and scales. */
static void test_fork_copies_partial_block(void **state)
{
        (void)state;
        for (enum kv_type t = KV_TYPE_F32; t <= KV_TYPE_Q8; t++) {
                struct kv_pool *p = pool_new(t, 6);
                struct kv_seq a = {}, b = {};
                assert_int_equal(kv_seq_reserve(p, &a, 37), 0);
                a.n_pos = 37;
                fill(p, &a, 5);
                assert_int_equal(kv_seq_fork(p, &b, &a, 21), 0);
                assert_int_equal(b.n_blocks, 2);
                assert_int_equal(b.blocks[0], a.blocks[0]);
                assert_int_not_equal(b.blocks[1], a.blocks[1]);
                assert_true(holds(p, &b, 5));
                /* a written anew: b sees it in the shared block, not in its own copy */
                fill(p, &a, 6);
                b.n_pos = 16;
                assert_true(holds(p, &b, 6));
                b.n_pos = 21;
                assert_false(holds(p, &b, 6));
                kv_seq_release(p, &a);
                kv_seq_release(p, &b);
                kv_pool_free(p);
        }
}

/* kv_block_copy from the pool's memory into another of its size (as the npu back end moves the pool): the same rows. */
static void test_block_copy_between_memories(void **state)
{
        (void)state;
        struct kv_pool *p = pool_new(KV_TYPE_Q8, 5);
        struct kv_seq s = {};
        assert_int_equal(kv_seq_reserve(p, &s, 50), 0);
        s.n_pos = 50;
        fill(p, &s, 9);
        uint8_t *other = calloc(1, p->mem_bytes), *mine = p->mem;
        assert_non_null(other);
        for (int32_t i = 0; i < s.n_blocks; i++)
                kv_block_copy(p, other, s.blocks[i], mine, s.blocks[i]);
        p->mem = other;
        assert_true(holds(p, &s, 9));
        p->mem = mine;
        kv_seq_release(p, &s);
        kv_pool_free(p);
        free(other);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rows_disjoint),
                cmocka_unit_test(test_layer_rows_contiguous),
                cmocka_unit_test(test_fork_copies_partial_block),
                cmocka_unit_test(test_block_copy_between_memories),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
