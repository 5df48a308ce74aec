#!/usr/bin/env python3
"""Generates the GGUF test corpus deterministically (no randomness, no clock).

  tests/corpus/valid/gguf-*.gguf        files fm must open (values checked by
                                        tests/unit/test_gguf.c)
  tests/corpus/invalid/gguf-G<n>-*.gguf files that each break exactly rule G<n>
                                        of specs/gguf.md
  tests/fuzz/corpus/gguf/seed-*.gguf    small valid seeds for the fuzzer

The GGUF bytes are written by hand (struct.pack) so that broken files can be
made; valid files are cross-checked with gguf-py's GGUFReader when it is
importable (python only runs here, never at test time).

Run from the repository root:  python3 tests/gen/gen_gguf_corpus.py
"""
import os
import struct
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
VALID = os.path.join(ROOT, "tests", "corpus", "valid")
INVALID = os.path.join(ROOT, "tests", "corpus", "invalid")
SEEDS = os.path.join(ROOT, "tests", "fuzz", "corpus", "gguf")

# value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
              BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}

# GGML tensor types fm knows: id -> (name, block size, bytes per block).
# Same numbers as gguf-py's GGML_QUANT_SIZES except Q8_1: gguf-py 0.19 says 40
# bytes (an old float d, s layout) but ggml-common.h's block_q8_1 is
# 2 x ggml_half + 32 = 36 bytes; fm follows ggml.
QT = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}
F32T, F16T, Q8_0T, Q4_KT, I32T, F64T = 0, 1, 8, 12, 26, 28


def nbytes(qtype, ne):
    n = 1
    for d in ne:
        n *= d
    _, bs, ts = QT[qtype]
    return n // bs * ts


# ---- encoders -------------------------------------------------------------

def gstr(b):
    if isinstance(b, str):
        b = b.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def enc_val(t, v):
    """Encodes the payload of a value of type t (without the type field)."""
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(enc_val(et, x) for x in items)
    return struct.pack(SCALAR_FMT[t], v)


def kv(key, t, v):
    return gstr(key) + struct.pack("<I", t) + enc_val(t, v)


def arr(et, items):
    return (et, items)


def tinfo(name, ne, qtype, offset):
    return gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne) \
        + struct.pack("<I", qtype) + struct.pack("<Q", offset)


def pad_to(n, a):
    return (n + a - 1) // a * a


def build(kvs, tensors, version=3, alignment=32, data=b"", n_kv=None, n_tensors=None,
          magic=b"GGUF", pad_header=True, raw_tail=b""):
    """kvs: list of encoded kv bytes; tensors: list of encoded tensor infos.
    data: bytes of the data section (placed at the aligned data offset)."""
    h = magic + struct.pack("<I", version)
    h += struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors,
                     len(kvs) if n_kv is None else n_kv)
    h += b"".join(kvs) + b"".join(tensors) + raw_tail
    if pad_header and (data or tensors):
        h += b"\0" * (pad_to(len(h), alignment) - len(h))
    return h + data


def layout(specs, alignment=32, trailing_pad=False):
    """specs: list of (name, ne, qtype). Packs tensors back to back (each at
    an aligned offset) and returns (tensor infos, data bytes, offsets)."""
    infos, data, offs = [], b"", []
    for name, ne, qt in specs:
        off = pad_to(len(data), alignment)
        data += b"\0" * (off - len(data))
        n = nbytes(qt, ne)
        data += bytes((off + i * 7 + len(name)) & 0xFF for i in range(n))
        infos.append(tinfo(name, ne, qt, off))
        offs.append(off)
    if trailing_pad:
        data += b"\0" * (pad_to(len(data), alignment) - len(data))
    return infos, data, offs


def f32_data(vals):
    return b"".join(struct.pack("<f", v) for v in vals)


# The "basic" model used by several valid and most invalid files:
#   a: F32 [4, 2]  = 0, 0.5, 1, ..., 3.5        offset 0   (32 bytes)
#   b: F16 [8]     = -4 .. 3                    offset 32  (16 bytes)
#   q: Q8_0 [32,2] = bytes i & 0xff             offset 64  (68 bytes)
def basic_data(alignment=32):
    a = f32_data([i * 0.5 for i in range(8)])
    b = b"".join(struct.pack("<e", float(i - 4)) for i in range(8))
    q = bytes(i & 0xFF for i in range(68))
    offs, data = [], b""
    for blob in (a, b, q):
        off = pad_to(len(data), alignment)
        data += b"\0" * (off - len(data)) + blob
        offs.append(off)
    return data, offs


def basic(version=3, name="basic v3", alignment=None, extra_kvs=(), tensors=None, data=None,
          trailing_pad=False, **kw):
    al = alignment or 32
    d, offs = basic_data(al)
    kvs = [kv("general.architecture", STR, "fmtest"), kv("general.name", STR, name),
           kv("test.u32", U32, 7), kv("test.f32", F32, 0.5)]
    if alignment is not None:
        kvs.append(kv("general.alignment", U32, alignment))
    kvs += list(extra_kvs)
    if tensors is None:
        tensors = [tinfo("a", [4, 2], F32T, offs[0]), tinfo("b", [8], F16T, offs[1]),
                   tinfo("q", [32, 2], Q8_0T, offs[2])]
    if data is None:
        data = d
        if trailing_pad:
            data += b"\0" * (pad_to(len(data), al) - len(data))
    return build(kvs, tensors, version=version, alignment=al, data=data, **kw)


# ---- valid files -----------------------------------------------------------

def valid_files():
    out = {}
    out["gguf-v3-basic.gguf"] = basic()
    out["gguf-v2-basic.gguf"] = basic(version=2, name="basic v2", trailing_pad=True)
    out["gguf-align64.gguf"] = basic(name="align 64", alignment=64)
    out["gguf-align1.gguf"] = basic(name="align 1", alignment=1)

    every = [
        kv("t.u8", U8, 200), kv("t.i8", I8, -100), kv("t.u16", U16, 60000),
        kv("t.i16", I16, -30000), kv("t.u32", U32, 4000000000), kv("t.i32", I32, -2000000000),
        kv("t.f32", F32, 1.5), kv("t.bool", BOOL, 1), kv("t.bool_false", BOOL, 0),
        kv("t.str", STR, "h\u00e9llo"), kv("t.u64", U64, 2**63 + 5), kv("t.i64", I64, -2**62),
        kv("t.f64", F64, -0.25), kv("t.empty_str", STR, ""), kv("t.str_nul", STR, b"a\0b"),
        kv("t.arr_u8", ARR, arr(U8, [0, 255])), kv("t.arr_i8", ARR, arr(I8, [-128, 127])),
        kv("t.arr_u16", ARR, arr(U16, [0, 65535])), kv("t.arr_i16", ARR, arr(I16, [-32768, 32767])),
        kv("t.arr_u32", ARR, arr(U32, [0, 2**32 - 1])),
        kv("t.arr_i32", ARR, arr(I32, [-2**31, 2**31 - 1])),
        kv("t.arr_f32", ARR, arr(F32, [0.25, -2.0])), kv("t.arr_bool", ARR, arr(BOOL, [1, 0])),
        kv("t.arr_str", ARR, arr(STR, ["a", "", "\u00fc"])),
        kv("t.arr_u64", ARR, arr(U64, [2**64 - 1])), kv("t.arr_i64", ARR, arr(I64, [-2**63])),
        kv("t.arr_f64", ARR, arr(F64, [1e300])), kv("t.arr_empty", ARR, arr(U32, [])),
        kv("t.unicode.\u00fc\u4e2d", U8, 1), kv("general.alignment", U32, 32),
    ]
    infos, data, _ = layout([("x", [3], I32T)])
    data = b"".join(struct.pack("<i", v) for v in (-1, 0, 1))
    out["gguf-every-value-type.gguf"] = build(every, infos, data=data)

    def nest(depth, leaf):  # depth arrays, innermost holds leaf u8s
        v = arr(U8, leaf)
        for _ in range(depth - 1):
            v = arr(ARR, [v])
        return v
    nested = [
        kv("t.nested", ARR, arr(ARR, [arr(U32, [1, 2]), arr(U32, [3])])),
        kv("t.nested_str", ARR, arr(ARR, [arr(STR, ["x"]), arr(STR, []), arr(STR, ["y", "z"])])),
        kv("t.deep8", ARR, nest(8, [7])),
        kv("t.nested_empty", ARR, arr(ARR, [])),
    ]
    out["gguf-nested-arrays.gguf"] = build(nested, [])

    out["gguf-zero-tensors.gguf"] = build([kv("general.architecture", STR, "none")], [])
    infos, data, _ = layout([("only", [1], F32T)])
    out["gguf-no-kv.gguf"] = build([], infos, data=f32_data([42.0]))

    # Tensor infos out of offset order, with a gap: fm accepts this (llama.cpp
    # requires offsets to follow the info order without gaps; see the spec).
    infos = [tinfo("late", [4], F32T, 256), tinfo("early", [4], F32T, 0)]
    data = f32_data([1, 2, 3, 4]) + b"\0" * (256 - 16) + f32_data([5, 6, 7, 8])
    out["gguf-unordered.gguf"] = build([kv("general.architecture", STR, "fmtest")], infos, data=data)

    # One tensor of every GGML type fm knows, each one block (ne0 = block
    # size) by 2 rows; test.sizes lists the expected byte sizes in order.
    specs = [("t_%s" % QT[q][0].lower(), [QT[q][1], 2], q) for q in sorted(QT)]
    infos, data, _ = layout(specs)
    sizes = [nbytes(q, ne) for _, ne, q in specs]
    out["gguf-every-tensor-type.gguf"] = build(
        [kv("test.sizes", ARR, arr(U64, sizes)),
         kv("test.types", ARR, arr(U32, [q for _, _, q in specs]))], infos, data=data)
    return out


# ---- invalid files -----------------------------------------------------------

HUGE = 2**64 - 1


def invalid_files():
    out = {}
    base = basic()

    out["gguf-G1-bad-magic.gguf"] = basic(magic=b"GGUX")
    out["gguf-G1-lowercase-magic.gguf"] = basic(magic=b"gguf")

    be = b"GGUF" + struct.pack(">IQQ", 3, 0, 1) + struct.pack(">Q", 1) + b"k" + struct.pack(">I", U8) + b"\1"
    out["gguf-G2-big-endian.gguf"] = be

    out["gguf-G3-version-1.gguf"] = basic(version=1)
    out["gguf-G3-version-4.gguf"] = basic(version=4)
    out["gguf-G3-version-0.gguf"] = basic(version=0)

    out["gguf-G4-empty.gguf"] = b""
    out["gguf-G4-truncated-magic.gguf"] = b"GG"
    out["gguf-G4-truncated-counts.gguf"] = base[:4 + 4 + 8 + 3]
    # truncated inside the last tensor info (in ne[1] of q); G5 still holds
    # because the long strings before make the file long enough.
    qinfo = tinfo("q", [32, 2], Q8_0T, 64)
    out["gguf-G4-truncated-tensor-info.gguf"] = build(
        [kv("general.architecture", STR, "x" * 40), kv("test.pad", STR, "y" * 40)],
        [tinfo("a", [4, 2], F32T, 0), qinfo[:len(gstr("q")) + 4 + 8 + 3]],
        n_tensors=2, pad_header=False)
    # truncated in a u32 value: key complete, type complete, 2 of 4 value bytes
    kvs = [kv("general.architecture", STR, "z" * 40), kv("test.u32", U32, 7)[:-2]]
    out["gguf-G4-truncated-value.gguf"] = build(kvs, [], pad_header=False)
    kvs = [kv("general.architecture", STR, "z" * 40), gstr("test.type") + b"\1\0"]
    out["gguf-G4-truncated-value-type.gguf"] = build(kvs, [], pad_header=False)

    out["gguf-G5-n-tensors-huge.gguf"] = basic(n_tensors=HUGE)
    out["gguf-G5-n-kv-huge.gguf"] = basic(n_kv=2**63)
    out["gguf-G5-n-kv-too-many.gguf"] = basic(n_kv=100)

    out["gguf-G6-key-length-huge.gguf"] = build([struct.pack("<Q", HUGE) + b"general.name"], [], n_kv=1)
    out["gguf-G6-string-beyond-file.gguf"] = basic(extra_kvs=[gstr("test.s") + struct.pack("<IQ", STR, 10**6) + b"abc"])
    out["gguf-G6-cut-inside-string.gguf"] = build([kv("general.name", STR, "n" * 100)], [])[:24 + 8 + 12 + 4 + 8 + 50]
    bad = tinfo("a", [4, 2], F32T, 0)
    bad = struct.pack("<Q", 2**40) + bad[8:]
    out["gguf-G6-tensor-name-length.gguf"] = basic(tensors=[bad])

    out["gguf-G7-empty-key.gguf"] = basic(extra_kvs=[kv("", U8, 1)])
    out["gguf-G7-non-utf8-key.gguf"] = basic(extra_kvs=[kv(b"test.\xff", U8, 1)])
    out["gguf-G7-overlong-utf8-key.gguf"] = basic(extra_kvs=[kv(b"test.\xc0\xaf", U8, 1)])
    out["gguf-G7-key-with-nul.gguf"] = basic(extra_kvs=[kv(b"test.a\0b", U8, 1)])

    out["gguf-G8-duplicate-key.gguf"] = basic(extra_kvs=[kv("test.u32", U32, 8)])

    out["gguf-G9-bad-value-type.gguf"] = basic(extra_kvs=[gstr("test.x") + struct.pack("<I", 13) + b"\0" * 8])
    out["gguf-G9-value-type-huge.gguf"] = basic(extra_kvs=[gstr("test.x") + struct.pack("<I", 0xFFFFFFFF) + b"\0" * 8])
    out["gguf-G9-bad-array-element-type.gguf"] = basic(extra_kvs=[gstr("test.x") + struct.pack("<IIQ", ARR, 99, 1) + b"\0" * 8])

    out["gguf-G10-array-count-huge.gguf"] = basic(extra_kvs=[gstr("test.x") + struct.pack("<IIQ", ARR, U8, HUGE)])
    out["gguf-G10-string-array-count-huge.gguf"] = basic(extra_kvs=[gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARR, STR, 2**61) + gstr("a")])
    out["gguf-G10-nested-array-bomb.gguf"] = basic(extra_kvs=[gstr("test.bomb") + struct.pack("<IIQ", ARR, ARR, 2**40) + struct.pack("<IQ", U8, 0) * 4])
    out["gguf-G10-array-beyond-file.gguf"] = basic(extra_kvs=[gstr("test.x") + struct.pack("<IIQ", ARR, U32, 1000) + b"\0" * 16])

    v = arr(U8, [1])
    for _ in range(8):
        v = arr(ARR, [v])
    out["gguf-G11-nesting-depth-9.gguf"] = basic(extra_kvs=[kv("test.deep9", ARR, v)])

    out["gguf-G12-bool-2.gguf"] = basic(extra_kvs=[kv("test.flag", U8, 2)[:-5] + struct.pack("<IB", BOOL, 2)])

    # G13 (metadata memory cap) cannot be broken by a small file under the
    # default cap; tests/unit/test_gguf.c checks it with fm_gguf_open_opts.

    out["gguf-G14-alignment-0.gguf"] = basic(extra_kvs=[kv("general.alignment", U32, 0)])
    out["gguf-G14-alignment-48.gguf"] = basic(extra_kvs=[kv("general.alignment", U32, 48)])
    out["gguf-G14-alignment-u64.gguf"] = basic(extra_kvs=[kv("general.alignment", U64, 32)])

    def with_tensor(info, ne, qt, size=None):
        d, offs = basic_data()
        off = pad_to(len(d), 32)
        n = size if size is not None else nbytes(qt, ne)
        d2 = d + b"\0" * (off - len(d)) + b"\x11" * n
        ts = [tinfo("a", [4, 2], F32T, offs[0]), tinfo("b", [8], F16T, offs[1]),
              tinfo("q", [32, 2], Q8_0T, offs[2]), info(off)]
        return basic(tensors=ts, data=d2)

    out["gguf-G15-empty-tensor-name.gguf"] = with_tensor(lambda o: tinfo("", [4], F32T, o), [4], F32T)
    out["gguf-G15-non-utf8-tensor-name.gguf"] = with_tensor(lambda o: tinfo(b"w\xe2\x82", [4], F32T, o), [4], F32T)
    out["gguf-G16-duplicate-tensor-name.gguf"] = with_tensor(lambda o: tinfo("b", [4], F32T, o), [4], F32T)
    out["gguf-G17-n-dims-0.gguf"] = with_tensor(lambda o: tinfo("z", [], F32T, o), [1], F32T)
    out["gguf-G17-n-dims-5.gguf"] = with_tensor(lambda o: tinfo("z", [1, 1, 1, 1, 1], F32T, o), [1], F32T)
    out["gguf-G18-ne-zero.gguf"] = with_tensor(lambda o: tinfo("z", [4, 0], F32T, o), [4], F32T)
    out["gguf-G19-ne-product-overflow.gguf"] = with_tensor(lambda o: tinfo("z", [2**32, 2**32], F32T, o), [4], F32T)
    out["gguf-G19-ne-above-int64.gguf"] = with_tensor(lambda o: tinfo("z", [2**63], I32T, o), [4], F32T)
    out["gguf-G19-byte-size-overflow.gguf"] = with_tensor(lambda o: tinfo("z", [2**62], F64T, o), [4], F32T)
    out["gguf-G20-unknown-type-4.gguf"] = with_tensor(lambda o: tinfo("z", [32], 4, o), [32], Q8_0T)
    out["gguf-G20-fm-own-type-256.gguf"] = with_tensor(lambda o: tinfo("z", [4], 256, o), [4], F32T)
    out["gguf-G20-type-huge.gguf"] = with_tensor(lambda o: tinfo("z", [4], 0xFFFFFFFF, o), [4], F32T)
    out["gguf-G21-q8-0-ne-33.gguf"] = with_tensor(lambda o: tinfo("z", [33], Q8_0T, o), [32], Q8_0T)
    # 128 x 2 = 256 values is one whole Q4_K block, but a row is half a block
    out["gguf-G21-q4k-row-half-block.gguf"] = with_tensor(lambda o: tinfo("z", [128, 2], Q4_KT, o), [256], Q4_KT)
    out["gguf-G22-offset-misaligned.gguf"] = with_tensor(lambda o: tinfo("z", [4], F32T, o + 4), [8], F32T)
    out["gguf-G23-tensor-beyond-file.gguf"] = with_tensor(lambda o: tinfo("z", [4096], F32T, o), [4], F32T)
    out["gguf-G23-offset-huge.gguf"] = with_tensor(lambda o: tinfo("z", [4], F32T, 2**64 - 32), [4], F32T)
    out["gguf-G23-data-truncated.gguf"] = basic()[:-1]
    out["gguf-G24-overlap.gguf"] = with_tensor(lambda o: tinfo("z", [16], F32T, 32), [4], F32T)
    out["gguf-G24-same-offset.gguf"] = with_tensor(lambda o: tinfo("z", [8], F32T, 0), [4], F32T)
    return out


def crosscheck(name, blob):
    """Reads a valid file back with gguf-py (when available) and compares
    tensor names, types, shapes and offsets with what we wrote."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return
    if "nested" in name:  # gguf-py does not read nested arrays' contents
        return
    path = os.path.join(VALID, name)
    r = GGUFReader(path)
    for t in r.tensors:
        if int(t.tensor_type) == 9:  # Q8_1: gguf-py's size is stale, see QT
            continue
        assert t.n_bytes == nbytes(int(t.tensor_type), [int(x) for x in t.shape]), (name, t.name)


def write(d, name, blob):
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(blob)


def main():
    for d, pat in ((VALID, "gguf-"), (INVALID, "gguf-"), (SEEDS, "seed-")):
        if os.path.isdir(d):
            for f in os.listdir(d):
                if f.startswith(pat) and f.endswith(".gguf"):
                    os.unlink(os.path.join(d, f))
    v = valid_files()
    for name, blob in sorted(v.items()):
        write(VALID, name, blob)
        crosscheck(name, blob)
    inv = invalid_files()
    for name, blob in sorted(inv.items()):
        write(INVALID, name, blob)
    for name in ("gguf-v3-basic.gguf", "gguf-every-value-type.gguf", "gguf-nested-arrays.gguf",
                 "gguf-align64.gguf", "gguf-every-tensor-type.gguf"):
        write(SEEDS, "seed-" + name[5:], v[name])
    print("gguf corpus: %d valid, %d invalid, seeds in %s" % (len(v), len(inv), os.path.relpath(SEEDS, ROOT)))


if __name__ == "__main__":
    sys.exit(main())
