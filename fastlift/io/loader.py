"""`load_model`: a Keras model file -> a fastlift `Model`, without TensorFlow.

Formats (recognised by their first bytes, not by their names):

* HDF5 written by ``model.save("m.h5")`` with Keras 2.2.x, tf.keras 2.x or Keras 3: the
  config is the ``model_config`` attribute, the weights the ``model_weights`` group;
* HDF5 weights only (``model.save_weights``), legacy or Keras 3 layout, together with the
  JSON config from ``model.to_json()`` passed as ``config_json=``;
* Keras 3 ``.keras`` archives (a zip with ``config.json`` and ``model.weights.h5``). The
  archive is read in memory with `zipfile`; nothing is extracted to disk;
* ONNX files (a protobuf ModelProto; `fastlift.io.onnx`, with the optional ``onnx`` package).

PyTorch checkpoints (``torch.save``'s zip or, before PyTorch 1.6, a bare pickle) are
recognised and refused by name: nothing is ever unpickled.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field

from .. import _validate
from ..model import Model
from . import hdf5, keras1
from . import onnx as onnx_io
from .build import Builder, check_replace
from .config import ConfigReader, ModelSpec, keras1_format
from .errors import ModelFileError

ZIP_SIGNATURE = b"PK\x03\x04"
#: a pickle's first opcode (PROTO, protocols 2 to 5)
PICKLE_PROTOCOL = b"\x80"
#: a pickle can run any code when loaded, so none is ever unpickled
PYTORCH_ADVICE = "PyTorch checkpoints cannot be loaded (fastlift never unpickles); export the model to ONNX " \
                 "(torch.onnx.export)"
#: largest config (config_json= file, or config.json in a .keras archive)
MAX_CONFIG_BYTES = 256 * 2**20
#: largest model.weights.h5 read from a .keras archive (it is held in memory; it may also hold
#: the optimizer's variables, which are never read)
MAX_WEIGHTS_ENTRY_BYTES = 16 * 2**30
#: compressed archive entries larger than this must expand at most
#: `hdf5.MAX_COMPRESSION_RATIO`-fold (checked from the declared sizes, before decompressing)
SMALL_ENTRY_BYTES = 64 * 2**20
#: bytes decompressed at a time from an archive entry into its buffer
_ZIP_CHUNK = 2**20
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, KeyError, RuntimeError, OSError, ValueError, struct.error,
              NotImplementedError, IndexError, TypeError, AttributeError, OverflowError, UnicodeDecodeError)


@dataclass
class Options:
    """What a caller asks of one load, validated once (`options`)."""

    input_shape: object = None
    layer_classes: dict | None = None
    conv_backend: str | None = None
    replace: dict = field(default_factory=dict)


def options(input_shape=None, layer_classes=None, conv_backend=None, replace=None) -> Options:
    """Validate the load arguments shared by every entry point."""
    if conv_backend is not None and conv_backend not in keras1.CONV_BACKENDS:
        raise ValueError(f"conv_backend must be one of {list(keras1.CONV_BACKENDS)} or None (what the file records); "
                         f"got {conv_backend!r}")
    return Options(_validate.input_shape_arg(input_shape), layer_classes, conv_backend, check_replace(replace))


@dataclass
class Loaded:
    """What `read_keras` returns: the model and where each node came from."""

    model: Model
    origins: dict  # node name -> build.Origin
    spec: ModelSpec
    keras_major: int
    label: str


def load_model(path, config_json=None, *, input_shape=None, conv_backend=None, replace=None,
               config_yaml=None) -> Model:
    """Load a Keras model file (no TensorFlow needed; no code from the file is run).

    Parameters
    ----------
    path : str or os.PathLike
        ``.h5`` / ``.hdf5`` written by ``model.save`` (Keras 1.x, 2.x, tf.keras 2.x, Keras 3),
        a Keras 3 ``.keras`` archive, a weights-only ``.h5`` (``model.save_weights`` of
        Keras 0.x to 3, any layout) together with ``config_json`` or ``config_yaml``, or an
        ``.onnx`` file (e.g. from ``torch.onnx.export``; needs ``pip install 'fastlift[onnx]'``;
        see `fastlift.io.onnx`).
    config_json : str or os.PathLike, optional
        The model's architecture as written by ``model.to_json()``: a path to that
        ``.json`` file or the JSON text itself. Required for weights-only files; for
        full files it replaces the config stored in the file.
    input_shape : tuple of int or dict {input name: tuple of int}, optional
        Input shape(s) without the batch axis, for models saved with unknown (None)
        dimensions, e.g. a sequence model that accepts any length. Entries are positive
        ints (numpy integers too; floats and bools are refused, never truncated).
    conv_backend : {"tensorflow", "theano", "cntk"}, optional
        The Keras backend that trained the model. Theano computes true convolutions, so
        its kernels are flipped relative to TensorFlow's; fastlift flips them back. By
        default the backend the file records (Keras 2.x writes a ``backend`` attribute)
        is used; Keras 0.x/1.x files record none, and are read as Theano-trained (with a
        warning when that changes the result): pass ``conv_backend="tensorflow"`` for a
        Keras 1 model trained with TensorFlow.
    replace : dict {layer name or class name: fastlift Layer or factory}, optional
        What a layer the file cannot express computes (a ``Lambda``, a custom class, or
        any layer to override): a `fastlift.layers.Layer`, or a factory
        ``f(config: dict, weights: list[np.ndarray]) -> Layer`` called with the layer's
        config and its stored weight arrays. A layer name takes precedence over a class
        name. The replacement's output shape must match what the file declares.
    config_yaml : str or os.PathLike, optional
        The architecture as written by Keras 0.x/1.x's ``model.to_yaml()`` (a path or the
        YAML text), instead of ``config_json``. Read with PyYAML's safe loader (tuples
        allowed, nothing else that PyYAML's safe loader refuses); needs PyYAML.

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
        the config, malformed config; weights stored outside the file (HDF5 external
        links, external storage, virtual datasets) or never written; sizes over the
        limits (README, "Security notes"); a path that is not a regular file. The
        message names the file and the layer or dataset.
    NotImplementedError
        An unsupported layer class or option (naming the layer), or code in the file
        (``Lambda`` layers, custom classes or functions), which fastlift never runs
        (``replace=`` says what such a layer computes).
    FileNotFoundError, IsADirectoryError, PermissionError
        The path cannot be opened (nothing but the model file and ``config_json`` is
        ever opened).

    Examples
    --------
    >>> model = fl.load_model("bpnet.h5")
    >>> model.predict(X)                      # X: (n, 1000, 4)
    >>> fl.deeplift(model, X, target_layer="logcount_predictions")
    >>> torch_model = fl.load_model("bpnet.onnx")   # X: (n, 4, 1000), channels first
    """
    if config_json is None and config_yaml is None and isinstance(path, (str, os.PathLike)):
        name = os.fspath(path)
        label = repr(os.path.basename(name) or name)
        with open_regular(name, label) as f:
            if onnx_io.looks_like_onnx(f.read(2)):
                if replace is not None or conv_backend is not None:
                    raise ValueError(f"{label} is an ONNX model: replace= and conv_backend= apply to Keras files")
                f.seek(0)
                return onnx_io.load_onnx(f, input_shape=_validate.input_shape_arg(input_shape), label=label, path=name)
    return read_keras(path, config_json, input_shape=input_shape, conv_backend=conv_backend, replace=replace,
                      config_yaml=config_yaml).model


def read_keras(path, config_json=None, *, input_shape=None, layer_classes=None, conv_backend=None, replace=None,
               config_yaml=None) -> Loaded:
    """`load_model` returning the build details (used by `fastlift.compat`)."""
    if isinstance(path, (bytes, bytearray)) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike naming a model file; got {type(path).__name__}")
    path = os.fspath(path)
    label = repr(os.path.basename(path) or path)
    opts = options(input_shape, layer_classes, conv_backend, replace)
    if config_json is not None and config_yaml is not None:
        raise ValueError("pass at most one of config_json= and config_yaml=")
    config_text = _read_config_json(config_json) if config_json is not None else None
    if config_yaml is not None:
        config_text = _read_config_yaml(config_yaml)
    with open_regular(path, label) as f:
        head = f.read(8)
        f.seek(0)
        if head.startswith(ZIP_SIGNATURE):
            return _load_keras_archive(f, label, config_text, opts)
        if head == hdf5.HDF5_SIGNATURE:
            with hdf5.open_h5(f, label) as h5:
                return _load_h5(h5, label, config_text, opts, os.fstat(f.fileno()).st_size)
    if not head:
        raise ModelFileError(f"{label}: the file is empty")
    if head.startswith(PICKLE_PROTOCOL):
        raise ModelFileError(f"{label}: a Python pickle, as torch.save wrote PyTorch checkpoints before PyTorch 1.6, "
                             f"not a Keras model. {PYTORCH_ADVICE}")
    raise ModelFileError(f"{label}: not a Keras model file (neither HDF5 nor a .keras zip archive; it starts "
                         f"with {head!r})")


_KINDS = ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISSOCK, "socket"))


def open_regular(path: str, label: str):
    """Open ``path`` for binary reading if it is a regular file (after symlinks).

    Anything else is refused before it is opened: a FIFO blocks its reader until a writer
    comes, a device never ends or acts on being opened. The opened file is checked again
    (the path may have been replaced in between); ``O_NONBLOCK`` keeps that open from
    blocking. A directory is an ``IsADirectoryError``, a missing path ``FileNotFoundError``.
    """
    st = os.stat(path)
    _check_regular(st, path, label)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_BINARY", 0))
    try:
        _check_regular(os.fstat(fd), path, label)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(st, path, label):
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    kind = next((name for test, name in _KINDS if test(st.st_mode)), f"file of mode {oct(st.st_mode)}")
    raise ModelFileError(f"{label}: not a regular file (it is a {kind}); fastlift reads model files only")


def _read_config_json(config_json):
    if isinstance(config_json, (str, os.PathLike)):
        text = os.fspath(config_json)
        if isinstance(text, str) and text.lstrip().startswith("{"):
            return text
        label = repr(os.path.basename(text) or text)
        with open_regular(text, label) as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ModelFileError(f"{label}: config larger than {MAX_CONFIG_BYTES} bytes")
        return data
    raise TypeError(f"config_json must be a path to a .json file or JSON text; got {type(config_json).__name__}")


def _read_config_yaml(config_yaml):
    """A ``to_yaml()`` config (path or text) -> the same structure as JSON text.

    PyYAML's `SafeLoader` builds plain data only; Keras 0.x/1.x wrote tuples with the
    ``!!python/tuple`` tag, which this loader alone adds (as lists). Any other Python tag
    is refused by the safe loader, so loading runs nothing from the file."""
    if not isinstance(config_yaml, (str, os.PathLike)) or isinstance(config_yaml, bytes):
        raise TypeError(f"config_yaml must be a path to a .yaml file or YAML text; got {type(config_yaml).__name__}")
    try:
        import yaml
    except ImportError:
        raise ImportError("config_yaml= needs PyYAML (pip install pyyaml); or convert the config to JSON and pass "
                          "config_json=") from None
    text = os.fspath(config_yaml)
    label = "config_yaml"
    if "\n" not in text:  # a path (YAML configs span several lines)
        label = repr(os.path.basename(text) or text)
        with open_regular(text, label) as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ModelFileError(f"{label}: config larger than {MAX_CONFIG_BYTES} bytes")
        text = data

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_constructor("tag:yaml.org,2002:python/tuple", lambda loader, node: loader.construct_sequence(node))
    try:
        value = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{label}: not a readable YAML model config: {str(e)[:300]}") from None
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{label}: the YAML config holds values JSON cannot (e.g. dates): {e}") from None


def _major(version: str | None) -> int | None:
    if not version:
        return None
    head = version.strip().split(".")[0]
    return int(head) if head.isdigit() else None


def _load_h5(h5, label, config_text, opts, file_bytes) -> Loaded:
    version = hdf5.attr_text(h5, "keras_version", label)
    config = hdf5.attr_text(h5, "model_config", label)
    model_weights = hdf5.resolve(h5, "model_weights", label)
    root = h5 if model_weights is None else model_weights
    try:
        keras3_layout = model_weights is None and hdf5.has(h5, "layers", label) and "layer_names" not in h5.attrs
    except hdf5.H5_ERRORS as e:
        raise ModelFileError(f"{label}: cannot read the HDF5 structure: {e}") from None
    if config_text is not None:
        config = config_text
        source = "config_json"
    elif config is None:
        raise ModelFileError(f"{label}: the file holds weights only (no 'model_config'); pass the architecture "
                             "written by model.to_json() as config_json= (or Keras 0.x/1.x's to_yaml() as "
                             "config_yaml=)")
    else:
        source = "model_config"
    reader = ConfigReader(label, _major(version), version)
    top = reader.parse_json(config, source)
    if isinstance(top, dict) and version is None and isinstance(top.get("keras_version"), str):
        version = top["keras_version"]
    if isinstance(top, dict) and reader.keras_major is None:
        reader.keras_major = _major(top.get("keras_version") if isinstance(top.get("keras_version"), str) else None)
    recorded = hdf5.attr_text(root, "backend", label)
    if keras1_format(top, version) is not None:
        t = _translate_keras1(top, label, version, opts, recorded)
        reader.keras_major, reader.keras_version, reader.translated = 2, None, True
        spec = reader.model(t.top)
        keras0 = t.dialect == "0" or any(k in h5.attrs for k in ("nb_layers",)) or (
            hdf5.has(h5, "graph", label) and "layer_names" not in root.attrs)
        stored = hdf5.Keras0Weights(h5, label, t) if keras0 else hdf5.LegacyWeights(root, label)
        return _build(spec, keras1.Keras1Weights(stored, t, label), file_bytes, 2, label, opts)
    if keras3_layout and reader.keras_major is None:
        reader.keras_major = 3
    spec = reader.model(top)
    if keras3_layout:
        weights = hdf5.Keras3Weights(root, label, _container_lookup(spec))
    else:
        weights = hdf5.LegacyWeights(root, label)
    backend = opts.conv_backend or recorded
    if backend == "theano":
        weights = keras1.Keras1Weights(weights, keras1.flip_kernels(spec), label)
    return _build(spec, weights, file_bytes, reader.keras_major, label, opts)


def _translate_keras1(top, label, version, opts, recorded):
    """Translate a Keras 0.x/1.x config; the kernels are Theano's unless told otherwise."""
    backend = opts.conv_backend or recorded or "theano"
    t = keras1.translate(top, label, version, flips=backend == "theano", keep=opts.replace)
    if opts.conv_backend is None and recorded is None and t.has_kernels:
        warnings.warn(f"{label}: a Keras {t.dialect if t.dialect == '0' else '1'}.x model, whose files do not "
                      "record the backend that trained them; its convolution kernels are read as Theano's (flipped "
                      "to cross-correlation kernels), the backend of the Keras 0.x/1.x era. Pass "
                      "conv_backend='tensorflow' if TensorFlow trained it (conv_backend='theano' to confirm and "
                      "silence this warning)", UserWarning, stacklevel=5)
    return t


def _load_keras_archive(f, label, config_text, opts) -> Loaded:
    try:
        with zipfile.ZipFile(f) as zf:
            names = set(zf.namelist())
            pickles = sorted(n for n in names if n.rsplit("/", 1)[-1] in ("data.pkl", "constants.pkl"))
            if pickles and "config.json" not in names:
                raise ModelFileError(f"{label}: a PyTorch checkpoint (a zip holding {pickles[0]!r}, as torch.save "
                                     f"and torch.jit.save write), not a Keras model. {PYTORCH_ADVICE}")
            for need in ("config.json", "model.weights.h5"):
                if need not in names:
                    raise ModelFileError(f"{label}: the .keras archive has no {need!r} (entries: "
                                         f"{sorted(names)[:10]})")
            config = config_text if config_text is not None else _zip_read(zf, "config.json", MAX_CONFIG_BYTES, label)
            meta = _zip_read(zf, "metadata.json", 2**20, label) if "metadata.json" in names else None
            weights_buffer = _zip_read(zf, "model.weights.h5", MAX_WEIGHTS_ENTRY_BYTES, label)
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
    weights_label = f"{label} (model.weights.h5)"
    with hdf5.open_h5(weights_buffer, weights_label) as h5:
        weights = hdf5.Keras3Weights(h5, weights_label, _container_lookup(spec))
        if opts.conv_backend == "theano":
            weights = keras1.Keras1Weights(weights, keras1.flip_kernels(spec), label)
        return _build(spec, weights, len(weights_buffer), reader.keras_major, label, opts)


def _zip_read(zf, name, limit, label) -> bytearray:
    """An archive entry, decompressed into one buffer of its declared size.

    The declared sizes are checked first (the entry's size against ``limit``, a compressed
    entry's expansion against `hdf5.MAX_COMPRESSION_RATIO`), so a zip bomb is refused
    before anything is decompressed; the buffer is the only copy held.
    """
    info = zf.getinfo(name)
    size = info.file_size
    if size > limit:
        raise ModelFileError(f"{label}: {name!r} in the archive declares {size} bytes (limit {limit})")
    if info.compress_type != zipfile.ZIP_STORED and size > max(info.compress_size * hdf5.MAX_COMPRESSION_RATIO,
                                                               SMALL_ENTRY_BYTES):
        raise ModelFileError(f"{label}: {name!r} in the archive declares {size} bytes compressed into "
                             f"{info.compress_size} (more than {hdf5.MAX_COMPRESSION_RATIO}:1, "
                             "fastlift.io.hdf5.MAX_COMPRESSION_RATIO); refused before decompressing")
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    with zf.open(info) as f:
        while got < size:
            chunk = f.read(min(_ZIP_CHUNK, size - got))
            if not chunk:
                break
            view[got:got + len(chunk)] = chunk
            got += len(chunk)
        if got < size or f.read(1):  # reading to the end also checks the CRC
            raise ModelFileError(f"{label}: {name!r} in the archive does not hold the {size} bytes it declares")
    return buffer


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


def _layer_paths(spec: ModelSpec, prefix=()):
    """(path, class_name) of every layer that may have weights, nested models walked."""
    for layer in spec.layers:
        path = prefix + (layer.name,)
        if layer.inner is not None:
            yield from _layer_paths(layer.inner, path)
        elif layer.class_name != "InputLayer":
            yield path, layer.class_name


def _build(spec, weights, file_bytes, keras_major, label, opts) -> Loaded:
    arrays = {}
    for path, class_name in _layer_paths(spec):
        for _, a in weights.get(path, class_name) or ():
            arrays.setdefault(a.path, a)
    hdf5.check_weight_budget(arrays.values(), file_bytes, weights.label)
    builder = Builder(label, weights, keras_major or 2, layer_classes=opts.layer_classes, input_shapes=opts.input_shape,
                      replace=opts.replace)
    try:
        model = builder.build(spec)
    except RecursionError:
        raise ModelFileError(f"{label}: the model graph is too deep to build") from None
    builder.check_replace_used()
    return Loaded(model, builder.origins, spec, keras_major or 2, label)


__all__ = ["Loaded", "load_model", "read_keras"]
