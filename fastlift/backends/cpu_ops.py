"""`CpuOps`: the Ops interface over the Cython kernels in `_cpu` (csrc/ headers) and BLAS.

Every override has exactly the signature of the `Ops` method it replaces
(`tests/test_backend_signatures.py`) and returns what the numpy oracle returns, to rounding
(bitwise where the arithmetic is the same). Ops without a kernel (``softmax_forward``,
``asarray``, ``to_numpy``) are inherited.

Glue done here, not in C: arrays are made C-contiguous in one dtype per call (float32 or
float64; other dtypes fall back to the numpy reference), rule-op arrays are viewed as
``(rows, features)``, ``alpha`` is tiled to one value per feature, and pair indices become int64.

Threads: the kernels split rows across ``n_threads`` OpenMP threads; ``matmul`` and
``conv_forward`` split fixed row blocks (`gemm_block_rows`) across the same threads. Results are
bitwise independent of ``n_threads`` and of the batch size, provided the run is inside
``compute_context()`` (BLAS pinned to one thread).
"""

from __future__ import annotations

import contextlib
import functools
from fractions import Fraction
import math
import os
import threading

import numpy as np

from . import _cpu, _pool
from ..activations import Act
from ..geometry import Geometry
from ..padded import ZeroPadded
from .ops import Ops

#: Rows per GEMM call for a (k, n) weight matrix: `gemm_block_rows`. Every block, including a
#: zero-padded last one, has exactly this many rows.
GEMM_BLOCK_ROWS = 256
#: Rows per GEMM call when k·n <= `GEMM_SMALL_WEIGHTS` (e.g. a 64-channel convolution with 3 taps).
GEMM_SMALL_BLOCK_ROWS = 64
GEMM_SMALL_WEIGHTS = 16384
#: GEMM output columns are padded with zeros to a multiple of this.
GEMM_COL_MULTIPLE = 16
#: `matmul` splits wider outputs into column panels of this many columns (the last narrower),
#: one BLAS call per (row block, panel): a dense layer over a few rows still feeds every thread.
GEMM_PANEL_COLS = 256
# Why: with one BLAS thread, a fixed M and no column tail, OpenBLAS gives a row the same bits
# wherever it sits in the block, so a row's result depends neither on the batch size nor on the
# thread count. Some kernels do not (OpenBLAS's Haswell/Zen sgemm is position-dependent within
# its micro-tiles even with padding; which kernels hold it is listed in bench/README.md):
# `sgemm_is_deterministic` detects that once per process (an empirical check, whatever the CPU or
# BLAS). Float32 convolutions then run sgemm in blocks that start at each example's first cell
# (`_cpu.conv_forward(per_example=True)`): a cell's position in its call depends on the example
# alone. Float32 dense layers, one row per example, run through dgemm and round back: bitwise
# deterministic, slightly more accurate, about half the float32 GEMM speed on those kernels.
# The block size depends only on the weight shape, never on M, so the guarantee holds per layer.
# Small weights get small blocks (BLAS runs them faster), large weights >= 256 rows, where
# OpenBLAS's packing is amortised (bench/README.md, "GEMM block rows").

#: conv_adjoint runs as a flipped convolution from this many input channels up, when the layer
#: has fewer output than input channels, or when `_cpu.conv_narrow` computes it (at most
#: `NARROW_MAX_CHANNELS` input channels, such as one-hot DNA's 4: `NARROW_ADJOINT_MIN_TAPS`);
#: elsewhere a GEMM only a few columns wide would be slower than GEMM + col2im (bench/README.md,
#: "Flipped transpose" and "Narrow adjoint of a one-hot layer").
FLIPPED_MIN_CHANNELS = 16
#: conv_adjoint skips zero multipliers (`_cpu.conv_sparse`) for kernels with at least
#: `SPARSE_MIN_TAPS_CHANNELS` taps x input channels, in pairs where at most `SPARSE_MAX_FILL` of the
#: multipliers are nonzero; other pairs go dense. Below those sizes BLAS is at its best and
#: skipping zeros does not pay (bench/README.md, "Sparse convolution adjoint").
SPARSE_MIN_TAPS_CHANNELS = 512
SPARSE_MAX_FILL = 0.3
#: conv_forward's rows take the sparse kernel up to this fill (lower than the adjoint's: its dense
#: path, the fused GEMM, is faster; bench/README.md, "Sparse rows in the forward").
SPARSE_MAX_FILL_FORWARD = 0.25
#: Convolutions with at least this many input channels run `_cpu.conv_direct` (no unfolding;
#: 6 output cells x 64 output channels in AVX-512 registers, 6 cells x 16 channels in AVX2's) on
#: CPUs with AVX2 or AVX-512; with fewer the GEMM wins (bench/README.md, "Direct convolution and
#: dense tiles"). Both tiles sum each value in the same order with the same FMAs: the same bits.
DIRECT_MIN_CHANNELS = 16
#: `CpuOps._alpha` keeps at most this many arrays of one activation parameter (one per layer
#: width and parameter value a model has, typically a handful).
ALPHA_ARRAYS = 64
#: Of those, convolutions to at most this many output channels (a profile head's one or two) run
#: `_cpu.conv_narrow`, vectorised over the input channels: the tiles would compute a whole vector
#: of output channels to keep one or two (bench/README.md, "Narrow convolutions").
NARROW_MAX_CHANNELS = 4
#: The adjoint of a layer with at most `NARROW_MAX_CHANNELS` input channels (one-hot DNA's first
#: layer) runs as the flipped convolution on `_cpu.conv_narrow` for kernels of at least this many
#: taps: a run of taps x channels long enough to pay for each value's sum of vector lanes. BPNet's
#: 21 taps x 64 channels over 2114 bp: 5.6 -> 3.7 ms per 20 pairs; 3 to 9 taps, or Basset's 300
#: channels (not whole vectors), stay faster on GEMM + col2im (bench/README.md, "Narrow adjoint
#: of a one-hot layer").
NARROW_ADJOINT_MIN_TAPS = 15
#: Of the others, 1-D convolutions of three taps and stride 1 run `_cpu.conv_winograd3` (Winograd's
#: F(4,3) or F(2,3): 1/2 or 2/3 of the multiply-adds, through the same tiles), unless their
#: padding is wide for their dilation: the adjoint of a valid convolution is padded by twice the
#: dilation, taps the direct tiles skip, and there the direct path does less work once the
#: dilation is more than w_out / `WINOGRAD_MAX_DILATION_SHARE` (bench/README.md, "Direct tiles on
#: AVX2, Winograd, narrow heads" and "Winograd F(4,3), vectorised transforms"). 6: BPNet's last
#: adjoint (d = 256, 1586 cells, a crop's multipliers added) took the direct tiles at 9; with the
#: crop's window read in place by Winograd, F(4,3) runs it in 5.4 ms against 6.2 (medians of 44
#: calls, interleaved, ChromBPNet both heads, 2 threads).
WINOGRAD_MAX_DILATION_SHARE = 6
#: Winograd's tiles give 4 output cells (F(4,3): six products for four cells) where that needs at
#: most this share of F(2,3)'s products (four for two cells): the rows' last period of 4 dilations
#: may be mostly past the end, and F(4,3)'s transforms cost more (bench/README.md, "Winograd
#: F(4,3), vectorised transforms": BPNet's d = 256 forward, 562 cells, runs F(2,3)).
WINOGRAD_F43_MAX_SHARE = 0.9
#: The transformed kernels G_i of `_cpu.conv_winograd3` for m output cells a tile: each row the
#: weights of the taps (g0, g1, g2) in G_i (see fl_conv_winograd3).
WINOGRAD_KERNEL_ROWS = {
    2: ((1, 0, 0), (Fraction(1, 2),) * 3, (Fraction(1, 2), Fraction(-1, 2), Fraction(1, 2)), (0, 0, 1)),
    4: ((1, 0, 0), (Fraction(-1, 3),) * 3, (Fraction(1, 3), Fraction(-1, 3), Fraction(1, 3)),
        (Fraction(1, 15), Fraction(2, 15), Fraction(4, 15)), (Fraction(-16, 15), Fraction(8, 15), Fraction(-4, 15)),
        (0, 0, 1))}
#: Rows of convolutions with at most this many input channels are checked for one-hot input (DNA
#: has 4 channels, protein ~20); one-hot rows run as a gather of kernel rows
#: (`_cpu.conv_forward_onehot`), taps x c_out adds per output cell instead of taps x c x c_out
#: multiply-adds (bench/README.md, "One-hot rows").
ONEHOT_MAX_CHANNELS = 32
#: Most bytes of freed arrays kept for reuse during a run (`compute_context`).
POOL_BYTES = 512 * 2**20


def _row_runs(a):
    """``a`` as a 2-D view (rows, values) whose rows are contiguous runs, or None where it has none."""
    inner = a.itemsize
    for n, stride in zip(a.shape[:0:-1], a.strides[:0:-1]):
        if n != 1 and stride != inner:
            return None
        inner *= n
    return np.lib.stride_tricks.as_strided(a, (a.shape[0], a.size // a.shape[0]), (a.strides[0], a.itemsize))


def _lane_padded(a, dtype):
    """``a`` as ``dtype`` with its last axis zero-padded to a multiple of the hand-vectorised
    kernels' vector length (`_cpu.VECTOR_BYTES`): their packed kernels and biases."""
    lanes = _cpu.VECTOR_BYTES // np.dtype(dtype).itemsize
    out = np.zeros(a.shape[:-1] + (-(-a.shape[-1] // lanes) * lanes,), dtype=dtype)
    out[..., :a.shape[-1]] = a
    return out


def gemm_panel_cols(n_pad: int) -> int:
    """Width of `matmul`'s column panels for ``n_pad`` (padded) output columns: as few panels as
    `GEMM_PANEL_COLS` allows, of equal width rounded up to `GEMM_COL_MULTIPLE`, so the threads get
    equal shares (784 columns: 208 + 208 + 208 + 160, not 256 + 256 + 256 + 16)."""
    n_panels = max(1, -(-n_pad // GEMM_PANEL_COLS))
    return -(-n_pad // (n_panels * GEMM_COL_MULTIPLE)) * GEMM_COL_MULTIPLE


#: where float32 sgemm is position-dependent, convolutions whose examples have at least this many
#: output cells run sgemm in per-example blocks (at most 1/4 of a block is then zero padding);
#: smaller ones run dgemm on converted rows, packed across examples.
PER_EXAMPLE_MIN_CELLS = 48


def gemm_block_rows(k: int, n: int) -> int:
    """Rows of every BLAS call of an (m, k) @ (k, n) product; a function of the weight shape only."""
    return GEMM_SMALL_BLOCK_ROWS if k * n <= GEMM_SMALL_WEIGHTS else GEMM_BLOCK_ROWS


#: `matmul` (dense layers) uses 64-row blocks for weights of at least this many elements too
#: (2**19: Basset-like's 1000x1000 layers are included; bench/README.md, "Dense blocks").
GEMM_LARGE_WEIGHTS = 2**19


def dense_block_rows(k: int, n: int) -> int:
    """Rows per BLAS call of `matmul`. A dense layer with >= `GEMM_LARGE_WEIGHTS` weights often sits
    after a flatten in the models this targets, where a chunk gives it a few dozen rows (one
    per pair): 64-row blocks pad those 4x less than 256-row ones; the price is a slower GEMM for
    wide dense layers over many rows (bench/README.md, "Dense blocks")."""
    return GEMM_SMALL_BLOCK_ROWS if k * n >= GEMM_LARGE_WEIGHTS else gemm_block_rows(k, n)


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_ISA = _cpu.isa()  # the vector ISA the hand-vectorised kernels run here
_DIRECT_ISAS = ("avx2", "avx512")  # those with conv_direct's register tiles (the baseline has none)


def _rows(a, dtype):
    """``a`` as a C-contiguous (rows, features) array of ``dtype`` (no copy when it already is)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a.reshape(a.shape[0], math.prod(a.shape[1:]))


def _float64_frozen(b):
    """A read-only float64 copy of ``b`` in b's memory order, so arrays derived from it are cached too."""
    out = b.astype(np.float64)
    out.flags.writeable = False
    return out


def _nhwc(a, dtype, g: Geometry, spatial=None):
    """``a`` as a C-contiguous (n, h, w, c) array of ``dtype``; ``spatial`` = (h, w, c)."""
    h, w, c = spatial if spatial is not None else (g.h, g.w, g.c)
    a = np.ascontiguousarray(a, dtype=dtype)
    return a.reshape(a.shape[0], h, w, c)


@functools.cache
def sgemm_is_deterministic() -> bool:
    """True if this process's float32 BLAS gives a row the same bits wherever it sits in a block."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    b = rng.standard_normal((67, 4 * GEMM_COL_MULTIPLE)).astype(np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        for rows in (GEMM_SMALL_BLOCK_ROWS, GEMM_BLOCK_ROWS):
            a = rng.standard_normal((rows + 32, 67)).astype(np.float32)

            def block(x):  # one fixed-shape BLAS call through the same path as CpuOps.matmul
                out = np.empty((rows, b.shape[1]), dtype=np.float32)
                _cpu.matmul(np.ascontiguousarray(x), b, out, rows, 1)
                return out

            first = block(a[:rows])
            for shift in (1, 3, 5, 7, 13, 24):
                moved = block(a[shift:shift + rows])
                if not np.array_equal(moved[:-shift], first[shift:]):
                    return False
    return True


@functools.cache
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, found once per process: a fresh
    ``threadpool_limits`` walks every loaded library (~1 ms: a noticeable share of a small call)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_blas_lock = threading.Lock()
_blas_runs = 0  # runs inside compute_context, in any thread
_blas_limiter = None


@contextlib.contextmanager
def _one_blas_thread():
    """BLAS pinned to one thread while any run is active. threadpoolctl's limit is process-wide:
    with a plain ``limit()`` per run, the first of two concurrent runs (two Python threads) to
    finish would give BLAS its threads back under the other one. The first run in sets the
    limit and the last one out restores it."""
    global _blas_runs, _blas_limiter
    with _blas_lock:
        if _blas_runs == 0:
            _blas_limiter = _blas_controller().limit(limits=1, user_api="blas")
        _blas_runs += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_runs -= 1
            if _blas_runs == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def _index(pair):
    return np.ascontiguousarray(pair, dtype=np.int64)


class CpuOps(Ops):
    """Cython/OpenMP CPU backend; ``n_threads=None`` uses every core (``os.cpu_count()``)."""

    name = "cpu"

    def __init__(self, n_threads: int | None = None, precision: str = "float32"):
        super().__init__(n_threads, precision)
        self.n_threads = (os.cpu_count() or 1) if n_threads is None else int(n_threads)
        self._weights: dict = {}  # arrays derived from read-only weights: key -> (owner, array)
        self._alphas: dict = {}  # `_alpha`'s arrays of one value

    #: `conv_relu`, `conv_residual_relu` and `conv_adjoint_relu` run in the direct tiles' store (AVX2
    #: and AVX-512 CPUs); `add_activation` is one threaded pass; `conv_adjoint_rescale` rescales each
    #: pair's row just before the tiles read it.
    fused_ops = frozenset({"add_activation", "conv_relu", "conv_residual_relu", "conv_adjoint_relu",
                           "conv_adjoint_rescale"})
    #: A crop's padded multipliers reach `conv_adjoint` unwritten; its tiles add them as they store
    #: (``addend_lo``: Winograd reads the window in place, the direct tiles from a per-thread row).
    pads_lazily = True

    def close(self) -> None:
        """Drop the kernels derived from weights (packed, padded, flipped) and the parameter arrays."""
        self._weights.clear()
        self._alphas.clear()

    def compute_context(self):
        """Pin BLAS to one thread and cache freed array blocks for the run (until exit).

        Use as ``with ops.compute_context(): ...``. One BLAS thread per call is what makes
        `matmul` deterministic; the parallelism comes from `matmul`'s own row blocks. The
        cache (``_pool.caching``, at most `POOL_BYTES` held free) hands a freed block back to
        the next array of the same size instead of letting it be unmapped and faulted in again.
        """
        stack = contextlib.ExitStack()
        stack.enter_context(_one_blas_thread())
        stack.enter_context(_pool.caching(POOL_BYTES))
        return stack

    def _alpha(self, alpha, n_features, dtype):
        # One parameter per feature, as ops._alpha_full: feature j uses alpha[j % len(alpha)].
        alpha = np.asarray(alpha, dtype=dtype).reshape(-1)
        if alpha.shape[0] == n_features:
            return np.ascontiguousarray(alpha)
        if alpha.shape[0] == 1:  # np.resize is ~100x slower than this for the common scalar case
            # one read-only array per (value, size, dtype): a BPNet layer's rules would fill
            # 100k values on every call, on one thread
            key = (alpha.tobytes(), n_features, alpha.dtype)
            full = self._alphas.get(key)
            if full is None:
                if len(self._alphas) >= ALPHA_ARRAYS:
                    self._alphas.clear()
                full = self._alphas[key] = np.full(n_features, alpha[0], dtype=dtype)
                full.flags.writeable = False
            return full
        return np.tile(alpha, -(-n_features // alpha.shape[0]))[:n_features]

    def add(self, a, b):
        """On threads; a view whose rows are contiguous runs (a crop's, `_CropPad`) is read in place
        (`_cpu.add_rows`), without the copy that would make it contiguous."""
        if a.shape != b.shape or a.dtype != b.dtype or a.dtype not in _FLOATS:
            return super().add(a, b)
        if a.ndim >= 2 and a.size > 0 and not (a.flags.c_contiguous and b.flags.c_contiguous):
            a2, b2 = _row_runs(a), _row_runs(b)
            if a2 is not None and b2 is not None:
                return _cpu.add_rows(a2, b2, self.n_threads).reshape(a.shape)
        return _cpu.add(np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1),
                        self.n_threads).reshape(a.shape)

    def assign(self, dst, src):
        """On threads where each row (first axis) of both is one contiguous run (1-D crops and pads
        of channels-last arrays): `_cpu.copy_rows`; numpy's assignment otherwise."""
        if (isinstance(dst, np.ndarray) and isinstance(src, np.ndarray) and dst.shape == src.shape
                and dst.dtype == src.dtype and dst.dtype in _FLOATS and dst.ndim >= 2 and dst.size > 0):
            d2, s2 = _row_runs(dst), _row_runs(src)
            if d2 is not None and s2 is not None:
                _cpu.copy_rows(s2, d2, self.n_threads)
                return
        dst[...] = src

    # ---------------------------------------------------------- dense algebra
    def matmul(self, a, b):
        """``a @ b`` for 2-D ``a`` (M, K) and ``b`` (K, N); ``b`` may be a transposed view.

        On AVX-512 CPUs (K >= `DIRECT_MIN_CHANNELS`, float32/64), and AVX2 CPUs for float32 (their
        float64 tile is narrow; dgemm is faster there): `_cpu.matmul_direct`, whose
        tiles sum each value in a fixed order with ``b`` packed once (faster than padded BLAS
        blocks for the few dozen rows dense layers get per chunk). Otherwise `_cpu.matmul`, in
        blocks of exactly ``dense_block_rows(K, N)`` rows (the last one zero-padded) and column
        panels (`gemm_panel_cols`) against ``b`` zero-padded to a multiple of `GEMM_COL_MULTIPLE`
        columns, on ``n_threads`` threads, so an element's bits do not depend on M or on the
        thread count. Expects to run inside `compute_context` (one BLAS thread per call).
        """
        if a.dtype == b.dtype and a.dtype in _FLOATS and self._matmul_runs_direct(a.shape[1], a.dtype):
            # a 1x1 convolution through conv_direct's tiles: no per-call packing, no padded rows
            return _cpu.matmul_direct(np.ascontiguousarray(a), self._direct_kernel(b), b.shape[1],
                                      self.n_threads)
        if a.dtype == np.float32 and not sgemm_is_deterministic():
            # The float64 copy of b is derived like the padding, so both are made once per weight.
            return self.matmul(a.astype(np.float64), self._derived(b, "float64", _float64_frozen)).astype(np.float32)
        a = np.ascontiguousarray(a)
        m, k = a.shape
        out = np.empty((m, b.shape[1]), dtype=np.result_type(a, b))
        if m == 0:
            return out
        b = self._padded_weights(b)
        if a.dtype != b.dtype or a.dtype not in _FLOATS:
            out[...] = np.matmul(a, b)[:, :out.shape[1]]  # mixed or other dtypes: numpy's rules, no kernel
            return out
        # Each block is one BLAS call of a fixed shape, run on the OpenMP threads of the other kernels
        # (one thread system: idle OpenMP threads do not spin against a separate GEMM pool).
        _cpu.matmul(a, b, out, dense_block_rows(k, out.shape[1]), self.n_threads, gemm_panel_cols(b.shape[1]))
        return out

    @staticmethod
    def _tiles_serve(dtype) -> bool:
        """Whether the register tiles run ``dtype`` here: on AVX-512 CPUs always, on AVX2 CPUs for
        float32 (AVX2's float64 tile holds 8 values a cell and dgemm, position-independent, is
        faster on most shapes: bench/README.md)."""
        return _ISA == "avx512" or (_ISA == "avx2" and np.dtype(dtype) == np.float32)

    @classmethod
    def _matmul_runs_direct(cls, k: int, dtype) -> bool:
        """Whether `matmul` of float arrays with ``k`` columns in ``a`` runs `_cpu.matmul_direct`."""
        return k >= DIRECT_MIN_CHANNELS and cls._tiles_serve(dtype)

    def _derived(self, b, what, make):
        """``make(b)`` for a read-only ``b`` (a weight the session converted, `model.WeightCache`),
        computed once for as long as this backend lives (an `Explainer`'s session; bench/README.md,
        "Direct convolution and dense tiles", for what packing per call costs). Every time for a
        writeable ``b``. The entry keeps b's memory alive, so its address cannot be reused by
        another array meanwhile. What is kept is read-only, so what is derived from it in turn
        (the packed tiles of a flipped kernel) is kept too."""
        if b.flags.writeable:
            return make(b)
        owner = b.base if isinstance(b.base, np.ndarray) else b
        key = (what, id(owner), b.__array_interface__["data"][0], b.shape, b.strides, b.dtype.str)
        hit = self._weights.get(key)
        if hit is None:
            made = make(b)
            if isinstance(made, np.ndarray):
                made.flags.writeable = False
            hit = self._weights[key] = (owner, made)
        return hit[1]

    def _padded_weights(self, b):
        """``b`` (K, N) with zero columns up to a multiple of `GEMM_COL_MULTIPLE`, C- or F-contiguous.

        Keeps b's layout (a transposed view stays transposed): BLAS sees the same operation.
        """
        k, n = b.shape
        n_pad = -(-n // GEMM_COL_MULTIPLE) * GEMM_COL_MULTIPLE
        if n_pad == n and (b.flags.c_contiguous or b.flags.f_contiguous):
            return b

        def pad(b):
            f_order = b.flags.f_contiguous and not b.flags.c_contiguous
            b_pad = np.zeros((k, n_pad), dtype=b.dtype, order="F" if f_order else "C")
            b_pad[:, :n] = b
            return b_pad

        return self._derived(b, "padded", pad)

    # --------------------------------------------------- convolution helpers
    def im2col(self, x, g: Geometry):
        if x.dtype not in _FLOATS:
            return super().im2col(x, g)
        return _cpu.im2col(_nhwc(x, x.dtype, g), g, self.n_threads)

    def conv_forward(self, x, kernel, g: Geometry, bias=None):
        """One-hot rows (up to `ONEHOT_MAX_CHANNELS` channels) gather kernel rows
        (`_onehot_rows`); rows of x that are mostly zero skip the zeros (`conv_skips_zeros`: the
        sparse kernel run as the adjoint of the flipped convolution); the others run
        `_conv_dense`. Which path a row takes depends on its own values only, so rows do not
        depend on the batch."""
        dt = np.result_type(x, kernel)
        if g.c <= ONEHOT_MAX_CHANNELS and dt in _FLOATS and x.shape[0] > 0:
            x = _nhwc(x, dt, g)
            hot, onehot = _cpu.onehot_cells(x, self.n_threads)
            if onehot.any():
                return self._onehot_rows(x, hot, onehot, kernel, g, bias)
        return self._conv_rows(x, kernel, g, bias)

    def _conv_rows(self, x, kernel, g: Geometry, bias):
        """`conv_forward` of rows that are not one-hot: sparse rows skip zeros, the rest are dense."""
        dt = np.result_type(x, kernel)
        if not self.conv_skips_zeros(g) or dt not in _FLOATS:
            return self._conv_dense(x, kernel, g, bias)
        x = _nhwc(x, dt, g)
        n = kernel.shape[1]
        # y[i, j] reads x[i - pt + a*dh, j - pl + b*dw] through tap (a, b): the adjoint of a
        # convolution over y's cells with the taps flipped and padding span - 1 - pad.
        gt = Geometry(h=g.h_out, w=g.w_out, c=n, kh=g.kh, kw=g.kw, sh=1, sw=1, dh=g.dh, dw=g.dw,
                      pt=(g.kh - 1) * g.dh - g.pt, pl=(g.kw - 1) * g.dw - g.pl, h_out=g.h, w_out=g.w)
        wt = self._sparse_kernel(np.asarray(kernel, dtype=dt), g, flip=True)
        y = self._skip_zeros(x, wt, gt, lambda rows: self._conv_dense(rows, kernel, g),
                             SPARSE_MAX_FILL_FORWARD)
        y = y.reshape(-1, n)
        if bias is not None:
            y += np.asarray(bias, dtype=dt).reshape(n)
        return y

    def _onehot_rows(self, x, hot, onehot, kernel, g: Geometry, bias):
        """`conv_forward` of x (n, h, w, c) whose rows ``onehot`` are one-hot (``hot``, their hot
        channels, from `_cpu.onehot_cells`): those rows gather kernel rows (`_cpu.conv_forward_onehot`), the
        others take `_conv_rows`. A row's path depends on its own values only."""
        dt, n = x.dtype, kernel.shape[1]
        padded = self._derived(np.asarray(kernel, dtype=dt), "lane_padded", lambda k: _lane_padded(k, k.dtype))
        b = None if bias is None else _lane_padded(np.asarray(bias).reshape(n), dt)
        if onehot.all():
            return _cpu.conv_forward_onehot(hot, padded, g, n, self.n_threads, b, _ISA)
        cells = g.h_out * g.w_out
        out = np.empty((x.shape[0], cells, n), dtype=dt)
        out[onehot] = _cpu.conv_forward_onehot(hot[onehot], padded, g, n, self.n_threads, b, _ISA).reshape(-1, cells, n)
        out[~onehot] = self._conv_rows(x[~onehot], kernel, g, bias).reshape(-1, cells, n)
        return out.reshape(-1, n)

    def _conv_dense(self, x, kernel, g: Geometry, bias=None, addend=None):
        """On AVX2 and AVX-512 CPUs, for >= `DIRECT_MIN_CHANNELS` input channels: `_cpu.conv_direct`, a
        convolution without unfolding whose register tiles read the input in place, or for 1-D
        three-tap layers `_cpu.conv_winograd3` (`_tiles`). Otherwise
        fused `im2col` + `matmul` (+ bias): each block of output cells is unfolded into a
        per-thread buffer, multiplied at once and given its bias while in cache
        (``_cpu.conv_forward``), in blocks of ``gemm_block_rows(K, N)`` rows, so the result is
        bitwise that of ``_cpu.matmul`` over ``im2col(x)`` (+ bias) without the unfolded
        array; where float32 sgemm is position-dependent (`sgemm_is_deterministic`) the blocks
        start at each example's first cell instead. Either way rows do not depend on M or on
        the threads. ``addend`` ((rows, n), or
        None) is added to the result, by conv_direct as it stores each value."""
        dt = np.result_type(x, kernel)
        if addend is not None:
            if dt in _FLOATS and self._conv_runs_direct(g, dt) and addend.dtype == dt:
                addend = _rows(addend.reshape(-1, kernel.shape[1]), dt)
            else:
                return self.add(addend.reshape(-1, kernel.shape[1]), self._conv_dense(x, kernel, g, bias))
        if dt not in _FLOATS:
            return super().conv_forward(x, kernel, g, bias)
        k, n = kernel.shape
        x = _nhwc(x, dt, g)
        if self._conv_runs_direct(g, dt):
            return self._tiles(x, np.asarray(kernel, dtype=dt), g, n, bias, addend)
        block_rows, per_example = gemm_block_rows(k, n), False
        if dt == np.float32 and not sgemm_is_deterministic():
            # This sgemm gives a row bits that depend on its position in the call: blocks that
            # start at each example's first cell keep every cell at one position whatever the
            # batch (float32 GEMMs at about 3x dgemm's rate, bench/README.md), and blocks no
            # longer than the example, rounded up to 16 rows, keep the zero padding small.
            # Examples of few cells would be mostly padding: those take dgemm on converted rows
            # (the bits of im2col + `matmul`, + bias in float32).
            cells = g.h_out * g.w_out
            if cells < PER_EXAMPLE_MIN_CELLS:
                kernel64 = self._derived(np.asarray(kernel, dtype=np.float32), "float64", _float64_frozen)
                y = self._conv_dense(x.astype(np.float64), kernel64, g).astype(np.float32)
                if bias is not None:
                    y += np.asarray(bias, dtype=np.float32).reshape(n)
                return y
            block_rows, per_example = min(block_rows, -(-cells // 16) * 16), True
        if bias is not None:
            bias = np.ascontiguousarray(bias, dtype=dt).reshape(n)
        out = np.empty((x.shape[0] * g.h_out * g.w_out, n), dtype=dt)
        _cpu.conv_forward(x, self._padded_weights(np.asarray(kernel, dtype=dt)), out, g,
                          block_rows, self.n_threads, bias, per_example)
        return out

    def _stores_epilogue(self, g: Geometry, dt, n) -> bool:
        """Whether `conv_forward` runs the tiles with a store epilogue for every row of this
        convolution (no one-hot or sparse rows possible, more than `NARROW_MAX_CHANNELS` outputs)."""
        return (dt in _FLOATS and self._conv_runs_direct(g, dt) and g.c > ONEHOT_MAX_CHANNELS
                and not self.conv_skips_zeros(g) and n > NARROW_MAX_CHANNELS)

    def conv_relu(self, x, kernel, g: Geometry, bias):
        """In one pass where `conv_forward` would run the tiles for every row: the ReLU in their store."""
        dt, n = np.result_type(x, kernel), kernel.shape[1]
        if not self._stores_epilogue(g, dt, n):
            return super().conv_relu(x, kernel, g, bias)
        return self._tiles(_nhwc(x, dt, g), np.asarray(kernel, dtype=dt), g, n, bias, relu=True)

    def conv_residual_relu(self, x, kernel, g: Geometry, bias, residual):
        """In one pass where `conv_forward` would run the direct tiles for every row (no one-hot or
        sparse rows possible): the ReLU and the Add happen in the tiles' store."""
        dt, n = np.result_type(x, kernel), kernel.shape[1]
        if residual.dtype != dt or not self._stores_epilogue(g, dt, n):
            return super().conv_residual_relu(x, kernel, g, bias, residual)
        runs = _row_runs(residual) if g.h_out == 1 and residual.ndim >= 2 else None
        if runs is None or runs.shape != (x.shape[0], g.w_out * n):  # else a crop's view, read in place
            runs = _rows(residual.reshape(-1, n), dt)
        z, h = self._tiles(_nhwc(x, dt, g), np.asarray(kernel, dtype=dt), g, n, bias, None, runs)
        return z, h.reshape(-1, n)

    @classmethod
    def _conv_runs_direct(cls, g: Geometry, dtype) -> bool:
        """Whether `_conv_dense` runs the register tiles (`_tiles`) for this geometry and dtype (see
        `DIRECT_MIN_CHANNELS`): where they serve the dtype (`_tiles_serve`), and on AVX2 CPUs for
        float64 too where Winograd runs (its two thirds of the multiply-adds beat dgemm)."""
        if g.c < DIRECT_MIN_CHANNELS or _ISA not in _DIRECT_ISAS:
            return False
        return cls._tiles_serve(dtype) or cls._conv_runs_winograd(g)

    @staticmethod
    def _conv_runs_winograd(g: Geometry) -> bool:
        """Whether a convolution that runs the direct tiles runs `_cpu.conv_winograd3` instead
        (see `WINOGRAD_MAX_DILATION_SHARE`)."""
        return (g.h == 1 and g.kh == 1 and g.kw == 3 and g.sw == 1
                and (g.pl == 0 or WINOGRAD_MAX_DILATION_SHARE * g.dw <= g.w_out))

    def _tiles(self, x, kernel, g: Geometry, n, bias, addend=None, residual=None, relu_grad_of=None, relu=False,
               addend_lo=-1, rescale=None):
        """The direct convolution of x (n, h, w, c) on this CPU's register tiles: `_cpu.conv_narrow`
        for at most `NARROW_MAX_CHANNELS` output channels (no second output, no ``rescale``),
        `_cpu.conv_winograd3` where `_conv_runs_winograd`, else `_cpu.conv_direct` (their arguments
        and results; ``bias`` (n,) or None)."""
        if bias is not None:
            bias = np.asarray(bias, dtype=kernel.dtype).reshape(n)
        if (n <= NARROW_MAX_CHANNELS and residual is None and relu_grad_of is None and not relu and addend_lo < 0
                and rescale is None):
            kt = self._derived(kernel, "transposed", lambda k: np.ascontiguousarray(k.T))
            return _cpu.conv_narrow(x, kt, g, self.n_threads, bias, _ISA, addend)
        if bias is not None:  # the tiles read whole vectors of output channels
            bias = _lane_padded(bias, kernel.dtype)
        if self._conv_runs_winograd(g):
            m = self._winograd_outputs(g)
            return _cpu.conv_winograd3(x, self._winograd_kernel(kernel, m), g, n, self.n_threads, bias, _ISA, addend,
                                       residual, relu_grad_of, relu, m, addend_lo, rescale)
        return _cpu.conv_direct(x, self._direct_kernel(kernel), g, n, self.n_threads, bias, _ISA, addend,
                                residual, relu_grad_of, relu, addend_lo, rescale)

    def _direct_kernel(self, kernel):
        """The kernel (taps*c, n) packed for `_cpu.conv_direct`, once per run: blocks of
        `_cpu.VECTOR_BLOCK` vectors of output channels, each (taps*c, block width), the last
        narrower, columns padded with zeros to a multiple of the vector length."""
        def pack(k):
            width = _cpu.VECTOR_BLOCK * (_cpu.VECTOR_BYTES // k.dtype.itemsize)
            padded = _lane_padded(k, k.dtype)
            return np.concatenate([padded[:, c0:c0 + width].ravel() for c0 in range(0, padded.shape[1], width)])

        return self._derived(kernel, "direct_packed", pack)

    @staticmethod
    def _winograd_outputs(g: Geometry) -> int:
        """Output cells per tile of `_cpu.conv_winograd3` for this geometry: 4 (F(4,3), half the
        multiply-adds of the direct tiles) unless F(2,3) computes fewer products, on rows whose last
        period of 4*d cells would be mostly past the end (see `WINOGRAD_F43_MAX_SHARE`)."""
        def products(m):
            period = m * g.dw
            return (m + 2) * ((g.w_out // period) * g.dw + min(g.w_out % period, g.dw))
        return 4 if products(4) <= WINOGRAD_F43_MAX_SHARE * products(2) else 2

    def _winograd_kernel(self, kernel, m):
        """The kernel (3*c, n) of a three-tap 1-D convolution as `_cpu.conv_winograd3` reads it for m
        output cells a tile, once per run: its m + 2 transformed kernels G_i (combinations of the
        taps g_t, each (c, n)), each packed as `_direct_kernel` packs a kernel, one after the other.
        F(2,3): G = (g0, (g0 + g1 + g2)/2, (g0 - g1 + g2)/2, g2); F(4,3) (interpolation points 0, 1,
        -1, 2, -1/2): G = (g0, -(g0 + g1 + g2)/3, (g0 - g1 + g2)/3, (g0 + 2 g1 + 4 g2)/15,
        (-16 g0 + 8 g1 - 4 g2)/15, g2), computed in float64 and rounded once."""
        rows = WINOGRAD_KERNEL_ROWS[m]

        def transform(k):
            taps = np.split(k.astype(np.float64), 3)
            combos = [sum(float(r) * t for r, t in zip(row, taps) if r).astype(k.dtype) for row in rows]
            return np.concatenate([self._direct_kernel(np.ascontiguousarray(gk)) for gk in combos])

        return self._derived(kernel, f"winograd{m}3_packed", transform)

    def conv_skips_zeros(self, g: Geometry) -> bool:
        """True for kernels of at least `SPARSE_MIN_TAPS_CHANNELS` taps x input channels with
        stride 1 (and padding within the window's span): rows of mostly zeros then cost less."""
        return (g.kh * g.kw * g.c >= SPARSE_MIN_TAPS_CHANNELS and g.sh == 1 and g.sw == 1
                and 0 <= g.pt <= (g.kh - 1) * g.dh and 0 <= g.pl <= (g.kw - 1) * g.dw)

    def _sparse_kernel(self, kernel, g: Geometry, flip: bool):
        """The kernel (taps*c, c_out) in `_cpu.conv_sparse`'s layout, once per run:
        (taps, c_out, c) for the adjoint, or taps reversed, (taps, c, c_out) for the forward;
        the last axis zero-padded to a multiple of the vector length."""
        def make(k):
            k3 = k.reshape(g.kh * g.kw, g.c, k.shape[1])
            return _lane_padded(k3[::-1] if flip else k3.transpose(0, 2, 1), k.dtype)

        return self._derived(kernel, "sparse_flipped" if flip else "sparse_transposed", make)

    def _skip_zeros(self, a, wt, g: Geometry, dense, max_fill):
        """`_cpu.conv_sparse(a, wt, g)` for the rows of ``a`` (n, g.h_out, g.w_out, c_a)
        with at most ``max_fill`` of their values nonzero, ``dense`` on the others; returns
        (n, g.h, g.w, g.c)."""
        out, done = _cpu.conv_sparse(a, wt, g, int(max_fill * g.h_out * g.w_out * a.shape[-1]),
                                             self.n_threads)
        if not done.any():  # no copies in and out when every row is dense
            return dense(a).reshape(out.shape)
        if not done.all():
            rest = ~done
            out[rest] = dense(a[rest]).reshape((-1,) + out.shape[1:])
        return out

    def conv_adjoint(self, m, kernel, g: Geometry, addend=None):
        """Pairs whose multipliers are mostly zero (behind a max-pool and a ReLU) skip the zeros
        (`SPARSE_MIN_TAPS_CHANNELS`, `SPARSE_MAX_FILL`, `_cpu.conv_sparse`); whether a
        pair does depends on its own multipliers only, so its result does not depend on the
        batch. The other pairs run `_dense_adjoint`, which adds ``addend`` as it stores (on
        the direct path)."""
        dt = np.result_type(m, kernel)
        if isinstance(addend, ZeroPadded):
            out = self._adjoint_padded_addend(m, kernel, g, addend, dt)
            if out is not None:
                return out
            addend = addend.dense(self).reshape(m.shape[0], g.h, g.w, g.c)
        if dt not in _FLOATS or g.kh * g.kw * g.c < SPARSE_MIN_TAPS_CHANNELS or m.shape[0] == 0:
            return self._dense_adjoint(m, kernel, g, addend)
        wt = self._sparse_kernel(np.asarray(kernel, dtype=dt), g, flip=False)
        m = _nhwc(m, dt, g, (g.h_out, g.w_out, kernel.shape[1]))
        out = self._skip_zeros(m, wt, g, lambda rows: self._dense_adjoint(rows, kernel, g), SPARSE_MAX_FILL)
        return out if addend is None else self.add(addend, out)

    def conv_adjoint_rescale(self, m, kernel, g: Geometry, addend, act, x_in, r_in, x_out, r_out, pair_x, pair_r,
                             alpha):
        """As `Ops.conv_adjoint_rescale`. In one pass where the adjoint adds a crop's `ZeroPadded`
        multipliers on the tiles (`_adjoint_padded_addend`, a BPNet block's): each pair's row goes
        through the Rescale kernel into a row of its thread's scratch, which the tiles then read
        while it is still in cache; elsewhere the two ops one after the other."""
        dt = np.result_type(m, kernel)
        if not (isinstance(addend, ZeroPadded) and dt in _FLOATS and m.dtype == dt):
            return super().conv_adjoint_rescale(m, kernel, g, addend, act, x_in, r_in, x_out, r_out, pair_x, pair_r,
                                                alpha)
        m2 = _rows(m, dt)
        rescale = self._rescale_args(act, x_in, r_in, x_out, r_out, pair_x, pair_r, alpha, m2.shape[1], dt)
        out = self._adjoint_padded_addend(m, kernel, g, addend, dt, rescale)
        if out is None:  # not on the tiles: the two ops, from the arguments already prepared
            m_in = _cpu.rescale_backward(rescale[0], m2, *rescale[1:], self.n_threads)
            out = self.conv_adjoint(m_in.reshape(m.shape), kernel, g, addend)
        return out

    def _adjoint_padded_addend(self, m, kernel, g: Geometry, addend, dt, rescale=None):
        """`conv_adjoint` plus a crop's `ZeroPadded` multipliers, added by the tiles' store (Winograd
        reads each pair's window in place, the direct tiles a per-thread row of it between zeros; no
        padded copy, the padded addend's bits), or None where the adjoint does not run on the tiles
        for every pair. ``rescale``: `_rescale_args` that take each row of m through the Rescale
        rule first (`conv_adjoint_rescale`)."""
        flipped = None
        if (dt in _FLOATS and addend.dtype == dt and g.h == 1 and m.shape[0] > 0 and g.c > NARROW_MAX_CHANNELS
                and g.kh * g.kw * g.c < SPARSE_MIN_TAPS_CHANNELS and addend.shape == (m.shape[0], g.w, g.c)):
            flipped = self._flipped(np.asarray(kernel, dtype=dt), g)
        if flipped is None or not self._conv_runs_direct(flipped[1], dt):
            return None
        wf, gt = flipped
        rows = np.ascontiguousarray(addend.rows, dtype=dt).reshape(m.shape[0], -1)
        out = self._tiles(_nhwc(m, dt, gt), wf, gt, g.c, None, rows, addend_lo=addend.before, rescale=rescale)
        return out.reshape(m.shape[0], g.h, g.w, g.c)

    def conv_adjoint_relu(self, m, kernel, g: Geometry, addend, z):
        """In one pass where `conv_adjoint` would run the flipped convolution on the direct tiles
        for every pair (no sparse pairs possible): the ReLU's mask is applied in the tiles' store."""
        dt = np.result_type(m, kernel)
        flipped = None
        if (dt in _FLOATS and addend.dtype == dt and z.dtype == dt
                and g.kh * g.kw * g.c < SPARSE_MIN_TAPS_CHANNELS):
            flipped = self._flipped(np.asarray(kernel, dtype=dt), g)
        if flipped is None or not self._conv_runs_direct(flipped[1], dt):
            return super().conv_adjoint_relu(m, kernel, g, addend, z)
        wf, gt = flipped
        shape = (m.shape[0], g.h, g.w, g.c)
        a, masked = self._tiles(_nhwc(m, dt, gt), wf, gt, g.c, None, _rows(addend.reshape(-1, g.c), dt), None,
                                _rows(z.reshape(-1, g.c), dt))
        return a.reshape(shape), masked.reshape(shape)

    def _flipped(self, kernel, g: Geometry):
        """(kernel flipped over its taps and transposed, geometry) of the stride-1 transpose run as a
        convolution, or None where that does not pay (see `_dense_adjoint`)."""
        pt, pl = (g.kh - 1) * g.dh - g.pt, (g.kw - 1) * g.dw - g.pl
        c_out = kernel.shape[1]
        worth_it = g.c >= FLIPPED_MIN_CHANNELS or c_out < g.c or self._adjoint_runs_narrow(g, c_out, kernel.dtype)
        if g.sh != 1 or g.sw != 1 or pt < 0 or pl < 0 or not worth_it:
            return None

        def flip(k):
            taps = k.reshape(g.kh, g.kw, g.c, c_out)[::-1, ::-1]
            return np.ascontiguousarray(taps.transpose(0, 1, 3, 2)).reshape(g.kh * g.kw * c_out, g.c)

        gt = Geometry(h=g.h_out, w=g.w_out, c=c_out, kh=g.kh, kw=g.kw, sh=1, sw=1, dh=g.dh, dw=g.dw,
                      pt=pt, pl=pl, h_out=g.h, w_out=g.w)
        return self._derived(kernel, "flipped", flip), gt

    @classmethod
    def _adjoint_runs_narrow(cls, g: Geometry, c_out, dtype) -> bool:
        """Whether the adjoint of a layer with few input channels (one-hot DNA's 4) runs as the flipped
        convolution on `_cpu.conv_narrow` (see `NARROW_ADJOINT_MIN_TAPS`): stride 1, dilation 1 along
        the row and whole pairs of 32-byte vectors of output channels, so that its span tiles run."""
        return (g.c <= NARROW_MAX_CHANNELS and g.kh * g.kw >= NARROW_ADJOINT_MIN_TAPS and g.dw == 1
                and g.sh == 1 and g.sw == 1 and c_out * np.dtype(dtype).itemsize % 64 == 0
                and c_out >= DIRECT_MIN_CHANNELS and _ISA in _DIRECT_ISAS and cls._tiles_serve(dtype))

    def _dense_adjoint(self, m, kernel, g: Geometry, addend=None):
        """For stride 1, the transpose of a convolution is a convolution of ``m`` with the kernel
        flipped over its taps and transposed (c_out <-> c_in), padded by span - 1 - pad: run
        through the fused `conv_forward`, with no col2im and a GEMM of the forward's shape.
        A layer with at most `NARROW_MAX_CHANNELS` input channels (one-hot DNA's first layer)
        gives a flipped convolution with that few outputs, which `_cpu.conv_narrow` computes.
        Strided convolutions, and the other layers with fewer than `FLIPPED_MIN_CHANNELS` input
        channels and at least as many output channels (a GEMM a few columns wide), use GEMM +
        col2im (the numpy reference's way)."""
        dt = np.result_type(m, kernel)
        flipped = self._flipped(np.asarray(kernel, dtype=dt), g) if dt in _FLOATS else None
        if flipped is None:
            return super().conv_adjoint(m, kernel, g, addend)
        wf, gt = flipped
        return self._conv_dense(m, wf, gt, addend=addend).reshape(m.shape[0], g.h, g.w, g.c)

    def col2im(self, cols, g: Geometry):
        if cols.dtype not in _FLOATS:
            return super().col2im(cols, g)
        cols = _nhwc(cols, cols.dtype, g, (g.h_out, g.w_out, g.kh * g.kw * g.c))
        return _cpu.col2im(cols, g, self.n_threads)

    # ---------------------------------------------------------------- pooling
    def max_pool_forward(self, x, g: Geometry):
        if x.dtype not in _FLOATS:
            return super().max_pool_forward(x, g)
        return _cpu.max_pool_forward(_nhwc(x, x.dtype, g), g, self.n_threads)

    def avg_pool_forward(self, x, g: Geometry):
        if x.dtype not in _FLOATS:
            return super().avg_pool_forward(x, g)
        return _cpu.avg_pool_forward(_nhwc(x, x.dtype, g), g, self.n_threads)

    def avg_pool_backward(self, m_out, g: Geometry):
        if m_out.dtype not in _FLOATS:
            return super().avg_pool_backward(m_out, g)
        m_out = _nhwc(m_out, m_out.dtype, g, (g.h_out, g.w_out, g.c))
        return _cpu.avg_pool_backward(m_out, g, self.n_threads)

    def max_pool_backward(self, m_out, x, ref, pair_x, pair_r, g: Geometry, exact: bool):
        dt = m_out.dtype
        if dt not in _FLOATS:
            return super().max_pool_backward(m_out, x, ref, pair_x, pair_r, g, exact)
        return _cpu.max_pool_backward(_nhwc(m_out, dt, g, (g.h_out, g.w_out, g.c)),
                                      _nhwc(x, dt, g), _nhwc(ref, dt, g),
                                      _index(pair_x), _index(pair_r), g, bool(exact), self.n_threads, _ISA)

    # ------------------------------------------------------------ activations
    def activation_forward(self, act, x, alpha):
        if x.dtype not in _FLOATS:
            return super().activation_forward(act, x, alpha)
        x2 = _rows(x, x.dtype)
        out = _cpu.activation_forward(int(act), x2, self._alpha(alpha, x2.shape[1], x.dtype),
                                      self.n_threads)
        return out.reshape(x.shape)

    def add_activation(self, act, x, alpha, other):
        if x.dtype not in _FLOATS or other.dtype != x.dtype or other.shape != x.shape:
            return super().add_activation(act, x, alpha, other)
        x2 = _rows(x, x.dtype)
        out = _cpu.add_activation(int(act), x2, self._alpha(alpha, x2.shape[1], x.dtype),
                                  _rows(other, x.dtype), self.n_threads)
        return out.reshape(x.shape)

    def activation_grad(self, act, x, alpha):
        if x.dtype not in _FLOATS:
            return super().activation_grad(act, x, alpha)
        x2 = _rows(x, x.dtype)
        out = _cpu.activation_grad(int(act), x2, self._alpha(alpha, x2.shape[1], x.dtype),
                                   self.n_threads)
        return out.reshape(x.shape)

    # ------------------------------------------------------------ rule kernels
    def rescale_backward(self, act, m_out, x_in, r_in, x_out, r_out, pair_x, pair_r, alpha):
        """As `Ops.rescale_backward`; for a ReLU the kernel recomputes f (x_out, r_out unread)."""
        dt = m_out.dtype
        if dt not in _FLOATS:
            return super().rescale_backward(act, m_out, x_in, r_in, x_out, r_out, pair_x, pair_r, alpha)
        m2 = _rows(m_out, dt)
        args = self._rescale_args(act, x_in, r_in, x_out, r_out, pair_x, pair_r, alpha, m2.shape[1], dt)
        return _cpu.rescale_backward(args[0], m2, *args[1:], self.n_threads).reshape(m_out.shape)

    def _rescale_args(self, act, x_in, r_in, x_out, r_out, pair_x, pair_r, alpha, n_features, dt) -> tuple:
        """(act, x_in, r_in, x_out, r_out, pair_x, pair_r, alpha) as `_cpu.rescale_backward` reads them
        (and `_cpu.conv_winograd3`'s ``rescale``): for a ReLU, f is recomputed and the outputs unread."""
        if act == Act.RELU:  # unread: any array of their shape
            x_out, r_out = (x_in if x_out is None else x_out), (r_in if r_out is None else r_out)
        x_out, r_out = self._activation_outputs(act, x_in, r_in, x_out, r_out, alpha)
        return (int(act), _rows(x_in, dt), _rows(r_in, dt), _rows(x_out, dt), _rows(r_out, dt), _index(pair_x),
                _index(pair_r), self._alpha(alpha, n_features, dt))

    def gradient_backward(self, act, m_out, x_in, pair_x, alpha):
        dt = m_out.dtype
        if dt not in _FLOATS:
            return super().gradient_backward(act, m_out, x_in, pair_x, alpha)
        m2 = _rows(m_out, dt)
        out = _cpu.gradient_backward(int(act), m2, _rows(x_in, dt), _index(pair_x),
                                     self._alpha(alpha, m2.shape[1], dt), self.n_threads)
        return out.reshape(m_out.shape)

    def guided_backprop_backward(self, act, m_out, x_in, pair_x, alpha):
        dt = m_out.dtype
        if dt not in _FLOATS:
            return super().guided_backprop_backward(act, m_out, x_in, pair_x, alpha)
        m2 = _rows(m_out, dt)
        out = _cpu.guided_backprop_backward(int(act), m2, _rows(x_in, dt), _index(pair_x),
                                            self._alpha(alpha, m2.shape[1], dt), self.n_threads)
        return out.reshape(m_out.shape)

    def reveal_cancel_split(self, act, r_in, d_pos, d_neg, pair_r, alpha):
        dt = d_pos.dtype
        if dt not in _FLOATS:
            return super().reveal_cancel_split(act, r_in, d_pos, d_neg, pair_r, alpha)
        dp = _rows(d_pos, dt)
        dy_pos, dy_neg = _cpu.reveal_cancel_split(int(act), _rows(r_in, dt), dp, _rows(d_neg, dt),
                                                  _index(pair_r), self._alpha(alpha, dp.shape[1], dt),
                                                  self.n_threads)
        return dy_pos.reshape(d_pos.shape), dy_neg.reshape(d_pos.shape)

    def reveal_cancel_backward(self, act, m_pos, m_neg, r_in, d_pos, d_neg, pair_r, alpha):
        dt = m_pos.dtype
        if dt not in _FLOATS:
            return super().reveal_cancel_backward(act, m_pos, m_neg, r_in, d_pos, d_neg, pair_r, alpha)
        mp = _rows(m_pos, dt)
        out_pos, out_neg = _cpu.reveal_cancel_backward(
            int(act), mp, _rows(m_neg, dt), _rows(r_in, dt), _rows(d_pos, dt), _rows(d_neg, dt),
            _index(pair_r), self._alpha(alpha, mp.shape[1], dt), self.n_threads)
        return out_pos.reshape(m_pos.shape), out_neg.reshape(m_neg.shape)

    # ------------------------------------------------- pair gathers, reductions
    def pair_delta(self, x, r, pair_x, pair_r):
        dt = np.result_type(x, r)
        if dt not in _FLOATS:
            return super().pair_delta(x, r, pair_x, pair_r)
        px = _index(pair_x)
        out = _cpu.pair_delta(_rows(x, dt), _rows(r, dt), px, _index(pair_r), self.n_threads)
        return out.reshape((px.shape[0],) + x.shape[1:])

    def pair_contributions(self, m, x, r, pair_x, pair_r):
        dt = np.result_type(m, x, r)
        if dt not in _FLOATS:
            return super().pair_contributions(m, x, r, pair_x, pair_r)
        out = _cpu.pair_contributions(_rows(m, dt), _rows(x, dt), _rows(r, dt), _index(pair_x),
                                      _index(pair_r), self.n_threads)
        return out.reshape(m.shape)

    def mean_over_refs(self, a, n_refs):
        if a.dtype not in _FLOATS:
            return super().mean_over_refs(a, n_refs)
        out = _cpu.mean_over_refs(_rows(a, a.dtype), int(n_refs), self.n_threads)
        return out.reshape((a.shape[0] // n_refs,) + a.shape[1:])
