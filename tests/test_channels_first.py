"""Channels-first models (PyTorch/ONNX layout, (N, 4, L)): hypothetical scores and generated
references work along the channel axis the model declares, giving the transposes of what the
same network computes on channels-last input."""

import numpy as np
import pytest

import fastlift as fl
from fastlift import layers as L


def _pair(rng, length=16, shape_cf=None):
    """The same network twice: channels-last (N, L, 4) and channels-first (N, 4, L)."""
    k1, b1 = rng.normal(size=(5, 4, 6)) * 0.5, rng.normal(size=6) * 0.1
    k2, b2 = rng.normal(size=(6 * length, 2)) * 0.2, rng.normal(size=2) * 0.1

    def head(h):
        h = L.Activation("relu")(L.Conv1D(k1, b1, padding="same")(h))
        return L.Dense(k2, b2, name="out")(L.Flatten()(h))

    x = L.Input((length, 4), name="seq")
    last = fl.Model(x, head(x))
    shape_cf = shape_cf or (4, length)
    x_cf = L.Input(shape_cf, name="seq")
    h = x_cf if len(shape_cf) == 2 else L.Reshape((4, length))(x_cf)
    first = fl.Model(x_cf, head(L.Permute((2, 1))(h)), input_layout="channels_first")
    return last, first


def _onehot(rng, n, length):
    return np.eye(4)[rng.integers(0, 4, size=(n, length))]


@pytest.mark.parametrize("references", ["dinuc", "shuffle", "flat", "array"])
def test_hypothetical_and_generated_references_follow_the_channel_axis(references):
    rng = np.random.default_rng(0)
    last, first = _pair(rng)
    X = _onehot(rng, 3, 16)
    refs = {"dinuc": fl.references.dinuc_shuffle(4), "shuffle": fl.references.shuffle(3),
            "flat": fl.references.flat((0.1, 0.2, 0.3, 0.4)), "array": _onehot(rng, 3 * 2, 16).reshape(3, 2, 16, 4)}
    r_last = refs[references]
    r_first = r_last.transpose(0, 1, 3, 2) if references == "array" else r_last
    a = fl.deeplift(last, X, r_last, hypothetical=True, dtype="float64", seed=5)
    b = fl.deeplift(first, X.transpose(0, 2, 1), r_first, hypothetical=True, dtype="float64", seed=5)
    np.testing.assert_allclose(b.hypothetical, a.hypothetical.transpose(0, 2, 1), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b.contributions, a.contributions.transpose(0, 2, 1), rtol=1e-12, atol=1e-14)
    assert np.abs(b.deltas).max() < 1e-10


def test_integrated_gradients_hypothetical_follows_the_channel_axis():
    rng = np.random.default_rng(1)
    last, first = _pair(rng)
    X = _onehot(rng, 2, 16)
    R = _onehot(rng, 2, 16)
    a = fl.attribute(last, X, method="integrated_gradients", references=R, hypothetical=True, dtype="float64")
    b = fl.attribute(first, X.transpose(0, 2, 1), method="integrated_gradients", references=R.transpose(0, 2, 1),
                     hypothetical=True, dtype="float64")
    np.testing.assert_allclose(b.hypothetical, a.hypothetical.transpose(0, 2, 1), rtol=1e-12, atol=1e-14)


def test_shuffled_references_for_a_channels_first_image_of_one_row():
    """(N, 4, 1, L) inputs (2-D convolutions over one row, as Beluga's) shuffle along L."""
    rng = np.random.default_rng(2)
    last, first = _pair(rng, shape_cf=(4, 1, 16))
    X = _onehot(rng, 2, 16)
    a = fl.deeplift(last, X, fl.references.dinuc_shuffle(3), hypothetical=True, dtype="float64", seed=1)
    b = fl.deeplift(first, X.transpose(0, 2, 1)[:, :, None, :], fl.references.dinuc_shuffle(3), hypothetical=True,
                    dtype="float64", seed=1)
    np.testing.assert_allclose(b.hypothetical[:, :, 0, :], a.hypothetical.transpose(0, 2, 1), rtol=1e-12,
                               atol=1e-14)


def test_shuffling_needs_a_single_position_axis():
    x = L.Input((4, 2, 3))
    model = fl.Model(x, L.Dense(np.ones((3, 1)))(x), input_layout="channels_first")
    X = np.zeros((1, 4, 2, 3))
    X[:, 0] = 1
    with pytest.raises(ValueError, match="one position axis"):
        fl.deeplift(model, X, fl.references.dinuc_shuffle(2))


def test_hypothetical_checks_one_hot_along_the_channel_axis():
    rng = np.random.default_rng(3)
    _, first = _pair(rng, length=4)
    X = np.eye(4)[None]  # one-hot along both axes: fine
    fl.deeplift(first, X, hypothetical=True)
    bad = np.zeros((1, 4, 4))
    bad[0, :, 0] = 1  # four ones at position 0: one-hot along the length, not the channels
    with pytest.raises(ValueError, match="channel axis 1"):
        fl.deeplift(first, bad, hypothetical=True)


def test_flat_references_check_the_channel_count_on_the_channel_axis():
    rng = np.random.default_rng(4)
    _, first = _pair(rng, length=5)
    with pytest.raises(ValueError, match=r"3 values but the input has 4 channels \(first axis"):
        fl.deeplift(first, _onehot(rng, 1, 5).transpose(0, 2, 1), fl.references.flat((0.3, 0.3, 0.4)))
