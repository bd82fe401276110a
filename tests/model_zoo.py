"""Random models that together cover every layer type and activation fastlift supports.

Weights are scaled so activations stay in a numerically interesting range (kinks and
saturation both reached) without overflow. Each builder returns ``(model, make_x)``
where ``make_x(rng, n)`` draws inputs for it.
"""

import numpy as np

import fastlift as fl
from fastlift import layers as L


def _w(rng, *shape, scale=None):
    fan_in = int(np.prod(shape[:-1])) or 1
    return rng.normal(size=shape) * (scale if scale is not None else 1.0 / np.sqrt(fan_in))


def _bn(rng, c, axis=-1):
    return L.BatchNormalization(gamma=rng.normal(size=c), beta=rng.normal(size=c) * 0.1,
                                moving_mean=rng.normal(size=c) * 0.1, moving_variance=rng.uniform(0.5, 2, c),
                                epsilon=1e-3, axis=axis)


def genomics_1d(rng):
    """DNA-style 1-D CNN: dilated/causal/strided convs, BN, residual Add, all 1-D pools,
    cropping/padding, global pools, concatenation, dense head."""
    x = L.Input((24, 4), name="seq")
    h = L.Conv1D(_w(rng, 5, 4, 6), _w(rng, 6, scale=0.1), padding="same", name="conv1")(x)
    h = L.Activation("relu", name="relu1")(_bn(rng, 6)(h))
    r = L.Conv1D(_w(rng, 3, 6, 6), _w(rng, 6, scale=0.1), padding="same", dilation_rate=2, name="dil")(h)
    r = L.Activation("elu", name="elu1")(r)
    h = L.Add(name="res")([h, r])
    c = L.Conv1D(_w(rng, 2, 6, 6), None, padding="causal", name="causal")(h)
    c = L.Activation("relu6", name="relu6")(c)
    h = L.MaxPool1D(3, strides=2, padding="same", name="mp")(c)
    h = L.AvgPool1D(2, strides=1, padding="valid", name="ap")(h)
    h = L.Cropping1D((1, 2), name="crop")(h)
    h = L.ZeroPadding1D((2, 1), name="pad")(h)
    h = L.Conv1D(_w(rng, 3, 6, 5), _w(rng, 5, scale=0.1), strides=2, name="strided")(h)
    h = L.Activation("leaky_relu", alpha=0.2, name="lrelu")(h)
    g = L.Concatenate(name="cat")([L.GlobalAvgPool1D(name="gap")(h), L.GlobalMaxPool1D(name="gmp")(h)])
    d = L.Dense(_w(rng, 10, 8), _w(rng, 8, scale=0.1), name="fc1")(g)
    d = L.Dropout(0.5, name="drop")(L.Activation("tanh", name="tanh1")(d))
    y = L.Dense(_w(rng, 8, 3), _w(rng, 3, scale=0.1), name="out")(d)
    y = L.Activation("sigmoid", name="out_act")(y)
    model = fl.Model(x, y, name="genomics_1d")

    def make_x(rng, n):
        return np.eye(4)[rng.integers(0, 4, size=(n, 24))]

    return model, make_x


def conv_2d(rng):
    """2-D CNN: strided same conv, PReLU, 2-D pools, padding/cropping, channels-first conv
    (via Permute), global pools, Average and Subtract merges."""
    x = L.Input((9, 8, 3), name="img")
    h = L.Conv2D(_w(rng, 3, 3, 3, 4), _w(rng, 4, scale=0.1), strides=(2, 1), padding="same", name="c1")(x)
    h = L.PReLU(rng.uniform(0.05, 0.3, size=(1, 1, 4)), name="prelu")(h)
    h = L.MaxPool2D((2, 2), strides=(1, 1), padding="valid", name="mp2")(h)
    h = L.ZeroPadding2D(((1, 0), (0, 1)), name="pad2")(h)
    h = L.AvgPool2D((2, 2), strides=(2, 2), padding="same", name="ap2")(h)
    h = L.Cropping2D(((0, 1), (1, 0)), name="crop2")(h)
    cf = L.Permute((3, 1, 2), name="to_cf")(h)
    cf = L.Conv2D(_w(rng, 2, 2, 4, 4), _w(rng, 4, scale=0.1), padding="same", data_format="channels_first",
                  name="c_cf")(cf)
    cf = L.Activation("softplus", name="softplus")(cf)
    h2 = L.Permute((2, 3, 1), name="to_cl")(cf)
    a = L.Average(name="avg")([h, h2])
    s = L.Subtract(name="sub")([h, L.Activation("swish", name="swish")(h2)])
    g = L.Concatenate(name="cat2")([L.GlobalMaxPool2D(name="gmp2")(a), L.GlobalAvgPool2D(name="gap2")(s)])
    y = L.Dense(_w(rng, 8, 4), _w(rng, 4, scale=0.1), name="logits")(g)
    y = L.Softmax(name="probs")(y)
    model = fl.Model(x, y, name="conv_2d")

    def make_x(rng, n):
        return rng.normal(size=(n, 9, 8, 3))

    return model, make_x


def mlp_two_inputs(rng):
    """Two-input MLP through every remaining activation, Reshape/Flatten, BN on a 2-D axis."""
    a = L.Input((6,), name="a")
    b = L.Input((3, 2), name="b")
    hb = L.Flatten(name="flat_b")(b)
    h = L.Concatenate(name="ab")([a, hb])
    acts = ["gelu", "selu", "softsign", "hard_sigmoid", "gelu_tanh", "sigmoid", "relu", "exponential", "linear"]
    for i, act in enumerate(acts):
        h = L.Dense(_w(rng, 12 if i else 12, 12, scale=0.6), _w(rng, 12, scale=0.2), name=f"d{i}")(h)
        h = L.Activation(act, name=f"{act}_{i}")(h)
    h = L.Reshape((4, 3), name="resh")(h)
    h = _bn(rng, 3, axis=2)(h)
    h = L.Flatten(name="flat")(h)
    y = L.Dense(_w(rng, 12, 2), _w(rng, 2, scale=0.1), name="y")(h)
    model = fl.Model([a, b], y, name="mlp_two_inputs")

    def make_x(rng, n):
        return [rng.normal(size=(n, 6)), rng.normal(size=(n, 3, 2))]

    return model, make_x


def channels_first_1d(rng):
    """Channels-first Conv1D/pools and a Dense applied over the last axis of a 2-D tensor."""
    x = L.Input((3, 11), name="cf_seq")
    h = L.Conv1D(_w(rng, 3, 3, 5), _w(rng, 5, scale=0.1), padding="same", data_format="channels_first",
                 name="cfconv")(x)
    h = L.Activation("relu", name="cfrelu")(h)
    h = L.MaxPool1D(2, data_format="channels_first", name="cfmp")(h)
    h = L.AvgPool1D(2, strides=1, data_format="channels_first", name="cfap")(h)
    h = L.Dense(_w(rng, 4, 3), _w(rng, 3, scale=0.1), name="per_pos")(h)  # over the last axis
    h = L.Activation("tanh", name="cft")(h)
    h = L.Flatten(data_format="channels_first", name="cfflat")(h)
    y = L.Dense(_w(rng, 15, 1), None, name="score")(h)
    model = fl.Model(x, y, name="channels_first_1d")

    def make_x(rng, n):
        return rng.normal(size=(n, 3, 11))

    return model, make_x


def onnx_style(rng):
    """Channels-first one-hot input as PyTorch/ONNX models take it: asymmetric zero padding, BN over
    axis 1, pools with explicit padding, a per-channel ScaleShift with negative factors,
    LogSumExp over the channels and across two heads, and Log after a Dense layer."""
    x = L.Input((4, 20), name="onehot_cf")
    h = L.ZeroPadding1D((1, 2), data_format="channels_first", name="pad_cf")(x)
    h = L.Conv1D(_w(rng, 4, 4, 6), _w(rng, 6, scale=0.1), data_format="channels_first", name="conv_cf")(h)
    h = L.Activation("relu", name="relu_cf")(_bn(rng, 6, axis=1)(h))
    h = L.MaxPool1D(3, strides=2, padding=((1, 1),), data_format="channels_first", name="mp_pad")(h)
    h = L.ScaleShift(rng.normal(size=(6, 1)), rng.normal(size=(6, 1)) * 0.1, name="affine")(h)
    h = L.AvgPool1D(3, strides=2, padding=((1, 1),), data_format="channels_first", name="ap_pad")(h)
    lse = L.LogSumExp(axis=1, keepdims=True, name="lse_channels")(h)
    f = L.Reshape((35,), name="flat_cf")(L.Concatenate(axis=1, name="cat_cf")([h, lse]))
    a = L.Activation("softplus", name="softplus_cf")(L.Dense(_w(rng, 35, 3), None, name="d_a")(f))
    pos = L.Dense(np.abs(_w(rng, 3, 2)), 0.5 + np.abs(_w(rng, 2, scale=0.1)), name="d_pos")(a)
    head_a = L.Log(name="log")(pos)
    head_b = L.Dense(_w(rng, 35, 2), _w(rng, 2, scale=0.1), name="d_b")(f)
    y = L.LogSumExp(name="lse_heads")([head_a, head_b])
    model = fl.Model(x, y, name="onnx_style", input_layout="channels_first")

    def make_x(rng, n):
        return np.eye(4)[rng.integers(0, 4, size=(n, 20))].transpose(0, 2, 1)

    return model, make_x


ZOO = {f.__name__: f for f in (genomics_1d, conv_2d, mlp_two_inputs, channels_first_1d, onnx_style)}
