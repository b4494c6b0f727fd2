/* SPDX-License-Identifier: MIT */
/*
 * Pre-tokenizers of byte-level BPE vocabularies: the regular expressions that
 * split text into words before BPE, as the GGUF key tokenizer.ggml.pre names
 * them (llama-bpe, qwen2, gpt-2, default, tekken, deepseek-llm). Each is a
 * list of PCRE2 patterns in UTF and UCP mode applied in turn ("isolated"
 * splits: both the matches and the text between them become pieces), so
 * \p{L}, \p{N} and lookahead mean what Hugging Face's tokenizers mean.
 *
 * PCRE2's JIT is used where pcre2_jit_compile succeeds; under systemd's
 * MemoryDenyWriteExecute=yes it fails (it cannot map executable memory) and
 * the interpreter runs the same patterns with the same results.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

struct pretokenizer;

/* The pre-tokenizer named by tokenizer.ggml.pre; an unknown name is -EOPNOTSUPP with a message listing the known. */
int pretokenizer_new(const char *name, struct pretokenizer **ret, struct npu_err *err);
void pretokenizer_free(struct pretokenizer *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct pretokenizer *, pretokenizer_free);

/*
 * The name of the pre-tokenizer whose tokenizer.json Split pattern is
 * pattern (Llama 3's, Qwen's, Tekken's), or NULL.
 */
const char *pretokenizer_for_hf_pattern(const char *pattern);

/* The canonical name (aliases such as "llama3" give "llama-bpe"). */
const char *pretokenizer_name(const struct pretokenizer *p);
/* Words found whole in the vocabulary skip the merges (Llama 3, Tekken). */
bool pretokenizer_ignore_merges(const struct pretokenizer *p);
/* Whether the family adds BOS when the GGUF does not say (tokenizer.ggml.add_bos_token). */
bool pretokenizer_default_add_bos(const struct pretokenizer *p);
/* True when every pattern runs JIT-compiled. */
bool pretokenizer_jit(const struct pretokenizer *p);

/*
 * Splits valid UTF-8 text into pieces, calling fn on each in order; stops at
 * the first negative return of fn and returns it. -E2BIG when a pattern hits
 * PCRE2's match or memory limits.
 */
typedef int (*pretokenizer_piece_fn)(const char *piece, size_t len, void *userdata);
int pretokenizer_split(const struct pretokenizer *p, const char *text, size_t len, pretokenizer_piece_fn fn,
                       void *userdata);
