"""Overhead of the fixed-step stability check (ODESolver(step_check=True)) on MAP training steps, as a ratio
against step_check=False measured in the same run, interleaved."""
import time

import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import run_map


def main(repeats=5, steps=40):
    torch.set_num_threads(1)
    problem = load_problem("chemical", num_train=8)
    times = {True: [], False: []}
    for _ in range(repeats):
        for check in (False, True):
            model = problem.default_model()
            model.solver.step_check = check
            start = time.perf_counter()
            run_map(model, problem.train, num_steps=steps, progress_bar=False)
            times[check].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    print(f"MAP {steps} steps, chemical, best of {repeats}: step_check off {best[False]:.3f} s, "
          f"on {best[True]:.3f} s, ratio {best[True] / best[False]:.3f}")


if __name__ == "__main__":
    main()
