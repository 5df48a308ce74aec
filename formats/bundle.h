/* fm bundle reader (specs/bundle.md, format version 1).
 *
 * A bundle is a POSIX pax tar archive. Its first member, fm/superblock, is a
 * fixed 4096-byte binary record at file offset 512 that locates the JSON
 * manifest (fm/manifest.json) in O(1). The manifest lists every tensor and
 * every (layer, expert) blob with offset, size, quant scheme, shape and
 * SHA-256. Weight data is stored uncompressed, each blob starting at a
 * multiple of the bundle's alignment, so one aligned pread (O_DIRECT capable)
 * fetches one expert. Lifecycle: fm_bundle_open -> lookups/reads -> fm_bundle_close. */
#ifndef FM_BUNDLE_H
#define FM_BUNDLE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "formats/err.h"
#include "formats/file.h"

#define FM_BUNDLE_MAJOR 1
#define FM_BUNDLE_MINOR 0
#define FM_BUNDLE_MAX_DIMS 4
#define FM_BUNDLE_MAX_PARTS 4 /* gate | up | down (| spare) */
#define FM_BUNDLE_DEFAULT_ALIGN 16384u

enum { FM_BUNDLE_OPEN_DIRECT = 1 }; /* also open a second O_DIRECT descriptor */

typedef struct fm_bundle_tensor {
    const char *name;   /* canonical name, e.g. "blk.3.attn_q.weight" */
    uint32_t qtype;     /* fm_qtype */
    uint32_t n_dims;
    uint64_t shape[FM_BUNDLE_MAX_DIMS]; /* row-major: shape[n_dims-1] is the row length */
    uint64_t n_elems;
    uint64_t offset;    /* absolute file offset, multiple of alignment */
    uint64_t size;      /* bytes */
    uint8_t sha256[32];
    const json_t *error; /* requant error figures (object) or NULL */
} fm_bundle_tensor;

typedef struct fm_bundle_part { /* one matrix inside an expert blob */
    const char *name;   /* "gate", "up", "down" */
    uint32_t qtype;
    uint32_t n_dims;
    uint64_t shape[FM_BUNDLE_MAX_DIMS];
    uint64_t n_elems;
    uint64_t offset;    /* byte offset inside the blob */
    uint64_t size;
    const json_t *error;
} fm_bundle_part;

typedef struct fm_bundle_blob {
    uint64_t offset;    /* absolute, multiple of alignment */
    uint64_t size;
    uint8_t sha256[32];
} fm_bundle_blob;

typedef struct fm_bundle_expert_layer {
    uint32_t layer;
    uint32_t n_expert;
    uint32_t n_parts;
    fm_bundle_part parts[FM_BUNDLE_MAX_PARTS];
    uint64_t blob_size;     /* same for every expert of the layer */
    fm_bundle_blob *blobs;  /* n_expert entries, expert order */
} fm_bundle_expert_layer;

typedef struct fm_bundle fm_bundle;

fm_err fm_bundle_open(fm_bundle **out, const char *path, int flags, fm_error *e);
void fm_bundle_close(fm_bundle *b);

const char *fm_bundle_path(const fm_bundle *b);
uint32_t fm_bundle_alignment(const fm_bundle *b);
uint64_t fm_bundle_file_size(const fm_bundle *b);
void fm_bundle_version(const fm_bundle *b, uint32_t *major, uint32_t *minor);
/* The parsed manifest (owned by b): "arch" holds the architecture name and
 * hyperparameters under canonical names, "provenance" where it came from. */
const json_t *fm_bundle_manifest(const fm_bundle *b);
const json_t *fm_bundle_arch(const fm_bundle *b);
const char *fm_bundle_arch_name(const fm_bundle *b);

uint64_t fm_bundle_n_tensors(const fm_bundle *b);
const fm_bundle_tensor *fm_bundle_tensor_at(const fm_bundle *b, uint64_t i);
const fm_bundle_tensor *fm_bundle_find_tensor(const fm_bundle *b, const char *name);

uint32_t fm_bundle_n_expert_layers(const fm_bundle *b);
const fm_bundle_expert_layer *fm_bundle_expert_layer_at(const fm_bundle *b, uint32_t i);
/* NULL when that layer has no experts. */
const fm_bundle_expert_layer *fm_bundle_find_expert_layer(const fm_bundle *b, uint32_t layer);
const fm_bundle_part *fm_bundle_find_part(const fm_bundle_expert_layer *l, const char *name);

/* Reads a tensor's bytes into buf (t->size bytes); verify: check SHA-256
 * (FM_E_CHECKSUM naming the tensor on mismatch). */
fm_err fm_bundle_read_tensor(const fm_bundle *b, const fm_bundle_tensor *t, void *buf, bool verify,
                             fm_error *e);
/* Reads one expert blob (l->blob_size bytes). */
fm_err fm_bundle_read_expert(const fm_bundle *b, const fm_bundle_expert_layer *l, uint32_t expert,
                             void *buf, bool verify, fm_error *e);
/* Descriptors for callers doing their own I/O (the runtime's thread pool).
 * direct_fd is -1 unless opened with FM_BUNDLE_OPEN_DIRECT and O_DIRECT works. */
int fm_bundle_fd(const fm_bundle *b);
int fm_bundle_direct_fd(const fm_bundle *b);

/* The tokenizer member decompressed: canonical tokenizer JSON
 * (specs/tokenizer.md). Caller frees *out with free(). */
fm_err fm_bundle_read_tokenizer(const fm_bundle *b, char **out, size_t *len, fm_error *e);


/* ---- Additions (issue 4): layout constants, superblock codec, tar header
 * parsing and bundle information for the writer (pack/writer.h), fm-verify
 * (pack/verify.h) and fm-inspect. Rule numbers refer to specs/bundle.md. */

#define FM_BUNDLE_MAGIC "FMBUNDLE"
#define FM_BUNDLE_SB_OFFSET 512u    /* superblock data offset (B2) */
#define FM_BUNDLE_SB_SIZE 4096u     /* superblock data size (B3) */
#define FM_BUNDLE_MIN_ALIGN 4096u   /* B5 */
#define FM_BUNDLE_MAX_ALIGN (1u << 20)
#define FM_BUNDLE_MANIFEST_CAP (64u << 20)  /* stored and decoded manifest bytes (B7) */
#define FM_BUNDLE_TOKENIZER_CAP (256u << 20) /* stored and decoded tokenizer bytes (B13) */
#define FM_BUNDLE_MAX_TENSORS (1u << 20)    /* B11 */
#define FM_BUNDLE_MAX_LAYERS 65536u         /* expert layers (B12) */
#define FM_BUNDLE_MAX_EXPERTS 65536u        /* experts per layer (B12) */
#define FM_BUNDLE_MAX_BLOBS (1u << 22)      /* expert blobs in all (B12) */
#define FM_BUNDLE_MAX_NAME 255u             /* tensor and part names (B10) */
#define FM_BUNDLE_SIG_SIZE 64u              /* Ed25519 signature (B17) */

#define FM_BUNDLE_MEMBER_SUPERBLOCK "fm/superblock"
#define FM_BUNDLE_MEMBER_PAD "fm/pad"
#define FM_BUNDLE_MEMBER_TOKENIZER "fm/tokenizer.json.zst"
#define FM_BUNDLE_MEMBER_MANIFEST "fm/manifest.json"
#define FM_BUNDLE_MEMBER_MANIFEST_ZST "fm/manifest.json.zst"
#define FM_BUNDLE_MEMBER_SIG "fm/manifest.sig"

enum { FM_BUNDLE_ENC_JSON = 0, FM_BUNDLE_ENC_ZSTD = 1 }; /* manifest encoding (B3) */
enum { FM_BUNDLE_COMP_NONE = 0, FM_BUNDLE_COMP_ZSTD = 1 }; /* tokenizer compression (B13) */

/* The decoded superblock (B3). */
typedef struct fm_bundle_superblock {
    uint16_t major, minor;
    uint32_t alignment;
    uint64_t manifest_offset;   /* data offset of the manifest member */
    uint64_t manifest_size;     /* stored bytes */
    uint8_t manifest_sha256[32]; /* of the stored bytes */
    uint32_t manifest_encoding; /* FM_BUNDLE_ENC_* */
    uint64_t signature_offset;  /* data offset of fm/manifest.sig, 0 if none */
    uint64_t signature_size;    /* 64 or 0 */
    uint64_t manifest_raw_size; /* decoded manifest bytes (== manifest_size when JSON) */
    uint64_t file_size;         /* the whole bundle */
    uint8_t signature_sha256[32]; /* of the embedded signature, zero if none */
} fm_bundle_superblock;

/* Encodes sb into the 4096-byte record, reserved bytes zero, trailing SHA-256. */
void fm_bundle_superblock_encode(const fm_bundle_superblock *sb, uint8_t out[FM_BUNDLE_SB_SIZE]);
/* Checks magic (FM_E_FORMAT), major version (FM_E_VERSION) and the record's
 * own SHA-256 (FM_E_CHECKSUM), then decodes; no other field is checked. */
fm_err fm_bundle_superblock_decode(const uint8_t in[FM_BUNDLE_SB_SIZE], fm_bundle_superblock *sb,
                                   fm_error *e);

/* One ustar header block (B1), as parsed by fm_bundle_tar_parse. */
typedef struct fm_tar_header {
    char name[257];   /* prefix "/" name, NUL-terminated */
    char typeflag;    /* '0' regular file, 'x' pax extended header, ... */
    uint64_t size;
    uint64_t mtime;
} fm_tar_header;

/* Parses a 512-byte ustar header: "ustar\0" "00" magic, checksum field of
 * six octal digits, NUL, space holding the sum of the header bytes with that
 * field as spaces, octal size and mtime fields. FM_E_FORMAT with a message
 * (no offset: callers prefix it) when any of that fails. */
fm_err fm_bundle_tar_parse(const uint8_t blk[512], fm_tar_header *h, fm_error *e);

/* B10: 1..255 bytes of printable ASCII (0x21..0x7e), no '/' or '\\', not "." or "..". */
bool fm_bundle_name_ok(const char *name);
/* Member names (B15): "t/<tensor>", "x/blk.<layer>/<expert>". Return the length
 * snprintf would write; buffers of 300 bytes always suffice. */
int fm_bundle_tensor_member(const char *tensor, char *buf, size_t n);
int fm_bundle_expert_member(uint32_t layer, uint32_t expert, char *buf, size_t n);

/* Where things are; filled from the superblock and manifest. */
typedef struct fm_bundle_info {
    fm_bundle_superblock sb;
    bool has_tokenizer;
    const char *tokenizer_member; /* owned by b */
    uint64_t tokenizer_offset, tokenizer_size, tokenizer_raw_size;
    uint32_t tokenizer_compression; /* FM_BUNDLE_COMP_* */
    uint8_t tokenizer_sha256[32];
    uint64_t n_blobs;      /* expert blobs in all layers */
    uint64_t weight_bytes; /* sum of tensor and blob sizes */
} fm_bundle_info;
void fm_bundle_get_info(const fm_bundle *b, fm_bundle_info *out);

/* Re-reads the manifest member's stored bytes (what a signature covers, B17)
 * and checks them against the superblock's SHA-256. Caller frees *out. */
fm_err fm_bundle_read_manifest_bytes(const fm_bundle *b, void **out, size_t *len, fm_error *e);

#endif
