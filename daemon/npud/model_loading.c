/* SPDX-License-Identifier: MIT */
/* Models on the bus while they load (see model_loading.h). */
#include "model_loading.h"
#include "server.h"

int model_loading_new(struct server *srv, const char *name, const char *path, struct model_loading **ret)
{
        struct model_loading *l = calloc(1, sizeof(*l));

        if (!l || !(l->name = strdup(name)) || !(l->path = strdup(path))) {
                if (l)
                        free(l->name);
                free(l);
                return -ENOMEM;
        }
        l->obj.loading = true;
        l->srv = srv;
        atomic_init(&l->done, 0);
        atomic_init(&l->total, 0);
        l->next = srv->loadings;
        srv->loadings = l;
        *ret = l;
        return 0;
}

void model_loading_free(struct model_loading *l)
{
        if (!l)
                return;
        for (struct model_loading **p = &l->srv->loadings; *p; p = &(*p)->next)
                if (*p == l) {
                        *p = l->next;
                        break;
                }
        free(l->name);
        free(l->path);
        free(l);
}

struct model_loading *model_loading_find(struct server *srv, const char *name)
{
        for (struct model_loading *l = srv->loadings; l; l = l->next)
                if (!strcmp(l->name, name))
                        return l;
        return NULL;
}

void model_loading_progress(uint64_t done, uint64_t total, void *userdata)
{
        struct model_loading *l = userdata;

        atomic_store(&l->total, total);
        atomic_store(&l->done, done);
}
