/* SPDX-License-Identifier: MIT */
#include "hf_json.h"
#include "hf_tokenizer.h"
#include "pretokenize.h"

#define MAX_PIECE 1024

void hf_tokenizer_done(struct hf_tokenizer *t)
{
        vocab_free(t->vocab);
        for (size_t i = 0; i < t->n_merges; i++)
                free(t->merges[i]);
        free(t->merges);
        free(t->pre);
        free(t->chat_template);
        *t = (struct hf_tokenizer) {};
}

/* A token's text from JSON: no NUL, at most MAX_PIECE bytes. */
static int piece_text(json_object *s, const char *what, char **ret, struct npu_err *err)
{
        if (!s || !json_object_is_type(s, json_type_string))
                return npu_err_set(err, -EINVAL, "tokenizer.json: %s is not a string", what);
        size_t n = (size_t)json_object_get_string_len(s);
        const char *p = json_object_get_string(s);
        if (n == 0 || n > MAX_PIECE || memchr(p, 0, n))
                return npu_err_set(err, -EINVAL, "tokenizer.json: %s '%.40s' is empty, too long or has a NUL", what, p);
        *ret = strndup(p, n);
        return *ret ? 0 : -ENOMEM;
}

static int set_token(struct npu_vocab *v, int64_t id, json_object *content, uint8_t type, struct npu_err *err)
{
        _cleanup_free_ char *text = NULL;
        int r;

        if (id < 0 || id >= v->n)
                return npu_err_set(err, -EINVAL, "tokenizer.json: token id %lld is out of range", (long long)id);
        r = piece_text(content, "a token", &text, err);
        if (r < 0)
                return r;
        struct vocab_entry *t = &v->tokens[id];
        if (t->piece && strcmp(t->piece, text) != 0)
                return npu_err_set(err, -EINVAL, "tokenizer.json: id %lld is both '%.40s' and '%.40s'", (long long)id,
                                   t->piece, text);
        if (!t->piece) {
                t->len = (uint32_t)strlen(text);
                t->piece = TAKE_PTR(text);
        }
        t->type = type;
        return 0;
}

/* The largest id in model.vocab and added_tokens, plus one. */
static int count_ids(json_object *vocab, json_object *added, int64_t *ret, struct npu_err *err)
{
        int64_t n = 0;

        json_object_object_foreach(vocab, key, val) {
                if (!json_object_is_type(val, json_type_int))
                        return npu_err_set(err, -EINVAL, "tokenizer.json: model.vocab['%.40s'] is not an id", key);
                n = MAX(n, json_object_get_int64(val) + 1);
        }
        for (size_t i = 0; added && i < json_object_array_length(added); i++) {
                json_object *id = hf_json_get(json_object_array_get_idx(added, i), "id");
                if (!id || !json_object_is_type(id, json_type_int))
                        return npu_err_set(err, -EINVAL, "tokenizer.json: added_tokens[%zu] has no id", i);
                n = MAX(n, json_object_get_int64(id) + 1);
        }
        if (n <= 256 || n > INT32_MAX / 4)
                return npu_err_set(err, -EINVAL, "tokenizer.json: %lld tokens", (long long)n);
        *ret = n;
        return 0;
}

static int read_tokens(json_object *vocab, json_object *added, struct npu_vocab **ret, struct npu_err *err)
{
        _cleanup_(vocab_freep) struct npu_vocab *v = NULL;
        int64_t n = 0;
        int r;

        r = count_ids(vocab, added, &n, err);
        if (r < 0)
                return r;
        r = vocab_alloc((int32_t)n, &v);
        if (r < 0)
                return r;
        json_object_object_foreach(vocab, key, val) {
                json_object *s = json_object_new_string(key);
                if (!s)
                        return -ENOMEM;
                r = set_token(v, json_object_get_int64(val), s, VOCAB_TOKEN_NORMAL, err);
                json_object_put(s);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; added && i < json_object_array_length(added); i++) {
                json_object *a = json_object_array_get_idx(added, i), *special = hf_json_get(a, "special");
                bool is_special = special && json_object_get_boolean(special);
                r = set_token(v, json_object_get_int64(hf_json_get(a, "id")), hf_json_get(a, "content"),
                              is_special ? VOCAB_TOKEN_CONTROL : VOCAB_TOKEN_USER_DEFINED, err);
                if (r < 0)
                        return r;
        }
        /* ids that nothing names */
        for (int32_t i = 0; i < v->n; i++)
                if (!v->tokens[i].piece) {
                        if (asprintf(&v->tokens[i].piece, "[PAD%d]", i) < 0) {
                                v->tokens[i].piece = NULL;
                                return -ENOMEM;
                        }
                        v->tokens[i].len = (uint32_t)strlen(v->tokens[i].piece);
                        v->tokens[i].type = VOCAB_TOKEN_UNUSED;
                }
        *ret = TAKE_PTR(v);
        return 0;
}

/* model.merges: "LEFT RIGHT" strings, or [LEFT, RIGHT] pairs (newer files). */
static int read_merges(json_object *merges, struct hf_tokenizer *t, struct npu_err *err)
{
        size_t n = merges ? json_object_array_length(merges) : 0;

        if (!merges || !json_object_is_type(merges, json_type_array) || n == 0)
                return npu_err_set(err, -EINVAL, "tokenizer.json: model.merges is missing or empty");
        t->merges = calloc(n, sizeof(char *));
        if (!t->merges)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *m = json_object_array_get_idx(merges, i);
                _cleanup_free_ char *a = NULL, *b = NULL;
                int r;
                if (json_object_is_type(m, json_type_string)) {
                        r = piece_text(m, "a merge", &t->merges[i], err);
                } else if (json_object_is_type(m, json_type_array) && json_object_array_length(m) == 2) {
                        r = piece_text(json_object_array_get_idx(m, 0), "a merge", &a, err);
                        if (r >= 0)
                                r = piece_text(json_object_array_get_idx(m, 1), "a merge", &b, err);
                        if (r >= 0 && asprintf(&t->merges[i], "%s %s", a, b) < 0) {
                                t->merges[i] = NULL;
                                r = -ENOMEM;
                        }
                } else {
                        r = npu_err_set(err, -EINVAL, "tokenizer.json: merge %zu is not a pair", i);
                }
                if (r < 0)
                        return r;
                t->n_merges = i + 1;
        }
        return 0;
}

/*
 * The pre-tokenizer's name: the Split pattern's family (Llama 3, Qwen2,
 * Tekken), or gpt-2 for a lone ByteLevel that splits with its own regex.
 * 1: not byte-level at all (a SentencePiece tokenizer.json).
 */
static int detect_pre(json_object *root, char **ret, struct npu_err *err)
{
        json_object *pre = hf_json_get(root, "pre_tokenizer"), *list = pre;
        const char *type = NULL, *split = NULL;
        bool byte_level = false, byte_level_regex = false;
        size_t n = 1;

        if (pre && (type = json_object_get_string(hf_json_get(pre, "type"))) && strcmp(type, "Sequence") == 0) {
                list = hf_json_get(pre, "pretokenizers");
                n = list && json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;
        }
        for (size_t i = 0; pre && i < n; i++) {
                json_object *p = list == pre ? pre : json_object_array_get_idx(list, i);
                const char *t = json_object_get_string(hf_json_get(p, "type"));
                if (t && strcmp(t, "ByteLevel") == 0) {
                        json_object *use = hf_json_get(p, "use_regex");
                        byte_level = true;
                        byte_level_regex = !use || json_object_get_boolean(use);
                } else if (t && strcmp(t, "Split") == 0 && !split) {
                        split = json_object_get_string(hf_json_get(hf_json_get(p, "pattern"), "Regex"));
                        if (!split)
                                split = "";
                } else {
                        return npu_err_set(err, -EOPNOTSUPP, "tokenizer.json: pre-tokenizer %.32s is not supported",
                                           t ? t : "(no type)");
                }
        }
        if (!byte_level)
                return 1;
        const char *name = split ? pretokenizer_for_hf_pattern(split) : byte_level_regex ? "gpt-2" : NULL;
        if (!name)
                return npu_err_set(err, -EOPNOTSUPP, "tokenizer.json: the pre-tokenizer's pattern '%.60s' is not one "
                                                     "npud knows (Llama 3's, Qwen2's, Tekken's, GPT-2's)",
                                   split ? split : "");
        *ret = strdup(name);
        return *ret ? 0 : -ENOMEM;
}

/* A special token of tokenizer_config.json ("<s>" or {"content": "<s>"}) as an id; -1 when absent or unknown. */
static int32_t config_token(const struct npu_vocab *v, json_object *cfg, const char *key)
{
        json_object *t = hf_json_get(cfg, key);
        if (t && json_object_is_type(t, json_type_object))
                t = hf_json_get(t, "content");
        if (!t || !json_object_is_type(t, json_type_string))
                return -1;
        return vocab_find(v, json_object_get_string(t), (size_t)json_object_get_string_len(t));
}

static int read_chat_template(json_object *cfg, struct hf_tokenizer *t)
{
        json_object *ct = hf_json_get(cfg, "chat_template");

        /* a list of named templates: the default one */
        for (size_t i = 0; ct && json_object_is_type(ct, json_type_array) && i < json_object_array_length(ct); i++) {
                json_object *e = json_object_array_get_idx(ct, i);
                const char *name = json_object_get_string(hf_json_get(e, "name"));
                if (i == 0 || (name && strcmp(name, "default") == 0))
                        ct = hf_json_get(e, "template") ? hf_json_get(e, "template") : ct;
        }
        if (!ct || !json_object_is_type(ct, json_type_string))
                return 0;
        t->chat_template = strdup(json_object_get_string(ct));
        return t->chat_template ? 0 : -ENOMEM;
}

static int load_config(const char *dir, json_object **ret, struct npu_err *err)
{
        _cleanup_free_ char *path = NULL;
        int r = hf_join_path(dir, "tokenizer_config.json", &path);

        *ret = NULL;
        if (r < 0)
                return r;
        if (access(path, F_OK) < 0)
                return 0;
        return hf_json_load_object(path, ret, err);
}

/* 1 when there is no byte-level BPE tokenizer.json (the caller tries tokenizer.model). */
static int load_bpe(const char *dir, const struct hf_config *cfg, json_object *tcfg, struct hf_tokenizer *t,
                    struct npu_err *err)
{
        _cleanup_(json_object_putp) json_object *root = NULL;
        _cleanup_free_ char *path = NULL;
        _cleanup_free_ struct gguf_str *merges = NULL;
        json_object *model;
        int r;

        if ((r = hf_join_path(dir, "tokenizer.json", &path)) < 0)
                return r;
        if (access(path, F_OK) < 0)
                return 1;
        r = hf_json_load_object(path, &root, err);
        if (r < 0)
                return r;
        model = hf_json_get(root, "model");
        const char *type = json_object_get_string(hf_json_get(model, "type"));
        if (!type || strcmp(type, "BPE") != 0)
                return 1;
        r = detect_pre(root, &t->pre, err);
        if (r != 0)
                return r;
        json_object *vocab = hf_json_get(model, "vocab"), *added = hf_json_get(root, "added_tokens");
        if (!vocab || !json_object_is_type(vocab, json_type_object))
                return npu_err_set(err, -EINVAL, "tokenizer.json: model.vocab is missing");
        if (added && !json_object_is_type(added, json_type_array))
                return npu_err_set(err, -EINVAL, "tokenizer.json: added_tokens is not a list");
        if ((r = read_tokens(vocab, added, &t->vocab, err)) < 0 || (r = read_merges(hf_json_get(model, "merges"), t, err)) < 0)
                return r;
        merges = malloc(t->n_merges * sizeof(*merges));
        if (!merges)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_merges; i++)
                merges[i] = (struct gguf_str) { t->merges[i], strlen(t->merges[i]) };
        struct npu_vocab *v = t->vocab;
        v->add_bos = false;
        v->add_eos = false;
        r = vocab_setup_bpe(v, t->pre, merges, t->n_merges, err);
        if (r < 0) {
                npu_err_prefix(err, "tokenizer.json");
                return r;
        }
        v->add_bos = pretokenizer_default_add_bos(v->pre);
        json_object *add_bos = hf_json_get(tcfg, "add_bos_token");
        if (add_bos && json_object_is_type(add_bos, json_type_boolean))
                v->add_bos = json_object_get_boolean(add_bos);
        v->bos = config_token(v, tcfg, "bos_token");
        v->eos = config_token(v, tcfg, "eos_token");
        if (v->bos < 0 && cfg->bos_id >= 0 && cfg->bos_id < v->n)
                v->bos = cfg->bos_id;
        if (v->eos < 0 && cfg->eos_id >= 0 && cfg->eos_id < v->n)
                v->eos = cfg->eos_id;
        v->pad = config_token(v, tcfg, "pad_token");
        return 0;
}

static int load_spm(const char *dir, struct hf_tokenizer *t, struct npu_err *err)
{
        _cleanup_free_ char *path = NULL;
        int r = hf_join_path(dir, "tokenizer.model", &path);

        if (r < 0)
                return r;
        if (access(path, F_OK) < 0)
                return npu_err_set(err, -ENOENT, "%s: no tokenizer.model, and no byte-level BPE tokenizer.json", dir);
        return vocab_from_spm_file(path, &t->vocab, err);
}

int hf_tokenizer_load(const char *dir, const struct hf_config *cfg, struct hf_tokenizer *ret, struct npu_err *err)
{
        _cleanup_(json_object_putp) json_object *tcfg = NULL;
        struct hf_tokenizer t = {};
        int r;

        r = load_config(dir, &tcfg, err);
        if (r >= 0) {
                r = load_bpe(dir, cfg, tcfg, &t, err);
                if (r > 0) {
                        hf_tokenizer_done(&t);
                        r = load_spm(dir, &t, err);
                }
        }
        if (r >= 0)
                r = read_chat_template(tcfg, &t);
        if (r >= 0 && (uint32_t)t.vocab->n > cfg->vocab_size)
                r = npu_err_set(err, -EINVAL, "%s has %d pieces, more than config.json's vocab_size %u",
                                t.pre ? "tokenizer.json" : "tokenizer.model", t.vocab->n, cfg->vocab_size);
        if (r < 0) {
                hf_tokenizer_done(&t);
                return r;
        }
        *ret = t;
        return 0;
}

static void free_strv(char **v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                free(v[i]);
        free(v);
}

int hf_tokenizer_write(struct gguf_writer *w, const struct hf_tokenizer *t, uint32_t n_total)
{
        const struct npu_vocab *v = t->vocab;
        const bool bpe = v->kind == VOCAB_BPE;
        _cleanup_free_ const char **pieces = calloc(n_total, sizeof(*pieces));
        _cleanup_free_ float *scores = calloc(n_total, sizeof(*scores));
        _cleanup_free_ int32_t *types = calloc(n_total, sizeof(*types));
        char **pads = NULL;
        uint32_t n_pad = n_total - (uint32_t)v->n;
        int r = 0;

        if (!pieces || !scores || !types)
                return -ENOMEM;
        if (n_pad > 0 && !(pads = calloc(n_pad, sizeof(*pads))))
                return -ENOMEM;
        for (uint32_t i = 0; i < n_total; i++) {
                if (i < (uint32_t)v->n) {
                        pieces[i] = v->tokens[i].piece;
                        scores[i] = v->tokens[i].score;
                        types[i] = v->tokens[i].type;
                        continue;
                }
                if (asprintf(&pads[i - v->n], "[PAD%u]", i) < 0) {
                        pads[i - v->n] = NULL;
                        r = -ENOMEM;
                        break;
                }
                pieces[i] = pads[i - v->n];
                scores[i] = -1000.0f;
                types[i] = VOCAB_TOKEN_UNUSED;
        }
        r |= gguf_writer_add_str(w, "tokenizer.ggml.model", bpe ? "gpt2" : "llama");
        if (bpe)
                r |= gguf_writer_add_str(w, "tokenizer.ggml.pre", t->pre);
        if (r >= 0)
                r |= gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", pieces, n_total);
        free_strv(pads, n_pad);
        if (!bpe)
                r |= gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, n_total);
        r |= gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n_total);
        if (bpe)
                r |= gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", (const char *const *)t->merges, t->n_merges);
        if (v->bos >= 0)
                r |= gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
        if (v->eos >= 0)
                r |= gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
        if (v->unk >= 0)
                r |= gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk);
        if (v->pad >= 0)
                r |= gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->pad);
        r |= gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos);
        r |= gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", v->add_eos);
        if (!bpe)
                r |= gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", v->add_space_prefix);
        if (t->chat_template)
                r |= gguf_writer_add_str(w, "tokenizer.chat_template", t->chat_template);
        return r < 0 ? -ENOMEM : 0;
}
