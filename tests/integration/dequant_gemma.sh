#!/bin/sh
# Bit-exact dequantization of a real model (issue 3): every tensor of
# models/gemma-3-270m-q4_k_m.gguf (F32, Q4_K, Q5_0, Q6_K, Q8_0), as float32,
# must have the SHA-256 of tests/fixtures/gemma3-270m.dequant.tsv (gguf-py's
# dequantization, checked bit-exact against ggml's C code when the table was
# made). No tolerance: every bit must match. Checked with the dispatching
# (AVX2) kernels and with the scalar ones (FM_NO_SIMD=1).
# The model is fetched by `make models/gemma-3-270m-q4_k_m.gguf`
# (scripts/get-gemma.sh). When it is absent this test FAILS, unless
# FM_NO_MODEL=1 is set, then it is skipped (exit 0, with a note).
set -u
BUILD=${BUILD:-build}
insp=$BUILD/fm-inspect
model=models/gemma-3-270m-q4_k_m.gguf
ref=tests/fixtures/gemma3-270m.dequant.tsv

if [ ! -f "$model" ]; then
  if [ "${FM_NO_MODEL:-0}" = 1 ]; then
    echo "dequant_gemma: SKIPPED: $model absent and FM_NO_MODEL=1"
    exit 0
  fi
  echo "dequant_gemma: FAIL: $model absent (make $model, or set FM_NO_MODEL=1 to skip)"
  exit 1
fi
[ -x "$insp" ] || { echo "dequant_gemma: $insp not built"; exit 1; }
[ -f "$ref" ] || { echo "dequant_gemma: $ref missing"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
bad=0

# The table belongs to one exact file.
want_sha=$(sed -n 's/.*(sha256 \([0-9a-f]\{64\}\)).*/\1/p' "$ref" | head -n 1)
have_sha=$(sha256sum < "$model" | cut -d' ' -f1)
if [ "$want_sha" != "$have_sha" ]; then
  echo "dequant_gemma: FAIL: $model has sha256 $have_sha, $ref is for $want_sha"
  exit 1
fi

grep -v '^#' "$ref" | tail -n +2 | awk -F'\t' '{ print $2 "\t" $3 "\t" $5 }' | sort > "$tmp/want"
n=$(wc -l < "$tmp/want")
[ "$n" -gt 0 ] || { echo "dequant_gemma: no rows in $ref"; exit 1; }
for mode in simd ref; do
  if [ $mode = ref ]; then FM_NO_SIMD=1 "$insp" "$model" --all-f32-sha256 > "$tmp/got.raw" 2> "$tmp/err"
  else (unset FM_NO_SIMD; exec "$insp" "$model" --all-f32-sha256) > "$tmp/got.raw" 2> "$tmp/err"; fi
  rc=$?
  sort "$tmp/got.raw" > "$tmp/got"
  if [ $rc -ne 0 ]; then
    echo "FAIL ($mode): fm-inspect exit $rc: $(head -n 3 "$tmp/err")"
    bad=$((bad + 1))
  elif ! cmp -s "$tmp/want" "$tmp/got"; then
    nd=$(diff "$tmp/want" "$tmp/got" | grep -c '^>')
    echo "FAIL ($mode): $nd tensors differ from $ref, e.g.:"
    diff "$tmp/want" "$tmp/got" | head -n 6
    bad=$((bad + 1))
  fi
done
types=$(cut -f2 "$tmp/want" | sort | uniq -c | awk '{ printf "%s%s x%s", s, $2, $1; s = ", " }')
echo "dequant_gemma: $n tensors of $model ($types), each checked with SIMD and scalar kernels"
if [ $bad -ne 0 ]; then
  echo "dequant_gemma: FAILED"
  exit 1
fi
echo "dequant_gemma: all bit-exact"
