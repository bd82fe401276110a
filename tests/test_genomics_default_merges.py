"""rule="genomics_default" on residual networks: an activation after a merge, cropping or padding
is resolved by the linear layers that feed it (fastlift and fastlift.compat)."""

import os
import sys

import numpy as np
import pytest
from fixtures.k224_writer import layer, write_functional

import fastlift as fl
from fastlift import layers as L
from fastlift.plan import genomics_default_rule, resolve
from fastlift.rules import Rule

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
from models import bpnet_spec, build_fastlift


def residual_bpnet(seed=0, length=48, filters=6, crop=False):
    """BPNet with a ReLU after each residual Add (as basepairmodels' BPNet), optionally with
    valid convolutions and cropped skips (as ChromBPNet), and a dense head after pooling."""
    rng = np.random.default_rng(seed)
    x = L.Input((length, 4), name="seq")
    h = L.Activation("relu", name="relu0")(L.Conv1D(rng.normal(size=(5, 4, filters)) * 0.5,
                                                    rng.normal(size=filters) * 0.1, padding="same", name="conv0")(x))
    for i in (1, 2):
        c = L.Conv1D(rng.normal(size=(3, filters, filters)) * 0.4, rng.normal(size=filters) * 0.1,
                     padding="valid" if crop else "same", dilation_rate=2**i, name=f"dil{i}")(h)
        skip = L.Cropping1D(2**i, name=f"crop{i}")(h) if crop else h
        h = L.Activation("relu", name=f"add{i}_relu")(L.Add(name=f"add{i}")([skip, c]))
    h = L.ZeroPadding1D(2, name="pad")(h)
    h = L.Activation("relu", name="pad_relu")(h)
    g = L.GlobalAvgPool1D(name="gap")(h)
    d = L.Activation("relu", name="dense_relu")(L.Dense(rng.normal(size=(filters, 5)) * 3, np.zeros(5),
                                                        name="dense0")(g))
    out = L.Dense(rng.normal(size=(5, 1)), np.zeros(1), name="out")(d)
    return fl.Model(x, out, name="residual_bpnet")


@pytest.mark.parametrize("crop", [False, True])
def test_residual_bpnet_resolves_per_activation(crop):
    model = residual_bpnet(crop=crop)
    rules = resolve(model.nodes, Rule.GENOMICS_DEFAULT)
    by_name = {n.name: r for n, r in rules.items() if isinstance(n.layer, L.Activation)}
    assert by_name == {"relu0": Rule.RESCALE, "add1_relu": Rule.RESCALE, "add2_relu": Rule.RESCALE,
                       "pad_relu": Rule.RESCALE, "dense_relu": Rule.REVEAL_CANCEL}


def test_residual_bpnet_scores_use_the_resolved_rules():
    """All convolutional activations -> the rescale numbers; the dense head's ReLU ->
    reveal_cancel, so the mixed model differs from both uniform rules but sums to delta."""
    rng = np.random.default_rng(3)
    X = np.eye(4)[rng.integers(0, 4, size=(3, 48))]
    refs = fl.dinuc_shuffle(X, 4, seed=1).astype(np.float64)
    conv_only = build_fastlift(bpnet_spec(np.random.default_rng(0), length=48))  # bench/models.py's BPNet
    kw = {"dtype": "float64", "device": "numpy"}
    gd = fl.deeplift(conv_only, X, refs, rule="genomics_default", **kw)
    rs = fl.deeplift(conv_only, X, refs, rule="rescale", **kw)
    np.testing.assert_array_equal(gd.contributions, rs.contributions)

    model = residual_bpnet()  # zero references: the dense head's ReLU crosses 0 between x and reference
    gd = fl.deeplift(model, X, None, rule="genomics_default", **kw)
    rs = fl.deeplift(model, X, None, rule="rescale", **kw)
    rc = fl.deeplift(model, X, None, rule="reveal_cancel", **kw)
    assert np.abs(gd.deltas).max() < 1e-10
    assert not np.allclose(gd.contributions, rs.contributions)
    assert not np.allclose(gd.contributions, rc.contributions)


def test_add_of_two_dense_layers_is_reveal_cancel():
    rng = np.random.default_rng(1)
    x = L.Input((6,), name="x")
    a = L.Dense(rng.normal(size=(6, 4)), rng.normal(size=4), name="da")(x)
    b = L.Dense(rng.normal(size=(6, 4)), rng.normal(size=4), name="db")(x)
    relu = L.Activation("relu", name="r")(L.Average(name="avg")([a, L.Subtract(name="sub")([a, b])]))
    fl.Model(x, L.Dense(rng.normal(size=(4, 1)), np.zeros(1))(relu))
    assert genomics_default_rule(relu) is Rule.REVEAL_CANCEL


def test_merge_of_convolution_and_dense_is_a_clear_error():
    rng = np.random.default_rng(2)
    x = L.Input((5, 4), name="x")
    conv = L.Flatten(name="flat_conv")(L.Conv1D(rng.normal(size=(3, 4, 2)), np.zeros(2), padding="same",
                                                name="conv")(x))
    dense = L.Dense(rng.normal(size=(20, 10)), np.zeros(10), name="dense")(L.Flatten(name="flat_x")(x))
    relu = L.Activation("relu", name="mixed_relu")(L.Add(name="add")([conv, dense]))
    model = fl.Model(x, L.Dense(rng.normal(size=(10, 1)), np.zeros(1))(relu))
    with pytest.raises(ValueError, match=r"activation 'mixed_relu' is fed by both convolutions \['conv'\] "
                                         r"\(-> rescale\) and Dense layers \['dense'\]"):
        fl.deeplift(model, np.zeros((1, 5, 4)), rule="genomics_default", device="numpy")


def test_walk_stops_at_other_layers():
    rng = np.random.default_rng(4)
    x = L.Input((8, 4), name="x")
    c = L.Conv1D(rng.normal(size=(3, 4, 2)), np.zeros(2), padding="same", name="conv")(x)
    pooled = L.MaxPool1D(2, name="pool")(c)
    relu = L.Activation("relu", name="r")(L.Add(name="add")([pooled, pooled]))
    fl.Model(x, relu)
    with pytest.raises(ValueError, match=r"activation 'r' follows 'pool' \(MaxPool1D\)"):
        genomics_default_rule(relu)


def _residual_keras(path, second_branch):
    """conv -> relu -> [dilated conv, cropped skip] -> Add -> relu -> GAP -> dense -> relu -> dense,
    as a Keras 2.2.4-layout file; ``second_branch``: "conv" (residual) or "dense" (mixed)."""
    rng = np.random.default_rng(5)
    c0 = layer("Conv1D", "c0", [rng.normal(size=(3, 4, 3)), rng.normal(size=3) * 0.1], inbound=["seq"])
    r0 = layer("Activation", "r0", inbound=["c0"], activation="relu")
    if second_branch == "conv":
        b = layer("Conv1D", "b", [rng.normal(size=(3, 3, 3)), rng.normal(size=3) * 0.1], inbound=["r0"],
                  dilation_rate=[2])
        skip = layer("Cropping1D", "skip", inbound=["r0"], cropping=[2, 2])
    else:
        b = layer("Dense", "b", [rng.normal(size=(3, 3)), rng.normal(size=3) * 0.1], inbound=["r0"])
        skip = layer("Activation", "skip", inbound=["r0"], activation="linear")
    add = layer("Add", "add", inbound=["skip", "b"])
    add_relu = layer("Activation", "add_relu", inbound=["add"], activation="relu")
    gap = layer("GlobalAveragePooling1D", "gap", inbound=["add_relu"])
    d0 = layer("Dense", "d0", [rng.normal(size=(3, 4)), rng.normal(size=4) * 0.1], inbound=["gap"])
    d0_relu = layer("Activation", "d0_relu", inbound=["d0"], activation="relu")
    out = layer("Dense", "out", [rng.normal(size=(4, 1)), np.zeros(1)], inbound=["d0_relu"])
    write_functional(path, {"seq": (12, 4)}, [c0, r0, b, skip, add, add_relu, gap, d0, d0_relu, out], ["out"])


def test_compat_resolves_residual_models(tmp_path):
    """fastlift.compat's DeepLIFT_GenomicsDefault through merges (an extension: the original
    cannot load Add or Cropping1D layers at all); a mix of convolution and dense is refused."""
    from fastlift.compat.conversion import kerasapi_conversion as kc
    from fastlift.compat.layers import NonlinearMxtsMode as MODES

    path = tmp_path / "residual.h5"
    _residual_keras(path, "conv")
    model = kc.convert_model_from_saved_files(str(path), nonlinear_mxts_mode=MODES.DeepLIFT_GenomicsDefault,
                                              verbose=False)
    modes = {name: lay.nonlinear_mxts_mode for name, lay in model.get_name_to_layer().items()
             if getattr(lay, "nonlinear_mxts_mode", None) is not None}
    assert modes == {"r0_0": MODES.Rescale, "add_relu_0": MODES.Rescale, "d0_relu_0": MODES.RevealCancel}
    # the same resolution as fastlift's own rule="genomics_default"
    fl_model = fl.load_model(str(path))
    x = np.eye(4)[np.random.default_rng(0).integers(0, 4, size=(2, 12))]
    ours = fl.deeplift(fl_model, x, rule="genomics_default", dtype="float64", device="numpy").contributions
    func = model.get_target_contribs_func(find_scores_layer_name="seq_0", pre_activation_target_layer_name="out_0")
    theirs = np.array(func(task_idx=0, input_data_list=[x], batch_size=10, progress_update=None))
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)

    mixed = tmp_path / "mixed.h5"
    _residual_keras(mixed, "dense")
    with pytest.raises(RuntimeError, match=r"Unsure how to resolve DeepLIFT_GenomicsDefault for layer add_relu_0: it "
                                           r"is fed by both convolutions and Dense layers"):
        kc.convert_model_from_saved_files(str(mixed), nonlinear_mxts_mode=MODES.DeepLIFT_GenomicsDefault,
                                          verbose=False)
