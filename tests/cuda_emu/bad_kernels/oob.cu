// Deliberately wrong kernel: no bound check (and no grid-stride loop), so the threads of the last
// block past n read and write past the ends of x and y. AddressSanitizer must catch it
// (tests/test_cuda_emulation.py::test_asan_catches_out_of_bounds_kernel).
#include "fl_cuda.cuh"

template <typename T>
__global__ void oob_copy(const T* __restrict__ x, T* __restrict__ y, long long n)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    y[i] = T(2) * x[i];
}
