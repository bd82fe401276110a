"""Chunking examples × references.

A chunk holds whole examples (all K references of each), so every per-example mean
over references is computed inside one chunk, in reference order, in float64: the
result does not depend on the chunk size (DESIGN decision 3). The scheduler sees a call
only through `Work` (inputs, references, seed, backend), never the model or the rules.

Reference rows of a chunk are either *shared* (the same K rows for every example:
zeros, a flat background, a fixed set; forwarded once per call, kept by the session) or
*per example* (``n·K`` rows, example-major). Pair ``p = e·K + k`` compares example
``e`` with its reference ``k``: ``pair_x[p] = e`` and ``pair_r[p] = k`` (shared) or
``e·K + k`` (per example).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import references as refs_mod
from .fuse import DerivedActs
from .progress import Progress

#: References per example assumed when a callable's count is not known before it runs.
DEFAULT_K_GUESS = 10


def auto_batch_size(n_examples: int, rows_per_example: int, itemsize: int, node_values: int, unfold_values: int,
                    budget: int) -> int:
    """Examples per chunk so that one chunk's arrays fit ``budget`` bytes.

    ``rows_per_example``: pairs (or integrated-gradient points) per example; ``node_values``: the
    values of one row over all nodes; ``unfold_values``: the largest unfolded convolution input
    of one row. The estimate counts ~4 per-pair arrays per node where fewer are alive at once;
    that overestimate is kept on purpose: smaller chunks keep a layer's per-pair arrays in cache
    (bench/README.md: BPNet-like DeepLIFT ran fastest with 1-example chunks).
    """
    k = max(rows_per_example, 1)
    per_example = itemsize * (node_values * (2 + 4 * k) + unfold_values * (1 + k))
    return int(max(1, min(n_examples, budget // max(per_example, 1))))


@dataclass
class Work:
    """What the scheduler needs of a call: the inputs (host arrays in the compute dtype), their
    normalised references, the seed of generated references, and the backend the rows go to."""

    xs: list
    sources: list
    input_names: list
    seed: int
    ops: Any
    dtype: Any
    shared_acts: Any = None  # a `SharedReferenceActs`, or None
    shared_key: Any = None  # what the forward computes (hashable): part of the memo's key


class Chunk:
    """Examples [lo, hi) with their reference rows and pair indices."""

    def __init__(self, work: Work, lo, hi, shared_cache):
        self.work, self.lo, self.hi = work, lo, hi
        ops, dt = work.ops, work.dtype
        n = hi - lo
        self.x_host = [x[lo:hi] for x in work.xs]
        self.x_rows = [ops.asarray(x, dt) for x in self.x_host]
        sources = work.sources
        self.shared = all(s.spec is None and s.per_example is None for s in sources)
        if self.shared:
            k = max(s.shared.shape[0] for s in sources)
            self._ref_host = [np.broadcast_to(s.shared, (k,) + s.shared.shape[1:]) for s in sources]
            pair_r = np.tile(np.arange(k), n)
        else:
            per = []
            for name, s, xh in zip(work.input_names, sources, self.x_host):
                if s.per_example is not None:
                    per.append(s.per_example[lo:hi])
                elif s.spec is not None:
                    label = "references" if len(sources) == 1 else f"references[{name!r}]"
                    per.append(np.stack([refs_mod.generated(s.spec, xh[e:e + 1], work.seed, lo + e, label)
                                         for e in range(n)]))
                else:
                    per.append(np.broadcast_to(s.shared[None], (n,) + s.shared.shape))
            ks = {p.shape[1] for p in per}
            k = max(ks)
            if ks - {1, k}:
                raise ValueError(f"references: every input must have the same number of references K (or 1); "
                                 f"got {[p.shape[1] for p in per]}")
            self._ref_host = [np.broadcast_to(p, (n, k) + p.shape[2:]).reshape((n * k,) + p.shape[2:])
                              for p in per]
            pair_r = np.arange(n * k)
        self.n_refs = k
        self._shared_cache = shared_cache
        self.pair_x_host = np.repeat(np.arange(n), k)
        self.pair_r_host = pair_r
        self.pair_x = ops.asarray(self.pair_x_host, np.int64)
        self.pair_r = ops.asarray(pair_r, np.int64)

    def mapped(self, fn, shared_cache) -> Chunk:
        """This chunk with ``fn`` applied to its example and reference rows (host arrays,
        leading row axis), e.g. their reverse complements: the same examples, references and
        pairs. ``shared_cache`` holds the mapped shared rows' activations for the call."""
        out = copy.copy(self)
        out.x_host = [fn(x) for x in self.x_host]
        out.x_rows = [self.work.ops.asarray(x, self.work.dtype) for x in out.x_host]
        out._ref_host = [fn(r) for r in self._ref_host]
        out._shared_cache = shared_cache
        return out

    def _ref_rows(self):
        """The chunk's reference rows on the device, one array per input."""
        return [self.work.ops.asarray(r, self.work.dtype) for r in self._ref_host]

    def _known_ref_acts(self):
        """For a chunk of shared references: (their activations from this call or the session's
        memo, or None; the memo's entry for the rows, or None without a memo)."""
        if "acts" in self._shared_cache:
            return self._shared_cache["acts"], None
        memo = self.work.shared_acts
        entry = memo.entry(self._ref_host, self.work.shared_key) if memo is not None else None
        acts = memo.get(self._ref_host, entry=entry) if memo is not None else None
        if acts is not None:
            self._shared_cache["acts"] = acts
        return acts, entry

    def _offer_ref_acts(self, acts, entry):
        """Hand freshly computed shared-row activations to the session's memo (kept from the rows'
        second call on) and to this call's later chunks."""
        if self.work.shared_acts is not None:
            self.work.shared_acts.put(self._ref_host, acts, entry=entry)
        self._shared_cache["acts"] = acts
        return acts

    def _forwards_shared_rows_along(self, entry, keep) -> bool:
        """Whether shared reference rows that are not at hand go through the chunk's own forward
        pass: when this chunk is the whole call (no later chunk reuses them), the pass keeps every
        activation and the session's memo would not keep them (the first time it sees these rows:
        kept activations must own their memory, not views of the examples' arrays). One pass of
        n + K rows instead of two: a genomics scan's one region a call with its own shuffles no
        longer runs a one-row pass through every layer (bench/README.md)."""
        memo = self.work.shared_acts
        return (keep is None and self.lo == 0 and self.hi == self.work.xs[0].shape[0]
                and (memo is None or not memo.would_keep(entry)))

    def acts(self, forward, lead=None, keep=None):
        """(example activations, reference activations) of this chunk, after those of ``lead``
        rows (one device array per input, e.g. integrated-gradient points) when given.

        ``forward(rows, keep=None)`` runs the model; ``keep`` limits the activations retained
        from the pass over the chunk's own rows (`Model.forward`). Shared reference rows are
        always forwarded in full: their activations are memoised for later runs. They join the
        chunk's pass where `_forwards_shared_rows_along` (one call, one chunk, first sighting).

        The examples, their per-example references and any lead rows go through one forward
        pass: together they fill the fixed-size GEMM blocks of dense layers that each group
        alone would mostly pad. Row results do not depend on the rows beside them, so the
        activations are the same as from separate passes.
        """
        xp = self.work.ops.xp
        groups = ([lead] if lead is not None else []) + [self.x_rows]
        known, entry = self._known_ref_acts() if self.shared else (None, None)
        along = not self.shared or (known is None and self._forwards_shared_rows_along(entry, keep))
        if along:
            groups.append(self._ref_rows())
        rows = [xp.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*groups)]
        both = forward(rows) if keep is None else forward(rows, keep=keep)
        bounds = np.cumsum([0] + [len(g[0]) for g in groups])
        split = [both.rows(lo, hi) if isinstance(both, DerivedActs) else {node: a[lo:hi] for node, a in both.items()}
                 for lo, hi in zip(bounds[:-1], bounds[1:])]
        if self.shared and along:
            self._offer_ref_acts(split[-1], entry)
        elif self.shared:  # their own pass, whole whatever ``keep``
            split.append(known if known is not None else self._offer_ref_acts(forward(self._ref_rows()), entry))
        return tuple(split) if lead is not None else (split[0], split[1])

    def ref_rows_per_pair(self):
        """Reference input rows of every pair, numpy (P, *S) per input."""
        return [np.asarray(r, dtype=self.work.dtype)[self.pair_r_host] for r in self._ref_host]


class SharedReferenceActs:
    """Forward activations of shared reference rows (zeros, a fixed background, a fixed set),
    kept by a session for its later calls with the same rows: a small model explained in many
    calls otherwise pays a whole padded GEMM block per layer each time for one zero row. Keyed
    by the rows' bytes and by what the forward computed (``key``); the session fixes the model,
    the weights, the dtype and the backend.

    Rows are kept from their second call on: rows that come once (a genomics scan's shuffles of
    each region) are never kept, so they hold no memory and push nothing out. At most `entries`
    sets are kept, the most recently used first, and the digests of the last `seen` calls'
    rows are remembered."""

    def __init__(self, entries: int = 4, seen: int = 16):
        self.entries, self.seen = entries, seen
        self._items: list = []  # [((digest, key), acts)]
        self._seen: list = []  # [(digest, key)] of the most recent puts, newest first

    @staticmethod
    def _digest(rows) -> str:
        import hashlib

        digest = hashlib.blake2b(digest_size=16)
        for r in rows:
            r = np.ascontiguousarray(r)
            digest.update(f"{r.shape}{r.dtype.str}".encode())
            digest.update(r.view(np.uint8).reshape(-1))
        return digest.hexdigest()

    def entry(self, rows, key=None):
        """The memo's key for ``rows`` and ``key`` (a digest of the rows' bytes: compute it once
        per call and hand it to `get` and `put`)."""
        return (self._digest(rows), key)

    def get(self, rows, key=None, entry=None):
        wanted = self.entry(rows, key) if entry is None else entry
        for k, acts in self._items:
            if k == wanted:
                return acts
        return None

    def would_keep(self, entry) -> bool:
        """Whether `put` would keep activations offered for this entry (their rows were offered
        before)."""
        return entry in self._seen

    def put(self, rows, acts, key=None, entry=None) -> bool:
        """Offer the activations of ``rows``: kept if these rows were offered before (returns
        whether they were kept)."""
        entry = self.entry(rows, key) if entry is None else entry
        repeat = entry in self._seen
        self._seen = [entry] + [e for e in self._seen if e != entry][:self.seen - 1]
        if not repeat:
            return False
        for a in acts.values():  # shared with later calls: nothing may write to them
            if isinstance(a, np.ndarray):
                a.flags.writeable = False
        self._items = [(entry, acts)] + [e for e in self._items if e[0] != entry][:self.entries - 1]
        return True

    def clear(self):
        self._items, self._seen = [], []


def chunks(work: Work, batch_size: int, progress: bool = False):
    """Yield the call's chunks of ``batch_size`` examples in order, printing progress if asked.

    With a backend that computes on a device (``ops.prefetch_chunks``, CupyOps), the next chunk
    (slicing the inputs, generating its references, uploading) is built on a host thread while
    the caller works on the current one, so host work overlaps device compute (CupyOps uploads
    through pinned buffers on its own copy stream). The chunks, and so the results, are the same
    either way.
    """
    shared_cache: dict = {}
    n = work.xs[0].shape[0]
    bar = Progress(n, unit="examples") if progress else None
    bounds = [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]
    if work.ops.prefetch_chunks and len(bounds) > 1:
        made = _prefetched(work, bounds, shared_cache)
    else:
        made = (Chunk(work, lo, hi, shared_cache) for lo, hi in bounds)
    for chunk in made:
        yield chunk
        if bar:
            bar.update(chunk.hi)
    if bar:
        bar.close()


def _prefetched(work, bounds, shared_cache):
    """Chunks of ``bounds`` in order, each built while the previous one is in use."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="fastlift-prefetch") as pool:
        pending = pool.submit(Chunk, work, *bounds[0], shared_cache)
        for nxt in bounds[1:]:
            chunk = pending.result()
            pending = pool.submit(Chunk, work, *nxt, shared_cache)
            yield chunk
        yield pending.result()
