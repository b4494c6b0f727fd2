/* SPDX-License-Identifier: MIT */
/* npud's state: the bus, the loaded models, the clients and their requests and sessions. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "chat_template.h"
#include "scheduler.h"

#define NPUD_BUS_NAME "org.npud.Inference1"
#define NPUD_ROOT_PATH "/org/npud/Inference1"
#define NPUD_REQUEST_PREFIX NPUD_ROOT_PATH "/request"
#define NPUD_SESSION_PREFIX NPUD_ROOT_PATH "/session"
#define NPUD_DEVICE_PREFIX NPUD_ROOT_PATH "/device"
#define NPUD_MANAGER_IFACE NPUD_BUS_NAME ".Manager"
#define NPUD_REQUEST_IFACE NPUD_BUS_NAME ".Request"
#define NPUD_SESSION_IFACE NPUD_BUS_NAME ".Session"
#define NPUD_DEVICE_IFACE NPUD_BUS_NAME ".Device"

struct server;
struct step_runner;

struct served_device;

struct served_model {
        struct served_model *next;
        struct server *srv;
        char *name;
        char *path;
        dev_t dev;
        ino_t ino;
        struct runtime *rt;
        struct scheduler *sched;
        uint32_t n_users; /* unfinished requests and open sessions */
        struct served_device *device; /* where its passes run; NULL: the cpu */
        struct backend_stats at_attach; /* the runtime's device counters when it joined device */
};

enum device_state {
        DEVICE_DETACHED,
        DEVICE_ATTACHED,
        DEVICE_LOST, /* the device refuses new contexts: its models run on the cpu */
};

enum device_op {
        DEVICE_OP_NONE,
        DEVICE_OP_ATTACH,
        DEVICE_OP_DETACH,
        DEVICE_OP_FORGET, /* detach, then drop the device (it was handed over and is given back) */
};

struct device_counters {
        uint64_t passes, faults, retries, cpu_fallbacks, events;
};

struct served_device {
        struct served_device *next;
        struct server *srv;
        char name[16];        /* accelN */
        char path[32];        /* /dev/accel/accelN */
        char object_path[64]; /* NPUD_DEVICE_PREFIX/accelN */
        char driver[32];      /* "npu MAJOR.MINOR" */
        int fd;               /* the open node; -1 while detached */
        bool npud_opened;     /* opened by npud (--target npu), not handed over: kept when detached */
        enum device_state state;
        struct device_counters retired; /* of models that left the device */
        enum device_op pending_op;      /* a call waiting for the running step to end */
        sd_bus_message *pending;
};

struct client {
        struct client *next;
        char *name; /* unique bus name */
        uid_t uid;
        int32_t n_running;        /* unfinished requests */
        int64_t n_prompt_tokens;  /* prompt tokens of unfinished requests */
        int32_t n_sessions;
        int32_t n_finished;       /* finished requests still on the bus */
};

struct bus_request {
        struct bus_request *prev, *next;
        struct server *srv;
        uint64_t id;
        char *path;
        struct client *owner; /* NULL once the owner left: freed when it finishes */
        struct served_model *model;
        struct bus_session *session; /* set for a session's turn */
        /* where its steps ran, and the device trouble they met */
        uint32_t steps_npu, steps_cpu;
        uint32_t device_faults, device_retries, cpu_fallbacks;
        struct sched_request *sr;
        int32_t n_prompt;
        bool finished;
        bool cancel_requested;
        enum sched_stop stop;
};

/* A session's conversation, when it is a chat: its messages, rendered through its template each turn. */
struct session_chat {
        struct chat_template tmpl;
        struct chat_message *m; /* content owned */
        size_t n, cap;
        size_t n_system; /* the system message kept by Reset: 0 or 1 */
};

struct bus_session {
        struct bus_session *prev, *next;
        struct server *srv;
        uint64_t id;
        char *path;
        struct client *owner;
        struct served_model *model;
        struct sched_params defaults;
        char **default_stops;
        int32_t *history;
        int32_t n_history;
        int32_t n_system; /* history tokens of the system prompt */
        uint32_t turns;
        struct kv_seq seq; /* KV of a prefix of history; empty when reclaimed */
        bool evicted;
        uint64_t last_used;
        struct bus_request *turn;
        /* NULL: a text session, whose turns' tokens are appended to the history as they come */
        struct session_chat *chat;
};

struct server {
        sd_event *event;
        sd_bus *bus;
        struct npud_config cfg;
        char *config_path;
        struct served_model *models;
        struct served_model *default_model;
        struct client *clients;
        struct bus_request *requests_head, *requests_tail;
        struct bus_session *sessions_head, *sessions_tail;
        uint64_t next_id;
        struct step_runner *runner;
        struct served_model *stepping; /* the model whose step runs */
        struct served_model *last_stepped;
        struct backend_stats step_stats; /* the stepping model's device counters before its step */
        bool step_on_npu;
        struct served_device *devices;
        bool shutting_down;
        bool watchdog;
        uid_t uid;
        uint64_t t_start;
        /* generated tokens per second over the last 10 s */
        uint64_t rate_at[10];
        uint64_t rate_tokens[10];
        sd_event_source *status_timer;
        sd_event_source *kick_source; /* starts the next step when the loop is idle */
};

/* server.c */
int server_new(struct server **ret);
void server_free(struct server *srv);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct server *, server_free);
int server_open_bus(struct server *srv, const char *bus);
int server_start(struct server *srv);
void server_kick(struct server *srv);
void server_shutdown(struct server *srv);
int server_reload(struct server *srv);
uint64_t server_generated_total(const struct server *srv);
double server_tokens_per_s(struct server *srv);

/* models.c */
int models_load(struct server *srv, const char *path, const char *name, bool make_default, struct served_model **ret,
                struct npu_err *err);
struct served_model *models_find(struct server *srv, const char *name);
int models_unload(struct server *srv, struct served_model *m, bool force, struct npu_err *err);
void models_free_all(struct server *srv);

/* devices.c */
const char *device_state_name(enum device_state s);
bool device_name_valid(const char *name);
struct served_device *devices_find(struct server *srv, const char *name);
int device_check_fd(int fd, const char *name, char *driver, size_t driver_size, struct npu_err *err);
/* Takes fd (closed on failure). The device starts detached. */
int devices_add(struct server *srv, const char *name, int fd, bool npud_opened, struct served_device **ret,
                struct npu_err *err);
int devices_open_path(struct server *srv, const char *path, struct served_device **ret, struct npu_err *err);
int devices_open_first(struct server *srv, struct served_device **ret, struct npu_err *err);
void device_counters(const struct served_device *d, struct device_counters *ret);
/* Only between steps: */
int device_attach_now(struct served_device *d, struct npu_err *err);
void device_detach_now(struct served_device *d);
void device_free(struct served_device *d);
void devices_free_all(struct server *srv);
void devices_model_loaded(struct server *srv, struct served_model *m);
void devices_model_unloading(struct served_model *m);
void devices_step_ended(struct server *srv, struct served_model *m);
void devices_run_pending(struct server *srv);
bool devices_pending(const struct server *srv);

/* bus_device.c */
extern const sd_bus_vtable device_vtable[];
int device_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error);
int device_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error);
int method_attach_device(sd_bus_message *m, void *userdata, sd_bus_error *error);
int method_detach_device(sd_bus_message *m, void *userdata, sd_bus_error *error);
int method_list_devices(sd_bus_message *m, void *userdata, sd_bus_error *error);

/* clients.c */
int clients_require_admin(struct server *srv, sd_bus_message *m, const char *what, sd_bus_error *error);
int clients_get(struct server *srv, sd_bus_message *m, struct client **ret, sd_bus_error *error);
struct client *clients_find(struct server *srv, const char *name);
int clients_watch(struct server *srv);
void clients_free_all(struct server *srv);
bool client_is_admin(const struct server *srv, const struct client *c);
void client_maybe_forget(struct server *srv, struct client *c);

/* bus_request.c */
extern const sd_bus_vtable request_vtable[];
int request_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error);
int request_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error);
int request_create(struct server *srv, struct client *owner, struct served_model *model,
                   struct bus_session *session, const int32_t *tokens, int32_t n, const struct sched_params *p,
                   struct kv_seq *seq, struct bus_request **ret, sd_bus_error *error);
void request_free(struct bus_request *br);
void request_flush_tokens(struct bus_request *br, bool force);
void requests_flush_all(struct server *srv);
void requests_drop_owner(struct server *srv, struct client *c);
extern const struct sched_events request_sched_events;

/* bus_session.c */
extern const sd_bus_vtable session_vtable[];
int session_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error);
int session_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error);
int session_create(struct server *srv, struct client *owner, struct served_model *model, sd_bus_message *options,
                   struct bus_session **ret, sd_bus_error *error);
void session_turn_finished(struct bus_session *s, struct bus_request *br);
void session_free(struct bus_session *s);
void sessions_drop_owner(struct server *srv, struct client *c);
int32_t sessions_reclaim(struct scheduler *sched, int32_t n, void *userdata);

/* bus_manager.c */
extern const sd_bus_vtable manager_vtable[];
