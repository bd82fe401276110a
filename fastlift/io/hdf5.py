"""HDF5 access (the only module besides `keras3` that touches h5py): open files safely and
expose Keras weights as lazily-read arrays.

Two weight layouts exist:

* **legacy** (Keras 2 / tf.keras / Keras 3 ``model.save("x.h5")`` and ``save_weights``
  to ``.h5``): one group per top-level layer with a ``weight_names`` attribute listing
  dataset paths such as ``conv1/kernel:0``; a nested model's group lists the weights
  of all its inner layers (``ibn/gamma:0``, ``block/sd/kernel``...).
* **Keras 3** (``model.weights.h5`` inside a ``.keras`` archive and ``*.weights.h5``):
  ``layers/<auto_name>/vars/<i>``, positional, with the layer's real name in the
  ``vars`` group's ``name`` attribute (older Keras 3 versions omit it; then layers are
  matched by Keras's own automatic naming, the snake-cased class name plus a counter).

Every read goes through `H5Array.read`, which checks the declared shape before any
data is read (a corrupt file cannot make fastlift allocate gigabytes) and turns every
h5py/HDF5 failure into `ModelFileError` naming the file and the layer.
"""

from __future__ import annotations

import io
import re

import h5py
import numpy as np

from .errors import ModelFileError

H5_ERRORS = (OSError, KeyError, RuntimeError, TypeError, ValueError, IndexError, AttributeError, SystemError)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def open_h5(source, label: str) -> h5py.File:
    """Open an HDF5 file read-only (``source``: a path or bytes)."""
    try:
        if isinstance(source, (bytes, bytearray)):
            return h5py.File(io.BytesIO(bytes(source)), "r")
        return h5py.File(source, "r")
    except H5_ERRORS as e:
        raise ModelFileError(f"{label}: not a readable HDF5 file (truncated or corrupt?): {e}") from None


def attr_text(obj, key, label):
    """A string attribute (bytes or str) or None when absent."""
    try:
        if key not in obj.attrs:
            return None
        value = obj.attrs[key]
    except H5_ERRORS as e:
        raise ModelFileError(f"{label}: cannot read the HDF5 attribute {key!r}: {e}") from None
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"{label}: the HDF5 attribute {key!r} is not UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise ModelFileError(f"{label}: the HDF5 attribute {key!r} is not text (found {type(value).__name__})")


def attr_names(obj, key, label, where):
    """A list-of-strings attribute such as ``weight_names`` / ``layer_names``."""
    try:
        if key not in obj.attrs:
            return None
        value = obj.attrs[key]
    except H5_ERRORS as e:
        raise ModelFileError(f"{label}: {where}: cannot read the HDF5 attribute {key!r}: {e}") from None
    value = np.asarray(value)
    if value.size == 0:
        return []
    if value.ndim != 1:
        raise ModelFileError(f"{label}: {where}: attribute {key!r} is not a list of names")
    out = []
    for v in value.tolist():
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                raise ModelFileError(f"{label}: {where}: attribute {key!r} holds non-UTF-8 bytes") from None
        if not isinstance(v, str):
            raise ModelFileError(f"{label}: {where}: attribute {key!r} is not a list of names")
        out.append(v)
    return out


class H5Array:
    """A weight dataset, read on demand."""

    def __init__(self, dataset, path: str, label: str):
        self._ds, self.path, self.label = dataset, path, label
        try:
            self.shape = tuple(int(s) for s in dataset.shape)
            self.dtype = dataset.dtype
        except H5_ERRORS as e:
            raise ModelFileError(f"{label}: weight {path!r}: unreadable dataset header: {e}") from None

    def read(self, layer: str) -> np.ndarray:
        if self.dtype.kind not in "fiu":
            raise ModelFileError(f"{self.label}: layer {layer!r}: weight {self.path!r} has dtype {self.dtype}, "
                                 "not numbers")
        try:
            a = np.asarray(self._ds[()])
        except H5_ERRORS as e:
            raise ModelFileError(f"{self.label}: layer {layer!r}: cannot read weight {self.path!r} "
                                 f"(truncated or corrupt file?): {e}") from None
        if a.shape != self.shape:
            raise ModelFileError(f"{self.label}: layer {layer!r}: weight {self.path!r} read with shape {a.shape}, "
                                 f"declared {self.shape}")
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ModelFileError(f"{self.label}: layer {layer!r}: weight {self.path!r} contains NaN or Inf")
        return a


class Weights:
    """Weights of one file, looked up by layer path (tuple of layer names from the top model)."""

    def get(self, path: tuple, class_name: str) -> list[tuple[str, H5Array]] | None:
        """[(variable name, array)] of the layer (order as stored), or None if it has no entry."""
        raise NotImplementedError


class LegacyWeights(Weights):
    """``weight_names`` layout. ``root`` is the ``model_weights`` group or the file root."""

    def __init__(self, root, label):
        self.root, self.label = root, label
        self._nested_cache: dict[str, list] = {}

    def _group_weights(self, top):
        try:
            if top not in self.root:
                return None
            group = self.root[top]
        except H5_ERRORS as e:
            raise ModelFileError(f"{self.label}: cannot open the weights of layer {top!r}: {e}") from None
        if not isinstance(group, h5py.Group):
            raise ModelFileError(f"{self.label}: the weights of layer {top!r} are not an HDF5 group")
        names = attr_names(group, "weight_names", self.label, f"layer {top!r}")
        if names is None:
            raise ModelFileError(f"{self.label}: layer {top!r}: its weight group has no 'weight_names'")
        out = []
        for n in names:
            try:
                ds = group[n]
            except H5_ERRORS:
                raise ModelFileError(f"{self.label}: layer {top!r}: weight {n!r} is listed but missing from the "
                                     "file") from None
            if not isinstance(ds, h5py.Dataset):
                raise ModelFileError(f"{self.label}: layer {top!r}: weight {n!r} is not a dataset")
            out.append((n, H5Array(ds, f"{top}/{n}", self.label)))
        return out

    def get(self, path, class_name):
        top = path[0]
        if top not in self._nested_cache:
            self._nested_cache[top] = self._group_weights(top)
        entries = self._nested_cache[top]
        if entries is None:
            return None
        if len(path) == 1:
            return [(_var_name(n), a) for n, a in entries]
        # a layer inside a nested model: weights whose path names end with the inner chain
        chain = path[1:]
        out = []
        for n, a in entries:
            parts = [p for p in n.split("/") if p]
            owner = parts[:-1]
            if len(owner) >= len(chain) and tuple(owner[-len(chain):]) == chain:
                out.append((_var_name(n), a))
            elif len(owner) >= 1 and owner[-1] == chain[-1] and len(chain) > 1 and len(owner) == 1:
                out.append((_var_name(n), a))  # Keras 2 names inner weights by the innermost layer only
        return out


class Keras3Weights(Weights):
    """``layers/<auto>/vars/<i>`` layout of Keras 3 weight files."""

    def __init__(self, root, label, spec_lookup):
        self.root, self.label = root, label
        self.spec_lookup = spec_lookup  # path -> list of (class_name, layer name) of the container's layers

    def _container_group(self, path):
        """HDF5 group of the model containing layer ``path[-1]`` (walking nested models)."""
        group = self.root
        for depth in range(len(path) - 1):
            group = self._child(group, path[:depth + 1])
            if group is None:
                return None
        return group

    def _child(self, container_group, path):
        """The group of layer ``path[-1]`` inside ``container_group`` (which holds ``layers/``)."""
        try:
            if "layers" not in container_group:
                return None
            layers = container_group["layers"]
            keys = list(layers.keys())
        except H5_ERRORS as e:
            raise ModelFileError(f"{self.label}: cannot list the weight groups: {e}") from None
        want = path[-1]
        for key in keys:  # Keras >= 3.? records the real name
            try:
                g = layers[key]
                vars_group = g.get("vars")
                name = attr_text(vars_group, "name", self.label) if vars_group is not None else None
            except H5_ERRORS as e:
                raise ModelFileError(f"{self.label}: weight group {key!r}: {e}") from None
            if name == want:
                return g
        auto = _keras3_auto_names(self.spec_lookup(path[:-1]))
        key = auto.get(want)
        if key is not None and key in keys:
            return layers[key]
        return None

    def get(self, path, class_name):
        container = self._container_group(path)
        if container is None:
            return None
        g = self._child(container, path)
        if g is None:
            return None
        try:
            if "vars" not in g:
                return []
            v = g["vars"]
            keys = sorted(v.keys(), key=lambda k: int(k) if k.isdigit() else 1 << 30)
            out = []
            for k in keys:
                ds = v[k]
                if not isinstance(ds, h5py.Dataset):
                    raise ModelFileError(f"{self.label}: layer {path[-1]!r}: weight {k!r} is not a dataset")
                out.append((k, H5Array(ds, f"layers/.../{path[-1]}/vars/{k}", self.label)))
            return out
        except H5_ERRORS as e:
            raise ModelFileError(f"{self.label}: layer {path[-1]!r}: cannot read its weights: {e}") from None


def _var_name(path: str) -> str:
    """'conv1/kernel:0' -> 'kernel'."""
    last = path.rstrip("/").split("/")[-1]
    return last.split(":")[0]


def _snake(name: str) -> str:
    """Keras's automatic layer naming (keras.src.utils.naming.to_snake_case)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras3_auto_names(layers) -> dict:
    """{layer name: weight-group key} assuming Keras 3's positional automatic naming."""
    counts: dict[str, int] = {}
    out = {}
    for class_name, name in layers:
        base = _snake(class_name)
        k = counts.get(base, 0)
        counts[base] = k + 1
        out[name] = base if k == 0 else f"{base}_{k}"
    return out
