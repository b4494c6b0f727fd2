/* SPDX-License-Identifier: MIT */
/*
 * The tokenizer of a Hugging Face model directory, as GGUF writes it:
 *   - tokenizer.json with a byte-level BPE model (Llama 3, Qwen): model.vocab,
 *     model.merges, added_tokens (special ones become control tokens, the
 *     others user-defined), and the pre-tokenizer, named from its Split
 *     pattern (llama-bpe, qwen2, tekken) or gpt-2 for a plain ByteLevel one;
 *   - otherwise tokenizer.model (SentencePiece, Llama 2);
 * plus tokenizer_config.json: bos/eos tokens, add_bos_token, chat_template.
 * The vocabulary is padded with unused [PADn] tokens up to config.json's
 * vocab_size, as llama.cpp's converter pads it.
 */
#pragma once

#include "gguf.h"
#include "hf_convert.h"
#include "vocab.h"

struct hf_tokenizer {
        struct npu_vocab *vocab;
        char *pre;           /* byte-level BPE: tokenizer.ggml.pre */
        char **merges;       /* byte-level BPE: "LEFT RIGHT" */
        size_t n_merges;
        char *chat_template; /* or NULL */
};

int hf_tokenizer_load(const char *dir, const struct hf_config *cfg, struct hf_tokenizer *ret, struct npu_err *err);
void hf_tokenizer_done(struct hf_tokenizer *t);
/* The tokenizer.* keys, the vocabulary padded to n_total tokens. */
int hf_tokenizer_write(struct gguf_writer *w, const struct hf_tokenizer *t, uint32_t n_total);
