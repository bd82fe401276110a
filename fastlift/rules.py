"""Attribution rules and how each activation in a model gets one.

| rule              | activation multiplier                                         |
|-------------------|---------------------------------------------------------------|
| gradient          | f'(x)                                                         |
| rescale           | (f(x) - f(x⁰)) / (x - x⁰); f'(x⁰) where |x - x⁰| < 1e-7      |
| reveal_cancel     | separate multipliers for Δx⁺ and Δx⁻ (Shrikumar et al. §3.5.3) |
| guided_backprop   | f'(x) where the incoming multiplier is > 0, else 0            |
| genomics_default  | rescale after a convolution, reveal_cancel after a dense      |
|                   | layer (looking back through BatchNorm and Dropout)            |

Max pooling has its own choice, `MaxPoolRule`: ``exact`` (default) keeps
summation-to-delta for any reference; ``gradient`` is the original's.
"""

from __future__ import annotations

from enum import Enum

from .layers.base import Node
from .layers.conv import _Conv
from .layers.core import Activation, BatchNormalization, Dense, Dropout


class Rule(Enum):
    GRADIENT = "gradient"
    RESCALE = "rescale"
    REVEAL_CANCEL = "reveal_cancel"
    GUIDED_BACKPROP = "guided_backprop"
    GENOMICS_DEFAULT = "genomics_default"


class MaxPoolRule(Enum):
    EXACT = "exact"
    GRADIENT = "gradient"


RULES = tuple(r.value for r in Rule)
MAX_POOL_RULES = tuple(r.value for r in MaxPoolRule)


def parse_rule(rule) -> Rule:
    if isinstance(rule, Rule):
        return rule
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
    return Rule(rule)


def parse_max_pool(max_pool) -> MaxPoolRule:
    if isinstance(max_pool, MaxPoolRule):
        return max_pool
    if not isinstance(max_pool, str) or max_pool not in MAX_POOL_RULES:
        raise ValueError(f"max_pool must be one of {MAX_POOL_RULES}; got {max_pool!r}")
    return MaxPoolRule(max_pool)


def resolve(nodes: list[Node], rule: Rule) -> dict[Node, Rule]:
    """The rule of every node (activations get a concrete rule; other layers the run's
    rule, which only matters for max pooling under gradient/guided backprop)."""
    out = {}
    for node in nodes:
        if rule is Rule.GENOMICS_DEFAULT:
            out[node] = genomics_default_rule(node) if isinstance(node.layer, Activation) else Rule.RESCALE
        else:
            out[node] = rule
    return out


def genomics_default_rule(node: Node) -> Rule:
    """The original's DeepLIFT_GenomicsDefault for one activation node.

    Walk back through BatchNormalization and Dropout; a convolution before it means
    Rescale, a Dense layer RevealCancel, anything else is an error (as in deeplift).
    """
    src = node.inputs[0]
    while isinstance(src.layer, (BatchNormalization, Dropout)):
        src = src.inputs[0]
    if isinstance(src.layer, _Conv):
        return Rule.RESCALE
    if isinstance(src.layer, Dense):
        return Rule.REVEAL_CANCEL
    raise ValueError(
        f"rule='genomics_default' resolves an activation by the layer before it (convolution -> rescale, "
        f"dense -> reveal_cancel), but activation {node.name!r} follows {src.name!r} "
        f"({type(src.layer).__name__}); choose rule='rescale' or rule='reveal_cancel' for this model")
