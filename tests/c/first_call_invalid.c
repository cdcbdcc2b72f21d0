/* Invalid frees as the first heap call of a thread: the main thread frees
 * a stack address before it allocates anything, and a thread that never
 * allocates frees the address of a global. Run with on_error=report, it
 * goes on and prints "survived". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static char global_buffer[64];

__attribute__((noinline)) static void free_a_stack_address(void) {
    char local[32];
    free(local + 8);
    __asm__ volatile("" ::"r"(local) : "memory");
}

__attribute__((noinline)) static void *free_a_global(void *arg) {
    (void)arg;
    free(global_buffer + 16);
    return 0;
}

int main(void) {
    free_a_stack_address();
    pthread_t t;
    pthread_create(&t, 0, free_a_global, 0);
    pthread_join(t, 0);
    puts("survived");
    return 0;
}
