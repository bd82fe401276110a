"""The benchmark models of issue 6 as plain weight specs, built in fastlift (here) and in
PyTorch (`bench/torch_models.py`) from the same numpy arrays.

A spec is ``{"name", "input_shape" (fastlift, channels-last), "layers": [...]}``; each
layer is a dict with a ``kind`` and numpy weights in Keras layout.
"""

import numpy as np

import fastlift as fl
from fastlift import layers as L


def _w(rng, *shape):
    return (rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))).astype(np.float32)


def bpnet_spec(rng, length=1000, filters=64, n_layers=8, name="bpnet_like"):
    """One-hot 1000 bp, conv 64x21, eight dilated residual convs 64x3 (dilation 2..256), global
    average pool, dense to 1."""
    layers = [{"kind": "conv", "kernel": _w(rng, 21, 4, filters), "bias": _w(rng, filters), "padding": "same",
               "dilation": 1, "relu": True}]
    for i in range(1, n_layers + 1):
        layers.append({"kind": "conv", "kernel": _w(rng, 3, filters, filters), "bias": _w(rng, filters),
                       "padding": "same", "dilation": 2**i, "relu": True, "residual": True})
    layers += [{"kind": "gap"},
               {"kind": "dense", "kernel": _w(rng, filters, 1), "bias": _w(rng, 1), "relu": False}]
    return {"name": name, "input_shape": (length, 4), "layers": layers}


def chrombpnet_spec(rng, length=2114, filters=512, n_layers=8):
    """The BPNet-like architecture at ChromBPNet's size: 2114 bp, 512 filters, eight dilated
    residual layers (a single counts-like output)."""
    return bpnet_spec(rng, length, filters, n_layers, name="chrombpnet_like")


def basset_spec(rng, length=600):
    """600 bp; valid convs (as the Kipoi Basset port): 300x19/maxpool 3, 200x11/maxpool 4,
    200x7/maxpool 4, flatten, dense 1000, 1000, 164."""
    layers, n, cin = [], length, 4
    for f, k, p in [(300, 19, 3), (200, 11, 4), (200, 7, 4)]:
        layers.append({"kind": "conv", "kernel": _w(rng, k, cin, f), "bias": _w(rng, f), "padding": "valid",
                       "dilation": 1, "relu": True})
        layers.append({"kind": "maxpool", "size": p})
        n, cin = (n - k + 1) // p, f
    layers.append({"kind": "flatten"})
    width = n * cin
    for units, relu in [(1000, True), (1000, True), (164, False)]:
        layers.append({"kind": "dense", "kernel": _w(rng, width, units), "bias": _w(rng, units), "relu": relu})
        width = units
    return {"name": "basset_like", "input_shape": (length, 4), "layers": layers}


def mlp_spec(rng):
    """784-512-512-10, ReLU."""
    layers = [{"kind": "dense", "kernel": _w(rng, a, b), "bias": _w(rng, b), "relu": b != 10}
              for a, b in [(784, 512), (512, 512), (512, 10)]]
    return {"name": "mlp", "input_shape": (784,), "layers": layers}


def build_fastlift(spec) -> fl.Model:
    x = L.Input(spec["input_shape"], name="input")
    h = x
    for i, layer in enumerate(spec["layers"]):
        kind = layer["kind"]
        if kind == "conv":
            y = L.Conv1D(layer["kernel"], layer["bias"], padding=layer["padding"],
                         dilation_rate=layer["dilation"], name=f"conv{i}")(h)
            if layer["relu"]:
                y = L.Activation("relu", name=f"relu{i}")(y)
            h = L.Add(name=f"res{i}")([h, y]) if layer.get("residual") else y
        elif kind == "maxpool":
            h = L.MaxPool1D(layer["size"], name=f"pool{i}")(h)
        elif kind == "gap":
            h = L.GlobalAvgPool1D(name=f"gap{i}")(h)
        elif kind == "flatten":
            h = L.Flatten(name=f"flatten{i}")(h)
        elif kind == "dense":
            h = L.Dense(layer["kernel"], layer["bias"], name=f"dense{i}")(h)
            if layer["relu"]:
                h = L.Activation("relu", name=f"relu{i}")(h)
    return fl.Model(x, h, name=spec["name"])


def flops_per_forward(spec) -> float:
    """Multiply-adds x 2 of the convolutions and dense layers (the GEMM work of one forward)."""
    total, n = 0.0, spec["input_shape"][0]
    for layer in spec["layers"]:
        if layer["kind"] == "conv":
            k, cin, cout = layer["kernel"].shape
            out = n if layer["padding"] == "same" else n - (k - 1) * layer["dilation"]
            total += 2.0 * out * k * cin * cout
            n = out
        elif layer["kind"] == "maxpool":
            n //= layer["size"]
        elif layer["kind"] == "dense":
            total += 2.0 * layer["kernel"].size
    return total


# Convenience for bench_throughput.py: fastlift models with seeded random weights.
def bpnet_like(rng, length=1000):
    return build_fastlift(bpnet_spec(rng, length))


def basset_like(rng, length=600):
    return build_fastlift(basset_spec(rng, length))


def mlp(rng):
    return build_fastlift(mlp_spec(rng))
