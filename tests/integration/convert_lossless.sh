#!/bin/sh
# fm-convert, lossless (issue 5, must-show 1 and 2; specs/convert.md C3, C4, C5.1,
# C5.5, C6.2):
#  * GGUF -> bundle is bit-exact: for every GGUF of tests/fixtures/convert,
#    tests/fixtures/arch/qwen3moe-q4km.gguf (Q4_K and Q6_K experts) and the
#    Gemma 3 270M model (Q4_K, Q5_0, Q6_K, Q8_0; when present), every tensor
#    of the bundle read back with fm-inspect (expert parts reassembled into
#    the fused GGUF tensor) has the SHA-256 of gguf-py's float32
#    dequantization of the source tensor (REFERENCE.tsv,
#    gemma3-270m.dequant.tsv), and the same type. No tolerance.
#  * HF -> bundle equals GGUF -> bundle, where the GGUF is llama.cpp's
#    convert_hf_to_gguf.py output of the same HF model: f32 and bf16 sources
#    exactly (same float32 values and types; bf16 is kept bf16, norms,
#    biases and routers are widened to f32 by both), including the llama
#    q/k row permutation (mixtral, llama with biases), gemma's norm + 1,
#    qwen2moe's shared expert, and a sharded safetensors source; and
#    `--dense q8 --experts q8` from bf16 equals llama.cpp's --outtype q8_0
#    bit for bit (same Q8_0 rounding); the canonical hyperparameters (the
#    manifest's "arch", from config.json or from GGUF metadata) are equal.
#  * --io cached and --io direct give the same tensors (C8.3);
#  * every bundle passes fm-verify; inputs are unchanged (sha256 before and
#    after); the manifest carries provenance (tool, command, source sha256).
set -u
BUILD=${BUILD:-build}
conv=$BUILD/fm-convert
insp=$BUILD/fm-inspect
ver=$BUILD/fm-verify
fx=tests/fixtures/convert
model=models/gemma-3-270m-q4_k_m.gguf
for b in "$conv" "$insp" "$ver"; do [ -x "$b" ] || { echo "convert_lossless: $b not built"; exit 1; }; done
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
bad=0
fail() { echo "FAIL: $*"; bad=$((bad + 1)); }

tree_sha() { find "$1" -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1; }

convert() { # src out [options]
  src=$1; out=$2; shift 2
  if ! "$conv" "$src" -o "$out" -t 2 "$@" > "$tmp/log" 2>&1; then
    fail "fm-convert $src $*: $(cat "$tmp/log")"; return 1
  fi
  "$ver" "$out" > "$tmp/vlog" 2>&1 || fail "fm-verify $out: $(cat "$tmp/vlog")"
  return 0
}

# ---- GGUF -> bundle against gguf-py
check_ref() { # gguf ref-file name-in-ref
  g=$1; ref=$2; key=$3
  n=$(basename "$g" .gguf)
  convert "$g" "$tmp/$n.fmb" || return
  "$insp" "$tmp/$n.fmb" --all-f32-sha256 | LC_ALL=C sort > "$tmp/$n.got"
  awk -F'\t' -v k="$key" '$1 == k { print $2 "\t" $3 "\t" $4 }' "$ref" | LC_ALL=C sort > "$tmp/$n.want"
  [ -s "$tmp/$n.want" ] || { fail "$ref has no rows for $key"; return; }
  if ! cmp -s "$tmp/$n.want" "$tmp/$n.got"; then
    fail "$g: bundle tensors differ from gguf-py's dequantization:"
    diff "$tmp/$n.want" "$tmp/$n.got" | head -n 10
  else
    echo "ok: $g: $(wc -l < "$tmp/$n.got") tensors bit-exact ($(cut -f2 "$tmp/$n.got" | LC_ALL=C sort | uniq -c | tr -s ' ' | tr '\n' ','))"
  fi
}
before=$(tree_sha "$fx")
for g in "$fx"/*.gguf tests/fixtures/arch/qwen3moe-q4km.gguf; do
  check_ref "$g" "$fx/REFERENCE.tsv" "$(basename "$g")"
done
if [ -f "$model" ]; then
  msha=$(sha256sum < "$model" | cut -d' ' -f1)
  grep -v '^#' tests/fixtures/gemma3-270m.dequant.tsv | tail -n +2 |
    awk -F'\t' '{ print $1 "\t" $2 "\t" $3 "\t" $5 }' > "$tmp/gemma.ref"
  check_ref "$model" "$tmp/gemma.ref" "$(basename "$model")"
  [ "$(sha256sum < "$model" | cut -d' ' -f1)" = "$msha" ] || fail "$model changed during conversion"
else
  echo "note: $model absent: Gemma part skipped"
fi

# ---- HF -> bundle vs GGUF (llama.cpp's converter) -> bundle
for m in qwen3moe-f32 mixtral-f32 gemma3-f32 llama-f32 qwen3moe-bf16 qwen2moe-bf16; do
  convert "$fx/$m" "$tmp/$m.hf.fmb" || continue
  "$insp" "$tmp/$m.hf.fmb" --all-f32-sha256 | LC_ALL=C sort > "$tmp/$m.hf.sha"
  if ! cmp -s "$tmp/$m.hf.sha" "$tmp/$m.got"; then
    fail "$m: HF -> bundle differs from GGUF -> bundle:"
    diff "$tmp/$m.got" "$tmp/$m.hf.sha" | head -n 10
  else
    echo "ok: $m: HF and GGUF bundles equal ($(wc -l < "$tmp/$m.hf.sha") tensors)"
  fi
  # the same canonical hyperparameters (config.json floats rounded to float32 as GGUF stores them)
  a1=$("$insp" "$tmp/$m.hf.fmb" --arch); a2=$("$insp" "$tmp/$m.fmb" --arch)
  [ -n "$a1" ] && [ "$a1" = "$a2" ] || fail "$m: arch hparams differ: HF $a1 GGUF $a2"
done
convert "$fx/qwen3moe-bf16" "$tmp/q8.hf.fmb" --dense q8 --experts q8 &&
  "$insp" "$tmp/q8.hf.fmb" --all-f32-sha256 | LC_ALL=C sort > "$tmp/q8.hf.sha"
if ! cmp -s "$tmp/q8.hf.sha" "$tmp/qwen3moe-bf16.q8_0.got"; then
  fail "qwen3moe-bf16 --dense q8 --experts q8 differs from llama.cpp's q8_0:"
  diff "$tmp/qwen3moe-bf16.q8_0.got" "$tmp/q8.hf.sha" | head -n 10
else
  echo "ok: HF bf16 -> Q8_0 equals llama.cpp's --outtype q8_0 ($(grep -c Q8_0 "$tmp/q8.hf.sha") Q8_0 tensors)"
fi

# ---- --io cached (page-cache reads) gives the same tensors as the default --io direct
for src in "$fx/qwen3moe-f32" "$fx/mixtral-f32.gguf"; do
  n=$(basename "$src")
  convert "$src" "$tmp/$n.cached.fmb" --io cached || continue
  convert "$src" "$tmp/$n.direct.fmb" --io direct || continue
  "$insp" "$tmp/$n.cached.fmb" --all-f32-sha256 > "$tmp/c.sha"
  "$insp" "$tmp/$n.direct.fmb" --all-f32-sha256 > "$tmp/d.sha"
  cmp -s "$tmp/c.sha" "$tmp/d.sha" || fail "$n: --io cached and --io direct bundles differ"
done

# ---- provenance, inputs unchanged
"$insp" --json "$tmp/qwen3moe-f32.hf.fmb" > "$tmp/m.json" || fail "fm-inspect --json bundle"
for k in '"tool": "fm-convert"' '"command"' '"sources"' '"sha256"' '"created"' 'model-00002-of-00003.safetensors' \
         '"source_format": "hf"'; do
  grep -q "$k" "$tmp/m.json" || fail "manifest provenance lacks $k"
done
want=$(sha256sum < "$fx/qwen3moe-f32/model-00001-of-00003.safetensors" | cut -d' ' -f1)
grep -q "$want" "$tmp/m.json" || fail "manifest lacks the shard's sha256 $want"
[ "$(tree_sha "$fx")" = "$before" ] || fail "fixtures changed during conversion"

[ $bad -eq 0 ] && echo "convert_lossless: all ok"
[ $bad -eq 0 ]
