"""Targets: which output an attribution explains, as weights over a target layer's units.

A target is an int (one unit, flattened index), a weight array over the layer's units, or a
preset computed per example from its own forward pass and held constant (``"profile"``,
``"sum"``). A list of targets, or a list of target layers, is computed in one pass: every target
shares the forward passes, and the result gains a leading target axis.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _validate
from .layers.base import Node
from .layers.core import InputLayer, Softmax

#: Named targets (see `parse_targets`).
PRESETS = ("profile", "sum")


class Target:
    """One target: a node and fixed weights over its units, or a per-example preset."""

    def __init__(self, node: Node, weights, preset, label):
        self.node, self.weights, self.preset, self.label = node, weights, preset, label

    def pair_weights(self, tx, pair_x):
        """Per-pair weights (P, n_units) float64 for a preset, from the examples' target
        activations ``tx`` (n_x, n_units) float64; None for fixed weights."""
        if self.preset is None:
            return None
        if self.preset == "sum":
            return np.ones((len(pair_x), tx.shape[1]))
        return profile_weights(tx.reshape((-1,) + self.node.shape)).reshape(tx.shape[0], -1)[pair_x]


def profile_weights(z):
    """Weights of the ``"profile"`` target for logits ``z`` (n, length, *channels).

    ``w = softmax(z) - 1/length`` along the length axis (axis 1), per channel, so that
    ``Σ w·z = Σ softmax(z)·(z - mean(z))``: BPNet/ChromBPNet's softmax-weighted,
    mean-normalised profile logits, with the softmax held constant (computed from the
    example, not differentiated, as their ``stop_gradient`` does).
    """
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True) - 1.0 / z.shape[1]


def target_node(model, target_layer) -> Node:
    """The node a target refers to: ``target_layer`` by name, or the model's default target."""
    node = model.default_target() if target_layer is None else model.get_node(target_layer)
    if isinstance(node.layer, Softmax):
        raise ValueError(f"target_layer {node.name!r} is a softmax output; target its input (the logits, "
                         "the default) instead")
    if isinstance(node.layer, InputLayer):
        raise ValueError(f"target_layer {node.name!r} is a model input; choose a layer after it")
    return node


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
            out.extend(Target(node, w, preset, label) for w, preset, label in _targets(node, t, f"target[{i}]")[0])
        return out, True
    node = target_node(model, target_layer)
    entries, multi = _targets(node, target)
    return [Target(node, w, preset, label) for w, preset, label in entries], multi


def _targets(node, target, label="target"):
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
            return _preset(t, node, what)
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


def _preset(name, node, what):
    if name == "sum":
        return None, "sum", f"{node.name}[sum]"
    if name == "profile":
        if len(node.shape) < 1 or node.shape[0] < 2:
            raise ValueError(f"{what}='profile' needs a target layer with a length axis (shape (length,) or "
                             f"(length, channels)); {node.name!r} has shape {node.shape}")
        return None, "profile", f"{node.name}[profile]"
    raise ValueError(f"{what} {name!r}: unknown target preset; the presets are 'profile' (softmax-weighted, "
                     "mean-normalised logits of a profile head, as BPNet/ChromBPNet) and 'sum' (the sum of the "
                     "target layer's units, e.g. the two strands of a counts head)")
