/* cudart_user.c (T4, T5): uses only the runtime API (mini_cudart.c, a
 * stand-in for libcudart), which reaches the driver through
 * cuGetProcAddress_v2 alone. Built twice:
 *   cc -O1 -g -fno-omit-frame-pointer cudart_user.c -o cudart_user_dyn \
 *      -L. -lcudart_mini -Wl,-rpath,'$ORIGIN'
 *   cc -O1 -g -fno-omit-frame-pointer cudart_user.c -o cudart_user_static \
 *      libcudart_mini.a -ldl -pthread
 * (libcuda.so.1 is found through LD_LIBRARY_PATH.)
 * Expected ledger: cuMemAlloc_v2 512 KiB kept (runtime_alloc_kept),
 * 20 x cuMemAlloc_v2 1024 + cuMemFree_v2 (runtime_alloc_freed),
 * cuMemAllocAsync 4096 + cuMemFreeAsync and cuMemAllocAsync_ptsz 8192 kept
 * (runtime_async), cuMemAllocHost_v2 1000 + cuMemFreeHost
 * (runtime_pinned). Prints "done". */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cudaMalloc(void **p, size_t n);
int cudaFree(void *p);
int cudaMallocAsync(void **p, size_t n, void *stream);
int cudaMallocAsync_ptsz(void **p, size_t n, void *stream);
int cudaFreeAsync(void *p, void *stream);
int cudaMallocHost(void **p, size_t n);
int cudaFreeHost(void *p);

static void *volatile sink;

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

__attribute__((noinline)) static void runtime_alloc_kept(void) {
    void *p = NULL;
    check(cudaMalloc(&p, 512 << 10) == 0 && p, "cudaMalloc 512 KiB");
    sink = p; /* leaked on purpose */
}

__attribute__((noinline)) static void runtime_alloc_freed(void) {
    for (int i = 0; i < 20; i++) {
        void *p = NULL;
        check(cudaMalloc(&p, 1024) == 0 && p, "cudaMalloc 1024");
        check(cudaFree(p) == 0, "cudaFree");
    }
}

__attribute__((noinline)) static void runtime_async(void) {
    void *p = NULL;
    check(cudaMallocAsync(&p, 4096, NULL) == 0 && p, "cudaMallocAsync 4096");
    check(cudaFreeAsync(p, NULL) == 0, "cudaFreeAsync");
    p = NULL;
    check(cudaMallocAsync_ptsz(&p, 8192, NULL) == 0 && p, "cudaMallocAsync_ptsz 8192");
    sink = p; /* leaked on purpose */
}

__attribute__((noinline)) static void runtime_pinned(void) {
    void *p = NULL;
    check(cudaMallocHost(&p, 1000) == 0 && p, "cudaMallocHost 1000");
    memset(p, 4, 1000);
    check(cudaFreeHost(p) == 0, "cudaFreeHost");
}

int main(void) {
    runtime_alloc_kept();
    runtime_alloc_freed();
    runtime_async();
    runtime_pinned();
    say("done\n");
    return 0;
}
