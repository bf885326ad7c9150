#!/usr/bin/env bash
# Fetches what the quickstart needs into data/ (skipping what is already there):
#   data/gpt2/encoder.json, data/gpt2/vocab.bpe   GPT-2 BPE vocabulary (OpenAI, MIT licence)
#   data/tinyshakespeare.txt                       1.1 MB of Shakespeare (public domain)
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
