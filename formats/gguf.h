/* GGUF reader (versions 2 and 3). Reads the header (metadata and tensor
 * infos) with pread into memory, never the tensor data, so files larger than
 * RAM open. Every count, length and offset is checked against the file size
 * and against caps before use; see specs/gguf.md for the rules (G1..Gn). */
#ifndef FM_GGUF_H
#define FM_GGUF_H

#include <stdbool.h>
#include <stdint.h>

#include "formats/err.h"
#include "formats/file.h"

#define FM_GGUF_MAX_DIMS 4
#define FM_GGUF_DEFAULT_ALIGNMENT 32
#define FM_GGUF_MAX_NAME_LEN 65535      /* keys and tensor names (G7, G15) */
#define FM_GGUF_MAX_ARRAY_DEPTH 8       /* an array value is depth 1 (G11) */
#define FM_GGUF_META_CAP (1ull << 30)   /* default metadata memory cap (G13) */

typedef enum fm_gguf_vtype {
    FM_GGUF_UINT8 = 0,
    FM_GGUF_INT8 = 1,
    FM_GGUF_UINT16 = 2,
    FM_GGUF_INT16 = 3,
    FM_GGUF_UINT32 = 4,
    FM_GGUF_INT32 = 5,
    FM_GGUF_FLOAT32 = 6,
    FM_GGUF_BOOL = 7,
    FM_GGUF_STRING = 8,
    FM_GGUF_ARRAY = 9,
    FM_GGUF_UINT64 = 10,
    FM_GGUF_INT64 = 11,
    FM_GGUF_FLOAT64 = 12,
} fm_gguf_vtype;

typedef struct fm_gguf_str {
    uint64_t len;
    char *s; /* NUL-terminated copy (may contain NULs for non-key strings) */
} fm_gguf_str;

typedef struct fm_gguf_value fm_gguf_value;
struct fm_gguf_value {
    uint32_t type; /* fm_gguf_vtype */
    union {
        uint64_t u64;  /* UINT8..UINT64, BOOL (0/1) */
        int64_t i64;   /* INT8..INT64 */
        double f64;    /* FLOAT32, FLOAT64 */
        fm_gguf_str str;
        struct {
            uint32_t type; /* element type */
            uint64_t n;
            /* n elements, each a full fm_gguf_value whose .type is the element
             * type: scalars widened as above, strings in .v.str, nested arrays
             * in .v.arr. NULL when n == 0. */
            fm_gguf_value *vals;
        } arr;
    } v;
};

typedef struct fm_gguf_kv {
    fm_gguf_str key;
    fm_gguf_value val;
} fm_gguf_kv;

typedef struct fm_gguf_tensor {
    fm_gguf_str name;
    uint32_t n_dims;
    uint64_t ne[FM_GGUF_MAX_DIMS]; /* ne[0] fastest-varying; unused dims are 1 */
    uint32_t type;                 /* GGML type id == fm_qtype */
    uint64_t offset;               /* relative to data_offset, as stored */
    uint64_t abs_offset;           /* data_offset + offset */
    uint64_t n_elems;
    uint64_t size;                 /* bytes */
} fm_gguf_tensor;

typedef struct fm_gguf {
    fm_file file;
    uint32_t version;
    uint64_t n_kv;
    fm_gguf_kv *kv;
    uint64_t n_tensors;
    fm_gguf_tensor *tensors;
    uint64_t alignment;   /* general.alignment or 32 */
    uint64_t data_offset; /* start of the tensor data area */
    uint64_t header_end;  /* end of the tensor infos (before alignment padding) */
    uint64_t meta_bytes;  /* metadata memory accounted against the cap (G13) */
    struct fm_gguf_priv *priv; /* internal: arena, sorted indexes */
} fm_gguf;

typedef struct fm_gguf_opts {
    /* Cap on metadata memory (G13); 0 means min(FM_GGUF_META_CAP,
     * 64 * file size + 1 MiB). */
    uint64_t meta_cap;
} fm_gguf_opts;

fm_err fm_gguf_open(fm_gguf **out, const char *path, fm_error *e);
/* fm_gguf_open with options; opts may be NULL. */
fm_err fm_gguf_open_opts(fm_gguf **out, const char *path, const fm_gguf_opts *opts, fm_error *e);
void fm_gguf_close(fm_gguf *g);

const fm_gguf_kv *fm_gguf_find_kv(const fm_gguf *g, const char *key);
const fm_gguf_tensor *fm_gguf_find_tensor(const fm_gguf *g, const char *name);

/* Typed getters: FM_E_NOTFOUND when absent, FM_E_FORMAT when of another type.
 * get_u64 accepts any non-negative integer type; get_f64 any number. */
fm_err fm_gguf_get_u64(const fm_gguf *g, const char *key, uint64_t *out, fm_error *e);
fm_err fm_gguf_get_f64(const fm_gguf *g, const char *key, double *out, fm_error *e);
fm_err fm_gguf_get_str(const fm_gguf *g, const char *key, const char **out, fm_error *e);
fm_err fm_gguf_get_bool(const fm_gguf *g, const char *key, bool *out, fm_error *e);
/* An ARRAY value; *elem_type and *n describe it. */
fm_err fm_gguf_get_arr(const fm_gguf *g, const char *key, const fm_gguf_value **out, fm_error *e);

/* Reads the raw bytes of tensor t (t->size bytes) into buf. */
fm_err fm_gguf_read_tensor(const fm_gguf *g, const fm_gguf_tensor *t, void *buf, fm_error *e);
/* Reads rows [row0, row0+nrows) of t (a row is ne[0] values) as raw bytes. */
fm_err fm_gguf_read_rows(const fm_gguf *g, const fm_gguf_tensor *t, uint64_t row0, uint64_t nrows,
                         void *buf, fm_error *e);

const char *fm_gguf_vtype_name(uint32_t t);

#endif
