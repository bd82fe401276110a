"""`Rescaled`: an activation's Rescale rule, left for the convolution adjoint that reads its result."""

from __future__ import annotations


class Rescaled:
    """The multipliers of an activation's input z under the Rescale rule, not computed yet: z is a
    1-D convolution's output that only the activation reads, and the backward walk hands them to
    that convolution's adjoint (`Ops.conv_adjoint_rescale`; `fastlift.fuse.deferred_rescales` says
    where), which on the CPU rescales each pair's row just before its tiles read it. `dense`
    computes them (`Ops.rescale_backward`), with the same bits, for anything else.

    ``m``: the activation's output multipliers (pairs, *z's shape); ``act`` its code; ``args`` the
    rest of `Ops.rescale_backward`'s arguments (x_in, r_in, x_out, r_out, pair_x, pair_r, alpha)."""

    __slots__ = ("act", "args", "m")

    def __init__(self, act, m, args):
        self.act, self.m, self.args = act, m, tuple(args)

    @property
    def shape(self) -> tuple:
        return self.m.shape

    @property
    def dtype(self):
        return self.m.dtype

    def dense(self, ops):
        """The multipliers (`Ops.rescale_backward`)."""
        m = self.m
        return ops.rescale_backward(self.act, m.reshape(m.shape[0], -1), *self.args).reshape(m.shape)
