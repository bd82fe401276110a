"""`Explainer`: one session owns a run's state; the one-call functions are sessions of one call."""

import numpy as np
import pytest
from model_zoo import ZOO

import fastlift as fl
from fastlift import layers as L
from fastlift.backends.cpu_ops import CpuOps
from fastlift.model import _LazyWeights


def _leaves(res):
    out = []
    for field in (res.contributions, res.multipliers, res.hypothetical, res.deltas):
        if field is None:
            continue
        if isinstance(field, dict):
            out.extend(field[k] for k in sorted(field))
        elif isinstance(field, list):
            out.extend(field)
        else:
            out.append(field)
    return out


def assert_bitwise(a, b):
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("device", ["numpy", "cpu"])
@pytest.mark.parametrize("name", list(ZOO))
def test_session_calls_equal_the_one_call_functions_bit_for_bit(name, device):
    rng = np.random.default_rng(5)
    model, make_x = ZOO[name](rng)
    x = make_x(rng, 4)
    refs = make_x(rng, 4)[:, None] if not isinstance(x, list) else None  # one reference per example
    with fl.Explainer(model, device=device, dtype="float64", batch_size=3) as ex:
        for _ in range(2):  # the second call runs on what the first one kept
            assert_bitwise(ex.deeplift(x, refs), fl.deeplift(model, x, refs, device=device, dtype="float64",
                                                             batch_size=3))
            for method in ("gradient", "grad_x_input", "guided_backprop"):
                assert_bitwise(ex.attribute(x, method), fl.attribute(model, x, method, device=device,
                                                                     dtype="float64", batch_size=3))
            assert_bitwise(ex.attribute(x, "integrated_gradients", refs, steps=5),
                           fl.attribute(model, x, "integrated_gradients", refs, steps=5, device=device,
                                        dtype="float64", batch_size=3))
        out = model.predict(x, dtype="float64", device=device)
        got = ex.predict(x)
        for a, b in zip(out if isinstance(out, list) else [out], got if isinstance(got, list) else [got]):
            np.testing.assert_array_equal(a, b)


def _mlp(rng):
    x = L.Input((20,), name="x")
    return fl.Model(x, L.Dense(rng.normal(size=(20, 3)), name="d")(L.Activation("relu", name="r")(
        L.Dense(rng.normal(size=(20, 20)), name="h")(x))))


def test_a_session_converts_and_packs_each_weight_once(monkeypatch, rng):
    model = _mlp(rng)
    converted, derived = [], []
    real_missing, real_derived = _LazyWeights.__missing__, CpuOps._derived
    monkeypatch.setattr(_LazyWeights, "__missing__", lambda self, key: converted.append(key) or
                        real_missing(self, key))
    monkeypatch.setattr(CpuOps, "_derived", lambda self, b, what, make: real_derived(
        self, b, what, lambda a: derived.append(what) or make(a)))
    X = rng.normal(size=(4, 20)).astype(np.float32)
    with fl.Explainer(model, device="cpu") as ex:
        first = ex.attribute(X, "gradient").contributions
        n_converted, n_derived = len(converted), len(derived)
        for _ in range(3):
            np.testing.assert_array_equal(ex.attribute(X, "gradient").contributions, first)
        assert n_converted > 0 and len(converted) == n_converted
        assert len(derived) == n_derived
    # a one-call session converts again: the state is the session's, not the model's
    fl.attribute(model, X, "gradient", device="cpu")
    assert len(converted) == 2 * n_converted


def test_sessions_leave_no_state_on_the_model_or_its_layers(rng):
    model = _mlp(rng)
    before = {"model": set(vars(model))} | {n.name: set(vars(n.layer)) for n in model.nodes}
    X = rng.normal(size=(4, 20))
    with fl.Explainer(model, device="cpu") as ex:
        ex.deeplift(X, np.zeros((1, 20)))
        ex.attribute(X, "integrated_gradients", steps=3)
    fl.deeplift(model, X, device="cpu")
    after = {"model": set(vars(model))} | {n.name: set(vars(n.layer)) for n in model.nodes}
    assert after == before


def test_options_are_validated_when_the_session_is_built(rng):
    model = _mlp(rng)
    with pytest.raises(ValueError, match=r"rule must be one of"):
        fl.Explainer(model, rule="deeplift")
    with pytest.raises(ValueError, match=r"target must be in \[0, 3\)"):
        fl.Explainer(model, target=5)
    with pytest.raises(ValueError, match=r"device must be one of"):
        fl.Explainer(model, device="tpu")
    with pytest.raises(ValueError, match=r"batch_size must be a positive int or None"):
        fl.Explainer(model, batch_size=0)
    with pytest.raises(TypeError, match=r"model must be a fastlift.Model; got str"):
        fl.Explainer("model.h5")
    x = L.Input((4,), name="x")
    flat = fl.Model(x, L.Activation("relu", name="r")(L.Flatten(name="f")(x)))
    with pytest.raises(ValueError, match=r"rule='genomics_default' resolves an activation"):
        fl.Explainer(flat, rule="genomics_default")


def test_close_is_idempotent_and_refuses_later_calls(rng):
    model = _mlp(rng)
    ex = fl.Explainer(model, device="cpu")
    assert "cpu" in repr(ex)
    ex.close()
    ex.close()
    assert ex.closed and "closed" in repr(ex)
    for call in (lambda: ex.deeplift(np.zeros((1, 20))), lambda: ex.attribute(np.zeros((1, 20)), "gradient"),
                 lambda: ex.predict(np.zeros((1, 20)))):
        with pytest.raises(RuntimeError, match="this Explainer is closed; create a new one"):
            call()


def test_per_call_arguments_are_validated_per_call(rng):
    model = _mlp(rng)
    with fl.Explainer(model, device="numpy") as ex:
        with pytest.raises(ValueError, match=r"X must have shape \(n_examples, 20\)"):
            ex.deeplift(np.zeros((2, 21)))
        with pytest.raises(ValueError, match=r"method must be one of"):
            ex.attribute(np.zeros((2, 20)), "saliency")
        with pytest.raises(ValueError, match=r"steps must be a positive int"):
            ex.attribute(np.zeros((2, 20)), "integrated_gradients", steps=0)
        for method in ("deeplift", "gradient"):  # a bad steps is refused whatever the method
            with pytest.raises(ValueError, match=r"steps must be a positive int; got 'ten'"):
                ex.attribute(np.zeros((2, 20)), method, steps="ten")
            with pytest.raises(ValueError, match=r"steps must be a positive int; got 0"):
                fl.attribute(model, np.zeros((2, 20)), method, steps=0, device="numpy")
        with pytest.raises(ValueError, match=r"seed must be a non-negative int or None"):
            ex.deeplift(np.zeros((2, 20)), seed=-3)
        with pytest.raises(ValueError, match=r"unknown layer name 'nope'"):
            ex.deeplift(np.zeros((2, 20)), layers="nope")
        # a failed call leaves the session usable
        assert ex.deeplift(np.ones((2, 20))).contributions.shape == (2, 20)


def test_an_unclosed_session_releases_its_pool_when_collected(rng):
    import gc

    from fastlift.backends import _pool

    ex = fl.Explainer(_mlp(rng), device="cpu")
    assert _pool.stats()["active"] >= 1
    del ex
    gc.collect()
    assert _pool.stats()["active"] == 0


def _two_heads(rng):
    x = L.Input((30, 4), name="x")
    h = L.Activation("relu", name="r")(L.Conv1D(rng.normal(size=(5, 4, 8)), padding="same", name="body")(x))
    profile = L.Conv1D(rng.normal(size=(7, 8, 2)), padding="same", name="profile")(h)
    counts = L.Dense(rng.normal(size=(8, 1)), name="counts")(L.GlobalAvgPool1D(name="gap")(h))
    return fl.Model(x, [profile, counts]), fl.Model(x, counts)


@pytest.mark.parametrize("method", ["deeplift", "gradient", "integrated_gradients"])
def test_a_forward_computes_only_what_the_targets_and_scored_layers_read(method, rng, monkeypatch):
    """A counts target does not pay for the profile head beside it; the results are those of the
    model without that head, bit for bit."""
    both, counts_only = _two_heads(rng)
    X = np.eye(4)[rng.integers(0, 4, size=(3, 30))]
    from fastlift import fuse

    ran = []
    real = L.Conv1D.forward
    monkeypatch.setattr(L.Conv1D, "forward", lambda self, *a: ran.append(self.name) or real(self, *a))
    real_fused = fuse._conv_relu  # a convolution and its ReLU in one step (DeepLIFT's forwards)

    def recorded(node):
        run = real_fused(node)
        return lambda *a: ran.append(node.layer.name) or run(*a)

    monkeypatch.setattr(fuse, "_conv_relu", recorded)
    kw = {"steps": 4} if method == "integrated_gradients" else {}
    with fl.Explainer(both, target_layer="counts", device="cpu") as ex:
        got = ex.attribute(X, method, **kw)
        assert "profile" not in ran and "body" in ran
        ran.clear()
        ex.attribute(X, method, layers="profile", **kw) if method == "deeplift" else None
        assert method != "deeplift" or "profile" in ran  # scoring the head computes it
    want = fl.attribute(counts_only, X, method, device="cpu", **kw)
    assert_bitwise(got, want)


def _side_branch(rng):
    """s = a + relu(z): conv ``a`` reads the input beside ``z`` and is not an ancestor of ``z``."""
    x = L.Input((30, 4), name="x")
    a = L.Conv1D(rng.normal(size=(3, 4, 8)), padding="same", name="a")(x)
    kz, bz = rng.normal(size=(5, 4, 8)), rng.normal(size=8)
    z = L.Conv1D(kz, bz, padding="same", name="z")(x)
    s = L.Add(name="s")([a, L.Activation("relu", name="r")(z)])
    out = L.Dense(rng.normal(size=(8, 1)), name="out")(L.GlobalAvgPool1D(name="gap")(s))
    only_z = L.Input((30, 4), name="x")
    z_alone = L.Conv1D(kz, bz, padding="same", name="z")(only_z)
    return fl.Model(x, out), fl.Model(only_z, z_alone)


@pytest.mark.parametrize("method", ["gradient", "guided_backprop", "integrated_gradients", "deeplift"])
@pytest.mark.parametrize("device", ["numpy", "cpu"])
def test_a_target_beside_a_fused_residual_or_an_uncomputed_input_reader(method, device, rng):
    """A target whose forward leaves out a sibling branch (a conv reading the input, the Add it
    joins through a ReLU) computes neither: the fused conv+add step and integrated gradients'
    affine prefix cover only what the forward computes. The scores are the one-conv model's."""
    both, alone = _side_branch(rng)
    X = np.eye(4)[rng.integers(0, 4, size=(3, 30))]
    kw = {"steps": 4} if method == "integrated_gradients" else {}
    got = fl.attribute(both, X, method, target_layer="z", target=7, device=device, dtype="float64", **kw)
    want = fl.attribute(alone, X, method, target=7, device=device, dtype="float64", **kw)
    np.testing.assert_allclose(got.contributions, want.contributions, rtol=1e-12, atol=1e-12)
