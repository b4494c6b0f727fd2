/* SPDX-License-Identifier: MIT */
/*
 * The event loop: bus, signals, the step runner and the service manager
 * (READY, STATUS, WATCHDOG, RELOADING). One step runs at a time, taking the
 * models with work in turn.
 */
#include <inttypes.h>
#include <signal.h>
#include <systemd/sd-daemon.h>

#include "bus_changes.h"
#include "bus_errors.h"
#include "server.h"
#include "step_runner.h"
#include "worker.h"

#define STATUS_INTERVAL_USEC (2 * 1000000ull)
#define EXTEND_INTERVAL_USEC (10 * 1000000ull)

static int on_step_kick(sd_event_source *es, void *userdata);
static void on_step_done(struct scheduler *s, int r, const char *error, void *userdata);

int server_new(struct server **ret)
{
        _cleanup_(server_freep) struct server *srv = calloc(1, sizeof(*srv));
        int r;

        if (!srv)
                return -ENOMEM;
        config_defaults(&srv->cfg);
        srv->uid = geteuid();
        srv->t_start = now_ns();
        r = sd_event_default(&srv->event);
        if (r < 0)
                return r;
        r = step_runner_new(srv->event, on_step_done, srv, &srv->runner);
        if (r < 0)
                return r;
        r = worker_new(srv->event, "npud-tokenize", &srv->tokenizer);
        if (r < 0)
                return r;
        r = worker_new(srv->event, "npud-load", &srv->loader);
        if (r < 0)
                return r;
        r = sd_event_add_defer(srv->event, &srv->kick_source, on_step_kick, srv);
        if (r < 0)
                return r;
        /* the bus first, steps after: a step starts only when no bus message waits */
        sd_event_source_set_priority(srv->kick_source, SD_EVENT_PRIORITY_IDLE);
        sd_event_source_set_enabled(srv->kick_source, SD_EVENT_OFF);
        *ret = TAKE_PTR(srv);
        return 0;
}

void server_free(struct server *srv)
{
        if (!srv)
                return;
        /* the workers' last jobs end while everything they report to is there */
        worker_free(srv->tokenizer);
        worker_free(srv->loader);
        demand_loads_free_all(srv);
        step_runner_free(srv->runner);
        devices_free_all(srv);
        models_free_all(srv);
        clients_free_all(srv);
        bus_changes_free(srv);
        sd_event_source_disable_unref(srv->expiry_timer);
        srv->kick_source = sd_event_source_disable_unref(srv->kick_source);
        authorize_free_all(srv);
        sd_event_source_disable_unref(srv->status_timer);
        sd_event_source_disable_unref(srv->extend_timer);
        if (srv->reload_call)
                sd_bus_reply_method_errorf(srv->reload_call, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        sd_bus_message_unref(srv->reload_call);
        if (srv->bus) {
                sd_bus_flush(srv->bus);
                sd_bus_flush_close_unref(srv->bus);
        }
        sd_event_unref(srv->event);
        config_done(&srv->cfg);
        free(srv->config_path);
        free(srv);
}

uint64_t server_next_id(struct server *srv)
{
        return ++srv->next_id;
}

/* --- steps --- */

void server_kick(struct server *srv)
{
        if (srv->kick_source)
                sd_event_source_set_enabled(srv->kick_source, SD_EVENT_ONESHOT);
}

/*
 * Starts a step of the next model, in turn after the one that stepped last,
 * that has a batch to run. A model that cannot run one now (its queued work
 * waits for room) is passed over, not waited for.
 */
static int on_step_kick(sd_event_source *es, void *userdata)
{
        struct server *srv = userdata;
        struct served_model *start, *m;

        if (step_runner_busy(srv->runner))
                return 0;
        devices_run_pending(srv);
        models_run_pending(srv);
        start = srv->last_stepped && srv->last_stepped->next ? srv->last_stepped->next : srv->models;
        m = start;
        if (!m)
                return 0;
        do {
                if (sched_has_work(m->sched) && sched_step_prepare(m->sched)) {
                        srv->last_stepped = m;
                        srv->stepping = m;
                        srv->step_stats = m->rt->ctx->stats;
                        srv->step_on_npu = ctx_target(m->rt->ctx) == BACKEND_TARGET_NPU;
                        step_runner_start(srv->runner, m->sched);
                        return 0;
                }
                m = m->next ? m->next : srv->models;
        } while (m != start);
        return 0;
}

static void count_rate(struct server *srv, uint64_t generated)
{
        uint64_t sec = now_ns() / 1000000000ull;
        size_t i = sec % ARRAY_SIZE(srv->rate_at);

        if (srv->rate_at[i] != sec) {
                srv->rate_at[i] = sec;
                srv->rate_tokens[i] = 0;
        }
        srv->rate_tokens[i] += generated;
}

double server_tokens_per_s(struct server *srv)
{
        uint64_t sec = now_ns() / 1000000000ull, n = 0;

        for (size_t i = 0; i < ARRAY_SIZE(srv->rate_at); i++)
                if (srv->rate_at[i] + ARRAY_SIZE(srv->rate_at) > sec)
                        n += srv->rate_tokens[i];
        return (double)n / ARRAY_SIZE(srv->rate_at);
}

uint64_t server_generated_total(const struct server *srv)
{
        uint64_t n = 0;

        for (const struct served_model *m = srv->models; m; m = m->next)
                n += m->sched->stats.generated_tokens;
        return n;
}

/* Where the step's passes ran and what went wrong on the device, for each request in it. */
static void account_step(struct server *srv, struct scheduler *s)
{
        const struct backend_stats *now = &s->rt->ctx->stats, *was = &srv->step_stats;
        bool npu = now->passes > was->passes;
        bool cpu = !srv->step_on_npu || now->cpu_fallbacks > was->cpu_fallbacks;

        if (now->faults > was->faults || now->cpu_fallbacks > was->cpu_fallbacks)
                fprintf(stderr, "<4>npud: device %s: %" PRIu64 " fault(s) (%s) in a step of %d request(s); "
                        "%" PRIu64 " pass(es) retried on a fresh context, %" PRIu64 " finished on the cpu\n",
                        srv->stepping && srv->stepping->device ? srv->stepping->device->name : "(detached)",
                        now->faults - was->faults, now->last_fault[0] ? now->last_fault : "no detail",
                        s->n_step_reqs, now->retries - was->retries, now->cpu_fallbacks - was->cpu_fallbacks);
        for (int32_t i = 0; i < s->n_step_reqs; i++) {
                struct request *r = s->step_reqs[i]->userdata;
                if (!r)
                        continue;
                r->steps_npu += npu;
                r->steps_cpu += cpu;
                r->device_faults += (uint32_t)(now->faults - was->faults);
                r->device_retries += (uint32_t)(now->retries - was->retries);
                r->cpu_fallbacks += (uint32_t)(now->cpu_fallbacks - was->cpu_fallbacks);
        }
}

/* Tokens that waited for the bus' queue to shrink. */
static void flush_all(struct server *srv)
{
        for (struct served_model *m = srv->models; m; m = m->next)
                for (struct session *s = m->sessions_head; s; s = s->next)
                        for (struct request *r = s->requests_head; r; r = r->next)
                                if (!r->finished)
                                        request_flush(r, false);
}

static void on_step_done(struct scheduler *s, int r, const char *error, void *userdata)
{
        struct server *srv = userdata;
        uint64_t before = s->stats.generated_tokens;

        account_step(srv, s);
        if (srv->stepping)
                devices_step_ended(srv, srv->stepping);
        srv->stepping = NULL;
        if (r < 0)
                fprintf(stderr, "<3>npud: a step failed: %s\n", error);
        sched_step_complete(s, r, error);
        count_rate(srv, s->stats.generated_tokens - before);
        flush_all(srv);
        if (srv->shutting_down) {
                sd_event_exit(srv->event, 0);
                return;
        }
        server_kick(srv);
}

/* --- the service manager --- */

static void update_status(struct server *srv)
{
        int32_t active = 0, queued = 0;

        for (struct served_model *m = srv->models; m; m = m->next) {
                active += m->sched->n_active;
                queued += m->sched->n_queued;
        }
        const struct served_model *dm = srv->default_model;
        sd_notifyf(false, "STATUS=model %s on %s; %d active, %d queued requests; %.1f tokens/s",
                   dm ? dm->name : "(none)", dm && dm->device ? dm->device->name : "cpu", active, queued,
                   server_tokens_per_s(srv));
}

static int on_status_timer(sd_event_source *es, uint64_t usec, void *userdata)
{
        struct server *srv = userdata;

        update_status(srv);
        sd_event_source_set_time(es, usec + STATUS_INTERVAL_USEC);
        return 0;
}

void server_shutdown(struct server *srv)
{
        if (srv->shutting_down)
                return;
        srv->shutting_down = true;
        sd_notify(false, "STOPPING=1\nSTATUS=stopping: cancelling requests");
        fprintf(stderr, "npud: stopping\n");
        for (struct served_model *m = srv->models; m; m = m->next) {
                while (m->sched->queue_head)
                        sched_cancel(m->sched->queue_head, SCHED_STOP_SHUTDOWN);
                /* requests in the running step stay listed until it ends */
                for (;;) {
                        struct sched_request *r = m->sched->active_head;
                        while (r && r->step_tokens > 0)
                                r = r->next;
                        if (!r)
                                break;
                        sched_cancel(r, SCHED_STOP_SHUTDOWN);
                }
                for (struct sched_request *r = m->sched->active_head; r; r = r->next)
                        sched_cancel(r, SCHED_STOP_SHUTDOWN);
        }
        if (!step_runner_busy(srv->runner)) {
                devices_run_pending(srv);
                sd_event_exit(srv->event, 0);
        }
}

static int on_terminate(sd_event_source *es, const struct signalfd_siginfo *si, void *userdata)
{
        server_shutdown(userdata);
        return 0;
}

static int on_hangup(sd_event_source *es, const struct signalfd_siginfo *si, void *userdata)
{
        server_reload(userdata, NULL);
        return 0;
}

static void reload_end(struct server *srv, const sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = TAKE_PTR(srv->reload_call);

        srv->reloading = false;
        if (call) {
                if (sd_bus_error_is_set(error))
                        (void)sd_bus_reply_method_error(call, error);
                else
                        (void)sd_bus_reply_method_return(call, NULL);
        }
        sd_notify(false, "READY=1");
        update_status(srv);
}

static void on_reload_loaded(struct server *srv, struct served_model *m, int r, const struct npu_err *err,
                             void *userdata)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

        if (r < 0) {
                fprintf(stderr, "<4>npud: cannot load the configured model: %s\n", err->msg);
                sd_bus_error_setf(&error, NPUD_ERROR_BAD_MODEL, "cannot load the configured model: %s", err->msg);
        }
        reload_end(srv, &error);
}

int server_reload(struct server *srv, sd_bus_message *call)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        struct npu_err err = {};
        int r;

        if (srv->reloading) {
                fprintf(stderr, "<4>npud: a reload is in progress already\n");
                if (call)
                        return sd_bus_reply_method_errorf(call, NPUD_ERROR_BUSY, "a reload is in progress already");
                return 0;
        }
        srv->reloading = true;
        srv->reload_call = sd_bus_message_ref(call);
        sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)(now_ns() / 1000));
        if (srv->config_path) {
                r = config_load(&srv->cfg, srv->config_path, &err);
                if (r < 0) {
                        fprintf(stderr, "<4>npud: keeping the old configuration: %s\n", err.msg);
                        sd_bus_error_setf(&error, NPUD_ERROR_FAILED, "keeping the old configuration: %s", err.msg);
                        reload_end(srv, &error);
                        return 1;
                }
                fprintf(stderr, "npud: reloaded %s\n", srv->config_path);
                models_apply_limits(srv);
        }
        if (srv->cfg.model && (!srv->default_model || strcmp(srv->default_model->path, srv->cfg.model) != 0)) {
                /* the reply (and READY=1) waits for the load */
                r = models_load(srv, srv->cfg.model, NULL, true, on_reload_loaded, NULL, &err);
                if (r < 0)
                        on_reload_loaded(srv, NULL, r, &err, NULL);
                return 1;
        }
        reload_end(srv, &error);
        return 1;
}

/* --- the bus --- */

static int open_bus(const char *bus, sd_bus **ret)
{
        _cleanup_(sd_bus_unrefp) sd_bus *b = NULL;
        int r;

        if (!bus || !strcmp(bus, "system"))
                return sd_bus_open_system(ret);
        if (!strcmp(bus, "session"))
                return sd_bus_open_user(ret);
        r = sd_bus_new(&b);
        if (r < 0)
                return r;
        r = sd_bus_set_address(b, bus);
        if (r < 0)
                return r;
        r = sd_bus_set_bus_client(b, true);
        if (r < 0)
                return r;
        r = sd_bus_start(b);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(b);
        return 0;
}

/* Objects under prefix: found by find, listed (in introspection) by enumerate. */
static int add_children(struct server *srv, const char *prefix, const char *iface, const sd_bus_vtable *vtable,
                        sd_bus_object_find_t find, sd_bus_node_enumerator_t enumerate)
{
        int r = sd_bus_add_fallback_vtable(srv->bus, NULL, prefix, iface, vtable, find, srv);

        if (r < 0)
                return r;
        return sd_bus_add_node_enumerator(srv->bus, NULL, prefix, enumerate, srv);
}

void server_client_left(struct server *srv, struct client *c)
{
        while (c->requests_head)
                session_drop_request(c->requests_head->session, c->requests_head);
        while (c->sessions_head)
                session_close(c->sessions_head);
        client_free(c);
        server_kick(srv);
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        const char *name, *old_owner, *new_owner;
        struct client *c;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (name[0] != ':' || new_owner[0] != 0)
                return 0;
        c = clients_find(srv, name);
        if (c)
                server_client_left(srv, c);
        return 0;
}

int server_open_bus(struct server *srv, const char *bus)
{
        int r;

        r = open_bus(bus, &srv->bus);
        if (r < 0) {
                fprintf(stderr, "npud: cannot connect to the %s bus: %s\n", bus ? bus : "system", strerror(-r));
                return r;
        }
        r = sd_bus_attach_event(srv->bus, srv->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        r = sd_bus_add_object_vtable(srv->bus, NULL, NPUD_ROOT_PATH, NPUD_MANAGER_IFACE, manager_vtable, srv);
        if (r < 0)
                return r;
        r = add_children(srv, NPUD_REQUEST_PREFIX, NPUD_REQUEST_IFACE, request_vtable, request_find,
                         request_enumerate);
        if (r >= 0)
                r = add_children(srv, NPUD_SESSION_PREFIX, NPUD_SESSION_IFACE, session_vtable, session_find,
                                 session_enumerate);
        if (r >= 0)
                r = add_children(srv, NPUD_DEVICE_PREFIX, NPUD_DEVICE_IFACE, device_vtable, device_find,
                                 device_enumerate);
        if (r >= 0)
                r = add_children(srv, NPUD_MODEL_PREFIX, NPUD_MODEL_IFACE, model_vtable, model_find, model_enumerate);
        if (r >= 0)
                r = sd_bus_add_object_manager(srv->bus, NULL, NPUD_ROOT_PATH);
        if (r >= 0)
                r = bus_changes_new(srv);
        if (r < 0)
                return r;
        return sd_bus_match_signal(srv->bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                   "org.freedesktop.DBus", "NameOwnerChanged", on_name_owner_changed, srv);
}

/* Takes the bus name and tells the service manager: npud serves from here. */
static int server_ready(struct server *srv)
{
        int r;

        srv->extend_timer = sd_event_source_disable_unref(srv->extend_timer);
        r = sd_bus_request_name(srv->bus, NPUD_BUS_NAME, 0);
        if (r < 0) {
                fprintf(stderr, "npud: cannot take the bus name %s: %s\n", NPUD_BUS_NAME, strerror(-r));
                return r;
        }
        sd_notify(false, "READY=1");
        update_status(srv);
        fprintf(stderr, "npud: serving %s\n", NPUD_BUS_NAME);
        return 0;
}

static void on_default_loaded(struct server *srv, struct served_model *m, int r, const struct npu_err *err,
                              void *userdata)
{
        if (r >= 0)
                r = server_ready(srv);
        else
                fprintf(stderr, "npud: cannot load the default model: %s\n", err->msg);
        if (r < 0 && !srv->shutting_down) {
                sd_notifyf(false, "STATUS=cannot start: %s\nERRNO=%d", err->msg, -r);
                sd_event_exit(srv->event, 1);
        }
}

/* While the default model loads, the service manager's start timeout keeps moving. */
static int on_extend_timer(sd_event_source *es, uint64_t usec, void *userdata)
{
        sd_notifyf(false, "EXTEND_TIMEOUT_USEC=%llu\nSTATUS=loading the default model",
                   (unsigned long long)(3 * EXTEND_INTERVAL_USEC));
        sd_event_source_set_time(es, usec + EXTEND_INTERVAL_USEC);
        return 0;
}

int server_start(struct server *srv)
{
        struct npu_err err = {};
        int r;

        r = sd_event_add_signal(srv->event, NULL, SIGTERM, on_terminate, srv);
        if (r >= 0)
                r = sd_event_add_signal(srv->event, NULL, SIGINT, on_terminate, srv);
        if (r >= 0)
                r = sd_event_add_signal(srv->event, NULL, SIGHUP, on_hangup, srv);
        if (r < 0)
                return r;
        r = sd_event_set_watchdog(srv->event, true);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(srv->event, &srv->status_timer, CLOCK_MONOTONIC, STATUS_INTERVAL_USEC, 0,
                                       on_status_timer, srv);
        if (r < 0)
                return r;
        sd_event_source_set_enabled(srv->status_timer, SD_EVENT_ON);
        if (!srv->cfg.model)
                return server_ready(srv);
        /* the bus name is taken once the default model is there (callers wait in the bus for it) */
        r = sd_event_add_time_relative(srv->event, &srv->extend_timer, CLOCK_MONOTONIC, EXTEND_INTERVAL_USEC, 0,
                                       on_extend_timer, srv);
        if (r < 0)
                return r;
        on_extend_timer(srv->extend_timer, now_ns() / 1000, srv);
        r = models_load(srv, srv->cfg.model, NULL, true, on_default_loaded, NULL, &err);
        if (r < 0) {
                fprintf(stderr, "npud: cannot load the default model: %s\n", err.msg);
                return r;
        }
        return 0;
}
