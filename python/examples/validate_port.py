#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
"""validate_port.py -- validate a PyTorch implementation of STILL with
still.testing.compare().

still_torch() below is a plain PyTorch transcription of SPEC §2-§6 (the
default configuration: saliency routing, hedgehog maps with the identity
weights and norm preservation, no cap), written without libstill, the way
a GPU port would be.  compare() runs it and libstill's oracle on the same
seeded inputs and checks SPEC §10 on the output, the selection it returns
and every gradient.  still_torch_wrong_scale() is the same with the logit
scale 1/d instead of 1/sqrt(d): compare() reports it failing.

Run:  STILL_LIB=lib/.libs/libstill.so PYTHONPATH=python python3 python/examples/validate_port.py
(--device cuda to run the implementation on a GPU).  Exits 0 when the
correct implementation passes and the wrong one fails.
"""
import argparse
import math
import sys

import torch

import still.testing

EPS_SAL = 1e-8  # SPEC §4


def hedgehog(x):
    """SPEC §2 with W = I, no b, no u, norm preservation on: y = x, so
    phi = max([softmax(x), softmax(-x)], 1e-12)."""
    return torch.cat([x.softmax(-1), (-x).softmax(-1)], -1).clamp_min(1e-12)


def saliency(s, w):
    """SPEC §4: sigma_t of one head from its logits s [N,N] and window w."""
    N = s.shape[0]
    sigma = torch.empty(N, dtype=s.dtype, device=s.device)
    sigma[0] = math.inf
    for t in range(1, N):
        lo = max(0, t - w + 1)
        row = s[t, lo:t + 1]
        p = row.softmax(0)
        pt = torch.cat([row[:-1].softmax(0), row.new_zeros(1)])
        sigma[t] = (p * torch.log((p + EPS_SAL) / (pt + EPS_SAL))).sum()
    return sigma


def select(sigma, C, k):
    """SPEC §5: the k highest scores of each complete chunk, ties to the
    smaller position (a stable sort keeps positions in order)."""
    N = sigma.shape[0]
    sel = torch.zeros(N, dtype=torch.bool, device=sigma.device)
    for c0 in range(0, N - N % C, C):
        order = torch.sort(sigma[c0:c0 + C], descending=True, stable=True).indices
        sel[c0 + order[:k]] = True
    return sel


def still_torch(q, k, v, chunk=16, topk=2, local=2, eps_den=1e-6, scale=None):
    """SPEC §6 for q [B,Hq,N,d], k [B,Hk,N,d], v [B,Hk,N,dv]; returns
    (o, selected) with selected [B,Hq,N] (uint8)."""
    B, Hq, N, d = q.shape
    G = Hq // k.shape[1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    w = max(chunk, 2)
    pos = torch.arange(N, device=q.device)
    causal = pos[None, :] <= pos[:, None]
    cq, cj = (pos // chunk)[:, None], (pos // chunk)[None, :]
    recent = causal & (cj > cq - local)          # the last L chunks, exact
    split = cj <= torch.minimum(cq - local, cq - 1)
    outs, sels = [], []
    for b in range(B):
        ob, sb = [], []
        for h in range(Hq):
            qh, kh, vh = q[b, h], k[b, h // G], v[b, h // G]
            s = scale * qh @ kh.T
            with torch.no_grad():  # the routing is a constant (SPEC §18)
                sel = select(saliency(s.detach(), w), chunk, topk)
            exact = recent | (causal & split & sel[None, :])
            linear = causal & ~exact
            m = s.masked_fill(~exact, -math.inf).amax(1, keepdim=True)
            m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
            e = torch.exp(s - m) * exact
            kappa = (hedgehog(qh) @ hedgehog(kh).T) * linear
            num = e @ vh + kappa @ vh
            den = e.sum(1, keepdim=True) + kappa.sum(1, keepdim=True) + eps_den
            ob.append(num / den)
            sb.append(sel.to(torch.uint8))
        outs.append(torch.stack(ob))
        sels.append(torch.stack(sb))
    return torch.stack(outs), torch.stack(sels)


def still_torch_wrong_scale(q, k, v, **kw):
    """A deliberate bug: the logits scaled by 1/d instead of 1/sqrt(d)."""
    return still_torch(q, k, v, scale=1.0 / q.shape[-1], **kw)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    config = dict(chunk=16, topk=2, local=2)
    status = 0
    for name, fn, should_pass in (("still_torch", still_torch, True),
                                  ("still_torch_wrong_scale", still_torch_wrong_scale, False)):
        report = still.testing.compare(lambda q, k, v: fn(q, k, v, **config), Hq=4, Hk=2,
                                       N=64, d=16, dv=8, device=args.device, **config)
        print("== %s (expected to %s)" % (name, "pass" if should_pass else "fail"))
        print(report)
        if report.passed != should_pass:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
