/* SPDX-License-Identifier: MIT */
/* Keep-alive and idle unload (see keep_alive.h). */
#include "keep_alive.h"
#include "server.h"

void model_keep_done(struct model_keep *k)
{
        free(k->claims);
        *k = (struct model_keep) {};
}
