/* Checks the C semantics of the malloc family under LD_PRELOAD: edge cases
 * of realloc, overflow checks, errno, alignment rules of each function. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c)) {                                                           \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);      \
            return 1;                                                         \
        }                                                                     \
    } while (0)

static int aligned_to(void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

int main(void) {
    long page = sysconf(_SC_PAGESIZE);
    for (size_t s = 0; s < 5000; s++) {
        char *p = malloc(s);
        CHECK(p != NULL);
        CHECK(aligned_to(p, 16));
        CHECK(malloc_usable_size(p) >= s);
        memset(p, 0x5a, s);
        free(p);
    }
    void *a = malloc(0), *b = malloc(0);
    CHECK(a && b && a != b);
    free(a);
    free(b);
    free(NULL);
    CHECK(malloc_usable_size(NULL) == 0);

    errno = 0;
    CHECK(malloc(SIZE_MAX - 100) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    unsigned char *z = calloc(1000, 10);
    CHECK(z != NULL);
    for (int i = 0; i < 10000; i++) CHECK(z[i] == 0);
    memset(z, 0xff, 10000);
    free(z);
    z = calloc(3, 5 << 20); /* huge, possibly reused */
    CHECK(z != NULL);
    for (size_t i = 0; i < (size_t)(15 << 20); i += 4096) CHECK(z[i] == 0);
    free(z);

    char *r = realloc(NULL, 100);
    CHECK(r != NULL);
    memcpy(r, "hello", 6);
    r = realloc(r, 100000);
    CHECK(r != NULL && strcmp(r, "hello") == 0);
    r = realloc(r, 10);
    CHECK(r != NULL && strcmp(r, "hello") == 0);
    errno = 0;
    CHECK(realloc(r, SIZE_MAX - 10) == NULL && errno == ENOMEM);
    CHECK(strcmp(r, "hello") == 0); /* untouched after a failed realloc */
    CHECK(realloc(r, 0) == NULL);   /* glibc: frees, returns NULL */

    void *q = malloc(10);
    errno = 0;
    CHECK(reallocarray(q, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
    q = reallocarray(q, 100, 4);
    CHECK(q != NULL && malloc_usable_size(q) >= 400);
    free(q);

    void *m = NULL;
    CHECK(posix_memalign(&m, 3, 10) == EINVAL);
    CHECK(posix_memalign(&m, 4, 10) == EINVAL); /* not a multiple of sizeof(void*) */
    CHECK(posix_memalign(&m, 64, 100) == 0 && aligned_to(m, 64));
    free(m);
    CHECK(posix_memalign(&m, 1 << 21, 100) == 0 && aligned_to(m, 1 << 21));
    free(m);
    CHECK(posix_memalign(&m, 1 << 23, 3 << 20) == 0 && aligned_to(m, 1 << 23));
    memset(m, 1, 3 << 20);
    free(m);

    errno = 0;
    CHECK(aligned_alloc(3, 10) == NULL && errno == EINVAL);
    void *al = aligned_alloc(4096, 5000);
    CHECK(al != NULL && aligned_to(al, 4096));
    free(al);

    void *ma = memalign(48, 100); /* rounded up to 64, as glibc does */
    CHECK(ma != NULL && aligned_to(ma, 64));
    free(ma);
    ma = memalign(1, 100);
    CHECK(ma != NULL && aligned_to(ma, 16));
    free(ma);

    void *v = valloc(10);
    CHECK(v != NULL && aligned_to(v, page));
    free(v);
    void *pv = pvalloc(10);
    CHECK(pv != NULL && aligned_to(pv, page) && malloc_usable_size(pv) >= (size_t)page);
    free(pv);
    pv = pvalloc(0);
    CHECK(pv != NULL && malloc_usable_size(pv) >= (size_t)page);
    free(pv);
    CHECK(malloc_trim(0) == 1);

    printf("ok\n");
    return 0;
}
