"""``compare --data`` with its defaults on sparse repeated-dose data like a neonatal study (not a test).

Simulates a NONMEM table the package was not tuned on: 59 infants (weight log-normal around 1.4 kg within 0.5-3.6
kg, an unrelated score 1-10 as a second covariate), an IV loading dose of 20 mg/kg and 2-11 maintenance doses of
2.5-5 mg/kg about every 12 h, 1-6 samples each at random times up to two days after the last dose; one-compartment
kinetics with CL = 0.0047 WT and V = 0.96 WT (L/h, L) times log-normal effects (omega 0.25, 0.15), 10% proportional
plus 0.5 mg/L additive noise, and 2% of the samples doubled (gross errors).  Then runs
``pyro-node-uq compare --data FILE --format nonmem --covariates WT,APGR`` (``--quick`` unless ``--full``) and prints
every method's new-subject NLL, CRPS and 90% coverage next to the report's reference, the training data's mean
and sd: a model that does not beat that reference has learned nothing usable.

    python benchmarks/sparse_pk.py [--seeds 0 1 2] [--methods map,autonormal,nuts] [--full] [--out DIR]
"""
import argparse
import csv
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd


def simulate(seed, num_units=59):
    """The NONMEM table (``ID, TIME, AMT, DV, EVID, MDV, CMT, WT, APGR``) of one simulated study."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(1, num_units + 1):
        wt = float(np.clip(rng.lognormal(np.log(1.4), 0.4), 0.5, 3.6))
        apgr = int(rng.integers(1, 11))
        cl = 0.0047 * wt * np.exp(0.25 * rng.standard_normal())
        v = 0.96 * wt * np.exp(0.15 * rng.standard_normal())
        n_doses = int(rng.integers(3, 12))
        times = [0.0] + [12.0 * j + rng.normal(0, 0.5) for j in range(1, n_doses)]
        amounts = [round(20 * wt, 1)] + [round(float(rng.choice([2.5, 3.0, 4.0, 5.0])) * wt, 1) for _ in times[1:]]
        for t, a in zip(times, amounts):
            rows.append({"ID": i, "TIME": round(t, 1), "AMT": a, "DV": ".", "EVID": 1, "MDV": 1, "CMT": 1, "WT": wt,
                         "APGR": apgr})
        for t in np.sort(rng.uniform(1.0, times[-1] + 48, int(rng.integers(1, 7)))):
            c = sum(a / v * np.exp(-cl / v * (t - s)) for s, a in zip(times, amounts) if s <= t)
            y = c * (1 + 0.1 * rng.standard_normal()) + 0.5 * rng.standard_normal()
            y *= 2.0 if rng.uniform() < 0.02 else 1.0
            rows.append({"ID": i, "TIME": round(float(t), 1), "AMT": 0, "DV": round(float(y), 2), "EVID": 0,
                         "MDV": 0, "CMT": 1, "WT": wt, "APGR": apgr})
    return pd.DataFrame(rows).sort_values(["ID", "TIME", "EVID"], ascending=[True, True, False])


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
    ap.add_argument("--out", default="sparse_pk_results")
    args = ap.parse_args()
    print("| seed | method | NLL | CRPS | cov90 | wall s |\n|---|---|---|---|---|---|")
    for seed in args.seeds:
        folder = os.path.join(args.out, f"seed{seed}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "data.csv")
        simulate(seed).to_csv(path, index=False)
        cmd = [sys.executable, "-m", "pyro_node_uq", "compare", "--data", path, "--format", "nonmem",
               "--covariates", "WT,APGR", "--no-progress", "--out", os.path.join(folder, "compare")]
        cmd += [] if args.full else ["--quick"]
        cmd += ["--methods", args.methods] if args.methods else []
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
