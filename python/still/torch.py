# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
"""still.torch -- STILL attention as a PyTorch autograd function and module.

    import torch, still.torch as st
    o = st.attention(q, k, v, chunk=16, topk=2)          # ref path, float64
    o = st.attention(q, k, v, path="fast")               # fast path, float32
    o, sel = st.attention(q, k, v, return_selected=True)
    o.backward(do)                                        # SPEC §18 VJP
    layer = st.StillAttention(heads_q=4, dim_qk=16, chunk=16, topk=2)
    o = layer(q, k, v)                                    # trains fq.W, fq.b, ...

The forward runs libstill's ref path (float64, the oracle) or its fast path
(float32); the backward is the library's VJP on the same path, with the
routing (scores, selection, evictions) held fixed as the forward chose it
(SPEC §18: no gradient flows through the choice of keys).  Gradients reach
q, k, v, the gate and every parameter tensor given (feature maps fq.*,
fk.*, window.w).  Tensors may live on any device and have any real dtype:
they are computed on the CPU and results come back in the dtype and on the
device of q (each gradient in those of its input).  Double backward is not
supported.

Configuration keywords are those of still.ref_forward (any field of
struct still_config: chunk, topk, window, local, max_sel, routing, act,
npmap, select_per_kv, scale, eps_den, saliency, phantom_sink, isa,
threads); every routing of the library (still.routings()) works the same
way, so a new one needs nothing here.
"""
import numpy as np
import torch

import still as _still

__all__ = ["StillFunction", "attention", "StillAttention", "PARAM_NAMES"]

# SPEC §11 names of the parameters, in the order StillFunction takes them.
PARAM_NAMES = ("fq.W", "fq.b", "fq.u", "fk.W", "fk.b", "fk.u", "window.w")
_PATHS = {"ref": (_still.ref_forward, _still.ref_vjp),
          "fast": (_still.forward, _still.vjp)}


def _np(t):
    """A tensor as a NumPy array on the CPU (None stays None)."""
    return None if t is None else t.detach().to("cpu").numpy()


def _back(a, like):
    """A NumPy result as a tensor in the dtype and on the device of like."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype=like.dtype, device=like.device)


class _Call:
    """What StillFunction needs besides tensors: the path, the layout, the
    configuration, the names of the parameter tensors and a forced selection."""

    def __init__(self, path, layout, config, names, selection):
        if path not in _PATHS:
            raise ValueError("path must be 'ref' or 'fast', got %r" % (path,))
        self.path, self.layout, self.config = path, layout, dict(config)
        self.names, self.selection = tuple(names), selection


class StillFunction(torch.autograd.Function):
    """apply(call, q, k, v, gate, *params) -> (o, selected): the forward and
    its VJP through libstill.  Use attention() or StillAttention rather than
    this directly."""

    @staticmethod
    def forward(ctx, call, q, k, v, gate, *params):
        fwd, _ = _PATHS[call.path]
        o, sel = fwd(_np(q), _np(k), _np(v), gate=_np(gate),
                     params=dict(zip(call.names, (_np(p) for p in params))) or None,
                     selection=call.selection, layout=call.layout, return_selected=True,
                     **call.config)
        ctx.call = call
        ctx.selected = sel
        ctx.save_for_backward(q, k, v, gate, *params)
        sel_t = torch.from_numpy(sel).to(q.device)
        ctx.mark_non_differentiable(sel_t)
        return _back(o, q), sel_t

    @staticmethod
    def backward(ctx, do, _dsel):
        call = ctx.call
        q, k, v, gate, *params = ctx.saved_tensors
        _, bwd = _PATHS[call.path]
        # the forward's selection fixes the routing (SPEC §18)
        _, grads = bwd(_np(q), _np(k), _np(v), _np(do), gate=_np(gate),
                       params=dict(zip(call.names, (_np(p) for p in params))) or None,
                       selection=ctx.selected if _has_selection(call.config) else call.selection,
                       layout=call.layout, **call.config)
        need = ctx.needs_input_grad
        out = [None]
        for i, (name, t) in enumerate((("q", q), ("k", k), ("v", v), ("gate", gate)), 1):
            out.append(_back(grads[name], t) if t is not None and need[i] else None)
        for i, (name, t) in enumerate(zip(call.names, params), 5):
            out.append(_back(grads[name], t) if need[i] else None)
        return tuple(out)


def _has_selection(config):
    """Whether the routing chooses keys by a selection that a forced one can
    fix (SPEC §5): the saliency routing (the default)."""
    r = config.get("routing", "saliency")
    return r in ("saliency", 0)


def _check_tensor(t, name):
    if not isinstance(t, torch.Tensor):
        raise _still.DtypeError(name, "expected a torch.Tensor, got %s" % type(t).__name__)
    if t.is_complex() or t.dtype == torch.bool:
        raise _still.DtypeError(name, "expected real numbers, got dtype %s" % t.dtype)
    return t


def attention(q, k, v, gate=None, params=None, selection=None, path="ref", layout="BHND",
              return_selected=False, **config):
    """STILL attention (SPEC §6) of torch tensors, differentiable (SPEC §18).

    q [B,Hq,N,d], k [B,Hk,N,d], v [B,Hk,N,dv], gate [B,Hq,N,dv] or None
    (layout "BNHD": [B,N,H,*]; 3-D tensors mean B = 1); params a dict of
    tensors named as in SPEC §11 ("fq.W" [Hq,f,d], "fq.b", "fq.u", "fk.*",
    "window.w" [Hq]); selection a forced selection [B,Hq,N] (tensor or
    array of 0/1).  path "ref" computes in float64, "fast" in float32.
    Returns o, or (o, selected) with return_selected (uint8 [B,Hq,N]).
    Arguments are checked as in still.ref_forward (ShapeError, DtypeError,
    ... naming the array).
    """
    q, k, v = (_check_tensor(t, n) for t, n in ((q, "q"), (k, "k"), (v, "v")))
    if gate is not None:
        _check_tensor(gate, "gate")
    params = dict(params or {})
    unknown = set(params) - set(PARAM_NAMES)
    if unknown:
        raise KeyError("unknown parameter names %s (expected %s)"
                       % (sorted(unknown), list(PARAM_NAMES)))
    names = [n for n in PARAM_NAMES if n in params]
    for n in names:
        _check_tensor(params[n], n)
    if isinstance(selection, torch.Tensor):
        selection = _np(selection)
    call = _Call(path, layout, config, names, selection)
    o, sel = StillFunction.apply(call, q, k, v, gate, *(params[n] for n in names))
    return (o, sel) if return_selected else o


class StillAttention(torch.nn.Module):
    """A STILL attention layer with trainable feature maps (SPEC §2, §6).

    StillAttention(heads_q, dim_qk, features=None, key_map=False,
                   bias=True, householder=False, window_weight=None,
                   path="ref", layout="BHND", **config)

    Parameters (torch.nn.Parameter, named with "_" for SPEC's "."):
    fq_W [Hq,f,d] (the identity when f = d, the default; else a random
    orthonormal-row start), fq_b [Hq,f] (zeros, with bias), fq_u [Hq,d]
    (random, with householder); the same fk_* with key_map=True (else the
    key map is tied to the query map); window_w [Hq] (zeros: omega = 1/2)
    when window_weight is true, by default with routing "window".
    forward(q, k, v, gate=None, selection=None) returns o as attention().
    """

    def __init__(self, heads_q, dim_qk, features=None, key_map=False, bias=True,
                 householder=False, window_weight=None, path="ref", layout="BHND",
                 dtype=torch.float64, **config):
        super().__init__()
        f = dim_qk if features is None else int(features)
        self.path, self.layout, self.config = path, layout, dict(config)
        gen = torch.Generator().manual_seed(0)

        def weight():
            if f == dim_qk:
                return torch.eye(f, dtype=dtype).repeat(heads_q, 1, 1)
            w = torch.randn(heads_q, max(f, dim_qk), min(f, dim_qk), generator=gen,
                            dtype=dtype)
            w = torch.linalg.qr(w).Q
            return w if f > dim_qk else w.transpose(1, 2)

        maps = ["fq"] + (["fk"] if key_map else [])
        for m in maps:
            setattr(self, m + "_W", torch.nn.Parameter(weight()))
            if bias:
                setattr(self, m + "_b", torch.nn.Parameter(torch.zeros(heads_q, f, dtype=dtype)))
            if householder:
                u = torch.randn(heads_q, dim_qk, generator=gen, dtype=dtype)
                setattr(self, m + "_u", torch.nn.Parameter(u))
        if window_weight is None:
            window_weight = self.config.get("routing") in ("window", 1)
        if window_weight:
            self.window_w = torch.nn.Parameter(torch.zeros(heads_q, dtype=dtype))

    def spec_params(self):
        """The parameters as a dict of SPEC §11 names ("fq.W", ...)."""
        out = {}
        for n in PARAM_NAMES:
            t = getattr(self, n.replace(".", "_"), None)
            if t is not None:
                out[n] = t
        return out

    def forward(self, q, k, v, gate=None, selection=None):
        return attention(q, k, v, gate=gate, params=self.spec_params(), selection=selection,
                         path=self.path, layout=self.layout, **self.config)
