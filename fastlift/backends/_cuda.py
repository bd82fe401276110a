"""CUDA plumbing for `CupyOps`: GPU status, kernel sources, the RawModule cache and the launch guard.

Importing this module never imports CuPy; `gpu_status()` and `CupyDevice()` do, lazily.

Kernel sources
--------------
The kernels are the ``*.cu`` files of the top-level ``kernels/`` folder. A wheel ships them as
``fastlift/kernels/`` and ``csrc/`` as ``fastlift/include/`` (pyproject.toml maps the folders onto
those data-only packages; nothing is copied); a source checkout or an editable install reads
``kernels/`` and ``csrc/`` in place, so an edited kernel is used without reinstalling. `kernel_source` pastes every local ``#include "..."``
(``fl_cuda.cuh``, and ``fl_math.h``, the per-element math shared with the Cython build) into one
string with ``#line`` directives: NVRTC errors still name the original file and line, and CuPy's
on-disk cache, whose key hashes the source string and options but not the contents of headers
found through ``-I``, sees every change.

Exactly that string, with exactly `NVRTC_OPTIONS`, is what `CupyDevice` gives ``cupy.RawModule``,
what ``tests/test_cuda_compile.py`` compiles with NVRTC for every target architecture on CI (no GPU
needed) and what ``tests/cuda_emu/`` compiles as C++ to run the kernels on the CPU.

Kernel names
------------
Kernels are templates, ``template <typename T> __global__ void op(...)``, named through one dtype
table (`CTYPES`): ``kernel_name("rescale_backward", float32) == "rescale_backward<float>"``, passed
to CuPy as name expressions (which also makes NVRTC instantiate and check every one).

Launch guard
------------
CuPy checks neither the contiguity, the dtype nor the device of a raw kernel's arguments, and a
Python int passed for a ``long long`` parameter has an ambiguous size. `launch` checks every array
against `SIGNATURES` (C-contiguous, exact dtype, on the current device) and builds every scalar
with its exact C type, before every launch.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import threading
from pathlib import Path

import numpy as np

from ..geometry import Geometry

#: Options fastlift passes to NVRTC. CuPy's RawModule adds `CUPY_IMPLICIT_OPTIONS` and
#: ``-arch=sm_XX`` (the device's architecture) itself.
#: ``--fmad=false``: no contraction of a*b + c into one FMA, so the kernels round like the C
#: kernels (compiled with -ffp-contract=off semantics) and agree with them bit for bit wherever
#: no transcendental function is involved. The kernels are memory-bound; FMA buys nothing here.
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false")
#: What ``cupy.RawModule`` appends on its own (cupy/cuda/compiler.py in CuPy 14:
#: ``_compile_with_cache_cuda`` adds ``-ftz=true``, ``_compile_using_nvrtc`` adds
#: ``--device-as-default-execution-space``). The CI compile check passes them too, so it compiles
#: what a user's GPU compiles. ``-ftz=true`` flushes float32 denormals: results can differ from
#: the CPU for values below ~1.2e-38.
CUPY_IMPLICIT_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")

#: dtype -> C type of the template argument (the one dtype table).
CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

#: Which source file holds which kernels.
MODULES = {
    "rules.cu": ("activation_forward", "add_activation", "activation_grad", "rescale_backward", "gradient_backward",
                 "guided_backprop_backward", "reveal_cancel_split", "reveal_cancel_backward"),
    "pairs.cu": ("pair_delta", "pair_contributions", "mean_over_refs"),
    "conv.cu": ("im2col", "col2im"),
    "pooling.cu": ("max_pool_forward", "avg_pool_forward", "avg_pool_backward", "max_pool_backward"),
}
MODULE_OF = {op: fname for fname, ops in MODULES.items() for op in ops}

#: Parameters of every kernel, in order. ``T`` const T* input array, ``T!`` T* output array (T =
#: the kernel's dtype), ``I`` const long long* index array, ``i`` int, ``n`` long long, ``G`` a
#: `Geometry` passed as its 13 fields (long long each). ``tests/test_cuda_emulation.py`` checks this
#: table against the compiled kernels' real parameter types.
SIGNATURES = {
    "activation_forward": "i T T n T! n n",
    "add_activation": "i T T n T T! n n",
    "activation_grad": "i T T n T! n n",
    "rescale_backward": "i T T T T T I I T n T! n n",
    "gradient_backward": "i T T I T n T! n n",
    "guided_backprop_backward": "i T T I T n T! n n",
    "reveal_cancel_split": "i T T T I T n T! T! n n",
    "reveal_cancel_backward": "i T T T T T I T n T! T! n n",
    "pair_delta": "T T I I T! n n",
    "pair_contributions": "T T T I I T! n n",
    "mean_over_refs": "T T! n n n",
    "im2col": "T T! n G",
    "col2im": "T T! n G",
    "max_pool_forward": "T T! n G",
    "avg_pool_forward": "T T! n G",
    "avg_pool_backward": "T T! n G",
    "max_pool_backward": "T T T I I i T! n G",
}

#: Threads per block of every launch, and the largest grid (the kernels' grid-stride loops cover
#: any amount of data with any grid).
BLOCK = 256
MAX_BLOCKS = 8192

#: Fraction of free device memory (plus CuPy's cached free blocks) one chunk may plan for; the
#: rest is headroom for cuBLAS workspaces and temporaries the scheduler's estimate leaves out.
GPU_MEMORY_FRACTION = 0.4
MIN_CHUNK_BUDGET = 64 * 2**20

#: TF32 tensor-core GEMMs (``precision="tf32"``) exist from compute capability 8.0 (Ampere) on.
TF32_MIN_COMPUTE_CAPABILITY = 80

#: Smallest pinned staging buffer (`PinnedStaging`); buffers grow to the next power of two.
MIN_PINNED_BYTES = 1 << 20

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$')
_PACKAGE = Path(__file__).resolve().parent.parent  # .../fastlift


def source_dirs() -> list[Path]:
    """Where kernel sources and headers are looked up, in order.

    A source checkout or an editable install reads ``kernels/`` and ``csrc/`` beside the package
    (checked first, so a copy left inside the package by an older build is never read); an
    installed wheel has them in the package (``fastlift/kernels``, ``fastlift/include``).
    """
    root = _PACKAGE.parent
    checkout = [root / "kernels", root / "csrc"]
    if (root / "kernels" / "rules.cu").is_file() and (root / "csrc" / "fl_math.h").is_file():
        return checkout  # the sources themselves, never a stale copy inside the package
    return [_PACKAGE / "kernels", _PACKAGE / "include"]


def kernel_source(name: str, dirs=None) -> str:
    """The text of kernel file ``name`` with its local includes pasted in.

    ``#line`` directives keep NVRTC's and the debugger's file:line pointing at the original
    files. A header is pasted once; only a body meant to be included repeatedly (no include
    guard, named ``*_impl.h``: ``fl_math.h`` includes ``fl_math_impl.h`` once per element
    type) is pasted at every ``#include``. ``dirs``: the search path (default `source_dirs`).
    """
    dirs = [Path(d) for d in (source_dirs() if dirs is None else dirs)]
    seen: set[Path] = set()

    def find(fname: str) -> Path:
        for d in dirs:
            if (d / fname).is_file():
                return d / fname
        raise FileNotFoundError(f"CUDA source {fname!r} not found in {[str(d) for d in dirs]}")

    def expand(path: Path) -> list[str]:
        out = [f'#line 1 "{path.name}"']
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            m = _INCLUDE.match(line)
            if m is None:
                out.append(line)
                continue
            header = find(m.group(1))
            if header not in seen or header.name.endswith("_impl.h"):
                seen.add(header)
                out.extend(expand(header))
            out.append(f'#line {lineno + 1} "{path.name}"')
        return out

    return "\n".join(expand(find(name))) + "\n"


def kernel_name(op: str, dtype) -> str:
    """CuPy name expression of kernel ``op`` for ``dtype``: ``"op<float>"`` / ``"op<double>"``."""
    return f"{op}<{CTYPES[np.dtype(dtype)]}>"


def name_expressions(fname: str) -> tuple[str, ...]:
    """Every kernel instantiation of source file ``fname`` (all ops x all dtypes)."""
    return tuple(kernel_name(op, dt) for op in MODULES[fname] for dt in CTYPES)


def launch_config(n_items: int, block: int = BLOCK, max_blocks: int = MAX_BLOCKS) -> tuple[int, int]:
    """(blocks, threads per block) for ``n_items`` outputs: one thread each, up to ``max_blocks``
    blocks (the grid-stride loops do the rest). ``n_items`` must be > 0."""
    return max(1, min(max_blocks, -(-n_items // block))), block


def chunk_budget(free_bytes: int, cached_free_bytes: int = 0) -> int:
    """Bytes one chunk may plan for, given the device's free memory and CuPy's cached free blocks."""
    usable = GPU_MEMORY_FRACTION * (int(free_bytes) + int(cached_free_bytes))
    return int(max(MIN_CHUNK_BUDGET, usable))


# ------------------------------------------------------------------ the guard
_SCALARS = {"i": np.int32, "n": np.int64}


def _geometry_args(g) -> list:
    if not isinstance(g, Geometry):
        raise TypeError(f"expected a Geometry; got {type(g).__name__}")
    return [np.int64(getattr(g, f)) for f in ("h", "w", "c", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl",
                                             "h_out", "w_out")]


def pack_args(device, op: str, dtype, args) -> tuple:
    """Check ``args`` against ``SIGNATURES[op]`` and return the kernel's argument tuple.

    Arrays must be device arrays of ``device`` (``device.check_array``), C-contiguous and of the
    exact dtype; scalars are converted to their exact C type (a bool or a float is refused).
    """
    spec = SIGNATURES[op].split()
    dtype = np.dtype(dtype)
    if len(args) != len(spec):
        raise TypeError(f"kernel {op}: {len(args)} arguments for {len(spec)} parameters ({SIGNATURES[op]})")
    out = []
    for k, (kind, a) in enumerate(zip(spec, args)):
        if kind in _SCALARS:
            if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)):
                raise TypeError(f"kernel {op} argument {k}: expected an integer; got {a!r}")
            out.append(_SCALARS[kind](a))
        elif kind == "G":
            out.extend(_geometry_args(a))
        else:
            want = np.dtype(np.int64) if kind == "I" else dtype
            device.check_array(a, f"kernel {op} argument {k}")
            if a.dtype != want:
                raise TypeError(f"kernel {op} argument {k}: expected a {want} array; got {a.dtype}")
            if not a.flags.c_contiguous:
                raise ValueError(f"kernel {op} argument {k}: array must be C-contiguous")
            out.append(a)
    return tuple(out)


def launch(device, op: str, dtype, n_items: int, args, *, block: int = BLOCK, max_blocks: int = MAX_BLOCKS):
    """Guarded launch of ``op<dtype>`` with one thread per output item (grid-stride beyond the grid)."""
    packed = pack_args(device, op, dtype, args)
    if n_items <= 0:
        return  # a zero-size grid is an error in CUDA; there is nothing to compute
    grid, threads = launch_config(n_items, block, max_blocks)
    device.kernel(op, dtype)((grid,), (threads,), packed)


# ------------------------------------------------------------------ pinned staging
class PinnedStaging:
    """Host <-> device copies through reused page-locked (pinned) host buffers, on a copy stream.

    Upload: the host array is cast into a pinned buffer, then copied into a new device array
    by an asynchronous copy on a non-blocking stream (it does not hold up kernels queued on the
    compute stream after it). Before the copy, the copy stream waits for the work already queued
    on the compute stream, because the new array may reuse memory that work still reads (CuPy's
    pool reuses, per stream, blocks freed by Python before the kernels reading them ran). The copy
    stream is synchronized before returning: the array is complete when compute uses it, and the
    buffer is free for the next call. Download: the reverse, into a second pinned buffer, then
    into a new (pageable) numpy array.

    One upload and one download buffer, reused by every call and replaced by a larger one (the
    next power of two, at least `MIN_PINNED_BYTES`) when a larger array comes; a lock serializes
    the callers (the scheduler's prefetch thread and the main thread).

    ``device`` provides ``xp`` (with ``xp.cuda`` streams), ``empty_pinned(nbytes)`` (a uint8
    numpy array in page-locked memory) and ``context()``: `CupyDevice`, or the test emulator.
    """

    def __init__(self, device):
        self.device, self.xp = device, device.xp
        self.buffers: dict[str, np.ndarray | None] = {"up": None, "down": None}
        self.allocations = 0  # pinned buffers allocated so far
        #: The stream the engine computes on (`CupyOps.compute_context` sets it for a run);
        #: None: the calling thread's current stream.
        self.compute_stream = None
        self._stream = None
        self._lock = threading.Lock()

    def release(self):
        """Drop both pinned buffers (back to CuPy's pinned pool); later copies allocate anew."""
        with self._lock:
            self.buffers = {"up": None, "down": None}

    @property
    def stream(self):
        """The copy stream (created on first use, on the device)."""
        if self._stream is None:
            self._stream = self.xp.cuda.Stream(non_blocking=True)
        return self._stream

    def _view(self, which: str, shape, dtype) -> np.ndarray:
        """A C-contiguous ``shape``/``dtype`` view of pinned buffer ``which``, grown if needed."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        buf = self.buffers[which]
        if buf is None or buf.nbytes < nbytes:
            self.buffers[which] = buf = None  # back to CuPy's pinned pool before a larger one is taken
            size = max(MIN_PINNED_BYTES, 1 << max(nbytes - 1, 0).bit_length())
            buf = self.buffers[which] = self.device.empty_pinned(size)
            self.allocations += 1
        return buf[:nbytes].view(dtype).reshape(shape)

    def _after_queued_compute(self, stream):
        compute = self.compute_stream if self.compute_stream is not None else self.xp.cuda.get_current_stream()
        stream.wait_event(compute.record())

    def upload(self, a, dtype):
        """Host array (or anything ``np.asarray`` takes) ``a`` as a new C-contiguous device array
        of ``dtype``."""
        a = np.asarray(a)
        xp = self.xp
        with self._lock, self.device.context():
            stream = self.stream
            view = self._view("up", a.shape, dtype)
            np.copyto(view, a, casting="unsafe")  # the cast of xp.asarray(a, dtype), into pinned memory
            with stream:  # allocated from the copy stream's arena of CuPy's pool
                out = xp.empty(a.shape, dtype=dtype)
            if out.size:
                self._after_queued_compute(stream)
                out.set(view, stream=stream)
                stream.synchronize()
        return out

    def download(self, a) -> np.ndarray:
        """Device array ``a`` as a new numpy array."""
        xp = self.xp
        with self._lock, self.device.context():
            a = xp.ascontiguousarray(a)  # on the compute stream, like the kernels that wrote a
            view = self._view("down", a.shape, a.dtype)
            if a.size:
                stream = self.stream
                self._after_queued_compute(stream)
                a.get(stream=stream, out=view, blocking=False)
                stream.synchronize()
            return np.array(view)


# ------------------------------------------------------------------ CuPy
@functools.cache
def gpu_status() -> tuple[bool, str]:
    """(usable, reason): whether CuPy, a CUDA device and NVRTC are all usable here. Never raises.

    Without a driver CuPy raises ``CUDARuntimeError: cudaErrorInsufficientDriver`` on the first
    device call; with a driver and no device, ``cudaErrorNoDevice``. The reason carries that text.
    """
    try:
        import cupy
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install
        return False, (f"CuPy is not installed ({type(e).__name__}: {e}); "
                       "pip install 'fastlift[cuda12]' (or [cuda13], matching your driver)")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 - CUDARuntimeError is a RuntimeError
        return False, f"{type(e).__name__}: {e}"
    if n == 0:
        return False, "CuPy found no CUDA device"
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as e:  # noqa: BLE001 - cuda.pathfinder's DynamicLibNotFoundError
        return False, (f"NVRTC is not available ({type(e).__name__}: {e}); install CuPy with its toolkit "
                       "wheels: pip install 'fastlift[cuda12]'")
    return True, f"{n} CUDA device(s)"


class CupyDevice:
    """The real device: CuPy arrays, RawModules compiled by NVRTC, cuBLAS GEMMs."""

    name = "cuda"

    def __init__(self):
        ok, why = gpu_status()
        if not ok:
            raise RuntimeError(f"device='cuda' needs a usable CUDA GPU: {why}")
        import cupy

        self.xp = cupy
        self.id = cupy.cuda.runtime.getDevice()  # the device current when the backend was made
        self.compute_capability = int(cupy.cuda.Device(self.id).compute_capability)  # "86" -> 86
        self._modules: dict[str, object] = {}
        self._kernels: dict[tuple[str, np.dtype], object] = {}

    def module(self, fname: str):
        """The RawModule of source file ``fname`` (compiled by NVRTC on first use; CuPy caches the
        binary on disk, CUPY_CACHE_DIR, keyed by source string, options and architecture)."""
        mod = self._modules.get(fname)
        if mod is None:
            mod = self._modules[fname] = self.xp.RawModule(
                code=kernel_source(fname), options=NVRTC_OPTIONS, name_expressions=name_expressions(fname))
        return mod

    def kernel(self, op: str, dtype):
        key = (op, np.dtype(dtype))
        k = self._kernels.get(key)
        if k is None:
            k = self._kernels[key] = self.module(MODULE_OF[op]).get_function(kernel_name(op, dtype))
        return k

    def context(self):
        """Make this backend's GPU current (CuPy's current device is per thread)."""
        return self.xp.cuda.Device(self.id)

    def check_array(self, a, what: str):
        if not isinstance(a, self.xp.ndarray):
            raise TypeError(f"{what}: expected a CuPy array on the GPU; got {type(a).__name__}")
        if a.device.id != self.id:
            raise ValueError(f"{what}: array is on GPU {a.device.id}, the kernel runs on GPU {self.id}")

    def to_host(self, a):
        return self.xp.asnumpy(a)

    @staticmethod
    def empty_pinned(nbytes: int) -> np.ndarray:
        """``nbytes`` of page-locked host memory (CuPy's pinned pool) as a uint8 numpy array."""
        import cupyx

        return cupyx.empty_pinned((int(nbytes),), dtype=np.uint8)

    def memory_info(self) -> tuple[int, int]:
        """(free bytes on the device, bytes CuPy's pool holds but does not use)."""
        free, _total = self.xp.cuda.runtime.memGetInfo()
        return int(free), int(self.xp.get_default_memory_pool().free_bytes())

    @contextlib.contextmanager
    def compute_context(self, tf32: bool = False):
        """Float32 GEMMs for the run in full FP32, or with ``tf32`` on tensor cores with inputs
        rounded to TF32 (cuBLAS ``CUBLAS_COMPUTE_32F_FAST_TF32``), whatever CUPY_TF32 says. CuPy
        keeps the setting per process; it is restored afterwards."""
        from cupy._core import _routines_linalg as linalg

        old = linalg.get_compute_type(np.float32)
        linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if tf32 else linalg.COMPUTE_TYPE_FP32)
        try:
            yield
        finally:
            linalg.set_compute_type(np.float32, old)
