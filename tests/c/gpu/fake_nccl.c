/* fake_nccl.c: a stand-in for NCCL's libnccl.so.2, for the one part of
 * NCCL that allocates device memory for the program: ncclMemAlloc and
 * ncclMemFree (NCCL 2.19+), which NCCL builds on the driver's virtual
 * memory management API, reached through cuGetProcAddress as NCCL does
 * (cudaGetDriverEntryPoint is cuGetProcAddress underneath):
 *   cc -O1 -g -shared -fPIC -fvisibility=hidden -Wl,-Bsymbolic \
 *      -Wl,-soname,libnccl.so.2 -o libnccl.so.2 fake_nccl.c -ldl
 *
 * ncclMemAlloc: reserve address space, create physical memory on the
 * current device, map it. ncclMemFree: retain the handle by address,
 * release it twice (the retain and the creation), unmap, free the address
 * space. Nothing else of NCCL is here. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef unsigned long long Handle;
typedef int ncclResult_t; /* 0 success, 1 unhandled CUDA error, 4 invalid argument */

typedef struct {
    int type, handle_types, location_type, location_id;
    char rest[96];
} Props;

static CUresult (*reserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
static CUresult (*address_free)(CUdeviceptr, size_t);
static CUresult (*create)(Handle *, size_t, const Props *, unsigned long long);
static CUresult (*release)(Handle);
static CUresult (*map)(CUdeviceptr, size_t, size_t, Handle, unsigned long long);
static CUresult (*unmap)(CUdeviceptr, size_t);
static CUresult (*retain)(Handle *, void *);
static CUresult (*ctx_get_device)(int *);

#define GRANULARITY ((size_t)2 << 20)

static int load(void) {
    if (create)
        return 1;
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h)
        return 0;
    CUresult (*gpa)(const char *, void **, int, unsigned long long, int *) =
        (CUresult(*)(const char *, void **, int, unsigned long long, int *))dlsym(
            h, "cuGetProcAddress_v2");
    if (!gpa)
        return 0;
    int st;
    return gpa("cuMemAddressReserve", (void **)&reserve, 12000, 0, &st) == 0 &&
           gpa("cuMemAddressFree", (void **)&address_free, 12000, 0, &st) == 0 &&
           gpa("cuMemCreate", (void **)&create, 12000, 0, &st) == 0 &&
           gpa("cuMemRelease", (void **)&release, 12000, 0, &st) == 0 &&
           gpa("cuMemMap", (void **)&map, 12000, 0, &st) == 0 &&
           gpa("cuMemUnmap", (void **)&unmap, 12000, 0, &st) == 0 &&
           gpa("cuMemRetainAllocationHandle", (void **)&retain, 12000, 0, &st) == 0 &&
           gpa("cuCtxGetDevice", (void **)&ctx_get_device, 12000, 0, &st) == 0;
}

static size_t rounded(size_t size) { return (size + GRANULARITY - 1) / GRANULARITY * GRANULARITY; }

/* The sizes of live allocations (the real NCCL asks the driver with
 * cuMemGetAddressRange, which the fake driver does not have). */
#define MAX_LIVE 64
static struct {
    void *ptr;
    size_t size;
} live[MAX_LIVE];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int remember(void *ptr, size_t size) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_LIVE; i++) {
        if (!live[i].ptr) {
            live[i].ptr = ptr;
            live[i].size = size;
            pthread_mutex_unlock(&lock);
            return 1;
        }
    }
    pthread_mutex_unlock(&lock);
    return 0;
}

static size_t forget(void *ptr) {
    size_t n = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i].ptr == ptr) {
            n = live[i].size;
            live[i].ptr = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return n;
}

EXPORT ncclResult_t ncclMemAlloc(void **ptr, size_t size) {
    if (!ptr || !size)
        return 4;
    if (!load())
        return 1;
    int device = 0;
    if (ctx_get_device(&device) != 0)
        return 1;
    size_t n = rounded(size);
    Props p;
    memset(&p, 0, sizeof p);
    p.type = 1;
    p.location_type = 1;
    p.location_id = device;
    CUdeviceptr va = 0;
    Handle h = 0;
    if (reserve(&va, n, GRANULARITY, 0, 0) != 0)
        return 1;
    if (create(&h, n, &p, 0) != 0) {
        address_free(va, n);
        return 1;
    }
    if (map(va, n, 0, h, 0) != 0 || !remember((void *)(size_t)va, n)) {
        release(h);
        address_free(va, n);
        return 1;
    }
    *ptr = (void *)(size_t)va;
    return 0;
}

EXPORT ncclResult_t ncclMemFree(void *ptr) {
    if (!ptr)
        return 0;
    if (!load())
        return 1;
    size_t n = forget(ptr);
    Handle h = 0;
    if (!n || retain(&h, ptr) != 0)
        return 4;
    if (release(h) != 0 || unmap((CUdeviceptr)(size_t)ptr, n) != 0 || release(h) != 0 ||
        address_free((CUdeviceptr)(size_t)ptr, n) != 0)
        return 1;
    return 0;
}
