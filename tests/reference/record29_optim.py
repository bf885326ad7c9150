#!/usr/bin/env python3
"""Independent reference for muonrun's optimizer on the record-29 model: the
optimizers and schedules of KellerJordan/modded-nanogpt record 29
(records/track_1_short/2025-09-03_FA3/train_gpt.py: Muon, DistAdam, the
parameter groups, get_lr and the Muon momentum warm-up), transcribed for one
rank on the CPU, run over given gradients so that test_record29_optim can
compare muonrun's weights with them.

Input (safetensors):  param.<name>       initial weights, the record's state_dict names
                      grad.<t>.<name>    the gradient of step first_step + t
Output (safetensors): step.<t>.<name>    the weights after that step
                      schedule.lr        get_lr(s) for s = 0 .. num_iterations-1 (float64)
                      schedule.momentum  Muon's momentum at those steps (float64)

Usage: record29_optim.py --in IN --out OUT [--first-step S] [--num-iterations 1670]

Where this differs from the record, and why:
 * One rank: DistAdam's reduce-scatter / all-gather and Muon's are the
   identity (world size 1), so they are left out; each rank's slice is then
   the whole parameter.
 * Newton-Schulz: the record's newton_schulz_triton (Triton kernels, bf16,
   torch.compile) is written here with plain torch ops in float32, the same
   arithmetic: X = G / (||G||_F + 1e-7) per matrix (over the last two dims,
   transposed when tall), 5 times A = X X^T, B = b A + c A A, X = a X + B X,
   (a, b, c) = (3.4445, -4.7750, 2.0315). The record's bf16 differs from
   float32 by about 1e-2 per update, far more than the test's 1e-5.
 * The record keeps the embeddings (and their Adam state) in bf16 on the
   GPU; here everything is float32, as muonrun's master weights.
"""
import argparse
import sys

import torch
from safetensors.torch import load_file, save_file

# The record's Hyperparameters and optimizer setup.
NUM_ITERATIONS = 1670
COOLDOWN_FRAC = 0.45
ADAM_LR, ADAM_BETAS, ADAM_EPS = 0.008, (0.8, 0.95), 1e-10
MUON_LR, MUON_MOMENTUM = 0.05, 0.95


def newton_schulz(G):
    """newton_schulz_triton's steps: ns_line_1 A = X X^T, ns_line_2
    B = c A A + b A (Triton), ns_line_3 X = baddbmm / addmm(X, B, X, beta=a)."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.float()
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    ns_line_3 = torch.baddbmm if X.ndim > 2 else torch.addmm
    for _ in range(5):
        A = X @ X.mT
        B = c * (A @ A) + b * A
        X = ns_line_3(X, B, X, beta=a)
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


def groups_by_shape(params):
    """One parameter group per shape, as both of the record's optimizers make them."""
    params = list(params)
    return [dict(params=[p for p in params if p.shape == size]) for size in {p.shape for p in params}]


class Muon(torch.optim.Optimizer):
    """The record's Muon.step on one rank."""

    def __init__(self, params, lr=0.02, weight_decay=0.01, momentum=0.95):
        super().__init__(groups_by_shape(params), dict(lr=lr, weight_decay=weight_decay, momentum=momentum))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            momentum = group["momentum"]
            for p in group["params"]:
                grad = p.grad
                eff_lr = group["lr"] * max(1, p.size(-2) / p.size(-1)) ** 0.5 * getattr(p, "lr_mul", 1.0)
                eff_weight_decay = group["lr"] * group["weight_decay"] * getattr(p, "wd_mul", 1.0)
                state = self.state[p]
                if len(state) == 0:
                    state["momentum_buffer"] = torch.zeros_like(grad)
                momentum_buffer = state["momentum_buffer"]
                p.mul_(1 - eff_weight_decay)
                momentum_buffer.lerp_(grad, 1 - momentum)
                grad = grad.lerp_(momentum_buffer, momentum)
                v = newton_schulz(grad)
                p.add_(other=v, alpha=-eff_lr)


class DistAdam(torch.optim.Optimizer):
    """The record's DistAdam.step on one rank (rank_size = the whole first dim)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(groups_by_shape(params), dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            eps = group["eps"]
            wd = group["weight_decay"]
            for p in group["params"]:
                p_slice = p
                g_slice = p.grad
                lr = group["lr"] * getattr(p, "lr_mul", 1.0)
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0, dtype=torch.int64, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p_slice)
                    state["exp_avg_sq"] = torch.zeros_like(p_slice)
                exp_avg = state["exp_avg"]
                exp_avg_sq = state["exp_avg_sq"]
                state["step"] += 1
                t = state["step"]
                if wd != 0:
                    eff_weight_decay = lr * wd * getattr(p, "wd_mul", 1.0)
                    p_slice.mul_(1 - eff_weight_decay)
                exp_avg.mul_(beta1).add_(g_slice, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(g_slice, g_slice, value=1 - beta2)
                bias1 = 1 - beta1 ** t
                bias2 = 1 - beta2 ** t
                denom = exp_avg_sq.sqrt().add_(eps)
                step_size = lr * (torch.sqrt(bias2) / bias1)
                update = exp_avg.div(denom).mul_(step_size)
                p_slice.add_(other=update, alpha=-1.0)


def get_lr(step, num_iterations):
    x = step / num_iterations
    assert 0 <= x < 1
    lr = 1.0
    if x >= 1 - COOLDOWN_FRAC:
        w = (1 - x) / COOLDOWN_FRAC
        lr = w * 1.0 + (1 - w) * 0.1
    return lr


def muon_momentum(step):
    frac = min(step / 300, 1)
    return (1 - frac) * 0.85 + frac * 0.95


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--in", dest="inp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--first-step", type=int, default=0)
    ap.add_argument("--num-iterations", type=int, default=NUM_ITERATIONS)
    args = ap.parse_args()

    tensors = load_file(args.inp)
    names = [k[len("param."):] for k in tensors if k.startswith("param.")]
    steps = 0
    while any(f"grad.{steps}.{n}" in tensors for n in names):
        steps += 1
    if not names or steps == 0:
        sys.exit(f"{args.inp}: expected param.<name> and grad.<t>.<name> tensors")
    params = {n: tensors[f"param.{n}"].float().clone() for n in names}

    # The record's lr multipliers (GPT.__init__) and parameter collection.
    for n, p in params.items():
        if n == "embed.weight" or n.startswith("value_embeds."):
            p.lr_mul = 75.0
    params["lm_head.weight"].lr_mul = 1.0
    params["scalars"].lr_mul = 5.0
    hidden_matrix_params = [p for n, p in params.items()
                            if n.startswith("blocks.") and p.ndim >= 2 and "embed" not in n]
    embed_params = [p for n, p in params.items() if "embed" in n]
    scalar_params = [p for p in params.values() if p.ndim < 2]
    head_params = [params["lm_head.weight"]]
    adam_params = scalar_params + head_params + embed_params
    covered = sorted(id(p) for p in adam_params + hidden_matrix_params)
    if covered != sorted(id(p) for p in params.values()):
        sys.exit("the record's parameter groups do not cover every parameter exactly once: "
                 + ", ".join(names))

    optimizer1 = DistAdam(adam_params, lr=ADAM_LR, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=0.0)
    optimizer2 = Muon(hidden_matrix_params, lr=MUON_LR, momentum=MUON_MOMENTUM, weight_decay=0.0)
    optimizers = [optimizer1, optimizer2]
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]

    out = {}
    for t in range(steps):
        step = args.first_step + t
        for n in names:
            params[n].grad = tensors[f"grad.{t}.{n}"].float().clone()
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * get_lr(step, args.num_iterations)
        for group in optimizer2.param_groups:
            group["momentum"] = muon_momentum(step)
        for opt in optimizers:
            opt.step()
        for n in names:
            out[f"step.{t}.{n}"] = params[n].detach().clone()
    out["schedule.lr"] = torch.tensor([get_lr(s, args.num_iterations) for s in range(args.num_iterations)],
                                      dtype=torch.float64)
    out["schedule.momentum"] = torch.tensor([muon_momentum(s) for s in range(args.num_iterations)],
                                            dtype=torch.float64)
    save_file(out, args.out)
    print(f"record 29 optimizers: steps {args.first_step}..{args.first_step + steps - 1} of "
          f"{len(names)} tensors ({len(hidden_matrix_params)} Muon, {len(adam_params)} Adam) -> {args.out}")


if __name__ == "__main__":
    main()
