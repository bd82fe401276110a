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
* a `ReferenceSpec` such as a generator from this module.

Results are averaged over the K references.
"""

from __future__ import annotations

import numpy as np

from . import _validate


class ReferenceSpec:
    """Base class of reference generators: ``generate(x, rng) -> (1, K, *S)`` for one example."""

    n_refs: int

    def generate(self, x, rng):  # pragma: no cover - interface
        raise NotImplementedError


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
    elif isinstance(references, (list, tuple)) and len(names) > 1:
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
        sources.append(_one_source(r, x, label))
    ks = {s.n_refs for s in sources if s.n_refs not in (None, 1)}
    if len(ks) > 1:
        raise ValueError(f"{what}: every input must have the same number of references K (or 1); got "
                         f"{[s.n_refs for s in sources]}")
    return sources


def _one_source(r, x, label) -> RefSource:
    n, shape = x.shape[0], x.shape[1:]
    if r is None:
        return RefSource(shared=np.zeros((1,) + shape))
    if isinstance(r, ReferenceSpec):
        return RefSource(spec=r, n_refs=r.n_refs)
    if callable(r):
        return RefSource(spec=CallableReferences(r), n_refs=None)
    arr = _validate.numeric_array(r, label)
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
    rng = np.random.default_rng([seed, index])
    out = _validate.numeric_array(spec.generate(x_one, rng), f"{label} (returned by the reference callable)")
    want = x_one.shape[1:]
    if out.ndim != len(want) + 2 or out.shape[0] != 1 or out.shape[2:] != want or out.shape[1] < 1:
        raise ValueError(f"{label}: the reference callable must return shape (1, K, {', '.join(map(str, want))})"
                         f" for one example; got {out.shape}")
    if spec.n_refs is not None and out.shape[1] != spec.n_refs:
        raise ValueError(f"{label}: the reference callable returned {out.shape[1]} references for example "
                         f"{index} but {spec.n_refs} before; K must be constant")
    spec.n_refs = out.shape[1]
    return out[0]
