/* SPDX-License-Identifier: MIT */
/*
 * Llama's SentencePiece BPE vocabulary and tokenizer: from GGUF metadata
 * (tokenizer.ggml.*) or from a SentencePiece tokenizer.model file.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "util.h"

enum vocab_token_type {
        VOCAB_TOKEN_UNDEFINED = 0,
        VOCAB_TOKEN_NORMAL = 1,
        VOCAB_TOKEN_UNKNOWN = 2,
        VOCAB_TOKEN_CONTROL = 3,
        VOCAB_TOKEN_USER_DEFINED = 4,
        VOCAB_TOKEN_UNUSED = 5,
        VOCAB_TOKEN_BYTE = 6,
};

struct vocab_entry {
        char *piece;
        uint32_t len;
        float score;
        uint8_t type;
};

struct npu_vocab {
        int32_t n;
        struct vocab_entry *tokens;
        int32_t bos, eos, unk, pad;
        bool add_bos, add_eos;
        bool add_space_prefix;
        bool remove_extra_whitespaces;
        bool byte_fallback;
        int32_t byte_ids[256];
        /* open-addressing table of the pieces that BPE may produce: id + 1, 0 = empty */
        int32_t *index;
        size_t index_cap;
        /* user-defined pieces, matched whole before BPE */
        int32_t *user_defined;
        size_t n_user_defined;
};

/* Construction: the caller fills tokens[] and the flags, then calls vocab_finish(). */
int vocab_alloc(int32_t n, struct npu_vocab **ret);
int vocab_finish(struct npu_vocab *v, struct npu_err *err);
void vocab_free(struct npu_vocab *v);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct npu_vocab *, vocab_free);

int vocab_from_gguf(const struct gguf *g, struct npu_vocab **ret, struct npu_err *err);
int vocab_from_spm_file(const char *path, struct npu_vocab **ret, struct npu_err *err);
int vocab_from_spm_buffer(const uint8_t *buf, size_t size, struct npu_vocab **ret, struct npu_err *err);

/* Returns the id of an exact piece, or -1. Any token type. */
int32_t vocab_find(const struct npu_vocab *v, const char *piece, size_t len);

/*
 * Tokenize UTF-8 text (invalid bytes are kept as bytes). add_bos follows the
 * vocabulary's add_bos when true. parse_special turns the literal text of
 * control tokens (like "<s>") into those tokens, as llama.cpp does for prompts.
 */
int vocab_tokenize(const struct npu_vocab *v, const char *text, size_t len, bool add_bos,
                   bool parse_special, int32_t **ret_ids, size_t *ret_n);

/* The bytes a token stands for in output text: "" for control tokens. */
size_t vocab_token_bytes(const struct npu_vocab *v, int32_t id, char *buf, size_t size);

/* Decode ids to text, dropping the leading space that the dummy prefix added. */
int vocab_detokenize(const struct npu_vocab *v, const int32_t *ids, size_t n, char **ret);

bool vocab_is_eog(const struct npu_vocab *v, int32_t id);
