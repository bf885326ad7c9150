#!/usr/bin/env python3
"""Independent PyTorch reference for the model of NanoGPT speedrun record 29
(2025-09-03_FA3, 2.73 min): packed documents, windowed attention, value
embeddings, sparse attention gate, sigmoid-capped logits.

Transcribed from the record's own script -- the classes CastedLinear, Rotary,
CausalSelfAttention, MLP, Block and GPT at the top of
records/track_1_short/2025-09-03_FA3/*.txt in KellerJordan/modded-nanogpt
(each record's log starts with its train_gpt.py) -- and not from muonrun's
C++, so that a C++ test can compare muonrun's loss and gradients with code
that shares nothing with it but PyTorch's kernels. State-dict names are the
record's. Sizes come from a JSON config so that small CPU tests can use it;
everything is fp32 (or float64 with --dtype float64), where the record runs
bf16 activations and an FP8 head: the math is otherwise the record's:

  x = x0 = rms_norm(embed[idx])                                    [1, T, dim]
  block i:  x = l0*x + l1*x0                     (block lambdas, scalars[L + 2i:])
            if layer i has attention, with n = rms_norm(x):
              q, k, v = n @ qkvo_w[:3]^T, split into heads
              q, k = rotary(rms_norm(q)), rotary(rms_norm(k))
              v = sa0*v + sa1*value_embeds[t][idx]   (or sa0*v; scalars[3L + 2i:])
              y = softmax(attn_scale * q k^T + document/window mask) v
              y = y * sigmoid(n[..., :gate_dim] @ attn_gate^T)     (per head)
              x = x + y @ qkvo_w[3]^T
            x = x + relu(rms_norm(x) @ c_fc)^2 @ c_proj^T     (both stored [dim, 4 dim])
  U-net:  with n = L // 2, blocks 0..n-1 push their output; before block
          n + j, x = x + scalars[j] * pop()   (last in, first out)
  logits = 30 * sigmoid((rms_norm(x) @ lm_head^T) / 7.5)
  loss = cross_entropy(logits, targets), summed over tokens (training) or the
         mean (--eval), as the record's reduction="sum" if self.training else "mean".

rms_norm has no weight and eps = 1.1920929e-07 (float32's machine epsilon):
the record calls F.rms_norm(x, (x.size(-1),)) with eps=None, and ATen then
takes the epsilon of the op-math type, which is float32 for float32 and
bfloat16 input (float64's 2.2e-16 for float64 input, so it is written out
here to keep --dtype float64 the same function). Rotary (the record's
half-truncated RoPE): freq = (1/1024) ** linspace(0, 1, head_dim/4) then
head_dim/4 zeros, theta = t * freq in float32 with t the position along the
packed sequence (not from each document's start), on the halves
(x1, x2) = (x[..., :D/2], x[..., D/2:]): y1 = x1 cos + x2 sin,
y2 = -x1 sin + x2 cos. The attention mask stands in for the record's
flash_attn_varlen_func(causal=True, window_size=(W, 0)): key j is visible to
query i iff j <= i, both lie in the same document of cu_seqlens, and
i - j <= W, so a query sees W + 1 keys including itself.

Config (JSON): {"vocab": padded vocabulary (50304 in the record), "dim",
"heads", "head_dim" (heads * head_dim = dim), "layers" (even),
"value_embed_layers": per layer the value-embedding table 0..2 or -1
(record: [0,1,2,-1,-1,-1,-1,-1,-1,0,1,2]), "attention_layers": per layer true
or false (record: all but layer 7), "attn_scale" (0.12), "gate_dim" (12),
"scalar_padding": ones after the 5 L used scalars (the record pads to a
multiple of the world size: 4 on 8 GPUs), optional "rope_freqs": head_dim/2
float32 frequencies (default: the record's rule above)}.

Usage (run by muonrun's C++ tests with the venv's Python):
  record29.py --config C.json --weights W.safetensors --batch B.safetensors
              --out O.safetensors [--dtype float32|float64] [--eval]
              [--control none|wrong-window|no-value-embed|gate-on-raw-input]
    W: every parameter under the record's state-dict name (embed.weight,
       value_embeds.{0,1,2}.weight, blocks.{i}.attn.qkvo_w,
       blocks.{i}.attn.attn_gate.weight, blocks.{i}.mlp.c_fc,
       blocks.{i}.mlp.c_proj, lm_head.weight, scalars), float32, loaded with
       load_state_dict(strict=True).
    B: inputs (int64 [T]), targets (int64 [T]), cu_seqlens (int32 document
       offsets 0 = c0 <= c1 <= ... <= cn = T; repeated trailing T allowed, as
       the record pads them), windows (int64 [layers], the window W in tokens
       of each layer; unused on layers without attention).
    O: `loss` (a scalar) and `grad.<name>` for every parameter, in the
       compute dtype (zeros for a parameter the loss does not reach, e.g. the
       padding); with --eval only `loss` (the mean, computed without grad).
  record29.py --check-state-dict --config C.json --weights W.safetensors --out O.safetensors
    loads W with load_state_dict(strict=True) and writes model.state_dict()
    back, so a test can show that the record's names and shapes round-trip.
  record29.py --self-test
    checks this transcription in Python alone: the mask attention against
    explicit float64 softmax math (values and gradients), the loss at the
    record's zero-head init (T ln vocab), and the record's easy-to-get-wrong
    facts (vocabulary everywhere, the norm's eps, c_fc/c_proj orientation,
    gate input and 0.5 at init, rotary pairs and zero frequencies, value
    embeddings, layer without attention, LIFO skips, window W = W + 1 keys,
    summed training loss, only lm_head moving by +-lr in the first step).

--control breaks the model on purpose (the C++ tests' negative controls; each
changes the loss of a model with non-zero weights):
  wrong-window       every layer's window is W + 1 (one more key visible; it
                     only touches queries with more than W earlier tokens in
                     their document, so its effect on the loss can be small:
                     ~1e-4 relative in a 96-token example, the gradients move
                     by ~30%)
  no-value-embed     the first layer that has a value embedding (layer 0 in
                     the record) uses v = sa0 * v without it
  gate-on-raw-input  the gate reads the block input before rms_norm (after
                     the block lambdas) instead of the normed attention input
"""
import math
import sys
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from packed_documents import (check, check_attention, check_norm, document_window_mask, model_arguments, norm,
                              rotary, run_model)

VALUE_EMBED_TABLES = 3  # the record's value_embeds.{0,1,2}
RECORD_NAME = "record-29"
CONTROLS = ("none", "wrong-window", "no-value-embed", "gate-on-raw-input")


@dataclass(frozen=True)
class Config:
    vocab: int
    dim: int
    heads: int
    head_dim: int
    layers: int
    value_embed_layers: tuple
    attention_layers: tuple
    attn_scale: float
    gate_dim: int
    scalar_padding: int
    rope_freqs: tuple | None = None

    @staticmethod
    def from_dict(d, where):
        keys = {"vocab", "dim", "heads", "head_dim", "layers", "value_embed_layers", "attention_layers",
                "attn_scale", "gate_dim", "scalar_padding"}
        missing, unknown = keys - d.keys(), d.keys() - keys - {"rope_freqs"}
        if missing or unknown:
            sys.exit(f"{where}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
        c = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        c.validate(where)
        return c

    def validate(self, where):
        def need(ok, what):
            if not ok:
                sys.exit(f"{where}: expected {what}")
        need(self.heads * self.head_dim == self.dim, f"heads * head_dim == dim, got {self.heads} * {self.head_dim} != {self.dim}")
        need(self.head_dim % 4 == 0, f"head_dim divisible by 4 (half-truncated rotary), got {self.head_dim}")
        need(self.layers % 2 == 0 and self.layers > 0, f"an even number of layers (U-net), got {self.layers}")
        need(len(self.value_embed_layers) == self.layers, f"value_embed_layers with {self.layers} entries")
        need(len(self.attention_layers) == self.layers, f"attention_layers with {self.layers} entries")
        need(all(t in range(-1, VALUE_EMBED_TABLES) for t in self.value_embed_layers),
             f"value_embed_layers entries in -1..{VALUE_EMBED_TABLES - 1}")
        need(all(a or t == -1 for a, t in zip(self.attention_layers, self.value_embed_layers)),
             "no value embedding on a layer without attention (it would be unused)")
        need(0 < self.gate_dim <= self.dim, f"0 < gate_dim <= dim, got {self.gate_dim}")
        need(self.scalar_padding >= 0, "scalar_padding >= 0")
        need(self.rope_freqs is None or len(self.rope_freqs) == self.head_dim // 2,
             f"rope_freqs with head_dim/2 = {self.head_dim // 2} entries")


# Record 29 itself (world size 8: (-12 * 5) % 8 = 4 padding scalars).
RECORD = Config(vocab=50304, dim=768, heads=6, head_dim=128, layers=12,
                value_embed_layers=(0, 1, 2, -1, -1, -1, -1, -1, -1, 0, 1, 2),
                attention_layers=tuple(i != 7 for i in range(12)),
                attn_scale=0.12, gate_dim=12, scalar_padding=4)


def rope_freqs(c):
    if c.rope_freqs is not None:
        return torch.tensor(c.rope_freqs, dtype=torch.float32)
    quarter = c.head_dim // 4
    freq = (1 / 1024) ** torch.linspace(0, 1, steps=quarter, dtype=torch.float32)
    return torch.cat([freq, freq.new_zeros(quarter)])


def rotary_tables(c, T, dtype):
    # theta in float32 as the record's buffers (it matters for long sequences:
    # t * freq is rounded to float32 before cos and sin).
    t = torch.arange(T, dtype=torch.float32)
    theta = torch.outer(t, rope_freqs(c))
    return theta.cos().to(dtype)[None, :, None, :], theta.sin().to(dtype)[None, :, None, :]


class CausalSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        bound = 3 ** 0.5 * 0.5 * c.dim ** -0.5
        self.qkvo_w = nn.Parameter(torch.empty(4, c.heads * c.head_dim, c.dim))
        self.attn_gate = nn.Linear(c.gate_dim, c.heads, bias=False)
        with torch.no_grad():
            self.qkvo_w[:3].uniform_(-bound, bound)
            self.qkvo_w[3].zero_()
            self.attn_gate.weight.zero_()

    def heads_output(self, x, ve, lambdas, mask, cos, sin):
        """The attention's heads before the gate: [1, T, heads, head_dim]."""
        B, T, H, D = x.size(0), x.size(1), self.c.heads, self.c.head_dim
        q, k, v = F.linear(x, self.qkvo_w[:3].flatten(end_dim=1)).view(B, T, 3 * H, D).chunk(3, dim=-2)
        q, k = norm(q), norm(k)
        q, k = rotary(q, cos, sin), rotary(k, cos, sin)
        v = lambdas[0] * v + lambdas[1] * ve.view_as(v) if ve is not None else lambdas[0] * v
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=mask, scale=self.c.attn_scale)
        return y.transpose(1, 2)

    def forward(self, x, ve, lambdas, mask, cos, sin, gate_input):
        B, T, H = x.size(0), x.size(1), self.c.heads
        y = self.heads_output(x, ve, lambdas, mask, cos, sin)
        y = y * torch.sigmoid(self.attn_gate(gate_input[..., :self.c.gate_dim])).view(B, T, H, 1)
        return F.linear(y.contiguous().view(B, T, H * self.c.head_dim), self.qkvo_w[3])


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        bound = 3 ** 0.5 * 0.5 * c.dim ** -0.5
        # Both stored [dim, 4 dim] (the record sorts Muon's parameters by shape).
        self.c_fc = nn.Parameter(torch.empty(c.dim, 4 * c.dim).uniform_(-bound, bound))
        self.c_proj = nn.Parameter(torch.zeros(c.dim, 4 * c.dim))

    def forward(self, x):
        return F.linear(F.relu(F.linear(x, self.c_fc.T)).square(), self.c_proj)


class Block(nn.Module):
    def __init__(self, c, layer):
        super().__init__()
        self.attn = CausalSelfAttention(c) if c.attention_layers[layer] else None
        self.mlp = MLP(c)

    def forward(self, x, ve, x0, lambdas, sa_lambdas, mask, cos, sin, gate_on_raw_input=False):
        x = lambdas[0] * x + lambdas[1] * x0
        if self.attn is not None:
            n = norm(x)
            x = x + self.attn(n, ve, sa_lambdas, mask, cos, sin, x if gate_on_raw_input else n)
        return x + self.mlp(norm(x))


class GPT29(nn.Module):
    def __init__(self, c, control="none", fp8_head=False):
        super().__init__()
        self.c, self.control, self.fp8_head = c, control, fp8_head
        L = c.layers
        self.embed = nn.Embedding(c.vocab, c.dim)
        self.value_embeds = nn.ModuleList([nn.Embedding(c.vocab, c.dim) for _ in range(VALUE_EMBED_TABLES)])
        self.blocks = nn.ModuleList([Block(c, i) for i in range(L)])
        self.lm_head = nn.Linear(c.dim, c.vocab, bias=False)
        with torch.no_grad():
            self.lm_head.weight.zero_()
        self.scalars = nn.Parameter(torch.cat([
            torch.ones(L),                                   # skip weights (the first L // 2 used)
            torch.tensor([1.0, 0.0]).repeat(L),              # block lambdas
            torch.tensor([0.5, 0.5]).repeat(L),              # attention (value) lambdas
            torch.ones(c.scalar_padding),
        ]))

    def forward(self, inputs, targets, cu_seqlens, windows):
        c, L, T = self.c, self.c.layers, inputs.size(0)
        ve = [self.value_embeds[t](inputs) if t >= 0 else None for t in c.value_embed_layers]
        if self.control == "no-value-embed":
            ve[next(i for i, e in enumerate(ve) if e is not None)] = None
        windows = [int(w) + (self.control == "wrong-window") for w in windows]
        masks = {w: document_window_mask(cu_seqlens, T, w) for w in set(windows)}
        cos, sin = rotary_tables(c, T, self.embed.weight.dtype)

        x = x0 = norm(self.embed(inputs)[None])
        n = L // 2
        skip_weights = self.scalars[:n]
        lambdas = self.scalars[L:3 * L].view(-1, 2)
        sa_lambdas = self.scalars[3 * L:5 * L].view(-1, 2)
        skips = []
        for i, block in enumerate(self.blocks):
            if i >= n:
                x = x + skip_weights[i - n] * skips.pop()
            x = block(x, ve[i], x0, lambdas[i], sa_lambdas[i], masks[windows[i]], cos, sin,
                      self.control == "gate-on-raw-input")
            if i < n:
                skips.append(x)
        if self.fp8_head:
            logits = fp8_head_logits(norm(x).flatten(0, -2), self.lm_head.weight, c.dim).float()
        else:
            logits = self.lm_head(norm(x))
        logits = 30 * torch.sigmoid(logits / 7.5)
        return F.cross_entropy(logits.view(-1, c.vocab), targets, reduction="sum" if self.training else "mean")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def fp8_head_logits(x, w, dim):
    """The record's FP8 head in training (CastedLinear with use_fp8 -> the
    custom op nanogpt::mm, by @YouJiacheng): x and w scaled, cast to e4m3fn,
    multiplied by torch._scaled_mm with fast accumulation into bf16; the
    record's scales x_s = sqrt(dim) / 448, w_s = 2^-9. Forward only: the
    C++ test compares the loss."""
    x_s, w_s = dim ** 0.5 / 448, 2 ** -9
    x_f8 = x.div(x_s).to(torch.float8_e4m3fn)
    w_f8 = w.div(w_s).to(torch.float8_e4m3fn)
    return torch._scaled_mm(x_f8, w_f8.T, out_dtype=torch.bfloat16, scale_a=x.new_tensor(x_s, dtype=torch.float32),
                            scale_b=x.new_tensor(w_s, dtype=torch.float32), use_fast_accum=True)


def main():
    ap = model_arguments(__doc__, CONTROLS)
    ap.add_argument("--fp8-head", action="store_true", help="the record's FP8 head (training loss only)")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    if args.self_test:
        self_test()
        return
    # The FP8 head gives the training (summed) loss only: _scaled_mm has no autograd.
    run_model(ap, args, Config, lambda c: GPT29(c, args.control, args.fp8_head), RECORD_NAME,
              loss_only="fp8-head" if args.fp8_head else None)


# ---------------------------------------------------------------------------
# Self-test
# ---------------------------------------------------------------------------

SMALL = Config(vocab=128, dim=32, heads=2, head_dim=16, layers=4, value_embed_layers=(0, 1, -1, 2),
               attention_layers=(True, True, False, True), attn_scale=0.12, gate_dim=12, scalar_padding=3)


def randomize(model):
    """Random weights with nothing at its (often zero) init, scalars included."""
    g = torch.Generator().manual_seed(29)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "scalars":
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif name == "lm_head.weight" or "embed" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / math.sqrt(p.size(-1)))


def small_batch(c, T=96, cu=(0, 30, 31, 70, 96)):
    g = torch.Generator().manual_seed(7)
    inputs = torch.randint(c.vocab, (T,), generator=g)
    targets = torch.randint(c.vocab, (T,), generator=g)
    windows = torch.tensor([16, 4, 4, 0, 8, 4][:c.layers] + [16] * max(0, c.layers - 6))
    return inputs, targets, torch.tensor(cu, dtype=torch.int32), windows


def check_init_loss():
    print("loss at the record's init (zero lm_head)")
    torch.manual_seed(0)
    model = GPT29(SMALL)
    inputs, targets, cu, windows = small_batch(SMALL)
    loss = model(inputs, targets, cu, windows)
    expect = inputs.numel() * math.log(SMALL.vocab)
    check(abs(loss.item() - expect) < 1e-6 * expect,
          f"training loss {loss.item():.6f} = T ln(vocab) = 96 ln 128 = {expect:.6f} (all padded logits count)")
    loss.backward()
    moved = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().max() > 0]
    check(moved == ["lm_head.weight"], f"at init only lm_head has a non-zero gradient (got {moved})")
    # The record's DistAdam, first step, lr 0.008 * lr_mul 1 for the head:
    # m = 0.2 g, v = 0.05 g^2, update = lr * sqrt(1 - 0.95) / (1 - 0.8) * m / (sqrt(v) + 1e-10).
    gr = model.lm_head.weight.grad
    m, v = 0.2 * gr, 0.05 * gr * gr
    update = 0.008 * (math.sqrt(1 - 0.95) / (1 - 0.8)) * m / (v.sqrt() + 1e-10)
    nz = gr != 0
    err = (update.abs()[nz] - 0.008).abs().max().item()
    check(nz.float().mean() > 0.99 and err < 1e-5 * 0.008,
          f"the first Adam step moves lm_head by +-0.008 per element (max deviation {err:.1e}: eps 1e-10)")


def check_record_facts():
    print("the record's structure (record-size model on the meta device)")
    with torch.device("meta"):
        rec = GPT29(RECORD)
    shapes = {k: tuple(v.shape) for k, v in rec.state_dict().items()}
    expect = {"embed.weight": (50304, 768), **{f"value_embeds.{t}.weight": (50304, 768) for t in range(3)}}
    for i in range(12):
        if i != 7:
            expect[f"blocks.{i}.attn.qkvo_w"] = (4, 768, 768)
            expect[f"blocks.{i}.attn.attn_gate.weight"] = (6, 12)
        expect[f"blocks.{i}.mlp.c_fc"] = (768, 3072)
        expect[f"blocks.{i}.mlp.c_proj"] = (768, 3072)
    expect["lm_head.weight"] = (50304, 768)
    expect["scalars"] = (64,)
    check(shapes == expect, "state dict: the record's 63 names and shapes, vocab 50304 in all five tables, "
                            "no attention in block 7, scalars 12 + 24 + 24 + 4")
    f = rope_freqs(RECORD)
    ref = (1 / 1024) ** torch.linspace(0, 1, steps=32, dtype=torch.float32)
    check(torch.equal(f[:32], ref) and f[32:].eq(0).all() and f.numel() == 64,
          "rotary: 32 frequencies (1/1024)^linspace(0,1,32), then 32 zeros")

    print("norm, MLP, rotary, gate")
    check_norm()

    mlp = MLP(SMALL)
    with torch.no_grad():
        mlp.c_proj.normal_()
    h = torch.randn(3, SMALL.dim)
    check(torch.allclose(mlp(h), torch.relu(h @ mlp.c_fc).square() @ mlp.c_proj.T, atol=1e-5) and
          mlp.c_fc.shape == mlp.c_proj.shape == (SMALL.dim, 4 * SMALL.dim),
          "MLP: x @ c_fc (dim -> 4 dim), relu^2, @ c_proj^T (4 dim -> dim); both stored [dim, 4 dim]")

    D, T = 16, 50
    cos, sin = rotary_tables(SMALL, T, torch.float64)
    freq = rope_freqs(SMALL).double()
    ok = True
    for j in range(D):
        e = torch.zeros(1, T, 1, D, dtype=torch.float64)
        e[..., j] = 1
        y = rotary(e, cos, sin)[0, :, 0]
        pair = j % (D // 2)
        theta = torch.outer(torch.arange(T, dtype=torch.float32), freq.float()[pair:pair + 1]).double()[:, 0]
        want = torch.zeros(T, D, dtype=torch.float64)
        if j < D // 2:  # x1 = e_j: y1 = cos, y2 = -sin
            want[:, j], want[:, j + D // 2] = theta.cos(), -theta.sin()
        else:           # x2 = e_j: y1 = sin, y2 = cos
            want[:, j - D // 2], want[:, j] = theta.sin(), theta.cos()
        ok &= torch.allclose(y, want, atol=1e-7)
        if pair >= D // 4:
            ok &= torch.equal(y, e[0, :, 0])
    check(ok, "rotary rotates the pairs (x[j], x[j + D/2]) by t * freq[j]; pairs D/4..D/2-1 stay put")
    q = torch.randn(1, T, 2, D, dtype=torch.float64)
    check(torch.allclose(norm(rotary(q, cos, sin)), rotary(norm(q), cos, sin), atol=1e-12),
          "q, k normed before rotary: the rotation keeps the RMS, so the order is immaterial up to rounding")

    # Gate: zero at init -> sigmoid(0) = 0.5 on every head.
    torch.manual_seed(3)
    attn = CausalSelfAttention(SMALL)
    n = norm(torch.randn(1, T, SMALL.dim))
    lam = torch.tensor([0.5, 0.5])
    cu = torch.tensor([0, 20, T], dtype=torch.int32)
    mask = document_window_mask(cu, T, 10)
    cos, sin = rotary_tables(SMALL, T, torch.float32)
    with torch.no_grad():
        attn.qkvo_w[3].normal_()
        half = F.linear(0.5 * attn.heads_output(n, None, lam, mask, cos, sin).reshape(1, T, -1), attn.qkvo_w[3])
        full = attn(n, None, lam, mask, cos, sin, n)
    check(torch.allclose(full, half, atol=1e-6), "the zero-init gate halves every head's output")
    with torch.no_grad():
        attn.attn_gate.weight.normal_()
    gate_input = n.clone().requires_grad_(True)
    attn(n, None, lam, mask, cos, sin, gate_input).square().sum().backward()
    reads = gate_input.grad.abs().amax(dim=(0, 1)) != 0
    check(reads[:SMALL.gate_dim].all() and not reads[SMALL.gate_dim:].any(),
          f"the gate reads the first gate_dim = {SMALL.gate_dim} channels of its input")

    # The gate reads the NORMED block input: with lambdas (1, 0) the attention
    # branch of a block is then blind to the scale of x; on the raw input not.
    block = Block(SMALL, 0)
    randomize(block)
    got = {}
    block.attn.register_forward_hook(lambda m, a, out: got.setdefault(len(got), out))
    one = torch.tensor([1.0, 0.0])
    xb = torch.randn(1, T, SMALL.dim)
    with torch.no_grad():
        for raw in (False, True):
            got.clear()
            block(xb, None, xb, one, lam, mask, cos, sin, raw)
            block(3 * xb, None, xb, one, lam, mask, cos, sin, raw)
            same = torch.allclose(got[0], got[1], atol=1e-6)
            check(same != raw, f"gate on the {'raw' if raw else 'normed'} input: attention branch "
                               f"{'changes' if raw else 'unchanged'} when the block input is scaled by 3")


def check_model_facts():
    print("U-net, value embeddings, layer without attention, summed loss (small random model)")
    model = GPT29(SMALL)
    randomize(model)
    inputs, targets, cu, windows = small_batch(SMALL)
    ins, outs = {}, {}
    for i, b in enumerate(model.blocks):
        b.register_forward_hook(lambda m, a, out, i=i: outs.__setitem__(i, out))
        b.register_forward_pre_hook(lambda m, a, i=i: ins.__setitem__(i, a[0]))
    loss = model(inputs, targets, cu, windows)
    n, L, s = SMALL.layers // 2, SMALL.layers, model.scalars.detach()
    lifo = all(torch.allclose(ins[n + j], outs[n + j - 1] + s[j] * outs[n - 1 - j], atol=1e-6) for j in range(n))
    check(lifo, "decoder block n + j adds skip_weight[j] * (output of block n - 1 - j): last in, first out")
    loss.backward()
    # The scalars' layout, read off which entries get a gradient: skip weights
    # 0..n-1, every block lambda, sa0 of each attention layer, sa1 of each
    # attention layer with a value embedding; nothing else (padding included).
    used = torch.zeros(5 * L + SMALL.scalar_padding, dtype=torch.bool)
    used[:n] = True
    used[L:3 * L] = True
    for i, (a, t) in enumerate(zip(SMALL.attention_layers, SMALL.value_embed_layers)):
        used[3 * L + 2 * i] = a
        used[3 * L + 2 * i + 1] = t >= 0
    check(torch.equal(model.scalars.grad != 0, used),
          "scalars: [skip weights (first L/2 used), block lambdas, attention lambdas, padding] by their gradients")
    no_attn = [i for i, a in enumerate(SMALL.attention_layers) if not a]
    check(all(f"blocks.{i}.attn.qkvo_w" not in model.state_dict() for i in no_attn),
          f"layer {no_attn} without attention has no attention weights")
    for t in range(VALUE_EMBED_TABLES):  # the first block that table t reaches is its first user
        users = [i for i, u in enumerate(SMALL.value_embed_layers) if u == t]
        table = model.value_embeds[t].weight
        saved = table.detach().clone()
        with torch.no_grad():
            model(inputs, targets, cu, windows)
            base = dict(outs)
            table.add_(1.0)
            model(inputs, targets, cu, windows)
            table.copy_(saved)
        first = next((i for i in range(L) if not torch.equal(outs[i], base[i])), None)
        check(first == users[0], f"value-embedding table {t} feeds layers {users} (first block it reaches: {first})")
    model.eval()
    with torch.no_grad():
        mean = model(inputs, targets, cu, windows)
    check(abs(loss.item() - inputs.numel() * mean.item()) < 1e-5 * abs(loss.item()),
          f"training loss (sum) {loss.item():.4f} = T x evaluation loss (mean) {mean.item():.6f}")
    z = {}
    model.lm_head.register_forward_hook(lambda m, a, out: z.setdefault("z", out[0].double()))
    with torch.no_grad():
        model(inputs, targets, cu, windows)
    capped = 15 * torch.tanh(z["z"] / 15) + 15  # = 30 sigmoid(z / 7.5), since 2 sigmoid(2u) = tanh(u) + 1
    explicit = -capped.log_softmax(-1).gather(1, targets[:, None]).mean()
    check(abs(explicit.item() - mean.item()) < 1e-5 * mean.item(),
          f"logits 15 tanh(z/15) + 15 over all {SMALL.vocab} entries: loss {explicit.item():.6f}")

    print("float32 vs float64, negative controls")
    grads32 = {k: p.grad.clone() for k, p in model.named_parameters()}
    model64 = GPT29(SMALL)
    model64.load_state_dict(model.state_dict())
    model64.double()
    loss64 = model64(inputs, targets, cu, windows)
    loss64.backward()
    worst = max(((grads32[k].double() - p.grad).norm() / p.grad.norm().clamp_min(1e-300)).item()
                for k, p in model64.named_parameters() if p.grad is not None and p.grad.norm() > 0)
    check(abs(loss.item() / loss64.item() - 1) < 1e-6 and worst < 1e-5,
          f"float32 loss within {abs(loss.item() / loss64.item() - 1):.1e} of float64, gradients within {worst:.1e}")
    for control in CONTROLS[1:]:
        broken = GPT29(SMALL, control)
        broken.load_state_dict(model.state_dict())
        lb = broken(inputs, targets, cu, windows)
        rel = abs(lb.item() / loss.item() - 1)
        check(rel > 1e-4, f"--control {control} changes the loss by {rel:.1e} ({lb.item():.4f} vs {loss.item():.4f})")


def self_test():
    check_attention(0.12)
    check_init_loss()
    check_record_facts()
    check_model_facts()
    print("self-test passed")


if __name__ == "__main__":
    main()
