/* SPDX-License-Identifier: MIT */
/*
 * The bearer key of TCP listeners. Any local user can connect to a loopback
 * port, so a request there must prove it comes from someone who can read the
 * key file (mode 0600 in the user's configuration directory). The file is made
 * on first start with 32 random bytes in hex; a file that others may read, or
 * that is not ours, is refused rather than trusted.
 */
#include <fcntl.h>
#include <pwd.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "gateway.h"

#define KEY_BYTES 32
#define KEY_MAX 1024

int key_default_path(char **ret)
{
        const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
        char *p;

        if (xdg && xdg[0] == '/') {
                if (asprintf(&p, "%s/npud/http.key", xdg) < 0)
                        return -ENOMEM;
        } else {
                if (!home || home[0] != '/') {
                        struct passwd *pw = getpwuid(getuid());
                        home = pw ? pw->pw_dir : NULL;
                }
                if (!home || home[0] != '/')
                        return -ENOENT;
                if (asprintf(&p, "%s/.config/npud/http.key", home) < 0)
                        return -ENOMEM;
        }
        *ret = p;
        return 0;
}

/* mkdir -p of path's parent directories, each new one 0700. */
static int mkdir_parents(const char *path)
{
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        for (char *s = strchr(dir + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = 0;
                if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        return 0;
}

static int key_create(const char *path)
{
        uint8_t raw[KEY_BYTES];
        char hex[2 * KEY_BYTES + 2];
        _cleanup_close_ int fd = -1;
        int r;

        if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
                return -EIO;
        for (size_t i = 0; i < KEY_BYTES; i++)
                snprintf(hex + 2 * i, 3, "%02x", raw[i]);
        hex[2 * KEY_BYTES] = '\n';
        hex[2 * KEY_BYTES + 1] = 0;
        r = mkdir_parents(path);
        if (r < 0)
                return r;
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno; /* EEXIST: another start made it first; it is read next */
        if (write(fd, hex, 2 * KEY_BYTES + 1) != 2 * KEY_BYTES + 1 || fsync(fd) < 0) {
                r = errno ? -errno : -EIO;
                unlink(path);
                return r;
        }
        fprintf(stderr, "npud-http: created the API key %s\n", path);
        return 0;
}

static int key_read(const char *path, char **ret)
{
        _cleanup_close_ int fd = -1;
        char data[KEY_MAX + 1];
        struct stat st;
        ssize_t n;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode)) {
                fprintf(stderr, "npud-http: %s is not a regular file\n", path);
                return -EINVAL;
        }
        if (st.st_uid != geteuid() || (st.st_mode & 0077)) {
                fprintf(stderr, "npud-http: %s must belong to us and have mode 0600 (it has %04o, uid %u)\n",
                        path, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
                return -EPERM;
        }
        n = read(fd, data, KEY_MAX);
        if (n < 0)
                return -errno;
        data[n] = 0;
        /* one line; surrounding white space is not part of it */
        size_t len = strcspn(data, "\r\n");
        data[len] = 0;
        while (len && (data[len - 1] == ' ' || data[len - 1] == '\t'))
                data[--len] = 0;
        char *start = data + strspn(data, " \t");
        len = strlen(start);
        if (len < 16) {
                fprintf(stderr, "npud-http: the key in %s is shorter than 16 characters\n", path);
                return -EINVAL;
        }
        for (size_t i = 0; i < len; i++)
                if (start[i] <= ' ' || start[i] > '~') {
                        fprintf(stderr, "npud-http: the key in %s has characters other than printable ASCII\n",
                                path);
                        return -EINVAL;
                }
        *ret = strdup(start);
        return *ret ? 0 : -ENOMEM;
}

int key_load_or_create(const char *path, char **ret)
{
        int r = key_read(path, ret);
        if (r != -ENOENT)
                return r;
        r = key_create(path);
        if (r < 0 && r != -EEXIST)
                return r;
        return key_read(path, ret);
}

bool key_matches(const char *key, const char *authorization)
{
        const char *given;
        size_t klen, glen;
        unsigned char diff = 0;

        if (!key || !authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
                return false;
        given = authorization + 7;
        given += strspn(given, " ");
        klen = strlen(key);
        glen = strcspn(given, " \t");
        if (given[glen + strspn(given + glen, " \t")])
                return false; /* more than one word */
        /* every byte of the key is compared, whatever the given one is */
        for (size_t i = 0; i < klen; i++)
                diff |= (unsigned char)key[i] ^ (unsigned char)(i < glen ? given[i] : 0);
        return diff == 0 && glen == klen;
}
