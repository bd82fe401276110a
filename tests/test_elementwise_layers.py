"""ScaleShift, Log, LogSumExp, LogSoftmax and pools with explicit padding: forward values against
numpy/scipy, hand-computed DeepLIFT multipliers, and summation-to-delta at the edges of each rule
(equal inputs and references, large magnitudes)."""

import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp

import fastlift as fl
from fastlift import layers as L


def _cpu_ok():
    try:
        from fastlift.backends import cpu_ops  # noqa: F401
    except ImportError:
        return False
    return True


DEVICES = ["numpy"] + (["cpu"] if _cpu_ok() else [])


# ----------------------------------------------------------------------------- ScaleShift
def test_scale_shift_forward_broadcasts_per_channel():
    x = L.Input((3, 5))
    scale, shift = np.array([[1.0], [-2.0], [0.5]]), np.arange(5.0)
    model = fl.Model(x, L.ScaleShift(scale, shift)(x))
    X = np.random.default_rng(0).normal(size=(4, 3, 5))
    np.testing.assert_allclose(model.predict(X, dtype="float64"), X * scale + shift, rtol=1e-15)


@pytest.mark.parametrize("scale,shift", [(np.ones((2, 5)), 0.0), (1.0, np.ones((4, 1, 1))), (np.ones(3), 0.0)])
def test_scale_shift_that_would_change_the_shape_is_refused(scale, shift):
    x = L.Input((3, 5))
    with pytest.raises(ValueError, match="does not broadcast|more dimensions"):
        L.ScaleShift(scale, shift, name="ss")(x)


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
@pytest.mark.parametrize("device", DEVICES)
def test_scale_shift_multiplier_is_its_scale_and_swaps_halves_where_negative(rule, device):
    """y = relu(ScaleShift(Dense(x))): negative scales swap the RevealCancel halves; the sum holds."""
    rng = np.random.default_rng(1)
    x = L.Input((4,))
    d = L.Dense(rng.normal(size=(4, 3)), rng.normal(size=3))(x)
    s = L.ScaleShift(np.array([2.0, -3.0, 0.5]), np.array([0.1, -0.2, 0.3]), name="ss")(d)
    y = L.Dense(rng.normal(size=(3, 1)))(L.Activation("tanh")(s))
    model = fl.Model(x, y)
    X, R = rng.normal(size=(5, 4)), rng.normal(size=(5, 3, 4))
    res = fl.deeplift(model, X, R, rule=rule, dtype="float64", device=device)
    assert np.abs(res.deltas).max() < 1e-10
    at_d = fl.deeplift(model, X, R, rule=rule, dtype="float64", device=device, layers=["ss", d.name])
    np.testing.assert_allclose(at_d.multipliers[1], at_d.multipliers[0] * [2.0, -3.0, 0.5], rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------- Log
def test_log_rescale_multiplier_is_the_secant_slope():
    x = L.Input((3,))
    model = fl.Model(x, L.Log(name="log")(x))
    X = np.array([[1.0, 2.0, 5.0]])
    R = np.array([[2.0, 2.0, 1.0]])  # the middle unit has Δ = 0: log's derivative at the reference
    res = fl.deeplift(model, X, R, rule="rescale", dtype="float64", target=[0, 1, 2], target_layer="log",
                      device="numpy")
    want = np.array([np.log(1 / 2) / (1 - 2), 1 / 2.0, np.log(5.0) / 4])
    np.testing.assert_allclose(np.diagonal(res.multipliers[:, 0]), want, rtol=1e-14)
    np.testing.assert_allclose(model.predict(X, dtype="float64"), np.log(X), rtol=1e-15)


# ----------------------------------------------------------------------------- LogSumExp
@pytest.mark.parametrize("axis,keepdims", [(1, True), (2, False), (-1, True), (-2, False)])
def test_log_sum_exp_over_an_axis_equals_scipy(axis, keepdims):
    x = L.Input((3, 4))
    model = fl.Model(x, L.LogSumExp(axis=axis, keepdims=keepdims)(x))
    X = np.random.default_rng(2).normal(size=(5, 3, 4)) * 3
    np.testing.assert_allclose(model.predict(X, dtype="float64"), logsumexp(X, axis=axis, keepdims=keepdims),
                               rtol=1e-14)


def test_log_sum_exp_across_inputs_is_elementwise_and_does_not_overflow():
    a, b = L.Input((2,), name="a"), L.Input((2,), name="b")
    model = fl.Model([a, b], L.LogSumExp(name="lse")([a, b]))
    A, B = np.array([[1000.0, -3.0]]), np.array([[999.0, 4.0]])
    got = model.predict([A, B], dtype="float32")
    np.testing.assert_allclose(got, np.logaddexp(A, B), rtol=1e-6)
    assert np.all(np.isfinite(got))


def test_log_sum_exp_rejects_bad_arguments():
    x = L.Input((3,))
    with pytest.raises(ValueError, match="batch axis"):
        L.LogSumExp(axis=0)
    with pytest.raises(ValueError, match="out of range"):
        L.LogSumExp(axis=3)(x)
    with pytest.raises(ValueError, match="one shape"):
        L.LogSumExp()([x, L.Input((4,))])


def test_log_sum_exp_rescale_multipliers_by_hand():
    """Two inputs a, b: m_a = Δy/(Sx - Sr) · (e^a - e^a0)/(a - a0) with S = e^a + e^b."""
    a, b = L.Input((1,), name="a"), L.Input((1,), name="b")
    model = fl.Model([a, b], L.LogSumExp(name="lse")([a, b]))
    xa, xb, ra, rb = 0.3, -1.2, 1.5, 0.4
    res = fl.deeplift(model, [np.array([[xa]]), np.array([[xb]])], [np.array([[ra]]), np.array([[rb]])],
                      rule="rescale", dtype="float64", device="numpy")
    dy = np.logaddexp(xa, xb) - np.logaddexp(ra, rb)
    outer = dy / ((np.exp(xa) + np.exp(xb)) - (np.exp(ra) + np.exp(rb)))
    want_a = outer * (np.exp(xa) - np.exp(ra)) / (xa - ra)
    want_b = outer * (np.exp(xb) - np.exp(rb)) / (xb - rb)
    np.testing.assert_allclose(res.multipliers[0][0, 0], want_a, rtol=1e-13)
    np.testing.assert_allclose(res.multipliers[1][0, 0], want_b, rtol=1e-13)
    assert abs(res.deltas[0]) < 1e-14


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
def test_log_sum_exp_summation_to_delta_with_equal_and_large_values(device, rule):
    rng = np.random.default_rng(3)
    x = L.Input((4, 6))
    h = L.LogSumExp(axis=2, keepdims=False, name="lse_len")(x)
    y = L.Dense(rng.normal(size=(4, 2)))(h)
    model = fl.Model(x, y)
    X = rng.normal(size=(3, 4, 6)) * 50  # exp would overflow without the shared shift
    R = np.repeat(X[:, None], 2, axis=1).copy()
    R[:, 0, :2] += rng.normal(size=(3, 2, 6))  # rows 2.. equal the input: Δ = 0 and ΔS = 0
    R[:, 1, :, 3] -= 1e-9  # below NEAR_ZERO on one position
    for dtype, tol in (("float64", 1e-10), ("float32", 1e-4)):
        res = fl.deeplift(model, X, R, rule=rule, dtype=dtype, device=device)
        assert np.all(np.isfinite(res.contributions))
        assert np.abs(res.deltas).max() < tol * max(1.0, np.abs(res.contributions).sum(axis=(1, 2)).max())


def test_log_sum_exp_gradient_is_the_softmax():
    x = L.Input((5,))
    model = fl.Model(x, L.LogSumExp(keepdims=True, name="lse")(x))
    X = np.random.default_rng(4).normal(size=(2, 5))
    res = fl.attribute(model, X, method="gradient", dtype="float64", device="numpy")
    np.testing.assert_allclose(res.multipliers, np.exp(log_softmax(X, axis=1)), rtol=1e-13)


# ----------------------------------------------------------------------------- LogSoftmax
def test_log_softmax_is_a_final_layer_targeted_at_its_input():
    rng = np.random.default_rng(5)
    x = L.Input((4,))
    logits = L.Dense(rng.normal(size=(4, 3)), name="logits")(x)
    model = fl.Model(x, L.LogSoftmax(name="logp")(logits))
    X = rng.normal(size=(6, 4))
    np.testing.assert_allclose(model.predict(X, dtype="float64"), log_softmax(X @ logits.layer.weights["kernel"],
                                                                              axis=1), rtol=1e-13)
    assert model.default_target() is logits
    with pytest.raises(NotImplementedError, match="final layer"):
        fl.Model(x, L.Activation("relu")(L.LogSoftmax()(logits)))


# ----------------------------------------------------------------------------- explicit pool padding
def test_pools_with_explicit_padding_skip_the_padded_cells():
    x = L.Input((1, 5))
    mp = L.MaxPool1D(3, strides=2, padding=((2, 1),), data_format="channels_first")(x)
    ap = L.AvgPool1D(3, strides=2, padding=((2, 1),), data_format="channels_first")(x)
    model = fl.Model(x, [mp, ap])
    X = np.array([[[-1.0, -2.0, -3.0, -4.0, -5.0]]])
    got_max, got_avg = model.predict(X, dtype="float64")
    # windows over [-2, 3): cells -2..0, 0..2, 2..4 and (4, 5, 6): input cells only
    np.testing.assert_array_equal(got_max[0, 0], [-1.0, -1.0, -3.0])
    np.testing.assert_allclose(got_avg[0, 0], [-1.0, -2.0, -4.0])
    assert mp.shape == (1, 3)


def test_pool_padding_that_leaves_a_window_outside_the_input_is_refused():
    x = L.Input((6, 2))
    with pytest.raises(ValueError, match="wholly outside"):
        L.MaxPool1D(2, strides=1, padding=((2, 0),), name="mp")(x)
    with pytest.raises(ValueError, match=">= 0"):
        L.MaxPool1D(2, padding=((-1, 0),))


def test_model_input_layout_is_validated_and_gives_the_channel_axis():
    x = L.Input((4, 10))
    y = L.GlobalAvgPool1D(data_format="channels_first")(x)
    assert fl.Model(x, y).channel_axis == -1
    assert fl.Model(x, y, input_layout="channels_first").channel_axis == 1
    with pytest.raises(ValueError, match="input_layout"):
        fl.Model(x, y, input_layout="NCL")
