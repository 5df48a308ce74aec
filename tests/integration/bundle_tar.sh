#!/bin/sh
# specs/bundle.md B1/B2/B15 (must-show 2): `tar tvf` and Python's tarfile list
# every member of a bundle, each member's data is where the manifest says,
# every weight blob starts at a multiple of the alignment, and tarfile's view
# of each member hashes to the manifest's SHA-256. Then fm-verify passes.
set -eu
BUILD=${BUILD:-build}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
GEN="$BUILD/tests/test_bundle"
for A in 4096 16384 1048576; do
  "$GEN" mkbundle "$T/b.fmb" --fixture --align "$A" --force >/dev/null
  tar tvf "$T/b.fmb" >"$T/tvf"
  tar tf "$T/b.fmb" >"$T/names"
  python3 - "$T/b.fmb" "$A" "$T/names" <<'PY'
import hashlib, json, sys, tarfile
path, align, names = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read().split("\n")[:-1]
tf = tarfile.open(path)
ms = tf.getmembers()
assert [m.name for m in ms] == names, "tar and tarfile disagree on the member list"
assert ms[0].name == "fm/superblock" and ms[0].offset == 0 and ms[0].offset_data == 512 and ms[0].size == 4096
man = json.loads(tf.extractfile("fm/manifest.json").read())
assert man["format"] == "fm-bundle" and man["version"]["major"] == 1 and man["alignment"] == align
at = {m.offset_data: m for m in ms}
def check(name, off, size, sha, aligned=True):
    m = at[off]
    assert m.name == name and m.size == size, (name, m.name, m.size, size)
    assert not aligned or off % align == 0, (name, off, align)
    assert hashlib.sha256(tf.extractfile(m).read()).hexdigest() == sha, name
n = 0
for t in man["tensors"]:
    check("t/" + t["name"], t["offset"], t["size"], t["sha256"]); n += 1
for L in man["experts"]:
    for x, b in enumerate(L["blobs"]):
        check("x/blk.%d/%d" % (L["layer"], x), b["offset"], b["size"], b["sha256"]); n += 1
tok = man["tokenizer"]
check(tok["member"], tok["offset"], tok["size"], tok["sha256"], aligned=False)
kinds = {}
for m in ms:
    k = m.name.split("/")[0] + "/" + (m.name.split("/")[1] if m.name.startswith("fm/") else "")
    kinds[k] = kinds.get(k, 0) + 1
    if m.name == "fm/pad":
        assert tf.extractfile(m).read() == b"\0" * m.size
print("align %d: %d members listed (%s), %d weight blobs aligned and hashed" % (align, len(ms), ", ".join("%s%d" % (k, v) for k, v in sorted(kinds.items())), n))
PY
  test "$(wc -l <"$T/tvf")" -eq "$(wc -l <"$T/names")"
  grep -q ' fm/manifest.json$' "$T/tvf"
  "$BUILD/fm-verify" "$T/b.fmb" >"$T/out"
  grep -q ': ok: format 1.0' "$T/out"
  "$BUILD/fm-verify" --json "$T/b.fmb" | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["status"]=="intact" and j["exit"]==0 and j["problems"]==[], j'
done
# a random-data bundle through the streaming generator (16 KiB default alignment)
"$GEN" mkbundle "$T/r.fmb" --mib 24 --blob-kib 300 --force >/dev/null
python3 - "$T/r.fmb" <<'PY'
import json, sys, tarfile
tf = tarfile.open(sys.argv[1])
man = json.loads(tf.extractfile("fm/manifest.json").read())
offs = [t["offset"] for t in man["tensors"]] + [b["offset"] for L in man["experts"] for b in L["blobs"]]
assert all(o % man["alignment"] == 0 for o in offs) and man["alignment"] == 16384
names = {m.offset_data: m.name for m in tf.getmembers()}
assert all(o in names for o in offs)
print("random bundle: %d weight blobs, all at multiples of %d" % (len(offs), man["alignment"]))
PY
"$BUILD/fm-verify" -t 2 "$T/r.fmb"
echo "bundle_tar: ok"
