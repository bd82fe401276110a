"""Backends: `Ops` (numpy reference), `CpuOps` (Cython), and `CupyOps` (CUDA).

`get_ops(device, n_threads)` maps the user's ``device`` string to a backend. Importing fastlift
never imports CuPy: only device="cuda" or "auto" looks for it, when a backend is chosen.
"""

from __future__ import annotations

from .. import _validate
from .ops import Ops

__all__ = ["DEVICES", "Ops", "get_ops"]

#: Accepted ``device`` values. "numpy" selects the slow reference backend (tests, debugging).
DEVICES = ("auto", "cpu", "cuda", "numpy")


def get_ops(device: str = "auto", n_threads: int | None = None, precision: str = "float32") -> Ops:
    """Return the backend for ``device``.

    "cpu" uses the Cython kernels; "cuda" the CUDA kernels, and raises RuntimeError with CuPy's
    reason when no GPU is usable; "auto" is "cuda" when a GPU is usable (CuPy installed, a device,
    NVRTC) and silently "cpu" otherwise; "numpy" is the reference. ``precision="tf32"`` (float32
    GEMMs on TF32 tensor cores) needs the CUDA backend: with another device, or "auto" finding no
    GPU, it is a ValueError.
    """
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}; got {device!r}")
    n_threads = _validate.n_threads_arg(n_threads)
    if not isinstance(precision, str) or precision not in _validate.PRECISIONS:
        raise ValueError(f"precision must be 'float32' or 'tf32'; got {precision!r}")
    cuda = device == "cuda" or (device == "auto" and _gpu_usable())
    if precision == "tf32" and not cuda:
        why = (f"device='auto' found no usable GPU ({cuda_unavailable_reason()})" if device == "auto"
               else f"got device={device!r}")
        raise ValueError(f"precision='tf32' (TF32 tensor-core GEMMs) needs device='cuda'; {why}")
    if device == "numpy":
        return Ops(n_threads)
    if cuda:
        from .cupy_ops import CupyOps  # raises RuntimeError with the reason when no GPU is usable

        return CupyOps(n_threads, precision)
    from .cpu_ops import CpuOps

    return CpuOps(n_threads)


def cuda_unavailable_reason() -> str:
    """Why device="cuda" cannot run here ("" when it can): CuPy's own message."""
    from ._cuda import gpu_status

    ok, why = gpu_status()
    return "" if ok else f"device='cuda' needs a usable CUDA GPU: {why}"


def _gpu_usable() -> bool:
    from ._cuda import gpu_status

    return gpu_status()[0]
