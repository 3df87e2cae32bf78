// fastrnn: activations, cell identifiers and the step -> time mapping shared by every kernel.
//
// Everything here is a __device__ __forceinline__ function without any thread cooperation, so the same
// text also compiles as plain C++ on the host (tests/cuda_host_shim.h defines the CUDA keywords away);
// that is how the pointwise arithmetic is checked against the NumPy reference without a GPU.
#pragma once

namespace fastrnn {

// Cell identifiers: the second template argument of every kernel (fastrnn/gpu/_source.py mirrors them).
enum : int { RNN_TANH = 0, RNN_RELU = 1, LSTM = 2, GRU = 3 };

// G, the number of H-sized gate blocks in weight_ih / weight_hh (PyTorch's layout).
__host__ __device__ constexpr int cell_gates(int cell) {
    return cell == LSTM ? 4 : (cell == GRU ? 3 : 1);
}

// Values per hidden unit a training forward saves for backward (besides the states themselves):
// LSTM: activated i, f, g, o.  GRU: activated r, z, n and W_hn h + b_hn.  RNN: none (h is enough).
__host__ __device__ constexpr int cell_saved(int cell) {
    return cell == LSTM ? 4 : (cell == GRU ? 4 : 0);
}

// Precise libm functions on purpose (no __expf): parity with PyTorch is 1e-5 relative in float32.
__device__ __forceinline__ float frnn_exp(float x) { return expf(x); }
__device__ __forceinline__ double frnn_exp(double x) { return exp(x); }
__device__ __forceinline__ float frnn_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double frnn_tanh(double x) { return tanh(x); }

template <typename T>
__device__ __forceinline__ T frnn_sigmoid(T x) {
    // exp(-x) overflows to inf for x << 0 and 1 / inf = 0: the right limit, no NaN.
    return T(1) / (T(1) + frnn_exp(-x));
}

template <typename T>
__device__ __forceinline__ T frnn_relu(T x) {
    return x > T(0) ? x : T(0);
}

// The vanilla-RNN activation and its derivative expressed through the activated value y = act(x).
template <typename T, int CELL>
__device__ __forceinline__ T rnn_act(T x) {
    if constexpr (CELL == RNN_RELU) {
        return x != x ? x : frnn_relu(x);   // keep NaN propagating like torch.relu
    } else {
        return frnn_tanh(x);
    }
}

template <typename T, int CELL>
__device__ __forceinline__ T rnn_act_grad(T y, T dy) {
    if constexpr (CELL == RNN_RELU) {
        return y > T(0) ? dy : T(0);
    } else {
        return dy * (T(1) - y * y);
    }
}

// Row n with sequence length len is active at loop step s < len.  The forward direction visits time
// index t = s; the reverse direction visits t = len-1-s.  Idle steps (s >= len) are mapped to t = s,
// which makes s -> t a permutation of 0..T-1 for every row (the glue uses the same permutation to
// gather x and scatter dx for the reverse direction).
__device__ __forceinline__ int step_time(int s, int len, int reverse) {
    return (reverse && s < len) ? len - 1 - s : s;
}

}  // namespace fastrnn
