/* LD_PRELOAD shim of tests/faults.rs, as a dying flash or disk answers: fsync and
 * fdatasync fail with EIO while the file named by TINYMTA_EIO_MARKER exists (only
 * on directories when that file says "dirs": the fsync after a rename), and
 * read() of a queue file (a descriptor open on .../queue/messages/...) fails with EIO
 * while the file named by TINYMTA_EIO_READ_MARKER exists. Without the variables, or
 * without the files, the real calls run. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int marked(const char *var) {
    const char *marker = getenv(var);
    return marker != NULL && access(marker, F_OK) == 0;
}

static int failing(int fd) {
    if (!marked("TINYMTA_EIO_MARKER"))
        return 0;
    char what[8] = {0};
    FILE *f = fopen(getenv("TINYMTA_EIO_MARKER"), "r");
    if (f) {
        if (!fgets(what, sizeof what, f))
            what[0] = 0;
        fclose(f);
    }
    struct stat st;
    if (strncmp(what, "dirs", 4) == 0)
        return fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    return 1;
}

static int is_queue_file(int fd) {
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0)
        return 0;
    path[n] = 0;
    return strstr(path, "/queue/messages/") != NULL;
}

ssize_t read(int fd, void *buf, size_t count) {
    static ssize_t (*real)(int, void *, size_t);
    if (marked("TINYMTA_EIO_READ_MARKER") && is_queue_file(fd)) {
        errno = EIO;
        return -1;
    }
    if (!real)
        real = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    return real(fd, buf, count);
}

int fsync(int fd) {
    static int (*real)(int);
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
