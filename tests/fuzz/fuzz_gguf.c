/* libFuzzer target for the GGUF reader: the input becomes a file (a memfd,
 * or a temp file where memfd is unavailable), which is opened, walked (every
 * kv value, every getter, every tensor lookup, a row and the whole tensor when
 * small) and closed. Any crash, sanitizer report or leak is a bug.
 *
 * Build: make fuzz (clang -fsanitize=fuzzer,address,undefined), or the replay
 * binary build/tests/fuzz_gguf-replay that make builds for CI. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "tests/fuzz/fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t walk(const fm_gguf_value *v, unsigned depth)
{
    uint64_t h = v->type;
    if (depth > FM_GGUF_MAX_ARRAY_DEPTH + 1) abort(); /* G11 must have held */
    switch (v->type) {
    case FM_GGUF_STRING:
        if (v->v.str.s[v->v.str.len] != '\0') abort();
        for (uint64_t i = 0; i < v->v.str.len; i++) h = h * 31 + (uint8_t)v->v.str.s[i];
        break;
    case FM_GGUF_ARRAY:
        if ((v->v.arr.n == 0) != (v->v.arr.vals == NULL)) abort();
        for (uint64_t i = 0; i < v->v.arr.n; i++) {
            if (v->v.arr.vals[i].type != v->v.arr.type) abort();
            h = h * 31 + walk(&v->v.arr.vals[i], depth + 1);
        }
        break;
    case FM_GGUF_BOOL:
        if (v->v.u64 > 1) abort();
        h += v->v.u64;
        break;
    default: h += v->v.u64; break;
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *fuzz_path = fuzz_input_file("fuzz_gguf", data, size);
    if (!fuzz_path) return 0;
    fm_gguf *g = NULL;
    fm_error e;
    if (fm_gguf_open(&g, fuzz_path, &e) != FM_OK) {
        if (g != NULL || e.msg[0] == '\0') abort();
        return 0;
    }
    volatile uint64_t sink = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const fm_gguf_kv *kv = &g->kv[i];
        if (fm_gguf_find_kv(g, kv->key.s) != kv) abort();
        sink += walk(&kv->val, 1);
        uint64_t u;
        double f;
        const char *s;
        bool b;
        const fm_gguf_value *a;
        if (fm_gguf_get_u64(g, kv->key.s, &u, &e) == FM_OK) sink += u;
        if (fm_gguf_get_f64(g, kv->key.s, &f, &e) == FM_OK) sink += (uint64_t)(f == f);
        if (fm_gguf_get_str(g, kv->key.s, &s, &e) == FM_OK) sink += (uint64_t)strlen(s);
        if (fm_gguf_get_bool(g, kv->key.s, &b, &e) == FM_OK) sink += b;
        if (fm_gguf_get_arr(g, kv->key.s, &a, &e) == FM_OK) sink += a->v.arr.n;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const fm_gguf_tensor *t = &g->tensors[i];
        if (fm_gguf_find_tensor(g, t->name.s) != t) abort();
        if (t->abs_offset + t->size > g->file.size) abort(); /* G23 must have held */
        if (t->size <= (1u << 20)) {
            uint8_t *buf = malloc(t->size ? t->size : 1);
            if (buf) {
                if (fm_gguf_read_tensor(g, t, buf, &e) != FM_OK) abort();
                if (fm_gguf_read_rows(g, t, 0, 1, buf, &e) != FM_OK) abort();
                sink += buf[0];
                free(buf);
            }
        }
        uint64_t rows = t->n_elems / t->ne[0];
        uint8_t one;
        if (fm_gguf_read_rows(g, t, rows, 1, &one, &e) != FM_E_RANGE) abort();
    }
    (void)sink;
    fm_gguf_close(g);
    return 0;
}
