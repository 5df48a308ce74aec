#!/bin/sh
# Builds and runs bench/matmul.c (fm_matmul GFLOP/s and weight GB/s, n = 1 and
# 64, 1 and 2 threads, weights in cache and streaming from DRAM).
# Env: BUILD (build dir, default build), CC (default cc); FM_BENCH_GGML (path
# of llama.cpp's libggml-cpu.so to also time llama.cpp's kernels; default:
# llama-cpp-python's copy in /work/venv when present). Args go to the binary
# (weight type names, default Q4_K Q6_K Q8_0 F32).
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CC=${CC:-cc}
make -s BUILD="$BUILD" CC="$CC" "$BUILD/libfm_runtime.a" "$BUILD/libfm_formats.a"
mkdir -p "$BUILD/bench"
$CC -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror -Wshadow \
    -Wstrict-prototypes -Wmissing-prototypes -ffp-contract=off -O2 -I. -pthread \
    -o "$BUILD/bench/matmul" bench/matmul.c "$BUILD/libfm_runtime.a" "$BUILD/libfm_formats.a" -lm -ldl -pthread
if [ -z "${FM_BENCH_GGML+set}" ]; then
  for d in /work/venv/lib/python3*/site-packages/llama_cpp/lib; do
    [ -e "$d/libggml-cpu.so" ] && FM_BENCH_GGML=$d/libggml-cpu.so
  done
fi
export FM_BENCH_GGML
"$BUILD/bench/matmul" "$@"
