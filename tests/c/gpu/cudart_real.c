/* cudart_real.c (T6): NVIDIA's own CUDA runtime (from the PyPI wheels
 * nvidia-cuda-runtime-cu12 and nvidia-cuda-runtime, fetched by the test,
 * never committed) over the stand-in driver. Dynamic, opening the runtime
 * as frameworks do:
 *   cc -O1 -g -DCUDART='"libcudart.so.12"' cudart_real.c -o cudart_real12 -ldl
 * or linked with the static runtime (-DSTATIC_CUDART):
 *   cc -O1 -g -DSTATIC_CUDART cudart_real.c -o cudart_real_static \
 *      .../libcudart_static.a -ldl -lrt -pthread
 * The stand-in lacks most of the driver, so the runtime's initialisation
 * fails and cudaMalloc returns an error: what matters is that it is the
 * same error with and without memtally, that nothing crashes, and which
 * driver lookups the runtime made, through whom (the stand-in's ledger).
 * Prints "driver V (rc R) cudaMalloc rc R2". */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

#ifdef STATIC_CUDART
int cudaMalloc(void **, size_t);
int cudaDriverGetVersion(int *);
#endif

int main(void) {
#ifdef STATIC_CUDART
    int (*malloc_fn)(void **, size_t) = cudaMalloc;
    int (*version_fn)(int *) = cudaDriverGetVersion;
#else
    void *h = dlopen(CUDART, RTLD_NOW);
    if (!h) {
        printf("dlopen: %s\n", dlerror());
        return 1;
    }
    int (*malloc_fn)(void **, size_t) = (int (*)(void **, size_t))dlsym(h, "cudaMalloc");
    int (*version_fn)(int *) = (int (*)(int *))dlsym(h, "cudaDriverGetVersion");
    if (!malloc_fn || !version_fn) {
        printf("dlsym failed\n");
        return 1;
    }
#endif
    int v = -1;
    int r0 = version_fn(&v);
    void *p = NULL;
    int r = malloc_fn(&p, 1 << 20);
    printf("driver %d (rc %d) cudaMalloc rc %d\n", v, r0, r);
    return 0;
}
