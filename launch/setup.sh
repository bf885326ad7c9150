#!/usr/bin/env bash
# Sets muonrun up and builds it; safe to run again (it only does what is missing).
#
#   launch/setup.sh              # packages, Python torch, the CPU build in build/
#   CUDA=1 launch/setup.sh       # the CUDA build (sm_90a, NCCL) in build-cuda/
#   FUZZ=1 launch/setup.sh       # also clang and the libFuzzer targets, in build-fuzz/
#   BUILD_DIR=b BUILD_TYPE=Debug launch/setup.sh
#   TARGETS="muonrun bench_step" launch/setup.sh   # build these targets only
#   PACKAGES=check launch/setup.sh   # only say which packages are present or missing
#   PACKAGES=skip launch/setup.sh    # install nothing; configure and build with what is there
#
# LibTorch is the one of the Python `torch` package, pinned to 2.11.0 (the GPU
# machine's version), in a virtual environment of the checkout (.venv, with
# numpy, tiktoken and safetensors for the tests' references). Where the
# `python3` on PATH already has torch 2.11 (the GPU machine: no network) it is
# used as it is and nothing is installed. An unzipped LibTorch distribution
# can be built against instead: Torch_DIR=/path/libtorch/share/cmake/Torch.
#
# Missing packages are installed with apt only when apt's sources answer (an
# update with 5-second timeouts and no retries); on a machine without network
# setup installs the development files of those carried as .deb files in
# $OFFLINE_PACKAGES (default .packages; launch/offline_packages.sh), says what
# is still missing ("setup: WARNING: ...") and goes on to the configure, which
# names any library the build cannot do without.
#
# Exit status: 0 built; 3 the package step failed (an apt install, or no
# Python with torch 2.11 and no way to install it): nothing was configured;
# anything else: the configure or the build failed.
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA=${CUDA:-0}
FUZZ=${FUZZ:-0}
PACKAGES=${PACKAGES:-install}
TARGETS=${TARGETS:-}
OFFLINE_PACKAGES=${OFFLINE_PACKAGES:-.packages}
case "$PACKAGES" in install|check|skip) ;; *) echo "setup: PACKAGES=$PACKAGES: expected install, check or skip" >&2; exit 2 ;; esac
if [ "$CUDA" = 1 ]; then BUILD_DIR=${BUILD_DIR:-build-cuda}; else BUILD_DIR=${BUILD_DIR:-build}; fi
BUILD_TYPE=${BUILD_TYPE:-Release}
FUZZ_BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
TORCH_VERSION=2.11.0
PIP_PACKAGES=("torch==$TORCH_VERSION" numpy tiktoken safetensors)

# Debian package -> a file that proves it is installed, and the group whose
# apt output gets one line.
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
)
declare -A GROUP=(
  [cmake]="build tools" [ninja-build]="build tools" [g++]="build tools" [pkg-config]="build tools"
  [libopenmpi-dev]=MPI [openmpi-bin]=MPI
  [libspdlog-dev]=libraries [libyaml-cpp-dev]=libraries [libgtest-dev]=libraries [libcli11-dev]=libraries
  [libpcre2-dev]=libraries [liblzma-dev]=libraries [zlib1g-dev]=libraries [libgloo-dev]=libraries
  [xz-utils]=tools [gnuplot-nox]=tools
  [python3]=Python [python3-venv]=Python
  [clang-14]=fuzzing [libclang-rt-14-dev]=fuzzing
)
# What only the CPU build and its tests use; the CUDA build (and the GPU
# machine, which has no network to install them) goes without:
# - Gloo lives inside LibTorch, but the pip package has no Gloo headers: c10d's
#   ProcessGroupGloo.hpp compiles against Debian's (CPU ranks under torchrun or
#   Slurm without MPI). GPU ranks use NCCL.
# - xz: the CPU tests make .xz inputs with it (prepare reads them with liblzma).
# - gnuplot: the PNGs of `muonrun compare` and sweep reports (without it they
#   write their tables only).
if [ "$CUDA" != 1 ]; then
  NEEDED[libgloo-dev]=/usr/include/gloo/rendezvous/store.h
  NEEDED[xz-utils]=/usr/bin/xz
  NEEDED[gnuplot-nox]=/usr/bin/gnuplot
fi
if [ "$FUZZ" = 1 ]; then  # Debian's clang and its libFuzzer runtime
  NEEDED[clang-14]=/usr/bin/clang++-14
  NEEDED[libclang-rt-14-dev]=/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a
fi
# Tools that may live outside /usr/bin (e.g. cmake and ninja from pip).
for tool in cmake:cmake ninja:ninja-build; do
  if command -v "${tool%%:*}" >/dev/null; then unset "NEEDED[${tool#*:}]"; fi
done

# The Python that brings LibTorch: the checkout's .venv, or a python3 that
# already has torch 2.11, or a new .venv.
# (The installed version from the package's metadata: importing torch takes
# seconds, tens of them on a loaded machine.)
has_torch() {
  "$1" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('torch').startswith('$TORCH_VERSION') else 1)" \
    2>/dev/null
}
PYTHON=""
if [ -x .venv/bin/python ] && has_torch .venv/bin/python; then
  PYTHON=$PWD/.venv/bin/python
elif command -v python3 >/dev/null && has_torch python3; then
  PYTHON=$(python3 -c 'import sys; print(sys.executable)')
else
  NEEDED[python3]=/usr/bin/python3
  # Debian's python3 makes virtual environments only with python3-venv.
  if ! python3 -c 'import ensurepip' 2>/dev/null; then NEEDED[python3-venv]=/usr/share/doc/python3-venv; fi
fi

missing=()
for pkg in "${!NEEDED[@]}"; do
  [ -e "${NEEDED[$pkg]}" ] || missing+=("$pkg")
done

warn() { echo "setup: WARNING: $*"; }
# exit 3: the package step failed and nothing was configured (see the top).
package_step_failed() {
  echo "setup: $*" >&2
  if [ "$FUZZ" = 1 ]; then echo "setup: FUZZ=0 skips the fuzzers and their clang." >&2; fi
  exit 3
}

if [ "$PACKAGES" = check ]; then
  echo "setup: packages of the $([ "$CUDA" = 1 ] && echo CUDA || echo CPU) build:"
  for pkg in $(printf '%s\n' "${!NEEDED[@]}" | sort); do
    if [ -e "${NEEDED[$pkg]}" ]; then state=present; else state=MISSING; fi
    printf '  %-20s %-8s %s\n' "$pkg" "$state" "${NEEDED[$pkg]}"
  done
  echo "setup: Python with torch $TORCH_VERSION: ${PYTHON:-MISSING (pip would install ${PIP_PACKAGES[*]} into .venv)}"
  [ -n "$PYTHON" ] || missing+=("torch==$TORCH_VERSION")
  echo "setup: missing: ${missing[*]:-nothing}"
  if [ ${#missing[@]} -gt 0 ]; then exit 3; fi
  exit 0
fi

# apt's sources answer when its update fetched anything ("Hit:" or "Get:"
# lines; without network it prints "Err:" lines and still exits 0). The short
# timeouts keep a machine without network from waiting on every source.
apt_answers() {
  echo "setup: apt: update (log in $BUILD_DIR/apt.log)"
  timeout 300 $SUDO apt-get update -o Acquire::Retries=0 -o Acquire::http::Timeout=5 \
    -o Acquire::https::Timeout=5 >> "$BUILD_DIR/apt.log" 2>&1
  grep -q -E '^(Hit|Get):' "$BUILD_DIR/apt.log"
}
# The same for pip's index, asked through the venv's own pip so that its
# configuration (index, mirrors, proxies) applies.
pip_index_answers() {
  timeout 30 .venv/bin/pip index versions pip --retries 0 --timeout 5 > /dev/null 2>&1
}

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  mkdir -p "$BUILD_DIR"
  : > "$BUILD_DIR/apt.log"
  if [ "$PACKAGES" = skip ]; then
    warn "not installing (PACKAGES=skip): ${missing[*]}; the configure below names what the build lacks"
  elif ! apt_answers; then
    # Without network: development files carried as .deb files (the GPU
    # machine; launch/offline_packages.sh).
    carried=()
    for pkg in "${missing[@]}"; do
      ls "$OFFLINE_PACKAGES/${pkg}"_*.deb > /dev/null 2>&1 && carried+=("$pkg")
    done
    if [ ${#carried[@]} -gt 0 ]; then
      echo "setup: apt's sources did not answer; development files of ${carried[*]} from $OFFLINE_PACKAGES"
      launch/offline_packages.sh install "$OFFLINE_PACKAGES" "${carried[@]}" ||
        package_step_failed "launch/offline_packages.sh install $OFFLINE_PACKAGES ${carried[*]} failed"
      still=()
      for pkg in "${missing[@]}"; do [ -e "${NEEDED[$pkg]}" ] || still+=("$pkg"); done
      missing=("${still[@]}")
    fi
    [ ${#missing[@]} -eq 0 ] ||
      warn "apt's sources did not answer (no network? $BUILD_DIR/apt.log): not installing ${missing[*]};" \
           "the configure below names what the build lacks"
  else
    # One apt-get and one line per group, in this order.
    for group in "build tools" MPI libraries tools Python fuzzing other; do
      pkgs=()
      for pkg in "${missing[@]}"; do [ "${GROUP[$pkg]:-other}" = "$group" ] && pkgs+=("$pkg"); done
      [ ${#pkgs[@]} -gt 0 ] || continue
      echo "setup: apt: $group: ${pkgs[*]}"
      if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" \
          >> "$BUILD_DIR/apt.log" 2>&1; then
        tail -20 "$BUILD_DIR/apt.log" >&2
        package_step_failed "apt could not install: ${pkgs[*]}. Install them and run again."
      fi
    done
  fi
fi

if [ -z "$PYTHON" ]; then
  if [ "$PACKAGES" = skip ]; then
    package_step_failed "no Python with torch $TORCH_VERSION, and PACKAGES=skip installs none"
  fi
  [ -x .venv/bin/python ] || python3 -m venv .venv || package_step_failed "python3 -m venv .venv failed"
  if ! pip_index_answers; then
    package_step_failed "no Python with torch $TORCH_VERSION, and pip's index did not answer within 5 s" \
      "(no network?): install ${PIP_PACKAGES[*]} or use a python3 that has them"
  fi
  echo "setup: pip: ${PIP_PACKAGES[*]} into .venv"
  mkdir -p "$BUILD_DIR"
  if ! .venv/bin/pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}" > "$BUILD_DIR/pip.log" 2>&1; then
    tail -20 "$BUILD_DIR/pip.log" >&2
    package_step_failed "pip could not install ${PIP_PACKAGES[*]}"
  fi
  PYTHON=$PWD/.venv/bin/python
  echo "setup: pip: done"
fi
echo "setup: Python $PYTHON, torch $("$PYTHON" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"

if [ -n "${Torch_DIR:-}" ]; then
  TORCH_PREFIX=$Torch_DIR
  echo "setup: LibTorch from Torch_DIR=$Torch_DIR"
else
  TORCH_PREFIX=$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')
fi

cmake_args=(-S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE"
            -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DMUONRUN_PYTHON="$PYTHON")
if [ "$CUDA" = 1 ]; then
  NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
  # TORCH_CUDA_ARCH_LIST keeps LibTorch's CMake from adding every architecture.
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0a}
  cmake_args+=(-DMUONRUN_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}")
else
  cmake_args+=(-DMUONRUN_CUDA=OFF)
fi
mkdir -p "$BUILD_DIR"
cmake "${cmake_args[@]}" > "$BUILD_DIR/configure.log" 2>&1 || { cat "$BUILD_DIR/configure.log"; exit 1; }
grep 'muonrun:' "$BUILD_DIR/configure.log" || true
if [ -n "$TARGETS" ]; then
  read -r -a targets <<< "$TARGETS"
  cmake --build "$BUILD_DIR" --target "${targets[@]}"
  echo "setup: built ${targets[*]} in $BUILD_DIR"
else
  cmake --build "$BUILD_DIR"
  echo "setup: built $BUILD_DIR/trainer/muonrun"
fi

# The fuzz targets: clang with sanitizers, no LibTorch (tests/fuzz/).
if [ "$FUZZ" = 1 ]; then
  mkdir -p "$FUZZ_BUILD_DIR"
  cmake -S . -B "$FUZZ_BUILD_DIR" -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DMUONRUN_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMUONRUN_FUZZ_SMOKE_SECONDS="${FUZZ_SECONDS:-10}" \
    > "$FUZZ_BUILD_DIR/configure.log" 2>&1 || { cat "$FUZZ_BUILD_DIR/configure.log"; exit 1; }
  cmake --build "$FUZZ_BUILD_DIR"
  echo "setup: built the fuzzers in $FUZZ_BUILD_DIR/tests/fuzz/"
fi
