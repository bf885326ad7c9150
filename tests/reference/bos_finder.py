#!/usr/bin/env python3
"""The speedrun's data loader, transcribed with numpy: the reference of
tests/test_document_loader.cpp.

From record 29 (KellerJordan/modded-nanogpt,
records/track_1_short/2025-09-03_FA3, the train_gpt.py at the top of each log):
_load_data_shard, class BOSFinder and distributed_data_generator, kept line for
line apart from these changes:
  - numpy instead of torch, no devices; `rank` and `world_size` are arguments
    instead of torch.distributed's;
  - the files are cycled, as the record's own comment says to do for
    multi-epoch training (`itertools.cycle(files)`);
  - BOSFinder.next_batch raises StopIteration without formatting `cur` into
    its message: `cur` is unbound when the shard has run out exactly at a
    batch's first document, where the record raises UnboundLocalError instead
    (its shards of 100M tokens almost never end there);
  - new batch sizes arrive by `.send()` as in record 50
    (records/track_1_short/2025-12-18_CautiousWDAdam, the end of
    distributed_data_generator: `new_params = yield ...`), here the tokens
    per rank and the cut max_seq_len (grad_accum_steps 1).

Usage: bos_finder.py --pattern GLOB --tokens T --world W --max-seq-len M
                     --steps S [--contiguous] [--resize STEP:T[:M] ...] --out FILE
--resize STEP:T[:M] sends T tokens per rank and max_seq_len M (unchanged
when left out) before step STEP (as record 50's training loop sends each
stage's batch size to its loader).
Writes, for every step and then every rank, two lines: the rank's T + 1
tokens (inputs then the last target), and the record's cumulative sequence
lengths (padded, as the record pads them, to max_num_docs with T).
"""
import argparse
import glob
import itertools
import sys
from pathlib import Path

import numpy as np


def _load_data_shard(file: Path):
    header = np.fromfile(str(file), dtype=np.int32, count=256)  # header is 256 int32
    assert header[0] == 20240520, "magic number mismatch in the data .bin file"
    assert header[1] == 1, "unsupported version"
    num_tokens = int(header[2])  # number of tokens (claimed)
    tokens = np.fromfile(str(file), dtype=np.uint16, offset=256 * 4)
    assert len(tokens) == num_tokens, "number of tokens read does not match header"
    return tokens


BOS_ID = 50256


def next_multiple_of_n(v, *, n):
    return next(x for x in range(n, int(v) + 1 + n, n) if x >= v)


class BOSFinder:
    def __init__(self, tokens, world_size: int = 1):
        # Precompute BOS positions once per shard
        self.size = tokens.size
        self.bos_idx = np.nonzero(tokens == BOS_ID)[0].astype(np.int64)
        self.i = 0
        self.world_size = world_size

    def next_batch(self, num_tokens_local: int, max_seq_len: int):
        n = len(self.bos_idx)
        starts = [[] for _ in range(self.world_size)]
        ends = [[] for _ in range(self.world_size)]

        idx = self.i
        for r in range(self.world_size):
            cur_len = 0
            while cur_len <= num_tokens_local:
                if idx >= n:
                    raise StopIteration("Insufficient BOS ahead; hit tail of shard.")
                cur = self.bos_idx[idx]
                starts[r].append(cur)
                end = min(self.bos_idx[idx + 1] if idx + 1 < n else self.size,
                          cur + max_seq_len,
                          cur + num_tokens_local - cur_len + 1)
                ends[r].append(end)
                cur_len += end - cur
                idx += 1

            assert cur_len == num_tokens_local + 1
        self.i = idx

        return starts, ends


def distributed_data_generator(filename_pattern: str, num_tokens: int, max_seq_len: int,
                               rank: int, world_size: int, grad_accum_steps: int = 1,
                               align_to_bos: bool = True):
    assert num_tokens % (world_size * grad_accum_steps) == 0, "Batch size must be divisible by world size"
    num_tokens = num_tokens // grad_accum_steps

    files = [Path(file) for file in sorted(glob.glob(filename_pattern))]
    if not files:
        raise FileNotFoundError(f"No files found for pattern: {filename_pattern}")

    file_iter = itertools.cycle(files)
    tokens = _load_data_shard(next(file_iter))
    finder = BOSFinder(tokens, world_size=world_size) if align_to_bos else None
    pos = 0  # for unaligned case
    exhausted = 0  # shards in a row without a batch

    while True:
        num_tokens_local = num_tokens // world_size
        max_num_docs = next_multiple_of_n(num_tokens_local // 300, n=128)  # median doc length is ~400

        if align_to_bos:
            try:
                seq_starts, seq_ends = finder.next_batch(num_tokens_local, max_seq_len)
                start_idxs, end_idxs = np.array(seq_starts[rank]), np.array(seq_ends[rank])
            except StopIteration:
                # This shard is exhausted, load the next one in the next loop iteration.
                exhausted += 1
                if exhausted > len(files):  # not the record's: it would loop for ever
                    sys.exit(f"no shard of {filename_pattern} holds a batch of {world_size} x "
                             f"{num_tokens_local} tokens with documents cut at {max_seq_len}")
                tokens = _load_data_shard(next(file_iter))
                finder = BOSFinder(tokens, world_size=world_size)
                continue
            exhausted = 0

            buf = np.concatenate([tokens[i:j] for i, j in zip(start_idxs, end_idxs)])
            _inputs = buf[:-1]
            _targets = buf[1:]
            end_idxs[-1] -= 1  # last document was too long to account for _targets offset
            cum_lengths = (end_idxs - start_idxs).cumsum(0)

        else:
            if pos + num_tokens + 1 >= len(tokens):  # should not occur for val data
                tokens, pos = _load_data_shard(next(file_iter)), 0

            pos_local = pos + rank * num_tokens_local
            buf = tokens[pos_local: pos_local + num_tokens_local + 1]
            _inputs = buf[:-1].reshape(num_tokens_local, )
            _targets = buf[1:].reshape(num_tokens_local, )

            cum_lengths = np.nonzero(_inputs == BOS_ID)[0]
            pos += num_tokens

        _cum_lengths = np.full((max_num_docs,), num_tokens_local)
        _cum_lengths[0] = 0
        _cum_lengths[1:len(cum_lengths) + 1] = cum_lengths

        new_params = yield (_inputs.astype(np.int32), _targets.astype(np.int64), _cum_lengths.astype(np.int32))
        if new_params is not None:
            new_num_tokens, new_max_seq_len, new_grad_accum_steps = new_params
            assert new_num_tokens % (world_size * new_grad_accum_steps) == 0, "Num tokens must be divisible by world size"
            num_tokens = new_num_tokens // new_grad_accum_steps
            max_seq_len = new_max_seq_len


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pattern", required=True)
    ap.add_argument("--tokens", type=int, required=True, help="T, tokens per rank per micro-step")
    ap.add_argument("--world", type=int, required=True)
    ap.add_argument("--max-seq-len", type=int, default=2048)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--contiguous", action="store_true", help="validation batches (align_to_bos=False)")
    ap.add_argument("--resize", action="append", default=[], metavar="STEP:T[:M]",
                    help="send T tokens per rank (and max_seq_len M) before step STEP")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    resize = {}
    for r in a.resize:
        parts = [int(x) for x in r.split(":")]
        if len(parts) not in (2, 3):
            sys.exit(f"--resize {r}: expected STEP:T or STEP:T:M")
        resize[parts[0]] = parts[1:]
    max_seq_len = a.max_seq_len
    loaders = [distributed_data_generator(a.pattern, a.tokens * a.world,
                                          -1 if a.contiguous else a.max_seq_len, rank, a.world,
                                          align_to_bos=not a.contiguous)
               for rank in range(a.world)]
    with open(a.out, "w") as out:
        for step in range(a.steps):
            if step in resize and len(resize[step]) == 2:
                max_seq_len = resize[step][1]
            for loader in loaders:
                if step in resize:
                    inputs, targets, cum = loader.send((resize[step][0] * a.world, max_seq_len, 1))
                else:
                    inputs, targets, cum = next(loader)
                assert (inputs[1:] == targets[:-1]).all()
                tokens = np.concatenate([inputs.astype(np.int64), targets[-1:]])
                out.write(" ".join(map(str, tokens.tolist())) + "\n")
                out.write(" ".join(map(str, cum.tolist())) + "\n")


if __name__ == "__main__":
    main()
