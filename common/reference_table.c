/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "reference_table.h"

const char *const reference_questions[REFERENCE_N_QUESTIONS] = {
        "What is the meaning of life?",
        "Tell me something you don't know.",
        "What does Xilinx do?",
        "What is the mass of earth?",
};

const char *reference_task_lengths(const char *task)
{
        if (strcmp(task, "benchmark") == 0)
                return "4,8,16,32,64,128,256";
        if (strcmp(task, "benchmark_long") == 0)
                return "512,1024,1536,2000,3000,4000";
        return NULL;
}

void reference_print_table(const struct reference_row *rows, size_t n)
{
        printf("| %10s | %24s | %22s | %16s | %20s | %17s | %12s |\n", "Example#", "Prompt Length (tokens)",
               "New Tokens Generated", "Total Time (s)", "Prefill Phase (ms)", "Time/Token (ms)", "Tokens/Sec");
        printf("|------------|--------------------------|------------------------|------------------|"
               "----------------------|-------------------|--------------|\n");
        for (size_t i = 0; i < n; i++)
                printf("| %10zu | %24u | %22u | %16.4f | %20.2f | %17.3f | %12.4f |\n", i + 1, rows[i].prompt,
                       rows[i].generated, rows[i].total_s, rows[i].prefill_ms, rows[i].ms_per_token,
                       rows[i].tokens_per_s);
}

void reference_print_row_json(const struct reference_row *row, size_t example)
{
        json_object *o = json_object_new_object();

        if (!o)
                return;
        json_object_object_add(o, "example", json_object_new_int64((int64_t)example));
        json_object_object_add(o, "prompt_tokens", json_object_new_int64(row->prompt));
        json_object_object_add(o, "new_tokens", json_object_new_int64(row->generated));
        json_object_object_add(o, "total_s", json_object_new_double(row->total_s));
        json_object_object_add(o, "prefill_ms", json_object_new_double(row->prefill_ms));
        json_object_object_add(o, "ms_per_token", json_object_new_double(row->ms_per_token));
        json_object_object_add(o, "tokens_per_s", json_object_new_double(row->tokens_per_s));
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}
