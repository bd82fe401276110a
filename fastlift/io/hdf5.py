"""HDF5 access: open model files safely and expose Keras weights as lazily-read arrays
(`check_members_local` also guards the score files `scores` opens).

Two weight layouts exist:

* **legacy** (Keras 2 / tf.keras / Keras 3 ``model.save("x.h5")`` and ``save_weights``
  to ``.h5``): one group per top-level layer with a ``weight_names`` attribute listing
  dataset paths such as ``conv1/kernel:0``; a nested model's group lists the weights
  of all its inner layers (``ibn/gamma:0``, ``block/sd/kernel``...).
* **Keras 3** (``model.weights.h5`` inside a ``.keras`` archive and ``*.weights.h5``):
  ``layers/<auto_name>/vars/<i>``, positional, with the layer's real name in the
  ``vars`` group's ``name`` attribute (older Keras 3 versions omit it; then layers are
  matched by Keras's own automatic naming, the snake-cased class name plus a counter).

Reading only the model file. HDF5 can take a dataset's bytes from other files (external
storage, virtual datasets) and let a name lead into another file (external links), and
libhdf5 follows all of these silently. So libhdf5 gets a file object, never a path to
open; every name is resolved here one link at a time (`resolve`), following hard links
and soft links that stay in the file and refusing external and user-defined links; and
every dataset is checked (`H5Array`) for its layout, external storage and allocated
storage before its shape is even asked for (a virtual dataset's shape can open its
sources). Nothing h5py offers does this: ``name in group`` and ``group[name]`` follow
external links, and an ``elink`` prefix only moves where they lead.

Sizes. A dataset declares its shape in a few bytes; `H5Array` requires contiguous data
to be stored in full, every chunk to be written, and compressed chunks to expand at most
`MAX_COMPRESSION_RATIO`-fold, and `check_weight_budget` bounds the total against the
file's size and `MAX_WEIGHT_BYTES` before any weight is read. Every failure is a
`ModelFileError` naming the file and the dataset or link.
"""

from __future__ import annotations

import io
import math

import h5py
import numpy as np
from h5py import h5d, h5l

from ..layers.base import snake_case
from .errors import ModelFileError

H5_ERRORS = (OSError, KeyError, RuntimeError, TypeError, ValueError, IndexError, AttributeError, SystemError)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: largest total size (bytes, as stored) of the weights one load reads; a larger model is refused
MAX_WEIGHT_BYTES = 8 * 2**30
#: largest factor by which a compressed weight may expand when read (deflate can reach ~1000)
MAX_COMPRESSION_RATIO = 100
#: weights up to this size are read whatever their compression (a zero bias compresses 1000:1)
SMALL_WEIGHT_BYTES = 2**20
#: soft links followed from one name before giving up (a chain this long is a loop)
MAX_SOFT_LINKS = 16
#: largest number of elements in a string attribute (model_config, layer_names, weight_names)
MAX_ATTR_ELEMENTS = 2**24


class BufferFile(io.RawIOBase):
    """A read-only binary file over a buffer, without copying it (`io.BytesIO` copies a
    bytearray, which would hold the weights of a ``.keras`` archive twice)."""

    def __init__(self, buffer):
        super().__init__()
        self._view = memoryview(buffer).cast("B")
        self._pos = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, b):
        out = memoryview(b).cast("B")
        n = max(0, min(len(out), len(self._view) - self._pos))
        out[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self):
        return self._pos


def open_h5(source, label: str) -> h5py.File:
    """Open HDF5 read-only from a binary file object or a buffer (bytes, bytearray).

    libhdf5 reads through that object only; it is never handed a path to open.
    """
    try:
        fileobj = source if hasattr(source, "readinto") else BufferFile(source)
        return h5py.File(fileobj, "r")
    except H5_ERRORS as e:
        raise ModelFileError(f"{label}: not a readable HDF5 file (truncated or corrupt?): {e}") from None


# ------------------------------------------------------------------------ names


def resolve(start, path: str, label: str):
    """The group or dataset ``path`` names below the group ``start`` (or from the file's root
    if it starts with ``/``); None when a name on the way does not exist.

    Each name is looked up as a link first: hard links are followed, soft links are resolved
    here (they name a path in the same file), anything else is refused.
    """
    return _resolve(start, path, label, [0], "")


def _resolve(start, path, label, hops, via):
    """`resolve`; ``hops`` counts the soft links followed, ``via`` says which (for messages)."""
    try:
        node = start.file["/"] if path.startswith("/") else start
        where = "" if path.startswith("/") else start.name.rstrip("/")
    except H5_ERRORS as e:
        raise ModelFileError(f"{label}: cannot read the HDF5 structure: {e}") from None
    for part in (p for p in path.split("/") if p):
        where = f"{where}/{part}"
        if not isinstance(node, h5py.Group):
            raise ModelFileError(f"{label}: {where!r}{via} is looked up inside {where.rsplit('/', 1)[0] or '/'!r}, "
                                 "which is not an HDF5 group")
        name = part.encode("utf-8", "surrogateescape")
        try:
            if part in (".", "..") or not node.id.links.exists(name):
                return None
            kind = node.id.links.get_info(name).type
            if kind == h5l.TYPE_HARD:
                node = node[part]
                continue
            value = node.id.links.get_val(name)
        except H5_ERRORS as e:
            raise ModelFileError(f"{label}: cannot read the HDF5 link {where!r}{via}: {e}") from None
        if kind == h5l.TYPE_SOFT:
            target = _text(value)
            hops[0] += 1
            if hops[0] > MAX_SOFT_LINKS:
                raise ModelFileError(f"{label}: the soft links from {where!r}{via} go through more than "
                                     f"{MAX_SOFT_LINKS} links (a loop?)")
            link = f" (through the soft link {where!r} -> {target!r}{via})"
            node = _resolve(node, target, label, hops, link)
            if node is None:
                raise ModelFileError(f"{label}: the HDF5 soft link {where!r} -> {target!r}{via} points to nothing "
                                     "in the file")
        elif kind == h5l.TYPE_EXTERNAL:
            filename, target = (_text(v) for v in value)
            raise ModelFileError(f"{label}: {where!r}{via} is an HDF5 external link (to {target!r} in file "
                                 f"{filename!r}); fastlift reads nothing outside the model file")
        else:
            raise ModelFileError(f"{label}: {where!r}{via} is a user-defined HDF5 link (type {kind}); fastlift "
                                 "follows only links inside the model file")
    return node


def _text(value) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def has(group, name: str, label: str) -> bool:
    """Whether ``group`` holds ``name`` (resolved as `resolve` does)."""
    return resolve(group, name, label) is not None


# ------------------------------------------------------------------- attributes


def _attr(obj, key, label, where):
    """The attribute's value, or None when absent; its size is checked before it is read."""
    try:
        if key not in obj.attrs:
            return None
        n = math.prod(obj.attrs.get_id(key).shape or ())
        if n > MAX_ATTR_ELEMENTS:
            raise ModelFileError(f"{label}: {where}the HDF5 attribute {key!r} declares {n} elements (at most "
                                 f"{MAX_ATTR_ELEMENTS} are read)")
        return obj.attrs[key]
    except H5_ERRORS as e:
        raise ModelFileError(f"{label}: {where}cannot read the HDF5 attribute {key!r}: {e}") from None


def attr_text(obj, key, label):
    """A string attribute (bytes or str) or None when absent."""
    value = _attr(obj, key, label, "")
    if value is None:
        return None
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
    value = _attr(obj, key, label, f"{where}: ")
    if value is None:
        return None
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


# --------------------------------------------------------------------- datasets


def stored_elsewhere(dcpl) -> str | None:
    """Why the dataset with creation property list ``dcpl`` takes its bytes from outside its
    file (virtual dataset, external storage), or None when it does not. Asked before the
    dataset's shape: a virtual dataset's shape can open its sources."""
    if dcpl.get_layout() == h5d.VIRTUAL:
        return "is a virtual dataset (its values would come from other datasets or files)"
    if dcpl.get_external_count() > 0:
        return f"uses external storage (its bytes live in the file {_text(dcpl.get_external(0)[0])!r})"
    return None


def check_members_local(group, label: str, error=ModelFileError) -> None:
    """Raise ``error`` unless every member of ``group`` is a hard link and every dataset among
    them stores its bytes in this file: what a flat file (a score file, an input array) must
    hold before h5py touches a member, since h5py follows external links and reads external
    storage and virtual sources silently."""
    try:
        for name in list(group.keys()):
            raw = name.encode("utf-8", "surrogateescape")
            kind = group.id.links.get_info(raw).type
            if kind != h5l.TYPE_HARD:
                what = {h5l.TYPE_SOFT: "a soft link", h5l.TYPE_EXTERNAL: "an external link (to another file)"}
                raise error(f"{label}: {name!r} is {what.get(kind, f'a user-defined link (type {kind})')}; "
                            "fastlift reads only what is stored in the file itself")
            obj = group[name]
            if isinstance(obj, h5py.Dataset):
                elsewhere = stored_elsewhere(obj.id.get_create_plist())
                if elsewhere:
                    raise error(f"{label}: dataset {name!r} {elsewhere}; fastlift reads nothing outside the file")
    except H5_ERRORS as e:
        if isinstance(e, error):
            raise
        raise error(f"{label}: cannot read the HDF5 structure: {e}") from None


class H5Array:
    """A weight dataset, read on demand; its storage is checked when it is found.

    Attributes
    ----------
    path : str
        Where the dataset is in the file (for messages).
    shape, dtype
        As declared.
    nbytes : int
        The bytes reading it yields.
    storage : int
        The bytes it occupies in the file.
    """

    def __init__(self, dataset, path: str, label: str):
        self._ds, self.path, self.label = dataset, path, label
        try:
            dcpl = dataset.id.get_create_plist()
            layout = dcpl.get_layout()
            elsewhere = stored_elsewhere(dcpl)
            if elsewhere:
                raise self._refuse(f"{elsewhere}; fastlift reads nothing outside the model file")
            self.shape = tuple(int(s) for s in dataset.shape)
            self.dtype = dataset.dtype
            self.nbytes = math.prod(self.shape) * self.dtype.itemsize
            self.storage = int(dataset.id.get_storage_size())
            if layout == h5d.CHUNKED:
                self._check_chunks(dataset, dcpl)
            elif self.nbytes and self.storage < self.nbytes:
                what = ("was never written (the file stores no data for it, only a fill value)" if self.storage == 0
                        else f"declares {self.nbytes} bytes but stores {self.storage}")
                raise self._refuse(what)
        except ModelFileError:
            raise
        except H5_ERRORS as e:
            raise ModelFileError(f"{label}: weight {path!r}: unreadable dataset header: {e}") from None

    def _refuse(self, what):
        return ModelFileError(f"{self.label}: weight {self.path!r} {what}")

    def _check_chunks(self, dataset, dcpl):
        if not self.nbytes:
            return
        chunk = dataset.chunks
        expected = math.prod(-(-s // c) for s, c in zip(self.shape, chunk))
        written = dataset.id.get_num_chunks()
        if written < expected:
            raise self._refuse(f"was never written in full ({expected - written} of its {expected} chunks exist only "
                               "as a fill value)")
        if self.nbytes > max(self.storage * MAX_COMPRESSION_RATIO, SMALL_WEIGHT_BYTES):
            raise self._refuse(f"declares {self.nbytes} bytes compressed into {self.storage} (more than "
                               f"{MAX_COMPRESSION_RATIO}:1, fastlift.io.hdf5.MAX_COMPRESSION_RATIO); refused before "
                               "decompressing")

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


def check_weight_budget(arrays, file_bytes: int, label: str):
    """Refuse weights that the file cannot hold or that exceed `MAX_WEIGHT_BYTES`, before any
    is read. ``arrays``: every `H5Array` the load will read (each once)."""
    total = sum(a.nbytes for a in arrays)
    stored = sum(a.storage for a in arrays)
    if total > MAX_WEIGHT_BYTES:
        raise ModelFileError(f"{label}: the weights total {total} bytes, over the limit of {MAX_WEIGHT_BYTES} bytes "
                             "(fastlift.io.hdf5.MAX_WEIGHT_BYTES)")
    if stored > file_bytes:
        raise ModelFileError(f"{label}: the weights claim {stored} bytes of storage in a file of {file_bytes} bytes "
                             "(truncated or corrupt file?)")


# ---------------------------------------------------------------------- layouts


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
        group = resolve(self.root, top, self.label)
        if group is None:
            return None
        if not isinstance(group, h5py.Group):
            raise ModelFileError(f"{self.label}: the weights of layer {top!r} are not an HDF5 group")
        names = attr_names(group, "weight_names", self.label, f"layer {top!r}")
        if names is None:
            raise ModelFileError(f"{self.label}: layer {top!r}: its weight group has no 'weight_names'")
        out = []
        for n in names:
            ds = resolve(group, n, self.label)
            if ds is None:
                raise ModelFileError(f"{self.label}: layer {top!r}: weight {n!r} is listed but missing from the "
                                     "file")
            if not isinstance(ds, h5py.Dataset):
                raise ModelFileError(f"{self.label}: layer {top!r}: weight {n!r} is not a dataset")
            out.append((n, H5Array(ds, f"{group.name}/{n}", self.label)))
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
        # per container path: {layer name: its weight group}, built once (a lookup per layer that
        # scans every group would make loading quadratic in the number of layers)
        self._index: dict[tuple, dict] = {}

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
        parent = path[:-1]
        if parent not in self._index:
            self._index[parent] = self._layer_groups(container_group, parent)
        return self._index[parent].get(path[-1])

    def _layer_groups(self, container_group, parent):
        layers = resolve(container_group, "layers", self.label)
        if layers is None:
            return {}
        if not isinstance(layers, h5py.Group):
            raise ModelFileError(f"{self.label}: {layers.name!r} is not an HDF5 group")
        try:
            keys = list(layers.keys())
        except H5_ERRORS as e:
            raise ModelFileError(f"{self.label}: cannot list the weight groups: {e}") from None
        groups, named = {}, {}
        for key in keys:
            g = resolve(layers, key, self.label)
            groups[key] = g
            vars_group = resolve(g, "vars", self.label) if isinstance(g, h5py.Group) else None
            name = attr_text(vars_group, "name", self.label) if isinstance(vars_group, h5py.Group) else None
            if name is not None and name not in named:  # Keras >= 3.? records the real name
                named[name] = g
        out = {}
        for name, key in _keras3_auto_names(self.spec_lookup(parent)).items():
            if key in groups:
                out[name] = groups[key]
        out.update(named)
        return out

    def get(self, path, class_name):
        container = self._container_group(path)
        if container is None:
            return None
        g = self._child(container, path)
        if g is None:
            return None
        if not isinstance(g, h5py.Group):
            raise ModelFileError(f"{self.label}: layer {path[-1]!r}: its weights {g.name!r} are not an HDF5 group")
        v = resolve(g, "vars", self.label)
        if v is None:
            return []
        if not isinstance(v, h5py.Group):
            raise ModelFileError(f"{self.label}: layer {path[-1]!r}: {v.name!r} is not an HDF5 group")
        try:
            keys = sorted(v.keys(), key=lambda k: int(k) if k.isdigit() else 1 << 30)
        except H5_ERRORS as e:
            raise ModelFileError(f"{self.label}: layer {path[-1]!r}: cannot read its weights: {e}") from None
        out = []
        for k in keys:
            ds = resolve(v, k, self.label)
            where = f"{v.name}/{k}"
            if not isinstance(ds, h5py.Dataset):
                raise ModelFileError(f"{self.label}: layer {path[-1]!r}: weight {where!r} is not a dataset")
            out.append((k, H5Array(ds, where, self.label)))
        return out


def _var_name(path: str) -> str:
    """'conv1/kernel:0' -> 'kernel'."""
    last = path.rstrip("/").split("/")[-1]
    return last.split(":")[0]


def _keras3_auto_names(layers) -> dict:
    """{layer name: weight-group key} assuming Keras 3's positional automatic naming."""
    counts: dict[str, int] = {}
    out = {}
    for class_name, name in layers:
        base = snake_case(class_name)
        k = counts.get(base, 0)
        counts[base] = k + 1
        out[name] = base if k == 0 else f"{base}_{k}"
    return out


class Keras0Weights(Weights):
    """Keras 0.x weight files (``save_weights``): positional ``param_<i>`` datasets, in a
    group ``layer_<k>`` per layer of a Sequential model (the root has ``nb_layers``) or in
    one group ``graph`` for a whole Graph (split over its layers, in ``node_config`` order,
    by the number of arrays each layer stores).

    ``translated`` (`fastlift.io.keras1.Translated`): ``positions`` maps a Sequential
    layer's path to its group, ``counts`` gives each Graph layer's number of arrays,
    ``unknown`` the layers whose number of arrays is not known."""

    def __init__(self, root, label, translated):
        self.root, self.label, self.t = root, label, translated
        self._groups: dict[str, list] = {}
        self._slices = None

    def _params(self, key):
        if key not in self._groups:
            group = resolve(self.root, key, self.label)
            if not isinstance(group, h5py.Group):
                raise ModelFileError(f"{self.label}: the config is a Keras 0.x model, whose save_weights wrote groups "
                                     f"layer_<k>/param_<i>; the file has no group {key!r}")
            n = _attr(group, "nb_params", self.label, f"group {key!r}: ")
            if isinstance(n, np.ndarray) and n.shape == ():
                n = n[()]
            if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or not 0 <= n <= 2**16:
                raise ModelFileError(f"{self.label}: group {key!r} has no valid 'nb_params' attribute (found {n!r})")
            out = []
            for i in range(int(n)):
                ds = resolve(group, f"param_{i}", self.label)
                if not isinstance(ds, h5py.Dataset):
                    raise ModelFileError(f"{self.label}: weight '{key}/param_{i}' is missing or not a dataset")
                out.append((str(i), H5Array(ds, f"{group.name}/param_{i}", self.label)))
            self._groups[key] = out
        return self._groups[key]

    def _graph_slices(self):
        if self._slices is None:
            for path, cls in self.t.unknown.items():
                raise NotImplementedError(
                    f"{self.label}: layer {path[-1]!r} ({cls}): fastlift has no {cls} layer, and the weights of a "
                    "Keras 0.x Graph cannot be split over its layers without knowing how many arrays it stores")
            params = self._params("graph")
            slices, start = {}, 0
            for path, count in self.t.counts.items():
                slices[path] = (start, count)
                start += count
            if start != len(params):
                raise ModelFileError(f"{self.label}: the Graph's layers store {start} weight arrays; the file holds "
                                     f"{len(params)} (graph/nb_params)")
            self._slices = (params, slices)
        return self._slices

    def get(self, path, class_name):
        path = tuple(path)
        if path in self.t.positions:
            return self._params(self.t.positions[path])
        if not self.t.positions:  # a Graph
            params, slices = self._graph_slices()
            if path in slices:
                start, count = slices[path]
                return params[start:start + count]
        return []
