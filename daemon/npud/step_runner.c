/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <stdbool.h>
#include <sys/eventfd.h>

#include "step_runner.h"

struct step_runner {
        pthread_t thread;
        pthread_mutex_t lock; /* protects job, stop */
        pthread_cond_t wake;
        struct scheduler *job;
        bool stop;
        bool busy; /* event loop side only */
        struct scheduler *last; /* the step's scheduler, event loop side */
        int result;
        struct npu_err err;
        int efd;
        sd_event_source *source;
        step_done_fn done;
        void *userdata;
};

static void *runner_main(void *p)
{
        struct step_runner *sr = p;

        for (;;) {
                struct scheduler *s;
                uint64_t one = 1;

                pthread_mutex_lock(&sr->lock);
                while (!sr->job && !sr->stop)
                        pthread_cond_wait(&sr->wake, &sr->lock);
                s = sr->job;
                pthread_mutex_unlock(&sr->lock);
                if (!s)
                        return NULL;
                sr->err.msg[0] = 0;
                sr->result = sched_step_run(s, &sr->err);
                pthread_mutex_lock(&sr->lock);
                sr->job = NULL;
                pthread_mutex_unlock(&sr->lock);
                if (write(sr->efd, &one, sizeof(one)) != sizeof(one))
                        abort(); /* an eventfd write only fails on overflow */
        }
}

static int on_done(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
        struct step_runner *sr = userdata;
        struct scheduler *s;
        uint64_t n;

        if (read(sr->efd, &n, sizeof(n)) != sizeof(n))
                return 0;
        pthread_mutex_lock(&sr->lock);
        s = sr->job;
        pthread_mutex_unlock(&sr->lock);
        if (s || !sr->busy)
                return 0;
        sr->busy = false;
        sr->done(sr->last, sr->result, sr->err.msg, sr->userdata);
        return 0;
}

int step_runner_new(sd_event *e, step_done_fn done, void *userdata, struct step_runner **ret)
{
        struct step_runner *sr = calloc(1, sizeof(*sr));
        int r;

        if (!sr)
                return -ENOMEM;
        sr->done = done;
        sr->userdata = userdata;
        pthread_mutex_init(&sr->lock, NULL);
        pthread_cond_init(&sr->wake, NULL);
        sr->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (sr->efd < 0) {
                r = -errno;
                free(sr);
                return r;
        }
        r = sd_event_add_io(e, &sr->source, sr->efd, EPOLLIN, on_done, sr);
        if (r < 0) {
                close(sr->efd);
                free(sr);
                return r;
        }
        r = -pthread_create(&sr->thread, NULL, runner_main, sr);
        if (r < 0) {
                sd_event_source_unref(sr->source);
                close(sr->efd);
                free(sr);
                return r;
        }
        *ret = sr;
        return 0;
}

void step_runner_free(struct step_runner *sr)
{
        if (!sr)
                return;
        pthread_mutex_lock(&sr->lock);
        sr->stop = true;
        pthread_cond_signal(&sr->wake);
        pthread_mutex_unlock(&sr->lock);
        pthread_join(sr->thread, NULL);
        sd_event_source_disable_unref(sr->source);
        close(sr->efd);
        pthread_mutex_destroy(&sr->lock);
        pthread_cond_destroy(&sr->wake);
        free(sr);
}

bool step_runner_busy(const struct step_runner *sr)
{
        return sr->busy;
}

void step_runner_start(struct step_runner *sr, struct scheduler *s)
{
        sr->busy = true;
        sr->last = s;
        pthread_mutex_lock(&sr->lock);
        sr->job = s;
        pthread_cond_signal(&sr->wake);
        pthread_mutex_unlock(&sr->lock);
}
