#!/usr/bin/env python3
"""bench_step's JSON report and bench/step_table.py's table of several, on the
CPU with a tiny model, so that the table launch/gpu_check.sh prints after its
three GPU settings cannot break unseen: two real runs (model.kernels=reference
and fused) and a setting whose run left no report.

Checks, from the reports' own raw figures rather than the table code:
- each report's phase shares are its phases' ms over its mean step, and
  they add up to 1 with "other";
- the report names the settings that ran (kernels, cuda_graphs);
- the table has a row per setting, in order, whose ms/step, ratio to the
  first setting, MFU, Newton-Schulz and communication shares are the
  reports' figures, and a row saying the missing report is missing;
- --json-out holds every report under its setting.

    bench_step_table_test.py BENCH_STEP SOURCE_DIR
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

SHARD_MAGIC, SHARD_VERSION = 20240520, 1  # trainer/data/shard.h (llm.c's format)
VOCAB = 512

failures = []


def expect(ok, message):
    if not ok:
        failures.append(message)


def write_shard(path, tokens):
    header = struct.pack("<256i", SHARD_MAGIC, SHARD_VERSION, len(tokens), *([0] * 253))
    with open(path, "wb") as f:
        f.write(header + struct.pack(f"<{len(tokens)}H", *tokens))


def bench(bench_step, source, tmp, kernels):
    report = os.path.join(tmp, f"{kernels}.json")
    sets = [f"data.train={tmp}/train_*.bin", f"data.val={tmp}/train_*.bin", "run.device=cpu", "run.cpu_threads=1",
            f"model.vocab_size={VOCAB}", "model.layers=2", "model.dim=64", "model.heads=2", "model.head_dim=32",
            "model.seq_len=32", "train.micro_batch=2", "train.batch_tokens=128", f"model.kernels={kernels}"]
    cmd = [bench_step, "-c", os.path.join(source, "configs/quickstart.yaml"), "--steps", "3", "--warmup", "1",
           "--matmul-size", "64", "--matmul-repeats", "1", "--json", report]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    expect(proc.returncode == 0, f"bench_step ({kernels}) exited {proc.returncode}:\n{proc.stdout}")
    expect(f"model.kernels={kernels}" in proc.stdout, f"bench_step ({kernels}) printed no settings line")
    return report


def check_report(name, r, kernels):
    expect(r["kernels"] == kernels and r["cuda_graphs"] is False,
           f"{name}: kernels {r['kernels']}, cuda_graphs {r['cuda_graphs']}")
    mean = r["step_ms_mean"]
    for phase, ms in r["phases_ms"].items():
        # The report rounds ms to 1e-4 and shares to 1e-6.
        expect(abs(r["phase_share"][phase] - ms / mean) <= 1e-4 / mean + 1e-6,
               f"{name}: phase_share[{phase}] = {r['phase_share'][phase]}, phases_ms / step_ms_mean = {ms / mean}")
    expect(abs(sum(r["phase_share"].values()) - 1) < 1e-4, f"{name}: phase shares add up to "
                                                           f"{sum(r['phase_share'].values())}")


def check_table(out, names, reports):
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    expect(len(rows) == len(names), f"{len(rows)} rows for {len(names)} settings:\n{out}")
    first_ms = reports[0]["step_ms_median"]
    for row, name, r in zip(rows, names, reports):
        cells = [c.strip() for c in row.strip("|").split("|")]
        expect(cells[0] == f"`{name}`", f"row for {name} starts with {cells[0]}")
        if r is None:
            expect("no report" in cells[1], f"the missing report's row: {row}")
            continue
        ms = r["step_ms_median"]
        want = {3: f"{ms:.1f}", 4: f"{first_ms / ms:.2f}x", 7: f"{100 * r['mfu']:.1f}%",
                9: f"{100 * r['phases_ms']['newton_schulz'] / r['step_ms_mean']:.1f}%",
                10: f"{100 * r['phases_ms']['comm_wait'] / r['step_ms_mean']:.1f}%"}
        for column, value in want.items():
            expect(cells[column] == value, f"{name}: column {column} is {cells[column]!r}, the report gives {value!r}")


def main(argv):
    bench_step, source = argv[0], os.path.abspath(argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        write_shard(os.path.join(tmp, "train_000.bin"), [(7 * i + i // 5) % VOCAB for i in range(20000)])
        names = ["model.kernels=reference", "model.kernels=fused", "model.kernels=fused train.cuda_graphs=true"]
        paths = [bench(bench_step, source, tmp, "reference"), bench(bench_step, source, tmp, "fused"),
                 os.path.join(tmp, "never_written.json")]
        reports = []
        for name, path, kernels in zip(names, paths, ["reference", "fused", None]):
            if kernels is None or not os.path.exists(path):
                reports.append(None)
                continue
            with open(path) as f:
                reports.append(json.load(f))
            check_report(name, reports[-1], kernels)
        if failures:
            return summary()
        combined = os.path.join(tmp, "all.json")
        proc = subprocess.run([sys.executable, os.path.join(source, "bench/step_table.py"), "--json-out", combined]
                              + [f"{n}={p}" for n, p in zip(names, paths)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        expect(proc.returncode == 0, f"step_table.py exited {proc.returncode}:\n{proc.stdout}")
        check_table(proc.stdout, names, reports)
        with open(combined) as f:
            expect(json.load(f) == dict(zip(names, reports)), "--json-out does not hold the reports by setting")
        print(proc.stdout)
    return summary()


def summary():
    for message in failures:
        print("FAIL:", message)
    print(f"bench_step_table: {len(failures)} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
