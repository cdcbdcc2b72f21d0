/* fake_ibverbs.c: a stand-in for rdma-core's libibverbs.so.1, for tests on
 * machines without an RDMA device (no /sys/class/infiniband here).
 *
 * Build (the flags matter: the version script gives the exports rdma-core's
 * symbol versions, and -Bsymbolic keeps the library's calls to itself
 * inside it, as in the real one):
 *   cc -O1 -g -shared -fPIC -fvisibility=hidden -Wl,-Bsymbolic \
 *      -Wl,--version-script=libibverbs.map -Wl,-soname,libibverbs.so.1 \
 *      -o libibverbs.so.1 fake_ibverbs.c
 *
 * Exports, with rdma-core's versions: ibv_reg_mr@IBVERBS_1.0 (the legacy
 * ABI, which here calls the 1.1 one, as rdma-core's compat layer does) and
 * ibv_reg_mr@@IBVERBS_1.1, ibv_dereg_mr likewise, ibv_rereg_mr@@1.1,
 * ibv_reg_mr_iova@@1.7, ibv_reg_mr_iova2@@1.8, ibv_reg_dmabuf_mr@@1.12, and one fake device to
 * open and allocate a protection domain on.
 *
 * Every registration and deregistration appends a JSON line to the file
 * FAKE_IBV_LEDGER names, e.g.
 *   {"op":"reg","fn":"ibv_reg_mr_iova2","mr":"0x5581d2c0","addr":"0x7f..","length":65536}
 *   {"op":"dereg","fn":"ibv_dereg_mr","mr":"0x5581d2c0","addr":"0x7f..","length":65536}
 * ("fn" the entry point that ran; a rereg that moves a region writes a
 * dereg and a reg of the same mr, with fn ibv_rereg_mr). Memory regions
 * come from mmap, never malloc, so heap tracking sees nothing of the
 * library itself. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h> /* snprintf only */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

struct ibv_device {
    char name[64];
};
struct ibv_context {
    struct ibv_device *device;
};
struct ibv_pd {
    struct ibv_context *context;
    uint32_t handle;
};
struct ibv_mr {
    struct ibv_context *context;
    struct ibv_pd *pd;
    void *addr;
    size_t length;
    uint32_t handle;
    uint32_t lkey;
    uint32_t rkey;
};

#define IBV_REREG_MR_CHANGE_TRANSLATION (1 << 1)

static struct ibv_device device = {"fake_ib0"};
static struct ibv_device *devices[2] = {&device, NULL};
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int ledger_fd = -2; /* -2: not opened yet */
static long live;
static uint32_t next_key = 0x100;

static void *take(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* With `lock` held. */
static void ledger(const char *op, const char *fn, const struct ibv_mr *mr) {
    if (ledger_fd == -2) {
        const char *f = getenv("FAKE_IBV_LEDGER");
        ledger_fd = f && *f ? open(f, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
    }
    if (ledger_fd < 0)
        return;
    char line[256];
    int n = snprintf(line, sizeof line,
                     "{\"op\":\"%s\",\"fn\":\"%s\",\"mr\":\"%p\",\"addr\":\"%p\",\"length\":%zu}\n",
                     op, fn, (const void *)mr, mr->addr, mr->length);
    if (n > 0 && (size_t)n < sizeof line && write(ledger_fd, line, (size_t)n) != n)
        ledger_fd = -1;
}

EXPORT struct ibv_device **ibv_get_device_list(int *n) {
    if (n)
        *n = 1;
    return devices;
}

EXPORT void ibv_free_device_list(struct ibv_device **list) { (void)list; }

EXPORT struct ibv_context *ibv_open_device(struct ibv_device *d) {
    struct ibv_context *c = take(sizeof *c);
    if (c)
        c->device = d;
    return c;
}

EXPORT int ibv_close_device(struct ibv_context *c) {
    return munmap(c, sizeof *c);
}

EXPORT struct ibv_pd *ibv_alloc_pd(struct ibv_context *c) {
    struct ibv_pd *pd = take(sizeof *pd);
    if (pd)
        pd->context = c;
    return pd;
}

EXPORT int ibv_dealloc_pd(struct ibv_pd *pd) { return munmap(pd, sizeof *pd); }

EXPORT int ibv_fork_init(void) { return 0; }

static struct ibv_mr *reg(const char *fn, struct ibv_pd *pd, void *addr, size_t length) {
    if (!pd || !length)
        return NULL;
    struct ibv_mr *mr = take(sizeof *mr);
    if (!mr)
        return NULL;
    pthread_mutex_lock(&lock);
    *mr = (struct ibv_mr){pd->context, pd, addr, length, next_key, next_key, next_key + 1};
    next_key += 2;
    live++;
    ledger("reg", fn, mr);
    pthread_mutex_unlock(&lock);
    return mr;
}

/* ibv_reg_mr@@IBVERBS_1.1 */
struct ibv_mr *ibv_reg_mr_1_1(struct ibv_pd *pd, void *addr, size_t length, int access)
    __attribute__((visibility("default")));
__asm__(".symver ibv_reg_mr_1_1, ibv_reg_mr@@IBVERBS_1.1");
struct ibv_mr *ibv_reg_mr_1_1(struct ibv_pd *pd, void *addr, size_t length, int access) {
    (void)access;
    return reg("ibv_reg_mr", pd, addr, length);
}

/* ibv_reg_mr@IBVERBS_1.0: the legacy entry, through the current one. */
struct ibv_mr *ibv_reg_mr_1_0(struct ibv_pd *pd, void *addr, size_t length, int access)
    __attribute__((visibility("default")));
__asm__(".symver ibv_reg_mr_1_0, ibv_reg_mr@IBVERBS_1.0");
struct ibv_mr *ibv_reg_mr_1_0(struct ibv_pd *pd, void *addr, size_t length, int access) {
    return ibv_reg_mr_1_1(pd, addr, length, access);
}

EXPORT struct ibv_mr *ibv_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length,
                                      uint64_t iova, int access) {
    (void)iova;
    (void)access;
    return reg("ibv_reg_mr_iova", pd, addr, length);
}

EXPORT struct ibv_mr *ibv_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length,
                                       uint64_t iova, unsigned int access) {
    (void)iova;
    (void)access;
    return reg("ibv_reg_mr_iova2", pd, addr, length);
}

EXPORT struct ibv_mr *ibv_reg_dmabuf_mr(struct ibv_pd *pd, uint64_t offset, size_t length,
                                        uint64_t iova, int fd, int access) {
    (void)iova;
    (void)fd;
    (void)access;
    return reg("ibv_reg_dmabuf_mr", pd, (void *)(uintptr_t)offset, length);
}

static int dereg(const char *fn, struct ibv_mr *mr) {
    if (!mr)
        return 22; /* EINVAL */
    pthread_mutex_lock(&lock);
    live--;
    ledger("dereg", fn, mr);
    pthread_mutex_unlock(&lock);
    munmap(mr, sizeof *mr);
    return 0;
}

int ibv_dereg_mr_1_1(struct ibv_mr *mr) __attribute__((visibility("default")));
__asm__(".symver ibv_dereg_mr_1_1, ibv_dereg_mr@@IBVERBS_1.1");
int ibv_dereg_mr_1_1(struct ibv_mr *mr) { return dereg("ibv_dereg_mr", mr); }

int ibv_dereg_mr_1_0(struct ibv_mr *mr) __attribute__((visibility("default")));
__asm__(".symver ibv_dereg_mr_1_0, ibv_dereg_mr@IBVERBS_1.0");
int ibv_dereg_mr_1_0(struct ibv_mr *mr) { return ibv_dereg_mr_1_1(mr); }

EXPORT int ibv_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr,
                        size_t length, int access) {
    (void)pd;
    (void)access;
    if (!mr)
        return 22;
    if (flags & IBV_REREG_MR_CHANGE_TRANSLATION) {
        pthread_mutex_lock(&lock);
        ledger("dereg", "ibv_rereg_mr", mr);
        mr->addr = addr;
        mr->length = length;
        ledger("reg", "ibv_rereg_mr", mr);
        pthread_mutex_unlock(&lock);
    }
    return 0;
}

/* Regions registered and not deregistered (a test hook). */
EXPORT long fakeIbvLive(void) {
    pthread_mutex_lock(&lock);
    long n = live;
    pthread_mutex_unlock(&lock);
    return n;
}
