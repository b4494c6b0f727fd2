/* SPDX-License-Identifier: MIT */
/*
 * Byte-level BPE (GGUF tokenizer.ggml.model "gpt2": Llama 3, Qwen, Mistral's
 * Tekken): every byte of a pre-tokenized word is first the vocabulary piece
 * of its GPT-2 character (bytes_to_unicode: printable Latin-1 bytes stand
 * for themselves, the other 68 for U+0100 onwards, in byte order), then the
 * ranked merges of tokenizer.ggml.merges join adjacent pieces, lowest rank
 * first and leftmost first among equals, until none applies.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "token_list.h"

struct npu_vocab;
struct bpe_merges;

/* The GPT-2 character of byte b, and the byte of a character (-1: none). */
uint32_t bpe_byte_char(uint8_t b);
int bpe_char_byte(uint32_t cp);

/*
 * The merge table from tokenizer.ggml.merges ("LEFT RIGHT" per entry, rank =
 * index). Both sides and their concatenation must be pieces of v; the first
 * of duplicate pairs wins.
 */
int bpe_merges_new(const struct npu_vocab *v, const struct gguf_str *merges, size_t n, struct bpe_merges **ret,
                   struct npu_err *err);
void bpe_merges_free(struct bpe_merges *m);
size_t bpe_merges_count(const struct bpe_merges *m);

/* BPE over one word (raw bytes, not empty); the ids are appended to out. */
int bpe_word(const struct npu_vocab *v, const char *word, size_t len, struct token_list *out);

/* The bytes a byte-level piece stands for; characters outside the GPT-2 map are copied as UTF-8. */
size_t bpe_piece_bytes(const char *piece, size_t len, char *buf, size_t size);
