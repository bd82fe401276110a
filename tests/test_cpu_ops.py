"""CpuOps (Cython kernels over csrc/) against the numpy oracle `Ops`, op by op.

Exact comparisons where the kernels do the oracle's arithmetic in the oracle's order (gathers,
im2col/col2im, pooling, mean_over_refs, every rule's non-transcendental path); tolerances
where libm and numpy's SIMD transcendental functions may differ in the last bits.
Thread-count and batch-size invariance are checked bit for bit.
"""

import contextlib
import functools
import os

import numpy as np
import pytest
from cuda_emu.cases import pair_data
from threadpoolctl import threadpool_info

from fastlift.backends import _cpu
from fastlift.backends.cpu_ops import GEMM_BLOCK_ROWS, NARROW_MAX_CHANNELS, CpuOps
from fastlift.activations import Act
from fastlift.backends.ops import NEAR_ZERO, Ops
from fastlift.geometry import Geometry

pytestmark = pytest.mark.blas  # .ci/run runs these again under a second BLAS core type

REF = Ops()
CPU = CpuOps(n_threads=2)
DTYPES = [np.float32, np.float64]
ACTS = list(Act)
N_ROWS = [1, 3, 17]
# libm and numpy's SIMD exp/tanh/erf differ by an ulp or two of the terms' scale (O(1)); the
# oracle's own cancellations (1 + tanh(u) for u << 0 in gelu_tanh') turn that into absolute
# differences up to ~1.3e-6 (float32) / 5e-15 (float64) on values near 0, times |m| in rules.
TOL = {np.float32: {"rtol": 1e-6, "atol": 5e-6}, np.float64: {"rtol": 1e-12, "atol": 5e-14}}


def close(got, want, dtype, **tol):
    assert got.dtype == want.dtype == np.dtype(dtype)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **(tol or TOL[dtype]))


def same(got, want, dtype):
    assert got.dtype == want.dtype == np.dtype(dtype)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def geometry(h, w, c, kh, kw, sh=1, sw=1, dh=1, dw=1, pt=0, pb=0, pl=0, pr=0):
    h_out = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    assert h_out > 0 and w_out > 0
    return Geometry(h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, h_out, w_out)


GEOMETRIES = [
    pytest.param(geometry(1, 17, 3, 1, 4, sw=2, pl=1, pr=2), id="1d-stride2-pad-both"),
    pytest.param(geometry(1, 9, 1, 1, 3), id="1d-valid-c1"),
    pytest.param(geometry(1, 3, 2, 1, 5, pl=2, pr=2), id="1d-window-wider-than-input"),
    pytest.param(geometry(1, 10, 3, 1, 4, sw=2, pl=1, pr=1), id="1d-same-pool-4-2"),
    pytest.param(geometry(1, 11, 2, 1, 2, sw=3), id="1d-stride-gt-window"),
    pytest.param(geometry(7, 6, 2, 3, 2, sh=2, dh=2, pt=2, pb=1, pl=1, pr=1), id="2d-stride-dil-pad"),
    pytest.param(geometry(8, 9, 3, 2, 3, sw=2, dh=3, dw=2, pt=1, pb=3, pl=2, pr=2), id="2d-dil-both"),
    pytest.param(geometry(5, 7, 2, 3, 3, sh=2, sw=2, pt=1, pb=1, pl=1, pr=1), id="2d-same-pool-3-2"),
    pytest.param(geometry(4, 5, 3, 3, 3, pt=1, pb=1, pl=1, pr=1), id="2d-same-overlap-s1"),
    pytest.param(geometry(3, 4, 70, 2, 2, pt=1, pl=1), id="2d-c70-over-channel-block"),
    pytest.param(geometry(4, 7, 2, 1, 1, sh=3, sw=2), id="1x1-stride"),
]


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def alpha_for(n_features, dtype, rng, tiled=True):
    """Per-feature parameters: length 3 dividing n_features, or a single shared value."""
    if tiled:
        return (0.1 + 0.3 * rng.random(3)).astype(dtype)
    return np.array([0.2], dtype=dtype)


# ------------------------------------------------------------------------- header constants
def test_header_constants_match_ops():
    assert _cpu.ACT_CODES == {a.name: int(a) for a in Act}
    assert _cpu.ACT_COUNT == len(Act)
    assert _cpu.NEAR_ZERO == NEAR_ZERO


# ------------------------------------------------------------------------- activations
def activation_inputs(n_rows, dtype, rng):
    # Kinks and clip points (relu 0, relu6 6, hard_sigmoid at t = 0 and 1 for alpha 0.2: x = ±2.5),
    # signed zeros, tiny and large magnitudes, then random values.
    special = [0.0, -0.0, 6.0, -2.5, 2.5, 1e-8, -1e-8, 30.0, -30.0, -4.0, 4.0, 0.5]
    x = 3 * rng.standard_normal((n_rows, 12))
    x[0] = special
    return x.astype(dtype)


def test_one_valued_parameters_are_filled_once_per_value_width_and_dtype(rng):
    """A scalar activation parameter becomes one read-only array per (value, width, dtype), reused by
    every call: another value, width or dtype gets its own, and each call computes with its own."""
    ops = CpuOps(n_threads=2)
    x = rng.standard_normal((3, 40)).astype(np.float32)
    a = ops._alpha(np.float32(0.1), 40, np.float32)
    assert ops._alpha(np.array([0.1], np.float32), 40, np.float32) is a and not a.flags.writeable
    assert np.array_equal(a, np.full(40, 0.1, np.float32))
    for other in (ops._alpha(0.2, 40, np.float32), ops._alpha(0.1, 41, np.float32), ops._alpha(0.1, 40, np.float64)):
        assert other is not a
    for alpha in (0.1, 0.2, 0.1):
        close(ops.activation_forward(Act.LEAKY_RELU, x, np.float32(alpha)),
              REF.activation_forward(Act.LEAKY_RELU, x, np.float32(alpha)), np.float32)
    ops.close()
    assert ops._alpha(0.1, 40, np.float32) is not a
    from fastlift.backends.cpu_ops import ALPHA_ARRAYS
    for v in range(2 * ALPHA_ARRAYS):  # bounded: a model with many values does not grow it forever
        ops._alpha(float(v), 40, np.float32)
    assert 0 < len(ops._alphas) <= ALPHA_ARRAYS


@pytest.mark.parametrize("n_rows", N_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_activation_forward(act, dtype, n_rows, rng):
    x = activation_inputs(n_rows, dtype, rng)
    for alpha in (alpha_for(12, dtype, rng), alpha_for(12, dtype, rng, tiled=False)):
        close(CPU.activation_forward(act, x, alpha), REF.activation_forward(act, x, alpha), dtype)


@pytest.mark.parametrize("n_rows", N_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_activation_grad(act, dtype, n_rows, rng):
    x = activation_inputs(n_rows, dtype, rng)
    for alpha in (alpha_for(12, dtype, rng), alpha_for(12, dtype, rng, tiled=False)):
        close(CPU.activation_grad(act, x, alpha), REF.activation_grad(act, x, alpha), dtype)


@pytest.mark.parametrize("n_rows", N_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_add_activation_is_activation_then_add(act, dtype, n_rows, rng):
    """The fused residual merge gives the bits of the two ops it replaces, on every backend."""
    x = activation_inputs(n_rows, dtype, rng)
    other = rng.standard_normal(x.shape).astype(dtype)
    for alpha in (alpha_for(12, dtype, rng), alpha_for(12, dtype, rng, tiled=False)):
        for ops in (CPU, REF):
            same(ops.add_activation(act, x, alpha, other), ops.add(other, ops.activation_forward(act, x, alpha)), dtype)
        close(CPU.add_activation(act, x, alpha, other), REF.add_activation(act, x, alpha, other), dtype)


def test_add_activation_rejects_mismatched_arrays():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"other.shape\[1\] \(n_features\)"):
        _cpu.add_activation(int(Act.RELU), x, np.zeros(3, np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"other.shape\[0\] \(n_rows\)"):
        _cpu.add_activation(int(Act.RELU), x, np.zeros(3, np.float32), np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="alpha"):
        _cpu.add_activation(int(Act.RELU), x, np.zeros(2, np.float32), x)
    with pytest.raises(ValueError, match="act"):
        _cpu.add_activation(len(Act), x, np.zeros(3, np.float32), x)
    with pytest.raises(ValueError):  # CpuOps hands shapes it does not fuse to numpy, which refuses them
        CPU.add_activation(Act.RELU, x, np.zeros(3, np.float32), np.zeros((2, 4), np.float32))


ARITHMETIC_ACTS = [Act.LINEAR, Act.RELU, Act.RELU6, Act.LEAKY_RELU, Act.HARD_SIGMOID, Act.SOFTSIGN]


@pytest.mark.parametrize("act", ARITHMETIC_ACTS, ids=[a.name for a in ARITHMETIC_ACTS])
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_exact_for_arithmetic_activations(act, dtype, rng):
    """Activations without transcendental functions are bitwise equal to the oracle."""
    x = activation_inputs(17, dtype, rng)
    alpha = alpha_for(12, dtype, rng)
    same(CPU.activation_forward(act, x, alpha), REF.activation_forward(act, x, alpha), dtype)
    same(CPU.activation_grad(act, x, alpha), REF.activation_grad(act, x, alpha), dtype)


def test_unknown_activation_code_is_rejected():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError):
        REF.activation_forward(len(Act), x, np.ones(1, np.float32))
    with pytest.raises(ValueError, match="act"):
        CPU.activation_forward(len(Act), x, np.ones(1, np.float32))
    with pytest.raises(ValueError, match="act"):
        CPU.rescale_backward(-1, x, x, x, x, x, np.arange(2), np.arange(2), np.ones(1, np.float32))


# ------------------------------------------------------------------------- rule kernels
# pair_data: the same pair cases the emulated CUDA kernels are tested on (tests/cuda_emu/cases.py)


@pytest.mark.parametrize("n_pairs", N_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_rescale_backward(act, dtype, n_pairs, rng):
    m, x, r, pair_x, pair_r = pair_data(rng, dtype, n_pairs)
    alpha = alpha_for(x.shape[1], dtype, rng)
    x_out, r_out = REF.activation_forward(act, x, alpha), REF.activation_forward(act, r, alpha)
    args = (act, m, x, r, x_out, r_out, pair_x, pair_r, alpha)
    got, want = CPU.rescale_backward(*args), REF.rescale_backward(*args)
    close(got, want, dtype)
    # Away from the near-zero fallback the kernel divides the same numbers as the oracle.
    far = np.abs(x[pair_x] - r[pair_r]) >= NEAR_ZERO
    np.testing.assert_array_equal(got[far], want[far])


@pytest.mark.parametrize("dtype", DTYPES)
def test_rescale_backward_of_relu_gives_the_oracles_bits_everywhere(dtype, rng):
    """ReLU's rows run on the vector ISA with f(x) recomputed from x (exact): the oracle's bits, near
    zero, at the kink, for signed zeros, infinities and NaN too."""
    special = np.array([0.0, -0.0, 1e-8, -1e-8, 3.0, -3.0, np.inf, -np.inf, np.nan], dtype)
    x = np.concatenate([special, 2 * rng.standard_normal(300)]).astype(dtype)[None].repeat(3, 0)
    r = np.stack([np.roll(x[0], k) for k in range(9)]).astype(dtype)
    r[1] = x[0] + np.asarray(3e-8, dtype)  # within the near-zero band of every x
    m = rng.standard_normal((9, x.shape[1])).astype(dtype)
    pair_x, pair_r = np.arange(9, dtype=np.int64) % 3, np.arange(9, dtype=np.int64)[::-1].copy()
    alpha = np.zeros(1, dtype)
    args = (Act.RELU, m, x, r, REF.activation_forward(Act.RELU, x, alpha), REF.activation_forward(Act.RELU, r, alpha),
            pair_x, pair_r, alpha)
    with np.errstate(invalid="ignore"):
        same(CPU.rescale_backward(*args), REF.rescale_backward(*args), dtype)


@pytest.mark.parametrize("n_pairs", N_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_gradient_and_guided_backprop_backward(act, dtype, n_pairs, rng):
    m, x, _, pair_x, _ = pair_data(rng, dtype, n_pairs)
    m[0, :3] = [0.0, -1.0, 1.0]  # guided backprop keeps m > 0 only; m == 0 is dropped
    alpha = alpha_for(x.shape[1], dtype, rng)
    close(CPU.gradient_backward(act, m, x, pair_x, alpha),
          REF.gradient_backward(act, m, x, pair_x, alpha), dtype)
    close(CPU.guided_backprop_backward(act, m, x, pair_x, alpha),
          REF.guided_backprop_backward(act, m, x, pair_x, alpha), dtype)


def reveal_cancel_data(n_pairs, dtype, rng, n_features=8):
    """Δ⁺ >= 0 and Δ⁻ <= 0 with exact zeros, sub-NEAR_ZERO values and both zero at once.

    Non-zero magnitudes stay >= 0.1: dividing f(x0+Δ) - f(x0) by a Δ just above NEAR_ZERO
    amplifies last-bit libm differences into visible ones, in any implementation.
    """
    r = rng.standard_normal((n_pairs + 2, n_features)).astype(dtype)
    pair_r = rng.integers(0, n_pairs + 2, n_pairs).astype(np.int64)
    d_pos = (0.1 + np.abs(rng.standard_normal((n_pairs, n_features)))).astype(dtype)
    d_neg = (-0.1 - np.abs(rng.standard_normal((n_pairs, n_features)))).astype(dtype)
    d_pos[:, 0] = 0            # Δ⁺ = 0
    d_neg[:, 1] = 0            # Δ⁻ = 0
    d_pos[:, 2] = 0            # both 0
    d_neg[:, 2] = 0
    d_pos[:, 3] = 3e-8         # 0 < Δ⁺ < NEAR_ZERO
    d_neg[:, 4] = -5e-8        # 0 < |Δ⁻| < NEAR_ZERO
    m_pos = rng.standard_normal((n_pairs, n_features)).astype(dtype)
    m_neg = rng.standard_normal((n_pairs, n_features)).astype(dtype)
    return m_pos, m_neg, r, d_pos, d_neg, pair_r


@pytest.mark.parametrize("n_pairs", N_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_reveal_cancel_split(act, dtype, n_pairs, rng):
    _, _, r, d_pos, d_neg, pair_r = reveal_cancel_data(n_pairs, dtype, rng)
    alpha = alpha_for(r.shape[1], dtype, rng)
    got = CPU.reveal_cancel_split(act, r, d_pos, d_neg, pair_r, alpha)
    want = REF.reveal_cancel_split(act, r, d_pos, d_neg, pair_r, alpha)
    for g, w in zip(got, want):
        close(g, w, dtype)


@pytest.mark.parametrize("n_pairs", N_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_reveal_cancel_backward(act, dtype, n_pairs, rng):
    m_pos, m_neg, r, d_pos, d_neg, pair_r = reveal_cancel_data(n_pairs, dtype, rng)
    if act == Act.LOG:  # log's domain: every x0 + Δ⁻ stays positive
        r = np.abs(r) + np.abs(d_neg).max() + 0.5
    alpha = alpha_for(r.shape[1], dtype, rng)
    args = (act, m_pos, m_neg, r, d_pos, d_neg, pair_r, alpha)
    got, want = CPU.reveal_cancel_backward(*args), REF.reveal_cancel_backward(*args)
    for g, w in zip(got, want):
        close(g, w, dtype)
        assert np.all(np.isfinite(g))  # the Δ = 0 cases took the limit, not 0/0


@pytest.mark.parametrize("dtype", DTYPES)
def test_rule_ops_accept_nd_arrays_and_any_integer_index(dtype, rng):
    """Layer outputs may arrive unflattened; pair indices as int32 or lists."""
    m, x, r, pair_x, pair_r = pair_data(rng, dtype, 6, n_features=12)
    shape = (6, 3, 4)
    alpha = alpha_for(4, dtype, rng)  # divides the last axis, as for a per-channel PReLU
    m3, x3, r3 = m.reshape(shape), x.reshape((-1, 3, 4)), r.reshape((-1, 3, 4))
    act = Act.LEAKY_RELU
    xo, ro = REF.activation_forward(act, x3, alpha), REF.activation_forward(act, r3, alpha)
    for px, pr in ((pair_x.astype(np.int32), pair_r.astype(np.int32)), (list(pair_x), list(pair_r))):
        want = REF.rescale_backward(act, m3, x3, r3, xo, ro, np.asarray(px), np.asarray(pr), alpha)
        same(CPU.rescale_backward(act, m3, x3, r3, xo, ro, px, pr, alpha), want, dtype)
        same(CPU.pair_contributions(m3, x3, r3, px, pr),
             REF.pair_contributions(m3, x3, r3, pair_x, pair_r), dtype)
        same(CPU.pair_delta(x3, r3, px, pr), REF.pair_delta(x3, r3, pair_x, pair_r), dtype)


def test_out_of_range_pair_index_is_rejected():
    x = np.zeros((2, 3), np.float64)
    with pytest.raises(ValueError, match="pair_x"):
        CPU.pair_delta(x, x, np.array([0, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="pair_r"):
        CPU.reveal_cancel_split(Act.RELU, x, x, x, np.array([-1, 0]), np.ones(1))


# ------------------------------------------------------------------------- pair gathers
@pytest.mark.parametrize("n_pairs", N_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pair_delta_and_contributions(dtype, n_pairs, rng):
    m, x, r, pair_x, pair_r = pair_data(rng, dtype, n_pairs)
    same(CPU.pair_delta(x, r, pair_x, pair_r), REF.pair_delta(x, r, pair_x, pair_r), dtype)
    same(CPU.pair_contributions(m, x, r, pair_x, pair_r),
         REF.pair_contributions(m, x, r, pair_x, pair_r), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_is_numpy_add(dtype, rng):
    a, b = rng.standard_normal((3, 70001)).astype(dtype), rng.standard_normal((3, 70001)).astype(dtype)
    for ops in (CPU, CpuOps(n_threads=1)):
        same(ops.add(a, b), a + b, dtype)
    same(CPU.add(a[:, ::2], b[:, ::2]), a[:, ::2] + b[:, ::2], dtype)  # non-contiguous inputs
    assert CPU.add(a, b.astype(np.float16)).dtype == (a + b.astype(np.float16)).dtype  # numpy's rules
    assert CPU.add(a[:0], b[:0]).shape == (0, 70001)


@pytest.mark.parametrize("n_refs", [1, 4, 7])
@pytest.mark.parametrize("n_examples", N_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mean_over_refs(dtype, n_examples, n_refs, rng):
    a = rng.standard_normal((n_examples * n_refs, 300)).astype(dtype)  # > one 256-feature block
    same(CPU.mean_over_refs(a, n_refs), REF.mean_over_refs(a, n_refs), dtype)
    a3 = a.reshape(n_examples * n_refs, 30, 10)
    same(CPU.mean_over_refs(a3, n_refs), REF.mean_over_refs(a3, n_refs), dtype)



@pytest.mark.parametrize("dtype", DTYPES)
def test_mean_over_refs_of_one_example_splits_its_features_across_threads(dtype, rng):
    """Integrated gradients averages one example's steps per call: its threads split the features."""
    a = rng.standard_normal((50, 5000)).astype(dtype)
    _two_threads(5000, 50)
    want = REF.mean_over_refs(a, 50)
    for n_threads in (1, 2, 3):
        got = CpuOps(n_threads=n_threads).mean_over_refs(a, 50)
        same(got, want, dtype)
        np.testing.assert_array_equal(got, CpuOps(n_threads=1).mean_over_refs(a, 50))

# ------------------------------------------------------------------------- im2col / col2im
@pytest.mark.parametrize("n", N_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", GEOMETRIES)
def test_im2col_col2im(g, dtype, n, rng):
    x = rng.standard_normal((n, g.h, g.w, g.c)).astype(dtype)
    same(CPU.im2col(x, g), REF.im2col(x, g), dtype)
    cols = rng.standard_normal((n, g.h_out, g.w_out, g.kh * g.kw * g.c)).astype(dtype)
    # Same taps summed in the same order: bitwise equal, not just close.
    same(CPU.col2im(cols, g), REF.col2im(cols, g), dtype)


@pytest.mark.parametrize("n_out", [5, 64, 300])  # small-weight (64-row) and 256-row GEMM blocks
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", GEOMETRIES)
def test_conv_forward_is_the_unfused_gemm_bit_for_bit(g, dtype, n_out, rng):
    # (or, where the convolution or the matmul runs the register tiles, or float32 sgemm in
    # per-example blocks because this BLAS's sgemm is position-dependent, the same values in
    # another order: within rounding)
    from fastlift.backends import cpu_ops

    x = rng.standard_normal((23, g.h, g.w, g.c)).astype(dtype)
    kernel = rng.standard_normal((g.kh * g.kw * g.c, n_out)).astype(dtype)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {}
    reordered = (CPU._conv_runs_direct(g, dtype) or CPU._matmul_runs_direct(kernel.shape[0], dtype)
                 or (dtype == np.float32 and not cpu_ops.sgemm_is_deterministic()))
    like = (lambda a, b, dt: close(a, b, dt, **tol)) if reordered else same
    with CPU.compute_context():
        got = CPU.conv_forward(x, kernel, g)
        cols = CPU.im2col(x, g)
        like(got, CPU.matmul(cols.reshape(-1, cols.shape[-1]), kernel), dtype)
        kernel_f = np.asfortranarray(kernel)  # a transposed layout is a different BLAS call, also matched
        like(CPU.conv_forward(x, kernel_f, g), CPU.matmul(cols.reshape(-1, cols.shape[-1]), kernel_f), dtype)
        # batch sizes and thread counts that split the blocks differently
        cells = g.h_out * g.w_out
        for lo, hi in [(0, 1), (3, 10), (22, 23)]:
            same(CpuOps(n_threads=1).conv_forward(x[lo:hi], kernel, g), got[lo * cells:hi * cells], dtype)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {}
    close(got, REF.conv_forward(x, kernel, g), dtype, **tol)
    bias = rng.standard_normal(n_out).astype(dtype)
    with CPU.compute_context():  # the bias, added in the GEMM pass, is the same as added after
        same(CPU.conv_forward(x, kernel, g, bias), got + bias, dtype)
    close(REF.conv_forward(x, kernel, g, bias), got + bias, dtype, **tol)


LONG_GEOMETRIES = [  # examples of >= PER_EXAMPLE_MIN_CELLS output cells
    pytest.param(geometry(1, 200, 8, 1, 5, pl=2, pr=2), id="1d-200-cells"),
    pytest.param(geometry(1, 121, 3, 1, 4, sw=2, dw=2, pl=1, pr=2), id="1d-stride-dil-60-cells"),
    pytest.param(geometry(9, 9, 5, 3, 3, pt=1, pb=1, pl=1, pr=1), id="2d-81-cells"),
]


@pytest.mark.parametrize("g", GEOMETRIES + LONG_GEOMETRIES)
def test_float32_conv_on_a_position_dependent_sgemm(g, rng, monkeypatch):
    """Where sgemm is position-dependent, a float32 convolution runs sgemm in blocks that start
    at each example's first cell (each example's rows are those of the example convolved alone)
    or, for examples of few cells, the float64 kernel on converted rows (the bits of im2col +
    matmul, which goes through dgemm, + bias). Either way rows depend on neither the batch nor
    the threads. Forced here, whatever BLAS runs."""
    from fastlift.backends import _cpu, cpu_ops

    monkeypatch.setattr(cpu_ops, "sgemm_is_deterministic", lambda: False)
    monkeypatch.setattr(cpu_ops, "_ISA", "base")  # the BLAS route, not AVX-512's direct tiles
    flags = []
    real = _cpu.conv_forward
    monkeypatch.setattr(_cpu, "conv_forward", lambda *a: flags.append(a[-1]) or real(*a))
    ops = CpuOps(n_threads=2)
    x = rng.standard_normal((23, g.h, g.w, g.c)).astype(np.float32)
    kernel = rng.standard_normal((g.kh * g.kw * g.c, 64)).astype(np.float32)
    bias = rng.standard_normal(64).astype(np.float32)
    cells = g.h_out * g.w_out
    per_example = cells >= cpu_ops.PER_EXAMPLE_MIN_CELLS
    with ops.compute_context():
        got = ops.conv_forward(x, kernel, g, bias)
        assert got.dtype == np.float32 and flags == [per_example]
        if per_example:
            for e in (0, 7, 22):
                same(CpuOps(n_threads=1).conv_forward(x[e:e + 1], kernel, g, bias), got[e * cells:(e + 1) * cells],
                     np.float32)
        else:
            cols = ops.im2col(x, g)
            same(got, ops.matmul(cols.reshape(-1, cols.shape[-1]), kernel) + bias, np.float32)
        for lo, hi in [(0, 1), (3, 10), (5, 23)]:
            same(CpuOps(n_threads=1).conv_forward(x[lo:hi], kernel, g, bias), got[lo * cells:hi * cells], np.float32)
    want = REF.conv_forward(x.astype(np.float64), kernel.astype(np.float64), g, bias.astype(np.float64))
    close(got, want.astype(np.float32), np.float32, rtol=1e-4, atol=1e-4)  # float32 sums of k terms




def direct_kernel(kernel, dtype):
    """conv_direct's packed kernel, written out independently of CpuOps._direct_kernel."""
    lanes = _cpu.VECTOR_BYTES // np.dtype(dtype).itemsize
    width, n = _cpu.VECTOR_BLOCK * lanes, kernel.shape[1]
    c_pad = -(-n // lanes) * lanes
    blocks = []
    for c0 in range(0, c_pad, width):
        block = np.zeros((kernel.shape[0], min(width, c_pad - c0)), dtype)
        block[:, :max(0, min(n - c0, block.shape[1]))] = kernel[:, c0:c0 + block.shape[1]]
        blocks.append(block.ravel())
    return np.concatenate(blocks), c_pad


@pytest.mark.parametrize("n_out", [5, 64, 70, 200])  # narrow, one block, a 6-wide tail, 3 blocks + tail
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", GEOMETRIES + [
    pytest.param(geometry(1, 40, 33, 1, 5, dw=3, pl=6, pr=6), id="1d-same-dilated-c33"),
    pytest.param(geometry(5, 13, 20, 3, 3, sh=2, sw=2, pt=1, pb=1, pl=1, pr=1), id="2d-strided-c20")])
def test_conv_direct_is_the_convolution(g, dtype, n_out, rng):
    x = rng.standard_normal((9, g.h, g.w, g.c)).astype(dtype)
    kernel = rng.standard_normal((g.kh * g.kw * g.c, n_out)).astype(dtype)
    bias = rng.standard_normal(n_out).astype(dtype)
    wp, c_pad = direct_kernel(kernel, dtype)
    bias_pad = np.zeros(c_pad, dtype)
    bias_pad[:n_out] = bias
    got = _cpu.conv_direct(x, wp, g, n_out, 2, bias_pad)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {}
    close(got, REF.conv_forward(x, kernel, g, bias), dtype, **tol)
    cells = g.h_out * g.w_out
    for lo, hi in [(0, 1), (4, 9)]:  # rows depend on neither the batch nor the threads
        same(_cpu.conv_direct(x[lo:hi], wp, g, n_out, 1, bias_pad), got[lo * cells:hi * cells], dtype)
    same(_cpu.conv_direct(x, wp, g, n_out, 1) + bias, got, dtype)  # the bias is added after the sum
    addend = rng.standard_normal(got.shape).astype(dtype)  # and an addend after the bias
    same(_cpu.conv_direct(x, wp, g, n_out, 2, bias_pad, "auto", addend), got + addend, dtype)
    z, h = _cpu.conv_direct(x, wp, g, n_out, 2, bias_pad, "auto", None, addend)  # a residual block's store
    same(z, got, dtype)
    same(h, REF.add_activation(Act.RELU, got, np.zeros(1, dtype), addend), dtype)
    z_in = rng.standard_normal(got.shape).astype(dtype)  # a ReLU's gradient in the store
    a, masked = _cpu.conv_direct(x, wp, g, n_out, 2, bias_pad, "auto", addend, None, z_in)
    same(a, got + addend, dtype)
    rows = np.arange(len(a), dtype=np.int64)
    same(masked, REF.gradient_backward(Act.RELU, a, z_in, rows, np.zeros(1, dtype)), dtype)
    for add in (None, addend):  # a ReLU kept beside the convolution, with and without an addend
        z, r = _cpu.conv_direct(x, wp, g, n_out, 2, bias_pad, "auto", add, None, None, True)
        same(z, got if add is None else got + add, dtype)
        same(r, REF.activation_forward(Act.RELU, z, np.zeros(1, dtype)), dtype)
    for isa in ("base", "avx2", "avx512"):
        close(_cpu.conv_direct(x, wp, g, n_out, 1, bias_pad, isa), got, dtype, **tol)
    if (CPU._conv_runs_direct(g, dtype) and not CPU._conv_runs_winograd(g)
            and n_out > NARROW_MAX_CHANNELS):  # CpuOps packs the same way
        with CPU.compute_context():
            same(CPU.conv_forward(x, kernel, g, bias), got, dtype)


@pytest.mark.parametrize("n_out", [1, 2, 4])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", [
    pytest.param(geometry(1, 120, 64, 1, 75), id="profile-head"),  # BPNet's: 64 -> 1 over 75 taps
    pytest.param(geometry(1, 40, 37, 1, 5, dw=3, pl=6, pr=6), id="dilated-same-c37"),  # a scalar tail
    pytest.param(geometry(5, 13, 20, 3, 3, sh=2, sw=2, pt=1, pb=1, pl=1, pr=1), id="2d-strided-c20"),
    pytest.param(geometry(1, 9, 3, 1, 3, pl=1, pr=1), id="three-channels")])  # no whole vector
def test_conv_narrow_is_the_convolution(g, dtype, n_out, rng):
    x = rng.standard_normal((7, g.h, g.w, g.c)).astype(dtype)
    kernel = rng.standard_normal((g.kh * g.kw * g.c, n_out)).astype(dtype)
    bias = rng.standard_normal(n_out).astype(dtype)
    kt = np.ascontiguousarray(kernel.T)
    got = _cpu.conv_narrow(x, kt, g, 2, bias)
    # sums of up to 4800 terms of ~1: float64 rounding reaches ~1e-13 where they cancel
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-11}
    close(got, REF.conv_forward(x, kernel, g, bias), dtype, **tol)
    cells = g.h_out * g.w_out
    for lo, hi in [(0, 1), (3, 7)]:  # rows depend on neither the batch nor the threads
        same(_cpu.conv_narrow(x[lo:hi], kt, g, 1, bias), got[lo * cells:hi * cells], dtype)
    same(_cpu.conv_narrow(x, kt, g, 1) + bias, got, dtype)  # the bias is added after the sum
    addend = rng.standard_normal(got.shape).astype(dtype)  # and an addend after the bias
    same(_cpu.conv_narrow(x, kt, g, 2, bias, "auto", addend), got + addend, dtype)
    for isa in ("base", "avx2", "avx512"):
        close(_cpu.conv_narrow(x, kt, g, 1, bias, isa), got, dtype, **tol)
    if CPU._conv_runs_direct(g, dtype) and n_out <= NARROW_MAX_CHANNELS:  # CpuOps runs it here
        with CPU.compute_context():
            same(CPU.conv_forward(x, kernel, g, bias), got, dtype)


@pytest.mark.parametrize("n_out", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_narrow_span_tiles_give_the_tap_tiles_bits(dtype, n_out, rng):
    """Blocks of cells whose taps are all inside the input (dilation 1, whole pairs of vectors of
    channels) read each kernel row as one run, two output channels at a time: the same sums in the
    same order as the tap-by-tap tiles of blocks that reach into the padding."""
    valid = geometry(1, 40, 32, 1, 7)  # blocks of 4 cells inside: run tiles, the last 2 cells: tap tiles
    padded = geometry(1, 40, 32, 1, 7, pl=2, pr=2)  # its cell j is valid's j - 2; the edge blocks: tap tiles
    x = rng.standard_normal((5, 1, 40, 32)).astype(dtype)
    kt = rng.standard_normal((n_out, 7 * 32)).astype(dtype)
    for isa in ("base", "auto"):
        a = _cpu.conv_narrow(x, kt, valid, 1, None, isa).reshape(5, valid.w_out, n_out)
        b = _cpu.conv_narrow(x, kt, padded, 2, None, isa).reshape(5, padded.w_out, n_out)
        same(b[:, 2:2 + valid.w_out], a, dtype)


def test_conv_narrow_rejects_bad_arguments(rng):
    g = geometry(1, 12, 16, 1, 3)
    x = rng.standard_normal((2, 1, 12, 16)).astype(np.float32)
    kt = rng.standard_normal((2, 48)).astype(np.float32)
    with pytest.raises(ValueError, match=r"kt.shape\[1\] \(kh\*kw\*c\)"):
        _cpu.conv_narrow(x, np.ascontiguousarray(kt[:, :-1]), g)
    with pytest.raises(ValueError, match=r"c_out\) must be >= 1"):
        _cpu.conv_narrow(x, kt[:0], g)
    with pytest.raises(ValueError, match=r"len\(bias\)"):
        _cpu.conv_narrow(x, kt, g, 1, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"addend.shape\[1\]"):
        _cpu.conv_narrow(x, kt, g, 1, None, "auto", np.zeros((20, 3), np.float32))
    with pytest.raises(ValueError, match=r"isa must be one of"):
        _cpu.conv_narrow(x, kt, g, 1, None, "sse9")


# conv_winograd3's transformed kernels: the weights of the taps (g0, g1, g2) in each G_i, written out
# independently of CpuOps (F(4,3): interpolation points 0, 1, -1, 2, -1/2 and infinity).
WINOGRAD_G = {2: [(1, 0, 0), (1 / 2, 1 / 2, 1 / 2), (1 / 2, -1 / 2, 1 / 2), (0, 0, 1)],
              4: [(1, 0, 0), (-1 / 3, -1 / 3, -1 / 3), (1 / 3, -1 / 3, 1 / 3), (1 / 15, 2 / 15, 4 / 15),
                  (-16 / 15, 8 / 15, -4 / 15), (0, 0, 1)]}


def winograd_kernel(kernel, dtype, m=2):
    """conv_winograd3's m + 2 packed kernels (computed in float64, rounded once), written out
    independently of CpuOps._winograd_kernel."""
    taps = np.split(np.asarray(kernel, np.float64), 3)
    combos = [sum(w * t for w, t in zip(row, taps) if w).astype(dtype) for row in WINOGRAD_G[m]]
    return np.concatenate([direct_kernel(np.ascontiguousarray(k), dtype)[0] for k in combos])


def test_winograd_transforms_are_the_convolution():
    # out[j + k*d] = sum_t g_t x[j + (k + t)*d]: the written-out kernels with the kernel's own
    # input and output transforms, on one channel in float64, for every tap and input position
    g = geometry(1, 6, 1, 1, 3)
    for m in (2, 4):
        for t in range(3):
            kernel = np.zeros((3, 1))
            kernel[t] = 1
            wg = winograd_kernel(kernel, np.float64, m)
            x = np.arange(1.0, 7.0).reshape(1, 1, 6, 1) ** 2
            got = _cpu.conv_winograd3(x, wg, g, 1, 1, m=m)
            np.testing.assert_allclose(got.ravel(), x.ravel()[t:t + 4], rtol=1e-14)


WINOGRAD_GEOMETRIES = [
    pytest.param(geometry(1, 40, 16, 1, 3), id="valid-d1"),
    pytest.param(geometry(1, 41, 20, 1, 3, dw=2, pl=2, pr=2), id="same-d2-odd"),
    pytest.param(geometry(1, 50, 16, 1, 3, dw=4, pl=8, pr=8), id="adjoint-d4"),  # padded by twice the dilation
    pytest.param(geometry(1, 37, 33, 1, 3, dw=5), id="valid-d5-tail"),  # 27 cells: periods of 10 and a tail
    pytest.param(geometry(1, 12, 16, 1, 3, dw=5), id="valid-d5-short"),  # 2 cells: no second cell of a tile
    pytest.param(geometry(1, 3, 17, 1, 3, dw=1, pl=1), id="one-sided-pad"),
    pytest.param(geometry(1, 400, 16, 1, 3, dw=3, pl=1, pr=5), id="blocks-of-tiles")]  # > 96 tiles a row


@pytest.mark.parametrize("m", [2, 4])
# AVX2's products (winograd_products_ymm) where n_out fills whole vectors, in one block of packed
# columns or several: float32 16 (2 vectors), 48 (4 + 2), 64 (4 + 4); float64 16 (4), 24 (4 + 2),
# 48 and 64 (two blocks). 1, 5, 70 (and float32 24): conv_direct's tiles.
@pytest.mark.parametrize("n_out", [1, 5, 16, 24, 48, 64, 70])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", WINOGRAD_GEOMETRIES)
def test_conv_winograd3_is_the_convolution(g, dtype, n_out, m, rng):
    x = rng.standard_normal((7, g.h, g.w, g.c)).astype(dtype)
    kernel = rng.standard_normal((3 * g.c, n_out)).astype(dtype)
    bias = rng.standard_normal(n_out).astype(dtype)
    wg = winograd_kernel(kernel, dtype, m)
    c_pad = len(wg) // ((m + 2) * g.c)
    bias_pad = np.zeros(c_pad, dtype)
    bias_pad[:n_out] = bias
    run = functools.partial(_cpu.conv_winograd3, m=m)
    got = run(x, wg, g, n_out, 2, bias_pad)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {}
    close(got, REF.conv_forward(x, kernel, g, bias), dtype, **tol)
    cells = g.h_out * g.w_out
    for lo, hi in [(0, 1), (3, 7)]:  # rows depend on neither the batch nor the threads
        same(run(x[lo:hi], wg, g, n_out, 1, bias_pad), got[lo * cells:hi * cells], dtype)
    same(run(x, wg, g, n_out, 3, bias_pad), got, dtype)
    same(run(x, wg, g, n_out, 1) + bias, got, dtype)  # the bias is added after the sum
    addend = rng.standard_normal(got.shape).astype(dtype)  # and an addend after the bias
    same(run(x, wg, g, n_out, 2, bias_pad, "auto", addend), got + addend, dtype)
    z, h = run(x, wg, g, n_out, 2, bias_pad, "auto", None, addend)  # a residual block's store
    same(z, got, dtype)
    same(h, REF.add_activation(Act.RELU, got, np.zeros(1, dtype), addend), dtype)
    z_in = rng.standard_normal(got.shape).astype(dtype)  # a ReLU's gradient in the store
    a, masked = run(x, wg, g, n_out, 2, bias_pad, "auto", addend, None, z_in)
    same(a, got + addend, dtype)
    z, r = run(x, wg, g, n_out, 2, bias_pad, "auto", None, None, None, True)  # a ReLU kept
    same(z, got, dtype)
    same(r, REF.activation_forward(Act.RELU, z, np.zeros(1, dtype)), dtype)
    same(masked, REF.gradient_backward(Act.RELU, a, z_in, np.arange(len(a), dtype=np.int64), np.zeros(1, dtype)),
         dtype)
    for isa in ("base", "avx2", "avx512"):
        close(run(x, wg, g, n_out, 1, bias_pad, isa), got, dtype, **tol)
    if (CPU._conv_runs_direct(g, dtype) and CPU._conv_runs_winograd(g) and n_out > NARROW_MAX_CHANNELS
            and CPU._winograd_outputs(g) == m):
        with CPU.compute_context():
            same(CPU.conv_forward(x, kernel, g, bias), got, dtype)


def test_winograd_f43_keeps_float32_close_to_exact(rng):
    # BPNet-like rows (ReLU outputs, 64 channels): F(4,3)'s transforms amplify rounding by less than
    # 4x F(2,3)'s (measured 8e-7 vs 4e-7 of the largest output; a worse set of points gives more)
    g = geometry(1, 600, 64, 1, 3, dw=4)
    x = np.maximum(rng.standard_normal((4, 1, 600, 64)), 0).astype(np.float32)
    kernel = (rng.standard_normal((192, 64)) / 14).astype(np.float32)
    exact = REF.conv_forward(x.astype(np.float64), kernel.astype(np.float64), g, None)
    scale = np.abs(exact).max()
    for m, bound in ((2, 1e-6), (4, 2e-6)):
        got = _cpu.conv_winograd3(x, winograd_kernel(kernel, np.float32, m), g, 64, 2, m=m)
        assert np.abs(got - exact).max() / scale < bound


def test_winograd_takes_four_cells_a_tile_unless_the_last_period_is_mostly_past_the_end():
    assert CpuOps._winograd_outputs(geometry(1, 2094, 64, 1, 3, dw=2)) == 4  # BPNet's layers
    assert CpuOps._winograd_outputs(geometry(1, 1586, 64, 1, 3, dw=256)) == 4
    assert CpuOps._winograd_outputs(geometry(1, 1842, 64, 1, 3, dw=128, pl=256, pr=256)) == 4
    # 27 cells, d = 5: F(4,3) 10 tiles (60 products), F(2,3) 15 (60): no saving
    assert CpuOps._winograd_outputs(geometry(1, 37, 33, 1, 3, dw=5)) == 2
    assert CpuOps._winograd_outputs(geometry(1, 12, 16, 1, 3, dw=5)) == 2  # 2 cells


def test_winograd_is_left_to_the_direct_tiles_where_padding_is_wide():
    # the adjoint of a valid layer of dilation 256 over 900 cells: 36% of its output cells' taps
    # read padding, which the direct tiles skip; BPNet's last (1074 cells, 32%) stays on Winograd
    assert not CpuOps._conv_runs_winograd(geometry(1, 900, 64, 1, 3, dw=256, pl=512, pr=512))  # 1412 cells
    assert CpuOps._conv_runs_winograd(geometry(1, 1074, 64, 1, 3, dw=256, pl=512, pr=512))  # 1586 cells
    assert CpuOps._conv_runs_winograd(geometry(1, 1842, 64, 1, 3, dw=128, pl=256, pr=256))
    assert CpuOps._conv_runs_winograd(geometry(1, 1074, 64, 1, 3, dw=256))  # no padding: nothing to skip
    assert not CpuOps._conv_runs_winograd(geometry(1, 50, 64, 1, 3, sw=2))
    assert not CpuOps._conv_runs_winograd(geometry(1, 50, 64, 1, 5))
    assert not CpuOps._conv_runs_winograd(geometry(3, 50, 64, 1, 3))


def test_conv_winograd3_rejects_bad_arguments(rng):
    g = geometry(1, 12, 16, 1, 3)
    x = rng.standard_normal((2, 1, 12, 16)).astype(np.float32)
    wg = winograd_kernel(rng.standard_normal((48, 5)).astype(np.float32), np.float32)
    with pytest.raises(ValueError, match=r"len\(wg\) \(4 \* c \* c_out padded\)"):
        _cpu.conv_winograd3(x, wg[:-1], g, 5)
    with pytest.raises(ValueError, match=r"len\(wg\) \(6 \* c \* c_out padded\)"):
        _cpu.conv_winograd3(x, wg, g, 5, m=4)  # F(4,3) reads six kernels
    with pytest.raises(ValueError, match=r"m \(output cells per Winograd tile\) must be 2 or 4; got 3"):
        _cpu.conv_winograd3(x, wg, g, 5, m=3)
    with pytest.raises(ValueError, match=r"needs a 1-D geometry of 3 taps and stride 1.*kw=5"):
        _cpu.conv_winograd3(x, wg, geometry(1, 12, 16, 1, 5), 5)
    with pytest.raises(ValueError, match=r"sw=2"):
        _cpu.conv_winograd3(x, wg, geometry(1, 12, 16, 1, 3, sw=2), 5)
    with pytest.raises(ValueError, match=r"h=2"):
        _cpu.conv_winograd3(np.zeros((2, 2, 12, 16), np.float32), wg, geometry(2, 12, 16, 1, 3), 5)
    with pytest.raises(ValueError, match=r"c_out must be >= 1"):
        _cpu.conv_winograd3(x, wg, g, 0)
    with pytest.raises(ValueError, match=r"give at most one of residual, relu_grad_of and relu"):
        y = np.zeros((20, 5), np.float32)
        _cpu.conv_winograd3(x, wg, g, 5, 1, None, "auto", None, y, y)


def rescale_inputs(rng, n, n_features, act, dtype):
    """`_cpu.rescale_backward`'s arguments after m for n pairs of 2 example and 3 reference rows,
    some features with x = ref (the rule's f'(ref) case) and some with Δ below NEAR_ZERO."""
    x_in = rng.standard_normal((2, n_features)).astype(dtype)
    r_in = rng.standard_normal((3, n_features)).astype(dtype)
    r_in[0, ::7] = x_in[0, ::7]
    r_in[1, ::5] = x_in[1, ::5] + dtype(NEAR_ZERO / 4)
    alpha = np.full(n_features, 0.7, dtype)
    x_out, r_out = (REF.activation_forward(act, a, alpha) for a in (x_in, r_in))
    pair_x, pair_r = rng.integers(0, 2, n).astype(np.int64), rng.integers(0, 3, n).astype(np.int64)
    return (int(act), x_in, r_in, x_out, r_out, pair_x, pair_r, alpha)


@pytest.mark.parametrize("act", [Act.RELU, Act.ELU])  # ELU's rule reads f(x), f(ref)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path, g", [
    pytest.param("winograd", geometry(1, 60, 16, 1, 3, dw=2, pl=4, pr=4), id="winograd-adjoint-d2"),
    pytest.param("winograd", geometry(1, 400, 16, 1, 3, dw=3, pl=6, pr=6), id="winograd-blocks-of-tiles"),
    pytest.param("direct", geometry(1, 41, 16, 1, 5, dw=2, pl=8, pr=8), id="direct-5-taps")])
def test_tiles_rescale_each_row_first_with_the_bits_of_the_two_ops(path, g, dtype, act, rng):
    """``rescale``: each input row through the Rescale rule into the thread's scratch, then the
    convolution: the bits of `rescale_backward` followed by the convolution, for any threads,
    with a crop's addend window or a full addend or none."""
    n, n_out = 7, 24
    m = rng.standard_normal((n, g.h, g.w, g.c)).astype(dtype)
    kernel = rng.standard_normal((3 * g.c if path == "winograd" else g.kw * g.c, n_out)).astype(dtype)
    args = rescale_inputs(rng, n, g.h * g.w * g.c, act, dtype)
    m_in = _cpu.rescale_backward(args[0], m.reshape(n, -1), *args[1:]).reshape(m.shape)
    if path == "winograd":
        run = functools.partial(_cpu.conv_winograd3, x=None, wg=winograd_kernel(kernel, dtype, 4), g=g, c_out=n_out,
                                m=4)
    else:
        run = functools.partial(_cpu.conv_direct, x=None, wp=direct_kernel(kernel, dtype)[0], g=g, c_out=n_out)
    lo, w_a = 3, g.w_out - 7
    windows = [None, (rng.standard_normal((n, w_a * n_out)).astype(dtype), lo),
               (rng.standard_normal((n * g.w_out, n_out)).astype(dtype), -1)]
    for window in windows:
        addend, addend_lo = window if window is not None else (None, -1)
        want = run(x=m_in, n_threads=2, addend=addend, addend_lo=addend_lo)
        for threads in (1, 3):
            same(run(x=m, n_threads=threads, addend=addend, addend_lo=addend_lo, rescale=args), want, dtype)


def test_tiles_rescale_rejects_bad_arguments(rng):
    g = geometry(1, 30, 16, 1, 3, dw=2, pl=4, pr=4)
    m = rng.standard_normal((4, 1, 30, 16)).astype(np.float32)
    wg = winograd_kernel(rng.standard_normal((48, 16)).astype(np.float32), np.float32, 4)
    args = rescale_inputs(rng, 4, 30 * 16, Act.RELU, np.float32)
    run = functools.partial(_cpu.conv_winograd3, m, wg, g, 16, 1, m=4)
    with pytest.raises(ValueError, match=r"rescale must be \(act, x_in, .*\); got 7 items"):
        run(rescale=args[:-1])
    with pytest.raises(ValueError, match=r"rescale r_in.shape\[1\] \(h\*w\*c of x\)"):
        run(rescale=args[:2] + (np.ascontiguousarray(args[2][:, :-16]),) + args[3:])
    with pytest.raises(ValueError, match=r"rescale pair_r"):
        run(rescale=args[:6] + (np.array([0, 1, 2, 3], np.int64),) + args[7:])
    with pytest.raises(ValueError, match=r"rescale pair_x"):
        run(rescale=args[:5] + (np.zeros(3, np.int64),) + args[6:])
    with pytest.raises(ValueError, match=r"act"):
        run(rescale=(99,) + args[1:])
    g2 = geometry(2, 5, 3, 1, 3)  # two rows per example: the scratch holds one 1-D row
    x2 = rng.standard_normal((1, 2, 5, 3)).astype(np.float32)
    wp = direct_kernel(rng.standard_normal((9, 16)).astype(np.float32), np.float32)[0]
    with pytest.raises(ValueError, match=r"rescale needs a 1-D layer \(h = h_out = 1\); got h=2, h_out=2"):
        _cpu.conv_direct(x2, wp, g2, 16, 1, rescale=rescale_inputs(rng, 1, 30, Act.RELU, np.float32))


def onehot_rows(rng, n, g, dtype, n_cells=None):
    """n one-hot rows (n, h, w, c); about a tenth of the cells all zero (N in DNA)."""
    hot = rng.integers(0, g.c, (n, g.h, g.w))
    x = np.eye(g.c, dtype=dtype)[hot]
    x[rng.random((n, g.h, g.w)) < 0.1] = 0
    return x


def test_onehot_cells_finds_the_hot_channel_and_rejects_other_rows(rng):
    g = geometry(1, 12, 4, 1, 3)
    x = onehot_rows(rng, 5, g, np.float32)
    x[1, 0, 3] = [0, 0.5, 0, 0]   # not 0/1
    x[2, 0, 5] = [1, 0, 1, 0]     # two hot channels
    x[3, 0, 7] = [0, 2, 0, 0]     # a 2
    for dtype in DTYPES:
        hot, ok = _cpu.onehot_cells(x.astype(dtype), 2)
        assert hot.dtype == np.int32 and hot.shape == (5, 1, 12)
        assert ok.tolist() == [True, False, False, False, True]
        for n in (0, 4):
            want = np.where(x[n].any(axis=-1), x[n].argmax(axis=-1), -1)
            np.testing.assert_array_equal(hot[n], want)
    hot, ok = _cpu.onehot_cells(x[:0], 1)
    assert hot.shape == (0, 1, 12) and ok.shape == (0,)


@pytest.mark.parametrize("n_out", [5, 64, 70, 300])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", [
    pytest.param(geometry(1, 40, 4, 1, 19), id="dna-valid-19"),
    pytest.param(geometry(1, 40, 4, 1, 5, dw=2, pl=4, pr=4), id="dna-same-dilated"),
    pytest.param(geometry(1, 41, 20, 1, 3, sw=2, pl=1, pr=1), id="protein-strided"),
    pytest.param(geometry(6, 7, 3, 3, 3, pt=1, pb=1, pl=1, pr=1), id="2d")])
def test_conv_forward_of_onehot_rows_gathers_kernel_rows(g, dtype, n_out, rng):
    x = onehot_rows(rng, 7, g, dtype)
    x[2] = rng.standard_normal(x[2].shape)  # a row that is not one-hot takes the other paths
    kernel = rng.standard_normal((g.kh * g.kw * g.c, n_out)).astype(dtype)
    bias = rng.standard_normal(n_out).astype(dtype)
    with CPU.compute_context():
        got = CPU.conv_forward(x, kernel, g, bias)
        tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {}
        close(got, REF.conv_forward(x, kernel, g, bias), dtype, **tol)
        cells = g.h_out * g.w_out
        for n in range(len(x)):  # each row alone: the same path, the same bits
            same(CpuOps(n_threads=1).conv_forward(x[n:n + 1], kernel, g, bias), got[n * cells:(n + 1) * cells], dtype)
    hot, ok = _cpu.onehot_cells(x, 1)
    assert ok.tolist() == [True, True, False, True, True, True, True]
    _, c_pad = direct_kernel(kernel, dtype)
    padded = np.zeros((kernel.shape[0], c_pad), dtype)  # lane padding, written out independently
    padded[:, :n_out] = kernel
    bias_pad = np.zeros(c_pad, dtype)
    bias_pad[:n_out] = bias
    rows = _cpu.conv_forward_onehot(hot[ok], padded, g, n_out, 2, bias_pad)
    for isa in ("base", "avx2", "avx512"):  # adds only: every variant gives the same bits
        same(_cpu.conv_forward_onehot(hot[ok], padded, g, n_out, 1, bias_pad, isa), rows, dtype)
    same(_cpu.conv_forward_onehot(hot[ok], padded, g, n_out, 1) + bias, rows, dtype)  # the bias is added last
    # in float64, the tap-order sum of kernel rows is the convolution up to rounding
    want = REF.conv_forward(x[ok].astype(np.float64), kernel.astype(np.float64), g, bias.astype(np.float64))
    close(rows.astype(np.float64), want, np.float64, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_conv_onehot_rejects_bad_arguments():
    g = geometry(1, 9, 4, 1, 3)
    hot = np.zeros((2, 1, 9), np.int32)
    kernel = np.zeros((12, 16), np.float32)
    with pytest.raises(ValueError, match=r"hot must have shape \(n, 1, 9\); got \(2, 1, 8\)"):
        _cpu.conv_forward_onehot(np.zeros((2, 1, 8), np.int32), kernel, g, 5)
    with pytest.raises(ValueError, match=r"kernel.shape\[0\] \(kh\*kw\*c\) must be 12; got 11"):
        _cpu.conv_forward_onehot(hot, kernel[:11], g, 5)
    with pytest.raises(ValueError, match=r"kernel.shape\[1\] \(c_out padded\) must be 16; got 8"):
        _cpu.conv_forward_onehot(hot, np.zeros((12, 8), np.float32), g, 5)
    with pytest.raises(ValueError, match="c_out must be >= 1; got 0"):
        _cpu.conv_forward_onehot(hot, kernel, g, 0)
    with pytest.raises(ValueError, match=r"len\(bias\) \(c_out padded\) must be 16; got 5"):
        _cpu.conv_forward_onehot(hot, kernel, g, 5, 1, np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="isa must be one of"):
        _cpu.conv_forward_onehot(hot, kernel, g, 5, 1, None, "sse9")
    for bad in (4, -2):  # a channel outside [-1, c) would read outside the kernel
        hot[1, 0, 3] = bad
        with pytest.raises(ValueError, match=rf"hot channels must be in \[-1, 4\); got {bad}"):
            _cpu.conv_forward_onehot(hot, kernel, g, 5)


def test_conv_direct_rejects_bad_arguments(rng):
    g = geometry(1, 9, 3, 1, 4)
    x = np.zeros((2, 1, 9, 3), np.float32)
    wp = np.zeros(12 * 16, np.float32)
    with pytest.raises(ValueError, match=r"len\(wp\) \(kh\*kw\*c \* c_out padded\) must be 192; got 191"):
        _cpu.conv_direct(x, wp[:-1], g, 5)
    with pytest.raises(ValueError, match=r"len\(bias\) \(c_out padded\) must be 16; got 5"):
        _cpu.conv_direct(x, wp, g, 5, 1, np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="c_out must be >= 1; got 0"):
        _cpu.conv_direct(x, wp, g, 0)
    with pytest.raises(ValueError, match="x must have shape"):
        _cpu.conv_direct(np.zeros((2, 1, 8, 3), np.float32), wp, g, 5)
    with pytest.raises(ValueError, match="isa must be one of"):
        _cpu.conv_direct(x, wp, g, 5, 1, None, "mmx")
    with pytest.raises(ValueError, match=r"addend.shape\[0\] \(n\*h_out\*w_out\) must be 12; got 11"):
        _cpu.conv_direct(x, wp, g, 5, 1, None, "auto", np.zeros((11, 5), np.float32))
    with pytest.raises(ValueError, match=r"addend.shape\[1\] \(c_out\) must be 5; got 4"):
        _cpu.conv_direct(x, wp, g, 5, 1, None, "auto", np.zeros((12, 4), np.float32))
    with pytest.raises(ValueError, match=r"residual.shape\[0\] \(n\*h_out\*w_out\) must be 12; got 13"):
        _cpu.conv_direct(x, wp, g, 5, 1, None, "auto", None, np.zeros((13, 5), np.float32))
    with pytest.raises(ValueError, match=r"residual.shape\[1\] \(c_out\) must be 5; got 6"):
        _cpu.conv_direct(x, wp, g, 5, 1, None, "auto", None, np.zeros((12, 6), np.float32))
    with pytest.raises(ValueError, match=r"relu_grad_of.shape\[0\] \(n\*h_out\*w_out\) must be 12; got 2"):
        _cpu.conv_direct(x, wp, g, 5, 1, None, "auto", None, None, np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="give at most one of residual, relu_grad_of and relu"):
        _cpu.conv_direct(x, wp, g, 5, 1, None, "auto", None, np.zeros((12, 5), np.float32),
                         np.zeros((12, 5), np.float32))


@pytest.mark.parametrize("n_out", [2, 5, 64])  # 2 < c_in: the flipped path for narrow layers too
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", GEOMETRIES + [  # >= FLIPPED_MIN_CHANNELS, stride 1: the flipped path
    pytest.param(geometry(1, 30, 40, 1, 3, dw=4, pl=4, pr=4), id="1d-same-dilated-c40"),
    pytest.param(geometry(1, 30, 33, 1, 5, pl=4), id="1d-causal-c33"),
    pytest.param(geometry(1, 12, 48, 1, 7), id="1d-valid-c48"),
    pytest.param(geometry(1, 40, 4, 1, 21), id="one-hot-first-layer")])  # 64 outputs: conv_narrow
def test_conv_adjoint_is_the_transpose(g, dtype, n_out, rng):
    # stride 1 runs as a convolution with the flipped kernel, strided ones as GEMM + col2im
    m = rng.standard_normal((9, g.h_out, g.w_out, n_out)).astype(dtype)
    x = rng.standard_normal((9, g.h, g.w, g.c)).astype(dtype)
    kernel = rng.standard_normal((g.kh * g.kw * g.c, n_out)).astype(dtype)
    with CPU.compute_context():
        got = CPU.conv_adjoint(m, kernel, g)
        assert got.shape == (9, g.h, g.w, g.c) and got.dtype == np.dtype(dtype)
        tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {}
        close(got, REF.conv_adjoint(m, kernel, g), dtype, **tol)
        # <conv(x), m> == <x, conv_adjoint(m)>
        lhs = float((CPU.conv_forward(x, kernel, g).astype(np.float64) * m.reshape(-1, n_out)).sum())
        rhs = float((x.astype(np.float64) * got).sum())
        assert lhs == pytest.approx(rhs, rel=1e-4 if dtype == np.float32 else 1e-10)
        for lo, hi in [(0, 1), (2, 9)]:  # rows do not depend on the batch or the threads
            same(CpuOps(n_threads=1).conv_adjoint(m[lo:hi], kernel, g), got[lo:hi], dtype)
        ro = kernel.view()
        ro.flags.writeable = False  # weights are read-only: the flipped kernel is cached
        ops = CpuOps(n_threads=2)
        same(ops.conv_adjoint(m, ro, g), got, dtype)
        same(ops.conv_adjoint(m, ro, g), got, dtype)


#: The fused residual ops' geometries: one in the direct tiles' store, two where the ops compose.
RESIDUAL_GEOMETRIES = [
    pytest.param(geometry(1, 50, 64, 1, 3, dw=4, pl=4, pr=4), id="residual-64"),
    pytest.param(geometry(1, 30, 4, 1, 5, pl=2, pr=2), id="one-hot-channels"),
    pytest.param(geometry(1, 60, 64, 1, 9, pl=4, pr=4), id="skips-zeros")]


@pytest.fixture(params=["avx512", "avx2", "base"])
def vector_isa(request, monkeypatch):
    """CpuOps' vector ISA: the direct tiles (AVX-512 or AVX2, where the CPU has it: else the best
    it has), or the BLAS paths of CPUs without either ("base")."""
    from fastlift.backends import cpu_ops

    monkeypatch.setattr(cpu_ops, "_ISA", _cpu.isa(request.param))
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", [
    pytest.param(geometry(1, 50, 64, 1, 3, dw=4, pl=4, pr=4), id="residual-64"),  # flipped, direct
    pytest.param(geometry(1, 60, 64, 1, 9), id="sparse-path"),
    pytest.param(geometry(1, 30, 4, 1, 5), id="one-hot-gemm-col2im"),
    pytest.param(geometry(1, 31, 20, 1, 3, sw=2), id="strided")])
def test_conv_adjoint_adds_the_addend_as_add_would(g, dtype, vector_isa, rng):
    """Multipliers meeting at a node are summed inside the adjoint where it can: the same bits
    as `add(addend, conv_adjoint(...))` on every path, on the CPU and in the oracle."""
    n_out = 16
    m = rng.standard_normal((6, g.h_out, g.w_out, n_out)).astype(dtype)
    m[::2] *= rng.random(m[::2].shape) < 0.1  # some pairs mostly zero: the sparse path where it applies
    kernel = rng.standard_normal((g.kh * g.kw * g.c, n_out)).astype(dtype)
    addend = rng.standard_normal((6, g.h, g.w, g.c)).astype(dtype)
    for ops in (CPU, REF):
        with ops.compute_context():
            same(ops.conv_adjoint(m, kernel, g, addend), ops.add(addend, ops.conv_adjoint(m, kernel, g)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", RESIDUAL_GEOMETRIES)
def test_conv_adjoint_relu_is_the_adjoint_then_the_gradient_rule(g, dtype, vector_isa, rng):
    m = rng.standard_normal((5, g.h_out, g.w_out, g.c)).astype(dtype)
    kernel = rng.standard_normal((g.kh * g.kw * g.c, g.c)).astype(dtype)
    addend = rng.standard_normal((5, g.h, g.w, g.c)).astype(dtype)
    z = rng.standard_normal((5, g.h, g.w, g.c)).astype(dtype)
    rows = np.arange(5, dtype=np.int64)
    for ops in (CPU, REF):
        with ops.compute_context():
            a, masked = ops.conv_adjoint_relu(m, kernel, g, addend, z)
            same(a, ops.conv_adjoint(m, kernel, g, addend), dtype)
            want = ops.gradient_backward(Act.RELU, a.reshape(5, -1), z.reshape(5, -1), rows, np.zeros(1, dtype))
            same(masked, want.reshape(a.shape), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", RESIDUAL_GEOMETRIES)
def test_conv_residual_relu_is_conv_then_add_activation(g, dtype, vector_isa, rng):
    x = rng.standard_normal((5, g.h, g.w, g.c)).astype(dtype)
    kernel = rng.standard_normal((g.kh * g.kw * g.c, g.c)).astype(dtype)
    bias = rng.standard_normal(g.c).astype(dtype)
    residual = rng.standard_normal((5 * g.h_out * g.w_out, g.c)).astype(dtype)
    zero = np.zeros(1, dtype)
    for ops in (CPU, REF):
        with ops.compute_context():
            z, h = ops.conv_residual_relu(x, kernel, g, bias, residual)
            same(z, ops.conv_forward(x, kernel, g, bias), dtype)
            same(h, ops.add_activation(Act.RELU, z, zero, residual), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", [
    pytest.param(geometry(1, 50, 64, 1, 3, dw=4), id="winograd-valid"),
    pytest.param(geometry(1, 50, 64, 1, 5, dw=2), id="direct-valid")])
def test_conv_residual_relu_reads_a_crop_of_the_input_in_place(g, dtype, rng):
    """A 1-D block's skip is a crop of its input (a view, rows apart by the input's width): the
    store reads it in place, one example at a time, with the bits of the contiguous residual."""
    x = rng.standard_normal((4, 1, g.w, g.c)).astype(dtype)
    kernel = rng.standard_normal((g.kw * g.c, g.c)).astype(dtype)
    bias = rng.standard_normal(g.c).astype(dtype)
    a = (g.w - g.w_out) // 2
    crop = x[:, 0, a:a + g.w_out, :]  # (4, w_out, c), not contiguous
    with CPU.compute_context():
        z, h = CPU.conv_residual_relu(x, kernel, g, bias, crop)
        z0, h0 = CPU.conv_residual_relu(x, kernel, g, bias, np.ascontiguousarray(crop).reshape(-1, g.c))
    same(z, z0, dtype)
    same(h, h0, dtype)
    same(h, REF.add_activation(Act.RELU, z, np.zeros(1, dtype), crop.reshape(-1, g.c)), dtype)
    # the kernels themselves: rows of any stride, each contiguous; anything else is refused
    wp = CPU._direct_kernel(kernel)
    rows = crop.reshape(4, -1) if crop.flags.c_contiguous else np.lib.stride_tricks.as_strided(
        crop, (4, g.w_out * g.c), (crop.strides[0], crop.itemsize))
    bias_pad = np.zeros(-(-g.c // 16) * 16, dtype)
    bias_pad[:g.c] = bias
    _, h1 = _cpu.conv_direct(x, wp, g, g.c, 2, bias_pad, "auto", None, rows)
    same(h1, _cpu.conv_direct(x, wp, g, g.c, 2, bias_pad, "auto", None, np.ascontiguousarray(crop).reshape(-1, g.c))[1],
         dtype)
    with pytest.raises(ValueError, match="residual"):
        _cpu.conv_direct(x, wp, g, g.c, 2, bias_pad, "auto", None, crop.reshape(-1, g.c)[::2].repeat(2, 0)[:, ::-1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", [
    pytest.param(geometry(1, 60, 64, 1, 3, dw=4), id="winograd"),
    pytest.param(geometry(1, 60, 64, 1, 3, dw=16), id="direct-wide-dilation"),
    pytest.param(geometry(1, 60, 64, 1, 5, dw=2), id="direct-5-taps"),
    pytest.param(geometry(1, 60, 4, 1, 3, dw=4), id="four-channels"),  # narrow outputs: written out
    pytest.param(geometry(1, 60, 64, 1, 9), id="skips-zeros")])  # sparse path: written out
def test_conv_adjoint_adds_a_crops_padded_multipliers_unwritten(g, dtype, vector_isa, rng):
    """A BPNet block's skip multipliers are its crop's, zero-padded (`ZeroPadded`): the adjoint adds
    them as it stores, from a per-thread row of zeros and values, with the bits of the padded array,
    on every path (where the tiles do not run, the array is written out first)."""
    from fastlift.padded import ZeroPadded

    n_out = 64
    m = rng.standard_normal((5, 1, g.w_out, n_out)).astype(dtype)
    m[::2] *= rng.random(m[::2].shape) < 0.1
    kernel = rng.standard_normal((g.kw * g.c, n_out)).astype(dtype)
    before = (g.w - g.w_out) // 2
    rows = rng.standard_normal((5, g.w_out, g.c)).astype(dtype)
    lazy = ZeroPadded(rows, before, g.w - g.w_out - before)
    padded = np.zeros((5, 1, g.w, g.c), dtype)
    padded[:, 0, before:before + g.w_out] = rows
    with CPU.compute_context():
        same(lazy.dense(CPU).reshape(padded.shape), padded, dtype)
        same(CPU.conv_adjoint(m, kernel, g, lazy), CPU.conv_adjoint(m, kernel, g, padded), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", [
    pytest.param(geometry(1, 60, 64, 1, 3, dw=4), id="winograd"),
    pytest.param(geometry(1, 60, 64, 1, 3, dw=16), id="direct-wide-dilation"),
    pytest.param(geometry(1, 60, 4, 1, 3, dw=4), id="four-channels"),  # narrow outputs: two ops
    pytest.param(geometry(1, 60, 64, 1, 9), id="skips-zeros")])  # sparse path: two ops
@pytest.mark.parametrize("lazy_addend", [True, False])
def test_conv_adjoint_rescale_is_the_rescale_rule_then_the_adjoint(g, lazy_addend, dtype, vector_isa, rng,
                                                                   monkeypatch):
    """`conv_adjoint_rescale`: a block's Rescale rule applied to each pair's row as its adjoint
    reads it (with a crop's unwritten addend, on the tiles), else the two ops: always their bits,
    on the CPU and in the oracle."""
    from fastlift.padded import ZeroPadded

    n, n_out = 5, 64
    m = rng.standard_normal((n, 1, g.w_out, n_out)).astype(dtype)
    m[::2] *= rng.random(m[::2].shape) < 0.1
    kernel = rng.standard_normal((g.kw * g.c, n_out)).astype(dtype)
    before = (g.w - g.w_out) // 2
    rows = rng.standard_normal((n, g.w_out, g.c)).astype(dtype)
    addend = ZeroPadded(rows, before, g.w - g.w_out - before)
    act, *args = rescale_inputs(rng, n, g.w_out * n_out, Act.RELU, dtype)
    for ops in (CPU, REF):
        add = addend if lazy_addend and ops is CPU else addend.dense(ops).reshape(n, 1, g.w, g.c)
        with ops.compute_context(), monkeypatch.context() as patch:
            if ops is CPU and lazy_addend and vector_isa != "base" and g.c == 64 and g.dw == 4:  # on Winograd: no array
                patch.setattr(_cpu, "rescale_backward", lambda *a: pytest.fail("rescaled in a pass of its own"))
            got = ops.conv_adjoint_rescale(m, kernel, g, add, act, *args)
        with ops.compute_context():
            m_in = ops.rescale_backward(act, m.reshape(n, -1), *args).reshape(m.shape)
            same(got, ops.conv_adjoint(m_in, kernel, g, add), dtype)


def test_conv_tiles_add_a_window_of_each_row(rng):
    """_cpu's ``addend_lo``: one addend row per example for output cells [lo, lo + w_a), zeros
    elsewhere, the bits of the padded addend; a window that does not fit is refused."""
    g = geometry(1, 40, 32, 1, 3, dw=2)
    x = rng.standard_normal((3, 1, g.w, g.c)).astype(np.float32)
    kernel = rng.standard_normal((3 * g.c, 32)).astype(np.float32)
    rows = rng.standard_normal((3, 30, 32)).astype(np.float32)
    wp, wg = CPU._direct_kernel(kernel), CPU._winograd_kernel(kernel, 4)
    for run in (lambda a, lo: _cpu.conv_direct(x, wp, g, 32, 2, None, "auto", a, None, None, False, lo),
                lambda a, lo: _cpu.conv_winograd3(x, wg, g, 32, 2, None, "auto", a, None, None, False, 4, lo)):
        for lo in (0, 4, g.w_out - 30):  # from the row's first cell, inside, to its last
            padded = np.zeros((3, g.w_out, 32), np.float32)
            padded[:, lo:lo + 30] = rows
            same(run(rows.reshape(3, -1), lo), run(padded.reshape(-1, 32), -1), np.float32)
        same(run(np.zeros((3, 0), np.float32), 5), run(None, -1), np.float32)  # an empty window adds nothing
        with pytest.raises(ValueError, match="addend_lo"):
            run(rows.reshape(3, -1), 7)  # 7 + 30 cells > w_out = 36
        with pytest.raises(ValueError, match=r"addend.shape\[0\]"):
            run(rows.reshape(3, -1)[:2], 4)
    g2 = geometry(3, 12, 32, 3, 3, pt=1, pb=1, pl=1, pr=1)
    x2 = rng.standard_normal((2, 3, 12, 32)).astype(np.float32)
    wp2 = CPU._direct_kernel(rng.standard_normal((9 * 32, 32)).astype(np.float32))
    with pytest.raises(ValueError, match="1-D"):
        _cpu.conv_direct(x2, wp2, g2, 32, 1, None, "auto", np.zeros((2, 320), np.float32), None, None, False, 1)


def test_rescale_backward_computes_missing_outputs(rng):
    """x_out / r_out None (a ReLU the forward did not store, `fuse.DerivedActs`): f(x_in), f(r_in)
    computed by the op (recomputed in the kernel for a ReLU), with the bits of given outputs."""
    m, x, r, pair_x, pair_r = pair_data(rng, np.float32, 7)
    alpha = alpha_for(x.shape[1], np.float32, rng)
    for ops in (CPU, REF):
        for act in (Act.RELU, Act.ELU, Act.SIGMOID):
            given = ops.rescale_backward(act, m, x, r, ops.activation_forward(act, x, alpha),
                                         ops.activation_forward(act, r, alpha), pair_x, pair_r, alpha)
            same(ops.rescale_backward(act, m, x, r, None, None, pair_x, pair_r, alpha), given, np.float32)


def test_conv_adjoint_takes_the_flipped_path_only_where_it_pays(monkeypatch, rng):
    from fastlift.backends.cpu_ops import FLIPPED_MIN_CHANNELS

    used = []
    monkeypatch.setattr(CpuOps, "col2im", lambda self, cols, g: used.append(g) or REF.col2im(cols, g))
    wide = geometry(1, 30, FLIPPED_MIN_CHANNELS, 1, 3, dw=4, pl=4, pr=4)
    narrow = geometry(1, 30, 4, 1, 3, dw=4, pl=4, pr=4)
    strided = geometry(1, 30, FLIPPED_MIN_CHANNELS, 1, 3, sw=2)
    head = geometry(1, 30, 12, 1, 3)  # fewer outputs (8) than inputs: flipped too
    with CPU.compute_context():
        for g in (wide, narrow, strided, head):
            m = rng.standard_normal((2, g.h_out, g.w_out, 8)).astype(np.float32)
            CPU.conv_adjoint(m, rng.standard_normal((3 * g.c, 8)).astype(np.float32), g)
        # one-hot layers of 64 outputs: 21 taps flipped on conv_narrow (where the tiles run), 3 taps
        # not; nor Basset's 300 outputs (not whole pairs of vectors)
        for g, n in ((geometry(1, 40, 4, 1, 21), 64), (geometry(1, 40, 4, 1, 3), 64), (geometry(1, 40, 4, 1, 19), 300)):
            m = rng.standard_normal((2, g.h_out, g.w_out, n)).astype(np.float32)
            CPU.conv_adjoint(m, rng.standard_normal((g.kw * g.c, n)).astype(np.float32), g)
    flips_narrow = _cpu.isa() in ("avx2", "avx512")
    assert used == [narrow, strided] + ([] if flips_narrow else [geometry(1, 40, 4, 1, 21)]) + [
        geometry(1, 40, 4, 1, 3), geometry(1, 40, 4, 1, 19)]


def test_conv_adjoint_of_a_one_hot_layer_runs_conv_narrow(monkeypatch, vector_isa, rng):
    """DNA's first layer (4 input channels, 64 outputs): its adjoint, the flipped convolution, has 4
    outputs, which conv_narrow computes where the direct tiles run; GEMM + col2im elsewhere."""
    from fastlift.backends import cpu_ops

    used = []
    monkeypatch.setattr(CpuOps, "col2im", lambda self, cols, g: used.append("col2im") or REF.col2im(cols, g))
    narrow = _cpu.conv_narrow
    monkeypatch.setattr(cpu_ops._cpu, "conv_narrow", lambda *a: used.append("narrow") or narrow(*a))
    g = geometry(1, 60, 4, 1, 21)
    m = rng.standard_normal((3, 1, g.w_out, 64)).astype(np.float32)
    kernel = rng.standard_normal((21 * 4, 64)).astype(np.float32)
    with CPU.compute_context():
        got = CPU.conv_adjoint(m, kernel, g)
    close(got, REF.conv_adjoint(m, kernel, g), np.float32, rtol=1e-4, atol=1e-4)
    assert used == (["narrow"] if vector_isa != "base" else ["col2im"])


# ------------------------------------------------------------ sparse convolution adjoint
def sparse_wt(kernel, g, dtype):
    """conv_sparse's kernel layout: (taps, c_out, c_pad), zero-padded channels."""
    lanes = _cpu.VECTOR_BYTES // np.dtype(dtype).itemsize
    c_pad = -(-g.c // lanes) * lanes
    wt = np.zeros((g.kh * g.kw, kernel.shape[1], c_pad), dtype)
    wt[:, :, :g.c] = kernel.reshape(g.kh * g.kw, g.c, -1).transpose(0, 2, 1)
    return wt


def routed_multipliers(n, g, c_out, fill, dtype, rng):
    """Multipliers as behind a max-pool and a ReLU: about ``fill`` of the entries nonzero."""
    m = rng.standard_normal((n, g.h_out, g.w_out, c_out)).astype(dtype)
    return m * (rng.random(m.shape) < fill)


@pytest.mark.parametrize("fill", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", GEOMETRIES + [
    pytest.param(geometry(1, 40, 37, 1, 11), id="1d-valid-c37-k11"),
    pytest.param(geometry(1, 30, 33, 1, 5, dw=2, pl=4, pr=4), id="1d-same-dilated-c33")])
def test_conv_sparse_is_the_transpose(g, dtype, fill, rng):
    n_out = 7
    m = routed_multipliers(11, g, n_out, fill, dtype, rng)
    kernel = rng.standard_normal((g.kh * g.kw * g.c, n_out)).astype(dtype)
    wt = sparse_wt(kernel, g, dtype)
    got, done = _cpu.conv_sparse(m, wt, g, 10**9, 2)
    assert done.dtype == bool and done.all() and got.shape == (11, g.h, g.w, g.c)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {}
    close(got, REF.conv_adjoint(m, kernel, g), dtype, **tol)
    if fill == 0.0:
        same(got, np.zeros_like(got), dtype)
    for lo, hi in [(0, 1), (4, 11)]:  # a pair's bits depend on neither the batch nor the threads
        same(_cpu.conv_sparse(m[lo:hi], wt, g, 10**9, 1)[0], got[lo:hi], dtype)
    for isa in ("base", "avx2", "avx512"):  # every compiled variant this CPU runs
        close(_cpu.conv_sparse(m, wt, g, 10**9, 1, isa)[0], got, dtype, **tol)


def test_conv_sparse_leaves_dense_pairs_to_the_caller(rng):
    g = geometry(1, 23, 5, 1, 3)
    m = np.stack([routed_multipliers(1, g, 6, f, np.float32, rng)[0] for f in (0.05, 0.9, 0.3, 1.0)])
    wt = sparse_wt(rng.standard_normal((15, 6)).astype(np.float32), g, np.float32)
    entries = np.count_nonzero(m.reshape(len(m), -1), axis=1)
    limit = int(np.sort(entries)[1])  # two pairs fit exactly, two have more entries
    got, done = _cpu.conv_sparse(m, wt, g, limit, 1)
    np.testing.assert_array_equal(done, entries <= limit)
    full = _cpu.conv_sparse(m, wt, g, 10**9, 1)[0]
    same(got[done], full[done], np.float32)


def test_conv_sparse_keeps_nan_and_skips_signed_zeros(rng):
    g = geometry(1, 12, 3, 1, 3)
    kernel = rng.standard_normal((9, 4)).astype(np.float64)
    m = np.zeros((2, 1, g.w_out, 4))
    m[0, 0, 5, 2] = np.nan
    m[1] = -0.0
    got = _cpu.conv_sparse(m, sparse_wt(kernel, g, np.float64), g, 10**9, 1)[0]
    assert np.isnan(got[0, 0, 5:8]).all() and not np.isnan(got[0, 0, :5]).any()
    same(got[1], np.zeros_like(got[1]), np.float64)


def test_conv_sparse_rejects_bad_arguments(rng):
    g = geometry(1, 9, 3, 1, 4)
    m = np.zeros((2, 1, g.w_out, 5), np.float32)
    wt = np.zeros((4, 5, 16), np.float32)
    with pytest.raises(ValueError, match=r"wt must be \(4, 5, c_pad >= 3, a multiple of 16\); got \(4, 5, 8\)"):
        _cpu.conv_sparse(m, np.zeros((4, 5, 8), np.float32), g, 10, 1)
    with pytest.raises(ValueError, match=r"wt must be \(4, 5, .*got \(3, 5, 16\)"):
        _cpu.conv_sparse(m, np.zeros((3, 5, 16), np.float32), g, 10, 1)
    with pytest.raises(ValueError, match="max_nnz must be >= 0"):
        _cpu.conv_sparse(m, wt, g, -1, 1)
    with pytest.raises(ValueError, match=r"isa must be one of \['auto', 'avx2', 'avx512', 'base'\]; got 'sse9'"):
        _cpu.conv_sparse(m, wt, g, 10, 1, "sse9")
    with pytest.raises(ValueError, match="m_out"):
        _cpu.conv_sparse(np.zeros((2, 1, 5, 5), np.float32), wt, g, 10, 1)
    with pytest.raises(ValueError, match="isa must be one of"):
        _cpu.isa("fast")
    pair = np.zeros(1, np.int64)
    x = np.zeros((1, 1, 4, 2), np.float32)
    with pytest.raises(ValueError, match="isa must be one of"):
        _cpu.max_pool_backward(np.zeros((1, 1, 2, 2), np.float32), x, x, pair, pair,
                               geometry(1, 4, 2, 1, 2, sw=2), True, 1, "sse9")
    assert _cpu.isa("base") == "base" and _cpu.isa() in ("base", "avx2", "avx512")


def test_conv_adjoint_skips_zeros_pair_by_pair(monkeypatch, rng):
    from fastlift.backends import cpu_ops

    g = geometry(1, 60, 64, 1, 9)  # 576 taps x channels >= SPARSE_MIN_TAPS_CHANNELS
    assert g.kh * g.kw * g.c >= cpu_ops.SPARSE_MIN_TAPS_CHANNELS
    fills = [0.05, 1.0, 0.2, 1.0, 0.0]
    m = np.stack([routed_multipliers(1, g, 16, f, np.float32, rng)[0] for f in fills])
    kernel = rng.standard_normal((9 * 64, 16)).astype(np.float32)
    dense_rows = []
    real = CpuOps._dense_adjoint
    monkeypatch.setattr(CpuOps, "_dense_adjoint",
                        lambda self, m, k, g, addend=None: dense_rows.append(len(m)) or real(self, m, k, g, addend))
    with CPU.compute_context():
        got = CPU.conv_adjoint(m, kernel, g)
        close(got, REF.conv_adjoint(m, kernel, g), np.float32, rtol=1e-4, atol=1e-4)
        assert dense_rows == [2]  # the two full pairs
        for p in range(len(fills)):  # each pair alone: the same path, the same bits
            same(CpuOps(n_threads=1).conv_adjoint(m[p:p + 1], kernel, g), got[p:p + 1], np.float32)
        small = geometry(1, 60, 16, 1, 3)  # below the threshold: always dense
        dense_rows.clear()
        CPU.conv_adjoint(routed_multipliers(5, small, 16, 0.05, np.float32, rng), kernel[:48], small)
        assert dense_rows == [5]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", [
    pytest.param(geometry(1, 60, 64, 1, 9), id="1d-valid"),
    pytest.param(geometry(1, 40, 48, 1, 11, dw=2, pl=10, pr=10), id="1d-same-dilated"),
    pytest.param(geometry(9, 8, 64, 3, 3, pt=1, pb=1, pl=1, pr=1), id="2d-same")])
def test_conv_forward_skips_zeros_row_by_row(g, dtype, rng):
    from fastlift.backends import cpu_ops

    assert CPU.conv_skips_zeros(g)
    fills = [0.0, 0.05, 1.0, 0.2, 1.0]  # sparse rows and two dense ones in one batch
    x = rng.standard_normal((len(fills), g.h, g.w, g.c)).astype(dtype)
    x *= rng.random(x.shape) < np.array(fills)[:, None, None, None]
    kernel = rng.standard_normal((g.kh * g.kw * g.c, 24)).astype(dtype)
    bias = rng.standard_normal(24).astype(dtype)
    cells = g.h_out * g.w_out
    with CPU.compute_context():
        got = CPU.conv_forward(x, kernel, g, bias)
        tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {}
        close(got, REF.conv_forward(x, kernel, g, bias), dtype, **tol)
        same(got[:cells], np.broadcast_to(bias, (cells, 24)), dtype)  # an all-zero row is the bias
        for p in (2, 4):  # dense rows: the fused GEMM's bits
            same(got[p * cells:(p + 1) * cells], CPU._conv_dense(x[p:p + 1], kernel, g, bias), dtype)
        for p in range(len(fills)):  # every row alone: the same path, the same bits
            same(CpuOps(n_threads=1).conv_forward(x[p:p + 1], kernel, g, bias), got[p * cells:(p + 1) * cells], dtype)
    assert not CPU.conv_skips_zeros(geometry(1, 60, 64, 1, 9, sw=2))  # strided: never
    assert not CPU.conv_skips_zeros(geometry(1, 60, 8, 1, 9))  # small: the GEMM is faster
    assert not REF.conv_skips_zeros(g)
    assert cpu_ops.SPARSE_MAX_FILL_FORWARD <= cpu_ops.SPARSE_MAX_FILL


def test_conv_forward_kernel_rejects_bad_arguments(rng):
    from fastlift.backends import _cpu

    g = geometry(1, 9, 3, 1, 4)
    x = rng.standard_normal((2, 1, 9, 3)).astype(np.float32)
    b = np.zeros((12, 16), np.float32)
    out = np.empty((2 * g.w_out, 16), np.float32)
    with pytest.raises(ValueError, match="out must have 12 rows; got 5"):
        _cpu.conv_forward(x, b, np.empty((5, 16), np.float32), g, 64, 1)
    with pytest.raises(ValueError, match=r"b must be \(12, >= 16\) of dtype float32; got \(11, 16\)"):
        _cpu.conv_forward(x, b[:11], out, g, 64, 1)
    with pytest.raises(ValueError, match="b must be C- or F-contiguous"):
        _cpu.conv_forward(x, np.zeros((12, 32), np.float32)[:, ::2], out, g, 64, 1)
    with pytest.raises(ValueError, match="block_rows must be >= 1; got 0"):
        _cpu.conv_forward(x, b, out, g, 0, 1)
    with pytest.raises(ValueError, match="bias must have 16 values; got 3"):
        _cpu.conv_forward(x, b, out, g, 64, 1, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="x"):
        _cpu.conv_forward(np.ascontiguousarray(x[:, :, :8]), b, out, g, 64, 1)


def test_matmul_rejects_bad_block_and_panel_sizes():
    from fastlift.backends import _cpu

    a, b, out = np.ones((4, 3), np.float32), np.ones((3, 32), np.float32), np.empty((4, 32), np.float32)
    with pytest.raises(ValueError, match="block_rows must be >= 1; got 0"):
        _cpu.matmul(a, b, out, 0, 1)
    with pytest.raises(ValueError, match="panel_cols must be 0 or a positive multiple of 16; got 24"):
        _cpu.matmul(a, b, out, 64, 1, 24)
    _cpu.matmul(a, b, out, 64, 2, 16)  # two panels of one block, one per thread
    np.testing.assert_array_equal(out, np.full((4, 32), 3, np.float32))


def test_gemm_block_rows_depend_on_the_weight_shape_only():
    from fastlift.backends.cpu_ops import GEMM_SMALL_BLOCK_ROWS, dense_block_rows, gemm_block_rows

    assert gemm_block_rows(192, 64) == GEMM_SMALL_BLOCK_ROWS
    assert gemm_block_rows(3300, 200) == GEMM_BLOCK_ROWS
    assert dense_block_rows(784, 512) == GEMM_BLOCK_ROWS
    assert dense_block_rows(2000, 1000) == GEMM_SMALL_BLOCK_ROWS  # few rows per chunk after a flatten
    assert dense_block_rows(1000, 1000) == GEMM_SMALL_BLOCK_ROWS


# ------------------------------------------------------------------------- pooling
@pytest.mark.parametrize("n", N_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", GEOMETRIES)
def test_pool_forward(g, dtype, n, rng):
    x = rng.standard_normal((n, g.h, g.w, g.c)).astype(dtype) - 3  # all < 0: padding must not win
    same(CPU.max_pool_forward(x, g), REF.max_pool_forward(x, g), dtype)
    same(CPU.avg_pool_forward(x, g), REF.avg_pool_forward(x, g), dtype)


@pytest.mark.parametrize("n", N_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", GEOMETRIES)
def test_avg_pool_backward(g, dtype, n, rng):
    m = rng.standard_normal((n, g.h_out, g.w_out, g.c)).astype(dtype)
    same(CPU.avg_pool_backward(m, g), REF.avg_pool_backward(m, g), dtype)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("n_pairs", N_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", GEOMETRIES + [
    pytest.param(geometry(3, 130, 2, 3, 100, sw=30, dh=1), id="2d-300-taps"),  # a long tap loop
    pytest.param(geometry(1, 9, 600, 1, 3, sw=3), id="1d-c600-two-channel-blocks"),  # > FL_CBLOCK
    # windows that do not overlap
    pytest.param(geometry(1, 23, 70, 1, 4, sw=4), id="1d-disjoint-4-c70-tail"),
    pytest.param(geometry(7, 9, 3, 2, 2, sh=2, sw=2, pb=1, pr=1), id="2d-disjoint-same-partial"),
    pytest.param(geometry(1, 20, 2, 1, 2, sw=3, dw=2), id="1d-disjoint-dilated")])
def test_max_pool_backward(g, dtype, n_pairs, exact, rng):
    # Small integers: many ties inside windows (first arg-max wins) and negative values, so a
    # padding cell treated as 0 would win.
    n_x, n_r = 2, 3
    x = rng.integers(-3, 1, (n_x, g.h, g.w, g.c)).astype(dtype)
    ref = rng.integers(-3, 1, (n_r, g.h, g.w, g.c)).astype(dtype)
    pair_x = (np.arange(n_pairs) % n_x).astype(np.int64)
    pair_r = rng.integers(0, n_r, n_pairs).astype(np.int64)
    m = rng.standard_normal((n_pairs, g.h_out, g.w_out, g.c)).astype(dtype)
    args = (m, x, ref, pair_x, pair_r, g, exact)
    got = CPU.max_pool_backward(*args)
    same(got, REF.max_pool_backward(*args), dtype)
    for isa in ("base", "avx2", "avx512"):  # every compiled variant this CPU runs: the same bits
        np.testing.assert_array_equal(_cpu.max_pool_backward(m, x, ref, pair_x, pair_r, g, exact, 2, isa), got)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_backward_exact_special_references(dtype, rng):
    """Reference equal to the input (both arg-maxes agree) and a constant reference."""
    g = geometry(4, 5, 3, 3, 3, pt=1, pb=1, pl=1, pr=1)
    x = rng.standard_normal((2, 4, 5, 3)).astype(dtype)
    m = rng.standard_normal((2, g.h_out, g.w_out, 3)).astype(dtype)
    pair = np.array([0, 1], np.int64)
    for ref in (x.copy(), np.full_like(x, 0.25)):
        args = (m, x, ref, pair, pair, g, True)
        same(CPU.max_pool_backward(*args), REF.max_pool_backward(*args), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_window_entirely_in_padding(dtype, rng):
    """Last column's window lies wholly in the padding: max -inf, mean 0/0, backward drops it."""
    g = geometry(2, 6, 2, 2, 2, pl=1, pr=2)
    assert g.w_out * g.sw - g.pl > g.w  # window (., w_out - 1) reads columns >= w only
    x = rng.standard_normal((3, g.h, g.w, g.c)).astype(dtype)
    m = rng.standard_normal((3, g.h_out, g.w_out, g.c)).astype(dtype)
    pair = np.arange(3, dtype=np.int64)
    with np.errstate(all="ignore"):  # the oracle divides by the empty window's zero count
        same(CPU.max_pool_forward(x, g), REF.max_pool_forward(x, g), dtype)
        same(CPU.avg_pool_forward(x, g), REF.avg_pool_forward(x, g), dtype)
        same(CPU.avg_pool_backward(m, g), REF.avg_pool_backward(m, g), dtype)
        for exact in (True, False):
            args = (m, x, x[::-1].copy(), pair, pair, g, exact)
            same(CPU.max_pool_backward(*args), REF.max_pool_backward(*args), dtype)


# ------------------------------------------------------------------------- thread invariance
def _two_threads(n_rows, row_work):
    assert _cpu.n_blocks(n_rows, row_work, 2) == 2, "test too small to exercise two threads"


@pytest.mark.parametrize("dtype", DTYPES)
def test_results_do_not_depend_on_thread_count(dtype, rng):
    one, two = CpuOps(n_threads=1), CpuOps(n_threads=2)
    n_pairs, n_features = 600, 128
    _two_threads(n_pairs, n_features)
    m, x, r, pair_x, pair_r = pair_data(rng, dtype, n_pairs, n_features=n_features, n_x=50)
    alpha = alpha_for(n_features, dtype, rng)
    act = Act.GELU
    xo, ro = REF.activation_forward(act, x, alpha), REF.activation_forward(act, r, alpha)
    mp, mn, r2, dp, dn, pr2 = reveal_cancel_data(n_pairs, dtype, rng, n_features=n_features)
    calls = [
        lambda o: o.activation_forward(act, r, alpha),
        lambda o: o.activation_grad(act, r, alpha),
        lambda o: o.rescale_backward(act, m, x, r, xo, ro, pair_x, pair_r, alpha),
        lambda o: o.gradient_backward(act, m, x, pair_x, alpha),
        lambda o: o.guided_backprop_backward(act, m, x, pair_x, alpha),
        lambda o: o.reveal_cancel_split(act, r2, dp, dn, pr2, alpha),
        lambda o: o.reveal_cancel_backward(act, mp, mn, r2, dp, dn, pr2, alpha),
        lambda o: o.pair_delta(x, r, pair_x, pair_r),
        lambda o: o.pair_contributions(m, x, r, pair_x, pair_r),
        lambda o: o.mean_over_refs(m, 4),
    ]
    g = geometry(12, 13, 5, 3, 3, sh=2, pt=1, pb=1, pl=1, pr=1)
    n = 64
    _two_threads(n * g.h_out, g.w_out * 9 * g.c)
    _two_threads(n, g.h_out * g.w_out * 9 * g.c)
    xi = rng.integers(-3, 3, (n, g.h, g.w, g.c)).astype(dtype)
    ri = rng.integers(-3, 3, (n, g.h, g.w, g.c)).astype(dtype)
    cols = rng.standard_normal((n, g.h_out, g.w_out, 9 * g.c)).astype(dtype)
    mo = rng.standard_normal((n, g.h_out, g.w_out, g.c)).astype(dtype)
    idx = rng.permutation(n).astype(np.int64)
    calls += [
        lambda o: o.im2col(xi, g),
        lambda o: o.col2im(cols, g),
        lambda o: o.max_pool_forward(xi, g),
        lambda o: o.avg_pool_forward(xi, g),
        lambda o: o.avg_pool_backward(mo, g),
        lambda o: o.max_pool_backward(mo, xi, ri, idx, idx[::-1].copy(), g, True),
        lambda o: o.max_pool_backward(mo, xi, ri, idx, idx, g, False),
    ]
    for call in calls:
        a, b = call(one), call(two)
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            np.testing.assert_array_equal(u, v)


# ------------------------------------------------------------------------- matmul
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("k,n", [(129, 37), (300, 300), (17, 1), (64, 16), (70, 600), (33, 784)])  # 3, 4 panels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["native", "blas"])  # conv_direct's tiles on AVX-512 CPUs; BLAS blocks
def test_matmul_rows_do_not_depend_on_batch_size_or_threads(dtype, k, n, transposed, path, rng, monkeypatch):
    # Holds on every BLAS kernel: where sgemm is position-dependent (OpenBLAS Haswell/Zen, see
    # cpu_ops.sgemm_is_deterministic) float32 goes through dgemm.
    from fastlift.backends import cpu_ops

    if path == "blas":
        monkeypatch.setattr(cpu_ops, "_ISA", "base")
    a = rng.standard_normal((300, k)).astype(dtype)
    b = rng.standard_normal((n, k) if transposed else (k, n)).astype(dtype)
    b = b.T if transposed else b
    one, two = CpuOps(n_threads=1), CpuOps(n_threads=2)
    with one.compute_context():
        full = one.matmul(a, b)
        np.testing.assert_array_equal(two.matmul(a, b), full)
        for lo, hi in [(0, 1), (5, 12), (299, 300), (250, 257), (44, 300)]:  # 1, 7, ... rows
            for ops in (one, two):
                np.testing.assert_array_equal(ops.matmul(a[lo:hi], b), full[lo:hi])
    assert full.dtype == np.dtype(dtype)
    # float32 BLAS itself errs by ~eps·sqrt(k)·|values| (~2e-5 at k=300), and dgemm-routed rows are the exact ones
    close(full, REF.matmul(a, b), dtype, **({"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {}))


@pytest.mark.parametrize("m", [97, 301, 1001])  # rows that split unevenly over two threads
def test_matmul_direct_threads_each_get_their_own_rows(m, rng):
    a = rng.standard_normal((m, 300)).astype(np.float32)
    b = rng.standard_normal((300, 300)).astype(np.float32)
    wp, _ = direct_kernel(b, np.float32)
    one = _cpu.matmul_direct(a, wp, 300, 1)
    close(one, (a.astype(np.float64) @ b).astype(np.float32), np.float32, rtol=1e-4, atol=1e-3)
    for _ in range(10):
        same(_cpu.matmul_direct(a, wp, 300, 2), one, np.float32)
    with pytest.raises(ValueError, match=r"len\(wp\) \(k \* n padded\) must be 91200; got 91199"):
        _cpu.matmul_direct(a, wp[:-1], 300)
    with pytest.raises(ValueError, match="n must be >= 1; got 0"):
        _cpu.matmul_direct(a, wp, 0)


def test_gemm_panels_are_equal_multiples_of_16_at_most_256_wide():
    from fastlift.backends.cpu_ops import GEMM_PANEL_COLS, gemm_panel_cols

    assert [gemm_panel_cols(n) for n in (16, 256, 272, 512, 784, 1008)] == [16, 256, 144, 256, 208, 256]
    for n in range(16, 4096, 16):
        w = gemm_panel_cols(n)
        panels = -(-n // w)
        assert w % 16 == 0 and w <= GEMM_PANEL_COLS and panels == -(-n // GEMM_PANEL_COLS)
        assert n - (panels - 1) * w > 0  # no empty panel


def test_derived_weights_live_as_long_as_the_backend(rng):
    made = []
    weight = rng.standard_normal((8, 5))
    weight.flags.writeable = False  # read-only (a session's converted weight): derived once per backend
    view = weight.T  # a read-only view is keyed by its owner
    ops = CpuOps()
    for _ in range(2):  # two calls of one session
        assert ops._derived(view, "test", lambda b: made.append(1) or b.copy()) is not None
    assert len(made) == 1
    CpuOps()._derived(view, "test", lambda b: made.append(1) or b.copy())  # another session: its own
    assert len(made) == 2
    scratch = rng.standard_normal((8, 5))  # writeable: computed every time
    for _ in range(2):
        ops._derived(scratch, "test", lambda b: made.append(1) or b)
    assert len(made) == 4
    ops.close()  # the session ends: what it derived goes
    ops._derived(view, "test", lambda b: made.append(1) or b.copy())
    assert len(made) == 5
    # what is kept is read-only, so what is derived from it (a flipped kernel's tiles) is kept too
    first = ops._derived(view, "test", lambda b: b.copy())
    assert not first.flags.writeable
    for _ in range(2):
        ops._derived(first, "second", lambda b: made.append(1) or b * 2)
    assert len(made) == 6


@pytest.mark.parametrize("sgemm_deterministic", [True, False])  # both GEMM routes, whatever BLAS runs here
def test_models_pack_their_weights_once_across_runs(sgemm_deterministic, monkeypatch, rng):
    import fastlift as fl
    from fastlift import layers as L
    from fastlift.backends import cpu_ops

    monkeypatch.setattr(cpu_ops, "sgemm_is_deterministic", lambda: sgemm_deterministic)
    x = L.Input((20,), name="x")
    model = fl.Model(x, L.Dense(rng.normal(size=(20, 3)), name="d")(L.Activation("relu", name="r")(
        L.Dense(rng.normal(size=(20, 20)), name="h")(x))))
    packed = []
    real = CpuOps._derived
    monkeypatch.setattr(CpuOps, "_derived", lambda self, b, what, make: real(
        self, b, what, lambda a: packed.append(what) or make(a)))
    X = rng.normal(size=(4, 20)).astype(np.float32)
    with fl.Explainer(model, device="cpu") as ex:
        first = ex.attribute(X, "gradient").contributions
        n_first = len(packed)
        again = ex.attribute(X, "gradient").contributions  # the session's second run
    np.testing.assert_array_equal(first, again)
    assert n_first > 0 and len(packed) == n_first  # the float32 weights' derived arrays were kept


def test_matmul_shapes_and_dtypes(rng):
    ops = CpuOps(n_threads=2)
    with ops.compute_context():
        assert ops.matmul(np.zeros((0, 4), np.float32), np.ones((4, 3), np.float32)).shape == (0, 3)
        a = rng.standard_normal((2 * GEMM_BLOCK_ROWS + 5, 6))
        b = rng.standard_normal((6, 3)).astype(np.float32)
        got = ops.matmul(a[::1, :], b)  # float64 @ float32 promotes like numpy
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, a @ b, rtol=1e-12)
        af = np.asfortranarray(a)  # non-C-contiguous a
        np.testing.assert_array_equal(ops.matmul(af, b), got)


def test_compute_context_pins_blas_to_one_thread():
    assert isinstance(REF.compute_context(), contextlib.nullcontext)
    with CPU.compute_context():
        blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
        assert blas and all(i["num_threads"] == 1 for i in blas)


def test_blas_stays_pinned_until_the_last_concurrent_run_ends():
    from threadpoolctl import threadpool_limits

    from fastlift.backends import cpu_ops

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    with threadpool_limits(limits=2, user_api="blas"):  # so that "pinned" shows on any machine
        first, second = cpu_ops._one_blas_thread(), cpu_ops._one_blas_thread()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)  # runs in two Python threads need not end in LIFO order
        assert blas_threads() == {1}  # the other run still computes
        second.__exit__(None, None, None)
        assert blas_threads() == {2}


def test_default_thread_count_is_cpu_count():
    assert CpuOps().n_threads == (os.cpu_count() or 1)
    assert CpuOps(3).n_threads == 3
    assert CpuOps.name == "cpu"


def test_sgemm_check_runs_float32_through_dgemm_when_needed(rng, monkeypatch):
    from fastlift.backends import cpu_ops

    a = rng.standard_normal((5, 9)).astype(np.float32)
    b = rng.standard_normal((9, 3)).astype(np.float32)
    ops = CpuOps(n_threads=1)
    monkeypatch.setattr(cpu_ops, "sgemm_is_deterministic", lambda: False)
    with ops.compute_context():
        got = ops.matmul(a, b)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_assign_copies_crops_and_pads_row_by_row(dtype, rng):
    x = rng.standard_normal((5, 40, 7)).astype(dtype)
    for n_threads in (1, 2, 3):  # blocks that split rows anywhere
        ops = CpuOps(n_threads=n_threads)
        out = np.full((5, 31, 7), np.nan, dtype)
        ops.assign(out, x[:, 4:35])  # a 1-D crop: rows are runs at a stride
        same(out, np.ascontiguousarray(x[:, 4:35]), dtype)
        big = np.zeros((5, 46, 7), dtype)
        ops.assign(big[:, 2:42], x)  # a pad's middle
        same(big[:, 2:42], x, dtype)
        assert not big[:, :2].any() and not big[:, 42:].any()
    # rows that are not one run (a crop of the second of two spatial axes), other dtypes, one row
    x2 = rng.standard_normal((3, 6, 9, 4)).astype(dtype)
    out2 = np.empty((3, 6, 5, 4), dtype)
    CpuOps(n_threads=2).assign(out2, x2[:, :, 2:7])
    same(out2, x2[:, :, 2:7], dtype)
    ints = np.arange(12).reshape(3, 4)
    got = np.zeros((3, 2), ints.dtype)
    CpuOps().assign(got, ints[:, 1:3])
    np.testing.assert_array_equal(got, ints[:, 1:3])
    one = np.empty((1, 3, 7), dtype)
    CpuOps(n_threads=2).assign(one, x[2:3, 5:8])
    same(one, x[2:3, 5:8], dtype)


def test_copy_rows_checks_shapes():
    with pytest.raises(ValueError, match="dst.shape"):
        _cpu.copy_rows(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dst.shape"):
        _cpu.copy_rows(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="contiguous runs; got strides 16 .src."):
        _cpu.copy_rows(np.zeros((2, 6))[:, ::2], np.zeros((2, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_reads_a_crops_view_in_place_with_the_bits_of_a_contiguous_add(dtype, rng):
    x = rng.standard_normal((5, 40, 7)).astype(dtype)
    y = rng.standard_normal((5, 31, 7)).astype(dtype)
    view = x[:, 4:35]  # a 1-D crop of a channels-last array: rows are runs at a stride
    want = CpuOps().add(y, np.ascontiguousarray(view))
    for n_threads in (1, 2, 3):
        for a, b in ((y, view), (view, y), (view, x[:, 9:40])):
            got = CpuOps(n_threads=n_threads).add(a, b)
            assert got.flags.c_contiguous and got.shape == (5, 31, 7)
            same(got, np.ascontiguousarray(a) + np.ascontiguousarray(b), dtype)
        same(CpuOps(n_threads=n_threads).add(y, view), want, dtype)
    # rows that are not one run (a crop of the second of two spatial axes) take the copying path
    x2 = rng.standard_normal((3, 6, 9, 4)).astype(dtype)
    same(CpuOps(n_threads=2).add(x2[:, :, 2:7], x2[:, :, 3:8]), x2[:, :, 2:7] + x2[:, :, 3:8], dtype)


def test_add_rows_checks_its_arguments():
    with pytest.raises(ValueError, match=r"b.shape\[1\] \(n\)"):
        _cpu.add_rows(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"b.shape\[0\] \(rows\)"):
        _cpu.add_rows(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="contiguous runs"):
        _cpu.add_rows(np.zeros((2, 6))[:, ::2], np.zeros((2, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_relu_kept_in_the_store_has_activation_forwards_bits_on_special_values(dtype, rng):
    # NaN (a NaN bias), a zero sum and both signs: relu(v) = v where v > 0, else +0, on every path
    g = geometry(1, 30, 16, 1, 3, dw=2)
    x = rng.standard_normal((2, 1, 30, 16)).astype(dtype)
    x[0] = 0
    kernel = rng.standard_normal((48, 16)).astype(dtype)
    bias = rng.standard_normal(16).astype(dtype)
    bias[3] = np.nan
    wp, c_pad = direct_kernel(kernel, dtype)
    bias_pad = np.zeros(c_pad, dtype)
    bias_pad[:16] = bias
    for run in (lambda: _cpu.conv_direct(x, wp, g, 16, 2, bias_pad, "auto", None, None, None, True),
                lambda: _cpu.conv_winograd3(x, winograd_kernel(kernel, dtype), g, 16, 2, bias_pad, "auto", None,
                                            None, None, True)):
        z, r = run()
        assert np.isnan(z[:, 3]).all() and (r[:, 3] == 0).all()
        np.testing.assert_array_equal(np.signbit(r), np.zeros(r.shape, bool))  # +0, never -0
        same(r, CPU.activation_forward(Act.RELU, z, np.zeros(1, dtype)), dtype)  # fl_math's ReLU
