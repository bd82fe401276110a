"""The result of a call (`Attributions`) and the accumulator that fills it chunk by chunk.

Per-example outputs are means over the example's references, computed inside the chunk that
holds all of them (`Ops.mean_over_refs`, in a fixed order), and written at the example's rows:
the result does not depend on the chunk size (DESIGN decision 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Attributions:
    """Result of `deeplift` / `attribute`.

    Attributes
    ----------
    contributions : array or list/dict of arrays
        Shaped like the scored layer's output, (n_examples, *shape); with a list of
        targets, (n_targets, n_examples, *shape). Mean over references.
    multipliers : same structure
        Mean over references (for inputs after a RevealCancel split: (m⁺+m⁻)/2).
    hypothetical : same structure or None
        With ``hypothetical=True``: mean over references of m[l, i] - Σ_c ref[l, c]·m[l, c],
        the contribution base i would make at position l; for one-hot input its value at
        the present base equals the contribution summed over the last axis.
    deltas : array (n_examples,) or (n_targets, n_examples), or None
        Σ contributions - (f(x) - mean f(ref)) at the target: summation-to-delta error
        (None for methods without a reference: gradient, guided_backprop).
    target_layer : str, or list of str when ``target_layer`` was a list (one per target)
    layers : list of str
    """

    contributions: Any
    multipliers: Any
    hypothetical: Any
    deltas: Any
    target_layer: Any
    layers: list


class Accumulator:
    """Per-example outputs (mean over references) of one call, in a fixed order."""

    def __init__(self, plan, n_examples: int, x_is_dict: bool):
        self.plan, self.x_is_dict = plan, x_is_dict
        n_t, n, dt = len(plan.targets), n_examples, plan.dtype
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

    def average_with(self, other: Accumulator, map_back) -> None:
        """Average in ``other``'s outputs (the same examples scored another way, e.g. on the
        reverse-complement strand), each mapped back by ``map_back`` (one array of a scored
        layer's per-example outputs, (n, *shape)); the deltas average as they are."""
        for mine, theirs in ((self.contrib, other.contrib), (self.mult, other.mult), (self.hyp, other.hyp)):
            if mine is None:
                continue
            for a, b in zip(mine, theirs):
                for ti in range(a.shape[0]):
                    a[ti] = 0.5 * (a[ti] + map_back(b[ti]))
        self.deltas = 0.5 * (self.deltas + other.deltas)

    def result(self) -> Attributions:
        plan = self.plan
        multi = plan.multi_target

        def shape_out(arrays):
            if arrays is None:
                return None
            arrays = [a if multi else a[0] for a in arrays]
            if plan.layers_form == "single" or (plan.layers_form == "inputs" and len(arrays) == 1):
                return arrays[0]
            if plan.layers_form == "inputs" and self.x_is_dict:
                return {n.name: a for n, a in zip(plan.score_nodes, arrays)}
            return arrays

        no_delta = plan.method in ("gradient", "guided_backprop")
        deltas = None if no_delta else (self.deltas if multi else self.deltas[0])
        target_layer = ([t.node.name for t in plan.targets] if plan.multi_layer else plan.targets[0].node.name)
        return Attributions(contributions=shape_out(self.contrib), multipliers=shape_out(self.mult),
                            hypothetical=shape_out(self.hyp), deltas=deltas, target_layer=target_layer,
                            layers=[n.name for n in plan.score_nodes])
