// fastrnn: persistent inference kernel: the whole time loop of one layer and direction in one launch.
//
// Meant for small batches (N <= PERSIST_MAX_N), where cuDNN and the step-by-step path are bound by
// launch latency.  Block b owns hidden units [b*J, b*J + J), J = ceil(H / gridDim.x), and keeps their G*J
// rows of W_hh in shared memory for all T steps when smem_bytes allows it (else it streams them from
// global memory / L2).  J is derived from the grid actually launched, and smem_bytes was sized by the
// glue for the grid it asked for: a smaller grid (a larger J) may not fit, so the kernel checks and traps
// instead of computing with it, and the glue launches only grids that are all co-resident
// (CupyOps._persistent_kernel).  Per step every block copies h_prev (N, H) to shared memory, computes the
// G*J*N dot products h_prev . W_hh[row] (one warp per row, all N batch rows at once), applies the cell
// arithmetic of pointwise.cuh to its units, writes h_next, and meets the other blocks at a grid barrier.
// Must be launched cooperatively (all blocks co-resident): CuPy RawModule(enable_cooperative_groups=True).
//
// Buffers (T = element type; all C-contiguous):
//   lengths  (N,) int32 in 1..T_, or nullptr (every row has length T_)
//   gx       (T_, N, G*H)  x @ W_ih^T without bias, rows in loop-step order (the glue gathers x
//            for the reverse direction with variable lengths)
//   w_hh     (G*H, H)      PyTorch layout
//   b_ih, b_hh (G*H,)      or both nullptr
//   hbuf     (2, N, H)     ping-pong state: hbuf[0] = h0 on entry; after the launch h_n is hbuf[T_ % 2]
//   c        (N, H)        LSTM only (else nullptr): c0 on entry, c_n on exit, updated in place
//   out      (T_, N, H)    time order; written only where a row is active (zero it first if lengths)
//   barrier  (2,) uint32   zeroed before the launch (arrival count, generation)
//   smem_bytes             the dynamic shared memory given to the launch; it must hold at least
//                          N*H + G*J*N elements of T (the kernel traps otherwise), and the W_hh slice
//                          (G*J*H more) is kept on chip when it holds that too.
// Aliasing: none of these may alias each other.
#include "pointwise.cuh"

namespace fastrnn {

constexpr int PERSIST_MAX_N = 8;
constexpr int PERSIST_THREADS = 256;

// Sense-free generation barrier across the whole (co-resident) grid; the same fence pattern as
// cooperative_groups' grid.sync(), without needing relocatable device code.
__device__ __forceinline__ void grid_barrier(unsigned int* count, volatile unsigned int* generation) {
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned int gen = *generation;
        __threadfence();
        if (atomicAdd(count, 1u) == gridDim.x - 1) {
            atomicExch(count, 0u);
            __threadfence();
            atomicAdd((unsigned int*)generation, 1u);
        } else {
            while (*generation == gen) {
            }
        }
        __threadfence();
    }
    __syncthreads();
}

template <typename T>
__device__ __forceinline__ T load_coherent(const T* p) {
    return __ldcg(p);  // bypass L1: the value was written by another SM during this launch
}

template <typename T, int CELL>
__global__ void __launch_bounds__(PERSIST_THREADS, 1)
persistent_fwd(int N, int H, int T_, int reverse, const int* __restrict__ lengths,
               const T* __restrict__ gx, const T* __restrict__ w_hh,
               const T* __restrict__ b_ih, const T* __restrict__ b_hh,
               T* hbuf, T* c, T* __restrict__ out, unsigned int* barrier, int smem_bytes) {
    constexpr int G = cell_gates(CELL);
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    const int J = (H + gridDim.x - 1) / gridDim.x;
    const int j0 = blockIdx.x * J;
    const int rows = G * J;                       // local row r = jj*G + g  <->  W_hh row g*H + j0 + jj
    const long long base_bytes = ((long long)N * H + (long long)rows * N) * sizeof(T);
    if (base_bytes > smem_bytes || N > PERSIST_MAX_N) __trap();   // never compute with a state that does not fit
    const int w_in_smem = base_bytes + (long long)rows * H * sizeof(T) <= smem_bytes;
    T* w_s = smem;                                // (rows, H) when w_in_smem
    T* h_s = smem + (w_in_smem ? (long long)rows * H : 0);   // (N, H)
    T* pre_s = h_s + N * H;                       // (rows, N): h_prev . W_hh[row] for each batch row
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    const int NH = N * H;

    if (w_in_smem) {
        for (int r = 0; r < rows; ++r) {
            const int jj = r / G, g = r - (r / G) * G;
            if (j0 + jj >= H) break;
            const T* src = w_hh + ((long long)g * H + j0 + jj) * H;
            for (int k = threadIdx.x; k < H; k += blockDim.x) w_s[(long long)r * H + k] = src[k];
        }
    }

    for (int s = 0; s < T_; ++s) {
        const T* h_prev = hbuf + (s & 1) * NH;
        T* h_next = hbuf + ((s + 1) & 1) * NH;
        for (int i = threadIdx.x; i < NH; i += blockDim.x) h_s[i] = load_coherent(h_prev + i);
        __syncthreads();

        for (int r = warp; r < rows; r += nwarps) {
            const int jj = r / G, g = r - (r / G) * G;
            if (j0 + jj >= H) continue;
            const T* wrow = w_in_smem ? w_s + (long long)r * H : w_hh + ((long long)g * H + j0 + jj) * H;
            T acc[PERSIST_MAX_N];
#pragma unroll
            for (int n = 0; n < PERSIST_MAX_N; ++n) acc[n] = T(0);
            for (int k = lane; k < H; k += 32) {
                const T w = wrow[k];
#pragma unroll
                for (int n = 0; n < PERSIST_MAX_N; ++n)
                    if (n < N) acc[n] += w * h_s[n * H + k];
            }
#pragma unroll
            for (int n = 0; n < PERSIST_MAX_N; ++n) {
                if (n < N) {
                    T v = acc[n];
#pragma unroll
                    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
                    if (lane == 0) pre_s[r * N + n] = v;
                }
            }
        }
        __syncthreads();

        for (int i = threadIdx.x; i < J * N; i += blockDim.x) {
            const int jj = i / N, n = i - (i / N) * N;
            const int j = j0 + jj;
            if (j >= H) continue;
            const int e = n * H + j;
            const int len = lengths ? lengths[n] : T_;
            if (s >= len) {  // sequence over: hold the state (c stays as it is)
                h_next[e] = h_s[e];
                continue;
            }
            const T* gxr = gx + ((long long)s * N + n) * G * H;
            const T* pr = pre_s + (jj * G) * N + n;   // pr[g*N] = W_hh[g*H + j] . h_prev[n]
            T h;
            if constexpr (CELL == LSTM) {
                T gi, gf, gg, go, cn;
                lstm_cell_forward(gxr[j] + pr[0] + bias_sum(b_ih, b_hh, j),
                                  gxr[H + j] + pr[N] + bias_sum(b_ih, b_hh, H + j),
                                  gxr[2 * H + j] + pr[2 * N] + bias_sum(b_ih, b_hh, 2 * H + j),
                                  gxr[3 * H + j] + pr[3 * N] + bias_sum(b_ih, b_hh, 3 * H + j),
                                  c[e], gi, gf, gg, go, cn, h);
                c[e] = cn;
            } else if constexpr (CELL == GRU) {
                T r, z, nn;
                gru_cell_forward(gxr[j] + pr[0] + bias_sum(b_ih, b_hh, j),
                                 gxr[H + j] + pr[N] + bias_sum(b_ih, b_hh, H + j),
                                 gxr[2 * H + j] + (b_ih ? b_ih[2 * H + j] : T(0)),
                                 pr[2 * N] + (b_hh ? b_hh[2 * H + j] : T(0)),
                                 h_s[e], r, z, nn, h);
            } else {
                h = rnn_act<T, CELL>(gxr[j] + pr[0] + bias_sum(b_ih, b_hh, j));
            }
            h_next[e] = h;
            out[((long long)step_time(s, len, reverse) * N + n) * H + j] = h;
        }
        grid_barrier(barrier, barrier + 1);
    }
}

}  // namespace fastrnn
