"""Inputs for every kernel op, shared by the in-process emulation tests and the ASan subprocess.

Sizes are odd and small; with 256-thread blocks, a grid capped at one block is smaller than most
of the data (grid-stride loops run several rounds) and an uncapped grid is larger than the data
(the last block's threads past the end must do nothing).
"""

from __future__ import annotations

import numpy as np

from fastlift.activations import Act
from fastlift.backends.ops import NEAR_ZERO
from fastlift.geometry import Geometry

ARITHMETIC = {Act.LINEAR, Act.RELU, Act.RELU6, Act.LEAKY_RELU, Act.HARD_SIGMOID, Act.SOFTSIGN}


def geometry(h, w, c, kh, kw, sh=1, sw=1, dh=1, dw=1, pt=0, pb=0, pl=0, pr=0):
    h_out = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    return Geometry(h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, h_out, w_out)


GEOMETRIES = {
    "1d-stride2-pad-both": geometry(1, 17, 3, 1, 4, sw=2, pl=1, pr=2),
    "1d-window-wider-than-input": geometry(1, 3, 2, 1, 5, pl=2, pr=2),
    "1d-stride-gt-window": geometry(1, 11, 2, 1, 2, sw=3),
    "2d-stride-dil-pad": geometry(7, 6, 2, 3, 2, sh=2, dh=2, pt=2, pb=1, pl=1, pr=1),
    "2d-dil-both": geometry(8, 9, 3, 2, 3, sw=2, dh=3, dw=2, pt=1, pb=3, pl=2, pr=2),
    "2d-same-overlap": geometry(4, 5, 3, 3, 3, pt=1, pb=1, pl=1, pr=1),
    "2d-window-in-padding": geometry(2, 6, 2, 2, 2, pl=1, pr=2),
    "2d-c70": geometry(3, 4, 70, 2, 2, pt=1, pl=1),
}


def activation_x(rng, dtype, n_rows=7, n_features=12):
    special = [0.0, -0.0, 6.0, -2.5, 2.5, 1e-8, -1e-8, 30.0, -30.0, -4.0, 4.0, 0.5]
    x = 3 * rng.standard_normal((n_rows, n_features))
    x[0, :len(special)] = special[:n_features]
    return x.astype(dtype)


def alpha(rng, dtype, n=3):
    return (0.1 + 0.3 * rng.random(n)).astype(dtype)


def pair_data(rng, dtype, n_pairs=7, n_features=9, n_x=3):
    """Example-major pairs: example rows shared by several pairs, one reference row per pair.

    Feature 0 has Δ = 0 exactly, feature 1 has 0 < |Δ| < NEAR_ZERO, feature 2 sits on the
    relu kink (x = ref = 0), feature 3 straddles it by less than NEAR_ZERO (f'(x) != f'(ref));
    the rest are random. Shared by the Cython tests and the emulated CUDA tests.
    """
    pair_x = (np.arange(n_pairs) % n_x).astype(np.int64)
    pair_r = rng.permutation(n_pairs).astype(np.int64)
    x = (2 * rng.standard_normal((n_x, n_features))).astype(dtype)
    r = (2 * rng.standard_normal((n_pairs, n_features))).astype(dtype)
    x[:, 1] = (1e-3 * (1 + np.arange(n_x))).astype(dtype)
    x[:, 2] = 0
    x[:, 3] = 3e-8
    xs = x[pair_x]
    r[pair_r, 0] = xs[:, 0]
    r[pair_r, 1] = xs[:, 1] + dtype(4e-8)
    r[pair_r, 2] = 0
    r[pair_r, 3] = -3e-8
    dx = x[pair_x] - r[pair_r]
    assert np.any(dx == 0) and np.any((dx != 0) & (np.abs(dx) < NEAR_ZERO))
    m = rng.standard_normal((n_pairs, n_features)).astype(dtype)
    return m, x, r, pair_x, pair_r


def reveal_cancel_data(rng, dtype, n_pairs=7, n_features=8):
    r = rng.standard_normal((n_pairs + 2, n_features)).astype(dtype)
    pair_r = rng.integers(0, n_pairs + 2, n_pairs).astype(np.int64)
    d_pos = (0.1 + np.abs(rng.standard_normal((n_pairs, n_features)))).astype(dtype)
    d_neg = (-0.1 - np.abs(rng.standard_normal((n_pairs, n_features)))).astype(dtype)
    d_pos[:, 0] = 0
    d_neg[:, 1] = 0
    d_pos[:, 2] = 0
    d_neg[:, 2] = 0
    d_pos[:, 3] = 3e-8
    d_neg[:, 4] = -5e-8
    m_pos = rng.standard_normal((n_pairs, n_features)).astype(dtype)
    m_neg = rng.standard_normal((n_pairs, n_features)).astype(dtype)
    return m_pos, m_neg, r, d_pos, d_neg, pair_r


def op_cases(dtype):
    """[(case id, op name, args, exact)]: exact = bitwise equal to the numpy oracle expected."""
    rng = np.random.default_rng(20240611)
    dtype = np.dtype(dtype).type
    cases = []
    for act in Act:
        x = activation_x(rng, dtype)
        for a in (alpha(rng, dtype), np.array([0.2], dtype)):
            tag = f"{act.name}-alpha{a.size}"
            cases.append((f"activation_forward-{tag}", "activation_forward", (act, x, a), act in ARITHMETIC))
            cases.append((f"activation_grad-{tag}", "activation_grad", (act, x, a), act in ARITHMETIC))
            other = rng.standard_normal(x.shape).astype(dtype)
            cases.append((f"add_activation-{tag}", "add_activation", (act, x, a, other), act in ARITHMETIC))
        m, x, r, px, pr = pair_data(rng, dtype)
        a = alpha(rng, dtype)
        xo, ro = (np.asarray(f) for f in _ref_forward(act, x, r, a))
        cases.append((f"rescale_backward-{act.name}", "rescale_backward", (act, m, x, r, xo, ro, px, pr, a), False))
        m2 = m.copy()
        m2[0, :3] = [0.0, -1.0, 1.0]
        cases.append((f"gradient_backward-{act.name}", "gradient_backward", (act, m2, x, px, a), act in ARITHMETIC))
        cases.append((f"guided_backprop_backward-{act.name}", "guided_backprop_backward", (act, m2, x, px, a),
                      act in ARITHMETIC))
        mp, mn, rr, dp, dn, prr = reveal_cancel_data(rng, dtype)
        a = alpha(rng, dtype, 2)
        cases.append((f"reveal_cancel_split-{act.name}", "reveal_cancel_split", (act, rr, dp, dn, prr, a), False))
        cases.append((f"reveal_cancel_backward-{act.name}", "reveal_cancel_backward",
                      (act, mp, mn, rr, dp, dn, prr, a), False))
    m, x, r, px, pr = pair_data(rng, dtype, n_pairs=37, n_features=13, n_x=5)
    cases.append(("pair_delta", "pair_delta", (x, r, px, pr), True))
    cases.append(("pair_contributions", "pair_contributions", (m, x, r, px, pr), True))
    for n_refs in (1, 3):
        a = rng.standard_normal((5 * n_refs, 301)).astype(dtype)
        cases.append((f"mean_over_refs-k{n_refs}", "mean_over_refs", (a, n_refs), True))
    for gname, g in GEOMETRIES.items():
        n = 3
        xi = rng.standard_normal((n, g.h, g.w, g.c)).astype(dtype)
        cols = rng.standard_normal((n, g.h_out, g.w_out, g.kh * g.kw * g.c)).astype(dtype)
        mo = rng.standard_normal((n, g.h_out, g.w_out, g.c)).astype(dtype)
        cases.append((f"im2col-{gname}", "im2col", (xi, g), True))
        cases.append((f"col2im-{gname}", "col2im", (cols, g), True))
        cases.append((f"max_pool_forward-{gname}", "max_pool_forward", (xi - 3, g), True))
        cases.append((f"avg_pool_forward-{gname}", "avg_pool_forward", (xi, g), True))
        cases.append((f"avg_pool_backward-{gname}", "avg_pool_backward", (mo, g), True))
        # small integers: ties inside windows (the first arg-max wins) and negative values
        xs = rng.integers(-3, 1, (2, g.h, g.w, g.c)).astype(dtype)
        refs = rng.integers(-3, 1, (3, g.h, g.w, g.c)).astype(dtype)
        pxs = (np.arange(n) % 2).astype(np.int64)
        prs = rng.integers(0, 3, n).astype(np.int64)
        for exact in (True, False):
            cases.append((f"max_pool_backward-{gname}-{'exact' if exact else 'gradient'}", "max_pool_backward",
                          (mo, xs, refs, pxs, prs, g, exact), True))
    return cases


def _ref_forward(act, x, r, a):
    from fastlift.backends.ops import Ops

    ops = Ops()
    return ops.activation_forward(act, x, a), ops.activation_forward(act, r, a)


def run_all(ops, dtype):
    """Every case through ``ops`` (ASan run): results as host arrays."""
    out = {}
    for cid, name, args, _ in op_cases(dtype):
        res = getattr(ops, name)(*args)
        out[cid] = [ops.to_numpy(r) for r in (res if isinstance(res, tuple) else (res,))]
    return out
