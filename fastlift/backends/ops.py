"""The numpy reference backend: every op fastlift needs, written to be read.

`Ops` is both the slowest backend and the test oracle. `CpuOps` (Cython over
`csrc/`) and `CupyOps` (CUDA over `kernels/`) override the hot methods with the
same names and signatures; `tests/test_backend_signatures.py` enforces that.

Conventions
-----------
* Arrays are C-contiguous. Elementwise and rule ops take 2-D arrays shaped
  ``(rows, n_features)``; the engine flattens layer outputs before calling them.
* ``pair_x[p]`` / ``pair_r[p]`` (int64) index the unique example rows and the
  unique reference rows of pair ``p`` (DESIGN decision 1). Rule ops gather
  through them instead of materialising ``x[pair_x]``.
* ``act`` is an `Act` code; ``alpha`` is a 1-D array of per-feature parameters
  whose length divides ``n_features``; feature ``j`` uses ``alpha[j % len(alpha)]``.
* Spatial ops work on NHWC arrays; 1-D layers pass ``H = 1``.

The per-element math here is the same as in ``csrc/fl_math.h``; the numpy code is
its readable statement, the header its fast one.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..activations import Act
from ..geometry import Geometry

#: |x - ref| below this falls back to the gradient (the original's NEAR_ZERO_THRESHOLD).
NEAR_ZERO = 1e-7

#: Working memory one chunk may use on a host backend (activations, multipliers, temporaries).
CHUNK_BUDGET_BYTES = 512 * 2**20

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
SQRT_2_OVER_PI = 0.79788456080286535587989211986876


def _sigmoid(xp, x):
    # Two-sided form: never overflows exp.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _alpha_full(xp, alpha, n_features, dtype):
    """alpha repeated to ``n_features`` values (feature j uses alpha[j % len(alpha)]; no alpha: 0)."""
    alpha = xp.asarray(alpha, dtype=dtype).reshape(-1)
    if alpha.size == 0:
        return xp.zeros(n_features, dtype=dtype)
    return xp.tile(alpha, -(-n_features // alpha.size))[:n_features]


class Ops:
    """Reference implementation of every backend op (numpy)."""

    name = "numpy"
    xp = np

    def __init__(self, n_threads: int | None = None, precision: str = "float32"):
        self.n_threads = 1 if n_threads is None else int(n_threads)
        if precision not in self.precisions:
            raise ValueError(f"precision must be one of {sorted(self.precisions)} on the {self.name} backend; "
                             f"got {precision!r}")
        self.precision = precision

    # ------------------------------------------------------------ capabilities
    #: The GEMM precisions of float32 runs this backend offers: "float32" (FP32 products and sums)
    #: everywhere; CupyOps adds "tf32" (inputs rounded to TF32 on tensor cores, FP32 sums).
    precisions: frozenset = frozenset({"float32"})
    #: Fused ops this backend runs in one pass. `fastlift.fuse` plans a fusion only where the
    #: backend lists it; the methods themselves exist on every backend (composed here, same bits).
    fused_ops: frozenset = frozenset()
    #: Whether the scheduler builds the next chunk on a host thread while this one computes (a
    #: backend that computes on a device).
    prefetch_chunks = False
    #: Whether a 1-D crop's adjoint stays `fastlift.padded.ZeroPadded` for `conv_adjoint`'s addend
    #: (added in the store without the padded copy); elsewhere it is written out.
    pads_lazily = False

    def compute_context(self):
        """Context manager wrapped around a whole run (CpuOps pins BLAS to one thread)."""
        return contextlib.nullcontext()

    def memory_budget(self) -> int:
        """Bytes one chunk may use; the scheduler sizes chunks by it."""
        return CHUNK_BUDGET_BYTES

    def close(self) -> None:
        """Release what the backend keeps between calls (derived kernels, pinned buffers); an
        `Explainer` calls it when it closes."""

    # ------------------------------------------------------------------ arrays
    def asarray(self, a, dtype):
        """Return ``a`` as a C-contiguous array of ``dtype`` on this backend's device."""
        return np.ascontiguousarray(a, dtype=dtype)

    def to_numpy(self, a):
        """``a`` as a numpy array on the host."""
        return np.asarray(a)

    def _erf(self, x):
        """erf elementwise (numpy has none; a device backend uses its library's)."""
        from scipy.special import erf  # the kernels use C99 erf/erff

        return erf(x).astype(x.dtype, copy=False)

    def add(self, a, b):
        """a + b for two arrays of one shape and dtype (residual merges, multipliers meeting)."""
        return a + b

    def assign(self, dst, src):
        """``dst[...] = src`` for views of one shape and dtype (a crop's slice, a pad's middle)."""
        dst[...] = src

    # ---------------------------------------------------------- dense algebra
    def matmul(self, a, b):
        """``a @ b`` for 2-D ``a`` (M, K) and ``b`` (K, N); ``b`` may be a transposed view."""
        return a @ b

    # --------------------------------------------------- convolution helpers
    def im2col(self, x, g: Geometry):
        """Unfold windows: x (n, h, w, c) -> cols (n, h_out, w_out, kh*kw*c), zero padding.

        The last axis is ordered (a, b, channel), matching a Keras kernel
        (kh, kw, c_in, c_out) reshaped to (kh*kw*c_in, c_out).
        """
        xp, n = self.xp, x.shape[0]
        cols = xp.zeros((n, g.h_out, g.w_out, g.kh, g.kw, g.c), dtype=x.dtype)
        for a in range(g.kh):
            for b in range(g.kw):
                rows, src_r = (xp.asarray(i) for i in _window_index(g.h_out, g.sh, g.pt, a * g.dh, g.h))
                cols_j, src_c = (xp.asarray(i) for i in _window_index(g.w_out, g.sw, g.pl, b * g.dw, g.w))
                cols[:, rows[:, None], cols_j[None, :], a, b, :] = x[:, src_r[:, None], src_c[None, :], :]
        return cols.reshape(n, g.h_out, g.w_out, g.kh * g.kw * g.c)

    def conv_forward(self, x, kernel, g: Geometry, bias=None):
        """Convolution as one GEMM: x (n, h, w, c) -> (n·h_out·w_out, c_out) = im2col(x) @ kernel
        (+ bias, (c_out,), added to each row when given).

        ``kernel`` is (kh*kw*c, c_out), a Keras kernel reshaped. Backends may fuse the unfolding
        and the bias into the GEMM (CpuOps does); the result is the same.
        """
        cols = self.im2col(x, g)
        y = self.matmul(cols.reshape(-1, cols.shape[-1]), kernel)
        if bias is not None:
            y += bias
        return y

    def conv_adjoint(self, m, kernel, g: Geometry, addend=None):
        """Transpose of `conv_forward`: m (n, h_out, w_out, c_out) -> (n, h, w, c) =
        col2im(m @ kernelᵀ), plus ``addend`` (n, h, w, c) when given: multipliers that meet
        at a node, summed in the same pass where the backend can (bitwise ``add(addend, ·)``).
        Backends may compute it another way (CpuOps: stride 1 as a convolution of m with the
        flipped kernel); the result is the same up to rounding."""
        n = m.shape[0]
        cols = self.matmul(m.reshape(-1, kernel.shape[1]), kernel.T)
        out = self.col2im(cols.reshape(n, g.h_out, g.w_out, cols.shape[-1]), g)
        return out if addend is None else self.add(addend, out)

    def conv_adjoint_relu(self, m, kernel, g: Geometry, addend, z):
        """(a, a·relu'(z)), both (n, h, w, c), with a = ``conv_adjoint(m, kernel, g, addend)`` and z
        (n, h, w, c): a node's multipliers and, from them, the gradient multipliers of the ReLU
        input z of a residual block. Backends may compute both in one pass (CpuOps: in the store
        of its direct tiles); the bits are those of `conv_adjoint` followed by `gradient_backward`."""
        a = self.conv_adjoint(m, kernel, g, addend)
        flat = a.reshape(a.shape[0], -1)
        rows = self.asarray(np.arange(flat.shape[0]), np.int64)
        zero = self.asarray(np.zeros(1), a.dtype)
        return a, self.gradient_backward(Act.RELU, flat, z.reshape(flat.shape), rows, zero).reshape(a.shape)

    def conv_adjoint_rescale(self, m, kernel, g: Geometry, addend, act, x_in, r_in, x_out, r_out, pair_x, pair_r,
                             alpha):
        """``conv_adjoint(m_in, kernel, g, addend)`` with m_in = ``rescale_backward(act, m, x_in, r_in,
        x_out, r_out, pair_x, pair_r, alpha)`` (m flattened per pair, m_in reshaped back): the
        Rescale rule of an activation and the adjoint of the convolution whose output z it reads,
        m (n, h_out, w_out, c_out) the activation's output multipliers, x_in / r_in z's rows.
        Backends may do both in one pass (CpuOps: each pair's row rescaled into a per-thread row
        that its tiles then read); the bits are those of the two ops."""
        m_in = self.rescale_backward(act, m.reshape(m.shape[0], -1), x_in, r_in, x_out, r_out, pair_x, pair_r, alpha)
        return self.conv_adjoint(m_in.reshape(m.shape), kernel, g, addend)

    def conv_relu(self, x, kernel, g: Geometry, bias):
        """(z, relu(z)) with z = ``conv_forward(x, kernel, g, bias)`` (rows, c_out): a convolution
        and the ReLU that alone reads it, both kept. Backends may do both in one pass (CpuOps: in
        the store of its direct tiles); the bits are those of `conv_forward` followed by
        `activation_forward`."""
        z = self.conv_forward(x, kernel, g, bias)
        return z, self.activation_forward(Act.RELU, z, self.asarray(np.zeros(1), z.dtype))

    def conv_residual_relu(self, x, kernel, g: Geometry, bias, residual):
        """(z, residual + relu(z)) with z = ``conv_forward(x, kernel, g, bias)`` (rows, c_out)
        and residual (rows, c_out): a residual block's convolution, ReLU and Add. Backends may
        do all three in one pass (CpuOps: in the store of its direct tiles); the bits are those
        of `conv_forward` followed by `add_activation`."""
        z = self.conv_forward(x, kernel, g, bias)
        zero = self.asarray(np.zeros(1), z.dtype)
        return z, self.add_activation(Act.RELU, z, zero, residual.reshape(z.shape))

    def conv_skips_zeros(self, g: Geometry) -> bool:
        """Whether `conv_forward` with geometry ``g`` costs less on inputs that are mostly zero,
        so that a caller may arrange its inputs that way (integrated gradients does). Here: no."""
        return False

    def col2im(self, cols, g: Geometry):
        """Adjoint of `im2col`: cols (n, h_out, w_out, kh*kw*c) -> x (n, h, w, c), summing overlaps."""
        xp, n = self.xp, cols.shape[0]
        cols = cols.reshape(n, g.h_out, g.w_out, g.kh, g.kw, g.c)
        x = xp.zeros((n, g.h, g.w, g.c), dtype=cols.dtype)
        for a in range(g.kh):
            for b in range(g.kw):
                rows, src_r = (xp.asarray(i) for i in _window_index(g.h_out, g.sh, g.pt, a * g.dh, g.h))
                cols_j, src_c = (xp.asarray(i) for i in _window_index(g.w_out, g.sw, g.pl, b * g.dw, g.w))
                # Distinct output cells of one tap never hit the same input cell twice
                # (stride >= 1), so plain fancy-index += is safe here.
                x[:, src_r[:, None], src_c[None, :], :] += cols[:, rows[:, None], cols_j[None, :], a, b, :]
        return x

    # ---------------------------------------------------------------- pooling
    def max_pool_forward(self, x, g: Geometry):
        """Max over each window, padding ignored: x (n, h, w, c) -> (n, h_out, w_out, c)."""
        win, valid = self._windows(x, g)
        win = self.xp.where(valid, win, -np.inf)
        return win.max(axis=3).astype(x.dtype, copy=False)

    def avg_pool_forward(self, x, g: Geometry):
        """Mean over the valid (non-padding) cells of each window."""
        win, valid = self._windows(x, g)
        total = self.xp.where(valid, win, 0).sum(axis=3)
        count = valid.sum(axis=3)
        return (total / count).astype(x.dtype, copy=False)

    def avg_pool_backward(self, m_out, g: Geometry):
        """Adjoint of `avg_pool_forward`: m_out (p, h_out, w_out, c) -> (p, h, w, c)."""
        p = m_out.shape[0]
        valid = self._valid_mask(g)  # (h_out, w_out, kh*kw)
        count = valid.sum(axis=2)
        share = m_out / count[None, :, :, None]
        cols = self.xp.where(valid[None, :, :, :, None], share[:, :, :, None, :], 0)
        return self.col2im(cols.reshape(p, g.h_out, g.w_out, -1).astype(m_out.dtype, copy=False), g)

    def max_pool_backward(self, m_out, x, ref, pair_x, pair_r, g: Geometry, exact: bool):
        """Route each window's multiplier to its arg-max cells (pairs of examples and references).

        m_out (p, h_out, w_out, c); x (n_x, h, w, c); ref (n_r, h, w, c).
        Let a = first arg-max of the window in x, b = first arg-max in ref
        (row-major order inside the window).

        * ``exact=False`` (the original's ``gradient`` mode): all of m to cell a.
        * ``exact=True``: Δy = x[a] - ref[b] always lies between Δx[b] and Δx[a]
          (x[b] <= x[a] and ref[a] <= ref[b]), so it is the convex combination
          Δy = λ·Δx[a] + (1-λ)·Δx[b] with
          λ = (x[a] - x[b]) / ((x[a] - x[b]) + (ref[b] - ref[a])).
          Cell a gets λ·m and cell b gets (1-λ)·m, so contributions sum to Δy
          for any reference. When a == b (or both gaps are 0) cell a gets m.
        """
        xp = self.xp
        xw, valid = self._windows(x[pair_x], g)
        xw = xp.where(valid, xw, -np.inf)
        a = xw.argmax(axis=3)  # (p, h_out, w_out, c)
        weight_a = xp.ones(m_out.shape, dtype=m_out.dtype)
        if exact:
            rw, _ = self._windows(ref[pair_r], g)
            rw = xp.where(valid, rw, -np.inf)
            b = rw.argmax(axis=3)
            x_a = xp.take_along_axis(xw, a[:, :, :, None], 3)[:, :, :, 0]
            x_b = xp.take_along_axis(xw, b[:, :, :, None], 3)[:, :, :, 0]
            r_a = xp.take_along_axis(rw, a[:, :, :, None], 3)[:, :, :, 0]
            r_b = xp.take_along_axis(rw, b[:, :, :, None], 3)[:, :, :, 0]
            gap_x = x_a - x_b
            denom = gap_x + (r_b - r_a)
            lam = xp.where(denom > 0, gap_x / xp.where(denom > 0, denom, 1), 1)
            weight_a = lam.astype(m_out.dtype)
        else:
            b = a
        k = g.kh * g.kw
        onehot_a = xp.arange(k)[None, None, None, :, None] == a[:, :, :, None, :]
        onehot_b = xp.arange(k)[None, None, None, :, None] == b[:, :, :, None, :]
        # cols (p, h_out, w_out, k, c): share of m for every window cell
        cols = onehot_a * (weight_a * m_out)[:, :, :, None, :]
        cols = cols + onehot_b * ((1 - weight_a) * m_out)[:, :, :, None, :]
        p = m_out.shape[0]
        return self.col2im(cols.reshape(p, g.h_out, g.w_out, -1).astype(m_out.dtype, copy=False), g)

    def _valid_mask(self, g: Geometry):
        """(h_out, w_out, kh*kw) bool: which window cells lie inside the input."""
        i = np.arange(g.h_out)[:, None] * g.sh - g.pt + np.arange(g.kh)[None, :] * g.dh
        j = np.arange(g.w_out)[:, None] * g.sw - g.pl + np.arange(g.kw)[None, :] * g.dw
        vi = (i >= 0) & (i < g.h)
        vj = (j >= 0) & (j < g.w)
        return self.xp.asarray((vi[:, None, :, None] & vj[None, :, None, :]).reshape(g.h_out, g.w_out, g.kh * g.kw))

    def _windows(self, x, g: Geometry):
        """x (n, h, w, c) -> windows (n, h_out, w_out, kh*kw, c) and a broadcastable valid mask."""
        n = x.shape[0]
        win = Ops.im2col(self, x, g).reshape(n, g.h_out, g.w_out, g.kh * g.kw, g.c)
        valid = self._valid_mask(g)[None, :, :, :, None]
        return win, valid

    # ------------------------------------------------------------ activations
    def activation_forward(self, act, x, alpha):
        """f(x) elementwise for x (rows, n_features)."""
        a = _alpha_full(self.xp, alpha, x.shape[-1], x.dtype)
        return _activation_forward_elem(self, Act(act), x, a).astype(x.dtype, copy=False)

    def add_activation(self, act, x, alpha, other):
        """``other + f(x)`` for x and other (rows, n_features): a residual merge of an
        activation that nothing else reads, which then need not be stored. The same bits as
        `activation_forward` followed by `add` (one rounding either way)."""
        return self.add(other, self.activation_forward(act, x, alpha))

    def activation_grad(self, act, x, alpha):
        """f'(x) elementwise for x (rows, n_features)."""
        a = _alpha_full(self.xp, alpha, x.shape[-1], x.dtype)
        return _activation_grad_elem(self, Act(act), x, a).astype(x.dtype, copy=False)

    def softmax_forward(self, x):
        """Softmax over the last axis of x (rows, n_classes)."""
        z = x - x.max(axis=-1, keepdims=True)
        e = self.xp.exp(z)
        return (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype, copy=False)

    # ------------------------------------------------------------ rule kernels
    def rescale_backward(self, act, m_out, x_in, r_in, x_out, r_out, pair_x, pair_r, alpha):
        """Rescale rule: m_in[p] = m_out[p] · s[p], all (p, n_features).

        s = (f(x) - f(ref)) / (x - ref), with x = x_in[pair_x[p]], ref = r_in[pair_r[p]],
        f(x) = x_out[pair_x[p]] and f(ref) = r_out[pair_r[p]] taken from the forward
        pass (None: f(x_in), f(r_in) computed here); where |x - ref| < NEAR_ZERO, s = f'(ref).
        """
        x_out, r_out = self._activation_outputs(act, x_in, r_in, x_out, r_out, alpha)
        xi, ri = x_in[pair_x], r_in[pair_r]
        dx = xi - ri
        dy = x_out[pair_x] - r_out[pair_r]
        xp = self.xp
        near = xp.abs(dx) < NEAR_ZERO
        s = xp.where(near, self.activation_grad(act, ri, alpha), dy / xp.where(near, 1, dx))
        return (m_out * s).astype(m_out.dtype, copy=False)

    def _activation_outputs(self, act, x_in, r_in, x_out, r_out, alpha):
        """(x_out, r_out) with those not given (None: outputs the forward did not store,
        `fuse.DerivedActs`) computed as f(x_in), f(r_in)."""
        if x_out is None:
            x_out = self.activation_forward(act, x_in, alpha)
        if r_out is None:
            r_out = self.activation_forward(act, r_in, alpha)
        return x_out, r_out

    def gradient_backward(self, act, m_out, x_in, pair_x, alpha):
        """Gradient rule: m_in[p] = m_out[p] · f'(x_in[pair_x[p]])."""
        return (m_out * self.activation_grad(act, x_in[pair_x], alpha)).astype(m_out.dtype, copy=False)

    def guided_backprop_backward(self, act, m_out, x_in, pair_x, alpha):
        """Guided backprop: m_in = f'(x) · m_out where m_out > 0, else 0."""
        g = self.activation_grad(act, x_in[pair_x], alpha)
        return self.xp.where(m_out > 0, m_out * g, 0).astype(m_out.dtype, copy=False)

    def reveal_cancel_split(self, act, r_in, d_pos, d_neg, pair_r, alpha):
        """RevealCancel output split: (Δy⁺, Δy⁻), each (p, n_features).

        With x0 = r_in[pair_r[p]]:
        Δy⁺ = ½[(f(x0+Δx⁺) - f(x0)) + (f(x0+Δx⁻+Δx⁺) - f(x0+Δx⁻))],
        Δy⁻ = ½[(f(x0+Δx⁻) - f(x0)) + (f(x0+Δx⁺+Δx⁻) - f(x0+Δx⁺))].
        """
        x0 = r_in[pair_r]
        f = lambda t: self.activation_forward(act, t, alpha)
        f0, fp, fn, fpn = f(x0), f(x0 + d_pos), f(x0 + d_neg), f(x0 + d_pos + d_neg)
        dy_pos = 0.5 * ((fp - f0) + (fpn - fn))
        dy_neg = 0.5 * ((fn - f0) + (fpn - fp))
        return dy_pos.astype(d_pos.dtype, copy=False), dy_neg.astype(d_pos.dtype, copy=False)

    def reveal_cancel_backward(self, act, m_pos, m_neg, r_in, d_pos, d_neg, pair_r, alpha):
        """RevealCancel rule: (m⁺·Δy⁺/Δx⁺, m⁻·Δy⁻/Δx⁻).

        Where |Δx⁺| < NEAR_ZERO the ratio is its limit ½(f'(x0) + f'(x0+Δx⁻)) (and
        symmetrically for Δx⁻). The original adds a ±1e-7 pseudocount instead, which
        breaks summation-to-delta by up to ~1e-7; `fastlift.compat` reproduces that.
        """
        x0 = r_in[pair_r]
        dy_pos, dy_neg = self.reveal_cancel_split(act, r_in, d_pos, d_neg, pair_r, alpha)
        g = lambda t: self.activation_grad(act, t, alpha)
        g0 = g(x0)
        xp = self.xp
        near_p = xp.abs(d_pos) < NEAR_ZERO
        near_n = xp.abs(d_neg) < NEAR_ZERO
        s_pos = xp.where(near_p, 0.5 * (g0 + g(x0 + d_neg)), dy_pos / xp.where(near_p, 1, d_pos))
        s_neg = xp.where(near_n, 0.5 * (g0 + g(x0 + d_pos)), dy_neg / xp.where(near_n, 1, d_neg))
        return (m_pos * s_pos).astype(m_pos.dtype, copy=False), (m_neg * s_neg).astype(m_neg.dtype, copy=False)

    # ------------------------------------------------- pair gathers, reductions
    def pair_delta(self, x, r, pair_x, pair_r):
        """Δ[p] = x[pair_x[p]] - r[pair_r[p]] for x (n_x, F), r (n_r, F)."""
        return x[pair_x] - r[pair_r]

    def pair_contributions(self, m, x, r, pair_x, pair_r):
        """c[p] = m[p] · (x[pair_x[p]] - r[pair_r[p]])."""
        return m * (x[pair_x] - r[pair_r])

    def mean_over_refs(self, a, n_refs):
        """a (n·K, F), example-major -> (n, F): mean over each example's K rows.

        Accumulates in float64 in reference order, so the result does not depend on
        how examples were chunked.
        """
        n = a.shape[0] // n_refs
        acc = self.xp.zeros((n,) + a.shape[1:], dtype=np.float64)
        for k in range(n_refs):
            acc += a[k::n_refs]
        return (acc / n_refs).astype(a.dtype, copy=False)


def _window_index(n_out, stride, pad, offset, size):
    """Output positions whose tap at ``offset`` lands inside [0, size), and those input positions."""
    src = np.arange(n_out) * stride - pad + offset
    ok = (src >= 0) & (src < size)
    return np.nonzero(ok)[0], src[ok]


def _activation_forward_elem(ops, act: Act, x, a):
    xp = ops.xp
    if act == Act.LINEAR:
        return x.copy()
    if act == Act.RELU:
        return xp.maximum(x, 0)
    if act == Act.RELU6:
        return xp.clip(x, 0, 6)
    if act == Act.LEAKY_RELU:
        return xp.where(x > 0, x, a * x)
    if act == Act.ELU:
        return xp.where(x > 0, x, a * xp.expm1(xp.minimum(x, 0)))
    if act == Act.SELU:
        return SELU_SCALE * xp.where(x > 0, x, SELU_ALPHA * xp.expm1(xp.minimum(x, 0)))
    if act == Act.SIGMOID:
        return _sigmoid(xp, x)
    if act == Act.HARD_SIGMOID:
        return xp.clip(a * x + 0.5, 0, 1)
    if act == Act.TANH:
        return xp.tanh(x)
    if act == Act.SOFTPLUS:
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))
    if act == Act.SOFTSIGN:
        return x / (1 + xp.abs(x))
    if act == Act.SWISH:
        return x * _sigmoid(xp, x)
    if act == Act.GELU:
        return 0.5 * x * (1 + ops._erf(x / np.sqrt(2)))
    if act == Act.GELU_TANH:
        return 0.5 * x * (1 + xp.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3)))
    if act == Act.EXPONENTIAL:
        return xp.exp(x)
    if act == Act.LOG:
        return xp.log(x)
    raise ValueError(f"unknown activation code {act}")


def _activation_grad_elem(ops, act: Act, x, a):
    xp = ops.xp
    one = xp.ones_like(x)
    if act == Act.LINEAR:
        return one
    if act == Act.RELU:
        return (x > 0).astype(x.dtype)
    if act == Act.RELU6:
        return ((x > 0) & (x < 6)).astype(x.dtype)
    if act == Act.LEAKY_RELU:
        return xp.where(x > 0, one, a)
    if act == Act.ELU:
        return xp.where(x > 0, one, a * xp.exp(xp.minimum(x, 0)))
    if act == Act.SELU:
        return SELU_SCALE * xp.where(x > 0, one, SELU_ALPHA * xp.exp(xp.minimum(x, 0)))
    if act == Act.SIGMOID:
        s = _sigmoid(xp, x)
        return s * (1 - s)
    if act == Act.HARD_SIGMOID:
        t = a * x + 0.5
        return xp.where((t > 0) & (t < 1), a, 0 * a)
    if act == Act.TANH:
        t = xp.tanh(x)
        return 1 - t * t
    if act == Act.SOFTPLUS:
        return _sigmoid(xp, x)
    if act == Act.SOFTSIGN:
        d = 1 + xp.abs(x)
        return 1 / (d * d)
    if act == Act.SWISH:
        s = _sigmoid(xp, x)
        return s * (1 + x * (1 - s))
    if act == Act.GELU:
        cdf = 0.5 * (1 + ops._erf(x / np.sqrt(2)))
        pdf = xp.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
        return cdf + x * pdf
    if act == Act.GELU_TANH:
        u = SQRT_2_OVER_PI * (x + 0.044715 * x**3)
        t = xp.tanh(u)
        du = SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du
    if act == Act.EXPONENTIAL:
        return xp.exp(x)
    if act == Act.LOG:
        return 1 / x
    raise ValueError(f"unknown activation code {act}")
