"""The backward walk: multipliers from a target back to the scored nodes, pair by pair.

`Context` is what layers see during backward for one chunk (activations of the unique example
and reference rows, the pair indices, lazily computed Δ and RevealCancel splits); `backward`
walks the nodes in reverse topological order and lets each layer apply its rule
(DESIGN decisions 1-2), taking the shortcuts that `fastlift.fuse` marked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import fuse
from .layers.base import Node
from .layers.core import InputLayer
from .padded import dense
from .rescaled import Rescaled
from .rules import MaxPoolRule, Rule


class Context:
    """Activations, pairs, lazy Δ and splits of one chunk, for the layers' backward rules."""

    def __init__(self, plan, acts_x, acts_r, pair_x, pair_r):
        self.plan, self.ops = plan, plan.ops
        self.acts_x, self.acts_r = acts_x, acts_r
        self.pair_x, self.pair_r = pair_x, pair_r
        self.max_pool_exact = plan.max_pool is MaxPoolRule.EXACT
        self.weights = plan.weights
        self._delta: dict[Node, Any] = {}
        self._split: dict[Node, Any] = {}
        self._pairs_are_rows = None

    def x(self, node):
        return self.acts_x[node]

    def r(self, node):
        return self.acts_r[node]

    def rule(self, node) -> Rule:
        return self.plan.rules[node]

    def pairs_are_rows(self) -> bool:
        """Whether pair p is row p of the activations (integrated gradients' points, gradients)."""
        if self._pairs_are_rows is None:
            px = self.ops.to_numpy(self.pair_x)
            rows = {a.shape[0] for a in self.acts_x.values()}
            self._pairs_are_rows = rows == {len(px)} and bool(np.array_equal(px, np.arange(len(px))))
        return self._pairs_are_rows

    def delta(self, node):
        if node not in self._delta:
            x, r = self.acts_x[node], self.acts_r[node]
            d = self.ops.pair_delta(x.reshape(x.shape[0], -1), r.reshape(r.shape[0], -1), self.pair_x, self.pair_r)
            self._delta[node] = d.reshape((len(self.pair_x),) + node.shape)
        return self._delta[node]

    def split(self, node):
        if node not in self._split:
            self._split[node] = node.layer.split(node, self)
        return self._split[node]


def backward(plan, ctx: Context, weights, target, stop=()) -> dict:
    """Multipliers {node: (m_pos, m_neg)} of every node that ``target`` needs.

    ``weights``: over the target node's units (its shape), or per pair (n_pairs, *shape)
    for a per-example preset such as ``"profile"``. Nodes in ``stop`` keep their multipliers
    and pass nothing on (the caller continues).
    """
    ops, n_pairs = plan.ops, len(ctx.pair_x)
    t, needed = target.node, plan.needed[target]
    shortcuts = plan.shortcuts(target, stop)
    deferred = plan.deferred_rescales(target, stop)
    w = ops.asarray(weights, plan.dtype)
    if w.ndim == len(t.shape) + 1:
        m = {t: (ops.xp.ascontiguousarray(w), None)}
    else:
        m = {t: (ops.xp.ascontiguousarray(ops.xp.broadcast_to(w, (n_pairs,) + t.shape)), None)}
    ahead = {}  # ReLU node: its input's multipliers, computed in the store of an adjoint
    for node in reversed(plan.model.nodes):
        if node not in m or node not in needed or isinstance(node.layer, InputLayer) or node in stop:
            continue
        if all(i not in needed for i in node.inputs):
            continue
        src = node.inputs[0]
        shortcut = node in shortcuts and src in m and m[node][1] is None and m[src][1] is None
        plain = shortcut and (shortcuts[node] is None or not ctx.pairs_are_rows())
        if not (plain and isinstance(m[node][0], Rescaled)):  # a deferred Rescale is left to the adjoint
            m[node] = _dense(ops, m[node])  # a crop's padded multipliers (`ZeroPadded`) written out
        if node in ahead:
            increments = [(ahead.pop(node), None)]
        elif shortcut:
            # a residual's branches meet: this node's share is summed as Aᵀm is stored (a crop's
            # multipliers, still `ZeroPadded`, by a backend that adds them so, and this node's own,
            # still `Rescaled`, rescaled as they are read: `fuse.adjoint_adding`)
            if plain:
                m[src] = (fuse.adjoint_adding(node, m[node][0], ctx, m[src][0]), None)
            else:  # and the ReLU that src's Add reads gets its gradient in the same store
                relu = shortcuts[node]
                a, ahead[relu] = fuse.adjoint_adding_relu(node, m[node][0], ctx, dense(ops, m[src][0]),
                                                          ctx.x(relu.inputs[0]))
                m[src] = (a, None)
            increments = ()
        elif node in deferred and m[node][1] is None:  # applied by the adjoint of the convolution before
            increments = [(Rescaled(node.layer.act, m[node][0], node.layer.rescale_args(node, ctx)), None)]
        else:
            increments = node.layer.backward(node, m[node], ctx)
        for src, inc in zip(node.inputs, increments):
            if inc is None or src not in needed:
                continue
            m[src] = inc if src not in m else _add(ops, m[src], inc)
        if node not in plan.score_nodes:
            del m[node]  # free memory as soon as the inputs have their share
    return {node: _dense(ops, v) for node, v in m.items()}


def _dense(ops, mm):
    """(m_pos, m_neg) with any `ZeroPadded` or `Rescaled` half written out."""
    pos, neg = mm
    return _written(ops, pos), _written(ops, neg)


def _written(ops, a):
    return a.dense(ops) if isinstance(a, Rescaled) else dense(ops, a)


def _add(ops, a, b):
    (ap, an), (bp, bn) = _dense(ops, a), _dense(ops, b)
    pos = ops.add(ap, bp)
    if an is None and bn is None:
        return pos, None
    return pos, ops.add(ap if an is None else an, bp if bn is None else bn)
