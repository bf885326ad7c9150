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
import argparse
import json
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

FP32_EPS = torch.finfo(torch.float32).eps  # 1.1920929e-07, F.rms_norm's eps=None for fp32/bf16


def norm(x):
    """The records' F.rms_norm(x, (x.size(-1),)) with eps=None, whose eps is
    float32's for fp32 and bf16 input; written out so that --dtype float64
    computes the same function."""
    return F.rms_norm(x, (x.size(-1),), eps=FP32_EPS)


def check_norm():
    """Self-test of norm: F.rms_norm's eps=None for float32 and bfloat16
    input, and that eps kept for float64."""
    x = torch.randn(5, 64) * 1e-4
    check(torch.equal(norm(x), F.rms_norm(x, (64,))) and
          torch.equal(norm(x.bfloat16()), F.rms_norm(x.bfloat16(), (64,))),
          "rms_norm eps = F.rms_norm's default (eps=None) for float32 and bfloat16 input")
    xd = x.double()
    explicit = xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + FP32_EPS)
    check(torch.allclose(norm(xd), explicit, rtol=1e-14, atol=0) and
          not torch.allclose(norm(xd), F.rms_norm(xd, (64,)), rtol=1e-3),
          "float64: eps stays 1.19e-7 (F.rms_norm's default would be 2.2e-16)")


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


def check_attention(scale):
    """Self-test of document_window_mask: SDPA with it against the explicit
    float64 rule, values and gradients, and float32 within rounding."""
    print("mask attention vs explicit float64 softmax (values and gradients)")
    g = torch.Generator().manual_seed(1)
    T, H, D = 40, 2, 8
    cu = torch.tensor([0, 13, 14, 33, 40, 40], dtype=torch.int32)  # a 1-token document, a padded tail
    for window in (0, 3, 100):
        q, k, v = (torch.randn(1, H, T, D, generator=g, dtype=torch.float64) for _ in range(3))
        w = torch.randn(1, H, T, D, generator=g, dtype=torch.float64)
        grads = []
        for fn in (lambda a, b, c_: F.scaled_dot_product_attention(
                       a, b, c_, attn_mask=document_window_mask(cu, T, window), scale=scale),
                   lambda a, b, c_: explicit_attention(a, b, c_, cu, window, scale)):
            leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
            y = fn(*leaves)
            (y * w).sum().backward()
            grads.append([y.detach()] + [t.grad for t in leaves])
        err = max((a - b).abs().max().item() for a, b in zip(*grads))
        check(err < 1e-12, f"window {window}: SDPA with the mask = explicit softmax, max error {err:.1e}")
        y32 = F.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                             attn_mask=document_window_mask(cu, T, window), scale=scale)
        err32 = (y32.double() - grads[1][0]).abs().max().item()
        check(err32 < 1e-5, f"window {window}: float32 SDPA within {err32:.1e} of float64 math")
    m = document_window_mask(torch.tensor([0, 50], dtype=torch.int32), 50, 7)
    check(m.sum(-1)[7:].eq(8).all() and m.sum(-1)[:7].eq(torch.arange(1, 8)).all(),
          "a window of W = 7 tokens shows W + 1 = 8 keys (itself included) once 7 tokens are behind")


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


def model_arguments(doc, controls):
    """The command line both references share (their docstrings give it);
    each adds its own options before parse_args()."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--config")
    ap.add_argument("--weights")
    ap.add_argument("--batch")
    ap.add_argument("--out")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--eval", action="store_true", help="mean loss, no gradients")
    ap.add_argument("--control", choices=controls, default="none")
    ap.add_argument("--check-state-dict", action="store_true")
    ap.add_argument("--self-test", action="store_true")
    return ap


def run_model(ap, args, config_class, make_model, record, loss_only=None):
    """The model's run the arguments ask for: the weights loaded strictly and
    written back (--check-state-dict); the mean loss without gradients
    (--eval); `loss_only`, when given, a label for a training loss without
    gradients; else the training loss and every parameter's gradient."""
    required = ["config", "weights", "out"] + ([] if args.check_state_dict else ["batch"])
    missing = [f"--{a.replace('_', '-')}" for a in required if getattr(args, a) is None]
    if missing:
        ap.error(f"missing {' '.join(missing)}")
    c = load_config(args.config, config_class)
    model = make_model(c)
    load_weights(model, args.weights, record)
    if args.check_state_dict:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out)
        print(f"{len(model.state_dict())} tensors loaded strictly and written back -> {args.out}")
        return

    inputs, targets, cu_seqlens, windows = load_batch(args.batch, c)
    model.to(getattr(torch, args.dtype))
    if args.eval or loss_only:
        if args.eval:
            model.eval()
        with torch.no_grad():
            loss = model(inputs, targets, cu_seqlens, windows)
        save_file({"loss": loss.reshape(())}, args.out)
        print(f"{'eval' if args.eval else loss_only} loss {loss.item():.9g} -> {args.out}")
        return
    loss = model(inputs, targets, cu_seqlens, windows)
    loss.backward()
    out = {"loss": loss.detach().reshape(())}
    for name, p in model.named_parameters():
        out["grad." + name] = (p.grad if p.grad is not None else torch.zeros_like(p)).contiguous()
    save_file(out, args.out)
    print(f"loss {loss.item():.9g}, {len(out) - 1} gradients -> {args.out}")
