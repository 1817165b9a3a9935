# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
"""still -- call libstill from Python on NumPy arrays (ctypes, no build step).

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

The backward pass (SPEC §18) is ref_vjp() / vjp(): for an upstream
gradient dout of the shape of o, the gradients of sum(dout * o) with
respect to q, k, v, the gate and every parameter, the routing held fixed.

Library calls that fail raise a subclass of StillError named after the
code (NonfiniteError for STILL_E_NONFINITE, ...); .code is the status code,
.code_name "STILL_E_NONFINITE", .func the C function.  Inputs holding NaN
or infinity are refused here, before the call, by a NonfiniteError whose
.name is the array.  The ArgumentErrors carry the code the library would
return (.code: STILL_E_SHAPE for a ShapeError, ...).

still.torch (PyTorch autograd on both paths) and still.testing (compare()
a user's implementation with the oracle) are imported on demand; they need
PyTorch.  See still-python(7).

The library is found through the environment variable STILL_LIB (a path to
libstill.so), else in the build tree holding this package (../../lib/.libs),
else where make install put it (for the installed module), else in
pkg-config's libdir of the package still (pkg-config --variable=libdir
still), else by the system's library search (ctypes.util.find_library).
"""
import ctypes
import ctypes.util
import os
import subprocess

import numpy as np

__all__ = ["StillError", "ArgumentError", "ShapeError", "DtypeError", "ConfigError",
           "NonfiniteError", "SelectionError", "ParamsError", "UnsupportedError", "THREADS_MAX", "ref_forward", "forward",
           "ref_teacher", "teacher", "ref_vjp", "vjp", "routings", "version", "strerror",
           "library_path"]

# ---- the C types of include/still.h (field order and types must match) ----
#
# A field that the library adds at the end of one of these structs is safe
# before this file learns of it: each struct ends with zeroed spare bytes,
# so still_config_default / still_params_default write its default there
# and the library reads NULL pointers and zeros (their defaults) for the
# new arrays.  Knowing it by name here is then one line in _fields_ (and,
# for a routing or another enumeration, one entry in _NAMES below).
_SPARE = ("_spare", ctypes.c_uint8 * 512)


class _Config(ctypes.Structure):
    _fields_ = [("chunk", ctypes.c_int64), ("topk", ctypes.c_int64),
                ("window", ctypes.c_int64), ("local", ctypes.c_int64),
                ("max_sel", ctypes.c_int64), ("routing", ctypes.c_int),
                ("rest", ctypes.c_int), ("sinks", ctypes.c_int64),
                ("act", ctypes.c_int), ("npmap", ctypes.c_int),
                ("select_per_kv", ctypes.c_int), ("scale", ctypes.c_double),
                ("eps_den", ctypes.c_double), ("saliency", ctypes.c_int),
                ("phantom_sink", ctypes.c_int), ("isa", ctypes.c_int),
                ("threads", ctypes.c_int),
                ("query_begin", ctypes.c_int64), ("query_end", ctypes.c_int64),
                ("progress", ctypes.c_void_p), ("progress_user", ctypes.c_void_p),
                ("budget", ctypes.c_int64), ("lte_dilation", ctypes.c_int64 * 8),
                ("mixer", ctypes.c_int), ("alpha", ctypes.c_double),
                ("beta", ctypes.c_double), ("authors_decode", ctypes.c_int),
                ("nsa_block", ctypes.c_int64), ("nsa_topk", ctypes.c_int64),
                _SPARE]


class _Shape(ctypes.Structure):
    _fields_ = [("batch", ctypes.c_int64), ("heads_q", ctypes.c_int64),
                ("heads_kv", ctypes.c_int64), ("seq_len", ctypes.c_int64),
                ("dim_qk", ctypes.c_int64), ("dim_v", ctypes.c_int64),
                ("layout", ctypes.c_int), _SPARE]


_PD = ctypes.POINTER(ctypes.c_double)
_PU8 = ctypes.POINTER(ctypes.c_uint8)


class _FeatureMap(ctypes.Structure):
    _fields_ = [("f", ctypes.c_int64), ("W", _PD), ("b", _PD), ("u", _PD)]


class _Params(ctypes.Structure):
    _fields_ = [("fq", _FeatureMap), ("fk", _FeatureMap), ("fk_tied", ctypes.c_int),
                ("window_w", _PD), ("lte", ctypes.c_void_p), _SPARE]


class _Tensors(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int), ("q", ctypes.c_void_p), ("k", ctypes.c_void_p),
                ("v", ctypes.c_void_p), ("gate", ctypes.c_void_p), ("o", ctypes.c_void_p),
                ("sigma", _PD), ("selected", _PU8), ("selection_in", _PU8),
                ("lte_input", ctypes.c_void_p), ("q_lin", ctypes.c_void_p),
                ("k_lin", ctypes.c_void_p), ("nsa_gates", ctypes.c_void_p),
                ("nsa_blocks", ctypes.POINTER(ctypes.c_int32)), _SPARE]


# The gradient buffers of still_grads, in its field order, by their SPEC §11 names.
_GRAD_FIELDS = [("fq.W", "dfq_W"), ("fq.b", "dfq_b"), ("fq.u", "dfq_u"), ("fk.W", "dfk_W"),
                ("fk.b", "dfk_b"), ("fk.u", "dfk_u"), ("window.w", "dwindow_w"),
                ("gate", "dgate"), ("q", "dq"), ("k", "dk"), ("v", "dv")]


class _Grads(ctypes.Structure):
    _fields_ = [(field, _PD) for _, field in _GRAD_FIELDS] + [("dnsa_gates", _PD), _SPARE]


_F32, _F64 = 0, 1
_LAYOUTS = {"BHND": 0, "BNHD": 1}
_NAMES = {
    "routing": {"saliency": 0, "window": 1, "all": 2, "none": 3, "sinks": 4,
                "terraced": 5},
    "rest": {"linear": 0, "drop": 1},
    "act": {"hedgehog": 0, "softmax": 1, "elu1": 2, "relu": 3},
    "saliency": {"spec": 0, "authors": 1},
    "isa": {"auto": 0, "generic": 1, "avx2": 2, "avx512": 3, "neon": 4},
}
THREADS_MAX = 1024  # STILL_THREADS_MAX of still.h: the largest cfg.threads

# The STILL_E_* codes of still.h and the StillError subclass of each.
_CODES = {-1: "NULL", -2: "SHAPE", -3: "CONFIG", -4: "NONFINITE", -5: "NOMEM",
          -6: "OVERFLOW", -7: "ISA", -8: "DTYPE", -9: "SELECTION", -10: "IO",
          -11: "FORMAT", -12: "VERSION", -13: "CHECKSUM", -14: "STATE", -15: "PARAMS",
          -16: "UNSUPPORTED", -17: "CANCELED"}
for _code, _name in _CODES.items():
    globals()["E_" + _name] = _code


class StillError(RuntimeError):
    """A libstill call failed, or an argument was refused before the call.

    .code: the STILL_E_* status code (an E_* value of this module);
    .code_name: its name, "STILL_E_NONFINITE"; .func: the C function
    ("still" for a check made here); .name: the array, parameter or
    configuration field at fault when known, else None.  Every code has
    its subclass (ShapeError for STILL_E_SHAPE, NonfiniteError, ...)."""

    code = None

    def __init__(self, code, func, name=None, detail=None):
        self.code = code
        self.code_name = "STILL_E_" + _CODES.get(code, "UNKNOWN")
        self.func = func
        self.name = name
        if name is None:
            text = "%s: %s (%s)" % (func, strerror(code), self.code_name)
        else:
            text = "%s: %s" % (name, detail or strerror(code))
        super().__init__(text)


class ArgumentError(StillError, ValueError):
    """An argument refused before the library is called (or by it); .name
    is the argument: an array, a parameter or a configuration field."""

    code = -2

    def __init__(self, name, message, func="still"):
        StillError.__init__(self, type(self).code, func, name, message)


class ShapeError(ArgumentError):
    """An array whose shape does not fit q or the configuration (STILL_E_SHAPE)."""

    code = -2


class DtypeError(ArgumentError, TypeError):
    """An array whose elements are not real numbers (STILL_E_DTYPE)."""

    code = -8


class ConfigError(ArgumentError):
    """A configuration field out of range: of its C type or threads outside
    0..THREADS_MAX here, of the library's rules in C (STILL_E_CONFIG)."""

    code = -3


class SelectionError(ArgumentError):
    """A malformed forced selection (STILL_E_SELECTION)."""

    code = -9


class ParamsError(ArgumentError):
    """Malformed parameters (STILL_E_PARAMS)."""

    code = -15


class NonfiniteError(StillError):
    """NaN or infinity in an input, or a result or intermediate its type
    cannot hold (STILL_E_NONFINITE, SPEC §10)."""

    code = -4


class UnsupportedError(StillError):
    """A combination the path does not implement (STILL_E_UNSUPPORTED)."""

    code = -16


_ERRORS = {c.code: c for c in (ShapeError, DtypeError, ConfigError, SelectionError,
                               ParamsError, NonfiniteError, UnsupportedError)}
for _code, _cls in ((-1, "NullError"), (-5, "NoMemoryError"), (-6, "SizeOverflowError"),
                    (-7, "IsaError"), (-10, "IoError"), (-11, "FormatError"),
                    (-12, "VersionError"), (-13, "ChecksumError"), (-14, "StateError"),
                    (-17, "CanceledError")):
    _ERRORS[_code] = globals()[_cls] = type(_cls, (StillError,), {
        "code": _code, "__doc__": "StillError of STILL_E_%s." % _CODES[_code]})


def _still_error(code, func, name=None, detail=None):
    """The StillError subclass of code (StillError for an unknown code)."""
    cls = _ERRORS.get(code, StillError)
    e = cls.__new__(cls)
    StillError.__init__(e, code, func, name, detail)
    return e


# ---- loading the library -----------------------------------------------------


# make install writes the installed library's directory here.
_INSTALLED_LIBDIR = None


def _pkg_config_libdir():
    """pkg-config's libdir of the package still, or None."""
    try:
        r = subprocess.run(["pkg-config", "--variable=libdir", "still"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    libdir = r.stdout.decode(errors="replace").strip()
    return libdir if r.returncode == 0 and libdir else None


def _candidates():
    """The paths to try, in order (pkg-config runs only when the earlier
    ones are absent)."""
    env = os.environ.get("STILL_LIB")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, os.pardir, os.pardir, "lib", ".libs", "libstill.so")
    if _INSTALLED_LIBDIR:
        yield os.path.join(_INSTALLED_LIBDIR, "libstill.so")
    libdir = _pkg_config_libdir()
    if libdir:
        yield os.path.join(libdir, "libstill.so")
    found = ctypes.util.find_library("still")
    if found:
        yield found


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
_VJP_ARGS = _FORWARD_ARGS + [ctypes.c_void_p, _P(_Grads)]
_ref_vjp = _declare("still_ref_vjp", ctypes.c_int, _VJP_ARGS)
_vjp = _declare("still_vjp", ctypes.c_int, _VJP_ARGS)
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
        if key not in types or key.startswith("_"):
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
    with np.errstate(over="ignore"):
        a = np.ascontiguousarray(a, dtype=dtype)
    if a.size and not np.isfinite(a).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise _still_error(E_NONFINITE, "still", name,
                           "holds NaN or infinity (as %s) at index %s; the library refuses "
                           "non-finite inputs (STILL_E_NONFINITE)" % (np.dtype(dtype).name,
                                                                      list(bad)))
    return a


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
        raise SelectionError("selection", "expected only 0 and 1, found values %d..%d"
                            % (s.min(), s.max()))
    return np.ascontiguousarray(s, dtype=np.uint8).reshape(want)


def _grads(shape, p, q, k, v, out_shape):
    """Zeroed float64 buffers of every gradient of still_grads for this call
    (fk.* only when the key map is not tied) and the struct pointing at them."""
    Hq, d = shape.heads_q, shape.dim_qk
    fq = (p.fq.f or d) if p is not None else d
    want = {"fq.W": (Hq, fq, d), "fq.b": (Hq, fq), "fq.u": (Hq, d), "window.w": (Hq,),
            "gate": out_shape, "q": q.shape, "k": k.shape, "v": v.shape}
    if p is not None and not p.fk_tied:
        fk = p.fk.f or d
        want.update({"fk.W": (Hq, fk, d), "fk.b": (Hq, fk), "fk.u": (Hq, d)})
    bufs = {n: np.zeros(sh) for n, sh in want.items()}
    g = _Grads()
    for n, field in _GRAD_FIELDS:
        setattr(g, field, _ptr(bufs.get(n)))
    return bufs, g


def _call(fn, name, q, k, v, gate, params, selection, dtype, layout, return_sigma,
          return_selected, kw, with_params=True, dout=None):
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
    grads = None
    if not with_params:
        rc = fn(ctypes.byref(cfg), ctypes.byref(shape), ctypes.byref(t))
    else:
        p = _params(params, keep, shape)
        pp = None if p is None else ctypes.byref(p)
        if dout is None:
            rc = fn(ctypes.byref(cfg), ctypes.byref(shape), pp, ctypes.byref(t))
        else:
            dd = _real(dout, "dout", dtype)
            _expect(dd, "dout", out_shape, three_d)
            dd = _as4(dd, "dout", dtype, three_d)
            grads, g = _grads(shape, p, q, k, v, out_shape)
            rc = fn(ctypes.byref(cfg), ctypes.byref(shape), pp, ctypes.byref(t),
                    dd.ctypes.data, ctypes.byref(g))
    if rc != 0:
        raise _still_error(rc, name)
    if grads is not None:
        return o, sigma, selected, grads
    return o, sigma, selected


def _finish(result, three_d, return_sigma, return_selected):
    o, sigma, selected = result[:3]
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


def _vjp_any(fn, name, dtype, q, k, v, dout, gate, params, selection, layout,
             return_sigma, return_selected, kw):
    three_d = np.ndim(q) == 3
    r = _call(fn, name, q, k, v, gate, params, selection, dtype, layout,
              return_sigma, return_selected, kw, dout=dout)
    grads = r[3]
    if three_d:
        for n in ("q", "k", "v", "gate"):
            grads[n] = grads[n][0]
    out = _finish(r, three_d, return_sigma, return_selected)
    return (out if isinstance(out, tuple) else (out,)) + (grads,)


def ref_vjp(q, k, v, dout, gate=None, params=None, selection=None, layout="BHND",
            return_sigma=False, return_selected=False, **config):
    """The backward pass (SPEC §18) on the ref path, in float64.

    dout is dL/do, of the shape of o.  Returns (o, grads), or (o, sigma,
    selected, grads) with return_sigma / return_selected as in
    ref_forward: grads is a dict of float64 arrays, the gradients of
    L = sum(dout * o) named as the inputs -- "q", "k", "v", "gate" (at
    G = 1 without a gate), "fq.W", "fq.b", "fq.u" (at their defaults
    W = I, b = 0, u = 0 where absent; with the key map tied they hold the
    sum of its query and key uses), "fk.*" when params has a key map of
    its own, and "window.w" (zero without one).  The routing is held fixed:
    pass the forward's selection (return_selected=True there) to make sure
    the backward differentiates the same routing.
    """
    return _vjp_any(_ref_vjp, "still_ref_vjp", np.float64, q, k, v, dout, gate, params,
                    selection, layout, return_sigma, return_selected, config)


def vjp(q, k, v, dout, gate=None, params=None, selection=None, layout="BHND",
        return_sigma=False, return_selected=False, **config):
    """The backward pass on the fast path (float32 inputs, float64 gradients
    within 1e-5 * max|ref| of ref_vjp's per array); arguments as ref_vjp."""
    return _vjp_any(_vjp, "still_vjp", np.float32, q, k, v, dout, gate, params,
                    selection, layout, return_sigma, return_selected, config)


def routings():
    """The routing names the configuration field routing takes."""
    return sorted(_NAMES["routing"], key=_NAMES["routing"].get)
