#!/usr/bin/env python3
"""launch/gpu_check.sh's plan, checked on a machine without a GPU, so that what
the few GPU minutes will run cannot rot unnoticed:

- `--dry-run` (with stand-in inputs) exits 0, names each phase with its
  budget and minimum, the budgets add up to what it says and stay under the
  device call's 540 s, and each phase prints its banner with the time it may
  take and, where it runs something, the command (cmake --build of
  gpu_check_targets, ctest -L cuda, bench_step in each of five settings);
  the script's header and README.md's phase table give the same budgets;
- its targets are muonrun, bench_step and one test_cuda* executable per
  tests/test_cuda*.cpp, or, in a CUDA build, exactly the list CMake wrote
  (BUILD_DIR/gpu_check_targets.txt);
- `--list`'s items and README.md's table of GPU parts ("Checking a GPU
  machine") name the same things (each CUDA test suite as `Suite.*`), and
  each row's status says "not yet ..." or "verified YYYY-MM-DD ...".
--self-test shows the README comparison catching a missing, an extra and an
unfounded row.

    gpu_check_plan_test.py SOURCE_DIR [BUILD_DIR] [--self-test]
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

CALL_S = 540
PHASES = ["machine", "setup", "build", "tests", "data", "bench"]
# (name, config, overrides) of each bench setting, in order.
BENCH = [("model.kernels=reference", "configs/speedrun-1gpu.yaml", "model.kernels=reference"),
         ("model.kernels=fused", "configs/speedrun-1gpu.yaml", "model.kernels=fused"),
         ("record29", "configs/record29-1gpu.yaml", ""),
         ("record29 model.fp8_head=false", "configs/record29-1gpu.yaml", "model.fp8_head=false"),
         ("record50", "configs/record50-1gpu.yaml", "")]
SETTINGS = [name for name, _, _ in BENCH]

failures = []


def expect(ok, message):
    if not ok:
        failures.append(message)


def run(source, *args):
    proc = subprocess.run(["bash", os.path.join(source, "launch/gpu_check.sh"), *args], cwd=source,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    return proc.returncode, proc.stdout


def check_dry_run(source, build_dir):
    with tempfile.TemporaryDirectory() as tmp:
        vocab = os.path.join(tmp, "vocab")
        os.mkdir(vocab)
        for name in ("encoder.json", "vocab.bpe"):
            with open(os.path.join(vocab, name), "w") as f:
                f.write("stand-in\n")
        inputs = []
        for name in ("train.jsonl", "val.jsonl"):
            inputs.append(os.path.join(tmp, name))
            with open(inputs[-1], "w") as f:
                f.write('{"text": "stand-in"}\n')
        cmake_list = os.path.join(build_dir, "gpu_check_targets.txt") if build_dir else ""
        # An empty build directory: the script derives the targets from tests/CMakeLists.txt.
        derive_from = os.path.join(tmp, "no-build")
        rc, out = run(source, "--dry-run", "--out", os.path.join(tmp, "out"), "--data", *inputs,
                      "--vocab", vocab, "--build-dir", derive_from)
        expect(rc == 0, f"gpu_check.sh --dry-run exited {rc}")
        expect(os.path.exists(os.path.join(tmp, "out", "results.md")), "--dry-run --out wrote no results.md")

    plan = {m.group(1): (int(m.group(2)), int(m.group(3)))
            for m in re.finditer(r"^(\w+) +(\d+) s +(\d+) s$", out, re.M)}
    expect(list(plan) == PHASES, f"the plan's phases are {list(plan)}, expected {PHASES}")
    total = re.search(r"^in all +(\d+) s$", out, re.M)
    budgets = sum(b for b, _ in plan.values())
    expect(total and int(total.group(1)) == budgets, f"'in all' is not the sum of the budgets ({budgets} s)")
    expect(budgets <= CALL_S - 10, f"the budgets add up to {budgets} s: no room under the call's {CALL_S} s")
    with open(os.path.join(source, "launch/gpu_check.sh")) as f:
        header = {m.group(1): (int(m.group(2)), int(m.group(3)))
                  for m in re.finditer(r"^#   (\w+) +(\d+) +(\d+)  ", f.read(), re.M)}
    expect(header == plan, f"launch/gpu_check.sh's header says {header}, its plan {plan}")
    with open(os.path.join(source, "README.md")) as f:
        readme = {m.group(1): (int(m.group(2)), int(m.group(3)))
                  for m in re.finditer(r"^\| (\w+) \| (\d+) s \((\d+)\) \|", f.read(), re.M)}
    expect(readme == plan, f"README.md's phase table says {readme}, gpu_check.sh's plan {plan}")
    for phase, (budget, minimum) in plan.items():
        expect(0 < minimum <= budget, f"{phase}: minimum {minimum} s, budget {budget} s")
        expect(re.search(rf"^=== {phase}: .*\(budget {budget} s; may take \d+ s", out, re.M),
               f"no banner with budget and allowance for the {phase} phase")
        expect(re.search(rf"^--- {phase}: (DRY|PASS) ", out, re.M), f"the {phase} phase did not end DRY or PASS")
    expect("--target gpu_check_targets" in out, "no cmake --build --target gpu_check_targets")
    expect(re.search(r"^\$ ctest --test-dir \S+ -L cuda", out, re.M), "no ctest -L cuda")
    for name, config, overrides in BENCH:
        sets = "".join(f" --set {s}" for s in overrides.split())
        expect(re.search(rf"^\$ \S+/bench/bench_step -c {re.escape(config)} .*run\.device=cuda{re.escape(sets)} --steps \d+",
                         out, re.M), f"no bench_step command for {name}")

    targets = re.search(r"^targets: (.*)$", out, re.M)
    got = targets.group(1).split() if targets else []
    if cmake_list and os.path.exists(cmake_list):
        with open(cmake_list) as f:
            want, where = f.read().split(), cmake_list
    else:
        want = ["muonrun", "bench_step"] + sorted(
            os.path.basename(p)[:-4] for p in glob.glob(os.path.join(source, "tests", "test_cuda*.cpp")))
        where = "tests/test_cuda*.cpp, one executable each"
    expect(sorted(got) == sorted(want), f"the dry run's targets are {got}; {where} gives {want}")
    return out


def readme_parts(readme_text):
    """(id, status) of each row of the table after 'What a GPU run verifies' in 'Checking a GPU machine'."""
    section = readme_text.split("## Checking a GPU machine", 1)[-1].split("\n## ", 1)[0]
    table = section.split("What a GPU run verifies", 1)[-1]
    rows = re.findall(r"^\| `([^`]+)` \|[^|\n]*\| ([^|\n]*) \|$", table, re.M)
    return [(part, status.strip()) for part, status in rows]


def compare(listed, parts):
    """What differs between --list's items and the README's rows, as messages."""
    want = set()
    for kind, name in listed:
        want.add(name.split(".")[0] + ".*" if kind == "test" else name)
    have = [part for part, _ in parts]
    problems = [f"README.md's GPU table has no row for `{w}` (launch/gpu_check.sh --list)"
                for w in sorted(want - set(have))]
    problems += [f"README.md's GPU table has a row for `{h}`, which launch/gpu_check.sh --list does not name"
                 for h in sorted(set(have) - want)]
    problems += [f"README.md's GPU table: `{part}` has the status '{status}': expected 'not yet ...' or "
                 f"'verified YYYY-MM-DD ...'" for part, status in parts
                 if not re.match(r"(not yet |verified \d{4}-\d{2}-\d{2})", status)]
    return problems


def listed_items(source):
    rc, out = run(source, "--list")
    expect(rc == 0, f"gpu_check.sh --list exited {rc}")
    # Columns: kind, name, where; two or more spaces apart (a bench setting's name holds one).
    items = [tuple(re.split(r" {2,}", line.strip())[:2]) for line in out.splitlines() if line.strip()]
    kinds = {kind for kind, _ in items}
    expect(kinds == {"build", "test", "bench"}, f"--list's kinds are {sorted(kinds)}")
    benches = [name for kind, name in items if kind == "bench"]
    expect(benches == SETTINGS, f"--list's bench settings are {benches}, expected {SETTINGS}")
    return items


def self_test():
    listed = [("build", "gpu_check_targets"), ("test", "CudaA.One"), ("test", "CudaA.Two"),
              ("bench", "model.kernels=fused")]
    good = [("gpu_check_targets", "not yet built"), ("CudaA.*", "not yet run"),
            ("model.kernels=fused", "verified 2027-01-02 (bench/RESULTS.md)")]
    expect(compare(listed, good) == [], f"a matching table was reported: {compare(listed, good)}")
    missing = compare(listed, good[:1] + good[2:])
    expect(len(missing) == 1 and "no row for `CudaA.*`" in missing[0], f"a missing row: {missing}")
    extra = compare(listed, good + [("CudaB.*", "not yet run")])
    expect(len(extra) == 1 and "`CudaB.*`" in extra[0], f"an extra row: {extra}")
    unfounded = compare(listed, good[:2] + [("model.kernels=fused", "works")])
    expect(len(unfounded) == 1 and "status 'works'" in unfounded[0], f"an unfounded status: {unfounded}")
    table = "## Checking a GPU machine\n\nWhat a GPU run verifies:\n\n| part | what | on a GPU |\n|---|---|---|\n" \
            "| `CudaA.*` | two tests | not yet run |\n\n## Next\n| `CudaZ.*` | elsewhere | not yet run |\n"
    expect(readme_parts(table) == [("CudaA.*", "not yet run")], f"parsed {readme_parts(table)}")


def main(argv):
    if "--self-test" in argv:
        self_test()
    else:
        source = os.path.abspath(argv[0])
        build_dir = os.path.abspath(argv[1]) if len(argv) > 1 else ""
        check_dry_run(source, build_dir)
        with open(os.path.join(source, "README.md")) as f:
            parts = readme_parts(f.read())
        expect(parts, "README.md has no table of GPU parts under 'Checking a GPU machine'")
        failures.extend(compare(listed_items(source), parts))
    for message in failures:
        print("FAIL:", message)
    print(f"gpu_check_plan: {len(failures)} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
