/* SPDX-License-Identifier: MIT */
/*
 * npud-device NAME: the main process of npud-device@NAME.service.
 *
 * Opens /dev/accel/NAME, hands the descriptor to npud (Manager.AttachDevice),
 * tells systemd it is ready with a STATUS= line naming the device, and waits.
 * On SIGTERM (systemctl stop, the device going away, npud stopping) it asks
 * npud to let the device go (Manager.DetachDevice: requests running on it
 * continue on the cpu) and exits 0. When npud leaves the bus the attachment
 * is gone with it: the helper exits 1 and systemd starts it again
 * (Restart=on-failure) once npud is back.
 *
 * npud needs no access to /dev itself this way: the unit's device ACL admits
 * this one node, and the open descriptor is all npud gets.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "util.h"

#define NPUD_SERVICE "org.npud.Inference1"
#define NPUD_PATH "/org/npud/Inference1"
#define NPUD_MANAGER NPUD_SERVICE ".Manager"
/* Attaching may upload a model's weights to the device. */
#define ATTACH_TIMEOUT_USEC (300ULL * 1000000ULL)
#define DETACH_TIMEOUT_USEC (60ULL * 1000000ULL)

struct helper {
        const char *name;
        sd_bus *bus;
        int exit_status;
};

static bool valid_name(const char *s)
{
        size_t n = strlen("accel");

        if (strncmp(s, "accel", n) != 0 || !s[n] || strlen(s) > n + 3)
                return false;
        for (s += n; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

/* "npu.0 (driver npu)" from sysfs, or "" when sysfs does not say. */
static void describe(const char *name, char *buf, size_t size)
{
        char path[PATH_MAX], target[PATH_MAX], drv[PATH_MAX];
        const char *dev, *d;
        ssize_t n, m;

        buf[0] = '\0';
        snprintf(path, sizeof(path), "/sys/class/accel/%s/device", name);
        n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0)
                return;
        target[n] = '\0';
        dev = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
        snprintf(path, sizeof(path), "/sys/class/accel/%s/device/driver", name);
        m = readlink(path, drv, sizeof(drv) - 1);
        if (m > 0) {
                drv[m] = '\0';
                d = strrchr(drv, '/') ? strrchr(drv, '/') + 1 : drv;
                snprintf(buf, size, " (%.64s, driver %.64s)", dev, d);
        } else {
                snprintf(buf, size, " (%.64s)", dev);
        }
}

static int call_manager(struct helper *h, const char *member, int fd, uint64_t timeout)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_error e = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_message_new_method_call(h->bus, &m, NPUD_SERVICE, NPUD_PATH, NPUD_MANAGER, member);
        if (r >= 0)
                r = sd_bus_message_append(m, "s", h->name);
        if (r >= 0 && fd >= 0)
                r = sd_bus_message_append(m, "h", fd);
        if (r >= 0)
                r = sd_bus_message_append(m, "a{sv}", 0);
        if (r < 0) {
                fprintf(stderr, "npud-device: %s: cannot build the call: %s\n", member, strerror(-r));
                return r;
        }
        r = sd_bus_call(h->bus, m, timeout, &e, &reply);
        if (r < 0) {
                fprintf(stderr, "npud-device: %s %s: %s\n", member, h->name,
                        e.message ? e.message : strerror(-r));
                if (e.name)
                        fprintf(stderr, "npud-device: (%s)\n", e.name);
        }
        sd_bus_error_free(&e);
        return r;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct helper *h = userdata;

        sd_notifyf(false, "STOPPING=1\nSTATUS=Detaching /dev/accel/%s from npud", h->name);
        /* npud moves the device's requests to the cpu before it replies */
        h->exit_status = call_manager(h, "DetachDevice", -1, DETACH_TIMEOUT_USEC) < 0 ? 1 : 0;
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct helper *h = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (strcmp(name, NPUD_SERVICE) != 0 || !old_owner[0])
                return 0;
        /* npud went away (or was replaced): its attachment went with it */
        fprintf(stderr, "npud-device: npud left the bus; /dev/accel/%s is no longer attached\n", h->name);
        sd_notifyf(false, "STATUS=npud left the bus");
        h->exit_status = 1;
        return sd_event_exit(sd_bus_get_event(sd_bus_message_get_bus(m)), 0);
}

int main(int argc, char **argv)
{
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct helper h = { .exit_status = 1 };
        char path[64], desc[160];
        sigset_t ss;
        int r;

        if (argc != 2 || !valid_name(argv[1])) {
                fprintf(stderr, "usage: npud-device accelN\n");
                return 2;
        }
        h.name = argv[1];
        snprintf(path, sizeof(path), "/dev/accel/%s", h.name);

        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                fprintf(stderr, "npud-device: cannot open %s: %s\n", path, strerror(errno));
                return 1;
        }
        describe(h.name, desc, sizeof(desc));

        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        r = sd_event_default(&event);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, on_signal, &h);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, on_signal, &h);
        if (r >= 0)
                r = sd_bus_open_system(&h.bus);
        if (r >= 0)
                r = sd_bus_attach_event(h.bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                /* subscribe before attaching, so npud leaving is never missed */
                r = sd_bus_match_signal(h.bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                        "org.freedesktop.DBus", "NameOwnerChanged", on_owner_changed, &h);
        if (r < 0) {
                fprintf(stderr, "npud-device: cannot connect to the system bus: %s\n", strerror(-r));
                goto out;
        }

        sd_notifyf(false, "STATUS=Attaching %s%s to npud", path, desc);
        if (call_manager(&h, "AttachDevice", fd, ATTACH_TIMEOUT_USEC) < 0)
                goto out;
        /* npud holds its own copy of the descriptor now */
        close(TAKE_FD(fd));

        sd_notifyf(false, "READY=1\nSTATUS=%s%s attached to npud", path, desc);
        r = sd_event_loop(event);
        if (r < 0) {
                fprintf(stderr, "npud-device: event loop: %s\n", strerror(-r));
                h.exit_status = 1;
        }
out:
        sd_bus_flush_close_unref(h.bus);
        return h.exit_status;
}
