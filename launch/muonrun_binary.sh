# Sourced by the launch scripts: which muonrun binary a node runs.
#   muonrun_binary ROOT   prints $MUONRUN when set; otherwise, where this
#       node has a GPU (nvidia-smi lists one) and ROOT has the CUDA build,
#       ROOT/build-cuda/trainer/muonrun; otherwise the CPU build,
#       ROOT/build/trainer/muonrun. Says its choice on stderr.
# The CPU build links LibTorch's CPU library only: given a config with
# run.device: cuda (configs/speedrun*.yaml) it stops with an error naming the
# key and the binary, so a GPU node without the CUDA build (CUDA=1
# launch/setup.sh) fails at once instead of training on the host.
muonrun_binary() {
  local root=$1 why
  if [ -n "${MUONRUN:-}" ]; then
    echo "$MUONRUN"
    return
  fi
  if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    if [ -x "$root/build-cuda/trainer/muonrun" ]; then
      echo "launch: $root/build-cuda/trainer/muonrun (the CUDA build; this node has a GPU)" >&2
      echo "$root/build-cuda/trainer/muonrun"
      return
    fi
    why="this node has a GPU but $root/build-cuda has no muonrun: CUDA=1 launch/setup.sh builds it"
  else
    why="no GPU on this node"
  fi
  echo "launch: $root/build/trainer/muonrun (the CPU build; $why)" >&2
  echo "$root/build/trainer/muonrun"
}
