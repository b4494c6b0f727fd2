/* SPDX-License-Identifier: MIT */
/*
 * Request objects on the bus (/org/npud/Inference1/request/N): found for
 * their owner only, Cancel, Close, the properties, and the unicast Tokens
 * and Finished signals.
 */
#include <inttypes.h>

#include "bus_errors.h"
#include "props.h"
#include "server.h"
#include "vocab.h"

static int check_owner(sd_bus_message *m, struct request *r, sd_bus_error *error)
{
        const char *sender = sd_bus_message_get_sender(m);

        if (!r->client || !sender || strcmp(sender, r->client->name) != 0)
                return sd_bus_error_set(error, NPUD_ERROR_ACCESS_DENIED, "the request belongs to another client");
        return 0;
}

/* --- finding objects --- */

static struct request *request_by_id(struct server *srv, uint64_t id)
{
        for (struct served_model *m = srv->models; m; m = m->next)
                for (struct session *s = m->sessions_head; s; s = s->next)
                        for (struct request *r = s->requests_head; r; r = r->next)
                                if (r->id == id && r->client)
                                        return r;
        return NULL;
}

int request_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error)
{
        const char *p = path + strlen(NPUD_REQUEST_PREFIX);
        struct request *r;
        char *end;
        uint64_t id;

        if (strncmp(path, NPUD_REQUEST_PREFIX "/", strlen(NPUD_REQUEST_PREFIX) + 1) != 0)
                return 0;
        errno = 0;
        id = strtoull(p + 1, &end, 10);
        if (errno || *end || end == p + 1)
                return 0;
        r = request_by_id(userdata, id);
        if (!r)
                return 0;
        *ret = r;
        return 1;
}

/* Callers see only their own requests. */
int request_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error)
{
        sd_bus_message *m = sd_bus_get_current_message(bus);
        const char *sender = m ? sd_bus_message_get_sender(m) : NULL;
        struct client *c = sender ? clients_find(userdata, sender) : NULL;
        size_t n = 0, i = 0;
        char **v;

        for (struct request *r = c ? c->requests_head : NULL; r; r = r->client_next)
                n++;
        v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (struct request *r = c ? c->requests_head : NULL; r; r = r->client_next)
                if (!(v[i++] = strdup(r->path))) {
                        for (size_t k = 0; k < i; k++)
                                free(v[k]);
                        free(v);
                        return -ENOMEM;
                }
        *ret = v;
        return 1;
}

/* --- signals --- */

/* A token as (id, bytes, logprob): its bytes as the vocabulary has them (a piece of a character, maybe). */
static int append_token_logprob(sd_bus_message *m, const struct npu_vocab *v, const struct sampler_logprob *e,
                                bool open_only)
{
        char bytes[256];
        size_t n;
        int rr;

        n = e->id >= 0 ? vocab_token_bytes(v, e->id, bytes, sizeof(bytes)) : 0;
        rr = sd_bus_message_open_container(m, 'r', open_only ? "uayda(uayd)" : "uayd");
        if (rr >= 0)
                rr = sd_bus_message_append(m, "u", (uint32_t)e->id);
        if (rr >= 0)
                rr = sd_bus_message_append_array(m, 'y', bytes, n);
        if (rr >= 0)
                rr = sd_bus_message_append(m, "d", (double)e->logprob);
        if (rr >= 0 && !open_only)
                rr = sd_bus_message_close_container(m);
        return rr;
}

/*
 * a(uayda(uayd)): for each of n tokens from the from-th generated one, the
 * token (id, bytes, log-probability) and its top alternatives, most likely first.
 */
static int append_logprobs(sd_bus_message *m, const struct request *r, size_t from, size_t n)
{
        const struct token_logprobs *lp = &r->sr->logprobs;
        const struct npu_vocab *v = request_model(r)->rt->model->vocab;
        int rr;

        rr = sd_bus_message_open_container(m, 'a', "(uayda(uayd))");
        for (size_t i = 0; rr >= 0 && i < n; i++) {
                const struct sampler_logprob *e = token_logprobs_at(lp, from + i);
                if (!e)
                        break; /* cannot happen: every piece sent has its token's entry */
                rr = append_token_logprob(m, v, &e[0], true);
                if (rr >= 0)
                        rr = sd_bus_message_open_container(m, 'a', "(uayd)");
                for (int32_t k = 0; rr >= 0 && k < lp->top_n && e[1 + k].id >= 0; k++)
                        rr = append_token_logprob(m, v, &e[1 + k], false);
                if (rr >= 0)
                        rr = sd_bus_message_close_container(m);
                if (rr >= 0)
                        rr = sd_bus_message_close_container(m);
        }
        if (rr >= 0)
                rr = sd_bus_message_close_container(m);
        return rr;
}

/* Logprobs: sent before the Tokens signal with the same tokens, to a client that asked for them. */
static int send_logprobs(struct request *r)
{
        sd_bus *bus = request_model(r)->srv->bus;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int rr;

        rr = sd_bus_message_new_signal(bus, &m, r->path, NPUD_REQUEST_IFACE, "Logprobs");
        if (rr >= 0)
                rr = sd_bus_message_set_destination(m, r->client->name);
        if (rr >= 0)
                rr = append_logprobs(m, r, r->n_sent, r->sr->out.n);
        if (rr < 0)
                return rr;
        return sd_bus_send(bus, m, NULL);
}

int bus_request_send_tokens(struct request *r)
{
        struct sched_request *sr = r->sr;
        sd_bus *bus = request_model(r)->srv->bus;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int rr;

        if (token_logprobs_wanted(&sr->logprobs)) {
                rr = send_logprobs(r);
                if (rr < 0)
                        return rr;
        }
        rr = sd_bus_message_new_signal(bus, &m, r->path, NPUD_REQUEST_IFACE, "Tokens");
        if (rr < 0)
                return rr;
        rr = sd_bus_message_set_destination(m, r->client->name);
        if (rr < 0)
                return rr;
        rr = sd_bus_message_open_container(m, 'a', "(us)");
        if (rr < 0)
                return rr;
        for (size_t i = 0; i < sr->out.n; i++) {
                rr = sd_bus_message_append(m, "(us)", (uint32_t)sr->out.v[i].id, sr->out.v[i].text);
                if (rr < 0)
                        return rr;
        }
        rr = sd_bus_message_close_container(m);
        if (rr < 0)
                return rr;
        return sd_bus_send(bus, m, NULL);
}

static double ms_between(uint64_t a, uint64_t b)
{
        return a && b && b > a ? (double)(b - a) / 1e6 : 0;
}

/* Where the request's steps ran: "cpu", "npu", or "npu+cpu" (a fault, a fallback or a detach in between). */
static const char *request_backend(const struct request *r)
{
        if (r->steps_npu == 0)
                return "cpu";
        return r->steps_cpu ? "npu+cpu" : "npu";
}

/* Finished's text (s) and tokens (au): what the Tokens signals carried, joined; logprobs when asked for. */
static int append_reply(sd_bus_message *m, const struct request *r)
{
        int rr;

        rr = sd_bus_message_append(m, "{sv}", "text", "s", r->sent.text ? r->sent.text : "");
        if (rr >= 0)
                rr = sd_bus_message_open_container(m, 'e', "sv");
        if (rr >= 0)
                rr = sd_bus_message_append(m, "s", "tokens");
        if (rr >= 0)
                rr = sd_bus_message_open_container(m, 'v', "au");
        if (rr >= 0)
                rr = sd_bus_message_append_array(m, 'u', r->sent.ids, r->sent.n_ids * sizeof(uint32_t));
        if (rr >= 0)
                rr = sd_bus_message_close_container(m);
        if (rr >= 0)
                rr = sd_bus_message_close_container(m);
        if (rr < 0 || !token_logprobs_wanted(&r->sr->logprobs))
                return rr;
        rr = sd_bus_message_open_container(m, 'e', "sv");
        if (rr >= 0)
                rr = sd_bus_message_append(m, "s", "logprobs");
        if (rr >= 0)
                rr = sd_bus_message_open_container(m, 'v', "a(uayda(uayd))");
        if (rr >= 0)
                rr = append_logprobs(m, r, 0, r->n_sent);
        if (rr >= 0)
                rr = sd_bus_message_close_container(m);
        if (rr >= 0)
                rr = sd_bus_message_close_container(m);
        return rr;
}

int bus_request_send_finished(struct request *r)
{
        struct sched_request *sr = r->sr;
        sd_bus *bus = request_model(r)->srv->bus;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        double prefill = ms_between(sr->t_admit, sr->t_first);
        double decode = ms_between(sr->t_first, sr->t_done);
        int32_t steps = MAX(sr->n_generated - 1, 0);
        int rr;

        rr = sd_bus_message_new_signal(bus, &m, r->path, NPUD_REQUEST_IFACE, "Finished");
        if (rr < 0)
                return rr;
        rr = sd_bus_message_set_destination(m, r->client->name);
        if (rr < 0)
                return rr;
        rr = sd_bus_message_append(m, "s", sched_stop_name(sr->stop));
        if (rr < 0)
                return rr;
        rr = sd_bus_message_open_container(m, 'a', "{sv}");
#define ENTRY(key, type, value)                                                      \
        do {                                                                         \
                if (rr >= 0)                                                         \
                        rr = sd_bus_message_append(m, "{sv}", key, type, value);     \
        } while (0)
        ENTRY("prompt_tokens", "u", (uint32_t)r->n_prompt);
        ENTRY("cached_prompt_tokens", "u", (uint32_t)sr->n_cached);
        ENTRY("generated_tokens", "u", (uint32_t)sr->n_generated);
        ENTRY("queue_ms", "d", ms_between(sr->t_submit, sr->t_admit ? sr->t_admit : sr->t_done));
        ENTRY("prefill_ms", "d", prefill);
        ENTRY("ms_per_token", "d", steps ? decode / steps : 0.0);
        ENTRY("tokens_per_s", "d", steps && decode > 0 ? steps * 1000.0 / decode : 0.0);
        ENTRY("total_ms", "d", ms_between(sr->t_submit, sr->t_done));
        ENTRY("backend", "s", request_backend(r));
        ENTRY("device_faults", "u", r->device_faults);
        ENTRY("device_retries", "u", r->device_retries);
        ENTRY("cpu_fallbacks", "u", r->cpu_fallbacks);
        ENTRY("message", "s", sr->error ? sr->error : "");
#undef ENTRY
        if (rr >= 0 && !r->sent_incomplete)
                rr = append_reply(m, r);
        if (rr >= 0)
                rr = sd_bus_message_close_container(m);
        if (rr < 0)
                return rr;
        return sd_bus_send(bus, m, NULL);
}

/* --- methods and properties --- */

static int method_cancel(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct request *r = userdata;
        struct server *srv = request_model(r)->srv;
        int rr;

        rr = check_owner(m, r, error);
        if (rr < 0)
                return rr;
        if (r->cancel_requested)
                return sd_bus_error_set(error, NPUD_ERROR_CANCELLED, "the request was already cancelled");
        if (r->finished)
                return sd_bus_error_setf(error, NPUD_ERROR_FINISHED, "the request already finished (%s)",
                                         sched_stop_name(r->stop));
        r->cancel_requested = true;
        /* r may be gone after this (max_finished_kept = 0) */
        request_cancel(r, SCHED_STOP_CANCELLED);
        server_kick(srv);
        return sd_bus_reply_method_return(m, NULL);
}

static int method_close(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct request *r = userdata;
        struct server *srv = request_model(r)->srv;
        struct client *c = r->client;
        int rr;

        rr = check_owner(m, r, error);
        if (rr < 0)
                return rr;
        session_drop_request(r->session, r);
        client_maybe_forget(c);
        server_kick(srv);
        return sd_bus_reply_method_return(m, NULL);
}

void request_props(const struct request *r, struct props *p)
{
        props_add_s(p, "Model", request_model(r)->name);
        props_add_s(p, "State", r->sr ? sched_state_name(r->sr->state) : "queued");
        props_add_u(p, "PromptTokens", (uint32_t)r->n_prompt);
        props_add_u(p, "GeneratedTokens", r->sr ? (uint32_t)r->sr->n_generated : 0);
        props_add_s(p, "StopReason", r->finished ? sched_stop_name(r->stop) : "");
}

void request_props_initial(const struct request *r, struct props *p)
{
        props_add_s(p, "Model", request_model(r)->name);
        props_add_s(p, "State", "queued");
        props_add_u(p, "PromptTokens", (uint32_t)r->n_prompt);
        props_add_u(p, "GeneratedTokens", 0);
        props_add_s(p, "StopReason", "");
}

static int property_get(sd_bus *bus, const char *path, const char *iface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        struct request *r = userdata;
        struct props p = {};
        int rr;

        rr = check_owner(sd_bus_get_current_message(bus), r, error);
        if (rr < 0)
                return rr;
        request_props(r, &p);
        return props_reply(reply, &p, property);
}

const sd_bus_vtable request_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Cancel", "", "", method_cancel, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Close", "", "", method_close, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES("Tokens", "a(us)", SD_BUS_PARAM(tokens), 0),
        SD_BUS_SIGNAL_WITH_NAMES("Logprobs", "a(uayda(uayd))", SD_BUS_PARAM(tokens), 0),
        SD_BUS_SIGNAL_WITH_NAMES("Finished", "sa{sv}", SD_BUS_PARAM(reason) SD_BUS_PARAM(stats), 0),
        /* PropertiesChanged goes to the owner only */
        SD_BUS_PROPERTY("Model", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("PromptTokens", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("GeneratedTokens", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("StopReason", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END,
};
