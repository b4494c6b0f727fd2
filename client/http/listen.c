/* SPDX-License-Identifier: MIT */
/*
 * The listening sockets: a Unix socket (the default, in the user's runtime
 * directory, reachable only by the user), or TCP on the loopback interface,
 * where every request needs the bearer key. Sockets systemd passes (socket
 * activation) are taken as they are, after the same loopback check.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "gateway.h"

#define LISTEN_BACKLOG 128

static bool sockaddr_is_loopback(const struct sockaddr_storage *ss)
{
        if (ss->ss_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
                return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
        }
        if (ss->ss_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
                if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
                        return true;
                /* ::ffff:127.x.y.z */
                return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
        }
        return false;
}

static int listen_unix(const char *path, struct listen_spec *ret)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        struct stat st;
        mode_t old;
        int r;

        if (path[0] != '/' || strlen(path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "npud-http: unix:%s: an absolute path of at most %zu bytes\n", path,
                        sizeof(sa.sun_path) - 1);
                return -EINVAL;
        }
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* a socket file left by an earlier run goes; anything else stays and is an error */
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
                unlink(path);
        old = umask(0177); /* the socket is born 0600: no moment in which others may connect */
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (r < 0) {
                r = -errno;
                fprintf(stderr, "npud-http: cannot bind %s: %s\n", path, strerror(-r));
                return r;
        }
        if (listen(fd, LISTEN_BACKLOG) < 0) {
                r = -errno;
                unlink(path);
                return r;
        }
        ret->unix_path = strdup(path);
        if (!ret->unix_path) {
                unlink(path);
                return -ENOMEM;
        }
        ret->tcp = false;
        ret->fd = TAKE_FD(fd);
        return 0;
}

/* HOST:PORT, HOST being 127.x.y.z, localhost, or [::1]. */
static int parse_tcp(const char *value, struct sockaddr_storage *ss, socklen_t *len)
{
        _cleanup_free_ char *host = NULL;
        const char *colon;
        char *end;
        unsigned long port;

        if (value[0] == '[') {
                const char *close = strchr(value, ']');
                if (!close || close[1] != ':')
                        return -EINVAL;
                host = strndup(value + 1, close - value - 1);
                colon = close + 1;
        } else {
                colon = strrchr(value, ':');
                if (!colon)
                        return -EINVAL;
                host = strndup(value, colon - value);
        }
        if (!host)
                return -ENOMEM;
        errno = 0;
        port = strtoul(colon + 1, &end, 10);
        if (errno || *end || end == colon + 1 || port > 65535)
                return -EINVAL;
        memset(ss, 0, sizeof(*ss));
        if (strcmp(host, "localhost") == 0)
                strcpy(host, "127.0.0.1");
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
                in->sin_family = AF_INET;
                in->sin_port = htons(port);
                *len = sizeof(*in);
        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
                *len = sizeof(*in6);
        } else {
                return -EINVAL;
        }
        return 0;
}

static int listen_tcp(const char *value, struct listen_spec *ret)
{
        struct sockaddr_storage ss;
        socklen_t len;
        _cleanup_close_ int fd = -1;
        int one = 1, r;

        r = parse_tcp(value, &ss, &len);
        if (r < 0) {
                fprintf(stderr, "npud-http: --listen %s: expected 127.0.0.1:PORT, [::1]:PORT, localhost:PORT or "
                                "unix:PATH\n", value);
                return r;
        }
        if (!sockaddr_is_loopback(&ss)) {
                fprintf(stderr, "npud-http: --listen %s: only loopback addresses: the gateway acts as you\n",
                        value);
                return -EINVAL;
        }
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
                r = -errno;
                fprintf(stderr, "npud-http: cannot listen on %s: %s\n", value, strerror(-r));
                return r;
        }
        ret->tcp = true;
        ret->unix_path = NULL;
        ret->fd = TAKE_FD(fd);
        return 0;
}

int listen_open(const char *value, struct listen_spec *ret)
{
        if (strncmp(value, "unix:", 5) == 0)
                return listen_unix(value + 5, ret);
        return listen_tcp(value, ret);
}

int listen_open_default(struct listen_spec *ret)
{
        const char *rt = getenv("XDG_RUNTIME_DIR");
        _cleanup_free_ char *dir = NULL, *path = NULL;

        if (!rt || rt[0] != '/') {
                fprintf(stderr, "npud-http: XDG_RUNTIME_DIR is not set: give --listen\n");
                return -EINVAL;
        }
        if (asprintf(&dir, "%s/npud", rt) < 0 || asprintf(&path, "%s/http.sock", dir) < 0)
                return -ENOMEM;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        return listen_unix(path, ret);
}

int listen_adopt(int fd, struct listen_spec *ret)
{
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int type;
        socklen_t tlen = sizeof(type);

        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0)
                return -errno;
        if (type != SOCK_STREAM) {
                fprintf(stderr, "npud-http: passed descriptor %d is not a stream socket\n", fd);
                return -EINVAL;
        }
        if (ss.ss_family == AF_UNIX) {
                ret->tcp = false;
        } else if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
                if (!sockaddr_is_loopback(&ss)) {
                        fprintf(stderr, "npud-http: passed socket %d is not on a loopback address: refused, the "
                                        "gateway acts as you\n", fd);
                        return -EINVAL;
                }
                ret->tcp = true;
        } else {
                fprintf(stderr, "npud-http: passed descriptor %d is neither a Unix nor a TCP socket\n", fd);
                return -EINVAL;
        }
        ret->unix_path = NULL; /* systemd's: it stays */
        ret->fd = fd;
        return 0;
}
