/* SPDX-License-Identifier: MIT */
#include <math.h>
#include <sys/random.h>

#include "bus_args.h"
#include "bus_errors.h"
#include "keep_alive.h"
#include "utf8.h"
#include "vocab.h"

void strv_free(char **v)
{
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}

char **strv_copy(char *const *v)
{
        size_t n = 0;
        char **c;

        while (v && v[n])
                n++;
        c = calloc(n + 1, sizeof(char *));
        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (!(c[i] = strdup(v[i]))) {
                        strv_free(c);
                        return NULL;
                }
        return c;
}

void prompt_arg_done(struct prompt_arg *a)
{
        free(a->text);
        free(a->ids);
        *a = (struct prompt_arg) {};
}

void gen_args_done(struct gen_args *a)
{
        strv_free(a->stops);
        free(a->system_prompt);
        free(a->template_name);
        *a = (struct gen_args) {};
}

int gen_args_init(struct gen_args *a, const struct sched_params *base)
{
        *a = (struct gen_args) { .add_bos = -1 };
        if (base) {
                a->p = *base;
                a->stops = strv_copy(base->stops);
                if (!a->stops)
                        return -ENOMEM;
        } else {
                a->p.max_tokens = 256;
                a->p.keep_alive_us = KEEP_ALIVE_DEFAULT;
                sampler_params_default(&a->p.sampling);
                if (getrandom(&a->p.sampling.seed, sizeof(a->p.sampling.seed), 0) != sizeof(a->p.sampling.seed))
                        a->p.sampling.seed = now_ns();
        }
        a->p.stops = a->stops;
        return 0;
}

int args_read_prompt(sd_bus_message *m, struct prompt_arg *ret, sd_bus_error *error)
{
        const char *contents;
        const void *data;
        size_t size;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r <= 0 || type != SD_BUS_TYPE_VARIANT)
                return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT, "the prompt must be a variant");
        r = sd_bus_message_enter_container(m, SD_BUS_TYPE_VARIANT, contents);
        if (r < 0)
                return r;
        if (!strcmp(contents, "s")) {
                const char *s;
                r = sd_bus_message_read_basic(m, 's', &s);
                if (r < 0)
                        return r;
                ret->len = strlen(s);
                ret->text = strdup(s);
        } else if (!strcmp(contents, "ay")) {
                r = sd_bus_message_read_array(m, 'y', &data, &size);
                if (r < 0)
                        return r;
                if (!utf8_valid(data, size))
                        return sd_bus_error_set(error, NPUD_ERROR_INVALID_UTF8, "the prompt is not valid UTF-8");
                if (memchr(data, 0, size))
                        return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT, "the prompt contains a NUL byte");
                ret->len = size;
                ret->text = strndup(data, size);
        } else if (!strcmp(contents, "ai")) {
                r = sd_bus_message_read_array(m, 'i', &data, &size);
                if (r < 0)
                        return r;
                ret->n_ids = size / sizeof(int32_t);
                ret->ids = malloc(size + 1);
                if (ret->ids)
                        memcpy(ret->ids, data, size);
        } else {
                return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT,
                                         "the prompt is a variant of type '%s'; expected s (text), ay (UTF-8 bytes) "
                                         "or ai (token ids)",
                                         contents);
        }
        if (!ret->text && !ret->ids)
                return -ENOMEM;
        if (ret->len == 0 && ret->n_ids == 0)
                return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT, "the prompt is empty");
        return sd_bus_message_exit_container(m);
}

/* Any D-Bus integer type, as int64 (uint64 values past INT64_MAX are clamped to it). */
static int read_integer(sd_bus_message *m, const char *type, int64_t *ret)
{
        union {
                uint8_t y;
                int16_t n;
                uint16_t q;
                int32_t i;
                uint32_t u;
                int64_t x;
                uint64_t t;
        } v;
        int r;

        if (strlen(type) != 1 || !strchr("ynqiuxt", type[0]))
                return -EMEDIUMTYPE;
        r = sd_bus_message_read_basic(m, type[0], &v);
        if (r < 0)
                return r;
        switch (type[0]) {
        case 'y': *ret = v.y; break;
        case 'n': *ret = v.n; break;
        case 'q': *ret = v.q; break;
        case 'i': *ret = v.i; break;
        case 'u': *ret = v.u; break;
        case 'x': *ret = v.x; break;
        default: *ret = v.t > INT64_MAX ? INT64_MAX : (int64_t)v.t; break;
        }
        return 0;
}

static int read_number(sd_bus_message *m, const char *type, double *ret)
{
        int64_t i;
        int r;

        if (!strcmp(type, "d"))
                return sd_bus_message_read_basic(m, 'd', ret);
        r = read_integer(m, type, &i);
        if (r < 0)
                return r;
        *ret = (double)i;
        return 0;
}

static int bad_type(sd_bus_error *error, const char *key, const char *type, const char *want)
{
        return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT, "option '%s' has type '%s'; expected %s", key,
                                 type, want);
}

static int out_of_range(sd_bus_error *error, const char *key, const char *range)
{
        return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT, "option '%s' is out of range (%s)", key, range);
}

static int read_stops(sd_bus_message *m, const char *type, struct gen_args *a, sd_bus_error *error)
{
        char **v = NULL;
        size_t n = 0;
        int r;

        if (strcmp(type, "as"))
                return bad_type(error, "stop", type, "as");
        r = sd_bus_message_read_strv(m, &v);
        if (r < 0)
                return r;
        while (v && v[n])
                n++;
        for (size_t i = 0; i < n; i++)
                if (strlen(v[i]) == 0 || strlen(v[i]) > TEXT_STREAM_MAX_STOP_LEN) {
                        strv_free(v);
                        return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT,
                                                 "stop strings must have 1 to %d bytes",
                                                 TEXT_STREAM_MAX_STOP_LEN);
                }
        if (n > TEXT_STREAM_MAX_STOPS) {
                strv_free(v);
                return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT, "at most %d stop strings",
                                         TEXT_STREAM_MAX_STOPS);
        }
        strv_free(a->stops);
        a->stops = v ? v : calloc(1, sizeof(char *));
        a->p.stops = a->stops;
        return a->stops ? 0 : -ENOMEM;
}

int args_read_keep_alive(sd_bus_message *m, const char *type, int64_t *ret, sd_bus_error *error)
{
        double d;
        int r;

        r = read_number(m, type, &d);
        if (r == -EMEDIUMTYPE)
                return bad_type(error, "keep_alive", type, "a number of seconds");
        if (r < 0)
                return r;
        if (!(d <= KEEP_ALIVE_MAX_SEC))
                return out_of_range(error, "keep_alive", "seconds, at most 10 years; negative: for ever");
        *ret = d < 0 ? KEEP_ALIVE_FOREVER : (int64_t)(d * 1e6);
        return 0;
}

/*
 * The options of issue 17 that clients of other APIs send: min_p,
 * presence_penalty, frequency_penalty, logprobs and keep_alive. -ENOKEY: not
 * one of them.
 */
static int read_client_option(sd_bus_message *m, const char *key, const char *type, struct gen_args *a,
                              sd_bus_error *error)
{
        struct sampler_params *sp = &a->p.sampling;
        int64_t i;
        double d;
        int r;

        if (!strcmp(key, "logprobs")) {
                r = read_integer(m, type, &i);
                if (r == -EMEDIUMTYPE)
                        return bad_type(error, key, type, "an integer");
                if (r < 0)
                        return r;
                if (i < 0 || i > TOKEN_LOGPROBS_MAX_TOP)
                        return out_of_range(error, key, "0 to 20 alternatives per token");
                a->p.logprobs = true;
                a->p.top_logprobs = (int32_t)i;
                return 0;
        }
        if (!strcmp(key, "keep_alive"))
                return args_read_keep_alive(m, type, &a->p.keep_alive_us, error);
        if (strcmp(key, "min_p") && strcmp(key, "presence_penalty") && strcmp(key, "frequency_penalty"))
                return -ENOKEY;
        r = read_number(m, type, &d);
        if (r == -EMEDIUMTYPE)
                return bad_type(error, key, type, "a double");
        if (r < 0)
                return r;
        if (!strcmp(key, "min_p")) {
                if (!(d >= 0 && d <= 1))
                        return out_of_range(error, key, "0 to 1");
                sp->min_p = (float)d;
        } else {
                if (!(d >= -2 && d <= 2))
                        return out_of_range(error, key, "-2 to 2");
                if (!strcmp(key, "presence_penalty"))
                        sp->presence_penalty = (float)d;
                else
                        sp->frequency_penalty = (float)d;
        }
        return 0;
}

static int read_string_option(sd_bus_message *m, const char *key, const char *type, char **ret,
                              sd_bus_error *error)
{
        const char *s;
        int r;

        if (strcmp(type, "s"))
                return bad_type(error, key, type, "s");
        r = sd_bus_message_read_basic(m, 's', &s);
        if (r < 0)
                return r;
        free(*ret);
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int read_option(sd_bus_message *m, const char *key, const char *type, const struct npu_model *model,
                       int32_t n_ctx, unsigned allow, struct gen_args *a, sd_bus_error *error)
{
        struct sampler_params *sp = &a->p.sampling;
        int64_t i;
        double d;
        int r;

        r = read_client_option(m, key, type, a, error);
        if (r != -ENOKEY)
                return r;
        if (!strcmp(key, "max_tokens")) {
                if (read_integer(m, type, &i) == -EMEDIUMTYPE)
                        return bad_type(error, key, type, "an integer");
                if (i < 1 || i > n_ctx)
                        return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT,
                                                 "option 'max_tokens' is out of range (1 to %d, the context)", n_ctx);
                a->p.max_tokens = (int32_t)i;
        } else if (!strcmp(key, "top_k")) {
                if (read_integer(m, type, &i) == -EMEDIUMTYPE)
                        return bad_type(error, key, type, "an integer");
                if (i < 0 || i > model->hp.n_vocab)
                        return out_of_range(error, key, "0 to the vocabulary size");
                sp->top_k = (int32_t)i;
        } else if (!strcmp(key, "seed")) {
                union { int64_t x; uint64_t t; } v;
                if (strlen(type) != 1 || !strchr("ynqiuxt", type[0]))
                        return bad_type(error, key, type, "an integer");
                if (type[0] == 't' || type[0] == 'x') {
                        r = sd_bus_message_read_basic(m, type[0], &v);
                        if (r < 0)
                                return r;
                        sp->seed = v.t;
                } else {
                        r = read_integer(m, type, &i);
                        if (r < 0)
                                return r;
                        sp->seed = (uint64_t)i;
                }
        } else if (!strcmp(key, "temperature") || !strcmp(key, "top_p") || !strcmp(key, "repeat_penalty")) {
                if (read_number(m, type, &d) == -EMEDIUMTYPE)
                        return bad_type(error, key, type, "a double");
                if (!strcmp(key, "temperature")) {
                        if (!(d >= 0 && d <= 100))
                                return out_of_range(error, key, "0 to 100");
                        sp->temperature = (float)d;
                } else if (!strcmp(key, "top_p")) {
                        if (!(d > 0 && d <= 1))
                                return out_of_range(error, key, "above 0, at most 1");
                        sp->top_p = (float)d;
                } else {
                        if (!(d > 0 && d <= 100))
                                return out_of_range(error, key, "above 0, at most 100");
                        sp->repeat_penalty = (float)d;
                }
        } else if (!strcmp(key, "stop")) {
                return read_stops(m, type, a, error);
        } else if (!strcmp(key, "ignore_eos") || !strcmp(key, "add_bos")) {
                int b;
                if (strcmp(type, "b"))
                        return bad_type(error, key, type, "b");
                r = sd_bus_message_read_basic(m, 'b', &b);
                if (r < 0)
                        return r;
                if (!strcmp(key, "ignore_eos"))
                        a->p.ignore_eos = b;
                else
                        a->add_bos = b;
        } else if (!strcmp(key, "precision")) {
                const char *s;
                if (strcmp(type, "s"))
                        return bad_type(error, key, type, "s");
                r = sd_bus_message_read_basic(m, 's', &s);
                if (r < 0)
                        return r;
                if (strcmp(s, "auto") && strcmp(s, precision_name(model->precision)))
                        return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT,
                                                 "precision '%s' asked for, but the model is %s (load a model "
                                                 "quantized to %s, or ask for \"auto\")",
                                                 s, precision_name(model->precision), s);
        } else if ((allow & ARGS_SYSTEM_PROMPT) && !strcmp(key, "system_prompt")) {
                return read_string_option(m, key, type, &a->system_prompt, error);
        } else if ((allow & ARGS_TEMPLATE) && !strcmp(key, "template")) {
                return read_string_option(m, key, type, &a->template_name, error);
        } else {
                return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT, "unknown option '%s'", key);
        }
        return 0;
}

int args_read_options(sd_bus_message *m, const struct npu_model *model, int32_t n_ctx, unsigned allow,
                      struct gen_args *a, sd_bus_error *error)
{
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *contents;
                char type;

                r = sd_bus_message_read_basic(m, 's', &key);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        return r;
                r = sd_bus_message_enter_container(m, 'v', contents);
                if (r < 0)
                        return r;
                r = read_option(m, key, contents, model, n_ctx, allow, a, error);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

int args_tokenize(const struct npu_model *model, const struct prompt_arg *pa, bool add_bos, int32_t **ret,
                  int32_t *ret_n, sd_bus_error *error)
{
        const struct npu_vocab *v = model->vocab;
        size_t n;
        int r;

        if (pa->ids) {
                for (size_t i = 0; i < pa->n_ids; i++)
                        if (pa->ids[i] < 0 || pa->ids[i] >= v->n)
                                return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT,
                                                         "token id %d at %zu is outside the vocabulary (0 to %d)",
                                                         pa->ids[i], i, v->n - 1);
                *ret = malloc(sizeof(int32_t) * pa->n_ids);
                if (!*ret)
                        return -ENOMEM;
                memcpy(*ret, pa->ids, sizeof(int32_t) * pa->n_ids);
                *ret_n = (int32_t)pa->n_ids;
                return 0;
        }
        if (pa->len > (size_t)64 << 20)
                return sd_bus_error_set(error, NPUD_ERROR_PROMPT_TOO_LONG, "the prompt is over 64 MiB");
        r = vocab_tokenize(v, pa->text, pa->len, add_bos, false, ret, &n);
        if (r == -E2BIG)
                return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT,
                                        "the prompt is beyond what the tokenizer's pre-tokenizer can split");
        if (r < 0)
                return r;
        *ret_n = (int32_t)n;
        return 0;
}

void chat_args_done(struct chat_args *a)
{
        free(a->m);
        *a = (struct chat_args) {};
}

#define CHAT_MAX_MESSAGES 65536
#define CHAT_MAX_BYTES ((size_t)64 << 20)

int args_read_messages(sd_bus_message *m, struct chat_args *ret, sd_bus_error *error)
{
        struct chat_args a = {};
        size_t bytes = 0, cap = 0;
        const char *role, *content;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "(ss)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(m, "(ss)", &role, &content)) > 0) {
                enum chat_role cr;
                if (chat_role_from_string(role, &cr) < 0) {
                        r = sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT,
                                              "message %zu has role '%.32s'; system, user and assistant are known",
                                              a.n, role);
                        break;
                }
                size_t len = strlen(content);
                bytes += len;
                if (a.n >= CHAT_MAX_MESSAGES || bytes > CHAT_MAX_BYTES) {
                        r = sd_bus_error_set(error, NPUD_ERROR_PROMPT_TOO_LONG,
                                             "the messages are over 65536 or 64 MiB of text");
                        break;
                }
                if (a.n == cap) {
                        cap = MAX((size_t)8, cap * 2);
                        struct chat_message *v = realloc(a.m, cap * sizeof(*v));
                        if (!v) {
                                r = -ENOMEM;
                                break;
                        }
                        a.m = v;
                }
                a.m[a.n++] = (struct chat_message) { cr, content, len };
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r >= 0 && a.n == 0)
                r = sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT, "a chat needs at least one message");
        if (r < 0) {
                chat_args_done(&a);
                return r;
        }
        *ret = a;
        return 0;
}

int args_chat_template(const struct npu_model *model, const char *name, struct chat_template *ret,
                       sd_bus_error *error)
{
        struct npu_err err = {};
        int r;

        if (name && strcmp(name, "auto") != 0)
                r = chat_template_from_name(name, ret, &err);
        else if (!model->vocab->chat_template)
                r = chat_template_from_name("raw", ret, &err); /* a base model: the messages as they are */
        else
                r = chat_template_detect(model->vocab->chat_template, ret, &err);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT, "%s", err.msg);
        return 0;
}

int args_render_chat(const struct chat_template *t, const struct chat_message *m, size_t n,
                     bool add_generation_prompt, struct chat_prompt *ret, sd_bus_error *error)
{
        struct npu_err err = {};
        int r = chat_render(t, m, n, add_generation_prompt, ret, &err);

        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT, "%s", err.msg);
        if (ret->len == 0) {
                chat_prompt_done(ret);
                return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT, "the rendered chat is empty");
        }
        return 0;
}
