/* Model sources for the converter: a GGUF file or a Hugging Face directory,
 * seen through one interface that lists the model's canonical tensors
 * (formats/arch.h names, GGUF ne order) and reads them.
 *
 * A source presents every tensor the way a bundle stores it, independently
 * of where it came from:
 *  - names are canonical ("blk.3.attn_q.weight"); expert tensors are listed
 *    once per layer and part, fused as GGUF fuses them: ne = [in, out,
 *    n_expert], expert e's rows are rows [e*out, (e+1)*out);
 *  - `qtype` is the type the bytes are presented in: a GGUF tensor's own GGML
 *    type (its bytes are copied unchanged); for Hugging Face the safetensors
 *    dtype (F32, F16, BF16), except tensors the architecture changes
 *    numerically (FM_ARCH_HF_NORM_PLUS1: w + 1 computed in float32), which
 *    are presented as F32;
 *  - layout transformations are applied: FM_ARCH_HF_PERMUTE_QK row
 *    permutation of q/k weights and biases (so both sources read identically
 *    and the runtime applies NORM rope to either), per-expert HF tensors
 *    gathered under the fused name.
 * Opening validates everything a conversion needs before any output exists:
 * architecture, hyperparameters (config.json or GGUF metadata, finalized by
 * fm_arch_hparams_finalize), the tensor set and shapes against the table,
 * and that every tensor's type can be dequantized. */
#ifndef FM_CONVERT_SOURCE_H
#define FM_CONVERT_SOURCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/arch.h"
#include "formats/err.h"

typedef enum fm_source_kind { FM_SOURCE_GGUF = 1, FM_SOURCE_HF = 2 } fm_source_kind;

typedef struct fm_source_tensor {
    char *name;                  /* canonical name (the fused name for experts) */
    const fm_arch_tensor *entry; /* its table entry */
    uint32_t layer;              /* 0 for global tensors */
    uint32_t qtype;              /* presented type (fm_qtype) */
    uint32_t n_dims;             /* 1..3 */
    uint64_t ne[4];              /* GGUF order; unused dims are 1 */
    uint64_t n_elems;
    uint64_t row_bytes;          /* bytes of one row (ne[0] values) in qtype */
    uint64_t n_rows;             /* n_elems / ne[0] (all experts for a fused tensor) */
    uint64_t size;               /* bytes of the whole tensor in qtype */
    bool expert;                 /* FM_T_EXPERT: ne[2] experts of ne[1] rows */
    size_t impl_index;           /* implementation's own index */
} fm_source_tensor;

typedef struct fm_source_file {
    char *path;
    uint64_t size;
} fm_source_file;

typedef struct fm_source fm_source;

/* Opens path: a .gguf file (magic "GGUF"), or a directory holding
 * config.json and .safetensors (one file or an index with shards).
 * FM_E_UNSUPPORTED: architecture, dtype or quant type fm does not handle;
 * FM_E_FORMAT / FM_E_NOTFOUND: malformed input, a missing tensor or shard,
 * a config that disagrees with the tensors. Messages name the file and the
 * tensor or key. */
fm_err fm_source_open(fm_source **out, const char *path, fm_error *e);
void fm_source_close(fm_source *s);

fm_source_kind fm_source_kind_of(const fm_source *s);
const char *fm_source_path(const fm_source *s);
const fm_arch *fm_source_arch(const fm_source *s);
/* Finalized canonical hyperparameters (owned by s). */
const json_t *fm_source_hparams(const fm_source *s);

size_t fm_source_n_tensors(const fm_source *s);
/* Tensors in the order a bundle stores them (the source's own order). */
const fm_source_tensor *fm_source_tensor_at(const fm_source *s, size_t i);
const fm_source_tensor *fm_source_find(const fm_source *s, const char *name);

/* Input files, for provenance (GGUF: the file; HF: config.json, the
 * tokenizer and generation files present, the index and every shard). */
size_t fm_source_n_files(const fm_source *s);
const fm_source_file *fm_source_file_at(const fm_source *s, size_t i);

/* Reads rows [row0, row0 + nrows) of t as raw bytes in t->qtype
 * (nrows * t->row_bytes bytes into buf). For an expert tensor, expert >= 0
 * selects that expert's slice (rows counted within it); expert < 0 reads the
 * fused rows. Thread-safe (pread). */
fm_err fm_source_read_rows(const fm_source *s, const fm_source_tensor *t, int64_t expert, uint64_t row0,
                           uint64_t nrows, void *buf, fm_error *e);
/* The same rows as float32 (nrows * ne[0] values): the exact dequantization
 * of the presented bytes. scratch: NULL, or nrows * row_bytes bytes the
 * function may use (else it allocates). */
fm_err fm_source_read_rows_f32(const fm_source *s, const fm_source_tensor *t, int64_t expert, uint64_t row0,
                               uint64_t nrows, float *out, void *scratch, fm_error *e);

/* Direct I/O: read tensor data through O_DIRECT descriptors (aligned bounce
 * buffers), so that converting a model larger than memory leaves the page
 * cache alone. FM_E_UNSUPPORTED when the file system refuses O_DIRECT (the
 * source then keeps reading through the cache). */
fm_err fm_source_set_direct(fm_source *s, fm_error *e);

/* Tells the kernel the input pages behind these rows are no longer needed
 * (posix_fadvise DONTNEED), so that converting a model larger than memory
 * does not fill the page cache. Best effort; never fails. */
void fm_source_drop_rows(const fm_source *s, const fm_source_tensor *t, int64_t expert, uint64_t row0,
                         uint64_t nrows);

/* The canonical tokenizer JSON (formats/tokmeta.h) of the source.
 * FM_E_NOTFOUND when the source has no tokenizer; FM_E_UNSUPPORTED when fm
 * was built without formats/tokmeta. */
fm_err fm_source_tokenizer(const fm_source *s, json_t **out, fm_error *e);

/* ---- implementation interface (convert/src_gguf.c, convert/src_hf.c) */

typedef struct fm_source_ops {
    fm_err (*read_rows)(const fm_source *s, const fm_source_tensor *t, int64_t expert, uint64_t row0,
                        uint64_t nrows, void *buf, fm_error *e);
    void (*drop_rows)(const fm_source *s, const fm_source_tensor *t, int64_t expert, uint64_t row0,
                      uint64_t nrows);
    fm_err (*tokenizer)(const fm_source *s, json_t **out, fm_error *e);
    void (*close)(fm_source *s);
    fm_err (*set_direct)(fm_source *s, fm_error *e);
} fm_source_ops;

struct fm_source {
    fm_source_kind kind;
    char *path;
    const fm_arch *arch;
    json_t *hparams;
    size_t n_tensors;
    fm_source_tensor *tensors;
    size_t n_files;
    fm_source_file *files;
    const fm_source_ops *ops;
    void *impl;
};

fm_err fm_source_open_gguf(fm_source **out, const char *path, fm_error *e);
fm_err fm_source_open_hf(fm_source **out, const char *dir, fm_error *e);

/* Helpers for implementations. */
fm_source *fm_source_alloc(fm_source_kind kind, const char *path);
fm_err fm_source_add_file(fm_source *s, const char *path, fm_error *e);
/* Fills row_bytes, n_rows, n_elems and size from qtype and ne (checked). */
fm_err fm_source_tensor_sizes(fm_source_tensor *t, const char *what, fm_error *e);

#endif
