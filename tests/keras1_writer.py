"""Rewrite a tf.keras 2.x fixture file the way Keras 1.2 (``model.save``) or Keras 0.x
(``to_json`` + ``save_weights``) would have written the same model, so that fastlift's
forward on the old file can be checked against TensorFlow's predictions for the new one.

Written from the Keras 1.2.2 and 0.3.3 sources (configs: ``nb_filter``, ``filter_length``,
``subsample_length``, ``border_mode``, ``output_dim``, ``pool_length``, ``dim_ordering``,
``Merge``; kernels ``(length, 1, in, out)`` for ``Convolution1D``, ``(out, in, rows, cols)``
for ``dim_ordering="th"``; Keras <= 1.0 ``Convolution1D`` kernels ``(out, in, length, 1)``;
Keras 0.x BatchNormalization divides by ``std + epsilon``). ``theano=True`` stores kernels
flipped along their spatial axes, as a Theano-trained model holds them (true convolution).
"""

from __future__ import annotations

import json

import h5py
import numpy as np


def _read(src):
    with h5py.File(src, "r") as f:
        config = json.loads(f.attrs["model_config"])
        g = f["model_weights"]
        weights = {}
        for name in g.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            lg = g[name]
            arrays = []
            for w in lg.attrs["weight_names"]:
                w = w.decode() if isinstance(w, bytes) else w
                arrays.append(np.array(lg[w]))
            weights[name] = arrays
    return config, weights


def _one(v):
    return v[0] if isinstance(v, list) else v


def _layer(entry, weights, theano, legacy_conv1d, keras0, bn_eps0=1e-6):
    """(Keras 1 class, Keras 1 config, stored arrays) for one tf.keras layer entry."""
    cls, cfg = entry["class_name"], entry["config"]
    name = cfg["name"]
    arrays = list(weights.get(name, []))
    act = cfg.get("activation", "linear")
    if cls == "Conv1D":
        k = arrays[0]  # (length, in, out)
        if theano:
            k = k[::-1]
        k = k[:, None]  # (length, 1, in, out)
        if legacy_conv1d:
            k = np.transpose(k, (3, 2, 0, 1))  # (out, in, length, 1)
        new = {"nb_filter": cfg["filters"], "filter_length": _one(cfg["kernel_size"]),
               "subsample_length": _one(cfg["strides"]), "border_mode": cfg["padding"], "activation": act,
               "bias": cfg["use_bias"], "init": "glorot_uniform", "W_regularizer": None}
        return "Convolution1D", new, [k, *arrays[1:]]
    if cls == "Conv2D":
        k = arrays[0]  # (rows, cols, in, out)
        if theano:
            k = k[::-1, ::-1]
        th = cfg["data_format"] == "channels_first"
        if th:
            k = np.transpose(k, (3, 2, 0, 1))
        new = {"nb_filter": cfg["filters"], "nb_row": cfg["kernel_size"][0], "nb_col": cfg["kernel_size"][1],
               "subsample": cfg["strides"], "border_mode": cfg["padding"], "dim_ordering": "th" if th else "tf",
               "activation": act, "bias": cfg["use_bias"], "init": "glorot_uniform"}
        return "Convolution2D", new, [k, *arrays[1:]]
    if cls == "Dense":
        return "Dense", {"output_dim": cfg["units"], "activation": act, "bias": cfg["use_bias"],
                         "init": "glorot_uniform", "W_regularizer": None}, arrays
    if cls in ("MaxPooling1D", "AveragePooling1D"):
        return cls, {"pool_length": _one(cfg["pool_size"]), "stride": _one(cfg["strides"]),
                     "border_mode": cfg["padding"]}, []
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        th = cfg["data_format"] == "channels_first"
        return cls, {"pool_size": cfg["pool_size"], "strides": cfg["strides"], "border_mode": cfg["padding"],
                     "dim_ordering": "th" if th else "tf"}, []
    if cls == "BatchNormalization":
        gamma, beta, mean, var = arrays
        eps = cfg["epsilon"]
        if keras0:  # (x - mean) / (std + eps0) must equal (x - mean) / sqrt(var + eps)
            return cls, {"mode": 0, "axis": _one(cfg["axis"]), "epsilon": bn_eps0}, \
                [gamma, beta, mean, np.sqrt(var + eps) - bn_eps0]
        return cls, {"mode": 0, "axis": _one(cfg["axis"]), "epsilon": eps, "momentum": 0.99}, arrays
    if cls == "Concatenate":
        return "Merge", {"mode": "concat", "concat_axis": cfg["axis"], "mode_type": "raw", "dot_axes": -1,
                         "output_shape": None, "output_shape_type": "raw", "arguments": {}}, []
    if cls == "Add":
        return "Merge", {"mode": "sum", "concat_axis": -1, "mode_type": "raw"}, []
    if cls == "Activation":
        return cls, {"activation": act}, []
    if cls == "Dropout":
        return cls, {"p": cfg["rate"]}, []
    if cls == "PReLU":
        return cls, {"init": "zero", "shared_axes": cfg.get("shared_axes")}, arrays
    if cls == "Flatten":
        return cls, {}, arrays
    raise ValueError(f"no Keras 1 writer for {cls}")


def write_keras1(src, dst, *, theano=False, legacy_conv1d=False, version="1.2.2"):
    """A Keras 1.2 ``model.save`` file of the tf.keras model in ``src``."""
    config, weights = _read(src)
    functional = config["class_name"] != "Sequential"
    entries, names, stored = [], [], {}
    shape = None
    for entry in config["config"]["layers"]:
        cfg = entry["config"]
        if entry["class_name"] == "InputLayer":
            if functional:
                new = {"class_name": "InputLayer", "name": cfg["name"], "inbound_nodes": [],
                       "config": {"name": cfg["name"], "batch_input_shape": cfg["batch_input_shape"],
                                  "input_dtype": "float32", "sparse": False}}
                entries.append(new)
                names.append(cfg["name"])
                stored[cfg["name"]] = []
            else:
                shape = cfg["batch_input_shape"]
            continue
        cls, new_cfg, arrays = _layer(entry, weights, theano, legacy_conv1d, keras0=False)
        new_cfg = {"name": cfg["name"], "trainable": True, **new_cfg}
        if shape is not None:
            new_cfg["batch_input_shape"] = shape
            shape = None
        new = {"class_name": cls, "config": new_cfg}
        if functional:
            new["name"] = cfg["name"]
            new["inbound_nodes"] = [[item[:3] for item in node] for node in entry["inbound_nodes"]]
        entries.append(new)
        names.append(cfg["name"])
        stored[cfg["name"]] = arrays
    if functional:
        top = {"class_name": "Model", "config": {"name": config["config"]["name"], "layers": entries,
                                                 "input_layers": config["config"]["input_layers"],
                                                 "output_layers": config["config"]["output_layers"]}}
    else:
        top = {"class_name": "Sequential", "config": entries}
    with h5py.File(dst, "w") as f:
        f.attrs["keras_version"] = version.encode()
        f.attrs["model_config"] = json.dumps(top).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [n.encode() for n in names]
        for name in names:
            lg = g.create_group(name)
            suffixes = ["W", "b"] if len(stored[name]) <= 2 else ["gamma", "beta", "running_mean", "running_std"]
            wnames = [f"{name}_{s}" for s in suffixes[:len(stored[name])]]
            lg.attrs["weight_names"] = [w.encode() for w in wnames]
            for w, a in zip(wnames, stored[name]):
                lg.create_dataset(w, data=a)
    return dst


def write_keras0(src, weights_dst, *, theano=False, bn_eps0=1e-6):
    """A Keras 0.x Sequential: (``to_json()`` text, ``save_weights`` file) of ``src``."""
    config, weights = _read(src)
    layers, params = [], []
    shape = None
    for entry in config["config"]["layers"]:
        if entry["class_name"] == "InputLayer":
            shape = entry["config"]["batch_input_shape"][1:]
            continue
        cls, new_cfg, arrays = _layer(entry, weights, theano, legacy_conv1d=True, keras0=True, bn_eps0=bn_eps0)
        new_cfg = {"name": cls, "custom_name": cls.lower(), "cache_enabled": True, "trainable": True, **new_cfg}
        if shape is not None:
            new_cfg["input_shape"] = shape
            shape = None
        layers.append(new_cfg)
        params.append(arrays)
    top = {"name": "Sequential", "layers": layers, "loss": "binary_crossentropy", "class_mode": "binary"}
    with h5py.File(weights_dst, "w") as f:
        f.attrs["nb_layers"] = len(layers)
        for k, arrays in enumerate(params):
            g = f.create_group(f"layer_{k}")
            g.attrs["nb_params"] = len(arrays)
            for i, a in enumerate(arrays):
                g.create_dataset(f"param_{i}", data=a)
    return json.dumps(top)
