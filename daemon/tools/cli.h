/* SPDX-License-Identifier: MIT */
/* Helpers shared by the command-line tools. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "generate.h"
#include "kv_cache.h"
#include "runtime.h"
#include "vocab.h"

int cli_error(int r, const char *fmt, ...) _printf_(2, 3);
int cli_parse_int(const char *s, int min, int max, const char *what, int *ret);
int cli_parse_i32(const char *s, int32_t min, int32_t max, const char *what, int32_t *ret);
int cli_parse_u64(const char *s, const char *what, uint64_t *ret);
int cli_parse_float(const char *s, const char *what, float *ret);
int cli_parse_kv_type(const char *s, enum kv_type *ret);
int cli_parse_target(const char *s, enum backend_target *ret);
int cli_read_file(const char *path, char **ret, size_t *ret_len);
/* A GGUF (model or vocab-only) or a SentencePiece tokenizer.model. */
int cli_load_vocab(const char *path, struct npu_vocab **ret, struct npu_err *err);
void cli_print_timings(FILE *f, const struct gen_stats *st);
/* "back end: npu (/dev/accel/accel0)" and, when a device ran, its counters. */
void cli_print_backend(FILE *f, const struct runtime *rt);
