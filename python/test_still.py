# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
"""Tests of python/still.py against values computed independently in NumPy.

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


if __name__ == "__main__":
    print("libstill %s from %s" % (still.version(), still.library_path))
    unittest.main(verbosity=2)
