"""Integrated gradients: the gradient averaged over ``steps`` midpoints between each reference
and its example, times (x - ref).

When the model's inputs are read only by Dense/Conv layers (`affine_prefix`), those layers run
once per example and reference, not once per point: their activations at the points interpolate
the two ends, and the gradient is averaged over the steps where it reaches them and then taken
through them once per pair. A convolution that reads them through a ReLU (and a max-pool) then
sees piecewise-linear inputs and runs mostly on zeros where the backend skips them
(`fastlift.straight_path`).
"""

from __future__ import annotations

import numpy as np

from .backward import Context, backward
from .layers.core import LinearLayer
from .methods import flat, target_pairs
from .straight_path import chain_activations, kinked_chains, path


def affine_prefix(model) -> tuple:
    """Dense/Conv nodes that read a model input directly, when they are the only readers of
    every input (else ``()``). They are affine in the input, so along the straight path from a
    reference to an example their activations interpolate those at the two ends, and the
    mean of their gradients can go back through them once per pair instead of once per step."""
    readers = [n for n in model.nodes if any(i in model.inputs for i in n.inputs)]
    if not readers or not all(isinstance(n.layer, LinearLayer) and len(n.inputs) == 1 for n in readers):
        return ()
    return tuple(readers)


def integrated_gradients_chunk(plan, chunk, acc):
    ops, steps, xp = plan.ops, plan.steps, plan.ops.xp
    n_pairs = len(chunk.pair_x)
    ref_rows = chunk.ref_rows_per_pair()  # list per input: (P, *S) numpy
    alphas = ((np.arange(steps) + 0.5) / steps).astype(plan.dtype)
    x_pair = [x[chunk.pair_x_host] for x in chunk.x_host]
    points = [ops.asarray(path(x, r, alphas), plan.dtype) for x, r in zip(x_pair, ref_rows)]
    # the prefix nodes this call's forward computes (a target may not read every input reader)
    prefix = tuple(node for node in affine_prefix(plan.model) if node in plan.computed)
    keep = plan.gradient_keep(prefix)
    if prefix:
        acts_x, acts_r = chunk.acts(plan.forward)
        a = ops.asarray(alphas, plan.dtype)
        given = {node: path(acts_x[node][chunk.pair_x], acts_r[node][chunk.pair_r], a) for node in prefix}
        for chain in kinked_chains(plan.model, prefix, ops):
            if chain[-1] not in plan.computed:
                continue
            z = chain[0]
            given.update(chain_activations(ops, plan.weights, chain, given[z], acts_x[z][chunk.pair_x],
                                           acts_r[z][chunk.pair_r], alphas))
        acts_p = plan.forward(points, keep, given)
    else:
        acts_p, acts_x, acts_r = chunk.acts(plan.forward, lead=points, keep=keep)
    idx = ops.asarray(np.arange(n_pairs * steps), np.int64)
    ctx = Context(plan, acts_p, acts_p, idx, idx)
    ctx_pairs = Context(plan, acts_x, acts_r, chunk.pair_x, chunk.pair_r)
    input_index = {node: k for k, node in enumerate(plan.model.inputs)}
    for ti, target in enumerate(plan.targets):
        w, d_out = target_pairs(plan, chunk.pair_x_host, chunk.pair_r_host, target, acts_x, acts_r)
        if w.ndim == len(target.node.shape) + 1:  # per pair -> per (pair, step) row
            w = np.repeat(w, steps, axis=0)
        m = backward(plan, ctx, w, target, stop=prefix)
        grads = {}  # per pair: the gradient at each input, averaged over the steps
        for node in prefix:
            if node not in m or node not in plan.needed[target]:
                continue
            mean = ops.mean_over_refs(flat(m[node][0]), steps).reshape((n_pairs,) + node.shape)
            (inc,) = node.layer.backward(node, (mean, None), ctx_pairs)
            src = node.inputs[0]
            grads[src] = inc[0] if src not in grads else grads[src] + inc[0]
        sum_c = np.zeros(n_pairs)
        for si, node in enumerate(plan.score_nodes):
            if node in grads:
                grad = grads[node]
            else:
                pos = m[node][0] if node in m else xp.zeros((n_pairs * steps,) + node.shape, plan.dtype)
                grad = ops.mean_over_refs(flat(pos), steps).reshape((n_pairs,) + node.shape)  # mean over steps
            k = input_index[node]
            delta = ops.asarray(x_pair[k] - ref_rows[k], plan.dtype)
            c = grad * delta
            sum_c += ops.to_numpy(flat(c)).astype(np.float64).sum(axis=1)
            hyp = None
            if plan.hypothetical:
                r = ops.asarray(ref_rows[input_index[node]], plan.dtype)
                hyp = grad - (r * grad).sum(axis=plan.model.channel_axis, keepdims=True)
            acc.add(ti, si, chunk, c, grad, hyp)
        acc.add_deltas(ti, chunk, sum_c - d_out)
