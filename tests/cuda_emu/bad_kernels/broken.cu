// Deliberately broken kernel: line 8 lacks its ";", which NVRTC reports at the next token (line 9).
#include "fl_cuda.cuh"
#include "fl_math.h"

template <typename T>
__global__ void broken(const T* __restrict__ x, T* __restrict__ y, long long n)
{
    FL_FOR_EACH(i, n) y[i] = fl_activation_forward_elem(FL_ACT_RELU, x[i], T(0))
}
