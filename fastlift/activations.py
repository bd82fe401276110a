"""Activation codes and names: the vocabulary layers, backends and kernels share.

`Act` numbers are ``FL_ACT_*`` in ``csrc/fl_math.h``; every backend computes the activation a code
names with the same per-element math (the numpy statement in `fastlift.backends.ops`, the fast one
in the header).
"""

from __future__ import annotations

from enum import IntEnum


class Act(IntEnum):
    """Elementwise activation codes; the same numbers are ``FL_ACT_*`` in ``csrc/fl_math.h``."""

    LINEAR = 0
    RELU = 1
    RELU6 = 2
    LEAKY_RELU = 3  # f = x if x > 0 else alpha*x (PReLU: alpha per feature)
    ELU = 4  # f = x if x > 0 else alpha*(exp(x) - 1)
    SELU = 5
    SIGMOID = 6
    HARD_SIGMOID = 7  # f = clip(alpha*x + 0.5, 0, 1); Keras 2 alpha=0.2, Keras 3 alpha=1/6
    TANH = 8
    SOFTPLUS = 9
    SOFTSIGN = 10
    SWISH = 11  # x * sigmoid(x), a.k.a. silu
    GELU = 12  # exact: x * Phi(x)
    GELU_TANH = 13  # tanh approximation
    EXPONENTIAL = 14
    LOG = 15  # natural log (inputs > 0): the `Log` layer, not a Keras activation name


#: Keras activation names -> codes ("silu" is "swish").
ACT_CODES = {
    "linear": Act.LINEAR, "relu": Act.RELU, "relu6": Act.RELU6, "leaky_relu": Act.LEAKY_RELU,
    "elu": Act.ELU, "selu": Act.SELU, "sigmoid": Act.SIGMOID, "hard_sigmoid": Act.HARD_SIGMOID,
    "tanh": Act.TANH, "softplus": Act.SOFTPLUS, "softsign": Act.SOFTSIGN, "swish": Act.SWISH,
    "silu": Act.SWISH, "gelu": Act.GELU, "gelu_tanh": Act.GELU_TANH, "exponential": Act.EXPONENTIAL,
}
#: ``alpha`` when an activation that has one is given none (Keras's defaults).
DEFAULT_ALPHA = {Act.LEAKY_RELU: 0.3, Act.ELU: 1.0, Act.HARD_SIGMOID: 0.2}

#: Activation names accepted by `Activation` (plus "softmax", a layer of its own).
ACTIVATIONS = tuple(sorted(ACT_CODES)) + ("softmax",)
