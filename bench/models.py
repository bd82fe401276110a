"""The benchmark models of issue 6, built in fastlift with random weights (seeded)."""

import numpy as np

import fastlift as fl
from fastlift import layers as L


def _w(rng, *shape):
    return rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))


def bpnet_like(rng, length=1000):
    """One-hot 1000 bp, conv 64x21, eight dilated residual convs 64x3, global average pool, dense to 1."""
    x = L.Input((length, 4), name="sequence")
    h = L.Activation("relu")(L.Conv1D(_w(rng, 21, 4, 64), _w(rng, 64), padding="same", name="conv0")(x))
    for i in range(1, 9):
        c = L.Conv1D(_w(rng, 3, 64, 64), _w(rng, 64), padding="same", dilation_rate=2**i, name=f"dil{i}")(h)
        h = L.Add(name=f"res{i}")([h, L.Activation("relu", name=f"relu{i}")(c)])
    y = L.Dense(_w(rng, 64, 1), _w(rng, 1), name="count")(L.GlobalAvgPool1D()(h))
    return fl.Model(x, y, name="bpnet_like")


def basset_like(rng, length=600):
    """600 bp; conv 300x19/maxpool 3, conv 200x11/maxpool 4, conv 200x7/maxpool 4, dense 1000, 1000, 164."""
    x = L.Input((length, 4), name="sequence")
    h = x
    for i, (f, k, p, cin) in enumerate([(300, 19, 3, 4), (200, 11, 4, 300), (200, 7, 4, 200)]):
        h = L.Activation("relu")(L.Conv1D(_w(rng, k, cin, f), _w(rng, f), padding="same", name=f"conv{i}")(h))
        h = L.MaxPool1D(p, name=f"pool{i}")(h)
    h = L.Flatten()(h)
    n = h.shape[0]
    h = L.Activation("relu")(L.Dense(_w(rng, n, 1000), _w(rng, 1000), name="fc1")(h))
    h = L.Activation("relu")(L.Dense(_w(rng, 1000, 1000), _w(rng, 1000), name="fc2")(h))
    y = L.Dense(_w(rng, 1000, 164), _w(rng, 164), name="out")(h)
    return fl.Model(x, y, name="basset_like")


def mlp(rng):
    """784-512-512-10."""
    x = L.Input((784,), name="pixels")
    h = L.Activation("relu")(L.Dense(_w(rng, 784, 512), _w(rng, 512))(x))
    h = L.Activation("relu")(L.Dense(_w(rng, 512, 512), _w(rng, 512))(h))
    return fl.Model(x, L.Dense(_w(rng, 512, 10), _w(rng, 10), name="logits")(h), name="mlp")
