/* SPDX-License-Identifier: MIT */
/* Reading and checking the prompt (v) and options (a{sv}) of Generate, CreateSession and Session.Send. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

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
};

void prompt_arg_done(struct prompt_arg *a);
void gen_args_done(struct gen_args *a);
/* Defaults of a request; base (a session's defaults) when not NULL. */
int gen_args_init(struct gen_args *a, const struct sched_params *base);

int args_read_prompt(sd_bus_message *m, struct prompt_arg *ret, sd_bus_error *error);
/* Reads a{sv} over a; n_ctx and n_vocab bound the values; allow_system: CreateSession's system_prompt. */
int args_read_options(sd_bus_message *m, const struct npu_model *model, int32_t n_ctx, bool allow_system,
                      struct gen_args *a, sd_bus_error *error);
/* Tokens of a prompt argument; add_bos adds BOS to text. */
int args_tokenize(const struct npu_model *model, const struct prompt_arg *pa, bool add_bos, int32_t **ret,
                  int32_t *ret_n, sd_bus_error *error);
/* keep_alive (any number type: seconds; negative: for ever) of a variant of type, entered. */
int args_read_keep_alive(sd_bus_message *m, const char *type, int64_t *ret, sd_bus_error *error);
char **strv_copy(char *const *v);
void strv_free(char **v);
