#!/usr/bin/env python3
"""Reference token ids for tests/unit/test_tokenizer.c (tests/fixtures/tok/).

Byte-level BPE families (no real vocabulary is available offline): trains a
small byte-level BPE (about 3000 merges) with Hugging Face `tokenizers` for
each pre-tokenizer fm implements, with the exact pre-tokenizer of the family:
    qwen2   Split(Qwen2 regex, Isolated) + ByteLevel, NFC normalizer
            (qwen2 / qwen2moe / qwen3 / qwen3moe)         GGUF pre "qwen2"
    llama3  Split(Llama 3 regex, Isolated) + ByteLevel, ignore_merges
                                                          GGUF pre "llama-bpe"
    gpt2    ByteLevel(use_regex=True)                     GGUF pre "gpt-2"
    spm     SentencePiece-style BPE: byte_fallback, ' ' -> U+2581, no
            pre-tokenizer, merges = every split of every piece (as HF's
            SentencePiece converter writes them)         GGUF model "llama"
and writes, per family:
    <fam>/tokenizer.json, <fam>/tokenizer_config.json   (the HF directory)
    <fam>.gguf         a vocab-only GGUF made from that directory the way
                       convert_hf_to_gguf does (gguf-py SpecialVocab)
    <fam>.<text>.<mode>.llama.ids   llama.cpp's ids (llama-cpp-python,
                       Llama(vocab_only=True).tokenize) of the GGUF
    <fam>.<text>.<mode>.hf.ids      the HF tokenizer's ids
where <mode> is "raw" (add_special=0, parse_special=0) or "special"
(add_special=1, parse_special=1; HF: add_special_tokens=True, which always
splits special tokens).
    <fam>.<text>.split  (byte-level families) the byte offsets where the HF
                       pre-tokenizer's words end (pre_tokenize_str), to test
                       fm's pre-tokenizer scanners on their own
Gemma 3 (the real model models/gemma-3-270m-q4_k_m.gguf, when present):
    gemma3.<text>.<mode>.llama.ids, gemma3.chat.special.llama.ids
Texts: multilingual.txt (hand-written, ~10 KB, NFC), edge.txt (written here:
contractions, Unicode whitespace, digit runs, ...), nfd.txt (combining
marks), bad.bin (invalid UTF-8; llama.cpp only).
An .ids file is the decimal ids separated by single spaces and a final newline.

Run from the repo root (pinned: tokenizers 0.23.3, gguf 0.19.0,
llama-cpp-python 0.3.36):  /work/venv/bin/python tests/gen/gen_tok_ref.py
"""
import json
import os
import random
import sys
import unicodedata

import gguf
import llama_cpp
import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers.processors import ByteLevel as ByteLevelProcessor
from tokenizers.processors import TemplateProcessing

OUT = "tests/fixtures/tok"
MODEL = "models/gemma-3-270m-q4_k_m.gguf"
SEED = 20240611
N_VOCAB = 3300

QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
            r"\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")

CHATML_TMPL = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
               "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
               "{% endif %}")
LLAMA3_TMPL = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
               "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

EDGE = (
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'Ve 'rE 'LL 'D 'M 'x 'r 'l ' 's'\n"
    "he's she'd we'll they've I'm you're don't DON'T Y'ALL rock'n'roll ''' '''s\n"
    "'Sam 'Tom 'REd 'VEry 'LLama 'DOG 'Mia 'rest 'very 'llama 'dog 'mia HE'SA x'tx\n"
    "x'The y'Die z'There HE'SAID w'Ten v'REpublic u'VEctor t'LLama s'Mountain r'Dollars q'Sam\n"
    "\u0130'S x'\u0130S I'\u0130\n"
    "nbsp\u00a0x thin\u2009x ideo\u3000x nel\u0085x lsep\u2028x vt\x0bx ff\x0cx\n"
    "a\tb \t c\t\t\td  \t  e\n"
    "lone\rcarriage \r returns\r\r here?!\r\n.\r\r\nend\r x\r\n\r\n  y\r\r  z\n"
    "\r\n\r\n \r\n\n \n\n\n\n  \n   x   \n\t\n"
    "1 12 123 1234 12345 1234567890123 007 3.14 1,000 \u0663\u0664\u0665 \u2460\u2461\u2462 \u216b x\u00b2 \uff11\uff12\uff13\n"
    "abc123def 12abc abc12 a1b2c3 --12 -12 +12 #12 $12 12% 12px\n"
    "?!... ... !!! ??? .,;: --- ___ *** (((x))) [[y]] {{z}} <a> </a> <b>x</b> <table> <unused0>\n"
    "\U0001f600\U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f1eb\U0001f1f7 1\ufe0f\u20e3 \u2764\ufe0f\u200d\U0001f525 \U0001f999\U0001f999\n"
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0915\u094d\u0937 \u0e44\u0e17\u0e22 \ud55c\uad6d\uc5b4 \u65e5\u672c\u8a9e\u30ab\u30bf\u30ab\u30ca \u0627\u0644\u0639\u0631\u0628\u064a\u0629\n"
    "<|im_start|>user\nhello<|im_end|>\n<|endoftext|> <|begin_of_text|> <|eot_id|> <start_of_turn>model\n<end_of_turn>\n"
    "<s>[INST] hi [/INST]</s> <unk> <pad> <bos> <eos> <mask>\n"
    + "a" * 70 + " " + "\u00e9" * 40 + " " + "9" * 40 + "\n"
    + " " * 45 + "x" + "\t" * 12 + "y" + "\n" * 5 + "z"
    + "\n\x01\x02\x1f\x7f control\n"
    + "spaces before a special token          <|im_end|>          <end_of_turn>\n"
    + "trailing spaces at the end of text          "
)
NFD = "K'\u212a e\u0301 n\u0303 a\u0308 \u0915\u093c \u1100\u1161\u11a8 A\u030a\u0301 \u212b \ufb01 \u2126\n"
BAD = (b"ok \xff\xfe x \xc3 y \xe2\x82 z \x80\x81 \xed\xa0\x80 \xc0\xaf \xe0\x80\xaf end \xf0\x9f\x98"
       b" tail\xc3")


def write_ids(name, ids):
    with open(os.path.join(OUT, name), "w") as f:
        f.write(" ".join(str(i) for i in ids) + "\n")


def corpus(text):
    rnd = random.Random(SEED)
    words = text.split()
    seps = [" "] * 30 + ["  ", "\n", "\n\n", "\t", ", ", ". ", "   ", " - ", "\r\n"]
    out = [text, EDGE]
    for _ in range(60):
        parts = []
        for _ in range(400):
            r = rnd.random()
            if r < 0.08:
                parts.append(str(rnd.randrange(10 ** rnd.randrange(1, 13))))
            elif r < 0.1:
                parts.append(rnd.choice(["'s", "'t", "'re", "'ve", "'ll", "'d", "'m", "'S", "'LL"]))
            else:
                parts.append(rnd.choice(words))
            parts.append(rnd.choice(seps))
        out.append("".join(parts))
    return out


def train_bytelevel(fam, text):
    if fam == "qwen2":
        model = models.BPE(ignore_merges=False)
        tok = Tokenizer(model)
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    elif fam == "llama3":
        model = models.BPE(ignore_merges=True)
        tok = Tokenizer(model)
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                    "<|eot_id|>"]
    else:
        model = models.BPE()
        tok = Tokenizer(model)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        specials = ["<|endoftext|>"]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=N_VOCAB, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(corpus(text), trainer=trainer)
    tok.add_special_tokens(specials)
    if fam == "llama3":
        tok.post_processor = TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
                                                special_tokens=[("<|begin_of_text|>",
                                                                 tok.token_to_id("<|begin_of_text|>"))])
    else:
        tok.post_processor = ByteLevelProcessor(trim_offsets=False)
    d = os.path.join(OUT, fam)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
    if fam == "qwen2":
        cfg = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
               "add_bos_token": False, "chat_template": CHATML_TMPL}
    elif fam == "llama3":
        cfg = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": LLAMA3_TMPL}
    else:
        cfg = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return tok, d


def train_spm(text):
    """A SentencePiece-style BPE in HF form: pieces learned with a Metaspace
    pre-tokenizer, then saved like HF's SentencePiece converter does (no
    pre-tokenizer, ' ' -> U+2581 normalizer, byte_fallback, <0xNN> tokens,
    merges = all splits of each piece into two pieces, by piece rank)."""
    t0 = Tokenizer(models.BPE())
    t0.normalizer = normalizers.Replace(" ", "\u2581")
    t0.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(vocab_size=N_VOCAB, min_frequency=2, show_progress=False, special_tokens=[],
                                  limit_alphabet=400)
    t0.train_from_iterator(corpus(text), trainer=trainer)
    learned = json.loads(t0.to_str())["model"]
    pieces = sorted(learned["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for p, _ in pieces:
        if p not in vocab:
            vocab[p] = len(vocab)
    merges = []
    for p, pid in sorted(vocab.items(), key=lambda kv: kv[1]):
        if pid < 259 or len(p) < 2:
            continue
        for k in range(1, len(p)):
            a, b = p[:k], p[k:]
            if a in vocab and b in vocab:
                merges.append((vocab[a], vocab[b], pid, a, b))
    merges.sort(key=lambda m: (m[2], m[0], m[1]))
    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for c, i in (("<unk>", 0), ("<s>", 1), ("</s>", 2))],
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                    {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [[m[3], m[4]] for m in merges]},
    }
    d = os.path.join(OUT, "spm")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
                   "chat_template": "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]"
                                    "{% endfor %}"}, f, indent=1)
    return Tokenizer.from_file(os.path.join(d, "tokenizer.json")), d


def write_gguf(fam, tok, d):
    """vocab-only GGUF as convert_hf_to_gguf writes it (get_vocab_base for
    byte-level BPE; for spm: scores = -(1 + rank of the first merge making the
    piece), the scores fm derives too)."""
    tj = json.loads(tok.to_str())
    vocab = tj["model"]["vocab"]
    added = {a["id"]: a for a in tj["added_tokens"]}
    n = max(max(vocab.values()), max(added) if added else 0) + 1
    rev = {i: t for t, i in vocab.items()}
    tokens, types, scores = [], [], []
    if fam == "spm":
        first = {}
        for r, (a, b) in enumerate(tj["model"]["merges"]):
            first.setdefault(a + b, r)
    for i in range(n):
        if i in added:
            tokens.append(added[i]["content"])
            types.append(gguf.TokenType.CONTROL)
            scores.append(-1000.0)
        else:
            t = rev[i]
            tokens.append(t)
            if fam == "spm" and len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
                types.append(gguf.TokenType.BYTE)
            else:
                types.append(gguf.TokenType.NORMAL)
            scores.append(-(1.0 + first[t]) if fam == "spm" and t in first else 0.0)
    arch = {"qwen2": "qwen2", "llama3": "llama", "gpt2": "gpt2", "spm": "llama"}[fam]
    path = os.path.join(OUT, fam + ".gguf")
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(1)
    w.add_context_length(512)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_layer_norm_eps(1e-6)
    w.add_tokenizer_model("llama" if fam == "spm" else "gpt2")
    if fam != "spm":
        w.add_tokenizer_pre({"qwen2": "qwen2", "llama3": "llama-bpe", "gpt2": "gpt-2"}[fam])
    w.add_token_list(tokens)
    w.add_token_types(types)
    if fam == "spm":
        w.add_token_scores(scores)
        w.add_add_space_prefix(False)
    sv = gguf.SpecialVocab(d, load_merges=(fam != "spm"), n_vocab=n)
    sv.add_to_gguf(w, quiet=True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def llama_ids(model, data, add, special):
    return model.tokenize(data, add_bos=add, special=special)


def main():
    if tokenizers.__version__ != "0.23.3" or llama_cpp.__version__ != "0.3.36":
        print("gen_tok_ref: warning: pinned tokenizers 0.23.3 / llama-cpp-python 0.3.36, have %s / %s"
              % (tokenizers.__version__, llama_cpp.__version__), file=sys.stderr)
    os.makedirs(OUT, exist_ok=True)
    text = open(os.path.join(OUT, "multilingual.txt"), encoding="utf-8", newline="").read()
    assert unicodedata.is_normalized("NFC", text) and unicodedata.is_normalized("NFC", EDGE)
    with open(os.path.join(OUT, "edge.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(EDGE)
    with open(os.path.join(OUT, "nfd.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(NFD)
    with open(os.path.join(OUT, "bad.bin"), "wb") as f:
        f.write(BAD)
    texts = {"multilingual": text, "edge": EDGE, "nfd": NFD}
    summary = []
    for fam in ("qwen2", "llama3", "gpt2", "spm"):
        tok, d = train_spm(text) if fam == "spm" else train_bytelevel(fam, text)
        path = write_gguf(fam, tok, d)
        m = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        for tname, t in texts.items():
            for mode, add, sp in (("raw", False, False), ("special", True, True)):
                li = llama_ids(m, t.encode("utf-8"), add, sp)
                write_ids("%s.%s.%s.llama.ids" % (fam, tname, mode), li)
                hi = tok.encode(t, add_special_tokens=add).ids
                write_ids("%s.%s.%s.hf.ids" % (fam, tname, mode), hi)
                if mode == "raw" and fam != "spm":
                    ends, b = [], 0
                    for piece, (c0, c1) in tok.pre_tokenizer.pre_tokenize_str(t):
                        b += len(t[c0:c1].encode("utf-8"))
                        ends.append(b)
                    write_ids("%s.%s.split" % (fam, tname), ends)
                if mode == "special":
                    summary.append("%-7s %-13s llama.cpp %5d tokens, HF %5d tokens, equal: %s"
                                   % (fam, tname, len(li), len(hi), li == hi))
        write_ids("%s.bad.raw.llama.ids" % fam, llama_ids(m, BAD, False, False))
        del m
    if os.path.exists(MODEL):
        m = llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False)
        for tname, t in texts.items():
            for mode, add, sp in (("raw", False, False), ("special", True, True)):
                write_ids("gemma3.%s.%s.llama.ids" % (tname, mode), llama_ids(m, t.encode("utf-8"), add, sp))
        write_ids("gemma3.bad.raw.llama.ids", llama_ids(m, BAD, False, False))
        chat = ("<start_of_turn>user\nYou are terse.\n\nHello, wie geht's? \u4f60\u597d\uff01<end_of_turn>\n"
                "<start_of_turn>model\n")
        write_ids("gemma3.chat.special.llama.ids", llama_ids(m, chat.encode("utf-8"), True, True))
        del m
    else:
        print("gen_tok_ref: %s absent, gemma3 references left as they are" % MODEL, file=sys.stderr)
    for s in summary:
        print("gen_tok_ref:", s)


if __name__ == "__main__":
    main()
