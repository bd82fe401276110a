"""Public entry points: `deeplift` and `attribute`.

Flow of one call: validate once -> plan (rules per node, target weights, which nodes
need multipliers) -> for each chunk of examples (`scheduler`): forward the unique
example rows and the unique reference rows, then for each target push multipliers
from the target back to the scored layers, pair by pair (DESIGN decisions 1-3).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _validate, scheduler
from . import references as refs_mod
from .backends import _pool, get_ops
from .backends.cpu_ops import POOL_BYTES
from .backends.ops import Act
from .layers.base import Node
from .layers.conv import _Conv
from .layers.core import Activation, InputLayer, LinearLayer, Softmax
from .layers.merge import Add
from .model import Model, WeightCache
from .rules import MaxPoolRule, Rule, parse_max_pool, parse_rule, resolve
from .straight_path import chain_activations, kinked_chains, path

METHODS = ("deeplift", "gradient", "grad_x_input", "integrated_gradients", "guided_backprop")


@dataclass
class Attributions:
    """Result of `deeplift` / `attribute`.

    Attributes
    ----------
    contributions : array or list/dict of arrays
        Shaped like the scored layer's output, (n_examples, *shape); with a list of
        targets, (n_targets, n_examples, *shape). Mean over references.
    multipliers : same structure
        Mean over references (for inputs after a RevealCancel split: (m⁺+m⁻)/2).
    hypothetical : same structure or None
        With ``hypothetical=True``: mean over references of m[l, i] - Σ_c ref[l, c]·m[l, c],
        the contribution base i would make at position l; for one-hot input its value at
        the present base equals the contribution summed over the last axis.
    deltas : array (n_examples,) or (n_targets, n_examples), or None
        Σ contributions - (f(x) - mean f(ref)) at the target: summation-to-delta error
        (None for methods without a reference: gradient, guided_backprop).
    target_layer : str, or list of str when ``target_layer`` was a list (one per target)
    layers : list of str
    """

    contributions: Any
    multipliers: Any
    hypothetical: Any
    deltas: Any
    target_layer: str
    layers: list


def deeplift(model: Model, X, references=None, *, rule: str = "rescale", target=0, target_layer=None,
             layers=None, hypothetical: bool = False, device: str = "auto", dtype="float32",
             batch_size: int | None = None, progress: bool = False, seed: int | None = None,
             max_pool: str = "exact", n_threads: int | None = None) -> Attributions:
    """DeepLIFT contributions of the inputs (or named layers) to a target.

    Parameters
    ----------
    model : Model
    X : array (n_examples, *input_shape), or a list / dict {input name: array}
    references : None, array, callable or spec (see `fastlift.references`)
        None = zeros; (1, *S) or (N, *S) one per example; (N, K, *S) or (1, K, *S)
        K per example; ``f(X, rng) -> (1, K, *S)``. Results average over K.
    rule : {"rescale", "reveal_cancel", "genomics_default", "gradient", "guided_backprop"}
    target : int, str, array, or a list of these
        A unit of the target layer (flattened index), weights over the target layer's units
        (shape of the layer output), a preset, or a list of these computed in one pass
        sharing every forward pass (the result gains a leading target axis). Presets:
        ``"profile"``: a profile head's logits z (length,) or (length, channels) weighted
        by softmax(z) - 1/length along the length axis, per channel, with the softmax taken
        from each example and held constant (BPNet/ChromBPNet's softmax-weighted,
        mean-normalised logits); ``"sum"``: the sum of all units (e.g. both strands of a
        counts head).
    target_layer : str or list of str, optional
        Default: the pre-activation of the first output (logits before a sigmoid or softmax).
        A list scores several heads in one pass: ``target`` is then one target per layer
        (or one target for all), e.g. ``target=["profile", 0],
        target_layer=["profile", "counts"]``; the result has a leading target axis.
    layers : str or list of str, optional
        Layers to score (default: the model inputs).
    hypothetical : bool
        Also return hypothetical contributions of the scored inputs (one-hot inputs).
    device : {"auto", "cpu", "cuda", "numpy"}
    dtype : {"float32", "float64"}
    batch_size : int, optional
        Examples per chunk (default: sized from a memory budget). Results do not depend on it.
    progress : bool
        Print a progress bar to stderr.
    seed : int, optional
        Seed for generated references (default 0: runs are reproducible).
    max_pool : {"exact", "gradient"}
        Max-pooling rule (see `fastlift.rules`).
    n_threads : int, optional
        CPU threads (default: all cores). Results do not depend on it.

    Returns
    -------
    Attributions
    """
    return _run("deeplift", model, X, references, rule=rule, target=target, target_layer=target_layer,
                layers=layers, hypothetical=hypothetical, device=device, dtype=dtype, batch_size=batch_size,
                progress=progress, seed=seed, max_pool=max_pool, n_threads=n_threads)


def attribute(model: Model, X, method: str = "deeplift", references=None, *, steps: int = 50,
              **kwargs) -> Attributions:
    """Any attribution method on the same engine.

    Parameters
    ----------
    method : {"deeplift", "gradient", "grad_x_input", "integrated_gradients", "guided_backprop"}
        * deeplift: as `deeplift` (``rule`` etc. in ``kwargs``);
        * gradient: ∂target/∂x (contributions = multipliers = the gradient);
        * grad_x_input: gradient · x;
        * integrated_gradients: (x - ref) · mean of the gradient at ref + (s + ½)/steps·(x - ref),
          s = 0..steps-1 (midpoint rule), averaged over references;
        * guided_backprop: the guided-backprop gradient.
    steps : int
        Integrated-gradients steps.
    **kwargs
        Any keyword of `deeplift` (target, target_layer, layers, device, dtype, ...).
    """
    _validate.choice(method, METHODS, "method")
    unknown = sorted(set(kwargs) - _DEEPLIFT_KEYWORDS)
    if unknown:
        raise TypeError(f"attribute() got unexpected keyword(s) {unknown}; it takes the keywords of deeplift(): "
                        f"{sorted(_DEEPLIFT_KEYWORDS)}")
    if method == "deeplift":
        return deeplift(model, X, references, **kwargs)
    if "rule" in kwargs:
        raise ValueError(f"rule only applies to method='deeplift'; got rule={kwargs['rule']!r} with "
                         f"method={method!r}")
    if method != "integrated_gradients":
        if references is not None:
            raise ValueError(f"method={method!r} takes no references; got {type(references).__name__}")
        if kwargs.get("hypothetical"):
            raise ValueError(f"hypothetical=True needs references; not available for method={method!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}")
    layers = kwargs.get("layers")
    if method == "integrated_gradients" and layers is not None:
        raise ValueError("method='integrated_gradients' integrates along the path between inputs; it scores "
                         f"the model inputs only (layers=None); got layers={layers!r}")
    rule = "guided_backprop" if method == "guided_backprop" else "gradient"
    # steps only shape integrated gradients (and its chunk size)
    steps = int(steps) if method == "integrated_gradients" else 1
    return _run(method, model, X, references, rule=rule, steps=steps, **kwargs)


_DEEPLIFT_KEYWORDS = {"rule", "target", "target_layer", "layers", "hypothetical", "device", "dtype", "batch_size",
                      "progress", "seed", "max_pool", "n_threads"}

# --------------------------------------------------------------------- planning


class _Plan:
    """Everything fixed for one call: backend, dtype, rules, targets, scored nodes."""

    def __init__(self, method, model, X, references, *, rule="rescale", target=0, target_layer=None, layers=None,
                 hypothetical=False, device="auto", dtype="float32", batch_size=None, progress=False, seed=None,
                 max_pool="exact", n_threads=None, steps=1):
        if not isinstance(model, Model):
            raise TypeError(f"model must be a fastlift.Model; got {type(model).__name__}")
        self.method, self.model = method, model
        self.rule = parse_rule(rule)
        self.max_pool = parse_max_pool(max_pool)
        self.dtype = _validate.dtype_arg(dtype)
        self.ops = get_ops(device, n_threads)
        self.xs = [a.astype(self.dtype, copy=False) for a in _validate.inputs(model, X, "X", self.dtype)]
        self.n = self.xs[0].shape[0]
        self.x_is_dict = isinstance(X, dict)
        self.sources = refs_mod.prepare(model, references, self.xs)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None; got {seed!r}")
        self.seed = 0 if seed is None else int(seed)
        self.progress = bool(progress)
        self.steps = steps
        self.targets, self.multi_target = self._parse_targets(target, target_layer)
        self.multi_layer = isinstance(target_layer, (list, tuple))
        self.target_node = self.targets[0].node
        self.weights = [t.weights for t in self.targets]  # fixed arrays; None for per-example presets
        self.score_nodes, self.layers_form = self._score_nodes(layers)
        self.hypothetical = bool(hypothetical)
        if self.hypothetical:
            self._check_hypothetical()
        self.rules = resolve(model.nodes, self.rule)
        for t in self.targets:
            t.needed = self._needed_nodes(t.node)
        self.needed = set().union(*(t.needed for t in self.targets))
        self._check_memory()
        self.batch_size = _validate.batch_size_arg(batch_size, scheduler.auto_batch_size(self))
        self.cache = WeightCache(self.ops, self.dtype)

    def _check_memory(self):
        """Refuse up front a call whose smallest chunk, one example, cannot fit in memory. Its K·steps
        rows each hold about one value per node (the activations the backward reads) plus the widest
        layer's inputs and output at once (measured: 0.5-2x the peak of one example on the bench
        models and an MLP), so the estimate refuses what cannot run and nothing that can."""
        k = max([s.n_refs or 1 for s in self.sources] + [1])
        rows = k * self.steps
        widest = max(n.size + sum(i.size for i in n.inputs) for n in self.model.nodes)
        need = float(self.dtype.itemsize) * rows * (sum(n.size for n in self.model.nodes) + widest)
        if self.method == "integrated_gradients":
            what = f"steps={self.steps} with {k} reference(s) per example ({rows} points per example)"
            fix = "; use fewer steps or references"
        else:
            what, fix = f"references: {k} per example", "; use fewer references"
        _validate.memory_fits(need, what + fix)

    def _target_node(self, target_layer) -> Node:
        node = self.model.default_target() if target_layer is None else self.model.get_node(target_layer)
        if isinstance(node.layer, Softmax):
            raise ValueError(f"target_layer {node.name!r} is a softmax output; target its input (the logits, "
                             "the default) instead")
        if isinstance(node.layer, InputLayer):
            raise ValueError(f"target_layer {node.name!r} is a model input; choose a layer after it")
        return node

    def _parse_targets(self, target, target_layer):
        """-> (list of _Target, multi): one entry per int / preset / weight array, per layer."""
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
                node = self._target_node(name)
                if isinstance(t, (list, tuple)):
                    raise TypeError(f"target[{i}] for layer {name!r} must be an int, a preset name or a weight "
                                    f"array; got a list")
                out.extend(_Target(node, w, preset, label) for w, preset, label in
                           self._targets(node, t, f"target[{i}]")[0])
            return out, True
        node = self._target_node(target_layer)
        entries, multi = self._targets(node, target)
        return [_Target(node, w, preset, label) for w, preset, label in entries], multi

    def _targets(self, node, target, label="target"):
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

    def _score_nodes(self, layers):
        if layers is None:
            return list(self.model.inputs), "inputs"
        if isinstance(layers, str):
            return [self.model.get_node(layers)], "single"
        if isinstance(layers, (list, tuple)) and layers and all(isinstance(n, str) for n in layers):
            nodes = [self.model.get_node(n) for n in layers]
            if len(set(nodes)) != len(nodes):
                raise ValueError(f"layers contains duplicates: {list(layers)}")
            return nodes, "list"
        raise TypeError(f"layers must be None, a layer name or a non-empty list of names; got {layers!r}")

    def _check_hypothetical(self):
        for node in self.score_nodes:
            if not isinstance(node.layer, InputLayer):
                raise ValueError(f"hypothetical=True scores model inputs only; {node.name!r} is a "
                                 f"{type(node.layer).__name__}")
        for node, x in zip(self.model.inputs, self.xs):
            if node not in self.score_nodes:
                continue
            ok = np.all((x == 0) | (x == 1)) and np.all(x.sum(axis=-1) <= 1)
            if not ok:
                raise ValueError(f"hypothetical=True needs one-hot input (values 0/1, at most one 1 along the "
                                 f"last axis); input {node.name!r} is not")

    def _needed_nodes(self, target_node) -> set:
        """Nodes on some path from a scored node to ``target_node``: only they need multipliers."""
        ancestors = {target_node}
        for node in reversed(self.model.nodes):
            if node in ancestors:
                ancestors.update(node.inputs)
        below = set(self.score_nodes)
        for node in self.model.nodes:
            if any(i in below for i in node.inputs):
                below.add(node)
        return ancestors & below

    def rule_of(self, node) -> Rule:
        return self.rules[node]


PRESETS = ("profile", "sum")


class _Target:
    """One target: a node and fixed weights over its units, or a per-example preset."""

    def __init__(self, node: Node, weights, preset, label):
        self.node, self.weights, self.preset, self.label = node, weights, preset, label
        self.needed: set = set()

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


class _Context:
    """What layers see during backward for one chunk: activations, pairs, lazy Δ and splits."""

    def __init__(self, plan: _Plan, acts_x, acts_r, pair_x, pair_r):
        self.plan, self.ops = plan, plan.ops
        self.acts_x, self.acts_r = acts_x, acts_r
        self.pair_x, self.pair_r = pair_x, pair_r
        self.max_pool_exact = plan.max_pool is MaxPoolRule.EXACT
        self.weights = plan.cache
        self._delta: dict[Node, Any] = {}
        self._split: dict[Node, Any] = {}

    def x(self, node):
        return self.acts_x[node]

    def pairs_are_rows(self) -> bool:
        """Whether pair p is row p of the activations (integrated gradients' points, gradients)."""
        if not hasattr(self, "_pairs_are_rows"):
            px = self.ops.to_numpy(self.pair_x)
            rows = {a.shape[0] for a in self.acts_x.values()}
            self._pairs_are_rows = rows == {len(px)} and bool(np.array_equal(px, np.arange(len(px))))
        return self._pairs_are_rows

    def r(self, node):
        return self.acts_r[node]

    def rule(self, node) -> Rule:
        return self.plan.rules[node]

    def delta(self, node):
        if node not in self._delta:
            x, r = self.acts_x[node], self.acts_r[node]
            d = self.ops.pair_delta(x.reshape(x.shape[0], -1), r.reshape(r.shape[0], -1), self.pair_x, self.pair_r)
            self._delta[node] = d.reshape((len(self.pair_x),) + node.shape)
        return self._delta[node]

    def split(self, node):
        if node not in self._split:
            self._split[node] = node.layer.split(node, self)
        return self._split[node]


# ------------------------------------------------------------------------- run


def _run(method, model, X, references, **kw) -> Attributions:
    # The whole call allocates from the host pool, validation and results too: a call of a few
    # milliseconds (an MLP over 256 rows) otherwise faults its inputs' copies in every time.
    with _pool.caching(POOL_BYTES):
        plan = _Plan(method, model, X, references, **kw)
        acc = scheduler.Accumulator(plan)
        with plan.ops.compute_context():
            for chunk in scheduler.chunks(plan):
                if method == "integrated_gradients":
                    _ig_chunk(plan, chunk, acc)
                else:
                    _deeplift_chunk(plan, chunk, acc)
        res = acc.result()
    if plan.multi_layer:
        res.target_layer = [t.node.name for t in plan.targets]
    return res


def _flat(a):
    return a.reshape(a.shape[0], -1)


def backward(plan: _Plan, ctx: _Context, weights, target: _Target | None = None, stop=()) -> dict:
    """Multipliers {node: (m_pos, m_neg)} of every needed node for one target.

    ``weights``: over the target node's units (its shape), or per pair (n_pairs, *shape)
    for a per-example preset such as ``"profile"``. ``target`` defaults to the first.
    Nodes in ``stop`` keep their multipliers and pass nothing on (the caller continues).
    """
    ops, n_pairs = plan.ops, len(ctx.pair_x)
    target = plan.targets[0] if target is None else target
    t, needed = target.node, target.needed
    w = ops.asarray(weights, plan.dtype)
    if w.ndim == len(t.shape) + 1:
        m = {t: (ops.xp.ascontiguousarray(w), None)}
    else:
        m = {t: (ops.xp.ascontiguousarray(ops.xp.broadcast_to(w, (n_pairs,) + t.shape)), None)}
    ahead = {}  # ReLU node: its input's multipliers, computed in the store of an adjoint
    for node in reversed(plan.model.nodes):
        if node not in m or node not in needed or isinstance(node.layer, InputLayer) or node in stop:
            continue
        if all(i not in needed for i in node.inputs):
            continue
        src = node.inputs[0]
        if node in ahead:
            increments = [(ahead.pop(node), None)]
        elif (isinstance(node.layer, LinearLayer) and src in m and src in needed and m[node][1] is None
                and m[src][1] is None):  # a residual's two branches meet: sum them as Aᵀm is stored
            relu = _relu_behind(plan, ctx, node, src, needed, stop)
            if relu is None:
                m[src] = (node.layer.backward_adding(node, m[node][0], ctx, m[src][0]), None)
            else:  # and the ReLU that src's Add reads gets its gradient in the same store
                a, ahead[relu] = node.layer.backward_adding_relu(node, m[node][0], ctx, m[src][0],
                                                                 ctx.x(relu.inputs[0]))
                m[src] = (a, None)
            increments = ()
        else:
            increments = node.layer.backward(node, m[node], ctx)
        for src, inc in zip(node.inputs, increments):
            if inc is None or src not in needed:
                continue
            m[src] = inc if src not in m else _add(ops, m[src], inc)
        if node not in plan.score_nodes:
            del m[node]  # free memory as soon as the inputs have their share
    return m


def _relu_behind(plan: _Plan, ctx: _Context, conv, src, needed, stop):
    """The ReLU node whose input multipliers can be computed in the store of ``conv``'s adjoint
    (which completes src's): src is a two-input Add of that ReLU, which only src reads and whose
    rule is the gradient; ``conv`` is src's last reader to run; pairs are the rows themselves.
    None where any of that does not hold."""
    if not isinstance(conv.layer, _Conv) or conv.layer.data_format != "channels_last":
        return None
    if type(src.layer) is not Add or len(src.inputs) != 2 or src in stop or not ctx.pairs_are_rows():
        return None
    order, readers = plan.model._order, plan.model._readers_of
    if any(r is not conv and r in needed and order[r] < order[conv] for r in readers[src]):
        return None  # another reader of src runs later and adds to its multipliers
    for relu in src.inputs:
        if (type(relu.layer) is Activation and relu.layer.act == Act.RELU and relu in needed
                and relu not in stop and readers[relu] == [src] and plan.rules[relu] is Rule.GRADIENT):
            return relu
    return None


def _add(ops, a, b):
    (ap, an), (bp, bn) = a, b
    pos = ops.add(ap, bp)
    if an is None and bn is None:
        return pos, None
    return pos, ops.add(ap if an is None else an, bp if bn is None else bn)


#: Methods whose rules use no reference: they report the (guided) gradient itself.
_REFERENCE_FREE = ("gradient", "guided_backprop")


def _deeplift_chunk(plan: _Plan, chunk, acc):
    ops = plan.ops
    forward = lambda rows: plan.model.forward(ops, rows, plan.cache)  # noqa: E731
    if plan.method in _REFERENCE_FREE:
        # Their rules never read reference activations: skip the reference forward and pair each
        # example with itself (Δ = 0; these methods report no deltas).
        acts_x = acts_r = plan.model.forward(ops, chunk.x_rows, plan.cache, keep=_gradient_keep(plan))
        pair_r, pair_r_host = chunk.pair_x, chunk.pair_x_host
    else:
        acts_x, acts_r = chunk.acts(forward)
        pair_r, pair_r_host = chunk.pair_r, chunk.pair_r_host
    ctx = _Context(plan, acts_x, acts_r, chunk.pair_x, pair_r)
    for ti, target in enumerate(plan.targets):
        w, d_out = _target_pairs(plan, chunk.pair_x_host, pair_r_host, target, acts_x, acts_r)
        m = backward(plan, ctx, w, target)
        # gradient and guided_backprop report the (guided) gradient itself and no deltas
        free = plan.method in _REFERENCE_FREE
        sum_c = np.zeros(len(chunk.pair_x))
        for si, node in enumerate(plan.score_nodes):
            c, mult = _scores(plan, ctx, node, m.get(node), contributions=not free)
            if not free:
                sum_c += ops.to_numpy(_flat(c)).astype(np.float64).sum(axis=1)
            hyp = _hypothetical(ops, ctx, node, mult) if plan.hypothetical else None
            acc.add(ti, si, chunk, mult if free else c, mult, hyp)
        if not free:
            acc.add_deltas(ti, chunk, sum_c - d_out)


def _target_pairs(plan, px, pr, target, acts_x, acts_r):
    """(weights for `backward`, (P,) Δtarget per pair) of one target in one chunk.

    Δtarget is a row-wise sum, not a GEMV, so it is the same for any chunk size. Preset
    weights are computed per example from its own forward pass (held constant).
    """
    ops, t = plan.ops, target.node
    tx, tr = ops.to_numpy(_flat(acts_x[t])).astype(np.float64), ops.to_numpy(_flat(acts_r[t])).astype(np.float64)
    w_pairs = target.pair_weights(tx, px)
    if w_pairs is None:
        wf = target.weights.reshape(-1)
        return target.weights, (tx[px] * wf).sum(axis=1) - (tr[pr] * wf).sum(axis=1)
    d_out = (tx[px] * w_pairs).sum(axis=1) - (tr[pr] * w_pairs).sum(axis=1)
    return w_pairs.reshape((len(px),) + t.shape), d_out


def _scores(plan, ctx, node, m, contributions=True):
    """Per-pair contributions and multipliers of ``node`` ((P, *shape) each); the contributions
    are None when not asked for."""
    ops, n_pairs = plan.ops, len(ctx.pair_x)
    if m is None:  # the target does not depend on this node
        z = ops.xp.zeros((n_pairs,) + node.shape, dtype=plan.dtype)
        return z, z
    pos, neg = m
    if not contributions:
        return None, (pos if neg is None else 0.5 * (pos + neg))
    if neg is None:
        c = ops.pair_contributions(_flat(pos), _flat(ctx.x(node)), _flat(ctx.r(node)), ctx.pair_x, ctx.pair_r)
        return c.reshape(pos.shape), pos
    d_pos, d_neg = ctx.split(node)
    return pos * d_pos + neg * d_neg, 0.5 * (pos + neg)


def _hypothetical(ops, ctx, node, mult):
    """m - Σ_c ref·m (per pair, last axis = one-hot channels)."""
    r = ctx.r(node)[ctx.pair_r]
    return mult - (r * mult).sum(axis=-1, keepdims=True)


def _affine_prefix(model) -> tuple:
    """Dense/Conv nodes that read a model input directly, when they are the only readers of
    every input (else ``()``). They are affine in the input, so along the straight path from a
    reference to an example their activations interpolate those at the two ends, and the
    mean of their gradients can go back through them once per pair instead of once per step."""
    readers = [n for n in model.nodes if any(i in model.inputs for i in n.inputs)]
    if not readers or not all(isinstance(n.layer, LinearLayer) and len(n.inputs) == 1 for n in readers):
        return ()
    return tuple(readers)


def _gradient_keep(plan: _Plan, extra=()) -> set:
    """The activations that gradient rules read in backward (`Layer.gradient_reads`), the
    targets' and the scored nodes' (and ``extra``). A forward that keeps only these frees the
    others as it goes, so the next layers reuse their memory while it is still in cache:
    BPNet-like IG keeps 1 of its 3 arrays per residual block (bench/README.md)."""
    keep = set(plan.score_nodes) | {t.node for t in plan.targets} | set(extra)
    for node in plan.needed:
        keep.update(node.layer.gradient_reads(node))
    return keep


def _ig_chunk(plan: _Plan, chunk, acc):
    """Integrated gradients: average the gradient over ``steps`` midpoints between each
    reference and the example, then multiply by (x - ref).

    When the model's inputs are read only by Dense/Conv layers (`_affine_prefix`), those
    layers run once per example and reference, not once per point: their activations at
    the points interpolate the two ends, and the gradient is averaged over the steps where
    it reaches them and then taken through them once per pair. A convolution that reads them
    through a ReLU (and a max-pool) then sees piecewise-linear inputs and runs mostly on zeros
    where the backend skips them (`straight_path`).
    """
    ops, steps, xp = plan.ops, plan.steps, plan.ops.xp
    n_pairs = len(chunk.pair_x)
    ref_rows = chunk.ref_rows_per_pair()  # list per input: (P, *S) numpy
    alphas = ((np.arange(steps) + 0.5) / steps).astype(plan.dtype)
    x_pair = [x[chunk.pair_x_host] for x in chunk.x_host]
    points = [ops.asarray(path(x, r, alphas), plan.dtype) for x, r in zip(x_pair, ref_rows)]
    prefix = _affine_prefix(plan.model)
    keep = _gradient_keep(plan, prefix)
    forward = lambda rows, keep=None: plan.model.forward(ops, rows, plan.cache, keep)  # noqa: E731
    if prefix:
        acts_x, acts_r = chunk.acts(forward)
        a = ops.asarray(alphas, plan.dtype)
        given = {node: path(acts_x[node][chunk.pair_x], acts_r[node][chunk.pair_r], a) for node in prefix}
        for chain in kinked_chains(plan.model, prefix, ops):
            z = chain[0]
            given.update(chain_activations(ops, plan.cache, chain, given[z], acts_x[z][chunk.pair_x],
                                           acts_r[z][chunk.pair_r], alphas))
        acts_p = plan.model.forward(ops, points, plan.cache, keep, given)
    else:
        acts_p, acts_x, acts_r = chunk.acts(forward, lead=points, keep=keep)
    idx = ops.asarray(np.arange(n_pairs * steps), np.int64)
    ctx = _Context(plan, acts_p, acts_p, idx, idx)
    ctx_pairs = _Context(plan, acts_x, acts_r, chunk.pair_x, chunk.pair_r)
    input_index = {node: k for k, node in enumerate(plan.model.inputs)}
    for ti, target in enumerate(plan.targets):
        w, d_out = _target_pairs(plan, chunk.pair_x_host, chunk.pair_r_host, target, acts_x, acts_r)
        if w.ndim == len(target.node.shape) + 1:  # per pair -> per (pair, step) row
            w = np.repeat(w, steps, axis=0)
        m = backward(plan, ctx, w, target, stop=prefix)
        grads = {}  # per pair: the gradient at each input, averaged over the steps
        for node in prefix:
            if node not in m or node not in target.needed:
                continue
            mean = ops.mean_over_refs(_flat(m[node][0]), steps).reshape((n_pairs,) + node.shape)
            (inc,) = node.layer.backward(node, (mean, None), ctx_pairs)
            src = node.inputs[0]
            grads[src] = inc[0] if src not in grads else grads[src] + inc[0]
        sum_c = np.zeros(n_pairs)
        for si, node in enumerate(plan.score_nodes):
            if node in grads:
                grad = grads[node]
            else:
                pos = m[node][0] if node in m else xp.zeros((n_pairs * steps,) + node.shape, plan.dtype)
                grad = ops.mean_over_refs(_flat(pos), steps).reshape((n_pairs,) + node.shape)  # mean over steps
            k = input_index[node]
            delta = ops.asarray(x_pair[k] - ref_rows[k], plan.dtype)
            c = grad * delta
            sum_c += ops.to_numpy(_flat(c)).astype(np.float64).sum(axis=1)
            hyp = None
            if plan.hypothetical:
                r = ops.asarray(ref_rows[input_index[node]], plan.dtype)
                hyp = grad - (r * grad).sum(axis=-1, keepdims=True)
            acc.add(ti, si, chunk, c, grad, hyp)
        acc.add_deltas(ti, chunk, sum_c - d_out)
