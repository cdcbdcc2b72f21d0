/* Allocates, leaks some blocks, lets a vfork child _exit (which must not
 * end the parent's trace), allocates more and leaves with _exit, which
 * skips the destructors that normally end the trace. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void *volatile sink;

int main(void) {
    for (int i = 0; i < 1000; i++) {
        sink = malloc(4242);
        if (i % 100 != 0) free(sink);
    }
    pid_t pid = vfork();
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);
    for (int i = 0; i < 500; i++) {
        sink = malloc(4343);
        free(sink);
    }
    _exit(0);
}
