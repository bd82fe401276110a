"""`ZeroPadded`: a crop's multipliers, padded back to its input's length without being written out."""

from __future__ import annotations


class ZeroPadded:
    """Rows (n, w, c) standing for (n, before + w + after, c) with zeros in the margins: the adjoint
    of a 1-D channels-last crop (`layers.conv.Cropping1D`), left unwritten where the backend can
    add it as it stores a convolution's adjoint (`Ops.pads_lazily`; `CpuOps.conv_adjoint`, the
    skip branch of a BPNet block). `dense` writes it out, with the bits of the crop's own pad, for
    everything else (`fastlift.backward`)."""

    __slots__ = ("after", "before", "rows")

    def __init__(self, rows, before: int, after: int):
        self.rows, self.before, self.after = rows, int(before), int(after)

    @property
    def shape(self) -> tuple:
        n, w, c = self.rows.shape
        return (n, self.before + w + self.after, c)

    @property
    def dtype(self):
        return self.rows.dtype

    def dense(self, ops):
        """The padded array: zeros written in the margins only, the rows copied in between."""
        w = self.rows.shape[1]
        out = ops.xp.empty(self.shape, dtype=self.rows.dtype)
        out[:, :self.before] = 0
        out[:, self.before + w:] = 0
        ops.assign(out[:, self.before:self.before + w], self.rows)
        return out


def dense(ops, a):
    """``a`` written out if it is `ZeroPadded`, else ``a`` (None stays None)."""
    return a.dense(ops) if isinstance(a, ZeroPadded) else a
