#!/bin/sh
# Measure-only (not CI; needs root and the cgroup v1 memory controller):
# issue 6's demonstration. A MoE model at least 3x a cgroup memory limit runs
# to completion under that limit with the same greedy output as a run without
# a limit; reports decode tok/s, expert bytes read per decoded token and the
# expert-cache hit rate at two --ram-budget values, with --io direct and
# --io cached, each from a cold page cache (sync; drop_caches).
#
#   sh bench/bigger_than_ram.sh [LIMIT_MB]          (default 1536)
# Env: BUILD          build dir with fm-run (and fm-convert) (default build)
#      FM_BENCH_DIR   where big files go (default bench/cache)
#      FM_BIG_GGUF    the model (default $FM_BENCH_DIR/big-moe.gguf, made by
#                     bench/gen_big_moe.py with FM_BIG_LAYERS layers, default
#                     14: about 5.2 GB of random-weight qwen3moe Q4_K_M)
#      FM_BENCH_GGUF  1: run on the GGUF itself instead of a bundle made by
#                     fm-convert (default: convert once, keep the bundle)
#      FM_BENCH_N     tokens to generate (default 32)
#      FM_BENCH_BUDGETS  the two --ram-budget values (default "1G 512M")
#      FM_BENCH_EXTRA 1: also LRU vs LFRU, the cgroup-derived default budget
#                     and the page-cache drop knob (FM_FADVISE) at the small budget
#      PYTHON         for the generator (default /work/venv/bin/python)
# Results: a table on stdout; every run's text, stderr and --stats JSON in
# $FM_BENCH_DIR/btr-*. The generated GGUF and bundle are kept for the next run
# (delete them by hand; with the bundle present the GGUF is not needed).
set -eu
BUILD=${BUILD:-build}
LIMIT_MB=${1:-1536}
dir=${FM_BENCH_DIR:-bench/cache}
gguf=${FM_BIG_GGUF:-$dir/big-moe.gguf}
py=${PYTHON:-/work/venv/bin/python}
N=${FM_BENCH_N:-32}
budgets=${FM_BENCH_BUDGETS:-"1G 512M"}
prompt="t1 t2 t3"
cg=/sys/fs/cgroup/memory/fm-stream-bench
run=$(cd "$BUILD" && pwd)/fm-run
[ -x "$run" ] || { echo "bigger_than_ram: $run not built"; exit 1; }
[ -d /sys/fs/cgroup/memory ] || { echo "bigger_than_ram: no cgroup v1 memory controller"; exit 1; }
mkdir -p "$dir"

model=$gguf
[ "${FM_BENCH_GGUF:-0}" = 1 ] || model=${gguf%.gguf}.fmb
if [ ! -f "$model" ] && [ ! -f "$gguf" ]; then
  echo "== generating $gguf (${FM_BIG_LAYERS:-14} layers)"
  "$py" bench/gen_big_moe.py "$gguf" "${FM_BIG_LAYERS:-14}"
fi
if [ "${FM_BENCH_GGUF:-0}" != 1 ]; then
  if [ ! -f "$model" ]; then
    [ -x "$BUILD/fm-convert" ] || { echo "bigger_than_ram: $BUILD/fm-convert not built (or FM_BENCH_GGUF=1)"; exit 1; }
    echo "== converting to $model"
    "$BUILD/fm-convert" "$gguf" -o "$model"
  fi
fi
size=$(stat -c %s "$model")
limit=$((LIMIT_MB * 1024 * 1024))
echo "model $model: $size bytes; cgroup limit $limit bytes (memory + memsw): model / limit = $(awk "BEGIN{printf \"%.2f\", $size / $limit}")"
awk "BEGIN{exit !($size >= 3 * $limit)}" || echo "WARNING: model is less than 3x the limit"

cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# run NAME LIMITED(0|1) [ENV=V ...] -- fm-run args
results=$dir/btr-results.txt
: > "$results"
one() {
  name=$1; lim=$2; shift 2
  envs=""
  while [ "$1" != "--" ]; do envs="$envs $1"; shift; done
  shift
  out=$dir/btr-$name
  cold
  if [ "$lim" = 1 ]; then
    [ -d $cg ] && rmdir $cg 2>/dev/null || true
    mkdir -p $cg
    echo $limit > $cg/memory.limit_in_bytes
    [ -f $cg/memory.memsw.limit_in_bytes ] && echo $limit > $cg/memory.memsw.limit_in_bytes
    set +e
    sh -c "echo \$\$ > $cg/cgroup.procs && exec env $envs \"\$0\" \"\$@\"" "$run" "$model" -p "$prompt" \
       -n "$N" --temp 0 --stats "$out.json" "$@" > "$out.txt" 2> "$out.err"
    rc=$?
    set -e
    peak=$(cat $cg/memory.max_usage_in_bytes)
    fails=$(cat $cg/memory.failcnt)
    ooms=$(awk '/oom_kill /{print $2}' $cg/memory.oom_control)
    rmdir $cg 2>/dev/null || true
  else
    set +e
    env $envs "$run" "$model" -p "$prompt" -n "$N" --temp 0 --stats "$out.json" "$@" > "$out.txt" 2> "$out.err"
    rc=$?
    set -e
    peak=-; fails=-; ooms=-
  fi
  same=$(cmp -s "$out.txt" "$dir/btr-ram.txt" && echo yes || echo NO)
  if [ $rc -ne 0 ] || [ ! -f "$out.json" ]; then
    echo "$name: fm-run exit $rc (see $out.err)" | tee -a "$results"
    tail -3 "$out.err"
    return 0
  fi
  "$py" - "$out.json" "$name" "$lim" "$peak" "$fails" "$ooms" "$same" "$*" "$envs" <<'EOF' | tee -a "$results"
import json, sys
j = json.load(open(sys.argv[1]))
name, lim, peak, fails, ooms, same, args, envs = sys.argv[2:10]
pk = "-" if peak == "-" else "%.0f" % (int(peak) / 2**20)
print(f"{name:22s} limit={'yes' if lim == '1' else 'no ':3s} {args:28s}{envs:14s} prompt {j['prompt_tok_s']:5.2f} tok/s  "
      f"decode {j['decode_tok_s']:5.2f} tok/s  {j['decode_bytes_read_per_token'] / 2**20:7.1f} MiB/token  "
      f"hit {j['decode_expert_cache_hit_rate']:.3f}  cache {j['expert_cache_bytes'] / 2**20:6.0f} MiB  "
      f"rss {j['peak_rss_bytes'] / 2**20:5.0f} MiB  cg-peak {pk} MiB  failcnt {fails}  oom-kills {ooms}  "
      f"same-output {same}")
EOF
}

# the reference: no limit, default budget (everything fits), cached I/O
one ram 0 -- --io cached
grep -q . "$dir/btr-ram.txt" || { echo "reference run produced no text"; exit 1; }
for b in $budgets; do
  for io in direct cached; do
    one "lim-$b-$io" 1 -- --ram-budget "$b" --io "$io"
  done
done
if [ "${FM_BENCH_EXTRA:-0}" = 1 ]; then
  small=${budgets##* }
  for b in $budgets; do
    one "lim-$b-direct-lru" 1 FM_EVICT=lru -- --ram-budget "$b" --io direct
  done
  one "lim-$small-cached-fadv" 1 FM_FADVISE=1 -- --ram-budget "$small" --io cached
  one "lim-default-direct" 1 -- --io direct
  one "lim-$small-direct-io4" 1 -- --ram-budget "$small" --io direct --io-threads 4
fi
echo "== reference output (first line):"
head -c 300 "$dir/btr-ram.txt"; echo
echo "results in $results"
