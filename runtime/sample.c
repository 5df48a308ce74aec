/* Sampling (see sample.h). */
#include "runtime/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    int32_t id;
    float logit;
} cand;

struct fm_sampler {
    fm_sampler_params p;
    uint32_t n_vocab;
    cand *c;            /* n_vocab */
    int32_t *hist;      /* ring of the last repeat_last_n tokens */
    uint32_t n_hist, hist_pos;
    uint64_t rng;
};

fm_sampler_params fm_sampler_default_params(void)
{
    fm_sampler_params p = {0.8f, 40, 0.95f, 0.05f, 1.0f, 64, 0};
    return p;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) with 53 bits */
static double uniform(uint64_t *s) { return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0); }

fm_err fm_sampler_new(fm_sampler **out, const fm_sampler_params *p, uint32_t n_vocab, fm_error *e)
{
    *out = NULL;
    if (n_vocab == 0) return fm_error_set(e, FM_E_ARG, "sampler: n_vocab is 0");
    if (p->repeat_last_n < 0) return fm_error_set(e, FM_E_ARG, "sampler: repeat_last_n < 0");
    if (!(p->repeat_penalty > 0)) return fm_error_set(e, FM_E_ARG, "sampler: repeat_penalty must be > 0");
    fm_sampler *s = calloc(1, sizeof *s);
    if (!s) return fm_error_set(e, FM_E_NOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->c = malloc((size_t)n_vocab * sizeof *s->c);
    s->hist = calloc(p->repeat_last_n > 0 ? (size_t)p->repeat_last_n : 1, sizeof *s->hist);
    if (!s->c || !s->hist) {
        fm_sampler_free(s);
        return fm_error_set(e, FM_E_NOMEM, "sampler: out of memory");
    }
    s->rng = p->seed;
    *out = s;
    return FM_OK;
}

void fm_sampler_free(fm_sampler *s)
{
    if (!s) return;
    free(s->c);
    free(s->hist);
    free(s);
}

void fm_sampler_reset(fm_sampler *s)
{
    s->n_hist = s->hist_pos = 0;
    s->rng = s->p.seed;
}

void fm_sampler_accept(fm_sampler *s, int32_t tok)
{
    if (s->p.repeat_last_n <= 0) return;
    s->hist[s->hist_pos] = tok;
    s->hist_pos = (s->hist_pos + 1) % (uint32_t)s->p.repeat_last_n;
    if (s->n_hist < (uint32_t)s->p.repeat_last_n) s->n_hist++;
}

int32_t fm_argmax(const float *x, uint32_t n)
{
    int32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = (int32_t)i;
    return best;
}

static int cmp_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Moves the k best candidates to the front, sorted (heap selection). */
static void top_k_sorted(cand *c, uint32_t n, uint32_t k)
{
    if (k >= n) {
        qsort(c, n, sizeof *c, cmp_desc);
        return;
    }
    /* min-heap of size k over c[0..k) */
#define WORSE(a, b) (cmp_desc(&(a), &(b)) > 0)
    for (uint32_t i = k / 2; i-- > 0;) {
        uint32_t j = i;
        for (;;) {
            uint32_t l = 2 * j + 1, r = l + 1, m = j;
            if (l < k && WORSE(c[l], c[m])) m = l;
            if (r < k && WORSE(c[r], c[m])) m = r;
            if (m == j) break;
            cand t = c[j]; c[j] = c[m]; c[m] = t;
            j = m;
        }
    }
    for (uint32_t i = k; i < n; i++) {
        if (!WORSE(c[0], c[i])) continue; /* c[i] is not better than the worst kept */
        c[0] = c[i];
        uint32_t j = 0;
        for (;;) {
            uint32_t l = 2 * j + 1, r = l + 1, m = j;
            if (l < k && WORSE(c[l], c[m])) m = l;
            if (r < k && WORSE(c[r], c[m])) m = r;
            if (m == j) break;
            cand t = c[j]; c[j] = c[m]; c[m] = t;
            j = m;
        }
    }
#undef WORSE
    qsort(c, k, sizeof *c, cmp_desc);
}

int32_t fm_sampler_sample(fm_sampler *s, const float *logits)
{
    const uint32_t V = s->n_vocab;
    cand *c = s->c;
    for (uint32_t i = 0; i < V; i++) {
        c[i].id = (int32_t)i;
        c[i].logit = logits[i];
    }
    if (s->p.repeat_penalty != 1.0f && s->n_hist) {
        /* each distinct recent token once */
        for (uint32_t h = 0; h < s->n_hist; h++) {
            int32_t t = s->hist[h];
            if (t < 0 || (uint32_t)t >= V) continue;
            bool seen = false;
            for (uint32_t g = 0; g < h && !seen; g++) seen = s->hist[g] == t;
            if (seen) continue;
            if (c[t].logit > 0) c[t].logit /= s->p.repeat_penalty;
            else c[t].logit *= s->p.repeat_penalty;
        }
    }
    if (s->p.temp <= 0.0f) {
        uint32_t best = 0;
        for (uint32_t i = 1; i < V; i++)
            if (c[i].logit > c[best].logit) best = i;
        return c[best].id;
    }
    uint32_t n = V;
    if (s->p.top_k > 0 && (uint32_t)s->p.top_k < n) n = (uint32_t)s->p.top_k;
    top_k_sorted(c, V, n);
    /* probabilities at temperature 1 for top-p, as llama.cpp's chain does */
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) sum += exp((double)c[i].logit - c[0].logit);
    if (s->p.top_p < 1.0f) {
        double cum = 0;
        uint32_t keep = n;
        for (uint32_t i = 0; i < n; i++) {
            cum += exp((double)c[i].logit - c[0].logit) / sum;
            if (cum >= s->p.top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (s->p.min_p > 0.0f) {
        const float thr = c[0].logit + logf(s->p.min_p);
        uint32_t keep = 1;
        while (keep < n && c[keep].logit >= thr) keep++;
        n = keep;
    }
    /* temperature, then draw */
    double tot = 0;
    for (uint32_t i = 0; i < n; i++) tot += exp(((double)c[i].logit - c[0].logit) / s->p.temp);
    double u = uniform(&s->rng) * tot, acc = 0;
    for (uint32_t i = 0; i < n; i++) {
        acc += exp(((double)c[i].logit - c[0].logit) / s->p.temp);
        if (u < acc) return c[i].id;
    }
    return c[n - 1].id;
}
