/* SPDX-License-Identifier: MIT */
/* Tokenizing prompts on the tokenizer worker (see tokenize.h). */
#include "chat_template.h"
#include "server.h"
#include "tokenize.h"
#include "vocab.h"

size_t prompt_max_bytes(const struct served_model *m, int32_t n_tokens)
{
        /* every token covers at most max_token_bytes of the text */
        return (size_t)MAX(n_tokens, 0) * m->max_token_bytes;
}

static void job_run(struct worker_job *base)
{
        struct tokenize_job *job = (struct tokenize_job *)base;

        const struct npu_vocab *v = job->model->rt->model->vocab;

        if (job->chat)
                job->r = vocab_tokenize_guarded(v, job->text, job->len, job->add_bos, job->plain, job->n_plain,
                                                &job->ids, &job->n);
        else
                job->r = vocab_tokenize(v, job->text, job->len, job->add_bos, false, &job->ids, &job->n);
}

static void job_done(struct worker_job *base, bool cancelled)
{
        struct tokenize_job *job = (struct tokenize_job *)base;

        if (cancelled && job->r == 0)
                job->r = -ECANCELED;
        if (job->then)
                job->then(job, job->userdata);
        model_unref(job->model);
        free(job->ids);
        free(job->text);
        free(job->plain);
        free(job);
}

static struct tokenize_job *job_new(const char *text, size_t len, bool add_bos)
{
        struct tokenize_job *job = calloc(1, sizeof(*job));

        if (!job)
                return NULL;
        job->text = malloc(len + 1);
        if (!job->text) {
                free(job);
                return NULL;
        }
        memcpy(job->text, text, len);
        job->text[len] = 0;
        job->len = len;
        job->add_bos = add_bos;
        job->base.run = job_run;
        job->base.done = job_done;
        return job;
}

static void job_queue(struct tokenize_job *job, struct served_model *m,
                      void (*then)(struct tokenize_job *job, void *userdata), void *userdata)
{
        job->then = then;
        job->userdata = userdata;
        job->model = model_ref(m);
        worker_queue(m->srv->tokenizer, &job->base);
}

int tokenize_async(struct served_model *m, const char *text, size_t len, bool add_bos,
                   void (*then)(struct tokenize_job *job, void *userdata), void *userdata,
                   struct tokenize_job **ret)
{
        struct tokenize_job *job = job_new(text, len, add_bos);

        if (!job)
                return -ENOMEM;
        job_queue(job, m, then, userdata);
        *ret = job;
        return 0;
}

int tokenize_chat_async(struct served_model *m, const struct chat_prompt *p, bool add_bos,
                        void (*then)(struct tokenize_job *job, void *userdata), void *userdata,
                        struct tokenize_job **ret)
{
        struct tokenize_job *job = job_new(p->text, p->len, add_bos);

        if (!job)
                return -ENOMEM;
        job->chat = true;
        if (p->n_content) {
                job->plain = malloc(p->n_content * sizeof(*job->plain));
                if (!job->plain) {
                        free(job->text);
                        free(job);
                        return -ENOMEM;
                }
                memcpy(job->plain, p->content, p->n_content * sizeof(*job->plain));
                job->n_plain = p->n_content;
        }
        job_queue(job, m, then, userdata);
        *ret = job;
        return 0;
}

void tokenize_detach(struct tokenize_job *job)
{
        if (job)
                job->then = NULL;
}
