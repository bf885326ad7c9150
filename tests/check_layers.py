#!/usr/bin/env python3
"""Fails when a lower layer of muonrun includes a higher one.

The layers, from the bottom (README, "Code layout"):
  base    trainer/base/     JSON, atomic files, logging, progress, exit codes (no LibTorch)
  config  trainer/config/   the aggregate config, its YAML loader and writer; also every
                            component's own `*_config.h` (models/model_config.h, ...)
  data    trainer/data/     tokenizer, text input, shards, loader, prepare
  models  models/           the network
  comm    comm/             communicators, rendezvous, gradient reduction
  optim   optim/            the optimizers and their plan
  loop    trainer/io/ faults/ run/   checkpoints and weights files, failures, the training loop
  tools   trainer/tools/    sample, toy, sweep and the command line
A file may include headers of its own layer and of the layers listed as
allowed below it; models/ and comm/ are siblings (neither includes the other),
and so are data/ and models/. tests/ and bench/ may include anything.

Usage: check_layers.py ROOT        check the tree at ROOT
       check_layers.py --self-test check that this script catches violations
"""
import os
import re
import sys
import tempfile

ALLOWED = {
    "base": set(),
    "config": {"base"},
    "data": {"config", "base"},
    "models": {"config", "base"},
    "comm": {"config", "base"},
    "optim": {"comm", "models", "config", "base"},
    "loop": {"optim", "comm", "models", "data", "config", "base"},
    "tools": {"loop", "optim", "comm", "models", "data", "config", "base"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
SOURCES = (".h", ".cpp", ".cu", ".cuh")


def layer_of(path):
    """The layer of a file named by its path from the repository root, or None."""
    if path.endswith("_config.h"):
        return "config"
    for prefix, layer in (("trainer/base/", "base"), ("trainer/config/", "config"),
                          ("trainer/data/", "data"), ("models/", "models"), ("comm/", "comm"),
                          ("optim/", "optim"), ("trainer/io/", "loop"), ("trainer/faults/", "loop"),
                          ("trainer/run/", "loop"), ("trainer/tools/", "tools")):
        if path.startswith(prefix):
            return layer
    if path.startswith("trainer/"):
        return "unplaced"
    return None


def violations(root):
    found = []
    for top in ("models", "optim", "comm", "trainer"):
        for folder, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith(SOURCES):
                    continue
                full = os.path.join(folder, name)
                path = os.path.relpath(full, root).replace(os.sep, "/")
                layer = layer_of(path)
                if layer == "unplaced":
                    found.append(f"{path}: not in a layer folder of trainer/ (base, config, data, io, faults, run, tools)")
                    continue
                with open(full, encoding="utf-8", errors="replace") as f:
                    for number, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        target = layer_of(m.group(1))
                        if target in (None, layer) or target in ALLOWED[layer]:
                            continue
                        found.append(f"{path}:{number}: the {layer} layer includes \"{m.group(1)}\" "
                                     f"of the {target} layer (allowed: {', '.join(sorted(ALLOWED[layer])) or 'none'})")
    return found


def self_test():
    cases = [("models/gpt.h", '#include "trainer/run/train.h"', True),
             ("comm/world.cpp", '#include "models/gpt.h"', True),
             ("optim/muon.cpp", '#include "trainer/base/json.h"', False),
             ("optim/optim_config.h", '#include "optim/muon.h"', True),
             ("trainer/data/shard.cpp", '#include "models/gpt.h"', True),
             ("trainer/stray.cpp", "", True)]
    for path, line, bad in cases:
        with tempfile.TemporaryDirectory() as root:
            os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
            with open(os.path.join(root, path), "w") as f:
                f.write(line + "\n")
            if bool(violations(root)) != bad:
                print(f"self-test: {path} with {line!r} should {'' if bad else 'not '}be a violation")
                return 1
    print(f"self-test: {len(cases)} cases classified as expected")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    found = violations(sys.argv[1])
    for v in found:
        print(v)
    print(f"{len(found)} layering violation(s)" if found else "layers: no lower layer includes a higher one")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
