/* main.c (T7): prints what liba's RTLD_NEXT lookups of foo return.
 *   cc -O1 -g -fno-omit-frame-pointer main.c -o rtld_next_main \
 *      -L. -Wl,--no-as-needed -la -lb -ldl -Wl,-rpath,'$ORIGIN'
 * liba must come before libb on the link line, and libb must stay a
 * DT_NEEDED entry although main uses nothing from it (hence
 * --no-as-needed; without it the lookups find nothing and print -1).
 * Without any preload this prints "next=2 nextv=2"; an interposed
 * dlsym/dlvsym must not change it. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int call_next_foo(void);
int call_next_foo_v(void);

int main(void) {
    char line[64];
    int n = snprintf(line, sizeof line, "next=%d nextv=%d\n", call_next_foo(), call_next_foo_v());
    return write(1, line, (size_t)n) == n ? 0 : 1;
}
