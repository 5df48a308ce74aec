/* fm-sign BUNDLE --key PRIV.pem [-o OUT.sig] [--force]
 *
 * Writes a detached Ed25519 signature of BUNDLE's manifest (specs/bundle.md
 * B17): 64 raw bytes in BUNDLE.sig (or OUT.sig), checked by
 * `fm-verify BUNDLE --key PUB.pem`. Equivalent to
 *   tar xOf BUNDLE fm/manifest.json | openssl pkeyutl -sign -rawin -inkey PRIV.pem
 * Exit 0 on success, 2 on any error. */
#include "formats/bundle.h"
#include "formats/file.h"
#include "pack/sign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *path = NULL, *key = NULL, *out = NULL;
    bool force = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) key = argv[++i];
        else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--force") == 0) force = true;
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else {
            fprintf(stderr, "usage: fm-sign BUNDLE --key PRIV.pem [-o OUT.sig] [--force]\n");
            return 2;
        }
    }
    if (!path || !key) {
        fprintf(stderr, "usage: fm-sign BUNDLE --key PRIV.pem [-o OUT.sig] [--force]\n");
        return 2;
    }
    char def[4096];
    if (!out) {
        snprintf(def, sizeof def, "%s.sig", path);
        out = def;
    }
    fm_error e;
    fm_bundle *b;
    if (fm_bundle_open(&b, path, 0, &e) != FM_OK) {
        fprintf(stderr, "fm-sign: not a readable bundle: %s\n", e.msg);
        return 2;
    }
    void *m = NULL;
    size_t ml = 0;
    uint8_t sig[FM_SIG_LEN];
    fm_outfile o;
    fm_err rc = fm_bundle_read_manifest_bytes(b, &m, &ml, &e);
    fm_bundle_close(b);
    if (!rc) rc = fm_sign_ed25519(key, m, ml, sig, &e);
    free(m);
    if (!rc) rc = fm_outfile_open(&o, out, force, &e);
    if (!rc) {
        rc = fm_outfile_write(&o, sig, sizeof sig, &e);
        if (!rc) rc = fm_outfile_commit(&o, &e);
        else fm_outfile_abort(&o);
    }
    if (rc) {
        fprintf(stderr, "fm-sign: %s\n", e.msg);
        return 2;
    }
    printf("fm-sign: wrote %s\n", out);
    return 0;
}
