/* SPDX-License-Identifier: MIT */
/*
 * npu-kbench: one block-quantized matmul kernel alone, one token (or the M
 * tokens of --tokens, a batched decode step), the way a decode step runs it
 * (rows in chunks of 64, shared by the pool's threads), against the read
 * bandwidth measured between its runs:
 *   npu-kbench --type q4_k|q6_k|q4_0|q4_1|q5_0|q5_1|q5_k|q8_0|w4a8|w8a8|w8a16|f16 --rows N --cols K
 *              [--threads T] [--bytes B] [--reps R] [--tokens M] [--cache]
 * (w8a8 and w8a16: npud's own int8 rows with a scale each, gemm_int8.h;
 * f16: rows as the output head's, by the float activations.)
 * The weights are copies of one N x K matrix filling B bytes (default 1e9:
 * from memory; a small B runs from cache). Prints the best of R runs in
 * GB/s of weights, the best read bandwidth and their ratio; then R more
 * runs, each paired with a probe sample taken right after it, and the
 * median and best of their ratios (paired_runs). With --cache, one copy
 * only, run back to back from the cache it fits (cache_runs), and no
 * probe. Only figures: wrap it in `flock` on a shared machine.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cli.h"
#include "fp16.h"
#include "gemm_int8.h"
#include "kernels.h"
#include "kernels_quant.h"
#include "median.h"
#include "membw.h"
#include "quant_interleave.h"
#include "quantize_blocks.h"
#include "threadpool.h"

#define KBENCH_CHUNK 64 /* rows per call, as the cpu back end's matmul chunks */

struct kbench_job {
        const struct npu_weight *w;
        int n_w;
        const struct act_blocks *a;
        const struct act_q *aq; /* the int8 rows' activations */
        const float *x;         /* the F16 rows' activations, as they are */
        int64_t n_tok;          /* tokens of activations (a batch's decode step) */
        float *y;
};

static void kbench_worker(void *arg, int ith, int nth)
{
        const struct kbench_job *j = arg;

        for (int m = 0; m < j->n_w; m++) {
                int64_t r0, r1;
                threadpool_split(j->w[m].rows, ith, nth, KBENCH_CHUNK, &r0, &r1);
                for (int64_t r = r0; r < r1; r += KBENCH_CHUNK)
                        if (j->aq)
                                matmul_int8_rows(&j->w[m], j->aq, j->n_tok, j->y, j->w[m].rows, r,
                                                 MIN(r + KBENCH_CHUNK, r1));
                        else if (j->x)
                                matmul_float_rows(&j->w[m], j->x, j->n_tok, j->w[m].cols, j->y, j->w[m].rows, r,
                                                  MIN(r + KBENCH_CHUNK, r1));
                        else
                                matmul_quant_rows(&j->w[m], j->a, j->n_tok, j->y, j->w[m].rows, r,
                                                  MIN(r + KBENCH_CHUNK, r1));
        }
}

/* Seconds that inner runs back to back take. */
static double back_to_back(struct threadpool *tp, struct kbench_job *j, int inner)
{
        const double t0 = now_ms();
        for (int k = 0; k < inner; k++)
                threadpool_run(tp, kbench_worker, j);
        return (now_ms() - t0) / 1000.0;
}

/* One timed run of the kernel over all the copies, in bytes of weights per second. */
static double timed_run(struct threadpool *tp, struct kbench_job *j, size_t all)
{
        const double s = back_to_back(tp, j, 1);
        return s > 0 ? (double)all / s : 0;
}

/*
 * --cache: runs of one matrix back to back (sized by the caller to fit the
 * cache meant), each timed run long enough to time (about 20 ms of them);
 * the median of reps such runs. The kernel's own speed where memory does
 * not bound it: steady within a few percent where the figures from memory
 * move by a fifth from minute to minute on a shared host.
 */
static void cache_runs(struct threadpool *tp, struct kbench_job *j, size_t all, int reps)
{
        _cleanup_free_ double *rate = calloc(reps, sizeof(double));
        double best = 0;
        int inner = 1;

        if (!rate) {
                printf("from cache: not run (out of memory)\n");
                return;
        }
        /* as many runs as take 20 ms */
        while (inner < (1 << 20) && back_to_back(tp, j, inner) < 0.02)
                inner *= 2;
        for (int i = 0; i < reps; i++) {
                const double sec = back_to_back(tp, j, inner);
                rate[i] = sec > 0 ? (double)all * inner / sec : 0;
                best = MAX(best, rate[i]);
        }
        printf("from cache (%d timed runs of %d back to back): median %.2f GB/s, best %.2f GB/s\n", reps, inner,
               median_of(rate, reps) / 1e9, best / 1e9);
}

/*
 * reps runs of the kernel, each timed and then followed by one probe
 * sample (a run of each read pattern, the clock stopped): each run against
 * the read the machine gives at that moment, where the best-of figure
 * compares the best moments of each. Prints the ratio's median and best.
 */
static int paired_runs(struct threadpool *tp, struct kbench_job *j, const void *data, size_t all, int reps)
{
        _cleanup_(bw_probe_freep) struct bw_probe *p = NULL;
        _cleanup_free_ double *run = calloc(reps, sizeof(double));
        _cleanup_free_ double *probe = calloc(reps, sizeof(double));
        _cleanup_free_ double *ratio = calloc(reps, sizeof(double));
        double best = 0;
        int r;

        if (!run || !probe || !ratio)
                return -ENOMEM;
        r = bw_probe_new(tp, data, all, &p);
        if (r < 0)
                return r;
        for (int i = 0; i < reps; i++) {
                const char *how;
                run[i] = timed_run(tp, j, all);
                probe[i] = bw_probe_sample(p, &how);
                ratio[i] = probe[i] > 0 ? run[i] / probe[i] : 0;
                best = MAX(best, ratio[i]);
        }
        printf("paired with the probe (%d runs, a probe sample after each): run / probe median %.0f%%, best %.0f%%; "
               "median run %.2f GB/s, median probe %.2f GB/s\n",
               reps, 100 * median_of(ratio, reps), 100 * best, median_of(run, reps) / 1e9, median_of(probe, reps) / 1e9);
        return 0;
}

static int parse_type(const char *s, enum ggml_type *t, enum act_scheme *sc, enum npu_precision *p)
{
        static const enum ggml_type types[] = { GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                                                GGML_TYPE_Q8_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K,
                                                GGML_TYPE_Q5_K, GGML_TYPE_Q6_K };

        *p = NPU_PRECISION_FLOAT;
        if (strcmp(s, "w4a8") == 0) {
                *t = GGML_TYPE_Q4_0;
                *sc = ACT_SCHEME_TOKEN_I8;
                return 0;
        }
        if (strcmp(s, "f16") == 0) {
                *t = GGML_TYPE_F16;
                *sc = ACT_SCHEME_NONE;
                return 0;
        }
        if (strcmp(s, "w8a8") == 0 || strcmp(s, "w8a16") == 0) {
                *t = GGML_TYPE_I8;
                *sc = ACT_SCHEME_NONE;
                *p = strcmp(s, "w8a8") == 0 ? NPU_PRECISION_W8A8 : NPU_PRECISION_W8A16;
                return 0;
        }
        for (size_t i = 0; i < ARRAY_SIZE(types); i++)
                if (strcasecmp(s, ggml_type_name(types[i])) == 0) {
                        *t = types[i];
                        *sc = quant_type_act_scheme(types[i]);
                        return 0;
                }
        return cli_error(-EINVAL,
                         "--type: '%s' is not a block type (q4_0 .. q8_0, q2_k .. q6_k), w4a8, w8a8, w8a16 or f16",
                         s);
}

/*
 * Rows of small random values quantized to t (I8: per row, with scale and
 * row_sums, packed as gemm_int8.h; F16: rounded; the types of
 * quant_interleave.h interleaved where the model's load would, *interleave
 * set), the first matrix, copied to fill the others.
 * Returns 0 or -ENOMEM.
 */
static int fill_weights(enum ggml_type t, int64_t N, int64_t K, uint8_t *data, int n_w, float *scale,
                        int32_t *row_sums, int *interleave)
{
        const size_t rb = quant_row_bytes(t, K);
        _cleanup_free_ float *row = malloc(sizeof(float) * K);
        uint64_t s = 1, clamped = 0;

        if (!row)
                return -ENOMEM;

        for (int64_t r = 0; r < N; r++) {
                for (int64_t k = 0; k < K; k++) {
                        s = s * 6364136223846793005ull + 1442695040888963407ull;
                        row[k] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 23) * 0.05f;
                }
                if (t == GGML_TYPE_I8)
                        quantize_weight_rows(row, 1, K, (int8_t *)data + r * rb, scale + r);
                else if (t == GGML_TYPE_F16)
                        for (int64_t k = 0; k < K; k++)
                                ((npu_f16 *)(data + r * rb))[k] = f32_to_f16(row[k]);
                else
                        quantize_row_blocks(t, row, K, data + r * rb);
        }
        if (t == GGML_TYPE_I8) {
                int r = gemm_i8_pack((int8_t *)data, (const int8_t *)data, N, K, row_sums, &clamped);
                if (r < 0)
                        return r;
        }
        /* as the model's load lays them out */
        struct npu_weight w = { .type = t, .rows = N, .cols = K, .data = data, .row_bytes = rb };
        if (quant_interleave_wanted(&w)) {
                int r = quant_interleave_weight(&w);
                if (r < 0)
                        return r;
                *interleave = w.interleave;
        }
        for (int m = 1; m < n_w; m++)
                memcpy(data + m * rb * N, data, rb * N);
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "type", required_argument, NULL, 'T' },   { "rows", required_argument, NULL, 'n' },
                { "cols", required_argument, NULL, 'k' },   { "threads", required_argument, NULL, 't' },
                { "bytes", required_argument, NULL, 'b' },  { "reps", required_argument, NULL, 'r' },
                { "tokens", required_argument, NULL, 'm' }, { "cache", no_argument, NULL, 'c' },
                { "help", no_argument, NULL, 'h' },         {}
        };
        enum ggml_type type = GGML_TYPE_Q4_K;
        enum act_scheme sc = ACT_SCHEME_Q8_K;
        enum npu_precision prec = NPU_PRECISION_FLOAT;
        int32_t N = 5632, K = 2048, M = 1;
        int threads = 2, reps = 7;
        uint64_t bytes = 1000000000;
        bool cache = false;
        int c;

        while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) >= 0) {
                int r = 0;
                switch (c) {
                case 'T': r = parse_type(optarg, &type, &sc, &prec); break;
                case 'n': r = cli_parse_i32(optarg, 1, 1 << 20, "--rows", &N); break;
                case 'k': r = cli_parse_i32(optarg, 256, 1 << 20, "--cols", &K); break;
                case 't': r = cli_parse_int(optarg, 1, 1024, "--threads", &threads); break;
                case 'b': r = cli_parse_u64(optarg, "--bytes", &bytes); break;
                case 'r': r = cli_parse_int(optarg, 1, 100000, "--reps", &reps); break;
                case 'm': r = cli_parse_i32(optarg, 1, 64, "--tokens", &M); break;
                case 'c': cache = true; break;
                case 'h':
                        printf("Usage: npu-kbench --type q4_k|q6_k|q4_0|...|w4a8|w8a8|w8a16|f16 --rows N --cols K "
                               "[--threads T] [--bytes B] [--reps R] [--tokens M] [--cache]\n");
                        return EXIT_SUCCESS;
                default: return EXIT_FAILURE;
                }
                if (r < 0)
                        return EXIT_FAILURE;
        }
        if (K % (int32_t)ggml_type_block_elems(type))
                return cli_error(-EINVAL, "--cols %d is not a multiple of %s's block", K, ggml_type_name(type)),
                       EXIT_FAILURE;

        const size_t rb = quant_row_bytes(type, K), mb = rb * (size_t)N;
        const int n_w = cache ? 1 : (int)MAX(bytes / mb, 1);
        const size_t all = mb * (size_t)n_w;
        uint8_t *data = mmap(NULL, all, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (data == MAP_FAILED)
                return cli_error(-errno, "cannot map %zu bytes of weights: %m", all), EXIT_FAILURE;
        (void)madvise(data, all, MADV_HUGEPAGE); /* as model weights are mapped */
        const bool i8 = type == GGML_TYPE_I8, f16 = type == GGML_TYPE_F16;
        float *scale = calloc(N, sizeof(float));
        int32_t *row_sums = calloc(N, sizeof(int32_t));
        int interleave = 0;
        if (!scale || !row_sums || fill_weights(type, N, K, data, n_w, scale, row_sums, &interleave) < 0)
                return cli_error(-ENOMEM, "out of memory"), EXIT_FAILURE;

        struct npu_weight *w = calloc(n_w, sizeof(*w));
        float *x = malloc(sizeof(float) * M * K), *y = calloc((size_t)M * N, sizeof(float));
        struct act_blocks a = {};
        struct act_q aq = {};
        _cleanup_(threadpool_freep) struct threadpool *tp = NULL;
        if (!w || !x || !y || (i8 ? act_q_alloc(&aq, M, K) : f16 ? 0 : act_blocks_alloc(&a, sc, M, K)) < 0 ||
            threadpool_new(threads, &tp) < 0)
                return cli_error(-ENOMEM, "out of memory"), EXIT_FAILURE;
        for (int m = 0; m < n_w; m++)
                w[m] = (struct npu_weight){ .type = type, .rows = N, .cols = K, .data = data + m * mb, .row_bytes = rb,
                                            .scale = i8 ? scale : NULL, .row_sums = i8 ? row_sums : NULL,
                                            .interleave = interleave };
        for (int64_t k = 0; k < (int64_t)M * K; k++)
                x[k] = (float)(k % 7) * 0.1f - 0.3f + (float)(k / K) * 0.01f;
        if (i8)
                act_quantize_rows(&aq, prec, x, K, 0, M);
        else if (!f16)
                act_blocks_quantize(&a, x, K, 0, M);

        struct kbench_job j = { .w = w, .n_w = n_w, .a = &a, .aq = i8 ? &aq : NULL, .x = f16 ? x : NULL, .n_tok = M,
                                .y = y };
        const char *name = i8 ? precision_name(prec) : sc == ACT_SCHEME_TOKEN_I8 ? "w4a8" : ggml_type_name(type);
        threadpool_run(tp, kbench_worker, &j); /* warm-up */
        if (cache) {
                printf("%s %dx%d (%.2f MB), %d threads, kernels %s: ", name, N, K, mb / 1e6, threads,
                       kernels_isa_name(kernels_isa()));
                cache_runs(tp, &j, all, reps);
        } else {
                double best = 0, bw = 0;
                const char *how = NULL;
                for (int i = 0; i < reps; i++) {
                        best = MAX(best, timed_run(tp, &j, all));
                        /* the bandwidth between the kernel's runs, as the machine is now (every other run) */
                        if (i % 2 == 0)
                                bw = MAX(bw, measure_read_bandwidth(tp, data, all, &how));
                }
                printf("%s %dx%d, %d copies (%.2f GB), %d threads, kernels %s: %.2f GB/s; read bandwidth %.2f GB/s "
                       "(%.0f%% of it)\n",
                       name, N, K, n_w, all / 1e9, threads, kernels_isa_name(kernels_isa()), best / 1e9, bw / 1e9,
                       bw > 0 ? 100 * best / bw : 0);
                if (M > 1)
                        printf("%d tokens a run: %.0f G ops/s at the best run (a multiply-add is 2)\n", M,
                               2.0 * best / (double)mb * (double)N * (double)K * M / 1e9);
                const int r = paired_runs(tp, &j, data, all, reps);
                if (r < 0)
                        printf("paired with the probe: not run (%s)\n",
                               r == -EOPNOTSUPP ? "no AVX2" : strerror(-r));
        }
        if (i8)
                act_q_free(&aq);
        else
                act_blocks_free(&a);
        free(scale);
        free(row_sums);
        free(w);
        free(x);
        free(y);
        munmap(data, all);
        return EXIT_SUCCESS;
}
