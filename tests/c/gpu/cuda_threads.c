/* cuda_threads.c (T11): 8 threads x 10,000 allocate/free pairs, rotating
 * over the three ways a program reaches the driver: the exported symbols
 * (linked with -lcuda), pointers from dlsym, and pointers from
 * cuGetProcAddress_v2 (the driver's internal functions).
 *   cc -O1 -g -fno-omit-frame-pointer cuda_threads.c -o cuda_threads \
 *      -L. -lcuda -ldl -pthread -Wl,-rpath,'$ORIGIN'
 * Each thread keeps up to RING allocations live and frees every one it
 * made, each through the path that made it, so the ledger ends balanced.
 * Odd threads allocate on device 1. Sizes are 256 + i % 4096 bytes.
 * Prints "done". */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef unsigned long long cuuint64_t;

CUresult cuInit(unsigned flags);
CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t size);
CUresult cuMemFree_v2(CUdeviceptr dptr);
CUresult cuGetProcAddress_v2(const char *, void **, int, cuuint64_t, int *);
CUresult fakeCudaSetDevice(int device);
long long fakeCudaLedgerCount(void);

#define THREADS 8
#define ITERATIONS 10000
#define RING 16

typedef CUresult (*alloc_fn)(CUdeviceptr *, size_t);
typedef CUresult (*free_fn)(CUdeviceptr);

/* Path 0: exported symbols, 1: dlsym, 2: cuGetProcAddress_v2. */
static alloc_fn allocs[3];
static free_fn frees[3];
static volatile int failed;

static void say(const char *s) {
    if (write(1, s, strlen(s)) < 0)
        exit(1);
}

static void check(int ok, const char *what) {
    if (!ok) {
        say("unexpected result: ");
        say(what);
        say("\n");
        exit(1);
    }
}

__attribute__((noinline)) static void *threads_worker(void *arg) {
    int t = (int)(size_t)arg;
    CUdeviceptr ptr[RING] = {0};
    int path[RING] = {0};
    if (fakeCudaSetDevice(t % 2) != 0)
        failed = 1;
    for (int i = 0; i < ITERATIONS; i++) {
        int slot = i % RING;
        if (ptr[slot]) {
            if (frees[path[slot]](ptr[slot]) != 0)
                failed = 1;
            ptr[slot] = 0;
        }
        int p = i % 3;
        CUdeviceptr d = 0;
        if (allocs[p](&d, 256 + (size_t)(i % 4096)) != 0 || !d) {
            failed = 1;
            continue;
        }
        ptr[slot] = d;
        path[slot] = p;
    }
    for (int s = 0; s < RING; s++)
        if (ptr[s] && frees[path[s]](ptr[s]) != 0)
            failed = 1;
    return NULL;
}

int main(void) {
    check(cuInit(0) == 0, "cuInit");

    allocs[0] = cuMemAlloc_v2;
    frees[0] = cuMemFree_v2;

    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    check(h != NULL, "dlopen libcuda.so.1");
    *(void **)&allocs[1] = dlsym(h, "cuMemAlloc_v2");
    *(void **)&frees[1] = dlsym(h, "cuMemFree_v2");
    check(allocs[1] && frees[1], "dlsym");

    int status = -1;
    check(cuGetProcAddress_v2("cuMemAlloc", (void **)&allocs[2], 12000, 0, &status) == 0 &&
              status == 0,
          "cuGetProcAddress cuMemAlloc");
    check(cuGetProcAddress_v2("cuMemFree", (void **)&frees[2], 12000, 0, &status) == 0 &&
              status == 0,
          "cuGetProcAddress cuMemFree");

    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        check(pthread_create(&th[t], NULL, threads_worker, (void *)(size_t)t) == 0,
              "pthread_create");
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    check(!failed, "a driver call failed");
    check(fakeCudaLedgerCount() == 0, "allocations left live");
    say("done\n");
    return 0;
}
