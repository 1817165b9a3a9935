# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
"""peers.py -- times PyTorch's CPU attention at the shapes of `still bench`.

Full causal softmax attention, float32, batch 1, H heads, d = dv, with
torch.set_num_threads(T): torch.nn.functional.scaled_dot_product_attention
(is_causal=True) where this torch has it (2.0 and later); older torch
(Debian 12 ships 1.13) has no fused kernel, and the best it offers is
matmul, masked softmax and matmul, run here in blocks of 2048 queries
against their visible keys (an N x N score matrix of 8 heads at N = 16384
would need 8.6 GB).  Prints one line per (N, threads):

  peer <method> N=<n> threads=<t> median=<seconds> runs=<r>

the median of --reps runs after one warm-up run.  bench/peers.sh runs it
next to `still bench` and prints the ratios.

--decode times instead one decode step, a single query against a KV cache
of N tokens (it sees them all, so no mask): scaled_dot_product_attention or
matmul, softmax and matmul on q [1, H, 1, d], k and v [1, H, N, d], --steps
times after --steps // 8 untimed ones, and prints

  peer-decode <method> N=<n> threads=<t> median=<seconds> runs=<r>
"""
import argparse
import math
import statistics
import sys
import time

import torch


def sdpa_fused(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


def sdpa_blocked(q, k, v, block=2048):
    n, d = q.shape[-2], q.shape[-1]
    out = torch.empty_like(q)
    scale = 1.0 / math.sqrt(d)
    for a in range(0, n, block):
        b = min(n, a + block)
        s = torch.matmul(q[..., a:b, :], k[..., :b, :].transpose(-1, -2)) * scale
        qi = torch.arange(a, b).unsqueeze(1)
        kj = torch.arange(0, b).unsqueeze(0)
        s.masked_fill_(kj > qi, float("-inf"))
        out[..., a:b, :] = torch.matmul(torch.softmax(s, dim=-1), v[..., :b, :])
    return out


def decode_fused(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def decode_matmul(q, k, v):
    s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    return torch.matmul(torch.softmax(s, dim=-1), v)


def decode_main(a, fused):
    fn, name = (decode_fused, "torch-sdpa") if fused else (decode_matmul, "torch-matmul-softmax")
    print("# torch %s, %d threads, %s, decode" % (torch.__version__, torch.get_num_threads(), name))
    for n in [int(x) for x in a.n.split(",") if x]:
        g = torch.Generator().manual_seed(n)
        k, v = (torch.randn(1, a.heads, n, a.dim, generator=g) for _ in range(2))
        q = torch.randn(1, a.heads, 1, a.dim, generator=g)
        times = []
        with torch.no_grad():
            for r in range(a.steps + a.steps // 8):
                t0 = time.perf_counter()
                fn(q, k, v)
                if r >= a.steps // 8:
                    times.append(time.perf_counter() - t0)
        print("peer-decode %s N=%d threads=%d median=%.6f runs=%d"
              % (name, n, a.threads, statistics.median(times), len(times)))
        sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="4096,16384")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--decode", action="store_true")
    ap.add_argument("--steps", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    fused = hasattr(torch.nn.functional, "scaled_dot_product_attention")
    if a.decode:
        decode_main(a, fused)
        return
    fn, name = (sdpa_fused, "torch-sdpa") if fused else (sdpa_blocked, "torch-matmul-softmax")
    print("# torch %s, %d threads, %s" % (torch.__version__, torch.get_num_threads(), name))
    for n in [int(x) for x in a.n.split(",") if x]:
        g = torch.Generator().manual_seed(n)
        q, k, v = (torch.randn(1, a.heads, n, a.dim, generator=g) for _ in range(3))
        times = []
        with torch.no_grad():
            for r in range(a.reps + 1):
                t0 = time.perf_counter()
                fn(q, k, v)
                if r:
                    times.append(time.perf_counter() - t0)
        print("peer %s N=%d threads=%d median=%.4f runs=%d"
              % (name, n, a.threads, statistics.median(times), len(times)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
