/* Float32 kernels of a toy transformer decode step. */
#ifndef KERNELS_H
#define KERNELS_H

#include <stddef.h>

#define RMSNORM_EPS 1e-5f

/* out = x / sqrt(mean(x^2) + eps); out and x must not overlap. */
void rmsnorm(float *out, const float *x, size_t n);

/* out = exp(x - max(x)) / sum(exp(x - max(x))); out and x must not overlap. */
void softmax(float *out, const float *x, size_t n);

/* out[r] = sum_c w[r * cols + c] * x[c]  (w is row-major, rows x cols). */
void matvec(float *out, const float *w, const float *x, size_t rows, size_t cols);

#endif
