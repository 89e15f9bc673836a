/* Numerically stable softmax. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

void softmax(float *out, const float *x, size_t n)
{
    if (n == 0)
        return;

    /* 1. find the maximum, so that exp() cannot overflow */
    float max = x[0];
    for (size_t i = 1; i < n; i++)
        if (x[i] > max)
            max = x[i];

    /* 2. exponentials into a scratch buffer */
    float *tmp = malloc(n * sizeof *tmp);
    if (tmp == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        tmp[i] = expf(x[i] - max);

    /* 3. their sum */
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += tmp[i];

    /* 4. copy to the output */
    memcpy(out, tmp, n * sizeof *out);
    free(tmp);

    /* 5. normalise */
    for (size_t i = 0; i < n; i++)
        out[i] /= sum;
}
