"""What the commands share: ``KEY=VALUE`` options, the problem named on the command line, a quick RMSE."""

__all__ = ["assignments", "problem_from_args", "rmse"]


def assignments(items, what):
    """Parse ``KEY=VALUE`` strings (values as Python literals where they parse, else strings)."""
    import ast

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{what}: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def problem_from_args(args, options=()):
    """The problem named by ``--problem`` with its ``--problem-option`` s and ``--seed`` (when it takes one)."""
    import inspect

    from ..data import PROBLEMS, load_problem

    kwargs = assignments(options, "--problem-option")
    if args.problem not in PROBLEMS:
        raise SystemExit(f"--problem: unknown problem {args.problem!r}; choose from {sorted(PROBLEMS)}")
    accepted = inspect.signature(PROBLEMS[args.problem]).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise SystemExit(f"--problem-option: problem {args.problem!r} has no option(s) {unknown}; its options are "
                         f"{sorted(k for k in accepted if k != 'seed')}")
    if "seed" in accepted:
        kwargs.setdefault("seed", args.seed)
    try:
        return load_problem(args.problem, device=getattr(args, "device", "cpu"), **kwargs)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"--problem-option: {e}") from None


def rmse(model, guide, split):
    """RMSE of one posterior draw's noise-free prediction against the split's truth (its observations if none)."""
    import torch
    from pyro.infer import Predictive

    pred = Predictive(model, guide=guide, num_samples=1, return_sites=["y_mean"])
    with torch.no_grad():
        mean = pred(split.t, split.x, None, mask=split.mask, num_trajectories=len(split))["y_mean"][0]
    target = split.y_true if split.y_true is not None else split.y
    mask = torch.ones_like(target, dtype=torch.bool) if split.mask is None else split.mask[..., None].expand_as(target)
    return float((mean - target)[mask].pow(2).mean().sqrt())
