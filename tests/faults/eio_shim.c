/* LD_PRELOAD shim of tests/faults.rs: fsync and fdatasync fail with EIO while the
 * file named by TINYMTA_EIO_MARKER exists, as a dying flash or disk answers. Without
 * the variable, or without the file, the real calls run. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void) {
    const char *marker = getenv("TINYMTA_EIO_MARKER");
    return marker != NULL && access(marker, F_OK) == 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
