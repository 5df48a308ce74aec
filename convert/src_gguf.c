/* GGUF model source: tensors are presented exactly as stored (same GGML
 * type, same bytes), so a bundle made from them dequantizes identically. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/job.h"
#include "convert/source.h"
#include "formats/gguf.h"
#include "formats/quant.h"
#include "formats/util.h"

#if defined(__has_include)
#if __has_include("formats/tokmeta.h")
#include "formats/tokmeta.h"
#define FM_HAVE_TOKMETA 1
#endif
#endif

typedef struct gguf_impl {
    fm_gguf *g;
    fm_file direct; /* O_DIRECT descriptor, fd -1 when not in use */
} gguf_impl;

static gguf_impl *I(const fm_source *s) { return s->impl; }
static fm_gguf *G(const fm_source *s) { return I(s)->g; }

static fm_err gguf_read_rows(const fm_source *s, const fm_source_tensor *t, int64_t expert, uint64_t row0,
                             uint64_t nrows, void *buf, fm_error *e)
{
    const fm_gguf_tensor *gt = &G(s)->tensors[t->impl_index];
    if (expert >= 0) row0 += (uint64_t)expert * t->ne[1];
    fm_err rc;
    if (I(s)->direct.fd >= 0) /* rows are in range (checked by the caller, tensor range at open) */
        rc = fm_pread_direct(I(s)->direct.fd, G(s)->file.size, buf, (size_t)(nrows * t->row_bytes),
                             gt->abs_offset + row0 * t->row_bytes, s->path, e);
    else
        rc = fm_gguf_read_rows(G(s), gt, row0, nrows, buf, e);
    if (rc) fm_error_prefix(e, "%s", s->path);
    return rc;
}

static void gguf_drop_rows(const fm_source *s, const fm_source_tensor *t, int64_t expert, uint64_t row0,
                           uint64_t nrows)
{
    const fm_gguf_tensor *gt = &G(s)->tensors[t->impl_index];
    if (I(s)->direct.fd >= 0) return; /* nothing cached */
    if (expert >= 0) row0 += (uint64_t)expert * t->ne[1];
    uint64_t off = gt->abs_offset + row0 * t->row_bytes, len = nrows * t->row_bytes;
    /* whole pages only: a neighbour's partial page may still be wanted */
    uint64_t a = (off + 4095) & ~4095ull, b = (off + len) & ~4095ull;
    if (b > a) (void)posix_fadvise(G(s)->file.fd, (off_t)a, (off_t)(b - a), POSIX_FADV_DONTNEED);
}

static fm_err gguf_tokenizer(const fm_source *s, json_t **out, fm_error *e)
{
#ifdef FM_HAVE_TOKMETA
    return fm_tokmeta_from_gguf(G(s), out, e);
#else
    /* TOKENIZER: formats/tokmeta.h (fm_tokmeta_from_gguf) is not there yet;
     * bundles made by this build carry no tokenizer. */
    *out = NULL;
    return fm_error_set(e, FM_E_UNSUPPORTED, "%s: fm was built without formats/tokmeta", s->path);
#endif
}

static void gguf_close(fm_source *s)
{
    gguf_impl *im = I(s);
    if (!im) return;
    fm_gguf_close(im->g);
    fm_file_close(&im->direct);
    free(im);
    s->impl = NULL;
}

static fm_err gguf_set_direct(fm_source *s, fm_error *e)
{
    if (I(s)->direct.fd >= 0) return FM_OK;
    fm_err rc = fm_file_open(&I(s)->direct, s->path, FM_FILE_DIRECT, e);
    if (rc) return fm_error_set(e, FM_E_UNSUPPORTED, "%s: O_DIRECT refused", s->path);
    return FM_OK;
}

static const fm_source_ops gguf_ops = {gguf_read_rows, gguf_drop_rows, gguf_tokenizer, gguf_close, gguf_set_direct};

fm_err fm_source_open_gguf(fm_source **out, const char *path, fm_error *e)
{
    *out = NULL;
    fm_source *s = fm_source_alloc(FM_SOURCE_GGUF, path);
    if (!s) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    s->ops = &gguf_ops;
    fm_gguf *g = NULL;
    gguf_impl *im = calloc(1, sizeof *im);
    if (!im) {
        fm_source_close(s);
        return fm_error_set(e, FM_E_NOMEM, "out of memory");
    }
    im->direct.fd = -1;
    s->impl = im;
    fm_err rc = fm_gguf_open(&g, path, e);
    if (rc) goto fail;
    im->g = g;
    if ((rc = fm_source_add_file(s, path, e))) goto fail;
    if ((rc = fm_arch_hparams_from_gguf(g, &s->hparams, e))) goto fail;
    s->arch = fm_arch_find(json_string_value(json_object_get(s->hparams, "name")));
    if (!s->arch) {
        rc = fm_error_set(e, FM_E_INTERNAL, "%s: architecture lost", path);
        goto fail;
    }
    if ((rc = fm_arch_check_gguf(s->arch, s->hparams, g, e))) goto fail;
    if (g->n_tensors > SIZE_MAX / sizeof *s->tensors) {
        rc = fm_error_set(e, FM_E_RANGE, "%s: too many tensors", path);
        goto fail;
    }
    s->tensors = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *s->tensors);
    if (!s->tensors) {
        rc = fm_error_set(e, FM_E_NOMEM, "out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const fm_gguf_tensor *gt = &g->tensors[i];
        fm_source_tensor *t = &s->tensors[s->n_tensors];
        if (!(t->name = strdup(gt->name.s))) {
            rc = fm_error_set(e, FM_E_NOMEM, "out of memory");
            goto fail;
        }
        s->n_tensors++;
        t->entry = fm_arch_match(s->arch, gt->name.s, &t->layer); /* non-NULL: checked above */
        if (!t->entry) {
            rc = fm_error_set(e, FM_E_INTERNAL, "%s: tensor %s not in the table", path, gt->name.s);
            goto fail;
        }
        const fm_qtype_traits *tr = fm_qtype_get(gt->type);
        if (!tr || !tr->to_float_ref) {
            rc = fm_error_set(e, FM_E_UNSUPPORTED,
                              "%s: tensor %s: quant type %s (%u) cannot be dequantized by fm, so it "
                              "cannot be converted",
                              path, gt->name.s, tr && tr->name ? tr->name : "unknown", gt->type);
            goto fail;
        }
        t->qtype = gt->type;
        t->n_dims = gt->n_dims;
        for (int k = 0; k < 4; k++) t->ne[k] = gt->ne[k];
        t->expert = (t->entry->flags & FM_T_EXPERT) != 0;
        if (t->expert && gt->n_dims != 3) {
            rc = fm_error_set(e, FM_E_FORMAT, "%s: expert tensor %s has %u dimensions, expected 3", path,
                              gt->name.s, gt->n_dims);
            goto fail;
        }
        t->impl_index = (size_t)i;
        if ((rc = fm_source_tensor_sizes(t, path, e))) goto fail;
        if (t->size != gt->size) {
            rc = fm_error_set(e, FM_E_INTERNAL, "%s: tensor %s: size %llu, GGUF says %llu", path, t->name,
                              (unsigned long long)t->size, (unsigned long long)gt->size);
            goto fail;
        }
    }
    *out = s;
    return FM_OK;
fail:
    fm_source_close(s);
    return rc;
}
