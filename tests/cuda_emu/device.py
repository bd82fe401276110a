"""`EmuDevice`: fastlift's CUDA kernels on the CPU, behind the interface of `_cuda.CupyDevice`.

``CupyOps._on_device(EmuDevice())`` is the real CupyOps (its glue, its launch guard, its grid
sizes) driving the real kernel sources, compiled by g++ from exactly the string the loader gives
NVRTC, over strict emulated device arrays (`fake_cupy`).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fastlift.backends import _cuda

from . import emu, fake_cupy


def module_exports(fname):
    return [(op, t) for op in _cuda.MODULES[fname] for t in ("float", "double")]


def build_all(sanitize=None, dirs=None):
    """Build every kernel file's emulator library (2 at a time: a cold CI build takes ~20 s)."""
    def one(fname):
        return fname, emu.EmuModule(_cuda.kernel_source(fname, dirs), fname, module_exports(fname),
                                    sanitize=sanitize)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, _cuda.MODULES))


class EmuDevice:
    name = "emu"
    xp = fake_cupy.xp

    def __init__(self, sanitize=None, modules=None, compute_capability=90):
        self._modules = modules if modules is not None else build_all(sanitize)
        self.compute_capability = int(compute_capability)  # an H100's by default: TF32 is available
        self.launches: list[tuple[str, tuple, tuple]] = []  # (kernel, grid, block) of every launch

    def kernel(self, op, dtype):
        k = self._modules[_cuda.MODULE_OF[op]].get_function(op, _cuda.CTYPES[np.dtype(dtype)])

        def call(grid, block, args):
            self.launches.append((_cuda.kernel_name(op, dtype), tuple(grid), tuple(block)))
            k(grid, block, tuple(fake_cupy.ready(a) if isinstance(a, fake_cupy.DevArray) else a for a in args))

        return call

    def check_array(self, a, what):
        if not isinstance(a, fake_cupy.DevArray):
            raise TypeError(f"{what}: expected a device array; got {type(a).__name__}")

    def to_host(self, a):
        return a.get()

    @staticmethod
    def empty_pinned(nbytes):
        return fake_cupy.empty_pinned((int(nbytes),), np.uint8)

    def memory_info(self):
        return 8 * 2**30, 0

    @contextlib.contextmanager
    def compute_context(self, tf32=False):
        """The float32 GEMM compute type for the run (`fake_cupy.GEMM_COMPUTE`), restored after."""
        old = fake_cupy.GEMM_COMPUTE["float32"]
        fake_cupy.GEMM_COMPUTE["float32"] = "tf32" if tf32 else "fp32"
        try:
            yield
        finally:
            fake_cupy.GEMM_COMPUTE["float32"] = old

    def context(self):
        return contextlib.nullcontext()
