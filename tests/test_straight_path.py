"""Integrated gradients through ReLU (+ max-pool) chains after the affine prefix (`straight_path`):
the decomposed activations equal the plain forward's, the off-line rows are mostly exact zeros,
and chains are found only where the decomposition applies and pays."""

import numpy as np
import pytest

import fastlift as fl
from fastlift import integrated_gradients, straight_path
from fastlift import layers as L
from fastlift.backends.cpu_ops import SPARSE_MIN_TAPS_CHANNELS, CpuOps
from fastlift.backends.ops import Ops
from fastlift.model import WeightCache

pytestmark = pytest.mark.blas  # .ci/run runs these again under a second BLAS core type


def one_hot(rng, n, length):
    return np.eye(4)[rng.integers(0, 4, size=(n, length))]


def model_1d(rng, pool=True, act="relu", c_mid=32, k2=17, padding="valid", dilation=1, data_format="channels_last"):
    """One-hot (60, 4) -> conv 4->c_mid -> act [-> max-pool 3] -> conv c_mid->8 (k2 taps) -> relu -> dense 1."""
    x = L.Input((60, 4) if data_format == "channels_last" else (4, 60), name="x")
    h = L.Conv1D(rng.normal(size=(5, 4, c_mid)) * 0.5, rng.normal(size=c_mid) * 0.3, name="c1",
                 data_format=data_format)(x)
    h = L.Activation(act, name="a1")(h)
    if pool:
        h = L.MaxPool1D(3, name="p1", data_format=data_format)(h)
    h = L.Conv1D(rng.normal(size=(k2, c_mid, 8)) * 0.2, rng.normal(size=8) * 0.1, padding=padding,
                 dilation_rate=dilation, name="c2", data_format=data_format)(h)
    h = L.Activation("relu", name="a2")(h)
    return fl.Model(x, L.Dense(rng.normal(size=(int(np.prod(h.shape)), 1)) * 0.1, name="out")(L.Flatten(name="f")(h)))


def model_2d(rng):
    x = L.Input((12, 10, 3), name="x")
    h = L.Activation("relu", name="a1")(L.Conv2D(rng.normal(size=(3, 3, 3, 64)), rng.normal(size=64), name="c1")(x))
    h = L.MaxPool2D((2, 2), padding="same", name="p1")(h)
    h = L.Conv2D(rng.normal(size=(3, 3, 64, 4)) * 0.1, padding="same", name="c2")(h)
    return fl.Model(x, L.Dense(rng.normal(size=(int(np.prod(h.shape)), 1)), name="out")(L.Flatten(name="f")(h)))


CASES = {
    "pool": lambda rng: (model_1d(rng), one_hot(rng, 3, 60)),
    "no-pool": lambda rng: (model_1d(rng, pool=False), one_hot(rng, 3, 60)),
    "same-dilated": lambda rng: (model_1d(rng, padding="same", dilation=2), one_hot(rng, 3, 60)),
    "2d-same-pool": lambda rng: (model_2d(rng), rng.normal(size=(3, 12, 10, 3))),
}


def chains_of(model, ops=None):
    return straight_path.kinked_chains(model, integrated_gradients.affine_prefix(model), ops or CpuOps())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("ref", ["zero", "shuffled"])
def test_integrated_gradients_with_chains_equals_the_plain_forward(case, ref, dtype, monkeypatch):
    rng = np.random.default_rng(7)
    model, x = CASES[case](rng)
    assert len(chains_of(model)) == 1 and chains_of(model)[0][3].name == "c2"
    refs = None if ref == "zero" else x[rng.permutation(len(x))][:, None]
    kw = {"steps": 9, "dtype": dtype, "device": "cpu"}
    fast = fl.attribute(model, x, "integrated_gradients", refs, **kw)
    monkeypatch.setattr(integrated_gradients, "kinked_chains", lambda model, prefix, ops: ())
    plain = fl.attribute(model, x, "integrated_gradients", refs, **kw)
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == "float64" else {"rtol": 2e-4, "atol": 2e-5}
    np.testing.assert_allclose(fast.contributions, plain.contributions, **tol)
    np.testing.assert_allclose(fast.deltas, plain.deltas, **tol)


@pytest.mark.parametrize("case", list(CASES))
def test_chain_activations_match_the_forward_and_leave_mostly_exact_zeros(case, monkeypatch):
    rng = np.random.default_rng(11)
    model, x = CASES[case](rng)
    ops, steps = CpuOps(n_threads=1), 16
    (chain,) = chains_of(model, ops)
    z_node, relu, pool, conv = chain
    cache = WeightCache(ops, np.float64)
    z_x = z_node.layer.forward(ops, [x], cache(z_node.layer))
    z_r = z_node.layer.forward(ops, [np.zeros_like(x)], cache(z_node.layer))
    alphas = (np.arange(steps) + 0.5) / steps
    z_points = straight_path.path(z_x, z_r, alphas)
    seen = []
    real = type(conv.layer).linear
    monkeypatch.setattr(type(conv.layer), "linear", lambda self, ops, a, k, node: seen.append(a) or real(self, ops, a, k, node))
    with ops.compute_context():
        got = straight_path.chain_activations(ops, cache, chain, z_points, z_x, z_r, alphas)
        monkeypatch.setattr(type(conv.layer), "linear", real)
        want = model.forward(ops, [straight_path.path(x, np.zeros_like(x), alphas)], cache, given={z_node: z_points})
    for node in (relu, pool):
        if node is not None:  # the same ops on the same values: bit for bit
            np.testing.assert_array_equal(got[node], want[node])
    np.testing.assert_allclose(got[conv], want[conv], rtol=1e-10, atol=1e-12)
    off_line = seen[-1]  # the rows of values off each element's middle line
    assert off_line.shape[0] == len(x) * steps
    assert np.mean(off_line == 0) > 0.5, np.mean(off_line == 0)


def test_integrated_gradients_with_chains_does_not_depend_on_the_batch():
    rng = np.random.default_rng(5)
    model, x = CASES["pool"](rng)
    kw = {"steps": 8, "dtype": "float32", "device": "cpu"}
    whole = fl.attribute(model, x, "integrated_gradients", n_threads=2, **kw).contributions
    for i in range(len(x)):
        one = fl.attribute(model, x[i:i + 1], "integrated_gradients", n_threads=1, **kw).contributions
        np.testing.assert_array_equal(one[0], whole[i])


def test_chains_are_found_only_where_they_apply_and_pay():
    rng = np.random.default_rng(0)
    assert chains_of(model_1d(rng, act="tanh")) == ()  # not piecewise linear
    assert chains_of(model_1d(rng, data_format="channels_first")) == ()
    assert chains_of(model_1d(rng), Ops()) == ()  # the numpy reference skips no zeros
    small = model_1d(rng, c_mid=8, k2=3)  # 24 taps x channels: a dense GEMM is faster
    assert 8 * 3 < SPARSE_MIN_TAPS_CHANNELS and chains_of(small) == ()
    x = L.Input((60, 4), name="x")  # the ReLU reads a non-prefix node
    h = L.Activation("relu", name="a")(L.Activation("tanh", name="t")(L.Conv1D(rng.normal(size=(5, 4, 32)), name="c1")(x)))
    deep = fl.Model(x, L.Flatten(name="f")(L.Conv1D(rng.normal(size=(17, 32, 2)), name="c2")(h)))
    assert chains_of(deep) == ()
