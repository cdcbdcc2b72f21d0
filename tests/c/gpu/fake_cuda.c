/* fake_cuda.c: a stand-in for NVIDIA's driver library, libcuda.so.1, for
 * tests that run where there is no GPU.
 *
 * Build (the flags matter, see below):
 *   cc -O1 -g -shared -fPIC -fvisibility=hidden -Wl,-Bsymbolic \
 *      -Wl,-soname,libcuda.so.1 -o libcuda.so.1 fake_cuda.c -pthread
 *
 * "Device" memory is host memory from mmap(2). The library keeps its own
 * ledger of what it handed out, which is the ground truth the tests compare
 * memtally's GPU accounting against: when FAKE_CUDA_LEDGER names a file,
 * every allocation, free and failure appends one JSON line to it, e.g.
 *
 *   {"op":"alloc","fn":"cuMemAlloc_v2","ptr":"0x7f2a1c000000","size":1024,"device":0}
 *   {"op":"free","fn":"cuMemFree_v2","ptr":"0x7f2a1c000000","size":1024,"device":0}
 *   {"op":"fail","fn":"cuMemAlloc_v2","ptr":"0x0","size":4294967296,"device":0}
 *   {"op":"badfree","fn":"cuMemFree_v2","ptr":"0x1234","size":0,"device":0}
 *
 * plus the pool and virtual-memory lines described with those calls
 * below ("pool", "reserve", "unreserve", "create", "release", "physfree",
 * "map", "unmap", "retain"), "hostreg"/"hostunreg" lines for host memory
 * registered and unregistered, "import"/"unimport" lines for IPC handles
 * opened and closed (see below), and a "lookup" line per cuGetProcAddress
 * call, naming the object that called it (see log_lookup).
 *
 * "fn" is the ABI name of the entry point that ran (cuMemAllocAsync_ptsz
 * and cuMemAllocAsync are told apart). A free line carries the size and
 * device of the allocation it released; pinned host memory has device -1.
 * A badfree (unknown pointer, or a device pointer given to cuMemFreeHost
 * and vice versa) has size 0 and the caller's device (-1 for host frees).
 *
 * Like the real driver, cuGetProcAddress hands out the addresses of the
 * library's INTERNAL functions (the static impl_* below), not of its
 * exported symbols, and the library is linked -Bsymbolic with hidden
 * visibility: a preloaded interposer that defines cuMemAlloc_v2 catches
 * calls made through the exported name (direct linking, dlsym) but never
 * replaces what cuGetProcAddress returns, nor the library's calls to itself.
 * That is exactly the situation the CUDA runtime creates, since it gets
 * every driver entry point through cuGetProcAddress.
 *
 * The library never calls malloc: device memory, the table of live
 * allocations and the ledger use mmap(2) and write(2) only, so host-heap
 * tracking sees nothing of the fake driver itself.
 *
 * Environment (read once, on first use):
 *   FAKE_CUDA_LEDGER     ledger file (opened O_APPEND|O_CREAT); unset: none
 *   FAKE_CUDA_VERSION    what cuDriverGetVersion reports (default 12090)
 *   FAKE_CUDA_DEVICE     the current device of every thread (default 0)
 *                        until the thread calls fakeCudaSetDevice()
 *   FAKE_CUDA_MEM_LIMIT  any single allocation larger than this many bytes
 *                        fails with CUDA_ERROR_OUT_OF_MEMORY (default 1 GiB)
 *   FAKE_CUDA_NO_MEMORY  1: device allocations get addresses with no memory
 *                        behind them, without a system call (benchmarks of
 *                        what an interposer adds, without mmap's noise)
 *
 * As with the real driver, allocation, free and device queries return
 * CUDA_ERROR_NOT_INITIALIZED until cuInit(0) has been called;
 * cuDriverGetVersion and cuGetProcAddress work before it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h> /* snprintf only: no FILE streams */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef int CUdevice;
typedef void *CUstream;
typedef void *CUmemoryPool;
typedef unsigned long long cuuint64_t;

#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_VALUE 1
#define CUDA_ERROR_OUT_OF_MEMORY 2
#define CUDA_ERROR_NOT_INITIALIZED 3
#define CUDA_ERROR_INVALID_DEVICE 101
#define CUDA_ERROR_NOT_FOUND 500

/* CUdriverProcAddressQueryResult */
#define CU_GET_PROC_ADDRESS_SUCCESS 0
#define CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND 1
#define CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT 2

/* cuGetProcAddress flags */
#define CU_GET_PROC_ADDRESS_LEGACY_STREAM 1
#define CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM 2

#define FAKE_DEVICE_COUNT 2

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static int cfg_version = 12090;
static int cfg_device = 0;
static unsigned long long cfg_mem_limit = 1ULL << 30;
static int cfg_no_memory; /* FAKE_CUDA_NO_MEMORY: addresses only */
static uintptr_t next_fake_address = 0x7e0000000000ull;
static int ledger_fd = -1;
static volatile int initialized; /* set by cuInit */

/* The calling thread's device when it has called fakeCudaSetDevice, else
 * -1. initial-exec TLS: the variable lives in the static TLS block even
 * when the library is dlopen'ed, so touching it never makes glibc malloc
 * a dynamic TLS block. */
static __thread __attribute__((tls_model("initial-exec"))) int tls_device = -1;

static void setup(void) {
    const char *s;
    if ((s = getenv("FAKE_CUDA_VERSION")) && *s)
        cfg_version = atoi(s);
    if ((s = getenv("FAKE_CUDA_DEVICE")) && *s) {
        int d = atoi(s);
        if (d >= 0 && d < FAKE_DEVICE_COUNT)
            cfg_device = d;
    }
    if ((s = getenv("FAKE_CUDA_MEM_LIMIT")) && *s)
        cfg_mem_limit = strtoull(s, NULL, 0);
    if ((s = getenv("FAKE_CUDA_NO_MEMORY")) && *s == '1')
        cfg_no_memory = 1;
    if ((s = getenv("FAKE_CUDA_LEDGER")) && *s)
        ledger_fd = open(s, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

static void ensure_setup(void) { pthread_once(&setup_once, setup); }

/* Fork: the table's lock is taken around fork, so that a child never
 * starts with it held by a thread that does not exist there (the real
 * driver does not support use after fork at all; the stand-in lets the
 * tests fork while another thread allocates). */
static pthread_mutex_t lock;
static void before_fork(void) { pthread_mutex_lock(&lock); }
static void after_fork(void) { pthread_mutex_unlock(&lock); }
__attribute__((constructor)) static void register_fork_handlers(void) {
    pthread_atfork(before_fork, after_fork, after_fork);
}

static int current_device(void) {
    ensure_setup();
    return tls_device >= 0 ? tls_device : cfg_device;
}

/* ------------------------------------------------------------------ */
/* Live-allocation table: open addressing with linear probing, keyed by  */
/* address, backward-shift deletion (no tombstones), kept at most half   */
/* full. Storage comes from mmap. Guarded by `lock`, which also orders   */
/* the ledger lines.                                                     */

/* KIND_MAPPED: memory of another process or API mapped here, freed with
 * cuMemFree (pool imports, external memory's buffers). */
enum kind { KIND_DEVICE, KIND_HOST, KIND_ARRAY, KIND_IMPORT, KIND_MAPPED };

struct pool;

struct entry {
    uintptr_t ptr; /* 0: empty slot */
    size_t size;   /* what the caller asked for */
    size_t maplen; /* what was mmap'ed */
    int device;
    int kind;
    struct pool *pool; /* stream-ordered allocations: their pool */
};

/* A stream-ordered memory pool. Its reserved bytes grow in 2 MiB steps to
 * cover what is in use, stay when allocations are freed (as with a real
 * pool whose release threshold has not been reached) and shrink only when
 * trimmed (cuMemPoolTrimTo) or destroyed. Every change of the reserved
 * bytes is a ledger line {"op":"pool","ptr":POOL,"size":RESERVED}. */
struct pool {
    int device;
    int in_use; /* created and not destroyed (default pools: always) */
    size_t used;
    size_t reserved;
    size_t reserved_high;
};

#define POOL_STEP ((size_t)2 << 20)
#define MAX_POOLS 16
static struct pool default_pools[FAKE_DEVICE_COUNT] = {{0, 1, 0, 0, 0}, {1, 1, 0, 0, 0}};
static struct pool created_pools[MAX_POOLS];

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *table;
static size_t table_cap; /* power of two */
static size_t table_len;
static long long live_count;

static size_t slot_of(uintptr_t p, size_t cap) {
    return (size_t)(((uint64_t)p >> 4) * 0x9E3779B97F4A7C15ULL >> 17) & (cap - 1);
}

static void table_put(struct entry *t, size_t cap, const struct entry *e) {
    size_t i = slot_of(e->ptr, cap);
    while (t[i].ptr)
        i = (i + 1) & (cap - 1);
    t[i] = *e;
}

/* Makes room for one more entry. Returns 0 when out of memory. */
static int table_reserve(void) {
    if ((table_len + 1) * 2 <= table_cap)
        return 1;
    size_t cap = table_cap ? table_cap * 2 : 1024;
    struct entry *t = mmap(NULL, cap * sizeof *t, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED)
        return 0;
    for (size_t i = 0; i < table_cap; i++)
        if (table[i].ptr)
            table_put(t, cap, &table[i]);
    if (table)
        munmap(table, table_cap * sizeof *table);
    table = t;
    table_cap = cap;
    return 1;
}

static struct entry *table_find(uintptr_t p) {
    if (!table_cap || !p)
        return NULL;
    for (size_t i = slot_of(p, table_cap); table[i].ptr; i = (i + 1) & (table_cap - 1))
        if (table[i].ptr == p)
            return &table[i];
    return NULL;
}

static void table_remove(struct entry *e) {
    size_t mask = table_cap - 1;
    size_t hole = (size_t)(e - table);
    size_t i = hole;
    table[hole].ptr = 0;
    /* Shift back every following entry of the run whose home slot is not
     * between the hole and its current slot (cyclically). */
    for (;;) {
        i = (i + 1) & mask;
        if (!table[i].ptr)
            break;
        size_t home = slot_of(table[i].ptr, table_cap);
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            table[hole] = table[i];
            table[i].ptr = 0;
            hole = i;
        }
    }
    table_len--;
}

/* ------------------------------------------------------------------ */
/* Ledger                                                              */

/* Call with `lock` held (so lines from different threads never mix and
 * appear in the order the table changed). */
static void ledger(const char *op, const char *fn, uintptr_t ptr, size_t size, int device) {
    if (ledger_fd < 0)
        return;
    char line[256];
    int n = snprintf(line, sizeof line,
                     "{\"op\":\"%s\",\"fn\":\"%s\",\"ptr\":\"0x%llx\",\"size\":%llu,\"device\":%d}\n",
                     op, fn, (unsigned long long)ptr, (unsigned long long)size, device);
    if (n > 0 && (size_t)n < sizeof line) {
        const char *p = line;
        while (n > 0) {
            ssize_t w = write(ledger_fd, p, (size_t)n);
            if (w <= 0)
                break;
            p += w;
            n -= (int)w;
        }
    }
}

static CUresult fail(const char *fn, size_t size, int device, CUresult rc) {
    pthread_mutex_lock(&lock);
    ledger("fail", fn, 0, size, device);
    pthread_mutex_unlock(&lock);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Allocation core                                                     */

/* Allocates `size` bytes for entry point `fn`. `low32` asks for an address
 * below 4 GiB (the legacy 32-bit cuMemAlloc). The caller stores the result
 * in its out pointer only on success. */
static void pool_level(const char *fn, struct pool *pool, size_t reserved);

static CUresult do_alloc_in(const char *fn, int kind, size_t size, int low32, struct pool *pool,
                            uintptr_t *out) {
    int device = kind == KIND_HOST ? -1 : current_device();
    ensure_setup();
    if (!initialized)
        return fail(fn, size, device, CUDA_ERROR_NOT_INITIALIZED);
    if (size == 0)
        return fail(fn, size, device, CUDA_ERROR_INVALID_VALUE);
    if ((unsigned long long)size > cfg_mem_limit)
        return fail(fn, size, device, CUDA_ERROR_OUT_OF_MEMORY);

    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t maplen = (size + page - 1) & ~(page - 1);
    int mflags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
#ifdef MAP_32BIT
    if (low32)
        mflags |= MAP_32BIT;
#endif
    void *m;
    if (cfg_no_memory && kind != KIND_HOST) {
        /* Benchmarks: an address with nothing behind it, no system call. */
        m = (void *)__atomic_fetch_add(&next_fake_address, maplen, __ATOMIC_RELAXED);
        mflags = 0;
    } else {
        m = mmap(NULL, maplen, PROT_READ | PROT_WRITE, mflags, -1, 0);
    }
    if (m == MAP_FAILED)
        return fail(fn, size, device, CUDA_ERROR_OUT_OF_MEMORY);
    if (low32 && (uintptr_t)m + maplen > 0xFFFFFFFFu) {
        munmap(m, maplen);
        return fail(fn, size, device, CUDA_ERROR_OUT_OF_MEMORY);
    }

    struct entry e = {(uintptr_t)m, size, maplen, device, kind, pool};
    pthread_mutex_lock(&lock);
    if (!table_reserve()) {
        ledger("fail", fn, 0, size, device);
        pthread_mutex_unlock(&lock);
        munmap(m, maplen);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    table_put(table, table_cap, &e);
    table_len++;
    live_count++;
    ledger(kind == KIND_IMPORT || kind == KIND_MAPPED ? "import" : "alloc", fn, e.ptr, size,
           device);
    if (pool) {
        pool->used += size;
        size_t need = (pool->used + POOL_STEP - 1) / POOL_STEP * POOL_STEP;
        if (need > pool->reserved)
            pool_level(fn, pool, need);
    }
    pthread_mutex_unlock(&lock);
    *out = e.ptr;
    return CUDA_SUCCESS;
}

static CUresult do_alloc(const char *fn, int kind, size_t size, int low32, uintptr_t *out) {
    return do_alloc_in(fn, kind, size, low32, NULL, out);
}

/* Frees an allocation of the given kind made by any entry point. */
static CUresult do_free(const char *fn, int kind, uintptr_t p) {
    ensure_setup();
    if (!initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    pthread_mutex_lock(&lock);
    struct entry *e = table_find(p);
    /* cuMemFree frees mapped imports too. */
    if (e && e->kind == KIND_MAPPED && kind == KIND_DEVICE)
        kind = KIND_MAPPED;
    if (!e || e->kind != kind) {
        ledger("badfree", fn, p, 0, kind == KIND_HOST ? -1 : current_device());
        pthread_mutex_unlock(&lock);
        return CUDA_ERROR_INVALID_VALUE;
    }
    struct entry gone = *e;
    table_remove(e);
    live_count--;
    ledger(kind == KIND_IMPORT || kind == KIND_MAPPED ? "unimport" : "free", fn, gone.ptr,
           gone.size, gone.device);
    if (gone.pool)
        gone.pool->used -= gone.size;
    pthread_mutex_unlock(&lock);
    /* Unmapped after it left the table and the ledger: if mmap hands the
     * address out again at once, its alloc line comes after this free. */
    if (!(cfg_no_memory && kind != KIND_HOST))
        munmap((void *)gone.ptr, gone.maplen);
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Internal implementations. These are what cuGetProcAddress hands out. */

#define IMPL static __attribute__((noinline))

IMPL CUresult impl_cuInit(unsigned flags) {
    ensure_setup();
    if (flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    initialized = 1;
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuDriverGetVersion(int *version) {
    ensure_setup();
    if (!version)
        return CUDA_ERROR_INVALID_VALUE;
    *version = cfg_version;
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuDeviceGetCount(int *count) {
    if (!initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!count)
        return CUDA_ERROR_INVALID_VALUE;
    *count = FAKE_DEVICE_COUNT;
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuDeviceGet(CUdevice *device, int ordinal) {
    if (!initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!device)
        return CUDA_ERROR_INVALID_VALUE;
    if (ordinal < 0 || ordinal >= FAKE_DEVICE_COUNT)
        return CUDA_ERROR_INVALID_DEVICE;
    *device = ordinal;
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuCtxGetDevice(CUdevice *device) {
    if (!initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!device)
        return CUDA_ERROR_INVALID_VALUE;
    *device = current_device();
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuMemAlloc_v2(CUdeviceptr *dptr, size_t size) {
    uintptr_t p;
    if (!dptr)
        return fail("cuMemAlloc_v2", size, current_device(), CUDA_ERROR_INVALID_VALUE);
    CUresult rc = do_alloc("cuMemAlloc_v2", KIND_DEVICE, size, 0, &p);
    if (rc == CUDA_SUCCESS)
        *dptr = p;
    return rc;
}

/* The pre-3.2 ABI: 32-bit device pointers and sizes. */
IMPL CUresult impl_cuMemAlloc(unsigned int *dptr, unsigned int size) {
    uintptr_t p;
    if (!dptr)
        return fail("cuMemAlloc", size, current_device(), CUDA_ERROR_INVALID_VALUE);
    CUresult rc = do_alloc("cuMemAlloc", KIND_DEVICE, size, 1, &p);
    if (rc == CUDA_SUCCESS)
        *dptr = (unsigned int)p;
    return rc;
}

IMPL CUresult impl_cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pitch, size_t width,
                                      size_t height, unsigned element_size) {
    size_t p = (width + 511) & ~(size_t)511; /* rows padded to 512 bytes */
    size_t size = p * height;
    uintptr_t a;
    if (!dptr || !pitch || !width || !height ||
        (element_size != 4 && element_size != 8 && element_size != 16) ||
        (height && size / height != p))
        return fail("cuMemAllocPitch_v2", size, current_device(), CUDA_ERROR_INVALID_VALUE);
    CUresult rc = do_alloc("cuMemAllocPitch_v2", KIND_DEVICE, size, 0, &a);
    if (rc == CUDA_SUCCESS) {
        *dptr = a;
        *pitch = p;
    }
    return rc;
}

IMPL CUresult impl_cuMemFree_v2(CUdeviceptr dptr) {
    return do_free("cuMemFree_v2", KIND_DEVICE, (uintptr_t)dptr);
}

IMPL CUresult impl_cuMemAllocManaged(CUdeviceptr *dptr, size_t size, unsigned flags) {
    uintptr_t p;
    /* CU_MEM_ATTACH_GLOBAL (1) or CU_MEM_ATTACH_HOST (2) */
    if (!dptr || (flags != 1 && flags != 2))
        return fail("cuMemAllocManaged", size, current_device(), CUDA_ERROR_INVALID_VALUE);
    CUresult rc = do_alloc("cuMemAllocManaged", KIND_DEVICE, size, 0, &p);
    if (rc == CUDA_SUCCESS)
        *dptr = p;
    return rc;
}

IMPL CUresult impl_cuMemAllocHost_v2(void **pp, size_t size) {
    uintptr_t p;
    if (!pp)
        return fail("cuMemAllocHost_v2", size, -1, CUDA_ERROR_INVALID_VALUE);
    CUresult rc = do_alloc("cuMemAllocHost_v2", KIND_HOST, size, 0, &p);
    if (rc == CUDA_SUCCESS)
        *pp = (void *)p;
    return rc;
}

IMPL CUresult impl_cuMemHostAlloc(void **pp, size_t size, unsigned flags) {
    uintptr_t p;
    /* CU_MEMHOSTALLOC_PORTABLE | DEVICEMAP | WRITECOMBINED */
    if (!pp || (flags & ~7u))
        return fail("cuMemHostAlloc", size, -1, CUDA_ERROR_INVALID_VALUE);
    CUresult rc = do_alloc("cuMemHostAlloc", KIND_HOST, size, 0, &p);
    if (rc == CUDA_SUCCESS)
        *pp = (void *)p;
    return rc;
}

IMPL CUresult impl_cuMemFreeHost(void *p) {
    return do_free("cuMemFreeHost", KIND_HOST, (uintptr_t)p);
}

/* Stream-ordered allocation. There is no real stream: memory is handed out
 * and released at once. */
static CUresult alloc_async(const char *fn, CUdeviceptr *dptr, size_t size, struct pool *pool) {
    uintptr_t p;
    if (!dptr)
        return fail(fn, size, current_device(), CUDA_ERROR_INVALID_VALUE);
    if (!pool)
        pool = &default_pools[current_device()];
    CUresult rc = do_alloc_in(fn, KIND_DEVICE, size, 0, pool, &p);
    if (rc == CUDA_SUCCESS)
        *dptr = p;
    return rc;
}

IMPL CUresult impl_cuMemAllocAsync(CUdeviceptr *dptr, size_t size, CUstream stream) {
    (void)stream;
    return alloc_async("cuMemAllocAsync", dptr, size, NULL);
}

IMPL CUresult impl_cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t size, CUstream stream) {
    (void)stream;
    return alloc_async("cuMemAllocAsync_ptsz", dptr, size, NULL);
}

IMPL CUresult impl_cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
                                           CUstream stream) {
    (void)stream;
    if (!pool)
        return fail("cuMemAllocFromPoolAsync", size, current_device(), CUDA_ERROR_INVALID_VALUE);
    return alloc_async("cuMemAllocFromPoolAsync", dptr, size, (struct pool *)pool);
}

IMPL CUresult impl_cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
                                                CUstream stream) {
    (void)stream;
    if (!pool)
        return fail("cuMemAllocFromPoolAsync_ptsz", size, current_device(),
                    CUDA_ERROR_INVALID_VALUE);
    return alloc_async("cuMemAllocFromPoolAsync_ptsz", dptr, size, (struct pool *)pool);
}

IMPL CUresult impl_cuMemFreeAsync(CUdeviceptr dptr, CUstream stream) {
    (void)stream;
    return do_free("cuMemFreeAsync", KIND_DEVICE, (uintptr_t)dptr);
}

IMPL CUresult impl_cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream stream) {
    (void)stream;
    return do_free("cuMemFreeAsync_ptsz", KIND_DEVICE, (uintptr_t)dptr);
}


/* ------------------------------------------------------------------ */
/* Stream-ordered pools                                                */

/* Call with `lock` held. */
static void pool_level(const char *fn, struct pool *pool, size_t reserved) {
    pool->reserved = reserved;
    if (reserved > pool->reserved_high)
        pool->reserved_high = reserved;
    ledger("pool", fn, (uintptr_t)pool, reserved, pool->device);
}

static int pool_valid(struct pool *pool) {
    for (int d = 0; d < FAKE_DEVICE_COUNT; d++)
        if (pool == &default_pools[d])
            return 1;
    for (int i = 0; i < MAX_POOLS; i++)
        if (pool == &created_pools[i])
            return created_pools[i].in_use;
    return 0;
}

/* CUmemPoolProps and CUmemAllocationProp both start with two enums and a
 * CUmemLocation {int type; int id;}: type 1 is a device, 2 the host. */
struct location_head {
    int alloc_type;
    int handle_types;
    int location_type;
    int location_id;
};

IMPL CUresult impl_cuMemPoolCreate(CUmemoryPool *out, const void *props) {
    const struct location_head *h = props;
    if (!initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!out || !h || h->location_type != 1 || h->location_id < 0 ||
        h->location_id >= FAKE_DEVICE_COUNT)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_POOLS; i++) {
        struct pool *p = &created_pools[i];
        if (!p->in_use) {
            memset(p, 0, sizeof *p);
            p->in_use = 1;
            p->device = h->location_id;
            pthread_mutex_unlock(&lock);
            *out = p;
            return CUDA_SUCCESS;
        }
    }
    pthread_mutex_unlock(&lock);
    return CUDA_ERROR_OUT_OF_MEMORY;
}

IMPL CUresult impl_cuMemPoolDestroy(CUmemoryPool pool) {
    struct pool *p = pool;
    pthread_mutex_lock(&lock);
    if (!pool_valid(p) || p < created_pools || p >= created_pools + MAX_POOLS) {
        pthread_mutex_unlock(&lock);
        return CUDA_ERROR_INVALID_VALUE;
    }
    /* Outstanding allocations keep their memory until freed; the rest of
     * the reservation goes now. */
    size_t keep = (p->used + POOL_STEP - 1) / POOL_STEP * POOL_STEP;
    if (keep != p->reserved)
        pool_level("cuMemPoolDestroy", p, keep);
    if (p->used == 0)
        p->in_use = 0;
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuMemPoolTrimTo(CUmemoryPool pool, size_t keep) {
    struct pool *p = pool;
    pthread_mutex_lock(&lock);
    if (!pool_valid(p)) {
        pthread_mutex_unlock(&lock);
        return CUDA_ERROR_INVALID_VALUE;
    }
    size_t floor = (p->used + POOL_STEP - 1) / POOL_STEP * POOL_STEP;
    size_t target = keep > floor ? keep : floor;
    if (target < p->reserved)
        pool_level("cuMemPoolTrimTo", p, target);
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}

/* CUmemPool_attribute: 5 RESERVED_MEM_CURRENT, 6 RESERVED_MEM_HIGH,
 * 7 USED_MEM_CURRENT, 8 USED_MEM_HIGH (cuuint64_t values). */
IMPL CUresult impl_cuMemPoolGetAttribute(CUmemoryPool pool, int attr, void *value) {
    struct pool *p = pool;
    if (!value)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    if (!pool_valid(p)) {
        pthread_mutex_unlock(&lock);
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUresult rc = CUDA_SUCCESS;
    switch (attr) {
    case 5: *(cuuint64_t *)value = p->reserved; break;
    case 6: *(cuuint64_t *)value = p->reserved_high; break;
    case 7: *(cuuint64_t *)value = p->used; break;
    default: rc = CUDA_ERROR_INVALID_VALUE;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

IMPL CUresult impl_cuDeviceGetMemPool(CUmemoryPool *out, CUdevice device) {
    if (!initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!out || device < 0 || device >= FAKE_DEVICE_COUNT)
        return CUDA_ERROR_INVALID_VALUE;
    *out = &default_pools[device];
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Virtual memory management                                           */
/*                                                                     */
/* Physical allocations are memfd files; a reservation is a PROT_NONE    */
/* mapping; cuMemMap maps the file over part of a reservation, so the    */
/* memory is really usable at the mapped address, and cuMemUnmap puts    */
/* PROT_NONE back. A physical allocation is freed (ledger "physfree")    */
/* when its handle is released and no mapping of it is left, as CUDA     */
/* does it; cuMemRetainAllocationHandle adds a reference. Ledger lines:  */
/* reserve/unreserve (address space), create/release/physfree (ptr =     */
/* the handle), map/unmap (ptr = the range).                             */

#define MAX_PHYS 256
#define MAX_MAPS 256

struct phys {
    int fd; /* -1: free slot */
    size_t size;
    int device;
    int refs;
};

struct map {
    uintptr_t va; /* 0: free slot */
    size_t size;
    int phys;
};

static struct phys phys[MAX_PHYS];
static struct map maps[MAX_MAPS];
static pthread_once_t vmm_once = PTHREAD_ONCE_INIT;

static void vmm_setup(void) {
    for (int i = 0; i < MAX_PHYS; i++)
        phys[i].fd = -1;
}

#define HANDLE_BASE 0x7a0000ull

static int phys_of(unsigned long long handle) {
    if (handle < HANDLE_BASE || handle >= HANDLE_BASE + MAX_PHYS)
        return -1;
    int i = (int)(handle - HANDLE_BASE);
    return phys[i].fd >= 0 ? i : -1;
}

/* Call with `lock` held. */
static void phys_unref(const char *fn, int i) {
    if (--phys[i].refs == 0) {
        ledger("physfree", fn, HANDLE_BASE + (unsigned)i, phys[i].size, phys[i].device);
        close(phys[i].fd);
        phys[i].fd = -1;
    }
}

IMPL CUresult impl_cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment,
                                       CUdeviceptr addr, unsigned long long flags) {
    (void)alignment;
    (void)flags;
    if (!initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!ptr || !size)
        return CUDA_ERROR_INVALID_VALUE;
    void *m = mmap((void *)(uintptr_t)addr, size, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return fail("cuMemAddressReserve", size, current_device(), CUDA_ERROR_OUT_OF_MEMORY);
    pthread_mutex_lock(&lock);
    ledger("reserve", "cuMemAddressReserve", (uintptr_t)m, size, current_device());
    pthread_mutex_unlock(&lock);
    *ptr = (uintptr_t)m;
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuMemAddressFree(CUdeviceptr ptr, size_t size) {
    if (!ptr || !size)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    ledger("unreserve", "cuMemAddressFree", (uintptr_t)ptr, size, current_device());
    pthread_mutex_unlock(&lock);
    munmap((void *)(uintptr_t)ptr, size);
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuMemCreate(unsigned long long *handle, size_t size, const void *prop,
                               unsigned long long flags) {
    const struct location_head *h = prop;
    (void)flags;
    pthread_once(&vmm_once, vmm_setup);
    if (!initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!handle || !h || !size || (h->location_type == 1 &&
                                   (h->location_id < 0 || h->location_id >= FAKE_DEVICE_COUNT)))
        return fail("cuMemCreate", size, current_device(), CUDA_ERROR_INVALID_VALUE);
    int device = h->location_type == 1 ? h->location_id : -1;
    if ((unsigned long long)size > cfg_mem_limit)
        return fail("cuMemCreate", size, device, CUDA_ERROR_OUT_OF_MEMORY);
    int fd = memfd_create("fake-cuda-vmm", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
        if (fd >= 0)
            close(fd);
        return fail("cuMemCreate", size, device, CUDA_ERROR_OUT_OF_MEMORY);
    }
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_PHYS; i++) {
        if (phys[i].fd < 0) {
            phys[i] = (struct phys){fd, size, device, 1};
            ledger("create", "cuMemCreate", HANDLE_BASE + (unsigned)i, size, device);
            pthread_mutex_unlock(&lock);
            *handle = HANDLE_BASE + (unsigned)i;
            return CUDA_SUCCESS;
        }
    }
    ledger("fail", "cuMemCreate", 0, size, device);
    pthread_mutex_unlock(&lock);
    close(fd);
    return CUDA_ERROR_OUT_OF_MEMORY;
}

IMPL CUresult impl_cuMemRelease(unsigned long long handle) {
    pthread_once(&vmm_once, vmm_setup);
    pthread_mutex_lock(&lock);
    int i = phys_of(handle);
    if (i < 0) {
        pthread_mutex_unlock(&lock);
        return CUDA_ERROR_INVALID_VALUE;
    }
    ledger("release", "cuMemRelease", handle, phys[i].size, phys[i].device);
    phys_unref("cuMemRelease", i);
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                            unsigned long long handle, unsigned long long flags) {
    (void)flags;
    pthread_once(&vmm_once, vmm_setup);
    pthread_mutex_lock(&lock);
    int i = phys_of(handle);
    if (i < 0 || !ptr || !size || offset + size > phys[i].size) {
        pthread_mutex_unlock(&lock);
        return CUDA_ERROR_INVALID_VALUE;
    }
    int slot = -1;
    for (int m = 0; m < MAX_MAPS && slot < 0; m++)
        if (!maps[m].va)
            slot = m;
    void *at = slot < 0 ? MAP_FAILED
                        : mmap((void *)(uintptr_t)ptr, size, PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_FIXED, phys[i].fd, (off_t)offset);
    if (at == MAP_FAILED) {
        pthread_mutex_unlock(&lock);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    maps[slot] = (struct map){(uintptr_t)ptr, size, i};
    phys[i].refs++;
    ledger("map", "cuMemMap", (uintptr_t)ptr, size, phys[i].device);
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuMemUnmap(CUdeviceptr ptr, size_t size) {
    pthread_once(&vmm_once, vmm_setup);
    if (!ptr || !size)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    ledger("unmap", "cuMemUnmap", (uintptr_t)ptr, size, current_device());
    for (int m = 0; m < MAX_MAPS; m++) {
        if (maps[m].va && maps[m].va >= ptr && maps[m].va < ptr + size) {
            mmap((void *)maps[m].va, maps[m].size, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
            int i = maps[m].phys;
            maps[m].va = 0;
            phys_unref("cuMemUnmap", i);
        }
    }
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}

/* Shareable handles: an export hands out a duplicate of the memfd; an
 * import (as another process would) makes a new handle of the file
 * (ledger "importphys" with its size), released and freed like any. */
IMPL CUresult impl_cuMemExportToShareableHandle(void *out, unsigned long long handle, int type,
                                                unsigned long long flags) {
    (void)flags;
    pthread_once(&vmm_once, vmm_setup);
    if (!out || type != 1 /* POSIX file descriptor */)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    int i = phys_of(handle);
    int fd = i < 0 ? -1 : dup(phys[i].fd);
    pthread_mutex_unlock(&lock);
    if (fd < 0)
        return CUDA_ERROR_INVALID_VALUE;
    *(int *)out = fd;
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuMemImportFromShareableHandle(unsigned long long *handle, void *os_handle,
                                                  int type) {
    pthread_once(&vmm_once, vmm_setup);
    if (!initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!handle || type != 1)
        return CUDA_ERROR_INVALID_VALUE;
    int fd = dup((int)(intptr_t)os_handle);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0) {
        if (fd >= 0)
            close(fd);
        return CUDA_ERROR_INVALID_VALUE;
    }
    int device = current_device();
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_PHYS; i++) {
        if (phys[i].fd < 0) {
            phys[i] = (struct phys){fd, (size_t)st.st_size, device, 1};
            ledger("importphys", "cuMemImportFromShareableHandle", HANDLE_BASE + (unsigned)i,
                   (size_t)st.st_size, device);
            pthread_mutex_unlock(&lock);
            *handle = HANDLE_BASE + (unsigned)i;
            return CUDA_SUCCESS;
        }
    }
    pthread_mutex_unlock(&lock);
    close(fd);
    return CUDA_ERROR_OUT_OF_MEMORY;
}

/* The start of CUmemAllocationProp: type, handle types, location. */
IMPL CUresult impl_cuMemGetAllocationPropertiesFromHandle(void *prop,
                                                          unsigned long long handle) {
    pthread_once(&vmm_once, vmm_setup);
    if (!prop)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    int i = phys_of(handle);
    int device = i < 0 ? 0 : phys[i].device;
    pthread_mutex_unlock(&lock);
    if (i < 0)
        return CUDA_ERROR_INVALID_VALUE;
    int *p = prop;
    memset(prop, 0, 32);
    p[0] = 1;                       /* CU_MEM_ALLOCATION_TYPE_PINNED */
    p[1] = 1;                       /* POSIX file descriptor */
    p[2] = device >= 0 ? 1 : 2;     /* device, or host */
    p[3] = device >= 0 ? device : 0;
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuMemRetainAllocationHandle(unsigned long long *handle, void *addr) {
    pthread_once(&vmm_once, vmm_setup);
    if (!handle)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    for (int m = 0; m < MAX_MAPS; m++) {
        if (maps[m].va && (uintptr_t)addr >= maps[m].va &&
            (uintptr_t)addr < maps[m].va + maps[m].size) {
            int i = maps[m].phys;
            phys[i].refs++;
            ledger("retain", "cuMemRetainAllocationHandle", HANDLE_BASE + (unsigned)i,
                   phys[i].size, phys[i].device);
            pthread_mutex_unlock(&lock);
            *handle = HANDLE_BASE + (unsigned)i;
            return CUDA_SUCCESS;
        }
    }
    pthread_mutex_unlock(&lock);
    return CUDA_ERROR_INVALID_VALUE;
}


/* ------------------------------------------------------------------ */
/* Arrays and IPC imports                                              */
/*                                                                     */
/* An array is memory of Width x Height x Depth elements of NumChannels  */
/* channels of its format (the handle is the memory's address here).    */
/* cuIpcGetMemHandle writes a handle naming an allocation's size; an     */
/* "open" of it maps a fresh region of that size, as if another process  */
/* had exported it (ledger "import", closed by "unimport").              */

typedef struct {
    size_t width, height;
    int format;
    unsigned channels;
} ArrayDescriptor;

typedef struct {
    size_t width, height, depth;
    int format;
    unsigned channels;
    unsigned flags;
} Array3DDescriptor;

static size_t format_bytes(int format) {
    switch (format) {
    case 0x02: case 0x09: case 0x10: return 2; /* 16-bit integers, half */
    case 0x03: case 0x0a: case 0x20: return 4; /* 32-bit integers, float */
    default: return 1;
    }
}

static CUresult array_create(const char *fn, void **out, size_t w, size_t h, size_t d, int format,
                             unsigned channels) {
    if (!out || !w || !channels)
        return fail(fn, 0, current_device(), CUDA_ERROR_INVALID_VALUE);
    size_t size = w * (h ? h : 1) * (d ? d : 1) * channels * format_bytes(format);
    uintptr_t p;
    CUresult rc = do_alloc(fn, KIND_ARRAY, size, 0, &p);
    if (rc == CUDA_SUCCESS)
        *out = (void *)p;
    return rc;
}

IMPL CUresult impl_cuArrayCreate_v2(void **out, const ArrayDescriptor *a) {
    if (!a)
        return CUDA_ERROR_INVALID_VALUE;
    return array_create("cuArrayCreate_v2", out, a->width, a->height, 1, a->format, a->channels);
}

IMPL CUresult impl_cuArray3DCreate_v2(void **out, const Array3DDescriptor *a) {
    if (!a)
        return CUDA_ERROR_INVALID_VALUE;
    return array_create("cuArray3DCreate_v2", out, a->width, a->height, a->depth, a->format,
                        a->channels);
}

IMPL CUresult impl_cuArrayDestroy(void *array) {
    return do_free("cuArrayDestroy", KIND_ARRAY, (uintptr_t)array);
}

typedef struct {
    unsigned long long magic;
    unsigned long long size;
    char reserved[48];
} IpcMemHandle;

#define IPC_MAGIC 0x1bcface0ull

IMPL CUresult impl_cuIpcGetMemHandle(IpcMemHandle *h, CUdeviceptr dptr) {
    if (!h)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    struct entry *e = table_find((uintptr_t)dptr);
    size_t size = e && e->kind == KIND_DEVICE ? e->size : 0;
    pthread_mutex_unlock(&lock);
    if (!size)
        return CUDA_ERROR_INVALID_VALUE;
    memset(h, 0, sizeof *h);
    h->magic = IPC_MAGIC;
    h->size = size;
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuIpcOpenMemHandle_v2(CUdeviceptr *out, IpcMemHandle h, unsigned flags) {
    (void)flags;
    if (!out || h.magic != IPC_MAGIC || !h.size)
        return CUDA_ERROR_INVALID_VALUE;
    uintptr_t p;
    CUresult rc = do_alloc("cuIpcOpenMemHandle_v2", KIND_IMPORT, h.size, 0, &p);
    if (rc == CUDA_SUCCESS)
        *out = p;
    return rc;
}

IMPL CUresult impl_cuIpcCloseMemHandle(CUdeviceptr p) {
    return do_free("cuIpcCloseMemHandle", KIND_IMPORT, (uintptr_t)p);
}

IMPL CUresult impl_cuMemGetAddressRange_v2(CUdeviceptr *base, size_t *size, CUdeviceptr dptr) {
    pthread_mutex_lock(&lock);
    struct entry *e = table_find((uintptr_t)dptr);
    if (!e) {
        pthread_mutex_unlock(&lock);
        return CUDA_ERROR_NOT_FOUND;
    }
    if (base)
        *base = e->ptr;
    if (size)
        *size = e->size;
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}


/* Mipmapped arrays: the sum of the levels' sizes, each level half the
 * last in every dimension (at least 1; the depth of a layered array is
 * its layer count and never halves). */
IMPL CUresult impl_cuMipmappedArrayCreate(void **out, const Array3DDescriptor *a,
                                          unsigned levels) {
    if (!out || !a || !a->width || !a->channels || !levels)
        return fail("cuMipmappedArrayCreate", 0, current_device(), CUDA_ERROR_INVALID_VALUE);
    size_t total = 0;
    for (unsigned l = 0; l < levels; l++) {
        size_t w = a->width >> l, h = a->height >> l;
        size_t d = (a->flags & 1) ? a->depth : a->depth >> l;
        total += (w ? w : 1) * (a->height ? (h ? h : 1) : 1) * (a->depth ? (d ? d : 1) : 1);
    }
    total *= a->channels * format_bytes(a->format);
    uintptr_t p;
    CUresult rc = do_alloc("cuMipmappedArrayCreate", KIND_ARRAY, total, 0, &p);
    if (rc == CUDA_SUCCESS)
        *out = (void *)p;
    return rc;
}

IMPL CUresult impl_cuMipmappedArrayDestroy(void *array) {
    return do_free("cuMipmappedArrayDestroy", KIND_ARRAY, (uintptr_t)array);
}

/* Pool pointers shared between processes: the export names the
 * allocation's size; an import maps a fresh region of that size (ledger
 * "import"), freed with cuMemFree or cuMemFreeAsync ("unimport"). */
typedef struct {
    unsigned long long magic;
    unsigned long long size;
    char reserved[48];
} PoolPtrExportData;

#define POOL_EXPORT_MAGIC 0x9001cafeull

IMPL CUresult impl_cuMemPoolExportPointer(PoolPtrExportData *out, CUdeviceptr dptr) {
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    struct entry *e = table_find((uintptr_t)dptr);
    size_t size = e && e->pool ? e->size : 0;
    pthread_mutex_unlock(&lock);
    if (!size)
        return CUDA_ERROR_INVALID_VALUE;
    memset(out, 0, sizeof *out);
    out->magic = POOL_EXPORT_MAGIC;
    out->size = size;
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuMemPoolImportPointer(CUdeviceptr *out, CUmemoryPool pool,
                                          PoolPtrExportData *data) {
    (void)pool;
    if (!out || !data || data->magic != POOL_EXPORT_MAGIC || !data->size)
        return CUDA_ERROR_INVALID_VALUE;
    uintptr_t p;
    CUresult rc = do_alloc("cuMemPoolImportPointer", KIND_MAPPED, data->size, 0, &p);
    if (rc == CUDA_SUCCESS)
        *out = p;
    return rc;
}

/* External memory (Vulkan, dma-buf...): importing it makes an object of
 * the size the descriptor gives, no memory of the driver's (no ledger
 * line); a buffer mapped from it is an import (ledger "import", freed
 * with cuMemFree: "unimport"); a mipmapped array mapped from it is an
 * array handle with no memory of its own (ledger "extarray", destroyed
 * with cuMipmappedArrayDestroy: "extarrayfree"). */
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
    unsigned long long offset;
    unsigned long long size;
    unsigned flags;
    unsigned reserved[16];
} ExternalMemoryBufferDesc;

typedef struct {
    unsigned long long offset;
    Array3DDescriptor desc;
    unsigned levels;
    unsigned reserved[16];
} ExternalMemoryMipmappedArrayDesc;

struct external {
    unsigned long long magic;
    unsigned long long size;
};

#define EXTERNAL_MAGIC 0xe97e4a1ull

IMPL CUresult impl_cuImportExternalMemory(void **out, const ExternalMemoryHandleDesc *d) {
    if (!initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!out || !d || !d->size)
        return CUDA_ERROR_INVALID_VALUE;
    struct external *x = mmap(NULL, sizeof *x, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (x == MAP_FAILED)
        return CUDA_ERROR_OUT_OF_MEMORY;
    x->magic = EXTERNAL_MAGIC;
    x->size = d->size;
    *out = x;
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuExternalMemoryGetMappedBuffer(CUdeviceptr *out, void *ext,
                                                   const ExternalMemoryBufferDesc *d) {
    struct external *x = ext;
    if (!out || !x || x->magic != EXTERNAL_MAGIC || !d || !d->size ||
        d->offset + d->size > x->size)
        return CUDA_ERROR_INVALID_VALUE;
    uintptr_t p;
    CUresult rc = do_alloc("cuExternalMemoryGetMappedBuffer", KIND_MAPPED, d->size, 0, &p);
    if (rc == CUDA_SUCCESS)
        *out = p;
    return rc;
}

IMPL CUresult impl_cuExternalMemoryGetMappedMipmappedArray(
    void **out, void *ext, const ExternalMemoryMipmappedArrayDesc *d) {
    struct external *x = ext;
    if (!out || !x || x->magic != EXTERNAL_MAGIC || !d)
        return CUDA_ERROR_INVALID_VALUE;
    /* A handle with nothing behind it but the external memory. */
    void *h = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (h == MAP_FAILED)
        return CUDA_ERROR_OUT_OF_MEMORY;
    struct entry e = {(uintptr_t)h, 0, 4096, current_device(), KIND_ARRAY, NULL};
    pthread_mutex_lock(&lock);
    if (!table_reserve()) {
        pthread_mutex_unlock(&lock);
        munmap(h, 4096);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    table_put(table, table_cap, &e);
    table_len++;
    live_count++;
    ledger("extarray", "cuExternalMemoryGetMappedMipmappedArray", e.ptr, 0, e.device);
    pthread_mutex_unlock(&lock);
    *out = h;
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuDestroyExternalMemory(void *ext) {
    struct external *x = ext;
    if (!x || x->magic != EXTERNAL_MAGIC)
        return CUDA_ERROR_INVALID_VALUE;
    x->magic = 0;
    munmap(x, sizeof *x);
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Host registration and the driver's memory figures                   */
/*                                                                     */
/* cuMemHostRegister pins memory the program allocated (ledger          */
/* "hostreg"/"hostunreg" with the range's size). cuMemGetInfo reports a */
/* device of FAKE_TOTAL bytes of which the live device-side allocations */
/* on it and a context reserve of FAKE_CONTEXT bytes are in use.        */

#define MAX_HOST_REGS 64
#define FAKE_TOTAL (16ULL << 30)
#define FAKE_CONTEXT (256ULL << 20)
static struct {
    uintptr_t p;
    size_t size;
} host_regs[MAX_HOST_REGS];

IMPL CUresult impl_cuMemHostRegister_v2(void *p, size_t size, unsigned flags) {
    (void)flags;
    if (!initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!p || !size)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_HOST_REGS; i++) {
        if (!host_regs[i].p) {
            host_regs[i].p = (uintptr_t)p;
            host_regs[i].size = size;
            ledger("hostreg", "cuMemHostRegister_v2", (uintptr_t)p, size, -1);
            pthread_mutex_unlock(&lock);
            return CUDA_SUCCESS;
        }
    }
    pthread_mutex_unlock(&lock);
    return CUDA_ERROR_OUT_OF_MEMORY;
}

IMPL CUresult impl_cuMemHostUnregister(void *p) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_HOST_REGS; i++) {
        if (host_regs[i].p && host_regs[i].p == (uintptr_t)p) {
            ledger("hostunreg", "cuMemHostUnregister", host_regs[i].p, host_regs[i].size, -1);
            host_regs[i].p = 0;
            pthread_mutex_unlock(&lock);
            return CUDA_SUCCESS;
        }
    }
    pthread_mutex_unlock(&lock);
    return CUDA_ERROR_INVALID_VALUE;
}

IMPL CUresult impl_cuMemGetInfo_v2(size_t *free_bytes, size_t *total) {
    if (!initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    int device = current_device();
    unsigned long long used = FAKE_CONTEXT;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < table_cap; i++)
        if (table[i].ptr && table[i].kind != KIND_HOST && table[i].device == device)
            used += table[i].size;
    pthread_mutex_unlock(&lock);
    if (free_bytes)
        *free_bytes = used > FAKE_TOTAL ? 0 : FAKE_TOTAL - used;
    if (total)
        *total = FAKE_TOTAL;
    return CUDA_SUCCESS;
}

IMPL CUresult impl_cuGetExportTable(const void **table_out, const void *uuid) {
    (void)uuid;
    if (table_out)
        *table_out = NULL;
    return CUDA_ERROR_NOT_FOUND;
}

/* ------------------------------------------------------------------ */
/* cuGetProcAddress                                                    */

struct proc {
    const char *name; /* base name, without _vN */
    int min_version;  /* first CUDA version (1000*major + 10*minor) */
    int ptsz;         /* 1: only for PER_THREAD_DEFAULT_STREAM, 0: only
                         without it, -1: either */
    void *fn;
};

IMPL CUresult impl_cuGetProcAddress_v2(const char *symbol, void **pfn, int cuda_version,
                                       cuuint64_t flags, int *status);
IMPL CUresult impl_cuGetProcAddress(const char *symbol, void **pfn, int cuda_version,
                                    cuuint64_t flags);

/* For each name, the rows run from the newest ABI to the oldest; the first
 * row whose min_version the caller's version reaches (and whose ptsz
 * matches the flags) wins. cuGetProcAddress itself is special: 12000 and
 * up get the v2 ABI (with the status argument), 11030..11999 the v1. */
static const struct proc procs[] = {
    {"cuInit", 2000, -1, (void *)impl_cuInit},
    {"cuDriverGetVersion", 2000, -1, (void *)impl_cuDriverGetVersion},
    {"cuDeviceGetCount", 2000, -1, (void *)impl_cuDeviceGetCount},
    {"cuDeviceGet", 2000, -1, (void *)impl_cuDeviceGet},
    {"cuCtxGetDevice", 2000, -1, (void *)impl_cuCtxGetDevice},
    {"cuMemAlloc", 3020, -1, (void *)impl_cuMemAlloc_v2},
    {"cuMemAlloc", 2000, -1, (void *)impl_cuMemAlloc},
    {"cuMemAllocPitch", 3020, -1, (void *)impl_cuMemAllocPitch_v2},
    {"cuMemFree", 3020, -1, (void *)impl_cuMemFree_v2},
    {"cuMemAllocManaged", 6000, -1, (void *)impl_cuMemAllocManaged},
    {"cuMemAllocHost", 3020, -1, (void *)impl_cuMemAllocHost_v2},
    {"cuMemHostAlloc", 2020, -1, (void *)impl_cuMemHostAlloc},
    {"cuMemFreeHost", 2000, -1, (void *)impl_cuMemFreeHost},
    {"cuMemAllocAsync", 11020, 1, (void *)impl_cuMemAllocAsync_ptsz},
    {"cuMemAllocAsync", 11020, 0, (void *)impl_cuMemAllocAsync},
    {"cuMemAllocFromPoolAsync", 11020, 1, (void *)impl_cuMemAllocFromPoolAsync_ptsz},
    {"cuMemAllocFromPoolAsync", 11020, 0, (void *)impl_cuMemAllocFromPoolAsync},
    {"cuMemFreeAsync", 11020, 1, (void *)impl_cuMemFreeAsync_ptsz},
    {"cuMemFreeAsync", 11020, 0, (void *)impl_cuMemFreeAsync},
    {"cuMemPoolCreate", 11020, -1, (void *)impl_cuMemPoolCreate},
    {"cuMemPoolDestroy", 11020, -1, (void *)impl_cuMemPoolDestroy},
    {"cuMemPoolTrimTo", 11020, -1, (void *)impl_cuMemPoolTrimTo},
    {"cuMemPoolGetAttribute", 11020, -1, (void *)impl_cuMemPoolGetAttribute},
    {"cuDeviceGetMemPool", 11020, -1, (void *)impl_cuDeviceGetMemPool},
    {"cuMemAddressReserve", 10020, -1, (void *)impl_cuMemAddressReserve},
    {"cuMemAddressFree", 10020, -1, (void *)impl_cuMemAddressFree},
    {"cuMemCreate", 10020, -1, (void *)impl_cuMemCreate},
    {"cuMemRelease", 10020, -1, (void *)impl_cuMemRelease},
    {"cuMemMap", 10020, -1, (void *)impl_cuMemMap},
    {"cuMemUnmap", 10020, -1, (void *)impl_cuMemUnmap},
    {"cuMemRetainAllocationHandle", 11000, -1, (void *)impl_cuMemRetainAllocationHandle},
    {"cuMemExportToShareableHandle", 10020, -1, (void *)impl_cuMemExportToShareableHandle},
    {"cuMemImportFromShareableHandle", 10020, -1, (void *)impl_cuMemImportFromShareableHandle},
    {"cuMemGetAllocationPropertiesFromHandle", 10020, -1,
     (void *)impl_cuMemGetAllocationPropertiesFromHandle},
    {"cuArrayCreate", 3020, -1, (void *)impl_cuArrayCreate_v2},
    {"cuArray3DCreate", 3020, -1, (void *)impl_cuArray3DCreate_v2},
    {"cuArrayDestroy", 2000, -1, (void *)impl_cuArrayDestroy},
    {"cuIpcGetMemHandle", 4010, -1, (void *)impl_cuIpcGetMemHandle},
    {"cuMipmappedArrayCreate", 5000, -1, (void *)impl_cuMipmappedArrayCreate},
    {"cuMipmappedArrayDestroy", 5000, -1, (void *)impl_cuMipmappedArrayDestroy},
    {"cuMemPoolExportPointer", 11020, -1, (void *)impl_cuMemPoolExportPointer},
    {"cuMemPoolImportPointer", 11020, -1, (void *)impl_cuMemPoolImportPointer},
    {"cuImportExternalMemory", 10000, -1, (void *)impl_cuImportExternalMemory},
    {"cuExternalMemoryGetMappedBuffer", 10000, -1, (void *)impl_cuExternalMemoryGetMappedBuffer},
    {"cuExternalMemoryGetMappedMipmappedArray", 10000, -1,
     (void *)impl_cuExternalMemoryGetMappedMipmappedArray},
    {"cuDestroyExternalMemory", 10000, -1, (void *)impl_cuDestroyExternalMemory},
    {"cuIpcOpenMemHandle", 11000, -1, (void *)impl_cuIpcOpenMemHandle_v2},
    {"cuIpcCloseMemHandle", 4010, -1, (void *)impl_cuIpcCloseMemHandle},
    {"cuMemGetAddressRange", 3020, -1, (void *)impl_cuMemGetAddressRange_v2},
    {"cuMemHostRegister", 6050, -1, (void *)impl_cuMemHostRegister_v2},
    {"cuMemHostUnregister", 4000, -1, (void *)impl_cuMemHostUnregister},
    {"cuMemGetInfo", 3020, -1, (void *)impl_cuMemGetInfo_v2},
    {"cuGetProcAddress", 12000, -1, (void *)impl_cuGetProcAddress_v2},
    {"cuGetProcAddress", 11030, -1, (void *)impl_cuGetProcAddress},
};

/* Logs a lookup: {"op":"lookup","fn":NAME,"version":V,"flags":F,
 * "found":0|1,"via":FILE}, FILE the base name of the object that called
 * cuGetProcAddress (the program, the runtime, or an interposer in between:
 * a test reads from it whose wrapper the caller was handed). */
static void log_lookup(const char *symbol, int version, cuuint64_t flags, int found,
                       void *caller) {
    ensure_setup();
    if (ledger_fd < 0 || !symbol)
        return;
    Dl_info info;
    const char *via = "?";
    if (dladdr(caller, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        via = slash ? slash + 1 : info.dli_fname;
    }
    char line[384];
    int n = snprintf(line, sizeof line,
                     "{\"op\":\"lookup\",\"fn\":\"%.100s\",\"version\":%d,\"flags\":%llu,"
                     "\"found\":%d,\"via\":\"%.100s\"}\n",
                     symbol, version, (unsigned long long)flags, found, via);
    pthread_mutex_lock(&lock);
    if (n > 0 && (size_t)n < sizeof line && write(ledger_fd, line, (size_t)n) != n)
        ledger_fd = -1;
    pthread_mutex_unlock(&lock);
}

static CUresult lookup_from(void *caller, const char *symbol, void **pfn, int cuda_version,
                            cuuint64_t flags, int *status);

static CUresult lookup(const char *symbol, void **pfn, int cuda_version, cuuint64_t flags,
                       int *status) {
    int st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    CUresult rc = CUDA_ERROR_NOT_FOUND;
    int want_ptsz = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
    if (!symbol || !pfn) {
        rc = CUDA_ERROR_INVALID_VALUE;
        goto out;
    }
    *pfn = NULL;
    if (flags & ~(cuuint64_t)(CU_GET_PROC_ADDRESS_LEGACY_STREAM |
                              CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM)) {
        rc = CUDA_ERROR_INVALID_VALUE;
        goto out;
    }
    for (size_t i = 0; i < sizeof procs / sizeof procs[0]; i++) {
        const struct proc *p = &procs[i];
        if (strcmp(p->name, symbol) != 0)
            continue;
        if (p->ptsz >= 0 && p->ptsz != want_ptsz)
            continue;
        if (cuda_version < p->min_version) {
            st = CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
            continue;
        }
        *pfn = p->fn;
        st = CU_GET_PROC_ADDRESS_SUCCESS;
        rc = CUDA_SUCCESS;
        break;
    }
out:
    if (status)
        *status = st;
    return rc;
}

static CUresult lookup_from(void *caller, const char *symbol, void **pfn, int cuda_version,
                            cuuint64_t flags, int *status) {
    CUresult rc = lookup(symbol, pfn, cuda_version, flags, status);
    log_lookup(symbol, cuda_version, flags, rc == CUDA_SUCCESS, caller);
    return rc;
}

IMPL CUresult impl_cuGetProcAddress_v2(const char *symbol, void **pfn, int cuda_version,
                                       cuuint64_t flags, int *status) {
    return lookup_from(__builtin_return_address(0), symbol, pfn, cuda_version, flags, status);
}

IMPL CUresult impl_cuGetProcAddress(const char *symbol, void **pfn, int cuda_version,
                                    cuuint64_t flags) {
    return lookup_from(__builtin_return_address(0), symbol, pfn, cuda_version, flags, NULL);
}

/* ------------------------------------------------------------------ */
/* Exported entry points: thin wrappers over the implementations.       */

EXPORT CUresult cuInit(unsigned flags) { return impl_cuInit(flags); }
EXPORT CUresult cuDriverGetVersion(int *v) { return impl_cuDriverGetVersion(v); }
EXPORT CUresult cuDeviceGetCount(int *n) { return impl_cuDeviceGetCount(n); }
EXPORT CUresult cuDeviceGet(CUdevice *d, int ordinal) { return impl_cuDeviceGet(d, ordinal); }
EXPORT CUresult cuCtxGetDevice(CUdevice *d) { return impl_cuCtxGetDevice(d); }
EXPORT CUresult cuGetExportTable(const void **t, const void *id) {
    return impl_cuGetExportTable(t, id);
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t size) {
    return impl_cuMemAlloc_v2(dptr, size);
}
EXPORT CUresult cuMemAlloc(unsigned int *dptr, unsigned int size) {
    return impl_cuMemAlloc(dptr, size);
}
EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pitch, size_t width, size_t height,
                                   unsigned element_size) {
    return impl_cuMemAllocPitch_v2(dptr, pitch, width, height, element_size);
}
EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr) { return impl_cuMemFree_v2(dptr); }
EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t size, unsigned flags) {
    return impl_cuMemAllocManaged(dptr, size, flags);
}
EXPORT CUresult cuMemAllocHost_v2(void **pp, size_t size) {
    return impl_cuMemAllocHost_v2(pp, size);
}
EXPORT CUresult cuMemHostAlloc(void **pp, size_t size, unsigned flags) {
    return impl_cuMemHostAlloc(pp, size, flags);
}
EXPORT CUresult cuMemFreeHost(void *p) { return impl_cuMemFreeHost(p); }
EXPORT CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t size, CUstream s) {
    return impl_cuMemAllocAsync(dptr, size, s);
}
EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t size, CUstream s) {
    return impl_cuMemAllocAsync_ptsz(dptr, size, s);
}
EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
                                        CUstream s) {
    return impl_cuMemAllocFromPoolAsync(dptr, size, pool, s);
}
EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
                                             CUstream s) {
    return impl_cuMemAllocFromPoolAsync_ptsz(dptr, size, pool, s);
}
EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream s) { return impl_cuMemFreeAsync(dptr, s); }
EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream s) {
    return impl_cuMemFreeAsync_ptsz(dptr, s);
}

EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cuda_version,
                                    cuuint64_t flags, int *status) {
    return lookup_from(__builtin_return_address(0), symbol, pfn, cuda_version, flags, status);
}
EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int cuda_version,
                                 cuuint64_t flags) {
    return lookup_from(__builtin_return_address(0), symbol, pfn, cuda_version, flags, NULL);
}

EXPORT CUresult cuArrayCreate_v2(void **out, const ArrayDescriptor *a) {
    return impl_cuArrayCreate_v2(out, a);
}
EXPORT CUresult cuArray3DCreate_v2(void **out, const Array3DDescriptor *a) {
    return impl_cuArray3DCreate_v2(out, a);
}
EXPORT CUresult cuArrayDestroy(void *a) { return impl_cuArrayDestroy(a); }
EXPORT CUresult cuIpcGetMemHandle(IpcMemHandle *h, CUdeviceptr d) {
    return impl_cuIpcGetMemHandle(h, d);
}
EXPORT CUresult cuIpcOpenMemHandle_v2(CUdeviceptr *out, IpcMemHandle h, unsigned flags) {
    return impl_cuIpcOpenMemHandle_v2(out, h, flags);
}
EXPORT CUresult cuIpcCloseMemHandle(CUdeviceptr p) { return impl_cuIpcCloseMemHandle(p); }
EXPORT CUresult cuMemGetAddressRange_v2(CUdeviceptr *base, size_t *size, CUdeviceptr d) {
    return impl_cuMemGetAddressRange_v2(base, size, d);
}
EXPORT CUresult cuMipmappedArrayCreate(void **out, const Array3DDescriptor *a, unsigned levels) {
    return impl_cuMipmappedArrayCreate(out, a, levels);
}
EXPORT CUresult cuMipmappedArrayDestroy(void *a) { return impl_cuMipmappedArrayDestroy(a); }
EXPORT CUresult cuMemPoolExportPointer(PoolPtrExportData *out, CUdeviceptr p) {
    return impl_cuMemPoolExportPointer(out, p);
}
EXPORT CUresult cuMemPoolImportPointer(CUdeviceptr *out, CUmemoryPool pool,
                                       PoolPtrExportData *data) {
    return impl_cuMemPoolImportPointer(out, pool, data);
}
EXPORT CUresult cuImportExternalMemory(void **out, const ExternalMemoryHandleDesc *d) {
    return impl_cuImportExternalMemory(out, d);
}
EXPORT CUresult cuExternalMemoryGetMappedBuffer(CUdeviceptr *out, void *ext,
                                                const ExternalMemoryBufferDesc *d) {
    return impl_cuExternalMemoryGetMappedBuffer(out, ext, d);
}
EXPORT CUresult cuExternalMemoryGetMappedMipmappedArray(void **out, void *ext,
                                                        const ExternalMemoryMipmappedArrayDesc *d) {
    return impl_cuExternalMemoryGetMappedMipmappedArray(out, ext, d);
}
EXPORT CUresult cuDestroyExternalMemory(void *ext) { return impl_cuDestroyExternalMemory(ext); }

EXPORT CUresult cuMemHostRegister_v2(void *p, size_t size, unsigned flags) {
    return impl_cuMemHostRegister_v2(p, size, flags);
}
EXPORT CUresult cuMemHostUnregister(void *p) { return impl_cuMemHostUnregister(p); }
EXPORT CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) {
    return impl_cuMemGetInfo_v2(free_bytes, total);
}

EXPORT CUresult cuMemPoolCreate(CUmemoryPool *p, const void *props) {
    return impl_cuMemPoolCreate(p, props);
}
EXPORT CUresult cuMemPoolDestroy(CUmemoryPool p) { return impl_cuMemPoolDestroy(p); }
EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool p, size_t keep) { return impl_cuMemPoolTrimTo(p, keep); }
EXPORT CUresult cuMemPoolGetAttribute(CUmemoryPool p, int attr, void *value) {
    return impl_cuMemPoolGetAttribute(p, attr, value);
}
EXPORT CUresult cuDeviceGetMemPool(CUmemoryPool *p, CUdevice d) {
    return impl_cuDeviceGetMemPool(p, d);
}
EXPORT CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment,
                                    CUdeviceptr addr, unsigned long long flags) {
    return impl_cuMemAddressReserve(ptr, size, alignment, addr, flags);
}
EXPORT CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size) {
    return impl_cuMemAddressFree(ptr, size);
}
EXPORT CUresult cuMemCreate(unsigned long long *h, size_t size, const void *prop,
                            unsigned long long flags) {
    return impl_cuMemCreate(h, size, prop, flags);
}
EXPORT CUresult cuMemRelease(unsigned long long h) { return impl_cuMemRelease(h); }
EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, unsigned long long h,
                         unsigned long long flags) {
    return impl_cuMemMap(ptr, size, offset, h, flags);
}
EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size) { return impl_cuMemUnmap(ptr, size); }
EXPORT CUresult cuMemRetainAllocationHandle(unsigned long long *h, void *addr) {
    return impl_cuMemRetainAllocationHandle(h, addr);
}
EXPORT CUresult cuMemExportToShareableHandle(void *out, unsigned long long h, int type,
                                             unsigned long long flags) {
    return impl_cuMemExportToShareableHandle(out, h, type, flags);
}
EXPORT CUresult cuMemImportFromShareableHandle(unsigned long long *h, void *os, int type) {
    return impl_cuMemImportFromShareableHandle(h, os, type);
}
EXPORT CUresult cuMemGetAllocationPropertiesFromHandle(void *prop, unsigned long long h) {
    return impl_cuMemGetAllocationPropertiesFromHandle(prop, h);
}

/* ------------------------------------------------------------------ */
/* Test hooks (not part of the CUDA API)                               */

/* Makes `device` the calling thread's current device (what cuCtxGetDevice
 * reports and what new allocations are recorded against). */
EXPORT CUresult fakeCudaSetDevice(int device) {
    if (device < 0 || device >= FAKE_DEVICE_COUNT)
        return CUDA_ERROR_INVALID_DEVICE;
    tls_device = device;
    return CUDA_SUCCESS;
}

/* Allocations made and not yet freed (all kinds), for debugging. */
EXPORT long long fakeCudaLedgerCount(void) {
    pthread_mutex_lock(&lock);
    long long n = live_count;
    pthread_mutex_unlock(&lock);
    return n;
}
