#include "formats/sha256.h"

#include <openssl/evp.h>
#include <string.h>

fm_err fm_sha256_init(fm_sha256 *h, fm_error *e)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c) return fm_error_set(e, FM_E_NOMEM, "sha256: out of memory");
    if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        return fm_error_set(e, FM_E_INTERNAL, "sha256: EVP_DigestInit_ex failed");
    }
    h->ctx = c;
    return FM_OK;
}

void fm_sha256_update(fm_sha256 *h, const void *data, size_t n)
{
    EVP_DigestUpdate((EVP_MD_CTX *)h->ctx, data, n);
}

void fm_sha256_final(fm_sha256 *h, uint8_t out[FM_SHA256_LEN])
{
    unsigned len = FM_SHA256_LEN;
    EVP_DigestFinal_ex((EVP_MD_CTX *)h->ctx, out, &len);
    fm_sha256_free(h);
}

void fm_sha256_free(fm_sha256 *h)
{
    if (h->ctx) EVP_MD_CTX_free((EVP_MD_CTX *)h->ctx);
    h->ctx = NULL;
}

fm_err fm_sha256_buf(const void *data, size_t n, uint8_t out[FM_SHA256_LEN], fm_error *e)
{
    fm_sha256 h;
    fm_err rc = fm_sha256_init(&h, e);
    if (rc) return rc;
    fm_sha256_update(&h, data, n);
    fm_sha256_final(&h, out);
    return FM_OK;
}

void fm_sha256_hex(const uint8_t d[FM_SHA256_LEN], char out[2 * FM_SHA256_LEN + 1])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < FM_SHA256_LEN; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * FM_SHA256_LEN] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool fm_sha256_from_hex(const char *hex, uint8_t out[FM_SHA256_LEN])
{
    if (!hex || strlen(hex) != 2 * FM_SHA256_LEN) return false;
    for (int i = 0; i < FM_SHA256_LEN; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}
