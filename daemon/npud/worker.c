/* SPDX-License-Identifier: MIT */
/* Jobs on a thread of their own, their ends on the event loop (see worker.h). */
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>

#include "util.h"
#include "worker.h"

struct worker {
        pthread_t thread;
        char name[16];
        pthread_mutex_t lock; /* protects todo, finished, stop */
        pthread_cond_t wake;
        struct worker_job *todo_head, *todo_tail;
        struct worker_job *finished_head, *finished_tail;
        bool stop;
        unsigned pending; /* event loop side: queued and not yet done */
        int efd;
        sd_event_source *source;
};

static void push(struct worker_job **head, struct worker_job **tail, struct worker_job *job)
{
        job->next = NULL;
        if (*tail)
                (*tail)->next = job;
        else
                *head = job;
        *tail = job;
}

static struct worker_job *pop(struct worker_job **head, struct worker_job **tail)
{
        struct worker_job *job = *head;

        if (job) {
                *head = job->next;
                if (!*head)
                        *tail = NULL;
                job->next = NULL;
        }
        return job;
}

static void *worker_main(void *p)
{
        struct worker *w = p;

        prctl(PR_SET_NAME, w->name);
        for (;;) {
                struct worker_job *job;
                uint64_t one = 1;

                pthread_mutex_lock(&w->lock);
                while (!w->todo_head && !w->stop)
                        pthread_cond_wait(&w->wake, &w->lock);
                job = w->stop ? NULL : pop(&w->todo_head, &w->todo_tail);
                pthread_mutex_unlock(&w->lock);
                if (!job)
                        return NULL;
                job->run(job);
                pthread_mutex_lock(&w->lock);
                push(&w->finished_head, &w->finished_tail, job);
                pthread_mutex_unlock(&w->lock);
                if (write(w->efd, &one, sizeof(one)) != sizeof(one))
                        abort(); /* an eventfd write only fails on overflow */
        }
}

static int on_finished(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
        struct worker *w = userdata;
        uint64_t n;

        if (read(w->efd, &n, sizeof(n)) != sizeof(n))
                return 0;
        for (;;) {
                struct worker_job *job;
                pthread_mutex_lock(&w->lock);
                job = pop(&w->finished_head, &w->finished_tail);
                pthread_mutex_unlock(&w->lock);
                if (!job)
                        return 0;
                w->pending--;
                job->done(job, false);
        }
}

int worker_new(sd_event *e, const char *name, struct worker **ret)
{
        struct worker *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return -ENOMEM;
        snprintf(w->name, sizeof(w->name), "%s", name);
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->wake, NULL);
        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->efd < 0) {
                r = -errno;
                free(w);
                return r;
        }
        r = sd_event_add_io(e, &w->source, w->efd, EPOLLIN, on_finished, w);
        if (r >= 0)
                r = -pthread_create(&w->thread, NULL, worker_main, w);
        if (r < 0) {
                sd_event_source_disable_unref(w->source);
                close(w->efd);
                free(w);
                return r;
        }
        *ret = w;
        return 0;
}

void worker_free(struct worker *w)
{
        struct worker_job *job;

        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        /* the thread is gone: no lock needed */
        while ((job = pop(&w->finished_head, &w->finished_tail)))
                job->done(job, false);
        while ((job = pop(&w->todo_head, &w->todo_tail)))
                job->done(job, true);
        sd_event_source_disable_unref(w->source);
        close(w->efd);
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        free(w);
}

void worker_queue(struct worker *w, struct worker_job *job)
{
        w->pending++;
        pthread_mutex_lock(&w->lock);
        push(&w->todo_head, &w->todo_tail, job);
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
}

unsigned worker_pending(const struct worker *w)
{
        return w->pending;
}
