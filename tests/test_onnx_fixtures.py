"""PyTorch models exported to ONNX (tests/fixtures/make_onnx_fixtures.py: bpnet-lite's BPNet and
ChromBPNet, a Basset-like and a Beluga-like CNN, a small vision CNN; each through the TorchScript
exporter at opsets 17 and 13 and the dynamo exporter): fastlift's forward equals torch's outputs
recorded beside them, and DeepLIFT on them sums to delta with shuffled references."""

from pathlib import Path

import numpy as np
import pytest

import fastlift as fl

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "onnx"
FILES = sorted(p.name for p in FIXTURES.glob("*.onnx"))


def _load(name):
    data = np.load(FIXTURES / f"{name.split('.')[0]}.npz")
    xs = [data[k] for k in sorted(data) if k.startswith("x")]
    ys = [data[k] for k in sorted(data) if k.startswith("y")]
    return fl.load_model(FIXTURES / name), xs, ys


def test_every_model_and_exporter_is_there():
    models = {"bpnet", "chrombpnet", "basset", "beluga", "vision"}
    assert set(FILES) == {f"{m}.{e}.onnx" for m in models for e in ("ts", "ts13", "dynamo")}


@pytest.mark.parametrize("name", FILES)
def test_forward_equals_torch(name):
    model, xs, ys = _load(name)
    assert model.input_layout == "channels_first"
    for dtype, tol in (("float32", 2e-5), ("float64", 2e-6)):
        got = model.predict(xs if len(xs) > 1 else xs[0], dtype=dtype)
        got = got if isinstance(got, list) else [got]
        for g, y in zip(got, ys):
            np.testing.assert_allclose(g.reshape(y.shape), y, rtol=tol, atol=tol * max(1.0, np.abs(y).max()))


@pytest.mark.parametrize("name", [f for f in FILES if not f.startswith("vision")])
def test_deeplift_on_one_hot_dna_sums_to_delta_with_hypothetical_scores(name):
    model, xs, _ = _load(name)
    seq = model.input_names[0]
    refs = fl.references.dinuc_shuffle(3)
    if len(xs) > 1:  # BPNet's control track: its own reference (no difference), not scored
        refs = [refs] + xs[1:]
    for target_layer in [None] + model.output_names[1:]:
        res = fl.deeplift(model, xs if len(xs) > 1 else xs[0], refs, layers=[seq], target_layer=target_layer,
                          hypothetical=True, dtype="float64", seed=3)
        total = res.contributions[0].reshape(len(xs[0]), -1).sum(axis=1)
        assert np.abs(res.deltas).max() < 1e-10 * max(1.0, np.abs(total - res.deltas).max())
        hyp = res.hypothetical[0]
        assert hyp.shape == xs[0].shape
        # for one-hot input, the hypothetical score of the present base is its contribution
        present = (hyp * xs[0]).sum(axis=1)
        np.testing.assert_allclose(present, res.contributions[0].sum(axis=1), rtol=1e-9, atol=1e-12)


def test_vision_model_deeplift_sums_to_delta():
    model, xs, _ = _load("vision.ts.onnx")
    rng = np.random.default_rng(0)
    refs = rng.normal(size=(len(xs[0]), 2) + xs[0].shape[1:]) * 0.5
    for rule in ("rescale", "reveal_cancel"):
        res = fl.deeplift(model, xs[0], refs, rule=rule, target=[0, 3], dtype="float64")
        assert np.abs(res.deltas).max() < 1e-10
