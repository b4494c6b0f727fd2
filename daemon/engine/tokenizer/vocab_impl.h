/* SPDX-License-Identifier: MIT */
/* Inside the tokenizer: what vocab.c calls in each kind of vocabulary. */
#pragma once

#include "token_list.h"
#include "vocab.h"

/* SentencePiece BPE (spm.c) */
int spm_setup(struct npu_vocab *v, struct npu_err *err);
int spm_tokenize(const struct npu_vocab *v, const char *text, size_t len, bool parse_special, struct token_list *out);
size_t spm_token_bytes(const struct npu_vocab *v, int32_t id, char *buf, size_t size);

/* byte-level BPE (bpe_tokenizer.c) */
int bpe_tokenize(const struct npu_vocab *v, const char *text, size_t len, bool parse_special, struct token_list *out);
size_t bpe_token_bytes(const struct npu_vocab *v, int32_t id, char *buf, size_t size);
void bpe_vocab_done(struct npu_vocab *v);
