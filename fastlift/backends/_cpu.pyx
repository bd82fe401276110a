# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Cython drivers of fastlift's CPU kernels (the hot path of `CpuOps`).

Design note
-----------
Three layers, as in scikit-learn's ``_loss`` and ``_k_means_lloyd`` modules:

1. Per-element math, ``csrc/fl_math.h``: activation values and derivatives, one element of each
   rule (``fl_<op>_elem``), the exact max-pool split. The CUDA kernels paste the same header, so
   the CPU and the GPU share one statement of every formula (and the NEAR_ZERO rule).
2. Per-row kernels and drivers, ``csrc/fl_kernels.h``: header-only C99 functions that fill a
   half-open range of output rows, ``fl_<op>_f`` / ``fl_<op>_d``. Rule kernels are one fused pass
   per pair row (gather through ``pair_x``/``pair_r``, compute, write); spatial kernels walk
   contiguous channel runs; the GEMM drivers call scipy's BLAS through an ``fl_blas`` table. All
   of it is fastlift's C API (``csrc/fastlift.h``), declared for Cython in ``fastlift_capi.pxd``
   (generated from ``csrc/fastlift_capi.pxd.tp``), which this module cimports like any user.
3. This module: one ``def`` per op, named like the ``Ops`` method it implements. It checks
   what a kernel needs to stay in bounds (O(1) shape checks, O(n_pairs) index range checks;
   the O(rows x features) work stays in C), allocates the output, and runs the kernel
   without the GIL over ``nb`` contiguous row blocks with ``prange(schedule='static')``.

One op, one name: ``_cpu.rescale_backward`` runs ``fl_rescale_backward_f/_d`` and implements
``Ops.rescale_backward``; the same for every op here.

Inputs are fused-type memoryviews: ``const floating[:, ::1]`` (C-contiguous float32 or float64,
one dtype per call, read-only arrays accepted) and ``const int64_t[::1]`` pair indices. The
kernels are called through fastlift_capi's fused ``fl_<op>``, whose ``floating`` branch is
resolved at compile time, so each dtype calls its own ``fl_<op>_f`` or ``fl_<op>_d``.

Determinism: every output row is written by exactly one thread, with an operation order fixed by
the kernel, so results are bitwise identical for any ``n_threads`` and any row split. That also
lets small calls run on one thread (``MIN_WORK_PER_THREAD``) without changing a bit.
"""

from cython.parallel cimport prange, threadid
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.string cimport memcpy, memset
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm

from fastlift_capi cimport *

import numpy as np

#: Element operations below which another thread is not worth waking (~tens of microseconds).
MIN_WORK_PER_THREAD = 32768
cdef Py_ssize_t _MIN_WORK = MIN_WORK_PER_THREAD

#: Header constants, exported so the tests can hold them equal to ``ops.Act`` and ``ops.NEAR_ZERO``.
ACT_CODES = {
    "LINEAR": FL_ACT_LINEAR, "RELU": FL_ACT_RELU, "RELU6": FL_ACT_RELU6,
    "LEAKY_RELU": FL_ACT_LEAKY_RELU, "ELU": FL_ACT_ELU, "SELU": FL_ACT_SELU,
    "SIGMOID": FL_ACT_SIGMOID, "HARD_SIGMOID": FL_ACT_HARD_SIGMOID, "TANH": FL_ACT_TANH,
    "SOFTPLUS": FL_ACT_SOFTPLUS, "SOFTSIGN": FL_ACT_SOFTSIGN, "SWISH": FL_ACT_SWISH,
    "GELU": FL_ACT_GELU, "GELU_TANH": FL_ACT_GELU_TANH, "EXPONENTIAL": FL_ACT_EXPONENTIAL,
    "LOG": FL_ACT_LOG,
}
ACT_COUNT = FL_ACT_COUNT
NEAR_ZERO = FL_NEAR_ZERO
#: FL_ABI_VERSION of the csrc/fastlift.h this module was compiled from (see that header).
ABI_VERSION = FL_ABI_VERSION


# ---------------------------------------------------------------------------- helpers
cdef inline Py_ssize_t _n_blocks(Py_ssize_t n_rows, Py_ssize_t row_work,
                                 int n_threads) noexcept nogil:
    """Number of row blocks (= threads) for ``n_rows`` rows costing ``row_work`` each."""
    cdef Py_ssize_t nb = n_rows * row_work // _MIN_WORK
    if nb > n_threads:
        nb = n_threads
    if nb > n_rows:
        nb = n_rows
    return nb if nb > 1 else 1


def n_blocks(Py_ssize_t n_rows, Py_ssize_t row_work, int n_threads):
    """How many threads an op with ``n_rows`` rows of ``row_work`` element operations uses."""
    return _n_blocks(n_rows, row_work, n_threads)


cdef inline object _empty(tuple shape, floating tag):
    # `tag` only selects the dtype: float -> float32, double -> float64.
    if floating is float:
        return np.empty(shape, dtype=np.float32)
    else:
        return np.empty(shape, dtype=np.float64)


cdef inline object _zeros(Py_ssize_t n, floating tag):
    # The zeros (n,) that the convolution kernels read for cells outside the input (zero__c).
    out = _empty((n,), tag)
    out[...] = 0
    return out


cdef int _check_act(int act) except -1:
    if act < 0 or act >= FL_ACT_COUNT:
        raise ValueError(f"act must be an Act code in [0, {FL_ACT_COUNT}); got {act}")
    return 0


cdef int _check_len(Py_ssize_t found, Py_ssize_t expected, str what) except -1:
    if found != expected:
        raise ValueError(f"{what} must be {expected}; got {found}")
    return 0


cdef int _check_index(const int64_t[::1] index, Py_ssize_t n_pairs, Py_ssize_t n_rows,
                      str name) except -1:
    """``index`` has one entry per pair, each a valid row of an array with ``n_rows`` rows."""
    cdef Py_ssize_t p
    cdef int64_t lo = 0, hi = 0
    _check_len(index.shape[0], n_pairs, f"len({name}) (one per pair)")
    if n_pairs == 0:
        return 0
    with nogil:
        lo = index[0]
        hi = index[0]
        for p in range(1, n_pairs):
            if index[p] < lo:
                lo = index[p]
            if index[p] > hi:
                hi = index[p]
    if lo < 0 or hi >= n_rows:
        raise ValueError(f"{name} must index rows in [0, {n_rows}); got values in [{lo}, {hi}]")
    return 0


cdef fl_geometry _geometry(object g) except *:
    """Copy an ``ops.Geometry`` into the C struct (with the GIL), checking it is usable."""
    cdef fl_geometry r
    r.h, r.w, r.c = g.h, g.w, g.c
    r.kh, r.kw = g.kh, g.kw
    r.sh, r.sw = g.sh, g.sw
    r.dh, r.dw = g.dh, g.dw
    r.pt, r.pl = g.pt, g.pl
    r.h_out, r.w_out = g.h_out, g.w_out
    if (r.h < 1 or r.w < 1 or r.c < 1 or r.kh < 1 or r.kw < 1 or r.sh < 1 or r.sw < 1
            or r.dh < 1 or r.dw < 1 or r.pt < 0 or r.pl < 0 or r.h_out < 0 or r.w_out < 0):
        raise ValueError(f"geometry needs positive sizes, strides and dilations and non-negative "
                         f"padding and output size; got {g}")
    return r


cdef int _check_nhwc(Py_ssize_t* shape, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c,
                     str name) except -1:
    if shape[1] != h or shape[2] != w or shape[3] != c:
        raise ValueError(f"{name} must have shape (n, {h}, {w}, {c}); "
                         f"got {(shape[0], shape[1], shape[2], shape[3])}")
    return 0


# ---------------------------------------------------------------------------- elementwise
def activation_forward(int act,
                       const floating[:, ::1] x,      # IN  (n_rows, n_features)
                       const floating[::1] alpha,     # IN  (n_features,)
                       int n_threads=1):
    """f(x) elementwise; returns (n_rows, n_features). See ``Ops.activation_forward``."""
    cdef Py_ssize_t n_rows = x.shape[0], n_features = x.shape[1], b, nb
    _check_act(act)
    _check_len(alpha.shape[0], n_features, "len(alpha) (one per feature)")
    out = _empty((n_rows, n_features), <floating>0)
    if n_rows == 0 or n_features == 0:
        return out
    cdef floating[:, ::1] y = out                     # OUT (n_rows, n_features)
    nb = _n_blocks(n_rows, n_features, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_activation_forward(act, &x[0, 0], &alpha[0], &y[0, 0], n_features, b * n_rows // nb,
                              (b + 1) * n_rows // nb)
    return out


def activation_grad(int act,
                    const floating[:, ::1] x,      # IN  (n_rows, n_features)
                    const floating[::1] alpha,     # IN  (n_features,)
                    int n_threads=1):
    """f'(x) elementwise; returns (n_rows, n_features). See ``Ops.activation_grad``."""
    cdef Py_ssize_t n_rows = x.shape[0], n_features = x.shape[1], b, nb
    _check_act(act)
    _check_len(alpha.shape[0], n_features, "len(alpha) (one per feature)")
    out = _empty((n_rows, n_features), <floating>0)
    if n_rows == 0 or n_features == 0:
        return out
    cdef floating[:, ::1] g = out                     # OUT (n_rows, n_features)
    nb = _n_blocks(n_rows, n_features, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_activation_grad(act, &x[0, 0], &alpha[0], &g[0, 0], n_features, b * n_rows // nb,
                           (b + 1) * n_rows // nb)
    return out


# ---------------------------------------------------------------------------- rule kernels
cdef int _check_rescale(int act, Py_ssize_t n_pairs, Py_ssize_t n_features, const floating[:, ::1] x_in,
                        const floating[:, ::1] r_in, const floating[:, ::1] x_out, const floating[:, ::1] r_out,
                        const int64_t[::1] pair_x, const int64_t[::1] pair_r, const floating[::1] alpha,
                        str prefix, str features) except -1:
    """`rescale_backward`'s arguments after m_out fit n_pairs pairs of n_features values (names in the
    messages start with ``prefix``; ``features`` says what n_features is)."""
    _check_act(act)
    _check_len(alpha.shape[0], n_features, f"len({prefix}alpha) (one per feature)")
    _check_len(x_in.shape[1], n_features, f"{prefix}x_in.shape[1] ({features})")
    _check_len(r_in.shape[1], n_features, f"{prefix}r_in.shape[1] ({features})")
    _check_len(x_out.shape[1], n_features, f"{prefix}x_out.shape[1] ({features})")
    _check_len(r_out.shape[1], n_features, f"{prefix}r_out.shape[1] ({features})")
    _check_len(x_out.shape[0], x_in.shape[0], f"{prefix}x_out.shape[0] (= x_in.shape[0])")
    _check_len(r_out.shape[0], r_in.shape[0], f"{prefix}r_out.shape[0] (= r_in.shape[0])")
    _check_index(pair_x, n_pairs, x_in.shape[0], f"{prefix}pair_x")
    _check_index(pair_r, n_pairs, r_in.shape[0], f"{prefix}pair_r")
    return 0


def rescale_backward(int act,
                     const floating[:, ::1] m_out,    # IN  (n_pairs, n_features)
                     const floating[:, ::1] x_in,     # IN  (n_x, n_features)
                     const floating[:, ::1] r_in,     # IN  (n_r, n_features)
                     const floating[:, ::1] x_out,    # IN  (n_x, n_features)
                     const floating[:, ::1] r_out,    # IN  (n_r, n_features)
                     const int64_t[::1] pair_x,       # IN  (n_pairs,)
                     const int64_t[::1] pair_r,       # IN  (n_pairs,)
                     const floating[::1] alpha,       # IN  (n_features,)
                     int n_threads=1):
    """Rescale rule, m_in = m_out * s; returns m_in (n_pairs, n_features).

    See ``Ops.rescale_backward``.
    """
    cdef Py_ssize_t n_pairs = m_out.shape[0], n_features = m_out.shape[1], b, nb
    _check_rescale(act, n_pairs, n_features, x_in, r_in, x_out, r_out, pair_x, pair_r, alpha, "", "n_features")
    out = _empty((n_pairs, n_features), <floating>0)
    if n_pairs == 0 or n_features == 0:
        return out
    cdef floating[:, ::1] m_in = out                  # OUT (n_pairs, n_features)
    nb = _n_blocks(n_pairs, n_features, n_threads)
    for b in prange(n_pairs, nogil=True, num_threads=nb, schedule="dynamic"):  # a pair a task, as _conv_tiles
        fl_rescale_backward(act, &m_out[0, 0], &x_in[0, 0], &r_in[0, 0], &x_out[0, 0], &r_out[0, 0],
                            &pair_x[0], &pair_r[0], &alpha[0], &m_in[0, 0], n_features, b, b + 1)
    return out


def gradient_backward(int act,
                      const floating[:, ::1] m_out,   # IN  (n_pairs, n_features)
                      const floating[:, ::1] x_in,    # IN  (n_x, n_features)
                      const int64_t[::1] pair_x,      # IN  (n_pairs,)
                      const floating[::1] alpha,      # IN  (n_features,)
                      int n_threads=1):
    """Gradient rule, m_in = m_out * f'(x); returns m_in (n_pairs, n_features)."""
    cdef Py_ssize_t n_pairs = m_out.shape[0], n_features = m_out.shape[1], b, nb
    _check_act(act)
    _check_len(alpha.shape[0], n_features, "len(alpha) (one per feature)")
    _check_len(x_in.shape[1], n_features, "x_in.shape[1] (n_features)")
    _check_index(pair_x, n_pairs, x_in.shape[0], "pair_x")
    out = _empty((n_pairs, n_features), <floating>0)
    if n_pairs == 0 or n_features == 0:
        return out
    cdef floating[:, ::1] m_in = out                  # OUT (n_pairs, n_features)
    nb = _n_blocks(n_pairs, n_features, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_gradient_backward(act, &m_out[0, 0], &x_in[0, 0], &pair_x[0], &alpha[0], &m_in[0, 0], n_features,
                             b * n_pairs // nb, (b + 1) * n_pairs // nb)
    return out


def guided_backprop_backward(int act,
                             const floating[:, ::1] m_out,   # IN  (n_pairs, n_features)
                             const floating[:, ::1] x_in,    # IN  (n_x, n_features)
                             const int64_t[::1] pair_x,      # IN  (n_pairs,)
                             const floating[::1] alpha,      # IN  (n_features,)
                             int n_threads=1):
    """Guided backprop, m_in = f'(x) * m_out where m_out > 0 else 0; returns (n_pairs, n_features)."""
    cdef Py_ssize_t n_pairs = m_out.shape[0], n_features = m_out.shape[1], b, nb
    _check_act(act)
    _check_len(alpha.shape[0], n_features, "len(alpha) (one per feature)")
    _check_len(x_in.shape[1], n_features, "x_in.shape[1] (n_features)")
    _check_index(pair_x, n_pairs, x_in.shape[0], "pair_x")
    out = _empty((n_pairs, n_features), <floating>0)
    if n_pairs == 0 or n_features == 0:
        return out
    cdef floating[:, ::1] m_in = out                  # OUT (n_pairs, n_features)
    nb = _n_blocks(n_pairs, n_features, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_guided_backprop_backward(act, &m_out[0, 0], &x_in[0, 0], &pair_x[0], &alpha[0], &m_in[0, 0],
                                    n_features, b * n_pairs // nb, (b + 1) * n_pairs // nb)
    return out


def reveal_cancel_split(int act,
                        const floating[:, ::1] r_in,    # IN  (n_r, n_features)
                        const floating[:, ::1] d_pos,   # IN  (n_pairs, n_features)
                        const floating[:, ::1] d_neg,   # IN  (n_pairs, n_features)
                        const int64_t[::1] pair_r,      # IN  (n_pairs,)
                        const floating[::1] alpha,      # IN  (n_features,)
                        int n_threads=1):
    """RevealCancel output split; returns (dy_pos, dy_neg), each (n_pairs, n_features)."""
    cdef Py_ssize_t n_pairs = d_pos.shape[0], n_features = d_pos.shape[1], b, nb
    _check_act(act)
    _check_len(alpha.shape[0], n_features, "len(alpha) (one per feature)")
    _check_len(r_in.shape[1], n_features, "r_in.shape[1] (n_features)")
    _check_len(d_neg.shape[0], n_pairs, "d_neg.shape[0] (n_pairs)")
    _check_len(d_neg.shape[1], n_features, "d_neg.shape[1] (n_features)")
    _check_index(pair_r, n_pairs, r_in.shape[0], "pair_r")
    out_pos = _empty((n_pairs, n_features), <floating>0)
    out_neg = _empty((n_pairs, n_features), <floating>0)
    if n_pairs == 0 or n_features == 0:
        return out_pos, out_neg
    cdef floating[:, ::1] dy_pos = out_pos            # OUT (n_pairs, n_features)
    cdef floating[:, ::1] dy_neg = out_neg            # OUT (n_pairs, n_features)
    nb = _n_blocks(n_pairs, 4 * n_features, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_reveal_cancel_split(act, &r_in[0, 0], &d_pos[0, 0], &d_neg[0, 0], &pair_r[0], &alpha[0],
                               &dy_pos[0, 0], &dy_neg[0, 0], n_features, b * n_pairs // nb,
                               (b + 1) * n_pairs // nb)
    return out_pos, out_neg


def reveal_cancel_backward(int act,
                           const floating[:, ::1] m_pos,   # IN  (n_pairs, n_features)
                           const floating[:, ::1] m_neg,   # IN  (n_pairs, n_features)
                           const floating[:, ::1] r_in,    # IN  (n_r, n_features)
                           const floating[:, ::1] d_pos,   # IN  (n_pairs, n_features)
                           const floating[:, ::1] d_neg,   # IN  (n_pairs, n_features)
                           const int64_t[::1] pair_r,      # IN  (n_pairs,)
                           const floating[::1] alpha,      # IN  (n_features,)
                           int n_threads=1):
    """RevealCancel rule; returns (m_in_pos, m_in_neg), each (n_pairs, n_features)."""
    cdef Py_ssize_t n_pairs = m_pos.shape[0], n_features = m_pos.shape[1], b, nb
    _check_act(act)
    _check_len(alpha.shape[0], n_features, "len(alpha) (one per feature)")
    _check_len(r_in.shape[1], n_features, "r_in.shape[1] (n_features)")
    _check_len(m_neg.shape[0], n_pairs, "m_neg.shape[0] (n_pairs)")
    _check_len(d_pos.shape[0], n_pairs, "d_pos.shape[0] (n_pairs)")
    _check_len(d_neg.shape[0], n_pairs, "d_neg.shape[0] (n_pairs)")
    _check_len(m_neg.shape[1], n_features, "m_neg.shape[1] (n_features)")
    _check_len(d_pos.shape[1], n_features, "d_pos.shape[1] (n_features)")
    _check_len(d_neg.shape[1], n_features, "d_neg.shape[1] (n_features)")
    _check_index(pair_r, n_pairs, r_in.shape[0], "pair_r")
    out_pos = _empty((n_pairs, n_features), <floating>0)
    out_neg = _empty((n_pairs, n_features), <floating>0)
    if n_pairs == 0 or n_features == 0:
        return out_pos, out_neg
    cdef floating[:, ::1] m_in_pos = out_pos          # OUT (n_pairs, n_features)
    cdef floating[:, ::1] m_in_neg = out_neg          # OUT (n_pairs, n_features)
    nb = _n_blocks(n_pairs, 4 * n_features, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_reveal_cancel_backward(act, &m_pos[0, 0], &m_neg[0, 0], &r_in[0, 0], &d_pos[0, 0], &d_neg[0, 0],
                                  &pair_r[0], &alpha[0], &m_in_pos[0, 0], &m_in_neg[0, 0], n_features,
                                  b * n_pairs // nb, (b + 1) * n_pairs // nb)
    return out_pos, out_neg


def add_activation(int act,
                   const floating[:, ::1] x,        # IN  (n_rows, n_features)
                   const floating[::1] alpha,       # IN  (n_features,)
                   const floating[:, ::1] other,    # IN  (n_rows, n_features)
                   int n_threads=1):
    """other + f(x) elementwise; returns (n_rows, n_features). See ``Ops.add_activation``."""
    cdef Py_ssize_t n_rows = x.shape[0], n_features = x.shape[1], b, nb
    _check_act(act)
    _check_len(alpha.shape[0], n_features, "len(alpha) (one per feature)")
    _check_len(other.shape[0], n_rows, "other.shape[0] (n_rows)")
    _check_len(other.shape[1], n_features, "other.shape[1] (n_features)")
    out = _empty((n_rows, n_features), <floating>0)
    if n_rows == 0 or n_features == 0:
        return out
    cdef floating[:, ::1] y = out                     # OUT (n_rows, n_features)
    nb = _n_blocks(n_rows, n_features, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_add_activation(act, &x[0, 0], &alpha[0], &other[0, 0], &y[0, 0], n_features, b * n_rows // nb,
                          (b + 1) * n_rows // nb)
    return out


def add_rows(const floating[:, :] a,   # IN  (rows, n), each row contiguous
             const floating[:, :] b,   # IN  (rows, n), each row contiguous
             int n_threads=1):
    """a + b elementwise for 2-D arrays whose rows are each one contiguous run at any row stride
    (a crop's view of a channels-last array); returns (rows, n), C-contiguous, with `add`'s bits."""
    cdef Py_ssize_t rows = a.shape[0], n = a.shape[1], r, nb
    _check_len(b.shape[0], rows, "b.shape[0] (rows)")
    _check_len(b.shape[1], n, "b.shape[1] (n)")
    if n > 1 and (a.strides[1] != sizeof(floating) or b.strides[1] != sizeof(floating)):
        raise ValueError(f"add_rows needs rows that are contiguous runs (inner stride {sizeof(floating)}); "
                         f"got inner strides {a.strides[1]} and {b.strides[1]}")
    out = _empty((rows, n), <floating>0)
    if rows == 0 or n == 0:
        return out
    cdef floating[:, ::1] o = out
    nb = _n_blocks(rows, n, n_threads)
    for r in prange(rows, nogil=True, num_threads=nb, schedule="dynamic"):  # a row a task, as _conv_tiles
        fl_add(&a[r, 0], &b[r, 0], &o[r, 0], 0, n)
    return out


def add(const floating[::1] a,   # IN  (n,)
        const floating[::1] b,   # IN  (n,)
        int n_threads=1):
    """a + b elementwise; returns (n,)."""
    cdef Py_ssize_t n = a.shape[0], blk, nb
    _check_len(b.shape[0], n, "b.shape[0]")
    out = _empty((n,), <floating>0)
    if n == 0:
        return out
    cdef floating[::1] o = out
    nb = _n_blocks(n, 1, n_threads)
    for blk in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_add(&a[0], &b[0], &o[0], blk * n // nb, (blk + 1) * n // nb)
    return out


def copy_rows(const floating[:, :] src,   # IN  (n, m), rows anywhere, each one contiguous run
              floating[:, :] dst,         # OUT (n, m), the same
              int n_threads=1):
    """dst[...] = src, row by row (each row a contiguous run; a crop's or a pad's middle)."""
    cdef Py_ssize_t n = src.shape[0], m = src.shape[1], total, blk, nb, lo, hi, r, a, b
    _check_len(dst.shape[0], n, "dst.shape[0]")
    _check_len(dst.shape[1], m, "dst.shape[1]")
    if m > 1 and (src.strides[1] != sizeof(floating) or dst.strides[1] != sizeof(floating)):
        raise ValueError(f"copy_rows needs rows that are contiguous runs; got strides {src.strides[1]} "
                         f"(src) and {dst.strides[1]} (dst) between values of {sizeof(floating)} bytes")
    total = n * m
    if total == 0:
        return
    nb = _n_blocks(total, 1, n_threads)
    for blk in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        lo = blk * total // nb
        hi = (blk + 1) * total // nb
        r = lo // m
        while lo < hi:  # the block's part of each row it meets
            a = lo - r * m
            b = m if hi - r * m > m else hi - r * m
            memcpy(&dst[r, a], &src[r, a], (b - a) * sizeof(floating))
            lo = r * m + b
            r = r + 1


# ---------------------------------------------------------------------------- pair gathers
def pair_delta(const floating[:, ::1] x,      # IN  (n_x, n_features)
               const floating[:, ::1] r,      # IN  (n_r, n_features)
               const int64_t[::1] pair_x,     # IN  (n_pairs,)
               const int64_t[::1] pair_r,     # IN  (n_pairs,)
               int n_threads=1):
    """delta[p] = x[pair_x[p]] - r[pair_r[p]]; returns (n_pairs, n_features)."""
    cdef Py_ssize_t n_pairs = pair_x.shape[0], n_features = x.shape[1], b, nb
    _check_len(r.shape[1], n_features, "r.shape[1] (n_features)")
    _check_index(pair_x, n_pairs, x.shape[0], "pair_x")
    _check_index(pair_r, n_pairs, r.shape[0], "pair_r")
    out = _empty((n_pairs, n_features), <floating>0)
    if n_pairs == 0 or n_features == 0:
        return out
    cdef floating[:, ::1] delta = out                 # OUT (n_pairs, n_features)
    nb = _n_blocks(n_pairs, n_features, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_pair_delta(&x[0, 0], &r[0, 0], &pair_x[0], &pair_r[0], &delta[0, 0], n_features, b * n_pairs // nb,
                      (b + 1) * n_pairs // nb)
    return out


def pair_contributions(const floating[:, ::1] m,      # IN  (n_pairs, n_features)
                       const floating[:, ::1] x,      # IN  (n_x, n_features)
                       const floating[:, ::1] r,      # IN  (n_r, n_features)
                       const int64_t[::1] pair_x,     # IN  (n_pairs,)
                       const int64_t[::1] pair_r,     # IN  (n_pairs,)
                       int n_threads=1):
    """c[p] = m[p] * (x[pair_x[p]] - r[pair_r[p]]); returns (n_pairs, n_features)."""
    cdef Py_ssize_t n_pairs = m.shape[0], n_features = m.shape[1], b, nb
    _check_len(x.shape[1], n_features, "x.shape[1] (n_features)")
    _check_len(r.shape[1], n_features, "r.shape[1] (n_features)")
    _check_index(pair_x, n_pairs, x.shape[0], "pair_x")
    _check_index(pair_r, n_pairs, r.shape[0], "pair_r")
    out = _empty((n_pairs, n_features), <floating>0)
    if n_pairs == 0 or n_features == 0:
        return out
    cdef floating[:, ::1] c = out                     # OUT (n_pairs, n_features)
    nb = _n_blocks(n_pairs, n_features, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_pair_contributions(&m[0, 0], &x[0, 0], &r[0, 0], &pair_x[0], &pair_r[0], &c[0, 0], n_features,
                              b * n_pairs // nb, (b + 1) * n_pairs // nb)
    return out


def mean_over_refs(const floating[:, ::1] a,   # IN  (n_examples * n_refs, n_features)
                   Py_ssize_t n_refs,
                   int n_threads=1):
    """Mean over each example's n_refs consecutive rows (float64 sums); returns (n_examples, n_features)."""
    if n_refs < 1 or a.shape[0] % n_refs != 0:
        raise ValueError(f"a.shape[0] must be a multiple of n_refs >= 1; got {a.shape[0]} rows "
                         f"and n_refs={n_refs}")
    cdef Py_ssize_t n_examples = a.shape[0] // n_refs, n_features = a.shape[1], b, nb
    out = _empty((n_examples, n_features), <floating>0)
    if n_examples == 0 or n_features == 0:
        return out
    cdef floating[:, ::1] mean = out                  # OUT (n_examples, n_features)
    cdef Py_ssize_t e0, e1, f0, f1
    # Blocks of examples, or of features when there are fewer examples than blocks (one IG
    # example per call). Each feature is summed alone, so the split never changes bits.
    cdef bint by_features = n_examples < n_threads
    if by_features:
        nb = _n_blocks(n_features, n_examples * n_refs, n_threads)
    else:
        nb = _n_blocks(n_examples, n_refs * n_features, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        if by_features:
            e0, e1, f0, f1 = 0, n_examples, b * n_features // nb, (b + 1) * n_features // nb
        else:
            e0, e1, f0, f1 = b * n_examples // nb, (b + 1) * n_examples // nb, 0, n_features
        fl_mean_over_refs(&a[0, 0], &mean[0, 0], n_refs, n_features, e0, e1, f0, f1)
    return out


# ---------------------------------------------------------------------------- convolution helpers
def im2col(const floating[:, :, :, ::1] x,   # IN  (n, h, w, c)
           object g,                         # geometry.Geometry
           int n_threads=1):
    """Unfold windows, zero padding; returns cols (n, h_out, w_out, kh*kw*c)."""
    cdef fl_geometry geo = _geometry(g)
    _check_nhwc(x.shape, geo.h, geo.w, geo.c, "x")
    cdef Py_ssize_t n = x.shape[0], n_rows = x.shape[0] * geo.h_out, b, nb
    out = _empty((n, geo.h_out, geo.w_out, geo.kh * geo.kw * geo.c), <floating>0)
    if n_rows == 0 or geo.w_out == 0:
        return out
    cdef floating[:, :, :, ::1] cols = out            # OUT (n, h_out, w_out, kh*kw*c)
    nb = _n_blocks(n_rows, geo.w_out * geo.kh * geo.kw * geo.c, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_im2col(&x[0, 0, 0, 0], &cols[0, 0, 0, 0], geo, b * n_rows // nb, (b + 1) * n_rows // nb)
    return out


def col2im(const floating[:, :, :, ::1] cols,   # IN  (n, h_out, w_out, kh*kw*c)
           object g,                            # geometry.Geometry
           int n_threads=1):
    """Adjoint of im2col, summing overlaps in a fixed order; returns x (n, h, w, c)."""
    cdef fl_geometry geo = _geometry(g)
    _check_nhwc(cols.shape, geo.h_out, geo.w_out, geo.kh * geo.kw * geo.c, "cols")
    cdef Py_ssize_t n = cols.shape[0], n_rows = cols.shape[0] * geo.h, b, nb
    out = _empty((n, geo.h, geo.w, geo.c), <floating>0)
    if n_rows == 0:
        return out
    if geo.h_out == 0 or geo.w_out == 0:
        out[...] = 0
        return out
    cdef floating[:, :, :, ::1] x = out               # OUT (n, h, w, c)
    nb = _n_blocks(n_rows, geo.w * geo.kh * geo.kw * geo.c, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_col2im(&cols[0, 0, 0, 0], &x[0, 0, 0, 0], geo, b * n_rows // nb, (b + 1) * n_rows // nb)
    return out


VECTOR_BYTES = 64  # FL_VEC_BYTES: the padded rows of conv_sparse's kernel
ISA_NAMES = {"auto": FL_ISA_AUTO, "base": FL_ISA_BASE, "avx2": FL_ISA_AVX2, "avx512": FL_ISA_AVX512}


cdef int _isa_code(str name) except? -9:
    """The FL_ISA_* code of an ISA name (a key of ``ISA_NAMES``)."""
    if name not in ISA_NAMES:
        raise ValueError(f"isa must be one of {sorted(ISA_NAMES)}; got {name!r}")
    return ISA_NAMES[name]


def isa(str wanted="auto"):
    """Name of the ISA variant the vectorised kernels run here (at most ``wanted``)."""
    code = fl_isa(_isa_code(wanted))
    return next(k for k, v in ISA_NAMES.items() if v == code and k != "auto")


def conv_sparse(const floating[:, :, :, ::1] m_out,   # IN  (n_pairs, h_out, w_out, c_out)
                const floating[:, :, ::1] wt,         # IN  (kh*kw, c_out, c_pad)
                object g,                             # geometry.Geometry (of the forward conv)
                Py_ssize_t max_nnz, int n_threads=1, str isa="auto"):
    """The convolution adjoint of rows that are mostly zero, skipping the zeros (CpuOps runs it for
    conv_adjoint, and with the taps flipped for conv_forward);
    returns (m_in (n_pairs, h, w, c), done (n_pairs,) bool).

    A pair with more than ``max_nnz`` nonzero multipliers is not computed (done False, its m_in
    rows uninitialised) so the caller can run it densely. ``wt[t, o, :c]`` is
    ``kernel[t*c:(t+1)*c, o]``, zero-padded to c_pad, a multiple of ``VECTOR_BYTES`` / itemsize.
    The sum order is fixed per pair (see ``fl_conv_sparse``): any thread count and any
    batch give the same bits; ``isa`` caps the instruction set ("auto": the best available).
    """
    cdef fl_geometry geo = _geometry(g)
    cdef Py_ssize_t n_pairs = m_out.shape[0], c_out = m_out.shape[3], c_pad = wt.shape[2]
    cdef Py_ssize_t n_cells = geo.h_out * geo.w_out, b, nb
    _check_nhwc(m_out.shape, geo.h_out, geo.w_out, c_out, "m_out")
    cdef Py_ssize_t lanes = VECTOR_BYTES // sizeof(floating)
    if wt.shape[0] != geo.kh * geo.kw or wt.shape[1] != c_out or c_pad < geo.c or c_pad % lanes:
        raise ValueError(f"wt must be ({geo.kh * geo.kw}, {c_out}, c_pad >= {geo.c}, a multiple of "
                         f"{lanes}); got ({wt.shape[0]}, {wt.shape[1]}, {wt.shape[2]})")
    if max_nnz < 0 or c_out * c_pad >= 2 ** 31:
        raise ValueError(f"max_nnz must be >= 0 and c_out * c_pad < 2**31; got {max_nnz}, {c_out} * {c_pad}")
    cdef int isa_code = _isa_code(isa)
    out = _empty((n_pairs, geo.h, geo.w, geo.c), <floating>0)
    done_arr = np.ones(n_pairs, dtype=np.uint8)
    if n_pairs == 0 or out.size == 0:
        return out, done_arr.view(bool)
    if n_cells == 0 or c_out == 0:
        out[...] = 0
        return out, done_arr.view(bool)
    if max_nnz > n_cells * c_out:
        max_nnz = n_cells * c_out
    nb = n_threads if n_threads < n_pairs else n_pairs
    if nb < 1:
        nb = 1
    start_arr = np.empty((nb, n_cells + 1), dtype=np.int64)
    idx_arr = np.empty((nb, max_nnz + 1), dtype=np.int32)
    val_arr = _empty((nb, max_nnz + 1), <floating>0)
    cdef int64_t[:, ::1] start = start_arr
    cdef int32_t[:, ::1] idx = idx_arr
    cdef floating[:, ::1] val = val_arr
    cdef floating[:, :, :, ::1] m_in = out
    cdef uint8_t[::1] done = done_arr
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_conv_sparse(&m_out[0, 0, 0, 0], &wt[0, 0, 0], c_out, c_pad, geo, max_nnz, isa_code,
                               &start[b, 0], &idx[b, 0], &val[b, 0], &m_in[0, 0, 0, 0], &done[0],
                               b * n_pairs // nb, (b + 1) * n_pairs // nb)
    return out, done_arr.view(bool)


VECTOR_BLOCK = FL_VEC_BLOCK  # vectors of output channels per block of conv_direct's packed kernel


def conv_direct(const floating[:, :, :, ::1] x,     # IN  (n, h, w, c)
                const floating[::1] wp,             # IN  packed kernel (see fl_conv_direct)
                object g,                           # geometry.Geometry
                Py_ssize_t c_out, int n_threads=1,
                const floating[::1] bias=None,      # IN  (c_out rounded up to the vector length,)
                str isa="auto",
                const floating[:, ::1] addend=None,    # IN  (n*h_out*w_out, c_out)
                const floating[:, :] residual=None,    # IN  (n*h_out*w_out, c_out), 1-D: or (n, w_out*c_out)
                const floating[:, ::1] relu_grad_of=None,  # IN  (n*h_out*w_out, c_out)
                bint relu=False,
                Py_ssize_t addend_lo=-1,             # >= 0: addend (n, w_a*c_out), cells [lo, lo + w_a)
                tuple rescale=None):                 # (act, x_in, r_in, x_out, r_out, pair_x, pair_r, alpha)
    """A convolution without unfolding: returns (n*h_out*w_out, c_out). ``wp`` is the kernel
    (kh*kw*c, c_out) packed by blocks of ``VECTOR_BLOCK`` vectors of output channels (each
    block (kh*kw, c, block width), the last one narrower, columns past c_out zero). Each output
    value is summed in a fixed order: any thread count and any batch give the same bits.
    ``addend``, when given, is added to every output value as it is stored: (sum + bias) + addend.
    With ``residual``, returns (out, residual + relu(out)): a residual block's ReLU and Add in the
    store, with the bits of ``add_activation``; a 1-D layer's residual may be given as one row
    per example (n, w_out*c_out) whose rows are any stride apart (a crop's view, read in place).
    With ``relu_grad_of`` (a ReLU's input z), returns (out, out * relu'(z)), with the bits of
    ``gradient_backward``. With ``relu``, returns
    (out, relu(out)), with the bits of ``activation_forward``. With ``addend_lo`` >= 0 (1-D
    layers), ``addend`` holds one row per example, the values of output cells [addend_lo,
    addend_lo + w_a) (a crop's multipliers, without their zero padding): the other cells add
    zeros, with the bits of the padded addend. With ``rescale`` = (act, x_in, r_in, x_out, r_out,
    pair_x, pair_r, alpha), ``x`` holds the multipliers of an activation's output and each row is
    first taken through `rescale_backward` with those arguments (row b as pair b) into a row of
    this thread's scratch that the convolution then reads: a Rescale rule and the adjoint of the
    convolution before it in one pass over the pairs, with the bits of the two ops."""
    return _conv_tiles(x, wp, g, c_out, n_threads, bias, isa, addend, residual, relu_grad_of, relu, 0, addend_lo,
                       rescale)


def conv_winograd3(const floating[:, :, :, ::1] x,     # IN  (n, 1, w, c)
                   const floating[::1] wg,             # IN  4 packed kernels (see fl_conv_winograd3)
                   object g,                           # geometry.Geometry: kh = 1, kw = 3, sw = 1
                   Py_ssize_t c_out, int n_threads=1,
                   const floating[::1] bias=None,
                   str isa="auto",
                   const floating[:, ::1] addend=None,
                   const floating[:, :] residual=None,
                   const floating[:, ::1] relu_grad_of=None,
                   bint relu=False,
                   int m=2,                            # output cells per tile: 2 (F(2,3)) or 4 (F(4,3))
                   Py_ssize_t addend_lo=-1,
                   tuple rescale=None):
    """`conv_direct`'s convolution for 1-D layers of three taps and stride 1 (any dilation and
    padding) in 2/3 (``m`` = 2, Winograd's F(2,3)) or 1/2 (``m`` = 4, F(4,3)) of the multiply-adds,
    see fl_conv_winograd3. ``wg`` is the m + 2 transformed kernels G_i (each (c, c_out)), each
    packed as conv_direct's kernel, one after the other. The other arguments and the results are
    conv_direct's (``addend_lo`` and ``rescale`` too); each value is summed in a fixed order (any batch and thread
    count give the same bits) and differs from conv_direct's by rounding."""
    if g.h != 1 or g.kh != 1 or g.kw != 3 or g.sw != 1:
        raise ValueError(f"conv_winograd3 needs a 1-D geometry of 3 taps and stride 1 (h = kh = 1, kw = 3, "
                         f"sw = 1); got h={g.h}, kh={g.kh}, kw={g.kw}, sw={g.sw}")
    if m != 2 and m != 4:
        raise ValueError(f"m (output cells per Winograd tile) must be 2 or 4; got {m}")
    return _conv_tiles(x, wg, g, c_out, n_threads, bias, isa, addend, residual, relu_grad_of, relu, m, addend_lo,
                       rescale)


def conv_narrow(const floating[:, :, :, ::1] x,     # IN  (n, h, w, c)
                const floating[:, ::1] kt,          # IN  (c_out, kh*kw*c): the kernel transposed
                object g,                           # geometry.Geometry
                int n_threads=1,
                const floating[::1] bias=None,      # IN  (c_out,)
                str isa="auto",
                const floating[:, ::1] addend=None):  # IN  (n*h_out*w_out, c_out)
    """conv_direct's convolution for few output channels, vectorised over the input channels
    (see fl_conv_narrow): returns (n*h_out*w_out, c_out). Each value is summed in a fixed order:
    any thread count and any batch give the same bits; + bias, + addend as conv_direct."""
    cdef fl_geometry geo = _geometry(g)
    _check_nhwc(x.shape, geo.h, geo.w, geo.c, "x")
    cdef Py_ssize_t c_out = kt.shape[0], n = x.shape[0], n_rows = x.shape[0] * geo.h_out, b, nb
    if c_out < 1:
        raise ValueError(f"kt.shape[0] (c_out) must be >= 1; got {c_out}")
    _check_len(kt.shape[1], geo.kh * geo.kw * geo.c, "kt.shape[1] (kh*kw*c)")
    if bias is not None:
        _check_len(bias.shape[0], c_out, "len(bias) (c_out)")
    if addend is not None:
        _check_len(addend.shape[0], n * geo.h_out * geo.w_out, "addend.shape[0] (n*h_out*w_out)")
        _check_len(addend.shape[1], c_out, "addend.shape[1] (c_out)")
    cdef int isa_code = _isa_code(isa)
    out = _empty((n * geo.h_out * geo.w_out, c_out), <floating>0)
    if out.size == 0 or geo.c == 0:
        out[...] = 0 if bias is None else np.asarray(bias)
        if addend is not None:
            out += np.asarray(addend)
        return out
    cdef const floating[::1] zero = _zeros(geo.c, <floating>0)
    cdef floating[:, ::1] y = out
    cdef const floating* bias_ptr = NULL
    cdef const floating* addend_ptr = NULL
    if bias is not None:
        bias_ptr = &bias[0]
    if addend is not None:
        addend_ptr = &addend[0, 0]
    nb = _n_blocks(n_rows, geo.w_out * geo.kh * geo.kw * geo.c * c_out // 64 + 1, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_conv_narrow(&x[0, 0, 0, 0], &kt[0, 0], bias_ptr, &zero[0], addend_ptr, geo, c_out, isa_code, &y[0, 0],
                       b * n_rows // nb, (b + 1) * n_rows // nb)
    return out


def _conv_tiles(const floating[:, :, :, ::1] x, const floating[::1] wp, object g, Py_ssize_t c_out,
                int n_threads, const floating[::1] bias, str isa, const floating[:, ::1] addend,
                const floating[:, :] residual, const floating[:, ::1] relu_grad_of, bint relu, int winograd,
                Py_ssize_t addend_lo=-1, tuple rescale=None):
    """conv_direct (``winograd`` 0) or conv_winograd3 (``winograd`` = its m, 2 or 4), after their checks."""
    cdef fl_geometry geo = _geometry(g)
    _check_nhwc(x.shape, geo.h, geo.w, geo.c, "x")
    # rescale: each input row through the Rescale rule first, into this thread's scratch
    cdef Py_ssize_t n_feat = geo.h * geo.w * geo.c
    cdef int r_act = 0
    cdef const floating[:, ::1] r_xin
    cdef const floating[:, ::1] r_rin
    cdef const floating[:, ::1] r_xout
    cdef const floating[:, ::1] r_rout
    cdef const int64_t[::1] r_px
    cdef const int64_t[::1] r_pr
    cdef const floating[::1] r_alpha
    if rescale is not None:
        if len(rescale) != 8:
            raise ValueError(f"rescale must be (act, x_in, r_in, x_out, r_out, pair_x, pair_r, alpha); got "
                             f"{len(rescale)} items")
        if geo.h != 1 or geo.h_out != 1:
            raise ValueError(f"rescale needs a 1-D layer (h = h_out = 1); got h={geo.h}, h_out={geo.h_out}")
        r_act = rescale[0]
        r_xin, r_rin, r_xout, r_rout, r_px, r_pr, r_alpha = rescale[1:]
        _check_rescale(r_act, x.shape[0], n_feat, r_xin, r_rin, r_xout, r_rout, r_px, r_pr, r_alpha, "rescale ",
                       "h*w*c of x")
    cdef Py_ssize_t lanes = VECTOR_BYTES // sizeof(floating)
    cdef Py_ssize_t c_pad = (c_out + lanes - 1) // lanes * lanes
    cdef Py_ssize_t n = x.shape[0], n_rows = x.shape[0] * geo.h_out, b, nb, n_scratch = 0
    if c_out < 1:
        raise ValueError(f"c_out must be >= 1; got {c_out}")
    if winograd:
        _check_len(wp.shape[0], (winograd + 2) * geo.c * c_pad, f"len(wg) ({winograd + 2} * c * c_out padded)")
    else:
        _check_len(wp.shape[0], geo.kh * geo.kw * geo.c * c_pad, "len(wp) (kh*kw*c * c_out padded)")
    if bias is not None:
        _check_len(bias.shape[0], c_pad, "len(bias) (c_out padded)")
    cdef Py_ssize_t addend_w = 0  # with addend_lo: output cells each addend row holds
    if addend is not None and addend_lo >= 0:
        if geo.h_out != 1:
            raise ValueError(f"addend_lo (a window of each output row) needs a 1-D layer (h_out = 1); got h_out={geo.h_out}")
        _check_len(addend.shape[0], n, "addend.shape[0] (n: one row per example with addend_lo)")
        if addend.shape[1] % c_out or addend_lo + addend.shape[1] // c_out > geo.w_out:
            raise ValueError(f"addend rows ({addend.shape[1]} values) must hold whole cells of c_out={c_out} "
                             f"channels from cell addend_lo={addend_lo} within w_out={geo.w_out}")
        addend_w = addend.shape[1] // c_out
        if addend_w == 0:
            addend = None  # an empty window adds nothing (and has no values to point at)
    elif addend is not None:
        _check_len(addend.shape[0], n * geo.h_out * geo.w_out, "addend.shape[0] (n*h_out*w_out)")
        _check_len(addend.shape[1], c_out, "addend.shape[1] (c_out)")
    if (residual is not None) + (relu_grad_of is not None) + bool(relu) > 1:
        raise ValueError("give at most one of residual, relu_grad_of and relu")
    cdef int epi = (FL_EPI_RESIDUAL_RELU if residual is not None else FL_EPI_RELU_GRAD if relu_grad_of is not None
                    else FL_EPI_RELU)
    aux = np.asarray(residual) if residual is not None else relu_grad_of
    # A 1-D layer's residual may also come as one row per example, (n, w_out*c_out), rows apart by
    # any stride (a crop's view of its input): each row's call then gets its own pointers.
    cdef bint aux_rows = (residual is not None and geo.h_out == 1 and residual.shape[0] == n
                          and residual.shape[1] == geo.w_out * c_out)
    if aux is not None and not aux_rows:
        name = "residual" if residual is not None else "relu_grad_of"
        _check_len(aux.shape[0], n * geo.h_out * geo.w_out, f"{name}.shape[0] (n*h_out*w_out)")
        _check_len(aux.shape[1], c_out, f"{name}.shape[1] (c_out)")
    cdef Py_ssize_t item = sizeof(floating)
    if residual is not None and residual.shape[0] > 0 and (
            (residual.shape[1] > 1 and residual.strides[1] != item)
            or (not aux_rows and residual.shape[0] > 1 and residual.strides[0] != residual.shape[1] * item)):
        raise ValueError(f"residual must have contiguous rows (C-contiguous unless one row per example); got "
                         f"strides {(residual.strides[0], residual.strides[1])} for shape "
                         f"{(residual.shape[0], residual.shape[1])}")
    cdef int isa_code = _isa_code(isa)
    out = _empty((n * geo.h_out * geo.w_out, c_out), <floating>0)
    out2 = None if aux is None and not relu else _empty((n * geo.h_out * geo.w_out, c_out), <floating>0)
    if out.size == 0 or geo.c == 0:
        out[...] = 0 if bias is None else np.asarray(bias)[:c_out]
        if addend is not None and addend_lo >= 0:
            out.reshape(n, geo.w_out, c_out)[:, addend_lo:addend_lo + addend_w] += np.asarray(addend).reshape(
                n, addend_w, c_out)
        elif addend is not None:
            out += np.asarray(addend)
        if out2 is None:
            return out
        if relu:
            out2[...] = np.where(out > 0, out, 0)
            return out, out2
        a = np.asarray(aux).reshape(out.shape)
        out2[...] = a + np.maximum(out, 0) if residual is not None else out * (a > 0)
        return out, out2
    cdef const floating[::1] zero = _zeros(geo.c, <floating>0)
    cdef floating[:, ::1] y = out
    cdef const floating* bias_ptr = NULL
    cdef const floating* addend_ptr = NULL
    cdef const floating* aux_ptr = NULL
    cdef floating* out2_ptr = NULL
    cdef const floating[:, :] aux_view
    cdef floating[:, ::1] out2_view
    if bias is not None:
        bias_ptr = &bias[0]
    if addend is not None:
        addend_ptr = &addend[0, 0]
    if aux is not None:
        aux_view = aux
        aux_ptr = &aux_view[0, 0]
    if out2 is not None:
        out2_view = out2
        out2_ptr = &out2_view[0, 0]
    # One output row a task, handed out as threads come free: a core that the host slows does not
    # hold up the others (each row is computed alone, so the schedule changes no bits).
    cdef int nt = <int>_n_blocks(n_rows, geo.w_out * geo.kh * geo.kw * geo.c * c_out // 64 + 1, n_threads)
    cdef int t
    # conv_direct reads a window's values from a row of them between zeros in this thread's scratch;
    # conv_winograd3 reads them in place
    cdef Py_ssize_t cells = geo.w_out * c_out, row_scratch = cells if addend_w and not winograd else 0, q
    cdef Py_ssize_t win_lo = addend_lo if addend_w else 0, win_w = addend_w if addend_w else -1
    cdef Py_ssize_t in_scratch = n_feat if rescale is not None else 0
    cdef bint per_row = aux_rows or addend_w > 0 or rescale is not None
    cdef floating* in_b
    cdef const floating* xb
    cdef const floating* addend_b
    cdef const floating* aux_b
    cdef floating* out2_b
    cdef floating* yb
    cdef floating* pad_b
    if winograd:
        n_scratch = fl_conv_winograd3_scratch_size(geo, c_out, winograd)
    n_scratch = n_scratch + row_scratch + in_scratch
    scratch_arr = _empty((max(nt * n_scratch, 1),), <floating>0)
    cdef floating[::1] scratch = scratch_arr
    for b in prange(n_rows, nogil=True, num_threads=nt, schedule="dynamic"):
        t = threadid()
        xb, yb, addend_b, aux_b, out2_b, q = &x[0, 0, 0, 0], &y[0, 0], addend_ptr, aux_ptr, out2_ptr, b
        if per_row:  # (1-D) example b as a batch of one (row 0), with its own residual and addend rows
            xb, yb, q = &x[b, 0, 0, 0], &y[0, 0] + b * cells, 0
            if in_scratch:  # the Rescale rule first, pair b's row into this thread's scratch
                in_b = &scratch[t * n_scratch + n_scratch - row_scratch - in_scratch]
                fl_rescale_backward(r_act, &x[b, 0, 0, 0], &r_xin[0, 0], &r_rin[0, 0], &r_xout[0, 0], &r_rout[0, 0],
                                    &r_px[b], &r_pr[b], &r_alpha[0], in_b, n_feat, 0, 1)
                xb = in_b
            if out2_ptr != NULL:
                out2_b = out2_ptr + b * cells
            if aux_rows:
                aux_b = &aux_view[b, 0]
            elif aux_ptr != NULL:
                aux_b = aux_ptr + b * cells
            if addend_ptr != NULL:
                addend_b = addend_ptr + b * cells
        if addend_w and winograd:
            addend_b = addend_ptr + b * addend_w * c_out
        elif addend_w:  # the window's values between zeros, in this thread's row of scratch
            pad_b = &scratch[t * n_scratch + n_scratch - row_scratch]
            memset(pad_b, 0, addend_lo * c_out * sizeof(floating))
            memcpy(pad_b + addend_lo * c_out, addend_ptr + b * addend_w * c_out, addend_w * c_out * sizeof(floating))
            memset(pad_b + (addend_lo + addend_w) * c_out, 0,
                   (geo.w_out - addend_lo - addend_w) * c_out * sizeof(floating))
            addend_b = pad_b
        if winograd:
            fl_conv_winograd3(xb, &wp[0], bias_ptr, &zero[0], addend_b, aux_b, out2_b, epi, geo,
                              c_out, winograd, isa_code, win_lo, win_w, &scratch[t * n_scratch], yb, q, q + 1)
        else:
            fl_conv_direct(xb, &wp[0], bias_ptr, &zero[0], addend_b, aux_b, out2_b, epi, geo,
                           c_out, isa_code, yb, q, q + 1)
    return out if out2 is None else (out, out2)


def onehot_cells(const floating[:, :, :, ::1] x,   # IN  (n, h, w, c)
                 int n_threads=1):
    """(hot (n, h, w) int32, ok (n,) bool): ``hot`` is the channel of each cell that is 1 (-1 when
    all are 0) and ``ok`` whether the row is one-hot (every value 0 or 1, at most one 1 per
    cell); ``hot`` rows that are not are unspecified."""
    cdef Py_ssize_t n = x.shape[0], cells = x.shape[1] * x.shape[2], c = x.shape[3], b
    hot_arr = np.empty((n, x.shape[1], x.shape[2]), dtype=np.int32)
    ok_arr = np.zeros(n, dtype=np.uint8)
    if n == 0 or cells == 0:
        ok_arr[...] = 1
        return hot_arr, ok_arr.view(bool)
    cdef int32_t[:, :, ::1] hot = hot_arr
    cdef uint8_t[::1] ok = ok_arr
    cdef Py_ssize_t nb = _n_blocks(n, cells * c, n_threads)
    for b in prange(n, nogil=True, num_threads=nb, schedule="static"):
        ok[b] = fl_onehot_cells(&x[b, 0, 0, 0], cells, c, &hot[b, 0, 0])
    return hot_arr, ok_arr.view(bool)


def conv_forward_onehot(const int32_t[:, :, ::1] hot,      # IN  (n, h, w) from onehot_cells
                        const floating[:, ::1] kernel,     # IN  (kh*kw*c, c_pad), columns past c_out zero
                        object g,                          # geometry.Geometry
                        Py_ssize_t c_out, int n_threads=1,
                        const floating[::1] bias=None,     # IN  (c_pad,)
                        str isa="auto"):
    """The convolution of one-hot rows, as a gather of kernel rows: returns (n*h_out*w_out, c_out).
    Every sum runs in tap order (adds only): any batch, thread count or ISA gives the same bits."""
    cdef fl_geometry geo = _geometry(g)
    cdef Py_ssize_t lanes = VECTOR_BYTES // sizeof(floating)
    cdef Py_ssize_t c_pad = (c_out + lanes - 1) // lanes * lanes
    cdef Py_ssize_t n = hot.shape[0], n_rows = hot.shape[0] * geo.h_out, b, nb
    if c_out < 1:
        raise ValueError(f"c_out must be >= 1; got {c_out}")
    if hot.shape[1] != geo.h or hot.shape[2] != geo.w:
        raise ValueError(f"hot must have shape (n, {geo.h}, {geo.w}); got {(n, hot.shape[1], hot.shape[2])}")
    _check_len(kernel.shape[0], geo.kh * geo.kw * geo.c, "kernel.shape[0] (kh*kw*c)")
    _check_len(kernel.shape[1], c_pad, "kernel.shape[1] (c_out padded)")
    if bias is not None:
        _check_len(bias.shape[0], c_pad, "len(bias) (c_out padded)")
    cdef int isa_code = _isa_code(isa)
    cdef Py_ssize_t q, n_cells = n * geo.h * geo.w
    cdef const int32_t* h = &hot[0, 0, 0] if n_cells > 0 else NULL
    cdef int32_t lo = -1, hi = -1
    with nogil:
        for q in range(n_cells):
            lo = h[q] if h[q] < lo else lo
            hi = h[q] if h[q] > hi else hi
    if lo < -1 or hi >= geo.c:
        raise ValueError(f"hot channels must be in [-1, {geo.c}); got {lo if lo < -1 else hi}")
    out = _empty((n * geo.h_out * geo.w_out, c_out), <floating>0)
    if out.size == 0:
        return out
    cdef const floating[::1] zero = _zeros(c_pad, <floating>0)
    cdef floating[:, ::1] y = out
    cdef const floating* bias_ptr = NULL
    if bias is not None:
        bias_ptr = &bias[0]
    nb = _n_blocks(n_rows, geo.w_out * geo.kh * geo.kw * c_out // 16 + 1, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_conv_forward_onehot(&hot[0, 0, 0], &kernel[0, 0], &zero[0], bias_ptr, geo, c_out, c_pad, isa_code,
                       &y[0, 0], b * n_rows // nb, (b + 1) * n_rows // nb)
    return out


cdef inline fl_geometry _cells_geometry(Py_ssize_t cells, Py_ssize_t c) noexcept nogil:
    """A 1x1 convolution over one row of ``cells`` cells of ``c`` channels (a block of GEMM rows)."""
    cdef fl_geometry g
    g.h, g.w, g.c = 1, cells, c
    g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl = 1, 1, 1, 1, 1, 1, 0, 0
    g.h_out, g.w_out = 1, cells
    return g


def matmul_direct(const floating[:, ::1] a,   # IN  (m, k)
                  const floating[::1] wp,      # IN  b (k, n) packed as conv_direct's kernel
                  Py_ssize_t n, int n_threads=1):
    """a @ b through conv_direct's tiles (a 1x1 convolution over m cells): returns (m, n). Threads
    take contiguous ranges of rows; each value's sum order is fixed (bits depend on neither m nor
    the threads)."""
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], t, nb
    cdef Py_ssize_t lanes = VECTOR_BYTES // sizeof(floating)
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    _check_len(wp.shape[0], k * ((n + lanes - 1) // lanes * lanes), "len(wp) (k * n padded)")
    out = _empty((m, n), <floating>0)
    if m == 0:
        return out
    if k == 0:
        out[...] = 0
        return out
    cdef const floating[::1] zero = _zeros(k, <floating>0)
    cdef floating[:, ::1] y = out
    nb = _n_blocks(m, k * n // 16 + 1, n_threads)
    cdef Py_ssize_t m0, m1
    for t in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        m0 = t * m // nb  # scalars assigned in the loop are thread-private; a struct field is not,
        m1 = (t + 1) * m // nb  # so each call gets its geometry by value
        if m1 > m0:
            fl_conv_direct(&a[m0, 0], &wp[0], NULL, &zero[0], NULL, NULL, NULL, 0, _cells_geometry(m1 - m0,
                           k), n, FL_ISA_AUTO, &y[m0, 0], 0, 1)
    return out


# ---------------------------------------------------------------------------- pooling
def max_pool_forward(const floating[:, :, :, ::1] x,   # IN  (n, h, w, c)
                     object g,                         # geometry.Geometry
                     int n_threads=1):
    """Max over each window, padding ignored; returns (n, h_out, w_out, c)."""
    cdef fl_geometry geo = _geometry(g)
    _check_nhwc(x.shape, geo.h, geo.w, geo.c, "x")
    cdef Py_ssize_t n = x.shape[0], n_rows = x.shape[0] * geo.h_out, b, nb
    out = _empty((n, geo.h_out, geo.w_out, geo.c), <floating>0)
    if n_rows == 0 or geo.w_out == 0:
        return out
    cdef floating[:, :, :, ::1] y = out               # OUT (n, h_out, w_out, c)
    nb = _n_blocks(n_rows, geo.w_out * geo.kh * geo.kw * geo.c, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_max_pool_forward(&x[0, 0, 0, 0], &y[0, 0, 0, 0], geo, b * n_rows // nb, (b + 1) * n_rows // nb)
    return out


def avg_pool_forward(const floating[:, :, :, ::1] x,   # IN  (n, h, w, c)
                     object g,                         # geometry.Geometry
                     int n_threads=1):
    """Mean over the valid cells of each window; returns (n, h_out, w_out, c)."""
    cdef fl_geometry geo = _geometry(g)
    _check_nhwc(x.shape, geo.h, geo.w, geo.c, "x")
    cdef Py_ssize_t n = x.shape[0], n_rows = x.shape[0] * geo.h_out, b, nb
    out = _empty((n, geo.h_out, geo.w_out, geo.c), <floating>0)
    if n_rows == 0 or geo.w_out == 0:
        return out
    cdef floating[:, :, :, ::1] y = out               # OUT (n, h_out, w_out, c)
    nb = _n_blocks(n_rows, geo.w_out * geo.kh * geo.kw * geo.c, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_avg_pool_forward(&x[0, 0, 0, 0], &y[0, 0, 0, 0], geo, b * n_rows // nb, (b + 1) * n_rows // nb)
    return out


def avg_pool_backward(const floating[:, :, :, ::1] m_out,   # IN  (n_pairs, h_out, w_out, c)
                      object g,                             # geometry.Geometry
                      int n_threads=1):
    """Adjoint of avg_pool_forward; returns m_in (n_pairs, h, w, c)."""
    cdef fl_geometry geo = _geometry(g)
    _check_nhwc(m_out.shape, geo.h_out, geo.w_out, geo.c, "m_out")
    cdef Py_ssize_t n_pairs = m_out.shape[0], n_rows = m_out.shape[0] * geo.h, b, nb
    out = _empty((n_pairs, geo.h, geo.w, geo.c), <floating>0)
    if n_rows == 0:
        return out
    if geo.h_out == 0 or geo.w_out == 0:
        out[...] = 0
        return out
    cdef floating[:, :, :, ::1] m_in = out            # OUT (n_pairs, h, w, c)
    nb = _n_blocks(n_rows, geo.w * geo.kh * geo.kw * geo.c, n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_avg_pool_backward(&m_out[0, 0, 0, 0], &m_in[0, 0, 0, 0], geo, b * n_rows // nb,
                             (b + 1) * n_rows // nb)
    return out


def max_pool_backward(const floating[:, :, :, ::1] m_out,   # IN  (n_pairs, h_out, w_out, c)
                      const floating[:, :, :, ::1] x,       # IN  (n_x, h, w, c)
                      const floating[:, :, :, ::1] ref,     # IN  (n_r, h, w, c)
                      const int64_t[::1] pair_x,            # IN  (n_pairs,)
                      const int64_t[::1] pair_r,            # IN  (n_pairs,)
                      object g,                             # geometry.Geometry
                      bint exact,
                      int n_threads=1, str isa="auto"):
    """Route window multipliers to arg-max cells; returns m_in (n_pairs, h, w, c).

    One thread owns each pair's whole output row, so there are no races and the sum order is
    fixed. See ``Ops.max_pool_backward`` for ``exact``. ``isa`` caps the instruction set; every
    variant gives the same bits.
    """
    cdef int isa_code = _isa_code(isa)
    cdef fl_geometry geo = _geometry(g)
    _check_nhwc(m_out.shape, geo.h_out, geo.w_out, geo.c, "m_out")
    _check_nhwc(x.shape, geo.h, geo.w, geo.c, "x")
    _check_nhwc(ref.shape, geo.h, geo.w, geo.c, "ref")
    cdef Py_ssize_t n_pairs = m_out.shape[0], b, nb
    _check_index(pair_x, n_pairs, x.shape[0], "pair_x")
    _check_index(pair_r, n_pairs, ref.shape[0], "pair_r")
    out = _empty((n_pairs, geo.h, geo.w, geo.c), <floating>0)
    if n_pairs == 0:
        return out
    if geo.h_out == 0 or geo.w_out == 0:
        out[...] = 0
        return out
    cdef floating[:, :, :, ::1] m_in = out            # OUT (n_pairs, h, w, c)
    cdef int exact_c = exact
    nb = _n_blocks(n_pairs, (2 if exact else 1) * geo.h_out * geo.w_out * geo.kh * geo.kw * geo.c,
                   n_threads)
    for b in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_max_pool_backward(&m_out[0, 0, 0, 0], &x[0, 0, 0, 0], &ref[0, 0, 0, 0], &pair_x[0], &pair_r[0],
                             geo, exact_c, isa_code, &m_in[0, 0, 0, 0], b * n_pairs // nb,
                             (b + 1) * n_pairs // nb)
    return out


# ------------------------------------------------------------------------------- GEMM
# The blocked GEMM and the fused convolution are C drivers (fl_matmul, fl_conv_forward in
# csrc/fl_kernels_impl.h) that call scipy's BLAS through this table.
cdef fl_blas _BLAS
_BLAS.sgemm = sgemm
_BLAS.dgemm = dgemm


cdef bint _gemm_operands(object b, object out, Py_ssize_t m, Py_ssize_t k, Py_ssize_t block_rows) except -1:
    """Check the operands of a blocked GEMM into ``out`` (m, n): ``b`` must be (k, >= n) of out's
    dtype, C- or F-contiguous, and ``block_rows`` >= 1. Returns True when b is F-contiguous."""
    out = np.asarray(out)
    if out.shape[0] != m:
        raise ValueError(f"out must have {m} rows; got {out.shape[0]}")
    n = out.shape[1]
    if b.ndim != 2 or b.shape[0] != k or b.shape[1] < n or b.dtype != out.dtype:
        raise ValueError(f"b must be ({k}, >= {n}) of dtype {out.dtype}; got {b.shape} {b.dtype}")
    cdef bint b_fortran = b.flags.f_contiguous and not b.flags.c_contiguous
    if not (b.flags.c_contiguous or b_fortran):
        raise ValueError("b must be C- or F-contiguous")
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1; got {block_rows}")
    return b_fortran


cdef tuple _gemm_scratch(object out, int n_threads, Py_ssize_t n_tasks, Py_ssize_t length):
    """(threads, per-thread scratch (nb, length)) of out's dtype for a blocked GEMM of
    ``n_tasks`` BLAS calls: one thread per task at most."""
    cdef Py_ssize_t nb = n_threads if n_threads < n_tasks else n_tasks
    if nb < 1:
        nb = 1
    return nb, np.empty((nb, length), dtype=np.asarray(out).dtype)


def matmul(const floating[:, ::1] a,   # IN  (m, k), C-contiguous
           object b,                   # IN  (k, n_pad) numpy array, C- or F-contiguous, a's dtype
           floating[:, ::1] out,       # OUT (m, n), n <= n_pad
           Py_ssize_t block_rows, int n_threads, Py_ssize_t panel_cols=0):
    """out = (a @ b)[:, :n] in fixed blocks of ``block_rows`` rows and, when ``panel_cols`` > 0
    (a multiple of 16), column panels of that width; the (block, panel) tasks are spread over
    OpenMP threads, so a few rows of a wide layer still keep every thread busy.

    Every task is one BLAS call whose shape depends only on (block_rows, k, panel), so an
    element's bits do not depend on m or on the thread count (given one BLAS thread per call:
    run inside ``CpuOps.compute_context``).
    """
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = out.shape[1]
    cdef bint b_fortran = _gemm_operands(b, out, m, k, block_rows)
    cdef Py_ssize_t n_pad = b.shape[1]
    if panel_cols < 0 or panel_cols % 16:
        raise ValueError(f"panel_cols must be 0 or a positive multiple of 16; got {panel_cols}")
    if panel_cols == 0 or panel_cols > n_pad:
        panel_cols = n_pad
    cdef Py_ssize_t n_blocks = (m + block_rows - 1) // block_rows
    if n_blocks == 0 or k == 0:
        if k == 0:
            np.asarray(out)[...] = 0
        return
    cdef Py_ssize_t n_tasks = fl_matmul_n_tasks(m, n_pad, block_rows, panel_cols), nb
    nb, scratch_arr = _gemm_scratch(out, n_threads, n_tasks,
                                    fl_matmul_scratch_size(k, n_pad, block_rows, panel_cols))
    cdef floating[:, ::1] scratch = scratch_arr
    cdef const floating[:, ::1] b_view = b if not b_fortran else b.T
    cdef const floating* b_ptr = &b_view[0, 0]
    cdef Py_ssize_t t
    for t in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        fl_matmul(_BLAS, &a[0, 0], b_ptr, b_fortran, m, k, n, n_pad, block_rows, panel_cols, &scratch[t, 0],
                  &out[0, 0], t * n_tasks // nb, (t + 1) * n_tasks // nb)


def conv_forward(const floating[:, :, :, ::1] x,   # IN  (n, h, w, c)
                 object b,                         # IN  (kh*kw*c, n_pad) numpy array, C- or F-contiguous
                 floating[:, ::1] out,             # OUT (n*h_out*w_out, n_out), n_out <= n_pad
                 object g,                         # geometry.Geometry
                 Py_ssize_t block_rows, int n_threads,
                 const floating[::1] bias=None,    # IN  (n_out,), optional
                 bint per_example=False):
    """out = im2col(x) @ b (+ bias), fused: each block of ``block_rows`` output cells is unfolded into a
    per-thread buffer and multiplied by one fixed-shape BLAS call while it is still in cache.

    Bitwise equal to ``matmul(im2col(x), b, out, block_rows, ...)`` (then ``+= bias``): the
    same BLAS calls on the same rows, without the (n·h_out·w_out, kh·kw·c) unfolded array.
    With ``per_example`` the blocks start again at each example's first cell (its last block
    padded with zero rows), so that a cell sits at the same position of its BLAS call whatever
    the batch: a BLAS whose rows' bits depend on that position still gives rows that depend on
    their example alone.
    """
    cdef fl_geometry geo = _geometry(g)
    _check_nhwc(x.shape, geo.h, geo.w, geo.c, "x")
    cdef Py_ssize_t m = x.shape[0] * geo.h_out * geo.w_out, k = geo.kh * geo.kw * geo.c, n = out.shape[1]
    cdef bint b_fortran = _gemm_operands(b, out, m, k, block_rows)
    cdef const floating* bias_ptr = NULL
    if bias is not None:
        if bias.shape[0] != n:
            raise ValueError(f"bias must have {n} values; got {bias.shape[0]}")
        bias_ptr = &bias[0]
    cdef Py_ssize_t n_pad = b.shape[1]
    cdef Py_ssize_t cells = geo.h_out * geo.w_out, x_step = geo.h * geo.w * geo.c
    cdef Py_ssize_t per = (cells + block_rows - 1) // block_rows  # blocks per example (per_example)
    cdef Py_ssize_t n_blocks = x.shape[0] * per if per_example else (m + block_rows - 1) // block_rows
    if n_blocks == 0 or k == 0:
        if k == 0:
            np.asarray(out)[...] = 0
        return
    cdef Py_ssize_t nb
    nb, scratch_arr = _gemm_scratch(out, n_threads, n_blocks, fl_conv_forward_scratch_size(geo, n_pad, block_rows))
    cdef floating[:, ::1] scratch = scratch_arr
    cdef const floating[:, ::1] b_view = b if not b_fortran else b.T
    cdef const floating* b_ptr = &b_view[0, 0]
    cdef const floating* x_ptr = &x[0, 0, 0, 0]
    cdef floating* out_ptr = &out[0, 0]
    cdef Py_ssize_t t, task, e
    for t in prange(nb, nogil=True, num_threads=nb, schedule="static"):
        if per_example:  # task = (example e, its block task - e*per), one BLAS call each
            for task in range(t * n_blocks // nb, (t + 1) * n_blocks // nb):
                e = task // per
                fl_conv_forward(_BLAS, x_ptr + e * x_step, geo, b_ptr, b_fortran, n, n_pad, bias_ptr, cells,
                                block_rows, &scratch[t, 0], out_ptr + e * cells * n, task - e * per,
                                task - e * per + 1)
        else:
            fl_conv_forward(_BLAS, x_ptr, geo, b_ptr, b_fortran, n, n_pad, bias_ptr, m, block_rows,
                            &scratch[t, 0], out_ptr, t * n_blocks // nb, (t + 1) * n_blocks // nb)
