"""Compile CUDA C++ with NVRTC through ctypes: no GPU, no driver, no CuPy needed.

libnvrtc comes from the pip wheel ``nvidia-cuda-nvrtc-cu12`` (in the ``test`` extra, so CI has it)
or ``nvidia-cuda-nvrtc`` (CUDA 13), or ``$FASTLIFT_NVRTC``. CuPy's own high-level compile calls
cannot be used here: they ask the (absent) driver for the device's architecture first.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import sys
import sysconfig


class NVRTCCompileError(RuntimeError):
    def __init__(self, log: str, options):
        super().__init__(f"NVRTC compilation failed (options={list(options)}):\n{log}")
        self.log = log


def find_libnvrtc() -> str:
    env = os.environ.get("FASTLIFT_NVRTC")
    if env:
        return env
    roots = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *sys.path])
    for pattern in ("nvidia/cuda_nvrtc/lib/libnvrtc.so.12", "nvidia/cu13/lib/libnvrtc.so.13",
                    "nvidia/cu*/lib/libnvrtc.so.*"):
        for root in roots:
            hits = sorted(glob.glob(os.path.join(root, pattern)))
            if hits:
                return hits[0]
    for soname in ("libnvrtc.so.12", "libnvrtc.so.13", "libnvrtc.so"):
        try:
            ctypes.CDLL(soname)
            return soname
        except OSError:
            pass
    raise FileNotFoundError("libnvrtc not found: pip install nvidia-cuda-nvrtc-cu12 (the test extra has it)")


@functools.cache
def lib():
    so = ctypes.CDLL(find_libnvrtc())
    p, sz = ctypes.c_void_p, ctypes.c_size_t
    so.nvrtcCreateProgram.argtypes = [ctypes.POINTER(p), ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                      ctypes.c_void_p, ctypes.c_void_p]
    so.nvrtcCompileProgram.argtypes = [p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    so.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(p)]
    for f in ("nvrtcGetProgramLogSize", "nvrtcGetPTXSize", "nvrtcGetCUBINSize"):
        getattr(so, f).argtypes = [p, ctypes.POINTER(sz)]
    for f in ("nvrtcGetProgramLog", "nvrtcGetPTX", "nvrtcGetCUBIN"):
        getattr(so, f).argtypes = [p, ctypes.c_char_p]
    so.nvrtcAddNameExpression.argtypes = [p, ctypes.c_char_p]
    so.nvrtcGetLoweredName.argtypes = [p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
    so.nvrtcGetErrorString.restype = ctypes.c_char_p
    so.nvrtcVersion.argtypes = [ctypes.POINTER(ctypes.c_int)] * 2
    return so


def status() -> tuple[bool, str]:
    try:
        return True, "NVRTC {}.{}".format(*version())
    except Exception as e:  # noqa: BLE001
        return False, f"{type(e).__name__}: {e}"


def version() -> tuple[int, int]:
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def compile_source(src: str, name: str, options, name_expressions=()):
    """Compile; returns (binary, {name expression: lowered name}, log). ``-arch=sm_XX`` in
    ``options`` gives a cubin (full ptxas run), ``-arch=compute_XX`` PTX text."""
    so = lib()

    def check(rc, what):
        if rc != 0:
            raise RuntimeError(f"{what}: {so.nvrtcGetErrorString(rc).decode()}")

    def get(size_fn, data_fn):
        n = ctypes.c_size_t()
        check(size_fn(prog, ctypes.byref(n)), size_fn.__name__)
        buf = ctypes.create_string_buffer(n.value)
        check(data_fn(prog, buf), data_fn.__name__)
        return buf.raw

    options = list(options)
    cubin = any(o.startswith("-arch=sm_") for o in options)
    prog = ctypes.c_void_p()
    check(so.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), name.encode(), 0, None, None),
          "nvrtcCreateProgram")
    try:
        for ne in name_expressions:
            check(so.nvrtcAddNameExpression(prog, ne.encode()), "nvrtcAddNameExpression")
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        rc = so.nvrtcCompileProgram(prog, len(options), opts)
        log = get(so.nvrtcGetProgramLogSize, so.nvrtcGetProgramLog).rstrip(b"\0").decode()
        if rc != 0:
            raise NVRTCCompileError(log, options)
        lowered = {}
        for ne in name_expressions:
            out = ctypes.c_char_p()
            check(so.nvrtcGetLoweredName(prog, ne.encode(), ctypes.byref(out)), "nvrtcGetLoweredName")
            lowered[ne] = out.value.decode()
        if cubin:
            binary = get(so.nvrtcGetCUBINSize, so.nvrtcGetCUBIN)
        else:
            binary = get(so.nvrtcGetPTXSize, so.nvrtcGetPTX).rstrip(b"\0").decode()
        return binary, lowered, log
    finally:
        so.nvrtcDestroyProgram(ctypes.byref(prog))
