/* net_user.c (T14, T15, T16): kernel-held memory that no library call
 * allocates, which memtally samples: an io_uring's registered buffers, a
 * TCP connection's socket buffers and a packet socket's ring, on the real
 * kernel.
 *   cc -O1 -g net_user.c -o net_user
 * - ring: io_uring_setup, IORING_REGISTER_BUFFERS of 2 x 64 KiB (raw
 *   system calls, as liburing makes them), held 1.2 s, unregistered, 1.2 s;
 *   prints "io_uring unavailable" and goes on where the kernel refuses;
 * - tcp: a loopback connection; 300 KB written and never read, held
 *   1.2 s, then both ends closed, 0.8 s;
 * - packet_ring: an AF_PACKET socket with a TPACKET_V3 receive ring of
 *   4 x 64 KiB, mapped, held 1.2 s, unmapped and closed, 0.8 s; prints
 *   "packet sockets unavailable" and goes on without CAP_NET_RAW.
 * Prints "done". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static void pause_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void check(int ok, const char *what) {
    if (!ok) {
        perror(what);
        exit(1);
    }
}

__attribute__((noinline)) static void ring(void) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int fd = (int)syscall(SYS_io_uring_setup, 8, &p);
    if (fd < 0) {
        printf("io_uring unavailable: %s\n", strerror(errno));
        return;
    }
    struct iovec iov[2];
    for (int i = 0; i < 2; i++) {
        iov[i].iov_base = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                               -1, 0);
        check(iov[i].iov_base != MAP_FAILED, "mmap");
        iov[i].iov_len = 65536;
    }
    check(syscall(SYS_io_uring_register, fd, IORING_REGISTER_BUFFERS, iov, 2) == 0, "register");
    pause_ms(1200);
    check(syscall(SYS_io_uring_register, fd, IORING_UNREGISTER_BUFFERS, NULL, 0) == 0,
          "unregister");
    pause_ms(1200);
    close(fd);
}

__attribute__((noinline)) static void tcp(void) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    check(l >= 0 && bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0 &&
              getsockname(l, (struct sockaddr *)&a, &len) == 0,
          "listen");
    int c = socket(AF_INET, SOCK_STREAM, 0);
    check(c >= 0 && connect(c, (struct sockaddr *)&a, sizeof a) == 0, "connect");
    int s = accept(l, NULL, NULL);
    check(s >= 0, "accept");
    int size = 1 << 20;
    setsockopt(c, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    fcntl(c, F_SETFL, O_NONBLOCK);
    static char chunk[4096];
    size_t sent = 0;
    while (sent < 300000) {
        ssize_t w = write(c, chunk, sizeof chunk);
        if (w <= 0)
            break;
        sent += (size_t)w;
    }
    printf("sent %zu\n", sent);
    pause_ms(1200);
    close(c);
    close(s);
    close(l);
    pause_ms(800);
}

__attribute__((noinline)) static void packet_ring(void) {
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (fd < 0) {
        printf("packet sockets unavailable: %s\n", strerror(errno));
        return;
    }
    int v = TPACKET_V3;
    check(setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) == 0, "PACKET_VERSION");
    struct tpacket_req3 req;
    memset(&req, 0, sizeof req);
    req.tp_block_size = 65536;
    req.tp_block_nr = 4;
    req.tp_frame_size = 2048;
    req.tp_frame_nr = 4 * 65536 / 2048;
    req.tp_retire_blk_tov = 60;
    check(setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) == 0, "PACKET_RX_RING");
    void *ring = mmap(NULL, 4 * 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    check(ring != MAP_FAILED, "mmap ring");
    pause_ms(1200);
    munmap(ring, 4 * 65536);
    close(fd);
    pause_ms(800);
}

int main(void) {
    /* The recording (and the sampling) starts at the first allocation. */
    printf("start\n");
    fflush(stdout);
    pause_ms(300);
    ring();
    tcp();
    packet_ring();
    printf("done\n");
    return 0;
}
