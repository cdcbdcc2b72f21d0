/* Allocates steadily until killed. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
    void *keep[1024] = {0};
    for (long i = 0;; i++) {
        free(keep[i % 1024]);
        keep[i % 1024] = malloc(100 + i % 900);
        if (i % 1000 == 0) {
            if (i == 100000) {
                printf("ready\n");
                fflush(stdout);
            }
            usleep(1000);
        }
    }
}
