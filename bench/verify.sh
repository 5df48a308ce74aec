#!/bin/sh
# fm-verify throughput on a bundle larger than the page cache available to it,
# against `sha256sum` of the same file and `dd` read speed (specs/bundle.md
# B18, issue 4 must-show 5). Every measurement starts with a cold cache
# (sync; echo 3 > /proc/sys/vm/drop_caches) and runs inside a cgroup-v1
# memory group limited to MEM_LIMIT, so the file cannot be served from cache.
#
# Env: BUILD (build dir, default build), DIR (scratch dir, default bench/cache),
#      GIB (bundle size, default 5), MEM_LIMIT (default 2G), THREADS (list of
#      fm-verify -t values, default "1 <nproc>"), ROUNDS (default 3: every
#      command runs once per round, rounds interleaved, the median is used),
#      KEEP=1 keeps the bundle.
# Needs root (drop_caches, cgroup). Prints one line per run and the ratios.
set -eu
BUILD=${BUILD:-build}
DIR=${DIR:-bench/cache}
GIB=${GIB:-5}
MEM_LIMIT=${MEM_LIMIT:-2G}
NPROC=$(nproc)
THREADS=${THREADS:-"1 $NPROC"}
ROUNDS=${ROUNDS:-3}
mkdir -p "$DIR"
B="$DIR/verify-bench.fmb"
CG=/sys/fs/cgroup/memory/fm-bench-verify

cleanup() {
  [ "${KEEP:-0}" = 1 ] || rm -f "$B" "$B.tmp"
  [ -d "$CG" ] && rmdir "$CG" 2>/dev/null || true
}
trap cleanup EXIT

if [ ! -f "$B" ]; then
  echo "making a $GIB GiB bundle of random data: $B"
  t0=$(date +%s.%N)
  "$BUILD/tests/test_bundle" mkbundle "$B" --mib $((GIB * 1024)) --force
  t1=$(date +%s.%N)
  echo "  writer: $(echo "$t0 $t1 $(stat -c %s "$B")" | awk '{printf "%.1f s, %.0f MB/s (random data generation + SHA-256 + write + fsync)", $2-$1, $3/($2-$1)/1e6}')"
fi
SIZE=$(stat -c %s "$B")

incg=""
if [ -d /sys/fs/cgroup/memory ] && mkdir -p "$CG" 2>/dev/null; then
  echo "$MEM_LIMIT" >"$CG/memory.limit_in_bytes"
  [ -f "$CG/memory.memsw.limit_in_bytes" ] && echo "$MEM_LIMIT" >"$CG/memory.memsw.limit_in_bytes" 2>/dev/null || true
  incg=1
  echo "cgroup $CG: memory limit $(cat "$CG/memory.limit_in_bytes") bytes; bundle $SIZE bytes"
else
  echo "warning: no cgroup v1 memory controller: relying on drop_caches only"
fi

# run NAME CMD...: cold cache, inside the cgroup, wall time -> MB/s
RES=$(mktemp)
run() {
  name=$1; shift
  sync; echo 3 >/proc/sys/vm/drop_caches
  rc=0
  t0=$(date +%s.%N)
  if [ -n "$incg" ]; then
    sh -c 'echo $$ > "$0/cgroup.procs"; exec "$@"' "$CG" "$@" >/tmp/fm-bench-verify.out 2>&1 || rc=$?
  else
    "$@" >/tmp/fm-bench-verify.out 2>&1 || rc=$?
  fi
  t1=$(date +%s.%N)
  s=$(echo "$t0 $t1" | awk '{printf "%.2f", $2-$1}')
  mbs=$(echo "$SIZE $s" | awk '{printf "%.0f", $1/$2/1e6}')
  printf '  %-26s %7s s  %6s MB/s  (exit %d)  %s\n' "$name" "$s" "$mbs" $rc "$*"
  echo "$name|$mbs" >>"$RES"
  [ $rc -eq 0 ] || { cat /tmp/fm-bench-verify.out; exit 1; }
}

echo "cold-cache reads of $SIZE bytes ($(awk "BEGIN{printf \"%.2f\", $SIZE/1073741824}") GiB), $NPROC CPUs, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
r=1
while [ $r -le "$ROUNDS" ]; do
  echo "round $r:"
  run dd dd if="$B" of=/dev/null bs=8M
  run sha256sum sha256sum "$B"
  for t in $THREADS; do
    run "fm-verify -t $t" "$BUILD/fm-verify" -t "$t" "$B"
  done
  run "fm-verify -t $NPROC --direct" "$BUILD/fm-verify" -t "$NPROC" --direct "$B"
  run "fm-verify --quick" "$BUILD/fm-verify" --quick "$B"
  r=$((r + 1))
done
tail -n 1 /tmp/fm-bench-verify.out
echo "medians over $ROUNDS rounds, and ratios:"
awk -F'|' '
  { v[$1] = v[$1] " " $2; if (!($1 in seen)) { seen[$1] = 1; order[n++] = $1 } }
  END {
    for (i = 0; i < n; i++) {
      k = order[i]; m = split(substr(v[k], 2), a, " ")
      for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++) if (a[y] + 0 < a[x] + 0) { t = a[x]; a[x] = a[y]; a[y] = t }
      med[k] = a[int((m + 1) / 2)]
      printf "  %-26s %6d MB/s   (runs:%s)\n", k, med[k], v[k]
    }
    for (i = 0; i < n; i++) {
      k = order[i]
      if (k ~ /^fm-verify/ && k !~ /quick/)
        printf "  %-26s %.2fx sha256sum, %.2fx dd\n", k, med[k] / med["sha256sum"], med[k] / med["dd"]
    }
  }' "$RES"
rm -f /tmp/fm-bench-verify.out "$RES"
