#!/bin/sh
# fm-convert / fm-requant refuse bad input before writing anything (issue 5;
# specs/convert.md C1, C7):
# each case exits 2 with exactly one "fm-convert: " line on stderr that names
# the problem (the pattern below), and leaves neither OUT nor OUT.tmp:
#   unsupported architecture (GGUF rwkv6; HF DeepseekV3ForCausalLM),
#   unsupported dtype (HF F64), quant type fm cannot dequantize (Q8_1),
#   unknown GGML type id (corpus G20), missing shard, config.json that
#   disagrees with the tensors (hidden_size; num_experts), GGUF expert count
#   that disagrees with its tensors, no config.json, a missing input, bad
#   options. An existing output is not overwritten without --force (exit 1,
#   file unchanged); with --force it is.
set -u
BUILD=${BUILD:-build}
conv=$BUILD/fm-convert
rq=$BUILD/fm-requant
fx=tests/fixtures/convert
for b in "$conv" "$rq"; do [ -x "$b" ] || { echo "convert_invalid: $b not built"; exit 1; }; done
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
bad=0
fail() { echo "FAIL: $*"; bad=$((bad + 1)); }

expect() { # want-exit pattern tool args...   (output always $tmp/out.fmb)
  want=$1; pat=$2; tool=$3; shift 3
  rm -f "$tmp/out.fmb" "$tmp/out.fmb.tmp"
  "$tool" "$@" -o "$tmp/out.fmb" > "$tmp/stdout" 2> "$tmp/stderr"
  rc=$?
  lines=$(wc -l < "$tmp/stderr")
  if [ $rc -ne "$want" ]; then fail "$*: exit $rc, expected $want: $(cat "$tmp/stderr")"
  elif [ "$lines" -ne 1 ]; then fail "$*: $lines stderr lines, expected 1: $(cat "$tmp/stderr")"
  elif ! grep -q "$pat" "$tmp/stderr"; then fail "$*: message lacks '$pat': $(cat "$tmp/stderr")"
  elif [ -e "$tmp/out.fmb" ] || [ -e "$tmp/out.fmb.tmp" ]; then fail "$*: output left behind"
  else echo "ok: $(cat "$tmp/stderr")"
  fi
}

expect 2 'architecture "rwkv6" is not supported' "$conv" "$fx/bad/arch-rwkv6.gguf"
expect 2 'Q8_1 (9) cannot be dequantized' "$conv" "$fx/bad/qtype-q8_1.gguf"
expect 2 'unknown tensor type id 4' "$conv" tests/corpus/invalid/gguf-G20-unknown-type-4.gguf
expect 2 'ffn_gate_inp.weight.*expected \[32, 3\], found \[32, 2\]' "$conv" "$fx/bad/experts-disagree.gguf"
expect 2 'dtype F64 is not supported' "$conv" "$fx/bad/dtype-f64"

cp -r "$fx/qwen3moe-f32" "$tmp/shard"
rm "$tmp/shard/model-00002-of-00003.safetensors"
expect 2 'shard .*model-00002-of-00003.safetensors.*cannot be opened' "$conv" "$tmp/shard"

cp -r "$fx/qwen3moe-f32" "$tmp/hidden"
sed 's/"hidden_size": 64/"hidden_size": 96/' "$fx/qwen3moe-f32/config.json" > "$tmp/hidden/config.json"
expect 2 'config.json vs safetensors.*token_embd.weight.*expected \[96, 320\], found \[64, 320\]' "$conv" "$tmp/hidden"

cp -r "$fx/qwen3moe-f32" "$tmp/nexp"
sed 's/"num_local_experts": 8/"num_local_experts": 6/' "$fx/qwen3moe-f32/config.json" > "$tmp/nexp/config.json"
expect 2 'experts.6.*is not part of a qwen3moe model' "$conv" "$tmp/nexp"

cp -r "$fx/mixtral-f32" "$tmp/arch"
sed 's/MixtralForCausalLM/DeepseekV3ForCausalLM/' "$fx/mixtral-f32/config.json" > "$tmp/arch/config.json"
expect 2 'architecture DeepseekV3ForCausalLM is not supported' "$conv" "$tmp/arch"

mkdir "$tmp/noconf"
cp "$fx/llama-f32/model.safetensors" "$tmp/noconf/"
expect 2 'no config.json' "$conv" "$tmp/noconf"
expect 2 'No such file or directory' "$conv" "$tmp/does-not-exist.gguf"
expect 2 'not a GGUF file' "$conv" "$fx/REFERENCE.tsv"
expect 2 '\-\-experts q5' "$conv" "$fx/qwen3moe-f32.gguf" --experts q5
expect 2 '\-\-group 48' "$conv" "$fx/qwen3moe-f32.gguf" --group 48
expect 2 'row length 32 is not a multiple of the A4_64 block size 64' "$conv" "$fx/qwen3moe-f32.gguf" --experts q4
expect 2 'not a valid\|FMBUNDLE\|bundle' "$rq" "$fx/qwen3moe-f32.gguf" --experts q4
expect 2 'required' "$rq" "$fx/qwen3moe-f32.gguf"

# an existing output is kept without --force, replaced with it
echo keep > "$tmp/exists.fmb"
"$conv" "$fx/qwen3moe-f32.gguf" -o "$tmp/exists.fmb" > /dev/null 2> "$tmp/stderr"
rc=$?
[ $rc -eq 1 ] || fail "existing output: exit $rc, expected 1"
grep -q 'already exists' "$tmp/stderr" || fail "existing output: $(cat "$tmp/stderr")"
[ "$(cat "$tmp/exists.fmb")" = keep ] || fail "existing output was modified"
"$conv" "$fx/qwen3moe-f32.gguf" -o "$tmp/exists.fmb" --force > /dev/null 2>&1 || fail "--force failed"
[ "$(cat "$tmp/exists.fmb")" != keep ] || fail "--force did not replace the output"

[ $bad -eq 0 ] && echo "convert_invalid: all ok"
[ $bad -eq 0 ]
