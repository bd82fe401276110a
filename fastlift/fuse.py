"""Fusion: a plan pass that rewrites a model's forward program and marks backward shortcuts.

The plain program (`Model.plain_steps`) runs one layer per step, and the plain backward walk
(`fastlift.backward`) one rule per node. Where the backend runs a combination in one pass
(`Ops.fused_ops`), this pass replaces the steps by fused ones; everywhere else the plain path
runs unchanged. A fused step gives the bits of the separate ops (same operations, same order),
so results never depend on whether a fusion applied.

Forward, for every pass:

* ``conv_relu``: a ReLU of a channels-last convolution that only it reads is computed in the
  convolution's store, and both are kept (DeepLIFT's forwards keep every activation).

Forward, where a fusion skips storing a node:

* ``add_activation``: an Add of two inputs, one an Activation that only the Add reads, computes
  ``other + f(z)`` without storing f(z) (only where activations are not all kept, ``keep``:
  gradient rules, integrated gradients' points);
* ``conv_residual_relu``: when that activation is a ReLU of a channels-last convolution that only
  it reads, the convolution's store writes both its output z and ``other + relu(z)``, in the
  Add's place in the program (its other input, a crop made after the convolution in BPNet's
  files, is ready there). Also in passes that keep everything (DeepLIFT's): the ReLU is then
  derived from z when something reads it (`DerivedActs`); its Rescale rule recomputes it.

Backward (`backward_shortcuts`):

* a linear node whose input already has multipliers from another reader adds its own in the
  adjoint's store (the ``addend`` of `Ops.conv_adjoint`; composed where a backend has no such
  store);
* ``conv_adjoint_relu``: when that input is an Add of a ReLU that only the Add reads, under the
  gradient rule and with pairs that are the rows themselves, the same store also writes the
  ReLU input's multipliers;
* ``conv_adjoint_rescale`` (`deferred_rescales`): the Rescale rule of an activation of such a
  1-D convolution that only the activation reads is left unapplied (`fastlift.rescaled.Rescaled`)
  for the convolution's adjoint, which applies it to each pair's row as it reads it.
"""

from __future__ import annotations

from .activations import Act
from .layers.conv import Convolution
from .layers.core import Activation, LinearLayer
from .layers.merge import Add
from .model import Model, Step
from .padded import dense
from .rescaled import Rescaled
from .rules import Rule


def _flat(a):
    return a.reshape(a.shape[0], -1)


def forward_steps(model: Model, keep, given, fused_ops, computed=None) -> tuple:
    """The forward program for a pass that keeps ``keep`` (None: all) with activations ``given``
    (a set of nodes) computed elsewhere, fused where the backend lists the op in ``fused_ops``.

    ``computed`` (None: every node), the nodes the pass computes, closed under ancestors: an Add
    outside it is not fused, since its fused step would read its other input, which the pass
    may not compute (a convolution that a target reads beside a residual branch)."""
    fused, in_conv = _skipping_fusions(model, keep, given, fused_ops, computed)
    skipped = {act for act, _ in fused.values()} | set(in_conv.values())
    with_relu = _conv_relus(model, given, fused_ops, computed, skipped)
    if not (fused or with_relu):
        return model.plain_steps
    skipped |= set(with_relu.values())  # computed by their convolution's step
    conv_of = {add: z for z, add in in_conv.items()}
    steps = []
    for step in model.plain_steps:
        (node,) = step.outputs
        if node in in_conv:
            continue  # run where its Add was: the Add's other input (a crop, say) may come later
        if node in conv_of:
            z = conv_of[node]
            steps.append(Step((z, node), (z.inputs[0], fused[node][1]), _conv_residual_relu(z)))
        elif node in with_relu:
            steps.append(Step((node, with_relu[node]), (node.inputs[0],), _conv_relu(node)))
        elif node in fused:
            act, other = fused[node]
            steps.append(Step((node,), (act.inputs[0], other), _add_activation(act.layer)))
        elif node not in skipped:
            steps.append(step)
    return tuple(steps)


def _conv_relus(model: Model, given, fused_ops, computed, skipped) -> dict:
    """{convolution node: its ReLU node} for ``conv_relu``: a ReLU that alone reads a channels-last
    convolution, both computed by this pass, neither given, and the ReLU not skipped by another
    fusion (which then computes its convolution too)."""
    if "conv_relu" not in fused_ops:
        return {}
    out = {}
    for act in model.nodes:
        if type(act.layer) is not Activation or act.layer.act != Act.RELU or act in skipped or act in given:
            continue
        z = act.inputs[0]
        if (isinstance(z.layer, Convolution) and z.layer.data_format == "channels_last"
                and model.readers[z] == [act] and z not in given
                and (computed is None or (z in computed and act in computed))):
            out[z] = act
    return out


def _skipping_fusions(model: Model, keep, given, fused_ops, computed):
    """({Add node: (its Activation input, its other input)} for ``add_activation``, {convolution
    node: its Add} for ``conv_residual_relu``): the fusions that skip storing a node.

    Where ``keep`` keeps everything (None: DeepLIFT's passes), only ``conv_residual_relu``: the
    ReLU it skips is `derived` (f(z) on demand, from the kept z; its Rescale rule recomputes it),
    so the pass writes z and the Add and not the ReLU between them, and no separate Add reads it."""
    if "add_activation" not in fused_ops or (keep is None and "conv_residual_relu" not in fused_ops):
        return {}, {}
    keep_all = keep is None
    keep = set(() if keep_all else keep).union(model.outputs)
    readers = model.readers
    fused = {}  # Add node -> (its Activation input, its other input)
    for node in model.nodes:
        if type(node.layer) is not Add or len(node.inputs) != 2 or node in given or (
                computed is not None and node not in computed):
            continue
        for k, act in enumerate(node.inputs):
            if (isinstance(act.layer, Activation) and len(readers[act]) == 1 and act not in keep
                    and act not in given):
                fused[node] = (act, node.inputs[1 - k])
                break
    in_conv = {}  # convolution node -> its Add, when the Add runs in the convolution's store
    if "conv_residual_relu" in fused_ops:
        for add, (act, other) in fused.items():
            z = act.inputs[0]
            if (type(act.layer) is Activation and act.layer.act == Act.RELU and isinstance(z.layer, Convolution)
                    and z.layer.data_format == "channels_last" and len(readers[z]) == 1 and z not in given):
                in_conv[z] = add
    if keep_all:
        fused = {add: fused[add] for add in in_conv.values()}
    return fused, in_conv


def derived(model: Model, steps, given) -> dict:
    """{node: its input} for the Activation nodes a forward program skips (fused into their Add's
    step) where nothing else computes them: their values are f(input), computed on demand
    (`DerivedActs`)."""
    made = {o for step in steps for o in step.outputs} | set(given) | set(model.inputs)
    return {node: node.inputs[0] for node in model.nodes
            if node not in made and type(node.layer) is Activation and node.inputs[0] in made}


class DerivedActs(dict):
    """A forward pass's activations ({node: array}) that computes a skipped Activation node's
    values f(input) the first time they are read, and keeps them (`derived`). Membership and
    ``get`` see stored values only: a reader that can do without the values (the Rescale rule of
    a ReLU, which recomputes them) asks ``get`` and receives None."""

    def __init__(self, acts, derive, ops, weights):
        super().__init__(acts)
        self.derive, self.ops, self.weights = derive, ops, weights

    def __missing__(self, node):
        src = self.derive.get(node)
        if src is None:
            raise KeyError(node)
        out = self[node] = node.layer.forward(self.ops, [self[src]], self.weights(node.layer))
        return out

    def rows(self, lo, hi):
        """Rows [lo, hi) of every stored array, still deriving the skipped nodes."""
        return DerivedActs({node: a[lo:hi] for node, a in self.items()}, self.derive, self.ops, self.weights)


def _add_activation(layer: Activation):
    def run(ops, xs, weights):
        x, other = xs
        return (ops.add_activation(layer.act, _flat(x), weights(layer)["alpha"], _flat(other)).reshape(x.shape),)
    return run


def _conv_relu(node):
    layer = node.layer

    def run(ops, xs, weights):
        (x,) = xs
        w = weights(layer)
        g = layer.geometry(x.shape[1:])
        z, r = ops.conv_relu(layer.to_nhwc(ops, x), w["kernel"], g, w["bias"])
        shape = (x.shape[0], g.h_out, g.w_out, z.shape[1])
        return layer.from_nhwc(ops, z.reshape(shape)), layer.from_nhwc(ops, r.reshape(shape))
    return run


def _conv_residual_relu(node):
    layer = node.layer

    def run(ops, xs, weights):
        x, residual = xs
        w = weights(layer)
        g = layer.geometry(x.shape[1:])
        z, h = ops.conv_residual_relu(layer.to_nhwc(ops, x), w["kernel"], g, w["bias"], residual)
        z = layer.from_nhwc(ops, z.reshape(x.shape[0], g.h_out, g.w_out, z.shape[1]))
        return z, h.reshape(residual.shape)
    return run


def backward_shortcuts(model: Model, needed, stop, rules, fused_ops) -> dict:
    """{linear node: ReLU node or None} for the linear nodes whose adjoint may add into multipliers
    their input already has (`adjoint_adding`), with the ReLU whose input multipliers the same
    store may write (`adjoint_adding_relu`). The walk takes a shortcut only when, at that point,
    the input's multipliers exist and neither has a negative half (and, for the ReLU, when pairs
    are the rows themselves)."""
    out = {}
    for node in model.nodes:
        if isinstance(node.layer, LinearLayer) and node in needed and node.inputs[0] in needed:
            out[node] = _relu_behind(model, node, needed, stop, rules, fused_ops)
    return out


def deferred_rescales(model: Model, needed, stop, rules, fused_ops, shortcuts, scored) -> frozenset:
    """The activations whose Rescale rule the backward walk leaves to the adjoint of the convolution
    before them (`Ops.conv_adjoint_rescale`): that convolution z is 1-D and channels-last, only the
    activation reads it, it takes a shortcut of ``shortcuts`` (`backward_shortcuts`) without a
    ReLU in its store (a residual block's, whose input already has the skip's multipliers), and
    z is neither scored (``scored``) nor a stop. The walk still applies the rule itself where the
    activation's multipliers have a negative half."""
    if "conv_adjoint_rescale" not in fused_ops:
        return frozenset()
    out = set()
    for node in model.nodes:
        if type(node.layer) is not Activation or node not in needed or node in stop or rules[node] is not Rule.RESCALE:
            continue
        z = node.inputs[0]
        if (_adjoint_takes_lazy(z.layer) and z in shortcuts and shortcuts[z] is None and model.readers[z] == [node]
                and z not in stop and z not in scored):
            out.add(node)
    return frozenset(out)


def _relu_behind(model, conv, needed, stop, rules, fused_ops):
    """The ReLU node whose input multipliers can be computed in the store of ``conv``'s adjoint
    (which completes src's): src is a two-input Add of that ReLU, which only src reads and whose
    rule is the gradient; ``conv`` is src's last reader to run. None where any of that fails."""
    src = conv.inputs[0]
    if ("conv_adjoint_relu" not in fused_ops or not isinstance(conv.layer, Convolution)
            or conv.layer.data_format != "channels_last"):
        return None
    if type(src.layer) is not Add or len(src.inputs) != 2 or src in stop:
        return None
    if any(r is not conv and r in needed and model.position[r] < model.position[conv] for r in model.readers[src]):
        return None  # another reader of src runs later in the backward walk and adds to its multipliers
    for relu in src.inputs:
        if (type(relu.layer) is Activation and relu.layer.act == Act.RELU and relu in needed
                and relu not in stop and model.readers[relu] == [src] and rules[relu] is Rule.GRADIENT):
            return relu
    return None


def adjoint_adding(node, pos, ctx, acc):
    """Aᵀm + acc for a linear node: its increment summed with the multipliers ``acc`` its input
    already has, in one pass where the backend can (bitwise ``add(acc, Aᵀm)``). ``acc`` may be a
    crop's `ZeroPadded` multipliers and ``pos`` an activation's `Rescaled` ones (`deferred_rescales`):
    a 1-D channels-last convolution hands them to the backend (`Ops.conv_adjoint`,
    `Ops.conv_adjoint_rescale`), anything else writes them out first."""
    layer = node.layer
    if not _adjoint_takes_lazy(layer):
        acc, pos = dense(ctx.ops, acc), (pos.dense(ctx.ops) if isinstance(pos, Rescaled) else pos)
    return layer.linear_adjoint(ctx.ops, pos, ctx.weights(layer)["kernel"], node, addend=acc)


def _adjoint_takes_lazy(layer) -> bool:
    """Whether the layer's adjoint takes `ZeroPadded` and `Rescaled` multipliers as they are (a 1-D
    channels-last convolution's: `Convolution.linear_adjoint`)."""
    return isinstance(layer, Convolution) and layer.ndim == 1 and layer.data_format == "channels_last"


def adjoint_adding_relu(node, pos, ctx, acc, z):
    """(`adjoint_adding`'s result, it times relu'(z)) in one pass (`Ops.conv_adjoint_relu`); z is the
    input of a ReLU that the convolution's input (an Add) alone reads."""
    layer, ops = node.layer, ctx.ops
    g = layer.geometry(node.inputs[0].shape)
    a, masked = ops.conv_adjoint_relu(layer.to_nhwc(ops, pos), ctx.weights(layer)["kernel"], g,
                                      layer.to_nhwc(ops, acc), layer.to_nhwc(ops, z))
    return layer.from_nhwc(ops, a), layer.from_nhwc(ops, masked)
