/* SPDX-License-Identifier: MIT */
/*
 * Session objects (/org/npud/Inference1/session/N): a conversation whose KV
 * cache stays in the daemon between turns. Each turn runs as a request over
 * the whole history, starting from the cached positions; an idle session's
 * blocks may be reclaimed for other work, and its next turn computes them again.
 *
 * A chat session (the model has a chat template, or the template option
 * names one) keeps the conversation as messages: each turn adds the user's
 * message, renders them all through the template and runs from the longest
 * prefix of the cached tokens that the rendering shares; the reply becomes
 * the assistant's message. A session of a model without a template appends
 * each turn's tokens to the history.
 */
#include <inttypes.h>

#include "bus_args.h"
#include "bus_errors.h"
#include "server.h"
#include "text_stream.h"

static void list_remove(struct server *srv, struct bus_session *s)
{
        if (s->prev)
                s->prev->next = s->next;
        else
                srv->sessions_head = s->next;
        if (s->next)
                s->next->prev = s->prev;
        else
                srv->sessions_tail = s->prev;
}

/* --- the messages of a chat session --- */

static void chat_free(struct session_chat *ch)
{
        if (!ch)
                return;
        for (size_t i = 0; i < ch->n; i++)
                free((char *)ch->m[i].content);
        free(ch->m);
        chat_template_done(&ch->tmpl);
        free(ch);
}

static void chat_truncate(struct session_chat *ch, size_t n)
{
        while (ch->n > n)
                free((char *)ch->m[--ch->n].content);
}

static int chat_push(struct session_chat *ch, enum chat_role role, const char *text, size_t len)
{
        if (ch->n == ch->cap) {
                size_t cap = MAX((size_t)8, ch->cap * 2);
                struct chat_message *v = realloc(ch->m, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                ch->m = v;
                ch->cap = cap;
        }
        char *copy = strndup(text, len);
        if (!copy)
                return -ENOMEM;
        ch->m[ch->n++] = (struct chat_message) { role, copy, len };
        return 0;
}

static void free_now(struct bus_session *s)
{
        struct server *srv = s->srv;

        kv_seq_release(s->model->rt->kv, &s->seq);
        s->model->n_users--;
        list_remove(srv, s);
        strv_free(s->default_stops);
        chat_free(s->chat);
        free(s->history);
        free(s->path);
        free(s);
}

/* Closes the session; a running turn is cancelled first and the session goes with it. */
void session_free(struct bus_session *s)
{
        struct server *srv = s->srv;
        struct client *c = s->owner;

        s->owner = NULL;
        if (c)
                c->n_sessions--;
        if (s->turn) {
                /* frees the session when the turn ends, now or after the running step */
                request_free(s->turn);
                return;
        }
        free_now(s);
        if (c)
                client_maybe_forget(srv, c);
}

/*
 * The reply as its client received it: the generated tokens through a text
 * stream like the request's (the same U+FFFD for broken characters, the
 * text cut before a stop string).
 */
static int reply_text(const struct npu_vocab *v, const struct sched_request *sr, char **ret)
{
        char *stops[TEXT_STREAM_MAX_STOPS + 1] = {};
        struct text_stream ts;
        struct piece_queue q = {};
        char *text = NULL;
        size_t len = 0;
        int r;

        for (size_t i = 0; i < sr->text.n_stops && i < TEXT_STREAM_MAX_STOPS; i++)
                stops[i] = sr->text.stops[i];
        r = text_stream_init(&ts, stops);
        if (r < 0)
                return r;
        for (int32_t i = sr->n_prompt; r >= 0 && i < sr->n_tokens; i++) {
                char piece[1100];
                size_t n = vocab_token_bytes(v, sr->tokens[i], piece, sizeof(piece));
                r = text_stream_push(&ts, sr->tokens[i], piece, n, &q);
                if (r > 0)
                        break;
        }
        if (r >= 0)
                r = text_stream_finish(&ts, &q);
        for (size_t i = 0; r >= 0 && i < q.n; i++)
                len += strlen(q.v[i].text);
        if (r >= 0 && !(text = malloc(len + 1)))
                r = -ENOMEM;
        for (size_t i = 0, o = 0; r >= 0 && i < q.n; i++) {
                size_t n = strlen(q.v[i].text);
                memcpy(text + o, q.v[i].text, n);
                o += n;
        }
        if (text)
                text[len] = 0;
        piece_queue_done(&q);
        text_stream_done(&ts);
        if (r < 0) {
                free(text);
                return r;
        }
        *ret = text;
        return 0;
}

void session_turn_finished(struct bus_session *s, struct bus_request *br)
{
        struct sched_request *sr = br->sr;
        int32_t *h;

        s->turn = NULL;
        br->session = NULL;
        s->seq = sr->seq;
        sr->seq = (struct kv_seq) {};
        h = realloc(s->history, sizeof(int32_t) * sr->n_tokens);
        if (h) {
                memcpy(h, sr->tokens, sizeof(int32_t) * sr->n_tokens);
                s->history = h;
                s->n_history = sr->n_tokens;
        }
        if (s->chat) {
                /* the reply is the assistant's message; the next turn renders it through the template */
                _cleanup_free_ char *reply = NULL;
                if (reply_text(s->model->rt->model->vocab, sr, &reply) >= 0)
                        (void)chat_push(s->chat, CHAT_ROLE_ASSISTANT, reply, strlen(reply));
        }
        s->turns++;
        s->last_used = now_ns();
        if (!s->owner)
                free_now(s);
}

void sessions_drop_owner(struct server *srv, struct client *c)
{
        struct bus_session *s = srv->sessions_head;

        while (s) {
                struct bus_session *next = s->next;
                if (s->owner == c) {
                        c->n_sessions--;
                        s->owner = NULL;
                        if (s->turn)
                                request_free(s->turn);
                        else
                                free_now(s);
                }
                s = next;
        }
}

int32_t sessions_reclaim(struct scheduler *sched, int32_t n, void *userdata)
{
        struct server *srv = userdata;
        struct kv_pool *kv = sched->rt->kv;
        int32_t freed = 0;

        while (freed < n) {
                struct bus_session *lru = NULL;
                for (struct bus_session *s = srv->sessions_head; s; s = s->next)
                        if (s->model->sched == sched && !s->turn && s->seq.n_blocks > 0 &&
                            (!lru || s->last_used < lru->last_used))
                                lru = s;
                if (!lru)
                        break;
                int32_t before = kv->n_free;
                kv_seq_release(kv, &lru->seq);
                lru->evicted = true;
                freed += kv->n_free - before;
        }
        return freed;
}

/* --- finding objects --- */

static struct bus_session *session_by_path(struct server *srv, const char *path)
{
        const char *p = path + strlen(NPUD_SESSION_PREFIX);
        char *end;
        uint64_t id;

        if (strncmp(path, NPUD_SESSION_PREFIX "/", strlen(NPUD_SESSION_PREFIX) + 1) != 0)
                return NULL;
        errno = 0;
        id = strtoull(p + 1, &end, 10);
        if (errno || *end || end == p + 1)
                return NULL;
        for (struct bus_session *s = srv->sessions_head; s; s = s->next)
                if (s->id == id && s->owner)
                        return s;
        return NULL;
}

int session_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error)
{
        struct bus_session *s = session_by_path(userdata, path);

        if (!s)
                return 0;
        *ret = s;
        return 1;
}

int session_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error)
{
        struct server *srv = userdata;
        sd_bus_message *m = sd_bus_get_current_message(bus);
        const char *sender = m ? sd_bus_message_get_sender(m) : NULL;
        size_t n = 0, i = 0;
        char **v;

        for (struct bus_session *s = srv->sessions_head; s; s = s->next)
                n++;
        v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (struct bus_session *s = srv->sessions_head; s && sender; s = s->next)
                if (s->owner && !strcmp(s->owner->name, sender) && !(v[i++] = strdup(s->path))) {
                        strv_free(v);
                        return -ENOMEM;
                }
        *ret = v;
        return 1;
}

static int check_owner(sd_bus_message *m, struct bus_session *s, sd_bus_error *error)
{
        const char *sender = sd_bus_message_get_sender(m);

        if (!s->owner || !sender || strcmp(sender, s->owner->name) != 0)
                return sd_bus_error_set(error, NPUD_ERROR_ACCESS_DENIED, "the session belongs to another client");
        return 0;
}

/* --- creation --- */

int session_create(struct server *srv, struct client *owner, struct served_model *model, sd_bus_message *options,
                   struct bus_session **ret, sd_bus_error *error)
{
        _cleanup_(gen_args_done) struct gen_args a = {};
        struct prompt_arg pa = {};
        struct bus_session *s;
        int r;

        if (owner->n_sessions >= srv->cfg.max_sessions_per_client)
                return sd_bus_error_setf(error, NPUD_ERROR_LIMIT_EXCEEDED, "this client has %d sessions (the limit)",
                                         owner->n_sessions);
        r = gen_args_init(&a, NULL);
        if (r < 0)
                return r;
        r = args_read_options(options, model->rt->model, model->rt->n_ctx, ARGS_SYSTEM_PROMPT | ARGS_TEMPLATE, &a,
                              error);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->srv = srv;
        s->model = model;
        if (a.template_name || model->rt->model->vocab->chat_template) {
                s->chat = calloc(1, sizeof(*s->chat));
                r = s->chat ? args_chat_template(model->rt->model, a.template_name, &s->chat->tmpl, error) : -ENOMEM;
                if (r >= 0 && a.system_prompt && a.system_prompt[0])
                        r = chat_push(s->chat, CHAT_ROLE_SYSTEM, a.system_prompt, strlen(a.system_prompt));
                if (r < 0) {
                        chat_free(s->chat);
                        free(s);
                        return r;
                }
                s->chat->n_system = s->chat->n;
        } else if (a.system_prompt && a.system_prompt[0]) {
                pa.text = a.system_prompt;
                pa.len = strlen(a.system_prompt);
                r = args_tokenize(model->rt->model, &pa, true, &s->history, &s->n_history, error);
                if (r >= 0 && s->n_history >= model->rt->n_ctx)
                        r = sd_bus_error_setf(error, NPUD_ERROR_PROMPT_TOO_LONG,
                                              "the system prompt has %d tokens; the context holds %d",
                                              s->n_history, model->rt->n_ctx);
                if (r < 0) {
                        free(s->history);
                        free(s);
                        return r;
                }
                s->n_system = s->n_history;
        }
        s->id = ++srv->next_id;
        if (asprintf(&s->path, NPUD_SESSION_PREFIX "/%" PRIu64, s->id) < 0) {
                chat_free(s->chat);
                free(s->history);
                free(s);
                return -ENOMEM;
        }
        s->defaults = a.p;
        s->default_stops = TAKE_PTR(a.stops);
        s->defaults.stops = s->default_stops;
        s->owner = owner;
        s->last_used = now_ns();
        s->prev = srv->sessions_tail;
        if (srv->sessions_tail)
                srv->sessions_tail->next = s;
        else
                srv->sessions_head = s;
        srv->sessions_tail = s;
        owner->n_sessions++;
        model->n_users++;
        *ret = s;
        return 0;
}

/* --- methods and properties --- */

/*
 * Keep the first n positions of a session's cache. The block they end in is
 * written again by the next turn: when the prefix cache shares it, the
 * session takes a copy (or, with no block to copy into, starts over).
 */
static void keep_prefix(struct kv_pool *kv, struct kv_seq *seq, int32_t n)
{
        int32_t b = n / kv->block_size;

        if (n % kv->block_size && kv->refcount[seq->blocks[b]] > 1) {
                struct kv_seq fresh = {};
                int r = kv_seq_fork(kv, &fresh, seq, n);
                kv_seq_release(kv, seq);
                if (r >= 0)
                        *seq = fresh;
                return;
        }
        kv_seq_truncate(kv, seq, n);
}

/*
 * A chat turn's tokens: the messages with the user's, rendered, and how many
 * of the cached positions they keep (the longest prefix they share).
 */
static int chat_turn_tokens(struct bus_session *s, const struct prompt_arg *pa, int add_bos, int32_t **ret,
                            int32_t *ret_n, sd_bus_error *error)
{
        struct session_chat *ch = s->chat;
        int32_t n, keep = 0;
        int r;

        if (!pa->text)
                return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT,
                                        "a chat session takes its turns as text, not token ids");
        r = chat_push(ch, CHAT_ROLE_USER, pa->text, pa->len);
        if (r < 0)
                return r;
        r = args_tokenize_chat(s->model->rt->model, &ch->tmpl, ch->m, ch->n, true, add_bos, ret, &n, error);
        if (r < 0) {
                chat_truncate(ch, ch->n - 1);
                return r;
        }
        /* the cached positions the new rendering shares; at least its last token is computed */
        while (keep < s->seq.n_pos && keep < s->n_history && keep < n - 1 && s->history[keep] == (*ret)[keep])
                keep++;
        if (keep < s->seq.n_pos)
                keep_prefix(s->model->rt->kv, &s->seq, keep);
        *ret_n = n;
        return 0;
}

static int method_send(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct bus_session *s = userdata;
        struct served_model *model = s->model;
        _cleanup_(prompt_arg_done) struct prompt_arg pa = {};
        _cleanup_(gen_args_done) struct gen_args a = {};
        _cleanup_free_ int32_t *ids = NULL, *all = NULL;
        struct bus_request *br;
        int32_t n;
        int r;

        r = args_read_prompt(m, &pa, error);
        if (r < 0)
                return r;
        r = gen_args_init(&a, &s->defaults);
        if (r < 0)
                return r;
        r = args_read_options(m, model->rt->model, model->rt->n_ctx, 0, &a, error);
        if (r < 0)
                return r;
        r = check_owner(m, s, error);
        if (r < 0)
                return r;
        if (s->turn)
                return sd_bus_error_set(error, NPUD_ERROR_BUSY, "the session's previous turn is still running");
        if (s->chat) {
                r = chat_turn_tokens(s, &pa, a.add_bos, &all, &n, error);
                if (r < 0)
                        return r;
                r = request_create(s->srv, s->owner, model, s, all, n, &a.p, &s->seq, &br, error);
                if (r < 0) {
                        chat_truncate(s->chat, s->chat->n - 1);
                        return r;
                }
                s->turn = br;
                s->evicted = false;
                return sd_bus_reply_method_return(m, "o", br->path);
        }
        r = args_tokenize(model->rt->model, &pa, a.add_bos >= 0 ? a.add_bos : s->n_history == 0, &ids, &n, error);
        if (r < 0)
                return r;
        if ((int64_t)s->n_history + n >= model->rt->n_ctx)
                return sd_bus_error_setf(error, NPUD_ERROR_PROMPT_TOO_LONG,
                                         "the history (%d tokens) and this prompt (%d) do not fit the context (%d)",
                                         s->n_history, n, model->rt->n_ctx);
        all = malloc(sizeof(int32_t) * (s->n_history + n));
        if (!all)
                return -ENOMEM;
        if (s->n_history > 0)
                memcpy(all, s->history, sizeof(int32_t) * s->n_history);
        memcpy(all + s->n_history, ids, sizeof(int32_t) * n);
        r = request_create(s->srv, s->owner, model, s, all, s->n_history + n, &a.p, &s->seq, &br, error);
        if (r < 0)
                return r;
        s->turn = br;
        s->evicted = false;
        return sd_bus_reply_method_return(m, "o", br->path);
}

static int method_reset(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct bus_session *s = userdata;
        int r;

        r = check_owner(m, s, error);
        if (r < 0)
                return r;
        if (s->turn)
                return sd_bus_error_set(error, NPUD_ERROR_BUSY, "a turn is running; cancel it first");
        kv_seq_release(s->model->rt->kv, &s->seq);
        s->n_history = s->n_system;
        if (s->chat) {
                chat_truncate(s->chat, s->chat->n_system);
                s->n_history = 0;
        }
        s->turns = 0;
        s->evicted = false;
        return sd_bus_reply_method_return(m, NULL);
}

static int method_close(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct bus_session *s = userdata;
        struct server *srv = s->srv;
        int r;

        r = check_owner(m, s, error);
        if (r < 0)
                return r;
        session_free(s);
        server_kick(srv);
        return sd_bus_reply_method_return(m, NULL);
}

static int property_get(sd_bus *bus, const char *path, const char *iface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        struct bus_session *s = userdata;
        int r;

        r = check_owner(sd_bus_get_current_message(bus), s, error);
        if (r < 0)
                return r;
        if (!strcmp(property, "Model"))
                return sd_bus_message_append(reply, "s", s->model->name);
        if (!strcmp(property, "Turns"))
                return sd_bus_message_append(reply, "u", s->turns);
        if (!strcmp(property, "ContextTokens"))
                return sd_bus_message_append(reply, "u", (uint32_t)s->n_history);
        if (!strcmp(property, "State"))
                return sd_bus_message_append(reply, "s", s->turn ? "busy" : s->evicted ? "evicted" : "idle");
        if (!strcmp(property, "ChatTemplate"))
                return sd_bus_message_append(reply, "s", s->chat ? chat_format_name(s->chat->tmpl.format) : "");
        if (!strcmp(property, "Messages")) {
                r = sd_bus_message_open_container(reply, 'a', "(ss)");
                for (size_t i = 0; r >= 0 && s->chat && i < s->chat->n; i++)
                        r = sd_bus_message_append(reply, "(ss)", chat_role_name(s->chat->m[i].role),
                                                  s->chat->m[i].content);
                return r < 0 ? r : sd_bus_message_close_container(reply);
        }
        return -ENOENT;
}

const sd_bus_vtable session_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_NAMES("Send", "va{sv}", SD_BUS_PARAM(prompt) SD_BUS_PARAM(options), "o",
                                 SD_BUS_PARAM(request), method_send, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Reset", "", "", method_reset, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Close", "", "", method_close, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_PROPERTY("Model", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Turns", "u", property_get, 0, 0),
        SD_BUS_PROPERTY("ContextTokens", "u", property_get, 0, 0),
        SD_BUS_PROPERTY("State", "s", property_get, 0, 0),
        SD_BUS_PROPERTY("ChatTemplate", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Messages", "a(ss)", property_get, 0, 0),
        SD_BUS_VTABLE_END,
};
