/* Real model against llama.cpp (issue 6): models/gemma-3-270m-q4_k_m.gguf.
 * Reference: tests/fixtures/gemma3-270m/ref.json (tests/gen/gen_gemma_ref.py,
 * llama-cpp-python 0.3.36, F32 KV cache, flash attention off).
 *
 *  - Greedy: for each of 5 prompts (llama.cpp's token ids), 64 greedy tokens;
 *    identical ids (hence identical text) for at least 4 of the 5 prompts.
 *  - Teacher forcing: the top-1 token at every position of the reference
 *    sequences (741 positions) agrees with llama.cpp's for at least 99%.
 *    Where they differ, llama.cpp's own top-2 margin is printed: fm's
 *    FM_KERNEL_Q8 mode reproduces ggml's activation rounding, so a
 *    disagreement is expected only at near-ties.
 *  - fm's tokenizer gives llama.cpp's prompt ids.
 * Without the model file the test fails, unless FM_NO_MODEL=1. Under the
 * sanitizer build (SAN=1) it runs one prompt (the code one) and the first
 * 128 forced positions. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/tokmeta.h"
#include "runtime/forward.h"
#include "runtime/kernels.h"
#include "runtime/model.h"
#include "runtime/pool.h"
#include "runtime/sample.h"
#include "runtime/tokenizer.h"
#include "t.h"

/* Issue 6's acceptance criteria. With vec_dot-order kernels alone fm gave
 * 3/5 and 0.973: llama.cpp repacks Q4_K (CPU_REPACK gemv/gemm) and runs Q6_K
 * batches through its tiled path, in other float orders. With those orders
 * reproduced (runtime/kernels_repack.h) fm measured 5/5 and 741/741. For
 * scale: llama.cpp's own one-token path
 * agrees with its batched path on 718/741 top-1 tokens (0.969), and with
 * repacking off on 656/741 (0.885). */
#define MIN_IDENTICAL 4
#define MIN_AGREEMENT 0.99
#define MODEL "models/gemma-3-270m-q4_k_m.gguf"
#define REF "tests/fixtures/gemma3-270m/ref.json"

static int32_t *ids_of(const json_t *a, size_t *n)
{
    *n = json_array_size(a);
    int32_t *v = calloc(*n ? *n : 1, sizeof *v);
    for (size_t i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return v;
}

int main(void)
{
    if (access(MODEL, R_OK) != 0) {
        const char *nm = getenv("FM_NO_MODEL");
        if (nm && strcmp(nm, "1") == 0) {
            printf("test_gemma_ref: %s absent, skipped (FM_NO_MODEL=1)\n", MODEL);
            return 0;
        }
        fprintf(stderr, "test_gemma_ref: %s absent (get it with sh scripts/get-gemma.sh, or set FM_NO_MODEL=1)\n", MODEL);
        return 1;
    }
    const char *san = getenv("SAN");
    const bool quick = san && strcmp(san, "1") == 0;
    json_error_t je;
    json_t *ref = json_load_file(REF, 0, &je);
    CHECKF(ref != NULL, "%s: %s", REF, je.text);
    if (!ref) T_DONE();
    fm_error e = {0};
    fm_model *m = NULL;
    fm_pool *pool = NULL;
    CHECK(fm_pool_new(&pool, 2, &e) == FM_OK);
    fm_err r = fm_model_open(&m, MODEL, NULL, &e);
    CHECKF(r == FM_OK, "%s", e.msg);
    if (r) T_DONE();
    fm_kernel_set_mode(FM_KERNEL_Q8);
    const uint32_t V = m->config.n_vocab;
    CHECK(V == (uint32_t)json_integer_value(json_object_get(ref, "n_vocab")));

    /* tokenizer */
    fm_tok *tok = NULL;
    {
        json_t *tj = NULL;
        char *js = NULL;
        size_t len = 0;
        r = fm_tokmeta_from_gguf(m->gguf, &tj, &e);
        if (!r) r = fm_tokmeta_dump(tj, &js, &len, &e);
        if (!r) r = fm_tok_load(&tok, js, len, &e);
        CHECKF(r == FM_OK, "tokenizer: %s", e.msg);
        json_decref(tj);
        free(js);
    }

    /* greedy */
    const json_t *greedy = json_object_get(ref, "greedy");
    size_t n_prompts = quick ? 1 : json_array_size(greedy);
    int identical = 0;
    for (size_t pi = 0; pi < n_prompts; pi++) {
        const size_t p = quick ? 2 : pi; /* quick: the code prompt */
        const json_t *g = json_array_get(greedy, p);
        size_t np, ng;
        int32_t *pid = ids_of(json_object_get(g, "prompt_ids"), &np);
        int32_t *want = ids_of(json_object_get(g, "ids"), &ng);
        if (tok) {
            const char *text = json_string_value(json_object_get(g, "prompt"));
            int32_t *mine = NULL;
            size_t nm = 0;
            CHECK(fm_tok_encode(tok, text, strlen(text), true, true, &mine, &nm, &e) == FM_OK);
            CHECKF(nm == np && (np == 0 || memcmp(mine, pid, np * sizeof *pid) == 0),
                   "prompt %zu: fm tokenization differs from llama.cpp", p);
            free(mine);
        }
        fm_state *s = NULL;
        CHECK(fm_state_new(&s, m, pool, (uint32_t)(np + ng + 1), 64, &e) == FM_OK);
        r = fm_forward(s, pid, (uint32_t)np, NULL, &e);
        CHECKF(r == FM_OK, "%s", e.msg);
        size_t same = 0;
        bool diverged = false;
        for (size_t i = 0; i < ng && !r; i++) {
            int32_t t = fm_argmax(s->logits, V);
            if (!diverged && t == want[i]) same++;
            else if (!diverged) {
                diverged = true;
                printf("prompt %zu: diverges at generated token %zu (fm %d, llama.cpp %d)\n", p, i, t, want[i]);
            }
            /* follow fm's own choice: this is fm's greedy text */
            r = fm_forward(s, &t, 1, NULL, &e);
        }
        if (same == ng) identical++;
        printf("prompt %zu: %zu/%zu greedy tokens identical to llama.cpp\n", p, same, ng);
        fm_state_free(s);
        free(pid);
        free(want);
    }
    printf("greedy: %d/%zu prompts identical to llama.cpp\n", identical, n_prompts);
    if (quick) CHECK(identical >= 1);
    else CHECKF(identical >= MIN_IDENTICAL, "only %d of %zu prompts gave llama.cpp's greedy text", identical, n_prompts);

    /* teacher forcing */
    const json_t *forced = json_object_get(ref, "forced");
    const uint32_t CH = 16;
    float *lg = malloc((size_t)CH * V * sizeof *lg);
    size_t n_pos = 0, agree = 0, limit = quick ? 128 : SIZE_MAX;
    for (size_t f = 0; f < json_array_size(forced) && n_pos < limit; f++) {
        const json_t *F = json_array_get(forced, f);
        size_t n;
        int32_t *ids = ids_of(json_object_get(F, "ids"), &n);
        const json_t *top = json_object_get(F, "top1"), *mar = json_object_get(F, "margin");
        fm_state *s = NULL;
        CHECK(fm_state_new(&s, m, pool, (uint32_t)n, 64, &e) == FM_OK);
        for (size_t i = 0; i < n && n_pos < limit; i += CH) {
            uint32_t k = (uint32_t)(n - i < CH ? n - i : CH);
            r = fm_forward(s, ids + i, k, lg, &e);
            CHECKF(r == FM_OK, "%s", e.msg);
            if (r) break;
            for (uint32_t j = 0; j < k && n_pos < limit; j++) {
                int32_t t = fm_argmax(lg + (size_t)j * V, V);
                int32_t w = (int32_t)json_integer_value(json_array_get(top, i + j));
                n_pos++;
                if (t == w) agree++;
                else
                    printf("forced %zu position %zu: fm %d, llama.cpp %d (llama.cpp top-2 margin %.4f)\n", f, i + j,
                           t, w, json_number_value(json_array_get(mar, i + j)));
            }
        }
        fm_state_free(s);
        free(ids);
    }
    double rate = n_pos ? (double)agree / (double)n_pos : 0;
    printf("teacher-forced top-1 agreement: %zu/%zu = %.4f\n", agree, n_pos, rate);
    CHECK(n_pos >= (quick ? 128u : 512u));
    CHECKF(rate >= MIN_AGREEMENT, "top-1 agreement %.4f < %.2f", rate, MIN_AGREEMENT);

    free(lg);
    fm_tok_free(tok);
    fm_model_close(m);
    fm_pool_free(pool);
    json_decref(ref);
    T_DONE();
}
