"""Planning: what one call decides before any array is touched.

* each node's rule (`resolve`; ``genomics_default`` per activation, as the original resolves it,
  extended through merges and shape-only layers);
* the nodes to score (``layers=``) and, per target, the nodes on a path from a scored node to
  the target: only they need multipliers;
* the forward programs and backward shortcuts (`fastlift.fuse`), through the session's memo.

A `Plan` is cheap: an `Explainer` builds one per call from parts it keeps for its session.
"""

from __future__ import annotations

from .fuse import DerivedActs, backward_shortcuts, deferred_rescales, derived, forward_steps
from .layers.base import Node
from .layers.conv import Convolution, Cropping1D, Cropping2D, ZeroPadding1D, ZeroPadding2D
from .layers.core import Activation, Dense, Dropout, Flatten, InputLayer, Permute, Reshape, ScaleShift
from .layers.merge import Add, Average, Concatenate, Subtract
from .rules import Rule


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


#: Layers `linear_sources` walks back through (BatchNormalization is a ScaleShift): they move, merge
#: or rescale values without a linear map of their own that could say whether the activation sits
#: in a convolutional or a dense part of the network.
_WALKED = (ScaleShift, Dropout, Activation, Add, Subtract, Average, Concatenate, Cropping1D, Cropping2D,
           ZeroPadding1D, ZeroPadding2D, Flatten, Reshape, Permute)


def linear_sources(node: Node) -> tuple[list[Node], Node | None]:
    """(the nearest Dense/convolution nodes upstream of ``node``'s input, the first other node
    met on the way or None).

    The walk goes back through `_WALKED` layers (merges, cropping/padding, shape-only layers,
    BatchNormalization and other constant ScaleShift layers, Dropout and other activations)
    along every path and stops at each linear layer; any other layer (pooling, a model input,
    a softmax) stops it with that node.
    """
    found, seen, stack = [], set(), [node.inputs[0]]
    while stack:
        src = stack.pop()
        if src in seen:
            continue
        seen.add(src)
        if isinstance(src.layer, (Convolution, Dense)):
            found.append(src)
        elif isinstance(src.layer, _WALKED):
            stack.extend(reversed(src.inputs))
        else:
            return found, src
    return found, None


def genomics_default_rule(node: Node) -> Rule:
    """The original's DeepLIFT_GenomicsDefault for one activation node, extended to merges.

    The original looks at the layer before the activation (through BatchNormalization and
    Dropout; here also constant ScaleShift layers): a convolution means Rescale, a Dense layer
    RevealCancel, anything else is an error.
    Here an activation after Add/Subtract/Average/Concatenate, cropping, padding or a reshape (a
    residual BPNet) is resolved by the linear layers that feed it (`linear_sources`): Rescale
    when all are convolutions, RevealCancel when all are Dense; an error when they mix or when
    the walk meets another kind of layer.
    """
    found, blocker = linear_sources(node)
    kinds = {isinstance(n.layer, Convolution) for n in found}
    if blocker is None and kinds == {True}:
        return Rule.RESCALE
    if blocker is None and kinds == {False}:
        return Rule.REVEAL_CANCEL
    fix = "; choose rule='rescale' or rule='reveal_cancel' for this model"
    if blocker is not None:
        raise ValueError(
            f"rule='genomics_default' resolves an activation by the linear layers that feed it (convolution -> "
            f"rescale, dense -> reveal_cancel, looking back through merges, cropping, padding and reshapes), but "
            f"activation {node.name!r} follows {blocker.name!r} ({type(blocker.layer).__name__})" + fix)
    convs = [n.name for n in found if isinstance(n.layer, Convolution)]
    dense = [n.name for n in found if not isinstance(n.layer, Convolution)]
    raise ValueError(
        f"rule='genomics_default' resolves an activation by the linear layers that feed it, but activation "
        f"{node.name!r} is fed by both convolutions {convs} (-> rescale) and Dense layers {dense} "
        f"(-> reveal_cancel)" + fix)


def score_nodes(model, layers) -> tuple[list[Node], str]:
    """(nodes to score, the form the result takes: "inputs", "single" or "list") for ``layers``."""
    if layers is None:
        return list(model.inputs), "inputs"
    if isinstance(layers, str):
        return [model.get_node(layers)], "single"
    if isinstance(layers, (list, tuple)) and layers and all(isinstance(n, str) for n in layers):
        nodes = [model.get_node(n) for n in layers]
        if len(set(nodes)) != len(nodes):
            raise ValueError(f"layers contains duplicates: {list(layers)}")
        return nodes, "list"
    raise TypeError(f"layers must be None, a layer name or a non-empty list of names; got {layers!r}")


def needed_nodes(model, target_node, scored) -> frozenset:
    """Nodes on some path from a scored node to ``target_node``: only they need multipliers."""
    ancestors = {target_node}
    for node in reversed(model.nodes):
        if node in ancestors:
            ancestors.update(node.inputs)
    below = set(scored)
    for node in model.nodes:
        if any(i in below for i in node.inputs):
            below.add(node)
    return frozenset(ancestors & below)


def forward_nodes(model, ends) -> frozenset:
    """The nodes a forward pass must compute for ``ends`` (targets and scored nodes): their
    ancestors. A counts target does not pay for a profile head beside it."""
    out = set(ends)
    for node in reversed(model.nodes):
        if node in out:
            out.update(node.inputs)
    return frozenset(out)


def check_hypothetical(scored, model, xs):
    """Hypothetical contributions score one-hot model inputs only."""
    for node in scored:
        if not isinstance(node.layer, InputLayer):
            raise ValueError(f"hypothetical=True scores model inputs only; {node.name!r} is a "
                             f"{type(node.layer).__name__}")
    for node, x in zip(model.inputs, xs):
        if node not in scored:
            continue
        axis = model.channel_axis
        ok = ((x == 0) | (x == 1)).all() and (x.sum(axis=axis) <= 1).all()
        if not ok:
            where = "last axis" if axis == -1 else f"channel axis {axis}"
            raise ValueError(f"hypothetical=True needs one-hot input (values 0/1, at most one 1 along the "
                             f"{where}); input {node.name!r} is not")


class Plan:
    """Everything fixed for one call: the session's backend, dtype and weights, the method, each
    node's rule, the targets, the scored nodes and what each target needs.

    ``memo`` is the session's: forward programs and backward shortcuts are derived once per
    session for each combination that occurs.
    """

    def __init__(self, *, model, ops, dtype, weights, memo, method, rule, max_pool, targets, multi_target,
                 multi_layer, scored, layers_form, hypothetical, steps):
        self.model, self.ops, self.dtype, self.weights, self._memo = model, ops, dtype, weights, memo
        self.method, self.rule, self.max_pool = method, rule, max_pool
        self.rules = self._memoised(("rules", rule), lambda: resolve(model.nodes, rule))
        self.targets, self.multi_target, self.multi_layer = targets, multi_target, multi_layer
        self.score_nodes, self.layers_form = scored, layers_form
        self.hypothetical, self.steps = hypothetical, steps
        key = tuple(scored)
        self.needed = {t: self._memoised(("needed", t.node, key), lambda t=t: needed_nodes(model, t.node, key))
                       for t in targets}
        self.all_needed = frozenset().union(*self.needed.values())
        #: What a forward pass computes: the ancestors of the targets and the scored nodes.
        self.computed = self._memoised(("computed", tuple(t.node for t in targets), key),
                                       lambda: forward_nodes(model, [t.node for t in targets] + list(scored)))

    def _memoised(self, key, make):
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = make()
        return hit

    def forward(self, rows, keep=None, given=None):
        """`Model.forward` of ``rows`` through the session's fused program for this ``keep``, computing
        only the nodes this call reads (`computed`)."""
        given_nodes = frozenset(given or ())
        keep_key = None if keep is None else frozenset(keep)

        def program():
            steps = forward_steps(self.model, keep_key, given_nodes, self.ops.fused_ops, self.computed)
            return tuple(step for step in steps if any(o in self.computed for o in step.outputs))

        steps = self._memoised(("forward", keep_key, given_nodes, self.computed), program)
        acts = self.model.forward(self.ops, rows, self.weights, keep, given, steps=steps)
        if keep is None:  # every activation is kept: those the program skips are derived on demand
            derive = self._memoised(("derived", given_nodes, self.computed),
                                    lambda: derived(self.model, steps, given_nodes))
            if derive:
                acts = DerivedActs(acts, derive, self.ops, self.weights)
        return acts

    def shortcuts(self, target, stop) -> dict:
        """`fuse.backward_shortcuts` for ``target``'s backward walk stopping at ``stop``."""
        stop = frozenset(stop)
        key = ("shortcuts", self.needed[target], stop, self.rule)
        return self._memoised(key, lambda: backward_shortcuts(self.model, self.needed[target], stop, self.rules,
                                                              self.ops.fused_ops))

    def deferred_rescales(self, target, stop) -> frozenset:
        """`fuse.deferred_rescales` for ``target``'s backward walk stopping at ``stop``."""
        stop = frozenset(stop)
        key = ("deferred_rescales", self.needed[target], stop, self.rule)
        return self._memoised(key, lambda: deferred_rescales(self.model, self.needed[target], stop, self.rules,
                                                             self.ops.fused_ops, self.shortcuts(target, stop),
                                                             frozenset(self.score_nodes)))

    def gradient_keep(self, extra=()) -> frozenset:
        """The activations that gradient rules read in backward (`Layer.gradient_reads`), the
        targets' and the scored nodes' (and ``extra``). A forward that keeps only these frees the
        others as it goes, so the next layers reuse their memory while it is still in cache."""
        keep = set(self.score_nodes) | {t.node for t in self.targets} | set(extra)
        for node in self.all_needed:
            keep.update(node.layer.gradient_reads(node))
        return frozenset(keep)
