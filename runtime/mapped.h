/* The mapped expert source: zero-copy, experts read straight out of an
 * mmap of the file.
 *
 * It implements fm_experts_ops (runtime/experts.h) over an fm_expert_catalog
 * (GGUF or bundle), like the simple and streaming sources, but holds no
 * cache of its own: the page cache is the cache.
 *
 *   - Open maps the whole file behind catalog->fd read-only (PROT_READ,
 *     MAP_SHARED; length from fstat) and checks, with checked arithmetic,
 *     that every piece of every expert of every present layer lies inside
 *     the file (FM_E_FORMAT naming the path and "blk.L expert E" otherwise)
 *     and that every matrix lies inside one piece (FM_E_ARG otherwise).
 *     The mapping keeps the kernel's default read-ahead: expert pieces are
 *     contiguous runs of megabytes.
 *   - acquire points each matrix (k < n_mats of the layer) into the mapping:
 *     data = map + piece.file_off + (mat_off[k] - piece.blob_off), for the
 *     piece holding the matrix. Nothing is copied; the bytes are faulted in
 *     when the kernels touch them. The pointers are not 64-byte aligned in
 *     general (GGUF slices are not; the kernels do unaligned loads) and stay
 *     valid until the source is freed (so also after release).
 *   - release does nothing: any number of experts may be held; n_pinned_max
 *     only bounds how many one acquire call may ask for.
 *   - prefetch: with willneed, madvise(MADV_WILLNEED) over each piece of
 *     each expert named (page-aligned: start rounded down, end up), which
 *     starts asynchronous read-ahead; without, a no-op. Experts acquired
 *     before are skipped (most likely still in the page cache: on a warm
 *     model the hint only costs a walk of the page cache, ~5% of decode
 *     time measured on bench's 8-layer model). Invalid layers or ids are
 *     ignored.
 *   - verify: the first acquire of each (layer, expert) checks its
 *     digest(s) (fm_expert_catalog_verify over the mapped pieces: blob
 *     SHA-256 of bundles, or per-piece digests of layer catalogs; nothing to
 *     check for GGUF) and fails with FM_E_CHECKSUM naming "blk.L expert E"
 *     (or the piece's matrix). An expert that failed is not marked verified:
 *     every later acquire of it checks again (and fails while the file is
 *     wrong). Once verified an expert is not re-hashed, even if the file
 *     changes under the mapping later.
 *   - Thread-safe: a mutex guards the per-expert flags and the stats;
 *     hashing runs outside it. acquire, release and prefetch may be called
 *     from any thread.
 *
 * Stats (fm_experts_stats): acquired = experts handed out; misses = first
 * acquires of an expert, hits = acquires of an expert handed out before;
 * bytes_read = the pieces' sizes summed over first acquires: bytes first
 * touched through the mapping (the page cache decides what is really read
 * from disk, and when); cache_bytes = the same sum so far (the mapping holds
 * no memory of its own); prefetched = experts given to madvise;
 * read_seconds = 0 (reads happen as page faults inside the kernels). A
 * failed acquire changes no stats.
 *
 * The file must not shrink while the source is open: touching a page past
 * its new end raises SIGBUS. */
#ifndef FM_MAPPED_H
#define FM_MAPPED_H

#include <stdbool.h>
#include <stdint.h>

#include "formats/err.h"
#include "runtime/experts.h"

typedef struct fm_experts_mapped_opts {
    uint32_t n_pinned_max; /* most experts one acquire may ask for; 0 = 1 */
    bool verify;           /* SHA-256 of each expert on its first acquire (fm_expert_catalog_verify) */
    bool willneed;         /* prefetch: madvise(MADV_WILLNEED) the pieces (async read-ahead) */
} fm_experts_mapped_opts;

/* Maps c's file (c->fd, borrowed: it may be closed once this returns) and
 * checks the catalog against it, as above. opts NULL = all defaults (zero).
 * c must outlive the source. */
fm_err fm_experts_open_mapped(const fm_expert_catalog *c, const fm_experts_mapped_opts *opts, fm_experts **out,
                              fm_error *e);

/* Whether x is a mapped source (false for NULL). */
bool fm_experts_is_mapped(const fm_experts *x);

#endif
