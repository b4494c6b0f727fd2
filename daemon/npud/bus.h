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
#define NPUD_MANAGER_IFACE NPUD_BUS_NAME ".Manager"
#define NPUD_REQUEST_IFACE NPUD_BUS_NAME ".Request"
#define NPUD_SESSION_IFACE NPUD_BUS_NAME ".Session"
#define NPUD_DEVICE_IFACE NPUD_BUS_NAME ".Device"

struct request;

/* bus_manager.c */
extern const sd_bus_vtable manager_vtable[];

/* bus_request.c */
extern const sd_bus_vtable request_vtable[];
int request_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error);
int request_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error);
int bus_request_send_tokens(struct request *r);
int bus_request_send_finished(struct request *r);

/* bus_session.c */
extern const sd_bus_vtable session_vtable[];
int session_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error);
int session_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error);

/* bus_device.c */
extern const sd_bus_vtable device_vtable[];
int device_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error);
int device_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error);
int method_attach_device(sd_bus_message *m, void *userdata, sd_bus_error *error);
int method_detach_device(sd_bus_message *m, void *userdata, sd_bus_error *error);
int method_list_devices(sd_bus_message *m, void *userdata, sd_bus_error *error);
