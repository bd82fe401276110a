"""`ModelSpec` + weights -> a fastlift `Model`.

Node names (what ``target_layer=`` / ``layers=`` take):

* a Keras layer's output: its name (``"conv1"``); a layer called several times (shared):
  ``"conv1"`` for the first call, ``"conv1:1"``, ``"conv1:2"``... for the others;
* the pre-activation of a Dense/Conv with a non-linear ``activation``: ``"conv1/preact"``
  (the layer becomes a linear layer followed by an activation, so the default target is
  the logits);
* layers of a nested model: ``"<model>/<layer>"`` (``"<model>:1/<layer>"`` for the
  model's second call). Keras forbids ``/`` and ``:`` in layer names, so these never
  collide with real names.

Every node also gets an `Origin` (where it came from in the Keras config), from which
`fastlift.compat` derives the original deeplift's layer names.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from .. import _validate
from .. import layers as L
from ..model import Model
from .config import LayerSpec, ModelSpec, Ref
from .errors import ModelFileError

# class-name aliases (Keras 2 and Keras 3 names) -> canonical names used below
_ALIASES = {
    "MaxPool1D": "MaxPooling1D", "MaxPool2D": "MaxPooling2D", "AvgPool1D": "AveragePooling1D",
    "AvgPool2D": "AveragePooling2D", "GlobalMaxPool1D": "GlobalMaxPooling1D", "GlobalMaxPool2D": "GlobalMaxPooling2D",
    "GlobalAvgPool1D": "GlobalAveragePooling1D", "GlobalAvgPool2D": "GlobalAveragePooling2D",
    "Convolution1D": "Conv1D", "Convolution2D": "Conv2D", "BatchNormalizationV1": "BatchNormalization",
    "BatchNormalizationV2": "BatchNormalization", "SpatialDropout1D": "Dropout", "SpatialDropout2D": "Dropout",
    "SpatialDropout3D": "Dropout", "GaussianNoise": "Dropout", "GaussianDropout": "Dropout",
    "AlphaDropout": "Dropout", "ActivityRegularization": "Dropout", "Identity": "Dropout",
}
#: Keras classes that hold code or custom Python: refused, never run
CODE_CLASSES = ("Lambda", "TFOpLambda", "SlicingOpLambda", "TFLambda")

#: activation strings -> (fastlift activation, alpha); None alpha = the layer's default
_ACTIVATIONS = {
    "linear": ("linear", None), "relu": ("relu", None), "relu6": ("relu6", None), "elu": ("elu", 1.0),
    "selu": ("selu", None), "sigmoid": ("sigmoid", None), "tanh": ("tanh", None), "softplus": ("softplus", None),
    "softsign": ("softsign", None), "swish": ("swish", None), "silu": ("swish", None), "gelu": ("gelu", None),
    "exponential": ("exponential", None), "softmax": ("softmax", None),
}

DEFAULT_CLASSES = {
    "Activation": L.Activation, "PReLU": L.PReLU, "MaxPool1D": L.MaxPool1D, "MaxPool2D": L.MaxPool2D,
    "GlobalMaxPool1D": L.GlobalMaxPool1D, "GlobalMaxPool2D": L.GlobalMaxPool2D,
}


@dataclass(frozen=True)
class Frame:
    """One level of a node's origin: a layer in a container model."""

    kind: str  # container kind: "sequential" or "functional"
    layer: str  # Keras layer name
    position: int  # index in the container's config list
    ref_index: int  # the node (call) index as the config numbers it


@dataclass(frozen=True)
class Origin:
    frames: tuple  # outermost first
    role: str  # "input", "preact" or "output"


class Builder:
    """Builds the fastlift graph of one file.

    ``layer_classes`` overrides the classes of activations and max pools (used by
    `fastlift.compat` to get the original deeplift's rules); ``input_shapes`` fills
    in unknown (None) input dimensions.
    """

    def __init__(self, label, weights, keras_major, layer_classes=None, input_shapes=None, replace=None):
        self.label, self.weights, self.keras_major = label, weights, keras_major
        self.cls = dict(DEFAULT_CLASSES, **(layer_classes or {}))
        self.input_shapes = input_shapes
        self.origins: dict[str, Origin] = {}
        self.used_weights: set = set()
        self.replace = replace or {}
        self.replaced: dict[str, list] = {}  # replace key -> names of the layers it replaced
        self.matched: set = set()  # replace keys naming a layer or class of the file
        self.declared: dict[str, tuple] = {}  # replaced layer -> the output shape its config declares
        self.replaced_built_in: set = set()   # replaced built-in layers: `declared` is their own output shape

    # ------------------------------------------------------------------ errors
    def fail(self, spec, msg):
        return ModelFileError(f"{self.label}: layer {spec.name!r} ({spec.class_name}): {msg}")

    def unsupported(self, spec, msg):
        return NotImplementedError(f"{self.label}: layer {spec.name!r} ({spec.class_name}): {msg}")

    # ------------------------------------------------------------------- model
    def build(self, spec: ModelSpec) -> Model:
        self.top = spec
        inputs = []
        feeds = {}
        for ref in spec.inputs:
            ispec = spec.layer(ref.layer)
            shape = self._input_shape(spec, ispec)
            node = L.Input(shape, name=ispec.name)
            self._origin(node.name, (Frame(spec.kind, ispec.name, ispec.position, 0),), "input")
            feeds[ref] = node
            inputs.append(node)
        outputs = self.container(spec, feeds, prefix="", path=(), frames=())
        try:
            return Model(inputs, outputs, name=spec.name)
        except (ValueError, TypeError) as e:
            raise ModelFileError(f"{self.label}: the model graph is invalid: {e}") from None

    def _input_shape(self, spec, ispec):
        shape = spec.input_shapes[ispec.name]
        given = self.input_shapes
        if isinstance(given, dict):
            given = given.get(ispec.name)
        if given is not None:  # checked by load_model (`_validate.input_shape_arg`)
            return _validate.fit_input_shape(given, shape, ispec.name, self.label)
        if any(s is None for s in shape):
            raise NotImplementedError(
                f"{self.label}: input {ispec.name!r} has shape {tuple('None' if s is None else s for s in shape)} "
                "with an unknown dimension; fastlift needs fixed shapes: pass input_shape= to load_model")
        return shape

    def container(self, spec: ModelSpec, feeds: dict, prefix: str, path: tuple, frames: tuple) -> list:
        """Build the layers of ``spec`` given nodes for its input Refs; return its output nodes."""
        by_name = {s.name: s for s in spec.layers}
        built: dict[tuple, list] = {}  # (layer, call) -> output nodes (one per tensor)
        for ref, node in feeds.items():
            built[(ref.layer, 0)] = [node]
        chains: dict[str, object] = {}
        for s in spec.layers:
            for call in s.calls:
                for r in call:
                    self._check_ref(spec, by_name, r, s)
        for s, k in self._call_order(spec, built):
            ins = [self._tensor(built, r, by_name, s) for r in s.calls[k]]
            built[(s.name, k)] = self.call(s, k, ins, chains, prefix, path, frames, spec.kind)
        outs = []
        for r in spec.outputs:
            self._check_ref(spec, by_name, r, None)
            if (r.layer, r.node) not in built:
                raise ModelFileError(f"{self.label}: output {r.layer!r} of model {spec.name!r} is not computed")
            outs.append(self._tensor(built, r, by_name, None))
        return outs

    def _call_order(self, spec: ModelSpec, built: dict):
        """The layer calls of ``spec`` in an order where each call's inputs come first: Kahn's
        algorithm, O(calls + references), taking among the ready calls the one listed first (a
        config already in order is built in its own order). ``built``: the (layer, call) keys
        available from the start (the inputs)."""
        calls = [(s, k) for s in spec.layers if s.class_name != "InputLayer" for k in range(len(s.calls))]
        waiting = []  # per call: how many of the calls it reads are not built yet
        readers: dict[tuple, list] = {}  # (layer, call) -> positions of the calls reading it
        for i, (s, k) in enumerate(calls):
            needs = {(r.layer, r.node) for r in s.calls[k]}.difference(built)
            waiting.append(len(needs))
            for key in needs:
                readers.setdefault(key, []).append(i)
        ready = [i for i, n in enumerate(waiting) if n == 0]
        heapq.heapify(ready)
        done = 0
        while ready:
            i = heapq.heappop(ready)
            s, k = calls[i]
            yield s, k
            done += 1
            for j in readers.get((s.name, k), ()):
                waiting[j] -= 1
                if waiting[j] == 0:
                    heapq.heappush(ready, j)
        if done < len(calls):
            names = sorted({s.name for (s, _), n in zip(calls, waiting) if n})
            raise ModelFileError(f"{self.label}: layers {names[:10]} of model {spec.name!r} cannot be connected "
                                 "(their inputs never become available: a cycle or a dangling reference)")

    def _check_ref(self, spec, by_name, r: Ref, user):
        where = f"layer {user.name!r}" if user is not None else f"model {spec.name!r}'s outputs"
        if r.layer not in by_name:
            raise ModelFileError(f"{self.label}: {where} refers to an unknown layer {r.layer!r}")
        target = by_name[r.layer]
        n_calls = 1 if target.class_name == "InputLayer" else len(target.calls)
        if not 0 <= r.node < n_calls:
            raise ModelFileError(f"{self.label}: {where} refers to call {r.node + target.node_offset} of layer "
                                 f"{r.layer!r}, which has {n_calls} call(s)")

    def _tensor(self, built, r, by_name, user):
        outs = built[(r.layer, r.node)]
        if not 0 <= r.tensor < len(outs):
            where = f"layer {user.name!r}" if user is not None else "the model outputs"
            raise ModelFileError(f"{self.label}: {where} uses output {r.tensor} of {r.layer!r}, which has "
                                 f"{len(outs)} output(s)")
        return outs[r.tensor]

    # ------------------------------------------------------------------- calls
    def call(self, spec: LayerSpec, k, ins, chains, prefix, path, frames, kind):
        base = f"{prefix}{spec.name}" + (f":{k}" if k else "")
        frame = Frame(kind, spec.name, spec.position, k + spec.node_offset)
        if spec.inner is not None:
            inner = spec.inner
            if len(ins) != len(inner.inputs):
                raise ModelFileError(f"{self.label}: nested model {spec.name!r} takes {len(inner.inputs)} input(s); "
                                     f"called with {len(ins)}")
            for r, node in zip(inner.inputs, ins):
                want = inner.input_shapes.get(r.layer)
                if want is not None and any(w is not None and w != s for w, s in zip(want, node.shape)):
                    raise ModelFileError(f"{self.label}: nested model {spec.name!r} expects input {r.layer!r} of "
                                         f"shape {want}; it is called on shape {node.shape}")
            feeds = dict(zip(inner.inputs, ins))
            return self.container(inner, feeds, base + "/", path + (spec.name,), frames + (frame,))
        if spec.name not in chains:
            chains[spec.name] = self.convert(spec, [n.shape for n in ins], path + (spec.name,))
        chain = chains[spec.name]
        x = ins if len(ins) > 1 else ins[0]
        try:
            for i, (role, layer) in enumerate(chain):
                x = layer(x)
                name = base if role == "output" else f"{base}/{role}"
                x.name = name
                self._origin(name, frames + (frame,), role)
        except (ValueError, TypeError) as e:
            if spec.name in self.declared:
                raise ValueError(f"{self.label}: the replacement for layer {spec.name!r} ({spec.class_name}) does not "
                                 f"fit its input shape(s) {[n.shape for n in ins]}: {e}") from None
            raise self.fail(spec, f"does not fit its input shape(s) {[n.shape for n in ins]}: {e}") from None
        want = self.declared.get(spec.name)
        if want and (len(want) != len(x.shape) or any(w is not None and w != s for w, s in zip(want, x.shape))):
            shown = tuple("None" if w is None else w for w in want)
            source = (f"the {spec.class_name} layer it replaces outputs {shown}" if spec.name in self.replaced_built_in
                      else f"the file declares {shown} for that layer")
            raise ValueError(f"{self.label}: the replacement for layer {spec.name!r} ({spec.class_name}) outputs shape "
                             f"{x.shape}; {source}")
        return [x]

    def _origin(self, name, frames, role):
        self.origins[name] = Origin(tuple(frames), role)

    # ---------------------------------------------------------- layer mapping
    def convert(self, spec: LayerSpec, in_shapes, path):
        """Keras layer -> [(role, fastlift layer), ...] applied in a chain."""
        matched = [k for k in (spec.name, spec.class_name) if k in self.replace]
        self.matched.update(matched)
        key = matched[0] if matched else None  # the layer's name before its class
        if key is not None:
            chain = self._replacement(spec, key, path)
            if not self.declared.get(spec.name):
                original = self._built_in_shape(spec, in_shapes, path)
                if original is not None:  # a built-in layer replaced: its own output shape is the contract
                    self.declared[spec.name] = original
                    self.replaced_built_in.add(spec.name)
            return chain
        cls = _ALIASES.get(spec.class_name, spec.class_name)
        cfg = spec.config
        self._refuse_code(spec)
        method = LAYER_BUILDERS.get(cls)
        if method is None:
            raise self.unsupported(spec, f"fastlift has no {spec.class_name} layer (custom layers are never imported "
                                   f"or run; for one, say what it computes with replace={{{spec.name!r}: <a "
                                   f"fastlift.layers layer or factory>}}). Supported Keras layers: {', '.join(sorted(SUPPORTED))}")
        n_in = len(in_shapes)
        if cls in ("Add", "Subtract", "Average", "Concatenate"):
            if n_in < 2:
                raise self.fail(spec, f"a merge layer needs 2 or more inputs; got {n_in}")
        elif n_in != 1:
            raise self.fail(spec, f"takes one input; called on {n_in}")
        try:
            chain = method(self, spec, cfg, in_shapes, path)
        except (ValueError, TypeError) as e:
            if isinstance(e, ModelFileError):
                raise
            raise self.fail(spec, str(e)) from None
        return chain

    def _built_in_shape(self, spec, in_shapes, path):
        """The output shape of the built-in layer ``spec`` describes, as fastlift would build it,
        or None when fastlift has no such layer (a Lambda, a custom class) or cannot build it."""
        cls = _ALIASES.get(spec.class_name, spec.class_name)
        method = LAYER_BUILDERS.get(cls)
        if method is None or cls in CODE_CLASSES:
            return None
        try:
            chain = method(self, spec, spec.config, list(in_shapes), path)
            shapes = list(in_shapes)
            for _, layer in chain:
                shapes = [layer.output_shape(shapes)]
        except (ValueError, TypeError, KeyError, NotImplementedError):
            return None  # nothing to compare with: the replacement stands alone
        return tuple(shapes[0])

    def _replacement(self, spec, key, path):
        """The user's replacement for a layer: a Layer, or what a factory makes of the layer's
        config and stored weights."""
        value = self.replace[key]
        self.replaced.setdefault(key, []).append(spec.name)
        if isinstance(value, L.Layer):
            if len(self.replaced[key]) > 1:
                raise ValueError(f"replace[{key!r}] is one layer but the file has several layers it matches "
                                 f"({self.replaced[key]}); pass a factory f(config, weights) to make one layer each")
            layer = value
        else:
            config = {k: v for k, v in spec.config.items() if k != "_entry"}
            entries = self.weights.get(path, spec.class_name) or []
            weights = [a.read(spec.name) for _, a in entries]
            layer = value(config, weights)
            if not isinstance(layer, L.Layer):
                raise TypeError(f"replace[{key!r}] returned {type(layer).__name__} for layer {spec.name!r}; a factory "
                                "must return a fastlift.layers.Layer")
        declared = _declared_shape(spec.config)
        if declared is not None:
            self.declared[spec.name] = declared
        else:
            self.declared.setdefault(spec.name, ())
        return [("output", layer)]

    def check_replace_used(self):
        """Every replace= key must have matched a layer (a misspelt name would otherwise be
        silently ignored)."""
        unused = sorted(set(self.replace) - self.matched)
        if unused:
            raise ValueError(f"replace= names {unused}, which match(es) no layer name or class in {self.label}")

    def _refuse_code(self, spec):
        cfg = spec.config
        if spec.class_name in CODE_CLASSES:
            fn = cfg.get("function")
            what = f" wrapping {fn!r}" if isinstance(fn, str) else ""
            raise NotImplementedError(
                f"{self.label}: layer {spec.name!r} is a {spec.class_name}{what}, which holds Python code; fastlift "
                f"never runs code from a model file. Say what it computes with replace={{{spec.name!r}: <a "
                "fastlift.layers layer or factory>} (README, \"Lambda and custom layers\"), or rebuild the model from built-in "
                "Keras layers")
        entry = cfg.get("_entry", {})
        registered = entry.get("registered_name") if isinstance(entry, dict) else None
        module = entry.get("module") if isinstance(entry, dict) else None
        custom = (registered not in (None, spec.class_name)) or (
            isinstance(module, str) and not (module == "keras" or module.startswith(("keras.", "tf_keras."))))
        if custom:
            raise NotImplementedError(
                f"{self.label}: layer {spec.name!r} is a custom class {spec.class_name!r} (registered as "
                f"{registered!r}, module {module!r}); fastlift never imports or runs custom objects from a model "
                f"file. Say what it computes with replace={{{spec.name!r}: <a fastlift.layers layer or factory>}} "
                "(README, "
                "\"Lambda and custom layers\"), or rebuild the model from built-in Keras layers")

    def _weights(self, spec, path, expected: dict, required=()):
        """Read the layer's weights: ``expected`` maps variable name -> shape (in storage order)."""
        entries = self.weights.get(path, spec.class_name)
        names = list(expected)
        if entries is None:
            if not expected:
                return {}
            raise self.fail(spec, f"its weights are missing from the file (expected {names})")
        if not expected:
            return {}
        by_name = {}
        positional = all(n.isdigit() for n, _ in entries)
        if positional:  # Keras 3 vars/0, vars/1, ...
            if len(entries) != len(names):
                raise self.fail(spec, f"the file holds {len(entries)} weight array(s); the config implies "
                                f"{len(names)} ({names})")
            by_name = {n: a for n, (_, a) in zip(names, entries)}
        else:
            for n, a in entries:
                if n in by_name:
                    raise self.fail(spec, f"the file holds two weights named {n!r}")
                by_name[n] = a
            missing = [n for n in names if n not in by_name]
            extra = [n for n in by_name if n not in expected]
            if missing or extra:
                raise self.fail(spec, f"the file's weights {sorted(by_name)} do not match the config, which implies "
                                f"{names}")
        out = {}
        for n in names:
            a = by_name[n]
            want = expected[n]
            if a.shape != tuple(want) and not (a.shape == (int(np.prod(want)),) and n == "alpha"):
                raise self.fail(spec, f"weight {n!r} has shape {a.shape} in the file but the config and input shape "
                                f"imply {tuple(want)}")
            out[n] = a.read(spec.name).reshape(want)
        return out

    # --- helpers for configs
    def _get(self, spec, cfg, key, default=None, required=False):
        if key not in cfg or cfg[key] is None:
            if required:
                raise self.fail(spec, f"its config lacks {key!r}")
            return default
        return cfg[key]

    def _ints(self, spec, value, n, what):
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value] * n
        if not isinstance(value, (list, tuple)) or len(value) != n or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1 << 20 for v in value):
            raise self.fail(spec, f"{what} must be {n} positive integer(s); found {value!r}"[:300])
        return tuple(value)

    def _data_format(self, spec, cfg):
        fmt = cfg.get("data_format") or "channels_last"
        if fmt not in ("channels_last", "channels_first"):
            raise self.fail(spec, f"data_format must be channels_last or channels_first; found {fmt!r}")
        return fmt

    def _activation(self, spec, act, role_name=None):
        """A Dense/Conv's or an Activation layer's activation -> a fastlift layer (None = linear)."""
        if isinstance(act, dict):  # Keras 3 may serialise built-in functions as objects
            cfg = act.get("config")
            module = str(act.get("module", ""))
            if act.get("class_name") == "function" and isinstance(cfg, str) and module.startswith("keras"):
                act = cfg
            else:
                raise NotImplementedError(
                    f"{self.label}: layer {spec.name!r} ({spec.class_name}) uses a custom activation "
                    f"{str(act)[:120]}; fastlift never runs custom functions from a model file")
        if act is None:
            act = "linear"
        if not isinstance(act, str):
            raise self.fail(spec, f"activation must be a name; found {act!r}"[:300])
        key = act.lower()
        if key == "hard_sigmoid":
            slope = 0.2 if self.keras_major < 3 else 1.0 / 6.0  # Keras 2: clip(0.2x+.5); Keras 3: relu6(x+3)/6
            return self.cls["Activation"]("hard_sigmoid", alpha=slope)
        if key == "leaky_relu":  # the activation function's default slope (layer LeakyReLU: 0.3)
            return self.cls["Activation"]("leaky_relu", alpha=0.2)
        if key not in _ACTIVATIONS:
            raise NotImplementedError(
                f"{self.label}: layer {spec.name!r} ({spec.class_name}) uses activation {act!r}, which fastlift "
                f"does not support; supported: {sorted(set(_ACTIVATIONS) | {'hard_sigmoid', 'leaky_relu'})}")
        name, alpha = _ACTIVATIONS[key]
        if name == "linear":
            return None
        if name == "softmax":
            return L.Softmax()
        return self.cls["Activation"](name, alpha=alpha)

    def _with_activation(self, spec, cfg, linear_layer):
        act = self._activation(spec, cfg.get("activation"))
        if act is None:
            return [("output", linear_layer)]
        return [("preact", linear_layer), ("output", act)]

    # --- core layers
    def _Dense(self, spec, cfg, in_shapes, path):
        units = self._get(spec, cfg, "units", required=True)
        units = self._ints(spec, units, 1, "units")[0]
        n_in = in_shapes[0][-1]
        use_bias = bool(cfg.get("use_bias", True))
        w = self._weights(spec, path, {"kernel": (n_in, units), **({"bias": (units,)} if use_bias else {})})
        return self._with_activation(spec, cfg, L.Dense(w["kernel"], w.get("bias")))

    def _conv(self, spec, cfg, in_shapes, path, ndim):
        filters = self._ints(spec, self._get(spec, cfg, "filters", required=True), 1, "filters")[0]
        ksize = self._ints(spec, self._get(spec, cfg, "kernel_size", required=True), ndim, "kernel_size")
        strides = self._ints(spec, cfg.get("strides", 1), ndim, "strides")
        dilation = self._ints(spec, cfg.get("dilation_rate", 1), ndim, "dilation_rate")
        if cfg.get("groups", 1) not in (1, None):
            raise self.unsupported(spec, f"grouped convolution (groups={cfg.get('groups')}) is not supported")
        if any(s > 1 for s in strides) and any(d > 1 for d in dilation):
            raise self.unsupported(spec, "strides > 1 together with dilation_rate > 1 is not supported by Keras")
        padding = str(cfg.get("padding", "valid")).lower()
        fmt = self._data_format(spec, cfg)
        shape = in_shapes[0]
        if len(shape) != ndim + 1:
            raise self.fail(spec, f"expects {ndim + 1}-d inputs (without batch); got shape {shape}")
        cin = shape[0] if fmt == "channels_first" else shape[-1]
        use_bias = bool(cfg.get("use_bias", True))
        w = self._weights(spec, path, {"kernel": (*ksize, cin, filters), **({"bias": (filters,)} if use_bias else {})})
        cls = L.Conv1D if ndim == 1 else L.Conv2D
        layer = cls(w["kernel"], w.get("bias"), strides=strides if ndim == 2 else strides[0], padding=padding,
                    dilation_rate=dilation if ndim == 2 else dilation[0], data_format=fmt)
        return self._with_activation(spec, cfg, layer)

    def _Conv1D(self, spec, cfg, in_shapes, path):
        return self._conv(spec, cfg, in_shapes, path, 1)

    def _Conv2D(self, spec, cfg, in_shapes, path):
        return self._conv(spec, cfg, in_shapes, path, 2)

    def _BatchNormalization(self, spec, cfg, in_shapes, path):
        axis = cfg.get("axis", -1)
        if isinstance(axis, list):
            if len(axis) != 1:
                raise self.unsupported(spec, f"normalisation over several axes {axis} is not supported")
            axis = axis[0]
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise self.fail(spec, f"axis must be an integer; found {axis!r}")
        shape = in_shapes[0]
        ax = axis - 1 if axis > 0 else len(shape) + axis
        if not 0 <= ax < len(shape):
            raise self.fail(spec, f"axis {axis} is out of range for input shape {shape}")
        c = shape[ax]
        eps = cfg.get("epsilon", 1e-3)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
            raise self.fail(spec, f"epsilon must be a number >= 0; found {eps!r}")
        scale, center = bool(cfg.get("scale", True)), bool(cfg.get("center", True))
        names = (["gamma"] if scale else []) + (["beta"] if center else []) + ["moving_mean", "moving_variance"]
        w = self._weights(spec, path, {n: (c,) for n in names})
        return [("output", L.BatchNormalization(w.get("gamma"), w.get("beta"), w["moving_mean"], w["moving_variance"],
                                                epsilon=float(eps), axis=axis))]

    def _Activation(self, spec, cfg, in_shapes, path):
        act = self._activation(spec, self._get(spec, cfg, "activation", required=True))
        return [("output", act if act is not None else L.Dropout(0.0))]

    def _PReLU(self, spec, cfg, in_shapes, path):
        shape = list(in_shapes[0])
        shared = cfg.get("shared_axes") or []
        if isinstance(shared, int):
            shared = [shared]
        if not isinstance(shared, list) or not all(isinstance(a, int) and 1 <= a <= len(shape) for a in shared):
            raise self.fail(spec, f"shared_axes must be axes in 1..{len(shape)}; found {cfg.get('shared_axes')!r}")
        for a in shared:
            shape[a - 1] = 1
        w = self._weights(spec, path, {"alpha": tuple(shape)})
        return [("output", self.cls["PReLU"](w["alpha"]))]

    def _LeakyReLU(self, spec, cfg, in_shapes, path):
        slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
        return [("output", self.cls["Activation"]("leaky_relu", alpha=self._number(spec, slope, "negative_slope")))]

    def _ELU(self, spec, cfg, in_shapes, path):
        return [("output", self.cls["Activation"]("elu", alpha=self._number(spec, cfg.get("alpha", 1.0), "alpha")))]

    def _ReLU(self, spec, cfg, in_shapes, path):
        max_value = cfg.get("max_value")
        slope = self._number(spec, cfg.get("negative_slope", 0.0) or 0.0, "negative_slope")
        threshold = self._number(spec, cfg.get("threshold", 0.0) or 0.0, "threshold")
        if threshold != 0.0:
            raise self.unsupported(spec, f"ReLU with threshold={threshold} is not supported (only 0)")
        if max_value is None:
            if slope == 0.0:
                return [("output", self.cls["Activation"]("relu"))]
            return [("output", self.cls["Activation"]("leaky_relu", alpha=slope))]
        max_value = self._number(spec, max_value, "max_value")
        if max_value == 6.0 and slope == 0.0:
            return [("output", self.cls["Activation"]("relu6"))]
        raise self.unsupported(spec, f"ReLU with max_value={max_value}, negative_slope={slope} is not supported "
                               "(supported: max_value None or 6 with negative_slope 0, or no max_value)")

    def _number(self, spec, v, what):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise self.fail(spec, f"{what} must be a number; found {v!r}"[:300])
        return float(v)

    def _Softmax(self, spec, cfg, in_shapes, path):
        axis = cfg.get("axis", -1)
        if isinstance(axis, list) and len(axis) == 1:
            axis = axis[0]
        if axis not in (-1, len(in_shapes[0])):
            raise self.unsupported(spec, f"softmax over axis {axis} is not supported (only the last axis)")
        return [("output", L.Softmax())]

    def _Dropout(self, spec, cfg, in_shapes, path):
        return [("output", L.Dropout(0.0))]

    def _Flatten(self, spec, cfg, in_shapes, path):
        return [("output", L.Flatten(data_format=self._data_format(spec, cfg)))]

    def _Reshape(self, spec, cfg, in_shapes, path):
        target = self._get(spec, cfg, "target_shape", required=True)
        if not isinstance(target, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            raise self.fail(spec, f"target_shape must be a list of integers; found {target!r}"[:300])
        return [("output", L.Reshape(tuple(target)))]

    def _Permute(self, spec, cfg, in_shapes, path):
        dims = self._get(spec, cfg, "dims", required=True)
        if not isinstance(dims, list) or sorted(dims) != list(range(1, len(in_shapes[0]) + 1)):
            raise self.fail(spec, f"dims must permute 1..{len(in_shapes[0])}; found {dims!r}"[:300])
        return [("output", L.Permute(tuple(dims)))]

    # --- merges
    def _Add(self, spec, cfg, in_shapes, path):
        return [("output", L.Add())]

    def _Subtract(self, spec, cfg, in_shapes, path):
        if len(in_shapes) != 2:
            raise self.fail(spec, f"Subtract takes exactly 2 inputs; got {len(in_shapes)}")
        return [("output", L.Subtract())]

    def _Average(self, spec, cfg, in_shapes, path):
        return [("output", L.Average())]

    def _Concatenate(self, spec, cfg, in_shapes, path):
        axis = cfg.get("axis", -1)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise self.fail(spec, f"axis must be an integer; found {axis!r}")
        return [("output", L.Concatenate(axis=axis))]

    # --- pooling
    def _pool(self, spec, cfg, in_shapes, kind, ndim):
        fmt = self._data_format(spec, cfg)
        size = self._ints(spec, cfg.get("pool_size", 2), ndim, "pool_size")
        strides = cfg.get("strides")
        strides = size if strides is None else self._ints(spec, strides, ndim, "strides")
        padding = str(cfg.get("padding", "valid")).lower()
        if kind == "max":
            cls = self.cls["MaxPool1D" if ndim == 1 else "MaxPool2D"]
        else:
            cls = L.AvgPool1D if ndim == 1 else L.AvgPool2D
        if ndim == 1:
            layer = cls(size[0], strides=strides[0], padding=padding, data_format=fmt)
        else:
            layer = cls(size, strides=strides, padding=padding, data_format=fmt)
        return [("output", layer)]

    def _MaxPooling1D(self, spec, cfg, in_shapes, path):
        return self._pool(spec, cfg, in_shapes, "max", 1)

    def _MaxPooling2D(self, spec, cfg, in_shapes, path):
        return self._pool(spec, cfg, in_shapes, "max", 2)

    def _AveragePooling1D(self, spec, cfg, in_shapes, path):
        return self._pool(spec, cfg, in_shapes, "avg", 1)

    def _AveragePooling2D(self, spec, cfg, in_shapes, path):
        return self._pool(spec, cfg, in_shapes, "avg", 2)

    def _global(self, spec, cfg, in_shapes, kind, ndim):
        fmt = self._data_format(spec, cfg)
        if kind == "max":
            layer = self.cls["GlobalMaxPool1D" if ndim == 1 else "GlobalMaxPool2D"](data_format=fmt)
        else:
            layer = (L.GlobalAvgPool1D if ndim == 1 else L.GlobalAvgPool2D)(data_format=fmt)
        chain = [("output", layer)]
        if cfg.get("keepdims"):
            c = in_shapes[0][0] if fmt == "channels_first" else in_shapes[0][-1]
            keep = (c,) + (1,) * ndim if fmt == "channels_first" else (1,) * ndim + (c,)
            chain = [("pooled", layer), ("output", L.Reshape(keep))]
        return chain

    def _GlobalMaxPooling1D(self, spec, cfg, in_shapes, path):
        return self._global(spec, cfg, in_shapes, "max", 1)

    def _GlobalMaxPooling2D(self, spec, cfg, in_shapes, path):
        return self._global(spec, cfg, in_shapes, "max", 2)

    def _GlobalAveragePooling1D(self, spec, cfg, in_shapes, path):
        return self._global(spec, cfg, in_shapes, "avg", 1)

    def _GlobalAveragePooling2D(self, spec, cfg, in_shapes, path):
        return self._global(spec, cfg, in_shapes, "avg", 2)

    # --- cropping / padding
    def _croppad(self, spec, cfg, key, cls):
        value = self._get(spec, cfg, key, required=True)
        fmt = self._data_format(spec, cfg)
        return [("output", cls(value, data_format=fmt))]

    def _Cropping1D(self, spec, cfg, in_shapes, path):
        return self._croppad(spec, cfg, "cropping", L.Cropping1D)

    def _Cropping2D(self, spec, cfg, in_shapes, path):
        return self._croppad(spec, cfg, "cropping", L.Cropping2D)

    def _ZeroPadding1D(self, spec, cfg, in_shapes, path):
        return self._croppad(spec, cfg, "padding", L.ZeroPadding1D)

    def _ZeroPadding2D(self, spec, cfg, in_shapes, path):
        return self._croppad(spec, cfg, "padding", L.ZeroPadding2D)


def _declared_shape(cfg):
    """The output shape (without batch) a layer's config declares, or None: ``output_shape``
    of a Lambda or Keras 1 Merge when given as a list of dimensions."""
    shape = cfg.get("output_shape")
    if isinstance(shape, (list, tuple)) and all(d is None or (isinstance(d, int) and not isinstance(d, bool))
                                                for d in shape) and shape:
        return tuple(shape)
    return None


def check_replace(replace) -> dict:
    """Validate ``replace=``: {layer or class name: fastlift Layer or factory}."""
    if replace is None:
        return {}
    if not isinstance(replace, dict):
        raise TypeError(f"replace must be a dict {{layer name or class name: fastlift Layer or factory}}; got "
                        f"{type(replace).__name__}")
    for key, value in replace.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"replace keys must be layer or class names (non-empty str); got {key!r}")
        if not isinstance(value, L.Layer) and not callable(value):
            raise TypeError(f"replace[{key!r}] must be a fastlift.layers.Layer or a factory f(config, weights) -> "
                            f"Layer; got {type(value).__name__}")
    return dict(replace)


#: Keras class name (after the aliases) -> the Builder method converting it. Class names from a
#: file are looked up here and nowhere else: never as attributes, which would reach any helper.
LAYER_BUILDERS = {
    "Dense": Builder._Dense, "Conv1D": Builder._Conv1D, "Conv2D": Builder._Conv2D,
    "BatchNormalization": Builder._BatchNormalization, "Activation": Builder._Activation, "PReLU": Builder._PReLU,
    "LeakyReLU": Builder._LeakyReLU, "ELU": Builder._ELU, "ReLU": Builder._ReLU, "Softmax": Builder._Softmax,
    "Dropout": Builder._Dropout, "Flatten": Builder._Flatten, "Reshape": Builder._Reshape,
    "Permute": Builder._Permute, "Add": Builder._Add, "Subtract": Builder._Subtract, "Average": Builder._Average,
    "Concatenate": Builder._Concatenate, "MaxPooling1D": Builder._MaxPooling1D,
    "MaxPooling2D": Builder._MaxPooling2D, "AveragePooling1D": Builder._AveragePooling1D,
    "AveragePooling2D": Builder._AveragePooling2D, "GlobalMaxPooling1D": Builder._GlobalMaxPooling1D,
    "GlobalMaxPooling2D": Builder._GlobalMaxPooling2D, "GlobalAveragePooling1D": Builder._GlobalAveragePooling1D,
    "GlobalAveragePooling2D": Builder._GlobalAveragePooling2D, "Cropping1D": Builder._Cropping1D,
    "Cropping2D": Builder._Cropping2D, "ZeroPadding1D": Builder._ZeroPadding1D,
    "ZeroPadding2D": Builder._ZeroPadding2D,
}
SUPPORTED = sorted(set(LAYER_BUILDERS) | set(_ALIASES) | {"InputLayer", "Sequential", "Functional", "Model"})
