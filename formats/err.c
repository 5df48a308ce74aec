#include "formats/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const fm_err_names[FM_E_COUNT_] = {
    [FM_OK] = "ok",
    [FM_E_IO] = "I/O error",
    [FM_E_NOMEM] = "out of memory",
    [FM_E_FORMAT] = "invalid format",
    [FM_E_UNSUPPORTED] = "unsupported",
    [FM_E_RANGE] = "value out of range",
    [FM_E_ARG] = "invalid argument",
    [FM_E_NOTFOUND] = "not found",
    [FM_E_CHECKSUM] = "checksum mismatch",
    [FM_E_VERSION] = "unsupported version",
    [FM_E_EXISTS] = "already exists",
    [FM_E_SIGNATURE] = "bad signature",
    [FM_E_INTERNAL] = "internal error",
};

const char *fm_strerror(fm_err code)
{
    if ((unsigned)code >= FM_E_COUNT_) return "unknown error";
    return fm_err_names[code];
}

fm_err fm_error_set(fm_error *e, fm_err code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        e->code = code;
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

fm_err fm_error_prefix(fm_error *e, const char *fmt, ...)
{
    if (!e) return FM_OK;
    char old[sizeof e->msg];
    memcpy(old, e->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    size_t pos = n < 0 ? 0 : (size_t)n;
    if (pos > sizeof e->msg - 1) pos = sizeof e->msg - 1;
    const char *sep = ": ";
    for (const char *s = sep; *s && pos < sizeof e->msg - 1; s++) e->msg[pos++] = *s;
    for (const char *s = old; *s && pos < sizeof e->msg - 1; s++) e->msg[pos++] = *s;
    e->msg[pos] = '\0';
    return e->code;
}

void fm_error_clear(fm_error *e)
{
    if (e) {
        e->code = FM_OK;
        e->msg[0] = '\0';
    }
}
