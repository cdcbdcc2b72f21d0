/* A program whose allocations are known exactly, built without frame
 * pointers: the recorder must account for every event and unwind through
 * its frames with DWARF call-frame information. Prints its own counts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long allocs, frees, leaked_bytes;

__attribute__((noinline)) static void *leaf_alloc(size_t n) {
    void *p = malloc(n);
    allocs++;
    memset(p, 1, n);
    return p;
}

__attribute__((noinline)) static void *middle(size_t n, int depth) {
    if (depth > 0) {
        void *p = middle(n + 1, depth - 1);
        __asm__ volatile("" ::: "memory");
        return p;
    }
    return leaf_alloc(n);
}

__attribute__((noinline)) static void outer(int rounds) {
    void *keep[64];
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < 64; i++) keep[i] = middle(16 + (size_t)i * 8, i % 5);
        for (int i = 0; i < 64; i++) {
            if (r == rounds - 1 && i % 16 == 0) {
                leaked_bytes += 16 + (long)i * 8 + i % 5;
                continue; /* leaked on purpose */
            }
            free(keep[i]);
            frees++;
        }
    }
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 1000;
    outer(rounds);
    printf("allocs=%ld frees=%ld leaked_bytes=%ld\n", allocs, frees, leaked_bytes);
    return 0;
}
