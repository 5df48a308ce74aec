#!/bin/sh
# fm-inspect command line (issue 3):
#  * --json output parses (python3 -m json.tool) for every GGUF fixture, every
#    file of tests/corpus/valid and the Gemma model when present, and for the
#    fixtures it matches REFERENCE.tsv: tensor names, types, ne, and shape =
#    reversed ne (row-major); arrays are abbreviated unless --full-arrays.
#  * exit codes: 2 with exactly one "fm-inspect: " line on stderr for every
#    file of tests/corpus/invalid, a missing path, a truncated file and bad
#    usage; 1 for a type fm cannot dequantize (Q8_1), an unknown tensor name
#    and an existing output without --force; an output is never left behind
#    on failure (atomic fm_outfile).
#  * safetensors extraction: every row of tests/fixtures/st-expected.txt (the
#    float32 bits of each tensor) equals `fm-inspect FILE --tensor T --f32 -`,
#    bit for bit except NaN payloads (a NaN must stay a NaN of the same sign;
#    the payload rules are the safetensors/quant unit tests' business).
# Run from the repo root; $BUILD (default build) holds fm-inspect.
set -u
BUILD=${BUILD:-build}
insp=$BUILD/fm-inspect
fx=tests/fixtures/gguf
model=models/gemma-3-270m-q4_k_m.gguf
[ -x "$insp" ] || { echo "inspect_cli: $insp not built"; exit 1; }
command -v python3 > /dev/null || { echo "inspect_cli: python3 needed to check JSON"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
bad=0
fail() { echo "FAIL: $*"; bad=$((bad + 1)); }

# ---- JSON parses
njson=0
mkdir "$tmp/json"
for f in "$fx"/*.gguf tests/corpus/valid/* $( [ -f "$model" ] && echo "$model" ); do
  [ -e "$f" ] || continue
  case $f in *README*|*.txt|*.md) continue ;; esac
  out=$tmp/json/$(basename "$f").json
  if ! "$insp" --json "$f" > "$out" 2> "$tmp/err"; then
    fail "--json $f: exit $?: $(cat "$tmp/err")"
  elif ! python3 -m json.tool < "$out" > /dev/null 2> "$tmp/err"; then
    fail "--json $f: output is not JSON: $(head -n 2 "$tmp/err")"
  fi
  njson=$((njson + 1))
done
"$insp" --json --full-arrays "$fx/Q4_K.gguf" > "$tmp/full.json" || fail "--json --full-arrays failed"

# ---- JSON content against REFERENCE.tsv (and Gemma's known layout)
if ! python3 - "$tmp/json" "$fx/REFERENCE.tsv" "$tmp/full.json" <<'EOF'
import json, os, sys
jdir, ref, full = sys.argv[1:4]
want = {}
for line in open(ref):
    if line.startswith("#") or line.startswith("file\t"):
        continue
    f, t, ty, ne, sha = line.rstrip("\n").split("\t")
    want.setdefault(f, []).append((t, ty, [int(x) for x in ne.split(",")]))
bad = 0
for f, rows in want.items():
    j = json.load(open(os.path.join(jdir, f + ".json")))
    got = [(t["name"], t["type"], t["ne"]) for t in j["tensors"]]
    if j["format"] != "gguf" or sorted(got) != sorted(rows):
        print(f"FAIL: {f}: JSON tensors {got} != reference {rows}"); bad += 1
    for t in j["tensors"]:
        if t["shape"] != t["ne"][::-1]:
            print(f"FAIL: {f}: {t['name']}: shape {t['shape']} is not reversed ne {t['ne']}"); bad += 1
        n = 1
        for d in t["ne"]:
            n *= d
        if t["n_elems"] != n or t["offset"] != j["data_offset"] + t["data_offset_rel"]:
            print(f"FAIL: {f}: {t['name']}: n_elems/offset inconsistent"); bad += 1
    keys = {m["key"]: m for m in j["metadata"]}
    if keys.get("general.architecture", {}).get("value") != "llama":
        print(f"FAIL: {f}: general.architecture missing"); bad += 1
g = os.path.join(jdir, "gemma-3-270m-q4_k_m.gguf.json")
if os.path.exists(g):
    j = json.load(open(g))
    keys = {m["key"]: m for m in j["metadata"]}
    tok = keys["tokenizer.ggml.tokens"]
    if (len(j["tensors"]) != 236 or tok["count"] != 262144 or not tok["truncated"]
            or len(tok["value"]) != 16 or tok["value"][:3] != ["<pad>", "<eos>", "<bos>"]
            or keys["gemma3.block_count"]["value"] != 18):
        print("FAIL: gemma JSON listing unexpected"); bad += 1
    emb = [t for t in j["tensors"] if t["name"] == "token_embd.weight"][0]
    if emb["shape"] != [262144, 640] or emb["type"] != "Q8_0":
        print(f"FAIL: gemma token_embd.weight {emb}"); bad += 1
j = json.load(open(full))
if any(m.get("truncated") for m in j["metadata"]):
    print("FAIL: --full-arrays output still truncated"); bad += 1
sys.exit(1 if bad else 0)
EOF
then
  fail "JSON content checks"
fi

# ---- exit 2: invalid input, one stderr line
ninv=0
# expect CODE DESC ARGS...: exit CODE, one "fm-inspect: " line on stderr
expect() {
  code=$1; desc=$2; shift 2
  "$insp" "$@" > "$tmp/out" 2> "$tmp/err"
  rc=$?
  [ $rc -eq "$code" ] || { fail "$desc: exit $rc, expected $code ($(head -c 200 "$tmp/err"))"; return; }
  [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q '^fm-inspect: ' "$tmp/err" ||
    fail "$desc: stderr is not one 'fm-inspect: ' line: $(head -c 300 "$tmp/err")"
}
for f in tests/corpus/invalid/*; do
  [ -e "$f" ] || continue
  expect 2 "invalid $f" "$f"
  expect 2 "invalid $f --json" --json "$f"
  [ -s "$tmp/out" ] && fail "invalid $f --json: printed to stdout"
  expect 2 "invalid $f --all-f32-sha256" "$f" --all-f32-sha256
  ninv=$((ninv + 1))
done
[ $ninv -gt 0 ] || fail "no files in tests/corpus/invalid"
expect 2 "missing path" "$tmp/does-not-exist.gguf"
head -c 5000 "$fx/Q8_0.gguf" > "$tmp/trunc.gguf"
expect 2 "truncated GGUF" "$tmp/trunc.gguf"
printf 'hello, not a model file' > "$tmp/junk.bin"
expect 2 "junk file" "$tmp/junk.bin"
expect 2 "no arguments"
expect 2 "unknown option" --bogus "$fx/F32.gguf"
expect 2 "--tensor without --f32" "$fx/F32.gguf" --tensor token_embd.weight
expect 2 "two inputs" "$fx/F32.gguf" "$fx/F16.gguf"

# ---- exit 1: fm cannot do it
expect 1 "unknown tensor" "$fx/F32.gguf" --tensor no.such.tensor --f32 "$tmp/x.f32"
expect 1 "Q8_1 --f32" "$fx/unsupported-Q8_1.gguf" --tensor q8_1.weight --f32 "$tmp/q81.f32"
ls "$tmp"/q81.f32* > /dev/null 2>&1 && fail "Q8_1 --f32 left an output file behind"
expect 1 "Q8_1 --all-f32-sha256" "$fx/unsupported-Q8_1.gguf" --all-f32-sha256
grep -q '^f32.weight	F32	' "$tmp/out" || fail "Q8_1 --all-f32-sha256 did not list the other tensor"
"$insp" "$fx/F32.gguf" --tensor token_embd.weight --f32 "$tmp/emb.f32" || fail "--f32 to a new file failed"
expect 1 "existing output" "$fx/F32.gguf" --tensor token_embd.weight --f32 "$tmp/emb.f32"
"$insp" "$fx/F32.gguf" --tensor token_embd.weight --f32 "$tmp/emb.f32" --force || fail "--force failed"
[ "$(wc -c < "$tmp/emb.f32")" -eq $((256 * 16 * 4)) ] || fail "token_embd.weight: $(wc -c < "$tmp/emb.f32") bytes, expected 16384"
"$insp" "$fx/F32.gguf" --tensor token_embd.weight --f32 - | cmp -s - "$tmp/emb.f32" || fail "--f32 - differs from --f32 FILE"

# ---- safetensors values
nst=0
exp=tests/fixtures/st-expected.txt
if [ -f "$exp" ]; then
  tab=$(printf '\t')
  # NaN words (exponent all ones, mantissa not 0) -> 7NAN / fNAN
  nan_norm() { tr ' ' '\n' | sed -e '/^[7f]f800000$/b' -e 's/^\([7f]\)f[89a-f][0-9a-f]\{5\}$/\1NAN/' | tr '\n' ' '; }
  grep -v '^#' "$exp" > "$tmp/st-rows"
  while IFS=$tab read -r f t n bits; do
    [ -n "$f" ] || continue
    got=$("$insp" "$f" --tensor "$t" --f32 - 2> "$tmp/err" | od -An -v -tx4 | tr -s ' \n' '  ' | sed 's/^ //; s/ $//')
    [ "$(echo "$got" | nan_norm)" = "$(echo "$bits" | nan_norm)" ] || fail "$f $t: float32 bits [$got], expected [$bits] $(cat "$tmp/err")"
    nst=$((nst + 1))
  done < "$tmp/st-rows"
  "$insp" tests/corpus/valid/st-sharded.d --all-f32-sha256 > "$tmp/shard.sha" || fail "sharded dir --all-f32-sha256"
  [ "$(wc -l < "$tmp/shard.sha")" -eq 4 ] || fail "sharded dir: $(wc -l < "$tmp/shard.sha") tensors listed, expected 4"
else
  fail "$exp missing"
fi

echo "inspect_cli: $njson JSON listings parsed, $ninv invalid inputs exit 2, $nst safetensors tensors matched"
[ $bad -eq 0 ] || { echo "inspect_cli: $bad failures"; exit 1; }
echo "inspect_cli: ok"
