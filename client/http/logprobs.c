/* SPDX-License-Identifier: MIT */
/*
 * Log-probabilities: npud's Logprobs signals (a(uayda(uayd)): per token its
 * id, bytes, log-probability and most likely alternatives) kept per job, and
 * written in the shapes clients expect: OpenAI's chat ("content": [{token,
 * logprob, bytes, top_logprobs}]), OpenAI's legacy completions ({tokens,
 * token_logprobs, top_logprobs, text_offset}) and Ollama's (a list like
 * OpenAI's chat content).
 */
#include "gateway.h"

void lp_list_done(struct lp_list *l)
{
        for (size_t i = 0; i < l->n; i++) {
                free(l->v[i].tok.bytes);
                for (size_t k = 0; k < l->v[i].n_top; k++)
                        free(l->v[i].top[k].bytes);
                free(l->v[i].top);
        }
        free(l->v);
        *l = (struct lp_list) {};
}

static int read_token(sd_bus_message *m, struct lp_token *t)
{
        const void *bytes;
        size_t n;
        int r;

        r = sd_bus_message_read(m, "u", &t->id);
        if (r >= 0)
                r = sd_bus_message_read_array(m, 'y', &bytes, &n);
        if (r >= 0)
                r = sd_bus_message_read(m, "d", &t->logprob);
        if (r < 0)
                return r;
        t->bytes = malloc(n + 1);
        if (!t->bytes)
                return -ENOMEM;
        memcpy(t->bytes, bytes, n);
        t->bytes[n] = 0;
        t->n_bytes = n;
        return 0;
}

static int read_entry(sd_bus_message *m, struct lp_entry *e)
{
        int r;

        r = read_token(m, &e->tok);
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', "(uayd)");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'r', "uayd")) > 0) {
                if (e->n_top == LP_MAX_TOP)
                        return -EBADMSG;
                if (!e->top && !(e->top = calloc(LP_MAX_TOP, sizeof(*e->top))))
                        return -ENOMEM;
                r = read_token(m, &e->top[e->n_top]);
                if (r < 0)
                        return r;
                e->n_top++;
                r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        return r;
}

int lp_list_read(struct lp_list *l, sd_bus_message *m)
{
        int r;

        r = sd_bus_message_enter_container(m, 'a', "(uayda(uayd))");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'r', "uayda(uayd)")) > 0) {
                if (l->n == l->cap) {
                        size_t cap = MAX(l->cap * 2, (size_t)32);
                        struct lp_entry *v = reallocarray(l->v, cap, sizeof(*v));
                        if (!v)
                                return -ENOMEM;
                        l->v = v;
                        l->cap = cap;
                }
                l->v[l->n] = (struct lp_entry) {};
                r = read_entry(m, &l->v[l->n]);
                l->n++; /* freed with the list, even half read */
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        return r;
}

/* A token's text: its bytes when they are UTF-8, else "bytes:\xNN..." as OpenAI's servers write them. */
static json_object *token_string(const struct lp_token *t)
{
        _cleanup_(buf_done) struct buf b = {};

        if (utf8_valid_string((const char *)t->bytes, t->n_bytes))
                return json_object_new_string_len((const char *)t->bytes, (int)t->n_bytes);
        if (buf_append(&b, "bytes:", 6) < 0)
                return NULL;
        for (size_t i = 0; i < t->n_bytes; i++)
                if (buf_appendf(&b, "\\x%02x", t->bytes[i]) < 0)
                        return NULL;
        return json_object_new_string_len(b.data, (int)b.len);
}

static json_object *bytes_array(const struct lp_token *t)
{
        json_object *a = json_object_new_array_ext((int)t->n_bytes);

        for (size_t i = 0; a && i < t->n_bytes; i++)
                json_object_array_add(a, json_object_new_int(t->bytes[i]));
        return a;
}

/* {"token", "logprob", "bytes"} */
static json_object *token_json(const struct lp_token *t)
{
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        json_object_object_add(o, "token", token_string(t));
        json_object_object_add(o, "logprob", json_object_new_double(t->logprob));
        json_object_object_add(o, "bytes", bytes_array(t));
        return o;
}

json_object *lp_content_json(const struct lp_list *l, size_t from, size_t to)
{
        json_object *a = json_object_new_array();

        for (size_t i = from; a && i < to && i < l->n; i++) {
                const struct lp_entry *e = &l->v[i];
                json_object *o = token_json(&e->tok), *top = json_object_new_array();
                for (size_t k = 0; top && k < e->n_top; k++)
                        json_object_array_add(top, token_json(&e->top[k]));
                if (o)
                        json_object_object_add(o, "top_logprobs", top);
                else
                        json_object_put(top);
                json_object_array_add(a, o);
        }
        return a;
}

json_object *lp_completion_json(const struct lp_list *l, size_t from, size_t to, size_t offset_base)
{
        json_object *o = json_object_new_object(), *tokens = json_object_new_array(),
                    *lps = json_object_new_array(), *tops = json_object_new_array(),
                    *offsets = json_object_new_array();

        if (!o || !tokens || !lps || !tops || !offsets) {
                json_object_put(o);
                json_object_put(tokens);
                json_object_put(lps);
                json_object_put(tops);
                json_object_put(offsets);
                return NULL;
        }
        for (size_t i = from; i < to && i < l->n; i++) {
                const struct lp_entry *e = &l->v[i];
                json_object *top = json_object_new_object();
                json_object_array_add(tokens, token_string(&e->tok));
                json_object_array_add(lps, json_object_new_double(e->tok.logprob));
                for (size_t k = 0; top && k < e->n_top; k++) {
                        _cleanup_(json_object_putp) json_object *s = token_string(&e->top[k]);
                        if (s)
                                json_object_object_add(top, json_object_get_string(s),
                                                       json_object_new_double(e->top[k].logprob));
                }
                json_object_array_add(tops, top);
                json_object_array_add(offsets, json_object_new_int64((int64_t)(offset_base + e->text_offset)));
        }
        json_object_object_add(o, "tokens", tokens);
        json_object_object_add(o, "token_logprobs", lps);
        json_object_object_add(o, "top_logprobs", tops);
        json_object_object_add(o, "text_offset", offsets);
        return o;
}
