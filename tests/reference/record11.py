#!/usr/bin/env python3
"""Independent PyTorch reference for muonrun's GPT: the model of NanoGPT
speedrun record 11 (U-net skips, 7.2 min; last record with dense attention).

Transcribed from the public description of that network -- the GPT class of
KellerJordan/modded-nanogpt's train_gpt2.py at record 11 (records/110624_*
in that repository) -- and not from muonrun's C++, so that test_reference can
compare muonrun's loss and gradients with an implementation that shares
nothing with it but PyTorch's kernels:

  x  = rms_norm(wte[idx]);  x0 = x
  block i:  x = l0*x + l1*x0
            q, k, v = c_q(n), c_k(n), c_v(n)           n = rms_norm(x)
            v = (1 - lamb)*v + lamb*v1                 value residual (v1: block 0's v)
            q, k = rotary(rms_norm(q)), rotary(rms_norm(k))   QK-norm, rotary
            x = x + c_proj(causal_attention(q, k, v))
            x = x + mlp.c_proj(relu(mlp.c_fc(rms_norm(x)))^2)
  U-net: the first layers//2 blocks push their outputs; before each later
         block j, x = x + skip_weights[j] * pop()   (last in, first out)
  logits = 30*tanh(lm_head(rms_norm(x))/30);  loss = cross_entropy (fp32)

RMSNorm has no weight and eps = float32 machine epsilon (F.rms_norm's default
for fp32 input). Rotary: base 10000 over the whole head dim, pairs
(x[i], x[i + D/2]) rotated as y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos, as
the record's apply_rotary_emb.

Usage:
  record11.py --weights W.safetensors --out OUT.safetensors --heads H
              [--rope-base 10000] [--softcap 30] [--dtype float32|float64]
              [--mutate none|rotary|unet]
W holds every parameter under its speedrun name (transformer.wte.weight,
transformer.h.<i>.attn.c_q.weight, ..., lm_head.weight, skip_weights) plus the
int64 tensors `idx` and `targets` [B, T]. OUT gets `loss` and the gradient of
every parameter under the parameter's name, in float32.

--mutate breaks the model on purpose (the test's negative controls): `rotary`
turns the rotation the other way (the sign of sin), `unet` pops the skips
first in, first out.
"""
import argparse
import re
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


def rms_norm(x):
    # No learned weight; eps = machine epsilon of float32 (F.rms_norm's default
    # for float32 input, made explicit so that --dtype float64 keeps it).
    return F.rms_norm(x, (x.size(-1),), eps=torch.finfo(torch.float32).eps)


def rotary_tables(T, head_dim, base, dtype):
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)
    return freqs.cos().to(dtype)[None, :, None, :], freqs.sin().to(dtype)[None, :, None, :]


def apply_rotary(x, cos, sin, mutate):
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    if mutate == "rotary":  # the other direction of rotation
        sin = -sin
    y1 = x1 * cos + x2 * sin
    y2 = x1 * (-sin) + x2 * cos
    return torch.cat([y1, y2], dim=-1)


def attention(p, i, x, v1, cos, sin, heads, mutate):
    B, T, _ = x.shape
    pre = f"transformer.h.{i}.attn."
    q = F.linear(x, p[pre + "c_q.weight"]).view(B, T, heads, -1)
    k = F.linear(x, p[pre + "c_k.weight"]).view(B, T, heads, -1)
    v = F.linear(x, p[pre + "c_v.weight"]).view(B, T, heads, -1)
    if v1 is None:
        v1 = v
    lamb = p[pre + "lamb"]
    v = (1 - lamb) * v + lamb * v1
    q, k = rms_norm(q), rms_norm(k)
    q, k = apply_rotary(q, cos, sin, mutate), apply_rotary(k, cos, sin, mutate)
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       is_causal=True)
    y = y.transpose(1, 2).contiguous().view(B, T, -1)
    return F.linear(y, p[pre + "c_proj.weight"]), v1


def block(p, i, x, v1, x0, cos, sin, heads, mutate):
    lambdas = p[f"transformer.h.{i}.lambdas"]
    x = lambdas[0] * x + lambdas[1] * x0
    a, v1 = attention(p, i, rms_norm(x), v1, cos, sin, heads, mutate)
    x = x + a
    pre = f"transformer.h.{i}.mlp."
    h = F.relu(F.linear(rms_norm(x), p[pre + "c_fc.weight"])).square()
    x = x + F.linear(h, p[pre + "c_proj.weight"])
    return x, v1


def gpt_loss(p, idx, targets, heads, rope_base, softcap, mutate):
    layers = 1 + max(int(m.group(1)) for name in p
                     if (m := re.match(r"transformer\.h\.(\d+)\.", name)))
    head_dim = p["transformer.h.0.attn.c_q.weight"].size(0) // heads
    dtype = p["transformer.wte.weight"].dtype
    cos, sin = rotary_tables(idx.size(1), head_dim, rope_base, dtype)
    x = rms_norm(F.embedding(idx, p["transformer.wte.weight"]))
    x0, v1 = x, None
    encoder = layers // 2
    skips = []
    for i in range(encoder):
        x, v1 = block(p, i, x, v1, x0, cos, sin, heads, mutate)
        skips.append(x)
    for j in range(layers - encoder):
        skip = skips.pop(0) if mutate == "unet" else skips.pop()
        x = x + p["skip_weights"][j] * skip
        x, v1 = block(p, encoder + j, x, v1, x0, cos, sin, heads, mutate)
    logits = F.linear(rms_norm(x), p["lm_head.weight"])
    if softcap > 0:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--rope-base", type=float, default=10000.0)
    ap.add_argument("--softcap", type=float, default=30.0)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--mutate", choices=["none", "rotary", "unet"], default="none")
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    tensors = load_file(args.weights)
    idx, targets = tensors.pop("idx").long(), tensors.pop("targets").long()
    dtype = getattr(torch, args.dtype)
    params = {name: t.to(dtype).requires_grad_(True) for name, t in tensors.items()}
    if not any(name.startswith("transformer.h.") for name in params):
        sys.exit(f"{args.weights}: no transformer.h.<i> parameters")
    loss = gpt_loss(params, idx, targets, args.heads, args.rope_base, args.softcap, args.mutate)
    loss.backward()
    out = {"loss": loss.detach().float().reshape(())}
    for name, t in params.items():
        if t.grad is None:
            sys.exit(f"parameter {name} got no gradient (unused by the model?)")
        out[name] = t.grad.float().contiguous()
    save_file(out, args.out)
    print(f"loss {loss.item():.9g}, {len(params)} gradients -> {args.out}")


if __name__ == "__main__":
    main()
