/* cuda_procaddr.c (T3): gets driver entry points the way the CUDA runtime
 * and modern frameworks do: dlsym only "cuGetProcAddress_v2", then ask it
 * for everything else by base name, version and flags. The pointers it
 * returns are the driver's internal functions (see fake_cuda.c), so no
 * exported symbol is ever called for the allocations below.
 *   cc -O1 -g -fno-omit-frame-pointer cuda_procaddr.c -o cuda_procaddr -ldl
 * Expected ledger (in this order): cuMemAlloc_v2 3000 kept,
 * cuMemAllocAsync 5000 kept, cuMemAllocAsync_ptsz 7000 kept,
 * cuMemAlloc_v2 100 + cuMemFree_v2, cuMemAllocHost_v2 2048 +
 * cuMemFreeHost (these two obtained through the cuGetProcAddress pointer
 * that cuGetProcAddress_v2 itself returned). Prints "done". */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef unsigned long long cuuint64_t;
typedef CUresult (*get_proc_fn)(const char *, void **, int, cuuint64_t, int *);

#define PTSZ 2 /* CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM */

static CUresult (*p_cuInit)(unsigned);
static CUresult (*p_cuMemAlloc)(CUdeviceptr *, size_t);
static CUresult (*p_cuMemFree)(CUdeviceptr);
static CUresult (*p_cuMemAllocAsync)(CUdeviceptr *, size_t, void *);
static CUresult (*p_cuMemAllocAsync_ptsz)(CUdeviceptr *, size_t, void *);
static CUresult (*p_cuMemFreeAsync)(CUdeviceptr, void *);
static CUresult (*p_cuMemFreeAsync_ptsz)(CUdeviceptr, void *);
static CUresult (*p_cuMemAllocHost)(void **, size_t);
static CUresult (*p_cuMemFreeHost)(void *);

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

static void get(get_proc_fn gpa, const char *name, void *slot, cuuint64_t flags) {
    int status = -1;
    void *fn = NULL;
    check(gpa(name, &fn, 12000, flags, &status) == 0 && status == 0 && fn, name);
    *(void **)slot = fn;
}

__attribute__((noinline)) static void procaddr_alloc(void) {
    CUdeviceptr d = 0;
    check(p_cuMemAlloc(&d, 3000) == 0 && d, "cuMemAlloc 3000");
    sink = d; /* kept */
    d = 0;
    check(p_cuMemAllocAsync(&d, 5000, NULL) == 0 && d, "cuMemAllocAsync 5000");
    sink = d; /* kept */
    d = 0;
    check(p_cuMemAllocAsync_ptsz(&d, 7000, NULL) == 0 && d, "cuMemAllocAsync ptsz 7000");
    sink = d; /* kept */
    d = 0;
    check(p_cuMemAlloc(&d, 100) == 0 && d, "cuMemAlloc 100");
    check(p_cuMemFree(d) == 0, "cuMemFree");
    void *h = NULL;
    check(p_cuMemAllocHost(&h, 2048) == 0 && h, "cuMemAllocHost 2048");
    memset(h, 3, 2048);
    check(p_cuMemFreeHost(h) == 0, "cuMemFreeHost");
}

int main(void) {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    check(lib != NULL, "dlopen libcuda.so.1");
    get_proc_fn gpa = (get_proc_fn)dlsym(lib, "cuGetProcAddress_v2");
    check(gpa != NULL, "dlsym cuGetProcAddress_v2");

    get(gpa, "cuInit", &p_cuInit, 0);
    get(gpa, "cuMemAlloc", &p_cuMemAlloc, 0);
    get(gpa, "cuMemFree", &p_cuMemFree, 0);
    get(gpa, "cuMemAllocAsync", &p_cuMemAllocAsync, 0);
    get(gpa, "cuMemAllocAsync", &p_cuMemAllocAsync_ptsz, PTSZ);
    get(gpa, "cuMemFreeAsync", &p_cuMemFreeAsync, 0);
    get(gpa, "cuMemFreeAsync", &p_cuMemFreeAsync_ptsz, PTSZ);
    check(p_cuMemAllocAsync != p_cuMemAllocAsync_ptsz, "distinct ptsz alloc");
    check(p_cuMemFreeAsync != p_cuMemFreeAsync_ptsz, "distinct ptsz free");

    /* cuGetProcAddress can return itself; use that pointer for the rest. */
    get_proc_fn gpa2 = NULL;
    get(gpa, "cuGetProcAddress", &gpa2, 0);
    get(gpa2, "cuMemAllocHost", &p_cuMemAllocHost, 0);
    get(gpa2, "cuMemFreeHost", &p_cuMemFreeHost, 0);

    check(p_cuInit(0) == 0, "cuInit");
    procaddr_alloc();
    say("done\n");
    return 0;
}
