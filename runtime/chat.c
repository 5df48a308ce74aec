/* Chat templates of the known families, written as llama.cpp's
 * llm_chat_detect_template / llm_chat_apply_template write them (no Jinja
 * engine): specs/tokenizer.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/strbuf.h"
#include "runtime/tokenizer.h"

/* ------------------------------------------------------------------------ */
/* chat templates (llama.cpp llm_chat_detect_template / apply_template)     */
/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    fm_chat_family f;
} k_chat_names[] = {
    {"chatml", FM_CHAT_CHATML},
    {"llama2", FM_CHAT_LLAMA2},
    {"llama2-sys", FM_CHAT_LLAMA2_SYS},
    {"llama2-sys-bos", FM_CHAT_LLAMA2_SYS_BOS},
    {"llama2-sys-strip", FM_CHAT_LLAMA2_SYS_STRIP},
    {"mistral-v1", FM_CHAT_MISTRAL_V1},
    {"mistral-v3", FM_CHAT_MISTRAL_V3},
    {"mistral-v3-tekken", FM_CHAT_MISTRAL_V3_TEKKEN},
    {"mistral-v7", FM_CHAT_MISTRAL_V7},
    {"mistral-v7-tekken", FM_CHAT_MISTRAL_V7_TEKKEN},
    {"gemma", FM_CHAT_GEMMA},
    {"llama3", FM_CHAT_LLAMA3},
};

const char *fm_chat_family_name(fm_chat_family f)
{
    for (size_t i = 0; i < sizeof k_chat_names / sizeof *k_chat_names; i++)
        if (k_chat_names[i].f == f) return k_chat_names[i].name;
    return "unknown";
}

fm_chat_family fm_chat_detect(const char *tmpl)
{
    if (!tmpl) return FM_CHAT_UNKNOWN;
    for (size_t i = 0; i < sizeof k_chat_names / sizeof *k_chat_names; i++)
        if (!strcmp(tmpl, k_chat_names[i].name)) return k_chat_names[i].f;
#define HAS(s) (strstr(tmpl, (s)) != NULL)
    if (HAS("<|im_start|>")) {
        if (HAS("<|im_sep|>") || HAS("<end_of_utterance>")) return FM_CHAT_UNKNOWN; /* phi4, smolvlm */
        return FM_CHAT_CHATML;
    }
    if (!strncmp(tmpl, "mistral", 7) || HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]")) return FM_CHAT_MISTRAL_V7;
        if (HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]")) {
            if (HAS(" [INST]")) return FM_CHAT_MISTRAL_V1;
            if (HAS("\"[INST]\"")) return FM_CHAT_MISTRAL_V3_TEKKEN;
            return FM_CHAT_MISTRAL_V3;
        }
        if (HAS("content.strip()")) return FM_CHAT_LLAMA2_SYS_STRIP;
        if (HAS("bos_token + '[INST]")) return FM_CHAT_LLAMA2_SYS_BOS;
        if (HAS("<<SYS>>")) return FM_CHAT_LLAMA2_SYS;
        return FM_CHAT_LLAMA2;
    }
    /* families llama.cpp tests before gemma and llama3: not supported */
    if ((HAS("<|assistant|>") && HAS("<|end|>")) || HAS("[gMASK]<sop>") ||
        (HAS("<|assistant|>") && HAS("<|user|>")) ||
        (HAS("<|{{ item['role'] }}|>") && HAS("<|begin_of_image|>")) ||
        (HAS("<|user|>") && HAS("<|endoftext|>")) || HAS("bos_token + message['role']"))
        return FM_CHAT_UNKNOWN;
    if (HAS("<start_of_turn>")) return FM_CHAT_GEMMA;
    if (HAS("'\\n\\nAssistant: ' + eos_token") || HAS("GPT4 Correct ") || (HAS("USER: ") && HAS("ASSISTANT: ")) ||
        (HAS("### Instruction:") && HAS("<|EOT|>")) || (HAS("<|START_OF_TURN_TOKEN|>") && HAS("<|USER_TOKEN|>")))
        return FM_CHAT_UNKNOWN;
    if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) return FM_CHAT_LLAMA3;
#undef HAS
    return FM_CHAT_UNKNOWN;
}


/* trim() of llama-chat.cpp: isspace in the C locale */
static bool c_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static bool sb_trim(sbuf *b, const char *s)
{
    size_t a = 0, z = strlen(s);
    while (a < z && c_space((unsigned char)s[a])) a++;
    while (z > a && c_space((unsigned char)s[z - 1])) z--;
    return sb_add(b, s + a, z - a);
}

fm_err fm_chat_apply(fm_chat_family f, const fm_chat_msg *msgs, size_t n, bool add_assistant, char **out,
                     size_t *len, fm_error *e)
{
    *out = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content) return fm_error_set(e, FM_E_ARG, "chat: message %zu has no role or content", i);
    sbuf b = {0};
    bool ok = sb_reserve(&b, 64);
    switch (f) {
    case FM_CHAT_CHATML:
        for (size_t i = 0; ok && i < n; i++)
            ok = sb_adds(&b, "<|im_start|>") && sb_adds(&b, msgs[i].role) && sb_adds(&b, "\n") &&
                 sb_adds(&b, msgs[i].content) && sb_adds(&b, "<|im_end|>\n");
        if (ok && add_assistant) ok = sb_adds(&b, "<|im_start|>assistant\n");
        break;
    case FM_CHAT_MISTRAL_V7:
    case FM_CHAT_MISTRAL_V7_TEKKEN: {
        const char *sp = f == FM_CHAT_MISTRAL_V7 ? " " : "";
        for (size_t i = 0; ok && i < n; i++) {
            const char *r = msgs[i].role, *c = msgs[i].content;
            if (!strcmp(r, "system"))
                ok = sb_adds(&b, "[SYSTEM_PROMPT]") && sb_adds(&b, sp) && sb_adds(&b, c) && sb_adds(&b, "[/SYSTEM_PROMPT]");
            else if (!strcmp(r, "user"))
                ok = sb_adds(&b, "[INST]") && sb_adds(&b, sp) && sb_adds(&b, c) && sb_adds(&b, "[/INST]");
            else
                ok = sb_adds(&b, sp) && sb_adds(&b, c) && sb_adds(&b, "</s>");
        }
        break;
    }
    case FM_CHAT_MISTRAL_V1:
    case FM_CHAT_MISTRAL_V3:
    case FM_CHAT_MISTRAL_V3_TEKKEN: {
        const char *lead = f == FM_CHAT_MISTRAL_V1 ? " " : "";
        const char *trail = f == FM_CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
        bool trim_asst = f == FM_CHAT_MISTRAL_V3;
        bool inside = false;
        for (size_t i = 0; ok && i < n; i++) {
            if (!inside) {
                ok = sb_adds(&b, lead) && sb_adds(&b, "[INST]") && sb_adds(&b, trail);
                inside = true;
            }
            const char *r = msgs[i].role, *c = msgs[i].content;
            if (!strcmp(r, "system")) {
                ok = ok && sb_adds(&b, c) && sb_adds(&b, "\n\n");
            } else if (!strcmp(r, "user")) {
                ok = ok && sb_adds(&b, c) && sb_adds(&b, lead) && sb_adds(&b, "[/INST]");
            } else {
                ok = ok && sb_adds(&b, trail) && (trim_asst ? sb_trim(&b, c) : sb_adds(&b, c)) && sb_adds(&b, "</s>");
                inside = false;
            }
        }
        break;
    }
    case FM_CHAT_LLAMA2:
    case FM_CHAT_LLAMA2_SYS:
    case FM_CHAT_LLAMA2_SYS_BOS:
    case FM_CHAT_LLAMA2_SYS_STRIP: {
        bool sys = f != FM_CHAT_LLAMA2;
        bool bos_inside = f == FM_CHAT_LLAMA2_SYS_BOS;
        bool strip = f == FM_CHAT_LLAMA2_SYS_STRIP;
        bool inside = true;
        ok = ok && sb_adds(&b, "[INST] ");
        for (size_t i = 0; ok && i < n; i++) {
            const char *r = msgs[i].role;
            sbuf c = {0};
            ok = strip ? sb_trim(&c, msgs[i].content) : sb_adds(&c, msgs[i].content);
            if (ok && !inside) {
                inside = true;
                ok = sb_adds(&b, bos_inside ? "<s>[INST] " : "[INST] ");
            }
            if (ok) {
                if (!strcmp(r, "system")) {
                    if (sys) ok = sb_adds(&b, "<<SYS>>\n") && sb_adds(&b, c.s) && sb_adds(&b, "\n<</SYS>>\n\n");
                    else ok = sb_adds(&b, c.s) && sb_adds(&b, "\n");
                } else if (!strcmp(r, "user")) {
                    ok = sb_adds(&b, c.s) && sb_adds(&b, " [/INST]");
                } else {
                    ok = sb_adds(&b, c.s) && sb_adds(&b, "</s>");
                    inside = false;
                }
            }
            free(c.s);
        }
        break;
    }
    case FM_CHAT_GEMMA: {
        sbuf sysp = {0};
        ok = ok && sb_reserve(&sysp, 1);
        if (ok) sysp.s[0] = 0;
        for (size_t i = 0; ok && i < n; i++) {
            const char *r = msgs[i].role;
            if (!strcmp(r, "system")) {
                ok = sb_trim(&sysp, msgs[i].content);
                continue;
            }
            const char *role = !strcmp(r, "assistant") ? "model" : r;
            ok = sb_adds(&b, "<start_of_turn>") && sb_adds(&b, role) && sb_adds(&b, "\n");
            if (ok && sysp.n && strcmp(role, "model")) {
                ok = sb_add(&b, sysp.s, sysp.n) && sb_adds(&b, "\n\n");
                sysp.n = 0;
            }
            ok = ok && sb_trim(&b, msgs[i].content) && sb_adds(&b, "<end_of_turn>\n");
        }
        free(sysp.s);
        if (ok && add_assistant) ok = sb_adds(&b, "<start_of_turn>model\n");
        break;
    }
    case FM_CHAT_LLAMA3:
        for (size_t i = 0; ok && i < n; i++)
            ok = sb_adds(&b, "<|start_header_id|>") && sb_adds(&b, msgs[i].role) &&
                 sb_adds(&b, "<|end_header_id|>\n\n") && sb_trim(&b, msgs[i].content) && sb_adds(&b, "<|eot_id|>");
        if (ok && add_assistant) ok = sb_adds(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    default:
        free(b.s);
        return fm_error_set(e, FM_E_UNSUPPORTED, "chat: unknown chat template family (supported: chatml, gemma, "
                                                 "llama3, llama2 and mistral variants)");
    }
    if (!ok) {
        free(b.s);
        return fm_error_set(e, FM_E_NOMEM, "chat: out of memory");
    }
    *out = b.s;
    *len = b.n;
    return FM_OK;
}
