"""Reverse-complement averaging (``reverse_complement=True``)."""

import numpy as np
import pytest

import fastlift as fl
from fastlift import layers as L
from fastlift.genomics import one_hot_decode, one_hot_encode
from fastlift.revcomp import reverse_complement


def stranded_bpnet(length=32, seed=0):
    """Residual conv net with a two-strand profile head (length, 2) and counts head (2,)."""
    rng = np.random.default_rng(seed)
    x = L.Input((length, 4), name="seq")
    h = L.Activation("relu")(L.Conv1D(rng.normal(size=(5, 4, 6)) * 0.5, rng.normal(size=6) * 0.1, padding="same",
                                      name="conv0")(x))
    c = L.Conv1D(rng.normal(size=(3, 6, 6)) * 0.4, rng.normal(size=6) * 0.1, padding="same", dilation_rate=2,
                 name="dil")(h)
    h = L.Add(name="res")([h, L.Activation("relu")(c)])
    prof = L.Conv1D(rng.normal(size=(5, 6, 2)) * 0.4, np.zeros(2), padding="same", name="profile")(h)
    counts = L.Dense(rng.normal(size=(6, 2)) * 0.4, np.zeros(2), name="counts")(L.GlobalAvgPool1D()(h))
    return fl.Model(x, [prof, counts], name="stranded")


def _data(n=5, length=32, k=3, seed=1):
    rng = np.random.default_rng(seed)
    X = np.eye(4)[rng.integers(0, 4, size=(n, length))]
    return X, fl.dinuc_shuffle(X, k, seed=0).astype(np.float64)


def _rc_refs(refs):
    return reverse_complement(refs)  # (N, K, L, 4): positions and bases of every reference


KW = {"dtype": "float64", "device": "numpy", "hypothetical": True}


def test_reverse_complement_of_one_hot():
    x = one_hot_encode("AACGTN").astype(np.float64)
    assert one_hot_decode(reverse_complement(x)) == "NACGTT"
    np.testing.assert_array_equal(reverse_complement(reverse_complement(x)), x)
    # channels-first (N, 4, L) is the same map on other axes
    cf = reverse_complement(x.T[None], channel_axis=-2, length_axis=-1)
    np.testing.assert_array_equal(cf[0].T, reverse_complement(x))
    with pytest.raises(ValueError, match=r"needs 4 channels"):
        reverse_complement(np.zeros((5, 3)))


@pytest.mark.parametrize("target, layer, swapped", [
    ("profile", "profile", "profile"), ("profile_chrombpnet", "profile", "profile_chrombpnet"),
    ("profile_bpnetlite", "profile", "profile_bpnetlite"), (0, "counts", 1), (1, "counts", 0)])
def test_average_of_the_two_strands(target, layer, swapped):
    """= ½(scores of x + scores of rc(x) with rc(refs) on the swapped target, mapped back)."""
    model = stranded_bpnet()
    X, refs = _data()
    both = fl.deeplift(model, X, refs, target=target, target_layer=layer, reverse_complement=True, **KW)
    fwd = fl.deeplift(model, X, refs, target=target, target_layer=layer, **KW)
    rev = fl.deeplift(model, reverse_complement(X), _rc_refs(refs), target=swapped, target_layer=layer, **KW)
    for name in ("contributions", "multipliers", "hypothetical"):
        want = 0.5 * (getattr(fwd, name) + reverse_complement(getattr(rev, name)))
        np.testing.assert_allclose(getattr(both, name), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(both.deltas, 0.5 * (fwd.deltas + rev.deltas), atol=1e-14)
    if target != "profile_chrombpnet":  # summation-to-delta against the averaged Δ
        assert np.abs(both.deltas).max() < 1e-10


def test_weight_targets_map_positions_and_strands():
    model = stranded_bpnet()
    X, refs = _data()
    w = np.random.default_rng(2).normal(size=(32, 2))
    both = fl.deeplift(model, X, refs, target=w, target_layer="profile", reverse_complement=True, **KW)
    rev = fl.deeplift(model, reverse_complement(X), _rc_refs(refs), target=w[::-1, ::-1], target_layer="profile",
                      **KW)
    fwd = fl.deeplift(model, X, refs, target=w, target_layer="profile", **KW)
    np.testing.assert_allclose(both.contributions, 0.5 * (fwd.contributions + reverse_complement(rev.contributions)),
                               rtol=1e-12, atol=1e-14)
    # strand_swap=False keeps channels (unstranded tasks); a permutation is taken as given
    keep = fl.deeplift(model, X, refs, target=0, target_layer="counts", reverse_complement=True, strand_swap=False,
                       **KW)
    rev0 = fl.deeplift(model, reverse_complement(X), _rc_refs(refs), target=0, target_layer="counts", **KW)
    fwd0 = fl.deeplift(model, X, refs, target=0, target_layer="counts", **KW)
    np.testing.assert_allclose(keep.contributions, 0.5 * (fwd0.contributions + reverse_complement(rev0.contributions)),
                               rtol=1e-12, atol=1e-14)
    perm = fl.deeplift(model, X, refs, target=0, target_layer="counts", reverse_complement=True,
                       strand_swap=[1, 0], **KW)
    default = fl.deeplift(model, X, refs, target=0, target_layer="counts", reverse_complement=True, **KW)
    np.testing.assert_array_equal(perm.contributions, default.contributions)


def test_averaged_scores_are_strand_symmetric():
    """Scoring rc(x) with averaging gives the reverse complement of scoring x with averaging."""
    model = stranded_bpnet()
    X, refs = _data()
    for target, layer in (("profile", "profile"), (0, "counts")):
        a = fl.deeplift(model, X, refs, target=target, target_layer=layer, reverse_complement=True, **KW)
        swapped = target if isinstance(target, str) else 1 - target
        b = fl.deeplift(model, reverse_complement(X), _rc_refs(refs), target=swapped, target_layer=layer,
                        reverse_complement=True, **KW)
        np.testing.assert_allclose(reverse_complement(b.hypothetical), a.hypothetical, rtol=1e-10, atol=1e-13)


def test_generated_references_are_reverse_complemented_with_the_example():
    model = stranded_bpnet()
    X, _ = _data(k=4)
    spec = fl.deeplift(model, X, fl.references.dinuc_shuffle(4), target="profile", target_layer="profile",
                       reverse_complement=True, **KW)
    given = fl.deeplift(model, X, fl.dinuc_shuffle(X, 4, seed=0).astype(np.float64), target="profile",
                        target_layer="profile", reverse_complement=True, **KW)
    np.testing.assert_array_equal(spec.hypothetical, given.hypothetical)


def test_independent_of_batch_size_and_shared_references():
    model = stranded_bpnet()
    X, refs = _data(n=5)
    a = fl.deeplift(model, X, refs, target=["profile", 0], target_layer=["profile", "counts"],
                    reverse_complement=True, batch_size=1, **KW)
    b = fl.deeplift(model, X, refs, target=["profile", 0], target_layer=["profile", "counts"],
                    reverse_complement=True, batch_size=4, **KW)
    np.testing.assert_array_equal(a.hypothetical, b.hypothetical)
    # shared references (one set for all examples) and the session keeps both strands' activations apart
    shared = refs[:1]  # (1, K, L, 4)
    with fl.Explainer(model, target="profile", target_layer="profile", dtype="float64", device="numpy") as ex:
        r1 = ex.deeplift(X, shared, reverse_complement=True)
        plain = ex.deeplift(X, shared)
        r2 = ex.deeplift(X, shared, reverse_complement=True)
    np.testing.assert_array_equal(r1.contributions, r2.contributions)
    one = fl.deeplift(model, X, np.broadcast_to(shared, (5,) + shared.shape[1:]), target="profile",
                      target_layer="profile", reverse_complement=True, dtype="float64", device="numpy")
    np.testing.assert_allclose(r1.contributions, one.contributions, rtol=1e-12, atol=1e-14)
    assert not np.allclose(plain.contributions, r1.contributions)


def test_integrated_gradients_and_float32():
    model = stranded_bpnet()
    X, refs = _data(n=2)
    ig = fl.attribute(model, X, "integrated_gradients", refs, steps=8, target="profile", target_layer="profile",
                      reverse_complement=True, dtype="float64", device="numpy")
    fwd = fl.attribute(model, X, "integrated_gradients", refs, steps=8, target="profile", target_layer="profile",
                       dtype="float64", device="numpy")
    rev = fl.attribute(model, reverse_complement(X), "integrated_gradients", _rc_refs(refs), steps=8,
                       target="profile", target_layer="profile", dtype="float64", device="numpy")
    np.testing.assert_allclose(ig.contributions, 0.5 * (fwd.contributions + reverse_complement(rev.contributions)),
                               rtol=1e-10, atol=1e-13)
    f32 = fl.deeplift(model, X, refs, target="profile", target_layer="profile", reverse_complement=True)
    f64 = fl.deeplift(model, X, refs, target="profile", target_layer="profile", reverse_complement=True,
                      dtype="float64")
    np.testing.assert_allclose(f32.contributions, f64.contributions, rtol=1e-3, atol=1e-5)


def test_channels_first_models():
    """A channels-first model (N, 4, L), as ONNX/PyTorch ones: the same strands, other axes."""
    model = stranded_bpnet()
    x = L.Input((4, 32), name="seq_cf")
    cl = L.Permute((2, 1), name="to_cl")(x)
    outputs = {}
    for node in model.nodes:  # the channels-last model's layers, called again on the permuted input
        if isinstance(node.layer, L.InputLayer):
            outputs[node] = cl
        else:
            outputs[node] = node.layer([outputs[i] for i in node.inputs] if len(node.inputs) > 1
                                       else outputs[node.inputs[0]])
    cf = fl.Model(x, [outputs[o] for o in model.outputs], input_layout="channels_first")
    X, refs = _data()
    want = fl.deeplift(model, X, refs, target="profile", target_layer="profile", reverse_complement=True, **KW)
    got = fl.deeplift(cf, X.transpose(0, 2, 1), refs.transpose(0, 1, 3, 2), target="profile",
                      target_layer="profile_1", reverse_complement=True, **KW)  # the shared layer's 2nd node
    np.testing.assert_allclose(got.hypothetical, want.hypothetical.transpose(0, 2, 1), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"one-hot DNA inputs of shape \(4, length\)"):
        bad = L.Input((5, 32), name="five")
        fl.deeplift(fl.Model(bad, L.Dense(np.ones((160, 1)), np.zeros(1))(L.Flatten()(bad)),
                             input_layout="channels_first"), np.zeros((1, 5, 32)), reverse_complement=True)


def test_bad_input():
    model = stranded_bpnet()
    X, refs = _data(n=2)
    with pytest.raises(ValueError, match=r"reverse_complement=True needs one-hot input X"):
        fl.deeplift(model, X * 0.5, refs, target="profile", target_layer="profile", reverse_complement=True)
    with pytest.raises(ValueError, match=r"reverse_complement=True .* scores the model inputs only"):
        fl.deeplift(model, X, refs, target="profile", target_layer="profile", reverse_complement=True,
                    layers="res")
    x = L.Input((10, 3), name="three")
    three = fl.Model(x, L.Dense(np.ones((30, 1)), np.zeros(1))(L.Flatten()(x)))
    with pytest.raises(ValueError, match=r"reverse_complement=True needs one-hot DNA inputs of shape "
                                         r"\(length, 4\).*'three' has shape \(10, 3\)"):
        fl.deeplift(three, np.eye(3)[np.zeros((1, 10), int)], reverse_complement=True)
    with pytest.raises(TypeError, match=r"reverse_complement must be True or False; got 'yes'"):
        fl.deeplift(model, X, refs, target="profile", target_layer="profile", reverse_complement="yes")
    with pytest.raises(TypeError, match=r"strand_swap must be True"):
        fl.Explainer(model, strand_swap="swap")
    with pytest.raises(ValueError, match=r"strand_swap as a sequence must be a permutation"):
        fl.Explainer(model, strand_swap=[0, 0])
    with pytest.raises(ValueError, match=r"strand_swap \[0, 1, 2\] permutes 3 channels; target layer 'counts' has 2"):
        fl.deeplift(model, X, refs, target=0, target_layer="counts", strand_swap=[0, 1, 2], reverse_complement=True)
    # a flattened profile (one axis of many units) with a unit target: which units are strands is unknown
    xf = L.Input((12, 4), name="s")
    flat = fl.Model(xf, L.Flatten(name="flat")(L.Conv1D(np.ones((3, 4, 1)), np.zeros(1), padding="same")(xf)))
    with pytest.raises(ValueError, match=r"strand_swap=True swaps the two strand channels of target layer 'flat', "
                                         r"but its last axis has 12 channels"):
        fl.deeplift(flat, np.eye(4)[np.zeros((1, 12), int)], target=3, reverse_complement=True)


def _channels_first_twin(length=32, seed=0):
    """One conv net built channels-last and channels-first: the latter's profile head is
    (strands, length), as a PyTorch/ONNX BPNet's."""
    rng = np.random.default_rng(seed)
    k0, k1 = rng.normal(size=(5, 4, 6)) * 0.5, rng.normal(size=(5, 6, 2)) * 0.4
    b0, b1 = rng.normal(size=6) * 0.1, rng.normal(size=2) * 0.1

    def build(fmt):
        x = L.Input((length, 4) if fmt == "channels_last" else (4, length), name="seq")
        h = L.Activation("relu")(L.Conv1D(k0, b0, padding="same", data_format=fmt, name="c0")(x))
        return fl.Model(x, L.Conv1D(k1, b1, padding="same", data_format=fmt, name="profile")(h), input_layout=fmt)
    return build("channels_last"), build("channels_first")


@pytest.mark.parametrize("rc", [False, True])
@pytest.mark.parametrize("target", ["profile", "profile_chrombpnet", "profile_bpnetlite", "weights"])
def test_profile_targets_on_a_channels_first_head(target, rc):
    """A channels-first model's (strands, length) profile head: the presets take their softmax
    along the length (the last axis), and a weight target maps onto the reverse strand with
    positions reversed along that axis and the strands swapped; the scores are the
    channels-last twin's, transposed."""
    cl, cf = _channels_first_twin()
    X, refs = _data()
    w = np.random.default_rng(3).normal(size=(32, 2))
    t_cl, t_cf = (w, w.T) if target == "weights" else (target, target)
    kw = dict(KW, reverse_complement=rc)
    want = fl.deeplift(cl, X, refs, target=t_cl, **kw)
    got = fl.deeplift(cf, X.transpose(0, 2, 1), refs.transpose(0, 1, 3, 2), target=t_cf, **kw)
    np.testing.assert_allclose(got.contributions, want.contributions.transpose(0, 2, 1), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.hypothetical, want.hypothetical.transpose(0, 2, 1), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.deltas, want.deltas, rtol=1e-12, atol=1e-12)


def test_a_channels_first_head_names_its_axes_in_errors():
    _, cf = _channels_first_twin()
    X, refs = _data(n=1)
    Xc = X.transpose(0, 2, 1)
    with pytest.raises(ValueError, match=r"strand_swap \[1, 0, 2\] permutes 3 channels; target layer 'profile' "
                                         r"has 2 on its channel axis 0 \(shape \(2, 32\)\)"):
        fl.deeplift(cf, Xc, target=0, strand_swap=[1, 0, 2], reverse_complement=True)
    x = L.Input((4, 32), name="seq")
    one = fl.Model(x, L.Conv1D(np.ones((3, 4, 2)), np.zeros(2), strides=32, data_format="channels_first",
                               name="p")(x), input_layout="channels_first")  # (2, 1): one position
    with pytest.raises(ValueError, match=r"target='profile' needs a target layer with a length axis \(shape "
                                         r"\(length,\) or \(channels, length\) in a channels-first model\); "
                                         r"'p' has shape \(2, 1\)"):
        fl.Explainer(one, target="profile")
