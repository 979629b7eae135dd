"""``compare --data`` with its defaults on sparse repeated-dose data like a neonatal study (not a test).

Simulates a NONMEM table the package was not tuned on (:func:`~pyro_node_uq.data.sparse_study.sparse_iv_table`: 59
infants, IV loading and maintenance doses, 1-6 samples each, clearance and volume proportional to weight, 2% gross
errors), then runs
``pyro-node-uq compare --data FILE --format nonmem --covariates WT,APGR`` (``--quick`` unless ``--full``) and prints
every method's new-subject NLL, CRPS and 90% coverage next to the report's reference, the training data's mean
and sd: a model that does not beat that reference has learned nothing usable.

    python benchmarks/sparse_pk.py [--seeds 0 1 2] [--methods map,autonormal,nuts] [--full] [--time-fraction 1]
        [--out DIR]
"""
import argparse
import csv
import os
import subprocess
import sys
import time

from pyro_node_uq.data.sparse_study import sparse_iv_table


def reference(report):
    """The report's training-mean reference row of the test split: ``(NLL, CRPS, cov90)``."""
    lines = report.split("## Reference: the training data's mean", 1)[1].splitlines()
    row = next(line for line in lines if line.startswith("| test |"))
    return tuple(float(v) for v in row.strip("|").split("|")[1:4])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--methods", default=None, help="compare's --methods (default: its own)")
    ap.add_argument("--full", action="store_true", help="the full budgets instead of --quick")
    ap.add_argument("--time-fraction", default=None, help="compare's --time-fraction (default: its own)")
    ap.add_argument("--out", default="sparse_pk_results")
    args = ap.parse_args()
    print("| seed | method | NLL | CRPS | cov90 | wall s |\n|---|---|---|---|---|---|")
    for seed in args.seeds:
        folder = os.path.join(args.out, f"seed{seed}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "data.csv")
        sparse_iv_table(seed).to_csv(path, index=False)
        cmd = [sys.executable, "-m", "pyro_node_uq", "compare", "--data", path, "--format", "nonmem",
               "--covariates", "WT,APGR", "--no-progress", "--out", os.path.join(folder, "compare")]
        cmd += [] if args.full else ["--quick"]
        cmd += ["--methods", args.methods] if args.methods else []
        cmd += ["--time-fraction", args.time_fraction] if args.time_fraction else []
        start = time.perf_counter()
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        with open(os.path.join(folder, "compare", "table.csv")) as f:
            for row in csv.DictReader(f):
                if row["status"] == "ok" and row.get("test_nll"):
                    print(f"| {seed} | {row['method']} | {float(row['test_nll']):.3f} | {float(row['test_crps']):.3f} "
                          f"| {float(row['test_coverage_90']):.2f} | |", flush=True)
        with open(os.path.join(folder, "compare", "report.md")) as f:
            nll, crps, cov = reference(f.read())
        print(f"| {seed} | training mean (reference) | {nll:.3f} | {crps:.3f} | {cov:.2f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
