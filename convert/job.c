/* Shared converter job pieces (see job.h). _GNU_SOURCE for sync_file_range. */
#define _GNU_SOURCE
#include <stdbool.h>
#include "convert/job.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "formats/file.h"
#include "formats/sha256.h"
#include "formats/util.h"

#define HASH_CHUNK (8u << 20)

struct fm_hash_job {
    pthread_t th;
    bool started;
    char **paths;
    size_t n;
    uint8_t (*dig)[32];
    _Atomic uint64_t done;
    uint64_t total;
    atomic_bool cancel;
    bool drop;
    fm_err rc;
    fm_error err;
};

/* With drop set, the file is read with O_DIRECT (whole aligned chunks; the
 * unaligned tail through the page cache): a hash pass running beside the
 * conversion then neither fills the page cache nor evicts pages the
 * conversion is about to use. Without O_DIRECT (refused by the file system)
 * it reads through the cache and drops each chunk behind itself. */
static fm_err hash_one(fm_hash_job *j, const char *path, uint8_t *buf, uint8_t out[32])
{
    fm_file f = FM_FILE_INIT, fd = FM_FILE_INIT;
    fm_sha256 h;
    fm_err rc = fm_file_open(&f, path, 0, &j->err);
    if (rc) return rc;
    bool direct = j->drop && fm_file_open(&fd, path, FM_FILE_DIRECT, NULL) == FM_OK;
    if ((rc = fm_sha256_init(&h, &j->err))) goto out;
    if (!direct) (void)posix_fadvise(f.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    uint64_t aligned = direct ? f.size & ~(uint64_t)4095 : 0;
    for (uint64_t off = 0; off < f.size && !rc; off += HASH_CHUNK) {
        if (atomic_load(&j->cancel)) {
            rc = fm_error_set(&j->err, FM_E_ARG, "cancelled");
            break;
        }
        size_t k = f.size - off < HASH_CHUNK ? (size_t)(f.size - off) : HASH_CHUNK;
        if (off + k <= aligned) {
            rc = fm_file_pread(&fd, buf, k, off, &j->err);
        } else if (off < aligned) { /* aligned head direct, tail cached */
            size_t a = (size_t)(aligned - off);
            rc = fm_file_pread(&fd, buf, a, off, &j->err);
            if (!rc) rc = fm_file_pread(&f, buf + a, k - a, aligned, &j->err);
        } else {
            rc = fm_file_pread(&f, buf, k, off, &j->err);
        }
        if (rc) break;
        fm_sha256_update(&h, buf, k);
        if (j->drop && !direct) (void)posix_fadvise(f.fd, (off_t)off, (off_t)k, POSIX_FADV_DONTNEED);
        atomic_fetch_add(&j->done, (uint64_t)k);
    }
    if (!rc) fm_sha256_final(&h, out);
    else fm_sha256_free(&h);
out:
    fm_file_close(&f);
    fm_file_close(&fd);
    return rc;
}

static void *hash_main(void *arg)
{
    fm_hash_job *j = arg;
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, HASH_CHUNK) != 0) {
        j->rc = fm_error_set(&j->err, FM_E_NOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < j->n && !j->rc; i++) j->rc = hash_one(j, j->paths[i], buf, j->dig[i]);
    free(buf);
    return NULL;
}

static void hash_free(fm_hash_job *j)
{
    for (size_t i = 0; i < j->n; i++) free(j->paths[i]);
    free(j->paths);
    free(j->dig);
    free(j);
}

fm_err fm_hash_job_start(fm_hash_job **out, const char *const *paths, size_t n, bool drop_cache, fm_error *e)
{
    *out = NULL;
    fm_hash_job *j = calloc(1, sizeof *j);
    if (!j) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    j->drop = drop_cache;
    j->paths = calloc(n ? n : 1, sizeof *j->paths);
    j->dig = calloc(n ? n : 1, sizeof *j->dig);
    if (!j->paths || !j->dig) {
        hash_free(j);
        return fm_error_set(e, FM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (!(j->paths[i] = strdup(paths[i]))) {
            j->n = i;
            hash_free(j);
            return fm_error_set(e, FM_E_NOMEM, "out of memory");
        }
        j->n = i + 1;
        fm_file f = FM_FILE_INIT;
        if (fm_file_open(&f, paths[i], 0, NULL) == FM_OK) {
            j->total += f.size;
            fm_file_close(&f);
        }
    }
    if (pthread_create(&j->th, NULL, hash_main, j) != 0) {
        hash_free(j);
        return fm_error_set(e, FM_E_NOMEM, "cannot start the hashing thread");
    }
    j->started = true;
    *out = j;
    return FM_OK;
}

void fm_hash_job_progress(const fm_hash_job *j, uint64_t *done, uint64_t *total)
{
    *done = atomic_load(&((fm_hash_job *)j)->done);
    *total = j->total;
}

fm_err fm_hash_job_finish(fm_hash_job *j, uint8_t (*digests)[32], fm_error *e)
{
    if (j->started) pthread_join(j->th, NULL);
    fm_err rc = j->rc;
    if (rc) {
        if (e) *e = j->err;
    } else {
        memcpy(digests, j->dig, j->n * sizeof *j->dig);
    }
    hash_free(j);
    return rc;
}

void fm_hash_job_cancel(fm_hash_job *j)
{
    if (!j) return;
    atomic_store(&j->cancel, true);
    if (j->started) pthread_join(j->th, NULL);
    hash_free(j);
}

/* ---------------------------------------------------------------- direct reads */

#define DIRECT_ALIGN 4096u

static fm_err raw_pread(int fd, uint8_t *p, size_t n, uint64_t off, size_t need, const char *what, fm_error *e)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, p + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return fm_error_set(e, FM_E_IO, "%s: read at %llu: %s", what, (unsigned long long)(off + got), strerror(errno));
        if (r == 0) break;
        got += (size_t)r;
        if (got % DIRECT_ALIGN) break; /* a short direct read: end of file */
    }
    if (got < need)
        return fm_error_set(e, FM_E_FORMAT, "%s: truncated: %zu of %zu bytes at %llu", what, got, need, (unsigned long long)off);
    return FM_OK;
}

fm_err fm_pread_direct(int dfd, uint64_t file_size, void *buf, size_t len, uint64_t off, const char *what, fm_error *e)
{
    if (len == 0) return FM_OK;
    uint64_t end;
    if (!fm_add_u64(off, len, &end) || end > file_size)
        return fm_error_set(e, FM_E_FORMAT, "%s: %zu bytes at %llu run past the end (%llu bytes)", what, len,
                            (unsigned long long)off, (unsigned long long)file_size);
    uint64_t a0 = off & ~(uint64_t)(DIRECT_ALIGN - 1), a1 = (end + DIRECT_ALIGN - 1) & ~(uint64_t)(DIRECT_ALIGN - 1);
    if (a0 == off && a1 == end && ((uintptr_t)buf & (DIRECT_ALIGN - 1)) == 0)
        return raw_pread(dfd, buf, len, off, len, what, e);
    void *bounce = NULL;
    if (posix_memalign(&bounce, DIRECT_ALIGN, (size_t)(a1 - a0)) != 0)
        return fm_error_set(e, FM_E_NOMEM, "%s: out of memory (%llu bytes)", what, (unsigned long long)(a1 - a0));
    fm_err rc = raw_pread(dfd, bounce, (size_t)(a1 - a0), a0, (size_t)(end - a0), what, e);
    if (!rc) memcpy(buf, (uint8_t *)bounce + (off - a0), len);
    free(bounce);
    return rc;
}

/* ---------------------------------------------------------------- outcache */

void fm_outcache_open(fm_outcache *c, const char *path, uint64_t step)
{
    c->fd = open(path, O_RDONLY | O_CLOEXEC);
    c->step = step ? step : (64u << 20);
    c->issued = c->dropped = 0;
}

void fm_outcache_advance(fm_outcache *c, uint64_t pos)
{
    if (c->fd < 0 || pos < c->issued + c->step) return;
    /* start writeback of the new bytes */
    if (sync_file_range(c->fd, (off64_t)c->issued, (off64_t)(pos - c->issued), SYNC_FILE_RANGE_WRITE) != 0) {
        close(c->fd);
        c->fd = -1;
        return;
    }
    /* wait for the step before it and drop it */
    if (c->issued > c->dropped) {
        (void)sync_file_range(c->fd, (off64_t)c->dropped, (off64_t)(c->issued - c->dropped),
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
        (void)posix_fadvise(c->fd, (off_t)c->dropped, (off_t)(c->issued - c->dropped), POSIX_FADV_DONTNEED);
        c->dropped = c->issued;
    }
    c->issued = pos;
}

void fm_outcache_close(fm_outcache *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

/* ---------------------------------------------------------------- provenance */

json_t *fm_provenance_new(const char *tool, int argc, char **argv)
{
    json_t *p = json_object(), *cmd = json_array();
    if (!p || !cmd) {
        json_decref(p);
        json_decref(cmd);
        return NULL;
    }
    for (int i = 0; i < argc; i++) json_array_append_new(cmd, json_string(argv[i]));
    time_t t = time(NULL);
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    if (sde && *sde) {
        char *end;
        long long v = strtoll(sde, &end, 10);
        if (*end == 0 && v >= 0) t = (time_t)v;
    }
    struct tm tm;
    char buf[32] = "1970-01-01T00:00:00Z";
    if (gmtime_r(&t, &tm)) strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new(p, "tool", json_string(tool));
    json_object_set_new(p, "version", json_string(FM_CONVERT_VERSION));
    json_object_set_new(p, "command", cmd);
    json_object_set_new(p, "created", json_string(buf));
    json_object_set_new(p, "sources", json_array());
    return p;
}

void fm_provenance_add_source(json_t *prov, const char *name, uint64_t size, const uint8_t sha[32])
{
    char hex[65];
    fm_sha256_hex(sha, hex);
    json_t *s = json_object();
    json_object_set_new(s, "name", json_string(name));
    json_object_set_new(s, "size", json_integer((json_int_t)size));
    json_object_set_new(s, "sha256", json_string(hex));
    json_array_append_new(json_object_get(prov, "sources"), s);
}
