"""The command line: ``pyro-node-uq <command>`` (also ``python -m pyro_node_uq``)."""
import argparse
import sys

__all__ = ["main"]


def _rmse(model, guide, split):
    import torch
    from pyro.infer import Predictive

    pred = Predictive(model, guide=guide, num_samples=1, return_sites=["y_mean"])
    with torch.no_grad():
        mean = pred(split.t, split.x, None, mask=split.mask, num_trajectories=len(split))["y_mean"][0]
    target = split.y_true if split.y_true is not None else split.y
    mask = torch.ones_like(target, dtype=torch.bool) if split.mask is None else split.mask[..., None].expand_as(target)
    return float((mean - target)[mask].pow(2).mean().sqrt())


def cmd_map(args):
    """Fit the default problem with MAP and print the fit (the first version of ``make demo``)."""
    from .data import load_problem
    from .infer import fit_map

    problem = load_problem(args.problem, seed=args.seed)
    model = problem.default_model()
    print(f"problem {problem.name}: {len(problem.train)} training trajectories, model {model}")
    fit = fit_map(model, problem.train, num_steps=args.steps, seed=args.seed, progress_bar=not args.no_progress)
    print(f"MAP: {len(fit.losses)} steps in {fit.wall_time:.1f} s, loss {fit.losses[0]:.4g} -> {fit.losses[-1]:.4g}")
    target = "noise-free truth" if problem.train.y_true is not None else "observations"
    print(f"{'split':<14} {'RMSE':>8}   (against the {target}; noise std {problem.noise_scale})")
    for name, split in problem.splits.items():
        print(f"{name:<14} {_rmse(model, fit.guide, split):>8.4f}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="pyro-node-uq", description="Bayesian UQ for neural-ODE models on Pyro.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("map", help="fit a problem with MAP and print the fit")
    p.add_argument("--problem", default="chemical")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_map)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
