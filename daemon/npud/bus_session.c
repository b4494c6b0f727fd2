/* SPDX-License-Identifier: MIT */
/*
 * Session objects on the bus (/org/npud/Inference1/session/N): found for
 * their owner only, Send (a turn), Reset, Close and the properties.
 */
#include <inttypes.h>

#include "bus_args.h"
#include "bus_errors.h"
#include "props.h"
#include "server.h"
#include "session_chat.h"

/* --- finding objects --- */

static struct session *session_by_id(struct server *srv, uint64_t id)
{
        for (struct served_model *m = srv->models; m; m = m->next)
                for (struct session *s = m->sessions_head; s; s = s->next)
                        if (s->id == id && s->path && s->client && !s->call)
                                return s;
        return NULL;
}

int session_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error)
{
        const char *p = path + strlen(NPUD_SESSION_PREFIX);
        struct session *s;
        char *end;
        uint64_t id;

        if (strncmp(path, NPUD_SESSION_PREFIX "/", strlen(NPUD_SESSION_PREFIX) + 1) != 0)
                return 0;
        errno = 0;
        id = strtoull(p + 1, &end, 10);
        if (errno || *end || end == p + 1)
                return 0;
        s = session_by_id(userdata, id);
        if (!s)
                return 0;
        *ret = s;
        return 1;
}

int session_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error)
{
        sd_bus_message *m = sd_bus_get_current_message(bus);
        const char *sender = m ? sd_bus_message_get_sender(m) : NULL;
        struct client *c = sender ? clients_find(userdata, sender) : NULL;
        size_t n = 0, i = 0;
        char **v;

        for (struct session *s = c ? c->sessions_head : NULL; s; s = s->client_next)
                n++;
        v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (struct session *s = c ? c->sessions_head : NULL; s; s = s->client_next)
                if (!(v[i++] = strdup(s->path))) {
                        strv_free(v);
                        return -ENOMEM;
                }
        *ret = v;
        return 1;
}

static int check_owner(sd_bus_message *m, struct session *s, sd_bus_error *error)
{
        const char *sender = sd_bus_message_get_sender(m);

        if (!s->client || !sender || strcmp(sender, s->client->name) != 0)
                return sd_bus_error_set(error, NPUD_ERROR_ACCESS_DENIED, "the session belongs to another client");
        return 0;
}

/* --- methods and properties --- */

/* A chat session's turn: the prompt is the user's message; the messages are rendered and tokenized. */
static int send_chat(sd_bus_message *m, struct session *s, const struct prompt_arg *pa, const struct gen_args *a,
                     sd_bus_error *error)
{
        _cleanup_(chat_prompt_done) struct chat_prompt p = {};
        struct npu_err err = {};
        struct request *req;
        int r;

        if (!pa->text)
                return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT,
                                        "a chat session takes its turns as text, not token ids");
        r = session_chat_render(s->chat, pa->text, pa->len, &p, &err);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT, "%s", err.msg);
        r = session_start_turn(s, &req, error);
        if (r < 0)
                return r;
        r = request_start_chat(req, m, &p, a->add_bos != 0, &a->p, error);
        if (r < 0)
                session_drop_request(s, req);
        return r;
}

static int method_send(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct session *s = userdata;
        struct served_model *model = s->model;
        struct server *srv = model->srv;
        _cleanup_(prompt_arg_done) struct prompt_arg pa = {};
        _cleanup_(gen_args_done) struct gen_args a = {};
        struct request *req;
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
        r = client_check_request(s->client, &srv->cfg, error);
        if (r < 0)
                return r;
        if (s->chat)
                return send_chat(m, s, &pa, &a, error);
        r = session_start_turn(s, &req, error);
        if (r < 0)
                return r;
        r = request_start(req, m, &pa, a.add_bos >= 0 ? a.add_bos : s->n_history == 0, &a.p, error);
        if (r < 0)
                session_drop_request(s, req);
        return r;
}

static int method_reset(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct session *s = userdata;
        int r;

        r = check_owner(m, s, error);
        if (r < 0)
                return r;
        if (s->turn)
                return sd_bus_error_set(error, NPUD_ERROR_BUSY, "a turn is running; cancel it first");
        session_reset(s);
        return sd_bus_reply_method_return(m, NULL);
}

static int method_close(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct session *s = userdata;
        struct server *srv = s->model->srv;
        struct client *c = s->client;
        int r;

        r = check_owner(m, s, error);
        if (r < 0)
                return r;
        session_close(s);
        client_maybe_forget(c);
        server_kick(srv);
        return sd_bus_reply_method_return(m, NULL);
}

/* What tells the first n messages apart cheaply: their number, lengths and last bytes (FNV-1a). */
static uint64_t messages_version(const struct session *s, size_t n)
{
        uint64_t h = 0xcbf29ce484222325ull;

        for (size_t i = 0; s->chat && i < n && i < s->chat->n; i++) {
                const struct chat_message *m = &s->chat->m[i];
                size_t from = m->len > 32 ? m->len - 32 : 0;
                h = (h ^ (uint64_t)m->len ^ ((uint64_t)m->role << 56)) * 0x100000001b3ull;
                for (size_t k = from; k < m->len; k++)
                        h = (h ^ (uint8_t)m->content[k]) * 0x100000001b3ull;
        }
        return h;
}

void session_props(const struct session *s, struct props *p)
{
        props_add_s(p, "Model", s->model->name);
        props_add_u(p, "Turns", s->turns);
        props_add_u(p, "ContextTokens", (uint32_t)s->n_history);
        props_add_s(p, "State", s->turn ? "busy" : s->evicted ? "evicted" : "idle");
        props_add_s(p, "ChatTemplate", s->chat ? chat_format_name(s->chat->tmpl.format) : "");
        props_add_invalidates(p, "Messages", messages_version(s, SIZE_MAX));
}

void session_props_initial(const struct session *s, struct props *p)
{
        props_add_s(p, "Model", s->model->name);
        props_add_u(p, "Turns", 0);
        props_add_u(p, "ContextTokens", (uint32_t)s->n_system);
        props_add_s(p, "State", "idle");
        props_add_s(p, "ChatTemplate", s->chat ? chat_format_name(s->chat->tmpl.format) : "");
        /* the messages it had when it appeared: its system message (kept by Reset), if any */
        props_add_invalidates(p, "Messages", messages_version(s, s->chat ? s->chat->n_system : 0));
}

static int property_get(sd_bus *bus, const char *path, const char *iface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        struct session *s = userdata;
        struct props p = {};
        int r;

        r = check_owner(sd_bus_get_current_message(bus), s, error);
        if (r < 0)
                return r;
        if (!strcmp(property, "Messages")) {
                r = sd_bus_message_open_container(reply, 'a', "(ss)");
                for (size_t i = 0; r >= 0 && s->chat && i < s->chat->n; i++)
                        r = sd_bus_message_append(reply, "(ss)", chat_role_name(s->chat->m[i].role),
                                                  s->chat->m[i].content);
                return r < 0 ? r : sd_bus_message_close_container(reply);
        }
        session_props(s, &p);
        return props_reply(reply, &p, property);
}

const sd_bus_vtable session_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_NAMES("Send", "va{sv}", SD_BUS_PARAM(prompt) SD_BUS_PARAM(options), "o",
                                 SD_BUS_PARAM(request), method_send, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Reset", "", "", method_reset, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Close", "", "", method_close, SD_BUS_VTABLE_UNPRIVILEGED),
        /* PropertiesChanged goes to the owner only */
        SD_BUS_PROPERTY("Model", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Turns", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ContextTokens", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("State", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ChatTemplate", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Messages", "a(ss)", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
        SD_BUS_VTABLE_END,
};
