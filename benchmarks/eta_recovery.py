"""Issue 17 must-show: a fitted hierarchical NODE recovers the simulated per-unit effects of ``pk_repeated``.

For each data seed and method (AutoNormal and AutoLangevin from MAP, and ``layerwise_effects``: the random effects
and their spread omega jointly Gaussian with a full covariance, the network a point estimate,
:func:`~pyro_node_uq.methods.run_layerwise_effects`), prints the fraction of the fitted units' true effects inside
the 90% posterior interval of ``eta``, the regression slope, mean offset and RMSE of the posterior means against
the truth, the mean posterior sd, and the fitted omega against the true 0.3 and 0.2.

The reference (``exact``) is the posterior of each unit's effects given the *true* population (elimination rate,
omega, noise), computed on a grid from the closed form: the coverage an ideal fit would reach on that seed's
data.  It varies from seed to seed (0.83-0.95 over seeds 0-5), so coverage is judged pooled over seeds.

Every fit is of the centred model (latent ``eta``; omega ``--omega``), started from a non-centred MAP (a centred
MAP collapses omega; :func:`~pyro_node_uq.methods.map_values` carries MAP's ``eta`` over).

``--typical-rate`` fits ``HierarchicalNODEModel(typical_rate="latent")`` (the typical rate's uncertainty in
``layerwise_effects``' block); ``lowrank`` is every latent jointly Gaussian (``--lowrank-rank``).  Pooled over
seeds 0-9: exact 0.907, exact_typical 0.910, layerwise_effects 0.850, with ``--typical-rate`` 0.865.

    python benchmarks/eta_recovery.py [--seeds 0 1 2 3 4] [--methods layerwise_effects autonormal langevin]
    python benchmarks/eta_recovery.py --seeds 0 1 2 3 4 5 6 7 8 9 --methods layerwise_effects --typical-rate
"""
import argparse
import json
import time

import pyro
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.data.pk import K_ELIM, OMEGA, pk_closed_form
from pyro_node_uq.methods import (
    run_autonormal,
    run_langevin,
    run_layerwise_effects,
    run_lowrank,
    run_map,
)
from pyro_node_uq.utils.seeding import param_scope

NOISE = 0.1  # pk_repeated's default observation noise


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


def exact_coverage(split, level=0.9, size=(241, 161), typical=None):
    """Coverage of the true effects by the ``level`` intervals of the exact posterior of each unit's effects,
    computed on a grid of ``size`` points over +-5 omega from the closed form, with omega and the noise at their
    true values (``OMEGA``, ``NOISE``).

    :param typical: ``None``: the typical elimination rate known (``K_ELIM``), each unit on its own; else a
        grid of log-rate offsets: the typical rate unknown (flat prior on its log), so every unit's effects carry
        the uncertainty of the population's rate, ``p(eta_i | y) = sum_k p(k | y) p(eta_i | y_i, k)``.
    """
    g = [torch.linspace(-5 * w, 5 * w, n, dtype=torch.float64) for w, n in zip(OMEGA, size)]
    e1, e2 = (v.flatten() for v in torch.meshgrid(*g, indexing="ij"))
    shifts = torch.zeros(1, dtype=torch.float64) if typical is None else torch.as_tensor(typical, dtype=torch.float64)
    prior = -0.5 * (e1 / OMEGA[0]) ** 2 - 0.5 * (e2 / OMEGA[1]) ** 2
    logp = []  # (N, K, G): log p(y_i | k, eta) + log p(eta)
    for i in range(len(split)):
        doses = type(split.doses)(*(v[i:i + 1].expand(len(e1), *v.shape[1:]) for v in split.doses))
        m = split.mask[i]
        rows = [pk_closed_form(split.t, doses, K_ELIM * (e1 + c).exp(), e2.exp())[:, m] for c in shifts]
        logp.append(torch.stack([-0.5 * ((r - split.y[i, m, 0]) / NOISE).pow(2).sum(-1) for r in rows]) + prior)
    logp = torch.stack(logp)
    weight_k = logp.logsumexp(-1).sum(0)  # log p(k | y) up to a constant
    post = (logp - logp.logsumexp(-1, keepdim=True) + (weight_k - weight_k.logsumexp(0))[:, None]).exp().sum(1)
    inside = []
    for i in range(len(split)):
        for grid, truth in ((e1, split.eta_true[i, 0]), (e2, split.eta_true[i, 1])):
            order = grid.argsort()
            cdf = post[i][order].cumsum(0) / post[i].sum()
            lo, hi = grid[order][int((cdf < (1 - level) / 2).sum())], grid[order][int((cdf < (1 + level) / 2).sum())]
            inside.append(bool(lo <= truth <= hi))
    return {"coverage_90": round(sum(inside) / len(inside), 3), "n_inside": sum(inside), "n": len(inside)}


def fits(model, map_model, train, args):
    """MAP (of the non-centred ``map_model``), then each method of ``args.methods`` from it (AutoLangevin from
    AutoNormal)."""
    mp = run_map(map_model, train, num_steps=args.map_steps, progress_bar=False)
    an = None
    for method in args.methods:
        if method == "layerwise_effects":
            yield method, run_layerwise_effects(model, train, warm_start=mp, num_steps=args.effects_steps,
                                                layers=args.effects_layers, num_particles=args.effects_particles,
                                                progress_bar=False, elbo_particles=0)
        elif method == "lowrank":  # every latent (network, effects, omega) jointly Gaussian
            yield method, run_lowrank(model, train, warm_start=mp, num_steps=args.effects_steps,
                                      rank=args.lowrank_rank, num_particles=args.effects_particles,
                                      progress_bar=False, elbo_particles=0)
        elif method == "autonormal":
            an = run_autonormal(model, train, warm_start=mp, num_steps=args.steps, progress_bar=False,
                                elbo_particles=0)
            yield method, an
        elif method == "langevin":
            an = an or run_autonormal(model, train, warm_start=mp, num_steps=args.steps, progress_bar=False,
                                      elbo_particles=0)
            yield method, run_langevin(model, train, warm_start=an, num_iters=args.steps // 2, num_steps=10,
                                       progress_bar=False, elbo_particles=0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="+", default=["layerwise_effects", "autonormal", "langevin"])
    parser.add_argument("--map-steps", type=int, default=2000)
    parser.add_argument("--effects-steps", type=int, default=3000, help="steps of layerwise_effects")
    parser.add_argument("--effects-particles", type=int, default=8, help="ELBO particles of layerwise_effects")
    parser.add_argument("--effects-layers", nargs="*", default=[], help="layers added to layerwise_effects' block")
    parser.add_argument("--lowrank-rank", type=int, default=None, help="rank of lowrank (default: Pyro's)")
    parser.add_argument("--steps", type=int, default=800, help="steps of AutoNormal (AutoLangevin: half as many)")
    parser.add_argument("--omega", default="latent", choices=["latent", "learned"])
    parser.add_argument("--typical-rate", action="store_true",
                        help="typical_rate='latent' (the typical rate's uncertainty in layerwise_effects' block)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, start = [], time.time()
    for seed in args.seeds:
        problem = load_problem("pk_repeated", seed=seed, dtype=torch.float64)
        rows.append({"seed": seed, "method": "exact", **exact_coverage(problem.train)})
        rows.append({"seed": seed, "method": "exact_typical", **exact_coverage(
            problem.train, size=(161, 101), typical=torch.linspace(-0.25, 0.25, 21))})
        print(json.dumps(rows[-2:]), flush=True)
        typical = {"typical_rate": "latent"} if args.typical_rate else {}
        model = problem.default_model(parameterization="centred", omega=args.omega, on_divergence="reject", **typical)
        map_model = problem.default_model(omega=args.omega, on_divergence="reject")
        for method, fit in fits(model, map_model, problem.train, args):
            rows.append({"seed": seed, "method": method, "wall_s": round(fit.wall_time, 1),
                         **recovery(fit, problem.train)})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'seed':>4} {'method':>17} {'cov90':>6} {'omega (true 0.3, 0.2)':>22} {'slope':>13} {'offset':>15} "
          f"{'post_sd':>13} {'rmse':>13}")
    for r in rows:
        if r["method"].startswith("exact"):
            print(f"{r['seed']:>4} {r['method']:>17} {r['coverage_90']:6.3f}")
            continue
        print(f"{r['seed']:>4} {r['method']:>17} {r['coverage_90']:6.3f} {r['omega']!s:>22} {r['slope']!s:>13} "
              f"{r['offset']!s:>15} {r['post_sd']!s:>13} {r['rmse']!s:>13}")
    print("\ncoverage pooled over seeds:")
    for method in ["exact", "exact_typical", *args.methods]:
        mine = [r for r in rows if r["method"] == method]
        print(f"{method:>17} {sum(r['n_inside'] for r in mine) / sum(r['n'] for r in mine):.3f}")
    print(f"total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
