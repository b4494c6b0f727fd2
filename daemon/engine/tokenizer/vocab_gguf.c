/* SPDX-License-Identifier: MIT */
/* A vocabulary from GGUF metadata: tokenizer.ggml.* (model, pre, tokens, scores, token_type, merges, ids, flags). */
#include "pretokenize.h"
#include "vocab_impl.h"

static int read_tokens(const struct gguf *g, struct npu_vocab **ret, struct npu_err *err)
{
        _cleanup_(vocab_freep) struct npu_vocab *v = NULL;
        const struct gguf_kv *tokens = NULL, *scores = NULL, *types = NULL;
        int r;

        r = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tokens, err);
        if (r == -ENOENT)
                return npu_err_set(err, r, "tokenizer.ggml.tokens is missing");
        if (r < 0)
                return r;
        if (tokens->arr_n == 0 || tokens->arr_n > INT32_MAX / 4)
                return npu_err_set(err, -EINVAL, "tokenizer.ggml.tokens has %llu entries",
                                   (unsigned long long)tokens->arr_n);
        r = gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &scores, err);
        if (r < 0 && r != -ENOENT)
                return r;
        r = gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types, err);
        if (r < 0 && r != -ENOENT)
                return r;
        if ((scores && scores->arr_n != tokens->arr_n) || (types && types->arr_n != tokens->arr_n))
                return npu_err_set(err, -EINVAL, "tokenizer.ggml.scores/token_type length differs from tokens (%llu)",
                                   (unsigned long long)tokens->arr_n);

        r = vocab_alloc((int32_t)tokens->arr_n, &v);
        if (r < 0)
                return r;
        for (int32_t i = 0; i < v->n; i++) {
                struct vocab_entry *t = &v->tokens[i];
                if (tokens->arr_strs[i].len > 1024)
                        return npu_err_set(err, -EINVAL, "token %d is %llu bytes long", i,
                                           (unsigned long long)tokens->arr_strs[i].len);
                t->piece = strndup(tokens->arr_strs[i].s, tokens->arr_strs[i].len);
                if (!t->piece)
                        return -ENOMEM;
                t->len = (uint32_t)strlen(t->piece);
                if (t->len != tokens->arr_strs[i].len)
                        return npu_err_set(err, -EINVAL, "token %d contains a NUL byte", i);
                if (scores)
                        memcpy(&t->score, (const float *)scores->data + i, 4);
                int32_t ty = VOCAB_TOKEN_NORMAL;
                if (types)
                        memcpy(&ty, (const int32_t *)types->data + i, 4);
                if (ty < 0 || ty > VOCAB_TOKEN_BYTE)
                        return npu_err_set(err, -EINVAL, "token %d has unknown type %d", i, ty);
                t->type = (uint8_t)ty;
        }
        *ret = TAKE_PTR(v);
        return 0;
}

static int read_special_ids(const struct gguf *g, struct npu_vocab *v, struct npu_err *err)
{
        static const struct {
                const char *key;
                size_t off;
        } ids[] = {
                { "tokenizer.ggml.bos_token_id", offsetof(struct npu_vocab, bos) },
                { "tokenizer.ggml.eos_token_id", offsetof(struct npu_vocab, eos) },
                { "tokenizer.ggml.unknown_token_id", offsetof(struct npu_vocab, unk) },
                { "tokenizer.ggml.padding_token_id", offsetof(struct npu_vocab, pad) },
                { "tokenizer.ggml.eot_token_id", offsetof(struct npu_vocab, eot) },
                { "tokenizer.ggml.eom_token_id", offsetof(struct npu_vocab, eom) },
        };
        for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
                uint32_t id;
                int r = gguf_get_u32(g, ids[i].key, &id, err);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                if (id == UINT32_MAX) { /* -1 stored unsigned: no such token */
                        *(int32_t *)((char *)v + ids[i].off) = -1;
                        continue;
                }
                if (id >= (uint32_t)v->n)
                        return npu_err_set(err, -EINVAL, "%s = %u is outside the vocabulary of %d", ids[i].key, id, v->n);
                *(int32_t *)((char *)v + ids[i].off) = (int32_t)id;
        }
        return 0;
}

static int read_flag(const struct gguf *g, const char *key, bool *ret, struct npu_err *err)
{
        int r = gguf_get_bool(g, key, ret, err);
        return r == -ENOENT ? 0 : r;
}

static int spm_from_gguf(const struct gguf *g, struct npu_vocab *v, struct npu_err *err)
{
        int r;

        v->kind = VOCAB_SPM;
        v->bos = 1;
        v->eos = 2;
        v->unk = 0;
        r = read_special_ids(g, v, err);
        if (r < 0)
                return r;
        if (v->n <= 2)
                v->bos = v->eos = -1;
        if ((r = read_flag(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err)) < 0 ||
            (r = read_flag(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err)) < 0 ||
            (r = read_flag(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err)) < 0)
                return r;
        v->remove_extra_whitespaces = false;
        r = vocab_finish(v, err);
        if (r < 0)
                return r;
        /* byte fallback works when the vocabulary has the 256 byte pieces */
        v->byte_fallback = true;
        for (int i = 0; i < 256; i++)
                if (v->byte_ids[i] < 0)
                        v->byte_fallback = false;
        return 0;
}

static int bpe_from_gguf(const struct gguf *g, struct npu_vocab *v, struct npu_err *err)
{
        _cleanup_free_ char *pre = NULL;
        const struct gguf_kv *merges = NULL;
        int r;

        r = gguf_get_str(g, "tokenizer.ggml.pre", &pre, err);
        if (r == -ENOENT)
                return npu_err_set(err, -EOPNOTSUPP, "tokenizer.ggml.pre is missing: the file does not say which "
                                                     "pre-tokenizer its byte-level BPE vocabulary needs");
        if (r < 0)
                return r;
        r = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges, err);
        if (r == -ENOENT)
                return npu_err_set(err, r, "tokenizer.ggml.merges is missing");
        if (r < 0)
                return r;
        r = read_special_ids(g, v, err);
        if (r < 0)
                return r;
        v->add_bos = false;
        v->add_eos = false;
        r = vocab_setup_bpe(v, pre, merges->arr_strs, merges->arr_n, err);
        if (r < 0)
                return r;
        /* the family's default, unless the file says */
        v->add_bos = pretokenizer_default_add_bos(v->pre);
        if ((r = read_flag(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err)) < 0 ||
            (r = read_flag(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err)) < 0)
                return r;
        return 0;
}

int vocab_from_gguf(const struct gguf *g, struct npu_vocab **ret, struct npu_err *err)
{
        _cleanup_(vocab_freep) struct npu_vocab *v = NULL;
        _cleanup_free_ char *model = NULL;
        int r;

        r = gguf_get_str(g, "tokenizer.ggml.model", &model, err);
        if (r == -ENOENT)
                return npu_err_set(err, -ENOENT, "no tokenizer.ggml.model: the file has no vocabulary");
        if (r < 0)
                return r;
        if (strcmp(model, "llama") != 0 && strcmp(model, "gpt2") != 0)
                return npu_err_set(err, -EOPNOTSUPP, "tokenizer model '%.32s' not supported ('llama' SentencePiece BPE "
                                                     "and 'gpt2' byte-level BPE are)", model);
        r = read_tokens(g, &v, err);
        if (r < 0)
                return r;
        r = strcmp(model, "gpt2") == 0 ? bpe_from_gguf(g, v, err) : spm_from_gguf(g, v, err);
        if (r < 0)
                return r;
        r = gguf_get_str(g, "tokenizer.chat_template", &v->chat_template, err);
        if (r < 0 && r != -ENOENT)
                return r;
        *ret = TAKE_PTR(v);
        return 0;
}
