"""`load_model`: a Keras model file -> a fastlift `Model`, without TensorFlow.

Formats (recognised by their first bytes, not by their names):

* HDF5 written by ``model.save("m.h5")`` with Keras 2.2.x, tf.keras 2.x or Keras 3: the
  config is the ``model_config`` attribute, the weights the ``model_weights`` group;
* HDF5 weights only (``model.save_weights``), legacy or Keras 3 layout, together with the
  JSON config from ``model.to_json()`` passed as ``config_json=``;
* Keras 3 ``.keras`` archives (a zip with ``config.json`` and ``model.weights.h5``). The
  archive is read in memory with `zipfile`; nothing is extracted to disk;
* ONNX files (a protobuf ModelProto; `fastlift.io.onnx`, with the optional ``onnx`` package).
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from dataclasses import dataclass

from ..model import Model
from . import hdf5
from . import onnx as onnx_io
from .build import Builder
from .config import ConfigReader, ModelSpec
from .errors import ModelFileError

ZIP_SIGNATURE = b"PK\x03\x04"
#: largest config.json / model.weights.h5 read from a .keras archive (a guard against zip bombs)
MAX_CONFIG_BYTES = 256 * 2**20
MAX_WEIGHTS_BYTES = 16 * 2**30
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, KeyError, RuntimeError, OSError, ValueError, struct.error,
              NotImplementedError, IndexError, TypeError, AttributeError, OverflowError, UnicodeDecodeError)


@dataclass
class Loaded:
    """What `read_keras` returns: the model and where each node came from."""

    model: Model
    origins: dict  # node name -> build.Origin
    spec: ModelSpec
    keras_major: int
    label: str


def load_model(path, config_json=None, *, input_shape=None) -> Model:
    """Load a Keras model file (no TensorFlow needed; no code from the file is run).

    Parameters
    ----------
    path : str or os.PathLike
        ``.h5`` / ``.hdf5`` written by ``model.save`` (Keras 2.2.x, tf.keras 2.x, Keras 3),
        a Keras 3 ``.keras`` archive, a weights-only ``.h5`` (``model.save_weights``,
        either layout) together with ``config_json``, or an ``.onnx`` file (e.g. from
        ``torch.onnx.export``; needs ``pip install 'fastlift[onnx]'``; see `fastlift.io.onnx`).
    config_json : str or os.PathLike, optional
        The model's architecture as written by ``model.to_json()``: a path to that
        ``.json`` file or the JSON text itself. Required for weights-only files; for
        full files it replaces the config stored in the file.
    input_shape : tuple or dict {input name: tuple}, optional
        Input shape(s) without the batch axis, for models saved with unknown (None)
        dimensions, e.g. a sequence model that accepts any length.

    Returns
    -------
    Model
        Node names are the Keras layer names; a Dense/Conv with a non-linear
        ``activation`` becomes ``"<name>/preact"`` (linear) followed by ``"<name>"``
        (the activation), so the default attribution target is the pre-activation;
        a shared layer's k-th call is ``"<name>:<k>"``; layers of a nested model are
        ``"<model>/<layer>"``.

    Raises
    ------
    ModelFileError (a ValueError)
        Truncated or corrupt file, missing weights, weights whose shapes disagree with
        the config, malformed config; the message names the file and the layer.
    NotImplementedError
        An unsupported layer class or option, or code in the file (``Lambda`` layers,
        custom classes or functions), which fastlift never runs.
    FileNotFoundError, IsADirectoryError, PermissionError
        The path cannot be opened.

    Examples
    --------
    >>> model = fl.load_model("bpnet.h5")
    >>> model.predict(X)                      # X: (n, 1000, 4)
    >>> fl.deeplift(model, X, target_layer="logcount_predictions")
    >>> torch_model = fl.load_model("bpnet.onnx")   # X: (n, 4, 1000), channels first
    """
    if isinstance(path, (str, os.PathLike)) and config_json is None and onnx_io.is_onnx_file(path):
        return onnx_io.load_onnx(path, input_shape=input_shape)
    return read_keras(path, config_json, input_shape=input_shape).model


def read_keras(path, config_json=None, *, input_shape=None, layer_classes=None) -> Loaded:
    """`load_model` returning the build details (used by `fastlift.compat`)."""
    if isinstance(path, (bytes, bytearray)) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike naming a model file; got {type(path).__name__}")
    path = os.fspath(path)
    label = repr(os.path.basename(path) or path)
    if input_shape is not None and not isinstance(input_shape, (tuple, list, dict)):
        raise TypeError(f"input_shape must be a tuple of ints or a dict {{input name: tuple}}; got {input_shape!r}")
    with open(path, "rb") as f:  # FileNotFoundError / IsADirectoryError / PermissionError as they are
        head = f.read(8)
    config_text = _read_config_json(config_json) if config_json is not None else None
    if head.startswith(ZIP_SIGNATURE):
        return _load_keras_archive(path, label, config_text, input_shape, layer_classes)
    if head == hdf5.HDF5_SIGNATURE:
        with hdf5.open_h5(path, label) as h5:
            return _load_h5(h5, label, config_text, input_shape, layer_classes)
    if not head:
        raise ModelFileError(f"{label}: the file is empty")
    raise ModelFileError(f"{label}: not a Keras model file (neither HDF5 nor a .keras zip archive; it starts "
                         f"with {head!r})")


def _read_config_json(config_json):
    if isinstance(config_json, (str, os.PathLike)):
        text = os.fspath(config_json)
        if isinstance(text, str) and text.lstrip().startswith("{"):
            return text
        with open(text, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ModelFileError(f"{os.path.basename(text)!r}: config larger than {MAX_CONFIG_BYTES} bytes")
        return data
    raise TypeError(f"config_json must be a path to a .json file or JSON text; got {type(config_json).__name__}")


def _major(version: str | None) -> int | None:
    if not version:
        return None
    head = version.strip().split(".")[0]
    return int(head) if head.isdigit() else None


def _load_h5(h5, label, config_text, input_shape, layer_classes) -> Loaded:
    version = hdf5.attr_text(h5, "keras_version", label)
    config = hdf5.attr_text(h5, "model_config", label)
    try:
        has_mw = "model_weights" in h5
        root = h5["model_weights"] if has_mw else h5
        keras3_layout = (not has_mw) and "layers" in h5 and "layer_names" not in h5.attrs
    except hdf5.H5_ERRORS as e:
        raise ModelFileError(f"{label}: cannot read the HDF5 structure: {e}") from None
    if config_text is not None:
        config = config_text
        source = "config_json"
    elif config is None:
        raise ModelFileError(f"{label}: the file holds weights only (no 'model_config'); pass the architecture "
                             "written by model.to_json() as config_json=")
    else:
        source = "model_config"
    reader = ConfigReader(label, _major(version))
    top = reader.parse_json(config, source)
    if isinstance(top, dict) and reader.keras_major is None:
        reader.keras_major = _major(top.get("keras_version") if isinstance(top.get("keras_version"), str) else None)
    if keras3_layout and reader.keras_major is None:
        reader.keras_major = 3
    spec = reader.model(top)
    if keras3_layout:
        weights = hdf5.Keras3Weights(root, label, _container_lookup(spec))
    else:
        weights = hdf5.LegacyWeights(root, label)
    return _build(spec, weights, reader.keras_major, label, input_shape, layer_classes)


def _load_keras_archive(path, label, config_text, input_shape, layer_classes) -> Loaded:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for need in ("config.json", "model.weights.h5"):
                if need not in names:
                    raise ModelFileError(f"{label}: the .keras archive has no {need!r} (entries: "
                                         f"{sorted(names)[:10]})")
            config = config_text if config_text is not None else _zip_read(zf, "config.json", MAX_CONFIG_BYTES, label)
            meta = _zip_read(zf, "metadata.json", 2**20, label) if "metadata.json" in names else None
            weights_bytes = _zip_read(zf, "model.weights.h5", MAX_WEIGHTS_BYTES, label)
    except ModelFileError:
        raise
    except ZIP_ERRORS as e:
        raise ModelFileError(f"{label}: not a readable .keras archive (truncated or corrupt?): "
                             f"{type(e).__name__}: {e}") from None
    reader = ConfigReader(label, 3)
    if meta is not None:
        m = reader.parse_json(meta, "metadata.json")
        if isinstance(m, dict) and isinstance(m.get("keras_version"), str):
            reader.keras_major = _major(m["keras_version"]) or 3
    top = reader.parse_json(config, "config.json")
    spec = reader.model(top)
    with hdf5.open_h5(weights_bytes, f"{label} (model.weights.h5)") as h5:
        weights = hdf5.Keras3Weights(h5, label, _container_lookup(spec))
        return _build(spec, weights, reader.keras_major, label, input_shape, layer_classes)


def _zip_read(zf, name, limit, label) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise ModelFileError(f"{label}: {name!r} in the archive declares {info.file_size} bytes (limit {limit})")
    with zf.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ModelFileError(f"{label}: {name!r} in the archive is larger than {limit} bytes")
    return data


def _container_lookup(spec: ModelSpec):
    """path of a container (tuple of nested-model names) -> [(class_name, name)] of the layers
    Keras 3 saves weights for, in its order (Sequential omits its InputLayer)."""

    def lookup(path):
        model = spec
        for name in path:
            layer = model.layer(name)
            if layer.inner is None:
                return []
            model = layer.inner
        layers = model.layers
        if model.kind == "sequential":
            layers = [s for s in layers if s.class_name != "InputLayer"]
        return [(s.class_name, s.name) for s in layers]

    return lookup


def _build(spec, weights, keras_major, label, input_shape, layer_classes) -> Loaded:
    builder = Builder(label, weights, keras_major or 2, layer_classes=layer_classes, input_shapes=input_shape)
    try:
        model = builder.build(spec)
    except RecursionError:
        raise ModelFileError(f"{label}: the model graph is too deep to build") from None
    return Loaded(model, builder.origins, spec, keras_major or 2, label)


__all__ = ["Loaded", "load_model", "read_keras"]
