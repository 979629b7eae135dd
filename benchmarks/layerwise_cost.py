"""Layer-wise AutoLangevin against the full AutoLangevin on `chemical`: test NLL, cost per step, evaluations.

All methods start from one shared MAP fit (its cost is the same for all and left out of the ratios).  The full
AutoLangevin samples every weight of R; the layer-wise guides sample R's last (or first) layer with AutoLangevin
and re-optimise the other weights as point estimates in the same SVI loop.  Quality is the mixture NLL
(``pyro_node_uq.diagnostics.metrics``) of the posterior predictive on the test trajectories; cost is the
wall time per SVI step and the counted data-model evaluations (ODE solves x particles) of the fit.  The
``last_layer_half`` row uses half the ELBO particles (half the evaluations) of the others.

Usage: ``python benchmarks/layerwise_cost.py [--quick]``; the last line is ``RESULT nll_ratio=... ...``.
"""
import argparse

import pyro
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics.metrics import score
from pyro_node_uq.infer import AutoLangevin
from pyro_node_uq.methods import map_values, run_layerwise, run_map
from pyro_node_uq.methods.common import fit_guide, init_loc


def evaluate(res, problem, num_samples):
    pred = res.predict(problem.test, num_samples=num_samples, seed=1)
    s = score(pred, problem.test.y, problem.test.mask, noise_scale=problem.noise_scale)
    steps = len(res.losses)
    return {"dim": res.stochastic_dim, "s_per_step": res.wall_time / steps, "evals": res.num_model_evals,
                "nll": s["nll"], "rmse": s["rmse"], "cov90": s["coverage_90"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script works")
    parser.add_argument("--num-train", type=int, default=8)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--particles", type=int, default=8)
    parser.add_argument("--chain-steps", type=int, default=5, help="AutoLangevin chain length K")
    parser.add_argument("--score", default="learned", choices=("learned", "exact", "hybrid"))
    args = parser.parse_args()
    steps, map_steps, num_samples = (10, 20, 20) if args.quick else (args.steps, 800, 200)

    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    problem = load_problem("chemical", num_train=args.num_train)
    model = problem.default_model()
    map_res = run_map(model, problem.train, num_steps=map_steps, progress_bar=False)
    kw = {"num_steps": args.chain_steps, "score": args.score, "init_scale": 0.02}
    P = args.particles
    print(f"chemical: {len(problem.train)} training / {len(problem.test)} test trajectories, {model}; MAP "
          f"{map_steps} steps ({map_res.wall_time:.1f} s); AutoLangevin K={args.chain_steps}, score={args.score}, "
          f"{steps} SVI steps, {P} particles", flush=True)

    def full():
        init = init_loc(model, 0, map_values(map_res))
        return fit_guide("full", model, lambda m: AutoLangevin(m, init_loc_fn=init, **kw), problem.train,
                         num_steps=steps, lr=1e-2, num_particles=P, progress_bar=False)

    def layerwise(subset, particles):
        res = run_layerwise(model, problem.train, subset=subset, guide_kwargs=kw, num_steps=steps,
                            num_particles=particles, warm_start=map_res, elbo_particles=0, progress_bar=False)
        res.wall_time -= map_res.wall_time  # the shared MAP warm start is not part of the comparison
        res.num_model_evals -= map_res.num_model_evals
        return res

    runs = {"full": full, "last_layer": lambda: layerwise("last_layer", P),
            "first_layer": lambda: layerwise("first_layer", P),
            "last_layer_half": lambda: layerwise("last_layer", max(1, P // 2))}
    print(f"{'method':16s} {'dim':>5s} {'s/step':>8s} {'evals':>8s} {'test NLL':>9s} {'RMSE':>8s} {'cov90':>6s}")
    rows = {}
    for name, run in runs.items():
        pyro.set_rng_seed(0)
        rows[name] = r = evaluate(run(), problem, num_samples)
        print(f"{name:16s} {r['dim']:5d} {r['s_per_step']:8.4f} {r['evals']:8d} {r['nll']:9.4f} {r['rmse']:8.4f} "
              f"{r['cov90']:6.3f}", flush=True)
    f = rows["full"]
    for name in ("last_layer", "first_layer", "last_layer_half"):
        r = rows[name]
        print(f"{name}: NLL ratio {r['nll'] / f['nll']:.3f} (|diff| / |full| = {abs(r['nll'] - f['nll']) / abs(f['nll']):.3f}), "
              f"time/step ratio {r['s_per_step'] / f['s_per_step']:.3f}, evaluations ratio {r['evals'] / f['evals']:.3f}")
    ll, half = rows["last_layer"], rows["last_layer_half"]
    print(f"RESULT nll_full={f['nll']:.4f} nll_last_layer={ll['nll']:.4f} "
          f"nll_rel_diff={abs(ll['nll'] - f['nll']) / abs(f['nll']):.3f} "
          f"time_per_step_ratio={ll['s_per_step'] / f['s_per_step']:.3f} "
          f"nll_rel_diff_half={abs(half['nll'] - f['nll']) / abs(f['nll']):.3f} "
          f"evals_ratio_half={half['evals'] / f['evals']:.3f}")


if __name__ == "__main__":
    main()
