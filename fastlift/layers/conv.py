"""Convolutions, cropping and zero padding (1-D and 2-D, channels-last or -first).

Everything spatial runs on channels-last NHWC arrays; 1-D layers use H = 1 and
channels-first layers transpose on the way in and out. A convolution is
``Ops.conv_forward``: ``im2col`` (windows unrolled into rows) followed by one GEMM with the
Keras kernel reshaped to (kh·kw·c_in, c_out), fused block by block on the CPU; its transpose
``Ops.conv_adjoint`` is a GEMM followed by ``col2im`` (on the CPU, for stride 1, a convolution
of the multipliers with the flipped kernel).
"""

from __future__ import annotations

import numpy as np

from ..geometry import Geometry, window_geometry
from ..padded import ZeroPadded, pad_zeros
from ..rescaled import Rescaled
from .base import Layer, as_int_tuple
from .core import LinearLayer, _check_data_format

PADDINGS = ("valid", "same", "causal")


class _Spatial:
    """Mixin: move between the layer's layout and NHWC (rows, h, w, c)."""

    ndim: int  # spatial dims: 1 or 2
    data_format: str
    _geoms: dict  # input shape -> Geometry, filled by output_shape (a shared layer may see several)

    def geometry(self, input_shape) -> Geometry:
        """The window's `Geometry` (NHWC) over an input of ``input_shape`` (without the batch axis)."""
        return self._geoms[tuple(input_shape)]

    def _split_shape(self, shape):
        """(spatial (h, w), channels) of an input shape without batch."""
        if len(shape) != self.ndim + 1:
            raise ValueError(f"{self.name}: expects inputs of {self.ndim + 1} dimensions (without batch); "
                             f"got shape {shape}")
        if self.data_format == "channels_first":
            c, sp = shape[0], shape[1:]
        else:
            c, sp = shape[-1], shape[:-1]
        return ((1,) + tuple(sp) if self.ndim == 1 else tuple(sp)), c

    def _join_shape(self, spatial, c):
        sp = spatial[1:] if self.ndim == 1 else spatial
        return (c,) + tuple(sp) if self.data_format == "channels_first" else tuple(sp) + (c,)

    def to_nhwc(self, ops, x):
        """``x`` (rows, *layer layout) as NHWC (rows, h, w, c), the layout the backends compute in."""
        if self.data_format == "channels_first":
            x = ops.xp.ascontiguousarray(ops.xp.moveaxis(x, 1, -1))
        if self.ndim == 1:
            x = x.reshape(x.shape[0], 1, x.shape[1], x.shape[2])
        return x

    def from_nhwc(self, ops, y):
        """NHWC ``y`` back in the layer's layout (the inverse of `to_nhwc`)."""
        if self.ndim == 1:
            y = y.reshape(y.shape[0], y.shape[2], y.shape[3])
        if self.data_format == "channels_first":
            y = ops.xp.ascontiguousarray(ops.xp.moveaxis(y, -1, 1))
        return y


class Convolution(_Spatial, LinearLayer):
    """Base of `Conv1D` and `Conv2D`: ``in_channels``, ``out_channels``, ``window_size`` (kh, kw; 1-D:
    (1, k)) and `geometry` describe it to the engine and the backends."""

    def __init__(self, kernel, bias, strides, padding, dilation_rate, data_format, name):
        Layer.__init__(self, name)
        self._set_kernel(kernel, bias, self.ndim + 2)
        self.strides = as_int_tuple(strides, self.ndim, f"{self.name}: strides")
        self.dilation_rate = as_int_tuple(dilation_rate, self.ndim, f"{self.name}: dilation_rate")
        if padding not in PADDINGS or (padding == "causal" and self.ndim != 1):
            allowed = PADDINGS if self.ndim == 1 else PADDINGS[:2]
            raise ValueError(f"{self.name}: padding must be one of {allowed}; got {padding!r}")
        self.padding = padding
        self.data_format = _check_data_format(data_format)
        k = self.weights["kernel"]
        self.window_size = ((1,) + k.shape[:1]) if self.ndim == 1 else tuple(k.shape[:2])
        self.weights = {name: w.reshape(-1, k.shape[-1]) if name.startswith("kernel") else w
                        for name, w in self.weights.items()}
        self.in_channels, self.out_channels = int(k.shape[-2]), int(k.shape[-1])
        self._geoms: dict[tuple, Geometry] = {}  # per input shape (a shared layer may see several)

    def output_shape(self, input_shapes):
        spatial, c = self._split_shape(input_shapes[0])
        if c != self.in_channels:
            raise ValueError(f"{self.name}: kernel expects {self.in_channels} input channels; input shape is "
                             f"{input_shapes[0]}")
        strides = ((1,) + self.strides) if self.ndim == 1 else self.strides
        dil = ((1,) + self.dilation_rate) if self.ndim == 1 else self.dilation_rate
        g = window_geometry(spatial, c, self.window_size, strides, dil, self.padding, self.name)
        self._geoms[tuple(input_shapes[0])] = g
        return self._join_shape((g.h_out, g.w_out), self.weights["kernel"].shape[1])

    def bias_view(self, bias):
        if self.data_format == "channels_first":
            return bias.reshape((-1,) + (1,) * self.ndim)
        return bias

    def forward(self, ops, xs, w):
        x = xs[0]
        g = self.geometry(x.shape[1:])
        y = ops.conv_forward(self.to_nhwc(ops, x), w["kernel"], g, w["bias"])  # bias added in the GEMM pass
        return self.from_nhwc(ops, y.reshape(x.shape[0], g.h_out, g.w_out, y.shape[1]))

    def linear(self, ops, x, kernel, node):
        g = self.geometry(x.shape[1:])
        y = ops.conv_forward(self.to_nhwc(ops, x), kernel, g)
        return self.from_nhwc(ops, y.reshape(x.shape[0], g.h_out, g.w_out, kernel.shape[1]))

    def linear_adjoint(self, ops, m, kernel, node, addend=None):
        """Aᵀm (+ addend). ``m`` may be an activation's `Rescaled` multipliers: their rule and this
        adjoint then run in one pass where the backend can (`Ops.conv_adjoint_rescale`)."""
        g = self.geometry(node.inputs[0].shape)
        if addend is not None and not isinstance(addend, ZeroPadded):  # ZeroPadded: 1-D channels-last
            addend = self.to_nhwc(ops, addend)
        if isinstance(m, Rescaled):
            out = ops.conv_adjoint_rescale(self.to_nhwc(ops, m.m), kernel, g, addend, m.act, *m.args)
        else:
            out = ops.conv_adjoint(self.to_nhwc(ops, m), kernel, g, addend)
        return self.from_nhwc(ops, out)

    def config(self):
        return {"filters": self.weights["kernel"].shape[1], "kernel_size": self.window_size[-self.ndim:],
                "strides": self.strides, "padding": self.padding, "dilation_rate": self.dilation_rate,
                "data_format": self.data_format}


class Conv1D(Convolution):
    """1-D convolution (cross-correlation, as Keras).

    Parameters
    ----------
    kernel : array, shape=(kernel_size, c_in, c_out)
    bias : array, shape=(c_out,), optional
    strides, dilation_rate : int
    padding : {"valid", "same", "causal"}
    data_format : {"channels_last", "channels_first"}
        Input (length, c_in) or (c_in, length).
    """

    ndim = 1

    def __init__(self, kernel, bias=None, strides=1, padding="valid", dilation_rate=1,
                 data_format="channels_last", name=None):
        super().__init__(kernel, bias, strides, padding, dilation_rate, data_format, name)


class Conv2D(Convolution):
    """2-D convolution; kernel shape=(kh, kw, c_in, c_out), input (h, w, c_in) or (c_in, h, w)."""

    ndim = 2

    def __init__(self, kernel, bias=None, strides=1, padding="valid", dilation_rate=1,
                 data_format="channels_last", name=None):
        super().__init__(kernel, bias, strides, padding, dilation_rate, data_format, name)


def _pairs(value, ndim, what):
    """Keras cropping/padding spec -> ((before, after),) * ndim."""
    if isinstance(value, (int, np.integer)):
        return ((int(value), int(value)),) * ndim
    value = tuple(value)
    if ndim == 1 and len(value) == 2 and all(isinstance(v, (int, np.integer)) for v in value):
        return ((int(value[0]), int(value[1])),)
    if len(value) == ndim:
        out = []
        for v in value:
            if isinstance(v, (int, np.integer)):
                out.append((int(v), int(v)))
            else:
                a, b = v
                out.append((int(a), int(b)))
        return tuple(out)
    raise ValueError(f"{what} must be an int, {ndim} ints or {ndim} (before, after) pairs; got {value!r}")


class _CropPad(_Spatial, Layer):
    """Shared code of Cropping and ZeroPadding: a slice on the way in, a pad on the way back."""

    elementwise_linear = True
    crop: bool

    def __init__(self, amounts, data_format, name, what):
        Layer.__init__(self, name)
        self.amounts = _pairs(amounts, self.ndim, f"{self.name}: {what}")
        if any(a < 0 or b < 0 for a, b in self.amounts):
            raise ValueError(f"{self.name}: {what} must be >= 0; got {amounts!r}")
        self.data_format = _check_data_format(data_format)

    def output_shape(self, input_shapes):
        spatial, c = self._split_shape(input_shapes[0])
        amounts = (((0, 0),) + self.amounts) if self.ndim == 1 else self.amounts
        sign = -1 if self.crop else 1
        out = tuple(n + sign * (a + b) for n, (a, b) in zip(spatial, amounts))
        if any(o < 1 for o in out):
            raise ValueError(f"{self.name}: cropping {self.amounts} leaves nothing of input {input_shapes[0]}")
        return self._join_shape(out, c)

    def _slices(self, spatial_big):
        amounts = (((0, 0),) + self.amounts) if self.ndim == 1 else self.amounts
        return (slice(None),) + tuple(slice(a, n - b) for n, (a, b) in zip(spatial_big, amounts)) + (slice(None),)

    def _pad(self, ops, x):
        return pad_zeros(ops, x, (((0, 0),) + self.amounts) if self.ndim == 1 else self.amounts)

    def _crop(self, ops, x):
        part = x[self._slices(x.shape[1:3])]
        out = ops.xp.empty(part.shape, dtype=x.dtype)
        ops.assign(out, part)
        return out

    def forward(self, ops, xs, w):
        # A crop is a view of its input, which the forward keeps anyway: no copy, no memory; the
        # ops that read it take views (an Add of a residual block reads its rows in place).
        x = self.to_nhwc(ops, xs[0])
        y = x[self._slices(x.shape[1:3])] if self.crop else self._pad(ops, x)
        return self.from_nhwc(ops, y)

    def adjoint(self, ops, m, node):
        if self.crop and self.ndim == 1 and self.data_format == "channels_last" and ops.pads_lazily:
            ((before, after),) = self.amounts  # the walk writes it out where nothing adds it in a store
            return [ZeroPadded(m, before, after)]
        g = self.to_nhwc(ops, m)
        g = self._pad(ops, g) if self.crop else self._crop(ops, g)
        return [self.from_nhwc(ops, g)]

    def config(self):
        return {"amounts": self.amounts, "data_format": self.data_format}


class Cropping1D(_CropPad):
    """Remove ``cropping`` = (before, after) positions from the length axis."""

    ndim, crop = 1, True

    def __init__(self, cropping=(1, 1), data_format="channels_last", name=None):
        super().__init__(cropping, data_format, name, "cropping")


class Cropping2D(_CropPad):
    """Remove ((top, bottom), (left, right)) from the spatial axes."""

    ndim, crop = 2, True

    def __init__(self, cropping=((0, 0), (0, 0)), data_format="channels_last", name=None):
        super().__init__(cropping, data_format, name, "cropping")


class ZeroPadding1D(_CropPad):
    """Pad the length axis with (before, after) zeros."""

    ndim, crop = 1, False

    def __init__(self, padding=1, data_format="channels_last", name=None):
        super().__init__(padding, data_format, name, "padding")


class ZeroPadding2D(_CropPad):
    """Pad the spatial axes with ((top, bottom), (left, right)) zeros."""

    ndim, crop = 2, False

    def __init__(self, padding=1, data_format="channels_last", name=None):
        super().__init__(padding, data_format, name, "padding")
