/* SPDX-License-Identifier: MIT */
/*
 * The bus side of npud: object paths, the vtables of the Manager, Request,
 * Session and Device interfaces (bus_*.c), and the signals npud sends.
 */
#pragma once

#include <systemd/sd-bus.h>

#define NPUD_BUS_NAME "org.npud.Inference1"
#define NPUD_ROOT_PATH "/org/npud/Inference1"
#define NPUD_REQUEST_PREFIX NPUD_ROOT_PATH "/request"
#define NPUD_SESSION_PREFIX NPUD_ROOT_PATH "/session"
#define NPUD_DEVICE_PREFIX NPUD_ROOT_PATH "/device"
#define NPUD_MODEL_PREFIX NPUD_ROOT_PATH "/model"
#define NPUD_MANAGER_IFACE NPUD_BUS_NAME ".Manager"
#define NPUD_REQUEST_IFACE NPUD_BUS_NAME ".Request"
#define NPUD_SESSION_IFACE NPUD_BUS_NAME ".Session"
#define NPUD_DEVICE_IFACE NPUD_BUS_NAME ".Device"
#define NPUD_MODEL_IFACE NPUD_BUS_NAME ".Model"

struct request;
struct served_model;
struct props;

/* bus_manager.c */
extern const sd_bus_vtable manager_vtable[];

/* bus_request.c */
extern const sd_bus_vtable request_vtable[];
int request_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error);
int request_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error);
int bus_request_send_tokens(struct request *r);
int bus_request_send_finished(struct request *r);
void request_props(const struct request *r, struct props *p);
/* The values a request has when it appears (what its first PropertiesChanged compares with). */
void request_props_initial(const struct request *r, struct props *p);

/* bus_session.c */
extern const sd_bus_vtable session_vtable[];
int session_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error);
int session_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error);
struct session;
void session_props(const struct session *s, struct props *p);
void session_props_initial(const struct session *s, struct props *p);

/* bus_device.c */
extern const sd_bus_vtable device_vtable[];
int device_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error);
int device_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error);
int method_attach_device(sd_bus_message *m, void *userdata, sd_bus_error *error);
int method_detach_device(sd_bus_message *m, void *userdata, sd_bus_error *error);
int method_list_devices(sd_bus_message *m, void *userdata, sd_bus_error *error);
struct served_device;
void device_props(const struct served_device *d, struct props *p);

/* bus_manager.c */
struct server;
struct stats_view;
/* The Manager's properties; with v, also the counters of that view (per caller). */
void manager_props(struct server *srv, const struct stats_view *v, struct props *p);

/* bus_model.c: models as objects, /org/npud/Inference1/model/NAME (NAME escaped by sd_bus_path_encode) */
extern const sd_bus_vtable model_vtable[];
int model_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error);
int model_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error);
/* The object path of a model's name (free it). */
int model_object_path(const char *name, char **ret);
/* The Model interface's properties of m, and of a model still loading. */
void model_props(const struct served_model *m, struct props *p);
struct model_loading;
void model_loading_props(const struct model_loading *l, struct props *p);
