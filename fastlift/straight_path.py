"""Activations along integrated gradients' straight path, from the path's own structure.

Integrated gradients evaluates the model at the points r + α_k·(x − r). When only Dense/Conv
layers read the inputs (`explain._affine_prefix`), their outputs at the points are the lines
z_k = z_r + α_k·(z_x − z_r), computed by `path`. A ReLU and then, optionally, a max-pool turn
every element into one of a few such lines: the line of the window cell that wins the max-pool
(through a ReLU, the line 0 once the winner is negative). Take, per element, the line it follows
at the middle point, (u, v); the convolution C that reads those elements then sees

    a_k = u + α_k·v + e_k,   so   C(a_k) = C(u) + α_k·C_lin(v) + C_lin(e_k),

where C_lin is C without its bias, and e_k is nonzero only where an element follows another
line at point k: 4% of the values of a Basset-like model from a zero reference, 15% from a
shuffled one. That is two convolutions per pair plus one per point over mostly-zero rows, which
a backend that skips zeros (`Ops.conv_skips_zeros`) runs at a fraction of a dense one's cost.

Where an element follows its middle line, e_k is exactly 0: the line is evaluated with the
same operations as `path` (`line`), and the ReLU and the max-pool pass the winning value
through unchanged, so the forward's value and the line agree to the bit. The result is that
of the plain forward up to rounding, per pair (no dependence on the batch).
"""

from __future__ import annotations

import numpy as np

from .activations import Act
from .backends.ops import Ops
from .layers.conv import Convolution
from .layers.core import Activation
from .layers.pooling import _Pool

_REF = Ops()


def line(u, v, alphas):
    """Rows u + α·v for every pair (u[p], v[p]) and step α, pair-major: (P·steps, *S)."""
    steps = alphas.shape[0]
    at = u[:, None] + alphas.reshape((1, steps) + (1,) * (u.ndim - 1)) * v[:, None]
    return at.reshape((u.shape[0] * steps,) + u.shape[1:])


def path(x, r, alphas):
    """Rows r + α·(x − r) for every pair (x[p], r[p]) and step α, pair-major: (P·steps, *S)."""
    return line(r, x - r, alphas)


def kinked_chains(model, prefix, ops) -> tuple:
    """(prefix node, ReLU node, max-pool node or None, conv node) for every convolution that
    reads a node of ``prefix`` through a ReLU and optionally a local max-pool, channels-last,
    and that ``ops`` runs cheaper on mostly-zero inputs (`Ops.conv_skips_zeros`)."""
    chains = []
    for node in model.nodes:
        layer = node.layer
        if not isinstance(layer, Convolution) or layer.data_format != "channels_last":
            continue
        src, pool = node.inputs[0], None
        if isinstance(src.layer, _Pool) and src.layer.is_max and not src.layer.is_global:
            if src.layer.data_format != "channels_last":
                continue
            pool, src = src, src.inputs[0]
        if type(src.layer) is not Activation or src.layer.act != Act.RELU or src.inputs[0] not in prefix:
            continue
        if ops.conv_skips_zeros(layer.geometry(node.inputs[0].shape)):
            chains.append((src.inputs[0], src, pool, node))
    return tuple(chains)


def chain_activations(ops, weights, chain, z_points, z_x, z_r, alphas) -> dict:
    """{ReLU node, max-pool node, conv node: activations at the points} for one chain of
    `kinked_chains`. z_points (P·steps, *S) are the prefix node's activations at the points
    (`path` of z_x and z_r, both (P, *S)); ``alphas`` (steps,) are the path's steps."""
    _, relu, pool, conv = chain
    steps, alphas = alphas.shape[0], ops.asarray(alphas, z_r.dtype)
    a = relu.layer.forward(ops, [z_points], weights(relu.layer))
    acts = {relu: a}
    if pool is not None:
        a = acts[pool] = pool.layer.forward(ops, [a], weights(pool.layer))
    mid = steps // 2  # the line each element follows at the middle point
    z_mid = z_points.reshape((z_r.shape[0], steps) + z_r.shape[1:])[:, mid]
    d = z_x - z_r  # the same difference `path` multiplies
    if pool is None:
        top, u, v = z_mid, z_r, d
    else:
        g = pool.layer.geometry(relu.shape)
        (windows, valid), *rest = [_REF._windows(pool.layer.to_nhwc(ops, ops.to_numpy(t)), g)
                                   for t in (z_mid, z_r, d)]
        win = np.argmax(np.where(valid, windows, -np.inf), axis=3)[:, :, :, None]
        top, u, v = (ops.asarray(pool.layer._out(ops, np.take_along_axis(w, win, 3)[:, :, :, 0]), z_r.dtype)
                     for w in [windows] + [r[0] for r in rest])
    on = top > 0
    u = ops.xp.where(on, u, 0).astype(z_r.dtype, copy=False)
    v = ops.xp.where(on, v, 0).astype(z_r.dtype, copy=False)
    off_line = a - line(u, v, alphas)  # mostly exact zeros
    w = weights(conv.layer)
    at_u = conv.layer.forward(ops, [u], w)
    along_v = conv.layer.linear(ops, v, w["kernel"], conv)
    acts[conv] = line(at_u, along_v, alphas) + conv.layer.linear(ops, off_line, w["kernel"], conv)
    return acts
