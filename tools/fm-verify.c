/* fm-verify BUNDLE [--json] [--quick] [--key PUBKEY.pem] [--sig FILE] [-t THREADS] [--direct]
 *
 * Checks an fm bundle (specs/bundle.md B18): tar structure, superblock,
 * manifest, alignment, every SHA-256 (in parallel), and with --key the
 * Ed25519 signature (embedded fm/manifest.sig, else BUNDLE.sig or --sig).
 * Exit 0 intact, 1 damaged (each damaged tensor/expert/header listed), 2 not a
 * readable bundle (or a usage error, or an unusable key file). */
#include "pack/verify.h"
#define FM_CLI_PROG "fm-verify"
#include "tools/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fm-verify BUNDLE [--json] [--quick] [--key PUBKEY.pem] [--sig FILE] [-t THREADS] [--direct]\n"
            "  --json       print a JSON report on stdout\n"
            "  --quick      check structure and manifest only (no data hashing)\n"
            "  --key PEM    check the manifest's Ed25519 signature with this public key\n"
            "  --sig FILE   detached signature (default: embedded, else BUNDLE.sig)\n"
            "  -t THREADS   hashing threads (default: online CPUs)\n"
            "  --direct     read weight data with O_DIRECT (bypass the page cache)\n"
            "exit: 0 intact, 1 damaged, 2 not a readable bundle or usage error\n");
}

typedef struct bar {
    double t0, last;
    int shown;
} bar;

static void progress(void *ctx, uint64_t done, uint64_t total)
{
    bar *b = ctx;
    double t = now_s();
    if (t - b->last < 0.2 && done < total) return;
    b->last = t;
    double f = total ? (double)done / (double)total : 1.0;
    if (f > 1) f = 1;
    int w = 30, k = (int)(f * w);
    char line[64];
    for (int i = 0; i < w; i++) line[i] = i < k ? '#' : '.';
    line[w] = '\0';
    double el = t - b->t0;
    fprintf(stderr, "\r[%s] %3.0f%% %.2f/%.2f GiB %6.0f MB/s", line, f * 100, (double)done / (1 << 30),
            (double)total / (1 << 30), el > 0 ? (double)done / el / 1e6 : 0.0);
    b->shown = 1;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    fm_verify_opts o;
    memset(&o, 0, sizeof o);
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) json = true;
        else if (strcmp(a, "--quick") == 0) o.quick = true;
        else if (strcmp(a, "--direct") == 0) o.direct = true;
        else if (strcmp(a, "--key") == 0 && i + 1 < argc) o.pubkey_pem = argv[++i];
        else if (strcmp(a, "--sig") == 0 && i + 1 < argc) o.sig_path = argv[++i];
        else if ((strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) && i + 1 < argc) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end || t < 1 || t > 256) {
                fprintf(stderr, "fm-verify: -t wants 1..256, got '%s'\n", argv[i]);
                return 2;
            }
            o.threads = (unsigned)t;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "fm-verify: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!path) path = a;
        else {
            fprintf(stderr, "fm-verify: one bundle at a time ('%s' and '%s')\n", path, a);
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    bar b = {now_s(), 0, 0};
    if (isatty(2)) {
        o.progress = progress;
        o.progress_ctx = &b;
    }
    fm_verify_report r;
    fm_error e;
    fm_err rc = fm_verify_bundle(path, &o, &r, &e);
    if (b.shown) fprintf(stderr, "\r%*s\r", 70, "");
    if (rc != FM_OK) {
        fprintf(stderr, "fm-verify: %s: %s\n", path, e.msg);
        return 2;
    }
    if (json) {
        json_t *j = fm_verify_report_json(&r, path);
        char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
        if (s) puts(s);
        free(s);
        json_decref(j);
    }
    if (r.status == FM_VERIFY_UNREADABLE) {
        fprintf(stderr, "fm-verify: not a readable bundle: %s\n", r.error);
        return 2;
    }
    if (!json) {
        for (size_t i = 0; i < r.n_problems; i++) printf("%s: %s\n", r.problems[i].what, r.problems[i].msg);
        if (r.sig_checked && r.sig_ok) printf("signature: ok (%s, key %s)\n", r.sig_source, o.pubkey_pem);
        double mb = r.seconds > 0 ? (double)r.bytes_read / r.seconds / 1e6 : 0;
        if (r.status == FM_VERIFY_INTACT && r.quick)
            printf("%s: ok: format %u.%u, %llu members, %llu tensors, %llu expert blobs, %.3f GiB; "
                   "structure and manifest checked in %.2f s (quick: data not hashed)\n",
                   path, r.major, r.minor, (unsigned long long)r.n_members, (unsigned long long)r.n_tensors,
                   (unsigned long long)r.n_blobs, (double)r.file_size / (1 << 30), r.seconds);
        else if (r.status == FM_VERIFY_INTACT)
            printf("%s: ok: format %u.%u, %llu members, %llu tensors, %llu expert blobs, %.3f GiB "
                   "verified in %.2f s (%.0f MB/s, %u threads)\n",
                   path, r.major, r.minor, (unsigned long long)r.n_members, (unsigned long long)r.n_tensors,
                   (unsigned long long)r.n_blobs, (double)r.file_size / (1 << 30), r.seconds, mb, r.threads);
        else
            printf("%s: DAMAGED: %zu problem%s\n", path, r.n_problems, r.n_problems == 1 ? "" : "s");
    }
    int code = r.status == FM_VERIFY_INTACT ? 0 : 1;
    fm_verify_report_free(&r);
    return code;
}
