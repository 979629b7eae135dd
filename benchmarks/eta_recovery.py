"""Issue 17 must-show: a fitted hierarchical NODE recovers the simulated per-unit effects of ``pk_repeated``.

For each data seed, parameterization of the effects (``noncentred`` latent ``eta_z``, ``centred`` latent
``eta``) and method (AutoNormal and AutoLangevin from MAP, and ``layerwise_mvn``: the network a point estimate,
the effects a full-covariance Gaussian, :func:`~pyro_node_uq.methods.run_layerwise`), prints the fraction of the
fitted units' true effects inside the 90% posterior interval of ``eta``, the regression slope, mean offset and
RMSE of the posterior means against the truth, the mean posterior sd, and the fitted omega against the true 0.3
and 0.2 (and the sample sd of the true effects).  Ends with a table and the coverage pooled over the seeds.

    python benchmarks/eta_recovery.py [--steps 800] [--seeds 0 1 2] [--parameterization centred noncentred]
"""
import argparse
import json
import time

import pyro
import torch
from pyro.infer.autoguide import AutoMultivariateNormal

from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import run_autonormal, run_langevin, run_layerwise, run_map
from pyro_node_uq.utils.seeding import param_scope


def recovery(fit, split, level=0.9, num_samples=400):
    """Coverage of the true effects by the central ``level`` intervals of ``eta``, and how the means compare."""
    eta = fit.predict(split, num_samples=num_samples, sites=("eta",))["eta"].reshape(num_samples, len(split), -1)
    lo, hi = eta.quantile((1 - level) / 2, 0), eta.quantile((1 + level) / 2, 0)
    truth, mean = split.eta_true, eta.mean(0)
    inside = ((truth >= lo) & (truth <= hi)).double()
    dt = truth - truth.mean(0)
    slope = (dt * (mean - mean.mean(0))).sum(0) / dt.pow(2).sum(0)
    with param_scope(fit.param_state):
        store = pyro.get_param_store()
        omega = store["omega"].tolist() if "omega" in store else fit.posterior_samples(200)["omega"].mean(0).tolist()
    r = lambda v: [round(float(x), 3) for x in v]
    return {"coverage_90": round(float(inside.mean()), 3), "n_inside": int(inside.sum()), "n": inside.numel(),
            "per_component": r(inside.mean(0)), "slope": r(slope), "offset": r((mean - truth).mean(0)),
            "rmse": r((mean - truth).pow(2).mean(0).sqrt()), "post_sd": r(eta.std(0).mean(0)), "omega": r(omega),
            "sample_sd_true": r(truth.std(0))}


def fits(model, train, steps, map_model):
    """MAP (of ``map_model``), then AutoNormal from it, AutoLangevin from that, and ``layerwise_mvn`` from MAP."""
    mp = run_map(map_model, train, num_steps=steps, progress_bar=False)
    an = run_autonormal(model, train, warm_start=mp, num_steps=steps, progress_bar=False, elbo_particles=0)
    yield "autonormal", an
    yield "langevin", run_langevin(model, train, warm_start=an, num_iters=steps // 2, num_steps=10,
                                   progress_bar=False, elbo_particles=0)
    yield "layerwise_mvn", run_layerwise(model, train, warm_start=mp, stochastic=model.layer_sites("random_effects"),
                                         guide=AutoMultivariateNormal, num_steps=steps, progress_bar=False,
                                         elbo_particles=0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parameterization", nargs="+", default=["centred", "noncentred"])
    parser.add_argument("--R-hidden", type=int, nargs="*", default=[16])
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, start = [], time.time()
    for seed in args.seeds:
        problem = load_problem("pk_repeated", seed=seed, dtype=torch.float64)
        for par in args.parameterization:
            model = problem.default_model(R_hidden=tuple(args.R_hidden), parameterization=par,
                                          on_divergence="reject")
            # MAP of centred effects collapses omega (the centred joint density is unbounded as omega -> 0): the
            # warm start is always a non-centred MAP, whose network and noise the next fit starts from
            map_model = problem.default_model(R_hidden=tuple(args.R_hidden), on_divergence="reject")
            for method, fit in fits(model, problem.train, args.steps, map_model):
                row = {"seed": seed, "parameterization": par, "method": method, **recovery(fit, problem.train)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{'seed':>4} {'param':>10} {'method':>13} {'cov90':>6} {'omega (true 0.3, 0.2)':>22} {'slope':>13} "
          f"{'offset':>15} {'post_sd':>13} {'rmse':>13}")
    for r in rows:
        print(f"{r['seed']:>4} {r['parameterization']:>10} {r['method']:>13} {r['coverage_90']:6.3f} "
              f"{r['omega']!s:>22} {r['slope']!s:>13} {r['offset']!s:>15} {r['post_sd']!s:>13} "
              f"{r['rmse']!s:>13}")
    print("\npooled over seeds:")
    for par in args.parameterization:
        for method in ("autonormal", "langevin", "layerwise_mvn"):
            mine = [r for r in rows if r["parameterization"] == par and r["method"] == method]
            print(f"{par:>10} {method:>13} {sum(r['n_inside'] for r in mine) / sum(r['n'] for r in mine):.3f}")
    print(f"total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
