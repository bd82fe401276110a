"""Every kind of bad input gets a ValueError/TypeError naming the argument, what was
expected and what was found; nothing reaches a kernel unchecked."""

import numpy as np
import pytest

import fastlift as fl
from fastlift import layers as L


@pytest.fixture
def model(rng):
    x = L.Input((10, 4), name="seq")
    h = L.Activation("relu", name="act")(L.Conv1D(rng.normal(size=(3, 4, 2)), name="conv")(x))
    y = L.Dense(rng.normal(size=(16, 3)), name="dense")(L.Flatten(name="flat")(h))
    return fl.Model(x, y)


@pytest.fixture
def two_input_model(rng):
    a, b = L.Input((3,), name="a"), L.Input((2,), name="b")
    y = L.Dense(rng.normal(size=(5, 1)), name="out")(L.Concatenate()([a, b]))
    return fl.Model([a, b], y)


X = np.zeros((2, 10, 4))


def run(model, X=X, refs=None, **kw):
    kw.setdefault("device", "numpy")
    return fl.deeplift(model, X, refs, **kw)


@pytest.mark.parametrize("bad,err,match", [
    (np.zeros((2, 10, 5)), ValueError, r"X must have shape \(n_examples, 10, 4\); got \(2, 10, 5\)"),
    (np.zeros((10, 4)), ValueError, r"X must have shape \(n_examples, 10, 4\); got \(10, 4\)"),
    (np.array([["a"] * 4] * 10)[None], TypeError, r"X must hold real numbers .* got dtype <U1"),
    (np.zeros((2, 10, 4), dtype=complex), TypeError, r"X must hold real numbers .* complex128"),
    (np.zeros((2, 10, 4), dtype=object), TypeError, r"X must hold real numbers .* object"),
    ("ACGT", TypeError, r"X must be an array of numbers; got a str"),
    ([np.zeros((2, 10, 4)), np.zeros((2, 10, 4))], ValueError, r"X must hold 1 array\(s\), one per model input"),
])
def test_bad_X(model, bad, err, match):
    with pytest.raises(err, match=match):
        run(model, bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_X_and_references(model, value):
    bad = X.copy()
    bad[1, 3, 2] = value
    with pytest.raises(ValueError, match=r"X contains 1 NaN or Inf"):
        run(model, bad)
    with pytest.raises(ValueError, match=r"references contains 1 NaN or Inf"):
        run(model, X, bad)


@pytest.mark.parametrize("device", ["numpy", "cpu"])
def test_values_beyond_float32_are_refused_after_the_cast(model, device):
    """1e300 is finite in float64 but inf in float32: checked in the compute dtype, not as given."""
    big = X.copy()
    big[0, 1, 2] = 1e300
    with pytest.raises(ValueError, match=r"X has 1 value\(s\) beyond the float32 range \(largest magnitude 1e\+300"):
        run(model, big, device=device)
    with pytest.raises(ValueError, match=r"references has 1 value\(s\) beyond the float32 range"):
        run(model, X, -big, device=device)
    with pytest.raises(ValueError, match=r"references \(returned by the reference callable\) has 1 value"):
        run(model, X, lambda x, rng: -big[:1, None], device=device)
    with pytest.raises(ValueError, match=r"X has 1 value\(s\) beyond the float32 range"):
        model.predict(big, device=device)
    res = run(model, big, -big, dtype="float64", device=device)  # float64 holds them
    assert np.all(np.isfinite(res.deltas))


@pytest.mark.parametrize("device", ["numpy", "cpu"])
def test_weights_beyond_float32_are_refused_naming_the_layer(rng, device):
    x = L.Input((5,), name="x")
    h = L.Activation("leaky_relu", alpha=1e308, name="lrelu")(L.Dense(rng.normal(size=(5, 5)), name="h")(x))
    model = fl.Model(x, L.Dense(rng.normal(size=(5, 1)), name="out")(h))
    with pytest.raises(ValueError, match=r"layer 'lrelu': weight 'alpha' has 1 value\(s\) beyond the float32 range"):
        fl.deeplift(model, np.ones((2, 5)), device=device)
    kernel = rng.normal(size=(5, 1))
    kernel[3, 0] = -1e39
    model = fl.Model(x, L.Dense(kernel, name="out")(x))
    with pytest.raises(ValueError, match=r"layer 'out': weight 'kernel' has 1 value\(s\) beyond the float32 range"):
        fl.attribute(model, np.ones((2, 5)), "gradient", device=device)
    assert np.isfinite(fl.attribute(model, np.ones((2, 5)), "gradient", device=device, dtype="float64")
                       .contributions).all()


@pytest.mark.parametrize("shape", [(3, 10, 4), (2, 10, 3), (2, 2, 9, 4), (3, 2, 10, 4), (10, 4), (1, 1, 1, 1, 4)])
def test_references_that_fit_neither_form(model, shape):
    with pytest.raises(ValueError, match=r"references must broadcast to X's shape \(2, 10, 4\).*got " +
                       str(shape).replace("(", r"\(").replace(")", r"\)")):
        run(model, X, np.zeros(shape))


def test_reference_forms_that_fit(model):
    for shape in [(1, 10, 4), (1, 1, 4), (2, 10, 4), (2, 3, 10, 4), (1, 3, 10, 4), (2, 1, 4)]:
        assert run(model, X, np.zeros(shape)).contributions.shape == (2, 10, 4)


def test_bad_callable_references(model):
    with pytest.raises(ValueError, match=r"reference callable must return shape \(1, K, 10, 4\).*got \(1, 10, 4\)"):
        run(model, X, lambda x, r: x)
    with pytest.raises(TypeError, match=r"returned by the reference callable\) must be an array of numbers"):
        run(model, X, lambda x, r: "no")


@pytest.mark.parametrize("target,err,match", [
    (3, ValueError, r"target must be in \[0, 3\) for target layer 'dense' with output shape \(3,\); got 3"),
    (-1, ValueError, r"target must be in \[0, 3\).*got -1"),
    ([0, 5], ValueError, r"target\[1\] must be in \[0, 3\).*got 5"),
    ([], ValueError, r"target list must not be empty"),
    (1.5, TypeError, r"target must be an array of numbers|target as an array"),
    (True, TypeError, r"target must be an int index; got True"),
    (np.ones(4), ValueError, r"target as an array must have the target layer's shape \(3,\).*got \(4,\)"),
    ("profile_", ValueError, r"target 'profile_': unknown target preset; the presets are 'profile'"),
])
def test_bad_target(model, target, err, match):
    with pytest.raises((err, TypeError, ValueError), match=match):
        run(model, target=target)


def test_unknown_layer_names(model):
    with pytest.raises(ValueError, match=r"unknown layer name 'nope'; the model has \['seq', 'conv', 'act'"):
        run(model, target_layer="nope")
    with pytest.raises(ValueError, match=r"unknown layer name 'nope'"):
        run(model, layers=["conv", "nope"])
    with pytest.raises(TypeError, match=r"layers must be None, a layer name or a non-empty list"):
        run(model, layers=[])
    with pytest.raises(ValueError, match=r"target_layer 'seq' is a model input"):
        run(model, target_layer="seq")


@pytest.mark.parametrize("kw,err,match", [
    ({"rule": "deeplift"}, ValueError, r"rule must be one of \('gradient', 'rescale'"),
    ({"max_pool": "mean"}, ValueError, r"max_pool must be one of \('exact', 'gradient'\); got 'mean'"),
    ({"dtype": "float16"}, ValueError, r"dtype must be 'float32' or 'float64'; got 'float16'"),
    ({"dtype": "int32"}, ValueError, r"dtype must be 'float32' or 'float64'"),
    ({"device": "tpu"}, ValueError, r"device must be one of \('auto', 'cpu', 'cuda', 'numpy'\); got 'tpu'"),
    ({"batch_size": 0}, ValueError, r"batch_size must be a positive int or None; got 0"),
    ({"batch_size": 2.5}, ValueError, r"batch_size must be a positive int or None; got 2.5"),
    ({"n_threads": 0}, ValueError, r"n_threads must be None or an int in \[1, 4096\]; got 0"),
    ({"n_threads": 2**31}, ValueError, r"n_threads must be None or an int in \[1, 4096\]; got 2147483648"),
    ({"n_threads": 10**12}, ValueError, r"n_threads must be None or an int in \[1, 4096\]; got 1000000000000"),
    ({"n_threads": 2.0}, ValueError, r"n_threads must be None or an int in \[1, 4096\]; got 2.0"),
    ({"n_threads": True}, ValueError, r"n_threads must be None or an int in \[1, 4096\]; got True"),
    ({"dtype": None}, ValueError, r"dtype must be 'float32' or 'float64'; got None"),
    ({"seed": -1}, ValueError, r"seed must be a non-negative int or None; got -1"),
])
def test_bad_options(model, kw, err, match):
    with pytest.raises(err, match=match):
        run(model, **kw)


@pytest.mark.parametrize("device", ["numpy", "cpu"])
def test_numpy_ints_are_accepted_wherever_ints_are(model, device):
    base = run(model, device=device)
    res = run(model, device=device, n_threads=np.int64(2), batch_size=np.int32(1), seed=np.uint8(3))
    np.testing.assert_array_equal(base.contributions, res.contributions)
    np.testing.assert_array_equal(fl.dinuc_shuffle(np.eye(4)[[0, 1, 2, 3, 0]], 2, n_threads=np.int64(1)),
                                  fl.dinuc_shuffle(np.eye(4)[[0, 1, 2, 3, 0]], 2, n_threads=1))
    with pytest.raises(ValueError, match=r"n_threads must be None or an int in \[1, 4096\]; got 2147483648"):
        fl.dinuc_shuffle(np.eye(4)[[0, 1, 2, 3, 0]], 2, n_threads=2**31)


def test_cuda_without_gpu_says_why(model):
    with pytest.raises(RuntimeError, match=r"device='cuda'"):
        run(model, device="cuda")


def test_bad_model_argument():
    with pytest.raises(TypeError, match=r"model must be a fastlift.Model; got str"):
        fl.deeplift("model.h5", X)


def test_multi_input_errors(two_input_model):
    m = two_input_model
    a, b = np.zeros((2, 3)), np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"the model has 2 inputs \['a', 'b'\]: pass X as a list or dict"):
        fl.deeplift(m, a, device="numpy")
    with pytest.raises(ValueError, match=r"X as a dict must have exactly the keys \['a', 'b'\]; missing \['b'\]"):
        fl.deeplift(m, {"a": a}, device="numpy")
    with pytest.raises(ValueError, match=r"same number of examples; got \[2, 3\]"):
        fl.deeplift(m, [a, np.zeros((3, 2))], device="numpy")
    with pytest.raises(ValueError, match=r"X\['b'\] must have shape \(n_examples, 2\); got \(2, 4\)"):
        fl.deeplift(m, [a, np.zeros((2, 4))], device="numpy")
    with pytest.raises(ValueError, match=r"references must hold 2 entries, one per input"):
        fl.deeplift(m, [a, b], [None], device="numpy")
    with pytest.raises(ValueError, match=r"references as a dict must be keyed by input names.*\['c'\]"):
        fl.deeplift(m, [a, b], {"c": a}, device="numpy")
    with pytest.raises(ValueError, match=r"same number of references K \(or 1\)"):
        fl.deeplift(m, [a, b], [np.zeros((2, 2, 3)), np.zeros((2, 3, 2))], device="numpy")
    res = fl.deeplift(m, {"a": a + 1, "b": b}, {"b": np.ones((1, 2))}, device="numpy")
    assert set(res.contributions) == {"a", "b"}


def test_hypothetical_needs_one_hot_inputs(model, rng):
    with pytest.raises(ValueError, match=r"hypothetical=True needs one-hot input.*'seq' is not"):
        run(model, rng.normal(size=(2, 10, 4)), hypothetical=True)
    with pytest.raises(ValueError, match=r"hypothetical=True scores model inputs only; 'conv' is a Conv1D"):
        run(model, layers="conv", hypothetical=True)


def test_attribute_argument_errors(model):
    with pytest.raises(ValueError, match=r"method must be one of \('deeplift', 'gradient'"):
        fl.attribute(model, X, method="lime")
    with pytest.raises(ValueError, match=r"steps must be a positive int; got 0"):
        fl.attribute(model, X, method="integrated_gradients", steps=0, device="numpy")
    with pytest.raises(ValueError, match=r"method='gradient' takes no references"):
        fl.attribute(model, X, method="gradient", references=np.zeros((1, 10, 4)))
    with pytest.raises(ValueError, match=r"rule only applies to method='deeplift'"):
        fl.attribute(model, X, method="gradient", rule="rescale")
    with pytest.raises(ValueError, match=r"scores the model inputs only"):
        fl.attribute(model, X, method="integrated_gradients", layers="conv")


def test_genomics_default_unresolvable(rng):
    x = L.Input((4,), name="x")
    model = fl.Model(x, L.Dense(rng.normal(size=(4, 1)))(L.Activation("relu", name="r")(x)))
    with pytest.raises(ValueError, match=r"activation 'r' follows 'x' \(InputLayer\)"):
        fl.deeplift(model, np.ones((1, 4)), rule="genomics_default", device="numpy")


def test_single_input_references_as_a_one_entry_list(model, rng):
    """[R] is the per-input list form (like X=[X]), never an array of K = N shared references."""
    x = rng.normal(size=(3, 10, 4))
    r = rng.normal(size=(3, 10, 4))
    plain = run(model, x, r, dtype="float64")
    listed = run(model, [x], [r], dtype="float64")
    np.testing.assert_array_equal(plain.contributions, listed.contributions)
    nested = run(model, x, [[[0.1, 0.2, 0.3, 0.4]]], dtype="float64")  # a nested list of numbers is an array
    flat = run(model, x, np.array([[[0.1, 0.2, 0.3, 0.4]]]), dtype="float64")
    np.testing.assert_array_equal(nested.contributions, flat.contributions)
    with pytest.raises(ValueError, match=r"references must hold 1 entries, one per input"):
        run(model, x, [r, r])


@pytest.fixture
def two_gb(monkeypatch):
    """A fixed memory budget, so the refusals below do not depend on this machine's memory."""
    from fastlift import _validate

    monkeypatch.setattr(_validate, "available_memory", lambda: 2 * 2**30)


def mlp(rng):
    x = L.Input((20,), name="x")
    return fl.Model(x, L.Dense(rng.normal(size=(20, 3)), name="d")(L.Activation("relu", name="r")(
        L.Dense(rng.normal(size=(20, 20)), name="h")(x))))


def test_calls_that_cannot_fit_in_memory_are_refused_before_allocating(rng, two_gb):
    model, X = mlp(rng), rng.normal(size=(4, 20))
    with pytest.raises(ValueError, match=r"steps=100000000 with 1 reference\(s\) per example \(100000000 points "
                                         r"per example\); use fewer steps or references: needs about 38\.4 GB of "
                                         r"memory, more than the 2\.0 GB available"):
        fl.attribute(model, X, "integrated_gradients", steps=10**8)
    with pytest.raises(ValueError, match=r"steps=1000000 with 20 reference\(s\) per example"):
        fl.attribute(model, X, "integrated_gradients", steps=10**6, references=np.zeros((1, 20, 20)))
    with pytest.raises(ValueError, match=r"references: 10000000 per example; use fewer references: needs about"):
        fl.deeplift(model, X[:1], np.broadcast_to(np.zeros(20), (1, 10**7, 20)))
    with pytest.raises(ValueError, match=r"dinuc_shuffle: n=1000000000 shuffles of 1 sequence\(s\) of length 5; "
                                         r"ask for fewer shuffles.*needs about 153\.7 GB"):
        fl.dinuc_shuffle(np.eye(4)[[0, 1, 2, 3, 0]], 10**9)
    # what fits still runs
    assert fl.attribute(model, X, "integrated_gradients", steps=1000).contributions.shape == (4, 20)


def test_absurd_sizes_are_refused_on_any_machine(rng):
    with pytest.raises(ValueError, match=r"steps=1000000000000 .* needs about .* TB of memory"):
        fl.attribute(mlp(rng), rng.normal(size=(2, 20)), "integrated_gradients", steps=10**12)
    with pytest.raises(ValueError, match=r"dinuc_shuffle: n=1000000000 shuffles .* needs about 30\.0 TB"):
        fl.dinuc_shuffle(np.eye(4)[np.zeros(1000, int)], 10**9)


def test_available_memory_is_read_from_the_system():
    from fastlift import _validate

    avail = _validate.available_memory()
    assert avail is None or 0 <= avail < 2**50
