"""A layer stores its weights once: RevealCancel's positive and negative parts are derived by the
run that reads them, from the weights it already converted, never kept on the model."""

import numpy as np
import pytest

import fastlift as fl
from fastlift import demo
from fastlift import layers as L
from fastlift.backends import get_ops
from fastlift.layers.base import negative_part, positive_part
from fastlift.model import WeightCache
from fastlift.scan import model_fingerprint


def _mlp(seed=0):
    rng = np.random.default_rng(seed)
    x = L.Input((6,))
    h = L.BatchNormalization(rng.normal(size=5), rng.normal(size=5), rng.normal(size=5), rng.uniform(0.5, 2, 5))(
        L.Dense(rng.normal(size=(6, 5)), rng.normal(size=5), name="d1")(x))
    h = L.Activation("relu")(h)
    return fl.Model(x, L.Dense(rng.normal(size=(5, 2)), name="d2")(h))


def test_layers_store_only_their_own_weights():
    model = _mlp()
    dense = model.get_node("d1").layer
    assert set(dense.weights) == {"kernel", "bias"}
    assert dense.weight_names() == ["kernel", "bias", "kernel_pos", "kernel_neg"]
    np.testing.assert_array_equal(dense.weight("kernel_neg"), np.minimum(dense.weights["kernel"], 0))
    conv = next(n.layer for n in demo.demo_model(50).nodes if isinstance(n.layer, L.Conv1D))
    assert set(conv.weights) == {"kernel", "bias"} and conv.weight("kernel_pos").shape == conv.weights["kernel"].shape


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_run_derives_the_parts_from_its_converted_kernel(dtype):
    layer = _mlp().get_node("d1").layer
    w = WeightCache(get_ops("numpy"), np.dtype(dtype))(layer)
    assert "kernel_pos" in w and "kernel_neg" in w and "nothing" not in w and w.get("nothing") is None
    kernel = layer.weights["kernel"].astype(dtype)
    pos, neg = w["kernel_pos"], w["kernel_neg"]
    assert pos.dtype == np.dtype(dtype) and not pos.flags.writeable and w["kernel_pos"] is pos
    # bit for bit what deriving in float64 and converting gave when the parts were stored
    for got, fn in ((pos, positive_part), (neg, negative_part)):
        np.testing.assert_array_equal(got.view(np.uint8), fn(layer.weights["kernel"]).astype(dtype).view(np.uint8))
    np.testing.assert_array_equal(pos, positive_part(kernel))


def test_reveal_cancel_needs_the_parts_and_gets_them():
    model = _mlp()
    X = np.random.default_rng(1).normal(size=(4, 6))
    res = fl.deeplift(model, X, None, rule="reveal_cancel", dtype="float64")
    assert np.abs(res.deltas).max() < 1e-10   # summation-to-delta through the split kernels


def test_fingerprints_are_those_of_files_written_before():
    # score files record the fingerprint and a resume compares it: the derived weights still
    # count in it, so a file written when they were stored resumes
    assert model_fingerprint(demo.demo_model(200)) == "f440bfc9a5611620"
