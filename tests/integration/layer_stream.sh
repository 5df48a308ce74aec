#!/bin/sh
# Dense layers streamed from the file (issue 6: "dense models stream whole
# layers the same way when they do not fit"), and the expert sources
# fm-run picks with --io. fm-run keeps the first N
# layers' weight matrices resident (--resident-layers N, or as many as
# --ram-budget allows) and reads the others through the stream source each
# token; the numbers must not change:
#   1. every architecture fixture (GGUF), N = 0 and 1, --io cached and
#      direct: logits byte-identical to the all-resident run;
#   2. a bundle: the same, with --verify-experts checking each streamed
#      tensor's SHA-256; one flipped byte in a streamed tensor fails the run
#      naming that tensor (spec bundle.md B11: per-tensor digests);
#   3. --ram-budget below the minimum (KV cache + scratch + resident tensors +
#      4 layer buffers) exits 2 saying so; the budget alone (no
#      --resident-layers) makes fm-run stream when the layers do not fit;
#   4. the real Gemma 3 270M (when present): greedy text under the smallest
#      budget (every layer streamed) equals the unlimited run's.
set -u
BUILD=${BUILD:-build}
run=$BUILD/fm-run
fx=tests/fixtures/arch
[ -x "$run" ] || { echo "layer_stream: $run not built"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
bad=0
fail() { echo "FAIL: $*"; bad=$((bad + 1)); }
ids="1 5 9 2 7 3 11 4 6 8 10 12"

for f in llama qwen2 qwen3 gemma3 mixtral qwen2moe qwen3moe; do
  if ! "$run" "$fx/$f.gguf" --tokens "$ids" --logits-out "$tmp/$f.ref" -t 2 > /dev/null 2> "$tmp/err"; then
    fail "$f resident: $(cat "$tmp/err")"; continue
  fi
  for n in 0 1; do
    for io in cached direct; do
      if ! "$run" "$fx/$f.gguf" --tokens "$ids" --logits-out "$tmp/$f.s" --force -t 2 --resident-layers $n --io $io \
           > /dev/null 2> "$tmp/err"; then
        fail "$f --resident-layers $n --io $io: $(cat "$tmp/err")"; continue
      fi
      grep -q "layers: $n of [0-9]* resident" "$tmp/err" || fail "$f N=$n: no layer streaming line: $(cat "$tmp/err")"
      cmp -s "$tmp/$f.ref" "$tmp/$f.s" || fail "$f --resident-layers $n --io $io: logits differ"
    done
  done
  echo "ok: $f: logits identical with 0 and 1 resident layers, cached and direct"
done

# expert sources: --io auto (the fixtures fit in memory: mapped), mmap,
# cached and direct (the stream source) give the same logits
for f in mixtral qwen2moe qwen3moe; do
  for io in auto mmap cached direct; do
    if ! "$run" "$fx/$f.gguf" --tokens "$ids" --logits-out "$tmp/$f.io" --force -t 2 --io $io > /dev/null 2> "$tmp/err"; then
      fail "$f --io $io: $(cat "$tmp/err")"; continue
    fi
    case $io in auto | mmap) want="experts: mapped" ;; *) want="experts: stream" ;; esac
    grep -q "$want" "$tmp/err" || fail "$f --io $io: expected \"$want\": $(cat "$tmp/err")"
    cmp -s "$tmp/$f.ref" "$tmp/$f.io" || fail "$f --io $io: logits differ"
  done
  echo "ok: $f: --io auto/mmap (mapped) and cached/direct (stream): identical logits"
done

# 2. bundle, verified streaming, then a damaged streamed tensor
b=$tmp/llama.fmb
if "$BUILD/fm-convert" "$fx/llama.gguf" -o "$b" > /dev/null 2>&1; then
  "$run" "$b" --tokens "$ids" --logits-out "$tmp/b.s" -t 2 --resident-layers 0 --verify-experts > /dev/null 2> "$tmp/err" ||
    fail "bundle streamed: $(cat "$tmp/err")"
  cmp -s "$tmp/llama.ref" "$tmp/b.s" || fail "bundle streamed: logits differ from the GGUF's"
  off=$("$BUILD/fm-inspect" "$b" | awk '$1 == "blk.1.attn_q.weight" { print $5 }')
  if [ -n "$off" ]; then
    cp "$b" "$tmp/bad.fmb"
    printf '\377' | dd of="$tmp/bad.fmb" bs=1 seek=$((off + 100)) conv=notrunc 2> /dev/null
    "$run" "$tmp/bad.fmb" --tokens "$ids" --logits-out "$tmp/bad.s" -t 2 --resident-layers 0 --verify-experts \
      > /dev/null 2> "$tmp/err"
    rc=$?
    [ $rc -eq 1 ] || fail "damaged streamed tensor: exit $rc, expected 1"
    grep -q "blk.1.attn_q.weight: SHA-256 mismatch" "$tmp/err" || fail "damaged tensor not named: $(cat "$tmp/err")"
    [ -e "$tmp/bad.s" ] && fail "damaged tensor: logits file written"
    echo "ok: bundle: verified streaming identical; damage named: $(grep SHA-256 "$tmp/err" | head -c 160)"
  else
    fail "fm-inspect: no offset for blk.1.attn_q.weight"
  fi
else
  fail "fm-convert llama.gguf"
fi

# 3. budget: too small, then the budget alone chooses streaming
"$run" "$fx/llama.gguf" --tokens "$ids" --logits-out "$tmp/x" --ram-budget 1M > /dev/null 2> "$tmp/err"
rc=$?
[ $rc -eq 2 ] && grep -q "below the minimum" "$tmp/err" || fail "--ram-budget 1M: exit $rc: $(cat "$tmp/err")"

# 4. the real model, when present: every layer streamed by the budget alone
gg=models/gemma-3-270m-q4_k_m.gguf
if [ -f "$gg" ]; then
  p="The history of the city of Rome begins"
  "$run" "$gg" -p "$p" -n 24 --temp 0 -t 2 > "$tmp/g.ref" 2> "$tmp/err" || fail "gemma: $(cat "$tmp/err")"
  "$run" "$gg" -p "$p" -n 24 --temp 0 -t 2 --ram-budget 1 > /dev/null 2> "$tmp/err"
  min=$(sed -n 's/.*below the minimum \([0-9]*\) B.*/\1/p' "$tmp/err")
  if [ -n "$min" ]; then
    "$run" "$gg" -p "$p" -n 24 --temp 0 -t 2 --ram-budget "$min" --io direct > "$tmp/g.s" 2> "$tmp/err" ||
      fail "gemma at the minimum budget: $(cat "$tmp/err")"
    grep -q "layers: 0 of 18 resident" "$tmp/err" || fail "gemma at $min B: not every layer streamed: $(cat "$tmp/err")"
    cmp -s "$tmp/g.ref" "$tmp/g.s" || fail "gemma: text differs under a $min-byte budget"
    # cached reads: each decoded token reads every streamed layer once (a
    # prefetch that evicted its own read-ahead would read more)
    "$run" "$gg" -p "$p" -n 24 --temp 0 -t 2 --ram-budget "$min" --stats "$tmp/g.json" > "$tmp/g.c" 2> "$tmp/err" ||
      fail "gemma cached: $(cat "$tmp/err")"
    cmp -s "$tmp/g.ref" "$tmp/g.c" || fail "gemma cached: text differs"
    tr -d '\n ' < "$tmp/g.json" | awk -F'[,{}]' '{ for (i = 1; i <= NF; i++) { split($i, kv, ":"); gsub(/"/, "", kv[1]); v[kv[1]] = kv[2] } }
      END { r = v["decode_layer_bytes_read_per_token"] / v["layer_bytes_streamed"]; printf "read/streamed per token %.4f\n", r;
            exit !(r > 0.98 && r < 1.02) }' > "$tmp/ratio" || fail "gemma: layer bytes read per token off: $(cat "$tmp/ratio")"
    echo "ok: gemma cached: $(cat "$tmp/ratio")"
    echo "ok: gemma3-270m: same greedy text with every layer streamed (--ram-budget $min): $(grep 'read per decoded' "$tmp/err" | sed 's/.*resident, //')"
  else
    fail "gemma: no minimum in: $(cat "$tmp/err")"
  fi
else
  echo "skip: $gg absent (make check fetches it)"
fi

[ $bad -eq 0 ] && echo "layer_stream: all ok"
[ $bad -eq 0 ]
