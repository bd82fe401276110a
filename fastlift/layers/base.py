"""Layer and Node: the device-free building blocks of a fastlift model.

A `Layer` holds weights (numpy) and knows three things, all expressed through an
`ops` backend so that no layer ever knows the device:

* ``forward(ops, xs, w)``: its output for a batch of rows (``xs``: one array per
  input, each ``(rows, *input_shape)``; ``w``: its weights on the device).
* ``backward(node, m, ctx)``: the multipliers it pushes to each input, given the
  multipliers ``m`` of its output for every example×reference pair.
* ``split(node, ctx)``: the positive/negative parts (Δ⁺, Δ⁻) of its output's
  difference from reference, which only the RevealCancel rule needs.

Multipliers travel as a pair ``(m_pos, m_neg)``; ``m_neg is None`` means the two are
equal, which is the case everywhere except downstream of a RevealCancel activation
(until the next Dense/Conv merges them again). Keeping one array in that common case
halves the work of the Rescale and gradient rules.

Calling a layer on nodes records a `Node` (one call of a layer: its inputs and output
shape). Calling one layer several times shares its weights, as in Keras.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict

import numpy as np

_name_counters: dict[str, itertools.count] = defaultdict(lambda: itertools.count())


def _auto_name(prefix: str) -> str:
    k = next(_name_counters[prefix])
    return prefix if k == 0 else f"{prefix}_{k}"


class Node:
    """One call of a layer: the graph vertex that holds an output shape.

    Attributes
    ----------
    layer : Layer
    inputs : tuple of Node
    name : str
        Unique within a model; the layer's name for its first call, ``<name>_<k>``
        for its k-th further call (shared layers).
    shape : tuple of int
        Output shape without the batch axis.
    """

    __slots__ = ("inputs", "layer", "name", "shape")

    def __init__(self, layer: Layer, inputs: tuple[Node, ...], name: str, shape: tuple[int, ...]):
        self.layer = layer
        self.inputs = tuple(inputs)
        self.name = name
        self.shape = tuple(int(s) for s in shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # Python ints: exact, and ~20x faster than np.prod per call

    def __repr__(self) -> str:
        return f"<Node {self.name!r} {type(self.layer).__name__} shape={self.shape}>"


class Layer:
    """Base class of all layers.

    Subclasses set ``n_inputs`` (``None`` for variadic merges) and implement
    `output_shape`, `forward`, `backward` and `split`.
    """

    n_inputs: int | None = 1
    #: True for layers whose backward/split apply the same non-negative linear map to
    #: both halves of a split (reshapes, crops, pads, sums, averages).
    elementwise_linear = False
    #: weights a rule may read that are computed from a stored one, never stored on the layer:
    #: ``{name: (source weight, function)}`` (e.g. RevealCancel's positive and negative kernels).
    #: A run derives them from its converted source when first asked (`fastlift.model.WeightCache`).
    derived_weights: dict = {}

    def __init__(self, name: str | None = None):
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be a non-empty str; got {name!r}")
        self.name = name or _auto_name(snake_case(type(self).__name__))
        self._calls = 0
        self.weights: dict[str, np.ndarray] = {}

    def weight_names(self) -> list[str]:
        """Every weight a rule may read: the stored ones, then the derived ones."""
        return [*self.weights, *(k for k in self.derived_weights if k not in self.weights)]

    def weight(self, key: str) -> np.ndarray:
        """A stored weight, or a derived one computed from its source (float64; not kept)."""
        if key in self.weights:
            return self.weights[key]
        source, fn = self.derived_weights[key]
        return fn(self.weights[source])

    # ---------------------------------------------------------------- graph
    def __call__(self, inputs) -> Node:
        nodes = _as_node_tuple(inputs, f"{self.name} input")
        if self.n_inputs is not None and len(nodes) != self.n_inputs:
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}) takes {self.n_inputs} input(s); got {len(nodes)}"
            )
        if self.n_inputs is None and len(nodes) < 2:
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}) merges 2 or more inputs; got {len(nodes)}"
            )
        shape = self.output_shape([n.shape for n in nodes])
        name = self.name if self._calls == 0 else f"{self.name}_{self._calls}"
        self._calls += 1
        return Node(self, nodes, name, shape)

    def output_shape(self, input_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        raise NotImplementedError

    # ------------------------------------------------------------- numerics
    def forward(self, ops, xs, w):
        raise NotImplementedError

    def backward(self, node: Node, m, ctx):
        """Multipliers for each input: a list of ``(m_pos, m_neg)`` pairs (or None)."""
        if not self.elementwise_linear:
            raise NotImplementedError(f"{type(self).__name__} has no backward rule")
        pos, neg = m
        pos_in = self.adjoint(ctx.ops, pos, node)
        if neg is None:
            return [(p, None) for p in pos_in]
        return list(zip(pos_in, self.adjoint(ctx.ops, neg, node)))

    def gradient_reads(self, node: Node) -> tuple:
        """Nodes whose activations `backward` reads when the rules are gradient rules
        (gradient, guided backprop; the points of integrated gradients). The engine frees every
        other activation during such forwards. The default, for a layer that does not say, is
        its inputs and itself; layers whose backward reads nothing return ``()``."""
        return () if self.elementwise_linear else (node, *node.inputs)

    def split(self, node: Node, ctx):
        """(Δ⁺, Δ⁻) of this node's output per pair, each (n_pairs, *node.shape)."""
        if not self.elementwise_linear:
            return sign_split(ctx.delta(node))
        parts = [ctx.split(i) for i in node.inputs]
        w = ctx.weights(self)
        pos = self.forward(ctx.ops, [p for p, _ in parts], w)
        neg = self.forward(ctx.ops, [n for _, n in parts], w)
        return pos, neg

    def adjoint(self, ops, m, node: Node) -> list:
        """Transpose of the (bias-free) linear map, one array per input."""
        raise NotImplementedError

    def config(self) -> dict:
        """Hyper-parameters (no weights), for repr and serialisation."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({self.name!r}{', ' if args else ''}{args})"


def sign_split(delta):
    """Δ⁺ = Δ·[Δ>0], Δ⁻ = Δ·[Δ<0] (the split the original uses at its inputs)."""
    return delta * (delta > 0), delta * (delta < 0)


def snake_case(name: str) -> str:
    """A class name as Keras names its layers automatically: ``Conv1D`` -> ``conv1d``,
    ``GlobalAveragePooling1D`` -> ``global_average_pooling1d`` (Keras's ``to_snake_case``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _as_node_tuple(inputs, what: str) -> tuple[Node, ...]:
    if isinstance(inputs, Node):
        return (inputs,)
    if isinstance(inputs, (list, tuple)) and all(isinstance(i, Node) for i in inputs):
        return tuple(inputs)
    raise TypeError(f"{what} must be a Node or a list of Nodes (outputs of layer calls); got {inputs!r}")


def as_int_tuple(value, n: int, what: str, minimum: int = 1) -> tuple[int, ...]:
    """Normalise an int or a length-n sequence of ints (Keras style) to a tuple."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),) * n
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be an int or {n} ints; got {value!r}") from None
    if len(out) != n or any(v < minimum for v in out):
        raise ValueError(f"{what} must be {n} int(s) >= {minimum}; got {value!r}")
    return out


def positive_part(a):
    """a where a > 0, else 0 (either array module)."""
    return a * (a > 0)


def negative_part(a):
    """a where a < 0, else 0 (either array module)."""
    return a * (a < 0)


def as_weight(array, name: str, layer: str, shape=None) -> np.ndarray:
    """Validate a weight array: numeric, finite, of the given shape; stored as read-only float64."""
    try:
        a = np.asarray(array)
    except Exception as e:
        raise TypeError(f"{layer}: {name} must be an array of numbers; got {type(array).__name__}") from e
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{layer}: {name} must be numeric; got dtype {a.dtype}")
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(f"{layer}: {name} must have shape {tuple(shape)}; got {a.shape}")
    a = np.array(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{layer}: {name} contains NaN or Inf")
    a.flags.writeable = False  # a layer's weights are fixed: runs may cache what they derive from them
    return a
