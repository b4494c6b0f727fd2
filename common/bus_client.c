/* SPDX-License-Identifier: MIT */
#include <stdbool.h>
#include <string.h>

#include "bus_client.h"

int bus_open_spec(const char *spec, sd_bus **ret)
{
        sd_bus *bus = NULL;
        int r;

        if (strcmp(spec, "system") == 0)
                return sd_bus_open_system(ret);
        if (strcmp(spec, "session") == 0)
                return sd_bus_open_user(ret);
        r = sd_bus_new(&bus);
        if (r < 0)
                return r;
        r = sd_bus_set_address(bus, spec);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0) {
                sd_bus_unref(bus);
                return r;
        }
        *ret = bus;
        return 0;
}

int bus_append_entry(sd_bus_message *m, const char *key, char type, const void *value)
{
        const char sig[2] = { type, 0 };
        int r;

        r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append_basic(m, 's', key);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', sig);
        if (r >= 0)
                r = sd_bus_message_append_basic(m, type, value);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}
