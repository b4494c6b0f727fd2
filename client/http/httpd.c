/* SPDX-License-Identifier: MIT */
/*
 * libmicrohttpd on sd-event. Each listening socket has its own MHD daemon in
 * external-epoll mode: MHD's epoll descriptor is one io source of the loop,
 * MHD_get_timeout() arms one timer, and a resumed connection is picked up by
 * a one-shot defer source. So the bus and HTTP share one thread, and a token
 * goes from npud's signal to the socket without a thread switch.
 *
 * Per connection: a deadline by which the request must be in (a client that
 * trickles its headers or body is cut off: the socket is shut down and MHD
 * closes it), and, while a generation runs, a watch on the socket for the
 * peer hanging up. MHD does not look at a suspended connection, so without
 * the watch nobody would notice a client that left in the middle of a stream.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "gateway.h"

#define CONNECTION_MEMORY (64 * 1024) /* request line and headers */

/* Arm the timer for MHD's next deadline. A deadline later than the armed one leaves it: an early
 * wake-up only runs MHD once more, while moving the timer costs a system call per token. */
static void listener_schedule(struct listener *l)
{
        MHD_UNSIGNED_LONG_LONG ms;
        uint64_t now, at, armed;
        int enabled = SD_EVENT_OFF;

        if (MHD_get_timeout(l->mhd, &ms) != MHD_YES) {
                sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
                return;
        }
        sd_event_now(l->gw->event, CLOCK_MONOTONIC, &now);
        at = now + (uint64_t)ms * 1000;
        sd_event_source_get_enabled(l->timer, &enabled);
        if (enabled != SD_EVENT_OFF && sd_event_source_get_time(l->timer, &armed) >= 0 && armed <= at &&
            armed > now)
                return;
        sd_event_source_set_time(l->timer, at);
        sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
}

static void listener_run(struct listener *l)
{
        MHD_run(l->mhd);
        listener_schedule(l);
}

static int on_epoll(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        listener_run(userdata);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        listener_run(userdata);
        return 0;
}

static int on_defer(sd_event_source *s, void *userdata)
{
        listener_run(userdata);
        return 0;
}

void listener_kick(struct listener *l)
{
        sd_event_source_set_enabled(l->defer, SD_EVENT_ONESHOT);
}

/* ---- connections */

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct conn *c = userdata;

        /* MHD sees the end of the stream on its next read and closes the connection */
        fprintf(stderr, "npud-http: a client did not send its request within %u s: closing its connection\n",
                c->l->gw->cfg.request_timeout);
        shutdown(c->fd, SHUT_RDWR);
        return 0;
}

static void conn_arm_deadline(struct conn *c)
{
        uint64_t now;

        sd_event_now(c->l->gw->event, CLOCK_MONOTONIC, &now);
        sd_event_source_set_time(c->deadline, now + (uint64_t)c->l->gw->cfg.request_timeout * 1000000);
        sd_event_source_set_enabled(c->deadline, SD_EVENT_ONESHOT);
}

void conn_request_complete(struct conn *c)
{
        sd_event_source_set_enabled(c->deadline, SD_EVENT_OFF);
}

static int on_hangup(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct conn *c = userdata;

        sd_event_source_set_enabled(s, SD_EVENT_OFF);
        if (!c->req)
                return 0;
        c->req->gone = true;
        if (c->req->job)
                job_detach_http(c->req->job); /* npud stops generating now */
        /* and MHD, resumed, finds the socket dead and closes it */
        http_req_resume(c->req);
        return 0;
}

int conn_watch_hangup(struct conn *c)
{
        if (c->hup)
                return sd_event_source_set_enabled(c->hup, SD_EVENT_ON);
        return sd_event_add_io(c->l->gw->event, &c->hup, c->fd, EPOLLRDHUP, on_hangup, c);
}

void gateway_idle_update(struct gateway *gw)
{
        uint64_t now;

        if (!gw->idle_timer)
                return;
        if (gw->n_connections > 0 || gw->jobs) {
                sd_event_source_set_enabled(gw->idle_timer, SD_EVENT_OFF);
                return;
        }
        sd_event_now(gw->event, CLOCK_MONOTONIC, &now);
        sd_event_source_set_time(gw->idle_timer, now + (uint64_t)gw->cfg.idle_timeout * 1000000);
        sd_event_source_set_enabled(gw->idle_timer, SD_EVENT_ONESHOT);
}

static void conn_free(struct conn *c)
{
        sd_event_source_disable_unref(c->deadline);
        sd_event_source_disable_unref(c->hup);
        free(c);
}

static void on_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
        struct listener *l = cls;
        struct conn *c;
        const union MHD_ConnectionInfo *info;

        if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
                /* called before MHD closes the socket: our io source goes while the fd is still ours */
                c = *socket_context;
                if (c)
                        conn_free(c);
                *socket_context = NULL;
                l->gw->n_connections--;
                gateway_idle_update(l->gw);
                return;
        }
        l->gw->n_connections++;
        gateway_idle_update(l->gw);
        info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        c = calloc(1, sizeof(*c));
        if (!c || !info) {
                free(c);
                return;
        }
        c->l = l;
        c->mhd = connection;
        c->fd = info->connect_fd;
        if (sd_event_add_time(l->gw->event, &c->deadline, CLOCK_MONOTONIC, 0, 0, on_deadline, c) < 0) {
                free(c);
                return;
        }
        conn_arm_deadline(c);
        *socket_context = c;
}

enum MHD_Result http_queue_response(struct MHD_Connection *mc, unsigned status, struct MHD_Response *resp)
{
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        const struct conn *c = info ? info->socket_context : NULL;

        /*
         * A kept-alive connection is shut down request_timeout after its last
         * response (conn_request_done): say so, so that clients (undici, as
         * fetch in Node) retire the socket before, instead of sending their
         * next request into a connection being closed.
         */
        if (c) {
                char v[32];
                snprintf(v, sizeof(v), "timeout=%u", c->l->gw->cfg.request_timeout);
                MHD_add_response_header(resp, "Keep-Alive", v);
        }
        return MHD_queue_response(mc, status, resp);
}

void conn_request_done(struct conn *c)
{
        c->req = NULL;
        if (c->hup)
                sd_event_source_set_enabled(c->hup, SD_EVENT_OFF);
        conn_arm_deadline(c);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
        fputs("npud-http: libmicrohttpd: ", stderr);
        vfprintf(stderr, fmt, ap);
}

/* "listening on ADDRESS": where a test (or a person) finds a port the kernel chose. */
static void listener_log_address(const struct listener *l)
{
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        char host[INET6_ADDRSTRLEN] = "?";

        if (getsockname(l->fd, (struct sockaddr *)&ss, &len) < 0)
                return;
        if (ss.ss_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                fprintf(stderr, "npud-http: listening on %s:%u (bearer key required)\n", host, ntohs(in->sin_port));
        } else if (ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                fprintf(stderr, "npud-http: listening on [%s]:%u (bearer key required)\n", host,
                        ntohs(in6->sin6_port));
        } else if (ss.ss_family == AF_UNIX) {
                const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
                fprintf(stderr, "npud-http: listening on unix:%s\n", un->sun_path[0] ? un->sun_path : "(abstract)");
        }
}

int listener_start(struct gateway *gw, struct listen_spec *spec, struct listener **ret)
{
        struct listener *l = calloc(1, sizeof(*l));
        const union MHD_DaemonInfo *info;
        int r;

        if (!l)
                return -ENOMEM;
        l->gw = gw;
        l->fd = spec->fd;
        l->tcp = spec->tcp;
        l->unix_path = TAKE_PTR(spec->unix_path);
        l->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                                  route_access, l,
                                  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                                  MHD_OPTION_LISTEN_SOCKET, l->fd,
                                  MHD_OPTION_NOTIFY_COMPLETED, route_completed, l,
                                  MHD_OPTION_NOTIFY_CONNECTION, on_connection, l,
                                  MHD_OPTION_CONNECTION_LIMIT, gw->cfg.max_connections,
                                  MHD_OPTION_CONNECTION_TIMEOUT, gw->cfg.request_timeout,
                                  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
                                  MHD_OPTION_END);
        if (!l->mhd) {
                fprintf(stderr, "npud-http: libmicrohttpd did not start on descriptor %d\n", l->fd);
                listener_free(l);
                return -EIO;
        }
        info = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info) {
                listener_free(l);
                return -EIO;
        }
        r = sd_event_add_io(gw->event, &l->io, info->epoll_fd, EPOLLIN, on_epoll, l);
        if (r >= 0)
                r = sd_event_add_time(gw->event, &l->timer, CLOCK_MONOTONIC, 0, 1, on_timer, l); /* exact: no coalescing */
        if (r >= 0)
                r = sd_event_add_defer(gw->event, &l->defer, on_defer, l);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->defer, SD_EVENT_OFF);
        if (r < 0) {
                listener_free(l);
                return r;
        }
        listener_schedule(l);
        listener_log_address(l);
        *ret = l;
        return 0;
}

struct listener *listener_free(struct listener *l)
{
        if (!l)
                return NULL;
        sd_event_source_disable_unref(l->io);
        sd_event_source_disable_unref(l->timer);
        sd_event_source_disable_unref(l->defer);
        if (l->mhd)
                MHD_stop_daemon(l->mhd); /* closes the listening socket too */
        else
                safe_close(l->fd);
        if (l->unix_path)
                unlink(l->unix_path);
        free(l->unix_path);
        free(l);
        return NULL;
}
