# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
"""still.testing -- validate another implementation of STILL against the oracle.

    import still.testing
    report = still.testing.compare(my_still, N=128, chunk=32, topk=4,
                                   device="cuda", dtype=torch.float32)
    print(report)            # one line per tensor: PASS/FAIL, worst index, error, bound
    assert report.passed

compare() draws seeded inputs, rounds them to the user's dtype, runs the
user's function on them (on the user's device) and libstill's ref path
(float64, the oracle) on the same rounded values, and checks SPEC §10:

- the output: max |o - o_ref| <= tol * max |v| (tol = 1e-5, the fast
  path's contract; a looser tol for float16/bfloat16 ports);
- a selection, when fn returns one as (o, selected): the two selections
  may differ only between tokens whose scores sigma (the oracle's) differ
  by less than 1e-4 * (1 + |sigma|); the output is then compared with the
  oracle run on the user's selection, so that a near-tie never hides an
  error and never fails a correct port;
- when o is differentiable: for a seeded random dO, every gradient
  (q, k, v, gate, each parameter) within grad_tol * max |g_ref| of the
  oracle's VJP (SPEC §18) with the same routing; window.w, one value per
  head summed over all its outputs, against grad_tol * max(max |g_ref|, 1).

fn is called as fn(q, k, v) -- plus gate=G when gate=True, and params=
{name: tensor} when params are given -- with tensors of shape
[B,Hq,N,d], [B,Hk,N,d], [B,Hk,N,dv] that require grad; it returns o
[B,Hq,N,dv] or (o, selected [B,Hq,N]).  Configuration keywords are passed
to the oracle (fn implements the same configuration itself).
"""
import numpy as np
import torch

import still as _still

__all__ = ["compare", "Report", "Check", "random_inputs"]

SELECTION_TOL = 1e-4  # SPEC §10: near-ties of sigma
FORWARD_TOL = 1e-5    # SPEC §10: max|o - o_ref| <= 1e-5 max|v|
GRAD_TOL = 1e-5       # SPEC §10: per gradient array, relative to max|g_ref|


class Check:
    """One tensor's verdict: name, passed, worst (the index of the largest
    error, a tuple, or None), error and bound."""

    def __init__(self, name, passed, worst, error, bound, note=""):
        self.name, self.passed, self.worst = name, bool(passed), worst
        self.error, self.bound, self.note = float(error), float(bound), note

    def __str__(self):
        return "%s %-9s error %.3g %s bound %.3g at %s%s" % (
            "PASS" if self.passed else "FAIL", self.name, self.error,
            "<=" if self.passed else ">", self.bound,
            list(self.worst) if self.worst is not None else "-",
            " (%s)" % self.note if self.note else "")


class Report:
    """The result of compare(): .checks (a list of Check), .passed (all of
    them), .by_name(name); str() gives one line per tensor."""

    def __init__(self, checks, differentiable):
        self.checks = list(checks)
        self.differentiable = differentiable

    @property
    def passed(self):
        return all(c.passed for c in self.checks)

    def by_name(self, name):
        return next(c for c in self.checks if c.name == name)

    def __bool__(self):
        return self.passed

    def __str__(self):
        lines = [str(c) for c in self.checks]
        if not self.differentiable:
            lines.append("note: the output is not differentiable; gradients not compared")
        lines.append("%s: %d of %d checks pass" % ("PASS" if self.passed else "FAIL",
                                                   sum(c.passed for c in self.checks),
                                                   len(self.checks)))
        return "\n".join(lines)


def _worst(err):
    i = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else None
    return (tuple(int(x) for x in i) if i is not None else None,
            float(err[i]) if i is not None else 0.0)


def _within(name, got, want, bound):
    """A Check of max |got - want| <= bound (NaN in got fails)."""
    if got.shape != want.shape:
        return Check(name, False, None, float("inf"), bound,
                     "shape %s, expected %s" % (list(got.shape), list(want.shape)))
    err = np.abs(got.astype(np.float64) - want)
    err = np.where(np.isnan(err), np.inf, err)
    worst, e = _worst(err)
    return Check(name, e <= bound, worst, e, bound)


def _selection_check(sel, ref_sel, sigma, chunk):
    """SPEC §10: where two selections differ, the tokens chosen by one and
    not by the other must have scores within 1e-4 (1 + |sigma|) of each
    other.  The error is the largest score gap, over chunks, between the
    best token the user left out and the worst token the user took."""
    if sel.shape != ref_sel.shape:
        return Check("selection", False, None, float("inf"), SELECTION_TOL,
                     "shape %s, expected %s" % (list(sel.shape), list(ref_sel.shape)))
    sel = sel.astype(bool)
    ref_sel = ref_sel.astype(bool)
    worst, err, ratio = None, 0.0, 0.0
    B, H, N = sel.shape
    for b in range(B):
        for h in range(H):
            for c0 in range(0, N - N % chunk, chunk):
                s, r = sel[b, h, c0:c0 + chunk], ref_sel[b, h, c0:c0 + chunk]
                if np.array_equal(s, r):
                    continue
                sg = sigma[b, h, c0:c0 + chunk]
                left_out, taken = np.flatnonzero(r & ~s), np.flatnonzero(s & ~r)
                if len(left_out) != len(taken):
                    return Check("selection", False, (b, h, c0), float("inf"), SELECTION_TOL,
                                 "chunk at %d holds %d tokens, expected %d"
                                 % (c0, int(s.sum()), int(r.sum())))
                hi = left_out[np.argmax(sg[left_out])]
                lo = taken[np.argmin(sg[taken])]
                gap = sg[hi] - sg[lo]
                tol = 1 + abs(sg[hi]) if np.isfinite(sg[hi]) else np.inf
                if np.isinf(sg[hi]) and np.isinf(sg[lo]):
                    gap = 0.0
                if gap / tol > ratio or worst is None:
                    worst, err, ratio = (b, h, c0 + int(lo)), float(gap), gap / tol
    return Check("selection", ratio <= SELECTION_TOL, worst, ratio, SELECTION_TOL,
                 "score gap relative to 1 + |sigma|" if worst is not None else "identical")


def random_inputs(B=1, Hq=2, Hk=1, N=64, d=16, dv=16, gate=False, seed=0):
    """Seeded float64 inputs: a dict with q, k, v (standard normal), gate
    (uniform in (0.1, 1) when gate is true) and dO (standard normal)."""
    rng = np.random.default_rng(seed)
    x = {"q": rng.standard_normal((B, Hq, N, d)), "k": rng.standard_normal((B, Hk, N, d)),
         "v": rng.standard_normal((B, Hk, N, dv))}
    if gate:
        x["gate"] = rng.uniform(0.1, 1.0, (B, Hq, N, dv))
    x["dO"] = rng.standard_normal((B, Hq, N, dv))
    return x


def compare(fn, B=1, Hq=2, Hk=1, N=64, d=16, dv=16, gate=False, params=None, seed=0,
            device="cpu", dtype=torch.float32, tol=FORWARD_TOL, grad_tol=GRAD_TOL,
            backward=True, **config):
    """Run fn and the oracle on the same seeded inputs; a Report (see the
    module's text).  params: a dict of SPEC §11 names to arrays (the same
    values go to fn, as tensors requiring grad, and to the oracle)."""
    x = random_inputs(B, Hq, Hk, N, d, dv, gate, seed)
    names = ["q", "k", "v"] + (["gate"] if gate else [])
    pnames = sorted(params or {})

    def tensor(a):
        return torch.tensor(a, dtype=dtype, device=device, requires_grad=True)

    ins = {n: tensor(x[n]) for n in names}
    pins = {n: tensor(np.asarray(params[n], dtype=np.float64)) for n in pnames}
    # the oracle reads exactly the values fn reads: x rounded to dtype
    exact = {n: ins[n].detach().to("cpu", torch.float64).numpy() for n in names}
    pexact = {n: pins[n].detach().to("cpu", torch.float64).numpy() for n in pnames} or None
    kw = {"gate": ins["gate"]} if gate else {}
    if pnames:
        kw["params"] = pins
    out = fn(ins["q"], ins["k"], ins["v"], **kw)
    sel = None
    if isinstance(out, (tuple, list)):
        out, sel = out[0], out[1]
    o = out.detach().to("cpu", torch.float64).numpy()

    checks = []
    oracle = dict(gate=exact.get("gate"), params=pexact, **config)
    _, sigma, ref_sel = _still.ref_forward(exact["q"], exact["k"], exact["v"],
                                           return_sigma=True, return_selected=True, **oracle)
    forced = None
    if sel is not None:
        sel = np.asarray(sel.detach().to("cpu").numpy() if isinstance(sel, torch.Tensor)
                         else sel)
        chunk = int(config.get("chunk", 64))
        checks.append(_selection_check(sel, ref_sel, sigma, chunk))
        forced = sel.astype(np.uint8) if sel.shape == ref_sel.shape else None
    o_ref = _still.ref_forward(exact["q"], exact["k"], exact["v"], selection=forced, **oracle)
    checks.append(_within("o", o, o_ref, tol * float(np.max(np.abs(exact["v"])))))

    differentiable = backward and out.requires_grad and out.grad_fn is not None
    if differentiable:
        dO = torch.tensor(x["dO"], dtype=out.dtype, device=out.device)
        wrt = [ins[n] for n in names] + [pins[n] for n in pnames]
        grads = torch.autograd.grad(out, wrt, dO, allow_unused=True)
        dO_exact = dO.detach().to("cpu", torch.float64).numpy()
        _, g_ref = _still.ref_vjp(exact["q"], exact["k"], exact["v"], dO_exact,
                                  selection=forced if forced is not None else ref_sel,
                                  **oracle)
        for n, g in zip(names + pnames, grads):
            want = g_ref[n]
            scale = float(np.max(np.abs(want))) if want.size else 0.0
            if n == "window.w":
                scale = max(scale, 1.0)
            if g is None:
                checks.append(Check("d" + n, scale == 0.0, None, scale, 0.0,
                                    "fn's output does not depend on it"))
                continue
            checks.append(_within("d" + n, g.detach().to("cpu", torch.float64).numpy(), want,
                                  grad_tol * scale))
    return Report(checks, differentiable)
