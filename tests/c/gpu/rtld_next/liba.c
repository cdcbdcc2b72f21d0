/* liba.c (T7): checks that dlsym(RTLD_NEXT, ...) and dlvsym(RTLD_NEXT, ...)
 * still resolve relative to the CALLER when a preload library interposes
 * dlsym/dlvsym. main links -la -lb (in that order), so from liba the next
 * definition of foo is libb's (returns 2), not this one (-99) nor anything
 * in the preload library. An interposer that forwards the lookup from its
 * own frame gets the wrong answer.
 *   cc -O1 -g -shared -fPIC -o liba.so liba.c -ldl
 * liba has no version script: its foo is unversioned. */
#define _GNU_SOURCE
#include <dlfcn.h>

int foo(void) { return -99; }

int call_next_foo(void) {
    int (*f)(void);
    *(void **)&f = dlsym(RTLD_NEXT, "foo");
    return f ? f() : -1;
}

int call_next_foo_v(void) {
    int (*f)(void);
    *(void **)&f = dlvsym(RTLD_NEXT, "foo", "V1");
    return f ? f() : -1;
}
