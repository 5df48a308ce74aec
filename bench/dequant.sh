#!/bin/sh
# Builds and runs bench/dequant.c (single-thread dequantization GB/s vs memcpy).
# Env: BUILD (build dir, default build), CC (default cc). Args go to the binary
# (MiB of float32 output, default 64).
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CC=${CC:-cc}
make -s BUILD="$BUILD" CC="$CC" "$BUILD/libfm_formats.a"
mkdir -p "$BUILD/bench"
$CC -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror -Wshadow \
    -Wstrict-prototypes -Wmissing-prototypes -ffp-contract=off -O2 -I. \
    -o "$BUILD/bench/dequant" bench/dequant.c "$BUILD/libfm_formats.a" -lm
"$BUILD/bench/dequant" "$@"
