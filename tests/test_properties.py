"""Properties every attribution must have, on random models covering every layer type.

* summation-to-delta for rescale / reveal_cancel / genomics_default with exact
  max pooling, for zero, random, shuffled, shared and multiple references;
* the gradient rule equals central finite differences;
* integrated gradients converges to summation-to-delta as steps grow;
* results do not depend on batch size or thread count (bitwise);
* several targets in one pass equal separate runs; float32 agrees with float64.
"""

import numpy as np
import pytest
from model_zoo import ZOO

import fastlift as fl

pytestmark = pytest.mark.blas  # .ci/run runs these again under a second BLAS core type

TOL = {"float32": 1e-5, "float64": 1e-10}


def _refs(kind, x, rng, make_x, k=3):
    """References of the given kind for inputs x (array or list)."""
    xs = x if isinstance(x, list) else [x]
    n = xs[0].shape[0]
    out = []
    drawn = make_x(rng, n * k)
    drawn = drawn if isinstance(drawn, list) else [drawn]
    for xi, di in zip(xs, drawn):
        if kind == "zeros":
            out.append(None)
        elif kind == "one_per_example":
            out.append(di[:n])
        elif kind == "multiple":
            out.append(di.reshape((n, k) + xi.shape[1:]))
        elif kind == "shared":
            out.append(di[:k][None])
        elif kind == "shuffled":  # each reference a permutation of its example's positions
            perm = np.stack([rng.permutation(xi.shape[1]) for _ in range(n * k)]).reshape(n, k, -1)
            out.append(np.stack([xi[e][perm[e]] for e in range(n)]))
    if not isinstance(x, list):
        return out[0]
    return None if all(o is None for o in out) else [o if o is not None else np.zeros_like(xi)
                                                     for o, xi in zip(out, xs)]


def _total(contribs):
    parts = contribs if isinstance(contribs, list) else [contribs]
    return sum(p.reshape(p.shape[0], -1).sum(axis=1).astype(np.float64) for p in parts)


# genomics_default resolves every zoo model (conv_2d's swish after a Permute: through it to a convolution)
RULES = ["rescale", "reveal_cancel", "genomics_default"]


CASES = [(m, r) for m in ZOO for r in RULES]


@pytest.mark.parametrize("model_name,rule", CASES)
@pytest.mark.parametrize("ref_kind", ["zeros", "one_per_example", "multiple", "shared", "shuffled"])
def test_summation_to_delta(model_name, rule, ref_kind, dtype):
    rng = np.random.default_rng(7)
    model, make_x = ZOO[model_name](rng)
    x = make_x(rng, 5)
    if ref_kind == "shuffled" and isinstance(x, list):
        pytest.skip("shuffling positions is for single-input sequence models")
    refs = _refs(ref_kind, x, rng, make_x)
    res = fl.deeplift(model, x, refs, rule=rule, dtype=dtype, device="cpu" if _cpu() else "numpy")
    d_out = _total(res.contributions) - res.deltas
    bound = TOL[dtype] * np.maximum(1.0, np.abs(d_out))
    assert np.all(np.abs(res.deltas) <= bound), (np.abs(res.deltas) / bound).max()
    assert np.abs(d_out).max() > 1e-3  # the test is not vacuous: outputs do move


def test_summation_to_delta_numpy_backend(rng):
    model, make_x = ZOO["genomics_1d"](rng)
    x = make_x(rng, 3)
    res = fl.deeplift(model, x, make_x(rng, 6).reshape(3, 2, 24, 4), rule="reveal_cancel", dtype="float64",
                      device="numpy")
    assert np.abs(res.deltas).max() < 1e-10


def test_gradient_max_pool_rule_breaks_summation_with_varying_reference(rng):
    model, make_x = ZOO["genomics_1d"](rng)
    x = make_x(rng, 4)
    refs = make_x(rng, 4)
    exact = fl.deeplift(model, x, refs, dtype="float64", max_pool="exact")
    grad = fl.deeplift(model, x, refs, dtype="float64", max_pool="gradient")
    assert np.abs(exact.deltas).max() < 1e-10
    assert np.abs(grad.deltas).max() > 1e-6


@pytest.mark.parametrize("model_name,layer", [("genomics_1d", "fc1"), ("genomics_1d", "conv1"),
                                              ("mlp_two_inputs", "d3")])
def test_summation_to_delta_at_a_hidden_cut(model_name, layer, rng):
    model, make_x = ZOO[model_name](rng)
    x = make_x(rng, 4)
    res = fl.deeplift(model, x, _refs("one_per_example", x, rng, make_x), layers=layer, dtype="float64",
                      rule="reveal_cancel")
    assert res.contributions.shape == (4,) + model.get_node(layer).shape
    assert np.abs(res.deltas).max() < 1e-10


def _cpu():
    try:
        from fastlift.backends import cpu_ops  # noqa: F401
    except ImportError:
        return False
    return True


def _target_model(model, layer):
    return fl.Model(model.inputs, model.get_node(layer))


@pytest.mark.parametrize("model_name", ["mlp_two_inputs", "conv_2d", "channels_first_1d", "onnx_style"])
def test_gradient_equals_finite_differences(model_name):
    rng = np.random.default_rng(3)
    model, make_x = ZOO[model_name](rng)
    x = make_x(rng, 2)
    xs = x if isinstance(x, list) else [x]
    res = fl.attribute(model, x, method="gradient", target=1 if model_name != "channels_first_1d" else 0,
                       dtype="float64")
    grads = res.contributions if isinstance(res.contributions, list) else [res.contributions]
    f = _target_model(model, res.target_layer)
    unit = 1 if model_name != "channels_first_1d" else 0
    eps = 1e-6
    for k, xk in enumerate(xs):
        fd = np.zeros_like(xk)
        for idx in np.ndindex(xk.shape[1:]):
            plus = [a.copy() for a in xs]
            minus = [a.copy() for a in xs]
            plus[k][(slice(None),) + idx] += eps
            minus[k][(slice(None),) + idx] -= eps
            fp = f.predict(plus if len(xs) > 1 else plus[0], dtype="float64")
            fm = f.predict(minus if len(xs) > 1 else minus[0], dtype="float64")
            fd[(slice(None),) + idx] = (fp.reshape(len(fp), -1)[:, unit] - fm.reshape(len(fm), -1)[:, unit]) / (2 * eps)
        np.testing.assert_allclose(grads[k], fd, rtol=1e-5, atol=1e-7)


def test_integrated_gradients_converges_to_summation_to_delta(rng):
    from fastlift import layers as L

    # a smooth model (no kinks), so the midpoint rule shows its O(1/steps²) convergence
    a, b = L.Input((6,), name="a"), L.Input((3,), name="b")
    h = L.Concatenate()([a, b])
    for i, act in enumerate(["tanh", "softplus", "gelu", "sigmoid"]):
        h = L.Activation(act)(L.Dense(rng.normal(size=(9, 9)) * 0.6, rng.normal(size=9) * 0.2)(h))
    model = fl.Model([a, b], L.Dense(rng.normal(size=(9, 2)))(h))
    x = [rng.normal(size=(3, 6)), rng.normal(size=(3, 3))]
    refs = [rng.normal(size=(3, 6)) * 0.5, rng.normal(size=(3, 3)) * 0.5]
    errors = [np.abs(fl.attribute(model, x, "integrated_gradients", refs, steps=s, dtype="float64").deltas).max()
              for s in (2, 8, 32, 128)]
    assert errors[-1] < 1e-4
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-2] / errors[-1] > 8, errors  # ~16x per 4x steps


def test_integrated_gradients_with_multiple_references_is_their_mean(rng):
    model, make_x = ZOO["channels_first_1d"](rng)
    x = make_x(rng, 2)
    r = make_x(rng, 4).reshape(2, 2, 3, 11)
    both = fl.attribute(model, x, "integrated_gradients", r, steps=5, dtype="float64")
    each = [fl.attribute(model, x, "integrated_gradients", r[:, k], steps=5, dtype="float64") for k in range(2)]
    np.testing.assert_allclose(both.contributions, (each[0].contributions + each[1].contributions) / 2,
                               rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(not _cpu(), reason="needs the CPU extension")
@pytest.mark.parametrize("model_name", list(ZOO))
def test_batch_size_and_thread_count_do_not_change_results(model_name):
    rng = np.random.default_rng(11)
    model, make_x = ZOO[model_name](rng)
    x = make_x(rng, 9)
    refs = _refs("multiple", x, rng, make_x, k=2)
    runs = [fl.deeplift(model, x, refs, rule="reveal_cancel", batch_size=bs, n_threads=t, hypothetical=False)
            for bs, t in [(None, 1), (1, 1), (7, 2), (None, 2), (9, 2)]]
    first = runs[0]
    for other in runs[1:]:
        as_list = lambda c: c if isinstance(c, list) else [c]
        for a, b in zip(as_list(first.contributions), as_list(other.contributions)):
            assert np.array_equal(a, b)
        assert np.array_equal(first.deltas, other.deltas)


def test_several_targets_in_one_pass_equal_separate_runs(rng):
    model, make_x = ZOO["genomics_1d"](rng)
    x = make_x(rng, 4)
    refs = _refs("multiple", x, rng, make_x)
    both = fl.deeplift(model, x, refs, target=[0, 2], dtype="float64")
    assert both.contributions.shape == (2, 4, 24, 4)
    assert both.deltas.shape == (2, 4)
    for i, t in enumerate([0, 2]):
        one = fl.deeplift(model, x, refs, target=t, dtype="float64")
        np.testing.assert_allclose(both.contributions[i], one.contributions, rtol=1e-12, atol=1e-15)
    weights = np.array([0.5, 0.0, -2.0])
    mixed = fl.deeplift(model, x, refs, target=weights, dtype="float64")
    np.testing.assert_allclose(mixed.contributions, 0.5 * both.contributions[0] - 2 * both.contributions[1],
                               rtol=1e-10, atol=1e-12)


def test_float32_agrees_with_float64(rng):
    model, make_x = ZOO["conv_2d"](rng)
    x = make_x(rng, 3)
    refs = _refs("one_per_example", x, rng, make_x)
    r32 = fl.deeplift(model, x, refs, dtype="float32")
    r64 = fl.deeplift(model, x, refs, dtype="float64")
    assert r32.contributions.dtype == np.float32 and r64.contributions.dtype == np.float64
    np.testing.assert_allclose(r32.contributions, r64.contributions, rtol=1e-3, atol=1e-4)


def test_multiple_references_average_single_ones(rng):
    model, make_x = ZOO["genomics_1d"](rng)
    x = make_x(rng, 3)
    r = make_x(rng, 6).reshape(3, 2, 24, 4)
    both = fl.deeplift(model, x, r, dtype="float64")
    each = [fl.deeplift(model, x, r[:, k], dtype="float64") for k in range(2)]
    np.testing.assert_allclose(both.contributions, (each[0].contributions + each[1].contributions) / 2,
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(both.multipliers, (each[0].multipliers + each[1].multipliers) / 2,
                               rtol=1e-12, atol=1e-14)
    shared = fl.deeplift(model, x, r[:1], dtype="float64")  # (1, K, L, 4): the same 2 refs for all
    per = fl.deeplift(model, x, np.broadcast_to(r[:1], r.shape), dtype="float64")
    np.testing.assert_allclose(shared.contributions, per.contributions, rtol=1e-12, atol=1e-14)


def test_hypothetical_projects_to_contributions(rng):
    model, make_x = ZOO["genomics_1d"](rng)
    x = make_x(rng, 4)
    refs = _refs("shuffled", x, rng, make_x)
    res = fl.deeplift(model, x, refs, hypothetical=True, dtype="float64")
    projected = (res.hypothetical * x).sum(axis=-1)
    np.testing.assert_allclose(projected, res.contributions.sum(axis=-1), rtol=1e-10, atol=1e-12)
    assert np.abs(res.hypothetical * (1 - x)).max() > 1e-3  # absent bases carry information


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_sum_has_the_bits_of_numpys_sum(dtype, rng):
    """The hypothetical scores' sum over channels (written out below 8 channels) gives numpy's
    bits, signed zeros included, along either axis and for any count of channels."""
    from fastlift.methods import channel_sum

    for n in range(1, 10):
        p = rng.standard_normal((3, 7, n)).astype(dtype)
        p[0] = -0.0  # all terms -0: numpy's sum is +0
        p[1, :, : n // 2] = 0.0
        for q, axis in ((p, -1), (np.moveaxis(p, -1, 1).copy(), 1)):
            got, want = channel_sum(np, q, axis), q.sum(axis=axis, keepdims=True)
            assert got.shape == want.shape and got.dtype == want.dtype
            assert got.tobytes() == want.tobytes()


def test_callable_references_are_seeded_and_batch_independent(rng):
    model, make_x = ZOO["genomics_1d"](rng)
    x = make_x(rng, 5)

    def shuffle(x_one, r):
        return np.stack([x_one[0][r.permutation(24)] for _ in range(3)])[None]

    a = fl.deeplift(model, x, shuffle, seed=5, batch_size=2, dtype="float64")
    b = fl.deeplift(model, x, shuffle, seed=5, batch_size=5, dtype="float64")
    c = fl.deeplift(model, x, shuffle, seed=6, dtype="float64")
    np.testing.assert_array_equal(a.contributions, b.contributions)
    assert not np.array_equal(a.contributions, c.contributions)
    assert np.abs(a.deltas).max() < 1e-10


def test_gradient_family_relations(rng):
    model, make_x = ZOO["channels_first_1d"](rng)
    x = make_x(rng, 3)
    g = fl.attribute(model, x, "gradient", dtype="float64")
    gx = fl.attribute(model, x, "grad_x_input", dtype="float64")
    np.testing.assert_allclose(gx.contributions, g.contributions * x, rtol=1e-12, atol=1e-14)
    assert g.deltas is None and gx.deltas is not None
    dl_grad = fl.deeplift(model, x, rule="gradient", dtype="float64")
    np.testing.assert_allclose(dl_grad.multipliers, g.multipliers, rtol=1e-12, atol=1e-14)


def test_guided_backprop_matches_hand_computation(rng):
    from fastlift import layers as L

    w1, b1, w2 = rng.normal(size=(5, 7)), rng.normal(size=7), rng.normal(size=(7, 2))
    inp = L.Input((5,))
    model = fl.Model(inp, L.Dense(w2)(L.Activation("relu")(L.Dense(w1, b1)(inp))))
    x = rng.normal(size=(4, 5))
    res = fl.attribute(model, x, "guided_backprop", target=1, dtype="float64")
    z = x @ w1 + b1
    m_hidden = np.broadcast_to(w2[:, 1], z.shape)
    expected = ((m_hidden > 0) * (z > 0) * m_hidden) @ w1.T
    np.testing.assert_allclose(res.contributions, expected, rtol=1e-12)
    plain = fl.attribute(model, x, "gradient", target=1, dtype="float64")
    assert not np.allclose(plain.contributions, expected)


def test_steps_only_apply_to_integrated_gradients(rng, monkeypatch):
    """steps sizes IG's chunks; it must not shrink the chunks of the other methods."""
    from fastlift.explainer import Explainer

    seen = {}
    real = Explainer._call
    monkeypatch.setattr(Explainer, "_call", lambda self, method, *a, **kw: seen.setdefault(method, kw.get("steps", 1))
                        and real(self, method, *a, **kw))
    model, make_x = ZOO["channels_first_1d"](rng)
    x = make_x(rng, 2)
    for method in ("gradient", "grad_x_input", "guided_backprop", "integrated_gradients"):
        fl.attribute(model, x, method, steps=7)
    assert seen == {"gradient": 1, "grad_x_input": 1, "guided_backprop": 1, "integrated_gradients": 7}


def test_global_average_pool_backward_matches_reference_backend(rng):
    model, make_x = ZOO["genomics_1d"](rng)
    x = make_x(rng, 3)
    refs = make_x(rng, 3)
    a = fl.deeplift(model, x, refs, layers="gap", target_layer="fc1", dtype="float64", device="numpy")
    b = fl.deeplift(model, x, refs, layers="gap", target_layer="fc1", dtype="float64", device="cpu")
    np.testing.assert_allclose(a.multipliers, b.multipliers, rtol=1e-12)
    c = fl.deeplift(model, x, refs, layers="lrelu", dtype="float64", device="numpy")
    d = fl.deeplift(model, x, refs, layers="lrelu", dtype="float64", device="cpu")
    np.testing.assert_allclose(c.multipliers, d.multipliers, rtol=1e-12, atol=1e-14)


def test_reference_free_methods_do_not_forward_references(rng, monkeypatch):
    """gradient and guided_backprop never read reference activations, so none are computed."""
    model, make_x = ZOO["channels_first_1d"](rng)
    x = make_x(rng, 3)
    rows = []
    real = fl.Model.forward
    monkeypatch.setattr(fl.Model, "forward", lambda self, ops, xs, cache, keep=None, given=None, steps=None: rows.append(
        len(xs[0])) or real(self, ops, xs, cache, keep, given, steps))
    for method in ("gradient", "guided_backprop"):
        rows.clear()
        fl.attribute(model, x, method)
        assert rows == [3], (method, rows)
    rows.clear()
    fl.attribute(model, x, "grad_x_input")  # needs f(0) for its deltas: the zero reference is forwarded,
    assert rows == [4]  # in the examples' pass (one chunk, rows not seen before: `Chunk.acts`)


@pytest.mark.parametrize("name", list(ZOO))
def test_integrated_gradients_through_the_affine_prefix_equals_the_plain_path(name, monkeypatch):
    # Models whose inputs are read only by Dense/Conv layers run those layers once per pair
    # (integrated_gradients.affine_prefix); the result must equal the per-point computation.
    from fastlift import integrated_gradients

    rng = np.random.default_rng(3)
    model, make_x = ZOO[name](rng)
    x = make_x(rng, 3)
    refs = _refs("one_per_example", x, rng, make_x, k=2)
    kw = {"steps": 7, "dtype": "float64", "hypothetical": not isinstance(x, list) and x.shape[-1] == 4}
    fast = fl.attribute(model, x, "integrated_gradients", refs, **kw)
    monkeypatch.setattr(integrated_gradients, "affine_prefix", lambda model: ())
    plain = fl.attribute(model, x, "integrated_gradients", refs, **kw)
    for f, p in zip(fast.contributions if isinstance(x, list) else [fast.contributions],
                    plain.contributions if isinstance(x, list) else [plain.contributions]):
        np.testing.assert_allclose(f, p, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fast.deltas, plain.deltas, rtol=1e-9, atol=1e-11)
    if kw["hypothetical"]:
        np.testing.assert_allclose(fast.hypothetical, plain.hypothetical, rtol=1e-10, atol=1e-12)


def test_affine_prefix_is_found_only_when_linear_layers_alone_read_the_inputs(monkeypatch):
    from fastlift import integrated_gradients
    from fastlift import layers as L

    rng = np.random.default_rng(0)
    x = L.Input((5,), name="x")
    a = L.Activation("tanh", name="ta")(L.Dense(rng.normal(size=(5, 2)), name="a")(x))
    b = L.Activation("relu", name="rb")(L.Dense(rng.normal(size=(5, 2)), name="b")(x))
    two = fl.Model(x, L.Add(name="s")([a, b]))
    assert [n.name for n in integrated_gradients.affine_prefix(two)] == ["a", "b"]
    X, R = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    fast = fl.attribute(two, X, "integrated_gradients", R, steps=9, dtype="float64").contributions
    monkeypatch.setattr(integrated_gradients, "affine_prefix", lambda model: ())  # both readers' gradients summed
    plain = fl.attribute(two, X, "integrated_gradients", R, steps=9, dtype="float64").contributions
    np.testing.assert_allclose(fast, plain, rtol=1e-12, atol=1e-14)
    skip = fl.Model(x, L.Add(name="s2")([L.Dense(np.ones((5, 5)), name="c")(x), x]))
    assert integrated_gradients.affine_prefix(skip) == ()
