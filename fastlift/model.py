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

import numpy as np

from . import _validate
from .backends.ops import Act
from .layers.base import Node
from .layers.conv import _Conv
from .layers.core import Activation, Dropout, InputLayer, Softmax
from .layers.merge import Add


class Model:
    """A directed acyclic graph of layer calls.

    Parameters
    ----------
    inputs : Node or list of Node
        The `Input` nodes, in the order `predict` and `deeplift` take arrays.
    outputs : Node or list of Node
    name : str, optional

    Raises
    ------
    ValueError
        On a cycle, an input that the outputs use but ``inputs`` does not list (a
        dangling input), a listed input no output depends on, or duplicate node names.
    """

    def __init__(self, inputs, outputs, name: str = "model"):
        self.name = name
        self.inputs = _node_list(inputs, "inputs")
        self.outputs = _node_list(outputs, "outputs")
        for n in self.inputs:
            if not isinstance(n.layer, InputLayer):
                raise ValueError(f"inputs must be Input nodes; {n.name!r} is a {type(n.layer).__name__}")
        self.nodes = _topological_order(self.outputs)
        self._order = {node: k for k, node in enumerate(self.nodes)}  # topological position
        self._readers_of = {node: [] for node in self.nodes}  # the nodes that read each, in order
        for node in self.nodes:
            for i in node.inputs:
                self._readers_of[i].append(node)
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
            if isinstance(n.layer, Softmax) and self._readers_of[n]:
                raise NotImplementedError(f"softmax {n.name!r} is used by another layer; fastlift supports "
                                          "softmax only as a final layer")

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
        from .backends import get_ops

        ops = get_ops(device, n_threads)
        dt = _validate.dtype_arg(dtype)
        xs = _validate.inputs(self, X, "X", dt)
        n = xs[0].shape[0]
        bs = _validate.batch_size_arg(batch_size, default=min(max(n, 1), 1024))
        cache = WeightCache(ops, dt)
        outs = [[] for _ in self.outputs]
        with ops.compute_context():
            for lo in range(0, n, bs):
                acts = self.forward(ops, [ops.asarray(x[lo:lo + bs], dt) for x in xs], cache)
                for k, o in enumerate(self.outputs):
                    outs[k].append(ops.to_numpy(acts[o]))
        res = [np.concatenate(o) if o else np.zeros((0,) + node.shape, dt) for o, node in zip(outs, self.outputs)]
        return res[0] if len(res) == 1 else res

    def forward(self, ops, xs, cache: WeightCache, keep=None, given=None):
        """Activations of every node for a batch: {node: (rows, *node.shape)}.

        ``xs`` are device arrays in input order; ``keep`` (a set of nodes) limits which
        activations are retained: any other node's is dropped as soon as its last consumer
        has run, so the memory can serve the next layers (None keeps all; the outputs are
        always kept). With ``keep``, a two-input Add of an Activation that nothing else reads
        and that is not kept computes ``other + f(z)`` in one pass and the activation is never
        stored (`_fused_adds`). ``given`` ({node: array}) supplies activations computed
        elsewhere, which are not recomputed.
        """
        acts = {node: x for node, x in zip(self.inputs, xs)}
        if given:
            acts.update(given)
        if keep is not None:
            keep = set(keep).union(self.outputs)  # an output read by another layer stays too
        readers_left = None if keep is None else self._readers()
        fused = {} if keep is None else self._fused_adds(keep, readers_left, acts)
        inside = {act: add for add, (act, _) in fused.items()}  # never stored
        early = {act.inputs[0]: add for add, (act, other) in fused.items()  # the Add in the conv's store
                 if self._fuses_into_conv(act, other, readers_left, acts)}
        for node in self.nodes:
            read = node.inputs
            if node in acts:
                pass
            elif node in early:
                add = early[node]
                acts[node], acts[add] = node.layer.forward_residual_relu(ops, acts[node.inputs[0]], acts[fused[add][1]],
                                                                         cache(node.layer))
            elif node in inside:
                if node.inputs[0] not in early:
                    continue  # its inputs are read when its Add runs
            elif node in fused:
                act, other = fused[node]
                acts[node] = act.layer.forward_added(ops, acts[act.inputs[0]], acts[other], cache(act.layer))
                read = (*node.inputs, *act.inputs)
            else:
                acts[node] = node.layer.forward(ops, [acts[i] for i in node.inputs], cache(node.layer))
            if readers_left is None:
                continue
            for i in read:
                readers_left[i] -= 1
                if readers_left[i] == 0 and i not in keep:
                    acts.pop(i, None)
        return acts

    def _fused_adds(self, keep, readers, given) -> dict:
        """{Add node: (its Activation input, its other input)} where the activation is read
        by that Add only, is neither kept nor given, and the Add has exactly two inputs."""
        fused = {}
        for node in self.nodes:
            if type(node.layer) is not Add or len(node.inputs) != 2 or node in given:
                continue
            for k, act in enumerate(node.inputs):
                if (isinstance(act.layer, Activation) and readers[act] == 1 and act not in keep
                        and act not in given):
                    fused[node] = (act, node.inputs[1 - k])
                    break
        return fused

    def _fuses_into_conv(self, act, other, readers, given) -> bool:
        """Whether a fused Add of ``act`` can run in the store of the convolution ``act`` reads:
        a ReLU of a channels-last convolution that nothing else reads, and ``other`` computed
        before that convolution."""
        z = act.inputs[0]
        return (type(act.layer) is Activation and act.layer.act == Act.RELU and isinstance(z.layer, _Conv)
                and z.layer.data_format == "channels_last" and readers[z] == 1 and z not in given
                and self._order[other] < self._order[z])

    def _readers(self) -> dict:
        """{node: how many input slots of other nodes read it} (a fresh dict: forward counts down)."""
        return {node: len(r) for node, r in self._readers_of.items()}

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
    """Layer weights converted to the backend's arrays and dtype, each on first use in a run."""

    def __init__(self, ops, dtype):
        self.ops, self.dtype = ops, dtype
        self._cache: dict[int, dict] = {}

    def __call__(self, layer):
        key = id(layer)
        if key not in self._cache:
            self._cache[key] = _LazyWeights(layer, self.ops, self.dtype)
        return self._cache[key]


class _LazyWeights(dict):
    """A layer's weights, each converted on first use: a Dense layer's kernel_pos/kernel_neg are
    read only by RevealCancel, and converting them every run cost the MLP benchmark 20% of a call.

    Host (numpy) conversions of read-only weights (`layers.base.as_weight`) are also kept on the
    layer for later runs, checked against the array they came from.
    """

    def __init__(self, layer, ops, dtype):
        super().__init__()
        self._layer, self._ops, self._dtype = layer, ops, np.dtype(dtype)

    def __missing__(self, key):
        src = self._layer.weights[key]
        host = self._ops.xp is np and isinstance(src, np.ndarray) and not src.flags.writeable
        memo = self._layer.__dict__.setdefault("_converted", {}) if host else None
        hit = memo.get((key, self._dtype.str)) if host else None
        if hit is not None and hit[0] is src:
            value = hit[1]
        else:
            _validate.fits_dtype(np.asarray(src), self._dtype, f"layer {self._layer.name!r}: weight {key!r}")
            value = self._ops.asarray(src, self._dtype)
            if isinstance(value, np.ndarray) and value is not src and value.base is None:
                value.flags.writeable = False  # a fresh conversion, ours alone: read-only in place,
                # so backends can keep what they derive from it for its lifetime (cpu_ops._derived)
            else:
                value = _read_only(value)
            if host:
                memo[(key, self._dtype.str)] = (src, value)
        self[key] = value
        return value

    def __contains__(self, key):
        return key in self._layer.weights

    def get(self, key, default=None):
        return self[key] if key in self._layer.weights else default


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
