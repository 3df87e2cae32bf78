// Host build of the pointwise step bodies of kernels/pointwise.cuh: one extern "C" function per kernel
// instantiation, looping the body over every element in the order a 1-D grid would cover them.
// Built by tests/test_cuda_host.py with g++ and called through ctypes; the argument lists are the
// kernels' own (kernels/pointwise.cu), so the glue in fastrnn/gpu/_layer.py drives both the same way.
#include "cuda_host_shim.h"
#include "pointwise.cuh"

#define FRNN_HOST_STEP(CELLNAME, CELLID, T, SUFFIX)                                                   \
    extern "C" void host_fwd_step_##CELLNAME##_##SUFFIX(                                              \
        int N, int H, int T_, int s, int reverse, const int* lengths, const T* gx, const T* gh,      \
        const T* b_ih, const T* b_hh, const T* h_prev, const T* c_prev, T* h_next, T* c_next,        \
        T* out, T* saved) {                                                                           \
        for (int e = 0; e < N * H; ++e)                                                               \
            fastrnn::fwd_step_at<T, CELLID>(e, N, H, T_, s, reverse, lengths, gx, gh, b_ih, b_hh,    \
                                            h_prev, c_prev, h_next, c_next, out, saved);             \
    }                                                                                                 \
    extern "C" void host_bwd_step_##CELLNAME##_##SUFFIX(                                              \
        int N, int H, int T_, int s, int reverse, const int* lengths, const T* saved,                \
        const T* h_prev, const T* h_next, const T* c_prev, const T* c_next, const T* dout,           \
        const T* dh_gemm, T* dh_direct, T* dc, T* dgi, T* dgh) {                                      \
        for (int e = 0; e < N * H; ++e)                                                               \
            fastrnn::bwd_step_at<T, CELLID>(e, N, H, T_, s, reverse, lengths, saved, h_prev, h_next, \
                                            c_prev, c_next, dout, dh_gemm, dh_direct, dc, dgi, dgh); \
    }

#define FRNN_HOST_CELL(CELLNAME, CELLID)          \
    FRNN_HOST_STEP(CELLNAME, CELLID, float, f32)  \
    FRNN_HOST_STEP(CELLNAME, CELLID, double, f64)

FRNN_HOST_CELL(rnn_tanh, fastrnn::RNN_TANH)
FRNN_HOST_CELL(rnn_relu, fastrnn::RNN_RELU)
FRNN_HOST_CELL(lstm, fastrnn::LSTM)
FRNN_HOST_CELL(gru, fastrnn::GRU)
