/* SPDX-License-Identifier: MIT */
/*
 * Chat templates: the family of a model's template is recognized from its
 * Jinja text (tokenizer.chat_template) by the markers it contains, as
 * llama.cpp's llama_chat_apply_template does, and the family's documented
 * format is rendered here in C; there is no Jinja interpreter.
 *
 * The rendered prompt keeps track of which bytes are the messages' own
 * text: chat_prompt_tokenize reads control tokens (<|im_start|>, <|eot_id|>)
 * only in the template's text, so a message cannot end its turn or open a
 * new one by writing them.
 *
 * No BOS is rendered: the tokenizer adds it where the vocabulary asks for
 * it. Later turns of Llama 2 and Mistral carry </s> (and Llama 2 <s>) as
 * their formats write them. Each family renders as its model card documents
 * it; where a template says more (Llama 3.1's date header, tools), the
 * plain conversation is what is rendered.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "util.h"
#include "vocab.h"

enum chat_format {
        CHAT_FORMAT_RAW = 0,         /* the messages' text, one after another (base models) */
        CHAT_FORMAT_LLAMA2,          /* [INST] <<SYS>> ... <</SYS>> ... [/INST] answer </s><s>[INST] ... */
        CHAT_FORMAT_LLAMA3,
        CHAT_FORMAT_CHATML,          /* Qwen, and others: <|im_start|>role ... <|im_end|> */
        CHAT_FORMAT_MISTRAL_V1,
        CHAT_FORMAT_MISTRAL_V3,
        CHAT_FORMAT_MISTRAL_V3_TEKKEN,
        CHAT_FORMAT_MISTRAL_V7,
        CHAT_FORMAT_PHI3,
        CHAT_FORMAT_GEMMA,
        CHAT_FORMAT_ZEPHYR,
        CHAT_FORMAT_DEEPSEEK,        /* DeepSeek Coder: ### Instruction / ### Response */
        CHAT_FORMAT_DEEPSEEK2,       /* DeepSeek V2: User: / Assistant: */
        CHAT_FORMAT_DEEPSEEK3,       /* DeepSeek V3 and R1: <｜User｜> / <｜Assistant｜> */
        _CHAT_FORMAT_MAX,
};

struct chat_template {
        enum chat_format format;
        /* ChatML: the system message the template writes when none is given (Qwen2, Qwen2.5), or NULL */
        char *default_system;
};

/* Recognize the family of a Jinja template; -EOPNOTSUPP names what was not recognized. */
int chat_template_detect(const char *jinja, struct chat_template *ret, struct npu_err *err);
/* A family by name ("llama3", "chatml", "raw", ...); -EINVAL lists the names. */
int chat_template_from_name(const char *name, struct chat_template *ret, struct npu_err *err);
void chat_template_done(struct chat_template *t);
const char *chat_format_name(enum chat_format f);

enum chat_role {
        CHAT_ROLE_SYSTEM = 0,
        CHAT_ROLE_USER,
        CHAT_ROLE_ASSISTANT,
};

/* "system", "user", "assistant"; -EINVAL otherwise. */
int chat_role_from_string(const char *s, enum chat_role *ret);
const char *chat_role_name(enum chat_role r);

struct chat_message {
        enum chat_role role;
        const char *content;
        size_t len;
};

struct chat_prompt {
        char *text; /* NUL-terminated */
        size_t len;
        /* where the messages' text is in it, in order */
        struct text_range *content;
        size_t n_content;
};

/*
 * Render messages in the template's format; add_generation_prompt ends with
 * the opening of the assistant's turn. At least one message.
 */
int chat_render(const struct chat_template *t, const struct chat_message *msgs, size_t n,
                bool add_generation_prompt, struct chat_prompt *ret, struct npu_err *err);
void chat_prompt_done(struct chat_prompt *p);

/* Token ids of a rendered prompt: BOS as the vocabulary adds it, control tokens only outside the messages. */
int chat_prompt_tokenize(const struct npu_vocab *v, const struct chat_prompt *p, int32_t **ret_ids, size_t *ret_n);
