"""`Explainer`: one attribution session that owns everything a run keeps between calls.

Built once per model and options, it validates and resolves the rules and targets, and holds
the backend, the weights converted to the compute dtype (on the device for CUDA), what the
backend derives from them (packed kernels), the fused forward programs, the shared-reference
activations and the host memory pool. Each call then validates only its own arguments (inputs,
references, seed, layers) and runs: a scan or a Dask worker keeps one Explainer for all its
chunks. `fastlift.deeplift` / `fastlift.attribute` are one-call sessions.

An Explainer is not thread-safe: give each thread its own. It assumes the model's weights do not
change while it is open (build a new one after changing them).
"""

from __future__ import annotations

import functools
import numbers
import weakref
from collections.abc import Sequence

import numpy as np

from . import _validate, scheduler
from . import references as refs_mod
from .backends import _pool, get_ops
from .backends.cpu_ops import POOL_BYTES
from .integrated_gradients import integrated_gradients_chunk
from .layers.conv import Convolution
from .methods import deeplift_chunk
from .model import Model, WeightCache, forward_in_batches
from .plan import Plan, check_hypothetical, resolve, score_nodes
from .result import Accumulator, Attributions
from .revcomp import check_inputs as check_revcomp_inputs
from .revcomp import check_strand_swap, reverse_target, sequence_axes
from .revcomp import reverse_complement as revcomp_rows
from .rules import Rule, parse_max_pool, parse_rule
from .targets import parse_targets

#: Attribution methods of `Explainer.attribute` / `fastlift.attribute`.
METHODS = ("deeplift", "gradient", "grad_x_input", "integrated_gradients", "guided_backprop")

#: The rule each gradient method applies to every activation.
_METHOD_RULES = {"gradient": Rule.GRADIENT, "grad_x_input": Rule.GRADIENT, "integrated_gradients": Rule.GRADIENT,
                 "guided_backprop": Rule.GUIDED_BACKPROP}


class Explainer:
    """An attribution session over one model: build once, call many times, then `close`.

    Parameters
    ----------
    model : Model
    rule : {"rescale", "reveal_cancel", "genomics_default", "gradient", "guided_backprop"}
        The rule of `deeplift` (the gradient methods of `attribute` use their own).
    max_pool : {"exact", "gradient"}
        Max-pooling rule (see `fastlift.rules`).
    target, target_layer
        As in `fastlift.deeplift`: an int, preset name, weight array or a list of these, over
        ``target_layer`` (default: the pre-activation of the first output), or a list of layers.
    device : {"auto", "cpu", "cuda", "numpy"}
    dtype : {"float32", "float64"}
    n_threads : int, optional
        CPU threads (default: all cores). Results do not depend on it.
    batch_size : int, optional
        Examples per chunk (default: sized per call from a memory budget). Results do not depend
        on it.
    precision : {"float32", "tf32"}
        How float32 GEMMs (dense layers, convolutions) compute: "float32" (default) in full FP32;
        "tf32" on the GPU's tensor cores (device="cuda", compute capability 8.0 or newer), their
        inputs rounded to TF32's 10-bit mantissa and the products summed in FP32: faster, at a
        relative error of about 1e-3 in the scores (README, "GPU"). Not with dtype="float64".
    strand_swap : bool or sequence of int
        How a unit or weight target maps onto the reverse-complement strand when a call asks for
        ``reverse_complement=True``: True (default) swaps the two strand channels of the target
        layer's last axis (BPNet's (+, -) order; one channel is kept), False keeps the channels
        (unstranded tasks), a permutation maps channel c to channel ``strand_swap[c]``.
        Positions along a (length, channels) target layer are reversed. Presets need no mapping
        (see `fastlift.revcomp`). A property of the model's target layer, so of the session;
        whether to average the strands is the call's ``reverse_complement``.

    Examples
    --------
    >>> with fl.Explainer(model, target="profile", target_layer="profile_logits") as ex:
    ...     for X in batches:                      # each (n, 2114, 4) one-hot
    ...         res = ex.deeplift(X, fl.references.dinuc_shuffle(20), hypothetical=True)
    """

    def __init__(self, model: Model, *, rule: str = "rescale", max_pool: str = "exact", target=0,
                 target_layer=None, device: str = "auto", dtype="float32", n_threads: int | None = None,
                 batch_size: int | None = None, precision: str = "float32",
                 strand_swap: bool | Sequence[int] = True):
        if not isinstance(model, Model):
            raise TypeError(f"model must be a fastlift.Model; got {type(model).__name__}")
        self.model = model
        self.rule = parse_rule(rule)
        self.max_pool = parse_max_pool(max_pool)
        self.dtype = _validate.dtype_arg(dtype)
        self.precision = _validate.precision_arg(precision, self.dtype)
        self.targets, self._multi_target = parse_targets(model, target, target_layer)
        self._multi_layer = isinstance(target_layer, (list, tuple))
        self.batch_size = None if batch_size is None else _validate.batch_size_arg(batch_size, 1)
        self.strand_swap = check_strand_swap(strand_swap)
        self._reverse_targets = None  # the targets on the reverse-complement strand, made on first use
        # the session's state: dropped by close()
        self._memo: dict = {("rules", self.rule): resolve(model.nodes, self.rule)}  # genomics_default checked here
        self.ops = get_ops(device, n_threads, precision=self.precision)  # last: nothing to release if a check fails
        self._weights = WeightCache(self.ops, self.dtype)
        self._shared_acts = scheduler.SharedReferenceActs()
        hold = _pool.hold(POOL_BYTES)
        self._release = weakref.finalize(self, _release, hold, self.ops)
        self.closed = False

    # ----------------------------------------------------------------- public
    def deeplift(self, X, references=None, *, hypothetical: bool = False, layers=None, seed: int | None = None,
                 progress: bool = False, reverse_complement: bool = False) -> Attributions:
        """DeepLIFT contributions of the inputs (or named layers) to the session's target(s).

        Parameters
        ----------
        X : array (n_examples, *input_shape), or a list / dict {input name: array}
        references : None, array, callable or spec (see `fastlift.references`)
            None = zeros; (1, *S) or (N, *S) one per example; (N, K, *S) or (1, K, *S)
            K per example; ``f(X, rng) -> (1, K, *S)``. Results average over K.
        hypothetical : bool
            Also return hypothetical contributions of the scored inputs (one-hot inputs).
        layers : str or list of str, optional
            Layers to score (default: the model inputs).
        seed : int, optional
            Seed for generated references (default 0: runs are reproducible).
        progress : bool
            Print a progress bar to stderr.
        reverse_complement : bool
            Also score each example's reverse complement, with the reverse complements of the
            same references, against the same target on that strand (``strand_swap``), map those
            scores back (positions reversed, A↔T, C↔G) and average the two strands. One-hot DNA
            inputs only, (length, 4) or, for a channels-first model, (4, length); ``deltas`` are then Σ averaged contributions minus the
            averaged Δtarget. A per-call option: one session serves both.

        Returns
        -------
        Attributions
        """
        return self._call("deeplift", X, references, self.rule, hypothetical=hypothetical, layers=layers, seed=seed,
                          progress=progress, reverse_complement=reverse_complement)

    def attribute(self, X, method: str = "deeplift", references=None, *, steps: int = 50,
                  hypothetical: bool = False, layers=None, seed: int | None = None,
                  progress: bool = False, reverse_complement: bool = False) -> Attributions:
        """Any attribution method on the session (see `fastlift.attribute` for the methods).

        ``steps``: integrated-gradients steps; the other arguments as in `deeplift`.
        """
        _validate.choice(method, METHODS, "method")
        steps = steps_arg(steps)
        if method == "deeplift":
            return self.deeplift(X, references, hypothetical=hypothetical, layers=layers, seed=seed, progress=progress,
                                 reverse_complement=reverse_complement)
        if method != "integrated_gradients":
            if references is not None:
                raise ValueError(f"method={method!r} takes no references; got {type(references).__name__}")
            if hypothetical:
                raise ValueError(f"hypothetical=True needs references; not available for method={method!r}")
        if method == "integrated_gradients" and layers is not None:
            raise ValueError("method='integrated_gradients' integrates along the path between inputs; it scores "
                             f"the model inputs only (layers=None); got layers={layers!r}")
        # steps only shape integrated gradients (and its chunk size)
        steps = int(steps) if method == "integrated_gradients" else 1
        return self._call(method, X, references, _METHOD_RULES[method], hypothetical=hypothetical, layers=layers,
                          seed=seed, progress=progress, steps=steps, reverse_complement=reverse_complement)

    def predict(self, X, batch_size: int | None = None):
        """Forward pass on the session's backend and weights (see `Model.predict`)."""
        self._check_open()
        with _pool.caching(POOL_BYTES):
            xs = _validate.inputs(self.model, X, "X", self.dtype)
            with self.ops.compute_context():  # the session's GEMM precision
                return forward_in_batches(self.model, self.ops, self._weights, xs, batch_size)

    def close(self) -> None:
        """Release what the session holds: the converted and device weights, derived kernels,
        shared-reference activations, pinned buffers and the host memory pool. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._memo, self._weights, self._shared_acts = {}, None, None
        self._release()

    def __enter__(self) -> Explainer:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.ops.name
        tf32 = " tf32" if self.precision == "tf32" else ""
        return f"<fastlift.Explainer {self.model.name!r} rule={self.rule.value!r} {self.dtype.name}{tf32} {state}>"

    # ---------------------------------------------------------------- a call
    def _check_open(self):
        if self.closed:
            raise RuntimeError("this Explainer is closed; create a new one")

    def _plan(self, method, rule, layers=None, hypothetical=False, steps=1, targets=None) -> Plan:
        """The `Plan` of one call (``layers`` validated here)."""
        scored, form = score_nodes(self.model, layers)
        return Plan(model=self.model, ops=self.ops, dtype=self.dtype, weights=self._weights, memo=self._memo,
                    method=method, rule=rule, max_pool=self.max_pool, targets=targets or self.targets,
                    multi_target=self._multi_target, multi_layer=self._multi_layer, scored=scored,
                    layers_form=form, hypothetical=bool(hypothetical), steps=steps)

    def _call(self, method, X, references, rule, *, hypothetical, layers, seed, progress, steps=1,
              reverse_complement=False):
        self._check_open()
        # The whole call allocates from the host pool, validation and results too: a call of a few
        # milliseconds (an MLP over 256 rows) otherwise faults its inputs' copies in every time.
        with _pool.caching(POOL_BYTES):
            model, dtype = self.model, self.dtype
            xs = [a.astype(dtype, copy=False) for a in _validate.inputs(model, X, "X", dtype)]
            sources = refs_mod.prepare(model, references, xs)
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
                raise ValueError(f"seed must be a non-negative int or None; got {seed!r}")
            if not isinstance(reverse_complement, (bool, np.bool_)):
                raise TypeError(f"reverse_complement must be True or False; got {reverse_complement!r}")
            plan = self._plan(method, rule, layers, hypothetical, steps)
            if hypothetical:
                check_hypothetical(plan.score_nodes, model, xs)
            plan_rc = None
            if reverse_complement:
                check_revcomp_inputs(model, xs, layers)
                if self._reverse_targets is None:
                    self._reverse_targets = [reverse_target(t, self.strand_swap) for t in self.targets]
                plan_rc = self._plan(method, rule, layers, hypothetical, steps, self._reverse_targets)
            rows = max([s.n_refs or 1 for s in sources] + [1]) * steps
            _check_memory(model, method, steps, rows, dtype)
            n = xs[0].shape[0]
            batch = self.batch_size or _auto_batch_size(model, self.ops, sources, steps, dtype, n)
            work = scheduler.Work(xs=xs, sources=sources, input_names=model.input_names, seed=0 if seed is None
                                  else int(seed), ops=self.ops, dtype=dtype, shared_acts=self._shared_acts,
                                  shared_key=plan.computed)
            acc = Accumulator(plan, n, isinstance(X, dict))
            acc_rc = Accumulator(plan_rc, n, isinstance(X, dict)) if plan_rc is not None else None
            run_chunk = integrated_gradients_chunk if method == "integrated_gradients" else deeplift_chunk
            shared_rc: dict = {}  # the reverse strand's shared reference activations, for this call's chunks
            channel_axis, length_axis = sequence_axes(model)
            strand = functools.partial(revcomp_rows, channel_axis=channel_axis, length_axis=length_axis)
            with self.ops.compute_context():
                for chunk in scheduler.chunks(work, batch, progress):
                    run_chunk(plan, chunk, acc)
                    if acc_rc is not None:
                        run_chunk(plan_rc, chunk.mapped(strand, shared_rc), acc_rc)
            if acc_rc is not None:
                acc.average_with(acc_rc, strand)
            return acc.result()


def steps_arg(steps) -> int:
    """Integrated-gradients ``steps``, checked whatever the method (a bad value is a mistake even
    where it is not used)."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}")
    return int(steps)


def _release(hold, ops):
    hold.close()
    ops.close()


def _auto_batch_size(model, ops, sources, steps, dtype, n) -> int:
    """`scheduler.auto_batch_size` for this model and call (``ops.memory_budget()`` bytes)."""
    k = max([s.n_refs or scheduler.DEFAULT_K_GUESS for s in sources] + [1]) * max(steps, 1)
    unfold = [g.h_out * g.w_out * g.kh * g.kw * g.c for g in
              (node.layer.geometry(node.inputs[0].shape) for node in model.nodes
               if isinstance(node.layer, Convolution))]
    return scheduler.auto_batch_size(n, k, dtype.itemsize, sum(node.size for node in model.nodes),
                                     max(unfold + [0]), ops.memory_budget())


def _check_memory(model, method, steps, rows, dtype):
    """Refuse up front a call whose smallest chunk, one example, cannot fit in memory. Its K·steps
    rows each hold about one value per node (the activations the backward reads) plus the widest
    layer's inputs and output at once (measured: 0.5-2x the peak of one example on the bench
    models and an MLP), so the estimate refuses what cannot run and nothing that can."""
    widest = max(n.size + sum(i.size for i in n.inputs) for n in model.nodes)
    need = float(dtype.itemsize) * rows * (sum(n.size for n in model.nodes) + widest)
    k = rows // steps
    if method == "integrated_gradients":
        what = f"steps={steps} with {k} reference(s) per example ({rows} points per example)"
        fix = "; use fewer steps or references"
    else:
        what, fix = f"references: {k} per example", "; use fewer references"
    _validate.memory_fits(need, what + fix)
