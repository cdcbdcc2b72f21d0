/* fake_vulkan.c: a stand-in for the Vulkan loader and one driver,
 * libvulkan.so.1, for tests on machines without a Vulkan implementation.
 *
 * Build (as the other stand-ins: -Bsymbolic and hidden visibility):
 *   cc -O1 -g -shared -fPIC -fvisibility=hidden -Wl,-Bsymbolic \
 *      -Wl,-soname,libvulkan.so.1 -o libvulkan.so.1 fake_vulkan.c -pthread
 *
 * As with the real loader, the exported vkAllocateMemory and vkFreeMemory
 * are trampolines, and vkGetDeviceProcAddr hands out the driver's own
 * functions (here the internal driver_* ones), which is what volk, engines
 * and every dispatch-table user call: an interposer of the exported names
 * alone never sees those calls. vkGetInstanceProcAddr hands out the
 * loader's trampolines for device functions, and vkGetDeviceProcAddr
 * itself.
 *
 * FAKE_VK_LEDGER names a file for a JSON line per allocation, free and
 * failure: {"op":"alloc","fn":"driver","ptr":"0x..","size":1048576}.
 * Allocations larger than FAKE_VK_HEAP (default 1 GiB) fail with
 * VK_ERROR_OUT_OF_DEVICE_MEMORY. Memory comes from mmap, never malloc. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h> /* snprintf only */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

typedef int32_t VkResult;
typedef uint64_t VkDeviceSize;
typedef struct fake_handle *VkInstance, *VkPhysicalDevice, *VkDevice;
typedef struct fake_memory *VkDeviceMemory;
typedef void (*PFN_vkVoidFunction)(void);

#define VK_SUCCESS 0
#define VK_ERROR_OUT_OF_HOST_MEMORY -1
#define VK_ERROR_OUT_OF_DEVICE_MEMORY -2
#define VK_ERROR_INITIALIZATION_FAILED -3

typedef struct {
    int32_t sType;
    const void *pNext;
    VkDeviceSize allocationSize;
    uint32_t memoryTypeIndex;
} VkMemoryAllocateInfo;

struct fake_handle {
    int kind;
};

struct fake_memory {
    void *data;
    VkDeviceSize size;
};

static struct fake_handle physical = {2};
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int ledger_fd = -2;
static unsigned long long heap_limit = 1ULL << 30;

static void *take(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

static void setup(void) {
    const char *f = getenv("FAKE_VK_LEDGER");
    ledger_fd = f && *f ? open(f, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
    const char *h = getenv("FAKE_VK_HEAP");
    if (h && *h)
        heap_limit = strtoull(h, NULL, 0);
}

static void ledger(const char *op, const char *fn, const void *p, unsigned long long size) {
    pthread_once(&setup_once, setup);
    pthread_mutex_lock(&lock);
    if (ledger_fd >= 0) {
        char line[256];
        int n = snprintf(line, sizeof line,
                         "{\"op\":\"%s\",\"fn\":\"%s\",\"ptr\":\"%p\",\"size\":%llu}\n", op, fn, p,
                         size);
        if (n > 0 && (size_t)n < sizeof line && write(ledger_fd, line, (size_t)n) != n)
            ledger_fd = -1;
    }
    pthread_mutex_unlock(&lock);
}

/* The driver's functions: what vkGetDeviceProcAddr hands out. */
static __attribute__((noinline)) VkResult driver_vkAllocateMemory(VkDevice device,
                                                                 const VkMemoryAllocateInfo *info,
                                                                 const void *allocator,
                                                                 VkDeviceMemory *out) {
    (void)allocator;
    if (!device || !info || !out || !info->allocationSize)
        return VK_ERROR_INITIALIZATION_FAILED;
    pthread_once(&setup_once, setup);
    if (info->allocationSize > heap_limit) {
        ledger("fail", "driver", NULL, info->allocationSize);
        return VK_ERROR_OUT_OF_DEVICE_MEMORY;
    }
    VkDeviceMemory m = take(sizeof *m);
    void *data = m ? take(info->allocationSize) : NULL;
    if (!data) {
        if (m)
            munmap(m, sizeof *m);
        return VK_ERROR_OUT_OF_DEVICE_MEMORY;
    }
    m->data = data;
    m->size = info->allocationSize;
    ledger("alloc", "driver", m, m->size);
    *out = m;
    return VK_SUCCESS;
}

static __attribute__((noinline)) void driver_vkFreeMemory(VkDevice device, VkDeviceMemory m,
                                                         const void *allocator) {
    (void)device;
    (void)allocator;
    if (!m)
        return;
    ledger("free", "driver", m, m->size);
    munmap(m->data, m->size);
    munmap(m, sizeof *m);
}

/* The loader's exported trampolines. */
EXPORT VkResult vkAllocateMemory(VkDevice device, const VkMemoryAllocateInfo *info,
                                 const void *allocator, VkDeviceMemory *out) {
    return driver_vkAllocateMemory(device, info, allocator, out);
}

EXPORT void vkFreeMemory(VkDevice device, VkDeviceMemory m, const void *allocator) {
    driver_vkFreeMemory(device, m, allocator);
}

EXPORT VkResult vkCreateInstance(const void *info, const void *allocator, VkInstance *out) {
    (void)info;
    (void)allocator;
    VkInstance i = take(sizeof *i);
    if (!i)
        return VK_ERROR_OUT_OF_HOST_MEMORY;
    i->kind = 1;
    *out = i;
    return VK_SUCCESS;
}

EXPORT void vkDestroyInstance(VkInstance i, const void *allocator) {
    (void)allocator;
    if (i)
        munmap(i, sizeof *i);
}

EXPORT VkResult vkEnumeratePhysicalDevices(VkInstance i, uint32_t *count, VkPhysicalDevice *out) {
    (void)i;
    if (!out) {
        *count = 1;
        return VK_SUCCESS;
    }
    if (*count >= 1) {
        out[0] = &physical;
        *count = 1;
    }
    return VK_SUCCESS;
}

EXPORT VkResult vkCreateDevice(VkPhysicalDevice p, const void *info, const void *allocator,
                               VkDevice *out) {
    (void)p;
    (void)info;
    (void)allocator;
    VkDevice d = take(sizeof *d);
    if (!d)
        return VK_ERROR_OUT_OF_HOST_MEMORY;
    d->kind = 3;
    *out = d;
    return VK_SUCCESS;
}

EXPORT void vkDestroyDevice(VkDevice d, const void *allocator) {
    (void)allocator;
    if (d)
        munmap(d, sizeof *d);
}

EXPORT PFN_vkVoidFunction vkGetDeviceProcAddr(VkDevice d, const char *name) {
    if (!d || !name)
        return NULL;
    if (strcmp(name, "vkAllocateMemory") == 0)
        return (PFN_vkVoidFunction)driver_vkAllocateMemory;
    if (strcmp(name, "vkFreeMemory") == 0)
        return (PFN_vkVoidFunction)driver_vkFreeMemory;
    if (strcmp(name, "vkDestroyDevice") == 0)
        return (PFN_vkVoidFunction)vkDestroyDevice;
    return NULL;
}

EXPORT PFN_vkVoidFunction vkGetInstanceProcAddr(VkInstance i, const char *name) {
    (void)i;
    if (!name)
        return NULL;
    if (strcmp(name, "vkGetDeviceProcAddr") == 0)
        return (PFN_vkVoidFunction)vkGetDeviceProcAddr;
    if (strcmp(name, "vkAllocateMemory") == 0)
        return (PFN_vkVoidFunction)vkAllocateMemory;
    if (strcmp(name, "vkFreeMemory") == 0)
        return (PFN_vkVoidFunction)vkFreeMemory;
    if (strcmp(name, "vkCreateDevice") == 0)
        return (PFN_vkVoidFunction)vkCreateDevice;
    return NULL;
}
