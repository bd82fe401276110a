"""NVRTC compile check of every shipped kernel, for every target architecture, without a GPU.

Compiles exactly what `_cuda.CupyDevice` hands ``cupy.RawModule`` (the `kernel_source` string,
`NVRTC_OPTIONS`, the name expressions) plus what RawModule adds itself (`CUPY_IMPLICIT_OPTIONS`,
``-arch=sm_XX``), with the NVRTC of the pip wheel ``nvidia-cuda-nvrtc-cu12`` through ctypes. Any
error, any warning or any register spill fails. Broken kernels must be reported with file and line.
"""

import os
import re
from pathlib import Path

import numpy as np
import pytest
from cuda_emu import nvrtc

from fastlift.backends import _cuda

NV_OK, NV_WHY = nvrtc.status()
if not NV_OK and os.environ.get("CI"):
    raise RuntimeError(f"CI must run the NVRTC compile check (pip install nvidia-cuda-nvrtc-cu12): {NV_WHY}")
pytestmark = pytest.mark.skipif(not NV_OK, reason=f"no NVRTC: {NV_WHY}")

#: cubins for Turing, Ampere (A100, consumer), Ada and Hopper; PTX for anything newer
ARCHS = ["sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "compute_75"]
BAD = Path(__file__).resolve().parent / "cuda_emu" / "bad_kernels"


def compile_shipped(fname, arch, extra=()):
    options = [*_cuda.NVRTC_OPTIONS, *_cuda.CUPY_IMPLICIT_OPTIONS, f"-arch={arch}", *extra]
    return nvrtc.compile_source(_cuda.kernel_source(fname), fname, options, _cuda.name_expressions(fname))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("fname", list(_cuda.MODULES))
def test_kernels_compile_clean(fname, arch):
    cubin = arch.startswith("sm_")
    binary, lowered, log = compile_shipped(fname, arch, ("--ptxas-options=-v",) if cubin else ())
    assert binary
    assert "warning" not in log.lower(), log
    assert set(lowered) == set(_cuda.name_expressions(fname))
    if cubin:
        spill_lines = [line for line in log.splitlines() if "spill stores" in line]
        assert len(spill_lines) == len(lowered), log  # ptxas really ran, once per kernel
        assert all(line.strip().endswith("0 bytes spill stores, 0 bytes spill loads") for line in spill_lines), log
    else:
        for mangled in lowered.values():
            assert f".entry {mangled}(" in binary


def test_compile_check_compiles_what_the_loader_gives_rawmodule(monkeypatch):
    """CupyDevice passes RawModule exactly kernel_source(), NVRTC_OPTIONS and the name expressions."""
    seen = []

    class FakeRawModule:
        def __init__(self, **kw):
            seen.append(kw)

        def get_function(self, name):
            return name

    class FakeCupy:
        RawModule = FakeRawModule

    dev = _cuda.CupyDevice.__new__(_cuda.CupyDevice)
    dev.xp, dev._modules, dev._kernels = FakeCupy, {}, {}
    assert dev.kernel("rescale_backward", "float32") == "rescale_backward<float>"
    assert dev.kernel("rescale_backward", "float64") == "rescale_backward<double>"
    assert seen == [{"code": _cuda.kernel_source("rules.cu"), "options": _cuda.NVRTC_OPTIONS,
                     "name_expressions": _cuda.name_expressions("rules.cu")}]


def test_kernel_source_pastes_the_shared_header_unchanged():
    src = _cuda.kernel_source("rules.cu")
    header = (_cuda.source_dirs()[1] / "fl_math.h").read_text()
    body = (_cuda.source_dirs()[1] / "fl_math_impl.h").read_text()
    # the CPU build's per-element math, byte for byte: fl_math.h around its two includes of the
    # per-type body, and that body once per element type
    pieces = re.split(r'^#include "fl_math_impl.h"\n', header, flags=re.MULTILINE)
    assert len(pieces) == 3 and all(piece in src for piece in pieces)
    assert src.count(body) == 2
    assert not [line for line in src.splitlines() if line.strip().startswith('#include "')]
    assert src.count('#line 1 "fl_math.h"') == 1 and src.count('#line 1 "fl_cuda.cuh"') == 1
    assert src.count('#line 1 "fl_math_impl.h"') == 2


def test_kernel_source_from_an_installed_layout(tmp_path):
    """A wheel has fastlift/kernels (the .cu and .cuh) and fastlift/include (csrc's headers)."""
    kernels, include = tmp_path / "kernels", tmp_path / "include"
    kernels.mkdir()
    include.mkdir()
    for d, src in ((kernels, _cuda.source_dirs()[0]), (include, _cuda.source_dirs()[1])):
        for f in src.iterdir():
            if f.suffix in (".cu", ".cuh", ".h"):
                (d / f.name).write_text(f.read_text())
    for fname in _cuda.MODULES:
        assert _cuda.kernel_source(fname, [kernels, include]) == _cuda.kernel_source(fname)


def test_syntax_error_is_reported_with_file_and_line():
    src = _cuda.kernel_source("broken.cu", [BAD, *_cuda.source_dirs()])
    with pytest.raises(nvrtc.NVRTCCompileError) as e:
        nvrtc.compile_source(src, "broken.cu", [*_cuda.NVRTC_OPTIONS, "-arch=sm_80"], ["broken<float>"])
    # line 9 of broken.cu (the token after the missing ';'), not of the pasted-together source
    assert 'broken.cu(9): error: expected a ";"' in e.value.log, e.value.log


def test_error_in_an_included_header_names_the_header_and_instantiation():
    src = _cuda.kernel_source("uses_bad_header.cu", [BAD, *_cuda.source_dirs()])
    with pytest.raises(nvrtc.NVRTCCompileError) as e:
        nvrtc.compile_source(src, "uses_bad_header.cu", [*_cuda.NVRTC_OPTIONS, "-arch=sm_80"], ["doubled<double>"])
    log = e.value.log
    assert 'bad_header.cuh(6): error: identifier "undeclared_helper" is undefined' in log, log
    assert "[with T=double]\" at line 8 of uses_bad_header.cu" in log, log


def test_real_cupy_accepts_the_loader_arguments_and_compute_context():
    """With CuPy installed (no GPU needed): RawModule takes our source, options and name expressions
    (compilation is lazy), and compute_context pins float32 GEMMs to FP32 and restores the setting."""
    cupy = pytest.importorskip("cupy", exc_type=ImportError)
    from cupy._core import _routines_linalg as linalg

    dev = _cuda.CupyDevice.__new__(_cuda.CupyDevice)
    dev.xp, dev._modules, dev._kernels = cupy, {}, {}
    for fname in _cuda.MODULES:
        assert isinstance(dev.module(fname), cupy.RawModule)
    before = linalg.get_compute_type(np.float32)
    with dev.compute_context():
        assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_FP32
    assert linalg.get_compute_type(np.float32) == before
