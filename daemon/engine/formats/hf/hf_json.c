/* SPDX-License-Identifier: MIT */
#include <sys/stat.h>

#include "hf_json.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_tokener *, json_tokener_free);

int hf_read_file(const char *path, size_t cap, char **ret, size_t *ret_len, struct npu_err *err)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ char *buf = NULL;
        struct stat st;

        if (!f)
                return npu_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
        if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode))
                return npu_err_set(err, -EINVAL, "%s is not a regular file", path);
        if ((uint64_t)st.st_size > cap)
                return npu_err_set(err, -EFBIG, "%s is %lld bytes, more than the %zu allowed", path,
                                   (long long)st.st_size, cap);
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
                return npu_err_set(err, -EIO, "reading %s failed", path);
        buf[st.st_size] = 0;
        *ret_len = (size_t)st.st_size;
        *ret = TAKE_PTR(buf);
        return 0;
}

const char *hf_json_type(json_object *o)
{
        return o ? json_type_to_name(json_object_get_type(o)) : "null";
}

int hf_json_parse_object(const char *text, size_t len, const char *name, json_object **ret, struct npu_err *err)
{
        _cleanup_(json_tokener_freep) struct json_tokener *tok = json_tokener_new_ex(32);
        _cleanup_(json_object_putp) json_object *root = NULL;

        if (!tok)
                return -ENOMEM;
        if (len > INT32_MAX - 1)
                return npu_err_set(err, -EFBIG, "%s: too large", name);
        root = json_tokener_parse_ex(tok, text, (int)len + 1);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        if (!root || jerr != json_tokener_success)
                return npu_err_set(err, -EBADMSG, "%s: not valid JSON (%s at byte %zu)", name,
                                   json_tokener_error_desc(jerr), json_tokener_get_parse_end(tok));
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
                if (!strchr(" \t\r\n", text[i]))
                        return npu_err_set(err, -EBADMSG, "%s: trailing bytes after the JSON at byte %zu", name, i);
        if (!json_object_is_type(root, json_type_object))
                return npu_err_set(err, -EBADMSG, "%s: a JSON %s, not an object", name, hf_json_type(root));
        *ret = TAKE_PTR(root);
        return 0;
}

int hf_json_load_object(const char *path, json_object **ret, struct npu_err *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = hf_read_file(path, HF_MAX_JSON, &text, &len, err);

        if (r < 0)
                return r;
        const char *slash = strrchr(path, '/');
        return hf_json_parse_object(text, len, slash ? slash + 1 : path, ret, err);
}

json_object *hf_json_get(json_object *o, const char *key)
{
        json_object *v = NULL;

        if (!o || !json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        return v;
}

int hf_join_path(const char *dir, const char *name, char **ret)
{
        return asprintf(ret, "%s/%s", dir, name) < 0 ? -ENOMEM : 0;
}
