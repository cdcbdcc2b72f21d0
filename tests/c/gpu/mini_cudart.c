/* mini_cudart.c: a stand-in for the CUDA runtime (libcudart), reduced to
 * the memory API, that reaches the driver the way the real runtime does.
 *
 * Built two ways, like the real runtime (libcudart.so and libcudart_static.a):
 *   cc -O1 -g -shared -fPIC -fvisibility=hidden -Wl,-Bsymbolic \
 *      -o libcudart_mini.so mini_cudart.c -ldl -pthread
 *   cc -O1 -g -c -fPIC -fvisibility=hidden -o mini_cudart.o mini_cudart.c
 *   ar rcs libcudart_mini.a mini_cudart.o
 *
 * The real runtime never links against libcuda and never calls an exported
 * driver symbol other than one: at first use it dlopen()s libcuda.so.1,
 * dlsym()s "cuGetProcAddress_v2", and takes every other driver entry point
 * from that, by base name and ABI version (the pointers it gets back are
 * internal driver functions, see fake_cuda.c). This file repeats that
 * sequence of queries, including the probe with an empty name and the two
 * queries for cuGetProcAddress itself; an interposer that only replaces
 * exported driver symbols sees none of the runtime's allocations.
 *
 * Runtime error codes: cudaSuccess 0, cudaErrorInvalidValue 1,
 * cudaErrorMemoryAllocation 2 (from CUDA_ERROR_OUT_OF_MEMORY), and
 * cudaErrorInsufficientDriver 35 when the driver cannot be loaded or lacks
 * an entry point. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

#define EXPORT __attribute__((visibility("default")))

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef int CUdevice;
typedef unsigned long long cuuint64_t;

#define cudaSuccess 0
#define cudaErrorInvalidValue 1
#define cudaErrorMemoryAllocation 2
#define cudaErrorInsufficientDriver 35

#define CUDA_ERROR_OUT_OF_MEMORY 2
#define CUDA_ERROR_NOT_FOUND 500
#define CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM 2

/* The CUDA version this "runtime" was built for. */
#define RUNTIME_VERSION 12090

typedef CUresult (*get_proc_v2_fn)(const char *, void **, int, cuuint64_t, int *);
typedef CUresult (*get_proc_v1_fn)(const char *, void **, int, cuuint64_t);

/* Driver entry points, filled once by load_driver(). */
static struct {
    get_proc_v2_fn getProcAddress_v2; /* the one dlsym'd pointer */
    get_proc_v1_fn getProcAddress_11030;
    get_proc_v2_fn getProcAddress_12000;
    CUresult (*init)(unsigned);
    CUresult (*memAlloc)(CUdeviceptr *, size_t);
    CUresult (*memFree)(CUdeviceptr);
    CUresult (*memAllocAsync)(CUdeviceptr *, size_t, void *);
    CUresult (*memAllocAsync_ptsz)(CUdeviceptr *, size_t, void *);
    CUresult (*memFreeAsync)(CUdeviceptr, void *);
    CUresult (*memFreeAsync_ptsz)(CUdeviceptr, void *);
    CUresult (*memAllocManaged)(CUdeviceptr *, size_t, unsigned);
    CUresult (*memAllocHost)(void **, size_t);
    CUresult (*memFreeHost)(void *);
    CUresult (*ctxGetDevice)(CUdevice *);
} drv;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_error = cudaErrorInsufficientDriver; /* until loaded */

static int to_runtime_error(CUresult rc) {
    if (rc == 0)
        return cudaSuccess;
    if (rc == CUDA_ERROR_OUT_OF_MEMORY)
        return cudaErrorMemoryAllocation;
    return cudaErrorInvalidValue;
}

/* Fetches one entry point through the dlsym'd cuGetProcAddress_v2. */
static int get(const char *name, void *slot, int version, cuuint64_t flags) {
    int status = -1;
    void *fn = NULL;
    CUresult rc = drv.getProcAddress_v2(name, &fn, version, flags, &status);
    *(void **)slot = fn;
    return rc == 0 && status == 0 && fn != NULL;
}

static void load_driver(void) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h)
        return;
    drv.getProcAddress_v2 = (get_proc_v2_fn)dlsym(h, "cuGetProcAddress_v2");
    if (!drv.getProcAddress_v2)
        return;

    /* The real runtime first probes with an empty name (expecting
     * CUDA_ERROR_NOT_FOUND), then asks for cuGetProcAddress itself. */
    void *unused = NULL;
    int status = -1;
    drv.getProcAddress_v2("", &unused, 0, 0, &status);

    int ok = 1;
    ok &= get("cuGetProcAddress", &drv.getProcAddress_11030, 11030, 0);
    ok &= get("cuGetProcAddress", &drv.getProcAddress_12000, 12000, 0);
    ok &= get("cuInit", &drv.init, 2000, 0);
    ok &= get("cuMemAlloc", &drv.memAlloc, 3020, 0);
    ok &= get("cuMemFree", &drv.memFree, 3020, 0);
    ok &= get("cuMemAllocAsync", &drv.memAllocAsync, 11020, 0);
    ok &= get("cuMemAllocAsync", &drv.memAllocAsync_ptsz, 11020,
              CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);
    ok &= get("cuMemFreeAsync", &drv.memFreeAsync, 11020, 0);
    ok &= get("cuMemFreeAsync", &drv.memFreeAsync_ptsz, 11020,
              CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);
    ok &= get("cuMemAllocManaged", &drv.memAllocManaged, 6000, 0);
    ok &= get("cuMemAllocHost", &drv.memAllocHost, 3020, 0);
    ok &= get("cuMemFreeHost", &drv.memFreeHost, 2000, 0);
    ok &= get("cuCtxGetDevice", &drv.ctxGetDevice, 2000, 0);
    if (!ok)
        return;

    CUresult rc = drv.init(0);
    load_error = rc ? to_runtime_error(rc) : cudaSuccess;
}

/* 0 when the driver is usable, else the runtime error to return. */
static int ensure_driver(void) {
    pthread_once(&load_once, load_driver);
    return load_error;
}

EXPORT int cudaMalloc(void **p, size_t n) {
    int err = ensure_driver();
    if (err)
        return err;
    if (!p)
        return cudaErrorInvalidValue;
    if (n == 0) { /* like the real runtime: success, no allocation */
        *p = NULL;
        return cudaSuccess;
    }
    CUdeviceptr d = 0;
    CUresult rc = drv.memAlloc(&d, n);
    if (rc == 0)
        *p = (void *)(size_t)d;
    return to_runtime_error(rc);
}

EXPORT int cudaFree(void *p) {
    int err = ensure_driver();
    if (err)
        return err;
    if (!p) /* cudaFree(NULL) only initialises the runtime */
        return cudaSuccess;
    return to_runtime_error(drv.memFree((CUdeviceptr)(size_t)p));
}

static int malloc_async(CUresult (*alloc)(CUdeviceptr *, size_t, void *), void **p, size_t n,
                        void *stream) {
    if (!p)
        return cudaErrorInvalidValue;
    CUdeviceptr d = 0;
    CUresult rc = alloc(&d, n, stream);
    if (rc == 0)
        *p = (void *)(size_t)d;
    return to_runtime_error(rc);
}

/* Legacy default stream semantics. */
EXPORT int cudaMallocAsync(void **p, size_t n, void *stream) {
    int err = ensure_driver();
    return err ? err : malloc_async(drv.memAllocAsync, p, n, stream);
}

/* Per-thread default stream (what nvcc --default-stream per-thread calls). */
EXPORT int cudaMallocAsync_ptsz(void **p, size_t n, void *stream) {
    int err = ensure_driver();
    return err ? err : malloc_async(drv.memAllocAsync_ptsz, p, n, stream);
}

EXPORT int cudaFreeAsync(void *p, void *stream) {
    int err = ensure_driver();
    if (err)
        return err;
    return to_runtime_error(drv.memFreeAsync((CUdeviceptr)(size_t)p, stream));
}

EXPORT int cudaFreeAsync_ptsz(void *p, void *stream) {
    int err = ensure_driver();
    if (err)
        return err;
    return to_runtime_error(drv.memFreeAsync_ptsz((CUdeviceptr)(size_t)p, stream));
}

EXPORT int cudaMallocManaged(void **p, size_t n, unsigned flags) {
    int err = ensure_driver();
    if (err)
        return err;
    if (!p)
        return cudaErrorInvalidValue;
    CUdeviceptr d = 0;
    CUresult rc = drv.memAllocManaged(&d, n, flags);
    if (rc == 0)
        *p = (void *)(size_t)d;
    return to_runtime_error(rc);
}

EXPORT int cudaMallocHost(void **p, size_t n) {
    int err = ensure_driver();
    if (err)
        return err;
    return to_runtime_error(drv.memAllocHost(p, n));
}

EXPORT int cudaFreeHost(void *p) {
    int err = ensure_driver();
    if (err)
        return err;
    if (!p)
        return cudaSuccess;
    return to_runtime_error(drv.memFreeHost(p));
}

/* CUDA 12 semantics: a symbol the driver lacks is not an error of this
 * call; *funcPtr is NULL and *status (if given) says why. */
EXPORT int cudaGetDriverEntryPoint(const char *symbol, void **funcPtr, unsigned long long flags,
                                   int *status) {
    int err = ensure_driver();
    if (err)
        return err;
    if (!symbol || !funcPtr)
        return cudaErrorInvalidValue;
    CUresult rc = drv.getProcAddress_v2(symbol, funcPtr, RUNTIME_VERSION, flags, status);
    if (rc == CUDA_ERROR_NOT_FOUND)
        return cudaSuccess;
    return to_runtime_error(rc);
}
