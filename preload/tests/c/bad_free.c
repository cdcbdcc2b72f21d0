/* Frees a pointer the allocator never handed out. Must abort with a message. */
#include <stdlib.h>
int main(int argc, char **argv) {
    (void)argv;
    char local[16];
    char *p = malloc(64);
    if (argc > 1) {
        free(p + 16); /* interior pointer */
    } else {
        free(local); /* stack address */
    }
    return 0;
}
