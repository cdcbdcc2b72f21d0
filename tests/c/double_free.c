/* A planted double free for memtally's memory-error report: release_twice
 * frees a lone 5000-byte block (the only one on its page) twice. */
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

__attribute__((noinline)) static void release_twice(char *p) {
    free(p);
    free(p);
}

int main(void) {
    char *p = malloc(5000);
    memset(p, 1, 5000);
    sink = p;
    release_twice(p);
    return 0;
}
