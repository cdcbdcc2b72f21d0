#!/bin/sh
# Builds the GPU test fixtures into the directory given as $1, with the same
# commands the Rust tests run. For manual checking:
#   tests/c/gpu/build.sh /tmp/gpufix
#   LD_LIBRARY_PATH=/tmp/gpufix FAKE_CUDA_LEDGER=/tmp/gpufix/ledger.jsonl \
#       /tmp/gpufix/cuda_direct
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
src=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
cd "$out"

CC=${CC:-cc}
PROG="-O1 -g -fno-omit-frame-pointer"

set -x

# The fake driver, libcuda.so.1, plus the libcuda.so link-time name that
# -lcuda looks for (the real driver package installs the same symlink).
$CC -O1 -g -shared -fPIC -fvisibility=hidden -Wl,-Bsymbolic -Wl,-soname,libcuda.so.1 \
    -o libcuda.so.1 "$src/fake_cuda.c" -pthread
ln -sf libcuda.so.1 libcuda.so

# The mini runtime, shared and static.
$CC -O1 -g -shared -fPIC -fvisibility=hidden -Wl,-Bsymbolic \
    -o libcudart_mini.so "$src/mini_cudart.c" -ldl -pthread
$CC -O1 -g -c -fPIC -fvisibility=hidden -o mini_cudart.o "$src/mini_cudart.c"
rm -f libcudart_mini.a
ar rcs libcudart_mini.a mini_cudart.o

# Test programs.
$CC $PROG "$src/cuda_direct.c" -o cuda_direct -L. -lcuda -Wl,-rpath,'$ORIGIN'
$CC $PROG "$src/cuda_dlsym.c" -o cuda_dlsym -ldl
$CC $PROG "$src/cuda_procaddr.c" -o cuda_procaddr -ldl
$CC $PROG "$src/cudart_user.c" -o cudart_user_dyn -L. -lcudart_mini -Wl,-rpath,'$ORIGIN'
$CC $PROG "$src/cudart_user.c" -o cudart_user_static libcudart_mini.a -ldl -pthread
$CC $PROG "$src/cuda_arrays.c" -o cuda_arrays -L. -lcuda -Wl,-rpath,'$ORIGIN'
$CC $PROG "$src/cuda_imports.c" -o cuda_imports -L. -lcuda -Wl,-rpath,'$ORIGIN'
$CC $PROG "$src/cuda_vmm.c" -o cuda_vmm -L. -lcuda -ldl -Wl,-rpath,'$ORIGIN'
$CC -O1 -g -shared -fPIC -fvisibility=hidden -Wl,-Bsymbolic -Wl,-soname,libnccl.so.2 \
    -o libnccl.so.2 "$src/fake_nccl.c" -ldl -pthread
ln -sf libnccl.so.2 libnccl.so
$CC $PROG "$src/nccl_user.c" -o nccl_user -L. -lnccl -lcuda -Wl,-rpath,'$ORIGIN'
$CC $PROG "$src/cuda_fork.c" -o cuda_fork -L. -lcuda -pthread -Wl,-rpath,'$ORIGIN'
$CC -O1 -g -shared -fPIC -DEARLY_LIBRARY "$src/cuda_early.c" -o libearly.so -L. -lcuda
$CC $PROG "$src/cuda_early.c" -o cuda_early -L. -lcuda -ldl -Wl,-rpath,'$ORIGIN'
$CC $PROG "$src/cuda_threads.c" -o cuda_threads -L. -lcuda -ldl -pthread -Wl,-rpath,'$ORIGIN'

# RTLD_NEXT / dlvsym fixture.
# OpenCL, Vulkan and RDMA stand-ins.
$CC -O1 -g -shared -fPIC -fvisibility=hidden -Wl,-Bsymbolic -Wl,-soname,libOpenCL.so.1 \
    -o libOpenCL.so.1 "$src/../opencl/fake_opencl.c" -pthread
ln -sf libOpenCL.so.1 libOpenCL.so
$CC $PROG "$src/../opencl/cl_user.c" -o cl_user -L. -lOpenCL -ldl -Wl,-rpath,'$ORIGIN'
$CC -O1 -g -shared -fPIC -fvisibility=hidden -Wl,-Bsymbolic -Wl,-soname,libvulkan.so.1 \
    -o libvulkan.so.1 "$src/../vulkan/fake_vulkan.c" -pthread
ln -sf libvulkan.so.1 libvulkan.so
$CC $PROG "$src/../vulkan/vk_user.c" -o vk_user -L. -lvulkan -Wl,-rpath,'$ORIGIN'
$CC -O1 -g -shared -fPIC -fvisibility=hidden -Wl,-Bsymbolic -Wl,--version-script="$src/../rdma/libibverbs.map" \
    -Wl,-soname,libibverbs.so.1 -o libibverbs.so.1 "$src/../rdma/fake_ibverbs.c"
ln -sf libibverbs.so.1 libibverbs.so
$CC $PROG "$src/../rdma/rdma_user.c" -o rdma_user -L. -libverbs -ldl -Wl,-rpath,'$ORIGIN'

$CC -O1 -g -shared -fPIC -o liba.so "$src/rtld_next/liba.c" -ldl
$CC -O1 -g -shared -fPIC -Wl,--version-script="$src/rtld_next/libb.map" \
    -o libb.so "$src/rtld_next/libb.c"
# --no-as-needed: main references nothing in libb, and a toolchain that
# links --as-needed by default (Debian, Ubuntu) would drop it.
$CC $PROG "$src/rtld_next/main.c" -o rtld_next_main -L. -Wl,--no-as-needed -la -lb -ldl \
    -Wl,-rpath,'$ORIGIN'
