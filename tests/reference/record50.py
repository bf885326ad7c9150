#!/usr/bin/env python3
"""Independent PyTorch reference for the model of NanoGPT speedrun record 50
(2025-12-18_CautiousWDAdam, 2.128 min): record 29's packed documents,
windowed attention, value embeddings, sparse attention gate and
sigmoid-capped logits, plus the changes of records 30-50: smear of the token
embedding, lambda0 on the QKV weights and lambda1 on the O weights, value
embeddings added without a lambda, a key offset on the long-window layers, a
sigmoid-gated skip (any list of them, such as record 32's gated U-net), the backout, resid/x0 lambdas and YaRN.

Transcribed from the record's own script -- the first 1643 lines of any log
in records/track_1_short/2025-12-18_CautiousWDAdam/ of KellerJordan/
modded-nanogpt (each record's log starts with its train_gpt.py); `Lnnnn` is a
line of that script -- and not from muonrun's C++, so that a C++ test can
compare muonrun's loss and gradients with code that shares nothing with it
but PyTorch's kernels. State-dict names and shapes are the record's. Sizes
and the per-layer structure come from a JSON config so that small CPU tests
can use it. The math (GPT.forward L1058-1132, CausalSelfAttention L904-959,
MLP L961-983, Block L985-997, Yarn L846-879, rotary L881-889):

  x  = embed[idx]                                            [T, dim], raw
  smear (L1092-1093):  g = smear_lambda * sigmoid(x[1:, :smear_dim] @ smear_gate^T)
                       x = cat(x[:1], x[1:] + g * x[:-1])    (across documents)
  x = x0 = rms_norm(x)
  block i:  for each skip k into i:  x = x + sigmoid(skip_lambda[k]) * out[from_k]
            x = (resid[0] + x0l[0]) * x  if i == 0  else  resid[i] * x + x0l[i] * x0
            if layer i has attention, with h = rms_norm(x):
              q, k, v = h @ (lambda0 * qkvo_w[:3 dim])^T, viewed [T, 3 heads, head_dim],
                        chunk(3) over the heads: q = rows 0..dim-1, k the next dim, v the next
              q, k = rotary(rms_norm(q)), rotary(rms_norm(k))
              key-offset layer: k's dims [D/4:D/2] and [3D/4:D] (the zero-frequency
                halves of both rotary halves) taken from the previous token
                (position 0 keeps its own; across documents)
              v = v + value_embeds[t][idx]                  (value-embedding layers; no lambda)
              y = softmax(attn_scale * q k^T + document/window mask) v
              y = y * sigmoid(h[:, :gate_dim] @ attn_gate^T)          (per head)
              x = x + y @ (lambda1 * qkvo_w[3 dim:])^T
            x = x + relu(rms_norm(x) @ c_fc^T)^2 @ c_proj     (both stored [4 dim, dim])
            out[i] = x;   if i == backout_layer: xb = x
  x = x - backout_lambda * xb
  logits = 30 * sigmoid((rms_norm(x) @ lm_head^T) / 7.5)
  loss = cross_entropy(logits, targets), summed over tokens (training) or the
         mean (--eval), as the record's reduction="sum" if self.training else "mean".
  scalars = [resid lambdas (L), x0 lambdas (L), SA lambdas (L pairs: lambda0 on
            W_qkv, lambda1 on W_o), smear_lambda, backout_lambda, a skip_lambda per skip,
            padding ones]                                       (L1034-1046, L1072-1077)

Where this differs from the record, and why:
 * Precision: everything is fp32 (or float64 with --dtype float64). The
   record runs bf16 activations, bf16 embeddings/gates/lm_head weights, bf16
   rotary tables and arithmetic, an FP8 lm_head in training and a bf16 loss
   in training; lambda0 * W happens there after the bf16 cast of W.
 * The record's attention is flash_attn_varlen_func(causal=True,
   window_size=(W, 0)); here SDPA with an explicit boolean mask: key j is
   visible to query i iff j <= i, both lie in the same document of
   cu_seqlens, and i - j <= W (so a query sees W + 1 keys including itself).
 * Key offset (L942-945): the record assigns in place between overlapping
   slices, k[:, 1:, :, a:b] = k[:, :-1, :, a:b]. Under torch.compile (as the
   record runs) that is a shift by exactly one token; eager CPU PyTorch would
   instead smear position 0 forward. Here it is written without aliasing:
   k_new = where(dims, cat(k[:1], k[:-1]), k).
 * The per-layer structure is configurable (the record hard-codes it:
   bm_sizes and key_shift = bm == long_bm L1079-1081, the ve list L1088,
   no attention at layer 6 L989, skip_in [3] / skip_out [6] / backout_layer 7
   L1063-1066; record 32, 2025-09-11_VectSigmoidBFloat16, gated a U-net of
   6 skips: after blocks 0..5 push x, before blocks 6..11 x += sigmoid(w) pop()).
   The record's layer-0 form (resid[0] + x0l[0]) * x is kept (x is x0 there:
   every skip has 0 <= from < to, so none enters layer 0).
 * rms_norm has no weight and eps = 1.1920929e-07, written out: the record's
   F.rms_norm(x, (x.size(-1),)) with eps=None takes float32's epsilon for
   float32 and bf16 input (float64's 2.2e-16 for float64 input, so it is
   written out here to keep --dtype float64 the same function).
 * Rotary (half-truncated RoPE): freq = the config's rope_freqs (the current
   angular frequencies after any YaRN; default the base rule
   (1/1024)**linspace(0,1,head_dim/4) then head_dim/4 zeros), rounded to
   float32 as the record's angular_freq; theta = t * freq in float32 with t
   the position in the packed sequence (not from each document's start);
   (x1, x2) = (x[..., :D/2], x[..., D/2:]): y1 = x1 cos + x2 sin,
   y2 = -x1 sin + x2 cos, cos and sin rounded to the compute dtype (the
   record: bf16).

Config (JSON, every key required, unknown keys rejected; rope_freqs optional):
  vocab, dim, heads, head_dim (heads * head_dim = dim, head_dim % 4 == 0),
  layers, gate_dim (12), smear_dim (12),
  value_embed_layers   per layer the value-embedding table 0..2 or -1
                       (record: [1,2,-1,-1,-1,-1,-1,-1,0,1,2])
  attention_layers     per layer bool (record: all but layer 6)
  key_offset_layers    per layer bool (record: layers 3 and 10, the long windows)
  smear                bool
  skips                list of [from, to]: layer from's output is added, times
                       sigmoid(its skip_lambda), to layer to's input before its
                       lambda mixing; 0 <= from < to < layers, no pair twice
                       (record: [[3, 6]]; in list order when several enter one layer)
  backout_layer        -1 or a layer (record: 7)
  scalar_padding       ones after the 4 L + 2 + len(skips) used scalars (record: (-4L-3) mod
                       world size: 1 on 8 GPUs, 0 on 1 GPU)
  attn_scale           the current softmax scale (after any YaRN; record: 0.1 at the start)
  rope_freqs           optional, head_dim/2 floats (see Rotary above)
  mlp_layers           optional, per layer bool (default all true; record 30
                       dropped layer 0's MLP, before record 49 removed that layer)

Usage (run by muonrun's C++ tests with the venv's Python):
  record50.py --config C.json --weights W.safetensors --batch B.safetensors
              --out O.safetensors [--dtype float32|float64] [--eval] [--control NAME]
    W: every parameter under the record's state-dict name, float32, loaded
       with load_state_dict(strict=True): embed.weight [vocab, dim],
       smear_gate.weight [1, smear_dim] (present even if smear is false),
       value_embeds.{0,1,2}.weight [vocab, dim], for layers with attention
       blocks.{i}.attn.qkvo_w [4 dim, dim] (rows Q, K, V, O) and
       blocks.{i}.attn.attn_gate.weight [heads, gate_dim], for every layer
       blocks.{i}.mlp.c_fc [4 dim, dim] and blocks.{i}.mlp.c_proj [4 dim, dim],
       lm_head.weight [vocab, dim], scalars [4 L + 2 + len(skips) + scalar_padding].
    B: inputs (int64 [T]), targets (int64 [T]), cu_seqlens (int32 document
       offsets 0 = c0 <= c1 <= ... <= cn = T; repeated trailing T allowed, as
       the record pads them), windows (int64 [layers], the window W in tokens
       of each layer; unused on layers without attention).
    O: `loss` (a scalar) and `grad.<name>` for every parameter, in the
       compute dtype (zeros for a parameter the loss does not reach, e.g. the
       padding); with --eval only `loss` (the mean, computed without grad).
  record50.py --yarn Y.json --out O.safetensors
    Y: {"head_dim": 128, "base_scale": 0.1, "block": 128,
        "transitions": [[3, 7], [7, 11], [11, 13]]} (all keys required).
    O: freqs.<n> (float64 [head_dim/2]) and freqs_f32.<n> (float32) for
       n = 0 .. len(transitions): the angular frequencies after n applies of
       the record's Yarn.apply(old, new) (L868-879, alpha 1, beta 32):
         rot = block * old * freq / (2 pi);  s = old / new
         w = clamp((rot - alpha) / (beta - alpha), 0, 1)
         freq *= s + w (1 - s);    attn_scale *= 0.2 ln(new / old) + 1
       and attn_scale (float64 [len + 1]). freqs.<n> is computed in float64
       from the float32 base frequencies; freqs_f32.<n> in float32 as the
       record does it (its angular_freq is a float32 tensor multiplied in
       place; rot and w are float32, s a Python float). attn_scale is a
       Python float (float64) in the record too.
  record50.py --check-state-dict --config C.json --weights W.safetensors --out O.safetensors
    loads W with load_state_dict(strict=True) and writes model.state_dict()
    back, so a test can show that the record's names and shapes round-trip.
  record50.py --self-test
    checks this transcription in Python alone (see self_test()).

--control breaks the model on purpose (the C++ tests' negative controls; each
changes the loss or the gradients of a model with random non-zero weights,
which --self-test verifies):
  wrong-window         every layer's window is W + 1 (only queries with more
                       than W earlier tokens in their document see a change:
                       small on the loss, larger on the gradients)
  no-smear             no smear even if the config has it
  no-key-offset        no key offset on any layer
  key-offset-all-dims  the key-offset layers shift the whole key by one token
  no-backout           x - backout_lambda * xb left out
  ungated-skip         x + out[from] instead of x + sigmoid(skip_lambda) * out[from]
  no-value-embed       the first layer that has a value embedding goes without it
Not kept: lambda-on-v (record 29's v = lambda0 * v instead of lambda0 on the
QKV weights). lambda0 on Q and K cancels in their rms_norm except through
eps = 1.2e-7 against a mean square of O(0.1-1), so in fp32 the two forms
agree to rounding (self_test prints the difference); they only differ for
|lambda0| of order 1e-3 or less.
"""
import json
import math
import sys
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from packed_documents import (check, check_attention, check_norm, document_window_mask, model_arguments, norm,
                              rotary, run_model)

VALUE_EMBED_TABLES = 3  # the record's value_embeds.{0,1,2}
RECORD_NAME = "record-50"
CONTROLS = ("none", "wrong-window", "no-smear", "no-key-offset", "key-offset-all-dims", "no-backout",
            "ungated-skip", "no-value-embed")
YARN_ALPHA, YARN_BETA = 1, 32  # Yarn.apply(old_window, new_window, alpha=1, beta=32), L868


@dataclass(frozen=True)
class Config:
    vocab: int
    dim: int
    heads: int
    head_dim: int
    layers: int
    gate_dim: int
    smear_dim: int
    value_embed_layers: tuple
    attention_layers: tuple
    key_offset_layers: tuple
    smear: bool
    skips: tuple
    backout_layer: int
    scalar_padding: int
    attn_scale: float
    rope_freqs: tuple | None = None
    mlp_layers: tuple | None = None

    KEYS = ("vocab", "dim", "heads", "head_dim", "layers", "gate_dim", "smear_dim", "value_embed_layers",
            "attention_layers", "key_offset_layers", "smear", "skips", "backout_layer",
            "scalar_padding", "attn_scale")

    @staticmethod
    def from_dict(d, where):
        keys = set(Config.KEYS)
        missing, unknown = keys - d.keys(), d.keys() - keys - {"rope_freqs", "mlp_layers"}
        if missing or unknown:
            sys.exit(f"{where}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
        c = Config(**{k: tuple(tuple(e) if isinstance(e, list) else e for e in v) if isinstance(v, list) else v
                      for k, v in d.items()})
        c.validate(where)
        return c

    def validate(self, where):
        def need(ok, what):
            if not ok:
                sys.exit(f"{where}: expected {what}")
        ints = ("vocab", "dim", "heads", "head_dim", "layers", "gate_dim", "smear_dim",
                "backout_layer", "scalar_padding")
        need(all(isinstance(getattr(self, k), int) and not isinstance(getattr(self, k), bool) for k in ints),
             f"integers for {', '.join(ints)}")
        need(isinstance(self.smear, bool), "smear a JSON bool")
        need(isinstance(self.attn_scale, (int, float)) and not isinstance(self.attn_scale, bool), "attn_scale a number")
        need(self.vocab > 0 and self.layers > 0 and self.dim > 0, "vocab, dim, layers > 0")
        need(self.heads * self.head_dim == self.dim, f"heads * head_dim == dim, got {self.heads} * {self.head_dim} != {self.dim}")
        need(self.head_dim % 4 == 0, f"head_dim divisible by 4 (half-truncated rotary), got {self.head_dim}")
        for key in ("value_embed_layers", "attention_layers", "key_offset_layers"):
            need(len(getattr(self, key)) == self.layers, f"{key} with {self.layers} entries")
        need(all(isinstance(a, bool) for a in self.attention_layers + self.key_offset_layers),
             "attention_layers and key_offset_layers of JSON bools")
        need(all(isinstance(t, int) and t in range(-1, VALUE_EMBED_TABLES) for t in self.value_embed_layers),
             f"value_embed_layers entries in -1..{VALUE_EMBED_TABLES - 1}")
        need(all(a or t == -1 for a, t in zip(self.attention_layers, self.value_embed_layers)),
             "no value embedding on a layer without attention (it would be unused)")
        need(all(a or not o for a, o in zip(self.attention_layers, self.key_offset_layers)),
             "no key offset on a layer without attention")
        need(0 < self.gate_dim <= self.dim, f"0 < gate_dim <= dim, got {self.gate_dim}")
        need(0 < self.smear_dim <= self.dim, f"0 < smear_dim <= dim, got {self.smear_dim}")
        need(all(isinstance(s, tuple) and len(s) == 2 and all(type(e) is int for e in s) and
                 0 <= s[0] < s[1] < self.layers for s in self.skips) and len(set(self.skips)) == len(self.skips),
             f"skips: distinct [from, to] pairs with 0 <= from < to < layers, got {self.skips}")
        need(-1 <= self.backout_layer < self.layers, f"backout_layer in -1..{self.layers - 1}")
        need(self.scalar_padding >= 0, "scalar_padding >= 0")
        need(self.mlp_layers is None or (len(self.mlp_layers) == self.layers and
                                         all(isinstance(m, bool) for m in self.mlp_layers)),
             f"mlp_layers: {self.layers} JSON bools")
        need(self.rope_freqs is None or len(self.rope_freqs) == self.head_dim // 2,
             f"rope_freqs with head_dim/2 = {self.head_dim // 2} entries")


# Record 50 itself on 8 GPUs ((-4 * 11 - 3) % 8 = 1 padding scalar), at step 0 (attn_scale 0.1, base rotary).
RECORD = Config(vocab=50304, dim=768, heads=6, head_dim=128, layers=11, gate_dim=12, smear_dim=12,
                value_embed_layers=(1, 2, -1, -1, -1, -1, -1, -1, 0, 1, 2),
                attention_layers=tuple(i != 6 for i in range(11)),
                key_offset_layers=tuple(i in (3, 10) for i in range(11)),
                smear=True, skips=((3, 6),), backout_layer=7, scalar_padding=1, attn_scale=0.1)


def base_freqs(head_dim):
    """Yarn.reset (L853-858): (1/1024)^linspace(0, 1, D/4) then D/4 zeros, float32."""
    quarter = head_dim // 4
    freq = (1 / 1024) ** torch.linspace(0, 1, steps=quarter, dtype=torch.float32)
    return torch.cat([freq, freq.new_zeros(quarter)])


def rope_freqs(c):
    if c.rope_freqs is not None:
        return torch.tensor(c.rope_freqs, dtype=torch.float32)
    return base_freqs(c.head_dim)


def rotary_tables(c, T, dtype):
    # theta in float32 as the record's buffers (t * freq is rounded to float32
    # before cos and sin), then cos and sin in the compute dtype.
    t = torch.arange(T, dtype=torch.float32)
    theta = torch.outer(t, rope_freqs(c))
    return theta.cos().to(dtype)[:, None, :], theta.sin().to(dtype)[:, None, :]


def key_offset_dims(D, all_dims=False):
    sel = torch.zeros(D, dtype=torch.bool)
    if all_dims:
        sel[:] = True
    else:
        sel[D // 4:D // 2] = True        # k[..., head_dim//4 : head_dim//2]          L944
        sel[D // 4 + D // 2:] = True     # k[..., head_dim//4 + head_dim//2 :]        L945
    return sel


def key_offset(k, all_dims=False):
    """k [T, H, D]: the selected dims of position t >= 1 come from position
    t - 1 (the record's compiled k[1:, .., dims] = k[:-1, .., dims]); position
    0 keeps its own."""
    shifted = torch.cat([k[:1], k[:-1]], dim=0)
    return torch.where(key_offset_dims(k.size(-1), all_dims).to(k.device), shifted, k)


class CausalSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        bound = 3 ** 0.5 * 0.5 * c.dim ** -0.5
        self.qkvo_w = nn.Parameter(torch.empty(4 * c.dim, c.heads * c.head_dim))
        self.attn_gate = nn.Linear(c.gate_dim, c.heads, bias=False)
        with torch.no_grad():
            self.qkvo_w[:3 * c.dim].uniform_(-bound, bound)
            self.qkvo_w[3 * c.dim:].zero_()
            self.attn_gate.weight.zero_()  # CastedLinear.reset_parameters

    def forward(self, h, ve, lambdas, mask, cos, sin, key_shift, all_dims=False, lambda_on_v=False):
        """h [T, dim] (the normed block input), ve [T, dim] or None."""
        c, T = self.c, h.size(0)
        H, D = c.heads, c.head_dim
        W = self.qkvo_w
        if lambda_on_v:   # record 29's form (self-test only)
            q, k, v = F.linear(h, W[:3 * c.dim]).view(T, 3 * H, D).chunk(3, dim=-2)
            v = lambdas[0] * v
        else:             # L939
            q, k, v = F.linear(h, lambdas[0] * W[:3 * c.dim]).view(T, 3 * H, D).chunk(3, dim=-2)
        q, k = norm(q), norm(k)
        q, k = rotary(q, cos, sin), rotary(k, cos, sin)
        if key_shift:
            k = key_offset(k, all_dims)
        if ve is not None:
            v = v + ve.view_as(v)
        y = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                           attn_mask=mask, scale=c.attn_scale).transpose(0, 1)
        y = y * torch.sigmoid(self.attn_gate(h[..., :c.gate_dim])).view(T, H, 1)
        return F.linear(y.reshape(T, H * D), lambdas[1] * W[3 * c.dim:])


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        bound = 3 ** 0.5 * 0.5 * c.dim ** -0.5
        # Both stored [4 dim, dim] (L964-966).
        self.c_fc = nn.Parameter(torch.empty(4 * c.dim, c.dim).uniform_(-bound, bound))
        self.c_proj = nn.Parameter(torch.zeros(4 * c.dim, c.dim))

    def forward(self, x):
        return F.linear(F.relu(F.linear(x, self.c_fc)).square(), self.c_proj.T)


class Block(nn.Module):
    def __init__(self, c, layer):
        super().__init__()
        self.attn = CausalSelfAttention(c) if c.attention_layers[layer] else None
        # Record 30 dropped the first layer's MLP ("skip MLP blocks for first MLP layer").
        self.mlp = MLP(c) if c.mlp_layers is None or c.mlp_layers[layer] else None

    def forward(self, x, ve, sa_lambdas, mask, cos, sin, key_shift, all_dims=False, lambda_on_v=False):
        if self.attn is not None:
            x = x + self.attn(norm(x), ve, sa_lambdas, mask, cos, sin, key_shift, all_dims, lambda_on_v)
        return x + self.mlp(norm(x)) if self.mlp is not None else x


class GPT50(nn.Module):
    def __init__(self, c, control="none"):
        super().__init__()
        if control not in CONTROLS:
            raise ValueError(control)
        self.c, self.control = c, control
        self.lambda_on_v = False  # record 29's lambda0-on-v form, for the self-test only
        L = c.layers
        # Registration order as the record's GPT.__init__ (L1004-1031); state_dict
        # then lists scalars (a direct parameter) first, as the record's does.
        self.embed = nn.Embedding(c.vocab, c.dim)
        self.smear_gate = nn.Linear(c.smear_dim, 1, bias=False)
        self.value_embeds = nn.ModuleList([nn.Embedding(c.vocab, c.dim) for _ in range(VALUE_EMBED_TABLES)])
        self.blocks = nn.ModuleList([Block(c, i) for i in range(L)])
        self.lm_head = nn.Linear(c.dim, c.vocab, bias=False)
        with torch.no_grad():
            self.smear_gate.weight.zero_()
            for ve in self.value_embeds:
                ve.weight.zero_()
            self.lm_head.weight.zero_()
        self.scalars = nn.Parameter(torch.cat([
            1.1 * torch.ones(L),                              # resid lambdas
            0 * torch.ones(L),                                # x0 lambdas
            *[torch.tensor([0.5, 1.0]) for _ in range(L)],    # SA lambdas (lambda0 on W_qkv, lambda1 on W_o)
            torch.zeros(1),                                   # smear_lambda
            0.5 * torch.ones(1),                              # backout_lambda
            -1.5 * torch.ones(len(c.skips)),                  # skip lambdas
            torch.ones(c.scalar_padding),
        ]))

    def forward(self, inputs, targets, cu_seqlens, windows):
        c, L, T, ctl = self.c, self.c.layers, inputs.size(0), self.control
        resid_lambdas = self.scalars[:L]
        x0_lambdas = self.scalars[L:2 * L]
        sa_lambdas = self.scalars[2 * L:4 * L].view(-1, 2)
        smear_lambda = self.scalars[4 * L]
        backout_lambda = self.scalars[4 * L + 1]
        skip_lambdas = self.scalars[4 * L + 2:4 * L + 2 + len(c.skips)]

        ve = [self.value_embeds[t](inputs) if t >= 0 else None for t in c.value_embed_layers]
        if ctl == "no-value-embed":
            ve[next(i for i, e in enumerate(ve) if e is not None)] = None
        windows = [int(w) + (ctl == "wrong-window") for w in windows]
        masks = {w: document_window_mask(cu_seqlens, T, w) for w in set(windows)}
        key_shift = [o and ctl != "no-key-offset" for o in c.key_offset_layers]
        cos, sin = rotary_tables(c, T, self.embed.weight.dtype)

        x = self.embed(inputs)
        if c.smear and ctl != "no-smear":  # L1092-1093, on the raw embedding
            g = smear_lambda * torch.sigmoid(self.smear_gate(x[1:, :c.smear_dim]))
            x = torch.cat([x[:1], x[1:] + g * x[:-1]])
        x = x0 = norm(x)
        outs, xb = {}, None
        for i, block in enumerate(self.blocks):
            for k, (src, dst) in enumerate(c.skips):
                if dst == i:
                    x = x + (1 if ctl == "ungated-skip" else torch.sigmoid(skip_lambdas[k])) * outs[src]
            if i == 0:
                x = (resid_lambdas[0] + x0_lambdas[0]) * x
            else:
                x = resid_lambdas[i] * x + x0_lambdas[i] * x0
            x = block(x, ve[i], sa_lambdas[i], masks[windows[i]], cos, sin, key_shift[i],
                      ctl == "key-offset-all-dims", self.lambda_on_v)
            outs[i] = x
            if i == c.backout_layer:
                xb = x
        if c.backout_layer >= 0 and ctl != "no-backout":
            x = x - backout_lambda * xb
        logits = 30 * torch.sigmoid(self.lm_head(norm(x)) / 7.5)
        return F.cross_entropy(logits.view(-1, c.vocab), targets, reduction="sum" if self.training else "mean")


# ---------------------------------------------------------------------------
# YaRN
# ---------------------------------------------------------------------------

def yarn_schedule(head_dim, base_scale, block, transitions):
    """Yarn.apply (L868-879) applied in turn. Returns (freqs64, freqs32,
    scales): lists of len(transitions) + 1."""
    f32 = base_freqs(head_dim)
    f64 = f32.double()
    scale = float(base_scale)
    freqs64, freqs32, scales = [f64.clone()], [f32.clone()], [scale]
    for old, new in transitions:
        # float64 from the float32 base
        rot = block * old * f64 / (2 * math.pi)
        s = old / new
        w = torch.clamp((rot - YARN_ALPHA) / (YARN_BETA - YARN_ALPHA), 0, 1)
        f64 = f64 * (s + w * (1 - s))
        # the record's float32 arithmetic
        rot32 = block * old * f32 / (2 * torch.pi)
        w32 = torch.clamp((rot32 - YARN_ALPHA) / (YARN_BETA - YARN_ALPHA), 0, 1)
        f32 = f32.clone()
        f32 *= s + w32 * (1 - s)
        scale *= 0.2 * math.log(new / old) + 1
        freqs64.append(f64.clone())
        freqs32.append(f32.clone())
        scales.append(scale)
    return freqs64, freqs32, scales


def run_yarn(path, out):
    with open(path) as f:
        d = json.load(f)
    keys = {"head_dim", "base_scale", "block", "transitions"}
    missing, unknown = keys - d.keys(), d.keys() - keys
    if missing or unknown:
        sys.exit(f"{path}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
    if not isinstance(d["head_dim"], int) or d["head_dim"] <= 0 or d["head_dim"] % 4:
        sys.exit(f"{path}: head_dim must be a positive multiple of 4")
    tr = d["transitions"]
    if not isinstance(tr, list) or not all(isinstance(p, list) and len(p) == 2 and all(
            isinstance(v, int) and v > 0 for v in p) for p in tr):
        sys.exit(f"{path}: transitions must be a list of [old, new] positive integer pairs")
    freqs64, freqs32, scales = yarn_schedule(d["head_dim"], d["base_scale"], d["block"], [tuple(p) for p in tr])
    o = {f"freqs.{n}": f for n, f in enumerate(freqs64)}
    o.update({f"freqs_f32.{n}": f for n, f in enumerate(freqs32)})
    o["attn_scale"] = torch.tensor(scales, dtype=torch.float64)
    save_file(o, out)
    print(f"yarn: {len(tr)} transitions, attn_scale {' -> '.join(f'{s:.7f}' for s in scales)} -> {out}")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def main():
    ap = model_arguments(__doc__, CONTROLS)
    ap.add_argument("--yarn", metavar="Y.json", help="write the YaRN frequencies and attention scales")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    if args.self_test:
        self_test()
        return
    if args.yarn:
        if args.out is None:
            ap.error("--yarn needs --out")
        run_yarn(args.yarn, args.out)
        return
    run_model(ap, args, Config, lambda c: GPT50(c, args.control), RECORD_NAME)


# ---------------------------------------------------------------------------
# Self-test
# ---------------------------------------------------------------------------

# A small model with every feature: a layer without attention (2) that is
# also a skip target, a second skip 0 -> 4, value embeddings from all three
# tables, key offsets on layers 1 and 4, backout from layer 3.
SMALL = Config(vocab=128, dim=32, heads=2, head_dim=16, layers=5, gate_dim=12, smear_dim=12,
               value_embed_layers=(1, 2, -1, -1, 0), attention_layers=(True, True, False, True, True),
               key_offset_layers=(False, True, False, False, True), smear=True, skips=((1, 2), (0, 4)),
               backout_layer=3, scalar_padding=2, attn_scale=0.1)


def randomize(model, seed=50):
    """Random weights with nothing at its (often zero) init, scalars included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "scalars":
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif name == "lm_head.weight" or "embed" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / math.sqrt(p.size(-1)))


def small_batch(c, T=96, cu=(0, 30, 31, 70, 96, 96)):
    g = torch.Generator().manual_seed(7)
    inputs = torch.randint(c.vocab, (T,), generator=g)
    targets = torch.randint(c.vocab, (T,), generator=g)
    windows = torch.tensor(([8, 24, 4, 4, 24] * 4)[:c.layers])
    return inputs, targets, torch.tensor(cu, dtype=torch.int32), windows


def loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model(*batch)
    loss.backward()
    return loss.detach(), {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
                           for n, p in model.named_parameters()}


def relative_change(a, b):
    (la, ga), (lb, gb) = a, b
    worst = abs(la.item() / lb.item() - 1)
    for n in ga:
        scale = max(ga[n].norm().item(), gb[n].norm().item())
        if scale > 0:
            worst = max(worst, (ga[n] - gb[n]).norm().item() / scale)
    return worst


def check_record_structure():
    print("the record's structure (record-size model on the meta device)")
    with torch.device("meta"):
        rec = GPT50(RECORD)
    shapes = {k: tuple(v.shape) for k, v in rec.state_dict().items()}
    # nn.Module.state_dict lists a module's own parameters before its children's:
    # scalars (a direct nn.Parameter of GPT) comes first in the record too.
    expect = {"scalars": (48,), "embed.weight": (50304, 768), "smear_gate.weight": (1, 12),
              **{f"value_embeds.{t}.weight": (50304, 768) for t in range(3)}}
    for i in range(11):
        if i != 6:
            expect[f"blocks.{i}.attn.qkvo_w"] = (3072, 768)
            expect[f"blocks.{i}.attn.attn_gate.weight"] = (6, 12)
        expect[f"blocks.{i}.mlp.c_fc"] = (3072, 768)
        expect[f"blocks.{i}.mlp.c_proj"] = (3072, 768)
    expect["lm_head.weight"] = (50304, 768)
    check(shapes == expect and list(shapes) == list(expect),
          "state dict: the record's names, shapes and order (scalars, embed, smear_gate, value_embeds, blocks, "
          "lm_head); no attention in block 6; scalars 4*11 + 3 + 1 = 48")
    total = sum(v.numel() for v in rec.state_dict().values())
    check(total == 268_665_612, f"{total:,} parameters = the record's 268,665,612 (world size 8)")
    s = GPT50(Config(**{**SMALL.__dict__, "scalar_padding": 1})).scalars.detach()
    L = SMALL.layers
    check(torch.equal(s, torch.tensor([1.1] * L + [0.0] * L + [0.5, 1.0] * L + [0.0, 0.5, -1.5, -1.5, 1.0])),
          "scalars at init (small model): [1.1 x L, 0 x L, (0.5, 1) x L, 0, 0.5, -1.5 x 2 skips, pad 1]")
    f = base_freqs(128)
    ref = (1 / 1024) ** torch.linspace(0, 1, steps=32, dtype=torch.float32)
    check(torch.equal(f[:32], ref) and f[32:].eq(0).all() and f.numel() == 64,
          "rotary: 32 frequencies (1/1024)^linspace(0,1,32), then 32 zeros")

    print("norm, MLP, rotary")
    check_norm()
    mlp = MLP(SMALL)
    with torch.no_grad():
        mlp.c_proj.normal_()
    h = torch.randn(3, SMALL.dim)
    check(torch.allclose(mlp(h), torch.relu(h @ mlp.c_fc.T).square() @ mlp.c_proj, atol=1e-5) and
          mlp.c_fc.shape == mlp.c_proj.shape == (4 * SMALL.dim, SMALL.dim),
          "MLP: relu(h @ c_fc^T)^2 @ c_proj, both stored [4 dim, dim]")
    D, T = 16, 50
    cos, sin = rotary_tables(SMALL, T, torch.float64)
    freq = rope_freqs(SMALL)
    ok = True
    for j in range(D):
        e = torch.zeros(T, 1, D, dtype=torch.float64)
        e[..., j] = 1
        y = rotary(e, cos, sin)[:, 0]
        pair = j % (D // 2)
        theta = (torch.arange(T, dtype=torch.float32) * freq[pair]).double()
        want = torch.zeros(T, D, dtype=torch.float64)
        if j < D // 2:
            want[:, j], want[:, j + D // 2] = theta.cos(), -theta.sin()
        else:
            want[:, j - D // 2], want[:, j] = theta.sin(), theta.cos()
        ok &= torch.allclose(y, want, atol=1e-7)
        ok &= (pair >= D // 4) == torch.equal(y, e[:, 0])
    check(ok, "rotary rotates the pairs (x[j], x[j + D/2]) by t * freq[j]; exactly the pairs D/4..D/2-1 stay put")


def check_qkv_layout():
    print("attention: QKV split, lambdas, key offset, gate")
    c = SMALL
    torch.manual_seed(5)
    T = 24
    h = torch.randn(T, c.dim, dtype=torch.float64)
    W = torch.randn(4 * c.dim, c.dim, dtype=torch.float64)
    l0 = torch.tensor(0.7, dtype=torch.float64)
    # The record's expression, B = 1 (L939): view(B, T, 3 heads, D).chunk(3, dim=-2).
    q, k, v = F.linear(h[None], l0 * W[:3 * c.dim]).view(1, T, 3 * c.heads, c.head_dim).chunk(3, dim=-2)
    d = c.dim
    ok = all(torch.allclose(t[0].reshape(T, d), h @ (l0 * W[r * d:(r + 1) * d]).T, atol=1e-12)
             for t, r in ((q, 0), (k, 1), (v, 2)))
    check(ok, "q, k, v = h @ (lambda0 W)^T rows [0, dim), [dim, 2 dim), [2 dim, 3 dim); head j = features [jD, (j+1)D)")

    # Key offset: exactly dims [D/4, D/2) and [3D/4, D) from the previous token.
    kk = torch.randn(T, c.heads, c.head_dim)
    ko = key_offset(kk)
    D = c.head_dim
    sel = torch.zeros(D, dtype=torch.bool)
    sel[D // 4:D // 2] = sel[3 * D // 4:] = True
    check(torch.equal(ko[1:, :, sel], kk[:-1, :, sel]) and torch.equal(ko[0], kk[0]) and
          torch.equal(ko[:, :, ~sel], kk[:, :, ~sel]) and sel.sum() == D // 2,
          f"key offset: dims {D // 4}..{D // 2 - 1} and {3 * D // 4}..{D - 1} of token t >= 1 come from t - 1, "
          "position 0 and the other dims unchanged")
    rec = kk.clone()[None]
    old = rec.clone()   # the record's assignment with its compiled (read-before-write) semantics
    rec[:, 1:, :, D // 4:D // 2] = old[:, :-1, :, D // 4:D // 2]
    rec[:, 1:, :, D // 4 + D // 2:] = old[:, :-1, :, D // 4 + D // 2:]
    check(torch.equal(rec[0], ko), "key offset = the record's L944-945 read before written")
    zero_freq = rope_freqs(c) == 0
    check(torch.equal(torch.cat([zero_freq, zero_freq]), sel),
          "the shifted dims are exactly the zero-frequency (non-rotating) halves of both rotary halves")

    # lambda1 scales the output; the gate reads h[:, :gate_dim] of the normed input.
    attn = CausalSelfAttention(c).double()
    randomize(attn)
    mask = document_window_mask(torch.tensor([0, 10, T], dtype=torch.int32), T, 6)
    cos, sin = rotary_tables(c, T, torch.float64)
    lam = torch.tensor([0.7, 1.0], dtype=torch.float64)
    with torch.no_grad():
        y1 = attn(h, None, lam, mask, cos, sin, False)
        y3 = attn(h, None, torch.tensor([0.7, 3.0], dtype=torch.float64), mask, cos, sin, False)
    check(torch.allclose(y3, 3 * y1, atol=1e-12), "lambda1 multiplies the O weights: output scales with it")
    # With O = identity the output is the heads times the gate; zero gate weights halve it.
    gate = torch.sigmoid(h[:, :c.gate_dim] @ attn.attn_gate.weight.detach().T)  # [T, heads]
    with torch.no_grad():
        attn.qkvo_w[3 * c.dim:] = torch.eye(c.dim, dtype=torch.float64)
        gated = attn(h, None, lam, mask, cos, sin, False)
        attn.attn_gate.weight.zero_()
        ungated = 2 * attn(h, None, lam, mask, cos, sin, False)
    check(torch.allclose(gated.view(T, c.heads, -1), ungated.view(T, c.heads, -1) * gate[..., None], atol=1e-12),
          f"gate: per head sigmoid(h[:, :{c.gate_dim}] @ attn_gate^T), zero weights give 0.5")


def check_model_facts():
    print("loss at the record's init (zero lm_head)")
    torch.manual_seed(0)
    model = GPT50(SMALL)
    batch = small_batch(SMALL)
    inputs = batch[0]
    loss, grads = loss_and_grads(model, batch)
    expect = inputs.numel() * math.log(SMALL.vocab)
    check(abs(loss.item() - expect) < 1e-6 * expect,
          f"training loss {loss.item():.6f} = T ln(vocab) = 96 ln 128 = {expect:.6f}")
    moved = [n for n, gr in grads.items() if gr.abs().max() > 0]
    check(moved == ["lm_head.weight"], f"at init only lm_head has a non-zero gradient (got {moved})")

    print("small random model: smear, backout, skip, lambdas, value embeddings")
    model = GPT50(SMALL)
    randomize(model)
    L = SMALL.layers
    ref = loss_and_grads(model, batch)
    outs, ins = {}, {}
    for i, b in enumerate(model.blocks):
        b.register_forward_hook(lambda m, a, out, i=i: outs.__setitem__(i, out))
        b.register_forward_pre_hook(lambda m, a, i=i: ins.__setitem__(i, a[0]))
    xs = {}
    model.lm_head.register_forward_pre_hook(lambda m, a: xs.__setitem__("final", a[0]))
    with torch.no_grad():
        model(*batch)
    s = model.scalars.detach()
    e = model.embed.weight.detach()[inputs]
    gsm = s[4 * L] * torch.sigmoid(e[1:, :SMALL.smear_dim] @ model.smear_gate.weight.detach().T)
    smeared = torch.cat([e[:1], e[1:] + gsm * e[:-1]])
    x0 = norm(smeared)
    ok = torch.allclose(ins[0], (s[0] + s[L]) * x0, atol=1e-6)
    ok &= torch.allclose(ins[2], s[2] * (outs[1] + torch.sigmoid(s[4 * L + 2]) * outs[1]) + s[L + 2] * x0, atol=1e-5)
    ok &= torch.allclose(ins[3], s[3] * outs[2] + s[L + 3] * x0, atol=1e-5)
    ok &= torch.allclose(ins[4], s[4] * (outs[3] + torch.sigmoid(s[4 * L + 3]) * outs[0]) + s[L + 4] * x0, atol=1e-5)
    check(ok, "x0 = rms_norm(smeared embedding); block inputs resid*x + x0l*x0; skips from layers 1 and 0 "
              "added with sigmoid(their skip_lambda) before the mixing of layers 2 and 4")
    back = outs[L - 1] - s[4 * L + 1] * outs[SMALL.backout_layer]
    check(torch.allclose(xs["final"], norm(back), atol=1e-5), "final x = rms_norm(x - backout_lambda * x_backout)")

    # Smear at smear_lambda = 0 and backout at lambda = 0 are no-ops.
    for idx, control, what in ((4 * L, "no-smear", "smear at smear_lambda 0 is the identity"),
                               (4 * L + 1, "no-backout", "backout at backout_lambda 0 is a no-op")):
        m0 = GPT50(SMALL)
        m0.load_state_dict(model.state_dict())
        with torch.no_grad():
            m0.scalars[idx] = 0
        m1 = GPT50(SMALL, control)
        m1.load_state_dict(m0.state_dict())
        a, b = loss_and_grads(m0, batch), loss_and_grads(m1, batch)
        same = a[0].item() == b[0].item() and all(torch.equal(a[1][n], b[1][n]) for n in a[1] if n != "scalars")
        check(same, f"{what} (loss and all gradients but the scalars' bit-identical to --control {control})")

    # The scalars' layout, read off which entries get a gradient.
    used = torch.zeros(4 * L + 2 + len(SMALL.skips) + SMALL.scalar_padding, dtype=torch.bool)
    used[:2 * L] = True
    for i, a in enumerate(SMALL.attention_layers):
        used[2 * L + 2 * i] = used[2 * L + 2 * i + 1] = a
    used[4 * L:4 * L + 2 + len(SMALL.skips)] = True
    check(torch.equal(ref[1]["scalars"] != 0, used),
          "scalars: [resid (L), x0 (L), SA pairs of attention layers (both lambdas), smear, backout, skips, "
          "padding] by their gradients")
    no_attn = [i for i, a in enumerate(SMALL.attention_layers) if not a]
    check(all(f"blocks.{i}.attn.qkvo_w" not in model.state_dict() for i in no_attn),
          f"layer {no_attn} without attention has no attention weights")
    for t in range(VALUE_EMBED_TABLES):
        users = [i for i, u in enumerate(SMALL.value_embed_layers) if u == t]
        table = model.value_embeds[t].weight
        saved = table.detach().clone()
        with torch.no_grad():
            model(*batch)
            base = dict(outs)
            table.add_(1.0)
            model(*batch)
            table.copy_(saved)
        first = next((i for i in range(L) if not torch.equal(outs[i], base[i])), None)
        check(first == users[0], f"value-embedding table {t} feeds layers {users} (first block it reaches: {first})")

    model.eval()
    with torch.no_grad():
        mean = model(*batch)
    model.train()
    check(abs(ref[0].item() - inputs.numel() * mean.item()) < 1e-5 * abs(ref[0].item()),
          f"training loss (sum) {ref[0].item():.4f} = T x evaluation loss (mean) {mean.item():.6f}")
    z = {}
    model.lm_head.register_forward_hook(lambda m, a, out: z.setdefault("z", out.double()))
    with torch.no_grad():
        model(*batch)
    capped = 15 * torch.tanh(z["z"] / 15) + 15
    explicit = -capped.log_softmax(-1).gather(1, batch[1][:, None]).mean()
    check(abs(explicit.item() - mean.item()) < 1e-5 * mean.item(),
          f"logits 30 sigmoid(z/7.5) = 15 tanh(z/15) + 15 over all {SMALL.vocab} entries: loss {explicit.item():.6f}")

    print("float32 vs float64, negative controls")
    m64 = GPT50(SMALL)
    m64.load_state_dict(model.state_dict())
    m64.double()
    ref64 = loss_and_grads(m64, batch)
    rel = relative_change(ref, (ref64[0].float(), {n: g.float() for n, g in ref64[1].items()}))
    check(rel < 1e-5, f"float32 loss and gradients within {rel:.1e} of float64")
    for control in CONTROLS[1:]:
        broken = GPT50(SMALL, control)
        broken.load_state_dict(model.state_dict())
        got = loss_and_grads(broken, batch)
        rl = abs(got[0].item() / ref[0].item() - 1)
        rel = relative_change(got, ref)
        check(rel > 1e-3, f"--control {control} changes the loss by {rl:.1e}, loss or gradients by {rel:.1e}")
    # lambda-on-v: not kept as a control (see the module docstring).
    lv = GPT50(SMALL)
    lv.load_state_dict(model.state_dict())
    lv.lambda_on_v = True
    rel = relative_change(loss_and_grads(lv, batch), ref)
    check(rel < 1e-4, f"lambda-on-v (record 29's lambda0 * v) differs by only {rel:.1e} from lambda0 on W_qkv "
                      "(lambda0 cancels in q, k's rms_norm but for eps): dropped as a control")


def check_yarn():
    print("YaRN (Yarn.apply L868-879)")
    f64, f32, scales = yarn_schedule(128, 0.1, 128, [(3, 7), (7, 11), (11, 13)])
    want = [0.1, 0.1169460, 0.1275175, 0.1317780]
    check(all(abs(a - b) < 5e-8 for a, b in zip(scales, want)),
          "attn_scale 0.1 -> " + " -> ".join(f"{s:.7f}" for s in scales[1:]) + " (notes: 0.1169460, 0.1275175, 0.1317780)")
    final = [1.0, 0.7996, 0.6394, 0.5042, 0.3560, 0.2545, 0.1718, 0.1112]
    f = f64[-1]
    check(all(abs(f[i].item() - v) < 5e-5 for i, v in enumerate(final)) and abs(f[31].item() - 2.254e-4) < 5e-8,
          "final freq[0..7] = " + ", ".join(f"{v:.4f}" for v in f[:8].tolist()) + f", freq[31] = {f[31].item():.4g}")
    check(f[0].item() == 1.0 and f[32:].eq(0).all(), "freq[0] untouched (w = 1), the zero frequencies stay 0")
    err = max((a.double() - b).abs().max().item() / b.abs().max().item() for a, b in zip(f32, f64))
    check(err < 1e-6, f"the record's float32 arithmetic within {err:.1e} (relative) of float64")
    r = 128 * 3 * base_freqs(128).double() / (2 * math.pi)
    w = ((r - 1) / 31).clamp(0, 1)
    check(torch.allclose(f64[1], base_freqs(128).double() * (3 / 7 + w * (1 - 3 / 7)), rtol=1e-15),
          "one apply: freq * (s + w (1 - s)), w = clamp((128 old freq / 2 pi - 1) / 31, 0, 1), s = old / new")


def self_test():
    check_attention(0.1)
    check_record_structure()
    check_qkv_layout()
    check_model_facts()
    check_yarn()
    print("self-test passed")


if __name__ == "__main__":
    main()
