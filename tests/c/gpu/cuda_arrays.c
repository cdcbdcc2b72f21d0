/* cuda_arrays.c: CUDA arrays and IPC imports against the fake driver:
 *   cc -O1 -g -fno-omit-frame-pointer cuda_arrays.c -o cuda_arrays -L. -lcuda
 * - array_kept: a 2D array of 1024 x 512 float4 elements (8 MiB), kept;
 * - array_freed: a 3D array of 64^3 bytes (256 KiB), destroyed;
 * - ipc: 1 MiB allocated and exported; the handle opened (an import of
 *   1 MiB, as another process would) and closed, then opened again and
 *   kept;
 * - host_registered: 1 MiB of the program's memory registered (pinned)
 *   and kept so, 64 KiB registered and unregistered.
 * The stand-in's cuMemGetInfo counts a 256 MiB context reserve.
 * Prints "done". */
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef struct {
    size_t width, height;
    int format;
    unsigned channels;
} ArrayDescriptor;
typedef struct {
    size_t width, height, depth;
    int format;
    unsigned channels, flags;
} Array3DDescriptor;
typedef struct {
    char bytes[64];
} IpcMemHandle;

CUresult cuInit(unsigned);
CUresult cuMemAlloc_v2(CUdeviceptr *, size_t);
CUresult cuArrayCreate_v2(void **, const ArrayDescriptor *);
CUresult cuArray3DCreate_v2(void **, const Array3DDescriptor *);
CUresult cuArrayDestroy(void *);
CUresult cuIpcGetMemHandle(IpcMemHandle *, CUdeviceptr);
CUresult cuIpcOpenMemHandle_v2(CUdeviceptr *, IpcMemHandle, unsigned);
CUresult cuIpcCloseMemHandle(CUdeviceptr);
CUresult cuMemHostRegister_v2(void *, size_t, unsigned);
CUresult cuMemHostUnregister(void *);

static void *volatile sink;
static volatile CUdeviceptr dsink;

static void check(int ok, const char *what) {
    if (!ok) {
        if (write(1, what, strlen(what)) < 0)
            exit(1);
        exit(1);
    }
}

__attribute__((noinline)) static void array_kept(void) {
    ArrayDescriptor d = {1024, 512, 0x20 /* float */, 4};
    void *a = NULL;
    check(cuArrayCreate_v2(&a, &d) == 0 && a, "2D array\n");
    sink = a;
}

__attribute__((noinline)) static void array_freed(void) {
    Array3DDescriptor d = {64, 64, 64, 0x01 /* u8 */, 1, 0};
    void *a = NULL;
    check(cuArray3DCreate_v2(&a, &d) == 0 && a, "3D array\n");
    check(cuArrayDestroy(a) == 0, "destroy\n");
}

__attribute__((noinline)) static void ipc(void) {
    CUdeviceptr mine = 0, theirs = 0;
    check(cuMemAlloc_v2(&mine, 1 << 20) == 0, "alloc\n");
    dsink = mine;
    IpcMemHandle h;
    check(cuIpcGetMemHandle(&h, mine) == 0, "handle\n");
    check(cuIpcOpenMemHandle_v2(&theirs, h, 1) == 0 && theirs, "open\n");
    check(cuIpcCloseMemHandle(theirs) == 0, "close\n");
    check(cuIpcOpenMemHandle_v2(&theirs, h, 1) == 0 && theirs, "open again\n");
    dsink = theirs;
}

__attribute__((noinline)) static void host_registered(void) {
    void *kept = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *brief = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(kept != MAP_FAILED && brief != MAP_FAILED, "mmap\n");
    check(cuMemHostRegister_v2(kept, 1 << 20, 0) == 0, "register 1 MiB\n");
    check(cuMemHostRegister_v2(brief, 64 << 10, 0) == 0, "register 64 KiB\n");
    check(cuMemHostUnregister(brief) == 0, "unregister\n");
    sink = kept;
}

int main(void) {
    check(cuInit(0) == 0, "cuInit\n");
    array_kept();
    array_freed();
    ipc();
    host_registered();
    check(write(1, "done\n", 5) == 5, "write\n");
    return 0;
}
