"""Layers that merge several inputs: Concatenate, Add, Subtract, Average."""

from __future__ import annotations

import numpy as np

from .base import Layer


class _SameShape(Layer):
    n_inputs = None
    elementwise_linear = True

    def output_shape(self, input_shapes):
        first = input_shapes[0]
        for s in input_shapes[1:]:
            if s != first:
                raise ValueError(f"{self.name}: {type(self).__name__} needs inputs of one shape; got "
                                 f"{[tuple(t) for t in input_shapes]}")
        return first


class Add(_SameShape):
    """Elementwise sum of 2 or more inputs of one shape (residual connections)."""

    def forward(self, ops, xs, w):
        out = ops.add(xs[0], xs[1])  # one pass (threaded on the CPU), not a copy and an in-place add
        for x in xs[2:]:
            out = ops.add(out, x)
        return out

    def adjoint(self, ops, m, node):
        return [m] * len(node.inputs)


class Average(_SameShape):
    """Elementwise mean of 2 or more inputs of one shape."""

    def forward(self, ops, xs, w):
        out = xs[0].copy()
        for x in xs[1:]:
            out += x
        out *= out.dtype.type(1.0 / len(xs))
        return out

    def adjoint(self, ops, m, node):
        share = m * m.dtype.type(1.0 / len(node.inputs))
        return [share] * len(node.inputs)


class Subtract(_SameShape):
    """a - b for exactly two inputs.

    Its split swaps signs: Δy⁺ = Δa⁺ - Δb⁻ and Δy⁻ = Δa⁻ - Δb⁺, so b receives
    m⁺_b = -m⁻ and m⁻_b = -m⁺.
    """

    n_inputs = 2
    elementwise_linear = False

    def forward(self, ops, xs, w):
        return xs[0] - xs[1]

    def gradient_reads(self, node):
        return ()

    def backward(self, node, m, ctx):
        pos, neg = m
        if neg is None:
            return [(pos, None), (-pos, None)]
        return [(pos, neg), (-neg, -pos)]

    def split(self, node, ctx):
        (ap, an), (bp, bn) = ctx.split(node.inputs[0]), ctx.split(node.inputs[1])
        return ap - bn, an - bp


class Concatenate(Layer):
    """Concatenate 2 or more inputs along ``axis`` (default -1, the channel axis)."""

    n_inputs = None
    elementwise_linear = True

    def __init__(self, axis: int = -1, name=None):
        super().__init__(name)
        self.axis = int(axis)

    def _ax(self, ndim):
        ax = self.axis - 1 if self.axis > 0 else ndim + self.axis
        if not 0 <= ax < ndim:
            raise ValueError(f"{self.name}: axis {self.axis} out of range for {ndim}-d inputs")
        return ax

    def output_shape(self, input_shapes):
        nd = len(input_shapes[0])
        ax = self._ax(nd)
        for s in input_shapes:
            if len(s) != nd or any(a != b for i, (a, b) in enumerate(zip(s, input_shapes[0])) if i != ax):
                raise ValueError(f"{self.name}: inputs must agree except on axis {self.axis}; got "
                                 f"{[tuple(t) for t in input_shapes]}")
        out = list(input_shapes[0])
        out[ax] = sum(s[ax] for s in input_shapes)
        return tuple(out)

    def forward(self, ops, xs, w):
        return ops.xp.concatenate(xs, axis=self._ax(xs[0].ndim - 1) + 1)

    def adjoint(self, ops, m, node):
        ax = self._ax(len(node.shape))
        bounds = np.cumsum([0] + [i.shape[ax] for i in node.inputs])
        index = [slice(None)] * m.ndim
        out = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            index[ax + 1] = slice(int(lo), int(hi))
            out.append(ops.xp.ascontiguousarray(m[tuple(index)]))
        return out

    def config(self):
        return {"axis": self.axis}
