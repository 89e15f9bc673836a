/* RMS normalisation. */
#include <math.h>
#include <string.h>

#include "kernels.h"

void rmsnorm(float *out, const float *x, size_t n)
{
    /* 1. work on a copy so that the input is left untouched */
    memcpy(out, x, n * sizeof *out);

    /* 2. mean of the squares */
    double sumsq = 0.0;
    for (size_t i = 0; i < n; i++)
        sumsq += out[i] * out[i];
    float rms = sqrtf((float)(sumsq / (double)n) + RMSNORM_EPS);

    /* 3. scale in place */
    for (size_t i = 0; i < n; i++)
        out[i] /= rms;
}
