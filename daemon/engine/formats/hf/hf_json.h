/* SPDX-License-Identifier: MIT */
/* Small files and JSON documents of a Hugging Face model directory (json-c). */
#pragma once

#include <json-c/json.h>

#include "util.h"

#define HF_MAX_JSON (64u << 20)

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);

/* A regular file of at most cap bytes, NUL-terminated. */
int hf_read_file(const char *path, size_t cap, char **ret, size_t *ret_len, struct npu_err *err);
/* The JSON type name of o ("null" for NULL). */
const char *hf_json_type(json_object *o);
/* A whole JSON document that must be an object; text NUL-terminated at len; name is for messages. */
int hf_json_parse_object(const char *text, size_t len, const char *name, json_object **ret, struct npu_err *err);
int hf_json_load_object(const char *path, json_object **ret, struct npu_err *err);
/* The member key of o, NULL when absent or JSON null. */
json_object *hf_json_get(json_object *o, const char *key);
int hf_join_path(const char *dir, const char *name, char **ret);
