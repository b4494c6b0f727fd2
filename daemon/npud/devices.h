/* SPDX-License-Identifier: MIT */
/*
 * The npu devices npud runs models on (devices.c), and their bus side
 * (bus_device.c). Moves between the cpu and a device happen only between
 * steps.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

#include "runtime.h"

struct server;
struct served_model;

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
