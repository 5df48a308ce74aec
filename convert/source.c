/* Model source dispatch and shared helpers (see source.h). */
#include "convert/source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/file.h"
#include "formats/quant.h"
#include "formats/util.h"

fm_err fm_source_open(fm_source **out, const char *path, fm_error *e)
{
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return fm_error_set(e, errno == ENOENT ? FM_E_NOTFOUND : FM_E_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return fm_source_open_hf(out, path, e);
    fm_file f = FM_FILE_INIT;
    fm_err rc = fm_file_open(&f, path, 0, e);
    if (rc) return rc;
    uint8_t head[4] = {0};
    size_t n = f.size < 4 ? (size_t)f.size : 4;
    rc = fm_file_pread(&f, head, n, 0, e);
    fm_file_close(&f);
    if (rc) return rc;
    if (n == 4 && memcmp(head, "GGUF", 4) == 0) return fm_source_open_gguf(out, path, e);
    return fm_error_set(e, FM_E_FORMAT,
                        "%s: not a GGUF file (magic \"GGUF\") nor a Hugging Face model directory "
                        "(config.json + .safetensors)",
                        path);
}

void fm_source_close(fm_source *s)
{
    if (!s) return;
    if (s->ops && s->ops->close) s->ops->close(s);
    for (size_t i = 0; i < s->n_tensors; i++) free(s->tensors[i].name);
    free(s->tensors);
    for (size_t i = 0; i < s->n_files; i++) free(s->files[i].path);
    free(s->files);
    json_decref(s->hparams);
    free(s->path);
    free(s);
}

fm_source_kind fm_source_kind_of(const fm_source *s) { return s->kind; }
const char *fm_source_path(const fm_source *s) { return s->path; }
const fm_arch *fm_source_arch(const fm_source *s) { return s->arch; }
const json_t *fm_source_hparams(const fm_source *s) { return s->hparams; }
size_t fm_source_n_tensors(const fm_source *s) { return s->n_tensors; }
size_t fm_source_n_files(const fm_source *s) { return s->n_files; }

const fm_source_tensor *fm_source_tensor_at(const fm_source *s, size_t i)
{
    return i < s->n_tensors ? &s->tensors[i] : NULL;
}

const fm_source_file *fm_source_file_at(const fm_source *s, size_t i)
{
    return i < s->n_files ? &s->files[i] : NULL;
}

const fm_source_tensor *fm_source_find(const fm_source *s, const char *name)
{
    for (size_t i = 0; i < s->n_tensors; i++)
        if (strcmp(s->tensors[i].name, name) == 0) return &s->tensors[i];
    return NULL;
}

static fm_err check_rows(const fm_source_tensor *t, int64_t expert, uint64_t row0, uint64_t nrows, fm_error *e)
{
    uint64_t lim = t->n_rows;
    if (expert >= 0) {
        if (!t->expert || (uint64_t)expert >= t->ne[2])
            return fm_error_set(e, FM_E_ARG, "%s: no expert %lld", t->name, (long long)expert);
        lim = t->ne[1];
    }
    if (!fm_range_ok(row0, nrows, lim))
        return fm_error_set(e, FM_E_ARG, "%s: rows %llu+%llu beyond %llu", t->name, (unsigned long long)row0,
                            (unsigned long long)nrows, (unsigned long long)lim);
    return FM_OK;
}

fm_err fm_source_read_rows(const fm_source *s, const fm_source_tensor *t, int64_t expert, uint64_t row0,
                           uint64_t nrows, void *buf, fm_error *e)
{
    fm_err rc = check_rows(t, expert, row0, nrows, e);
    if (rc) return rc;
    if (nrows == 0) return FM_OK;
    return s->ops->read_rows(s, t, expert, row0, nrows, buf, e);
}

fm_err fm_source_read_rows_f32(const fm_source *s, const fm_source_tensor *t, int64_t expert, uint64_t row0,
                               uint64_t nrows, float *out, void *scratch, fm_error *e)
{
    fm_err rc = check_rows(t, expert, row0, nrows, e);
    if (rc) return rc;
    uint64_t bytes, n;
    if (!fm_mul_u64(nrows, t->row_bytes, &bytes) || !fm_mul_u64(nrows, t->ne[0], &n) || bytes > SIZE_MAX)
        return fm_error_set(e, FM_E_RANGE, "%s: %llu rows overflow", t->name, (unsigned long long)nrows);
    if (t->qtype == FM_Q_F32) return s->ops->read_rows(s, t, expert, row0, nrows, out, e);
    void *buf = scratch ? scratch : malloc(bytes ? (size_t)bytes : 1);
    if (!buf) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory (%llu bytes)", t->name, (unsigned long long)bytes);
    rc = s->ops->read_rows(s, t, expert, row0, nrows, buf, e);
    if (!rc) {
        rc = fm_dequantize(t->qtype, buf, (size_t)bytes, out, n, e);
        if (rc) fm_error_prefix(e, "%s: tensor %s", s->path, t->name);
    }
    if (!scratch) free(buf);
    return rc;
}

void fm_source_drop_rows(const fm_source *s, const fm_source_tensor *t, int64_t expert, uint64_t row0,
                         uint64_t nrows)
{
    if (s->ops->drop_rows && check_rows(t, expert, row0, nrows, NULL) == FM_OK)
        s->ops->drop_rows(s, t, expert, row0, nrows);
}

fm_err fm_source_set_direct(fm_source *s, fm_error *e)
{
    if (!s->ops->set_direct) return fm_error_set(e, FM_E_UNSUPPORTED, "%s: no direct I/O", s->path);
    return s->ops->set_direct(s, e);
}

fm_err fm_source_tokenizer(const fm_source *s, json_t **out, fm_error *e)
{
    *out = NULL;
    if (!s->ops->tokenizer)
        return fm_error_set(e, FM_E_UNSUPPORTED, "%s: tokenizer extraction is not available", s->path);
    return s->ops->tokenizer(s, out, e);
}

fm_source *fm_source_alloc(fm_source_kind kind, const char *path)
{
    fm_source *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->kind = kind;
    if (!(s->path = strdup(path))) {
        free(s);
        return NULL;
    }
    return s;
}

fm_err fm_source_add_file(fm_source *s, const char *path, fm_error *e)
{
    struct stat sb;
    if (stat(path, &sb) != 0) return fm_error_set(e, FM_E_IO, "%s: %s", path, strerror(errno));
    fm_source_file *nf = realloc(s->files, (s->n_files + 1) * sizeof *nf);
    if (!nf) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    s->files = nf;
    if (!(nf[s->n_files].path = strdup(path))) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    nf[s->n_files].size = (uint64_t)sb.st_size;
    s->n_files++;
    return FM_OK;
}

fm_err fm_source_tensor_sizes(fm_source_tensor *t, const char *what, fm_error *e)
{
    uint64_t n = 1;
    for (int i = 0; i < 4; i++) {
        if (t->ne[i] == 0) t->ne[i] = 1;
        if (!fm_mul_u64(n, t->ne[i], &n))
            return fm_error_set(e, FM_E_RANGE, "%s: tensor %s: element count overflows", what, t->name);
    }
    t->n_elems = n;
    t->n_rows = n / t->ne[0];
    fm_err rc = fm_qtype_nbytes(t->qtype, t->ne[0], &t->row_bytes, e);
    if (rc) return fm_error_prefix(e, "%s: tensor %s: row of %llu values", what, t->name, (unsigned long long)t->ne[0]);
    if (!fm_mul_u64(t->row_bytes, t->n_rows, &t->size))
        return fm_error_set(e, FM_E_RANGE, "%s: tensor %s: byte size overflows", what, t->name);
    return FM_OK;
}
