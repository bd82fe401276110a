"""The "profile" and "sum" target presets and several heads (target layers) in one pass."""

import numpy as np
import pytest

import fastlift as fl
from fastlift import layers as L
from fastlift.targets import profile_weights


def bpnet_mini(length=40, strands=1, seed=0):
    """Conv -> residual dilated conv -> profile head (length,) or (length, strands) + counts head."""
    rng = np.random.default_rng(seed)
    x = L.Input((length, 4), name="seq")
    h = L.Activation("relu")(L.Conv1D(rng.normal(size=(7, 4, 8)) * 0.5, rng.normal(size=8) * 0.1,
                                      padding="same", name="conv0")(x))
    c = L.Conv1D(rng.normal(size=(3, 8, 8)) * 0.3, rng.normal(size=8) * 0.1, padding="same", dilation_rate=2,
                 name="dil1")(h)
    h = L.Add(name="res1")([h, L.Activation("relu")(c)])
    prof = L.Conv1D(rng.normal(size=(5, 8, strands)) * 0.3, np.zeros(strands), padding="same", name="prof_conv")(h)
    if strands == 1:
        prof = L.Flatten(name="profile")(prof)
    else:
        prof = L.Activation("linear", name="profile")(prof)
    counts = L.Dense(rng.normal(size=(8, strands)) * 0.3, np.zeros(strands), name="counts")(L.GlobalAvgPool1D()(h))
    return fl.Model(x, [prof, counts], name="bpnet_mini")


def _data(n=6, length=40, k=3, seed=1):
    rng = np.random.default_rng(seed)
    X = np.eye(4)[rng.integers(0, 4, size=(n, length))]
    return X, fl.dinuc_shuffle(X, k, seed=seed).astype(np.float64)


@pytest.mark.parametrize("strands", [1, 2])
def test_profile_equals_explicit_per_example_weights(strands):
    model = bpnet_mini(strands=strands)
    X, refs = _data()
    res = fl.deeplift(model, X, refs, target="profile", target_layer="profile", dtype="float64",
                      hypothetical=True, batch_size=4)
    z = model.predict(X, dtype="float64")[0]
    if strands == 1:
        p = np.exp(z - z.max(1, keepdims=True))
        np.testing.assert_allclose(profile_weights(z), p / p.sum(1, keepdims=True) - 1 / z.shape[1])
    for e in range(len(X)):
        w = profile_weights(z[e:e + 1])[0]
        one = fl.deeplift(model, X[e:e + 1], refs[e:e + 1], target=w, target_layer="profile", dtype="float64",
                          hypothetical=True)
        np.testing.assert_allclose(res.contributions[e], one.contributions[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(res.hypothetical[e], one.hypothetical[0], rtol=1e-12, atol=1e-14)
        # the BPNet quantity: Σ softmax(z)·(z - mean z), softmax taken from x and held constant
        zr = model.predict(refs[e], dtype="float64")[0]
        sm = profile_weights(z[e:e + 1])[0] + 1 / z.shape[1]
        d_target = np.mean([(sm * ((z[e] - z[e].mean(0)) - (zr[k] - zr[k].mean(0)))).sum() for k in range(3)])
        np.testing.assert_allclose(res.contributions[e].sum(), d_target, rtol=1e-9)
    assert np.abs(res.deltas).max() < 1e-10
    # projected hypothetical = contributions summed over the bases
    np.testing.assert_allclose((res.hypothetical * X).sum(-1), res.contributions.sum(-1), atol=1e-12)


def test_profile_does_not_depend_on_batch_size_float32():
    model = bpnet_mini()
    X, refs = _data(n=7)
    a = fl.deeplift(model, X, refs, target="profile", batch_size=1)
    b = fl.deeplift(model, X, refs, target="profile", batch_size=7)
    np.testing.assert_array_equal(a.contributions, b.contributions)


def test_several_heads_in_one_pass():
    model = bpnet_mini()
    X, refs = _data()
    both = fl.deeplift(model, X, refs, target=["profile", 0], target_layer=["profile", "counts"], dtype="float64",
                       hypothetical=True, batch_size=4)
    assert both.contributions.shape == (2,) + X.shape and both.deltas.shape == (2, len(X))
    assert both.target_layer == ["profile", "counts"]
    prof = fl.deeplift(model, X, refs, target="profile", target_layer="profile", dtype="float64", hypothetical=True)
    counts = fl.deeplift(model, X, refs, target=0, target_layer="counts", dtype="float64", hypothetical=True)
    np.testing.assert_array_equal(both.contributions[0], prof.contributions)
    np.testing.assert_array_equal(both.contributions[1], counts.contributions)
    np.testing.assert_array_equal(both.hypothetical[1], counts.hypothetical)
    assert np.abs(both.deltas).max() < 1e-10
    # one target broadcast to every layer; and a list of targets on one layer mixing presets and indices
    same = fl.deeplift(model, X, refs, target_layer=["counts", "counts"], dtype="float64")
    np.testing.assert_array_equal(same.contributions[0], counts.contributions)
    mixed = fl.deeplift(model, X, refs, target=["profile", 3], target_layer="profile", dtype="float64")
    np.testing.assert_array_equal(mixed.contributions[0], prof.contributions)
    assert mixed.target_layer == "profile"


def test_sum_preset_and_gradient_methods_with_profile():
    model = bpnet_mini(strands=2)
    X, refs = _data()
    s = fl.deeplift(model, X, refs, target="sum", target_layer="counts", dtype="float64")
    w = fl.deeplift(model, X, refs, target=np.ones(2), target_layer="counts", dtype="float64")
    np.testing.assert_array_equal(s.contributions, w.contributions)
    z = model.predict(X, dtype="float64")[0]
    for method, kw in [("gradient", {}), ("integrated_gradients", {"references": refs, "steps": 4})]:
        res = fl.attribute(model, X, method, target="profile", target_layer="profile", dtype="float64", **kw)
        for e in (0, 3):
            kw_e = dict(kw, references=refs[e:e + 1]) if kw else {}
            one = fl.attribute(model, X[e:e + 1], method, target=profile_weights(z[e:e + 1])[0],
                               target_layer="profile", dtype="float64", **kw_e)
            np.testing.assert_allclose(res.contributions[e], one.contributions[0], rtol=1e-12, atol=1e-14)


def test_target_errors():
    model = bpnet_mini()
    X, refs = _data(n=2)
    with pytest.raises(ValueError, match=r"target must be one target per layer \(a list of 2\)"):
        fl.deeplift(model, X, refs, target=[0, 0, 0], target_layer=["profile", "counts"])
    with pytest.raises(ValueError, match=r"'profile' needs a target layer with a length axis.*shape \(1,\)"):
        fl.deeplift(model, X, refs, target="profile", target_layer="counts")
    with pytest.raises(ValueError, match=r"target\[1\] must be in \[0, 1\)"):
        fl.deeplift(model, X, refs, target=["profile", 4], target_layer=["profile", "counts"])
    with pytest.raises(TypeError, match="target_layer must be"):
        fl.deeplift(model, X, refs, target_layer=[])
    with pytest.raises(ValueError, match="unknown target preset"):
        fl.deeplift(model, X, refs, target="softmax")
