/* Matrix-vector product (rmsnorm is in norm.c, softmax in softmax.c). */
#include "kernels.h"

void matvec(float *out, const float *w, const float *x, size_t rows, size_t cols)
{
    for (size_t r = 0; r < rows; r++) {
        const float *row = w + r * cols;
        float acc = 0.0f;
        for (size_t c = 0; c < cols; c++)
            acc += row[c] * x[c];
        out[r] = acc;
    }
}
