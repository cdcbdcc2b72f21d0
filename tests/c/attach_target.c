/* A busy program to attach to: THREADS threads (second argument, default
 * 4) allocate and free blocks of 16 B to 4 KiB for SECONDS seconds (first
 * argument, default 5), handing some blocks to each other to free (so
 * frees cross threads), while the main thread forks a child every 100 ms
 * that allocates, frees, checks that the pipe its parent opened before the
 * fork is still open (exit status 3 if not) and exits. keep_forever holds
 * one 256-byte block per 1,000 allocations of each thread. Prints "ready"
 * once running and exits 0, early when a file named "stop" appears in its
 * directory. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double seconds = 5.0;
static void *volatile shared[64];
static void *volatile kept[1 << 20];
static volatile long kept_count;
static volatile int stop;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

__attribute__((noinline)) static void keep_forever(void) {
    long i = __atomic_fetch_add(&kept_count, 1, __ATOMIC_RELAXED);
    if (i < (1 << 20)) {
        kept[i] = malloc(256);
        memset(kept[i], 7, 256);
    }
}

__attribute__((noinline)) static void *churn_block(unsigned *seed) {
    *seed = *seed * 1103515245u + 12345u;
    size_t size = 16 + (*seed >> 8) % 4080;
    char *p = malloc(size);
    p[0] = 1;
    p[size - 1] = 2;
    return p;
}

static void *worker(void *arg) {
    unsigned seed = (unsigned)(long)arg * 7919u + 1;
    void *ring[256] = {0};
    double end = now() + seconds;
    long n = 0;
    while (now() < end && !stop) {
        for (int k = 0; k < 1000; k++, n++) {
            int slot = n % 256;
            free(ring[slot]);
            ring[slot] = churn_block(&seed);
            if (n % 16 == 0) {
                /* Hand a block to whichever thread takes the slot next. */
                void *mine = churn_block(&seed);
                void *theirs = __atomic_exchange_n(&shared[seed % 64], mine, __ATOMIC_ACQ_REL);
                free(theirs);
            }
        }
        keep_forever();
        struct timespec pause = {0, 200 * 1000};
        nanosleep(&pause, NULL);
    }
    for (int i = 0; i < 256; i++)
        free(ring[i]);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1)
        seconds = atof(argv[1]);
    int threads = argc > 2 ? atoi(argv[2]) : 4;
    pthread_t t[64];
    for (long i = 0; i < threads && i < 64; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    printf("ready\n");
    fflush(stdout);
    double end = now() + seconds;
    while (now() < end && access("stop", F_OK) != 0) {
        /* Opened after a session may end: the pipe can take the number
         * the session's trace had, which the child's memtally must not
         * close as its parent's trace. */
        int fds[2];
        if (pipe(fds) != 0) {
            perror("pipe");
            return 1;
        }
        pid_t child = fork();
        if (child == 0) {
            for (int i = 0; i < 1000; i++)
                free(malloc(64 + i));
            if (fcntl(fds[0], F_GETFD) < 0 || fcntl(fds[1], F_GETFD) < 0)
                _exit(3);
            _exit(0);
        }
        close(fds[0]);
        close(fds[1]);
        int status = 0;
        waitpid(child, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "child failed: %d\n", status);
            return 1;
        }
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    stop = 1;
    for (int i = 0; i < threads && i < 64; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 64; i++)
        free(shared[i]);
    printf("done\n");
    return 0;
}
