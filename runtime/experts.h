/* Expert sources: where the forward pass gets MoE expert weights from.
 *
 * Dense tensors are resident; experts may not be. The forward pass asks an
 * expert source for the experts the router picked, one layer at a time:
 *
 *     fm_experts_prefetch(x, layer, ids, n);            // hint: all of this layer's picks
 *     for each id:
 *         fm_experts_acquire(x, layer, &id, 1, &ex, e); // blocks until in memory
 *         ... matmuls with ex.gate / ex.up / ex.down ...
 *         fm_experts_release(x, layer, &id, 1);
 *
 * Pointers returned by acquire stay valid until the matching release. An
 * implementation may keep any number of released experts cached; it must be
 * able to hold at least one acquired expert (more when asked, up to the
 * n_pinned_max it reports).
 *
 * Where experts live on disk is described once, backend-neutrally, by an
 * fm_expert_catalog (built from a GGUF file or a bundle), so every source
 * works with both. This file defines the interface, the catalog, and the
 * simple source (read on demand with pread into a bounded LRU cache). The
 * streaming source (thread-pool reads, O_DIRECT, prefetch) implements the
 * same fm_experts_ops over the same catalog. */
#ifndef FM_EXPERTS_H
#define FM_EXPERTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "formats/bundle.h"
#include "formats/err.h"
#include "formats/gguf.h"

enum { FM_EXPERT_GATE = 0, FM_EXPERT_UP = 1, FM_EXPERT_DOWN = 2, FM_EXPERT_N_MATS = 3 };

/* A catalog entry may hold more matrices than an expert's three: a layer
 * catalog (runtime/model.h) describes a dense layer's weight matrices as the
 * single "expert" 0 of that layer, so the same sources stream whole layers. */
#define FM_EXPERT_MAX_MATS 12

/* One matrix of an expert: rows x cols, row-major, each row cols values of
 * qtype blocks (row_bytes bytes). gate/up: rows = n_ff_exp, cols = n_embd;
 * down: rows = n_embd, cols = n_ff_exp. */
typedef struct fm_expert_mat {
    uint32_t qtype;
    uint64_t rows, cols;
    uint64_t row_bytes;
    const void *data; /* NULL in a catalog; set by acquire */
} fm_expert_mat;

typedef struct fm_expert {
    fm_expert_mat m[FM_EXPERT_MAX_MATS]; /* experts: [FM_EXPERT_GATE/UP/DOWN]; layers: n_mats */
} fm_expert;

/* One contiguous byte range of the file that fills part of an expert's
 * in-memory blob. */
typedef struct fm_expert_piece {
    uint64_t file_off;
    uint64_t size;
    uint64_t blob_off; /* where the bytes go inside the blob */
} fm_expert_piece;

#define FM_EXPERT_MAX_PIECES FM_EXPERT_MAX_MATS

typedef struct fm_expert_layer_desc {
    bool present;             /* false: this layer has no experts */
    uint32_t n_expert;
    uint32_t n_mats;          /* FM_EXPERT_N_MATS for experts; 1..FM_EXPERT_MAX_MATS */
    fm_expert_mat mats[FM_EXPERT_MAX_MATS]; /* shapes and types; data NULL */
    uint64_t mat_off[FM_EXPERT_MAX_MATS];   /* each matrix's offset inside the blob */
    const char *mat_name[FM_EXPERT_MAX_MATS]; /* for messages, or NULL (borrowed) */
    uint64_t blob_size;       /* bytes one expert occupies in memory */
    uint32_t n_pieces;        /* 1 (bundle: one blob), 3 (GGUF: one slice per fused tensor), or one
                                 per matrix (layer catalogs) */
} fm_expert_layer_desc;

/* Backend-neutral description of every expert's location. Owned by whoever
 * built it (fm_expert_catalog_free). */
typedef struct fm_expert_catalog {
    const char *path;          /* for messages */
    int fd;                    /* buffered descriptor (borrowed from the gguf/bundle) */
    int direct_fd;             /* O_DIRECT descriptor or -1 (bundles opened with FM_BUNDLE_OPEN_DIRECT) */
    uint32_t alignment;        /* file alignment of pieces (bundle alignment, GGUF general.alignment) */
    uint32_t n_layer;
    uint32_t n_expert;         /* max over layers */
    fm_expert_layer_desc *layers;   /* n_layer entries */
    fm_expert_piece *pieces;   /* [layer][expert][FM_EXPERT_MAX_PIECES] */
    const uint8_t (*sha256)[32];    /* per [layer][expert] blob digest, or NULL (GGUF) */
    const uint8_t (*piece_sha256)[32]; /* or per [layer][expert][piece] (stride FM_EXPERT_MAX_PIECES):
                                          each piece's own digest (layer catalogs of bundles) */
    uint64_t max_blob_size;
} fm_expert_catalog;

static inline const fm_expert_piece *fm_expert_catalog_pieces(const fm_expert_catalog *c, uint32_t layer,
                                                              uint32_t expert)
{
    return c->pieces + ((uint64_t)layer * c->n_expert + expert) * FM_EXPERT_MAX_PIECES;
}

/* From a GGUF file (fused blk.%d.ffn_{gate,up,down}_exps.weight: expert e's
 * slice of each is contiguous at e * ne0*ne1 values). hp: finalized arch
 * hparams. Layers without the fused tensors are not present. */
fm_err fm_expert_catalog_from_gguf(const fm_gguf *g, const json_t *hp, fm_expert_catalog **out,
                                   fm_error *e);
/* From a bundle's expert layers (parts "gate", "up", "down"). */
fm_err fm_expert_catalog_from_bundle(const fm_bundle *b, const json_t *hp, fm_expert_catalog **out,
                                     fm_error *e);
void fm_expert_catalog_free(fm_expert_catalog *c);
/* Experts over every present layer (0 when none). */
uint64_t fm_expert_catalog_n_present(const fm_expert_catalog *c);
/* An empty catalog (no layer present; fd -1) for a caller to fill. */
fm_err fm_expert_catalog_new(const char *path, uint32_t n_layer, uint32_t n_expert, fm_expert_catalog **out,
                             fm_error *e);

/* Reads expert `expert` of `layer` into blob (blob_size bytes of the layer)
 * with plain pread; verify checks the blob SHA-256 when the catalog has them.
 * The building block of the simple source, usable by others. */
fm_err fm_expert_catalog_read(const fm_expert_catalog *c, uint32_t layer, uint32_t expert, void *blob,
                              bool verify, fm_error *e);
/* Checks an expert's digest(s), its pieces' bytes at piece[j] (j <
 * n_pieces): the blob digest (pieces at their blob offsets, gaps zero) or
 * each piece's own. FM_OK when the catalog has no digests; FM_E_CHECKSUM
 * naming "blk.L expert E" or the piece's matrix name otherwise. */
fm_err fm_expert_catalog_verify(const fm_expert_catalog *c, uint32_t layer, uint32_t expert,
                                const uint8_t *const *piece, fm_error *e);
/* Points out->m[i].data into a blob read as above. */
void fm_expert_catalog_view(const fm_expert_catalog *c, uint32_t layer, const void *blob, fm_expert *out);

typedef struct fm_experts_stats {
    uint64_t acquired;    /* experts handed out by acquire */
    uint64_t hits;        /* of those, already in memory */
    uint64_t misses;      /* of those, read from the file */
    uint64_t bytes_read;  /* bytes read from the file */
    uint64_t prefetched;  /* experts read ahead on a prefetch hint */
    double read_seconds;  /* wall time spent reading (by any thread) */
    uint64_t cache_bytes; /* memory held for expert data now */
} fm_experts_stats;

/* The interface an expert source implements. acquire must be called with
 * 1 <= n <= n_pinned_max and distinct ids < n_expert of that layer; on error
 * nothing stays acquired. prefetch and stats may be NULL. */
typedef struct fm_experts_ops {
    const char *name;
    fm_err (*acquire)(void *impl, uint32_t layer, const uint32_t *ids, uint32_t n, fm_expert *out,
                      fm_error *e);
    void (*release)(void *impl, uint32_t layer, const uint32_t *ids, uint32_t n);
    void (*prefetch)(void *impl, uint32_t layer, const uint32_t *ids, uint32_t n);
    void (*stats)(void *impl, fm_experts_stats *out);
    void (*free)(void *impl);
} fm_experts_ops;

typedef struct fm_experts {
    const fm_experts_ops *ops;
    void *impl;
    const fm_expert_catalog *catalog; /* borrowed */
    uint32_t n_pinned_max;            /* most experts acquire may hold at once */
} fm_experts;

/* Wraps an implementation (for other sources). Takes ownership of impl (freed
 * with ops->free by fm_experts_free, also on failure). */
fm_err fm_experts_wrap(const fm_experts_ops *ops, void *impl, const fm_expert_catalog *c,
                       uint32_t n_pinned_max, fm_experts **out, fm_error *e);

fm_err fm_experts_acquire(fm_experts *x, uint32_t layer, const uint32_t *ids, uint32_t n, fm_expert *out,
                          fm_error *e);
void fm_experts_release(fm_experts *x, uint32_t layer, const uint32_t *ids, uint32_t n);
void fm_experts_prefetch(fm_experts *x, uint32_t layer, const uint32_t *ids, uint32_t n);
void fm_experts_get_stats(const fm_experts *x, fm_experts_stats *out);
void fm_experts_free(fm_experts *x);

typedef struct fm_experts_simple_opts {
    /* Bytes of expert data kept in memory (LRU over released experts);
     * 0 = unbounded (everything read stays: resident after warm-up). At
     * least n_pinned_max blobs are always allowed. */
    uint64_t cache_bytes;
    uint32_t n_pinned_max; /* 0 = 1 */
    bool verify;           /* check blob SHA-256 on every read (bundles) */
} fm_experts_simple_opts;

/* The simple source: on a miss, pread the expert (fm_expert_catalog_read)
 * into a cache slot; prefetch is a no-op. Single-threaded use (the forward
 * pass's thread). */
fm_err fm_experts_open_simple(const fm_expert_catalog *c, const fm_experts_simple_opts *opts,
                              fm_experts **out, fm_error *e);

#endif
