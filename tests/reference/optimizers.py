#!/usr/bin/env python3
"""Independent reference for muonrun's optimizers: PyTorch's own
torch.optim.AdamW and torch.optim.Muon (torch 2.9+, here 2.11), run over a
fixed sequence of gradients so that test_reference can compare the weights
step by step with muonrun's AdamW and Muon.

Input (safetensors):  param.<name>          initial weights (float32)
                      grad.<t>.<name>       the gradient of step t = 0..steps-1
Output (safetensors): step.<t>.<name>       the weights after step t
                      momentum.<t>.<name>   Muon only: its momentum buffer after step t

Usage:
  optimizers.py adamw --in IN --out OUT --lr LR [--betas 0.9 0.95] [--eps 1e-8]
                      [--weight-decay 0]
  optimizers.py muon  --in IN --out OUT --lr LR [--weight-decay 0]
                      --momentum MU [MU ...]   (one value: constant; else one per step)
                      [--no-nesterov] [--adjust-lr-fn original|match_rms_adamw]
                      [--ns-dtype bfloat16|float32] [--form ema|sgd]

About torch.optim.Muon (https://docs.pytorch.org/docs/stable/generated/torch.optim.Muon.html):
 * Its documentation writes the momentum in the SGD form B = mu B + g,
   Nesterov input g + mu B (as record 11's train_gpt2.py), but torch 2.11's
   code (torch/optim/_muon.py) runs buf.lerp_(g, 1 - mu) and g.lerp(buf, mu),
   the EMA form B = mu B + (1-mu) g, input (1-mu) g + mu B -- the form muonrun
   uses. `--form ema` (the default) is torch.optim.Muon as it is. `--form sgd`
   feeds it g_t / (1 - mu_t) instead of g_t, which turns that lerp exactly into
   the documented SGD form (B = mu B + g, input g + mu B), so that the test can
   also compare with that form, using torch's own Newton-Schulz.
 * Its Newton-Schulz always casts to bfloat16, also on the CPU, where
   muonrun's runs in float32. `--ns-dtype float32` replaces torch's function by
   its own source text with that one cast changed to float32 (checked to occur
   exactly once), so that the test can separate the bf16 rounding from any
   real difference; `bfloat16` (the default) is torch's code untouched.
"""
import argparse
import inspect
import sys

import torch
from safetensors.torch import load_file, save_file
from torch.optim import _muon


def float32_newton_schulz():
    """torch.optim.Muon's own Newton-Schulz with its bf16 cast made fp32."""
    src = inspect.getsource(_muon._zeropower_via_newtonschulz)
    cast = "ortho_grad = grad.bfloat16()"
    if src.count(cast) != 1:
        sys.exit("torch.optim._muon._zeropower_via_newtonschulz changed: cannot find "
                 f"'{cast}' exactly once; update optimizers.py")
    namespace = dict(vars(_muon))
    exec(src.replace(cast, "ortho_grad = grad.float()"), namespace)
    return namespace["_zeropower_via_newtonschulz"]


def read_input(path):
    tensors = load_file(path)
    names = sorted(k[len("param."):] for k in tensors if k.startswith("param."))
    steps = 0
    while any(f"grad.{steps}.{n}" in tensors for n in names):
        steps += 1
    if not names or steps == 0:
        sys.exit(f"{path}: expected param.<name> and grad.<t>.<name> tensors")
    params = {n: tensors[f"param.{n}"].float().clone() for n in names}
    grads = [{n: tensors[f"grad.{t}.{n}"].float() for n in names} for t in range(steps)]
    return params, grads


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("optimizer", choices=["adamw", "muon"])
    ap.add_argument("--in", dest="inp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--betas", type=float, nargs=2, default=[0.9, 0.95])
    ap.add_argument("--eps", type=float, default=None,
                    help="AdamW: default 1e-8; Muon: default torch's 1e-7")
    ap.add_argument("--momentum", type=float, nargs="+", default=[0.95])
    ap.add_argument("--no-nesterov", action="store_true")
    ap.add_argument("--adjust-lr-fn", default="original")
    ap.add_argument("--ns-dtype", choices=["bfloat16", "float32"], default="bfloat16")
    ap.add_argument("--form", choices=["ema", "sgd"], default="ema")
    args = ap.parse_args()

    torch.manual_seed(0)
    params, grads = read_input(args.inp)
    names = list(params)
    for p in params.values():
        p.requires_grad_(True)
    if args.optimizer == "adamw":
        opt = torch.optim.AdamW(list(params.values()), lr=args.lr, betas=tuple(args.betas),
                                eps=1e-8 if args.eps is None else args.eps,
                                weight_decay=args.weight_decay)
    else:
        if args.ns_dtype == "float32":
            _muon._zeropower_via_newtonschulz = float32_newton_schulz()
        opt = torch.optim.Muon(list(params.values()), lr=args.lr, weight_decay=args.weight_decay,
                               momentum=args.momentum[0], nesterov=not args.no_nesterov,
                               eps=1e-7 if args.eps is None else args.eps,
                               adjust_lr_fn=args.adjust_lr_fn)
        if len(args.momentum) not in (1, len(grads)):
            sys.exit(f"--momentum: give one value or one per step ({len(grads)})")

    out = {}
    for t, g in enumerate(grads):
        scale = 1.0
        if args.optimizer == "muon":
            mu = args.momentum[t] if len(args.momentum) > 1 else args.momentum[0]
            for group in opt.param_groups:
                group["momentum"] = mu
            if args.form == "sgd":
                scale = 1.0 / (1.0 - mu)
        for n in names:
            params[n].grad = g[n] * scale
        opt.step()
        for n in names:
            out[f"step.{t}.{n}"] = params[n].detach().clone()
            if args.optimizer == "muon":
                out[f"momentum.{t}.{n}"] = opt.state[params[n]]["momentum_buffer"].clone()
    save_file(out, args.out)
    print(f"{args.optimizer}: {len(grads)} steps of {len(names)} tensors -> {args.out}")


if __name__ == "__main__":
    main()
