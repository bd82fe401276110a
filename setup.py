"""Build the Cython CPU extension; all metadata lives in pyproject.toml.

The extension compiles the header-only kernels in ``csrc/`` with OpenMP when the
compiler supports it, and serially (with a warning) when it does not. CUDA code is
never compiled here: it ships as package data and NVRTC compiles it at run time.
The headers are also copied into the package (``fastlift/include``) so that
``fastlift.get_include()`` works from an installed wheel.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(HERE, "csrc")
INCLUDE_COPY = os.path.join(HERE, "fastlift", "include")
KERNELS = os.path.join(HERE, "kernels")
KERNELS_COPY = os.path.join(HERE, "fastlift", "kernels")


def openmp_flags():
    """Return (compile_args, link_args) for OpenMP, or empty lists if the compiler lacks it."""
    if os.environ.get("FASTLIFT_NO_OPENMP"):
        warnings.warn("FASTLIFT_NO_OPENMP set: building the CPU kernels without OpenMP (serial)")
        return [], []
    cc = os.environ.get("CC", "cc")
    src = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.c")
        with open(path, "w") as f:
            f.write(src)
        try:
            ok = subprocess.run([cc, "-fopenmp", path, "-o", os.path.join(tmp, "t")],
                                capture_output=True).returncode == 0
        except OSError:
            ok = False
    if not ok:
        warnings.warn(f"{cc} has no OpenMP support: fastlift's CPU kernels will run serially")
        return [], []
    return ["-fopenmp"], ["-fopenmp"]


def copy_headers():
    os.makedirs(INCLUDE_COPY, exist_ok=True)
    for name in os.listdir(CSRC):
        if name.endswith(".h"):
            shutil.copy2(os.path.join(CSRC, name), os.path.join(INCLUDE_COPY, name))


copy_headers()


def copy_kernels():
    """CUDA sources ship as package data (fastlift/kernels); NVRTC compiles them at run time."""
    os.makedirs(KERNELS_COPY, exist_ok=True)
    for name in os.listdir(KERNELS):
        if name.endswith((".cu", ".cuh")):
            shutil.copy2(os.path.join(KERNELS, name), os.path.join(KERNELS_COPY, name))


copy_kernels()
omp_compile, omp_link = openmp_flags()
extensions = [
    Extension(
        "fastlift.backends._cpu",
        ["fastlift/backends/_cpu.pyx"],
        include_dirs=[CSRC, numpy.get_include()],
        depends=[os.path.join("csrc", h) for h in ("fl_kernels.h", "fl_kernels_impl.h", "fl_math.h")],
        extra_compile_args=["-O3", "-std=c99", "-fno-trapping-math", "-Wno-unused-function", *omp_compile],
        extra_link_args=omp_link,
        libraries=["m"] if sys.platform != "win32" else [],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(  # genomics: seeded, parallel sequence shuffles over csrc/fl_shuffle.h
        "fastlift._genomics",
        ["fastlift/_genomics.pyx"],
        include_dirs=[CSRC, numpy.get_include()],
        depends=[os.path.join("csrc", "fl_shuffle.h")],
        extra_compile_args=["-O3", "-std=c99", "-Wno-unused-function", *omp_compile],
        extra_link_args=omp_link,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(  # caching numpy allocator used during CPU runs (NEP 49 handler)
        "fastlift.backends._pool",
        ["fastlift/backends/_pool.pyx"],
        include_dirs=[numpy.get_include()],
        extra_compile_args=["-O2", "-Wno-unused-function"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
]
setup(ext_modules=cythonize(extensions, language_level=3,
                            compiler_directives={"boundscheck": False, "wraparound": False,
                                                 "cdivision": True, "initializedcheck": False}))
