/* The race detector under the preload on C code: two threads share a heap
 * word the program names with memtally_race_watch (found with dlsym, so the
 * program also runs without memtally).
 *
 * Plain: one thread stores to it with plain writes, the other loads it,
 * unsynchronised: a data race, each side told a read or a write by its
 * instruction. Built with -DATOMIC: one thread adds with a sequentially
 * consistent __atomic_fetch_add (a `lock xadd`), the other loads with a
 * relaxed __atomic_load_n (a plain `mov`): no race, told apart by the
 * locked instruction, as C atomics leave no function frame to tell them.
 * Runs RACES_SECONDS seconds (default 3). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long *word;
static volatile int stop;

#ifdef ATOMIC
__attribute__((noinline)) static void update_word(long v) {
    __atomic_fetch_add(word, v, __ATOMIC_SEQ_CST);
}
__attribute__((noinline)) static long look_at_word(void) {
    return __atomic_load_n(word, __ATOMIC_RELAXED);
}
#else
__attribute__((noinline)) static void update_word(long v) { *(volatile long *)word = v; }
__attribute__((noinline)) static long look_at_word(void) { return *(volatile long *)word; }
#endif

static void *updater(void *arg) {
    (void)arg;
    for (long i = 0; !stop; i++) update_word(i);
    return NULL;
}

static void *looker(void *arg) {
    long sum = 0;
    (void)arg;
    while (!stop) sum += look_at_word();
    return (void *)sum;
}

int main(void) {
    void (*watch)(const void *, size_t) =
        (void (*)(const void *, size_t))dlsym(RTLD_DEFAULT, "memtally_race_watch");
    const char *s = getenv("RACES_SECONDS");
    word = calloc(8, sizeof *word);
    if (watch) watch(word, sizeof *word);
    pthread_t a, b;
    pthread_create(&a, NULL, updater, NULL);
    pthread_create(&b, NULL, looker, NULL);
    struct timespec t = {s ? atoi(s) : 3, 0};
    nanosleep(&t, NULL);
    stop = 1;
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("done\n");
    free(word);
    return 0;
}
