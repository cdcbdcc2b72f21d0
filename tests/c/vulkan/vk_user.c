/* vk_user.c (T18): device memory through the stand-in Vulkan loader, the
 * three ways programs call vkAllocateMemory:
 *   cc -O1 -g -fno-omit-frame-pointer vk_user.c -o vk_user \
 *      -L. -lvulkan -Wl,-rpath,'$ORIGIN'
 * - vk_exported: the loader's export (linked): 1 MiB kept;
 * - vk_device_proc: the driver's function from vkGetDeviceProcAddr (as
 *   volk and engines do): 4 MiB allocated and freed, 2 MiB kept;
 * - vk_instance_proc: vkGetDeviceProcAddr itself found through
 *   vkGetInstanceProcAddr, then as above: 512 KiB allocated and freed;
 * - vk_too_big: 8 GiB fails (FAKE_VK_HEAP, 1 GiB).
 * Live at exit: 3 MiB. Prints "done". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int32_t VkResult;
typedef struct h *VkInstance, *VkPhysicalDevice, *VkDevice;
typedef struct m *VkDeviceMemory;
typedef void (*PFN_vkVoidFunction)(void);
typedef struct {
    int32_t sType;
    const void *pNext;
    uint64_t allocationSize;
    uint32_t memoryTypeIndex;
} VkMemoryAllocateInfo;
typedef VkResult (*alloc_fn)(VkDevice, const VkMemoryAllocateInfo *, const void *,
                             VkDeviceMemory *);
typedef void (*free_fn)(VkDevice, VkDeviceMemory, const void *);
typedef PFN_vkVoidFunction (*device_proc_fn)(VkDevice, const char *);

VkResult vkCreateInstance(const void *, const void *, VkInstance *);
VkResult vkEnumeratePhysicalDevices(VkInstance, uint32_t *, VkPhysicalDevice *);
VkResult vkCreateDevice(VkPhysicalDevice, const void *, const void *, VkDevice *);
VkResult vkAllocateMemory(VkDevice, const VkMemoryAllocateInfo *, const void *, VkDeviceMemory *);
PFN_vkVoidFunction vkGetDeviceProcAddr(VkDevice, const char *);
PFN_vkVoidFunction vkGetInstanceProcAddr(VkInstance, const char *);

#define MEMORY_ALLOCATE_INFO 5

static VkInstance instance;
static VkDevice device;
static VkDeviceMemory volatile sink;

static void check(int ok, const char *what) {
    if (!ok) {
        if (write(1, what, strlen(what)) < 0)
            exit(1);
        exit(1);
    }
}

static VkMemoryAllocateInfo info(uint64_t size) {
    VkMemoryAllocateInfo i = {MEMORY_ALLOCATE_INFO, NULL, size, 0};
    return i;
}

__attribute__((noinline)) static void vk_exported(void) {
    VkMemoryAllocateInfo i = info(1 << 20);
    VkDeviceMemory m = NULL;
    check(vkAllocateMemory(device, &i, NULL, &m) == 0 && m, "exported 1 MiB\n");
    sink = m;
}

__attribute__((noinline)) static void vk_device_proc(void) {
    alloc_fn alloc = (alloc_fn)vkGetDeviceProcAddr(device, "vkAllocateMemory");
    free_fn release = (free_fn)vkGetDeviceProcAddr(device, "vkFreeMemory");
    check(alloc && release, "device proc\n");
    VkMemoryAllocateInfo i = info(4 << 20);
    VkDeviceMemory m = NULL;
    check(alloc(device, &i, NULL, &m) == 0 && m, "device proc 4 MiB\n");
    release(device, m, NULL);
    i = info(2 << 20);
    check(alloc(device, &i, NULL, &m) == 0 && m, "device proc 2 MiB\n");
    sink = m;
}

__attribute__((noinline)) static void vk_instance_proc(void) {
    device_proc_fn gdpa = (device_proc_fn)vkGetInstanceProcAddr(instance, "vkGetDeviceProcAddr");
    check(gdpa != NULL, "instance proc\n");
    alloc_fn alloc = (alloc_fn)gdpa(device, "vkAllocateMemory");
    free_fn release = (free_fn)gdpa(device, "vkFreeMemory");
    check(alloc && release, "instance proc functions\n");
    VkMemoryAllocateInfo i = info(512 << 10);
    VkDeviceMemory m = NULL;
    check(alloc(device, &i, NULL, &m) == 0 && m, "instance proc 512 KiB\n");
    release(device, m, NULL);
}

__attribute__((noinline)) static void vk_too_big(void) {
    alloc_fn alloc = (alloc_fn)vkGetDeviceProcAddr(device, "vkAllocateMemory");
    VkMemoryAllocateInfo i = info(8ULL << 30);
    VkDeviceMemory m = NULL;
    check(alloc(device, &i, NULL, &m) == -2 && !m, "8 GiB fails\n");
}

int main(void) {
    check(vkCreateInstance(NULL, NULL, &instance) == 0, "instance\n");
    uint32_t n = 1;
    VkPhysicalDevice physical;
    check(vkEnumeratePhysicalDevices(instance, &n, &physical) == 0 && n == 1, "physical\n");
    check(vkCreateDevice(physical, NULL, NULL, &device) == 0, "device\n");
    vk_exported();
    vk_device_proc();
    vk_instance_proc();
    vk_too_big();
    check(write(1, "done\n", 5) == 5, "write\n");
    return 0;
}
