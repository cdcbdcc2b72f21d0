/* The profiler benchmark workload (issue: recording), our own version of
 * the allocation-bound program the research notes measured heaptrack,
 * memray, massif and dhat on.
 *
 * Two threads (by default) each make ITERS operations: 50% temporary
 * allocations (malloc, touch, free at once), 49.9% replacements of a random
 * slot in a 4096-entry per-thread pool, 0.1% leaks. Sizes 16..4096 bytes,
 * skewed small (half below 128, a quarter below 1024), rounded up to
 * multiples of GRAN (16 by default: Debian's heaptrack 1.4.0 cannot analyse
 * arbitrary sizes). Every allocation happens 6 to 13 frames deep, through
 * mutually recursive functions, so stacks are realistic to unwind.
 *
 * Usage: workload [ITERS [THREADS [GRAN]]]
 * Prints the program's own counts: allocations, frees, leaked blocks/bytes. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL 4096

struct thread_state {
    uint64_t rng;
    void *pool[POOL];
    long allocs, frees, leaked_blocks, leaked_bytes, iters;
    size_t gran;
};

static uint64_t next(struct thread_state *t) {
    t->rng ^= t->rng << 13;
    t->rng ^= t->rng >> 7;
    t->rng ^= t->rng << 17;
    return t->rng;
}

static size_t pick_size(struct thread_state *t) {
    uint64_t r = next(t);
    size_t s;
    switch (r % 4) {
    case 0:
    case 1: s = 16 + (r >> 8) % 112; break;
    case 2: s = 128 + (r >> 8) % 896; break;
    default: s = 1024 + (r >> 8) % 3073; break;
    }
    return (s + t->gran - 1) / t->gran * t->gran;
}

static void operate(struct thread_state *t);

__attribute__((noinline)) static void io_q(struct thread_state *t) {
    operate(t);
    __asm__ volatile("" ::: "memory");
}
__attribute__((noinline)) static void render_y(struct thread_state *t, int d);
__attribute__((noinline)) static void render_x(struct thread_state *t, int d) {
    if (d > 0) render_y(t, d - 1); else io_q(t);
    __asm__ volatile("" ::: "memory");
}
__attribute__((noinline)) static void render_y(struct thread_state *t, int d) {
    if (d > 0) render_x(t, d - 1); else io_q(t);
    __asm__ volatile("" ::: "memory");
}
__attribute__((noinline)) static void parse_b(struct thread_state *t, int d);
__attribute__((noinline)) static void parse_a(struct thread_state *t, int d) {
    if (d > 0) parse_b(t, d - 1); else render_x(t, (int)(next(t) % 4));
    __asm__ volatile("" ::: "memory");
}
__attribute__((noinline)) static void parse_b(struct thread_state *t, int d) {
    if (d > 0) parse_a(t, d - 1); else render_y(t, (int)(next(t) % 4));
    __asm__ volatile("" ::: "memory");
}

static void operate(struct thread_state *t) {
    uint64_t r = next(t) % 1000;
    size_t size = pick_size(t);
    char *p = malloc(size);
    t->allocs++;
    p[0] = 1;
    p[size - 1] = 2;
    if (r < 500) {
        free(p);
        t->frees++;
    } else if (r < 999) {
        unsigned slot = (unsigned)(next(t) % POOL);
        if (t->pool[slot]) {
            free(t->pool[slot]);
            t->frees++;
        }
        t->pool[slot] = p;
    } else {
        t->leaked_blocks++;
        t->leaked_bytes += (long)size;
        __asm__ volatile("" ::"r"(p) : "memory"); /* leaked on purpose */
    }
}

static void *run(void *arg) {
    struct thread_state *t = arg;
    for (long i = 0; i < t->iters; i++) parse_a(t, (int)(next(t) % 5));
    for (int i = 0; i < POOL; i++) {
        if (t->pool[i]) {
            free(t->pool[i]);
            t->frees++;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 5000000;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    size_t gran = argc > 3 ? (size_t)atol(argv[3]) : 16;
    if (threads < 1 || threads > 64 || gran < 1) {
        fprintf(stderr, "usage: workload [ITERS [THREADS [GRAN]]]\n");
        return 2;
    }
    struct thread_state *ts = calloc((size_t)threads, sizeof *ts);
    pthread_t tids[64];
    for (int i = 0; i < threads; i++) {
        ts[i].rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)(i + 1) * 0xBF58476D1CE4E5B9ull;
        ts[i].iters = iters;
        ts[i].gran = gran;
        pthread_create(&tids[i], NULL, run, &ts[i]);
    }
    long allocs = 0, frees = 0, lb = 0, lbytes = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        allocs += ts[i].allocs;
        frees += ts[i].frees;
        lb += ts[i].leaked_blocks;
        lbytes += ts[i].leaked_bytes;
    }
    printf("allocations=%ld frees=%ld leaked_blocks=%ld leaked_bytes=%ld\n", allocs, frees, lb, lbytes);
    free(ts);
    return 0;
}
