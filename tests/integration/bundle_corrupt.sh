#!/bin/sh
# specs/bundle.md B18 (must-show 3) through the fm-verify command line: a single
# bit flipped at a random position inside each member's data, inside each tar
# header, in the manifest, the superblock and the end blocks, and at random
# positions anywhere, is detected every time; damage in weight data names the
# right tensor/expert with exit 1; the manifest/superblock give exit 2. A
# truncated bundle and an unknown major version give exit 2 with a message.
set -eu
BUILD=${BUILD:-build}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$BUILD/tests/test_bundle" mkbundle "$T/b.fmb" --fixture --align 4096 --force >/dev/null
"$BUILD/fm-verify" "$T/b.fmb" >/dev/null
python3 - "$T/b.fmb" "$BUILD/fm-verify" <<'PY'
import hashlib, json, os, random, subprocess, sys, tarfile
path, fmv = sys.argv[1], sys.argv[2]
random.seed(4)
size = os.path.getsize(path)
tf = tarfile.open(path)
ms = tf.getmembers()
man = json.loads(tf.extractfile("fm/manifest.json").read())
label = {}
for t in man["tensors"]:
    label[t["offset"]] = "tensor " + t["name"]
for L in man["experts"]:
    for x, b in enumerate(L["blobs"]):
        label[b["offset"]] = "blk.%d expert %d" % (L["layer"], x)
label[man["tokenizer"]["offset"]] = "tokenizer"

def flip(off, bit):
    with open(path, "r+b") as f:
        f.seek(off); c = f.read(1)[0]; f.seek(off); f.write(bytes([c ^ (1 << bit)]))
def run():
    p = subprocess.run([fmv, path], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr

tried = ok = 0
def trial(off, expect_rc, expect_text):
    global tried, ok
    bit = random.randrange(8)
    flip(off, bit); rc, out = run(); flip(off, bit)
    tried += 1
    good = rc in expect_rc and expect_text in out
    if not good:
        print("FAIL: flip at %d: rc %d, want %s with %r:\n%s" % (off, rc, expect_rc, expect_text, out))
    ok += good

for m in ms:
    # data of every member (the pad members' zeros included)
    if m.size:
        for _ in range(3):
            off = m.offset_data + random.randrange(m.size)
            if m.name in ("fm/superblock", "fm/manifest.json"):
                trial(off, (2,), "not a readable bundle")
            elif m.name == "fm/pad":
                trial(off, (1,), "padding at offset")
            else:
                trial(off, (1,), label[m.offset_data] + ": sha256 mismatch")
    # its header block(s): pax extended header and ustar header
    for _ in range(3):
        off = m.offset + random.randrange(m.offset_data - m.offset)
        if m.name in ("fm/superblock", "fm/manifest.json") and off >= m.offset_data - 512:
            trial(off, (2,), "tar header at offset %d" % (m.offset_data - 512))
        else:
            trial(off, (1,), "header at offset")
for _ in range(8):
    trial(size - 1024 + random.randrange(1024), (1,), "end of archive at offset")
for _ in range(150):
    trial(random.randrange(size), (1, 2), "")
print("fm-verify sweep: %d single-bit flips, %d detected with the expected exit code and report" % (tried, ok))
assert ok == tried

# truncation: exit 2, clear message
data = open(path, "rb").read()
for cut in (1, 512, 1024, size // 2, size - 5000):
    open(path + ".t", "wb").write(data[:size - cut])
    p = subprocess.run([fmv, path + ".t"], capture_output=True, text=True)
    assert p.returncode == 2 and "not a readable bundle" in p.stderr and ("truncated" in p.stderr or "smallest" in p.stderr), (cut, p.stderr)
print("truncated:", p.stderr.strip())
# unknown major version (superblock patched, its SHA-256 recomputed)
sb = bytearray(data[512:4608])
sb[8:10] = (2).to_bytes(2, "little")
sb[4064:4096] = hashlib.sha256(bytes(sb[:4064])).digest()
open(path + ".v2", "wb").write(data[:512] + bytes(sb) + data[4608:])
p = subprocess.run([fmv, path + ".v2"], capture_output=True, text=True)
assert p.returncode == 2 and "major version 2 is not supported" in p.stderr, p.stderr
print("major 2:", p.stderr.strip())
p = subprocess.run([fmv, "--json", path + ".v2"], capture_output=True, text=True)
j = json.loads(p.stdout)
assert p.returncode == 2 and j["status"] == "unreadable" and j["error_code"] == "unsupported version"
# not a bundle at all
open(path + ".x", "wb").write(b"GGUF" + bytes(9000))
p = subprocess.run([fmv, path + ".x"], capture_output=True, text=True)
assert p.returncode == 2 and "not a readable" in p.stderr, p.stderr
PY
# two damaged experts and a damaged tensor are all listed (exit 1, --json too)
python3 - "$T/b.fmb" <<'PY'
import json, sys, tarfile
path = sys.argv[1]
man = json.loads(tarfile.open(path).extractfile("fm/manifest.json").read())
offs = [man["experts"][0]["blobs"][1]["offset"], man["experts"][0]["blobs"][2]["offset"] + 100, man["tensors"][2]["offset"] + 7]
with open(path, "r+b") as f:
    for o in offs:
        f.seek(o); c = f.read(1)[0]; f.seek(o); f.write(bytes([c ^ 0x10]))
PY
rc=0; "$BUILD/fm-verify" "$T/b.fmb" >"$T/out" || rc=$?
cat "$T/out"
test $rc -eq 1
grep -qx 'blk.0 expert 1: sha256 mismatch' "$T/out"
grep -qx 'blk.0 expert 2: sha256 mismatch' "$T/out"
grep -qx 'tensor output_norm.weight: sha256 mismatch' "$T/out"
rc=0; "$BUILD/fm-verify" --json "$T/b.fmb" >"$T/j" || rc=$?
test $rc -eq 1
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["status"]=="damaged" and [p["what"] for p in j["problems"]]==["blk.0 expert 1","blk.0 expert 2","tensor output_norm.weight"], j["problems"]' "$T/j"
# --quick does not hash data
"$BUILD/fm-verify" --quick "$T/b.fmb" >/dev/null
# usage errors: exit 2
rc=0; "$BUILD/fm-verify" >/dev/null 2>&1 || rc=$?; test $rc -eq 2
rc=0; "$BUILD/fm-verify" --bogus "$T/b.fmb" >/dev/null 2>&1 || rc=$?; test $rc -eq 2
echo "bundle_corrupt: ok"
