/* Threads that come and go: rounds of four threads, each allocating 20,000
 * blocks and handing them to each other through 32 shared slots (so frees
 * cross threads), then exiting, for SECONDS seconds (the first argument,
 * default 5) or until a file named "stop" appears in the directory. A new
 * thread adopts the heap of one that ended, so an attach must not leave
 * anything of its writer's (which ends at each detach) in a heap another
 * thread adopts. Prints "ready" once running; exits 0. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void *shared[32];

__attribute__((noinline)) static void *churn_alloc(long id, int i) {
    return malloc(16 + (i * 37 + id) % 2000);
}

static void *work(void *arg) {
    long id = (long)arg;
    for (int i = 0; i < 20000; i++) {
        void *p = churn_alloc(id, i);
        void *q = __atomic_exchange_n(&shared[(i + id) % 32], p, __ATOMIC_ACQ_REL);
        free(q);
    }
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double end = now() + (argc > 1 ? atof(argv[1]) : 5.0);
    long round = 0;
    printf("ready\n");
    fflush(stdout);
    while (now() < end && access("stop", F_OK) != 0) {
        pthread_t t[4];
        for (long i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, work, (void *)(round * 4 + i));
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
        round++;
    }
    for (int i = 0; i < 32; i++)
        free(shared[i]);
    printf("done %ld rounds\n", round);
    return 0;
}
