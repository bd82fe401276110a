"""Build the example: python setup.py build_ext --inplace (needs fastlift, Cython, scipy)."""

from Cython.Build import cythonize
from setuptools import Extension, setup

import fastlift

# One folder for both compilers: the C headers (fastlift.h) and their Cython declarations
# (fastlift_capi.pxd). scipy's cython_blas declarations come from the installed scipy.
include = fastlift.get_include()
extension = Extension("mlp_deeplift", ["mlp_deeplift.pyx"], include_dirs=[include],
                      extra_compile_args=["-O2", "-Wno-unused-function"])
setup(name="mlp_deeplift", ext_modules=cythonize([extension], include_path=[include]))
