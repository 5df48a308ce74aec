/* fm bundle: writer -> reader round trip, libarchive listing, every manifest
 * and superblock validation rule (specs/bundle.md B1..B19), corruption sweep
 * through the verifier, signatures.
 *
 * Also a generator used by the integration scripts and bench/verify.sh:
 *   test_bundle mkbundle OUT [--fixture|--small] [--mib N] [--align A] [--sign KEY.pem]
 *                            [--blob-kib K] [--seed S] [--force]
 *   test_bundle gen-corpus DIR [VALID_DIR]   (small invalid bundles named
 *       bundle-B<n>-<what>.fmb; and VALID_DIR/bundle-small.fmb)
 * Regenerate the committed corpus from the repo root with
 *   build/tests/test_bundle gen-corpus tests/corpus/invalid tests/corpus/valid */
#include "formats/bundle.h"
#include "formats/quant.h"
#include "formats/sha256.h"
#include "formats/util.h"
#include "pack/sign.h"
#include "pack/verify.h"
#include "pack/writer.h"
#include "t.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

static char tmpdir[256];

static void tpath(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmpdir, name); }

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}
static void fill_random(void *p, size_t n)
{
    uint8_t *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = rnd();
        memcpy(b + i, &v, 8);
    }
    for (; i < n; i++) b[i] = (uint8_t)rnd();
}

static uint64_t fsize(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void flip_bit(const char *path, uint64_t off, int bit)
{
    int fd = open(path, O_RDWR);
    uint8_t c = 0;
    if (fd < 0 || pread(fd, &c, 1, (off_t)off) != 1) {
        fprintf(stderr, "flip_bit: cannot read %s at %llu\n", path, (unsigned long long)off);
        exit(3);
    }
    c ^= (uint8_t)(1u << bit);
    if (pwrite(fd, &c, 1, (off_t)off) != 1) exit(3);
    close(fd);
}

static void patch(const char *path, uint64_t off, const void *data, size_t n)
{
    int fd = open(path, O_RDWR);
    if (fd < 0 || pwrite(fd, data, n, (off_t)off) != (ssize_t)n) exit(3);
    close(fd);
}

static void read_at(const char *path, uint64_t off, void *data, size_t n)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0 || pread(fd, data, n, (off_t)off) != (ssize_t)n) exit(3);
    close(fd);
}

static void copy_file(const char *from, const char *to)
{
    char *buf;
    size_t len;
    fm_error e;
    if (fm_file_slurp(from, 1u << 30, &buf, &len, &e) != FM_OK) exit(3);
    FILE *f = fopen(to, "wb");
    if (!f || fwrite(buf, 1, len, f) != len) exit(3);
    fclose(f);
    free(buf);
}

/* Rewrites the superblock after fn changed it (recomputing its SHA-256). */
static void edit_superblock(const char *path, void (*fn)(fm_bundle_superblock *sb, void *arg), void *arg)
{
    uint8_t rec[FM_BUNDLE_SB_SIZE];
    read_at(path, FM_BUNDLE_SB_OFFSET, rec, sizeof rec);
    fm_bundle_superblock sb;
    fm_error e;
    if (fm_bundle_superblock_decode(rec, &sb, &e) != FM_OK) {
        fprintf(stderr, "edit_superblock: %s\n", e.msg);
        exit(3);
    }
    fn(&sb, arg);
    fm_bundle_superblock_encode(&sb, rec);
    patch(path, FM_BUNDLE_SB_OFFSET, rec, sizeof rec);
}

/* ------------------------------------------------------------------ fixture */

typedef struct fx_tensor {
    char name[200];
    uint32_t qtype, n_dims;
    uint64_t shape[4];
    uint8_t *data;
    size_t size;
} fx_tensor;

typedef struct fx_layer {
    uint32_t layer, n_expert, n_parts;
    fm_bundle_writer_part parts[3];
    uint64_t part_size[3];
    uint8_t *blobs; /* n_expert * blob_size */
    size_t blob_size;
} fx_layer;

typedef struct fixture {
    fx_tensor t[8];
    int nt;
    fx_layer L[3];
    int nl;
    char *tok;
    size_t tok_len;
} fixture;

static uint64_t qbytes(uint32_t q, uint32_t nd, const uint64_t *shape)
{
    uint64_t n = 1, b = 0;
    for (uint32_t i = 0; i < nd; i++) n *= shape[i];
    fm_error e;
    if (fm_qtype_nbytes(q, n, &b, &e) != FM_OK) {
        fprintf(stderr, "fixture: %s\n", e.msg);
        exit(3);
    }
    return b;
}

static void fx_add_tensor(fixture *f, const char *name, uint32_t q, uint32_t nd, uint64_t d0, uint64_t d1)
{
    fx_tensor *t = &f->t[f->nt++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->qtype = q;
    t->n_dims = nd;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->size = (size_t)qbytes(q, nd, t->shape);
    t->data = malloc(t->size);
    fill_random(t->data, t->size);
}

static void fx_add_layer(fixture *f, uint32_t layer, uint32_t n_expert, uint32_t n_parts, const uint32_t *q,
                         const uint64_t (*shape)[2])
{
    static const char *const names[] = {"gate", "up", "down"};
    fx_layer *L = &f->L[f->nl++];
    memset(L, 0, sizeof *L);
    L->layer = layer;
    L->n_expert = n_expert;
    L->n_parts = n_parts;
    for (uint32_t p = 0; p < n_parts; p++) {
        L->parts[p].name = names[p];
        L->parts[p].qtype = q[p];
        L->parts[p].n_dims = 2;
        L->parts[p].shape[0] = shape[p][0];
        L->parts[p].shape[1] = shape[p][1];
        L->part_size[p] = qbytes(q[p], 2, L->parts[p].shape);
        L->blob_size += (size_t)L->part_size[p];
    }
    L->blobs = malloc(L->blob_size * n_expert);
    fill_random(L->blobs, L->blob_size * n_expert);
}

static void fx_build(fixture *f, bool small)
{
    memset(f, 0, sizeof *f);
    fx_add_tensor(f, "token_embd.weight", FM_Q_Q8_0, 2, 8, 64);
    fx_add_tensor(f, "blk.0.attn_q.weight", FM_Q_F16, 2, 16, 32);
    if (!small) {
        fx_add_tensor(f, "output_norm.weight", FM_Q_F32, 1, 64, 0);
        fx_add_tensor(f, "blk.1.ffn_down_shexp.weight", FM_Q_Q4_K, 2, 4, 256);
        char longname[200];
        snprintf(longname, sizeof longname, "blk.0.%0150d.weight", 7); /* > 100 bytes: pax header */
        fx_add_tensor(f, longname, FM_Q_BF16, 2, 2, 8);
        fx_add_tensor(f, "blk.1.attn_k.weight", FM_Q_F32, 2, 10, 100); /* streamed */
        fx_add_tensor(f, "blk.0.big.weight", FM_Q_F32, 2, 3, 3000);    /* precomputed sha */
    }
    static const uint32_t q0[3] = {FM_Q_Q4_K, FM_Q_Q4_K, FM_Q_Q8_0};
    static const uint64_t s0[3][2] = {{2, 256}, {2, 256}, {4, 64}};
    static const uint32_t q1[3] = {FM_Q_F16, FM_Q_F16, FM_Q_F32};
    static const uint64_t s1[3][2] = {{4, 16}, {4, 16}, {16, 4}};
    static const uint32_t q5[1] = {FM_Q_F32};
    static const uint64_t s5[1][2] = {{1, 8}};
    fx_add_layer(f, 0, small ? 2 : 3, 3, q0, s0);
    fx_add_layer(f, 1, 2, 3, q1, s1);
    if (!small) fx_add_layer(f, 5, 1, 1, q5, s5);
    f->tok = malloc(4096);
    int n = snprintf(f->tok, 4096, "{\"model\":{\"type\":\"BPE\"},\"tokens\":[");
    for (int i = 0; i < 200; i++) n += snprintf(f->tok + n, 4096 - (size_t)n, "%s\"t%d\"", i ? "," : "", i);
    n += snprintf(f->tok + n, 4096 - (size_t)n, "]}");
    f->tok_len = (size_t)n;
}

static void fx_free(fixture *f)
{
    for (int i = 0; i < f->nt; i++) free(f->t[i].data);
    for (int i = 0; i < f->nl; i++) free(f->L[i].blobs);
    free(f->tok);
}

/* Writes f through the writer; returns the writer's code (message in e). */
static fm_err fx_write(const fixture *f, const char *path, const fm_bundle_writer_opts *opts, fm_error *e)
{
    fm_bundle_writer *w;
    fm_err rc = fm_bundle_writer_new(&w, path, opts, e);
    if (rc) return rc;
    json_t *arch = json_pack("{s:s,s:i,s:i,s:i,s:f}", "name", "testmoe", "n_layer", 2, "n_embd", 64,
                             "n_expert", 3, "rope_theta", 10000.0);
    json_t *prov = json_pack("{s:s,s:[{s:s,s:s}],s:[s,s]}", "tool", "test_bundle 1", "sources", "file",
                             "x.gguf", "sha256",
                             "0000000000000000000000000000000000000000000000000000000000000000",
                             "command_line", "fm-pack", "x.gguf");
    if ((rc = fm_bundle_writer_set_arch(w, arch, e))) goto out;
    if ((rc = fm_bundle_writer_set_provenance(w, prov, e))) goto out;
    if ((rc = fm_bundle_writer_add_tokenizer(w, f->tok, f->tok_len, e))) goto out;
    int li = 0;
    for (int i = 0; i < f->nt; i++) {
        const fx_tensor *t = &f->t[i];
        fm_bundle_writer_tensor d;
        memset(&d, 0, sizeof d);
        d.name = t->name;
        d.qtype = t->qtype;
        d.n_dims = t->n_dims;
        memcpy(d.shape, t->shape, sizeof d.shape);
        json_t *err = NULL;
        if (strcmp(t->name, "blk.0.attn_q.weight") == 0) d.error = err = json_pack("{s:f}", "rmse", 0.25);
        if (strcmp(t->name, "blk.1.attn_k.weight") == 0) {
            if ((rc = fm_bundle_writer_begin_tensor(w, &d, t->size, e)) ||
                (rc = fm_bundle_writer_write(w, t->data, 1000, e)) ||
                (rc = fm_bundle_writer_write(w, t->data + 1000, 2000, e)) ||
                (rc = fm_bundle_writer_write(w, t->data + 3000, t->size - 3000, e)) ||
                (rc = fm_bundle_writer_end_tensor(w, e)))
                goto out;
        } else {
            if (strcmp(t->name, "blk.0.big.weight") == 0) {
                d.has_sha256 = true;
                fm_sha256_buf(t->data, t->size, d.sha256, NULL);
            }
            rc = fm_bundle_writer_add_tensor(w, &d, t->data, t->size, e);
        }
        json_decref(err);
        if (rc) goto out;
        /* interleave expert layers with dense tensors */
        if (i == 1 && li < f->nl) {
            const fx_layer *L = &f->L[li++];
            if ((rc = fm_bundle_writer_begin_experts(w, L->layer, L->n_expert, L->n_parts, L->parts, e))) goto out;
            for (uint32_t x = 0; x < L->n_expert; x++)
                if ((rc = fm_bundle_writer_add_expert(w, L->layer, x, L->blobs + x * L->blob_size,
                                                      L->blob_size, NULL, e)))
                    goto out;
        }
    }
    for (; li < f->nl; li++) {
        const fx_layer *L = &f->L[li];
        if ((rc = fm_bundle_writer_begin_experts(w, L->layer, L->n_expert, L->n_parts, L->parts, e))) goto out;
        for (uint32_t x = 0; x < L->n_expert; x++) {
            const uint8_t *b = L->blobs + x * L->blob_size;
            if (li == 1) { /* parts given separately */
                const void *pp[3] = {b, b + L->part_size[0], b + L->part_size[0] + L->part_size[1]};
                rc = fm_bundle_writer_add_expert_parts(w, L->layer, x, pp, e);
            } else {
                uint8_t sha[32];
                fm_sha256_buf(b, L->blob_size, sha, NULL);
                rc = fm_bundle_writer_add_expert(w, L->layer, x, b, L->blob_size, sha, e);
            }
            if (rc) goto out;
        }
    }
    json_t *perr = json_pack("{s:f,s:f}", "rmse", 0.5, "max_abs", 2.0);
    rc = fm_bundle_writer_set_part_error(w, f->L[0].layer, "down", perr, e);
    json_decref(perr);
    if (rc) goto out;
    rc = fm_bundle_writer_finish(w, e);
out:
    json_decref(arch);
    json_decref(prov);
    fm_bundle_writer_free(w);
    return rc;
}

static void opts_default(fm_bundle_writer_opts *o, uint32_t align)
{
    fm_bundle_writer_opts_init(o);
    o->alignment = align;
    o->force = true;
    o->mtime = 1700000000;
}

/* ------------------------------------------------------------------ round trip */

static void check_roundtrip(const fixture *f, const char *path, uint32_t align, const char *label)
{
    fm_bundle *b;
    fm_error e;
    fm_err rc = fm_bundle_open(&b, path, FM_BUNDLE_OPEN_DIRECT, &e);
    CHECKF(rc == FM_OK, "%s: open: %s", label, e.msg);
    if (rc) return;
    uint32_t ma, mi;
    fm_bundle_version(b, &ma, &mi);
    CHECK(ma == 1 && mi == 0);
    CHECK(fm_bundle_alignment(b) == align);
    CHECK(fm_bundle_file_size(b) == fsize(path));
    CHECK(strcmp(fm_bundle_arch_name(b), "testmoe") == 0);
    CHECK(json_integer_value(json_object_get(fm_bundle_arch(b), "n_embd")) == 64);
    CHECK(strcmp(json_string_value(json_object_get(json_object_get(fm_bundle_manifest(b), "provenance"), "tool")),
                 "test_bundle 1") == 0);
    CHECK(fm_bundle_n_tensors(b) == (uint64_t)f->nt);
    CHECK(fm_bundle_fd(b) >= 0);
    for (int i = 0; i < f->nt; i++) {
        const fx_tensor *ft = &f->t[i];
        const fm_bundle_tensor *t = fm_bundle_find_tensor(b, ft->name);
        CHECKF(t != NULL, "%s: tensor %s not found", label, ft->name);
        if (!t) continue;
        CHECK(t == fm_bundle_tensor_at(b, (uint64_t)i)); /* manifest keeps write order */
        CHECK(t->qtype == ft->qtype && t->n_dims == ft->n_dims && t->size == ft->size);
        CHECK(t->shape[0] == ft->shape[0] && (ft->n_dims < 2 || t->shape[1] == ft->shape[1]));
        CHECKF(t->offset % align == 0, "%s: %s at %llu not aligned to %u", label, ft->name,
               (unsigned long long)t->offset, align);
        uint8_t *buf = malloc(t->size);
        rc = fm_bundle_read_tensor(b, t, buf, true, &e);
        CHECKF(rc == FM_OK, "%s: read %s: %s", label, ft->name, e.msg);
        CHECKF(memcmp(buf, ft->data, ft->size) == 0, "%s: tensor %s differs after round trip", label, ft->name);
        free(buf);
        if (strcmp(ft->name, "blk.0.attn_q.weight") == 0)
            CHECK(t->error && json_real_value(json_object_get(t->error, "rmse")) == 0.25);
        else
            CHECK(t->error == NULL);
    }
    CHECK(fm_bundle_find_tensor(b, "no.such.tensor") == NULL);
    CHECK(fm_bundle_tensor_at(b, (uint64_t)f->nt) == NULL);
    CHECK(fm_bundle_n_expert_layers(b) == (uint32_t)f->nl);
    for (int li = 0; li < f->nl; li++) {
        const fx_layer *FL = &f->L[li];
        const fm_bundle_expert_layer *L = fm_bundle_find_expert_layer(b, FL->layer);
        CHECKF(L != NULL, "%s: layer %u missing", label, FL->layer);
        if (!L) continue;
        CHECK(L == fm_bundle_expert_layer_at(b, (uint32_t)li));
        CHECK(L->n_expert == FL->n_expert && L->n_parts == FL->n_parts && L->blob_size == FL->blob_size);
        uint64_t off = 0;
        for (uint32_t p = 0; p < FL->n_parts; p++) {
            const fm_bundle_part *P = fm_bundle_find_part(L, FL->parts[p].name);
            CHECK(P == &L->parts[p]);
            CHECK(P && P->qtype == FL->parts[p].qtype && P->offset == off && P->size == FL->part_size[p] &&
                  P->shape[0] == FL->parts[p].shape[0] && P->shape[1] == FL->parts[p].shape[1]);
            CHECK(P && ((li == 0 && p == 2) ? P->error != NULL : P->error == NULL));
            off += FL->part_size[p];
        }
        CHECK(fm_bundle_find_part(L, "nope") == NULL);
        uint8_t *buf = malloc(L->blob_size);
        for (uint32_t x = 0; x < L->n_expert; x++) {
            CHECKF(L->blobs[x].offset % align == 0, "%s: blk.%u expert %u not aligned", label, L->layer, x);
            CHECK(x == 0 || L->blobs[x].offset > L->blobs[x - 1].offset);
            rc = fm_bundle_read_expert(b, L, x, buf, true, &e);
            CHECKF(rc == FM_OK, "%s: read expert: %s", label, e.msg);
            CHECKF(memcmp(buf, FL->blobs + x * FL->blob_size, FL->blob_size) == 0,
                   "%s: blk.%u expert %u differs", label, L->layer, x);
        }
        CHECK(fm_bundle_read_expert(b, L, L->n_expert, buf, false, &e) == FM_E_ARG);
        free(buf);
    }
    CHECK(fm_bundle_find_expert_layer(b, 2) == NULL && fm_bundle_find_expert_layer(b, 99) == NULL);
    char *tok;
    size_t tl;
    rc = fm_bundle_read_tokenizer(b, &tok, &tl, &e);
    CHECKF(rc == FM_OK, "%s: tokenizer: %s", label, e.msg);
    if (rc == FM_OK) {
        CHECK(tl == f->tok_len && memcmp(tok, f->tok, tl) == 0 && tok[tl] == '\0');
        free(tok);
    }
    fm_bundle_info in;
    fm_bundle_get_info(b, &in);
    CHECK(in.has_tokenizer && strcmp(in.tokenizer_member, FM_BUNDLE_MEMBER_TOKENIZER) == 0);
    CHECK(in.tokenizer_compression == FM_BUNDLE_COMP_ZSTD && in.tokenizer_raw_size == f->tok_len);
    void *mb;
    size_t ml;
    CHECK(fm_bundle_read_manifest_bytes(b, &mb, &ml, &e) == FM_OK && ml == in.sb.manifest_size);
    free(mb);
    fm_bundle_close(b);
}

/* B1/B15: libarchive lists every member with the right name and size, and its
 * data reads back as written. */
static void check_libarchive(const fixture *f, const char *path, bool signed_)
{
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    int r = archive_read_open_filename(a, path, 10240);
    CHECKF(r == ARCHIVE_OK, "libarchive open: %s", archive_error_string(a));
    struct archive_entry *en;
    int n_t = 0, n_x = 0, n_meta = 0, n_pad = 0, first = 1, bad = 0;
    uint8_t *buf = malloc(1 << 20);
    while ((r = archive_read_next_header(a, &en)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(en);
        int64_t size = archive_entry_size(en);
        if (first) CHECK(strcmp(name, FM_BUNDLE_MEMBER_SUPERBLOCK) == 0 && size == FM_BUNDLE_SB_SIZE);
        first = 0;
        la_ssize_t got = archive_read_data(a, buf, 1 << 20);
        if (strncmp(name, "t/", 2) == 0) {
            n_t++;
            int hit = 0;
            for (int i = 0; i < f->nt; i++)
                if (strcmp(name + 2, f->t[i].name) == 0) {
                    hit = 1;
                    if (got != (la_ssize_t)f->t[i].size || memcmp(buf, f->t[i].data, f->t[i].size) != 0) bad++;
                }
            CHECKF(hit, "libarchive lists unknown tensor member %s", name);
        } else if (strncmp(name, "x/blk.", 6) == 0) {
            unsigned l, x;
            CHECK(sscanf(name, "x/blk.%u/%u", &l, &x) == 2);
            for (int i = 0; i < f->nl; i++)
                if (f->L[i].layer == l)
                    if (got != (la_ssize_t)f->L[i].blob_size ||
                        memcmp(buf, f->L[i].blobs + x * f->L[i].blob_size, f->L[i].blob_size) != 0)
                        bad++;
            n_x++;
        } else if (strcmp(name, FM_BUNDLE_MEMBER_PAD) == 0) {
            n_pad++;
        } else {
            CHECKF(strcmp(name, FM_BUNDLE_MEMBER_SUPERBLOCK) == 0 || strcmp(name, FM_BUNDLE_MEMBER_TOKENIZER) == 0 ||
                       strcmp(name, FM_BUNDLE_MEMBER_MANIFEST) == 0 || strcmp(name, FM_BUNDLE_MEMBER_SIG) == 0,
                   "unexpected member %s", name);
            n_meta++;
        }
    }
    CHECKF(r == ARCHIVE_EOF, "libarchive: %s", archive_error_string(a));
    int nx = 0;
    for (int i = 0; i < f->nl; i++) nx += (int)f->L[i].n_expert;
    CHECK(n_t == f->nt && n_x == nx && bad == 0);
    CHECK(n_meta == (signed_ ? 4 : 3));
    CHECK(n_pad > 0);
    free(buf);
    archive_read_free(a);
}

/* ------------------------------------------------------------------ manifest rules */

/* JSON path "a/0/b": object keys and array indices. */
static json_t *jwalk(json_t *root, const char *path, json_t **parent, char *last)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = root, *par = NULL;
    char *save = NULL, *seg = strtok_r(buf, "/", &save);
    while (seg) {
        par = cur;
        snprintf(last, 64, "%s", seg);
        cur = json_is_array(cur) ? json_array_get(cur, (size_t)atoi(seg)) : json_object_get(cur, seg);
        seg = strtok_r(NULL, "/", &save);
    }
    *parent = par;
    return cur;
}

/* value: JSON text, or "@path" / "@path+N" copying (and adding to) another
 * value, or NULL to delete. */
static void jpatch(json_t *root, const char *path, const char *value)
{
    json_t *par, *nv = NULL;
    char last[64];
    jwalk(root, path, &par, last);
    if (value && value[0] == '@') {
        char ref[128];
        snprintf(ref, sizeof ref, "%s", value + 1);
        char *plus = strchr(ref, '+');
        long long add = 0;
        if (plus) {
            *plus = '\0';
            add = atoll(plus + 1);
        }
        json_t *rp;
        char rl[64];
        json_t *src = jwalk(root, ref, &rp, rl);
        nv = json_is_integer(src) ? json_integer(json_integer_value(src) + add) : json_deep_copy(src);
    } else if (value) {
        json_error_t je;
        nv = json_loads(value, JSON_DECODE_ANY, &je);
        if (!nv) {
            fprintf(stderr, "jpatch: bad value %s\n", value);
            exit(3);
        }
    }
    if (json_is_array(par)) {
        if (nv) json_array_set_new(par, (size_t)atoi(last), nv);
        else json_array_remove(par, (size_t)atoi(last));
    } else if (nv) {
        json_object_set_new(par, last, nv);
    } else {
        json_object_del(par, last);
    }
}

typedef struct mcase {
    const char *rule, *slug;
    const char *path, *value; /* JSON patch (path NULL: raw text below) */
    const char *raw_from, *raw_to; /* text replacement in the serialized manifest */
    fm_err code;
    const char *needle;
    int corpus; /* emitted by gen-corpus */
} mcase;

#define A16 "aaaaaaaaaaaaaaaa"
#define A64 A16 A16 A16 A16
#define P(r, s, p, v, c, n, k) {r, s, p, v, NULL, NULL, c, n, k}
#define R(r, s, f, t, c, n, k) {r, s, NULL, NULL, f, t, c, n, k}
static const mcase cases[] = {
    /* B8: format, version, strict JSON */
    P("B8", "format-wrong", "format", "\"gguf\"", FM_E_FORMAT, "expected \"fm-bundle\"", 1),
    P("B8", "format-missing", "format", NULL, FM_E_FORMAT, "\"format\" must be a string", 0),
    P("B8", "version-not-object", "version", "1", FM_E_FORMAT, "\"version\" must be an object", 0),
    P("B8", "major-string", "version/major", "\"1\"", FM_E_FORMAT, "\"major\" must be a non-negative integer", 0),
    P("B4", "manifest-major-2", "version/major", "2", FM_E_VERSION, "major version 2 is not supported", 1),
    P("B4", "minor-mismatch", "version/minor", "3", FM_E_FORMAT, "differs from the superblock", 0),
    P("B5", "alignment-mismatch", "alignment", "8192", FM_E_FORMAT, "\"alignment\" 8192 differs", 1),
    R("B8", "not-object", NULL, "[1,2]", FM_E_FORMAT, "must be a JSON object", 0),
    R("B8", "bad-json", NULL, "{\"format\":", FM_E_FORMAT, "invalid JSON", 1),
    R("B8", "duplicate-key", "{", "{\"format\":\"fm-bundle\",", FM_E_FORMAT, "invalid JSON", 1),
    R("B8", "bad-utf8", "\"provenance\":{", "\"provenance\":{\"x\":\"\xff\xfe\",", FM_E_FORMAT, "invalid JSON", 1),
    R("B8", "nul-escape", "\"provenance\":{", "\"provenance\":{\"x\":\"a\\u0000b\",", FM_E_FORMAT, "invalid JSON", 0),
    /* B9 */
    P("B9", "arch-missing", "arch", NULL, FM_E_FORMAT, "\"arch\" must be an object", 1),
    P("B9", "arch-name-int", "arch/name", "3", FM_E_FORMAT, "arch: \"name\" must be a string", 0),
    P("B9", "arch-name-empty", "arch/name", "\"\"", FM_E_FORMAT, "must not be empty", 0),
    P("B9", "provenance-string", "provenance", "\"x\"", FM_E_FORMAT, "\"provenance\" must be an object", 0),
    /* B19: unknown fields are ignored within a known major */
    P("B19", "unknown-top", "zz_future", "{\"a\":[1,2]}", FM_OK, NULL, 0),
    P("B19", "unknown-tensor", "tensors/0/zz_future", "1", FM_OK, NULL, 0),
    P("B19", "unknown-layer", "experts/0/zz_future", "\"x\"", FM_OK, NULL, 0),
    P("B19", "unknown-part", "experts/0/parts/0/zz_future", "null", FM_OK, NULL, 0),
    P("B19", "unknown-blob", "experts/0/blobs/1/zz_future", "[]", FM_OK, NULL, 0),
    P("B19", "unknown-tokenizer", "tokenizer/zz_future", "2.5", FM_OK, NULL, 0),
    P("B9", "provenance-missing", "provenance", NULL, FM_OK, NULL, 0),
    P("B12", "experts-missing", "experts", NULL, FM_OK, NULL, 0),
    /* B10 */
    P("B10", "name-slash", "tensors/0/name", "\"a/b\"", FM_E_FORMAT, "not a valid tensor name", 1),
    P("B10", "name-empty", "tensors/0/name", "\"\"", FM_E_FORMAT, "not a valid tensor name", 0),
    P("B10", "name-space", "tensors/0/name", "\"a b\"", FM_E_FORMAT, "not a valid tensor name", 0),
    P("B10", "name-dotdot", "tensors/0/name", "\"..\"", FM_E_FORMAT, "not a valid tensor name", 0),
    P("B10", "name-nonascii", "tensors/0/name", "\"caf\\u00e9\"", FM_E_FORMAT, "not a valid tensor name", 0),
    P("B10", "name-256", "tensors/0/name", "\"" A64 A64 A64 A64 "\"", FM_E_FORMAT, "not a valid tensor name", 0),
    P("B10", "name-int", "tensors/0/name", "5", FM_E_FORMAT, "\"name\" must be a string", 0),
    P("B10", "name-duplicate", "tensors/1/name", "@tensors/0/name", FM_E_FORMAT, "appears twice", 1),
    /* B11 */
    P("B11", "tensors-object", "tensors", "{}", FM_E_FORMAT, "\"tensors\" must be an array", 0),
    P("B11", "tensors-missing", "tensors", NULL, FM_E_FORMAT, "\"tensors\" must be an array", 0),
    P("B11", "tensor-int", "tensors/0", "3", FM_E_FORMAT, "tensors[0]: must be an object", 0),
    P("B11", "qtype-unknown", "tensors/0/qtype", "\"Q9_Z\"", FM_E_UNSUPPORTED, "\"Q9_Z\" is not known", 1),
    P("B11", "qtype-int", "tensors/0/qtype", "8", FM_E_FORMAT, "\"qtype\" must be a string", 0),
    P("B11", "shape-string", "tensors/0/shape", "\"8x64\"", FM_E_FORMAT, "\"shape\" must be an array", 0),
    P("B11", "shape-empty", "tensors/0/shape", "[]", FM_E_FORMAT, "1 to 4 dimensions", 0),
    P("B11", "shape-5d", "tensors/0/shape", "[1,1,1,8,64]", FM_E_FORMAT, "1 to 4 dimensions", 0),
    P("B11", "shape-zero", "tensors/0/shape", "[0,64]", FM_E_FORMAT, "\"shape\"[0] must be a positive integer", 1),
    P("B11", "shape-negative", "tensors/0/shape", "[-8,64]", FM_E_FORMAT, "must be a positive integer", 0),
    P("B11", "shape-real", "tensors/0/shape", "[8,64.0]", FM_E_FORMAT, "\"shape\"[1] must be a positive integer", 0),
    P("B11", "shape-overflow", "tensors/0/shape", "[4294967296,4294967296,4294967296]", FM_E_RANGE, "overflows", 1),
    P("B11", "row-not-blocks", "tensors/0/shape", "[16,40]", FM_E_FORMAT, "not a multiple of the Q8_0 block size 32", 1),
    P("B11", "size-mismatch", "tensors/0/size", "@tensors/0/size+1", FM_E_FORMAT, "\"size\" is 545 but", 1),
    P("B11", "size-missing", "tensors/0/size", NULL, FM_E_FORMAT, "\"size\" must be a non-negative integer", 0),
    P("B11", "offset-unaligned", "tensors/0/offset", "@tensors/0/offset+512", FM_E_FORMAT,
      "not a multiple of the alignment 4096", 1),
    P("B11", "offset-negative", "tensors/0/offset", "-4096", FM_E_FORMAT, "must be a non-negative integer, found -4096", 0),
    P("B11", "offset-real", "tensors/0/offset", "8192.0", FM_E_FORMAT, "found a real number", 0),
    P("B11", "sha-short", "tensors/0/sha256", "\"abc\"", FM_E_FORMAT, "\"sha256\" must be 64 hex digits", 1),
    P("B11", "sha-nonhex", "tensors/0/sha256",
      "\"zz00000000000000000000000000000000000000000000000000000000000000\"", FM_E_FORMAT, "64 hex digits", 0),
    P("B11", "error-array", "tensors/0/error", "[1]", FM_E_FORMAT, "\"error\" must be an object", 0),
    /* B14: data ranges */
    P("B14", "offset-beyond-file", "tensors/0/offset", "1099511627776", FM_E_FORMAT, "is not inside the archive", 1),
    P("B14", "offset-huge", "tensors/0/offset", "9223372036854771712", FM_E_FORMAT, "is not inside the archive", 0),
    P("B14", "offset-zero", "tensors/0/offset", "0", FM_E_FORMAT, "lies before the superblock", 0),
    P("B14", "tensor-overlap", "tensors/1/offset", "@tensors/0/offset", FM_E_FORMAT, "overlaps", 1),
    P("B14", "blob-overlaps-tensor", "experts/0/blobs/0/offset", "@tensors/0/offset", FM_E_FORMAT, "overlaps", 0),
    P("B14", "tensor-on-manifest", "tensors/0/offset", "@tokenizer/offset", FM_E_FORMAT, "", 0),
    /* B12 */
    P("B12", "experts-object", "experts", "{}", FM_E_FORMAT, "\"experts\" must be an array", 0),
    P("B12", "layer-int", "experts/0", "1", FM_E_FORMAT, "experts[0]: must be an object", 0),
    P("B12", "layer-missing", "experts/0/layer", NULL, FM_E_FORMAT, "\"layer\" must be a non-negative integer", 0),
    P("B12", "layer-order", "experts/1/layer", "0", FM_E_FORMAT, "strictly increasing", 1),
    P("B12", "layer-huge", "experts/0/layer", "8589934592", FM_E_RANGE, "too large", 0),
    P("B12", "n-expert-zero", "experts/0/n_expert", "0", FM_E_RANGE, "outside 1..65536", 1),
    P("B12", "n-expert-huge", "experts/0/n_expert", "70000", FM_E_RANGE, "outside 1..65536", 0),
    P("B12", "n-expert-mismatch", "experts/0/n_expert", "1", FM_E_FORMAT, "\"blobs\" has 2 entries", 1),
    P("B12", "parts-empty", "experts/0/parts", "[]", FM_E_FORMAT, "1 to 4 entries", 0),
    P("B12", "parts-5", "experts/0/parts", "[{},{},{},{},{}]", FM_E_FORMAT, "1 to 4 entries", 0),
    P("B12", "parts-object", "experts/0/parts", "{}", FM_E_FORMAT, "\"parts\" must be an array", 0),
    P("B12", "part-name-dup", "experts/0/parts/1/name", "@experts/0/parts/0/name", FM_E_FORMAT, "appears twice", 1),
    P("B12", "part-name-bad", "experts/0/parts/1/name", "\"up down\"", FM_E_FORMAT, "not a valid part name", 0),
    P("B12", "part-outside-blob", "experts/0/parts/2/offset", "@experts/0/blob_size", FM_E_FORMAT, "outside the", 1),
    P("B12", "part-overlap", "experts/0/parts/1/offset", "0", FM_E_FORMAT, "overlaps the previous part", 1),
    P("B12", "part-size", "experts/0/parts/0/size", "@experts/0/parts/0/size+1", FM_E_FORMAT, "\"size\" is 289", 0),
    P("B12", "part-qtype", "experts/0/parts/0/qtype", "\"Q99\"", FM_E_UNSUPPORTED, "not known", 0),
    P("B12", "part-error-string", "experts/0/parts/0/error", "\"bad\"", FM_E_FORMAT, "\"error\" must be an object", 0),
    P("B12", "blob-size-zero", "experts/0/blob_size", "0", FM_E_FORMAT, "must be positive", 0),
    P("B12", "blob-size-differs", "experts/0/blobs/0/size", "@experts/0/blobs/0/size+1", FM_E_FORMAT,
      "differs from the layer's \"blob_size\"", 1),
    P("B12", "blob-unaligned", "experts/0/blobs/1/offset", "@experts/0/blobs/1/offset+512", FM_E_FORMAT,
      "not a multiple of the alignment", 1),
    P("B12", "blob-order", "experts/0/blobs/1/offset", "@experts/0/blobs/0/offset", FM_E_FORMAT,
      "experts are stored in order", 1),
    P("B12", "blob-sha", "experts/1/blobs/0/sha256", "\"\"", FM_E_FORMAT, "64 hex digits", 0),
    P("B12", "blobs-object", "experts/0/blobs", "{}", FM_E_FORMAT, "\"blobs\" must be an array", 0),
    P("B12", "blob-int", "experts/0/blobs/0", "7", FM_E_FORMAT, "expert 0: must be an object", 0),
    /* B13 */
    P("B13", "tokenizer-int", "tokenizer", "3", FM_E_FORMAT, "tokenizer: must be an object or null", 0),
    P("B13", "tokenizer-null", "tokenizer", "null", FM_OK, NULL, 0),
    P("B13", "tokenizer-member", "tokenizer/member", "\"../etc/passwd\"", FM_E_FORMAT, "must be fm/<name>", 1),
    P("B13", "tokenizer-gzip", "tokenizer/compression", "\"gzip\"", FM_E_UNSUPPORTED, "is not zstd or none", 0),
    P("B13", "tokenizer-offset-odd", "tokenizer/offset", "@tokenizer/offset+1", FM_E_FORMAT, "not a multiple of 512", 0),
    P("B13", "tokenizer-size-zero", "tokenizer/size", "0", FM_E_RANGE, "must be 1..", 0),
    P("B13", "tokenizer-raw-huge", "tokenizer/raw_size", "4294967296", FM_E_RANGE, "must be 1..", 1),
    P("B13", "tokenizer-none-size", "tokenizer/compression", "\"none\"", FM_E_FORMAT, "must equal \"size\"", 0),
};
#undef P
#undef R

typedef struct hookctx {
    const mcase *c;
} hookctx;

static fm_err apply_case(void *ctx, char **bytes, size_t *len, fm_error *e)
{
    (void)e;
    const mcase *c = ((hookctx *)ctx)->c;
    char *out = NULL;
    if (c->path) {
        json_error_t je;
        json_t *m = json_loadb(*bytes, *len, 0, &je);
        jpatch(m, c->path, c->value);
        out = json_dumps(m, JSON_COMPACT);
        json_decref(m);
    } else if (!c->raw_from) {
        out = strdup(c->raw_to);
    } else {
        const char *at = strstr(*bytes, c->raw_from);
        if (!at) {
            fprintf(stderr, "case %s: '%s' not in manifest\n", c->slug, c->raw_from);
            exit(3);
        }
        size_t pre = (size_t)(at - *bytes), fl = strlen(c->raw_from), tl = strlen(c->raw_to);
        out = malloc(*len - fl + tl + 1);
        memcpy(out, *bytes, pre);
        memcpy(out + pre, c->raw_to, tl);
        memcpy(out + pre + tl, at + fl, *len - pre - fl + 1);
    }
    *bytes = out;
    *len = strlen(out);
    return FM_OK;
}

static fm_err write_case(const fixture *f, const mcase *c, const char *path, fm_error *e)
{
    fm_bundle_writer_opts o;
    opts_default(&o, 4096);
    hookctx hc = {c};
    o.manifest_hook = apply_case;
    o.hook_ctx = &hc;
    return fx_write(f, path, &o, e);
}

static void test_manifest_rules(const fixture *small)
{
    char path[512];
    tpath(path, sizeof path, "case.fmb");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const mcase *c = &cases[i];
        fm_error e;
        fm_err rc = write_case(small, c, path, &e);
        CHECKF(rc == FM_OK, "%s %s: write: %s", c->rule, c->slug, e.msg);
        fm_bundle *b = NULL;
        fm_error_clear(&e);
        rc = fm_bundle_open(&b, path, 0, &e);
        CHECKF(rc == c->code, "%s %s: expected %s, got %s: %s", c->rule, c->slug, fm_strerror(c->code),
               fm_strerror(rc), e.msg);
        if (c->needle && rc != FM_OK)
            CHECKF(strstr(e.msg, c->needle) != NULL && strstr(e.msg, path) != NULL,
                   "%s %s: message lacks '%s' or the path: %s", c->rule, c->slug, c->needle, e.msg);
        if (rc == FM_OK) {
            /* accepted manifests still read every tensor */
            for (uint64_t t = 0; t < fm_bundle_n_tensors(b); t++) {
                const fm_bundle_tensor *bt = fm_bundle_tensor_at(b, t);
                void *buf = malloc(bt->size);
                CHECK(fm_bundle_read_tensor(b, bt, buf, true, &e) == FM_OK);
                free(buf);
            }
            if (strcmp(c->slug, "tokenizer-null") == 0) {
                char *tok;
                CHECK(fm_bundle_read_tokenizer(b, &tok, NULL, &e) == FM_E_NOTFOUND);
            }
            fm_bundle_close(b);
        }
    }
}

/* Tokenizer data checks happen when it is read (B13). */
static void test_tokenizer_read_rules(const fixture *small)
{
    static const mcase bad_sha = {"B13", "tokenizer-sha", "tokenizer/sha256",
                                  "\"00000000000000000000000000000000000000000000000000000000000000ff\"",
                                  NULL, NULL, FM_OK, NULL, 0};
    static const mcase bad_raw = {"B13", "tokenizer-raw", "tokenizer/raw_size", "@tokenizer/raw_size+1",
                                  NULL, NULL, FM_OK, NULL, 0};
    char path[512];
    tpath(path, sizeof path, "tok.fmb");
    fm_error e;
    fm_bundle *b;
    char *tok;
    CHECK(write_case(small, &bad_sha, path, &e) == FM_OK);
    CHECK(fm_bundle_open(&b, path, 0, &e) == FM_OK);
    CHECK(fm_bundle_read_tokenizer(b, &tok, NULL, &e) == FM_E_CHECKSUM && strstr(e.msg, "tokenizer: sha256 mismatch"));
    fm_bundle_close(b);
    CHECK(write_case(small, &bad_raw, path, &e) == FM_OK);
    CHECK(fm_bundle_open(&b, path, 0, &e) == FM_OK);
    CHECK(fm_bundle_read_tokenizer(b, &tok, NULL, &e) == FM_E_FORMAT && strstr(e.msg, "does not decode"));
    fm_bundle_close(b);
}

/* ------------------------------------------------------------------ superblock rules */

static void sb_major2(fm_bundle_superblock *sb, void *a) { (void)a; sb->major = 2; }
static void sb_minor1(fm_bundle_superblock *sb, void *a) { (void)a; sb->minor = 1; }
static void sb_align(fm_bundle_superblock *sb, void *a) { sb->alignment = *(uint32_t *)a; }
static void sb_fsize(fm_bundle_superblock *sb, void *a) { (void)a; sb->file_size += 512; }
static void sb_moff(fm_bundle_superblock *sb, void *a) { (void)a; sb->manifest_offset -= 512; }
static void sb_msize(fm_bundle_superblock *sb, void *a) { (void)a; sb->manifest_size = (64u << 20) + 1; }
static void sb_menc(fm_bundle_superblock *sb, void *a) { (void)a; sb->manifest_encoding = 7; }
static void sb_msha(fm_bundle_superblock *sb, void *a) { (void)a; sb->manifest_sha256[5] ^= 1; }
static void sb_mraw(fm_bundle_superblock *sb, void *a) { (void)a; sb->manifest_raw_size += 1; }
static void sb_sig(fm_bundle_superblock *sb, void *a) { (void)a; sb->signature_size = 10; sb->signature_offset = 8192; }
static void sb_sigoff(fm_bundle_superblock *sb, void *a) { (void)a; sb->signature_offset = 512; }

typedef struct sbcase {
    const char *rule, *slug;
    void (*fn)(fm_bundle_superblock *, void *);
    uint32_t arg;
    fm_err code;
    const char *needle;
} sbcase;

static const sbcase sbcases[] = {
    {"B4", "major-2", sb_major2, 0, FM_E_VERSION, "major version 2 is not supported"},
    {"B4", "sb-minor-only", sb_minor1, 0, FM_E_FORMAT, "differs from the superblock's 1.1"},
    {"B5", "align-3000", sb_align, 3000, FM_E_FORMAT, "alignment 3000 is not a power of two"},
    {"B5", "align-2M", sb_align, 2u << 20, FM_E_FORMAT, "alignment 2097152"},
    {"B5", "align-2048", sb_align, 2048, FM_E_FORMAT, "alignment 2048"},
    {"B6", "file-size", sb_fsize, 0, FM_E_FORMAT, "truncated: the superblock records"},
    {"B7", "manifest-offset", sb_moff, 0, FM_E_FORMAT, "tar header at offset"},
    {"B7", "manifest-cap", sb_msize, 0, FM_E_RANGE, "manifest size 67108865 is outside"},
    {"B7", "manifest-encoding", sb_menc, 0, FM_E_UNSUPPORTED, "manifest encoding 7"},
    {"B7", "manifest-sha", sb_msha, 0, FM_E_CHECKSUM, "manifest: sha256 mismatch"},
    {"B7", "manifest-raw-size", sb_mraw, 0, FM_E_FORMAT, "decoded size"},
    {"B17", "sig-size", sb_sig, 0, FM_E_FORMAT, "signature at"},
    {"B17", "sig-offset-no-size", sb_sigoff, 0, FM_E_FORMAT, "signature at"},
};

static void test_superblock_rules(const fixture *small)
{
    char base[512], path[512];
    tpath(base, sizeof base, "sb-base.fmb");
    tpath(path, sizeof path, "sb.fmb");
    fm_bundle_writer_opts o;
    opts_default(&o, 4096);
    fm_error e;
    CHECK(fx_write(small, base, &o, &e) == FM_OK);
    fm_bundle *b;
    for (size_t i = 0; i < sizeof sbcases / sizeof sbcases[0]; i++) {
        const sbcase *c = &sbcases[i];
        copy_file(base, path);
        uint32_t arg = c->arg;
        edit_superblock(path, c->fn, &arg);
        fm_err rc = fm_bundle_open(&b, path, 0, &e);
        CHECKF(rc == c->code && strstr(e.msg, c->needle), "%s %s: got %s: %s", c->rule, c->slug,
               fm_strerror(rc), rc ? e.msg : "ok");
        if (rc == FM_OK) fm_bundle_close(b);
    }
    /* B3: magic and the record's own SHA-256 */
    copy_file(base, path);
    patch(path, FM_BUNDLE_SB_OFFSET, "FMBUNDLX", 8);
    CHECK(fm_bundle_open(&b, path, 0, &e) == FM_E_FORMAT && strstr(e.msg, "bad magic"));
    copy_file(base, path);
    flip_bit(path, FM_BUNDLE_SB_OFFSET + 2000, 3); /* a reserved byte */
    CHECK(fm_bundle_open(&b, path, 0, &e) == FM_E_CHECKSUM && strstr(e.msg, "superblock: sha256 mismatch"));
    /* B2: member 0's tar header */
    copy_file(base, path);
    flip_bit(path, 3, 0);
    CHECK(fm_bundle_open(&b, path, 0, &e) == FM_E_FORMAT && strstr(e.msg, "tar header at offset 0: checksum mismatch"));
    /* B6: truncation and trailing bytes */
    uint64_t n = fsize(base);
    uint64_t cuts[] = {n - 1, n - 512, n - 1024, n / 2, 5000, 4608, 600, 100, 0};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        copy_file(base, path);
        CHECK(truncate(path, (off_t)cuts[i]) == 0);
        fm_err rc = fm_bundle_open(&b, path, 0, &e);
        CHECKF(rc == FM_E_FORMAT && (strstr(e.msg, "truncated") || strstr(e.msg, "not an fm bundle")),
               "cut at %llu: %s", (unsigned long long)cuts[i], e.msg);
    }
    copy_file(base, path);
    patch(path, n, "x", 1);
    CHECK(fm_bundle_open(&b, path, 0, &e) == FM_E_FORMAT && strstr(e.msg, "trailing data"));
    /* not a bundle at all */
    FILE *g = fopen(path, "wb");
    for (int i = 0; i < 10000; i++) fputc('G', g);
    fclose(g);
    CHECK(fm_bundle_open(&b, path, 0, &e) == FM_E_FORMAT && strstr(e.msg, "not an fm bundle"));
    CHECK(fm_bundle_open(&b, "/nonexistent/x.fmb", 0, &e) == FM_E_IO);
    /* B19: a newer minor version with unknown fields (manifest and superblock
     * reserved bytes) is read. */
    static const mcase minor1 = {"B19", "minor-1", "version/minor", "1", NULL, NULL, FM_OK, NULL, 0};
    CHECK(write_case(small, &minor1, path, &e) == FM_OK);
    edit_superblock(path, sb_minor1, NULL);
    CHECK(fm_bundle_open(&b, path, 0, &e) == FM_OK);
    if (b) {
        uint32_t ma, mi;
        fm_bundle_version(b, &ma, &mi);
        CHECK(ma == 1 && mi == 1);
        fm_bundle_close(b);
    }
}

/* ------------------------------------------------------------------ writer API errors */

static void test_writer_errors(const fixture *f)
{
    char path[512], tmp[600];
    tpath(path, sizeof path, "w.fmb");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fm_bundle_writer_opts o;
    opts_default(&o, 4096);
    fm_bundle_writer *w;
    fm_error e;
    o.alignment = 3000;
    CHECK(fm_bundle_writer_new(&w, path, &o, &e) == FM_E_ARG && w == NULL);
    o.alignment = 2048;
    CHECK(fm_bundle_writer_new(&w, path, &o, &e) == FM_E_ARG);
    o.alignment = 4096;
    o.mtime = 1ull << 40;
    CHECK(fm_bundle_writer_new(&w, path, &o, &e) == FM_E_ARG);
    o.mtime = 0;
    o.sign_key_pem = "/nonexistent.pem";
    CHECK(fm_bundle_writer_new(&w, path, &o, &e) == FM_E_IO);
    o.sign_key_pem = NULL;

    CHECK(fm_bundle_writer_new(&w, path, &o, &e) == FM_OK);
    CHECK(file_exists(tmp) && !file_exists(path));
    fm_bundle_writer_tensor d;
    memset(&d, 0, sizeof d);
    d.name = "a.weight";
    d.qtype = FM_Q_F32;
    d.n_dims = 1;
    d.shape[0] = 4;
    uint8_t data[64] = {0};
    CHECK(fm_bundle_writer_add_tensor(w, &d, data, 15, &e) == FM_E_ARG && strstr(e.msg, "take 16"));
    CHECK(fm_bundle_writer_add_tensor(w, &d, data, 16, &e) == FM_OK);
    CHECK(fm_bundle_writer_add_tensor(w, &d, data, 16, &e) == FM_E_ARG && strstr(e.msg, "twice"));
    d.name = "bad/name";
    CHECK(fm_bundle_writer_add_tensor(w, &d, data, 16, &e) == FM_E_ARG);
    d.name = "q.weight";
    d.qtype = 200;
    CHECK(fm_bundle_writer_add_tensor(w, &d, data, 16, &e) == FM_E_UNSUPPORTED);
    d.qtype = FM_Q_Q8_0;
    d.shape[0] = 20; /* not a whole block */
    CHECK(fm_bundle_writer_add_tensor(w, &d, data, 16, &e) == FM_E_ARG && strstr(e.msg, "block size"));
    d.qtype = FM_Q_F32;
    d.shape[0] = 0;
    CHECK(fm_bundle_writer_add_tensor(w, &d, data, 0, &e) == FM_E_ARG);
    d.shape[0] = 4;
    d.n_dims = 5;
    CHECK(fm_bundle_writer_add_tensor(w, &d, data, 16, &e) == FM_E_ARG);
    d.n_dims = 1;
    /* streaming misuse */
    CHECK(fm_bundle_writer_write(w, data, 4, &e) == FM_E_ARG);
    CHECK(fm_bundle_writer_end_tensor(w, &e) == FM_E_ARG);
    fm_bundle_writer_part parts[2] = {{"gate", FM_Q_F32, 1, {4}, NULL}, {"gate", FM_Q_F32, 1, {4}, NULL}};
    CHECK(fm_bundle_writer_begin_experts(w, 3, 2, 2, parts, &e) == FM_E_ARG && strstr(e.msg, "twice"));
    parts[1].name = "up";
    CHECK(fm_bundle_writer_begin_experts(w, 3, 0, 2, parts, &e) == FM_E_ARG);
    CHECK(fm_bundle_writer_begin_experts(w, 3, 2, 0, parts, &e) == FM_E_ARG);
    CHECK(fm_bundle_writer_begin_experts(w, 3, 2, 2, parts, &e) == FM_OK);
    CHECK(fm_bundle_writer_begin_experts(w, 3, 2, 2, parts, &e) == FM_E_ARG);
    CHECK(fm_bundle_writer_add_expert(w, 3, 1, data, 32, NULL, &e) == FM_E_ARG && strstr(e.msg, "in order"));
    CHECK(fm_bundle_writer_add_expert(w, 3, 0, data, 31, NULL, &e) == FM_E_ARG);
    CHECK(fm_bundle_writer_add_expert(w, 4, 0, data, 32, NULL, &e) == FM_E_ARG);
    CHECK(fm_bundle_writer_add_expert(w, 3, 0, data, 32, NULL, &e) == FM_OK);
    CHECK(fm_bundle_writer_finish(w, &e) == FM_E_ARG && strstr(e.msg, "arch not set"));
    json_t *arch = json_pack("{s:s}", "name", "x");
    json_t *noname = json_pack("{s:i}", "n", 1);
    CHECK(fm_bundle_writer_set_arch(w, noname, &e) == FM_E_ARG);
    CHECK(fm_bundle_writer_set_arch(w, arch, &e) == FM_OK);
    CHECK(fm_bundle_writer_set_provenance(w, noname, &e) == FM_OK);
    json_decref(noname);
    CHECK(fm_bundle_writer_finish(w, &e) == FM_E_ARG && strstr(e.msg, "1 of 2 experts"));
    CHECK(fm_bundle_writer_set_tensor_error(w, "nope", NULL, &e) == FM_E_NOTFOUND);
    CHECK(fm_bundle_writer_set_part_error(w, 3, "down", NULL, &e) == FM_E_NOTFOUND);
    /* stream: too many bytes fails the writer */
    d.name = "s.weight";
    CHECK(fm_bundle_writer_begin_tensor(w, &d, 16, &e) == FM_OK);
    CHECK(fm_bundle_writer_add_tensor(w, &d, data, 16, &e) == FM_E_ARG); /* stream open */
    CHECK(fm_bundle_writer_write(w, data, 17, &e) == FM_E_ARG);
    CHECK(fm_bundle_writer_finish(w, &e) == FM_E_ARG && strstr(e.msg, "failed state"));
    fm_bundle_writer_free(w); /* abort: no final file, no tmp file */
    CHECK(!file_exists(tmp) && !file_exists(path));

    /* existing output and no force */
    CHECK(fm_bundle_writer_new(&w, path, &o, &e) == FM_OK);
    CHECK(fm_bundle_writer_set_arch(w, arch, &e) == FM_OK);
    CHECK(fm_bundle_writer_finish(w, &e) == FM_OK);
    CHECK(fm_bundle_writer_finish(w, &e) == FM_E_ARG);
    fm_bundle_writer_free(w);
    CHECK(file_exists(path) && !file_exists(tmp));
    o.force = false;
    CHECK(fm_bundle_writer_new(&w, path, &o, &e) == FM_E_EXISTS);
    json_decref(arch);
    /* an empty bundle (arch only) is valid and verifies */
    fm_bundle *b;
    CHECK(fm_bundle_open(&b, path, 0, &e) == FM_OK && fm_bundle_n_tensors(b) == 0 &&
          fm_bundle_n_expert_layers(b) == 0);
    if (b) fm_bundle_close(b);
    fm_verify_report r;
    CHECK(fm_verify_bundle(path, NULL, &r, &e) == FM_OK && r.status == FM_VERIFY_INTACT);
    fm_verify_report_free(&r);
    (void)f;
}

/* ------------------------------------------------------------------ corruption sweep (B18) */

typedef struct region {
    uint64_t off, size;
    char what[300]; /* expected problem label; "" for reader-checked regions */
    int reader;     /* 1: the reader rejects damage here (exit 2) */
} region;

static int collect_regions(const char *path, region *rg, int cap)
{
    fm_bundle *b;
    fm_error e;
    if (fm_bundle_open(&b, path, 0, &e) != FM_OK) return 0;
    fm_bundle_info in;
    fm_bundle_get_info(b, &in);
    int n = 0;
    rg[n++] = (region){0, 512, "", 1};
    rg[n++] = (region){FM_BUNDLE_SB_OFFSET, FM_BUNDLE_SB_SIZE, "", 1};
    rg[n++] = (region){in.sb.manifest_offset - 512, 512, "", 1};
    rg[n++] = (region){in.sb.manifest_offset, in.sb.manifest_size, "", 1};
    if (in.sb.signature_size) {
        rg[n] = (region){in.sb.signature_offset, in.sb.signature_size, "", 0};
        snprintf(rg[n++].what, sizeof rg[0].what, "signature");
    }
    rg[n] = (region){in.tokenizer_offset, in.tokenizer_size, "", 0};
    snprintf(rg[n++].what, sizeof rg[0].what, "tokenizer");
    for (uint64_t i = 0; i < fm_bundle_n_tensors(b) && n < cap; i++) {
        const fm_bundle_tensor *t = fm_bundle_tensor_at(b, i);
        rg[n] = (region){t->offset, t->size, "", 0};
        snprintf(rg[n++].what, sizeof rg[0].what, "tensor %s", t->name);
    }
    for (uint32_t l = 0; l < fm_bundle_n_expert_layers(b); l++) {
        const fm_bundle_expert_layer *L = fm_bundle_expert_layer_at(b, l);
        for (uint32_t x = 0; x < L->n_expert && n < cap; x++) {
            rg[n] = (region){L->blobs[x].offset, L->blobs[x].size, "", 0};
            snprintf(rg[n++].what, sizeof rg[0].what, "blk.%u expert %u", L->layer, x);
        }
    }
    fm_bundle_close(b);
    return n;
}

/* Flips one bit at off, verifies, flips it back. Returns the status; sets
 * *ok when the verdict is right for the region the bit is in. */
static int sweep_one(const char *path, const region *rg, int nr, uint64_t off, const char *key,
                     int *named)
{
    int bit = (int)(rnd() % 8);
    flip_bit(path, off, bit);
    fm_verify_opts o;
    memset(&o, 0, sizeof o);
    o.threads = 2;
    o.pubkey_pem = key;
    fm_verify_report r;
    fm_error e;
    fm_err rc = fm_verify_bundle(path, &o, &r, &e);
    flip_bit(path, off, bit);
    if (rc != FM_OK) return -1;
    int st = (int)r.status;
    const region *in = NULL;
    for (int i = 0; i < nr; i++)
        if (off >= rg[i].off && off < rg[i].off + rg[i].size) in = &rg[i];
    *named = 1;
    if (in && in->reader) *named = st == FM_VERIFY_UNREADABLE;
    else if (in && in->what[0]) {
        /* damage in weight data: exactly that member is reported (and, for the
         * signature with a key, the failing signature too) */
        int hit = 0, other = 0;
        for (size_t i = 0; i < r.n_problems; i++) {
            if (strcmp(r.problems[i].what, in->what) == 0 && strcmp(r.problems[i].msg, "sha256 mismatch") == 0) hit = 1;
            else if (r.problems[i].kind != FM_VK_SIGNATURE) other = 1;
        }
        *named = st == FM_VERIFY_DAMAGED && hit && !other;
        if (!*named && r.n_problems)
            fprintf(stderr, "flip at %llu (%s): got '%s: %s'\n", (unsigned long long)off, in->what,
                    r.problems[0].what, r.problems[0].msg);
    } else {
        *named = st == FM_VERIFY_DAMAGED; /* structure: headers, padding, end blocks */
        if (*named) {
            int structural = 0;
            for (size_t i = 0; i < r.n_problems; i++) structural |= r.problems[i].kind == FM_VK_STRUCTURE;
            *named = structural;
        }
    }
    fm_verify_report_free(&r);
    return st;
}

static void sweep(const char *path, const char *key, int n_random, int per_region)
{
    region rg[64];
    int nr = collect_regions(path, rg, 64);
    CHECK(nr > 6);
    uint64_t size = fsize(path);
    int tried = 0, detected = 0, named_ok = 0;
    /* every member's data, the manifest, the superblock, the two reader-checked headers */
    for (int i = 0; i < nr; i++)
        for (int k = 0; k < per_region; k++) {
            int named;
            int st = sweep_one(path, rg, nr, rg[i].off + rnd() % rg[i].size, key, &named);
            tried++;
            detected += st > 0;
            named_ok += named;
        }
    /* every tar header block (walked from offset 0) */
    uint64_t p = 0;
    int headers = 0;
    while (p + 512 <= size) {
        uint8_t blk[512];
        read_at(path, p, blk, 512);
        fm_tar_header h;
        fm_error e;
        if (fm_bundle_tar_parse(blk, &h, &e) != FM_OK) break;
        headers++;
        for (int k = 0; k < per_region; k++) {
            int named;
            int st = sweep_one(path, rg, nr, p + rnd() % 512, key, &named);
            tried++;
            detected += st > 0;
            named_ok += named;
        }
        uint64_t next = 0;
        if (!fm_align_up(p + 512 + h.size, 512, &next)) break;
        p = next;
    }
    CHECKF(headers >= nr, "walked %d headers", headers);
    /* the two end-of-archive blocks */
    for (int k = 0; k < per_region; k++) {
        int named;
        int st = sweep_one(path, rg, nr, size - 1024 + rnd() % 1024, key, &named);
        tried++;
        detected += st > 0;
        named_ok += named;
    }
    /* uniformly random positions anywhere */
    for (int k = 0; k < n_random; k++) {
        int named;
        int st = sweep_one(path, rg, nr, rnd() % size, key, &named);
        tried++;
        detected += st > 0;
        named_ok += named;
    }
    /* FM_BUNDLE_SWEEP_ALL=1: every byte of the file, one random bit each */
    if (getenv("FM_BUNDLE_SWEEP_ALL") && !key)
        for (uint64_t off = 0; off < size; off++) {
            int named;
            int st = sweep_one(path, rg, nr, off, key, &named);
            tried++;
            detected += st > 0;
            named_ok += named;
        }
    printf("sweep %s%s: %d flips, %d detected, %d with the right verdict and name (%d headers)\n", path,
           key ? " (signed, --key)" : "", tried, detected, named_ok, headers);
    CHECKF(detected == tried, "%d of %d flips went undetected", tried - detected, tried);
    CHECKF(named_ok == tried, "%d of %d flips got a wrong verdict or name", tried - named_ok, tried);
    /* and the file is intact again */
    fm_verify_report r;
    fm_error e;
    CHECK(fm_verify_bundle(path, NULL, &r, &e) == FM_OK && r.status == FM_VERIFY_INTACT);
    fm_verify_report_free(&r);
}

static void test_verify_basics(const fixture *f, const char *path)
{
    fm_verify_report r;
    fm_error e;
    fm_verify_opts o;
    memset(&o, 0, sizeof o);
    for (unsigned t = 1; t <= 4; t++) {
        o.threads = t;
        CHECK(fm_verify_bundle(path, &o, &r, &e) == FM_OK);
        CHECKF(r.status == FM_VERIFY_INTACT, "threads %u: %zu problems: %s: %s", t, r.n_problems,
               r.n_problems ? r.problems[0].what : "", r.n_problems ? r.problems[0].msg : "");
        CHECK(r.n_tensors == (uint64_t)f->nt && r.threads == t);
        CHECK(r.bytes_read == r.file_size);
        fm_verify_report_free(&r);
    }
    o.quick = true;
    CHECK(fm_verify_bundle(path, &o, &r, &e) == FM_OK && r.status == FM_VERIFY_INTACT && r.quick);
    CHECK(r.bytes_read < r.file_size);
    fm_verify_report_free(&r);
    o.quick = false;
    o.direct = true;
    CHECK(fm_verify_bundle(path, &o, &r, &e) == FM_OK && r.status == FM_VERIFY_INTACT);
    fm_verify_report_free(&r);
    /* quick mode misses data damage but not structure damage */
    const fm_bundle_tensor *t;
    fm_bundle *b;
    CHECK(fm_bundle_open(&b, path, 0, &e) == FM_OK);
    t = fm_bundle_find_tensor(b, "output_norm.weight");
    uint64_t toff = t->offset;
    fm_bundle_close(b);
    flip_bit(path, toff + 3, 1);
    o.direct = false;
    o.quick = true;
    CHECK(fm_verify_bundle(path, &o, &r, &e) == FM_OK && r.status == FM_VERIFY_INTACT);
    fm_verify_report_free(&r);
    o.quick = false;
    CHECK(fm_verify_bundle(path, &o, &r, &e) == FM_OK && r.status == FM_VERIFY_DAMAGED && r.n_problems == 1 &&
          strcmp(r.problems[0].what, "tensor output_norm.weight") == 0);
    json_t *j = fm_verify_report_json(&r, path);
    CHECK(strcmp(json_string_value(json_object_get(j, "status")), "damaged") == 0);
    CHECK(json_array_size(json_object_get(j, "problems")) == 1);
    json_decref(j);
    fm_verify_report_free(&r);
    flip_bit(path, toff + 3, 1);
    flip_bit(path, toff - 512 + 100, 2); /* its tar header */
    o.quick = true;
    CHECK(fm_verify_bundle(path, &o, &r, &e) == FM_OK && r.status == FM_VERIFY_DAMAGED &&
          strstr(r.problems[0].what, "tar header at offset") && strstr(r.problems[0].msg, "checksum mismatch"));
    fm_verify_report_free(&r);
    flip_bit(path, toff - 512 + 100, 2);
    /* several damaged members are all listed, in file order */
    CHECK(fm_bundle_open(&b, path, 0, &e) == FM_OK);
    const fm_bundle_expert_layer *L = fm_bundle_find_expert_layer(b, 0);
    uint64_t x1 = L->blobs[1].offset, x2 = L->blobs[2].offset;
    fm_bundle_close(b);
    flip_bit(path, x1 + 7, 0);
    flip_bit(path, x2 + 9, 5);
    o.quick = false;
    CHECK(fm_verify_bundle(path, &o, &r, &e) == FM_OK && r.status == FM_VERIFY_DAMAGED && r.n_problems == 2 &&
          strcmp(r.problems[0].what, "blk.0 expert 1") == 0 && strcmp(r.problems[1].what, "blk.0 expert 2") == 0 &&
          r.problems[1].layer == 0 && r.problems[1].expert == 2);
    fm_verify_report_free(&r);
    flip_bit(path, x1 + 7, 0);
    flip_bit(path, x2 + 9, 5);
    /* unreadable: truncation and unknown major */
    char p2[512];
    tpath(p2, sizeof p2, "v2.fmb");
    copy_file(path, p2);
    CHECK(truncate(p2, (off_t)(fsize(path) - 700)) == 0);
    CHECK(fm_verify_bundle(p2, NULL, &r, &e) == FM_OK && r.status == FM_VERIFY_UNREADABLE &&
          strstr(r.error, "truncated"));
    copy_file(path, p2);
    edit_superblock(p2, sb_major2, NULL);
    CHECK(fm_verify_bundle(p2, NULL, &r, &e) == FM_OK && r.status == FM_VERIFY_UNREADABLE &&
          r.error_code == FM_E_VERSION && strstr(r.error, "major version 2"));
}

/* ------------------------------------------------------------------ signatures (B17) */

static int write_keypair(const char *priv, const char *pub)
{
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    if (!c || EVP_PKEY_keygen_init(c) != 1 || EVP_PKEY_keygen(c, &k) != 1) return -1;
    EVP_PKEY_CTX_free(c);
    FILE *f = fopen(priv, "wb");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    f = fopen(pub, "wb");
    PEM_write_PUBKEY(f, k);
    fclose(f);
    EVP_PKEY_free(k);
    return 0;
}

static int verify_status(const char *path, const char *key, const char *sig, fm_verify_report *out)
{
    fm_verify_opts o;
    memset(&o, 0, sizeof o);
    o.pubkey_pem = key;
    o.sig_path = sig;
    fm_verify_report r;
    fm_error e;
    fm_err rc = fm_verify_bundle(path, &o, &r, &e);
    if (rc != FM_OK) return -(int)rc;
    int st = (int)r.status;
    if (out) *out = r;
    else fm_verify_report_free(&r);
    return st;
}

static void test_signatures(const fixture *f)
{
    char priv[512], pub[512], priv2[512], pub2[512], path[512], p2[512], sig[600];
    tpath(priv, sizeof priv, "k1.pem");
    tpath(pub, sizeof pub, "k1.pub.pem");
    tpath(priv2, sizeof priv2, "k2.pem");
    tpath(pub2, sizeof pub2, "k2.pub.pem");
    tpath(path, sizeof path, "signed.fmb");
    tpath(p2, sizeof p2, "unsigned.fmb");
    CHECK(write_keypair(priv, pub) == 0 && write_keypair(priv2, pub2) == 0);
    fm_bundle_writer_opts o;
    opts_default(&o, 4096);
    o.sign_key_pem = pub; /* a public key cannot sign */
    fm_error e;
    CHECK(fx_write(f, path, &o, &e) == FM_E_SIGNATURE);
    o.sign_key_pem = priv;
    CHECK(fx_write(f, path, &o, &e) == FM_OK);
    check_libarchive(f, path, true);
    fm_verify_report r;
    CHECK(verify_status(path, pub, NULL, &r) == FM_VERIFY_INTACT && r.sig_checked && r.sig_ok &&
          r.sig_embedded && strcmp(r.sig_source, "embedded") == 0);
    fm_verify_report_free(&r);
    CHECK(verify_status(path, priv, NULL, NULL) == FM_VERIFY_INTACT); /* a private key verifies too */
    CHECK(verify_status(path, pub2, NULL, &r) == FM_VERIFY_DAMAGED && r.n_problems == 1 &&
          r.problems[0].kind == FM_VK_SIGNATURE && strstr(r.problems[0].msg, "does not verify"));
    fm_verify_report_free(&r);
    CHECK(verify_status(path, NULL, NULL, &r) == FM_VERIFY_INTACT && !r.sig_checked && r.sig_embedded);
    fm_verify_report_free(&r);
    CHECK(verify_status(path, "/nonexistent.pem", NULL, NULL) == -(int)FM_E_IO);
    /* a bad key file is a usage error, not damage */
    char notkey[512];
    tpath(notkey, sizeof notkey, "notkey.pem");
    FILE *g = fopen(notkey, "w");
    fputs("hello\n", g);
    fclose(g);
    CHECK(verify_status(path, notkey, NULL, NULL) == -(int)FM_E_SIGNATURE);

    /* Any change to the signed bundle fails verification: every region and
     * random positions, with the right key. */
    sweep(path, pub, 300, 2);

    /* A manifest re-written (here: different provenance via the hook, same
     * data) with the old signature bytes spliced in fails. */
    fm_bundle *b;
    CHECK(fm_bundle_open(&b, path, 0, &e) == FM_OK);
    fm_bundle_info in;
    fm_bundle_get_info(b, &in);
    uint8_t sigbytes[64];
    read_at(path, in.sb.signature_offset, sigbytes, 64);
    fm_bundle_close(b);
    static const mcase other = {"B17", "other", "provenance/tool", "\"evil\"", NULL, NULL, FM_OK, NULL, 0};
    fm_bundle_writer_opts o2;
    opts_default(&o2, 4096);
    o2.sign_key_pem = priv;
    hookctx hc = {&other};
    o2.manifest_hook = apply_case;
    o2.hook_ctx = &hc;
    CHECK(fx_write(f, p2, &o2, &e) == FM_OK);
    CHECK(fm_bundle_open(&b, p2, 0, &e) == FM_OK);
    fm_bundle_get_info(b, &in);
    fm_bundle_close(b);
    patch(p2, in.sb.signature_offset, sigbytes, 64);
    uint8_t sd[32];
    fm_sha256_buf(sigbytes, 64, sd, NULL);
    struct { uint8_t d[32]; } arg;
    memcpy(arg.d, sd, 32);
    (void)arg;
    /* fix the superblock's signature hash so only the signature check can catch it */
    {
        uint8_t rec[FM_BUNDLE_SB_SIZE];
        read_at(p2, FM_BUNDLE_SB_OFFSET, rec, sizeof rec);
        fm_bundle_superblock sb;
        CHECK(fm_bundle_superblock_decode(rec, &sb, &e) == FM_OK);
        memcpy(sb.signature_sha256, sd, 32);
        fm_bundle_superblock_encode(&sb, rec);
        patch(p2, FM_BUNDLE_SB_OFFSET, rec, sizeof rec);
    }
    CHECK(verify_status(p2, NULL, NULL, NULL) == FM_VERIFY_INTACT);
    CHECK(verify_status(p2, pub, NULL, &r) == FM_VERIFY_DAMAGED && r.n_problems == 1 &&
          r.problems[0].kind == FM_VK_SIGNATURE);
    fm_verify_report_free(&r);

    /* Detached: BUNDLE.sig (raw 64 bytes) beside an unsigned bundle. */
    opts_default(&o, 4096);
    CHECK(fx_write(f, p2, &o, &e) == FM_OK);
    CHECK(verify_status(p2, pub, NULL, &r) == FM_VERIFY_DAMAGED && r.n_problems == 1 &&
          strstr(r.problems[0].msg, "no embedded signature"));
    fm_verify_report_free(&r);
    CHECK(fm_bundle_open(&b, p2, 0, &e) == FM_OK);
    void *m;
    size_t ml;
    CHECK(fm_bundle_read_manifest_bytes(b, &m, &ml, &e) == FM_OK);
    fm_bundle_close(b);
    uint8_t s64[64];
    CHECK(fm_sign_ed25519(priv, m, ml, s64, &e) == FM_OK);
    free(m);
    snprintf(sig, sizeof sig, "%s.sig", p2);
    g = fopen(sig, "wb");
    fwrite(s64, 1, 64, g);
    fclose(g);
    CHECK(verify_status(p2, pub, NULL, &r) == FM_VERIFY_INTACT && r.sig_ok && strcmp(r.sig_source, sig) == 0);
    fm_verify_report_free(&r);
    CHECK(verify_status(p2, pub2, NULL, NULL) == FM_VERIFY_DAMAGED);
    CHECK(verify_status(p2, pub, sig, NULL) == FM_VERIFY_INTACT); /* --sig */
    s64[10] ^= 4;
    g = fopen(sig, "wb");
    fwrite(s64, 1, 64, g);
    fclose(g);
    CHECK(verify_status(p2, pub, NULL, NULL) == FM_VERIFY_DAMAGED);
    g = fopen(sig, "wb");
    fwrite(s64, 1, 63, g);
    fclose(g);
    CHECK(verify_status(p2, pub, NULL, &r) == FM_VERIFY_DAMAGED && strstr(r.problems[0].msg, "63 bytes"));
    fm_verify_report_free(&r);
    unlink(sig);
}

/* ------------------------------------------------------------------ corpus / generator */

static int gen_corpus(const char *dir, const char *valid_dir)
{
    fixture f;
    fx_build(&f, true);
    int n = 0;
    if (valid_dir) { /* a small valid bundle (fuzz seed) */
        char path[1024];
        snprintf(path, sizeof path, "%s/bundle-small.fmb", valid_dir);
        fm_bundle_writer_opts o;
        opts_default(&o, 4096);
        fm_error e;
        if (fx_write(&f, path, &o, &e) != FM_OK) return 1;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const mcase *c = &cases[i];
        if (!c->corpus) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/bundle-%s-%s.fmb", dir, c->rule, c->slug);
        fm_error e;
        if (write_case(&f, c, path, &e) != FM_OK) {
            fprintf(stderr, "gen-corpus: %s: %s\n", path, e.msg);
            return 1;
        }
        n++;
    }
    /* superblock-level ones */
    for (size_t i = 0; i < sizeof sbcases / sizeof sbcases[0]; i++) {
        const sbcase *c = &sbcases[i];
        if (strcmp(c->slug, "major-2") && strcmp(c->slug, "align-3000") && strcmp(c->slug, "manifest-sha") &&
            strcmp(c->slug, "file-size"))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/bundle-%s-%s.fmb", dir, c->rule, c->slug);
        fm_bundle_writer_opts o;
        opts_default(&o, 4096);
        fm_error e;
        if (fx_write(&f, path, &o, &e) != FM_OK) return 1;
        uint32_t arg = c->arg;
        edit_superblock(path, c->fn, &arg);
        n++;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/bundle-B6-truncated.fmb", dir);
    fm_bundle_writer_opts o;
    opts_default(&o, 4096);
    fm_error e;
    if (fx_write(&f, path, &o, &e) != FM_OK || truncate(path, (off_t)(fsize(path) - 1024)) != 0) return 1;
    n++;
    fx_free(&f);
    printf("gen-corpus: wrote %d invalid bundles to %s\n", n, dir);
    return 0;
}

/* A big bundle of random data: dense tensors plus expert layers, streamed. */
static int mkbundle(int argc, char **argv)
{
    const char *out = argv[2], *key = NULL;
    uint64_t mib = 64, blob_kib = 1536, seed = 1;
    uint32_t align = FM_BUNDLE_DEFAULT_ALIGN;
    int fixture_mode = 0, force = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--fixture") == 0) fixture_mode = 1;
        else if (strcmp(argv[i], "--small") == 0) fixture_mode = 2;
        else if (strcmp(argv[i], "--force") == 0) force = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--mib") == 0) mib = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--blob-kib") == 0) blob_kib = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--align") == 0) align = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--seed") == 0) seed = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--sign") == 0) key = argv[++i];
        else {
            fprintf(stderr, "mkbundle: bad argument %s\n", argv[i]);
            return 2;
        }
    }
    rng_state ^= seed * 0x2545F4914F6CDD1Dull;
    fm_bundle_writer_opts o;
    fm_bundle_writer_opts_init(&o);
    o.alignment = align;
    o.force = force;
    o.sign_key_pem = key;
    fm_error e;
    if (fixture_mode) {
        fixture f;
        fx_build(&f, fixture_mode == 2);
        fm_err rc = fx_write(&f, out, &o, &e);
        fx_free(&f);
        if (rc) fprintf(stderr, "mkbundle: %s\n", e.msg);
        return rc ? 1 : 0;
    }
    /* Layout: per layer one 4 MiB dense tensor and 64 experts of blob_kib
     * (gate|up|down Q4_K-sized parts), until mib is reached. */
    fm_bundle_writer *w;
    if (fm_bundle_writer_new(&w, out, &o, &e) != FM_OK) {
        fprintf(stderr, "mkbundle: %s\n", e.msg);
        return 1;
    }
    json_t *arch = json_pack("{s:s}", "name", "random");
    fm_bundle_writer_set_arch(w, arch, &e);
    json_decref(arch);
    uint64_t part_blocks = blob_kib * 1024 / 3 / 144; /* Q4_K: 144 bytes per 256 values */
    if (part_blocks < 1) part_blocks = 1;
    fm_bundle_writer_part parts[3] = {{"gate", FM_Q_Q4_K, 2, {part_blocks, 256}, NULL},
                                      {"up", FM_Q_Q4_K, 2, {part_blocks, 256}, NULL},
                                      {"down", FM_Q_Q4_K, 2, {part_blocks, 256}, NULL}};
    size_t blob = (size_t)(3 * part_blocks * 144), dense = 4u << 20;
    uint8_t *buf = malloc(dense > blob ? dense : blob);
    uint64_t target = mib << 20;
    fm_err rc = FM_OK;
    for (uint32_t layer = 0; rc == FM_OK && fm_bundle_writer_pos(w) < target; layer++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%u.attn_q.weight", layer);
        fm_bundle_writer_tensor d;
        memset(&d, 0, sizeof d);
        d.name = name;
        d.qtype = FM_Q_F32;
        d.n_dims = 2;
        d.shape[0] = 1024;
        d.shape[1] = 1024;
        fill_random(buf, dense);
        rc = fm_bundle_writer_add_tensor(w, &d, buf, dense, &e);
        if (!rc) rc = fm_bundle_writer_begin_experts(w, layer, 64, 3, parts, &e);
        for (uint32_t x = 0; x < 64 && !rc; x++) {
            fill_random(buf, blob);
            rc = fm_bundle_writer_add_expert(w, layer, x, buf, blob, NULL, &e);
        }
    }
    if (!rc) rc = fm_bundle_writer_finish(w, &e);
    fm_bundle_writer_free(w);
    free(buf);
    if (rc) fprintf(stderr, "mkbundle: %s\n", e.msg);
    else printf("mkbundle: wrote %s (%llu bytes)\n", out, (unsigned long long)fsize(out));
    return rc ? 1 : 0;
}

/* The committed corpus: every tests/corpus/invalid/bundle-B*.fmb is rejected
 * by the reader (fm-verify exit 2), tests/corpus/valid/bundle-*.fmb verify. */
static void test_corpus(void)
{
    static const char *const dirs[2] = {"tests/corpus/invalid", "tests/corpus/valid"};
    for (int v = 0; v < 2; v++) {
        DIR *d = opendir(dirs[v]);
        if (!d) continue;
        struct dirent *de;
        int n = 0;
        while ((de = readdir(d))) {
            if (strncmp(de->d_name, "bundle-", 7) != 0) continue;
            char p[600];
            snprintf(p, sizeof p, "%s/%s", dirs[v], de->d_name);
            fm_verify_report r;
            fm_error e;
            CHECK(fm_verify_bundle(p, NULL, &r, &e) == FM_OK);
            CHECKF(r.status == (v ? FM_VERIFY_INTACT : FM_VERIFY_UNREADABLE), "%s: status %d (%s)", p,
                   (int)r.status, r.error);
            fm_verify_report_free(&r);
            n++;
        }
        closedir(d);
        printf("corpus %s: %d bundles\n", dirs[v], n);
    }
}

/* ------------------------------------------------------------------ main */

static void rm_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", tmpdir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "mkbundle") == 0) return mkbundle(argc, argv);
    if (argc >= 3 && strcmp(argv[1], "gen-corpus") == 0) return gen_corpus(argv[2], argc > 3 ? argv[3] : NULL);
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/fm_test_bundle_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    fixture f, small;
    fx_build(&f, false);
    fx_build(&small, true);
    char path[512], path2[512];
    tpath(path, sizeof path, "rt.fmb");
    tpath(path2, sizeof path2, "rt2.fmb");
    fm_error e;
    fm_bundle_writer_opts o;

    /* Must-show 1: round trip at several alignments and with a zstd manifest. */
    static const uint32_t aligns[] = {4096, 16384, 65536, 1u << 20};
    for (size_t i = 0; i < 4; i++) {
        opts_default(&o, aligns[i]);
        fm_err rc = fx_write(&f, path, &o, &e);
        CHECKF(rc == FM_OK, "write align %u: %s", aligns[i], e.msg);
        char label[64];
        snprintf(label, sizeof label, "align %u", aligns[i]);
        check_roundtrip(&f, path, aligns[i], label);
        check_libarchive(&f, path, false);
    }
    opts_default(&o, 16384);
    o.manifest_zstd = true;
    CHECK(fx_write(&f, path, &o, &e) == FM_OK);
    check_roundtrip(&f, path, 16384, "zstd manifest");
    fm_verify_report r;
    CHECK(fm_verify_bundle(path, NULL, &r, &e) == FM_OK && r.status == FM_VERIFY_INTACT);
    fm_verify_report_free(&r);

    /* B20: output is deterministic */
    opts_default(&o, 4096);
    CHECK(fx_write(&f, path, &o, &e) == FM_OK && fx_write(&f, path2, &o, &e) == FM_OK);
    {
        char *a = NULL, *b = NULL;
        size_t la = 0, lb = 1;
        CHECK(fm_file_slurp(path, 1 << 24, &a, &la, &e) == FM_OK && fm_file_slurp(path2, 1 << 24, &b, &lb, &e) == FM_OK);
        CHECK(a && b && la == lb && memcmp(a, b, la) == 0);
        CHECK(la % 512 == 0);
        free(a);
        free(b);
    }

    test_writer_errors(&f);
    test_manifest_rules(&small);
    test_tokenizer_read_rules(&small);
    test_superblock_rules(&small);

    opts_default(&o, 4096);
    CHECK(fx_write(&f, path, &o, &e) == FM_OK);
    test_verify_basics(&f, path);
    /* Must-show 3: corruption sweep, unsigned bundle. Per region (each data
     * member, manifest, superblock, each tar header, the end blocks) 6 random
     * single-bit flips, plus 1500 anywhere in the file. */
    sweep(path, NULL, 1500, 6);

    test_signatures(&f);
    test_corpus();

    fx_free(&f);
    fx_free(&small);
    rm_tmpdir();
    T_DONE();
}
