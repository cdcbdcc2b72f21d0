/* fake_opencl.c: a stand-in for the OpenCL ICD loader, libOpenCL.so.1, with
 * one platform and one device whose "device memory" is host memory, for
 * tests on machines without an OpenCL implementation.
 *
 * Build (as the other stand-ins: -Bsymbolic and hidden visibility, so the
 * library's calls to itself stay inside it, as in a real implementation):
 *   cc -O1 -g -shared -fPIC -fvisibility=hidden -Wl,-Bsymbolic \
 *      -Wl,-soname,libOpenCL.so.1 -o libOpenCL.so.1 fake_opencl.c -pthread
 *
 * Memory objects are reference counted as the specification says:
 * clRetainMemObject adds a reference, clReleaseMemObject drops one, and at
 * the last the object's destructor callbacks run (in the reverse order of
 * their registration, on the releasing thread) and the object is gone. A
 * sub-buffer holds a reference to its parent. SVM allocations are freed by
 * clSVMFree, or by clEnqueueSVMFree (here at once).
 *
 * FAKE_CL_LEDGER names a file for a JSON line per event:
 *   {"op":"create","fn":"clCreateBuffer","ptr":"0x..","size":1048576}
 *   {"op":"destroy","fn":"clReleaseMemObject","ptr":"0x..","size":1048576}
 *   {"op":"svm_alloc","fn":"clSVMAlloc","ptr":"0x..","size":65536}
 *   {"op":"svm_free","fn":"clSVMFree","ptr":"0x..","size":65536}
 * ("size" is the object's size; a sub-buffer's is its region's). Objects
 * and buffers come from mmap, never malloc. */
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

typedef int32_t cl_int;
typedef uint32_t cl_uint;
typedef uint64_t cl_ulong;
typedef cl_ulong cl_mem_flags;
typedef cl_ulong cl_svm_mem_flags;
typedef cl_ulong cl_mem_properties;
typedef struct fake_object *cl_mem;
typedef struct fake_object *cl_context;
typedef struct fake_object *cl_platform_id;
typedef struct fake_object *cl_device_id;
typedef struct fake_object *cl_command_queue;

#define CL_SUCCESS 0
#define CL_INVALID_VALUE -30
#define CL_INVALID_MEM_OBJECT -38
#define CL_INVALID_BUFFER_SIZE -61
#define CL_MEM_OBJECT_ALLOCATION_FAILURE -4

#define MAX_CALLBACKS 8

struct fake_object {
    int refs;
    size_t size;
    void *data;
    struct fake_object *parent; /* sub-buffers */
    int ncallbacks;
    void (*callbacks[MAX_CALLBACKS])(cl_mem, void *);
    void *user[MAX_CALLBACKS];
};

static struct fake_object platform, device, queue;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int ledger_fd = -2;
static long live_objects;

static void *take(size_t n) {
    void *p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void give(void *p, size_t n) { munmap(p, n ? n : 1); }

static void ledger(const char *op, const char *fn, const void *p, size_t size) {
    pthread_mutex_lock(&lock);
    if (ledger_fd == -2) {
        const char *f = getenv("FAKE_CL_LEDGER");
        ledger_fd = f && *f ? open(f, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
    }
    if (ledger_fd >= 0) {
        char line[256];
        int n = snprintf(line, sizeof line,
                         "{\"op\":\"%s\",\"fn\":\"%s\",\"ptr\":\"%p\",\"size\":%zu}\n", op, fn,
                         p, size);
        if (n > 0 && (size_t)n < sizeof line && write(ledger_fd, line, (size_t)n) != n)
            ledger_fd = -1;
    }
    pthread_mutex_unlock(&lock);
}

static void set(cl_int *err, cl_int v) {
    if (err)
        *err = v;
}

EXPORT cl_int clGetPlatformIDs(cl_uint n, cl_platform_id *out, cl_uint *count) {
    if (count)
        *count = 1;
    if (n && out)
        out[0] = &platform;
    return CL_SUCCESS;
}

EXPORT cl_int clGetDeviceIDs(cl_platform_id p, cl_ulong type, cl_uint n, cl_device_id *out,
                             cl_uint *count) {
    (void)p;
    (void)type;
    if (count)
        *count = 1;
    if (n && out)
        out[0] = &device;
    return CL_SUCCESS;
}

EXPORT cl_context clCreateContext(const intptr_t *props, cl_uint n, const cl_device_id *devices,
                                  void *notify, void *user, cl_int *err) {
    (void)props;
    (void)n;
    (void)devices;
    (void)notify;
    (void)user;
    cl_context c = take(sizeof *c);
    if (c)
        c->refs = 1;
    set(err, c ? CL_SUCCESS : CL_MEM_OBJECT_ALLOCATION_FAILURE);
    return c;
}

EXPORT cl_int clReleaseContext(cl_context c) {
    if (c && --c->refs == 0)
        give(c, sizeof *c);
    return CL_SUCCESS;
}

static cl_mem create(const char *fn, size_t size, cl_mem parent, cl_int *err) {
    if (!size) {
        set(err, CL_INVALID_BUFFER_SIZE);
        return NULL;
    }
    cl_mem m = take(sizeof *m);
    void *data = parent ? NULL : take(size);
    if (!m || (!parent && !data)) {
        if (m)
            give(m, sizeof *m);
        set(err, CL_MEM_OBJECT_ALLOCATION_FAILURE);
        return NULL;
    }
    memset(m, 0, sizeof *m);
    m->refs = 1;
    m->size = size;
    m->data = data;
    m->parent = parent;
    if (parent) {
        pthread_mutex_lock(&lock);
        parent->refs++;
        pthread_mutex_unlock(&lock);
    }
    __atomic_add_fetch(&live_objects, 1, __ATOMIC_RELAXED);
    ledger("create", fn, m, size);
    set(err, CL_SUCCESS);
    return m;
}

EXPORT cl_mem clCreateBuffer(cl_context c, cl_mem_flags flags, size_t size, void *host,
                             cl_int *err) {
    (void)c;
    (void)flags;
    (void)host;
    return create("clCreateBuffer", size, NULL, err);
}

EXPORT cl_mem clCreateBufferWithProperties(cl_context c, const cl_mem_properties *props,
                                           cl_mem_flags flags, size_t size, void *host,
                                           cl_int *err) {
    (void)c;
    (void)props;
    (void)flags;
    (void)host;
    return create("clCreateBufferWithProperties", size, NULL, err);
}

/* info: {origin, size} for CL_BUFFER_CREATE_TYPE_REGION. */
EXPORT cl_mem clCreateSubBuffer(cl_mem parent, cl_mem_flags flags, cl_uint type,
                                const void *info, cl_int *err) {
    (void)flags;
    (void)type;
    const size_t *region = info;
    if (!parent || !region || region[0] + region[1] > parent->size) {
        set(err, CL_INVALID_VALUE);
        return NULL;
    }
    return create("clCreateSubBuffer", region[1], parent, err);
}

EXPORT cl_int clRetainMemObject(cl_mem m) {
    if (!m)
        return CL_INVALID_MEM_OBJECT;
    pthread_mutex_lock(&lock);
    m->refs++;
    pthread_mutex_unlock(&lock);
    return CL_SUCCESS;
}

EXPORT cl_int clSetMemObjectDestructorCallback(cl_mem m, void (*cb)(cl_mem, void *),
                                               void *user) {
    if (!m || !cb)
        return CL_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    if (m->ncallbacks == MAX_CALLBACKS) {
        pthread_mutex_unlock(&lock);
        return CL_INVALID_VALUE;
    }
    m->callbacks[m->ncallbacks] = cb;
    m->user[m->ncallbacks] = user;
    m->ncallbacks++;
    pthread_mutex_unlock(&lock);
    return CL_SUCCESS;
}

EXPORT cl_int clReleaseMemObject(cl_mem m) {
    if (!m)
        return CL_INVALID_MEM_OBJECT;
    pthread_mutex_lock(&lock);
    int last = --m->refs == 0;
    pthread_mutex_unlock(&lock);
    if (!last)
        return CL_SUCCESS;
    for (int i = m->ncallbacks - 1; i >= 0; i--)
        m->callbacks[i](m, m->user[i]);
    ledger("destroy", "clReleaseMemObject", m, m->size);
    __atomic_sub_fetch(&live_objects, 1, __ATOMIC_RELAXED);
    cl_mem parent = m->parent;
    if (m->data)
        give(m->data, m->size);
    give(m, sizeof *m);
    if (parent)
        return clReleaseMemObject(parent);
    return CL_SUCCESS;
}

/* SVM sizes, for the ledger's free lines. */
#define MAX_SVM 256
static struct {
    void *p;
    size_t size;
} svm[MAX_SVM];

EXPORT void *clSVMAlloc(cl_context c, cl_svm_mem_flags flags, size_t size, cl_uint alignment) {
    (void)c;
    (void)flags;
    (void)alignment;
    if (!size)
        return NULL;
    void *p = take(size);
    if (!p)
        return NULL;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_SVM; i++) {
        if (!svm[i].p) {
            svm[i].p = p;
            svm[i].size = size;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    ledger("svm_alloc", "clSVMAlloc", p, size);
    return p;
}

static void svm_free(const char *fn, void *p) {
    size_t size = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_SVM; i++) {
        if (svm[i].p == p) {
            size = svm[i].size;
            svm[i].p = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    if (!size)
        return;
    ledger("svm_free", fn, p, size);
    give(p, size);
}

EXPORT void clSVMFree(cl_context c, void *p) {
    (void)c;
    svm_free("clSVMFree", p);
}

EXPORT cl_command_queue clCreateCommandQueueWithProperties(cl_context c, cl_device_id d,
                                                           const cl_ulong *props, cl_int *err) {
    (void)c;
    (void)d;
    (void)props;
    set(err, CL_SUCCESS);
    return &queue;
}

/* Frees the pointers when the queue reaches the command: here, at once. */
EXPORT cl_int clEnqueueSVMFree(cl_command_queue q, cl_uint n, void *ptrs[],
                               void (*cb)(cl_command_queue, cl_uint, void *[], void *),
                               void *user, cl_uint nevents, const void *wait, void *event) {
    (void)nevents;
    (void)wait;
    (void)event;
    if (!ptrs || !n)
        return CL_INVALID_VALUE;
    if (cb) {
        cb(q, n, ptrs, user);
        return CL_SUCCESS;
    }
    for (cl_uint i = 0; i < n; i++)
        svm_free("clEnqueueSVMFree", ptrs[i]);
    return CL_SUCCESS;
}

/* Memory objects not yet destroyed (a test hook). */
EXPORT long fakeClLiveObjects(void) { return __atomic_load_n(&live_objects, __ATOMIC_RELAXED); }
