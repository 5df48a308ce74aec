/* libFuzzer target for the fm bundle reader (specs/bundle.md). An input is
 * written to a scratch file and opened with fm_bundle_open; when it opens,
 * every tensor, expert blob, the tokenizer and the manifest bytes are read
 * (with SHA-256 checks). Invariants the reader promises (B5, B11, B12, B14)
 * are checked with __builtin_trap(). An input starting with '{' is instead
 * taken as manifest JSON and wrapped in a valid shell (superblock with the
 * right SHA-256s, a 64 KiB zero fm/pad member at 5120 for data offsets to
 * point into, the manifest member, end blocks), so that the manifest rules
 * (B8-B14) are fuzzed past the checksums. Uses only formats/ (make fuzz links
 * the formats sources alone). Seeds: the bundle-*.fmb files of tests/corpus. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/bundle.h"
#include "formats/sha256.h"
#include "formats/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void cleanup(void) { unlink(path); }

static void ustar(uint8_t *h, const char *name, uint64_t size)
{
    memset(h, 0, 512);
    memcpy(h, name, strlen(name));
    memcpy(h + 100, "0000644", 8);
    memcpy(h + 108, "0000000", 8);
    memcpy(h + 116, "0000000", 8);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
    memcpy(h + 136, "00000000000", 12);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += h[i];
    snprintf((char *)h + 148, 7, "%06o", sum & 0777777u);
    h[154] = '\0';
    h[155] = ' ';
}

/* Wraps a manifest into a bundle shell; returns malloc'd bytes. */
static uint8_t *shell(const uint8_t *man, size_t len, size_t *out_len)
{
    const uint64_t pad = 65536, moff = 5120 + pad + 512;
    uint64_t mend;
    fm_align_up(moff + len, 512, &mend);
    size_t n = (size_t)mend + 1024;
    uint8_t *f = calloc(1, n);
    if (!f) return NULL;
    ustar(f, FM_BUNDLE_MEMBER_SUPERBLOCK, FM_BUNDLE_SB_SIZE);
    ustar(f + 4608, FM_BUNDLE_MEMBER_PAD, pad);
    ustar(f + moff - 512, FM_BUNDLE_MEMBER_MANIFEST, len);
    memcpy(f + moff, man, len);
    fm_bundle_superblock sb;
    memset(&sb, 0, sizeof sb);
    sb.major = FM_BUNDLE_MAJOR;
    sb.minor = FM_BUNDLE_MINOR;
    sb.alignment = 4096;
    sb.manifest_offset = moff;
    sb.manifest_size = sb.manifest_raw_size = len;
    sb.file_size = n;
    if (fm_sha256_buf(man, len, sb.manifest_sha256, NULL) != FM_OK) {
        free(f);
        return NULL;
    }
    fm_bundle_superblock_encode(&sb, f + FM_BUNDLE_SB_OFFSET);
    *out_len = n;
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/fuzz_bundle_%ld.fmb", (long)getpid());
        atexit(cleanup);
    }
    uint8_t *wrapped = NULL;
    if (size > 0 && data[0] == '{' && size < (1u << 20)) {
        wrapped = shell(data, size, &size);
        if (!wrapped) return 0;
        data = wrapped;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(wrapped);
        return 0;
    }
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    free(wrapped);
    if (fclose(f) != 0 || w != size) return 0;
    fm_bundle *b;
    fm_error e;
    if (fm_bundle_open(&b, path, 0, &e) != FM_OK) return 0;
    uint64_t fs = fm_bundle_file_size(b);
    uint32_t align = fm_bundle_alignment(b);
    if (!fm_is_pow2(align) || align < FM_BUNDLE_MIN_ALIGN || fs != size) __builtin_trap();
    for (uint64_t i = 0; i < fm_bundle_n_tensors(b); i++) {
        const fm_bundle_tensor *t = fm_bundle_tensor_at(b, i);
        if (t->offset % align || !fm_range_ok(t->offset, t->size, fs) || t->n_dims < 1 ||
            t->n_dims > FM_BUNDLE_MAX_DIMS || fm_bundle_find_tensor(b, t->name) != t)
            __builtin_trap();
        void *buf = malloc(t->size ? t->size : 1);
        if (buf) {
            fm_bundle_read_tensor(b, t, buf, true, &e);
            free(buf);
        }
    }
    for (uint32_t l = 0; l < fm_bundle_n_expert_layers(b); l++) {
        const fm_bundle_expert_layer *L = fm_bundle_expert_layer_at(b, l);
        if (fm_bundle_find_expert_layer(b, L->layer) != L || L->n_parts < 1 || L->n_parts > FM_BUNDLE_MAX_PARTS)
            __builtin_trap();
        for (uint32_t p = 0; p < L->n_parts; p++)
            if (!fm_range_ok(L->parts[p].offset, L->parts[p].size, L->blob_size)) __builtin_trap();
        void *buf = malloc(L->blob_size);
        for (uint32_t x = 0; x < L->n_expert && buf; x++) {
            if (L->blobs[x].offset % align || !fm_range_ok(L->blobs[x].offset, L->blob_size, fs)) __builtin_trap();
            fm_bundle_read_expert(b, L, x, buf, true, &e);
        }
        free(buf);
    }
    char *tok;
    size_t tl;
    if (fm_bundle_read_tokenizer(b, &tok, &tl, &e) == FM_OK) free(tok);
    void *m;
    size_t ml;
    if (fm_bundle_read_manifest_bytes(b, &m, &ml, &e) == FM_OK) free(m);
    fm_bundle_close(b);
    return 0;
}
