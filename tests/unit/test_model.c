/* runtime/model + runtime/experts: the two weight backends and the simple
 * expert source (issue 6).
 *  - A bundle written (pack/writer.h) from a fixture GGUF, with experts as
 *    per-expert blobs, gives bit-identical logits to the GGUF itself: both
 *    backends hand the forward pass the same bytes.
 *  - The simple expert source: hits/misses/bytes counters, LRU eviction
 *    under a byte budget, pinning, argument errors; an expert's matrices
 *    equal the slices of the fused GGUF tensors.
 *  - Forward with a one-expert cache (constant eviction) still gives the
 *    same logits.
 *  - Loader errors: not a model, unknown architecture. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/file.h"
#include "formats/gguf.h"
#include "formats/tokmeta.h"
#include "pack/writer.h"
#include "runtime/experts.h"
#include "runtime/forward.h"
#include "runtime/model.h"
#include "t.h"

#define DIR "tests/fixtures/arch/"

static char tmpdir[256];

static fm_err write_bundle(const char *gguf_path, const char *out, fm_error *e)
{
    static const char *const fused[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    static const char *const parts[3] = {"gate", "up", "down"};
    fm_gguf *g = NULL;
    json_t *hp = NULL, *tj = NULL;
    fm_bundle_writer *w = NULL;
    char *tok = NULL;
    size_t tok_len = 0;
    void *buf = NULL;
    fm_err r;
    if ((r = fm_gguf_open(&g, gguf_path, e)) || (r = fm_arch_hparams_from_gguf(g, &hp, e))) goto out;
    fm_bundle_writer_opts o;
    fm_bundle_writer_opts_init(&o);
    o.alignment = 4096;
    o.force = true;
    if ((r = fm_bundle_writer_new(&w, out, &o, e)) || (r = fm_bundle_writer_set_arch(w, hp, e))) goto out;
    json_t *prov = json_pack("{s:s}", "source", gguf_path);
    r = fm_bundle_writer_set_provenance(w, prov, e);
    json_decref(prov);
    if (r) goto out;
    if ((r = fm_tokmeta_from_gguf(g, &tj, e)) || (r = fm_tokmeta_dump(tj, &tok, &tok_len, e)) ||
        (r = fm_bundle_writer_add_tokenizer(w, tok, tok_len, e)))
        goto out;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const fm_gguf_tensor *t = &g->tensors[i];
        if (strstr(t->name.s, "_exps.")) continue;
        fm_bundle_writer_tensor d = {0};
        d.name = t->name.s;
        d.qtype = t->type;
        d.n_dims = t->n_dims;
        for (uint32_t k = 0; k < t->n_dims; k++) d.shape[k] = t->ne[t->n_dims - 1 - k];
        free(buf);
        buf = malloc((size_t)t->size);
        if ((r = fm_gguf_read_tensor(g, t, buf, e)) ||
            (r = fm_bundle_writer_add_tensor(w, &d, buf, (size_t)t->size, e)))
            goto out;
    }
    uint32_t n_layer = 0, n_expert = 0;
    fm_arch_hp_u32(hp, "n_layer", &n_layer, NULL);
    fm_arch_hp_u32(hp, "n_expert", &n_expert, NULL);
    for (uint32_t il = 0; il < n_layer && n_expert; il++) {
        const fm_gguf_tensor *t[3];
        fm_bundle_writer_part p[3];
        void *data[3];
        uint64_t slice[3];
        for (int k = 0; k < 3; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%u.%s.weight", il, fused[k]);
            t[k] = fm_gguf_find_tensor(g, nm);
            if (!t[k]) {
                r = fm_error_set(e, FM_E_NOTFOUND, "%s", nm);
                goto out;
            }
            memset(&p[k], 0, sizeof p[k]);
            p[k].name = parts[k];
            p[k].qtype = t[k]->type;
            p[k].n_dims = 2;
            p[k].shape[0] = t[k]->ne[1];
            p[k].shape[1] = t[k]->ne[0];
            slice[k] = t[k]->size / n_expert;
            data[k] = malloc((size_t)t[k]->size);
            fm_gguf_read_tensor(g, t[k], data[k], e);
        }
        if (!(r = fm_bundle_writer_begin_experts(w, il, n_expert, 3, p, e))) {
            for (uint32_t x = 0; x < n_expert && !r; x++) {
                const void *pd[3] = {(char *)data[0] + x * slice[0], (char *)data[1] + x * slice[1],
                                     (char *)data[2] + x * slice[2]};
                r = fm_bundle_writer_add_expert_parts(w, il, x, pd, e);
            }
        }
        for (int k = 0; k < 3; k++) free(data[k]);
        if (r) goto out;
    }
    r = fm_bundle_writer_finish(w, e);
out:
    free(buf);
    free(tok);
    json_decref(tj);
    json_decref(hp);
    fm_bundle_writer_free(w);
    if (g) fm_gguf_close(g);
    return r;
}

static float *run(fm_model *m, fm_pool *pool, const int32_t *ids, uint32_t n)
{
    fm_error e;
    fm_state *s = NULL;
    float *lg = calloc((size_t)n * m->config.n_vocab, sizeof *lg);
    CHECK(fm_state_new(&s, m, pool, n, 16, &e) == FM_OK);
    if (s) CHECKF(fm_forward(s, ids, n, lg, &e) == FM_OK, "%s", e.msg);
    fm_state_free(s);
    return lg;
}

static void test_backends(const char *fixture, fm_pool *pool)
{
    char gpath[256], bpath[512];
    fm_error e = {0};
    snprintf(gpath, sizeof gpath, DIR "%s.gguf", fixture);
    snprintf(bpath, sizeof bpath, "%s/%s.fmb", tmpdir, fixture);
    fm_err r = write_bundle(gpath, bpath, &e);
    CHECKF(r == FM_OK, "%s: write bundle: %s", fixture, e.msg);
    if (r) return;
    fm_model *mg = NULL, *mb = NULL;
    CHECKF(fm_model_open(&mg, gpath, NULL, &e) == FM_OK, "%s", e.msg);
    fm_model_opts o = {0};
    o.verify = true;
    CHECKF(fm_model_open(&mb, bpath, &o, &e) == FM_OK, "%s", e.msg);
    if (!mg || !mb) return;
    CHECK(mg->is_gguf && !mb->is_gguf);
    char *h1 = json_dumps(mg->hparams, JSON_SORT_KEYS), *h2 = json_dumps(mb->hparams, JSON_SORT_KEYS);
    CHECKF(h1 && h2 && strcmp(h1, h2) == 0, "hparams differ:\n%s\n%s", h1, h2);
    free(h1);
    free(h2);
    CHECK(mg->dense_bytes == mb->dense_bytes);
    int32_t ids[24];
    for (int i = 0; i < 24; i++) ids[i] = 3 + (i * 37) % 300;
    float *a = run(mg, pool, ids, 24), *b = run(mb, pool, ids, 24);
    size_t nb = (size_t)24 * mg->config.n_vocab * sizeof(float);
    CHECKF(memcmp(a, b, nb) == 0, "%s: bundle and GGUF logits differ", fixture);
    if (mb->catalog) {
        /* a one-expert cache: evictions all the time, same numbers */
        fm_experts *x = NULL;
        fm_experts_simple_opts so = {1, 1, true};
        CHECK(fm_experts_open_simple(mb->catalog, &so, &x, &e) == FM_OK);
        fm_experts_free(mb->experts);
        mb->experts = x;
        float *c = run(mb, pool, ids, 24);
        CHECK(memcmp(a, c, nb) == 0);
        fm_experts_stats st;
        fm_experts_get_stats(x, &st);
        CHECK(st.misses > mb->config.n_expert && st.cache_bytes <= 2 * mb->catalog->max_blob_size);
        free(c);
    }
    /* dense layers streamed (layer catalog + simple source keeping one
     * layer): R = 0 and 1 resident layers, from the GGUF and the verified
     * bundle: the same bytes */
    for (int src = 0; src < 2; src++) {
        for (uint32_t R = 0; R < 2; R++) {
            fm_model *ms = NULL;
            fm_model_opts od = {0};
            od.defer_dense = true;
            od.verify = src == 1;
            CHECKF(fm_model_open(&ms, src ? bpath : gpath, &od, &e) == FM_OK, "%s", e.msg);
            if (!ms) continue;
            CHECK(!ms->dense_loaded && ms->layer_bytes_total > 0 && ms->layer_bytes[0] > 0);
            CHECK(fm_model_resident_layers_for(ms, 0) == 0);
            CHECK(fm_model_resident_layers_for(ms, ms->layer_bytes[0]) == 1);
            CHECK(fm_model_resident_layers_for(ms, UINT64_MAX) == ms->config.n_layer);
            CHECKF(fm_model_load_dense(ms, R, &e) == FM_OK, "%s", e.msg);
            CHECK(fm_model_load_dense(ms, R, &e) == FM_E_ARG); /* once */
            CHECK(ms->n_resident_layers == R && ms->layers && ms->layer_catalog);
            CHECK(ms->dense_bytes < mg->dense_bytes);
            float *c = run(ms, pool, ids, 24);
            CHECKF(memcmp(a, c, nb) == 0, "%s: %s with %u resident layers: logits differ", fixture,
                   src ? "bundle" : "gguf", R);
            fm_experts_stats st;
            fm_experts_get_stats(ms->layers, &st);
            /* 24 tokens in chunks of 16: every streamed layer acquired twice */
            CHECKF(st.acquired == 2 * (ms->config.n_layer - R), "acquired %llu", (unsigned long long)st.acquired);
            free(c);
            fm_model_close(ms);
        }
    }
    free(a);
    free(b);
    fm_model_close(mg);
    fm_model_close(mb);
    unlink(bpath);
}

static void test_simple_source(void)
{
    fm_error e;
    fm_gguf *g = NULL;
    json_t *hp = NULL;
    fm_expert_catalog *c = NULL;
    CHECK(fm_gguf_open(&g, DIR "qwen3moe.gguf", &e) == FM_OK);
    CHECK(fm_arch_hparams_from_gguf(g, &hp, &e) == FM_OK);
    CHECKF(fm_expert_catalog_from_gguf(g, hp, &c, &e) == FM_OK, "%s", e.msg);
    if (!c) return;
    CHECK(c->n_layer == 2 && c->n_expert == 8 && c->layers[0].present && c->layers[0].n_pieces == 3);
    const fm_expert_layer_desc *L = &c->layers[1];
    CHECK(L->mats[FM_EXPERT_GATE].rows == 16 && L->mats[FM_EXPERT_GATE].cols == 64);
    CHECK(L->mats[FM_EXPERT_DOWN].rows == 64 && L->mats[FM_EXPERT_DOWN].cols == 16);
    const uint64_t blob = L->blob_size;
    fm_experts *x = NULL;
    fm_experts_simple_opts so = {2 * blob, 2, false};
    CHECK(fm_experts_open_simple(c, &so, &x, &e) == FM_OK);
    if (!x) return;
    fm_expert ex[2];
    uint32_t ids[3] = {5, 6, 7};
    CHECK(fm_experts_acquire(x, 1, ids, 1, ex, &e) == FM_OK);
    /* expert 5's down matrix is slice 5 of blk.1.ffn_down_exps.weight */
    const fm_gguf_tensor *t = fm_gguf_find_tensor(g, "blk.1.ffn_down_exps.weight");
    uint8_t *all = malloc((size_t)t->size);
    CHECK(fm_gguf_read_tensor(g, t, all, &e) == FM_OK);
    CHECK(memcmp(ex[0].m[FM_EXPERT_DOWN].data, all + 5 * (t->size / 8), (size_t)(t->size / 8)) == 0);
    free(all);
    fm_experts_release(x, 1, ids, 1);
    CHECK(fm_experts_acquire(x, 1, ids, 1, ex, &e) == FM_OK); /* hit */
    fm_experts_release(x, 1, ids, 1);
    CHECK(fm_experts_acquire(x, 1, ids + 1, 2, ex, &e) == FM_OK); /* 2 misses: 5 is evicted */
    fm_experts_release(x, 1, ids + 1, 2);
    CHECK(fm_experts_acquire(x, 1, ids, 1, ex, &e) == FM_OK); /* miss again */
    fm_experts_release(x, 1, ids, 1);
    fm_experts_stats st;
    fm_experts_get_stats(x, &st);
    CHECKF(st.acquired == 5 && st.hits == 1 && st.misses == 4 && st.bytes_read == 4 * blob, "%llu %llu %llu",
           (unsigned long long)st.acquired, (unsigned long long)st.hits, (unsigned long long)st.misses);
    CHECK(st.cache_bytes <= 2 * ((blob + 63) & ~63ull));
    CHECK(fm_experts_acquire(x, 1, ids, 3, ex, &e) == FM_E_ARG);  /* over n_pinned_max */
    uint32_t bad = 8;
    CHECK(fm_experts_acquire(x, 1, &bad, 1, ex, &e) == FM_E_ARG); /* no such expert */
    CHECK(fm_experts_acquire(x, 2, ids, 1, ex, &e) == FM_E_ARG);  /* no such layer */
    fm_experts_free(x);
    fm_expert_catalog_free(c);
    json_decref(hp);
    fm_gguf_close(g);
}

static void test_errors(void)
{
    fm_error e;
    fm_model *m = NULL;
    char p[512];
    snprintf(p, sizeof p, "%s/junk", tmpdir);
    FILE *f = fopen(p, "wb");
    fputs("not a model at all, just some bytes to read", f);
    fclose(f);
    CHECK(fm_model_open(&m, p, NULL, &e) != FM_OK && m == NULL);
    CHECK(fm_model_open(&m, "tests/fixtures/arch/does-not-exist.gguf", NULL, &e) == FM_E_IO);
    unlink(p);
}

int main(void)
{
    const char *td = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/fm-test-model-XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    fm_pool *pool = NULL;
    fm_error e;
    CHECK(fm_pool_new(&pool, 2, &e) == FM_OK);
    test_backends("qwen3moe", pool);
    test_backends("qwen2moe", pool);
    test_backends("gemma3", pool);
    test_backends("qwen3moe-q4km", pool);
    test_simple_source();
    test_errors();
    fm_pool_free(pool);
    rmdir(tmpdir);
    T_DONE();
}
