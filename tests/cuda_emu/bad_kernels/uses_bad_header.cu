// Includes a header whose error only shows at template instantiation.
#include "fl_cuda.cuh"
#include "bad_header.cuh"

template <typename T>
__global__ void doubled(const T* __restrict__ x, T* __restrict__ y, long long n)
{
    FL_FOR_EACH(i, n) y[i] = twice(x[i]);
}
