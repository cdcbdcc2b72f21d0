/* cuda_fork.c: device memory on both sides of a fork:
 *   cc -O1 -g -fno-omit-frame-pointer cuda_fork.c -o cuda_fork -L. -lcuda -pthread
 * A second thread allocates from a pool in a loop (the shim samples the
 * pool's level under a lock) while the main thread forks; the child
 * allocates 2 MiB (parent_kept: 1 MiB in the parent) and from the pool,
 * 20 times.
 * Prints "done" from the parent. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
CUresult cuInit(unsigned);
CUresult cuMemAlloc_v2(CUdeviceptr *, size_t);
CUresult cuMemAllocAsync(CUdeviceptr *, size_t, void *);
CUresult cuMemFreeAsync(CUdeviceptr, void *);

static volatile int stop;
static volatile CUdeviceptr sink;

static void check(int ok, const char *what) {
    if (!ok) {
        if (write(1, what, strlen(what)) < 0)
            exit(1);
        exit(1);
    }
}

static void *churn(void *arg) {
    (void)arg;
    while (!stop) {
        CUdeviceptr d = 0;
        if (cuMemAllocAsync(&d, 4096, 0) == 0)
            cuMemFreeAsync(d, 0);
    }
    return NULL;
}

__attribute__((noinline)) static void parent_kept(void) {
    CUdeviceptr d = 0;
    check(cuMemAlloc_v2(&d, 1 << 20) == 0, "parent alloc\n");
    sink = d;
}

__attribute__((noinline)) static void child_kept(void) {
    CUdeviceptr d = 0;
    check(cuMemAlloc_v2(&d, 2 << 20) == 0, "child alloc\n");
    sink = d;
    check(cuMemAllocAsync(&d, 8192, 0) == 0, "child pool alloc\n");
    sink = d;
}

int main(void) {
    check(cuInit(0) == 0, "cuInit\n");
    parent_kept();
    pthread_t t;
    check(pthread_create(&t, NULL, churn, NULL) == 0, "thread\n");
    usleep(20000);
    for (int i = 0; i < 20; i++) {
        pid_t pid = fork();
        check(pid >= 0, "fork\n");
        if (pid == 0) {
            child_kept();
            _exit(0);
        }
        int status = 1;
        check(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child\n");
    }
    stop = 1;
    pthread_join(t, NULL);
    check(write(1, "done\n", 5) == 5, "write\n");
    return 0;
}
