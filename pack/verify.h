/* fm bundle verification (specs/bundle.md B18): structure, manifest,
 * alignment, every SHA-256 (hashed in parallel) and optionally the Ed25519
 * signature. Library code: fills a report, prints nothing; tools/fm-verify.c
 * is the command line around it. */
#ifndef FM_PACK_VERIFY_H
#define FM_PACK_VERIFY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/err.h"

typedef enum fm_verify_status {
    FM_VERIFY_INTACT = 0,    /* exit 0 */
    FM_VERIFY_DAMAGED = 1,   /* exit 1: problems[] says what */
    FM_VERIFY_UNREADABLE = 2 /* exit 2: not a readable bundle; error says why */
} fm_verify_status;

typedef enum fm_verify_kind {
    FM_VK_TENSOR,    /* a dense tensor's data */
    FM_VK_EXPERT,    /* an expert blob's data */
    FM_VK_TOKENIZER, /* the tokenizer member's data */
    FM_VK_SIGNATURE, /* signature missing, malformed, or not verifying */
    FM_VK_STRUCTURE  /* tar headers, padding, end of archive */
} fm_verify_kind;

typedef struct fm_verify_problem {
    fm_verify_kind kind;
    uint64_t offset;        /* file offset of the damaged member data or header */
    uint32_t layer, expert; /* FM_VK_EXPERT */
    char what[300];         /* "tensor blk.0.attn_q.weight", "blk.12 expert 87", "tar header at offset 1536" */
    char msg[600];          /* "sha256 mismatch", ... */
} fm_verify_problem;

typedef struct fm_verify_opts {
    bool quick;             /* structure and manifest only: no data hashing */
    unsigned threads;       /* 0: online CPUs */
    const char *pubkey_pem; /* check the signature with this Ed25519 key; NULL: don't */
    const char *sig_path;   /* detached signature; NULL: embedded, else BUNDLE.sig */
    bool direct;            /* read weight data with O_DIRECT where possible */
    /* Called from the calling thread about ten times a second while hashing. */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
} fm_verify_opts;

typedef struct fm_verify_report {
    fm_verify_status status;
    fm_err error_code;      /* FM_VERIFY_UNREADABLE: the reader's code (FM_E_VERSION, ...) */
    char error[512];        /* FM_VERIFY_UNREADABLE: the reader's message */
    uint32_t major, minor, alignment;
    uint64_t file_size, n_tensors, n_blobs, n_members;
    uint64_t bytes_read;    /* bytes read and checked (data hashed plus structure) */
    double seconds;
    unsigned threads;
    bool quick;
    bool sig_embedded;      /* the bundle carries fm/manifest.sig */
    bool sig_checked, sig_ok;
    char sig_source[512];   /* "embedded" or the detached file's path */
    size_t n_problems;
    fm_verify_problem *problems; /* sorted by offset */
} fm_verify_report;

/* Verifies path. Returns FM_OK when the check ran (the verdict is in
 * r->status), an error only when it could not run (out of memory, unusable
 * key file: FM_E_IO/FM_E_SIGNATURE with e set). */
fm_err fm_verify_bundle(const char *path, const fm_verify_opts *opts, fm_verify_report *r,
                        fm_error *e);
void fm_verify_report_free(fm_verify_report *r);
/* The report as a JSON object (new reference). */
json_t *fm_verify_report_json(const fm_verify_report *r, const char *path);

#endif
