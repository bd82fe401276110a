"""`CupyOps`: the Ops interface on a CUDA GPU, over CuPy raw kernels (``kernels/*.cu``) and cuBLAS.

CupyOps overrides only the ops that have a CUDA kernel here (the per-element math is
``csrc/fl_math.h``, shared unchanged with the CPU build) and `matmul` (cuBLAS: in full FP32, or
with ``precision="tf32"`` on tensor cores with inputs rounded to TF32; `compute_context` sets it
for a run, whatever ``CUPY_TF32`` says). Every other op is `Ops`' own code, written against ``self.xp``,
so it runs on the device as CuPy calls: the convolutions compose im2col, cuBLAS and col2im, and
`softmax_forward` and `add` are CuPy expressions. Dtypes without a kernel (anything but float32 and
float64) take the same `Ops` code on the device.

Arrays: methods accept device arrays (the engine's) or host arrays (uploaded); they return device
arrays. Uploads (`asarray` of a host array: each chunk's examples, references and pair indices, and
the weights, which an `Explainer`'s `WeightCache` uploads once per session and keeps on the
device) and downloads (`to_numpy`) go through reused pinned host buffers with the copy on a
separate stream (`_cuda.PinnedStaging`).

The device is pluggable (``CupyOps._on_device``): tests run this exact class over the host
emulator of ``tests/cuda_emu`` (the real ``.cu`` compiled as C++), with a strict stand-in for CuPy's
array module that refuses implicit host/device mixing, so CI exercises every line below without a
GPU. Importing this module does not import CuPy.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from . import _cuda
from ..activations import Act
from ..geometry import Geometry
from .ops import Ops

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

#: Rows per cuBLAS call of `CupyOps.matmul`; the last block is zero-padded to this size.
GEMM_BLOCK_ROWS = 2048
# Why: cuBLAS picks its algorithm (tiles, split-K) from the problem shape, and a different
# algorithm sums in a different order. Issuing only GEMMs of one shape per (K, N) makes a row's bits
# independent of how many rows the chunk has (DESIGN decision 3), as CpuOps does with BLAS.


class CupyOps(Ops):
    """CUDA backend. ``CupyOps()`` raises RuntimeError with CuPy's reason when no GPU is usable.

    ``n_threads`` is accepted for the common signature and unused (the GPU's threads are the
    kernels' grid). ``precision``: "float32" (default) runs float32 GEMMs in full FP32; "tf32"
    lets cuBLAS round their inputs to TF32 (10-bit mantissa) and use tensor cores, summing in
    FP32; it needs compute capability 8.0 (Ampere) or newer. Float64 GEMMs are always FP64.
    """

    name = "cuda"
    #: The scheduler builds the next chunk (references, uploads) on a host thread meanwhile.
    prefetch_chunks = True
    #: Host <-> device copies of `asarray` / `to_numpy` go through reused pinned buffers on a copy
    #: stream (`_cuda.PinnedStaging`); False: CuPy's plain (pageable, synchronous) copies.
    pinned = True
    #: `add_activation` has a kernel; the convolution fusions compose device ops, so they are not
    #: planned here.
    fused_ops = frozenset({"add_activation"})
    precisions = frozenset({"float32", "tf32"})

    def __init__(self, n_threads: int | None = None, precision: str = "float32"):
        super().__init__(n_threads, precision)
        self._use_device(_cuda.CupyDevice())

    @classmethod
    def _on_device(cls, device, n_threads=None, max_blocks=_cuda.MAX_BLOCKS, gemm_block_rows=GEMM_BLOCK_ROWS,
                   precision="float32"):
        """This backend over another executor with the same interface as `_cuda.CupyDevice` (tests:
        the host emulator). ``max_blocks`` caps the grid, so small values exercise the kernels'
        grid-stride loops."""
        self = cls.__new__(cls)
        Ops.__init__(self, n_threads, precision)
        self._use_device(device)
        self.max_blocks = int(max_blocks)
        self.gemm_block_rows = int(gemm_block_rows)
        return self

    def _use_device(self, device):
        if self.precision == "tf32" and device.compute_capability < _cuda.TF32_MIN_COMPUTE_CAPABILITY:
            cc = device.compute_capability
            raise ValueError(f"precision='tf32' needs an NVIDIA GPU of compute capability "
                             f"{_cuda.TF32_MIN_COMPUTE_CAPABILITY // 10}.0 (Ampere) or newer; this one is "
                             f"{cc // 10}.{cc % 10}: use precision='float32'")
        self.device = device
        self.xp = device.xp
        self.max_blocks = _cuda.MAX_BLOCKS
        self.gemm_block_rows = GEMM_BLOCK_ROWS
        self._reference = Ops()
        self.staging = _cuda.PinnedStaging(device)

    @contextlib.contextmanager
    def compute_context(self):
        """Around a whole run: float32 GEMMs in this backend's `precision` (FP32, or TF32 when
        asked); the calling thread's current stream is the compute stream that uploads from the
        prefetch thread order themselves after."""
        staging = self.staging
        previous = staging.compute_stream
        with self.device.context():
            staging.compute_stream = self.xp.cuda.get_current_stream()
        try:
            with self.device.compute_context(tf32=self.precision == "tf32"):
                yield
        finally:
            staging.compute_stream = previous

    def close(self) -> None:
        """Give the pinned staging buffers back to CuPy's pinned pool."""
        self.staging.release()

    def memory_budget(self) -> int:
        """Bytes one chunk may use, from the device's free memory (the scheduler sizes chunks by it)."""
        return _cuda.chunk_budget(*self.device.memory_info())

    # ------------------------------------------------------------------ arrays
    def asarray(self, a, dtype):
        """``a`` as a C-contiguous device array of ``dtype`` (uploaded if it is on the host, through
        the pinned staging buffer), on this backend's device whichever thread calls (the scheduler
        uploads from a prefetch thread)."""
        if self.pinned and not isinstance(a, self.xp.ndarray) and not hasattr(a, "__cuda_array_interface__"):
            return self.staging.upload(a, dtype)
        with self.device.context():
            return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))

    def to_numpy(self, a):
        """``a`` on the host (for device arrays, a copy through the pinned staging buffer that
        returns when the data is on the host)."""
        if isinstance(a, self.xp.ndarray):
            return self.staging.download(a) if self.pinned else self.device.to_host(a)
        return np.asarray(a)

    # ------------------------------------------------------------------ glue
    def _launch(self, op, dtype, n_items, *args):
        _cuda.launch(self.device, op, dtype, n_items, args, max_blocks=self.max_blocks)

    def _dev(self, a, dtype):
        return self.asarray(a, dtype)

    def _rows(self, a, dtype):
        a = self._dev(a, dtype)
        return a.reshape(a.shape[0], math.prod(a.shape[1:]))

    def _nhwc(self, a, dtype, spatial):
        a = self._dev(a, dtype)
        return a.reshape((a.shape[0],) + tuple(spatial))

    def _alpha(self, alpha, dtype):
        """alpha as a flat device array (kernels read alpha[f % len(alpha)]) and its length."""
        a = self._dev(alpha, dtype).reshape(-1)
        if a.size == 0:  # np.resize of an empty alpha gives zeros in the oracle
            a = self.xp.zeros(1, dtype=dtype)
        return a, int(a.size)

    def _index(self, pair, n_rows, what):
        """Pair indices as a device int64 array. Host indices (direct calls) are range-checked here;
        device indices come from the scheduler, which builds them, and are trusted (checking them
        would cost a device synchronisation per call)."""
        if isinstance(pair, self.xp.ndarray):
            return self.xp.ascontiguousarray(pair.astype(np.int64, copy=False))
        idx = np.asarray(pair).astype(np.int64, copy=False).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= n_rows):
            raise ValueError(f"{what} must index rows [0, {n_rows}); got values in [{idx.min()}, {idx.max()}]")
        return self.xp.asarray(idx)

    @staticmethod
    def _act(act):
        if isinstance(act, bool) or not isinstance(act, (int, np.integer)) or not 0 <= int(act) < len(Act):
            raise ValueError(f"act must be an activation code in [0, {len(Act)}); got {act!r}")
        return int(act)

    def _fallback(self, name, *args):
        """`Ops`' own code for ``name`` on the device (dtypes without a kernel); host arrays among
        the arguments are uploaded first."""
        args = [self.asarray(a, a.dtype) if isinstance(a, np.ndarray) else a for a in args]
        return getattr(Ops, name)(self, *args)

    def _erf(self, x):
        """erf for `Ops`' gelu on dtypes without a kernel: the host's, on a copy of x."""
        return self.asarray(Ops._erf(self, self.to_numpy(x)), x.dtype)

    # ---------------------------------------------------------- dense algebra
    def matmul(self, a, b):
        """``a @ b`` on cuBLAS for 2-D ``a`` (M, K) and ``b`` (K, N), in blocks of exactly
        `GEMM_BLOCK_ROWS` rows (the last one zero-padded), so a row's bits do not depend on M."""
        xp = self.xp
        a, b = xp.asarray(a), xp.asarray(b)
        m, k = a.shape
        out = xp.empty((m, b.shape[1]), dtype=xp.result_type(a, b))
        rows = self.gemm_block_rows
        full = m - m % rows
        for lo in range(0, full, rows):
            xp.matmul(a[lo:lo + rows], b, out=out[lo:lo + rows])
        if full < m:
            pad = xp.zeros((rows, k), dtype=a.dtype)
            pad[:m - full] = a[full:]
            out[full:] = xp.matmul(pad, b)[:m - full]
        return out

    # --------------------------------------------------- convolution helpers
    def im2col(self, x, g: Geometry):
        dt = x.dtype
        if dt not in _FLOATS:
            return self._fallback("im2col", x, g)
        x = self._nhwc(x, dt, (g.h, g.w, g.c))
        n = x.shape[0]
        cols = self.xp.empty((n, g.h_out, g.w_out, g.kh * g.kw * g.c), dtype=dt)
        self._launch("im2col", dt, cols.size, x, cols, n, g)
        return cols

    def col2im(self, cols, g: Geometry):
        dt = cols.dtype
        if dt not in _FLOATS:
            return self._fallback("col2im", cols, g)
        cols = self._nhwc(cols, dt, (g.h_out, g.w_out, g.kh * g.kw * g.c))
        n = cols.shape[0]
        x = self.xp.empty((n, g.h, g.w, g.c), dtype=dt)
        self._launch("col2im", dt, x.size, cols, x, n, g)
        return x

    # ---------------------------------------------------------------- pooling
    def _pool_forward(self, op, x, g):
        dt = x.dtype
        if dt not in _FLOATS:
            return self._fallback(op, x, g)
        x = self._nhwc(x, dt, (g.h, g.w, g.c))
        n = x.shape[0]
        out = self.xp.empty((n, g.h_out, g.w_out, g.c), dtype=dt)
        self._launch(op, dt, out.size, x, out, n, g)
        return out

    def max_pool_forward(self, x, g: Geometry):
        return self._pool_forward("max_pool_forward", x, g)

    def avg_pool_forward(self, x, g: Geometry):
        return self._pool_forward("avg_pool_forward", x, g)

    def avg_pool_backward(self, m_out, g: Geometry):
        dt = m_out.dtype
        if dt not in _FLOATS:
            return self._fallback("avg_pool_backward", m_out, g)
        m_out = self._nhwc(m_out, dt, (g.h_out, g.w_out, g.c))
        p = m_out.shape[0]
        m_in = self.xp.empty((p, g.h, g.w, g.c), dtype=dt)
        self._launch("avg_pool_backward", dt, m_in.size, m_out, m_in, p, g)
        return m_in

    def max_pool_backward(self, m_out, x, ref, pair_x, pair_r, g: Geometry, exact: bool):
        dt = m_out.dtype
        if dt not in _FLOATS:
            return self._fallback("max_pool_backward", m_out, x, ref, pair_x, pair_r, g, exact)
        m_out = self._nhwc(m_out, dt, (g.h_out, g.w_out, g.c))
        x, ref = self._nhwc(x, dt, (g.h, g.w, g.c)), self._nhwc(ref, dt, (g.h, g.w, g.c))
        p = m_out.shape[0]
        m_in = self.xp.empty((p, g.h, g.w, g.c), dtype=dt)
        self._launch("max_pool_backward", dt, m_in.size, m_out, x, ref, self._index(pair_x, x.shape[0], "pair_x"),
                     self._index(pair_r, ref.shape[0], "pair_r"), int(bool(exact)), m_in, p, g)
        return m_in

    # ------------------------------------------------------------ activations
    def _activation(self, op, act, x, alpha):
        dt = x.dtype
        if dt not in _FLOATS:
            return self._fallback(op, act, x, alpha)
        act = self._act(act)
        x2 = self._rows(x, dt)
        a, n_alpha = self._alpha(alpha, dt)
        out = self.xp.empty_like(x2)
        self._launch(op, dt, out.size, act, x2, a, n_alpha, out, x2.shape[0], x2.shape[1])
        return out.reshape(x.shape)

    def activation_forward(self, act, x, alpha):
        return self._activation("activation_forward", act, x, alpha)

    def activation_grad(self, act, x, alpha):
        return self._activation("activation_grad", act, x, alpha)

    def add_activation(self, act, x, alpha, other):
        dt = x.dtype
        if dt not in _FLOATS or other.dtype != dt or other.shape != x.shape:
            return self._fallback("add_activation", act, x, alpha, other)
        act = self._act(act)
        x2, o2 = self._rows(x, dt), self._rows(other, dt)
        a, n_alpha = self._alpha(alpha, dt)
        out = self.xp.empty_like(x2)
        self._launch("add_activation", dt, out.size, act, x2, a, n_alpha, o2, out, x2.shape[0], x2.shape[1])
        return out.reshape(x.shape)

    def rescale_backward(self, act, m_out, x_in, r_in, x_out, r_out, pair_x, pair_r, alpha):
        dt = m_out.dtype
        if dt not in _FLOATS:
            return self._fallback("rescale_backward", act, m_out, x_in, r_in, x_out, r_out, pair_x, pair_r, alpha)
        x_out, r_out = self._activation_outputs(act, x_in, r_in, x_out, r_out, alpha)
        act = self._act(act)
        m2 = self._rows(m_out, dt)
        xi, ri = self._rows(x_in, dt), self._rows(r_in, dt)
        a, n_alpha = self._alpha(alpha, dt)
        m_in = self.xp.empty_like(m2)
        self._launch("rescale_backward", dt, m_in.size, act, m2, xi, ri, self._rows(x_out, dt), self._rows(r_out, dt),
                     self._index(pair_x, xi.shape[0], "pair_x"), self._index(pair_r, ri.shape[0], "pair_r"),
                     a, n_alpha, m_in, m2.shape[0], m2.shape[1])
        return m_in.reshape(m_out.shape)

    def _gradient(self, op, act, m_out, x_in, pair_x, alpha):
        dt = m_out.dtype
        if dt not in _FLOATS:
            return self._fallback(op, act, m_out, x_in, pair_x, alpha)
        act = self._act(act)
        m2, xi = self._rows(m_out, dt), self._rows(x_in, dt)
        a, n_alpha = self._alpha(alpha, dt)
        m_in = self.xp.empty_like(m2)
        self._launch(op, dt, m_in.size, act, m2, xi, self._index(pair_x, xi.shape[0], "pair_x"), a, n_alpha, m_in,
                     m2.shape[0], m2.shape[1])
        return m_in.reshape(m_out.shape)

    def gradient_backward(self, act, m_out, x_in, pair_x, alpha):
        return self._gradient("gradient_backward", act, m_out, x_in, pair_x, alpha)

    def guided_backprop_backward(self, act, m_out, x_in, pair_x, alpha):
        return self._gradient("guided_backprop_backward", act, m_out, x_in, pair_x, alpha)

    def reveal_cancel_split(self, act, r_in, d_pos, d_neg, pair_r, alpha):
        dt = d_pos.dtype
        if dt not in _FLOATS:
            return self._fallback("reveal_cancel_split", act, r_in, d_pos, d_neg, pair_r, alpha)
        act = self._act(act)
        dp, dn, ri = self._rows(d_pos, dt), self._rows(d_neg, dt), self._rows(r_in, dt)
        a, n_alpha = self._alpha(alpha, dt)
        dy_pos, dy_neg = self.xp.empty_like(dp), self.xp.empty_like(dp)
        self._launch("reveal_cancel_split", dt, dp.size, act, ri, dp, dn, self._index(pair_r, ri.shape[0], "pair_r"),
                     a, n_alpha, dy_pos, dy_neg, dp.shape[0], dp.shape[1])
        return dy_pos.reshape(d_pos.shape), dy_neg.reshape(d_pos.shape)

    def reveal_cancel_backward(self, act, m_pos, m_neg, r_in, d_pos, d_neg, pair_r, alpha):
        dt = m_pos.dtype
        if dt not in _FLOATS:
            return self._fallback("reveal_cancel_backward", act, m_pos, m_neg, r_in, d_pos, d_neg, pair_r, alpha)
        act = self._act(act)
        mp, mn, ri = self._rows(m_pos, dt), self._rows(m_neg, dt), self._rows(r_in, dt)
        a, n_alpha = self._alpha(alpha, dt)
        out_pos, out_neg = self.xp.empty_like(mp), self.xp.empty_like(mp)
        self._launch("reveal_cancel_backward", dt, mp.size, act, mp, mn, ri, self._rows(d_pos, dt),
                     self._rows(d_neg, dt), self._index(pair_r, ri.shape[0], "pair_r"), a, n_alpha, out_pos, out_neg,
                     mp.shape[0], mp.shape[1])
        return out_pos.reshape(m_pos.shape), out_neg.reshape(m_neg.shape)

    # ------------------------------------------------- pair gathers, reductions
    def pair_delta(self, x, r, pair_x, pair_r):
        dt = np.result_type(x.dtype, r.dtype)
        if dt not in _FLOATS:
            return self._fallback("pair_delta", x, r, pair_x, pair_r)
        x2, r2 = self._rows(x, dt), self._rows(r, dt)
        px = self._index(pair_x, x2.shape[0], "pair_x")
        out = self.xp.empty((px.shape[0], x2.shape[1]), dtype=dt)
        self._launch("pair_delta", dt, out.size, x2, r2, px, self._index(pair_r, r2.shape[0], "pair_r"), out,
                     out.shape[0], out.shape[1])
        return out.reshape((px.shape[0],) + tuple(x.shape[1:]))

    def pair_contributions(self, m, x, r, pair_x, pair_r):
        dt = np.result_type(m.dtype, x.dtype, r.dtype)
        if dt not in _FLOATS:
            return self._fallback("pair_contributions", m, x, r, pair_x, pair_r)
        m2, x2, r2 = self._rows(m, dt), self._rows(x, dt), self._rows(r, dt)
        out = self.xp.empty_like(m2)
        self._launch("pair_contributions", dt, out.size, m2, x2, r2, self._index(pair_x, x2.shape[0], "pair_x"),
                     self._index(pair_r, r2.shape[0], "pair_r"), out, m2.shape[0], m2.shape[1])
        return out.reshape(m.shape)

    def mean_over_refs(self, a, n_refs):
        dt = a.dtype
        if dt not in _FLOATS:
            return self._fallback("mean_over_refs", a, n_refs)
        a2 = self._rows(a, dt)
        n = a2.shape[0] // int(n_refs)
        out = self.xp.empty((n, a2.shape[1]), dtype=dt)
        self._launch("mean_over_refs", dt, out.size, a2, out, n, int(n_refs), a2.shape[1])
        return out.reshape((n,) + tuple(a.shape[1:]))
