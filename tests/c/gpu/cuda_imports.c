/* cuda_imports.c: mipmapped arrays, pool pointers imported from another
 * process, and external memory mapped in, against the fake driver:
 *   cc -O1 -g -fno-omit-frame-pointer cuda_imports.c -o cuda_imports -L. -lcuda
 * - mipmap_kept: 256 x 256 RGBA8, 9 levels (4 x 87,381 = 349,524 bytes),
 *   kept;
 * - mipmap_freed: 64 x 64 floats, 4 layers, 3 levels (86,016 bytes),
 *   destroyed;
 * - pool_import: 1 MiB from the default pool, exported and imported (as
 *   another process would) through a cuGetProcAddress_v2 lookup, freed
 *   with cuMemFree, imported again and kept;
 * - external: 4 MiB of external memory imported; a 2 MiB buffer mapped
 *   and kept, a 1 MiB buffer mapped and freed, a mipmapped array mapped
 *   and destroyed, another mapped and kept;
 * - shareable: 2 MiB of physical memory created (kept) and exported as a
 *   file descriptor; imported (as another process would), mapped,
 *   unmapped and released; imported again, mapped and kept.
 * Prints "done". */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef struct {
    size_t width, height, depth;
    int format;
    unsigned channels, flags;
} Array3DDescriptor;
typedef struct {
    char bytes[64];
} PoolPtrExportData;
typedef struct {
    int type;
    union {
        int fd;
        struct {
            void *handle;
            const void *name;
        } win32;
        const void *nvSciBufObject;
    } handle;
    unsigned long long size;
    unsigned flags;
    unsigned reserved[16];
} ExternalMemoryHandleDesc;
typedef struct {
    unsigned long long offset, size;
    unsigned flags;
    unsigned reserved[16];
} ExternalMemoryBufferDesc;
typedef struct {
    unsigned long long offset;
    Array3DDescriptor desc;
    unsigned levels;
    unsigned reserved[16];
} ExternalMemoryMipmappedArrayDesc;

CUresult cuInit(unsigned);
CUresult cuMemAllocAsync(CUdeviceptr *, size_t, void *);
CUresult cuMemFree_v2(CUdeviceptr);
CUresult cuMipmappedArrayCreate(void **, const Array3DDescriptor *, unsigned);
CUresult cuMipmappedArrayDestroy(void *);
CUresult cuMemPoolExportPointer(PoolPtrExportData *, CUdeviceptr);
CUresult cuGetProcAddress_v2(const char *, void **, int, unsigned long long, int *);
CUresult cuImportExternalMemory(void **, const ExternalMemoryHandleDesc *);
CUresult cuMemCreate(unsigned long long *, size_t, const void *, unsigned long long);
CUresult cuMemRelease(unsigned long long);
CUresult cuMemExportToShareableHandle(void *, unsigned long long, int, unsigned long long);
CUresult cuMemImportFromShareableHandle(unsigned long long *, void *, int);
CUresult cuMemAddressReserve(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
CUresult cuMemMap(CUdeviceptr, size_t, size_t, unsigned long long, unsigned long long);
CUresult cuMemUnmap(CUdeviceptr, size_t);
CUresult cuExternalMemoryGetMappedBuffer(CUdeviceptr *, void *, const ExternalMemoryBufferDesc *);
CUresult cuExternalMemoryGetMappedMipmappedArray(void **, void *,
                                                 const ExternalMemoryMipmappedArrayDesc *);

static void *volatile sink;
static volatile CUdeviceptr dsink;

static void check(int ok, const char *what) {
    if (!ok) {
        if (write(1, what, strlen(what)) < 0)
            exit(1);
        exit(1);
    }
}

__attribute__((noinline)) static void mipmap_kept(void) {
    Array3DDescriptor d = {256, 256, 0, 0x01 /* u8 */, 4, 0};
    void *a = NULL;
    check(cuMipmappedArrayCreate(&a, &d, 9) == 0 && a, "mipmap\n");
    sink = a;
}

__attribute__((noinline)) static void mipmap_freed(void) {
    Array3DDescriptor d = {64, 64, 4, 0x20 /* float */, 1, 1 /* layered */};
    void *a = NULL;
    check(cuMipmappedArrayCreate(&a, &d, 3) == 0 && a, "layered mipmap\n");
    check(cuMipmappedArrayDestroy(a) == 0, "destroy mipmap\n");
}

__attribute__((noinline)) static void pool_import(void) {
    typedef CUresult (*Import)(CUdeviceptr *, void *, PoolPtrExportData *);
    Import import = NULL;
    int status = -1;
    check(cuGetProcAddress_v2("cuMemPoolImportPointer", (void **)&import, 12000, 0, &status) == 0 &&
              import,
          "lookup\n");
    CUdeviceptr mine = 0, theirs = 0;
    check(cuMemAllocAsync(&mine, 1 << 20, NULL) == 0, "pool alloc\n");
    dsink = mine;
    PoolPtrExportData data;
    check(cuMemPoolExportPointer(&data, mine) == 0, "export\n");
    check(import(&theirs, NULL, &data) == 0 && theirs, "import\n");
    check(cuMemFree_v2(theirs) == 0, "free import\n");
    check(import(&theirs, NULL, &data) == 0 && theirs, "import again\n");
    dsink = theirs;
}

__attribute__((noinline)) static void external(void) {
    ExternalMemoryHandleDesc h;
    memset(&h, 0, sizeof h);
    h.type = 1; /* an opaque file descriptor */
    h.handle.fd = 3;
    h.size = 4 << 20;
    void *ext = NULL;
    check(cuImportExternalMemory(&ext, &h) == 0 && ext, "import external\n");
    ExternalMemoryBufferDesc kept = {0, 2 << 20, 0, {0}};
    ExternalMemoryBufferDesc brief = {2 << 20, 1 << 20, 0, {0}};
    CUdeviceptr a = 0, b = 0;
    check(cuExternalMemoryGetMappedBuffer(&a, ext, &kept) == 0 && a, "map buffer\n");
    check(cuExternalMemoryGetMappedBuffer(&b, ext, &brief) == 0 && b, "map buffer 2\n");
    check(cuMemFree_v2(b) == 0, "free buffer\n");
    dsink = a;
    ExternalMemoryMipmappedArrayDesc m;
    memset(&m, 0, sizeof m);
    m.desc.width = 128;
    m.desc.height = 128;
    m.desc.format = 0x01;
    m.desc.channels = 4;
    m.levels = 1;
    void *x = NULL, *y = NULL;
    check(cuExternalMemoryGetMappedMipmappedArray(&x, ext, &m) == 0 && x, "map array\n");
    check(cuMipmappedArrayDestroy(x) == 0, "destroy mapped array\n");
    check(cuExternalMemoryGetMappedMipmappedArray(&y, ext, &m) == 0 && y, "map array 2\n");
    sink = y;
}

__attribute__((noinline)) static void shareable(void) {
    /* CUmemAllocationProp: pinned, POSIX fd handles, on device 0. */
    int prop[8] = {1, 1, 1, 0, 0, 0, 0, 0};
    unsigned long long mine = 0, theirs = 0;
    size_t size = 2 << 20;
    check(cuMemCreate(&mine, size, prop, 0) == 0, "create\n");
    int fd = -1;
    check(cuMemExportToShareableHandle(&fd, mine, 1, 0) == 0 && fd >= 0, "export\n");
    CUdeviceptr va = 0;
    check(cuMemAddressReserve(&va, 2 * size, 0, 0, 0) == 0, "reserve\n");
    check(cuMemImportFromShareableHandle(&theirs, (void *)(long)fd, 1) == 0, "import\n");
    check(cuMemMap(va, size, 0, theirs, 0) == 0, "map\n");
    ((volatile char *)va)[0] = 1;
    check(cuMemUnmap(va, size) == 0, "unmap\n");
    check(cuMemRelease(theirs) == 0, "release\n");
    check(cuMemImportFromShareableHandle(&theirs, (void *)(long)fd, 1) == 0, "import again\n");
    check(cuMemMap(va + size, size, 0, theirs, 0) == 0, "map again\n");
    dsink = va;
    close(fd);
}

int main(void) {
    check(cuInit(0) == 0, "cuInit\n");
    mipmap_kept();
    mipmap_freed();
    pool_import();
    external();
    shareable();
    check(write(1, "done\n", 5) == 5, "write\n");
    return 0;
}
