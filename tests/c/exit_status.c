/* Exits with the status given (through exit, or _exit with a second
 * argument), after an exit handler frees a block: the trace's footer must
 * carry the status, and the handler's free must be recorded. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *kept;

static void release(void) { free(kept); }

int main(int argc, char **argv) {
    int status = argc > 1 ? atoi(argv[1]) : 0;
    kept = malloc(4096);
    memset(kept, 1, 4096);
    atexit(release);
    if (argc > 2) _exit(status);
    return status;
}
