/* Pieces shared by fm-convert and fm-requant: hashing the input files in a
 * background thread, keeping the page cache of a big streamed output in
 * check, and the manifest's provenance object. */
#ifndef FM_CONVERT_JOB_H
#define FM_CONVERT_JOB_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/err.h"

#define FM_CONVERT_VERSION "0.1.0"

/* SHA-256 of files, sequentially, in a thread of its own. With drop_cache,
 * the files are read with O_DIRECT where the file system allows (else
 * through the page cache, dropping each chunk behind: posix_fadvise
 * DONTNEED), so that hashing beside a conversion neither fills the page
 * cache nor evicts what the conversion reads. */
typedef struct fm_hash_job fm_hash_job;

fm_err fm_hash_job_start(fm_hash_job **out, const char *const *paths, size_t n, bool drop_cache, fm_error *e);
/* Bytes hashed so far and in all (for progress; any thread). */
void fm_hash_job_progress(const fm_hash_job *j, uint64_t *done, uint64_t *total);
/* Waits; digests[i] gets file i's SHA-256. Frees the job. */
fm_err fm_hash_job_finish(fm_hash_job *j, uint8_t (*digests)[32], fm_error *e);
/* Stops early and frees (after an error elsewhere). */
void fm_hash_job_cancel(fm_hash_job *j);

/* Reads [off, off + len) through an O_DIRECT descriptor dfd of a file of
 * file_size bytes, so that a conversion bigger than memory does not fill the
 * page cache: the enclosing 4096-aligned range goes through an aligned
 * bounce buffer (or straight into buf when everything is aligned). A range
 * beyond file_size is FM_E_FORMAT; what names the file in messages. */
fm_err fm_pread_direct(int dfd, uint64_t file_size, void *buf, size_t len, uint64_t off, const char *what,
                       fm_error *e);

/* Keeps the page cache of a file being appended to small: starts writeback
 * of each new `step` bytes and drops the previous step once written, so a
 * conversion under a memory limit does not fill its cgroup with dirty pages.
 * Opens its own read-only descriptor on path (e.g. OUT.tmp). Best effort:
 * failures only disable it. */
typedef struct fm_outcache {
    int fd;
    uint64_t step, issued, dropped;
} fm_outcache;

void fm_outcache_open(fm_outcache *c, const char *path, uint64_t step);
void fm_outcache_advance(fm_outcache *c, uint64_t pos);
void fm_outcache_close(fm_outcache *c);

/* {"tool", "version", "command": [argv...], "created": ISO 8601 UTC (from
 * $SOURCE_DATE_EPOCH when set, for reproducible output), "sources": []}. */
json_t *fm_provenance_new(const char *tool, int argc, char **argv);
/* Appends {"name", "size", "sha256"} to "sources". */
void fm_provenance_add_source(json_t *prov, const char *name, uint64_t size, const uint8_t sha[32]);

#endif
