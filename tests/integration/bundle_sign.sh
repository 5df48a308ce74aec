#!/bin/sh
# specs/bundle.md B17 (must-show 4): a signed bundle verifies with the right
# key and fails with a wrong key or after any change; the embedded signature
# is a plain Ed25519 signature of the manifest member (openssl checks it); a
# detached BUNDLE.sig from fm-sign equals openssl's and verifies.
set -eu
BUILD=${BUILD:-build}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
openssl genpkey -algorithm ed25519 -out "$T/k.pem" 2>/dev/null
openssl pkey -in "$T/k.pem" -pubout -out "$T/k.pub" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$T/k2.pem" 2>/dev/null
openssl pkey -in "$T/k2.pem" -pubout -out "$T/k2.pub" 2>/dev/null
V="$BUILD/fm-verify"
"$BUILD/tests/test_bundle" mkbundle "$T/s.fmb" --fixture --align 4096 --sign "$T/k.pem" --force >/dev/null
"$V" --key "$T/k.pub" "$T/s.fmb" >"$T/out"
grep -q '^signature: ok (embedded' "$T/out"
rc=0; "$V" --key "$T/k2.pub" "$T/s.fmb" >"$T/out" || rc=$?
test $rc -eq 1 && grep -q '^manifest signature: ' "$T/out"
# interop: openssl verifies the embedded signature over the manifest bytes
tar xOf "$T/s.fmb" fm/manifest.json >"$T/m.json"
tar xOf "$T/s.fmb" fm/manifest.sig >"$T/m.sig"
openssl pkeyutl -verify -pubin -inkey "$T/k.pub" -rawin -in "$T/m.json" -sigfile "$T/m.sig" | grep -q 'Verified Successfully'
# after any change: random single-bit flips anywhere all fail with the key
python3 - "$T/s.fmb" "$V" "$T/k.pub" <<'PY'
import os, random, subprocess, sys
path, v, key = sys.argv[1:4]
random.seed(7)
size = os.path.getsize(path)
n = 0
for _ in range(120):
    off, bit = random.randrange(size), random.randrange(8)
    with open(path, "r+b") as f:
        f.seek(off); c = f.read(1)[0]; f.seek(off); f.write(bytes([c ^ (1 << bit)]))
    rc = subprocess.run([v, "--key", key, path], capture_output=True).returncode
    with open(path, "r+b") as f:
        f.seek(off); f.write(bytes([c]))
    assert rc in (1, 2), (off, rc)
    n += 1
assert subprocess.run([v, "--key", key, path], capture_output=True).returncode == 0
print("signed bundle: %d random changes, all rejected" % n)
PY
# detached: fm-sign writes BUNDLE.sig; it equals openssl's (Ed25519 is deterministic)
"$BUILD/tests/test_bundle" mkbundle "$T/u.fmb" --fixture --align 4096 --force >/dev/null
rc=0; "$V" --key "$T/k.pub" "$T/u.fmb" >"$T/out" || rc=$?
test $rc -eq 1 && grep -q 'no embedded signature and no detached signature' "$T/out"
"$BUILD/fm-sign" "$T/u.fmb" --key "$T/k.pem" >/dev/null
"$V" --key "$T/k.pub" "$T/u.fmb" >"$T/out"
grep -q "^signature: ok ($T/u.fmb.sig" "$T/out"
tar xOf "$T/u.fmb" fm/manifest.json >"$T/um.json"
openssl pkeyutl -sign -inkey "$T/k.pem" -rawin -in "$T/um.json" -out "$T/o.sig"
cmp "$T/o.sig" "$T/u.fmb.sig"
rc=0; "$V" --key "$T/k2.pub" "$T/u.fmb" >/dev/null || rc=$?; test $rc -eq 1
"$BUILD/fm-sign" "$T/u.fmb" --key "$T/k2.pem" -o "$T/other.sig" >/dev/null
"$V" --key "$T/k2.pub" --sig "$T/other.sig" "$T/u.fmb" >/dev/null
rc=0; "$V" --key "$T/k.pub" --sig "$T/other.sig" "$T/u.fmb" >/dev/null || rc=$?; test $rc -eq 1
# a different manifest (another bundle) with this signature fails
"$BUILD/tests/test_bundle" mkbundle "$T/w.fmb" --fixture --align 16384 --force >/dev/null
rc=0; "$V" --key "$T/k.pub" --sig "$T/u.fmb.sig" "$T/w.fmb" >/dev/null || rc=$?; test $rc -eq 1
# a key file that is not a key: exit 2
echo nonsense >"$T/bad.pem"
rc=0; "$V" --key "$T/bad.pem" "$T/s.fmb" >/dev/null 2>&1 || rc=$?; test $rc -eq 2
echo "bundle_sign: ok"
