#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
"""Extract the shipped real-data sample from the tiny-lm dumps.

Reads L2.npz and L5.npz of the tiny-lm model (see README.md here) and
writes, for each layer, float16 .npy files of q, k, v (after RoPE) and the
teacher output o (PyTorch full causal softmax attention, scale 1/8):

    L2_q.npy [1,6,N,64]  L2_k.npy [1,2,N,64]  L2_v.npy [1,2,N,64]  L2_o.npy [1,6,N,64]

and the same for L5.  N is the first --tokens positions (default: all 2048).
Only NumPy is needed (Debian's python3-numpy).

Usage:  /usr/bin/python3 extract.py SRC_DIR [OUT_DIR] [--tokens N]
"""
import argparse
import hashlib
import os
import sys

import numpy as np

LAYERS = (2, 5)
NAMES = ("q", "k", "v", "o")
# The dumps name the query array "Q" (upper case); the others are lower case.
SOURCE_NAME = {"q": ("q", "Q"), "k": ("k",), "v": ("v",), "o": ("o",)}


def source_array(npz, name):
    for candidate in SOURCE_NAME[name]:
        if candidate in npz.files:
            return npz[candidate]
    sys.exit("extract.py: %s: no array named %s (found %s)"
             % (npz.fid.name if hasattr(npz, "fid") else "npz", name, npz.files))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="directory holding L2.npz and L5.npz")
    ap.add_argument("out", nargs="?", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--tokens", type=int, default=2048)
    a = ap.parse_args()
    for layer in LAYERS:
        path = os.path.join(a.src, "L%d.npz" % layer)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        print("%s sha256 %s" % (path, digest))
        with np.load(path) as npz:
            for name in NAMES:
                x = source_array(npz, name)
                if x.ndim != 4 or x.shape[0] != 1 or x.shape[3] != 64:
                    sys.exit("extract.py: %s: %s has shape %s, expected [1,H,N,64]"
                             % (path, name, x.shape))
                x = x[:, :, :a.tokens, :]
                half = np.ascontiguousarray(x.astype("<f2"))
                if not np.all(np.isfinite(half)):
                    sys.exit("extract.py: %s: %s overflows float16" % (path, name))
                err = float(np.max(np.abs(half.astype(np.float64) - x.astype(np.float64))))
                out = os.path.join(a.out, "L%d_%s.npy" % (layer, name))
                np.save(out, half)
                print("%s %s <f2 max|f16-f32| %.3g" % (out, list(half.shape), err))


if __name__ == "__main__":
    main()
