"""Chunking examples × references and accumulating per-example results.

A chunk holds whole examples (all K references of each), so every per-example mean
over references is computed inside one chunk, in reference order, in float64: the
result does not depend on the chunk size (DESIGN decision 3).

Reference rows of a chunk are either *shared* (the same K rows for every example:
zeros, a flat background, a fixed set; forwarded once per run and cached) or
*per example* (``n·K`` rows, example-major). Pair ``p = e·K + k`` compares example
``e`` with its reference ``k``: ``pair_x[p] = e`` and ``pair_r[p] = k`` (shared) or
``e·K + k`` (per example).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from . import references as refs_mod
from .layers.conv import _Conv

#: Working-memory budget for one chunk (activations, multipliers, temporaries).
MEMORY_BUDGET_BYTES = 512 * 2**20
DEFAULT_K_GUESS = 10


def auto_batch_size(plan) -> int:
    """Examples per chunk so that one chunk's arrays fit the budget: `MEMORY_BUDGET_BYTES`, or a
    share of the free device memory for a backend that reports it (``CupyOps.memory_budget``).

    The estimate counts ~4 per-pair arrays per node where fewer are alive at once; that
    overestimate is kept on purpose: smaller chunks keep a layer's per-pair arrays in cache.
    Measured (bench/README.md, 1 thread): BPNet-like DeepLIFT with 10 references ran at 14.2
    examples/s with 1-example chunks, 11.2 with 5 and 9.4 with 10; Basset-like was flat.
    """
    k = max([s.n_refs or DEFAULT_K_GUESS for s in plan.sources] + [1]) * max(plan.steps, 1)
    item = plan.dtype.itemsize
    act = sum(n.size for n in plan.model.nodes)
    im2col = max([n.size * int(np.prod(n.layer._ksize)) * n.layer._cin // max(n.shape[-1], 1)
                  for n in plan.model.nodes if isinstance(n.layer, _Conv)] + [0])
    # forward rows (example + its share of reference rows) and ~4 per-pair arrays per node
    per_example = item * (act * (2 + 4 * k) + im2col * (1 + k))
    budget = plan.ops.memory_budget() if hasattr(plan.ops, "memory_budget") else MEMORY_BUDGET_BYTES
    return int(max(1, min(plan.n, budget // max(per_example, 1))))


class Chunk:
    """Examples [lo, hi) with their reference rows and pair indices."""

    def __init__(self, plan, lo, hi, shared_cache):
        self.plan, self.lo, self.hi = plan, lo, hi
        ops, dt = plan.ops, plan.dtype
        n = hi - lo
        self.x_host = [x[lo:hi] for x in plan.xs]
        self.x_rows = [ops.asarray(x, dt) for x in self.x_host]
        sources = plan.sources
        self.shared = all(s.spec is None and s.per_example is None for s in sources)
        if self.shared:
            k = max(s.shared.shape[0] for s in sources)
            self._ref_host = [np.broadcast_to(s.shared, (k,) + s.shared.shape[1:]) for s in sources]
            pair_r = np.tile(np.arange(k), n)
        else:
            per = []
            for name, s, xh in zip(plan.model.input_names, sources, self.x_host):
                if s.per_example is not None:
                    per.append(s.per_example[lo:hi])
                elif s.spec is not None:
                    label = "references" if len(sources) == 1 else f"references[{name!r}]"
                    per.append(np.stack([refs_mod.generated(s.spec, xh[e:e + 1], plan.seed, lo + e, label)
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

    def ref_acts(self, forward):
        """Forward activations of this chunk's reference rows (shared rows: once per run, and on
        the host reused by later runs with the same rows, model weights, dtype and backend)."""
        if self.shared and "acts" in self._shared_cache:
            return self._shared_cache["acts"]
        memo = _shared_ref_memo(self.plan, self._ref_host) if self.shared else None
        acts = memo.get() if memo is not None else None
        if acts is None:
            acts = forward([self.plan.ops.asarray(r, self.plan.dtype) for r in self._ref_host])
            if memo is not None:
                memo.put(acts)
        if self.shared:
            self._shared_cache["acts"] = acts
        return acts

    def acts(self, forward, lead=None, keep=None):
        """(example activations, reference activations) of this chunk, after those of ``lead``
        rows (one device array per input, e.g. integrated-gradient points) when given.

        ``forward(rows, keep=None)`` runs the model; ``keep`` limits the activations retained
        from the pass over the chunk's own rows (`Model.forward`). Shared reference rows are
        always forwarded in full: their activations are memoised for later runs.

        The examples, their per-example references and any lead rows go through one forward
        pass: together they fill the fixed-size GEMM blocks of dense layers that each group
        alone would mostly pad. Row results do not depend on the rows beside them, so the
        activations are the same as from separate passes.
        """
        xp, n = self.plan.ops.xp, self.hi - self.lo
        groups = ([lead] if lead is not None else []) + [self.x_rows]
        if not self.shared:
            groups.append([self.plan.ops.asarray(r, self.plan.dtype) for r in self._ref_host])
        rows = [xp.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*groups)]
        both = forward(rows) if keep is None else forward(rows, keep=keep)
        bounds = np.cumsum([0] + [len(g[0]) for g in groups])
        split = [{node: a[lo:hi] for node, a in both.items()} for lo, hi in zip(bounds[:-1], bounds[1:])]
        if self.shared:
            split.append(self.ref_acts(forward))
        return tuple(split) if lead is not None else (split[0], split[1])

    def ref_rows_per_pair(self):
        """Reference input rows of every pair, numpy (P, *S) per input."""
        return [np.asarray(r, dtype=self.plan.dtype)[self.pair_r_host] for r in self._ref_host]


#: Shared-reference forward passes kept per model for later runs (most recent first).
SHARED_REF_MEMO_ENTRIES = 4


class _shared_ref_memo:
    """The forward activations of a run's shared reference rows, kept on the model for the next
    run that uses the same rows (zeros, a fixed background): a small model explained in many
    calls otherwise pays a whole padded GEMM block per layer each time for one zero row.

    Kept only for host backends (numpy arrays). The key holds the rows' bytes (a digest), the
    dtype and backend, and the identity of every weight array of the model (a replaced weight
    misses); the entry keeps those arrays alive so their identities stay unique.
    """

    def __init__(self, plan, ref_host):
        import hashlib

        self.model = plan.model
        if plan.ops.xp is not np:
            self.key = None
            return
        digest = hashlib.blake2b(digest_size=16)
        for r in ref_host:
            r = np.ascontiguousarray(r)
            digest.update(f"{r.shape}{r.dtype.str}".encode())
            digest.update(r.view(np.uint8).reshape(-1))
        self.weights = tuple(w for node in plan.model.nodes for w in node.layer.weights.values())
        self.key = (plan.ops.name, plan.dtype.str, digest.hexdigest())

    def _entries(self):
        return self.model.__dict__.setdefault("_shared_ref_acts", [])

    def get(self):
        if self.key is None:
            return None
        for key, weights, acts in self._entries():
            if key == self.key and len(weights) == len(self.weights) and all(
                    a is b for a, b in zip(weights, self.weights)):
                return acts
        return None

    def put(self, acts):
        if self.key is None:
            return
        for a in acts.values():  # shared with later runs: nothing may write to them
            a.flags.writeable = False
        entries = [e for e in self._entries() if e[0] != self.key]
        self.model.__dict__["_shared_ref_acts"] = [(self.key, self.weights, acts)] + \
            entries[:SHARED_REF_MEMO_ENTRIES - 1]


def chunks(plan):
    """Yield the run's chunks in example order, printing progress if asked.

    With a backend that computes on a device (``ops.prefetch_chunks``, CupyOps), the next chunk
    (slicing the inputs, generating its references, uploading) is built on a host thread while
    the caller works on the current one, so host work overlaps device compute (CupyOps uploads
    through pinned buffers on its own copy stream). The chunks, and so the results, are the same
    either way.
    """
    shared_cache: dict = {}
    bs = plan.batch_size
    bar = _Progress(plan.n) if plan.progress else None
    bounds = [(lo, min(lo + bs, plan.n)) for lo in range(0, plan.n, bs)]
    if getattr(plan.ops, "prefetch_chunks", False) and len(bounds) > 1:
        made = _prefetched(plan, bounds, shared_cache)
    else:
        made = (Chunk(plan, lo, hi, shared_cache) for lo, hi in bounds)
    for chunk in made:
        yield chunk
        if bar:
            bar.update(chunk.hi)
    if bar:
        bar.close()


def _prefetched(plan, bounds, shared_cache):
    """Chunks of ``bounds`` in order, each built while the previous one is in use."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="fastlift-prefetch") as pool:
        pending = pool.submit(Chunk, plan, *bounds[0], shared_cache)
        for nxt in bounds[1:]:
            chunk = pending.result()
            pending = pool.submit(Chunk, plan, *nxt, shared_cache)
            yield chunk
        yield pending.result()


class Accumulator:
    """Per-example outputs (mean over references) in a fixed order."""

    def __init__(self, plan):
        self.plan = plan
        n_t, n = len(plan.weights), plan.n
        dt = plan.dtype
        self.contrib = [np.zeros((n_t, n) + s.shape, dt) for s in plan.score_nodes]
        self.mult = [np.zeros((n_t, n) + s.shape, dt) for s in plan.score_nodes]
        self.hyp = [np.zeros((n_t, n) + s.shape, dt) for s in plan.score_nodes] if plan.hypothetical else None
        self.deltas = np.zeros((n_t, n))

    def _mean(self, a, k):
        ops = self.plan.ops
        if k == 1:  # the float64 mean of one value is that value
            return ops.to_numpy(a)
        out = ops.mean_over_refs(a.reshape(a.shape[0], -1), k)
        return ops.to_numpy(out).reshape((out.shape[0],) + a.shape[1:])

    def add(self, ti, si, chunk, contrib, mult, hyp):
        k, sl = chunk.n_refs, slice(chunk.lo, chunk.hi)
        self.mult[si][ti, sl] = self._mean(mult, k)
        # gradient and guided_backprop report the multipliers themselves
        self.contrib[si][ti, sl] = self.mult[si][ti, sl] if contrib is mult else self._mean(contrib, k)
        if hyp is not None:
            self.hyp[si][ti, sl] = self._mean(hyp, k)

    def add_deltas(self, ti, chunk, per_pair):
        k = chunk.n_refs
        self.deltas[ti, chunk.lo:chunk.hi] = per_pair.reshape(-1, k).mean(axis=1)

    def result(self):
        from .explain import Attributions

        plan = self.plan
        multi = plan.multi_target

        def shape_out(arrays):
            if arrays is None:
                return None
            arrays = [a if multi else a[0] for a in arrays]
            if plan.layers_form == "single" or (plan.layers_form == "inputs" and len(arrays) == 1):
                return arrays[0]
            if plan.layers_form == "inputs" and plan.x_is_dict:
                return {n.name: a for n, a in zip(plan.score_nodes, arrays)}
            return arrays

        no_delta = plan.method in ("gradient", "guided_backprop")
        deltas = None if no_delta else (self.deltas if multi else self.deltas[0])
        return Attributions(contributions=shape_out(self.contrib), multipliers=shape_out(self.mult),
                            hypothetical=shape_out(self.hyp), deltas=deltas,
                            target_layer=plan.target_node.name, layers=[n.name for n in plan.score_nodes])


class _Progress:
    """A dependency-free progress bar on stderr."""

    def __init__(self, total):
        self.total, self.t0 = max(total, 1), time.perf_counter()

    def update(self, done):
        frac = done / self.total
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        bar = "#" * int(30 * frac)
        sys.stderr.write(f"\r[{bar:<30}] {done}/{self.total} examples ({rate:.1f}/s)")
        sys.stderr.flush()

    def close(self):
        sys.stderr.write("\n")
