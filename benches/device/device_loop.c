/* device_loop.c: the calls device-bench times, against the stand-in driver
 * (tests/c/gpu/fake_cuda.c):
 *   device_loop alloc N   N x (cuMemAlloc_v2 of 4 KiB, cuMemFree_v2),
 *                         through the PLT (linked with -lcuda)
 *   device_loop proc N    the same through pointers from
 *                         cuGetProcAddress_v2 (as the CUDA runtime calls)
 *   device_loop dlsym N   N x dlsym(libm, "cos"): a lookup the shim's
 *                         dlsym hook sees and does not wrap (what every
 *                         program pays, CUDA or not)
 * Prints the nanoseconds per iteration of the timed loop (after a warm-up
 * of N/10), nothing else. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
CUresult cuInit(unsigned);
CUresult cuMemAlloc_v2(CUdeviceptr *, size_t);
CUresult cuMemFree_v2(CUdeviceptr);
CUresult cuGetProcAddress_v2(const char *, void **, int, unsigned long long, int *);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static CUresult (*alloc_fn)(CUdeviceptr *, size_t);
static CUresult (*free_fn)(CUdeviceptr);

static void pairs(long n) {
    for (long i = 0; i < n; i++) {
        CUdeviceptr d = 0;
        if (alloc_fn(&d, 4096) != 0 || free_fn(d) != 0) {
            fprintf(stderr, "driver call failed\n");
            exit(1);
        }
    }
}

static volatile void *sink;

static void lookups(void *h, long n) {
    for (long i = 0; i < n; i++)
        sink = dlsym(h, "cos");
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: device_loop alloc|proc|dlsym N\n");
        return 2;
    }
    long n = atol(argv[2]);
    if (cuInit(0) != 0)
        return 1;
    double t0, t1;
    if (strcmp(argv[1], "dlsym") == 0) {
        void *h = dlopen("libm.so.6", RTLD_NOW);
        if (!h)
            return 1;
        lookups(h, n / 10);
        t0 = now();
        lookups(h, n);
        t1 = now();
    } else {
        alloc_fn = cuMemAlloc_v2;
        free_fn = cuMemFree_v2;
        if (strcmp(argv[1], "proc") == 0) {
            int st;
            if (cuGetProcAddress_v2("cuMemAlloc", (void **)&alloc_fn, 12000, 0, &st) != 0 ||
                cuGetProcAddress_v2("cuMemFree", (void **)&free_fn, 12000, 0, &st) != 0)
                return 1;
        }
        pairs(n / 10);
        t0 = now();
        pairs(n);
        t1 = now();
    }
    printf("%.1f\n", (t1 - t0) / n);
    return 0;
}
