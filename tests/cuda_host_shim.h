// Compiles the non-cooperative device code of kernels/*.cuh as plain host C++ (g++), so the pointwise
// arithmetic can be run against the NumPy reference on a machine without a GPU.  Only for code in which
// threads do not cooperate: no shared memory, no barriers, no warp intrinsics.
#pragma once
#include <math.h>

#define __device__
#define __host__
#define __global__
#define __forceinline__ inline
#define __restrict__ __restrict
