/* SPDX-License-Identifier: MIT */
/*
 * The npu devices npud runs models on. A device is an open accel node of
 * npu.ko: handed over by npud-device@accelN (Manager.AttachDevice, fd
 * passing) or opened by npud itself (--target npu, backend = npu). While it
 * is attached, every quantized model runs its passes on it; detaching moves
 * them back to the cpu between two steps, with their KV caches, so running
 * requests go on without losing or repeating a token.
 *
 * Moves happen only while no step runs: a bus call that asks for one waits
 * in pending until the step runner is idle (devices_run_pending).
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "bus_errors.h"
#include "npu.h"
#include "server.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct npu_dev *, npu_close);

const char *device_state_name(enum device_state s)
{
        switch (s) {
        case DEVICE_ATTACHED: return "attached";
        case DEVICE_DETACHED: return "detached";
        case DEVICE_LOST: return "lost";
        }
        return "?";
}

bool device_name_valid(const char *name)
{
        unsigned int n;
        int end = 0;

        return sscanf(name, "accel%u%n", &n, &end) == 1 && name[end] == 0 && end <= 8 && name[5] != '+' &&
               name[5] != '-' && name[5] != ' ';
}

struct served_device *devices_find(struct server *srv, const char *name)
{
        for (struct served_device *d = srv->devices; d; d = d->next)
                if (!strcmp(d->name, name))
                        return d;
        return NULL;
}

static struct served_device *first_attached(struct server *srv)
{
        for (struct served_device *d = srv->devices; d; d = d->next)
                if (d->state == DEVICE_ATTACHED)
                        return d;
        return NULL;
}

/* Checks that fd is the accel node called name, of this driver; its driver version goes to driver. */
int device_check_fd(int fd, const char *name, char *driver, size_t driver_size, struct npu_err *err)
{
        _cleanup_(npu_closep) struct npu_dev *dev = NULL;
        struct drm_npu_get_info info;
        struct stat st;
        unsigned int index;
        int r;

        if (fstat(fd, &st) < 0)
                return npu_err_set(err, -errno, "cannot stat the descriptor: %s", strerror(errno));
        if (!S_ISCHR(st.st_mode))
                return npu_err_set(err, -EINVAL, "the descriptor is not a character device");
        if (sscanf(name, "accel%u", &index) != 1 || minor(st.st_rdev) != index)
                return npu_err_set(err, -EINVAL, "the descriptor is not /dev/accel/%s (its minor is %u)", name,
                                   minor(st.st_rdev));
        r = npu_open_fd(fd, &dev);
        if (r == -ENODEV)
                return npu_err_set(err, r, "/dev/accel/%s does not belong to the npu driver", name);
        if (r == -EPROTO)
                return npu_err_set(err, r, "/dev/accel/%s speaks an unknown npu uAPI version", name);
        if (r < 0)
                return npu_err_set(err, r, "/dev/accel/%s: %s", name, strerror(-r));
        r = npu_get_info(dev, &info);
        if (r < 0)
                return npu_err_set(err, r, "/dev/accel/%s: GET_INFO failed: %s", name, strerror(-r));
        snprintf(driver, driver_size, "npu %u.%u", info.version_major, info.version_minor);
        return 0;
}

int devices_add(struct server *srv, const char *name, int fd, bool npud_opened, struct served_device **ret,
                struct npu_err *err)
{
        _cleanup_free_ struct served_device *d = calloc(1, sizeof(*d));
        _cleanup_close_ int owned = fd;
        int r;

        if (!d)
                return -ENOMEM;
        r = device_check_fd(fd, name, d->driver, sizeof(d->driver), err);
        if (r < 0)
                return r;
        d->srv = srv;
        d->fd = TAKE_FD(owned);
        d->npud_opened = npud_opened;
        d->state = DEVICE_DETACHED;
        snprintf(d->name, sizeof(d->name), "%s", name);
        snprintf(d->path, sizeof(d->path), "/dev/accel/%s", name);
        snprintf(d->object_path, sizeof(d->object_path), NPUD_DEVICE_PREFIX "/%s", name);
        d->next = srv->devices;
        srv->devices = d;
        *ret = TAKE_PTR(d);
        return 0;
}

int devices_open_path(struct server *srv, const char *path, struct served_device **ret, struct npu_err *err)
{
        const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        int fd;

        if (!device_name_valid(name))
                return npu_err_set(err, -EINVAL, "%s is not an accel node (/dev/accel/accelN)", path);
        if (devices_find(srv, name))
                return npu_err_set(err, -EEXIST, "%s is known already", name);
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return npu_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
        return devices_add(srv, name, fd, true, ret, err);
}

int devices_open_first(struct server *srv, struct served_device **ret, struct npu_err *err)
{
        int best = -ENODEV;

        for (unsigned int i = 0; i < 64; i++) {
                char path[32];
                struct npu_err e = {};
                int r;
                snprintf(path, sizeof(path), "/dev/accel/accel%u", i);
                r = devices_open_path(srv, path, ret, &e);
                if (r == 0)
                        return 0;
                if (r != -ENOENT && r != -ENODEV) {
                        best = r;
                        *err = e;
                }
        }
        if (best == -ENODEV)
                return npu_err_set(err, best, "no /dev/accel/accel* node belongs to the npu driver (is npu.ko loaded?)");
        return best;
}

static void counters_add(struct device_counters *c, const struct backend_stats *now, const struct backend_stats *was)
{
        c->passes += now->passes - was->passes;
        c->faults += now->faults - was->faults;
        c->retries += now->retries - was->retries;
        c->cpu_fallbacks += now->cpu_fallbacks - was->cpu_fallbacks;
        c->events += now->events - was->events;
}

void device_counters(const struct served_device *d, struct device_counters *ret)
{
        *ret = d->retired;
        for (const struct served_model *m = d->srv->models; m; m = m->next)
                if (m->device == d)
                        counters_add(ret, &m->rt->ctx->stats, &m->at_attach);
}

/* Moves one model to the cpu (between steps); its counters stay with the device. */
static void model_leave_device(struct served_model *m)
{
        struct served_device *d = m->device;
        struct npu_err err = {};

        if (!d)
                return;
        counters_add(&d->retired, &m->rt->ctx->stats, &m->at_attach);
        if (runtime_set_target(m->rt, BACKEND_TARGET_CPU, &err) < 0)
                fprintf(stderr, "<3>npud: moving '%s' to the cpu: %s\n", m->name, err.msg);
        m->device = NULL;
        fprintf(stderr, "npud: '%s' runs on the cpu now (%s detached)\n", m->name, d->name);
}

/* Moves one w8a8/w8a16 model to d (between steps). Others (float, GGUF block types, w4a8) stay on the cpu: 0. */
static int model_join_device(struct served_model *m, struct served_device *d, struct npu_err *err)
{
        int r;

        if (m->device || !precision_runs_on_npu(m->rt->model->precision))
                return 0;
        r = runtime_attach_device(m->rt, d->path, d->fd, err);
        if (r < 0)
                return r;
        m->device = d;
        m->at_attach = m->rt->ctx->stats;
        fprintf(stderr, "npud: '%s' runs on %s now\n", m->name, d->path);
        return 0;
}

int device_attach_now(struct served_device *d, struct npu_err *err)
{
        struct server *srv = d->srv;
        int r;

        if (d->state == DEVICE_ATTACHED)
                return 0;
        if (d->fd < 0) {
                d->fd = open(d->path, O_RDWR | O_CLOEXEC | O_NOCTTY);
                if (d->fd < 0)
                        return npu_err_set(err, -errno, "cannot open %s: %s", d->path, strerror(errno));
        }
        for (struct served_model *m = srv->models; m; m = m->next) {
                r = model_join_device(m, d, err);
                if (r < 0) {
                        npu_err_prefix(err, m->name);
                        for (struct served_model *o = srv->models; o; o = o->next)
                                if (o->device == d)
                                        model_leave_device(o);
                        return r;
                }
        }
        d->state = DEVICE_ATTACHED;
        fprintf(stderr, "npud: %s attached (%s)\n", d->path, d->driver);
        return 0;
}

void device_detach_now(struct served_device *d)
{
        for (struct served_model *m = d->srv->models; m; m = m->next)
                if (m->device == d)
                        model_leave_device(m);
        if (d->state != DEVICE_DETACHED)
                fprintf(stderr, "npud: %s detached\n", d->path);
        d->state = DEVICE_DETACHED;
        d->fd = safe_close(d->fd);
}

void device_free(struct served_device *d)
{
        struct server *srv;

        if (!d)
                return;
        srv = d->srv;
        device_detach_now(d);
        for (struct served_device **p = &srv->devices; *p; p = &(*p)->next)
                if (*p == d) {
                        *p = d->next;
                        break;
                }
        if (d->pending)
                sd_bus_reply_method_errorf(d->pending, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        sd_bus_message_unref(d->pending);
        free(d);
}

void devices_free_all(struct server *srv)
{
        while (srv->devices)
                device_free(srv->devices);
}

void devices_model_loaded(struct server *srv, struct served_model *m)
{
        struct served_device *d = first_attached(srv);
        struct npu_err err = {};

        if (d && model_join_device(m, d, &err) < 0)
                fprintf(stderr, "<4>npud: '%s' stays on the cpu: %s\n", m->name, err.msg);
}

void devices_model_unloading(struct served_model *m)
{
        struct served_device *d = m->device;

        if (d) {
                counters_add(&d->retired, &m->rt->ctx->stats, &m->at_attach);
                m->device = NULL;
        }
}

void devices_step_ended(struct server *srv, struct served_model *m)
{
        if (m->device && m->rt->ctx->stats.device_lost && m->device->state == DEVICE_ATTACHED) {
                fprintf(stderr, "<3>npud: %s is lost (%s): its models run on the cpu\n", m->device->path,
                        m->rt->ctx->stats.last_fault);
                m->device->state = DEVICE_LOST;
        }
}

/* Runs the Attach/Detach calls that waited for the step to end. */
void devices_run_pending(struct server *srv)
{
        struct served_device *d = srv->devices, *next;

        for (; d; d = next) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = TAKE_PTR(d->pending);
                enum device_op op = d->pending_op;
                struct npu_err err = {};
                int r;

                next = d->next;
                d->pending_op = DEVICE_OP_NONE;
                if (op == DEVICE_OP_ATTACH) {
                        r = device_attach_now(d, &err);
                        if (r < 0) {
                                fprintf(stderr, "<4>npud: cannot attach %s: %s\n", d->path, err.msg);
                                if (m)
                                        sd_bus_reply_method_errorf(m, NPUD_ERROR_FAILED, "%s", err.msg);
                                if (!d->npud_opened)
                                        device_free(d);
                                else
                                        d->fd = safe_close(d->fd);
                                continue;
                        }
                } else if (op == DEVICE_OP_DETACH || op == DEVICE_OP_FORGET) {
                        device_detach_now(d);
                        if (op == DEVICE_OP_FORGET)
                                device_free(d);
                } else {
                        continue;
                }
                if (m)
                        sd_bus_reply_method_return(m, NULL);
        }
}

bool devices_pending(const struct server *srv)
{
        for (const struct served_device *d = srv->devices; d; d = d->next)
                if (d->pending_op != DEVICE_OP_NONE)
                        return true;
        return false;
}
