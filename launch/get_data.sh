#!/usr/bin/env bash
# Fetches what the quickstart needs into data/ (skipping what is already there):
#   data/gpt2/encoder.json, data/gpt2/vocab.bpe   GPT-2 BPE vocabulary (OpenAI, MIT licence)
#   data/tinyshakespeare.txt                       1.1 MB of Shakespeare (public domain)
# and with GUTENBERG=1 (launch/gpu_check.sh's default corpus, from the mirror only):
#   data/gutenberg/val.jsonl.xz                    2.3 MB, 31 books (public domain)
#   data/gutenberg/train-1.jsonl.xz                22 MB, 196 books
# Together about 26 MB: they fit the 64 MiB a checkout may carry to the GPU
# machine (send data/ along: it is git-ignored).
#
# Sources, in order: files already in data/; a local mirror named by
# MUONRUN_DATA_MIRROR (a folder holding gpt2/ and tinyshakespeare.txt), or
# ../shared/data beside the checkout if it exists; else the public URLs below.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A URLS=(
  [gpt2/encoder.json]=https://openaipublic.blob.core.windows.net/gpt-2/models/124M/encoder.json
  [gpt2/vocab.bpe]=https://openaipublic.blob.core.windows.net/gpt-2/models/124M/vocab.bpe
  [tinyshakespeare.txt]=https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
)
mirror=${MUONRUN_DATA_MIRROR:-}
if [ -z "$mirror" ] && [ -d ../shared/data/gpt2 ]; then mirror=../shared/data; fi

for file in "${!URLS[@]}"; do
  target=data/$file
  [ -s "$target" ] && continue
  mkdir -p "$(dirname "$target")"
  if [ -n "$mirror" ] && [ -s "$mirror/$file" ]; then
    echo "get_data: $target from the local mirror $mirror"
    cp "$mirror/$file" "$target.part"
  else
    echo "get_data: $target from ${URLS[$file]}"
    curl -fsSL --retry 3 -o "$target.part" "${URLS[$file]}"
  fi
  mv "$target.part" "$target"
done

# Project Gutenberg books as JSONL (see ../shared/data/gutenberg/README.md);
# they have no public URL of their own here, so only a mirror provides them.
if [ "${GUTENBERG:-0}" = 1 ]; then
  for file in gutenberg/val.jsonl.xz gutenberg/train-1.jsonl.xz gutenberg/README.md; do
    target=data/$file
    [ -s "$target" ] && continue
    if [ -z "$mirror" ] || [ ! -s "$mirror/$file" ]; then
      echo "get_data: no $file in a local mirror (set MUONRUN_DATA_MIRROR to a folder holding gutenberg/)" >&2
      exit 1
    fi
    mkdir -p "$(dirname "$target")"
    echo "get_data: $target from the local mirror $mirror"
    cp "$mirror/$file" "$target.part"
    mv "$target.part" "$target"
  done
  du -shc data/gpt2 data/gutenberg | tail -1 | sed 's/^/get_data: data for the GPU machine: /'
fi
