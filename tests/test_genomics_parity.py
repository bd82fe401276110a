"""The profile presets against the published tools' own numbers.

The oracles under ``tests/fixtures/genomics_parity/`` were produced by the tools themselves
(``make_fixtures.py`` there): ChromBPNet's interpretation path (kundajelab-shap on TensorFlow)
on ChromBPNet's BPNet architecture, and bpnet-lite + tangermeme on bpnet-lite's BPNet, both
with random weights, on the same sequences and references fastlift is given here.
"""

import os

import numpy as np
import pytest

import fastlift as fl
from fastlift import layers as L

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "genomics_parity")
KW = {"dtype": "float64", "device": "numpy", "hypothetical": True}


def close(ours, theirs, rel=1e-4):
    """Agreement relative to the largest score."""
    err = np.abs(ours - theirs).max() / np.abs(theirs).max()
    assert err <= rel, f"max |difference| is {err:.2e} of the largest score"
    return err


@pytest.fixture(scope="module")
def chrombpnet():
    data = dict(np.load(os.path.join(HERE, "chrombpnet.npz")))
    model = fl.load_model(os.path.join(HERE, "chrombpnet_bpnet.h5"))
    return model, data


@pytest.fixture(scope="module")
def bpnetlite():
    data = dict(np.load(os.path.join(HERE, "bpnetlite.npz")))
    return bpnetlite_model(data), data


def bpnetlite_model(w):
    """bpnet-lite's BPNet (no control track) in fastlift layers, from its weights in Keras layout."""
    length, trim = w["X"].shape[1], int(w["trimming"])
    x = L.Input((length, 4), name="seq")
    h = L.Activation("relu")(L.Conv1D(w["iconv_kernel"], w["iconv_bias"], padding="same", name="iconv")(x))
    i = 0
    while f"rconv{i}_kernel" in w:
        c = L.Conv1D(w[f"rconv{i}_kernel"], w[f"rconv{i}_bias"], padding="same", dilation_rate=2 ** (i + 1),
                     name=f"rconv{i}")(h)
        h = L.Add(name=f"add{i}")([h, L.Activation("relu", name=f"rrelu{i}")(c)])
        i += 1
    prof = L.Cropping1D(trim, name="profile")(L.Conv1D(w["fconv_kernel"], w["fconv_bias"], padding="same",
                                                       name="fconv")(h))
    pooled = L.GlobalAvgPool1D(name="gap")(L.Cropping1D(max(trim - 37, 0), name="count_crop")(h))
    counts = L.Dense(w["linear_kernel"], w["linear_bias"], name="counts")(pooled)
    return fl.Model(x, [prof, counts], name="bpnetlite")


@pytest.mark.parametrize("tool, profile_key", [("chrombpnet", "logits_x"), ("bpnetlite", "profile_x")])
def test_models_give_the_tools_predictions(tool, profile_key, request):
    """The Keras file ChromBPNet's side saved loads, and bpnet-lite's weights build, to the same model."""
    model, d = request.getfixturevalue(tool)
    profile, counts = model.predict(d["X"].astype(np.float64), dtype="float64")
    np.testing.assert_allclose(profile, d[profile_key], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(counts, d["counts_x"], rtol=1e-9, atol=1e-10)


def test_profile_chrombpnet_equals_kundajelab_shap(chrombpnet):
    model, d = chrombpnet
    X, refs = d["X"].astype(np.float64), d["refs"].astype(np.float64)
    res = fl.deeplift(model, X, refs, target="profile_chrombpnet", target_layer="logits_profile_predictions", **KW)
    close(res.hypothetical, d["profile_hyp"])
    # the exact formula is another quantity: the gap a user comparing score files sees
    exact = fl.deeplift(model, X, refs, target="profile", target_layer="logits_profile_predictions", **KW)
    assert np.abs(exact.hypothetical - d["profile_hyp"]).max() > 1e-2 * np.abs(d["profile_hyp"]).max()
    # its contributions miss the change of Σ softmax(l)·l: fastlift's deltas are the tool's own miss
    delta_target = d["profile_target_x"] - d["profile_target_ref"].mean(axis=1)
    their_miss = (d["profile_hyp"] * X).sum(axis=(1, 2)) - delta_target
    np.testing.assert_allclose(res.deltas, their_miss, rtol=1e-4, atol=1e-6 * np.abs(delta_target).max())
    assert np.abs(res.deltas).max() > 1e-2 * np.abs(delta_target).max()
    assert np.abs(exact.deltas).max() < 1e-9


def test_counts_equal_kundajelab_shap(chrombpnet):
    model, d = chrombpnet
    X, refs = d["X"].astype(np.float64), d["refs"].astype(np.float64)
    res = fl.deeplift(model, X, refs, target=0, target_layer="logcount_predictions", **KW)
    close(res.hypothetical, d["counts_hyp"])
    assert np.abs(res.deltas).max() < 1e-9


def test_both_heads_in_one_pass_and_float32(chrombpnet):
    model, d = chrombpnet
    X, refs = d["X"].astype(np.float64), d["refs"].astype(np.float64)
    res = fl.deeplift(model, X, refs, target=["profile_chrombpnet", 0],
                      target_layer=["logits_profile_predictions", "logcount_predictions"], **KW)
    close(res.hypothetical[0], d["profile_hyp"])
    close(res.hypothetical[1], d["counts_hyp"])
    f32 = fl.deeplift(model, X.astype(np.float32), refs.astype(np.float32), target="profile_chrombpnet",
                      target_layer="logits_profile_predictions", hypothetical=True)
    close(f32.hypothetical, d["profile_hyp"], rel=1e-3)


def test_profile_bpnetlite_equals_tangermeme(bpnetlite):
    model, d = bpnetlite
    X, refs = d["X"].astype(np.float64), d["refs"].astype(np.float64)
    res = fl.deeplift(model, X, refs, target="profile_bpnetlite", target_layer="profile", **KW)
    close(res.hypothetical, d["profile_hyp"])
    # the wrapper's rule sums to the wrapper's change: Σ p·l of the example minus that of the reference
    delta_target = d["profile_target_x"] - d["profile_target_ref"].mean(axis=1)
    np.testing.assert_allclose(res.contributions.sum(axis=(1, 2)), delta_target, rtol=1e-9)
    assert np.abs(res.deltas).max() < 1e-9
    other = fl.deeplift(model, X, refs, target="profile", target_layer="profile", **KW)
    assert np.abs(other.hypothetical - d["profile_hyp"]).max() > 1e-2 * np.abs(d["profile_hyp"]).max()


def test_bpnetlite_counts_equal_tangermeme(bpnetlite):
    model, d = bpnetlite
    X, refs = d["X"].astype(np.float64), d["refs"].astype(np.float64)
    res = fl.deeplift(model, X, refs, target=0, target_layer="counts", **KW)
    close(res.hypothetical, d["counts_hyp"])


def test_profile_presets_need_a_length_axis(bpnetlite):
    model, _ = bpnetlite
    for preset in ("profile", "profile_chrombpnet", "profile_bpnetlite"):
        with pytest.raises(ValueError, match=rf"target={preset!r} needs a target layer with a length axis"):
            fl.deeplift(model, np.zeros((1, 400, 4)), target=preset, target_layer="counts")
    with pytest.raises(ValueError, match=r"target 'profile_chrombpnett': unknown target preset; the presets are "
                                         r"'profile' .*'profile_chrombpnet' .*'profile_bpnetlite' .*'sum'"):
        fl.deeplift(model, np.zeros((1, 400, 4)), target="profile_chrombpnett", target_layer="profile")
