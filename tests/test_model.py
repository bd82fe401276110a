"""The model graph: construction, shape inference, validation, forward values.

Forward values are checked against direct loops written here from the Keras/TF
definitions (an oracle independent of fastlift's im2col/pooling code).
"""

import itertools

import numpy as np
import pytest

import fastlift as fl
from fastlift import layers as L
from fastlift.backends.ops import Ops


def naive_conv1d(x, k, b, stride, dilation, padding):
    """x (n, L, C), k (w, C, F): TF conv1d semantics."""
    n, length, _ = x.shape
    w = k.shape[0]
    span = (w - 1) * dilation + 1
    if padding == "valid":
        out, pad = (length - span) // stride + 1, 0
    elif padding == "same":
        out = -(-length // stride)
        pad = max((out - 1) * stride + span - length, 0) // 2
    else:
        out, pad = -(-length // stride), (w - 1) * dilation
    y = np.zeros((n, out, k.shape[2])) + b
    for i, t in itertools.product(range(out), range(w)):
        src = i * stride - pad + t * dilation
        if 0 <= src < length:
            y[:, i] += x[:, src] @ k[t]
    return y


def naive_pool2d(x, size, stride, padding, op):
    n, h, w, c = x.shape
    if padding == "valid":
        oh, ow, pt, pl = (h - size[0]) // stride[0] + 1, (w - size[1]) // stride[1] + 1, 0, 0
    else:
        oh, ow = -(-h // stride[0]), -(-w // stride[1])
        pt = max((oh - 1) * stride[0] + size[0] - h, 0) // 2
        pl = max((ow - 1) * stride[1] + size[1] - w, 0) // 2
    y = np.zeros((n, oh, ow, c))
    for i, j in itertools.product(range(oh), range(ow)):
        r0, c0 = i * stride[0] - pt, j * stride[1] - pl
        win = x[:, max(r0, 0):r0 + size[0], max(c0, 0):c0 + size[1]]
        y[:, i, j] = win.max(axis=(1, 2)) if op == "max" else win.mean(axis=(1, 2))
    return y


@pytest.mark.parametrize("stride,dilation,padding", [(1, 1, "valid"), (2, 1, "valid"), (1, 2, "same"),
                                                     (3, 1, "same"), (1, 3, "causal"), (2, 2, "causal")])
def test_conv1d_forward(stride, dilation, padding, device, rng):
    k, b = rng.normal(size=(4, 3, 5)), rng.normal(size=5)
    x = rng.normal(size=(2, 13, 3))
    inp = L.Input((13, 3))
    m = fl.Model(inp, L.Conv1D(k, b, strides=stride, dilation_rate=dilation, padding=padding)(inp))
    np.testing.assert_allclose(m.predict(x, dtype="float64", device=device),
                               naive_conv1d(x, k, b, stride, dilation, padding), rtol=1e-12, atol=1e-12)
    # channels-first gives the same numbers, transposed
    inp = L.Input((3, 13))
    m = fl.Model(inp, L.Conv1D(k, b, strides=stride, dilation_rate=dilation, padding=padding,
                               data_format="channels_first")(inp))
    np.testing.assert_allclose(m.predict(x.transpose(0, 2, 1), dtype="float64", device=device),
                               naive_conv1d(x, k, b, stride, dilation, padding).transpose(0, 2, 1), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("strides,dilation,padding", [((1, 1), (1, 1), "valid"), ((2, 1), (1, 1), "same"),
                                                      ((1, 1), (2, 1), "same"), ((2, 3), (1, 1), "valid")])
def test_conv2d_forward(strides, dilation, padding, device, rng):
    k, b = rng.normal(size=(3, 2, 2, 4)), rng.normal(size=4)
    x = rng.normal(size=(2, 7, 6, 2))
    inp = L.Input((7, 6, 2))
    y = fl.Model(inp, L.Conv2D(k, b, strides=strides, dilation_rate=dilation, padding=padding)(inp)).predict(
        x, dtype="float64", device=device)
    # 2-D conv = sum over kernel rows of 1-D convs along the width
    n, h, w, _ = x.shape
    span = (k.shape[0] - 1) * dilation[0] + 1
    if padding == "valid":
        oh, pt = (h - span) // strides[0] + 1, 0
    else:
        oh = -(-h // strides[0])
        pt = max((oh - 1) * strides[0] + span - h, 0) // 2
    expected = np.zeros_like(y)
    for i in range(oh):
        for a in range(k.shape[0]):
            src = i * strides[0] - pt + a * dilation[0]
            if 0 <= src < h:
                expected[:, i] += naive_conv1d(x[:, src], k[a], 0, strides[1], dilation[1], padding)
    np.testing.assert_allclose(y, expected + b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size,stride,padding", [((2, 2), (2, 2), "valid"), ((3, 2), (1, 2), "same"),
                                                 ((2, 3), (2, 1), "same"), ((3, 3), (2, 2), "valid")])
@pytest.mark.parametrize("op", ["max", "avg"])
def test_pool2d_forward(size, stride, padding, op, device, rng):
    x = rng.normal(size=(2, 7, 6, 3))
    inp = L.Input((7, 6, 3))
    layer = (L.MaxPool2D if op == "max" else L.AvgPool2D)(size, strides=stride, padding=padding)
    y = fl.Model(inp, layer(inp)).predict(x, dtype="float64", device=device)
    np.testing.assert_allclose(y, naive_pool2d(x, size, stride, padding, op), rtol=1e-12)


def test_global_pools_merges_and_reshapes(device, rng):
    a = L.Input((5, 3), name="a")
    b = L.Input((5, 3), name="b")
    gap, gmp = L.GlobalAvgPool1D()(a), L.GlobalMaxPool1D()(b)
    outs = [gap, gmp, L.Add()([a, b]), L.Subtract()([a, b]), L.Average()([a, b]), L.Concatenate(axis=1)([a, b]),
            L.Permute((2, 1))(a), L.Reshape((-1, 5))(a), L.Flatten()(a), L.Cropping1D((1, 2))(a),
            L.ZeroPadding1D((2, 0))(a), L.Dropout(0.3)(a)]
    m = fl.Model([a, b], outs)
    xa, xb = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3))
    got = m.predict([xa, xb], dtype="float64", device=device)
    expected = [xa.mean(1), xb.max(1), xa + xb, xa - xb, (xa + xb) / 2, np.concatenate([xa, xb], 1),
                xa.transpose(0, 2, 1), xa.reshape(2, 3, 5), xa.reshape(2, 15), xa[:, 1:3],
                np.pad(xa, ((0, 0), (2, 0), (0, 0))), xa]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12)


def test_activations_forward(rng):
    from scipy.special import erf

    x = np.linspace(-8, 8, 101)[None]
    sig = 1 / (1 + np.exp(-x))
    expected = {
        "linear": x, "relu": np.maximum(x, 0), "relu6": np.clip(x, 0, 6), "leaky_relu": np.where(x > 0, x, 0.3 * x),
        "elu": np.where(x > 0, x, np.exp(x) - 1), "sigmoid": sig, "hard_sigmoid": np.clip(0.2 * x + 0.5, 0, 1),
        "tanh": np.tanh(x), "softplus": np.log1p(np.exp(x)), "softsign": x / (1 + np.abs(x)), "swish": x * sig,
        "silu": x * sig, "gelu": 0.5 * x * (1 + erf(x / np.sqrt(2))), "exponential": np.exp(x),
        "selu": 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * (np.exp(x) - 1)),
        "gelu_tanh": 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    }
    assert set(expected) | {"softmax"} == set(L.ACTIVATIONS)
    for name, want in expected.items():
        inp = L.Input((101,))
        got = fl.Model(inp, L.Activation(name)(inp)).predict(x, dtype="float64", device="numpy")
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300, err_msg=name)
    inp = L.Input((101,))
    soft = fl.Model(inp, L.Softmax()(inp)).predict(x, dtype="float64", device="numpy")
    np.testing.assert_allclose(soft, np.exp(x) / np.exp(x).sum(), rtol=1e-12)


def test_batchnorm_and_prelu_forward(rng):
    g, b, mu, var = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3), rng.uniform(1, 2, 3)
    alpha = rng.uniform(0, 1, size=(1, 3))
    inp = L.Input((4, 3))
    bn = L.BatchNormalization(g, b, mu, var, epsilon=0.01, axis=[2])  # tf.keras saves axis as a list
    m = fl.Model(inp, L.PReLU(alpha)(bn(inp)))
    x = rng.normal(size=(2, 4, 3))
    z = g * (x - mu) / np.sqrt(var + 0.01) + b
    np.testing.assert_allclose(m.predict(x, dtype="float64", device="numpy"), np.where(z > 0, z, alpha * z),
                               rtol=1e-12)


def test_shared_layer_and_names(rng):
    conv = L.Conv1D(rng.normal(size=(3, 4, 2)), name="shared")
    a, b = L.Input((10, 4), name="a"), L.Input((12, 4), name="b")
    ya, yb = conv(a), conv(b)
    assert (ya.name, yb.name) == ("shared", "shared_1")
    assert (ya.shape, yb.shape) == ((8, 2), (10, 2))
    m = fl.Model([a, b], [ya, yb])
    assert m.layer_names == ["a", "shared", "b", "shared_1"]
    xa, xb = rng.normal(size=(1, 10, 4)), rng.normal(size=(1, 12, 4))
    out_a, out_b = m.predict([xa, xb], dtype="float64", device="numpy")
    np.testing.assert_allclose(out_b[:, :8], fl.Model(b, conv(b)).predict(xb, dtype="float64")[:, :8])
    lines = []
    assert m.summary(print_fn=lines.append) is None
    assert len(lines) == 1 + len(m.nodes) and "shared_1" in lines[-1]


def test_summary_prints_like_keras(rng, capsys):
    x = L.Input((10, 4), name="x")
    m = fl.Model(x, L.Dense(np.ones((2, 1)), name="out")(L.GlobalAvgPool1D()(L.Conv1D(rng.normal(size=(3, 4, 2)))(x))))
    m.summary()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Model ") and len(out) == 1 + len(m.nodes)
    assert [line.split()[0] for line in out[1:]] == m.layer_names


def test_automatic_layer_names_are_keras_snake_case():
    from fastlift.layers.base import snake_case

    assert [snake_case(c) for c in ("Conv1D", "GlobalAvgPool1D", "GlobalAveragePooling2D", "BatchNormalization",
                                    "PReLU", "ZeroPadding1D", "Dense")] == [
        "conv1d", "global_avg_pool1d", "global_average_pooling2d", "batch_normalization", "p_re_lu",
        "zero_padding1d", "dense"]
    layer = L.GlobalMaxPool1D()
    assert layer.name.split("_")[:3] == ["global", "max", "pool1d"]


def test_graph_validation(rng):
    x = L.Input((4,), name="x")
    h = L.Dense(np.eye(4), name="h")(x)
    y = L.Dense(np.eye(4), name="y")(h)
    h.inputs = (y,)  # rewire into a cycle
    with pytest.raises(ValueError, match=r"the graph has a cycle through"):
        fl.Model(x, y)
    x2 = L.Input((4,), name="x2")
    z = L.Add()([x, x2])
    with pytest.raises(ValueError, match=r"depend on input 'x2', which is not in the model's inputs \['x'\]"):
        fl.Model(x, z)
    with pytest.raises(ValueError, match=r"input 'x2' is not connected to any output"):
        fl.Model([x, x2], L.Dense(np.eye(4))(x))
    with pytest.raises(TypeError, match=r"outputs must be a Node or a non-empty list of Nodes"):
        fl.Model(x, "y")
    dup = L.Input((4,), name="dup")
    with pytest.raises(ValueError, match=r"two nodes are named 'dup'"):
        fl.Model(dup, L.Dense(np.eye(4), name="dup")(dup))


@pytest.mark.parametrize("build,match", [
    (lambda x: L.Dense(np.zeros((3, 2)))(x), r"Dense kernel expects 3 input features; input shape is \(5, 4\)"),
    (lambda x: L.Conv1D(np.zeros((9, 4, 2)))(x), r"window 9 \(dilation 1\) does not fit input size 5"),
    (lambda x: L.Conv1D(np.zeros((3, 2, 2)))(x), r"kernel expects 2 input channels"),
    (lambda x: L.Conv1D(np.zeros((3, 4, 2)), padding="full")(x), r"padding must be one of"),
    (lambda x: L.Conv2D(np.zeros((3, 3, 4, 2)))(x), r"expects inputs of 3 dimensions"),
    (lambda x: L.MaxPool1D(2, padding="causal")(x), r"padding must be 'valid' or 'same', or \(before, after\) pairs; got 'causal'"),
    (lambda x: L.Add()([x, L.Input((5, 3))]), r"needs inputs of one shape"),
    (lambda x: L.Add()(x), r"merges 2 or more inputs; got 1"),
    (lambda x: L.Reshape((3, 3))(x), r"cannot reshape \(5, 4\)"),
    (lambda x: L.Permute((1, 1))(x), r"dims must permute 1..2"),
    (lambda x: L.Cropping1D((3, 3))(x), r"leaves nothing"),
    (lambda x: L.Concatenate(axis=1)([x, L.Input((5, 3))]), r"inputs must agree except on axis 1"),
    (lambda x: L.Activation("mish")(x), r"activation must be one of"),
    (lambda x: L.Activation("relu", alpha=0.1)(x), r"alpha is not a parameter of relu"),
    (lambda x: L.PReLU(np.zeros((3,)))(x), r"alpha of shape \(3,\) does not broadcast"),
    (lambda x: L.Dense(np.array([[np.nan]]))(x), r"kernel contains NaN or Inf"),
    (lambda x: L.Dense(np.zeros((4, 2)), bias=np.zeros(3))(x), r"bias must have shape \(2,\); got \(3,\)"),
    (lambda x: L.Dense("w")(x), r"kernel must be numeric"),
    (lambda x: L.BatchNormalization(moving_mean=np.zeros(3), moving_variance=np.ones(3))(x),
     r"3 channels in the weights but axis -1 of \(5, 4\) has 4"),
    (lambda x: L.Dense(np.zeros((4, 1)))([x, x]), r"takes 1 input\(s\); got 2"),
    (lambda x: L.Dense(np.zeros((4, 1)))("x"), r"must be a Node or a list of Nodes"),
])
def test_layer_construction_errors(build, match):
    x = L.Input((5, 4))
    with pytest.raises((ValueError, TypeError), match=match):
        build(x)


def test_softmax_only_at_the_end(rng):
    x = L.Input((3,))
    s = L.Softmax()(x)
    with pytest.raises(NotImplementedError, match=r"softmax only as a final layer"):
        fl.Model(x, L.Dense(np.eye(3))(s))
    m = fl.Model(x, L.Softmax()(L.Dense(rng.normal(size=(3, 2)), name="logits")(x)))
    assert m.default_target().name == "logits"
    res = fl.deeplift(m, rng.normal(size=(2, 3)), device="numpy")
    assert res.target_layer == "logits"
    with pytest.raises(ValueError, match=r"is a softmax output; target its input"):
        fl.deeplift(m, rng.normal(size=(2, 3)), target_layer=m.outputs[0].name, device="numpy")


def test_predict_input_forms_and_batches(rng):
    a, b = L.Input((3,), name="a"), L.Input((2,), name="b")
    m = fl.Model([a, b], L.Dense(rng.normal(size=(5, 2)))(L.Concatenate()([a, b])))
    xa, xb = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    full = m.predict([xa, xb], dtype="float64")
    np.testing.assert_array_equal(m.predict({"b": xb, "a": xa}, dtype="float64"), full)
    np.testing.assert_allclose(m.predict([xa, xb], batch_size=3, dtype="float64"), full, rtol=1e-14)
    assert m.predict([xa, xb]).dtype == np.float32


def test_weights_are_read_only_and_replacing_one_is_seen_by_the_next_run(rng):
    k = rng.standard_normal((5, 3))
    dense = L.Dense(k, np.zeros(3), name="d")
    x = L.Input((5,), name="x")
    model = fl.Model(x, dense(x))
    with pytest.raises(ValueError, match="read-only"):
        dense.weights["kernel"][0, 0] = 1.0
    X = rng.standard_normal((4, 5)).astype(np.float32)
    for device in ("cpu", "numpy"):
        first = fl.attribute(model, X, "gradient", device=device).contributions
        np.testing.assert_allclose(first, np.broadcast_to(k[:, 0], (4, 5)), rtol=1e-6)
    # Runs keep float32 copies of the weights on the layer; a new array must replace them.
    dense.weights["kernel"] = L.base.as_weight(2 * k, "kernel", "d")
    for device in ("cpu", "numpy"):
        again = fl.attribute(model, X, "gradient", device=device).contributions
        np.testing.assert_allclose(again, 2 * first, rtol=1e-6)


def test_a_session_reuses_shared_reference_activations_for_the_same_rows(rng):
    k = rng.standard_normal((5, 3))
    dense = L.Dense(k, rng.standard_normal(3), name="d")
    x = L.Input((5,), name="x")
    model = fl.Model(x, L.Activation("relu", name="r")(dense(x)))
    X = rng.standard_normal((6, 5)).astype(np.float32)
    background = rng.standard_normal((1, 3, 5)).astype(np.float32)  # 3 rows shared by every example
    with fl.Explainer(model, device="cpu") as ex:
        first = ex.deeplift(X, background)
        assert len(ex._shared_acts._items) == 0  # rows seen once are not kept
        again = ex.deeplift(X, background)  # seen again: kept from now on
        assert len(ex._shared_acts._items) == 1
        third = ex.deeplift(X, background)  # served from the session's memo
        for later in (again, third):
            np.testing.assert_array_equal(later.contributions, first.contributions)
            np.testing.assert_array_equal(later.deltas, first.deltas)
        ex.deeplift(X)
        zeros = ex.deeplift(X)  # other rows: their own entry
        assert len(ex._shared_acts._items) == 2
        assert not np.array_equal(zeros.contributions, first.contributions)
        np.testing.assert_array_equal(fl.deeplift(model, X, background, device="cpu").contributions,
                                      first.contributions)
    assert ex._shared_acts is None  # dropped at close
    # nothing is kept on the model: a replaced weight is used by the next session
    assert "_shared_ref_acts" not in model.__dict__
    dense.weights["bias"] = L.base.as_weight(np.zeros(3), "bias", "d")
    fresh = fl.deeplift(model, X, background, device="cpu")
    assert not np.array_equal(fresh.deltas, first.deltas)


def _residual_model(rng):
    x = L.Input((12, 3), name="x")
    z = L.Conv1D(rng.standard_normal((3, 3, 3)), rng.standard_normal(3), padding="same", name="conv")(x)
    h = L.Add(name="res")([x, L.Activation("relu", name="relu")(z)])
    y = L.Dense(rng.standard_normal((36, 2)), rng.standard_normal(2), name="out")(L.Flatten(name="flat")(h))
    return fl.Model(x, y)


def test_forward_keep_drops_other_activations_after_their_last_reader(rng):
    from fastlift.backends import get_ops
    from fastlift.model import WeightCache

    model = _residual_model(rng)
    ops = get_ops("cpu", 1)
    xs = [rng.standard_normal((4, 12, 3)).astype(np.float32)]
    full = model.forward(ops, xs, WeightCache(ops, np.dtype(np.float32)))
    conv = model.get_node("conv")
    kept = model.forward(ops, xs, WeightCache(ops, np.dtype(np.float32)), keep={conv})
    # the output has no reader and is always kept; the input, relu, res and flat are dropped
    assert set(kept) == {conv, model.outputs[0]}
    for node, a in kept.items():
        np.testing.assert_array_equal(a, full[node])
    # `given` activations are used, and dropped too when not kept
    given = {conv: full[conv] + 1}
    again = model.forward(ops, xs, WeightCache(ops, np.dtype(np.float32)), keep=set(), given=given)
    assert set(again) == {model.outputs[0]}
    assert not np.array_equal(again[model.outputs[0]], full[model.outputs[0]])


def test_gradient_reads_name_what_the_gradient_rules_read(rng):
    """Only activations' and max-pools' inputs are read by gradient rules; linear layers, merges and
    reshapes read none, and a layer that does not say keeps its inputs and itself."""
    model = _residual_model(rng)
    by = model.get_node
    assert by("relu").layer.gradient_reads(by("relu")) == (by("conv"),)
    for name in ("conv", "res", "flat", "out"):
        assert by(name).layer.gradient_reads(by(name)) == ()
    x = L.Input((8, 2), name="x")
    pool = L.MaxPool1D(2, name="mp")(x)
    avg = L.AvgPool1D(2, name="ap")(x)
    assert pool.layer.gradient_reads(pool) == (x,) and avg.layer.gradient_reads(avg) == ()

    class Square(L.base.Layer):
        def output_shape(self, shapes):
            return shapes[0]

    sq = Square(name="sq")(x)
    assert sq.layer.gradient_reads(sq) == (sq, x)


def test_integrated_gradients_leaves_the_shared_reference_memo_complete(rng):
    """IG forwards its points keeping only what its rules read; the session's activations of shared
    reference rows must stay complete for a DeepLIFT call that reuses them."""
    x = L.Input((5,), name="x")
    bn = L.BatchNormalization(rng.uniform(0.5, 2, 5), rng.standard_normal(5), rng.standard_normal(5),
                              rng.uniform(0.5, 2, 5), name="bn")(x)  # no affine prefix: one joint forward
    h = L.Activation("relu", name="r")(L.Dense(rng.standard_normal((5, 4)), rng.standard_normal(4), name="d")(bn))
    model = fl.Model(x, L.Dense(rng.standard_normal((4, 1)), np.zeros(1), name="o")(h))
    X = rng.standard_normal((6, 5)).astype(np.float32)
    background = rng.standard_normal((1, 3, 5)).astype(np.float32)
    with fl.Explainer(model, device="cpu") as ex:
        for _ in range(2):  # rows are kept from their second call on
            ex.attribute(X, "integrated_gradients", background, steps=4)
        assert len(ex._shared_acts._items) == 1
        after = ex.deeplift(X, background)
    np.testing.assert_array_equal(after.contributions, fl.deeplift(model, X, background, device="cpu").contributions)


def fused_forward(model, ops, xs, cache, keep, given=None):
    """`Model.forward` through the program `fastlift.fuse` plans for ``ops`` (as the engine runs it)."""
    from fastlift.fuse import forward_steps

    steps = forward_steps(model, keep, frozenset(given or ()), ops.fused_ops)
    return model.forward(ops, xs, cache, keep=keep, given=given, steps=steps)


@pytest.mark.parametrize("act_first", [False, True])
def test_forward_keep_fuses_an_activation_into_the_add_that_alone_reads_it(act_first, rng, monkeypatch):
    from fastlift.backends import get_ops
    from fastlift.model import WeightCache

    x = L.Input((12, 3), name="x")
    z = L.Conv1D(rng.standard_normal((3, 3, 3)), rng.standard_normal(3), padding="same", name="conv")(x)
    a = L.Activation("gelu", name="act")(z)
    h = L.Add(name="res")([a, x] if act_first else [x, a])
    model = fl.Model(x, L.Dense(rng.standard_normal((36, 2)), np.zeros(2), name="out")(L.Flatten(name="flat")(h)))
    ops = get_ops("cpu", 1)
    xs = [rng.standard_normal((5, 12, 3)).astype(np.float32)]
    cache = WeightCache(ops, np.dtype(np.float32))
    full = model.forward(ops, xs, cache)
    calls = []
    monkeypatch.setattr(type(ops), "add_activation",
                        lambda self, *args: calls.append(1) or Ops.add_activation(self, *args))
    # keep=set(): not even the activation's input is kept, yet it is read when the Add runs
    for keep in (set(), {model.get_node("res")}):
        got = fused_forward(model, ops, xs, cache, keep)
        assert model.get_node("act") not in got and model.get_node("conv") not in got
        np.testing.assert_array_equal(got[model.outputs[0]], full[model.outputs[0]])
        for node in keep:
            np.testing.assert_array_equal(got[node], full[node])
    assert len(calls) == 2
    calls.clear()
    model.forward(ops, xs, cache, keep=set())  # the plain program never fuses
    assert not calls
    # kept, or given, the activation is stored and the Add is a plain add
    got = fused_forward(model, ops, xs, cache, {model.get_node("act")})
    np.testing.assert_array_equal(got[model.get_node("act")], full[model.get_node("act")])
    got = fused_forward(model, ops, xs, cache, set(), given={model.get_node("act"): full[model.get_node("act")]})
    np.testing.assert_array_equal(got[model.outputs[0]], full[model.outputs[0]])
    assert not calls


def test_forward_keep_does_not_fuse_an_activation_read_twice(rng, monkeypatch):
    from fastlift.backends import get_ops
    from fastlift.model import WeightCache

    x = L.Input((6,), name="x")
    a = L.Activation("relu", name="act")(L.Dense(rng.standard_normal((6, 6)), np.zeros(6), name="d")(x))
    y = L.Add(name="res")([x, a])
    model = fl.Model(x, [y, L.Dense(rng.standard_normal((6, 1)), np.zeros(1), name="side")(a)])
    ops = get_ops("cpu", 1)
    monkeypatch.setattr(type(ops), "add_activation", lambda self, *args: pytest.fail("fused"))
    cache = WeightCache(ops, np.dtype(np.float32))
    xs = [rng.standard_normal((3, 6)).astype(np.float32)]
    got = fused_forward(model, ops, xs, cache, set())
    np.testing.assert_array_equal(got[y], model.forward(ops, xs, cache)[y])


def _relu_residual_stack(rng, length, channels, scale):
    """Two BPNet-like blocks, h = h + relu(conv(h)), then global average pooling and a dense unit."""
    x = L.Input((length, channels), name="x")
    h = x
    for i in range(2):
        z = L.Conv1D(rng.standard_normal((3, channels, channels)) / scale, rng.standard_normal(channels) / scale,
                     padding="same", dilation_rate=2, name=f"conv{i}")(h)
        h = L.Add(name=f"res{i}")([h, L.Activation("relu", name=f"relu{i}")(z)])
    dense = L.Dense(rng.standard_normal((channels, 1)), np.zeros(1), name="out")
    return fl.Model(x, dense(L.GlobalAvgPool1D(name="gap")(h)))


@pytest.mark.parametrize("method", ["deeplift", "gradient", "integrated_gradients"])
def test_residual_branches_meet_inside_the_adjoint_with_the_bits_of_an_add(method, rng, monkeypatch):
    """Where a conv's input already has multipliers (a residual's skip branch), the engine sums
    them in the adjoint (`fuse.adjoint_adding`) and, under gradient rules, also gives the ReLU that
    the input's Add reads its gradient there (`fuse.adjoint_adding_relu`): the same bits as the
    plain walk's separate add and gradient rule."""
    from fastlift import fuse

    model = _relu_residual_stack(rng, length=40, channels=16, scale=4)
    X = rng.standard_normal((3, 40, 16)).astype(np.float32)
    kw = {"steps": 8} if method == "integrated_gradients" else {}
    calls = []
    adding, adding_relu = fuse.adjoint_adding, fuse.adjoint_adding_relu
    monkeypatch.setattr(fuse, "adjoint_adding", lambda node, *a: calls.append(("add", node.name)) or adding(node, *a))
    monkeypatch.setattr(fuse, "adjoint_adding_relu",
                        lambda node, *a: calls.append(("relu", node.name)) or adding_relu(node, *a))
    fused = fl.attribute(model, X, method, device="cpu", **kw).contributions
    # conv1's input is res0 = x + relu0: under gradient rules relu0's mask goes in conv1's store
    want = {("add", "conv0"), ("add", "conv1")} if method == "deeplift" else {("add", "conv0"), ("relu", "conv1")}
    assert set(calls) == want
    calls.clear()
    monkeypatch.setattr("fastlift.plan.backward_shortcuts", lambda *a: {})  # the plain walk
    np.testing.assert_array_equal(fused, fl.attribute(model, X, method, device="cpu", **kw).contributions)
    assert not calls


def _cropped_residual_stack(rng, scored_conv=False):
    """Two ChromBPNet-like blocks, h = relu(conv_d(h)) + crop(h) with valid dilated convolutions,
    then global average pooling and a dense unit (with ``scored_conv``, conv1 also feeds it)."""
    x = L.Input((60, 16), name="x")
    h = x
    for i, d in enumerate((2, 4)):
        z = L.Conv1D(rng.standard_normal((3, 16, 16)) / 4, rng.standard_normal(16) / 4, dilation_rate=d,
                     name=f"conv{i}")(h)
        h = L.Add(name=f"res{i}")([L.Activation("relu", name=f"relu{i}")(z), L.Cropping1D((d, d), name=f"crop{i}")(h)])
    pooled = L.GlobalAvgPool1D(name="gap")(h)
    if scored_conv:
        pooled = L.Add(name="both")([pooled, L.GlobalAvgPool1D(name="gap_z")(z)])
    return fl.Model(x, L.Dense(rng.standard_normal((16, 1)), np.zeros(1), name="out")(pooled))


def test_a_blocks_rescale_rule_runs_inside_the_adjoint_with_the_bits_of_the_two_ops(rng, monkeypatch):
    """DeepLIFT on residual blocks whose skip is a crop: each block's ReLU Rescale rule is left to
    the adjoint of its convolution (`fuse.deferred_rescales`, `Ops.conv_adjoint_rescale`), which
    rescales each pair's row as it reads it: the same bits as the rule in a pass of its own. Not
    where the convolution's output has another reader or the backend has no such op."""
    from fastlift.backends.cpu_ops import CpuOps

    X = rng.standard_normal((3, 60, 16)).astype(np.float32)
    refs = rng.standard_normal((3, 4, 60, 16)).astype(np.float32)
    calls = []
    fused_op = CpuOps.conv_adjoint_rescale
    monkeypatch.setattr(CpuOps, "conv_adjoint_rescale", lambda self, *a: calls.append(1) or fused_op(self, *a))

    def run(model):
        calls.clear()
        res = fl.deeplift(model, X, refs, device="cpu", n_threads=2)
        return res.contributions, res.deltas, len(calls)

    model = _cropped_residual_stack(rng)
    fused, deltas, n_fused = run(model)
    assert n_fused == 2  # both blocks (one chunk)
    monkeypatch.setattr(CpuOps, "fused_ops", CpuOps.fused_ops - {"conv_adjoint_rescale"})
    plain, plain_deltas, n_plain = run(model)
    assert n_plain == 0
    np.testing.assert_array_equal(fused, plain)
    np.testing.assert_array_equal(deltas, plain_deltas)
    monkeypatch.undo()
    monkeypatch.setattr(CpuOps, "conv_adjoint_rescale", lambda self, *a: calls.append(1) or fused_op(self, *a))
    assert run(_cropped_residual_stack(rng, scored_conv=True))[2] == 1  # conv1 read twice: block 0 only


def test_a_crop_is_a_view_of_its_input_and_the_residual_add_reads_it(rng):
    """Cropping's forward keeps no copy (its input is kept anyway); the Add that reads it gives the
    bits of an add of the copied crop, and the walk back through it is unchanged."""
    from fastlift.backends import get_ops
    from fastlift.model import WeightCache

    x = L.Input((30, 8), name="x")
    z = L.Activation("relu", name="relu")(L.Conv1D(rng.standard_normal((3, 8, 8)), np.zeros(8), name="conv")(x))
    crop = L.Cropping1D((1, 1), name="crop")(x)
    y = L.Add(name="res")([z, crop])
    model = fl.Model(x, y)
    ops = get_ops("cpu", 2)
    xs = [rng.standard_normal((3, 30, 8)).astype(np.float32)]
    acts = model.forward(ops, xs, WeightCache(ops, np.dtype(np.float32)))
    assert np.shares_memory(acts[crop], acts[x]) and not acts[crop].flags.c_contiguous
    np.testing.assert_array_equal(acts[crop], xs[0][:, 1:29])
    np.testing.assert_array_equal(acts[y], acts[z] + np.ascontiguousarray(xs[0][:, 1:29]))


def test_forward_keep_always_keeps_outputs_even_when_another_layer_reads_them(rng):
    from fastlift.backends import get_ops
    from fastlift.model import WeightCache

    x = L.Input((6,), name="x")
    a = L.Activation("relu", name="act")(L.Dense(rng.standard_normal((6, 6)), np.zeros(6), name="d")(x))
    y = L.Add(name="res")([x, a])
    model = fl.Model(x, [a, y])  # `act` is an output and the Add's only other reader
    ops = get_ops("cpu", 1)
    cache = WeightCache(ops, np.dtype(np.float32))
    xs = [rng.standard_normal((3, 6)).astype(np.float32)]
    full = model.forward(ops, xs, cache)
    got = model.forward(ops, xs, cache, keep=set())
    assert set(got) == {a, y}
    for node in (a, y):
        np.testing.assert_array_equal(got[node], full[node])


def _counted_fused_op(rng, monkeypatch, name):
    """Two residual blocks on the CPU backend, their plain forward, and a list that records each
    call of the backend's fused op ``name``: (model, ops, cache, xs, full, calls)."""
    from fastlift.backends import get_ops
    from fastlift.model import WeightCache

    model = _relu_residual_stack(rng, length=30, channels=40, scale=8)
    ops = get_ops("cpu", 2)
    cache = WeightCache(ops, np.dtype(np.float32))
    xs = [rng.standard_normal((4, 30, 40)).astype(np.float32)]
    full = model.forward(ops, xs, cache)
    calls = []
    real = getattr(type(ops), name)
    monkeypatch.setattr(type(ops), name, lambda self, *a: calls.append("conv") or real(self, *a))
    return model, ops, cache, xs, full, calls


def test_forward_keep_runs_a_relu_residual_block_in_the_convolution(rng, monkeypatch):
    """conv -> ReLU -> Add(skip, ReLU) under keep: the Add comes out of the convolution's pass
    (`Ops.conv_residual_relu`) with the bits of the separate ops; the ReLU is never stored, the
    convolution's output is kept when asked for and dropped otherwise."""
    model, ops, cache, xs, full, calls = _counted_fused_op(rng, monkeypatch, "conv_residual_relu")
    by = model.get_node
    for keep in (set(), {by("conv0"), by("conv1")}):
        calls.clear()
        got = fused_forward(model, ops, xs, cache, keep)
        assert calls == ["conv", "conv"]
        assert set(got) == keep | {model.outputs[0]}
        for node in got:
            np.testing.assert_array_equal(got[node], full[node])
    # everything kept when asked: the block runs op by op
    calls.clear()
    got = fused_forward(model, ops, xs, cache, {by("relu0"), by("relu1")})
    assert calls == []
    np.testing.assert_array_equal(got[model.outputs[0]], full[model.outputs[0]])


def test_forward_keeping_everything_runs_a_relu_residual_block_in_the_convolution(rng, monkeypatch):
    """DeepLIFT's forwards keep every activation. A ReLU that only its block's Add reads comes out of
    the convolution's pass with the Add (`Ops.conv_residual_relu`): z and the Add are stored, the
    ReLU is derived when read (`fuse.DerivedActs`; its Rescale rule recomputes it instead), all with
    the bits of the separate ops. A given ReLU is stored: its block runs op by op."""
    from fastlift.fuse import DerivedActs, derived, forward_steps

    model, ops, cache, xs, full, calls = _counted_fused_op(rng, monkeypatch, "conv_residual_relu")
    by = model.get_node
    got = fused_forward(model, ops, xs, cache, None)
    assert calls == ["conv", "conv"]
    assert set(got) == set(full) - {by("relu0"), by("relu1")}
    for node in got:
        np.testing.assert_array_equal(got[node], full[node])
    derive = derived(model, forward_steps(model, None, frozenset(), ops.fused_ops), frozenset())
    assert derive == {by("relu0"): by("conv0"), by("relu1"): by("conv1")}
    acts = DerivedActs(got, derive, ops, cache)
    assert acts.get(by("relu1")) is None and by("relu1") not in acts  # stored values only
    part = acts.rows(1, 3)
    np.testing.assert_array_equal(acts[by("relu1")], full[by("relu1")])  # derived, then kept
    assert by("relu1") in acts
    np.testing.assert_array_equal(part[by("relu0")], full[by("relu0")][1:3])
    with pytest.raises(KeyError):
        acts[L.Input((3,), name="elsewhere")]
    calls.clear()  # the first ReLU's activations given: only the second block fuses
    got = fused_forward(model, ops, xs, cache, None, given={by("relu0"): full[by("relu0")]})
    assert calls == ["conv"]
    np.testing.assert_array_equal(got[model.outputs[0]], full[model.outputs[0]])
    # a backend without the fused op runs the plain program; with conv_relu only, ReLUs are stored
    assert forward_steps(model, None, frozenset(), frozenset({"add_activation"})) == model.plain_steps
    steps = forward_steps(model, None, frozenset(), frozenset({"add_activation", "conv_relu"}))
    got = model.forward(ops, xs, cache, steps=steps)
    assert set(got) == set(full) and calls == ["conv"]


def test_forward_keeping_everything_runs_a_convolutions_relu_in_its_store(rng, monkeypatch):
    """A ReLU that alone reads a convolution, where no residual Add takes it in (another reader,
    or no conv_residual_relu), comes out of the convolution's pass (`Ops.conv_relu`), both kept,
    with the bits of the separate ops."""
    from fastlift.fuse import forward_steps

    model, ops, cache, xs, full, calls = _counted_fused_op(rng, monkeypatch, "conv_relu")
    steps = forward_steps(model, None, frozenset(), frozenset({"add_activation", "conv_relu"}))
    got = model.forward(ops, xs, cache, steps=steps)
    assert calls == ["conv", "conv"] and set(got) == set(full)
    for node in full:
        np.testing.assert_array_equal(got[node], full[node])
    by = model.get_node
    calls.clear()  # the first ReLU's activations given: its convolution runs alone
    got = model.forward(ops, xs, cache, given={by("relu0"): full[by("relu0")]}, steps=forward_steps(
        model, None, frozenset({by("relu0")}), frozenset({"add_activation", "conv_relu"})))
    assert calls == ["conv"]
    np.testing.assert_array_equal(got[model.outputs[0]], full[model.outputs[0]])


def _bpnet_like(rng, channels=40, length=60):
    """One-hot input, a first convolution and three valid dilated residual blocks whose skip is a
    crop made after the block's convolution (the node order of BPNet's files), then a counts head."""
    x = L.Input((length, 4), name="seq")
    h = L.Activation("relu", name="relu_first")(
        L.Conv1D(rng.standard_normal((5, 4, channels)) / 3, rng.standard_normal(channels) / 3, name="first")(x))
    for i, d in enumerate((1, 2, 4)):
        z = L.Conv1D(rng.standard_normal((3, channels, channels)) / 8, rng.standard_normal(channels) / 8,
                     dilation_rate=d, name=f"conv{i}")(h)
        r = L.Activation("relu", name=f"relu{i}")(z)
        h = L.Add(name=f"res{i}")([r, L.Cropping1D((d, d), name=f"crop{i}")(h)])
    head = L.Dense(rng.standard_normal((channels, 1)), np.zeros(1), name="counts")
    return fl.Model(x, head(L.GlobalAvgPool1D(name="gap")(h)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_deeplift_runs_residual_blocks_in_the_convolution_with_the_same_bits(dtype, rng, monkeypatch):
    """A BPNet-like model under DeepLIFT: every block's ReLU and Add run in its convolution's store
    (the crop read in place, the block moved after it), the ReLUs' Rescale recomputes them, the
    crops' adjoints reach the convolutions' adjoints unwritten (`ZeroPadded`), and the scores are
    those of the op-by-op program, bit for bit."""
    from fastlift.backends.cpu_ops import CpuOps

    model = _bpnet_like(rng)
    X = np.eye(4)[rng.integers(0, 4, size=(3, 60))]
    refs = fl.dinuc_shuffle(X, 4, seed=2)
    calls = []
    real = CpuOps.conv_residual_relu
    monkeypatch.setattr(CpuOps, "conv_residual_relu", lambda self, *a: calls.append(1) or real(self, *a))
    got = fl.deeplift(model, X, refs, device="cpu", dtype=dtype, hypothetical=True, batch_size=2)
    if CpuOps._conv_runs_direct(model.get_node("conv0").layer.geometry((60 - 4, 40)), np.dtype(dtype)):
        assert calls and len(calls) % 3 == 0  # three blocks a forward pass
    monkeypatch.setattr(CpuOps, "fused_ops", CpuOps.fused_ops - {"conv_residual_relu"})
    monkeypatch.setattr(CpuOps, "pads_lazily", False)  # and the crops' adjoints written out
    calls.clear()
    plain = fl.deeplift(model, X, refs, device="cpu", dtype=dtype, hypothetical=True, batch_size=2)
    assert not calls
    np.testing.assert_array_equal(got.contributions, plain.contributions)
    np.testing.assert_array_equal(got.hypothetical, plain.hypothetical)
    np.testing.assert_array_equal(got.deltas, plain.deltas)
    assert np.abs(got.deltas).max() < (1e-3 if dtype == "float32" else 1e-9)


def test_a_crops_unwritten_multipliers_are_written_out_where_no_adjoint_adds_them(rng, monkeypatch):
    """Two crops of one node meet at it (an add of two `ZeroPadded`, written out) and that node is
    scored; the input's crop reaches the first convolution's adjoint unwritten: the bits of a walk
    that pads every crop's adjoint."""
    from fastlift.backends.cpu_ops import CpuOps

    x = L.Input((30, 20), name="x")
    h = L.Activation("relu", name="h")(L.Conv1D(rng.standard_normal((3, 20, 20)) / 4, np.zeros(20), name="c")(x))
    s = L.Add(name="s")([L.Cropping1D((1, 2), name="a")(h), L.Cropping1D((3, 0), name="b")(h)])
    t = L.Conv1D(rng.standard_normal((1, 20, 5)) / 4, np.zeros(5), name="t")(L.Cropping1D((2, 1), name="k")(x))
    out = L.Dense(rng.standard_normal((25 * 20 + 27 * 5, 1)) / 10, np.zeros(1), name="out")(
        L.Concatenate(name="cat", axis=-1)([L.Flatten(name="fs")(s), L.Flatten(name="ft")(t)]))
    model = fl.Model(x, out)
    X = rng.standard_normal((3, 30, 20)).astype(np.float32)
    refs = rng.standard_normal((3, 2, 30, 20)).astype(np.float32)
    got = fl.deeplift(model, X, refs, device="cpu", layers=["x", "h"])
    monkeypatch.setattr(CpuOps, "pads_lazily", False)
    want = fl.deeplift(model, X, refs, device="cpu", layers=["x", "h"])
    for a, b in zip(got.contributions, want.contributions):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got.deltas, want.deltas)


@pytest.mark.parametrize("layer,shape", [
    (L.ZeroPadding1D((2, 1)), (2, 5, 3)), (L.ZeroPadding2D(((1, 2), (0, 3))), (2, 4, 5, 3)),
    (L.Cropping1D((2, 1)), (2, 8, 3)), (L.Cropping2D(((1, 2), (0, 3))), (2, 7, 8, 3))])
def test_padding_zeroes_its_margins_in_reused_memory(layer, shape, rng):
    # _pad allocates without zeroing (only the margins are written): memory the pool hands back
    # holds old values, here NaN, and none may show through
    class Garbage:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def empty(shape, dtype):
            return np.full(shape, np.nan, dtype=dtype)

    ops = Ops()
    ops.xp = Garbage()
    node = layer(L.Input(shape[1:]))
    big = rng.normal(size=shape)
    if layer.crop:  # the adjoint of a crop pads the multipliers
        m = rng.normal(size=(shape[0],) + node.shape)
        (got,) = layer.adjoint(ops, m, node)
        expected = np.zeros(shape)
        expected[(slice(None),) + tuple(slice(a, n - b) for n, (a, b) in zip(shape[1:-1], layer.amounts))] = m
    else:
        got = layer.forward(ops, [big], None)
        expected = np.pad(big, ((0, 0),) + tuple(layer.amounts) + ((0, 0),))
    np.testing.assert_array_equal(got, expected)
