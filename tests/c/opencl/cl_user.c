/* cl_user.c (T17): OpenCL buffers and SVM through the stand-in ICD loader:
 *   cc -O1 -g -fno-omit-frame-pointer cl_user.c -o cl_user \
 *      -L. -lOpenCL -ldl -Wl,-rpath,'$ORIGIN'
 * - cl_kept: a 1 MiB buffer never released;
 * - cl_retained: 2 MiB, retained then released twice: destroyed once, at
 *   the last release;
 * - cl_sub: a 512 KiB buffer and a 128 KiB sub-buffer of it; the parent
 *   released first lives on through the sub-buffer until it goes;
 * - cl_with_properties: 256 KiB from clCreateBufferWithProperties;
 * - cl_dlsym: 4 KiB through clCreateBuffer found with dlsym;
 * - svm_kept: 64 KiB of SVM kept; svm_freed: 32 KiB freed with clSVMFree;
 *   svm_enqueued: 16 KiB freed with clEnqueueSVMFree.
 * Live at exit: 1 MiB of buffers and 64 KiB of SVM. Prints "done". */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int32_t cl_int;
typedef uint32_t cl_uint;
typedef uint64_t cl_ulong;
typedef struct obj *cl_mem, *cl_context, *cl_platform_id, *cl_device_id, *cl_command_queue;

cl_int clGetPlatformIDs(cl_uint, cl_platform_id *, cl_uint *);
cl_int clGetDeviceIDs(cl_platform_id, cl_ulong, cl_uint, cl_device_id *, cl_uint *);
cl_context clCreateContext(const intptr_t *, cl_uint, const cl_device_id *, void *, void *,
                           cl_int *);
cl_mem clCreateBuffer(cl_context, cl_ulong, size_t, void *, cl_int *);
cl_mem clCreateBufferWithProperties(cl_context, const cl_ulong *, cl_ulong, size_t, void *,
                                    cl_int *);
cl_mem clCreateSubBuffer(cl_mem, cl_ulong, cl_uint, const void *, cl_int *);
cl_int clRetainMemObject(cl_mem);
cl_int clReleaseMemObject(cl_mem);
void *clSVMAlloc(cl_context, cl_ulong, size_t, cl_uint);
void clSVMFree(cl_context, void *);
cl_command_queue clCreateCommandQueueWithProperties(cl_context, cl_device_id, const cl_ulong *,
                                                    cl_int *);
cl_int clEnqueueSVMFree(cl_command_queue, cl_uint, void *[], void *, void *, cl_uint,
                        const void *, void *);

static void *volatile sink;
static cl_context ctx;
static cl_device_id dev;

static void check(int ok, const char *what) {
    if (!ok) {
        if (write(1, what, strlen(what)) < 0)
            exit(1);
        exit(1);
    }
}

__attribute__((noinline)) static void cl_kept(void) {
    cl_int err = 1;
    cl_mem m = clCreateBuffer(ctx, 1, 1 << 20, NULL, &err);
    check(m && err == 0, "create 1 MiB\n");
    sink = m;
}

__attribute__((noinline)) static void cl_retained(void) {
    cl_int err = 1;
    cl_mem m = clCreateBuffer(ctx, 1, 2 << 20, NULL, &err);
    check(m && err == 0, "create 2 MiB\n");
    check(clRetainMemObject(m) == 0, "retain\n");
    check(clReleaseMemObject(m) == 0, "release 1\n");
    check(clReleaseMemObject(m) == 0, "release 2\n");
}

__attribute__((noinline)) static void cl_sub(void) {
    cl_int err = 1;
    cl_mem parent = clCreateBuffer(ctx, 1, 512 << 10, NULL, &err);
    check(parent && err == 0, "create parent\n");
    size_t region[2] = {4096, 128 << 10};
    cl_mem sub = clCreateSubBuffer(parent, 1, 0x1220, region, &err);
    check(sub && err == 0, "sub-buffer\n");
    check(clReleaseMemObject(parent) == 0, "release parent\n");
    check(clReleaseMemObject(sub) == 0, "release sub\n");
}

__attribute__((noinline)) static void cl_with_properties(void) {
    cl_int err = 1;
    cl_mem m = clCreateBufferWithProperties(ctx, NULL, 1, 256 << 10, NULL, &err);
    check(m && err == 0, "create with properties\n");
    check(clReleaseMemObject(m) == 0, "release\n");
}

__attribute__((noinline)) static void cl_dlsym(void) {
    void *h = dlopen("libOpenCL.so.1", RTLD_NOW);
    check(h != NULL, "dlopen\n");
    cl_mem (*create)(cl_context, cl_ulong, size_t, void *, cl_int *) =
        (cl_mem(*)(cl_context, cl_ulong, size_t, void *, cl_int *))dlsym(h, "clCreateBuffer");
    check(create != NULL, "dlsym\n");
    cl_int err = 1;
    cl_mem m = create(ctx, 1, 4096, NULL, &err);
    check(m && err == 0, "dlsym create\n");
    check(clReleaseMemObject(m) == 0, "dlsym release\n");
}

__attribute__((noinline)) static void svm_kept(void) {
    void *p = clSVMAlloc(ctx, 1, 64 << 10, 0);
    check(p != NULL, "svm 64 KiB\n");
    sink = p;
}

__attribute__((noinline)) static void svm_freed(void) {
    void *p = clSVMAlloc(ctx, 1, 32 << 10, 0);
    check(p != NULL, "svm 32 KiB\n");
    clSVMFree(ctx, p);
}

__attribute__((noinline)) static void svm_enqueued(void) {
    cl_int err = 1;
    cl_command_queue q = clCreateCommandQueueWithProperties(ctx, dev, NULL, &err);
    void *p = clSVMAlloc(ctx, 1, 16 << 10, 0);
    check(q && p, "svm 16 KiB\n");
    void *ptrs[1] = {p};
    check(clEnqueueSVMFree(q, 1, ptrs, NULL, NULL, 0, NULL, NULL) == 0, "enqueue free\n");
}

int main(void) {
    cl_platform_id platform;
    cl_int err = 1;
    check(clGetPlatformIDs(1, &platform, NULL) == 0, "platform\n");
    check(clGetDeviceIDs(platform, 0xffffffff, 1, &dev, NULL) == 0, "device\n");
    ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    check(ctx && err == 0, "context\n");
    cl_kept();
    cl_retained();
    cl_sub();
    cl_with_properties();
    cl_dlsym();
    svm_kept();
    svm_freed();
    svm_enqueued();
    check(write(1, "done\n", 5) == 5, "write\n");
    return 0;
}
