/* cuda_dlsym.c (T2): loads the driver at run time and calls exported
 * symbols found with dlsym, as many frameworks do:
 *   cc -O1 -g -fno-omit-frame-pointer cuda_dlsym.c -o cuda_dlsym -ldl
 * (libcuda.so.1 is found through LD_LIBRARY_PATH or an rpath.)
 * Expected ledger: 2 MiB kept (dlsym_alloc_kept), 5 x 1000 bytes allocated
 * and freed (dlsym_alloc_freed). Prints "done". */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

static CUresult (*p_cuInit)(unsigned);
static CUresult (*p_cuMemAlloc_v2)(CUdeviceptr *, size_t);
static CUresult (*p_cuMemFree_v2)(CUdeviceptr);

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

__attribute__((noinline)) static void dlsym_alloc_kept(void) {
    CUdeviceptr d = 0;
    check(p_cuMemAlloc_v2(&d, 2 << 20) == 0 && d != 0, "alloc 2 MiB");
    sink = d; /* leaked on purpose */
}

__attribute__((noinline)) static void dlsym_alloc_freed(void) {
    for (int i = 0; i < 5; i++) {
        CUdeviceptr d = 0;
        check(p_cuMemAlloc_v2(&d, 1000) == 0 && d != 0, "alloc 1000");
        check(p_cuMemFree_v2(d) == 0, "free");
    }
}

int main(void) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    check(h != NULL, "dlopen libcuda.so.1");
    *(void **)&p_cuInit = dlsym(h, "cuInit");
    *(void **)&p_cuMemAlloc_v2 = dlsym(h, "cuMemAlloc_v2");
    *(void **)&p_cuMemFree_v2 = dlsym(h, "cuMemFree_v2");
    check(p_cuInit && p_cuMemAlloc_v2 && p_cuMemFree_v2, "dlsym");
    check(p_cuInit(0) == 0, "cuInit");
    dlsym_alloc_kept();
    dlsym_alloc_freed();
    say("done\n");
    return 0;
}
