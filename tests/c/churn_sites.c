/* Many events from a few call sites, for the packed trace records: each of
 * 200,000 rounds allocates from one of three sites (sizes cycling through a
 * short list), frees most blocks at once and keeps one in 64 for a while;
 * 100 blocks of 48 bytes leak. No stdio: libc allocates nothing else. */
#include <stdlib.h>
#include <string.h>

static void *volatile sink;
static void *kept[256];

__attribute__((noinline)) static void *site_a(size_t n) { return malloc(n); }
__attribute__((noinline)) static void *site_b(size_t n) { return calloc(1, n); }
__attribute__((noinline)) static void *site_c(size_t n) {
    void *p = malloc(n / 2 + 1);
    return realloc(p, n);
}

int main(void) {
    static const size_t sizes[] = {24, 40, 64, 100, 256, 24, 40, 1000};
    for (unsigned i = 0; i < 200000; i++) {
        size_t n = sizes[i % 8];
        void *p = i % 3 == 0 ? site_a(n) : i % 3 == 1 ? site_b(n) : site_c(n);
        memset(p, 1, n);
        if (i % 64 == 0) {
            unsigned k = (i / 64) % 256;
            free(kept[k]);
            kept[k] = p;
        } else {
            free(p);
        }
    }
    for (unsigned k = 0; k < 256; k++)
        free(kept[k]);
    for (int i = 0; i < 100; i++) {
        sink = malloc(48);
        memset(sink, 2, 48);
    }
    return 0;
}
