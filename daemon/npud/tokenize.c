/* SPDX-License-Identifier: MIT */
/* Tokenizing prompts on the tokenizer worker (see tokenize.h). */
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

        job->r = vocab_tokenize(job->model->rt->model->vocab, job->text, job->len, job->add_bos, true, &job->ids,
                                &job->n);
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
        free(job);
}

int tokenize_async(struct served_model *m, const char *text, size_t len, bool add_bos,
                   void (*then)(struct tokenize_job *job, void *userdata), void *userdata,
                   struct tokenize_job **ret)
{
        struct tokenize_job *job = calloc(1, sizeof(*job));

        if (!job)
                return -ENOMEM;
        job->text = malloc(len + 1);
        if (!job->text) {
                free(job);
                return -ENOMEM;
        }
        memcpy(job->text, text, len);
        job->text[len] = 0;
        job->len = len;
        job->add_bos = add_bos;
        job->base.run = job_run;
        job->base.done = job_done;
        job->then = then;
        job->userdata = userdata;
        job->model = model_ref(m);
        worker_queue(m->srv->tokenizer, &job->base);
        *ret = job;
        return 0;
}

void tokenize_detach(struct tokenize_job *job)
{
        if (job)
                job->then = NULL;
}
