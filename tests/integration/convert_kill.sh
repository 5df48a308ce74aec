#!/bin/sh
# Atomic output (issue 5, must-show 5; specs/convert.md C8.1): fm-convert and fm-requant write
# OUT.tmp and rename it only when complete. The test hook
# FM_TEST_SLOW_WRITE=MS makes the writer sleep MS per item, so that a kill
# lands mid-way:
#  * SIGKILL part way: no file under OUT (a stale OUT.tmp may remain);
#    a re-run succeeds (it truncates the stale OUT.tmp), passes fm-verify and
#    is byte-identical to an uninterrupted run (SOURCE_DATE_EPOCH fixed);
#  * SIGTERM part way: neither OUT nor OUT.tmp remain (the handler unlinks it);
#  * the input is unchanged (sha256 before and after).
set -u
BUILD=${BUILD:-build}
conv=$BUILD/fm-convert
rq=$BUILD/fm-requant
ver=$BUILD/fm-verify
src=tests/fixtures/convert/qwen3moe-f32
for b in "$conv" "$rq" "$ver"; do [ -x "$b" ] || { echo "convert_kill: $b not built"; exit 1; }; done
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
bad=0
fail() { echo "FAIL: $*"; bad=$((bad + 1)); }
SOURCE_DATE_EPOCH=1700000000
export SOURCE_DATE_EPOCH
in_sha=$(cat "$src"/* | sha256sum)

# the reference under the same output name (the command line is in the provenance)
"$conv" "$src" -o "$tmp/out.fmb" -t 2 > /dev/null 2>&1 || fail "reference conversion failed"
mv "$tmp/out.fmb" "$tmp/ref.fmb"

killed_run() { # signal tool args...   (output $tmp/out.fmb)
  sig=$1; shift
  rm -f "$tmp/out.fmb" "$tmp/out.fmb.tmp"
  FM_TEST_SLOW_WRITE=150 "$@" -o "$tmp/out.fmb" > /dev/null 2>&1 &
  pid=$!
  i=0
  while [ ! -s "$tmp/out.fmb.tmp" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  sleep 0.5
  if ! kill -0 $pid 2> /dev/null; then fail "$*: finished before the kill (too fast?)"; return; fi
  kill -s "$sig" $pid
  wait $pid 2> /dev/null
  [ -e "$tmp/out.fmb" ] && fail "$sig: $tmp/out.fmb exists after the kill"
  if [ "$sig" = TERM ] && [ -e "$tmp/out.fmb.tmp" ]; then fail "TERM: out.fmb.tmp left behind"; fi
  echo "ok: $sig mid-way ($*): no out.fmb$([ -e "$tmp/out.fmb.tmp" ] && echo ', stale out.fmb.tmp')"
}

killed_run KILL "$conv" "$src" -t 2
"$conv" "$src" -o "$tmp/out.fmb" -t 2 > /dev/null 2>&1 || fail "re-run after SIGKILL failed"
[ -e "$tmp/out.fmb.tmp" ] && fail "re-run left out.fmb.tmp"
"$ver" "$tmp/out.fmb" > /dev/null 2>&1 || fail "re-run output fails fm-verify"
cmp -s "$tmp/out.fmb" "$tmp/ref.fmb" || fail "re-run output differs from an uninterrupted run"
killed_run TERM "$conv" "$src" -t 2

killed_run KILL "$rq" "$tmp/ref.fmb" --experts q2 --group 32 -t 1
"$rq" "$tmp/ref.fmb" -o "$tmp/out.fmb" --experts q2 --group 32 > /dev/null 2>&1 || fail "fm-requant re-run failed"
"$ver" "$tmp/out.fmb" > /dev/null 2>&1 || fail "fm-requant re-run output fails fm-verify"
killed_run TERM "$rq" "$tmp/ref.fmb" --experts q2 --group 32 -t 1

[ "$(cat "$src"/* | sha256sum)" = "$in_sha" ] || fail "input changed"
[ $bad -eq 0 ] && echo "convert_kill: all ok"
[ $bad -eq 0 ]
