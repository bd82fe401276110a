// Deliberately broken header: an undeclared identifier on line 6, only seen when the template is
// instantiated (so only for name expressions that reach it).
#ifndef BAD_HEADER_CUH
#define BAD_HEADER_CUH
template <typename T> __device__ T twice(T v)
{ return v * T(2) + undeclared_helper(v); }
#endif
