/* formats base layer: errors, checked arithmetic, LE reads, UTF-8, SHA-256, atomic files. */
#include "formats/err.h"
#include "formats/file.h"
#include "formats/sha256.h"
#include "formats/util.h"
#include "t.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
    /* pinned codes */
    CHECK(FM_E_IO == 1 && FM_E_FORMAT == 3 && FM_E_CHECKSUM == 8 && FM_E_INTERNAL == 12);
    for (int i = 0; i < FM_E_COUNT_; i++) CHECK(fm_strerror((fm_err)i) != NULL);
    CHECK(strcmp(fm_strerror((fm_err)999), "unknown error") == 0);

    fm_error e;
    CHECK(fm_error_set(&e, FM_E_RANGE, "x=%d", 3) == FM_E_RANGE && strcmp(e.msg, "x=3") == 0);
    fm_error_prefix(&e, "file %s", "a");
    CHECK(strcmp(e.msg, "file a: x=3") == 0);

    uint64_t r;
    CHECK(!fm_mul_u64(UINT64_MAX / 2 + 1, 2, &r));
    CHECK(fm_mul_u64(1u << 20, 1u << 20, &r) && r == 1ull << 40);
    CHECK(!fm_add_u64(UINT64_MAX, 1, &r));
    CHECK(fm_align_up(16385, 16384, &r) && r == 32768);
    CHECK(!fm_align_up(UINT64_MAX - 3, 4096, &r));
    CHECK(fm_range_ok(10, 5, 15) && !fm_range_ok(10, 6, 15) && !fm_range_ok(UINT64_MAX, 2, UINT64_MAX));

    uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 0x80};
    CHECK(fm_rd_u16le(b) == 0x0201 && fm_rd_u32le(b) == 0x04030201u &&
          fm_rd_u64le(b) == 0x8007060504030201ull);

    CHECK(fm_utf8_valid("h\xc3\xa9llo", 6));
    CHECK(!fm_utf8_valid("\xc0\xaf", 2));         /* overlong */
    CHECK(!fm_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    CHECK(!fm_utf8_valid("\xe2\x82", 2));         /* truncated */
    CHECK(fm_utf8_valid("\xf0\x9f\x98\x80", 4));  /* emoji */

    uint8_t d[32];
    char hex[65];
    CHECK(fm_sha256_buf("abc", 3, d, &e) == FM_OK);
    fm_sha256_hex(d, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    uint8_t d2[32];
    CHECK(fm_sha256_from_hex(hex, d2) && memcmp(d, d2, 32) == 0);
    CHECK(!fm_sha256_from_hex("zz", d2));

    /* atomic output: nothing under the final name before commit */
    char path[] = "/tmp/fm-test-base-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    fm_outfile o;
    CHECK(fm_outfile_open(&o, path, false, &e) == FM_E_EXISTS);
    unlink(path);
    CHECK(fm_outfile_open(&o, path, false, &e) == FM_OK);
    CHECK(fm_outfile_write(&o, "hello", 5, &e) == FM_OK);
    CHECK(fm_outfile_pad_to(&o, 8192, &e) == FM_OK);
    struct stat st;
    CHECK(stat(path, &st) != 0);
    CHECK(fm_outfile_commit(&o, &e) == FM_OK);
    CHECK(stat(path, &st) == 0 && st.st_size == 8192);
    fm_file f;
    char got[6] = {0};
    CHECK(fm_file_open(&f, path, 0, &e) == FM_OK);
    CHECK(fm_file_pread(&f, got, 5, 0, &e) == FM_OK && strcmp(got, "hello") == 0);
    CHECK(fm_file_pread(&f, got, 5, 8190, &e) == FM_E_FORMAT);
    CHECK(fm_file_pread(&f, got, 5, UINT64_MAX - 1, &e) == FM_E_FORMAT);
    fm_file_close(&f);
    CHECK(fm_outfile_open(&o, path, true, &e) == FM_OK);
    fm_outfile_abort(&o);
    CHECK(stat(path, &st) == 0 && st.st_size == 8192); /* aborted rewrite left it alone */
    unlink(path);
    T_DONE();
}
