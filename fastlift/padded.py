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
        """The padded array (`pad_zeros`)."""
        return pad_zeros(ops, self.rows, ((self.before, self.after),))


def pad_zeros(ops, x, amounts):
    """``x`` (rows, ...) padded with ``amounts[k]`` = (before, after) zeros along axis k + 1: only the
    margins are zeroed (memory from the pool may hold old values), the values copied in between
    (`Ops.assign`)."""
    big = (x.shape[0],) + tuple(n + a + b for n, (a, b) in zip(x.shape[1:], amounts)) + x.shape[1 + len(amounts):]
    out = ops.xp.empty(big, dtype=x.dtype)
    for axis, (a, b) in enumerate(amounts, start=1):
        out[(slice(None),) * axis + (slice(0, a),)] = 0
        out[(slice(None),) * axis + (slice(big[axis] - b, big[axis]),)] = 0
    ops.assign(out[(slice(None),) + tuple(slice(a, n - b) for n, (a, b) in zip(big[1:], amounts))], x)
    return out


def dense(ops, a):
    """``a`` written out if it is `ZeroPadded`, else ``a`` (None stays None)."""
    return a.dense(ops) if isinstance(a, ZeroPadded) else a
