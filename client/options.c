/* SPDX-License-Identifier: MIT */
/*
 * What a request asks for, as D-Bus arguments: the prompt variant (s, ay or
 * ai) and the options dictionary a{sv}. Values are checked against the ranges
 * org.npud.Inference1.xml documents, so a typo is a usage error here rather
 * than a round trip; what only the daemon knows (n_ctx, n_vocab, model names)
 * it checks itself.
 */
#include <math.h>

#include "npuctl.h"

void gen_options_init(struct gen_options *o)
{
        *o = (struct gen_options) {
                .temperature = NAN,
                .top_p = NAN,
                .repeat_penalty = NAN,
                .min_p = NAN,
                .presence_penalty = NAN,
                .frequency_penalty = NAN,
                .keep_alive = NAN,
                .add_bos = -1,
        };
}

int gen_options_parse(struct gen_options *o, int opt, const char *arg)
{
        int r = 0;

        switch (opt) {
        case 'n':
        case ARG_MAX_TOKENS:
                r = parse_u32(arg, 1, INT32_MAX, "--max-tokens", &o->max_tokens);
                break;
        case ARG_TEMP:
                r = parse_double(arg, 0, 100, false, "--temp", &o->temperature);
                break;
        case ARG_TOP_K:
                r = parse_u32(arg, 0, INT32_MAX, "--top-k", &o->top_k);
                o->has_top_k = true;
                break;
        case ARG_TOP_P:
                r = parse_double(arg, 0, 1, true, "--top-p", &o->top_p);
                break;
        case ARG_REPEAT_PENALTY:
                r = parse_double(arg, 0, 100, true, "--repeat-penalty", &o->repeat_penalty);
                break;
        case ARG_MIN_P:
                r = parse_double(arg, 0, 1, false, "--min-p", &o->min_p);
                break;
        case ARG_PRESENCE_PENALTY:
                r = parse_double(arg, -2, 2, false, "--presence-penalty", &o->presence_penalty);
                break;
        case ARG_FREQUENCY_PENALTY:
                r = parse_double(arg, -2, 2, false, "--frequency-penalty", &o->frequency_penalty);
                break;
        case ARG_KEEP_ALIVE:
                r = parse_duration(arg, "--keep-alive", &o->keep_alive);
                break;
        case ARG_SEED:
                r = parse_u64(arg, "--seed", &o->seed);
                o->has_seed = true;
                break;
        case ARG_STOP:
                if (o->n_stop == GEN_MAX_STOP)
                        return log_usage("--stop: at most %d stop strings", GEN_MAX_STOP);
                if (strlen(arg) < 1 || strlen(arg) > 256)
                        return log_usage("--stop: a stop string has 1 to 256 bytes");
                if (!utf8_valid_string(arg, strlen(arg)))
                        return log_usage("--stop: '%s' is not valid UTF-8", arg);
                o->stop[o->n_stop++] = arg;
                break;
        case ARG_PRECISION:
                if (!utf8_valid_string(arg, strlen(arg)))
                        return log_usage("--precision: not valid UTF-8");
                o->precision = arg;
                break;
        case ARG_IGNORE_EOS:
                o->ignore_eos = true;
                break;
        case ARG_NO_BOS:
                o->add_bos = 0;
                break;
        default:
                return 0;
        }
        return r < 0 ? r : 1;
}

static int append_options(sd_bus_message *m, const struct gen_options *o, const char *extra_key,
                          const char *extra_value)
{
        int r;

        if (o->max_tokens && (r = bus_append_entry(m, "max_tokens", 'u', &o->max_tokens)) < 0)
                return r;
        if (!isnan(o->temperature) && (r = bus_append_entry(m, "temperature", 'd', &o->temperature)) < 0)
                return r;
        if (o->has_top_k && (r = bus_append_entry(m, "top_k", 'u', &o->top_k)) < 0)
                return r;
        if (!isnan(o->top_p) && (r = bus_append_entry(m, "top_p", 'd', &o->top_p)) < 0)
                return r;
        if (!isnan(o->repeat_penalty) && (r = bus_append_entry(m, "repeat_penalty", 'd', &o->repeat_penalty)) < 0)
                return r;
        if (!isnan(o->min_p) && (r = bus_append_entry(m, "min_p", 'd', &o->min_p)) < 0)
                return r;
        if (!isnan(o->presence_penalty) && (r = bus_append_entry(m, "presence_penalty", 'd', &o->presence_penalty)) < 0)
                return r;
        if (!isnan(o->frequency_penalty) &&
            (r = bus_append_entry(m, "frequency_penalty", 'd', &o->frequency_penalty)) < 0)
                return r;
        if (!isnan(o->keep_alive) && (r = bus_append_entry(m, "keep_alive", 'd', &o->keep_alive)) < 0)
                return r;
        if (o->has_seed && (r = bus_append_entry(m, "seed", 't', &o->seed)) < 0)
                return r;
        if (o->precision && (r = bus_append_entry(m, "precision", 's', o->precision)) < 0)
                return r;
        if (o->ignore_eos) {
                int yes = 1;
                if ((r = bus_append_entry(m, "ignore_eos", 'b', &yes)) < 0)
                        return r;
        }
        if (o->add_bos >= 0 && (r = bus_append_entry(m, "add_bos", 'b', &o->add_bos)) < 0)
                return r;
        if (extra_key && extra_value && (r = bus_append_entry(m, extra_key, 's', extra_value)) < 0)
                return r;
        if (o->n_stop > 0) {
                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append_basic(m, 's', "stop");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'a', "s");
                for (size_t i = 0; r >= 0 && i < o->n_stop; i++)
                        r = sd_bus_message_append_basic(m, 's', o->stop[i]);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r < 0)
                        return r;
        }
        return 0;
}

int gen_options_append(sd_bus_message *m, const struct gen_options *o, const char *extra_key,
                       const char *extra_value)
{
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = append_options(m, o, extra_key, extra_value);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r < 0 ? bus_log_create_error(r) : 0;
}

int prompt_append(sd_bus_message *m, const struct prompt *p)
{
        int r;

        if (p->ids) {
                r = sd_bus_message_open_container(m, 'v', "ai");
                if (r >= 0)
                        r = sd_bus_message_append_array(m, 'i', p->ids, p->n_ids * sizeof(int32_t));
        } else if (utf8_valid_string(p->text, p->len)) {
                r = sd_bus_message_open_container(m, 'v', "s");
                if (r >= 0)
                        r = sd_bus_message_append_basic(m, 's', p->text);
        } else {
                /* the daemon answers InvalidUTF8: its word, not ours */
                r = sd_bus_message_open_container(m, 'v', "ay");
                if (r >= 0)
                        r = sd_bus_message_append_array(m, 'y', p->text, p->len);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r < 0 ? bus_log_create_error(r) : 0;
}
