/* Forks a child that allocates and exits, and execs itself once: each
 * process writes its own trace when children are followed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Keeps the compiler from removing malloc/free pairs. */
static void *volatile sink;
static void churn(int n, size_t size) {
    for (int i = 0; i < n; i++) {
        sink = malloc(size);
        free(sink);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "exec-child") == 0) {
        churn(300, 777);
        return 0;
    }
    churn(100, 555);
    pid_t pid = fork();
    if (pid == 0) {
        churn(200, 666);
        char *args[] = {argv[0], "exec-child", NULL};
        execv(argv[0], args);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    printf("child status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
