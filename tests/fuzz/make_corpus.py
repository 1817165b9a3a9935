#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
"""make_corpus.py -- writes the seed corpus of the .npy, safetensors and
tool-options fuzz targets (issue 7) into tests/fuzz/corpus/<target>/.  Standard
library only (no numpy), so the bytes are built by hand from the formats:
NumPy's .npy v1-v3 and safetensors (8-byte LE header length, JSON, data).
Run it from anywhere; it rewrites the files it owns (seed-*)."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def npy(descr, shape, payload, version=(1, 0), fortran=False, align=64, raw_header=None):
    if raw_header is None:
        sh = "(" + "".join("%d," % s for s in shape) + ")" if len(shape) == 1 else \
            "(" + ", ".join(str(s) for s in shape) + ")"
        raw_header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
            descr, "True" if fortran else "False", sh)
    lenbytes = 2 if version[0] == 1 else 4
    pre = 6 + 2 + lenbytes
    hdr = raw_header.encode("utf-8" if version[0] == 3 else "latin1")
    total = pre + len(hdr) + 1
    pad = (-total) % align
    hdr = hdr + b" " * pad + b"\n"
    fmt = "<H" if lenbytes == 2 else "<I"
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(hdr)) + hdr + payload


def floats(fmt, n, start=0.0, step=0.25):
    return b"".join(struct.pack(fmt, start + step * i) for i in range(n))


def st(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, bytes)."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dt, shape, payload in tensors:
        header[name] = {"dtype": dt, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def write(sub, name, blob):
    d = os.path.join(HERE, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(blob)


def main():
    # .npy: accepted dtypes, versions, shapes; and a few refusals
    write("npy", "f4-2x3.npy", npy("<f4", (2, 3), floats("<f", 6)))
    write("npy", "f8-1x2x4x3.npy", npy("<f8", (1, 2, 4, 3), floats("<d", 24)))
    write("npy", "u1-2x5.npy", npy("|u1", (2, 5), bytes([0, 1, 1, 0, 1, 0, 0, 1, 0, 1])))
    write("npy", "f2-4.npy", npy("<f2", (4,), b"\x00\x3c\x00\xc0\x00\x7c\x01\x00"))
    write("npy", "f4-v2.npy", npy("<f4", (3,), floats("<f", 3), version=(2, 0)))
    write("npy", "f8-v3.npy", npy("<f8", (2, 2), floats("<d", 4), version=(3, 0)))
    write("npy", "f8-scalar.npy", npy("<f8", (), floats("<d", 1)))
    write("npy", "f4-empty-0x3.npy", npy("<f4", (0, 3), b""))
    write("npy", "f4-align16.npy", npy("<f4", (2,), floats("<f", 2), align=16))
    write("npy", "f4-fortran.npy", npy("<f4", (2, 2), floats("<f", 4), fortran=True))
    write("npy", "f4-bigendian.npy", npy(">f4", (2,), b"\x3f\x80\x00\x00" * 2))
    write("npy", "f4-truncated.npy", npy("<f4", (4, 4), floats("<f", 5)))
    write("npy", "f4-keys-reordered.npy",
          npy("<f4", None, floats("<f", 2),
              raw_header="{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}"))
    write("npy", "f4-huge-shape.npy", npy("<f4", (1 << 40, 1 << 40), b""))
    # tool-sized inputs: q [1,2,8,4], k [1,1,8,4], v [1,1,8,3]
    write("npy", "q-1x2x8x4.npy", npy("<f4", (1, 2, 8, 4), floats("<f", 64, -1.0, 1.0 / 32)))
    write("npy", "k-1x1x8x4.npy", npy("<f4", (1, 1, 8, 4), floats("<f", 32, 0.5, -1.0 / 32)))
    write("npy", "v-1x1x8x3.npy", npy("<f4", (1, 1, 8, 3), floats("<f", 24, -0.75, 1.0 / 16)))

    # safetensors: the parameter files of SPEC §11 and other shapes
    H, f, d = 2, 4, 4
    write("safetensors", "params-fq.safetensors", st([
        ("fq.W", "F32", [H, f, d], floats("<f", H * f * d, -0.5, 1.0 / 64)),
        ("fq.b", "F32", [H, f], floats("<f", H * f, 0.1, 0.01)),
        ("fq.u", "F32", [H, d], floats("<f", H * d, 1.0, -0.1)),
    ]))
    write("safetensors", "params-fq-fk-window.safetensors", st([
        ("fk.W", "F64", [H, f, d], floats("<d", H * f * d, 0.5, -1.0 / 64)),
        ("fq.W", "F64", [H, f, d], floats("<d", H * f * d, -0.5, 1.0 / 64)),
        ("window.w", "F64", [H], floats("<d", H, 0.0, 1.0)),
    ], metadata={"format": "pt", "note": "seed"}))
    write("safetensors", "half-and-bf16.safetensors", st([
        ("a", "F16", [2, 2], b"\x00\x3c\x00\x40\x00\xc0\x00\x00"),
        ("b", "BF16", [3], b"\x80\x3f\x00\x40\x80\xbf"),
    ]))
    write("safetensors", "empty.safetensors", st([]))
    write("safetensors", "scalar-and-zero.safetensors", st([
        ("s", "F32", [], floats("<f", 1)),
        ("z", "F64", [0, 5], b""),
    ]))
    write("safetensors", "unsupported-dtype.safetensors", st([("i", "I64", [2], b"\x01" * 16)]))
    write("safetensors", "offsets-past-end.safetensors",
          struct.pack("<Q", 64) +
          b'{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,1024]}}      ' + b"\x00" * 16)

    # the tool's options: argv words separated by NUL bytes
    argvs = {
        "run-minimal": ["--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", "o.npy"],
        "run-all-options": [
            "--q=q.npy", "--k", "k.npy", "--v", "v.npy", "--gate", "g.npy", "--params",
            "p.safetensors", "--chunk", "8", "--topk", "2", "--window", "16", "--local", "1",
            "--routing", "window", "--act", "elu1", "--no-npmap", "--eps-den", "0", "--scale",
            "0.5", "--cap", "32", "--path", "fast", "--isa", "avx2", "--threads", "2", "--mode",
            "prefill", "--dtype", "f8", "--out", "o.npy", "--scores-out", "s.npy",
            "--select-out", "sel.npy"],
        "run-decode-select": ["--q", "q", "--k", "k", "--v", "v", "--out", "o", "--mode",
                              "decode", "--select-in", "x.npy"],
        "run-bad-numbers": ["--chunk", "1e3", "--topk", "-1", "--eps-den", "nan", "--scale",
                            "0x1p-3", "--threads", "99999999999999999999"],
        "run-same-outputs": ["--q", "q", "--k", "k", "--v", "v", "--out", "o", "--scores-out", "o"],
        # the output set (scratch directory): several outputs committed (last byte
        # even) or left unwritten and aborted (odd), the same file through ./ and
        # sub/.., an output on an input, a missing directory, a directory, and
        # existing files ("old") that must survive every failure
        "outs-three-commit": ["--q", "q", "--k", "k", "--v", "v", "--out", "oldo",
                              "--scores-out", "s", "--select-out", "sel"],
        "outs-three-abort": ["--q", "q", "--k", "k", "--v", "v", "--out", "oldo",
                             "--scores-out", "olds", "--select-out", "sel1"],
        "outs-dot-twice": ["--q", "q", "--k", "k", "--v", "v", "--out", "oldo",
                           "--scores-out", "./oldo"],
        "outs-sub-twice": ["--q", "q", "--k", "k", "--v", "v", "--out", "new",
                           "--select-out", "sub/new"],
        "outs-on-input": ["--q", "oldq", "--k", "k", "--v", "v", "--out", "./oldq"],
        "outs-missing-dir": ["--q", "q", "--k", "k", "--v", "v", "--out", "oldo",
                             "--scores-out", "olds", "--select-out", "none/sel"],
        "outs-directory": ["--q", "q", "--k", "k", "--v", "v", "--out", "oldo",
                           "--scores-out", "dir"],
    }
    for name, words in argvs.items():
        write("tool_args", name, b"\0".join(w.encode() for w in words))


if __name__ == "__main__":
    main()
