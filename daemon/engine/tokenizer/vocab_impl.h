/* SPDX-License-Identifier: MIT */
/* Inside the tokenizer: what vocab.c calls in each kind of vocabulary. */
#pragma once

#include "token_list.h"
#include "vocab.h"

/* Where control tokens may be read: nowhere, or everywhere but the plain ranges. */
struct special_guard {
        bool parse;
        const struct text_range *plain;
        size_t n_plain;
};

/* The special token at text[off] (longest first) that the guard allows, or -1 (vocab.c). */
int32_t vocab_special_at(const struct npu_vocab *v, const char *text, size_t len, size_t off,
                         const struct special_guard *g);

/* SentencePiece BPE (spm.c) */
int spm_setup(struct npu_vocab *v, struct npu_err *err);
int spm_tokenize(const struct npu_vocab *v, const char *text, size_t len, const struct special_guard *g,
                 struct token_list *out);
size_t spm_token_bytes(const struct npu_vocab *v, int32_t id, char *buf, size_t size);

/* byte-level BPE (bpe_tokenizer.c) */
int bpe_tokenize(const struct npu_vocab *v, const char *text, size_t len, const struct special_guard *g,
                 struct token_list *out);
size_t bpe_token_bytes(const struct npu_vocab *v, int32_t id, char *buf, size_t size);
void bpe_vocab_done(struct npu_vocab *v);
