/* Planted double frees split between threads, among live blocks of the
 * same size (so only a per-block check can tell): each free_* function
 * frees a block that was freed already. Run with MEMTALLY=on_error=report
 * it goes on after each and prints "survived". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void *volatile blocks[6];

static void *free_remote(void *arg) {
    free(arg);
    return 0;
}

__attribute__((noinline)) static void free_again_locally(void *p) { free(p); }

static void *free_again_remote(void *arg) {
    free(arg);
    return 0;
}

__attribute__((noinline)) static void free_twice_remote_then_local(void) {
    pthread_t t;
    pthread_create(&t, 0, free_remote, blocks[1]);
    pthread_join(t, 0);
    free_again_locally(blocks[1]);
}

__attribute__((noinline)) static void free_twice_local_then_remote(void) {
    pthread_t t;
    free(blocks[2]);
    pthread_create(&t, 0, free_again_remote, blocks[2]);
    pthread_join(t, 0);
}

int main(void) {
    for (int i = 0; i < 6; i++)
        blocks[i] = malloc(40);
    free_twice_remote_then_local();
    free_twice_local_then_remote();
    /* The heap is intact: allocate and free a lot more of the same size. */
    for (int i = 0; i < 100000; i++) {
        void *p = malloc(40);
        if (!p)
            return 3;
        free(p);
    }
    puts("survived");
    return 0;
}
