/* Access annotations end to end (replay --distributed's coherence model):
 * the main thread allocates a shared block; two threads take turns, each
 * writing it 100 times and reading it 100 times, annotating every access
 * with memtally_access (found with dlsym, so the program also runs without
 * memtally), with a marker (a synchronisation point) every 50 rounds.
 * Prints its own counts. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void (*access_fn)(const void *, int);
static void (*mark_fn)(const char *);
static long *shared;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long reads, writes, marks;

static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&lock);
        if (access_fn) access_fn(&shared[1], 0);
        long v = shared[1];
        reads++;
        if (access_fn) access_fn(&shared[1], 1);
        shared[1] = v + 1;
        writes++;
        if (i % 50 == 49) {
            if (mark_fn) mark_fn("sync");
            marks++;
        }
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int main(void) {
    access_fn = (void (*)(const void *, int))dlsym(RTLD_DEFAULT, "memtally_access");
    mark_fn = (void (*)(const char *))dlsym(RTLD_DEFAULT, "memtally_mark");
    shared = calloc(8, sizeof *shared);
    pthread_t a, b;
    pthread_create(&a, NULL, worker, NULL);
    pthread_create(&b, NULL, worker, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("reads=%ld writes=%ld marks=%ld total=%ld annotated=%d\n", reads, writes, marks,
           shared[1], access_fn != NULL);
    free(shared);
    return 0;
}
