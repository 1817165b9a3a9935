# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
"""Tests of still.torch and still.testing (make check, through check-torch.sh).

The gradients are checked against central finite differences of the
forward (torch.autograd.gradcheck on the ref path, float64), the fast path
against the ref path with the SPEC §10 bounds, and compare() on the
example's independent PyTorch implementation of STILL, correct and wrong.

Run:  STILL_LIB=/path/to/libstill.so python3 test_torch.py
"""
import importlib.util
import io
import os
import sys
import unittest
from contextlib import redirect_stdout

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import still  # noqa: E402
import still.testing  # noqa: E402
import still.torch as st  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "validate_port", os.path.join(HERE, "examples", "validate_port.py"))
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)

F64 = torch.float64
# every routing of the library, and the options that change what is exact
CONFIGS = [dict(chunk=4, topk=1), dict(chunk=4, topk=1, local=0),
           dict(chunk=4, topk=2, max_sel=2, select_per_kv=1),
           dict(routing="window", window=3), dict(routing="all", chunk=4),
           dict(routing="none", chunk=4), dict(chunk=4, topk=1, act="softmax", npmap=0)]


def inputs(seed, B=1, Hq=2, Hk=1, N=12, d=3, dv=2, f=4, dtype=F64, untied=True):
    g = torch.Generator().manual_seed(seed)

    def r(*sh):
        return torch.randn(*sh, generator=g, dtype=dtype).requires_grad_()
    q, k, v = r(B, Hq, N, d), r(B, Hk, N, d), r(B, Hk, N, dv)
    gate = (torch.rand(B, Hq, N, dv, generator=g, dtype=dtype) + 0.1).requires_grad_()
    params = {"fq.W": r(Hq, f, d), "fq.b": r(Hq, f), "fq.u": r(Hq, d), "window.w": r(Hq)}
    if untied:
        params.update({"fk.W": r(Hq, f, d), "fk.b": r(Hq, f), "fk.u": r(Hq, d)})
    return q, k, v, gate, params


class TestGradcheck(unittest.TestCase):
    def check(self, cfg, seed=1, layout="BHND", **shape):
        q, k, v, gate, params = inputs(seed, **shape)
        if layout == "BNHD":
            q, k, v, gate = (t.detach().transpose(1, 2).contiguous().requires_grad_()
                             for t in (q, k, v, gate))
        names = list(params)

        def fn(q, k, v, gate, *ps):
            return st.attention(q, k, v, gate=gate, params=dict(zip(names, ps)),
                                layout=layout, **cfg)
        self.assertTrue(torch.autograd.gradcheck(fn, (q, k, v, gate, *params.values()),
                                                 eps=1e-6, atol=1e-6, rtol=1e-5), cfg)

    def test_gradcheck_ref_every_routing_untied_maps_gate_window_w(self):
        for cfg in CONFIGS:
            with self.subTest(cfg=cfg):
                self.check(cfg)

    def test_gradcheck_ref_every_routing_the_library_names(self):
        # still.routings(): a routing added to the library is covered here by
        # its name alone; one that needs inputs this test does not give
        # (its own parameters) or has no VJP is skipped, saying so
        for r in still.routings():
            cfg = dict(routing=r, chunk=4, topk=1, window=3)
            with self.subTest(routing=r):
                q, k, v, _, _ = inputs(10)
                try:
                    st.attention(q, k, v, **cfg).sum().backward()
                except (still.ParamsError, still.UnsupportedError, still.ConfigError) as e:
                    self.skipTest("routing %s: %s" % (r, e))
                self.check(cfg, seed=10)

    def test_gradcheck_ref_tied_maps_bnhd_and_batch(self):
        self.check(dict(chunk=4, topk=1), seed=2, layout="BNHD", B=2, Hq=2, Hk=2,
                   untied=False)

    def test_gradcheck_without_parameters(self):
        q, k, v, _, _ = inputs(3, N=10)
        self.assertTrue(torch.autograd.gradcheck(
            lambda q, k, v: st.attention(q, k, v, chunk=2, topk=1), (q, k, v)))

    def test_float32_inputs_give_float32_results_and_grads(self):
        q, k, v, gate, params = inputs(4, dtype=torch.float32)
        o = st.attention(q, k, v, gate=gate, params=params, chunk=4, topk=1)
        self.assertEqual(o.dtype, torch.float32)
        o.sum().backward()
        for t in (q, k, v, gate, *params.values()):
            self.assertEqual(t.grad.dtype, torch.float32)
            self.assertTrue(torch.isfinite(t.grad).all())


class TestFastPath(unittest.TestCase):
    def test_fast_forward_and_backward_within_contract_of_ref(self):
        # SPEC §10 on inputs of order 1: o within 1e-5 max|v|, each gradient
        # within 1e-5 max|g_ref|, both on the fast path's selection
        cfg = dict(chunk=8, topk=2)
        q, k, v, gate, params = inputs(5, Hq=4, Hk=2, N=64, d=8, dv=4, f=8,
                                       dtype=torch.float32)
        del params["window.w"]
        o_fast, sel = st.attention(q, k, v, gate=gate, params=params, path="fast",
                                   return_selected=True, **cfg)
        dO = torch.randn(o_fast.shape, generator=torch.Generator().manual_seed(6))
        leaves = [q, k, v, gate, *params.values()]
        g_fast = torch.autograd.grad(o_fast, leaves, dO)
        d64 = [t.detach().double().requires_grad_() for t in leaves]
        p64 = dict(zip(params, d64[4:]))
        o_ref = st.attention(*d64[:3], gate=d64[3], params=p64, selection=sel, **cfg)
        g_ref = torch.autograd.grad(o_ref, d64, dO.double())
        self.assertLessEqual((o_fast.double() - o_ref).abs().max().item(),
                             1e-5 * v.abs().max().item())
        for name, a, b in zip(["q", "k", "v", "gate"] + list(params), g_fast, g_ref):
            self.assertLessEqual((a.double() - b).abs().max().item(),
                                 1e-5 * b.abs().max().item(), name)


class TestModule(unittest.TestCase):
    def test_module_is_attention_with_its_parameters(self):
        layer = st.StillAttention(heads_q=2, dim_qk=3, features=5, key_map=True,
                                  householder=True, routing="window", window=4)
        self.assertEqual(sorted(layer.spec_params()),
                         ["fk.W", "fk.b", "fk.u", "fq.W", "fq.b", "fq.u", "window.w"])
        q, k, v, _, _ = inputs(7)
        o = layer(q, k, v)
        want = st.attention(q, k, v, params=layer.spec_params(), routing="window", window=4)
        self.assertTrue(torch.equal(o, want))
        o.sum().backward()
        for name, p in layer.named_parameters():
            self.assertIsNotNone(p.grad, name)

    def test_default_module_is_the_identity_map(self):
        # features = d: W = I, b = 0, the library's defaults (SPEC §2)
        layer = st.StillAttention(heads_q=2, dim_qk=3, chunk=4, topk=1)
        q, k, v, _, _ = inputs(8)
        self.assertTrue(torch.equal(layer(q, k, v), st.attention(q, k, v, chunk=4, topk=1)))

    def test_training_the_maps_lowers_the_transfer_loss(self):
        # SPEC §8 through autograd: a few Adam steps on ||o - teacher||^2
        torch.manual_seed(0)
        q, k, v = (torch.randn(1, 2, 32, 4, dtype=F64) for _ in range(3))
        teacher = torch.from_numpy(still.ref_teacher(q.numpy(), k.numpy(), v.numpy()))
        layer = st.StillAttention(heads_q=2, dim_qk=4, chunk=8, topk=1, local=1)
        opt = torch.optim.Adam(layer.parameters(), lr=0.05)
        losses = []
        for _ in range(15):
            opt.zero_grad()
            loss = ((layer(q, k, v) - teacher) ** 2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        self.assertLess(losses[-1], 0.8 * losses[0], losses)


class TestCompare(unittest.TestCase):
    CFG = dict(chunk=16, topk=2, local=2)

    def run_compare(self, fn, **kw):
        return still.testing.compare(lambda q, k, v: fn(q, k, v, **self.CFG), Hq=4, Hk=2,
                                     N=64, d=16, dv=8, **dict(self.CFG, **kw))

    def test_correct_implementation_passes(self):
        report = self.run_compare(example.still_torch)
        print("\n" + str(report))
        self.assertTrue(report.passed, str(report))
        self.assertEqual([c.name for c in report.checks],
                         ["selection", "o", "dq", "dk", "dv"])

    def test_correct_implementation_passes_in_float64(self):
        report = self.run_compare(example.still_torch, dtype=F64, seed=3)
        self.assertTrue(report.passed, str(report))
        self.assertLess(report.by_name("o").error, 1e-12)

    def test_wrong_scale_fails_with_worst_index(self):
        report = self.run_compare(example.still_torch_wrong_scale)
        print("\n" + str(report))
        self.assertFalse(report.passed)
        o = report.by_name("o")
        self.assertFalse(o.passed)
        self.assertGreater(o.error, o.bound)
        self.assertEqual(len(o.worst), 4)

    def test_wrong_gradient_only_fails_backward(self):
        # the forward is right, the linear branch's kernel passes no gradient
        def detached(q, k, v, **kw):
            qd, kd = q.detach(), k.detach()
            o_lin, sel = example.still_torch(qd, kd, v, **kw)
            o, _ = example.still_torch(q, k, v, **kw)
            # o's value, but d/dq and d/dk only through half of it
            return 0.5 * (o + o_lin), sel
        report = self.run_compare(detached)
        self.assertTrue(report.by_name("o").passed, str(report))
        self.assertTrue(report.by_name("dv").passed, str(report))
        self.assertFalse(report.by_name("dq").passed, str(report))
        self.assertFalse(report.by_name("dk").passed, str(report))

    def test_non_differentiable_output_compares_forward_only(self):
        def frozen(q, k, v, **kw):
            with torch.no_grad():
                return example.still_torch(q, k, v, **kw)[0]
        report = self.run_compare(frozen)
        self.assertTrue(report.passed, str(report))
        self.assertFalse(report.differentiable)
        self.assertEqual([c.name for c in report.checks], ["o"])

    def test_a_selection_far_from_a_tie_fails_but_not_the_output(self):
        # one token swapped for another in a chunk: the selection check fails;
        # the output is compared with the oracle on the user's selection
        def swapped(q, k, v, **kw):
            _, sel = example.still_torch(q, k, v, **kw)
            sel = sel.clone()
            row = sel[0, 0, 16:32]
            on, off = int(row.nonzero()[0]), int((row == 0).nonzero()[0])
            row[on], row[off] = 0, 1
            o = still.ref_forward(q.detach().double().numpy(), k.detach().double().numpy(),
                                  v.detach().double().numpy(), selection=sel.numpy(), **kw)
            return torch.from_numpy(o).float(), sel
        report = self.run_compare(swapped)
        self.assertFalse(report.by_name("selection").passed, str(report))
        self.assertEqual(report.by_name("selection").worst[:2], (0, 0))
        self.assertTrue(report.by_name("o").passed, str(report))

    def test_near_tie_rule_of_spec_10(self):
        # two tokens swapped: allowed when their sigma differ by < 1e-4 (1 + |sigma|)
        sigma = np.array([[[np.inf, 1.0, 1.0 + 5e-5, 0.2, 3.0, 1.0, 1.1, 0.0]]])
        ref = np.array([[[1, 0, 1, 0, 1, 0, 1, 0]]], np.uint8)
        near = np.array([[[1, 1, 0, 0, 1, 0, 1, 0]]], np.uint8)
        far = np.array([[[1, 0, 1, 0, 1, 1, 0, 0]]], np.uint8)
        self.assertTrue(still.testing._selection_check(near, ref, sigma, 4).passed)
        bad = still.testing._selection_check(far, ref, sigma, 4)
        self.assertFalse(bad.passed)
        self.assertEqual(bad.worst, (0, 0, 5))
        self.assertAlmostEqual(bad.error, 0.1 / 2.1)

    def test_gate_and_parameters_reach_fn_and_oracle(self):
        # fn = the library's own autograd function: every check passes, with a
        # gradient per input; the same fn ignoring the gate fails on o and dgate
        rng = np.random.default_rng(11)
        params = {"fq.W": rng.standard_normal((2, 6, 4)), "fq.b": rng.standard_normal((2, 6))}
        cfg = dict(chunk=4, topk=1)
        kw = dict(N=16, d=4, dv=3, gate=True, params=params, dtype=F64, **cfg)
        good = still.testing.compare(
            lambda q, k, v, gate, params: st.attention(q, k, v, gate=gate, params=params,
                                                       **cfg), **kw)
        self.assertTrue(good.passed, str(good))
        self.assertEqual([c.name for c in good.checks],
                         ["o", "dq", "dk", "dv", "dgate", "dfq.W", "dfq.b"])
        bad = still.testing.compare(
            lambda q, k, v, gate, params: st.attention(q, k, v, params=params, **cfg), **kw)
        self.assertFalse(bad.by_name("o").passed, str(bad))
        self.assertFalse(bad.by_name("dgate").passed, str(bad))

    def test_example_program_exits_0(self):
        out = io.StringIO()
        with redirect_stdout(out):
            self.assertEqual(example.main([]), 0)
        self.assertIn("FAIL o", out.getvalue())


class TestErrors(unittest.TestCase):
    def setUp(self):
        self.q, self.k, self.v, self.gate, self.params = inputs(9)

    def refused(self, cls, name, **kw):
        args = dict(q=self.q, k=self.k, v=self.v)
        args.update(kw)
        with self.assertRaises(cls) as cm:
            st.attention(**args, chunk=4, topk=1)
        e = cm.exception
        self.assertIsInstance(e, still.StillError)
        self.assertEqual(e.name, name)
        self.assertEqual(e.code, cls.code)
        self.assertEqual(e.code_name, "STILL_E_" + still._CODES[cls.code])
        self.assertTrue(str(e).startswith(name + ": "), str(e))
        return e

    def test_misshaped_parameters_and_gate_name_the_array(self):
        for name, sh in (("fq.W", (2, 4, 4)), ("fq.b", (2, 5)), ("fk.u", (1, 3)),
                         ("window.w", (3,))):
            p = dict(self.params, **{name: torch.zeros(sh, dtype=F64)})
            self.refused(still.ShapeError, name, params=p)
        self.refused(still.ShapeError, "gate", gate=self.gate[..., :1])
        self.refused(still.ShapeError, "k", k=self.k[:, :, :-1])

    def test_nonfinite_input_names_the_array_and_index(self):
        k = self.k.detach().clone()
        k[0, 0, 5, 1] = float("nan")
        e = self.refused(still.NonfiniteError, "k", k=k)
        self.assertIn("[0, 0, 5, 1]", str(e))

    def test_complex_and_bool_tensors_are_dtype_errors(self):
        e = self.refused(still.DtypeError, "q", q=self.q.detach().to(torch.complex128))
        self.assertIsInstance(e, TypeError)
        self.refused(still.DtypeError, "v", v=self.v > 0)

    def test_library_codes_raise_their_subclass(self):
        with self.assertRaises(still.ConfigError) as cm:  # k > C, found by C
            st.attention(self.q, self.k, self.v, chunk=2, topk=3)
        self.assertEqual((cm.exception.code, cm.exception.func), (-3, "still_ref_forward"))
        with self.assertRaises(KeyError):
            st.attention(self.q, self.k, self.v, params={"fq.X": self.q})

    def test_vjp_checks_dout(self):
        q, k, v = (t.detach().numpy() for t in (self.q, self.k, self.v))
        with self.assertRaises(still.ShapeError) as cm:
            still.ref_vjp(q, k, v, np.zeros((1, 2, 12, 3)))
        self.assertEqual(cm.exception.name, "dout")


if __name__ == "__main__":
    print("libstill %s from %s, PyTorch %s" % (still.version(), still.library_path,
                                             torch.__version__))
    unittest.main(verbosity=2)
