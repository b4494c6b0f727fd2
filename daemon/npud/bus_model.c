/* SPDX-License-Identifier: MIT */
/*
 * Models as objects: /org/npud/Inference1/model/NAME, NAME escaped by
 * sd_bus_path_encode (names have "-" and "."), with the org.npud.Inference1.Model
 * interface. Anyone may read them: which models are loaded, how big, where
 * they run and when they were last used is what ListModels shows too; who
 * uses them does not show.
 */
#include <stddef.h>

#include "bus_errors.h"
#include "props.h"
#include "server.h"

/* The served model whose Model object o is. */
static struct served_model *served_of(struct model_object *o)
{
        return (struct served_model *)((char *)o - offsetof(struct served_model, keep.obj));
}

int model_object_path(const char *name, char **ret)
{
        return sd_bus_path_encode(NPUD_MODEL_PREFIX, name, ret);
}

static const char *model_state(const struct served_model *m)
{
        return model_users(m) > 0 ? "busy" : "idle";
}

void model_props(const struct served_model *m, struct props *p)
{
        const struct npu_model *nm = m->rt->model;
        const struct kv_pool *kv = m->rt->kv;
        uint64_t kv_bytes = (uint64_t)kv->n_blocks * kv->block_bytes;

        props_add_s(p, "Name", m->name);
        props_add_s(p, "Path", m->path);
        props_add_s(p, "State", model_state(m));
        props_add_s(p, "Architecture", arch_name(nm->hp.arch));
        props_add_s(p, "Precision", precision_name(nm->precision));
        props_add_u(p, "ContextLength", (uint32_t)m->rt->n_ctx);
        props_add_t(p, "Parameters", model_n_params(m));
        props_add_t(p, "WeightBytes", (uint64_t)nm->weight_bytes);
        props_add_t(p, "KVCacheBytes", kv_bytes);
        props_add_t(p, "Size", (uint64_t)nm->weight_bytes + kv_bytes);
        props_add_s(p, "Backend", m->device ? "npu" : "cpu");
        props_add_s(p, "Device", m->device ? m->device->name : "cpu");
        props_add_b(p, "Default", m == m->srv->default_model);
        props_add_b(p, "Pinned", m->keep.pinned);
        props_add_t(p, "LoadedAt", m->keep.loaded_at);
        props_add_t(p, "LastUsed", m->keep.last_used);
        props_add_t(p, "ExpiresAt", keep_alive_expires_at(m));
        props_add_t(p, "BytesLoaded", m->keep.file_bytes);
        props_add_t(p, "BytesTotal", m->keep.file_bytes);
}

void model_loading_props(const struct model_loading *l, struct props *p)
{
        props_add_s(p, "Name", l->name);
        props_add_s(p, "Path", l->path);
        props_add_s(p, "State", "loading");
        props_add_s(p, "Architecture", "");
        props_add_s(p, "Precision", "");
        props_add_u(p, "ContextLength", 0);
        props_add_t(p, "Parameters", 0);
        props_add_t(p, "WeightBytes", 0);
        props_add_t(p, "KVCacheBytes", 0);
        props_add_t(p, "Size", 0);
        props_add_s(p, "Backend", "");
        props_add_s(p, "Device", "");
        props_add_b(p, "Default", false);
        props_add_b(p, "Pinned", false);
        props_add_t(p, "LoadedAt", 0);
        props_add_t(p, "LastUsed", 0);
        props_add_t(p, "ExpiresAt", 0);
        props_add_t(p, "BytesLoaded", atomic_load(&l->done));
        props_add_t(p, "BytesTotal", atomic_load(&l->total));
}

/* --- finding objects --- */

int model_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error)
{
        _cleanup_free_ char *name = NULL;
        struct served_model *m;
        struct model_loading *l;

        if (sd_bus_path_decode(path, NPUD_MODEL_PREFIX, &name) <= 0 || !name[0])
                return 0;
        m = models_find(userdata, name);
        if (m) {
                *ret = &m->keep.obj;
                return 1;
        }
        l = model_loading_find(userdata, name);
        if (!l)
                return 0;
        *ret = &l->obj;
        return 1;
}

int model_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error)
{
        struct server *srv = userdata;
        size_t n = 0, i = 0;
        char **v;

        for (struct served_model *m = srv->models; m; m = m->next)
                n++;
        for (struct model_loading *l = srv->loadings; l; l = l->next)
                n++;
        v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (struct served_model *m = srv->models; m; m = m->next)
                if (model_object_path(m->name, &v[i++]) < 0)
                        goto fail;
        for (struct model_loading *l = srv->loadings; l; l = l->next)
                if (!models_find(srv, l->name) && model_object_path(l->name, &v[i++]) < 0)
                        goto fail;
        *ret = v;
        return 1;
fail:
        for (size_t k = 0; k < i; k++)
                free(v[k]);
        free(v);
        return -ENOMEM;
}

/* --- properties --- */

static int property_get(sd_bus *bus, const char *path, const char *iface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        struct model_object *o = userdata;
        struct props p = {};

        if (o->loading)
                model_loading_props((struct model_loading *)o, &p);
        else
                model_props(served_of(o), &p);
        return props_reply(reply, &p, property);
}

#define CHANGES SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE
const sd_bus_vtable model_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Path", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("Architecture", "s", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("Precision", "s", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("ContextLength", "u", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("Parameters", "t", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("WeightBytes", "t", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("KVCacheBytes", "t", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("Size", "t", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("Backend", "s", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("Device", "s", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("Default", "b", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("Pinned", "b", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("LoadedAt", "t", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("LastUsed", "t", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("ExpiresAt", "t", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("BytesLoaded", "t", property_get, 0, CHANGES),
        SD_BUS_PROPERTY("BytesTotal", "t", property_get, 0, CHANGES),
        SD_BUS_VTABLE_END,
};
