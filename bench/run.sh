#!/bin/sh
# bench/run.sh: fm vs llama.cpp on a Qwen3-30B-A3B-shaped MoE bigger than
# memory (issue 7). One command: `sh bench/run.sh` (`make bench` runs it).
# Measure-only, not CI: needs root (drop_caches, cgroup v1 memory
# controller), /work/venv/bin/python with gguf + llama-cpp-python 0.3.36,
# gnuplot, about 45 GB free disk for the cache (first run) and 1-2 hours on
# 2 cores. Writes bench/RESULTS.md, bench/tok_s_vs_limit.png and
# bench/results/*.json(l); see bench/README.md.
#
# Env:
#   BUILD                  build dir of fm-run/fm-convert/fm-verify (default build)
#   PYTHON                 default /work/venv/bin/python
#   FM_BENCH_CACHE         models, bundles and raw results (default /work/bench-cache;
#                          keep it outside the repo)
#   FM_BENCH_STAGES        default "models disk tools small big zipf report"
#   FM_BENCH_N             decode tokens per run (default 32)
#   FM_BENCH_PROMPT        prompt words (one token each, + BOS; default 31)
#   FM_BENCH_LIMITS        limits for the big model (default "0 8G 4G 2G"; 0 = none)
#   FM_BENCH_SMALL_LIMITS  limits for the 8-layer model (default "0 1G")
#   FM_BENCH_LLAMA_TIMEOUT wall-clock cap of one llama.cpp run, s (default 480)
#   FM_BENCH_WARM          warm repeats in RAM (default 3: best of 3)
#   FM_BENCH_ZIPF          routing-locality values for the zipf stage (default "0.7 1.4")
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PYTHON:-/work/venv/bin/python}
CACHE=${FM_BENCH_CACHE:-/work/bench-cache}
STAGES=${FM_BENCH_STAGES:-"models disk tools small big zipf report"}
N=${FM_BENCH_N:-32}
PW=${FM_BENCH_PROMPT:-31}
LIMITS=${FM_BENCH_LIMITS:-"0 8G 4G 2G"}
SMALL_LIMITS=${FM_BENCH_SMALL_LIMITS:-"0 1G"}
LT=${FM_BENCH_LLAMA_TIMEOUT:-480}
WARM=${FM_BENCH_WARM:-3}
ZIPF=${FM_BENCH_ZIPF:-"0.7 1.4"}
RES=$CACHE/results
S=$CACHE/qwen3moe-8L
B=$CACHE/qwen3moe-48L

has() { case " $STAGES " in *" $1 "*) return 0 ;; esac; return 1; }
say() { echo "== $(date +%H:%M:%S) $*"; }

[ "$(id -u)" = 0 ] || { echo "bench/run.sh: needs root (drop_caches, cgroups)"; exit 1; }
[ -d /sys/fs/cgroup/memory ] || { echo "bench/run.sh: no cgroup v1 memory controller"; exit 1; }
mkdir -p "$CACHE" "$RES/logs" bench/results
if has report && ! command -v gnuplot > /dev/null; then
  say "installing gnuplot-nox (the report stage draws the plot with it)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnuplot-nox > /dev/null
fi

say "building fm tools and bench/disk in $BUILD"
make -s BUILD="$BUILD" "$BUILD/fm-run" "$BUILD/fm-convert" "$BUILD/fm-verify"
mkdir -p "$BUILD/bench"
${CC:-cc} -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
  -Wstrict-prototypes -Wmissing-prototypes -ffp-contract=off -O2 -pthread -o "$BUILD/bench/disk" bench/disk.c
FMRUN=$BUILD/fm-run
CONV=$BUILD/fm-convert
VERIFY=$BUILD/fm-verify

# An interrupted zipf stage leaves the 8-layer GGUF with biased routers: undo.
if [ -f "$S.gguf.zipf" ]; then
  say "restoring the 8-layer model's routers (zipf $(cat "$S.gguf.zipf") -> 0)"
  "$PY" bench/gen_qwen3moe.py --set-router "$S.gguf" --zipf 0
  rm -f "$S.gguf.zipf" "$S-zipf.fmb"
fi

free_gb() { df -P -B1G "$CACHE" | awk 'NR == 2 { print $4 }'; }

if has models; then
  # generated once, cached: the 8-layer model (3.5 GB) and the 48-layer one (18.6 GB)
  if [ ! -f "$S.gguf" ]; then
    say "generating $S.gguf"
    "$PY" bench/gen_qwen3moe.py "$S.gguf" --layers 8
  fi
  if [ ! -f "$S.fmb" ]; then
    say "converting $S.gguf"
    "$CONV" "$S.gguf" -o "$S.fmb" -t 2
  fi
  if [ ! -f "$B.gguf" ]; then
    need=$(( ${FM_BENCH_BIG_GB:-19} * 2 + 4 ))
    [ "$(free_gb)" -ge "$need" ] || { echo "bench/run.sh: $CACHE needs $need GB free for the 48-layer GGUF + bundle, has $(free_gb) GB"; exit 1; }
    say "generating $B.gguf"
    "$PY" bench/gen_qwen3moe.py "$B.gguf" --layers 48
  fi
  if [ ! -f "$B.fmb" ]; then
    [ "$(free_gb)" -ge 20 ] || { echo "bench/run.sh: $CACHE needs 20 GB free for the 48-layer bundle"; exit 1; }
    say "converting $B.gguf (cold)"
    sync; echo 3 > /proc/sys/vm/drop_caches
    "$CONV" "$B.gguf" -o "$B.fmb" -t 2 2>&1 | tee "$RES/convert-48L.txt"
  fi
fi
"$PY" bench/bench.py meta "$RES/meta.json" "$S.gguf" "$B.gguf"

if has disk; then
  say "disk (direct I/O on $B.gguf)"
  "$PY" bench/bench.py disk "$B.gguf" "$RES/disk.json" --disk-bin "$BUILD/bench/disk"
fi

if has tools; then
  say "fm-convert / fm-verify vs dd / sha256sum on $S.gguf"
  "$PY" bench/bench.py tools "$S.gguf" "$S.fmb" "$RES/tools.json" --convert "$CONV" --verify "$VERIFY" \
    --threads 2 --rounds "${FM_BENCH_TOOL_ROUNDS:-3}"
fi

matrix() { # tag gguf bundle out limits threads runs warm extra...
  tag=$1 g=$2 b=$3 o=$4 l=$5 t=$6 r=$7 wr=$8
  shift 8
  "$PY" bench/bench.py matrix --tag "$tag" --gguf "$g" --bundle "$b" --out "$o" --logdir "$RES/logs" \
    --fm-run "$FMRUN" --limits "$l" --threads "$t" --runs "$r" -n "$N" --prompt-words "$PW" \
    --warm-repeats "$wr" --llama-timeout "$LT" --disk-probe "$BUILD/bench/disk" "$@"
}

if has small; then
  say "8-layer model: in RAM (1 and 2 threads, best of $WARM warm) and under $SMALL_LIMITS"
  rm -f "$RES/runs-8L.jsonl"
  for l in $SMALL_LIMITS; do
    if [ "$l" = 0 ]; then
      matrix 8L "$S.gguf" "$S.fmb" "$RES/runs-8L.jsonl" 0 "1 2" "fm:stream llama:default llama:lazy" "$WARM" \
        --llama-lazy-unlimited
    else
      matrix 8L "$S.gguf" "$S.fmb" "$RES/runs-8L.jsonl" "$l" 2 "fm:stream llama:lazy" 1
    fi
  done
fi

if has big; then
  say "48-layer model: limits $LIMITS"
  rm -f "$RES/runs-48L.jsonl"
  for l in $LIMITS; do
    if [ "$l" = 0 ]; then
      matrix 48L "$B.gguf" "$B.fmb" "$RES/runs-48L.jsonl" 0 "1 2" "fm:stream fm:direct llama:default llama:lazy" 1 \
        --llama-lazy-unlimited
    else
      matrix 48L "$B.gguf" "$B.fmb" "$RES/runs-48L.jsonl" "$l" 2 "fm:stream llama:lazy" 1
      # fm with 1 thread too (on 2 cores its I/O threads compete with 2 compute threads)
      matrix 48L "$B.gguf" "$B.fmb" "$RES/runs-48L.jsonl" "$l" 1 "fm:stream" 1 --all-threads-limited
    fi
  done
fi

if has zipf; then
  say "routing locality on the 8-layer model: zipf $ZIPF under 1G"
  rm -f "$RES/zipf.jsonl"
  for a in $ZIPF; do
    echo "$a" > "$S.gguf.zipf"
    "$PY" bench/gen_qwen3moe.py --set-router "$S.gguf" --zipf "$a"
    "$CONV" "$S.gguf" -o "$S-zipf.fmb" -t 2 --force > /dev/null
    matrix "8L-zipf$a" "$S.gguf" "$S-zipf.fmb" "$RES/zipf.jsonl" 1G 2 "fm:stream llama:lazy" 1 --zipf "$a"
  done
  "$PY" bench/gen_qwen3moe.py --set-router "$S.gguf" --zipf 0
  rm -f "$S.gguf.zipf" "$S-zipf.fmb"
fi

if has report; then
  say "report"
  cp "$RES"/meta.json "$RES"/disk.json bench/results/
  for f in tools.json runs-8L.jsonl runs-48L.jsonl zipf.jsonl; do
    [ -f "$RES/$f" ] && cp "$RES/$f" bench/results/
  done
  "$PY" bench/report.py bench/results bench
  ram=$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
  gnuplot -e "dat='bench/results/plot.dat'; out='bench/tok_s_vs_limit.png'; ram=$ram" bench/plot.gp
  say "wrote bench/RESULTS.md and bench/tok_s_vs_limit.png"
fi
