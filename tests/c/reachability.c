/* The leak scan's C corpus: blocks kept alive from every kind of root (a
 * global, an interior pointer in a global, thread-local storage, a blocked
 * thread's stack, memory mapped by the program itself) and planted leaks of
 * each class (a direct leak, a leaked tree whose children are indirect, a
 * leaked cycle). Run with `memtally run --leak-scan`: the scan at exit must
 * report exactly the planted leaks. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct node {
    struct node *left, *right;
    char payload[40];
};

struct node *volatile global_list;
char *volatile global_interior;
__thread void *volatile tls_keep;
/* Publishing a block here and clearing it makes the compiler keep the
 * allocation and the stores into it (it may drop a malloc whose result
 * never escapes). */
void *volatile sink;
static int pipe_fds[2];
static int ready_fds[2];

__attribute__((noinline)) static struct node *new_node(struct node *l, struct node *r) {
    struct node *n = malloc(sizeof *n);
    n->left = l;
    n->right = r;
    memset(n->payload, 7, sizeof n->payload);
    return n;
}

__attribute__((noinline)) static void keep_global(void) {
    /* Three nodes: one held by the global, two only through it. */
    global_list = new_node(new_node(NULL, NULL), new_node(NULL, NULL));
}

__attribute__((noinline)) static void keep_interior(void) {
    global_interior = (char *)malloc(200) + 120;
}

__attribute__((noinline)) static void keep_tls(void) {
    tls_keep = malloc(72);
}

__attribute__((noinline)) static void keep_in_mapping(void) {
    void **region = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    region[100] = malloc(88);
}

__attribute__((noinline)) static void *thread_keeper(void *arg) {
    (void)arg;
    void *volatile held = malloc(96);
    char c = 1;
    write(ready_fds[1], &c, 1);
    read(pipe_fds[0], &c, 1); /* blocks until the process exits */
    return (void *)held;
}

__attribute__((noinline)) static void leak_direct(void) {
    char *p = malloc(48);
    memset(p, 1, 48);
    sink = p;
    sink = NULL;
}

__attribute__((noinline)) static struct node *tree_child(void) {
    /* Written whole: a fresh block's first word may still hold the
     * allocator's link to the next free block, which the scan would take
     * for a pointer (to whatever is allocated there later). */
    return calloc(1, sizeof(struct node));
}

__attribute__((noinline)) static void leak_tree(void) {
    struct node *root = malloc(sizeof(struct node));
    root->left = tree_child();
    root->right = tree_child();
    sink = root;
    sink = NULL;
}

__attribute__((noinline)) static void make_cycle(void) {
    struct node *a = malloc(sizeof *a);
    struct node *b = malloc(sizeof *b);
    a->left = b;
    b->left = a;
    a->right = b->right = NULL;
    sink = a;
    sink = NULL;
}

__attribute__((noinline)) static void churn(void) {
    for (int i = 0; i < 100; i++)
        free(malloc(32 + i));
}

/* Overwrites the dead stack below main's frame, where the leaking helpers
 * left their pointers: the scan reads only the live part of each stack, but
 * exit's own frames run there and must not find them either. */
__attribute__((noinline)) static void scrub_stack(void) {
    volatile char dead[16384];
    for (unsigned i = 0; i < sizeof dead; i++)
        dead[i] = 0;
}

int main(void) {
    pipe(pipe_fds);
    pipe(ready_fds);
    pthread_t t;
    pthread_create(&t, NULL, thread_keeper, NULL);
    char c;
    read(ready_fds[0], &c, 1);
    keep_global();
    keep_interior();
    keep_tls();
    keep_in_mapping();
    churn();
    leak_direct();
    leak_tree();
    make_cycle();
    scrub_stack();
    return 0;
}
