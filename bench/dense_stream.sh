#!/bin/sh
# Dense layer streaming under a memory limit (issue 6): a ~1.5 GB dense
# llama-shaped model (bench/gen_dense.py, random Q8_0) runs under a cgroup v1
# limit a third of its size with the same greedy output as without a limit;
# prints tok/s, layer bytes read per token and peak RSS for --io cached and
# direct, cold cache. Needs root (cgroups, drop_caches) and /work/venv/bin/python
# with gguf 0.19. Usage: sh bench/dense_stream.sh [LIMIT_MB] (default 512).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PYTHON:-/work/venv/bin/python}
CACHE=${FM_BENCH_CACHE:-/work/bench-cache}
LIM=${1:-512}
[ "$(id -u)" = 0 ] || { echo "dense_stream.sh: needs root"; exit 1; }
make -s BUILD="$BUILD" "$BUILD/fm-run" "$BUILD/fm-convert"
G=$CACHE/dense-32L.gguf
B=$CACHE/dense-32L.fmb
[ -f "$G" ] || "$PY" bench/gen_dense.py "$G"
[ -f "$B" ] || "$BUILD/fm-convert" "$G" -o "$B" > /dev/null
CG=/sys/fs/cgroup/memory/fm-dense-$LIM
mkdir -p "$CG"
echo $((LIM << 20)) > "$CG/memory.limit_in_bytes"
echo $((LIM << 20)) > "$CG/memory.memsw.limit_in_bytes" 2> /dev/null || true
echo "model: $(stat -c %s "$B") bytes bundle; limit ${LIM} MiB ($(awk -v b="$(stat -c %s "$B")" -v l="$LIM" 'BEGIN { printf "%.2f", b / (l * 1048576) }')x smaller)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
P="hello world, this is a test"
run() { # name limited io
  sync; echo 3 > /proc/sys/vm/drop_caches
  if [ "$2" = 1 ]; then
    sh -c "echo \$\$ > $CG/cgroup.procs; exec $BUILD/fm-run $B -p '$P' -n 24 --temp 0 -t 2 --io $3 --stats $out/$1.json" \
      > "$out/$1.txt" 2> "$out/$1.err"
  else
    "$BUILD/fm-run" "$B" -p "$P" -n 24 --temp 0 -t 2 --io "$3" --stats "$out/$1.json" > "$out/$1.txt" 2> "$out/$1.err"
  fi
  echo "$1: rc $? $(grep -o 'layers: [0-9]* of [0-9]* resident' "$out/$1.err") $(tail -1 "$out/$1.err" | sed 's/^fm-run: //')"
}
run unlimited 0 cached
run limited-cached 1 cached
run limited-direct 1 direct
ok=0
for r in limited-cached limited-direct; do
  if cmp -s "$out/unlimited.txt" "$out/$r.txt"; then echo "$r: same greedy text as unlimited"; else echo "$r: TEXT DIFFERS"; ok=1; fi
done
echo "cgroup peak: $(($(cat "$CG/memory.max_usage_in_bytes") >> 20)) MiB, failcnt $(cat "$CG/memory.failcnt")"
exit $ok
