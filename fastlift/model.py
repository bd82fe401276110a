"""`Model`: a validated DAG of layer calls (nodes), with named inputs and outputs.

The model is device-free: it holds numpy weights and runs on whatever `ops`
backend it is handed. Build one in code by calling layers on nodes::

    import fastlift as fl
    from fastlift import layers as L

    x = L.Input((100, 4), name="seq")
    h = L.Activation("relu")(L.Conv1D(kernel, bias, padding="same")(x))
    y = L.Dense(w, b)(L.GlobalAvgPool1D()(h))
    model = fl.Model(x, y)

or load one from a Keras file with `fastlift.load_model` (issue 3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from . import _validate
from .backends import get_ops
from .layers.base import Node
from .layers.core import Activation, Dropout, InputLayer, Softmax


#: Values of `Model.input_layout`.
LAYOUTS = ("channels_last", "channels_first")


class Step(NamedTuple):
    """One computation of a forward pass: the arrays of ``outputs`` from those of ``inputs``, by
    ``run(ops, input_arrays, weights) -> one array per output``. A plain step is one node's
    ``layer.forward``; a fused step (`fastlift.fuse`) computes one or two nodes from others in one
    pass, and the nodes it skips are never stored."""

    outputs: tuple
    inputs: tuple
    run: Callable


def _layer_forward(node):
    layer = node.layer
    return lambda ops, xs, weights: (layer.forward(ops, xs, weights(layer)),)


class Model:
    """A directed acyclic graph of layer calls.

    Parameters
    ----------
    inputs : Node or list of Node
        The `Input` nodes, in the order `predict` and `deeplift` take arrays.
    outputs : Node or list of Node
    name : str, optional
    input_layout : {"channels_last", "channels_first"}
        Where the inputs keep their channels (for DNA, the one-hot axis of size 4): Keras models
        are ``"channels_last"`` (N, L, 4), PyTorch/ONNX models ``"channels_first"`` (N, 4, L).
        Hypothetical scores, shuffled and flat references read it (`channel_axis`).

    Raises
    ------
    ValueError
        On a cycle, an input that the outputs use but ``inputs`` does not list (a
        dangling input), a listed input no output depends on, or duplicate node names.
    """

    def __init__(self, inputs, outputs, name: str = "model", input_layout: str = "channels_last"):
        self.name = name
        if input_layout not in LAYOUTS:
            raise ValueError(f"input_layout must be one of {LAYOUTS}; got {input_layout!r}")
        self.input_layout = input_layout
        self.inputs = _node_list(inputs, "inputs")
        self.outputs = _node_list(outputs, "outputs")
        for n in self.inputs:
            if not isinstance(n.layer, InputLayer):
                raise ValueError(f"inputs must be Input nodes; {n.name!r} is a {type(n.layer).__name__}")
        self.nodes = _topological_order(self.outputs)
        #: The forward program: one step per node, in topological order (`fastlift.fuse` rewrites it).
        self.plain_steps = tuple(Step((n,), n.inputs, _layer_forward(n)) for n in self.nodes
                                 if not isinstance(n.layer, InputLayer))
        #: node -> its topological position; node -> the nodes that read it, in order
        self.position = {node: k for k, node in enumerate(self.nodes)}
        self.readers: dict[Node, list[Node]] = {node: [] for node in self.nodes}
        for node in self.nodes:
            for i in node.inputs:
                self.readers[i].append(node)
        listed = set(map(id, self.inputs))
        for n in self.nodes:
            if isinstance(n.layer, InputLayer) and id(n) not in listed:
                raise ValueError(f"the outputs depend on input {n.name!r}, which is not in the model's inputs "
                                 f"{[i.name for i in self.inputs]} (dangling input)")
        used = set(map(id, self.nodes))
        for n in self.inputs:
            if id(n) not in used:
                raise ValueError(f"input {n.name!r} is not connected to any output")
        self._by_name: dict[str, Node] = {}
        for n in self.nodes:
            if n.name in self._by_name:
                raise ValueError(f"two nodes are named {n.name!r}; layer names must be unique")
            self._by_name[n.name] = n
        for n in self.nodes:
            if isinstance(n.layer, Softmax) and self.readers[n]:
                raise NotImplementedError(f"softmax {n.name!r} is used by another layer; fastlift supports "
                                          "softmax only as a final layer")

    @property
    def channel_axis(self) -> int:
        """The channel (one-hot) axis of a batched input array: -1 for channels-last models,
        1 for channels-first ones."""
        return 1 if self.input_layout == "channels_first" else -1

    # ----------------------------------------------------------------- lookup
    @property
    def input_names(self) -> list[str]:
        return [n.name for n in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [n.name for n in self.outputs]

    @property
    def layer_names(self) -> list[str]:
        """Node names in topological order (scores can be asked for any of them)."""
        return [n.name for n in self.nodes]

    def get_node(self, name: str) -> Node:
        """The node called ``name``; ValueError listing the valid names otherwise."""
        if not isinstance(name, str):
            raise TypeError(f"layer name must be a str; got {name!r}")
        try:
            return self._by_name[name]
        except KeyError:
            raise ValueError(f"unknown layer name {name!r}; the model has {self.layer_names}") from None

    def default_target(self) -> Node:
        """Pre-activation of the first output: the input of a final nonlinearity (and of
        any Dropout between), else the output itself."""
        node = self.outputs[0]
        while isinstance(node.layer, Dropout):
            node = node.inputs[0]
        if isinstance(node.layer, Softmax) or (isinstance(node.layer, Activation) and node.layer.activation != "linear"):
            return node.inputs[0]
        return node

    # ---------------------------------------------------------------- compute
    def predict(self, X, batch_size: int | None = None, *, dtype="float32", device="auto", n_threads=None):
        """Forward pass.

        Parameters
        ----------
        X : array, list of arrays, or dict {input name: array}
            Each shaped (n_examples, *input_shape).
        batch_size : int, optional
            Examples per forward batch (default: all at once, up to 1024).

        Returns
        -------
        array (n_examples, *output_shape), or a list of them for several outputs.
        """
        ops = get_ops(device, n_threads)
        dt = _validate.dtype_arg(dtype)
        xs = _validate.inputs(self, X, "X", dt)
        return forward_in_batches(self, ops, WeightCache(ops, dt), xs, batch_size)

    def forward(self, ops, xs, weights: WeightCache, keep=None, given=None, steps=None):
        """Activations of every node for a batch: {node: (rows, *node.shape)}.

        ``xs`` are device arrays in input order; ``weights`` gives each layer's weights on the
        device. ``keep`` (a set of nodes) limits which activations are retained: any other node's
        is dropped as soon as its last reader has run, so the memory can serve the next layers
        (None keeps all; the outputs are always kept). ``given`` ({node: array}) supplies
        activations computed elsewhere, which are not recomputed. ``steps`` replaces the plain
        program (one `Step` per node, `plain_steps`) by a rewritten one (`fastlift.fuse`).
        """
        acts = {node: x for node, x in zip(self.inputs, xs)}
        if given:
            acts.update(given)
        steps = self.plain_steps if steps is None else steps
        readers_left = None
        if keep is not None:
            keep = set(keep).union(self.outputs)  # an output read by another layer stays too
            readers_left = dict.fromkeys(self.nodes, 0)
            for step in steps:
                for i in step.inputs:
                    readers_left[i] += 1
        for step in steps:
            if not all(o in acts for o in step.outputs):
                outs = step.run(ops, [acts[i] for i in step.inputs], weights)
                acts.update(zip(step.outputs, outs))
            if readers_left is None:
                continue
            for i in step.inputs:
                readers_left[i] -= 1
                if readers_left[i] == 0 and i not in keep:
                    acts.pop(i, None)
            for o in step.outputs:  # computed alongside another output, read by nothing later
                if readers_left[o] == 0 and o not in keep:
                    acts.pop(o, None)
        return acts

    def summary(self, print_fn=None) -> None:
        """Print one line per node: name, class, output shape, inputs (as Keras's ``summary``).

        Parameters
        ----------
        print_fn : callable, optional
            Called with each line (default `print`); e.g. ``lines.append`` to keep the text.
        """
        print_fn = print if print_fn is None else print_fn
        print_fn(f"Model {self.name!r}: inputs {self.input_names} -> outputs {self.output_names}")
        for n in self.nodes:
            src = ", ".join(i.name for i in n.inputs)
            print_fn(f"  {n.name:<24} {type(n.layer).__name__:<20} {n.shape!s:<18} <- {src}")

    def __repr__(self) -> str:
        return f"<fastlift.Model {self.name!r} {len(self.nodes)} nodes, inputs={self.input_names}>"


class WeightCache:
    """Layer weights converted to a backend's arrays and dtype, each on first use, kept for as
    long as the cache: an `Explainer` holds one for its session (device-resident on a GPU)."""

    def __init__(self, ops, dtype):
        self.ops, self.dtype = ops, dtype
        self._cache: dict = {}  # layer -> _LazyWeights

    def __call__(self, layer):
        weights = self._cache.get(layer)
        if weights is None:
            weights = self._cache[layer] = _LazyWeights(layer, self.ops, self.dtype)
        return weights


class _LazyWeights(dict):
    """A layer's weights, each converted on first use; derived weights (a linear layer's
    kernel_pos/kernel_neg, read only by RevealCancel) are computed from the converted source.
    Conversions are read-only, so a backend may keep what it derives from them (packed or
    padded kernels) for as long as it lives."""

    def __init__(self, layer, ops, dtype):
        super().__init__()
        self._layer, self._ops, self._dtype = layer, ops, np.dtype(dtype)

    def __missing__(self, key):
        layer = self._layer
        if key not in layer.weights and key in layer.derived_weights:  # from the converted source
            source, fn = layer.derived_weights[key]
            value = _read_only(fn(self[source]))
            self[key] = value
            return value
        src = layer.weights[key]
        _validate.fits_dtype(np.asarray(src), self._dtype, f"layer {layer.name!r}: weight {key!r}")
        value = self._ops.asarray(src, self._dtype)
        if isinstance(value, np.ndarray) and value is not src and value.base is None:
            value.flags.writeable = False  # a fresh conversion, ours alone: read-only in place
        else:
            value = _read_only(value)
        self[key] = value
        return value

    def __contains__(self, key):
        return key in self._layer.weights or key in self._layer.derived_weights

    def get(self, key, default=None):
        return self[key] if key in self else default


def forward_in_batches(model: Model, ops, weights: WeightCache, xs, batch_size=None):
    """The model's outputs for validated inputs ``xs`` (host arrays), ``batch_size`` rows at a
    time (default: all at once, up to 1024): one array per output, or the array of the only one."""
    n = xs[0].shape[0]
    bs = _validate.batch_size_arg(batch_size, default=min(max(n, 1), 1024))
    dt = weights.dtype
    outs = [[] for _ in model.outputs]
    with ops.compute_context():
        for lo in range(0, n, bs):
            acts = model.forward(ops, [ops.asarray(x[lo:lo + bs], dt) for x in xs], weights)
            for k, o in enumerate(model.outputs):
                outs[k].append(ops.to_numpy(acts[o]))
    res = [np.concatenate(o) if o else np.zeros((0,) + node.shape, dt) for o, node in zip(outs, model.outputs)]
    return res[0] if len(res) == 1 else res


def _read_only(a):
    """A read-only view of a numpy array (backends may cache what they derive from it); others as is."""
    if isinstance(a, np.ndarray):
        a = a.view()
        a.flags.writeable = False
    return a


def _node_list(value, what) -> list[Node]:
    if isinstance(value, Node):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Node) for v in value):
        return list(value)
    raise TypeError(f"{what} must be a Node or a non-empty list of Nodes; got {value!r}")


def _topological_order(outputs: list[Node]) -> list[Node]:
    """Nodes the outputs depend on, inputs first; ValueError on a cycle."""
    order: list[Node] = []
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done
    for root in outputs:
        stack = [(root, iter(root.inputs))]
        if state.get(id(root)) == 2:
            continue
        state[id(root)] = 1
        while stack:
            node, it = stack[-1]
            child = next(it, None)
            if child is None:
                stack.pop()
                state[id(node)] = 2
                order.append(node)
                continue
            s = state.get(id(child))
            if s == 1:
                raise ValueError(f"the graph has a cycle through {child.name!r}")
            if s is None:
                state[id(child)] = 1
                stack.append((child, iter(child.inputs)))
    return order
