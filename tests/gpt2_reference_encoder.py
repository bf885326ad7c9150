#!/usr/bin/env python3
"""Independent reference for muonrun's C++ GPT-2 tokenizer.

A plain re-implementation of OpenAI's gpt-2 src/encoder.py (bytes_to_unicode,
get_pairs, bpe, encode), with the third-party `regex` module as the original
uses, so that test_prepare can compare `muonrun prepare` with it token by token.

Usage: gpt2_reference_encoder.py --vocab DIR FILE.jsonl
Prints the ids of every document's "text", each document preceded by
<|endoftext|> (50256), separated by spaces -- what prepare writes to shards.
"""
import argparse
import json
import os
import sys

try:
    import regex
except ImportError:
    sys.exit("gpt2_reference_encoder.py needs the Python `regex` module: "
             "install python3-regex (Debian/Ubuntu) or `pip install regex`")

END_OF_TEXT = 50256
PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    """Each byte gets a printable character; printable Latin-1 bytes keep theirs."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    chars = {}
    extra = 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def get_pairs(word):
    return {(word[i], word[i + 1]) for i in range(len(word) - 1)}


class Encoder:
    def __init__(self, vocab_dir):
        with open(os.path.join(vocab_dir, "encoder.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(os.path.join(vocab_dir, "vocab.bpe"), encoding="utf-8") as f:
            lines = f.read().split("\n")[1:-1]  # skip "#version", trailing ""
        self.ranks = {tuple(line.split()): i for i, line in enumerate(lines)}
        self.byte_encoder = bytes_to_unicode()
        self.cache = {}

    def bpe(self, token):
        """Merge the lowest-ranked pair everywhere, left to right, until none is left."""
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = get_pairs(word)
        while pairs:
            first, second = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if (first, second) not in self.ranks:
                break
            merged = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
            pairs = get_pairs(word) if len(word) > 1 else set()
        self.cache[token] = word
        return word

    def encode(self, text):
        ids = []
        for piece in PATTERN.findall(text):
            spelled = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(spelled))
        return ids


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", required=True, help="directory with encoder.json, vocab.bpe")
    parser.add_argument("jsonl", help="one JSON object per line with a 'text' member")
    args = parser.parse_args()
    encoder = Encoder(args.vocab)
    ids = []
    with open(args.jsonl, "rb") as f:
        # Split on b"\n" only, as muonrun does (text mode would also split on \r).
        for line in f.read().split(b"\n"):
            if not line.strip():
                continue
            ids.append(END_OF_TEXT)
            ids.extend(encoder.encode(json.loads(line.decode("utf-8"))["text"]))
    sys.stdout.write(" ".join(map(str, ids)) + "\n")


if __name__ == "__main__":
    main()
