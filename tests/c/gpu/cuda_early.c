/* cuda_early.c: device calls at the edges of a process's life, where a
 * hook runs before anything is set up: in a constructor of the program
 * (before main), and in a constructor of a library the program dlopens
 * (inside the dynamic loader, with its lock held):
 *   cc -O1 -g -shared -fPIC -DEARLY_LIBRARY cuda_early.c -o libearly.so -L. -lcuda
 *   cc -O1 -g -fno-omit-frame-pointer cuda_early.c -o cuda_early -L. -lcuda -ldl
 * before_main keeps 1 MiB, in_dlopen keeps 2 MiB (both call cuInit
 * first: the stand-in wants it). Prints "done". */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
CUresult cuInit(unsigned);
CUresult cuMemAlloc_v2(CUdeviceptr *, size_t);

static volatile CUdeviceptr sink;

static void check(int ok, const char *what) {
    if (!ok) {
        if (write(1, what, strlen(what)) < 0)
            _exit(1);
        _exit(1);
    }
}

#ifdef EARLY_LIBRARY
__attribute__((noinline)) static void in_dlopen(void) {
    CUdeviceptr d = 0;
    check(cuInit(0) == 0 && cuMemAlloc_v2(&d, 2 << 20) == 0, "alloc in dlopen\n");
    sink = d;
}

__attribute__((constructor)) static void library_constructor(void) { in_dlopen(); }
#else
__attribute__((noinline)) static void before_main(void) {
    CUdeviceptr d = 0;
    check(cuInit(0) == 0 && cuMemAlloc_v2(&d, 1 << 20) == 0, "alloc before main\n");
    sink = d;
}

__attribute__((constructor)) static void program_constructor(void) { before_main(); }

int main(void) {
    check(dlopen("./libearly.so", RTLD_NOW) != NULL, "dlopen libearly.so\n");
    check(write(1, "done\n", 5) == 5, "write\n");
    return 0;
}
#endif
