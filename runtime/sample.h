/* Token sampling: repetition penalty, then top-k, top-p, min-p on the
 * logits, then temperature and a draw (llama.cpp's default chain order:
 * penalties -> top_k -> top_p -> min_p -> temperature -> dist). temp <= 0 is
 * greedy (argmax after the penalty). Deterministic for a given seed. */
#ifndef FM_SAMPLE_H
#define FM_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

#include "formats/err.h"

typedef struct fm_sampler_params {
    float temp;            /* <= 0: greedy */
    int32_t top_k;         /* <= 0: off */
    float top_p;           /* >= 1: off */
    float min_p;           /* <= 0: off */
    float repeat_penalty;  /* 1: off; logits of recent tokens: > 0 divided, <= 0 multiplied */
    int32_t repeat_last_n; /* how many recent tokens the penalty looks at (0: off) */
    uint64_t seed;
} fm_sampler_params;

/* llama.cpp's defaults: temp 0.8, top_k 40, top_p 0.95, min_p 0.05,
 * repeat_penalty 1 (off), repeat_last_n 64. */
fm_sampler_params fm_sampler_default_params(void);

typedef struct fm_sampler fm_sampler;

fm_err fm_sampler_new(fm_sampler **out, const fm_sampler_params *p, uint32_t n_vocab, fm_error *e);
void fm_sampler_free(fm_sampler *s);
/* Adds a token to the history the repetition penalty looks at (prompt
 * tokens too, as llama.cpp does). */
void fm_sampler_accept(fm_sampler *s, int32_t tok);
void fm_sampler_reset(fm_sampler *s);
/* Picks a token from n_vocab logits (not modified). */
int32_t fm_sampler_sample(fm_sampler *s, const float *logits);

/* Index of the largest value, the lowest index on ties. */
int32_t fm_argmax(const float *x, uint32_t n);

#endif
