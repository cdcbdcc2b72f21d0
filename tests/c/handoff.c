/* Ownership for `memtally report`: a producer thread allocates 100 blocks
 * of 48 bytes (produce) and hands them to a consumer thread that frees
 * them; each thread also allocates and frees 50 blocks of its own (local
 * churn). No stdio: libc allocates nothing else in the threads. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void *queue[100];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready = PTHREAD_COND_INITIALIZER;
static int produced;
static void *volatile sink;

__attribute__((noinline)) static void churn(void) {
    for (int i = 0; i < 50; i++) {
        sink = malloc(24);
        free(sink);
    }
}

__attribute__((noinline)) static void *produce(void *arg) {
    (void)arg;
    churn();
    for (int i = 0; i < 100; i++) {
        void *p = malloc(48);
        memset(p, i, 48);
        queue[i] = p;
    }
    pthread_mutex_lock(&lock);
    produced = 1;
    pthread_cond_signal(&ready);
    pthread_mutex_unlock(&lock);
    return NULL;
}

__attribute__((noinline)) static void *consume(void *arg) {
    (void)arg;
    churn();
    pthread_mutex_lock(&lock);
    while (!produced)
        pthread_cond_wait(&ready, &lock);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < 100; i++)
        free(queue[i]);
    return NULL;
}

int main(void) {
    pthread_t p, c;
    pthread_create(&c, NULL, consume, NULL);
    pthread_create(&p, NULL, produce, NULL);
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    return 0;
}
