"""`from_keras`: a live Keras model object -> a fastlift `Model`, without importing Keras.

The object is duck-typed: its architecture comes from ``to_json()`` (or, lacking it,
``get_config()`` and its class name), its weights from each layer's ``get_weights()``
(``model.layers``, nested models walked; a Keras 0.x ``Graph``'s ``model.nodes``). Every
Keras since 0.3 has these: tf.keras 2.x, Keras 3, and the theano-era Keras 0.x/1.x objects
the original deeplift converted. The config then goes through the same reader as a file's.

A flat ``model.get_weights()`` is not used: Keras lists every trainable weight before every
non-trainable one, so it cannot be split over the layers.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from . import keras1
from .config import ConfigReader, keras1_format


class ObjectArray:
    """A weight array from ``get_weights()`` (`H5Array`'s interface)."""

    def __init__(self, value, path):
        self._value, self.path = value, path
        self.shape = tuple(value.shape)
        self.nbytes = self.storage = int(value.nbytes)

    def read(self, layer):
        return np.array(self._value, dtype=np.float64)


class ObjectWeights:
    """Per-layer ``get_weights()`` of a live model, looked up by layer path (positional names)."""

    def __init__(self, model, label, translated=None):
        self.label = label
        self.by_path: dict[tuple, list] = {}
        self._positions = {}
        if translated is not None and translated.positions:  # Keras 0.x Sequential: layers by position
            self._positions = {path: int(group.split("_")[1]) for path, group in translated.positions.items()}
        self._walk(model, ())

    def _children(self, layer):
        nodes = getattr(layer, "nodes", None)
        if isinstance(nodes, dict) and nodes and not hasattr(layer, "layers"):  # Keras 0.x Graph
            return list(nodes.items())
        subs = getattr(layer, "layers", None)
        if subs is None:
            return None
        try:
            subs = list(subs)
        except TypeError:
            return None
        return [(getattr(s, "name", None), s) for s in subs]

    def _walk(self, layer, prefix):
        children = self._children(layer)
        if children is None:
            return
        for pos, (name, sub) in enumerate(children):
            if not prefix:
                self.by_path[("#", pos)] = sub
            if isinstance(name, str):
                self.by_path[prefix + (name,)] = sub
                self._walk(sub, prefix + (name,))

    def get(self, path, class_name):
        path = tuple(path)
        layer = self.by_path.get(path)
        if path in self._positions:
            layer = self.by_path.get(("#", self._positions[path]), layer)
        if layer is None:
            return None
        try:
            values = layer.get_weights()
        except Exception as e:  # noqa: BLE001 - a live object's own method: any failure is reported as such
            raise TypeError(f"{self.label}: layer {path[-1]!r}: get_weights() failed: {type(e).__name__}: {e}") from None
        out = []
        for i, v in enumerate(values):
            a = np.asarray(v)
            if a.dtype.kind not in "fiu":
                raise TypeError(f"{self.label}: layer {path[-1]!r}: get_weights()[{i}] is not numeric "
                                f"(dtype {a.dtype})")
            out.append((str(i), ObjectArray(a, f"{'/'.join(path)}[{i}]")))
        return out


def live_config(model):
    """The model's config as parsed JSON, and a label for messages."""
    label = f"<{type(model).__module__}.{type(model).__name__} object>"
    to_json = getattr(model, "to_json", None)
    if callable(to_json):
        text = to_json()
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise TypeError(f"{label}: to_json() returned {type(text).__name__}, not JSON text")
        return ConfigReader(label, None).parse_json(text, "to_json() output"), label
    config = model.get_config()
    try:
        json.dumps(config)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{label}: get_config() is not plain JSON data ({e}); fastlift reads configs only") from None
    if isinstance(config, dict) and "class_name" not in config and config.get("name") in ("Sequential", "Graph"):
        return config, label  # Keras 0.x: the class is named in 'name'
    return {"class_name": type(model).__name__, "config": config}, label


def live_backend(model):
    """The backend of the Keras that built ``model``, read from that Keras's own, already
    imported, ``backend`` module (nothing is imported here); None if it cannot be told."""
    root = type(model).__module__.split(".")[0]
    module = sys.modules.get(f"{root}.backend")
    fn = getattr(module, "backend", None)
    if not callable(fn):
        return None
    try:
        value = fn()
    except Exception:  # noqa: BLE001 - a foreign object's function: its failure only means "unknown"
        return None
    return value if isinstance(value, str) else None


def check_model_object(model):
    if isinstance(model, (str, bytes)) or not callable(getattr(model, "get_weights", None)) or not (
            callable(getattr(model, "to_json", None)) or callable(getattr(model, "get_config", None))):
        raise TypeError(f"from_keras takes a Keras model object (with get_weights() and to_json() or get_config()); "
                        f"got {type(model).__name__}. For a file use fl.load_model(path)")


def read_live(model, opts):
    """`from_keras` returning the build details (`fastlift.io.loader.Loaded`)."""
    from .loader import _build, _translate_keras1  # the file loader's final steps

    check_model_object(model)
    top, label = live_config(model)
    version = top.get("keras_version") if isinstance(top, dict) and isinstance(top.get("keras_version"), str) else None
    reader = ConfigReader(label, None, version)
    if keras1_format(top, version) is not None:
        t = _translate_keras1(top, label, version, opts, live_backend(model))
        reader.keras_major, reader.keras_version, reader.translated = 2, None, True
        spec = reader.model(t.top)
        weights = keras1.Keras1Weights(ObjectWeights(model, label, t), t, label)
        keras_major = 2
    else:
        major = version.strip().split(".")[0] if version else ""
        reader.keras_major = int(major) if major.isdigit() else None
        spec = reader.model(top)
        keras_major = reader.keras_major
        weights = ObjectWeights(model, label)
        if (opts.conv_backend or live_backend(model)) == "theano":
            weights = keras1.Keras1Weights(weights, keras1.flip_kernels(spec), label)
    # a live model was never a file: nothing to check its sizes against but the weight budget
    return _build(spec, weights, sys.maxsize, keras_major, label, opts)


def from_keras(model, *, input_shape=None, conv_backend=None, replace=None):
    """A fastlift `Model` from a live Keras model object (Keras is never imported).

    Parameters
    ----------
    model : a Keras model object
        tf.keras 2.x, Keras 3, or a theano-era Keras 0.x/1.x ``Sequential``, ``Model`` or
        ``Graph``: anything with ``get_weights()`` and ``to_json()`` (or ``get_config()``),
        whose layers (``model.layers``; a 0.x Graph's ``model.nodes``) have ``get_weights()``.
    input_shape, conv_backend, replace
        As for `fastlift.load_model`. ``conv_backend`` defaults to the backend of the Keras
        that built the object (read from its already imported ``backend`` module).

    Returns
    -------
    Model
        The same model `fastlift.load_model` builds from the object's saved file.

    Raises
    ------
    TypeError
        ``model`` is not a Keras model object, or its methods return something else than
        a JSON config and numeric arrays.
    NotImplementedError, ValueError
        As `fastlift.load_model`.
    """
    from .loader import options

    return read_live(model, options(input_shape, None, conv_backend, replace)).model
