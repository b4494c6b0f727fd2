/* SPDX-License-Identifier: MIT */
/*
 * D-Bus values as JSON, whatever their type: dictionaries (a{..}) become
 * objects, other arrays and structs become arrays, variants their content.
 * The daemon's a{sv} answers (stats, model and device info) are read once
 * this way, then looked up by key for the human output or printed as they are.
 */
#include "npuctl.h"

static int json_from_basic(sd_bus_message *m, char type, json_object **ret)
{
        union {
                uint8_t y;
                int16_t n;
                uint16_t q;
                int32_t i;
                uint32_t u;
                int64_t x;
                uint64_t t;
                double d;
                int b;
                const char *s;
        } v;
        json_object *o;
        int r;

        r = sd_bus_message_read_basic(m, type, &v);
        if (r < 0)
                return r;
        switch (type) {
        case 'y': o = json_object_new_int(v.y); break;
        case 'n': o = json_object_new_int(v.n); break;
        case 'q': o = json_object_new_int(v.q); break;
        case 'i': o = json_object_new_int(v.i); break;
        case 'h': o = json_object_new_int(v.i); break;
        case 'u': o = json_object_new_int64(v.u); break;
        case 'x': o = json_object_new_int64(v.x); break;
        case 't': o = json_object_new_uint64(v.t); break;
        case 'd': o = json_object_new_double(v.d); break;
        case 'b': o = json_object_new_boolean(v.b); break;
        case 's':
        case 'o':
        case 'g': o = json_object_new_string(v.s); break;
        default: return -EBADMSG;
        }
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

static int json_from_dict(sd_bus_message *m, const char *contents, json_object **ret)
{
        json_object *obj = json_object_new_object();
        int r;

        if (!obj)
                return -ENOMEM;
        r = sd_bus_message_enter_container(m, 'a', contents);
        while (r >= 0) {
                json_object *key = NULL, *val = NULL;
                r = sd_bus_message_at_end(m, false);
                if (r != 0)
                        break;
                r = sd_bus_message_enter_container(m, 'e', NULL);
                if (r <= 0)
                        break;
                r = json_from_bus(m, &key);
                if (r >= 0)
                        r = json_from_bus(m, &val);
                if (r >= 0)
                        r = json_object_object_add(obj, json_object_get_string(key), val) < 0 ? -ENOMEM : 0;
                else
                        json_object_put(val);
                json_object_put(key);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0) {
                json_object_put(obj);
                return r;
        }
        *ret = obj;
        return 0;
}

static int json_from_sequence(sd_bus_message *m, char type, const char *contents, json_object **ret)
{
        json_object *arr = json_object_new_array();
        int r;

        if (!arr)
                return -ENOMEM;
        r = sd_bus_message_enter_container(m, type, contents);
        while (r >= 0) {
                json_object *item = NULL;
                r = sd_bus_message_at_end(m, false);
                if (r != 0)
                        break;
                r = json_from_bus(m, &item);
                if (r >= 0 && json_object_array_add(arr, item) < 0) {
                        json_object_put(item);
                        r = -ENOMEM;
                }
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0) {
                json_object_put(arr);
                return r;
        }
        *ret = arr;
        return 0;
}

int json_from_bus(sd_bus_message *m, json_object **ret)
{
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENXIO;
        switch (type) {
        case 'v': {
                r = sd_bus_message_enter_container(m, 'v', contents);
                if (r < 0)
                        return r;
                r = json_from_bus(m, ret);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0) {
                        json_object_put(*ret);
                        return r;
                }
                return 0;
        }
        case 'a':
                if (contents[0] == '{')
                        return json_from_dict(m, contents, ret);
                return json_from_sequence(m, 'a', contents, ret);
        case 'r':
                return json_from_sequence(m, 'r', contents, ret);
        default:
                return json_from_basic(m, type, ret);
        }
}

double json_get_double(json_object *o, const char *key, double dflt)
{
        json_object *v;
        if (!o || !json_object_object_get_ex(o, key, &v))
                return dflt;
        return json_object_get_double(v);
}

uint64_t json_get_u64(json_object *o, const char *key, uint64_t dflt)
{
        json_object *v;
        if (!o || !json_object_object_get_ex(o, key, &v))
                return dflt;
        return json_object_get_uint64(v);
}

const char *json_get_string(json_object *o, const char *key, const char *dflt)
{
        json_object *v;
        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return dflt;
        return json_object_get_string(v);
}

bool json_get_bool(json_object *o, const char *key, bool dflt)
{
        json_object *v;
        if (!o || !json_object_object_get_ex(o, key, &v))
                return dflt;
        return json_object_get_boolean(v);
}

void json_print(json_object *o)
{
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}
