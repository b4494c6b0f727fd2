/* SPDX-License-Identifier: MIT */
/* What npuctl and npud-http both do as clients of npud's bus. */
#pragma once

#include <systemd/sd-bus.h>

/* Opens the bus spec names: "system", "session", or a D-Bus address (unix:path=...). */
int bus_open_spec(const char *spec, sd_bus **ret);

/* Appends one {sv} entry of a basic type to an open a{sv} container. */
int bus_append_entry(sd_bus_message *m, const char *key, char type, const void *value);
