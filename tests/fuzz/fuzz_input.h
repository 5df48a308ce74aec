/* Shared by fuzz targets whose parser takes a path: the input becomes a
 * file, a memfd where /proc/self/fd works, else a temp file. Returns the
 * path in *path (valid until the next call), or NULL on failure. */
#ifndef FM_FUZZ_INPUT_H
#define FM_FUZZ_INPUT_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

static inline const char *fuzz_input_file(const char *tag, const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[96];
    if (fd < 0) {
        fd = memfd_create(tag, MFD_CLOEXEC);
        if (fd >= 0) {
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            if (access(path, R_OK) != 0) {
                close(fd);
                fd = -1;
            }
        }
        if (fd < 0) {
            snprintf(path, sizeof path, "/tmp/%s-%ld", tag, (long)getpid());
            fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fd < 0) return NULL;
        }
    }
    if (ftruncate(fd, 0) != 0) return NULL;
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(fd, data + done, size - done, (off_t)done);
        if (w <= 0) return NULL;
        done += (size_t)w;
    }
    return path;
}

#endif
