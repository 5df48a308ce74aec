/* fm tokenizer: loads the canonical tokenizer JSON (specs/tokenizer.md) that
 * a bundle stores and encodes/decodes text exactly as llama.cpp does for the
 * supported families:
 *   - "spm": SentencePiece-style BPE over the whole text with byte fallback
 *     (<0xNN> tokens), ' ' escaped as U+2581, optional space prefix
 *     (gemma/gemma3, llama 1/2, mistral/mixtral).
 *   - "bpe": byte-level BPE (GPT-2 byte-to-codepoint map) after a
 *     pre-tokenizer chosen by "pre": "qwen2" (qwen2, qwen2moe, qwen3,
 *     qwen3moe), "llama-bpe" (llama 3), "gpt-2", "qwen35".
 * Special tokens are split out first, like llama.cpp's tokenizer_st_partition:
 * user-defined tokens always, control/unknown tokens only with parse_special.
 *
 * Lifecycle: fm_tok_load -> encode/decode (thread-safe: const) -> fm_tok_free.
 * Library code: never prints, never exits; errors through fm_error. */
#ifndef FM_TOKENIZER_H
#define FM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/err.h"

#define FM_TOK_FORMAT_VERSION 1
#define FM_TOK_MAX_VOCAB (1u << 24)    /* tokens (T3) */
#define FM_TOK_MAX_TOKEN_LEN 65536u    /* bytes in one token text (T3) */
#define FM_TOK_MAX_JSON (256ull << 20) /* canonical JSON text bytes, as bundle B13 (T1) */
#define FM_TOK_MAX_MERGES (1u << 26)   /* (T7) */
#define FM_TOK_MAX_SPECIAL_BYTES (64u << 20) /* text of all special tokens together (T10) */
#define FM_TOK_MAX_TEXT (256ull << 20) /* bytes of text given to encode */

typedef struct fm_tok fm_tok;

/* GGUF token types (tokenizer.ggml.token_type), used as is (T4). */
enum {
    FM_TOKT_UNDEFINED = 0,
    FM_TOKT_NORMAL = 1,
    FM_TOKT_UNKNOWN = 2,
    FM_TOKT_CONTROL = 3,
    FM_TOKT_USER_DEFINED = 4,
    FM_TOKT_UNUSED = 5,
    FM_TOKT_BYTE = 6,
};

/* Parses and validates canonical tokenizer JSON text (need not be
 * NUL-terminated). Loading a 262k-token vocabulary takes well under 100 ms. */
fm_err fm_tok_load(fm_tok **out, const char *json, size_t len, fm_error *e);
void fm_tok_free(fm_tok *t);

uint32_t fm_tok_n_vocab(const fm_tok *t);
/* "spm" or "bpe"; the pre-tokenizer name as stored ("default" for spm). */
const char *fm_tok_model(const fm_tok *t);
const char *fm_tok_pre(const fm_tok *t);
/* Special ids, -1 when the tokenizer has none. */
int32_t fm_tok_bos(const fm_tok *t);
int32_t fm_tok_eos(const fm_tok *t);
int32_t fm_tok_eot(const fm_tok *t);
int32_t fm_tok_unk(const fm_tok *t);
int32_t fm_tok_pad(const fm_tok *t);
bool fm_tok_add_bos(const fm_tok *t);
bool fm_tok_add_eos(const fm_tok *t);
/* End of generation: eos, eot, eom and the other tokens the canonical JSON
 * lists in "eog". */
bool fm_tok_is_eog(const fm_tok *t, int32_t id);
/* Token text as stored (not decoded); NULL for an id out of range. */
const char *fm_tok_text(const fm_tok *t, int32_t id, size_t *len);
int fm_tok_type(const fm_tok *t, int32_t id);
/* Id of the token whose text is exactly s[0..len), or -1. */
int32_t fm_tok_lookup(const fm_tok *t, const char *s, size_t len);

/* Encodes text[0..len) into *ids (malloc'd, caller frees; NULL when *n_ids
 * is 0). add_special: add BOS/EOS as the tokenizer's add_bos/add_eos say.
 * parse_special: also split out control tokens written in the text (e.g.
 * "<start_of_turn>"); user-defined tokens are always split out. Identical to
 * llama.cpp's llama_tokenize(text, add_special, parse_special). */
fm_err fm_tok_encode(const fm_tok *t, const char *text, size_t len, bool add_special,
                     bool parse_special, int32_t **ids, size_t *n_ids, fm_error *e);

/* The pre-tokenizer split alone (model "bpe"; for tests and tools): the
 * byte offsets where the words of text[0..len) end, no special-token split.
 * *ends is malloc'd; FM_E_ARG for an "spm" tokenizer. */
fm_err fm_tok_pretokenize(const fm_tok *t, const char *text, size_t len, size_t **ends, size_t *n_ends,
                          fm_error *e);

/* The bytes token id stands for, as llama.cpp's token_to_piece with lstrip 0:
 * byte tokens give their byte, byte-level BPE tokens their original bytes,
 * spm tokens their text with U+2581 turned back into ' '. Control and
 * unknown tokens give their text when special is true, nothing otherwise.
 * Writes min(n, cap) bytes to buf and returns n (no NUL is added); 0 for an
 * id out of range. A piece is at most fm_tok_max_piece(t) bytes. */
size_t fm_tok_piece(const fm_tok *t, int32_t id, char *buf, size_t cap, bool special);
size_t fm_tok_max_piece(const fm_tok *t);

enum {
    FM_TOK_DECODE_SPECIAL = 1,     /* render control tokens (fm_tok_piece special) */
    FM_TOK_DECODE_STRIP_SPACE = 2, /* drop one leading ' ' of the first piece */
};
/* Concatenated pieces of ids[0..n) into *out (malloc'd, NUL-terminated;
 * *len excludes the NUL). The bytes may be invalid UTF-8 when the ids are
 * (e.g. a lone byte token). */
fm_err fm_tok_decode(const fm_tok *t, const int32_t *ids, size_t n, int flags, char **out,
                     size_t *len, fm_error *e);

/* Streaming detokenizer: pieces in, bytes out, holding back an incomplete
 * UTF-8 sequence at the end (up to 3 bytes) until the next piece completes
 * it, so a terminal never sees half a character. The concatenated output of
 * fm_tok_stream_push calls and a final fm_tok_stream_flush equals
 * fm_tok_decode of the same ids (invalid bytes pass through unchanged). */
typedef struct fm_tok_stream {
    unsigned char pend[4];
    unsigned n_pend;
    int flags;    /* FM_TOK_DECODE_* */
    bool started; /* for FM_TOK_DECODE_STRIP_SPACE */
} fm_tok_stream;

void fm_tok_stream_init(fm_tok_stream *s, int flags);
/* Writes up to fm_tok_max_piece(t) + 3 bytes to buf (cap must be at least
 * that, else FM_E_ARG) and sets *n_out. */
fm_err fm_tok_stream_push(const fm_tok *t, fm_tok_stream *s, int32_t id, char *buf, size_t cap,
                          size_t *n_out, fm_error *e);
/* Emits the held-back bytes (at most 3; buf needs 4 bytes). */
size_t fm_tok_stream_flush(fm_tok_stream *s, char *buf);

/* ---- chat templates (no Jinja: the known families written in C) ---- */

typedef enum fm_chat_family {
    FM_CHAT_UNKNOWN = 0,
    FM_CHAT_CHATML,            /* <|im_start|>role\n...<|im_end|>\n  (qwen) */
    FM_CHAT_GEMMA,             /* <start_of_turn>user\n...<end_of_turn>\n */
    FM_CHAT_LLAMA3,            /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    FM_CHAT_LLAMA2,            /* [INST] ... [/INST] */
    FM_CHAT_LLAMA2_SYS,        /* with <<SYS>> */
    FM_CHAT_LLAMA2_SYS_BOS,    /* <s>[INST] inside the history */
    FM_CHAT_LLAMA2_SYS_STRIP,  /* messages trimmed */
    FM_CHAT_MISTRAL_V1,
    FM_CHAT_MISTRAL_V3,
    FM_CHAT_MISTRAL_V3_TEKKEN,
    FM_CHAT_MISTRAL_V7,
    FM_CHAT_MISTRAL_V7_TEKKEN,
} fm_chat_family;

typedef struct fm_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content; /* NUL-terminated */
} fm_chat_msg;

/* Family of a Jinja template string, decided by the same substring tests as
 * llama.cpp's llm_chat_detect_template (only the families above);
 * FM_CHAT_UNKNOWN otherwise. */
fm_chat_family fm_chat_detect(const char *tmpl);
const char *fm_chat_family_name(fm_chat_family f);
/* The tokenizer's family: from its stored chat_template, or when it has none
 * from its vocabulary (<start_of_turn> -> gemma, <|im_start|> -> chatml,
 * <|start_header_id|> -> llama3, [INST] -> llama2). */
fm_chat_family fm_tok_chat_family(const fm_tok *t);
/* The prompt text for msgs[0..n) (without BOS: encode it with add_special and
 * parse_special true), identical to llama.cpp's llm_chat_apply_template for
 * the family. add_assistant: end with the assistant turn's header. */
fm_err fm_chat_apply(fm_chat_family f, const fm_chat_msg *msgs, size_t n, bool add_assistant,
                     char **out, size_t *len, fm_error *e);

#endif
