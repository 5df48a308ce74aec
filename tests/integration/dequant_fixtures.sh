#!/bin/sh
# Bit-exact dequantization of every GGML type fm reads (issue 3).
# For each row of tests/fixtures/gguf/REFERENCE.tsv (small GGUF files quantized
# by llama.cpp's own quantizer; see tests/gen/gen_gguf_types.py) the tensor is
# extracted with `fm-inspect FILE --tensor NAME --f32 OUT` and the SHA-256 of
# OUT must equal the reference (gguf-py's dequantization, itself checked
# bit-exact against ggml's C code). Tolerance: none, every bit must match,
# because dequantization is exact arithmetic on exactly specified formats.
# Done twice: with the dispatching kernels (AVX2 where the CPU has it) and
# with the scalar _ref kernels (FM_NO_SIMD=1). Then each file's
# `--all-f32-sha256` listing must equal its reference rows (name, type, sha).
# A self-check corrupts one byte of a tensor and expects a mismatch, so the
# comparison itself is known to be able to fail.
# Run from the repo root; $BUILD (default build) holds fm-inspect.
set -u
BUILD=${BUILD:-build}
insp=$BUILD/fm-inspect
dir=tests/fixtures/gguf
ref=$dir/REFERENCE.tsv
# The types issue 3 requires; each must appear in REFERENCE.tsv.
required="F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K IQ4_NL IQ4_XS TQ1_0 TQ2_0 MXFP4"

[ -x "$insp" ] || { echo "dequant_fixtures: $insp not built"; exit 1; }
[ -f "$ref" ] || { echo "dequant_fixtures: $ref missing"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
tab=$(printf '\t')
grep -v '^#' "$ref" | tail -n +2 > "$tmp/rows"
nrows=$(wc -l < "$tmp/rows")
[ "$nrows" -gt 0 ] || { echo "dequant_fixtures: no rows in $ref"; exit 1; }

bad=0
fail() { echo "FAIL: $*"; bad=$((bad + 1)); }

# run MODE ARGS...: MODE simd (FM_NO_SIMD unset) or ref (FM_NO_SIMD=1)
run() {
  mode=$1; shift
  if [ "$mode" = ref ]; then FM_NO_SIMD=1 "$insp" "$@"
  else (unset FM_NO_SIMD; exec "$insp" "$@"); fi
}

checked=0
while IFS=$tab read -r f t ty ne sha; do
  for mode in simd ref; do
    rm -f "$tmp/out.f32"
    if ! run $mode "$dir/$f" --tensor "$t" --f32 "$tmp/out.f32" 2> "$tmp/err"; then
      fail "$f $t ($ty, $mode): fm-inspect failed: $(cat "$tmp/err")"
      continue
    fi
    got=$(sha256sum < "$tmp/out.f32" | cut -d' ' -f1)
    [ "$got" = "$sha" ] || fail "$f $t ($ty, ne $ne, $mode): sha256 $got, expected $sha"
  done
  checked=$((checked + 1))
done < "$tmp/rows"

# Per file: --all-f32-sha256 lists exactly the reference rows.
files=$(cut -f1 "$tmp/rows" | sort -u)
nfiles=0
for f in $files; do
  nfiles=$((nfiles + 1))
  awk -F'\t' -v f="$f" '$1 == f { print $2 "\t" $3 "\t" $5 }' "$tmp/rows" | sort > "$tmp/want"
  for mode in simd ref; do
    if ! run $mode "$dir/$f" --all-f32-sha256 > "$tmp/got.raw" 2> "$tmp/err"; then
      fail "$f --all-f32-sha256 ($mode): $(cat "$tmp/err")"
      continue
    fi
    sort "$tmp/got.raw" > "$tmp/got"
    cmp -s "$tmp/want" "$tmp/got" ||
      fail "$f --all-f32-sha256 ($mode) differs from $ref: $(diff "$tmp/want" "$tmp/got" | head -n 4)"
  done
done

# Every required type is covered.
types=$(cut -f3 "$tmp/rows" | sort -u | tr '\n' ' ')
for ty in $required; do
  case " $types " in *" $ty "*) ;; *) fail "required type $ty has no row in $ref" ;; esac
done

# Self-check: one changed byte inside token_embd.weight of Q4_K.gguf must be seen.
cp "$dir/Q4_K.gguf" "$tmp/corrupt.gguf"
off=$("$insp" "$tmp/corrupt.gguf" | awk '$1 == "token_embd.weight" { print $(NF - 1) }')
want=$(awk -F'\t' '$1 == "Q4_K.gguf" && $2 == "token_embd.weight" { print $5 }' "$tmp/rows")
if [ -z "$off" ] || [ -z "$want" ]; then
  fail "self-check: token_embd.weight not found in Q4_K.gguf listing or reference"
else
  pos=$((off + 40))   # inside the quants of the first block (bytes 16..143)
  b=$(od -An -tu1 -j "$pos" -N1 "$tmp/corrupt.gguf" | tr -d ' ')
  nb=$(( (b + 1) % 256 ))
  printf "\\$(printf '%03o' "$nb")" | dd of="$tmp/corrupt.gguf" bs=1 seek="$pos" conv=notrunc 2>/dev/null
  got=$("$insp" "$tmp/corrupt.gguf" --tensor token_embd.weight --f32 - | sha256sum | cut -d' ' -f1)
  [ "$got" != "$want" ] || fail "self-check: a corrupted byte did not change the sha256"
fi

echo "dequant_fixtures: $checked tensors in $nfiles files, $(echo $types | wc -w) types," \
  "each checked with SIMD and scalar kernels: $types"
if [ $bad -ne 0 ]; then
  echo "dequant_fixtures: $bad failures"
  exit 1
fi
echo "dequant_fixtures: all bit-exact"
