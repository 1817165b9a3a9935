# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
"""still.py -- call libstill from Python on NumPy arrays (ctypes, no build step).

Meant for comparing another implementation of STILL (a GPU port, a PyTorch
module) with libstill's ref path (the oracle, double precision) and its fast
path (float32) in the same process:

    import numpy as np, still
    o_ref = still.ref_forward(q, k, v)                 # SPEC §6, float64
    o_teacher = still.ref_teacher(q, k, v)             # SPEC §1
    o_fast = still.forward(q, k, v)                    # float32 fast path
    o, sigma, sel = still.ref_forward(q, k, v, chunk=64, topk=4,
                                      return_sigma=True, return_selected=True)
    o2 = still.ref_forward(q, k, v, selection=sel)     # forced selection (SPEC §10)

Arrays are q [B,Hq,N,d], k [B,Hk,N,d], v [B,Hk,N,dv], gate [B,Hq,N,dv]
(layout "BHND"; layout="BNHD" for [B,N,H,*]); 3-D arrays mean B = 1 and the
result is 3-D as well.  Configuration fields are keyword arguments named as
in struct still_config (chunk, topk, window, local, max_sel, routing, act,
npmap, select_per_kv, scale, eps_den, saliency, phantom_sink, isa, threads);
routing, act, saliency and isa also take their names as strings.
Parameters are a dict named as in SPEC §11 ("fq.W" [Hq,f,d], "fq.b",
"fq.u", "fk.*", "window.w").  Errors raise StillError with the library's
status code and still_strerror() text.

The library is found through the environment variable STILL_LIB (a path to
libstill.so), else in the build tree next to this file (../lib/.libs), else
where make install put it (for the installed module), else by the system's
library search (ctypes.util.find_library).
"""
import ctypes
import ctypes.util
import os

import numpy as np

__all__ = ["StillError", "ref_forward", "forward", "ref_teacher", "teacher",
           "version", "strerror", "library_path"]

# ---- the C types of include/still.h (field order and types must match) ----


class _Config(ctypes.Structure):
    _fields_ = [("chunk", ctypes.c_int64), ("topk", ctypes.c_int64),
                ("window", ctypes.c_int64), ("local", ctypes.c_int64),
                ("max_sel", ctypes.c_int64), ("routing", ctypes.c_int),
                ("act", ctypes.c_int), ("npmap", ctypes.c_int),
                ("select_per_kv", ctypes.c_int), ("scale", ctypes.c_double),
                ("eps_den", ctypes.c_double), ("saliency", ctypes.c_int),
                ("phantom_sink", ctypes.c_int), ("isa", ctypes.c_int),
                ("threads", ctypes.c_int)]


class _Shape(ctypes.Structure):
    _fields_ = [("batch", ctypes.c_int64), ("heads_q", ctypes.c_int64),
                ("heads_kv", ctypes.c_int64), ("seq_len", ctypes.c_int64),
                ("dim_qk", ctypes.c_int64), ("dim_v", ctypes.c_int64),
                ("layout", ctypes.c_int)]


_PD = ctypes.POINTER(ctypes.c_double)
_PU8 = ctypes.POINTER(ctypes.c_uint8)


class _FeatureMap(ctypes.Structure):
    _fields_ = [("f", ctypes.c_int64), ("W", _PD), ("b", _PD), ("u", _PD)]


class _Params(ctypes.Structure):
    _fields_ = [("fq", _FeatureMap), ("fk", _FeatureMap), ("fk_tied", ctypes.c_int),
                ("window_w", _PD)]


class _Tensors(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int), ("q", ctypes.c_void_p), ("k", ctypes.c_void_p),
                ("v", ctypes.c_void_p), ("gate", ctypes.c_void_p), ("o", ctypes.c_void_p),
                ("sigma", _PD), ("selected", _PU8), ("selection_in", _PU8)]


_F32, _F64 = 0, 1
_LAYOUTS = {"BHND": 0, "BNHD": 1}
_NAMES = {
    "routing": {"saliency": 0, "window": 1, "all": 2, "none": 3},
    "act": {"hedgehog": 0, "softmax": 1, "elu1": 2, "relu": 3},
    "saliency": {"spec": 0, "authors": 1},
    "isa": {"auto": 0, "generic": 1, "avx2": 2, "avx512": 3, "neon": 4},
}
E_UNSUPPORTED = -16


class StillError(RuntimeError):
    """A libstill call returned a negative status code."""

    def __init__(self, code, func):
        self.code = code
        self.func = func
        super().__init__("%s: %s (%d)" % (func, strerror(code), code))


# ---- loading the library -----------------------------------------------------


# make install writes the installed library's directory here.
_INSTALLED_LIBDIR = None


def _candidates():
    env = os.environ.get("STILL_LIB")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.join(here, os.pardir, "lib", ".libs", "libstill.so")]
    if _INSTALLED_LIBDIR:
        paths.append(os.path.join(_INSTALLED_LIBDIR, "libstill.so"))
    found = ctypes.util.find_library("still")
    if found:
        paths.append(found)
    return paths


def _load():
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise OSError("libstill not found; set STILL_LIB to the path of libstill.so. Tried: "
                  + "; ".join(tried))


_lib, library_path = _load()


def _declare(name, restype, argtypes):
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


_P = ctypes.POINTER
_version_string = _declare("still_version_string", ctypes.c_char_p, [])
_strerror = _declare("still_strerror", ctypes.c_char_p, [ctypes.c_int])
_config_default = _declare("still_config_default", None, [_P(_Config)])
_params_default = _declare("still_params_default", None, [_P(_Params)])
_FORWARD_ARGS = [_P(_Config), _P(_Shape), _P(_Params), _P(_Tensors)]
_TEACHER_ARGS = [_P(_Config), _P(_Shape), _P(_Tensors)]
_ref_forward = _declare("still_ref_forward", ctypes.c_int, _FORWARD_ARGS)
_forward = _declare("still_forward", ctypes.c_int, _FORWARD_ARGS)
_ref_teacher = _declare("still_ref_teacher", ctypes.c_int, _TEACHER_ARGS)
_teacher = _declare("still_teacher", ctypes.c_int, _TEACHER_ARGS)


def version():
    """The library's version string (still_version_string)."""
    return _version_string().decode()


def strerror(code):
    """The text of a status code (still_strerror)."""
    return _strerror(code).decode()


# ---- arguments -----------------------------------------------------------------


def _config(kw):
    cfg = _Config()
    _config_default(ctypes.byref(cfg))
    for key, value in kw.items():
        if key not in dict(_Config._fields_):
            raise TypeError("unknown configuration field %r" % key)
        if isinstance(value, str):
            if key not in _NAMES or value not in _NAMES[key]:
                raise ValueError("%s=%r: expected one of %s"
                                 % (key, value, sorted(_NAMES.get(key, {}))))
            value = _NAMES[key][value]
        setattr(cfg, key, value)
    return cfg


def _as4(a, name, dtype):
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.ndim == 3:
        a = a[np.newaxis]
    if a.ndim != 4:
        raise ValueError("%s: expected 3 or 4 dimensions, got shape %s" % (name, a.shape))
    return a


def _shape(q, k, v, layout):
    if layout not in _LAYOUTS:
        raise ValueError("layout must be 'BHND' or 'BNHD'")
    if layout == "BHND":
        (B, Hq, N, d), Hk, dv = q.shape, k.shape[1], v.shape[3]
        kv_ok = k.shape == (B, Hk, N, d) and v.shape == (B, Hk, N, dv)
    else:
        (B, N, Hq, d), Hk, dv = q.shape, k.shape[2], v.shape[3]
        kv_ok = k.shape == (B, N, Hk, d) and v.shape == (B, N, Hk, dv)
    if not kv_ok:
        raise ValueError("shapes do not fit: q %s, k %s, v %s (layout %s)"
                         % (q.shape, k.shape, v.shape, layout))
    return _Shape(B, Hq, Hk, N, d, dv, _LAYOUTS[layout])


def _ptr(a, ctype=ctypes.c_double):
    return None if a is None else a.ctypes.data_as(ctypes.POINTER(ctype))


def _params(params, keep):
    """A still_params from a dict of SPEC §11 names; keep holds the arrays."""
    p = _Params()
    _params_default(ctypes.byref(p))
    if params is None:
        return None
    known = {"fq.W", "fq.b", "fq.u", "fk.W", "fk.b", "fk.u", "window.w"}
    unknown = set(params) - known
    if unknown:
        raise KeyError("unknown parameter names %s (expected %s)"
                       % (sorted(unknown), sorted(known)))

    def arr(name):
        if name not in params:
            return None
        a = np.ascontiguousarray(params[name], dtype=np.float64)
        keep.append(a)
        return a

    for prefix, fm in (("fq", p.fq), ("fk", p.fk)):
        W, b, u = arr(prefix + ".W"), arr(prefix + ".b"), arr(prefix + ".u")
        if W is not None:
            if W.ndim != 3:
                raise ValueError("%s.W: expected [Hq,f,d], got shape %s" % (prefix, W.shape))
            fm.f = W.shape[1]
        elif b is not None:
            fm.f = b.shape[-1]
        fm.W, fm.b, fm.u = _ptr(W), _ptr(b), _ptr(u)
    p.fk_tied = 0 if any(n.startswith("fk.") for n in params) else 1
    p.window_w = _ptr(arr("window.w"))
    return p


def _call(fn, name, q, k, v, gate, params, selection, dtype, layout, return_sigma,
          return_selected, kw, with_params=True):
    q, k, v = (_as4(a, n, dtype) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    shape = _shape(q, k, v, layout)
    cfg = _config(kw)
    B, Hq, N, dv = shape.batch, shape.heads_q, shape.seq_len, shape.dim_v
    out_shape = (B, Hq, N, dv) if layout == "BHND" else (B, N, Hq, dv)
    o = np.empty(out_shape, dtype=dtype)
    t = _Tensors()
    t.dtype = _F64 if dtype == np.float64 else _F32
    t.q, t.k, t.v, t.o = q.ctypes.data, k.ctypes.data, v.ctypes.data, o.ctypes.data
    keep = []
    if gate is not None:
        g = _as4(gate, "gate", dtype)
        if g.shape != out_shape:
            raise ValueError("gate: expected shape %s, got %s" % (out_shape, g.shape))
        keep.append(g)
        t.gate = g.ctypes.data
    sigma = np.empty((B, Hq, N), dtype=np.float64) if return_sigma else None
    selected = np.zeros((B, Hq, N), dtype=np.uint8) if return_selected else None
    t.sigma = _ptr(sigma)
    t.selected = _ptr(selected, ctypes.c_uint8)
    if selection is not None:
        s = np.ascontiguousarray(selection, dtype=np.uint8).reshape(B, Hq, N)
        keep.append(s)
        t.selection_in = _ptr(s, ctypes.c_uint8)
    if with_params:
        p = _params(params, keep)
        rc = fn(ctypes.byref(cfg), ctypes.byref(shape),
                None if p is None else ctypes.byref(p), ctypes.byref(t))
    else:
        rc = fn(ctypes.byref(cfg), ctypes.byref(shape), ctypes.byref(t))
    if rc != 0:
        raise StillError(rc, name)
    return o, sigma, selected


def _finish(result, three_d, return_sigma, return_selected):
    o, sigma, selected = result
    if three_d:
        o = o[0]
        sigma = None if sigma is None else sigma[0]
        selected = None if selected is None else selected[0]
    out = [o]
    if return_sigma:
        out.append(sigma)
    if return_selected:
        out.append(selected)
    return out[0] if len(out) == 1 else tuple(out)


def _forward_any(fn, name, dtype, q, k, v, gate, params, selection, layout,
                 return_sigma, return_selected, kw):
    three_d = np.ndim(q) == 3
    r = _call(fn, name, q, k, v, gate, params, selection, dtype, layout,
              return_sigma, return_selected, kw)
    return _finish(r, three_d, return_sigma, return_selected)


# ---- the public functions --------------------------------------------------------


def ref_forward(q, k, v, gate=None, params=None, selection=None, layout="BHND",
                return_sigma=False, return_selected=False, **config):
    """STILL attention on the ref path (SPEC §6), in float64.

    selection: a forced selection [B,Hq,N] (uint8, k ones per complete
    chunk), e.g. another implementation's.  return_sigma / return_selected
    add the saliency scores (float64, +inf allowed) and the selection.
    """
    return _forward_any(_ref_forward, "still_ref_forward", np.float64, q, k, v, gate,
                        params, selection, layout, return_sigma, return_selected, config)


def forward(q, k, v, gate=None, params=None, selection=None, layout="BHND",
            return_sigma=False, return_selected=False, **config):
    """STILL attention on the fast path, in float32 (same arguments as
    ref_forward).  Raises StillError with code -16 (E_UNSUPPORTED) where the
    fast path does not exist yet."""
    return _forward_any(_forward, "still_forward", np.float32, q, k, v, gate,
                        params, selection, layout, return_sigma, return_selected, config)


def _teacher_any(fn, name, dtype, q, k, v, layout, config):
    three_d = np.ndim(q) == 3
    r = _call(fn, name, q, k, v, None, None, None, dtype, layout, False, False,
              config, with_params=False)
    return _finish(r, three_d, False, False)


def ref_teacher(q, k, v, layout="BHND", **config):
    """Full causal softmax attention (SPEC §1) on the ref path, float64.
    Only config['scale'] matters (0 = 1/sqrt(d))."""
    return _teacher_any(_ref_teacher, "still_ref_teacher", np.float64, q, k, v, layout, config)


def teacher(q, k, v, layout="BHND", **config):
    """Full causal softmax attention on the fast path, float32."""
    return _teacher_any(_teacher, "still_teacher", np.float32, q, k, v, layout, config)
