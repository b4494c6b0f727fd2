/* SPDX-License-Identifier: MIT */
/*
 * Devices on the bus: Manager.ListDevices, Manager.AttachDevice and
 * DetachDevice (a node handed over by npud-device@accelN), and the Device
 * objects at /org/npud/Inference1/device/accelN with their Attach, Detach
 * and counters. Moves wait for the running step to end: the reply comes
 * when the models have moved.
 */
#include <fcntl.h>

#include "bus_errors.h"
#include "props.h"
#include "server.h"

static int device_error(sd_bus_error *error, int r, const struct npu_err *err)
{
        if (r == -EINVAL || r == -ENODEV || r == -EPROTO || r == -EEXIST)
                return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT, err->msg);
        return sd_bus_error_set(error, NPUD_ERROR_FAILED, err->msg);
}

static int read_no_options(sd_bus_message *m, sd_bus_error *error)
{
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'e', "sv");
        if (r < 0)
                return r;
        if (r > 0) {
                const char *key = "?";
                (void)sd_bus_message_read_basic(m, 's', &key);
                return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT, "unknown option '%s' (there are none)",
                                         key);
        }
        return sd_bus_message_exit_container(m);
}

/* Queues op for the end of the running step (or the next idle moment); m gets the reply then. */
static int queue_op(struct served_device *d, enum device_op op, sd_bus_message *m, sd_bus_error *error)
{
        if (d->pending_op != DEVICE_OP_NONE)
                return sd_bus_error_setf(error, NPUD_ERROR_BUSY, "%s has a change in progress already", d->name);
        d->pending_op = op;
        d->pending = sd_bus_message_ref(m);
        server_kick(d->srv);
        return 1;
}

int method_attach_device(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        struct served_device *d;
        struct npu_err err = {};
        const char *name;
        int fd, copy, r;

        r = sd_bus_message_read(m, "sh", &name, &fd);
        if (r < 0)
                return r;
        r = read_no_options(m, error);
        if (r < 0)
                return r;
        r = authorize(srv, m, ACTION_MANAGE_DEVICES, method_attach_device, userdata, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit answers later, and this runs again */
        if (srv->shutting_down)
                return sd_bus_error_set(error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        if (!device_name_valid(name))
                return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT, "'%s' is not a device name (accelN)",
                                         name);
        d = devices_find(srv, name);
        if (d && (d->state != DEVICE_DETACHED || d->pending_op != DEVICE_OP_NONE))
                return sd_bus_error_setf(error, NPUD_ERROR_BUSY, "%s is %s already", name,
                                         d->pending_op != DEVICE_OP_NONE ? "changing" : device_state_name(d->state));
        copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return sd_bus_error_setf(error, NPUD_ERROR_FAILED, "cannot keep the descriptor: %s", strerror(errno));
        if (d) {
                /* a device npud opened itself and detached: it takes this node now */
                r = device_check_fd(copy, name, d->driver, sizeof(d->driver), &err);
                if (r < 0) {
                        close(copy);
                        return device_error(error, r, &err);
                }
                d->fd = safe_close(d->fd);
                d->fd = copy;
        } else {
                r = devices_add(srv, name, copy, false, &d, &err);
                if (r < 0)
                        return device_error(error, r, &err);
        }
        return queue_op(d, DEVICE_OP_ATTACH, m, error);
}

int method_detach_device(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        struct served_device *d;
        const char *name;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        r = read_no_options(m, error);
        if (r < 0)
                return r;
        r = authorize(srv, m, ACTION_MANAGE_DEVICES, method_detach_device, userdata, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit answers later, and this runs again */
        d = devices_find(srv, name);
        if (!d)
                return sd_bus_error_setf(error, NPUD_ERROR_NO_SUCH_DEVICE, "no device named '%s'", name);
        /* the caller hands the device back: npud forgets it unless it opened it itself */
        return queue_op(d, d->npud_opened ? DEVICE_OP_DETACH : DEVICE_OP_FORGET, m, error);
}

static int append_device(sd_bus_message *reply, const struct served_device *d)
{
        struct device_counters c;
        uint32_t models = 0;

        device_counters(d, &c);
        for (const struct served_model *m = d->srv->models; m; m = m->next)
                models += m->device == d;
        return sd_bus_message_append(reply, "(sa{sv})", d->name, 11,
                                     "backend", "s", "npu",
                                     "state", "s", device_state_name(d->state),
                                     "path", "s", d->path,
                                     "driver", "s", d->driver,
                                     "object", "o", d->object_path,
                                     "models", "u", models,
                                     "passes", "t", c.passes,
                                     "faults", "t", c.faults,
                                     "retries", "t", c.retries,
                                     "cpu_fallbacks", "t", c.cpu_fallbacks,
                                     "netlink_events", "t", c.events);
}

int method_list_devices(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int threads = srv->cfg.threads ? srv->cfg.threads : runtime_default_threads();
        uint32_t on_cpu = 0;
        int r;

        for (const struct served_model *sm = srv->models; sm; sm = sm->next)
                on_cpu += !sm->device;
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(sa{sv})");
        if (r >= 0)
                r = sd_bus_message_append(reply, "(sa{sv})", "cpu", 4, "backend", "s", "cpu", "state", "s", "ready",
                                          "threads", "u", (uint32_t)threads, "models", "u", on_cpu);
        for (const struct served_device *d = srv->devices; d && r >= 0; d = d->next)
                r = append_device(reply, d);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* --- Device objects --- */

int device_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error)
{
        struct server *srv = userdata;
        const char *name;

        if (strncmp(path, NPUD_DEVICE_PREFIX "/", strlen(NPUD_DEVICE_PREFIX "/")) != 0)
                return 0;
        name = path + strlen(NPUD_DEVICE_PREFIX "/");
        *ret = devices_find(srv, name);
        return *ret != NULL;
}

int device_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error)
{
        struct server *srv = userdata;
        size_t n = 0, i = 0;
        char **v;

        for (struct served_device *d = srv->devices; d; d = d->next)
                n++;
        v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (struct served_device *d = srv->devices; d; d = d->next) {
                v[i] = strdup(d->object_path);
                if (!v[i]) {
                        while (i > 0)
                                free(v[--i]);
                        free(v);
                        return -ENOMEM;
                }
                i++;
        }
        *ret = v;
        return 1;
}

static int method_attach(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct served_device *d = userdata;
        int r;

        r = authorize(d->srv, m, ACTION_MANAGE_DEVICES, method_attach, userdata, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit answers later, and this runs again */
        if (d->srv->shutting_down)
                return sd_bus_error_set(error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        if (d->state != DEVICE_DETACHED)
                return sd_bus_error_setf(error, NPUD_ERROR_BUSY, "%s is %s", d->name, device_state_name(d->state));
        return queue_op(d, DEVICE_OP_ATTACH, m, error);
}

static int method_detach(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct served_device *d = userdata;
        int r;

        r = authorize(d->srv, m, ACTION_MANAGE_DEVICES, method_detach, userdata, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit answers later, and this runs again */
        if (d->state == DEVICE_DETACHED && d->pending_op == DEVICE_OP_NONE)
                return sd_bus_reply_method_return(m, NULL);
        return queue_op(d, d->npud_opened ? DEVICE_OP_DETACH : DEVICE_OP_FORGET, m, error);
}

void device_props(const struct served_device *d, struct props *p)
{
        struct device_counters c;

        device_counters(d, &c);
        props_add_s(p, "Name", d->name);
        props_add_s(p, "Path", d->path);
        props_add_s(p, "Driver", d->driver);
        props_add_s(p, "State", device_state_name(d->state));
        props_add_t(p, "Passes", c.passes);
        props_add_t(p, "Faults", c.faults);
        props_add_t(p, "Retries", c.retries);
        props_add_t(p, "CpuFallbacks", c.cpu_fallbacks);
        props_add_t(p, "NetlinkEvents", c.events);
}

static int device_property(sd_bus *bus, const char *path, const char *iface, const char *property,
                           sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        struct props p = {};

        device_props(userdata, &p);
        return props_reply(reply, &p, property);
}

const sd_bus_vtable device_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Attach", "", "", method_attach, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Detach", "", "", method_detach, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_PROPERTY("Name", "s", device_property, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Path", "s", device_property, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Driver", "s", device_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("State", "s", device_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Passes", "t", device_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Faults", "t", device_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Retries", "t", device_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CpuFallbacks", "t", device_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("NetlinkEvents", "t", device_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END,
};
