"""Targets: which output an attribution explains, as weights over a target layer's units.

A target is an int (one unit, flattened index), a weight array over the layer's units, or a
preset whose weights are computed per pair from the forward passes (``"profile"``,
``"profile_chrombpnet"``, ``"profile_bpnetlite"``, ``"sum"``). A list of targets, or a list of
target layers, is computed in one pass: every target shares the forward passes, and the result
gains a leading target axis.

The three profile presets explain a profile head's logits z (length, *channels), or
(channels, length) for a head made channels-first (`length_axis`):

* ``"profile"`` is the formula as written: Σ softmax(z)·(z - mean z) per channel along the
  length axis, with the softmax taken from the example and held constant. Weights
  ``softmax(z_x) - 1/L``; contributions sum to Σ softmax(z_x)·(l_x - l_ref) (l = z - mean z).
* ``"profile_chrombpnet"`` reproduces kundajelab-shap (ChromBPNet's ``contribs_bw``, BPNet):
  there ``tf.stop_gradient`` does not cut the softmax branch out of the graph shap walks, so
  the product softmax·l gets shap's two-input rule and l's multiplier is
  ½(softmax(l_x) + softmax(l_ref)); the softmax branch's share then stops at the
  stop_gradient. Weights ``½(softmax(z_x) + softmax(z_ref)) - 1/L`` per pair (0 where
  |l_x - l_ref| < 1e-7, as shap's rule). The contributions do not sum to the target's change
  Σ softmax(l_x)·l_x - Σ softmax(l_ref)·l_ref: the reported deltas show by how much.
* ``"profile_bpnetlite"`` reproduces bpnet-lite's ``ProfileWrapper`` under tangermeme's
  ``deep_lift_shap``: the logits are flattened (strands and positions together), mean-normalised,
  and l·softmax(l) is one elementwise non-linearity under the Rescale rule, so l's multiplier is
  m = (l_x·p_x - l_ref·p_ref) / (l_x - l_ref), p = softmax over all units (the gradient
  p·(1 + l - Σ p·l) where |l_x - l_ref| < 1e-6, as tangermeme). Weights ``m - mean(m)`` per pair;
  contributions sum to Σ p_x·l_x - Σ p_ref·l_ref.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _validate
from .layers.base import Node
from .layers.conv import _Spatial
from .layers.core import Activation, Dropout, InputLayer, ScaleShift, Softmax
from .layers.merge import Add, Average, Concatenate, Subtract

#: Named targets (see `parse_targets` and the module docstring).
PRESETS = ("profile", "profile_chrombpnet", "profile_bpnetlite", "sum")

#: Presets over a profile head: they need a target layer with a length axis.
PROFILE_PRESETS = ("profile", "profile_chrombpnet", "profile_bpnetlite")

#: Presets whose weights also depend on the reference (one weight vector per pair).
PAIR_PRESETS = ("profile_chrombpnet", "profile_bpnetlite")


class Target:
    """One target: a node and fixed weights over its units, or a per-example preset.

    ``length_axis``: the axis of the node's output that holds positions (`length_axis`): the
    profile presets take their softmax and mean along it.
    """

    def __init__(self, node: Node, weights, preset, label, length_axis: int = 0):
        self.node, self.weights, self.preset, self.label = node, weights, preset, label
        self.length_axis = length_axis

    def _lengthwise(self, z):
        """(n, *node.shape) -> the same values with the length axis at axis 1."""
        return np.moveaxis(z.reshape((-1,) + self.node.shape), 1 + self.length_axis, 1)

    def _unlengthwise(self, w, n):
        """The inverse of `_lengthwise`, flattened to (n, n_units)."""
        return np.ascontiguousarray(np.moveaxis(w, 1, 1 + self.length_axis)).reshape(n, -1)

    def pair_weights(self, tx, tr, pair_x, pair_r):
        """Per-pair weights (P, n_units) float64 for a preset; None for fixed weights.

        ``tx`` (n_x, n_units), ``tr`` (n_r, n_units): float64 target activations of the chunk's
        example and reference rows; pair p compares ``tx[pair_x[p]]`` with ``tr[pair_r[p]]``.
        """
        if self.preset is None:
            return None
        n_pairs = len(pair_x)
        if self.preset == "sum":
            return np.ones((n_pairs, tx.shape[1]))
        if self.preset == "profile":
            return self._unlengthwise(profile_weights(self._lengthwise(tx)), tx.shape[0])[pair_x]
        if self.preset == "profile_chrombpnet":
            zx, zr = self._lengthwise(tx[pair_x]), self._lengthwise(tr[pair_r])
            return self._unlengthwise(profile_chrombpnet_weights(zx, zr), n_pairs)
        return profile_bpnetlite_weights(tx[pair_x], tr[pair_r])  # all units together: no axis matters

    def pair_deltas(self, tx, tr, pair_x, pair_r, w):
        """(P,) change of the target between each pair's example and reference, for the weights
        ``w`` (P, n_units) of `pair_weights` (or the fixed weights when None).

        Σ w·(z_x - z_ref) for every target but ``"profile_chrombpnet"``, whose weights are not
        those of a quantity's change: its Δ is that of Σ softmax(l)·l (l = z - mean z per channel),
        the quantity kundajelab-shap explains, so the reported deltas show how far its
        contributions are from summing to it.
        """
        zx, zr = tx[pair_x], tr[pair_r]
        if w is None:
            wf = self.weights.reshape(-1)
            return (zx * wf).sum(axis=1) - (zr * wf).sum(axis=1)
        if self.preset == "profile_chrombpnet":
            return _softmax_weighted_logits(self._lengthwise(zx)) - _softmax_weighted_logits(self._lengthwise(zr))
        return (zx * w).sum(axis=1) - (zr * w).sum(axis=1)


def profile_weights(z):
    """Weights of the ``"profile"`` target for logits ``z`` (n, length, *channels).

    ``w = softmax(z) - 1/length`` along the length axis (axis 1), per channel, so that
    ``Σ w·z = Σ softmax(z)·(z - mean(z))``: BPNet/ChromBPNet's softmax-weighted,
    mean-normalised profile logits, with the softmax held constant (computed from the
    example, not differentiated, as their ``stop_gradient`` does).
    """
    z = np.asarray(z, dtype=np.float64)
    return _softmax(z, 1) - 1.0 / z.shape[1]


def _softmax(z, axis):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _softmax_weighted_logits(z):
    """(n,) Σ softmax(l)·l over (length, *channels), l = z - mean z along the length axis."""
    lz = z - z.mean(axis=1, keepdims=True)
    return (_softmax(lz, 1) * lz).reshape(len(z), -1).sum(axis=1)


def profile_chrombpnet_weights(zx, zr):
    """Weights of ``"profile_chrombpnet"`` for pairs of logits ``zx``, ``zr`` (P, length, *channels).

    ``w = ½(softmax(z_x) + softmax(z_ref)) - 1/length`` along the length axis, per channel:
    kundajelab-shap's two-input rule for softmax(l)·l (l = z - mean z) whose softmax branch then
    stops at a stop_gradient. Where |l_x - l_ref| < 1e-7 shap sets l's multiplier to 0 (the
    1/length term, from the mean, stays).
    """
    zx, zr = np.asarray(zx, dtype=np.float64), np.asarray(zr, dtype=np.float64)
    lx, lr = zx - zx.mean(axis=1, keepdims=True), zr - zr.mean(axis=1, keepdims=True)
    m = 0.5 * (_softmax(lx, 1) + _softmax(lr, 1))
    m[np.abs(lx - lr) < 1e-7] = 0.0
    return m - m.mean(axis=1, keepdims=True)


def profile_bpnetlite_weights(zx, zr):
    """Weights of ``"profile_bpnetlite"`` for pairs of flattened logits ``zx``, ``zr`` (P, n_units).

    l = z - mean z and p = softmax(l) over all units (strands and positions together, as
    bpnet-lite's ``ProfileWrapper`` flattens them); l·p is one elementwise non-linearity under the
    Rescale rule: m = (l_x·p_x - l_ref·p_ref)/(l_x - l_ref), or its gradient p_x·(1 + l_x - Σ p_x·l_x)
    where |l_x - l_ref| < 1e-6 (tangermeme's threshold). The mean-normalisation is linear:
    ``w = m - mean(m)``.
    """
    zx, zr = np.asarray(zx, dtype=np.float64), np.asarray(zr, dtype=np.float64)
    lx, lr = zx - zx.mean(axis=1, keepdims=True), zr - zr.mean(axis=1, keepdims=True)
    px, pr = _softmax(lx, 1), _softmax(lr, 1)
    d = lx - lr
    close = np.abs(d) < 1e-6
    grad = px * (1.0 + lx - (px * lx).sum(axis=1, keepdims=True))
    m = np.where(close, grad, (lx * px - lr * pr) / np.where(close, 1.0, d))
    return m - m.mean(axis=1, keepdims=True)


def target_node(model, target_layer) -> Node:
    """The node a target refers to: ``target_layer`` by name, or the model's default target."""
    node = model.default_target() if target_layer is None else model.get_node(target_layer)
    if isinstance(node.layer, Softmax):
        raise ValueError(f"target_layer {node.name!r} is a softmax output; target its input (the logits, "
                         "the default) instead")
    if isinstance(node.layer, InputLayer):
        raise ValueError(f"target_layer {node.name!r} is a model input; choose a layer after it")
    return node


def length_axis(model, node) -> int:
    """The axis of ``node``'s output (without the batch axis) that holds positions: the last,
    (channels, ..., length), for a layer of two or more axes made channels-first (a PyTorch
    profile head is (strands, length)); else the first, (length, *channels).

    The layout is that of the convolution, pooling, cropping or padding that makes the node, or
    that it follows through elementwise layers (activations, BatchNormalization, Dropout,
    merges), or the model's ``input_layout`` for an input met that way; a layer that moves axes
    (Permute, Reshape, Dense) leaves the channels-last default.
    """
    last = len(node.shape) - 1
    if last < 1:
        return 0
    walk = (Activation, ScaleShift, Dropout, Add, Subtract, Average, Concatenate)
    while True:
        layer = node.layer
        if isinstance(layer, _Spatial):
            first = layer.data_format == "channels_first"
            break
        if isinstance(layer, InputLayer):
            first = model.input_layout == "channels_first"
            break
        if not isinstance(layer, walk) or not node.inputs:
            first = False
            break
        node = node.inputs[0]
    return last if first else 0


def parse_targets(model, target, target_layer) -> tuple[list[Target], bool]:
    """-> (one `Target` per int / preset / weight array, per layer; whether the result has a
    leading target axis)."""
    if isinstance(target_layer, (list, tuple)):
        if not target_layer or not all(isinstance(n, str) for n in target_layer):
            raise TypeError(f"target_layer must be None, a layer name or a non-empty list of names; got "
                            f"{target_layer!r}")
        if isinstance(target, (list, tuple)):
            if len(target) != len(target_layer):
                raise ValueError(f"with target_layer a list of {len(target_layer)} layers, target must be one "
                                 f"target per layer (a list of {len(target_layer)}) or a single target; got "
                                 f"{len(target)} targets")
            per_layer = list(target)
        else:
            per_layer = [target] * len(target_layer)
        out = []
        for i, (t, name) in enumerate(zip(per_layer, target_layer)):
            node = target_node(model, name)
            if isinstance(t, (list, tuple)):
                raise TypeError(f"target[{i}] for layer {name!r} must be an int, a preset name or a weight "
                                f"array; got a list")
            axis = length_axis(model, node)
            out.extend(Target(node, w, preset, label, axis)
                       for w, preset, label in _targets(node, t, f"target[{i}]", axis)[0])
        return out, True
    node = target_node(model, target_layer)
    axis = length_axis(model, node)
    entries, multi = _targets(node, target, length=axis)
    return [Target(node, w, preset, label, axis) for w, preset, label in entries], multi


def _targets(node, target, label="target", length=0):
    """-> ([(weights or None, preset or None, label)], multi) for one target layer."""
    units = node.size

    def one_hot(t, what):
        if isinstance(t, bool) or not isinstance(t, numbers.Integral):
            raise TypeError(f"{what} must be an int index; got {t!r}")
        if not 0 <= t < units:
            raise ValueError(f"{what} must be in [0, {units}) for target layer {node.name!r} with "
                             f"output shape {node.shape}; got {t}")
        w = np.zeros(units)
        w[int(t)] = 1.0
        return w.reshape(node.shape)

    def one(t, what):
        if isinstance(t, str):
            return _preset(t, node, what, length)
        if isinstance(t, numbers.Integral):
            return one_hot(t, what), None, f"{node.name}[{int(t)}]"
        w = _validate.numeric_array(t, what)
        if w.shape == node.shape or w.shape == (units,):
            return w.reshape(node.shape).astype(np.float64), None, f"{node.name}[weights]"
        raise ValueError(f"{what} as an array must have the target layer's shape {node.shape} (or ({units},)); "
                         f"got {w.shape}")

    if isinstance(target, (list, tuple)):
        if not target:
            raise ValueError("target list must not be empty")
        return [one(t, f"{label}[{i}]") for i, t in enumerate(target)], True
    return [one(target, label)], False


def _preset(name, node, what, length=0):
    if name == "sum":
        return None, "sum", f"{node.name}[sum]"
    if name in PROFILE_PRESETS:
        if len(node.shape) < 1 or node.shape[length] < 2:
            form = "(length,) or (channels, length) in a channels-first model" if length else \
                "(length,) or (length, channels)"
            raise ValueError(f"{what}={name!r} needs a target layer with a length axis (shape {form}); "
                             f"{node.name!r} has shape {node.shape}")
        return None, name, f"{node.name}[{name}]"
    raise ValueError(f"{what} {name!r}: unknown target preset; the presets are 'profile' (softmax-weighted, "
                     "mean-normalised logits of a profile head, the formula as written), 'profile_chrombpnet' "
                     "(the numbers ChromBPNet/BPNet's kundajelab-shap path gives), 'profile_bpnetlite' (bpnet-lite/"
                     "tangermeme's profile wrapper) and 'sum' (the sum of the target layer's units, e.g. the two "
                     "strands of a counts head)")
