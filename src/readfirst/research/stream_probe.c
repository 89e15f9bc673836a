/* STREAM-triad-like memory bandwidth probe for readfirst's bottleneck diagnosis.
 *
 * usage: stream_probe [MiB_per_array] [passes]
 *
 * Three arrays of doubles, a[i] = b[i] + s * c[i], best of `passes` timed passes, counted as
 * 24 bytes per element (as STREAM does: no write-allocate traffic). Run once on one thread and
 * once on every CPU this process may use (each thread first-touches its own slice). The
 * default array size is max(32 MiB, the last-level cache), capped at 512 MiB and at an eighth
 * of physical memory, so that the arrays do not live in a large shared L3.
 *
 * Prints METRIC lines: triad_gbs (all threads, the roofline's ceiling), triad_1t_gbs, threads,
 * array_mib. Build: cc -O2 -pthread -o stream_probe stream_probe.c
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double *a, *b, *c;
static size_t n_elems;
static int n_threads, n_passes;
static double scalar = 3.0;
static double best_seconds;
static pthread_barrier_t barrier;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *worker(void *arg) {
    long id = (long)arg;
    size_t lo = n_elems * (size_t)id / (size_t)n_threads;
    size_t hi = n_elems * (size_t)(id + 1) / (size_t)n_threads;
    for (size_t i = lo; i < hi; i++) { /* first touch: pages land near this thread */
        a[i] = 0.0;
        b[i] = 1.0;
        c[i] = 2.0;
    }
    double t0 = 0.0;
    for (int pass = 0; pass <= n_passes; pass++) { /* pass 0 warms up, untimed */
        if (id == 0) t0 = now();
        pthread_barrier_wait(&barrier);
        for (size_t i = lo; i < hi; i++) a[i] = b[i] + scalar * c[i];
        pthread_barrier_wait(&barrier);
        if (id == 0 && pass > 0) {
            double dt = now() - t0;
            if (best_seconds == 0.0 || dt < best_seconds) best_seconds = dt;
        }
    }
    return NULL;
}

static double triad_gbs(int threads) {
    pthread_t tids[1024];
    n_threads = threads;
    best_seconds = 0.0;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    for (long t = 1; t < threads; t++) pthread_create(&tids[t], NULL, worker, (void *)t);
    worker((void *)0);
    for (long t = 1; t < threads; t++) pthread_join(tids[t], NULL);
    pthread_barrier_destroy(&barrier);
    return 24.0 * (double)n_elems / best_seconds / 1e9;
}

static size_t default_mib(void) {
    size_t mib = 32;
#ifdef _SC_LEVEL3_CACHE_SIZE
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l3 > 0 && (size_t)l3 / (1 << 20) > mib) mib = (size_t)l3 / (1 << 20);
#endif
    if (mib > 512) mib = 512;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) {
        size_t cap = (size_t)pages / 8 / (1 << 20) * (size_t)page / 3;
        if (cap >= 8 && mib > cap) mib = cap;
    }
    return mib;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 0;
    if (mib == 0) mib = default_mib();
    n_passes = argc > 2 ? atoi(argv[2]) : 0;
    if (n_passes <= 0) n_passes = 8;
    n_elems = mib * (1 << 20) / sizeof(double);
    cpu_set_t set;
    int cpus = 1;
    if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
    if (cpus < 1) cpus = 1;
    if (cpus > 1024) cpus = 1024;

    double best1 = 0.0, bestn = 0.0;
    int configs[2] = {1, cpus};
    for (int k = 0; k < (cpus > 1 ? 2 : 1); k++) {
        a = malloc(n_elems * sizeof(double)); /* fresh arrays: first touch by the workers */
        b = malloc(n_elems * sizeof(double));
        c = malloc(n_elems * sizeof(double));
        if (!a || !b || !c) {
            fprintf(stderr, "stream_probe: cannot allocate 3 x %zu MiB\n", mib);
            return 1;
        }
        double gbs = triad_gbs(configs[k]);
        if (a[n_elems / 2] != 1.0 + scalar * 2.0) {
            fprintf(stderr, "stream_probe: wrong result\n");
            return 1;
        }
        if (k == 0) best1 = gbs;
        else bestn = gbs;
        free(a);
        free(b);
        free(c);
    }
    if (bestn < best1) bestn = best1;
    printf("METRIC triad_gbs=%.3f\n", bestn);
    printf("METRIC triad_1t_gbs=%.3f\n", best1);
    printf("METRIC threads=%d\n", cpus);
    printf("METRIC array_mib=%zu\n", mib);
    return 0;
}
