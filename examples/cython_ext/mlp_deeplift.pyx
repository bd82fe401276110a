# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""DeepLIFT-Rescale contributions of a two-layer perceptron (Dense -> ReLU -> Dense), computed by
fastlift's C kernels from Cython, chunk by chunk in one ``nogil`` loop.

Built against ``fastlift.get_include()`` (see setup.py): that folder holds the C API
(``fastlift.h``) and its Cython declarations (``fastlift_capi.pxd``), whose fused ``fl_<op>``
functions serve float32 and float64 alike. The GEMMs run on scipy's BLAS (``cython_blas``),
passed to the kernels in an ``fl_blas`` table.

Per chunk of examples (each with its K references; pair p = e*K + k):
  forward once per unique row:  z = x @ w1 + b1, a = relu(z) (the output layer's own forward,
                                y = a @ w2 + b2, is not needed: it is linear)
  backward per pair:            m_a = onehot(target) @ w2^T, m_z = Rescale(relu) of m_a,
                                m_x = m_z @ w1^T
  contributions:                mean over k of m_x * (x - ref_k)
"""

from libc.stdint cimport int64_t
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm

from fastlift_capi cimport *

import numpy as np

cdef fl_blas BLAS
BLAS.sgemm = sgemm
BLAS.dgemm = dgemm

# Rows per BLAS call: the GEMM drivers issue every call with exactly this many rows.
cdef int64_t BLOCK_ROWS = 64


cdef void _dense(const floating *a, const floating *w, bint transposed, const floating *bias, int64_t rows,
                 int64_t k, int64_t n, floating *scratch, floating *out) noexcept nogil:
    """out (rows, n) = a (rows, k) @ w (+ bias); w is (k, n), or (n, k) read transposed."""
    fl_matmul(BLAS, a, w, transposed, rows, k, n, n, BLOCK_ROWS, 0, scratch, out, 0,
              fl_matmul_n_tasks(rows, n, BLOCK_ROWS, 0))
    cdef int64_t r, j
    if bias != NULL:
        for r in range(rows):
            for j in range(n):
                out[r * n + j] = out[r * n + j] + bias[j]


def contributions(const floating[:, ::1] x,        # IN  (n, d_in)
                  const floating[:, :, ::1] refs,  # IN  (n, K, d_in)
                  const floating[:, ::1] w1,       # IN  (d_in, d_hidden)
                  const floating[::1] b1,          # IN  (d_hidden,)
                  const floating[:, ::1] w2,       # IN  (d_hidden, d_out)
                  const floating[::1] b2,          # IN  (d_out,)
                  int target, int chunk=16):
    """Contributions (n, d_in) of every input to output unit ``target``, mean over the references."""
    cdef int64_t n = x.shape[0], d_in = x.shape[1], n_refs = refs.shape[1]
    cdef int64_t d_hidden = w1.shape[1], d_out = w2.shape[1]
    if refs.shape[0] != n or refs.shape[2] != d_in or n_refs < 1:
        raise ValueError(f"refs must have shape ({n}, K >= 1, {d_in}); got {np.shape(refs)}")
    if w1.shape[0] != d_in or b1.shape[0] != d_hidden or w2.shape[0] != d_hidden or b2.shape[0] != d_out:
        raise ValueError("weights must be w1 (d_in, d_hidden), b1 (d_hidden,), w2 (d_hidden, d_out), b2 (d_out,)")
    if not 0 <= target < d_out or chunk < 1:
        raise ValueError(f"target must be in [0, {d_out}) and chunk >= 1; got {target}, {chunk}")
    dt = np.asarray(x).dtype
    out = np.zeros((n, d_in), dtype=dt)
    if n == 0:
        return out
    # buffers for one chunk, allocated once: the loop below runs without Python
    cdef int64_t rows = chunk * (1 + n_refs), pairs = chunk * n_refs
    cdef floating[::1] z = np.empty(rows * d_hidden, dt), a = np.empty(rows * d_hidden, dt)
    cdef floating[::1] m_y = np.empty(pairs * d_out, dt)
    cdef floating[::1] m_a = np.empty(pairs * d_hidden, dt), m_z = np.empty(pairs * d_hidden, dt)
    cdef floating[::1] m_x = np.empty(pairs * d_in, dt), c = np.empty(pairs * d_in, dt)
    cdef floating[::1] zeros = np.zeros(d_hidden, dt)
    cdef floating[::1] scratch = np.empty(max(fl_matmul_scratch_size(k, m, BLOCK_ROWS, 0)
                                              for k, m in ((d_in, d_hidden), (d_hidden, d_out), (d_out, d_hidden),
                                                           (d_hidden, d_in))), dt)
    cdef int64_t[::1] pair_x = np.empty(pairs, np.int64), pair_r = np.empty(pairs, np.int64)
    cdef floating[:, ::1] res = out
    cdef int64_t e0 = 0, ne, p, np_, h = d_hidden
    with nogil:
        while e0 < n:
            ne = min(<int64_t>chunk, n - e0)
            np_ = ne * n_refs
            # forward: the chunk's examples (rows 0 .. ne-1), then its references (rows ne ..)
            _dense(&x[e0, 0], &w1[0, 0], False, &b1[0], ne, d_in, h, &scratch[0], &z[0])
            _dense(&refs[e0, 0, 0], &w1[0, 0], False, &b1[0], np_, d_in, h, &scratch[0], &z[ne * h])
            fl_activation_forward(FL_ACT_RELU, &z[0], &zeros[0], &a[0], h, 0, ne + np_)
            for p in range(np_):
                pair_x[p] = p // n_refs
                pair_r[p] = p
            # backward: the output unit's multipliers through w2, the ReLU and w1
            for p in range(np_ * d_out):
                m_y[p] = 1 if p % d_out == target else 0
            _dense(&m_y[0], &w2[0, 0], True, NULL, np_, d_out, h, &scratch[0], &m_a[0])
            fl_rescale_backward(FL_ACT_RELU, &m_a[0], &z[0], &z[ne * h], &a[0], &a[ne * h], &pair_x[0],
                                &pair_r[0], &zeros[0], &m_z[0], h, 0, np_)
            _dense(&m_z[0], &w1[0, 0], True, NULL, np_, h, d_in, &scratch[0], &m_x[0])
            # contributions, averaged over each example's references
            fl_pair_contributions(&m_x[0], &x[e0, 0], &refs[e0, 0, 0], &pair_x[0], &pair_r[0], &c[0], d_in,
                                  0, np_)
            fl_mean_over_refs(&c[0], &res[e0, 0], n_refs, d_in, 0, ne, 0, d_in)
            e0 += ne
    return out


def abi_version():
    """FL_ABI_VERSION of the fastlift.h this extension was compiled against."""
    return fl_abi_version()
