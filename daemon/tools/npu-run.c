/* SPDX-License-Identifier: MIT */
/*
 * npu-run: the offline runner over the engine, without the daemon.
 *   npu-run -m MODEL -p PROMPT -n N [--temp T --top-k K --top-p P --seed S] [--threads N] [--target cpu|npu]
 *   npu-run -m MODEL --tokenize TEXT [--special]
 *   npu-run -m MODEL --perplexity FILE
 *   npu-run -m MODEL --kl-divergence-base FILE   (llama-perplexity's logits of the same text)
 *   npu-run -m MODEL --save-logits FILE --perplexity TEXT [-c N]   (the same kind of file, from npud)
 */
#include <getopt.h>
#include <math.h>

#include "cli.h"
#include "kld.h"
#include "runtime.h"

struct run_args {
        struct runtime_opts rt;
        struct sampler_params sp;
        const char *prompt;
        const char *tokenize;
        const char *perplexity;
        const char *kld_base;
        const char *save_logits;
        int32_t n_predict;
        int32_t detach_after;
        bool ignore_eos;
        bool no_prompt;
        bool special;
};

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: npu-run -m MODEL [-p PROMPT] [-n N] [options]\n"
                "       npu-run -m MODEL --tokenize TEXT [--special]\n"
                "       npu-run -m MODEL --perplexity FILE\n\n"
                "  -m, --model PATH           GGUF model (a vocab-only GGUF or tokenizer.model for --tokenize)\n"
                "  -p, --prompt TEXT          prompt (default: \"Once upon a time\")\n"
                "  -n, --n-predict N          tokens to generate (default 64)\n"
                "      --temp T               temperature, 0 = greedy (default 0.8)\n"
                "      --top-k K              (default 40, 0 = off)\n"
                "      --top-p P              (default 0.95, 1 = off)\n"
                "      --repeat-penalty R     (default 1.0 = off)\n"
                "      --seed S               random seed\n"
                "  -t, --threads N            worker threads (default: all cores)\n"
                "  -c, --ctx-size N           context length (default: the model's, at most 4096)\n"
                "  -b, --batch-size N         prompt tokens per forward pass (default 256)\n"
                "      --kv-type f16|f32|q8   KV cache element type (default f16; q8: int8, a scale per head)\n"
                "      --flash-attention-plus tiled attention with online softmax\n"
                "      --attention-f16-operands\n"
                "                             over an f16 KV cache, round the query and the softmax\n"
                "                             weights to f16 as llama.cpp does (to compare with it)\n"
                "      --target cpu|npu       where the forward passes run (default cpu); npu: the npu.ko\n"
                "                             device (w8a8/w8a16 models), with the cpu as fallback\n"
                "      --device PATH          npu: the accel node (default: the first one of npu.ko)\n"
                "      --npu-retries N        npu: fresh device contexts a faulted pass tries before the\n"
                "                             cpu runs it (default 1)\n"
                "      --detach-after N       npu: move to the cpu after N generated tokens, keeping the\n"
                "                             KV cache (what detaching a device does)\n"
                "      --ignore-eos           keep generating past end of sequence\n"
                "      --no-display-prompt    print only the continuation\n"
                "      --tokenize TEXT        print the token ids of TEXT\n"
                "      --special              control tokens written in TEXT or PROMPT (<|eot_id|>, <s>)\n"
                "                             become those tokens, and generated ones print as their\n"
                "                             text; without it they stay text and print as nothing\n"
                "      --perplexity FILE      print the perplexity of the text in FILE\n"
                "      --kl-divergence-base FILE\n"
                "                             compare with the logits llama.cpp's llama-perplexity\n"
                "                             --kl-divergence-base wrote: same top token, perplexity\n"
                "                             of both, KL divergence\n"
                "      --save-logits FILE     with --perplexity TEXT: write such a file from this model\n"
                "                             (chunks of -c tokens, default 128), and print the perplexity\n"
                "                             llama-perplexity's way (the second half of each chunk)\n");
}

enum {
        ARG_TEMP = 0x100,
        ARG_TOP_K,
        ARG_TOP_P,
        ARG_REPEAT_PENALTY,
        ARG_SEED,
        ARG_KV_TYPE,
        ARG_FLASH,
        ARG_F16_OPERANDS,
        ARG_IGNORE_EOS,
        ARG_NO_PROMPT,
        ARG_TOKENIZE,
        ARG_PERPLEXITY,
        ARG_KLD_BASE,
        ARG_SAVE_LOGITS,
        ARG_TARGET,
        ARG_DEVICE,
        ARG_NPU_RETRIES,
        ARG_DETACH_AFTER,
        ARG_SPECIAL,
};

static int parse_args(int argc, char **argv, struct run_args *a)
{
        static const struct option opts[] = {
                { "model", required_argument, NULL, 'm' },
                { "prompt", required_argument, NULL, 'p' },
                { "n-predict", required_argument, NULL, 'n' },
                { "threads", required_argument, NULL, 't' },
                { "ctx-size", required_argument, NULL, 'c' },
                { "batch-size", required_argument, NULL, 'b' },
                { "temp", required_argument, NULL, ARG_TEMP },
                { "top-k", required_argument, NULL, ARG_TOP_K },
                { "top-p", required_argument, NULL, ARG_TOP_P },
                { "repeat-penalty", required_argument, NULL, ARG_REPEAT_PENALTY },
                { "seed", required_argument, NULL, ARG_SEED },
                { "kv-type", required_argument, NULL, ARG_KV_TYPE },
                { "flash-attention-plus", no_argument, NULL, ARG_FLASH },
                { "attention-f16-operands", no_argument, NULL, ARG_F16_OPERANDS },
                { "ignore-eos", no_argument, NULL, ARG_IGNORE_EOS },
                { "no-display-prompt", no_argument, NULL, ARG_NO_PROMPT },
                { "tokenize", required_argument, NULL, ARG_TOKENIZE },
                { "special", no_argument, NULL, ARG_SPECIAL },
                { "perplexity", required_argument, NULL, ARG_PERPLEXITY },
                { "kl-divergence-base", required_argument, NULL, ARG_KLD_BASE },
                { "save-logits", required_argument, NULL, ARG_SAVE_LOGITS },
                { "target", required_argument, NULL, ARG_TARGET },
                { "device", required_argument, NULL, ARG_DEVICE },
                { "npu-retries", required_argument, NULL, ARG_NPU_RETRIES },
                { "detach-after", required_argument, NULL, ARG_DETACH_AFTER },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c, r = 0;

        runtime_opts_default(&a->rt);
        sampler_params_default(&a->sp);
        a->prompt = "Once upon a time";
        a->n_predict = 64;
        while ((c = getopt_long(argc, argv, "m:p:n:t:c:b:h", opts, NULL)) >= 0) {
                switch (c) {
                case 'm': a->rt.model_path = optarg; break;
                case 'p': a->prompt = optarg; break;
                case 'n': r = cli_parse_i32(optarg, 1, 1 << 20, "-n", &a->n_predict); break;
                case 't': r = cli_parse_int(optarg, 1, 1024, "--threads", &a->rt.threads); break;
                case 'c': r = cli_parse_i32(optarg, 1, 1 << 20, "--ctx-size", &a->rt.n_ctx); break;
                case 'b': r = cli_parse_i32(optarg, 1, 65536, "--batch-size", &a->rt.max_batch); break;
                case ARG_TEMP: r = cli_parse_float(optarg, "--temp", &a->sp.temperature); break;
                case ARG_TOP_K: r = cli_parse_i32(optarg, 0, INT32_MAX, "--top-k", &a->sp.top_k); break;
                case ARG_TOP_P: r = cli_parse_float(optarg, "--top-p", &a->sp.top_p); break;
                case ARG_REPEAT_PENALTY: r = cli_parse_float(optarg, "--repeat-penalty", &a->sp.repeat_penalty); break;
                case ARG_SEED: r = cli_parse_u64(optarg, "--seed", &a->sp.seed); break;
                case ARG_KV_TYPE: r = cli_parse_kv_type(optarg, &a->rt.kv_type); break;
                case ARG_FLASH: a->rt.attention = ATTENTION_FLASH; break;
                case ARG_F16_OPERANDS: a->rt.attention = ATTENTION_F16_OPERANDS; break;
                case ARG_IGNORE_EOS: a->ignore_eos = true; break;
                case ARG_NO_PROMPT: a->no_prompt = true; break;
                case ARG_TOKENIZE: a->tokenize = optarg; break;
                case ARG_SPECIAL: a->special = true; break;
                case ARG_PERPLEXITY: a->perplexity = optarg; break;
                case ARG_KLD_BASE: a->kld_base = optarg; break;
                case ARG_SAVE_LOGITS: a->save_logits = optarg; break;
                case ARG_TARGET: r = cli_parse_target(optarg, &a->rt.target); break;
                case ARG_DEVICE: a->rt.device = optarg; break;
                case ARG_NPU_RETRIES: r = cli_parse_int(optarg, 0, 100, "--npu-retries", &a->rt.npu_retries); break;
                case ARG_DETACH_AFTER: r = cli_parse_i32(optarg, 1, 1 << 20, "--detach-after", &a->detach_after); break;
                case 'h': usage(stdout); exit(EXIT_SUCCESS);
                default: usage(stderr); return -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        if (optind < argc) {
                fprintf(stderr, "npu-run: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        if (!a->rt.model_path) {
                fprintf(stderr, "npu-run: no model given (-m MODEL)\n");
                return -EINVAL;
        }
        struct npu_err err = {};
        if (sampler_params_validate(&a->sp, &err) < 0) {
                fprintf(stderr, "npu-run: %s\n", err.msg);
                return -EINVAL;
        }
        return 0;
}

static int run_tokenize(const struct run_args *a)
{
        _cleanup_(vocab_freep) struct npu_vocab *v = NULL;
        _cleanup_free_ int32_t *ids = NULL;
        struct npu_err err = {};
        size_t n;
        int r;

        r = cli_load_vocab(a->rt.model_path, &v, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg);
        r = vocab_tokenize(v, a->tokenize, strlen(a->tokenize), true, a->special, &ids, &n);
        if (r < 0)
                return cli_error(r, "tokenizing failed: %s", r == -E2BIG ? "the pre-tokenizer hit its limits" : strerror(-r));
        for (size_t i = 0; i < n; i++)
                printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
        return 0;
}

struct stream {
        const struct npu_vocab *vocab;
        struct runtime *rt;
        int32_t n, detach_after;
        bool special;
        int err;
};

static bool print_token(int32_t token, void *userdata)
{
        struct stream *s = userdata;
        char buf[1100];
        size_t n = s->special ? vocab_token_text(s->vocab, token, buf, sizeof(buf))
                              : vocab_token_bytes(s->vocab, token, buf, sizeof(buf));
        fwrite(buf, 1, n, stdout);
        fflush(stdout);
        /* between two passes: the next one runs on the cpu over the same KV cache */
        if (++s->n == s->detach_after && ctx_target(s->rt->ctx) == BACKEND_TARGET_NPU) {
                struct npu_err err = {};
                s->err = runtime_set_target(s->rt, BACKEND_TARGET_CPU, &err);
                if (s->err < 0) {
                        cli_error(s->err, "detaching the device failed: %s", err.msg);
                        return false;
                }
                fprintf(stderr, "npu-run: device detached after %d tokens; continuing on the cpu\n", s->n);
        }
        return true;
}

static int run_generate(const struct run_args *a)
{
        _cleanup_(runtime_freep) struct runtime *rt = NULL;
        _cleanup_(sampler_freep) struct sampler *smp = NULL;
        _cleanup_free_ int32_t *ids = NULL;
        struct kv_seq seq = {};
        struct gen_stats st;
        struct npu_err err = {};
        size_t n;
        int r;

        r = runtime_open(&a->rt, &rt, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg);
        r = vocab_tokenize(rt->model->vocab, a->prompt, strlen(a->prompt), true, a->special, &ids, &n);
        if (r < 0)
                return cli_error(r, "tokenizing the prompt failed: %s", strerror(-r));
        if (n == 0)
                return cli_error(-EINVAL, "the prompt is empty");
        if ((int64_t)n >= rt->n_ctx)
                return cli_error(-E2BIG, "prompt of %zu tokens does not fit the context of %d", n, rt->n_ctx);
        r = sampler_new(&a->sp, rt->model->hp.n_vocab, &smp);
        if (r < 0)
                return cli_error(r, "out of memory");

        if (!a->no_prompt) {
                fputs(a->prompt, stdout);
                fflush(stdout);
        }
        if (a->rt.target == BACKEND_TARGET_NPU)
                cli_print_backend(stderr, rt);
        struct stream s = { .vocab = rt->model->vocab, .rt = rt, .detach_after = a->detach_after,
                            .special = a->special };
        int32_t n_predict = MIN(a->n_predict, rt->n_ctx - (int32_t)n);
        r = generate(rt->ctx, &seq, smp, ids, (int32_t)n, n_predict, !a->ignore_eos, print_token, &s, &st, &err);
        kv_seq_release(rt->kv, &seq);
        printf("\n");
        if (r < 0)
                return cli_error(r, "generation failed: %s", err.msg);
        if (s.err < 0)
                return s.err;
        cli_print_timings(stderr, &st);
        if (a->rt.target == BACKEND_TARGET_NPU)
                cli_print_backend(stderr, rt);
        return 0;
}

static int run_perplexity(const struct run_args *a)
{
        _cleanup_(runtime_freep) struct runtime *rt = NULL;
        _cleanup_free_ char *text = NULL;
        _cleanup_free_ int32_t *ids = NULL;
        struct npu_err err = {};
        double nll;
        int64_t count;
        size_t n;
        int r;

        r = cli_read_file(a->perplexity, &text, &n);
        if (r < 0)
                return cli_error(r, "cannot read %s: %s", a->perplexity, strerror(-r));
        struct runtime_opts o = a->rt;
        r = runtime_open(&o, &rt, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg);
        r = vocab_tokenize(rt->model->vocab, text, n, false, false, &ids, &n);
        if (r < 0)
                return cli_error(r, "tokenizing failed");
        double t0 = now_ms();
        r = perplexity(rt, ids, (int32_t)n, &nll, &count, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg);
        printf("perplexity: %.4f over %lld tokens\n", exp(nll / count), (long long)count);
        fprintf(stderr, "perplexity: %.1f ms\n", now_ms() - t0);
        if (a->rt.target == BACKEND_TARGET_NPU)
                cli_print_backend(stderr, rt);
        return 0;
}

static int run_save_logits(const struct run_args *a)
{
        _cleanup_free_ char *text = NULL;
        struct npu_err err = {};
        double ppl;
        size_t n;
        int r = cli_read_file(a->perplexity, &text, &n);

        if (r < 0)
                return cli_error(r, "cannot read %s: %s", a->perplexity, strerror(-r));
        r = kld_save(a->save_logits, text, n, a->rt.n_ctx > 0 ? a->rt.n_ctx : 128, &a->rt, &ppl, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg);
        printf("perplexity: %.4f (second half of each chunk); logits in %s\n", ppl, a->save_logits);
        return 0;
}

static int run_kld(const struct run_args *a)
{
        struct kld_result k;
        struct npu_err err = {};
        int r = kld_compare(a->kld_base, &a->rt, &k, &err);

        if (r < 0)
                return cli_error(r, "%s", err.msg);
        const double ppl = exp(k.nll / k.positions), ppl_base = exp(k.nll_base / k.positions);
        printf("base: %d chunks of %d tokens, %lld scored positions\n", k.n_chunk, k.n_ctx, (long long)k.positions);
        printf("top-1 agreement: %.2f %% (%lld of %lld)\n", 100.0 * k.top1_same / k.positions,
               (long long)k.top1_same, (long long)k.positions);
        printf("perplexity: %.4f, base %.4f (%+.3f %%)\n", ppl, ppl_base, 100.0 * (ppl / ppl_base - 1));
        printf("mean KL divergence: %.6f\n", k.kld / k.positions);
        return 0;
}

int main(int argc, char **argv)
{
        struct run_args a = {};
        int r;

        r = parse_args(argc, argv, &a);
        if (r < 0)
                return EXIT_FAILURE;
        if (a.tokenize)
                r = run_tokenize(&a);
        else if (a.perplexity && a.save_logits)
                r = run_save_logits(&a);
        else if (a.perplexity)
                r = run_perplexity(&a);
        else if (a.kld_base)
                r = run_kld(&a);
        else
                r = run_generate(&a);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
