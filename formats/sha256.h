/* SHA-256 over libcrypto's EVP interface. */
#ifndef FM_SHA256_H
#define FM_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/err.h"

#define FM_SHA256_LEN 32

typedef struct fm_sha256 {
    void *ctx; /* EVP_MD_CTX */
} fm_sha256;

fm_err fm_sha256_init(fm_sha256 *h, fm_error *e);
void fm_sha256_update(fm_sha256 *h, const void *data, size_t n);
void fm_sha256_final(fm_sha256 *h, uint8_t out[FM_SHA256_LEN]); /* also frees */
void fm_sha256_free(fm_sha256 *h);                             /* safe after final */

fm_err fm_sha256_buf(const void *data, size_t n, uint8_t out[FM_SHA256_LEN], fm_error *e);
void fm_sha256_hex(const uint8_t d[FM_SHA256_LEN], char out[2 * FM_SHA256_LEN + 1]);
/* Parses 64 lowercase or uppercase hex digits; false when malformed. */
bool fm_sha256_from_hex(const char *hex, uint8_t out[FM_SHA256_LEN]);

#endif
