/* SPDX-License-Identifier: MIT */
/* Reading and checking the prompt (v), messages (a(ss)) and options (a{sv}) of Generate, Chat, CreateSession and Session.Send. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "chat_template.h"
#include "scheduler.h"

struct prompt_arg {
        char *text; /* UTF-8, from "s" or "ay" */
        size_t len;
        int32_t *ids; /* from "ai" */
        size_t n_ids;
};

struct gen_args {
        struct sched_params p;
        char **stops; /* owned; p.stops points here */
        int add_bos;  /* -1: not given */
        char *system_prompt;
        char *template_name; /* the "template" option, or NULL */
};

/* Options only some methods take. */
enum {
        ARGS_SYSTEM_PROMPT = 1 << 0, /* CreateSession */
        ARGS_TEMPLATE = 1 << 1,      /* Chat, CreateSession */
};

/* The messages of Chat, their text borrowed from the D-Bus message. */
struct chat_args {
        struct chat_message *m;
        size_t n;
};

void prompt_arg_done(struct prompt_arg *a);
void gen_args_done(struct gen_args *a);
/* Defaults of a request; base (a session's defaults) when not NULL. */
int gen_args_init(struct gen_args *a, const struct sched_params *base);

int args_read_prompt(sd_bus_message *m, struct prompt_arg *ret, sd_bus_error *error);
/* Reads a{sv} over a; n_ctx and n_vocab bound the values; allow: the ARGS_* options the method takes. */
int args_read_options(sd_bus_message *m, const struct npu_model *model, int32_t n_ctx, unsigned allow,
                      struct gen_args *a, sd_bus_error *error);
/*
 * Tokens of a prompt argument; add_bos adds BOS to text. Control tokens in
 * the text stay text: a client's text never becomes <|im_end|> or </s>.
 */
int args_tokenize(const struct npu_model *model, const struct prompt_arg *pa, bool add_bos, int32_t **ret,
                  int32_t *ret_n, sd_bus_error *error);
/* keep_alive (any number type: seconds; negative: for ever) of a variant of type, entered. */
int args_read_keep_alive(sd_bus_message *m, const char *type, int64_t *ret, sd_bus_error *error);

void chat_args_done(struct chat_args *a);
/* Reads a(ss): at least one message, roles system, user and assistant, at most 64 MiB of text. */
int args_read_messages(sd_bus_message *m, struct chat_args *ret, sd_bus_error *error);
/*
 * The chat template: the one the "template" option names ("raw", "llama3",
 * ...; "auto" or NULL: the model's own, recognized from its text; raw for a
 * model that has none). An unrecognized template is InvalidArgument.
 */
int args_chat_template(const struct npu_model *model, const char *name, struct chat_template *ret,
                       sd_bus_error *error);
/* Messages rendered through a template (errors named); a prompt whose messages' text never holds control tokens. */
int args_render_chat(const struct chat_template *t, const struct chat_message *m, size_t n,
                     bool add_generation_prompt, struct chat_prompt *ret, sd_bus_error *error);
char **strv_copy(char *const *v);
void strv_free(char **v);
