/* The streaming expert source: experts read on demand by a pool of I/O
 * threads into a cache bounded by a byte budget (issue 6).
 *
 * It implements fm_experts_ops (runtime/experts.h) over an fm_expert_catalog
 * (GGUF or bundle), so the forward pass uses it exactly like the simple
 * source:
 *
 *   - The cache is one slab of fixed-size slots allocated once with
 *     posix_memalign at FM_STREAM_DIO_ALIGN. A slot holds one expert; its
 *     size is the largest expert's in-memory layout (below) rounded up to the
 *     alignment. budget / slot size slots (at least n_pinned_max + 1).
 *   - prefetch(layer, ids, n) queues every missing expert and returns at
 *     once; the I/O threads read them in parallel (one job per piece: a GGUF
 *     expert's three slices are three parallel reads). acquire waits only for
 *     the experts it asks for (one condition variable per slot); an expert
 *     acquire needs that is still queued moves to the front of the queue.
 *   - Acquired experts are pinned: never evicted until released. Experts
 *     prefetched for the current layer and not yet acquired are protected
 *     from eviction by later prefetches (a prefetch that finds no slot stops:
 *     acquire will read the rest itself), so a prefetch never evicts its own
 *     experts.
 *   - Eviction takes, in this order: a failed slot, a used one, one read
 *     ahead by an earlier prefetch and not acquired yet, and (acquire only)
 *     one protected by the current prefetch; within a class:
 *   - (FM_STREAM_EVICT_*): LRU, or LFRU = lowest decayed use count
 *     first (counts kept per (layer, expert), also for experts not in the
 *     cache, halved every FM_STREAM_LFRU_HALF_LIFE acquires of that layer),
 *     ties to the least recently used. MoE routers have hot experts; LFRU
 *     keeps them when a burst of cold ones passes through.
 *   - I/O: FM_STREAM_IO_CACHED reads with the buffered descriptor (the page
 *     cache also keeps what was read: under a cgroup limit it counts against
 *     the limit but is reclaimable). FM_STREAM_IO_DIRECT reads with O_DIRECT
 *     (catalog->direct_fd, else the source opens catalog->path with O_DIRECT
 *     itself): every piece is read as the enclosing FM_STREAM_DIO_ALIGN-
 *     aligned byte range straight into the slot, and the expert's matrices
 *     point into it at the piece's offset within that range; no bounce
 *     buffer and no fallback are needed, whatever the pieces' alignment
 *     (bundle blobs are aligned by the spec, so only their tails are
 *     rounded; GGUF expert slices are not: each read carries at most 2 *
 *     FM_STREAM_DIO_ALIGN - 2 extra bytes, counted in bytes_read).
 *   - verify: the first read of each expert checks its blob SHA-256 (when
 *     the catalog has digests, i.e. bundles) and fails acquire with
 *     FM_E_CHECKSUM naming "blk.L expert E"; later re-reads after eviction
 *     are not re-hashed.
 *   - Thread-safe: every entry point takes the source's mutex; acquire,
 *     release and prefetch may be called from any thread (the forward pass
 *     calls them from one).
 *
 * In-memory layout of a slot: the expert's pieces, each at a multiple of
 * FM_STREAM_DIO_ALIGN, each preceded by (file offset mod FM_STREAM_DIO_ALIGN)
 * bytes. So a matrix's data pointer is not 64-byte aligned in general (the
 * kernels do unaligned loads); for bundles (aligned blobs) it is at the
 * blob's own offsets. */
#ifndef FM_STREAM_H
#define FM_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "formats/err.h"
#include "runtime/experts.h"

#define FM_STREAM_DIO_ALIGN 4096u /* O_DIRECT offset/length/buffer alignment used */
#define FM_STREAM_MAX_THREADS 64
#define FM_STREAM_LFRU_HALF_LIFE 4096u

enum { FM_STREAM_IO_CACHED = 0, FM_STREAM_IO_DIRECT = 1 };
enum { FM_STREAM_EVICT_LRU = 0, FM_STREAM_EVICT_LFRU = 1 };

typedef struct fm_experts_stream_opts {
    /* Bytes of expert cache (the slab). 0 = room for every expert (nothing
     * is ever evicted). Rounded down to whole slots, raised to at least
     * n_pinned_max + 1 slots; fm_experts_stream_info reports the result. */
    uint64_t budget_bytes;
    uint32_t n_threads;    /* I/O threads; 0 = 2 * n_expert_used_hint, at least 2 */
    uint32_t n_expert_used_hint; /* the model's top-k (for the default above); 0 = 4 */
    uint32_t n_pinned_max; /* most experts held at once by acquire; 0 = 1 */
    int io;                /* FM_STREAM_IO_CACHED or FM_STREAM_IO_DIRECT */
    int evict;             /* FM_STREAM_EVICT_LRU or FM_STREAM_EVICT_LFRU */
    bool verify;           /* SHA-256 of each expert on its first read */
    bool fadvise;          /* cached mode: POSIX_FADV_DONTNEED the pages just read
                              (the slab is the cache; avoids holding them twice) */
    uint64_t chunk_bytes;  /* one read job reads at most this much (rounded up to
                              FM_STREAM_DIO_ALIGN): more reads in flight per expert;
                              0 = whole pieces */
} fm_experts_stream_opts;

void fm_experts_stream_opts_init(fm_experts_stream_opts *o);

fm_err fm_experts_open_stream(const fm_expert_catalog *c, const fm_experts_stream_opts *o, fm_experts **out,
                              fm_error *e);

/* More figures than fm_experts_stats (x must be a stream source, else
 * false). */
typedef struct fm_experts_stream_info {
    uint64_t slot_bytes, n_slots, budget_bytes; /* budget_bytes = n_slots * slot_bytes */
    uint32_t n_threads;
    int io, evict;
    uint64_t evictions;      /* filled slots reused for another expert */
    uint64_t prefetch_wasted;/* prefetched experts evicted before any acquire */
    uint64_t prefetch_dropped; /* prefetch requests not started for want of a free slot */
    uint64_t waits;          /* acquires that had to wait for a read */
    double wait_seconds;     /* time acquire spent waiting for reads */
    uint64_t verified;       /* experts whose SHA-256 was checked */
    uint64_t speculated;     /* reads started by fm_experts_stream_speculate */
} fm_experts_stream_info;
bool fm_experts_stream_info_get(const fm_experts *x, fm_experts_stream_info *out);

/* A hint for a later layer (e.g. layer L+1's router applied to layer L's
 * hidden state): like prefetch, but queued behind every other read, never
 * evicting what the current prefetch protects, and not starting a new
 * prefetch epoch. No-op for other sources. Not used by the forward pass:
 * measured on bench/gen_big_moe.py's model (top-4 of the next layer's
 * router on this layer's FFN input: 85% right) it read 20% more bytes per
 * token and was not faster at a 512 MiB budget (I/O-bound). */
void fm_experts_stream_speculate(fm_experts *x, uint32_t layer, const uint32_t *ids, uint32_t n);

/* Memory this process may still use, for a default budget: the smaller of
 * MemAvailable (/proc/meminfo) and, when the process is in a memory cgroup
 * with a limit (v1: memory.limit_in_bytes of its group and every ancestor,
 * also memory.memsw.limit_in_bytes; v2: memory.max up the tree), that limit
 * minus the group's anonymous memory now (v1 total_rss, v2 anon: what
 * cannot be reclaimed; page cache can). *limited says whether a cgroup limit
 * was the smaller one. false when /proc/meminfo cannot be read. */
bool fm_stream_mem_available(uint64_t *bytes, bool *limited);

/* Parses "123", "1.5G", "512M", "64K" (binary multiples; optional B). */
bool fm_stream_parse_bytes(const char *s, uint64_t *out);

#endif
