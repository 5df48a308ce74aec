#!/bin/sh
# Measure-only (not CI; needs root and the cgroup v1 memory controller):
# fm-convert of a GGUF at least twice the size of a cgroup memory limit
# (issue 5, must-show 4). Reports the model size, the limit, peak RSS of
# fm-convert (/usr/bin/time -v), the group's peak usage (page cache
# included: memory.max_usage_in_bytes) and failcnt, and MB/s against
# `dd oflag=direct conv=fsync` writing the same amount to the same disk.
#
#   sh bench/convert_cgroup.sh [LIMIT_MB]        (default 2048)
# Env: BUILD          build dir with fm-convert (default build)
#      FM_BIG_GGUF    the input (default bench/cache/convert-big.gguf, made
#                     by bench/gen_big_moe.py with FM_BIG_LAYERS layers,
#                     default 16: about 6 GB)
#      FM_BENCH_DIR   where output and dd files go (default bench/cache)
#      FM_BENCH_RUNS  "direct cached" (default both): fm-convert --io direct
#                     (O_DIRECT reads, output page cache dropped behind) and
#                     --io cached (plain page-cache I/O)
#      FM_BENCH_THREADS fm-convert -t (default: fm-convert's own default)
#      PYTHON         for the generator (default /work/venv/bin/python)
# Big files (output, dd) are deleted afterwards; a generated input is kept
# in bench/cache for the next run (delete it by hand).
set -eu
BUILD=${BUILD:-build}
LIMIT_MB=${1:-2048}
dir=${FM_BENCH_DIR:-bench/cache}
in=${FM_BIG_GGUF:-$dir/convert-big.gguf}
py=${PYTHON:-/work/venv/bin/python}
runs=${FM_BENCH_RUNS:-"direct cached"}
cg=/sys/fs/cgroup/memory/fm-convert-bench
conv=$(cd "$(dirname "$BUILD/fm-convert")" && pwd)/fm-convert
[ -x "$conv" ] || { echo "convert_cgroup: $conv not built"; exit 1; }
[ -d /sys/fs/cgroup/memory ] || { echo "convert_cgroup: no cgroup v1 memory controller"; exit 1; }
mkdir -p "$dir"
if [ ! -f "$in" ]; then
  echo "== generating $in (${FM_BIG_LAYERS:-16} layers)"
  "$py" bench/gen_big_moe.py "$in" "${FM_BIG_LAYERS:-16}"
fi
size=$(stat -c %s "$in")
limit=$((LIMIT_MB * 1024 * 1024))
echo "== input $in: $size bytes ($(awk -v s="$size" -v l="$limit" 'BEGIN { printf "%.2f", s / l }') x the limit)"
[ "$size" -ge $((2 * limit)) ] || echo "   warning: the input is smaller than twice the limit"
out=$dir/convert-big.fmb

cleanup() {
  rm -f "$out" "$out.tmp" "$dir/dd.tmp"
  [ -d "$cg" ] && rmdir "$cg" 2> /dev/null || true
}
trap cleanup EXIT

echo "== dd: $size bytes, bs=16M, oflag=direct conv=fsync"
count=$(( (size + 16777215) / 16777216 ))
sync
dd_line=$(dd if=/dev/zero of="$dir/dd.tmp" bs=16M count=$count oflag=direct conv=fsync 2>&1 | tail -n 1)
rm -f "$dir/dd.tmp"
echo "   $dd_line"

for mode in $runs; do
  rm -f "$out" "$out.tmp"
  [ -d "$cg" ] && rmdir "$cg"
  mkdir "$cg"
  echo "$limit" > "$cg/memory.limit_in_bytes"
  [ -f "$cg/memory.memsw.limit_in_bytes" ] && echo "$limit" > "$cg/memory.memsw.limit_in_bytes"
  sync
  echo 3 > /proc/sys/vm/drop_caches
  echo "== fm-convert under a ${LIMIT_MB} MiB cgroup limit ($mode)"
  t0=$(date +%s.%N)
  set +e
  sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$cg" \
    /usr/bin/time -v "$conv" "$in" -o "$out" --io "$mode" ${FM_BENCH_THREADS:+-t $FM_BENCH_THREADS} > "$dir/conv.log" 2>&1
  rc=$?
  set -e
  t1=$(date +%s.%N)
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$dir/conv.log")
  peak=$(cat "$cg/memory.max_usage_in_bytes")
  failcnt=$(cat "$cg/memory.failcnt")
  oom=$(awk '$1 == "oom_kill" { print $2 }' "$cg/memory.oom_control" 2> /dev/null || true)
  osz=$(stat -c %s "$out" 2> /dev/null || echo 0)
  echo "   exit $rc; $(grep '^fm-convert:' "$dir/conv.log" | head -n 1)"
  awk -v t0="$t0" -v t1="$t1" -v o="$osz" -v rss="$rss" -v peak="$peak" -v lim="$limit" -v f="$failcnt" -v k="${oom:-?}" 'BEGIN {
    printf "   wall %.1f s, output %.0f bytes, %.0f MB/s written; peak RSS %.0f MiB; group peak %.0f MiB of %.0f MiB (failcnt %s, oom_kill %s)\n",
      t1 - t0, o, o / (t1 - t0) / 1e6, rss / 1024, peak / 1048576, lim / 1048576, f, k }'
  [ $rc -eq 0 ] || tail -n 5 "$dir/conv.log"
  rm -f "$out" "$out.tmp"
  rmdir "$cg"
done
