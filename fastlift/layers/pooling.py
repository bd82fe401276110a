"""Max and average pooling, local and global, 1-D and 2-D.

``padding`` is "valid", "same" (TensorFlow's) or explicit (before, after) pairs per spatial axis
(PyTorch/ONNX); padded cells are skipped: a max ignores them and an average divides by the cells
inside the input (ONNX ``count_include_pad=0``).

Max pooling's backward rule is chosen per run: ``exact`` (default; credit split
between the input's and the reference's arg-max, see `Ops.max_pool_backward`) or
``gradient`` (the original's: all credit to the input's arg-max). The gradient and
guided-backprop rules always use ``gradient``.
"""

from __future__ import annotations

from ..geometry import window_geometry
from ..rules import Rule
from .base import Layer, as_int_tuple
from .conv import _pairs, _Spatial
from .core import _check_data_format


class _Pool(_Spatial, Layer):
    is_max: bool
    is_global = False

    def __init__(self, pool_size, strides, padding, data_format, name):
        Layer.__init__(self, name)
        self.data_format = _check_data_format(data_format)
        if self.is_global:
            self.pool_size = self.strides = None
            self.padding = "valid"
        else:
            self.pool_size = as_int_tuple(pool_size, self.ndim, f"{self.name}: pool_size")
            self.strides = self.pool_size if strides is None else as_int_tuple(strides, self.ndim,
                                                                                 f"{self.name}: strides")
            if isinstance(padding, str):
                if padding not in ("valid", "same"):
                    raise ValueError(f"{self.name}: padding must be 'valid' or 'same', or (before, after) pairs; "
                                     f"got {padding!r}")
            else:
                padding = _pairs(padding, self.ndim, f"{self.name}: padding")
                if any(a < 0 or b < 0 for a, b in padding):
                    raise ValueError(f"{self.name}: padding must be >= 0; got {padding!r}")
            self.padding = padding
        self.elementwise_linear = not self.is_max
        self._geoms = {}

    def output_shape(self, input_shapes):
        spatial, c = self._split_shape(input_shapes[0])
        if self.is_global:
            size, strides = spatial, spatial
        else:
            size = ((1,) + self.pool_size) if self.ndim == 1 else self.pool_size
            strides = ((1,) + self.strides) if self.ndim == 1 else self.strides
        padding = self.padding
        if not isinstance(padding, str):
            padding = (((0, 0),) + padding) if self.ndim == 1 else padding
        g = window_geometry(spatial, c, size, strides, (1, 1), padding, self.name)
        if not isinstance(padding, str):  # padding is skipped: every window must reach the input
            for n, k, s, n_out, (before, _) in zip((g.h, g.w), size, strides, (g.h_out, g.w_out), padding):
                if before >= k or (n_out - 1) * s - before >= n:
                    raise ValueError(f"{self.name}: padding {self.padding} leaves a window of {k} wholly outside "
                                     f"an input of size {n}")
        self._geoms[tuple(input_shapes[0])] = g
        if self.is_global:
            return (c,)
        return self._join_shape((g.h_out, g.w_out), c)

    def _out(self, ops, y):
        if self.is_global:
            return y.reshape(y.shape[0], y.shape[-1])
        return self.from_nhwc(ops, y)

    def _in(self, ops, m, g):
        if self.is_global:
            return m.reshape(m.shape[0], 1, 1, g.c)
        return self.to_nhwc(ops, m)

    def forward(self, ops, xs, w):
        x = xs[0]
        g = self.geometry(x.shape[1:])
        x = self.to_nhwc(ops, x)
        y = ops.max_pool_forward(x, g) if self.is_max else ops.avg_pool_forward(x, g)
        return self._out(ops, y)

    def adjoint(self, ops, m, node):  # average pooling only
        g = self.geometry(node.inputs[0].shape)
        if self.is_global:  # every cell gets m / (h·w): a broadcast, no window bookkeeping
            share = (m * m.dtype.type(1.0 / (g.h * g.w))).reshape(m.shape[0], 1, 1, g.c)
            grad = ops.xp.ascontiguousarray(ops.xp.broadcast_to(share, (m.shape[0], g.h, g.w, g.c)))
            return [self.from_nhwc(ops, grad)]
        return [self.from_nhwc(ops, ops.avg_pool_backward(self._in(ops, m, g), g))]

    def gradient_reads(self, node):
        return tuple(node.inputs) if self.is_max else ()  # the window's argmax

    def backward(self, node, m, ctx):
        if not self.is_max:
            return Layer.backward(self, node, m, ctx)
        ops = ctx.ops
        (src,) = node.inputs
        g = self.geometry(src.shape)
        exact = ctx.max_pool_exact and ctx.rule(node) not in (Rule.GRADIENT, Rule.GUIDED_BACKPROP)
        x, r = self.to_nhwc(ops, ctx.x(src)), self.to_nhwc(ops, ctx.r(src))
        route = lambda a: self.from_nhwc(
            ops, ops.max_pool_backward(self._in(ops, a, g), x, r, ctx.pair_x, ctx.pair_r, g, exact))
        pos, neg = m
        return [(route(pos), None if neg is None else route(neg))]

    def config(self):
        if self.is_global:
            return {"data_format": self.data_format}
        return {"pool_size": self.pool_size, "strides": self.strides, "padding": self.padding,
                "data_format": self.data_format}


def _pool_class(name, ndim, is_max, is_global, doc):
    def __init__(self, pool_size=2, strides=None, padding="valid", data_format="channels_last", name=None):
        _Pool.__init__(self, pool_size, strides, padding, data_format, name)

    def __init_global__(self, data_format="channels_last", name=None):
        _Pool.__init__(self, None, None, "valid", data_format, name)

    return type(name, (_Pool,), {"ndim": ndim, "is_max": is_max, "is_global": is_global, "__doc__": doc,
                                 "__init__": __init_global__ if is_global else __init__})


MaxPool1D = _pool_class("MaxPool1D", 1, True, False,
                        "Max over windows of ``pool_size`` along the length axis (stride defaults to it).")
MaxPool2D = _pool_class("MaxPool2D", 2, True, False, "Max over (ph, pw) windows.")
AvgPool1D = _pool_class("AvgPool1D", 1, False, False,
                        "Mean over windows along the length axis; 'same' padding averages valid cells only.")
AvgPool2D = _pool_class("AvgPool2D", 2, False, False, "Mean over (ph, pw) windows.")
GlobalMaxPool1D = _pool_class("GlobalMaxPool1D", 1, True, True, "Max over the length axis: (L, C) -> (C,).")
GlobalMaxPool2D = _pool_class("GlobalMaxPool2D", 2, True, True, "Max over both spatial axes -> (C,).")
GlobalAvgPool1D = _pool_class("GlobalAvgPool1D", 1, False, True, "Mean over the length axis: (L, C) -> (C,).")
GlobalAvgPool2D = _pool_class("GlobalAvgPool2D", 2, False, True, "Mean over both spatial axes -> (C,).")
for _cls in (MaxPool1D, MaxPool2D, AvgPool1D, AvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D, GlobalAvgPool1D,
             GlobalAvgPool2D):
    _cls.__module__ = __name__
