/* Allocates, then executes itself (the same process goes on as a new
 * program), which allocates blocks of another size; forks a child that
 * allocates too. Without children=1 the executed program is recorded (a
 * trace of its own) and the forked child is not. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *volatile sink;
static void churn(int n, size_t size) {
    for (int i = 0; i < n; i++) {
        sink = malloc(size);
        free(sink);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "again") == 0) {
        churn(300, 777);
        pid_t pid = fork();
        if (pid == 0) {
            churn(200, 666);
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        return 0;
    }
    churn(100, 555);
    char *args[] = {argv[0], "again", NULL};
    execv(argv[0], args);
    return 127;
}
