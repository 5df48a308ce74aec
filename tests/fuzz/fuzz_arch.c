/* libFuzzer target for the architecture layer on top of the GGUF reader:
 * the input becomes a file (a memfd, or a temp file), which is opened as
 * GGUF; its canonical hparams are built (fm_arch_hparams_from_gguf) and, when
 * that succeeds, the tensor set is validated against the table and every
 * symbolic dimension is evaluated. Any crash, sanitizer report or leak is a
 * bug; an error must come with a message.
 *
 * Build: make fuzz, or the replay binary build/tests/fuzz_arch-replay that
 * make builds for CI (corpus: tests/fuzz/corpus/arch, made by
 * tests/gen/gen_arch_fixtures.py, plus the GGUF corpora). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "formats/arch.h"
#include "formats/gguf.h"
#include "tests/fuzz/fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *fuzz_path = fuzz_input_file("fuzz_arch", data, size);
    if (!fuzz_path) return 0;
    fm_gguf *g = NULL;
    fm_error e;
    if (fm_gguf_open(&g, fuzz_path, &e) != FM_OK) return 0;
    json_t *hp = NULL;
    e.msg[0] = 0;
    fm_err r = fm_arch_hparams_from_gguf(g, &hp, &e);
    if (r != FM_OK) {
        if (hp != NULL || e.msg[0] == '\0') abort();
    } else {
        const fm_arch *a = fm_arch_find(json_string_value(json_object_get(hp, "name")));
        if (!a) abort();
        /* finalize is idempotent on its own output */
        char *d1 = json_dumps(hp, JSON_SORT_KEYS);
        if (fm_arch_hparams_finalize(a, hp, &e) != FM_OK) abort();
        char *d2 = json_dumps(hp, JSON_SORT_KEYS);
        if (!d1 || !d2 || strcmp(d1, d2) != 0) abort();
        free(d1);
        free(d2);
        e.msg[0] = 0;
        if (fm_arch_check_gguf(a, hp, g, &e) != FM_OK && e.msg[0] == '\0') abort();
        for (int d = FM_D_NONE; d <= FM_D_ROPE_HALF; d++) {
            uint64_t v;
            (void)fm_arch_dim(hp, (fm_dim)d, &v, NULL);
        }
        uint32_t n_layer = 0;
        fm_arch_hp_u32(hp, "n_layer", &n_layer, NULL);
        for (uint32_t il = 0; il < n_layer && il < 64; il++) (void)fm_arch_layer_is_swa(hp, il);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            uint32_t layer;
            const fm_arch_tensor *t = fm_arch_match(a, g->tensors[i].name.s, &layer);
            if (t) {
                uint32_t nd;
                uint64_t ne[3];
                (void)fm_arch_tensor_applies(t, hp);
                (void)fm_arch_tensor_shape(t, hp, &nd, ne, NULL);
            }
        }
    }
    json_decref(hp);
    fm_gguf_close(g);
    return 0;
}
