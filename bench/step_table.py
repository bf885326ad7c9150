#!/usr/bin/env python3
"""bench_step's JSON reports (bench/bench_step.cpp --json) side by side.

launch/gpu_check.sh runs bench_step once per setting (record 11 with
model.kernels=reference, fused, fused + train.cuda_graphs; record 29 with and
without its FP8 head) and prints this table of them: ms per step
(median), its ratio to the first setting, the slowest step over the median,
tokens/s, MFU, peak memory, and the Newton-Schulz and communication-wait
shares of the mean step. A setting whose report is missing (its run failed or
timed out) gets a row that says so. --json-out writes every report in one
file, keyed by setting.

    bench/step_table.py [--json-out FILE] NAME=REPORT.json ...
"""
import argparse
import json
import os
import sys

COLUMNS = ["setting", "ran", "steps", "ms/step", "vs first", "slowest/median", "tokens/s", "MFU",
           "peak memory", "Newton-Schulz", "comm wait", "loss first -> last"]


def load(path):
    """The report at `path`, or None when the run left none."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    with open(path) as f:
        return json.load(f)


def row(name, report, first_ms):
    if report is None:
        return [f"`{name}`", "no report (the run failed or timed out)"] + [""] * (len(COLUMNS) - 2)
    share = report["phase_share"]
    ran = f"model.kernels={report['kernels']}" + (", CUDA graph" if report["cuda_graphs"] else "")
    ms = report["step_ms_median"]
    return [
        f"`{name}`",
        ran,
        f"{report['steps']} (+{report['warmup_steps']} warm-up)",
        f"{ms:.1f}",
        f"{first_ms / ms:.2f}x" if first_ms else "",
        f"{report['slowest_over_median']:.2f}",
        f"{report['tokens_per_s']:,.0f}",
        f"{100 * report['mfu']:.1f}%",
        f"{report['peak_memory_bytes'] / 1e9:.1f} GB",
        f"{100 * share['newton_schulz']:.1f}%",
        f"{100 * share['comm_wait']:.1f}%",
        f"{report['loss_first']:.4f} -> {report['loss_last']:.4f}" + ("" if report["losses_finite"] else " NOT FINITE"),
    ]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-out", help="write every report, keyed by setting, to this file")
    parser.add_argument("reports", nargs="+", metavar="NAME=REPORT.json")
    args = parser.parse_args(argv)

    settings = []
    for item in args.reports:
        # A setting's name may itself hold '=' (model.kernels=fused): the path is after the last one.
        name, sep, path = item.rpartition("=")
        if not sep or not name:
            parser.error(f"{item}: expected NAME=REPORT.json")
        settings.append((name, load(path)))

    first_ms = settings[0][1]["step_ms_median"] if settings[0][1] else 0
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(name, report, first_ms)) + " |" for name, report in settings]
    device = next((r["device"] for _, r in settings if r), "?")
    configs = list(dict.fromkeys(r["config"].split(" --set ")[0] for _, r in settings if r)) or ["?"]
    print(f"bench_step on {device}, {' and '.join(configs)}; ms/step is the median, shares are of the mean step, "
          f"MFU is 6N + 6LCT against the matmul peak each run measured")
    print()
    print("\n".join(lines))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({name: report for name, report in settings}, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
