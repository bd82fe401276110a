"""Reverse-complement averaging: score a sequence and its reverse complement, map the second
back and average.

One-hot DNA has channels A, C, G, T, so the complement of a base is the channel order
reversed (A↔T, C↔G) and the reverse complement of a sequence flips both the length and the
channel axis. The two axes are parameters (``length_axis``, ``channel_axis``): channels-last
``(N, L, 4)`` is the default, channels-first ``(N, 4, L)`` is ``channel_axis=-2,
length_axis=-1`` (`sequence_axes` reads them from a model's input layout). The map is its own inverse, so the same function maps the scores of the
reverse-complement strand back onto the forward strand.

The target on the reverse-complement strand is the same target: presets are computed from
that strand's own forward passes (and every preset is symmetric in positions and strands, so
nothing needs swapping), fixed units or weight arrays are mapped — positions reversed along a
target layer's length axis (shape ``(length, channels)``, or ``(channels, length)`` in a
channels-first model), and channels permuted by ``strand_swap`` (`strand_permutation`).
"""

from __future__ import annotations

import numbers

import numpy as np

from .layers.core import InputLayer
from .targets import Target

#: One-hot channels of a DNA base (A, C, G, T).
N_BASES = 4


def reverse_complement(x, channel_axis: int = -1, length_axis: int = -2):
    """Reverse complement of one-hot DNA (any leading axes): positions reversed, A↔T, C↔G.

    Parameters
    ----------
    x : array, shape=(..., length, 4) (channels-last, the default axes) or (..., 4, length)
        with ``channel_axis=-2, length_axis=-1``.
    channel_axis, length_axis : int

    Returns
    -------
    array, same shape, C-contiguous.
    """
    x = np.asarray(x)
    if x.shape[channel_axis] != N_BASES:
        raise ValueError(f"reverse_complement needs {N_BASES} channels (A, C, G, T) on axis {channel_axis}; got "
                         f"shape {x.shape}")
    return np.ascontiguousarray(np.flip(x, axis=(length_axis, channel_axis)))


def sequence_axes(model) -> tuple[int, int]:
    """(channel axis, length axis) of the model's batched inputs: (-1, -2) for channels-last
    ``(N, L, 4)``, (-2, -1) for channels-first ``(N, 4, L)`` (`fastlift.Model.input_layout`)."""
    return (-2, -1) if model.input_layout == "channels_first" else (-1, -2)


def check_inputs(model, xs, layers):
    """``reverse_complement=True`` scores one-hot DNA model inputs, (length, 4) or (4, length)
    by the model's input layout, and nothing else."""
    if layers is not None:
        raise ValueError(f"reverse_complement=True maps the scores of the model inputs back to the forward strand; "
                         f"it scores the model inputs only (layers=None); got layers={layers!r}")
    channel_axis, _ = sequence_axes(model)
    want = f"({N_BASES}, length)" if channel_axis == -2 else f"(length, {N_BASES})"
    for node, x in zip(model.inputs, xs):
        if len(node.shape) != 2 or node.shape[channel_axis] != N_BASES:
            raise ValueError(f"reverse_complement=True needs one-hot DNA inputs of shape {want} (channels A, C, G, T; "
                             f"{model.input_layout}); input {node.name!r} has shape {node.shape}")
        ok = ((x == 0) | (x == 1)).all() and (x.sum(axis=channel_axis) <= 1).all()
        if not ok:
            raise ValueError(f"reverse_complement=True needs one-hot input X (values 0/1, at most one 1 per "
                             f"position); input {node.name!r} is not")


def check_strand_swap(strand_swap):
    """Validate ``strand_swap`` (bool or a permutation) once, at the session boundary."""
    if isinstance(strand_swap, (bool, np.bool_)):
        return bool(strand_swap)
    if isinstance(strand_swap, (list, tuple, np.ndarray)) and all(
            isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in strand_swap):
        perm = tuple(int(i) for i in strand_swap)
        if sorted(perm) != list(range(len(perm))) or not perm:
            raise ValueError(f"strand_swap as a sequence must be a permutation of 0..C-1 (channel c of the target "
                             f"maps to channel strand_swap[c] on the reverse strand); got {list(perm)}")
        return perm
    raise TypeError(f"strand_swap must be True (swap a target layer's two strand channels), False (keep its "
                    f"channels) or a permutation of its channels; got {strand_swap!r}")


def strand_permutation(strand_swap, node, channel_axis: int = -1) -> np.ndarray:
    """Channel c of ``node``'s output corresponds to channel ``perm[c]`` on the reverse strand.

    ``True``: the channel axis (``channel_axis`` of the node's shape: the last in a
    channels-last model, the first in a channels-first one) holds the (+, -) strands (BPNet,
    bpnet-lite), swapped; one channel is kept. ``False``: channels kept (unstranded tasks). A
    sequence: that permutation.
    """
    n_channels = node.shape[channel_axis]
    where = "last axis" if channel_axis in (-1, len(node.shape) - 1) else f"channel axis {channel_axis}"
    if strand_swap is False:
        return np.arange(n_channels)
    if strand_swap is True:
        if n_channels > 2:
            raise ValueError(f"strand_swap=True swaps the two strand channels of target layer {node.name!r}, "
                             f"but its {where} has {n_channels} channels (shape {node.shape}); pass "
                             "strand_swap=False (unstranded channels) or a permutation, e.g. [1, 0, 3, 2]")
        return np.arange(n_channels)[::-1]
    if len(strand_swap) != n_channels:
        raise ValueError(f"strand_swap {list(strand_swap)} permutes {len(strand_swap)} channels; target layer "
                         f"{node.name!r} has {n_channels} on its {where} (shape {node.shape})")
    return np.asarray(strand_swap)


def reverse_target(target: Target, strand_swap) -> Target:
    """The target on the reverse-complement strand (see the module docstring). A two-axis target
    layer is (length, channels), or (channels, length) in a channels-first model
    (``target.length_axis``)."""
    if target.preset is not None:
        return target
    node, w = target.node, target.weights
    if isinstance(node.layer, InputLayer) or len(node.shape) > 2:
        form = "(channels, length)" if target.length_axis else "(length, channels)"
        raise ValueError(f"reverse_complement=True maps a unit or weight target on a layer of shape (channels,) or "
                         f"{form}; target layer {node.name!r} has shape {node.shape}")
    channel_axis = 0 if target.length_axis == 1 else -1
    perm = strand_permutation(strand_swap, node, channel_axis)
    w = np.moveaxis(w, channel_axis, -1)
    mapped = np.empty_like(w)
    mapped[..., perm] = w  # the weight on channel c moves to channel perm[c]
    mapped = np.moveaxis(mapped, -1, channel_axis)
    if len(node.shape) == 2:
        mapped = np.flip(mapped, axis=target.length_axis)
    return Target(node, np.ascontiguousarray(mapped), None, target.label, target.length_axis)
