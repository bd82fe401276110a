"""ONNX files -> a fastlift `Model` (the route for PyTorch, TensorFlow and JAX models).

The file is parsed with the ``onnx`` package's protobuf classes (a well-kept schema library
instead of a hand-written protobuf reader); nothing in it is executed, and neither onnxruntime
nor torch is needed. The graph is walked once in its (topological) node order:

* tensors whose values do not depend on the model input (initializers, ``Constant`` nodes, the
  ``Shape -> Gather -> Concat -> Reshape`` chains exporters emit when shapes are static) are
  folded to numpy arrays at load time (`fastlift.io.onnx_fold`);
* every other tensor becomes a fastlift `Node` of the same shape (without the batch axis), built
  by the converter of its op (`fastlift.io.onnx_graph`, `fastlift.io.onnx_ops`). The model keeps the file's layout:
  PyTorch models are channels-first, ``(N, 4, L)`` for DNA, and the loaded model says so
  (``model.input_layout == "channels_first"``).

Node names are the ONNX tensor names (a graph output keeps its output name), so
``target_layer=`` takes the names Netron shows. An op outside `fastlift.io.onnx_ops.SUPPORTED_OPS` raises
`NotImplementedError` naming the node, its op type and the supported list.
"""

from __future__ import annotations

import os
import stat

import numpy as np

from .. import _validate
from ..model import Model
from .errors import ModelFileError

#: ONNX opsets (default domain) whose op semantics this reader implements.
MIN_OPSET, MAX_OPSET = 9, 25
#: Largest ONNX file read (the protobuf message limit).
MAX_ONNX_BYTES = 2**31 - 1
#: The first byte of a serialized ModelProto: field 1 (ir_version), varint. Serializers write
#: fields in field-number order, and ir_version is always set.
ONNX_FIRST_BYTE = 0x08
#: ``TensorProto.DataLocation.EXTERNAL``
_EXTERNAL = 1


def looks_like_onnx(head: bytes) -> bool:
    """Whether a file's first bytes start an ONNX ModelProto (its ir_version field)."""
    return len(head) >= 2 and head[0] == ONNX_FIRST_BYTE and 1 <= head[1] < 0x80


def _import_onnx(label):
    try:
        import onnx
    except ImportError:
        raise ImportError(f"{label} is an ONNX file; reading it needs the 'onnx' package: "
                          "pip install 'fastlift[onnx]'") from None
    return onnx


def load_onnx(source, *, input_shape=None, label=None, path=None) -> Model:
    """Load an ONNX model from its bytes or an open file (no code in it is run).

    `fastlift.load_model` calls this for files that start like an ONNX model; use it directly for
    bytes in memory (e.g. from ``torch.onnx.export`` into a ``BytesIO``).

    Parameters
    ----------
    source : bytes or binary file object
        The serialized model, or a file opened for reading on it.
    input_shape : tuple or dict {input name: tuple}, optional
        Input shape(s) without the batch axis, for inputs whose dimensions the file leaves
        dynamic (e.g. a sequence length exported with ``dynamic_axes``).
    label : str, optional
        How messages name the model (default: "the ONNX model").
    path : str, optional
        Where ``source`` was read from. Tensors stored outside the model (external data) are
        read only with a path, and only from regular files in its folder.

    Returns
    -------
    Model
        Channels-first inputs as in the file (``model.input_layout == "channels_first"``).

    Raises
    ------
    ModelFileError
        Truncated or corrupt file, unsupported opset version, a malformed graph, refused
        external data.
    NotImplementedError
        An op (or an op option) fastlift has no rule for; the message names the node, its op
        type and the supported ops.
    ImportError
        The ``onnx`` package is not installed.
    """
    from .onnx_graph import Converter

    label = label or "the ONNX model"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(MAX_ONNX_BYTES + 1)
        if len(data) > MAX_ONNX_BYTES:
            raise ModelFileError(f"{label}: larger than {MAX_ONNX_BYTES} bytes, the ONNX (protobuf) limit")
    else:
        raise TypeError(f"source must be the bytes of an ONNX model or a binary file opened on one; got "
                        f"{type(source).__name__} (fl.load_model takes paths)")
    input_shape = _validate.input_shape_arg(input_shape)
    proto = parse_model(data, label)
    opset = check_opsets(proto, label)
    base_dir = None if path is None else os.path.dirname(os.path.abspath(os.fspath(path)))
    tensors = ExternalData(base_dir, label)
    return Converter(proto, label, tensors, input_shape, opset).build()


def parse_model(data: bytes, label: str):
    """``onnx.ModelProto`` from bytes; ModelFileError if truncated, corrupt or not a model."""
    onnx = _import_onnx(label)
    if not data:
        raise ModelFileError(f"{label}: the file is empty")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeError or ValueError
        raise ModelFileError(f"{label}: not a readable ONNX model (truncated or corrupt?): "
                             f"{type(e).__name__}: {e}") from None
    if proto.ir_version < 3 or not proto.HasField("graph"):
        raise ModelFileError(f"{label}: not a readable ONNX model (truncated or corrupt?): "
                             f"ir_version {proto.ir_version}, {'a' if proto.HasField('graph') else 'no'} graph")
    if proto.graph.sparse_initializer:
        raise NotImplementedError(f"{label}: sparse initializers ({proto.graph.sparse_initializer[0].values.name!r})"
                                  " are not supported")
    return proto


def check_opsets(proto, label: str) -> int:
    """The model's opset of the default ONNX domain, in [MIN_OPSET, MAX_OPSET], or ModelFileError.
    (Nodes of other domains are refused one by one, naming the node.)"""
    versions = {}
    for imp in proto.opset_import:
        versions[imp.domain or "ai.onnx"] = imp.version
    if "ai.onnx" not in versions:
        raise ModelFileError(f"{label}: declares no opset of the default ONNX domain (opset_import: "
                             f"{sorted(versions.items())}); truncated or corrupt?")
    v = versions["ai.onnx"]
    if not MIN_OPSET <= v <= MAX_OPSET:
        raise ModelFileError(f"{label}: uses ONNX opset {v}; fastlift reads opsets {MIN_OPSET} to {MAX_OPSET} "
                             f"(re-export it, e.g. torch.onnx.export(..., opset_version=17))")
    return v


class ExternalData:
    """Reads tensors an ONNX file keeps in other files, under the rules that make that safe.

    A tensor's ``location`` must be a plain relative path inside the model's folder (no absolute
    path, no ``..``, no symbolic link leading out of it) to a regular file; its ``offset`` and
    ``length`` must lie inside that file and ``length`` must equal the tensor's size. Sizes are
    checked before anything is read. A model given as bytes has no folder: external data is
    refused.
    """

    def __init__(self, base_dir, label):
        self.base_dir, self.label = base_dir, label

    def array(self, tensor, what) -> np.ndarray:
        """The numpy value of a TensorProto (inline or external)."""
        from onnx import numpy_helper

        if tensor.data_location == _EXTERNAL:
            tensor = self._inline(tensor, what)
        try:
            value = np.array(numpy_helper.to_array(tensor))
        except Exception as e:  # noqa: BLE001 - malformed tensors raise many kinds of error
            raise ModelFileError(f"{self.label}: {what}: unreadable tensor {tensor.name!r}: "
                                 f"{type(e).__name__}: {e}") from None
        if value.dtype.kind == "V" and "float" in value.dtype.name:
            # bfloat16 / float8 (ml_dtypes): numpy arithmetic and the layers take float32
            value = value.astype(np.float32)
        return value

    def _inline(self, tensor, what):
        from onnx import TensorProto, helper

        info = {e.key: e.value for e in tensor.external_data}
        name = tensor.name
        where = f"{self.label}: {what}: tensor {name!r} is stored outside the model file"
        if self.base_dir is None:
            raise ModelFileError(f"{where} ({info.get('location')!r}); a model given as bytes cannot refer to "
                                 "other files")
        location = info.get("location", "")
        if not location or os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in location \
                or "\0" in location:
            raise ModelFileError(f"{where}: its location {location!r} must be a relative path inside the "
                                 "model's folder")
        parts = location.replace("\\", "/").split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ModelFileError(f"{where}: its location {location!r} may not contain '..', '.' or empty parts")
        full = os.path.join(self.base_dir, *parts)
        real_base = os.path.realpath(self.base_dir)
        real = os.path.realpath(full)
        if os.path.commonpath([real_base, real]) != real_base:
            raise ModelFileError(f"{where}: {location!r} leads outside the model's folder (symbolic link?)")
        try:
            st = os.stat(real)
        except OSError as e:
            raise ModelFileError(f"{where}: {location!r} cannot be opened: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ModelFileError(f"{where}: {location!r} is not a regular file")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else st.st_size - offset
        except ValueError:
            raise ModelFileError(f"{where}: offset/length {info.get('offset')!r}/{info.get('length')!r} are "
                                 "not integers") from None
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        except Exception:  # noqa: BLE001 - an unknown data type
            raise ModelFileError(f"{where}: unknown data type {tensor.data_type}") from None
        expect = int(np.prod(tensor.dims, dtype=np.int64)) * itemsize
        if offset < 0 or length < 0 or offset + length > st.st_size:
            raise ModelFileError(f"{where}: bytes [{offset}, {offset + length}) lie outside {location!r} "
                                 f"({st.st_size} bytes)")
        if length != expect:
            raise ModelFileError(f"{where}: {length} bytes in {location!r}, but shape {list(tensor.dims)} needs "
                                 f"{expect}")
        # O_NONBLOCK: should the path have become a FIFO since the stat above, opening it does not wait
        # for a writer (the fstat below refuses it)
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ModelFileError(f"{where}: {location!r} is not a regular file")
            f.seek(offset)
            raw = f.read(length)
        if len(raw) != length:
            raise ModelFileError(f"{where}: {location!r} ended after {len(raw)} of {length} bytes")
        out = TensorProto()
        out.CopyFrom(tensor)
        out.data_location = 0
        del out.external_data[:]
        out.raw_data = raw
        return out


__all__ = ["MAX_OPSET", "MIN_OPSET", "load_onnx", "looks_like_onnx"]
