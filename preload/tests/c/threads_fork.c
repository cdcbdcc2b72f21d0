/* Threads that allocate, hand blocks to each other and exit, while the main
 * thread forks children that allocate and exit. Prints a checksum. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLOTS 4096
static void *slots[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop;

static void *worker(void *arg) {
    uint64_t x = (uintptr_t)arg * 2654435761u + 1;
    for (int i = 0; i < 200000 && !stop; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t size = 1 + (x % 700);
        if (x % 97 == 0) size = 100000 + x % 2000000;
        void *p = malloc(size);
        memset(p, (int)size, size < 64 ? size : 64);
        unsigned k = (x >> 20) % SLOTS;
        pthread_mutex_lock(&lock);
        void *old = slots[k];
        slots[k] = p;
        pthread_mutex_unlock(&lock);
        free(old); /* often allocated by another (maybe exited) thread */
    }
    return NULL;
}

int main(void) {
    for (int gen = 0; gen < 6; gen++) {
        pthread_t t[3];
        for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(gen * 3 + i + 1));
        for (int f = 0; f < 3; f++) {
            pid_t pid = fork();
            if (pid == 0) {
                char *big = malloc(8 << 20);
                memset(big, 1, 8 << 20);
                void *small[1000];
                for (int i = 0; i < 1000; i++) small[i] = malloc(i + 1);
                for (int i = 0; i < 1000; i++) free(small[i]);
                free(big);
                _exit(0);
            }
            int status = 0;
            waitpid(pid, &status, 0);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "child failed: %x\n", status);
                return 1;
            }
        }
        for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    }
    size_t live = 0;
    for (int k = 0; k < SLOTS; k++) {
        if (slots[k]) live++;
        free(slots[k]);
    }
    printf("done %zu\n", live > 0);
    return 0;
}
