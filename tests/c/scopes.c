/* Scopes through the C ABI: 50 "GET /items" requests each use a 256-byte
 * buffer, and every tenth keeps 1000 bytes in a cache (an instance that
 * outlives its request); a "batch" holds 20 "POST /users" requests of 512
 * bytes each, all freed, and allocates 64 bytes of its own. The scope
 * functions are weak so the program also runs unprofiled. */
#include <stdlib.h>
#include <string.h>

extern void memtally_scope_enter(const char *name) __attribute__((weak));
extern void memtally_scope_exit(void) __attribute__((weak));

static void enter(const char *name) {
    if (memtally_scope_enter)
        memtally_scope_enter(name);
}

static void leave(void) {
    if (memtally_scope_exit)
        memtally_scope_exit();
}

static void *cache[5];
static void *volatile sink;

__attribute__((noinline)) static void get_items(int i) {
    enter("GET /items");
    char *buf = malloc(256);
    memset(buf, 1, 256);
    sink = buf;
    if (i % 10 == 0) {
        cache[i / 10] = malloc(1000);
        memset(cache[i / 10], 2, 1000);
    }
    free(buf);
    leave();
}

__attribute__((noinline)) static void post_users(void) {
    enter("POST /users");
    char *body = malloc(512);
    memset(body, 3, 512);
    sink = body;
    free(body);
    leave();
}

int main(void) {
    for (int i = 0; i < 50; i++)
        get_items(i);
    enter("batch");
    char *own = malloc(64);
    sink = own;
    for (int i = 0; i < 20; i++)
        post_users();
    free(own);
    leave();
    return 0;
}
