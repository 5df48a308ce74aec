/* safetensors reader (formats/safetensors.c) against the committed corpus
 * (tests/gen/gen_st_corpus.py). Rules S1..S27: specs/safetensors.md.
 *
 * Numeric checks are exact (tolerance 0, compared as float32 bit patterns,
 * any NaN matching any NaN of the same sign): every conversion fm_st_to_f32
 * does is either exact (integers up to 2^24, F16/BF16/F8 widening) or
 * round-to-nearest-even (wider integers, F64), which numpy/torch also use for
 * the values in tests/fixtures/st-expected.txt. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/quant.h"
#include "formats/safetensors.h"
#include "formats/util.h"
#include "tests/unit/t.h"

#define VALID "tests/corpus/valid/"
#define INVALID "tests/corpus/invalid/"

static int same_f32(uint32_t a, uint32_t b)
{
    float fa, fb;
    memcpy(&fa, &a, 4);
    memcpy(&fb, &b, 4);
    if (isnan(fa) || isnan(fb)) return isnan(fa) && isnan(fb) && (a >> 31) == (b >> 31);
    return a == b;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static char tmpdir[64];

static void mk_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/fm-test-st-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void rm_rf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            rm_rf(p);
        }
        if (d) closedir(d);
        rmdir(path);
    } else
        unlink(path);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

static void *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)len + 1);
    if (fread(buf, 1, (size_t)len, f) != (size_t)len) len = 0;
    fclose(f);
    *n = (size_t)len;
    return buf;
}

/* ---- dtype table ---- */
static void test_dtypes(void)
{
    static const struct { fm_st_dtype d; const char *name; uint32_t size; int q; } tab[] = {
        {FM_ST_BOOL, "BOOL", 1, -1},   {FM_ST_U8, "U8", 1, -1},
        {FM_ST_I8, "I8", 1, -1},       {FM_ST_U16, "U16", 2, -1},
        {FM_ST_I16, "I16", 2, -1},     {FM_ST_F16, "F16", 2, FM_Q_F16},
        {FM_ST_BF16, "BF16", 2, FM_Q_BF16}, {FM_ST_U32, "U32", 4, -1},
        {FM_ST_I32, "I32", 4, -1},     {FM_ST_F32, "F32", 4, FM_Q_F32},
        {FM_ST_U64, "U64", 8, -1},     {FM_ST_I64, "I64", 8, -1},
        {FM_ST_F64, "F64", 8, -1},     {FM_ST_F8_E4M3, "F8_E4M3", 1, FM_Q_F8_E4M3},
        {FM_ST_F8_E5M2, "F8_E5M2", 1, FM_Q_F8_E5M2},
    };
    CHECK(sizeof tab / sizeof *tab == FM_ST_DTYPE_COUNT_);
    for (size_t i = 0; i < sizeof tab / sizeof *tab; i++) {
        CHECKF(strcmp(fm_st_dtype_name(tab[i].d), tab[i].name) == 0, "%s", tab[i].name);
        CHECKF(fm_st_dtype_size(tab[i].d) == tab[i].size, "%s", tab[i].name);
        CHECKF(fm_st_dtype_qtype(tab[i].d) == tab[i].q, "%s", tab[i].name);
    }
    CHECK(fm_st_dtype_size(FM_ST_DTYPE_COUNT_) == 0);
    fm_error e = {0};
    float out[1];
    CHECK(fm_st_to_f32(FM_ST_DTYPE_COUNT_, "x", 1, out, &e) == FM_E_ARG);
    CHECK(fm_st_to_f32(FM_ST_F32, NULL, 1, out, &e) == FM_E_ARG);
    CHECK(fm_st_to_f32(FM_ST_F32, NULL, 0, NULL, &e) == FM_OK);
}

/* ---- F8: all 256 bytes against torch's table ---- */
static void test_f8_table(void)
{
    FILE *f = fopen("tests/fixtures/st-f8-table.txt", "r");
    CHECK(f != NULL);
    if (!f) return;
    uint32_t e4[256], e5[256];
    char line[128];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned b, x, y;
        if (line[0] == '#') continue;
        if (sscanf(line, "%x %x %x", &b, &x, &y) == 3 && b < 256) {
            e4[b] = x;
            e5[b] = y;
            n++;
        }
    }
    fclose(f);
    CHECK(n == 256);
    uint8_t bytes[256];
    float o4[256], o5[256];
    for (int i = 0; i < 256; i++) bytes[i] = (uint8_t)i;
    fm_error e = {0};
    CHECK(fm_st_to_f32(FM_ST_F8_E4M3, bytes, 256, o4, &e) == FM_OK);
    CHECK(fm_st_to_f32(FM_ST_F8_E5M2, bytes, 256, o5, &e) == FM_OK);
    int bad4 = 0, bad5 = 0;
    for (int i = 0; i < 256; i++) {
        if (!same_f32(f32_bits(o4[i]), e4[i])) {
            if (bad4++ < 5) fprintf(stderr, "e4m3 %02x: fm %08x torch %08x\n", i, f32_bits(o4[i]), e4[i]);
        }
        if (!same_f32(f32_bits(o5[i]), e5[i])) {
            if (bad5++ < 5) fprintf(stderr, "e5m2 %02x: fm %08x torch %08x\n", i, f32_bits(o5[i]), e5[i]);
        }
    }
    CHECKF(bad4 == 0, "%d e4m3 mismatches", bad4);
    CHECKF(bad5 == 0, "%d e5m2 mismatches", bad5);
    /* Spot values (e4m3fn: 0x7e = 448 max, 0x01 = 2^-9, 0x7f NaN; e5m2:
     * 0x7c = inf, 0x7b = 57344, 0x01 = 2^-16). */
    CHECK(o4[0x7e] == 448.0f && o4[0x01] == ldexpf(1, -9) && isnan(o4[0x7f]) && isnan(o4[0xff]));
    CHECK(o4[0x80] == 0.0f && signbit(o4[0x80]) && o4[0xfe] == -448.0f);
    CHECK(isinf(o5[0x7c]) && o5[0x7b] == 57344.0f && o5[0x01] == ldexpf(1, -16) && isnan(o5[0x7d]));

    /* When formats/quant.c provides F8 dequantizers through the traits
     * table, they must agree with the same table. */
    for (int k = 0; k < 2; k++) {
        uint32_t q = k ? FM_Q_F8_E5M2 : FM_Q_F8_E4M3;
        const fm_qtype_traits *tr = fm_qtype_get(q);
        if (!tr || !tr->to_float_ref) continue;
        float o[256];
        tr->to_float_ref(bytes, o, 256);
        int bad = 0;
        for (int i = 0; i < 256; i++) bad += !same_f32(f32_bits(o[i]), k ? e5[i] : e4[i]);
        CHECKF(bad == 0, "quant.c %s: %d mismatches", tr->name, bad);
    }
}

/* ---- valid files: values from the generator ---- */
static fm_st *open_ok(const char *path)
{
    fm_st *st = NULL;
    fm_error e = {0};
    fm_err rc = fm_st_open(&st, path, &e);
    CHECKF(rc == FM_OK, "%s: %s", path, e.msg);
    return rc == FM_OK ? st : NULL;
}

static int check_tensor_values(const fm_st *st, const char *where, const char *name, uint64_t n,
                               const uint32_t *want)
{
    const fm_st_tensor *t = fm_st_find(st, name);
    CHECKF(t != NULL, "%s: tensor %s not found", where, name);
    if (!t) return 0;
    CHECKF(t->n_elems == n, "%s: %s has %llu elements, fixture %llu", where, name,
           (unsigned long long)t->n_elems, (unsigned long long)n);
    CHECK(t->size == t->n_elems * fm_st_dtype_size(t->dtype));
    if (t->n_elems != n) return 0;
    void *raw = malloc(t->size ? t->size : 1);
    float *f = malloc(sizeof *f * (n ? n : 1));
    fm_error e = {0};
    CHECKF(fm_st_read(st, t, raw, &e) == FM_OK, "%s", e.msg);
    CHECKF(fm_st_to_f32(t->dtype, raw, n, f, &e) == FM_OK, "%s", e.msg);
    int bad = 0;
    for (uint64_t i = 0; i < n; i++)
        if (!same_f32(f32_bits(f[i]), want[i])) {
            if (bad++ < 3)
                fprintf(stderr, "%s: %s[%llu] (%s): fm %08x expected %08x\n", where, name,
                        (unsigned long long)i, fm_st_dtype_name(t->dtype), f32_bits(f[i]), want[i]);
        }
    CHECKF(bad == 0, "%s: %s: %d values differ", where, name, bad);
    free(raw);
    free(f);
    return 1;
}

static void test_expected(void)
{
    size_t len;
    char *txt = read_all("tests/fixtures/st-expected.txt", &len);
    CHECK(txt != NULL);
    if (!txt) return;
    txt[len] = '\0';
    fm_st *sharded = open_ok(VALID "st-sharded.d");
    int lines = 0, via_dir = 0;
    char *save = NULL;
    for (char *ln = strtok_r(txt, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        if (ln[0] == '#') continue;
        char *path = ln, *name = strchr(path, '\t');
        if (!name) continue;
        *name++ = '\0';
        char *ns = strchr(name, '\t');
        if (!ns) continue;
        *ns++ = '\0';
        char *vals;
        uint64_t n = strtoull(ns, &vals, 10);
        uint32_t *want = malloc(sizeof *want * (n ? n : 1));
        for (uint64_t i = 0; i < n; i++) want[i] = (uint32_t)strtoul(vals, &vals, 16);
        fm_st *st = open_ok(path);
        if (st) {
            lines += check_tensor_values(st, path, name, n, want);
            fm_st_close(st);
        }
        if (sharded && strstr(path, "/st-sharded.d/"))
            via_dir += check_tensor_values(sharded, VALID "st-sharded.d", name, n, want);
        free(want);
    }
    CHECKF(lines >= 30, "only %d fixture tensors checked", lines);
    CHECK(via_dir == 4);
    fm_st_close(sharded);
    free(txt);
}

static const char *meta_get(const fm_st *st, const char *k)
{
    for (uint64_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[i].key, k) == 0) return st->meta[i].value;
    return NULL;
}

static void test_valid_structure(void)
{
    fm_st *st = open_ok(VALID "st-dtypes.safetensors");
    if (st) {
        CHECK(st->n_files == 1 && st->n_tensors == 16);
        for (uint64_t i = 1; i < st->n_tensors; i++)
            CHECK(strcmp(st->tensors[i - 1].name, st->tensors[i].name) < 0); /* sorted by name */
        const fm_st_tensor *t = fm_st_find(st, "w.layer.0");
        CHECK(t && t->dtype == FM_ST_F32 && t->n_dims == 3 && t->shape[0] == 2 && t->shape[1] == 3 &&
              t->shape[2] == 4 && t->n_elems == 24 && t->size == 96);
        t = fm_st_find(st, "i16");
        CHECK(t && t->dtype == FM_ST_I16 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 2);
        t = fm_st_find(st, "f8_e4m3");
        CHECK(t && t->dtype == FM_ST_F8_E4M3 && t->n_dims == 2 && t->size == 256);
        CHECK(fm_st_find(st, "nope") == NULL && fm_st_find(st, "") == NULL);
        CHECK(st->n_meta == 1 && strcmp(st->meta[0].key, "format") == 0 &&
              strcmp(st->meta[0].value, "pt") == 0);
        /* Tensors tile the data area (S15/S17): offsets plus sizes. */
        uint64_t total = 0, lo = UINT64_MAX, hi = 0;
        for (uint64_t i = 0; i < st->n_tensors; i++) {
            total += st->tensors[i].size;
            if (st->tensors[i].offset < lo) lo = st->tensors[i].offset;
            if (st->tensors[i].offset + st->tensors[i].size > hi)
                hi = st->tensors[i].offset + st->tensors[i].size;
        }
        CHECK(hi == st->files[0].size && hi - lo == total);
        /* A tensor from another fm_st is refused. */
        fm_st *other = open_ok(VALID "st-scalar-empty.safetensors");
        if (other) {
            fm_error e = {0};
            char buf[64];
            CHECK(fm_st_read(st, &other->tensors[0], buf, &e) == FM_E_ARG);
            fm_st_close(other);
        }
        fm_st_close(st);
    }
    st = open_ok(VALID "st-scalar-empty.safetensors");
    if (st) {
        const fm_st_tensor *t = fm_st_find(st, "scalar");
        CHECK(t && t->n_dims == 0 && t->n_elems == 1 && t->size == 4);
        t = fm_st_find(st, "empty3");
        CHECK(t && t->n_dims == 3 && t->shape[1] == 0 && t->n_elems == 0 && t->size == 0);
        fm_error e = {0};
        CHECK(t && fm_st_read(st, t, NULL, &e) == FM_OK); /* S11: zero-sized tensors read nothing */
        fm_st_close(st);
    }
    st = open_ok(VALID "st-empty.safetensors");
    if (st) {
        CHECK(st->n_tensors == 0 && st->n_meta == 0 && fm_st_find(st, "a") == NULL);
        fm_st_close(st);
    }
    st = open_ok(VALID "st-padded-unordered.safetensors"); /* S5 padding, S8 null, S9 extra field */
    if (st) {
        CHECK(st->n_tensors == 3 && st->n_meta == 0);
        const fm_st_tensor *a = fm_st_find(st, "a"), *c = fm_st_find(st, "c");
        CHECK(a && c && c->offset == a->offset + 8);
        fm_st_close(st);
    }
    st = open_ok(VALID "st-zero-utf8.safetensors");
    if (st) {
        CHECK(st->n_tensors == 3);
        const char *v = meta_get(st, "k\xc3\xa9y");
        CHECK(v && strcmp(v, "v\"al\n") == 0);
        v = meta_get(st, "empty");
        CHECK(v && v[0] == '\0');
        fm_st_close(st);
    }
    /* S19/S20/S27: directory, and the index file named directly. */
    const char *paths[] = {VALID "st-sharded.d", VALID "st-sharded.d/",
                           VALID "st-sharded.d/model.safetensors.index.json"};
    for (int i = 0; i < 3; i++) {
        st = open_ok(paths[i]);
        if (!st) continue;
        CHECK(st->n_files == 2 && st->n_tensors == 4);
        const fm_st_tensor *t = fm_st_find(st, "lm_head.weight");
        CHECK(t && t->file_index == 1 && strstr(st->files[1].path, "model-00002-of-00002.safetensors"));
        const char *v = meta_get(st, "shard");
        CHECK(v && strcmp(v, "1") == 0); /* first shard (by name) wins */
        v = meta_get(st, "format");
        CHECK(v && strcmp(v, "pt") == 0 && st->n_meta == 2);
        fm_st_close(st);
    }
}

/* ---- invalid corpus ---- */
static const struct {
    const char *name; /* in tests/corpus/invalid/ */
    fm_err code;
    const char *rule; /* the rule tag the message must carry */
} invalid_tab[] = {
    {"st-S1-short.safetensors", FM_E_FORMAT, "(S1)"},
    {"st-S2-header-cap.safetensors", FM_E_FORMAT, "(S2)"},
    {"st-S2-header-huge.safetensors", FM_E_FORMAT, "(S2)"},
    {"st-S3-header-beyond-file.safetensors", FM_E_FORMAT, "(S3)"},
    {"st-S4-bad-utf8.safetensors", FM_E_FORMAT, "(S4)"},
    {"st-S4-overlong-utf8.safetensors", FM_E_FORMAT, "(S4)"},
    {"st-S5-bad-json.safetensors", FM_E_FORMAT, "(S5)"},
    {"st-S5-nul-padding.safetensors", FM_E_FORMAT, "(S5)"},
    {"st-S5-integer-too-big.safetensors", FM_E_FORMAT, "(S5)"},
    {"st-S5-nul-in-name.safetensors", FM_E_FORMAT, "(S5)"},
    {"st-S5-lone-surrogate.safetensors", FM_E_FORMAT, "(S5)"},
    {"st-S6-not-object.safetensors", FM_E_FORMAT, "(S6)"},
    {"st-S7-duplicate-key.safetensors", FM_E_FORMAT, "(S7)"},
    {"st-S7-duplicate-field.safetensors", FM_E_FORMAT, "(S7)"},
    {"st-S8-metadata-nonstring.safetensors", FM_E_FORMAT, "(S8)"},
    {"st-S8-metadata-not-object.safetensors", FM_E_FORMAT, "(S8)"},
    {"st-S9-entry-not-object.safetensors", FM_E_FORMAT, "(S9)"},
    {"st-S9-missing-shape.safetensors", FM_E_FORMAT, "(S9)"},
    {"st-S10-unknown-dtype.safetensors", FM_E_FORMAT, "(S10)"},
    {"st-S10-unsupported-dtype.safetensors", FM_E_UNSUPPORTED, "(S10)"},
    {"st-S10-dtype-not-string.safetensors", FM_E_FORMAT, "(S10)"},
    {"st-S11-negative-dim.safetensors", FM_E_FORMAT, "(S11)"},
    {"st-S11-float-dim.safetensors", FM_E_FORMAT, "(S11)"},
    {"st-S11-too-many-dims.safetensors", FM_E_UNSUPPORTED, "(S11)"},
    {"st-S11-shape-not-array.safetensors", FM_E_FORMAT, "(S11)"},
    {"st-S12-shape-overflow.safetensors", FM_E_RANGE, "(S12)"},
    {"st-S12-overflow-before-zero.safetensors", FM_E_RANGE, "(S12)"},
    {"st-S12-bytes-overflow.safetensors", FM_E_RANGE, "(S12)"},
    {"st-S13-begin-gt-end.safetensors", FM_E_FORMAT, "(S13)"},
    {"st-S13-non-integer-offsets.safetensors", FM_E_FORMAT, "(S13)"},
    {"st-S13-real-offsets.safetensors", FM_E_FORMAT, "(S13)"},
    {"st-S13-three-offsets.safetensors", FM_E_FORMAT, "(S13)"},
    {"st-S14-size-mismatch.safetensors", FM_E_FORMAT, "(S14)"},
    {"st-S15-overlap.safetensors", FM_E_FORMAT, "(S15)"},
    {"st-S15-gap.safetensors", FM_E_FORMAT, "(S15)"},
    {"st-S15-gap-at-start.safetensors", FM_E_FORMAT, "(S15)"},
    {"st-S16-offsets-beyond-data.safetensors", FM_E_FORMAT, "(S16)"},
    {"st-S16-huge-offsets.safetensors", FM_E_FORMAT, "(S16)"},
    {"st-S16-truncated-data.safetensors", FM_E_FORMAT, "(S16)"},
    {"st-S17-trailing-bytes.safetensors", FM_E_FORMAT, "(S17)"},
    {"st-S19-no-model.d", FM_E_NOTFOUND, "(S19)"},
    {"st-S21-weight-map-not-object.d", FM_E_FORMAT, "(S21)"},
    {"st-S21-index-duplicate-key.d", FM_E_FORMAT, "(S21)"},
    {"st-S21-shard-not-string.d", FM_E_FORMAT, "(S21)"},
    {"st-S22-dotdot-shard.d", FM_E_FORMAT, "(S22)"},
    {"st-S22-slash-shard.d", FM_E_FORMAT, "(S22)"},
    {"st-S24-missing-shard.d", FM_E_NOTFOUND, "(S24)"},
    {"st-S24-invalid-shard.d", FM_E_FORMAT, "(S14)"}, /* the shard itself breaks S14 */
    {"st-S25-tensor-missing.d", FM_E_FORMAT, "(S25)"},
    {"st-S25-wrong-shard.d", FM_E_FORMAT, "(S25)"},
    {"st-S26-unlisted-tensor.d", FM_E_FORMAT, "(S26)"},
    {"st-S26-duplicate-across-shards.d", FM_E_FORMAT, "(S26)"},
};
#define N_INVALID (sizeof invalid_tab / sizeof *invalid_tab)

static void expect_fail(const char *path, fm_err code, const char *rule, const char *must_name)
{
    fm_st *st = (fm_st *)(uintptr_t)1;
    fm_error e = {0};
    fm_err rc = fm_st_open(&st, path, &e);
    CHECKF(rc == code, "%s: got %d (%s) want %d: %s", path, rc, fm_strerror(rc), code, e.msg);
    CHECKF(st == NULL, "%s: *out not NULL on error", path);
    CHECKF(e.code == rc, "%s: e.code %d", path, e.code);
    CHECKF(strstr(e.msg, must_name) != NULL, "%s: message does not name the file: %s", path, e.msg);
    if (rule) CHECKF(strstr(e.msg, rule) != NULL, "%s: message lacks %s: %s", path, rule, e.msg);
    if (rc == FM_OK) fm_st_close(st);
}

static void test_invalid_corpus(void)
{
    for (size_t i = 0; i < N_INVALID; i++) {
        char path[256];
        snprintf(path, sizeof path, INVALID "%s", invalid_tab[i].name);
        /* "st-S24-missing-shard.d" must name the missing shard. */
        const char *must = strcmp(invalid_tab[i].name, "st-S24-missing-shard.d") == 0
                               ? INVALID "st-S24-missing-shard.d/s2.safetensors"
                               : path;
        expect_fail(path, invalid_tab[i].code, invalid_tab[i].rule, must);
    }
    /* Every st-* file of the invalid corpus is in the table. */
    DIR *d = opendir(INVALID);
    CHECK(d != NULL);
    int seen = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (strncmp(de->d_name, "st-", 3) != 0) continue;
        seen++;
        int found = 0;
        for (size_t i = 0; i < N_INVALID; i++) found |= strcmp(de->d_name, invalid_tab[i].name) == 0;
        CHECKF(found, "%s%s has no entry in invalid_tab", INVALID, de->d_name);
    }
    if (d) closedir(d);
    CHECK(seen == (int)N_INVALID);
}

/* ---- cases built at run time ---- */
static void put_u64(uint8_t *p, uint64_t v) { fm_wr_u64le(p, v); }

static void test_runtime_cases(void)
{
    char p[128], q[256];
    uint8_t buf[64];

    /* S2 boundary: a length equal to the cap passes S2 and fails S3. */
    snprintf(p, sizeof p, "%s/cap.safetensors", tmpdir);
    put_u64(buf, FM_ST_MAX_HEADER);
    memcpy(buf + 8, "{}", 2);
    write_file(p, buf, 10);
    expect_fail(p, FM_E_FORMAT, "(S3)", p);
    put_u64(buf, (uint64_t)FM_ST_MAX_HEADER + 1);
    write_file(p, buf, 10);
    expect_fail(p, FM_E_FORMAT, "(S2)", p);
    /* 0-length header: empty JSON text. */
    put_u64(buf, 0);
    write_file(p, buf, 8);
    expect_fail(p, FM_E_FORMAT, "(S5)", p);

    /* Missing paths. */
    snprintf(p, sizeof p, "%s/nope.safetensors", tmpdir);
    expect_fail(p, FM_E_NOTFOUND, NULL, p);

    /* Every strict prefix of a valid file is rejected, without crashing. */
    size_t n;
    uint8_t *full = read_all(VALID "st-dtypes.safetensors", &n);
    CHECK(full && n > 100);
    snprintf(p, sizeof p, "%s/prefix.safetensors", tmpdir);
    int accepted = 0;
    for (size_t len = 0; full && len < n; len++) {
        write_file(p, full, len);
        fm_st *st = NULL;
        fm_error e = {0};
        if (fm_st_open(&st, p, &e) == FM_OK) {
            accepted++;
            fm_st_close(st);
        }
    }
    CHECKF(accepted == 0, "%d truncated prefixes accepted", accepted);
    free(full);

    /* S19: model.safetensors wins over an index in the same directory. */
    snprintf(p, sizeof p, "%s/both", tmpdir);
    mkdir(p, 0700);
    full = read_all(VALID "st-scalar-empty.safetensors", &n);
    snprintf(q, sizeof q, "%s/model.safetensors", p);
    write_file(q, full, n);
    free(full);
    snprintf(q, sizeof q, "%s/model.safetensors.index.json", p);
    write_file(q, "garbage", 7);
    fm_st *st = open_ok(p);
    CHECK(st && st->n_tensors == 5);
    fm_st_close(st);
    /* ...and a broken index alone is refused (S21). */
    snprintf(q, sizeof q, "%s/model.safetensors", p);
    unlink(q);
    expect_fail(p, FM_E_FORMAT, "(S21)", p);

    /* S23: more distinct shards than FM_ST_MAX_FILES. */
    snprintf(p, sizeof p, "%s/many", tmpdir);
    mkdir(p, 0700);
    size_t cap = 64 + (FM_ST_MAX_FILES + 1) * 40, len = 0;
    char *idx = malloc(cap);
    len += (size_t)snprintf(idx + len, cap - len, "{\"weight_map\":{");
    for (unsigned i = 0; i <= FM_ST_MAX_FILES; i++)
        len += (size_t)snprintf(idx + len, cap - len, "%s\"t%u\":\"s%u.safetensors\"", i ? "," : "", i, i);
    len += (size_t)snprintf(idx + len, cap - len, "}}");
    snprintf(q, sizeof q, "%s/model.safetensors.index.json", p);
    write_file(q, idx, len);
    free(idx);
    expect_fail(p, FM_E_RANGE, "(S23)", p);

    /* A shard that is a directory. */
    snprintf(p, sizeof p, "%s/dirshard", tmpdir);
    mkdir(p, 0700);
    snprintf(q, sizeof q, "%s/s.safetensors", p);
    mkdir(q, 0700);
    snprintf(q, sizeof q, "%s/model.safetensors.index.json", p);
    const char *ix = "{\"weight_map\":{\"a\":\"s.safetensors\"}}";
    write_file(q, ix, strlen(ix));
    expect_fail(p, FM_E_IO, NULL, p);

    /* A FIFO is refused without being opened (opening one would block). */
    snprintf(p, sizeof p, "%s/fifo.safetensors", tmpdir);
    CHECK(mkfifo(p, 0600) == 0);
    expect_fail(p, FM_E_IO, NULL, p);
    snprintf(p, sizeof p, "%s/fifodir", tmpdir);
    mkdir(p, 0700);
    snprintf(q, sizeof q, "%s/s.safetensors", p);
    CHECK(mkfifo(q, 0600) == 0);
    snprintf(q, sizeof q, "%s/model.safetensors.index.json", p);
    write_file(q, ix, strlen(ix));
    expect_fail(p, FM_E_IO, "(S24)", p);

    /* Empty weight_map: a checkpoint with no tensors. */
    snprintf(p, sizeof p, "%s/emptyidx.index.json", tmpdir);
    ix = "{\"metadata\":null,\"weight_map\":{}}";
    write_file(p, ix, strlen(ix));
    st = open_ok(p);
    CHECK(st && st->n_files == 0 && st->n_tensors == 0);
    fm_st_close(st);

    /* S22: "." and names with a backslash. */
    const char *badnames[] = {".", "a\\\\b.safetensors", "", "..", "x/../y"};
    for (size_t i = 0; i < sizeof badnames / sizeof *badnames; i++) {
        char txt[128];
        snprintf(txt, sizeof txt, "{\"weight_map\":{\"a\":\"%s\"}}", badnames[i]);
        write_file(p, txt, strlen(txt));
        expect_fail(p, FM_E_FORMAT, "(S22)", p);
    }
}

int main(void)
{
    mk_tmpdir();
    test_dtypes();
    test_f8_table();
    test_expected();
    test_valid_structure();
    test_invalid_corpus();
    test_runtime_cases();
    rm_rf(tmpdir);
    T_DONE();
}
