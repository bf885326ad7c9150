"""What the PyTorch references of the two packed-document speedrun records
(record29.py: 2025-09-03_FA3; record50.py: 2025-12-18_CautiousWDAdam, both in
KellerJordan/modded-nanogpt records/track_1_short/) share, so that each
reference file holds only its own record's model: the records' rms_norm and
rotary (unchanged from record 29 to 50), flash-attention's visibility rule
for packed documents as a dense mask and in explicit float64 math, and the
command-line files muonrun's C++ tests write (a JSON config, the weights and
the batch as safetensors), each checked with an error that names the file.

Nothing here comes from muonrun's C++; it is imported by the two scripts,
which the C++ tests run from this folder.
"""
import json
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

FP32_EPS = torch.finfo(torch.float32).eps  # 1.1920929e-07, F.rms_norm's eps=None for fp32/bf16


def norm(x):
    """The records' F.rms_norm(x, (x.size(-1),)) with eps=None, whose eps is
    float32's for fp32 and bf16 input; written out so that --dtype float64
    computes the same function."""
    return F.rms_norm(x, (x.size(-1),), eps=FP32_EPS)


def rotary(x, cos, sin):
    """x [T, H, D]: the pairs (x[..., i], x[..., i + D/2]) rotated by the
    tables' angles (the records' apply_rotary_emb / Rotary.forward)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos], dim=-1)


def document_window_mask(cu_seqlens, T, window):
    """[T, T] bool, True where key j is visible to query i: j <= i, same
    document, i - j <= window (flash-attention's window_size=(window, 0))."""
    pos = torch.arange(T)
    doc = torch.searchsorted(cu_seqlens.long(), pos, right=True) - 1
    i, j = pos[:, None], pos[None, :]
    return (j <= i) & (doc[:, None] == doc[None, :]) & (i - j <= window)


def explicit_attention(q, k, v, cu_seqlens, window, scale):
    """Attention with the visibility rule written per pair, in float64 (the
    self-tests' check of document_window_mask)."""
    T = q.size(-2)
    starts = cu_seqlens.tolist()
    doc = [max(d for d in range(len(starts) - 1) if starts[d] <= i) for i in range(T)]
    s = scale * q.double() @ k.double().transpose(-1, -2)
    visible = torch.tensor([[j <= i and doc[i] == doc[j] and i - j <= window for j in range(T)] for i in range(T)])
    return torch.softmax(s.masked_fill(~visible, float("-inf")), dim=-1) @ v.double()


def check(ok, what):
    if not ok:
        raise AssertionError(what)
    print(f"  ok  {what}")


def load_config(path, config_class):
    with open(path) as f:
        return config_class.from_dict(json.load(f), path)


def load_weights(model, path, record):
    """Every tensor float32, and exactly the record's state dict of the config."""
    tensors = load_file(path)
    for name, t in tensors.items():
        if t.dtype != torch.float32:
            sys.exit(f"{path}: {name} is {t.dtype}, expected torch.float32")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        sys.exit(f"{path}: does not match the {record} state dict of the config: {e}")


def load_batch(path, c):
    """inputs, targets (int64 [T], ids below c.vocab), cu_seqlens (int32,
    rising from 0 to T; repeated trailing T allowed) and windows (int64, one
    per layer of c), nothing else."""
    b = load_file(path)
    expected = {"inputs": torch.int64, "targets": torch.int64, "cu_seqlens": torch.int32, "windows": torch.int64}
    for key, dtype in expected.items():
        if key not in b or b[key].dtype != dtype or b[key].dim() != 1:
            got = f"{b[key].dtype} {list(b[key].shape)}" if key in b else "missing"
            sys.exit(f"{path}: {key} must be a 1-D {dtype} tensor, got {got}")
    unknown = b.keys() - expected.keys()
    if unknown:
        sys.exit(f"{path}: unknown tensors {sorted(unknown)}")
    T, cu = b["inputs"].numel(), b["cu_seqlens"]
    if T < 1 or b["targets"].numel() != T:
        sys.exit(f"{path}: targets has {b['targets'].numel()} tokens, inputs {T}")
    if cu.numel() < 2 or cu[0] != 0 or cu[-1] != T or (cu[1:] < cu[:-1]).any():
        sys.exit(f"{path}: cu_seqlens must rise from 0 to T = {T}, got {cu.tolist()}")
    if b["windows"].numel() != c.layers or (b["windows"] < 0).any():
        sys.exit(f"{path}: windows must hold {c.layers} non-negative entries, got {b['windows'].tolist()}")
    for key in ("inputs", "targets"):
        if (b[key] < 0).any() or (b[key] >= c.vocab).any():
            sys.exit(f"{path}: {key} has ids outside 0..{c.vocab - 1}")
    return b["inputs"], b["targets"], cu, b["windows"]
