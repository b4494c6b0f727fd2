/* SPDX-License-Identifier: MIT */
#include "session_chat.h"
#include "text_stream.h"

static void drop_messages(struct session_chat *ch, size_t n)
{
        while (ch->n > n)
                free((char *)ch->m[--ch->n].content);
}

static int push_message(struct session_chat *ch, enum chat_role role, const char *text, size_t len)
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

int session_chat_new(struct chat_template *t, const char *system, struct session_chat **ret)
{
        struct session_chat *ch = calloc(1, sizeof(*ch));

        if (!ch)
                return -ENOMEM;
        ch->tmpl = *t;
        *t = (struct chat_template) {};
        if (system && *system && push_message(ch, CHAT_ROLE_SYSTEM, system, strlen(system)) < 0) {
                session_chat_free(ch);
                return -ENOMEM;
        }
        ch->n_system = ch->n;
        *ret = ch;
        return 0;
}

void session_chat_free(struct session_chat *ch)
{
        if (!ch)
                return;
        drop_messages(ch, 0);
        free(ch->m);
        free(ch->pending);
        chat_template_done(&ch->tmpl);
        free(ch);
}

int session_chat_render(struct session_chat *ch, const char *text, size_t len, struct chat_prompt *ret,
                        struct npu_err *err)
{
        char *pending = strndup(text, len);
        int r;

        if (!pending)
                return -ENOMEM;
        free(ch->pending);
        ch->pending = pending;
        ch->pending_len = len;
        /* the pending message rendered after the others, then taken back out */
        r = push_message(ch, CHAT_ROLE_USER, text, len);
        if (r < 0)
                return r;
        r = chat_render(&ch->tmpl, ch->m, ch->n, true, ret, err);
        drop_messages(ch, ch->n - 1);
        return r;
}

int session_chat_finish_turn(struct session_chat *ch, const char *reply, size_t len)
{
        size_t n = ch->n;
        int r;

        if (!ch->pending)
                return 0;
        r = push_message(ch, CHAT_ROLE_USER, ch->pending, ch->pending_len);
        if (r >= 0)
                r = push_message(ch, CHAT_ROLE_ASSISTANT, reply, len);
        if (r < 0)
                drop_messages(ch, n);
        free(ch->pending);
        ch->pending = NULL;
        return r;
}

void session_chat_reset(struct session_chat *ch)
{
        drop_messages(ch, ch->n_system);
        free(ch->pending);
        ch->pending = NULL;
}

int session_chat_reply_text(const struct npu_vocab *v, const struct sched_request *sr, char **ret)
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
