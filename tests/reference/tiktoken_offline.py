#!/usr/bin/env python3
"""Independent reference for muonrun's GPT-2 tokenizer: OpenAI's tiktoken
(r50k_base, the GPT-2 encoding) built offline from the shared GPT-2 files
encoder.json and vocab.bpe instead of downloading r50k_base.tiktoken.

The conversion of those files into tiktoken's mergeable ranks follows
data_gym_to_mergeable_bpe_ranks in tiktoken's tiktoken/load.py (used by
tiktoken_ext/openai_public.py for the GPT-2 files), written out here so that
no network access is needed: GPT-2 stores every byte as a printable
character (bytes_to_unicode in openai/gpt-2's src/encoder.py); the 256 single
bytes get ranks 0..255 in that character order, every merge of vocab.bpe the
next rank, and the result must equal encoder.json's ids.

Named tiktoken_offline.py, not tokenize.py: a script of that name would
shadow Python's standard `tokenize` module (which linecache, inspect and thus
torch import) for every script in this folder.

Usage:
  tiktoken_offline.py --vocab DIR [--vectors r50k-test-vectors.txt] [IN OUT ...]
Each IN (a UTF-8 text file) is encoded with encode_ordinary ("<|endoftext|>"
in the text stays text, as in muonrun) and its ids are written to OUT as
little-endian uint32. --vectors checks the encoding against tiktoken's golden
r50k_base vectors first and fails on any mismatch.
"""
import argparse
import json
import os
import struct
import sys

import tiktoken

# tiktoken_ext/openai_public.py's r50k_pat_str (GPT-2's pattern, with the
# possessive quantifiers and \s++$ alternative tiktoken has used since 0.8).
R50K_PATTERN = (r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""")
END_OF_TEXT = "<|endoftext|>"


def gpt2_byte_chars():
    """Byte -> the character GPT-2's files write for it, in rank order."""
    order = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    char_of = {b: chr(b) for b in order}
    extra = 0
    for b in range(256):
        if b not in char_of:
            order.append(b)
            char_of[b] = chr(256 + extra)
            extra += 1
    return order, char_of


def mergeable_ranks(vocab_dir):
    order, char_of = gpt2_byte_chars()
    byte_of = {c: b for b, c in char_of.items()}

    def to_bytes(token):
        return bytes(byte_of[c] for c in token)

    ranks = {bytes([b]): i for i, b in enumerate(order)}
    with open(os.path.join(vocab_dir, "vocab.bpe"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    if not lines[0].startswith("#version"):
        sys.exit("vocab.bpe: expected a #version line first")
    for line in lines[1:]:
        if not line:
            continue
        first, second = line.split()
        ranks[to_bytes(first) + to_bytes(second)] = len(ranks)
    with open(os.path.join(vocab_dir, "encoder.json"), encoding="utf-8") as f:
        encoder = {to_bytes(k): v for k, v in json.load(f).items()}
    encoder.pop(END_OF_TEXT.encode(), None)
    if encoder != ranks:
        sys.exit("encoder.json and vocab.bpe disagree about the ranks")
    return ranks


def r50k_offline(vocab_dir):
    ranks = mergeable_ranks(vocab_dir)
    return tiktoken.Encoding(name="r50k_base_offline", pat_str=R50K_PATTERN,
                             mergeable_ranks=ranks, special_tokens={END_OF_TEXT: len(ranks)},
                             explicit_n_vocab=50257)


def check_vectors(enc, path):
    """Blocks 'EncodingName: r50k_base' / 'Sample: <text>' / 'Encoded: [ids]'."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    checked = 0
    for block in text.split("EncodingName: ")[1:]:
        name, _, rest = block.partition("\n")
        if name.strip() != "r50k_base":
            continue
        if not rest.startswith("Sample: "):
            sys.exit(f"{path}: block {checked} has no Sample line")
        cut = rest.rfind("\nEncoded: [")
        sample = rest[len("Sample: "):cut]
        body = rest[cut + len("\nEncoded: ["):rest.index("]", cut)]
        expected = [int(x) for x in body.split(",") if x.strip()]
        got = enc.encode_ordinary(sample)
        if got != expected:
            sys.exit(f"golden vector mismatch for {sample!r}: {got} != {expected}")
        checked += 1
    if checked == 0:
        sys.exit(f"{path}: no r50k_base vectors")
    print(f"golden vectors: {checked} match")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", required=True, help="folder with encoder.json and vocab.bpe")
    ap.add_argument("--vectors")
    ap.add_argument("files", nargs="*", help="pairs IN OUT")
    args = ap.parse_args()
    if len(args.files) % 2:
        sys.exit("give pairs IN OUT")
    enc = r50k_offline(args.vocab)
    if args.vectors:
        check_vectors(enc, args.vectors)
    for src, dst in zip(args.files[::2], args.files[1::2]):
        with open(src, "rb") as f:
            text = f.read().decode("utf-8")
        ids = enc.encode_ordinary(text)
        with open(dst, "wb") as f:
            f.write(struct.pack(f"<{len(ids)}I", *ids))
        print(f"{src}: {len(text)} characters, {len(ids)} tokens")


if __name__ == "__main__":
    main()
