/* SPDX-License-Identifier: MIT */
/* Who may change what npud holds: root and npud's own user. */
#include "bus_errors.h"
#include "server.h"

int authorize(struct server *srv, sd_bus_message *m, const char *action, sd_bus_error *error)
{
        uid_t uid;
        int r;

        r = bus_message_uid(m, &uid);
        if (r < 0)
                return sd_bus_error_setf(error, NPUD_ERROR_ACCESS_DENIED, "cannot tell who the caller is: %s",
                                         strerror(-r));
        if (uid == 0 || uid == srv->uid)
                return 1;
        return sd_bus_error_setf(error, NPUD_ERROR_ACCESS_DENIED, "%s needs an administrator", action);
}
