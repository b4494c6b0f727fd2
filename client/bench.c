/* SPDX-License-Identifier: MIT */
/*
 * npuctl bench: the service under measurement.
 *   --task decode|benchmark|benchmark_long: the reference's tasks run through
 *       the daemon, one request after another, printed as npu-bench prints
 *       them (same prompts, same columns); the figures are the daemon's own,
 *       from each Finished signal's stats.
 *   --clients 1,2,4,8: N concurrent clients, each on its own connection, all
 *       on one sd-event loop, greedy and past end-of-text; aggregate tokens/s
 *       (over the whole run, and over the span in which all of them decode)
 *       and per-client ms/token against one client; then the time to first
 *       token of a new client while the others decode. Figures, no verdicts.
 * Prompts of an exact length are token ids (variant "ai"): npu-bench's
 * synthetic sequence, BOS first.
 */
#include <getopt.h>

#include "npuctl.h"
#include "reference_table.h"

#define MAX_LENGTHS 32
#define MAX_CLIENTS 64

struct bench {
        const struct npuctl *c;
        const char *task;
        const char *model;
        uint32_t lengths[MAX_LENGTHS];
        size_t n_lengths;
        uint32_t new_tokens;
        uint32_t clients[16];
        size_t n_clients;
        bool json;
        const char *target; /* --target: the back end the model must run on */

        /* the model, from ListModels */
        char *model_name;
        char *precision;
        uint32_t n_ctx, n_vocab;

        sd_event *event;
        uint64_t prompt_seed; /* every synthetic prompt differs: no prefix-cache hits */
};

static void usage(FILE *f)
{
        fprintf(f, "Usage: npuctl bench --task decode|benchmark|benchmark_long [OPTIONS]\n"
                   "       npuctl bench --clients N1,N2,... [OPTIONS]\n\n"
                   "  --task T               the reference's table: decode (4 questions), benchmark\n"
                   "                         (prompts of 4..256 tokens) or benchmark_long (512..4000)\n"
                   "  --clients LIST         concurrent clients per run, then the time to first token of\n"
                   "                         a new client while the largest count less one decode\n"
                   "  --prompt-lengths LIST  prompt lengths in tokens (--clients: the first one; default 32)\n"
                   "  --new-tokens N         tokens per request (default: decode 30, others 60)\n"
                   "  -m, --model NAME       a loaded model (default: the daemon's default model)\n"
                   "  --target cpu|npu       check that the model runs there (npu: a device is attached\n"
                   "                         and the model is quantized) and that every request did\n"
                   "  --json                 one JSON object per row\n");
}

/* ---- the model's shape, from ListModels */

static int model_info(struct bench *b, sd_bus *bus)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(json_object_putp) json_object *list = NULL;
        json_object *found = NULL;
        int r;

        r = bus_new_manager_call(bus, "ListModels", &m);
        if (r < 0)
                return r;
        r = bus_call(bus, m, 0, &reply);
        if (r < 0)
                return r;
        /* a(sa{sv}) reads as an array of [name, {info}] */
        r = json_from_bus(reply, &list);
        if (r < 0)
                return bus_log_parse_error(r);
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                json_object *pair = json_object_array_get_idx(list, i);
                const char *name = json_object_get_string(json_object_array_get_idx(pair, 0));
                json_object *info = json_object_array_get_idx(pair, 1);
                if (b->model ? strcmp(name, b->model) == 0 : json_get_bool(info, "default", false)) {
                        found = pair;
                        break;
                }
        }
        if (!found) {
                if (b->model)
                        fprintf(stderr, "npuctl: no loaded model is named '%s' (see npuctl models)\n", b->model);
                else
                        fprintf(stderr, "npuctl: the daemon has no default model; name one with --model\n");
                return -EREMOTEIO;
        }
        json_object *info = json_object_array_get_idx(found, 1);
        b->model_name = strdup(json_object_get_string(json_object_array_get_idx(found, 0)));
        b->precision = strdup(json_get_string(info, "precision", "?"));
        b->n_ctx = (uint32_t)json_get_u64(info, "n_ctx", 0);
        b->n_vocab = (uint32_t)json_get_u64(info, "n_vocab", 0);
        if (!b->model_name || !b->precision)
                return -ENOMEM;
        if (b->target && strcmp(json_get_string(info, "backend", "cpu"), b->target) != 0) {
                fprintf(stderr, "npuctl: model %s (%s) runs on %s, not %s%s\n", b->model_name, b->precision,
                        json_get_string(info, "backend", "cpu"), b->target,
                        strcmp(b->target, "npu") == 0 ? " (attach a device: npud --target npu, or "
                                                        "systemctl start npud-device@accel0; quantized models only)"
                                                      : " (detach the device: npuctl devices)");
                return -EREMOTEIO;
        }
        if (b->n_vocab <= 3 || b->n_ctx == 0) {
                fprintf(stderr, "npuctl: model %s: the daemon gives no n_vocab/n_ctx\n", b->model_name);
                return -EREMOTEIO;
        }
        return 0;
}

/*
 * npu-bench's synthetic prompt: BOS, then n - 1 ids from a xorshift sequence.
 * Token ids go to the model as they are (no BOS added), so the prompt has
 * exactly n tokens. BOS is 1 in Llama vocabularies; ListModels does not say.
 * Seed 0 gives npu-bench's prompt, another seed another prompt of that length.
 */
static int32_t *synthetic_prompt(uint32_t n_vocab, uint32_t n, uint64_t seed)
{
        int32_t *ids = malloc(sizeof(int32_t) * n);
        uint64_t s = 0x1234567 + seed * 0x9e3779b97f4a7c15ull;
        if (!ids)
                return NULL;
        ids[0] = 1;
        for (uint32_t i = 1; i < n; i++) {
                s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                ids[i] = 3 + (int32_t)(s % (uint64_t)(n_vocab - 3));
        }
        return ids;
}

static int new_call(struct bench *b, sd_bus *bus, const char *text, uint32_t length, uint32_t max_tokens,
                    sd_bus_message **ret)
{
        _cleanup_free_ int32_t *ids = NULL;
        struct gen_options o;
        struct prompt p = {};

        gen_options_init(&o);
        o.temperature = 0;
        o.ignore_eos = true;
        o.max_tokens = max_tokens;
        if (text) {
                p.text = text;
                p.len = strlen(text);
        } else {
                ids = synthetic_prompt(b->n_vocab, length, b->prompt_seed++);
                if (!ids)
                        return -ENOMEM;
                p.ids = ids;
                p.n_ids = length;
                o.add_bos = 0;
        }
        return generate_call_new(bus, b->model_name, &p, &o, ret);
}

static int request_failed(const struct request *req)
{
        if (sd_bus_error_is_set(&req->call_error))
                return bus_log_error(&req->call_error, req->error);
        return req->error < 0 ? req->error : -EIO;
}

/* Run the loop until every request has finished (or, first_token, has a token or finished). */
static int wait_requests(struct bench *b, struct request **reqs, size_t n, bool first_token)
{
        for (;;) {
                bool done = true;
                for (size_t i = 0; i < n; i++)
                        if (!reqs[i]->finished && !(first_token && reqs[i]->t_first))
                                done = false;
                if (done)
                        return 0;
                int r = sd_event_run(b->event, UINT64_MAX);
                if (r < 0)
                        return -EIO;
        }
}

static int start_request(struct bench *b, sd_bus *bus, const struct request_ops *ops, void *userdata,
                         const char *text, uint32_t length, uint32_t max_tokens, struct request **ret)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        _cleanup_(request_freep) struct request *req = NULL;
        int r;

        r = request_new(bus, ops, userdata, false, &req);
        if (r >= 0)
                r = request_watch(req);
        if (r >= 0)
                r = new_call(b, bus, text, length, max_tokens, &call);
        if (r >= 0)
                r = request_send(req, call);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(req);
        return 0;
}

/* ---- --task: the reference's tables */

static void echo_tokens(struct request *req, const uint32_t *ids, const char *const *pieces, size_t n,
                        void *userdata)
{
        for (size_t i = 0; i < n; i++)
                fputs(pieces[i], stdout);
        fflush(stdout);
}

static const struct request_ops echo_ops = { .tokens = echo_tokens };

static int run_table(struct bench *b, sd_bus *bus)
{
        struct reference_row rows[MAX_LENGTHS];
        size_t n = 0;
        bool decode = strcmp(b->task, "decode") == 0;
        bool questions = decode && b->n_lengths == 0;
        size_t count = questions ? REFERENCE_N_QUESTIONS : b->n_lengths;
        const char *backend = NULL;
        _cleanup_free_ char *backend_copy = NULL;
        int r;

        for (size_t i = 0; i < count; i++) {
                _cleanup_(request_freep) struct request *req = NULL;
                const char *text = questions ? reference_questions[i] : NULL;
                uint32_t len = questions ? 0 : b->lengths[i];

                if (!questions && (uint64_t)len + b->new_tokens > b->n_ctx) {
                        fprintf(stderr, "npuctl: skipping prompt of %u tokens: over the context of %u\n", len,
                                b->n_ctx);
                        continue;
                }
                bool echo = questions && !b->json;
                if (echo)
                        printf("****************************************\nprompt: %s\nresponse: %s", text, text);
                r = start_request(b, bus, echo ? &echo_ops : NULL, NULL, text, len, b->new_tokens, &req);
                if (r < 0)
                        return r;
                r = wait_requests(b, &req, 1, false);
                if (r < 0)
                        return r;
                if (echo)
                        printf("\n");
                if (req->error < 0)
                        return request_failed(req);
                request_close(req);
                if (strcmp(req->reason, "error") == 0) {
                        fprintf(stderr, "npuctl: generation failed: %s\n",
                                json_get_string(req->stats, "message", "?"));
                        return -EREMOTEIO;
                }
                json_object *s = req->stats;
                rows[n] = (struct reference_row) {
                        .prompt = (uint32_t)json_get_u64(s, "prompt_tokens", 0),
                        .generated = (uint32_t)json_get_u64(s, "generated_tokens", 0),
                        .total_s = json_get_double(s, "total_ms", 0) / 1000.0,
                        .prefill_ms = json_get_double(s, "prefill_ms", 0),
                        .ms_per_token = json_get_double(s, "ms_per_token", 0),
                        .tokens_per_s = json_get_double(s, "tokens_per_s", 0),
                };
                if (!questions && rows[n].prompt != len)
                        fprintf(stderr, "npuctl: asked for a prompt of %u tokens, the daemon counted %u\n", len,
                                rows[n].prompt);
                if (!backend_copy)
                        backend_copy = strdup(json_get_string(s, "backend", "?"));
                if (b->target && strcmp(json_get_string(s, "backend", "?"), b->target) != 0) {
                        fprintf(stderr, "npuctl: a request ran on %s, not %s only (device faults %" PRIu64
                                        ", cpu fallbacks %" PRIu64 ")\n",
                                json_get_string(s, "backend", "?"), b->target, json_get_u64(s, "device_faults", 0),
                                json_get_u64(s, "cpu_fallbacks", 0));
                        return -EREMOTEIO;
                }
                if (b->json)
                        reference_print_row_json(&rows[n], n + 1);
                n++;
        }
        backend = backend_copy ? backend_copy : "?";
        if (!b->json) {
                reference_print_table(rows, n);
                printf("\nmodel %s (%s) through npud, back end %s, greedy, %u new tokens a prompt\n",
                       b->model_name, b->precision, backend, b->new_tokens);
        }
        return 0;
}

/* ---- --clients: concurrency */

struct concurrency_row {
        uint32_t clients, failed;
        uint64_t generated;
        double wall_s, aggregate_tps, ms_per_token_mean, ms_per_token_max, ttft_mean_ms;
        double decode_tps; /* while every client decodes: after the last first token, before the first last one */
};

/* When each token of one client arrived. */
struct arrivals {
        uint64_t *t;
        size_t n, cap;
};

static void arrivals_done(struct arrivals *a)
{
        free(a->t);
        *a = (struct arrivals) {};
}

static void record_arrivals(struct request *req, const uint32_t *ids, const char *const *pieces, size_t n,
                            void *userdata)
{
        struct arrivals *a = userdata;
        uint64_t now = now_ns();

        if (a->n + n > a->cap) {
                size_t cap = MAX(a->cap * 2, a->n + n + 64);
                uint64_t *t = realloc(a->t, cap * sizeof(*t));
                if (!t)
                        return; /* the figure is then computed from fewer tokens */
                a->t = t;
                a->cap = cap;
        }
        for (size_t i = 0; i < n; i++)
                a->t[a->n++] = now;
}

static const struct request_ops arrival_ops = { .tokens = record_arrivals };

/*
 * Tokens per second of all clients together over the span in which all of
 * them decode: prefills of the others no longer in it, nobody finished yet.
 */
static double steady_decode_tps(const struct arrivals *a, uint32_t n)
{
        uint64_t from = 0, to = UINT64_MAX, tokens = 0;

        for (uint32_t i = 0; i < n; i++) {
                if (a[i].n < 2)
                        return 0;
                from = MAX(from, a[i].t[0]);
                to = MIN(to, a[i].t[a[i].n - 1]);
        }
        if (to <= from)
                return 0;
        for (uint32_t i = 0; i < n; i++)
                for (size_t k = 0; k < a[i].n; k++)
                        tokens += a[i].t[k] > from && a[i].t[k] <= to;
        return (double)tokens / ((double)(to - from) / 1e9);
}

static void print_concurrency(const struct bench *b, const struct concurrency_row *rows, size_t n)
{
        const struct concurrency_row *base = &rows[0];
        for (size_t i = 0; i < n; i++)
                if (rows[i].clients == 1)
                        base = &rows[i];
        printf("| %7s | %16s | %13s | %20s | %11s | %26s | %19s | %14s | %23s | %11s |\n", "Clients",
               "Generated Tokens", "Wall Time (s)", "Aggregate Tokens/Sec", "vs 1 Client", "Time/Token per Client (ms)",
               "Max Time/Token (ms)", "Mean TTFT (ms)", "All Decoding Tokens/Sec", "vs 1 Client");
        printf("|---------|------------------|---------------|----------------------|-------------|"
               "----------------------------|---------------------|----------------|-------------------------|"
               "-------------|\n");
        for (size_t i = 0; i < n; i++) {
                const struct concurrency_row *c = &rows[i];
                printf("| %7u | %16" PRIu64 " | %13.3f | %20.2f | %10.2fx | %26.3f | %19.3f | %14.2f | %23.2f | %10.2fx |",
                       c->clients, c->generated, c->wall_s, c->aggregate_tps,
                       base->aggregate_tps > 0 ? c->aggregate_tps / base->aggregate_tps : 0, c->ms_per_token_mean,
                       c->ms_per_token_max, c->ttft_mean_ms, c->decode_tps,
                       base->decode_tps > 0 ? c->decode_tps / base->decode_tps : 0);
                if (c->failed)
                        printf(" %u failed", c->failed);
                printf("\n");
        }
        if (base->clients != 1)
                printf("(the last column compares with %u clients: 1 was not in the list)\n", base->clients);
}

static int run_clients(struct bench *b, sd_bus **buses, uint32_t n, uint32_t length,
                       struct concurrency_row *row)
{
        struct request *reqs[MAX_CLIENTS] = {};
        struct arrivals arrived[MAX_CLIENTS] = {};
        uint64_t t0 = UINT64_MAX, t1 = 0;
        uint32_t ok = 0;
        int r = 0;

        *row = (struct concurrency_row) { .clients = n };
        for (uint32_t i = 0; i < n && r >= 0; i++)
                r = start_request(b, buses[i], &arrival_ops, &arrived[i], NULL, length, b->new_tokens, &reqs[i]);
        if (r >= 0)
                r = wait_requests(b, reqs, n, false);
        for (uint32_t i = 0; r >= 0 && i < n; i++) {
                struct request *q = reqs[i];
                if (q->error < 0 || strcmp(q->reason, "error") == 0) {
                        if (q->error < 0)
                                request_failed(q);
                        else
                                fprintf(stderr, "npuctl: client %u: %s\n", i + 1,
                                        json_get_string(q->stats, "message", "?"));
                        row->failed++;
                        continue;
                }
                double mst = json_get_double(q->stats, "ms_per_token", 0);
                t0 = MIN(t0, q->t_send);
                t1 = MAX(t1, q->t_end);
                row->generated += json_get_u64(q->stats, "generated_tokens", 0);
                row->ms_per_token_mean += mst;
                row->ms_per_token_max = MAX(row->ms_per_token_max, mst);
                row->ttft_mean_ms += q->t_first ? (double)(q->t_first - q->t_send) / 1e6 : 0;
                ok++;
        }
        if (r >= 0 && ok == n)
                row->decode_tps = steady_decode_tps(arrived, n);
        for (uint32_t i = 0; i < n; i++) {
                if (reqs[i])
                        request_close(reqs[i]);
                request_free(reqs[i]);
                arrivals_done(&arrived[i]);
        }
        if (r < 0)
                return r;
        if (ok) {
                row->wall_s = (double)(t1 - t0) / 1e9;
                row->aggregate_tps = row->wall_s > 0 ? row->generated / row->wall_s : 0;
                row->ms_per_token_mean /= ok;
                row->ttft_mean_ms /= ok;
        }
        return 0;
}

static void print_ttft(const struct bench *b, uint32_t others, uint32_t length, double idle_ms,
                       const struct request *probe, uint32_t still_decoding)
{
        double ttft = (double)(probe->t_first - probe->t_send) / 1e6;
        double prefill = json_get_double(probe->stats, "prefill_ms", 0), queue = json_get_double(probe->stats,
                                                                                                   "queue_ms", 0);
        if (b->json) {
                _cleanup_(json_object_putp) json_object *o = json_object_new_object();
                if (!o)
                        return;
                json_object_object_add(o, "ttft", json_object_new_boolean(1));
                json_object_object_add(o, "prompt_tokens", json_object_new_int64(length));
                json_object_object_add(o, "idle_ttft_ms", json_object_new_double(idle_ms));
                json_object_object_add(o, "others", json_object_new_int64(others));
                json_object_object_add(o, "others_decoding", json_object_new_int64(still_decoding));
                json_object_object_add(o, "loaded_ttft_ms", json_object_new_double(ttft));
                json_object_object_add(o, "loaded_queue_ms", json_object_new_double(queue));
                json_object_object_add(o, "loaded_prefill_ms", json_object_new_double(prefill));
                json_print(o);
                return;
        }
        printf("\ntime to first token, prompt of %u tokens:\n", length);
        printf("  alone:                        %9.2f ms\n", idle_ms);
        printf("  while %2u other clients decode: %9.2f ms (queued %.2f ms, prefill %.2f ms; %.2fx alone)\n", others,
               ttft, queue, prefill, idle_ms > 0 ? ttft / idle_ms : 0);
        if (still_decoding < others)
                printf("  (only %u of the %u were still decoding when its first token came)\n", still_decoding,
                       others);
}

static int measure_ttft(struct bench *b, sd_bus **buses, uint32_t others, uint32_t length)
{
        struct request *bg[MAX_CLIENTS] = {};
        _cleanup_(request_freep) struct request *idle = NULL, *probe = NULL;
        uint32_t long_tokens = b->n_ctx - length, still = 0;
        double idle_ms;
        int r;

        /* alone first: the same prompt length on an idle daemon */
        r = start_request(b, buses[others], NULL, NULL, NULL, length, 1, &idle);
        if (r >= 0)
                r = wait_requests(b, &idle, 1, false);
        if (r < 0)
                return r;
        if (idle->error < 0 || !idle->t_first)
                return idle->error < 0 ? request_failed(idle) : -EREMOTEIO;
        idle_ms = (double)(idle->t_first - idle->t_send) / 1e6;
        request_close(idle);

        /* the others decode for as long as the context lets them */
        for (uint32_t i = 0; i < others && r >= 0; i++)
                r = start_request(b, buses[i], NULL, NULL, NULL, length, long_tokens, &bg[i]);
        if (r >= 0)
                r = wait_requests(b, bg, others, true);
        if (r >= 0)
                r = start_request(b, buses[others], NULL, NULL, NULL, length, 1, &probe);
        if (r >= 0)
                r = wait_requests(b, &probe, 1, false);
        for (uint32_t i = 0; r >= 0 && i < others; i++) {
                if (!bg[i]->finished || bg[i]->t_end > probe->t_first)
                        still++;
                request_cancel(bg[i]);
        }
        if (r >= 0)
                r = wait_requests(b, bg, others, false);
        for (uint32_t i = 0; i < others; i++) {
                if (bg[i])
                        request_close(bg[i]);
                request_free(bg[i]);
        }
        if (r < 0)
                return r;
        if (probe->error < 0 || !probe->t_first)
                return probe->error < 0 ? request_failed(probe) : -EREMOTEIO;
        request_close(probe);
        print_ttft(b, others, length, idle_ms, probe, still);
        return 0;
}

static int run_concurrency(struct bench *b, sd_bus *first)
{
        sd_bus *buses[MAX_CLIENTS + 1] = { first };
        struct concurrency_row rows[16];
        uint32_t most = 0, length = b->n_lengths ? b->lengths[0] : 32;
        int r = 0;

        for (size_t i = 0; i < b->n_clients; i++)
                most = MAX(most, b->clients[i]);
        if ((uint64_t)length + b->new_tokens > b->n_ctx)
                return log_usage("bench: a prompt of %u tokens and %u new tokens do not fit the context of %u", length,
                                 b->new_tokens, b->n_ctx);
        for (uint32_t i = 1; i < MAX(most, 2u); i++) {
                r = bus_open(b->c->bus, &buses[i]);
                if (r >= 0)
                        r = sd_bus_attach_event(buses[i], b->event, SD_EVENT_PRIORITY_NORMAL) < 0 ? -EIO : 0;
                if (r < 0)
                        goto out;
        }
        if (!b->json)
                printf("model %s (%s) through npud: %u-token prompts, %u new tokens each, greedy, past end-of-text\n\n",
                       b->model_name, b->precision, length, b->new_tokens);
        /* untimed: the daemon's first touch of its KV memory and caches is not what is measured */
        r = run_clients(b, buses, most, length, &rows[0]);
        if (r < 0)
                goto out;
        for (size_t i = 0; i < b->n_clients; i++) {
                r = run_clients(b, buses, b->clients[i], length, &rows[i]);
                if (r < 0)
                        goto out;
                if (b->json) {
                        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
                        if (!o) {
                                r = -ENOMEM;
                                goto out;
                        }
                        json_object_object_add(o, "clients", json_object_new_int64(rows[i].clients));
                        json_object_object_add(o, "failed", json_object_new_int64(rows[i].failed));
                        json_object_object_add(o, "generated_tokens", json_object_new_int64((int64_t)rows[i].generated));
                        json_object_object_add(o, "wall_s", json_object_new_double(rows[i].wall_s));
                        json_object_object_add(o, "aggregate_tokens_per_s", json_object_new_double(rows[i].aggregate_tps));
                        json_object_object_add(o, "ms_per_token_mean", json_object_new_double(rows[i].ms_per_token_mean));
                        json_object_object_add(o, "ms_per_token_max", json_object_new_double(rows[i].ms_per_token_max));
                        json_object_object_add(o, "ttft_mean_ms", json_object_new_double(rows[i].ttft_mean_ms));
                        json_object_object_add(o, "all_decoding_tokens_per_s", json_object_new_double(rows[i].decode_tps));
                        json_print(o);
                }
        }
        if (!b->json)
                print_concurrency(b, rows, b->n_clients);
        if (most >= 2)
                r = measure_ttft(b, buses, most - 1, length);
out:
        for (uint32_t i = 1; i < MAX_CLIENTS + 1; i++)
                sd_bus_flush_close_unref(buses[i]);
        return r;
}

/* ---- arguments */

static int parse_args(int argc, char **argv, struct bench *b)
{
        static const struct option opts[] = {
                { "task", required_argument, NULL, 'T' },
                { "clients", required_argument, NULL, 'C' },
                { "prompt-lengths", required_argument, NULL, 'L' },
                { "new-tokens", required_argument, NULL, 'N' },
                { "model", required_argument, NULL, 'm' },
                { "json", no_argument, NULL, 'J' },
                { "target", required_argument, NULL, 'G' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int o, r;

        optind = 0;
        while ((o = getopt_long(argc, argv, "m:h", opts, NULL)) >= 0) {
                r = 0;
                switch (o) {
                case 'T': b->task = optarg; break;
                case 'C':
                        r = parse_u32_list(optarg, 1, MAX_CLIENTS, "--clients", b->clients, ARRAY_SIZE(b->clients),
                                           &b->n_clients);
                        break;
                case 'L':
                        r = parse_u32_list(optarg, 1, 1 << 20, "--prompt-lengths", b->lengths, MAX_LENGTHS,
                                           &b->n_lengths);
                        break;
                case 'N': r = parse_u32(optarg, 1, 1 << 20, "--new-tokens", &b->new_tokens); break;
                case 'm': b->model = optarg; break;
                case 'J': b->json = true; break;
                case 'G':
                        if (strcmp(optarg, "cpu") != 0 && strcmp(optarg, "npu") != 0)
                                return log_usage("--target: '%s' is not cpu or npu", optarg);
                        b->target = optarg;
                        break;
                case 'h': usage(stdout); return 1;
                default: usage(stderr); return -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        if (optind < argc)
                return log_usage("bench: unexpected argument '%s'", argv[optind]);
        if (!!b->task == !!b->n_clients)
                return log_usage("bench: give either --task or --clients (see npuctl bench --help)");
        if (b->model && (!*b->model || !utf8_valid_string(b->model, strlen(b->model))))
                return log_usage("--model: empty or not valid UTF-8");
        if (b->task) {
                if (reference_task_lengths(b->task) && b->n_lengths == 0)
                        r = parse_u32_list(reference_task_lengths(b->task), 1, 1 << 20, "", b->lengths, MAX_LENGTHS,
                                           &b->n_lengths);
                else if (strcmp(b->task, "decode") && strcmp(b->task, "benchmark") &&
                         strcmp(b->task, "benchmark_long"))
                        return log_usage("--task: '%s' is not decode, benchmark or benchmark_long", b->task);
                if (r < 0)
                        return r;
        }
        if (!b->new_tokens)
                b->new_tokens = b->task && strcmp(b->task, "decode") == 0 ? 30 : 60;
        return 0;
}

int verb_bench(const struct npuctl *c, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        struct bench b = { .c = c };
        int r;

        r = parse_args(argc, argv, &b);
        if (r != 0)
                return r < 0 ? r : 0;
        r = bus_open_on_event(c->bus, &bus, &event);
        if (r < 0)
                return r;
        b.event = event;
        r = model_info(&b, bus);
        if (r >= 0)
                r = b.task ? run_table(&b, bus) : run_concurrency(&b, bus);
        free(b.model_name);
        free(b.precision);
        return r;
}
