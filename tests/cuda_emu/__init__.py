"""Test tooling for the CUDA backend without a GPU.

* `nvrtc`: compile CUDA source with NVRTC through ctypes (pip wheel nvidia-cuda-nvrtc-cu12).
* `emu`: compile the real ``kernels/*.cu`` as C++ on the host (``cuda_host_shim.h``) and launch
  their grids on the CPU with CuPy's calling convention.
* `fake_cupy`: a strict stand-in for CuPy's array module (device arrays that refuse implicit host
  conversion), so CupyOps and the engine run end to end on the emulator.
* `device`: `EmuDevice`, the emulator behind the interface of `fastlift.backends._cuda.CupyDevice`.
* `tf32`: cuBLAS's TF32 GEMM arithmetic in numpy (the emulated device's GEMMs under TF32).
"""
