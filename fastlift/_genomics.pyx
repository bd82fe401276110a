# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Cython drivers of the shuffle kernels in ``csrc/fl_shuffle.h`` (genomics references).

Design note
-----------
Three layers, as in ``backends/_cpu.pyx``:

1. ``csrc/fl_shuffle.h``: the PRNG (splitmix64 streams keyed by seed, sequence index, shuffle
   index and k) and the per-sequence kernels (plain shuffle, k-let preserving shuffle). Header
   only, part of fastlift's C API (``csrc/fastlift.h``; declared in ``fastlift_capi.pxd``).
2. This module: converts one-hot rows to tokens (channel of the 1, or ``n_channels`` for an
   all-zero row), validates them, and runs one kernel call per (sequence, shuffle) task under
   ``prange`` with a per-thread workspace. Every task writes its own output row from its own
   random stream, so the result is bitwise identical for any ``n_threads`` and any split of the
   sequences into calls (``seq_index`` carries the global sequence numbers).
3. ``fastlift/genomics.py``: the public, validated wrappers (``dinuc_shuffle`` etc.).

The input is any of uint8, float32 or float64 one-hot (n, length, n_channels), C-contiguous;
the output has the input's dtype.
"""

from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t, uint8_t, uint64_t

from fastlift_capi cimport (FL_SHUFFLE_MAX_VERTICES, fl_kmer_shuffle, fl_shuffle_n_vertices,
                            fl_shuffle_workspace_size)

import numpy as np

ctypedef fused onehot_t:
    uint8_t
    float
    double

MAX_VERTICES = FL_SHUFFLE_MAX_VERTICES

#: Positions of work below which another thread is not worth waking. Higher than the kernels'
#: threshold in _cpu.pyx: on a loaded machine a parallel region can wait a scheduler time slice
#: (~10-30 ms) for its second thread, and the scheduler calls these once per example.
MIN_WORK_PER_THREAD = 1 << 20
cdef Py_ssize_t _MIN_WORK = MIN_WORK_PER_THREAD


cdef int _threads(Py_ssize_t work, int n_threads) noexcept nogil:
    cdef Py_ssize_t nt = work // _MIN_WORK
    if nt > n_threads:
        nt = n_threads
    return <int>nt if nt > 1 else 1


def tokens_from_onehot(const onehot_t[:, :, ::1] x,    # IN  (n, length, n_channels)
                       int n_threads=1):
    """Tokens (n, length) uint8: the channel holding the 1, or n_channels for an all-zero row.

    Returns ``(tokens, bad)``: ``bad`` is -1, or the flat index ``e * length + l`` of the first
    row (in row-major order) that is not one-hot (a value other than 0/1, or more than one 1).
    """
    cdef Py_ssize_t n = x.shape[0], length = x.shape[1], n_ch = x.shape[2]
    if n_ch < 1 or n_ch > 254:
        raise ValueError(f"one-hot input needs 1 to 254 channels; got {n_ch}")
    tokens = np.empty((n, length), dtype=np.uint8)
    bad_rows = np.full(n, -1, dtype=np.int64)
    cdef uint8_t[:, ::1] tok = tokens
    cdef int64_t[::1] bad = bad_rows
    cdef Py_ssize_t e, pos, c
    cdef int ones, which, ok
    for e in prange(n, nogil=True, schedule="static", num_threads=_threads(n * length * n_ch, n_threads)):
        for pos in range(length):
            ones = 0
            which = n_ch
            ok = 1
            for c in range(n_ch):
                if x[e, pos, c] == 1:
                    ones = ones + 1
                    which = c
                elif x[e, pos, c] != 0:
                    ok = 0
            if ok == 0 or ones > 1:
                if bad[e] < 0:
                    bad[e] = pos
                which = n_ch
            tok[e, pos] = <uint8_t>which
    first = -1
    for e in range(n):
        if bad_rows[e] >= 0:
            first = e * length + bad_rows[e]
            break
    return tokens, first


def onehot_from_tokens(const uint8_t[:, :, ::1] tokens,   # IN  (n, n_shuffles, length)
                       int n_channels, dtype, int n_threads=1):
    """One-hot (n, n_shuffles, length, n_channels) of ``dtype``; token n_channels -> zero row."""
    out = np.zeros((tokens.shape[0], tokens.shape[1], tokens.shape[2], n_channels), dtype=dtype)
    if out.dtype == np.uint8:
        _fill_onehot[uint8_t](tokens, out, n_channels, n_threads)
    elif out.dtype == np.float32:
        _fill_onehot[float](tokens, out, n_channels, n_threads)
    elif out.dtype == np.float64:
        _fill_onehot[double](tokens, out, n_channels, n_threads)
    else:
        raise TypeError(f"dtype must be uint8, float32 or float64; got {out.dtype}")
    return out


cdef void _fill_onehot(const uint8_t[:, :, ::1] tokens, onehot_t[:, :, :, ::1] out,
                       int n_channels, int n_threads) noexcept:
    cdef Py_ssize_t n = tokens.shape[0], k = tokens.shape[1], length = tokens.shape[2]
    cdef Py_ssize_t e, s, pos
    cdef uint8_t t
    for e in prange(n, nogil=True, schedule="static", num_threads=_threads(n * k * length, n_threads)):
        for s in range(k):
            for pos in range(length):
                t = tokens[e, s, pos]
                if t < n_channels:
                    out[e, s, pos, t] = 1


def shuffle_tokens(const uint8_t[:, ::1] tokens,     # IN  (n, length) in [0, n_symbols)
                   const int64_t[::1] seq_index,     # IN  (n,) global sequence numbers
                   int n_symbols, int n_shuffles, int kmer, uint64_t seed, int n_threads=1):
    """Shuffles (n, n_shuffles, length) uint8 of each token row.

    Shuffle ``s`` of row ``e`` depends only on (seed, seq_index[e], s, kmer) and the row.
    """
    cdef Py_ssize_t n = tokens.shape[0], length = tokens.shape[1]
    if seq_index.shape[0] != n:
        raise ValueError(f"seq_index must hold one entry per sequence ({n}); got {seq_index.shape[0]}")
    if n_shuffles < 0:
        raise ValueError(f"n_shuffles must be >= 0; got {n_shuffles}")
    if kmer < 1:
        raise ValueError(f"kmer must be >= 1; got {kmer}")
    if n_symbols < 1 or n_symbols > 255:
        raise ValueError(f"n_symbols must be in [1, 255]; got {n_symbols}")
    if kmer >= 2 and length > kmer and fl_shuffle_n_vertices(n_symbols, kmer) < 0:
        raise ValueError(f"kmer={kmer} over {n_symbols} symbols needs more than {FL_SHUFFLE_MAX_VERTICES} "
                         "vertices; use a smaller kmer")
    out = np.empty((n, n_shuffles, length), dtype=np.uint8)
    cdef uint8_t[:, :, ::1] o = out
    cdef int64_t n_tasks = n * n_shuffles
    cdef int nt = _threads(n * n_shuffles * length * 8, n_threads)
    cdef int64_t task
    if n_tasks == 0 or length == 0:
        return out
    if nt > n_tasks:
        nt = <int>n_tasks
    # one workspace row per thread, allocated here with the GIL (no allocation in the loop)
    workspace = np.empty((nt, fl_shuffle_workspace_size(length, n_symbols, kmer)), dtype=np.int64)
    cdef int64_t[:, ::1] work = workspace
    for task in prange(n_tasks, nogil=True, schedule="static", num_threads=nt):
        fl_kmer_shuffle(&tokens[task // n_shuffles, 0], length, n_symbols, kmer, seed,
                        seq_index[task // n_shuffles], task % n_shuffles,
                        &o[task // n_shuffles, task % n_shuffles, 0], &work[threadid(), 0])
    return out
