/* Allocation before main (a constructor) and dlsym, which may call calloc
 * inside the dynamic loader. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *early;

__attribute__((constructor(101))) static void before_main(void) {
    early = malloc(64);
    strcpy(early, "constructed");
    void *sym = dlsym(RTLD_NEXT, "nonexistent_symbol_for_memtally_test");
    (void)sym;
    (void)dlerror();
}

int main(void) {
    void *h = dlopen("libm.so.6", RTLD_NOW);
    double (*cosine)(double) = h ? (double (*)(double))dlsym(h, "cos") : NULL;
    printf("%s %d\n", early, cosine ? (int)cosine(0.0) : -1);
    free(early);
    if (h) dlclose(h);
    return 0;
}
