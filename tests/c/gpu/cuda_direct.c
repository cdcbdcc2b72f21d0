/* cuda_direct.c (T1): calls the driver API through its exported symbols,
 * linked directly against libcuda.so.1 (here the fake from fake_cuda.c):
 *   cc -O1 -g -fno-omit-frame-pointer cuda_direct.c -o cuda_direct \
 *      -L. -lcuda -Wl,-rpath,'$ORIGIN'
 * Expected ledger: 1 MiB kept (device_alloc_kept), 10 x 4096 allocated and
 * freed (device_alloc_freed), 64 KiB pinned host allocated and freed
 * (pinned_host), 8192 managed allocated and freed (managed), one failed
 * 4 GiB allocation (too_big), and 256 KiB kept on device 1
 * (on_device_one). No stdio, so libc allocates nothing on the host heap.
 * Prints "oom 2" and "done"; exits 1 on any unexpected result. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

CUresult cuInit(unsigned flags);
CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t size);
CUresult cuMemFree_v2(CUdeviceptr dptr);
CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t size, unsigned flags);
CUresult cuMemHostAlloc(void **pp, size_t size, unsigned flags);
CUresult cuMemFreeHost(void *p);
CUresult fakeCudaSetDevice(int device); /* test hook of the fake driver */

#define CU_MEM_ATTACH_GLOBAL 1

static volatile CUdeviceptr sink;

static void say(const char *s) {
    if (write(1, s, strlen(s)) < 0)
        exit(1);
}

static void check(int ok) {
    if (!ok) {
        say("unexpected result\n");
        exit(1);
    }
}

__attribute__((noinline)) static void device_alloc_kept(void) {
    CUdeviceptr d = 0;
    check(cuMemAlloc_v2(&d, 1 << 20) == 0 && d != 0);
    sink = d; /* leaked on purpose */
}

__attribute__((noinline)) static void device_alloc_freed(void) {
    for (int i = 0; i < 10; i++) {
        CUdeviceptr d = 0;
        check(cuMemAlloc_v2(&d, 4096) == 0 && d != 0);
        check(cuMemFree_v2(d) == 0);
    }
}

__attribute__((noinline)) static void pinned_host(void) {
    void *p = NULL;
    check(cuMemHostAlloc(&p, 64 << 10, 0) == 0 && p != NULL);
    memset(p, 1, 64 << 10);
    check(cuMemFreeHost(p) == 0);
}

__attribute__((noinline)) static void managed(void) {
    CUdeviceptr d = 0;
    check(cuMemAllocManaged(&d, 8192, CU_MEM_ATTACH_GLOBAL) == 0 && d != 0);
    check(cuMemFree_v2(d) == 0);
}

__attribute__((noinline)) static void too_big(void) {
    CUdeviceptr d = 0;
    CUresult rc = cuMemAlloc_v2(&d, 4ULL << 30);
    check(rc == 2 && d == 0); /* CUDA_ERROR_OUT_OF_MEMORY, out untouched */
    say("oom 2\n");
}

__attribute__((noinline)) static void on_device_one(void) {
    CUdeviceptr d = 0;
    check(cuMemAlloc_v2(&d, 256 << 10) == 0 && d != 0);
    sink = d; /* leaked on purpose */
}

int main(void) {
    check(cuInit(0) == 0);
    device_alloc_kept();
    device_alloc_freed();
    pinned_host();
    managed();
    too_big();
    check(fakeCudaSetDevice(1) == 0);
    on_device_one();
    say("done\n");
    return 0;
}
