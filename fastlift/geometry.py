"""`Geometry`: where a sliding window (convolution, pooling) reads its input, shared by the layers
that compute it and the backends and kernels that use it."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
    """Sliding-window geometry of a convolution or pooling over NHWC input.

    Output cell (i, j) reads input rows ``i*sh - pt + a*dh`` for ``a < kh`` and
    columns ``j*sw - pl + b*dw`` for ``b < kw``; positions outside the input are
    padding (zero for convolution, ignored by pooling).
    """

    h: int
    w: int
    c: int
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    dh: int = 1
    dw: int = 1
    pt: int = 0
    pl: int = 0
    h_out: int = 0
    w_out: int = 0


def window_geometry(spatial, channels, kernel, strides, dilation, padding, what) -> Geometry:
    """Geometry of a Keras/TF sliding window over ``spatial`` = (h, w).

    valid: out = floor((in - (k-1)·d - 1) / s) + 1; same: out = ceil(in / s) with
    TF's padding (the smaller half before); causal (1-D only): pad (k-1)·d before; explicit
    ((before, after), (before, after)) pairs for (h, w), as ONNX and PyTorch give them:
    out = floor((in + before + after - (k-1)·d - 1) / s) + 1.
    """
    outs, pads = [], []
    explicit = not isinstance(padding, str)
    for axis, (n, k, s, d) in enumerate(zip(spatial, kernel, strides, dilation)):
        span = (k - 1) * d + 1
        if explicit:
            before, after = padding[axis]
            out = (n + before + after - span) // s + 1
            pad = before
        elif padding == "valid":
            out = (n - span) // s + 1
            pad = 0
        elif padding == "same":
            out = math.ceil(n / s)
            pad = max((out - 1) * s + span - n, 0) // 2
        else:  # causal
            out = (n + (k - 1) * d - span) // s + 1
            pad = (k - 1) * d
        if out < 1:
            raise ValueError(f"{what}: window {k} (dilation {d}) does not fit input size {n} with "
                             f"padding {padding!r}")
        outs.append(out)
        pads.append(pad)
    return Geometry(h=spatial[0], w=spatial[1], c=channels, kh=kernel[0], kw=kernel[1], sh=strides[0],
                    sw=strides[1], dh=dilation[0], dw=dilation[1], pt=pads[0], pl=pads[1],
                    h_out=outs[0], w_out=outs[1])
