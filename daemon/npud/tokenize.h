/* SPDX-License-Identifier: MIT */
/*
 * Prompts are tokenized off the event loop, on the server's tokenizer
 * worker: a job holds the text and a reference on the model (whose
 * vocabulary it reads), and calls back on the event loop. Whoever started it
 * may lose interest meanwhile (tokenize_detach): the job then only frees
 * itself.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vocab.h"
#include "worker.h"

struct chat_prompt;
struct served_model;

struct tokenize_job {
        struct worker_job base;
        struct served_model *model; /* a reference */
        char *text;
        size_t len;
        bool add_bos;
        /*
         * Client text is never read for control tokens; a rendered chat is,
         * outside the plain ranges (the messages' own text).
         */
        bool chat;
        struct text_range *plain;
        size_t n_plain;
        /* the result */
        int32_t *ids;
        size_t n;
        int r;
        /* on the event loop; not called once detached */
        void (*then)(struct tokenize_job *job, void *userdata);
        void *userdata;
};

/*
 * The most bytes a prompt of fewer than n_tokens tokens can have: longer
 * text is refused before it is tokenized (PromptTooLong).
 */
size_t prompt_max_bytes(const struct served_model *m, int32_t n_tokens);
/* Starts tokenizing text (copied) of model m; then(job, userdata) follows on the event loop. */
int tokenize_async(struct served_model *m, const char *text, size_t len, bool add_bos,
                   void (*then)(struct tokenize_job *job, void *userdata), void *userdata,
                   struct tokenize_job **ret);
/* The same for a rendered chat (copied): control tokens read only in the template's text. */
int tokenize_chat_async(struct served_model *m, const struct chat_prompt *p, bool add_bos,
                        void (*then)(struct tokenize_job *job, void *userdata), void *userdata,
                        struct tokenize_job **ret);
/* The caller no longer wants the result. */
void tokenize_detach(struct tokenize_job *job);
