/* A program in three marked phases for `memtally plot`: "load" builds a
 * table that stays live (load_table), "serve" allocates and frees per
 * request (handle_request) while the table is live, and "shutdown" frees
 * the table. memtally_mark is weak so the program also runs unprofiled. */
#include <stdlib.h>
#include <string.h>

extern void memtally_mark(const char *text) __attribute__((weak));

static void mark(const char *text) {
    if (memtally_mark)
        memtally_mark(text);
}

static char *table[400];
static void *volatile sink;

__attribute__((noinline)) static void load_table(void) {
    for (int i = 0; i < 400; i++) {
        table[i] = malloc(1000);
        memset(table[i], i, 1000);
    }
}

__attribute__((noinline)) static void handle_request(int i) {
    char *p = malloc(20000 + i);
    memset(p, 3, 20000);
    sink = p;
    free(p);
}

int main(void) {
    mark("load");
    load_table();
    mark("serve");
    for (int i = 0; i < 200; i++)
        handle_request(i);
    mark("shutdown");
    for (int i = 0; i < 400; i++)
        free(table[i]);
    return 0;
}
