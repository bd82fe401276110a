"""TF32 arithmetic of cuBLAS GEMMs, emulated in numpy.

With TF32 (``CUBLAS_COMPUTE_32F_FAST_TF32``, fastlift's ``precision="tf32"``) tensor cores read
float32 GEMM inputs as TF32: the sign, float32's 8-bit exponent and the top 10 of its 23 mantissa
bits. A product of two TF32 numbers (at most 22 significant bits) is exact in float32, and the
products are summed in FP32. So a TF32 GEMM is a float32 GEMM of the inputs rounded to TF32.

`round_tf32` rounds to nearest, ties to even, as cuBLAS converts FP32 inputs to TF32 by default;
``mode="truncate"`` drops the 13 low bits instead (what tensor cores do with inputs nobody rounded
first), twice the error, as a bound. `matmul_tf32` is the emulated GEMM. The host-emulated CUDA
device (`fake_cupy`) and the TF32 error study (``bench/tf32_error.py``) use them.
"""

from __future__ import annotations

import numpy as np

#: float32 mantissa bits that TF32 drops (23 - 10).
DROPPED_BITS = 13
_KEEP = np.uint32(0xFFFFFFFF ^ ((1 << DROPPED_BITS) - 1))  # sign, exponent, top 10 mantissa bits
_HALF = np.uint32((1 << (DROPPED_BITS - 1)) - 1)  # 0x0FFF: just under half a TF32 ulp
_EXP = np.uint32(0x7F800000)


def round_tf32(a, mode: str = "nearest") -> np.ndarray:
    """float32 array ``a`` with every value rounded to TF32 (still stored as float32).

    ``mode``: "nearest" (ties to even; a value past the largest TF32 number rounds to inf) or
    "truncate" (toward zero). Zeros, infinities and NaNs keep their values (a NaN stays a NaN);
    subnormals are rounded like the rest.
    """
    a = np.asarray(a)
    if a.dtype != np.float32:
        raise TypeError(f"round_tf32 takes float32 arrays; got {a.dtype}")
    if mode not in ("nearest", "truncate"):
        raise ValueError(f"mode must be 'nearest' or 'truncate'; got {mode!r}")
    bits = np.ascontiguousarray(a).view(np.uint32)
    if mode == "nearest":
        lsb = (bits >> np.uint32(DROPPED_BITS)) & np.uint32(1)  # the kept part's last bit: ties go to even
        rounded = (bits + _HALF + lsb) & _KEEP
    else:
        rounded = bits & _KEEP
    # inf and NaN (all exponent bits set) pass unchanged: rounding a NaN's payload could make it inf
    special = (bits & _EXP) == _EXP
    return np.where(special, bits, rounded).view(np.float32).reshape(a.shape)


def matmul_tf32(a, b, out=None, mode: str = "nearest") -> np.ndarray:
    """``a @ b`` as a TF32 GEMM: float32 inputs rounded to TF32, products summed in float32."""
    return np.matmul(round_tf32(a, mode), round_tf32(b, mode), out=out)


def reference_ops(n_threads=None, precision="float32", mode="nearest"):
    """fastlift's numpy reference backend (`Ops`) with cuBLAS's TF32 GEMMs under
    ``precision="tf32"``: the arithmetic of `CupyOps` with TF32, up to float32 summation order
    (every GEMM of CupyOps, the convolutions' included, goes through `Ops.matmul`)."""
    from fastlift.backends.ops import Ops

    class Tf32ReferenceOps(Ops):
        precisions = frozenset({"float32", "tf32"})

        def matmul(self, a, b):
            if self.precision == "tf32" and a.dtype == b.dtype == np.float32:
                return matmul_tf32(a, b, mode=mode)
            return a @ b

    return Tf32ReferenceOps(n_threads, precision)
