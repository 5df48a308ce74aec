/* fm error values. Codes are pinned: never renumber, only append. */
#ifndef FM_ERR_H
#define FM_ERR_H

#include <stddef.h>

typedef enum fm_err {
    FM_OK = 0,
    FM_E_IO = 1,          /* open/read/write/fsync/rename failed */
    FM_E_NOMEM = 2,       /* allocation failed or would exceed a cap */
    FM_E_FORMAT = 3,      /* input violates its format specification */
    FM_E_UNSUPPORTED = 4, /* well-formed but not supported (type, arch, feature) */
    FM_E_RANGE = 5,       /* arithmetic overflow or value out of allowed range */
    FM_E_ARG = 6,         /* bad argument from the caller */
    FM_E_NOTFOUND = 7,    /* named tensor/key/member does not exist */
    FM_E_CHECKSUM = 8,    /* SHA-256 mismatch */
    FM_E_VERSION = 9,     /* unknown major version */
    FM_E_EXISTS = 10,     /* output exists and --force not given */
    FM_E_SIGNATURE = 11,  /* signature missing, malformed or wrong */
    FM_E_INTERNAL = 12,   /* a bug in fm */
    FM_E_COUNT_           /* not an error: number of codes */
} fm_err;

/* An error value plus a message naming file, field, expected vs found. */
typedef struct fm_error {
    fm_err code;
    char msg[512];
} fm_error;

/* Static English name of a code ("I/O error", ...). Never NULL. */
const char *fm_strerror(fm_err code);

/* Sets *e (if e is not NULL) and returns code, so callers can write
 * `return fm_error_set(e, FM_E_FORMAT, "%s: ...", path);` */
fm_err fm_error_set(fm_error *e, fm_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an existing message (keeps the code). */
fm_err fm_error_prefix(fm_error *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void fm_error_clear(fm_error *e);

#endif
