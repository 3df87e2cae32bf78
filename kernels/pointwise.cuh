// fastrnn: the per-element cell arithmetic and the bodies of the fused pointwise step kernels.
//
// A body handles one element e = n*H + j of an (N, H) state (row n, hidden unit j).  The __global__
// wrappers in pointwise.cu map one thread to one element; the host test (tests/test_cuda_host.py) loops
// the same bodies over every element, so the arithmetic, the gate order, the length masking and the
// reverse-time indexing run on the CPU exactly as written here.
//
// Layouts shared by every body (all C-contiguous, T = element type, float or double):
//   gate rows   (N, G*H): gate block g of unit j of row n at n*G*H + g*H + j  (PyTorch gate order)
//   states      (N, H)
//   out, dout   (T, N, H) in time order; element (t, n, j) at (t*N + n)*H + j
//   saved       (N, S*H) per step, S = cell_saved(CELL), blocks in the order documented in frnn_common.cuh
//   lengths     (N,) int32 in 1..T, or nullptr meaning every row has length T
#pragma once
#include "frnn_common.cuh"

namespace fastrnn {

// ---- cell arithmetic on one element -------------------------------------------------------------

// LSTM forward from pre-activations (x part + h part + both biases), gate order i, f, g, o.
template <typename T>
__device__ __forceinline__ void lstm_cell_forward(T pi, T pf, T pg, T po, T c_prev,
                                                  T& gi, T& gf, T& gg, T& go, T& c, T& h) {
    gi = frnn_sigmoid(pi);
    gf = frnn_sigmoid(pf);
    gg = frnn_tanh(pg);
    go = frnn_sigmoid(po);
    c = gf * c_prev + gi * gg;
    h = go * frnn_tanh(c);
}

// LSTM backward: dh, dc are the total gradients w.r.t. this step's h and c.  Returns the gradients of
// the four pre-activations and of c_prev.
template <typename T>
__device__ __forceinline__ void lstm_cell_backward(T gi, T gf, T gg, T go, T c_prev, T c, T dh, T dc_in,
                                                   T& dpi, T& dpf, T& dpg, T& dpo, T& dc_prev) {
    const T tc = frnn_tanh(c);
    const T dc = dc_in + dh * go * (T(1) - tc * tc);
    dpo = dh * tc * go * (T(1) - go);
    dpi = dc * gg * gi * (T(1) - gi);
    dpf = dc * c_prev * gf * (T(1) - gf);
    dpg = dc * gi * (T(1) - gg * gg);
    dc_prev = dc * gf;
}

// GRU forward, gate order r, z, n.  ar, az: full pre-activations of r and z (x part + h part + both
// biases); xn = W_in x + b_in; hn = W_hn h + b_hn (kept apart: it sits inside the r product).
template <typename T>
__device__ __forceinline__ void gru_cell_forward(T ar, T az, T xn, T hn, T h_prev,
                                                 T& r, T& z, T& nn, T& h) {
    r = frnn_sigmoid(ar);
    z = frnn_sigmoid(az);
    nn = frnn_tanh(xn + r * hn);
    h = (T(1) - z) * nn + z * h_prev;
}

// GRU backward.  dxr, dxz, dxn: gradients of the x-side pre-activations (also those of b_ih);
// dhr, dhz equal dxr, dxz; dhn = dxn * r is the gradient of W_hn h + b_hn; dh_prev_direct is the part
// of dh_prev that does not go through W_hh.
template <typename T>
__device__ __forceinline__ void gru_cell_backward(T r, T z, T nn, T hn, T h_prev, T dh,
                                                  T& dar, T& daz, T& dxn, T& dhn, T& dh_prev_direct) {
    const T dnn = dh * (T(1) - z);
    const T dz = dh * (h_prev - nn);
    dxn = dnn * (T(1) - nn * nn);
    dhn = dxn * r;
    dar = dxn * hn * r * (T(1) - r);
    daz = dz * z * (T(1) - z);
    dh_prev_direct = dh * z;
}

// ---- step bodies ----------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ T bias_sum(const T* b_ih, const T* b_hh, int k) {
    return b_ih ? b_ih[k] + b_hh[k] : T(0);
}

// One forward time step (loop step s) for element e = n*H + j.
//   gx      (N, G*H)  this step's x @ W_ih^T, no bias (rows already in step order)
//   gh      (N, G*H)  h_prev @ W_hh^T, no bias
//   b_ih, b_hh (G*H,) or both nullptr
//   h_prev, c_prev (N, H) state before the step; c_* only for the LSTM (else nullptr)
//   h_next, c_next (N, H) state after the step (held for rows whose sequence has ended)
//   out     (T, N, H) or nullptr; written at the row's time index, only where the row is active
//   saved   (N, S*H) or nullptr (inference); written only where the row is active
// Aliasing: h_next may not alias h_prev or gh (other threads read them); saved, out are write-only.
template <typename T, int CELL>
__device__ __forceinline__ void fwd_step_at(int e, int N, int H, int T_, int s, int reverse,
                                            const int* lengths, const T* gx, const T* gh,
                                            const T* b_ih, const T* b_hh,
                                            const T* h_prev, const T* c_prev,
                                            T* h_next, T* c_next, T* out, T* saved) {
    constexpr int G = cell_gates(CELL);
    const int n = e / H;
    const int j = e - n * H;
    const int len = lengths ? lengths[n] : T_;
    if (s >= len) {  // sequence over: hold the state, write nothing else
        h_next[e] = h_prev[e];
        if constexpr (CELL == LSTM) c_next[e] = c_prev[e];
        return;
    }
    const long long row = (long long)n * G * H;
    T h;
    if constexpr (CELL == LSTM) {
        T p[4];
#pragma unroll
        for (int g = 0; g < 4; ++g) {
            const int k = g * H + j;
            p[g] = gx[row + k] + gh[row + k] + bias_sum(b_ih, b_hh, k);
        }
        T gi, gf, gg, go, c;
        lstm_cell_forward(p[0], p[1], p[2], p[3], c_prev[e], gi, gf, gg, go, c, h);
        c_next[e] = c;
        if (saved) {
            const long long srow = (long long)n * 4 * H;
            saved[srow + j] = gi;
            saved[srow + H + j] = gf;
            saved[srow + 2 * H + j] = gg;
            saved[srow + 3 * H + j] = go;
        }
    } else if constexpr (CELL == GRU) {
        const T ar = gx[row + j] + gh[row + j] + bias_sum(b_ih, b_hh, j);
        const T az = gx[row + H + j] + gh[row + H + j] + bias_sum(b_ih, b_hh, H + j);
        const T xn = gx[row + 2 * H + j] + (b_ih ? b_ih[2 * H + j] : T(0));
        const T hn = gh[row + 2 * H + j] + (b_hh ? b_hh[2 * H + j] : T(0));
        T r, z, nn;
        gru_cell_forward(ar, az, xn, hn, h_prev[e], r, z, nn, h);
        if (saved) {
            const long long srow = (long long)n * 4 * H;
            saved[srow + j] = r;
            saved[srow + H + j] = z;
            saved[srow + 2 * H + j] = nn;
            saved[srow + 3 * H + j] = hn;
        }
    } else {
        h = rnn_act<T, CELL>(gx[row + j] + gh[row + j] + bias_sum(b_ih, b_hh, j));
    }
    h_next[e] = h;
    if (out) {
        const int t = step_time(s, len, reverse);
        out[((long long)t * N + n) * H + j] = h;
    }
}

// One backward time step (loop step s, visited from T-1 down to 0) for element e = n*H + j.
//   saved    (N, S*H)  what the forward saved at step s (unused for the RNN)
//   h_prev   (N, H)    state before step s;  h_next: state after it (read by the RNN only)
//   c_prev, c_next (N, H) LSTM cell state before / after step s (else nullptr)
//   dout     (T, N, H) gradient w.r.t. out, time order; read at the row's time index
//   dh_gemm  (N, H)    dgh(step s+1) @ W_hh, or nullptr at the first backward step
//   dh_direct (N, H)   in: the rest of dL/dh_next (dh_n at the first step); out: the part of dL/dh_prev
//                      that does not go through W_hh.  Read and written in place by the same thread.
//   dc       (N, H)    LSTM only, in: dL/dc_next, out: dL/dc_prev, in place
//   dgi      (N, G*H)  out: gradient of the x-side pre-activations (= of b_ih); zero for idle rows
//   dgh      (N, G*H)  GRU only (else nullptr: it equals dgi): gradient of the h-side pre-activations
// Aliasing: only the in-place pairs above; dh_gemm must not alias dh_direct.
template <typename T, int CELL>
__device__ __forceinline__ void bwd_step_at(int e, int N, int H, int T_, int s, int reverse,
                                            const int* lengths, const T* saved,
                                            const T* h_prev, const T* h_next,
                                            const T* c_prev, const T* c_next,
                                            const T* dout, const T* dh_gemm,
                                            T* dh_direct, T* dc, T* dgi, T* dgh) {
    constexpr int G = cell_gates(CELL);
    const int n = e / H;
    const int j = e - n * H;
    const int len = lengths ? lengths[n] : T_;
    const long long row = (long long)n * G * H;
    T dh = dh_direct[e] + (dh_gemm ? dh_gemm[e] : T(0));
    if (s >= len) {  // idle step: the state was held, so its gradient passes through unchanged
        dh_direct[e] = dh;
#pragma unroll
        for (int g = 0; g < G; ++g) {
            dgi[row + g * H + j] = T(0);
            if constexpr (CELL == GRU) dgh[row + g * H + j] = T(0);
        }
        return;
    }
    const int t = step_time(s, len, reverse);
    dh += dout[((long long)t * N + n) * H + j];
    if constexpr (CELL == LSTM) {
        const long long srow = (long long)n * 4 * H;
        T dpi, dpf, dpg, dpo, dcp;
        lstm_cell_backward(saved[srow + j], saved[srow + H + j], saved[srow + 2 * H + j],
                           saved[srow + 3 * H + j], c_prev[e], c_next[e], dh, dc[e],
                           dpi, dpf, dpg, dpo, dcp);
        dgi[row + j] = dpi;
        dgi[row + H + j] = dpf;
        dgi[row + 2 * H + j] = dpg;
        dgi[row + 3 * H + j] = dpo;
        dc[e] = dcp;
        dh_direct[e] = T(0);
    } else if constexpr (CELL == GRU) {
        const long long srow = (long long)n * 4 * H;
        T dar, daz, dxn, dhn, dhp;
        gru_cell_backward(saved[srow + j], saved[srow + H + j], saved[srow + 2 * H + j],
                          saved[srow + 3 * H + j], h_prev[e], dh, dar, daz, dxn, dhn, dhp);
        dgi[row + j] = dar;
        dgi[row + H + j] = daz;
        dgi[row + 2 * H + j] = dxn;
        dgh[row + j] = dar;
        dgh[row + H + j] = daz;
        dgh[row + 2 * H + j] = dhn;
        dh_direct[e] = dhp;
    } else {
        dgi[row + j] = rnn_act_grad<T, CELL>(h_next[e], dh);
        dh_direct[e] = T(0);
    }
}

}  // namespace fastrnn
