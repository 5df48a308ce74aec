#define _GNU_SOURCE
#include "formats/file.h"
#include "formats/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

fm_err fm_file_open(fm_file *f, const char *path, int flags, fm_error *e)
{
    f->fd = -1;
    f->size = 0;
    f->path = NULL;
    int oflags = O_RDONLY | O_CLOEXEC | O_NONBLOCK; /* never block on a FIFO; no effect on regular files */
    if (flags & FM_FILE_DIRECT) oflags |= O_DIRECT;
    int fd = open(path, oflags);
    if (fd < 0) return fm_error_set(e, FM_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return fm_error_set(e, FM_E_IO, "%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fm_error_set(e, FM_E_IO, "%s: not a regular file", path);
    }
    f->path = strdup(path);
    if (!f->path) {
        close(fd);
        return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
    }
    f->fd = fd;
    f->size = (uint64_t)st.st_size;
    return FM_OK;
}

fm_err fm_file_pread(const fm_file *f, void *buf, size_t n, uint64_t off, fm_error *e)
{
    uint64_t end;
    if (!fm_add_u64(off, n, &end) || end > f->size)
        return fm_error_set(e, FM_E_FORMAT,
                            "%s: truncated: need bytes [%llu, %llu) but file has %llu", f->path,
                            (unsigned long long)off, (unsigned long long)off + n,
                            (unsigned long long)f->size);
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = pread(f->fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return fm_error_set(e, FM_E_IO, "%s: read at %llu failed: %s", f->path,
                                (unsigned long long)off, strerror(errno));
        }
        if (r == 0)
            return fm_error_set(e, FM_E_FORMAT, "%s: unexpected end of file at %llu", f->path,
                                (unsigned long long)off);
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return FM_OK;
}

void fm_file_close(fm_file *f)
{
    if (f->fd >= 0) close(f->fd);
    free(f->path);
    f->fd = -1;
    f->path = NULL;
    f->size = 0;
}

fm_err fm_file_slurp(const char *path, size_t cap, char **out, size_t *len, fm_error *e)
{
    fm_file f;
    fm_err rc = fm_file_open(&f, path, 0, e);
    if (rc) return rc;
    if (f.size > cap) {
        fm_file_close(&f);
        return fm_error_set(e, FM_E_RANGE, "%s: %llu bytes exceeds the cap of %zu", path,
                            (unsigned long long)f.size, cap);
    }
    char *buf = malloc((size_t)f.size + 1);
    if (!buf) {
        fm_file_close(&f);
        return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
    }
    rc = fm_file_pread(&f, buf, (size_t)f.size, 0, e);
    if (rc) {
        free(buf);
        fm_file_close(&f);
        return rc;
    }
    buf[f.size] = '\0';
    *out = buf;
    if (len) *len = (size_t)f.size;
    fm_file_close(&f);
    return FM_OK;
}

static fm_err fsync_dir_of(const char *path, fm_error *e)
{
    char *copy = strdup(path);
    if (!copy) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        fm_err rc = fm_error_set(e, FM_E_IO, "%s: cannot open directory: %s", dir, strerror(errno));
        free(copy);
        return rc;
    }
    int r = fsync(fd);
    int err = errno;
    close(fd);
    fm_err rc = FM_OK;
    if (r != 0 && err != EINVAL) rc = fm_error_set(e, FM_E_IO, "%s: fsync: %s", dir, strerror(err));
    free(copy);
    return rc;
}

fm_err fm_outfile_open(fm_outfile *o, const char *path, bool force, fm_error *e)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    struct stat st;
    if (!force && stat(path, &st) == 0)
        return fm_error_set(e, FM_E_EXISTS, "%s: already exists (use --force to overwrite)", path);
    size_t n = strlen(path);
    o->path = strdup(path);
    o->tmp_path = malloc(n + 5);
    if (!o->path || !o->tmp_path) {
        fm_outfile_abort(o);
        return fm_error_set(e, FM_E_NOMEM, "out of memory");
    }
    memcpy(o->tmp_path, path, n);
    memcpy(o->tmp_path + n, ".tmp", 5);
    o->fd = open(o->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        fm_err rc = fm_error_set(e, FM_E_IO, "%s: cannot create: %s", o->tmp_path, strerror(errno));
        free(o->path);
        free(o->tmp_path);
        memset(o, 0, sizeof *o);
        o->fd = -1;
        return rc;
    }
    return FM_OK;
}

fm_err fm_outfile_pwrite(fm_outfile *o, const void *buf, size_t n, uint64_t off, fm_error *e)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(o->fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return fm_error_set(e, FM_E_IO, "%s: write at %llu failed: %s", o->tmp_path,
                                (unsigned long long)off, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return FM_OK;
}

fm_err fm_outfile_write(fm_outfile *o, const void *buf, size_t n, fm_error *e)
{
    fm_err rc = fm_outfile_pwrite(o, buf, n, o->pos, e);
    if (rc == FM_OK) o->pos += n;
    return rc;
}

fm_err fm_outfile_pad_to(fm_outfile *o, uint64_t offset, fm_error *e)
{
    static const uint8_t zeros[4096];
    if (offset < o->pos) return fm_error_set(e, FM_E_INTERNAL, "pad_to going backwards");
    while (o->pos < offset) {
        uint64_t n = offset - o->pos;
        if (n > sizeof zeros) n = sizeof zeros;
        fm_err rc = fm_outfile_write(o, zeros, (size_t)n, e);
        if (rc) return rc;
    }
    return FM_OK;
}

fm_err fm_outfile_commit(fm_outfile *o, fm_error *e)
{
    fm_err rc = FM_OK;
    if (fsync(o->fd) != 0) rc = fm_error_set(e, FM_E_IO, "%s: fsync: %s", o->tmp_path, strerror(errno));
    if (close(o->fd) != 0 && rc == FM_OK)
        rc = fm_error_set(e, FM_E_IO, "%s: close: %s", o->tmp_path, strerror(errno));
    o->fd = -1;
    if (rc == FM_OK && rename(o->tmp_path, o->path) != 0)
        rc = fm_error_set(e, FM_E_IO, "%s: rename to %s: %s", o->tmp_path, o->path, strerror(errno));
    if (rc == FM_OK) rc = fsync_dir_of(o->path, e);
    if (rc != FM_OK) unlink(o->tmp_path);
    free(o->path);
    free(o->tmp_path);
    o->path = o->tmp_path = NULL;
    return rc;
}

void fm_outfile_abort(fm_outfile *o)
{
    if (o->fd >= 0) close(o->fd);
    if (o->tmp_path) unlink(o->tmp_path);
    free(o->path);
    free(o->tmp_path);
    o->fd = -1;
    o->path = o->tmp_path = NULL;
}
