"""Keras 0.x / 1.x models -> the Keras 2 config dialect `ConfigReader` reads, and their
weights in Keras 2 layouts.

Keras 0.x and 1.x wrote configs in their own vocabulary (``nb_filter``, ``filter_length``,
``border_mode``, ``output_dim``, ``dim_ordering``, ``Merge`` layers, the 0.x ``Graph``
container) and stored convolution kernels in other layouts. This module rewrites such a
config into the Keras 2.2 dialect, layer by layer, and records for every layer how its
stored arrays become the Keras 2 arrays (`Translated.fixes`). The rest of `fastlift.io`
then builds the model as for any Keras 2 file. Nothing from the file is executed.

Dialects recognised (`dialect`):

* Keras 0.x: the top level names its class in ``name`` (``{"name": "Sequential",
  "layers": [...]}`` or ``{"name": "Graph", "input_config": ..., "node_config": ...,
  "nodes": {...}}``); each layer config names its class in ``name`` too and its own name
  in ``custom_name``. Weights are positional: ``layer_<k>/param_<i>`` (Sequential, with
  ``nb_layers``) or one flat list ``graph/param_<i>`` (Graph, in ``node_config`` order).
* Keras 1.x: ``{"class_name", "config"}`` as in Keras 2, with Keras 1 layer configs, a
  Sequential config that is a bare list, ``Merge`` layers, and the legacy ``Graph``
  container of Keras 1 (``keras.legacy.models.Graph``).

Convolution kernels. Keras 1.x stored ``Convolution1D`` kernels as ``(length, 1, in, out)``
(Keras <= 1.0: ``(out, in, length, 1)``) and ``Convolution2D`` kernels with
``dim_ordering="th"`` as ``(out, in, rows, cols)``; both become Keras 2's ``(length, in,
out)`` / ``(rows, cols, in, out)``. Theano computes a true convolution (the kernel
flipped along its spatial axes), TensorFlow a cross-correlation, so kernels trained on
Theano are flipped here (``conv_backend="theano"``). Keras 2.x files record the backend
in a ``backend`` attribute; Keras 0.x/1.x files do not (Keras 1.2.2's ``save_model``
writes ``keras_version`` and ``model_config`` only), so for them the backend is the
caller's ``conv_backend=`` or, by default, Theano: the backend of the Keras 0.x/1.0 era
and of the theano-era tools (deeplift <= 0.5, DragoNN) whose models these files are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .errors import ModelFileError

CONV_BACKENDS = ("tensorflow", "theano", "cntk")
#: backends whose convolution is a cross-correlation (Keras 2's ``_need_convert_kernel``)
CORRELATION_BACKENDS = ("tensorflow", "cntk")

#: Merge modes with a fastlift layer, -> (Keras 2 class, extra config)
_MERGE_MODES = {"sum": "Add", "ave": "Average", "concat": "Concatenate"}
#: classes passed through unchanged apart from the renamed keys below
_RENAMED = {"MaxPool1D": "MaxPooling1D", "AvgPool1D": "AveragePooling1D"}


@dataclass
class Translated:
    """A Keras 0.x/1.x model rewritten as a Keras 2.2 config.

    Attributes
    ----------
    top : dict
        ``{"class_name": "Sequential" | "Model", "config": ...}`` in the Keras 2.2 dialect.
    fixes : dict
        Layer path (tuple of layer names from the top model) -> function taking the
        layer's stored arrays (in storage order) and returning its Keras 2 arrays.
    counts : dict
        Layer path -> the number of arrays the layer stores (positional 0.x weights are
        split by these).
    positions : dict
        Layer path -> the stored group of a Keras 0.x Sequential layer (``layer_<k>``).
    unknown : dict
        Layer path -> class name, for layers with no translation (refused when built,
        unless replaced).
    dialect : str
        ``"0"`` or ``"1"``.
    flips : bool
        Whether convolution kernels are flipped (Theano-trained).
    has_kernels : bool
        Whether the model has a convolution whose kernel flipping changes the result.
    """

    top: dict
    fixes: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    positions: dict = field(default_factory=dict)
    unknown: dict = field(default_factory=dict)
    dialect: str = "1"
    flips: bool = False
    has_kernels: bool = False


def dialect(top) -> str:
    """``"0"`` for a Keras 0.x config (class named by ``name``), else ``"1"``."""
    if isinstance(top, dict) and "class_name" not in top and top.get("name") in ("Sequential", "Graph"):
        return "0"
    return "1"


def old_bn_semantics(keras_version: str | None, dialect_: str) -> bool:
    """Whether BatchNormalization's ``running_std`` is a standard deviation used as
    (x - mean) / (std + epsilon): Keras 0.x and 1.0.0-1.0.5. From 1.0.6 on it holds the
    variance and Keras computes (x - mean) / sqrt(var + epsilon), as Keras 2 reads it."""
    if dialect_ == "0":
        return True
    m = re.match(r"\s*(\d+)\.(\d+)\.(\d+)", keras_version or "")
    if not m:
        return False
    major, minor, patch = (int(g) for g in m.groups())
    return major == 0 or (major, minor) == (1, 0) and patch < 6


class Translator:
    """Rewrites one Keras 0.x/1.x config. ``flips``: whether kernels were trained on Theano."""

    def __init__(self, label: str, keras_version: str | None, dialect_: str, flips: bool, keep=()):
        self.keep = set(keep)  # layer or class names the caller replaces: passed on untranslated
        self.label = label
        self.keras_version = keras_version
        self.out = Translated(top={}, dialect=dialect_, flips=flips)
        self.old_bn = old_bn_semantics(keras_version, dialect_)

    # ----------------------------------------------------------------- errors
    def fail(self, msg, layer=None):
        where = f" layer {layer!r}:" if layer else ""
        return ModelFileError(f"{self.label}:{where} {msg}")

    def unsupported(self, name, cls, msg):
        return NotImplementedError(f"{self.label}: layer {name!r} ({cls}): {msg}")

    # ----------------------------------------------------------------- models
    def model(self, top) -> Translated:
        if not isinstance(top, dict):
            raise self.fail(f"the model config must be a JSON object; found {type(top).__name__}")
        if self.out.dialect == "0":
            cls = top["name"]
            if cls == "Sequential":
                self.out.top = {"class_name": "Sequential", "config": self.sequential(top.get("layers"), ())}
            else:
                self.out.top = {"class_name": "Model", "config": self.graph(top, "graph", ())}
            return self.out
        cls = top.get("class_name")
        cfg = top.get("config")
        if cls == "Sequential":
            layers = cfg.get("layers") if isinstance(cfg, dict) else cfg
            self.out.top = {"class_name": "Sequential", "config": self.sequential(layers, ())}
        elif cls == "Graph":
            if not isinstance(cfg, dict):
                raise self.fail("a Graph config must be a JSON object")
            self.out.top = {"class_name": "Model", "config": self.graph(cfg, cfg.get("name") or "graph", ())}
        elif cls in ("Model", "Functional"):
            self.out.top = {"class_name": "Model", "config": self.functional(cfg, ())}
        else:
            raise NotImplementedError(f"{self.label}: the model is a {cls!r}; fastlift loads Sequential, functional "
                                      "(Model) and Graph Keras 0.x/1.x models")
        return self.out

    def entry(self, raw, pos, where):
        """(class, config, name or None) of a layer entry of either dialect."""
        if not isinstance(raw, dict):
            raise self.fail(f"{where} entry #{pos} must be a JSON object; found {type(raw).__name__}")
        if self.out.dialect == "0":
            cls = raw.get("name")
            cfg = raw
            name = raw.get("custom_name")
        else:
            cls = raw.get("class_name")
            cfg = raw.get("config")
            if cls in ("Sequential", "Graph", "Model") and isinstance(cfg, list):
                cfg = {"layers": cfg}
            if not isinstance(cfg, dict):
                raise self.fail(f"the config of {where} entry #{pos} ({cls}) must be a JSON object")
            name = cfg.get("name") or raw.get("name")
        if not isinstance(cls, str) or not cls:
            raise self.fail(f"{where} entry #{pos} has no class name")
        return cls, cfg, name if isinstance(name, str) and name else None

    def sequential(self, layers, path) -> list:
        if not isinstance(layers, list) or not layers:
            raise self.fail("a Sequential config must list its layers")
        entries = [self.entry(raw, pos, "Sequential layer") for pos, raw in enumerate(layers)]
        names = self.sequential_names(entries)
        out = []
        for k, ((cls, cfg, _), name) in enumerate(zip(entries, names)):
            entry = self.layer(cls, cfg, name, path + (name,))
            if k == 0:
                shape = self.input_shape(cfg, cls)
                if shape is not None and entry["class_name"] not in ("Sequential", "Model"):
                    entry["config"]["batch_input_shape"] = shape
            if self.out.dialect == "0" and not path:
                self.out.positions[(name,)] = f"layer_{k}"
            out.append(entry)
        return out

    def sequential_names(self, entries) -> list:
        """Layer names: the file's when unique; otherwise Keras 1's automatic names
        (``<lower-cased class>_<k>``, counting from 1 per class)."""
        given = [name for _, _, name in entries]
        if all(given) and len(set(given)) == len(given):
            return given
        counts: dict[str, int] = {}
        out = []
        for cls, _, _ in entries:
            base = cls.lower()
            counts[base] = counts.get(base, 0) + 1
            out.append(f"{base}_{counts[base]}")
        return out

    def functional(self, cfg, path) -> dict:
        if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list):
            raise self.fail("a functional model config must be a JSON object with 'layers'")
        layers = []
        for pos, raw in enumerate(cfg["layers"]):
            cls, lcfg, name = self.entry(raw, pos, "model layer")
            if name is None:
                raise self.fail(f"model layer entry #{pos} ({cls}) has no name")
            entry = self.layer(cls, lcfg, name, path + (name,))
            entry["inbound_nodes"] = raw.get("inbound_nodes", [])
            layers.append(entry)
        return {"name": cfg.get("name") or "model", "layers": layers, "input_layers": cfg.get("input_layers"),
                "output_layers": cfg.get("output_layers")}

    def graph(self, cfg, name, path) -> dict:
        """A Graph container (Keras 0.x, or Keras 1's legacy Graph) as a functional config.

        Each node applies its layer to one input (``input``) or to the merge of several
        (``inputs`` with ``merge_mode``); that merge becomes a layer ``<node>_merge``. An
        output merging several nodes becomes a layer named after the output."""
        for key in ("input_config", "node_config", "output_config"):
            if not isinstance(cfg.get(key), list):
                raise self.fail(f"a Graph config must have a list {key!r}")
        nodes = cfg.get("nodes")
        if not isinstance(nodes, dict):
            raise self.fail("a Graph config must have a 'nodes' object")
        layers, inputs, outputs = [], [], []
        taken = set()
        for pos, ic in enumerate(cfg["input_config"]):
            if not isinstance(ic, dict) or not isinstance(ic.get("name"), str):
                raise self.fail(f"input_config entry #{pos} must be an object with a 'name'")
            shape = self.input_shape(ic, "input")
            if shape is None:
                raise self.fail(f"Graph input {ic['name']!r} records no input_shape")
            layers.append({"class_name": "InputLayer", "name": ic["name"],
                           "config": {"name": ic["name"], "batch_input_shape": shape}, "inbound_nodes": []})
            inputs.append([ic["name"], 0, 0])
            taken.add(ic["name"])

        def source(nc, what):
            single, several = nc.get("input"), nc.get("inputs") or []
            if single and several:
                raise self.fail(f"{what} has both 'input' and 'inputs'")
            if single:
                return [[single, 0, 0]], None
            if not isinstance(several, list) or len(several) < 2:
                raise self.fail(f"{what} has no 'input' and fewer than 2 'inputs'")
            return [[n, 0, 0] for n in several], nc.get("merge_mode", "concat")

        for pos, nc in enumerate(cfg["node_config"]):
            if not isinstance(nc, dict) or not isinstance(nc.get("name"), str):
                raise self.fail(f"node_config entry #{pos} must be an object with a 'name'")
            node = nc["name"]
            if node not in nodes:
                raise self.fail(f"Graph node {node!r} has no layer config in 'nodes'")
            refs, mode = source(nc, f"Graph node {node!r}")
            if mode is not None:
                merge = f"{node}_merge"
                if merge in nodes or merge in taken:
                    raise self.fail(f"Graph node {node!r}: the name {merge!r} for its input merge is taken")
                layers.append(self.merge_entry(merge, mode, nc, refs, path))
                taken.add(merge)
                refs = [[merge, 0, 0]]
            raw = nodes[node]
            cls, lcfg, _ = self.entry(raw, pos, "Graph node")
            entry = self.layer(cls, lcfg, node, path + (node,))
            entry["inbound_nodes"] = [refs]
            layers.append(entry)
            taken.add(node)
        for pos, oc in enumerate(cfg["output_config"]):
            if not isinstance(oc, dict) or not isinstance(oc.get("name"), str):
                raise self.fail(f"output_config entry #{pos} must be an object with a 'name'")
            refs, mode = source(oc, f"Graph output {oc['name']!r}")
            if mode is None:
                outputs.append(refs[0])
                continue
            if oc["name"] in taken:
                raise self.fail(f"Graph output {oc['name']!r} merges several nodes but its name is taken")
            layers.append(self.merge_entry(oc["name"], mode, oc, refs, path))
            taken.add(oc["name"])
            outputs.append([oc["name"], 0, 0])
        order = cfg.get("output_order")
        if isinstance(order, list) and sorted(map(str, order)) == sorted(o["name"] for o in cfg["output_config"]):
            by_output = {o["name"]: ref for o, ref in zip(cfg["output_config"], outputs)}
            outputs = [by_output[o] for o in order]
        return {"name": name, "layers": layers, "input_layers": inputs, "output_layers": outputs}

    def merge_entry(self, name, mode, cfg, refs, path):
        entry = self.layer("Merge", {"name": name, "mode": mode, "concat_axis": cfg.get("concat_axis", -1)}, name,
                           path + (name,))
        entry["inbound_nodes"] = [refs]
        return entry

    # ----------------------------------------------------------------- shapes
    def input_shape(self, cfg, cls):
        """The batch input shape a first layer records (``batch_input_shape``, 0.x
        ``input_shape``, or Keras 1's ``input_dim`` / ``input_length``), or None."""
        shape = cfg.get("batch_input_shape")
        if isinstance(shape, list):
            return list(shape)
        shape = cfg.get("input_shape")
        if isinstance(shape, list):
            return [None, *shape]
        dim, length = cfg.get("input_dim"), cfg.get("input_length")
        if isinstance(dim, int) and not isinstance(dim, bool):
            if cls in ("Convolution1D", "AtrousConvolution1D", "MaxPooling1D", "AveragePooling1D"):
                return [None, length, dim]
            return [None, dim]
        return None

    # ----------------------------------------------------------------- layers
    def layer(self, cls, cfg, name, path) -> dict:
        """A Keras 2.2 layer entry ``{"class_name", "config", "name"}`` for one old layer."""
        cls = _RENAMED.get(cls, cls)
        method = LAYER_TRANSLATIONS.get(cls)
        if cls in ("Sequential", "Model", "Graph"):
            return self.nested(cls, cfg, name, path)
        if method is None or name in self.keep or cls in self.keep:
            # replaced by the caller, or no fastlift layer: passed on under its own class name, so the builder names it
            # (LSTM, GRU, TimeDistributed...: NotImplementedError naming the layer)
            new_cls, new_cfg, count, fix = cls, {**_no_keras1_keys(cfg), "name": name}, None, None
            self.out.unknown[path] = cls
        else:
            new_cls, new_cfg, count, fix = method(self, cfg, name)
            new_cfg["name"] = name
        if count is not None:
            self.out.counts[path] = count
        if fix is not None:
            self.out.fixes[path] = fix
        return {"class_name": new_cls, "config": new_cfg, "name": name}

    def nested(self, cls, cfg, name, path):
        if cls == "Sequential":
            layers = cfg.get("layers")
            inner = self.sequential(layers, path)
            return {"class_name": "Sequential", "config": {"name": name, "layers": inner}, "name": name}
        if cls == "Graph":
            return {"class_name": "Model", "config": self.graph(cfg, name, path), "name": name}
        return {"class_name": "Model", "config": self.functional(cfg, path), "name": name}

    def activation(self, cfg):
        act = cfg.get("activation", "linear")
        return act if act is not None else "linear"

    def flag(self, cfg, key, default):
        value = cfg.get(key, default)
        return default if value is None else bool(value)

    def _dense(self, cfg, name):
        use_bias = self.flag(cfg, "bias", True)
        new = {"units": cfg.get("output_dim"), "activation": self.activation(cfg), "use_bias": use_bias}
        return "Dense", new, 2 if use_bias else 1, None

    def _conv1d(self, cfg, name):
        length, filters = cfg.get("filter_length"), cfg.get("nb_filter")
        stride = cfg.get("subsample_length", 1) or 1
        padding = self.border_mode(cfg, name, "Convolution1D")
        dilation = cfg.get("atrous_rate", 1) or 1
        if self.out.flips:
            self.theano_same_check(name, "Convolution1D", padding, [length], [stride])
        use_bias = self.flag(cfg, "bias", True)
        new = {"filters": filters, "kernel_size": length, "strides": stride, "padding": padding,
               "dilation_rate": dilation, "activation": self.activation(cfg), "use_bias": use_bias}
        flips = self.out.flips
        if isinstance(length, int) and length > 1:
            self.out.has_kernels = True

        def fix(arrays):
            w = arrays[0]
            if w.ndim == 4:
                if not (w.shape[:2] == (length, 1) and w.shape[3] == filters) and (
                        w.shape[0] == filters and w.shape[2:] == (length, 1)):
                    w = np.transpose(w, (2, 3, 1, 0))  # Keras <= 1.0: (out, in, length, 1)
                w = w[:, 0, :, :]
            if flips:
                w = w[::-1]
            return [w, *arrays[1:]]

        return "Conv1D", new, 2 if use_bias else 1, fix

    def _conv2d(self, cfg, name):
        rows, cols, filters = cfg.get("nb_row"), cfg.get("nb_col"), cfg.get("nb_filter")
        strides = cfg.get("subsample", [1, 1]) or [1, 1]
        padding = self.border_mode(cfg, name, "Convolution2D")
        dilation = cfg.get("atrous_rate", [1, 1]) or [1, 1]
        fmt = self.data_format(cfg, name, "Convolution2D")
        if self.out.flips:
            self.theano_same_check(name, "Convolution2D", padding, [rows, cols], strides)
        use_bias = self.flag(cfg, "bias", True)
        new = {"filters": filters, "kernel_size": [rows, cols], "strides": strides, "padding": padding,
               "dilation_rate": dilation, "data_format": fmt, "activation": self.activation(cfg),
               "use_bias": use_bias}
        flips = self.out.flips
        if any(isinstance(k, int) and k > 1 for k in (rows, cols)):
            self.out.has_kernels = True

        def fix(arrays):
            w = arrays[0]
            if fmt == "channels_first" and w.ndim == 4:
                w = np.transpose(w, (2, 3, 1, 0))  # (out, in, rows, cols) -> (rows, cols, in, out)
            if flips:
                w = w[::-1, ::-1]
            return [w, *arrays[1:]]

        return "Conv2D", new, 2 if use_bias else 1, fix

    def border_mode(self, cfg, name, cls):
        mode = cfg.get("border_mode", "valid")
        if mode not in ("valid", "same"):
            raise self.unsupported(name, cls, f"border_mode={mode!r} is not supported (only 'valid' and 'same')")
        return mode

    def theano_same_check(self, name, cls, padding, sizes, strides):
        """Theano's 'same' pads kernel//2 on both sides and crops the end: TensorFlow's
        arithmetic only for odd kernels at stride 1."""
        if padding == "same" and (any(isinstance(k, int) and k % 2 == 0 for k in sizes)
                                  or any(s != 1 for s in strides)):
            raise self.unsupported(
                name, cls, f"border_mode='same' with kernel {sizes} and strides {strides} pads differently on "
                "Theano (conv_backend='theano'), which fastlift does not reproduce; only odd kernels at stride 1 "
                "are supported there")

    def data_format(self, cfg, name, cls):
        ordering = cfg.get("dim_ordering", "th" if self.out.dialect == "0" else "default")
        if ordering == "default":  # resolved when the layer was built; Keras 1's default is 'tf' (1.1+)
            ordering = "tf"
        if ordering not in ("th", "tf"):
            raise self.fail(f"dim_ordering must be 'th' or 'tf'; found {ordering!r}", name)
        return "channels_first" if ordering == "th" else "channels_last"

    @staticmethod
    def _pool(cls_name, ndim):
        def translate(self, cfg, name):
            if ndim == 1:
                size = cfg.get("pool_length", 2) or 2
                strides = cfg.get("stride") or size
            else:
                size = cfg.get("pool_size", [2, 2]) or [2, 2]
                strides = cfg.get("strides") or size
            if cfg.get("ignore_border") is False:
                raise self.unsupported(name, cls_name, "ignore_border=False is not supported")
            padding = self.border_mode(cfg, name, cls_name)
            if padding == "same" and self.out.flips:
                raise self.unsupported(name, cls_name, "border_mode='same' pools pad differently on Theano "
                                       "(conv_backend='theano'); fastlift does not reproduce it")
            new = {"pool_size": size, "strides": strides, "padding": padding}
            if ndim == 2:
                new["data_format"] = self.data_format(cfg, name, cls_name)
            return cls_name, new, 0, None
        return translate

    @staticmethod
    def _global2d(cls_name):
        def translate(self, cfg, name):
            return cls_name, {"data_format": self.data_format(cfg, name, cls_name)}, 0, None
        return translate

    @staticmethod
    def _plain(cls_name, keys=()):
        def translate(self, cfg, name):
            return cls_name, {k: cfg[k] for k in keys if k in cfg}, 0, None
        return translate

    def _activation(self, cfg, name):
        return "Activation", {"activation": self.activation(cfg)}, 0, None

    def _reshape(self, cfg, name):
        target = cfg.get("target_shape", cfg.get("dims"))
        return "Reshape", {"target_shape": list(target) if isinstance(target, (list, tuple)) else target}, 0, None

    def _batchnorm(self, cfg, name):
        mode = cfg.get("mode", 0)
        if mode not in (0, None):
            raise self.unsupported(name, "BatchNormalization", f"mode={mode} normalises with the statistics of "
                                   "each batch (or sample), not fixed ones; only mode=0 is supported")
        eps = cfg.get("epsilon", 1e-6 if self.out.dialect == "0" else 1e-3)
        new = {"axis": cfg.get("axis", -1), "epsilon": eps, "center": True, "scale": True}
        if not self.old_bn:
            return "BatchNormalization", new, 4, None
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
            raise self.fail(f"epsilon must be a number >= 0; found {eps!r}", name)
        new["epsilon"] = 0.0

        def fix(arrays):  # (x - mean) / (std + eps) = (x - mean) / sqrt(var' + 0) with var' = (std + eps)²
            gamma, beta, mean, std = arrays
            return [gamma, beta, mean, (np.asarray(std, dtype=np.float64) + eps) ** 2]

        return "BatchNormalization", new, 4, fix

    def _prelu(self, cfg, name):
        new = {}
        if cfg.get("shared_axes"):
            new["shared_axes"] = cfg["shared_axes"]
        return "PReLU", new, 1, None

    def _leaky(self, cfg, name):
        return "LeakyReLU", {"alpha": cfg.get("alpha", 0.3)}, 0, None

    def _elu(self, cfg, name):
        return "ELU", {"alpha": cfg.get("alpha", 1.0)}, 0, None

    @staticmethod
    def _padcrop(cls_name, key):
        def translate(self, cfg, name):
            new = {key: cfg.get(key)}
            if cls_name.endswith("2D"):
                new["data_format"] = self.data_format(cfg, name, cls_name)
            return cls_name, new, 0, None
        return translate

    def _merge(self, cfg, name):
        if cfg.get("layers"):
            raise self.unsupported(name, "Merge", "a Merge of whole models (Keras 1's branching Sequential) is not "
                                   "supported; rebuild the model as a functional Model")
        mode = cfg.get("mode", "sum")
        if not isinstance(mode, str) or cfg.get("mode_type", "raw") != "raw":
            raise NotImplementedError(
                f"{self.label}: layer {name!r} is a Merge with a Python function as its mode, which fastlift "
                "never runs; pass replace={" + repr(name) + ": <a fastlift layer or factory>} to load_model")
        if mode not in _MERGE_MODES:
            raise self.unsupported(name, "Merge", f"merge mode {mode!r} has no DeepLIFT rule in fastlift; supported "
                                   f"modes: {sorted(_MERGE_MODES)}")
        new = {"axis": cfg.get("concat_axis", -1)} if mode == "concat" else {}
        return _MERGE_MODES[mode], new, 0, None


def _no_keras1_keys(cfg) -> dict:
    """A config passed through for a class fastlift has no translation for, less the keys
    that mark a Keras 1 config (so the error names the layer class, not the dialect)."""
    from .config import KERAS1_KEYS
    return {k: v for k, v in cfg.items() if k not in KERAS1_KEYS and k not in ("output_dim", "custom_name")}


_P = Translator
#: old class name -> translation. Names from a file are looked up here only.
LAYER_TRANSLATIONS = {
    "Dense": _P._dense, "Convolution1D": _P._conv1d, "AtrousConvolution1D": _P._conv1d, "Conv1D": _P._conv1d,
    "Convolution2D": _P._conv2d, "AtrousConvolution2D": _P._conv2d, "Conv2D": _P._conv2d,
    "MaxPooling1D": _P._pool("MaxPooling1D", 1), "AveragePooling1D": _P._pool("AveragePooling1D", 1),
    "MaxPooling2D": _P._pool("MaxPooling2D", 2), "AveragePooling2D": _P._pool("AveragePooling2D", 2),
    "GlobalMaxPooling1D": _P._plain("GlobalMaxPooling1D"),
    "GlobalAveragePooling1D": _P._plain("GlobalAveragePooling1D"),
    "GlobalMaxPooling2D": _P._global2d("GlobalMaxPooling2D"),
    "GlobalAveragePooling2D": _P._global2d("GlobalAveragePooling2D"),
    "Flatten": _P._plain("Flatten"), "Dropout": _P._plain("Dropout"),
    "SpatialDropout1D": _P._plain("Dropout"), "SpatialDropout2D": _P._plain("Dropout"),
    "GaussianNoise": _P._plain("Dropout"), "GaussianDropout": _P._plain("Dropout"),
    "ActivityRegularization": _P._plain("Dropout"), "Activation": _P._activation, "Reshape": _P._reshape,
    "Permute": _P._plain("Permute", ("dims",)), "BatchNormalization": _P._batchnorm, "PReLU": _P._prelu,
    "LeakyReLU": _P._leaky, "ELU": _P._elu, "ZeroPadding1D": _P._padcrop("ZeroPadding1D", "padding"),
    "ZeroPadding2D": _P._padcrop("ZeroPadding2D", "padding"),
    "Cropping1D": _P._padcrop("Cropping1D", "cropping"), "Cropping2D": _P._padcrop("Cropping2D", "cropping"),
    "Merge": _P._merge,
}
del _P


def translate(top, label: str, keras_version: str | None, flips: bool, keep=()) -> Translated:
    """Rewrite a Keras 0.x/1.x model config (parsed JSON) as a Keras 2.2 config. ``keep``:
    layer or class names passed on untranslated (the caller replaces them)."""
    try:
        return Translator(label, keras_version, dialect(top), flips, keep).model(top)
    except ModelFileError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as e:
        raise ModelFileError(f"{label}: malformed Keras 0.x/1.x model config ({type(e).__name__}: {e})"[:500]) from None


# ---------------------------------------------------------------------- weights


class Adapted:
    """A stored weight array seen through a layout change (`H5Array`'s interface)."""

    def __init__(self, arrays, index, fix, path, label):
        self._arrays, self._index, self._fix = arrays, index, fix
        base = arrays[index]
        self.path, self.nbytes, self.storage = base.path, base.nbytes, base.storage
        self._where = f"{label}: layer {path[-1]!r}"
        # the shape after the fix, from zero-stride views of the stored shapes (nothing is read)
        views = [np.broadcast_to(np.zeros((), np.float64), a.shape) for a in arrays]
        self.shape = tuple(self._apply(views).shape)

    def _apply(self, values):
        try:
            return self._fix(values)[self._index]
        except (IndexError, ValueError, TypeError):
            shapes = [tuple(np.shape(v)) for v in values]
            raise ModelFileError(f"{self._where}: the stored weights of shapes {shapes} are not in the layout the "
                                 "config implies") from None

    def read(self, layer: str) -> np.ndarray:
        values = [a.read(layer) if i == self._index else np.broadcast_to(np.zeros((), np.float64), a.shape)
                  for i, a in enumerate(self._arrays)]
        return np.ascontiguousarray(self._apply(values), dtype=np.float64)


class Keras1Weights:
    """Weights of a Keras 0.x/1.x file in Keras 2 layouts, positional (``"0"``, ``"1"``...).

    ``source.get(path, class_name)`` gives the stored arrays of a layer; `Translated.fixes`
    turn them into the Keras 2 arrays."""

    def __init__(self, source, translated: Translated, label: str):
        self.source, self.t, self.label = source, translated, label

    def get(self, path, class_name):
        entries = self.source.get(path, class_name)
        if entries is None:
            return None
        arrays = [a for _, a in entries]
        fix = self.t.fixes.get(tuple(path))
        if fix is None or not arrays:
            return [(str(i), a) for i, a in enumerate(arrays)]
        return [(str(i), Adapted(arrays, i, fix, path, self.label)) for i in range(len(arrays))]


def flip_kernels(spec) -> Translated:
    """Fixes that flip the spatial axes of every Conv1D/Conv2D kernel of a Keras 2+ model
    trained on Theano (Keras 2's ``conv_utils.convert_kernel``)."""
    out = Translated(top={}, flips=True)

    def walk(model, prefix):
        for layer in model.layers:
            path = prefix + (layer.name,)
            if layer.inner is not None:
                walk(layer.inner, path)
            elif layer.class_name in ("Conv1D", "Convolution1D", "Conv2D", "Convolution2D"):
                out.fixes[path] = _flip_spatial

    walk(spec, ())
    return out


def _flip_spatial(arrays):
    w = arrays[0]
    spatial = w.ndim - 2  # (*kernel, in, out)
    return [w[(slice(None, None, -1),) * spatial], *arrays[1:]]
