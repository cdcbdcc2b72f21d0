// A C++ program with std::thread, new/delete and std::map; prints a checksum
// that must not depend on the allocator.
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

int main() {
    std::map<std::string, std::vector<int>> shared;
    std::mutex m;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++) {
        threads.emplace_back([t, &shared, &m] {
            for (int i = 0; i < 20000; i++) {
                auto *v = new std::vector<int>(i % 50, t);
                std::string key = "k" + std::to_string((i * 7 + t) % 3000);
                {
                    std::lock_guard<std::mutex> g(m);
                    auto &slot = shared[key];
                    slot.insert(slot.end(), v->begin(), v->end());
                    if (slot.size() > 200) slot.clear();
                }
                delete v;
                auto arr = std::make_unique<char[]>(i % 4000 + 1);
                arr[0] = 1;
            }
        });
    }
    for (auto &th : threads) th.join();
    unsigned long long sum = 0;
    for (auto &kv : shared) sum += kv.first.size() + kv.second.size();
    std::printf("keys=%zu\n", shared.size());
    return sum == 0;
}
