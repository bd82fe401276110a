"""Build CUDA kernel source as a host shared library (through cuda_host_shim.h) and call its kernels
with CuPy's RawKernel convention: ``k((grid,), (block,), args)``.

Arguments are packed as cuLaunchKernel packs them (``void**``, one pointer per parameter value:
the ABI CuPy uses) and each one is checked against the kernel's real C++ parameter type, which
catches the classic silent RawKernel bugs (a float64 array or a Python int passed where the kernel
expects float* or long long).

Builds are cached by a hash of their full input (source, shim, compiler, flags) in
``$FASTLIFT_EMU_CACHE`` or ``<tmp>/fastlift-cuda-emu-<uid>``; a warm test run compiles nothing.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHIM = HERE / "cuda_host_shim.h"
CXX = os.environ.get("CXX", "g++")
FLAGS = ("-std=c++20", "-g", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
         "-Wno-unused-function")

# Itanium-mangled builtin types (typeid(T).name()) -> numpy dtype
_MANGLED = {"f": np.float32, "d": np.float64, "i": np.int32, "j": np.uint32, "x": np.int64, "y": np.uint64,
            "l": np.int64, "m": np.uint64}
SUFFIX = {"float": "f32", "double": "f64"}


def cache_dir() -> Path:
    d = os.environ.get("FASTLIFT_EMU_CACHE") or os.path.join(tempfile.gettempdir(), f"fastlift-cuda-emu-{os.getuid()}")
    Path(d).mkdir(parents=True, exist_ok=True)
    return Path(d)


def compiler_status() -> tuple[bool, str]:
    if shutil.which(CXX) is None:
        return False, f"no C++ compiler ({CXX!r} not on PATH)"
    return True, CXX


def build(source: str, name: str, exports, *, sanitize: str | None = None, opt: str = "-O1") -> Path:
    """Compile ``source`` (a kernel_source() string) with the shim; ``exports``: (kernel, ctype)
    pairs, each exported as flemu_launch_<kernel>_<f32|f64>. Returns the cached .so path."""
    san = (f"-fsanitize={sanitize}", "-fno-omit-frame-pointer") if sanitize else ()
    flags = (*FLAGS, opt, *san)
    tu = (f'#include "{SHIM}"\n#include "{name}"\n'
          + "".join(f"FLEMU_EXPORT({k}, {t}, {SUFFIX[t]})\n" for k, t in exports))
    key = hashlib.sha256("\0".join([tu, source, SHIM.read_text(), CXX, *flags]).encode()).hexdigest()[:20]
    out = cache_dir() / key
    so = out / f"{Path(name).stem}.so"
    if so.exists():
        return so
    tmp = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=cache_dir()))
    (tmp / name).write_text(source)  # kernel_source's #line directives keep the original names
    (tmp / "tu.cpp").write_text(tu)
    r = subprocess.run([CXX, *flags, "-I", str(tmp), str(tmp / "tu.cpp"), "-o", str(tmp / so.name)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"host build of {name} failed:\n{r.stderr[-6000:]}")
    try:
        tmp.rename(out)  # atomic publish; a concurrent identical build may have won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return so


class EmuKernel:
    """One exported kernel; call it like a cupy.RawKernel with numpy arrays and numpy scalars."""

    def __init__(self, lib, name: str):
        self.name = name
        self._launch = getattr(lib, f"flemu_launch_{name}")
        self._launch.argtypes = [ctypes.c_uint] * 6 + [ctypes.POINTER(ctypes.c_void_p)]
        self._launch.restype = None
        sig = getattr(lib, f"flemu_sig_{name}")
        sig.restype = ctypes.c_char_p
        self.params = [(int(sz), mangled) for sz, mangled in
                       (p.split(":", 1) for p in sig().decode().split(",") if p)]

    def _pack(self, i, arg, size, mangled):
        if mangled.startswith("P"):
            if not isinstance(arg, np.ndarray):
                raise TypeError(f"{self.name} arg {i}: expected a numpy array for pointer parameter {mangled}; "
                                f"got {type(arg).__name__}")
            want = _MANGLED.get(mangled.lstrip("PKV"))
            if want is not None and arg.dtype != want:
                raise TypeError(f"{self.name} arg {i}: array dtype {arg.dtype} != parameter {np.dtype(want)}*")
            if not arg.flags.c_contiguous:
                raise ValueError(f"{self.name} arg {i}: array must be C-contiguous")
            return ctypes.c_void_p(arg.ctypes.data)
        if not isinstance(arg, np.generic):
            raise TypeError(f"{self.name} arg {i}: pass numpy scalars; got {type(arg).__name__} (its size on "
                            "the device would be ambiguous)")
        want = _MANGLED.get(mangled)
        if arg.itemsize != size or (want is not None and arg.dtype != want):
            raise TypeError(f"{self.name} arg {i}: {arg.dtype} ({arg.itemsize} B) passed to a "
                            f"{np.dtype(want) if want else mangled} ({size} B) parameter")
        return ctypes.create_string_buffer(arg.tobytes(), size)

    def __call__(self, grid, block, args):
        grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
        block = tuple(int(b) for b in block) + (1,) * (3 - len(block))
        if len(args) != len(self.params):
            raise TypeError(f"{self.name}: {len(args)} arguments for {len(self.params)} parameters")
        keep = [self._pack(i, a, sz, m) for i, (a, (sz, m)) in enumerate(zip(args, self.params))]
        ptrs = (ctypes.c_void_p * len(keep))(*[ctypes.addressof(k) for k in keep])
        self._launch(*grid, *block, ptrs)


class EmuModule:
    """Stand-in for cupy.RawModule(code=source, name_expressions=...) on the CPU."""

    def __init__(self, source: str, name: str, exports, **build_kw):
        self.path = build(source, name, exports, **build_kw)
        self._lib = ctypes.CDLL(str(self.path))
        self._kernels: dict[str, EmuKernel] = {}

    def get_function(self, kernel: str, ctype: str) -> EmuKernel:
        key = f"{kernel}_{SUFFIX[ctype]}"
        if key not in self._kernels:
            self._kernels[key] = EmuKernel(self._lib, key)
        return self._kernels[key]
