/* rdma_user.c (T13): registers memory with the stand-in libibverbs the way
 * programs and NCCL do:
 *   cc -O1 -g -fno-omit-frame-pointer rdma_user.c -o rdma_user \
 *      -L. -libverbs -ldl -Wl,-rpath,'$ORIGIN'
 * - rdma_reg_kept: ibv_reg_mr (linked, the default IBVERBS_1.1) of 64 KiB,
 *   never deregistered;
 * - rdma_reg_freed: 3 x ibv_reg_mr_iova2 and 2 x ibv_reg_mr_iova of 4 KiB,
 *   deregistered, and a dma-buf region of 2 MiB, deregistered;
 * - rdma_rereg: 4 KiB registered, moved to 8 KiB (ibv_rereg_mr with
 *   IBV_REREG_MR_CHANGE_TRANSLATION), deregistered;
 * - nccl_style: dlopen + dlvsym(h, "ibv_reg_mr", "IBVERBS_1.1") and
 *   "ibv_dereg_mr": 1 MiB registered and deregistered, 128 KiB kept; then,
 *   as NCCL does for its newer paths, ibv_reg_mr_iova2 at IBVERBS_1.8 and
 *   ibv_reg_dmabuf_mr at IBVERBS_1.12: 32 KiB each, deregistered;
 * - legacy_abi: dlvsym(h, "ibv_reg_mr", "IBVERBS_1.0") and its dereg:
 *   16 KiB registered and deregistered.
 * Registered at exit: 64 KiB + 128 KiB. Prints "done". */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct ibv_device;
struct ibv_context;
struct ibv_pd;
struct ibv_mr;

struct ibv_device **ibv_get_device_list(int *n);
struct ibv_context *ibv_open_device(struct ibv_device *d);
struct ibv_pd *ibv_alloc_pd(struct ibv_context *c);
struct ibv_mr *ibv_reg_mr(struct ibv_pd *pd, void *addr, size_t length, int access);
struct ibv_mr *ibv_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length, uint64_t iova,
                               int access);
struct ibv_mr *ibv_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length, uint64_t iova,
                                unsigned access);
struct ibv_mr *ibv_reg_dmabuf_mr(struct ibv_pd *pd, uint64_t offset, size_t length,
                                 uint64_t iova, int fd, int access);
int ibv_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr, size_t length,
                 int access);
int ibv_dereg_mr(struct ibv_mr *mr);

typedef struct ibv_mr *(*reg_fn)(struct ibv_pd *, void *, size_t, int);
typedef int (*dereg_fn)(struct ibv_mr *);

static struct ibv_mr *volatile sink;

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

static void *buffer(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(p != MAP_FAILED, "mmap");
    return p;
}

__attribute__((noinline)) static void rdma_reg_kept(struct ibv_pd *pd) {
    struct ibv_mr *mr = ibv_reg_mr(pd, buffer(64 << 10), 64 << 10, 7);
    check(mr != NULL, "reg 64 KiB");
    sink = mr; /* never deregistered */
}

__attribute__((noinline)) static void rdma_reg_freed(struct ibv_pd *pd) {
    void *b = buffer(4096);
    for (int i = 0; i < 3; i++) {
        struct ibv_mr *mr = ibv_reg_mr_iova2(pd, b, 4096, (uintptr_t)b, 7 | (1 << 20));
        check(mr != NULL, "reg iova2");
        check(ibv_dereg_mr(mr) == 0, "dereg iova2");
    }
    for (int i = 0; i < 2; i++) {
        struct ibv_mr *mr = ibv_reg_mr_iova(pd, b, 4096, (uintptr_t)b, 7);
        check(mr != NULL, "reg iova");
        check(ibv_dereg_mr(mr) == 0, "dereg iova");
    }
    struct ibv_mr *dm = ibv_reg_dmabuf_mr(pd, 0, 2 << 20, 0, 42, 7);
    check(dm != NULL, "reg dmabuf");
    check(ibv_dereg_mr(dm) == 0, "dereg dmabuf");
}

__attribute__((noinline)) static void rdma_rereg(struct ibv_pd *pd) {
    struct ibv_mr *mr = ibv_reg_mr(pd, buffer(4096), 4096, 7);
    check(mr != NULL, "reg 4 KiB");
    check(ibv_rereg_mr(mr, 1 << 1, pd, buffer(8192), 8192, 7) == 0, "rereg");
    check(ibv_dereg_mr(mr) == 0, "dereg rereg");
}

__attribute__((noinline)) static void nccl_style(struct ibv_pd *pd) {
    void *h = dlopen("libibverbs.so.1", RTLD_NOW);
    check(h != NULL, "dlopen libibverbs.so.1");
    reg_fn reg = (reg_fn)dlvsym(h, "ibv_reg_mr", "IBVERBS_1.1");
    dereg_fn dereg = (dereg_fn)dlvsym(h, "ibv_dereg_mr", "IBVERBS_1.1");
    check(reg && dereg, "dlvsym IBVERBS_1.1");
    struct ibv_mr *mr = reg(pd, buffer(1 << 20), 1 << 20, 7);
    check(mr != NULL, "dlvsym reg 1 MiB");
    check(dereg(mr) == 0, "dlvsym dereg");
    mr = reg(pd, buffer(128 << 10), 128 << 10, 7);
    check(mr != NULL, "dlvsym reg 128 KiB");
    sink = mr; /* kept */
    typedef struct ibv_mr *(*iova2_fn)(struct ibv_pd *, void *, size_t, uint64_t, unsigned);
    typedef struct ibv_mr *(*dmabuf_fn)(struct ibv_pd *, uint64_t, size_t, uint64_t, int, int);
    iova2_fn iova2 = (iova2_fn)dlvsym(h, "ibv_reg_mr_iova2", "IBVERBS_1.8");
    dmabuf_fn dmabuf = (dmabuf_fn)dlvsym(h, "ibv_reg_dmabuf_mr", "IBVERBS_1.12");
    check(iova2 && dmabuf, "dlvsym IBVERBS_1.8 and 1.12");
    void *b = buffer(32 << 10);
    struct ibv_mr *a = iova2(pd, b, 32 << 10, (uintptr_t)b, 7);
    struct ibv_mr *c = dmabuf(pd, 0, 32 << 10, 0, 42, 7);
    check(a && c, "dlvsym reg iova2 and dmabuf");
    check(dereg(a) == 0 && dereg(c) == 0, "dlvsym dereg iova2 and dmabuf");
}

__attribute__((noinline)) static void legacy_abi(struct ibv_pd *pd) {
    void *h = dlopen("libibverbs.so.1", RTLD_NOW);
    reg_fn reg = (reg_fn)dlvsym(h, "ibv_reg_mr", "IBVERBS_1.0");
    dereg_fn dereg = (dereg_fn)dlvsym(h, "ibv_dereg_mr", "IBVERBS_1.0");
    check(reg && dereg, "dlvsym IBVERBS_1.0");
    struct ibv_mr *mr = reg(pd, buffer(16 << 10), 16 << 10, 7);
    check(mr != NULL, "legacy reg");
    check(dereg(mr) == 0, "legacy dereg");
}

int main(void) {
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    check(list && n == 1, "one device");
    struct ibv_context *ctx = ibv_open_device(list[0]);
    struct ibv_pd *pd = ibv_alloc_pd(ctx);
    check(ctx && pd, "open, alloc pd");
    rdma_reg_kept(pd);
    rdma_reg_freed(pd);
    rdma_rereg(pd);
    nccl_style(pd);
    legacy_abi(pd);
    say("done\n");
    return 0;
}
