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

Every argument is checked here before the library sees it, so that the C
code never reads past an array and an error names what is wrong:
  - arrays must hold real numbers: float16/32/64 and integer arrays are
    converted to the path's type (float64 on the ref path, float32 on the
    fast path, so float64 inputs of forward()/teacher() are rounded to
    float32); complex, bool, object, string and other dtypes raise
    DtypeError.  Any strides or byte order are accepted (copied to C order).
  - shapes must fit q and the configuration: k and v [B,Hk,N,*] with Hk
    dividing Hq, gate [B,Hq,N,dv], selection [B,Hq,N] of 0/1 (bool or
    integers), fq.W [Hq,f,d], fq.b [Hq,f] ([Hq,d] without fq.W), fq.u
    [Hq,d], the same for fk.*, window.w [Hq]; 3-D arguments when q is 3-D.
    Anything else raises ShapeError naming the array, the shape expected
    and the shape given.
  - configuration fields must fit their C types (no silent truncation) and
    threads must be 0..THREADS_MAX: ConfigError otherwise.
  - a selection must hold only 0 and 1: ArgumentError otherwise.
All of these are ArgumentErrors (ValueErrors); DtypeError is a TypeError
as well.

The library is found through the environment variable STILL_LIB (a path to
libstill.so), else in the build tree next to this file (../lib/.libs), else
where make install put it (for the installed module), else by the system's
library search (ctypes.util.find_library).
"""
import ctypes
import ctypes.util
import os

import numpy as np

__all__ = ["StillError", "ArgumentError", "ShapeError", "DtypeError", "ConfigError",
           "THREADS_MAX", "ref_forward", "forward", "ref_teacher", "teacher",
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
                ("threads", ctypes.c_int),
                ("query_begin", ctypes.c_int64), ("query_end", ctypes.c_int64),
                ("progress", ctypes.c_void_p), ("progress_user", ctypes.c_void_p),
                ("sinks", ctypes.c_int64), ("rest", ctypes.c_int),
                ("budget", ctypes.c_int64), ("lte_dilation", ctypes.c_int64 * 8),
                ("mixer", ctypes.c_int), ("alpha", ctypes.c_double),
                ("beta", ctypes.c_double)]


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
                ("window_w", _PD), ("lte", ctypes.c_void_p)]


class _Tensors(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int), ("q", ctypes.c_void_p), ("k", ctypes.c_void_p),
                ("v", ctypes.c_void_p), ("gate", ctypes.c_void_p), ("o", ctypes.c_void_p),
                ("sigma", _PD), ("selected", _PU8), ("selection_in", _PU8),
                ("lte_input", ctypes.c_void_p), ("q_lin", ctypes.c_void_p),
                ("k_lin", ctypes.c_void_p)]


_F32, _F64 = 0, 1
_LAYOUTS = {"BHND": 0, "BNHD": 1}
_NAMES = {
    "routing": {"saliency": 0, "window": 1, "all": 2, "none": 3},
    "act": {"hedgehog": 0, "softmax": 1, "elu1": 2, "relu": 3},
    "saliency": {"spec": 0, "authors": 1},
    "isa": {"auto": 0, "generic": 1, "avx2": 2, "avx512": 3, "neon": 4},
}
E_UNSUPPORTED = -16
THREADS_MAX = 1024  # STILL_THREADS_MAX of still.h: the largest cfg.threads


class StillError(RuntimeError):
    """A libstill call returned a negative status code."""

    def __init__(self, code, func):
        self.code = code
        self.func = func
        super().__init__("%s: %s (%d)" % (func, strerror(code), code))


class ArgumentError(ValueError):
    """An argument refused before the library is called; .name is the
    argument (an array, a parameter or a configuration field)."""

    def __init__(self, name, message):
        self.name = name
        super().__init__("%s: %s" % (name, message))


class ShapeError(ArgumentError):
    """An array whose shape does not fit q or the configuration."""


class DtypeError(ArgumentError, TypeError):
    """An array whose elements are not real numbers."""


class ConfigError(ArgumentError):
    """A configuration field out of the range of its C type (or threads
    outside 0..THREADS_MAX)."""


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


_INT_RANGE = {ctypes.c_int64: (-2 ** 63, 2 ** 63 - 1), ctypes.c_int: (-2 ** 31, 2 ** 31 - 1)}


def _config(kw):
    cfg = _Config()
    _config_default(ctypes.byref(cfg))
    types = dict(_Config._fields_)
    for key, value in kw.items():
        if key not in types:
            raise TypeError("unknown configuration field %r" % key)
        if key in ("progress", "progress_user"):
            raise TypeError("%s: a C callback, not settable from Python" % key)
        if isinstance(value, str):
            if key not in _NAMES or value not in _NAMES[key]:
                raise ConfigError(key, "%r: expected one of %s"
                                  % (value, sorted(_NAMES.get(key, {}))))
            value = _NAMES[key][value]
        if types[key] is ctypes.c_double:
            if isinstance(value, (complex, np.complexfloating)) or \
                    not isinstance(value, (int, float, np.integer, np.floating)):
                raise ConfigError(key, "expected a real number, got %r" % (value,))
            value = float(value)
        else:
            if not isinstance(value, (int, np.integer)):
                raise ConfigError(key, "expected an integer, got %r" % (value,))
            value = int(value)
            lo, hi = (0, THREADS_MAX) if key == "threads" else _INT_RANGE[types[key]]
            if not lo <= value <= hi:
                raise ConfigError(key, "%d is out of range %d..%d" % (value, lo, hi))
        setattr(cfg, key, value)
    return cfg


def _real(a, name, dtype):
    """a as a C-ordered array of dtype, refusing anything but real numbers."""
    try:
        a = np.asarray(a)
    except ValueError as e:  # ragged nested sequences
        raise ShapeError(name, "not an array: %s" % e) from None
    if a.dtype.kind not in "fiu":
        raise DtypeError(name, "expected real numbers (float16/32/64 or integers, "
                         "converted to %s), got dtype %s" % (np.dtype(dtype).name, a.dtype))
    return np.ascontiguousarray(a, dtype=dtype)


def _expect(a, name, want, three_d):
    """ShapeError unless a has shape want (want without B when three_d)."""
    shown = tuple(want[1:]) if three_d else tuple(want)
    if a.shape != shown:
        raise ShapeError(name, "expected shape %s, got %s" % (list(shown), list(a.shape)))


def _as4(a, name, dtype, three_d):
    a = _real(a, name, dtype)
    if a.ndim != (3 if three_d else 4):
        raise ShapeError(name, "expected %d dimensions like q, got shape %s"
                         % (3 if three_d else 4, list(a.shape)))
    return a[np.newaxis] if three_d else a


def _shape(q, k, v, layout, three_d):
    if layout not in _LAYOUTS:
        raise ValueError("layout must be 'BHND' or 'BNHD'")
    names = "[B,Hq,N,d]" if layout == "BHND" else "[B,N,Hq,d]"
    if q.ndim not in (3, 4) or min(q.shape, default=0) < 1:
        raise ShapeError("q", "expected %s (3-D without B), every size >= 1, got shape %s"
                         % (names, list(q.shape)))
    q4 = q[np.newaxis] if three_d else q
    if layout == "BHND":
        B, Hq, N, d = q4.shape
        Hk = k.shape[-3] if k.ndim >= 3 else 0
        dv = v.shape[-1] if v.ndim >= 1 else 0
        kshape, vshape = (B, Hk, N, d), (B, Hk, N, dv)
    else:
        B, N, Hq, d = q4.shape
        Hk = k.shape[-2] if k.ndim >= 2 else 0
        dv = v.shape[-1] if v.ndim >= 1 else 0
        kshape, vshape = (B, N, Hk, d), (B, N, Hk, dv)
    if Hk < 1 or Hq % Hk:
        raise ShapeError("k", "expected %s with Hk dividing Hq = %d, got shape %s"
                         % (list(kshape[1:] if three_d else kshape), Hq, list(k.shape)))
    _expect(k, "k", kshape, three_d)
    if dv < 1:
        raise ShapeError("v", "expected dv >= 1, got shape %s" % list(v.shape))
    _expect(v, "v", vshape, three_d)
    return _Shape(B, Hq, Hk, N, d, dv, _LAYOUTS[layout])


def _ptr(a, ctype=ctypes.c_double):
    return None if a is None else a.ctypes.data_as(ctypes.POINTER(ctype))


def _params(params, keep, shape):
    """A still_params from a dict of SPEC §11 names, every array checked
    against the shape of q; keep holds the arrays."""
    p = _Params()
    _params_default(ctypes.byref(p))
    if params is None:
        return None
    known = {"fq.W", "fq.b", "fq.u", "fk.W", "fk.b", "fk.u", "window.w"}
    unknown = set(params) - known
    if unknown:
        raise KeyError("unknown parameter names %s (expected %s)"
                       % (sorted(unknown), sorted(known)))
    Hq, d = shape.heads_q, shape.dim_qk

    def arr(name, want):
        """params[name] as float64 of shape want (None: the rows f are free)."""
        if name not in params:
            return None
        a = _real(params[name], name, np.float64)
        if a.ndim != len(want) or any(w is not None and n != w for n, w in zip(a.shape, want)) \
                or (len(want) == 3 and a.shape[1] < 1):
            shown = ["f" if w is None else w for w in want]
            raise ShapeError(name, "expected shape %s (Hq = %d, d = %d), got %s"
                             % (shown, Hq, d, list(a.shape)))
        keep.append(a)
        return a

    for prefix, fm in (("fq", p.fq), ("fk", p.fk)):
        W = arr(prefix + ".W", (Hq, None, d))
        f = W.shape[1] if W is not None else d  # without W the map is the identity
        b, u = arr(prefix + ".b", (Hq, f)), arr(prefix + ".u", (Hq, d))
        if W is not None or b is not None:
            fm.f = f
        fm.W, fm.b, fm.u = _ptr(W), _ptr(b), _ptr(u)
    p.fk_tied = 0 if any(n.startswith("fk.") for n in params) else 1
    p.window_w = _ptr(arr("window.w", (Hq,)))
    return p


def _selection(selection, want, three_d):
    """The forced selection as uint8 0/1 of shape want [B,Hq,N]."""
    try:
        s = np.asarray(selection)
    except ValueError as e:
        raise ShapeError("selection", "not an array: %s" % e) from None
    if s.dtype.kind not in "biu":
        raise DtypeError("selection", "expected 0/1 as bool or integers, got dtype %s" % s.dtype)
    _expect(s, "selection", want, three_d)
    if s.dtype.kind != "b" and s.size and (s.min() < 0 or s.max() > 1):
        raise ArgumentError("selection", "expected only 0 and 1, found values %d..%d"
                            % (s.min(), s.max()))
    return np.ascontiguousarray(s, dtype=np.uint8).reshape(want)


def _call(fn, name, q, k, v, gate, params, selection, dtype, layout, return_sigma,
          return_selected, kw, with_params=True):
    three_d = np.ndim(q) == 3
    q, k, v = (_real(a, n, dtype) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    shape = _shape(q, k, v, layout, three_d)
    q, k, v = (_as4(a, n, dtype, three_d) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    cfg = _config(kw)
    B, Hq, N, dv = shape.batch, shape.heads_q, shape.seq_len, shape.dim_v
    out_shape = (B, Hq, N, dv) if layout == "BHND" else (B, N, Hq, dv)
    o = np.zeros(out_shape, dtype=dtype)  # rows outside a query range stay 0
    t = _Tensors()
    t.dtype = _F64 if dtype == np.float64 else _F32
    t.q, t.k, t.v, t.o = q.ctypes.data, k.ctypes.data, v.ctypes.data, o.ctypes.data
    keep = []
    if gate is not None:
        g = _real(gate, "gate", dtype)
        _expect(g, "gate", out_shape, three_d)
        g = _as4(g, "gate", dtype, three_d)
        keep.append(g)
        t.gate = g.ctypes.data
    sigma = np.empty((B, Hq, N), dtype=np.float64) if return_sigma else None
    selected = np.zeros((B, Hq, N), dtype=np.uint8) if return_selected else None
    t.sigma = _ptr(sigma)
    t.selected = _ptr(selected, ctypes.c_uint8)
    if selection is not None:
        s = _selection(selection, (B, Hq, N), three_d)
        keep.append(s)
        t.selection_in = _ptr(s, ctypes.c_uint8)
    if with_params:
        p = _params(params, keep, shape)
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
