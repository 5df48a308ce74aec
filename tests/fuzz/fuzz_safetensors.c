/* libFuzzer target for the safetensors reader. An input is written to a
 * scratch directory and opened with fm_st_open; every tensor is then looked
 * up, read and converted. An input starting with '{' is instead used as
 * model.safetensors.index.json next to a fixed valid shard "a.safetensors"
 * (tensors "a" and "b"), so the index rules (S19..S27) are fuzzed too.
 * Invariants the reader promises are checked with __builtin_trap(). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/safetensors.h"
#include "formats/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], single[96], indexp[96], shard[96];

static void cleanup(void)
{
    unlink(single);
    unlink(indexp);
    unlink(shard);
    rmdir(dir);
}

static int put(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

static int setup(void)
{
    static int done;
    if (done) return done > 0 ? 0 : -1;
    done = -1;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/fm-fuzz-st-XXXXXX", base);
    if (!mkdtemp(dir)) return -1;
    snprintf(single, sizeof single, "%s/in.safetensors", dir);
    snprintf(indexp, sizeof indexp, "%s/model.safetensors.index.json", dir);
    snprintf(shard, sizeof shard, "%s/a.safetensors", dir);
    static const char hdr[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                              "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[8,10]}}";
    uint8_t buf[8 + sizeof hdr + 10];
    size_t hl = sizeof hdr - 1;
    fm_wr_u64le(buf, hl);
    memcpy(buf + 8, hdr, hl);
    memset(buf + 8 + hl, 0x3f, 10);
    if (put(shard, buf, 8 + hl + 10) != 0) return -1;
    atexit(cleanup);
    done = 1;
    return 0;
}

static void exercise(const fm_st *st)
{
    for (uint64_t i = 0; i < st->n_tensors; i++) {
        const fm_st_tensor *t = &st->tensors[i];
        if (fm_st_find(st, t->name) != t) __builtin_trap();
        if (t->file_index >= st->n_files || t->dtype >= FM_ST_DTYPE_COUNT_ || t->n_dims > FM_ST_MAX_DIMS)
            __builtin_trap();
        if (t->size != t->n_elems * fm_st_dtype_size(t->dtype)) __builtin_trap();
        if (!fm_range_ok(t->offset, t->size, st->files[t->file_index].size)) __builtin_trap();
        if (i > 0 && strcmp(st->tensors[i - 1].name, t->name) >= 0) __builtin_trap();
        if (t->size > (1u << 20)) continue;
        void *raw = malloc(t->size ? t->size : 1);
        float *f = malloc(sizeof *f * (t->n_elems ? t->n_elems : 1));
        fm_error e;
        if (raw && f && fm_st_read(st, t, raw, &e) == FM_OK)
            (void)fm_st_to_f32(t->dtype, raw, t->n_elems, f, &e);
        free(raw);
        free(f);
    }
    for (uint64_t i = 0; i < st->n_meta; i++)
        if (!st->meta[i].key || !st->meta[i].value) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (setup() != 0) return 0;
    int as_index = size > 0 && data[0] == '{';
    const char *path = as_index ? indexp : single;
    if (put(path, data, size) != 0) return 0;
    fm_st *st = NULL;
    fm_error e;
    fm_err rc = fm_st_open(&st, as_index ? dir : single, &e);
    if (rc == FM_OK) {
        if (!st) __builtin_trap();
        exercise(st);
        fm_st_close(st);
    } else {
        if (st || e.code != rc || !memchr(e.msg, '\0', sizeof e.msg)) __builtin_trap();
    }
    unlink(path);
    return 0;
}
