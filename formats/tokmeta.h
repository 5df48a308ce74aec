/* Builds fm's canonical tokenizer JSON (specs/tokenizer.md) from a GGUF's
 * tokenizer.ggml.* metadata or from a Hugging Face model directory, applying
 * llama.cpp's load-time rules (default special ids, add_bos/add_eos defaults,
 * EOT/EOG detection by token text) so that the runtime (runtime/tokenizer.h)
 * needs no model-specific knowledge. The bundle stores the result, serialized
 * with fm_tokmeta_dump. */
#ifndef FM_TOKMETA_H
#define FM_TOKMETA_H

#include <jansson.h>
#include <stddef.h>

#include "formats/err.h"
#include "formats/gguf.h"

/* Pre-tokenizer families the runtime implements (T5). */
enum {
    FM_TOKPRE_NONE = 0, /* unknown name: refused */
    FM_TOKPRE_GPT2 = 1,
    FM_TOKPRE_LLAMA3 = 2,
    FM_TOKPRE_QWEN2 = 3,
    FM_TOKPRE_QWEN35 = 4,
};
/* Family of a GGUF tokenizer.ggml.pre name (llama.cpp's aliases included). */
int fm_tokmeta_pre_family(const char *pre);

/* From tokenizer.ggml.model "llama" (-> "spm") or "gpt2" (-> "bpe", with
 * tokenizer.ggml.pre one of the supported families). *out is a new reference. */
fm_err fm_tokmeta_from_gguf(const fm_gguf *g, json_t **out, fm_error *e);

/* From dir/tokenizer.json (model BPE: byte-level with a known pre-tokenizer
 * Split regex, or SentencePiece-style with byte_fallback), plus, when present,
 * dir/tokenizer_config.json (special tokens, add_bos/add_eos, chat_template),
 * dir/chat_template.jinja, dir/config.json (vocab_size, *_token_id) and
 * dir/generation_config.json (eos_token_id -> eog). */
fm_err fm_tokmeta_from_hf(const char *dir, json_t **out, fm_error *e);

/* Canonical bytes: compact, keys sorted, reals with 9 significant digits
 * (float32 round trip). *out is malloc'd, NUL-terminated. */
fm_err fm_tokmeta_dump(const json_t *tok, char **out, size_t *len, fm_error *e);

#endif
