/* SPDX-License-Identifier: MIT */
/*
 * The connection to npud's bus, as the user who runs the gateway: npud sees
 * that user's uid, applies that user's limits, and unicasts the Request
 * signals to this connection only. If the bus goes away the connection is
 * dropped and opened again by the next request; until then requests get 503.
 */
#include "gateway.h"

int npud_connect(struct gateway *gw)
{
        sd_bus *bus = NULL;
        int r;

        npud_disconnect(gw);
        r = bus_open_spec(gw->cfg.bus, &bus);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(bus, gw->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                sd_bus_unref(bus);
                return r;
        }
        gw->bus = bus;
        r = jobs_watch(gw);
        if (r < 0) {
                npud_disconnect(gw);
                return r;
        }
        return 0;
}

void npud_disconnect(struct gateway *gw)
{
        gw->signal_match = sd_bus_slot_unref(gw->signal_match);
        gw->owner_match = sd_bus_slot_unref(gw->owner_match);
        gw->local_match = sd_bus_slot_unref(gw->local_match);
        if (gw->bus) {
                sd_bus_detach_event(gw->bus);
                gw->bus = sd_bus_flush_close_unref(gw->bus);
        }
}

sd_bus *npud_bus(struct gateway *gw, struct api_error *e)
{
        int r;

        if (gw->bus && sd_bus_is_open(gw->bus) > 0)
                return gw->bus;
        r = npud_connect(gw);
        if (r < 0) {
                api_error_set(e, 503, "server_error", NULL, NULL, "cannot connect to npud's bus (%s): %s",
                              gw->cfg.bus, strerror(-r));
                return NULL;
        }
        return gw->bus;
}

int npud_call_sync(struct gateway *gw, const char *member, sd_bus_message **reply, struct api_error *e)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = npud_bus(gw, e);
        int r;

        if (!bus)
                return -ENOTCONN;
        r = sd_bus_call_method(bus, NPUD_SERVICE, NPUD_PATH, NPUD_MANAGER, member, &error, reply, NULL);
        if (r < 0)
                api_error_from_bus(e, &error, r);
        sd_bus_error_free(&error);
        return r < 0 ? r : 0;
}

