"""One chunk of DeepLIFT or a gradient method: forward, then per target a backward walk, then
contributions, multipliers, hypothetical scores and summation-to-delta per pair.

Integrated gradients, whose forward runs along the straight path, is
`fastlift.integrated_gradients`.
"""

from __future__ import annotations

import numpy as np

from .backward import Context, backward

#: Methods whose rules use no reference: they report the (guided) gradient itself.
REFERENCE_FREE = ("gradient", "guided_backprop")


def flat(a):
    return a.reshape(a.shape[0], -1)


def deeplift_chunk(plan, chunk, acc):
    ops = plan.ops
    free = plan.method in REFERENCE_FREE
    if free:
        # Their rules never read reference activations: skip the reference forward and pair each
        # example with itself (Δ = 0; these methods report no deltas).
        acts_x = acts_r = plan.forward(chunk.x_rows, keep=plan.gradient_keep())
        pair_r, pair_r_host = chunk.pair_x, chunk.pair_x_host
    else:
        acts_x, acts_r = chunk.acts(plan.forward)
        pair_r, pair_r_host = chunk.pair_r, chunk.pair_r_host
    ctx = Context(plan, acts_x, acts_r, chunk.pair_x, pair_r)
    for ti, target in enumerate(plan.targets):
        w, d_out = target_pairs(plan, chunk.pair_x_host, pair_r_host, target, acts_x, acts_r)
        m = backward(plan, ctx, w, target)
        sum_c = np.zeros(len(chunk.pair_x))
        for si, node in enumerate(plan.score_nodes):
            c, mult = scores(plan, ctx, node, m.get(node), contributions=not free)
            if not free:
                sum_c += ops.to_numpy(flat(c)).astype(np.float64).sum(axis=1)
            hyp = hypothetical(ops, ctx, node, mult) if plan.hypothetical else None
            acc.add(ti, si, chunk, mult if free else c, mult, hyp)
        if not free:
            acc.add_deltas(ti, chunk, sum_c - d_out)


def target_pairs(plan, px, pr, target, acts_x, acts_r):
    """(weights for `backward`, (P,) Δtarget per pair) of one target in one chunk.

    Δtarget is a row-wise sum, not a GEMV, so it is the same for any chunk size. Preset
    weights are computed per pair from the forward passes (`Target.pair_weights`).
    """
    ops, t = plan.ops, target.node
    tx, tr = ops.to_numpy(flat(acts_x[t])).astype(np.float64), ops.to_numpy(flat(acts_r[t])).astype(np.float64)
    w_pairs = target.pair_weights(tx, tr, px, pr)
    d_out = target.pair_deltas(tx, tr, px, pr, w_pairs)
    if w_pairs is None:
        return target.weights, d_out
    return w_pairs.reshape((len(px),) + t.shape), d_out


def scores(plan, ctx, node, m, contributions=True):
    """Per-pair contributions and multipliers of ``node`` ((P, *shape) each); the contributions
    are None when not asked for."""
    ops, n_pairs = plan.ops, len(ctx.pair_x)
    if m is None:  # the target does not depend on this node
        z = ops.xp.zeros((n_pairs,) + node.shape, dtype=plan.dtype)
        return z, z
    pos, neg = m
    if not contributions:
        return None, (pos if neg is None else 0.5 * (pos + neg))
    if neg is None:
        c = ops.pair_contributions(flat(pos), flat(ctx.x(node)), flat(ctx.r(node)), ctx.pair_x, ctx.pair_r)
        return c.reshape(pos.shape), pos
    d_pos, d_neg = ctx.split(node)
    return pos * d_pos + neg * d_neg, 0.5 * (pos + neg)


def hypothetical(ops, ctx, node, mult):
    """m - Σ_c ref·m (per pair, summed over the model's one-hot channel axis)."""
    r = ctx.r(node)[ctx.pair_r]
    return mult - channel_sum(ops.xp, r * mult, ctx.plan.model.channel_axis)


def channel_sum(xp, p, axis):
    """``p.sum(axis, keepdims=True)`` with its bits, faster for a few channels on the host: numpy
    adds fewer than 8 values in order from +0, and written out as a chain of elementwise adds
    that is ~4x faster on DNA's 4 channels than a reduction over a short axis."""
    n = p.shape[axis]
    if xp is not np or n >= 8:
        return p.sum(axis=axis, keepdims=True)
    at = [slice(None)] * p.ndim
    at[axis] = slice(0, 1)
    s = p[tuple(at)] + p.dtype.type(0)  # +0 first, as numpy's sum: a -0 term alone gives +0
    for i in range(1, n):
        at[axis] = slice(i, i + 1)
        s += p[tuple(at)]
    return s
