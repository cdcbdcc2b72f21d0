/* Planted leaks for `memtally leaks`: three 100-byte blocks leaked from
 * leak_small, one 5000-byte block from leak_big, and blocks that are
 * freed (not leaks) from churn. No stdio: libc allocates nothing else. */
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

__attribute__((noinline)) static void leak_small(void) {
    for (int i = 0; i < 3; i++) {
        char *p = malloc(100);
        memset(p, 1, 100);
        sink = p;
    }
}

__attribute__((noinline)) static void leak_big(void) {
    char *p = malloc(5000);
    memset(p, 2, 5000);
    sink = p;
}

__attribute__((noinline)) static void churn(void) {
    for (int i = 0; i < 1000; i++) {
        sink = malloc(64 + i);
        free(sink);
    }
}

int main(void) {
    churn();
    leak_small();
    leak_big();
    churn();
    return 0;
}
