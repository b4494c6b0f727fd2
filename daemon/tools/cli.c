/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "cli.h"


int cli_error(int r, const char *fmt, ...)
{
        va_list ap;
        fprintf(stderr, "%s: ", program_invocation_short_name);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return r < 0 ? r : -EINVAL;
}

int cli_parse_int(const char *s, int min, int max, const char *what, int *ret)
{
        int32_t v;
        int r = cli_parse_i32(s, min, max, what, &v);
        if (r >= 0)
                *ret = v;
        return r;
}

int cli_parse_i32(const char *s, int32_t min, int32_t max, const char *what, int32_t *ret)
{
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max)
                return cli_error(-EINVAL, "%s: '%s' is not a whole number in %d..%d", what, s, min, max);
        *ret = (int32_t)v;
        return 0;
}

int cli_parse_u64(const char *s, const char *what, uint64_t *ret)
{
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-')
                return cli_error(-EINVAL, "%s: '%s' is not a non-negative whole number", what, s);
        *ret = v;
        return 0;
}

int cli_parse_float(const char *s, const char *what, float *ret)
{
        char *end;
        errno = 0;
        float v = strtof(s, &end);
        if (errno || end == s || *end || !isfinite(v))
                return cli_error(-EINVAL, "%s: '%s' is not a number", what, s);
        *ret = v;
        return 0;
}

int cli_parse_kv_type(const char *s, enum kv_type *ret)
{
        if (kv_type_from_string(s, ret) < 0)
                return cli_error(-EINVAL, "--kv-type: '%s' is not f16, f32 or q8", s);
        return 0;
}

int cli_parse_target(const char *s, enum backend_target *ret)
{
        if (backend_target_from_string(s, ret) < 0)
                return cli_error(-EINVAL, "--target: '%s' is not cpu or npu", s);
        return 0;
}

int cli_read_file(const char *path, char **ret, size_t *ret_len)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        size_t cap = 4096, n = 0;
        char *buf;

        if (!f)
                return -errno;
        buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                size_t got = fread(buf + n, 1, cap - n - 1, f);
                n += got;
                if (got == 0)
                        break;
                if (n + 1 == cap) {
                        char *t = realloc(buf, cap * 2);
                        if (!t) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = t;
                        cap *= 2;
                }
        }
        if (ferror(f)) {
                free(buf);
                return -EIO;
        }
        buf[n] = 0;
        *ret = buf;
        *ret_len = n;
        return 0;
}

int cli_load_vocab(const char *path, struct npu_vocab **ret, struct npu_err *err)
{
        _cleanup_(gguf_freep) struct gguf *g = NULL;
        size_t len = strlen(path);
        int r;

        if (len > 6 && strcmp(path + len - 6, ".model") == 0)
                return vocab_from_spm_file(path, ret, err);
        r = gguf_open(path, &g, err);
        if (r < 0)
                return r;
        return vocab_from_gguf(g, ret, err);
}

void cli_print_timings(FILE *f, const struct gen_stats *st)
{
        int32_t steps = MAX(st->n_generated - 1, 1);
        double ms_tok = st->decode_ms / steps;
        fprintf(f, "prompt: %d tokens, %.2f ms (%.2f tokens/s)\n", st->n_prompt, st->prefill_ms,
                st->prefill_ms > 0 ? 1000.0 * st->n_prompt / st->prefill_ms : 0);
        fprintf(f, "generation: %d tokens, %.2f ms/token (%.2f tokens/s), stop: %s\n", st->n_generated, ms_tok,
                ms_tok > 0 ? 1000.0 / ms_tok : 0, stop_reason_name(st->stop));
}

void cli_print_backend(FILE *f, const struct runtime *rt)
{
        const struct npu_ctx *c = rt->ctx;
        const struct backend_stats *st = &c->stats;

        if (ctx_target(c) == BACKEND_TARGET_NPU)
                fprintf(f, "back end: npu (%s)\n", backend_npu_device(c->npu));
        else
                fprintf(f, "back end: cpu%s%s\n", rt->target_note ? "; " : "", rt->target_note ? rt->target_note : "");
        if (st->passes + st->faults == 0)
                return;
        fprintf(f, "npu: %llu passes, %llu submissions, %llu ops, %.1f ms waiting; %llu faults, %llu retried on a fresh "
                   "context, %llu run on the cpu, %llu netlink events%s\n",
                (unsigned long long)st->passes, (unsigned long long)st->submissions, (unsigned long long)st->ops,
                st->wait_ns / 1e6, (unsigned long long)st->faults, (unsigned long long)st->retries,
                (unsigned long long)st->cpu_fallbacks, (unsigned long long)st->events,
                st->device_lost ? "; device lost" : "");
        if (st->faults)
                fprintf(f, "npu: last fault: %s\n", st->last_fault);
}
