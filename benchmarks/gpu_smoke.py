"""GPU smoke check and ensemble timing on one CUDA device, in a few minutes (not a test).

1. The getting-started path on ``--device``: ``load_problem(device=...)``, an AutoNormal fit, an AutoLangevin fit
   started from it, ``Predictive`` of both; every result must live on the device and be finite.
2. ``log p(y | w) + grad`` on ``chemical`` for P = 1 ... 8192 particles on the device (CUDA-synchronised medians)
   against P = 1 on the CPU of the same machine, and the fixed-step path against ``torchdiffeq`` at P = 1.
   Targets: P = 8192 costs <= 2x P = 1 on the device; P = 1 on the device within 2x of P = 1 on the CPU.
3. Optionally (``--compare``) the comparison job's demo set with ``--quick --device cuda`` in a subprocess.

Prints ``RESULT ...`` lines with the ratios and the device name.

    python benchmarks/gpu_smoke.py [--device cuda] [--steps 200] [--compare] [--max-particles 8192]
"""
import argparse
import statistics
import subprocess
import sys
import time

import pyro
import torch
from pyro.infer import Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyro_node_uq.data import load_problem
from pyro_node_uq.distributions import NODETrajectory
from pyro_node_uq.infer import AutoLangevin, fit_svi


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def check_fits(device, steps):
    """AutoNormal, then AutoLangevin, then Predictive, all on ``device``; returns seconds taken."""
    start = time.perf_counter()
    problem = load_problem("chemical", device=device)
    model, train = problem.default_model(), problem.train
    elbo = Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    pyro.clear_param_store()
    normal = AutoNormal(model, init_loc_fn=model.init_loc_fn(0), init_scale=0.01)
    fit_svi(model, normal, train, num_steps=steps, lr=2e-2, loss=elbo, progress_bar=False)
    langevin = AutoLangevin(model, init_from=normal, num_steps=8, score="learned")
    fit_svi(model, langevin, train, num_steps=max(steps // 4, 10), lr=5e-3, loss=elbo, progress_bar=False)
    for name, guide in (("AutoNormal", normal), ("AutoLangevin", langevin)):
        pred = Predictive(model, guide=guide, num_samples=64, parallel=True)(problem.test.t, problem.test.x)
        y = pred["y_mean"]
        assert y.device.type == torch.device(device).type, f"{name}: predictions on {y.device}, not {device}"
        assert torch.isfinite(y).all(), f"{name}: non-finite predictions"
        rmse = float((y.mean(0).reshape(problem.test.y.shape) - problem.test.y).pow(2).mean().sqrt())
        print(f"{name:<13} predictive {tuple(y.shape)} on {y.device}, test RMSE of the mean {rmse:.4f}")
    sync(device)
    return time.perf_counter() - start


def logp_grad_timer(device, P, solver=None, repeats=7):
    problem = load_problem("chemical", dtype=torch.float32, device=device)
    model, split = problem.default_model(), problem.train
    gen = torch.Generator().manual_seed(0)
    params = {k: (torch.randn((P, 1) + s, generator=gen) / s[-1] ** 0.5).to(device)
              for k, s in model.weight_shapes().items()}

    def call():
        p = {k: v.detach().requires_grad_() for k, v in params.items()}
        d = NODETrajectory(model.R, model.Z, p, split.t, split.x, h0=problem.model_kwargs["init"],
                           scale=model.scale, solver=solver or model.solver, obs_dim=model.obs_dim)
        d.log_prob(split.y).sum().backward()
        sync(device)

    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=200, help="AutoNormal steps of the fit check")
    ap.add_argument("--max-particles", type=int, default=8192)
    ap.add_argument("--compare", action="store_true", help="also run the quick demo comparison on the device")
    args = ap.parse_args()
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_smoke: no CUDA device available")
    name = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else "cpu"
    print(f"device {args.device}: {name}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}")

    print(f"fits on {args.device}: {check_fits(args.device, args.steps):.1f} s")

    sizes = [P for P in (1, 64, 1024, 8192, 32768) if P <= args.max_particles]
    rows = {P: logp_grad_timer(args.device, P) for P in sizes}
    cpu1 = logp_grad_timer("cpu", 1)
    tdq1 = logp_grad_timer(args.device, 1, solver={"backend": "torchdiffeq"})
    print(f"{'P':>6} {'ms':>9} {'ms/particle':>12}   (log p + grad, chemical, float32, {args.device})")
    for P, sec in rows.items():
        print(f"{P:>6} {1e3 * sec:9.2f} {1e3 * sec / P:12.5f}")
    print(f"cpu P=1 {1e3 * cpu1:.2f} ms; {args.device} torchdiffeq P=1 {1e3 * tdq1:.2f} ms")
    big = max(rows)
    print(f"RESULT device={name!r} cost_ratio_P{big}_vs_P1={rows[big] / rows[1]:.2f} (target <= 2) "
          f"device_vs_cpu_P1={rows[1] / cpu1:.2f} (target <= 2) fixed_vs_torchdiffeq_P1={rows[1] / tdq1:.2f}")

    if args.compare:
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "pyro_node_uq", "compare", "--methods", "demo", "--quick", "--no-progress",
               "--device", args.device, "--out", "results_gpu_smoke"]
        rc = subprocess.run(cmd).returncode  # noqa: PLW1510
        print(f"RESULT compare --device {args.device}: exit {rc} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
