#!/usr/bin/env bash
# Sets muonrun up and builds it; safe to run again (it only does what is missing).
#
#   launch/setup.sh            # install missing packages, configure, build into build/
#   BUILD_DIR=b launch/setup.sh
#   FUZZ=1 launch/setup.sh     # also clang and the libFuzzer targets, into build-fuzz/
#
# Works on a fresh Debian 12 / Ubuntu machine (installs packages with apt,
# LibTorch 1.13 CPU from Debian) and on machines where everything is already
# installed and there is no network (LibTorch then comes from the Python torch
# package, e.g. 2.x with CUDA; CUDA and NCCL switch on by themselves).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
FUZZ=${FUZZ:-0}
FUZZ_BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}

# Debian package -> a file that proves it is installed.
declare -A NEEDED=(
  [cmake]=/usr/bin/cmake
  [ninja-build]=/usr/bin/ninja
  [g++]=/usr/bin/g++
  [pkg-config]=/usr/bin/pkg-config
  [libopenmpi-dev]=/usr/bin/mpicxx
  [openmpi-bin]=/usr/bin/mpirun
  [libspdlog-dev]=/usr/include/spdlog/spdlog.h
  [libyaml-cpp-dev]=/usr/include/yaml-cpp/yaml.h
  [libgtest-dev]=/usr/include/gtest/gtest.h
  [libcli11-dev]=/usr/include/CLI/CLI.hpp
  [libpcre2-dev]=/usr/include/pcre2.h
  [liblzma-dev]=/usr/include/lzma.h
  [zlib1g-dev]=/usr/include/zlib.h
  [xz-utils]=/usr/bin/xz
  [python3-regex]=/usr/lib/python3/dist-packages/regex
)

# The fuzzers need Debian's clang and its libFuzzer runtime.
if [ "$FUZZ" = 1 ]; then
  NEEDED[clang-14]=/usr/bin/clang++-14
  NEEDED[libclang-rt-14-dev]=/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a
fi

# LibTorch: the Python torch package if it brings one (GPU machines), else Debian's.
TORCH_PREFIX=""
if python3 -c 'import torch' 2>/dev/null; then
  TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
  echo "setup: LibTorch from the Python torch package: $TORCH_PREFIX"
else
  NEEDED[libtorch-dev]=/usr/include/torch/csrc/api/include/torch/torch.h
  # Headers of the Gloo library that Debian's LibTorch was built with (CPU
  # collectives for runs launched by torchrun or Slurm without MPI).
  NEEDED[libgloo-dev]=/usr/include/gloo/rendezvous/store.h
  # Without OpenBLAS, LibTorch's fp32 matmul falls back to reference BLAS (~15x slower).
  NEEDED[libopenblas0-pthread]=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3
fi
# A Python regex module from pip serves the tokenizer test as well as Debian's.
if python3 -c 'import regex' 2>/dev/null; then unset 'NEEDED[python3-regex]'; fi
# Tools that may live outside /usr/bin (e.g. cmake and ninja from pip).
for tool in cmake:cmake ninja:ninja-build; do
  if command -v "${tool%%:*}" >/dev/null; then unset "NEEDED[${tool#*:}]"; fi
done

missing=()
for pkg in "${!NEEDED[@]}"; do
  [ -e "${NEEDED[$pkg]}" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; then
    echo "setup: could not install: ${missing[*]} (no network or no apt?). Install them and run again." >&2
    if [ "$FUZZ" = 1 ]; then echo "setup: FUZZ=0 skips the fuzzers and their clang." >&2; fi
    exit 1
  fi
fi

cmake_args=(-S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE")
[ -n "$TORCH_PREFIX" ] && cmake_args+=(-DCMAKE_PREFIX_PATH="$TORCH_PREFIX")
mkdir -p "$BUILD_DIR"
cmake "${cmake_args[@]}" > "$BUILD_DIR/configure.log" 2>&1 || { cat "$BUILD_DIR/configure.log"; exit 1; }
grep 'muonrun:' "$BUILD_DIR/configure.log" || true
cmake --build "$BUILD_DIR"
echo "setup: built $BUILD_DIR/trainer/muonrun"

# The fuzz targets: clang with sanitizers, no LibTorch (tests/fuzz/).
if [ "$FUZZ" = 1 ]; then
  mkdir -p "$FUZZ_BUILD_DIR"
  cmake -S . -B "$FUZZ_BUILD_DIR" -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DMUONRUN_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMUONRUN_FUZZ_SMOKE_SECONDS="${FUZZ_SECONDS:-10}" \
    > "$FUZZ_BUILD_DIR/configure.log" 2>&1 || { cat "$FUZZ_BUILD_DIR/configure.log"; exit 1; }
  cmake --build "$FUZZ_BUILD_DIR"
  echo "setup: built the fuzzers in $FUZZ_BUILD_DIR/tests/fuzz/"
fi
