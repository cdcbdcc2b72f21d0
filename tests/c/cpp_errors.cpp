// Planted memory errors in C++, for memtally's checks: argv[1] picks one.
// "double-delete": a node deleted twice among live nodes of its size;
// "overflow": one element written past a new[] array (run with
// guard_every=1; arrays sit at the start or end of their slot at random,
// so one placed at the end is looked for); "uaf": a member read after
// delete (guard_every=1).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

struct Node {
    long value;
    Node *next;
    long pad[4];
};

__attribute__((noinline)) static void delete_twice(Node *n) {
    delete n;
    delete n;
}

__attribute__((noinline)) static void write_past_end(long *a, int n) {
    static_cast<volatile long *>(a)[n] = 1;
}

__attribute__((noinline)) static long read_after_delete(Node *n) {
    return static_cast<volatile Node *>(n)->value;
}

int main(int argc, char **argv) {
    std::string what = argc > 1 ? argv[1] : "clean";
    if (what == "double-delete") {
        std::vector<Node *> keep;
        for (int i = 0; i < 8; i++) keep.push_back(new Node{});
        delete_twice(new Node{});
    } else if (what == "overflow") {
        for (int i = 0; i < 24; i++) {
            long *a = new long[6];
            if ((reinterpret_cast<uintptr_t>(a) + 6 * sizeof(long)) % 4096 == 0) {
                write_past_end(a, 6);
                break;
            }
        }
        return 2;
    } else if (what == "uaf") {
        Node *n = new Node{};
        n->value = 42;
        delete n;
        read_after_delete(n);
    }
    std::puts("survived");
    return 0;
}
