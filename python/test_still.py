# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
"""Tests of the package still (python/still/, its NumPy layer) against values computed independently in NumPy.

Run:  STILL_LIB=/path/to/libstill.so python3 test_still.py
(make check runs it through check-python.sh when python3 has NumPy).
"""
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import still  # noqa: E402


def numpy_teacher(q, k, v, scale=None):
    """SPEC §1: full causal softmax attention, [B,Hq,N,d] arrays, GQA."""
    B, Hq, N, d = q.shape
    group = Hq // k.shape[1]
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    o = np.empty((B, Hq, N, v.shape[3]))
    causal = np.tril(np.ones((N, N), dtype=bool))
    for b in range(B):
        for h in range(Hq):
            s = scale * q[b, h] @ k[b, h // group].T
            s = np.where(causal, s, -np.inf)
            p = np.exp(s - s.max(axis=1, keepdims=True))
            o[b, h] = (p / p.sum(axis=1, keepdims=True)) @ v[b, h // group]
    return o


def numpy_hedgehog(x):
    """SPEC §2 with the default map (W = I, no b, no u, NP on):
    z = x, z^ = ||x|| z / ||z|| = x, phi = max([softmax(x), softmax(-x)], 1e-12)."""
    def softmax(a):
        e = np.exp(a - a.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return np.maximum(np.concatenate([softmax(x), softmax(-x)], axis=-1), 1e-12)


def numpy_linear(q, k, v):
    """SPEC §3: causal linear attention with the default hedgehog maps."""
    B, Hq, N, _ = q.shape
    group = Hq // k.shape[1]
    o = np.empty((B, Hq, N, v.shape[3]))
    for b in range(B):
        for h in range(Hq):
            pq, pk = numpy_hedgehog(q[b, h]), numpy_hedgehog(k[b, h // group])
            kappa = np.tril(pq @ pk.T)
            o[b, h] = (kappa @ v[b, h // group]) / kappa.sum(axis=1, keepdims=True)
    return o


def random_qkv(rng, B, Hq, Hk, N, d, dv):
    return (rng.standard_normal((B, Hq, N, d)), rng.standard_normal((B, Hk, N, d)),
            rng.standard_normal((B, Hk, N, dv)))


class TestStill(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(20261123)

    def test_ref_teacher_equals_numpy_softmax_attention(self):
        for B, Hq, Hk, N, d, dv in [(1, 1, 1, 7, 4, 3), (2, 4, 2, 33, 8, 5), (1, 6, 2, 70, 16, 16)]:
            q, k, v = random_qkv(self.rng, B, Hq, Hk, N, d, dv)
            got = still.ref_teacher(q, k, v)
            want = numpy_teacher(q, k, v)
            self.assertLess(np.max(np.abs(got - want)), 1e-12, (B, Hq, Hk, N, d, dv))

    def test_ref_teacher_honours_scale(self):
        q, k, v = random_qkv(self.rng, 1, 2, 1, 20, 8, 4)
        got = still.ref_teacher(q, k, v, scale=0.3)
        self.assertLess(np.max(np.abs(got - numpy_teacher(q, k, v, 0.3))), 1e-12)

    def test_topk_equals_chunk_gives_numpy_teacher(self):
        # SPEC §6 I1: k = C, no cap, eps_den = 0, L >= 1 -> full softmax attention
        q, k, v = random_qkv(self.rng, 2, 4, 2, 50, 8, 6)
        want = numpy_teacher(q, k, v)
        for C, L in [(4, 1), (8, 2), (16, 3)]:
            got = still.ref_forward(q, k, v, chunk=C, topk=C, local=L, eps_den=0.0)
            self.assertLess(np.max(np.abs(got - want)), 1e-12, (C, L))

    def test_window_covering_sequence_gives_numpy_teacher(self):
        # SPEC §6 I3: window routing with w >= N, eps_den = 0
        q, k, v = random_qkv(self.rng, 1, 2, 2, 40, 8, 8)
        got = still.ref_forward(q, k, v, routing="window", window=40, eps_den=0.0)
        self.assertLess(np.max(np.abs(got - numpy_teacher(q, k, v))), 1e-12)

    def test_topk_zero_no_local_gives_numpy_linear_attention(self):
        # SPEC §6 I2: k = 0, L = 0, G = 1, eps_den = 0 -> causal linear attention
        q, k, v = random_qkv(self.rng, 1, 2, 1, 30, 8, 4)
        got = still.ref_forward(q, k, v, chunk=8, topk=0, local=0, eps_den=0.0)
        self.assertLess(np.max(np.abs(got - numpy_linear(q, k, v))), 1e-12)

    def test_three_d_arrays_mean_batch_one(self):
        q, k, v = random_qkv(self.rng, 1, 2, 1, 20, 4, 4)
        four = still.ref_forward(q, k, v, chunk=4)
        three = still.ref_forward(q[0], k[0], v[0], chunk=4)
        self.assertEqual(three.shape, (2, 20, 4))
        self.assertTrue(np.array_equal(three, four[0]))

    def test_bnhd_layout_matches_bhnd(self):
        q, k, v = random_qkv(self.rng, 2, 4, 2, 24, 8, 4)
        want = still.ref_forward(q, k, v, chunk=4, topk=1)
        t = (0, 2, 1, 3)
        got = still.ref_forward(q.transpose(t), k.transpose(t), v.transpose(t),
                                layout="BNHD", chunk=4, topk=1)
        self.assertTrue(np.array_equal(got.transpose(t), want))

    def test_forced_selection_reproduces_own_selection(self):
        q, k, v = random_qkv(self.rng, 1, 2, 2, 64, 8, 4)
        o, sigma, sel = still.ref_forward(q, k, v, chunk=8, topk=2,
                                          return_sigma=True, return_selected=True)
        self.assertTrue(np.isinf(sigma[0, :, 0]).all())  # SPEC §4: token 0
        self.assertTrue((sel.reshape(1, 2, 8, 8).sum(axis=3) == 2).all())
        again = still.ref_forward(q, k, v, chunk=8, topk=2, selection=sel)
        self.assertTrue(np.array_equal(o, again))

    def test_gate_multiplies_linear_numerator(self):
        # SPEC §6 with k = 0, L = 0, eps_den = 0: every key is linear, so
        # o_t = g_t * (phi_q S) / (phi_q z), the gate times linear attention.
        q, k, v = random_qkv(self.rng, 1, 2, 1, 24, 4, 4)
        gate = self.rng.uniform(0.1, 1.0, size=(1, 2, 24, 4))
        got = still.ref_forward(q, k, v, gate=gate, chunk=8, topk=0, local=0, eps_den=0.0)
        self.assertLess(np.max(np.abs(got - gate * numpy_linear(q, k, v))), 1e-12)

    def test_nonfinite_input_raises_still_error(self):
        q, k, v = random_qkv(self.rng, 1, 1, 1, 8, 4, 4)
        q[0, 0, 3, 1] = np.nan
        with self.assertRaises(still.StillError) as cm:
            still.ref_forward(q, k, v)
        self.assertEqual(cm.exception.code, -4)  # STILL_E_NONFINITE

    def test_nonfinite_input_is_refused_naming_the_array(self):
        q, k, v = random_qkv(self.rng, 1, 1, 1, 8, 4, 4)
        v[0, 0, 2, 3] = np.inf
        for fn in (still.ref_forward, still.forward, still.ref_teacher):
            with self.assertRaises(still.NonfiniteError) as cm:
                fn(q, k, v)
            e = cm.exception
            self.assertEqual((e.name, e.code, e.code_name), ("v", -4, "STILL_E_NONFINITE"))
            self.assertIn("[0, 0, 2, 3]", str(e))
        # a float64 value beyond float32 is refused on the fast path, named
        q[0, 0, 1, 0] = 1e300
        with self.assertRaises(still.NonfiniteError) as cm:
            still.forward(q, k, np.zeros_like(v))
        self.assertEqual(cm.exception.name, "q")

    def test_library_errors_are_the_subclass_of_their_code(self):
        q, k, v = random_qkv(self.rng, 1, 1, 1, 8, 4, 4)
        with self.assertRaises(still.ConfigError) as cm:  # found by the C library
            still.ref_forward(q, k, v, chunk=4, topk=5)
        e = cm.exception
        self.assertEqual((e.code, e.func, e.code_name), (-3, "still_ref_forward", "STILL_E_CONFIG"))
        self.assertIsInstance(e, still.StillError)
        self.assertIsInstance(e, ValueError)

    def test_ref_vjp_matches_central_differences_of_ref_forward(self):
        # SPEC §18: dL/dx of L = sum(dout * o), checked on a few entries of each input
        q, k, v = random_qkv(self.rng, 1, 2, 1, 12, 3, 2)
        gate = self.rng.uniform(0.1, 1.0, (1, 2, 12, 2))
        dout = self.rng.standard_normal((1, 2, 12, 2))
        cfg = dict(chunk=4, topk=1)
        o, sel, g = still.ref_vjp(q, k, v, dout, gate=gate, return_selected=True, **cfg)
        # the VJP computes o on its own (rounding may differ in the last bit)
        self.assertLess(np.max(np.abs(o - still.ref_forward(q, k, v, gate=gate, **cfg))), 1e-12)
        self.assertEqual(sorted(g), ["fq.W", "fq.b", "fq.u", "gate", "k", "q", "v", "window.w"])
        arrays = {"q": q, "k": k, "v": v, "gate": gate}
        h = 1e-6
        for name, a in arrays.items():
            for idx in [(0, 0, 5, 1), (0, 0, 11, 0), (0, 0, 0, 0)]:
                idx = idx[:a.ndim]
                plus, minus = a.copy(), a.copy()
                plus[idx] += h
                minus[idx] -= h
                fx = {n: x for n, x in arrays.items()}

                def L(x):
                    fx[name] = x
                    return np.sum(dout * still.ref_forward(fx["q"], fx["k"], fx["v"],
                                                           gate=fx["gate"], selection=sel, **cfg))
                fd = (L(plus) - L(minus)) / (2 * h)
                self.assertAlmostEqual(g[name][idx], fd, delta=1e-6 * (1 + abs(fd)))

    def test_bad_config_raises_still_error(self):
        q, k, v = random_qkv(self.rng, 1, 1, 1, 8, 4, 4)
        with self.assertRaises(still.StillError) as cm:
            still.ref_forward(q, k, v, chunk=4, topk=5)
        self.assertEqual(cm.exception.code, -3)  # STILL_E_CONFIG

    def test_fast_path_within_precision_contract_of_ref(self):
        # SPEC §10: max|o_fast - o_ref| <= 1e-5 max|v|, compared on the fast
        # path's own selection so near-ties in sigma cannot hide an error.
        q, k, v = random_qkv(self.rng, 1, 4, 2, 200, 16, 16)
        q32, k32, v32 = (a.astype(np.float32) for a in (q, k, v))
        try:
            o_fast, sel = still.forward(q32, k32, v32, return_selected=True)
        except still.StillError as e:
            if e.code == still.E_UNSUPPORTED:
                self.skipTest("fast path not available: " + str(e))
            raise
        o_ref = still.ref_forward(q32, k32, v32, selection=sel)
        self.assertLessEqual(np.max(np.abs(o_fast - o_ref)), 1e-5 * np.max(np.abs(v32)))

    def test_fast_teacher_within_precision_contract(self):
        q, k, v = random_qkv(self.rng, 1, 2, 1, 150, 16, 8)
        q32, k32, v32 = (a.astype(np.float32) for a in (q, k, v))
        try:
            got = still.teacher(q32, k32, v32)
        except still.StillError as e:
            if e.code == still.E_UNSUPPORTED:
                self.skipTest("fast teacher not available: " + str(e))
            raise
        want = numpy_teacher(*(a.astype(np.float64) for a in (q32, k32, v32)))
        self.assertLessEqual(np.max(np.abs(got - want)), 1e-5 * np.max(np.abs(v32)))

    def test_query_range_writes_only_its_rows(self):
        """The config fields after threads (query_begin, query_end) reach C
        where C has them: the rows of a range equal the whole run's, the
        others are left as they were (zeros from the module)."""
        q, k, v = random_qkv(self.rng, 1, 2, 1, 70, 8, 4)
        whole = still.ref_teacher(q, k, v)
        part = still.ref_teacher(q, k, v, query_begin=20, query_end=45, threads=2)
        np.testing.assert_array_equal(part[:, :, 20:45], whole[:, :, 20:45])
        self.assertFalse(np.any(part[:, :, :20]) or np.any(part[:, :, 45:]))

    def test_progress_fields_not_settable(self):
        q, k, v = random_qkv(self.rng, 1, 1, 1, 8, 4, 4)
        with self.assertRaises(TypeError):
            still.ref_forward(q, k, v, progress=1)


class TestArguments(unittest.TestCase):
    """Every argument is checked before the C call: a mis-shaped array is
    never read past its end (the library would blame the input's values or
    compute from other memory), and the error names the array and the shape
    it should have."""

    def setUp(self):
        rng = np.random.default_rng(7)
        self.B, self.Hq, self.Hk, self.N, self.d, self.dv, self.f = 1, 2, 1, 16, 4, 3, 5
        self.q, self.k, self.v = random_qkv(rng, self.B, self.Hq, self.Hk, self.N, self.d, self.dv)
        Hq, d, f = self.Hq, self.d, self.f
        self.params = {"fq.W": rng.standard_normal((Hq, f, d)), "fq.b": rng.standard_normal((Hq, f)),
                       "fq.u": rng.standard_normal((Hq, d)), "window.w": rng.standard_normal(Hq)}
        self.fk = {"fk.W": rng.standard_normal((Hq, f, d)), "fk.b": rng.standard_normal((Hq, f)),
                   "fk.u": rng.standard_normal((Hq, d))}

    def refused(self, exc, name, call, *args, **kw):
        with self.assertRaises(exc) as cm:
            call(*args, **kw)
        self.assertEqual(cm.exception.name, name)
        self.assertTrue(str(cm.exception).startswith(name + ": "), str(cm.exception))
        return cm.exception

    def test_misshaped_parameters_are_refused_naming_the_array(self):
        Hq, d, f = self.Hq, self.d, self.f
        wrong = {"fq.W": [(Hq - 1, f, d), (Hq, f, d + 1), (Hq, f * d), (Hq, 0, d)],
                 "fq.b": [(Hq, f + 1), (Hq - 1, f), (Hq * f,)],
                 "fq.u": [(Hq, d - 1), (1, d)],
                 "window.w": [(Hq - 1,), (Hq, 1)],
                 "fk.W": [(Hq - 1, f, d)], "fk.b": [(Hq, f - 1)], "fk.u": [(Hq, d + 2)]}
        for name, shapes in wrong.items():
            for sh in shapes:
                params = dict(self.params, **self.fk)
                params[name] = np.zeros(sh)
                for fn in (still.ref_forward, still.forward):
                    e = self.refused(still.ShapeError, name, fn, self.q, self.k, self.v,
                                     params=params, chunk=4, topk=1)
                    self.assertIn("got %s" % list(sh), str(e))

    def test_error_says_the_expected_parameter_shape(self):
        params = dict(self.params, **{"fq.W": np.zeros((self.Hq + 1, self.f, self.d))})
        e = self.refused(still.ShapeError, "fq.W", still.ref_forward, self.q, self.k, self.v,
                         params=params)
        self.assertIn("[2, 'f', 4]", str(e))
        # fq.b without fq.W: the map is the identity, so b is [Hq, d]
        e = self.refused(still.ShapeError, "fq.b", still.ref_forward, self.q, self.k, self.v,
                         params={"fq.b": np.zeros((self.Hq, self.f))})
        self.assertIn("[2, 4]", str(e))

    def test_well_shaped_parameters_still_run(self):
        for params in (self.params, dict(self.params, **self.fk), {"fq.b": np.zeros((2, 4))}):
            o = still.ref_forward(self.q, self.k, self.v, params=params, chunk=4, topk=1)
            self.assertEqual(o.shape, (1, 2, 16, 3))
            self.assertTrue(np.isfinite(o).all())

    def test_misshaped_inputs_are_refused_naming_the_array(self):
        q, k, v = self.q, self.k, self.v
        cases = [("k", q, k[:, :, :-1], v), ("k", q, k[..., :-1], v), ("v", q, k, v[:, :, :-1]),
                 ("k", q, np.concatenate([k] * 3, axis=1), np.concatenate([v] * 3, axis=1)),
                 ("k", q, k[0], v), ("v", q, k, v[0]), ("q", q[..., :0], k[..., :0], v),
                 ("q", q[np.newaxis], k, v)]
        for name, qq, kk, vv in cases:
            for fn in (still.ref_forward, still.forward, still.ref_teacher, still.teacher):
                self.refused(still.ShapeError, name, fn, qq, kk, vv)

    def test_misshaped_gate_and_selection_are_refused(self):
        q, k, v = self.q, self.k, self.v
        for g in (np.ones((1, 2, 16, 4)), np.ones((1, 2, 15, 3)), np.ones((2, 16, 3))):
            self.refused(still.ShapeError, "gate", still.ref_forward, q, k, v, gate=g)
        # as many elements as [B,Hq,N] but another shape: once reshaped silently
        for sel in (np.zeros((1, 16, 2), np.uint8), np.zeros(32, np.uint8),
                    np.zeros((1, 2, 17), np.uint8)):
            self.refused(still.ShapeError, "selection", still.ref_forward, q, k, v,
                         selection=sel, chunk=4, topk=1)

    def test_selection_values_other_than_0_and_1_are_refused(self):
        _, sel = still.ref_forward(self.q, self.k, self.v, chunk=4, topk=1, return_selected=True)
        for bad in (2, 256, -1):  # 256 once wrapped to 0 in uint8, 2 counted as 1
            s = sel.astype(np.int64)
            s[0, 0, 1] = bad
            self.refused(still.ArgumentError, "selection", still.ref_forward, self.q, self.k,
                         self.v, selection=s, chunk=4, topk=1)
        self.refused(still.DtypeError, "selection", still.ref_forward, self.q, self.k, self.v,
                     selection=sel.astype(np.float64), chunk=4, topk=1)
        # bool and wider integer selections of 0/1 are accepted as they are
        want = still.ref_forward(self.q, self.k, self.v, chunk=4, topk=1, selection=sel)
        for s in (sel.astype(bool), sel.astype(np.int32)):
            got = still.ref_forward(self.q, self.k, self.v, chunk=4, topk=1, selection=s)
            self.assertTrue(np.array_equal(got, want))

    def test_complex_object_and_bool_arrays_are_refused(self):
        q, k, v = self.q, self.k, self.v
        for bad in (q + 1j, q.astype(object), q > 0, q.astype("U8")):
            for fn in (still.ref_forward, still.forward, still.teacher):
                e = self.refused(still.DtypeError, "q", fn, bad, k, v)
                self.assertIsInstance(e, TypeError)
        self.refused(still.DtypeError, "v", still.ref_forward, q, k, v + 0j)
        self.refused(still.DtypeError, "gate", still.ref_forward, q, k, v,
                     gate=np.ones((1, 2, 16, 3), complex))
        params = dict(self.params, **{"fq.u": self.params["fq.u"] + 0j})
        self.refused(still.DtypeError, "fq.u", still.ref_forward, q, k, v, params=params)

    def test_other_real_dtypes_and_layouts_are_converted(self):
        # float16 and integers are converted, any strides and byte order are
        # copied: the results are those of the same values in float64
        q, k, v = (np.round(a * 4) for a in (self.q, self.k, self.v))
        want = still.ref_forward(q, k, v, chunk=4, topk=1)
        for conv in (lambda a: a.astype(np.float16), lambda a: a.astype(np.int32),
                     lambda a: a.astype(">f8"), lambda a: np.asfortranarray(a)):
            got = still.ref_forward(conv(q), conv(k), conv(v), chunk=4, topk=1)
            self.assertTrue(np.array_equal(got, want))

    def test_out_of_range_config_fields_are_refused_not_truncated(self):
        q, k, v = self.q, self.k, self.v
        for fn in (still.ref_forward, still.forward, still.teacher):
            # 2**32 + 2 once became 2 threads; -1 and THREADS_MAX + 1 are refused
            for t in (2 ** 32 + 2, 2 ** 31, -1, still.THREADS_MAX + 1, 1.5, "2"):
                self.refused(still.ConfigError, "threads", fn, q, k, v, threads=t)
            self.refused(still.ConfigError, "chunk", fn, q, k, v, chunk=2 ** 64 + 4)
            self.refused(still.ConfigError, "topk", fn, q, k, v, topk=-2 ** 63 - 1)
            self.refused(still.ConfigError, "scale", fn, q, k, v, scale=1j)
            self.refused(still.ConfigError, "routing", fn, q, k, v, routing="nope")
        for t in (0, 1, still.THREADS_MAX):
            try:
                still.forward(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32),
                              threads=t)
            except still.StillError as e:
                if e.code != still.E_UNSUPPORTED:
                    raise


if __name__ == "__main__":
    print("libstill %s from %s" % (still.version(), still.library_path))
    unittest.main(verbosity=2)
