"""Log, LogSumExp and LogSoftmax: elementwise pieces that ONNX graphs (and Lambda replacements)
spell out with ops (constant arithmetic is `fastlift.layers.core.ScaleShift`).

* `Log`: the natural logarithm as an elementwise activation (every rule through its `Act` code).
* `LogSumExp`: log Σ exp over one axis of one input, or elementwise across several inputs (the
  counts head of ChromBPNet: ``logsumexp(stack([acc, bias]), 0)``).
* `LogSoftmax`: a final layer like `Softmax`; attributions target its input.
"""

from __future__ import annotations

import numpy as np

from ..activations import Act
from ..backends.ops import NEAR_ZERO
from ..rules import Rule
from .base import Layer, _as_node_tuple, as_weight
from .core import Activation, Softmax


class Log(Activation):
    """y = log(x) elementwise (natural logarithm; the input must be positive).

    Every rule applies through the activation code `Act.LOG`: Rescale's multiplier is
    (log x - log x₀)/(x - x₀), falling back to 1/x₀ where |x - x₀| < 1e-7.
    """

    def __init__(self, name=None):
        Layer.__init__(self, name)
        self.activation = "log"
        self.act = Act.LOG
        self.weights = {"alpha": as_weight(np.zeros(1), "alpha", self.name)}

    def config(self):
        return {}


class LogSumExp(Layer):
    """y = log Σᵢ exp(xᵢ): over ``axis`` of one input, or elementwise across several inputs.

    Parameters
    ----------
    axis : int
        The reduced axis of a single input, counted with the batch axis as 0 (as Keras and ONNX
        do; -1 is the last). Ignored when the layer combines several inputs.
    keepdims : bool
        Keep the reduced axis with size 1 (single input).

    Notes
    -----
    DeepLIFT: the Rescale rule of the composition exp → sum → log. With zᵢ the input and z⁰ᵢ
    the reference, Sx = Σ exp(zᵢ - M), Sr = Σ exp(z⁰ᵢ - M) for a shared shift M (the larger
    maximum, so nothing overflows):

        m_in,ᵢ = m · Δy/(Sx - Sr) · (exp(zᵢ - M) - exp(z⁰ᵢ - M))/(zᵢ - z⁰ᵢ)

    whose terms sum to m·Δy exactly: Σᵢ m_in,ᵢ·Δzᵢ = m·Δy. Where |zᵢ - z⁰ᵢ| < 1e-7 the second
    ratio is its limit exp(z⁰ᵢ - M), and where |Sx - Sr| < 1e-7 the first is 1/Sr (log's
    derivative at the reference), as for every activation. RevealCancel runs use this rule too;
    gradient rules use the gradient, softmax(z).
    """

    n_inputs = None

    def __init__(self, axis: int = -1, keepdims: bool = True, name=None):
        super().__init__(name)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{self.name}: axis must be an int; got {axis!r}")
        if axis == 0:
            raise ValueError(f"{self.name}: axis 0 is the batch axis; reduce over another axis")
        self.axis, self.keepdims = int(axis), bool(keepdims)

    def __call__(self, inputs):
        nodes = _as_node_tuple(inputs, f"{self.name} input")
        self.n_inputs = len(nodes)  # one input reduces over `axis`; several combine elementwise
        return super().__call__(nodes)

    def _ax(self, ndim):
        """The reduced axis of a single (rows, *shape) array with ``ndim`` dimensions."""
        ax = self.axis if self.axis > 0 else ndim + self.axis
        if not 1 <= ax < ndim:
            raise ValueError(f"{self.name}: axis {self.axis} out of range for inputs of {ndim - 1} dimensions "
                             "(without the batch axis)")
        return ax

    def output_shape(self, input_shapes):
        first = tuple(input_shapes[0])
        if len(input_shapes) > 1:
            if any(tuple(s) != first for s in input_shapes):
                raise ValueError(f"{self.name}: LogSumExp across inputs needs inputs of one shape; got "
                                 f"{[tuple(s) for s in input_shapes]}")
            return first
        ax = self._ax(len(first) + 1) - 1
        if self.keepdims:
            return first[:ax] + (1,) + first[ax + 1:]
        out = first[:ax] + first[ax + 1:]
        if not out:
            raise ValueError(f"{self.name}: reducing the only axis of {first} leaves no features; use keepdims")
        return out

    # The layer computes on (rows, *out_shape, k) stacks: the reduced values last.
    def _stack(self, xp, xs):
        if len(xs) > 1:
            return xp.stack(xs, axis=-1)
        x = xs[0]
        z = xp.moveaxis(x, self._ax(x.ndim), -1)
        if self.keepdims:
            z = xp.expand_dims(z, -2)
            z = xp.moveaxis(z, -2, self._ax(x.ndim))
        return z

    def _unstack(self, xp, g, node):
        """Multipliers (pairs, *out_shape, k) -> one array per input, in its shape."""
        if len(node.inputs) > 1:
            return [xp.ascontiguousarray(g[..., i]) for i in range(len(node.inputs))]
        ndim = len(node.inputs[0].shape) + 1
        ax = self._ax(ndim)
        if self.keepdims:
            g = xp.squeeze(g, axis=ax)
        return [xp.ascontiguousarray(xp.moveaxis(g, -1, ax))]

    def forward(self, ops, xs, w):
        xp = ops.xp
        z = self._stack(xp, xs)
        top = z.max(axis=-1, keepdims=True)
        top = xp.where(xp.isfinite(top), top, 0)
        y = xp.log(xp.exp(z - top).sum(axis=-1)) + top[..., 0]
        return xp.ascontiguousarray(y.astype(xs[0].dtype, copy=False))

    def gradient_reads(self, node):
        return tuple(node.inputs)

    def backward(self, node, m, ctx):
        ops = ctx.ops
        xp = ops.xp
        rule = ctx.rule(node)
        zx = self._stack(xp, [ctx.x(i) for i in node.inputs])[ctx.pair_x]
        if rule in (Rule.GRADIENT, Rule.GUIDED_BACKPROP):
            top = zx.max(axis=-1, keepdims=True)
            e = xp.exp(zx - top)
            s = e / e.sum(axis=-1, keepdims=True)
            pos, neg = m
            if rule is Rule.GUIDED_BACKPROP:
                out = [xp.where(pos > 0, pos, 0 * pos)[..., None] * s]
                if neg is not None:
                    out.append(xp.where(pos > 0, neg, 0 * neg)[..., None] * s)
            else:
                out = [a[..., None] * s for a in ((pos,) if neg is None else (pos, neg))]
        else:
            zr = self._stack(xp, [ctx.r(i) for i in node.inputs])[ctx.pair_r]
            top = xp.maximum(zx.max(axis=-1, keepdims=True), zr.max(axis=-1, keepdims=True))
            top = xp.where(xp.isfinite(top), top, 0)
            ex, er = xp.exp(zx - top), xp.exp(zr - top)
            dz = zx - zr
            near = xp.abs(dz) < NEAR_ZERO
            inner = xp.where(near, er, (ex - er) / xp.where(near, 1, dz))
            sx, sr = ex.sum(axis=-1), er.sum(axis=-1)
            ds = sx - sr
            dy = ctx.x(node)[ctx.pair_x] - ctx.r(node)[ctx.pair_r]
            near_s = xp.abs(ds) < NEAR_ZERO
            outer = xp.where(near_s, 1 / sr, dy / xp.where(near_s, 1, ds))
            scale = outer[..., None] * inner
            pos, neg = m
            out = [a[..., None] * scale for a in ((pos,) if neg is None else (pos, neg))]
        dt = m[0].dtype
        parts = [self._unstack(xp, o.astype(dt, copy=False), node) for o in out]
        if len(parts) == 1:
            return [(p, None) for p in parts[0]]
        return list(zip(parts[0], parts[1]))

    def config(self):
        return {"axis": self.axis, "keepdims": self.keepdims}


class LogSoftmax(Softmax):
    """log(softmax(x)) over the last axis. Like `Softmax`, only allowed as the model's final layer:
    attributions target its input (the logits), the default target layer."""

    def forward(self, ops, xs, w):
        xp = ops.xp
        x = xs[0]
        z = x - x.max(axis=-1, keepdims=True)
        return (z - xp.log(xp.exp(z).sum(axis=-1, keepdims=True))).astype(x.dtype, copy=False)
