/* The converter library (issue 5): the ordered pipeline, model sources
 * (GGUF and Hugging Face through one interface, with the architecture's
 * layout transformations), the conversion plan's policy, the Q8_0/F16
 * quantizers, the error figures and O_DIRECT reads. Fixtures:
 * tests/fixtures/convert (tests/gen/gen_convert_fixtures.py). The
 * end-to-end checks (bit-exact against gguf-py, HF vs llama.cpp's GGUF) are
 * tests/integration/convert_*.sh and requant.sh. Rules: specs/convert.md
 * (pipeline C8.2, permutation C3.1, norm + 1 C3.2, policy C5, Q8_0 C5.5,
 * refusals C1, direct reads C8.3). */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "convert/job.h"
#include "convert/pipeline.h"
#include "convert/plan.h"
#include "convert/quantize.h"
#include "convert/quantize_impl.h"
#include "convert/source.h"
#include "formats/affine.h"
#include "formats/file.h"
#include "formats/quant.h"
#include "formats/safetensors.h"
#include "formats/util.h"
#include "t.h"

#define FX "tests/fixtures/convert/"

/* ------------------------------------------------------------ pipeline */

typedef struct pctx {
    pthread_mutex_t mu;
    int in_flight, max_in_flight;
    size_t next, fail_prepare, fail_consume;
    int order_ok;
} pctx;

static fm_err p_prepare(void *ctx, size_t i, void **res, fm_error *e)
{
    pctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (++c->in_flight > c->max_in_flight) c->max_in_flight = c->in_flight;
    pthread_mutex_unlock(&c->mu);
    if (i == c->fail_prepare) {
        pthread_mutex_lock(&c->mu);
        c->in_flight--; /* no result to consume or discard */
        pthread_mutex_unlock(&c->mu);
        return fm_error_set(e, FM_E_FORMAT, "prepare %zu failed", i);
    }
    size_t *r = malloc(sizeof *r);
    *r = i * 3;
    *res = r;
    return FM_OK;
}

static fm_err p_consume(void *ctx, size_t i, void *res, fm_error *e)
{
    pctx *c = ctx;
    size_t v = *(size_t *)res;
    free(res);
    pthread_mutex_lock(&c->mu);
    c->in_flight--;
    if (i != c->next || v != i * 3) c->order_ok = 0;
    c->next++;
    pthread_mutex_unlock(&c->mu);
    if (i == c->fail_consume) return fm_error_set(e, FM_E_IO, "consume %zu failed", i);
    return FM_OK;
}

static void p_discard(void *ctx, size_t i, void *res)
{
    (void)i;
    pctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    c->in_flight--;
    pthread_mutex_unlock(&c->mu);
    free(res);
}

static void test_pipeline(void)
{
    fm_pipeline_ops ops = {p_prepare, p_consume, p_discard};
    for (unsigned th = 1; th <= 4; th++) {
        pctx c = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, (size_t)-1, (size_t)-1, 1};
        fm_error e = {0};
        CHECK(fm_pipeline_run(2000, th, 0, &ops, &c, &e) == FM_OK);
        CHECKF(c.order_ok && c.next == 2000, "threads %u: order %d next %zu", th, c.order_ok, c.next);
        /* window = threads + 1: prepared-but-unconsumed results never exceed it */
        CHECKF(c.max_in_flight <= (int)th + 1, "threads %u: %d in flight", th, c.max_in_flight);
        CHECK(c.in_flight == 0);
    }
    pctx c = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 700, (size_t)-1, 1};
    fm_error e = {0};
    CHECK(fm_pipeline_run(2000, 3, 0, &ops, &c, &e) == FM_E_FORMAT);
    CHECK(strstr(e.msg, "prepare 700") != NULL);
    CHECK(c.order_ok && c.next <= 700 && c.in_flight == 0); /* nothing after the failure is consumed; no leak */
    pctx d = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, (size_t)-1, 10, 1};
    CHECK(fm_pipeline_run(2000, 2, 0, &ops, &d, &e) == FM_E_IO && strstr(e.msg, "consume 10"));
    CHECK(d.next == 11 && d.in_flight == 0);
    pctx z = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, (size_t)-1, (size_t)-1, 1};
    CHECK(fm_pipeline_run(0, 2, 0, &ops, &z, &e) == FM_OK && z.next == 0);
}

/* ------------------------------------------------------------ sources */

static float *read_all(const fm_source *s, const fm_source_tensor *t)
{
    float *f = malloc((size_t)t->n_elems * sizeof *f);
    fm_error e = {0};
    if (fm_source_read_rows_f32(s, t, -1, 0, t->n_rows, f, NULL, &e) != FM_OK) {
        fprintf(stderr, "%s: %s\n", t->name, e.msg);
        free(f);
        return NULL;
    }
    return f;
}

/* Every tensor of an HF source equals, bit for bit, the same tensor of the
 * GGUF llama.cpp's converter made of it (f32 models: no rounding anywhere). */
static void test_hf_vs_gguf(const char *name)
{
    char hf[256], gg[256];
    snprintf(hf, sizeof hf, FX "%s", name);
    snprintf(gg, sizeof gg, FX "%s.gguf", name);
    fm_source *a = NULL, *b = NULL;
    fm_error e = {0};
    CHECKF(fm_source_open(&a, hf, &e) == FM_OK, "%s: %s", hf, e.msg);
    CHECKF(fm_source_open(&b, gg, &e) == FM_OK, "%s: %s", gg, e.msg);
    if (!a || !b) goto out;
    CHECK(fm_source_kind_of(a) == FM_SOURCE_HF && fm_source_kind_of(b) == FM_SOURCE_GGUF);
    CHECK(fm_source_arch(a) == fm_source_arch(b));
    CHECKF(fm_source_n_tensors(a) == fm_source_n_tensors(b), "%s: %zu vs %zu tensors", name, fm_source_n_tensors(a),
           fm_source_n_tensors(b));
    size_t same = 0;
    for (size_t i = 0; i < fm_source_n_tensors(a); i++) {
        const fm_source_tensor *ta = fm_source_tensor_at(a, i), *tb = fm_source_find(b, ta->name);
        CHECKF(tb != NULL, "%s: %s not in the GGUF", name, ta->name);
        if (!tb) continue;
        CHECKF(ta->n_elems == tb->n_elems && ta->ne[0] == tb->ne[0] && ta->expert == tb->expert, "%s shape", ta->name);
        float *fa = read_all(a, ta), *fb = read_all(b, tb);
        if (fa && fb && ta->n_elems == tb->n_elems) {
            bool eq = memcmp(fa, fb, (size_t)ta->n_elems * 4) == 0;
            CHECKF(eq, "%s: %s differs between HF and GGUF", name, ta->name);
            same += eq;
        }
        if (ta->expert && fa) { /* per-expert slices are the fused tensor's rows */
            uint64_t per = ta->ne[0] * ta->ne[1];
            float *x = malloc((size_t)per * 4);
            bool ok = true;
            for (uint64_t k = 0; k < ta->ne[2] && ok; k++) {
                ok = fm_source_read_rows_f32(a, ta, (int64_t)k, 0, ta->ne[1], x, NULL, &e) == FM_OK &&
                     memcmp(x, fa + k * per, (size_t)per * 4) == 0;
            }
            CHECKF(ok, "%s: expert slices of %s", name, ta->name);
            free(x);
        }
        free(fa);
        free(fb);
    }
    printf("%s: %zu tensors equal between HF and GGUF\n", name, same);
    /* direct I/O reads the same bytes */
    const fm_source_tensor *t0 = fm_source_tensor_at(a, 0);
    float *before = read_all(a, t0);
    fm_error de = {0};
    if (fm_source_set_direct(a, &de) == FM_OK && fm_source_set_direct(b, &de) == FM_OK) {
        float *after = read_all(a, t0);
        CHECK(before && after && memcmp(before, after, (size_t)t0->n_elems * 4) == 0);
        free(after);
    } else {
        printf("note: O_DIRECT refused here (%s)\n", de.msg);
    }
    free(before);
out:
    fm_source_close(a);
    fm_source_close(b);
}

/* The llama q/k permutation, written the way numpy does it:
 * w.reshape(nh, 2, half, cols).swapaxes(1, 2).reshape(rows, cols), i.e.
 * out[h, i, j] = in[h, j, i] with out shaped (nh, half, 2) and in (nh, 2, half). */
static void test_permutation(void)
{
    fm_source *s = NULL;
    fm_st *st = NULL;
    fm_error e = {0};
    CHECK(fm_source_open(&s, FX "mixtral-f32", &e) == FM_OK);
    CHECK(fm_st_open(&st, FX "mixtral-f32", &e) == FM_OK);
    if (!s || !st) goto out;
    const char *pairs[][2] = {{"blk.1.attn_q.weight", "model.layers.1.self_attn.q_proj.weight"},
                              {"blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight"}};
    uint32_t nh[2] = {4, 2};
    for (int p = 0; p < 2; p++) {
        const fm_source_tensor *t = fm_source_find(s, pairs[p][0]);
        const fm_st_tensor *h = fm_st_find(st, pairs[p][1]);
        CHECK(t && h);
        if (!t || !h) continue;
        uint64_t rows = h->shape[0], cols = h->shape[1], half = rows / nh[p] / 2;
        float *raw = malloc((size_t)h->size), *got = read_all(s, t);
        CHECK(fm_st_read(st, h, raw, &e) == FM_OK);
        size_t bad = 0;
        for (uint64_t hh = 0; hh < nh[p]; hh++)
            for (uint64_t i = 0; i < half; i++)
                for (uint64_t j = 0; j < 2; j++) {
                    uint64_t out_row = (hh * half + i) * 2 + j, in_row = (hh * 2 + j) * half + i;
                    if (memcmp(got + out_row * cols, raw + in_row * cols, (size_t)cols * 4)) bad++;
                }
        CHECKF(bad == 0, "%s: %zu rows not permuted as llama.cpp's converter does", pairs[p][0], bad);
        /* and it is a real permutation: some rows moved */
        CHECK(memcmp(got, raw, (size_t)h->size) != 0);
        free(raw);
        free(got);
    }
out:
    fm_source_close(s);
    fm_st_close(st);
}

/* Gemma: HF norm weights are presented as w + 1 in float32. */
static void test_norm_plus1(void)
{
    fm_source *s = NULL;
    fm_st *st = NULL;
    fm_error e = {0};
    CHECK(fm_source_open(&s, FX "gemma3-f32", &e) == FM_OK);
    CHECK(fm_st_open(&st, FX "gemma3-f32", &e) == FM_OK);
    if (!s || !st) goto out;
    const fm_source_tensor *t = fm_source_find(s, "blk.0.attn_q_norm.weight");
    const fm_st_tensor *h = fm_st_find(st, "model.layers.0.self_attn.q_norm.weight");
    CHECK(t && h && t->qtype == FM_Q_F32);
    if (t && h) {
        float raw[64], *got = read_all(s, t);
        CHECK(h->n_elems <= 64 && fm_st_read(st, h, raw, &e) == FM_OK);
        bool ok = got != NULL;
        for (uint64_t i = 0; ok && i < h->n_elems; i++) ok = got[i] == raw[i] + 1.0f;
        CHECK(ok);
        free(got);
    }
    const fm_source_tensor *q = fm_source_find(s, "blk.0.attn_q.weight");
    CHECK(q && q->qtype == FM_Q_F32); /* not a norm: as stored */
out:
    fm_source_close(s);
    fm_st_close(st);
}

static void test_bad_sources(void)
{
    struct {
        const char *path;
        fm_err want;
        const char *msg;
    } c[] = {
        {FX "bad/arch-rwkv6.gguf", FM_E_UNSUPPORTED, "rwkv6"},
        {FX "bad/qtype-q8_1.gguf", FM_E_UNSUPPORTED, "Q8_1"},
        {FX "bad/experts-disagree.gguf", FM_E_FORMAT, "ffn_gate_inp"},
        {FX "bad/dtype-f64", FM_E_UNSUPPORTED, "F64"},
        {FX "REFERENCE.tsv", FM_E_FORMAT, "not a GGUF"},
        {FX "no-such-model", FM_E_NOTFOUND, "no-such-model"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        fm_source *s = NULL;
        fm_error e = {0};
        fm_err rc = fm_source_open(&s, c[i].path, &e);
        CHECKF(rc == c[i].want && strstr(e.msg, c[i].msg) && !s, "%s: %d %s", c[i].path, (int)rc, e.msg);
        fm_source_close(s);
    }
    fm_source *s = NULL;
    fm_error e = {0};
    CHECK(fm_source_open(&s, FX "bad/tiny-qwen3moe.gguf", &e) == FM_OK); /* the control case */
    fm_source_close(s);
}

/* ------------------------------------------------------------ plan */

static void test_plan(void)
{
    fm_plan_opts o = {FM_DENSE_Q8, FM_EXPERTS_Q2, 64, false};
    uint32_t q;
    fm_error e = {0};
    /* dense float -> Q8_0; quantized dense stays (no double quantization) */
    CHECK(fm_plan_qtype(&o, "t", FM_Q_BF16, false, false, 2, 64, &q, &e) == FM_OK && q == FM_Q_Q8_0);
    CHECK(fm_plan_qtype(&o, "t", FM_Q_Q4_K, false, false, 2, 256, &q, &e) == FM_OK && q == FM_Q_Q4_K);
    CHECK(fm_plan_qtype(&o, "t", FM_Q_F32, false, false, 2, 48, &q, &e) == FM_OK && q == FM_Q_F32); /* 48 % 32 */
    /* NO_QUANT and 1-D stay float; widened to F32 from HF */
    CHECK(fm_plan_qtype(&o, "t", FM_Q_BF16, false, true, 2, 64, &q, &e) == FM_OK && q == FM_Q_BF16);
    CHECK(fm_plan_qtype(&o, "t", FM_Q_BF16, true, false, 1, 64, &q, &e) == FM_OK && q == FM_Q_BF16);
    o.hf_widen = true;
    CHECK(fm_plan_qtype(&o, "t", FM_Q_BF16, false, true, 2, 64, &q, &e) == FM_OK && q == FM_Q_F32);
    CHECK(fm_plan_qtype(&o, "t", FM_Q_F16, false, false, 1, 64, &q, &e) == FM_OK && q == FM_Q_F32);
    /* experts: requantized whatever the source */
    CHECK(fm_plan_qtype(&o, "t", FM_Q_Q4_K, true, false, 2, 256, &q, &e) == FM_OK && q == FM_Q_A2_64);
    CHECK(fm_plan_qtype(&o, "x", FM_Q_F32, true, false, 2, 32, &q, &e) == FM_E_UNSUPPORTED && strstr(e.msg, "x: row"));
    o.experts = FM_EXPERTS_KEEP;
    CHECK(fm_plan_qtype(&o, "t", FM_Q_Q6_K, true, false, 2, 256, &q, &e) == FM_OK && q == FM_Q_Q6_K);
    o.experts = FM_EXPERTS_Q8;
    CHECK(fm_plan_qtype(&o, "t", FM_Q_Q8_0, true, false, 2, 256, &q, &e) == FM_OK && q == FM_Q_Q8_0);
    o.dense = FM_DENSE_F16;
    CHECK(fm_plan_qtype(&o, "t", FM_Q_BF16, false, false, 2, 64, &q, &e) == FM_OK && q == FM_Q_F16);
    o.group = 48;
    o.experts = FM_EXPERTS_Q4;
    CHECK(fm_plan_qtype(&o, "t", FM_Q_F32, true, false, 2, 96, &q, &e) == FM_E_ARG);
    fm_dense_mode dm;
    fm_experts_mode em;
    CHECK(fm_plan_parse_dense("f16", &dm) && dm == FM_DENSE_F16 && !fm_plan_parse_dense("q4", &dm));
    CHECK(fm_plan_parse_experts("q3", &em) && em == FM_EXPERTS_Q3 && !fm_plan_parse_experts("q5", &em));
}

/* ------------------------------------------------------------ quantizers */

static void test_q8_0(void)
{
    /* ggml quantize_row_q8_0_ref: d = amax/127 (f16), q = roundf(x / d_unrounded) */
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = (float)(i - 16) * 0.25f + 0.01f;
    uint8_t blk[34];
    fm_quant_stats st;
    fm_error e = {0};
    CHECK(fm_quant_q8_0(x, 32, blk, &st, &e) == FM_OK);
    float amax = 0;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
    float d = amax / 127.0f, id = 1.0f / d;
    CHECK(fm_rd_u16le(blk) == fm_f32_to_f16(d));
    bool ok = true;
    for (int i = 0; i < 32; i++) ok &= (int8_t)blk[2 + i] == (int8_t)roundf(x[i] * id);
    CHECK(ok);
    CHECK((int8_t)blk[2] == -127); /* x[0] = -3.99 is the amax */
    /* the stats measure the dequantized block */
    float y[32];
    CHECK(fm_dequantize(FM_Q_Q8_0, blk, 34, y, 32, &e) == FM_OK);
    double sse = 0;
    for (int i = 0; i < 32; i++) sse += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
    CHECKF(fabs(sse - st.sse) <= 1e-12 * (sse + 1e-30), "sse %g vs %g", sse, st.sse);
    /* all zeros: d = 0, codes 0 */
    float z[32] = {0};
    CHECK(fm_quant_q8_0(z, 32, blk, NULL, &e) == FM_OK && fm_rd_u16le(blk) == 0 && blk[2] == 0);
    z[5] = NAN;
    CHECK(fm_quant_q8_0(z, 32, blk, NULL, &e) == FM_E_RANGE);
    CHECK(fm_quant_q8_0(x, 31, blk, NULL, &e) == FM_E_ARG);
    /* F16: a finite value beyond binary16 is refused, not turned into inf */
    float big[2] = {1.0f, 70000.0f};
    uint8_t h[4];
    CHECK(fm_quant_f16(big, 2, h, NULL, &e) == FM_E_RANGE && strstr(e.msg, "binary16"));
    CHECK(fm_quant_f16(big, 1, h, &st, &e) == FM_OK && st.sse == 0 && st.n == 1);
}

static void test_plan_convert(void)
{
    enum { R = 8, C = 128 };
    static float x[R * C];
    uint64_t s = 12345;
    for (int i = 0; i < R * C; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.1f;
    }
    static uint8_t out[R * C * 4];
    fm_error e = {0};
    for (unsigned b = 2; b <= 4; b++)
        for (unsigned g = 32; g <= 128; g *= 2) {
            fm_plan_err er;
            memset(&er, 0, sizeof er);
            uint32_t q = (uint32_t)fm_affine_qtype(b, g);
            CHECK(fm_plan_convert(q, x, R, C, out, NULL, &er, &e) == FM_OK);
            CHECK(er.has_minmax && er.st.n == R * C && er.st_minmax.n == R * C);
            CHECKF(er.st.sse <= er.st_minmax.sse, "A%u_%u: search %g > minmax %g", b, g, er.st.sse, er.st_minmax.sse);
            json_t *j = fm_plan_err_json(&er, q, FM_Q_F32);
            CHECK(j && !strcmp(json_string_value(json_object_get(j, "method")), "search"));
            CHECK(!strcmp(json_string_value(json_object_get(j, "source_qtype")), "F32"));
            double mse = json_real_value(json_object_get(j, "mse")), mm = json_real_value(json_object_get(j, "mse_minmax"));
            CHECK(mse > 0 && mse <= mm && json_real_value(json_object_get(j, "rmse")) == sqrt(mse));
            json_decref(j);
        }
    fm_plan_err er;
    memset(&er, 0, sizeof er);
    CHECK(fm_plan_convert(FM_Q_Q8_0, x, R, C, out, NULL, &er, &e) == FM_OK && !er.has_minmax && er.st.sse > 0);
    json_t *j = fm_plan_err_json(&er, FM_Q_Q8_0, FM_Q_BF16);
    CHECK(j && !json_object_get(j, "mse_minmax") && !strcmp(json_string_value(json_object_get(j, "method")), "q8_0"));
    json_decref(j);
    CHECK(fm_plan_convert(FM_Q_Q4_K, x, R, C, out, NULL, &er, &e) == FM_E_UNSUPPORTED);
}

/* The quantizer's AVX2 loops give bit-identical results to the scalar ones
 * (same float operations, double sums in the same lanes). */
static void test_quant_simd(void)
{
    if (!fm_cpu_has_avx2()) {
        printf("note: no AVX2 here: SIMD twin test skipped\n");
        return;
    }
    uint64_t s = 99;
    float x[128], w[128];
    uint8_t q1[128], q2[128];
    size_t bad = 0;
    for (int trial = 0; trial < 2000; trial++) {
        for (int i = 0; i < 128; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            x[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.3) * (trial % 7 + 1) * 0.01f;
            w[i] = (float)((s >> 20) % 1000) / 100.0f;
        }
        unsigned nmax = (1u << (2 + trial % 3)) - 1, g = 32u << (trial % 3);
        float d = fm_f16_to_f32(fm_f32_to_f16((float)(trial % 13) * 0.0007f)), m = fm_f16_to_f32(fm_f32_to_f16(-0.02f));
        const float *ww = trial % 2 ? w : NULL;
        double e1 = fm_qz_assign_ref(x, ww, g, nmax, d, m, q1), e2 = fm_qz_assign_avx2(x, ww, g, nmax, d, m, q2);
        if (e1 != e2 || memcmp(q1, q2, g)) bad++;
        double a[3], b[3];
        float iscale = (float)nmax / 0.05f;
        float mn = x[0];
        for (unsigned i = 1; i < g; i++) mn = fminf(mn, x[i]);
        fm_qz_sweep_ref(x, ww, g, nmax, iscale, mn, a);
        fm_qz_sweep_avx2(x, ww, g, nmax, iscale, mn, b);
        if (memcmp(a, b, sizeof a)) bad++;
    }
    CHECKF(bad == 0, "%zu of 2000 trials differ between the scalar and AVX2 quantizer loops", bad);
}

/* ------------------------------------------------------------ direct reads */

static void test_direct(void)
{
    const char *path = FX "qwen3moe-f32.gguf";
    fm_file f = FM_FILE_INIT, d = FM_FILE_INIT;
    fm_error e = {0};
    CHECK(fm_file_open(&f, path, 0, &e) == FM_OK);
    if (fm_file_open(&d, path, FM_FILE_DIRECT, &e) != FM_OK) {
        printf("note: O_DIRECT refused for %s: direct read test skipped\n", path);
        fm_file_close(&f);
        return;
    }
    static uint8_t a[70000], b[70000 + 8];
    const uint64_t offs[] = {0, 1, 4095, 4096, 12345, f.size - 70000, f.size - 1};
    const size_t lens[] = {70000, 1, 4097, 4096, 8191, 70000, 1};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        memset(a, 0, sizeof a);
        memset(b, 1, sizeof b);
        CHECK(fm_file_pread(&f, a, lens[i], offs[i], &e) == FM_OK);
        CHECKF(fm_pread_direct(d.fd, f.size, b + 3, lens[i], offs[i], path, &e) == FM_OK, "%s", e.msg);
        CHECKF(memcmp(a, b + 3, lens[i]) == 0, "direct read of %zu at %llu", lens[i], (unsigned long long)offs[i]);
    }
    CHECK(fm_pread_direct(d.fd, f.size, b, 2, f.size - 1, path, &e) == FM_E_FORMAT);
    fm_file_close(&f);
    fm_file_close(&d);
}

int main(void)
{
    test_pipeline();
    test_hf_vs_gguf("qwen3moe-f32");
    test_hf_vs_gguf("mixtral-f32");
    test_hf_vs_gguf("gemma3-f32");
    test_hf_vs_gguf("llama-f32");
    test_permutation();
    test_norm_plus1();
    test_bad_sources();
    test_plan();
    test_q8_0();
    test_plan_convert();
    test_quant_simd();
    test_direct();
    T_DONE();
}
