/*
 * Benchmark: a toy transformer "decode step" over a long context.
 *
 *   h      = rmsnorm(x)        normalise the hidden states (CTX x DIM floats)
 *   scores = matvec(h, q)      score every context position against the query
 *   probs  = softmax(scores)   attention weights over the context
 *
 * Every vector is several MB (more than a core's L2 cache), so each pass over
 * one costs real time.
 * Prints `METRIC tok_s=<steps per second>` (higher is better) plus per-kernel
 * times in microseconds per step.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

#ifndef CTX
#define CTX (1u << 21) /* context positions */
#endif
#ifndef DIM
#define DIM 2 /* floats per position */
#endif
#ifndef STEPS
#define STEPS 12 /* timed steps */
#endif
#define WARMUP 1

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Deterministic pseudo-random float in [-1, 1). */
static float next_float(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / (float)(1u << 23) - 1.0f;
}

static float *alloc_floats(size_t n)
{
    float *p = malloc(n * sizeof *p);
    if (p == NULL) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    memset(p, 0, n * sizeof *p); /* touch every page before timing */
    return p;
}

int main(void)
{
    const size_t n = (size_t)CTX * DIM;
    float *x = alloc_floats(n), *h = alloc_floats(n);
    float *q = alloc_floats(DIM), *scores = alloc_floats(CTX), *probs = alloc_floats(CTX);

    uint32_t seed = 42;
    for (size_t i = 0; i < n; i++)
        x[i] = next_float(&seed);
    for (size_t j = 0; j < DIM; j++)
        q[j] = next_float(&seed);

    double t_norm = 0.0, t_matvec = 0.0, t_softmax = 0.0, t_start = 0.0;
    double checksum = 0.0;
    for (int step = -WARMUP; step < STEPS; step++) {
        if (step == 0)
            t_start = now_us();
        double t0 = now_us();
        rmsnorm(h, x, n);
        double t1 = now_us();
        matvec(scores, h, q, CTX, DIM);
        double t2 = now_us();
        softmax(probs, scores, CTX);
        double t3 = now_us();

        /* use the results: feed them back so every step depends on the last */
        size_t k = ((size_t)step + WARMUP) * 7919u % CTX;
        checksum += probs[k] + h[k * DIM];
        x[k * DIM] += probs[k];
        if (step >= 0) {
            t_norm += t1 - t0;
            t_matvec += t2 - t1;
            t_softmax += t3 - t2;
        }
    }
    double elapsed = now_us() - t_start;

    printf("decode steps: %d, context %u x %d floats, checksum %.9g\n", STEPS, CTX, DIM, checksum);
    printf("METRIC tok_s=%.3f\n", STEPS / (elapsed / 1e6));
    printf("METRIC rmsnorm_us=%.1f\n", t_norm / STEPS);
    printf("METRIC matvec_us=%.1f\n", t_matvec / STEPS);
    printf("METRIC softmax_us=%.1f\n", t_softmax / STEPS);

    free(x), free(h), free(q), free(scores), free(probs);
    return 0;
}
