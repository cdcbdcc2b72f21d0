/* A program for the live dashboard's end-to-end test: for SECONDS seconds
 * (the first argument, default 3) it keeps a 4 KiB block from grow_cache
 * every 10 ms and allocates and frees 64 KiB in churn, printing a line a
 * tick; then it exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *volatile sink;
static void *volatile kept[100000];

__attribute__((noinline)) static void grow_cache(int i) {
    kept[i] = malloc(4096);
    memset(kept[i], 1, 4096);
}

__attribute__((noinline)) static void churn(void) {
    for (int k = 0; k < 16; k++) {
        sink = malloc(4096);
        free(sink);
    }
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    int ticks = (int)(seconds * 100);
    struct timespec ten_ms = {0, 10 * 1000 * 1000};
    for (int i = 0; i < ticks && i < 100000; i++) {
        grow_cache(i);
        churn();
        if (i % 10 == 0) {
            printf("tick %d\n", i);
            fflush(stdout);
        }
        nanosleep(&ten_ms, NULL);
    }
    return 0;
}
