/* formats/quant: traits table, scalar conversions, `_ref` dequantizers against
 * gguf-py reference fixtures, AVX2 twins against `_ref`, argument checks.
 *
 * Tolerance everywhere: none. Every comparison is memcmp / bit equality of
 * float32 outputs (the spec for dequantization is "bit-exact with gguf-py's
 * numpy gguf.quants.dequantize() in float32", and the SIMD twins must be
 * bit-exact with `_ref`).
 * Fixtures: tests/fixtures/quant/ (tests/gen/gen_quant_ref.py, gguf 0.19.0). */
#include "formats/affine.h"
#include "formats/quant.h"
#include "formats/quant_blocks.h"
#include "t.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/quant/"

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (n == cap) buf = realloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* xorshift64*, fixed seed: reproducible random blocks */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}
static void rnd_fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(rnd() >> 56);
}

/* Every id formats/quant.h declares: the traits table must cover all of them. */
static const uint32_t header_ids[] = {
    FM_Q_F32,     FM_Q_F16,    FM_Q_Q4_0,    FM_Q_Q4_1,   FM_Q_Q5_0,   FM_Q_Q5_1,  FM_Q_Q8_0,  FM_Q_Q8_1,
    FM_Q_Q2_K,    FM_Q_Q3_K,   FM_Q_Q4_K,    FM_Q_Q5_K,   FM_Q_Q6_K,   FM_Q_Q8_K,  FM_Q_IQ2_XXS, FM_Q_IQ2_XS,
    FM_Q_IQ3_XXS, FM_Q_IQ1_S,  FM_Q_IQ4_NL,  FM_Q_IQ3_S,  FM_Q_IQ2_S,  FM_Q_IQ4_XS, FM_Q_I8,   FM_Q_I16,
    FM_Q_I32,     FM_Q_I64,    FM_Q_F64,     FM_Q_IQ1_M,  FM_Q_BF16,   FM_Q_TQ1_0, FM_Q_TQ2_0, FM_Q_MXFP4,
    FM_Q_NVFP4,   FM_Q_Q1_0,   FM_Q_F8_E4M3, FM_Q_F8_E5M2,
};
#define N_HEADER_IDS (sizeof header_ids / sizeof header_ids[0])

/* Traits vs gguf-py's GGML_QUANT_SIZES (fixture SIZES). */
static void test_traits(void)
{
    size_t len;
    char *txt = read_file(FIX "SIZES", &len);
    CHECKF(txt != NULL, "cannot read " FIX "SIZES (run tests from the repo root)");
    if (!txt) return;
    txt = realloc(txt, len + 1);
    txt[len] = 0;
    int seen = 0;
    bool found[N_HEADER_IDS] = {0};
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        char name[32];
        unsigned id, bs, ts;
        if (line[0] == '#' || sscanf(line, "%31s %u %u %u", name, &id, &bs, &ts) != 4) continue;
        const fm_qtype_traits *tr = fm_qtype_get(id);
        CHECKF(tr != NULL, "gguf-py type %s (%u) missing from the traits table", name, id);
        if (!tr) continue;
        seen++;
        CHECKF(strcmp(tr->name, name) == 0, "id %u: name %s, gguf-py %s", id, tr->name, name);
        CHECKF(tr->block_size == bs, "%s: block %u, gguf-py %u", name, tr->block_size, bs);
        if (id == FM_Q_Q8_1)
            /* Deliberate: gguf-py 0.19 still lists the old {float d, float s}
             * layout (40); ggml's block_q8_1 is {half d, half s, qs[32]} = 36. */
            CHECKF(tr->type_size == 36 && ts == 40, "Q8_1: %u (gguf-py %u)", tr->type_size, ts);
        else
            CHECKF(tr->type_size == ts, "%s: type_size %u, gguf-py %u", name, tr->type_size, ts);
        CHECKF(fm_qtype_from_name(name) == (int)id, "from_name(%s)", name);
        for (size_t k = 0; k < N_HEADER_IDS; k++)
            if (header_ids[k] == id) found[k] = true;
    }
    free(txt);
    CHECKF(seen >= 34, "only %d gguf-py types checked", seen);
    for (size_t k = 0; k < N_HEADER_IDS; k++) {
        const fm_qtype_traits *tr = fm_qtype_get(header_ids[k]);
        CHECKF(tr != NULL, "header id %u has no traits", header_ids[k]);
        if (!tr) continue;
        if (header_ids[k] >= 256) {
            found[k] = true;
            CHECK(tr->block_size == 1 && tr->type_size == 1 && tr->to_float_ref != NULL);
        }
        CHECKF(found[k], "header id %u (%s) not in gguf-py's GGML_QUANT_SIZES", header_ids[k], tr->name);
        CHECKF(fm_qtype_from_name(tr->name) == (int)header_ids[k], "from_name(%s)", tr->name);
    }
    /* ids that are not types: removed GGML ids, gaps, out of range */
    const uint32_t bad[] = {4, 5, 31, 32, 33, 36, 37, 38, 42, 100, 255, 258, 259, 269, 511, 512, 0xffffffffu};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) CHECKF(fm_qtype_get(bad[k]) == NULL, "id %u", bad[k]);
    /* the ones without a dequantizer */
    CHECK(fm_qtype_get(FM_Q_Q8_1)->to_float_ref == NULL);
    CHECK(fm_qtype_dequant_fn(FM_Q_Q8_1) == NULL);
    /* names: case-insensitive, exact */
    CHECK(fm_qtype_from_name("q4_k") == FM_Q_Q4_K);
    CHECK(fm_qtype_from_name("iq2_xxs") == FM_Q_IQ2_XXS);
    CHECK(fm_qtype_from_name("bf16") == FM_Q_BF16);
    CHECK(fm_qtype_from_name("f8_e4m3") == FM_Q_F8_E4M3);
    CHECK(fm_qtype_from_name("Q4_K ") == -1);
    CHECK(fm_qtype_from_name("Q4") == -1);
    CHECK(fm_qtype_from_name("") == -1);
    CHECK(fm_qtype_from_name(NULL) == -1);
    CHECK(fm_qtype_from_name("Q4_KK") == -1);
}

/* specs/quant.md A1: fm's affine ids are registered with the block layout
 * formats/affine.h describes. */
static void test_affine_traits(void)
{
    int n = 0;
    for (uint32_t id = FM_Q_A4_32; id <= FM_Q_A2_128; id++) {
        unsigned bits, group;
        const fm_qtype_traits *tr = fm_qtype_get(id);
        CHECKF(tr && fm_affine_params(id, &bits, &group), "affine id %u", id);
        if (!tr || !fm_affine_params(id, &bits, &group)) continue;
        char name[16];
        snprintf(name, sizeof name, "A%u_%u", bits, group);
        CHECKF(strcmp(tr->name, name) == 0 && tr->block_size == group &&
                   tr->type_size == fm_affine_block_bytes(bits, group) && tr->to_float_ref,
               "%u: %s %u %u", id, tr->name, tr->block_size, tr->type_size);
        CHECK(fm_qtype_from_name(name) == (int)id);
        n++;
    }
    CHECK(n == 9);
}

static void test_nbytes_and_errors(void)
{
    fm_error e;
    uint64_t b = 0;
    CHECK(fm_qtype_nbytes(FM_Q_Q4_K, 512, &b, &e) == FM_OK && b == 288);
    CHECK(fm_qtype_nbytes(FM_Q_F8_E5M2, 7, &b, &e) == FM_OK && b == 7);
    CHECK(fm_qtype_nbytes(FM_Q_Q8_0, 0, &b, &e) == FM_OK && b == 0);
    CHECK(fm_qtype_nbytes(FM_Q_Q4_K, 100, &b, &e) == FM_E_FORMAT && strstr(e.msg, "Q4_K") && strstr(e.msg, "100"));
    CHECK(fm_qtype_nbytes(FM_Q_F64, UINT64_MAX, &b, &e) == FM_E_RANGE);
    CHECK(fm_qtype_nbytes(FM_Q_Q4_K, UINT64_MAX / 256 * 256, &b, NULL) == FM_OK); /* 144/256 < 1 */
    CHECK(fm_qtype_nbytes(FM_Q_Q8_K, (UINT64_MAX / 256) * 256, &b, &e) == FM_E_RANGE);
    CHECK(fm_qtype_nbytes(77, 32, &b, &e) == FM_E_UNSUPPORTED && strstr(e.msg, "77"));

    uint8_t src[2 * 144] = {0};
    float dst[512];
    CHECK(fm_dequantize(FM_Q_Q4_K, src, sizeof src, dst, 512, &e) == FM_OK);
    CHECK(fm_dequantize(FM_Q_Q4_K, src, sizeof src - 1, dst, 512, &e) == FM_E_RANGE && strstr(e.msg, "288"));
    CHECK(fm_dequantize(FM_Q_Q4_K, src, sizeof src, dst, 300, &e) == FM_E_FORMAT);
    CHECK(fm_dequantize(FM_Q_Q4_K, src, sizeof src, dst, 300, NULL) == FM_E_FORMAT);
    CHECK(fm_dequantize(FM_Q_Q8_1, src, sizeof src, dst, 32, &e) == FM_E_UNSUPPORTED && strstr(e.msg, "Q8_1"));
    CHECK(fm_dequantize(3000, src, sizeof src, dst, 32, &e) == FM_E_UNSUPPORTED);
    CHECK(fm_dequantize(FM_Q_Q4_K, NULL, sizeof src, dst, 256, &e) == FM_E_ARG);
    CHECK(fm_dequantize(FM_Q_Q4_K, src, sizeof src, NULL, 256, &e) == FM_E_ARG);
    CHECK(fm_dequantize(FM_Q_Q4_K, NULL, 0, NULL, 0, &e) == FM_OK);
    CHECK(fm_dequantize(FM_Q_F32, src, SIZE_MAX, dst, UINT64_MAX / 2, &e) == FM_E_RANGE); /* bytes overflow */
    CHECK(fm_dequantize(FM_Q_I8, src, SIZE_MAX, dst, UINT64_MAX / 2, &e) == FM_E_RANGE);  /* n*4 overflow */
    /* a block at an odd address (packed structs: no alignment needed) */
    uint8_t odd[1 + 144];
    rnd_fill(odd, sizeof odd);
    memcpy(src, odd + 1, 144);
    float a[256], c[256];
    CHECK(fm_dequantize(FM_Q_Q4_K, odd + 1, 144, a, 256, &e) == FM_OK);
    CHECK(fm_dequantize(FM_Q_Q4_K, src, 144, c, 256, &e) == FM_OK && memcmp(a, c, sizeof a) == 0);
}

/* Exact value of a binary16, computed independently with ldexp (double). */
static double f16_value(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

/* Conversions. f16: all 65536 values (value, NaN bits, round trip). */
static void test_conversions(void)
{
    int bad_val = 0, bad_rt = 0, bad_bf = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = fm_f16_to_f32(h);
        uint32_t u = f2u(f);
        if (((h >> 10) & 31) == 31) {
            /* inf / NaN: sign and payload kept (numpy keeps sNaN signalling) */
            uint32_t want = (uint32_t)(h & 0x8000) << 16 | 0x7f800000u | (uint32_t)(h & 0x3ff) << 13;
            if (u != want) bad_val++;
        } else if ((double)f != f16_value(h) || (u >> 31) != (h >> 15u)) {
            bad_val++;
        }
        if (fm_f32_to_f16(f) != h) bad_rt++;
        /* bf16: exact widening; narrowing is the identity except that a
         * signalling NaN comes back quiet (ggml / gguf-py behaviour) */
        float g = fm_bf16_to_f32(h);
        uint16_t want_bf = h;
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f) && !(h & 0x40)) want_bf = h | 0x40;
        if (f2u(g) != (uint32_t)h << 16 || fm_f32_to_bf16(g) != want_bf) bad_bf++;
    }
    CHECKF(bad_val == 0, "%d f16 values decode wrong", bad_val);
    CHECKF(bad_rt == 0, "%d f16 values do not round-trip", bad_rt);
    CHECKF(bad_bf == 0, "%d bf16 values wrong", bad_bf);

    /* narrowing, hand-picked: ties to even, overflow, subnormals, NaN */
    CHECK(fm_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(fm_f32_to_f16(65519.99f) == 0x7bff);
    CHECK(fm_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(fm_f32_to_f16(-1e10f) == 0xfc00);
    CHECK(fm_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);            /* tie -> even */
    CHECK(fm_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02);        /* tie -> even (up) */
    CHECK(fm_f32_to_f16(0x1p-25f) == 0x0000);                   /* tie -> 0 */
    CHECK(fm_f32_to_f16(0x1.000002p-25f) == 0x0001);
    CHECK(fm_f32_to_f16(3 * 0x1p-25f) == 0x0002);               /* 1.5 ulp -> 2 */
    CHECK(fm_f32_to_f16(-0.0f) == 0x8000);
    CHECK(fm_f32_to_f16(0x1.ff8p-15f) == 0x03ff);               /* largest subnormal */
    CHECK(fm_f32_to_f16(0x1.ffbffep-15f) == 0x03ff);
    CHECK(fm_f32_to_f16(0x1.ffcp-15f) == 0x0400);               /* tie: rounds up into normal */
    CHECK(fm_f32_to_f16(NAN) == 0x7e00);
    uint32_t snan = 0x7f800001u;
    float fs;
    memcpy(&fs, &snan, 4);
    CHECK(fm_f32_to_f16(fs) == 0x7c01); /* payload lost below bit 13: still a NaN */
    CHECK(fm_f32_to_bf16(fs) == 0x7fc0);
    CHECK(fm_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);  /* tie -> even */
    CHECK(fm_f32_to_bf16(3.4028235e38f) == 0x7f80);   /* FLT_MAX rounds to inf */

    /* against numpy astype(float16) and gguf-py BF16 on 8192 chosen floats */
    size_t len;
    uint8_t *rec = read_file(FIX "conv.bin", &len);
    CHECKF(rec != NULL && len % 8 == 0 && len >= 8 * 8192, "conv.bin");
    if (!rec) return;
    int bh = 0, bb = 0;
    for (size_t k = 0; k + 8 <= len; k += 8) {
        uint32_t x = (uint32_t)rec[k] | (uint32_t)rec[k + 1] << 8 | (uint32_t)rec[k + 2] << 16 | (uint32_t)rec[k + 3] << 24;
        uint16_t h = (uint16_t)(rec[k + 4] | rec[k + 5] << 8), b = (uint16_t)(rec[k + 6] | rec[k + 7] << 8);
        float f;
        memcpy(&f, &x, 4);
        if (fm_f32_to_f16(f) != h) {
            if (bh++ < 5) fprintf(stderr, "f16(0x%08x) = 0x%04x, numpy 0x%04x\n", x, fm_f32_to_f16(f), h);
        }
        if (fm_f32_to_bf16(f) != b) {
            if (bb++ < 5) fprintf(stderr, "bf16(0x%08x) = 0x%04x, gguf-py 0x%04x\n", x, fm_f32_to_bf16(f), b);
        }
    }
    CHECKF(bh == 0, "%d f32->f16 differ from numpy", bh);
    CHECKF(bb == 0, "%d f32->bf16 differ from gguf-py", bb);
    free(rec);
}

static int first_diff(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (f2u(a[i]) != f2u(b[i])) return (int)i;
    return -1;
}

/* Every fixture type (specs/quant.md: GGML layouts; A1-A4 for the affine
 * schemes): _ref, the dispatched kernel and the AVX2 twin, bit-exact. */
static void test_fixtures(void)
{
    size_t len;
    char *txt = read_file(FIX "MANIFEST", &len);
    CHECKF(txt != NULL, "cannot read " FIX "MANIFEST (run tests from the repo root)");
    if (!txt) return;
    txt = realloc(txt, len + 1);
    txt[len] = 0;
    bool listed[FM_Q_MAX_] = {0};
    int checked = 0, simd_checked = 0;
    char *save = NULL;
    for (char *line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[32], oracle[16], path[128];
        unsigned long long n;
        if (line[0] == '#' || sscanf(line, "%31s %llu %15s", name, &n, oracle) != 3) continue;
        int id = fm_qtype_from_name(name);
        CHECKF(id >= 0, "fixture type %s unknown", name);
        if (id < 0) continue;
        listed[id] = true;
        const fm_qtype_traits *tr = fm_qtype_get((uint32_t)id);
        size_t rawlen, explen;
        snprintf(path, sizeof path, FIX "%s.bin", name);
        uint8_t *raw = read_file(path, &rawlen);
        snprintf(path, sizeof path, FIX "%s.f32", name);
        float *exp = read_file(path, &explen);
        uint64_t need = 0;
        CHECKF(raw && exp && explen == n * 4, "%s: fixture files", name);
        CHECKF(fm_qtype_nbytes((uint32_t)id, n, &need, NULL) == FM_OK && need == rawlen, "%s: %zu raw bytes for %llu",
               name, rawlen, n);
        if (!raw || !exp || explen != n * 4 || need != rawlen || !tr->to_float_ref) {
            CHECKF(tr->to_float_ref != NULL, "%s: no _ref", name);
            free(raw);
            free(exp);
            continue;
        }
        float *got = malloc(explen);
        memset(got, 0xa5, explen);
        tr->to_float_ref(raw, got, (size_t)n);
        int d = first_diff(got, exp, (size_t)n);
        CHECKF(d < 0, "%s _ref vs %s: value %d is 0x%08x, expected 0x%08x", name, oracle, d, d < 0 ? 0 : f2u(got[d]),
               d < 0 ? 0 : f2u(exp[d]));
        memset(got, 0xa5, explen);
        fm_error e;
        CHECK(fm_dequantize((uint32_t)id, raw, rawlen, got, n, &e) == FM_OK);
        d = first_diff(got, exp, (size_t)n);
        CHECKF(d < 0, "%s dispatched (%s) vs %s: value %d", name,
               fm_qtype_dequant_fn((uint32_t)id) == tr->to_float_ref ? "ref" : "avx2", oracle, d);
        if (tr->to_float_avx2 && fm_cpu_has_avx2()) {
            memset(got, 0xa5, explen);
            tr->to_float_avx2(raw, got, (size_t)n);
            d = first_diff(got, exp, (size_t)n);
            CHECKF(d < 0, "%s avx2 vs %s: value %d", name, oracle, d);
            simd_checked++;
        }
        checked++;
        free(got);
        free(raw);
        free(exp);
    }
    free(txt);
    /* every type with a dequantizer has reference data */
    for (uint32_t id = 0; id < FM_Q_MAX_; id++) {
        const fm_qtype_traits *tr = fm_qtype_get(id);
        if (tr && tr->to_float_ref) CHECKF(listed[id], "%s has a dequantizer but no fixture", tr->name);
    }
    printf("fixtures: %d types bit-exact with their oracle (%d AVX2 twins too)\n", checked, simd_checked);
    CHECK(checked >= 44);
}

/* Every AVX2 twin vs its _ref on random blocks: fully random bytes (so f16
 * scales hit NaN/inf/subnormal), plus each scale field forced to each edge. */
static void test_simd_twins(void)
{
    if (!fm_cpu_has_avx2()) {
        printf("simd: CPU lacks AVX2/FMA/F16C, twins not run\n");
        return;
    }
    static const uint16_t edges[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x7c00,
                                     0xfc00, 0x7e00, 0x7c01, 0xfe01, 0x7dff, 0x3c00, 0x0200};
    int twins = 0;
    for (uint32_t id = 0; id < FM_Q_MAX_; id++) {
        const fm_qtype_traits *tr = fm_qtype_get(id);
        if (!tr || !tr->to_float_avx2) continue;
        twins++;
        /* f16/bf16 fields sit at these offsets (first f16 scale, second) */
        int off1 = -1, off2 = -1;
        switch (id) {
        case FM_Q_Q4_0: case FM_Q_Q8_0: case FM_Q_IQ4_NL: case FM_Q_IQ4_XS: off1 = 0; break;
        case FM_Q_Q4_K: case FM_Q_Q5_K: off1 = 0, off2 = 2; break;
        case FM_Q_Q2_K: off1 = 80, off2 = 82; break;
        case FM_Q_Q3_K: off1 = 108; break;
        case FM_Q_Q6_K: off1 = 208; break;
        default: break;
        }
        size_t nb = tr->block_size == 1 ? 65536 + 13 : 3000; /* element types: odd tail */
        size_t nv = nb * tr->block_size, bytes = nb * tr->type_size;
        uint8_t *buf = malloc(bytes + 1), *src = buf + 1; /* odd address on purpose */
        float *a = malloc(nv * 4), *b = malloc(nv * 4);
        rnd_fill(src, bytes);
        if (tr->block_size == 1 && tr->type_size == 2)
            for (size_t i = 0; i < 65536; i++) src[2 * i] = (uint8_t)i, src[2 * i + 1] = (uint8_t)(i >> 8);
        if (off1 >= 0) {
            size_t ne = sizeof edges / sizeof edges[0];
            for (size_t k = 0; k < 2 * ne * ne && k < nb; k++) {
                uint8_t *blk = src + k * tr->type_size;
                uint16_t e1 = edges[k % ne], e2 = edges[(k / ne) % ne];
                if (k >= ne * ne) e1 = (uint16_t)rnd(); /* random d, edge dmin */
                blk[off1] = (uint8_t)e1, blk[off1 + 1] = (uint8_t)(e1 >> 8);
                if (off2 >= 0) blk[off2] = (uint8_t)e2, blk[off2 + 1] = (uint8_t)(e2 >> 8);
            }
        }
        memset(a, 0x11, nv * 4);
        memset(b, 0x22, nv * 4);
        tr->to_float_ref(src, a, nv);
        tr->to_float_avx2(src, b, nv);
        int d = first_diff(a, b, nv);
        CHECKF(d < 0, "%s avx2 != ref at value %d: 0x%08x vs 0x%08x", tr->name, d, d < 0 ? 0 : f2u(b[d]),
               d < 0 ? 0 : f2u(a[d]));
        if (tr->block_size == 1) { /* shorter lengths: every tail size */
            for (size_t m = 0; m < 20; m++) {
                memset(b, 0x33, 80);
                tr->to_float_avx2(src, b, m);
                CHECKF(memcmp(a, b, m * 4) == 0 && f2u(b[m]) == 0x33333333u, "%s avx2 n=%zu", tr->name, m);
            }
        }
        free(buf);
        free(a);
        free(b);
    }
    printf("simd: %d AVX2 twins bit-exact with _ref\n", twins);
    CHECK(twins >= 5);
    /* dispatch picks the twin, and FM_NO_SIMD turns it off */
    const fm_qtype_traits *q4k = fm_qtype_get(FM_Q_Q4_K);
    unsetenv("FM_NO_SIMD");
    CHECK(fm_qtype_dequant_fn(FM_Q_Q4_K) == q4k->to_float_avx2);
    setenv("FM_NO_SIMD", "1", 1);
    CHECK(fm_qtype_dequant_fn(FM_Q_Q4_K) == q4k->to_float_ref);
    unsetenv("FM_NO_SIMD");
    CHECK(fm_qtype_dequant_fn(FM_Q_Q4_1) == fm_qtype_get(FM_Q_Q4_1)->to_float_ref);
}

/* A few values computed by hand, so a fixture/oracle bug cannot hide a
 * layout bug: Q8_0, Q4_K and MXFP4. */
static void test_hand_values(void)
{
    fm_block_q8_0 q8 = {.d = 0x3800 /* 0.5 */};
    for (int j = 0; j < 32; j++) q8.qs[j] = (int8_t)(j - 16);
    float y[256];
    CHECK(fm_dequantize(FM_Q_Q8_0, &q8, sizeof q8, y, 32, NULL) == FM_OK);
    CHECK(y[0] == -8.0f && y[31] == 7.5f && y[16] == 0.0f);

    fm_block_q4_K q4 = {.d = 0x3c00 /* 1 */, .dmin = 0x4000 /* 2 */};
    /* sub-block 0: sc 3, min 1; sub-block 1: sc 5, min 2; sub-block 4: sc 1|(1<<4)=17 via high bits */
    q4.scales[0] = 3, q4.scales[4] = 1, q4.scales[1] = 5, q4.scales[5] = 2;
    q4.scales[8] = 0x01; /* sub-block 4: sc low nibble 1; high bits from scales[0]>>6 = 0 */
    q4.scales[0] |= 0x40; /* sc[4] |= 1<<4 -> 17 */
    for (int l = 0; l < 128; l++) q4.qs[l] = (uint8_t)((l % 16) | 0x70);
    CHECK(fm_dequantize(FM_Q_Q4_K, &q4, sizeof q4, y, 256, NULL) == FM_OK);
    CHECK(y[0] == 3.0f * 0 - 2.0f);    /* (sc0=3) * 0 - dmin*1 */
    CHECK(y[5] == 3.0f * 5 - 2.0f);
    CHECK(y[32] == 5.0f * 7 - 4.0f);   /* high nibble 7, sc1=5, min 2 */
    CHECK(y[128] == 17.0f * 0 - 0.0f); /* sub-block 4: sc 17, min 0 */
    CHECK(y[129] == 17.0f * 1);

    fm_block_mxfp4 mx = {.e = 128}; /* 2^(128-128) = 1 */
    for (int j = 0; j < 16; j++) mx.qs[j] = (uint8_t)(j | (15 - j) << 4);
    CHECK(fm_dequantize(FM_Q_MXFP4, &mx, sizeof mx, y, 32, NULL) == FM_OK);
    CHECK(y[7] == 12.0f && y[15] == -12.0f && y[16] == -12.0f && y[9] == -1.0f);
}

int main(void)
{
    test_traits();
    test_affine_traits();
    test_nbytes_and_errors();
    test_conversions();
    test_hand_values();
    test_fixtures();
    test_simd_twins();
    T_DONE();
}
