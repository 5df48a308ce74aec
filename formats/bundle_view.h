/* A bundle's weights as a flat list of tensors under their canonical GGUF
 * names, for tools that compare a bundle with its source (fm-inspect):
 * every dense tensor, plus, for each expert layer and part, the fused
 * tensor GGUF would hold ("blk.L.ffn_gate_exps.weight": ne = [cols, rows,
 * n_expert], expert e's rows after expert e-1's), reassembled from the
 * expert blobs. The fused names come from the architecture table
 * (formats/arch.h: the FM_T_EXPERT entry whose part matches); a part with
 * no table entry is named "blk.L.exps.<part>". */
#ifndef FM_BUNDLE_VIEW_H
#define FM_BUNDLE_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/bundle.h"
#include "formats/err.h"
#include "formats/f32_stream.h"

typedef struct fm_bundle_view {
    char name[192];
    uint32_t qtype;
    uint32_t n_dims;
    uint64_t ne[4];                    /* GGUF order (ne[0] = row length) */
    const fm_bundle_tensor *tensor;    /* dense tensor, or NULL */
    const fm_bundle_expert_layer *xl;  /* fused expert part, or NULL */
    uint32_t part;                     /* index into xl->parts */
} fm_bundle_view;

/* All views: dense tensors in manifest order, then expert parts by layer.
 * *out is malloc'd. */
fm_err fm_bundle_views(const fm_bundle *b, fm_bundle_view **out, size_t *n, fm_error *e);

/* Streams a view's float32 values in GGUF storage order through sink.
 * expert >= 0 (expert views only): just that expert's part. Every tensor and
 * blob read is checked against its SHA-256. */
fm_err fm_bundle_view_f32(const fm_bundle *b, const fm_bundle_view *v, int64_t expert, fm_f32_sink sink,
                          void *ctx, fm_error *e);

#endif
