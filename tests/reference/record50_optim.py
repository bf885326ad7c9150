#!/usr/bin/env python3
"""Independent reference for muonrun's optimizer on the record-50 model: the
optimizers and schedules of KellerJordan/modded-nanogpt record 50
(2025-12-18_CautiousWDAdam; its script is the first 1643 lines of any log in
records/track_1_short/2025-12-18_CautiousWDAdam/, `Lnnnn` below is a line of
it): NorMuon with Polar Express and cautious weight decay, DistAdam with
cautious weight decay stepping every other step on the two-step gradient
sum, the parameter groups, get_lr and the NorMuon momentum schedule --
transcribed for one rank on the CPU and run over given gradients, so that a
C++ test can compare muonrun's weights with them.

Input (safetensors):  param.<name>       initial weights, the record's state_dict names, float32
                      grad.<t>.<name>    the gradient of step first_step + t, t = 0 .. K-1
Output (safetensors): step.<t>.<name>    the weights after step first_step + t (float32)
                      schedule.lr        get_lr(s) for s = 0 .. num_iterations-1 (float64)
                      schedule.momentum  NorMuon's momentum at those steps (float64)
  num_iterations = scheduled + extension steps (2050 + 40 = 2090).

Usage: record50_optim.py --in IN --out OUT [--first-step S] [--scheduled-steps 2050]
                         [--extension-steps 40] [--control NAME]
       record50_optim.py --self-test
  The optimizer state (NorMuon momentum and second moment, Adam moments and
  step count) starts empty at first_step, which must be even: Adam steps on
  odd steps s with grad(s-1) + grad(s), the lr of step s, and bias-correction
  count t = (s - first_step + 1) / 2 (= (s+1)/2 from step 0). If the last
  given step is even its Adam gradient is left pending (not applied).

The record's math (world size 1, fp32):
 * Groups (L1404-1424): NorMuon(lr 0.023, wd 1.2, beta2 0.95) gets
   hidden_matrix_params (every blocks.* parameter with ndim >= 2 and neither
   "embed" nor "gate" in its name: attn.qkvo_w, mlp.c_fc, mlp.c_proj) and
   gate_params ("gate" in the name: smear_gate.weight, attn.attn_gate.weight);
   DistAdam(lr 0.008, betas (0.65, 0.95), eps 1e-8, wd 0.005) gets the rest:
   embed.weight and value_embeds.* (lr_mul 75), scalars (lr_mul 5, wd_mul 0),
   lm_head.weight (lr_mul 1). c_proj has lr_mul 2 (L971).
 * Every group's lr is initial_lr * get_lr(s) (L1477-1479); NorMuon's momentum
   is get_muon_momentum(s) (L1461-1473, L1481-1484).
 * Even s: NorMuon steps alone; Adam's gradients keep accumulating. Odd s:
   DistAdam then NorMuon step (L1486-1496; the Adam gradient is what the
   post-accumulate hooks reduce-scatter on the last micro-batch of the odd
   step, i.e. the sum over both steps).
 * DistAdam.step (L768-817), per element:
     m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  t += 1
     u = m / (sqrt(v) + eps) * lr sqrt(1 - b2^t) / (1 - b1^t)      (lr = 0.008 get_lr lr_mul)
     mask = (u p >= 0);  u += p mask (lr wd wd_mul) lr;  p -= u
 * NorMuon.step (L545-712), per label group (attn / mlp / smear_gate /
   attn_gate, the record's standard grouping for world size != 8):
     M = lerp(M, G, 1 - mom);  U = lerp(G, M, mom)                      (Nesterov)
     attn: U [n, 4 dim, dim] viewed [4n, dim, dim] (Q, K, V, O apart)
     O = polar_express(U) per matrix (L377-421): X = U (transposed if rows > cols),
         X /= ||X||_F * 1.02 + 1e-6, five (a, b, c): A = X X^T, B = b A + c A A,
         X = a X + B X (mlp: C = B X, C += a X); transposed back
     red_dim = -1 if gate or stored rows >= cols else -2 (-1 for all of record 50)
     apply_normuon_variance_reduction (L436-448): r = mean(O^2 over red_dim);
         B2 = lerp(B2, r, 1 - beta2);  sigma = max(B2, 1e-10)^-1/2;
         V = O sigma ||O||_F / max(||O sigma||_F, 1e-10)  per matrix
     lr_p = 0.023 get_lr * max(1, rows/cols)^0.5 (the STORED shape) * lr_mul,
     wd_p = 1.2 * wd_mul * 0.023 get_lr   (float32 tensors, L614-632)
     cautious_wd_and_update_inplace (L427-433): mask = (V P >= 0);
         P = P - P mask wd_p lr_p - V lr_p

Where this differs from the record, and why:
 * One rank: reduce-scatter / all-gather are the identity; NorMuon's custom
   8-GPU grouping is only a different batching of the same per-matrix math.
 * Everything float32. The record runs Polar Express in bf16 (Triton XXT /
   ba_plus_cAA kernels, written here as plain matmuls), keeps the Adam moments
   in bf16 and the embeddings, lm_head and gates (and so their updates and
   the gates' NorMuon state) in bf16 without an fp32 master copy; its
   optimizer steps are torch.compile'd (fusions may skip roundings).
 * The record's DistAdam initialises its state once for the whole run and
   NorMuon zeroes its buffers after the warm-up; here the state starts empty
   at --first-step.

--control breaks one feature on purpose (the C++ tests' negative controls;
--self-test checks that each changes the result):
  no-cautious-muon  NorMuon decays every weight (mask all true)
  no-cautious-adam  Adam decays every weight (mask all true)
  adam-every-step   Adam steps every step on that step's gradient alone
  no-normuon        V = O (no second-moment normalisation)
  no-lr-mul         every lr_mul taken as 1 (embed/value_embeds 75, scalars 5,
                    c_proj 2); the shape factor is kept
  no-qkvo-split     qkvo_w orthogonalised (and normalised) as one [4 dim, dim] matrix
  split-shape-lr    qkvo_w's shape factor from its [dim, dim] pieces (1, not 2)
"""
import argparse
import math
import sys

import torch
from safetensors.torch import load_file, save_file

# The record's Hyperparameters and optimizer setup (L1317-1341, L1411-1424).
NUM_SCHEDULED_ITERATIONS = 2050
NUM_EXTENSION_ITERATIONS = 40
COOLDOWN_FRAC = 0.55
ADAM_LR, ADAM_BETAS, ADAM_EPS, ADAM_WD = 0.008, (0.65, 0.95), 1e-8, 0.005
MUON_LR, MUON_MOMENTUM, MUON_BETA2, MUON_WD = 0.023, 0.95, 0.95, 1.2
CONTROLS = ("none", "no-cautious-muon", "no-cautious-adam", "adam-every-step", "no-normuon", "no-lr-mul",
            "no-qkvo-split", "split-shape-lr")

# Computed for num_iters=5, safety_factor=2e-2, cushion=2 (L369-375)
POLAR_EXPRESS_COEFFS = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]


def polar_express(G, split_baddbmm=False):
    """L377-421 in float32 (the record: bf16)."""
    X = G.float()
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * (1 + 2e-2) + 1e-6)
    mm = torch.bmm if X.ndim > 2 else torch.mm
    addmm = torch.baddbmm if X.ndim > 2 else torch.addmm
    for a, b, c in POLAR_EXPRESS_COEFFS:
        A = X @ X.mT                               # XXT
        B = addmm(A, A, A, beta=b, alpha=c)        # ba_plus_cAA: b A + c A A
        if split_baddbmm:
            C = mm(B, X)
            C.add_(X, alpha=a)
        else:
            C = addmm(X, B, X, beta=a)             # a X + B X
        X = C
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


def cautious_wd_and_update_inplace(p, v, wd_tensor, lr_tensor, cautious=True):
    """L427-433."""
    mask = (v * p) >= 0 if cautious else torch.ones_like(p, dtype=torch.bool)
    wd_factor = wd_tensor.to(p.dtype)
    lr_factor = lr_tensor.to(p.dtype)
    p.copy_(p - (p * mask * wd_factor * lr_factor) - (v * lr_factor))


def apply_normuon_variance_reduction(v_chunk, second_momentum_buffer, beta2, red_dim):
    """L436-448."""
    v_mean = v_chunk.float().square().mean(dim=red_dim, keepdim=True)
    red_dim_size = v_chunk.size(red_dim)
    v_norm_sq = v_mean.sum(dim=(-2, -1), keepdim=True).mul_(red_dim_size)
    v_norm = v_norm_sq.sqrt_()
    second_momentum_buffer.lerp_(v_mean.to(dtype=second_momentum_buffer.dtype), 1 - beta2)
    step_size = second_momentum_buffer.clamp_min(1e-10).rsqrt_()
    scaled_sq_sum = (v_mean * red_dim_size) * step_size.float().square()
    v_norm_new = scaled_sq_sum.sum(dim=(-2, -1), keepdim=True).sqrt_()
    final_scale = step_size * (v_norm / v_norm_new.clamp_min_(1e-10))
    return v_chunk.mul_(final_scale.type_as(v_chunk))


class Param:
    """A weight with the record's attributes (label, lr_mul, wd_mul) and its gradient."""

    def __init__(self, name, data, label, lr_mul=1.0, wd_mul=1.0):
        self.name, self.data, self.label, self.lr_mul, self.wd_mul = name, data, label, lr_mul, wd_mul
        self.grad = None


class NorMuon:
    """The record's NorMuon.step on one rank, standard grouping (one group per label)."""

    def __init__(self, params, lr, weight_decay, momentum, beta2, control="none"):
        self.control = control
        self.groups = []
        for label in dict.fromkeys(p.label for p in params):
            self.groups.append(dict(params=[p for p in params if p.label == label], lr=lr, initial_lr=lr,
                                    weight_decay=weight_decay, momentum=momentum, beta2=beta2))

    def shape_mult(self, p):
        rows, cols = p.data.shape[-2], p.data.shape[-1]
        if self.control == "split-shape-lr" and p.label == "attn":
            rows //= 4
        return max(1.0, rows / cols) ** 0.5

    @torch.no_grad()
    def step(self):
        split_attn = self.control != "no-qkvo-split"
        for group in self.groups:
            params = group["params"]
            grads = torch.stack([p.grad for p in params])
            if "momentum_buffer" not in group:
                group["momentum_buffer"] = torch.zeros_like(grads)
            momentum_buffer = group["momentum_buffer"]
            momentum_buffer.lerp_(grads, 1 - group["momentum"])
            updated_grads = grads.lerp_(momentum_buffer, group["momentum"])
            grad_shape = updated_grads.shape
            ref_param = params[0]
            if ref_param.label == "attn" and split_attn:
                updated_grads = updated_grads.view(4 * grad_shape[0], grad_shape[1] // 4, grad_shape[2])
            param_shape = ref_param.data.shape
            is_gate = ref_param.label in ("smear_gate", "attn_gate")
            if "second_momentum_buffer" not in group:
                if is_gate or param_shape[-2] >= param_shape[-1]:
                    group["second_momentum_buffer"] = torch.zeros_like(updated_grads[..., :, :1])
                else:
                    group["second_momentum_buffer"] = torch.zeros_like(updated_grads[..., :1, :])
            if "param_lr_cpu" not in group:
                lr_mul = (lambda p: 1.0) if self.control == "no-lr-mul" else (lambda p: p.lr_mul)
                group["param_lr_cpu"] = torch.tensor([self.shape_mult(p) * lr_mul(p) for p in params],
                                                     dtype=torch.float32)
                group["param_wd_cpu"] = torch.tensor([p.wd_mul for p in params], dtype=torch.float32)
            eff_lr = group["param_lr_cpu"] * group["lr"]
            eff_wd = group["param_wd_cpu"] * group["weight_decay"] * group["lr"]

            v_chunk = polar_express(updated_grads, split_baddbmm=(ref_param.label == "mlp"))
            red_dim = -1 if (is_gate or param_shape[-2] >= param_shape[-1]) else -2
            if self.control != "no-normuon":
                v_chunk = apply_normuon_variance_reduction(v_chunk, group["second_momentum_buffer"],
                                                           group["beta2"], red_dim)
            v_chunk = v_chunk.view(grad_shape)
            for i, p in enumerate(params):
                cautious_wd_and_update_inplace(p.data, v_chunk[i], eff_wd[i], eff_lr[i],
                                               cautious=self.control != "no-cautious-muon")


class DistAdam:
    """The record's DistAdam.step on one rank (the whole parameter is the slice)."""

    def __init__(self, params, lr, betas, eps, weight_decay, control="none"):
        self.control = control
        self.groups = []
        for label in ("lm_head", "scalars", "value_embed", "embed"):
            ps = [p for p in params if p.label == label]
            if ps:
                self.groups.append(dict(params=ps, lr=lr, initial_lr=lr, betas=betas, eps=eps,
                                        weight_decay=weight_decay))
        self.state = {}

    @torch.no_grad()
    def step(self, grads):
        for group in self.groups:
            beta1, beta2 = group["betas"]
            eps = group["eps"]
            wd = group["weight_decay"]
            for param in group["params"]:
                p_slice = param.data
                g_slice = grads[param.name]
                lr = group["lr"] * (1.0 if self.control == "no-lr-mul" else param.lr_mul)
                state = self.state.setdefault(param.name, dict(step=0, exp_avg=torch.zeros_like(p_slice),
                                                               exp_avg_sq=torch.zeros_like(p_slice)))
                exp_avg = state["exp_avg"]
                exp_avg_sq = state["exp_avg_sq"]
                state["step"] += 1
                t = state["step"]
                exp_avg.mul_(beta1).add_(g_slice, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(g_slice, g_slice, value=1 - beta2)
                bias1 = 1 - beta1 ** t
                bias2 = 1 - beta2 ** t
                denom = exp_avg_sq.sqrt().add_(eps)
                step_size = lr * (bias2 ** 0.5 / bias1)
                update = exp_avg.div(denom).mul_(step_size)
                if wd != 0:
                    if self.control == "no-cautious-adam":
                        mask = torch.ones_like(p_slice, dtype=torch.bool)
                    else:
                        mask = (update * p_slice) >= 0
                    eff_weight_decay = lr * wd * param.wd_mul
                    update.addcmul_(p_slice, mask, value=eff_weight_decay * lr)
                p_slice.add_(other=update, alpha=-1.0)


def get_lr(step, num_scheduled_iterations=NUM_SCHEDULED_ITERATIONS):
    """L1427-1440."""
    if step > num_scheduled_iterations:
        return 0.1
    lr_max = 1.0
    x = step / num_scheduled_iterations
    if x > 1 / 3:
        lr_max = 1.51  # (16/8)**0.6
    if x > 2 / 3:
        lr_max = 1.93  # (24/8)**0.6
    if x >= 1 - COOLDOWN_FRAC:
        w = (1 - x) / COOLDOWN_FRAC
        lr = lr_max * w + (1 - w) * 0.1
        return lr
    return lr_max


def get_muon_momentum(step, num_iterations, muon_warmup_steps=300, muon_cooldown_steps=50,
                      momentum_min=0.85, momentum_max=0.95):
    """L1461-1473."""
    momentum_cd_start = num_iterations - muon_cooldown_steps
    if step < muon_warmup_steps:
        frac = step / muon_warmup_steps
        momentum = momentum_min + frac * (momentum_max - momentum_min)
    elif step > momentum_cd_start:
        frac = (step - momentum_cd_start) / muon_cooldown_steps
        momentum = momentum_max - frac * (momentum_max - momentum_min)
    else:
        momentum = momentum_max
    return momentum


def make_params(weights):
    """The record's parameter collection (L1404-1408) and attributes
    (labels, lr_mul, wd_mul: L918-1056), by state-dict name."""
    params = {}
    for n, t in weights.items():
        data = t.float().clone()
        if n == "embed.weight":
            params[n] = Param(n, data, "embed", lr_mul=75.0)
        elif n.startswith("value_embeds."):
            params[n] = Param(n, data, "value_embed", lr_mul=75.0)
        elif n == "lm_head.weight":
            params[n] = Param(n, data, "lm_head", lr_mul=1.0)
        elif n == "scalars":
            params[n] = Param(n, data, "scalars", lr_mul=5.0, wd_mul=0.0)
        elif n == "smear_gate.weight":
            params[n] = Param(n, data, "smear_gate")
        elif n.startswith("blocks.") and n.endswith(".attn.attn_gate.weight"):
            params[n] = Param(n, data, "attn_gate")
        elif n.startswith("blocks.") and n.endswith(".attn.qkvo_w"):
            params[n] = Param(n, data, "attn")
        elif n.startswith("blocks.") and n.endswith(".mlp.c_fc"):
            params[n] = Param(n, data, "mlp")
        elif n.startswith("blocks.") and n.endswith(".mlp.c_proj"):
            params[n] = Param(n, data, "mlp", lr_mul=2.0)
        else:
            sys.exit(f"unknown parameter {n} (not in the record-50 state dict)")
    ps = params.values()
    hidden_matrix_params = [p for p in ps if p.name.startswith("blocks.") and p.data.ndim >= 2
                            and "embed" not in p.name and "gate" not in p.name]
    embed_params = [p for p in ps if "embed" in p.name]
    scalar_params = [p for p in ps if p.data.ndim < 2]
    head_params = [p for p in ps if p.name == "lm_head.weight"]
    gate_params = [p for p in ps if "gate" in p.name]
    adam_params = embed_params + scalar_params + head_params
    muon_params = hidden_matrix_params + gate_params
    if sorted(p.name for p in adam_params + muon_params) != sorted(params):
        sys.exit("the record's parameter groups do not cover every parameter exactly once: " + ", ".join(params))
    for p in muon_params:
        if p.data.ndim != 2 or (p.label == "attn" and p.data.size(0) % 4):
            sys.exit(f"{p.name}: NorMuon needs a matrix (qkvo_w with 4k rows), got {list(p.data.shape)}")
    return params, adam_params, muon_params


def run(weights, grads, first_step, scheduled, extension, control="none"):
    """weights {name: tensor}, grads [ {name: tensor} per step ] -> [ {name: tensor} after each step ]."""
    if first_step % 2:
        raise ValueError(f"first_step must be even (Adam steps on odd steps with the sum of two), got {first_step}")
    num_iterations = scheduled + extension
    params, adam_params, muon_params = make_params(weights)
    adam = DistAdam(adam_params, lr=ADAM_LR, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=ADAM_WD, control=control)
    muon = NorMuon(muon_params, lr=MUON_LR, weight_decay=MUON_WD, momentum=MUON_MOMENTUM, beta2=MUON_BETA2,
                   control=control)
    pending = {}
    out = []
    for t, g in enumerate(grads):
        step = first_step + t
        for group in adam.groups + muon.groups:
            group["lr"] = group["initial_lr"] * get_lr(step, scheduled)
        momentum = get_muon_momentum(step, num_iterations)
        for group in muon.groups:
            group["momentum"] = momentum
        for p in muon_params:
            p.grad = g[p.name].float().clone()
        for p in adam_params:  # .grad accumulates until an Adam step zeroes it
            pending[p.name] = pending[p.name] + g[p.name].float() if p.name in pending else g[p.name].float().clone()
        if step % 2 == 0 and control != "adam-every-step":
            muon.step()
        else:
            adam.step(pending)
            muon.step()
            pending = {}
        out.append({n: p.data.clone() for n, p in params.items()})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--in", dest="inp")
    ap.add_argument("--out")
    ap.add_argument("--first-step", type=int, default=0)
    ap.add_argument("--scheduled-steps", type=int, default=NUM_SCHEDULED_ITERATIONS)
    ap.add_argument("--extension-steps", type=int, default=NUM_EXTENSION_ITERATIONS)
    ap.add_argument("--control", choices=CONTROLS, default="none")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    if args.self_test:
        self_test()
        return
    if args.inp is None or args.out is None:
        ap.error("--in and --out are required")
    if args.first_step < 0 or args.first_step % 2:
        ap.error(f"--first-step must be even and >= 0 (Adam pairs steps s-1, s with s odd), got {args.first_step}")
    if args.scheduled_steps <= 0 or args.extension_steps < 0:
        ap.error("--scheduled-steps > 0 and --extension-steps >= 0")

    tensors = load_file(args.inp)
    names = [k[len("param."):] for k in tensors if k.startswith("param.")]
    steps = 0
    while any(f"grad.{steps}.{n}" in tensors for n in names):
        steps += 1
    if not names or steps == 0:
        sys.exit(f"{args.inp}: expected param.<name> and grad.<t>.<name> tensors")
    expected = {f"param.{n}" for n in names} | {f"grad.{t}.{n}" for t in range(steps) for n in names}
    missing, unknown = expected - tensors.keys(), tensors.keys() - expected
    if missing or unknown:
        sys.exit(f"{args.inp}: missing {sorted(missing)[:8]}, unexpected {sorted(unknown)[:8]}")
    for k in expected:
        n = k.split(".", 1)[1] if k.startswith("param.") else k.split(".", 2)[2]
        if tensors[k].dtype != torch.float32 or tensors[k].shape != tensors[f"param.{n}"].shape:
            sys.exit(f"{args.inp}: {k} must be float32 {list(tensors[f'param.{n}'].shape)}, got "
                     f"{tensors[k].dtype} {list(tensors[k].shape)}")
    weights = {n: tensors[f"param.{n}"] for n in names}
    grads = [{n: tensors[f"grad.{t}.{n}"] for n in names} for t in range(steps)]
    results = run(weights, grads, args.first_step, args.scheduled_steps, args.extension_steps, args.control)
    out = {f"step.{t}.{n}": v.contiguous() for t, r in enumerate(results) for n, v in r.items()}
    num_iterations = args.scheduled_steps + args.extension_steps
    out["schedule.lr"] = torch.tensor([get_lr(s, args.scheduled_steps) for s in range(num_iterations)],
                                      dtype=torch.float64)
    out["schedule.momentum"] = torch.tensor([get_muon_momentum(s, num_iterations) for s in range(num_iterations)],
                                            dtype=torch.float64)
    save_file(out, args.out)
    print(f"record 50 optimizers ({args.control}): steps {args.first_step}..{args.first_step + steps - 1} "
          f"of {len(names)} tensors -> {args.out}")


# ---------------------------------------------------------------------------
# Self-test
# ---------------------------------------------------------------------------

def check(ok, what):
    if not ok:
        raise AssertionError(what)
    print(f"  ok  {what}")


def small_weights(dim=16, vocab=40, layers=3, seed=0):
    """Record-50 names at a small size: layer 1 without attention."""
    g = torch.Generator().manual_seed(seed)
    w = {"scalars": torch.randn(4 * layers + 3 + 1, generator=g),
         "embed.weight": torch.randn(vocab, dim, generator=g),
         "smear_gate.weight": torch.randn(1, 12, generator=g) * 0.1}
    for t in range(3):
        w[f"value_embeds.{t}.weight"] = torch.randn(vocab, dim, generator=g)
    for i in range(layers):
        if i != 1:
            w[f"blocks.{i}.attn.qkvo_w"] = torch.randn(4 * dim, dim, generator=g) * dim ** -0.5
            w[f"blocks.{i}.attn.attn_gate.weight"] = torch.randn(2, 12, generator=g) * 0.1
        w[f"blocks.{i}.mlp.c_fc"] = torch.randn(4 * dim, dim, generator=g) * dim ** -0.5
        w[f"blocks.{i}.mlp.c_proj"] = torch.randn(4 * dim, dim, generator=g) * dim ** -0.5
    w["lm_head.weight"] = torch.randn(vocab, dim, generator=g) * 0.1
    return w


def random_grads(w, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{n: torch.randn(v.shape, generator=g) for n, v in w.items()} for _ in range(steps)]


def check_schedules():
    print("schedules (get_lr L1427-1440, get_muon_momentum L1461-1473; notes' table)")
    want = {0: 1.0, 683: 1.0, 684: 1.51, 922: 1.51, 923: 1.509375, 1366: 0.955379, 1367: 1.208550,
            2049: 0.101623, 2050: 0.1, 2051: 0.1, 2089: 0.1}
    got = {s: get_lr(s) for s in want}
    check(all(abs(got[s] - v) < 5e-7 for s, v in want.items()),
          "get_lr: " + ", ".join(f"{s}: {got[s]:.6f}" for s in want))
    check(get_lr(1366) < get_lr(1367), "lr jumps up at 1367 (lr_max 1.51 -> 1.93 inside the cool-down)")
    want = {0: 0.85, 150: 0.9, 299: 0.949667, 300: 0.95, 2040: 0.95, 2041: 0.948, 2065: 0.9, 2089: 0.852}
    got = {s: get_muon_momentum(s, 2090) for s in want}
    check(all(abs(got[s] - v) < 5e-7 for s, v in want.items()),
          "momentum: " + ", ".join(f"{s}: {got[s]:.6f}" for s in want))


def check_polar_express():
    print("Polar Express")
    g = torch.Generator().manual_seed(2)
    for shape in ((64, 256), (256, 64), (48, 48)):
        G = torch.randn(*shape, generator=g)
        sv = torch.linalg.svdvals(polar_express(G).double())
        check(sv.min() > 0.7 and sv.max() < 1.2 and abs(sv.mean().item() - 1) < 0.1,
              f"{shape}: singular values in [{sv.min():.3f}, {sv.max():.3f}], mean {sv.mean():.3f}")
    G = torch.randn(96, 32, generator=g)
    check(torch.allclose(polar_express(G), polar_express(G.T).T, atol=1e-6) and
          torch.allclose(polar_express(G, True), polar_express(G), atol=1e-5),
          "tall input = transpose of the wide one; the split C = B X, C += a X form agrees")
    # polar_express is scale-invariant up to the +1e-6.
    check(torch.allclose(polar_express(3 * G), polar_express(G), atol=1e-5), "scale invariant")
    stack = torch.randn(3, 16, 16, generator=g)
    check(torch.allclose(polar_express(stack), torch.stack([polar_express(m) for m in stack]), atol=1e-6),
          "batched: each matrix orthogonalised (and Frobenius-normalised) on its own")


def check_normuon():
    print("NorMuon")
    g = torch.Generator().manual_seed(3)
    O = polar_express(torch.randn(4, 32, 16, generator=g))
    buf = torch.zeros(4, 32, 1)
    V = apply_normuon_variance_reduction(O.clone(), buf, 0.95, -1)
    check(torch.allclose(V.norm(dim=(-2, -1)), O.norm(dim=(-2, -1)), rtol=1e-5),
          "the variance reduction keeps each matrix's Frobenius norm")
    check(torch.allclose(buf, 0.05 * O.square().mean(-1, keepdim=True), rtol=1e-6),
          "second moment: 0.05 * mean over each row of O^2 after one step (no bias correction)")
    r = (V / O)[..., 0:1]
    check(torch.allclose(V / O, r.expand_as(V), rtol=1e-4), "V = O scaled per row")
    ro = O.square().mean(-1)
    rv = V.square().mean(-1)
    check(rv.std(-1).max() < 1e-4 * rv.mean(), f"after the first step every row of V has the same mean square "
                                                f"(rows of O: spread {(ro.std(-1) / ro.mean(-1)).max():.2f})")
    one_row = torch.randn(1, 1, 12, generator=g)
    check(torch.allclose(apply_normuon_variance_reduction(one_row.clone(), torch.zeros(1, 1, 1), 0.95, -1),
                         one_row, rtol=1e-6), "a one-row matrix (smear_gate) is left as it is")

    print("cautious weight decay by hand")
    p = torch.tensor([1.0, -2.0, 0.5, 0.0, -1.0])
    v = torch.tensor([0.5, 1.0, -1.0, 3.0, 0.0])   # v p: 0.5 >= 0, -2, -0.5, 0 >= 0, 0 >= 0
    q = p.clone()
    cautious_wd_and_update_inplace(q, v, torch.tensor(0.1), torch.tensor(0.2))
    want = torch.tensor([1.0 - 0.02 - 0.1, -2.0 - 0.2, 0.5 + 0.2, 0.0 - 0.6, -1.0 + 0.02])
    check(torch.allclose(q, want, atol=1e-7), f"P - P [V P >= 0] wd lr - V lr: {q.tolist()}")
    # Adam: mask on the lr-scaled step u before the decay: u p >= 0 decays.
    adam = DistAdam([Param("lm_head.weight", p.clone(), "lm_head")], lr=0.5, betas=(0.65, 0.95), eps=1e-8,
                    weight_decay=0.1)
    gr = torch.tensor([1.0, 1.0, -1.0, 1.0, -1.0])
    adam.step({"lm_head.weight": gr})
    u = 0.5 * torch.sign(gr) * (1 / (1 + 1e-8))   # first step: m/(sqrt(v)+eps) * sqrt(1-b2)/(1-b1) = sign(g)
    mask = (u * p) >= 0
    want = p - (u + p * mask * 0.5 * 0.1 * 0.5)
    check(torch.allclose(adam.groups[0]["params"][0].data, want, atol=1e-6),
          "Adam, first step: p - (lr sign(g) + p [u p >= 0] lr^2 wd)")


def check_record_multipliers():
    print("the record's groups and learning rates")
    with torch.device("meta"):
        w = {"scalars": torch.empty(48), "embed.weight": torch.empty(50304, 768),
             "smear_gate.weight": torch.empty(1, 12), "lm_head.weight": torch.empty(50304, 768),
             **{f"value_embeds.{t}.weight": torch.empty(50304, 768) for t in range(3)}}
        for i in range(11):
            if i != 6:
                w[f"blocks.{i}.attn.qkvo_w"] = torch.empty(3072, 768)
                w[f"blocks.{i}.attn.attn_gate.weight"] = torch.empty(6, 12)
            w[f"blocks.{i}.mlp.c_fc"] = torch.empty(3072, 768)
            w[f"blocks.{i}.mlp.c_proj"] = torch.empty(3072, 768)
        params, adam_params, muon_params = make_params(w)
        muon = NorMuon(muon_params, lr=MUON_LR, weight_decay=MUON_WD, momentum=0.95, beta2=0.95)
    lr = {p.name: MUON_LR * muon.shape_mult(p) * p.lr_mul for p in muon_params}
    check(len(muon_params) == 10 + 11 + 11 + 1 + 10 and len(adam_params) == 6,
          "NorMuon: 10 qkvo_w, 11 c_fc, 11 c_proj, smear_gate, 10 attn_gate; Adam: embed, 3 value_embeds, "
          "scalars, lm_head")
    check(abs(lr["blocks.0.attn.qkvo_w"] - 0.046) < 1e-12 and abs(lr["blocks.0.mlp.c_fc"] - 0.046) < 1e-12 and
          abs(lr["blocks.0.mlp.c_proj"] - 0.092) < 1e-12 and abs(lr["smear_gate.weight"] - 0.023) < 1e-12 and
          abs(lr["blocks.0.attn.attn_gate.weight"] - 0.023) < 1e-12,
          "NorMuon lr at get_lr 1: qkvo_w 0.046 (stored 3072x768), c_fc 0.046, c_proj 0.092, gates 0.023")
    rd = {lab: -1 if lab in ("smear_gate", "attn_gate") or s[-2] >= s[-1] else -2
          for lab, s in (("attn", (3072, 768)), ("mlp", (3072, 768)), ("smear_gate", (1, 12)), ("attn_gate", (6, 12)))}
    check(set(rd.values()) == {-1}, "red_dim = -1 (per row) for every NorMuon parameter of record 50")
    am = {p.name: (p.lr_mul, p.wd_mul) for p in adam_params}
    check(am == {"embed.weight": (75.0, 1.0), **{f"value_embeds.{t}.weight": (75.0, 1.0) for t in range(3)},
                 "scalars": (5.0, 0.0), "lm_head.weight": (1.0, 1.0)},
          "Adam (lr_mul, wd_mul): embed and value_embeds (75, 1), scalars (5, 0), lm_head (1, 1)")


def check_steps():
    print("steps of the small model")
    w = small_weights()
    grads = random_grads(w, 4)
    res = run(w, grads, 0, 2050, 40)
    adam_names = ["scalars", "embed.weight", "lm_head.weight"] + [f"value_embeds.{t}.weight" for t in range(3)]
    muon_names = [n for n in w if n not in adam_names]
    check(all(torch.equal(res[0][n], w[n]) for n in adam_names) and
          all(not torch.equal(res[0][n], w[n]) for n in muon_names),
          "step 0 (even): NorMuon parameters move, Adam parameters unchanged")
    check(all(torch.equal(res[2][n], res[1][n]) for n in adam_names),
          "step 2 (even): Adam parameters unchanged again")
    # Step 1 = one fresh Adam step (t = 1) on grad0 + grad1 with lr(1).
    params, adam_params, _ = make_params(w)
    adam = DistAdam(adam_params, lr=ADAM_LR, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=ADAM_WD)
    for gr in adam.groups:
        gr["lr"] = ADAM_LR * get_lr(1)
    adam.step({n: grads[0][n] + grads[1][n] for n in adam_names})
    check(all(torch.equal(res[1][n], params[n].data) for n in adam_names),
          "step 1 (odd): one Adam step, t = 1, on the SUM grad(0) + grad(1)")
    for gr in adam.groups:
        gr["lr"] = ADAM_LR * get_lr(3)
    adam.step({n: grads[2][n] + grads[3][n] for n in adam_names})
    check(all(torch.equal(res[3][n], params[n].data) for n in adam_names) and
          all(adam.state[n]["step"] == 2 for n in adam_names),
          "step 3 (odd): the second Adam step (t = 2) on grad(2) + grad(3) with lr(3)")
    # The scalars have wd_mul 0: their update is the pure Adam step.
    s0, s1 = w["scalars"], res[1]["scalars"]
    gsum = grads[0]["scalars"] + grads[1]["scalars"]
    m, v = (1 - 0.65) * gsum, (1 - 0.95) * gsum.square()
    u = m / (v.sqrt() + 1e-8) * (ADAM_LR * 5 * get_lr(1)) * math.sqrt(1 - 0.95) / (1 - 0.65)
    check(torch.allclose(s1, s0 - u, atol=1e-7), "scalars: lr 0.008 * 5, no decay (wd_mul 0)")

    # A NorMuon step by hand for one qkvo_w: 4 blocks, momentum 0.85 at step 0.
    name = "blocks.0.attn.qkvo_w"
    P, G = w[name], grads[0][name]
    M = torch.zeros_like(G).lerp_(G, 1 - 0.85)
    U = G.clone().lerp_(M, 0.85).view(4, 16, 16)
    O = torch.stack([polar_express(U[j]) for j in range(4)])
    r = O.square().mean(-1, keepdim=True)
    sig = (0.05 * r).clamp_min(1e-10).rsqrt()
    V = (O * sig * O.norm(dim=(-2, -1), keepdim=True) / (O * sig).norm(dim=(-2, -1), keepdim=True)).view(64, 16)
    lr_p = 0.023 * 2.0 * get_lr(0)
    wd_p = 1.2 * 0.023 * get_lr(0)
    want = P - P * ((V * P) >= 0) * wd_p * lr_p - V * lr_p
    check(torch.allclose(res[0][name], want, atol=1e-6),
          "qkvo_w step 0 by hand: Q, K, V, O orthogonalised apart, per-row NorMuon, lr 0.046, cautious wd 1.2*0.023")
    name = "blocks.0.mlp.c_proj"
    P, G = w[name], grads[0][name]
    O = polar_express(0.15 * G + 0.85 * (0.15 * G))
    V = O * (O.square().mean(-1, keepdim=True)).rsqrt() * O.norm() / (O * O.square().mean(-1, keepdim=True).rsqrt()).norm()
    lr_p = 0.023 * 2.0 * 2.0
    want = P - P * ((V * P) >= 0) * wd_p * lr_p - V * lr_p
    check(torch.allclose(res[0][name], want, atol=1e-6), "c_proj step 0 by hand: lr 0.023 * 2 (shape) * 2 (lr_mul)")
    sg = "smear_gate.weight"
    O = polar_express(grads[0][sg])
    want = w[sg] - w[sg] * ((O * w[sg]) >= 0) * wd_p * 0.023 - O * 0.023
    check(torch.allclose(res[0][sg], want, atol=1e-6), "smear_gate step 0: NorMuon is a no-op on one row, lr 0.023")

    print("negative controls")
    for control in CONTROLS[1:]:
        got = run(w, grads, 0, 2050, 40, control)
        diff = max((got[t][n] - res[t][n]).abs().max().item() for t in range(4) for n in w)
        check(diff > 1e-5, f"--control {control} changes the weights (max difference {diff:.1e})")
    try:
        run(w, grads, 1, 2050, 40)
        ok = False
    except ValueError:
        ok = True
    check(ok, "an odd first step is refused")


def self_test():
    check_schedules()
    check_polar_express()
    check_normuon()
    check_record_multipliers()
    check_steps()
    print("self-test passed")


if __name__ == "__main__":
    main()
