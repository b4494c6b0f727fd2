/* SPDX-License-Identifier: MIT */
#include "chat_template.h"

static const char *const format_names[_CHAT_FORMAT_MAX] = {
        [CHAT_FORMAT_RAW] = "raw",
        [CHAT_FORMAT_LLAMA2] = "llama2",
        [CHAT_FORMAT_LLAMA3] = "llama3",
        [CHAT_FORMAT_CHATML] = "chatml",
        [CHAT_FORMAT_MISTRAL_V1] = "mistral-v1",
        [CHAT_FORMAT_MISTRAL_V3] = "mistral-v3",
        [CHAT_FORMAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
        [CHAT_FORMAT_MISTRAL_V7] = "mistral-v7",
        [CHAT_FORMAT_PHI3] = "phi3",
        [CHAT_FORMAT_GEMMA] = "gemma",
        [CHAT_FORMAT_ZEPHYR] = "zephyr",
        [CHAT_FORMAT_DEEPSEEK] = "deepseek",
        [CHAT_FORMAT_DEEPSEEK2] = "deepseek2",
        [CHAT_FORMAT_DEEPSEEK3] = "deepseek3",
};

#define FW_BAR "\xef\xbd\x9c" /* U+FF5C FULLWIDTH VERTICAL LINE */
#define LOW_LINE "\xe2\x96\x81" /* U+2581 */
#define DS_USER "<" FW_BAR "User" FW_BAR ">"
#define DS_ASSISTANT "<" FW_BAR "Assistant" FW_BAR ">"
#define DS_EOS "<" FW_BAR "end" LOW_LINE "of" LOW_LINE "sentence" FW_BAR ">"

const char *chat_format_name(enum chat_format f)
{
        return f >= 0 && f < _CHAT_FORMAT_MAX ? format_names[f] : "unknown";
}

void chat_template_done(struct chat_template *t)
{
        free(t->default_system);
        t->default_system = NULL;
}

int chat_template_from_name(const char *name, struct chat_template *ret, struct npu_err *err)
{
        for (int f = 0; f < _CHAT_FORMAT_MAX; f++)
                if (strcmp(name, format_names[f]) == 0) {
                        *ret = (struct chat_template) { .format = f };
                        return 0;
                }
        char known[320] = "";
        for (int f = 0; f < _CHAT_FORMAT_MAX; f++)
                snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s", f ? ", " : "", format_names[f]);
        return npu_err_set(err, -EINVAL, "chat template '%.40s' is not one of %s", name, known);
}

static bool has(const char *s, const char *needle)
{
        return strstr(s, needle) != NULL;
}

/*
 * ChatML templates that write a system message when none is given (Qwen2:
 * "You are a helpful assistant.", Qwen2.5: "You are Qwen, created by ...")
 * hold it as one string literal '<|im_start|>system\n...<|im_end|>\n'.
 */
static int chatml_default_system(const char *jinja, char **ret)
{
        static const char open[] = "'<|im_start|>system";
        *ret = NULL;
        for (const char *p = strstr(jinja, open); p; p = strstr(p + 1, open)) {
                const char *q = p + strlen(open);
                if (strncmp(q, "\\n", 2) == 0)
                        q += 2;
                else if (*q == '\n')
                        q++;
                else
                        continue;
                const char *end = strstr(q, "<|im_end|>");
                if (!end || end == q || memchr(q, '\'', end - q) || memchr(q, '"', end - q) || memchr(q, '{', end - q))
                        continue;
                char *s = malloc((size_t)(end - q) + 1);
                size_t o = 0;
                if (!s)
                        return -ENOMEM;
                for (const char *c = q; c < end; c++) {
                        if (c[0] == '\\' && c + 1 < end && c[1] == 'n') {
                                s[o++] = '\n';
                                c++;
                        } else
                                s[o++] = *c;
                }
                s[o] = 0;
                *ret = s;
                return 0;
        }
        return 0;
}

static enum chat_format detect_format(const char *t)
{
        if (has(t, "<|im_start|>"))
                return has(t, "<|im_sep|>") ? _CHAT_FORMAT_MAX : CHAT_FORMAT_CHATML;
        if (strncmp(t, "mistral", 7) == 0 || has(t, "[INST]")) {
                if (has(t, "[SYSTEM_PROMPT]"))
                        return CHAT_FORMAT_MISTRAL_V7;
                if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
                        if (has(t, " [INST]"))
                                return CHAT_FORMAT_MISTRAL_V1;
                        if (has(t, "\"[INST]\""))
                                return CHAT_FORMAT_MISTRAL_V3_TEKKEN;
                        return CHAT_FORMAT_MISTRAL_V3;
                }
                return CHAT_FORMAT_LLAMA2;
        }
        if (has(t, "<|assistant|>") && has(t, "<|end|>"))
                return CHAT_FORMAT_PHI3;
        if (has(t, "<|user|>") && has(t, "<|endoftext|>"))
                return CHAT_FORMAT_ZEPHYR;
        if (has(t, "<start_of_turn>"))
                return CHAT_FORMAT_GEMMA;
        if (has(t, "### Instruction:") && has(t, "<|EOT|>"))
                return CHAT_FORMAT_DEEPSEEK;
        if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>"))
                return CHAT_FORMAT_LLAMA3;
        if (has(t, "'Assistant: ' + message['content'] + eos_token"))
                return CHAT_FORMAT_DEEPSEEK2;
        if (has(t, DS_ASSISTANT) && has(t, DS_USER) && has(t, DS_EOS))
                return CHAT_FORMAT_DEEPSEEK3;
        return _CHAT_FORMAT_MAX;
}

int chat_template_detect(const char *jinja, struct chat_template *ret, struct npu_err *err)
{
        struct chat_template t = {};

        if (!jinja || !*jinja)
                return npu_err_set(err, -ENOENT, "the model has no chat template (tokenizer.chat_template)");
        t.format = detect_format(jinja);
        if (t.format == _CHAT_FORMAT_MAX) {
                char start[48];
                size_t n = 0;
                for (const char *p = jinja; *p && n + 1 < sizeof(start); p++)
                        start[n++] = *p == '\n' ? ' ' : *p;
                start[n] = 0;
                return npu_err_set(err, -EOPNOTSUPP, "the model's chat template is not one of the known families "
                                                     "(it begins '%s'); ask for one by name, or raw", start);
        }
        if (t.format == CHAT_FORMAT_CHATML) {
                int r = chatml_default_system(jinja, &t.default_system);
                if (r < 0)
                        return r;
        }
        *ret = t;
        return 0;
}

static const char *const role_names[] = { "system", "user", "assistant" };

int chat_role_from_string(const char *s, enum chat_role *ret)
{
        for (size_t i = 0; i < ARRAY_SIZE(role_names); i++)
                if (strcmp(s, role_names[i]) == 0) {
                        *ret = (enum chat_role)i;
                        return 0;
                }
        return -EINVAL;
}

const char *chat_role_name(enum chat_role r)
{
        return r <= CHAT_ROLE_ASSISTANT ? role_names[r] : "unknown";
}

/* --- rendering --- */

struct builder {
        char *s;
        size_t len, cap;
        struct text_range *ranges;
        size_t n_ranges, cap_ranges;
        int error;
};

static void grow(struct builder *b, size_t n)
{
        if (b->error || b->len + n + 1 <= b->cap)
                return;
        size_t cap = MAX(b->cap * 2, b->len + n + 256);
        char *s = realloc(b->s, cap);
        if (!s) {
                b->error = -ENOMEM;
                return;
        }
        b->s = s;
        b->cap = cap;
}

/* The template's own text: control tokens in it are read. */
static void put(struct builder *b, const char *t)
{
        size_t n = strlen(t);
        grow(b, n);
        if (b->error)
                return;
        memcpy(b->s + b->len, t, n);
        b->len += n;
}

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* A message's text (optionally trimmed of ASCII whitespace): never read for control tokens. */
static void put_content(struct builder *b, const char *t, size_t n, bool trim)
{
        while (trim && n > 0 && is_space(t[0]))
                t++, n--;
        while (trim && n > 0 && is_space(t[n - 1]))
                n--;
        if (n == 0)
                return;
        grow(b, n);
        if (b->error)
                return;
        if (b->n_ranges == b->cap_ranges) {
                size_t cap = MAX((size_t)8, b->cap_ranges * 2);
                struct text_range *r = realloc(b->ranges, cap * sizeof(*r));
                if (!r) {
                        b->error = -ENOMEM;
                        return;
                }
                b->ranges = r;
                b->cap_ranges = cap;
        }
        b->ranges[b->n_ranges++] = (struct text_range) { b->len, n };
        memcpy(b->s + b->len, t, n);
        b->len += n;
}

/*
 * Meta's Llama 2 chat format: <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user}
 * [/INST] {answer} </s><s>[INST] {user} [/INST] ..., messages stripped.
 */
static void render_llama2(struct builder *b, const struct chat_message *m, size_t n)
{
        bool inside = false, first = true;

        for (size_t i = 0; i < n; i++) {
                if (!inside && m[i].role != CHAT_ROLE_ASSISTANT) {
                        put(b, first ? "[INST] " : "<s>[INST] ");
                        inside = true;
                        first = false;
                }
                switch (m[i].role) {
                case CHAT_ROLE_SYSTEM:
                        put(b, "<<SYS>>\n");
                        put_content(b, m[i].content, m[i].len, true);
                        put(b, "\n<</SYS>>\n\n");
                        break;
                case CHAT_ROLE_USER:
                        put_content(b, m[i].content, m[i].len, true);
                        put(b, " [/INST]");
                        break;
                case CHAT_ROLE_ASSISTANT:
                        put(b, " ");
                        put_content(b, m[i].content, m[i].len, true);
                        put(b, " </s>");
                        inside = false;
                        first = false;
                        break;
                }
        }
}

static void render_mistral(struct builder *b, enum chat_format f, const struct chat_message *m, size_t n)
{
        const char *lead = f == CHAT_FORMAT_MISTRAL_V1 ? " " : "", *trail = f == CHAT_FORMAT_MISTRAL_V3_TEKKEN ? "" : " ";
        bool inside = false;

        for (size_t i = 0; i < n; i++) {
                if (!inside) {
                        put(b, lead);
                        put(b, "[INST]");
                        put(b, trail);
                        inside = true;
                }
                switch (m[i].role) {
                case CHAT_ROLE_SYSTEM:
                        put_content(b, m[i].content, m[i].len, false);
                        put(b, "\n\n");
                        break;
                case CHAT_ROLE_USER:
                        put_content(b, m[i].content, m[i].len, false);
                        put(b, lead);
                        put(b, "[/INST]");
                        break;
                case CHAT_ROLE_ASSISTANT:
                        put(b, trail);
                        put_content(b, m[i].content, m[i].len, f == CHAT_FORMAT_MISTRAL_V3);
                        put(b, "</s>");
                        inside = false;
                        break;
                }
        }
}

static void render_mistral_v7(struct builder *b, const struct chat_message *m, size_t n)
{
        static const char *const open[] = { "[SYSTEM_PROMPT] ", "[INST] ", " " };
        static const char *const close[] = { "[/SYSTEM_PROMPT]", "[/INST]", "</s>" };
        for (size_t i = 0; i < n; i++) {
                put(b, open[m[i].role]);
                put_content(b, m[i].content, m[i].len, false);
                put(b, close[m[i].role]);
        }
}

/* role markers around each message: <open><role><mid>content<close>, then <gen> for the assistant's turn */
static void render_tagged(struct builder *b, const struct chat_message *m, size_t n, const char *open,
                          const char *mid, const char *close, bool trim, bool add_gen, const char *gen)
{
        for (size_t i = 0; i < n; i++) {
                put(b, open);
                put(b, chat_role_name(m[i].role));
                put(b, mid);
                put_content(b, m[i].content, m[i].len, trim);
                put(b, close);
        }
        if (add_gen)
                put(b, gen);
}

static void render_gemma(struct builder *b, const struct chat_message *m, size_t n, bool add_gen)
{
        const struct chat_message *sys = NULL;

        for (size_t i = 0; i < n; i++) {
                if (m[i].role == CHAT_ROLE_SYSTEM) {
                        /* Gemma has no system turn: it opens the next user turn */
                        sys = &m[i];
                        continue;
                }
                bool model = m[i].role == CHAT_ROLE_ASSISTANT;
                put(b, model ? "<start_of_turn>model\n" : "<start_of_turn>user\n");
                if (sys && !model) {
                        put_content(b, sys->content, sys->len, true);
                        put(b, "\n\n");
                        sys = NULL;
                }
                put_content(b, m[i].content, m[i].len, true);
                put(b, "<end_of_turn>\n");
        }
        if (add_gen)
                put(b, "<start_of_turn>model\n");
}

/* formats that write fixed text before and after each role's message */
struct role_marks {
        const char *before[3], *after[3];
        const char *gen;
};

static const struct role_marks deepseek_marks[] = {
        [0] = { { "", "### Instruction:\n", "### Response:\n" }, { "", "\n", "\n<|EOT|>\n" }, "### Response:\n" },
        [1] = { { "", "User: ", "Assistant: " }, { "\n\n", "\n\n", DS_EOS }, "Assistant:" },
        [2] = { { "", DS_USER, DS_ASSISTANT }, { "\n\n", "", DS_EOS }, DS_ASSISTANT },
};

static void render_marked(struct builder *b, const struct role_marks *rm, const struct chat_message *m, size_t n,
                          bool add_gen)
{
        for (size_t i = 0; i < n; i++) {
                put(b, rm->before[m[i].role]);
                put_content(b, m[i].content, m[i].len, false);
                put(b, rm->after[m[i].role]);
        }
        if (add_gen)
                put(b, rm->gen);
}

static void render_chatml(struct builder *b, const struct chat_template *t, const struct chat_message *m, size_t n,
                          bool add_gen)
{
        if (t->default_system && m[0].role != CHAT_ROLE_SYSTEM) {
                put(b, "<|im_start|>system\n");
                put(b, t->default_system);
                put(b, "<|im_end|>\n");
        }
        render_tagged(b, m, n, "<|im_start|>", "\n", "<|im_end|>\n", false, add_gen, "<|im_start|>assistant\n");
}

int chat_render(const struct chat_template *t, const struct chat_message *msgs, size_t n,
                bool add_generation_prompt, struct chat_prompt *ret, struct npu_err *err)
{
        struct builder b = {};

        if (n == 0)
                return npu_err_set(err, -EINVAL, "a chat needs at least one message");
        for (size_t i = 0; i < n; i++)
                if (msgs[i].role > CHAT_ROLE_ASSISTANT)
                        return npu_err_set(err, -EINVAL, "message %zu has an unknown role", i);
        switch (t->format) {
        case CHAT_FORMAT_RAW:
                for (size_t i = 0; i < n; i++)
                        put_content(&b, msgs[i].content, msgs[i].len, false);
                break;
        case CHAT_FORMAT_LLAMA2:
                render_llama2(&b, msgs, n);
                break;
        case CHAT_FORMAT_LLAMA3:
                render_tagged(&b, msgs, n, "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>", true,
                              add_generation_prompt, "<|start_header_id|>assistant<|end_header_id|>\n\n");
                break;
        case CHAT_FORMAT_CHATML:
                render_chatml(&b, t, msgs, n, add_generation_prompt);
                break;
        case CHAT_FORMAT_MISTRAL_V1:
        case CHAT_FORMAT_MISTRAL_V3:
        case CHAT_FORMAT_MISTRAL_V3_TEKKEN:
                render_mistral(&b, t->format, msgs, n);
                break;
        case CHAT_FORMAT_MISTRAL_V7:
                render_mistral_v7(&b, msgs, n);
                break;
        case CHAT_FORMAT_PHI3:
                render_tagged(&b, msgs, n, "<|", "|>\n", "<|end|>\n", false, add_generation_prompt, "<|assistant|>\n");
                break;
        case CHAT_FORMAT_GEMMA:
                render_gemma(&b, msgs, n, add_generation_prompt);
                break;
        case CHAT_FORMAT_ZEPHYR:
                render_tagged(&b, msgs, n, "<|", "|>\n", "<|endoftext|>\n", false, add_generation_prompt,
                              "<|assistant|>\n");
                break;
        case CHAT_FORMAT_DEEPSEEK:
        case CHAT_FORMAT_DEEPSEEK2:
        case CHAT_FORMAT_DEEPSEEK3:
                render_marked(&b, &deepseek_marks[t->format - CHAT_FORMAT_DEEPSEEK], msgs, n, add_generation_prompt);
                break;
        default:
                return npu_err_set(err, -EINVAL, "unknown chat format %d", t->format);
        }
        grow(&b, 0);
        if (b.error) {
                free(b.s);
                free(b.ranges);
                return b.error;
        }
        b.s[b.len] = 0;
        *ret = (struct chat_prompt) { .text = b.s, .len = b.len, .content = b.ranges, .n_content = b.n_ranges };
        return 0;
}

void chat_prompt_done(struct chat_prompt *p)
{
        free(p->text);
        free(p->content);
        *p = (struct chat_prompt) {};
}

int chat_prompt_tokenize(const struct npu_vocab *v, const struct chat_prompt *p, int32_t **ret_ids, size_t *ret_n)
{
        return vocab_tokenize_guarded(v, p->text, p->len, true, p->content, p->n_content, ret_ids, ret_n);
}
