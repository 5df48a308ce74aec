#include "pack/sign.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

static const char *ossl_err(void)
{
    unsigned long c = ERR_get_error();
    static _Thread_local char buf[256];
    if (!c) return "no detail";
    ERR_error_string_n(c, buf, sizeof buf);
    ERR_clear_error();
    return buf;
}

/* Loads a private key, or else a public key, from a PEM file. */
static fm_err load_key(const char *path, int want_private, EVP_PKEY **out, fm_error *e)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return fm_error_set(e, FM_E_IO, "%s: cannot open key: %s", path, strerror(errno));
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    if (!k && !want_private) {
        ERR_clear_error();
        rewind(f);
        k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    }
    fclose(f);
    if (!k)
        return fm_error_set(e, FM_E_SIGNATURE, "%s: not a PEM %s key (%s)", path,
                            want_private ? "private" : "public or private", ossl_err());
    if (EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(k);
        return fm_error_set(e, FM_E_SIGNATURE, "%s: key is not Ed25519", path);
    }
    *out = k;
    return FM_OK;
}

fm_err fm_sign_check_private_key(const char *key_pem, fm_error *e)
{
    EVP_PKEY *k;
    fm_err rc = load_key(key_pem, 1, &k, e);
    EVP_PKEY_free(k);
    return rc;
}

fm_err fm_sign_ed25519(const char *key_pem, const void *msg, size_t len, uint8_t sig[FM_SIG_LEN],
                       fm_error *e)
{
    EVP_PKEY *k;
    fm_err rc = load_key(key_pem, 1, &k, e);
    if (rc) return rc;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    size_t sl = FM_SIG_LEN;
    if (!c || EVP_DigestSignInit(c, NULL, NULL, NULL, k) != 1 ||
        EVP_DigestSign(c, sig, &sl, msg, len) != 1 || sl != FM_SIG_LEN)
        rc = fm_error_set(e, FM_E_SIGNATURE, "%s: signing failed (%s)", key_pem, ossl_err());
    EVP_MD_CTX_free(c);
    EVP_PKEY_free(k);
    return rc;
}

fm_err fm_sign_verify_ed25519(const char *key_pem, const void *msg, size_t len,
                              const uint8_t sig[FM_SIG_LEN], fm_error *e)
{
    EVP_PKEY *k;
    fm_err rc = load_key(key_pem, 0, &k, e);
    if (rc) return rc;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestVerifyInit(c, NULL, NULL, NULL, k) != 1) {
        rc = fm_error_set(e, FM_E_INTERNAL, "%s: EVP_DigestVerifyInit failed (%s)", key_pem, ossl_err());
    } else if (EVP_DigestVerify(c, sig, FM_SIG_LEN, msg, len) != 1) {
        ERR_clear_error();
        rc = fm_error_set(e, FM_E_SIGNATURE,
                          "manifest signature does not verify with %s (wrong key, or the "
                          "manifest or signature was changed)",
                          key_pem);
    }
    EVP_MD_CTX_free(c);
    EVP_PKEY_free(k);
    return rc;
}
