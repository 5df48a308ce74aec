/* Files: a read handle with checked pread, and an atomic output file
 * (write name.tmp, fsync, rename, fsync the directory). */
#ifndef FM_FILE_H
#define FM_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/err.h"

enum { FM_FILE_DIRECT = 1 }; /* open with O_DIRECT (falls back with an error if refused) */

typedef struct fm_file {
    int fd;
    uint64_t size;
    char *path;
} fm_file;

#define FM_FILE_INIT {-1, 0, NULL}

fm_err fm_file_open(fm_file *f, const char *path, int flags, fm_error *e);
/* Reads exactly n bytes at off; a range beyond the end of file is FM_E_FORMAT
 * ("truncated"), an OS error FM_E_IO. Retries on EINTR and short reads. */
fm_err fm_file_pread(const fm_file *f, void *buf, size_t n, uint64_t off, fm_error *e);
void fm_file_close(fm_file *f);

/* Reads a whole (small) file into a NUL-terminated malloc'd buffer, refusing
 * files larger than cap bytes. */
fm_err fm_file_slurp(const char *path, size_t cap, char **out, size_t *len, fm_error *e);

typedef struct fm_outfile {
    int fd;
    char *path;     /* final name */
    char *tmp_path; /* path + ".tmp" */
    uint64_t pos;   /* bytes written by fm_outfile_write */
} fm_outfile;

/* Creates path.tmp. Refuses (FM_E_EXISTS) when path exists and !force. */
fm_err fm_outfile_open(fm_outfile *o, const char *path, bool force, fm_error *e);
fm_err fm_outfile_write(fm_outfile *o, const void *buf, size_t n, fm_error *e);
fm_err fm_outfile_pwrite(fm_outfile *o, const void *buf, size_t n, uint64_t off, fm_error *e);
/* Writes zero bytes up to offset (pos must be <= offset). */
fm_err fm_outfile_pad_to(fm_outfile *o, uint64_t offset, fm_error *e);
/* fsync, rename tmp -> final, fsync directory. Frees o. */
fm_err fm_outfile_commit(fm_outfile *o, fm_error *e);
/* Closes and unlinks the tmp file. Safe on a zeroed or committed o. */
void fm_outfile_abort(fm_outfile *o);

#endif
