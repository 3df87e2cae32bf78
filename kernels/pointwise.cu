// fastrnn: fused pointwise step kernels, one thread per element of the (N, H) state.
//
// Instantiated through CuPy's RawModule name_expressions, e.g. "fastrnn::fwd_step<float, 2>"
// (second argument: the cell id of frnn_common.cuh).  Launch with at least N*H threads in a 1-D grid.
// Every buffer's shape, layout and permitted aliasing is documented on the bodies in pointwise.cuh;
// the argument lists here are the same, minus the element index.
#include "pointwise.cuh"

namespace fastrnn {

// Forward step s: bias add, activations, state update, output write and (when saved != nullptr)
// saving the activated gates for backward.  See fwd_step_at for the buffers.
template <typename T, int CELL>
__global__ void fwd_step(int N, int H, int T_, int s, int reverse, const int* __restrict__ lengths,
                         const T* __restrict__ gx, const T* __restrict__ gh,
                         const T* __restrict__ b_ih, const T* __restrict__ b_hh,
                         const T* __restrict__ h_prev, const T* __restrict__ c_prev,
                         T* __restrict__ h_next, T* __restrict__ c_next,
                         T* __restrict__ out, T* __restrict__ saved) {
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= N * H) return;
    fwd_step_at<T, CELL>(e, N, H, T_, s, reverse, lengths, gx, gh, b_ih, b_hh, h_prev, c_prev,
                         h_next, c_next, out, saved);
}

// Backward step s: the pre-activation gradients of this step and the direct part of dh_prev / dc_prev.
// dh_direct and dc are updated in place (same thread reads then writes), so no __restrict__ on them.
// See bwd_step_at for the buffers.
template <typename T, int CELL>
__global__ void bwd_step(int N, int H, int T_, int s, int reverse, const int* __restrict__ lengths,
                         const T* __restrict__ saved, const T* __restrict__ h_prev,
                         const T* __restrict__ h_next, const T* __restrict__ c_prev,
                         const T* __restrict__ c_next, const T* __restrict__ dout,
                         const T* __restrict__ dh_gemm, T* dh_direct, T* dc,
                         T* __restrict__ dgi, T* __restrict__ dgh) {
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= N * H) return;
    bwd_step_at<T, CELL>(e, N, H, T_, s, reverse, lengths, saved, h_prev, h_next, c_prev, c_next,
                         dout, dh_gemm, dh_direct, dc, dgi, dgh);
}

}  // namespace fastrnn
