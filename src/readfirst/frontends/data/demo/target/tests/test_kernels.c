/* Correctness test: each kernel against a simple double-precision reference. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static int failures = 0;

static float next_float(uint32_t *state) /* in [-1, 1) */
{
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / (float)(1u << 23) - 1.0f;
}

static float *random_vec(size_t n, float lo, float hi, uint32_t seed)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * 0.5f * (next_float(&seed) + 1.0f);
    return v;
}

/* Written so that NaN or inf anywhere counts as a mismatch. */
static void expect_close(const char *what, size_t n, const float *got, const double *want)
{
    for (size_t i = 0; i < n; i++) {
        double tol = 1e-6 + 1e-4 * fabs(want[i]);
        if (!(fabs((double)got[i] - want[i]) <= tol)) {
            printf("FAIL %s: [%zu] = %.9g, expected %.9g\n", what, i, got[i], want[i]);
            failures++;
            return;
        }
    }
    printf("ok   %s\n", what);
}

static void test_rmsnorm(size_t n, float lo, float hi, uint32_t seed)
{
    float *x = random_vec(n, lo, hi, seed), *out = malloc(n * sizeof *out);
    float *copy = malloc(n * sizeof *copy);
    double *want = malloc(n * sizeof *want), ss = 0.0;
    memcpy(copy, x, n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    for (size_t i = 0; i < n; i++)
        want[i] = x[i] / sqrt(ss / n + RMSNORM_EPS);
    rmsnorm(out, x, n);
    char what[64];
    snprintf(what, sizeof what, "rmsnorm n=%zu range=[%g,%g]", n, lo, hi);
    expect_close(what, n, out, want);
    if (memcmp(copy, x, n * sizeof *x) != 0) {
        printf("FAIL %s: input was modified\n", what);
        failures++;
    }
    free(x), free(out), free(copy), free(want);
}

static void test_softmax(size_t n, float lo, float hi, uint32_t seed)
{
    float *x = random_vec(n, lo, hi, seed), *out = malloc(n * sizeof *out);
    double *want = malloc(n * sizeof *want), max = x[0], sum = 0.0;
    for (size_t i = 1; i < n; i++)
        max = x[i] > max ? x[i] : max;
    for (size_t i = 0; i < n; i++)
        sum += want[i] = exp(x[i] - max);
    for (size_t i = 0; i < n; i++)
        want[i] /= sum;
    softmax(out, x, n);
    char what[64];
    snprintf(what, sizeof what, "softmax n=%zu range=[%g,%g]", n, lo, hi);
    expect_close(what, n, out, want);
    free(x), free(out), free(want);
}

static void test_matvec(size_t rows, size_t cols, uint32_t seed)
{
    float *w = random_vec(rows * cols, -1.0f, 1.0f, seed);
    float *x = random_vec(cols, -1.0f, 1.0f, seed + 1), *out = malloc(rows * sizeof *out);
    double *want = malloc(rows * sizeof *want);
    for (size_t r = 0; r < rows; r++) {
        want[r] = 0.0;
        for (size_t c = 0; c < cols; c++)
            want[r] += (double)w[r * cols + c] * x[c];
    }
    matvec(out, w, x, rows, cols);
    char what[64];
    snprintf(what, sizeof what, "matvec %zux%zu", rows, cols);
    expect_close(what, rows, out, want);
    free(w), free(x), free(out), free(want);
}

int main(void)
{
    test_rmsnorm(1, -1.0f, 1.0f, 1);
    test_rmsnorm(1000, -1.0f, 1.0f, 2);
    test_rmsnorm(100003, -50.0f, 80.0f, 3);

    test_softmax(1, -1.0f, 1.0f, 4);
    test_softmax(1000, -5.0f, 5.0f, 5);
    test_softmax(100003, -10.0f, 3.0f, 6);
    test_softmax(4096, 500.0f, 1000.0f, 7); /* exp overflows without the max shift */

    test_matvec(1, 1, 8);
    test_matvec(1000, 8, 9);
    test_matvec(37, 300, 10);

    if (failures) {
        printf("%d test(s) failed\n", failures);
        return 1;
    }
    printf("all tests passed\n");
    return 0;
}
