/* fm bundle writer (specs/bundle.md). Streams members into PATH.tmp through
 * libarchive (POSIX pax tar), aligning every weight blob, then writes the
 * manifest, the optional embedded signature and the superblock, fsyncs and
 * renames. It never holds tensor data beyond the call that passes it in:
 * peak memory is what the caller holds (about one tensor) plus the manifest.
 *
 * Lifecycle: fm_bundle_writer_new -> set_arch (required) / set_provenance ->
 * add_tokenizer / add_tensor / begin_tensor+write+end_tensor / begin_experts
 * + add_expert, in any interleaving (one streaming member at a time) ->
 * fm_bundle_writer_finish -> fm_bundle_writer_free. Any error leaves the
 * writer failed: later calls return FM_E_ARG and free removes PATH.tmp. */
#ifndef FM_PACK_WRITER_H
#define FM_PACK_WRITER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/bundle.h"
#include "formats/err.h"

typedef struct fm_bundle_writer fm_bundle_writer;

typedef struct fm_bundle_writer_opts {
    uint32_t alignment;       /* 0: FM_BUNDLE_DEFAULT_ALIGN; else a power of two 4096..1 MiB */
    bool force;               /* overwrite an existing PATH */
    const char *sign_key_pem; /* Ed25519 private key PEM: embed fm/manifest.sig; NULL: unsigned */
    uint64_t mtime;           /* tar mtime of every member (< 8^11); see fm_bundle_writer_opts_init */
    bool manifest_zstd;       /* store the manifest zstd-compressed (encoding 1) */
    int zstd_level;           /* 0: 9 */
    /* Testing hook: called with the serialized manifest before it is stored;
     * may replace *bytes (malloc'd; the writer frees the old one when it
     * changes) to make deliberately invalid bundles. NULL normally. */
    fm_err (*manifest_hook)(void *ctx, char **bytes, size_t *len, fm_error *e);
    void *hook_ctx;
} fm_bundle_writer_opts;

/* Defaults: alignment 16 KiB, mtime from $SOURCE_DATE_EPOCH when set and
 * valid, else 0 (so output is byte-for-byte reproducible). */
void fm_bundle_writer_opts_init(fm_bundle_writer_opts *o);

typedef struct fm_bundle_writer_tensor {
    const char *name; /* canonical name (B10) */
    uint32_t qtype;   /* fm_qtype */
    uint32_t n_dims;  /* 1..4 */
    uint64_t shape[FM_BUNDLE_MAX_DIMS]; /* row-major, shape[n_dims-1] = row length */
    bool has_sha256;  /* sha256 below was computed by the caller; the writer trusts it */
    uint8_t sha256[32];
    json_t *error;    /* optional requant error object; the writer takes its own reference */
} fm_bundle_writer_tensor;

typedef struct fm_bundle_writer_part {
    const char *name; /* "gate", "up", "down" */
    uint32_t qtype;
    uint32_t n_dims;
    uint64_t shape[FM_BUNDLE_MAX_DIMS];
    json_t *error;    /* optional; own reference taken */
} fm_bundle_writer_part;

fm_err fm_bundle_writer_new(fm_bundle_writer **out, const char *path,
                            const fm_bundle_writer_opts *opts, fm_error *e);

/* arch: an object with at least "name" (string); hyperparameters under
 * canonical names. provenance: an object (source files and SHA-256, tool
 * version, command line). The writer takes its own reference to each. */
fm_err fm_bundle_writer_set_arch(fm_bundle_writer *w, json_t *arch, fm_error *e);
fm_err fm_bundle_writer_set_provenance(fm_bundle_writer *w, json_t *prov, fm_error *e);

/* Canonical tokenizer JSON (specs/tokenizer.md); stored zstd-compressed as
 * fm/tokenizer.json.zst. At most once. */
fm_err fm_bundle_writer_add_tokenizer(fm_bundle_writer *w, const void *json, size_t len, fm_error *e);

/* A dense tensor: size must equal the bytes its qtype and shape take. */
fm_err fm_bundle_writer_add_tensor(fm_bundle_writer *w, const fm_bundle_writer_tensor *desc,
                                   const void *data, size_t size, fm_error *e);
/* Streaming variant: begin with the total size, write the bytes in any
 * number of pieces, end (which checks the count). */
fm_err fm_bundle_writer_begin_tensor(fm_bundle_writer *w, const fm_bundle_writer_tensor *desc,
                                     uint64_t size, fm_error *e);
fm_err fm_bundle_writer_write(fm_bundle_writer *w, const void *data, size_t n, fm_error *e);
fm_err fm_bundle_writer_end_tensor(fm_bundle_writer *w, fm_error *e);

/* Declares layer's experts: n_expert blobs, each the parts back to back in
 * the given order (gate | up | down). Each layer once. */
fm_err fm_bundle_writer_begin_experts(fm_bundle_writer *w, uint32_t layer, uint32_t n_expert,
                                      uint32_t n_parts, const fm_bundle_writer_part *parts,
                                      fm_error *e);
/* Expert `expert` of `layer`; experts of a layer must come in order 0, 1, ...
 * size must be the layer's blob size. sha: precomputed SHA-256 or NULL. */
fm_err fm_bundle_writer_add_expert(fm_bundle_writer *w, uint32_t layer, uint32_t expert,
                                   const void *blob, size_t size, const uint8_t *sha, fm_error *e);
/* Same, with the parts in separate buffers (part_data[i] holds part i). */
fm_err fm_bundle_writer_add_expert_parts(fm_bundle_writer *w, uint32_t layer, uint32_t expert,
                                         const void *const *part_data, fm_error *e);

/* Attach or replace error figures after the data was written (before finish). */
fm_err fm_bundle_writer_set_tensor_error(fm_bundle_writer *w, const char *name, json_t *error,
                                         fm_error *e);
fm_err fm_bundle_writer_set_part_error(fm_bundle_writer *w, uint32_t layer, const char *part,
                                       json_t *error, fm_error *e);

/* Writes the manifest (and signature), the end of the archive and the final
 * superblock, fsyncs PATH.tmp and renames it to PATH. Every declared expert
 * layer must be complete. */
fm_err fm_bundle_writer_finish(fm_bundle_writer *w, fm_error *e);
/* Frees; when not finished, removes PATH.tmp. NULL is fine. */
void fm_bundle_writer_free(fm_bundle_writer *w);

/* Bytes written so far (the size of PATH.tmp). */
uint64_t fm_bundle_writer_pos(const fm_bundle_writer *w);

#endif
