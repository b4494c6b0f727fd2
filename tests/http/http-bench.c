/* SPDX-License-Identifier: MIT */
/*
 * npud-http-bench: what the gateway adds to a request and to a token, against
 * the same work asked of npud directly over D-Bus, with N clients at once.
 *
 *   npud-http-bench BUS_ADDRESS SOCKET MODEL GATEWAY_PID [--clients 1,8] [--requests R] [--tokens T]
 *
 * Each client is a thread with its own connection: a D-Bus connection
 * (Generate, Tokens and Finished signals, Close), or a kept-alive HTTP/1.1
 * connection to the gateway's Unix socket (POST /v1/completions). Per
 * request: R requests of 1 token each, whole responses; per token: R
 * requests of T tokens (greedy, past end-of-text), streamed. The rounds
 * alternate D-Bus and HTTP so both see the same machine. The figures:
 *   added per request = mean(HTTP 1-token request) - mean(D-Bus 1-token request)
 *   (the same for a 1-token stream: its headers, a chunk, the end)
 *   added per token   = (mean(HTTP T-token stream) - mean(HTTP 1-token stream)
 *                        - (mean(D-Bus T-token) - mean(D-Bus 1-token))) / (T - 1)
 * and the gateway's own cpu time (utime + stime of GATEWAY_PID, in clock
 * ticks) per whole 1-token request and per streamed token. The HTTP side of this client is only what it needs: it
 * reads a Content-Length body, or a chunked SSE stream up to its last chunk.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#define SERVICE "org.npud.Inference1"
#define MAX_CLIENTS 64

static const char *bus_address, *sock_path, *model;
static int gateway_pid;

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int r)
{
        fprintf(stderr, "npud-http-bench: %s: %s\n", what, strerror(r < 0 ? -r : r));
        exit(1);
}

/* ---- direct D-Bus */

struct dbus_client {
        sd_bus *bus;
        const char *path;
        bool done;
        unsigned tokens;
};

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
        struct dbus_client *c = userdata;

        if (!c->path || strcmp(sd_bus_message_get_path(m), c->path) != 0)
                return 0;
        if (sd_bus_message_is_signal(m, SERVICE ".Request", "Tokens")) {
                if (sd_bus_message_enter_container(m, 'a', "(us)") > 0)
                        while (sd_bus_message_skip(m, "(us)") > 0)
                                c->tokens++;
        } else if (sd_bus_message_is_signal(m, SERVICE ".Request", "Finished")) {
                c->done = true;
        }
        return 0;
}

static double dbus_request(struct dbus_client *c, unsigned tokens, bool *ok)
{
        sd_bus_message *call = NULL, *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t t0 = now_ns();
        const char *path;
        int r;

        r = sd_bus_message_new_method_call(c->bus, &call, SERVICE, "/org/npud/Inference1", SERVICE ".Manager",
                                           "Generate");
        if (r >= 0)
                r = sd_bus_message_append(call, "sva{sv}", model, "s", "Once upon a time", 3, "max_tokens", "u",
                                          tokens, "temperature", "d", 0.0, "ignore_eos", "b", 1);
        if (r >= 0)
                r = sd_bus_call(c->bus, call, 0, &error, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r < 0) {
                fprintf(stderr, "npud-http-bench: Generate: %s\n", error.message ? error.message : strerror(-r));
                *ok = false;
                goto out;
        }
        c->path = path;
        c->done = false;
        c->tokens = 0;
        while (!c->done) {
                r = sd_bus_process(c->bus, NULL);
                if (r < 0)
                        die("sd_bus_process", r);
                if (r == 0 && sd_bus_wait(c->bus, UINT64_MAX) < 0)
                        die("sd_bus_wait", r);
        }
        (void)sd_bus_call_method_async(c->bus, NULL, SERVICE, path, SERVICE ".Request", "Close", NULL, NULL, NULL);
        c->path = NULL;
        *ok = c->tokens == tokens;
out:
        sd_bus_error_free(&error);
        sd_bus_message_unref(call);
        sd_bus_message_unref(reply);
        return (double)(now_ns() - t0) / 1e6;
}

/* ---- HTTP over the gateway's Unix socket */

struct http_client {
        int fd;
        char buf[1 << 16];
        size_t len; /* bytes in buf not yet used */
};

static int http_connect(struct http_client *h)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
        h->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (h->fd < 0 || connect(h->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        h->len = 0;
        return 0;
}

static int fill(struct http_client *h)
{
        ssize_t n;

        if (h->len == sizeof(h->buf))
                return -ENOBUFS;
        n = read(h->fd, h->buf + h->len, sizeof(h->buf) - h->len);
        if (n <= 0)
                return n == 0 ? -ECONNRESET : -errno;
        h->len += (size_t)n;
        return 0;
}

static void consume(struct http_client *h, size_t n)
{
        memmove(h->buf, h->buf + n, h->len - n);
        h->len -= n;
}

/* Until buf holds s; returns the offset just past it. */
static int wait_for(struct http_client *h, const char *s, size_t *ret)
{
        for (;;) {
                char *p = memmem(h->buf, h->len, s, strlen(s));
                if (p) {
                        *ret = (size_t)(p - h->buf) + strlen(s);
                        return 0;
                }
                int r = fill(h);
                if (r < 0)
                        return r;
        }
}

static double http_request(struct http_client *h, unsigned tokens, bool stream, bool *ok)
{
        char body[512], req[1024];
        uint64_t t0 = now_ns();
        size_t end;
        int n, r;
        unsigned events = 0;

        n = snprintf(body, sizeof(body),
                     "{\"model\":\"%s\",\"prompt\":\"Once upon a time\",\"max_tokens\":%u,\"temperature\":0,"
                     "\"ignore_eos\":true,\"stream\":%s}", model, tokens, stream ? "true" : "false");
        n = snprintf(req, sizeof(req),
                     "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n%s", n, body);
        if (write(h->fd, req, (size_t)n) != n)
                die("write", errno);
        r = wait_for(h, "\r\n\r\n", &end);
        if (r < 0)
                die("reading the response", r);
        *ok = strncmp(h->buf, "HTTP/1.1 200", 12) == 0;
        if (!stream) {
                char *cl = memmem(h->buf, end, "Content-Length: ", 16);
                size_t len = cl ? strtoul(cl + 16, NULL, 10) : 0;
                consume(h, end);
                while (h->len < len)
                        if ((r = fill(h)) < 0)
                                die("reading the body", r);
                *ok = *ok && memmem(h->buf, len, "\"completion_tokens\":", 20);
                consume(h, len);
        } else {
                consume(h, end);
                /* chunks of SSE events; the stream ends with the zero-length chunk */
                for (;;) {
                        r = wait_for(h, "\r\n", &end);
                        if (r < 0)
                                die("reading a chunk", r);
                        size_t clen = strtoul(h->buf, NULL, 16);
                        consume(h, end);
                        while (h->len < clen + 2)
                                if ((r = fill(h)) < 0)
                                        die("reading a chunk", r);
                        for (char *p = h->buf; (p = memmem(p, clen - (size_t)(p - h->buf), "data: {", 7)); p += 7)
                                events++;
                        consume(h, clen + 2);
                        if (clen == 0)
                                break;
                }
                /* a chunk per token, the finish chunk */
                *ok = *ok && events == tokens + 1;
        }
        return (double)(now_ns() - t0) / 1e6;
}

/* ---- runs */

struct run {
        bool http, stream;
        unsigned tokens, requests;
        pthread_barrier_t *barrier;
        double sum_ms;
        unsigned failed;
};

static void *client_thread(void *arg)
{
        struct run *run = arg;
        struct dbus_client dc = {};
        struct http_client *hc = NULL;
        sd_bus_slot *slot = NULL;
        int r;

        if (run->http) {
                hc = calloc(1, sizeof(*hc));
                if (!hc || (r = http_connect(hc)) < 0)
                        die("connecting to the gateway", hc ? r : -ENOMEM);
        } else {
                r = sd_bus_new(&dc.bus);
                if (r >= 0)
                        r = sd_bus_set_address(dc.bus, bus_address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(dc.bus, true);
                if (r >= 0)
                        r = sd_bus_start(dc.bus);
                if (r >= 0)
                        r = sd_bus_match_signal(dc.bus, &slot, SERVICE, NULL, SERVICE ".Request", NULL, on_signal,
                                                &dc);
                if (r < 0)
                        die("connecting to the bus", r);
        }
        pthread_barrier_wait(run->barrier);
        for (unsigned i = 0; i < run->requests; i++) {
                bool ok = false;
                run->sum_ms += run->http ? http_request(hc, run->tokens, run->stream, &ok)
                                         : dbus_request(&dc, run->tokens, &ok);
                run->failed += !ok;
        }
        if (hc) {
                close(hc->fd);
                free(hc);
        }
        sd_bus_slot_unref(slot);
        sd_bus_flush_close_unref(dc.bus);
        return NULL;
}

static double gateway_cpu_ms(void)
{
        char path[64], line[1024];
        unsigned long utime = 0, stime = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/stat", gateway_pid);
        f = fopen(path, "re");
        if (!f || !fgets(line, sizeof(line), f))
                die("reading the gateway's /proc stat", errno);
        fclose(f);
        /* fields 14 and 15, counted after the command's closing parenthesis */
        char *p = strrchr(line, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
                die("parsing the gateway's /proc stat", EINVAL);
        return (double)(utime + stime) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

/* Mean ms per request over all clients; *cpu_ms the gateway's cpu time over the run. */
static double run_clients(unsigned n, bool http, bool stream, unsigned tokens, unsigned requests, double *cpu_ms)
{
        pthread_t th[MAX_CLIENTS];
        struct run runs[MAX_CLIENTS];
        pthread_barrier_t barrier;
        double sum = 0, cpu0 = gateway_cpu_ms();
        unsigned failed = 0;

        pthread_barrier_init(&barrier, NULL, n);
        for (unsigned i = 0; i < n; i++) {
                runs[i] = (struct run) { .http = http, .stream = stream, .tokens = tokens, .requests = requests,
                                         .barrier = &barrier };
                pthread_create(&th[i], NULL, client_thread, &runs[i]);
        }
        for (unsigned i = 0; i < n; i++) {
                pthread_join(th[i], NULL);
                sum += runs[i].sum_ms;
                failed += runs[i].failed;
        }
        pthread_barrier_destroy(&barrier);
        if (cpu_ms)
                *cpu_ms = gateway_cpu_ms() - cpu0;
        if (failed) {
                fprintf(stderr, "npud-http-bench: %u of %u %s requests failed or came back short\n", failed,
                        n * requests, http ? "HTTP" : "D-Bus");
                exit(1);
        }
        return sum / (n * requests);
}

int main(int argc, char **argv)
{
        unsigned clients[8] = { 1, 8 }, n_clients = 2, requests = 200, tokens = 64, rounds = 3;

        if (argc < 5) {
                fprintf(stderr, "usage: npud-http-bench BUS_ADDRESS SOCKET MODEL GATEWAY_PID [--clients 1,8] "
                                "[--requests R] [--tokens T] [--rounds N]\n");
                return 2;
        }
        bus_address = argv[1];
        sock_path = argv[2];
        model = argv[3];
        gateway_pid = atoi(argv[4]);
        for (int i = 5; i + 1 < argc; i += 2) {
                if (!strcmp(argv[i], "--clients")) {
                        n_clients = 0;
                        for (char *s = strtok(argv[i + 1], ","); s && n_clients < 8; s = strtok(NULL, ","))
                                clients[n_clients++] = (unsigned)atoi(s);
                } else if (!strcmp(argv[i], "--requests")) {
                        requests = (unsigned)atoi(argv[i + 1]);
                } else if (!strcmp(argv[i], "--tokens")) {
                        tokens = (unsigned)atoi(argv[i + 1]);
                } else if (!strcmp(argv[i], "--rounds")) {
                        rounds = (unsigned)atoi(argv[i + 1]);
                } else {
                        fprintf(stderr, "npud-http-bench: unknown option %s\n", argv[i]);
                        return 2;
                }
        }
        for (unsigned i = 0; i < n_clients; i++)
                if (clients[i] < 1 || clients[i] > MAX_CLIENTS || tokens < 2 || requests < 1 || rounds < 1) {
                        fprintf(stderr, "npud-http-bench: clients 1..%d, tokens >= 2, requests >= 1\n",
                                MAX_CLIENTS);
                        return 2;
                }

        printf("npud-http's added latency against direct D-Bus (%s, %u requests per client and round, "
               "%u rounds, %u-token streams)\n\n", model, requests, rounds, tokens);
        printf("| clients | D-Bus ms/req | HTTP ms/req | added ms/req | HTTP stream ms/req | added ms/stream | "
               "D-Bus ms/%u tok | HTTP ms/%u tok | added ms/token | gateway cpu ms/req | gateway cpu ms/token |\n",
               tokens, tokens);
        printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (unsigned c = 0; c < n_clients; c++) {
                unsigned n = clients[c], req_t = requests / 4 ? requests / 4 : 1;
                double d1 = 0, h1 = 0, h1s = 0, dt = 0, ht = 0, cpu1 = 0, cpu1s = 0, cput = 0, cpu;
                /* warm up both paths (connections, prefix cache) */
                run_clients(n, false, false, 2, 2, NULL);
                run_clients(n, true, true, 2, 2, NULL);
                for (unsigned k = 0; k < rounds; k++) {
                        d1 += run_clients(n, false, false, 1, requests, NULL);
                        h1 += run_clients(n, true, false, 1, requests, &cpu);
                        cpu1 += cpu;
                        h1s += run_clients(n, true, true, 1, requests, &cpu);
                        cpu1s += cpu;
                        dt += run_clients(n, false, true, tokens, req_t, NULL);
                        ht += run_clients(n, true, true, tokens, req_t, &cpu);
                        cput += cpu;
                }
                d1 /= rounds, h1 /= rounds, h1s /= rounds, dt /= rounds, ht /= rounds;
                double cpu_req = cpu1 / ((double)rounds * n * requests);
                double cpu_req_s = cpu1s / ((double)rounds * n * requests);
                double cpu_req_t = cput / ((double)rounds * n * req_t);
                printf("| %u | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f | %.2f | %.4f | %.3f | %.4f |\n", n, d1, h1,
                       h1 - d1, h1s, h1s - d1, dt, ht, ((ht - h1s) - (dt - d1)) / (tokens - 1), cpu_req,
                       (cpu_req_t - cpu_req_s) / (tokens - 1));
                fflush(stdout);
        }
        printf("\ntargets: added < 1 ms per request, < 0.1 ms per token. \"added\" is the difference of means of\n"
               "runs on a shared machine; the gateway's cpu time is what it spends itself.\n");
        return 0;
}
