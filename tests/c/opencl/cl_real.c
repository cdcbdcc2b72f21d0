/* cl_real.c (T17 on a real implementation): pocl, the portable CPU OpenCL
 * (Debian's pocl-opencl-icd), through the ICD loader (ocl-icd), opened
 * with dlopen:
 *   cc -O1 -g -fno-omit-frame-pointer cl_real.c -o cl_real -ldl
 * - real_kept: a 1 MiB buffer, kept;
 * - real_retained: 2 MiB, retained, released twice;
 * - real_svm: 64 KiB of SVM kept, 32 KiB freed (when the device has SVM:
 *   prints "svm" then).
 * Prints "skip: ..." and exits 0 where there is no platform; "done"
 * otherwise. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef int32_t cl_int;
typedef uint32_t cl_uint;
typedef uint64_t cl_ulong;
typedef struct o *cl_mem, *cl_context, *cl_platform_id, *cl_device_id;

static cl_context ctx;
static void *volatile sink;
static cl_mem (*create_buffer)(cl_context, cl_ulong, size_t, void *, cl_int *);
static cl_int (*retain)(cl_mem);
static cl_int (*release)(cl_mem);
static void *(*svm_alloc)(cl_context, cl_ulong, size_t, cl_uint);
static void (*svm_free)(cl_context, void *);

static void fail(const char *what, cl_int e) {
    printf("unexpected result: %s (%d)\n", what, e);
    exit(1);
}

__attribute__((noinline)) static void real_kept(void) {
    cl_int e = 1;
    cl_mem m = create_buffer(ctx, 1 /* READ_WRITE */, 1 << 20, NULL, &e);
    if (!m || e)
        fail("clCreateBuffer 1 MiB", e);
    sink = m;
}

__attribute__((noinline)) static void real_retained(void) {
    cl_int e = 1;
    cl_mem m = create_buffer(ctx, 1, 2 << 20, NULL, &e);
    if (!m || e)
        fail("clCreateBuffer 2 MiB", e);
    if (retain(m) || release(m) || release(m))
        fail("retain/release", -1);
}

__attribute__((noinline)) static void real_svm(void) {
    void *kept = svm_alloc(ctx, 1, 64 << 10, 0);
    if (!kept)
        return;
    void *brief = svm_alloc(ctx, 1, 32 << 10, 0);
    if (!brief)
        fail("clSVMAlloc 32 KiB", -1);
    svm_free(ctx, brief);
    sink = kept;
    printf("svm\n");
}

int main(void) {
    void *h = dlopen("libOpenCL.so.1", RTLD_NOW);
    if (!h) {
        printf("skip: no OpenCL loader (%s)\n", dlerror());
        return 0;
    }
    cl_int (*platforms)(cl_uint, cl_platform_id *, cl_uint *) =
        (cl_int(*)(cl_uint, cl_platform_id *, cl_uint *))dlsym(h, "clGetPlatformIDs");
    cl_int (*devices)(cl_platform_id, cl_ulong, cl_uint, cl_device_id *, cl_uint *) =
        (cl_int(*)(cl_platform_id, cl_ulong, cl_uint, cl_device_id *, cl_uint *))dlsym(
            h, "clGetDeviceIDs");
    cl_context (*create_context)(const intptr_t *, cl_uint, const cl_device_id *, void *, void *,
                                 cl_int *) =
        (cl_context(*)(const intptr_t *, cl_uint, const cl_device_id *, void *, void *,
                       cl_int *))dlsym(h, "clCreateContext");
    *(void **)&create_buffer = dlsym(h, "clCreateBuffer");
    *(void **)&retain = dlsym(h, "clRetainMemObject");
    *(void **)&release = dlsym(h, "clReleaseMemObject");
    *(void **)&svm_alloc = dlsym(h, "clSVMAlloc");
    *(void **)&svm_free = dlsym(h, "clSVMFree");
    if (!platforms || !devices || !create_context || !create_buffer || !retain || !release ||
        !svm_alloc || !svm_free)
        fail("dlsym", -1);
    cl_platform_id p;
    cl_uint n = 0;
    if (platforms(1, &p, &n) || n == 0) {
        printf("skip: no OpenCL platform\n");
        return 0;
    }
    cl_device_id d;
    if (devices(p, 0xFFFFFFFF, 1, &d, &n) || n == 0) {
        printf("skip: no OpenCL device\n");
        return 0;
    }
    cl_int e = 1;
    ctx = create_context(NULL, 1, &d, NULL, NULL, &e);
    if (!ctx || e)
        fail("clCreateContext", e);
    real_kept();
    real_retained();
    real_svm();
    printf("done\n");
    return 0;
}
