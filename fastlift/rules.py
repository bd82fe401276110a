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

This module only names the rules; `fastlift.plan` gives each node of a model its rule, and the
layers apply them.
"""

from __future__ import annotations

from enum import Enum


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
