#!/usr/bin/env bash
# The CUDA build works where no GPU is visible (CI, a login node): `--help`
# and `config` of the GPU configs run, and training a run.device: cuda config
# stops at once with exit 1 and a message naming run.device and the binary.
# CUDA_VISIBLE_DEVICES is emptied, so a GPU machine shows the same.
#
#   cuda_binary_without_gpu.sh SOURCE_DIR CUDA_BUILD_MUONRUN
set -euo pipefail
src=$1 binary=$2
export CUDA_VISIBLE_DEVICES=
work=$(mktemp -d "${TMPDIR:-/tmp}/muonrun_cuda_binary.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$binary" --help > "$work/help"
grep -q "train" "$work/help" || { echo "FAIL: --help lists no train command"; cat "$work/help"; exit 1; }
echo "ok: --help"
for config in speedrun.yaml speedrun-1gpu.yaml; do
  "$binary" config -c "$src/configs/$config" > "$work/config"
  grep -q "device: cuda" "$work/config" || { echo "FAIL: config of $config has no 'device: cuda'"; exit 1; }
  echo "ok: config -c configs/$config"
done
set +e
"$binary" train -c "$src/configs/speedrun-1gpu.yaml" --set "run.dir=$work/run" > "$work/out" 2>&1
rc=$?
set -e
if [ "$rc" != 1 ] || ! grep -q "run.device is cuda" "$work/out" ||
   ! grep -qF "$(readlink -f "$binary")" "$work/out"; then
  echo "FAIL: train without a GPU exited $rc:"
  cat "$work/out"
  exit 1
fi
echo "ok: train without a GPU: $(grep -m1 'run.device' "$work/out")"
