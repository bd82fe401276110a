"""Keras model configs (every flavour) -> one normalised `ModelSpec`.

Keras has written model configs in several dialects; this module is the only place
that knows them:

* Keras 2.2.x (the layout the original deeplift read): class ``Model``; a ``Sequential``
  config is a list of layer configs (or ``{"layers": [...]}``) whose first entry carries
  ``batch_input_shape``; inbound nodes are lists ``[[name, node, tensor, kwargs], ...]``.
* tf.keras 2.x: class ``Functional``; ``Sequential`` lists an ``InputLayer`` first;
  ``input_layers`` may be flat (``["x", 0, 0]``) for a single input; BatchNormalization
  ``axis`` saved as a list.
* Keras 3: every object carries ``module`` / ``registered_name``; inbound nodes are
  ``{"args": [...], "kwargs": {...}}`` holding ``__keras_tensor__`` records with a
  ``keras_history``; ``InputLayer`` has ``batch_shape``; node indices count only the
  calls inside the saving model.

Node indices. In Keras 2 configs a *nested model*'s node indices are offset by one (its
node 0 is the one Keras created when the inner model was built), in Keras 3 they are
not. `ModelSpec` stores every call by its 0-based position in the layer's
``inbound_nodes``; ``LayerSpec.node_offset`` keeps the offset so that the deeplift-
compatible names (``<layer>_<node>``) can be rebuilt exactly as the config numbers them.

Nothing here executes anything from the file: configs are plain JSON, read with
``json.loads``; classes are looked up by name in a fixed table (`fastlift.io.build`).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

from .errors import ModelFileError

MODEL_CLASSES = ("Sequential", "Functional", "Model")

#: layer-config keys only Keras 0.x/1.x wrote (Keras 2 renamed every one of them)
KERAS1_KEYS = ("nb_filter", "filter_length", "border_mode", "subsample_length", "nb_row", "nb_col", "subsample",
               "W_regularizer", "b_regularizer", "W_constraint", "b_constraint", "dim_ordering", "pool_length")
#: classes only Keras 0.x/1.x had (Graph: 0.x only)
KERAS1_CLASSES = ("Graph", "Merge", "MaxoutDense", "TimeDistributedDense", "Highway", "AtrousConvolution1D",
                  "AtrousConvolution2D")


@dataclass(frozen=True)
class Ref:
    """Output ``tensor`` of call ``node`` (0-based position in inbound_nodes) of ``layer``."""

    layer: str
    node: int
    tensor: int = 0


@dataclass
class LayerSpec:
    class_name: str
    name: str
    config: dict
    #: one entry per call of the layer: the Refs feeding it (InputLayer: one call, no inputs)
    calls: list = field(default_factory=list)
    #: position of the layer in its container's config list (deeplift's sequential names)
    position: int = 0
    #: config node index = position in ``calls`` + node_offset (1 for nested models in Keras 2)
    node_offset: int = 0
    #: for a nested model: its spec
    inner: ModelSpec | None = None


@dataclass
class ModelSpec:
    kind: str  # "sequential" or "functional"
    name: str
    layers: list
    inputs: list  # Refs to InputLayer layers (functional) / the synthesised input (sequential)
    outputs: list  # Refs
    input_shapes: dict = field(default_factory=dict)  # InputLayer name -> shape without batch

    def layer(self, name) -> LayerSpec:
        for spec in self.layers:
            if spec.name == name:
                return spec
        raise KeyError(name)


def keras1_format(top, keras_version: str | None) -> str | None:
    """What shows that a model was written by Keras 0.x/1.x, or None for a Keras 2/3 model.

    The one place that recognises those formats (`ConfigReader.model` refuses them with this
    description): ``keras_version`` (the file's attribute or the config's key) starting with
    "0." or "1.", a Keras 0.x config (its top level names the container in ``name``; there is
    no ``class_name``), or a class or config key that only Keras 0.x/1.x wrote.
    """
    version = keras_version.strip() if isinstance(keras_version, str) else ""
    if version[:2] in ("0.", "1."):
        return f"a Keras {version[0]}.x model file (keras_version {version})"
    if not isinstance(top, dict):
        return None
    if "class_name" not in top and top.get("name") in ("Sequential", "Graph"):
        return f"a Keras 0.x model config (a {top['name']} whose classes are named by 'name', not 'class_name')"
    if top.get("class_name") in KERAS1_CLASSES:
        return f"the model is a {top['class_name']!r}, a Keras 0.x container"
    queue, budget = deque([top.get("config")]), 10**6  # breadth first, in config order, no recursion
    while queue and budget:
        budget -= 1
        value = queue.popleft()
        if isinstance(value, list):
            queue.extend(value)
        if not isinstance(value, dict):
            continue
        cls, cfg = value.get("class_name"), value.get("config")
        name = cfg.get("name") if isinstance(cfg, dict) else None
        if isinstance(cls, str) and cls in KERAS1_CLASSES:
            return f"a Keras 1.x model config (it has a {cls!r} layer ({name!r}), a Keras 0.x/1.x class)"
        if isinstance(cfg, dict):
            key = next((k for k in cfg if k in KERAS1_KEYS or (k == "output_dim" and cls == "Dense")), None)
            if key is not None:
                return f"a Keras 1.x model config (layer {name!r} ({cls}) has {key!r}, a Keras 1 name)"
        queue.extend(value.values())
    return None


class ConfigReader:
    """Parse one file's model config; every error names the file (``label``).

    ``keras_version``: the version string the file records, if any (a config's own
    ``keras_version`` key is read too).
    """

    def __init__(self, label: str, keras_major: int | None, keras_version: str | None = None,
                 translated: bool = False):
        #: the config was rewritten from Keras 0.x/1.x (`fastlift.io.keras1`): not refused as such
        self.translated = translated
        self.label = label
        self.keras_major = keras_major
        self.keras_version = keras_version

    # ----------------------------------------------------------------- helpers
    def fail(self, msg, layer=None):
        where = f" layer {layer!r}:" if layer else ""
        return ModelFileError(f"{self.label}:{where} {msg}")

    def parse_json(self, text, what="model config"):
        if isinstance(text, (bytes, bytearray)):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail(f"the {what} is not valid UTF-8 text") from None
        if not isinstance(text, str):
            raise self.fail(f"the {what} is not text (found {type(text).__name__})")
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise self.fail(f"the {what} is not valid JSON ({e})") from None
        return value

    def dict_(self, value, what, layer=None) -> dict:
        if not isinstance(value, dict):
            raise self.fail(f"{what} must be a JSON object; found {type(value).__name__}", layer)
        return value

    def list_(self, value, what, layer=None) -> list:
        if not isinstance(value, list):
            raise self.fail(f"{what} must be a JSON list; found {type(value).__name__}", layer)
        return value

    def str_(self, value, what, layer=None) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(f"{what} must be a non-empty string; found {value!r}"[:300], layer)
        return value

    def int_(self, value, what, layer=None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{what} must be an integer; found {value!r}"[:300], layer)
        return value

    # ----------------------------------------------------------------- models
    def model(self, top) -> ModelSpec:
        """``{"class_name": ..., "config": ...}`` of the whole model -> ModelSpec."""
        version = self.keras_version
        if version is None and isinstance(top, dict) and isinstance(top.get("keras_version"), str):
            version = top["keras_version"]
        old = None if self.translated else keras1_format(top, version)
        if old is not None:
            advice = " (Keras 2 loads a Keras 1 model and can save it again)" if "Keras 1" in old else ""
            raise NotImplementedError(f"{self.label}: {old}; fastlift reads Keras 2/3 files{advice}")
        top = self.dict_(top, "the model config")
        cls = self.str_(top.get("class_name"), "the model's class_name")
        if cls not in MODEL_CLASSES:
            raise NotImplementedError(
                f"{self.label}: the model is a {cls!r}; fastlift loads Sequential and functional "
                f"(Model/Functional) Keras models")
        self.detect_dialect(top)
        return self.container(cls, top.get("config"), top.get("name") or "model", depth=0)

    def detect_dialect(self, top):
        """Keras 3 when the file says so or the config has Keras 3 markers."""
        if self.keras_major is None:
            text = json.dumps(top)[:200000]
            k3 = '"registered_name"' in text or '"__keras_tensor__"' in text or '"batch_shape"' in text
            self.keras_major = 3 if k3 else 2

    def container(self, cls, config, name, depth) -> ModelSpec:
        if depth > 32:
            raise self.fail("models nested more than 32 deep")
        if cls == "Sequential":
            return self.sequential(config, name, depth)
        return self.functional(config, name, depth)

    def sequential(self, config, name, depth) -> ModelSpec:
        if isinstance(config, list):  # Keras < 2.2.3
            entries, cfg = config, {}
        else:
            cfg = self.dict_(config, "a Sequential config")
            entries = self.list_(cfg.get("layers"), "a Sequential config's 'layers'")
            name = cfg.get("name") or name
        name = self.str_(name, "a model name") if not isinstance(name, str) else name
        if not entries:
            raise self.fail(f"the Sequential model {name!r} has no layers")
        layers = []
        input_spec = None
        for pos, entry in enumerate(entries):
            spec = self.layer_entry(entry, pos, depth)
            if spec.class_name == "InputLayer":
                if pos != 0:
                    raise self.fail(f"InputLayer {spec.name!r} must come first in a Sequential model")
                input_spec = spec
                continue
            layers.append(spec)
        if not layers:
            raise self.fail(f"the Sequential model {name!r} has no layers besides its input")
        if input_spec is None:  # Keras 2.2.x: the first layer carries the input shape
            first = layers[0]
            shape = self.batch_shape(first.config, first.name, optional=True)
            if shape is None and isinstance(cfg.get("build_input_shape"), list):
                shape = self.shape_list(cfg["build_input_shape"], "build_input_shape", first.name)
            if shape is None:
                if first.inner is not None:
                    shape = next(iter(first.inner.input_shapes.values()))
                else:
                    raise self.fail(
                        f"the Sequential model {name!r} does not record its input shape (no InputLayer, no "
                        "batch_input_shape); pass input_shape= to load_model", first.name)
            input_spec = LayerSpec("InputLayer", f"{first.name}_input", {"batch_input_shape": [None, *shape]},
                                   calls=[[]], position=0)
        input_spec.calls = [[]]
        shape = self.batch_shape(input_spec.config, input_spec.name)
        prev = Ref(input_spec.name, 0)
        for spec in layers:
            spec.calls = [[prev]]
            prev = Ref(spec.name, 0)
        model = ModelSpec("sequential", name, [input_spec] + layers, [Ref(input_spec.name, 0)], [prev],
                          {input_spec.name: shape})
        self.check_unique(model)
        return model

    def functional(self, config, name, depth) -> ModelSpec:
        cfg = self.dict_(config, "a functional model config")
        name = cfg.get("name") or name
        entries = self.list_(cfg.get("layers"), "a functional model config's 'layers'")
        layers = [self.layer_entry(e, pos, depth) for pos, e in enumerate(entries)]
        model = ModelSpec("functional", str(name), layers, [], [])
        self.check_unique(model)
        by_name = {spec.name: spec for spec in layers}
        for spec in layers:
            if spec.class_name == "InputLayer":
                spec.calls = [[]]
                model.input_shapes[spec.name] = self.batch_shape(spec.config, spec.name)
        # calls: inbound nodes -> Refs, node indices made 0-based
        raw_calls = {spec.name: self.inbound_nodes(spec) for spec in layers if spec.class_name != "InputLayer"}
        offsets = self.node_offsets(layers, raw_calls, cfg)
        for spec in layers:
            spec.node_offset = offsets.get(spec.name, 0)
        for spec in layers:
            if spec.class_name == "InputLayer":
                continue
            spec.calls = [[self.local_ref(r, by_name, offsets, spec.name) for r in call] for call in raw_calls[spec.name]]
            if not spec.calls:
                raise self.fail("the layer is never called (no inbound nodes)", spec.name)
        model.inputs = [self.local_ref(r, by_name, offsets, "input_layers")
                        for r in self.endpoint_list(cfg.get("input_layers"), "input_layers")]
        model.outputs = [self.local_ref(r, by_name, offsets, "output_layers")
                         for r in self.endpoint_list(cfg.get("output_layers"), "output_layers")]
        for r in model.inputs:
            if by_name[r.layer].class_name != "InputLayer":
                raise self.fail(f"input_layers names {r.layer!r}, which is a {by_name[r.layer].class_name}, "
                                "not an InputLayer")
        if not model.outputs:
            raise self.fail(f"the model {name!r} has no outputs")
        return model

    def check_unique(self, model):
        seen = set()
        for spec in model.layers:
            if spec.name in seen:
                raise self.fail(f"two layers of model {model.name!r} are named {spec.name!r}")
            seen.add(spec.name)

    def layer_entry(self, entry, pos, depth) -> LayerSpec:
        entry = self.dict_(entry, f"layer entry #{pos}")
        cls = self.str_(entry.get("class_name"), f"the class_name of layer entry #{pos}")
        cfg = entry.get("config")
        if cls in MODEL_CLASSES:
            lname = entry.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None)
            lname = self.str_(lname, f"the name of layer entry #{pos}")
            inner = self.container(cls, cfg, lname, depth + 1)
            return LayerSpec(cls, lname, {"_entry": entry}, position=pos, inner=inner)
        cfg = self.dict_(cfg, f"the config of layer entry #{pos} ({cls})")
        lname = self.str_(cfg.get("name", entry.get("name")), f"the name of layer entry #{pos} ({cls})")
        spec = LayerSpec(cls, lname, cfg, position=pos)
        spec.config = dict(cfg)
        spec.config["_entry"] = entry
        return spec

    # -------------------------------------------------------------- shapes
    def batch_shape(self, cfg, layer, optional=False):
        """Input shape (without batch) from batch_input_shape / batch_shape / input_shape."""
        for key in ("batch_input_shape", "batch_shape"):
            if key in cfg and cfg[key] is not None:
                shape = self.shape_list(cfg[key], key, layer)
                return shape
        if optional:
            return None
        raise self.fail("the InputLayer has no batch_input_shape / batch_shape", layer)

    def shape_list(self, value, key, layer):
        value = self.list_(value, key, layer)
        if len(value) < 2:
            raise self.fail(f"{key} must include the batch axis and at least one more; found {value!r}", layer)
        dims = value[1:]
        out = []
        for d in dims:
            if d is None:
                out.append(None)
            else:
                d = self.int_(d, key, layer)
                if d < 1 or d > 2**31:
                    raise self.fail(f"{key} has an invalid dimension {d}", layer)
                out.append(d)
        return tuple(out)

    # ---------------------------------------------------------- inbound nodes
    def inbound_nodes(self, spec) -> list:
        """The raw calls of a layer: a list (per call) of lists of (name, node, tensor)."""
        entry = spec.config["_entry"]
        nodes = entry.get("inbound_nodes", [])
        nodes = self.list_(nodes, "inbound_nodes", spec.name)
        calls = []
        for node in nodes:
            if isinstance(node, dict):  # Keras 3
                calls.append(self.keras3_node(node, spec.name))
            else:
                node = self.list_(node, "an inbound node", spec.name)
                refs = []
                for item in node:
                    item = self.list_(item, "an inbound node entry", spec.name)
                    if len(item) < 3:
                        raise self.fail(f"inbound node entry {item!r} is not [layer, node, tensor, kwargs]"[:300],
                                        spec.name)
                    if len(item) > 3 and item[3]:
                        self.check_call_kwargs(item[3], spec)
                    refs.append(self.raw_ref(item[:3], spec.name))
                calls.append(refs)
        return calls

    def keras3_node(self, node, layer):
        args = node.get("args", [])
        kwargs = node.get("kwargs", {})
        refs = []

        def walk(v):
            if isinstance(v, dict) and v.get("class_name") == "__keras_tensor__":
                cfg = self.dict_(v.get("config"), "a keras tensor", layer)
                refs.append(self.raw_ref(cfg.get("keras_history"), layer))
            elif isinstance(v, (list, tuple)):
                for item in v:
                    walk(item)
            else:
                raise NotImplementedError(
                    f"{self.label}: layer {layer!r} is called with a non-tensor argument {str(v)[:80]!r}; "
                    "fastlift only loads layers called on tensors")

        walk(self.list_(args, "inbound node args", layer))
        if kwargs:
            self.check_call_kwargs(kwargs, LayerSpec("?", layer, {}))
        if not refs:
            raise self.fail("an inbound node has no input tensors", layer)
        return refs

    def check_call_kwargs(self, kwargs, spec):
        if not isinstance(kwargs, dict):
            raise self.fail(f"call arguments must be a JSON object; found {kwargs!r}"[:300], spec.name)
        for key, value in kwargs.items():
            if value is None or isinstance(value, bool) or (key == "training"):
                continue
            raise NotImplementedError(
                f"{self.label}: layer {spec.name!r} is called with the argument {key}={str(value)[:80]}; fastlift "
                "only loads layers called on their inputs alone (no masks or extra tensors)")

    def raw_ref(self, item, layer):
        if not isinstance(item, (list, tuple)) or len(item) < 3:
            raise self.fail(f"tensor reference {item!r} is not [layer, node, tensor]"[:300], layer)
        name = self.str_(item[0], "a tensor reference's layer name", layer)
        return (name, self.int_(item[1], "a node index", layer), self.int_(item[2], "a tensor index", layer))

    def endpoint_list(self, value, key):
        if isinstance(value, dict):  # Keras 3 dict inputs/outputs: {key: [name, node, tensor]}
            value = list(value.values())
        value = self.list_(value, f"the model's {key}")
        if len(value) == 3 and isinstance(value[0], str):  # flat single endpoint
            value = [value]
        return [self.raw_ref(v, key) for v in value]

    def node_offsets(self, layers, raw_calls, cfg) -> dict:
        """Offset of config node indices over call positions, per nested-model layer."""
        refs_to: dict[str, list[int]] = {}
        for calls in raw_calls.values():
            for call in calls:
                for name, node, _ in call:
                    refs_to.setdefault(name, []).append(node)
        for key in ("output_layers",):
            try:
                for name, node, _ in self.endpoint_list(cfg.get(key), key):
                    refs_to.setdefault(name, []).append(node)
            except ModelFileError:
                pass
        offsets = {}
        for spec in layers:
            if spec.inner is None:
                continue
            n_calls = len(raw_calls.get(spec.name, []))
            guess = 1 if self.keras_major < 3 else 0
            nodes = refs_to.get(spec.name, [])
            for off in (guess, 1 - guess):
                if all(0 <= n - off < n_calls for n in nodes):
                    offsets[spec.name] = off
                    break
            else:
                offsets[spec.name] = guess
        return offsets

    def local_ref(self, raw, by_name, offsets, where) -> Ref:
        name, node, tensor = raw
        endpoint = where in ("input_layers", "output_layers")
        prefix = f"the model's {where} refer" if endpoint else "refers"
        layer = None if endpoint else where
        if name not in by_name:
            raise self.fail(f"{prefix} to an unknown layer {name!r}", layer)
        spec = by_name[name]
        pos = node - offsets.get(name, 0)
        if spec.class_name == "InputLayer":
            if pos != 0 or tensor != 0:
                raise self.fail(f"{prefix} to node {node} / tensor {tensor} of input {name!r}", layer)
        elif pos < 0:
            raise self.fail(f"{prefix} to node {node} of layer {name!r}, which does not exist", layer)
        return Ref(name, pos, tensor)
