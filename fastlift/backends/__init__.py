"""Backends: `Ops` (numpy reference), `CpuOps` (Cython), and later `CupyOps` (CUDA).

`get_ops(device, n_threads)` maps the user's ``device`` string to a backend.
"""

from __future__ import annotations

from .ops import Act, Geometry, Ops

__all__ = ["DEVICES", "Act", "Geometry", "Ops", "get_ops"]

#: Accepted ``device`` values. "numpy" selects the slow reference backend (tests, debugging).
DEVICES = ("auto", "cpu", "cuda", "numpy")


def get_ops(device: str = "auto", n_threads: int | None = None) -> Ops:
    """Return the backend for ``device``.

    "auto" and "cpu" use the Cython kernels; "cuda" needs CuPy and a GPU and raises
    RuntimeError with the reason when there is none; "numpy" is the reference.
    """
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}; got {device!r}")
    if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
        raise ValueError(f"n_threads must be a positive int or None; got {n_threads!r}")
    if device == "numpy":
        return Ops(n_threads)
    if device == "cuda":
        raise RuntimeError(cuda_unavailable_reason())
    from .cpu_ops import CpuOps

    return CpuOps(n_threads)


def cuda_unavailable_reason() -> str:
    """Why device="cuda" cannot run here (the CUDA backend arrives with CupyOps)."""
    try:
        import cupy  # noqa: F401
    except ImportError:
        return ("device='cuda' needs CuPy and a GPU: CuPy is not installed "
                "(pip install 'fastlift[cuda12]' or 'fastlift[cuda13]')")
    return "device='cuda': this build of fastlift has no CUDA backend yet; use device='cpu'"
