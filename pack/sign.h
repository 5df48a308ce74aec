/* Ed25519 signatures over the manifest bytes (specs/bundle.md B17), through
 * libcrypto's EVP interface. Keys are PEM files as written by
 * `openssl genpkey -algorithm ed25519` (private) and `openssl pkey -pubout`
 * (public); a private key also serves to verify. */
#ifndef FM_SIGN_H
#define FM_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "formats/err.h"

#define FM_SIG_LEN 64

/* Checks that key_pem holds an Ed25519 private key (FM_E_SIGNATURE if not). */
fm_err fm_sign_check_private_key(const char *key_pem, fm_error *e);
fm_err fm_sign_ed25519(const char *key_pem, const void *msg, size_t len, uint8_t sig[FM_SIG_LEN],
                       fm_error *e);
/* FM_OK when sig is key_pem's signature of msg; FM_E_SIGNATURE when it is not
 * or the key is not Ed25519; FM_E_IO when the key file cannot be read. */
fm_err fm_sign_verify_ed25519(const char *key_pem, const void *msg, size_t len,
                              const uint8_t sig[FM_SIG_LEN], fm_error *e);

#endif
