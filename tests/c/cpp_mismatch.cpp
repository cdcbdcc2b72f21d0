// Mismatched releases in C++, for memtally's family checks: argv[1] picks
// one; "clean" uses the standard library (strings, vectors, maps, streams)
// and must run clean.
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

struct Item {
    long a, b;
};

__attribute__((noinline)) static void free_a_new_block(Item *p) { std::free(p); }
__attribute__((noinline)) static void delete_an_array(Item *p) { delete p; }
__attribute__((noinline)) static void delete_array_of_one(Item *p) { delete[] p; }

int main(int argc, char **argv) {
    std::string what = argc > 1 ? argv[1] : "clean";
    std::vector<Item *> keep;
    for (int i = 0; i < 8; i++) keep.push_back(new Item{});
    if (what == "free-new") {
        free_a_new_block(new Item{});
    } else if (what == "delete-array") {
        delete_an_array(new Item[4]);
    } else if (what == "array-delete") {
        delete_array_of_one(new Item{});
    } else {
        std::map<std::string, std::vector<int>> m;
        std::ostringstream out;
        for (int i = 0; i < 20000; i++) {
            m[std::to_string(i)].push_back(i);
            if (i % 3 == 0) m.erase(std::to_string(i / 2));
            out << i << ' ';
        }
        auto shared = std::make_shared<std::vector<long>>(1000, 7);
        std::unique_ptr<long[]> arr(new long[100]);
        std::cout << m.size() << ' ' << out.str().size() << ' ' << shared->size() << '\n';
    }
    for (Item *p : keep) delete p;
    std::puts("survived");
    return 0;
}
