#!/usr/bin/env python3
"""Generates the safetensors corpus and fixtures (deterministic; outputs are
committed). Rules S1..S27 are in specs/safetensors.md.

Pinned oracle versions (checked at start): safetensors==0.8.0, numpy==2.4.6,
torch==2.15.0 (+cu132 wheel). Run from the repo root:

    /work/venv/bin/python tests/gen/gen_st_corpus.py

Writes
  tests/corpus/valid/st-*.safetensors, tests/corpus/valid/st-sharded.d/
  tests/corpus/invalid/st-S<n>-<what>.safetensors, tests/corpus/invalid/st-S<n>-<what>.d/
  tests/fuzz/corpus/safetensors/*           (small seeds)
  tests/fixtures/st-expected.txt            (float32 bits of every valid tensor, via numpy/torch)
  tests/fixtures/st-f8-table.txt            (torch float8_e4m3fn / float8_e5m2 -> float32, all 256 bytes)

Every valid file is also loaded by the reference (safetensors.safe_open), and
every invalid single file is offered to the reference; the verdicts are
printed and checked against the expectation recorded here (fm is stricter
than the reference on S5 NUL in strings, S7 duplicate tensor names, S10
exotic dtypes and S11 > 8 dims).
"""
import json
import os
import shutil
import struct
import sys

import numpy as np
import safetensors
import torch
from safetensors import safe_open
from safetensors.numpy import save_file as np_save
from safetensors.torch import save_file as pt_save

PINS = {"safetensors": "0.8.0", "numpy": "2.4.6", "torch": "2.15.0"}
for mod, want in (("safetensors", safetensors), ("numpy", np), ("torch", torch)):
    got = want.__version__.split("+")[0]
    if got != PINS[mod]:
        sys.exit(f"gen_st_corpus: {mod} {got} != pinned {PINS[mod]}")

VALID = "tests/corpus/valid"
INVALID = "tests/corpus/invalid"
SEEDS = "tests/fuzz/corpus/safetensors"
FIX = "tests/fixtures"


def clean():
    for d in (VALID, INVALID):
        os.makedirs(d, exist_ok=True)
        for n in os.listdir(d):
            if n.startswith("st-"):
                p = os.path.join(d, n)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    if os.path.isdir(SEEDS):
        shutil.rmtree(SEEDS)
    os.makedirs(SEEDS)
    os.makedirs(FIX, exist_ok=True)


def raw(header, data=b"", hlen=None):
    """A safetensors file from header text (bytes or str) and a data area."""
    hb = header.encode() if isinstance(header, str) else header
    n = len(hb) if hlen is None else hlen
    return struct.pack("<Q", n) + hb + data


def ent(dtype, shape, b, e):
    return '{"dtype":"%s","shape":%s,"data_offsets":[%s,%s]}' % (dtype, json.dumps(shape), b, e)


def st_bytes(tensors, metadata=None):
    """A safetensors file written in a fixed order (the reference writer
    serializes __metadata__ from a hash map, in random order): tensors by
    name, header padded with spaces to a multiple of 8, as the reference."""
    hdr, data = {}, b""
    if metadata:
        hdr["__metadata__"] = metadata
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        dt = {"float32": "F32", "float16": "F16", "float64": "F64", "int8": "I8", "uint8": "U8",
              "int16": "I16", "int32": "I32", "int64": "I64"}[str(a.dtype)]
        hdr[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [len(data), len(data) + a.nbytes]}
        data += a.tobytes()
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return raw(h, data)


def write(path, blob):
    with open(path, "wb") as f:
        f.write(blob)
    os.chmod(path, 0o644)


def ref_ok(path):
    try:
        with safe_open(path, "pt") as f:
            for k in f.keys():
                f.get_tensor(k)
        return True, ""
    except Exception as ex:  # noqa: BLE001 - any rejection counts
        return False, str(ex).splitlines()[0][:90]


def f32_bits(a):
    return [int(x) for x in np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).ravel()]


# ---- valid --------------------------------------------------------------

def all256(dt):
    return torch.arange(256, dtype=torch.int32).to(torch.uint8).view(dt).reshape(16, 16)


def valid_dtypes():
    f16v = [0.0, -0.0, 1.0, -2.5, 0.1, 65504.0, 2.0**-24, 2.0**-14, float("inf"), float("-inf"), float("nan")]
    t = {
        "bool": torch.tensor([True, False, True]),
        "u8": torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8),
        "i8": torch.tensor([-128, -1, 0, 1, 127], dtype=torch.int8),
        "u16": torch.tensor([0, 1, 40000, 65535], dtype=torch.uint16),
        "i16": torch.tensor([[-32768, -1], [0, 32767]], dtype=torch.int16),
        "f16": torch.tensor(f16v, dtype=torch.float16),
        "bf16": torch.tensor(f16v + [3.0e38, 1e-40], dtype=torch.bfloat16),
        "u32": torch.tensor([0, 1, 2**32 - 1, 2**24 + 1], dtype=torch.uint32),
        "i32": torch.tensor([[-2**31, 2**31 - 1], [2**24 + 1, -(2**24 + 3)]], dtype=torch.int32),
        "f32": torch.tensor([0.1, -0.0, 1e-45, 3.4e38, float("inf"), float("nan")], dtype=torch.float32),
        "u64": torch.tensor([0, 2**64 - 1, 2**53 + 1, 2**24 + 1, 2**24 + 3], dtype=torch.uint64),
        "i64": torch.tensor([-2**63, 2**63 - 1, 2**24 + 3, -(2**24 + 1)], dtype=torch.int64),
        "f64": torch.tensor([0.1, 1e300, -1e300, 1e-50, 1.0 / 3.0, 1 + 2.0**-24, 1 + 3 * 2.0**-24, float("nan")],
                            dtype=torch.float64),
        "f8_e4m3": all256(torch.float8_e4m3fn),
        "f8_e5m2": all256(torch.float8_e5m2),
        "w.layer.0": torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 8,
    }
    path = f"{VALID}/st-dtypes.safetensors"
    pt_save(t, path, metadata={"format": "pt"})  # one key: the writer's key order is random
    exp = []
    for name, x in sorted(t.items()):
        if x.dtype in (torch.bool, torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32,
                       torch.uint32, torch.int64, torch.uint64, torch.float16, torch.float64):
            # numpy converts integers and F64 with round-to-nearest-even.
            with np.errstate(over="ignore"):
                v = x.numpy().astype(np.float32)
        else:
            v = x.to(torch.float32).numpy()
        exp.append((path, name, v))
    return exp


def valid_scalar_empty():
    t = {
        "scalar": np.array(3.5, dtype=np.float32),
        "empty1": np.zeros((0,), dtype=np.uint8),
        "empty3": np.zeros((2, 0, 3), dtype=np.float16),
        "emptyi64": np.zeros((0, 4), dtype=np.int64),
        "one": np.array([7], dtype=np.int16),
    }
    path = f"{VALID}/st-scalar-empty.safetensors"
    np_save(t, path)
    return [(path, k, v.astype(np.float32)) for k, v in sorted(t.items())]


def valid_handmade():
    out = []
    # Leading and trailing JSON whitespace (the reference accepts both), tensors
    # listed out of offset order, an unknown extra field, __metadata__ null.
    a = np.array([1.5, -2.0], dtype=np.float32)
    b = np.array([[1, 2, 3]], dtype=np.uint8)
    c = np.array([0x3C00, 0xC000], dtype=np.uint16)  # F16 1.0, -2.0
    data = a.tobytes() + c.tobytes() + b.tobytes()
    hdr = ('\n\t {"__metadata__":null,"b":' + ent("U8", [1, 3], 12, 15)
           + ',"a":{"dtype":"F32","x-extra":[1,{"y":2}],"shape":[2],"data_offsets":[0,8]}'
           + ',"c":' + ent("F16", [2], 8, 12) + '}  \r\n ')
    path = f"{VALID}/st-padded-unordered.safetensors"
    write(path, raw(hdr, data))
    out += [(path, "a", a), (path, "b", b.astype(np.float32)), (path, "c", np.array([1.0, -2.0], np.float32))]
    # No tensors at all.
    path = f"{VALID}/st-empty.safetensors"
    pt_save({}, path)
    # Zero-sized tensors share offsets with their neighbours; UTF-8 names,
    # metadata with escapes.
    d = np.arange(4, dtype=np.int32)
    hdr = ('{"__metadata__":{"k\\u00e9y":"v\\"al\\n","empty":""},"z0":' + ent("I32", [0], 0, 0)
           + ',"\u03b1\u2192\U0001F600":' + ent("I32", [4], 0, 16) + ',"z1":' + ent("F64", [3, 0], 16, 16) + '}')
    path = f"{VALID}/st-zero-utf8.safetensors"
    write(path, raw(hdr, d.tobytes()))
    out += [(path, "z0", np.zeros(0, np.float32)), (path, "\u03b1\u2192\U0001F600", d.astype(np.float32)),
            (path, "z1", np.zeros((3, 0), np.float32))]
    return out


def valid_sharded():
    d = f"{VALID}/st-sharded.d"
    os.makedirs(d)
    s1 = {"model.embed.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
          "model.norm.weight": np.array([1, 2], dtype=np.float16)}
    s2 = {"lm_head.weight": np.arange(4, dtype=np.int8).reshape(2, 2),
          "model.layers.0.mlp.experts.0.w": np.array([0.25, 4.0], dtype=np.float64)}
    n1, n2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    write(f"{d}/{n1}", st_bytes(s1, {"format": "pt", "shard": "1"}))
    write(f"{d}/{n2}", st_bytes(s2, {"format": "pt", "shard": "2"}))
    wm = {k: n1 for k in s1} | {k: n2 for k in s2}
    total = sum(v.nbytes for v in (s1 | s2).values())
    with open(f"{d}/model.safetensors.index.json", "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wm.items()))}, f, indent=2)
    # A stray file the index does not name is ignored.
    with open(f"{d}/README", "w") as f:
        f.write("valid sharded checkpoint for fm tests\n")
    return [(f"{d}/{n1 if k in s1 else n2}", k, v.astype(np.float32)) for k, v in sorted((s1 | s2).items())]


# ---- invalid single files ------------------------------------------------

U8x2 = ent("U8", [2], 0, 2)


def invalid_single():
    """(name, blob, reference_rejects). Each breaks exactly one rule."""
    big = 2**32
    cases = [
        ("S1-short", b"\x05\x00\x00\x00\x00", True),
        ("S2-header-cap", raw('{}', b"", hlen=100_000_001), True),
        ("S2-header-huge", raw('{}', b"", hlen=2**64 - 1), True),
        ("S3-header-beyond-file", raw('{"a":' + U8x2 + '}', b"xx", hlen=1000), True),
        ("S4-bad-utf8", raw(b'{"a\xff":' + U8x2.encode() + b'}', b"xx"), True),
        ("S4-overlong-utf8", raw(b'{"a\xc0\xaf":' + U8x2.encode() + b'}', b"xx"), True),
        ("S5-bad-json", raw('{"a":' + U8x2, b"xx"), True),
        ("S5-nul-padding", raw('{"a":' + U8x2 + '}\0\0\0', b"xx"), True),
        ("S5-integer-too-big", raw('{"a":' + ent("U8", [2**64], 0, 0) + '}'), True),
        ("S5-nul-in-name", raw('{"a\\u0000b":' + U8x2 + '}', b"xx"), False),
        ("S5-lone-surrogate", raw('{"__metadata__":{"k":"\\ud800"},"a":' + U8x2 + '}', b"xx"), True),
        ("S6-not-object", raw('[]      '), True),
        ("S7-duplicate-key", raw('{"a":' + U8x2 + ',"a":' + U8x2 + '}', b"xx"), False),
        ("S7-duplicate-field", raw('{"a":{"dtype":"U8","dtype":"I8","shape":[2],"data_offsets":[0,2]}}', b"xx"), True),
        ("S8-metadata-nonstring", raw('{"__metadata__":{"a":1},"a":' + U8x2 + '}', b"xx"), True),
        ("S8-metadata-not-object", raw('{"__metadata__":["a"],"a":' + U8x2 + '}', b"xx"), True),
        ("S9-entry-not-object", raw('{"a":[1,2]}'), True),
        ("S9-missing-shape", raw('{"a":{"dtype":"U8","data_offsets":[0,2]}}', b"xx"), True),
        ("S10-unknown-dtype", raw('{"a":' + ent("F12", [2], 0, 2) + '}', b"xx"), True),
        ("S10-unsupported-dtype", raw('{"a":' + ent("C64", [1], 0, 8) + '}', b"x" * 8), False),
        ("S10-dtype-not-string", raw('{"a":{"dtype":8,"shape":[2],"data_offsets":[0,2]}}', b"xx"), True),
        ("S11-negative-dim", raw('{"a":' + ent("U8", [-2], 0, 2) + '}', b"xx"), True),
        ("S11-float-dim", raw('{"a":{"dtype":"U8","shape":[2.0],"data_offsets":[0,2]}}', b"xx"), True),
        ("S11-too-many-dims", raw('{"a":' + ent("U8", [1] * 9, 0, 1) + '}', b"x"), False),
        ("S11-shape-not-array", raw('{"a":{"dtype":"U8","shape":2,"data_offsets":[0,2]}}', b"xx"), True),
        ("S12-shape-overflow", raw('{"a":' + ent("U8", [big, big, 2], 0, 2) + '}', b"xx"), True),
        ("S12-overflow-before-zero", raw('{"a":' + ent("U8", [big, big, 0], 0, 0) + '}'), True),
        ("S12-bytes-overflow", raw('{"a":' + ent("F64", [2**61], 0, 0) + '}'), True),
        ("S13-begin-gt-end", raw('{"a":' + ent("U8", [0], 2, 1) + ',"b":' + U8x2 + '}', b"xx"), True),
        ("S13-non-integer-offsets", raw('{"a":{"dtype":"U8","shape":[2],"data_offsets":["0",2]}}', b"xx"), True),
        ("S13-real-offsets", raw('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2.0]}}', b"xx"), True),
        ("S13-three-offsets", raw('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2,2]}}', b"xx"), True),
        ("S14-size-mismatch", raw('{"a":' + ent("F32", [2], 0, 4) + '}', b"xxxx"), True),
        ("S15-overlap", raw('{"a":' + ent("U8", [4], 0, 4) + ',"b":' + ent("U8", [4], 2, 6) + '}', b"x" * 6), True),
        ("S15-gap", raw('{"a":' + ent("U8", [2], 0, 2) + ',"b":' + ent("U8", [2], 3, 5) + '}', b"x" * 5), True),
        ("S15-gap-at-start", raw('{"a":' + ent("U8", [2], 1, 3) + '}', b"x" * 3), True),
        ("S16-offsets-beyond-data", raw('{"a":' + ent("U8", [8], 0, 8) + '}', b"x" * 4), True),
        ("S16-huge-offsets", raw('{"a":' + ent("U8", [2], 2**62 - 2, 2**62) + '}', b"xx"), True),
        ("S17-trailing-bytes", raw('{"a":' + U8x2 + '}', b"xxxx"), True),
    ]
    # A real file cut short inside its data area.
    full = raw('{"a":' + ent("F32", [4], 0, 16) + '}', np.arange(4, dtype=np.float32).tobytes())
    cases.append(("S16-truncated-data", full[:-3], True))
    return cases


# ---- invalid sharded directories -----------------------------------------

def shard_bytes(tensors):
    return st_bytes(tensors)


def mkdir_case(name, files):
    d = f"{INVALID}/st-{name}.d"
    os.makedirs(d)
    for fn, content in files.items():
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(f"{d}/{fn}", mode) as f:
            f.write(content)


def index(wm, extra=None):
    o = {"metadata": {"total_size": 0}, "weight_map": wm}
    if extra:
        o.update(extra)
    return json.dumps(o, indent=1)


def invalid_sharded():
    A = shard_bytes({"a": np.array([1, 2], np.float32)})
    B = shard_bytes({"b": np.array([3], np.int8)})
    AB = shard_bytes({"a": np.array([1, 2], np.float32), "b": np.array([3], np.int8)})
    I = "model.safetensors.index.json"
    mkdir_case("S19-no-model", {"README": "neither model.safetensors nor an index\n"})
    mkdir_case("S21-weight-map-not-object", {I: index(["a"]), "s1.safetensors": A})
    mkdir_case("S21-index-duplicate-key", {I: '{"weight_map":{"a":"s1.safetensors","a":"s1.safetensors"}}',
                                           "s1.safetensors": A})
    mkdir_case("S21-shard-not-string", {I: index({"a": 1}), "s1.safetensors": A})
    mkdir_case("S22-dotdot-shard", {I: index({"a": "../s1.safetensors"}), "s1.safetensors": A})
    mkdir_case("S22-slash-shard", {I: index({"a": "sub/s1.safetensors"}), "s1.safetensors": A})
    mkdir_case("S24-missing-shard", {I: index({"a": "s1.safetensors", "b": "s2.safetensors"}),
                                     "s1.safetensors": A})
    mkdir_case("S24-invalid-shard", {I: index({"a": "s1.safetensors"}),
                                     "s1.safetensors": raw('{"a":' + ent("F32", [2], 0, 4) + '}', b"xxxx")})
    mkdir_case("S25-tensor-missing", {I: index({"a": "s1.safetensors", "c": "s1.safetensors",
                                                "b": "s2.safetensors"}),
                                      "s1.safetensors": A, "s2.safetensors": B})
    mkdir_case("S25-wrong-shard", {I: index({"a": "s2.safetensors", "b": "s1.safetensors"}),
                                   "s1.safetensors": A, "s2.safetensors": B})
    mkdir_case("S26-unlisted-tensor", {I: index({"a": "s1.safetensors"}), "s1.safetensors": AB})
    mkdir_case("S26-duplicate-across-shards", {I: index({"a": "s1.safetensors", "b": "s2.safetensors"}),
                                               "s1.safetensors": A, "s2.safetensors": AB})


# ---- fixtures ------------------------------------------------------------

def write_expected(exp):
    with open(f"{FIX}/st-expected.txt", "w") as f:
        f.write("# file<TAB>tensor<TAB>n<TAB>float32 bits (hex, space separated); generated by "
                "tests/gen/gen_st_corpus.py\n")
        for path, name, v in exp:
            bits = f32_bits(v)
            f.write("%s\t%s\t%d\t%s\n" % (path, name, len(bits), " ".join("%08x" % b for b in bits)))


def write_f8_table():
    b = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    e4 = f32_bits(b.view(torch.float8_e4m3fn).to(torch.float32).numpy())
    e5 = f32_bits(b.view(torch.float8_e5m2).to(torch.float32).numpy())
    with open(f"{FIX}/st-f8-table.txt", "w") as f:
        f.write("# byte e4m3fn_f32_bits e5m2_f32_bits (torch %s float8_e4m3fn / float8_e5m2 -> float32)\n"
                % torch.__version__)
        for i in range(256):
            f.write("%02x %08x %08x\n" % (i, e4[i], e5[i]))


def main():
    clean()
    exp = valid_dtypes() + valid_scalar_empty() + valid_handmade() + valid_sharded()
    # The reference must accept every valid file and agree on the values.
    for path, name, v in exp:
        with safe_open(path, "pt") as f:
            t = f.get_tensor(name)
        ref = t.to(torch.float32).numpy() if t.dtype not in (torch.uint16, torch.uint32, torch.uint64) \
            else t.numpy().astype(np.float32)
        assert list(t.shape) == list(v.shape), (path, name, t.shape, v.shape)
        assert np.array_equal(ref.ravel(), np.asarray(v, np.float32).ravel(), equal_nan=True), (path, name)
    for p in (f"{VALID}/st-empty.safetensors",):
        assert ref_ok(p)[0], p
    write_expected(exp)
    write_f8_table()
    bad = 0
    for name, blob, ref_rejects in invalid_single():
        p = f"{INVALID}/st-{name}.safetensors"
        write(p, blob)
        ok, why = ref_ok(p)
        verdict = "accepts" if ok else "rejects"
        print(f"  reference {verdict:7s} {name:28s} {why}")
        if ok == ref_rejects:
            print(f"gen_st_corpus: unexpected reference verdict on {name}", file=sys.stderr)
            bad += 1
    invalid_sharded()
    # Fuzz seeds: small valid files and an index (the fuzz target reads an
    # input starting with '{' as an index next to a fixed shard).
    for n in ("st-padded-unordered", "st-zero-utf8", "st-scalar-empty", "st-empty"):
        shutil.copy(f"{VALID}/{n}.safetensors", f"{SEEDS}/{n}.safetensors")
    write(f"{SEEDS}/index.json", b'{"metadata":{},"weight_map":{"a":"a.safetensors","b":"a.safetensors"}}')
    for top in (VALID, INVALID, SEEDS, FIX):
        for root, _, files in os.walk(top):
            for fn in files:
                if "st-" in root or fn.startswith("st-") or top == SEEDS:
                    os.chmod(os.path.join(root, fn), 0o644)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
