/* vk_real.c (T18 on a real implementation): Mesa's lavapipe (a CPU Vulkan
 * driver, Debian's mesa-vulkan-drivers) through the real loader
 * (libvulkan1), opened with dlopen as engines do:
 *   cc -O1 -g -fno-omit-frame-pointer vk_real.c -o vk_real -ldl
 *   VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json ./vk_real
 * - real_exported: 1 MiB through the loader's vkAllocateMemory, kept;
 * - real_device_proc: through the driver's function from
 *   vkGetDeviceProcAddr: 4 MiB allocated and freed, 2 MiB kept.
 * Prints "skip: ..." and exits 0 where there is no loader or driver;
 * "done" otherwise. The structures are declared here (no headers needed). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int32_t VkResult;
typedef struct h *VkInstance, *VkPhysicalDevice, *VkDevice;
typedef uint64_t VkDeviceMemory;
typedef void (*PFN)(void);

typedef struct {
    int32_t sType; /* 0 */
    const void *pNext;
    const char *pApplicationName;
    uint32_t applicationVersion;
    const char *pEngineName;
    uint32_t engineVersion;
    uint32_t apiVersion;
} VkApplicationInfo;

typedef struct {
    int32_t sType; /* 1 */
    const void *pNext;
    uint32_t flags;
    const VkApplicationInfo *pApplicationInfo;
    uint32_t enabledLayerCount;
    const char *const *ppEnabledLayerNames;
    uint32_t enabledExtensionCount;
    const char *const *ppEnabledExtensionNames;
} VkInstanceCreateInfo;

typedef struct {
    int32_t sType; /* 2 */
    const void *pNext;
    uint32_t flags;
    uint32_t queueFamilyIndex;
    uint32_t queueCount;
    const float *pQueuePriorities;
} VkDeviceQueueCreateInfo;

typedef struct {
    int32_t sType; /* 3 */
    const void *pNext;
    uint32_t flags;
    uint32_t queueCreateInfoCount;
    const VkDeviceQueueCreateInfo *pQueueCreateInfos;
    uint32_t enabledLayerCount;
    const char *const *ppEnabledLayerNames;
    uint32_t enabledExtensionCount;
    const char *const *ppEnabledExtensionNames;
    const void *pEnabledFeatures;
} VkDeviceCreateInfo;

typedef struct {
    int32_t sType; /* 5 */
    const void *pNext;
    uint64_t allocationSize;
    uint32_t memoryTypeIndex;
} VkMemoryAllocateInfo;

typedef VkResult (*create_instance_fn)(const VkInstanceCreateInfo *, const void *, VkInstance *);
typedef VkResult (*enumerate_fn)(VkInstance, uint32_t *, VkPhysicalDevice *);
typedef VkResult (*create_device_fn)(VkPhysicalDevice, const VkDeviceCreateInfo *, const void *,
                                     VkDevice *);
typedef VkResult (*alloc_fn)(VkDevice, const VkMemoryAllocateInfo *, const void *,
                             VkDeviceMemory *);
typedef void (*free_fn)(VkDevice, VkDeviceMemory, const void *);
typedef PFN (*device_proc_fn)(VkDevice, const char *);

static VkDevice device;
static volatile VkDeviceMemory sink;

static void fail(const char *what, VkResult r) {
    printf("unexpected result: %s (%d)\n", what, r);
    exit(1);
}

static VkMemoryAllocateInfo info(uint64_t size) {
    VkMemoryAllocateInfo i = {5, NULL, size, 0};
    return i;
}

__attribute__((noinline)) static void real_exported(alloc_fn alloc) {
    VkMemoryAllocateInfo i = info(1 << 20);
    VkDeviceMemory m = 0;
    VkResult r = alloc(device, &i, NULL, &m);
    if (r != 0 || !m)
        fail("exported vkAllocateMemory", r);
    sink = m;
}

__attribute__((noinline)) static void real_device_proc(device_proc_fn gdpa) {
    alloc_fn alloc = (alloc_fn)gdpa(device, "vkAllocateMemory");
    free_fn release = (free_fn)gdpa(device, "vkFreeMemory");
    if (!alloc || !release)
        fail("vkGetDeviceProcAddr", -1);
    VkMemoryAllocateInfo i = info(4 << 20);
    VkDeviceMemory m = 0;
    VkResult r = alloc(device, &i, NULL, &m);
    if (r != 0 || !m)
        fail("4 MiB", r);
    release(device, m, NULL);
    i = info(2 << 20);
    r = alloc(device, &i, NULL, &m);
    if (r != 0 || !m)
        fail("2 MiB", r);
    sink = m;
}

int main(void) {
    void *h = dlopen("libvulkan.so.1", RTLD_NOW);
    if (!h) {
        printf("skip: no Vulkan loader (%s)\n", dlerror());
        return 0;
    }
    create_instance_fn create_instance = (create_instance_fn)dlsym(h, "vkCreateInstance");
    enumerate_fn enumerate = (enumerate_fn)dlsym(h, "vkEnumeratePhysicalDevices");
    create_device_fn create_device = (create_device_fn)dlsym(h, "vkCreateDevice");
    alloc_fn exported = (alloc_fn)dlsym(h, "vkAllocateMemory");
    device_proc_fn gdpa = (device_proc_fn)dlsym(h, "vkGetDeviceProcAddr");
    if (!create_instance || !enumerate || !create_device || !exported || !gdpa)
        fail("dlsym", -1);
    VkApplicationInfo app = {0, NULL, "memtally test", 1, "none", 1, (1u << 22) | (1u << 12)};
    VkInstanceCreateInfo ici = {1, NULL, 0, &app, 0, NULL, 0, NULL};
    VkInstance instance = NULL;
    VkResult r = create_instance(&ici, NULL, &instance);
    if (r != 0) {
        printf("skip: vkCreateInstance %d (no driver)\n", r);
        return 0;
    }
    uint32_t n = 1;
    VkPhysicalDevice physical = NULL;
    r = enumerate(instance, &n, &physical);
    if ((r != 0 && r != 5 /* VK_INCOMPLETE */) || n == 0) {
        printf("skip: no physical device (%d)\n", r);
        return 0;
    }
    float priority = 1.0f;
    VkDeviceQueueCreateInfo q = {2, NULL, 0, 0, 1, &priority};
    VkDeviceCreateInfo dci = {3, NULL, 0, 1, &q, 0, NULL, 0, NULL, NULL};
    r = create_device(physical, &dci, NULL, &device);
    if (r != 0)
        fail("vkCreateDevice", r);
    real_exported(exported);
    real_device_proc(gdpa);
    printf("done\n");
    return 0;
}
