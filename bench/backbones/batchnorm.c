/* Training-mode batch norm of a channels_last float32 CPU tensor, fused.
 *
 * A channels_last [N, C, H, W] tensor is M = N*H*W rows of C channels. Every sum runs in
 * double, as PyTorch's NCHW kernel accumulates (its channels_last kernel sums in float32,
 * 10-40x less accurately), and the formulas are that kernel's, in its order, in float32:
 *   forward:  mean = sum(x)/M, var = sum((x - mean)^2)/M, invstd = 1/sqrt(var + eps),
 *             alpha = invstd*w, beta = b - mean*alpha, y = x*alpha + beta;
 *   backward: db = sum(g), dot = sum((x - mean)*g), dw = dot*invstd,
 *             k = dot*invstd*invstd/M, dx = ((g - db/M) - (x - mean)*k)*invstd*w.
 * With relu set, the ReLU that follows the batch norm is fused in: y = max(y, 0) forward,
 * and backward g becomes 0 where x*alpha + beta <= 0 (recomputed, bit for bit the forward's
 * value), as PyTorch's threshold_backward masks it.
 * The forward reads x twice and writes y once; the backward reads g and x once and writes
 * dx once (the unfused PyTorch-op version makes 5-7 passes each way).
 *
 * Rows are packed k at a time (k*C columns, k a power of two dividing M) so that the
 * accumulators form long independent vectors even when C is as small as 6; each column j
 * holds channel j % C. Compiled with -ffp-contract=off: no fused multiply-adds, so the
 * float32 expressions round as written.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCKS 16
/* below this many elements a map is done on one thread: forking costs more */
#define PARALLEL_MIN 32768

/* the packing: k rows side by side, k*C <= 128 where possible */
static int64_t rows_per_pack(int64_t M, int64_t C) {
  int64_t k = 1;
  while (2 * k * C <= 128 && M % (2 * k) == 0) k *= 2;
  return k;
}

/* per-column (float) copy of a per-channel vector */
static void spread(const float* per_channel, int64_t C, int64_t L, float* per_column) {
  for (int64_t j = 0; j < L; j++) per_column[j] = per_channel[j % C];
}

/* y = x*alpha + beta per column: alpha = invstd*w, beta = b - mean*alpha (forward, and the
 * backward's recomputed ReLU mask) */
static void affine_columns(const float* mean, const float* invstd, const float* w,
                           const float* b, int64_t C, int64_t L, float* alpha, float* beta) {
  for (int64_t j = 0; j < L; j++) {
    const int64_t c = j % C;
    alpha[j] = invstd[c] * w[c];
    beta[j] = b[c] - mean[c] * alpha[j];
  }
}

/* column sums of all blocks -> channel sums (blocks in order, then the k column groups) */
static double channel_sum(const double* partial, int64_t L, int64_t C, int64_t k, int64_t c) {
  double s = 0;
  for (int64_t b = 0; b < BLOCKS; b++)
    for (int64_t q = 0; q < k; q++) s += partial[b * L + q * C + c];
  return s;
}

/* the packed rows [first, last) of block b of R */
static int64_t block_start(int64_t R, int64_t b) { return R * b / BLOCKS; }

/* column sums of x (what = 0) or of (x - mean)^2 (what = 1) into partial[BLOCKS][L] */
static void column_sums(const float* x, const float* mean_col, int64_t R, int64_t L, int what,
                        double* partial, int threads) {
  #pragma omp parallel for num_threads(threads) schedule(static) if (R * L >= PARALLEL_MIN)
  for (int64_t b = 0; b < BLOCKS; b++) {
    double* acc = partial + b * L;
    memset(acc, 0, sizeof(double) * L);
    for (int64_t r = block_start(R, b); r < block_start(R, b + 1); r++) {
      const float* xr = x + r * L;
      if (what == 0) {
        for (int64_t j = 0; j < L; j++) acc[j] += (double)xr[j];
      } else {
        for (int64_t j = 0; j < L; j++) {
          const float d = xr[j] - mean_col[j];
          acc[j] += (double)(d * d);
        }
      }
    }
  }
}

/* returns 0, or 1 when out of memory */
int bn_forward(const float* x, int64_t M, int64_t C, const float* w, const float* b,
               double eps, int relu, float* y, float* mean, float* invstd, float* var,
               int threads) {
  const int64_t k = rows_per_pack(M, C), L = k * C, R = M / k;
  double* partial = malloc(sizeof(double) * BLOCKS * L);
  float* col = malloc(sizeof(float) * 3 * L);
  if (!partial || !col) { free(partial); free(col); return 1; }
  float *mean_col = col, *alpha = col + L, *beta = col + 2 * L;

  column_sums(x, NULL, R, L, 0, partial, threads);
  for (int64_t c = 0; c < C; c++)
    mean[c] = (float)(channel_sum(partial, L, C, k, c) / (double)M);
  spread(mean, C, L, mean_col);
  column_sums(x, mean_col, R, L, 1, partial, threads);
  for (int64_t c = 0; c < C; c++) {
    const double v = channel_sum(partial, L, C, k, c) / (double)M;
    var[c] = (float)v;
    invstd[c] = (float)(1.0 / sqrt(v + eps));
  }

  affine_columns(mean, invstd, w, b, C, L, alpha, beta);
  #pragma omp parallel for num_threads(threads) schedule(static) if (R * L >= PARALLEL_MIN)
  for (int64_t blk = 0; blk < BLOCKS; blk++)
    for (int64_t r = block_start(R, blk); r < block_start(R, blk + 1); r++) {
      const float* xr = x + r * L;
      float* yr = y + r * L;
      for (int64_t j = 0; j < L; j++) {
        const float v = xr[j] * alpha[j] + beta[j];
        yr[j] = (relu && v < 0) ? 0.0f : v;  /* a NaN stays NaN, as torch.relu keeps it */
      }
    }
  free(partial);
  free(col);
  return 0;
}

/* the output gradient, masked where the fused ReLU's input was not positive */
static inline float masked(float g, float x, float alpha, float beta, int relu) {
  return (relu && !(x * alpha + beta > 0)) ? 0.0f : g;
}

/* One row's part of the backward sums, and of dx. Inlined with relu a constant (0 or 1),
 * so that each loop vectorises without a branch. */
#define INLINE static inline __attribute__((always_inline))
INLINE void grad_sums_row(const float* restrict gr, const float* restrict xr,
                          const float* restrict mean_col, const float* restrict alpha,
                          const float* restrict beta, int64_t L, double* restrict s,
                          double* restrict d, const int relu) {
  for (int64_t j = 0; j < L; j++) {
    const float gj = masked(gr[j], xr[j], alpha[j], beta[j], relu);
    s[j] += (double)gj;
    d[j] += (double)((xr[j] - mean_col[j]) * gj);
  }
}

INLINE void grad_input_row(const float* restrict gr, const float* restrict xr,
                           const float* restrict mean_col, const float* restrict alpha,
                           const float* restrict beta, const float* restrict grad_mean,
                           const float* restrict proj, const float* restrict inv,
                           const float* restrict w_col, int64_t L, float* restrict o,
                           const int relu) {
  for (int64_t j = 0; j < L; j++) {
    const float gj = masked(gr[j], xr[j], alpha[j], beta[j], relu);
    o[j] = ((gj - grad_mean[j]) - (xr[j] - mean_col[j]) * proj[j]) * inv[j] * w_col[j];
  }
}

int bn_backward(const float* g, const float* x, int64_t M, int64_t C, const float* mean,
                const float* invstd, const float* w, const float* b, int relu, float* dx,
                float* dw, float* db, int threads) {
  const int64_t k = rows_per_pack(M, C), L = k * C, R = M / k;
  double* partial = malloc(sizeof(double) * 2 * BLOCKS * L);
  float* col = malloc(sizeof(float) * 7 * L);
  if (!partial || !col) { free(partial); free(col); return 1; }
  double *sum_g = partial, *dot = partial + BLOCKS * L;
  float *mean_col = col, *grad_mean = col + L, *proj = col + 2 * L, *inv = col + 3 * L,
        *w_col = col + 4 * L, *alpha = col + 5 * L, *beta = col + 6 * L;

  spread(mean, C, L, mean_col);
  affine_columns(mean, invstd, w, b, C, L, alpha, beta);
  #pragma omp parallel for num_threads(threads) schedule(static) if (R * L >= PARALLEL_MIN)
  for (int64_t blk = 0; blk < BLOCKS; blk++) {
    double *s = sum_g + blk * L, *d = dot + blk * L;
    memset(s, 0, sizeof(double) * L);
    memset(d, 0, sizeof(double) * L);
    for (int64_t r = block_start(R, blk); r < block_start(R, blk + 1); r++) {
      if (relu)
        grad_sums_row(g + r * L, x + r * L, mean_col, alpha, beta, L, s, d, 1);
      else
        grad_sums_row(g + r * L, x + r * L, mean_col, alpha, beta, L, s, d, 0);
    }
  }
  for (int64_t c = 0; c < C; c++) {
    const float s = (float)channel_sum(sum_g, L, C, k, c);
    const float d = (float)channel_sum(dot, L, C, k, c);
    db[c] = s;
    dw[c] = d * invstd[c];
    for (int64_t q = 0; q < k; q++) {
      grad_mean[q * C + c] = s / (float)M;
      proj[q * C + c] = d * invstd[c] * invstd[c] / (float)M;
    }
  }
  spread(invstd, C, L, inv);
  spread(w, C, L, w_col);
  #pragma omp parallel for num_threads(threads) schedule(static) if (R * L >= PARALLEL_MIN)
  for (int64_t blk = 0; blk < BLOCKS; blk++)
    for (int64_t r = block_start(R, blk); r < block_start(R, blk + 1); r++) {
      if (relu)
        grad_input_row(g + r * L, x + r * L, mean_col, alpha, beta, grad_mean, proj, inv,
                       w_col, L, dx + r * L, 1);
      else
        grad_input_row(g + r * L, x + r * L, mean_col, alpha, beta, grad_mean, proj, inv,
                       w_col, L, dx + r * L, 0);
    }
  free(partial);
  free(col);
  return 0;
}
