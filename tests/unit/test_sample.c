/* runtime/sample: greedy, temperature, top-k, top-p, min-p, repetition
 * penalty, seeds (issue 6). Frequency checks draw 40000 tokens: a binomial
 * proportion's standard deviation is then <= 0.0025, so +-0.015 is a 6-sigma
 * band (a correct sampler fails it with probability < 1e-8). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/sample.h"
#include "t.h"

#define N_DRAW 40000

static fm_sampler *mk(float temp, int32_t top_k, float top_p, float min_p, float rep, int32_t last_n, uint64_t seed,
                      uint32_t V)
{
    fm_sampler_params p = {temp, top_k, top_p, min_p, rep, last_n, seed};
    fm_sampler *s = NULL;
    fm_error e;
    CHECKF(fm_sampler_new(&s, &p, V, &e) == FM_OK, "%s", e.msg);
    return s;
}

static void freq(fm_sampler *s, const float *lg, uint32_t V, double *out)
{
    for (uint32_t i = 0; i < V; i++) out[i] = 0;
    for (int i = 0; i < N_DRAW; i++) {
        int32_t t = fm_sampler_sample(s, lg);
        if (t >= 0 && (uint32_t)t < V) out[t] += 1.0 / N_DRAW;
    }
}

int main(void)
{
    const float lg[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    double fr[4];

    /* argmax: lowest index on ties */
    const float tie[4] = {1, 3, 3, 2};
    CHECK(fm_argmax(tie, 4) == 1);

    /* greedy: temp 0 is argmax whatever the filters */
    fm_sampler *s = mk(0.0f, 40, 0.9f, 0.05f, 1.0f, 64, 1, 4);
    for (int i = 0; i < 10; i++) CHECK(fm_sampler_sample(s, lg) == 0);
    fm_sampler_free(s);

    /* plain temperature 1: the softmax probabilities */
    s = mk(1.0f, 0, 1.0f, 0.0f, 1.0f, 0, 7, 4);
    freq(s, lg, 4, fr);
    CHECKF(fabs(fr[0] - 0.5) < 0.015 && fabs(fr[1] - 0.3) < 0.015 && fabs(fr[2] - 0.15) < 0.015 &&
               fabs(fr[3] - 0.05) < 0.015,
           "%.3f %.3f %.3f %.3f", fr[0], fr[1], fr[2], fr[3]);
    fm_sampler_free(s);

    /* temperature 0.5 squares the probabilities: .25 .09 .0225 .0025 over .365 */
    s = mk(0.5f, 0, 1.0f, 0.0f, 1.0f, 0, 8, 4);
    freq(s, lg, 4, fr);
    CHECKF(fabs(fr[0] - 0.25 / 0.365) < 0.015 && fabs(fr[1] - 0.09 / 0.365) < 0.015, "%.3f %.3f", fr[0], fr[1]);
    fm_sampler_free(s);

    /* top-k 2: renormalized over the two best: 0.625 0.375 0 0 */
    s = mk(1.0f, 2, 1.0f, 0.0f, 1.0f, 0, 9, 4);
    freq(s, lg, 4, fr);
    CHECKF(fabs(fr[0] - 0.625) < 0.015 && fr[2] == 0 && fr[3] == 0, "%.3f %.3f %.3f", fr[0], fr[2], fr[3]);
    fm_sampler_free(s);

    /* top-p 0.7: the smallest prefix reaching 0.7 is {0, 1}; 0.85 adds 2 */
    s = mk(1.0f, 0, 0.7f, 0.0f, 1.0f, 0, 10, 4);
    freq(s, lg, 4, fr);
    CHECK(fabs(fr[0] - 0.625) < 0.015 && fr[2] == 0 && fr[3] == 0);
    fm_sampler_free(s);
    s = mk(1.0f, 0, 0.85f, 0.0f, 1.0f, 0, 10, 4);
    freq(s, lg, 4, fr);
    CHECK(fr[2] > 0.1 && fr[3] == 0);
    fm_sampler_free(s);

    /* min-p 0.2: keep p >= 0.2 * 0.5 = 0.1: tokens 0, 1, 2 */
    s = mk(1.0f, 0, 1.0f, 0.2f, 1.0f, 0, 11, 4);
    freq(s, lg, 4, fr);
    CHECK(fr[2] > 0.1 && fr[3] == 0);
    fm_sampler_free(s);

    /* repetition penalty: 2 divides a positive logit, multiplies a negative one */
    const float lp[3] = {2.0f, 1.5f, -1.0f};
    s = mk(0.0f, 0, 1.0f, 0.0f, 2.0f, 4, 1, 3);
    CHECK(fm_sampler_sample(s, lp) == 0);
    fm_sampler_accept(s, 0);
    CHECK(fm_sampler_sample(s, lp) == 1); /* 2/2 = 1 < 1.5 */
    fm_sampler_accept(s, 1);
    fm_sampler_accept(s, 1); /* counted once */
    CHECK(fm_sampler_sample(s, lp) == 0); /* 1 vs 0.75 */
    /* the window forgets: 4 other tokens push 0 and 1 out */
    for (int i = 0; i < 4; i++) fm_sampler_accept(s, 2);
    CHECK(fm_sampler_sample(s, lp) == 0);
    fm_sampler_free(s);

    /* same seed, same tokens; another seed, another sequence */
    float flat[64];
    for (int i = 0; i < 64; i++) flat[i] = 0.01f * (float)i;
    fm_sampler *a = mk(1.0f, 0, 1.0f, 0.0f, 1.0f, 0, 42, 64), *b2 = mk(1.0f, 0, 1.0f, 0.0f, 1.0f, 0, 42, 64),
               *c = mk(1.0f, 0, 1.0f, 0.0f, 1.0f, 0, 43, 64);
    int same_ab = 1, same_ac = 1;
    for (int i = 0; i < 100; i++) {
        int32_t x = fm_sampler_sample(a, flat), y = fm_sampler_sample(b2, flat), z = fm_sampler_sample(c, flat);
        same_ab &= x == y;
        same_ac &= x == z;
    }
    CHECK(same_ab && !same_ac);
    fm_sampler_reset(a);
    fm_sampler_reset(b2);
    CHECK(fm_sampler_sample(a, flat) == fm_sampler_sample(b2, flat));
    fm_sampler_free(a);
    fm_sampler_free(b2);
    fm_sampler_free(c);

    /* a large vocabulary with top-k 40 (heap selection) matches a full sort */
    static float big[50000];
    for (int i = 0; i < 50000; i++) big[i] = (float)((i * 7919) % 50000) / 5000.0f;
    s = mk(1.0f, 1, 1.0f, 0.0f, 1.0f, 0, 3, 50000);
    CHECK(fm_sampler_sample(s, big) == fm_argmax(big, 50000));
    fm_sampler_free(s);

    /* bad parameters */
    fm_sampler_params bad = fm_sampler_default_params();
    fm_error e;
    bad.repeat_penalty = 0;
    CHECK(fm_sampler_new(&s, &bad, 10, &e) == FM_E_ARG);
    bad = fm_sampler_default_params();
    CHECK(fm_sampler_new(&s, &bad, 0, &e) == FM_E_ARG);
    T_DONE();
}
