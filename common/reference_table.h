/* SPDX-License-Identifier: MIT */
/*
 * The user's reference flow (AMD Ryzen AI's Llama-2 SmoothQuant example) as
 * npu-bench and `npuctl bench` reproduce it: the questions its decode task
 * asks, the prompt lengths of its benchmark tasks and the table it prints.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* One line of the table: a prompt and the tokens generated after it. */
struct reference_row {
        uint32_t prompt, generated;
        double total_s, prefill_ms, ms_per_token, tokens_per_s;
        double median_step_ms; /* the median decode step, where measured (npu-bench); 0 otherwise */
};

/* The decode task's questions. */
#define REFERENCE_N_QUESTIONS 4
extern const char *const reference_questions[REFERENCE_N_QUESTIONS];

/*
 * The prompt lengths of a task, as a comma-separated list: benchmark's
 * (4..256) or benchmark_long's (512..4000); NULL for any other task.
 */
const char *reference_task_lengths(const char *task);

/* The reference's table of rows[0..n) on stdout. */
void reference_print_table(const struct reference_row *rows, size_t n);

/* One row as a line of JSON on stdout, example counting from 1. */
void reference_print_row_json(const struct reference_row *row, size_t example);
