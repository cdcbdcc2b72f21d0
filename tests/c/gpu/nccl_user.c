/* nccl_user.c (T12): device memory from NCCL's ncclMemAlloc (the stand-in
 * libnccl.so.2 over the stand-in driver):
 *   cc -O1 -g -fno-omit-frame-pointer nccl_user.c -o nccl_user \
 *      -L. -lnccl -lcuda -Wl,-rpath,'$ORIGIN'
 * nccl_kept: 8 MiB never freed; nccl_churn: 3 x 1 MiB (2 MiB with the
 * granularity) allocated and freed. Prints "done". */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ncclMemAlloc(void **ptr, size_t size);
int ncclMemFree(void *ptr);
int cuInit(unsigned flags);

static void *volatile sink;

static void check(int ok, const char *what) {
    if (!ok) {
        if (write(1, what, strlen(what)) < 0)
            exit(1);
        exit(1);
    }
}

__attribute__((noinline)) static void nccl_kept(void) {
    void *p = NULL;
    check(ncclMemAlloc(&p, 8 << 20) == 0 && p, "ncclMemAlloc 8 MiB\n");
    memset(p, 1, 8 << 20);
    sink = p;
}

__attribute__((noinline)) static void nccl_churn(void) {
    for (int i = 0; i < 3; i++) {
        void *p = NULL;
        check(ncclMemAlloc(&p, 1 << 20) == 0 && p, "ncclMemAlloc 1 MiB\n");
        check(ncclMemFree(p) == 0, "ncclMemFree\n");
    }
}

int main(void) {
    check(cuInit(0) == 0, "cuInit\n");
    nccl_kept();
    nccl_churn();
    check(write(1, "done\n", 5) == 5, "write\n");
    return 0;
}
