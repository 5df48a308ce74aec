#!/bin/sh
# Runs every unit test binary, fuzz replay over the corpora, and every
# integration script. Prints one "N passed, N failed" line at the end.
# Env: BUILD (build dir), SAN (1 under sanitizers).
BUILD=${BUILD:-build}
export BUILD
pass=0; fail=0; failed=""
run() { # name, command...
  name=$1; shift
  out=$("$@" 2>&1); rc=$?
  if [ $rc -eq 0 ]; then pass=$((pass+1)); printf 'ok   %s\n' "$name"
  else fail=$((fail+1)); failed="$failed $name"; printf 'FAIL %s (exit %d)\n%s\n' "$name" $rc "$out" | tail -n 40; fi
}
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  run "unit/$(basename "$t")" "$t"
done
for r in "$BUILD"/tests/fuzz_*-replay; do
  [ -x "$r" ] || continue
  n=$(basename "$r" -replay); n=${n#fuzz_}
  run "fuzz-replay/$n" "$r" tests/corpus/valid tests/corpus/invalid tests/fuzz/corpus/$n
done
for s in tests/integration/*.sh; do
  [ -f "$s" ] || continue
  run "integration/$(basename "$s" .sh)" sh "$s"
done
echo "tests ($BUILD):$failed"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
