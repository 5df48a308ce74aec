/* safetensors reader: one file, or a sharded directory with
 * model.safetensors.index.json. Header length is capped; the JSON is parsed
 * with jansson; every tensor's byte range lies inside its file's data area,
 * tensors do not overlap, and dtype size x shape equals the byte range.
 * Rules S1..Sn in specs/safetensors.md. */
#ifndef FM_SAFETENSORS_H
#define FM_SAFETENSORS_H

#include <stdint.h>

#include "formats/err.h"
#include "formats/file.h"

#define FM_ST_MAX_DIMS 8
#define FM_ST_MAX_HEADER 100000000u /* bytes, as the reference crate (MAX_HEADER_SIZE) */
#define FM_ST_MAX_TENSORS (1u << 20) /* tensors in one fm_st (all shards) */
#define FM_ST_MAX_FILES 1024u        /* shard files of one index */

typedef enum fm_st_dtype {
    FM_ST_BOOL, FM_ST_U8, FM_ST_I8, FM_ST_U16, FM_ST_I16, FM_ST_F16, FM_ST_BF16,
    FM_ST_U32, FM_ST_I32, FM_ST_F32, FM_ST_U64, FM_ST_I64, FM_ST_F64,
    FM_ST_F8_E4M3, FM_ST_F8_E5M2,
    FM_ST_DTYPE_COUNT_
} fm_st_dtype;

typedef struct fm_st_tensor {
    char *name;
    fm_st_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[FM_ST_MAX_DIMS]; /* row-major, shape[n_dims-1] fastest */
    uint64_t n_elems;
    uint32_t file_index; /* into fm_st.files */
    uint64_t offset;     /* absolute offset in that file */
    uint64_t size;       /* bytes */
} fm_st_tensor;

typedef struct fm_st_meta {
    char *key, *value; /* __metadata__ string pairs */
} fm_st_meta;

typedef struct fm_st {
    uint32_t n_files;
    fm_file *files;
    uint64_t n_tensors;
    fm_st_tensor *tensors; /* sorted by name */
    uint64_t n_meta;
    fm_st_meta *meta;
} fm_st;

/* path: a .safetensors file, or a directory holding one (model.safetensors)
 * or an index (model.safetensors.index.json) and its shards. */
fm_err fm_st_open(fm_st **out, const char *path, fm_error *e);
void fm_st_close(fm_st *st);

const fm_st_tensor *fm_st_find(const fm_st *st, const char *name);
fm_err fm_st_read(const fm_st *st, const fm_st_tensor *t, void *buf, fm_error *e);

const char *fm_st_dtype_name(fm_st_dtype d);
uint32_t fm_st_dtype_size(fm_st_dtype d);
/* The fm_qtype of a floating dtype (F32, F16, BF16, F8_*), or -1. */
int fm_st_dtype_qtype(fm_st_dtype d);
/* Converts n elements of raw data of any dtype to float32 (integers and
 * bools by value; F64 rounded to nearest). */
fm_err fm_st_to_f32(fm_st_dtype d, const void *raw, uint64_t n, float *out, fm_error *e);

#endif
