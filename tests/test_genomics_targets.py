"""The "profile" and "sum" target presets and several heads (target layers) in one pass."""

import numpy as np
import pytest

import fastlift as fl
from fastlift import layers as L
from fastlift.targets import profile_bpnetlite_weights, profile_chrombpnet_weights, profile_weights


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


@pytest.mark.parametrize("preset, make", [("profile_chrombpnet", profile_chrombpnet_weights),
                                          ("profile_bpnetlite", None)])
@pytest.mark.parametrize("method", ["deeplift", "integrated_gradients"])
def test_pair_presets_equal_explicit_weights_per_pair(preset, make, method):
    """A preset whose weights depend on the reference: with one reference per call, the result is
    that of the explicit weights of that pair (per integrated-gradient step too)."""
    model = bpnet_mini(strands=2)
    X, refs = _data(n=3, k=2)
    kw = {"dtype": "float64", "target_layer": "profile", **({"steps": 4} if method != "deeplift" else {})}
    res = fl.attribute(model, X, method, refs, target=preset, **kw)
    z = model.predict(X, dtype="float64")[0]
    for e in range(len(X)):
        per_ref = []
        for k in range(2):
            zr = model.predict(refs[e, k:k + 1], dtype="float64")[0]
            if make is not None:
                w = make(z[e:e + 1], zr)[0]
            else:
                w = profile_bpnetlite_weights(z[e:e + 1].reshape(1, -1), zr.reshape(1, -1)).reshape(z.shape[1:])
            per_ref.append(fl.attribute(model, X[e:e + 1], method, refs[e:e + 1, k:k + 1], target=w, **kw))
        np.testing.assert_allclose(res.contributions[e], np.mean([r.contributions[0] for r in per_ref], axis=0),
                                   rtol=1e-10, atol=1e-13)


def test_pair_preset_thresholds():
    """Where a mean-normalised logit l is the same in example and reference: ChromBPNet's rule
    (shap's two-input rule) gives it no multiplier, bpnet-lite's (tangermeme's Rescale) the
    gradient of Σ softmax(l)·l."""
    rng = np.random.default_rng(4)

    def centred(a, axis):
        return a - a.mean(axis=axis, keepdims=True)

    def softmax(a, axis):
        e = np.exp(a - a.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    lx = centred(rng.normal(size=(1, 6, 2)), 1)
    lr = rng.normal(size=(1, 6, 2))
    lr[0, 2, 1] = lx[0, 2, 1]
    others = [i for i in range(6) if i != 2]
    lr[0, others, 1] -= lr[0, :, 1].sum() / 5  # mean 0 again, l_ref[2, 1] == l_x[2, 1]
    lr[0, :, 0] -= lr[0, :, 0].mean()
    w = profile_chrombpnet_weights(lx + 1.3, lr - 0.4)[0]  # logits z = l + a constant per channel
    m = 0.5 * (softmax(lx, 1) + softmax(lr, 1))[0]
    m[2, 1] = 0.0
    np.testing.assert_allclose(w, m - m.mean(0), rtol=1e-12)

    fx = lx.reshape(1, -1)
    fr = rng.normal(size=(1, 12))
    fr[0, 5] = fx[0, 5]
    fr[0, [i for i in range(12) if i != 5]] -= fr[0].sum() / 11
    w = profile_bpnetlite_weights(fx + 0.7, fr - 2.0)[0]
    px, pr = softmax(fx[0], 0), softmax(fr[0], 0)
    d = np.where(np.arange(12) == 5, 1.0, fx[0] - fr[0])
    m = (fx[0] * px - fr[0] * pr) / d
    eps, bump = 1e-6, np.eye(12)[5]
    m[5] = ((softmax(fx[0] + eps * bump, 0) * (fx[0] + eps * bump)).sum()
            - (softmax(fx[0] - eps * bump, 0) * (fx[0] - eps * bump)).sum()) / (2 * eps)
    np.testing.assert_allclose(w, m - m.mean(), rtol=1e-7, atol=1e-10)
