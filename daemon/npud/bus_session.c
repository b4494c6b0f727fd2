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
        r = args_read_options(m, model->rt->model, model->rt->n_ctx, false, &a, error);
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

void session_props(const struct session *s, struct props *p)
{
        props_add_s(p, "Model", s->model->name);
        props_add_u(p, "Turns", s->turns);
        props_add_u(p, "ContextTokens", (uint32_t)s->n_history);
        props_add_s(p, "State", s->turn ? "busy" : s->evicted ? "evicted" : "idle");
}

void session_props_initial(const struct session *s, struct props *p)
{
        props_add_s(p, "Model", s->model->name);
        props_add_u(p, "Turns", 0);
        props_add_u(p, "ContextTokens", (uint32_t)s->n_system);
        props_add_s(p, "State", "idle");
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
        SD_BUS_VTABLE_END,
};
