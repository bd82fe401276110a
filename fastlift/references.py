"""References: what each example is compared against.

One rule, no guessing from sizes (DESIGN "Public contract"). For an input X of shape
(N, *S):

* ``None`` -> one all-zero reference, forwarded once for the whole run;
* an array with X's number of dimensions that broadcasts to X -> one reference per
  example; with a leading 1 (e.g. ``(1, *S)`` or ``(1, 1, 4)``) it is the same for
  every example and forwarded once;
* an array with one more dimension: ``(N, K, *S)`` -> K references per example, or
  ``(1, K, *S)`` -> the same K references for every example (forwarded once);
* a callable ``f(X, rng)`` -> ``(N, K, *S)``, called once per example (``X`` of one
  row, ``rng`` seeded from ``(seed, example index)``) so that results do not depend
  on the batch size;
* a `ReferenceSpec` such as a generator from this module: `dinuc_shuffle`, `shuffle`,
  `kmer_shuffle` (K seeded shuffles of each one-hot example, generated in C; shuffle ``j``
  of example ``i`` depends only on ``(seed, i, j)``, so it equals
  ``fastlift.dinuc_shuffle(X, K, seed=seed)[i, j]``) or `flat` (one background row shared
  by every example, forwarded once).

Results are averaged over the K references.

The built-in generators work on one-hot sequences along the model's channel axis
(`fastlift.Model.channel_axis`): ``(N, L, 4)`` for Keras models, ``(N, 4, L)`` for PyTorch/ONNX
ones (`ReferenceSpec.for_layout`). A user's callable or generator sees and returns arrays in the
model's own layout.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _validate


class ReferenceSpec:
    """Base class of reference generators: ``generate(x, rng) -> (1, K, *S)`` for one example."""

    n_refs: int

    def generate(self, x, rng):  # pragma: no cover - interface
        raise NotImplementedError

    def for_layout(self, channel_axis: int) -> ReferenceSpec:
        """This generator for inputs whose channels lie on ``channel_axis`` of a batched array
        (-1 or 1). A user's generator works in the model's layout as it is: itself."""
        return self


class ShuffleReferences(ReferenceSpec):
    """K seeded shuffles of each one-hot example (see `fastlift.genomics`)."""

    def __init__(self, n_refs: int, kmer: int, name: str):
        if isinstance(n_refs, bool) or not isinstance(n_refs, numbers.Integral) or n_refs < 1:
            raise ValueError(f"{name}: the number of references must be a positive int; got {n_refs!r}")
        if isinstance(kmer, bool) or not isinstance(kmer, numbers.Integral) or kmer < 1:
            raise ValueError(f"{name}: kmer must be a positive int; got {kmer!r}")
        self.n_refs, self.kmer, self.name = int(n_refs), int(kmer), name

    def generate_indexed(self, x, seed: int, index: int):
        """(1, K, *S) shuffles of the one example ``x`` (1, *S), numbered ``index``."""
        from .genomics import _shuffle

        return _shuffle(x, self.n_refs, self.kmer, seed, [index], None, f"references={self!r}")

    def generate(self, x, rng):
        """(1, K, *S) shuffles of ``x`` (1, *S), seeded from ``rng``."""
        return self.generate_indexed(x, int(rng.integers(2**63)), 0)

    def for_layout(self, channel_axis):
        return self if channel_axis == -1 else _ChannelsFirst(self)

    def __repr__(self):
        if self.name == "kmer_shuffle":
            return f"kmer_shuffle({self.n_refs}, kmer={self.kmer})"
        return f"{self.name}({self.n_refs})"


class FlatReferences(ReferenceSpec):
    """One background row (e.g. base frequencies) at every position, shared by all examples."""

    def __init__(self, background):
        bg = _validate.numeric_array(background, "flat(background)").astype(np.float64)
        if bg.ndim != 1 or bg.size < 1 or np.any(bg < 0):
            raise ValueError(f"flat(background) must be a 1-D array of non-negative values (one per channel); "
                             f"got {np.asarray(background)!r}")
        self.background = bg
        self.n_refs = 1

    def shared_rows(self, shape, channel_axis: int = -1):
        """(1, *shape): the background broadcast over the example shape (computed once), along
        ``channel_axis`` of the batched array (-1: last, 1: first after the batch axis)."""
        c = shape[-1] if channel_axis == -1 else shape[0]
        if c != self.background.size:
            where = "last" if channel_axis == -1 else "first"
            raise ValueError(f"flat(background) has {self.background.size} values but the input has "
                             f"{c} channels ({where} axis of {shape})")
        bg = self.background if channel_axis == -1 else self.background.reshape((-1,) + (1,) * (len(shape) - 1))
        return np.broadcast_to(bg, (1,) + tuple(shape)).copy()

    def generate(self, x, rng):
        return self.shared_rows(x.shape[1:])[None]

    def __repr__(self):
        return f"flat({self.background.tolist()})"


def dinuc_shuffle(k: int = 20) -> ShuffleReferences:
    """K dinucleotide-preserving shuffles of each one-hot example (`fastlift.dinuc_shuffle`)."""
    return ShuffleReferences(k, 2, "dinuc_shuffle")


def shuffle(k: int = 20) -> ShuffleReferences:
    """K plain shuffles (random permutations of the positions) of each one-hot example."""
    return ShuffleReferences(k, 1, "shuffle")


def kmer_shuffle(k: int = 20, kmer: int = 3) -> ShuffleReferences:
    """K shuffles of each one-hot example keeping every ``kmer``-mer count (kmer=2: dinucleotides)."""
    return ShuffleReferences(k, kmer, "kmer_shuffle")


def flat(background=(0.3, 0.2, 0.2, 0.3)) -> FlatReferences:
    """A flat background reference, by default 40% GC over (A, C, G, T), shared by all examples."""
    return FlatReferences(background)


class _ChannelsFirst(ReferenceSpec):
    """A channels-last sequence generator serving (1, C, *positions) inputs: the positions (one
    axis longer than 1, as in ``(4, L)`` or ``(4, 1, L)``) become a (1, L, C) sequence and back."""

    def __init__(self, spec):
        self.spec = spec

    @property
    def n_refs(self):
        return self.spec.n_refs

    @n_refs.setter
    def n_refs(self, value):
        self.spec.n_refs = value

    def generate_indexed(self, x, seed, index):
        c, spatial = x.shape[1], x.shape[2:]
        if sum(n > 1 for n in spatial) > 1:
            raise ValueError(f"references={self.spec!r} shuffles sequences: the input must have one position axis "
                             f"besides the channels (e.g. (4, L) or (4, 1, L)); got shape {x.shape[1:]}")
        seq = np.ascontiguousarray(np.moveaxis(x, 1, -1).reshape(1, -1, c))
        made = self.spec.generate_indexed(seq, seed, index)  # (1, K, L, C)
        k = made.shape[1]
        return np.ascontiguousarray(np.moveaxis(made.reshape((1, k) + tuple(spatial) + (c,)), -1, 2))

    def __repr__(self):
        return repr(self.spec)


class CallableReferences(ReferenceSpec):
    """Wrap a user callable ``f(X, rng) -> (n, K, *S)``."""

    def __init__(self, func):
        self.func = func
        self.n_refs = None

    def generate(self, x, rng):
        return self.func(x, rng)


class RefSource:
    """The references of one input, normalised.

    ``shared`` (K, *S): the same K rows for every example, or ``per_example``
    (N, K, *S), or ``spec`` generating (1, K, *S) per example.
    """

    def __init__(self, shared=None, per_example=None, spec=None, n_refs=1):
        self.shared, self.per_example, self.spec, self.n_refs = shared, per_example, spec, n_refs


def prepare(model, references, xs, what="references") -> list[RefSource]:
    """Normalise ``references`` (None, array, callable, spec, or a list/dict of these, one
    per input) against the validated inputs ``xs``."""
    names = model.input_names
    if isinstance(references, dict):
        unknown = sorted(set(references) - set(names))
        if unknown:
            raise ValueError(f"{what} as a dict must be keyed by input names {names}; got unknown {unknown}")
        items = [references.get(n) for n in names]
    elif isinstance(references, (list, tuple)) and (len(names) > 1 or _is_per_input_list(references)):
        if len(references) != len(names):
            raise ValueError(f"{what} must hold {len(names)} entries, one per input {names}; "
                             f"got {len(references)}")
        items = list(references)
    else:
        if len(names) > 1 and references is not None:
            raise ValueError(f"the model has {len(names)} inputs {names}: pass {what} as a list or dict")
        items = [references] * len(names)
    sources = []
    for name, x, r in zip(names, xs, items):
        label = what if len(names) == 1 else f"{what}[{name!r}]"
        sources.append(_one_source(r, x, label, model.channel_axis))
    ks = {s.n_refs for s in sources if s.n_refs not in (None, 1)}
    if len(ks) > 1:
        raise ValueError(f"{what}: every input must have the same number of references K (or 1); got "
                         f"{[s.n_refs for s in sources]}")
    return sources


def _is_per_input_list(refs) -> bool:
    """A list of one entry per input (as X may be given as ``[X]``), not a nested list of numbers.

    ``[R]`` with R an array, callable, spec or None is the per-input form; reading it as an
    array would silently turn N per-example references into K = N shared ones.
    """
    return len(refs) > 0 and all(r is None or isinstance(r, (np.ndarray, ReferenceSpec)) or callable(r)
                                 for r in refs)


def _one_source(r, x, label, channel_axis=-1) -> RefSource:
    n, shape = x.shape[0], x.shape[1:]
    if r is None:
        return RefSource(shared=np.zeros((1,) + shape))
    if isinstance(r, ReferenceSpec):
        if hasattr(r, "shared_rows"):  # the same rows for every example: forwarded once
            rows = r.shared_rows(shape, channel_axis)
            return RefSource(shared=rows, n_refs=rows.shape[0])
        r = r.for_layout(channel_axis)
        return RefSource(spec=r, n_refs=r.n_refs)
    if callable(r):
        return RefSource(spec=CallableReferences(r), n_refs=None)
    arr = _validate.numeric_array(r, label, x.dtype)
    if arr.ndim == x.ndim:
        try:
            b = np.broadcast_shapes(arr.shape, x.shape)
        except ValueError:
            b = None
        if b == x.shape:
            if arr.shape[0] == 1:
                return RefSource(shared=np.broadcast_to(arr, (1,) + shape).copy())
            return RefSource(per_example=np.broadcast_to(arr, x.shape)[:, None])
    elif arr.ndim == x.ndim + 1 and arr.shape[2:] == shape and arr.shape[0] in (1, n) and arr.shape[1] >= 1:
        if arr.shape[0] == 1:
            return RefSource(shared=arr[0], n_refs=arr.shape[1])
        return RefSource(per_example=arr, n_refs=arr.shape[1])
    dims = ", ".join(map(str, shape))
    raise ValueError(f"{label} must broadcast to X's shape ({n}, {dims}) (one reference per example, e.g. "
                     f"(1, {dims})), or have shape ({n}, K, {dims}) or (1, K, {dims}) (K per example); "
                     f"got {arr.shape}")


def generated(spec: ReferenceSpec, x_one, seed: int, index: int, label: str) -> np.ndarray:
    """Run a generator for example ``index``; check and return (K, *S)."""
    if hasattr(spec, "generate_indexed"):  # built-in generators seed their C streams from (seed, index)
        made = spec.generate_indexed(x_one, seed, index)
    else:
        made = spec.generate(x_one, np.random.default_rng([seed, index]))
    out = _validate.numeric_array(made, f"{label} (returned by the reference callable)", x_one.dtype)
    want = x_one.shape[1:]
    if out.ndim != len(want) + 2 or out.shape[0] != 1 or out.shape[2:] != want or out.shape[1] < 1:
        raise ValueError(f"{label}: the reference callable must return shape (1, K, {', '.join(map(str, want))})"
                         f" for one example; got {out.shape}")
    if spec.n_refs is not None and out.shape[1] != spec.n_refs:
        raise ValueError(f"{label}: the reference callable returned {out.shape[1]} references for example "
                         f"{index} but {spec.n_refs} before; K must be constant")
    spec.n_refs = out.shape[1]
    return out[0]
