#!/bin/sh
# fm-run end to end (issue 6): --tokens/--logits-out on the architecture
# fixtures against llama.cpp's logits (tests/fixtures/arch, F32 weights:
# relative RMS <= 1e-4 at every position, as tests/unit/test_logits.c checks
# through the library), --tokenize and generation on the real model when it
# is present, --stats output, and the command line's error handling (exit 2
# for bad usage or an unreadable model, 1 for other failures).
set -u
BUILD=${BUILD:-build}
run=$BUILD/fm-run
fx=tests/fixtures/arch
[ -x "$run" ] || { echo "logits_arch: $run not built"; exit 1; }
command -v od > /dev/null || { echo "logits_arch: od needed"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
bad=0
fail() { echo "FAIL: $*"; bad=$((bad + 1)); }
ids_of() { tr -d '\n' < "$fx/$1.json" | sed 's/.*"ids": *\[\([^]]*\)\].*/\1/' | tr -d ' ' | tr ',' ' '; }

# per-position relative RMS of a against b ([n][V] float32); prints the max
maxrel() { # a b V
  od -An -v -t f4 -w4 "$1" > "$tmp/a.txt"
  od -An -v -t f4 -w4 "$2" > "$tmp/b.txt"
  paste "$tmp/a.txt" "$tmp/b.txt" | awk -v V="$3" '
    { p = int((NR - 1) / V); d = $1 - $2; s[p] += d * d; r[p] += $2 * $2; n = p + 1 }
    END { m = 0; for (i = 0; i < n; i++) { if (r[i] == 0) { print "nan"; exit } e = sqrt(s[i] / r[i]); if (e > m) m = e }
          if (n == 0) print "nan"; else printf "%.3e\n", m }'
}

for f in llama mixtral qwen2 qwen3 qwen2moe qwen3moe gemma3; do
  ids=$(ids_of $f)
  if ! "$run" "$fx/$f.gguf" --tokens "$ids" --logits-out "$tmp/$f.logits" -t 2 > /dev/null 2> "$tmp/err"; then
    fail "fm-run $f: $(cat "$tmp/err")"; continue
  fi
  e=$(maxrel "$tmp/$f.logits" "$fx/$f.logits" 320)
  awk -v e="$e" 'BEGIN { exit !(e != "nan" && e + 0 <= 1e-4) }' || fail "$f: max per-position relative RMS $e > 1e-4"
  echo "ok: $f: max per-position relative RMS vs llama.cpp $e"
done

# --exact changes quantized results (no 8-bit activations) but stays close
ids=$(ids_of llama-q6k)
if "$run" "$fx/llama-q6k.gguf" --tokens "$ids" --logits-out "$tmp/q.logits" -t 2 > /dev/null 2>&1 &&
   "$run" "$fx/llama-q6k.gguf" --tokens "$ids" --logits-out "$tmp/qx.logits" --exact -t 2 > /dev/null 2>&1; then
  cmp -s "$tmp/q.logits" "$tmp/qx.logits" && fail "--exact gave the same bytes as the Q8 mode"
  e=$(maxrel "$tmp/qx.logits" "$fx/llama-q6k.logits" 320)
  awk -v e="$e" 'BEGIN { exit !(e != "nan" && e + 0 <= 6e-2) }' || fail "llama-q6k --exact: $e > 6e-2"
  echo "ok: llama-q6k --exact: max relative RMS $e"
else
  fail "fm-run llama-q6k"
fi

# generation with stats on a fixture (its vocabulary is a stub: ids only matter)
if "$run" "$fx/gemma3.gguf" -p "hello" -n 8 --temp 0 --seed 1 -t 2 --stats "$tmp/s.json" > "$tmp/out" 2> "$tmp/err"; then
  for k in prompt_tok_s decode_tok_s decode_tokens peak_rss_bytes expert_cache_hit_rate decode_bytes_read_per_token; do
    grep -q "\"$k\"" "$tmp/s.json" || fail "stats: no $k"
  done
  grep -q '"decode_tokens": 8' "$tmp/s.json" || fail "stats: decode_tokens is not 8: $(cat "$tmp/s.json")"
  echo "ok: generation with --stats"
else
  fail "fm-run -p: $(cat "$tmp/err")"
fi
"$run" "$fx/qwen3moe.gguf" -p "hi" -n 4 --temp 0.8 --seed 3 -t 1 --ram-budget 100M --stats "$tmp/m.json" > /dev/null 2>&1 ||
  fail "fm-run MoE generation"
grep -q '"expert_acquired": [1-9]' "$tmp/m.json" 2> /dev/null || fail "MoE stats: no experts acquired"

# same seed, same text
"$run" "$fx/qwen3moe.gguf" -p "hi" -n 6 --temp 1 --seed 5 -t 1 > "$tmp/g1" 2> /dev/null
"$run" "$fx/qwen3moe.gguf" -p "hi" -n 6 --temp 1 --seed 5 -t 1 > "$tmp/g2" 2> /dev/null
cmp -s "$tmp/g1" "$tmp/g2" || fail "--seed 5 twice gave different text"

# the real model: tokenization identical to llama.cpp's, greedy text
model=models/gemma-3-270m-q4_k_m.gguf
if [ -e "$model" ]; then
  got=$("$run" "$model" --tokenize "The capital of France is" 2> "$tmp/err")
  [ "$got" = "2 818 5279 529 7001 563" ] || fail "--tokenize: got '$got' $(cat "$tmp/err")"
  "$run" "$model" -p "The three primary colors are" -n 8 --temp 0 -t 2 > "$tmp/gem" 2> /dev/null || fail "fm-run gemma"
  grep -q "red, blue, and yellow" "$tmp/gem" || fail "gemma greedy text: $(cat "$tmp/gem")"
  echo "ok: gemma tokenize and greedy"
elif [ "${FM_NO_MODEL:-0}" != 1 ]; then
  fail "$model absent (sh scripts/get-gemma.sh, or FM_NO_MODEL=1)"
fi

# errors: usage and unreadable input are exit 2
expect() { # code description command...
  want=$1; what=$2; shift 2
  "$@" > /dev/null 2> "$tmp/err"; rc=$?
  [ $rc -eq "$want" ] || fail "$what: exit $rc, expected $want ($(cat "$tmp/err"))"
  [ -s "$tmp/err" ] || fail "$what: no message"
}
expect 2 "no model" "$run"
expect 2 "missing file" "$run" "$tmp/none.gguf" --tokens "1 2" --logits-out "$tmp/x"
expect 2 "not a model" "$run" "$tmp/a.txt" --tokens "1 2" --logits-out "$tmp/x"
expect 2 "unknown option" "$run" "$fx/llama.gguf" --frobnicate
expect 2 "--tokens without --logits-out" "$run" "$fx/llama.gguf" --tokens "1 2"
expect 2 "two modes" "$run" "$fx/llama.gguf" -p x --tokenize y
expect 2 "bad ids" "$run" "$fx/llama.gguf" --tokens "1 x" --logits-out "$tmp/x"
expect 2 "id out of range" "$run" "$fx/llama.gguf" --tokens "1 320" --logits-out "$tmp/x"
expect 2 "bad -n" "$run" "$fx/llama.gguf" -p x -n -3
expect 1 "existing output" "$run" "$fx/llama.gguf" --tokens "1 2" --logits-out "$tmp/q.logits"
[ $bad -eq 0 ] && echo "logits_arch: all ok"
[ $bad -eq 0 ]
