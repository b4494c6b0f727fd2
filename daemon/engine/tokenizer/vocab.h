/* SPDX-License-Identifier: MIT */
/*
 * Vocabularies and tokenizers:
 *   - SentencePiece BPE (Llama 2, Mistral 7B; GGUF tokenizer.ggml.model
 *     "llama", or a tokenizer.model file): spm.c, spm_model.c;
 *   - byte-level BPE (Llama 3, Qwen, Tekken; "gpt2") with the pre-tokenizer
 *     that tokenizer.ggml.pre names: bpe.c, pretokenize.c.
 *
 * Special tokens: control tokens (<s>, <|eot_id|>, <|im_start|>, ...) come
 * from text only when the caller asks for it (parse_special), which only text
 * the service builds itself (chat templates) may do; text from a client is
 * never split into them, so a message cannot close its own turn. User-defined
 * tokens (Qwen's <think>, <tool_call>) are matched in any text, as Hugging
 * Face's tokenizers match non-special added tokens.
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

enum vocab_kind {
        VOCAB_SPM = 0, /* SentencePiece BPE */
        VOCAB_BPE = 1, /* byte-level BPE */
};

struct vocab_entry {
        char *piece;
        uint32_t len;
        float score;
        uint8_t type;
};

struct bpe_merges;
struct pretokenizer;

/* A byte range of a text. */
struct text_range {
        size_t off, len;
};

struct npu_vocab {
        enum vocab_kind kind;
        int32_t n;
        struct vocab_entry *tokens;
        /* -1: the vocabulary has none */
        int32_t bos, eos, unk, pad, eot, eom;
        bool add_bos, add_eos;
        bool add_space_prefix;
        bool remove_extra_whitespaces;
        bool byte_fallback;
        /* SPM: the <0xNN> pieces; BPE: the piece of each byte's GPT-2 character */
        int32_t byte_ids[256];
        /* open-addressing table of every piece: id + 1, 0 = empty; the first of equal pieces wins */
        int32_t *index;
        size_t index_cap;
        /* SPM: user-defined pieces, matched whole before BPE */
        int32_t *user_defined;
        size_t n_user_defined;
        /*
         * The tokens matched whole in text before the model splits it, by
         * first byte, longest first: control tokens, and for BPE also the
         * user-defined ones (SPM matches those inside its fragments)
         */
        int32_t *special_ids;
        uint32_t special_start[257];
        /* BPE */
        struct bpe_merges *merges;
        struct pretokenizer *pre;
        bool ignore_merges;
        /* end of generation: eos, eot, eom and the end-of-turn control tokens, one bit per id */
        uint8_t *eog;
        int32_t n_eog;
        /* tokenizer.chat_template (Jinja text), or NULL */
        char *chat_template;
};

/* Construction: the caller fills tokens[] and the flags, then calls vocab_finish(). */
int vocab_alloc(int32_t n, struct npu_vocab **ret);
int vocab_finish(struct npu_vocab *v, struct npu_err *err);
void vocab_free(struct npu_vocab *v);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct npu_vocab *, vocab_free);

int vocab_from_gguf(const struct gguf *g, struct npu_vocab **ret, struct npu_err *err);
int vocab_from_spm_file(const char *path, struct npu_vocab **ret, struct npu_err *err);
int vocab_from_spm_buffer(const uint8_t *buf, size_t size, struct npu_vocab **ret, struct npu_err *err);
/*
 * A byte-level BPE vocabulary from pieces, types and merges already in v
 * (vocab_alloc'd, tokens filled), with the named pre-tokenizer: used by
 * vocab_from_gguf and the Hugging Face converter (tokenizer.json).
 */
int vocab_setup_bpe(struct npu_vocab *v, const char *pre, const struct gguf_str *merges, size_t n_merges,
                    struct npu_err *err);

const char *vocab_kind_name(const struct npu_vocab *v);
/* The pre-tokenizer's name, or NULL (SentencePiece). */
const char *vocab_pre_name(const struct npu_vocab *v);
/*
 * A byte-level BPE vocabulary's pre-tokenizer runs compiled by PCRE2's JIT
 * (false: its interpreter, e.g. under MemoryDenyWriteExecute=yes, or
 * NPU_PCRE2_JIT=0; the tokens are the same).
 */
bool vocab_regex_jit(const struct npu_vocab *v);
/* One line for logs: "byte-level BPE (qwen2, PCRE2 interpreter), 151669 tokens". */
void vocab_describe(const struct npu_vocab *v, char *buf, size_t size);

/* Returns the id of an exact piece, or -1. Any token type. */
int32_t vocab_find(const struct npu_vocab *v, const char *piece, size_t len);

/*
 * Tokenize text. add_bos: add BOS (and EOS) as the vocabulary asks.
 * parse_special: control tokens written in the text become those tokens;
 * only for text the service builds itself (see above).
 * SPM keeps invalid UTF-8 bytes as byte tokens; byte-level BPE reads each
 * ill-formed sequence as U+FFFD, as Hugging Face's tokenizers see such text.
 * -E2BIG when a pre-tokenizer pattern hits its limits.
 */
int vocab_tokenize(const struct npu_vocab *v, const char *text, size_t len, bool add_bos,
                   bool parse_special, int32_t **ret_ids, size_t *ret_n);

/*
 * Tokenize text that the service built around text it was given (a chat
 * template around messages): control tokens are read everywhere except
 * inside the plain ranges (sorted, disjoint), which hold the given text.
 * The text is tokenized as one string otherwise, as the model saw it.
 */
int vocab_tokenize_guarded(const struct npu_vocab *v, const char *text, size_t len, bool add_bos,
                           const struct text_range *plain, size_t n_plain, int32_t **ret_ids, size_t *ret_n);

/* The bytes a token stands for in output text: "" for control tokens. */
size_t vocab_token_bytes(const struct npu_vocab *v, int32_t id, char *buf, size_t size);
/* The same, but control tokens give their text ("<|eot_id|>"). */
size_t vocab_token_text(const struct npu_vocab *v, int32_t id, char *buf, size_t size);

/* Decode ids to text, dropping the leading space that SentencePiece's dummy prefix added. */
int vocab_detokenize(const struct npu_vocab *v, const int32_t *ids, size_t n, char **ret);

/* Whether generating id ends the text: eos, eot, eom, or an end-of-turn control token. */
bool vocab_is_eog(const struct npu_vocab *v, int32_t id);
