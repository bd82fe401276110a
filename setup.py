"""Build the Cython CPU extension; all metadata lives in pyproject.toml.

The extension compiles the header-only kernels in ``csrc/`` with OpenMP when the
compiler supports it, and serially (with a warning) when it does not. CUDA code is
never compiled here: it ships as package data and NVRTC compiles it at run time.

Templates (``*.pxd.tp``, ``*.pyx.tp``) are rendered with Cython's Tempita before cythonize:
``csrc/fastlift_capi.pxd``, the Cython declarations of the C API, is written once per function
in its template and comes out with both element types and a fused-type dispatcher.

``csrc/`` and ``kernels/`` exist once, in the source tree: pyproject.toml maps them onto the
data-only packages ``fastlift.include`` and ``fastlift.kernels``, so a wheel carries them as
``fastlift/include`` and ``fastlift/kernels`` while a checkout or an editable install reads
them in place (``fastlift.get_include()``, ``fastlift.backends._cuda.source_dirs()``).
"""

import os
import subprocess
import sys
import tempfile
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(HERE, "csrc")
DEPENDS = sorted(os.path.join("csrc", h) for h in os.listdir(CSRC) if h.endswith((".h", ".pxd.tp")))


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
                                capture_output=True, check=False).returncode == 0
        except OSError:
            ok = False
    if not ok:
        warnings.warn(f"{cc} has no OpenMP support: fastlift's CPU kernels will run serially")
        return [], []
    return ["-fopenmp"], ["-fopenmp"]


def render_templates(folder):
    """Render every ``name.tp`` in ``folder`` to ``name`` (rewritten only when its text changes,
    so that an unchanged template triggers no rebuild)."""
    from Cython import Tempita

    for name in sorted(os.listdir(folder)):
        if not name.endswith((".pxd.tp", ".pyx.tp")):
            continue
        path = os.path.join(folder, name)
        with open(path) as f:
            text = Tempita.Template(f.read(), name=path).substitute()
        target = path[:-len(".tp")]
        if os.path.isfile(target):
            with open(target) as f:
                if f.read() == text:
                    continue
        with open(target, "w") as f:
            f.write(text)


render_templates(CSRC)
omp_compile, omp_link = openmp_flags()
extensions = [
    Extension(
        "fastlift.backends._cpu",
        ["fastlift/backends/_cpu.pyx"],
        include_dirs=[CSRC, numpy.get_include()],
        depends=DEPENDS,
        extra_compile_args=["-O3", "-std=c99", "-fno-trapping-math", "-Wno-unused-function", *omp_compile],
        extra_link_args=omp_link,
        libraries=["m"] if sys.platform != "win32" else [],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(  # genomics: seeded, parallel sequence shuffles over csrc/fl_shuffle.h
        "fastlift._genomics",
        ["fastlift/_genomics.pyx"],
        include_dirs=[CSRC, numpy.get_include()],
        depends=DEPENDS,
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
setup(ext_modules=cythonize(extensions, language_level=3, include_path=[CSRC],
                            compiler_directives={"boundscheck": False, "wraparound": False,
                                                 "cdivision": True, "initializedcheck": False}))
