/* cuda_vmm.c (T8, T9, T10): the virtual memory management API, stream-
 * ordered pools and a failed allocation, against the fake driver:
 *   cc -O1 -g -fno-omit-frame-pointer cuda_vmm.c -o cuda_vmm -L. -lcuda -ldl
 *
 * - vmm_release_first: reserve 8 MiB of address space, create 2 MiB on
 *   device 0, map it, write it, release the handle while mapped (as
 *   frameworks do), then unmap: freed at the unmap.
 * - vmm_unmap_first (every call through cuGetProcAddress_v2, as the CUDA
 *   runtime makes them): create 2 MiB, map it after the first, retain it
 *   by address, unmap, release twice: freed at the last release.
 * - vmm_leaked: create 4 MiB on device 1, map it into a second 4 MiB
 *   reservation, release the handle; never unmapped: live at exit, as is
 *   the second reservation. The first reservation is freed.
 * - pool_churn: a created pool on device 0; 3 x 1 MiB from it (reserved
 *   4 MiB), all freed (still reserved), then trimmed to 0, destroyed.
 * - pool_kept: 512 KiB from the default pool of device 0, kept (the
 *   default pool reserves 2 MiB).
 * - vmm_too_big: cuMemCreate of 2 GiB fails (FAKE_CUDA_MEM_LIMIT, 1 GiB).
 * Prints "done". */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef unsigned long long CUmemGenericAllocationHandle;
typedef unsigned long long cuuint64_t;
typedef void *CUmemoryPool;

/* The start of CUmemAllocationProp / CUmemPoolProps, padded to more than
 * their real size. */
typedef struct {
    int type;         /* CU_MEM_ALLOCATION_TYPE_PINNED = 1 */
    int handle_types; /* none */
    int location_type; /* CU_MEM_LOCATION_TYPE_DEVICE = 1 */
    int location_id;
    char rest[96];
} Props;

CUresult cuInit(unsigned);
CUresult cuMemAddressReserve(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
CUresult cuMemAddressFree(CUdeviceptr, size_t);
CUresult cuMemCreate(CUmemGenericAllocationHandle *, size_t, const Props *, unsigned long long);
CUresult cuMemRelease(CUmemGenericAllocationHandle);
CUresult cuMemMap(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
CUresult cuMemUnmap(CUdeviceptr, size_t);
CUresult cuMemPoolCreate(CUmemoryPool *, const Props *);
CUresult cuMemPoolDestroy(CUmemoryPool);
CUresult cuMemPoolTrimTo(CUmemoryPool, size_t);
CUresult cuMemAllocFromPoolAsync(CUdeviceptr *, size_t, CUmemoryPool, void *);
CUresult cuMemFreeAsync(CUdeviceptr, void *);
CUresult cuMemAllocAsync(CUdeviceptr *, size_t, void *);
CUresult cuGetProcAddress_v2(const char *, void **, int, cuuint64_t, int *);

#define MiB ((size_t)1 << 20)

static volatile CUdeviceptr sink;

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

static Props on_device(int device) {
    Props p;
    memset(&p, 0, sizeof p);
    p.type = 1;
    p.location_type = 1;
    p.location_id = device;
    return p;
}

static CUdeviceptr space;

__attribute__((noinline)) static void vmm_release_first(void) {
    Props p = on_device(0);
    CUmemGenericAllocationHandle h = 0;
    check(cuMemAddressReserve(&space, 8 * MiB, 0, 0, 0) == 0 && space, "reserve");
    check(cuMemCreate(&h, 2 * MiB, &p, 0) == 0 && h, "create");
    check(cuMemMap(space, 2 * MiB, 0, h, 0) == 0, "map");
    memset((void *)space, 7, 2 * MiB);
    check(cuMemRelease(h) == 0, "release while mapped");
    check(cuMemUnmap(space, 2 * MiB) == 0, "unmap");
}

__attribute__((noinline)) static void vmm_unmap_first(void) {
    CUresult (*create)(CUmemGenericAllocationHandle *, size_t, const Props *, unsigned long long);
    CUresult (*release)(CUmemGenericAllocationHandle);
    CUresult (*map)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
    CUresult (*unmap)(CUdeviceptr, size_t);
    CUresult (*retain)(CUmemGenericAllocationHandle *, void *);
    int st;
    check(cuGetProcAddress_v2("cuMemCreate", (void **)&create, 12000, 0, &st) == 0, "gpa create");
    check(cuGetProcAddress_v2("cuMemRelease", (void **)&release, 12000, 0, &st) == 0, "gpa rel");
    check(cuGetProcAddress_v2("cuMemMap", (void **)&map, 12000, 0, &st) == 0, "gpa map");
    check(cuGetProcAddress_v2("cuMemUnmap", (void **)&unmap, 12000, 0, &st) == 0, "gpa unmap");
    check(cuGetProcAddress_v2("cuMemRetainAllocationHandle", (void **)&retain, 12000, 0, &st) == 0,
          "gpa retain");

    Props p = on_device(0);
    CUmemGenericAllocationHandle h = 0, again = 0;
    CUdeviceptr at = space + 2 * MiB;
    check(create(&h, 2 * MiB, &p, 0) == 0 && h, "create");
    check(map(at, 2 * MiB, 0, h, 0) == 0, "map");
    check(retain(&again, (void *)(at + 4096)) == 0 && again == h, "retain");
    check(unmap(at, 2 * MiB) == 0, "unmap");
    check(release(h) == 0, "release");
    check(release(again) == 0, "release the retained");
    check(cuMemAddressFree(space, 8 * MiB) == 0, "address free");
}

__attribute__((noinline)) static void vmm_leaked(void) {
    Props p = on_device(1);
    CUmemGenericAllocationHandle h = 0;
    CUdeviceptr more = 0;
    check(cuMemAddressReserve(&more, 4 * MiB, 0, 0, 0) == 0 && more, "reserve 2");
    check(cuMemCreate(&h, 4 * MiB, &p, 0) == 0 && h, "create 4 MiB");
    check(cuMemMap(more, 4 * MiB, 0, h, 0) == 0, "map 4 MiB");
    check(cuMemRelease(h) == 0, "release");
    sink = more; /* mapped at exit */
}

__attribute__((noinline)) static void pool_churn(void) {
    Props p = on_device(0);
    CUmemoryPool pool = 0;
    CUdeviceptr d[3];
    check(cuMemPoolCreate(&pool, &p) == 0 && pool, "pool create");
    for (int i = 0; i < 3; i++)
        check(cuMemAllocFromPoolAsync(&d[i], MiB, pool, 0) == 0 && d[i], "from pool");
    for (int i = 0; i < 3; i++)
        check(cuMemFreeAsync(d[i], 0) == 0, "free async");
    check(cuMemPoolTrimTo(pool, 0) == 0, "trim");
    check(cuMemPoolDestroy(pool) == 0, "destroy");
}

__attribute__((noinline)) static void pool_kept(void) {
    CUdeviceptr d = 0;
    check(cuMemAllocAsync(&d, 512 * 1024, 0) == 0 && d, "alloc async");
    sink = d;
}

__attribute__((noinline)) static void vmm_too_big(void) {
    Props p = on_device(0);
    CUmemGenericAllocationHandle h = 0;
    check(cuMemCreate(&h, (size_t)2 << 30, &p, 0) == 2, "2 GiB fails out of memory");
}

int main(void) {
    check(cuInit(0) == 0, "cuInit");
    vmm_release_first();
    vmm_unmap_first();
    vmm_leaked();
    pool_churn();
    pool_kept();
    vmm_too_big();
    say("done\n");
    return 0;
}
