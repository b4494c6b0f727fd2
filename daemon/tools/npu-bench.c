/* SPDX-License-Identifier: MIT */
/*
 * npu-bench: speed of the engine on one model.
 *   --task speed (default): prompt processing and generation tokens/s, and the
 *       memory bandwidth the decode reached against the read bandwidth
 *       measured on this machine in the same run.
 *   --task decode | benchmark | benchmark_long: the reference flow's tasks and
 *       its table (Example#, Prompt Length, New Tokens, Total Time, Prefill,
 *       Time/Token, Tokens/Sec); --json prints one object per row.
 *   --target cpu|npu: where the forward passes run (npu: npu.ko's device).
 *   --no-peaks: skip measuring the machine's read bandwidth and int8 peak
 *       (slow, and meaningless in an emulator).
 *   --fake-context N1,N2,...: decode speed at a long context without
 *       prefilling it: N positions of the KV cache are filled with random
 *       values (synthetic KV contents, said so in the output) and --tg
 *       tokens are decoded after them, one untimed first; the contexts
 *       are held at once and take turns token by token. Each row also
 *       gives the bytes a step reads (weights and K/V) and their rate; a
 *       line per longer context gives the ratio the bytes alone would
 *       set (every byte at the first context's rate) and the rate at
 *       which the extra K/V bytes actually went.
 *   --task batch-decode: the service's decode step, M sequences of --pp
 *       tokens of context (default 32) each contributing one token to a
 *       forward pass, for M in --batch-sizes (default 1,2,4,8,16); prints
 *       ms/step, aggregate tokens/s and the ratio to M = 1 over --tg steps
 *       (default 8) after one untimed step.
 */
#include <getopt.h>
#include <json-c/json.h>

#include "cli.h"
#include "fp16.h"
#include "median.h"
#include "membw.h"
#include "plot.h"
#include "reference_table.h"
#include "kernels.h"
#include "runtime.h"

#define MAX_MODELS 4

struct bench_args {
        struct runtime_opts rt;
        const char *models[MAX_MODELS];
        int n_models;
        bool compare_attention;
        const char *task;
        const char *precision;
        const char *plot;
        int32_t fake_ctx[32];
        int n_fake_ctx;
        int32_t lengths[32];
        int n_lengths;
        int32_t new_tokens;
        int32_t pp, tg;
        int32_t batch_sizes[32];
        int n_batch_sizes;
        bool pp_set, tg_set;
        bool json;
        bool no_peaks;
};

static int parse_lengths(const char *s, struct bench_args *a)
{
        _cleanup_free_ char *copy = strdup(s);
        char *save = NULL;
        a->n_lengths = 0;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (a->n_lengths == (int)ARRAY_SIZE(a->lengths))
                        return cli_error(-E2BIG, "--prompt-lengths: at most %zu lengths", ARRAY_SIZE(a->lengths));
                if (cli_parse_i32(t, 1, 1 << 20, "--prompt-lengths", &a->lengths[a->n_lengths++]) < 0)
                        return -EINVAL;
        }
        return a->n_lengths ? 0 : cli_error(-EINVAL, "--prompt-lengths: empty list");
}

/* The time between tokens as generate hands them out: one decode step each after the first. */
struct step_clock {
        bool (*fn)(int32_t, void *);
        void *ud;
        double last;
        int n;
        double ms[1024];
};

static bool step_clock_token(int32_t tok, void *ud)
{
        struct step_clock *c = ud;
        double now = now_ms();

        if (c->last > 0 && c->n < (int)ARRAY_SIZE(c->ms))
                c->ms[c->n++] = now - c->last;
        c->last = now;
        return c->fn ? c->fn(tok, c->ud) : true;
}

static double step_clock_median(struct step_clock *c)
{
        return median_of(c->ms, c->n);
}

static int run_one(struct runtime *rt, const int32_t *ids, int32_t n, int32_t new_tokens, struct reference_row *row,
                   bool (*fn)(int32_t, void *), void *ud)
{
        _cleanup_free_ struct step_clock *clock = calloc(1, sizeof(*clock));
        struct sampler_params sp;
        _cleanup_(sampler_freep) struct sampler *smp = NULL;
        struct kv_seq seq = {};
        struct gen_stats st;
        struct npu_err err = {};
        int r;

        if (!clock)
                return -ENOMEM;
        *clock = (struct step_clock) { .fn = fn, .ud = ud };
        sampler_params_default(&sp);
        sp.temperature = 0;
        r = sampler_new(&sp, rt->model->hp.n_vocab, &smp);
        if (r < 0)
                return r;
        double t0 = now_ms();
        r = generate(rt->ctx, &seq, smp, ids, n, new_tokens, false, step_clock_token, clock, &st, &err);
        double total = now_ms() - t0;
        kv_seq_release(rt->kv, &seq);
        if (r < 0)
                return cli_error(r, "%s", err.msg);
        int32_t steps = MAX(st.n_generated - 1, 1);
        *row = (struct reference_row) { .prompt = n, .generated = st.n_generated, .total_s = total / 1000.0,
                              .prefill_ms = st.prefill_ms, .ms_per_token = st.decode_ms / steps,
                              .tokens_per_s = st.decode_ms > 0 ? 1000.0 * steps / st.decode_ms : 0,
                              .median_step_ms = step_clock_median(clock) };
        return 0;
}

static void synthetic_prompt(const struct npu_model *m, int32_t n, int32_t *ids)
{
        uint64_t s = 0x1234567;
        ids[0] = m->vocab->bos >= 0 ? m->vocab->bos : 0;
        for (int32_t i = 1; i < n; i++) {
                s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                ids[i] = 3 + (int32_t)(s % (uint64_t)(m->hp.n_vocab - 3));
        }
}

/*
 * N positions of seq's K/V filled with random values: K uniform-ish in
 * +-[1/32, 2), V the same (f16 bit patterns with a random sign, exponent
 * and mantissa), which keeps the scores in a realistic range. Only the
 * speed means anything: the contents are not a model's.
 */
static void fake_fill(struct kv_pool *kv, struct kv_seq *seq, int32_t N)
{
        uint64_t s = 0x9e3779b97f4a7c15ull ^ (uint64_t)N;

        for (int32_t l = 0; l < kv->n_layers; l++)
                for (int w = 0; w < 2; w++)
                        for (int32_t p = 0; p < N; p++) {
                                void *row = kv_at(kv, seq, l, w, p);
                                for (int32_t e = 0; e < kv->kv_dim; e++) {
                                        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                                        uint16_t h = (uint16_t)(((s >> 20) & 0x8000) | ((10 + (s >> 8) % 6) << 10) |
                                                                (s & 0x3ff));
                                        if (kv->type == KV_TYPE_Q8)
                                                ((int8_t *)row)[e] = (int8_t)((int)(s % 255) - 127);
                                        else if (kv->type == KV_TYPE_F16)
                                                ((uint16_t *)row)[e] = h;
                                        else
                                                ((float *)row)[e] = f16_to_f32(h);
                                }
                                /* q8: values up to 2 in magnitude, as the f16 ones */
                                for (int32_t hh = 0; kv->type == KV_TYPE_Q8 && hh < kv->n_kv_heads; hh++)
                                        kv_scale_at(kv, seq, l, w, p)[hh] = 2.0f / 127.0f;
                        }
        seq->n_pos = N;
}

/* Decode step st after a fake context of N positions, timed into *ms. */
static int fake_step(struct runtime *rt, struct kv_seq *seq, int32_t N, int32_t st, float *logits, double *ms)
{
        int32_t tok = 3 + (int32_t)((uint64_t)(N * 31 + st * 7) % (uint64_t)(rt->model->hp.n_vocab - 3));
        int32_t pos = N + st;
        struct npu_batch b = { .n = 1, .tokens = &tok, .pos = &pos, .seqs = &seq };
        struct npu_err err = {};

        double t0 = now_ms();
        int r = forward(rt->ctx, &b, logits, &err);
        *ms = now_ms() - t0;
        return r < 0 ? cli_error(r, "%s", err.msg) : 0;
}

struct fake_ctx {
        int32_t N;
        struct kv_seq seq;
        double *ms; /* [1 + steps]: [0] the untimed first step */
        double median; /* of the timed steps, once fake_row printed them */
        double paired[3]; /* the lower quartile, median and upper quartile of the rounds' ratios to f[0] (fake_paired) */
};

static void fake_ctx_release(struct kv_pool *kv, struct fake_ctx *f, int n)
{
        for (int i = 0; i < n; i++) {
                kv_seq_release(kv, &f[i].seq);
                free(f[i].ms);
        }
}

/* Bytes of K and V a decode step reads per position of its context, over all layers. */
static double kv_bytes_per_position(const struct kv_pool *kv)
{
        double scales = kv->type == KV_TYPE_Q8 ? (double)kv->n_kv_heads * sizeof(float) : 0;
        return 2.0 * kv->n_layers * ((double)kv->kv_dim * kv->elem_bytes + scales);
}

/*
 * Bytes a decode step at context N reads: the weights and the K/V of its
 * N + 1 positions (the first timed step's; the later ones read a row or a
 * few more).
 */
static double fake_step_bytes(const struct runtime *rt, int32_t N)
{
        return (double)model_bytes_per_token(rt->model) + kv_bytes_per_position(rt->kv) * (N + 1);
}

/*
 * One row of the table: the timed steps' mean, best, median (the lower one
 * of an even count, kept in f->median) and worst, then the bytes a step
 * reads and the rate of its median.
 */
static void fake_row(const struct runtime *rt, struct fake_ctx *f, int32_t steps, double first_median)
{
        double sum = 0, best = f->ms[1], worst = f->ms[1];

        for (int32_t st = 1; st <= steps; st++) {
                sum += f->ms[st];
                best = MIN(best, f->ms[st]);
                worst = MAX(worst, f->ms[st]);
        }
        qsort(f->ms + 1, (size_t)steps, sizeof(double), median_cmp_double);
        const double median = f->ms[1 + (steps - 1) / 2], bytes = fake_step_bytes(rt, f->N);
        printf("| %8d | %12.1f | %12.1f | %12.1f | %12.1f | %9.2fx | %10.3f | %9.2f |\n", f->N, sum / steps, best, median,
               worst, first_median > 0 ? median / first_median : 1.0, bytes / 1e6, bytes / (median * 1e6));
        f->median = median;
}

/*
 * The physical floor of the ratios: a step that moved every byte at the
 * rate of the first context's median would take bytes(N) / bytes(first)
 * as long. The K/V's own rate is what the ratio hides: the extra bytes
 * over the extra time.
 */
static void fake_floor(const struct runtime *rt, const struct fake_ctx *f, int n)
{
        const double b0 = fake_step_bytes(rt, f[0].N);

        for (int i = 1; i < n; i++) {
                const double bytes = fake_step_bytes(rt, f[i].N), dt = f[i].median - f[0].median;
                printf("context %d against %d: %.3f MB more a step; at the rate of context %d's steps (%.2f GB/s) the "
                       "ratio would be %.2fx; the extra bytes took %.3f ms (%.2f GB/s)\n",
                       f[i].N, f[0].N, (bytes - b0) / 1e6, f[0].N, b0 / (f[0].median * 1e6), bytes / b0, dt,
                       dt > 0 ? (bytes - b0) / (dt * 1e6) : 0.0);
                printf("context %d against %d round by round (a step of each back to back): median %.2fx, quartiles "
                       "%.2f-%.2fx\n",
                       f[i].N, f[0].N, f[i].paired[1], f[i].paired[0], f[i].paired[2]);
        }
}

/*
 * Each later context against the first, round by round: a round runs one
 * step of each context back to back, so the ratio of its two steps is
 * taken within a fraction of a second, where the medians of fake_row
 * compare steps seconds apart and a host whose bandwidth swings within a
 * minute moves them (7B w8a8 q8 at 4000 against 4, two runs in a row of
 * the same build: 1.37x and 1.16x). Before fake_row, which sorts the
 * steps.
 */
static int fake_paired(struct fake_ctx *f, int n, int32_t steps)
{
        if (steps < 1)
                return 0;
        _cleanup_free_ double *ratio = malloc(sizeof(double) * (size_t)steps);
        if (!ratio)
                return -ENOMEM;
        for (int i = 1; i < n; i++) {
                for (int32_t st = 1; st <= steps; st++)
                        ratio[st - 1] = f[i].ms[st] / f[0].ms[st];
                qsort(ratio, (size_t)steps, sizeof(double), median_cmp_double);
                f[i].paired[0] = ratio[(steps - 1) / 4];
                f[i].paired[1] = ratio[(steps - 1) / 2];
                f[i].paired[2] = ratio[3 * (steps - 1) / 4];
        }
        return 0;
}

/*
 * Decode at contexts of N positions whose K/V are random (fake_fill), all
 * held at once: after an untimed step each, the contexts take turns, one
 * token each, so that the host's drift (its memory bandwidth moves from one
 * minute to the next) falls on all of them alike.
 */
static int run_fake_context(struct runtime *rt, const struct bench_args *a)
{
        const struct npu_model *m = rt->model;
        struct kv_pool *kv = rt->kv;
        const int n = a->n_fake_ctx;
        const int32_t steps = a->tg;
        _cleanup_free_ float *logits = malloc(sizeof(float) * m->hp.n_vocab);
        _cleanup_free_ struct fake_ctx *f = calloc(n, sizeof(*f));
        int r = 0;

        if (!logits || !f)
                return -ENOMEM;
        for (int i = 0; i < n && r >= 0; i++) {
                f[i].N = a->fake_ctx[i];
                f[i].ms = calloc(steps + 1, sizeof(double));
                if (!f[i].ms)
                        r = cli_error(-ENOMEM, "out of memory");
                else if (kv_seq_reserve(kv, &f[i].seq, f[i].N + steps + 1) < 0)
                        r = cli_error(-ENOSPC, "KV cache too small for the contexts at once (%d positions more)",
                                      f[i].N + steps + 1);
                else
                        fake_fill(kv, &f[i].seq, f[i].N);
        }
        for (int32_t st = 0; st <= steps && r >= 0; st++)
                for (int k = 0; k < n && r >= 0; k++) {
                        /* each round starts with the next context: none always follows the same one */
                        struct fake_ctx *x = &f[(k + st) % n];
                        r = fake_step(rt, &x->seq, x->N, st, logits, &x->ms[st]);
                }
        if (r >= 0 && fake_paired(f, n, steps) < 0)
                r = cli_error(-ENOMEM, "out of memory");
        if (r >= 0) {
                printf("SYNTHETIC KV CONTENTS: the context is random K/V values, not a prefilled prompt\n");
                printf("| %8s | %12s | %12s | %12s | %12s | %10s | %10s | %9s |\n", "context", "ms/token", "best ms",
                       "median ms", "worst ms", "median/1st", "MB/token", "GB/s");
                for (int i = 0; i < n; i++)
                        fake_row(rt, &f[i], steps, f[0].median);
                fake_floor(rt, f, n);
                printf("model %s (%s), %d threads, kernels %s, attention %s, KV %s, %d timed tokens per context, the "
                       "contexts taking turns token by token (synthetic KV)\n",
                       m->name ? m->name : m->path, precision_name(m->precision), threadpool_size(rt->tp),
                       kernels_isa_name(kernels_isa()), rt->ctx->attention == ATTENTION_FLASH ? "flash" : "default",
                       kv_type_name(kv->type), steps);
        }
        fake_ctx_release(kv, f, n);
        return r;
}

struct echo {
        const struct npu_vocab *v;
};

static bool echo_token(int32_t tok, void *ud)
{
        struct echo *e = ud;
        char buf[1100];
        fwrite(buf, 1, vocab_token_bytes(e->v, tok, buf, sizeof(buf)), stdout);
        return true;
}

/* Operations (a multiply and an add per weight) of the matrices but the output head, per token. */
static double matmul_ops_per_token(const struct npu_model *m)
{
        double n = 0;

        for (int l = 0; l < m->hp.n_layers; l++) {
                const struct npu_weight *ws = &m->layers[l].wq;
                for (int j = 0; j < 7; j++)
                        n += (double)ws[j].rows * ws[j].cols;
        }
        return 2.0 * n;
}

/* The machine's figures, measured before a run and again after it: the higher of each counts (the stricter ratio). */
struct peaks {
        double bw;       /* read bandwidth, bytes/s */
        double int8_ops; /* int8 ops/s */
        double amx_ops;  /* the AMX tiles' int8 ops/s, where the kernels use them */
        const char *bw_how, *int8_how;
        /* decode steps paired with probe samples (paired_decode): the medians, the ratio's median and best */
        int paired_steps;
        int32_t paired_context;
        double paired_step_bw, paired_probe_bw, paired_ratio, paired_ratio_best;
};

/* The read bandwidth over the model's weights, where decode reads. */
static double model_read_bandwidth(struct runtime *rt, const char **how)
{
        const struct gguf *g = rt->model->gguf;

        return measure_read_bandwidth(rt->tp, g ? g->map : NULL, g ? g->map_size : 0, how);
}

static void measure_peaks(struct runtime *rt, bool int8, struct peaks *p)
{
        const char *bw_how;
        double bw = model_read_bandwidth(rt, &bw_how);

        if (bw > p->bw) {
                p->bw = bw;
                p->bw_how = bw_how;
        }
        if (int8) {
                const char *how;
                double ops = 2.0 * measure_int8_peak(rt->tp, &how), amx = 2.0 * measure_amx_peak(rt->tp);
                if (ops > p->int8_ops) {
                        p->int8_ops = ops;
                        p->int8_how = how;
                }
                p->amx_ops = MAX(p->amx_ops, amx);
        }
}

/*
 * A decode whose steps take turns with samples of the read-bandwidth probe
 * (one run of each pattern, its best): each step against the bandwidth
 * the host gave at its own moment, where the best of all runs (summary)
 * is the best moment of the whole run. The clock stops while the probe
 * runs.
 */
#define PAIRED_MAX 1024

struct paired_clock {
        struct bw_probe *probe;
        double weight_bytes, kv_bytes_per_pos;
        int32_t prompt;
        double last;
        int n;
        double step_bw[PAIRED_MAX], probe_bw[PAIRED_MAX], ratio[PAIRED_MAX];
};

static bool paired_token(int32_t tok, void *ud)
{
        struct paired_clock *c = ud;
        const double now = now_ms();

        if (c->last > 0 && c->n < PAIRED_MAX && now > c->last) {
                /* the step that made this token read every weight and the K/V of prompt + n + 1 positions */
                const double bytes = c->weight_bytes + c->kv_bytes_per_pos * (c->prompt + c->n + 1);
                const char *how;
                c->step_bw[c->n] = bytes / ((now - c->last) / 1000.0);
                c->probe_bw[c->n] = bw_probe_sample(c->probe, &how);
                c->ratio[c->n] = c->probe_bw[c->n] > 0 ? c->step_bw[c->n] / c->probe_bw[c->n] : 0;
                c->n++;
        }
        c->last = now_ms();
        return true;
}

/* steps decode steps after a synthetic prompt, paired with probe samples; the figures into pk */
static int paired_decode(struct runtime *rt, int32_t prompt, int32_t steps, struct peaks *pk)
{
        const struct gguf *g = rt->model->gguf;
        _cleanup_free_ struct paired_clock *c = calloc(1, sizeof(*c));
        _cleanup_(bw_probe_freep) struct bw_probe *probe = NULL;
        _cleanup_free_ int32_t *ids = malloc(sizeof(int32_t) * prompt);
        struct reference_row row;
        int r;

        if (!c || !ids)
                return -ENOMEM;
        r = bw_probe_new(rt->tp, g ? g->map : NULL, g ? g->map_size : 0, &probe);
        if (r < 0)
                return r == -EOPNOTSUPP ? 0 : r;
        *c = (struct paired_clock) { .probe = probe, .weight_bytes = (double)model_bytes_per_token(rt->model),
                                     .kv_bytes_per_pos = kv_bytes_per_position(rt->kv), .prompt = prompt };
        synthetic_prompt(rt->model, prompt, ids);
        r = run_one(rt, ids, prompt, steps + 1, &row, paired_token, c);
        if (r < 0 || c->n == 0)
                return r;
        pk->paired_steps = c->n;
        pk->paired_context = prompt;
        pk->paired_ratio_best = 0;
        for (int i = 0; i < c->n; i++)
                pk->paired_ratio_best = MAX(pk->paired_ratio_best, c->ratio[i]);
        pk->paired_step_bw = median_of(c->step_bw, c->n);
        pk->paired_probe_bw = median_of(c->probe_bw, c->n);
        pk->paired_ratio = median_of(c->ratio, c->n);
        return 0;
}

static void summary(struct runtime *rt, const struct reference_row *rows, int n, struct peaks *pk, bool json, bool no_peaks)
{
        const struct npu_model *m = rt->model;
        const double wpt = (double)model_bytes_per_token(m);
        double tps = 0, pf_ops = 0, ctx = 0, median_ms = 0;
        int32_t pf_tokens = 0;
        for (int i = 0; i < n; i++) {
                tps += rows[i].tokens_per_s / n;
                /* the mean context of the row's decode steps */
                ctx += (rows[i].prompt + rows[i].generated / 2.0) / n;
                median_ms += rows[i].median_step_ms / n;
                double ops = matmul_ops_per_token(m) * rows[i].prompt;
                if (ops / (rows[i].prefill_ms / 1000.0) > pf_ops) {
                        pf_ops = ops / (rows[i].prefill_ms / 1000.0);
                        pf_tokens = (int32_t)rows[i].prompt;
                }
        }
        /* what a decode step reads: every weight once, and the K and V of its context */
        const double kvpt = kv_bytes_per_position(rt->kv) * ctx, bpt = wpt + kvpt;
        double reached = bpt * tps, reached_median = median_ms > 0 ? bpt / (median_ms / 1000.0) : 0;
        const bool int8 = m->precision != NPU_PRECISION_FLOAT && ctx_target(rt->ctx) == BACKEND_TARGET_CPU;
        if (!no_peaks) {
                /* the first row's prompt and decode steps again, each step paired with a probe sample */
                if (n > 0 && rows[0].generated > 1 && paired_decode(rt, (int32_t)rows[0].prompt,
                                                                     (int32_t)rows[0].generated - 1, pk) < 0)
                        fprintf(stderr, "npu-bench: the paired decode failed\n");
                measure_peaks(rt, int8, pk);
        }
        const double bw = pk->bw, peak_ops = pk->int8_ops;
        const char *peak_how = pk->int8_how;
        /* the kernel alone: the GEMM on the first layer's up projection, as many tokens as the best prefill */
        double gemm_ops = int8 && !no_peaks && pf_tokens > 0
                                  ? measure_gemm(rt->tp, &m->layers[0].w_up, m->precision, pf_tokens)
                                  : 0;
        const char *target = backend_target_name(ctx_target(rt->ctx));
        if (json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "summary", json_object_new_boolean(1));
                json_object_object_add(o, "model", json_object_new_string(m->name ? m->name : m->path));
                json_object_object_add(o, "precision", json_object_new_string(precision_name(m->precision)));
                json_object_object_add(o, "target", json_object_new_string(target));
                json_object_object_add(o, "device_faults", json_object_new_int64((int64_t)rt->ctx->stats.faults));
                json_object_object_add(o, "bytes_per_token", json_object_new_double(bpt));
                json_object_object_add(o, "decode_bandwidth_gbs", json_object_new_double(reached / 1e9));
                json_object_object_add(o, "measured_bandwidth_gbs", json_object_new_double(bw / 1e9));
                if (pk->bw_how)
                        json_object_object_add(o, "bandwidth_pattern", json_object_new_string(pk->bw_how));
                json_object_object_add(o, "bandwidth_ratio", json_object_new_double(bw > 0 ? reached / bw : 0));
                json_object_object_add(o, "kv_bytes_per_token", json_object_new_double(kvpt));
                json_object_object_add(o, "decode_bandwidth_median_step_gbs",
                                       json_object_new_double(reached_median / 1e9));
                json_object_object_add(o, "bandwidth_ratio_median_step",
                                       json_object_new_double(bw > 0 ? reached_median / bw : 0));
                if (pk->paired_steps) {
                        json_object_object_add(o, "paired_steps", json_object_new_int(pk->paired_steps));
                        json_object_object_add(o, "paired_step_bandwidth_median_gbs",
                                               json_object_new_double(pk->paired_step_bw / 1e9));
                        json_object_object_add(o, "paired_probe_bandwidth_median_gbs",
                                               json_object_new_double(pk->paired_probe_bw / 1e9));
                        json_object_object_add(o, "paired_ratio_median", json_object_new_double(pk->paired_ratio));
                        json_object_object_add(o, "paired_ratio_best", json_object_new_double(pk->paired_ratio_best));
                }
                json_object_object_add(o, "prefill_ops_per_s", json_object_new_double(pf_ops));
                json_object_object_add(o, "int8_peak_ops_per_s", json_object_new_double(peak_ops));
                json_object_object_add(o, "gemm_ops_per_s", json_object_new_double(gemm_ops));
                json_object_object_add(o, "prefill_to_peak", json_object_new_double(peak_ops > 0 ? pf_ops / peak_ops : 0));
                if (peak_how)
                        json_object_object_add(o, "int8_peak_instructions", json_object_new_string(peak_how));
                if (pk->amx_ops > 0)
                        json_object_object_add(o, "amx_peak_ops_per_s", json_object_new_double(pk->amx_ops));
                printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
                json_object_put(o);
                return;
        }
        printf("\nmodel %s (%s), %d threads, kernels %s, attention %s, KV %s, back end %s",
               m->name ? m->name : m->path, precision_name(m->precision), threadpool_size(rt->tp),
               kernels_isa_name(kernels_isa()), rt->ctx->attention == ATTENTION_FLASH ? "flash" : "default",
               kv_type_name(rt->kv->type), target);
        if (ctx_target(rt->ctx) == BACKEND_TARGET_NPU)
                printf(" (%s)", backend_npu_device(rt->ctx->npu));
        printf("\n");
        if (rt->target_note)
                printf("note: %s\n", rt->target_note);
        if (ctx_target(rt->ctx) == BACKEND_TARGET_NPU) {
                const struct backend_stats *st = &rt->ctx->stats;
                printf("npu: %llu passes, %llu submissions, %.1f ms waiting for the device; %llu faults, %llu passes "
                       "run on the cpu\n", (unsigned long long)st->passes, (unsigned long long)st->submissions,
                       st->wait_ns / 1e6, (unsigned long long)st->faults, (unsigned long long)st->cpu_fallbacks);
        }
        printf("decode: %.1f MB of weights + %.1f MB of K/V (%.0f positions) per token x %.2f tokens/s = %.2f GB/s; "
               "median step %.1f ms = %.2f GB/s\n", wpt / 1e6, kvpt / 1e6, ctx, tps, reached / 1e9, median_ms,
               reached_median / 1e9);
        if (no_peaks)
                return;
        printf("decode against the measured read bandwidth %.2f GB/s (the best of its runs; %s): mean %.0f%%, median "
               "step %.0f%%\n", bw / 1e9, pk->bw_how ? pk->bw_how : "", bw > 0 ? 100.0 * reached / bw : 0,
               bw > 0 ? 100.0 * reached_median / bw : 0);
        if (pk->paired_steps)
                printf("decode paired with the probe (%d steps at context %d, a probe sample of each pattern between "
                       "each two): step / probe median %.0f%%, best %.0f%%; median step %.2f GB/s, median probe %.2f "
                       "GB/s\n", pk->paired_steps, pk->paired_context, 100.0 * pk->paired_ratio,
                       100.0 * pk->paired_ratio_best, pk->paired_step_bw / 1e9, pk->paired_probe_bw / 1e9);
        if (peak_ops > 0) {
                printf("prefill: %.2f G int8 ops/s at best; measured int8 peak %.2f G ops/s (%s, independent "
                       "chains) (%.0f%% of it)\n", pf_ops / 1e9, peak_ops / 1e9, peak_how, 100.0 * pf_ops / peak_ops);
                printf("GEMM kernel alone (layer 0 up projection, %d tokens): %.2f G int8 ops/s (%.0f%% of the peak)\n",
                       pf_tokens, gemm_ops / 1e9, 100.0 * gemm_ops / peak_ops);
                /* the w8a8 GEMM of 16 tokens or more runs on the tiles: their peak is the machine's */
                if (pk->amx_ops > 0)
                        printf("AMX tiles' int8 peak %.2f G ops/s (tdpbssd, independent accumulators): prefill %.0f%% "
                               "of it, the GEMM alone %.0f%%\n", pk->amx_ops / 1e9, 100.0 * pf_ops / pk->amx_ops,
                               100.0 * gemm_ops / pk->amx_ops);
        } else
                printf("prefill: %.2f G ops/s at best\n", pf_ops / 1e9);
}

/* One short untimed run first: page faults, lazy allocations and (under emulation) code translation. */
static int warm_up(struct runtime *rt)
{
        int32_t ids[8];
        struct reference_row row;
        synthetic_prompt(rt->model, 8, ids);
        return run_one(rt, ids, MIN(8, rt->n_ctx - 4), 4, &row, NULL, NULL);
}

/* The rows of a table as a series of the plot: prefill time and time per token against prompt length. */
static void plot_add(struct plot *pl, const struct runtime *rt, const struct reference_row *rows, int n)
{
        const struct npu_model *m = rt->model;
        if (!pl || pl->n_series == PLOT_MAX_SERIES)
                return;
        struct plot_series *se = &pl->series[pl->n_series++];
        snprintf(se->label, sizeof(se->label), "%s (%s), %s attention, KV %s, %s", m->name ? m->name : "model",
                 precision_name(m->precision), rt->ctx->attention == ATTENTION_FLASH ? "flash" : "default",
                 kv_type_name(rt->kv->type), backend_target_name(ctx_target(rt->ctx)));
        se->n = MIN(n, PLOT_MAX_POINTS);
        for (int i = 0; i < se->n; i++) {
                se->x[i] = rows[i].prompt;
                se->y[0][i] = rows[i].prefill_ms;
                se->y[1][i] = rows[i].ms_per_token;
        }
}

static int run_table(struct runtime *rt, const struct bench_args *a, struct peaks *pk, struct plot *pl)
{
        const struct npu_model *m = rt->model;
        struct reference_row rows[32];
        int n = 0, r;
        bool decode = strcmp(a->task, "decode") == 0;
        int count = decode && a->n_lengths == 0 ? (int)REFERENCE_N_QUESTIONS : a->n_lengths;

        r = warm_up(rt);
        if (r < 0)
                return r;

        for (int i = 0; i < count; i++) {
                _cleanup_free_ int32_t *ids = NULL;
                size_t len;
                if (decode && a->n_lengths == 0) {
                        r = vocab_tokenize(m->vocab, reference_questions[i], strlen(reference_questions[i]), true, false, &ids,
                                           &len);
                        if (r < 0)
                                return r;
                } else {
                        len = (size_t)a->lengths[i];
                        ids = malloc(sizeof(int32_t) * len);
                        if (!ids)
                                return -ENOMEM;
                        synthetic_prompt(m, (int32_t)len, ids);
                }
                if ((int64_t)len + a->new_tokens > rt->n_ctx) {
                        fprintf(stderr, "npu-bench: skipping prompt of %zu tokens: over the context of %d\n", len,
                                rt->n_ctx);
                        continue;
                }
                struct echo e = { m->vocab };
                if (decode && !a->json)
                        printf("****************************************\nprompt: %s\nresponse: %s",
                               reference_questions[i], reference_questions[i]);
                r = run_one(rt, ids, (int32_t)len, a->new_tokens, &rows[n], decode && !a->json ? echo_token : NULL,
                            &e);
                if (r < 0)
                        return r;
                if (decode && !a->json)
                        printf("\n");
                if (a->json)
                        reference_print_row_json(&rows[n], (size_t)n + 1);
                n++;
        }
        if (!a->json)
                reference_print_table(rows, (size_t)n);
        plot_add(pl, rt, rows, n);
        summary(rt, rows, n, pk, a->json, a->no_peaks);
        return 0;
}

static int run_speed(struct runtime *rt, const struct bench_args *a, struct peaks *pk)
{
        struct reference_row row;
        _cleanup_free_ int32_t *ids = malloc(sizeof(int32_t) * a->pp);
        if (!ids)
                return -ENOMEM;
        synthetic_prompt(rt->model, a->pp, ids);
        int r = warm_up(rt);
        if (r >= 0)
                r = run_one(rt, ids, a->pp, a->tg, &row, NULL, NULL);
        if (r < 0)
                return r;
        if (!a->json) {
                printf("prompt processing: %d tokens in %.1f ms = %.2f tokens/s\n", a->pp, row.prefill_ms,
                       1000.0 * a->pp / row.prefill_ms);
                printf("generation: %u tokens, %.2f ms/token = %.2f tokens/s\n", row.generated, row.ms_per_token,
                       row.tokens_per_s);
        }
        summary(rt, &row, 1, pk, a->json, a->no_peaks);
        return 0;
}

static int parse_batch_sizes(const char *s, struct bench_args *a)
{
        _cleanup_free_ char *copy = strdup(s);
        char *save = NULL;
        a->n_batch_sizes = 0;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (a->n_batch_sizes == (int)ARRAY_SIZE(a->batch_sizes))
                        return cli_error(-E2BIG, "--batch-sizes: at most %zu sizes", ARRAY_SIZE(a->batch_sizes));
                if (cli_parse_i32(t, 1, 4096, "--batch-sizes", &a->batch_sizes[a->n_batch_sizes++]) < 0)
                        return -EINVAL;
        }
        return a->n_batch_sizes ? 0 : cli_error(-EINVAL, "--batch-sizes: empty list");
}

/*
 * The scheduler's decode step: M sequences, each at the same short context,
 * give one token each to one forward pass that wants every token's logits.
 * The sequences are prefilled once (batched), and truncated back to the
 * context after each batch size so every M sees the same context.
 */
static int run_batch_decode(struct runtime *rt, const struct bench_args *a)
{
        const struct npu_model *m = rt->model;
        int32_t max_m = 0, P = a->pp, steps = a->tg;
        struct npu_err err = {};
        int r = 0;

        for (int i = 0; i < a->n_batch_sizes; i++)
                max_m = MAX(max_m, a->batch_sizes[i]);
        if (max_m > rt->ctx->max_batch)
                return cli_error(-EINVAL, "batch of %d over the context's %d", max_m, rt->ctx->max_batch);
        _cleanup_free_ struct kv_seq *seqs = calloc(max_m, sizeof(*seqs));
        _cleanup_free_ struct kv_seq **sp = calloc(MAX(max_m, rt->ctx->max_batch), sizeof(*sp));
        _cleanup_free_ int32_t *ids = malloc(sizeof(int32_t) * P);
        _cleanup_free_ int32_t *tok = malloc(sizeof(int32_t) * MAX(max_m, rt->ctx->max_batch));
        _cleanup_free_ int32_t *pos = malloc(sizeof(int32_t) * MAX(max_m, rt->ctx->max_batch));
        _cleanup_free_ uint8_t *want = malloc(max_m);
        _cleanup_free_ float *logits = malloc(sizeof(float) * m->hp.n_vocab * max_m);
        _cleanup_free_ double *ms = malloc(sizeof(double) * (steps + 1));
        if (!seqs || !sp || !ids || !tok || !pos || !want || !logits || !ms)
                return -ENOMEM;
        memset(want, 1, max_m);
        synthetic_prompt(m, P, ids);

        /* prefill: every sequence gets the same prompt but for its second token */
        for (int32_t s = 0; s < max_m; s++) {
                if (kv_seq_reserve(rt->kv, &seqs[s], P + steps + 1) < 0) {
                        r = cli_error(-ENOSPC, "KV cache too small for %d sequences", max_m);
                        goto out;
                }
        }
        double tp0 = now_ms();
        int32_t n = 0, total = max_m * P;
        for (int32_t i = 0; i < total; i++) {
                int32_t s = i / P, p = i % P;
                sp[n] = &seqs[s];
                pos[n] = p;
                tok[n] = p == 1 ? 3 + (ids[1] + s) % (m->hp.n_vocab - 3) : ids[p];
                if (++n == rt->ctx->max_batch || i == total - 1) {
                        struct npu_batch b = { .n = n, .tokens = tok, .pos = pos, .seqs = sp };
                        r = forward(rt->ctx, &b, NULL, &err);
                        if (r < 0) {
                                cli_error(r, "%s", err.msg);
                                goto out;
                        }
                        n = 0;
                }
        }
        if (!a->json)
                printf("prefill: %d sequences x %d tokens in %.0f ms\n", max_m, P, now_ms() - tp0);

        /*
         * The roofline of a step: the weights read once from memory, or M
         * tokens' int8 multiply-accumulates at the machine's peak, whichever
         * takes longer (the float output head counted in the bytes only).
         */
        double bpt = (double)model_bytes_per_token(m), bw = 0, peak_ops = 0;
        const char *peak_how = "", *bw_how = "";
        double int8_ops = m->precision == NPU_PRECISION_FLOAT ? 0 : matmul_ops_per_token(m);
        if (!a->no_peaks) {
                bw = model_read_bandwidth(rt, &bw_how);
                peak_ops = int8_ops > 0 ? 2.0 * measure_int8_peak(rt->tp, &peak_how) : 0;
        }
        if (!a->json && bw > 0)
                printf("machine: read bandwidth %.2f GB/s (%s), int8 peak %.2f G ops/s (%s); weights %.1f MB, %.2f G "
                       "int8 ops per token\n", bw / 1e9, bw_how, peak_ops / 1e9, peak_how, bpt / 1e6, int8_ops / 1e9);

        double base_tps = 0;
        if (!a->json)
                printf("| %4s | %12s | %12s | %12s | %14s | %8s | %13s | %11s |\n", "M", "ms/step", "best ms",
                       "ms/token", "tokens/s", "vs M=1", "roofline ms", "of roofline");
        for (int i = 0; i < a->n_batch_sizes; i++) {
                int32_t M = a->batch_sizes[i];
                for (int32_t st = 0; st <= steps; st++) {
                        for (int32_t s = 0; s < M; s++) {
                                sp[s] = &seqs[s];
                                pos[s] = P + st;
                                tok[s] = 3 + (ids[P - 1] + 7 * s + 13 * st) % (m->hp.n_vocab - 3);
                        }
                        struct npu_batch b = { .n = M, .tokens = tok, .pos = pos, .seqs = sp, .want_logits = want };
                        double t0 = now_ms();
                        r = forward(rt->ctx, &b, logits, &err);
                        ms[st] = now_ms() - t0;
                        if (r < 0) {
                                cli_error(r, "%s", err.msg);
                                goto out;
                        }
                }
                /* step 0 is the untimed warm-up */
                double sum = 0;
                for (int32_t st = 1; st <= steps; st++)
                        sum += ms[st];
                qsort(ms + 1, steps, sizeof(double), median_cmp_double);
                double mean = sum / steps, best = ms[1], med = ms[1 + steps / 2], tps = 1000.0 * M / mean;
                if (M == 1 || base_tps == 0)
                        base_tps = M == 1 ? tps : base_tps;
                double floor_ms = bw > 0 ? 1000.0 * MAX(bpt / bw, peak_ops > 0 ? M * int8_ops / peak_ops : 0) : 0;
                if (a->json) {
                        json_object *o = json_object_new_object();
                        json_object_object_add(o, "batch", json_object_new_int(M));
                        json_object_object_add(o, "context", json_object_new_int(P));
                        json_object_object_add(o, "ms_per_step", json_object_new_double(mean));
                        json_object_object_add(o, "ms_per_step_best", json_object_new_double(best));
                        json_object_object_add(o, "ms_per_step_median", json_object_new_double(med));
                        json_object_object_add(o, "tokens_per_s", json_object_new_double(tps));
                        json_object_object_add(o, "ratio_to_1", json_object_new_double(base_tps > 0 ? tps / base_tps : 0));
                        json_object_object_add(o, "roofline_ms", json_object_new_double(floor_ms));
                        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
                        json_object_put(o);
                } else {
                        printf("| %4d | %12.1f | %12.1f | %12.2f | %14.2f | %7.2fx | %13.1f | %10.0f%% |\n", M, mean,
                               best, mean / M, tps, base_tps > 0 ? tps / base_tps : 0, floor_ms,
                               floor_ms > 0 ? 100.0 * floor_ms / mean : 0);
                }
                fflush(stdout);
                for (int32_t s = 0; s < max_m; s++)
                        kv_seq_truncate(rt->kv, &seqs[s], P);
                for (int32_t s = 0; s < max_m; s++)
                        if (kv_seq_reserve(rt->kv, &seqs[s], P + steps + 1) < 0) {
                                r = cli_error(-ENOSPC, "KV cache too small");
                                goto out;
                        }
        }
        if (!a->json)
                printf("model %s (%s), %d threads, kernels %s, context %d, %d steps per size\n",
                       m->name ? m->name : m->path, precision_name(m->precision), threadpool_size(rt->tp),
                       kernels_isa_name(kernels_isa()), P, steps);
out:
        for (int32_t s = 0; s < max_m; s++)
                kv_seq_release(rt->kv, &seqs[s]);
        return r;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "model", required_argument, NULL, 'm' },
                { "task", required_argument, NULL, 'T' },
                { "precision", required_argument, NULL, 'P' },
                { "flash-attention-plus", no_argument, NULL, 'F' },
                { "compare-attention", no_argument, NULL, 'A' },
                { "fake-context", required_argument, NULL, 'X' },
                { "threads", required_argument, NULL, 't' },
                { "prompt-lengths", required_argument, NULL, 'L' },
                { "new-tokens", required_argument, NULL, 'N' },
                { "pp", required_argument, NULL, 'p' },
                { "tg", required_argument, NULL, 'g' },
                { "ctx-size", required_argument, NULL, 'c' },
                { "json", no_argument, NULL, 'J' },
                { "plot", required_argument, NULL, 'G' },
                { "target", required_argument, NULL, 'R' },
                { "device", required_argument, NULL, 'D' },
                { "no-peaks", no_argument, NULL, 'K' },
                { "batch-sizes", required_argument, NULL, 'B' },
                { "kv-type", required_argument, NULL, 'V' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        struct bench_args a = { .task = "speed", .pp = 128, .tg = 32, .new_tokens = -1 };
        _cleanup_(runtime_freep) struct runtime *rt = NULL;
        struct npu_err err = {};
        int c, r = 0;

        runtime_opts_default(&a.rt);
        while ((c = getopt_long(argc, argv, "m:t:c:h", opts, NULL)) >= 0) {
                switch (c) {
                case 'm':
                        if (a.n_models == MAX_MODELS)
                                return cli_error(-E2BIG, "-m: at most %d models", MAX_MODELS), EXIT_FAILURE;
                        a.models[a.n_models++] = optarg;
                        break;
                case 'A': a.compare_attention = true; break;
                case 'T': a.task = optarg; break;
                case 'P': a.precision = optarg; break;
                case 'F': a.rt.attention = ATTENTION_FLASH; break;
                case 'X':
                        a.n_fake_ctx = 0;
                        for (char *save = NULL, *t = strtok_r(optarg, ",", &save); t && r >= 0;
                             t = strtok_r(NULL, ",", &save))
                                r = a.n_fake_ctx == (int)ARRAY_SIZE(a.fake_ctx)
                                            ? cli_error(-E2BIG, "--fake-context: too many")
                                            : cli_parse_i32(t, 1, 1 << 20, "--fake-context", &a.fake_ctx[a.n_fake_ctx++]);
                        break;
                case 't': r = cli_parse_int(optarg, 1, 1024, "--threads", &a.rt.threads); break;
                case 'L': r = parse_lengths(optarg, &a); break;
                case 'N': r = cli_parse_i32(optarg, 1, 1 << 20, "--new-tokens", &a.new_tokens); break;
                case 'p': r = cli_parse_i32(optarg, 1, 1 << 20, "--pp", &a.pp), a.pp_set = true; break;
                case 'g': r = cli_parse_i32(optarg, 1, 1 << 20, "--tg", &a.tg), a.tg_set = true; break;
                case 'B': r = parse_batch_sizes(optarg, &a); break;
                case 'V': r = cli_parse_kv_type(optarg, &a.rt.kv_type); break;
                case 'c': r = cli_parse_i32(optarg, 1, 1 << 20, "--ctx-size", &a.rt.n_ctx); break;
                case 'J': a.json = true; break;
                case 'G': a.plot = optarg; break;
                case 'R': r = cli_parse_target(optarg, &a.rt.target); break;
                case 'D': a.rt.device = optarg; break;
                case 'K': a.no_peaks = true; break;
                case 'h':
                        printf("Usage: npu-bench -m MODEL [-m MODEL2 ...] [--task speed|decode|benchmark|benchmark_long] "
                               "[--precision w8a8|w8a16] [--flash-attention-plus | --compare-attention] [--threads N] "
                               "[--prompt-lengths L1,L2,...] "
                               "[--new-tokens N] [--pp N --tg N] [--json] [--plot FILE.svg] [--target cpu|npu] "
                               "[--device PATH] [--no-peaks] [--kv-type f16|f32|q8]\n"
                               "       npu-bench -m MODEL --fake-context N1,N2,... [--tg STEPS] [--flash-attention-plus] "
                               "[--threads N] [--kv-type f16|f32|q8]\n"
                               "       npu-bench -m MODEL --task batch-decode [--batch-sizes 1,2,4,8,16] [--pp CONTEXT] "
                               "[--tg STEPS] [--json]\n");
                        return EXIT_SUCCESS;
                default: return EXIT_FAILURE;
                }
                if (r < 0)
                        return EXIT_FAILURE;
        }
        if (a.n_models == 0)
                return cli_error(-EINVAL, "no model given (-m MODEL)"), EXIT_FAILURE;
        if (reference_task_lengths(a.task) && a.n_lengths == 0)
                parse_lengths(reference_task_lengths(a.task), &a);
        else if (strcmp(a.task, "decode") && strcmp(a.task, "speed") && strcmp(a.task, "benchmark") &&
                 strcmp(a.task, "benchmark_long") && strcmp(a.task, "batch-decode"))
                return cli_error(-EINVAL, "--task: '%s' is not speed, decode, benchmark, benchmark_long or "
                                          "batch-decode", a.task),
                       EXIT_FAILURE;
        bool batch = strcmp(a.task, "batch-decode") == 0;
        if (batch) {
                if (a.n_batch_sizes == 0)
                        parse_batch_sizes("1,2,4,8,16", &a);
                if (!a.pp_set)
                        a.pp = 32;
                if (!a.tg_set)
                        a.tg = 8;
                int32_t max_m = 0;
                for (int i = 0; i < a.n_batch_sizes; i++)
                        max_m = MAX(max_m, a.batch_sizes[i]);
                a.rt.n_seq = MAX(a.rt.n_seq, max_m);
                a.rt.max_batch = MAX(a.rt.max_batch, max_m);
        }
        if (a.new_tokens < 0)
                a.new_tokens = strcmp(a.task, "decode") == 0 ? 30 : 60;
        int32_t longest = a.pp + a.tg + (batch ? 1 : 0);
        for (int i = 0; i < a.n_lengths; i++)
                longest = MAX(longest, a.lengths[i] + a.new_tokens);
        for (int i = 0; i < a.n_fake_ctx; i++)
                longest = MAX(longest, a.fake_ctx[i] + a.tg + 1);
        /* the fake contexts are held at once, one sequence each */
        a.rt.n_seq = MAX(a.rt.n_seq, a.n_fake_ctx);
        if (a.rt.n_ctx == 0)
                a.rt.n_ctx = longest;
        const bool table = strcmp(a.task, "speed") != 0 && !batch && !a.n_fake_ctx;
        struct plot pl = {
                .title = "npu-bench: prefill and time per token", .x_label = "prompt length (tokens)", .n_panels = 2,
                .y_label = { "prefill (ms)", "time per token (ms)" },
        };
        for (int i = 0; i < a.n_lengths; i++)
                pl.x_log2 = pl.x_log2 || (a.lengths[i] >= 16 * a.lengths[0]);
        if (a.plot && !table)
                return cli_error(-EINVAL, "--plot: only with --task decode, benchmark or benchmark_long"), EXIT_FAILURE;
        for (int mi = 0; mi < a.n_models; mi++) {
                a.rt.model_path = a.models[mi];
                r = runtime_open(&a.rt, &rt, &err);
                if (r < 0)
                        return cli_error(r, "%s: %s", a.models[mi], err.msg), EXIT_FAILURE;
                if (a.precision) {
                        enum npu_precision p;
                        if (precision_from_string(a.precision, &p) < 0 || p != rt->model->precision)
                                return cli_error(-EINVAL, "--precision %s: %s is %s (quantize it with npu-quantize)",
                                                 a.precision, a.models[mi], precision_name(rt->model->precision)),
                                       EXIT_FAILURE;
                }
                /* --compare-attention: the default path, then the flash one, on the same model */
                const int kinds = a.compare_attention ? 2 : 1;
                for (int k = 0; k < kinds; k++) {
                        if (a.compare_attention)
                                rt->ctx->attention = k ? ATTENTION_FLASH : ATTENTION_DEFAULT;
                        if ((a.n_models > 1 || kinds > 1) && !a.json)
                                printf("== %s, %s attention\n", a.models[mi],
                                       rt->ctx->attention == ATTENTION_FLASH ? "flash" : "default");
                        if (batch) {
                                r = run_batch_decode(rt, &a);
                        } else if (a.n_fake_ctx) {
                                r = run_fake_context(rt, &a);
                        } else {
                                /* the machine's figures drift: measure before and after, keep the higher (the stricter ratio) */
                                struct peaks pk = {};
                                if (!a.no_peaks)
                                        measure_peaks(rt,
                                                      rt->model->precision != NPU_PRECISION_FLOAT &&
                                                              ctx_target(rt->ctx) == BACKEND_TARGET_CPU,
                                                      &pk);
                                r = table ? run_table(rt, &a, &pk, &pl) : run_speed(rt, &a, &pk);
                        }
                        if (r < 0)
                                return EXIT_FAILURE;
                }
                runtime_free(rt);
                rt = NULL;
        }
        if (a.plot && plot_write_svg(&pl, a.plot) < 0)
                return EXIT_FAILURE;
        return EXIT_SUCCESS;
}
