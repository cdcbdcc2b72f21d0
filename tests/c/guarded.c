/* Planted memory errors for guarded allocations (run with guard_every=1):
 * argv[1] picks one. Guarded blocks sit at the start or the end of their
 * slot page at random, so the program first looks for a block placed where
 * the error it plants faults: at the end for an overflow, at the start for
 * an underflow. Prints "survived" if the program was let run on. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIZE 48

static char *placed(int at_end) {
    for (int i = 0; i < 24; i++) {
        char *p = malloc(SIZE);
        uintptr_t a = (uintptr_t)p;
        if (at_end ? (a + SIZE) % 4096 == 0 : a % 4096 == 0)
            return p;
    }
    return 0;
}

__attribute__((noinline)) static void write_past_end(char *p) { ((volatile char *)p)[SIZE] = 1; }
__attribute__((noinline)) static int read_before_start(char *p) { return ((volatile char *)p)[-1]; }
__attribute__((noinline)) static int read_after_free(char *p) { return ((volatile char *)p)[8]; }
__attribute__((noinline)) static void write_after_free(char *p) { ((volatile char *)p)[0] = 7; }
__attribute__((noinline)) static void release(char *p) { free(p); }
/* A thread that never allocates: its first brush with the heap is the
 * fault. */
static void *read_after_free_elsewhere(void *p) { return (void *)(intptr_t)read_after_free(p); }

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "clean";
    if (!strcmp(what, "overflow")) {
        char *p = placed(1);
        if (!p) return 2;
        write_past_end(p);
    } else if (!strcmp(what, "underflow")) {
        char *p = placed(0);
        if (!p) return 2;
        read_before_start(p);
    } else if (!strcmp(what, "uaf-read")) {
        char *p = malloc(SIZE);
        memset(p, 1, SIZE);
        release(p);
        read_after_free(p);
    } else if (!strcmp(what, "uaf-thread")) {
        char *p = malloc(SIZE);
        memset(p, 1, SIZE);
        release(p);
        pthread_t t;
        pthread_create(&t, 0, read_after_free_elsewhere, p);
        pthread_join(t, 0);
    } else if (!strcmp(what, "uaf-write")) {
        char *p = malloc(SIZE);
        release(p);
        write_after_free(p);
    } else {
        /* Clean: in-bounds use of many blocks of many sizes. */
        for (int i = 0; i < 2000; i++) {
            size_t n = 1 + (size_t)(i * 37) % 3000;
            char *p = malloc(n);
            memset(p, i, n);
            p = realloc(p, n + 100);
            p[n + 99] = 1;
            free(p);
        }
    }
    puts("survived");
    return 0;
}
