/* SPDX-License-Identifier: MIT */
/*
 * Connecting to the bus npud is on, calling it, and turning what went wrong
 * into the exit codes scripts rely on.
 */
#include <signal.h>

#include "npuctl.h"

const char *bus_default(void)
{
        const char *e = getenv("NPUD_BUS");
        return e && *e ? e : "system";
}

int bus_open(const char *spec, sd_bus **ret)
{
        int r;

        r = bus_open_spec(spec, ret);
        if (r < 0) {
                if (strchr(spec, ':'))
                        fprintf(stderr, "npuctl: cannot connect to the bus at %s: %s\n", spec, strerror(-r));
                else
                        fprintf(stderr, "npuctl: cannot connect to the %s bus: %s\n", spec, strerror(-r));
                return -ENOTCONN;
        }
        return 0;
}

int bus_open_on_event(const char *spec, sd_bus **ret_bus, sd_event **ret_event)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        int r;

        r = bus_open(spec, &bus);
        if (r < 0)
                return r;
        if (sd_event_default(&event) < 0 || sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL) < 0)
                return -EIO;
        *ret_bus = TAKE_PTR(bus);
        *ret_event = TAKE_PTR(event);
        return 0;
}

struct error_map {
        const char *name;
        int errnum;
};

static const struct error_map error_map[] = {
        { NPUD_ERROR "AccessDenied", -EACCES },
        { SD_BUS_ERROR_ACCESS_DENIED, -EACCES },
        { "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", -EACCES },
        { NPUD_ERROR "Busy", -EBUSY },
        { NPUD_ERROR "LimitExceeded", -EBUSY },
        { SD_BUS_ERROR_SERVICE_UNKNOWN, -EHOSTDOWN },
        { SD_BUS_ERROR_NAME_HAS_NO_OWNER, -EHOSTDOWN },
        { SD_BUS_ERROR_DISCONNECTED, -EHOSTDOWN },
};

int bus_log_error(const sd_bus_error *e, int r)
{
        /* sd-bus' own failures come as System.Error.E*: an errno, not the daemon's word */
        if (sd_bus_error_is_set(e) && strncmp(e->name, "System.Error.", 13) == 0)
                r = -sd_bus_error_get_errno(e);
        else if (sd_bus_error_is_set(e)) {
                fprintf(stderr, "npuctl: %s: %s\n", e->name, e->message ? e->message : "");
                for (size_t i = 0; i < ARRAY_SIZE(error_map); i++)
                        if (sd_bus_error_has_name(e, error_map[i].name))
                                return error_map[i].errnum;
                return -EREMOTEIO;
        }
        if (r == -ECONNRESET || r == -ENOTCONN || r == -EPIPE) {
                fprintf(stderr, "npuctl: the connection to the bus was lost\n");
                return -EHOSTDOWN;
        }
        fprintf(stderr, "npuctl: the call failed: %s\n", strerror(-r));
        return r == -EINVAL ? -EPROTO : r;
}

int bus_log_parse_error(int r)
{
        fprintf(stderr, "npuctl: cannot parse the daemon's message: %s\n", strerror(-r));
        return -EBADMSG;
}

int bus_log_create_error(int r)
{
        fprintf(stderr, "npuctl: cannot build the message: %s\n", strerror(-r));
        return r == -EINVAL ? -EPROTO : r;
}

int exit_status(int r)
{
        switch (r) {
        case 0:
                return EXIT_SUCCESS;
        case -EINVAL:
                return EXIT_USAGE;
        case -ENOTCONN:
        case -EHOSTDOWN:
                return EXIT_NO_DAEMON;
        case -EACCES:
        case -EPERM:
                return EXIT_DENIED;
        case -EBUSY:
                return EXIT_BUSY;
        case -EINTR:
                return EXIT_INTERRUPTED;
        default:
                return EXIT_DAEMON_ERROR;
        }
}

int bus_new_manager_call(sd_bus *bus, const char *member, sd_bus_message **ret)
{
        int r = sd_bus_message_new_method_call(bus, ret, NPUD_SERVICE, NPUD_PATH, NPUD_MANAGER, member);
        return r < 0 ? bus_log_create_error(r) : 0;
}

int bus_call(sd_bus *bus, sd_bus_message *m, uint64_t timeout_usec, sd_bus_message **reply)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call(bus, m, timeout_usec, &error, reply);
        if (r < 0)
                r = bus_log_error(&error, r);
        sd_bus_error_free(&error);
        return r < 0 ? r : 0;
}

int bus_call_simple(sd_bus *bus, const char *path, const char *interface, const char *member)
{
        sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, NPUD_SERVICE, path, interface, member);
        if (r < 0)
                return bus_log_create_error(r);
        r = bus_call(bus, m, 0, NULL);
        sd_bus_message_unref(m);
        return r;
}

int bus_event_signals(sd_event *e, sd_event_signal_handler_t handler, void *userdata, sd_event_source **ret_int,
                      sd_event_source **ret_term)
{
        sigset_t ss;
        int r;

        sigemptyset(&ss);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
                return -errno;
        /* a shell starts background jobs with SIGINT ignored, and an ignored signal never reaches the signalfd */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        r = sd_event_add_signal(e, ret_int, SIGINT, handler, userdata);
        if (r >= 0)
                r = sd_event_add_signal(e, ret_term, SIGTERM, handler, userdata);
        return r;
}
